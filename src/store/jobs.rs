//! The background job queue: jobs are enqueued by the web pages and the CLI, and taken by
//! workers through leases.
//!
//! A worker claims a job by taking its lease: an owner, a fresh random token per claim and an
//! expiry it keeps pushing forward while it works. A worker that dies stops renewing; once the
//! lease has expired another worker claims the job again (the next attempt), until the job has
//! used its attempts. Every write a worker makes afterwards names its lease token, so a worker
//! whose lease was taken over or cancelled can no longer change the job (fencing).
//!
//! On PostgreSQL several workers on several machines claim at once: the candidate row is
//! selected `FOR UPDATE SKIP LOCKED`, so two claims never take the same job and never wait on
//! each other. On SQLite claims are write transactions on the single writer connection, which
//! serialises them.

use std::collections::HashSet;

use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::{Store, StoreError, StoreResult, dispatch};
use crate::domain::{JobKind, JobState, parse_stored};

/// What a caller asks the queue to run.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// What the job does; workers take only kinds they have a handler for.
    pub kind: JobKind,
    /// The handler's parameters (its own JSON shape per kind).
    pub params: serde_json::Value,
    /// The study the job works for, if any (shown on the study and jobs pages).
    pub study_id: Option<Uuid>,
    /// The staff account that asked for it.
    pub created_by: Option<Uuid>,
    /// How many claims the job gets before a dead worker or a retryable error fails it.
    pub max_attempts: i64,
    /// Units of work expected, for the progress bar before the worker reports its own count.
    pub progress_total: i64,
}

/// A worker's hold on a running job; every write the worker makes for the job names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The job held.
    pub job_id: Uuid,
    /// Random per claim: a later claim of the same job gets another token, fencing this one off.
    pub token: Uuid,
}

/// A job a worker has just claimed, with everything its handler needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    /// The job.
    pub id: Uuid,
    /// Which handler runs it.
    pub kind: JobKind,
    /// The handler's parameters.
    pub params: serde_json::Value,
    /// The study it works for, if any.
    pub study_id: Option<Uuid>,
    /// 1 for the first claim, 2 for the first retry, … (handlers may log it).
    pub attempt: i64,
    /// The lease to fence every write with.
    pub lease: Lease,
}

/// A job as the jobs and study pages show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobView {
    /// The job.
    pub id: Uuid,
    /// What it does.
    pub kind: JobKind,
    /// The study it works for, if any.
    pub study_id: Option<Uuid>,
    /// That study's name, for the link text.
    pub study_name: Option<String>,
    /// Where it is in its life.
    pub state: JobState,
    /// Units done so far.
    pub progress_done: i64,
    /// Units expected.
    pub progress_total: i64,
    /// Claims so far (a retried job has several).
    pub attempts: i64,
    /// Claims allowed.
    pub max_attempts: i64,
    /// The worker holding (or that last held) the job.
    pub lease_owner: Option<String>,
    /// Why the job failed (or why its last attempt failed, when it was queued again).
    pub error: Option<String>,
    /// Enqueued (Unix ms).
    pub created_at: i64,
    /// First claimed (Unix ms).
    pub started_at: Option<i64>,
    /// Succeeded, failed for good or cancelled (Unix ms).
    pub finished_at: Option<i64>,
}

pub(super) type JobViewRow = (
    Uuid,
    String,
    Option<Uuid>,
    Option<String>,
    String,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
    Option<i64>,
);

pub(super) fn job_view_from_row(
    (
        id,
        kind,
        study_id,
        study_name,
        state,
        progress_done,
        progress_total,
        attempts,
        max_attempts,
        lease_owner,
        error,
        created_at,
        started_at,
        finished_at,
    ): JobViewRow,
) -> StoreResult<JobView> {
    Ok(JobView {
        id,
        kind: parse_stored(&kind)?,
        study_id,
        study_name,
        state: parse_stored(&state)?,
        progress_done,
        progress_total,
        attempts,
        max_attempts,
        lease_owner,
        error,
        created_at,
        started_at,
        finished_at,
    })
}

/// The columns of a [`JobView`], joined with the study for its name.
pub(super) const JOB_VIEW_SELECT: &str = "SELECT j.id, j.kind, j.study_id, s.name, j.state, j.progress_done, j.progress_total,
        j.attempts, j.max_attempts, j.lease_owner, j.error, j.created_at, j.started_at, j.finished_at
 FROM jobs j LEFT JOIN studies s ON s.id = j.study_id";

/// A claim candidate: (id, kind, params, study_id, state, attempts, max_attempts, lease_owner).
type CandidateRow = (
    Uuid,
    String,
    String,
    Option<Uuid>,
    String,
    i64,
    i64,
    Option<String>,
);

/// The claim's candidate query: the oldest job of the given kinds that is queued, or running
/// under an expired lease. Kinds are bound from `$2` on (`$1` is now); PostgreSQL locks the
/// row and skips rows another claim holds.
fn candidate_sql(kinds: usize, skip_locked: bool) -> String {
    let placeholders: Vec<String> = (0..kinds).map(|i| format!("${}", i + 2)).collect();
    format!(
        "SELECT id, kind, params, study_id, state, attempts, max_attempts, lease_owner FROM jobs
         WHERE kind IN ({})
           AND (state = 'queued' OR (state = 'running' AND lease_expires_at < $1))
         ORDER BY created_at, id LIMIT 1{}",
        placeholders.join(", "),
        if skip_locked {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        }
    )
}

/// The error stored on a job whose worker stopped renewing its lease on the last attempt.
pub fn stopped_responding_error(owner: Option<&str>, attempts: i64, max_attempts: i64) -> String {
    let worker = match owner {
        Some(owner) => format!("the worker running it ({owner})"),
        None => "the worker running it".to_string(),
    };
    format!("{worker} stopped responding ({attempts} of {max_attempts} attempts)")
}

/// Where a failed attempt leaves its job: queued again when the error is worth retrying and
/// attempts remain, failed for good otherwise.
pub fn state_after_failure(retry: bool, attempts: i64, max_attempts: i64) -> JobState {
    if retry && attempts < max_attempts {
        JobState::Queued
    } else {
        JobState::Failed
    }
}

/// Turns "no row matched the lease" into [`StoreError::LeaseLost`].
fn fenced(rows_affected: u64) -> StoreResult<()> {
    if rows_affected == 0 {
        Err(StoreError::LeaseLost)
    } else {
        Ok(())
    }
}

impl Store {
    /// Adds a job to the queue; a worker that handles its kind claims it. Returns its id.
    pub async fn enqueue_job(&self, job: &NewJob, now: i64) -> StoreResult<Uuid> {
        let ids = self.enqueue_jobs(std::slice::from_ref(job), now).await?;
        ids.into_iter()
            .next()
            .ok_or_else(|| StoreError::Invalid("no job was queued".into()))
    }

    /// Adds several jobs to the queue in one transaction (a training run repeated over seeds
    /// is one job per seed): all are queued or none. Returns their ids in order.
    pub async fn enqueue_jobs(&self, jobs: &[NewJob], now: i64) -> StoreResult<Vec<Uuid>> {
        if jobs
            .iter()
            .any(|job| job.max_attempts <= 0 || job.progress_total < 0)
        {
            return Err(StoreError::Invalid(
                "a job needs at least one attempt and a non-negative progress total".into(),
            ));
        }
        let ids: Vec<Uuid> = jobs.iter().map(|_| Uuid::now_v7()).collect();
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            for (id, job) in ids.iter().zip(jobs) {
                sqlx::query(
                    "INSERT INTO jobs (id, kind, params, study_id, state, progress_total, max_attempts, created_by, created_at)
                     VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8)",
                )
                .bind(*id)
                .bind(job.kind.as_str())
                .bind(job.params.to_string())
                .bind(job.study_id)
                .bind(job.progress_total)
                .bind(job.max_attempts)
                .bind(job.created_by)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(ids)
    }

    /// Atomically takes the oldest job of `kinds` that is queued, or whose worker's lease
    /// expired (a dead worker's job), under a fresh lease of `lease_ms` for `worker_id`.
    /// An expired job that already used all its attempts is marked failed instead and the next
    /// candidate is tried. `None` when there is nothing to do.
    pub async fn claim_job(
        &self,
        worker_id: &str,
        kinds: &[JobKind],
        lease_ms: i64,
        now: i64,
    ) -> StoreResult<Option<ClaimedJob>> {
        if kinds.is_empty() {
            return Ok(None);
        }
        dispatch!(self, pool, backend => {
            let sql = candidate_sql(kinds.len(), backend == super::Backend::Postgres);
            let mut tx = self.begin_write(pool).await?;
            loop {
                let mut query = sqlx::query_as::<_, CandidateRow>(AssertSqlSafe(sql.as_str())).bind(now);
                for kind in kinds {
                    query = query.bind(kind.as_str());
                }
                let Some((id, kind, params, study_id, state, attempts, max_attempts, owner)) =
                    query.fetch_optional(&mut *tx).await?
                else {
                    tx.commit().await?;
                    return Ok(None);
                };
                if state == JobState::Running.as_str() && attempts >= max_attempts {
                    let error = stopped_responding_error(owner.as_deref(), attempts, max_attempts);
                    tracing::warn!(job = %id, %error, "job failed: its worker's lease expired on the last attempt");
                    sqlx::query(
                        "UPDATE jobs SET state = 'failed', error = $1, finished_at = $2,
                                         lease_token = NULL, lease_expires_at = NULL
                         WHERE id = $3",
                    )
                    .bind(&error)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    continue;
                }
                let token = Uuid::new_v4();
                sqlx::query(
                    "UPDATE jobs SET state = 'running', lease_owner = $1, lease_token = $2,
                                     lease_expires_at = $3, attempts = attempts + 1,
                                     started_at = COALESCE(started_at, $4)
                     WHERE id = $5",
                )
                .bind(worker_id)
                .bind(token)
                .bind(now.saturating_add(lease_ms))
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                let params = serde_json::from_str(&params).map_err(|e| {
                    StoreError::Database(sqlx::Error::Decode(
                        format!("job {id} has unreadable parameters: {e}").into(),
                    ))
                })?;
                return Ok(Some(ClaimedJob {
                    id,
                    kind: parse_stored(&kind)?,
                    params,
                    study_id,
                    attempt: attempts + 1,
                    lease: Lease { job_id: id, token },
                }));
            }
        })
    }

    /// Pushes the lease's expiry to `now + lease_ms`; the worker's heartbeat. Fails with
    /// [`StoreError::LeaseLost`] when the lease is no longer this worker's.
    pub async fn renew_lease(&self, lease: &Lease, lease_ms: i64, now: i64) -> StoreResult<()> {
        let changed = dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let changed = sqlx::query(
                "UPDATE jobs SET lease_expires_at = $1
                 WHERE id = $2 AND lease_token = $3 AND state = 'running'",
            )
            .bind(now.saturating_add(lease_ms))
            .bind(lease.job_id)
            .bind(lease.token)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            changed
        });
        fenced(changed)
    }

    /// Records how far the job has got (units done of total), fenced by the lease.
    pub async fn set_progress(&self, lease: &Lease, done: i64, total: i64) -> StoreResult<()> {
        if done < 0 || total < 0 {
            return Err(StoreError::Invalid(format!(
                "progress must not be negative (got {done} of {total})"
            )));
        }
        let changed = dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let changed = sqlx::query(
                "UPDATE jobs SET progress_done = $1, progress_total = $2
                 WHERE id = $3 AND lease_token = $4 AND state = 'running'",
            )
            .bind(done)
            .bind(total)
            .bind(lease.job_id)
            .bind(lease.token)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            changed
        });
        fenced(changed)
    }

    /// Marks the job succeeded and gives up its lease (the bar shows full). The worker's name
    /// stays for the jobs page.
    pub async fn finish_job(&self, lease: &Lease, now: i64) -> StoreResult<()> {
        let changed = dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let changed = sqlx::query(
                "UPDATE jobs SET state = 'succeeded', finished_at = $1, error = NULL,
                                 progress_done = CASE WHEN progress_done < progress_total
                                                      THEN progress_total ELSE progress_done END,
                                 lease_token = NULL, lease_expires_at = NULL
                 WHERE id = $2 AND lease_token = $3 AND state = 'running'",
            )
            .bind(now)
            .bind(lease.job_id)
            .bind(lease.token)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            changed
        });
        fenced(changed)
    }

    /// Records a failed attempt with its error and gives up the lease: the job is queued again
    /// when `retry` and attempts remain (the error stays visible meanwhile), failed otherwise.
    /// Returns the state the job is left in.
    pub async fn fail_job(
        &self,
        lease: &Lease,
        error: &str,
        retry: bool,
        now: i64,
    ) -> StoreResult<JobState> {
        dispatch!(self, pool, backend => {
            let mut tx = self.begin_write(pool).await?;
            let row: Option<(i64, i64)> = sqlx::query_as(backend.pick(
                "SELECT attempts, max_attempts FROM jobs
                 WHERE id = $1 AND lease_token = $2 AND state = 'running'",
                "SELECT attempts, max_attempts FROM jobs
                 WHERE id = $1 AND lease_token = $2 AND state = 'running' FOR UPDATE",
            ))
            .bind(lease.job_id)
            .bind(lease.token)
            .fetch_optional(&mut *tx)
            .await?;
            let (attempts, max_attempts) = row.ok_or(StoreError::LeaseLost)?;
            let state = state_after_failure(retry, attempts, max_attempts);
            let finished_at = (state == JobState::Failed).then_some(now);
            let changed = sqlx::query(
                "UPDATE jobs SET state = $1, error = $2, finished_at = $3,
                                 lease_token = NULL, lease_expires_at = NULL
                 WHERE id = $4 AND lease_token = $5 AND state = 'running'",
            )
            .bind(state.as_str())
            .bind(error)
            .bind(finished_at)
            .bind(lease.job_id)
            .bind(lease.token)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            fenced(changed)?;
            tx.commit().await?;
            Ok(state)
        })
    }

    /// Hands a running job back to the queue without counting the attempt (the worker is
    /// shutting down gracefully); another worker, or this one after a restart, claims it.
    pub async fn release_job(&self, lease: &Lease) -> StoreResult<()> {
        let changed = dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let changed = sqlx::query(
                "UPDATE jobs SET state = 'queued',
                                 attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,
                                 lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
                 WHERE id = $1 AND lease_token = $2 AND state = 'running'",
            )
            .bind(lease.job_id)
            .bind(lease.token)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            changed
        });
        fenced(changed)
    }

    /// Keys of the job's chunks whose results are committed: a retried job skips them.
    pub async fn chunks_done(&self, job_id: Uuid) -> StoreResult<HashSet<String>> {
        let rows: Vec<(String,)> = dispatch!(self, pool, _b => {
            sqlx::query_as("SELECT chunk_key FROM job_chunks WHERE job_id = $1")
                .bind(job_id)
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(|(key,)| key).collect())
    }

    /// The newest `limit` jobs, newest first (the admin jobs page).
    pub async fn jobs(&self, limit: i64) -> StoreResult<Vec<JobView>> {
        let rows: Vec<JobViewRow> = dispatch!(self, pool, _b => {
            sqlx::query_as(AssertSqlSafe(format!(
                "{JOB_VIEW_SELECT} ORDER BY j.created_at DESC, j.id DESC LIMIT $1"
            )))
            .bind(limit.max(0))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(job_view_from_row).collect()
    }

    /// One job.
    pub async fn job(&self, id: Uuid) -> StoreResult<JobView> {
        let row: Option<JobViewRow> = dispatch!(self, pool, _b => {
            sqlx::query_as(AssertSqlSafe(format!("{JOB_VIEW_SELECT} WHERE j.id = $1")))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        job_view_from_row(row.ok_or(StoreError::NotFound("job"))?)
    }

    /// A study's jobs, newest first (its page shows what is being generated for it).
    pub async fn jobs_for_study(&self, study_id: Uuid) -> StoreResult<Vec<JobView>> {
        let rows: Vec<JobViewRow> = dispatch!(self, pool, _b => {
            sqlx::query_as(AssertSqlSafe(format!(
                "{JOB_VIEW_SELECT} WHERE j.study_id = $1 ORDER BY j.created_at DESC, j.id DESC"
            )))
            .bind(study_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(job_view_from_row).collect()
    }

    /// Cancels a queued or running job. Its lease is cleared, so a worker running it finds the
    /// lease gone at its next fenced write (or heartbeat) and stops. A job that already ended
    /// is a conflict.
    pub async fn cancel_job(&self, id: Uuid, now: i64) -> StoreResult<()> {
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let changed = sqlx::query(
                "UPDATE jobs SET state = 'cancelled', finished_at = $1,
                                 lease_token = NULL, lease_expires_at = NULL
                 WHERE id = $2 AND state IN ('queued', 'running')",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 0 {
                let state: Option<(String,)> = sqlx::query_as("SELECT state FROM jobs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                return match state {
                    None => Err(StoreError::NotFound("job")),
                    Some((state,)) => Err(StoreError::Conflict(format!(
                        "the job has already ended ({state}); only queued or running jobs can be cancelled"
                    ))),
                };
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_attempts_are_retried_only_while_attempts_remain() {
        assert_eq!(state_after_failure(true, 1, 3), JobState::Queued);
        assert_eq!(state_after_failure(true, 2, 3), JobState::Queued);
        assert_eq!(state_after_failure(true, 3, 3), JobState::Failed);
        assert_eq!(state_after_failure(false, 1, 3), JobState::Failed);
    }

    #[test]
    fn stopped_worker_error_names_worker_and_attempts() {
        assert_eq!(
            stopped_responding_error(Some("gpu-1-42-ab12"), 3, 3),
            "the worker running it (gpu-1-42-ab12) stopped responding (3 of 3 attempts)"
        );
        assert_eq!(
            stopped_responding_error(None, 2, 2),
            "the worker running it stopped responding (2 of 2 attempts)"
        );
    }

    #[test]
    fn candidate_query_binds_kinds_after_now_and_locks_only_on_postgres() {
        let sqlite = candidate_sql(2, false);
        assert!(sqlite.contains("kind IN ($2, $3)"), "{sqlite}");
        assert!(!sqlite.contains("SKIP LOCKED"));
        let postgres = candidate_sql(1, true);
        assert!(postgres.contains("kind IN ($2)"), "{postgres}");
        assert!(
            postgres.ends_with("LIMIT 1 FOR UPDATE SKIP LOCKED"),
            "{postgres}"
        );
    }

    #[test]
    fn no_matching_row_means_the_lease_is_lost() {
        assert!(matches!(fenced(0), Err(StoreError::LeaseLost)));
        assert!(fenced(1).is_ok());
    }
}

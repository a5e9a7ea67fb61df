//! Serving items to raters and storing their judgements: the concurrency-critical part.
//!
//! Invariants, enforced by the database and not only by this code:
//! - a solution never holds more live assignments (active or judged) than the study wants:
//!   slots are taken with a conditional `UPDATE … WHERE slots_taken < K`;
//! - a rater never gets two solutions of one problem in a study: `UNIQUE (study, rater, problem)`;
//! - a rater has at most one active item: a partial unique index;
//! - an assignment has at most one judgement: `UNIQUE (assignment_id)`, and the assignment's
//!   state moves `active → judged` in the same transaction.

use rand::Rng;
use uuid::Uuid;

use super::{Backend, Store, StoreError, StoreResult, WritePool, dispatch};
use crate::domain::{StudyStatus, Verdict, parse_stored};
use crate::judging::{self, RequestedVerdict, Stratum};

/// How often a transaction that lost a race with another one is retried from the start.
const MAX_ATTEMPTS: usize = 8;
/// How many candidate solutions of one stratum are tried when concurrent raters fill them.
const CANDIDATES_PER_STRATUM: usize = 4;

/// An item as a rater may see it: nothing about its origin or correctness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedItem {
    /// Handle the answer refers to (random, reveals nothing).
    pub assignment_id: Uuid,
    /// The problem's question.
    pub question: String,
    /// The solution to judge.
    pub solution: String,
    /// When the server served it (Unix ms).
    pub served_at: i64,
    /// When the answer is due (Unix ms); later answers are stored as timeouts.
    pub deadline: i64,
    /// The study's limit, for the countdown's scale.
    pub time_limit_ms: i64,
    /// How many items this rater has finished in the study.
    pub items_done: i64,
}

/// What the server has for a rater who asks for an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeOutcome {
    /// The rater's current item (the same one again after a reload, until its deadline).
    Item(ServedItem),
    /// Nothing is left that this rater may judge.
    Finished {
        /// Items this rater finished.
        items_done: i64,
    },
    /// The study no longer serves items.
    StudyClosed,
}

/// What was stored for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitOutcome {
    /// The stored verdict (`timeout` when the answer came after the deadline).
    pub verdict: Verdict,
    /// True when this answer repeated one already stored; nothing changed.
    pub duplicate: bool,
}

/// Runs `attempt` until it succeeds or fails with a non-retryable error.
async fn with_retries<T, F, Fut>(mut attempt: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<T>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(e) if e.is_retryable() && tries < MAX_ATTEMPTS => {
                tracing::debug!(error = %e, tries, "retrying after a concurrent clash");
                let backoff_ms = rand::rng().random_range(1..10 * tries as u64);
                tokio::time::sleep(std::time::Duration::from_millis(backoff_ms)).await;
            }
            other => return other,
        }
    }
}

impl Store {
    /// Serves `rater` their current item, or a new one. Abandoned items (deadline + grace
    /// passed without an answer) return to the pool first. A rater's own item whose deadline
    /// passed is stored as a timeout before the next one is chosen. The new item balances the
    /// rater's mix over (checkpoint, correctness) strata and respects all invariants above.
    pub async fn serve_item(
        &self,
        rater_id: Uuid,
        study_id: Uuid,
        now: i64,
    ) -> StoreResult<ServeOutcome> {
        with_retries(|| self.serve_item_once(rater_id, study_id, now)).await
    }

    async fn serve_item_once(
        &self,
        rater_id: Uuid,
        study_id: Uuid,
        now: i64,
    ) -> StoreResult<ServeOutcome> {
        let random_start: i64 = rand::rng().random_range(0..i64::MAX);
        let mut rng_seed: u64 = rand::rng().random();
        dispatch!(self, pool, backend => {
            let mut tx = pool.begin_write().await?;
            let study: Option<(i64, i64, i64, String)> = sqlx::query_as(
                "SELECT time_limit_ms, judgements_per_solution, reclaim_grace_ms, status FROM studies WHERE id = $1",
            )
            .bind(study_id)
            .fetch_optional(&mut *tx)
            .await?;
            let (time_limit_ms, wanted, grace_ms, status) = study.ok_or(StoreError::NotFound("study"))?;
            let status: StudyStatus = parse_stored(&status)?;

            // 1. Abandoned items give their slot back.
            let sweep = backend.pick(
                "UPDATE assignments SET state = 'abandoned'
                 WHERE study_id = $1 AND state = 'active' AND deadline < $2 AND rater_id <> $3
                 RETURNING solution_id",
                "UPDATE assignments SET state = 'abandoned'
                 WHERE id IN (SELECT id FROM assignments
                              WHERE study_id = $1 AND state = 'active' AND deadline < $2 AND rater_id <> $3
                              FOR UPDATE SKIP LOCKED)
                 RETURNING solution_id",
            );
            let freed: Vec<(Uuid,)> = sqlx::query_as(sweep)
                .bind(study_id)
                .bind(judging::reclaim_cutoff(now, grace_ms))
                .bind(rater_id)
                .fetch_all(&mut *tx)
                .await?;
            for (solution_id,) in freed {
                sqlx::query("UPDATE study_solutions SET slots_taken = slots_taken - 1 WHERE study_id = $1 AND solution_id = $2")
                    .bind(study_id)
                    .bind(solution_id)
                    .execute(&mut *tx)
                    .await?;
            }

            // 2. The rater's current item: the same one again until its deadline, else a timeout.
            let current: Option<(Uuid, Uuid, i64, i64)> = sqlx::query_as(
                "SELECT id, solution_id, served_at, deadline FROM assignments WHERE rater_id = $1 AND state = 'active'",
            )
            .bind(rater_id)
            .fetch_optional(&mut *tx)
            .await?;
            let mut resume = None;
            if let Some((assignment_id, solution_id, served_at, deadline)) = current {
                if now <= deadline {
                    resume = Some((assignment_id, solution_id, served_at, deadline));
                } else {
                    sqlx::query("UPDATE assignments SET state = 'judged' WHERE id = $1")
                        .bind(assignment_id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(
                        "INSERT INTO judgements (id, assignment_id, study_id, rater_id, solution_id, verdict, served_at,
                                                 deadline, submitted_at, server_elapsed_ms, client_elapsed_ms)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, NULL)",
                    )
                    .bind(Uuid::now_v7())
                    .bind(assignment_id)
                    .bind(study_id)
                    .bind(rater_id)
                    .bind(solution_id)
                    .bind(Verdict::Timeout.as_str())
                    .bind(served_at)
                    .bind(deadline)
                    .bind(judging::server_elapsed_ms(served_at, now, deadline, Verdict::Timeout))
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("UPDATE study_solutions SET judged = judged + 1 WHERE study_id = $1 AND solution_id = $2")
                        .bind(study_id)
                        .bind(solution_id)
                        .execute(&mut *tx)
                        .await?;
                }
            }

            let (items_done,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM judgements WHERE rater_id = $1")
                .bind(rater_id)
                .fetch_one(&mut *tx)
                .await?;

            let chosen = match resume {
                Some(found) => Some(found),
                None if status == StudyStatus::Closed => {
                    tx.commit().await?;
                    return Ok(ServeOutcome::StudyClosed);
                }
                None => {
                    // 3. Balance: strata this rater has seen least come first.
                    let present: Vec<(Uuid, bool)> =
                        sqlx::query_as("SELECT checkpoint_id, is_correct FROM study_strata WHERE study_id = $1")
                            .bind(study_id)
                            .fetch_all(&mut *tx)
                            .await?;
                    let seen: Vec<(Uuid, bool, i64)> = sqlx::query_as(
                        "SELECT ss.checkpoint_id, ss.is_correct, COUNT(*)
                         FROM assignments a
                         JOIN study_solutions ss ON ss.study_id = a.study_id AND ss.solution_id = a.solution_id
                         WHERE a.study_id = $1 AND a.rater_id = $2 AND a.state <> 'abandoned'
                         GROUP BY ss.checkpoint_id, ss.is_correct",
                    )
                    .bind(study_id)
                    .bind(rater_id)
                    .fetch_all(&mut *tx)
                    .await?;
                    let counts: Vec<(Stratum, i64)> = present
                        .into_iter()
                        .map(|(checkpoint_id, is_correct)| {
                            let n = seen
                                .iter()
                                .find(|(c, k, _)| *c == checkpoint_id && *k == is_correct)
                                .map_or(0, |(_, _, n)| *n);
                            (Stratum { checkpoint_id, is_correct }, n)
                        })
                        .collect();
                    let order = {
                        use rand::SeedableRng;
                        rng_seed = rng_seed.wrapping_add(1);
                        judging::strata_in_serving_order(&counts, &mut rand::rngs::StdRng::seed_from_u64(rng_seed))
                    };

                    // 4. Claim a slot of a solution in the first stratum that has one for this rater.
                    let mut claimed = None;
                    'strata: for stratum in order {
                        for from_key in [random_start, 0] {
                            let candidates: Vec<(Uuid,)> = sqlx::query_as(
                                "SELECT ss.solution_id FROM study_solutions ss
                                 WHERE ss.study_id = $1 AND ss.checkpoint_id = $2 AND ss.is_correct = $3
                                   AND ss.shuffle_key >= $4 AND ss.slots_taken < $5
                                   AND NOT EXISTS (SELECT 1 FROM assignments a
                                                   WHERE a.study_id = $1 AND a.rater_id = $6 AND a.problem_id = ss.problem_id)
                                 ORDER BY ss.shuffle_key LIMIT $7",
                            )
                            .bind(study_id)
                            .bind(stratum.checkpoint_id)
                            .bind(stratum.is_correct)
                            .bind(from_key)
                            .bind(wanted)
                            .bind(rater_id)
                            .bind(CANDIDATES_PER_STRATUM as i64)
                            .fetch_all(&mut *tx)
                            .await?;
                            for (solution_id,) in candidates {
                                let took = sqlx::query(
                                    "UPDATE study_solutions SET slots_taken = slots_taken + 1
                                     WHERE study_id = $1 AND solution_id = $2 AND slots_taken < $3",
                                )
                                .bind(study_id)
                                .bind(solution_id)
                                .bind(wanted)
                                .execute(&mut *tx)
                                .await?
                                .rows_affected();
                                if took == 1 {
                                    claimed = Some(solution_id);
                                    break 'strata;
                                }
                            }
                        }
                    }
                    match claimed {
                        None => {
                            tx.commit().await?;
                            return Ok(ServeOutcome::Finished { items_done });
                        }
                        Some(solution_id) => {
                            let assignment_id = Uuid::new_v4();
                            let deadline = judging::deadline_for(now, time_limit_ms);
                            sqlx::query(
                                "INSERT INTO assignments (id, study_id, rater_id, solution_id, problem_id, served_at, deadline, state)
                                 SELECT $1, $2, $3, $4, s.problem_id, $5, $6, 'active' FROM solutions s WHERE s.id = $4",
                            )
                            .bind(assignment_id)
                            .bind(study_id)
                            .bind(rater_id)
                            .bind(solution_id)
                            .bind(now)
                            .bind(deadline)
                            .execute(&mut *tx)
                            .await?;
                            Some((assignment_id, solution_id, now, deadline))
                        }
                    }
                }
            };
            let Some((assignment_id, solution_id, served_at, deadline)) = chosen else {
                return Err(StoreError::NotFound("item"));
            };
            let (question, solution): (String, String) = sqlx::query_as(
                "SELECT p.question, s.text FROM solutions s JOIN problems p ON p.id = s.problem_id WHERE s.id = $1",
            )
            .bind(solution_id)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(ServeOutcome::Item(ServedItem {
                assignment_id,
                question,
                solution,
                served_at,
                deadline,
                time_limit_ms,
                items_done,
            }))
        })
    }

    /// Stores a rater's answer to one of their items. After the deadline it is stored as
    /// `timeout`. Answering the same item again changes nothing and reports the stored verdict.
    /// An item whose slot was already given to someone else is `Gone`.
    pub async fn submit_judgement(
        &self,
        rater_id: Uuid,
        assignment_id: Uuid,
        requested: RequestedVerdict,
        client_elapsed_ms: Option<i64>,
        now: i64,
    ) -> StoreResult<SubmitOutcome> {
        with_retries(|| {
            self.submit_judgement_once(rater_id, assignment_id, requested, client_elapsed_ms, now)
        })
        .await
    }

    async fn submit_judgement_once(
        &self,
        rater_id: Uuid,
        assignment_id: Uuid,
        requested: RequestedVerdict,
        client_elapsed_ms: Option<i64>,
        now: i64,
    ) -> StoreResult<SubmitOutcome> {
        dispatch!(self, pool, _backend => {
            let mut tx = pool.begin_write().await?;
            let claimed: Option<(Uuid, Uuid, i64, i64)> = sqlx::query_as(
                "UPDATE assignments SET state = 'judged'
                 WHERE id = $1 AND rater_id = $2 AND state = 'active'
                 RETURNING study_id, solution_id, served_at, deadline",
            )
            .bind(assignment_id)
            .bind(rater_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((study_id, solution_id, served_at, deadline)) = claimed else {
                let existing: Option<(String, Option<String>)> = sqlx::query_as(
                    "SELECT a.state, j.verdict FROM assignments a LEFT JOIN judgements j ON j.assignment_id = a.id
                     WHERE a.id = $1 AND a.rater_id = $2",
                )
                .bind(assignment_id)
                .bind(rater_id)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                return match existing {
                    Some((_, Some(verdict))) => Ok(SubmitOutcome { verdict: parse_stored(&verdict)?, duplicate: true }),
                    Some(_) => Err(StoreError::Gone(
                        "the time for this item ran out and it was given to another rater".into(),
                    )),
                    None => Err(StoreError::NotFound("item")),
                };
            };
            let (time_limit_ms,): (i64,) = sqlx::query_as("SELECT time_limit_ms FROM studies WHERE id = $1")
                .bind(study_id)
                .fetch_one(&mut *tx)
                .await?;
            let verdict = judging::recorded_verdict(requested, now, deadline);
            sqlx::query(
                "INSERT INTO judgements (id, assignment_id, study_id, rater_id, solution_id, verdict, served_at, deadline,
                                         submitted_at, server_elapsed_ms, client_elapsed_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(Uuid::now_v7())
            .bind(assignment_id)
            .bind(study_id)
            .bind(rater_id)
            .bind(solution_id)
            .bind(verdict.as_str())
            .bind(served_at)
            .bind(deadline)
            .bind(now)
            .bind(judging::server_elapsed_ms(served_at, now, deadline, verdict))
            .bind(judging::plausible_client_elapsed(client_elapsed_ms, time_limit_ms))
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE study_solutions SET judged = judged + 1 WHERE study_id = $1 AND solution_id = $2")
                .bind(study_id)
                .bind(solution_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(SubmitOutcome { verdict, duplicate: false })
        })
    }
}

/// Re-exported so callers can name the backend in diagnostics.
pub type StoreBackend = Backend;

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

use super::{Store, StoreError, StoreResult, dispatch};
use crate::domain::{StudyStatus, Verdict, parse_stored};
use crate::judging::{self, RequestedVerdict, Stratum};

/// How often a transaction that lost a race with another one is retried from the start.
const MAX_ATTEMPTS: usize = 8;

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

/// Stores one judgement; the assignment's move to `judged` happens in the same transaction.
const INSERT_JUDGEMENT: &str = "INSERT INTO judgements (id, assignment_id, study_id, rater_id, solution_id, verdict,
                                                       served_at, deadline, submitted_at, server_elapsed_ms,
                                                       client_elapsed_ms)
                                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// What serving needs to know before it takes the write lock; read from the read pool so the
/// single writer only does writes.
struct ServingContext {
    time_limit_ms: i64,
    wanted: i64,
    grace_ms: i64,
    status: StudyStatus,
    items_done: i64,
    earliest_active_deadline: Option<i64>,
    current: Option<(Uuid, Uuid, i64, i64)>,
}

type ContextRow = (
    i64,
    i64,
    i64,
    String,
    i64,
    Option<i64>,
    Option<Uuid>,
    Option<Uuid>,
    Option<i64>,
    Option<i64>,
);

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

    async fn serving_context(&self, rater_id: Uuid, study_id: Uuid) -> StoreResult<ServingContext> {
        let row: Option<ContextRow> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT s.time_limit_ms, s.judgements_per_solution, s.reclaim_grace_ms, s.status,
                        (SELECT COUNT(*) FROM judgements j WHERE j.rater_id = $2),
                        (SELECT MIN(x.deadline) FROM assignments x WHERE x.study_id = $1 AND x.state = 'active'),
                        a.id, a.solution_id, a.served_at, a.deadline
                 FROM studies s LEFT JOIN assignments a ON a.rater_id = $2 AND a.state = 'active'
                 WHERE s.id = $1",
            )
            .bind(study_id)
            .bind(rater_id)
            .fetch_optional(pool)
            .await?
        });
        let (
            time_limit_ms,
            wanted,
            grace_ms,
            status,
            items_done,
            earliest,
            id,
            solution,
            served_at,
            deadline,
        ) = row.ok_or(StoreError::NotFound("study"))?;
        let current = match (id, solution, served_at, deadline) {
            (Some(id), Some(solution), Some(served_at), Some(deadline)) => {
                Some((id, solution, served_at, deadline))
            }
            _ => None,
        };
        Ok(ServingContext {
            time_limit_ms,
            wanted,
            grace_ms,
            status: parse_stored(&status)?,
            items_done,
            earliest_active_deadline: earliest,
            current,
        })
    }

    /// The rater's strata in serving order: least seen first (a hint; read outside the write
    /// transaction, so a concurrent serve of the same rater may make it slightly stale).
    async fn strata_for(&self, rater_id: Uuid, study_id: Uuid) -> StoreResult<Vec<Stratum>> {
        let rows: Vec<(Uuid, bool, i64)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT st.checkpoint_id, st.is_correct,
                        (SELECT COUNT(*) FROM assignments a
                          WHERE a.rater_id = $2 AND a.checkpoint_id = st.checkpoint_id
                            AND a.is_correct = st.is_correct AND a.state <> 'abandoned')
                 FROM study_strata st WHERE st.study_id = $1",
            )
            .bind(study_id)
            .bind(rater_id)
            .fetch_all(pool)
            .await?
        });
        let counts: Vec<(Stratum, i64)> = rows
            .into_iter()
            .map(|(checkpoint_id, is_correct, seen)| {
                (
                    Stratum {
                        checkpoint_id,
                        is_correct,
                    },
                    seen,
                )
            })
            .collect();
        let seed: u64 = rand::rng().random();
        use rand::SeedableRng;
        Ok(judging::strata_in_serving_order(
            &counts,
            &mut rand::rngs::StdRng::seed_from_u64(seed),
        ))
    }

    async fn item_text(&self, solution_id: Uuid) -> StoreResult<(String, String)> {
        Ok(dispatch!(self, pool, _b => {
            sqlx::query_as("SELECT p.question, s.text FROM solutions s JOIN problems p ON p.id = s.problem_id WHERE s.id = $1")
                .bind(solution_id)
                .fetch_one(pool)
                .await?
        }))
    }

    async fn serve_item_once(
        &self,
        rater_id: Uuid,
        study_id: Uuid,
        now: i64,
    ) -> StoreResult<ServeOutcome> {
        let context = self.serving_context(rater_id, study_id).await?;
        let mut items_done = context.items_done;
        let mut expired_own = None;
        match context.current {
            // Reload or resume: the same item, the same deadline; nothing to write.
            Some((assignment_id, solution_id, served_at, deadline)) if now <= deadline => {
                let (question, solution) = self.item_text(solution_id).await?;
                return Ok(ServeOutcome::Item(ServedItem {
                    assignment_id,
                    question,
                    solution,
                    served_at,
                    deadline,
                    time_limit_ms: context.time_limit_ms,
                    items_done,
                }));
            }
            Some(expired) => expired_own = Some(expired),
            None => {}
        }
        let strata = if context.status == StudyStatus::Open {
            self.strata_for(rater_id, study_id).await?
        } else {
            Vec::new()
        };
        let cutoff = judging::reclaim_cutoff(now, context.grace_ms);
        let sweep_needed = context.earliest_active_deadline.is_some_and(|d| d < cutoff);
        let random_start: i64 = rand::rng().random_range(0..i64::MAX);

        let claimed: Option<(Uuid, Uuid, i64)> = dispatch!(self, pool, backend => {
            let mut tx = self.begin_write(pool).await?;
            // 1. Abandoned items of other raters give their slot back.
            if sweep_needed {
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
                let freed: Vec<(Uuid,)> =
                    sqlx::query_as(sweep).bind(study_id).bind(cutoff).bind(rater_id).fetch_all(&mut *tx).await?;
                for (solution_id,) in freed {
                    sqlx::query(
                        "UPDATE study_solutions SET slots_taken = slots_taken - 1 WHERE study_id = $1 AND solution_id = $2",
                    )
                    .bind(study_id)
                    .bind(solution_id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            // 2. The rater's own item ran out: stored as a timeout (unless an answer just won).
            if let Some((assignment_id, solution_id, served_at, deadline)) = expired_own {
                let closed = sqlx::query("UPDATE assignments SET state = 'judged' WHERE id = $1 AND state = 'active'")
                    .bind(assignment_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if closed == 1 {
                    // No answer arrived: `submitted_at` and the client's time stay empty.
                    sqlx::query(INSERT_JUDGEMENT)
                        .bind(Uuid::now_v7())
                        .bind(assignment_id)
                        .bind(study_id)
                        .bind(rater_id)
                        .bind(solution_id)
                        .bind(Verdict::Timeout.as_str())
                        .bind(served_at)
                        .bind(deadline)
                        .bind(None::<i64>)
                        .bind(judging::server_elapsed_ms(served_at, now, deadline, Verdict::Timeout))
                        .bind(None::<i64>)
                        .execute(&mut *tx)
                        .await?;
                }
                items_done += 1;
            }
            // 3. Claim a slot of an available solution, trying strata in the rater's order; the
            //    conditional update re-checks the quota under the row lock.
            let mut claimed = None;
            'strata: for stratum in &strata {
                for from_key in [random_start, 0] {
                    let row: Option<(Uuid, Uuid)> = sqlx::query_as(
                        "UPDATE study_solutions SET slots_taken = slots_taken + 1
                         WHERE study_id = $1 AND slots_taken < $5 AND solution_id = (
                             SELECT ss.solution_id FROM study_solutions ss
                             WHERE ss.study_id = $1 AND ss.checkpoint_id = $2 AND ss.is_correct = $3
                               AND ss.shuffle_key >= $4 AND ss.slots_taken < $5
                               AND NOT EXISTS (SELECT 1 FROM assignments a
                                               WHERE a.study_id = $1 AND a.rater_id = $6 AND a.problem_id = ss.problem_id)
                             ORDER BY ss.shuffle_key LIMIT 1)
                         RETURNING solution_id, problem_id",
                    )
                    .bind(study_id)
                    .bind(stratum.checkpoint_id)
                    .bind(stratum.is_correct)
                    .bind(from_key)
                    .bind(context.wanted)
                    .bind(rater_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some((solution_id, problem_id)) = row {
                        let assignment_id = Uuid::new_v4();
                        sqlx::query(
                            "INSERT INTO assignments (id, study_id, rater_id, solution_id, problem_id, checkpoint_id,
                                                      is_correct, served_at, deadline, state)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active')",
                        )
                        .bind(assignment_id)
                        .bind(study_id)
                        .bind(rater_id)
                        .bind(solution_id)
                        .bind(problem_id)
                        .bind(stratum.checkpoint_id)
                        .bind(stratum.is_correct)
                        .bind(now)
                        .bind(judging::deadline_for(now, context.time_limit_ms))
                        .execute(&mut *tx)
                        .await?;
                        claimed = Some((assignment_id, solution_id, judging::deadline_for(now, context.time_limit_ms)));
                        break 'strata;
                    }
                }
            }
            tx.commit().await?;
            claimed
        });

        match claimed {
            Some((assignment_id, solution_id, deadline)) => {
                let (question, solution) = self.item_text(solution_id).await?;
                Ok(ServeOutcome::Item(ServedItem {
                    assignment_id,
                    question,
                    solution,
                    served_at: now,
                    deadline,
                    time_limit_ms: context.time_limit_ms,
                    items_done,
                }))
            }
            None if context.status == StudyStatus::Closed => Ok(ServeOutcome::StudyClosed),
            None => Ok(ServeOutcome::Finished { items_done }),
        }
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
        let outcome: Option<SubmitOutcome> = dispatch!(self, pool, _backend => {
            let mut tx = self.begin_write(pool).await?;
            let claimed: Option<(Uuid, Uuid, i64, i64, i64)> = sqlx::query_as(
                "UPDATE assignments SET state = 'judged'
                 WHERE id = $1 AND rater_id = $2 AND state = 'active'
                 RETURNING study_id, solution_id, served_at, deadline,
                           (SELECT s.time_limit_ms FROM studies s WHERE s.id = assignments.study_id)",
            )
            .bind(assignment_id)
            .bind(rater_id)
            .fetch_optional(&mut *tx)
            .await?;
            match claimed {
                None => {
                    tx.rollback().await?;
                    None
                }
                Some((study_id, solution_id, served_at, deadline, time_limit_ms)) => {
                    let verdict = judging::recorded_verdict(requested, now, deadline);
                    sqlx::query(INSERT_JUDGEMENT)
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
                    tx.commit().await?;
                    Some(SubmitOutcome { verdict, duplicate: false })
                }
            }
        });
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
        // Not active: a repeat of a stored answer, an item that was reassigned, or not theirs.
        let existing: Option<(String, Option<String>)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT a.state, j.verdict FROM assignments a LEFT JOIN judgements j ON j.assignment_id = a.id
                 WHERE a.id = $1 AND a.rater_id = $2",
            )
            .bind(assignment_id)
            .bind(rater_id)
            .fetch_optional(pool)
            .await?
        });
        match existing {
            Some((_, Some(verdict))) => Ok(SubmitOutcome {
                verdict: parse_stored(&verdict)?,
                duplicate: true,
            }),
            Some(_) => Err(StoreError::Gone(
                "the time for this item ran out and it was given to another rater".into(),
            )),
            None => Err(StoreError::NotFound("item")),
        }
    }
}

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

use super::writer::{ClaimRequest, JudgeRequest};
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

    /// The rater's strata in serving order: least shown first (every item served counts, also
    /// one the rater abandoned; an index-only count). A hint, read outside the write
    /// transaction, so a concurrent serve of the same rater may make it slightly stale.
    async fn strata_for(&self, rater_id: Uuid, study_id: Uuid) -> StoreResult<Vec<Stratum>> {
        let rows: Vec<(Uuid, bool, i64)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT st.checkpoint_id, st.is_correct,
                        (SELECT COUNT(*) FROM assignments a
                          WHERE a.rater_id = $2 AND a.checkpoint_id = st.checkpoint_id
                            AND a.is_correct = st.is_correct)
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
        Ok(judging::strata_in_serving_order(&counts, &mut rand::rng()))
    }

    /// The question and the solution as the rater sees them (see `problems::for_raters`).
    async fn item_text(&self, solution_id: Uuid) -> StoreResult<(String, String)> {
        let (question, solution): (String, String) = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT p.question, s.text FROM solutions s JOIN problems p ON p.id = s.problem_id WHERE s.id = $1",
            )
            .bind(solution_id)
            .fetch_one(pool)
            .await?
        });
        Ok((question, crate::problems::for_raters(&solution)))
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
        let random_start: i64 = rand::rng().random_range(0..i64::MAX);
        let claimed = self
            .writer
            .claim(ClaimRequest {
                rater_id,
                study_id,
                strata,
                wanted: context.wanted,
                now,
                time_limit_ms: context.time_limit_ms,
                random_start,
                sweep_cutoff: context
                    .earliest_active_deadline
                    .is_some_and(|d| d < cutoff)
                    .then_some(cutoff),
                expired_own,
            })
            .await?;
        if expired_own.is_some() {
            items_done += 1;
        }
        match claimed {
            Some(item) => {
                let (question, solution) = self.item_text(item.solution_id).await?;
                Ok(ServeOutcome::Item(ServedItem {
                    assignment_id: item.assignment_id,
                    question,
                    solution,
                    served_at: now,
                    deadline: item.deadline,
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
        let stored = self
            .writer
            .judge(JudgeRequest {
                rater_id,
                assignment_id,
                requested,
                client_elapsed_ms,
                now,
            })
            .await?;
        if let Some(verdict) = stored {
            return Ok(SubmitOutcome {
                verdict,
                duplicate: false,
            });
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

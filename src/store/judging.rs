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

use super::quality::{PracticeFeedback, RaterQualityState};
use super::writer::{ClaimRequest, JudgeRequest, abandon_item};
use super::{Store, StoreError, StoreResult, dispatch};
use crate::answers::{self, Answer, AnswerInput, AnswerRules};
use crate::arms::TimeLimits;
use crate::domain::{ArmDesign, QualityPurpose, StudyStatus, Verdict, parse_stored};
use crate::intake::IntakeStep;
use crate::judging::{self, Stratum};
use crate::quality;

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
    /// How many session items this rater has finished in the study (study and gold items
    /// alike, so a gold item's number looks like any other's).
    pub items_done: i64,
    /// Where in the rater protocol the item is.
    pub stage: Stage,
}

/// Where an item sits in the rater protocol. Gold items are `Session` items: nothing tells
/// them apart from study items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "stage", rename_all = "lowercase")]
pub enum Stage {
    /// Practice item `number` of `of`, answered with feedback.
    Practice {
        /// 1-based.
        number: i64,
        /// Practice items in all.
        of: i64,
    },
    /// Screening item `number` of `of`.
    Screening {
        /// 1-based.
        number: i64,
        /// Screening items in all.
        of: i64,
    },
    /// The timed session.
    Session,
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
    /// The rater did not reach the screening pass mark and may not judge study items.
    NotAdmitted,
    /// The rater reached the study's workload cap.
    WorkloadReached {
        /// Session items this rater finished.
        items_done: i64,
    },
    /// A suggested break: the next item comes when the rater asks to go on.
    Break {
        /// Session items this rater finished.
        items_done: i64,
    },
    /// The rater failed the silent gold items in a study where that ends their participation.
    FailedQuality,
    /// The participant has not finished what the study asks before items (consent,
    /// background questions, the comprehension check), or it ended their participation.
    Intake(IntakeStep),
}

/// What was stored for an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitOutcome {
    /// The stored verdict (`timeout` when the answer came after the deadline).
    pub verdict: Verdict,
    /// True when this answer repeated one already stored; nothing changed.
    pub duplicate: bool,
    /// The right answer, after a practice item only.
    pub feedback: Option<PracticeFeedback>,
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

/// Answer rules by rater (see [`Store::rater_answer_rules`]); bounded, emptied when full.
#[derive(Debug, Clone, Default)]
pub(crate) struct AnswerRulesCache(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<Uuid, AnswerRules>>>,
);

/// Raters whose rules are kept (a few MB at most).
const ANSWER_RULES_KEPT: usize = 100_000;

impl AnswerRulesCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Uuid, AnswerRules>> {
        // Each operation is one map lookup or insert: a panic cannot leave it half-done.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, rater_id: Uuid) -> Option<AnswerRules> {
        self.lock().get(&rater_id).copied()
    }

    fn keep(&self, rater_id: Uuid, rules: AnswerRules) {
        let mut kept = self.lock();
        if kept.len() >= ANSWER_RULES_KEPT {
            kept.clear();
        }
        kept.insert(rater_id, rules);
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
    protocol: quality::RaterProtocol,
    /// The study's time-limit arms (none: every item has `time_limit_ms`).
    limits: TimeLimits,
}

/// The serving context is read by column name (see `Store::serving_context`).
impl<'r, R> sqlx::FromRow<'r, R> for ServingContext
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let current = match (
            row.try_get::<Option<Uuid>, _>("current_id")?,
            row.try_get::<Option<Uuid>, _>("current_solution")?,
            row.try_get::<Option<i64>, _>("current_served_at")?,
            row.try_get::<Option<i64>, _>("current_deadline")?,
        ) {
            (Some(id), Some(solution), Some(served_at), Some(deadline)) => {
                Some((id, solution, served_at, deadline))
            }
            _ => None,
        };
        let status: String = row.try_get("status")?;
        let arms: String = row.try_get("time_limit_arms")?;
        let design: String = row.try_get("arm_design")?;
        Ok(ServingContext {
            time_limit_ms: row.try_get("time_limit_ms")?,
            wanted: row.try_get("judgements_per_solution")?,
            grace_ms: row.try_get("reclaim_grace_ms")?,
            status: parse_stored(&status)?,
            items_done: row.try_get("items_done")?,
            earliest_active_deadline: row.try_get("earliest_active_deadline")?,
            current,
            protocol: quality::RaterProtocol {
                practice_items: row.try_get("practice_items")?,
                screening_items: row.try_get("screening_items")?,
                screening_pass_accuracy: row.try_get("screening_pass_accuracy")?,
                gold_items: 0,
                gold_rate: row.try_get("gold_rate")?,
                max_rater_ms: row.try_get("max_rater_ms")?,
                break_every: row.try_get("break_every")?,
            },
            limits: TimeLimits {
                arms: TimeLimits::parse_arms(&arms).map_err(|e| sqlx::Error::Decode(e.into()))?,
                design: parse_stored(&design)?,
                block_items: row.try_get("arm_block_items")?,
            },
        })
    }
}

/// What a rater (or their client) is told when an answer comes after the grace.
pub const ANSWER_TOO_LATE: &str =
    "the time for this item ran out, so this answer was not stored; the item went back to the pool";

/// Whether the rater's own expired item (if any) is stored as a timeout when settled (within
/// the grace) rather than abandoned (after it): only a timeout counts as an item done.
fn settles_as_timeout(expired: Option<(Uuid, Uuid, i64, i64)>, now: i64, grace_ms: i64) -> bool {
    expired.is_some_and(|(_, _, _, deadline)| !judging::answer_refused(now, deadline, grace_ms))
}

/// Gold items answered count as session items (their numbers must look like any other's).
fn session_quality_items(quality: Option<&RaterQualityState>) -> i64 {
    quality.map_or(0, |q| q.answered(QualityPurpose::Gold))
}

impl Store {
    /// Serves `rater` their current item, or a new one. Abandoned items (deadline + grace
    /// passed without an answer) return to the pool first. A rater's own item whose deadline
    /// passed is stored as a timeout before the next one is chosen. The new item balances the
    /// rater's mix over (checkpoint, correctness) strata and respects all invariants above.
    /// The study's rater protocol comes first: practice, then screening (a rater below the pass
    /// mark is `NotAdmitted`), the workload cap, breaks, and gold items at the study's rate.
    pub async fn serve_item(
        &self,
        rater_id: Uuid,
        study_id: Uuid,
        now: i64,
    ) -> StoreResult<ServeOutcome> {
        self.serve_next(rater_id, study_id, now, false).await
    }

    /// [`Store::serve_item`], where `after_break` says the rater chose to go on after a
    /// suggested break (otherwise a due break is offered again).
    pub async fn serve_next(
        &self,
        rater_id: Uuid,
        study_id: Uuid,
        now: i64,
        after_break: bool,
    ) -> StoreResult<ServeOutcome> {
        with_retries(|| self.serve_item_once(rater_id, study_id, now, after_break, true)).await
    }

    /// The rater's running item once more, after an answer to it was refused (422): the same
    /// item and deadline, not counted as shown again (it never left the rater's screen).
    pub async fn serve_again(
        &self,
        rater_id: Uuid,
        study_id: Uuid,
        now: i64,
    ) -> StoreResult<ServeOutcome> {
        with_retries(|| self.serve_item_once(rater_id, study_id, now, false, false)).await
    }

    async fn serving_context(&self, rater_id: Uuid, study_id: Uuid) -> StoreResult<ServingContext> {
        let context: Option<ServingContext> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT s.time_limit_ms, s.judgements_per_solution, s.reclaim_grace_ms, s.status,
                        (SELECT COUNT(*) FROM judgements j WHERE j.rater_id = $2) AS items_done,
                        (SELECT MIN(x.deadline) FROM assignments x WHERE x.study_id = $1 AND x.state = 'active')
                            AS earliest_active_deadline,
                        a.id AS current_id, a.solution_id AS current_solution,
                        a.served_at AS current_served_at, a.deadline AS current_deadline,
                        s.practice_items, s.screening_items, s.screening_pass_accuracy, s.gold_rate,
                        s.max_rater_ms, s.break_every, s.time_limit_arms, s.arm_design, s.arm_block_items
                 FROM studies s LEFT JOIN assignments a ON a.rater_id = $2 AND a.state = 'active'
                 WHERE s.id = $1",
            )
            .bind(study_id)
            .bind(rater_id)
            .fetch_optional(pool)
            .await?
        });
        context.ok_or(StoreError::NotFound("study"))
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
    pub async fn item_text(&self, solution_id: Uuid) -> StoreResult<(String, String)> {
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
        after_break: bool,
        count_showing: bool,
    ) -> StoreResult<ServeOutcome> {
        let step = self.intake_step(rater_id, study_id).await?;
        if step != IntakeStep::Ready {
            return Ok(ServeOutcome::Intake(step));
        }
        let context = self.serving_context(rater_id, study_id).await?;
        let protocol = &context.protocol;
        let mut quality = if protocol.uses_quality_items() {
            Some(self.rater_quality_state(rater_id).await?)
        } else {
            None
        };
        // An unanswered quality item: the same again until its deadline, then a timeout.
        if let Some(active) = quality.as_ref().and_then(|q| q.active) {
            if now <= active.deadline {
                let stage = quality
                    .as_ref()
                    .map(|q| self.quality_stage(q, active.purpose, protocol));
                return self
                    .item_outcome(
                        (
                            active.id,
                            active.solution_id,
                            active.served_at,
                            active.deadline,
                        ),
                        context.items_done + session_quality_items(quality.as_ref()),
                        stage.unwrap_or(Stage::Session),
                    )
                    .await;
            }
            self.expire_quality_attempt(active, now).await?;
            quality = Some(self.rater_quality_state(rater_id).await?);
        }
        let mut items_done = context.items_done + session_quality_items(quality.as_ref());
        let mut expired_own = None;
        match context.current {
            // Reload or resume: the same item, the same deadline; only counted as shown again.
            Some(current) if now <= current.3 => {
                if count_showing {
                    self.count_shown_again(current.0).await?;
                }
                return self.item_outcome(current, items_done, Stage::Session).await;
            }
            Some(expired) => expired_own = Some(expired),
            None => {}
        }
        // Failing the silent gold items ends the study for the rater, where the study says so;
        // checked before a new item only, so an item running now is never taken away.
        let gold = quality
            .as_ref()
            .and_then(|q| q.tallies.get(&QualityPurpose::Gold).copied())
            .unwrap_or_default();
        if quality::fails_gold(gold) && self.gold_failure_ends(study_id).await? {
            self.settle_expired_own(
                rater_id,
                study_id,
                now,
                &context,
                &mut expired_own,
                &mut items_done,
            )
            .await?;
            return Ok(ServeOutcome::FailedQuality);
        }
        if context.status == StudyStatus::Open
            && let Some(outcome) = self
                .serve_by_protocol(
                    rater_id,
                    study_id,
                    now,
                    after_break,
                    &context,
                    quality.as_ref(),
                    &mut expired_own,
                    &mut items_done,
                )
                .await?
        {
            return Ok(outcome);
        }
        let strata = if context.status == StudyStatus::Open {
            self.strata_for(rater_id, study_id).await?
        } else {
            Vec::new()
        };
        let cutoff = judging::reclaim_cutoff(now, context.grace_ms);
        let random_start: i64 = rand::rng().random_range(0..i64::MAX);
        // The new item's place in the session: after the items finished, counting the rater's
        // own expired item that the claim settles as a timeout.
        let finished =
            items_done + i64::from(settles_as_timeout(expired_own, now, context.grace_ms));
        let time_limit_ms = self
            .arm_limit(&context.limits, study_id, rater_id, finished)
            .await?
            .unwrap_or(context.time_limit_ms);
        let claimed = self
            .writer
            .claim(ClaimRequest {
                rater_id,
                study_id,
                strata,
                wanted: context.wanted,
                now,
                time_limit_ms,
                position: finished + 1,
                random_start,
                sweep_cutoff: context
                    .earliest_active_deadline
                    .is_some_and(|d| d < cutoff)
                    .then_some(cutoff),
                expired_own,
                grace_ms: context.grace_ms,
            })
            .await?;
        items_done += i64::from(settles_as_timeout(expired_own, now, context.grace_ms));
        match claimed {
            Some(item) => {
                self.item_outcome(
                    (item.assignment_id, item.solution_id, now, item.deadline),
                    items_done,
                    Stage::Session,
                )
                .await
            }
            None if context.status == StudyStatus::Closed => Ok(ServeOutcome::StudyClosed),
            None => Ok(ServeOutcome::Finished { items_done }),
        }
    }

    /// The time limit of the rater's next study item when the study compares limits (see
    /// [`crate::arms`]); `finished` is the number of session items before it. Reads the
    /// rater's place among the study's raters only for designs that use it.
    async fn arm_limit(
        &self,
        limits: &TimeLimits,
        study_id: Uuid,
        rater_id: Uuid,
        finished: i64,
    ) -> StoreResult<Option<i64>> {
        if !limits.has_arms() {
            return Ok(None);
        }
        let ordinal: i64 = if limits.design == ArmDesign::Interleaved {
            0
        } else {
            // Ids are time-ordered: the count is the rater's place by invitation.
            dispatch!(self, pool, _b => {
                sqlx::query_scalar("SELECT COUNT(*) FROM raters WHERE study_id = $1 AND id < $2")
                    .bind(study_id)
                    .bind(rater_id)
                    .fetch_one(pool)
                    .await?
            })
        };
        Ok(limits.limit_for(u64::try_from(ordinal).unwrap_or(0), rater_id, finished))
    }

    /// Where an active quality item of `purpose` sits in the protocol.
    fn quality_stage(
        &self,
        quality: &RaterQualityState,
        purpose: QualityPurpose,
        protocol: &quality::RaterProtocol,
    ) -> Stage {
        let number = quality.answered(purpose) + 1;
        match purpose {
            QualityPurpose::Practice => Stage::Practice {
                number,
                of: protocol.practice_items,
            },
            QualityPurpose::Screening => Stage::Screening {
                number,
                of: protocol.screening_items,
            },
            QualityPurpose::Gold => Stage::Session,
        }
    }

    /// The rater protocol's say before a study item is claimed: a practice or screening item,
    /// `NotAdmitted`, the workload cap, a break, or a gold item; `None` lets the claim go on.
    /// Whatever it returns, the rater's own expired study item is first stored as a timeout.
    #[allow(clippy::too_many_arguments)]
    async fn serve_by_protocol(
        &self,
        rater_id: Uuid,
        study_id: Uuid,
        now: i64,
        after_break: bool,
        context: &ServingContext,
        quality: Option<&RaterQualityState>,
        expired_own: &mut Option<(Uuid, Uuid, i64, i64)>,
        items_done: &mut i64,
    ) -> StoreResult<Option<ServeOutcome>> {
        let protocol = &context.protocol;
        let mut chosen = None;
        if let Some(q) = quality {
            for purpose in [QualityPurpose::Practice, QualityPurpose::Screening] {
                let wanted = match purpose {
                    QualityPurpose::Practice => protocol.practice_items,
                    _ => protocol.screening_items,
                };
                if chosen.is_none()
                    && q.answered(purpose) < wanted
                    && let Some(item) = self
                        .unseen_quality_item(study_id, rater_id, purpose)
                        .await?
                {
                    chosen = Some((purpose, item));
                }
            }
            if chosen.is_none() && protocol.screening_items > 0 {
                let passed = match q.screening_passed {
                    Some(passed) => passed,
                    None => {
                        let tally = q
                            .tallies
                            .get(&QualityPurpose::Screening)
                            .copied()
                            .unwrap_or_default();
                        let passed = quality::passes_screening(
                            tally.right,
                            tally.answered,
                            protocol.screening_pass_accuracy,
                        );
                        self.record_screening(rater_id, tally.right, passed).await?;
                        passed
                    }
                };
                if !passed {
                    return Ok(Some(ServeOutcome::NotAdmitted));
                }
            }
        }
        if chosen.is_none() {
            let all_items = context.items_done
                + quality.map_or(0, |q| q.tallies.values().map(|t| t.answered).sum());
            if quality::workload_may_be_reached(
                all_items + i64::from(expired_own.is_some()),
                context.time_limit_ms,
                protocol.max_rater_ms,
            ) {
                self.settle_expired_own(rater_id, study_id, now, context, expired_own, items_done)
                    .await?;
                if self.rater_work_ms(rater_id).await? >= protocol.max_rater_ms {
                    return Ok(Some(ServeOutcome::WorkloadReached {
                        items_done: *items_done,
                    }));
                }
            }
            if quality::break_due(
                *items_done + i64::from(expired_own.is_some()),
                protocol.break_every,
                after_break,
            ) {
                self.settle_expired_own(rater_id, study_id, now, context, expired_own, items_done)
                    .await?;
                return Ok(Some(ServeOutcome::Break {
                    items_done: *items_done,
                }));
            }
            if protocol.gold_rate > 0.0
                && quality::gold_due(protocol.gold_rate, rand::rng().random())
                && let Some(item) = self
                    .unseen_quality_item(study_id, rater_id, QualityPurpose::Gold)
                    .await?
            {
                chosen = Some((QualityPurpose::Gold, item));
            }
        }
        let Some((purpose, item)) = chosen else {
            return Ok(None);
        };
        self.settle_expired_own(rater_id, study_id, now, context, expired_own, items_done)
            .await?;
        let stage = match quality {
            Some(q) => self.quality_stage(q, purpose, protocol),
            None => Stage::Session,
        };
        let deadline = judging::deadline_for(now, context.time_limit_ms);
        let id = self
            .start_quality_attempt(study_id, rater_id, purpose, item, now, deadline)
            .await?;
        self.item_outcome((id, item.0, now, deadline), *items_done, stage)
            .await
            .map(Some)
    }

    /// An item as served: (id, solution, served_at, deadline) with the text the rater sees.
    async fn item_outcome(
        &self,
        (assignment_id, solution_id, served_at, deadline): (Uuid, Uuid, i64, i64),
        items_done: i64,
        stage: Stage,
    ) -> StoreResult<ServeOutcome> {
        let (question, solution) = self.item_text(solution_id).await?;
        Ok(ServeOutcome::Item(ServedItem {
            assignment_id,
            question,
            solution,
            served_at,
            deadline,
            // The item's own limit (a study may compare several).
            time_limit_ms: deadline - served_at,
            items_done,
            stage,
        }))
    }

    /// Stores the rater's own expired study item as a timeout (when serving something other
    /// than a new study item, which would do it in its claim).
    async fn settle_expired_own(
        &self,
        rater_id: Uuid,
        study_id: Uuid,
        now: i64,
        context: &ServingContext,
        expired_own: &mut Option<(Uuid, Uuid, i64, i64)>,
        items_done: &mut i64,
    ) -> StoreResult<()> {
        if let Some(expired) = expired_own.take() {
            self.writer
                .claim(ClaimRequest {
                    rater_id,
                    study_id,
                    strata: Vec::new(),
                    wanted: context.wanted,
                    now,
                    time_limit_ms: context.time_limit_ms,
                    // No new item is claimed (no strata): neither is used.
                    position: 1,
                    random_start: 0,
                    sweep_cutoff: None,
                    expired_own: Some(expired),
                    grace_ms: context.grace_ms,
                })
                .await?;
            *items_done += i64::from(settles_as_timeout(Some(expired), now, context.grace_ms));
        }
        Ok(())
    }

    /// Counts one more showing of a running item (a reload, a new tab, a reopened link).
    async fn count_shown_again(&self, assignment_id: Uuid) -> StoreResult<()> {
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            sqlx::query("UPDATE assignments SET times_shown = times_shown + 1 WHERE id = $1 AND state = 'active'")
                .bind(assignment_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Whether the rater has an item running now (study or quality item), so that opening the
    /// link again returns to it instead of the instructions while its clock runs on.
    pub async fn has_running_item(&self, rater_id: Uuid, now: i64) -> StoreResult<bool> {
        Ok(dispatch!(self, pool, _b => {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM assignments WHERE rater_id = $1 AND state = 'active' AND deadline >= $2)
                     OR EXISTS (SELECT 1 FROM quality_attempts WHERE rater_id = $1 AND state = 'active' AND deadline >= $2)",
            )
            .bind(rater_id)
            .bind(now)
            .fetch_one(pool)
            .await?
        }))
    }

    /// Stores a rater's answer to one of their items. After the deadline it is stored as
    /// `timeout`. Answering the same item again changes nothing and reports the stored verdict.
    /// An item whose slot was already given to someone else is `Gone`.
    ///
    /// The answer is checked against the study's answer rules first ([`answers::read_answer`]):
    /// one that breaks them is refused (`Invalid`, a 422) with nothing written, so the item,
    /// its deadline and the rater's input stay as they were.
    pub async fn submit_judgement(
        &self,
        rater_id: Uuid,
        assignment_id: Uuid,
        input: AnswerInput,
        client_elapsed_ms: Option<i64>,
        now: i64,
    ) -> StoreResult<SubmitOutcome> {
        let rules = self.rater_answer_rules(rater_id).await?;
        let answer = answers::read_answer(&rules, input).map_err(StoreError::Invalid)?;
        with_retries(|| {
            self.submit_judgement_once(rater_id, assignment_id, &answer, client_elapsed_ms, now)
        })
        .await
    }

    /// The answer rules of the study `rater_id` was invited to.
    ///
    /// Kept in memory once the rater has been served an item: from then on the study's design
    /// is frozen (`study_edit::design_frozen`, re-checked inside the edit's transaction), so
    /// the rules read are final. Before that they are read afresh each time.
    pub async fn rater_answer_rules(&self, rater_id: Uuid) -> StoreResult<AnswerRules> {
        if let Some(rules) = self.answer_rules.get(rater_id) {
            return Ok(rules);
        }
        let row: Option<(String, bool, String, bool)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT s.answer_format, s.allow_even_odds, s.justification,
                        EXISTS (SELECT 1 FROM assignments a WHERE a.rater_id = r.id)
                        OR EXISTS (SELECT 1 FROM quality_attempts q WHERE q.rater_id = r.id)
                 FROM raters r JOIN studies s ON s.id = r.study_id WHERE r.id = $1",
            )
            .bind(rater_id)
            .fetch_optional(pool)
            .await?
        });
        let (format, allow_even_odds, justification, served) =
            row.ok_or(StoreError::NotFound("rater"))?;
        let rules = AnswerRules {
            format: parse_stored(&format)?,
            allow_even_odds,
            justification: parse_stored(&justification)?,
        };
        if served {
            self.answer_rules.keep(rater_id, rules);
        }
        Ok(rules)
    }

    async fn submit_judgement_once(
        &self,
        rater_id: Uuid,
        assignment_id: Uuid,
        answer: &Answer,
        client_elapsed_ms: Option<i64>,
        now: i64,
    ) -> StoreResult<SubmitOutcome> {
        let requested = answer.requested;
        let stored = self
            .writer
            .judge(JudgeRequest {
                rater_id,
                assignment_id,
                answer: answer.clone(),
                client_elapsed_ms,
                now,
            })
            .await?;
        if let Some(verdict) = stored {
            return Ok(SubmitOutcome {
                verdict,
                duplicate: false,
                feedback: None,
            });
        }
        // Not stored: a repeat of a stored answer, an answer after the grace, an item that was
        // reassigned, or not theirs.
        let existing: Option<(String, Option<String>, Uuid, Uuid)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT a.state, j.verdict, a.study_id, a.solution_id
                 FROM assignments a LEFT JOIN judgements j ON j.assignment_id = a.id
                 WHERE a.id = $1 AND a.rater_id = $2",
            )
            .bind(assignment_id)
            .bind(rater_id)
            .fetch_optional(pool)
            .await?
        });
        match existing {
            Some((_, Some(verdict), _, _)) => Ok(SubmitOutcome {
                verdict: parse_stored(&verdict)?,
                duplicate: true,
                feedback: None,
            }),
            Some((state, None, study_id, solution_id)) => {
                if state == "active" {
                    // Still active but not stored: its grace has passed. Abandon it now, as
                    // the reclaim would, so the slot goes back to the pool at once.
                    dispatch!(self, pool, _b => {
                        let mut tx = self.begin_write(pool).await?;
                        abandon_item!(tx, study_id, assignment_id, solution_id);
                        tx.commit().await?;
                    });
                }
                Err(StoreError::Gone(ANSWER_TOO_LATE.into()))
            }
            None => self
                .submit_quality_answer(rater_id, assignment_id, requested, client_elapsed_ms, now)
                .await?
                .ok_or(StoreError::NotFound("item")),
        }
    }
}

//! Quality items in the store: serving practice, screening and gold items, storing the answers
//! apart from study judgements (table `quality_attempts`), the screening decision, and the step
//! flag on both kinds of item. The rules are in [`crate::quality`].

use std::collections::BTreeMap;

use rand::seq::IndexedRandom;
use uuid::Uuid;

use super::judging::SubmitOutcome;
use super::{Store, StoreError, StoreResult, dispatch};
use crate::domain::{QualityPurpose, Verdict, parse_stored};
use crate::judging::{self, RequestedVerdict};
use crate::quality::{self, QualityTally};

/// Ends an unanswered quality item as a timeout with no answer (`$1` the attempt, `$2` the
/// server's elapsed time).
const EXPIRE_ATTEMPT: &str =
    "UPDATE quality_attempts SET state = 'judged', verdict = 'timeout', server_elapsed_ms = $2
                              WHERE id = $1 AND state = 'active'";

/// A rater's unanswered quality item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ActiveQualityItem {
    pub id: Uuid,
    pub solution_id: Uuid,
    pub purpose: QualityPurpose,
    pub served_at: i64,
    pub deadline: i64,
}

/// What serving needs to know about a rater's quality items.
#[derive(Debug, Clone, Default)]
pub(crate) struct RaterQualityState {
    /// The screening decision, once made.
    pub screening_passed: Option<bool>,
    /// The unanswered quality item, if any.
    pub active: Option<ActiveQualityItem>,
    /// Answered quality items per purpose.
    pub tallies: BTreeMap<QualityPurpose, QualityTally>,
}

impl RaterQualityState {
    /// Answered items of one purpose.
    pub fn answered(&self, purpose: QualityPurpose) -> i64 {
        self.tallies.get(&purpose).map_or(0, |t| t.answered)
    }
}

/// What the rater learns after answering a practice item (and only then).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PracticeFeedback {
    /// Whether the solution was correct: the right answer to the item.
    pub solution_correct: bool,
    /// Whether the rater's stored verdict matched it.
    pub answered_right: bool,
    /// The problem's final answer.
    pub expected_answer: String,
}

/// Per-rater quality figures for staff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaterQuality {
    /// Screening answers so far.
    pub screening: QualityTally,
    /// The screening decision, once the set is answered.
    pub screening_passed: Option<bool>,
    /// Gold answers (quality-control accuracy).
    pub gold: QualityTally,
    /// Practice answers.
    pub practice: QualityTally,
}

/// An answered item whose first wrong step the rater may still flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepItem {
    /// The solution's steps as shown.
    pub steps: Vec<String>,
    /// The item's deadline; flags after it are refused.
    pub deadline: i64,
    /// The study's per-item limit, for the countdown's scale.
    pub time_limit_ms: i64,
}

/// Sets a study item's step flag: `$1` step, `$2` item, `$3` rater, `$4` now; only on a
/// "wrong" verdict, once, before the deadline.
const FLAG_JUDGEMENT: &str = "UPDATE judgements SET first_wrong_step = $1
     WHERE assignment_id = $2 AND rater_id = $3 AND verdict = 'wrong'
       AND first_wrong_step IS NULL AND deadline >= $4";

/// The same for a quality item.
const FLAG_QUALITY_ATTEMPT: &str = "UPDATE quality_attempts SET first_wrong_step = $1
     WHERE id = $2 AND rater_id = $3 AND verdict = 'wrong'
       AND first_wrong_step IS NULL AND deadline >= $4";

type ActiveRow = (
    Option<bool>,
    Option<Uuid>,
    Option<Uuid>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

impl Store {
    /// The rater's screening decision, active quality item and answered quality items.
    pub(crate) async fn rater_quality_state(
        &self,
        rater_id: Uuid,
    ) -> StoreResult<RaterQualityState> {
        let (passed, id, solution_id, purpose, served_at, deadline): ActiveRow = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT r.screening_passed, q.id, q.solution_id, q.purpose, q.served_at, q.deadline
                 FROM raters r LEFT JOIN quality_attempts q ON q.rater_id = r.id AND q.state = 'active'
                 WHERE r.id = $1",
            )
            .bind(rater_id)
            .fetch_optional(pool)
            .await?
            .ok_or(StoreError::NotFound("rater"))?
        });
        let active = match (id, solution_id, purpose, served_at, deadline) {
            (Some(id), Some(solution_id), Some(purpose), Some(served_at), Some(deadline)) => {
                Some(ActiveQualityItem {
                    id,
                    solution_id,
                    purpose: parse_stored(&purpose)?,
                    served_at,
                    deadline,
                })
            }
            _ => None,
        };
        Ok(RaterQualityState {
            screening_passed: passed,
            active,
            tallies: self.quality_tallies(rater_id).await?,
        })
    }

    async fn quality_tallies(
        &self,
        rater_id: Uuid,
    ) -> StoreResult<BTreeMap<QualityPurpose, QualityTally>> {
        let rows: Vec<(String, bool, String)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT purpose, is_correct, verdict FROM quality_attempts
                 WHERE rater_id = $1 AND state = 'judged'",
            )
            .bind(rater_id)
            .fetch_all(pool)
            .await?
        });
        let mut parsed = Vec::with_capacity(rows.len());
        for (purpose, is_correct, verdict) in rows {
            parsed.push((
                parse_stored::<QualityPurpose>(&purpose)?,
                is_correct,
                parse_stored::<Verdict>(&verdict)?,
            ));
        }
        Ok(quality::tally(parsed))
    }

    /// The next quality item of `purpose` this rater has not had: in set order for practice and
    /// screening, at random for gold.
    pub(crate) async fn unseen_quality_item(
        &self,
        study_id: Uuid,
        rater_id: Uuid,
        purpose: QualityPurpose,
    ) -> StoreResult<Option<(Uuid, bool)>> {
        let rows: Vec<(Uuid, bool)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT qi.solution_id, qi.is_correct FROM quality_items qi
                 WHERE qi.study_id = $1 AND qi.purpose = $2
                   AND NOT EXISTS (SELECT 1 FROM quality_attempts qa
                                   WHERE qa.rater_id = $3 AND qa.solution_id = qi.solution_id)
                 ORDER BY qi.position",
            )
            .bind(study_id)
            .bind(purpose.as_str())
            .bind(rater_id)
            .fetch_all(pool)
            .await?
        });
        Ok(match purpose {
            QualityPurpose::Gold => rows.choose(&mut rand::rng()).copied(),
            _ => rows.first().copied(),
        })
    }

    /// Gives the rater a quality item; its id looks like any assignment's (random v4). `Busy`
    /// (retried) when a concurrent request of theirs was just served a study item.
    pub(crate) async fn start_quality_attempt(
        &self,
        study_id: Uuid,
        rater_id: Uuid,
        purpose: QualityPurpose,
        (solution_id, is_correct): (Uuid, bool),
        now: i64,
        deadline: i64,
    ) -> StoreResult<Uuid> {
        let id = Uuid::new_v4();
        let inserted = dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            // Not while a study item of theirs is active (another tab was just served one):
            // a rater has one item at a time.
            let inserted = sqlx::query(
                "INSERT INTO quality_attempts (id, study_id, rater_id, solution_id, purpose, is_correct,
                                               served_at, deadline, state)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, 'active'
                 WHERE NOT EXISTS (SELECT 1 FROM assignments WHERE rater_id = $3 AND state = 'active')",
            )
            .bind(id)
            .bind(study_id)
            .bind(rater_id)
            .bind(solution_id)
            .bind(purpose.as_str())
            .bind(is_correct)
            .bind(now)
            .bind(deadline)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            inserted
        });
        if inserted == 0 {
            // Retried from the start, which then serves that study item.
            return Err(StoreError::Busy);
        }
        Ok(id)
    }

    /// Stores a timeout for a quality item whose deadline passed unanswered (unless an answer
    /// won the race).
    pub(crate) async fn expire_quality_attempt(
        &self,
        item: ActiveQualityItem,
        now: i64,
    ) -> StoreResult<()> {
        let elapsed =
            judging::server_elapsed_ms(item.served_at, now, item.deadline, Verdict::Timeout);
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            sqlx::query(EXPIRE_ATTEMPT)
            .bind(item.id)
            .bind(elapsed)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Stores the screening decision once (a concurrent second decision changes nothing).
    pub(crate) async fn record_screening(
        &self,
        rater_id: Uuid,
        right: i64,
        passed: bool,
    ) -> StoreResult<()> {
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            sqlx::query(
                "UPDATE raters SET screening_correct = $2, screening_passed = $3
                 WHERE id = $1 AND screening_passed IS NULL",
            )
            .bind(rater_id)
            .bind(right)
            .bind(passed)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// What a rater's item page shows of their progress: the most study items they can meet
    /// (one per problem of the study), and their time on items left under the workload cap.
    pub async fn session_progress(
        &self,
        rater_id: Uuid,
        study_id: Uuid,
    ) -> StoreResult<(i64, i64)> {
        let (problems, max_rater_ms): (i64, i64) = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT (SELECT COUNT(DISTINCT problem_id) FROM study_solutions WHERE study_id = $1),
                        max_rater_ms
                 FROM studies WHERE id = $1",
            )
            .bind(study_id)
            .fetch_one(pool)
            .await?
        });
        let work_ms = self.rater_work_ms(rater_id).await?;
        Ok((problems, (max_rater_ms - work_ms).max(0)))
    }

    /// The rater's total time on items (study and quality), for the workload cap.
    pub(crate) async fn rater_work_ms(&self, rater_id: Uuid) -> StoreResult<i64> {
        let (study, quality): (i64, i64) = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT (SELECT CAST(COALESCE(SUM(server_elapsed_ms), 0) AS BIGINT) FROM judgements WHERE rater_id = $1),
                        (SELECT CAST(COALESCE(SUM(server_elapsed_ms), 0) AS BIGINT) FROM quality_attempts
                          WHERE rater_id = $1 AND state = 'judged')",
            )
            .bind(rater_id)
            .fetch_one(pool)
            .await?
        });
        Ok(study + quality)
    }

    /// Stores an answer to a quality item, like [`Store::submit_judgement`] does for study
    /// items: late answers become timeouts, a repeat changes nothing. `None` when the id is not
    /// one of this rater's quality items. Practice answers come with feedback.
    pub(crate) async fn submit_quality_answer(
        &self,
        rater_id: Uuid,
        id: Uuid,
        requested: RequestedVerdict,
        client_elapsed_ms: Option<i64>,
        now: i64,
    ) -> StoreResult<Option<SubmitOutcome>> {
        type Row = (String, String, bool, i64, i64, Option<String>, i64, String);
        let (purpose, is_correct, verdict, duplicate, truth) = dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let row: Option<Row> = sqlx::query_as(
                "SELECT q.state, q.purpose, q.is_correct, q.served_at, q.deadline, q.verdict, s.reclaim_grace_ms, p.ground_truth
                 FROM quality_attempts q JOIN studies s ON s.id = q.study_id
                      JOIN solutions so ON so.id = q.solution_id JOIN problems p ON p.id = so.problem_id
                 WHERE q.id = $1 AND q.rater_id = $2",
            )
            .bind(id)
            .bind(rater_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((state, purpose, is_correct, served_at, deadline, stored, grace_ms, truth)) = row else {
                return Ok(None);
            };
            let purpose: QualityPurpose = parse_stored(&purpose)?;
            if state == "active" && judging::answer_refused(now, deadline, grace_ms) {
                // After the grace, as for study items (a gold item must not answer otherwise):
                // refused, and the item ends as a timeout with no answer.
                sqlx::query(EXPIRE_ATTEMPT)
                .bind(id)
                .bind(judging::server_elapsed_ms(served_at, now, deadline, Verdict::Timeout))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Err(StoreError::Gone(super::judging::ANSWER_TOO_LATE.into()));
            }
            if state == "active" {
                let verdict = judging::recorded_verdict(requested, now, deadline);
                sqlx::query(
                    "UPDATE quality_attempts SET state = 'judged', verdict = $2, submitted_at = $3,
                            server_elapsed_ms = $4, client_elapsed_ms = $5
                     WHERE id = $1 AND state = 'active'",
                )
                .bind(id)
                .bind(verdict.as_str())
                .bind(now)
                .bind(judging::server_elapsed_ms(served_at, now, deadline, verdict))
                .bind(judging::recorded_client_elapsed(client_elapsed_ms))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                (purpose, is_correct, verdict, false, truth)
            } else {
                let verdict: Verdict = parse_stored(stored.as_deref().unwrap_or("timeout"))?;
                (purpose, is_correct, verdict, true, truth)
            }
        });
        let feedback = (purpose == QualityPurpose::Practice).then(|| PracticeFeedback {
            solution_correct: is_correct,
            answered_right: quality::answered_right(verdict, is_correct),
            expected_answer: truth,
        });
        Ok(Some(SubmitOutcome {
            verdict,
            duplicate,
            feedback,
        }))
    }

    /// Per-rater quality figures of a study, keyed by rater.
    pub async fn study_rater_quality(
        &self,
        study_id: Uuid,
    ) -> StoreResult<BTreeMap<Uuid, RaterQuality>> {
        let rows: Vec<(Uuid, String, bool, String)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT rater_id, purpose, is_correct, verdict FROM quality_attempts
                 WHERE study_id = $1 AND state = 'judged'",
            )
            .bind(study_id)
            .fetch_all(pool)
            .await?
        });
        let decisions: Vec<(Uuid, Option<bool>)> = dispatch!(self, pool, _b => {
            sqlx::query_as("SELECT id, screening_passed FROM raters WHERE study_id = $1")
                .bind(study_id)
                .fetch_all(pool)
                .await?
        });
        let mut out: BTreeMap<Uuid, RaterQuality> = BTreeMap::new();
        for (rater, passed) in decisions {
            out.entry(rater).or_default().screening_passed = passed;
        }
        for (rater, purpose, is_correct, verdict) in rows {
            let purpose: QualityPurpose = parse_stored(&purpose)?;
            let verdict: Verdict = parse_stored(&verdict)?;
            let entry = out.entry(rater).or_default();
            let tally = match purpose {
                QualityPurpose::Practice => &mut entry.practice,
                QualityPurpose::Screening => &mut entry.screening,
                QualityPurpose::Gold => &mut entry.gold,
            };
            tally.add(verdict, is_correct);
        }
        Ok(out)
    }

    /// The item whose first wrong step the rater may flag now: theirs, answered "wrong", not
    /// flagged yet, deadline not passed. Study and quality items alike (gold items must not
    /// behave differently).
    pub async fn step_item(
        &self,
        rater_id: Uuid,
        item_id: Uuid,
        now: i64,
    ) -> StoreResult<Option<StepItem>> {
        let row: Option<(String, i64, i64)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT s.text, j.deadline, st.time_limit_ms
                 FROM judgements j JOIN solutions s ON s.id = j.solution_id JOIN studies st ON st.id = j.study_id
                 WHERE j.assignment_id = $1 AND j.rater_id = $2 AND j.verdict = 'wrong'
                   AND j.first_wrong_step IS NULL AND j.deadline >= $3
                 UNION ALL
                 SELECT s.text, q.deadline, st.time_limit_ms
                 FROM quality_attempts q JOIN solutions s ON s.id = q.solution_id JOIN studies st ON st.id = q.study_id
                 WHERE q.id = $1 AND q.rater_id = $2 AND q.verdict = 'wrong'
                   AND q.first_wrong_step IS NULL AND q.deadline >= $3",
            )
            .bind(item_id)
            .bind(rater_id)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(text, deadline, time_limit_ms)| StepItem {
            steps: judging::solution_steps(&crate::problems::for_raters(&text))
                .into_iter()
                .map(str::to_string)
                .collect(),
            deadline,
            time_limit_ms,
        }))
    }

    /// Stores the first wrong step a rater points at, on an item they answered "wrong", before
    /// its deadline; once.
    pub async fn flag_first_wrong_step(
        &self,
        rater_id: Uuid,
        item_id: Uuid,
        step: i64,
        now: i64,
    ) -> StoreResult<()> {
        let Some(item) = self.step_item(rater_id, item_id, now).await? else {
            return Err(StoreError::Gone(
                "this item cannot take a step flag: it is not answered \"wrong\", already flagged, or its time ran out"
                    .into(),
            ));
        };
        if !judging::valid_step(step, item.steps.len()) {
            return Err(StoreError::Invalid(format!(
                "step {step} does not exist: the solution has steps 1 to {}",
                item.steps.len()
            )));
        }
        let changed = dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let mut changed = 0;
            // The item is a study item or a quality item; the same conditions hold for both.
            for update in [FLAG_JUDGEMENT, FLAG_QUALITY_ATTEMPT] {
                if changed == 0 {
                    changed = sqlx::query(update)
                        .bind(step)
                        .bind(item_id)
                        .bind(rater_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
            }
            tx.commit().await?;
            changed
        });
        if changed == 0 {
            return Err(StoreError::Gone(
                "the step flag came too late or twice".into(),
            ));
        }
        Ok(())
    }
}

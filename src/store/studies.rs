//! Studies: which solutions are judged, how many times each, under which time limit; and their
//! progress.

use std::collections::{BTreeSet, HashSet};

use rand::Rng;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::catalog::SolutionFacts;
use super::{Backend, Store, StoreError, StoreResult, dispatch};
use crate::answers::AnswerRules;
use crate::arms::TimeLimits;
use crate::domain::{GradeOutcome, ProverRole, StudyStatus, parse_stored};
use crate::judging;
use crate::quality::{self, Candidate, QualityItem, RaterProtocol};
use crate::study_edit::{self, Collected, EditPlan};

/// What a researcher asks for when creating a study.
#[derive(Debug, Clone, PartialEq)]
pub struct StudySpec {
    /// Unique, human-readable name.
    pub name: String,
    /// Per-item time limit (the paper: 45 s).
    pub time_limit_ms: i64,
    /// Judgements wanted per solution, each from a different rater.
    pub judgements_per_solution: i64,
    /// Wait after a deadline before an unanswered item goes back to the pool.
    pub reclaim_grace_ms: i64,
    /// Problems come from this set.
    pub problem_set_id: Uuid,
    /// Only solutions of these prover checkpoints; empty means all.
    pub checkpoint_ids: Vec<Uuid>,
    /// Only these roles; empty means both.
    pub roles: Vec<ProverRole>,
    /// Only the first N problems of the set (by position) that have matching solutions.
    pub max_problems: Option<usize>,
    /// Practice, screening, gold items, workload cap and breaks; quality items are drawn from
    /// the set's other problems (same checkpoints and roles, so gold items look like the rest).
    pub protocol: RaterProtocol,
    /// How raters answer: a verdict, a verdict with confidence, or a probability; and whether
    /// they justify it.
    pub answers: AnswerRules,
    /// Time limits compared (speed–accuracy arms), and how they are given; none: every item
    /// has `time_limit_ms`.
    pub time_limits: TimeLimits,
}

impl StudySpec {
    /// Refuses settings that cannot make a study, naming the setting and what to give instead.
    pub fn check(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("the study needs a name".into());
        }
        if self.time_limit_ms <= 0 {
            return Err("the time limit per item must be more than 0 seconds".into());
        }
        if self.judgements_per_solution < 1 {
            return Err(format!(
                "judgements per solution must be at least 1 (got {}): each solution needs at \
                 least one rater's verdict",
                self.judgements_per_solution
            ));
        }
        if self.reclaim_grace_ms < 0 {
            return Err("the grace after a deadline cannot be negative".into());
        }
        let items_per_rater = self.max_problems.map_or(i64::MAX, |n| n as i64);
        self.time_limits
            .check(items_per_rater, self.judgements_per_solution)?;
        if self.max_problems == Some(0) {
            return Err(
                "at most 0 problems would leave the study empty: give at least 1, or leave the \
                 limit out to use every problem of the set"
                    .into(),
            );
        }
        self.protocol.check()
    }
}

/// A study's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Study {
    /// Stable id.
    pub id: Uuid,
    /// Unique name.
    pub name: String,
    /// Per-item time limit.
    pub time_limit_ms: i64,
    /// Judgements wanted per solution.
    pub judgements_per_solution: i64,
    /// Wait after a deadline before an unanswered item is reassigned.
    pub reclaim_grace_ms: i64,
    /// Open studies serve items.
    pub status: StudyStatus,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// How raters are trained, admitted, watched and paced.
    pub protocol: RaterProtocol,
    /// How raters answer.
    pub answers: AnswerRules,
    /// Time-limit arms.
    pub time_limits: TimeLimits,
}

/// How far a study has got.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct StudyProgress {
    /// Solutions in the study.
    pub solutions: i64,
    /// Judgements wanted in total (solutions × per-solution count).
    pub wanted: i64,
    /// Judgements stored (all verdicts, timeouts included).
    pub judged: i64,
    /// Items served and not yet answered.
    pub in_progress: i64,
    /// Stored verdicts by kind.
    pub correct_verdicts: i64,
    /// Stored `wrong` verdicts.
    pub wrong_verdicts: i64,
    /// Stored timeouts.
    pub timeouts: i64,
    /// Raters invited.
    pub raters: i64,
    /// Matching (or generated) solutions left out because they state no final answer.
    pub ungradable_left_out: i64,
}

/// What an audit of a study's judging found: every count but `judgements` must be zero. The
/// database's constraints should make them so; the load benchmark and crash tests check it
/// after the fact, from the rows themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct JudgingAudit {
    /// Judgements stored.
    pub judgements: i64,
    /// Judgements beyond the first for one assignment, or for one (rater, solution).
    pub duplicated: i64,
    /// Solutions with more live assignments (active or judged) or judgements than the study
    /// wants, or whose slot counter disagrees with their live assignments.
    pub over_assigned: i64,
    /// (rater, problem) pairs with more than one item: the one-solution-per-problem rule.
    pub repeated_problems: i64,
}

impl JudgingAudit {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.duplicated == 0 && self.over_assigned == 0 && self.repeated_problems == 0
    }
}

/// (quota per solution, solutions, slots taken, judged, raters, correct, wrong, timeouts,
/// ungradable left out).
type ProgressRow = (i64, i64, i64, i64, i64, i64, i64, i64, i64);

/// The columns a [`Study`] is read from, from `studies s`.
const STUDY_COLUMNS: &str =
    "s.id, s.name, s.time_limit_ms, s.judgements_per_solution, s.reclaim_grace_ms, s.status,
     s.created_at, s.practice_items, s.screening_items, s.screening_pass_accuracy,
     (SELECT COUNT(*) FROM quality_items q WHERE q.study_id = s.id AND q.purpose = 'gold') AS gold_items,
     s.gold_rate, s.max_rater_ms, s.break_every, s.answer_format, s.allow_even_odds,
     s.justification, s.time_limit_arms, s.arm_design, s.arm_block_items";

/// Studies are read by column name ([`STUDY_COLUMNS`]).
impl<'r, R> sqlx::FromRow<'r, R> for Study
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let status: String = row.try_get("status")?;
        let format: String = row.try_get("answer_format")?;
        let justification: String = row.try_get("justification")?;
        let arms: String = row.try_get("time_limit_arms")?;
        let design: String = row.try_get("arm_design")?;
        Ok(Study {
            time_limits: TimeLimits {
                arms: TimeLimits::parse_arms(&arms).map_err(|e| sqlx::Error::Decode(e.into()))?,
                design: parse_stored(&design)?,
                block_items: row.try_get("arm_block_items")?,
            },
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            time_limit_ms: row.try_get("time_limit_ms")?,
            judgements_per_solution: row.try_get("judgements_per_solution")?,
            reclaim_grace_ms: row.try_get("reclaim_grace_ms")?,
            status: parse_stored(&status)?,
            created_at: row.try_get("created_at")?,
            protocol: RaterProtocol {
                practice_items: row.try_get("practice_items")?,
                screening_items: row.try_get("screening_items")?,
                screening_pass_accuracy: row.try_get("screening_pass_accuracy")?,
                gold_items: row.try_get("gold_items")?,
                gold_rate: row.try_get("gold_rate")?,
                max_rater_ms: row.try_get("max_rater_ms")?,
                break_every: row.try_get("break_every")?,
            },
            answers: AnswerRules {
                format: parse_stored(&format)?,
                allow_even_odds: row.try_get("allow_even_odds")?,
                justification: parse_stored(&justification)?,
            },
        })
    }
}

/// What a study judges and which quality items it uses, chosen before anything is written.
struct PlannedItems {
    chosen: Vec<SolutionFacts>,
    quality_items: Vec<QualityItem>,
    /// One shuffle key per chosen solution.
    keys: Vec<i64>,
    /// Matching solutions left out because the grader cannot tell their correctness.
    ungradable_left_out: i64,
}

/// A study as set up (see [`Store::study_setup`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StudySetup {
    /// The study.
    pub study: Study,
    /// Its settings: what New study needs to make the same study again. For a generated
    /// study the selection is what its generation job was asked for.
    pub spec: StudySpec,
    /// The parameters of the generation job that writes its solutions, if one does.
    pub generation_params: Option<serde_json::Value>,
    /// What it has collected.
    pub collected: Collected,
}

/// The selection fields of a generation job's parameters (the rest is the worker's).
#[derive(serde::Deserialize)]
struct GenerationSelection {
    problem_set_id: Uuid,
    max_problems: Option<usize>,
    checkpoint_ids: Vec<Uuid>,
    roles: Vec<ProverRole>,
}

/// (study items served, judgements, quality items served) of study `$1`.
const COLLECTED_SQL: &str = "SELECT (SELECT COUNT(*) FROM assignments WHERE study_id = $1),
                                    (SELECT COUNT(*) FROM judgements WHERE study_id = $1),
                                    (SELECT COUNT(*) FROM quality_attempts WHERE study_id = $1)";

fn collected_from((items_served, judgements, quality_items_served): (i64, i64, i64)) -> Collected {
    Collected {
        items_served,
        judgements,
        quality_items_served,
    }
}

/// Inside a `dispatch!` body holding the write transaction `$tx`: writes a study's planned
/// solutions (with their shuffle keys), quality items and strata.
macro_rules! insert_items {
    ($tx:ident, $study_id:expr, $planned:expr) => {{
        let planned: PlannedItems = $planned;
        for (solution, key) in planned.chosen.iter().zip(&planned.keys) {
            sqlx::query(
                "INSERT INTO study_solutions (study_id, solution_id, problem_id, checkpoint_id, is_correct, shuffle_key)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind($study_id)
            .bind(solution.id)
            .bind(solution.problem_id)
            .bind(solution.checkpoint_id)
            .bind(solution.is_correct)
            .bind(*key)
            .execute(&mut *$tx)
            .await?;
        }
        for item in &planned.quality_items {
            sqlx::query(
                "INSERT INTO quality_items (study_id, purpose, position, solution_id, is_correct)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind($study_id)
            .bind(item.purpose.as_str())
            .bind(item.position)
            .bind(item.solution_id)
            .bind(item.is_correct)
            .execute(&mut *$tx)
            .await?;
        }
        let strata: BTreeSet<(Uuid, bool)> =
            planned.chosen.iter().map(|s| (s.checkpoint_id, s.is_correct)).collect();
        for (checkpoint_id, is_correct) in strata {
            sqlx::query("INSERT INTO study_strata (study_id, checkpoint_id, is_correct) VALUES ($1, $2, $3)")
                .bind($study_id)
                .bind(checkpoint_id)
                .bind(is_correct)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

impl Store {
    /// Creates a study over the solutions the spec selects, in one transaction. Each solution
    /// gets a random shuffle key so raters draw items in random order. Ungradable solutions
    /// (no final answer, so no known correctness) are left out of the items and the quality
    /// items, and counted on the study.
    pub async fn create_study(
        &self,
        spec: &StudySpec,
        created_by: Option<Uuid>,
        now: i64,
    ) -> StoreResult<Study> {
        self.insert_study(spec, created_by, now, false).await
    }

    /// Creates a study whose solutions a generation job will add: it starts empty (raters
    /// are told there is nothing to judge yet) and fills as the job commits its chunks.
    pub async fn create_study_for_generation(
        &self,
        spec: &StudySpec,
        created_by: Option<Uuid>,
        now: i64,
    ) -> StoreResult<Study> {
        self.insert_study(spec, created_by, now, true).await
    }

    async fn insert_study(
        &self,
        spec: &StudySpec,
        created_by: Option<Uuid>,
        now: i64,
        awaiting_generation: bool,
    ) -> StoreResult<Study> {
        spec.check().map_err(StoreError::Invalid)?;
        let name = spec.name.trim();
        let planned = self.plan_items(spec, awaiting_generation).await?;
        let study = Study {
            id: Uuid::now_v7(),
            name: name.to_string(),
            time_limit_ms: spec.time_limit_ms,
            judgements_per_solution: spec.judgements_per_solution,
            reclaim_grace_ms: spec.reclaim_grace_ms,
            status: StudyStatus::Open,
            created_at: now,
            protocol: spec.protocol.clone(),
            answers: spec.answers,
            time_limits: spec.time_limits.clone(),
        };
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let inserted = sqlx::query(
                "INSERT INTO studies (id, name, time_limit_ms, judgements_per_solution, reclaim_grace_ms, status,
                                      created_by, created_at, practice_items, screening_items,
                                      screening_pass_accuracy, gold_rate, max_rater_ms, break_every,
                                      ungradable_left_out, answer_format, allow_even_odds, justification,
                                      time_limit_arms, arm_design, arm_block_items)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                         $19, $20, $21)
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(study.id)
            .bind(&study.name)
            .bind(study.time_limit_ms)
            .bind(study.judgements_per_solution)
            .bind(study.reclaim_grace_ms)
            .bind(study.status.as_str())
            .bind(created_by)
            .bind(now)
            .bind(study.protocol.practice_items)
            .bind(study.protocol.screening_items)
            .bind(study.protocol.screening_pass_accuracy)
            .bind(study.protocol.gold_rate)
            .bind(study.protocol.max_rater_ms)
            .bind(study.protocol.break_every)
            .bind(planned.ungradable_left_out)
            .bind(study.answers.format.as_str())
            .bind(study.answers.allow_even_odds)
            .bind(study.answers.justification.as_str())
            .bind(study.time_limits.arms_text())
            .bind(study.time_limits.design.as_str())
            .bind(study.time_limits.block_items)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Err(StoreError::Conflict(format!("a study named {:?} already exists", study.name)));
            }
            insert_items!(tx, study.id, planned);
            tx.commit().await?;
        });
        Ok(study)
    }

    /// Chooses what a study over `spec` judges (with a random shuffle key per solution, so
    /// raters draw items in random order) and its quality items; reads only.
    async fn plan_items(
        &self,
        spec: &StudySpec,
        awaiting_generation: bool,
    ) -> StoreResult<PlannedItems> {
        if awaiting_generation && spec.protocol.uses_quality_items() {
            return Err(StoreError::Invalid(
                "practice, screening and gold items are chosen from imported solutions: import \
                 solutions first, or create the study without them"
                    .into(),
            ));
        }
        let checkpoints: HashSet<Uuid> = spec.checkpoint_ids.iter().copied().collect();
        let roles: HashSet<ProverRole> = spec.roles.iter().copied().collect();
        let existing = if awaiting_generation {
            Vec::new()
        } else {
            self.solutions_in_set(spec.problem_set_id).await?
        };
        let mut chosen: Vec<_> = existing
            .into_iter()
            .filter(|s| checkpoints.is_empty() || checkpoints.contains(&s.checkpoint_id))
            .filter(|s| roles.is_empty() || roles.contains(&s.role))
            .collect();
        let mut outside_study = Vec::new();
        if let Some(max) = spec.max_problems {
            let first: BTreeSet<(i64, Uuid)> = chosen
                .iter()
                .map(|s| (s.problem_position, s.problem_id))
                .collect();
            let keep: HashSet<Uuid> = first.into_iter().take(max).map(|(_, id)| id).collect();
            let (kept, rest) = chosen
                .into_iter()
                .partition(|s| keep.contains(&s.problem_id));
            chosen = kept;
            outside_study = rest;
        }
        let matched = chosen.len();
        chosen.retain(|s| s.grade != GradeOutcome::Ungradable);
        outside_study.retain(|s| s.grade != GradeOutcome::Ungradable);
        let ungradable_left_out = (matched - chosen.len()) as i64;
        if chosen.is_empty() && !awaiting_generation {
            return Err(StoreError::Invalid(if matched > 0 {
                format!(
                    "none of the {matched} matching solutions states a final answer the grader \
                     can read (all are ungradable), so there is nothing to judge"
                )
            } else {
                "no solution of this problem set matches the chosen provers and roles: import \
                 solutions for the set (or generate them with a prover) first, or choose other \
                 provers or roles"
                    .into()
            }));
        }
        let quality_items = if spec.protocol.uses_quality_items() {
            let candidates: Vec<Candidate> = outside_study
                .iter()
                .map(|s| Candidate {
                    solution_id: s.id,
                    problem_id: s.problem_id,
                    is_correct: s.is_correct,
                })
                .collect();
            quality::choose_quality_items(
                &candidates,
                &spec.protocol.quality_items_wanted(),
                &mut rand::rng(),
            )
            .map_err(StoreError::Invalid)?
        } else {
            Vec::new()
        };
        let keys: Vec<i64> = {
            let mut rng = rand::rng();
            chosen
                .iter()
                .map(|_| rng.random_range(0..i64::MAX))
                .collect()
        };
        Ok(PlannedItems {
            chosen,
            quality_items,
            keys,
            ungradable_left_out,
        })
    }

    /// How study `id` is set up, read back from what it holds: its settings with the
    /// selection its solutions were chosen by (problem set, provers, roles, number of
    /// problems), the generation job writing them if any, and what it has collected. New study
    /// is pre-filled from it by Duplicate; Edit starts from it.
    pub async fn study_setup(&self, id: Uuid) -> StoreResult<StudySetup> {
        let study = self.study(id).await?;
        type Facts = Vec<(Uuid, Uuid, String)>;
        let (facts, problems, collected, generation): (
            Facts,
            i64,
            (i64, i64, i64),
            Option<(String,)>,
        ) = dispatch!(self, pool, _b => {
            let facts: Facts = sqlx::query_as(
                "SELECT DISTINCT p.problem_set_id, ss.checkpoint_id, so.role
                 FROM study_solutions ss
                 JOIN solutions so ON so.id = ss.solution_id
                 JOIN problems p ON p.id = ss.problem_id
                 WHERE ss.study_id = $1",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            let (problems,): (i64,) = sqlx::query_as(
                "SELECT COUNT(DISTINCT problem_id) FROM study_solutions WHERE study_id = $1",
            )
            .bind(id)
            .fetch_one(pool)
            .await?;
            let collected: (i64, i64, i64) = sqlx::query_as(COLLECTED_SQL).bind(id).fetch_one(pool).await?;
            let generation: Option<(String,)> = sqlx::query_as(
                "SELECT params FROM jobs WHERE study_id = $1 AND kind = 'generation'
                 ORDER BY created_at, id LIMIT 1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            (facts, problems, collected, generation)
        });
        let generation_params = generation
            .map(|(text,)| {
                serde_json::from_str::<serde_json::Value>(&text)
                    .map_err(|e| StoreError::Invalid(format!("stored generation parameters: {e}")))
            })
            .transpose()?;
        let mut checkpoint_ids: Vec<Uuid> = facts.iter().map(|(_, c, _)| *c).collect();
        checkpoint_ids.sort();
        checkpoint_ids.dedup();
        let mut roles: Vec<ProverRole> = facts
            .iter()
            .map(|(_, _, r)| parse_stored(r))
            .collect::<Result<_, _>>()?;
        roles.sort();
        roles.dedup();
        let mut spec = StudySpec {
            name: study.name.clone(),
            time_limit_ms: study.time_limit_ms,
            judgements_per_solution: study.judgements_per_solution,
            reclaim_grace_ms: study.reclaim_grace_ms,
            problem_set_id: facts.first().map_or(Uuid::nil(), |(set, _, _)| *set),
            checkpoint_ids,
            roles,
            max_problems: usize::try_from(problems).ok().filter(|n| *n > 0),
            protocol: study.protocol.clone(),
            answers: study.answers,
            time_limits: study.time_limits.clone(),
        };
        if let Some(params) = &generation_params {
            // A generated study's selection is what its job was asked for, whatever it has
            // written so far.
            let asked: GenerationSelection = serde_json::from_value(params.clone())
                .map_err(|e| StoreError::Invalid(format!("stored generation parameters: {e}")))?;
            spec.problem_set_id = asked.problem_set_id;
            spec.checkpoint_ids = asked.checkpoint_ids;
            spec.roles = asked.roles;
            spec.max_problems = asked.max_problems;
        }
        Ok(StudySetup {
            study,
            spec,
            generation_params,
            collected: collected_from(collected),
        })
    }

    /// Changes study `id` to the `wanted` settings (the selection included) as far as
    /// [`study_edit::plan_edit`] allows: in one write transaction that first checks again
    /// that nothing has been collected when a frozen-once-collected setting changes (on
    /// PostgreSQL the study's solution rows are locked, so a rater's claim cannot slip in
    /// between; claims skip locked rows), then updates the study and, when the selection or
    /// the number of quality items changes, chooses its solutions and quality items again.
    /// Returns what changed. The generation fields of `wanted` are taken from `setup` when the
    /// study is generated: its selection cannot change.
    pub async fn update_study(&self, id: Uuid, wanted: &StudySpec) -> StoreResult<EditPlan> {
        let setup = self.study_setup(id).await?;
        let generated = setup.generation_params.is_some();
        let plan = study_edit::plan_edit(&setup.spec, wanted, &setup.collected, generated)
            .map_err(StoreError::Conflict)?;
        if plan.changed.is_empty() {
            return Ok(plan);
        }
        let planned = if plan.reselect {
            Some(self.plan_items(wanted, false).await?)
        } else {
            None
        };
        let name = wanted.name.trim().to_string();
        dispatch!(self, pool, backend => {
            let mut tx = self.begin_write(pool).await?;
            if plan.design_changed {
                if backend == Backend::Postgres {
                    sqlx::query("SELECT 1 FROM study_solutions WHERE study_id = $1 FOR UPDATE")
                        .bind(id)
                        .fetch_all(&mut *tx)
                        .await?;
                }
                let now: (i64, i64, i64) = sqlx::query_as(COLLECTED_SQL).bind(id).fetch_one(&mut *tx).await?;
                if let Some(reason) = study_edit::design_frozen(&collected_from(now)) {
                    return Err(StoreError::Conflict(format!("the settings can no longer change: {reason}")));
                }
            }
            let updated = sqlx::query(
                "UPDATE studies SET name = $2, time_limit_ms = $3, judgements_per_solution = $4,
                        practice_items = $5, screening_items = $6, screening_pass_accuracy = $7,
                        gold_rate = $8, max_rater_ms = $9, break_every = $10,
                        ungradable_left_out = COALESCE($11, ungradable_left_out),
                        answer_format = $12, allow_even_odds = $13, justification = $14,
                        time_limit_arms = $15, arm_design = $16, arm_block_items = $17
                 WHERE id = $1",
            )
            .bind(id)
            .bind(&name)
            .bind(wanted.time_limit_ms)
            .bind(wanted.judgements_per_solution)
            .bind(wanted.protocol.practice_items)
            .bind(wanted.protocol.screening_items)
            .bind(wanted.protocol.screening_pass_accuracy)
            .bind(wanted.protocol.gold_rate)
            .bind(wanted.protocol.max_rater_ms)
            .bind(wanted.protocol.break_every)
            .bind(planned.as_ref().map(|p| p.ungradable_left_out))
            .bind(wanted.answers.format.as_str())
            .bind(wanted.answers.allow_even_odds)
            .bind(wanted.answers.justification.as_str())
            .bind(wanted.time_limits.arms_text())
            .bind(wanted.time_limits.design.as_str())
            .bind(wanted.time_limits.block_items)
            .execute(&mut *tx)
            .await;
            match updated {
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    return Err(StoreError::Conflict(format!("a study named {name:?} already exists")));
                }
                other => {
                    other?;
                }
            }
            if let Some(planned) = planned {
                for table in ["study_strata", "quality_items", "study_solutions"] {
                    sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE study_id = $1")))
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                insert_items!(tx, id, planned);
            }
            tx.commit().await?;
        });
        Ok(plan)
    }

    /// One study's settings.
    pub async fn study(&self, id: Uuid) -> StoreResult<Study> {
        let row: Option<Study> = dispatch!(self, pool, _b => {
            sqlx::query_as(AssertSqlSafe(format!("SELECT {STUDY_COLUMNS} FROM studies s WHERE s.id = $1")))
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        row.ok_or(StoreError::NotFound("study"))
    }

    /// All studies, newest first.
    pub async fn studies(&self) -> StoreResult<Vec<Study>> {
        let rows: Vec<Study> = dispatch!(self, pool, _b => {
            sqlx::query_as(AssertSqlSafe(format!(
                "SELECT {STUDY_COLUMNS} FROM studies s ORDER BY s.created_at DESC, s.name"
            )))
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Opens or closes a study; a closed study serves no new items (answers in flight still count).
    pub async fn set_study_status(&self, id: Uuid, status: StudyStatus) -> StoreResult<()> {
        let changed = dispatch!(self, pool, _b => {
            sqlx::query("UPDATE studies SET status = $1 WHERE id = $2")
                .bind(status.as_str())
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if changed == 0 {
            Err(StoreError::NotFound("study"))
        } else {
            Ok(())
        }
    }

    /// Audits a study's judging from its rows (see [`JudgingAudit`]).
    pub async fn audit_judging(&self, study_id: Uuid) -> StoreResult<JudgingAudit> {
        let (judgements, duplicated, over_assigned, repeated_problems): (i64, i64, i64, i64) = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT
                    (SELECT COUNT(*) FROM judgements WHERE study_id = $1),
                    (SELECT COUNT(*) - COUNT(DISTINCT assignment_id) FROM judgements WHERE study_id = $1)
                      + (SELECT COUNT(*) FROM (SELECT rater_id, solution_id FROM judgements WHERE study_id = $1
                                               GROUP BY rater_id, solution_id HAVING COUNT(*) > 1) d),
                    (SELECT COUNT(*) FROM study_solutions ss
                       JOIN studies s ON s.id = ss.study_id
                       LEFT JOIN (SELECT solution_id, COUNT(*) AS n FROM assignments
                                  WHERE study_id = $1 AND state IN ('active', 'judged')
                                  GROUP BY solution_id) a ON a.solution_id = ss.solution_id
                       LEFT JOIN (SELECT solution_id, COUNT(*) AS n FROM judgements
                                  WHERE study_id = $1 GROUP BY solution_id) j ON j.solution_id = ss.solution_id
                      WHERE ss.study_id = $1
                        AND (ss.slots_taken > s.judgements_per_solution
                             OR ss.slots_taken <> COALESCE(a.n, 0)
                             OR COALESCE(j.n, 0) > s.judgements_per_solution)),
                    (SELECT COUNT(*) FROM (SELECT rater_id, problem_id FROM assignments WHERE study_id = $1
                                           GROUP BY rater_id, problem_id HAVING COUNT(*) > 1) p)",
            )
            .bind(study_id)
            .fetch_one(pool)
            .await?
        });
        Ok(JudgingAudit {
            judgements,
            duplicated,
            over_assigned,
            repeated_problems,
        })
    }

    /// The assignments of a study that hold a judgement: what an audit compares with the
    /// acknowledgements a client received (the soak, the crash tests).
    pub async fn judged_assignment_ids(&self, study_id: Uuid) -> StoreResult<Vec<Uuid>> {
        Ok(dispatch!(self, pool, _b => {
            sqlx::query_scalar("SELECT assignment_id FROM judgements WHERE study_id = $1")
                .bind(study_id)
                .fetch_all(pool)
                .await?
        }))
    }

    /// What the study's raters cannot complete (see [`judging::completion_shortfall`]): per
    /// problem with free slots, the raters still able to take one of them — invited with a
    /// working link, not refused at screening, and not yet served a solution of that problem.
    pub async fn completion_shortfall(
        &self,
        id: Uuid,
    ) -> StoreResult<Option<judging::CompletionShortfall>> {
        let rows: Vec<(i64, i64)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT CAST(SUM(open_slots.slots) AS BIGINT),
                        (SELECT COUNT(*) FROM raters r
                          WHERE r.study_id = $1 AND r.revoked_at IS NULL
                            AND (r.screening_passed IS NULL OR r.screening_passed)
                            AND NOT EXISTS (SELECT 1 FROM assignments a
                                            WHERE a.study_id = $1 AND a.rater_id = r.id
                                              AND a.problem_id = open_slots.problem_id))
                 FROM (SELECT ss.problem_id, s.judgements_per_solution - ss.slots_taken AS slots
                       FROM study_solutions ss JOIN studies s ON s.id = ss.study_id
                       WHERE ss.study_id = $1 AND ss.slots_taken < s.judgements_per_solution) open_slots
                 GROUP BY open_slots.problem_id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        });
        Ok(judging::completion_shortfall(&rows))
    }

    /// Counts of what a study has collected so far.
    pub async fn study_progress(&self, id: Uuid) -> StoreResult<StudyProgress> {
        let row: Option<ProgressRow> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT s.judgements_per_solution,
                        (SELECT COUNT(*) FROM study_solutions WHERE study_id = $1),
                        (SELECT CAST(COALESCE(SUM(slots_taken), 0) AS BIGINT) FROM study_solutions WHERE study_id = $1),
                        (SELECT COUNT(*) FROM judgements WHERE study_id = $1),
                        (SELECT COUNT(*) FROM raters WHERE study_id = $1),
                        (SELECT COUNT(*) FROM judgements WHERE study_id = $1 AND verdict = 'correct'),
                        (SELECT COUNT(*) FROM judgements WHERE study_id = $1 AND verdict = 'wrong'),
                        (SELECT COUNT(*) FROM judgements WHERE study_id = $1 AND verdict = 'timeout'),
                        s.ungradable_left_out
                 FROM studies s WHERE s.id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        let (
            per_solution,
            solutions,
            slots,
            judged,
            raters,
            correct,
            wrong,
            timeouts,
            ungradable_left_out,
        ) = row.ok_or(StoreError::NotFound("study"))?;
        Ok(StudyProgress {
            solutions,
            wanted: solutions * per_solution,
            judged,
            in_progress: slots - judged,
            correct_verdicts: correct,
            wrong_verdicts: wrong,
            timeouts,
            raters,
            ungradable_left_out,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> StudySpec {
        StudySpec {
            name: "pilot".into(),
            time_limit_ms: 45_000,
            judgements_per_solution: 3,
            reclaim_grace_ms: 15_000,
            problem_set_id: Uuid::nil(),
            checkpoint_ids: Vec::new(),
            roles: Vec::new(),
            max_problems: None,
            protocol: RaterProtocol::default(),
            answers: Default::default(),
            time_limits: Default::default(),
        }
    }

    #[test]
    fn bad_settings_are_named_in_the_users_words() {
        assert_eq!(spec().check(), Ok(()));
        let refused = |s: StudySpec| s.check().unwrap_err();
        assert_eq!(
            refused(StudySpec {
                name: "  ".into(),
                ..spec()
            }),
            "the study needs a name"
        );
        let judgements = refused(StudySpec {
            judgements_per_solution: 0,
            ..spec()
        });
        assert!(
            judgements.starts_with("judgements per solution must be at least 1 (got 0)"),
            "{judgements}"
        );
        assert!(!judgements.contains("grace"), "{judgements}");
        let problems = refused(StudySpec {
            max_problems: Some(0),
            ..spec()
        });
        assert!(problems.starts_with("at most 0 problems"), "{problems}");
        assert!(
            refused(StudySpec {
                time_limit_ms: 0,
                ..spec()
            })
            .contains("time limit")
        );
        assert!(
            refused(StudySpec {
                reclaim_grace_ms: -1,
                ..spec()
            })
            .contains("grace")
        );
        // Arms that cannot be balanced with the study's problems, with the numbers.
        let arms = refused(StudySpec {
            max_problems: Some(12),
            time_limits: TimeLimits {
                arms: vec![15_000, 30_000, 45_000],
                design: crate::domain::ArmDesign::Blocked,
                block_items: 10,
            },
            ..spec()
        });
        assert!(
            arms.contains("need 30 items per rater") && arms.contains("at most 12"),
            "{arms}"
        );
        assert_eq!(
            StudySpec {
                max_problems: Some(1),
                ..spec()
            }
            .check(),
            Ok(())
        );
    }
}

//! Problem sets, problems, prover checkpoints and their solutions: what studies are made of.
//! Imports run in one transaction each and are idempotent (re-importing a file adds nothing).

use std::collections::HashMap;

use uuid::Uuid;

use super::{Store, StoreResult, dispatch, sha256_hex};
use crate::domain::{CheckpointKind, GradeOutcome, ProverRole, parse_stored};
use crate::grading;
use crate::problems::{
    ImportRejected, LineError, ParsedImport, ProblemRecord, ProblemRef, SolutionRecord,
};

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ImportSummary {
    /// Records in the file.
    pub records: usize,
    /// Records stored now.
    pub inserted: usize,
    /// Records already present (same file imported before, or repeated lines).
    pub already_present: usize,
    /// Solutions stored now that state no final answer: kept, but never study items.
    pub ungradable: usize,
}

impl ImportSummary {
    /// The summary in words, for the CLI and the import page: "Imported 40 new solutions (2
    /// already present, 42 in the file); 3 of them state no final answer …".
    pub fn describe(&self, what: &str) -> String {
        let mut text = format!(
            "Imported {} new {what} ({} already present, {} in the file).",
            self.inserted, self.already_present, self.records
        );
        if self.ungradable > 0 {
            text.push_str(&format!(
                " {} of them state{} no final answer the grader can read: they are stored as \
                 ungradable and left out of studies.",
                self.ungradable,
                if self.ungradable == 1 { "s" } else { "" }
            ));
        }
        text
    }
}

/// A problem set with its size, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProblemSetInfo {
    /// Stable id.
    pub id: Uuid,
    /// Unique name chosen at import.
    pub name: String,
    /// Number of problems.
    pub problems: i64,
    /// Number of solutions to its problems.
    pub solutions: i64,
}

/// A model checkpoint with its solution count, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Stable id.
    pub id: Uuid,
    /// Prover or verifier.
    pub kind: CheckpointKind,
    /// Unique label.
    pub label: String,
    /// Training round (0 = initial).
    pub round: i64,
    /// Solutions written by it.
    pub solutions: i64,
}

/// A solution with the facts study creation filters on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolutionFacts {
    /// Solution id.
    pub id: Uuid,
    /// Its problem.
    pub problem_id: Uuid,
    /// Position of the problem in its set (file line), for deterministic subsets.
    pub problem_position: i64,
    /// The checkpoint that wrote it.
    pub checkpoint_id: Uuid,
    /// The prover's role.
    pub role: ProverRole,
    /// The grader's verdict (true only when graded correct).
    pub is_correct: bool,
    /// The grader's outcome; ungradable solutions never become study or quality items.
    pub grade: GradeOutcome,
}

impl Store {
    /// Imports GSM8K problems into the named set (created if new). Problems already in the set
    /// (same question) are skipped, so importing the same file twice adds nothing.
    pub async fn import_problems(
        &self,
        set_name: &str,
        records: &[ProblemRecord],
        now: i64,
    ) -> StoreResult<ImportSummary> {
        let set_name = set_name.trim();
        if set_name.is_empty() {
            return Err(ImportRejected::whole_file("the problem set needs a name").into());
        }
        let mut summary = ImportSummary {
            records: records.len(),
            ..ImportSummary::default()
        };
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            sqlx::query("INSERT INTO problem_sets (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                .bind(Uuid::now_v7())
                .bind(set_name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let (set_id,): (Uuid,) = sqlx::query_as("SELECT id FROM problem_sets WHERE name = $1")
                .bind(set_name)
                .fetch_one(&mut *tx)
                .await?;
            for record in records {
                let inserted = sqlx::query(
                    "INSERT INTO problems (id, problem_set_id, position, question, question_sha, ground_truth,
                                           reference_solution, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (problem_set_id, question_sha) DO NOTHING",
                )
                .bind(Uuid::now_v7())
                .bind(set_id)
                .bind(record.line as i64)
                .bind(&record.question)
                .bind(sha256_hex(&record.question))
                .bind(&record.ground_truth)
                .bind(&record.reference_solution)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                summary.inserted += inserted as usize;
            }
            tx.commit().await?;
        });
        summary.already_present = summary.records - summary.inserted;
        Ok(summary)
    }

    /// Imports model-written solutions. Each line's problem must exist (by id, or by question
    /// within `set_name` if given, else across all sets unambiguously); its checkpoint is created
    /// as a prover if new and must otherwise have the same round. Every solution is graded
    /// against its problem's ground truth; ungradable ones are stored too, and counted in the
    /// summary. Any unresolvable line refuses the whole file.
    pub async fn import_solutions(
        &self,
        set_name: Option<&str>,
        records: &[SolutionRecord],
        now: i64,
    ) -> StoreResult<ImportSummary> {
        self.import_solutions_with(set_name, records, &[], now)
            .await
    }

    /// [`Store::import_solutions`] of a file parsed line by line: its bad lines are refused
    /// together with those only the database can judge (an unknown problem, a checkpoint of
    /// another round, …), so one refusal names every bad line of the file.
    pub async fn import_parsed_solutions(
        &self,
        set_name: Option<&str>,
        parsed: &ParsedImport<SolutionRecord>,
        now: i64,
    ) -> StoreResult<ImportSummary> {
        self.import_solutions_with(set_name, &parsed.records, &parsed.errors, now)
            .await
    }

    async fn import_solutions_with(
        &self,
        set_name: Option<&str>,
        records: &[SolutionRecord],
        parse_errors: &[LineError],
        now: i64,
    ) -> StoreResult<ImportSummary> {
        let mut summary = ImportSummary {
            records: records.len(),
            ..ImportSummary::default()
        };
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let set_id: Option<Uuid> = match set_name {
                Some(name) => {
                    let row: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM problem_sets WHERE name = $1")
                        .bind(name.trim())
                        .fetch_optional(&mut *tx)
                        .await?;
                    match row {
                        Some((id,)) => Some(id),
                        None => {
                            let mut refused = ImportRejected::whole_file(format!("no problem set named {name:?}"));
                            refused.errors.extend_from_slice(parse_errors);
                            return Err(refused.into());
                        }
                    }
                }
                None => None,
            };
            let mut errors = Vec::new();
            let mut checkpoints: HashMap<String, (Uuid, i64)> = HashMap::new();
            let mut resolved: Vec<(&SolutionRecord, Uuid, String, Uuid)> = Vec::with_capacity(records.len());
            for record in records {
                let problem: Vec<(Uuid, String)> = match &record.problem {
                    ProblemRef::Id(id) => sqlx::query_as("SELECT id, ground_truth FROM problems WHERE id = $1")
                        .bind(*id)
                        .fetch_all(&mut *tx)
                        .await?,
                    ProblemRef::Question(q) => sqlx::query_as(
                        "SELECT id, ground_truth FROM problems
                         WHERE question_sha = $1 AND ($2 IS NULL OR problem_set_id = $2) LIMIT 2",
                    )
                    .bind(sha256_hex(q))
                    .bind(set_id)
                    .fetch_all(&mut *tx)
                    .await?,
                };
                let (problem_id, ground_truth) = match problem.as_slice() {
                    [one] => one.clone(),
                    [] => {
                        errors.push(LineError { line: record.line, reason: "no such problem (import its problem set first)".into() });
                        continue;
                    }
                    _ => {
                        errors.push(LineError {
                            line: record.line,
                            reason: "the question is in several problem sets; name the set or use problem_id".into(),
                        });
                        continue;
                    }
                };
                let checkpoint = match checkpoints.get(&record.checkpoint_label) {
                    Some(found) => Some(*found),
                    None => {
                        let row: Option<(Uuid, i64, String)> =
                            sqlx::query_as("SELECT id, round, kind FROM checkpoints WHERE label = $1")
                                .bind(&record.checkpoint_label)
                                .fetch_optional(&mut *tx)
                                .await?;
                        match row {
                            Some((id, round, kind)) if kind == CheckpointKind::Prover.as_str() => Some((id, round)),
                            Some(_) => {
                                errors.push(LineError {
                                    line: record.line,
                                    reason: format!("checkpoint {:?} is a verifier, not a prover", record.checkpoint_label),
                                });
                                continue;
                            }
                            None => None,
                        }
                    }
                };
                let (checkpoint_id, round) = match checkpoint {
                    Some(found) => found,
                    None => {
                        let id = Uuid::now_v7();
                        sqlx::query(
                            "INSERT INTO checkpoints (id, kind, label, round, metadata, created_at)
                             VALUES ($1, $2, $3, $4, $5, $6)",
                        )
                        .bind(id)
                        .bind(CheckpointKind::Prover.as_str())
                        .bind(&record.checkpoint_label)
                        .bind(record.round)
                        .bind(r#"{"source":"import"}"#)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        (id, record.round)
                    }
                };
                checkpoints.insert(record.checkpoint_label.clone(), (checkpoint_id, round));
                if round != record.round {
                    errors.push(LineError {
                        line: record.line,
                        reason: format!("checkpoint {:?} is round {round}, the line says round {}", record.checkpoint_label, record.round),
                    });
                    continue;
                }
                resolved.push((record, problem_id, ground_truth, checkpoint_id));
            }
            if !errors.is_empty() || !parse_errors.is_empty() {
                tx.rollback().await?;
                errors.extend_from_slice(parse_errors);
                errors.sort_by_key(|e| e.line);
                return Err(ImportRejected { errors }.into());
            }
            for (record, problem_id, ground_truth, checkpoint_id) in resolved {
                let grade = grading::grade(&record.text, &ground_truth);
                let inserted = sqlx::query(
                    "INSERT INTO solutions (id, problem_id, checkpoint_id, role, text, text_sha, extracted_answer,
                                            is_correct, grade, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (problem_id, checkpoint_id, role, text_sha) DO NOTHING",
                )
                .bind(Uuid::now_v7())
                .bind(problem_id)
                .bind(checkpoint_id)
                .bind(record.role.as_str())
                .bind(&record.text)
                .bind(sha256_hex(&record.text))
                .bind(grade.extracted_answer.as_deref())
                .bind(grade.is_correct())
                .bind(grade.outcome.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                summary.inserted += inserted as usize;
                if grade.outcome == GradeOutcome::Ungradable {
                    summary.ungradable += inserted as usize;
                }
            }
            tx.commit().await?;
        });
        summary.already_present = summary.records - summary.inserted;
        Ok(summary)
    }

    /// All problem sets with their sizes.
    pub async fn problem_sets(&self) -> StoreResult<Vec<ProblemSetInfo>> {
        let rows: Vec<(Uuid, String, i64, i64)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT ps.id, ps.name,
                        (SELECT COUNT(*) FROM problems p WHERE p.problem_set_id = ps.id),
                        (SELECT COUNT(*) FROM solutions s JOIN problems p ON p.id = s.problem_id
                          WHERE p.problem_set_id = ps.id)
                 FROM problem_sets ps ORDER BY ps.name",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, name, problems, solutions)| ProblemSetInfo {
                id,
                name,
                problems,
                solutions,
            })
            .collect())
    }

    /// All checkpoints, provers first, by round.
    pub async fn checkpoints(&self) -> StoreResult<Vec<CheckpointInfo>> {
        let rows: Vec<(Uuid, String, String, i64, i64)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT c.id, c.kind, c.label, c.round,
                        (SELECT COUNT(*) FROM solutions s WHERE s.checkpoint_id = c.id)
                 FROM checkpoints c ORDER BY c.kind, c.round, c.label",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(id, kind, label, round, solutions)| {
                Ok(CheckpointInfo {
                    id,
                    kind: parse_stored(&kind)?,
                    label,
                    round,
                    solutions,
                })
            })
            .collect()
    }

    /// Every solution to a problem of the set, ungradable ones included, with what study
    /// creation filters on.
    pub async fn solutions_in_set(&self, problem_set_id: Uuid) -> StoreResult<Vec<SolutionFacts>> {
        let rows: Vec<(Uuid, Uuid, i64, Uuid, String, bool, String)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT s.id, s.problem_id, p.position, s.checkpoint_id, s.role, s.is_correct, s.grade
                 FROM solutions s JOIN problems p ON p.id = s.problem_id
                 WHERE p.problem_set_id = $1 ORDER BY p.position, s.id",
            )
            .bind(problem_set_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(
                |(id, problem_id, problem_position, checkpoint_id, role, is_correct, grade)| {
                    Ok(SolutionFacts {
                        id,
                        problem_id,
                        problem_position,
                        checkpoint_id,
                        role: parse_stored(&role)?,
                        is_correct,
                        grade: parse_stored(&grade)?,
                    })
                },
            )
            .collect()
    }
}

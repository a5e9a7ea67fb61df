//! Storage for generation jobs: which problems to solve, and committing generated solutions
//! so that a retried job never writes anything twice.
//!
//! A generation job works in chunks (one problem × one prover checkpoint, all roles and
//! samples). A chunk's solutions, their links into the study, the chunk's row in `job_chunks`
//! and the job's progress are written in one transaction, fenced by the job's lease: a worker
//! that lost its lease writes nothing, and a retry skips every chunk already recorded.

use std::collections::{BTreeSet, HashSet};

use rand::Rng;
use uuid::Uuid;

use super::jobs::Lease;
use super::{Store, StoreResult, dispatch, fence_progress, sha256_hex};
use crate::domain::{GradeOutcome, ProverRole};

/// A problem a generation job solves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationProblem {
    /// The problem.
    pub id: Uuid,
    /// Its statement, given to the prover.
    pub question: String,
    /// Ground truth the grader compares with.
    pub ground_truth: String,
}

/// One generated, graded solution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedSolution {
    /// The role the prover played.
    pub role: ProverRole,
    /// The solution text as generated (calculator annotations included).
    pub text: String,
    /// The grader's reading of the final answer.
    pub extracted_answer: Option<String>,
    /// The grader's outcome against the ground truth.
    pub grade: GradeOutcome,
}

/// The results of one chunk of a generation job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedChunk {
    /// Unique within the job: `problem_id/checkpoint_id`.
    pub key: String,
    /// The problem solved.
    pub problem_id: Uuid,
    /// The prover checkpoint that wrote the solutions.
    pub checkpoint_id: Uuid,
    /// All roles and samples.
    pub solutions: Vec<GeneratedSolution>,
}

impl Store {
    /// The first `limit` problems of a set (by position), or all of them.
    pub async fn problems_for_generation(
        &self,
        problem_set_id: Uuid,
        limit: Option<usize>,
    ) -> StoreResult<Vec<GenerationProblem>> {
        let limit = limit.map_or(i64::MAX, |n| n as i64);
        let rows: Vec<(Uuid, String, String)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT id, question, ground_truth FROM problems WHERE problem_set_id = $1
                 ORDER BY position LIMIT $2",
            )
            .bind(problem_set_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, question, ground_truth)| GenerationProblem {
                id,
                question,
                ground_truth,
            })
            .collect())
    }

    /// Commits finished chunks of a generation job for `study_id` in one transaction, fenced by
    /// `lease`, and sets the job's progress to `progress_done`. Chunks already recorded (by an
    /// earlier attempt) are skipped; identical texts reuse the existing solution row.
    /// Ungradable solutions are stored but not added to the study: the study counts them as
    /// left out. Returns how many chunks were newly committed.
    pub async fn commit_generated(
        &self,
        lease: &Lease,
        study_id: Uuid,
        chunks: &[GeneratedChunk],
        progress_done: i64,
        now: i64,
    ) -> StoreResult<usize> {
        let keys: Vec<i64> = {
            let mut rng = rand::rng();
            chunks
                .iter()
                .flat_map(|c| c.solutions.iter())
                .map(|_| rng.random_range(0..i64::MAX))
                .collect()
        };
        let committed = dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            fence_progress!(tx, lease, progress_done);
            let mut committed = 0usize;
            let mut key_iter = keys.iter();
            let mut strata = BTreeSet::new();
            let mut ungradable = HashSet::new();
            for chunk in chunks {
                let fresh = sqlx::query(
                    "INSERT INTO job_chunks (job_id, chunk_key, finished_at) VALUES ($1, $2, $3)
                     ON CONFLICT (job_id, chunk_key) DO NOTHING",
                )
                .bind(lease.job_id)
                .bind(&chunk.key)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if fresh == 0 {
                    continue;
                }
                committed += 1;
                for solution in &chunk.solutions {
                    let text_sha = sha256_hex(&solution.text);
                    sqlx::query(
                        "INSERT INTO solutions (id, problem_id, checkpoint_id, role, text, text_sha,
                                                extracted_answer, is_correct, grade, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                         ON CONFLICT (problem_id, checkpoint_id, role, text_sha) DO NOTHING",
                    )
                    .bind(Uuid::now_v7())
                    .bind(chunk.problem_id)
                    .bind(chunk.checkpoint_id)
                    .bind(solution.role.as_str())
                    .bind(&solution.text)
                    .bind(&text_sha)
                    .bind(&solution.extracted_answer)
                    .bind(solution.grade == GradeOutcome::Correct)
                    .bind(solution.grade.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let (solution_id, is_correct, grade): (Uuid, bool, String) = sqlx::query_as(
                        "SELECT id, is_correct, grade FROM solutions
                         WHERE problem_id = $1 AND checkpoint_id = $2 AND role = $3 AND text_sha = $4",
                    )
                    .bind(chunk.problem_id)
                    .bind(chunk.checkpoint_id)
                    .bind(solution.role.as_str())
                    .bind(&text_sha)
                    .fetch_one(&mut *tx)
                    .await?;
                    if crate::domain::parse_stored::<GradeOutcome>(&grade)? == GradeOutcome::Ungradable {
                        ungradable.insert(solution_id);
                        continue;
                    }
                    sqlx::query(
                        "INSERT INTO study_solutions (study_id, solution_id, problem_id, checkpoint_id,
                                                      is_correct, shuffle_key)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (study_id, solution_id) DO NOTHING",
                    )
                    .bind(study_id)
                    .bind(solution_id)
                    .bind(chunk.problem_id)
                    .bind(chunk.checkpoint_id)
                    .bind(is_correct)
                    .bind(key_iter.next().copied().unwrap_or_default())
                    .execute(&mut *tx)
                    .await?;
                    strata.insert((chunk.checkpoint_id, is_correct));
                }
            }
            if !ungradable.is_empty() {
                sqlx::query("UPDATE studies SET ungradable_left_out = ungradable_left_out + $1 WHERE id = $2")
                    .bind(ungradable.len() as i64)
                    .bind(study_id)
                    .execute(&mut *tx)
                    .await?;
            }
            for (checkpoint_id, is_correct) in strata {
                sqlx::query(
                    "INSERT INTO study_strata (study_id, checkpoint_id, is_correct) VALUES ($1, $2, $3)
                     ON CONFLICT (study_id, checkpoint_id, is_correct) DO NOTHING",
                )
                .bind(study_id)
                .bind(checkpoint_id)
                .bind(is_correct)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            committed
        });
        Ok(committed)
    }

    /// How many solutions of `study_id` each prover checkpoint and role contributed, and how
    /// many of them are correct: the figures a researcher checks after generation.
    pub async fn generated_summary(
        &self,
        study_id: Uuid,
    ) -> StoreResult<Vec<(String, ProverRole, i64, i64)>> {
        let rows: Vec<(String, String, i64, i64)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT c.label, s.role, COUNT(*), SUM(CASE WHEN s.is_correct THEN 1 ELSE 0 END)
                 FROM study_solutions ss
                 JOIN solutions s ON s.id = ss.solution_id
                 JOIN checkpoints c ON c.id = s.checkpoint_id
                 WHERE ss.study_id = $1
                 GROUP BY c.label, s.role ORDER BY c.label, s.role",
            )
            .bind(study_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(label, role, n, correct)| {
                Ok((label, crate::domain::parse_stored(&role)?, n, correct))
            })
            .collect()
    }
}

//! Training runs of the checkability game: the finished prover steps and rounds a run's job
//! has recorded. Every write is fenced by the job's lease and moves its progress bar in the
//! same transaction, so what is recorded is exactly what a retried run skips; a round's prover
//! is registered as a checkpoint in the transaction that records the round, so it is
//! registered once however often the job is retried.

use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::jobs::{JOB_VIEW_SELECT, JobView, JobViewRow, Lease, job_view_from_row};
use super::models::{check_checkpoint_label, label_taken};
use super::{Store, StoreError, StoreResult, dispatch, fence_progress, insert_model_checkpoint};
use crate::domain::{CheckpointKind, JobKind};

/// A finished round as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRound {
    /// The round (0 = the initial prover).
    pub round: i64,
    /// The checkpoint of the round's prover.
    pub checkpoint_id: Uuid,
    /// That checkpoint's label (what the study pages call it).
    pub checkpoint_label: String,
    /// The round's report (`ml::game_round::RoundReport` as JSON).
    pub report: serde_json::Value,
    /// When it was recorded (Unix ms).
    pub finished_at: i64,
}

/// A finished prover step as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStep {
    /// Its round (1 or more).
    pub round: i64,
    /// Its number in the round (1 or more).
    pub step: i64,
    /// The step's record (`ml::game_round::StepRecord` as JSON).
    pub record: serde_json::Value,
}

/// The prover checkpoint a finished round names.
#[derive(Debug, Clone, PartialEq)]
pub enum RoundProver {
    /// A checkpoint already registered (the initial prover, for round 0).
    Existing(Uuid),
    /// A new prover to register with the round: label, folder relative to the models
    /// directory, metadata.
    New {
        /// Unique label.
        label: String,
        /// Folder of its model files relative to the models directory.
        model_dir: String,
        /// Where it came from (run, round, metrics).
        metadata: serde_json::Value,
    },
}

fn parse_json(text: &str, what: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Invalid(format!("the stored {what} is not valid JSON: {e}")))
}

impl Store {
    /// Records a finished prover step of the run held by `lease` and sets its progress, in
    /// one fenced transaction. Recording the same step again changes nothing.
    pub async fn record_game_step(
        &self,
        lease: &Lease,
        round: i64,
        step: i64,
        record: &serde_json::Value,
        progress_done: i64,
        now: i64,
    ) -> StoreResult<()> {
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            fence_progress!(tx, lease, progress_done);
            sqlx::query(
                "INSERT INTO game_steps (job_id, round, step, record, finished_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (job_id, round, step) DO NOTHING",
            )
            .bind(lease.job_id)
            .bind(round)
            .bind(step)
            .bind(record.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Records a finished round of the run held by `lease`, registering its prover when it is
    /// new, and sets the job's progress, in one fenced transaction. Returns the round's prover
    /// checkpoint; a round recorded before keeps its checkpoint and nothing is registered. A
    /// taken label is a [`StoreError::Conflict`] and nothing is written.
    pub async fn record_game_round(
        &self,
        lease: &Lease,
        round: i64,
        prover: &RoundProver,
        report: &serde_json::Value,
        progress_done: i64,
        now: i64,
    ) -> StoreResult<Uuid> {
        if let RoundProver::New { label, .. } = prover {
            check_checkpoint_label(label, round)?;
        }
        let checkpoint = dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            fence_progress!(tx, lease, progress_done);
            let recorded: Option<(Uuid,)> = sqlx::query_as(
                "SELECT checkpoint_id FROM game_rounds WHERE job_id = $1 AND round = $2",
            )
            .bind(lease.job_id)
            .bind(round)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((id,)) = recorded {
                tx.commit().await?;
                return Ok(id);
            }
            let checkpoint = match prover {
                RoundProver::Existing(id) => *id,
                RoundProver::New { label, model_dir, metadata } => {
                    let id = Uuid::now_v7();
                    let label = label.trim();
                    let kind = CheckpointKind::Prover;
                    if !insert_model_checkpoint!(tx, id, kind, label, round, metadata, now, model_dir) {
                        return Err(label_taken(label));
                    }
                    id
                }
            };
            sqlx::query(
                "INSERT INTO game_rounds (job_id, round, checkpoint_id, report, finished_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(lease.job_id)
            .bind(round)
            .bind(checkpoint)
            .bind(report.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            checkpoint
        });
        Ok(checkpoint)
    }

    /// The finished rounds of a run, in order.
    pub async fn game_rounds(&self, job_id: Uuid) -> StoreResult<Vec<StoredRound>> {
        let rows: Vec<(i64, Uuid, String, String, i64)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT g.round, g.checkpoint_id, c.label, g.report, g.finished_at
                 FROM game_rounds g JOIN checkpoints c ON c.id = g.checkpoint_id
                 WHERE g.job_id = $1 ORDER BY g.round",
            )
            .bind(job_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(
                |(round, checkpoint_id, checkpoint_label, report, finished_at)| {
                    Ok(StoredRound {
                        round,
                        checkpoint_id,
                        checkpoint_label,
                        report: parse_json(&report, "round report")?,
                        finished_at,
                    })
                },
            )
            .collect()
    }

    /// The finished prover steps of a run, by round and step.
    pub async fn game_steps(&self, job_id: Uuid) -> StoreResult<Vec<StoredStep>> {
        let rows: Vec<(i64, i64, String)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT round, step, record FROM game_steps WHERE job_id = $1 ORDER BY round, step",
            )
            .bind(job_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(round, step, record)| {
                Ok(StoredStep {
                    round,
                    step,
                    record: parse_json(&record, "step record")?,
                })
            })
            .collect()
    }

    /// Training-run jobs with their parameters, newest first (the runs page).
    pub async fn training_runs(&self) -> StoreResult<Vec<(JobView, serde_json::Value)>> {
        let rows: Vec<JobViewRow> = dispatch!(self, pool, _b => {
            sqlx::query_as(AssertSqlSafe(format!(
                "{JOB_VIEW_SELECT} WHERE j.kind = $1 ORDER BY j.created_at DESC, j.id DESC"
            )))
            .bind(JobKind::TrainingRun.as_str())
            .fetch_all(pool)
            .await?
        });
        let params: Vec<(Uuid, String)> = dispatch!(self, pool, _b => {
            sqlx::query_as("SELECT id, params FROM jobs WHERE kind = $1")
                .bind(JobKind::TrainingRun.as_str())
                .fetch_all(pool)
                .await?
        });
        let mut params: std::collections::HashMap<Uuid, String> = params.into_iter().collect();
        rows.into_iter()
            .map(|row| {
                let view = job_view_from_row(row)?;
                let text = params.remove(&view.id).unwrap_or_default();
                Ok((view, parse_json(&text, "job parameters")?))
            })
            .collect()
    }

    /// A job's stored parameters.
    pub async fn job_params(&self, job_id: Uuid) -> StoreResult<serde_json::Value> {
        let row: Option<(String,)> = dispatch!(self, pool, _b => {
            sqlx::query_as("SELECT params FROM jobs WHERE id = $1")
                .bind(job_id)
                .fetch_optional(pool)
                .await?
        });
        let (text,) = row.ok_or(StoreError::NotFound("job"))?;
        parse_json(&text, "job parameters")
    }
}

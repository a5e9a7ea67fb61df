//! Verifier versions, the ratings they are trained from, and the scores they give.
//!
//! A version is registered in one transaction with its checkpoint row, fenced by the training
//! job's lease, after its files are in place: a run that fails or is killed registers nothing,
//! and the previous version stays current. Scores are written per version in lease-fenced
//! batches, so a retried scoring job only scores what is missing.

use uuid::Uuid;

use super::jobs::Lease;
use super::models::label_taken;
use super::{Store, StoreError, StoreResult, dispatch, fence_progress, insert_model_checkpoint};
use crate::domain::{
    CheckpointKind, JobKind, LabelSource, ProverRole, Verdict, VerifierLoss, parse_stored,
};

/// A solution in the training scope, with what training needs to know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct RatedSolution {
    /// The solution.
    pub solution_id: Uuid,
    /// Its problem.
    pub problem_id: Uuid,
    /// The problem's question.
    pub question: String,
    /// The solution text as stored (calculator annotations included).
    pub text: String,
    /// The grader's verdict.
    pub is_correct: bool,
    /// The role it was written in.
    pub role: ProverRole,
    /// The round of its prover checkpoint.
    pub round: i64,
}

/// One judgement, as training labels need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatedVote {
    /// The judged solution.
    pub solution_id: Uuid,
    /// Who judged.
    pub rater_id: Uuid,
    /// What they said.
    pub verdict: Verdict,
}

/// Everything training labels are computed from: the solutions in scope and every judgement
/// of them so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RatingsSnapshot {
    /// Solutions of the scope (each once, even if it is in several studies).
    pub solutions: Vec<RatedSolution>,
    /// Judgements of those solutions in the scope's studies.
    pub votes: Vec<RatedVote>,
}

/// What a finished training run registers.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVerifierVersion {
    /// Checkpoint label; `None` gives `verifier-v{version}`.
    pub label: Option<String>,
    /// Folder of the version's files, relative to the models directory.
    pub model_dir: String,
    /// The checkpoint row's metadata (architecture, files).
    pub checkpoint_metadata: serde_json::Value,
    /// The checkpoint training started from.
    pub base_checkpoint_id: Option<Uuid>,
    /// The training job, if a job trained it.
    pub job_id: Option<Uuid>,
    /// Where its labels came from.
    pub label_source: LabelSource,
    /// Its loss.
    pub loss: VerifierLoss,
    /// Non-timeout judgements in the database when training was asked for.
    pub judgements_seen: i64,
    /// Validation metrics and the training report.
    pub metrics: serde_json::Value,
    /// Studies whose solutions the new version should score: a scoring job is queued for each
    /// in the same transaction.
    pub score_studies: Vec<Uuid>,
}

/// A registered verifier version.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifierVersion {
    /// Its checkpoint.
    pub checkpoint_id: Uuid,
    /// 1, 2, …: the highest is current.
    pub version: i64,
    /// Checkpoint label.
    pub label: String,
    /// Files, relative to the models directory.
    pub model_dir: Option<String>,
    /// Label of the checkpoint it was trained from.
    pub base_label: Option<String>,
    /// The job that trained it.
    pub job_id: Option<Uuid>,
    /// Label source.
    pub label_source: LabelSource,
    /// Loss.
    pub loss: VerifierLoss,
    /// Judgements in the database when its training was asked for.
    pub judgements_seen: i64,
    /// Metrics JSON (see `FitReport`).
    pub metrics: serde_json::Value,
    /// Solutions it has scored.
    pub scored: i64,
    /// When it was registered.
    pub created_at: i64,
}

/// One stored score, with what a summary groups it by.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyScore {
    /// The version that scored.
    pub version: i64,
    /// The solution.
    pub solution_id: Uuid,
    /// Its role.
    pub role: ProverRole,
    /// Its ground truth.
    pub is_correct: bool,
    /// The score.
    pub score: f64,
}

/// Kind of the training job, as the partial unique index names it.
const TRAINING: JobKind = JobKind::VerifierTraining;

impl Store {
    /// Solutions and judgements of `study` (or of every study), for training labels.
    pub async fn ratings_snapshot(&self, study: Option<Uuid>) -> StoreResult<RatingsSnapshot> {
        type SolutionRow = (Uuid, Uuid, String, String, bool, String, i64);
        let (solutions, votes): (Vec<SolutionRow>, Vec<(Uuid, Uuid, String)>) = dispatch!(self, pool, _b => {
            let solutions = sqlx::query_as(
                "SELECT s.id, s.problem_id, p.question, s.text, s.is_correct, s.role, c.round
                     FROM solutions s
                     JOIN problems p ON p.id = s.problem_id
                     JOIN checkpoints c ON c.id = s.checkpoint_id
                     WHERE s.id IN (SELECT solution_id FROM study_solutions
                                    WHERE $1 IS NULL OR study_id = $1)
                     ORDER BY s.id",
            )
            .bind(study)
            .fetch_all(pool)
            .await?;
            let votes = sqlx::query_as(
                "SELECT solution_id, rater_id, verdict FROM judgements
                     WHERE $1 IS NULL OR study_id = $1
                     ORDER BY solution_id, rater_id",
            )
            .bind(study)
            .fetch_all(pool)
            .await?;
            (solutions, votes)
        });
        Ok(RatingsSnapshot {
            solutions: solutions
                .into_iter()
                .map(
                    |(solution_id, problem_id, question, text, is_correct, role, round)| {
                        Ok(RatedSolution {
                            solution_id,
                            problem_id,
                            question,
                            text,
                            is_correct,
                            role: parse_stored(&role)?,
                            round,
                        })
                    },
                )
                .collect::<Result<_, sqlx::Error>>()?,
            votes: votes
                .into_iter()
                .map(|(solution_id, rater_id, verdict)| {
                    Ok(RatedVote {
                        solution_id,
                        rater_id,
                        verdict: parse_stored(&verdict)?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()?,
        })
    }

    /// Judgements other than timeouts, over all studies: what the automatic training trigger
    /// counts.
    pub async fn judgement_count(&self) -> StoreResult<i64> {
        let (count,): (i64,) = dispatch!(self, pool, _b => {
            sqlx::query_as("SELECT COUNT(*) FROM judgements WHERE verdict <> 'timeout'")
                .fetch_one(pool)
                .await?
        });
        Ok(count)
    }

    /// The judgement count recorded by the newest training job (any state), or 0: the
    /// automatic trigger fires once [`Store::judgement_count`] is `every` above it.
    pub async fn judgements_at_last_training(&self) -> StoreResult<i64> {
        let row: Option<(String,)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT params FROM jobs WHERE kind = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
            )
            .bind(TRAINING.as_str())
            .fetch_optional(pool)
            .await?
        });
        Ok(row
            .and_then(|(params,)| serde_json::from_str::<serde_json::Value>(&params).ok())
            .and_then(|p| p.get("judgements_seen").and_then(|n| n.as_i64()))
            .unwrap_or(0))
    }

    /// Queues a verifier training job unless one is already queued or running (then `None`):
    /// a partial unique index makes that check race-free across servers and workers.
    pub async fn enqueue_verifier_training(
        &self,
        params: &serde_json::Value,
        created_by: Option<Uuid>,
        now: i64,
    ) -> StoreResult<Option<Uuid>> {
        let id = Uuid::now_v7();
        let inserted = dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let inserted = sqlx::query(
                "INSERT INTO jobs (id, kind, params, state, progress_total, max_attempts, created_by, created_at)
                 VALUES ($1, $2, $3, 'queued', 0, 3, $4, $5)
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(TRAINING.as_str())
            .bind(params.to_string())
            .bind(created_by)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            inserted
        });
        Ok((inserted > 0).then_some(id))
    }

    /// Queues a job scoring every solution of `study_id` with the verifier version
    /// `checkpoint_id` (the current one when `None`, resolved when the job runs).
    pub async fn enqueue_verifier_scoring(
        &self,
        study_id: Uuid,
        checkpoint_id: Option<Uuid>,
        created_by: Option<Uuid>,
        now: i64,
    ) -> StoreResult<Uuid> {
        self.enqueue_job(
            &super::jobs::NewJob {
                kind: JobKind::VerifierScoring,
                params: scoring_params(checkpoint_id),
                study_id: Some(study_id),
                created_by,
                max_attempts: 3,
                progress_total: 0,
            },
            now,
        )
        .await
    }

    /// Registers a verifier version: its checkpoint row, its version row (number = highest + 1)
    /// and a scoring job per study in `score_studies`, all in one transaction. With `lease`
    /// the transaction is fenced by the training job's lease ([`StoreError::LeaseLost`] when it
    /// is gone); a job registers at most one version (a retry after a crash finds it through
    /// [`Store::verifier_version_of_job`]). Returns the checkpoint id and version number.
    pub async fn register_verifier_version(
        &self,
        lease: Option<&Lease>,
        new: &NewVerifierVersion,
        now: i64,
    ) -> StoreResult<(Uuid, i64)> {
        let checkpoint_id = Uuid::now_v7();
        let scoring_jobs: Vec<Uuid> = new.score_studies.iter().map(|_| Uuid::now_v7()).collect();
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            if let Some(lease) = lease {
                let fenced = sqlx::query(
                    "UPDATE jobs SET progress_done = progress_total
                     WHERE id = $1 AND lease_token = $2 AND state = 'running'",
                )
                .bind(lease.job_id)
                .bind(lease.token)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if fenced == 0 {
                    return Err(StoreError::LeaseLost);
                }
            }
            let (highest,): (Option<i64>,) =
                sqlx::query_as("SELECT MAX(version) FROM verifier_versions")
                    .fetch_one(&mut *tx)
                    .await?;
            let version = highest.unwrap_or(0) + 1;
            let mut label = new
                .label
                .clone()
                .unwrap_or_else(|| format!("verifier-v{version}"));
            for attempt in 0..2 {
                let kind = CheckpointKind::Verifier;
                let metadata = &new.checkpoint_metadata;
                let dir = &new.model_dir;
                if insert_model_checkpoint!(tx, checkpoint_id, kind, &label, 0i64, metadata, now, dir) {
                    break;
                }
                if attempt == 1 {
                    return Err(label_taken(&label));
                }
                // An uploaded checkpoint took the plain name: keep the version's own.
                label = format!("{label}-{}", &checkpoint_id.simple().to_string()[..8]);
            }
            sqlx::query(
                "INSERT INTO verifier_versions (checkpoint_id, version, base_checkpoint_id, job_id,
                     label_source, loss, judgements_seen, metrics, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(checkpoint_id)
            .bind(version)
            .bind(new.base_checkpoint_id)
            .bind(new.job_id)
            .bind(new.label_source.as_str())
            .bind(new.loss.as_str())
            .bind(new.judgements_seen)
            .bind(new.metrics.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            for (job_id, study_id) in scoring_jobs.iter().zip(&new.score_studies) {
                sqlx::query(
                    "INSERT INTO jobs (id, kind, params, study_id, state, progress_total, max_attempts, created_at)
                     VALUES ($1, $2, $3, $4, 'queued', 0, 3, $5)",
                )
                .bind(job_id)
                .bind(JobKind::VerifierScoring.as_str())
                .bind(scoring_params(Some(checkpoint_id)).to_string())
                .bind(study_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok((checkpoint_id, version))
        })
    }

    /// The version a training job registered, if it got that far (a retry then only finishes).
    pub async fn verifier_version_of_job(&self, job_id: Uuid) -> StoreResult<Option<Uuid>> {
        let row: Option<(Uuid,)> = dispatch!(self, pool, _b => {
            sqlx::query_as("SELECT checkpoint_id FROM verifier_versions WHERE job_id = $1")
                .bind(job_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(id,)| id))
    }

    /// Every verifier version, newest first.
    pub async fn verifier_versions(&self) -> StoreResult<Vec<VerifierVersion>> {
        type Row = (
            Uuid,
            i64,
            String,
            Option<String>,
            Option<String>,
            Option<Uuid>,
            String,
            String,
            i64,
            String,
            i64,
            i64,
        );
        let rows: Vec<Row> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT v.checkpoint_id, v.version, c.label, c.model_dir, b.label, v.job_id,
                        v.label_source, v.loss, v.judgements_seen, v.metrics,
                        (SELECT COUNT(*) FROM solution_scores s WHERE s.checkpoint_id = v.checkpoint_id),
                        v.created_at
                 FROM verifier_versions v
                 JOIN checkpoints c ON c.id = v.checkpoint_id
                 LEFT JOIN checkpoints b ON b.id = v.base_checkpoint_id
                 ORDER BY v.version DESC",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(
                |(
                    checkpoint_id,
                    version,
                    label,
                    model_dir,
                    base_label,
                    job_id,
                    label_source,
                    loss,
                    judgements_seen,
                    metrics,
                    scored,
                    created_at,
                )| {
                    Ok(VerifierVersion {
                        checkpoint_id,
                        version,
                        label,
                        model_dir,
                        base_label,
                        job_id,
                        label_source: parse_stored(&label_source)?,
                        loss: parse_stored(&loss)?,
                        judgements_seen,
                        metrics: serde_json::from_str(&metrics)
                            .map_err(|e| sqlx::Error::Decode(e.into()))?,
                        scored,
                        created_at,
                    })
                },
            )
            .collect()
    }

    /// The current verifier version: the highest number.
    pub async fn current_verifier(&self) -> StoreResult<Option<VerifierVersion>> {
        Ok(self.verifier_versions().await?.into_iter().next())
    }

    /// Solutions of `study_id` that version `checkpoint_id` has not scored yet, with their
    /// question, in a stable order.
    pub async fn solutions_to_score(
        &self,
        study_id: Uuid,
        checkpoint_id: Uuid,
    ) -> StoreResult<Vec<(Uuid, String, String)>> {
        Ok(dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT s.id, p.question, s.text
                 FROM study_solutions ss
                 JOIN solutions s ON s.id = ss.solution_id
                 JOIN problems p ON p.id = s.problem_id
                 WHERE ss.study_id = $1
                   AND NOT EXISTS (SELECT 1 FROM solution_scores x
                                   WHERE x.checkpoint_id = $2 AND x.solution_id = s.id)
                 ORDER BY s.id",
            )
            .bind(study_id)
            .bind(checkpoint_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Stores a batch of version `checkpoint_id`'s scores and the job's progress in one
    /// transaction fenced by `lease`; scores already stored are kept (a retry rewrites
    /// nothing).
    pub async fn commit_scores(
        &self,
        lease: &Lease,
        checkpoint_id: Uuid,
        scores: &[(Uuid, f64)],
        progress_done: i64,
        now: i64,
    ) -> StoreResult<()> {
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            fence_progress!(tx, lease, progress_done);
            for (solution_id, score) in scores {
                sqlx::query(
                    "INSERT INTO solution_scores (checkpoint_id, solution_id, score, scored_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (checkpoint_id, solution_id) DO NOTHING",
                )
                .bind(checkpoint_id)
                .bind(solution_id)
                .bind(score)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Every stored score of `study_id`'s solutions, by version, for the study page.
    pub async fn study_scores(&self, study_id: Uuid) -> StoreResult<Vec<StudyScore>> {
        let rows: Vec<(i64, Uuid, String, bool, f64)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT v.version, s.id, s.role, s.is_correct, x.score
                 FROM study_solutions ss
                 JOIN solutions s ON s.id = ss.solution_id
                 JOIN solution_scores x ON x.solution_id = s.id
                 JOIN verifier_versions v ON v.checkpoint_id = x.checkpoint_id
                 WHERE ss.study_id = $1
                 ORDER BY v.version DESC, s.id",
            )
            .bind(study_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(version, solution_id, role, is_correct, score)| {
                Ok(StudyScore {
                    version,
                    solution_id,
                    role: parse_stored(&role)?,
                    is_correct,
                    score,
                })
            })
            .collect()
    }

    /// Ids of every study, for scoring after a version trained on all of them.
    pub async fn study_ids(&self) -> StoreResult<Vec<Uuid>> {
        let rows: Vec<(Uuid,)> = dispatch!(self, pool, _b => {
            sqlx::query_as("SELECT id FROM studies ORDER BY created_at, id")
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}

/// Parameters of a scoring job.
fn scoring_params(checkpoint_id: Option<Uuid>) -> serde_json::Value {
    serde_json::json!({ "verifier_checkpoint_id": checkpoint_id })
}

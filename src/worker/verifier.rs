//! The verifier jobs: training a new version from the accumulated ratings, and scoring a
//! study's solutions with a version.
//!
//! Training reads the ratings, trains on the blocking thread pool (polling the job's stop
//! flag), writes the version's folder atomically under `models/verifiers/<job id>`, and only
//! then registers it, fenced by the lease. A run that fails or is killed registers nothing:
//! the previous version stays current, and the next attempt removes what the dead one left.
//! Scoring commits scores per batch, so a retry scores only what is missing.

use crate::checkpoints::VERIFIERS_DIR;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use candle_core::Device;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{JobContext, JobError, JobFuture, JobHandler};
use crate::clock::Clock;
use crate::domain::LabelSource;
use crate::labels;
use crate::ml::ModelError;
use crate::ml::train_verifier::{FitOptions, FitReport, fit_verifier};
use crate::ml::verifier::{Verifier, verifier_text};
use crate::store::Store;
use crate::store::jobs::ClaimedJob;
use crate::store::verifiers::NewVerifierVersion;

/// Raters need at least this many verdicts before the chance-level test may exclude them.
pub const MIN_JUDGED_FOR_EXCLUSION: u64 = 10;

/// Solutions scored per forward pass.
const SCORING_BATCH: usize = 32;
/// Solutions scored between two commits.
const SCORING_COMMIT: usize = 256;

/// What a training job is asked to do; stored as the job's JSON parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingParams {
    /// Where labels come from.
    #[serde(default = "default_label_source")]
    pub label_source: LabelSource,
    /// Train on one study's solutions and judgements, or on every study's (`None`).
    #[serde(default)]
    pub study_id: Option<Uuid>,
    /// The checkpoint to start from; the current version when absent.
    #[serde(default)]
    pub base_checkpoint_id: Option<Uuid>,
    /// Loss, schedule, split.
    #[serde(default)]
    pub fit: FitOptions,
    /// Non-timeout judgements in the database when the job was asked for (the automatic
    /// trigger counts from here).
    #[serde(default)]
    pub judgements_seen: i64,
    /// Who asked: `admin`, `auto` or `cli`.
    #[serde(default)]
    pub trigger: String,
}

fn default_label_source() -> LabelSource {
    LabelSource::Both
}

/// Queues a training job with `params` (its `judgements_seen` set to the current count);
/// `None` when one is already queued or running.
pub async fn request_training(
    store: &Store,
    mut params: TrainingParams,
    created_by: Option<Uuid>,
    now: i64,
) -> Result<Option<Uuid>, crate::store::StoreError> {
    params
        .fit
        .check()
        .map_err(crate::store::StoreError::Invalid)?;
    params.judgements_seen = store.judgement_count().await?;
    let json = serde_json::to_value(&params)
        .map_err(|e| crate::store::StoreError::Invalid(e.to_string()))?;
    store
        .enqueue_verifier_training(&json, created_by, now)
        .await
}

/// Whether the automatic trigger should fire: `every` (> 0) new non-timeout judgements since
/// the last training job was asked for.
pub fn auto_training_due(judgements: i64, at_last_training: i64, every: u64) -> bool {
    every > 0 && judgements.saturating_sub(at_last_training) >= every as i64
}

/// Queues a training job (default settings, labels from both sources, every study) each time
/// `every` new judgements have come in; checks every `interval` until `shutdown`. Runs in
/// every server and worker process: the one-training-job index keeps them from doubling up.
pub async fn auto_training(
    store: Store,
    clock: Clock,
    every: u64,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    if every == 0 {
        return;
    }
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let due = async {
            let count = store.judgement_count().await?;
            let last = store.judgements_at_last_training().await?;
            Ok::<_, crate::store::StoreError>(auto_training_due(count, last, every))
        };
        match due.await {
            Ok(true) => {
                let params = TrainingParams {
                    label_source: LabelSource::Both,
                    study_id: None,
                    base_checkpoint_id: None,
                    fit: FitOptions::default(),
                    judgements_seen: 0,
                    trigger: "auto".into(),
                };
                match request_training(&store, params, None, clock.now_ms()).await {
                    Ok(Some(job)) => {
                        tracing::info!(%job, every, "queued verifier training: new judgements came in")
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "queueing verifier training failed"),
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "checking whether verifier training is due failed")
            }
        }
    }
}

/// Runs verifier training jobs.
#[derive(Debug, Clone)]
pub struct TrainingHandler {
    models_dir: PathBuf,
}

impl TrainingHandler {
    /// A handler reading and writing model folders under `models_dir`.
    pub fn new(models_dir: &Path) -> Self {
        Self {
            models_dir: models_dir.to_path_buf(),
        }
    }
}

impl JobHandler for TrainingHandler {
    fn run(&self, job: ClaimedJob, ctx: JobContext) -> JobFuture {
        Box::pin(run_training(self.clone(), job, ctx))
    }
}

fn crashed(what: &str, e: tokio::task::JoinError) -> JobError {
    JobError::Fatal(format!("{what} crashed: {e}"))
}

/// The verifier checkpoint `chosen`, or the current version when `None` (`missing` is the
/// error when there is none), with its model folder relative to the models directory.
async fn resolve_verifier(
    store: &Store,
    chosen: Option<Uuid>,
    missing: &str,
) -> Result<(Uuid, String), JobError> {
    let id = match chosen {
        Some(id) => id,
        None => {
            store
                .current_verifier()
                .await?
                .ok_or_else(|| JobError::Fatal(missing.into()))?
                .checkpoint_id
        }
    };
    let dir = store
        .checkpoint_model_dir(id)
        .await?
        .ok_or_else(|| JobError::Fatal(format!("checkpoint {id} has no model files")))?;
    Ok((id, dir))
}

/// The folder a training job writes its version to, relative to the models directory.
pub fn version_dir(job_id: Uuid) -> String {
    format!("{VERIFIERS_DIR}/{job_id}")
}

/// Removes what an earlier, dead attempt of `job_id` left: its temp folders and an
/// unregistered final folder. Only called while holding the job's lease, after checking that
/// no version is registered for it.
fn remove_leftovers(models_dir: &Path, job_id: Uuid) -> std::io::Result<()> {
    let dir = models_dir.join(VERIFIERS_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let temp_prefix = format!(".tmp-{job_id}-");
    let old_prefix = format!(".old-{job_id}-");
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name == job_id.to_string()
            || name.starts_with(&temp_prefix)
            || name.starts_with(&old_prefix)
        {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

async fn run_training(
    handler: TrainingHandler,
    job: ClaimedJob,
    ctx: JobContext,
) -> Result<(), JobError> {
    let params: TrainingParams = serde_json::from_value(job.params.clone())
        .map_err(|e| JobError::Fatal(format!("training parameters are not valid: {e}")))?;
    params.fit.check().map_err(JobError::Fatal)?;
    if ctx.store.verifier_version_of_job(job.id).await?.is_some() {
        // An earlier attempt registered its version and died before the job was marked done.
        return Ok(());
    }
    let (base, base_dir) = resolve_verifier(
        &ctx.store,
        params.base_checkpoint_id,
        "there is no verifier to start from: upload a verifier checkpoint or start the server \
         with the shipped models/verifier-tiny",
    )
    .await?;
    let snapshot = ctx.store.ratings_snapshot(params.study_id).await?;
    let data = labels::labelled_solutions(&snapshot, params.label_source, MIN_JUDGED_FOR_EXCLUSION);
    let models_dir = handler.models_dir.clone();
    let job_id = job.id;
    tokio::task::spawn_blocking({
        let models_dir = models_dir.clone();
        move || remove_leftovers(&models_dir, job_id)
    })
    .await
    .map_err(|e| crashed("cleaning up", e))?
    .map_err(|e| JobError::Retryable(format!("removing an earlier attempt's files: {e}")))?;

    let progress = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let stop = ctx.lease_lost_flag();
    let rel = version_dir(job.id);
    let options = params.fit.clone();
    let training = tokio::task::spawn_blocking({
        let progress = Arc::clone(&progress);
        let stop: Arc<AtomicBool> = Arc::clone(&stop);
        let (base_path, out) = (models_dir.join(&base_dir), models_dir.join(&rel));
        move || -> Result<FitReport, ModelError> {
            let mut verifier = Verifier::load(&base_path, &Device::Cpu)?;
            let report = fit_verifier(
                &mut verifier,
                &data,
                &options,
                &mut |done, total| {
                    progress.0.store(done, Ordering::Relaxed);
                    progress.1.store(total, Ordering::Relaxed);
                },
                &stop,
            )?;
            if stop.load(Ordering::SeqCst) {
                return Err(ModelError::Stopped);
            }
            verifier.save_as(&out, &format!(".tmp-{job_id}-"), &report)?;
            Ok(report)
        }
    });
    tokio::pin!(training);
    let report = loop {
        tokio::select! {
            joined = &mut training => {
                break joined.map_err(|e| crashed("training", e))?.map_err(JobError::from)?;
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                let (done, total) = (progress.0.load(Ordering::Relaxed), progress.1.load(Ordering::Relaxed));
                if total > 0 {
                    ctx.progress(done as i64, total as i64).await?;
                }
            }
        }
    };
    let score_studies = match params.study_id {
        Some(study) => vec![study],
        None => ctx.store.study_ids().await?,
    };
    let metrics = serde_json::to_value(&report).map_err(|e| JobError::Fatal(e.to_string()))?;
    let new = NewVerifierVersion {
        label: None,
        model_dir: rel.clone(),
        checkpoint_metadata: serde_json::json!({
            "source": "training",
            "job_id": job.id,
            "base_checkpoint_id": base,
        }),
        base_checkpoint_id: Some(base),
        job_id: Some(job.id),
        label_source: params.label_source,
        loss: params.fit.loss,
        judgements_seen: params.judgements_seen,
        metrics,
        score_studies,
    };
    match ctx
        .store
        .register_verifier_version(Some(&ctx.lease), &new, ctx.clock.now_ms())
        .await
    {
        Ok((id, version)) => {
            tracing::info!(job = %job.id, checkpoint = %id, version, "registered a verifier version");
            Ok(())
        }
        Err(e) => {
            let path = models_dir.join(&rel);
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(path)).await;
            Err(e.into())
        }
    }
}

/// Parameters of a scoring job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoringParams {
    /// The version to score with; the current one when absent.
    #[serde(default)]
    pub verifier_checkpoint_id: Option<Uuid>,
}

/// Runs verifier scoring jobs.
#[derive(Debug, Clone)]
pub struct ScoringHandler {
    models_dir: PathBuf,
}

impl ScoringHandler {
    /// A handler reading model folders under `models_dir`.
    pub fn new(models_dir: &Path) -> Self {
        Self {
            models_dir: models_dir.to_path_buf(),
        }
    }
}

impl JobHandler for ScoringHandler {
    fn run(&self, job: ClaimedJob, ctx: JobContext) -> JobFuture {
        Box::pin(run_scoring(self.clone(), job, ctx))
    }
}

async fn run_scoring(
    handler: ScoringHandler,
    job: ClaimedJob,
    ctx: JobContext,
) -> Result<(), JobError> {
    let params: ScoringParams = serde_json::from_value(job.params.clone())
        .map_err(|e| JobError::Fatal(format!("scoring parameters are not valid: {e}")))?;
    let study_id = job
        .study_id
        .ok_or_else(|| JobError::Fatal("a scoring job needs a study".into()))?;
    let (checkpoint_id, model_dir) = resolve_verifier(
        &ctx.store,
        params.verifier_checkpoint_id,
        "there is no verifier version to score with",
    )
    .await?;
    let pending = ctx
        .store
        .solutions_to_score(study_id, checkpoint_id)
        .await?;
    let total = pending.len() as i64;
    ctx.progress(0, total).await?;
    if pending.is_empty() {
        return Ok(());
    }
    let path = handler.models_dir.join(&model_dir);
    let mut verifier = tokio::task::spawn_blocking(move || Verifier::load(&path, &Device::Cpu))
        .await
        .map_err(|e| crashed("loading the verifier", e))?
        .map_err(|e| JobError::Fatal(format!("loading verifier {model_dir}: {e}")))?;
    let mut done = 0i64;
    for chunk in pending.chunks(SCORING_COMMIT) {
        ctx.check()?;
        let ids: Vec<Uuid> = chunk.iter().map(|(id, _, _)| *id).collect();
        let texts: Vec<String> = chunk
            .iter()
            .map(|(_, question, text)| verifier_text(question, text))
            .collect();
        let (returned, scores) = tokio::task::spawn_blocking(move || {
            let scores = verifier.score_texts(&texts, SCORING_BATCH);
            (verifier, scores)
        })
        .await
        .map_err(|e| crashed("scoring", e))?;
        verifier = returned;
        let scores = scores.map_err(JobError::from)?;
        done += ids.len() as i64;
        let rows: Vec<(Uuid, f64)> = ids
            .into_iter()
            .zip(scores.into_iter().map(f64::from))
            .collect();
        ctx.store
            .commit_scores(&ctx.lease, checkpoint_id, &rows, done, ctx.clock.now_ms())
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trigger_fires_every_n_judgements() {
        assert!(!auto_training_due(5, 0, 0), "0 turns it off");
        assert!(!auto_training_due(99, 0, 100));
        assert!(auto_training_due(100, 0, 100));
        assert!(!auto_training_due(150, 100, 100));
        assert!(auto_training_due(230, 100, 100));
    }

    #[test]
    fn stored_parameters_parse_with_defaults() {
        let params: TrainingParams =
            serde_json::from_value(serde_json::json!({"label_source": "human"})).expect("params");
        assert_eq!(params.label_source, LabelSource::Human);
        assert_eq!(params.fit, FitOptions::default());
        assert!(params.fit.check().is_ok());
        let bad = FitOptions {
            validation_share: 1.0,
            ..FitOptions::default()
        };
        assert!(bad.check().unwrap_err().contains("validation share"));
    }
}

//! The shipped default models under `models/`: where they are and how a fresh database learns
//! of them (registered once, at the first start that finds them), so a fresh clone generates and
//! scores without any upload or download.

use std::path::Path;

use crate::clock::Clock;
use crate::store::Store;

/// Folder of the shipped default verifier, relative to the models directory.
pub const DEFAULT_VERIFIER_DIR: &str = "verifier-tiny";
/// Label the shipped default verifier is registered under (as verifier version 1).
pub const DEFAULT_VERIFIER_LABEL: &str = "default-verifier-tiny";

/// Registers the shipped default verifier as a verifier version the first time a server
/// starts with it present, so studies can be scored and training has a starting point without
/// any upload. Its metrics are its `training.json` (held-out generated problems).
pub async fn register_default_verifier(
    store: &Store,
    clock: &Clock,
    models_dir: &Path,
) -> anyhow::Result<()> {
    let dir = models_dir.join(DEFAULT_VERIFIER_DIR);
    if !dir.join("config.json").is_file() {
        return Ok(());
    }
    let details = store.checkpoint_details().await?;
    if details.iter().any(|c| c.label == DEFAULT_VERIFIER_LABEL) {
        return Ok(());
    }
    let metrics = std::fs::read(dir.join(crate::ml::verifier::TRAINING_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    let new = crate::store::verifiers::NewVerifierVersion {
        label: Some(DEFAULT_VERIFIER_LABEL.into()),
        model_dir: DEFAULT_VERIFIER_DIR.into(),
        checkpoint_metadata: serde_json::json!({"source": "shipped", "trained_by": "legibility train verifier --preset tiny"}),
        base_checkpoint_id: None,
        job_id: None,
        label_source: crate::domain::LabelSource::GroundTruth,
        loss: crate::domain::VerifierLoss::BradleyTerry,
        judgements_seen: 0,
        metrics,
        score_studies: Vec::new(),
    };
    let (id, version) = store
        .register_verifier_version(None, &new, clock.now_ms())
        .await?;
    tracing::info!(%id, version, label = DEFAULT_VERIFIER_LABEL, "registered the shipped default verifier");
    Ok(())
}

/// Folder of the shipped default prover, relative to the models directory.
pub const DEFAULT_PROVER_DIR: &str = "prover-tiny";
/// Label the shipped default prover is registered under.
pub const DEFAULT_PROVER_LABEL: &str = "default-prover-tiny";

/// Registers the shipped default prover as a round-0 checkpoint the first time a server starts
/// with it present, so a fresh clone can generate solutions without any upload or download.
pub async fn register_default_prover(
    store: &Store,
    clock: &Clock,
    models_dir: &Path,
) -> anyhow::Result<()> {
    if !models_dir
        .join(DEFAULT_PROVER_DIR)
        .join("config.json")
        .is_file()
    {
        return Ok(());
    }
    let details = store.checkpoint_details().await?;
    if details.iter().any(|c| c.label == DEFAULT_PROVER_LABEL) {
        return Ok(());
    }
    let id = store
        .register_model_checkpoint(
            crate::domain::CheckpointKind::Prover,
            DEFAULT_PROVER_LABEL,
            0,
            DEFAULT_PROVER_DIR,
            serde_json::json!({"source": "shipped", "trained_by": "legibility train prover --preset tiny"}),
            clock.now_ms(),
        )
        .await?;
    tracing::info!(%id, label = DEFAULT_PROVER_LABEL, "registered the shipped default prover");
    Ok(())
}

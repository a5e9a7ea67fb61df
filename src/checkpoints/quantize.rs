//! "Quantize on registration": a safetensors prover, once validated, is replaced by a GGUF
//! copy of itself (its side files unchanged, its weights quantized), which is then validated
//! again as a GGUF prover before anything is stored. Decoding reads 4× fewer bytes per token
//! from Q8_0 weights than from f32 (see README, "Quantized checkpoints").

use std::path::Path;

use super::files::{is_gguf_file, is_weights_file};
use super::{
    AddCheckpointError, CheckpointLimits, CheckpointRejected, Staging, TEMP_PREFIX,
    ValidatedCheckpoint, validate,
};
use crate::domain::CheckpointKind;
use crate::ml::gguf::{self, GgmlDType, QUANTIZED_WEIGHTS_FILE};

/// The validated safetensors prover `checkpoint` with its weights quantized to `dtype` into
/// one `model.gguf`, staged under `models_dir` and validated as a GGUF prover. The original
/// files' temporary folder is removed when `checkpoint` is dropped here.
pub fn quantize(
    checkpoint: ValidatedCheckpoint,
    dtype: GgmlDType,
    models_dir: &Path,
    limits: &CheckpointLimits,
) -> Result<ValidatedCheckpoint, AddCheckpointError> {
    let refuse =
        |message: String| AddCheckpointError::Rejected(CheckpointRejected::Unsupported(message));
    if checkpoint.kind() != CheckpointKind::Prover {
        return Err(refuse(
            "only provers can be quantized: a verifier is trained, so it stays in safetensors"
                .into(),
        ));
    }
    let names: Vec<String> = checkpoint.files().iter().map(|f| f.name.clone()).collect();
    if names.iter().any(|n| is_gguf_file(n)) {
        return Err(refuse(
            "this checkpoint is already GGUF; upload it without choosing a quantization".into(),
        ));
    }
    let spec = match checkpoint.config().decoder_spec() {
        Some(spec) => spec.map_err(refuse)?,
        None => return Err(refuse("only decoder provers can be quantized".into())),
    };
    if gguf::architecture(&spec.model_type).is_none() {
        return Err(refuse(format!(
            "quantizing is offered for Llama, Mistral, Qwen2 and Qwen3 provers, not model_type {:?}",
            spec.model_type
        )));
    }
    let dir = checkpoint.dir().to_path_buf();
    let weights: Vec<_> = names
        .iter()
        .filter(|n| is_weights_file(n))
        .map(|n| dir.join(n))
        .collect();
    let invalid = |e: crate::ml::ModelError| refuse(format!("quantizing failed: {e}"));
    let scratch = models_dir.join(format!(
        "{TEMP_PREFIX}quantize-{}.gguf",
        uuid::Uuid::now_v7()
    ));
    let written = gguf::quantize_safetensors(&spec, &weights, dtype, &scratch);
    let staged = written.map_err(invalid).and_then(|()| {
        let mut staging = Staging::new(models_dir, *limits)?;
        for name in names
            .iter()
            .filter(|n| !is_weights_file(n) && n.as_str() != super::INDEX_FILE)
        {
            let file = std::fs::File::open(dir.join(name))?;
            staging.add(name, file)?;
        }
        staging.add(QUANTIZED_WEIGHTS_FILE, std::fs::File::open(&scratch)?)?;
        staging.finish()
    });
    let _ = std::fs::remove_file(&scratch);
    drop(checkpoint);
    Ok(validate(staged?, CheckpointKind::Prover, limits)?)
}

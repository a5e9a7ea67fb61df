//! Machine learning on candle: the Llama prover, its tokenizer, sampling with the GSM8K
//! calculator, training, the verifier (a Llama body or a BERT-family encoder with a score
//! head, or an encoder reward model: BERT, RoBERTa, DeBERTa-v2 classifiers), and checkpoint
//! files.

pub mod bert;
pub mod calculator;
pub mod chat;
pub mod config;
pub mod deberta_v2;
pub mod decoder;
pub mod encoder_classifier;
pub mod game_round;
pub mod game_seeds;
pub mod gemma2;
pub mod gguf;
pub mod inspect;
pub mod llama;
pub mod mistral;
pub mod phi3;
pub mod prompt;
pub mod prover;
pub mod qwen2;
pub mod qwen3;
pub mod roberta;
pub mod rope;
pub mod sampling;
pub mod split;
pub mod tokenizer;
pub mod train;
pub mod train_verifier;
pub mod verifier;
pub mod weights;

/// Why a model could not be loaded, trained or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A tensor operation failed (shapes, dtypes, a corrupt weight file).
    #[error("model computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// The tokenizer could not be built, loaded or applied.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A checkpoint file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A checkpoint's files are inconsistent or not supported.
    #[error("{0}")]
    Invalid(String),
    /// The caller asked the computation to stop (the job's lease was lost or it was cancelled).
    #[error("stopped on request")]
    Stopped,
}

impl ModelError {
    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The weight files of a checkpoint folder, sorted: the shards `model.safetensors.index.json`
/// names when there is one, otherwise every `*.safetensors` (see [`weights::weight_files`]).
pub fn weight_files(
    dir: &std::path::Path,
) -> std::result::Result<Vec<std::path::PathBuf>, ModelError> {
    weights::weight_files(dir)
}

/// Writes a checkpoint folder `out` atomically: `write` fills a sibling temp folder
/// (`{temp_prefix}{pid}`), every file is synced, an existing `out` is moved aside, the temp
/// folder is renamed to `out` and the parent synced. A crash leaves at most the temp folder
/// (swept at start-up, or removed by the job's next attempt), never a half-written `out`.
pub fn write_folder_atomically(
    out: &std::path::Path,
    temp_prefix: &str,
    write: impl FnOnce(&std::path::Path) -> Result<(), ModelError>,
) -> Result<(), ModelError> {
    let parent = out.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "checkpoint".into());
    let staging = parent.join(format!("{temp_prefix}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| ModelError::io(&staging, e))?;
    write(&staging)?;
    for entry in std::fs::read_dir(&staging).map_err(|e| ModelError::io(&staging, e))? {
        let path = entry.map_err(|e| ModelError::io(&staging, e))?.path();
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| ModelError::io(&path, e))?;
    }
    let old = parent.join(format!(".old-{name}-{}", std::process::id()));
    if out.exists() {
        std::fs::rename(out, &old).map_err(|e| ModelError::io(out, e))?;
    }
    std::fs::rename(&staging, out).map_err(|e| ModelError::io(out, e))?;
    let _ = std::fs::remove_dir_all(&old);
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| ModelError::io(parent, e))
}

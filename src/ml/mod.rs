//! Machine learning on candle: the Llama prover, its tokenizer, sampling with the GSM8K
//! calculator, training, the verifier (a Llama body or a BERT-family encoder with a score
//! head), and checkpoint files.

pub mod bert;
pub mod calculator;
pub mod config;
pub mod llama;
pub mod prompt;
pub mod prover;
pub mod sampling;
pub mod tokenizer;
pub mod train;
pub mod train_verifier;
pub mod upload;
pub mod verifier;

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

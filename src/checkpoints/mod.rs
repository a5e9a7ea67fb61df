//! Model checkpoints (provers and verifiers) as files: what an uploaded checkpoint must satisfy,
//! checked before a single byte is stored, the models folder's layout, atomic storage,
//! registration, and the shipped defaults. Loading a checkpoint into a candle model is `ml`'s;
//! this module only decides which files are a checkpoint and where they live.
//!
//! Upload: everything an uploaded checkpoint must satisfy,
//! checked before a single byte is stored, then atomic storage under the models directory and
//! registration.
//!
//! A checkpoint arrives as loose files (the admin page's multi-file input), as one tar archive
//! (page or CLI) or as a folder on disk (CLI). All three become [`CheckpointFiles`]: plain file
//! names with their bytes. [`validate`] then checks the whole thing for the kind of checkpoint
//! (size, names, required and allowed files, `config.json`, the tokenizer, every tensor's
//! presence, shape and dtype against what the config implies) and either refuses it with a
//! message naming the file and tensor at fault ([`CheckpointRejected`]) or hands back a
//! [`ValidatedCheckpoint`].
//!
//! What each kind must contain (`config.json`'s `model_type` picks the architecture):
//!
//! - **Prover**: a Llama model (`model_type` `"llama"`): exactly the tensors
//!   [`LlamaConfig::expected_tensors`](crate::ml::config::LlamaConfig::expected_tensors) lists. A BERT-family config is refused: an encoder cannot
//!   generate solutions. May carry `prompt_template.json` and a chat template
//!   (`chat_template.jinja` or `tokenizer_config.json`'s `chat_template`), which must parse and
//!   render both roles ([`crate::ml::prompt::RolePrompts`]).
//! - **Llama verifier**: the Llama body (the same list) except that
//!   `lm_head.weight` is never required (a verifier does not use it; it is accepted when
//!   present), plus the score head `score.weight` `[1, hidden_size]` and `score.bias` `[1]`,
//!   both required.
//! - **BERT verifier** (`model_type` `"bert"`): the encoder's tensors
//!   ([`BertConfig::expected_tensors`]), all with or all without the `bert.` prefix; the pooler
//!   (`pooler.dense.*`) and the `embeddings.position_ids` buffer are accepted and unused; the
//!   score head `score.weight` `[1, hidden_size]` + `score.bias` `[1]` is optional (both or
//!   neither: a sentence encoder straight from sentence-transformers has none yet). Old exports
//!   that name layer-norm parameters `gamma`/`beta` are refused (their `weight`/`bias` are
//!   missing).
//! - **Encoder reward model** (verifiers only): `BertForSequenceClassification`,
//!   `RobertaForSequenceClassification` or `DebertaV2ForSequenceClassification` with one label
//!   ([`crate::ml::encoder_classifier`]): exactly the tensors transformers saves for it
//!   ([`EncoderClassifierConfig::tensors`](crate::ml::encoder_classifier::EncoderClassifierConfig::tensors)),
//!   its head required; `num_labels` ≠ 1 and unimplemented config fields are refused by name.
//!
//! Verifiers may also carry the files sentence-transformers ships beside the weights
//! (`vocab.txt`, `modules.json`, `sentence_bert_config.json`,
//! `config_sentence_transformers.json`, `data_config.json`), which are checked for form and
//! otherwise unused. Its sub-folders (`1_Pooling/`, …) and hidden files are not accepted: the
//! encoder's pooling is fixed (mean over real tokens, [`crate::ml::bert::BertEncoder::pooled`]).
//! A verifier's `prompt_template.json` is **refused**, not ignored: a verifier scores solutions
//! in the project's own input format, and a template that silently had no effect would mislead
//! whoever uploaded it.
//!
//! [`store_checkpoint`] writes a validated checkpoint into `models/uploads/.tmp-<uuid>/`, syncs
//! every file, renames the folder to `models/uploads/<uuid>` (atomic on one filesystem) and syncs
//! the parent, so a crash leaves either the whole folder or a temp folder that
//! [`sweep_temp_dirs`] removes at the next start. [`add_checkpoint`] is the one path the web page
use std::io;
use std::path::Path;

use uuid::Uuid;

use crate::domain::CheckpointKind;
use crate::store::{Store, StoreError};

pub mod defaults;
pub mod files;
pub mod storage;
pub mod validate;

pub use files::{
    CONFIG_FILE, CheckpointFiles, OPTIONAL_FILES, PROVER_FILES, TOKENIZER_FILE, VERIFIER_FILES,
    WEIGHTS_EXTENSION, check_file_name, optional_files,
};
pub use storage::{
    RUNS_DIR, TEMP_DIR_GRACE, TEMP_PREFIX, UPLOADS_DIR, VERIFIERS_DIR, remove_stored,
    store_checkpoint, sweep_temp_dirs,
};
pub use validate::{ValidatedCheckpoint, validate};

/// Default limit on a checkpoint's total size: 512 MiB.
pub const DEFAULT_MAX_CHECKPOINT_BYTES: u64 = 512 * 1024 * 1024;

/// Limits a checkpoint upload must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointLimits {
    /// Largest total size of all files, in bytes.
    pub max_bytes: u64,
}

impl Default for CheckpointLimits {
    fn default() -> Self {
        CheckpointLimits {
            max_bytes: DEFAULT_MAX_CHECKPOINT_BYTES,
        }
    }
}

/// Why a checkpoint was refused. Every message names the file (and tensor) at fault; nothing is
/// stored for a refused checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointRejected {
    /// Over the size limit (checked before anything is parsed).
    #[error("the checkpoint's files total {total} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Total size of the files (or of the files seen so far).
        total: u64,
        /// The limit.
        limit: u64,
    },
    /// A file or archive member name that is not acceptable.
    #[error("{name:?}: {reason}")]
    BadName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The tar archive cannot be used (member type, layout, corruption).
    #[error("tar archive: {0}")]
    Archive(String),
    /// The same file name twice.
    #[error("{0} appears more than once")]
    Duplicate(String),
    /// A required file is absent.
    #[error(
        "{0} is missing; a checkpoint needs config.json, tokenizer.json and at least one *.safetensors file"
    )]
    Missing(String),
    /// A file that has no place in a checkpoint of this kind.
    #[error("{name} is not a file a checkpoint may contain (a {kind} checkpoint allows: config.json, tokenizer.json, *.safetensors, {optional})", optional = optional_files(*kind).join(", "))]
    Unexpected {
        /// The file's name.
        name: String,
        /// The kind of checkpoint being uploaded.
        kind: CheckpointKind,
    },
    /// A file whose contents are invalid; the message starts with the file name.
    #[error("{0}")]
    InvalidFile(String),
    /// The tensors do not match what `config.json` implies; the message names them.
    #[error("{0}")]
    Tensors(String),
    /// The checkpoint is not of a kind that can be uploaded.
    #[error("{0}")]
    Unsupported(String),
    /// A folder given on the command line could not be read.
    #[error("{0}")]
    Unreadable(String),
}

impl CheckpointRejected {
    /// Whether the refusal is about size (HTTP 413) rather than content (HTTP 422).
    pub fn is_too_large(&self) -> bool {
        matches!(self, CheckpointRejected::TooLarge { .. })
    }
}

/// Why [`add_checkpoint`] did not add a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum AddCheckpointError {
    /// The files were refused; nothing was stored.
    #[error(transparent)]
    Rejected(#[from] CheckpointRejected),
    /// Registration failed (duplicate label → `StoreError::Conflict`); the stored folder was
    /// removed again.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the files failed; nothing is left behind.
    #[error("storing the checkpoint files failed: {0}")]
    Io(#[from] io::Error),
}

/// Validates (as `kind`), stores and registers an uploaded prover or verifier checkpoint: the
/// one path the admin page and the CLI share. Validation and writing run on the blocking thread pool. If registration fails the
/// stored folder is removed, so a refusal of any kind leaves nothing behind.
#[allow(clippy::too_many_arguments)]
pub async fn add_checkpoint(
    store: &Store,
    models_dir: &Path,
    files: CheckpointFiles,
    limits: CheckpointLimits,
    kind: CheckpointKind,
    label: &str,
    round: i64,
    now: i64,
) -> Result<Uuid, AddCheckpointError> {
    let label = crate::store::models::check_checkpoint_label(label, round)?;
    let checkpoint = tokio::task::spawn_blocking(move || validate(files, kind, &limits))
        .await
        .map_err(io::Error::other)??;
    let metadata = checkpoint.metadata();
    let dir = models_dir.to_path_buf();
    let (rel, checkpoint) = tokio::task::spawn_blocking(move || {
        store_checkpoint(&dir, &checkpoint).map(|rel| (rel, checkpoint))
    })
    .await
    .map_err(io::Error::other)??;
    drop(checkpoint);
    match store
        .register_model_checkpoint(kind, &label, round, &rel, metadata, now)
        .await
    {
        Ok(id) => Ok(id),
        Err(e) => {
            let dir = models_dir.to_path_buf();
            let removal = tokio::task::spawn_blocking(move || remove_stored(&dir, &rel)).await;
            if let Ok(Err(removal)) | Err(removal) = removal.map_err(io::Error::other) {
                tracing::error!(error = %removal, "removing a checkpoint folder after a failed registration");
            }
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests;

//! Model checkpoints (provers and verifiers) as files: what an uploaded checkpoint must satisfy,
//! checked before a single byte is stored, the models folder's layout, atomic storage,
//! registration, and the shipped defaults. Loading a checkpoint into a candle model is `ml`'s;
//! this module only decides which files are a checkpoint and where they live.
//!
//! Upload: everything an uploaded checkpoint must satisfy,
//! checked before a single byte is stored, then atomic storage under the models directory and
//! registration.
//!
//! A checkpoint arrives as loose files (the admin page's multi-file or folder input), as one tar
//! archive (page or CLI) or as a folder on disk (CLI). Uploads and archives are written file by
//! file, as they arrive, into `models/uploads/.tmp-<uuid>/` ([`Staging`]; the size limit is
//! enforced while writing, nothing is held whole in memory); a folder on disk is read where it
//! is. Either way the result is [`CheckpointFiles`]: the kept files on disk, and what was
//! ignored. [`validate`] then checks the whole thing for the kind of checkpoint (the set of
//! files, `config.json`, the tokenizer, the shard index, every tensor's presence, shape and
//! dtype against what the config implies; safetensors headers only, the weights are never
//! read) and either refuses it with a message naming the file and tensor at fault
//! ([`CheckpointRejected`]) or hands back a [`ValidatedCheckpoint`].
//!
//! What is kept, ignored, refused:
//!
//! - **Kept**: `config.json`, `tokenizer.json`, the `*.safetensors` weights (one file, or shards
//!   with `model.safetensors.index.json`) or, for a prover without safetensors, one `*.gguf`
//!   file checked against the config ([`crate::ml::gguf`]), and the optional files of the kind
//!   ([`optional_files`]).
//! - **Ignored** (not stored, listed on the page, by the CLI and in the metadata): a Hub
//!   folder's side files (`.gitattributes`, `README.md`, `LICENSE`, `USE_POLICY.md`,
//!   `merges.txt`, `vocab.json`, `tokenizer.model`, `added_tokens.json`, images, …), hidden
//!   files, sub-folders (`original/`, `1_Pooling/`), PyTorch or GGUF weights beside the
//!   safetensors, files only the other kind uses, and shards the index does not list (a Hub
//!   Mistral folder's `consolidated.safetensors`).
//! - **Refused**: links, devices, `..` and absolute paths (naming the member); a checkpoint
//!   whose only weights are PyTorch `.bin`/`.pt`/`.pth` files or, for a verifier, GGUF (the message says how to
//!   convert); an index naming a missing shard or a tensor its shard does not hold; a
//!   verifier's `prompt_template.json`.
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
//!   ([`BertConfig::expected_tensors`](crate::ml::bert::BertConfig::expected_tensors)), all with or all without the `bert.` prefix; the pooler
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
//! otherwise unused. Its sub-folders (`1_Pooling/`, …) are ignored: the encoder's pooling is
//! fixed (mean over real tokens, [`crate::ml::bert::BertEncoder::pooled`]).
//! A verifier's `prompt_template.json` is **refused**, not ignored: a verifier scores solutions
//! in the project's own input format, and a template that silently had no effect would mislead
//! whoever uploaded it.
//!
//! [`store_checkpoint`] syncs every file of an upload's temporary folder (or copies a folder
//! read from disk into a new one), renames it to `models/uploads/<uuid>` (atomic on one
//! filesystem) and syncs the parent, so a crash leaves either the whole folder or a temp folder
//! that [`sweep_temp_dirs`] removes at the next start. [`register_in_place`] registers a folder
//! already on the server where it is, storing nothing. [`add_checkpoint`] is the one path the
//! web page and the CLI share for uploads.

use std::io;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::domain::CheckpointKind;
use crate::store::{Store, StoreError};

pub mod defaults;
pub mod files;
pub mod quantize;
pub mod storage;
pub mod validate;

pub use files::{
    CONFIG_FILE, CheckpointFiles, INDEX_FILE, IgnoreReason, IgnoredFile, KeptFile,
    MAX_SIDE_FILE_BYTES, OPTIONAL_FILES, PROVER_FILES, Staging, TOKENIZER_FILE, VERIFIER_FILES,
    WEIGHTS_EXTENSION, check_file_name, optional_files,
};
pub use storage::{
    RUNS_DIR, TEMP_DIR_GRACE, TEMP_PREFIX, UPLOADS_DIR, VERIFIERS_DIR, remove_stored,
    store_checkpoint, sweep_temp_dirs,
};
pub use validate::{ValidatedCheckpoint, validate};

/// Default limit on a checkpoint's total size: 4 GiB, so a 1.5B-parameter model in BF16
/// (about 3.1 GB) fits.
pub const DEFAULT_MAX_CHECKPOINT_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// Limits a checkpoint upload must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointLimits {
    /// Largest total size of the kept files, in bytes.
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
    /// Over the size limit (checked while the files arrive, before anything is parsed).
    #[error(
        "the checkpoint's files come to {total} bytes or more, over the limit of {limit} bytes"
    )]
    TooLarge {
        /// Total size of the kept files (or of those received so far).
        total: u64,
        /// The limit.
        limit: u64,
    },
    /// A file other than the weights over [`MAX_SIDE_FILE_BYTES`] (they are read whole).
    #[error("{name} is larger than {limit} bytes, the limit for files other than the weights")]
    FileTooLarge {
        /// The file's name.
        name: String,
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
    /// A file whose contents are invalid; the message starts with the file name.
    #[error("{0}")]
    InvalidFile(String),
    /// The tensors do not match what `config.json` implies; the message names them.
    #[error("{0}")]
    Tensors(String),
    /// The checkpoint is not of a kind that can be uploaded (PyTorch-only, a GGUF verifier, a
    /// BERT prover), or cannot be quantized.
    #[error("{0}")]
    Unsupported(String),
    /// A file or folder could not be read (on disk, or an upload cut off).
    #[error("{0}")]
    Unreadable(String),
}

impl CheckpointRejected {
    /// Whether the refusal is about size (HTTP 413) rather than content (HTTP 422).
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            CheckpointRejected::TooLarge { .. } | CheckpointRejected::FileTooLarge { .. }
        )
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

/// A checkpoint that was added: its id, its folder as registered (relative to the models
/// directory, or absolute for one registered in place) and what was ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedCheckpoint {
    /// The new checkpoint's id.
    pub id: Uuid,
    /// `model_dir` as registered.
    pub model_dir: String,
    /// Files that arrived but were not kept.
    pub ignored: Vec<IgnoredFile>,
}

/// Validates (as `kind`), stores and registers an uploaded prover or verifier checkpoint: the
/// one path the admin page and the CLI share. With `quantize`, a safetensors prover is stored
/// as a GGUF of that type instead ([`quantize::quantize`]). Validation, quantizing and writing
/// run on the blocking thread pool. A refusal of any kind leaves nothing behind: the files' temporary folder is
/// removed when they are dropped, and if registration fails the stored folder is removed.
#[allow(clippy::too_many_arguments)]
pub async fn add_checkpoint(
    store: &Store,
    models_dir: &Path,
    files: CheckpointFiles,
    limits: CheckpointLimits,
    quantization: Option<crate::ml::gguf::GgmlDType>,
    kind: CheckpointKind,
    label: &str,
    round: i64,
    now: i64,
) -> Result<AddedCheckpoint, AddCheckpointError> {
    let checked = crate::store::models::check_checkpoint_label(label, round);
    let label = match checked {
        Ok(label) => label,
        Err(e) => {
            discard(files).await;
            return Err(e.into());
        }
    };
    let dir = models_dir.to_path_buf();
    let stored = tokio::task::spawn_blocking(move || -> Result<_, AddCheckpointError> {
        let mut checkpoint = validate(files, kind, &limits)?;
        let ignored = checkpoint.ignored().to_vec();
        if let Some(dtype) = quantization {
            checkpoint = quantize::quantize(checkpoint, dtype, &dir, &limits)?;
        }
        let rel = store_checkpoint(&dir, &mut checkpoint)?;
        let mut metadata = checkpoint.metadata();
        if let Some(dtype) = quantization {
            metadata["quantized_on_registration"] = crate::ml::gguf::type_name(dtype).into();
        }
        Ok((rel, metadata, ignored))
    })
    .await
    .map_err(io::Error::other)?;
    let (rel, metadata, ignored) = stored?;
    match store
        .register_model_checkpoint(kind, &label, round, &rel, metadata, now)
        .await
    {
        Ok(id) => Ok(AddedCheckpoint {
            id,
            model_dir: rel,
            ignored,
        }),
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

/// Drops received files (removing their temporary folder) on the blocking thread pool.
pub async fn discard(files: CheckpointFiles) {
    let _ = tokio::task::spawn_blocking(move || drop(files)).await;
}

/// Registers a checkpoint folder already on the server where it is (`legibility checkpoint add
/// --in-place`): validated exactly as an upload (without the size limit: nothing is stored),
/// nothing copied, registered with its absolute path (symbolic links resolved), so generation
/// and scoring jobs load it from there. The folder must stay there and unchanged; the
/// metadata records each kept file's size and SHA-256 to tell later whether it changed. A
/// folder inside the models directory's temporary folders (`.tmp-…`, removed at the next start)
/// is refused.
pub async fn register_in_place(
    store: &Store,
    path: &Path,
    kind: CheckpointKind,
    label: &str,
    round: i64,
    now: i64,
) -> Result<AddedCheckpoint, AddCheckpointError> {
    let label = crate::store::models::check_checkpoint_label(label, round)?;
    let path = path.to_path_buf();
    let validated = tokio::task::spawn_blocking(move || -> Result<_, CheckpointRejected> {
        let folder = in_place_folder(&path)?;
        let unlimited = CheckpointLimits {
            max_bytes: u64::MAX,
        };
        let files = CheckpointFiles::from_dir(&folder, &unlimited)?;
        let checkpoint = validate(files, kind, &unlimited)?;
        let dir = checkpoint
            .dir()
            .to_str()
            .map(str::to_string)
            .ok_or_else(|| {
                CheckpointRejected::Unreadable(format!(
                    "{}: the path is not valid UTF-8, so it cannot be registered",
                    checkpoint.dir().display()
                ))
            })?;
        let mut metadata = checkpoint.metadata();
        metadata["source"] = "in-place".into();
        metadata["path"] = dir.clone().into();
        Ok((dir, metadata, checkpoint.ignored().to_vec()))
    })
    .await
    .map_err(io::Error::other)?;
    let (dir, metadata, ignored) = validated?;
    let id = store
        .register_model_checkpoint(kind, &label, round, &dir, metadata, now)
        .await?;
    Ok(AddedCheckpoint {
        id,
        model_dir: dir,
        ignored,
    })
}

/// The absolute, link-free path of a folder to register in place; refuses what is not a
/// folder and the temporary folders uploads and training runs write (swept at start-up).
fn in_place_folder(path: &Path) -> Result<PathBuf, CheckpointRejected> {
    let folder = std::fs::canonicalize(path).map_err(|e| {
        CheckpointRejected::Unreadable(format!("{} cannot be read: {e}", path.display()))
    })?;
    if !folder.is_dir() {
        return Err(CheckpointRejected::Unreadable(format!(
            "{} is not a folder; --in-place registers a checkpoint folder where it is (an archive must be added without --in-place)",
            path.display()
        )));
    }
    let temporary = folder.components().any(|c| {
        c.as_os_str()
            .to_str()
            .is_some_and(|c| c.starts_with(TEMP_PREFIX))
    });
    if temporary {
        return Err(CheckpointRejected::Unreadable(format!(
            "{} is a temporary folder of an upload or training run (removed at the next start); register a finished checkpoint folder",
            folder.display()
        )));
    }
    Ok(folder)
}

#[cfg(test)]
mod tests;

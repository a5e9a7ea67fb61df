//! Checkpoint upload (provers and verifiers): everything an uploaded checkpoint must satisfy,
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
//!   [`LlamaConfig::expected_tensors`](super::config::LlamaConfig::expected_tensors) lists. A BERT-family config is refused: an encoder cannot
//!   generate solutions. May carry `prompt_template.json`.
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
//!
//! Verifiers may also carry the files sentence-transformers ships beside the weights
//! (`vocab.txt`, `modules.json`, `sentence_bert_config.json`,
//! `config_sentence_transformers.json`, `data_config.json`), which are checked for form and
//! otherwise unused. Its sub-folders (`1_Pooling/`, …) and hidden files are not accepted: the
//! encoder's pooling is fixed (mean over real tokens, [`super::bert::BertEncoder::pooled`]).
//! A verifier's `prompt_template.json` is **refused**, not ignored: a verifier scores solutions
//! in the project's own input format, and a template that silently had no effect would mislead
//! whoever uploaded it.
//!
//! [`store_checkpoint`] writes a validated checkpoint into `models/uploads/.tmp-<uuid>/`, syncs
//! every file, renames the folder to `models/uploads/<uuid>` (atomic on one filesystem) and syncs
//! the parent, so a crash leaves either the whole folder or a temp folder that
//! [`sweep_temp_dirs`] removes at the next start. [`add_checkpoint`] is the one path the web page
//! and the CLI share: validate, store, register, and remove the folder again if registration
//! fails, so a refusal never leaves anything behind.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

use safetensors::{Dtype, SafeTensors};
use uuid::Uuid;

use super::bert::{self, BertConfig};
use super::config::ModelConfig;
use super::prompt::{PROMPT_TEMPLATE_FILE, PromptTemplate};
use super::verifier::SCORE_HEAD;
use crate::domain::CheckpointKind;
use crate::store::{Store, StoreError};

/// The model configuration file (Hugging Face `LlamaConfig` or `BertConfig`).
pub const CONFIG_FILE: &str = "config.json";
/// The tokenizer, in the `tokenizers` crate's JSON format.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Extension of weight files; a checkpoint has one or more (shards).
pub const WEIGHTS_EXTENSION: &str = ".safetensors";
/// Files any checkpoint may carry besides the required ones.
pub const OPTIONAL_FILES: &[&str] = &[
    "generation_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "README.md",
    "training.json",
];
/// Files only a prover checkpoint may carry: its own prompt template.
pub const PROVER_FILES: &[&str] = &[PROMPT_TEMPLATE_FILE];
/// Files only a verifier checkpoint may carry: what sentence-transformers ships beside a
/// BERT-family encoder. Checked for form (text, JSON), otherwise unused.
pub const VERIFIER_FILES: &[&str] = &[
    "vocab.txt",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "data_config.json",
];
/// Optional files that hold a JSON array rather than an object.
const JSON_ARRAY_FILES: &[&str] = &["modules.json", "data_config.json"];

/// The optional files a checkpoint of `kind` may carry (besides `config.json`,
/// `tokenizer.json` and the weights), so the pages and messages list exactly what is accepted.
pub fn optional_files(kind: CheckpointKind) -> Vec<&'static str> {
    let own = match kind {
        CheckpointKind::Prover => PROVER_FILES,
        CheckpointKind::Verifier => VERIFIER_FILES,
    };
    let mut files = own.to_vec();
    files.extend_from_slice(OPTIONAL_FILES);
    files
}
/// Folder under the models directory that holds uploaded checkpoints.
pub const UPLOADS_DIR: &str = "uploads";
/// Prefix of the temporary folders a checkpoint is written into before its rename.
pub const TEMP_PREFIX: &str = ".tmp-";
/// Default limit on a checkpoint's total size: 512 MiB.
pub const DEFAULT_MAX_CHECKPOINT_BYTES: u64 = 512 * 1024 * 1024;
/// Temp folders younger than this are left alone by the start-up sweep: another app instance
/// sharing the models directory may be writing them right now.
pub const TEMP_DIR_GRACE: Duration = Duration::from_secs(60 * 60);

/// Weight dtypes the candle prover loads.
const ACCEPTED_DTYPES: &[Dtype] = &[Dtype::F32, Dtype::F16, Dtype::BF16];
/// How many names a message lists before "and N more".
const LISTED_NAMES: usize = 5;
/// Longest accepted file name, in bytes (the common filesystem limit).
const MAX_NAME_BYTES: usize = 255;

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

/// The files of a checkpoint before validation: plain names (no folders) with their bytes, in
/// the order they arrived.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointFiles {
    files: Vec<(String, Vec<u8>)>,
}

impl CheckpointFiles {
    /// No files yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uploaded files as (name, bytes); names are checked by [`validate`].
    pub fn from_files(files: Vec<(String, Vec<u8>)>) -> Self {
        CheckpointFiles { files }
    }

    /// Adds one uploaded file.
    pub fn push(&mut self, name: impl Into<String>, bytes: Vec<u8>) {
        self.files.push((name.into(), bytes));
    }

    /// The files as (name, bytes).
    pub fn files(&self) -> &[(String, Vec<u8>)] {
        &self.files
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are no files.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Total size of all files, in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|(_, b)| b.len() as u64).sum()
    }

    /// Files from a tar archive (uncompressed). Only regular files are accepted: symbolic
    /// links, hard links, devices, FIFOs and sparse files are refused naming the member. Member
    /// paths must be relative, without `..`, backslashes or NUL, and either all at the archive's
    /// root or all inside one top-level folder (which is stripped); deeper nesting is refused.
    /// Directory entries and pax global headers carry no file and are skipped.
    pub fn from_tar(bytes: &[u8]) -> Result<Self, CheckpointRejected> {
        let mut archive = tar::Archive::new(bytes);
        let entries = archive
            .entries()
            .map_err(|e| CheckpointRejected::Archive(format!("cannot be read: {e}")))?;
        let mut layout = Layout::default();
        let mut files = Vec::new();
        for entry in entries {
            let mut entry = entry.map_err(|e| {
                CheckpointRejected::Archive(format!("cannot be read (corrupt or truncated): {e}"))
            })?;
            let raw = entry.path_bytes().into_owned();
            let member = String::from_utf8_lossy(&raw).into_owned();
            let kind = entry.header().entry_type();
            if kind.is_pax_global_extensions() {
                continue;
            }
            let what = if kind.is_file() || kind.is_contiguous() || kind.is_dir() {
                None
            } else if kind.is_symlink() {
                Some("a symbolic link")
            } else if kind.is_hard_link() {
                Some("a hard link")
            } else if kind.is_character_special() || kind.is_block_special() {
                Some("a device")
            } else if kind.is_fifo() {
                Some("a FIFO")
            } else if kind.is_gnu_sparse() {
                Some("a sparse file")
            } else {
                Some("not a regular file")
            };
            if let Some(what) = what {
                return Err(CheckpointRejected::Archive(format!(
                    "member {member:?} is {what}; only regular files are accepted"
                )));
            }
            let path = std::str::from_utf8(&raw).map_err(|_| CheckpointRejected::BadName {
                name: member.clone(),
                reason: "the member name is not valid UTF-8".into(),
            })?;
            let components = member_components(path)?;
            if kind.is_dir() {
                match components.as_slice() {
                    [] => {}
                    [folder] => layout.folder(path, folder)?,
                    _ => return Err(too_deep(path)),
                }
                continue;
            }
            let name = match components.as_slice() {
                [] => {
                    return Err(CheckpointRejected::BadName {
                        name: member,
                        reason: "the member has no file name".into(),
                    });
                }
                [name] => {
                    layout.root_file(path)?;
                    name
                }
                [folder, name] => {
                    layout.folder(path, folder)?;
                    layout.file_in_folder(path)?;
                    name
                }
                _ => return Err(too_deep(path)),
            };
            let size = entry.header().entry_size().unwrap_or(u64::MAX);
            if size > bytes.len() as u64 {
                return Err(CheckpointRejected::Archive(format!(
                    "member {member:?} claims {size} bytes, more than the archive holds (truncated?)"
                )));
            }
            let mut data = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut data).map_err(|e| {
                CheckpointRejected::Archive(format!("member {member:?} cannot be read: {e}"))
            })?;
            if data.len() as u64 != size {
                return Err(CheckpointRejected::Archive(format!(
                    "member {member:?} is truncated ({} of {size} bytes)",
                    data.len()
                )));
            }
            files.push((name.to_string(), data));
        }
        if files.is_empty() {
            return Err(CheckpointRejected::Archive("holds no files".into()));
        }
        Ok(CheckpointFiles { files })
    }

    /// Files from a folder on disk (the CLI). The folder holds the files directly, or holds
    /// exactly one folder that does (the same rule as for archives). Symbolic links are never
    /// followed and, like anything that is not a regular file, are refused naming the entry.
    /// Sizes are checked against `limits` before any file is read.
    pub fn from_dir(path: &Path, limits: &CheckpointLimits) -> Result<Self, CheckpointRejected> {
        let unreadable = |p: &Path, e: io::Error| {
            CheckpointRejected::Unreadable(format!("{} cannot be read: {e}", p.display()))
        };
        let list = |dir: &Path| -> Result<Vec<(String, fs::Metadata)>, CheckpointRejected> {
            let mut out = Vec::new();
            for entry in fs::read_dir(dir).map_err(|e| unreadable(dir, e))? {
                let entry = entry.map_err(|e| unreadable(dir, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                // `DirEntry::metadata` does not follow symbolic links.
                let meta = entry.metadata().map_err(|e| unreadable(&entry.path(), e))?;
                out.push((name, meta));
            }
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        };
        let mut dir = path.to_path_buf();
        let mut entries = list(&dir)?;
        if let [(name, meta)] = entries.as_slice()
            && meta.is_dir()
        {
            dir = dir.join(name);
            entries = list(&dir)?;
        }
        let mut total = 0u64;
        for (name, meta) in &entries {
            let shown = dir.join(name).display().to_string();
            if meta.file_type().is_symlink() {
                return Err(CheckpointRejected::BadName {
                    name: shown,
                    reason: "is a symbolic link; only regular files are accepted".into(),
                });
            }
            if meta.is_dir() {
                return Err(too_deep(&shown));
            }
            if !meta.is_file() {
                return Err(CheckpointRejected::BadName {
                    name: shown,
                    reason: "is not a regular file".into(),
                });
            }
            total = total.saturating_add(meta.len());
        }
        if total > limits.max_bytes {
            return Err(CheckpointRejected::TooLarge {
                total,
                limit: limits.max_bytes,
            });
        }
        if entries.is_empty() {
            return Err(CheckpointRejected::Unreadable(format!(
                "{} holds no files",
                dir.display()
            )));
        }
        let mut files = Vec::with_capacity(entries.len());
        for (name, _) in entries {
            let file = dir.join(&name);
            let bytes = read_no_follow(&file).map_err(|e| unreadable(&file, e))?;
            files.push((name, bytes));
        }
        Ok(CheckpointFiles { files })
    }
}

/// Reads a regular file, refusing it if a symbolic link or anything else was put in its place
/// since the folder was listed.
fn read_no_follow(path: &Path) -> io::Result<Vec<u8>> {
    let listed = fs::symlink_metadata(path)?;
    if !listed.is_file() {
        return Err(io::Error::other("is no longer a regular file"));
    }
    let mut file = File::open(path)?;
    let opened = file.metadata()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if (listed.dev(), listed.ino()) != (opened.dev(), opened.ino()) {
            return Err(io::Error::other("was replaced while being read"));
        }
    }
    if !opened.is_file() {
        return Err(io::Error::other("is not a regular file"));
    }
    let mut bytes = Vec::with_capacity(opened.len() as usize);
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn too_deep(path: &str) -> CheckpointRejected {
    CheckpointRejected::BadName {
        name: path.to_string(),
        reason:
            "is nested too deeply; files must be at the top level or inside one top-level folder"
                .into(),
    }
}

/// The components of an archive member path, refusing anything that could escape the
/// checkpoint folder or be read differently elsewhere. Empty and `.` components are dropped.
fn member_components(path: &str) -> Result<Vec<&str>, CheckpointRejected> {
    let bad = |reason: &str| CheckpointRejected::BadName {
        name: path.to_string(),
        reason: reason.to_string(),
    };
    if path.contains('\0') {
        return Err(bad("the member name contains a NUL byte"));
    }
    if path.contains('\\') {
        return Err(bad("the member name contains a backslash"));
    }
    if path.starts_with('/') {
        return Err(bad("absolute paths are refused"));
    }
    let mut out = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(bad("paths with a \"..\" component are refused")),
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Where an archive's files sit: all at the root, or all in one top-level folder.
#[derive(Debug, Default)]
struct Layout {
    folder: Option<String>,
    root_files: bool,
    folder_files: bool,
}

impl Layout {
    fn folder(&mut self, path: &str, folder: &str) -> Result<(), CheckpointRejected> {
        match &self.folder {
            Some(existing) if existing != folder => Err(CheckpointRejected::BadName {
                name: path.to_string(),
                reason: format!(
                    "is in a second top-level folder (the first is {existing:?}); files must be at the top level or inside one folder"
                ),
            }),
            Some(_) => Ok(()),
            None => {
                self.folder = Some(folder.to_string());
                Ok(())
            }
        }
    }

    fn root_file(&mut self, path: &str) -> Result<(), CheckpointRejected> {
        self.root_files = true;
        self.mixed(path)
    }

    fn file_in_folder(&mut self, path: &str) -> Result<(), CheckpointRejected> {
        self.folder_files = true;
        self.mixed(path)
    }

    fn mixed(&self, path: &str) -> Result<(), CheckpointRejected> {
        if self.root_files && self.folder_files {
            return Err(CheckpointRejected::BadName {
                name: path.to_string(),
                reason: "the archive has files both at the top level and inside a folder; put them all in one place".into(),
            });
        }
        Ok(())
    }
}

/// Why `name` is not a plain file name, if it is not: no separators, no NUL or control
/// characters, not hidden (no leading `.`, which also excludes `.` and `..`), not empty.
pub fn check_file_name(name: &str) -> Result<(), CheckpointRejected> {
    let reason = if name.is_empty() {
        Some("the file name is empty")
    } else if name.contains('/') || name.contains('\\') {
        Some("must be a plain file name without folders (no / or \\)")
    } else if name.contains('\0') {
        Some("the file name contains a NUL byte")
    } else if name.chars().any(char::is_control) {
        Some("the file name contains control characters")
    } else if name.starts_with('.') {
        Some("hidden files (names starting with '.') are refused")
    } else if name.len() > MAX_NAME_BYTES {
        Some("the file name is too long")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CheckpointRejected::BadName {
            name: name.to_string(),
            reason: reason.to_string(),
        }),
        None => Ok(()),
    }
}

/// A checkpoint that passed [`validate`]: its files (sorted by name) and what was learnt.
#[derive(Debug, Clone)]
pub struct ValidatedCheckpoint {
    files: Vec<(String, Vec<u8>)>,
    kind: CheckpointKind,
    config: ModelConfig,
    prompt_template: Option<PromptTemplate>,
    score_head: bool,
    tensor_prefix: String,
    parameters: u64,
    dtypes: Vec<String>,
}

impl ValidatedCheckpoint {
    /// The files as (name, bytes), sorted by name.
    pub fn files(&self) -> &[(String, Vec<u8>)] {
        &self.files
    }

    /// The kind it was validated as (the rules differ: see the module documentation).
    pub fn kind(&self) -> CheckpointKind {
        self.kind
    }

    /// The parsed `config.json`: Llama for every prover, Llama or BERT for a verifier.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The checkpoint's own prompt template, if it has one (provers only).
    pub fn prompt_template(&self) -> Option<&PromptTemplate> {
        self.prompt_template.as_ref()
    }

    /// Whether the weights hold a trained score head (`score.weight` and `score.bias`): always
    /// for a Llama verifier, optional for a BERT verifier, never for a prover.
    pub fn score_head(&self) -> bool {
        self.score_head
    }

    /// The prefix of the encoder's tensor names: `"bert."` for a `BertFor*` export, otherwise
    /// `""` (always `""` for Llama checkpoints). A loader passes it to the `VarBuilder`.
    pub fn tensor_prefix(&self) -> &str {
        &self.tensor_prefix
    }

    /// Number of weights over all tensors (buffers such as `position_ids` not counted).
    pub fn parameters(&self) -> u64 {
        self.parameters
    }

    /// Total size of the files, in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|(_, b)| b.len() as u64).sum()
    }

    /// What the checkpoints row records about the upload: its files with sizes and SHA-256,
    /// the architecture (with its `model_type`, also at the top level), parameter count and
    /// weight dtypes; for verifiers whether a score head is present, for BERT the tensor prefix.
    pub fn metadata(&self) -> serde_json::Value {
        use sha2::{Digest, Sha256};
        let files: Vec<serde_json::Value> = self
            .files
            .iter()
            .map(|(name, bytes)| {
                let digest = Sha256::digest(bytes);
                let sha: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                serde_json::json!({ "name": name, "bytes": bytes.len(), "sha256": sha })
            })
            .collect();
        let mut metadata = serde_json::json!({
            "source": "upload",
            "model_type": self.config.model_type(),
            "files": files,
            "parameters": self.parameters,
            "dtypes": self.dtypes,
            "prompt_template": self.prompt_template.is_some(),
            "architecture": self.config.architecture(),
        });
        if self.kind == CheckpointKind::Verifier {
            metadata["score_head"] = self.score_head.into();
        }
        if matches!(self.config, ModelConfig::Bert(_)) {
            metadata["tensor_prefix"] = self.tensor_prefix.clone().into();
        }
        metadata
    }
}

/// Lists up to [`LISTED_NAMES`] names, then "and N more".
fn list_names<S: AsRef<str>>(names: &[S]) -> String {
    let mut text = names
        .iter()
        .take(LISTED_NAMES)
        .map(|n| n.as_ref())
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED_NAMES {
        text.push_str(&format!(" and {} more", names.len() - LISTED_NAMES));
    }
    text
}

/// Checks a checkpoint of `kind` completely; nothing is stored here. See the module
/// documentation for the rules. The size limit is checked before any file is parsed, file
/// names and the set of files before any content is.
pub fn validate(
    files: CheckpointFiles,
    kind: CheckpointKind,
    limits: &CheckpointLimits,
) -> Result<ValidatedCheckpoint, CheckpointRejected> {
    let total = files.total_bytes();
    if total > limits.max_bytes {
        return Err(CheckpointRejected::TooLarge {
            total,
            limit: limits.max_bytes,
        });
    }
    let mut files = files.files;
    if files.is_empty() {
        return Err(CheckpointRejected::Missing(CONFIG_FILE.into()));
    }
    let mut seen = HashSet::new();
    for (name, _) in &files {
        check_file_name(name)?;
        if !seen.insert(name.as_str()) {
            return Err(CheckpointRejected::Duplicate(name.clone()));
        }
    }
    // A BERT encoder offered as a prover is refused for what it is before its side files
    // (vocab.txt, …) are refused one by one: the fix is to choose "verifier", not to drop them.
    if kind == CheckpointKind::Prover
        && let Some((_, bytes)) = files.iter().find(|(n, _)| n == CONFIG_FILE)
        && let Ok(ModelConfig::Bert(_)) = ModelConfig::from_json(bytes)
    {
        return Err(bert_prover());
    }
    let weights_file =
        |name: &str| name.len() > WEIGHTS_EXTENSION.len() && name.ends_with(WEIGHTS_EXTENSION);
    let optional = optional_files(kind);
    for (name, _) in &files {
        if kind == CheckpointKind::Verifier && name == PROMPT_TEMPLATE_FILE {
            return Err(CheckpointRejected::InvalidFile(format!(
                "{PROMPT_TEMPLATE_FILE} belongs to prover checkpoints only: a verifier scores solutions in the project's own input format, so a template would have no effect; remove it"
            )));
        }
        let known = name == CONFIG_FILE
            || name == TOKENIZER_FILE
            || weights_file(name)
            || optional.contains(&name.as_str());
        if !known {
            return Err(CheckpointRejected::Unexpected {
                name: name.clone(),
                kind,
            });
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let by_name: HashMap<&str, &[u8]> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    for required in [CONFIG_FILE, TOKENIZER_FILE] {
        if !by_name.contains_key(required) {
            return Err(CheckpointRejected::Missing(required.into()));
        }
    }
    if !files.iter().any(|(n, _)| weights_file(n)) {
        return Err(CheckpointRejected::Missing(
            "a *.safetensors weights file".into(),
        ));
    }

    let config =
        ModelConfig::from_json(by_name[CONFIG_FILE]).map_err(CheckpointRejected::InvalidFile)?;
    if kind == CheckpointKind::Prover && matches!(config, ModelConfig::Bert(_)) {
        return Err(bert_prover());
    }
    config.check().map_err(CheckpointRejected::InvalidFile)?;
    if let ModelConfig::Llama(llama) = &config {
        for (field, id) in [
            ("bos_token_id", llama.bos_token_id),
            ("eos_token_id", llama.eos_token_id),
        ] {
            if let Some(id) = id
                && id as usize >= llama.vocab_size
            {
                return Err(CheckpointRejected::InvalidFile(format!(
                    "{CONFIG_FILE}: {field} {id} is outside the vocabulary (vocab_size {})",
                    llama.vocab_size
                )));
            }
        }
    }

    check_tokenizer(by_name[TOKENIZER_FILE], config.vocab_size())?;

    let prompt_template = match by_name.get(PROMPT_TEMPLATE_FILE) {
        Some(bytes) => {
            Some(PromptTemplate::from_json(bytes).map_err(CheckpointRejected::InvalidFile)?)
        }
        None => None,
    };
    for name in &optional {
        let Some(bytes) = by_name.get(name) else {
            continue;
        };
        if JSON_ARRAY_FILES.contains(name) {
            serde_json::from_slice::<Vec<serde_json::Value>>(bytes).map_err(|e| {
                CheckpointRejected::InvalidFile(format!("{name} is not a JSON array: {e}"))
            })?;
        } else if name.ends_with(".json") && *name != PROMPT_TEMPLATE_FILE {
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes).map_err(
                |e| CheckpointRejected::InvalidFile(format!("{name} is not a JSON object: {e}")),
            )?;
        } else if (name.ends_with(".md") || name.ends_with(".txt"))
            && std::str::from_utf8(bytes).is_err()
        {
            return Err(CheckpointRejected::InvalidFile(format!(
                "{name} is not UTF-8 text"
            )));
        }
    }

    let found = read_tensors(&files, weights_file)?;
    let plan = TensorPlan::new(kind, &config, &found);
    let (parameters, dtypes) = check_tensors(&found, &plan)?;
    let score_head = !plan.score_head.is_empty()
        && plan
            .score_head
            .iter()
            .all(|(name, _)| found.contains_key(name));
    Ok(ValidatedCheckpoint {
        files,
        kind,
        config,
        prompt_template,
        score_head,
        tensor_prefix: plan.prefix.to_string(),
        parameters,
        dtypes,
    })
}

/// The refusal of a BERT-family config offered as a prover.
fn bert_prover() -> CheckpointRejected {
    CheckpointRejected::Unsupported(format!(
        "{CONFIG_FILE}: model_type is \"bert\", but prover checkpoints must be Llama (model_type \"llama\"): a BERT-family encoder cannot generate solutions; upload it as a verifier"
    ))
}

/// The tokenizer must load and fit the model's embedding: its vocabulary (added tokens
/// included) no larger than `vocab_size` and every token id below it.
fn check_tokenizer(bytes: &[u8], vocab_size: usize) -> Result<(), CheckpointRejected> {
    let tokenizer = crate::ml::tokenizer::from_json_bytes(bytes).map_err(|e| {
        CheckpointRejected::InvalidFile(format!("{TOKENIZER_FILE} cannot be loaded: {e}"))
    })?;
    let size = tokenizer.get_vocab_size(true);
    if size > vocab_size {
        return Err(CheckpointRejected::InvalidFile(format!(
            "{TOKENIZER_FILE} has {size} tokens (added tokens included) but {CONFIG_FILE} has vocab_size {vocab_size}"
        )));
    }
    if let Some((token, id)) = tokenizer
        .get_vocab(true)
        .into_iter()
        .max_by_key(|(_, id)| *id)
        && id as usize >= vocab_size
    {
        return Err(CheckpointRejected::InvalidFile(format!(
            "{TOKENIZER_FILE}: token {token:?} has id {id}, outside {CONFIG_FILE}'s vocab_size {vocab_size}"
        )));
    }
    Ok(())
}

/// Where a tensor was found: (file, shape, dtype), by tensor name.
type FoundTensors<'a> = BTreeMap<String, (&'a str, Vec<usize>, Dtype)>;

/// Every tensor of every weight file, refusing a tensor that appears twice (in one file or in
/// two shards) and a file that is not valid safetensors.
fn read_tensors<'a>(
    files: &'a [(String, Vec<u8>)],
    weights_file: impl Fn(&str) -> bool,
) -> Result<FoundTensors<'a>, CheckpointRejected> {
    let mut found = FoundTensors::new();
    for (file, bytes) in files.iter().filter(|(n, _)| weights_file(n)) {
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| {
            CheckpointRejected::InvalidFile(format!(
                "{file} is not a valid safetensors file (truncated or corrupt): {e}"
            ))
        })?;
        let mut names = tensors.tensors();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, view) in names {
            if let Some((other, _, _)) = found.get(&name) {
                return Err(CheckpointRejected::Tensors(if *other == file.as_str() {
                    format!("tensor {name} appears twice in {file}")
                } else {
                    format!("tensor {name} appears in both {other} and {file}")
                }));
            }
            found.insert(name, (file.as_str(), view.shape().to_vec(), view.dtype()));
        }
    }
    Ok(found)
}

/// What the weights of one checkpoint must hold, derived from its kind and config.
struct TensorPlan {
    /// How to name the model in messages ("Llama prover", "BERT verifier", …).
    model: &'static str,
    /// Tensors that must be present with these shapes.
    required: Vec<(String, Vec<usize>)>,
    /// Tensors accepted with these shapes when present.
    optional: Vec<(String, Vec<usize>)>,
    /// The score head's tensors: present both or neither (required ones are also in `required`).
    score_head: Vec<(String, Vec<usize>)>,
    /// Integer buffers accepted with these shapes when present; not weights, not counted.
    buffers: Vec<(String, Vec<usize>)>,
    /// Prefix of the encoder's tensor names (`"bert."` or `""`).
    prefix: &'static str,
    /// Encoder layers the config implies, and tensors each needs: for the early size check.
    layers: usize,
    per_layer: usize,
}

impl TensorPlan {
    fn new(kind: CheckpointKind, config: &ModelConfig, found: &FoundTensors<'_>) -> Self {
        let score_head = vec![
            (
                format!("{SCORE_HEAD}.weight"),
                vec![1, config.hidden_size()],
            ),
            (format!("{SCORE_HEAD}.bias"), vec![1]),
        ];
        match (config, kind) {
            (ModelConfig::Llama(c), CheckpointKind::Prover) => TensorPlan {
                model: "Llama prover",
                required: c.expected_tensors(),
                optional: Vec::new(),
                score_head: Vec::new(),
                buffers: Vec::new(),
                prefix: "",
                layers: c.num_hidden_layers,
                per_layer: 9,
            },
            (ModelConfig::Llama(c), CheckpointKind::Verifier) => {
                let lm_head = "lm_head.weight";
                let mut required: Vec<_> = c
                    .expected_tensors()
                    .into_iter()
                    .filter(|(n, _)| n != lm_head)
                    .collect();
                required.extend(score_head.iter().cloned());
                TensorPlan {
                    model: "Llama verifier",
                    required,
                    optional: vec![(lm_head.to_string(), vec![c.vocab_size, c.hidden_size])],
                    score_head,
                    buffers: Vec::new(),
                    prefix: "",
                    layers: c.num_hidden_layers,
                    per_layer: 9,
                }
            }
            (ModelConfig::Bert(c), _) => {
                let prefix = bert::tensor_prefix(found.keys().map(String::as_str));
                let mut optional = c.pooler_tensors(prefix);
                optional.extend(score_head.iter().cloned());
                TensorPlan {
                    model: "BERT verifier",
                    required: c.expected_tensors(prefix),
                    optional,
                    score_head,
                    buffers: vec![(
                        format!("{prefix}{}", bert::POSITION_IDS),
                        vec![1, c.max_position_embeddings],
                    )],
                    prefix,
                    layers: c.num_hidden_layers,
                    per_layer: BertConfig::TENSORS_PER_LAYER,
                }
            }
        }
    }
}

/// Every required tensor present, nothing unexpected, the shapes the config implies, an
/// accepted dtype; the score head complete or absent. Returns the parameter count and dtypes.
fn check_tensors(
    found: &FoundTensors<'_>,
    plan: &TensorPlan,
) -> Result<(u64, Vec<String>), CheckpointRejected> {
    // A config implying far more layers than the files hold is refused before its (possibly
    // enormous) list of expected names is used.
    let layers_fit = plan
        .layers
        .checked_mul(plan.per_layer)
        .is_some_and(|n| n <= found.len());
    if !layers_fit {
        return Err(CheckpointRejected::Tensors(format!(
            "{CONFIG_FILE} has num_hidden_layers {}, which needs at least {} tensors, but the safetensors files hold only {}",
            plan.layers,
            plan.layers.saturating_mul(plan.per_layer),
            found.len()
        )));
    }
    let shapes: HashMap<&str, &Vec<usize>> = plan
        .required
        .iter()
        .chain(&plan.optional)
        .map(|(n, s)| (n.as_str(), s))
        .collect();
    let buffers: HashMap<&str, &Vec<usize>> =
        plan.buffers.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let missing: Vec<&str> = plan
        .required
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !found.contains_key(*n))
        .collect();
    if !missing.is_empty() {
        let head_missing = missing
            .iter()
            .any(|m| plan.score_head.iter().any(|(n, _)| n == m));
        let hint = if head_missing {
            format!(
                " (a {} needs the score head {})",
                plan.model,
                describe(&plan.score_head)
            )
        } else {
            String::new()
        };
        return Err(CheckpointRejected::Tensors(format!(
            "{} tensor(s) that a {} with this {CONFIG_FILE} needs are missing: {}{hint}",
            missing.len(),
            plan.model,
            list_names(&missing)
        )));
    }
    let unexpected: Vec<&str> = found
        .keys()
        .map(String::as_str)
        .filter(|n| !shapes.contains_key(n) && !buffers.contains_key(n))
        .collect();
    if !unexpected.is_empty() {
        return Err(CheckpointRejected::Tensors(format!(
            "{} unexpected tensor(s) for a {} with this {CONFIG_FILE}: {}",
            unexpected.len(),
            plan.model,
            list_names(&unexpected)
        )));
    }
    let present: Vec<&str> = plan
        .score_head
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| found.contains_key(*n))
        .collect();
    if !present.is_empty() && present.len() < plan.score_head.len() {
        let absent: Vec<&str> = plan
            .score_head
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !found.contains_key(*n))
            .collect();
        return Err(CheckpointRejected::Tensors(format!(
            "{} is present but {} is missing: a score head needs both ({}) or neither",
            list_names(&present),
            list_names(&absent),
            describe(&plan.score_head)
        )));
    }
    let mut parameters = 0u64;
    let mut dtypes = Vec::new();
    // In the plan's order (the embedding first), so the first mismatch reported is the one a
    // wrong config.json shows first.
    let in_order = plan
        .required
        .iter()
        .chain(&plan.optional)
        .chain(&plan.buffers)
        .filter_map(|(name, _)| found.get_key_value(name));
    for (name, (file, actual, dtype)) in in_order {
        if let Some(shape) = buffers.get(name.as_str()) {
            if actual != *shape {
                return Err(CheckpointRejected::Tensors(format!(
                    "{name} has shape {actual:?} but {CONFIG_FILE} implies {shape:?} (in {file})"
                )));
            }
            if !matches!(dtype, Dtype::I64 | Dtype::I32) {
                return Err(CheckpointRejected::Tensors(format!(
                    "{name} has dtype {dtype:?} (in {file}); this buffer must be I64 or I32"
                )));
            }
            continue;
        }
        let shape = shapes[name.as_str()];
        if actual != shape {
            return Err(CheckpointRejected::Tensors(format!(
                "{name} has shape {actual:?} but {CONFIG_FILE} implies {shape:?} (in {file})"
            )));
        }
        if !ACCEPTED_DTYPES.contains(dtype) {
            return Err(CheckpointRejected::Tensors(format!(
                "{name} has dtype {dtype:?} (in {file}); only F32, F16 and BF16 are accepted"
            )));
        }
        let dtype = format!("{dtype:?}");
        if !dtypes.contains(&dtype) {
            dtypes.push(dtype);
        }
        parameters = parameters.saturating_add(shape.iter().product::<usize>() as u64);
    }
    Ok((parameters, dtypes))
}

/// `score.weight [1, 8] and score.bias [1]`: tensors with their shapes, for messages.
fn describe(tensors: &[(String, Vec<usize>)]) -> String {
    tensors
        .iter()
        .map(|(n, s)| format!("{n} {s:?}"))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Writes a validated checkpoint to `models_dir/uploads/<uuid>` atomically and returns that
/// folder relative to `models_dir` (`uploads/<uuid>`, with `/` on every platform). Files go to
/// `uploads/.tmp-<uuid>` first and are synced; the folder is then renamed and the parent
/// synced. On any error the temp folder (or the renamed folder) is removed.
pub fn store_checkpoint(models_dir: &Path, checkpoint: &ValidatedCheckpoint) -> io::Result<String> {
    let uploads = models_dir.join(UPLOADS_DIR);
    fs::create_dir_all(&uploads)?;
    let id = Uuid::now_v7();
    let temp = uploads.join(format!("{TEMP_PREFIX}{id}"));
    let target = uploads.join(id.to_string());
    let mut renamed = false;
    let result = (|| {
        fs::create_dir(&temp)?;
        for (name, bytes) in &checkpoint.files {
            let mut file = File::create_new(temp.join(name))?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        sync_dir(&temp)?;
        fs::rename(&temp, &target)?;
        renamed = true;
        sync_dir(&uploads)
    })();
    match result {
        Ok(()) => Ok(format!("{UPLOADS_DIR}/{id}")),
        Err(e) => {
            let _ = fs::remove_dir_all(if renamed { &target } else { &temp });
            Err(e)
        }
    }
}

/// Makes a folder's entries durable (a no-op where folders cannot be opened, e.g. Windows).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Removes a stored checkpoint folder, given as returned by [`store_checkpoint`]. Refuses a
/// path that is not `uploads/<name>` so a bad row can never remove anything else.
pub fn remove_stored(models_dir: &Path, rel: &str) -> io::Result<()> {
    let name = rel
        .strip_prefix(UPLOADS_DIR)
        .and_then(|r| r.strip_prefix('/'))
        .filter(|n| check_file_name(n).is_ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{rel:?} is not an uploaded checkpoint folder"),
            )
        })?;
    let uploads = models_dir.join(UPLOADS_DIR);
    fs::remove_dir_all(uploads.join(name))?;
    sync_dir(&uploads)
}

/// Removes temp folders left in `models_dir/uploads` by a crash during an upload, and in
/// `models_dir/verifiers` by a verifier training job that died and was not retried, if they are
/// older than `min_age` (use [`TEMP_DIR_GRACE`] at start-up: an instance sharing the folder
/// may be writing a younger one). Returns how many were removed; a missing folder is fine.
pub fn sweep_temp_dirs(models_dir: &Path, min_age: Duration) -> io::Result<usize> {
    let mut removed = 0;
    for folder in [UPLOADS_DIR, crate::worker::verifier::VERIFIERS_DIR] {
        removed += sweep_temp_dirs_in(&models_dir.join(folder), min_age)?;
    }
    Ok(removed)
}

/// [`sweep_temp_dirs`] for one folder.
fn sweep_temp_dirs_in(folder: &Path, min_age: Duration) -> io::Result<usize> {
    let entries = match fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let meta = entry.metadata()?;
        let age = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .unwrap_or(Duration::MAX);
        if age < min_age {
            continue;
        }
        if meta.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
        removed += 1;
    }
    Ok(removed)
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
mod tests {
    use super::*;

    use crate::ml::config::LlamaConfig;

    const PROVER: CheckpointKind = CheckpointKind::Prover;

    fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            raw_name(&mut header, path);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// Writes the name bytes as given (the builder's `set_path` refuses `..` and absolute paths,
    /// which the tests need to produce).
    fn raw_name(header: &mut tar::Header, path: &str) {
        let name = &mut header.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
    }

    fn special(path: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(0);
        header.set_mode(0o644);
        header.set_entry_type(kind);
        raw_name(&mut header, path);
        if let Some(link) = link {
            header.set_link_name_literal(link).unwrap();
        }
        header.set_cksum();
        builder.append(&header, &[][..]).unwrap();
        builder.into_inner().unwrap()
    }

    fn names(files: &CheckpointFiles) -> Vec<&str> {
        files.files().iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn plain_file_names_only() {
        for good in [
            "config.json",
            "model-00001-of-00002.safetensors",
            "README.md",
            "a b.json",
        ] {
            assert!(check_file_name(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("dir/config.json", "without folders"),
            ("dir\\config.json", "without folders"),
            (".hidden", "hidden"),
            ("..", "hidden"),
            (".", "hidden"),
            ("a\0b", "NUL"),
            ("a\nb", "control"),
        ] {
            let err = check_file_name(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert!(check_file_name(&"x".repeat(300)).is_err());
    }

    #[test]
    fn validate_refuses_bad_names_duplicates_and_unknown_files_before_parsing() {
        let limits = CheckpointLimits::default();
        let files = |list: &[(&str, &[u8])]| {
            CheckpointFiles::from_files(
                list.iter()
                    .map(|(n, b)| (n.to_string(), b.to_vec()))
                    .collect(),
            )
        };
        let err = validate(files(&[("sub/config.json", b"{}")]), PROVER, &limits).unwrap_err();
        assert!(matches!(err, CheckpointRejected::BadName { .. }), "{err}");
        assert!(err.to_string().contains("sub/config.json"), "{err}");
        let err = validate(
            files(&[("config.json", b"{}"), ("config.json", b"{}")]),
            PROVER,
            &limits,
        )
        .unwrap_err();
        assert_eq!(err, CheckpointRejected::Duplicate("config.json".into()));
        let err = validate(
            files(&[("config.json", b"{}"), ("weights.bin", b"")]),
            PROVER,
            &limits,
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("weights.bin is not a file"),
            "{err}"
        );
        let err = validate(files(&[("config.json", b"{}")]), PROVER, &limits).unwrap_err();
        assert_eq!(err, CheckpointRejected::Missing(TOKENIZER_FILE.into()));
        let err = validate(files(&[(".safetensors", b"")]), PROVER, &limits).unwrap_err();
        assert!(matches!(err, CheckpointRejected::BadName { .. }), "{err}");
        let err = validate(
            files(&[("config.json", &[0u8; 100])]),
            PROVER,
            &CheckpointLimits { max_bytes: 99 },
        )
        .unwrap_err();
        assert_eq!(
            err,
            CheckpointRejected::TooLarge {
                total: 100,
                limit: 99
            }
        );
        assert!(err.is_too_large());
    }

    const VERIFIER: CheckpointKind = CheckpointKind::Verifier;

    /// A WordLevel tokenizer with `size` tokens and a whitespace pre-tokenizer.
    fn tokenizer_json(size: usize) -> Vec<u8> {
        let vocab: serde_json::Map<String, serde_json::Value> = (0..size)
            .map(|i| (format!("w{i}"), serde_json::json!(i)))
            .collect();
        serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": { "type": "Whitespace" },
            "post_processor": null, "decoder": null,
            "model": { "type": "WordLevel", "vocab": vocab, "unk_token": "w0" }
        })
        .to_string()
        .into_bytes()
    }

    /// Zero tensors with these names and shapes (F32, or I64 for `position_ids` buffers).
    fn safetensors_of(shapes: &[(String, Vec<usize>)]) -> Vec<u8> {
        let data: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = shapes
            .iter()
            .map(|(name, shape)| {
                let dtype = if name.ends_with("position_ids") {
                    Dtype::I64
                } else {
                    Dtype::F32
                };
                let bytes = vec![0u8; shape.iter().product::<usize>() * dtype.bitsize() / 8];
                (name.clone(), shape.clone(), dtype, bytes)
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
            .iter()
            .map(|(name, shape, dtype, bytes)| {
                let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                    .expect("view");
                (name.clone(), view)
            })
            .collect();
        safetensors::serialize(views, None).expect("serialize")
    }

    fn llama_config() -> serde_json::Value {
        serde_json::json!({
            "model_type": "llama", "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 16
        })
    }

    fn bert_config() -> serde_json::Value {
        serde_json::json!({
            "architectures": ["BertModel"], "model_type": "bert", "vocab_size": 16,
            "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 16, "max_position_embeddings": 32, "hidden_act": "gelu",
            "layer_norm_eps": 1e-12, "pad_token_id": 0, "transformers_version": "4.8.2"
        })
    }

    fn score_head() -> Vec<(String, Vec<usize>)> {
        vec![
            ("score.weight".into(), vec![1, 8]),
            ("score.bias".into(), vec![1]),
        ]
    }

    /// The tensors of a Llama verifier (body without `lm_head`, plus the score head).
    fn llama_verifier_tensors() -> Vec<(String, Vec<usize>)> {
        let config: LlamaConfig = serde_json::from_value(llama_config()).expect("config");
        let mut tensors: Vec<_> = config
            .expected_tensors()
            .into_iter()
            .filter(|(n, _)| n != "lm_head.weight")
            .collect();
        tensors.extend(score_head());
        tensors
    }

    fn bert_tensors(prefix: &str) -> Vec<(String, Vec<usize>)> {
        let config: BertConfig = serde_json::from_value(bert_config()).expect("config");
        config.expected_tensors(prefix)
    }

    fn checkpoint(
        config: &serde_json::Value,
        tensors: &[(String, Vec<usize>)],
        extra: &[(&str, &[u8])],
    ) -> CheckpointFiles {
        let mut files = CheckpointFiles::new();
        files.push(CONFIG_FILE, config.to_string().into_bytes());
        files.push(TOKENIZER_FILE, tokenizer_json(14));
        files.push("model.safetensors", safetensors_of(tensors));
        for (name, bytes) in extra {
            files.push(*name, bytes.to_vec());
        }
        files
    }

    fn without(tensors: Vec<(String, Vec<usize>)>, name: &str) -> Vec<(String, Vec<usize>)> {
        let kept: Vec<_> = tensors.into_iter().filter(|(n, _)| n != name).collect();
        kept
    }

    fn refused(files: CheckpointFiles, kind: CheckpointKind) -> String {
        validate(files, kind, &CheckpointLimits::default())
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn a_llama_verifier_needs_its_score_head_and_not_lm_head() {
        let limits = CheckpointLimits::default();
        let tensors = llama_verifier_tensors();
        let ok = validate(
            checkpoint(&llama_config(), &tensors, &[]),
            VERIFIER,
            &limits,
        )
        .expect("a Llama verifier without lm_head is accepted");
        assert_eq!(ok.kind(), VERIFIER);
        assert!(ok.score_head());
        assert!(ok.config().as_llama().is_some());
        let metadata = ok.metadata();
        assert_eq!(metadata["model_type"], "llama");
        assert_eq!(metadata["architecture"]["model_type"], "llama");
        assert_eq!(metadata["score_head"], true);
        assert_eq!(
            ok.parameters(),
            tensors
                .iter()
                .map(|(_, s)| s.iter().product::<usize>() as u64)
                .sum::<u64>()
        );

        // lm_head is accepted when present (with its shape), and so are the
        // sentence-transformers side files.
        let mut with_lm_head = tensors.clone();
        with_lm_head.push(("lm_head.weight".into(), vec![16, 8]));
        let extra: &[(&str, &[u8])] = &[
            ("vocab.txt", b"[PAD]\nw1\n"),
            ("modules.json", br#"[{"idx": 0, "name": "0", "path": ""}]"#),
            ("sentence_bert_config.json", br#"{"max_seq_length": 256}"#),
        ];
        validate(
            checkpoint(&llama_config(), &with_lm_head, extra),
            VERIFIER,
            &limits,
        )
        .expect("lm_head and side files are accepted");
        let mut bad_lm_head = tensors.clone();
        bad_lm_head.push(("lm_head.weight".into(), vec![8, 16]));
        let err = refused(checkpoint(&llama_config(), &bad_lm_head, &[]), VERIFIER);
        assert!(err.contains("lm_head.weight has shape [8, 16]"), "{err}");

        // The score head is required, with its exact shape.
        let err = refused(
            checkpoint(
                &llama_config(),
                &without(tensors.clone(), "score.bias"),
                &[],
            ),
            VERIFIER,
        );
        assert!(err.contains("missing: score.bias"), "{err}");
        assert!(
            err.contains("score.weight [1, 8] and score.bias [1]"),
            "{err}"
        );
        let mut wrong = without(tensors.clone(), "score.weight");
        wrong.push(("score.weight".into(), vec![8, 1]));
        let err = refused(checkpoint(&llama_config(), &wrong, &[]), VERIFIER);
        assert!(
            err.contains("score.weight has shape [8, 1] but config.json implies [1, 8]"),
            "{err}"
        );

        // A prompt template means nothing to a verifier; JSON side files must be well formed.
        let template = serde_json::to_vec(&PromptTemplate::default()).expect("json");
        let err = refused(
            checkpoint(
                &llama_config(),
                &tensors,
                &[(PROMPT_TEMPLATE_FILE, &template)],
            ),
            VERIFIER,
        );
        assert!(
            err.starts_with("prompt_template.json belongs to prover checkpoints only"),
            "{err}"
        );
        let err = refused(
            checkpoint(&llama_config(), &tensors, &[("modules.json", b"{}")]),
            VERIFIER,
        );
        assert!(err.starts_with("modules.json is not a JSON array"), "{err}");

        // A prover keeps its rules: lm_head required, no score head, no verifier side files.
        let err = refused(checkpoint(&llama_config(), &with_lm_head, &[]), PROVER);
        assert!(
            err.contains("unexpected tensor(s) for a Llama prover"),
            "{err}"
        );
        assert!(err.contains("score.bias, score.weight"), "{err}");
        let err = refused(checkpoint(&llama_config(), &tensors, &[]), PROVER);
        assert!(err.contains("missing: lm_head.weight"), "{err}");
        let err = refused(
            checkpoint(&llama_config(), &tensors, &[("vocab.txt", b"w0\n")]),
            PROVER,
        );
        assert!(
            err.starts_with(
                "vocab.txt is not a file a checkpoint may contain (a prover checkpoint allows"
            ),
            "{err}"
        );
    }

    #[test]
    fn bert_verifiers_with_or_without_prefix_and_score_head() {
        let limits = CheckpointLimits::default();
        for prefix in ["", bert::BERT_PREFIX] {
            for with_head in [false, true] {
                let mut tensors = bert_tensors(prefix);
                // The pooler and the position-ids buffer of real exports are accepted.
                tensors.extend(
                    serde_json::from_value::<BertConfig>(bert_config())
                        .expect("config")
                        .pooler_tensors(prefix),
                );
                tensors.push((format!("{prefix}embeddings.position_ids"), vec![1, 32]));
                if with_head {
                    tensors.extend(score_head());
                }
                let extra: &[(&str, &[u8])] = &[
                    ("vocab.txt", b"[PAD]\n[UNK]\n"),
                    ("special_tokens_map.json", br#"{"pad_token": "[PAD]"}"#),
                    ("tokenizer_config.json", br#"{"do_lower_case": true}"#),
                    (
                        "config_sentence_transformers.json",
                        br#"{"__version__": {}}"#,
                    ),
                    ("modules.json", br#"[]"#),
                ];
                let ok = validate(
                    checkpoint(&bert_config(), &tensors, extra),
                    VERIFIER,
                    &limits,
                )
                .unwrap_or_else(|e| panic!("prefix {prefix:?}, head {with_head}: {e}"));
                assert_eq!(ok.score_head(), with_head);
                assert_eq!(ok.tensor_prefix(), prefix);
                assert_eq!(ok.config().as_bert().map(|c| c.num_hidden_layers), Some(2));
                let metadata = ok.metadata();
                assert_eq!(metadata["model_type"], "bert");
                assert_eq!(metadata["architecture"]["hidden_act"], "gelu");
                assert_eq!(metadata["score_head"], with_head);
                assert_eq!(metadata["tensor_prefix"], prefix);
                assert_eq!(
                    metadata["dtypes"],
                    serde_json::json!(["F32"]),
                    "buffers are not weights"
                );
            }
        }
    }

    #[test]
    fn bert_checkpoints_that_do_not_fit_are_refused() {
        let err = refused(checkpoint(&bert_config(), &bert_tensors(""), &[]), PROVER);
        assert!(err.contains("prover checkpoints must be Llama"), "{err}");
        let err = refused(
            checkpoint(
                &bert_config(),
                &without(
                    bert_tensors("bert."),
                    "bert.encoder.layer.1.attention.self.key.bias",
                ),
                &[],
            ),
            VERIFIER,
        );
        assert!(
            err.contains("missing: bert.encoder.layer.1.attention.self.key.bias"),
            "{err}"
        );
        let mut half_head = bert_tensors("");
        half_head.push(("score.weight".into(), vec![1, 8]));
        let err = refused(checkpoint(&bert_config(), &half_head, &[]), VERIFIER);
        assert!(
            err.contains("score.weight is present but score.bias is missing"),
            "{err}"
        );
        let mut masked_lm = bert_tensors("bert.");
        masked_lm.push(("cls.predictions.bias".into(), vec![16]));
        let err = refused(checkpoint(&bert_config(), &masked_lm, &[]), VERIFIER);
        assert!(
            err.contains("unexpected tensor(s) for a BERT verifier")
                && err.contains("cls.predictions.bias"),
            "{err}"
        );
        let mut config = bert_config();
        config["hidden_act"] = "swish".into();
        let err = refused(checkpoint(&config, &bert_tensors(""), &[]), VERIFIER);
        assert!(
            err.starts_with("config.json: hidden_act \"swish\""),
            "{err}"
        );
        let mut config = bert_config();
        config["vocab_size"] = 10.into();
        let err = refused(checkpoint(&config, &bert_tensors(""), &[]), VERIFIER);
        assert!(err.contains("tokenizer.json has 14 tokens"), "{err}");
        let mut buffer = bert_tensors("");
        buffer.push(("embeddings.position_ids".into(), vec![1, 31]));
        let err = refused(checkpoint(&bert_config(), &buffer, &[]), VERIFIER);
        assert!(
            err.contains("embeddings.position_ids has shape [1, 31]"),
            "{err}"
        );
        let err = refused(
            checkpoint(
                &serde_json::json!({"model_type": "t5"}),
                &bert_tensors(""),
                &[],
            ),
            VERIFIER,
        );
        assert!(err.contains("model_type is \"t5\""), "{err}");
    }

    #[test]
    fn tar_files_at_the_root_or_in_one_folder() {
        let root =
            CheckpointFiles::from_tar(&tar_of(&[("config.json", b"{}"), ("./README.md", b"hi")]))
                .unwrap();
        assert_eq!(names(&root), ["config.json", "README.md"]);
        assert_eq!(root.files()[1].1, b"hi");

        let mut builder = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_size(0);
        dir.set_mode(0o755);
        raw_name(&mut dir, "ckpt/");
        dir.set_cksum();
        builder.append(&dir, &[][..]).unwrap();
        let mut bytes = builder.into_inner().unwrap();
        bytes.truncate(512); // drop the end-of-archive blocks to append more members
        let rest = tar_of(&[("ckpt/config.json", b"{}"), ("ckpt/tokenizer.json", b"[]")]);
        bytes.extend_from_slice(&rest);
        let folder = CheckpointFiles::from_tar(&bytes).unwrap();
        assert_eq!(names(&folder), ["config.json", "tokenizer.json"]);
    }

    #[test]
    fn tar_layout_rules() {
        type Members<'a> = &'a [(&'a str, &'a [u8])];
        let cases: &[(Members, &str)] = &[
            (&[("a/b/config.json", b"")], "nested too deeply"),
            (
                &[("a/config.json", b""), ("b/tokenizer.json", b"")],
                "second top-level folder",
            ),
            (
                &[("config.json", b""), ("a/tokenizer.json", b"")],
                "both at the top level and inside a folder",
            ),
            (&[("../evil", b"")], "\"..\""),
            (&[("ckpt/../../evil", b"")], "\"..\""),
            (&[("/etc/passwd", b"")], "absolute"),
            (&[("ckpt\\config.json", b"")], "backslash"),
        ];
        for (members, why) in cases {
            let err = CheckpointFiles::from_tar(&tar_of(members))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{members:?}: {err}");
            let named = format!("{:?}", members.last().unwrap().0);
            assert!(err.contains(&named), "{members:?}: {err}");
        }
        let err = CheckpointFiles::from_tar(&tar_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no files"), "{err}");
    }

    #[test]
    fn tar_refuses_anything_but_regular_files() {
        for (kind, link, what) in [
            (
                tar::EntryType::Symlink,
                Some("/etc/passwd"),
                "symbolic link",
            ),
            (tar::EntryType::Link, Some("config.json"), "hard link"),
            (tar::EntryType::Char, None, "device"),
            (tar::EntryType::Block, None, "device"),
            (tar::EntryType::Fifo, None, "FIFO"),
        ] {
            let err = CheckpointFiles::from_tar(&special("model.safetensors", kind, link))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(what) && err.contains("\"model.safetensors\""),
                "{err}"
            );
        }
    }

    #[test]
    fn tar_refuses_garbage_and_truncation() {
        let full = tar_of(&[("config.json", &[b'x'; 2000])]);
        let err = CheckpointFiles::from_tar(&full[..1000])
            .unwrap_err()
            .to_string();
        assert!(err.contains("tar archive"), "{err}");
        let err = CheckpointFiles::from_tar(&[7u8; 1024])
            .unwrap_err()
            .to_string();
        assert!(err.contains("tar archive"), "{err}");
    }

    #[test]
    fn store_is_atomic_and_removable_and_the_sweep_clears_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = ValidatedCheckpoint {
            files: vec![("a.json".into(), b"{}".to_vec()), ("b.md".into(), b"hi".to_vec())],
            kind: PROVER,
            config: ModelConfig::Llama(
                serde_json::from_str(
                    r#"{"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":16}"#,
                )
                .unwrap(),
            ),
            prompt_template: None,
            score_head: false,
            tensor_prefix: String::new(),
            parameters: 0,
            dtypes: vec![],
        };
        let rel = store_checkpoint(dir.path(), &checkpoint).unwrap();
        assert!(rel.starts_with("uploads/"), "{rel}");
        assert_eq!(fs::read(dir.path().join(&rel).join("b.md")).unwrap(), b"hi");
        let listed: Vec<_> = fs::read_dir(dir.path().join(UPLOADS_DIR))
            .unwrap()
            .collect();
        assert_eq!(listed.len(), 1, "no temp folder is left");

        assert!(remove_stored(dir.path(), "../etc").is_err());
        assert!(remove_stored(dir.path(), "uploads/../x").is_err());
        remove_stored(dir.path(), &rel).unwrap();
        assert_eq!(
            fs::read_dir(dir.path().join(UPLOADS_DIR)).unwrap().count(),
            0
        );

        fs::create_dir_all(dir.path().join("uploads/.tmp-crashed/x")).unwrap();
        fs::create_dir_all(dir.path().join("uploads/kept")).unwrap();
        assert_eq!(
            sweep_temp_dirs(dir.path(), TEMP_DIR_GRACE).unwrap(),
            0,
            "young temp folders are kept"
        );
        assert_eq!(sweep_temp_dirs(dir.path(), Duration::ZERO).unwrap(), 1);
        let left: Vec<String> = fs::read_dir(dir.path().join(UPLOADS_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["kept"]);
        assert_eq!(
            sweep_temp_dirs(&dir.path().join("absent"), Duration::ZERO).unwrap(),
            0
        );
    }

    #[test]
    fn a_failed_write_leaves_no_temp_folder() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = ValidatedCheckpoint {
            // Invalid on purpose: a name with a separator makes the write fail midway.
            files: vec![("a.json".into(), b"{}".to_vec()), ("missing/b.md".into(), b"hi".to_vec())],
            kind: PROVER,
            config: ModelConfig::Llama(
                serde_json::from_str(
                    r#"{"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":16}"#,
                )
                .unwrap(),
            ),
            prompt_template: None,
            score_head: false,
            tensor_prefix: String::new(),
            parameters: 0,
            dtypes: vec![],
        };
        assert!(store_checkpoint(dir.path(), &checkpoint).is_err());
        assert_eq!(
            fs::read_dir(dir.path().join(UPLOADS_DIR)).unwrap().count(),
            0
        );
    }

    #[test]
    fn folders_on_disk_follow_the_same_rules() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("outer/ckpt");
        fs::create_dir_all(&ckpt).unwrap();
        fs::write(ckpt.join("config.json"), b"{}").unwrap();
        fs::write(ckpt.join("README.md"), b"hi").unwrap();
        let limits = CheckpointLimits::default();
        // One folder inside is descended into; the files come back sorted.
        let files = CheckpointFiles::from_dir(&dir.path().join("outer"), &limits).unwrap();
        assert_eq!(names(&files), ["README.md", "config.json"]);
        let err = CheckpointFiles::from_dir(&ckpt, &CheckpointLimits { max_bytes: 3 }).unwrap_err();
        assert!(err.is_too_large(), "{err}");
        fs::create_dir(ckpt.join("sub")).unwrap();
        let err = CheckpointFiles::from_dir(&ckpt, &limits)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sub") && err.contains("nested too deeply"),
            "{err}"
        );
        fs::remove_dir(ckpt.join("sub")).unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/passwd", ckpt.join("tokenizer.json")).unwrap();
            let err = CheckpointFiles::from_dir(&ckpt, &limits)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("tokenizer.json") && err.contains("symbolic link"),
                "{err}"
            );
        }
    }
}

//! A checkpoint's files as they arrive (loose files, a tar archive, a folder on disk) and the
//! rules for their names: which files a checkpoint keeps, which it ignores (a Hub folder's side
//! files, sub-folders, PyTorch weights) and which it refuses (links, `..`, absolute paths,
//! devices).
//!
//! Nothing is ever held whole in memory: an upload or archive is written file by file, as it
//! arrives, into a temporary folder `models/uploads/.tmp-<uuid>/` ([`Staging`]) with the size
//! limit enforced while writing; a folder on disk is read where it is
//! ([`CheckpointFiles::from_dir`]). Validation then reads the files from disk (small JSON files
//! whole, the safetensors files' headers only).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::storage::{TEMP_PREFIX, UPLOADS_DIR};
use super::{AddCheckpointError, CheckpointLimits, CheckpointRejected};
use crate::domain::CheckpointKind;
use crate::ml::chat::CHAT_TEMPLATE_FILE;
use crate::ml::prompt::PROMPT_TEMPLATE_FILE;
pub use crate::ml::weights::INDEX_FILE;

/// The model configuration file (Hugging Face `LlamaConfig` or `BertConfig`).
pub const CONFIG_FILE: &str = "config.json";
/// The tokenizer, in the `tokenizers` crate's JSON format.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Extension of weight files; a checkpoint has one or more (shards).
pub const WEIGHTS_EXTENSION: &str = ".safetensors";
/// Files any checkpoint may carry besides the required ones (and the shard index).
pub const OPTIONAL_FILES: &[&str] = &[
    "generation_config.json",
    "tokenizer_config.json",
    CHAT_TEMPLATE_FILE,
    "special_tokens_map.json",
    "training.json",
];
/// Files only a prover checkpoint may carry: its own prompt template.
pub const PROVER_FILES: &[&str] = &[PROMPT_TEMPLATE_FILE];
/// Files only a verifier checkpoint may carry: what sentence-transformers ships beside a
/// BERT-family encoder. Checked for form (text, JSON), otherwise unused. The slow-tokenizer
/// files transformers saves beside any model (`vocab.json`, `merges.txt`, `spm.model`,
/// `added_tokens.json`) are ignored for every kind: `tokenizer.json` is what is read.
pub const VERIFIER_FILES: &[&str] = &[
    "vocab.txt",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "data_config.json",
];
/// Optional files that hold a JSON array rather than an object.
pub(super) const JSON_ARRAY_FILES: &[&str] = &["modules.json", "data_config.json"];
/// Largest file other than the weights: those are read whole (a Gemma tokenizer.json is
/// about 33 MB), so a huge one would cost as much memory.
pub const MAX_SIDE_FILE_BYTES: u64 = 128 * 1024 * 1024;
/// Trainer state that `Trainer.save_model` writes beside the weights: PyTorch pickles that are
/// not weights, so they never make a checkpoint "PyTorch only".
const TRAINER_STATE: &[&str] = &[
    "training_args.bin",
    "optimizer.pt",
    "optimizer.bin",
    "scheduler.pt",
    "scaler.pt",
];

/// The optional files a checkpoint of `kind` may carry (besides `config.json`,
/// `tokenizer.json`, the weights and their index), so the pages and messages list exactly what
/// is kept.
pub fn optional_files(kind: CheckpointKind) -> Vec<&'static str> {
    let own = match kind {
        CheckpointKind::Prover => PROVER_FILES,
        CheckpointKind::Verifier => VERIFIER_FILES,
    };
    let mut files = own.to_vec();
    files.extend_from_slice(OPTIONAL_FILES);
    files
}
/// Most files (kept or ignored) one upload or archive may hold: a checkpoint folder holds a few
/// dozen, and every name is remembered while the upload arrives.
pub const MAX_FILES: usize = 10_000;
/// Longest accepted file name, in bytes (the common filesystem limit).
const MAX_NAME_BYTES: usize = 255;
/// Read buffer for copying a file to disk.
const COPY_BUFFER_BYTES: usize = 1024 * 1024;

/// Whether `name` is a weights file (`*.safetensors`, with a stem).
pub(super) fn is_weights_file(name: &str) -> bool {
    name.len() > WEIGHTS_EXTENSION.len() && name.ends_with(WEIGHTS_EXTENSION)
}

/// Whether a file name is GGUF weights (llama.cpp), which a prover may have instead of
/// safetensors.
pub(super) fn is_gguf_file(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.len() > ".gguf".len() && lower.ends_with(".gguf")
}

/// Why a file that arrived with a checkpoint was not kept. Ignored files are not stored; the
/// page and the CLI list them, and the checkpoint's metadata records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    /// A hidden file or folder (`.gitattributes`, `.cache/`).
    Hidden,
    /// A sub-folder (`original/`, `1_Pooling/`): a checkpoint is the files of one folder.
    SubFolder,
    /// PyTorch weights (`*.bin`, `*.pt`, `*.pth`); only safetensors are read.
    PyTorchWeights,
    /// GGUF weights (llama.cpp) beside safetensors, or in a verifier: only a prover without
    /// safetensors is read from GGUF.
    Gguf,
    /// A sentencepiece `tokenizer.model`; `tokenizer.json` is what is read.
    SentencePiece,
    /// Used only by the other kind of checkpoint (a verifier's `vocab.txt` in a prover).
    OtherKind,
    /// A `*.safetensors` file that `model.safetensors.index.json` does not list (a Hub Mistral
    /// folder's `consolidated.safetensors`).
    NotInIndex,
    /// Anything else (`LICENSE`, `README.md`, `merges.txt`, `vocab.json`, images, …).
    NotUsed,
}

impl IgnoreReason {
    /// The reason in words, for the page, the CLI and the metadata.
    pub fn describe(self) -> &'static str {
        match self {
            IgnoreReason::Hidden => "hidden",
            IgnoreReason::SubFolder => "a sub-folder",
            IgnoreReason::PyTorchWeights => "PyTorch weights; only safetensors are read",
            IgnoreReason::Gguf => "GGUF weights; read only for a prover that has no safetensors",
            IgnoreReason::SentencePiece => "sentencepiece model; tokenizer.json is used",
            IgnoreReason::OtherKind => "not used by this kind of checkpoint",
            IgnoreReason::NotInIndex => "not listed in model.safetensors.index.json",
            IgnoreReason::NotUsed => "not used here",
        }
    }
}

/// A file (or a whole sub-folder, named with a trailing `/`) that was not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredFile {
    /// The name relative to the checkpoint folder (`LICENSE`, `original/`).
    pub name: String,
    /// Why it was not kept.
    pub reason: IgnoreReason,
}

impl std::fmt::Display for IgnoredFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.reason.describe())
    }
}

/// Whether a top-level file of this name is ignored, and why; `None` for a file a checkpoint
/// of some kind keeps (which kind is settled by validation).
pub fn classify(name: &str) -> Option<IgnoreReason> {
    if name.starts_with('.') {
        return Some(IgnoreReason::Hidden);
    }
    let kept = name == CONFIG_FILE
        || name == TOKENIZER_FILE
        || name == INDEX_FILE
        || is_weights_file(name)
        || is_gguf_file(name)
        || OPTIONAL_FILES.contains(&name)
        || PROVER_FILES.contains(&name)
        || VERIFIER_FILES.contains(&name);
    if kept {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    let pickle = [".bin", ".pt", ".pth", ".ckpt"]
        .iter()
        .any(|ext| lower.ends_with(ext));
    Some(if pickle {
        if TRAINER_STATE.contains(&lower.as_str()) || lower.starts_with("rng_state") {
            IgnoreReason::NotUsed
        } else {
            IgnoreReason::PyTorchWeights
        }
    } else if name == "tokenizer.model" {
        IgnoreReason::SentencePiece
    } else {
        IgnoreReason::NotUsed
    })
}

/// One kept file: its plain name, size and SHA-256 (hex; computed while it was written, or by
/// validation for a folder read in place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptFile {
    /// Plain file name.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the contents, lower-case hex, once known.
    pub sha256: Option<String>,
}

/// The files of a checkpoint before validation, on disk: either a temporary folder this
/// process wrote ([`Staging::finish`]; removed when this is dropped, unless it was stored), or
/// a folder read in place ([`CheckpointFiles::from_dir`]; never modified).
#[derive(Debug)]
pub struct CheckpointFiles {
    dir: PathBuf,
    staged: bool,
    files: Vec<KeptFile>,
    ignored: Vec<IgnoredFile>,
}

impl Drop for CheckpointFiles {
    fn drop(&mut self) {
        if self.staged {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl CheckpointFiles {
    /// The folder the kept files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The kept files, sorted by name.
    pub fn files(&self) -> &[KeptFile] {
        &self.files
    }

    /// What was not kept, in the order it was met.
    pub fn ignored(&self) -> &[IgnoredFile] {
        &self.ignored
    }

    /// Whether a kept file of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.files.iter().any(|f| f.name == name)
    }

    /// Number of kept files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no file was kept.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Total size of the kept files, in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// Whether the files are in a temporary folder of this process (an upload or archive)
    /// rather than a folder read in place.
    pub fn is_staged(&self) -> bool {
        self.staged
    }

    /// The path of a kept file.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Opens a kept file for reading, refusing it if something else was put in its place.
    pub(super) fn open(&self, name: &str) -> Result<File, CheckpointRejected> {
        let path = self.path(name);
        open_regular(&path).map_err(|e| {
            CheckpointRejected::Unreadable(format!("{} cannot be read: {e}", path.display()))
        })
    }

    /// A kept file other than the weights, whole (they are capped at [`MAX_SIDE_FILE_BYTES`]).
    pub(super) fn read_small(&self, name: &str) -> Result<Vec<u8>, CheckpointRejected> {
        let file = self.open(name)?;
        let mut bytes = Vec::new();
        file.take(MAX_SIDE_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| CheckpointRejected::Unreadable(format!("{name} cannot be read: {e}")))?;
        if bytes.len() as u64 > MAX_SIDE_FILE_BYTES {
            return Err(CheckpointRejected::FileTooLarge {
                name: name.to_string(),
                limit: MAX_SIDE_FILE_BYTES,
            });
        }
        Ok(bytes)
    }

    /// Stops keeping a file: lists it as ignored and, in a temporary folder, deletes it.
    pub(super) fn ignore(
        &mut self,
        name: &str,
        reason: IgnoreReason,
    ) -> Result<(), CheckpointRejected> {
        self.files.retain(|f| f.name != name);
        if self.staged {
            fs::remove_file(self.path(name)).map_err(|e| {
                CheckpointRejected::Unreadable(format!("{name} cannot be removed: {e}"))
            })?;
        }
        self.ignored.push(IgnoredFile {
            name: name.to_string(),
            reason,
        });
        Ok(())
    }

    /// Computes the SHA-256 of every kept file whose digest is not known yet (a folder read
    /// in place), reading each once in blocks.
    pub(super) fn compute_digests(&mut self) -> Result<(), CheckpointRejected> {
        let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
        for index in 0..self.files.len() {
            if self.files[index].sha256.is_some() {
                continue;
            }
            let name = self.files[index].name.clone();
            let mut file = self.open(&name)?;
            let mut hasher = Sha256::new();
            loop {
                let n = match file.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(CheckpointRejected::Unreadable(format!(
                            "{name} cannot be read: {e}"
                        )));
                    }
                };
                hasher.update(&buffer[..n]);
            }
            self.files[index].sha256 = Some(hex(&hasher.finalize()));
        }
        Ok(())
    }

    /// After the temporary folder was renamed into place: nothing to remove any more.
    pub(super) fn mark_stored(&mut self) {
        self.staged = false;
    }

    /// A checkpoint folder on disk (the CLI), read where it is: nothing is copied here. The
    /// folder holds the files directly, or holds exactly one folder that does (the same rule
    /// as for archives). Files a checkpoint keeps must be regular files (a symbolic link or
    /// device among them is refused, naming it); everything else, sub-folders and hidden
    /// entries included, is ignored without being opened. The kept files' total is checked
    /// against `limits`.
    pub fn from_dir(path: &Path, limits: &CheckpointLimits) -> Result<Self, CheckpointRejected> {
        let unreadable = |p: &Path, e: io::Error| {
            CheckpointRejected::Unreadable(format!("{} cannot be read: {e}", p.display()))
        };
        let list = |dir: &Path| -> Result<Vec<(String, fs::Metadata)>, CheckpointRejected> {
            let mut out = Vec::new();
            for entry in fs::read_dir(dir).map_err(|e| unreadable(dir, e))? {
                let entry = entry.map_err(|e| unreadable(dir, e))?;
                let name = entry
                    .file_name()
                    .to_str()
                    .map(str::to_string)
                    .ok_or_else(|| CheckpointRejected::BadName {
                        name: entry.path().display().to_string(),
                        reason: "the file name is not valid UTF-8".into(),
                    })?;
                // `DirEntry::metadata` does not follow symbolic links.
                let meta = entry.metadata().map_err(|e| unreadable(&entry.path(), e))?;
                out.push((name, meta));
            }
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        };
        let mut dir = path.to_path_buf();
        let mut entries = list(&dir)?;
        let visible: Vec<&(String, fs::Metadata)> = entries
            .iter()
            .filter(|(n, _)| !n.starts_with('.'))
            .collect();
        if let [(name, meta)] = visible.as_slice()
            && meta.is_dir()
        {
            dir = dir.join(name);
            entries = list(&dir)?;
        }
        if entries.is_empty() {
            return Err(CheckpointRejected::Unreadable(format!(
                "{} holds no files",
                dir.display()
            )));
        }
        let mut files = Vec::new();
        let mut ignored = Vec::new();
        let mut total = 0u64;
        for (name, meta) in entries {
            let reason = if meta.is_dir() {
                Some(if name.starts_with('.') {
                    IgnoreReason::Hidden
                } else {
                    IgnoreReason::SubFolder
                })
            } else {
                classify(&name)
            };
            if let Some(reason) = reason {
                let shown = if meta.is_dir() {
                    format!("{name}/")
                } else {
                    name
                };
                ignored.push(IgnoredFile {
                    name: shown,
                    reason,
                });
                continue;
            }
            let shown = dir.join(&name).display().to_string();
            if meta.file_type().is_symlink() {
                return Err(CheckpointRejected::BadName {
                    name: shown,
                    reason: "is a symbolic link; only regular files are accepted (a Hugging Face cache snapshot is made of links: download with `--local-dir`, or copy it with `cp -rL`)".into(),
                });
            }
            if !meta.is_file() {
                return Err(CheckpointRejected::BadName {
                    name: shown,
                    reason: "is not a regular file".into(),
                });
            }
            check_file_name(&name)?;
            if !is_weights_file(&name) && !is_gguf_file(&name) && meta.len() > MAX_SIDE_FILE_BYTES {
                return Err(CheckpointRejected::FileTooLarge {
                    name,
                    limit: MAX_SIDE_FILE_BYTES,
                });
            }
            total = total.saturating_add(meta.len());
            files.push(KeptFile {
                name,
                bytes: meta.len(),
                sha256: None,
            });
        }
        if total > limits.max_bytes {
            return Err(CheckpointRejected::TooLarge {
                total,
                limit: limits.max_bytes,
            });
        }
        Ok(CheckpointFiles {
            dir,
            staged: false,
            files,
            ignored,
        })
    }
}

/// Opens a regular file without following a symbolic link put in its place since the folder
/// was listed (the file opened must be the one listed).
fn open_regular(path: &Path) -> io::Result<File> {
    let listed = fs::symlink_metadata(path)?;
    if !listed.is_file() {
        return Err(io::Error::other("is not a regular file"));
    }
    let file = File::open(path)?;
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
    Ok(file)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a file that arrived is written while its layout is not settled.
#[derive(Debug)]
struct TopFolder {
    name: String,
    files: Vec<KeptFile>,
}

/// A checkpoint being received file by file into `models/uploads/.tmp-<uuid>/`: each file is
/// written as it arrives (nothing whole in memory), with the size limit enforced while writing
/// (the kept files in total, and [`MAX_SIDE_FILE_BYTES`] for each file other than the
/// weights). Files that are ignored are read past without being written.
///
/// Names may carry folders (archive members; a browser's folder upload sends
/// `folder/config.json`): the checkpoint's files are either at the top level or all inside one
/// top-level folder; anything deeper is a sub-folder and ignored. Since the layout is only
/// known at the end, a file inside a top-level folder is written to a hidden sub-folder of the
/// temporary folder and moved up by [`Staging::finish`] if that folder turns out to be the
/// checkpoint. The temporary folder is removed when a `Staging` is dropped before `finish`.
#[derive(Debug)]
pub struct Staging {
    dir: Option<PathBuf>,
    limits: CheckpointLimits,
    total: u64,
    root: Vec<KeptFile>,
    folders: Vec<TopFolder>,
    /// Ignored names as (path components, reason), in arrival order.
    ignored: Vec<(Vec<String>, IgnoreReason)>,
    seen: HashSet<String>,
    received: usize,
    archive: bool,
    buffer: Vec<u8>,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

impl Staging {
    /// Creates the temporary folder `models_dir/uploads/.tmp-<uuid>/`.
    pub fn new(models_dir: &Path, limits: CheckpointLimits) -> io::Result<Self> {
        let uploads = models_dir.join(UPLOADS_DIR);
        fs::create_dir_all(&uploads)?;
        let dir = uploads.join(format!("{TEMP_PREFIX}{}", Uuid::now_v7()));
        fs::create_dir(&dir)?;
        Ok(Staging {
            dir: Some(dir),
            limits,
            total: 0,
            root: Vec::new(),
            folders: Vec::new(),
            ignored: Vec::new(),
            seen: HashSet::new(),
            received: 0,
            archive: false,
            buffer: Vec::new(),
        })
    }

    /// The temporary folder.
    pub fn dir(&self) -> &Path {
        self.dir.as_deref().unwrap_or(Path::new(""))
    }

    /// Receives one uploaded file as it arrives. `name` is the name the client sent: a plain
    /// name, or a relative path when a folder was uploaded. An archive (`*.tar`) must come
    /// alone: use [`Staging::add_tar`] for it.
    pub fn add(&mut self, name: &str, data: impl Read) -> Result<(), AddCheckpointError> {
        if self.archive {
            return Err(alone(name).into());
        }
        let components = path_components(name)?;
        self.receive(name, components, data, None)
    }

    /// Receives a whole uncompressed tar archive as it arrives. Only regular files are
    /// accepted: symbolic links, hard links, devices, FIFOs and sparse files are refused naming
    /// the member. Member paths must be relative, without `..`, backslashes, NUL or control
    /// characters. Directory entries and pax global headers carry no file and are skipped.
    pub fn add_tar(&mut self, archive: impl Read) -> Result<(), AddCheckpointError> {
        if self.received > 0 {
            return Err(alone("the archive").into());
        }
        self.archive = true;
        let mut archive = tar::Archive::new(archive);
        let entries = archive
            .entries()
            .map_err(|e| CheckpointRejected::Archive(format!("cannot be read: {e}")))?;
        let mut members = 0usize;
        for entry in entries {
            let mut entry = entry.map_err(|e| {
                CheckpointRejected::Archive(format!("cannot be read (corrupt or truncated): {e}"))
            })?;
            let raw = entry.path_bytes().into_owned();
            let member = String::from_utf8_lossy(&raw).into_owned();
            let kind = entry.header().entry_type();
            if kind.is_pax_global_extensions() || kind.is_dir() {
                continue;
            }
            let what = if kind.is_file() || kind.is_contiguous() {
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
                ))
                .into());
            }
            let path = std::str::from_utf8(&raw).map_err(|_| CheckpointRejected::BadName {
                name: member.clone(),
                reason: "the member name is not valid UTF-8".into(),
            })?;
            let components = path_components(path)?;
            let size = entry.header().entry_size().unwrap_or(u64::MAX);
            members += 1;
            let path = path.to_string();
            self.receive(&path, components, &mut entry, Some(size))?;
        }
        if members == 0 {
            return Err(CheckpointRejected::Archive("holds no files".into()).into());
        }
        Ok(())
    }

    /// One file: kept (written) or ignored (read past).
    fn receive(
        &mut self,
        shown: &str,
        components: Vec<String>,
        mut data: impl Read,
        expected: Option<u64>,
    ) -> Result<(), AddCheckpointError> {
        self.received += 1;
        if self.received > MAX_FILES {
            return Err(CheckpointRejected::Unsupported(format!(
                "more than {MAX_FILES} files arrived; a checkpoint folder holds a few dozen (upload the checkpoint's folder, not a folder of many)"
            ))
            .into());
        }
        if !self.seen.insert(components.join("/")) {
            return Err(CheckpointRejected::Duplicate(shown.to_string()).into());
        }
        let ignore = match components.as_slice() {
            [name] => classify(name),
            [top, name] if !top.starts_with('.') => classify(name),
            [top, ..] if top.starts_with('.') => Some(IgnoreReason::Hidden),
            _ => Some(IgnoreReason::SubFolder),
        };
        if let Some(reason) = ignore {
            let read = io::copy(&mut data, &mut io::sink()).map_err(|e| read_failed(shown, e))?;
            check_complete(shown, read, expected)?;
            self.ignored.push((components, reason));
            return Ok(());
        }
        let Some(dir) = self.dir.clone() else {
            return Err(io::Error::other("the upload's temporary folder is gone").into());
        };
        let (name, target) = match components.as_slice() {
            [name] => (name.clone(), dir.join(name)),
            [top, name] => {
                let index = match self.folders.iter().position(|f| &f.name == top) {
                    Some(index) => index,
                    None => {
                        self.folders.push(TopFolder {
                            name: top.clone(),
                            files: Vec::new(),
                        });
                        let index = self.folders.len() - 1;
                        fs::create_dir(dir.join(folder_dir(index)))?;
                        index
                    }
                };
                (name.clone(), dir.join(folder_dir(index)).join(name))
            }
            _ => return Err(io::Error::other("a nested file cannot be kept").into()),
        };
        check_file_name(&name)?;
        let kept = self.write(shown, &name, &target, data)?;
        check_complete(shown, kept.bytes, expected)?;
        match components.as_slice() {
            [_] => self.root.push(kept),
            [top, _] => {
                if let Some(folder) = self.folders.iter_mut().find(|f| &f.name == top) {
                    folder.files.push(kept);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Writes one file, hashing it and enforcing the limits as the bytes arrive.
    fn write(
        &mut self,
        shown: &str,
        name: &str,
        target: &Path,
        mut data: impl Read,
    ) -> Result<KeptFile, AddCheckpointError> {
        let mut file = File::create_new(target)?;
        if self.buffer.is_empty() {
            self.buffer = vec![0u8; COPY_BUFFER_BYTES];
        }
        let side_file = !is_weights_file(name) && !is_gguf_file(name);
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        loop {
            let n = match data.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_failed(shown, e).into()),
            };
            bytes += n as u64;
            self.total = self.total.saturating_add(n as u64);
            if self.total > self.limits.max_bytes {
                return Err(CheckpointRejected::TooLarge {
                    total: self.total,
                    limit: self.limits.max_bytes,
                }
                .into());
            }
            if side_file && bytes > MAX_SIDE_FILE_BYTES {
                return Err(CheckpointRejected::FileTooLarge {
                    name: shown.to_string(),
                    limit: MAX_SIDE_FILE_BYTES,
                }
                .into());
            }
            hasher.update(&self.buffer[..n]);
            file.write_all(&self.buffer[..n])?;
        }
        Ok(KeptFile {
            name: name.to_string(),
            bytes,
            sha256: Some(hex(&hasher.finalize())),
        })
    }

    /// Settles the layout and hands the files over. Files at the top level make the
    /// checkpoint (every folder is then a sub-folder, ignored); otherwise the one top-level
    /// folder holding files to keep is the checkpoint (its own sub-folders ignored). Two
    /// top-level folders that both hold such files are refused: which one is the checkpoint?
    pub fn finish(mut self) -> Result<CheckpointFiles, AddCheckpointError> {
        let Some(dir) = self.dir.clone() else {
            return Err(io::Error::other("the upload's temporary folder is gone").into());
        };
        let with_files: Vec<usize> = (0..self.folders.len())
            .filter(|&i| !self.folders[i].files.is_empty())
            .collect();
        let wrapper = if !self.root.is_empty() {
            None
        } else {
            match with_files.as_slice() {
                [] => None,
                [one] => Some(*one),
                [first, second, ..] => {
                    let first = &self.folders[*first];
                    let second = &self.folders[*second];
                    return Err(CheckpointRejected::BadName {
                        name: format!("{}/{}", second.name, second.files[0].name),
                        reason: format!(
                            "is in a second top-level folder (the first is {:?}); files must be at the top level or inside one folder",
                            first.name
                        ),
                    }
                    .into());
                }
            }
        };
        let mut files = std::mem::take(&mut self.root);
        if let Some(index) = wrapper {
            let from = dir.join(folder_dir(index));
            for file in std::mem::take(&mut self.folders[index].files) {
                fs::rename(from.join(&file.name), dir.join(&file.name))?;
                files.push(file);
            }
        }
        let mut ignored: Vec<IgnoredFile> = Vec::new();
        let mut note = |name: String, reason: IgnoreReason| {
            if !ignored.iter().any(|i| i.name == name) {
                ignored.push(IgnoredFile { name, reason });
            }
        };
        let wrapper_name = wrapper.map(|i| self.folders[i].name.clone());
        // Files kept in a folder that turned out to be a sub-folder are ignored with it.
        let mut arrivals: Vec<(Vec<String>, IgnoreReason)> = std::mem::take(&mut self.ignored);
        for (index, folder) in self.folders.iter().enumerate() {
            if Some(index) != wrapper {
                for file in &folder.files {
                    arrivals.push((
                        vec![folder.name.clone(), file.name.clone()],
                        IgnoreReason::SubFolder,
                    ));
                }
            }
        }
        for (components, reason) in arrivals {
            let inner: &[String] = match (&wrapper_name, components.split_first()) {
                (Some(w), Some((top, rest))) if top == w => rest,
                _ => &components,
            };
            match inner {
                [name] => note(name.clone(), reason),
                [folder, ..] => {
                    let reason = if folder.starts_with('.') {
                        IgnoreReason::Hidden
                    } else {
                        IgnoreReason::SubFolder
                    };
                    note(format!("{folder}/"), reason);
                }
                [] => {}
            }
        }
        for index in 0..self.folders.len() {
            let folder = dir.join(folder_dir(index));
            if folder.exists() {
                fs::remove_dir_all(folder)?;
            }
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        self.dir = None;
        Ok(CheckpointFiles {
            dir,
            staged: true,
            files,
            ignored,
        })
    }
}

/// The hidden sub-folder of a staging folder that holds the files of top-level folder `index`.
fn folder_dir(index: usize) -> String {
    format!(".folder-{index}")
}

fn alone(name: &str) -> CheckpointRejected {
    CheckpointRejected::BadName {
        name: name.to_string(),
        reason: "upload either one .tar archive or the checkpoint's files, not both".into(),
    }
}

fn read_failed(name: &str, e: io::Error) -> CheckpointRejected {
    CheckpointRejected::Unreadable(format!("{name} cannot be read (cut off or corrupt): {e}"))
}

/// An archive member must hold as many bytes as its header says.
fn check_complete(name: &str, read: u64, expected: Option<u64>) -> Result<(), CheckpointRejected> {
    match expected {
        Some(size) if size != read => Err(CheckpointRejected::Archive(format!(
            "member {name:?} is truncated ({read} of {size} bytes)"
        ))),
        _ => Ok(()),
    }
}

/// The components of a relative path (an archive member, an uploaded file's name), refusing
/// anything that could escape the checkpoint folder or be read differently elsewhere. Empty
/// and `.` components are dropped.
fn path_components(path: &str) -> Result<Vec<String>, CheckpointRejected> {
    let bad = |reason: &str| CheckpointRejected::BadName {
        name: path.to_string(),
        reason: reason.to_string(),
    };
    if path.contains('\0') {
        return Err(bad("the name contains a NUL byte"));
    }
    if path.chars().any(char::is_control) {
        return Err(bad("the name contains control characters"));
    }
    if path.contains('\\') {
        return Err(bad("the name contains a backslash"));
    }
    if path.starts_with('/') {
        return Err(bad("absolute paths are refused"));
    }
    let mut out = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(bad("paths with a \"..\" component are refused")),
            other => out.push(other.to_string()),
        }
    }
    if out.is_empty() {
        return Err(bad("the name has no file name"));
    }
    Ok(out)
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

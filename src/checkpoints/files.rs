//! A checkpoint's files as they arrive (loose files, a tar archive, a folder on disk) and the
//! rules for their names: which files a checkpoint of each kind may carry.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

use super::{CheckpointLimits, CheckpointRejected};
use crate::domain::CheckpointKind;
use crate::ml::chat::CHAT_TEMPLATE_FILE;
use crate::ml::prompt::PROMPT_TEMPLATE_FILE;

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
    CHAT_TEMPLATE_FILE,
    "special_tokens_map.json",
    "README.md",
    "training.json",
];
/// Files only a prover checkpoint may carry: its own prompt template.
pub const PROVER_FILES: &[&str] = &[PROMPT_TEMPLATE_FILE];
/// Files only a verifier checkpoint may carry: what sentence-transformers ships beside a
/// BERT-family encoder, and the slow-tokenizer files transformers 4.x saves beside a RoBERTa
/// (`vocab.json`, `merges.txt`) or DeBERTa (`spm.model`, `added_tokens.json`) reward model.
/// Checked for form (text, JSON), otherwise unused: `tokenizer.json` is what is read.
pub const VERIFIER_FILES: &[&str] = &[
    "vocab.txt",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "data_config.json",
    "vocab.json",
    "merges.txt",
    "spm.model",
    "added_tokens.json",
];
/// Optional files that hold a JSON array rather than an object.
pub(super) const JSON_ARRAY_FILES: &[&str] = &["modules.json", "data_config.json"];

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
/// Longest accepted file name, in bytes (the common filesystem limit).
const MAX_NAME_BYTES: usize = 255;

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

    /// The files, owned.
    pub(crate) fn into_files(self) -> Vec<(String, Vec<u8>)> {
        self.files
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

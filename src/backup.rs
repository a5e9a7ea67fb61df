//! Backups a lab can rely on: judgements are paid for and cannot be collected twice.
//!
//! A backup is a folder: the database snapshot (see [`crate::store::backup`]), the checkpoint
//! files its rows refer to under `models/`, and `manifest.json` with every file's size and
//! SHA-256. It is written beside its destination and renamed into place, so a folder with a
//! manifest is a complete backup. A restore checks every checksum before it writes anything,
//! refuses a target that holds data, and puts the database in place in one step.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::store::backup::DatabaseSnapshot;
use crate::store::{Store, StoreError};

/// The manifest's file name inside a backup folder.
pub const MANIFEST: &str = "manifest.json";
/// Where a backup keeps checkpoint files (paths below it are relative to the models folder).
pub const MODELS: &str = "models";
/// The manifest's format; a restore refuses formats it does not know.
pub const FORMAT: &str = "legibility-backup/1";
/// Scheduled backups' folder names start with this (and sort by time).
pub const SCHEDULED_PREFIX: &str = "legibility-";

/// Errors of backup and restore, in the operator's words.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The request cannot be carried out as asked (non-empty target, damaged backup, …).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

/// One file of a backup, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileEntry {
    /// Relative to the backup folder, `/`-separated.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// `manifest.json`: what a backup holds and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: String,
    /// The release that wrote it.
    pub legibility_version: String,
    pub created_at_ms: i64,
    pub database: DatabaseSnapshot,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Rows of one table in the snapshot (0 if absent).
    pub fn rows(&self, table: &str) -> i64 {
        self.database
            .tables
            .iter()
            .find(|t| t.name == table)
            .map_or(0, |t| t.rows)
    }
}

/// Writes a backup of the running database and its checkpoint files to `dest`, which must not
/// exist or be an empty folder.
pub async fn backup(
    store: &Store,
    models_dir: &Path,
    dest: &Path,
    now_ms: i64,
) -> Result<Manifest, BackupError> {
    if let Ok(mut entries) = std::fs::read_dir(dest) {
        if entries.next().is_some() {
            return Err(BackupError::Refused(format!(
                "{} is not empty: back up into a new folder",
                dest.display()
            )));
        }
    } else if dest.exists() {
        return Err(BackupError::Refused(format!(
            "{} exists and is not a folder",
            dest.display()
        )));
    }
    let partial = sibling(dest, "partial")?;
    std::fs::create_dir_all(&partial).map_err(io(format!("creating {}", partial.display())))?;
    let written = write_backup(store, models_dir, &partial, now_ms).await;
    let placed = written.and_then(|manifest| {
        if dest.exists() {
            std::fs::remove_dir(dest).map_err(io(format!("replacing {}", dest.display())))?;
        }
        std::fs::rename(&partial, dest).map_err(io(format!("renaming into {}", dest.display())))?;
        sync_dir(dest.parent());
        Ok(manifest)
    });
    if placed.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    placed
}

async fn write_backup(
    store: &Store,
    models_dir: &Path,
    folder: &Path,
    now_ms: i64,
) -> Result<Manifest, BackupError> {
    let database = store.snapshot_into(folder).await?;
    let models_dir = models_dir.to_path_buf();
    let folder = folder.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut files = Vec::new();
        // Checkpoint files are written once (uploads and training outputs land by rename) and
        // never changed, so copying them after the snapshot copies what its rows refer to.
        for model_dir in &database.model_dirs {
            let rel = safe_relative(model_dir)?;
            let source = models_dir.join(&rel);
            if !source.is_dir() {
                return Err(BackupError::Refused(format!(
                    "the checkpoint folder {} that the database refers to is missing: run the \
                     backup with the --models-dir the server uses",
                    source.display()
                )));
            }
            for file in files_below(&source)? {
                let inner = file
                    .strip_prefix(&models_dir)
                    .unwrap_or(&file)
                    .to_path_buf();
                let path = Path::new(MODELS).join(&inner);
                let target = folder.join(&path);
                let (bytes, sha256) = copy_hashing(&file, &target)?;
                files.push(FileEntry {
                    path: slash_path(&path),
                    bytes,
                    sha256,
                });
            }
        }
        for file in files_below(&folder)? {
            let path = file.strip_prefix(&folder).unwrap_or(&file).to_path_buf();
            if path.starts_with(MODELS) {
                continue;
            }
            let (bytes, sha256) = hash_file(&file)?;
            files.push(FileEntry {
                path: slash_path(&path),
                bytes,
                sha256,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let manifest = Manifest {
            format: FORMAT.into(),
            legibility_version: env!("CARGO_PKG_VERSION").into(),
            created_at_ms: now_ms,
            database,
            files,
        };
        let text = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| BackupError::Refused(format!("writing the manifest: {e}")))?;
        let path = folder.join(MANIFEST);
        let mut out =
            std::fs::File::create(&path).map_err(io(format!("writing {}", path.display())))?;
        out.write_all(&text)
            .and_then(|()| out.sync_all())
            .map_err(io(format!("writing {}", path.display())))?;
        sync_dir(Some(&folder));
        Ok(manifest)
    })
    .await
    .map_err(|e| BackupError::Refused(format!("the backup task failed: {e}")))?
}

/// Reads `manifest.json` of the backup at `src` and checks every file against it.
pub fn verify(src: &Path) -> Result<Manifest, BackupError> {
    let path = src.join(MANIFEST);
    let text = std::fs::read(&path).map_err(|e| {
        BackupError::Refused(format!(
            "{} is not a Legibility Lab backup (no readable {MANIFEST}: {e})",
            src.display()
        ))
    })?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| BackupError::Refused(format!("{} is damaged: {e}", path.display())))?;
    if manifest.format != FORMAT {
        return Err(BackupError::Refused(format!(
            "the backup's format is {:?}; this release reads {FORMAT:?}",
            manifest.format
        )));
    }
    for entry in &manifest.files {
        let file = src.join(safe_relative(&entry.path)?);
        let found = hash_file(&file);
        match found {
            Ok((bytes, sha256)) if bytes == entry.bytes && sha256 == entry.sha256 => {}
            Ok(_) => {
                return Err(BackupError::Refused(format!(
                    "the backup is damaged: {} does not match its checksum in {MANIFEST}",
                    entry.path
                )));
            }
            Err(_) => {
                return Err(BackupError::Refused(format!(
                    "the backup is incomplete: {} is missing",
                    entry.path
                )));
            }
        }
    }
    Ok(manifest)
}

/// Restores the backup at `src` into the empty database at `database_url` and its checkpoint
/// files into `models_dir` (files already there must be identical).
pub async fn restore(
    database_url: &str,
    models_dir: &Path,
    src: &Path,
) -> Result<Manifest, BackupError> {
    let manifest = {
        let src = src.to_path_buf();
        tokio::task::spawn_blocking(move || verify(&src))
            .await
            .map_err(|e| BackupError::Refused(format!("the restore task failed: {e}")))??
    };
    // Checkpoint files are staged inside the models folder first (same file system, so the
    // final renames cannot fail half-way for lack of space) and put in place once the database
    // is restored; a refused or failed restore removes the staging folder.
    let staging = sibling(&models_dir.join("restore"), "staging")?;
    let staged = stage_models(&manifest, src, models_dir, &staging);
    let result = match staged {
        Ok(moves) => {
            match crate::store::backup::restore_snapshot(database_url, src, &manifest.database)
                .await
            {
                Ok(()) => place(&moves),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_dir_all(&staging);
    result.map(|()| manifest)
}

/// Copies the backup's checkpoint files that the models folder lacks into `staging`; returns
/// (staged, final) paths. Refuses if a file there differs from the backup's.
fn stage_models(
    manifest: &Manifest,
    src: &Path,
    models_dir: &Path,
    staging: &Path,
) -> Result<Vec<(PathBuf, PathBuf)>, BackupError> {
    let mut moves = Vec::new();
    for entry in &manifest.files {
        let rel = safe_relative(&entry.path)?;
        let Ok(inner) = rel.strip_prefix(MODELS) else {
            continue;
        };
        let target = models_dir.join(inner);
        if target.exists() {
            let (bytes, sha256) = hash_file(&target)?;
            if bytes == entry.bytes && sha256 == entry.sha256 {
                continue;
            }
            return Err(BackupError::Refused(format!(
                "{} already exists and differs from the backup's copy: restore into an empty \
                 models folder (--models-dir)",
                target.display()
            )));
        }
        let staged = staging.join(inner);
        copy_hashing(&src.join(&rel), &staged)?;
        moves.push((staged, target));
    }
    Ok(moves)
}

fn place(moves: &[(PathBuf, PathBuf)]) -> Result<(), BackupError> {
    for (staged, target) in moves {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        std::fs::rename(staged, target).map_err(io(format!("placing {}", target.display())))?;
    }
    Ok(())
}

/// Backs up into `folder/legibility-<UTC time>` and removes the oldest scheduled backups
/// beyond `keep`; returns the new backup's folder.
pub async fn scheduled_backup(
    store: &Store,
    models_dir: &Path,
    folder: &Path,
    keep: usize,
    now_ms: i64,
) -> Result<PathBuf, BackupError> {
    std::fs::create_dir_all(folder).map_err(io(format!("creating {}", folder.display())))?;
    let dest = folder.join(scheduled_name(now_ms));
    backup(store, models_dir, &dest, now_ms).await?;
    let mut existing: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(io(format!("listing {}", folder.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(SCHEDULED_PREFIX))
                && p.join(MANIFEST).is_file()
        })
        .collect();
    existing.sort();
    let surplus = existing.len().saturating_sub(keep.max(1));
    for old in &existing[..surplus] {
        std::fs::remove_dir_all(old).map_err(io(format!("removing {}", old.display())))?;
    }
    Ok(dest)
}

/// `legibility-20261207T143000Z`-style names, which sort by time.
pub fn scheduled_name(now_ms: i64) -> String {
    let stamp = time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .ok()
        .map(|t| {
            format!(
                "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_else(|| now_ms.to_string());
    format!("{SCHEDULED_PREFIX}{stamp}")
}

/// A fresh name beside `path` (same file system, so a rename is atomic), hidden by a dot.
fn sibling(path: &Path, what: &str) -> Result<PathBuf, BackupError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| BackupError::Refused(format!("{} has no folder name", path.display())))?;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    Ok(path.with_file_name(format!(".{name}.{what}-{}", &unique[..12])))
}

/// A manifest or database path as a relative path that stays inside its folder.
fn safe_relative(path: &str) -> Result<PathBuf, BackupError> {
    let rel = PathBuf::from(path);
    if path.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(BackupError::Refused(format!(
            "{path:?} is not a path inside the folder"
        )));
    }
    Ok(rel)
}

fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Every file below `dir`, recursively, in name order.
fn files_below(dir: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(format!("listing {}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(files_below(&path)?);
        } else if path.is_file() {
            out.push(path);
        }
    }
    Ok(out)
}

/// Copies `from` to `to` (creating folders, syncing the copy) and returns its size and SHA-256.
fn copy_hashing(from: &Path, to: &Path) -> Result<(u64, String), BackupError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    let mut output = std::fs::File::create(to).map_err(io(format!("writing {}", to.display())))?;
    let hashed = read_hashing(from, |chunk| {
        output
            .write_all(chunk)
            .map_err(io(format!("writing {}", to.display())))
    })?;
    output
        .sync_all()
        .map_err(io(format!("writing {}", to.display())))?;
    Ok(hashed)
}

/// The size and SHA-256 of a file.
fn hash_file(file: &Path) -> Result<(u64, String), BackupError> {
    read_hashing(file, |_| Ok(()))
}

/// Reads `file` in chunks, handing each to `each`; returns its size and SHA-256.
fn read_hashing(
    file: &Path,
    mut each: impl FnMut(&[u8]) -> Result<(), BackupError>,
) -> Result<(u64, String), BackupError> {
    let mut input = std::fs::File::open(file).map_err(io(format!("reading {}", file.display())))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = input
            .read(&mut buffer)
            .map_err(io(format!("reading {}", file.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        each(&buffer[..n])?;
        bytes += n as u64;
    }
    Ok((bytes, hex(&hasher.finalize())))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes a rename or a new file in `dir` durable (best effort: not every platform can).
fn sync_dir(dir: Option<&Path>) {
    if let Some(dir) = dir.filter(|d| !d.as_os_str().is_empty())
        && let Ok(handle) = std::fs::File::open(dir)
    {
        let _ = handle.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_names_sort_by_time() {
        assert_eq!(
            scheduled_name(1_796_657_400_000),
            "legibility-20261207T153000Z"
        );
        assert!(scheduled_name(1_000) < scheduled_name(2_000_000));
    }

    #[test]
    fn manifest_paths_stay_inside_the_backup() {
        assert!(safe_relative("models/uploads/x/config.json").is_ok());
        for bad in ["", "../etc/passwd", "/etc/passwd", "models/../../x"] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
    }
}

//! The models folder's layout and atomic storage: uploaded checkpoints under `uploads/`,
//! verifier versions under `verifiers/`, training runs under `runs/`; each written to a
//! `.tmp-…` folder, synced and renamed, with a start-up sweep of what a crash left behind.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::files::{CheckpointFiles, KeptFile, check_file_name};
use super::validate::ValidatedCheckpoint;

/// Folder under the models directory that holds uploaded checkpoints.
pub const UPLOADS_DIR: &str = "uploads";
/// Prefix of the temporary folders a checkpoint is written into before its rename.
pub const TEMP_PREFIX: &str = ".tmp-";
/// Temp folders younger than this are left alone by the start-up sweep: another app instance
/// sharing the models directory may be writing them right now.
pub const TEMP_DIR_GRACE: Duration = Duration::from_secs(60 * 60);

/// Folder under the models directory that holds trained verifier versions.
pub const VERIFIERS_DIR: &str = "verifiers";
/// Folder under the models directory that holds training runs (one folder per job).
pub const RUNS_DIR: &str = "runs";

/// Writes a validated checkpoint to `models_dir/uploads/<uuid>` atomically and returns that
/// folder relative to `models_dir` (`uploads/<uuid>`, with `/` on every platform). An upload
/// already received into `uploads/.tmp-<uuid>` (see [`super::Staging`]) is synced and renamed
/// in place; files read from a folder elsewhere are copied to `uploads/.tmp-<uuid>` first
/// (checked against the SHA-256 validation recorded, so a file changed meanwhile is not
/// stored), synced, and renamed. The parent is synced after the rename. On any error the temp
/// folder (or the renamed folder) is removed.
pub fn store_checkpoint(
    models_dir: &Path,
    checkpoint: &mut ValidatedCheckpoint,
) -> io::Result<String> {
    let uploads = models_dir.join(UPLOADS_DIR);
    fs::create_dir_all(&uploads)?;
    let id = Uuid::now_v7();
    let target = uploads.join(id.to_string());
    let files = &mut checkpoint.files;
    let in_uploads = files.is_staged()
        && match files.dir().parent() {
            Some(parent) => fs::canonicalize(parent)? == fs::canonicalize(&uploads)?,
            None => false,
        };
    let temp = if in_uploads {
        files.dir().to_path_buf()
    } else {
        uploads.join(format!("{TEMP_PREFIX}{id}"))
    };
    let mut renamed = false;
    let result = (|| {
        if in_uploads {
            for file in files.files() {
                File::open(files.path(&file.name))?.sync_all()?;
            }
        } else {
            fs::create_dir(&temp)?;
            for file in files.files() {
                copy_checked(files, file, &temp.join(&file.name))?;
            }
        }
        sync_dir(&temp)?;
        fs::rename(&temp, &target)?;
        renamed = true;
        if in_uploads {
            files.mark_stored();
        }
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

/// Copies one kept file, hashing it on the way: a file that no longer matches what was
/// validated is not stored.
fn copy_checked(files: &CheckpointFiles, file: &KeptFile, to: &Path) -> io::Result<()> {
    let mut source = files
        .open(&file.name)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut out = File::create_new(to)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1024 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n])?;
        bytes += n as u64;
    }
    let sha: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if bytes != file.bytes || file.sha256.as_deref().is_some_and(|known| known != sha) {
        return Err(io::Error::other(format!(
            "{} changed while the checkpoint was being stored",
            file.name
        )));
    }
    out.sync_all()
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
    for folder in [UPLOADS_DIR, VERIFIERS_DIR] {
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

/// Removes temp folders a crash during a checkpoint upload (or a verifier training run) left
/// behind, at the start-up of `serve` and of a worker; young ones are kept: another instance
/// may be writing them. Failures are logged, not fatal.
pub fn sweep_at_start(models_dir: &Path) {
    match sweep_temp_dirs(models_dir, TEMP_DIR_GRACE) {
        Ok(0) => {}
        Ok(removed) => tracing::info!(
            removed,
            models_dir = %models_dir.display(),
            "removed temp folders of interrupted checkpoint uploads and verifier training runs"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            models_dir = %models_dir.display(),
            "could not sweep temp folders of interrupted checkpoint uploads"
        ),
    }
}

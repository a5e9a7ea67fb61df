//! Checkpoints backed by model files: registering an uploaded checkpoint, finding its folder,
//! and the listing the admin checkpoint page shows. The files themselves live under the models
//! directory (see `checkpoints`); the row records the folder relative to it (`model_dir`, NULL
//! for checkpoints that only label imported solutions), or an absolute path for a folder
//! registered in place (`legibility checkpoint add --in-place`), which the loaders' `join`
//! leaves as it is.

use uuid::Uuid;

use super::{Store, StoreError, StoreResult, dispatch, insert_model_checkpoint};
use crate::domain::{CheckpointKind, parse_stored};

/// Longest accepted checkpoint label, in characters.
pub const MAX_LABEL_CHARS: usize = 200;

/// A checkpoint with where its files are, for the admin checkpoint page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointDetails {
    /// Stable id.
    pub id: Uuid,
    /// Prover or verifier.
    pub kind: CheckpointKind,
    /// Unique label.
    pub label: String,
    /// Training round (0 = initial).
    pub round: i64,
    /// Folder of its model files relative to the models directory (absolute when registered
    /// in place); `None` for import-only checkpoints.
    pub model_dir: Option<String>,
    /// Solutions written by it.
    pub solutions: i64,
    /// When it was registered (Unix ms).
    pub created_at: i64,
}

/// The trimmed label, or why the label or round cannot be registered. Checked before any
/// files are written, so a bad form field costs nothing.
pub fn check_checkpoint_label(label: &str, round: i64) -> StoreResult<String> {
    let label = label.trim();
    if label.is_empty() {
        return Err(StoreError::Invalid("the checkpoint needs a label".into()));
    }
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err(StoreError::Invalid(format!(
            "the checkpoint label is longer than {MAX_LABEL_CHARS} characters"
        )));
    }
    if label.chars().any(char::is_control) {
        return Err(StoreError::Invalid(
            "the checkpoint label contains control characters".into(),
        ));
    }
    if round < 0 {
        return Err(StoreError::Invalid(format!(
            "the round must be 0 or more, not {round}"
        )));
    }
    Ok(label.to_string())
}

/// The refusal of a checkpoint whose label another checkpoint has.
pub(crate) fn label_taken(label: &str) -> StoreError {
    StoreError::Conflict(format!("a checkpoint labelled {label:?} already exists"))
}

impl Store {
    /// Registers a checkpoint whose files are stored in `model_dir` (relative to the models
    /// directory). Labels are unique: a taken label is a [`StoreError::Conflict`] naming it, and
    /// nothing is written.
    pub async fn register_model_checkpoint(
        &self,
        kind: CheckpointKind,
        label: &str,
        round: i64,
        model_dir: &str,
        metadata: serde_json::Value,
        now: i64,
    ) -> StoreResult<Uuid> {
        let label = check_checkpoint_label(label, round)?;
        let id = Uuid::now_v7();
        let inserted = dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let inserted =
                insert_model_checkpoint!(tx, id, kind, &label, round, metadata, now, model_dir);
            tx.commit().await?;
            inserted
        });
        if !inserted {
            return Err(label_taken(&label));
        }
        Ok(id)
    }

    /// The folder of a checkpoint's model files relative to the models directory; `None` for
    /// an import-only checkpoint, [`StoreError::NotFound`] for an unknown id.
    pub async fn checkpoint_model_dir(&self, id: Uuid) -> StoreResult<Option<String>> {
        let row: Option<(Option<String>,)> = dispatch!(self, pool, _b => {
            sqlx::query_as("SELECT model_dir FROM checkpoints WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.map(|(dir,)| dir)
            .ok_or(StoreError::NotFound("checkpoint"))
    }

    /// The metadata recorded with a checkpoint (files, what was ignored, architecture, …);
    /// [`StoreError::NotFound`] for an unknown id.
    pub async fn checkpoint_metadata(&self, id: Uuid) -> StoreResult<serde_json::Value> {
        let row: Option<(String,)> = dispatch!(self, pool, _b => {
            sqlx::query_as("SELECT metadata FROM checkpoints WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        let (text,) = row.ok_or(StoreError::NotFound("checkpoint"))?;
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// All checkpoints with their model folders, newest first.
    pub async fn checkpoint_details(&self) -> StoreResult<Vec<CheckpointDetails>> {
        type Row = (Uuid, String, String, i64, Option<String>, i64, i64);
        let rows: Vec<Row> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT c.id, c.kind, c.label, c.round, c.model_dir,
                            (SELECT COUNT(*) FROM solutions s WHERE s.checkpoint_id = c.id),
                            c.created_at
                     FROM checkpoints c ORDER BY c.created_at DESC, c.label",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(
                |(id, kind, label, round, model_dir, solutions, created_at)| {
                    Ok(CheckpointDetails {
                        id,
                        kind: parse_stored(&kind)?,
                        label,
                        round,
                        model_dir,
                        solutions,
                        created_at,
                    })
                },
            )
            .collect()
    }
}

//! Admin page for model checkpoints: the list (with where each one's files are) and the
//! checkpoint upload (provers: Llama; verifiers: a Llama body or a BERT-family encoder, with a
//! score head; see [`crate::checkpoints`]). An upload is validated completely, for the kind
//! chosen, before anything is stored; a refusal
//! re-renders the page with the message naming the problem (422 invalid content, 413 over the
//! size limit, 409 duplicate label) and leaves nothing behind.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::multipart::MultipartError;
use axum::extract::{DefaultBodyLimit, Multipart, State};

use super::extract::Query;
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use uuid::Uuid;

use super::session::Admin;
use super::times::Timestamp;
use super::{AppState, WebConfig, WebError};
use crate::checkpoints::{self as upload, AddCheckpointError, CheckpointFiles, CheckpointLimits};
use crate::domain::CheckpointKind;
use crate::store::StoreError;

/// Room for the multipart framing and tar headers on top of the checkpoint's own size, so a
/// checkpoint just under the limit is not cut off by the body limit (validation then checks
/// the files' exact total).
const FORM_OVERHEAD_BYTES: u64 = 1024 * 1024;

/// Routes of the checkpoint page; the upload's body may be as large as the checkpoint limit.
pub fn routes(config: &WebConfig) -> Router<AppState> {
    let limit = usize::try_from(
        config
            .max_checkpoint_bytes
            .saturating_add(FORM_OVERHEAD_BYTES),
    )
    .unwrap_or(usize::MAX);
    Router::new().route(
        "/admin/checkpoints",
        get(checkpoints_page)
            .post(upload_checkpoint)
            .layer(DefaultBodyLimit::max(limit)),
    )
}

/// One row of the checkpoint table.
struct CheckpointRow {
    label: String,
    kind: CheckpointKind,
    round: i64,
    files: Option<String>,
    solutions: i64,
    created: Timestamp,
}

#[derive(Template, WebTemplate)]
#[template(path = "checkpoints.html")]
struct CheckpointsPage {
    username: String,
    is_admin: bool,
    checkpoints: Vec<CheckpointRow>,
    outcome: Option<String>,
    error: Option<String>,
    limit_mib: String,
    label: String,
    round: String,
    /// The kind selected in the form (kept when the page is shown again after a refusal).
    kind: String,
}

impl CheckpointsPage {
    async fn new(state: &AppState, username: String) -> Result<Self, WebError> {
        let checkpoints = state
            .store
            .checkpoint_details()
            .await?
            .into_iter()
            .map(|c| CheckpointRow {
                label: c.label,
                kind: c.kind,
                round: c.round,
                files: c.model_dir,
                solutions: c.solutions,
                created: Timestamp(c.created_at),
            })
            .collect();
        Ok(CheckpointsPage {
            username,
            is_admin: true,
            checkpoints,
            outcome: None,
            error: None,
            limit_mib: format_mib(state.config.max_checkpoint_bytes),
            label: String::new(),
            round: "0".into(),
            kind: CheckpointKind::Prover.to_string(),
        })
    }
}

fn format_mib(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib.fract() == 0.0 {
        format!("{mib:.0} MiB")
    } else {
        format!("{mib:.2} MiB")
    }
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    /// Set after a successful upload (post/redirect/get): the new checkpoint's id.
    added: Option<Uuid>,
}

async fn checkpoints_page(
    State(state): State<AppState>,
    Admin(user): Admin,
    Query(query): Query<PageQuery>,
) -> Result<CheckpointsPage, WebError> {
    let mut page = CheckpointsPage::new(&state, user.username).await?;
    if let Some(added) = query.added
        && let Some(row) = state
            .store
            .checkpoint_details()
            .await?
            .into_iter()
            .find(|c| c.id == added)
    {
        page.outcome = Some(format!(
            "Added {} checkpoint {:?} (round {}); its files are in {}.",
            row.kind,
            row.label,
            row.round,
            row.model_dir.as_deref().unwrap_or("no folder")
        ));
    }
    Ok(page)
}

/// The upload form's fields.
#[derive(Debug, Default)]
struct UploadForm {
    label: String,
    round: String,
    kind: String,
    files: Vec<(String, Vec<u8>)>,
}

/// Why reading the form failed: over the body limit, or malformed.
enum FormError {
    TooLarge,
    Malformed(String),
}

impl From<MultipartError> for FormError {
    fn from(e: MultipartError) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            FormError::TooLarge
        } else {
            FormError::Malformed(e.body_text())
        }
    }
}

async fn read_upload_form(mut multipart: Multipart) -> Result<UploadForm, FormError> {
    let mut form = UploadForm::default();
    while let Some(field) = multipart.next_field().await? {
        match field.name() {
            Some("label") => form.label = field.text().await?,
            Some("round") => form.round = field.text().await?,
            Some("kind") => form.kind = field.text().await?,
            Some("files" | "file") => {
                let name = field.file_name().unwrap_or_default().to_string();
                let bytes = field.bytes().await?;
                // A file input left empty still sends a part without a name or content.
                if name.is_empty() && bytes.is_empty() {
                    continue;
                }
                form.files.push((name, bytes.to_vec()));
            }
            _ => {}
        }
    }
    Ok(form)
}

/// 413 for a checkpoint over the size limit, 422 for invalid content.
fn status_of(rejected: &upload::CheckpointRejected) -> StatusCode {
    if rejected.is_too_large() {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    }
}

/// The page again, with the refusal's message and status.
fn refuse(
    mut page: CheckpointsPage,
    status: StatusCode,
    message: String,
) -> Result<Response, WebError> {
    page.error = Some(message);
    Ok((status, page).into_response())
}

/// Validates, stores and registers an uploaded prover or verifier checkpoint (loose files or
/// one .tar); the form's `kind` decides which rules apply (prover when left out).
async fn upload_checkpoint(
    State(state): State<AppState>,
    Admin(user): Admin,
    multipart: Multipart,
) -> Result<Response, WebError> {
    let limit = state.config.max_checkpoint_bytes;
    let mut page = CheckpointsPage::new(&state, user.username).await?;
    let mut form = match read_upload_form(multipart).await {
        Ok(form) => form,
        Err(FormError::TooLarge) => {
            return refuse(
                page,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "The upload is larger than the limit of {} for a checkpoint; nothing was stored.",
                    format_mib(limit)
                ),
            );
        }
        Err(FormError::Malformed(message)) => return Err(WebError::BadRequest(message)),
    };
    page.label = form.label.clone();
    page.round = form.round.clone();
    page.kind = form.kind.trim().to_string();
    let round = match form.round.trim().parse::<i64>() {
        Ok(round) => round,
        Err(_) => {
            let message = format!("the round must be a whole number, not {:?}", form.round);
            return refuse(page, StatusCode::UNPROCESSABLE_ENTITY, message);
        }
    };
    let kind_text = if form.kind.trim().is_empty() {
        "prover"
    } else {
        form.kind.trim()
    };
    let kind = match kind_text.parse::<CheckpointKind>() {
        Ok(kind) => kind,
        Err(message) => return refuse(page, StatusCode::UNPROCESSABLE_ENTITY, message),
    };
    if form.files.is_empty() {
        return refuse(
            page,
            StatusCode::UNPROCESSABLE_ENTITY,
            "no files were uploaded: choose the checkpoint's files or one .tar archive".into(),
        );
    }
    let mut uploaded = std::mem::take(&mut form.files);
    let single_tar = matches!(uploaded.as_slice(), [(name, _)] if name.ends_with(".tar"));
    let files = if single_tar {
        let (name, bytes) = uploaded.remove(0);
        let unpacked = tokio::task::spawn_blocking(move || CheckpointFiles::from_tar(&bytes))
            .await
            .map_err(|e| WebError::Internal(format!("unpacking an uploaded archive: {e}")))?;
        match unpacked {
            Ok(files) => files,
            Err(rejected) => {
                let status = status_of(&rejected);
                return refuse(page, status, format!("{name}: {rejected}"));
            }
        }
    } else {
        CheckpointFiles::from_files(uploaded)
    };
    let outcome = upload::add_checkpoint(
        &state.store,
        &state.config.models_dir,
        files,
        CheckpointLimits { max_bytes: limit },
        kind,
        &form.label,
        round,
        state.clock.now_ms(),
    )
    .await;
    match outcome {
        Ok(id) => Ok((
            StatusCode::SEE_OTHER,
            [(LOCATION, format!("/admin/checkpoints?added={id}"))],
        )
            .into_response()),
        Err(AddCheckpointError::Rejected(rejected)) => {
            refuse(page, status_of(&rejected), rejected.to_string())
        }
        Err(AddCheckpointError::Store(StoreError::Conflict(message))) => {
            refuse(page, StatusCode::CONFLICT, message)
        }
        Err(AddCheckpointError::Store(StoreError::Invalid(message))) => {
            refuse(page, StatusCode::UNPROCESSABLE_ENTITY, message)
        }
        Err(AddCheckpointError::Store(e)) => Err(e.into()),
        Err(AddCheckpointError::Io(e)) => Err(WebError::Internal(format!(
            "storing an uploaded checkpoint: {e}"
        ))),
    }
}

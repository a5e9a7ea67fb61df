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
use candle_core::quantized::GgmlDType;

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
use std::io::{self, Read};

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_LENGTH;
use futures_core::Stream;
use tokio::sync::mpsc;

use crate::checkpoints::{
    self as upload, AddCheckpointError, CheckpointFiles, CheckpointLimits, CheckpointRejected,
    Staging,
};
use crate::domain::CheckpointKind;
use crate::store::StoreError;

/// Room for the multipart framing and tar headers on top of the checkpoint's own size, so a
/// checkpoint just under the limit is not cut off by the body limit (validation then checks
/// the files' exact total).
const FORM_OVERHEAD_BYTES: u64 = 1024 * 1024;

/// The largest request body the upload route reads: twice the checkpoint limit (files that
/// are ignored, such as a Hub folder's `original/`, are read past but not stored, and do not
/// count against the checkpoint limit itself) plus the form's framing.
fn upload_limit(max_checkpoint_bytes: u64) -> u64 {
    max_checkpoint_bytes
        .saturating_mul(2)
        .saturating_add(FORM_OVERHEAD_BYTES)
}

/// Routes of the checkpoint page; see [`upload_limit`] for the upload's body limit.
pub fn routes(config: &WebConfig) -> Router<AppState> {
    let limit = usize::try_from(upload_limit(config.max_checkpoint_bytes)).unwrap_or(usize::MAX);
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
    /// What the checkpoint just added did not keep: "name (reason)".
    ignored: Vec<String>,
    error: Option<String>,
    limit_mib: String,
    label: String,
    round: String,
    /// The kind selected in the form (kept when the page is shown again after a refusal).
    kind: String,
    /// The quantization selected in the form ("" = as uploaded).
    quantize: String,
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
            ignored: Vec::new(),
            error: None,
            limit_mib: format_mib(state.config.max_checkpoint_bytes),
            label: String::new(),
            round: "0".into(),
            kind: CheckpointKind::Prover.to_string(),
            quantize: String::new(),
        })
    }
}

fn format_mib(bytes: u64) -> String {
    if bytes < 1024 * 1024 {
        return format!("{bytes} bytes");
    }
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
        let metadata = state.store.checkpoint_metadata(added).await?;
        page.ignored = metadata["ignored"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|i| {
                        format!(
                            "{} ({})",
                            i["name"].as_str().unwrap_or_default(),
                            i["reason"].as_str().unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
    }
    Ok(page)
}

/// The upload form's text fields.
#[derive(Debug, Default)]
struct UploadForm {
    label: String,
    round: String,
    kind: String,
    /// "" (store as uploaded) or a quantization name (`Q8_0`).
    quantize: String,
    /// Whether `label` and `round` arrived before the first file (a browser sends the fields
    /// in the form's order), so they are checked before any byte of a file is written.
    checked: bool,
}

impl UploadForm {
    /// The quantization asked for, if any, or why it cannot be used.
    fn quantization(&self) -> Result<Option<GgmlDType>, String> {
        let name = self.quantize.trim();
        if name.is_empty() {
            return Ok(None);
        }
        crate::ml::gguf::parse_quantization(name).map(Some)
    }

    /// The round and kind, or why the form cannot be used (the label is checked too).
    fn check(&self) -> Result<(i64, CheckpointKind), String> {
        self.quantization()?;
        let round = self
            .round
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("the round must be a whole number, not {:?}", self.round))?;
        let kind_text = if self.kind.trim().is_empty() {
            "prover"
        } else {
            self.kind.trim()
        };
        let kind = kind_text.parse::<CheckpointKind>()?;
        crate::store::models::check_checkpoint_label(&self.label, round)
            .map_err(|e| e.to_string())?;
        Ok((round, kind))
    }
}

/// Why the upload was not received.
enum FormError {
    /// The request body is over the route's limit.
    TooLarge,
    /// The multipart body is malformed or was cut off.
    Malformed(String),
    /// A form field is invalid (checked before the files were written).
    Field(String),
    /// The files were refused while they arrived (size, names, archive), or writing failed.
    Files(AddCheckpointError),
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

/// One piece of an uploaded file, on its way from the request to the blocking writer.
enum Part {
    /// A new file starts, with the name the client sent.
    File(String),
    /// The next bytes of the current file.
    Chunk(Bytes),
    /// The current file is complete.
    End,
}

/// How many pieces may wait between the request and the writer: with [`Paced`], the memory an
/// upload holds is a few chunks, whatever its size.
const PARTS_IN_FLIGHT: usize = 4;

/// The current file's bytes as a `Read`, fed from the request through the channel.
struct PartReader<'a> {
    parts: &'a mut mpsc::Receiver<Part>,
    pending: Bytes,
    done: bool,
}

impl Read for PartReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.pending.is_empty() {
                let n = buf.len().min(self.pending.len());
                buf[..n].copy_from_slice(&self.pending.split_to(n));
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            match self.parts.blocking_recv() {
                Some(Part::Chunk(bytes)) => self.pending = bytes,
                Some(Part::End) => self.done = true,
                Some(Part::File(_)) | None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the upload was cut off",
                    ));
                }
            }
        }
    }
}

/// The request body, made to hand over one chunk per poll: the multipart parser reads
/// everything the connection has ready each time it is polled (even for a field it already
/// holds), so without this it could buffer far more than a chunk from a fast client. Between
/// chunks the body yields to the runtime (and is woken again at once).
struct Paced<S> {
    inner: S,
    handed_over: bool,
}

impl<S> Stream for Paced<S>
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.handed_over {
            self.handed_over = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            self.handed_over = true;
        }
        polled
    }
}

/// The blocking side of an upload: writes each file into the staging folder as its pieces
/// arrive (a `.tar` is unpacked as it arrives), then settles the layout.
fn write_parts(
    mut staging: Staging,
    mut parts: mpsc::Receiver<Part>,
) -> Result<CheckpointFiles, AddCheckpointError> {
    while let Some(part) = parts.blocking_recv() {
        let Part::File(name) = part else {
            return Err(io::Error::other("file contents arrived without a file").into());
        };
        let mut reader = PartReader {
            parts: &mut parts,
            pending: Bytes::new(),
            done: false,
        };
        if name.to_ascii_lowercase().ends_with(".tar") {
            staging.add_tar(&mut reader).map_err(|e| match e {
                AddCheckpointError::Rejected(r) if !r.is_too_large() => {
                    AddCheckpointError::Rejected(CheckpointRejected::BadName {
                        name: name.clone(),
                        reason: r.to_string(),
                    })
                }
                other => other,
            })?;
        } else {
            staging.add(&name, &mut reader)?;
        }
        // What an archive leaves after its last member (end blocks, padding).
        io::copy(&mut reader, &mut io::sink())
            .map_err(|e| CheckpointRejected::Unreadable(format!("{name}: {e}")))?;
    }
    staging.finish()
}

/// Receives the form: text fields into `form`, files streamed to a staging folder under the
/// models directory by a blocking writer (nothing whole in memory). `None` when no file was
/// chosen. On any error the staging folder is gone before this returns.
async fn receive_upload(
    state: &AppState,
    mut multipart: Multipart,
    form: &mut UploadForm,
) -> Result<Option<CheckpointFiles>, FormError> {
    type Writer = (
        mpsc::Sender<Part>,
        tokio::task::JoinHandle<Result<CheckpointFiles, AddCheckpointError>>,
    );
    let mut writer: Option<Writer> = None;
    let mut seen = (false, false);
    let read: Result<(), FormError> = async {
        'fields: while let Some(mut field) = multipart.next_field().await? {
            match field.name() {
                Some("label") => {
                    form.label = field.text().await?;
                    seen.0 = true;
                }
                Some("round") => {
                    form.round = field.text().await?;
                    seen.1 = true;
                }
                Some("kind") => form.kind = field.text().await?,
                Some("quantize") => form.quantize = field.text().await?,
                Some("files" | "file") => {
                    let name = field.file_name().unwrap_or_default().to_string();
                    let first = field.chunk().await?;
                    // A file input left empty still sends a part without a name or content.
                    if name.is_empty() && first.as_ref().is_none_or(|b| b.is_empty()) {
                        continue;
                    }
                    if writer.is_none() {
                        if seen == (true, true) {
                            form.check().map_err(FormError::Field)?;
                            form.checked = true;
                        }
                        let models = state.config.models_dir.clone();
                        let limits = CheckpointLimits {
                            max_bytes: state.config.max_checkpoint_bytes,
                        };
                        let staging =
                            tokio::task::spawn_blocking(move || Staging::new(&models, limits))
                                .await
                                .map_err(io::Error::other)
                                .and_then(|r| r)
                                .map_err(|e| FormError::Files(e.into()))?;
                        let (tx, rx) = mpsc::channel(PARTS_IN_FLIGHT);
                        let task = tokio::task::spawn_blocking(move || write_parts(staging, rx));
                        writer = Some((tx, task));
                    }
                    let Some((tx, _)) = writer.as_ref() else {
                        continue;
                    };
                    // A failed send means the writer stopped: its result says why.
                    if tx.send(Part::File(name)).await.is_err() {
                        break 'fields;
                    }
                    if let Some(bytes) = first
                        && tx.send(Part::Chunk(bytes)).await.is_err()
                    {
                        break 'fields;
                    }
                    while let Some(bytes) = field.chunk().await? {
                        if tx.send(Part::Chunk(bytes)).await.is_err() {
                            break 'fields;
                        }
                    }
                    if tx.send(Part::End).await.is_err() {
                        break 'fields;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
    .await;
    let written = match writer {
        Some((tx, task)) => {
            drop(tx);
            Some(task.await.map_err(io::Error::other))
        }
        None => None,
    };
    // The request's own error comes first (the writer only saw the upload stop), unless the
    // writer had already found the checkpoint over its limit: that is the clearer message.
    if let Err(error) = read {
        return match written {
            Some(Ok(Err(AddCheckpointError::Rejected(rejected)))) if rejected.is_too_large() => {
                Err(FormError::Files(rejected.into()))
            }
            Some(Ok(Ok(files))) => {
                upload::discard(files).await;
                Err(error)
            }
            _ => Err(error),
        };
    }
    match written {
        None => Ok(None),
        Some(Ok(Ok(files))) => Ok(Some(files)),
        Some(Ok(Err(e))) => Err(FormError::Files(e)),
        Some(Err(e)) => Err(FormError::Files(e.into())),
    }
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

/// The page again for a refused checkpoint, or the error for a failure that is not a refusal.
fn refuse_added(page: CheckpointsPage, error: AddCheckpointError) -> Result<Response, WebError> {
    match error {
        AddCheckpointError::Rejected(rejected) => {
            refuse(page, status_of(&rejected), rejected.to_string())
        }
        AddCheckpointError::Store(StoreError::Conflict(message)) => {
            refuse(page, StatusCode::CONFLICT, message)
        }
        AddCheckpointError::Store(StoreError::Invalid(message)) => {
            refuse(page, StatusCode::UNPROCESSABLE_ENTITY, message)
        }
        AddCheckpointError::Store(e) if e.is_storage_full() => Err(WebError::StorageFull),
        AddCheckpointError::Store(e) => Err(e.into()),
        AddCheckpointError::Io(e) if e.kind() == io::ErrorKind::StorageFull => {
            tracing::error!(error = %e, "an upload failed: the models folder's disk is full");
            refuse(
                page,
                StatusCode::INSUFFICIENT_STORAGE,
                "the server's disk is full, so the checkpoint was not stored (nothing of it was \
                 kept); free space on the models folder's disk and upload it again"
                    .into(),
            )
        }
        AddCheckpointError::Io(e) => Err(WebError::Internal(format!(
            "storing an uploaded checkpoint: {e}"
        ))),
    }
}

/// Validates, stores and registers an uploaded prover or verifier checkpoint (loose files, a
/// folder, or one .tar); the form's `kind` decides which rules apply (prover when left out).
/// The files are written to disk as they arrive and checked there; nothing is held whole in
/// memory, and a refusal removes whatever was written.
async fn upload_checkpoint(
    State(state): State<AppState>,
    Admin(user): Admin,
    request: Request,
) -> Result<Response, WebError> {
    let limit = state.config.max_checkpoint_bytes;
    let mut page = CheckpointsPage::new(&state, user.username).await?;
    let mut form = UploadForm::default();
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let received = if declared.is_some_and(|n| n > upload_limit(limit)) {
        // Refused from its declared length, before a byte is read.
        Err(FormError::TooLarge)
    } else {
        let paced = Paced {
            inner: body.into_data_stream(),
            handed_over: false,
        };
        let request = Request::from_parts(parts, Body::from_stream(paced));
        let multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| WebError::BadRequest(e.body_text()))?;
        receive_upload(&state, multipart, &mut form).await
    };
    page.label = form.label.clone();
    page.round = form.round.clone();
    page.kind = form.kind.trim().to_string();
    page.quantize = form.quantize.trim().to_string();
    let files = match received {
        Ok(Some(files)) => files,
        Ok(None) => {
            if let Err(message) = form.check() {
                return refuse(page, StatusCode::UNPROCESSABLE_ENTITY, message);
            }
            return refuse(
                page,
                StatusCode::UNPROCESSABLE_ENTITY,
                "no files were uploaded: choose the checkpoint's files, its folder, or one .tar archive".into(),
            );
        }
        Err(FormError::TooLarge) => {
            return refuse(
                page,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "The upload is larger than {}: twice the limit of {} for a checkpoint's files (room for files that are ignored) and the form; nothing was stored. Leave out sub-folders such as original/ and PyTorch .bin files.",
                    format_mib(upload_limit(limit)),
                    format_mib(limit)
                ),
            );
        }
        Err(FormError::Malformed(message)) => return Err(WebError::BadRequest(message)),
        Err(FormError::Field(message)) => {
            return refuse(page, StatusCode::UNPROCESSABLE_ENTITY, message);
        }
        Err(FormError::Files(error)) => return refuse_added(page, error),
    };
    let (round, kind) = match form.check() {
        Ok(checked) => checked,
        Err(message) => {
            upload::discard(files).await;
            return refuse(page, StatusCode::UNPROCESSABLE_ENTITY, message);
        }
    };
    let quantization = form.quantization().unwrap_or(None);
    let outcome = upload::add_checkpoint(
        &state.store,
        &state.config.models_dir,
        files,
        CheckpointLimits { max_bytes: limit },
        quantization,
        kind,
        &form.label,
        round,
        state.clock.now_ms(),
    )
    .await;
    match outcome {
        Ok(added) => Ok((
            StatusCode::SEE_OTHER,
            [(LOCATION, format!("/admin/checkpoints?added={}", added.id))],
        )
            .into_response()),
        Err(error) => refuse_added(page, error),
    }
}

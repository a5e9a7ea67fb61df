//! Admin pages: import problem sets and solutions, invite raters (a list of names or a CSV of
//! names and emails) and revoke their links.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::multipart::MultipartError;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::{ACCEPT, CONTENT_TYPE, HOST};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::extract::{Path, input_problem};
use serde::Deserialize;
use uuid::Uuid;

use super::session::Admin;
use super::{AppState, WebConfig, WebError};
use crate::invites::{self, InviteLink, Invitee, InvitesRejected};
use crate::problems;
use crate::store::StoreError;
use crate::store::raters::Invitation;
use crate::store::studies::Study;

/// Routes of the admin pages; uploads may be as large as the configured limit.
pub fn routes(config: &WebConfig) -> Router<AppState> {
    Router::new()
        .route(
            "/admin/import",
            get(import_page)
                .post(import)
                .layer(DefaultBodyLimit::max(config.max_upload_bytes)),
        )
        .route(
            "/studies/{id}/invites",
            get(invites_page)
                .post(invite)
                .layer(DefaultBodyLimit::max(INVITE_BODY_LIMIT)),
        )
        .route("/studies/{id}/raters/{rater_id}/revoke", post(revoke))
}

#[derive(Template, WebTemplate)]
#[template(path = "import.html")]
struct ImportPage {
    username: String,
    is_admin: bool,
    outcome: Option<String>,
    error: Option<String>,
}

async fn import_page(Admin(user): Admin) -> ImportPage {
    ImportPage {
        username: user.username,
        is_admin: true,
        outcome: None,
        error: None,
    }
}

/// Which kind of file an import form sends.
/// The import form's file, parsed as it streamed in (see [`problems::ImportReader`]).
enum ImportFile {
    Problems(Result<Vec<problems::ProblemRecord>, problems::ImportRejected>),
    /// Bad lines are kept for the store, which adds those only the database can find.
    Solutions(Result<problems::ParsedImport<problems::SolutionRecord>, problems::ImportRejected>),
}

/// A reader for the form's `kind`, chosen before the file arrives.
enum ImportReading {
    Problems(problems::ImportReader<problems::ProblemRecord>),
    Solutions(problems::ImportReader<problems::SolutionRecord>),
}

/// Reads the import form, parsing the file chunk by chunk as the upload streams in: the raw
/// file is never held whole (the body limit caps its size as it arrives). The page sends
/// `kind` before `file`; a client that sends the file first is told so.
async fn read_import_form(
    mut multipart: Multipart,
    limit_bytes: usize,
) -> Result<(String, ImportFile), WebError> {
    let refused = |e: MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            WebError::TooLarge(format!(
                "the upload is larger than the limit of {} MiB; nothing was imported (split the file)",
                limit_bytes / (1024 * 1024)
            ))
        } else {
            WebError::BadRequest(e.body_text())
        }
    };
    let (mut reading, mut set, mut file) = (None, String::new(), None);
    while let Some(mut field) = multipart.next_field().await.map_err(refused)? {
        match field.name() {
            Some("kind") => {
                reading = match field.text().await.map_err(refused)?.as_str() {
                    "problems" => Some(ImportReading::Problems(problems::ImportReader::problems())),
                    "solutions" => {
                        Some(ImportReading::Solutions(problems::ImportReader::solutions()))
                    }
                    other => {
                        return Err(WebError::BadRequest(format!(
                            "unknown import kind {other:?}"
                        )));
                    }
                }
            }
            Some("set") => set = field.text().await.map_err(refused)?,
            Some("file") => {
                let mut reader = reading.take().ok_or_else(|| {
                    WebError::BadRequest("the form field \"kind\" must come before \"file\"".into())
                })?;
                while let Some(chunk) = field.chunk().await.map_err(refused)? {
                    match &mut reader {
                        ImportReading::Problems(r) => r.push(&chunk),
                        ImportReading::Solutions(r) => r.push(&chunk),
                    }
                }
                file = Some(match reader {
                    ImportReading::Problems(r) => ImportFile::Problems(r.finish()),
                    ImportReading::Solutions(r) => ImportFile::Solutions(r.finish_parsed()),
                });
            }
            _ => {}
        }
    }
    let file = match (file, reading) {
        (Some(file), _) => file,
        (None, None) => return Err(WebError::BadRequest("missing field \"kind\"".into())),
        (None, Some(_)) => return Err(WebError::BadRequest("no file was uploaded".into())),
    };
    Ok((set.trim().to_string(), file))
}

async fn import(
    State(state): State<AppState>,
    Admin(user): Admin,
    multipart: Multipart,
) -> Result<Response, WebError> {
    let (set, file) = read_import_form(multipart, state.config.max_upload_bytes).await?;
    let now = state.clock.now_ms();
    let (what, result) = match file {
        ImportFile::Problems(parsed) => (
            "problems",
            match parsed {
                Ok(records) => state.store.import_problems(&set, &records, now).await,
                Err(rejected) => Err(rejected.into()),
            },
        ),
        ImportFile::Solutions(parsed) => (
            "solutions",
            match parsed {
                Ok(parsed) => {
                    state
                        .store
                        .import_parsed_solutions(
                            (!set.is_empty()).then_some(set.as_str()),
                            &parsed,
                            now,
                        )
                        .await
                }
                Err(rejected) => Err(rejected.into()),
            },
        ),
    };
    let page = |outcome, error| ImportPage {
        username: user.username.clone(),
        is_admin: true,
        outcome,
        error,
    };
    match result {
        Ok(summary) => Ok(page(Some(summary.describe(what)), None).into_response()),
        Err(StoreError::ImportRejected(rejected)) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            page(None, Some(rejected.to_string())),
        )
            .into_response()),
        Err(e) => Err(e.into()),
    }
}

/// The invite page: the forms, and after an invitation either the new links (table and CSV
/// text to copy) or the refusal naming every bad line.
#[derive(Template, WebTemplate)]
#[template(path = "invites.html")]
struct InvitesPage {
    username: String,
    is_admin: bool,
    study_id: Uuid,
    study_name: String,
    error: Option<String>,
    links: Vec<InviteLink>,
    links_csv: String,
}

impl InvitesPage {
    fn new(username: String, study: &Study) -> InvitesPage {
        InvitesPage {
            username,
            is_admin: true,
            study_id: study.id,
            study_name: study.name.clone(),
            error: None,
            links: Vec::new(),
            links_csv: String::new(),
        }
    }

    /// The page telling why nobody was invited, with the forms to try again.
    fn refused(self, status: StatusCode, message: String) -> Response {
        let page = InvitesPage {
            error: Some(message),
            ..self
        };
        (status, page).into_response()
    }
}

/// The urlencoded invite form (the names-only form, or a client posting names).
#[derive(Deserialize)]
struct InviteForm {
    #[serde(default)]
    names: String,
    #[serde(default)]
    format: String,
}

/// Who an invite form lists: names one per line, or an uploaded CSV of names and emails.
enum InviteList {
    Names(String),
    Csv(Vec<u8>),
}

impl InviteList {
    /// The invitees, or every bad line (`taken`: names of the study's active raters).
    fn parse(&self, taken: &[String]) -> Result<Vec<Invitee>, InvitesRejected> {
        match self {
            InviteList::Names(text) => invites::parse_name_list(text, taken),
            InviteList::Csv(bytes) => invites::parse_invite_csv(bytes, taken),
        }
    }
}

/// An invite form as read: who, and whether the links are wanted as a CSV download.
struct InviteRequest {
    list: InviteList,
    csv_download: bool,
}

/// An invite form that could not be read (malformed, or larger than the limit): refused
/// before any rule was checked, with the status to answer.
struct FormRefused {
    status: StatusCode,
    message: String,
}

impl FormRefused {
    /// A read failure with axum's status; an over-long body gets a message saying the limit.
    fn reading(status: StatusCode, text: String) -> FormRefused {
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!(
                "the upload is larger than {} MiB; nobody was invited (split the list)",
                invites::MAX_CSV_BYTES / (1024 * 1024)
            )
        } else {
            text
        };
        FormRefused { status, message }
    }

    fn bad(message: &str) -> FormRefused {
        FormRefused {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl From<MultipartError> for FormRefused {
    fn from(e: MultipartError) -> Self {
        FormRefused::reading(e.status(), e.body_text())
    }
}

/// The largest invite request: the CSV limit plus room for the other fields and the
/// multipart framing.
const INVITE_BODY_LIMIT: usize = invites::MAX_CSV_BYTES + 256 * 1024;

/// Reads the invite form, multipart (names and/or a `file`, as the page sends it) or
/// urlencoded (names only). Exactly one of names and file must be given; `format=csv` asks
/// for the links as a CSV download.
async fn read_invite_form(
    request: Request,
    state: &AppState,
) -> Result<InviteRequest, FormRefused> {
    let multipart = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (names, file, format) = if multipart {
        let mut form = Multipart::from_request(request, state)
            .await
            .map_err(|e| FormRefused::reading(e.status(), e.body_text()))?;
        let (mut names, mut file, mut format) = (String::new(), None, String::new());
        while let Some(field) = form.next_field().await? {
            match field.name() {
                Some("names") => names = field.text().await?,
                Some("format") => format = field.text().await?,
                Some("file") => {
                    // A browser sends an empty part when no file was chosen.
                    let chosen = field.file_name().is_some_and(|n| !n.is_empty());
                    let bytes = field.bytes().await?;
                    if chosen || !bytes.is_empty() {
                        file = Some(bytes.to_vec());
                    }
                }
                _ => {}
            }
        }
        (names, file, format)
    } else {
        let axum::Form(form) = axum::Form::<InviteForm>::from_request(request, state)
            .await
            .map_err(|e| FormRefused::reading(e.status(), input_problem(&e.body_text())))?;
        (form.names, None, form.format)
    };
    let list = match (names.trim().is_empty(), file) {
        (true, Some(bytes)) => InviteList::Csv(bytes),
        (false, None) => InviteList::Names(names),
        (false, Some(_)) => {
            return Err(FormRefused::bad(
                "give names or a CSV file, not both; nobody was invited",
            ));
        }
        (true, None) => {
            return Err(FormRefused::bad(
                "give at least one rater name, or a CSV file of names and emails",
            ));
        }
    };
    Ok(InviteRequest {
        list,
        csv_download: format == "csv",
    })
}

/// True when the client asks for CSV (`Accept: text/csv`), e.g. a script inviting raters.
fn accepts_csv(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"))
}

/// Base of links handed out (invite links): the configured public URL, else this request's host.
pub fn link_base(config: &WebConfig, headers: &HeaderMap) -> String {
    match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let host = headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1:8080");
            let scheme = if config.secure_cookies {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{host}")
        }
    }
}

async fn invites_page(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(study_id): Path<Uuid>,
) -> Result<InvitesPage, WebError> {
    let study = state.store.study(study_id).await?;
    Ok(InvitesPage::new(user.username, &study))
}

/// Invites the listed raters, all or none. The links exist only in this response (the server
/// keeps token hashes): they come back as a page with a table and the same rows as CSV text
/// to copy, or, when the form says `format=csv` or the client accepts `text/csv`, directly as
/// a CSV attachment (`name,email,link`). A refusal shows every bad line and invites nobody.
async fn invite(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(study_id): Path<Uuid>,
    request: Request,
) -> Result<Response, WebError> {
    let study = state.store.study(study_id).await?;
    let base = link_base(&state.config, request.headers());
    let csv_accepted = accepts_csv(request.headers());
    let page = InvitesPage::new(user.username, &study);
    let form = match read_invite_form(request, &state).await {
        Ok(form) => form,
        Err(refused) => return Ok(page.refused(refused.status, refused.message)),
    };
    let taken = state.store.active_rater_names(study_id).await?;
    let created = match form.list.parse(&taken) {
        Ok(invitees) => {
            state
                .store
                .invite_invitees(study_id, &invitees, state.clock.now_ms())
                .await
        }
        Err(rejected) => Err(rejected.into()),
    };
    let links: Vec<InviteLink> = match created {
        Ok(invitations) => invitations
            .into_iter()
            .map(|i| invite_link(&base, i))
            .collect(),
        Err(StoreError::InvitesRejected(rejected)) => {
            return Ok(page.refused(StatusCode::UNPROCESSABLE_ENTITY, rejected.to_string()));
        }
        Err(e) => return Err(e.into()),
    };
    let links_csv = invites::links_csv(&links);
    if form.csv_download || csv_accepted {
        return Ok(csv_attachment(study_id, links_csv));
    }
    Ok(InvitesPage {
        links,
        links_csv,
        ..page
    }
    .into_response())
}

/// A new rater's personal link on this server.
fn invite_link(base: &str, invitation: Invitation) -> InviteLink {
    InviteLink {
        link: format!("{base}/r/{}", invitation.token),
        name: invitation.rater.name,
        email: invitation.email,
    }
}

/// The links CSV as a file download.
fn csv_attachment(study_id: Uuid, csv: String) -> Response {
    super::csv_attachment(&format!("study-{study_id}-invite-links.csv"), csv)
}

/// Revokes a rater's link (their active item returns to the pool; their judgements stay) and
/// returns to the study page. Admins only, like inviting.
async fn revoke(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path((study_id, rater_id)): Path<(Uuid, Uuid)>,
) -> Result<Redirect, WebError> {
    state
        .store
        .revoke_rater(study_id, rater_id, state.clock.now_ms())
        .await?;
    Ok(Redirect::to(&format!("/studies/{study_id}#raters")))
}

//! Admin pages: import problem sets and solutions, invite raters.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::HOST;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use uuid::Uuid;

use super::session::Admin;
use super::{AppState, WebConfig, WebError};
use crate::problems;
use crate::store::StoreError;

/// Routes of the admin pages; uploads may be as large as the configured limit.
pub fn routes(config: &WebConfig) -> Router<AppState> {
    Router::new()
        .route(
            "/admin/import",
            get(import_page)
                .post(import)
                .layer(DefaultBodyLimit::max(config.max_upload_bytes)),
        )
        .route("/studies/{id}/invites", post(invite))
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImportKind {
    Problems,
    Solutions,
}

async fn read_import_form(
    mut multipart: Multipart,
) -> Result<(ImportKind, String, Vec<u8>), WebError> {
    let (mut kind, mut set, mut file) = (None, String::new(), None);
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| WebError::BadRequest(e.body_text()))?
    {
        match field.name() {
            Some("kind") => {
                kind = match field
                    .text()
                    .await
                    .map_err(|e| WebError::BadRequest(e.body_text()))?
                    .as_str()
                {
                    "problems" => Some(ImportKind::Problems),
                    "solutions" => Some(ImportKind::Solutions),
                    other => {
                        return Err(WebError::BadRequest(format!(
                            "unknown import kind {other:?}"
                        )));
                    }
                }
            }
            Some("set") => {
                set = field
                    .text()
                    .await
                    .map_err(|e| WebError::BadRequest(e.body_text()))?
            }
            Some("file") => {
                file = Some(
                    field
                        .bytes()
                        .await
                        .map_err(|e| WebError::BadRequest(e.body_text()))?
                        .to_vec(),
                )
            }
            _ => {}
        }
    }
    let kind = kind.ok_or_else(|| WebError::BadRequest("missing field \"kind\"".into()))?;
    let file = file.ok_or_else(|| WebError::BadRequest("no file was uploaded".into()))?;
    Ok((kind, set.trim().to_string(), file))
}

/// Imports an uploaded file; any bad line refuses the whole file and the page lists them.
async fn import(
    State(state): State<AppState>,
    Admin(user): Admin,
    multipart: Multipart,
) -> Result<Response, WebError> {
    let (kind, set, bytes) = read_import_form(multipart).await?;
    let now = state.clock.now_ms();
    let result = match kind {
        ImportKind::Problems => match problems::parse_gsm8k_problems(&bytes) {
            Ok(records) => state.store.import_problems(&set, &records, now).await,
            Err(rejected) => Err(rejected.into()),
        },
        ImportKind::Solutions => match problems::parse_solutions(&bytes) {
            Ok(records) => {
                state
                    .store
                    .import_solutions((!set.is_empty()).then_some(set.as_str()), &records, now)
                    .await
            }
            Err(rejected) => Err(rejected.into()),
        },
    };
    let page = |outcome, error| ImportPage {
        username: user.username.clone(),
        is_admin: true,
        outcome,
        error,
    };
    match result {
        Ok(summary) => Ok(page(
            Some(format!(
                "Imported {} new {} ({} already present, {} in the file).",
                summary.inserted,
                if kind == ImportKind::Problems {
                    "problems"
                } else {
                    "solutions"
                },
                summary.already_present,
                summary.records
            )),
            None,
        )
        .into_response()),
        Err(StoreError::ImportRejected(rejected)) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            page(None, Some(rejected.to_string())),
        )
            .into_response()),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "invites.html")]
struct InvitesPage {
    username: String,
    is_admin: bool,
    study_id: Uuid,
    study_name: String,
    links: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct InviteForm {
    names: String,
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

async fn invite(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(study_id): Path<Uuid>,
    headers: HeaderMap,
    Form(form): Form<InviteForm>,
) -> Result<InvitesPage, WebError> {
    let names: Vec<String> = form
        .names
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Err(WebError::BadRequest("give at least one rater name".into()));
    }
    let study = state.store.study(study_id).await?;
    let invitations = state
        .store
        .invite_raters(study_id, &names, state.clock.now_ms())
        .await?;
    let base = link_base(&state.config, &headers);
    Ok(InvitesPage {
        username: user.username,
        is_admin: true,
        study_id,
        study_name: study.name,
        links: invitations
            .into_iter()
            .map(|i| (i.rater.name, format!("{base}/r/{}", i.token)))
            .collect(),
    })
}

//! Researchers' report downloads: the study's figures as JSON and the tidy per-attempt table
//! as JSON Lines and CSV. Staff only (researchers and admins); raters never reach these routes.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use uuid::Uuid;

use super::session::Staff;
use super::{AppState, WebError};
use crate::reports::{Attempt, study_report};

/// Routes of the report downloads.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/studies/{id}/report.json", get(report_json))
        .route("/studies/{id}/attempts.jsonl", get(attempts_jsonl))
        .route("/studies/{id}/attempts.csv", get(attempts_csv))
}

/// `?exclude=chance` leaves chance-level raters out of the figures.
#[derive(Debug, Deserialize)]
struct ReportQuery {
    #[serde(default)]
    exclude: Option<String>,
}

/// The study's summary: groups, raters, agreement, speed–accuracy.
async fn report_json(
    State(state): State<AppState>,
    _staff: Staff,
    Path(id): Path<Uuid>,
    Query(query): Query<ReportQuery>,
) -> Result<Json<serde_json::Value>, WebError> {
    let study = state.store.study(id).await?;
    let exclude = match query.exclude.as_deref() {
        None | Some("") | Some("none") => false,
        Some("chance") => true,
        Some(other) => {
            return Err(WebError::BadRequest(format!(
                "exclude must be \"chance\" or \"none\", not {other:?}"
            )));
        }
    };
    let attempts: Vec<Attempt> = state
        .store
        .attempt_rows(id)
        .await?
        .iter()
        .map(|row| row.attempt())
        .collect();
    let report = study_report(&attempts, exclude);
    Ok(Json(serde_json::json!({
        "study": { "id": study.id, "name": study.name },
        "judgements": attempts.len(),
        "report": report,
    })))
}

/// One JSON object per judgement, for pandas (`read_json(lines=True)`) and the like.
async fn attempts_jsonl(
    State(state): State<AppState>,
    _staff: Staff,
    Path(id): Path<Uuid>,
) -> Result<Response, WebError> {
    let study = state.store.study(id).await?;
    let mut body = String::new();
    for row in state.store.attempt_rows(id).await? {
        let line = serde_json::to_string(&row).map_err(|e| WebError::Internal(e.to_string()))?;
        body.push_str(&line);
        body.push('\n');
    }
    let file = format!("attachment; filename=\"study-{}-attempts.jsonl\"", study.id);
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
            (header::CONTENT_DISPOSITION, file),
        ],
        body,
    )
        .into_response())
}

/// The same table as CSV with a header row (booleans `true`/`false`, empty cells for nulls).
async fn attempts_csv(
    State(state): State<AppState>,
    _staff: Staff,
    Path(id): Path<Uuid>,
) -> Result<Response, WebError> {
    let study = state.store.study(id).await?;
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in state.store.attempt_rows(id).await? {
        writer
            .serialize(&row)
            .map_err(|e| WebError::Internal(e.to_string()))?;
    }
    let body = writer
        .into_inner()
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let file = format!("attachment; filename=\"study-{}-attempts.csv\"", study.id);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, file),
        ],
        body,
    )
        .into_response())
}

//! JSON API: health for operators, and the rater loop for custom front-ends. Rater responses
//! carry only the question, the solution and timing, like the pages.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::session::RaterApi;
use super::{ApiError, AppState, WebError};
use crate::domain::Verdict;
use crate::judging::{self, RequestedVerdict};
use crate::store::judging::ServeOutcome;
use axum::extract::rejection::JsonRejection;

/// Routes of the JSON API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health))
        .route("/api/rater/item", get(item))
        .route("/api/rater/judgements", post(judge))
}

/// `/healthz`: the server runs and its database answers.
async fn health(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    state.store.ping().await?;
    Ok(Json(
        serde_json::json!({ "status": "ok", "database": format!("{:?}", state.store.backend()).to_lowercase() }),
    ))
}

/// What a rater's client gets when it asks for an item.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum ItemResponse {
    /// An item to judge now.
    Item {
        /// Refer to it when answering.
        assignment_id: Uuid,
        /// The problem.
        question: String,
        /// The solution to judge.
        solution: String,
        /// Milliseconds left before the server stores a timeout.
        remaining_ms: i64,
        /// The study's per-item limit.
        time_limit_ms: i64,
        /// Items this rater finished.
        items_done: i64,
    },
    /// Nothing left for this rater.
    Finished {
        /// Items this rater finished.
        items_done: i64,
    },
    /// The study is closed.
    Closed,
}

async fn item(
    State(state): State<AppState>,
    RaterApi(rater): RaterApi,
) -> Result<Json<ItemResponse>, ApiError> {
    let now = state.clock.now_ms();
    Ok(Json(
        match state
            .store
            .serve_item(rater.id, rater.study_id, now)
            .await?
        {
            ServeOutcome::Item(item) => ItemResponse::Item {
                assignment_id: item.assignment_id,
                question: item.question,
                solution: item.solution,
                remaining_ms: judging::remaining_ms(now, item.deadline),
                time_limit_ms: item.time_limit_ms,
                items_done: item.items_done,
            },
            ServeOutcome::Finished { items_done } => ItemResponse::Finished { items_done },
            ServeOutcome::StudyClosed => ItemResponse::Closed,
        },
    ))
}

/// A rater's answer.
#[derive(Debug, Deserialize)]
pub struct JudgementRequest {
    /// The item answered.
    pub assignment_id: Uuid,
    /// `correct`, `wrong`, or `timeout` when the client's countdown ended.
    pub verdict: RequestedVerdict,
    /// The client's own measurement of the time taken.
    #[serde(default)]
    pub client_elapsed_ms: Option<i64>,
}

/// What was stored.
#[derive(Debug, Serialize)]
pub struct JudgementResponse {
    /// Stored verdict (`timeout` if the answer came after the deadline).
    pub verdict: Verdict,
    /// The same answer had already been stored; nothing changed.
    pub duplicate: bool,
}

async fn judge(
    State(state): State<AppState>,
    RaterApi(rater): RaterApi,
    request: Result<Json<JudgementRequest>, JsonRejection>,
) -> Result<Json<JudgementResponse>, ApiError> {
    // A malformed body gets the API's JSON error shape, naming what is wrong.
    let Json(request) = request.map_err(|e| ApiError(WebError::BadRequest(e.body_text())))?;
    let outcome = state
        .store
        .submit_judgement(
            rater.id,
            request.assignment_id,
            request.verdict,
            request.client_elapsed_ms,
            state.clock.now_ms(),
        )
        .await?;
    Ok(Json(JudgementResponse {
        verdict: outcome.verdict,
        duplicate: outcome.duplicate,
    }))
}

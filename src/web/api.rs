//! JSON API: health for operators, and the rater loop for custom front-ends. Rater responses
//! carry only the question, the solution and timing, like the pages.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract::input_problem;
use super::session::RaterApi;
use super::{ApiError, AppState, WebError};
use crate::answers::{AnswerInput, TrialEvents};
use crate::domain::Verdict;
use crate::intake::IntakeStep;
use crate::judging::{self, RequestedVerdict};
use crate::store::judging::{ServeOutcome, Stage};
use crate::store::quality::PracticeFeedback;
use axum::extract::rejection::JsonRejection;

/// Routes of the JSON API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health))
        .route("/api/openapi.json", get(openapi))
        .route("/api/rater/item", get(item))
        .route("/api/rater/judgements", post(judge))
        .route("/api/rater/steps", post(flag_step))
}

/// The OpenAPI 3.1 document of this API (`static/openapi.json`, embedded); `tests/operations.rs`
/// checks that it lists every API route and matches what the server answers.
pub const OPENAPI: &str = include_str!("../../static/openapi.json");

/// `/api/openapi.json`.
async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
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
        /// This item's limit (the study's, or its arm when the study compares limits).
        time_limit_ms: i64,
        /// Session items this rater finished.
        items_done: i64,
        /// `session`, or `practice` / `screening` with `number` and `of`.
        #[serde(flatten)]
        stage: Stage,
    },
    /// Nothing left for this rater.
    Finished {
        /// Items this rater finished.
        items_done: i64,
    },
    /// The study is closed.
    Closed,
    /// The rater did not pass screening: no study items.
    #[serde(rename = "not_admitted")]
    NotAdmitted,
    /// The rater reached the study's workload cap.
    #[serde(rename = "workload_reached")]
    WorkloadReached {
        /// Session items this rater finished.
        items_done: i64,
    },
    /// A suggested break; ask again with `?after_break=true` to go on.
    Break {
        /// Session items this rater finished.
        items_done: i64,
    },
    /// The participant must first answer what the study asks before items, on the rater
    /// pages (`/rate`): `consent`, `background` or `comprehension`.
    Intake {
        /// The step due.
        step: &'static str,
    },
    /// The participant declined the study's consent: no items.
    #[serde(rename = "declined_consent")]
    DeclinedConsent,
    /// The rater failed the silent gold items where that ends the study: no more items.
    #[serde(rename = "failed_quality")]
    FailedQuality,
}

/// `?after_break=true`: the rater goes on after a suggested break.
#[derive(Debug, Deserialize)]
pub struct ItemQuery {
    /// Skip the break that is due.
    #[serde(default)]
    pub after_break: bool,
}

async fn item(
    State(state): State<AppState>,
    RaterApi(rater): RaterApi,
    query: Result<Query<ItemQuery>, QueryRejection>,
) -> Result<Json<ItemResponse>, ApiError> {
    let Query(query) = query.map_err(|e| WebError::BadRequest(input_problem(&e.body_text())))?;
    let now = state.clock.now_ms();
    Ok(Json(
        match state
            .store
            .serve_next(rater.id, rater.study_id, now, query.after_break)
            .await?
        {
            ServeOutcome::Item(item) => ItemResponse::Item {
                assignment_id: item.assignment_id,
                question: item.question,
                solution: item.solution,
                remaining_ms: judging::remaining_ms(now, item.deadline),
                time_limit_ms: item.time_limit_ms,
                items_done: item.items_done,
                stage: item.stage,
            },
            ServeOutcome::Finished { items_done } => ItemResponse::Finished { items_done },
            ServeOutcome::StudyClosed => ItemResponse::Closed,
            ServeOutcome::NotAdmitted => ItemResponse::NotAdmitted,
            ServeOutcome::WorkloadReached { items_done } => {
                ItemResponse::WorkloadReached { items_done }
            }
            ServeOutcome::Break { items_done } => ItemResponse::Break { items_done },
            ServeOutcome::FailedQuality => ItemResponse::FailedQuality,
            ServeOutcome::Intake(step) => match step {
                IntakeStep::DeclinedConsent => ItemResponse::DeclinedConsent,
                // Comprehension failed twice: screened out, like a failed qualification.
                IntakeStep::ScreenedOut => ItemResponse::NotAdmitted,
                IntakeStep::Consent => ItemResponse::Intake { step: "consent" },
                IntakeStep::Background => ItemResponse::Intake { step: "background" },
                IntakeStep::Comprehension { .. } | IntakeStep::Ready => ItemResponse::Intake {
                    step: "comprehension",
                },
            },
        },
    ))
}

/// A rater's answer.
#[derive(Debug, Deserialize)]
pub struct JudgementRequest {
    /// The item answered.
    pub assignment_id: Uuid,
    /// `correct`, `wrong`, or `timeout` when the client's countdown ended; absent in a
    /// probability study (the probability's side of 50 % is the verdict).
    #[serde(default)]
    pub verdict: Option<RequestedVerdict>,
    /// The client's own measurement of the time taken.
    #[serde(default)]
    pub client_elapsed_ms: Option<i64>,
    /// Confidence in the verdict, percent (confidence studies: 50, 60, …, 100).
    #[serde(default)]
    pub confidence: Option<i64>,
    /// Probability that the solution is correct, percent (probability studies: 0-100 in
    /// steps of 5).
    #[serde(default)]
    pub probability: Option<i64>,
    /// A short justification (studies that ask for one).
    #[serde(default)]
    pub justification: Option<String>,
    /// Trial-integrity events the client counted while the item ran.
    #[serde(default)]
    pub events: Option<TrialEvents>,
}

/// What was stored.
#[derive(Debug, Serialize)]
pub struct JudgementResponse {
    /// Stored verdict (`timeout` if the answer came after the deadline).
    pub verdict: Verdict,
    /// The same answer had already been stored; nothing changed.
    pub duplicate: bool,
    /// After a practice item only: the right answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback: Option<PracticeFeedback>,
}

async fn judge(
    State(state): State<AppState>,
    RaterApi(rater): RaterApi,
    request: Result<Json<JudgementRequest>, JsonRejection>,
) -> Result<Json<JudgementResponse>, ApiError> {
    // A malformed body gets the API's JSON error shape, naming what is wrong.
    let Json(request) =
        request.map_err(|e| ApiError(WebError::BadRequest(input_problem(&e.body_text()))))?;
    let outcome = state
        .store
        .submit_judgement(
            rater.id,
            request.assignment_id,
            AnswerInput {
                verdict: request.verdict,
                confidence: request.confidence,
                probability: request.probability,
                justification: request.justification,
                events: request.events,
            },
            request.client_elapsed_ms,
            state.clock.now_ms(),
        )
        .await?;
    Ok(Json(JudgementResponse {
        verdict: outcome.verdict,
        duplicate: outcome.duplicate,
        feedback: outcome.feedback,
    }))
}

/// A step flag: the first wrong step (1-based) of an item just answered "wrong".
#[derive(Debug, Deserialize)]
pub struct StepRequest {
    /// The item.
    pub assignment_id: Uuid,
    /// Its first wrong step.
    pub step: i64,
}

/// Stores a step flag; refused (410) after the item's deadline, twice, or on a non-"wrong"
/// answer, and (400) for a step the solution does not have.
async fn flag_step(
    State(state): State<AppState>,
    RaterApi(rater): RaterApi,
    request: Result<Json<StepRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(request) =
        request.map_err(|e| ApiError(WebError::BadRequest(input_problem(&e.body_text()))))?;
    state
        .store
        .flag_first_wrong_step(
            rater.id,
            request.assignment_id,
            request.step,
            state.clock.now_ms(),
        )
        .await?;
    Ok(Json(
        serde_json::json!({ "status": "ok", "step": request.step }),
    ))
}

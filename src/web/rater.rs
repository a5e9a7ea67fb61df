//! Rater pages: invite link → instructions → one timed item at a time. Only the question, the
//! solution and the time left ever reach the browser.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use axum_extra::extract::CookieJar;
use serde::Deserialize;
use uuid::Uuid;

use super::session::{RATER_COOKIE, RATER_COOKIE_DAYS, RaterPage, secret_cookie};
use super::{AppState, WebError};
use crate::judging::{self, RequestedVerdict};
use crate::store::judging::ServeOutcome;

/// Routes of the rater pages.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/r/{token}", get(enter))
        .route("/rate", get(instructions))
        .route("/rate/item", get(item).post(judge))
}

#[derive(Template, WebTemplate)]
#[template(path = "rater_instructions.html")]
struct InstructionsPage {
    name: String,
    time_limit_s: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "rater_item.html")]
struct ItemPage {
    item_number: i64,
    assignment_id: Uuid,
    question: String,
    solution: String,
    remaining_ms: i64,
    remaining_s: i64,
    time_limit_ms: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "rater_message.html")]
struct MessagePage {
    title: &'static str,
    message: String,
    link: Option<(&'static str, &'static str)>,
}

/// Opening an invite link: remember the token in a cookie and show the instructions.
async fn enter(
    State(state): State<AppState>,
    Path(token): Path<String>,
    jar: CookieJar,
) -> Result<Response, WebError> {
    let rater = state
        .store
        .rater_by_token(&token)
        .await?
        .ok_or(WebError::RaterUnknown)?;
    state
        .store
        .mark_rater_started(rater.id, state.clock.now_ms())
        .await?;
    let jar = jar.add(secret_cookie(
        RATER_COOKIE,
        token,
        state.config.secure_cookies,
        time::Duration::days(RATER_COOKIE_DAYS),
    ));
    Ok((jar, Redirect::to("/rate")).into_response())
}

async fn instructions(
    State(state): State<AppState>,
    RaterPage(rater): RaterPage,
) -> Result<InstructionsPage, WebError> {
    let study = state.store.study(rater.study_id).await?;
    let seconds = study.time_limit_ms as f64 / 1000.0;
    Ok(InstructionsPage {
        name: rater.name,
        time_limit_s: format!("{seconds}"),
    })
}

/// The rater's current item (the same one with the same deadline after a reload) or a new one.
async fn item(
    State(state): State<AppState>,
    RaterPage(rater): RaterPage,
) -> Result<Response, WebError> {
    let now = state.clock.now_ms();
    let outcome = state
        .store
        .serve_item(rater.id, rater.study_id, now)
        .await?;
    Ok(match outcome {
        ServeOutcome::Item(item) => {
            let remaining_ms = judging::remaining_ms(now, item.deadline);
            ItemPage {
                item_number: item.items_done + 1,
                assignment_id: item.assignment_id,
                question: item.question,
                solution: item.solution,
                remaining_ms,
                remaining_s: (remaining_ms + 999) / 1000,
                time_limit_ms: item.time_limit_ms,
            }
            .into_response()
        }
        ServeOutcome::Finished { items_done } => MessagePage {
            title: "All done",
            message: format!(
                "There are no more items for you in this study. You judged {items_done}. Thank you!"
            ),
            link: None,
        }
        .into_response(),
        ServeOutcome::StudyClosed => MessagePage {
            title: "Study closed",
            message:
                "This study is not collecting judgements at the moment. Thank you for your help."
                    .into(),
            link: None,
        }
        .into_response(),
    })
}

/// The form the item page posts.
#[derive(Debug, Deserialize)]
struct JudgeForm {
    assignment_id: Uuid,
    verdict: RequestedVerdict,
    #[serde(default)]
    client_elapsed_ms: String,
}

/// Stores the answer (as `timeout` if late; a repeat changes nothing) and moves on.
async fn judge(
    State(state): State<AppState>,
    RaterPage(rater): RaterPage,
    Form(form): Form<JudgeForm>,
) -> Result<Response, WebError> {
    let client_elapsed_ms = form.client_elapsed_ms.trim().parse::<i64>().ok();
    let now = state.clock.now_ms();
    match state
        .store
        .submit_judgement(
            rater.id,
            form.assignment_id,
            form.verdict,
            client_elapsed_ms,
            now,
        )
        .await
    {
        Ok(_) => Ok(Redirect::to("/rate/item").into_response()),
        Err(crate::store::StoreError::Gone(message)) => Ok(MessagePage {
            title: "Time ran out",
            message,
            link: Some(("/rate/item", "Continue")),
        }
        .into_response()),
        Err(e) => Err(e.into()),
    }
}

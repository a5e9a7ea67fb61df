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

use super::i18n::{Lang, Texts};
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
    t: &'static Texts,
    back: &'static str,
    name: String,
    time_limit_s: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "rater_item.html")]
struct ItemPage {
    t: &'static Texts,
    back: &'static str,
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
    t: &'static Texts,
    back: &'static str,
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
    lang: Lang,
) -> Result<InstructionsPage, WebError> {
    let study = state.store.study(rater.study_id).await?;
    let seconds = study.time_limit_ms as f64 / 1000.0;
    Ok(InstructionsPage {
        t: lang.texts(),
        back: "/rate",
        name: rater.name,
        time_limit_s: format!("{seconds}"),
    })
}

/// The rater's current item (the same one with the same deadline after a reload) or a new one.
async fn item(
    State(state): State<AppState>,
    RaterPage(rater): RaterPage,
    lang: Lang,
) -> Result<Response, WebError> {
    let t = lang.texts();
    let now = state.clock.now_ms();
    let outcome = state
        .store
        .serve_item(rater.id, rater.study_id, now)
        .await?;
    Ok(match outcome {
        ServeOutcome::Item(item) => {
            let remaining_ms = judging::remaining_ms(now, item.deadline);
            ItemPage {
                t,
                back: "/rate/item",
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
            t,
            back: "/rate/item",
            title: t.all_done_title,
            message: t.all_done(items_done),
            link: None,
        }
        .into_response(),
        ServeOutcome::StudyClosed => MessagePage {
            t,
            back: "/rate/item",
            title: t.closed_title,
            message: t.closed_message.into(),
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
    lang: Lang,
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
        Err(crate::store::StoreError::Gone(_)) => Ok(MessagePage {
            t: lang.texts(),
            back: "/rate/item",
            title: lang.texts().time_ran_out_title,
            message: lang.texts().time_ran_out_message.into(),
            link: Some(("/rate/item", lang.texts().continue_label)),
        }
        .into_response()),
        Err(e) => Err(e.into()),
    }
}

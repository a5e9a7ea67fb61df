//! Rater pages: invite link → instructions → one timed item at a time. Only the question, the
//! solution and the time left ever reach the browser.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::extract::{Form, Path, Query};
use axum_extra::extract::CookieJar;
use serde::Deserialize;
use uuid::Uuid;

use super::i18n::{Lang, Texts};
use super::session::{RATER_COOKIE, RATER_COOKIE_DAYS, RaterPage, secret_cookie};
use super::{AppState, WebError};
use crate::domain::Verdict;
use crate::judging::{self, RequestedVerdict};
use crate::panel::CompletionOutcome;
use crate::store::judging::{ServeOutcome, Stage, SubmitOutcome};
use crate::store::quality::PracticeFeedback;

/// Routes of the rater pages.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/r/{token}", get(enter))
        .route("/rate", get(instructions))
        .route("/rate/item", get(item).post(judge))
        .route("/rate/item/step", get(step_page).post(flag_step))
}

#[derive(Template, WebTemplate)]
#[template(path = "rater_instructions.html")]
struct InstructionsPage {
    t: &'static Texts,
    back: &'static str,
    name: String,
    time_limit_s: String,
    /// The study's protocol in the rater's words: practice, screening, workload cap.
    protocol_rules: Vec<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "rater_item.html")]
struct ItemPage {
    t: &'static Texts,
    back: &'static str,
    /// "Item N", or the practice / qualification item's place in its set.
    heading: String,
    practice: bool,
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
    /// At an end of the study with a panel completion code: the code and where to take it.
    completion: Option<(String, Option<String>)>,
}

/// A message page on the item route (the language switch returns to the item).
fn message(
    t: &'static Texts,
    title: &'static str,
    message: String,
    link: Option<(&'static str, &'static str)>,
) -> Response {
    MessagePage {
        t,
        back: "/rate/item",
        title,
        message,
        link,
        completion: None,
    }
    .into_response()
}

/// A message page at one of the study's ends, with the study's completion code for it (and
/// the link back to the panel) when it has one; no other page ever shows a code.
async fn ending(
    state: &AppState,
    study_id: Uuid,
    outcome: CompletionOutcome,
    t: &'static Texts,
    title: &'static str,
    message: String,
) -> Result<Response, WebError> {
    let completion = state.store.completion(study_id, outcome).await?;
    Ok(MessagePage {
        t,
        back: "/rate/item",
        title,
        message,
        link: None,
        completion: completion.map(|c| {
            let redirect = c.redirect();
            (c.code, redirect)
        }),
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "rater_feedback.html")]
struct FeedbackPage {
    t: &'static Texts,
    back: &'static str,
    feedback: PracticeFeedback,
}

#[derive(Template, WebTemplate)]
#[template(path = "rater_step.html")]
struct StepPage {
    t: &'static Texts,
    back: &'static str,
    item: Uuid,
    steps: Vec<String>,
    remaining_ms: i64,
    remaining_s: i64,
    time_limit_ms: i64,
}

/// `?continue=1` after a suggested break.
#[derive(Debug, Deserialize)]
struct ItemQuery {
    #[serde(default, rename = "continue")]
    go_on: Option<String>,
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

/// The instructions, unless an item is running: reopening the link mid-item goes straight back
/// to it (its clock runs on; the instructions would only eat the time left).
async fn instructions(
    State(state): State<AppState>,
    RaterPage(rater): RaterPage,
    lang: Lang,
) -> Result<Response, WebError> {
    if state
        .store
        .has_running_item(rater.id, state.clock.now_ms())
        .await?
    {
        return Ok(Redirect::to("/rate/item").into_response());
    }
    let study = state.store.study(rater.study_id).await?;
    let seconds = study.time_limit_ms as f64 / 1000.0;
    let t = lang.texts();
    let protocol = &study.protocol;
    let mut protocol_rules = Vec::new();
    if protocol.practice_items > 0 {
        protocol_rules.push(t.practice_rule(protocol.practice_items));
    }
    if protocol.screening_items > 0 {
        let percent = (protocol.screening_pass_accuracy * 1000.0).round() / 10.0;
        protocol_rules.push(t.screening_rule(protocol.screening_items, percent));
    }
    protocol_rules.push(t.workload_rule((protocol.max_rater_ms as f64 / 360_000.0).round() / 10.0));
    Ok(InstructionsPage {
        protocol_rules,
        t,
        back: "/rate",
        name: rater.name,
        time_limit_s: format!("{seconds}"),
    }
    .into_response())
}

/// The rater's current item (the same one with the same deadline after a reload) or a new one.
async fn item(
    State(state): State<AppState>,
    RaterPage(rater): RaterPage,
    lang: Lang,
    Query(query): Query<ItemQuery>,
) -> Result<Response, WebError> {
    let t = lang.texts();
    let now = state.clock.now_ms();
    let outcome = state
        .store
        .serve_next(rater.id, rater.study_id, now, query.go_on.is_some())
        .await?;
    Ok(match outcome {
        ServeOutcome::Item(item) => {
            let remaining_ms = judging::remaining_ms(now, item.deadline);
            let heading = match item.stage {
                Stage::Practice { number, of } => t.practice_item(number, of),
                Stage::Screening { number, of } => t.screening_item(number, of),
                Stage::Session => t.item(item.items_done + 1),
            };
            ItemPage {
                t,
                back: "/rate/item",
                practice: matches!(item.stage, Stage::Practice { .. }),
                heading,
                assignment_id: item.assignment_id,
                question: item.question,
                solution: item.solution,
                remaining_ms,
                remaining_s: judging::seconds_shown(remaining_ms),
                time_limit_ms: item.time_limit_ms,
            }
            .into_response()
        }
        ServeOutcome::Finished { items_done } => {
            let text = t.all_done(items_done);
            ending(
                &state,
                rater.study_id,
                CompletionOutcome::Completed,
                t,
                t.all_done_title,
                text,
            )
            .await?
        }
        ServeOutcome::StudyClosed => message(t, t.closed_title, t.closed_message.into(), None),
        ServeOutcome::NotAdmitted => {
            let text = t.not_admitted_message.into();
            let outcome = CompletionOutcome::ScreenedOut;
            ending(
                &state,
                rater.study_id,
                outcome,
                t,
                t.not_admitted_title,
                text,
            )
            .await?
        }
        ServeOutcome::WorkloadReached { items_done } => {
            let text = t.workload_message(items_done);
            let outcome = CompletionOutcome::OutOfTime;
            ending(&state, rater.study_id, outcome, t, t.workload_title, text).await?
        }
        ServeOutcome::Break { items_done } => message(
            t,
            t.break_title,
            t.break_message(items_done),
            Some(("/rate/item?continue=1", t.continue_label)),
        ),
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

/// Stores the answer (as `timeout` if late; a repeat changes nothing) and moves on: to the
/// right answer after a practice item, to the step flag after a fresh "wrong", else onwards.
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
        Ok(SubmitOutcome {
            feedback: Some(feedback),
            ..
        }) => Ok(FeedbackPage {
            t: lang.texts(),
            back: "/rate/item",
            feedback,
        }
        .into_response()),
        Ok(SubmitOutcome {
            verdict: Verdict::Wrong,
            duplicate: false,
            ..
        }) => Ok(
            Redirect::to(&format!("/rate/item/step?item={}", form.assignment_id)).into_response(),
        ),
        Ok(_) => Ok(Redirect::to("/rate/item").into_response()),
        // After the grace: nothing was stored, and the status says so (410).
        Err(crate::store::StoreError::Gone(_)) => Ok((
            axum::http::StatusCode::GONE,
            message(
                lang.texts(),
                lang.texts().time_ran_out_title,
                lang.texts().time_ran_out_message.into(),
                Some(("/rate/item", lang.texts().continue_label)),
            ),
        )
            .into_response()),
        Err(e) => Err(e.into()),
    }
}

/// `?item=ID` of the step page.
#[derive(Debug, Deserialize)]
struct StepQuery {
    item: Uuid,
}

/// After "wrong": the solution's steps as buttons, under the item's own countdown. Anything
/// that can no longer take a flag (time out, flagged, not "wrong", not theirs) goes on.
async fn step_page(
    State(state): State<AppState>,
    RaterPage(rater): RaterPage,
    lang: Lang,
    Query(query): Query<StepQuery>,
) -> Result<Response, WebError> {
    let now = state.clock.now_ms();
    let Some(item) = state.store.step_item(rater.id, query.item, now).await? else {
        return Ok(Redirect::to("/rate/item").into_response());
    };
    let remaining_ms = judging::remaining_ms(now, item.deadline);
    Ok(StepPage {
        t: lang.texts(),
        back: "/rate/item",
        item: query.item,
        steps: item.steps,
        remaining_ms,
        remaining_s: judging::seconds_shown(remaining_ms),
        time_limit_ms: item.time_limit_ms,
    }
    .into_response())
}

/// The step form: `step` is the chosen step, absent or `skip` for none.
#[derive(Debug, Deserialize)]
struct StepForm {
    item: Uuid,
    #[serde(default)]
    step: String,
}

/// Stores the flag (refused after the deadline or twice: the rater simply goes on).
async fn flag_step(
    State(state): State<AppState>,
    RaterPage(rater): RaterPage,
    Form(form): Form<StepForm>,
) -> Result<Response, WebError> {
    if let Ok(step) = form.step.trim().parse::<i64>() {
        match state
            .store
            .flag_first_wrong_step(rater.id, form.item, step, state.clock.now_ms())
            .await
        {
            Ok(()) | Err(crate::store::StoreError::Gone(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Redirect::to("/rate/item").into_response())
}

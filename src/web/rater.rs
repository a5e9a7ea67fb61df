//! Rater pages: invite link → instructions → one timed item at a time. Only the question, the
//! solution and the time left ever reach the browser.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::extract::{Form, Path, Query};
use axum_extra::extract::CookieJar;
use serde::Deserialize;
use uuid::Uuid;

use super::i18n::{Lang, Texts};
use super::session::{RATER_COOKIE, RATER_COOKIE_DAYS, RaterPage, secret_cookie};
use super::{AppState, WebError};
use std::collections::HashMap;

use axum::http::StatusCode;

use crate::answers::{self, AnswerInput, AnswerRules, TrialEvents};
use crate::domain::{AnswerFormat, JustificationRule, Verdict};
use crate::intake::{self, AnswerKind, BackgroundQuestion, IntakeStep};
use crate::judging::{self, RequestedVerdict};
use crate::panel::CompletionOutcome;
use crate::store::judging::{ServeOutcome, Stage, SubmitOutcome};
use crate::store::quality::PracticeFeedback;
use crate::store::raters::Rater;

/// Routes of the rater pages.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/r/{token}", get(enter))
        .route("/rate", get(instructions))
        .route("/rate/item", get(item).post(judge))
        .route("/rate/item/step", get(step_page).post(flag_step))
        .route("/rate/consent", post(answer_consent))
        .route("/rate/background", post(answer_background))
        .route("/rate/comprehension", post(answer_comprehension))
}

#[derive(Template, WebTemplate)]
#[template(path = "rater_instructions.html")]
struct InstructionsPage {
    t: &'static Texts,
    back: &'static str,
    name: String,
    time_limit_s: String,
    /// How this study asks for answers (confidence, probability, justification), in words.
    answer_rules: Vec<&'static str>,
    /// Whether the C / W keys apply (not in probability studies).
    show_keys: bool,
    /// The study's protocol in the rater's words: practice, screening, workload cap.
    protocol_rules: Vec<String>,
    /// The comprehension check, while it is due (it replaces the start link).
    comprehension: Option<ComprehensionCheck>,
}

/// The questions on the instructions, as the instructions page shows them (never the right
/// options: the server grades).
struct ComprehensionCheck {
    questions: Vec<ComprehensionShown>,
    attempts_left: i64,
    /// After a failed attempt: how many answers were not right.
    wrong: Option<usize>,
}

struct ComprehensionShown {
    text: String,
    options: Vec<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "rater_consent.html")]
struct ConsentPage {
    t: &'static Texts,
    back: &'static str,
    version: i64,
    consent_html: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "rater_background.html")]
struct BackgroundPage {
    t: &'static Texts,
    back: &'static str,
    questions: Vec<BackgroundShown>,
}

/// One background question on its page, with what was typed and what was wrong with it.
struct BackgroundShown {
    text: String,
    required: bool,
    options: Option<Vec<String>>,
    number: bool,
    value: String,
    problem: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "rater_item.html")]
struct ItemPage {
    t: &'static Texts,
    back: &'static str,
    /// "Item N", or the practice / qualification item's place in its set.
    heading: String,
    /// On study items: the item's number among the most the rater can meet, and their time
    /// on items left under the workload cap.
    progress: Option<String>,
    practice: bool,
    assignment_id: Uuid,
    question: String,
    solution: String,
    remaining_ms: i64,
    remaining_s: i64,
    time_limit_ms: i64,
    /// How the study asks raters to answer.
    answers: AnswerRules,
    confidence_levels: &'static [i64],
    /// What the rater had entered, shown again after a refused answer.
    draft: AnswerDraft,
    /// Why the last answer was refused (a 422 page).
    refused: Option<String>,
}

/// The answer fields as the rater left them, so a refused answer loses no input.
#[derive(Debug, Clone, Default)]
struct AnswerDraft {
    confidence: Option<i64>,
    probability: Option<i64>,
    justification: String,
}

impl AnswerDraft {
    fn has_confidence(&self, level: &i64) -> bool {
        self.confidence == Some(*level)
    }

    /// Where the probability slider stands: at 50 until the rater moves it (a study without
    /// even odds refuses 50, so the rater must lean one way).
    fn probability_shown(&self) -> i64 {
        self.probability.unwrap_or(50)
    }
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

/// `?wrong=K` after a failed comprehension attempt.
#[derive(Debug, Deserialize)]
struct InstructionsQuery {
    #[serde(default)]
    wrong: Option<usize>,
}

/// What the study asks before items, in order (consent, background questions), then the
/// instructions, with the comprehension check while it is due; unless an item is running:
/// reopening the link mid-item goes straight back to it (its clock runs on; the instructions
/// would only eat the time left).
async fn instructions(
    State(state): State<AppState>,
    RaterPage(rater): RaterPage,
    lang: Lang,
    Query(query): Query<InstructionsQuery>,
) -> Result<Response, WebError> {
    if state
        .store
        .has_running_item(rater.id, state.clock.now_ms())
        .await?
    {
        return Ok(Redirect::to("/rate/item").into_response());
    }
    let t = lang.texts();
    let step = state.store.intake_step(rater.id, rater.study_id).await?;
    let comprehension = match step {
        IntakeStep::Consent => {
            let intake = state.store.study_intake(rater.study_id).await?;
            let Some((version, markdown)) = intake.consent else {
                return Ok(Redirect::to("/rate").into_response());
            };
            return Ok(ConsentPage {
                t,
                back: "/rate",
                version,
                consent_html: intake::consent_html(&markdown),
            }
            .into_response());
        }
        IntakeStep::Background => {
            let questions = state
                .store
                .study_intake(rater.study_id)
                .await?
                .background()?;
            return Ok(background_page(t, &questions, &[], &[]).into_response());
        }
        IntakeStep::DeclinedConsent | IntakeStep::ScreenedOut => {
            return intake_ending(&state, &rater, step, t).await;
        }
        IntakeStep::Comprehension { attempts_left } => {
            let questions = state
                .store
                .study_intake(rater.study_id)
                .await?
                .comprehension()?;
            Some(ComprehensionCheck {
                questions: questions
                    .into_iter()
                    .map(|q| ComprehensionShown {
                        text: q.text,
                        options: q.options,
                    })
                    .collect(),
                attempts_left,
                wrong: query.wrong,
            })
        }
        IntakeStep::Ready => None,
    };
    let study = state.store.study(rater.study_id).await?;
    let seconds = study.time_limit_ms as f64 / 1000.0;
    // Items' limits vary in a study comparing limits: say from what to what.
    let time_limit_s = match (
        study.time_limits.arms.iter().min(),
        study.time_limits.arms.iter().max(),
    ) {
        (Some(shortest), Some(longest)) if study.time_limits.has_arms() => {
            t.time_range(*shortest as f64 / 1000.0, *longest as f64 / 1000.0)
        }
        _ => format!("{seconds}"),
    };
    let mut answer_rules = Vec::new();
    match study.answers.format {
        AnswerFormat::Binary => {}
        AnswerFormat::Confidence => answer_rules.push(t.confidence_rule),
        AnswerFormat::Probability => {
            answer_rules.push(t.probability_rule);
            if !study.answers.allow_even_odds {
                answer_rules.push(t.even_odds_rule);
            }
        }
    }
    match study.answers.justification {
        JustificationRule::NotAsked => {}
        JustificationRule::Optional => answer_rules.push(t.justification_optional_rule),
        JustificationRule::Required => answer_rules.push(t.justification_required_rule),
    }
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
        time_limit_s,
        show_keys: study.answers.format != AnswerFormat::Probability,
        answer_rules,
        comprehension,
    }
    .into_response())
}

/// The end page of a participant whose intake ended their participation, with its code.
async fn intake_ending(
    state: &AppState,
    rater: &Rater,
    step: IntakeStep,
    t: &'static Texts,
) -> Result<Response, WebError> {
    let (outcome, title, text) = match step {
        IntakeStep::DeclinedConsent => (
            CompletionOutcome::DeclinedConsent,
            t.declined_title,
            t.declined_message,
        ),
        _ => (
            CompletionOutcome::ScreenedOut,
            t.not_admitted_title,
            t.comprehension_failed_message,
        ),
    };
    ending(state, rater.study_id, outcome, t, title, text.into()).await
}

fn background_page(
    t: &'static Texts,
    questions: &[BackgroundQuestion],
    values: &[String],
    problems: &[(usize, intake::AnswerProblem)],
) -> BackgroundPage {
    BackgroundPage {
        t,
        back: "/rate",
        questions: questions
            .iter()
            .enumerate()
            .map(|(i, q)| BackgroundShown {
                text: q.text.clone(),
                required: q.required,
                options: match &q.kind {
                    AnswerKind::Choice(options) => Some(options.clone()),
                    _ => None,
                },
                number: matches!(q.kind, AnswerKind::Number { .. }),
                value: values.get(i).cloned().unwrap_or_default(),
                problem: problems
                    .iter()
                    .find(|(at, _)| *at == i)
                    .map(|(_, p)| t.answer_problem(*p)),
            })
            .collect(),
    }
}

/// The consent form: the version shown and the answer.
#[derive(Debug, Deserialize)]
struct ConsentForm {
    version: i64,
    answer: String,
}

/// Records consent or its refusal; a text changed since the page was shown is shown again.
async fn answer_consent(
    State(state): State<AppState>,
    RaterPage(rater): RaterPage,
    Form(form): Form<ConsentForm>,
) -> Result<Response, WebError> {
    let accept = match form.answer.as_str() {
        "accept" => true,
        "decline" => false,
        _ => return Err(WebError::BadRequest("answer: accept or decline".into())),
    };
    state
        .store
        .answer_consent(rater.id, form.version, accept, state.clock.now_ms())
        .await?;
    Ok(Redirect::to("/rate").into_response())
}

/// Stores the background answers, or shows the page again with what was typed and, beside
/// each question at fault, why (422; nothing stored).
async fn answer_background(
    State(state): State<AppState>,
    RaterPage(rater): RaterPage,
    lang: Lang,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    if state.store.intake_step(rater.id, rater.study_id).await? != IntakeStep::Background {
        return Ok(Redirect::to("/rate").into_response());
    }
    let questions = state
        .store
        .study_intake(rater.study_id)
        .await?
        .background()?;
    let values: Vec<String> = (0..questions.len())
        .map(|i| form.get(&format!("q{i}")).cloned().unwrap_or_default())
        .collect();
    match intake::read_background(&questions, &values) {
        Ok(answers) => {
            state
                .store
                .record_background(rater.id, &answers, state.clock.now_ms())
                .await?;
            Ok(Redirect::to("/rate").into_response())
        }
        Err(problems) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            background_page(lang.texts(), &questions, &values, &problems),
        )
            .into_response()),
    }
}

/// Grades a comprehension attempt on the server: all right starts the items; otherwise the
/// instructions again with how many were wrong, or, after the last attempt, the screen-out.
async fn answer_comprehension(
    State(state): State<AppState>,
    RaterPage(rater): RaterPage,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    if !matches!(
        state.store.intake_step(rater.id, rater.study_id).await?,
        IntakeStep::Comprehension { .. }
    ) {
        return Ok(Redirect::to("/rate").into_response());
    }
    let questions = state
        .store
        .study_intake(rater.study_id)
        .await?
        .comprehension()?;
    let chosen: Vec<Option<usize>> = (0..questions.len())
        .map(|i| {
            form.get(&format!("q{i}"))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect();
    let wrong = intake::wrong_answers(&questions, &chosen);
    state
        .store
        .record_comprehension(rater.id, wrong == 0, state.clock.now_ms())
        .await?;
    Ok(if wrong == 0 {
        Redirect::to("/rate/item")
    } else {
        Redirect::to(&format!("/rate?wrong={wrong}"))
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
    let now = state.clock.now_ms();
    let outcome = state
        .store
        .serve_next(rater.id, rater.study_id, now, query.go_on.is_some())
        .await?;
    item_response(&state, &rater, lang, now, outcome, None).await
}

/// The page for a serving outcome; `refused` holds a refused answer's reason and the rater's
/// input, shown again with the same item (422).
async fn item_response(
    state: &AppState,
    rater: &Rater,
    lang: Lang,
    now: i64,
    outcome: ServeOutcome,
    refused: Option<(String, AnswerDraft)>,
) -> Result<Response, WebError> {
    let t = lang.texts();
    let rater = rater.clone();
    let state = state.clone();
    Ok(match outcome {
        ServeOutcome::Item(item) => {
            let remaining_ms = judging::remaining_ms(now, item.deadline);
            let heading = match item.stage {
                Stage::Practice { number, of } => t.practice_item(number, of),
                Stage::Screening { number, of } => t.screening_item(number, of),
                Stage::Session => t.item(item.items_done + 1),
            };
            let progress = match item.stage {
                Stage::Session => {
                    let (most, time_left_ms) = state
                        .store
                        .session_progress(rater.id, rater.study_id)
                        .await?;
                    Some(t.item_progress(item.items_done + 1, most, time_left_ms))
                }
                _ => None,
            };
            let page = ItemPage {
                t,
                back: "/rate/item",
                practice: matches!(item.stage, Stage::Practice { .. }),
                heading,
                progress,
                assignment_id: item.assignment_id,
                question: item.question,
                solution: item.solution,
                remaining_ms,
                remaining_s: judging::seconds_shown(remaining_ms),
                time_limit_ms: item.time_limit_ms,
                answers: state.store.rater_answer_rules(rater.id).await?,
                confidence_levels: &answers::CONFIDENCE_LEVELS,
                draft: refused.as_ref().map(|(_, d)| d.clone()).unwrap_or_default(),
                refused: refused.as_ref().map(|(why, _)| why.clone()),
            };
            if refused.is_some() {
                (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
            } else {
                page.into_response()
            }
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
        ServeOutcome::FailedQuality => {
            let text = t.failed_quality_message.into();
            let outcome = CompletionOutcome::FailedQuality;
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
        ServeOutcome::Intake(step @ (IntakeStep::DeclinedConsent | IntakeStep::ScreenedOut)) => {
            intake_ending(&state, &rater, step, t).await?
        }
        ServeOutcome::Intake(_) => Redirect::to("/rate").into_response(),
        ServeOutcome::Break { items_done } => message(
            t,
            t.break_title,
            t.break_message(items_done),
            Some(("/rate/item?continue=1", t.continue_label)),
        ),
    })
}

/// The form the item page posts. Numbers arrive as text and are read by [`JudgeForm::input`],
/// so a malformed one is refused with the item shown again, not a bare 400.
#[derive(Debug, Deserialize)]
struct JudgeForm {
    assignment_id: Uuid,
    /// `correct`, `wrong`, `timeout`, or `answer` (a probability study's send button).
    #[serde(default)]
    verdict: String,
    #[serde(default)]
    client_elapsed_ms: String,
    #[serde(default)]
    confidence: String,
    #[serde(default)]
    probability: String,
    #[serde(default)]
    justification: String,
    #[serde(default)]
    hidden_count: String,
    #[serde(default)]
    hidden_ms: String,
    #[serde(default)]
    blur_count: String,
    #[serde(default)]
    copy_count: String,
    #[serde(default)]
    paste_count: String,
}

/// A whole number from a form field; empty is `None`.
fn form_number(text: &str, what: &str) -> Result<Option<i64>, String> {
    match text.trim() {
        "" => Ok(None),
        text => text
            .parse()
            .map(Some)
            .map_err(|_| format!("{what}: {text:?} is not a whole number")),
    }
}

impl JudgeForm {
    /// What the rater sent, or why it cannot be read.
    fn input(&self) -> Result<AnswerInput, String> {
        let verdict = match self.verdict.trim() {
            "" | "answer" => None,
            text => Some(text.parse::<RequestedVerdict>()?),
        };
        // The page's counts: all of them or none (a page without its script sends none).
        let counts = [
            &self.hidden_count,
            &self.hidden_ms,
            &self.blur_count,
            &self.copy_count,
            &self.paste_count,
        ]
        .map(|field| form_number(field, "an event count").ok().flatten());
        let events = match counts {
            [
                Some(hidden_count),
                Some(hidden_ms),
                Some(blur_count),
                Some(copy_count),
                Some(paste_count),
            ] => Some(TrialEvents {
                hidden_count,
                hidden_ms,
                blur_count,
                copy_count,
                paste_count,
            }),
            _ => None,
        };
        Ok(AnswerInput {
            verdict,
            confidence: form_number(&self.confidence, "confidence")?,
            probability: form_number(&self.probability, "probability")?,
            justification: Some(self.justification.clone()),
            events,
        })
    }

    fn draft(&self) -> AnswerDraft {
        AnswerDraft {
            confidence: self.confidence.trim().parse().ok(),
            probability: self.probability.trim().parse().ok(),
            justification: self.justification.clone(),
        }
    }
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
    let submitted = match form.input() {
        Ok(input) => {
            state
                .store
                .submit_judgement(rater.id, form.assignment_id, input, client_elapsed_ms, now)
                .await
        }
        Err(problem) => Err(crate::store::StoreError::Invalid(problem)),
    };
    match submitted {
        // Refused by the study's answer rules: nothing stored; the same item, the same
        // deadline, and what the rater entered, with the reason.
        Err(crate::store::StoreError::Invalid(problem)) => {
            let outcome = state
                .store
                .serve_again(rater.id, rater.study_id, now)
                .await?;
            item_response(
                &state,
                &rater,
                lang,
                now,
                outcome,
                Some((problem, form.draft())),
            )
            .await
        }
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

//! Panel entry (see [`crate::panel`]): participants arrive at `/s/{link}` with the panel's
//! IDs in the query string and go on as raters; admins open a study's link and choose the
//! parameter names on `/studies/{id}/panel`.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::multipart::MultipartError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use serde::Deserialize;
use uuid::Uuid;

use super::admin::link_base;
use super::extract::input_problem;
use super::extract::{Form, Path, Query};
use super::session::{Admin, AdminScript, RATER_COOKIE, RATER_COOKIE_DAYS, secret_cookie};
use super::times::Timestamp;
use super::{ApiError, AppState, WebError};
use crate::bonus::{self, BonusRule};
use crate::panel::{self, Completion, CompletionOutcome, PanelParams};
use crate::store::StoreError;
use crate::store::panels::{PanelEntryOutcome, StudyPanel};

/// Routes of panel entry and its admin page.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/s/{link}", get(enter))
        .route("/studies/{id}/panel", get(panel_page).post(save_panel))
        .route("/studies/{id}/panel/completions", post(save_completions))
        .route("/studies/{id}/panel/bonus", post(save_bonus_rule))
        .route("/studies/{id}/panel/returns", post(upload_returns))
        .route("/studies/{id}/panel/delete", post(delete_participant))
        .route("/studies/{id}/panel/bonuses.csv", post(export_bonuses))
        .route("/studies/{id}/panel/intake", post(save_intake))
        .route("/api/studies/{id}/panel/returns", post(report_returns))
        .route("/studies/{id}/panel/review.csv", get(review_list))
}

/// A participant opening the study's panel link: the same participant ID always becomes the
/// same rater (any browser); a browser already taking part in this study as someone else is
/// told so rather than silently switched.
async fn enter(
    State(state): State<AppState>,
    Path(link): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    jar: CookieJar,
) -> Result<Response, WebError> {
    let (study_id, params) = state.store.panel_params(&link).await?;
    let entry =
        panel::read_entry(&params, &query).map_err(|e| WebError::BadRequest(e.to_string()))?;
    if let Some(cookie) = jar.get(RATER_COOKIE)
        && let Some((held_study, held_id)) = state.store.token_holder(cookie.value()).await?
        && held_study == study_id
        && held_id.as_deref() != Some(entry.participant_id.as_str())
    {
        return Err(WebError::Conflict(match held_id {
            Some(other) => format!(
                "This browser is already taking part in this study as participant {other}. To take part as {}, use another browser or a private window; to go on as {other}, close this page and open the study again from the panel.",
                entry.participant_id
            ),
            None => "This browser is already taking part in this study through a personal invite link. Use another browser or a private window to take part through the panel.".into(),
        }));
    }
    match state
        .store
        .enter_panel(&link, &entry, state.clock.now_ms())
        .await?
    {
        PanelEntryOutcome::Entered { token, .. } => {
            let jar = jar.add(secret_cookie(
                RATER_COOKIE,
                token,
                state.config.secure_cookies,
                time::Duration::days(RATER_COOKIE_DAYS),
            ));
            Ok((jar, Redirect::to("/rate")).into_response())
        }
        PanelEntryOutcome::Closed => Err(WebError::Gone(
            "This study is closed and is not taking new participants. Please return it on the panel's page.".into(),
        )),
        PanelEntryOutcome::Full => Err(WebError::Gone(
            "This study is full: all its places are taken. Please return it on the panel's page.".into(),
        )),
        PanelEntryOutcome::Revoked => Err(WebError::Gone(
            "Your place in this study has ended. If you think this is a mistake, please message the researcher through the panel.".into(),
        )),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "panel.html")]
struct PanelPage {
    username: String,
    is_admin: bool,
    study_id: Uuid,
    study_name: String,
    /// The link and its entry URL, once opened.
    panel: Option<(StudyPanel, String)>,
    /// The form's values.
    id_param: String,
    study_param: String,
    session_param: String,
    places: String,
    idle_minutes: String,
    error: Option<String>,
    /// What the last upload of the panel's submissions export did, or why it was refused.
    returns_outcome: Option<String>,
    returns_error: Option<String>,
    /// Participants' data deleted on request: (when, by whom, judgements, quality answers).
    deletions: Vec<(Timestamp, String, i64, i64)>,
    deletion_outcome: Option<String>,
    deletion_error: Option<String>,
    /// One row per outcome of the completion-code form.
    completions: Vec<CompletionRow>,
    completions_error: Option<String>,
    /// Whether failing the silent gold items ends a participant's study.
    gold_failure_ends: bool,
    /// The study has silent gold items.
    has_gold: bool,
    /// The bonus rule's three amounts as the form shows them.
    bonus: [String; 3],
    bonus_error: Option<String>,
    /// The consent text and question lists as the form shows them.
    intake: IntakeForm,
    /// The consent version participants are shown now.
    consent_version: Option<i64>,
    intake_error: Option<String>,
}

/// An outcome's fields on the completion-code form.
struct CompletionRow {
    name: &'static str,
    label: &'static str,
    code: String,
    redirect_url: String,
}

impl CompletionRow {
    fn rows(saved: &[(CompletionOutcome, Completion)]) -> Vec<CompletionRow> {
        CompletionOutcome::ALL
            .into_iter()
            .map(|outcome| {
                let found = saved.iter().find(|(o, _)| *o == outcome).map(|(_, c)| c);
                CompletionRow {
                    name: outcome.as_str(),
                    label: outcome.label(),
                    code: found.map(|c| c.code.clone()).unwrap_or_default(),
                    redirect_url: found
                        .and_then(|c| c.redirect_url.clone())
                        .unwrap_or_default(),
                }
            })
            .collect()
    }
}

impl PanelPage {
    /// The page for `study` with the form showing `form` (the saved names, or what was typed),
    /// the link's entry URL built on this server's public address.
    async fn new(
        state: &AppState,
        username: String,
        study_id: Uuid,
        headers: &HeaderMap,
        form: Option<PanelForm>,
        error: Option<String>,
    ) -> Result<PanelPage, WebError> {
        let study = state.store.study(study_id).await?;
        let panel = state.store.study_panel(study_id).await?;
        let form = form.unwrap_or_else(|| {
            let params = panel.as_ref().map(|p| p.params.clone()).unwrap_or_default();
            PanelForm {
                id_param: params.id_param,
                study_param: params.study_param.unwrap_or_default(),
                session_param: params.session_param.unwrap_or_default(),
                places: panel
                    .as_ref()
                    .and_then(|p| p.places)
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                idle_minutes: panel
                    .as_ref()
                    .and_then(|p| p.idle_minutes)
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
            }
        });
        let base = link_base(&state.config, headers);
        let completions = CompletionRow::rows(&state.store.completions(study_id).await?);
        let rule = state.store.bonus_rule(study_id).await?;
        let intake = state.store.study_intake(study_id).await?;
        let bonus = [
            rule.fixed_cents,
            rule.per_judgement_cents,
            rule.per_correct_cents,
        ]
        .map(bonus::format_cents);
        Ok(PanelPage {
            username,
            is_admin: true,
            study_id,
            study_name: study.name,
            panel: panel.map(|p| {
                let url = p.params.entry_url(&base, &p.link);
                (p, url)
            }),
            id_param: form.id_param,
            study_param: form.study_param,
            session_param: form.session_param,
            places: form.places,
            idle_minutes: form.idle_minutes,
            error,
            completions,
            completions_error: None,
            gold_failure_ends: state.store.gold_failure_ends(study_id).await?,
            has_gold: study.protocol.gold_rate > 0.0,
            bonus,
            bonus_error: None,
            returns_outcome: None,
            returns_error: None,
            deletions: state
                .store
                .data_deletions(study_id)
                .await?
                .into_iter()
                .map(|d| {
                    (
                        Timestamp(d.deleted_at),
                        d.deleted_by,
                        d.judgements,
                        d.quality_answers,
                    )
                })
                .collect(),
            deletion_outcome: None,
            deletion_error: None,
            consent_version: intake.consent.as_ref().map(|(v, _)| *v),
            intake: IntakeForm {
                consent: intake.consent.map(|(_, text)| text).unwrap_or_default(),
                comprehension: intake.comprehension_source,
                background: intake.background_source,
            },
            intake_error: None,
        })
    }
}

async fn panel_page(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<PanelPage, WebError> {
    PanelPage::new(&state, user.username, id, &headers, None, None).await
}

#[derive(Debug, Deserialize)]
struct PanelForm {
    id_param: String,
    #[serde(default)]
    study_param: String,
    #[serde(default)]
    session_param: String,
    /// Blank: no limit.
    #[serde(default)]
    places: String,
    /// Minutes; blank: never.
    #[serde(default)]
    idle_minutes: String,
}

/// Opens the link (or renames its parameters); bad names re-render the form with the reason.
async fn save_panel(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Form(form): Form<PanelForm>,
) -> Result<Response, WebError> {
    let checked = PanelParams::parse(&form.id_param, &form.study_param, &form.session_param)
        .and_then(|params| {
            Ok((
                params,
                panel::parse_places(&form.places)?,
                panel::parse_idle_minutes(&form.idle_minutes)?,
            ))
        });
    match checked {
        Ok((params, places, idle_minutes)) => {
            state
                .store
                .open_panel(id, &params, places, idle_minutes, state.clock.now_ms())
                .await?;
            Ok(Redirect::to(&format!("/studies/{id}/panel")).into_response())
        }
        Err(message) => {
            let page = PanelPage::new(
                &state,
                user.username,
                id,
                &headers,
                Some(form),
                Some(message),
            )
            .await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// The completion-code form: `{outcome}_code` and `{outcome}_url` per outcome. Checked whole:
/// one bad outcome refuses the form (422, the fields as typed) and nothing changes.
async fn save_completions(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let field = |name: String| form.get(&name).map(String::as_str).unwrap_or("");
    let mut codes = Vec::new();
    let mut problems = Vec::new();
    for outcome in CompletionOutcome::ALL {
        let name = outcome.as_str();
        match Completion::parse(
            outcome,
            field(format!("{name}_code")),
            field(format!("{name}_url")),
        ) {
            Ok(Some(completion)) => codes.push((outcome, completion)),
            Ok(None) => {}
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        state.store.set_completions(id, &codes).await?;
        state
            .store
            .set_gold_failure_ends(id, form.contains_key("gold_failure_ends"))
            .await?;
        return Ok(Redirect::to(&format!("/studies/{id}/panel")).into_response());
    }
    let mut page = PanelPage::new(&state, user.username, id, &headers, None, None).await?;
    for row in &mut page.completions {
        row.code = field(format!("{}_code", row.name)).to_string();
        row.redirect_url = field(format!("{}_url", row.name)).to_string();
    }
    page.gold_failure_ends = form.contains_key("gold_failure_ends");
    page.completions_error = Some(problems.join("\n"));
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

#[derive(Debug, Deserialize)]
struct BonusForm {
    #[serde(default)]
    fixed: String,
    #[serde(default)]
    per_judgement: String,
    #[serde(default)]
    per_correct: String,
}

/// Sets the study's bonus rule; a bad amount re-renders the form with it named (422).
async fn save_bonus_rule(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Form(form): Form<BonusForm>,
) -> Result<Response, WebError> {
    match BonusRule::parse(&form.fixed, &form.per_judgement, &form.per_correct) {
        Ok(rule) => {
            state
                .store
                .set_bonus_rule(id, rule, state.clock.now_ms())
                .await?;
            Ok(Redirect::to(&format!("/studies/{id}/panel#bonuses")).into_response())
        }
        Err(message) => {
            let mut page = PanelPage::new(&state, user.username, id, &headers, None, None).await?;
            page.bonus = [form.fixed, form.per_judgement, form.per_correct];
            page.bonus_error = Some(message);
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// Downloads the panel's bulk-bonus CSV of what is owed beyond earlier exports, and records
/// it as paid: a POST, because it changes what the next export lists.
async fn export_bonuses(
    State(state): State<AppState>,
    Admin(_user): Admin,
    Path(id): Path<Uuid>,
) -> Result<Response, WebError> {
    let now = state.clock.now_ms();
    let rows = state.store.export_bonuses(id, now).await?;
    Ok(super::csv_attachment(
        &format!("bonuses-{id}-{now}.csv"),
        bonus::bonus_csv(&rows),
    ))
}

/// The panel's submissions export (CSV, field `file`): participants it reports as returned or
/// timed out give their places back. A refused file changes nothing and says why (422).
async fn upload_returns(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Result<Response, WebError> {
    let unreadable = |e: MultipartError| {
        WebError::BadRequest(format!("the upload could not be read: {}", e.body_text()))
    };
    let mut file = None;
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        if field.name() == Some("file") {
            file = Some(field.bytes().await.map_err(unreadable)?);
        }
    }
    let applied = match file.filter(|bytes| !bytes.is_empty()) {
        None => Err("choose the panel's submissions export (a CSV file) first".to_string()),
        Some(bytes) => match panel::read_submissions(&bytes) {
            Err(problem) => Err(problem),
            Ok(submissions) => match state
                .store
                .apply_returns(id, &submissions, state.clock.now_ms())
                .await
            {
                Ok(marked) => Ok((marked, submissions.returned.len())),
                Err(StoreError::Invalid(problem)) => Err(problem),
                Err(e) => return Err(e.into()),
            },
        },
    };
    let mut page = PanelPage::new(&state, user.username, id, &headers, None, None).await?;
    let status = match applied {
        Ok((marked, listed)) => {
            page.returns_outcome = Some(format!(
                "{listed} participant{} in the file returned or timed out; {marked} newly marked and their places freed.",
                if listed == 1 { "" } else { "s" }
            ));
            StatusCode::OK
        }
        Err(problem) => {
            page.returns_error = Some(problem);
            StatusCode::UNPROCESSABLE_ENTITY
        }
    };
    Ok((status, page).into_response())
}

#[derive(Debug, Deserialize)]
struct DeletionForm {
    #[serde(default)]
    participant_id: String,
}

/// Deletes one participant's data on their request (see [`crate::store::Store::delete_participant_data`])
/// and logs who did it; an ID that is not a participant of this study changes nothing.
async fn delete_participant(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Form(form): Form<DeletionForm>,
) -> Result<Response, WebError> {
    let participant = form.participant_id.trim();
    let deleted = if participant.is_empty() {
        Err("give the participant ID whose data is to be deleted".to_string())
    } else {
        match state
            .store
            .delete_participant_data(id, participant, &user.username, state.clock.now_ms())
            .await
        {
            Ok(deletion) => {
                tracing::info!(
                    study = %id,
                    by = %user.username,
                    judgements = deletion.judgements,
                    quality_answers = deletion.quality_answers,
                    "deleted a participant's data on request"
                );
                Ok(deletion)
            }
            Err(StoreError::NotFound(_)) => Err(format!(
                "{participant} is not a participant of this study (or their data was already deleted); nothing was deleted"
            )),
            Err(e) => return Err(e.into()),
        }
    };
    let mut page = PanelPage::new(&state, user.username, id, &headers, None, None).await?;
    let status = match deleted {
        Ok(d) => {
            page.deletion_outcome = Some(format!(
                "Deleted {participant}'s data: {} judgement{} and {} qualification, practice or gold answer{}. The reports no longer count them.",
                d.judgements,
                if d.judgements == 1 { "" } else { "s" },
                d.quality_answers,
                if d.quality_answers == 1 { "" } else { "s" }
            ));
            StatusCode::OK
        }
        Err(problem) => {
            page.deletion_error = Some(problem);
            StatusCode::UNPROCESSABLE_ENTITY
        }
    };
    Ok((status, page).into_response())
}

/// The consent text and the two question lists (see [`crate::intake`] for their format).
#[derive(Debug, Deserialize, Default)]
struct IntakeForm {
    #[serde(default)]
    consent: String,
    #[serde(default)]
    comprehension: String,
    #[serde(default)]
    background: String,
}

/// Saves what every participant is asked before items; a list that does not read is refused
/// whole with its line named (422, the fields as typed) and nothing changes.
async fn save_intake(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Form(form): Form<IntakeForm>,
) -> Result<Response, WebError> {
    match state
        .store
        .set_study_intake(
            id,
            &form.consent,
            &form.comprehension,
            &form.background,
            state.clock.now_ms(),
        )
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/studies/{id}/panel#intake")).into_response()),
        Err(StoreError::Invalid(problem)) => {
            let mut page = PanelPage::new(&state, user.username, id, &headers, None, None).await?;
            page.intake = form;
            page.intake_error = Some(problem);
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /api/studies/{id}/panel/returns`: what a script reads from the panel's API.
#[derive(Debug, Deserialize)]
struct ReturnsRequest {
    participants: Vec<panel::ReportedReturn>,
}

/// Returned and timed-out participants reported by a script (an admin's API token): the same
/// as the submissions upload, all or nothing; answers `{"listed", "newly_marked"}`.
async fn report_returns(
    State(state): State<AppState>,
    AdminScript(user): AdminScript,
    Path(id): Path<Uuid>,
    request: Result<Json<ReturnsRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(request) = request.map_err(|e| WebError::BadRequest(input_problem(&e.body_text())))?;
    let submissions =
        panel::read_reported_returns(&request.participants).map_err(WebError::Unprocessable)?;
    let marked = state
        .store
        .apply_returns(id, &submissions, state.clock.now_ms())
        .await?;
    tracing::info!(study = %id, by = %user.username, marked, "returns reported through the API");
    Ok(Json(serde_json::json!({
        "listed": submissions.returned.len(),
        "newly_marked": marked,
    })))
}

/// The approve/reject list (`participant_id,decision,reason`) from each participant's quality
/// outcomes (see [`panel::review_decision`]), to act on in the panel's submissions page.
async fn review_list(
    State(state): State<AppState>,
    Admin(_user): Admin,
    Path(id): Path<Uuid>,
) -> Result<Response, WebError> {
    state.store.study(id).await?;
    let records = state.store.participant_records(id).await?;
    let body = panel::review_csv(&records)
        .map_err(|e| WebError::Internal(format!("could not write the review list: {e}")))?;
    Ok(super::csv_attachment(&format!("review-{id}.csv"), body))
}

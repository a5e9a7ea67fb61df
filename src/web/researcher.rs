//! Staff pages for researchers (and admins): log in, list studies, create a study, watch its
//! progress, open or close it, and see (and ask for) the verifier's scores of its solutions.

use std::collections::HashSet;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::extract::{Form, MultiForm, Path, Query};
use axum_extra::extract::CookieJar;
use serde::Deserialize;
use uuid::Uuid;

use super::session::{Requester, SESSION_COOKIE, Staff, secret_cookie};
use super::times::Timestamp;
use super::{AppState, WebError};
use crate::answers::AnswerRules;
use crate::arms::TimeLimits;
use crate::auth;
use crate::clock::format_ms;
use crate::domain::{AnswerFormat, ArmDesign, JustificationRule, ProverRole, StudyStatus};
use crate::judging::{self, CompletionShortfall};
use crate::metrics::{ScoreSummary, score_summary};
use crate::ml::sampling::SamplingParams;
use crate::quality::RaterProtocol;
use crate::sample_size::Statistic;
use crate::store::access::LoginAttempt;
use crate::store::catalog::{CheckpointInfo, ProblemSetInfo};
use crate::store::jobs::JobView;
use crate::store::models::CheckpointDetails;
use crate::store::quality::RaterQuality;
use crate::store::raters::RaterProgress;
use crate::store::studies::{Study, StudyProgress, StudySetup, StudySpec};
use crate::study_edit::{self, copy_name};
use crate::worker::generation::{GenerationParams, GenerationRequest, create_generated_study};

/// Routes of the researcher pages.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/studies", get(studies).post(create_study))
        .route("/studies/new", get(new_study))
        .route("/studies/{id}", get(study))
        .route("/studies/{id}/edit", get(edit_page).post(save_edit))
        .route("/studies/{id}/status", post(set_status))
        .route("/studies/{id}/score", post(score_study))
}

async fn home(jar: CookieJar) -> Redirect {
    if jar.get(SESSION_COOKIE).is_some() {
        Redirect::to("/studies")
    } else {
        Redirect::to("/login")
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<String>,
}

async fn login_page() -> LoginPage {
    LoginPage { error: None }
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

/// The most characters a username may have at the login form; longer ones are refused before
/// they reach the throttle table.
const MAX_USERNAME_CHARS: usize = 200;

async fn login(
    State(state): State<AppState>,
    Requester(client): Requester,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Result<Response, WebError> {
    let username = form.username.trim();
    if username.is_empty() || username.chars().count() > MAX_USERNAME_CHARS {
        let page = LoginPage {
            error: Some("Enter your username and password.".into()),
        };
        return Ok((StatusCode::BAD_REQUEST, page).into_response());
    }
    let now = state.clock.now_ms();
    // Throttled per (account, address) and per address: someone else's wrong passwords from
    // elsewhere never block this login. While a key waits, the password is not even checked.
    let attempt = match state
        .store
        .count_login_attempt(username, &client.address, now)
        .await?
    {
        LoginAttempt::Counted(attempt) => attempt,
        LoginAttempt::Wait(wait_ms) => {
            let page = LoginPage {
                error: Some(format!(
                    "Too many failed logins from your address: try again in {} (after {} UTC).",
                    auth::wait_text(wait_ms),
                    // Whole seconds, so the time reads "2026-11-03 14:05:10".
                    format_ms((now + wait_ms + 999) / 1000 * 1000)
                        .replace('T', " ")
                        .trim_end_matches('Z'),
                )),
            };
            let retry_after = auth::retry_after_secs(wait_ms).to_string();
            return Ok((
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, retry_after)],
                page,
            )
                .into_response());
        }
    };
    let found = state.store.user_with_hash(username).await?;
    // Hash even for unknown users so response time does not reveal which usernames exist.
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), hash),
        None => (
            None,
            String::from(
                "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ),
        ),
    };
    let password = form.password;
    let valid = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    // A failure stays counted (unknown usernames alike, so throttling reveals nothing).
    let Some(user) = user.filter(|_| valid) else {
        let page = LoginPage {
            error: Some("Unknown username or wrong password.".into()),
        };
        return Ok((StatusCode::UNAUTHORIZED, page).into_response());
    };
    state
        .store
        .login_succeeded(username, &client.address, attempt)
        .await?;
    let token = auth::new_token();
    state
        .store
        .create_session(&auth::token_hash(&token), user.id, now, &client)
        .await?;
    let jar = jar.add(secret_cookie(
        SESSION_COOKIE,
        token,
        state.config.secure_cookies,
        time::Duration::milliseconds(crate::store::users::SESSION_TTL_MS),
    ));
    Ok((jar, Redirect::to("/studies")).into_response())
}

async fn logout(State(state): State<AppState>, jar: CookieJar) -> Result<Response, WebError> {
    if let Some(cookie) = jar.get(SESSION_COOKIE) {
        state
            .store
            .delete_session(&auth::token_hash(cookie.value()))
            .await?;
    }
    Ok((jar.remove(SESSION_COOKIE), Redirect::to("/login")).into_response())
}

struct StudyRow {
    study: Study,
    time_limit: String,
    progress: StudyProgress,
}

/// Milliseconds as seconds for people: 45000 → "45 s", 4500 → "4.5 s".
fn seconds_text(ms: i64) -> String {
    format!("{} s", ms as f64 / 1000.0)
}

#[derive(Template, WebTemplate)]
#[template(path = "studies.html")]
struct StudiesPage {
    username: String,
    is_admin: bool,
    studies: Vec<StudyRow>,
    problem_sets: Vec<ProblemSetInfo>,
    checkpoints: Vec<CheckpointInfo>,
}

async fn studies(State(state): State<AppState>, staff: Staff) -> Result<StudiesPage, WebError> {
    let mut rows = Vec::new();
    for study in state.store.studies().await? {
        let progress = state.store.study_progress(study.id).await?;
        rows.push(StudyRow {
            time_limit: seconds_text(study.time_limit_ms),
            study,
            progress,
        });
    }
    Ok(StudiesPage {
        is_admin: staff.is_admin(),
        username: staff.0.username,
        studies: rows,
        problem_sets: state.store.problem_sets().await?,
        checkpoints: state.store.checkpoints().await?,
    })
}

/// The values a study form shows: defaults for a new study, a study's own settings when it is
/// duplicated or edited. Numbers are kept as the text the inputs show.
#[derive(Debug, Clone, PartialEq)]
struct StudyDraft {
    name: String,
    problem_set_id: Option<Uuid>,
    checkpoint_ids: Vec<Uuid>,
    roles: Vec<ProverRole>,
    /// Solutions are generated by a job (else judged as imported).
    generate: bool,
    time_limit_s: String,
    judgements_per_solution: i64,
    max_problems: String,
    practice_items: i64,
    screening_items: i64,
    screening_pass_percent: String,
    gold_items: i64,
    gold_percent: String,
    max_hours: String,
    break_every: i64,
    samples_per_role: usize,
    temperature: String,
    seed: String,
    /// The original's grace, carried by a duplicate (empty: the default).
    reclaim_grace_s: String,
    answers: AnswerRules,
    /// The arms in seconds, comma-separated ("15, 30, 45"); empty: none.
    time_limit_arms_s: String,
    arm_design: ArmDesign,
    arm_block_items: i64,
}

/// A float for an input: at most six decimals, no trailing zeros ("45", "0.7", "12.5").
fn input_number(value: f64) -> String {
    let rounded = (value * 1e6).round() / 1e6;
    format!("{rounded}")
}

impl Default for StudyDraft {
    fn default() -> Self {
        StudyDraft {
            name: String::new(),
            problem_set_id: None,
            checkpoint_ids: Vec::new(),
            roles: Vec::new(),
            generate: false,
            time_limit_s: input_number(judging::DEFAULT_TIME_LIMIT_MS as f64 / 1000.0),
            judgements_per_solution: judging::DEFAULT_JUDGEMENTS_PER_SOLUTION,
            max_problems: String::new(),
            practice_items: 0,
            screening_items: 0,
            screening_pass_percent: "80".into(),
            gold_items: 0,
            gold_percent: "0".into(),
            max_hours: input_number(crate::quality::DEFAULT_MAX_RATER_MS as f64 / 3_600_000.0),
            break_every: 0,
            samples_per_role: 1,
            temperature: input_number(SamplingParams::default().temperature),
            seed: String::new(),
            reclaim_grace_s: String::new(),
            answers: AnswerRules::default(),
            time_limit_arms_s: String::new(),
            arm_design: ArmDesign::Between,
            arm_block_items: TimeLimits::default().block_items,
        }
    }
}

impl StudyDraft {
    /// A study's settings as the form shows them; `generation` is its generation job's
    /// request, when a job writes its solutions.
    fn of(spec: &StudySpec, generation: Option<&GenerationParams>) -> Self {
        let p = &spec.protocol;
        let mut draft = StudyDraft {
            name: spec.name.clone(),
            problem_set_id: Some(spec.problem_set_id),
            checkpoint_ids: spec.checkpoint_ids.clone(),
            roles: spec.roles.clone(),
            generate: generation.is_some(),
            time_limit_s: input_number(spec.time_limit_ms as f64 / 1000.0),
            judgements_per_solution: spec.judgements_per_solution,
            max_problems: spec.max_problems.map(|n| n.to_string()).unwrap_or_default(),
            practice_items: p.practice_items,
            screening_items: p.screening_items,
            screening_pass_percent: input_number(100.0 * p.screening_pass_accuracy),
            gold_items: p.gold_items,
            gold_percent: input_number(100.0 * p.gold_rate),
            max_hours: input_number(p.max_rater_ms as f64 / 3_600_000.0),
            break_every: p.break_every,
            reclaim_grace_s: input_number(spec.reclaim_grace_ms as f64 / 1000.0),
            answers: spec.answers,
            time_limit_arms_s: spec
                .time_limits
                .arms
                .iter()
                .map(|ms| input_number(*ms as f64 / 1000.0))
                .collect::<Vec<_>>()
                .join(", "),
            arm_design: spec.time_limits.design,
            arm_block_items: spec.time_limits.block_items,
            ..StudyDraft::default()
        };
        if let Some(g) = generation {
            draft.samples_per_role = g.samples_per_role;
            draft.temperature = input_number(g.sampling.temperature);
            draft.seed = g.seed.to_string();
        }
        draft
    }

    fn has_checkpoint(&self, id: &Uuid) -> bool {
        self.checkpoint_ids.contains(id)
    }

    fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r.as_str() == role)
    }

    fn is_set(&self, id: &Uuid) -> bool {
        self.problem_set_id.as_ref() == Some(id)
    }
}

/// What a study form is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FormPurpose {
    /// New study, or a duplicate of one (pre-filled): posts to `/studies`.
    Create,
    /// Edit an existing study: posts to `/studies/{id}/edit`.
    Edit,
}

#[derive(Template, WebTemplate)]
#[template(path = "study_new.html")]
struct StudyFormPage {
    username: String,
    is_admin: bool,
    problem_sets: Vec<ProblemSetInfo>,
    checkpoints: Vec<CheckpointDetails>,
    purpose: FormPurpose,
    /// The page's heading.
    heading: String,
    /// Where the form posts.
    action: String,
    /// The study duplicated or edited: (id, name).
    source: Option<(Uuid, String)>,
    draft: StudyDraft,
    /// Why the time limit, judgements per solution and quality items are read-only, if so.
    design_frozen: Option<String>,
    /// Why the problems, provers and roles are read-only, if so.
    selection_frozen: Option<String>,
    /// The read-only selection, in words: (setting, value).
    selection_rows: Vec<(&'static str, String)>,
}

impl StudyFormPage {
    fn is_edit(&self) -> bool {
        self.purpose == FormPurpose::Edit
    }
}

/// `?from=ID` pre-fills New study with that study's settings (Duplicate).
#[derive(Debug, Deserialize)]
struct NewStudyQuery {
    #[serde(default)]
    from: Option<Uuid>,
}

/// A study's settings as the forms show them, with its generation request if it has one.
async fn stored_draft(state: &AppState, id: Uuid) -> Result<(StudySetup, StudyDraft), WebError> {
    let setup = state.store.study_setup(id).await?;
    let generation: Option<GenerationParams> = setup
        .generation_params
        .clone()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| WebError::Internal(format!("stored generation parameters: {e}")))?;
    let draft = StudyDraft::of(&setup.spec, generation.as_ref());
    Ok((setup, draft))
}

async fn new_study(
    State(state): State<AppState>,
    staff: Staff,
    Query(query): Query<NewStudyQuery>,
) -> Result<StudyFormPage, WebError> {
    let (heading, source, draft) = match query.from {
        None => ("New study".to_string(), None, StudyDraft::default()),
        Some(id) => {
            let (setup, mut draft) = stored_draft(&state, id).await?;
            let taken: HashSet<String> = state
                .store
                .studies()
                .await?
                .into_iter()
                .map(|s| s.name)
                .collect();
            draft.name = copy_name(&setup.study.name, &taken);
            (
                format!("New study: a copy of {}", setup.study.name),
                Some((id, setup.study.name)),
                draft,
            )
        }
    };
    Ok(StudyFormPage {
        is_admin: staff.is_admin(),
        username: staff.0.username,
        problem_sets: state.store.problem_sets().await?,
        checkpoints: state.store.checkpoint_details().await?,
        purpose: FormPurpose::Create,
        heading,
        action: "/studies".into(),
        source,
        draft,
        design_frozen: None,
        selection_frozen: None,
        selection_rows: Vec::new(),
    })
}

/// The edit form: everything editable now as inputs, the rest read-only with the reason.
async fn edit_page(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<Uuid>,
) -> Result<StudyFormPage, WebError> {
    let (setup, draft) = stored_draft(&state, id).await?;
    let generated = setup.generation_params.is_some();
    let problem_sets = state.store.problem_sets().await?;
    let checkpoints = state.store.checkpoint_details().await?;
    let set_name = problem_sets
        .iter()
        .find(|s| s.id == setup.spec.problem_set_id)
        .map_or_else(|| setup.spec.problem_set_id.to_string(), |s| s.name.clone());
    let provers = checkpoints
        .iter()
        .filter(|c| setup.spec.checkpoint_ids.contains(&c.id))
        .map(|c| c.label.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let roles = setup
        .spec
        .roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let selection_rows = vec![
        ("Problem set", set_name),
        ("Prover checkpoints", provers),
        ("Roles", roles),
        (
            "Problems",
            setup
                .spec
                .max_problems
                .map_or_else(|| "all".to_string(), |n| n.to_string()),
        ),
        (
            "Solutions",
            if generated {
                "generated by a job".to_string()
            } else {
                "imported".to_string()
            },
        ),
    ];
    Ok(StudyFormPage {
        is_admin: staff.is_admin(),
        username: staff.0.username,
        heading: format!("Edit {}", setup.study.name),
        action: format!("/studies/{id}/edit"),
        source: Some((id, setup.study.name.clone())),
        design_frozen: study_edit::design_frozen(&setup.collected),
        selection_frozen: study_edit::selection_frozen(&setup.collected, generated),
        selection_rows,
        purpose: FormPurpose::Edit,
        problem_sets,
        checkpoints,
        draft,
    })
}

/// Saves an edit (see [`crate::study_edit`] for what may change when) and returns to the
/// study page; a refused change answers 409 naming the setting and the reason.
async fn save_edit(
    State(state): State<AppState>,
    _staff: Staff,
    Path(id): Path<Uuid>,
    axum_extra::extract::Form(form): axum_extra::extract::Form<NewStudyForm>,
) -> Result<Redirect, WebError> {
    let current = state.store.study(id).await?;
    let mut wanted = study_spec(form)?;
    wanted.reclaim_grace_ms = current.reclaim_grace_ms;
    state.store.update_study(id, &wanted).await?;
    Ok(Redirect::to(&format!("/studies/{id}")))
}

/// The new-study form; repeated `checkpoint` and `role` fields come from checkboxes.
#[derive(Debug, Deserialize)]
struct NewStudyForm {
    name: String,
    problem_set_id: Uuid,
    #[serde(default)]
    checkpoint: Vec<Uuid>,
    #[serde(default)]
    role: Vec<ProverRole>,
    time_limit_s: f64,
    judgements_per_solution: i64,
    #[serde(default)]
    max_problems: String,
    /// `existing` (judge solutions already imported) or `generate` (a job writes them).
    #[serde(default)]
    source: String,
    #[serde(default)]
    samples_per_role: String,
    #[serde(default)]
    temperature: String,
    #[serde(default)]
    seed: String,
    #[serde(default)]
    practice_items: String,
    #[serde(default)]
    screening_items: String,
    #[serde(default)]
    screening_pass_percent: String,
    #[serde(default)]
    gold_items: String,
    #[serde(default)]
    gold_percent: String,
    #[serde(default)]
    max_hours: String,
    #[serde(default)]
    break_every: String,
    /// Seconds after a deadline before an unanswered item returns to the pool; not on the
    /// form, carried by a duplicate so the copy keeps the original's (default when absent).
    #[serde(default)]
    reclaim_grace_s: String,
    /// `binary` (default), `confidence` or `probability`.
    #[serde(default)]
    answer_format: String,
    /// A ticked box: 50 % may be given in a probability study.
    #[serde(default)]
    allow_even_odds: String,
    /// `none` (default), `optional` or `required`.
    #[serde(default)]
    justification: String,
    /// Time limits to compare, seconds, comma-separated; empty: the one time limit.
    #[serde(default)]
    time_limit_arms_s: String,
    /// `between` (default), `blocked` or `interleaved`.
    #[serde(default)]
    arm_design: String,
    #[serde(default)]
    arm_block_items: String,
}

/// Reads an optional number field: empty means `default`; anything unparsable is refused with
/// the field's name.
fn number_field<T: std::str::FromStr>(text: &str, default: T, name: &str) -> Result<T, WebError> {
    match text.trim() {
        "" => Ok(default),
        t => t
            .parse()
            .map_err(|_| WebError::BadRequest(format!("{name}: {t:?} is not a valid number"))),
    }
}

/// The generation part of the form, when the study's solutions are to be generated.
fn generation_request(form: &NewStudyForm) -> Result<Option<GenerationRequest>, WebError> {
    match form.source.as_str() {
        "" | "existing" => Ok(None),
        "generate" => Ok(Some(GenerationRequest {
            checkpoint_ids: form.checkpoint.clone(),
            roles: form.role.clone(),
            samples_per_role: number_field(&form.samples_per_role, 1, "samples per role")?,
            sampling: SamplingParams {
                temperature: number_field(
                    &form.temperature,
                    SamplingParams::default().temperature,
                    "temperature",
                )?,
                ..SamplingParams::default()
            },
            seed: match form.seed.trim() {
                "" => None,
                _ => Some(number_field(&form.seed, 0, "seed")?),
            },
        })),
        other => Err(WebError::BadRequest(format!(
            "solutions must come from \"existing\" or \"generate\", not {other:?}"
        ))),
    }
}

/// Turns the form into a study spec, refusing out-of-range values with a clear message.
fn study_spec(form: NewStudyForm) -> Result<StudySpec, WebError> {
    if !(0.5..=3600.0).contains(&form.time_limit_s) {
        return Err(WebError::BadRequest(
            "the time limit must be between 0.5 and 3600 seconds".into(),
        ));
    }
    if !(1..=100).contains(&form.judgements_per_solution) {
        return Err(WebError::BadRequest(
            "judgements per solution must be between 1 and 100".into(),
        ));
    }
    let max_problems = match form.max_problems.trim() {
        "" => None,
        text => Some(
            text.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    WebError::BadRequest(
                        "at most this many problems: a whole number above 0".into(),
                    )
                })?,
        ),
    };
    let protocol = RaterProtocol {
        practice_items: number_field(&form.practice_items, 0, "practice items")?,
        screening_items: number_field(&form.screening_items, 0, "screening items")?,
        screening_pass_accuracy: number_field(&form.screening_pass_percent, 0.0, "pass mark")?
            / 100.0,
        gold_items: number_field(&form.gold_items, 0, "gold items")?,
        gold_rate: number_field(&form.gold_percent, 0.0, "gold share")? / 100.0,
        max_rater_ms: (number_field::<f64>(&form.max_hours, 4.0, "workload cap")? * 3_600_000.0)
            .round() as i64,
        break_every: number_field(&form.break_every, 0, "break every")?,
    };
    protocol.check().map_err(WebError::BadRequest)?;
    let answers = AnswerRules {
        format: match form.answer_format.trim() {
            "" => AnswerFormat::Binary,
            text => text.parse().map_err(WebError::BadRequest)?,
        },
        allow_even_odds: !form.allow_even_odds.is_empty(),
        justification: match form.justification.trim() {
            "" => JustificationRule::NotAsked,
            text => text.parse().map_err(WebError::BadRequest)?,
        },
    };
    let time_limits = TimeLimits {
        arms: form
            .time_limit_arms_s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(|s| (s * 1000.0).round() as i64)
                    .ok_or_else(|| {
                        WebError::BadRequest(format!(
                            "time limits to compare: {t:?} is not a number of seconds"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?,
        design: match form.arm_design.trim() {
            "" => ArmDesign::Between,
            text => text.parse().map_err(WebError::BadRequest)?,
        },
        block_items: number_field(
            &form.arm_block_items,
            TimeLimits::default().block_items,
            "items per block",
        )?,
    };
    Ok(StudySpec {
        protocol,
        answers,
        time_limits,
        name: form.name,
        time_limit_ms: (form.time_limit_s * 1000.0).round() as i64,
        judgements_per_solution: form.judgements_per_solution,
        reclaim_grace_ms: match form.reclaim_grace_s.trim() {
            "" => judging::DEFAULT_RECLAIM_GRACE_MS,
            text => text
                .parse::<f64>()
                .ok()
                .filter(|s| (0.0..=86_400.0).contains(s))
                .map(|s| (s * 1000.0).round() as i64)
                .ok_or_else(|| {
                    WebError::BadRequest(
                        "the grace before an item returns to the pool: 0 to 86400 seconds".into(),
                    )
                })?,
        },
        problem_set_id: form.problem_set_id,
        checkpoint_ids: form.checkpoint,
        roles: form.role,
        max_problems,
    })
}

async fn create_study(
    State(state): State<AppState>,
    staff: Staff,
    MultiForm(form): MultiForm<NewStudyForm>,
) -> Result<Redirect, WebError> {
    let generation = generation_request(&form)?;
    let spec = study_spec(form)?;
    let now = state.clock.now_ms();
    let study = match generation {
        None => {
            state
                .store
                .create_study(&spec, Some(staff.0.id), now)
                .await?
        }
        Some(request) => {
            if request.checkpoint_ids.is_empty() {
                return Err(WebError::BadRequest(
                    "tick the prover checkpoints to generate with".into(),
                ));
            }
            create_generated_study(&state.store, &spec, request, Some(staff.0.id), now)
                .await?
                .0
        }
    };
    Ok(Redirect::to(&format!("/studies/{}", study.id)))
}

/// A rater's line on the study page.
struct RaterRow {
    id: Uuid,
    name: String,
    email: Option<String>,
    judgements: i64,
    timeouts: i64,
    /// When the rater opened their link first; `None`: not yet.
    started: Option<Timestamp>,
    last_activity: Option<Timestamp>,
    /// When the link was revoked; `None` while it works.
    revoked: Option<Timestamp>,
    /// Screening result: "—", "3 of 30 answered", "passed (27/30)", "not admitted (12/30)".
    screening: String,
    /// Gold items right / answered, with the accuracy.
    gold: String,
}

/// The screening column of a rater's line.
fn screening_text(quality: &RaterQuality, items: i64) -> String {
    let t = quality.screening;
    match quality.screening_passed {
        _ if items == 0 => "—".into(),
        Some(true) => format!("passed ({}/{})", t.right, t.answered),
        Some(false) => format!("not admitted ({}/{})", t.right, t.answered),
        None => format!("{} of {items} answered", t.answered),
    }
}

/// The gold column: quality-control accuracy on silent gold items; the share only from
/// [`Statistic::RaterAccuracy`]'s minimum on, the counts always.
fn gold_text(quality: &RaterQuality) -> String {
    let t = quality.gold;
    let answered = u64::try_from(t.answered).unwrap_or(0);
    if t.answered == 0 {
        "—".into()
    } else if !Statistic::RaterAccuracy.shown_for(answered) {
        format!(
            "({}/{}), n too small for a share (needs {})",
            t.right,
            t.answered,
            Statistic::RaterAccuracy.minimum()
        )
    } else {
        format!(
            "{:.0}% ({}/{})",
            100.0 * t.right as f64 / t.answered as f64,
            t.right,
            t.answered
        )
    }
}

/// One line saying how the study treats raters.
fn protocol_summary(p: &RaterProtocol) -> String {
    let mut parts = Vec::new();
    if p.practice_items > 0 {
        parts.push(format!("{} practice items with feedback", p.practice_items));
    }
    if p.screening_items > 0 {
        parts.push(format!(
            "screening on {} items, pass mark {:.0}%",
            p.screening_items,
            100.0 * p.screening_pass_accuracy
        ));
    }
    if p.gold_rate > 0.0 {
        parts.push(format!(
            "{:.0}% of session items are silent gold items (pool of {})",
            100.0 * p.gold_rate,
            p.gold_items
        ));
    }
    parts.push(format!(
        "at most {} h on items each",
        p.max_rater_ms as f64 / 3_600_000.0
    ));
    if p.break_every > 0 {
        parts.push(format!("a break every {} items", p.break_every));
    }
    parts.join(" · ")
}

impl RaterRow {
    fn new(r: RaterProgress, quality: &RaterQuality, screening_items: i64) -> Self {
        RaterRow {
            screening: screening_text(quality, screening_items),
            gold: gold_text(quality),
            id: r.rater.id,
            name: r.rater.name,
            email: r.email,
            judgements: r.judgements,
            timeouts: r.timeouts,
            started: r.started_at.map(Timestamp),
            last_activity: r.last_activity_at.map(Timestamp),
            revoked: r.revoked_at.map(Timestamp),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "study.html")]
struct StudyPage {
    /// How the study treats raters (practice, screening, gold, workload, breaks).
    protocol_summary: String,
    username: String,
    is_admin: bool,
    time_limit: String,
    /// The answer format in words.
    answers: String,
    grace: String,
    study: Study,
    progress: StudyProgress,
    /// Judgements the invited raters cannot give (the study would stop short); `None` when
    /// they can complete it.
    shortfall: Option<CompletionShortfall>,
    raters: Vec<RaterRow>,
    jobs: Vec<JobView>,
    generated: Vec<GeneratedRow>,
    /// The current verifier's label and version; `None` when there is none (no scoring button).
    current_verifier: Option<(String, i64)>,
    /// The roles the score table has a column for.
    roles: &'static [ProverRole],
    scores: Vec<ScoreRow>,
}

/// One verifier version's scores of the study, as the page shows them.
struct ScoreRow {
    version: i64,
    scored: usize,
    mean_correct: String,
    mean_incorrect: String,
    /// Mean score per role of [`ProverRole::ALL`], aligned with it.
    role_means: Vec<String>,
    auroc: String,
}

/// A figure with three decimals, or "—" when there is none.
fn three_decimals(value: Option<f64>) -> String {
    value.map_or_else(|| "—".into(), |x| format!("{x:.3}"))
}

impl From<ScoreSummary> for ScoreRow {
    fn from(s: ScoreSummary) -> Self {
        ScoreRow {
            version: s.version,
            scored: s.scored,
            mean_correct: three_decimals(s.mean_correct),
            mean_incorrect: three_decimals(s.mean_incorrect),
            role_means: ProverRole::ALL
                .iter()
                .map(|role| {
                    three_decimals(
                        s.mean_by_role
                            .iter()
                            .find(|(r, _)| r == role)
                            .map(|(_, mean)| *mean),
                    )
                })
                .collect(),
            auroc: three_decimals(s.auroc),
        }
    }
}

/// Every verifier version's score summary of `study_id`, newest version first.
async fn score_rows(state: &AppState, study_id: Uuid) -> Result<Vec<ScoreRow>, WebError> {
    let rows: Vec<(i64, ProverRole, bool, f64)> = state
        .store
        .study_scores(study_id)
        .await?
        .into_iter()
        .map(|s| (s.version, s.role, s.is_correct, s.score))
        .collect();
    Ok(score_summary(&rows)
        .into_iter()
        .map(ScoreRow::from)
        .collect())
}

/// Solutions per checkpoint and role, as the study page lists them.
struct GeneratedRow {
    checkpoint: String,
    role: ProverRole,
    solutions: i64,
    correct_percent: String,
}

async fn study(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<Uuid>,
) -> Result<StudyPage, WebError> {
    let study = state.store.study(id).await?;
    let quality = state.store.study_rater_quality(id).await?;
    let none = RaterQuality::default();
    let raters = state
        .store
        .rater_progress(id)
        .await?
        .into_iter()
        .map(|r| {
            let q = quality.get(&r.rater.id).unwrap_or(&none);
            RaterRow::new(r, q, study.protocol.screening_items)
        })
        .collect();
    Ok(StudyPage {
        protocol_summary: protocol_summary(&study.protocol),
        time_limit: if study.time_limits.has_arms() {
            format!(
                "{} s compared ({}; practice, screening and gold items {})",
                study
                    .time_limits
                    .arms
                    .iter()
                    .map(|ms| (*ms as f64 / 1000.0).to_string())
                    .collect::<Vec<_>>()
                    .join(" / "),
                match study.time_limits.design {
                    ArmDesign::Between => "between raters".to_string(),
                    ArmDesign::Blocked => format!(
                        "within rater, blocks of {} items",
                        study.time_limits.block_items
                    ),
                    ArmDesign::Interleaved => "within rater, interleaved".to_string(),
                },
                seconds_text(study.time_limit_ms)
            )
        } else {
            seconds_text(study.time_limit_ms)
        },
        answers: study.answers.describe(),
        grace: seconds_text(study.reclaim_grace_ms),
        is_admin: staff.is_admin(),
        username: staff.0.username,
        progress: state.store.study_progress(id).await?,
        shortfall: state.store.completion_shortfall(id).await?,
        jobs: state.store.jobs_for_study(id).await?,
        generated: state
            .store
            .generated_summary(id)
            .await?
            .into_iter()
            .map(|(checkpoint, role, solutions, correct)| GeneratedRow {
                checkpoint,
                role,
                solutions,
                correct_percent: format!(
                    "{:.0}%",
                    100.0 * correct as f64 / solutions.max(1) as f64
                ),
            })
            .collect(),
        current_verifier: state
            .store
            .current_verifier()
            .await?
            .map(|v| (v.label, v.version)),
        roles: ProverRole::ALL,
        scores: score_rows(&state, id).await?,
        study,
        raters,
    })
}

/// Queues a job scoring the study's solutions with the current verifier (resolved when the
/// job runs) and returns to the study page, where the job and then the scores show.
async fn score_study(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<Uuid>,
) -> Result<Redirect, WebError> {
    state.store.study(id).await?;
    if state.store.current_verifier().await?.is_none() {
        return Err(WebError::Conflict(
            "there is no verifier version to score with yet".into(),
        ));
    }
    state
        .store
        .enqueue_verifier_scoring(id, None, Some(staff.0.id), state.clock.now_ms())
        .await?;
    Ok(Redirect::to(&format!("/studies/{id}")))
}

#[derive(Deserialize)]
struct StatusForm {
    status: StudyStatus,
}

async fn set_status(
    State(state): State<AppState>,
    _staff: Staff,
    Path(id): Path<Uuid>,
    Form(form): Form<StatusForm>,
) -> Result<Redirect, WebError> {
    state.store.set_study_status(id, form.status).await?;
    Ok(Redirect::to(&format!("/studies/{id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_numbers_read_as_people_typed_them() {
        assert_eq!(input_number(45.0), "45");
        assert_eq!(input_number(100.0 * 0.07), "7");
        assert_eq!(input_number(4.5), "4.5");
        assert_eq!(input_number(7_200_000.0 / 3_600_000.0), "2");
    }

    #[test]
    fn a_draft_shows_a_studys_settings_and_its_generation_request() {
        let spec = StudySpec {
            name: "pilot".into(),
            time_limit_ms: 30_500,
            judgements_per_solution: 2,
            reclaim_grace_ms: 5_000,
            problem_set_id: Uuid::from_u128(1),
            checkpoint_ids: vec![Uuid::from_u128(2)],
            roles: vec![ProverRole::Sneaky],
            max_problems: Some(12),
            protocol: RaterProtocol {
                screening_items: 4,
                screening_pass_accuracy: 0.75,
                max_rater_ms: 5_400_000,
                break_every: 10,
                ..RaterProtocol::default()
            },
            answers: Default::default(),
            time_limits: Default::default(),
        };
        let draft = StudyDraft::of(&spec, None);
        assert_eq!(
            (
                draft.time_limit_s.as_str(),
                draft.max_problems.as_str(),
                draft.screening_pass_percent.as_str(),
                draft.max_hours.as_str(),
                draft.reclaim_grace_s.as_str(),
                draft.generate,
            ),
            ("30.5", "12", "75", "1.5", "5", false)
        );
        assert!(draft.has_role("sneaky") && !draft.has_role("helpful"));
        assert!(draft.has_checkpoint(&Uuid::from_u128(2)));
        assert!(draft.is_set(&Uuid::from_u128(1)));
        let generation = GenerationParams {
            study_id: Uuid::nil(),
            problem_set_id: Uuid::from_u128(1),
            max_problems: Some(12),
            checkpoint_ids: vec![Uuid::from_u128(2)],
            roles: vec![ProverRole::Sneaky],
            samples_per_role: 3,
            sampling: SamplingParams {
                temperature: 0.9,
                ..SamplingParams::default()
            },
            seed: 11,
        };
        let draft = StudyDraft::of(&spec, Some(&generation));
        assert!(draft.generate);
        assert_eq!(
            (
                draft.samples_per_role,
                draft.temperature.as_str(),
                draft.seed.as_str()
            ),
            (3, "0.9", "11")
        );
        // A new study's defaults are the paper's.
        let fresh = StudyDraft::default();
        assert_eq!(
            (fresh.time_limit_s.as_str(), fresh.judgements_per_solution),
            ("45", 3)
        );
    }
}

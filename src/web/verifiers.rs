//! Admin page for verifier versions: every version with what it was trained from and how it
//! did on validation (after training, next to the starting weights' figures, so one sees what
//! training changed), the automatic trigger's count, and the form that asks for a training
//! run. The worker does the training (see [`crate::worker::verifier`]); this page only queues.
//!
//! A refused training request re-renders the page with the message and the status of the
//! single error mapping: 409 while a training job is already queued or running, 400 for a
//! form value that cannot be read, 422 for one that cannot train.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::extract::Form;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::session::Admin;
use super::times::Timestamp;
use super::{AppState, WebError};
use crate::domain::{CheckpointKind, JobKind, JobState, LabelSource, VerifierLoss};
use crate::ml::train_verifier::FitOptions;
use crate::store::verifiers::VerifierVersion;
use crate::worker::verifier::{TrainingParams, request_training};

/// Shown where a figure is missing.
const MISSING: &str = "—";

/// The automatic trigger's interval when `--verifier-every` is not given (see `cli.rs`).
const DEFAULT_VERIFIER_EVERY: u64 = 200;

/// Most epochs the form accepts: a guard against typos that would tie up a worker for days.
const MAX_EPOCHS: usize = 1_000;
/// Most blocks the form accepts; the verifier refuses more than it has when the job runs.
const MAX_BLOCKS: usize = 1_000;

/// Routes of the verifier page and its training form; admins only.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/verifiers", get(verifiers_page))
        .route("/admin/verifiers/train", post(train))
}

/// A figure after training, with the starting weights' figure where the version has one.
struct Figure {
    after: String,
    before: Option<String>,
}

/// Validation figures of one prover (round, role) group.
struct GroupRow {
    round: String,
    role: String,
    truth_solutions: Figure,
    truth_accuracy: Figure,
    truth_auroc: Figure,
    human_solutions: Figure,
    human_accuracy: Figure,
    human_auroc: Figure,
}

/// One verifier version as the page shows it; every value already text.
struct VersionRow {
    version: i64,
    label: String,
    current: bool,
    created: Timestamp,
    label_source: LabelSource,
    loss: VerifierLoss,
    base: String,
    judgements_seen: i64,
    scored: i64,
    /// What the quality figures were measured on.
    basis: &'static str,
    solutions: Figure,
    truth_accuracy: Figure,
    truth_auroc: Figure,
    human_accuracy: Figure,
    human_auroc: Figure,
    /// Share of (correct, incorrect) pairs ranked right (shipped versions only).
    pairwise: Option<String>,
    /// Epochs, steps and time of a trained version.
    training: Option<String>,
    groups: Vec<GroupRow>,
}

/// An option of a `<select>`.
pub(super) struct Choice {
    /// What the form sends.
    pub(super) value: String,
    /// What the list shows.
    pub(super) text: String,
}

/// The training form's fields as sent: text, so a bad value is reported with its field's name
/// instead of a generic rejection, and kept to fill the form again after a refusal.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct TrainForm {
    label_source: String,
    loss: String,
    /// `all`, or a study's id.
    scope: String,
    /// `current`, or a verifier checkpoint's id.
    base: String,
    seed: String,
    max_epochs: String,
    /// Empty: the default for the base (see [`FitOptions::train_blocks`]).
    train_blocks: String,
    learning_rate: String,
}

impl Default for TrainForm {
    fn default() -> Self {
        let fit = FitOptions::default();
        TrainForm {
            label_source: LabelSource::Both.to_string(),
            loss: fit.loss.to_string(),
            scope: "all".into(),
            base: "current".into(),
            seed: fit.seed.to_string(),
            max_epochs: fit.max_epochs.to_string(),
            train_blocks: String::new(),
            learning_rate: fit.learning_rate.to_string(),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "verifiers.html")]
struct VerifiersPage {
    username: String,
    is_admin: bool,
    versions: Vec<VersionRow>,
    /// Non-timeout judgements since the last training job was asked for.
    since_last_training: i64,
    default_every: u64,
    /// A training job now queued or running: (state, created).
    training_job: Option<(JobState, Timestamp)>,
    label_sources: &'static [LabelSource],
    losses: &'static [VerifierLoss],
    studies: Vec<Choice>,
    bases: Vec<Choice>,
    form: TrainForm,
    error: Option<String>,
}

impl VerifiersPage {
    async fn new(state: &AppState, username: String, form: TrainForm) -> Result<Self, WebError> {
        let store = &state.store;
        let versions = store.verifier_versions().await?;
        let bases = store
            .checkpoint_details()
            .await?
            .into_iter()
            .filter(|c| c.kind == CheckpointKind::Verifier)
            .map(|c| {
                let version = versions.iter().find(|v| v.checkpoint_id == c.id);
                Choice {
                    value: c.id.to_string(),
                    text: match version {
                        Some(v) => format!("{} (version {})", c.label, v.version),
                        None => format!("{} (uploaded)", c.label),
                    },
                }
            })
            .collect();
        let studies = store
            .studies()
            .await?
            .into_iter()
            .map(|s| Choice {
                value: s.id.to_string(),
                text: s.name,
            })
            .collect();
        let since_last_training =
            (store.judgement_count().await? - store.judgements_at_last_training().await?).max(0);
        let training_job = store
            .jobs(super::jobs::JOBS_SHOWN)
            .await?
            .into_iter()
            .find(|j| {
                j.kind == JobKind::VerifierTraining
                    && matches!(j.state, JobState::Queued | JobState::Running)
            })
            .map(|j| (j.state, Timestamp(j.created_at)));
        let newest = versions.first().map(|v| v.version);
        Ok(VerifiersPage {
            username,
            is_admin: true,
            versions: versions
                .into_iter()
                .map(|v| version_row(v, newest))
                .collect(),
            since_last_training,
            default_every: DEFAULT_VERIFIER_EVERY,
            training_job,
            label_sources: LabelSource::ALL,
            losses: VerifierLoss::ALL,
            studies,
            bases,
            form,
            error: None,
        })
    }
}

/// A ratio from metrics JSON with three decimals, or the missing mark.
fn ratio(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_f64)
        .map_or_else(|| MISSING.into(), |x| format!("{x:.3}"))
}

/// A count from metrics JSON, or the missing mark.
fn count(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_u64)
        .map_or_else(|| MISSING.into(), |n| n.to_string())
}

/// `path` (keys separated by `.`) inside `value`, if every step exists.
fn at<'a>(value: Option<&'a Value>, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value?, |v, key| v.get(key))
}

/// The figure at `path` of the `after` metrics, with the `before` one when there is a
/// `before` at all.
fn figure(
    after: Option<&Value>,
    before: Option<&Value>,
    path: &str,
    show: fn(Option<&Value>) -> String,
) -> Figure {
    Figure {
        after: show(at(after, path)),
        before: before.map(|b| show(at(Some(b), path))),
    }
}

/// The (round, role) group of `metrics` equal to `group`'s.
fn same_group<'a>(metrics: Option<&'a Value>, group: &Value) -> Option<&'a Value> {
    at(metrics, "by_round_role")?
        .as_array()?
        .iter()
        .find(|g| g.get("round") == group.get("round") && g.get("role") == group.get("role"))
}

fn group_row(group: &Value, before: Option<&Value>) -> GroupRow {
    let after = Some(group);
    let before = before.map(|b| same_group(Some(b), group));
    // A group the starting weights' metrics lack shows "—" as its before figure.
    let fig = |path: &str, show: fn(Option<&Value>) -> String| Figure {
        after: show(at(after, path)),
        before: before.map(|b| show(b.and_then(|b| at(Some(b), path)))),
    };
    let text = |key: &str| match group.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => MISSING.into(),
    };
    GroupRow {
        round: text("round"),
        role: text("role"),
        truth_solutions: fig("ground_truth.solutions", count),
        truth_accuracy: fig("ground_truth.accuracy", ratio),
        truth_auroc: fig("ground_truth.auroc", ratio),
        human_solutions: fig("human.solutions", count),
        human_accuracy: fig("human.accuracy", ratio),
        human_auroc: fig("human.auroc", ratio),
    }
}

/// The page's row of a version. Copes with the trained versions' metrics (`before`/`after`,
/// see `FitReport`), the shipped version's (`quality`) and with none (`{}`).
fn version_row(v: VerifierVersion, newest: Option<i64>) -> VersionRow {
    let metrics = &v.metrics;
    let after = metrics.get("after");
    let before = metrics.get("before");
    let quality = metrics.get("quality");
    let missing = || Figure {
        after: MISSING.into(),
        before: None,
    };
    let (basis, solutions, truth_accuracy, truth_auroc, human_accuracy, human_auroc) =
        match (after, quality) {
            (Some(_), _) => (
                "validation split (problems held out of training)",
                figure(after, before, "solutions", count),
                figure(after, before, "ground_truth.accuracy", ratio),
                figure(after, before, "ground_truth.auroc", ratio),
                figure(after, before, "human.accuracy", ratio),
                figure(after, before, "human.auroc", ratio),
            ),
            (None, Some(_)) => (
                "held-out generated problems (shipped recipe)",
                figure(quality, None, "solutions", count),
                figure(quality, None, "accuracy", ratio),
                figure(quality, None, "auroc", ratio),
                missing(),
                missing(),
            ),
            (None, None) => (
                "no metrics recorded",
                missing(),
                missing(),
                missing(),
                missing(),
                missing(),
            ),
        };
    let training = metrics.get("epochs").and_then(Value::as_u64).map(|epochs| {
        format!(
            "{epochs} epochs (kept epoch {}), {} steps, {} training solutions, {} s",
            count(metrics.get("best_epoch")),
            count(metrics.get("steps")),
            count(metrics.get("train_solutions")),
            metrics
                .get("train_seconds")
                .and_then(Value::as_f64)
                .map_or_else(|| MISSING.into(), |s| format!("{s:.0}")),
        )
    });
    let groups = at(after, "by_round_role")
        .and_then(Value::as_array)
        .map(|groups| groups.iter().map(|g| group_row(g, before)).collect())
        .unwrap_or_default();
    VersionRow {
        current: Some(v.version) == newest,
        version: v.version,
        label: v.label,
        created: Timestamp(v.created_at),
        label_source: v.label_source,
        loss: v.loss,
        base: v.base_label.unwrap_or_else(|| MISSING.into()),
        judgements_seen: v.judgements_seen,
        scored: v.scored,
        basis,
        solutions,
        truth_accuracy,
        truth_auroc,
        human_accuracy,
        human_auroc,
        pairwise: quality
            .filter(|_| after.is_none())
            .and_then(|q| q.get("pairwise_accuracy"))
            .map(|p| ratio(Some(p))),
        training,
        groups,
    }
}

async fn verifiers_page(
    State(state): State<AppState>,
    Admin(user): Admin,
) -> Result<VerifiersPage, WebError> {
    VerifiersPage::new(&state, user.username, TrainForm::default()).await
}

/// A choice field: `field` names it in the message when `text` is none of the accepted values.
pub(super) fn choice<T: std::str::FromStr<Err = String>>(
    text: &str,
    field: &str,
) -> Result<T, WebError> {
    text.trim()
        .parse()
        .map_err(|e: String| WebError::BadRequest(format!("{field}: {e}")))
}

/// A whole-number field in `range`, named `field` in the message when it is not.
pub(super) fn whole<T>(
    text: &str,
    range: std::ops::RangeInclusive<T>,
    field: &str,
) -> Result<T, WebError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    text.trim()
        .parse::<T>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            WebError::BadRequest(format!(
                "{field}: {:?} is not a whole number from {} to {}",
                text.trim(),
                range.start(),
                range.end()
            ))
        })
}

/// An id chosen from one of the page's lists (`keyword` meaning "none"): it must be one of
/// `offered`, else the form was not sent from this page or the list changed meanwhile.
pub(super) fn chosen_id(
    text: &str,
    keyword: &str,
    offered: &[Choice],
    field: &str,
) -> Result<Option<Uuid>, WebError> {
    let text = text.trim();
    if text.is_empty() || text == keyword {
        return Ok(None);
    }
    match text.parse::<Uuid>() {
        Ok(id) if offered.iter().any(|c| c.value == id.to_string()) => Ok(Some(id)),
        _ => Err(WebError::BadRequest(format!(
            "{field}: {text:?} is not one of the listed choices"
        ))),
    }
}

/// A positive, finite number from a form field.
fn positive(text: &str, field: &str) -> Result<f64, WebError> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| *n > 0.0 && n.is_finite())
        .ok_or_else(|| {
            WebError::BadRequest(format!(
                "{field}: {:?} is not a positive number",
                text.trim()
            ))
        })
}

/// Reads the training form into job parameters, checked against what the page offers.
fn training_params(form: &TrainForm, page: &VerifiersPage) -> Result<TrainingParams, WebError> {
    let params = TrainingParams {
        label_source: choice(&form.label_source, "label source")?,
        study_id: chosen_id(&form.scope, "all", &page.studies, "scope")?,
        base_checkpoint_id: chosen_id(&form.base, "current", &page.bases, "base checkpoint")?,
        fit: FitOptions {
            loss: choice(&form.loss, "loss")?,
            seed: whole(&form.seed, 0..=u64::MAX, "seed")?,
            max_epochs: whole(&form.max_epochs, 1..=MAX_EPOCHS, "max epochs")?,
            learning_rate: positive(&form.learning_rate, "learning rate")?,
            train_blocks: match form.train_blocks.trim() {
                "" => None,
                text => Some(whole(text, 0..=MAX_BLOCKS, "blocks to train")?),
            },
            ..FitOptions::default()
        },
        judgements_seen: 0,
        trigger: "admin".into(),
    };
    if params.base_checkpoint_id.is_none() && page.versions.is_empty() {
        return Err(WebError::Unprocessable(
            "base checkpoint: there is no verifier version to start from yet; upload a verifier \
             checkpoint on the Checkpoints page and choose it as the base"
                .into(),
        ));
    }
    Ok(params)
}

/// Queues a training job with the form's settings and goes to the jobs page; re-renders this
/// page with the reason and its status when the request is refused (409 while a training job
/// is already queued or running).
async fn train(
    State(state): State<AppState>,
    Admin(user): Admin,
    Form(form): Form<TrainForm>,
) -> Result<Response, WebError> {
    let mut page = VerifiersPage::new(&state, user.username, form.clone()).await?;
    match queue_training(&state, &form, &page, user.id).await {
        Ok(_job) => Ok(Redirect::to("/admin/jobs").into_response()),
        Err(e @ (WebError::BadRequest(_) | WebError::Conflict(_) | WebError::Unprocessable(_))) => {
            page.error = Some(e.to_string());
            Ok((e.status(), page).into_response())
        }
        Err(e) => Err(e),
    }
}

/// Checks the form and queues the job; [`WebError::Conflict`] when a training job is already
/// queued or running (the store's one-training-job index decides, race-free).
async fn queue_training(
    state: &AppState,
    form: &TrainForm,
    page: &VerifiersPage,
    admin_id: Uuid,
) -> Result<Uuid, WebError> {
    let params = training_params(form, page)?;
    request_training(&state.store, params, Some(admin_id), state.clock.now_ms())
        .await?
        .ok_or_else(|| {
            WebError::Conflict(
                "A verifier training job is already queued or running; wait for it to finish \
                 (or cancel it on the Jobs page) before asking for another."
                    .into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(metrics: Value) -> VerifierVersion {
        VerifierVersion {
            checkpoint_id: Uuid::nil(),
            version: 2,
            label: "verifier-v2".into(),
            model_dir: None,
            base_label: None,
            job_id: None,
            label_source: LabelSource::Both,
            loss: VerifierLoss::BradleyTerry,
            judgements_seen: 0,
            metrics,
            scored: 0,
            created_at: 0,
        }
    }

    #[test]
    fn rows_cope_with_every_metrics_shape() {
        let card = |acc: f64, auroc: Value| serde_json::json!({"solutions": 4, "accuracy": acc, "auroc": auroc});
        let trained = version_row(
            version(serde_json::json!({
                "before": {"solutions": 4, "ground_truth": card(0.5, Value::Null), "human": card(0.25, 0.5.into()),
                           "by_round_role": []},
                "after": {"solutions": 4, "ground_truth": card(0.75, 0.875.into()), "human": card(1.0, 1.0.into()),
                          "by_round_role": [{"round": 0, "role": "sneaky", "ground_truth": card(0.5, 0.5.into()),
                                             "human": {"solutions": 0, "accuracy": null, "auroc": null}}]},
                "epochs": 3, "best_epoch": 2, "steps": 12, "train_solutions": 16, "train_seconds": 4.4,
            })),
            Some(2),
        );
        assert!(trained.current);
        assert_eq!(trained.truth_accuracy.after, "0.750");
        assert_eq!(trained.truth_accuracy.before.as_deref(), Some("0.500"));
        assert_eq!(trained.truth_auroc.before.as_deref(), Some(MISSING));
        assert_eq!(trained.human_auroc.after, "1.000");
        assert_eq!(trained.solutions.after, "4");
        assert_eq!(trained.base, MISSING);
        assert_eq!(trained.groups.len(), 1);
        let group = &trained.groups[0];
        assert_eq!((group.round.as_str(), group.role.as_str()), ("0", "sneaky"));
        assert_eq!(group.truth_auroc.after, "0.500");
        assert_eq!(group.truth_auroc.before.as_deref(), Some(MISSING));
        assert_eq!(group.human_accuracy.after, MISSING);
        assert_eq!(
            trained.training.as_deref(),
            Some("3 epochs (kept epoch 2), 12 steps, 16 training solutions, 4 s")
        );

        let shipped = version_row(
            version(serde_json::json!({"recipe": {"seed": 1},
                "quality": {"auroc": 0.9, "accuracy": 0.8, "pairwise_accuracy": 0.95, "solutions": 400}})),
            Some(3),
        );
        assert!(!shipped.current);
        assert_eq!(shipped.truth_auroc.after, "0.900");
        assert_eq!(shipped.truth_auroc.before, None);
        assert_eq!(shipped.solutions.after, "400");
        assert_eq!(shipped.human_accuracy.after, MISSING);
        assert_eq!(shipped.pairwise.as_deref(), Some("0.950"));
        assert!(shipped.groups.is_empty() && shipped.training.is_none());

        let bare = version_row(version(serde_json::json!({})), Some(2));
        assert_eq!(bare.basis, "no metrics recorded");
        assert_eq!(bare.truth_accuracy.after, MISSING);
        assert!(bare.pairwise.is_none() && bare.groups.is_empty());
    }

    #[test]
    fn bad_fields_are_named() {
        let err = choice::<LabelSource>("everyone", "label source").unwrap_err();
        assert!(matches!(&err, WebError::BadRequest(m) if m.starts_with("label source:")));
        assert_eq!(whole("8", 1..=MAX_EPOCHS, "max epochs").unwrap(), 8);
        let err = whole("0", 1..=MAX_EPOCHS, "max epochs").unwrap_err();
        assert!(matches!(&err, WebError::BadRequest(m) if m.starts_with("max epochs:")));
        let offered = [Choice {
            value: Uuid::nil().to_string(),
            text: "x".into(),
        }];
        assert_eq!(chosen_id("all", "all", &offered, "scope").unwrap(), None);
        assert_eq!(
            chosen_id(&Uuid::nil().to_string(), "all", &offered, "scope").unwrap(),
            Some(Uuid::nil())
        );
        assert!(chosen_id(&Uuid::max().to_string(), "all", &offered, "scope").is_err());
    }
}

//! Training runs of the checkability game: the admin page that starts one and lists them, and
//! each run's page for staff: its settings and progress, the metrics of every finished round
//! as a table and as round curves, its prover steps, the rounds' prover checkpoints, and the
//! one-click human study comparing them. The worker does the run (see
//! [`crate::worker::game`]); these pages only queue and read.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::extract::{Form, Path};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::plots::{
    attack_steps_across_seeds_svg, attack_steps_svg, prover_curves, prover_curves_across_seeds,
    round_curves_svg, verifier_curves, verifier_curves_across_seeds,
};
use super::session::{Admin, ReportReader, Staff};
use super::times::Timestamp;
use super::verifiers::{Choice, choice, chosen_id, whole};
use super::{AppState, WebError};
use crate::checkpoints::defaults::{DEFAULT_PROVER_LABEL, DEFAULT_VERIFIER_LABEL};
use crate::domain::{CheckpointKind, JobKind, JobState, ProverRole};
use crate::game::{AttackReport, Optimiser, RewardKind, RoundMetrics};
use crate::metrics::MeanInterval;
use crate::ml::game_round::{RoundReport, StepRecord};
use crate::ml::game_seeds::{RoundAcrossSeeds, across_seeds};
use crate::ml::sampling::SamplingParams;
use crate::quality::RaterProtocol;
use crate::store::jobs::JobView;
use crate::store::studies::StudySpec;
use crate::worker::game::{self, TrainingRunParams, request_training_run};
use crate::worker::generation::{GenerationRequest, create_generated_study};

/// Shown where a figure is missing.
const MISSING: &str = "—";

/// Routes of the training-run pages: starting and listing runs is for admins (a run ties up
/// a worker for an hour), reading a run and making a study from it for all staff.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/runs", get(runs_page).post(start_run))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/report.json", get(run_json))
        .route("/runs/{id}/study", post(create_study))
}

/// A run on the list.
struct RunRow {
    id: Uuid,
    name: String,
    state: JobState,
    progress: String,
    rounds: String,
    created: Timestamp,
}

/// The start form as sent: text, so a bad value is named in the message and the form is
/// filled again after a refusal.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct RunForm {
    name: String,
    prover: String,
    verifier: String,
    rounds: String,
    seed: String,
    seeds: String,
    reward: String,
    problems: String,
    eval_problems: String,
    steps_per_round: String,
    samples_per_role: String,
    optimiser: String,
    kl_coefficient: String,
    /// A checkbox: "on" when ticked, absent (empty) when not.
    sequential_sneaky: String,
    attack_steps: String,
    attack_target: String,
    /// Empty: the 50 %-recall threshold of each round.
    fool_threshold: String,
}

impl Default for RunForm {
    fn default() -> Self {
        let d = TrainingRunParams::default();
        RunForm {
            name: String::new(),
            prover: String::new(),
            verifier: String::new(),
            rounds: d.rounds.to_string(),
            seed: d.seed.to_string(),
            seeds: d.seeds.to_string(),
            reward: d.reward.to_string(),
            problems: d.problems.to_string(),
            eval_problems: d.eval_problems.to_string(),
            steps_per_round: d.steps_per_round.to_string(),
            samples_per_role: d.samples_per_role.to_string(),
            optimiser: d.optimiser.to_string(),
            kl_coefficient: d.kl_coefficient.to_string(),
            sequential_sneaky: if d.sequential_sneaky {
                "on".into()
            } else {
                String::new()
            },
            attack_steps: d.attack_steps.to_string(),
            attack_target: d.attack_target.to_string(),
            fool_threshold: d.fool_threshold.map(|t| t.to_string()).unwrap_or_default(),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "runs.html")]
struct RunsPage {
    username: String,
    is_admin: bool,
    runs: Vec<RunRow>,
    provers: Vec<Choice>,
    verifiers: Vec<Choice>,
    rewards: &'static [&'static str],
    optimisers: &'static [&'static str],
    form: RunForm,
    error: Option<String>,
}

/// A run's name on the list; a member of a run repeated over seeds names its seed.
fn run_name(params: &serde_json::Value) -> String {
    let name = params
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or_default();
    let seeds = params.get("seeds").and_then(|n| n.as_u64()).unwrap_or(1);
    match params.get("seed").and_then(|n| n.as_u64()) {
        Some(seed) if seeds > 1 => format!("{name} (seed {seed}, one of {seeds})"),
        _ => name.to_string(),
    }
}

fn progress_text(job: &JobView) -> String {
    if job.progress_total > 0 {
        format!("{} / {}", job.progress_done, job.progress_total)
    } else {
        MISSING.into()
    }
}

impl RunsPage {
    async fn new(state: &AppState, username: String, mut form: RunForm) -> Result<Self, WebError> {
        let store = &state.store;
        let mut runs = Vec::new();
        for (job, params) in store.training_runs().await? {
            let wanted = params.get("rounds").and_then(|r| r.as_u64()).unwrap_or(0) + 1;
            let finished = store.game_rounds(job.id).await?.len();
            runs.push(RunRow {
                id: job.id,
                name: run_name(&params),
                state: job.state,
                progress: progress_text(&job),
                rounds: format!("{finished} of {wanted}"),
                created: Timestamp(job.created_at),
            });
        }
        let checkpoints = store.checkpoint_details().await?;
        let list = |kind: CheckpointKind, default: &str, chosen: &mut String| {
            let with_files: Vec<_> = checkpoints
                .iter()
                .filter(|c| c.kind == kind && c.model_dir.is_some())
                .collect();
            if chosen.is_empty()
                && let Some(c) = with_files
                    .iter()
                    .find(|c| c.label == default)
                    .or(with_files.first())
            {
                *chosen = c.id.to_string();
            }
            with_files
                .iter()
                .map(|c| Choice {
                    value: c.id.to_string(),
                    text: format!("{} (round {})", c.label, c.round),
                })
                .collect::<Vec<_>>()
        };
        let provers = list(
            CheckpointKind::Prover,
            DEFAULT_PROVER_LABEL,
            &mut form.prover,
        );
        let verifiers = list(
            CheckpointKind::Verifier,
            DEFAULT_VERIFIER_LABEL,
            &mut form.verifier,
        );
        Ok(RunsPage {
            username,
            is_admin: true,
            runs,
            provers,
            verifiers,
            rewards: &["src", "cgc", "goodhart"],
            optimisers: &["expert_iteration", "policy_gradient"],
            form,
            error: None,
        })
    }
}

async fn runs_page(
    State(state): State<AppState>,
    Admin(user): Admin,
) -> Result<RunsPage, WebError> {
    RunsPage::new(&state, user.username, RunForm::default()).await
}

/// A checkpoint chosen from one of the page's lists, which the run cannot do without.
fn listed(text: &str, offered: &[Choice], field: &str) -> Result<Uuid, WebError> {
    chosen_id(text, "", offered, field)?.ok_or_else(|| {
        WebError::BadRequest(format!("{field}: choose one of the listed checkpoints"))
    })
}

/// A decimal field, named `field` in the message when it is not a number (ranges are checked
/// with the other settings).
fn decimal(text: &str, field: &str) -> Result<f64, WebError> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| WebError::BadRequest(format!("{field}: {:?} is not a number", text.trim())))
}

/// Reads the form into run parameters (the rest at their defaults), checked.
fn run_params(form: &RunForm, page: &RunsPage) -> Result<TrainingRunParams, WebError> {
    let params = TrainingRunParams {
        name: form.name.trim().to_string(),
        prover_checkpoint_id: listed(&form.prover, &page.provers, "initial prover")?,
        verifier_checkpoint_id: listed(&form.verifier, &page.verifiers, "base verifier")?,
        rounds: whole(&form.rounds, game::ROUNDS, "rounds")?,
        seed: whole(&form.seed, 0..=u64::MAX, "seed")?,
        seeds: whole(&form.seeds, game::SEEDS, "seeds")?,
        reward: choice::<RewardKind>(&form.reward, "reward")?,
        problems: whole(&form.problems, game::PROBLEMS, "training problems")?,
        eval_problems: whole(
            &form.eval_problems,
            game::EVAL_PROBLEMS,
            "held-out problems",
        )?,
        steps_per_round: whole(
            &form.steps_per_round,
            game::STEPS_PER_ROUND,
            "steps per round",
        )?,
        samples_per_role: whole(
            &form.samples_per_role,
            game::SAMPLES_PER_ROLE,
            "samples per role",
        )?,
        optimiser: choice::<Optimiser>(&form.optimiser, "optimiser")?,
        kl_coefficient: decimal(&form.kl_coefficient, "KL coefficient")?,
        sequential_sneaky: !form.sequential_sneaky.trim().is_empty(),
        attack_steps: whole(&form.attack_steps, game::ATTACK_STEPS, "attack steps")?,
        attack_target: decimal(&form.attack_target, "attack target fool rate")?,
        fool_threshold: match form.fool_threshold.trim() {
            "" => None,
            text => Some(decimal(text, "fool-rate threshold")?),
        },
        ..TrainingRunParams::default()
    };
    params.check().map_err(WebError::Unprocessable)?;
    Ok(params)
}

/// Queues a run with the form's settings and goes to its page; re-renders the form with the
/// reason and its status when refused.
async fn start_run(
    State(state): State<AppState>,
    Admin(user): Admin,
    Form(form): Form<RunForm>,
) -> Result<Response, WebError> {
    let mut page = RunsPage::new(&state, user.username, form.clone()).await?;
    let queued = match run_params(&form, &page) {
        Ok(params) => {
            request_training_run(&state.store, &params, Some(user.id), state.clock.now_ms())
                .await
                .map_err(WebError::from)
        }
        Err(e) => Err(e),
    };
    match queued {
        Ok(jobs) => {
            let first = jobs
                .first()
                .ok_or_else(|| WebError::Internal("no training-run job was queued".into()))?;
            Ok(Redirect::to(&format!("/runs/{first}")).into_response())
        }
        Err(e @ (WebError::BadRequest(_) | WebError::Conflict(_) | WebError::Unprocessable(_))) => {
            page.error = Some(e.to_string());
            Ok((e.status(), page).into_response())
        }
        Err(e) => Err(e),
    }
}

/// A finished round of a run, as the page and the JSON report show it.
#[derive(Debug, Clone, Serialize)]
struct RoundView {
    round: u32,
    checkpoint_id: Uuid,
    checkpoint: String,
    steps: usize,
    sneaky_caught_up: bool,
    verifier_solutions: usize,
    verifier_validation_auroc: Option<f64>,
    optimiser: Optimiser,
    metrics: RoundMetrics,
    attack: Option<AttackReport>,
    seconds: f64,
}

/// Everything known about one run.
struct RunData {
    job: JobView,
    params: TrainingRunParams,
    rounds: Vec<RoundView>,
    steps: Vec<StepRecord>,
    /// For a run repeated over seeds: every seed's job and the figures across them.
    across_seeds: Option<AcrossSeeds>,
}

/// One seed's job of a run repeated over seeds.
#[derive(Debug, Clone, Serialize)]
struct SeedRun {
    id: Uuid,
    seed: u64,
    state: JobState,
    rounds_finished: usize,
}

/// A run repeated over seeds: its jobs, and per round each figure's mean and 95 % interval
/// across the seeds that finished the round.
#[derive(Debug, Clone, Serialize)]
struct AcrossSeeds {
    runs: Vec<SeedRun>,
    rounds: Vec<RoundAcrossSeeds>,
}

/// A stored record of run `id` (its parameters, a round, a step) read back, naming the run
/// and `what` in the error.
fn stored<T: serde::de::DeserializeOwned>(
    id: Uuid,
    what: &str,
    value: serde_json::Value,
) -> Result<T, WebError> {
    serde_json::from_value(value)
        .map_err(|e| WebError::Internal(format!("run {id}: stored {what} unreadable: {e}")))
}

/// The jobs of the run repeated over seeds `group`, by seed, and the figures across them.
async fn across_seeds_of(state: &AppState, group: Uuid) -> Result<AcrossSeeds, WebError> {
    let mut members = Vec::new();
    for (job, params) in state.store.training_runs().await? {
        let params: TrainingRunParams = stored(job.id, "parameters", params)?;
        if params.group == Some(group) {
            members.push((params.seed, job));
        }
    }
    members.sort_by_key(|(seed, _)| *seed);
    let mut runs = Vec::with_capacity(members.len());
    let mut reports = Vec::with_capacity(members.len());
    for (seed, job) in members {
        let mut rounds = Vec::new();
        for round in state.store.game_rounds(job.id).await? {
            rounds.push(stored(job.id, "round", round.report)?);
        }
        runs.push(SeedRun {
            id: job.id,
            seed,
            state: job.state,
            rounds_finished: rounds.len(),
        });
        reports.push(rounds);
    }
    Ok(AcrossSeeds {
        runs,
        rounds: across_seeds(&reports),
    })
}

async fn run_data(state: &AppState, id: Uuid) -> Result<RunData, WebError> {
    let job = state.store.job(id).await?;
    if job.kind != JobKind::TrainingRun {
        return Err(WebError::NotFound("training run"));
    }
    let params: TrainingRunParams = stored(id, "parameters", state.store.job_params(id).await?)?;
    let mut rounds = Vec::new();
    for round in state.store.game_rounds(id).await? {
        let report: RoundReport = stored(id, "round", round.report)?;
        rounds.push(RoundView {
            round: report.round,
            checkpoint_id: round.checkpoint_id,
            checkpoint: round.checkpoint_label,
            steps: report.steps,
            sneaky_caught_up: report.sneaky_caught_up,
            verifier_solutions: report.verifier_solutions,
            verifier_validation_auroc: report.verifier_validation_auroc,
            optimiser: report.optimiser,
            metrics: report.metrics,
            attack: report.attack,
            seconds: report.seconds,
        });
    }
    let mut steps = Vec::new();
    for step in state.store.game_steps(id).await? {
        steps.push(stored(id, "step", step.record)?);
    }
    let across_seeds = match params.group {
        Some(group) => Some(across_seeds_of(state, group).await?),
        None => None,
    };
    Ok(RunData {
        job,
        params,
        rounds,
        steps,
        across_seeds,
    })
}

/// How a round's attack ended, for its table cell.
fn attack_text(attack: Option<&AttackReport>) -> String {
    match attack {
        None => MISSING.into(),
        Some(a) => {
            let last = a.fool_rates.last().copied().flatten();
            match a.steps_to_target {
                Some(steps) => format!("{steps} (fool rate {})", three(last)),
                None => format!("not fooled in {} (fool rate {})", a.cap, three(last)),
            }
        }
    }
}

fn three(value: Option<f64>) -> String {
    value.map_or_else(|| MISSING.into(), |v| format!("{v:.3}"))
}

/// A round's line in the metrics table, every value already text.
struct RoundRow {
    round: u32,
    checkpoint_id: Uuid,
    checkpoint: String,
    helpful_accuracy: String,
    sneaky_success: String,
    verifier_accuracy: String,
    verifier_auroc: String,
    best_of_n: String,
    fool_threshold: String,
    fool_rate: String,
    attack: String,
    verifier_solutions: usize,
    validation_auroc: String,
    steps: usize,
    stop: &'static str,
    seconds: String,
}

/// A round's line in the across-seeds table: each figure as "mean [low, high]".
struct SeedRoundRow {
    round: u32,
    seeds: usize,
    helpful_accuracy: String,
    sneaky_incorrect: String,
    sneaky_success: String,
    verifier_auroc: String,
    fool_rate: String,
    best_of_n: String,
    attack_steps: String,
}

/// A figure across seeds for a table cell.
fn interval_text(figure: Option<MeanInterval>) -> String {
    figure.map_or_else(
        || MISSING.into(),
        |f| format!("{:.3} [{:.3}, {:.3}]", f.mean, f.low, f.high),
    )
}

impl SeedRoundRow {
    fn new(r: &RoundAcrossSeeds) -> Self {
        SeedRoundRow {
            round: r.round,
            seeds: r.seeds,
            helpful_accuracy: interval_text(r.helpful_accuracy),
            sneaky_incorrect: interval_text(r.sneaky_incorrect),
            sneaky_success: interval_text(r.sneaky_success),
            verifier_auroc: interval_text(r.verifier_auroc),
            fool_rate: interval_text(r.fool_rate),
            best_of_n: interval_text(r.best_of_n_accuracy),
            attack_steps: match r.attack_steps {
                None => MISSING.into(),
                Some(steps) if r.not_fooled > 0 => format!(
                    "{:.1} [{:.1}, {:.1}], not fooled in {} of {}",
                    steps.mean, steps.low, steps.high, r.not_fooled, steps.n
                ),
                Some(steps) => format!("{:.1} [{:.1}, {:.1}]", steps.mean, steps.low, steps.high),
            },
        }
    }
}

/// A prover step's line.
struct StepRow {
    round: u32,
    step: usize,
    mean_reward: String,
    kept: usize,
    helpful_accuracy: String,
    sneaky_success: String,
    loss: String,
    outcome: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "run.html")]
struct RunPage {
    username: String,
    is_admin: bool,
    id: Uuid,
    name: String,
    state: JobState,
    progress: String,
    error: Option<String>,
    settings: Vec<(&'static str, String)>,
    rounds: Vec<RoundRow>,
    steps: Vec<StepRow>,
    prover_plot: String,
    verifier_plot: String,
    attack_plot: String,
    /// A run repeated over seeds: its seeds' jobs, the figures across them, and their plots.
    seed_runs: Vec<SeedRun>,
    seed_rounds: Vec<SeedRoundRow>,
    seed_plots: Vec<String>,
    /// The one-click study: offered once the run has finished.
    can_make_study: bool,
    problem_sets: Vec<Choice>,
    study_name: String,
}

async fn run_page(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<Uuid>,
) -> Result<RunPage, WebError> {
    let run = run_data(&state, id).await?;
    let p = &run.params;
    let settings = vec![
        ("Rounds after round 0", p.rounds.to_string()),
        ("Reward", p.reward.to_string()),
        (
            "Seed",
            if p.seeds > 1 {
                format!("{} (one of {} seeds, listed below)", p.seed, p.seeds)
            } else {
                p.seed.to_string()
            },
        ),
        ("Training problems (generated)", p.problems.to_string()),
        ("Held-out problems", p.eval_problems.to_string()),
        (
            "Prover steps per round at most",
            p.steps_per_round.to_string(),
        ),
        (
            "Samples per problem and role",
            p.samples_per_role.to_string(),
        ),
        (
            "Sneaky prover",
            if p.sequential_sneaky {
                "sequential: shown the helpful solution of the same problem first".to_string()
            } else {
                "simultaneous: writes without seeing the helpful solution".to_string()
            },
        ),
        (
            "Attack on each round's verifier",
            if p.attack_steps == 0 {
                "none".to_string()
            } else {
                format!(
                    "sneaky-only steps until a fool rate of {} or {} steps",
                    p.attack_target, p.attack_steps
                )
            },
        ),
        (
            "Fool-rate threshold",
            p.fool_threshold.map_or_else(
                || "50 % recall on round 0's helpful correct held-out solutions".to_string(),
                |t| format!("verifier score {t}"),
            ),
        ),
        match p.optimiser {
            Optimiser::ExpertIteration => (
                "Optimiser: expert iteration",
                format!(
                    "best {:.0} % of each role's positive-reward samples, {} AdamW steps of {} at {}",
                    p.keep_share * 100.0,
                    p.fine_tune_steps,
                    p.fine_tune_batch,
                    p.fine_tune_learning_rate
                ),
            ),
            Optimiser::PolicyGradient => (
                "Optimiser: policy gradient",
                format!(
                    "REINFORCE, leave-one-out baseline over the {} samples of each problem and role, KL penalty β = {} to the initial prover, one AdamW pass in minibatches of {} at {}",
                    p.samples_per_role,
                    p.kl_coefficient,
                    p.fine_tune_batch,
                    p.fine_tune_learning_rate
                ),
            ),
        },
    ];
    let metrics: Vec<(i64, RoundMetrics)> = run
        .rounds
        .iter()
        .map(|r| (i64::from(r.round), r.metrics))
        .collect();
    let rounds = run
        .rounds
        .iter()
        .map(|r| RoundRow {
            round: r.round,
            checkpoint_id: r.checkpoint_id,
            checkpoint: r.checkpoint.clone(),
            helpful_accuracy: three(r.metrics.prover_accuracy),
            sneaky_success: three(r.metrics.sneaky_success),
            verifier_accuracy: three(r.metrics.verifier_accuracy),
            verifier_auroc: three(r.metrics.verifier_auroc),
            best_of_n: three(r.metrics.best_of_n_accuracy),
            fool_threshold: three(r.metrics.fool_threshold),
            fool_rate: three(r.metrics.fool_rate),
            attack: attack_text(r.attack.as_ref()),
            verifier_solutions: r.verifier_solutions,
            validation_auroc: three(r.verifier_validation_auroc),
            steps: r.steps,
            stop: if r.round == 0 {
                "initial prover"
            } else if r.sneaky_caught_up {
                "sneaky caught up"
            } else {
                "step budget"
            },
            seconds: format!("{:.0}", r.seconds),
        })
        .collect();
    let steps = run
        .steps
        .iter()
        .map(|s| StepRow {
            round: s.round,
            step: s.step,
            mean_reward: format!("{:.3}", s.mean_reward),
            kept: s.kept,
            helpful_accuracy: three(s.metrics.prover_accuracy),
            sneaky_success: three(s.metrics.sneaky_success),
            loss: s
                .loss
                .map_or_else(|| MISSING.into(), |(a, b)| format!("{a:.3} → {b:.3}")),
            outcome: if s.prover.is_none() {
                "no positive reward: prover unchanged, round ends"
            } else if s.sneaky_caught_up {
                "sneaky caught up: round ends"
            } else {
                "prover fine-tuned"
            },
        })
        .collect();
    let (seed_runs, seed_rounds, seed_plots) = match &run.across_seeds {
        None => (Vec::new(), Vec::new(), Vec::new()),
        Some(across) => (
            across.runs.clone(),
            across.rounds.iter().map(SeedRoundRow::new).collect(),
            vec![
                round_curves_svg(
                    "plot-seeds-prover-title",
                    "The prover by round across seeds: mean and 95% interval",
                    &prover_curves_across_seeds(&across.rounds),
                ),
                round_curves_svg(
                    "plot-seeds-verifier-title",
                    "The round's verifier across seeds: mean and 95% interval",
                    &verifier_curves_across_seeds(&across.rounds),
                ),
                attack_steps_across_seeds_svg(
                    "plot-seeds-attack-title",
                    "Attack steps until fooled across seeds: mean and 95% interval",
                    &across.rounds,
                    p.attack_steps,
                ),
            ],
        ),
    };
    let problem_sets = state
        .store
        .problem_sets()
        .await?
        .into_iter()
        .map(|s| Choice {
            value: s.id.to_string(),
            text: format!("{} ({} problems)", s.name, s.problems),
        })
        .collect();
    Ok(RunPage {
        is_admin: staff.is_admin(),
        username: staff.0.username,
        id,
        name: p.name.clone(),
        state: run.job.state,
        progress: progress_text(&run.job),
        error: run.job.error.clone(),
        settings,
        rounds,
        steps,
        prover_plot: round_curves_svg(
            "plot-run-prover-title",
            "The prover by round: helpful accuracy and sneaky success on held-out problems",
            &prover_curves(&metrics),
        ),
        verifier_plot: round_curves_svg(
            "plot-run-verifier-title",
            "The round's verifier: accuracy, AUROC, balanced best-of-n accuracy and fool rate",
            &verifier_curves(&metrics),
        ),
        attack_plot: attack_steps_svg(
            "plot-run-attack-title",
            "Robustness: sneaky-only attack steps until each round's verifier is fooled",
            &run.rounds
                .iter()
                .filter_map(|r| {
                    let a = r.attack.as_ref()?;
                    Some((i64::from(r.round), a.steps_to_target, a.cap))
                })
                .collect::<Vec<_>>(),
        ),
        seed_runs,
        seed_rounds,
        seed_plots,
        can_make_study: run.job.state == JobState::Succeeded && run.rounds.len() > 1,
        problem_sets,
        study_name: format!("{} rounds 0–{}", p.name, run.rounds.len().saturating_sub(1)),
    })
}

/// The run as JSON: settings, state and every finished round's metrics and checkpoint.
#[derive(Serialize)]
struct RunJson {
    id: Uuid,
    name: String,
    state: JobState,
    progress_done: i64,
    progress_total: i64,
    params: TrainingRunParams,
    rounds: Vec<RoundView>,
    steps: Vec<StepRecord>,
    /// A run repeated over seeds: every seed's job and, per round, each figure's mean and
    /// 95 % interval across the seeds.
    across_seeds: Option<AcrossSeeds>,
}

/// The run's record as JSON; a personal API token reads it too.
async fn run_json(
    State(state): State<AppState>,
    _reader: ReportReader,
    Path(id): Path<Uuid>,
) -> Result<Json<RunJson>, WebError> {
    let run = run_data(&state, id).await?;
    Ok(Json(RunJson {
        id,
        name: run.params.name.clone(),
        state: run.job.state,
        progress_done: run.job.progress_done,
        progress_total: run.job.progress_total,
        params: run.params,
        rounds: run.rounds,
        steps: run.steps,
        across_seeds: run.across_seeds,
    }))
}

/// The one-click study form: a problem set and a name; everything else at the paper's
/// defaults (45 s per item, both roles, one sample per problem and role).
#[derive(Debug, Deserialize)]
struct StudyForm {
    name: String,
    problem_set_id: Uuid,
    #[serde(default)]
    max_problems: String,
    #[serde(default)]
    judgements_per_solution: String,
}

/// Problems the one-click study takes from the set when the form leaves it empty.
const STUDY_PROBLEMS: usize = 50;

/// Creates a human study comparing the run's round provers (the initial prover included),
/// both roles, and queues the generation job that fills it; goes to the study's page.
async fn create_study(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<Uuid>,
    Form(form): Form<StudyForm>,
) -> Result<Redirect, WebError> {
    let run = run_data(&state, id).await?;
    if run.job.state != JobState::Succeeded {
        return Err(WebError::Conflict(format!(
            "the run is {}; a study compares its rounds once it has finished",
            run.job.state
        )));
    }
    let mut checkpoint_ids: Vec<Uuid> = Vec::new();
    for round in &run.rounds {
        if !checkpoint_ids.contains(&round.checkpoint_id) {
            checkpoint_ids.push(round.checkpoint_id);
        }
    }
    let max_problems = match form.max_problems.trim() {
        "" => STUDY_PROBLEMS,
        text => whole(text, 1..=100_000, "problems")?,
    };
    let judgements_per_solution = match form.judgements_per_solution.trim() {
        "" => 1,
        text => whole(text, 1..=100, "judgements per solution")?,
    };
    let spec = StudySpec {
        name: form.name.trim().to_string(),
        time_limit_ms: 45_000,
        judgements_per_solution,
        reclaim_grace_ms: crate::judging::DEFAULT_RECLAIM_GRACE_MS,
        problem_set_id: form.problem_set_id,
        checkpoint_ids: checkpoint_ids.clone(),
        roles: ProverRole::ALL.to_vec(),
        max_problems: Some(max_problems),
        protocol: RaterProtocol::default(),
        answers: Default::default(),
        time_limits: Default::default(),
    };
    let request = GenerationRequest {
        checkpoint_ids,
        roles: ProverRole::ALL.to_vec(),
        samples_per_role: 1,
        sampling: SamplingParams::default(),
        seed: Some(run.params.seed),
    };
    let (study, _job) = create_generated_study(
        &state.store,
        &spec,
        request,
        Some(staff.0.id),
        state.clock.now_ms(),
    )
    .await?;
    Ok(Redirect::to(&format!("/studies/{}", study.id)))
}

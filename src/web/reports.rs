//! Researchers' report downloads: the study's figures as JSON and the tidy per-attempt table
//! as JSON Lines and CSV. Staff only (researchers and admins); raters never reach these routes.
//! The data routes also take a personal API token (`ReportReader`), for researchers' scripts.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;

use super::extract::{Path, Query};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::plots;
use super::session::{ReportReader, Staff};
use super::{AppState, WebError};
use crate::export::{Encoder, Format, add_flags, chance_level_raters, rater_tallies};
use crate::reports::{
    Attempt, DifficultyQuartile, IntegritySummary, Rate, StudyReport, VerifierVsHumans,
    accuracy_by_difficulty, study_report, verifier_vs_humans, without_flagged,
};
use crate::sample_size::Statistic;
use crate::store::Store;
use crate::store::quality::RaterQuality;

/// Routes of the report downloads.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/studies/{id}/report", get(report_page))
        .route("/studies/{id}/report.json", get(report_json))
        .route("/studies/{id}/attempts.csv", get(attempts_csv))
        .route("/studies/{id}/attempts.jsonl", get(attempts_jsonl))
        .route("/studies/{id}/attempts.parquet", get(attempts_parquet))
}

/// `?exclude=chance` leaves chance-level raters out of the figures, `?exclude=flagged` the
/// attempts with integrity flags; `?exclude=chance,flagged` both.
#[derive(Debug, Deserialize)]
pub(super) struct ReportQuery {
    #[serde(default)]
    pub(super) exclude: Option<String>,
}

/// What a report leaves out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Exclusions {
    /// Raters indistinguishable from guessing.
    pub(super) chance: bool,
    /// Attempts whose page counted an integrity event.
    pub(super) flagged: bool,
}

impl Exclusions {
    /// The `exclude` value that asks for these (empty for none).
    pub(super) fn query_value(self) -> &'static str {
        match (self.chance, self.flagged) {
            (false, false) => "",
            (true, false) => "chance",
            (false, true) => "flagged",
            (true, true) => "chance,flagged",
        }
    }

    /// `?exclude=…` for a link, or nothing.
    pub(super) fn query(self) -> String {
        match self.query_value() {
            "" => String::new(),
            value => format!("?exclude={value}"),
        }
    }
}

impl Exclusions {
    /// The attempts the figures are computed from (without the flagged ones, when asked) and
    /// the raters left out of them (the chance-level ones, when asked: the binomial test on
    /// the kept attempts' tallies, the same raters `study_report` leaves out).
    pub(super) fn apply(self, all: &[Attempt]) -> (Cow<'_, [Attempt]>, HashSet<Uuid>) {
        let attempts: Cow<'_, [Attempt]> = if self.flagged {
            Cow::Owned(without_flagged(all))
        } else {
            Cow::Borrowed(all)
        };
        let excluded = if self.chance {
            chance_level_raters(&rater_tallies(&attempts))
        } else {
            HashSet::new()
        };
        (attempts, excluded)
    }
}

impl ReportQuery {
    /// What to leave out; a value other than `chance`, `flagged` (comma-separated) or `none`
    /// is refused.
    pub(super) fn exclusions(&self) -> Result<Exclusions, WebError> {
        let mut exclusions = Exclusions::default();
        for part in self.exclude.as_deref().unwrap_or("").split(',') {
            match part.trim() {
                "" | "none" => {}
                "chance" => exclusions.chance = true,
                "flagged" => exclusions.flagged = true,
                other => {
                    return Err(WebError::BadRequest(format!(
                        "exclude must be \"chance\", \"flagged\", both separated by a comma, or \"none\", not {other:?}"
                    )));
                }
            }
        }
        Ok(exclusions)
    }
}

/// Everything a study's report shows, as stored now.
struct Loaded {
    judgements: usize,
    report: StudyReport,
    difficulty: Vec<DifficultyQuartile>,
    verifier: Option<VerifierVsHumans>,
    /// Per rater: screening and silent gold (QC) answers, which are never in the attempts.
    rater_quality: BTreeMap<Uuid, RaterQuality>,
}

async fn load_report(
    state: &AppState,
    id: Uuid,
    exclusions: Exclusions,
) -> Result<Loaded, WebError> {
    let exclude = exclusions.chance;
    // The four reads are independent: on SQLite each runs on a connection (and a thread) of
    // its own.
    let (all_attempts, solve_rates, scores, rater_quality) = tokio::try_join!(
        state.store.report_attempts(id),
        state.store.problem_solve_rates(id),
        current_scores(&state.store, id),
        state.store.study_rater_quality(id),
    )?;
    let integrity = IntegritySummary::of(&all_attempts, exclusions.flagged);
    // The excluded raters are known first so the verifier and difficulty figures can be
    // computed beside the report.
    let (attempts, excluded) = exclusions.apply(&all_attempts);
    let attempts: &[Attempt] = &attempts;
    let (report, side) = std::thread::scope(|scope| {
        let side = scope.spawn(|| {
            let difficulty = accuracy_by_difficulty(attempts, &solve_rates, &excluded);
            let verifier = scores.and_then(|(version, scores)| {
                (!scores.is_empty())
                    .then(|| verifier_vs_humans(version, &scores, attempts, &excluded))
            });
            (difficulty, verifier)
        });
        let mut report = study_report(attempts, exclude);
        report.integrity = integrity;
        (report, side.join())
    });
    let (difficulty, verifier) =
        side.map_err(|_| WebError::Internal("the report's computation failed".into()))?;
    Ok(Loaded {
        rater_quality,
        judgements: all_attempts.len(),
        report,
        difficulty,
        verifier,
    })
}

/// The current verifier's score of each of the study's solutions scored (none without one).
pub(super) async fn current_score_map(
    store: &Store,
    id: Uuid,
) -> Result<HashMap<Uuid, f64>, crate::store::StoreError> {
    Ok(current_scores(store, id)
        .await?
        .map(|(_, scores)| scores.into_iter().map(|(id, s, _)| (id, s)).collect())
        .unwrap_or_default())
}

/// The current verifier version and its scores of the study's solutions (solution, score,
/// ground truth); `None` without a verifier.
pub(super) async fn current_scores(
    store: &Store,
    id: Uuid,
) -> Result<Option<(i64, Vec<(Uuid, f64, bool)>)>, crate::store::StoreError> {
    let Some(current) = store.current_verifier().await? else {
        return Ok(None);
    };
    let scores = store
        .study_scores(id)
        .await?
        .into_iter()
        .filter(|s| s.version == current.version)
        .map(|s| (s.solution_id, s.score, s.is_correct))
        .collect();
    Ok(Some((current.version, scores)))
}

/// A figure for the page: "—" when absent.
fn show(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "—".to_string(), |v| format!("{v:.decimals$}"))
}

/// "0.750 [0.409, 0.929] (n=8)", or "—".
fn show_rate(rate: Option<Rate>) -> String {
    rate.map_or_else(
        || "—".to_string(),
        |r| {
            format!(
                "{:.3} [{:.3}, {:.3}] (n={})",
                r.value, r.low, r.high, r.trials
            )
        },
    )
}

fn seconds(ms: Option<f64>) -> String {
    show(ms.map(|m| m / 1000.0), 1)
}

/// A rate as [`show_rate`] writes it, or "n too small" below the statistic's minimum trials.
fn gated_rate(statistic: Statistic, rate: Option<Rate>) -> String {
    match rate {
        Some(r) => statistic.gate(r.trials, show_rate(Some(r))),
        None => show_rate(None),
    }
}

/// Seconds as [`seconds`] writes them, or "n too small" below the statistic's minimum.
fn gated_seconds(statistic: Statistic, n: u64, ms: Option<f64>) -> String {
    match ms {
        Some(_) => statistic.gate(n, seconds(ms)),
        None => seconds(None),
    }
}

/// A three-decimal figure over `n`, or "n too small" below the statistic's minimum.
fn gated_figure(statistic: Statistic, n: u64, value: Option<f64>) -> String {
    match value {
        Some(v) => statistic.gate(n, format!("{v:.3}")),
        None => show(None, 3),
    }
}

/// The page's statement of the minimum-n rule, from the constants themselves.
fn minimums_note() -> String {
    format!(
        "Figures from small samples are not shown (marked \"n too small\"): accuracies and \
         their intervals need {} answered judgements, a rater's accuracy {} answered items, a \
         median time {} answered judgements, d′ {} on correct and {} on incorrect solutions, \
         agreement (κ, α) {} solutions with two or more answers, difficulty quartiles {} \
         problems.",
        Statistic::Accuracy.minimum(),
        Statistic::RaterAccuracy.minimum(),
        Statistic::Median.minimum(),
        Statistic::DPrime.minimum(),
        Statistic::DPrime.minimum(),
        Statistic::Agreement.minimum(),
        Statistic::DifficultyQuartiles.minimum(),
    )
}

/// Trials of a rate (0 without one).
fn trials(rate: Option<Rate>) -> u64 {
    rate.map_or(0, |r| r.trials)
}

/// One row of the groups table, formatted.
struct GroupRow {
    checkpoint: String,
    round: i64,
    role: String,
    judgements: u64,
    accuracy: String,
    on_correct: String,
    on_incorrect: String,
    d_prime: String,
    timeout_rate: String,
    mean_s: String,
    median_s: String,
    right_s: String,
    /// Answers with a stated probability (and how many at 50 %).
    stated: String,
    brier: String,
    log_score: String,
}

/// One row of the raters table, formatted.
struct RaterRow {
    name: String,
    judgements: u64,
    accuracy: String,
    median_s: String,
    timeouts: u64,
    p_value: String,
    chance_level: bool,
    excluded: bool,
    /// Accuracy on silent gold items, with its interval.
    gold: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "report.html")]
struct ReportPage {
    username: String,
    is_admin: bool,
    study_id: Uuid,
    study_name: String,
    judgements: usize,
    /// Solutions left out of the study for stating no final answer.
    ungradable_left_out: i64,
    exclude: bool,
    excluded: usize,
    /// Whether integrity-flagged attempts are left out, and the links' queries.
    exclude_flagged: bool,
    integrity: IntegritySummary,
    /// The same page with chance-level raters toggled, and with flagged attempts toggled.
    toggle_chance: String,
    toggle_flagged: String,
    /// `?exclude=…` of this page, for the summary link.
    exclusion_query: String,
    /// Whether any answer stated a probability (confidence or probability studies).
    probabilistic: bool,
    /// Calibration bins: (bin, answers, mean stated, observed share correct with interval).
    calibration: Vec<(String, u64, String, String)>,
    calibration_plot: String,
    /// Whether the study's items had more than one time limit.
    has_arms: bool,
    /// Speed–accuracy per checkpoint × limit: (checkpoint, limit in s, judgements, accuracy,
    /// timeout rate, mean time when right with its interval).
    arms: Vec<(String, String, u64, String, String, String)>,
    /// The speed–accuracy curves as an SVG.
    arms_plot: String,
    /// Accuracy by serial position: (positions, judgements, accuracy).
    positions: Vec<(String, u64, String)>,
    /// The raters' AUROC pooled per solution, and over how many solutions.
    human_auroc: String,
    human_auroc_solutions: u64,
    groups: Vec<GroupRow>,
    raters: Vec<RaterRow>,
    agreement_solutions: u64,
    fleiss_kappa: String,
    krippendorff_alpha: String,
    buckets: Vec<(String, String)>,
    /// Per role: "wrong" verdicts, flag rate, flagged on incorrect solutions, agreement.
    step_flags: Vec<(String, u64, String, String, String)>,
    accuracy_plot: String,
    time_plot: String,
    rater_plot: String,
    /// Empty below the quartiles' minimum sample (the page then says why).
    difficulty: Vec<(u8, String, u64, String)>,
    /// Problems with a solve rate: the quartiles' sample.
    difficulty_problems: u64,
    difficulty_minimum: u64,
    /// The minimum-n rule in words, for the page's note.
    minimums: String,
    verifier: Option<Vec<(String, String)>>,
}

/// The report page: tables, the accuracy-by-round plot, the exclusion toggle, downloads.
async fn report_page(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<Uuid>,
    Query(query): Query<ReportQuery>,
) -> Result<ReportPage, WebError> {
    let exclusions = query.exclusions()?;
    let exclude = exclusions.chance;
    let study = state.store.study(id).await?;
    let Loaded {
        judgements,
        report,
        difficulty,
        verifier,
        rater_quality,
    } = load_report(&state, id, exclusions).await?;
    let names: BTreeMap<Uuid, String> = state.store.rater_names(id).await?.into_iter().collect();
    let difficulty_problems: u64 = difficulty.iter().map(|q| q.problems).sum();
    let groups = report
        .groups
        .iter()
        .map(|g| GroupRow {
            checkpoint: g.checkpoint.clone(),
            round: g.round,
            role: g.role.to_string(),
            judgements: g.judgements,
            accuracy: gated_rate(Statistic::Accuracy, g.accuracy),
            on_correct: gated_rate(Statistic::Accuracy, g.accuracy_on_correct),
            on_incorrect: gated_rate(Statistic::Accuracy, g.accuracy_on_incorrect),
            d_prime: match g.d_prime {
                Some(d) => Statistic::DPrime.gate(
                    trials(g.accuracy_on_correct).min(trials(g.accuracy_on_incorrect)),
                    format!("{d:.2}"),
                ),
                None => show(None, 2),
            },
            timeout_rate: match g.timeout_rate {
                Some(rate) => Statistic::Accuracy.gate(g.judgements, format!("{rate:.3}")),
                None => show(None, 3),
            },
            mean_s: seconds(g.mean_ms),
            median_s: gated_seconds(Statistic::Median, trials(g.accuracy), g.median_ms),
            right_s: seconds(g.mean_ms_when_right),
            stated: match g.even_odds {
                0 => g.stated.to_string(),
                even => format!("{} ({even} at 50 %)", g.stated),
            },
            brier: gated_figure(Statistic::Accuracy, g.stated, g.brier_score),
            log_score: gated_figure(Statistic::Accuracy, g.stated, g.log_score),
        })
        .collect();
    let raters = report
        .raters
        .iter()
        .map(|r| RaterRow {
            name: names.get(&r.rater_id).cloned().unwrap_or_default(),
            judgements: r.judgements,
            accuracy: gated_rate(Statistic::RaterAccuracy, r.accuracy),
            median_s: gated_seconds(Statistic::Median, trials(r.accuracy), r.median_ms),
            timeouts: r.timeouts,
            p_value: format!("{:.4}", r.p_value),
            chance_level: r.chance_level,
            excluded: report.excluded_raters.contains(&r.rater_id),
            gold: gated_rate(
                Statistic::RaterAccuracy,
                rater_quality
                    .get(&r.rater_id)
                    .and_then(|q| Rate::of(q.gold.right as u64, q.gold.answered as u64)),
            ),
        })
        .collect();
    let buckets = report
        .accuracy_by_time
        .iter()
        .map(|b| {
            (
                format!("{}–{} s", b.from_ms / 1000, b.to_ms / 1000),
                gated_rate(Statistic::Accuracy, b.accuracy),
            )
        })
        .collect();
    let step_flags = report
        .step_flags
        .iter()
        .map(|f| {
            (
                f.role.to_string(),
                f.wrong_verdicts,
                gated_rate(Statistic::Accuracy, f.flag_rate),
                format!("{} of {}", f.flagged_on_incorrect, f.wrong_on_incorrect),
                match f.agreement_with_modal_step {
                    Some(share) => format!(
                        "{:.0}% of {} flags",
                        100.0 * share,
                        f.flags_on_shared_solutions
                    ),
                    None => "—".into(),
                },
            )
        })
        .collect();
    let calibration = report
        .calibration
        .iter()
        .map(|b| {
            (
                format!("{}–{} %", b.from_percent, b.to_percent),
                b.answers,
                format!("{:.3}", b.mean_stated),
                gated_rate(Statistic::Accuracy, Some(b.observed)),
            )
        })
        .collect();
    let toggled = |chance: bool, flagged: bool| {
        format!(
            "/studies/{}/report{}",
            study.id,
            Exclusions { chance, flagged }.query()
        )
    };
    let limits: std::collections::BTreeSet<i64> =
        report.arms.iter().map(|a| a.time_limit_ms).collect();
    let arms = report
        .arms
        .iter()
        .map(|a| {
            (
                a.checkpoint.clone(),
                format!("{}", a.time_limit_ms as f64 / 1000.0),
                a.judgements,
                gated_rate(Statistic::Accuracy, a.accuracy),
                show(a.timeout_rate, 3),
                match (
                    a.mean_ms_when_right,
                    a.mean_ms_when_right_low,
                    a.mean_ms_when_right_high,
                ) {
                    (Some(m), Some(low), Some(high)) => format!(
                        "{:.1} [{:.1}, {:.1}]",
                        m / 1000.0,
                        low / 1000.0,
                        high / 1000.0
                    ),
                    (m, _, _) => seconds(m),
                },
            )
        })
        .collect();
    let positions = report
        .accuracy_by_position
        .iter()
        .map(|b| {
            (
                format!("{}–{}", b.from, b.to),
                b.judgements,
                gated_rate(Statistic::Accuracy, b.accuracy),
            )
        })
        .collect();
    Ok(ReportPage {
        has_arms: limits.len() > 1,
        arms_plot: plots::arms_svg(&report.arms),
        arms,
        positions,
        exclude_flagged: exclusions.flagged,
        integrity: report.integrity,
        toggle_chance: toggled(!exclusions.chance, exclusions.flagged),
        toggle_flagged: toggled(exclusions.chance, !exclusions.flagged),
        exclusion_query: exclusions.query(),
        probabilistic: report.groups.iter().any(|g| g.stated > 0),
        calibration,
        calibration_plot: plots::calibration_svg(&report.calibration),
        human_auroc: gated_figure(
            Statistic::Agreement,
            report.human_auroc.solutions,
            report.human_auroc.auroc,
        ),
        human_auroc_solutions: report.human_auroc.solutions,
        step_flags,
        username: staff.0.username.clone(),
        is_admin: staff.is_admin(),
        study_id: study.id,
        study_name: study.name,
        judgements,
        ungradable_left_out: state.store.study_progress(id).await?.ungradable_left_out,
        exclude,
        excluded: report.excluded_raters.len(),
        groups,
        raters,
        agreement_solutions: report.agreement.solutions,
        fleiss_kappa: gated_figure(
            Statistic::Agreement,
            report.agreement.solutions,
            report.agreement.fleiss_kappa,
        ),
        krippendorff_alpha: gated_figure(
            Statistic::Agreement,
            report.agreement.solutions,
            report.agreement.krippendorff_alpha,
        ),
        buckets,
        accuracy_plot: plots::accuracy_by_round_svg(&report),
        time_plot: plots::time_by_round_svg(&report),
        rater_plot: plots::rater_scatter_svg(
            &report.raters,
            &report.excluded_raters.iter().copied().collect(),
            &names,
        ),
        difficulty_problems,
        difficulty: if Statistic::DifficultyQuartiles.shown_for(difficulty_problems) {
            difficulty
                .iter()
                .map(|q| {
                    (
                        q.quartile,
                        format!("{:.2}–{:.2}", q.solve_rate_from, q.solve_rate_to),
                        q.problems,
                        gated_rate(Statistic::Accuracy, q.accuracy),
                    )
                })
                .collect()
        } else {
            Vec::new()
        },
        difficulty_minimum: Statistic::DifficultyQuartiles.minimum(),
        minimums: minimums_note(),
        verifier: verifier.map(|v| {
            vec![
                ("version".to_string(), v.version.to_string()),
                ("solutions scored".into(), v.solutions.to_string()),
                (
                    "AUROC vs ground truth".into(),
                    show(v.auroc_ground_truth, 3),
                ),
                (
                    format!("AUROC vs human majority ({} solutions)", v.with_majority),
                    show(v.auroc_human_majority, 3),
                ),
                (
                    "correlation of score with human accuracy".into(),
                    show(v.correlation_with_human_accuracy, 3),
                ),
                (
                    format!(
                        "human AUROC, on the {} solutions both scored and judged",
                        v.compared_solutions
                    ),
                    show(v.human_auroc, 3),
                ),
                (
                    "verifier AUROC on the same solutions".into(),
                    show(v.verifier_auroc, 3),
                ),
            ]
        }),
    })
}

/// The study's summary: groups, raters, agreement, speed–accuracy.
async fn report_json(
    State(state): State<AppState>,
    _reader: ReportReader,
    Path(id): Path<Uuid>,
    Query(query): Query<ReportQuery>,
) -> Result<Json<serde_json::Value>, WebError> {
    let study = state.store.study(id).await?;
    let loaded = load_report(&state, id, query.exclusions()?).await?;
    Ok(Json(serde_json::json!({
        "study": {
            "id": study.id,
            "name": study.name,
            "answer_format": study.answers.format,
            "allow_even_odds": study.answers.allow_even_odds,
            "justification": study.answers.justification,
        },
        "judgements": loaded.judgements,
        "report": loaded.report,
        "accuracy_by_difficulty": loaded.difficulty,
        "minimum_n": Statistic::ALL
            .iter()
            .map(|s| (s.key().to_string(), serde_json::json!(s.minimum())))
            .collect::<serde_json::Map<_, _>>(),
        "verifier": loaded.verifier,
        "rater_quality": loaded
            .rater_quality
            .iter()
            .map(|(rater_id, q)| {
                serde_json::json!({
                    "rater_id": rater_id,
                    "practice_answered": q.practice.answered,
                    "screening_right": q.screening.right,
                    "screening_answered": q.screening.answered,
                    "screening_passed": q.screening_passed,
                    "gold_right": q.gold.right,
                    "gold_answered": q.gold.answered,
                    "gold_accuracy": Rate::of(q.gold.right as u64, q.gold.answered as u64),
                })
            })
            .collect::<Vec<_>>(),
    })))
}

/// Rows per page of a streamed download: a Parquet row group, one channel message.
const DOWNLOAD_PAGE_ROWS: usize = 50_000;

/// The tidy table as CSV with a header row (`true`/`false`, empty cells for nulls).
async fn attempts_csv(
    state: State<AppState>,
    reader: ReportReader,
    id: Path<Uuid>,
) -> Result<Response, WebError> {
    attempts_download(state, reader, id, Format::Csv).await
}

/// The tidy table as JSON Lines, for `pandas.read_json(lines=True)` and the like.
async fn attempts_jsonl(
    state: State<AppState>,
    reader: ReportReader,
    id: Path<Uuid>,
) -> Result<Response, WebError> {
    attempts_download(state, reader, id, Format::JsonLines).await
}

/// The tidy table as Parquet, with typed columns (timestamps, integers, booleans).
async fn attempts_parquet(
    state: State<AppState>,
    reader: ReportReader,
    id: Path<Uuid>,
) -> Result<Response, WebError> {
    attempts_download(state, reader, id, Format::Parquet).await
}

/// Streams the tidy table of study `id` in `format` (see [`crate::export`]).
async fn attempts_download(
    State(state): State<AppState>,
    _reader: ReportReader,
    Path(id): Path<Uuid>,
    format: Format,
) -> Result<Response, WebError> {
    let study = state.store.study(id).await?;
    let chance_level = chance_level_raters(&rater_tallies(&state.store.report_attempts(id).await?));
    let encoder = format
        .encoder()
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let (chunks, body) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    tokio::spawn(stream_attempts(
        state.store.clone(),
        id,
        chance_level,
        encoder,
        chunks,
    ));
    let file = format!(
        "attachment; filename=\"study-{}-attempts.{}\"",
        study.id,
        format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (header::CONTENT_DISPOSITION, file),
        ],
        Body::from_stream(Chunks(body)),
    )
        .into_response())
}

/// Reads the study's attempts page by page, flags and encodes each page off the async threads,
/// and sends the bytes on. A failure mid-way ends the body with an error, so the client sees a
/// broken transfer rather than a file that looks complete.
async fn stream_attempts(
    store: Store,
    study_id: Uuid,
    chance_level: HashSet<Uuid>,
    mut encoder: Encoder,
    chunks: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let (pages_in, mut pages) = mpsc::channel(1);
    let reading = tokio::spawn(async move {
        store
            .send_attempt_pages(study_id, DOWNLOAD_PAGE_ROWS, pages_in)
            .await
    });
    let chance_level = Arc::new(chance_level);
    let failure = |e: String| std::io::Error::other(e);
    while let Some(mut page) = pages.recv().await {
        let chance_level = Arc::clone(&chance_level);
        let encoded = tokio::task::spawn_blocking(move || {
            add_flags(&mut page, &chance_level);
            let bytes = encoder.page(&page);
            (encoder, bytes)
        })
        .await;
        let bytes = match encoded {
            Ok((back, Ok(bytes))) => {
                encoder = back;
                bytes
            }
            Ok((_, Err(e))) => return drop(chunks.send(Err(failure(e.to_string()))).await),
            Err(e) => return drop(chunks.send(Err(failure(e.to_string()))).await),
        };
        if chunks.send(Ok(Bytes::from(bytes))).await.is_err() {
            return; // The client went away.
        }
    }
    let last = match reading.await {
        Ok(Ok(())) => encoder.finish().map_err(|e| failure(e.to_string())),
        Ok(Err(e)) => Err(failure(e.to_string())),
        Err(e) => Err(failure(e.to_string())),
    };
    let _ = chunks.send(last.map(Bytes::from)).await;
}

/// The receiving end of a download's chunks, as the body stream axum wants.
struct Chunks(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

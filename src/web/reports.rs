//! Researchers' report downloads: the study's figures as JSON and the tidy per-attempt table
//! as JSON Lines and CSV. Staff only (researchers and admins); raters never reach these routes.

use std::collections::{BTreeMap, HashSet};

use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use uuid::Uuid;

use super::session::Staff;
use super::{AppState, WebError};
use crate::domain::ProverRole;
use crate::reports::{
    Attempt, DifficultyQuartile, Rate, StudyReport, VerifierVsHumans, accuracy_by_difficulty,
    study_report, verifier_vs_humans,
};

/// Routes of the report downloads.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/studies/{id}/report", get(report_page))
        .route("/studies/{id}/report.json", get(report_json))
        .route("/studies/{id}/attempts.jsonl", get(attempts_jsonl))
        .route("/studies/{id}/attempts.csv", get(attempts_csv))
}

/// `?exclude=chance` leaves chance-level raters out of the figures.
#[derive(Debug, Deserialize)]
struct ReportQuery {
    #[serde(default)]
    exclude: Option<String>,
}

impl ReportQuery {
    /// Whether chance-level raters are excluded; a value other than `chance`/`none` is refused.
    fn exclude_chance(&self) -> Result<bool, WebError> {
        match self.exclude.as_deref() {
            None | Some("") | Some("none") => Ok(false),
            Some("chance") => Ok(true),
            Some(other) => Err(WebError::BadRequest(format!(
                "exclude must be \"chance\" or \"none\", not {other:?}"
            ))),
        }
    }
}

/// Everything a study's report shows, as stored now.
struct Loaded {
    judgements: usize,
    report: StudyReport,
    difficulty: Vec<DifficultyQuartile>,
    verifier: Option<VerifierVsHumans>,
}

async fn load_report(state: &AppState, id: Uuid, exclude: bool) -> Result<Loaded, WebError> {
    let attempts: Vec<Attempt> = state
        .store
        .attempt_rows(id)
        .await?
        .iter()
        .map(|row| row.attempt())
        .collect();
    let report = study_report(&attempts, exclude);
    let excluded: HashSet<Uuid> = report.excluded_raters.iter().copied().collect();
    let solve_rates = state.store.problem_solve_rates(id).await?;
    let difficulty = accuracy_by_difficulty(&attempts, &solve_rates, &excluded);
    let verifier = match state.store.current_verifier().await? {
        Some(current) => {
            let scores: Vec<(Uuid, f64, bool)> = state
                .store
                .study_scores(id)
                .await?
                .into_iter()
                .filter(|s| s.version == current.version)
                .map(|s| (s.solution_id, s.score, s.is_correct))
                .collect();
            (!scores.is_empty())
                .then(|| verifier_vs_humans(current.version, &scores, &attempts, &excluded))
        }
        None => None,
    };
    Ok(Loaded {
        judgements: attempts.len(),
        report,
        difficulty,
        verifier,
    })
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
}

#[derive(Template, WebTemplate)]
#[template(path = "report.html")]
struct ReportPage {
    username: String,
    is_admin: bool,
    study_id: Uuid,
    study_name: String,
    judgements: usize,
    exclude: bool,
    excluded: usize,
    groups: Vec<GroupRow>,
    raters: Vec<RaterRow>,
    agreement_solutions: u64,
    fleiss_kappa: String,
    krippendorff_alpha: String,
    buckets: Vec<(String, String)>,
    plot: String,
    difficulty: Vec<(u8, String, u64, String)>,
    verifier: Option<Vec<(String, String)>>,
}

/// The report page: tables, the accuracy-by-round plot, the exclusion toggle, downloads.
async fn report_page(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<Uuid>,
    Query(query): Query<ReportQuery>,
) -> Result<ReportPage, WebError> {
    let exclude = query.exclude_chance()?;
    let study = state.store.study(id).await?;
    let Loaded {
        judgements,
        report,
        difficulty,
        verifier,
    } = load_report(&state, id, exclude).await?;
    let names: BTreeMap<Uuid, String> = state
        .store
        .rater_progress(id)
        .await?
        .into_iter()
        .map(|r| (r.rater.id, r.rater.name))
        .collect();
    let groups = report
        .groups
        .iter()
        .map(|g| GroupRow {
            checkpoint: g.checkpoint.clone(),
            round: g.round,
            role: g.role.to_string(),
            judgements: g.judgements,
            accuracy: show_rate(g.accuracy),
            on_correct: show_rate(g.accuracy_on_correct),
            on_incorrect: show_rate(g.accuracy_on_incorrect),
            d_prime: show(g.d_prime, 2),
            timeout_rate: show(g.timeout_rate, 3),
            mean_s: seconds(g.mean_ms),
            median_s: seconds(g.median_ms),
            right_s: seconds(g.mean_ms_when_right),
        })
        .collect();
    let raters = report
        .raters
        .iter()
        .map(|r| RaterRow {
            name: names.get(&r.rater_id).cloned().unwrap_or_default(),
            judgements: r.judgements,
            accuracy: show_rate(r.accuracy),
            median_s: seconds(r.median_ms),
            timeouts: r.timeouts,
            p_value: format!("{:.4}", r.p_value),
            chance_level: r.chance_level,
            excluded: report.excluded_raters.contains(&r.rater_id),
        })
        .collect();
    let buckets = report
        .accuracy_by_time
        .iter()
        .map(|b| {
            (
                format!("{}–{} s", b.from_ms / 1000, b.to_ms / 1000),
                show_rate(b.accuracy),
            )
        })
        .collect();
    Ok(ReportPage {
        username: staff.0.username.clone(),
        is_admin: staff.is_admin(),
        study_id: study.id,
        study_name: study.name,
        judgements,
        exclude,
        excluded: report.excluded_raters.len(),
        groups,
        raters,
        agreement_solutions: report.agreement.solutions,
        fleiss_kappa: show(report.agreement.fleiss_kappa, 3),
        krippendorff_alpha: show(report.agreement.krippendorff_alpha, 3),
        buckets,
        plot: accuracy_by_round_svg(&report),
        difficulty: difficulty
            .iter()
            .map(|q| {
                (
                    q.quartile,
                    format!("{:.2}–{:.2}", q.solve_rate_from, q.solve_rate_to),
                    q.problems,
                    show_rate(q.accuracy),
                )
            })
            .collect(),
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
            ]
        }),
    })
}

/// Human accuracy by prover round, one line per role, with 95 % intervals as bars (checkpoints
/// of one round pooled), as server-rendered SVG: readable without JavaScript. Only numbers and
/// the role names go into the markup.
pub fn accuracy_by_round_svg(report: &StudyReport) -> String {
    let mut pooled: BTreeMap<(ProverRole, i64), (u64, u64)> = BTreeMap::new();
    for g in &report.groups {
        if let Some(rate) = g.accuracy {
            let entry = pooled.entry((g.role, g.round)).or_default();
            entry.0 += rate.successes;
            entry.1 += rate.trials;
        }
    }
    let (width, height, left, bottom, top, right) = (480.0, 260.0, 50.0, 40.0, 20.0, 110.0);
    let rounds: Vec<i64> = {
        let mut r: Vec<i64> = pooled.keys().map(|(_, round)| *round).collect();
        r.sort_unstable();
        r.dedup();
        r
    };
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let x = |round: i64| {
        let i = rounds.iter().position(|r| *r == round).unwrap_or(0) as f64;
        left + if rounds.len() > 1 {
            i * plot_w / (rounds.len() - 1) as f64
        } else {
            plot_w / 2.0
        }
    };
    let y = |value: f64| top + (1.0 - value) * plot_h;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-labelledby=\"plot-title\" class=\"plot\"><title id=\"plot-title\">Human accuracy by prover round and role, with 95% intervals</title>"
    );
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        svg.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{tick:.2}</text>",
            left + plot_w,
            y(tick),
            y(tick),
            left - 6.0,
            y(tick) + 4.0
        ));
    }
    for round in &rounds {
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">round {round}</text>",
            x(*round),
            height - bottom + 18.0
        ));
    }
    for (index, role) in ProverRole::ALL.iter().enumerate() {
        let colour = if *role == ProverRole::Helpful {
            "#1b6ac9"
        } else {
            "#c9491b"
        };
        let points: Vec<(f64, Rate)> = pooled
            .iter()
            .filter(|((r, _), _)| r == role)
            .filter_map(|((_, round), (k, n))| Rate::of(*k, *n).map(|rate| (x(*round), rate)))
            .collect();
        if points.is_empty() {
            continue;
        }
        let path: Vec<String> = points
            .iter()
            .map(|(px, rate)| format!("{px:.1},{:.1}", y(rate.value)))
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        ));
        for (px, rate) in &points {
            svg.push_str(&format!(
                "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\"/><circle cx=\"{px:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\"><title>{role}: {:.3} [{:.3}, {:.3}], n={}</title></circle>",
                y(rate.low),
                y(rate.high),
                y(rate.value),
                rate.value,
                rate.low,
                rate.high,
                rate.trials
            ));
        }
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"{colour}\">{role}</text>",
            left + plot_w + 14.0,
            top + 16.0 + 18.0 * index as f64
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// The study's summary: groups, raters, agreement, speed–accuracy.
async fn report_json(
    State(state): State<AppState>,
    _staff: Staff,
    Path(id): Path<Uuid>,
    Query(query): Query<ReportQuery>,
) -> Result<Json<serde_json::Value>, WebError> {
    let exclude = query.exclude_chance()?;
    let study = state.store.study(id).await?;
    let loaded = load_report(&state, id, exclude).await?;
    Ok(Json(serde_json::json!({
        "study": { "id": study.id, "name": study.name },
        "judgements": loaded.judgements,
        "report": loaded.report,
        "accuracy_by_difficulty": loaded.difficulty,
        "verifier": loaded.verifier,
    })))
}

/// One JSON object per judgement, for pandas (`read_json(lines=True)`) and the like.
async fn attempts_jsonl(
    State(state): State<AppState>,
    _staff: Staff,
    Path(id): Path<Uuid>,
) -> Result<Response, WebError> {
    let study = state.store.study(id).await?;
    let mut body = String::new();
    for row in state.store.attempt_rows(id).await? {
        let line = serde_json::to_string(&row).map_err(|e| WebError::Internal(e.to_string()))?;
        body.push_str(&line);
        body.push('\n');
    }
    let file = format!("attachment; filename=\"study-{}-attempts.jsonl\"", study.id);
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
            (header::CONTENT_DISPOSITION, file),
        ],
        body,
    )
        .into_response())
}

/// The same table as CSV with a header row (booleans `true`/`false`, empty cells for nulls).
async fn attempts_csv(
    State(state): State<AppState>,
    _staff: Staff,
    Path(id): Path<Uuid>,
) -> Result<Response, WebError> {
    let study = state.store.study(id).await?;
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in state.store.attempt_rows(id).await? {
        writer
            .serialize(&row)
            .map_err(|e| WebError::Internal(e.to_string()))?;
    }
    let body = writer
        .into_inner()
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let file = format!("attachment; filename=\"study-{}-attempts.csv\"", study.id);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, file),
        ],
        body,
    )
        .into_response())
}

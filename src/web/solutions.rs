//! The per-solution drill-down: every solution of a study with its human accuracy, time,
//! verifier score and ground truth, sorted and filtered (e.g. the incorrect solutions most
//! raters judged correct: the ones that fooled people); one solution exactly as raters saw it,
//! with its judgements; the same table as CSV and JSON for scripts.

use std::collections::HashSet;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use uuid::Uuid;

use super::extract::{Path, Query};
use super::reports::{Exclusions, ReportQuery, current_score_map};
use super::session::{ReportReader, Staff};
use super::{AppState, WebError};
use crate::domain::ProverRole;
use crate::reports::{
    SolutionFilter, SolutionOrder, SolutionSummary, select_solutions, solution_summaries,
};
use crate::store::reports::AttemptRow;

/// Routes of the drill-down.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/studies/{id}/solutions", get(solutions_page))
        .route("/studies/{id}/solutions.csv", get(solutions_csv))
        .route("/studies/{id}/solutions.json", get(solutions_json))
        .route("/studies/{id}/solutions/{solution_id}", get(solution_page))
}

/// `?sort=…&role=…&truth=…&fooled=1&exclude=…`.
#[derive(Debug, Default, Deserialize)]
struct SolutionsQuery {
    #[serde(default)]
    sort: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    truth: String,
    #[serde(default)]
    fooled: String,
    #[serde(default)]
    exclude: Option<String>,
}

impl SolutionsQuery {
    fn order(&self) -> Result<SolutionOrder, WebError> {
        SolutionOrder::parse(self.sort.trim()).map_err(WebError::BadRequest)
    }

    fn filter(&self) -> Result<SolutionFilter, WebError> {
        Ok(SolutionFilter {
            role: match self.role.trim() {
                "" | "all" => None,
                text => Some(text.parse::<ProverRole>().map_err(WebError::BadRequest)?),
            },
            is_correct: match self.truth.trim() {
                "" | "all" => None,
                "correct" => Some(true),
                "incorrect" => Some(false),
                other => {
                    return Err(WebError::BadRequest(format!(
                        "truth must be correct, incorrect or all, not {other:?}"
                    )));
                }
            },
            fooled_most: matches!(self.fooled.trim(), "1" | "true" | "on"),
        })
    }

    fn exclusions(&self) -> Result<Exclusions, WebError> {
        ReportQuery {
            exclude: self.exclude.clone(),
        }
        .exclusions()
    }
}

/// The study's solutions with their figures, under the report's exclusions.
async fn summaries(
    state: &AppState,
    id: Uuid,
    exclusions: Exclusions,
) -> Result<Vec<SolutionSummary>, WebError> {
    let (all_attempts, solutions, scores) = tokio::try_join!(
        state.store.report_attempts(id),
        state.store.study_solutions(id),
        current_score_map(&state.store, id),
    )?;
    let (attempts, excluded) = exclusions.apply(&all_attempts);
    Ok(solution_summaries(
        &solutions, &attempts, &excluded, &scores,
    ))
}

/// One row of the page's table, formatted.
struct SolutionRow {
    id: Uuid,
    checkpoint: String,
    round: i64,
    role: String,
    truth: &'static str,
    judgements: u64,
    judged_correct: String,
    accuracy: String,
    mean_s: String,
    human_score: String,
    verifier_score: String,
    fooled_most: bool,
}

fn figure(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "—".to_string(), |v| format!("{v:.decimals$}"))
}

impl SolutionRow {
    fn of(s: &SolutionSummary) -> SolutionRow {
        let solution = &s.solution;
        SolutionRow {
            id: solution.solution_id,
            checkpoint: solution.checkpoint.clone(),
            round: solution.round,
            role: solution.role.to_string(),
            truth: if solution.is_correct {
                "correct"
            } else {
                "incorrect"
            },
            judgements: s.judgements,
            judged_correct: format!("{} of {}", s.judged_correct, s.answered),
            accuracy: s.accuracy.map_or_else(
                || "—".to_string(),
                |r| format!("{:.2} [{:.2}, {:.2}]", r.value, r.low, r.high),
            ),
            mean_s: figure(s.mean_ms.map(|ms| ms / 1000.0), 1),
            human_score: figure(s.human_score, 2),
            verifier_score: figure(s.verifier_score, 3),
            fooled_most: s.fooled_most,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "solutions.html")]
struct SolutionsPage {
    username: String,
    is_admin: bool,
    study_id: Uuid,
    study_name: String,
    /// Solutions in the study, and shown after the filter.
    total: usize,
    fooled: usize,
    rows: Vec<SolutionRow>,
    sort: String,
    role: String,
    truth: String,
    fooled_only: bool,
    exclude: String,
}

async fn solutions_page(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<Uuid>,
    Query(query): Query<SolutionsQuery>,
) -> Result<SolutionsPage, WebError> {
    let (order, filter, exclusions) = (query.order()?, query.filter()?, query.exclusions()?);
    let study = state.store.study(id).await?;
    let all = summaries(&state, id, exclusions).await?;
    let total = all.len();
    let fooled = all.iter().filter(|s| s.fooled_most).count();
    let rows = select_solutions(all, filter, order)
        .iter()
        .map(SolutionRow::of)
        .collect();
    Ok(SolutionsPage {
        username: staff.0.username.clone(),
        is_admin: staff.is_admin(),
        study_id: study.id,
        study_name: study.name,
        total,
        fooled,
        rows,
        sort: query.sort.trim().to_string(),
        role: query.role.trim().to_string(),
        truth: query.truth.trim().to_string(),
        fooled_only: filter.fooled_most,
        exclude: exclusions.query_value().to_string(),
    })
}

/// The drill-down table as CSV: one row per solution (README documents the columns).
async fn solutions_csv(
    State(state): State<AppState>,
    _reader: ReportReader,
    Path(id): Path<Uuid>,
    Query(query): Query<SolutionsQuery>,
) -> Result<Response, WebError> {
    let (order, filter, exclusions) = (query.order()?, query.filter()?, query.exclusions()?);
    let rows = select_solutions(summaries(&state, id, exclusions).await?, filter, order);
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(SOLUTION_COLUMNS)
        .map_err(|e| WebError::Internal(e.to_string()))?;
    for s in &rows {
        let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        let solution = &s.solution;
        writer
            .write_record([
                solution.solution_id.to_string(),
                solution.problem_id.to_string(),
                solution.checkpoint.clone(),
                solution.round.to_string(),
                solution.role.to_string(),
                solution.is_correct.to_string(),
                s.judgements.to_string(),
                s.answered.to_string(),
                s.judged_correct.to_string(),
                opt(s.accuracy.map(|r| r.value)),
                opt(s.accuracy.map(|r| r.low)),
                opt(s.accuracy.map(|r| r.high)),
                opt(s.mean_ms),
                opt(s.human_score),
                opt(s.verifier_score),
                s.fooled_most.to_string(),
            ])
            .map_err(|e| WebError::Internal(e.to_string()))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| WebError::Internal(e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"solutions-{id}.csv\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// The per-solution table's CSV columns, in order.
pub const SOLUTION_COLUMNS: [&str; 16] = [
    "solution_id",
    "problem_id",
    "checkpoint",
    "round",
    "role",
    "is_correct",
    "judgements",
    "answered",
    "judged_correct",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "mean_ms",
    "human_score",
    "verifier_score",
    "fooled_most",
];

/// The drill-down table as JSON (the same rows and order as the page).
async fn solutions_json(
    State(state): State<AppState>,
    _reader: ReportReader,
    Path(id): Path<Uuid>,
    Query(query): Query<SolutionsQuery>,
) -> Result<axum::Json<Vec<SolutionSummary>>, WebError> {
    let (order, filter, exclusions) = (query.order()?, query.filter()?, query.exclusions()?);
    Ok(axum::Json(select_solutions(
        summaries(&state, id, exclusions).await?,
        filter,
        order,
    )))
}

/// One judgement of the solution page.
struct JudgementRow {
    rater: String,
    verdict: String,
    stated: String,
    justification: String,
    seconds: String,
    timing: &'static str,
    integrity: String,
}

impl JudgementRow {
    fn of(row: &AttemptRow) -> JudgementRow {
        JudgementRow {
            rater: row.rater_name.clone(),
            verdict: row.verdict.to_string(),
            stated: row
                .stated_probability
                .map(|p| format!("{:.0} %", 100.0 * p))
                .unwrap_or_default(),
            justification: row.justification.clone().unwrap_or_default(),
            seconds: format!("{:.1}", row.server_elapsed_ms as f64 / 1000.0),
            timing: row.timing.as_str(),
            integrity: match (&row.hidden_count, row.integrity_flags.as_str()) {
                (None, _) => "not recorded".into(),
                (Some(_), "") => "none".into(),
                (Some(_), flags) => format!(
                    "{} (hidden {} × for {:.1} s, focus lost {} ×, copy {}, paste {})",
                    flags.replace(';', ", "),
                    row.hidden_count.unwrap_or(0),
                    row.hidden_ms.unwrap_or(0) as f64 / 1000.0,
                    row.blur_count.unwrap_or(0),
                    row.copy_count.unwrap_or(0),
                    row.paste_count.unwrap_or(0)
                ),
            },
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "solution.html")]
struct SolutionPage {
    username: String,
    is_admin: bool,
    study_id: Uuid,
    study_name: String,
    summary: SolutionRow,
    /// The question and the solution exactly as raters saw them.
    question: String,
    solution: String,
    judgements: Vec<JudgementRow>,
}

async fn solution_page(
    State(state): State<AppState>,
    staff: Staff,
    Path((id, solution_id)): Path<(Uuid, Uuid)>,
) -> Result<SolutionPage, WebError> {
    let study = state.store.study(id).await?;
    let Some((solution, rows)) = state.store.study_solution(id, solution_id).await? else {
        return Err(WebError::NotFound("solution in this study"));
    };
    let attempts = state.store.report_attempts(id).await?;
    let scores = current_score_map(&state.store, id).await?;
    let summary = solution_summaries(
        std::slice::from_ref(&solution),
        &attempts,
        &HashSet::new(),
        &scores,
    );
    let summary = summary
        .first()
        .map(SolutionRow::of)
        .ok_or_else(|| WebError::Internal("the solution's figures are missing".into()))?;
    let (question, text) = state.store.item_text(solution_id).await?;
    Ok(SolutionPage {
        username: staff.0.username.clone(),
        is_admin: staff.is_admin(),
        study_id: study.id,
        study_name: study.name,
        summary,
        question,
        solution: text,
        judgements: rows.iter().map(JudgementRow::of).collect(),
    })
}

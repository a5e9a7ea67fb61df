//! Admin jobs page: what the workers are doing, live progress, failures and cancelling.
//!
//! The page is complete without scripts; `static/jobs.js` polls `/admin/jobs.json` every two
//! seconds and updates the rows in place so progress is live.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;

use super::extract::Path;
use axum::response::Redirect;
use axum::routing::{get, post};
use axum::{Json, Router};
use uuid::Uuid;

use super::session::Admin;
use super::times::Timestamp;
use super::{ApiError, AppState, WebError};
use crate::domain::JobState;
use crate::store::jobs::JobView;

/// How many of the newest jobs the page (and its JSON) lists.
pub const JOBS_SHOWN: i64 = 200;

/// Routes of the jobs page, its JSON and the cancel form; admins only.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/jobs", get(jobs_page))
        .route("/admin/jobs.json", get(jobs_json))
        .route("/admin/jobs/{id}/cancel", post(cancel))
}

/// One job as the page and its JSON show it: the same values in both, so the script only
/// copies them into the row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobRow {
    /// The job.
    pub id: Uuid,
    /// What it does.
    pub kind: String,
    /// The study it works for, if any.
    pub study_id: Option<Uuid>,
    /// That study's name.
    pub study_name: Option<String>,
    /// Its state.
    pub state: String,
    /// Units done.
    pub progress_done: i64,
    /// Units expected.
    pub progress_total: i64,
    /// The bar's maximum: the total, or 1 while the total is unknown (a `<progress>` needs a
    /// positive max).
    pub progress_max: i64,
    /// Claims so far.
    pub attempts: i64,
    /// Claims allowed.
    pub max_attempts: i64,
    /// The worker holding or last holding it ("" when none).
    pub worker: String,
    /// The error of a failed job or of a failed attempt ("" when none).
    pub error: String,
    /// Enqueued (RFC 3339 in JSON).
    pub created: Timestamp,
    /// First claimed (`null` when not yet).
    pub started: Option<Timestamp>,
    /// Ended (`null` when not yet).
    pub finished: Option<Timestamp>,
    /// Whether it can still be cancelled (queued or running).
    pub cancellable: bool,
    /// While it runs: units per minute and the time left at that pace ("" when unknown).
    pub pace: String,
}

/// A running job's pace: units per minute since it was first claimed, and about how long the
/// rest takes at that pace; `None` before its first unit (or without a start or a total).
/// The pace includes any time the job waited between a lost lease and its retry, so after a
/// crash it errs on the slow side.
pub fn pace(done: i64, total: i64, started_at: Option<i64>, now: i64) -> Option<(f64, i64)> {
    let elapsed_ms = now - started_at?;
    if done <= 0 || elapsed_ms <= 0 || total <= 0 {
        return None;
    }
    let per_minute = done as f64 * 60_000.0 / elapsed_ms as f64;
    let left_ms = ((total - done).max(0) as f64 / per_minute * 60_000.0).round() as i64;
    Some((per_minute, left_ms))
}

/// "12.5 solutions/min · about 14 min left", in the job's own unit.
fn pace_text(kind: crate::domain::JobKind, per_minute: f64, left_ms: i64) -> String {
    let unit = match kind {
        crate::domain::JobKind::Generation => "solutions",
        _ => "steps",
    };
    let minutes = (left_ms as f64 / 60_000.0).ceil() as i64;
    let left = match minutes {
        0 => "almost done".to_string(),
        m if m < 60 => format!("about {m} min left"),
        m => format!("about {} h {} min left", m / 60, m % 60),
    };
    let rate = if per_minute >= 10.0 {
        format!("{per_minute:.0}")
    } else {
        format!("{per_minute:.1}")
    };
    format!("{rate} {unit}/min · {left}")
}

impl JobRow {
    /// The row of `job` as of `now` (the pace needs the time).
    pub fn new(job: JobView, now: i64) -> Self {
        let pace = match job.state {
            JobState::Running => pace(job.progress_done, job.progress_total, job.started_at, now)
                .map(|(rate, left)| pace_text(job.kind, rate, left))
                .unwrap_or_default(),
            _ => String::new(),
        };
        JobRow {
            pace,
            id: job.id,
            kind: job.kind.to_string(),
            study_id: job.study_id,
            study_name: job.study_name,
            state: job.state.to_string(),
            progress_done: job.progress_done,
            progress_total: job.progress_total,
            progress_max: job.progress_total.max(1),
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            worker: job.lease_owner.unwrap_or_default(),
            error: job.error.unwrap_or_default(),
            created: Timestamp(job.created_at),
            started: job.started_at.map(Timestamp),
            finished: job.finished_at.map(Timestamp),
            cancellable: matches!(job.state, JobState::Queued | JobState::Running),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "jobs.html")]
struct JobsPage {
    username: String,
    is_admin: bool,
    jobs: Vec<JobRow>,
}

async fn job_rows(state: &AppState) -> Result<Vec<JobRow>, WebError> {
    Ok(state
        .store
        .jobs(JOBS_SHOWN)
        .await?
        .into_iter()
        .map(|job| JobRow::new(job, state.clock.now_ms()))
        .collect())
}

async fn jobs_page(
    State(state): State<AppState>,
    Admin(user): Admin,
) -> Result<JobsPage, WebError> {
    Ok(JobsPage {
        username: user.username,
        is_admin: true,
        jobs: job_rows(&state).await?,
    })
}

/// The same rows as JSON, for the page's live updates.
async fn jobs_json(
    State(state): State<AppState>,
    admin: Result<Admin, WebError>,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin?;
    let jobs = job_rows(&state).await?;
    Ok(Json(serde_json::json!({ "jobs": jobs })))
}

/// Cancels a queued or running job (its worker stops at its next fenced write or heartbeat)
/// and returns to the list.
async fn cancel(
    State(state): State<AppState>,
    Admin(_user): Admin,
    Path(id): Path<Uuid>,
) -> Result<Redirect, WebError> {
    state.store.cancel_job(id, state.clock.now_ms()).await?;
    Ok(Redirect::to("/admin/jobs"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::JobKind;

    fn view(state: JobState, done: i64, total: i64) -> JobView {
        JobView {
            id: Uuid::nil(),
            kind: JobKind::Generation,
            study_id: None,
            study_name: None,
            state,
            progress_done: done,
            progress_total: total,
            attempts: 1,
            max_attempts: 3,
            lease_owner: None,
            error: None,
            created_at: 0,
            started_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn rows_have_a_valid_bar_and_offer_cancel_only_while_live() {
        let queued = JobRow::new(view(JobState::Queued, 0, 0), 0);
        assert_eq!((queued.progress_max, queued.cancellable), (1, true));
        assert_eq!(queued.started, None);
        let done = JobRow::new(view(JobState::Succeeded, 40, 40), 0);
        assert_eq!((done.progress_max, done.cancellable), (40, false));
        assert_eq!(
            serde_json::to_value(&done).unwrap()["created"],
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(done.pace, "");
    }

    #[test]
    fn the_pace_is_units_per_minute_since_the_start_and_the_time_left_at_it() {
        // 30 of 120 solutions in 2 minutes: 15/min, 6 minutes left.
        assert_eq!(pace(30, 120, Some(1_000), 121_000), Some((15.0, 360_000)));
        assert_eq!(pace(0, 120, Some(0), 60_000), None);
        assert_eq!(pace(5, 120, None, 60_000), None);
        assert_eq!(pace(5, 0, Some(0), 60_000), None);
        let mut running = view(JobState::Running, 30, 120);
        running.started_at = Some(1_000);
        assert_eq!(
            JobRow::new(running.clone(), 121_000).pace,
            "15 solutions/min · about 6 min left"
        );
        running.progress_done = 3;
        assert_eq!(
            JobRow::new(running, 121_000).pace,
            "1.5 solutions/min · about 1 h 18 min left"
        );
    }
}

//! `/metrics` in the Prometheus text format: requests and their latency per route (recorded by a
//! middleware, per process), and the database's judgements, active items and jobs (read at scrape
//! time, so every instance reports the same shared figures).
//!
//! Access: with `--metrics-token` (env `LEGIBILITY_METRICS_TOKEN`) a scraper sends
//! `Authorization: Bearer TOKEN`; an admin's session works too. Nobody else gets it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::session::Staff;
use super::{AppState, WebError};
use crate::auth;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Counts and latency histogram of one (method, route, status) series.
#[derive(Debug, Default, Clone)]
struct Series {
    count: u64,
    sum_seconds: f64,
    /// Requests at or under each bucket's bound (cumulative, as Prometheus wants).
    buckets: [u64; BUCKETS.len()],
}

impl Series {
    fn observe(&mut self, seconds: f64) {
        self.count += 1;
        self.sum_seconds += seconds;
        for (bound, count) in BUCKETS.iter().zip(self.buckets.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
    }
}

/// (method, route template, status code) → series. Process-wide, like any Prometheus registry.
type Registry = Mutex<BTreeMap<(String, String, u16), Series>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Middleware (installed as a route layer, so the matched route template is known): records
/// every request's route, status and latency. Route templates, not raw paths, keep the number
/// of series bounded.
pub async fn record_request(request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    if let Ok(mut series) = registry().lock() {
        series
            .entry((method, route, response.status().as_u16()))
            .or_default()
            .observe(seconds);
    }
    response
}

/// Route of the metrics endpoint.
pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Whether the request carries the configured scrape token.
fn has_scrape_token(headers: &HeaderMap, configured: Option<&str>) -> bool {
    let Some(configured) = configured else {
        return false;
    };
    let sent = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare hashes: equal length, so the comparison's time says nothing about the token.
    !sent.is_empty() && auth::token_hash(sent) == auth::token_hash(configured)
}

async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    staff: Result<Staff, WebError>,
) -> Result<Response, WebError> {
    if !has_scrape_token(&headers, state.config.metrics_token.as_deref()) && !staff?.is_admin() {
        return Err(WebError::Forbidden);
    }
    let figures = state.store.operational_figures().await?;
    let mut out = String::new();
    render_requests(&mut out);
    let _ = writeln!(
        out,
        "# HELP legibility_judgements_total Judgements stored, by verdict (all studies, all instances).\n\
         # TYPE legibility_judgements_total counter"
    );
    for (verdict, n) in &figures.judgements {
        let _ = writeln!(
            out,
            "legibility_judgements_total{{verdict=\"{verdict}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP legibility_active_items Items served and not yet answered.\n\
         # TYPE legibility_active_items gauge\nlegibility_active_items {}",
        figures.active_items
    );
    let _ = writeln!(
        out,
        "# HELP legibility_jobs Worker jobs by kind and state.\n# TYPE legibility_jobs gauge"
    );
    for ((kind, job_state), n) in &figures.jobs {
        let _ = writeln!(
            out,
            "legibility_jobs{{kind=\"{kind}\",state=\"{job_state}\"}} {n}"
        );
    }
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        out,
    )
        .into_response())
}

/// The request counters and latency histograms of this process.
fn render_requests(out: &mut String) {
    let series = match registry().lock() {
        Ok(series) => series.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    let _ = writeln!(
        out,
        "# HELP legibility_http_requests_total HTTP requests answered by this process.\n\
         # TYPE legibility_http_requests_total counter"
    );
    for ((method, route, status), s) in &series {
        let _ = writeln!(
            out,
            "legibility_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {}",
            s.count
        );
    }
    let _ = writeln!(
        out,
        "# HELP legibility_http_request_duration_seconds Time to answer, by route.\n\
         # TYPE legibility_http_request_duration_seconds histogram"
    );
    // One histogram per (method, route): statuses merged.
    let mut merged: BTreeMap<(&str, &str), Series> = BTreeMap::new();
    for ((method, route, _), s) in &series {
        let m = merged.entry((method, route)).or_default();
        m.count += s.count;
        m.sum_seconds += s.sum_seconds;
        for (total, n) in m.buckets.iter_mut().zip(s.buckets) {
            *total += n;
        }
    }
    for ((method, route), s) in merged {
        let labels = format!("method=\"{method}\",route=\"{route}\"");
        for (bound, n) in BUCKETS.iter().zip(s.buckets) {
            let _ = writeln!(
                out,
                "legibility_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "legibility_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
             legibility_http_request_duration_seconds_sum{{{labels}}} {}\n\
             legibility_http_request_duration_seconds_count{{{labels}}} {}",
            s.count, s.sum_seconds, s.count
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let mut s = Series::default();
        for seconds in [0.0005, 0.02, 0.02, 3.0, 30.0] {
            s.observe(seconds);
        }
        assert_eq!(s.count, 5);
        assert_eq!(s.buckets[0], 1, "≤ 1 ms");
        assert_eq!(s.buckets[4], 3, "≤ 25 ms");
        assert_eq!(s.buckets[BUCKETS.len() - 1], 4, "≤ 10 s; 30 s only in +Inf");
        assert!((s.sum_seconds - 33.0405).abs() < 1e-9);
    }

    #[test]
    fn the_scrape_token_must_match() {
        let mut headers = HeaderMap::new();
        assert!(!has_scrape_token(&headers, Some("s3cret")));
        headers.insert(AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(has_scrape_token(&headers, Some("s3cret")));
        assert!(!has_scrape_token(&headers, Some("other")));
        assert!(!has_scrape_token(&headers, None), "no token configured");
    }
}

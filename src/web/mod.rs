//! HTTP interface: one router built from one module per audience (raters, researchers, admins,
//! the JSON API). Handlers are thin: they parse, call the store or a rule, and render.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HOST, ORIGIN, REFERER};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::clock::Clock;
use crate::store::Store;

pub mod account;
pub mod admin;
pub mod api;
pub mod checkpoints;
pub mod error;
pub mod extract;
pub mod i18n;
pub mod jobs;
pub mod panel;
pub mod plots;
pub mod rater;
pub mod reports;
pub mod researcher;
pub mod runs;
pub mod session;
pub mod solutions;
pub mod telemetry;
pub mod times;
pub mod verifiers;

pub use error::{ApiError, WebError};

/// Settings of the web server that handlers need.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Mark cookies `Secure` (set when served over HTTPS, e.g. behind a TLS proxy).
    pub secure_cookies: bool,
    /// Base URL for invite links (e.g. `https://lab.example.org`); default: the request's Host.
    pub public_url: Option<String>,
    /// Largest accepted import file, in bytes.
    pub max_upload_bytes: usize,
    /// Folder holding model files; uploaded checkpoints go to its `uploads/` subfolder.
    pub models_dir: std::path::PathBuf,
    /// Largest accepted checkpoint upload (all files together), in bytes.
    pub max_checkpoint_bytes: u64,
    /// Bearer token a Prometheus scraper sends for `/metrics` (admins' sessions work anyway).
    pub metrics_token: Option<String>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (login throttling, session
    /// list); empty: the header is ignored and the TCP peer is the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            secure_cookies: false,
            public_url: None,
            max_upload_bytes: 64 * 1024 * 1024,
            models_dir: std::path::PathBuf::from("models"),
            max_checkpoint_bytes: crate::checkpoints::DEFAULT_MAX_CHECKPOINT_BYTES,
            metrics_token: None,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Shared state of every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Server time; deadlines are set and checked with it.
    pub clock: Clock,
    /// Web settings.
    pub config: Arc<WebConfig>,
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/static/{file}", get(static_file))
        .merge(api::routes())
        .merge(rater::routes())
        .merge(panel::routes())
        .merge(i18n::routes())
        .merge(researcher::routes())
        .merge(account::routes())
        .merge(reports::routes())
        .merge(solutions::routes())
        .merge(admin::routes(&state.config))
        .merge(jobs::routes())
        .merge(checkpoints::routes(&state.config))
        .merge(verifiers::routes())
        .merge(runs::routes())
        .merge(telemetry::routes())
        // A route layer sees the matched route template, which labels the request metrics.
        .route_layer(middleware::from_fn(telemetry::record_request))
        .layer(middleware::from_fn(same_origin_writes))
        .layer(SetResponseHeaderLayer::if_not_present(
            CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ))
        // Invite links carry a secret: never leak it to other sites through Referer. (Not
        // `no-referrer`: with it browsers send `Origin: null` on our own form posts.)
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("content-security-policy"),
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
            ),
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// A CSV file download named `file_name` (kept out of caches like every dynamic response).
pub(crate) fn csv_attachment(file_name: &str, csv: impl Into<axum::body::Body>) -> Response {
    (
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        csv.into(),
    )
        .into_response()
}

/// Files under `static/`, embedded in the binary so it runs from any directory.
async fn static_file(Path(file): Path<String>) -> Response {
    let (content_type, body): (&str, &'static [u8]) = match file.as_str() {
        "style.css" => (
            "text/css; charset=utf-8",
            include_bytes!("../../static/style.css"),
        ),
        "rater.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../../static/rater.js"),
        ),
        "staff.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../../static/staff.js"),
        ),
        "jobs.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../../static/jobs.js"),
        ),
        _ => return WebError::NotFound("file").into_response(),
    };
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Refuses state-changing requests sent by another site's page; together with SameSite
/// cookies this blocks CSRF on every form post. Browsers mark such requests three ways, checked
/// in turn: `Origin` (sent on every cross-site POST), `Sec-Fetch-Site: cross-site`, and, when
/// neither is there, a `Referer` from another host. A request with none of them comes from a
/// non-browser client, which cannot carry a victim's cookies, and passes.
async fn same_origin_writes(request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe && is_cross_site(request.headers()) {
        return (StatusCode::FORBIDDEN, "cross-site request refused").into_response();
    }
    next.run(request).await
}

/// Whether a request's headers say another site's page sent it (see [`same_origin_writes`]).
pub fn is_cross_site(headers: &axum::http::HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let host_of = |url: &str| {
        url.split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(rest).to_string())
    };
    let host = text(HOST);
    if let Some(origin) = headers.get(ORIGIN) {
        let origin_host = origin.to_str().ok().and_then(host_of);
        return origin_host.is_none() || origin_host.as_deref() != host;
    }
    if text(HeaderName::from_static("sec-fetch-site")) == Some("cross-site") {
        return true;
    }
    match text(REFERER) {
        Some(referer) => host_of(referer).as_deref() != host,
        None => false,
    }
}

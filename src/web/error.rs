//! The web layer's one error type and its mapping to HTTP status codes, in one place.
//! Pages get an HTML error page, the JSON API gets `{"error": "…"}`; internal errors are logged
//! and shown only as "internal error".

use askama::Template;

use super::i18n::{EN, Texts, ZH_HANS};
use axum::Json;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header::{LOCATION, WWW_AUTHENTICATE};
use axum::response::{Html, IntoResponse, Response};

use crate::store::StoreError;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A staff page was opened without a login.
    #[error("please log in")]
    LoginRequired,
    /// A script (or a data route) came without valid credentials: 401 JSON with
    /// `WWW-Authenticate: Bearer`, never the login page's redirect.
    #[error("{0}")]
    CredentialsRequired(&'static str),
    /// A rater page was opened without a valid invite.
    #[error("open your invite link again to continue")]
    RaterUnknown,
    /// Logged in, but the role does not allow this.
    #[error("your account may not do this")]
    Forbidden,
    /// No such thing (or not yours).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request itself is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// Clashes with existing state.
    #[error("{0}")]
    Conflict(String),
    /// Existed but is over.
    #[error("{0}")]
    Gone(String),
    /// An upload over its size limit; the message says the limit.
    #[error("{0}")]
    TooLarge(String),
    /// Well-formed but refused (e.g. an import with bad lines).
    #[error("{0}")]
    Unprocessable(String),
    /// The database's disk (or its size cap) is full: nothing of the request was saved, and the
    /// same request succeeds once space returns.
    #[error(
        "the server's storage is full, so nothing was saved; please try again in a few minutes \
         (the operators have been alerted)"
    )]
    StorageFull,
    /// A bug or an outage; details go to the log only.
    #[error("internal error")]
    Internal(String),
}

impl WebError {
    /// The single mapping from error to HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::LoginRequired | WebError::CredentialsRequired(_) | WebError::RaterUnknown => {
                StatusCode::UNAUTHORIZED
            }
            WebError::Forbidden => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::Gone(_) => StatusCode::GONE,
            WebError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            WebError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn public_message(&self) -> String {
        if let WebError::Internal(detail) = self {
            tracing::error!(%detail, "internal error");
        }
        self.to_string()
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => WebError::NotFound(what),
            StoreError::Conflict(m) => WebError::Conflict(m),
            StoreError::Gone(m) => WebError::Gone(m),
            StoreError::LeaseLost => WebError::Gone(StoreError::LeaseLost.to_string()),
            StoreError::Invalid(m) => WebError::Unprocessable(m),
            StoreError::ImportRejected(r) => WebError::Unprocessable(r.to_string()),
            StoreError::InvitesRejected(r) => WebError::Unprocessable(r.to_string()),
            other if other.is_storage_full() => {
                tracing::error!(error = %other, "a write failed: the database's storage is full");
                WebError::StorageFull
            }
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl From<crate::problems::ImportRejected> for WebError {
    fn from(e: crate::problems::ImportRejected) -> Self {
        WebError::Unprocessable(e.to_string())
    }
}

/// Raters without a valid link get a page in the rater style, with no way into staff pages.
#[derive(Template)]
#[template(path = "rater_message.html")]
struct RaterErrorPage {
    t: &'static Texts,
    back: &'static str,
    title: &'static str,
    message: String,
    link: Option<(&'static str, &'static str)>,
    /// Never a completion code here (the template shows one at a study's end).
    completion: Option<(String, Option<String>)>,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
    back: &'a str,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if matches!(self, WebError::LoginRequired) {
            return (StatusCode::SEE_OTHER, [(LOCATION, "/login")]).into_response();
        }
        if matches!(self, WebError::CredentialsRequired(_)) {
            return ApiError(self).into_response();
        }
        let status = self.status();
        if matches!(self, WebError::RaterUnknown) {
            // No request here to choose a language from: say it in both.
            let page = RaterErrorPage {
                t: &EN,
                back: "/rate",
                title: EN.link_needed_title,
                message: format!(
                    "{} — {}：{}",
                    EN.link_needed_message, ZH_HANS.link_needed_title, ZH_HANS.link_needed_message
                ),
                link: None,
                completion: None,
            };
            if let Ok(html) = page.render() {
                return (status, Html(html)).into_response();
            }
        }
        let message = self.public_message();
        let page = ErrorPage {
            title: status.canonical_reason().unwrap_or("Error"),
            message: &message,
            back: "/",
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, message).into_response(),
        }
    }
}

/// The same errors, answered as JSON for the API.
#[derive(Debug)]
pub struct ApiError(pub WebError);

impl<E: Into<WebError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let mut response = (
            status,
            Json(serde_json::json!({ "error": self.0.public_message() })),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            // A 401 names the scheme that would be accepted (RFC 9110).
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"legibility\""),
            );
        }
        response
    }
}

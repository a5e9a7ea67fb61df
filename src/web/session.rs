//! Who is asking: staff sessions (cookie) and raters (invite token in a cookie or a bearer
//! header). Extractors reject early so handlers only see authorised callers.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};

use super::{ApiError, AppState, WebError};
use crate::auth;
use crate::domain::UserRole;
use crate::store::raters::Rater;
use crate::store::users::User;

/// Cookie holding a staff session token.
pub const SESSION_COOKIE: &str = "ll_session";
/// Cookie holding a rater's invite token.
pub const RATER_COOKIE: &str = "ll_rater";

/// A cookie for a secret token: not readable by scripts, not sent by other sites' requests,
/// kept for `max_age` (so a rater who closes the browser resumes without the link).
pub fn secret_cookie(
    name: &'static str,
    value: String,
    secure: bool,
    max_age: time::Duration,
) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(max_age)
        .build()
}

/// How long a rater's browser keeps their invite token.
pub const RATER_COOKIE_DAYS: i64 = 30;

/// Any logged-in staff member (admin or researcher).
#[derive(Debug, Clone)]
pub struct Staff(pub User);

impl Staff {
    /// Admins may import, invite and manage; researchers define and watch studies.
    pub fn is_admin(&self) -> bool {
        self.0.role == UserRole::Admin
    }
}

/// A logged-in admin.
#[derive(Debug, Clone)]
pub struct Admin(pub User);

impl FromRequestParts<AppState> for Staff {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let jar = CookieJar::from_headers(&parts.headers);
        let token = jar
            .get(SESSION_COOKIE)
            .ok_or(WebError::LoginRequired)?
            .value()
            .to_string();
        let user = state
            .store
            .session_user(&auth::token_hash(&token), state.clock.now_ms())
            .await?;
        user.map(Staff).ok_or(WebError::LoginRequired)
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let staff = Staff::from_request_parts(parts, state).await?;
        if staff.is_admin() {
            Ok(Admin(staff.0))
        } else {
            Err(WebError::Forbidden)
        }
    }
}

/// The invite token a request carries, from the rater cookie or `Authorization: Bearer`.
fn rater_token(parts: &Parts) -> Option<String> {
    if let Some(bearer) = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim().to_string());
    }
    CookieJar::from_headers(&parts.headers)
        .get(RATER_COOKIE)
        .map(|c| c.value().to_string())
}

async fn rater_from_parts(parts: &Parts, state: &AppState) -> Result<Rater, WebError> {
    let token = rater_token(parts).ok_or(WebError::RaterUnknown)?;
    state
        .store
        .rater_by_token(&token)
        .await?
        .ok_or(WebError::RaterUnknown)
}

/// A rater on a page (errors render as HTML).
#[derive(Debug, Clone)]
pub struct RaterPage(pub Rater);

impl FromRequestParts<AppState> for RaterPage {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        rater_from_parts(parts, state).await.map(RaterPage)
    }
}

/// A rater on the JSON API (errors render as JSON).
#[derive(Debug, Clone)]
pub struct RaterApi(pub Rater);

impl FromRequestParts<AppState> for RaterApi {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        rater_from_parts(parts, state)
            .await
            .map(RaterApi)
            .map_err(ApiError)
    }
}

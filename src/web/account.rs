//! The account page of a staff member: their live sessions (each can be ended, or all others at
//! once) and their personal API tokens for scripts (created, shown once, revoked). Admins also
//! see and end every staff session on `/admin/sessions`.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_extra::extract::CookieJar;
use serde::Deserialize;
use uuid::Uuid;

use super::admin::link_base;
use super::session::{Admin, SESSION_COOKIE, Staff, browser_summary};
use super::{AppState, WebError};
use crate::auth;
use crate::clock::format_ms;
use crate::store::access::{ApiToken, StaffSession};
use crate::store::users::User;

/// Routes of the account page and the admins' session list.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/account", get(account_page))
        .route("/account/tokens", post(create_token))
        .route("/account/tokens/{id}/revoke", post(revoke_token))
        .route("/account/sessions/{id}/end", post(end_session))
        .route("/account/sessions/end-others", post(end_other_sessions))
        .route("/admin/sessions", get(all_sessions_page))
        .route("/admin/sessions/{id}/end", post(admin_end_session))
}

/// Longest token lifetime the form accepts, in days (ten years).
pub const MAX_TOKEN_DAYS: i64 = 3650;

/// When a new token expires: the form's "days" field, empty for never.
pub fn token_expiry(days: &str, now: i64) -> Result<Option<i64>, WebError> {
    let days = days.trim();
    if days.is_empty() {
        return Ok(None);
    }
    match days.parse::<i64>() {
        Ok(n) if (1..=MAX_TOKEN_DAYS).contains(&n) => Ok(Some(now + n * 24 * 60 * 60 * 1000)),
        _ => Err(WebError::BadRequest(format!(
            "expires in: {days:?} is not a whole number of days from 1 to {MAX_TOKEN_DAYS} (leave it empty for a token that does not expire)"
        ))),
    }
}

/// A time for people, to the second: "2026-11-03 14:05:09 UTC".
fn when(ms: i64) -> String {
    format!(
        "{} UTC",
        format_ms(ms.div_euclid(1000) * 1000)
            .replace('T', " ")
            .trim_end_matches('Z')
    )
}

/// One session as a row of the list.
struct SessionRow {
    id: Uuid,
    username: String,
    created: String,
    last_used: String,
    expires: String,
    address: String,
    browser: String,
    current: bool,
}

impl From<StaffSession> for SessionRow {
    fn from(s: StaffSession) -> Self {
        SessionRow {
            id: s.id,
            username: s.username,
            created: when(s.created_at),
            last_used: when(s.last_used_at),
            expires: when(s.expires_at),
            address: s.address,
            browser: browser_summary(&s.user_agent),
            current: s.current,
        }
    }
}

/// One API token as a row of the list (never the token itself).
struct TokenRow {
    id: Uuid,
    name: String,
    created: String,
    last_used: String,
    expires: String,
    expired: bool,
}

impl TokenRow {
    fn new(t: ApiToken, now: i64) -> TokenRow {
        TokenRow {
            id: t.id,
            name: t.name,
            created: when(t.created_at),
            last_used: t.last_used_at.map_or_else(|| "never".into(), when),
            expires: t.expires_at.map_or_else(|| "never".into(), when),
            expired: t.expires_at.is_some_and(|at| at <= now),
        }
    }
}

/// A token just created: its name, the token (shown this once) and a pandas line using it.
struct NewToken {
    name: String,
    token: String,
    example_url: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "account.html")]
struct AccountPage {
    username: String,
    is_admin: bool,
    role: String,
    sessions: Vec<SessionRow>,
    tokens: Vec<TokenRow>,
    new_token: Option<NewToken>,
}

/// The hash of the asking browser's session token ("this session"); empty without one.
fn current_session_sha(jar: &CookieJar) -> String {
    jar.get(SESSION_COOKIE)
        .map(|c| auth::token_hash(c.value()))
        .unwrap_or_default()
}

async fn account(
    state: &AppState,
    user: User,
    jar: &CookieJar,
    new_token: Option<NewToken>,
) -> Result<AccountPage, WebError> {
    let now = state.clock.now_ms();
    let sessions = state
        .store
        .staff_sessions(Some(user.id), &current_session_sha(jar), now)
        .await?;
    let tokens = state.store.api_tokens(user.id).await?;
    Ok(AccountPage {
        is_admin: user.role == crate::domain::UserRole::Admin,
        role: user.role.as_str().to_string(),
        username: user.username,
        sessions: sessions.into_iter().map(SessionRow::from).collect(),
        tokens: tokens.into_iter().map(|t| TokenRow::new(t, now)).collect(),
        new_token,
    })
}

async fn account_page(
    State(state): State<AppState>,
    Staff(user): Staff,
    jar: CookieJar,
) -> Result<AccountPage, WebError> {
    account(&state, user, &jar, None).await
}

#[derive(Debug, Deserialize)]
struct NewTokenForm {
    name: String,
    #[serde(default)]
    expires_in_days: String,
}

/// Creates a token and shows it on the account page this once; only its hash is stored. The
/// answer is a page, not a redirect, so the token never appears in a URL or a history entry.
async fn create_token(
    State(state): State<AppState>,
    Staff(user): Staff,
    jar: CookieJar,
    headers: HeaderMap,
    Form(form): Form<NewTokenForm>,
) -> Result<AccountPage, WebError> {
    let now = state.clock.now_ms();
    let expires_at = token_expiry(&form.expires_in_days, now)?;
    let token = auth::new_api_token();
    let created = state
        .store
        .create_api_token(
            user.id,
            &form.name,
            &auth::token_hash(&token),
            expires_at,
            now,
        )
        .await?;
    let new_token = NewToken {
        name: created.name,
        token,
        example_url: format!(
            "{}/studies/STUDY_ID/attempts.csv",
            link_base(&state.config, &headers)
        ),
    };
    account(&state, user, &jar, Some(new_token)).await
}

async fn revoke_token(
    State(state): State<AppState>,
    Staff(user): Staff,
    Path(id): Path<Uuid>,
) -> Result<Redirect, WebError> {
    state.store.revoke_api_token(user.id, id).await?;
    Ok(Redirect::to("/account"))
}

/// Where to go once a session is ended: the login page if it was the asking browser's own (its
/// session is gone now; the cookie is dropped too), else back to `list`.
async fn after_ending(
    state: &AppState,
    jar: CookieJar,
    list: &'static str,
) -> Result<Response, WebError> {
    let own_ended = state
        .store
        .session_user(&current_session_sha(&jar), state.clock.now_ms())
        .await?
        .is_none();
    Ok(if own_ended {
        (jar.remove(SESSION_COOKIE), Redirect::to("/login")).into_response()
    } else {
        Redirect::to(list).into_response()
    })
}

async fn end_session(
    State(state): State<AppState>,
    Staff(user): Staff,
    jar: CookieJar,
    Path(id): Path<Uuid>,
) -> Result<Response, WebError> {
    state.store.end_session(id, Some(user.id)).await?;
    after_ending(&state, jar, "/account").await
}

async fn end_other_sessions(
    State(state): State<AppState>,
    Staff(user): Staff,
    jar: CookieJar,
) -> Result<Redirect, WebError> {
    state
        .store
        .end_other_sessions(user.id, &current_session_sha(&jar))
        .await?;
    Ok(Redirect::to("/account"))
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_sessions.html")]
struct AllSessionsPage {
    username: String,
    is_admin: bool,
    sessions: Vec<SessionRow>,
}

async fn all_sessions_page(
    State(state): State<AppState>,
    Admin(user): Admin,
    jar: CookieJar,
) -> Result<AllSessionsPage, WebError> {
    let sessions = state
        .store
        .staff_sessions(None, &current_session_sha(&jar), state.clock.now_ms())
        .await?;
    Ok(AllSessionsPage {
        username: user.username,
        is_admin: true,
        sessions: sessions.into_iter().map(SessionRow::from).collect(),
    })
}

async fn admin_end_session(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    jar: CookieJar,
    Path(id): Path<Uuid>,
) -> Result<Response, WebError> {
    state.store.end_session(id, None).await?;
    after_ending(&state, jar, "/admin/sessions").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_expiry_is_days_from_now_or_never() {
        assert_eq!(token_expiry("", 5).unwrap(), None);
        assert_eq!(token_expiry(" 2 ", 5).unwrap(), Some(5 + 2 * 86_400_000));
        for bad in ["0", "-1", "1.5", "soon", "3651"] {
            let refused = token_expiry(bad, 0).unwrap_err();
            assert!(
                refused.to_string().contains("whole number of days"),
                "{bad}"
            );
        }
    }

    #[test]
    fn times_read_to_the_second() {
        assert_eq!(when(1_700_000_000_123), "2023-11-14 22:13:20 UTC");
    }
}

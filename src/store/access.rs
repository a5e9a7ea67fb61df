//! Access control state: login throttling per (account, client address), the staff sessions a
//! user (or an admin) can list and end, and personal API tokens for researchers' scripts.

use uuid::Uuid;

use super::users::User;
use super::{Store, StoreError, StoreResult, dispatch};
use crate::auth::{self, FailureCount};
use crate::domain::parse_stored;

/// How often "last used" of a session or token is written: once a minute at most, so reading
/// pages does not turn every request into a database write.
pub const LAST_USED_PRECISION_MS: i64 = 60_000;

/// Personal API tokens one user may hold at once.
pub const MAX_API_TOKENS: i64 = 20;

/// Longest accepted API token name, in characters.
pub const MAX_TOKEN_NAME_CHARS: usize = 100;

/// Stored User-Agent texts are cut to this many characters.
pub const MAX_USER_AGENT_CHARS: usize = 300;

/// What the throttle decided about a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginAttempt {
    /// The password may be checked; the attempt already counts as a failure until
    /// [`Store::login_succeeded`] says otherwise (so parallel guesses cannot slip through
    /// while one is being checked).
    Counted(CountedAttempt),
    /// Too many recent failures for this account from this address, or from this address
    /// over all accounts: wait this many milliseconds. Nothing was counted.
    Wait(i64),
}

/// An attempt counted in advance, with what [`Store::login_succeeded`] needs to take it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountedAttempt {
    /// When it was counted (Unix ms).
    at: i64,
    /// The address key's latest failure before this attempt.
    address_failed_before: i64,
}

/// Where a session was opened from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client address as the throttle keys it (see `web::session::client_address`).
    pub address: String,
    /// The browser's User-Agent header, cut to [`MAX_USER_AGENT_CHARS`].
    pub user_agent: String,
}

impl ClientInfo {
    /// A client at `address` whose browser says `user_agent` (cut to the stored length).
    pub fn new(address: impl Into<String>, user_agent: &str) -> ClientInfo {
        ClientInfo {
            address: address.into(),
            user_agent: user_agent.chars().take(MAX_USER_AGENT_CHARS).collect(),
        }
    }
}

/// A live staff session as its owner (or an admin) sees it; never its token or its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffSession {
    /// Names the session in "end" forms.
    pub id: Uuid,
    /// Whose session it is.
    pub username: String,
    /// When it was opened (Unix ms).
    pub created_at: i64,
    /// When it was last used, to the minute (Unix ms).
    pub last_used_at: i64,
    /// When it ends by itself (Unix ms).
    pub expires_at: i64,
    /// The client address it was opened from.
    pub address: String,
    /// The browser's User-Agent at login.
    pub user_agent: String,
    /// Whether it is the session of the request that asked.
    pub current: bool,
}

/// A personal API token as listed; the token itself is shown only once, when created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Names the token in the revoke form.
    pub id: Uuid,
    /// What its owner called it ("analysis notebook").
    pub name: String,
    /// When it was created (Unix ms).
    pub created_at: i64,
    /// When it stops working (Unix ms); `None`: until revoked.
    pub expires_at: Option<i64>,
    /// When a script last used it, to the minute (Unix ms).
    pub last_used_at: Option<i64>,
}

type SessionRow = (Uuid, String, i64, i64, i64, String, String, String);
type TokenRow = (Uuid, String, i64, Option<i64>, Option<i64>);

fn session_from_row(row: SessionRow, current_sha: &str) -> StaffSession {
    let (id, username, created_at, last_used_at, expires_at, address, user_agent, sha) = row;
    StaffSession {
        id,
        username,
        created_at,
        last_used_at,
        expires_at,
        address,
        user_agent,
        current: sha == current_sha,
    }
}

impl Store {
    /// Takes a login attempt of `username` from `address` through the throttle: either counts it
    /// (provisionally, as a failure) or says how long to wait, counting nothing. One short write
    /// transaction with both keys' rows locked, so every server instance sees the same counts.
    pub async fn count_login_attempt(
        &self,
        username: &str,
        address: &str,
        now: i64,
    ) -> StoreResult<LoginAttempt> {
        if username.is_empty() {
            // '' is the address's own key (see the migration).
            return Err(StoreError::Invalid("username must not be empty".into()));
        }
        let forget_before = now - auth::LOGIN_FORGET_MS;
        self.forget_old_login_failures(forget_before).await?;
        dispatch!(self, pool, backend => {
            let mut tx = self.begin_write(pool).await?;
            sqlx::query(
                "INSERT INTO login_throttle (username, address, failures, last_failed_at)
                 VALUES ($1, $2, 0, 0), ('', $2, 0, 0)
                 ON CONFLICT (username, address) DO NOTHING",
            )
            .bind(username)
            .bind(address)
            .execute(&mut *tx)
            .await?;
            // The address row ('') sorts first: every transaction locks the two rows in the
            // same order, so two logins never deadlock.
            let rows: Vec<(String, i64, i64)> = sqlx::query_as(backend.pick(
                "SELECT username, failures, last_failed_at FROM login_throttle
                 WHERE address = $1 AND username IN ($2, '') ORDER BY username",
                "SELECT username, failures, last_failed_at FROM login_throttle
                 WHERE address = $1 AND username IN ($2, '') ORDER BY username FOR UPDATE",
            ))
            .bind(address)
            .bind(username)
            .fetch_all(&mut *tx)
            .await?;
            let count_of = |key: &str| {
                rows.iter()
                    .find(|(name, _, _)| name == key)
                    .filter(|(_, _, last)| *last >= forget_before)
                    .map(|&(_, failures, last_failed_at)| FailureCount { failures, last_failed_at })
                    .unwrap_or_default()
            };
            let (account, whole_address) = (count_of(username), count_of(""));
            let wait = auth::login_wait_ms(account, whole_address, now);
            if wait > 0 {
                tx.rollback().await?;
                return Ok(LoginAttempt::Wait(wait));
            }
            for (key, count) in [(username, account), ("", whole_address)] {
                sqlx::query(
                    "UPDATE login_throttle SET failures = $1, last_failed_at = $2
                     WHERE username = $3 AND address = $4",
                )
                .bind(count.failures + 1)
                .bind(now)
                .bind(key)
                .bind(address)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(LoginAttempt::Counted(CountedAttempt {
                at: now,
                address_failed_before: whole_address.last_failed_at,
            }))
        })
    }

    /// After the right password: forgets the account's failures from this address and takes
    /// back the attempt's provisional count on the address (its other failures stay counted,
    /// so logging in to one's own account never resets an address's spraying count; the
    /// latest failure's time goes back too unless another failure came since).
    pub async fn login_succeeded(
        &self,
        username: &str,
        address: &str,
        attempt: CountedAttempt,
    ) -> StoreResult<()> {
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            sqlx::query("DELETE FROM login_throttle WHERE username = $1 AND address = $2")
                .bind(username)
                .bind(address)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE login_throttle SET failures = failures - 1,
                        last_failed_at = CASE WHEN last_failed_at = $2 THEN $3 ELSE last_failed_at END
                 WHERE username = '' AND address = $1 AND failures > 0",
            )
            .bind(address)
            .bind(attempt.at)
            .bind(attempt.address_failed_before)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Drops throttle rows whose latest failure is older than `before`, keeping the table as
    /// small as the last hour's failures.
    async fn forget_old_login_failures(&self, before: i64) -> StoreResult<()> {
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            sqlx::query("DELETE FROM login_throttle WHERE last_failed_at < $1")
                .bind(before)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Live staff sessions, newest first: one user's (`Some(user_id)`), or everyone's for an
    /// admin. `current_sha` (the asking request's token hash) marks "this session".
    pub async fn staff_sessions(
        &self,
        user_id: Option<Uuid>,
        current_sha: &str,
        now: i64,
    ) -> StoreResult<Vec<StaffSession>> {
        let rows: Vec<SessionRow> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT s.id, u.username, s.created_at, s.last_used_at, s.expires_at, s.address,
                        s.user_agent, s.token_sha
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.expires_at > $1 AND ($2 IS NULL OR s.user_id = $2)
                 ORDER BY s.last_used_at DESC, s.created_at DESC",
            )
            .bind(now)
            .bind(user_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|row| session_from_row(row, current_sha))
            .collect())
    }

    /// Ends session `id` at once: its next request finds no session. `owner` limits it to that
    /// user's sessions (an admin passes `None`); someone else's session is "not found".
    pub async fn end_session(&self, id: Uuid, owner: Option<Uuid>) -> StoreResult<()> {
        let ended = dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let ended = sqlx::query("DELETE FROM sessions WHERE id = $1 AND ($2 IS NULL OR user_id = $2)")
                .bind(id)
                .bind(owner)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            ended
        });
        if ended == 0 {
            return Err(StoreError::NotFound("session"));
        }
        Ok(())
    }

    /// Ends every session of `user_id` except the one whose token hash is `keep_sha`; returns
    /// how many were ended.
    pub async fn end_other_sessions(&self, user_id: Uuid, keep_sha: &str) -> StoreResult<u64> {
        Ok(dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let ended = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_sha <> $2")
                .bind(user_id)
                .bind(keep_sha)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            ended
        }))
    }

    /// Stores a new API token of `user_id` by its hash. The name is trimmed and must be new
    /// among the user's tokens; a user holds at most [`MAX_API_TOKENS`].
    pub async fn create_api_token(
        &self,
        user_id: Uuid,
        name: &str,
        token_sha: &str,
        expires_at: Option<i64>,
        now: i64,
    ) -> StoreResult<ApiToken> {
        let name = name.trim();
        if name.is_empty() {
            return Err(StoreError::Invalid("give the token a name".into()));
        }
        if name.chars().count() > MAX_TOKEN_NAME_CHARS {
            return Err(StoreError::Invalid(format!(
                "a token name has at most {MAX_TOKEN_NAME_CHARS} characters"
            )));
        }
        let token = ApiToken {
            id: Uuid::now_v7(),
            name: name.to_string(),
            created_at: now,
            expires_at,
            last_used_at: None,
        };
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?;
            if held >= MAX_API_TOKENS {
                return Err(StoreError::Conflict(format!(
                    "you already hold {MAX_API_TOKENS} tokens: revoke one you no longer use first"
                )));
            }
            let inserted = sqlx::query(
                "INSERT INTO api_tokens (id, user_id, name, token_sha, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (user_id, name) DO NOTHING",
            )
            .bind(token.id)
            .bind(user_id)
            .bind(&token.name)
            .bind(token_sha)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Err(StoreError::Conflict(format!(
                    "you already have a token named {name:?}: choose another name"
                )));
            }
            tx.commit().await?;
        });
        Ok(token)
    }

    /// A user's API tokens, newest first (expired ones too, until revoked).
    pub async fn api_tokens(&self, user_id: Uuid) -> StoreResult<Vec<ApiToken>> {
        let rows: Vec<TokenRow> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT id, name, created_at, expires_at, last_used_at FROM api_tokens
                 WHERE user_id = $1 ORDER BY created_at DESC, name",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, name, created_at, expires_at, last_used_at)| ApiToken {
                    id,
                    name,
                    created_at,
                    expires_at,
                    last_used_at,
                },
            )
            .collect())
    }

    /// Revokes (deletes) token `id` of `user_id`; it stops working at once.
    pub async fn revoke_api_token(&self, user_id: Uuid, id: Uuid) -> StoreResult<()> {
        let revoked = dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let revoked = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            revoked
        });
        if revoked == 0 {
            return Err(StoreError::NotFound("token"));
        }
        Ok(())
    }

    /// The user a live (known, unexpired) API token acts for, noting its use.
    pub async fn api_token_user(&self, token_sha: &str, now: i64) -> StoreResult<Option<User>> {
        let row: Option<(Uuid, String, String, Uuid, Option<i64>)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT u.id, u.username, u.role, t.id, t.last_used_at
                 FROM api_tokens t JOIN users u ON u.id = t.user_id
                 WHERE t.token_sha = $1 AND (t.expires_at IS NULL OR t.expires_at > $2)",
            )
            .bind(token_sha)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        let Some((id, username, role, token_id, last_used_at)) = row else {
            return Ok(None);
        };
        if last_used_at.is_none_or(|at| now - at >= LAST_USED_PRECISION_MS) {
            dispatch!(self, pool, _b => {
                let mut tx = self.begin_write(pool).await?;
                sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(token_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            });
        }
        Ok(Some(User {
            id,
            username,
            role: parse_stored(&role)?,
        }))
    }
}

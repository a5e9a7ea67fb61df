//! Staff accounts (admins, researchers) and their login sessions.

use uuid::Uuid;

use super::access::{ClientInfo, LAST_USED_PRECISION_MS};
use super::{Store, StoreError, StoreResult, dispatch};
use crate::domain::{UserRole, parse_stored};

/// A staff account as the web layer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Stable id.
    pub id: Uuid,
    /// Login name.
    pub username: String,
    /// What the account may do.
    pub role: UserRole,
}

/// How long a staff login lasts.
pub const SESSION_TTL_MS: i64 = 12 * 60 * 60 * 1000;

impl Store {
    /// Creates a staff account; the password must already be hashed (argon2, see `auth`).
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: UserRole,
        now: i64,
    ) -> StoreResult<User> {
        let username = username.trim();
        if username.is_empty() {
            return Err(StoreError::Invalid("username must not be empty".into()));
        }
        let id = Uuid::now_v7();
        let inserted = dispatch!(self, pool, _b => {
            sqlx::query(
                "INSERT INTO users (id, username, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (username) DO NOTHING",
            )
            .bind(id)
            .bind(username)
            .bind(password_hash)
            .bind(role.as_str())
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "a user named {username:?} already exists"
            )));
        }
        Ok(User {
            id,
            username: username.to_string(),
            role,
        })
    }

    /// Replaces a user's password hash (the `user add --reset` path).
    pub async fn set_password(&self, username: &str, password_hash: &str) -> StoreResult<()> {
        let changed = dispatch!(self, pool, _b => {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE username = $2")
                .bind(password_hash)
                .bind(username)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if changed == 0 {
            Err(StoreError::NotFound("user"))
        } else {
            Ok(())
        }
    }

    /// The account and its stored password hash, for checking a login.
    pub async fn user_with_hash(&self, username: &str) -> StoreResult<Option<(User, String)>> {
        let row: Option<(Uuid, String, String, String)> = dispatch!(self, pool, _b => {
            sqlx::query_as("SELECT id, username, role, password_hash FROM users WHERE username = $1")
                .bind(username.trim())
                .fetch_optional(pool)
                .await?
        });
        row.map(|(id, username, role, hash)| {
            Ok((
                User {
                    id,
                    username,
                    role: parse_stored(&role)?,
                },
                hash,
            ))
        })
        .transpose()
    }

    /// Number of staff accounts; zero on a fresh database.
    pub async fn count_users(&self) -> StoreResult<i64> {
        Ok(dispatch!(self, pool, _b => {
            sqlx::query_as::<_, (i64,)>("SELECT COUNT(*) FROM users").fetch_one(pool).await?.0
        }))
    }

    /// Opens a login session, stored by the hash of its cookie token, noting where it was
    /// opened from (for the account page's list of sessions).
    pub async fn create_session(
        &self,
        token_sha: &str,
        user_id: Uuid,
        now: i64,
        client: &ClientInfo,
    ) -> StoreResult<()> {
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            sqlx::query("DELETE FROM sessions WHERE expires_at < $1").bind(now).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO sessions (token_sha, user_id, created_at, expires_at, id, last_used_at, address, user_agent)
                 VALUES ($1, $2, $3, $4, $5, $3, $6, $7)",
            )
            .bind(token_sha)
            .bind(user_id)
            .bind(now)
            .bind(now + SESSION_TTL_MS)
            .bind(Uuid::now_v7())
            .bind(&client.address)
            .bind(&client.user_agent)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The user behind a live session token hash, if any; notes the use (to the minute).
    pub async fn session_user(&self, token_sha: &str, now: i64) -> StoreResult<Option<User>> {
        let row: Option<(Uuid, String, String, i64)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT u.id, u.username, u.role, s.last_used_at FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_sha = $1 AND s.expires_at > $2",
            )
            .bind(token_sha)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        let Some((id, username, role, last_used_at)) = row else {
            return Ok(None);
        };
        if now - last_used_at >= LAST_USED_PRECISION_MS {
            dispatch!(self, pool, _b => {
                let mut tx = self.begin_write(pool).await?;
                sqlx::query("UPDATE sessions SET last_used_at = $1 WHERE token_sha = $2")
                    .bind(now)
                    .bind(token_sha)
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

    /// Ends a session (logout).
    pub async fn delete_session(&self, token_sha: &str) -> StoreResult<()> {
        dispatch!(self, pool, _b => {
            sqlx::query("DELETE FROM sessions WHERE token_sha = $1").bind(token_sha).execute(pool).await?;
        });
        Ok(())
    }
}

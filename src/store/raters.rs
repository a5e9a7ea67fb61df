//! Raters: people invited to one study by a secret link. They have no account; the link's
//! token (stored hashed) is their credential.

use uuid::Uuid;

use super::{Store, StoreError, StoreResult, dispatch};
use crate::auth;

/// A rater as the rater pages need them: who, and in which study.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rater {
    /// Stable id.
    pub id: Uuid,
    /// The study they judge for.
    pub study_id: Uuid,
    /// Name given at invitation (shown to staff, and to the rater as a greeting).
    pub name: String,
}

/// A fresh invitation: the plain token exists only here, to be turned into a link once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    /// The invited rater.
    pub rater: Rater,
    /// Secret for the invite link `/r/{token}`.
    pub token: String,
}

/// A rater's progress, for staff pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaterProgress {
    /// The rater.
    pub rater: Rater,
    /// Judgements stored (timeouts included).
    pub judgements: i64,
    /// Of which timeouts.
    pub timeouts: i64,
    /// When they first opened their link (Unix ms).
    pub started_at: Option<i64>,
    /// Revoked links no longer work.
    pub revoked: bool,
}

/// (id, name, judgements, timeouts, started_at, revoked_at) as selected below.
type RaterProgressRow = (Uuid, String, i64, i64, Option<i64>, Option<i64>);

impl Store {
    /// Invites raters with the given names to a study and returns their secret tokens.
    pub async fn invite_raters(
        &self,
        study_id: Uuid,
        names: &[String],
        now: i64,
    ) -> StoreResult<Vec<Invitation>> {
        self.study(study_id).await?;
        let invitations: Vec<Invitation> = names
            .iter()
            .map(|name| Invitation {
                rater: Rater {
                    id: Uuid::now_v7(),
                    study_id,
                    name: name.trim().to_string(),
                },
                token: auth::new_token(),
            })
            .collect();
        if invitations.iter().any(|i| i.rater.name.is_empty()) {
            return Err(StoreError::Invalid("every rater needs a name".into()));
        }
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            for invitation in &invitations {
                sqlx::query("INSERT INTO raters (id, study_id, name, token_sha, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(invitation.rater.id)
                    .bind(study_id)
                    .bind(&invitation.rater.name)
                    .bind(auth::token_hash(&invitation.token))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(invitations)
    }

    /// The rater holding this invite token, unless the link was revoked.
    pub async fn rater_by_token(&self, token: &str) -> StoreResult<Option<Rater>> {
        let row: Option<(Uuid, Uuid, String)> = dispatch!(self, pool, _b => {
            sqlx::query_as("SELECT id, study_id, name FROM raters WHERE token_sha = $1 AND revoked_at IS NULL")
                .bind(auth::token_hash(token))
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(id, study_id, name)| Rater { id, study_id, name }))
    }

    /// Records the first time a rater opened their link.
    pub async fn mark_rater_started(&self, rater_id: Uuid, now: i64) -> StoreResult<()> {
        dispatch!(self, pool, _b => {
            sqlx::query("UPDATE raters SET started_at = $1 WHERE id = $2 AND started_at IS NULL")
                .bind(now)
                .bind(rater_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Revokes a rater's link; their stored judgements stay.
    pub async fn revoke_rater(&self, rater_id: Uuid, now: i64) -> StoreResult<()> {
        dispatch!(self, pool, _b => {
            sqlx::query("UPDATE raters SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(rater_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Every rater of a study with their progress.
    pub async fn rater_progress(&self, study_id: Uuid) -> StoreResult<Vec<RaterProgress>> {
        let rows: Vec<RaterProgressRow> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT r.id, r.name,
                        (SELECT COUNT(*) FROM judgements j WHERE j.rater_id = r.id),
                        (SELECT COUNT(*) FROM judgements j WHERE j.rater_id = r.id AND j.verdict = 'timeout'),
                        r.started_at, r.revoked_at
                 FROM raters r WHERE r.study_id = $1 ORDER BY r.created_at, r.name",
            )
            .bind(study_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, name, judgements, timeouts, started_at, revoked_at)| RaterProgress {
                    rater: Rater { id, study_id, name },
                    judgements,
                    timeouts,
                    started_at,
                    revoked: revoked_at.is_some(),
                },
            )
            .collect())
    }
}

//! Raters: people invited to one study by a secret link. They have no account; the link's
//! token (stored hashed) is their credential.

use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::writer::value_rows;
use super::{Store, StoreError, StoreResult, dispatch, lock_study};
use crate::auth;
use crate::invites::{self, Invitee};

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
    /// Their email, if the admin gave one (staff only).
    pub email: Option<String>,
    /// Secret for the invite link `/r/{token}`.
    pub token: String,
}

/// A rater's progress, for staff pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaterProgress {
    /// The rater.
    pub rater: Rater,
    /// Their email, if given at invitation.
    pub email: Option<String>,
    /// Judgements stored (timeouts included).
    pub judgements: i64,
    /// Of which timeouts.
    pub timeouts: i64,
    /// When they first opened their link (Unix ms).
    pub started_at: Option<i64>,
    /// Their latest item served or answer stored (Unix ms); `None` before their first item.
    pub last_activity_at: Option<i64>,
    /// When their link was revoked (Unix ms); revoked links no longer work.
    pub revoked_at: Option<i64>,
}

/// (id, name, email, judgements, timeouts, started_at, last served, last submitted,
/// revoked_at) as selected below.
type RaterProgressRow = (
    Uuid,
    String,
    Option<String>,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// Names of a study's raters whose links were not revoked.
const ACTIVE_NAMES: &str = "SELECT name FROM raters WHERE study_id = $1 AND revoked_at IS NULL";

/// Rows per multi-row insert of new raters (6 parameters each: well under SQLite's 32,766 and
/// PostgreSQL's 65,535 parameters per statement).
const INSERT_CHUNK: usize = 1_000;

/// Inside a `dispatch!` body holding the write transaction `$tx`: abandons the rater's active
/// item, if any, and returns its slot to the pool, as if its time had run out. The conditional
/// update re-checks `active` under the row lock, so an answer or a sweep committing at the
/// same moment cannot free the slot a second time.
macro_rules! abandon_active_items {
    ($tx:ident, $rater_id:expr, $study_id:expr) => {{
        let freed: Vec<(Uuid,)> = sqlx::query_as(
            "UPDATE assignments SET state = 'abandoned'
             WHERE rater_id = $1 AND study_id = $2 AND state = 'active'
             RETURNING solution_id",
        )
        .bind($rater_id)
        .bind($study_id)
        .fetch_all(&mut *$tx)
        .await?;
        for (solution_id,) in freed {
            sqlx::query(
                "UPDATE study_solutions SET slots_taken = slots_taken - 1
                 WHERE study_id = $1 AND solution_id = $2",
            )
            .bind($study_id)
            .bind(solution_id)
            .execute(&mut *$tx)
            .await?;
        }
    }};
}
pub(crate) use abandon_active_items;

impl Store {
    /// Invites raters with the given names (no emails) to a study and returns their secret
    /// tokens; the same rules as [`Store::invite_invitees`].
    pub async fn invite_raters(
        &self,
        study_id: Uuid,
        names: &[String],
        now: i64,
    ) -> StoreResult<Vec<Invitation>> {
        let invitees: Vec<Invitee> = names
            .iter()
            .enumerate()
            .map(|(i, name)| Invitee::named(i + 1, name))
            .collect();
        self.invite_invitees(study_id, &invitees, now).await
    }

    /// Invites every invitee to a study in one transaction, or nobody: the list is checked
    /// whole, against the names of the study's active raters as the transaction sees them
    /// ([`invites::check_invitees`]); a refusal names every bad line. Returns each new rater's
    /// secret token, in list order (only hashes are stored).
    pub async fn invite_invitees(
        &self,
        study_id: Uuid,
        invitees: &[Invitee],
        now: i64,
    ) -> StoreResult<Vec<Invitation>> {
        let invitations: Vec<Invitation> = invitees
            .iter()
            .map(|invitee| Invitation {
                rater: Rater {
                    id: Uuid::now_v7(),
                    study_id,
                    name: invitee.name.trim().to_string(),
                },
                email: invitee.email.clone(),
                token: auth::new_token(),
            })
            .collect();
        dispatch!(self, pool, backend => {
            let mut tx = self.begin_write(pool).await?;
            // Concurrent invitations to one study take turns, so two cannot both pass the
            // name check.
            lock_study!(tx, backend, study_id);
            let active: Vec<String> = sqlx::query_scalar(ACTIVE_NAMES)
                .bind(study_id)
                .fetch_all(&mut *tx)
                .await?;
            invites::check_invitees(invitees, &active)?;
            for chunk in invitations.chunks(INSERT_CHUNK) {
                let sql = format!(
                    "INSERT INTO raters (id, study_id, name, email, token_sha, created_at) VALUES {}",
                    value_rows(chunk.len(), 6)
                );
                let mut insert = sqlx::query(AssertSqlSafe(sql));
                for invitation in chunk {
                    insert = insert
                        .bind(invitation.rater.id)
                        .bind(study_id)
                        .bind(&invitation.rater.name)
                        .bind(&invitation.email)
                        .bind(auth::token_hash(&invitation.token))
                        .bind(now);
                }
                insert.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(invitations)
    }

    /// The names of the study's raters whose links work: a new invitee may not take one (see
    /// [`invites::check_invitees`]). Read before an invitation so its refusal can name every
    /// clash at once; the invitation checks again in its transaction.
    pub async fn active_rater_names(&self, study_id: Uuid) -> StoreResult<Vec<String>> {
        Ok(dispatch!(self, pool, _b => {
            sqlx::query_scalar(ACTIVE_NAMES)
                .bind(study_id)
                .fetch_all(pool)
                .await?
        }))
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

    /// Revokes a rater's link: from now on their token is unknown (see
    /// [`Store::rater_by_token`]). In the same transaction their active item, if any, is
    /// abandoned and its slot returns to the pool, as if its time had run out; their stored
    /// judgements stay and still count. Revoking again changes nothing (the first time is
    /// kept). A rater not of `study_id` is `NotFound`.
    ///
    /// A request of theirs that was authenticated just before the revocation may still be
    /// served an item; that item returns to the pool like any unanswered one, after its
    /// deadline plus the study's grace.
    pub async fn revoke_rater(&self, study_id: Uuid, rater_id: Uuid, now: i64) -> StoreResult<()> {
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let found = sqlx::query(
                "UPDATE raters SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 AND study_id = $3",
            )
            .bind(now)
            .bind(rater_id)
            .bind(study_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if found == 0 {
                return Err(StoreError::NotFound("rater"));
            }
            abandon_active_items!(tx, rater_id, study_id);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Every rater of a study with their progress, in invitation order.
    pub async fn rater_progress(&self, study_id: Uuid) -> StoreResult<Vec<RaterProgress>> {
        let rows: Vec<RaterProgressRow> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT r.id, r.name, r.email,
                        (SELECT COUNT(*) FROM judgements j WHERE j.rater_id = r.id),
                        (SELECT COUNT(*) FROM judgements j WHERE j.rater_id = r.id AND j.verdict = 'timeout'),
                        r.started_at,
                        (SELECT MAX(a.served_at) FROM assignments a WHERE a.rater_id = r.id),
                        (SELECT MAX(j.submitted_at) FROM judgements j WHERE j.rater_id = r.id),
                        r.revoked_at
                 FROM raters r WHERE r.study_id = $1 ORDER BY r.created_at, r.id",
            )
            .bind(study_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(
                    id,
                    name,
                    email,
                    judgements,
                    timeouts,
                    started_at,
                    served,
                    submitted,
                    revoked_at,
                )| {
                    RaterProgress {
                        rater: Rater { id, study_id, name },
                        email,
                        judgements,
                        timeouts,
                        started_at,
                        last_activity_at: served.max(submitted),
                        revoked_at,
                    }
                },
            )
            .collect())
    }
}

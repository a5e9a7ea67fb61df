//! Panel entry links (see [`crate::panel`]): a study's link and parameter names, and
//! participants entering through it, each one rater per study however often they enter.

use uuid::Uuid;

use super::raters::Rater;
use super::raters::abandon_active_items;
use super::{Store, StoreError, StoreResult, dispatch, lock_study};
use crate::auth;
use crate::bonus::BonusRule;
use crate::domain::StudyStatus;
use crate::panel::{self, Completion, CompletionOutcome, PanelEntry, PanelParams, Submissions};

/// A study's panel entry link as staff pages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyPanel {
    /// The secret part of `/s/{link}`.
    pub link: String,
    /// The URL parameters the panel fills in.
    pub params: PanelParams,
    /// Participants who entered so far.
    pub participants: i64,
    /// At most this many participants hold a place at a time; `None`: no limit.
    pub places: Option<i64>,
    /// Participants the panel reported as returned or timed out (their places are free).
    pub returned: i64,
    /// A participant idle this many minutes gives their place up; `None`: never.
    pub idle_minutes: Option<i64>,
    /// Participants whose places were freed for idleness.
    pub idle: i64,
}

/// One participant's data deleted on request, as the log keeps it (without their ID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDeletion {
    /// Judgements deleted.
    pub judgements: i64,
    /// Qualification, practice and gold answers deleted.
    pub quality_answers: i64,
    /// The staff member who deleted them.
    pub deleted_by: String,
    /// When (Unix ms).
    pub deleted_at: i64,
}

/// What entering through a panel link came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PanelEntryOutcome {
    /// A rater, new or resuming, and the token their browser keeps.
    Entered {
        /// The participant's rater.
        rater: Rater,
        /// Their rater token (derived, never stored).
        token: String,
    },
    /// The study is closed and this participant had not entered before.
    Closed,
    /// Staff ended this participant's place (their link was revoked, or the panel reported
    /// them as returned).
    Revoked,
    /// Every place is taken and this participant had not entered before.
    Full,
}

/// (study id, secret, status, places) of a panel link.
type LinkRow = (Uuid, String, String, Option<i64>);

/// (study id, participant id) of the rater holding a token.
type HolderRow = (Uuid, Option<String>);

impl Store {
    /// Opens a study's panel link with these parameter names, or changes the names of the
    /// link it has (the link and the participants' tokens stay the same).
    pub async fn open_panel(
        &self,
        study_id: Uuid,
        params: &PanelParams,
        places: Option<i64>,
        idle_minutes: Option<i64>,
        now: i64,
    ) -> StoreResult<StudyPanel> {
        // 96 random bits: the link is shared with every participant, so it only has to be
        // unguessable, not secret like the derivation key.
        let link = auth::new_token()[..24].to_string();
        let secret = auth::new_token();
        dispatch!(self, pool, backend => {
            let mut tx = self.begin_write(pool).await?;
            lock_study!(tx, backend, study_id);
            sqlx::query(
                "INSERT INTO study_panels
                   (study_id, link, secret, id_param, study_param, session_param, places,
                    created_at, updated_at, idle_minutes)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)
                 ON CONFLICT (study_id) DO UPDATE SET
                   id_param = excluded.id_param, study_param = excluded.study_param,
                   session_param = excluded.session_param, places = excluded.places,
                   updated_at = excluded.updated_at, idle_minutes = excluded.idle_minutes",
            )
            .bind(study_id)
            .bind(&link)
            .bind(&secret)
            .bind(&params.id_param)
            .bind(&params.study_param)
            .bind(&params.session_param)
            .bind(places)
            .bind(now)
            .bind(idle_minutes)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        self.study_panel(study_id)
            .await?
            .ok_or(StoreError::NotFound("study"))
    }

    /// A study's panel link, if it has one.
    pub async fn study_panel(&self, study_id: Uuid) -> StoreResult<Option<StudyPanel>> {
        /// link, id/study/session parameter names, participants, places, returned, idle
        /// minutes, idle participants.
        type Row = (
            String,
            String,
            Option<String>,
            Option<String>,
            i64,
            Option<i64>,
            i64,
            Option<i64>,
            i64,
        );
        let row: Option<Row> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT p.link, p.id_param, p.study_param, p.session_param,
                        (SELECT COUNT(*) FROM raters r
                          WHERE r.study_id = p.study_id AND r.participant_id IS NOT NULL)
                          AS participants,
                        p.places,
                        (SELECT COUNT(*) FROM raters r
                          WHERE r.study_id = p.study_id AND r.returned_at IS NOT NULL) AS returned,
                        p.idle_minutes,
                        (SELECT COUNT(*) FROM raters r
                          WHERE r.study_id = p.study_id AND r.idle_at IS NOT NULL) AS idle
                 FROM study_panels p WHERE p.study_id = $1",
            )
            .bind(study_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(
            |(
                link,
                id_param,
                study_param,
                session_param,
                participants,
                places,
                returned,
                idle_minutes,
                idle,
            )| StudyPanel {
                link,
                params: PanelParams {
                    id_param,
                    study_param,
                    session_param,
                },
                participants,
                places,
                returned,
                idle_minutes,
                idle,
            },
        ))
    }

    /// Sets whether failing the silent gold items ends a participant's study.
    pub async fn set_gold_failure_ends(&self, study_id: Uuid, ends: bool) -> StoreResult<()> {
        dispatch!(self, pool, backend => {
            let mut tx = self.begin_write(pool).await?;
            lock_study!(tx, backend, study_id);
            sqlx::query("UPDATE studies SET gold_failure_ends = $1 WHERE id = $2")
                .bind(ends)
                .bind(study_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Whether failing the silent gold items ends a participant's study.
    pub async fn gold_failure_ends(&self, study_id: Uuid) -> StoreResult<bool> {
        let row: Option<(bool,)> = dispatch!(self, pool, _b => {
            sqlx::query_as("SELECT gold_failure_ends FROM studies WHERE id = $1")
                .bind(study_id)
                .fetch_optional(pool)
                .await?
        });
        row.map(|(ends,)| ends).ok_or(StoreError::NotFound("study"))
    }

    /// Every panel participant of a study with what the approve/reject list needs (see
    /// [`panel::review_decision`]), in the order they entered: their intake and place from
    /// their row, their study answers from [`Store::rater_tallies`] and their gold answers and
    /// screening decision from [`Store::study_rater_quality`], the tallies the report uses.
    pub async fn participant_records(
        &self,
        study_id: Uuid,
    ) -> StoreResult<Vec<panel::ParticipantRecord>> {
        /// rater, participant ID, consent declined at, comprehension failures and pass time,
        /// returned as, idle at.
        type Row = (
            Uuid,
            String,
            Option<i64>,
            i64,
            Option<i64>,
            Option<String>,
            Option<i64>,
        );
        let rows: Vec<Row> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT id, participant_id, consent_declined_at, comprehension_failures,
                        comprehension_passed_at, returned_as, idle_at
                 FROM raters
                 WHERE study_id = $1 AND participant_id IS NOT NULL
                 ORDER BY created_at, id",
            )
            .bind(study_id)
            .fetch_all(pool)
            .await?
        });
        let tallies: std::collections::HashMap<Uuid, crate::export::RaterTally> = self
            .rater_tallies(study_id)
            .await?
            .into_iter()
            .map(|t| (t.rater_id, t))
            .collect();
        let quality = self.study_rater_quality(study_id).await?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    rater_id,
                    participant_id,
                    declined_at,
                    failures,
                    passed_at,
                    returned_as,
                    idle_at,
                )| {
                    let tally = tallies.get(&rater_id);
                    let rater_quality = quality.get(&rater_id).cloned().unwrap_or_default();
                    panel::ParticipantRecord {
                        participant_id,
                        declined_consent: declined_at.is_some(),
                        failed_comprehension: passed_at.is_none()
                            && failures >= crate::intake::COMPREHENSION_ATTEMPTS,
                        failed_screening: rater_quality.screening_passed == Some(false),
                        returned: returned_as.or_else(|| idle_at.map(|_| "idle".to_string())),
                        answered: tally.map_or(0, |t| t.answered),
                        right: tally.map_or(0, |t| t.right),
                        gold: rater_quality.gold,
                    }
                },
            )
            .collect())
    }

    /// Frees the places of panel participants idle longer than their study's idle limit
    /// (nothing served, answered or entered for that long): each is marked idle, their link
    /// revoked and their unanswered item returned to the pool, in one transaction per
    /// participant, with their finished judgements kept. The server runs it every few
    /// seconds; returns how many were freed.
    pub async fn free_idle_places(&self, now: i64) -> StoreResult<usize> {
        let idle: Vec<(Uuid, Uuid, i64)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT r.id, r.study_id, p.idle_minutes FROM raters r
                 JOIN study_panels p ON p.study_id = r.study_id
                 WHERE p.idle_minutes IS NOT NULL AND r.participant_id IS NOT NULL
                   AND r.revoked_at IS NULL
                   AND COALESCE(
                         (SELECT MAX(a.served_at) FROM assignments a WHERE a.rater_id = r.id),
                         r.started_at, r.created_at
                       ) < $1 - p.idle_minutes * 60000
                   AND NOT EXISTS (SELECT 1 FROM judgements j
                                   WHERE j.rater_id = r.id
                                     AND j.submitted_at >= $1 - p.idle_minutes * 60000)
                   AND NOT EXISTS (SELECT 1 FROM assignments a
                                   WHERE a.rater_id = r.id AND a.state = 'active' AND a.deadline >= $1)",
            )
            .bind(now)
            .fetch_all(pool)
            .await?
        });
        let mut freed = 0;
        for (rater_id, study_id, minutes) in idle {
            // Checked again under the write lock: an item served or answered since the read
            // keeps the place.
            dispatch!(self, pool, _b => {
                let mut tx = self.begin_write(pool).await?;
                let changed = sqlx::query(
                    "UPDATE raters SET idle_at = $1, revoked_at = $1
                     WHERE id = $2 AND revoked_at IS NULL
                       AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.rater_id = $2
                                         AND (a.served_at >= $3
                                              OR (a.state = 'active' AND a.deadline >= $1)))
                       AND NOT EXISTS (SELECT 1 FROM judgements j
                                       WHERE j.rater_id = $2 AND j.submitted_at >= $3)",
                )
                .bind(now)
                .bind(rater_id)
                .bind(now - minutes * 60_000)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed > 0 {
                    abandon_active_items!(tx, rater_id, study_id);
                    freed += 1;
                }
                tx.commit().await?;
            });
        }
        Ok(freed)
    }

    /// The study and parameter names of the panel link `link`; `NotFound` for an unknown link.
    pub async fn panel_params(&self, link: &str) -> StoreResult<(Uuid, PanelParams)> {
        type Row = (Uuid, String, Option<String>, Option<String>);
        let row: Option<Row> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT study_id, id_param, study_param, session_param FROM study_panels
                 WHERE link = $1",
            )
            .bind(link)
            .fetch_optional(pool)
            .await?
        });
        let (study_id, id_param, study_param, session_param) =
            row.ok_or(StoreError::NotFound("study link"))?;
        Ok((
            study_id,
            PanelParams {
                id_param,
                study_param,
                session_param,
            },
        ))
    }

    /// The study and panel participant ID of the rater holding `token` (a working link), to
    /// tell whether a browser already takes part as someone else.
    pub async fn token_holder(&self, token: &str) -> StoreResult<Option<(Uuid, Option<String>)>> {
        let row: Option<HolderRow> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT study_id, participant_id FROM raters
                 WHERE token_sha = $1 AND revoked_at IS NULL",
            )
            .bind(auth::token_hash(token))
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// A participant entering through the panel link: their rater, created on the first entry
    /// (one per participant ID and study, also when many entries race) and found again on
    /// every later one, from any browser; the panel's study and session IDs of the latest
    /// entry are kept. A closed study takes no new participants.
    pub async fn enter_panel(
        &self,
        link: &str,
        entry: &PanelEntry,
        now: i64,
    ) -> StoreResult<PanelEntryOutcome> {
        dispatch!(self, pool, backend => {
            let mut tx = self.begin_write(pool).await?;
            // Locking the link's row makes a study's first entries take turns on PostgreSQL,
            // so two cannot both take the last place (SQLite's single writer already does).
            let row: Option<LinkRow> = sqlx::query_as(backend.pick(
                "SELECT p.study_id, p.secret, s.status, p.places FROM study_panels p
                 JOIN studies s ON s.id = p.study_id WHERE p.link = $1",
                "SELECT p.study_id, p.secret, s.status, p.places FROM study_panels p
                 JOIN studies s ON s.id = p.study_id WHERE p.link = $1 FOR UPDATE OF p",
            ))
            .bind(link)
            .fetch_optional(&mut *tx)
            .await?;
            let (study_id, secret, status, places) =
                row.ok_or(StoreError::NotFound("study link"))?;
            let token = panel::participant_token(&secret, &entry.participant_id);
            let sha = auth::token_hash(&token);
            let find = "SELECT id, name, revoked_at FROM raters WHERE token_sha = $1";
            let mut found: Option<(Uuid, String, Option<i64>)> = sqlx::query_as(find)
                .bind(&sha)
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                if status != StudyStatus::Open.as_str() {
                    return Ok(PanelEntryOutcome::Closed);
                }
                if let Some(places) = places {
                    let (holding,): (i64,) = sqlx::query_as(
                        "SELECT COUNT(*) FROM raters
                         WHERE study_id = $1 AND participant_id IS NOT NULL AND revoked_at IS NULL",
                    )
                    .bind(study_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    if holding >= places {
                        return Ok(PanelEntryOutcome::Full);
                    }
                }
                // A concurrent first entry of the same participant may insert first: then
                // this insert does nothing (PostgreSQL waits for that transaction) and the
                // second look finds its row.
                sqlx::query(
                    "INSERT INTO raters (id, study_id, name, token_sha, created_at, started_at,
                                         participant_id, panel_study_id, panel_session_id)
                     VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8)
                     ON CONFLICT DO NOTHING",
                )
                .bind(Uuid::now_v7())
                .bind(study_id)
                .bind(panel::rater_name(&entry.participant_id))
                .bind(&sha)
                .bind(now)
                .bind(&entry.participant_id)
                .bind(&entry.panel_study_id)
                .bind(&entry.panel_session_id)
                .execute(&mut *tx)
                .await?;
                found = sqlx::query_as(find).bind(&sha).fetch_optional(&mut *tx).await?;
            }
            let (id, name, revoked_at) =
                found.ok_or_else(|| StoreError::Conflict("the participant could not be recorded; please try again".into()))?;
            if revoked_at.is_some() {
                return Ok(PanelEntryOutcome::Revoked);
            }
            sqlx::query(
                "UPDATE raters SET
                   panel_study_id = COALESCE($2, panel_study_id),
                   panel_session_id = COALESCE($3, panel_session_id),
                   started_at = COALESCE(started_at, $4)
                 WHERE id = $1",
            )
            .bind(id)
            .bind(&entry.panel_study_id)
            .bind(&entry.panel_session_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(PanelEntryOutcome::Entered {
                rater: Rater { id, study_id, name },
                token,
            })
        })
    }

    /// Replaces a study's completion codes with `codes` (an outcome left out has none), all in
    /// one transaction.
    pub async fn set_completions(
        &self,
        study_id: Uuid,
        codes: &[(CompletionOutcome, Completion)],
    ) -> StoreResult<()> {
        dispatch!(self, pool, backend => {
            let mut tx = self.begin_write(pool).await?;
            lock_study!(tx, backend, study_id);
            sqlx::query("DELETE FROM panel_completions WHERE study_id = $1")
                .bind(study_id)
                .execute(&mut *tx)
                .await?;
            for (outcome, completion) in codes {
                sqlx::query(
                    "INSERT INTO panel_completions (study_id, outcome, code, redirect_url)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(study_id)
                .bind(outcome.as_str())
                .bind(&completion.code)
                .bind(&completion.redirect_url)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// A study's completion codes by outcome.
    pub async fn completions(
        &self,
        study_id: Uuid,
    ) -> StoreResult<Vec<(CompletionOutcome, Completion)>> {
        let rows: Vec<(String, String, Option<String>)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT outcome, code, redirect_url FROM panel_completions WHERE study_id = $1",
            )
            .bind(study_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|(outcome, code, redirect_url)| {
                CompletionOutcome::parse(&outcome).map(|o| (o, Completion { code, redirect_url }))
            })
            .collect())
    }

    /// The code a participant of `study_id` is given on reaching `outcome`, if the study has one.
    pub async fn completion(
        &self,
        study_id: Uuid,
        outcome: CompletionOutcome,
    ) -> StoreResult<Option<Completion>> {
        Ok(self
            .completions(study_id)
            .await?
            .into_iter()
            .find(|(o, _)| *o == outcome)
            .map(|(_, c)| c))
    }

    /// Sets a study's bonus rule.
    pub async fn set_bonus_rule(
        &self,
        study_id: Uuid,
        rule: BonusRule,
        now: i64,
    ) -> StoreResult<()> {
        dispatch!(self, pool, backend => {
            let mut tx = self.begin_write(pool).await?;
            lock_study!(tx, backend, study_id);
            sqlx::query(
                "INSERT INTO study_bonus_rules
                   (study_id, fixed_cents, per_judgement_cents, per_correct_cents, updated_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (study_id) DO UPDATE SET
                   fixed_cents = excluded.fixed_cents,
                   per_judgement_cents = excluded.per_judgement_cents,
                   per_correct_cents = excluded.per_correct_cents,
                   updated_at = excluded.updated_at",
            )
            .bind(study_id)
            .bind(rule.fixed_cents)
            .bind(rule.per_judgement_cents)
            .bind(rule.per_correct_cents)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// A study's bonus rule (all zero when none was set).
    pub async fn bonus_rule(&self, study_id: Uuid) -> StoreResult<BonusRule> {
        let row: Option<(i64, i64, i64)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT fixed_cents, per_judgement_cents, per_correct_cents
                 FROM study_bonus_rules WHERE study_id = $1",
            )
            .bind(study_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(rule_of(row))
    }

    /// What each panel participant of the study has earned under its rule beyond what earlier
    /// exports listed, recorded as one new batch in the same transaction (two exports at once
    /// take turns), so nothing is ever listed twice. Sorted by participant ID; participants
    /// owed nothing new are left out.
    pub async fn export_bonuses(
        &self,
        study_id: Uuid,
        now: i64,
    ) -> StoreResult<Vec<(String, i64)>> {
        dispatch!(self, pool, backend => {
            let mut tx = self.begin_write(pool).await?;
            // Two exports at once take turns: neither lists what the other recorded.
            lock_study!(tx, backend, study_id);
            let rule: Option<(i64, i64, i64)> = sqlx::query_as(
                "SELECT fixed_cents, per_judgement_cents, per_correct_cents
                 FROM study_bonus_rules WHERE study_id = $1",
            )
            .bind(study_id)
            .fetch_optional(&mut *tx)
            .await?;
            let rule = rule_of(rule);
            // Per participant: answered verdicts, right ones, and what earlier batches listed.
            let rows: Vec<(Uuid, String, i64, i64, i64)> = sqlx::query_as(
                "SELECT r.id, r.participant_id,
                        CAST(COALESCE(SUM(CASE WHEN j.verdict <> 'timeout' THEN 1 ELSE 0 END), 0) AS BIGINT),
                        CAST(COALESCE(SUM(CASE WHEN (j.verdict = 'correct' AND s.is_correct)
                                                 OR (j.verdict = 'wrong' AND NOT s.is_correct)
                                               THEN 1 ELSE 0 END), 0) AS BIGINT),
                        CAST((SELECT COALESCE(SUM(p.amount_cents), 0) FROM bonus_payments p
                               WHERE p.rater_id = r.id) AS BIGINT)
                 FROM raters r
                 LEFT JOIN judgements j ON j.rater_id = r.id
                 LEFT JOIN solutions s ON s.id = j.solution_id
                 WHERE r.study_id = $1 AND r.participant_id IS NOT NULL
                 GROUP BY r.id, r.participant_id
                 ORDER BY r.participant_id",
            )
            .bind(study_id)
            .fetch_all(&mut *tx)
            .await?;
            let batch = Uuid::now_v7();
            let mut listed = Vec::new();
            for (rater_id, participant_id, answered, correct, paid) in rows {
                let due = rule.earned_cents(answered, correct) - paid;
                if due <= 0 {
                    continue;
                }
                sqlx::query(
                    "INSERT INTO bonus_payments (id, study_id, batch_id, rater_id, amount_cents, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(Uuid::now_v7())
                .bind(study_id)
                .bind(batch)
                .bind(rater_id)
                .bind(due)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                listed.push((participant_id, due));
            }
            tx.commit().await?;
            Ok(listed)
        })
    }

    /// Applies a panel's submissions export: each participant it reports as returned or timed
    /// out is marked, their link revoked (their place is free again) and their unanswered
    /// item returned to the pool; their finished judgements stay. All or nothing: an ID that
    /// is not a participant of this study refuses the file, naming every such ID. Returns how
    /// many participants were newly marked (a second upload of the same file marks none).
    pub async fn apply_returns(
        &self,
        study_id: Uuid,
        submissions: &Submissions,
        now: i64,
    ) -> StoreResult<usize> {
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let known: Vec<(Uuid, String)> = sqlx::query_as(
                "SELECT id, participant_id FROM raters
                 WHERE study_id = $1 AND participant_id IS NOT NULL",
            )
            .bind(study_id)
            .fetch_all(&mut *tx)
            .await?;
            let rater_of = |id: &str| known.iter().find(|(_, p)| p == id).map(|(r, _)| *r);
            let mut unknown: Vec<&str> = submissions
                .participants
                .iter()
                .map(String::as_str)
                .filter(|id| rater_of(id).is_none())
                .collect();
            unknown.dedup();
            if !unknown.is_empty() {
                return Err(StoreError::Invalid(format!(
                    "nothing was changed: {} (is it this study's export?): {}",
                    if unknown.len() == 1 {
                        "1 ID in the file is not a participant of this study".to_string()
                    } else {
                        format!("{} IDs in the file are not participants of this study", unknown.len())
                    },
                    unknown.join(", ")
                )));
            }
            let mut marked = 0;
            for (participant, how) in &submissions.returned {
                let Some(rater_id) = rater_of(participant) else { continue };
                let changed = sqlx::query(
                    "UPDATE raters SET returned_at = $1, returned_as = $2,
                                       revoked_at = COALESCE(revoked_at, $1)
                     WHERE id = $3 AND returned_at IS NULL",
                )
                .bind(now)
                .bind(how.as_str())
                .bind(rater_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed > 0 {
                    marked += 1;
                    abandon_active_items!(tx, rater_id, study_id);
                }
            }
            tx.commit().await?;
            Ok(marked)
        })
    }

    /// Deletes one participant's data on their request: their judgements and qualification
    /// answers, their background answers and their panel IDs. Their judged solutions' slots return to the pool, so the
    /// study still reaches K judgements per solution, and every report, download and verifier
    /// training run afterwards is computed without them. The rater row stays, anonymised and
    /// revoked (their place has ended, and the deletion is accounted for), with exported
    /// bonuses, which are payment records. Logged in `data_deletions` with who asked for it.
    pub async fn delete_participant_data(
        &self,
        study_id: Uuid,
        participant_id: &str,
        deleted_by: &str,
        now: i64,
    ) -> StoreResult<DataDeletion> {
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let rater: Option<(Uuid,)> = sqlx::query_as(
                "SELECT id FROM raters WHERE study_id = $1 AND participant_id = $2",
            )
            .bind(study_id)
            .bind(participant_id)
            .fetch_optional(&mut *tx)
            .await?;
            let (rater_id,) = rater.ok_or(StoreError::NotFound("participant"))?;
            abandon_active_items!(tx, rater_id, study_id);
            let judged: Vec<(Uuid,)> = sqlx::query_as(
                "SELECT solution_id FROM assignments WHERE rater_id = $1 AND state = 'judged'",
            )
            .bind(rater_id)
            .fetch_all(&mut *tx)
            .await?;
            for (solution_id,) in &judged {
                sqlx::query(
                    "UPDATE study_solutions SET slots_taken = slots_taken - 1
                     WHERE study_id = $1 AND solution_id = $2",
                )
                .bind(study_id)
                .bind(solution_id)
                .execute(&mut *tx)
                .await?;
            }
            let judgements = sqlx::query("DELETE FROM judgements WHERE rater_id = $1")
                .bind(rater_id)
                .execute(&mut *tx)
                .await?
                .rows_affected() as i64;
            sqlx::query("DELETE FROM assignments WHERE rater_id = $1")
                .bind(rater_id)
                .execute(&mut *tx)
                .await?;
            let quality_answers = sqlx::query("DELETE FROM quality_attempts WHERE rater_id = $1")
                .bind(rater_id)
                .execute(&mut *tx)
                .await?
                .rows_affected() as i64;
            sqlx::query(
                "UPDATE raters SET name = $2, email = NULL, participant_id = NULL,
                        panel_study_id = NULL, panel_session_id = NULL,
                        screening_correct = NULL, screening_passed = NULL,
                        background_answers = NULL,
                        revoked_at = COALESCE(revoked_at, $3)
                 WHERE id = $1",
            )
            .bind(rater_id)
            .bind(format!("deleted participant {}", &rater_id.simple().to_string()[..8]))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO data_deletions
                   (id, study_id, rater_id, judgements, quality_answers, deleted_by, deleted_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(Uuid::now_v7())
            .bind(study_id)
            .bind(rater_id)
            .bind(judgements)
            .bind(quality_answers)
            .bind(deleted_by)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(DataDeletion {
                judgements,
                quality_answers,
                deleted_by: deleted_by.to_string(),
                deleted_at: now,
            })
        })
    }

    /// A study's data deletions, oldest first.
    pub async fn data_deletions(&self, study_id: Uuid) -> StoreResult<Vec<DataDeletion>> {
        let rows: Vec<(i64, i64, String, i64)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT judgements, quality_answers, deleted_by, deleted_at FROM data_deletions
                 WHERE study_id = $1 ORDER BY deleted_at, id",
            )
            .bind(study_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(judgements, quality_answers, deleted_by, deleted_at)| DataDeletion {
                    judgements,
                    quality_answers,
                    deleted_by,
                    deleted_at,
                },
            )
            .collect())
    }
}

/// A bonus rule row (fixed, per judgement, per correct), or no bonus without one.
fn rule_of(row: Option<(i64, i64, i64)>) -> BonusRule {
    row.map(
        |(fixed_cents, per_judgement_cents, per_correct_cents)| BonusRule {
            fixed_cents,
            per_judgement_cents,
            per_correct_cents,
        },
    )
    .unwrap_or_default()
}

//! What a study asks before items (see [`crate::intake`]): its consent text per version and
//! its question lists, and each participant's consent, comprehension attempts and background
//! answers. Every participant write is one conditional update, so a double submit or two tabs
//! can neither count an attempt twice nor overwrite an answer.

use uuid::Uuid;

use super::{Store, StoreError, StoreResult, dispatch, lock_study};
use crate::intake::{
    self, BackgroundAnswers, BackgroundQuestion, ComprehensionQuestion, IntakeAsked, IntakeDone,
    IntakeStep,
};

/// A study's consent text and questions, as the researcher wrote them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StudyIntake {
    /// The current consent text and its version; none without a consent page.
    pub consent: Option<(i64, String)>,
    /// The comprehension questions' source (empty: none).
    pub comprehension_source: String,
    /// The background questions' source (empty: none).
    pub background_source: String,
}

impl StudyIntake {
    /// The comprehension questions (checked when saved; a stored list that no longer reads
    /// is reported, not ignored).
    pub fn comprehension(&self) -> StoreResult<Vec<ComprehensionQuestion>> {
        intake::parse_comprehension(&self.comprehension_source).map_err(StoreError::Invalid)
    }

    /// The background questions.
    pub fn background(&self) -> StoreResult<Vec<BackgroundQuestion>> {
        intake::parse_background(&self.background_source).map_err(StoreError::Invalid)
    }
}

/// A participant's intake as the panel page and the downloads show it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParticipantIntake {
    /// The consent version accepted, and when (Unix ms).
    pub consent: Option<(i64, i64)>,
    /// When they declined consent.
    pub declined_at: Option<i64>,
    /// Failed comprehension attempts.
    pub comprehension_failures: i64,
    /// When they passed the comprehension check.
    pub comprehension_passed_at: Option<i64>,
    /// Their background answers (JSON object), once given.
    pub background_answers: Option<String>,
}

/// A study's and a participant's columns that decide the step (see [`intake::next_step`]):
/// the study's consent version, comprehension and background sources; the participant's
/// consent version, decline time, failed attempts, pass time and background time.
type StepRow = (
    Option<i64>,
    String,
    String,
    Option<i64>,
    Option<i64>,
    i64,
    Option<i64>,
    Option<i64>,
);

impl Store {
    /// A study's consent text and question lists.
    pub async fn study_intake(&self, study_id: Uuid) -> StoreResult<StudyIntake> {
        let row: Option<(Option<i64>, String, String, Option<String>)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT s.consent_version, s.comprehension_questions, s.background_questions, c.markdown
                 FROM studies s
                 LEFT JOIN consent_versions c ON c.study_id = s.id AND c.version = s.consent_version
                 WHERE s.id = $1",
            )
            .bind(study_id)
            .fetch_optional(pool)
            .await?
        });
        let (version, comprehension_source, background_source, markdown) =
            row.ok_or(StoreError::NotFound("study"))?;
        Ok(StudyIntake {
            consent: version.zip(markdown),
            comprehension_source,
            background_source,
        })
    }

    /// The consent text of one version (what a participant accepted).
    pub async fn consent_text(&self, study_id: Uuid, version: i64) -> StoreResult<String> {
        let row: Option<(String,)> = dispatch!(self, pool, _b => {
            sqlx::query_as("SELECT markdown FROM consent_versions WHERE study_id = $1 AND version = $2")
                .bind(study_id)
                .bind(version)
                .fetch_optional(pool)
                .await?
        });
        row.map(|(m,)| m)
            .ok_or(StoreError::NotFound("consent version"))
    }

    /// Saves a study's consent text and question lists (each checked; the message names the
    /// list and line). A changed consent text becomes a new version, the old ones are kept
    /// (participants who accepted one keep it); the same text keeps its version; no text
    /// removes the consent page. Returns the current consent version.
    pub async fn set_study_intake(
        &self,
        study_id: Uuid,
        consent: &str,
        comprehension: &str,
        background: &str,
        now: i64,
    ) -> StoreResult<Option<i64>> {
        let consent = intake::check_consent(consent).map_err(StoreError::Invalid)?;
        intake::parse_comprehension(comprehension)
            .map_err(|e| StoreError::Invalid(format!("comprehension questions: {e}")))?;
        intake::parse_background(background)
            .map_err(|e| StoreError::Invalid(format!("background questions: {e}")))?;
        dispatch!(self, pool, backend => {
            let mut tx = self.begin_write(pool).await?;
            lock_study!(tx, backend, study_id);
            let current: (Option<i64>, Option<String>, i64) = sqlx::query_as(
                "SELECT s.consent_version, c.markdown,
                        (SELECT COALESCE(MAX(version), 0) FROM consent_versions WHERE study_id = s.id)
                 FROM studies s
                 LEFT JOIN consent_versions c ON c.study_id = s.id AND c.version = s.consent_version
                 WHERE s.id = $1",
            )
            .bind(study_id)
            .fetch_one(&mut *tx)
            .await?;
            let version = match (&consent, current) {
                (None, _) => None,
                (Some(text), (Some(version), Some(old), _)) if *text == old => Some(version),
                (Some(text), (_, _, latest)) => {
                    sqlx::query(
                        "INSERT INTO consent_versions (study_id, version, markdown, created_at)
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(study_id)
                    .bind(latest + 1)
                    .bind(text)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    Some(latest + 1)
                }
            };
            sqlx::query(
                "UPDATE studies SET consent_version = $1, comprehension_questions = $2,
                                    background_questions = $3
                 WHERE id = $4",
            )
            .bind(version)
            .bind(comprehension.trim())
            .bind(background.trim())
            .bind(study_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(version)
        })
    }

    /// The step a participant is at before items; the server serves no item before
    /// [`IntakeStep::Ready`].
    pub async fn intake_step(&self, rater_id: Uuid, study_id: Uuid) -> StoreResult<IntakeStep> {
        let row: Option<StepRow> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT s.consent_version, s.comprehension_questions,
                        s.background_questions, r.consent_version, r.consent_declined_at,
                        r.comprehension_failures, r.comprehension_passed_at, r.background_at
                 FROM raters r JOIN studies s ON s.id = r.study_id
                 WHERE r.id = $1 AND r.study_id = $2",
            )
            .bind(rater_id)
            .bind(study_id)
            .fetch_optional(pool)
            .await?
        });
        let (
            study_consent,
            comprehension,
            background,
            consent_version,
            declined_at,
            failures,
            passed_at,
            background_at,
        ) = row.ok_or(StoreError::NotFound("rater"))?;
        Ok(intake::next_step(
            IntakeAsked {
                consent_version: study_consent,
                comprehension: !comprehension.is_empty(),
                background: !background.is_empty(),
            },
            IntakeDone {
                consent_version,
                consent_declined: declined_at.is_some(),
                comprehension_failures: failures,
                comprehension_passed: passed_at.is_some(),
                background_done: background_at.is_some(),
            },
        ))
    }

    /// Records a participant's consent to `version`, or their refusal (`accept` false). Only
    /// the study's current version can be accepted (a text changed while they read it is
    /// shown again: returns false); an answer already given stays.
    pub async fn answer_consent(
        &self,
        rater_id: Uuid,
        version: i64,
        accept: bool,
        now: i64,
    ) -> StoreResult<bool> {
        let sql = if accept {
            "UPDATE raters SET consent_version = $1, consented_at = $2
             WHERE id = $3 AND consent_version IS NULL AND consent_declined_at IS NULL
               AND (SELECT consent_version FROM studies WHERE id = raters.study_id) = $1"
        } else {
            "UPDATE raters SET consent_declined_at = $2
             WHERE id = $3 AND consent_version IS NULL AND consent_declined_at IS NULL
               AND (SELECT consent_version FROM studies WHERE id = raters.study_id) = $1"
        };
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let changed = sqlx::query(sql)
                .bind(version)
                .bind(now)
                .bind(rater_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(changed > 0)
        })
    }

    /// Records one comprehension attempt: passed, or one more failure (never more than
    /// [`intake::COMPREHENSION_ATTEMPTS`], never after a pass).
    pub async fn record_comprehension(
        &self,
        rater_id: Uuid,
        passed: bool,
        now: i64,
    ) -> StoreResult<()> {
        let sql = if passed {
            "UPDATE raters SET comprehension_passed_at = $3
             WHERE id = $1 AND comprehension_passed_at IS NULL AND comprehension_failures < $2"
        } else {
            "UPDATE raters SET comprehension_failures = comprehension_failures + 1
             WHERE id = $1 AND comprehension_passed_at IS NULL AND comprehension_failures < $2"
        };
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            let query = sqlx::query(sql)
                .bind(rater_id)
                .bind(intake::COMPREHENSION_ATTEMPTS);
            let query = if passed { query.bind(now) } else { query };
            query.execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Stores a participant's background answers, once (a second submit changes nothing).
    pub async fn record_background(
        &self,
        rater_id: Uuid,
        answers: &BackgroundAnswers,
        now: i64,
    ) -> StoreResult<()> {
        let json = serde_json::to_string(answers)
            .map_err(|e| StoreError::Invalid(format!("background answers: {e}")))?;
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            sqlx::query(
                "UPDATE raters SET background_answers = $1, background_at = $2
                 WHERE id = $3 AND background_at IS NULL",
            )
            .bind(json)
            .bind(now)
            .bind(rater_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}

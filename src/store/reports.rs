//! The tidy per-attempt table the researchers' reports and downloads are built from.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use uuid::Uuid;

use super::{Backend, Store, StoreError, StoreResult, dispatch};
use crate::answers::{self, TrialEvents};
use crate::domain::{ProverRole, Verdict, parse_stored};
use crate::export::RaterTally;
use crate::judging::{self, RequestedVerdict, TimingOutcome};
use crate::reports::{Attempt, StudySolution};

/// One judging attempt with everything an analysis needs, one row per judgement.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AttemptRow {
    /// The rater.
    pub rater_id: Uuid,
    /// The rater's name as invited.
    pub rater_name: String,
    /// The solution judged.
    pub solution_id: Uuid,
    /// Its problem.
    pub problem_id: Uuid,
    /// Label of the prover checkpoint that wrote it.
    pub checkpoint: String,
    /// That checkpoint's round.
    pub round: i64,
    /// The role it was written in.
    pub role: ProverRole,
    /// The grader's verdict against ground truth.
    pub is_correct: bool,
    /// The rater's verdict (`timeout` when the deadline passed).
    pub verdict: Verdict,
    /// When the item was served (Unix ms).
    pub served_at: i64,
    /// When the answer was due (Unix ms).
    pub deadline: i64,
    /// When the answer arrived (Unix ms); absent for a timeout recorded without an answer.
    pub submitted_at: Option<i64>,
    /// Server milliseconds from serving to the answer.
    pub server_elapsed_ms: i64,
    /// The page's own measure, as it sent it.
    pub client_elapsed_ms: Option<i64>,
    /// The first wrong step (1-based line) the rater flagged after answering "wrong".
    pub first_wrong_step: Option<i64>,
    /// How the attempt ended in time: in time, the page's timeout, a late answer, no answer.
    pub timing: TimingOutcome,
    /// How often the item was shown (1, plus reloads, new tabs and reopened links).
    pub times_shown: i64,
    /// Quality flags, `;`-separated: empty from the store, filled in by
    /// [`crate::export::add_flags`] for the downloads.
    pub attempt_flags: String,
    /// The panel's participant ID of a rater who entered through the panel link.
    pub participant_id: Option<String>,
    /// Why the rater's place ended early, when it did: `returned` or `timed_out` (as the panel
    /// reported), or `idle` (past the panel link's idle limit). Their judgements are kept.
    pub rater_returned: Option<String>,
    /// The rater's background answers, a JSON object keyed by question.
    pub rater_background: Option<String>,
    /// Confidence in the verdict, percent (confidence studies).
    pub confidence: Option<i64>,
    /// Probability that the solution is correct, percent (probability studies).
    pub probability: Option<i64>,
    /// The probability (a share) the answer gave the solution being correct: the probability,
    /// or the confidence on the verdict's side; empty for plain verdicts and timeouts.
    pub stated_probability: Option<f64>,
    /// The rater's justification.
    pub justification: Option<String>,
    /// Times the tab was hidden while the item ran (empty: the page sent no counts).
    pub hidden_count: Option<i64>,
    /// Milliseconds the tab was hidden, in all.
    pub hidden_ms: Option<i64>,
    /// Times the window lost focus.
    pub blur_count: Option<i64>,
    /// Copy and cut events.
    pub copy_count: Option<i64>,
    /// Paste events.
    pub paste_count: Option<i64>,
    /// Integrity flags, `;`-separated: `left_tab`, `lost_focus`, `copied`, `pasted`.
    pub integrity_flags: String,
    /// The item's time limit, ms (its arm when the study compares limits).
    pub time_limit_ms: i64,
    /// The item's serial position in the rater's session (1-based).
    pub position: Option<i64>,
}

/// The page's counts as stored (all five or none).
fn stored_events(
    hidden_count: Option<i64>,
    hidden_ms: Option<i64>,
    blur_count: Option<i64>,
    copy_count: Option<i64>,
    paste_count: Option<i64>,
) -> Option<TrialEvents> {
    Some(TrialEvents {
        hidden_count: hidden_count?,
        hidden_ms: hidden_ms.unwrap_or(0),
        blur_count: blur_count.unwrap_or(0),
        copy_count: copy_count.unwrap_or(0),
        paste_count: paste_count.unwrap_or(0),
    })
}

/// Rows are read by column name, so the query and the struct cannot drift apart silently.
impl<'r, R> sqlx::FromRow<'r, R> for AttemptRow
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let role: String = row.try_get("role")?;
        let verdict: String = row.try_get("verdict")?;
        let requested: Option<String> = row.try_get("requested_verdict")?;
        let requested: Option<RequestedVerdict> =
            requested.as_deref().map(parse_stored).transpose()?;
        let deadline: i64 = row.try_get("deadline")?;
        let submitted_at: Option<i64> = row.try_get("submitted_at")?;
        let verdict: Verdict = parse_stored(&verdict)?;
        let confidence: Option<i64> = row.try_get("confidence")?;
        let probability: Option<i64> = row.try_get("probability")?;
        let hidden_count: Option<i64> = row.try_get("hidden_count")?;
        let hidden_ms: Option<i64> = row.try_get("hidden_ms")?;
        let blur_count: Option<i64> = row.try_get("blur_count")?;
        let copy_count: Option<i64> = row.try_get("copy_count")?;
        let paste_count: Option<i64> = row.try_get("paste_count")?;
        let flags: Vec<&str> =
            stored_events(hidden_count, hidden_ms, blur_count, copy_count, paste_count)
                .map(|e| e.flags().into_iter().map(|f| f.as_str()).collect())
                .unwrap_or_default();
        Ok(AttemptRow {
            time_limit_ms: deadline - row.try_get::<i64, _>("served_at")?,
            position: row.try_get("position")?,
            confidence,
            probability,
            stated_probability: answers::stated_probability(verdict, confidence, probability),
            justification: row.try_get("justification")?,
            hidden_count,
            hidden_ms,
            blur_count,
            copy_count,
            paste_count,
            integrity_flags: flags.join(";"),
            rater_id: row.try_get("rater_id")?,
            rater_name: row.try_get("rater_name")?,
            solution_id: row.try_get("solution_id")?,
            problem_id: row.try_get("problem_id")?,
            checkpoint: row.try_get("checkpoint")?,
            round: row.try_get("round")?,
            role: parse_stored(&role)?,
            is_correct: row.try_get("is_correct")?,
            verdict,
            served_at: row.try_get("served_at")?,
            deadline,
            submitted_at,
            server_elapsed_ms: row.try_get("server_elapsed_ms")?,
            client_elapsed_ms: row.try_get("client_elapsed_ms")?,
            first_wrong_step: row.try_get("first_wrong_step")?,
            timing: judging::timing_outcome(requested, submitted_at, deadline),
            times_shown: row.try_get("times_shown")?,
            attempt_flags: String::new(),
            participant_id: row.try_get("participant_id")?,
            rater_returned: match row.try_get::<Option<String>, _>("returned_as")? {
                Some(how) => Some(how),
                None => row
                    .try_get::<Option<i64>, _>("idle_at")?
                    .map(|_| "idle".to_string()),
            },
            rater_background: row.try_get("background_answers")?,
        })
    }
}

/// The tidy-table rows of the judgements of study `$1` that also match `$filter`, in serving
/// order: one column list for the downloads and the drill-down.
macro_rules! attempts_sql {
    ($filter:literal) => {
        concat!(
            "SELECT j.rater_id, r.name AS rater_name, j.solution_id, s.problem_id, c.label AS checkpoint,
                    c.round, s.role, s.is_correct, j.verdict, j.served_at, j.deadline, j.submitted_at,
                    j.server_elapsed_ms, j.client_elapsed_ms, j.first_wrong_step, j.requested_verdict,
                    a.times_shown, r.participant_id, r.returned_as, r.idle_at, r.background_answers,
                    j.confidence, j.probability, j.justification, j.hidden_count, j.hidden_ms,
                    j.blur_count, j.copy_count, j.paste_count, j.position
             FROM judgements j
             JOIN assignments a ON a.id = j.assignment_id
             JOIN raters r ON r.id = j.rater_id
             JOIN solutions s ON s.id = j.solution_id
             JOIN checkpoints c ON c.id = s.checkpoint_id
             WHERE j.study_id = $1",
            $filter,
            " ORDER BY j.served_at, j.id"
        )
    };
}

/// Every judgement of one study (`$1`), for the downloads.
const ATTEMPTS_SQL: &str = attempts_sql!("");

/// One solution's judgements (`$1` study, `$2` solution), for the drill-down.
const SOLUTION_ATTEMPTS_SQL: &str = attempts_sql!(" AND j.solution_id = $2");

/// One judgement as the report reads it, and its insertion number (SQLite's rowid,
/// PostgreSQL's `seq`); `$2` is the last number already read.
const NEW_ATTEMPTS_SQLITE: &str =
    "SELECT j.rowid AS seq, j.rater_id, j.solution_id, s.problem_id, s.checkpoint_id,
            s.role, s.is_correct, j.verdict, j.server_elapsed_ms, j.first_wrong_step,
            j.confidence, j.probability, j.hidden_count, j.blur_count, j.copy_count, j.paste_count,
            j.served_at, j.deadline, j.position
     FROM judgements j JOIN solutions s ON s.id = j.solution_id
     WHERE j.study_id = $1 AND j.rowid > $2";
const NEW_ATTEMPTS_POSTGRES: &str =
    "SELECT j.seq, j.rater_id, j.solution_id, s.problem_id, s.checkpoint_id,
            s.role, s.is_correct, j.verdict, j.server_elapsed_ms, j.first_wrong_step,
            j.confidence, j.probability, j.hidden_count, j.blur_count, j.copy_count, j.paste_count,
            j.served_at, j.deadline, j.position
     FROM judgements j JOIN solutions s ON s.id = j.solution_id
     WHERE j.study_id = $1 AND j.seq > $2";

/// Decodes one row of `NEW_ATTEMPTS_*` by column name; role and verdict are parsed from the
/// row's own text (no copy per row).
fn report_attempt<'r, R>(
    row: &'r R,
    checkpoints: &HashMap<Uuid, (String, i64)>,
) -> StoreResult<(i64, Attempt)>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let solution_id: Uuid = row.try_get("solution_id")?;
    let checkpoint_id: Uuid = row.try_get("checkpoint_id")?;
    let (checkpoint, round) = checkpoints.get(&checkpoint_id).cloned().ok_or_else(|| {
        StoreError::Invalid(format!("judged solution {solution_id} has no checkpoint"))
    })?;
    let verdict: Verdict = parse_stored(row.try_get::<&str, _>("verdict")?)?;
    let events = stored_events(
        row.try_get("hidden_count")?,
        None,
        row.try_get("blur_count")?,
        row.try_get("copy_count")?,
        row.try_get("paste_count")?,
    );
    let attempt = Attempt {
        stated_probability: answers::stated_probability(
            verdict,
            row.try_get("confidence")?,
            row.try_get("probability")?,
        ),
        integrity_flagged: events.is_some_and(|e| !e.flags().is_empty()),
        time_limit_ms: row.try_get::<i64, _>("deadline")? - row.try_get::<i64, _>("served_at")?,
        position: row.try_get("position")?,
        rater_id: row.try_get("rater_id")?,
        solution_id,
        problem_id: row.try_get("problem_id")?,
        checkpoint,
        round,
        role: parse_stored(row.try_get::<&str, _>("role")?)?,
        is_correct: row.try_get("is_correct")?,
        verdict,
        server_elapsed_ms: row.try_get("server_elapsed_ms")?,
        first_wrong_step: row.try_get("first_wrong_step")?,
    };
    Ok((row.try_get("seq")?, attempt))
}

/// What one read of a study's attempts found.
struct Read {
    /// The study's revision (with every study's).
    revision: i64,
    /// The insertion number the rows were read after; `None`: every row was read.
    after: Option<i64>,
    /// The highest insertion number read (or `after`).
    last_seq: i64,
    /// On PostgreSQL after a partial read: the study's judgements in the same snapshot.
    count: Option<i64>,
    attempts: Arc<Vec<Attempt>>,
}

/// A study's report attempts as last read.
#[derive(Debug)]
struct Snapshot {
    /// The study's revision (with every study's) when read.
    revision: i64,
    /// The highest insertion number read.
    last_seq: i64,
    attempts: Arc<Vec<Attempt>>,
}

/// Studies whose attempts are kept: a million attempts take ~150 MB.
const SNAPSHOTS_KEPT: usize = 3;

/// The snapshots of the studies reported on last, most recent last.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshots(Arc<Mutex<Vec<(Uuid, Snapshot)>>>);

impl Snapshots {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Uuid, Snapshot)>> {
        // Each operation is one Vec insert or removal: a panic cannot leave it half-done.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Removes the study's snapshot, so that the caller's copy of the attempts is usually
    /// the only one and can be extended in place.
    fn take(&self, study_id: Uuid) -> Option<Snapshot> {
        let mut kept = self.lock();
        let at = kept.iter().position(|(id, _)| *id == study_id)?;
        Some(kept.remove(at).1)
    }

    fn keep(&self, study_id: Uuid, revision: i64, last_seq: i64, attempts: &Arc<Vec<Attempt>>) {
        let mut kept = self.lock();
        kept.retain(|(id, _)| *id != study_id);
        kept.push((
            study_id,
            Snapshot {
                revision,
                last_seq,
                attempts: attempts.clone(),
            },
        ));
        if kept.len() > SNAPSHOTS_KEPT {
            kept.remove(0);
        }
    }
}

impl Store {
    /// What the report's figures need of each judgement of `study_id`, in no particular order.
    ///
    /// The attempts of the studies reported on last are kept in memory: a request reads only
    /// the judgements inserted since (a million judgements take seconds to read, a report
    /// over them a fraction of one), in one consistent snapshot with the study's revision
    /// (bumped by triggers on every other change a report could see, see migration 19). A
    /// changed revision, or on PostgreSQL a count that the new rows do not explain (a
    /// judgement committed after a later one was read), reads the study afresh.
    pub async fn report_attempts(&self, study_id: Uuid) -> StoreResult<Arc<Vec<Attempt>>> {
        let cached = self.report_snapshots.take(study_id);
        let known = cached.as_ref().map(|c| (c.revision, c.last_seq));
        let read = self.read_attempts(study_id, known).await?;
        let attempts = match (cached, read.after) {
            (Some(snapshot), Some(_)) => {
                let mut attempts = snapshot.attempts;
                let total = attempts.len() + read.attempts.len();
                if read
                    .count
                    .is_some_and(|count| usize::try_from(count).ok() != Some(total))
                {
                    // A judgement numbered below the last one read committed after it.
                    let read = self.read_attempts(study_id, None).await?;
                    self.report_snapshots.keep(
                        study_id,
                        read.revision,
                        read.last_seq,
                        &read.attempts,
                    );
                    return Ok(read.attempts);
                }
                Arc::make_mut(&mut attempts).extend(read.attempts.iter().cloned());
                attempts
            }
            _ => read.attempts,
        };
        self.report_snapshots
            .keep(study_id, read.revision, read.last_seq, &attempts);
        Ok(attempts)
    }

    /// The study's revision and its judgements numbered above `known`'s last one when
    /// `known`'s revision is still current, else all of them; in one consistent snapshot.
    async fn read_attempts(&self, study_id: Uuid, known: Option<(i64, i64)>) -> StoreResult<Read> {
        dispatch!(self, pool, backend => {
            let mut tx = pool.begin().await?;
            if backend == Backend::Postgres {
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(&mut *tx)
                    .await?;
            }
            let revision: i64 = sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(revision), 0) AS BIGINT) FROM report_revisions
                 WHERE study_id = $1 OR study_id = $2",
            )
            .bind(study_id)
            .bind(Uuid::nil())
            .fetch_one(&mut *tx)
            .await?;
            let checkpoints: Vec<(Uuid, String, i64)> =
                sqlx::query_as("SELECT id, label, round FROM checkpoints")
                    .fetch_all(&mut *tx)
                    .await?;
            let checkpoints: HashMap<Uuid, (String, i64)> = checkpoints
                .into_iter()
                .map(|(id, label, round)| (id, (label, round)))
                .collect();
            let after = known.filter(|(r, _)| *r == revision).map(|(_, last)| last);
            let mut attempts = Vec::new();
            let mut last_seq = after.unwrap_or(0);
            {
                let mut rows = sqlx::query(backend.pick(NEW_ATTEMPTS_SQLITE, NEW_ATTEMPTS_POSTGRES))
                    .bind(study_id)
                    .bind(after.unwrap_or(i64::MIN))
                    .fetch(&mut *tx);
                while let Some(row) = poll_fn(|cx| rows.as_mut().poll_next(cx)).await {
                    let (seq, attempt) = report_attempt(&row?, &checkpoints)?;
                    last_seq = last_seq.max(seq);
                    attempts.push(attempt);
                }
            }
            // SQLite has one writer, so a new rowid is above every committed one; a
            // PostgreSQL sequence value is not, so the rows are counted there.
            let count: Option<i64> = if after.is_some() && backend == Backend::Postgres {
                Some(
                    sqlx::query_scalar("SELECT COUNT(*) FROM judgements WHERE study_id = $1")
                        .bind(study_id)
                        .fetch_one(&mut *tx)
                        .await?,
                )
            } else {
                None
            };
            tx.commit().await?;
            Ok(Read { revision, after, last_seq, count, attempts: Arc::new(attempts) })
        })
    }

    /// Every solution of `study_id`, judged or not, for the per-solution drill-down.
    pub async fn study_solutions(&self, study_id: Uuid) -> StoreResult<Vec<StudySolution>> {
        let rows: Vec<(Uuid, Uuid, String, i64, String, bool)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT s.id, s.problem_id, c.label, c.round, s.role, s.is_correct
                 FROM study_solutions ss
                 JOIN solutions s ON s.id = ss.solution_id
                 JOIN checkpoints c ON c.id = s.checkpoint_id
                 WHERE ss.study_id = $1",
            )
            .bind(study_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(
                |(solution_id, problem_id, checkpoint, round, role, is_correct)| {
                    Ok(StudySolution {
                        solution_id,
                        problem_id,
                        checkpoint,
                        round,
                        role: parse_stored(&role)?,
                        is_correct,
                    })
                },
            )
            .collect()
    }

    /// One solution of `study_id` with everything its judgements hold; `None` when the study
    /// does not judge it.
    pub async fn study_solution(
        &self,
        study_id: Uuid,
        solution_id: Uuid,
    ) -> StoreResult<Option<(StudySolution, Vec<AttemptRow>)>> {
        let Some(solution) = self
            .study_solutions(study_id)
            .await?
            .into_iter()
            .find(|s| s.solution_id == solution_id)
        else {
            return Ok(None);
        };
        let rows: Vec<AttemptRow> = dispatch!(self, pool, _b => {
            sqlx::query_as(SOLUTION_ATTEMPTS_SQL)
                .bind(study_id)
                .bind(solution_id)
                .fetch_all(pool)
                .await?
        });
        Ok(Some((solution, rows)))
    }

    /// The names of `study_id`'s raters, for the report page.
    pub async fn rater_names(&self, study_id: Uuid) -> StoreResult<HashMap<Uuid, String>> {
        let rows: Vec<(Uuid, String)> = dispatch!(self, pool, _b => {
            sqlx::query_as("SELECT id, name FROM raters WHERE study_id = $1")
                .bind(study_id)
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().collect())
    }

    /// Every judgement of `study_id` as tidy-table rows in serving order (time, then id), sent
    /// to `pages` in pages of `page_size` as the database streams them (one statement, so one consistent snapshot), for downloads that
    /// should not hold a whole study in memory. Stops quietly when the receiver goes away.
    pub async fn send_attempt_pages(
        &self,
        study_id: Uuid,
        page_size: usize,
        pages: mpsc::Sender<Vec<AttemptRow>>,
    ) -> StoreResult<()> {
        let page_size = page_size.max(1);
        dispatch!(self, pool, backend => {
            let mut tx = pool.begin().await?;
            if backend == Backend::Postgres {
                // Left to itself PostgreSQL sorts the whole study before the first row (cheaper
                // in total than walking the serving-order index over every row); a download
                // should start at once.
                sqlx::query("SET LOCAL enable_sort = off").execute(&mut *tx).await?;
            }
            let mut rows = sqlx::query_as::<_, AttemptRow>(ATTEMPTS_SQL).bind(study_id).fetch(&mut *tx);
            let mut page = Vec::with_capacity(page_size);
            while let Some(row) = poll_fn(|cx| rows.as_mut().poll_next(cx)).await {
                page.push(row?);
                if page.len() == page_size
                    && pages.send(std::mem::replace(&mut page, Vec::with_capacity(page_size))).await.is_err()
                {
                    return Ok(());
                }
            }
            if !page.is_empty() {
                let _ = pages.send(page).await;
            }
        });
        Ok(())
    }

    /// Per rater of `study_id`: answered judgements and those agreeing with ground truth.
    pub async fn rater_tallies(&self, study_id: Uuid) -> StoreResult<Vec<RaterTally>> {
        let rows: Vec<(Uuid, i64, i64)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT j.rater_id,
                        COALESCE(SUM(CASE WHEN (j.verdict = 'correct' AND s.is_correct)
                                            OR (j.verdict = 'wrong' AND NOT s.is_correct)
                                       THEN 1 ELSE 0 END), 0),
                        COALESCE(SUM(CASE WHEN j.verdict = 'timeout' THEN 0 ELSE 1 END), 0)
                 FROM judgements j JOIN solutions s ON s.id = j.solution_id
                 WHERE j.study_id = $1
                 GROUP BY j.rater_id",
            )
            .bind(study_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(rater_id, right, answered)| RaterTally {
                rater_id,
                right: u64::try_from(right).unwrap_or(0),
                answered: u64::try_from(answered).unwrap_or(0),
            })
            .collect())
    }

    /// The model's solve rate per problem of `study_id`: the share of the study's helpful
    /// solutions to it that the grader marked correct (the paper's difficulty measure).
    pub async fn problem_solve_rates(&self, study_id: Uuid) -> StoreResult<HashMap<Uuid, f64>> {
        let rows: Vec<(Uuid, bool)> = dispatch!(self, pool, _b => {
            sqlx::query_as(
                "SELECT s.problem_id, s.is_correct
                 FROM study_solutions ss JOIN solutions s ON s.id = ss.solution_id
                 WHERE ss.study_id = $1 AND s.role = 'helpful'",
            )
            .bind(study_id)
            .fetch_all(pool)
            .await?
        });
        let mut tallies: HashMap<Uuid, (u64, u64)> = HashMap::new();
        for (problem, correct) in rows {
            let entry = tallies.entry(problem).or_default();
            entry.1 += 1;
            if correct {
                entry.0 += 1;
            }
        }
        Ok(tallies
            .into_iter()
            .map(|(p, (k, n))| (p, k as f64 / n as f64))
            .collect())
    }
}

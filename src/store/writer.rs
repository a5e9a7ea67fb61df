//! Group commit for the judging hot path. Serving an item and storing a judgement each need a
//! short write transaction; with many raters, the fixed cost of a transaction (round trips to
//! the database, and on SQLite the single writer) dominates. Writer tasks therefore take every
//! judging write waiting in their queue and apply it in one transaction, with multi-row
//! statements where the rows are independent, and answer each caller only after the commit —
//! an acknowledged write is as durable as before. If a batch fails, each operation is re-run
//! alone so one bad operation cannot fail the others.

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::AssertSqlSafe;
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use super::{Store, StoreError, StoreResult, dispatch};
use crate::answers::Answer;
use crate::domain::Verdict;
use crate::judging::{self, Stratum};

/// Most operations applied in one transaction.
const MAX_BATCH: usize = 128;
/// Operations that may wait for a writer.
const QUEUE_CAPACITY: usize = 4096;

/// A request to give a rater a new item (see `Store::serve_item`).
#[derive(Debug, Clone)]
pub(crate) struct ClaimRequest {
    pub rater_id: Uuid,
    pub study_id: Uuid,
    /// Strata in the order to try them.
    pub strata: Vec<Stratum>,
    /// Judgements wanted per solution.
    pub wanted: i64,
    pub now: i64,
    pub time_limit_ms: i64,
    /// The new item's serial position in the rater's session (1-based).
    pub position: i64,
    /// Random starting point in the study's shuffle order.
    pub random_start: i64,
    /// Abandon other raters' items whose deadline is before this.
    pub sweep_cutoff: Option<i64>,
    /// The rater's own item that ran out: (assignment, solution, served_at, deadline). Stored
    /// as a timeout within the study's grace; after it, abandoned like any other.
    pub expired_own: Option<(Uuid, Uuid, i64, i64)>,
    /// The study's grace after a deadline (see `judging::answer_refused`).
    pub grace_ms: i64,
}

/// A new item given to a rater.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claimed {
    pub assignment_id: Uuid,
    pub solution_id: Uuid,
    pub deadline: i64,
}

/// A rater's answer (see `Store::submit_judgement`), checked against the study's rules.
#[derive(Debug, Clone)]
pub(crate) struct JudgeRequest {
    pub rater_id: Uuid,
    pub assignment_id: Uuid,
    pub answer: Answer,
    pub client_elapsed_ms: Option<i64>,
    pub now: i64,
}

type ClaimReply = oneshot::Sender<StoreResult<Option<Claimed>>>;
type JudgeReply = oneshot::Sender<StoreResult<Option<Verdict>>>;

pub(crate) enum WriteOp {
    Claim(ClaimRequest, ClaimReply),
    Judge(JudgeRequest, JudgeReply),
}

/// Handle to this process's judging writers.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<WriteOp>,
}

/// The queue end shared by the writer tasks.
pub(crate) type SharedQueue = Arc<Mutex<mpsc::Receiver<WriteOp>>>;

impl Writer {
    /// A writer whose tasks are started by [`Writer::start`] once the store exists.
    pub(crate) fn channel() -> (Writer, SharedQueue) {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        (Writer { queue }, Arc::new(Mutex::new(receiver)))
    }

    /// Starts `tasks` writer tasks for `store` (one for SQLite, whose writes are serialised
    /// anyway; several for PostgreSQL).
    pub(crate) fn start(store: &Store, receiver: SharedQueue, tasks: usize) {
        for _ in 0..tasks {
            let (store, receiver) = (store.clone(), receiver.clone());
            tokio::spawn(async move {
                loop {
                    let batch = {
                        let mut receiver = receiver.lock().await;
                        let Some(first) = receiver.recv().await else {
                            return;
                        };
                        let mut batch = vec![first];
                        while batch.len() < MAX_BATCH {
                            match receiver.try_recv() {
                                Ok(op) => batch.push(op),
                                Err(_) => break,
                            }
                        }
                        batch
                    };
                    store.apply_ops(batch).await;
                }
            });
        }
    }

    /// Gives a rater a new item; `None` when nothing is left for them.
    pub(crate) async fn claim(&self, request: ClaimRequest) -> StoreResult<Option<Claimed>> {
        self.submit(|reply| WriteOp::Claim(request, reply)).await
    }

    /// Stores an answer if the assignment is still active; `None` when it is not.
    pub(crate) async fn judge(&self, request: JudgeRequest) -> StoreResult<Option<Verdict>> {
        self.submit(|reply| WriteOp::Judge(request, reply)).await
    }

    /// Queues an operation and waits until its batch is committed (or failed).
    async fn submit<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<StoreResult<T>>) -> WriteOp,
    ) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(op(reply))
            .await
            .map_err(|_| sqlx::Error::WorkerCrashed)?;
        answer.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }
}

/// Inside a `dispatch!` body holding the write transaction `$tx`: abandons the rater's item
/// `$assignment` if it is still active and gives its slot back to the pool; evaluates to
/// whether it did. Shared by serving (a rater's own item past its grace) and answering (an
/// answer past the grace).
macro_rules! abandon_item {
    ($tx:ident, $study:expr, $assignment:expr, $solution:expr) => {{
        let abandoned = sqlx::query(
            "UPDATE assignments SET state = 'abandoned' WHERE id = $1 AND state = 'active'",
        )
        .bind($assignment)
        .execute(&mut *$tx)
        .await?
        .rows_affected()
            == 1;
        if abandoned {
            sqlx::query(
                "UPDATE study_solutions SET slots_taken = slots_taken - 1
                 WHERE study_id = $1 AND solution_id = $2",
            )
            .bind($study)
            .bind($solution)
            .execute(&mut *$tx)
            .await?;
        }
        abandoned
    }};
}
pub(super) use abandon_item;

/// `($1, $2), ($3, $4), …` for `rows` rows of `columns` parameters.
pub(super) fn value_rows(rows: usize, columns: usize) -> String {
    value_rows_with(rows, columns, "")
}

/// Like [`value_rows`], with constant SQL (e.g. `, 'active'`) closing each row.
fn value_rows_with(rows: usize, columns: usize, tail: &str) -> String {
    (0..rows)
        .map(|row| {
            let params: Vec<String> = (1..=columns)
                .map(|c| format!("${}", row * columns + c))
                .collect();
            format!("({}{tail})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    async fn apply_ops(&self, batch: Vec<WriteOp>) {
        let mut claims = Vec::new();
        let mut judges = Vec::new();
        for op in batch {
            match op {
                WriteOp::Claim(request, reply) => claims.push((request, reply)),
                WriteOp::Judge(request, reply) => judges.push((request, reply)),
            }
        }
        let claim_requests: Vec<ClaimRequest> = claims.iter().map(|(r, _)| r.clone()).collect();
        let judge_requests: Vec<JudgeRequest> = judges.iter().map(|(r, _)| r.clone()).collect();
        match self.apply_batch(&claim_requests, &judge_requests).await {
            Ok((claimed, judged)) => {
                for ((_, reply), result) in claims.into_iter().zip(claimed) {
                    let _ = reply.send(result);
                }
                for ((_, reply), result) in judges.into_iter().zip(judged) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) if claim_requests.len() + judge_requests.len() > 1 => {
                tracing::debug!(error = %e, "batch failed; applying its operations one by one");
                for (request, reply) in claims {
                    let result = self.apply_batch(std::slice::from_ref(&request), &[]).await;
                    let _ = reply.send(result.and_then(|(mut c, _)| c.pop().unwrap_or(Ok(None))));
                }
                for (request, reply) in judges {
                    let result = self.apply_batch(&[], &[request]).await;
                    let _ = reply.send(result.map(|(_, mut j)| j.pop().flatten()));
                }
            }
            // A batch of one operation: it gets the error itself.
            Err(e) => {
                if let Some((_, reply)) = claims.pop() {
                    let _ = reply.send(Err(e));
                } else if let Some((_, reply)) = judges.pop() {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }

    /// Applies judgements first, then claims, in one transaction. Returns per claim its new
    /// item (or `None`: nothing left for that rater; or an error for that claim alone) and
    /// per judgement its stored verdict (`None`: the assignment was not active).
    #[allow(clippy::type_complexity)]
    async fn apply_batch(
        &self,
        claims: &[ClaimRequest],
        judges: &[JudgeRequest],
    ) -> StoreResult<(Vec<StoreResult<Option<Claimed>>>, Vec<Option<Verdict>>)> {
        dispatch!(self, pool, backend => {
            let mut tx = self.begin_write(pool).await?;

            // 1. Answers: every still-active assignment named whose grace has not passed moves
            //    to `judged`, and its judgement row is written, in two statements for the whole
            //    batch. (An answer after the grace is refused whatever the reclaim has done.)
            let mut verdicts: Vec<Option<Verdict>> = vec![None; judges.len()];
            if !judges.is_empty() {
                let sql = format!(
                    "UPDATE assignments SET state = 'judged'
                     FROM (VALUES {}) AS answer
                     WHERE assignments.state = 'active' AND assignments.id = answer.column1
                       AND assignments.rater_id = answer.column2
                       AND assignments.deadline
                           + (SELECT s.reclaim_grace_ms FROM studies s WHERE s.id = assignments.study_id)
                           >= answer.column3
                     RETURNING assignments.id, assignments.study_id, assignments.solution_id,
                               assignments.served_at, assignments.deadline, assignments.position",
                    value_rows(judges.len(), 3)
                );
                let mut query = sqlx::query_as::<_, (Uuid, Uuid, Uuid, i64, i64, Option<i64>)>(AssertSqlSafe(sql));
                for judge in judges {
                    query = query.bind(judge.assignment_id).bind(judge.rater_id).bind(judge.now);
                }
                let closed = query.fetch_all(&mut *tx).await?;
                if !closed.is_empty() {
                    let sql = format!("{INSERT_JUDGEMENTS} {}", value_rows(closed.len(), JUDGEMENT_COLUMNS));
                    let mut insert = sqlx::query(AssertSqlSafe(sql));
                    for (assignment_id, study_id, solution_id, served_at, deadline, position) in closed {
                        let Some(index) = judges.iter().position(|j| j.assignment_id == assignment_id) else {
                            return Err(StoreError::Invalid("a judged assignment was not in the batch".into()));
                        };
                        let judge = &judges[index];
                        let answer = &judge.answer;
                        let events = answer.events.unwrap_or_default();
                        let has_events = answer.events.is_some();
                        let verdict = judging::recorded_verdict(answer.requested, judge.now, deadline);
                        verdicts[index] = Some(verdict);
                        insert = insert
                            .bind(Uuid::now_v7())
                            .bind(assignment_id)
                            .bind(study_id)
                            .bind(judge.rater_id)
                            .bind(solution_id)
                            .bind(verdict.as_str())
                            .bind(served_at)
                            .bind(deadline)
                            .bind(Some(judge.now))
                            .bind(judging::server_elapsed_ms(served_at, judge.now, deadline, verdict))
                            .bind(judging::recorded_client_elapsed(judge.client_elapsed_ms))
                            .bind(Some(answer.requested.as_str()))
                            .bind(answer.confidence)
                            .bind(answer.probability)
                            .bind(answer.justification.as_deref())
                            .bind(has_events.then_some(events.hidden_count))
                            .bind(has_events.then_some(events.hidden_ms))
                            .bind(has_events.then_some(events.blur_count))
                            .bind(has_events.then_some(events.copy_count))
                            .bind(has_events.then_some(events.paste_count))
                            .bind(position);
                    }
                    insert.execute(&mut *tx).await?;
                }
            }

            // 2. Raters whose own item ran out: stored as a timeout (unless an answer won), or,
            //    once the grace has passed too, abandoned and its slot given back, the same as
            //    the sweep below would, so the outcome never depends on when that runs.
            for claim in claims {
                let Some((assignment_id, solution_id, served_at, deadline)) = claim.expired_own else { continue };
                if judging::answer_refused(claim.now, deadline, claim.grace_ms) {
                    abandon_item!(tx, claim.study_id, assignment_id, solution_id);
                    continue;
                }
                let closed: Option<(Option<i64>,)> = sqlx::query_as(
                    "UPDATE assignments SET state = 'judged' WHERE id = $1 AND state = 'active' RETURNING position",
                )
                .bind(assignment_id)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((position,)) = closed {
                    // No answer arrived: `submitted_at`, the client's time and the requested
                    // verdict stay empty.
                    let sql = format!("{INSERT_JUDGEMENTS} {}", value_rows(1, JUDGEMENT_COLUMNS));
                    sqlx::query(AssertSqlSafe(sql))
                        .bind(Uuid::now_v7())
                        .bind(assignment_id)
                        .bind(claim.study_id)
                        .bind(claim.rater_id)
                        .bind(solution_id)
                        .bind(Verdict::Timeout.as_str())
                        .bind(served_at)
                        .bind(deadline)
                        .bind(None::<i64>)
                        .bind(judging::server_elapsed_ms(served_at, claim.now, deadline, Verdict::Timeout))
                        .bind(None::<i64>)
                        .bind(None::<&str>)
                        .bind(None::<i64>)
                        .bind(None::<i64>)
                        .bind(None::<&str>)
                        .bind(None::<i64>)
                        .bind(None::<i64>)
                        .bind(None::<i64>)
                        .bind(None::<i64>)
                        .bind(None::<i64>)
                        .bind(position)
                        .execute(&mut *tx)
                        .await?;
                }
            }

            // 3. Abandoned items of other raters give their slot back (once per study).
            let mut swept = HashSet::new();
            for claim in claims {
                let Some(cutoff) = claim.sweep_cutoff else { continue };
                if !swept.insert(claim.study_id) {
                    continue;
                }
                let sweep = backend.pick(
                    "UPDATE assignments SET state = 'abandoned'
                     WHERE study_id = $1 AND state = 'active' AND deadline < $2
                     RETURNING solution_id",
                    "UPDATE assignments SET state = 'abandoned'
                     WHERE id IN (SELECT id FROM assignments
                                  WHERE study_id = $1 AND state = 'active' AND deadline < $2
                                  FOR UPDATE SKIP LOCKED)
                     RETURNING solution_id",
                );
                // (The requesting raters' own items that ran out were settled in step 2.)
                let freed: Vec<(Uuid,)> =
                    sqlx::query_as(sweep).bind(claim.study_id).bind(cutoff).fetch_all(&mut *tx).await?;
                for (solution_id,) in freed {
                    sqlx::query(
                        "UPDATE study_solutions SET slots_taken = slots_taken - 1
                         WHERE study_id = $1 AND solution_id = $2",
                    )
                    .bind(claim.study_id)
                    .bind(solution_id)
                    .execute(&mut *tx)
                    .await?;
                }
            }

            // 4. New items: a slot of an available solution per claim, trying strata in the
            //    rater's order; the conditional update re-checks the quota under the row lock.
            let mut results: Vec<StoreResult<Option<Claimed>>> = Vec::with_capacity(claims.len());
            let mut new_assignments: Vec<(Claimed, &ClaimRequest, Uuid, Stratum)> = Vec::new();
            let mut raters_seen = HashSet::new();
            for claim in claims {
                if !raters_seen.insert(claim.rater_id) {
                    // Two requests of one rater in one batch (two tabs): the other wins; this one
                    // retries and will find that item.
                    results.push(Err(StoreError::Busy));
                    continue;
                }
                let mut claimed = None;
                'strata: for stratum in &claim.strata {
                    for from_key in [claim.random_start, 0] {
                        let row: Option<(Uuid, Uuid)> = sqlx::query_as(backend.pick(CLAIM_SQLITE, CLAIM_POSTGRES))
                        .bind(claim.study_id)
                        .bind(stratum.checkpoint_id)
                        .bind(stratum.is_correct)
                        .bind(from_key)
                        .bind(claim.wanted)
                        .bind(claim.rater_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                        if let Some((solution_id, problem_id)) = row {
                            let item = Claimed {
                                assignment_id: Uuid::new_v4(),
                                solution_id,
                                deadline: judging::deadline_for(claim.now, claim.time_limit_ms),
                            };
                            new_assignments.push((item, claim, problem_id, *stratum));
                            claimed = Some(item);
                            break 'strata;
                        }
                    }
                }
                results.push(Ok(claimed));
            }
            if !new_assignments.is_empty() {
                let sql = format!(
                    "INSERT INTO assignments (id, study_id, rater_id, solution_id, problem_id, checkpoint_id, is_correct,
                                              served_at, deadline, position, state)
                     VALUES {}",
                    value_rows_with(new_assignments.len(), 10, ", 'active'")
                );
                let mut insert = sqlx::query(AssertSqlSafe(sql));
                for (item, claim, problem_id, stratum) in &new_assignments {
                    insert = insert
                        .bind(item.assignment_id)
                        .bind(claim.study_id)
                        .bind(claim.rater_id)
                        .bind(item.solution_id)
                        .bind(*problem_id)
                        .bind(stratum.checkpoint_id)
                        .bind(stratum.is_correct)
                        .bind(claim.now)
                        .bind(item.deadline)
                        .bind(claim.position);
                }
                insert.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok((results, verdicts))
        })
    }
}

/// Takes one slot of the first available solution of a stratum for a rater (a solution with a
/// free slot, of a problem the rater has not had), starting at a point in the shuffle order.
/// `$1` study, `$2` checkpoint, `$3` correctness, `$4` start key, `$5` quota, `$6` rater.
/// `$lock` closes the candidate subquery (PostgreSQL's row-locking clause, or nothing).
macro_rules! claim_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE study_solutions SET slots_taken = slots_taken + 1
             WHERE study_id = $1 AND slots_taken < $5 AND solution_id = (
                 SELECT ss.solution_id FROM study_solutions ss
                 WHERE ss.study_id = $1 AND ss.checkpoint_id = $2 AND ss.is_correct = $3
                   AND ss.shuffle_key >= $4 AND ss.slots_taken < $5
                   AND NOT EXISTS (SELECT 1 FROM assignments a
                                   WHERE a.study_id = $1 AND a.rater_id = $6 AND a.problem_id = ss.problem_id)
                 ORDER BY ss.shuffle_key LIMIT 1",
            $lock,
            ")
             RETURNING solution_id, problem_id"
        )
    };
}

/// The claim on SQLite, whose single writer serialises claims anyway.
const CLAIM_SQLITE: &str = claim_sql!("");

/// The claim on PostgreSQL, where concurrent transactions claim at once: rows another
/// transaction is claiming are skipped instead of waited for (no lock queues, no deadlocks).
const CLAIM_POSTGRES: &str = claim_sql!(" FOR UPDATE SKIP LOCKED");

/// Inserts judgements; the `VALUES` rows ([`JUDGEMENT_COLUMNS`] parameters each) are appended.
const INSERT_JUDGEMENTS: &str = "INSERT INTO judgements (id, assignment_id, study_id, rater_id, solution_id, verdict,
                                                         served_at, deadline, submitted_at, server_elapsed_ms,
                                                         client_elapsed_ms, requested_verdict, confidence,
                                                         probability, justification, hidden_count, hidden_ms,
                                                         blur_count, copy_count, paste_count, position)
                                 VALUES";

/// Columns [`INSERT_JUDGEMENTS`] names.
const JUDGEMENT_COLUMNS: usize = 21;

#[cfg(test)]
mod tests {
    use super::{value_rows, value_rows_with};

    #[test]
    fn placeholders_number_rows_in_order() {
        assert_eq!(value_rows(2, 2), "($1, $2), ($3, $4)");
        assert_eq!(value_rows(1, 3), "($1, $2, $3)");
        assert_eq!(value_rows_with(2, 1, ", 'x'"), "($1, 'x'), ($2, 'x')");
    }
}

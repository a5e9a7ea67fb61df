//! The worker runtime: claims jobs from the database queue, runs them with the handler
//! registered for their kind, keeps their lease alive and records how they ended.
//!
//! One job at a time per worker: the work (generation, training) is CPU- or GPU-bound, so
//! more workers (processes, machines) rather than more jobs per worker is how it scales.
//! While a handler runs, a heartbeat renews the lease every third of its length; if renewal
//! finds the lease gone (cancelled, or taken over after this worker stalled) the job is
//! stopped: its future is dropped and the stop flag tells blocking compute threads to return.
//! A handler that panics counts as a failed attempt that may be retried. On shutdown the
//! running job is stopped and handed back to the queue without counting the attempt.

pub mod game;
pub mod generation;
pub mod verifier;
use std::collections::BTreeMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinError;
use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::{JobKind, JobState};
use crate::store::jobs::{ClaimedJob, Lease};
use crate::store::{Store, StoreError};

/// What a handler returns: a boxed future, so handlers of different kinds share one trait
/// object type.
pub type JobFuture = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;

/// Runs jobs of one kind. `run` is called once per claim (a retried job runs again, and
/// should skip the chunks [`Store::chunks_done`] lists).
pub trait JobHandler: Send + Sync + 'static {
    /// Does the job; progress and results are written through `ctx`, fenced by its lease.
    fn run(&self, job: ClaimedJob, ctx: JobContext) -> JobFuture;
}

/// How a job attempt can fail; decides whether the queue retries it.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A transient problem (database outage, busy resource): the job is queued again while
    /// attempts remain.
    #[error("{0}")]
    Retryable(String),
    /// The job cannot succeed as asked (bad parameters, missing model files): failed for good.
    #[error("{0}")]
    Fatal(String),
    /// The job is no longer this worker's (cancelled or taken over): nothing more is written.
    #[error("the job's lease was lost")]
    LeaseLost,
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LeaseLost => JobError::LeaseLost,
            e if is_transient(&e) => JobError::Retryable(e.to_string()),
            e => JobError::Fatal(e.to_string()),
        }
    }
}

impl From<crate::ml::ModelError> for JobError {
    /// A model that was asked to stop (lease lost, shutdown) ends the attempt quietly; any
    /// other model failure (bad files, shapes) will not go away on retry.
    fn from(e: crate::ml::ModelError) -> Self {
        match e {
            crate::ml::ModelError::Stopped => JobError::LeaseLost,
            e => JobError::Fatal(e.to_string()),
        }
    }
}

/// Store errors a later attempt may not meet: races the store itself calls retryable, and an
/// unreachable or overloaded database.
fn is_transient(e: &StoreError) -> bool {
    e.is_retryable()
        || matches!(
            e,
            StoreError::Database(
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
            )
        )
}

/// What a running handler gets besides its job: the store, its lease, the clock, and the
/// stop flag.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The database, for the handler's fenced writes.
    pub store: Store,
    /// The lease to fence writes with.
    pub lease: Lease,
    /// Server time, for timestamps the handler writes.
    pub clock: Clock,
    /// Set when the job must stop: its lease was lost, or the worker is shutting down.
    lease_lost: Arc<AtomicBool>,
}

impl JobContext {
    /// A context for running `lease`'s job outside a [`Worker`] (tests, one-off commands).
    pub fn new(store: Store, lease: Lease, clock: Clock) -> JobContext {
        JobContext {
            store,
            lease,
            clock,
            lease_lost: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Records progress (units done of total) for the jobs page; fails with
    /// [`JobError::LeaseLost`] once the job is no longer this worker's.
    pub async fn progress(&self, done: i64, total: i64) -> Result<(), JobError> {
        self.check()?;
        match self.store.set_progress(&self.lease, done, total).await {
            Err(StoreError::LeaseLost) => {
                self.lease_lost.store(true, Ordering::SeqCst);
                Err(JobError::LeaseLost)
            }
            other => other.map_err(JobError::from),
        }
    }

    /// True once the job must stop (lease lost or worker shutting down).
    pub fn lease_lost(&self) -> bool {
        self.lease_lost.load(Ordering::SeqCst)
    }

    /// `Err(LeaseLost)` once the job must stop; a cheap check between units of work.
    pub fn check(&self) -> Result<(), JobError> {
        if self.lease_lost() {
            Err(JobError::LeaseLost)
        } else {
            Ok(())
        }
    }

    /// The stop flag itself, for blocking compute threads (`spawn_blocking`) to poll between
    /// steps: the job's future may be dropped while such a thread still runs.
    pub fn lease_lost_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.lease_lost)
    }
}

/// A worker's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Name recorded as the lease owner (shown on the jobs page); unique per process.
    pub id: String,
    /// How long a lease lasts without renewal; a dead worker's job is retried after this.
    pub lease_ms: i64,
    /// How long an idle worker waits before looking for work again.
    pub poll_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            id: default_worker_id(),
            lease_ms: 60_000,
            poll_ms: 1_000,
        }
    }
}

/// `hostname-pid-random`: names the machine and process on the jobs page, and stays unique
/// when a process restarts with the same pid.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string());
    let random = Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..6])
}

/// How often the heartbeat renews a lease: three times per lease, so one slow renewal does not
/// lose it.
pub fn heartbeat_interval(lease_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(lease_ms / 3).unwrap_or(0).max(10))
}

/// The message stored for a handler that panicked.
pub fn panic_message(error: JoinError) -> String {
    let detail = match error.try_into_panic() {
        Ok(payload) => {
            if let Some(text) = payload.downcast_ref::<&str>() {
                (*text).to_string()
            } else if let Some(text) = payload.downcast_ref::<String>() {
                text.clone()
            } else {
                "(no message)".to_string()
            }
        }
        Err(e) => e.to_string(),
    };
    format!("the job panicked: {detail}")
}

/// Claims and runs jobs of the registered kinds until shut down.
pub struct Worker {
    store: Store,
    clock: Clock,
    config: WorkerConfig,
    handlers: BTreeMap<JobKind, Arc<dyn JobHandler>>,
}

/// How one claimed job ended, as the worker saw it.
enum Outcome {
    /// The handler returned.
    Returned(Result<(), JobError>),
    /// The handler panicked (message ready to store).
    Panicked(String),
    /// The heartbeat found the lease gone; the handler was stopped.
    LeaseLost,
    /// The worker is shutting down; the handler was stopped.
    Shutdown,
}

impl Worker {
    /// A worker with no handlers yet; `register` them before `run`.
    pub fn new(store: Store, clock: Clock, config: WorkerConfig) -> Worker {
        Worker {
            store,
            clock,
            config,
            handlers: BTreeMap::new(),
        }
    }

    /// Lets this worker take jobs of `kind`, run by `handler` (a later call replaces it).
    pub fn register(&mut self, kind: JobKind, handler: Arc<dyn JobHandler>) -> &mut Worker {
        self.handlers.insert(kind, handler);
        self
    }

    /// The worker's settings (its id names it on the jobs page).
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Claims and runs jobs one at a time until `shutdown` completes; then stops the running
    /// job, if any, and hands it back to the queue.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let kinds: Vec<JobKind> = self.handlers.keys().copied().collect();
        if kinds.is_empty() {
            tracing::info!(worker = %self.config.id, "no job handlers registered; the worker waits idle");
            shutdown.await;
            return;
        }
        let poll = Duration::from_millis(self.config.poll_ms.max(1));
        let names = kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>();
        tracing::info!(worker = %self.config.id, kinds = %names.join(", "), "worker started");
        loop {
            // Stop claiming once shutdown was asked for (checked without waiting).
            let stopping = tokio::select! {
                biased;
                _ = &mut shutdown => true,
                _ = std::future::ready(()) => false,
            };
            if stopping {
                break;
            }
            let claimed = self
                .store
                .claim_job(
                    &self.config.id,
                    &kinds,
                    self.config.lease_ms,
                    self.clock.now_ms(),
                )
                .await;
            let job = match claimed {
                Ok(Some(job)) => job,
                Ok(None) => {
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(poll) => continue,
                    }
                }
                Err(e) => {
                    tracing::warn!(worker = %self.config.id, error = %e, "claiming a job failed; trying again");
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(poll) => continue,
                    }
                }
            };
            if self.run_job(job, shutdown.as_mut()).await {
                break;
            }
        }
        tracing::info!(worker = %self.config.id, "worker stopped");
    }

    /// Runs one claimed job to its end and records the outcome; true when shutdown came
    /// meanwhile.
    async fn run_job(&self, job: ClaimedJob, shutdown: Pin<&mut impl Future<Output = ()>>) -> bool {
        let Some(handler) = self.handlers.get(&job.kind).cloned() else {
            // Unreachable: only registered kinds are claimed. Hand it back for another worker.
            let _ = self.store.release_job(&job.lease).await;
            return false;
        };
        let lease = job.lease;
        let (id, kind, attempt) = (job.id, job.kind, job.attempt);
        tracing::info!(worker = %self.config.id, job = %id, %kind, attempt, "job started");
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = JobContext {
            store: self.store.clone(),
            lease,
            clock: self.clock.clone(),
            lease_lost: Arc::clone(&stop),
        };
        let lost = Arc::new(Notify::new());
        let heartbeat = tokio::spawn(heartbeat(
            self.store.clone(),
            self.clock.clone(),
            lease,
            self.config.lease_ms,
            Arc::clone(&stop),
            Arc::clone(&lost),
        ));
        // Called inside the task, so a handler that panics before returning its future is
        // caught like one that panics while running.
        let mut task = tokio::spawn(async move { handler.run(job, ctx).await });
        let outcome = tokio::select! {
            joined = &mut task => match joined {
                Ok(result) => Outcome::Returned(result),
                Err(e) => Outcome::Panicked(panic_message(e)),
            },
            _ = lost.notified() => Outcome::LeaseLost,
            _ = shutdown => Outcome::Shutdown,
        };
        heartbeat.abort();
        if matches!(outcome, Outcome::LeaseLost | Outcome::Shutdown) {
            stop.store(true, Ordering::SeqCst);
            task.abort();
            let _ = task.await;
        }
        let now = self.clock.now_ms();
        let worker = &self.config.id;
        match outcome {
            Outcome::Returned(Ok(())) => {
                match self.store.finish_job(&lease, now).await {
                    Ok(()) => tracing::info!(%worker, job = %id, "job succeeded"),
                    Err(e) => {
                        tracing::warn!(%worker, job = %id, error = %e, "job finished but could not be recorded")
                    }
                }
                false
            }
            Outcome::Returned(Err(JobError::LeaseLost)) | Outcome::LeaseLost => {
                tracing::warn!(%worker, job = %id, "job stopped: its lease was lost (cancelled or taken over)");
                false
            }
            Outcome::Returned(Err(JobError::Retryable(error))) => {
                self.record_failure(&lease, &error, true).await;
                false
            }
            Outcome::Returned(Err(JobError::Fatal(error))) => {
                self.record_failure(&lease, &error, false).await;
                false
            }
            Outcome::Panicked(error) => {
                self.record_failure(&lease, &error, true).await;
                false
            }
            Outcome::Shutdown => {
                match self.store.release_job(&lease).await {
                    Ok(()) => {
                        tracing::info!(%worker, job = %id, "shutting down: job handed back to the queue")
                    }
                    Err(e) => {
                        tracing::warn!(%worker, job = %id, error = %e, "shutting down: could not hand the job back; it is retried once its lease expires")
                    }
                }
                true
            }
        }
    }

    /// Stores a failed attempt; the queue decides (retry and attempts left) whether it runs again.
    async fn record_failure(&self, lease: &Lease, error: &str, retry: bool) {
        let worker = &self.config.id;
        let job = lease.job_id;
        match self
            .store
            .fail_job(lease, error, retry, self.clock.now_ms())
            .await
        {
            Ok(JobState::Queued) => {
                tracing::warn!(%worker, %job, %error, "job attempt failed; queued for another attempt")
            }
            Ok(_) => tracing::error!(%worker, %job, %error, "job failed"),
            Err(e) => {
                tracing::warn!(%worker, %job, %error, store_error = %e, "job failed and the failure could not be recorded")
            }
        }
    }
}

/// Renews the lease until aborted; on finding it lost, raises the stop flag and tells the
/// worker. Other renewal errors (a database hiccup) are retried at the next beat: the lease
/// lasts three beats.
async fn heartbeat(
    store: Store,
    clock: Clock,
    lease: Lease,
    lease_ms: i64,
    stop: Arc<AtomicBool>,
    lost: Arc<Notify>,
) {
    let interval = heartbeat_interval(lease_ms);
    loop {
        tokio::time::sleep(interval).await;
        match store.renew_lease(&lease, lease_ms, clock.now_ms()).await {
            Ok(()) => {}
            Err(StoreError::LeaseLost) => {
                stop.store(true, Ordering::SeqCst);
                lost.notify_one();
                return;
            }
            Err(e) => {
                tracing::warn!(job = %lease.job_id, error = %e, "renewing the job's lease failed; trying again")
            }
        }
    }
}

/// The handlers this build provides, by kind, for `worker` and `serve` to register. Model
/// files are read from `models_dir`; generation decodes `generation_batch` sequences at a time.
pub fn handlers(models_dir: &Path, generation_batch: usize) -> Vec<(JobKind, Arc<dyn JobHandler>)> {
    vec![
        (
            JobKind::Generation,
            Arc::new(generation::GenerationHandler::new(
                models_dir,
                generation_batch,
            )),
        ),
        (
            JobKind::VerifierTraining,
            Arc::new(verifier::TrainingHandler::new(models_dir)),
        ),
        (
            JobKind::VerifierScoring,
            Arc::new(verifier::ScoringHandler::new(models_dir)),
        ),
        (
            JobKind::TrainingRun,
            Arc::new(game::TrainingRunHandler::new(models_dir)),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_beats_three_times_per_lease() {
        assert_eq!(heartbeat_interval(60_000), Duration::from_secs(20));
        assert_eq!(heartbeat_interval(0), Duration::from_millis(10));
        assert_eq!(heartbeat_interval(-5), Duration::from_millis(10));
    }

    #[test]
    fn store_errors_map_to_job_errors() {
        assert!(matches!(
            JobError::from(StoreError::LeaseLost),
            JobError::LeaseLost
        ));
        assert!(matches!(
            JobError::from(StoreError::Busy),
            JobError::Retryable(_)
        ));
        assert!(matches!(
            JobError::from(StoreError::Database(sqlx::Error::PoolTimedOut)),
            JobError::Retryable(_)
        ));
        assert!(matches!(
            JobError::from(StoreError::NotFound("checkpoint")),
            JobError::Fatal(_)
        ));
    }

    #[test]
    fn worker_ids_name_the_process_and_differ() {
        let (a, b) = (default_worker_id(), default_worker_id());
        assert_ne!(a, b);
        assert!(a.contains(&format!("-{}-", std::process::id())), "{a}");
    }

    #[tokio::test]
    async fn panics_are_reported_with_their_message() {
        async fn explode() {
            panic!("out of {}", "memory")
        }
        let e = tokio::spawn(explode())
            .await
            .expect_err("the task should have panicked");
        assert_eq!(panic_message(e), "the job panicked: out of memory");
    }
}

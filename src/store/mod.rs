//! Persistence: one `Store` over either SQLite (the embedded default) or PostgreSQL (scale-out).
//!
//! Every query is written once: the [`dispatch!`] macro expands the same body for each backend's
//! pool, so both run identical SQL with native types (UUID blobs on SQLite, `uuid` on PostgreSQL).
//! Only the few statements whose syntax differs pick a per-backend string via [`Backend::pick`].

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use futures_core::future::BoxFuture;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Postgres, Sqlite, Transaction};
use sqlx::{ConnectOptions, SqlSafeStr};

pub mod access;
pub mod backup;
pub mod catalog;
pub mod games;
pub mod generation;
pub mod intake;
pub mod jobs;
pub mod judging;
pub mod models;
pub mod panels;
pub mod quality;
pub mod raters;
pub mod reports;
pub mod studies;
pub mod users;
pub mod verifiers;
mod writer;

/// Errors of the persistence layer; the web layer maps each variant to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database itself failed (connection, constraint we did not expect, I/O).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the versioned migrations failed (e.g. an applied migration was edited).
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The named thing does not exist (or is not visible to the caller).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request clashes with existing state (duplicate name, …).
    #[error("{0}")]
    Conflict(String),
    /// The thing existed but is over (an item whose time ran out and was reassigned).
    #[error("{0}")]
    Gone(String),
    /// The request is well-formed but not acceptable (no solutions match a study, …).
    #[error("{0}")]
    Invalid(String),
    /// A worker's lease on a job is gone (another worker took the job over after the lease
    /// expired, or it was cancelled): the worker must stop and write nothing more for it.
    #[error("the job's lease was lost: it was cancelled or taken over by another worker")]
    LeaseLost,
    /// A concurrent request of the same caller holds the resource; retried automatically.
    #[error("busy: a concurrent request of the same rater is being served")]
    Busy,
    /// An import was refused whole; the report names every bad line.
    #[error("{0}")]
    ImportRejected(#[from] crate::problems::ImportRejected),
    /// An invitation was refused whole (nobody was invited); the report names every bad line.
    #[error("{0}")]
    InvitesRejected(#[from] crate::invites::InvitesRejected),
}

impl StoreError {
    /// Transient clashes between concurrent transactions that are safe to retry from the start:
    /// PostgreSQL serialization failures, deadlocks and unique violations raced by a concurrent
    /// writer (e.g. two tabs of one rater asking for an item at once); SQLite "busy" and unique
    /// violations (the same race, decided by the single writer).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Busy => true,
            StoreError::Database(sqlx::Error::Database(e)) => {
                matches!(
                    e.code().as_deref(),
                    Some("40001" | "40P01" | "23505" | "5" | "517" | "2067")
                )
            }
            _ => false,
        }
    }
}

impl StoreError {
    /// The write failed for lack of space: SQLite's SQLITE_FULL (a full disk, or the
    /// `max_size_mib` cap) or PostgreSQL's `disk_full`. Nothing of the transaction was kept.
    pub fn is_storage_full(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("13" | "53100"))
            }
            StoreError::Database(sqlx::Error::Io(e)) => e.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        }
    }
}

/// Result alias of the persistence layer.
pub type StoreResult<T> = Result<T, StoreError>;

/// Which database engine a [`Store`] talks to; lets a query pick engine-specific syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded single-file database (WAL mode).
    Sqlite,
    /// Shared server database for several app and worker instances.
    Postgres,
}

impl Backend {
    /// Chooses the statement written for this backend.
    pub fn pick(self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        }
    }
}

/// `sqlite` or `postgres`, as logs and people name the backend.
impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.pick("sqlite", "postgres"))
    }
}

#[derive(Debug, Clone)]
enum Db {
    /// SQLite allows one writer at a time. Writes go through a single dedicated connection so
    /// they queue in-process (FIFO, no busy-wait sleeps); reads use a pool and run alongside
    /// thanks to WAL.
    Sqlite {
        read: SqlitePool,
        write: SqlitePool,
    },
    Postgres(PgPool),
}

/// Database-wide figures an operator watches (see [`Store::operational_figures`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperationalFigures {
    /// Judgements stored, per verdict.
    pub judgements: Vec<(String, i64)>,
    /// Items served and not yet answered, over all studies.
    pub active_items: i64,
    /// Jobs per (kind, state).
    pub jobs: Vec<((String, String), i64)>,
}

/// Handle to the database; cheap to clone (pools are reference-counted).
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    /// Group-commit writers of the judging hot path (see `writer`).
    writer: writer::Writer,
    /// The report attempts of recently reported studies (see `reports`).
    report_snapshots: reports::Snapshots,
    /// Answer rules by rater, read once (see `Store::rater_answer_rules`).
    answer_rules: judging::AnswerRulesCache,
}

/// Expands `$body` once per backend with `$pool` bound to that backend's pool and `$backend`
/// to its [`Backend`], so one piece of query code serves SQLite and PostgreSQL.
macro_rules! dispatch {
    ($store:expr, $pool:ident, $backend:ident => $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite { read: $pool, .. } => {
                #[allow(unused_variables)]
                let $backend = $crate::store::Backend::Sqlite;
                $body
            }
            $crate::store::Db::Postgres($pool) => {
                #[allow(unused_variables)]
                let $backend = $crate::store::Backend::Postgres;
                $body
            }
        }
    };
}
pub(crate) use dispatch;

/// Inside a `dispatch!` body holding the write transaction `$tx`: sets the job's progress to
/// `$done` if `$lease` still holds the running job, else returns [`StoreError::LeaseLost`] from
/// the enclosing function, so nothing of the transaction is committed. A worker's batch of
/// results starts with it, so results and progress commit together or not at all.
macro_rules! fence_progress {
    ($tx:ident, $lease:expr, $done:expr) => {{
        let fenced = sqlx::query(
            "UPDATE jobs SET progress_done = $3
             WHERE id = $1 AND lease_token = $2 AND state = 'running'",
        )
        .bind($lease.job_id)
        .bind($lease.token)
        .bind($done)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        if fenced == 0 {
            return Err($crate::store::StoreError::LeaseLost);
        }
    }};
}
pub(crate) use fence_progress;

/// Inside a `dispatch!` body holding the write transaction `$tx`: returns
/// `NotFound("study")` from the enclosing function unless the study exists, and on PostgreSQL
/// locks its row so that writes to one study's settings, invitations or bonus exports take
/// turns (SQLite's single writer already does). `NO KEY`: judging's inserts, whose foreign
/// keys share-lock the row, do not wait for it.
macro_rules! lock_study {
    ($tx:ident, $backend:ident, $study_id:expr) => {{
        let study: Option<(uuid::Uuid,)> = sqlx::query_as($backend.pick(
            "SELECT id FROM studies WHERE id = $1",
            "SELECT id FROM studies WHERE id = $1 FOR NO KEY UPDATE",
        ))
        .bind($study_id)
        .fetch_optional(&mut *$tx)
        .await?;
        if study.is_none() {
            return Err($crate::store::StoreError::NotFound("study"));
        }
    }};
}
pub(crate) use lock_study;

/// Inside a `dispatch!` body holding the write transaction `$tx`: inserts a checkpoint whose
/// files are in `$model_dir` unless its label is taken; evaluates to whether it was inserted
/// (see [`models::label_taken`] for the refusal).
macro_rules! insert_model_checkpoint {
    ($tx:ident, $id:expr, $kind:expr, $label:expr, $round:expr, $metadata:expr, $now:expr, $model_dir:expr) => {
        sqlx::query(
            "INSERT INTO checkpoints (id, kind, label, round, metadata, created_at, model_dir)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (label) DO NOTHING",
        )
        .bind($id)
        .bind($kind.as_str())
        .bind($label)
        .bind($round)
        .bind($metadata.to_string())
        .bind($now)
        .bind($model_dir)
        .execute(&mut *$tx)
        .await?
        .rows_affected()
            > 0
    };
}
pub(crate) use insert_model_checkpoint;

/// Opens write transactions the way each engine needs: SQLite on its single writer connection,
/// taking the write lock up front (`BEGIN IMMEDIATE`) so a transaction that reads before it
/// writes never fails with SQLITE_BUSY halfway (another process may hold the lock);
/// PostgreSQL on any pooled connection, relying on row locks and conditional updates.
pub(crate) trait WritePool {
    type Database: sqlx::Database;
    async fn begin_write_on(
        store: &Store,
        pool: &Self,
    ) -> Result<Transaction<'static, Self::Database>, sqlx::Error>;
}

impl WritePool for SqlitePool {
    type Database = Sqlite;
    async fn begin_write_on(
        store: &Store,
        pool: &Self,
    ) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        let writer = match &store.db {
            Db::Sqlite { write, .. } => write,
            Db::Postgres(_) => pool,
        };
        writer.begin_with("BEGIN IMMEDIATE").await
    }
}

impl WritePool for PgPool {
    type Database = Postgres;
    async fn begin_write_on(
        _store: &Store,
        pool: &Self,
    ) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        pool.begin().await
    }
}

/// Statements slower than this are logged as warnings (a sign of a missing index or of lock
/// contention).
const SLOW_STATEMENT: Duration = Duration::from_millis(100);

/// Versioned migrations, embedded in the binary so a fresh clone needs no files at run time.
/// Each backend has its own folder with the same version numbers and the same meaning.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "core",
        include_str!("../../migrations/sqlite/0001_core.sql"),
    ),
    (
        2,
        "worker",
        include_str!("../../migrations/sqlite/0002_worker.sql"),
    ),
    (
        3,
        "verifier",
        include_str!("../../migrations/sqlite/0003_verifier.sql"),
    ),
    (
        4,
        "rater invites",
        include_str!("../../migrations/sqlite/0004_rater_invites.sql"),
    ),
    (
        5,
        "rater protocol",
        include_str!("../../migrations/sqlite/0005_rater_protocol.sql"),
    ),
    (
        6,
        "login throttle",
        include_str!("../../migrations/sqlite/0006_login_throttle.sql"),
    ),
    (
        7,
        "training runs",
        include_str!("../../migrations/sqlite/0007_training_runs.sql"),
    ),
    (
        8,
        "timing outcomes",
        include_str!("../../migrations/sqlite/0008_timing_outcomes.sql"),
    ),
    (
        9,
        "solution grades",
        include_str!("../../migrations/sqlite/0009_solution_grades.sql"),
    ),
    (
        10,
        "access",
        include_str!("../../migrations/sqlite/0010_access.sql"),
    ),
    (
        12,
        "server settings",
        include_str!("../../migrations/sqlite/0012_server_settings.sql"),
    ),
    (
        13,
        "panel entry",
        include_str!("../../migrations/sqlite/0013_panel_entry.sql"),
    ),
    (
        14,
        "panel completions",
        include_str!("../../migrations/sqlite/0014_panel_completions.sql"),
    ),
    (
        15,
        "panel bonuses",
        include_str!("../../migrations/sqlite/0015_panel_bonuses.sql"),
    ),
    (
        16,
        "panel places",
        include_str!("../../migrations/sqlite/0016_panel_places.sql"),
    ),
    (
        17,
        "data deletions",
        include_str!("../../migrations/sqlite/0017_data_deletions.sql"),
    ),
    (
        18,
        "panel_intake",
        include_str!("../../migrations/sqlite/0018_panel_intake.sql"),
    ),
    (
        19,
        "report_snapshots",
        include_str!("../../migrations/sqlite/0019_report_snapshots.sql"),
    ),
    (
        20,
        "answer_formats",
        include_str!("../../migrations/sqlite/0020_answer_formats.sql"),
    ),
    (
        21,
        "time_limit_arms",
        include_str!("../../migrations/sqlite/0021_time_limit_arms.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "core",
        include_str!("../../migrations/postgres/0001_core.sql"),
    ),
    (
        2,
        "worker",
        include_str!("../../migrations/postgres/0002_worker.sql"),
    ),
    (
        3,
        "verifier",
        include_str!("../../migrations/postgres/0003_verifier.sql"),
    ),
    (
        4,
        "rater invites",
        include_str!("../../migrations/postgres/0004_rater_invites.sql"),
    ),
    (
        5,
        "rater protocol",
        include_str!("../../migrations/postgres/0005_rater_protocol.sql"),
    ),
    (
        6,
        "login throttle",
        include_str!("../../migrations/postgres/0006_login_throttle.sql"),
    ),
    (
        7,
        "training runs",
        include_str!("../../migrations/postgres/0007_training_runs.sql"),
    ),
    (
        8,
        "timing outcomes",
        include_str!("../../migrations/postgres/0008_timing_outcomes.sql"),
    ),
    (
        9,
        "solution grades",
        include_str!("../../migrations/postgres/0009_solution_grades.sql"),
    ),
    (
        10,
        "access",
        include_str!("../../migrations/postgres/0010_access.sql"),
    ),
    (
        12,
        "server settings",
        include_str!("../../migrations/postgres/0012_server_settings.sql"),
    ),
    (
        13,
        "panel entry",
        include_str!("../../migrations/postgres/0013_panel_entry.sql"),
    ),
    (
        14,
        "panel completions",
        include_str!("../../migrations/postgres/0014_panel_completions.sql"),
    ),
    (
        15,
        "panel bonuses",
        include_str!("../../migrations/postgres/0015_panel_bonuses.sql"),
    ),
    (
        16,
        "panel places",
        include_str!("../../migrations/postgres/0016_panel_places.sql"),
    ),
    (
        17,
        "data deletions",
        include_str!("../../migrations/postgres/0017_data_deletions.sql"),
    ),
    (
        18,
        "panel_intake",
        include_str!("../../migrations/postgres/0018_panel_intake.sql"),
    ),
    (
        19,
        "report_snapshots",
        include_str!("../../migrations/postgres/0019_report_snapshots.sql"),
    ),
    (
        20,
        "answer_formats",
        include_str!("../../migrations/postgres/0020_answer_formats.sql"),
    ),
    (
        21,
        "time_limit_arms",
        include_str!("../../migrations/postgres/0021_time_limit_arms.sql"),
    ),
];

#[derive(Debug)]
struct EmbeddedMigrations(&'static [(i64, &'static str, &'static str)]);

impl<'s> MigrationSource<'s> for EmbeddedMigrations {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        AssertSqlSafe(*sql).into_sql_str(),
                        false,
                    )
                })
                .collect())
        })
    }
}

impl Store {
    /// Connects to `database_url` (`sqlite://path` or `postgres://…`), creating the SQLite file
    /// if needed, and applies pending migrations.
    pub async fn connect(database_url: &str) -> StoreResult<Store> {
        let (writer, queue) = writer::Writer::channel();
        let store = if database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
        {
            let options = PgConnectOptions::from_str(database_url)?
                .log_slow_statements(log::LevelFilter::Warn, SLOW_STATEMENT);
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await?;
            Store {
                db: Db::Postgres(pool),
                writer,
                report_snapshots: reports::Snapshots::default(),
                answer_rules: judging::AnswerRulesCache::default(),
            }
        } else if database_url.starts_with("sqlite:") {
            let (database_url, max_pages) = sqlite_size_cap(database_url)?;
            let options = SqliteConnectOptions::from_str(&database_url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // NORMAL in WAL mode: a committed transaction survives a crash of the process
                // (kill -9); only an OS crash or power cut can lose the last commits.
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true)
                // 64 MiB page cache and memory-mapped reads: the hot tables stay in memory and
                // reads skip a system call per page.
                .pragma("cache_size", "-65536")
                .pragma("mmap_size", "268435456")
                .log_slow_statements(log::LevelFilter::Warn, SLOW_STATEMENT);
            let options = match max_pages {
                Some(pages) => options.pragma("max_page_count", pages.to_string()),
                None => options,
            };
            let write = SqlitePoolOptions::new()
                .before_acquire(discard_if_in_transaction)
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(60))
                .connect_with(options.clone())
                .await?;
            let read = SqlitePoolOptions::new()
                .before_acquire(discard_if_in_transaction)
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await?;
            Store {
                db: Db::Sqlite { read, write },
                writer,
                report_snapshots: reports::Snapshots::default(),
                answer_rules: judging::AnswerRulesCache::default(),
            }
        } else {
            return Err(StoreError::Invalid(format!(
                "unsupported DATABASE_URL {database_url:?}: use sqlite://FILE or postgres://…"
            )));
        };
        store.migrate().await?;
        // SQLite has one writer connection, so one writer task; PostgreSQL runs several
        // batches at once on separate connections.
        let writer_tasks = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        writer::Writer::start(&store, queue, writer_tasks);
        Ok(store)
    }

    /// Opens a write transaction (see [`WritePool`]); `pool` is the pool `dispatch!` bound.
    pub(crate) async fn begin_write<P: WritePool>(
        &self,
        pool: &P,
    ) -> Result<Transaction<'static, P::Database>, sqlx::Error> {
        P::begin_write_on(self, pool).await
    }

    /// Records a server setting (see `server_settings`), replacing an earlier value.
    pub async fn set_server_setting(&self, name: &str, value: &str, now: i64) -> StoreResult<()> {
        dispatch!(self, pool, _b => {
            let mut tx = self.begin_write(pool).await?;
            sqlx::query(
                "INSERT INTO server_settings (name, value, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(value)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// A server setting, if one was recorded.
    pub async fn server_setting(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(dispatch!(self, pool, _b => {
            sqlx::query_scalar("SELECT value FROM server_settings WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Figures for `/metrics`, shared by every instance: judgements by verdict, items served
    /// and unanswered, jobs by (kind, state).
    pub async fn operational_figures(&self) -> StoreResult<OperationalFigures> {
        type Rows = (Vec<(String, i64)>, i64, Vec<(String, String, i64)>);
        let (judgements, active, jobs): Rows = dispatch!(self, pool, _b => {
            (
                sqlx::query_as("SELECT verdict, COUNT(*) FROM judgements GROUP BY verdict ORDER BY verdict")
                    .fetch_all(pool)
                    .await?,
                sqlx::query_scalar("SELECT COUNT(*) FROM assignments WHERE state = 'active'")
                    .fetch_one(pool)
                    .await?,
                sqlx::query_as("SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state ORDER BY kind, state")
                    .fetch_all(pool)
                    .await?,
            )
        });
        Ok(OperationalFigures {
            judgements,
            active_items: active,
            jobs: jobs.into_iter().map(|(k, s, n)| ((k, s), n)).collect(),
        })
    }

    /// Which engine this store uses.
    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies the embedded migrations that are not applied yet; refuses to start when an
    /// applied migration's checksum no longer matches (migrations are never edited).
    pub async fn migrate(&self) -> StoreResult<()> {
        let applied = self.schema_version().await?;
        let known = self.backend().latest_schema_version();
        if applied > known {
            return Err(StoreError::Invalid(newer_schema_message(applied, known)));
        }
        match &self.db {
            Db::Sqlite { write, .. } => {
                Migrator::new(EmbeddedMigrations(SQLITE_MIGRATIONS))
                    .await?
                    .run(write)
                    .await?
            }
            Db::Postgres(pool) => {
                Migrator::new(EmbeddedMigrations(POSTGRES_MIGRATIONS))
                    .await?
                    .run(pool)
                    .await?
            }
        }
        Ok(())
    }

    /// The newest migration applied to this database (0 for an empty one).
    pub async fn schema_version(&self) -> StoreResult<i64> {
        Ok(dispatch!(self, pool, backend => {
            let table: Option<String> = sqlx::query_scalar(backend.pick(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
                "SELECT to_regclass('_sqlx_migrations')::text",
            ))
            .fetch_optional(pool)
            .await?
            .flatten();
            match table {
                None => 0,
                Some(_) => sqlx::query_scalar::<_, Option<i64>>(APPLIED_SCHEMA_VERSION)
                .fetch_one(pool)
                .await?
                .unwrap_or(0),
            }
        }))
    }

    /// Cheap liveness probe for `/healthz`.
    pub async fn ping(&self) -> StoreResult<()> {
        dispatch!(self, pool, _b => {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        })
    }

    /// Closes the pools, waiting for connections to be returned (graceful shutdown).
    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

/// A pooled SQLite connection that still counts itself inside a transaction is closed instead
/// of reused. SQLite rolls a transaction back by itself when a write fails with SQLITE_FULL;
/// sqlx's ROLLBACK then fails and its count stays at one, so every later `BEGIN IMMEDIATE` on
/// the single writer would fail ("invalid savepoint") and the server would not recover when
/// space returns. (A connection whose rollback is merely still queued is closed too: harmless.)
fn discard_if_in_transaction(
    conn: &mut sqlx::SqliteConnection,
    _meta: sqlx::pool::PoolConnectionMetadata,
) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
    use sqlx::Connection;
    let healthy = !conn.is_in_transaction();
    if !healthy {
        tracing::warn!("closing a database connection left inside a failed transaction");
    }
    Box::pin(async move { Ok(healthy) })
}

/// The newest migration applied, from sqlx's record (NULL when none).
const APPLIED_SCHEMA_VERSION: &str = "SELECT MAX(version) FROM _sqlx_migrations WHERE success";

/// SQLite's page size (the default; the database never changes it).
const SQLITE_PAGE_BYTES: f64 = 4096.0;

/// Takes the project's own `max_size_mib=N` option off a `sqlite:` URL: the database file
/// stops growing at N MiB (fractions allowed), so a full database fails writes cleanly with
/// HTTP 507 before it can fill the disk that backups and checkpoints share. Returns the URL
/// sqlx reads and the cap in pages.
fn sqlite_size_cap(url: &str) -> StoreResult<(String, Option<u64>)> {
    let Some((path, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut kept = Vec::new();
    let mut pages = None;
    for pair in query.split('&') {
        match pair.strip_prefix("max_size_mib=") {
            Some(value) => {
                let mib: f64 = value
                    .parse()
                    .ok()
                    .filter(|m: &f64| m.is_finite() && *m > 0.0)
                    .ok_or_else(|| {
                        StoreError::Invalid(format!(
                            "max_size_mib={value} in DATABASE_URL is not a positive number of MiB"
                        ))
                    })?;
                pages = Some(((mib * 1024.0 * 1024.0 / SQLITE_PAGE_BYTES).floor() as u64).max(1));
            }
            None => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    Ok((url, pages))
}

impl Backend {
    /// The migrations this binary carries for the backend.
    fn migrations(self) -> &'static [(i64, &'static str, &'static str)] {
        match self {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        }
    }

    /// The newest schema version this binary knows.
    pub fn latest_schema_version(self) -> i64 {
        self.migrations().last().map_or(0, |m| m.0)
    }
}

/// Why a binary refuses a database a newer release has migrated: its migrations would not know
/// the newer tables and columns, and writing to them could lose data.
fn newer_schema_message(applied: i64, known: i64) -> String {
    format!(
        "this database was upgraded by a newer Legibility Lab (schema version {applied}; this \
         binary knows up to {known}): run the newer release, or restore a backup made before \
         the upgrade into an empty database"
    )
}

/// SHA-256 of `text` as lowercase hex; used to deduplicate imports and to store tokens hashed.
pub fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_cap_comes_off_the_url_in_pages() {
        assert_eq!(
            sqlite_size_cap("sqlite://data/x.db").unwrap(),
            ("sqlite://data/x.db".to_string(), None)
        );
        assert_eq!(
            sqlite_size_cap("sqlite://data/x.db?max_size_mib=2").unwrap(),
            ("sqlite://data/x.db".to_string(), Some(512))
        );
        assert_eq!(
            sqlite_size_cap("sqlite://x.db?mode=rwc&max_size_mib=0.5").unwrap(),
            ("sqlite://x.db?mode=rwc".to_string(), Some(128))
        );
        for bad in ["0", "-1", "lots", "inf"] {
            let refused = sqlite_size_cap(&format!("sqlite://x.db?max_size_mib={bad}"));
            assert!(
                refused
                    .unwrap_err()
                    .to_string()
                    .contains("not a positive number of MiB"),
                "{bad}"
            );
        }
    }
}

//! The database half of backup and restore (the files and the manifest are `backup`'s).
//!
//! SQLite: `VACUUM INTO` writes a consistent copy of the live database from a read transaction,
//! so judging goes on while it runs; restoring copies the file into place. PostgreSQL: every
//! table is copied out (`COPY … TO STDOUT`) in one read-only REPEATABLE READ transaction, which
//! sees one instant of the database; restoring applies the backup's migrations and copies the
//! rows in, all in one transaction, so a failed restore leaves the target empty.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use futures_util::StreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Connection};
use tokio::io::AsyncWriteExt;

use super::{
    APPLIED_SCHEMA_VERSION, Backend, Db, EmbeddedMigrations, Store, StoreError, StoreResult,
};

/// The SQLite copy's file name inside a backup.
pub const SQLITE_FILE: &str = "database.sqlite";
/// The folder of PostgreSQL table copies inside a backup.
pub const POSTGRES_DIR: &str = "postgres";
/// The checkpoint folders a snapshot's rows refer to.
const MODEL_DIRS: &str =
    "SELECT DISTINCT model_dir FROM checkpoints WHERE model_dir IS NOT NULL ORDER BY model_dir";
/// sqlx's record of applied migrations: restored by applying the migrations, not copied.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// One table of a snapshot: its columns (in the order of the copy) and rows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableCopy {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: i64,
}

/// What a snapshot holds: enough to restore it and to check the restore.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatabaseSnapshot {
    pub backend: String,
    pub schema_version: i64,
    /// In an order that satisfies foreign keys (referenced tables first).
    pub tables: Vec<TableCopy>,
    /// Checkpoint folders (relative to the models folder) the snapshot's rows refer to.
    #[serde(default)]
    pub model_dirs: Vec<String>,
}

impl Store {
    /// Writes a consistent snapshot of the whole database into the folder `dir` (which exists).
    pub async fn snapshot_into(&self, dir: &Path) -> StoreResult<DatabaseSnapshot> {
        match &self.db {
            Db::Sqlite { read, .. } => {
                let file = dir.join(SQLITE_FILE);
                sqlx::query("VACUUM INTO $1")
                    .bind(file.to_string_lossy().into_owned())
                    .execute(read)
                    .await?;
                // The figures come from the copy itself, so they describe exactly what it holds.
                let copy = open_sqlite_file(&file).await?;
                let snapshot = describe_sqlite(&copy).await;
                copy.close().await;
                snapshot
            }
            Db::Postgres(pool) => {
                let folder = dir.join(POSTGRES_DIR);
                tokio::fs::create_dir_all(&folder).await.map_err(io_error)?;
                let mut conn = pool.acquire().await?;
                let mut tx = conn.begin().await?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(&mut *tx)
                    .await?;
                let schema_version = applied_version_pg(&mut tx).await?;
                let mut tables = Vec::new();
                for (name, columns) in postgres_tables(&mut tx).await? {
                    if name == MIGRATIONS_TABLE {
                        continue;
                    }
                    let list = column_list(&columns);
                    let mut out = tokio::fs::File::create(folder.join(format!("{name}.copy")))
                        .await
                        .map_err(io_error)?;
                    let mut rows = 0i64;
                    {
                        let mut stream = tx
                            .copy_out_raw(&format!("COPY \"{name}\" ({list}) TO STDOUT"))
                            .await?;
                        while let Some(chunk) = stream.next().await {
                            let chunk = chunk?;
                            rows += chunk.iter().filter(|b| **b == b'\n').count() as i64;
                            out.write_all(&chunk).await.map_err(io_error)?;
                        }
                    }
                    out.sync_all().await.map_err(io_error)?;
                    tables.push(TableCopy {
                        name,
                        columns,
                        rows,
                    });
                }
                let model_dirs = sqlx::query_scalar(MODEL_DIRS).fetch_all(&mut *tx).await?;
                tx.commit().await?;
                Ok(DatabaseSnapshot {
                    backend: Backend::Postgres.to_string(),
                    schema_version,
                    tables,
                    model_dirs,
                })
            }
        }
    }
}

/// Restores the snapshot in `dir` into the empty database at `database_url`; refuses a target
/// that holds anything, and leaves it as it was when anything fails.
pub async fn restore_snapshot(
    database_url: &str,
    dir: &Path,
    snapshot: &DatabaseSnapshot,
) -> StoreResult<()> {
    let backend = if database_url.starts_with("sqlite:") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    if snapshot.backend != backend.to_string() {
        return Err(StoreError::Invalid(format!(
            "this backup is of a {} database and DATABASE_URL names a {backend} one: restore it \
             into a {} database",
            snapshot.backend, snapshot.backend
        )));
    }
    // Names go into COPY statements: only plain lowercase identifiers, as the migrations write.
    let plain = |name: &str| {
        name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    for table in &snapshot.tables {
        if let Some(bad) = std::iter::once(&table.name)
            .chain(&table.columns)
            .find(|name| !plain(name))
        {
            return Err(StoreError::Invalid(format!(
                "the backup's manifest names a table or column {bad:?} that no release writes"
            )));
        }
    }
    let known = backend.latest_schema_version();
    if snapshot.schema_version > known {
        return Err(StoreError::Invalid(super::newer_schema_message(
            snapshot.schema_version,
            known,
        )));
    }
    match backend {
        Backend::Sqlite => restore_sqlite(database_url, dir, snapshot).await,
        Backend::Postgres => restore_postgres(database_url, dir, snapshot).await,
    }
}

async fn restore_sqlite(
    database_url: &str,
    dir: &Path,
    snapshot: &DatabaseSnapshot,
) -> StoreResult<()> {
    let target = sqlite_path(database_url)?;
    for file in [
        target.clone(),
        with_suffix(&target, "-wal"),
        with_suffix(&target, "-journal"),
    ] {
        if std::fs::metadata(&file).is_ok_and(|m| m.len() > 0) {
            return Err(StoreError::Invalid(format!(
                "{} already exists: restore into a new database file (another DATABASE_URL) or \
                 move it away first",
                file.display()
            )));
        }
    }
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_error)?;
    }
    // Copied beside the target, checked, then renamed into place: never half a database.
    let partial = with_suffix(&target, ".restoring");
    std::fs::copy(dir.join(SQLITE_FILE), &partial).map_err(io_error)?;
    let checked = async {
        let copy = open_sqlite_file(&partial).await?;
        let result = async {
            let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_one(&copy)
                .await?;
            if integrity != "ok" {
                return Err(StoreError::Invalid(format!(
                    "the backup's database fails SQLite's integrity check: {integrity}"
                )));
            }
            let found = describe_sqlite(&copy).await?;
            same_contents(snapshot, &found)
        }
        .await;
        copy.close().await;
        result
    }
    .await;
    let renamed = checked.and_then(|()| {
        std::fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&partial, &target))
            .map_err(io_error)
    });
    if renamed.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    renamed
}

async fn restore_postgres(
    database_url: &str,
    dir: &Path,
    snapshot: &DatabaseSnapshot,
) -> StoreResult<()> {
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(database_url)?;
    let mut conn = sqlx::PgConnection::connect_with(&options).await?;
    let mut tx = conn.begin().await?;
    let present: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1",
    )
    .fetch_all(&mut *tx)
    .await?;
    if !present.is_empty() {
        return Err(StoreError::Invalid(format!(
            "the target database is not empty (it has {} tables, e.g. {}): restore into a new, \
             empty database",
            present.len(),
            present[0]
        )));
    }
    // The schema exactly as the backup's release had it; later migrations run at the next start.
    let all = Backend::Postgres.migrations();
    let applied = all
        .iter()
        .take_while(|m| m.0 <= snapshot.schema_version)
        .count();
    let migrations = &all[..applied];
    sqlx::migrate::Migrator::new(EmbeddedMigrations(migrations))
        .await?
        .run(&mut *tx)
        .await?;
    let created: BTreeSet<String> = postgres_tables(&mut tx)
        .await?
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name != MIGRATIONS_TABLE)
        .collect();
    let listed: BTreeSet<String> = snapshot.tables.iter().map(|t| t.name.clone()).collect();
    if created != listed {
        return Err(StoreError::Invalid(format!(
            "the backup's tables do not match schema version {}: missing from the backup {:?}, \
             unknown to it {:?}",
            snapshot.schema_version,
            created.difference(&listed).collect::<Vec<_>>(),
            listed.difference(&created).collect::<Vec<_>>()
        )));
    }
    for table in &snapshot.tables {
        let file =
            tokio::fs::File::open(dir.join(POSTGRES_DIR).join(format!("{}.copy", table.name)))
                .await
                .map_err(io_error)?;
        let mut copy = tx
            .copy_in_raw(&format!(
                "COPY \"{}\" ({}) FROM STDIN",
                table.name,
                column_list(&table.columns)
            ))
            .await?;
        copy.read_from(file).await?;
        let rows = copy.finish().await?;
        if rows as i64 != table.rows {
            return Err(StoreError::Invalid(format!(
                "table {} of the backup has {rows} rows where its manifest says {}",
                table.name, table.rows
            )));
        }
    }
    // Identity and serial columns go on from the restored rows, not from 1.
    let sequences: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = current_schema()
           AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (table, column) in sequences {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('\"{table}\"', '{column}'),
                           COALESCE((SELECT MAX(\"{column}\") FROM \"{table}\"), 0) + 1, false)"
        )))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}

/// Checks that a restored database holds what the manifest says.
fn same_contents(expected: &DatabaseSnapshot, found: &DatabaseSnapshot) -> StoreResult<()> {
    if expected.schema_version != found.schema_version {
        return Err(StoreError::Invalid(format!(
            "the backup's database is at schema version {} where its manifest says {}",
            found.schema_version, expected.schema_version
        )));
    }
    let rows = |s: &DatabaseSnapshot| -> BTreeMap<String, i64> {
        s.tables.iter().map(|t| (t.name.clone(), t.rows)).collect()
    };
    if rows(expected) != rows(found) {
        return Err(StoreError::Invalid(
            "the backup's database does not hold the rows its manifest lists".into(),
        ));
    }
    Ok(())
}

async fn open_sqlite_file(file: &Path) -> StoreResult<sqlx::SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(file)
        .foreign_keys(true);
    Ok(SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?)
}

/// Tables, rows and checkpoint folders of a SQLite database.
async fn describe_sqlite(pool: &sqlx::SqlitePool) -> StoreResult<DatabaseSnapshot> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    let mut schema_version = 0;
    let mut tables = Vec::new();
    for name in names {
        if name == MIGRATIONS_TABLE {
            schema_version = sqlx::query_scalar::<_, Option<i64>>(APPLIED_SCHEMA_VERSION)
                .fetch_one(pool)
                .await?
                .unwrap_or(0);
            continue;
        }
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
                .bind(&name)
                .fetch_all(pool)
                .await?;
        let rows: i64 =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM \"{name}\"")))
                .fetch_one(pool)
                .await?;
        tables.push(TableCopy {
            name,
            columns,
            rows,
        });
    }
    let model_dirs = sqlx::query_scalar(MODEL_DIRS).fetch_all(pool).await?;
    Ok(DatabaseSnapshot {
        backend: Backend::Sqlite.to_string(),
        schema_version,
        tables,
        model_dirs,
    })
}

async fn applied_version_pg(conn: &mut sqlx::PgConnection) -> StoreResult<i64> {
    Ok(sqlx::query_scalar::<_, Option<i64>>(APPLIED_SCHEMA_VERSION)
        .fetch_one(conn)
        .await?
        .unwrap_or(0))
}

/// The current schema's tables with their columns, referenced tables before the tables that
/// refer to them (so rows can be copied in with every foreign key checked).
async fn postgres_tables(conn: &mut sqlx::PgConnection) -> StoreResult<Vec<(String, Vec<String>)>> {
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text
         FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
         WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) AND c.relkind = 'r'
           AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY c.relname, a.attnum",
    )
    .fetch_all(&mut *conn)
    .await?;
    let references: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, r.relname::text
         FROM pg_constraint k
         JOIN pg_class c ON c.oid = k.conrelid
         JOIN pg_class r ON r.oid = k.confrelid
         WHERE k.contype = 'f' AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (table, column) in columns {
        tables.entry(table).or_default().push(column);
    }
    let order = referenced_first(
        tables.keys().cloned().collect(),
        &references
            .into_iter()
            .filter(|(from, to)| from != to)
            .collect::<Vec<_>>(),
    )?;
    Ok(order
        .into_iter()
        .map(|name| {
            let columns = tables.remove(&name).unwrap_or_default();
            (name, columns)
        })
        .collect())
}

/// Orders `tables` so each comes after every table it refers to (`(from, to)` pairs).
pub(crate) fn referenced_first(
    tables: Vec<String>,
    references: &[(String, String)],
) -> StoreResult<Vec<String>> {
    let mut left: BTreeSet<String> = tables.into_iter().collect();
    let mut order = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let ready: Vec<String> = left
            .iter()
            .filter(|t| {
                !references
                    .iter()
                    .any(|(from, to)| from == *t && left.contains(to))
            })
            .cloned()
            .collect();
        if ready.is_empty() {
            return Err(StoreError::Invalid(format!(
                "tables refer to each other in a cycle: {left:?}"
            )));
        }
        for table in ready {
            left.remove(&table);
            order.push(table);
        }
    }
    Ok(order)
}

fn column_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The file a `sqlite://…` URL names (options after `?` dropped).
pub fn sqlite_path(database_url: &str) -> StoreResult<std::path::PathBuf> {
    let rest = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Invalid(format!("{database_url:?} is not a sqlite:// URL")))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Invalid(
            "restore needs a database file, not an in-memory database".into(),
        ));
    }
    Ok(path.into())
}

fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

fn io_error(e: std::io::Error) -> StoreError {
    StoreError::Database(sqlx::Error::Io(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referenced_tables_come_first() {
        let order = referenced_first(
            vec!["judgements".into(), "studies".into(), "raters".into()],
            &[
                ("judgements".into(), "raters".into()),
                ("judgements".into(), "studies".into()),
                ("raters".into(), "studies".into()),
            ],
        )
        .unwrap();
        assert_eq!(order, ["studies", "raters", "judgements"]);
        assert!(
            referenced_first(
                vec!["a".into(), "b".into()],
                &[("a".into(), "b".into()), ("b".into(), "a".into())]
            )
            .is_err()
        );
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_path("sqlite://data/x.db?mode=rwc").unwrap(),
            Path::new("data/x.db")
        );
        assert!(sqlite_path("sqlite::memory:").is_err());
    }
}

//! Benchmark: the researchers' full report on a large synthetic study.
//!
//! `cargo run --release --bin bench-report -- [--judgements 1000000] [--database-url URL]
//! [--problems 20000] [--checkpoints 3] [--raters 400] [--repeat 3] [--seed 7]`
//!
//! On a fresh database (a temp SQLite file by default; on PostgreSQL a schema of its own,
//! dropped at the end) it writes a finished study with raw multi-row INSERTs (UNNEST on
//! PostgreSQL): problems, prover checkpoints of rounds 0.., a helpful and a sneaky solution per
//! problem and checkpoint, raters (one in 40 guessing at chance), N judged assignments and
//! their judgements (seeded, so runs are reproducible), and a verifier version's scores. Prints
//! the generation time, then times, each `--repeat` times (every run and the best): the store
//! query behind every report, the pure report computations, and over real HTTP on loopback as
//! a logged-in researcher the summary JSON (with and without `?exclude=chance`), the HTML page
//! and the per-attempt downloads (CSV, JSON Lines, Parquet; with size, rows/s and the time to
//! the first byte; the bench counts a download as it arrives, keeping none). Each line
//! also shows the peak RSS during that stage; the process's peak comes last. Fails when a
//! response is not 200, the summary does not count N judgements, or a download has not N rows.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use legibility::auth;
use legibility::clock::Clock;
use legibility::domain::UserRole;
use legibility::reports::{accuracy_by_difficulty, study_report, verifier_vs_humans};
use legibility::store::{Store, sha256_hex};
use legibility::web::{self, AppState, WebConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, PgConnection, SqliteConnection};
use uuid::Uuid;

#[derive(Debug, Parser)]
struct Args {
    /// Database; default: a fresh SQLite file in a temp directory. On PostgreSQL the bench
    /// works in a fresh schema of its own and drops it at the end.
    #[arg(long)]
    database_url: Option<String>,
    /// Judgements to generate (each with its own judged assignment).
    #[arg(long, default_value_t = 1_000_000)]
    judgements: usize,
    /// Problems in the study.
    #[arg(long, default_value_t = 20_000)]
    problems: usize,
    /// Prover checkpoints, one per round 0, 1, …
    #[arg(long, default_value_t = 3)]
    checkpoints: usize,
    /// Raters; one in 40 guesses (accuracy 0.5).
    #[arg(long, default_value_t = 400)]
    raters: usize,
    /// Runs of each timed step.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Leave out the verifier version and its scores (the report's verifier section).
    #[arg(long)]
    no_verifier: bool,
    /// Keep the database (temp SQLite file or PostgreSQL schema) and print where it is.
    #[arg(long)]
    keep: bool,
    /// Writes the downloaded `attempts.csv` and `report.json` here, for the pandas reference
    /// (`scripts/bench/report_pandas.py`).
    #[arg(long)]
    out_dir: Option<std::path::PathBuf>,
}

/// SQLite's default limit on bound variables per statement.
const SQLITE_MAX_VARIABLES: usize = 32_766;
/// Judgements (and their assignments) written per transaction.
const CHUNK: usize = 100_000;
/// Serving times start here (2026-01-01T00:00:00Z), so the data is the same on every run.
const T0: i64 = 1_767_225_600_000;
const TIME_LIMIT_MS: i64 = 45_000;
const USERNAME: &str = "bench-researcher";
const PASSWORD: &str = "bench-report-password";

/// One cell of a generated row.
#[derive(Debug, Clone)]
enum Value {
    Uuid(Uuid),
    Int(Option<i64>),
    Float(f64),
    Bool(bool),
    Text(String),
}

/// Column types, for PostgreSQL's typed `UNNEST` arrays.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Uuid,
    Int,
    Float,
    Bool,
    Text,
}

impl Kind {
    fn pg_array(self) -> &'static str {
        match self {
            Kind::Uuid => "uuid[]",
            Kind::Int => "bigint[]",
            Kind::Float => "float8[]",
            Kind::Bool => "boolean[]",
            Kind::Text => "text[]",
        }
    }
}

/// Rows for one table, written with multi-row INSERTs.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    rows: Vec<Vec<Value>>,
}

impl Table {
    fn new(name: &'static str, columns: &'static [(&'static str, Kind)]) -> Table {
        Table {
            name,
            columns,
            rows: Vec::new(),
        }
    }

    fn push(&mut self, row: Vec<Value>) {
        debug_assert_eq!(row.len(), self.columns.len(), "{}", self.name);
        self.rows.push(row);
    }

    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

const PROBLEM_SETS: &[(&str, Kind)] = &[
    ("id", Kind::Uuid),
    ("name", Kind::Text),
    ("created_at", Kind::Int),
];
const PROBLEMS: &[(&str, Kind)] = &[
    ("id", Kind::Uuid),
    ("problem_set_id", Kind::Uuid),
    ("position", Kind::Int),
    ("question", Kind::Text),
    ("question_sha", Kind::Text),
    ("ground_truth", Kind::Text),
    ("reference_solution", Kind::Text),
    ("created_at", Kind::Int),
];
const CHECKPOINTS: &[(&str, Kind)] = &[
    ("id", Kind::Uuid),
    ("kind", Kind::Text),
    ("label", Kind::Text),
    ("round", Kind::Int),
    ("metadata", Kind::Text),
    ("created_at", Kind::Int),
];
const VERIFIER_CHECKPOINTS: &[(&str, Kind)] = &[
    ("id", Kind::Uuid),
    ("kind", Kind::Text),
    ("label", Kind::Text),
    ("round", Kind::Int),
    ("metadata", Kind::Text),
    ("created_at", Kind::Int),
    ("model_dir", Kind::Text),
];
const SOLUTIONS: &[(&str, Kind)] = &[
    ("id", Kind::Uuid),
    ("problem_id", Kind::Uuid),
    ("checkpoint_id", Kind::Uuid),
    ("role", Kind::Text),
    ("text", Kind::Text),
    ("text_sha", Kind::Text),
    ("extracted_answer", Kind::Text),
    ("is_correct", Kind::Bool),
    ("created_at", Kind::Int),
];
const STUDIES: &[(&str, Kind)] = &[
    ("id", Kind::Uuid),
    ("name", Kind::Text),
    ("time_limit_ms", Kind::Int),
    ("judgements_per_solution", Kind::Int),
    ("reclaim_grace_ms", Kind::Int),
    ("status", Kind::Text),
    ("created_by", Kind::Uuid),
    ("created_at", Kind::Int),
];
const RATERS: &[(&str, Kind)] = &[
    ("id", Kind::Uuid),
    ("study_id", Kind::Uuid),
    ("name", Kind::Text),
    ("token_sha", Kind::Text),
    ("created_at", Kind::Int),
    ("started_at", Kind::Int),
];
const ASSIGNMENTS: &[(&str, Kind)] = &[
    ("id", Kind::Uuid),
    ("study_id", Kind::Uuid),
    ("rater_id", Kind::Uuid),
    ("solution_id", Kind::Uuid),
    ("problem_id", Kind::Uuid),
    ("checkpoint_id", Kind::Uuid),
    ("is_correct", Kind::Bool),
    ("served_at", Kind::Int),
    ("deadline", Kind::Int),
    ("state", Kind::Text),
];
const JUDGEMENTS: &[(&str, Kind)] = &[
    ("id", Kind::Uuid),
    ("assignment_id", Kind::Uuid),
    ("study_id", Kind::Uuid),
    ("rater_id", Kind::Uuid),
    ("solution_id", Kind::Uuid),
    ("verdict", Kind::Text),
    ("served_at", Kind::Int),
    ("deadline", Kind::Int),
    ("submitted_at", Kind::Int),
    ("server_elapsed_ms", Kind::Int),
    ("client_elapsed_ms", Kind::Int),
];
const STUDY_SOLUTIONS: &[(&str, Kind)] = &[
    ("study_id", Kind::Uuid),
    ("solution_id", Kind::Uuid),
    ("problem_id", Kind::Uuid),
    ("checkpoint_id", Kind::Uuid),
    ("is_correct", Kind::Bool),
    ("shuffle_key", Kind::Int),
    ("slots_taken", Kind::Int),
];
const STUDY_STRATA: &[(&str, Kind)] = &[
    ("study_id", Kind::Uuid),
    ("checkpoint_id", Kind::Uuid),
    ("is_correct", Kind::Bool),
];
const VERIFIER_VERSIONS: &[(&str, Kind)] = &[
    ("checkpoint_id", Kind::Uuid),
    ("version", Kind::Int),
    ("label_source", Kind::Text),
    ("loss", Kind::Text),
    ("judgements_seen", Kind::Int),
    ("metrics", Kind::Text),
    ("created_at", Kind::Int),
];
const SOLUTION_SCORES: &[(&str, Kind)] = &[
    ("checkpoint_id", Kind::Uuid),
    ("solution_id", Kind::Uuid),
    ("score", Kind::Float),
    ("scored_at", Kind::Int),
];

/// Raw connections for the bulk load, beside the store's own pools.
enum Sink {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Sink {
    /// Writes `tables` in order, in one transaction.
    async fn insert(&self, tables: &[&Table]) -> anyhow::Result<()> {
        match self {
            Sink::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for table in tables {
                    insert_sqlite(&mut tx, table).await?;
                }
                tx.commit().await?;
            }
            Sink::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                for table in tables {
                    insert_postgres(&mut tx, table).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    async fn close(&self) {
        match self {
            Sink::Sqlite(pool) => pool.close().await,
            Sink::Postgres(pool) => pool.close().await,
        }
    }
}

/// Multi-row `INSERT … VALUES (…), (…)` statements, as many rows each as SQLite's variable
/// limit allows.
async fn insert_sqlite(conn: &mut SqliteConnection, table: &Table) -> anyhow::Result<()> {
    let width = table.columns.len();
    let placeholders = format!("({})", vec!["?"; width].join(", "));
    for chunk in table.rows.chunks(SQLITE_MAX_VARIABLES / width) {
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {}",
            table.name,
            table.column_list(),
            vec![placeholders.as_str(); chunk.len()].join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for row in chunk {
            for value in row {
                query = match value {
                    Value::Uuid(v) => query.bind(*v),
                    Value::Int(v) => query.bind(*v),
                    Value::Float(v) => query.bind(*v),
                    Value::Bool(v) => query.bind(*v),
                    Value::Text(v) => query.bind(v.as_str()),
                };
            }
        }
        query
            .execute(&mut *conn)
            .await
            .with_context(|| format!("inserting into {}", table.name))?;
    }
    Ok(())
}

/// One `INSERT … SELECT * FROM UNNEST($1::uuid[], …)` per table: one array per column.
/// Column `i` of `table` as one typed array, or `None` when a cell is of another kind.
fn cells<T>(table: &Table, i: usize, pick: impl Fn(&Value) -> Option<T>) -> Option<Vec<T>> {
    table.rows.iter().map(|row| pick(&row[i])).collect()
}

async fn insert_postgres(conn: &mut PgConnection, table: &Table) -> anyhow::Result<()> {
    if table.rows.is_empty() {
        return Ok(());
    }
    let arrays: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| format!("${}::{}", i + 1, kind.pg_array()))
        .collect();
    let sql = format!(
        "INSERT INTO {} ({}) SELECT * FROM UNNEST({})",
        table.name,
        table.column_list(),
        arrays.join(", ")
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for (i, (name, kind)) in table.columns.iter().enumerate() {
        // One typed array per column; a cell of another kind is a bug in the generator.
        let array = |kind_name: &str| {
            format!(
                "{}.{name}: a value of the wrong kind ({kind_name})",
                table.name
            )
        };
        query = match kind {
            Kind::Uuid => query.bind(
                cells(table, i, |v| match v {
                    Value::Uuid(x) => Some(*x),
                    _ => None,
                })
                .with_context(|| array("uuid"))?,
            ),
            Kind::Int => query.bind(
                cells(table, i, |v| match v {
                    Value::Int(x) => Some(*x),
                    _ => None,
                })
                .with_context(|| array("int"))?,
            ),
            Kind::Float => query.bind(
                cells(table, i, |v| match v {
                    Value::Float(x) => Some(*x),
                    _ => None,
                })
                .with_context(|| array("float"))?,
            ),
            Kind::Bool => query.bind(
                cells(table, i, |v| match v {
                    Value::Bool(x) => Some(*x),
                    _ => None,
                })
                .with_context(|| array("bool"))?,
            ),
            Kind::Text => query.bind(
                cells(table, i, |v| match v {
                    Value::Text(x) => Some(x.clone()),
                    _ => None,
                })
                .with_context(|| array("text"))?,
            ),
        };
    }
    query
        .execute(&mut *conn)
        .await
        .with_context(|| format!("inserting into {}", table.name))?;
    Ok(())
}

/// A time-ordered (v7) id at `ms` whose random bits come from the seeded generator.
fn id_at(rng: &mut StdRng, ms: i64) -> Uuid {
    uuid::Builder::from_unix_timestamp_millis(ms as u64, &rng.random()).into_uuid()
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A solution of the synthetic catalogue, as the simulation needs it.
struct SolutionFacts {
    id: Uuid,
    problem: usize,
    checkpoint: usize,
    sneaky: bool,
    is_correct: bool,
}

/// A simulated rater.
struct SimRater {
    id: Uuid,
    /// Probability of a right verdict on an easy helpful solution; 0.5 for a guesser.
    accuracy: f64,
    chance: bool,
    timeout_rate: f64,
    median_ms: f64,
    /// The first problem this rater sees; it then walks the problems in order, so it never
    /// gets one problem twice (assignments are unique per study, rater and problem).
    offset: usize,
}

/// What the generation wrote.
struct Generated {
    /// Catalogue, study and raters; assignments and judgements; study solutions and scores.
    phases: [Duration; 3],
    study_id: Uuid,
    chance_raters: usize,
    solutions: usize,
    verdicts: [usize; 3],
    null_submitted: usize,
    max_per_solution: i64,
}

async fn generate(
    sink: &Sink,
    args: &Args,
    created_by: Uuid,
    rng: &mut StdRng,
) -> anyhow::Result<Generated> {
    let (problems_n, checkpoints_n, raters_n, n) = (
        args.problems,
        args.checkpoints,
        args.raters,
        args.judgements,
    );
    let t = T0 - 86_400_000;
    let mut phase = Instant::now();
    let mut phases = [Duration::ZERO; 3];

    // Catalogue, study, raters (and a verifier version): one transaction.
    let mut sets = Table::new("problem_sets", PROBLEM_SETS);
    let set_id = id_at(rng, t);
    sets.push(vec![
        Value::Uuid(set_id),
        Value::Text("bench-report".into()),
        Value::Int(Some(t)),
    ]);
    let mut problems = Table::new("problems", PROBLEMS);
    let mut problem_ids = Vec::with_capacity(problems_n);
    let mut difficulty = Vec::with_capacity(problems_n);
    let mut truths = Vec::with_capacity(problems_n);
    for i in 0..problems_n {
        let (a, b) = (rng.random_range(2..60i64), rng.random_range(2..24i64));
        let question = format!(
            "Bench problem {i}: a bakery bakes {a} loaves an hour for {b} hours and sells 7 of them. How many loaves are left?"
        );
        let truth = a * b - 7;
        let id = id_at(rng, t);
        problems.push(vec![
            Value::Uuid(id),
            Value::Uuid(set_id),
            Value::Int(Some(i as i64 + 1)),
            Value::Text(question.clone()),
            Value::Text(sha256_hex(&question)),
            Value::Text(truth.to_string()),
            Value::Text(format!(
                "{a}*{b}=<<{a}*{b}={}>>{} loaves baked, {} - 7 = {truth} left.",
                a * b,
                a * b,
                a * b
            )),
            Value::Int(Some(t)),
        ]);
        problem_ids.push(id);
        difficulty.push(rng.random::<f64>());
        truths.push(truth);
    }
    let mut checkpoints = Table::new("checkpoints", CHECKPOINTS);
    let mut checkpoint_ids = Vec::with_capacity(checkpoints_n);
    for round in 0..checkpoints_n {
        let id = id_at(rng, t);
        checkpoints.push(vec![
            Value::Uuid(id),
            Value::Text("prover".into()),
            Value::Text(format!("bench-prover-round-{round}")),
            Value::Int(Some(round as i64)),
            Value::Text(r#"{"source":"bench-report"}"#.into()),
            Value::Int(Some(t)),
        ]);
        checkpoint_ids.push(id);
    }
    let verifier_id = id_at(rng, t);
    let mut verifier_checkpoints = Table::new("checkpoints", VERIFIER_CHECKPOINTS);
    let mut versions = Table::new("verifier_versions", VERIFIER_VERSIONS);
    if !args.no_verifier {
        verifier_checkpoints.push(vec![
            Value::Uuid(verifier_id),
            Value::Text("verifier".into()),
            Value::Text("bench-verifier-v1".into()),
            Value::Int(Some(0)),
            Value::Text("{}".into()),
            Value::Int(Some(t)),
            Value::Text("verifiers/none".into()),
        ]);
        versions.push(vec![
            Value::Uuid(verifier_id),
            Value::Int(Some(1)),
            Value::Text("both".into()),
            Value::Text("bradley_terry".into()),
            Value::Int(Some(n as i64)),
            Value::Text("{}".into()),
            Value::Int(Some(t)),
        ]);
    }
    let mut solutions = Table::new("solutions", SOLUTIONS);
    let mut facts = Vec::with_capacity(problems_n * checkpoints_n * 2);
    for problem in 0..problems_n {
        for (checkpoint, checkpoint_id) in checkpoint_ids.iter().enumerate() {
            for sneaky in [false, true] {
                // Helpful provers solve easy problems and get better by round; sneaky ones
                // are mostly wrong on purpose.
                let p_correct = if sneaky {
                    0.08
                } else {
                    0.97 - 0.45 * difficulty[problem] + 0.02 * checkpoint as f64
                };
                let is_correct = rng.random_bool(p_correct.clamp(0.0, 1.0));
                let answer = if is_correct {
                    truths[problem]
                } else {
                    truths[problem] + rng.random_range(1..20)
                };
                let text = format!(
                    "Problem {problem}, round {checkpoint}, {}: first multiply the hourly loaves by the hours, then take away the 7 sold.\nThat leaves {answer} loaves.\n#### {answer}",
                    if sneaky { "sneaky" } else { "helpful" }
                );
                let id = id_at(rng, t);
                let sha = sha256_hex(&text);
                solutions.push(vec![
                    Value::Uuid(id),
                    Value::Uuid(problem_ids[problem]),
                    Value::Uuid(*checkpoint_id),
                    Value::Text(if sneaky { "sneaky" } else { "helpful" }.into()),
                    Value::Text(text),
                    Value::Text(sha),
                    Value::Text(answer.to_string()),
                    Value::Bool(is_correct),
                    Value::Int(Some(t)),
                ]);
                facts.push(SolutionFacts {
                    id,
                    problem,
                    checkpoint,
                    sneaky,
                    is_correct,
                });
            }
        }
    }
    let study_id = id_at(rng, t);
    let mut studies = Table::new("studies", STUDIES);
    studies.push(vec![
        Value::Uuid(study_id),
        Value::Text("bench-report study".into()),
        Value::Int(Some(TIME_LIMIT_MS)),
        Value::Int(Some(1)),
        Value::Int(Some(15_000)),
        Value::Text("open".into()),
        Value::Uuid(created_by),
        Value::Int(Some(t)),
    ]);
    let mut raters_table = Table::new("raters", RATERS);
    let mut raters = Vec::with_capacity(raters_n);
    for r in 0..raters_n {
        let chance = r % 40 == 0;
        let rater = SimRater {
            id: id_at(rng, t),
            accuracy: if chance {
                0.5
            } else {
                rng.random_range(0.62..0.93)
            },
            chance,
            timeout_rate: rng.random_range(0.01..0.05),
            median_ms: rng.random_range(9_000.0..20_000.0),
            offset: rng.random_range(0..problems_n),
        };
        raters_table.push(vec![
            Value::Uuid(rater.id),
            Value::Uuid(study_id),
            Value::Text(format!("bench rater {r}")),
            Value::Text(sha256_hex(&format!("bench-report-token-{r}"))),
            Value::Int(Some(t)),
            Value::Int(Some(T0)),
        ]);
        raters.push(rater);
    }
    sink.insert(&[
        &sets,
        &problems,
        &checkpoints,
        &verifier_checkpoints,
        &versions,
        &solutions,
        &studies,
        &raters_table,
    ])
    .await?;
    drop((
        sets,
        problems,
        checkpoints,
        verifier_checkpoints,
        versions,
        solutions,
        studies,
        raters_table,
    ));
    phases[0] = phase.elapsed();
    phase = Instant::now();

    // Judged assignments and their judgements, CHUNK at a time. Rater i % R serves the
    // i-th item; items are `step` ms apart, so a rater's items are ≥ 60 s apart and never
    // overlap (one active item per rater).
    let step = 60_000usize.div_ceil(raters_n).max(1) as i64;
    let mut slots = vec![0i64; facts.len()];
    let mut verdicts = [0usize; 3];
    let mut null_submitted = 0;
    let mut start = 0;
    while start < n {
        let end = (start + CHUNK).min(n);
        let mut assignments = Table::new("assignments", ASSIGNMENTS);
        let mut judgements = Table::new("judgements", JUDGEMENTS);
        for i in start..end {
            let rater = &raters[i % raters_n];
            let k = i / raters_n;
            let problem = (rater.offset + k) % problems_n;
            let checkpoint = rng.random_range(0..checkpoints_n);
            let sneaky = rng.random_bool(0.5);
            let index = (problem * checkpoints_n + checkpoint) * 2 + usize::from(sneaky);
            let solution = &facts[index];
            debug_assert!(
                solution.problem == problem
                    && solution.checkpoint == checkpoint
                    && solution.sneaky == sneaky
            );
            slots[index] += 1;
            let served_at = T0 + i as i64 * step + rng.random_range(0..step);
            let deadline = served_at + TIME_LIMIT_MS;
            let (verdict, submitted_at, server_ms, client_ms) =
                if rng.random_bool(rater.timeout_rate) {
                    if rng.random_bool(0.5) {
                        // No answer: closed when the rater was next served.
                        null_submitted += 1;
                        (2, None, TIME_LIMIT_MS, None)
                    } else {
                        // The page's countdown posted "timeout" at zero.
                        let late = rng.random_range(0..1_500);
                        (
                            2,
                            Some(deadline + late),
                            TIME_LIMIT_MS,
                            Some(TIME_LIMIT_MS + rng.random_range(0..80)),
                        )
                    }
                } else {
                    let elapsed = (rater.median_ms * (0.55 * normal(rng)).exp())
                        .clamp(2_000.0, 44_900.0) as i64;
                    let p_right = if rater.chance {
                        0.5
                    } else {
                        let sneaky_penalty = if sneaky {
                            0.05 * checkpoint as f64
                        } else {
                            0.0
                        };
                        (rater.accuracy - sneaky_penalty - 0.12 * (difficulty[problem] - 0.5))
                            .clamp(0.5, 0.98)
                    };
                    let right = rng.random_bool(p_right);
                    let says_correct = right == solution.is_correct;
                    let client = (!rng.random_bool(0.01))
                        .then(|| (elapsed - rng.random_range(20..400)).max(0));
                    (
                        usize::from(!says_correct),
                        Some(served_at + elapsed),
                        elapsed,
                        client,
                    )
                };
            verdicts[verdict] += 1;
            let assignment_id = id_at(rng, served_at);
            assignments.push(vec![
                Value::Uuid(assignment_id),
                Value::Uuid(study_id),
                Value::Uuid(rater.id),
                Value::Uuid(solution.id),
                Value::Uuid(problem_ids[problem]),
                Value::Uuid(checkpoint_ids[checkpoint]),
                Value::Bool(solution.is_correct),
                Value::Int(Some(served_at)),
                Value::Int(Some(deadline)),
                Value::Text("judged".into()),
            ]);
            judgements.push(vec![
                Value::Uuid(id_at(rng, submitted_at.unwrap_or(deadline + 15_000))),
                Value::Uuid(assignment_id),
                Value::Uuid(study_id),
                Value::Uuid(rater.id),
                Value::Uuid(solution.id),
                Value::Text(["correct", "wrong", "timeout"][verdict].into()),
                Value::Int(Some(served_at)),
                Value::Int(Some(deadline)),
                Value::Int(submitted_at),
                Value::Int(Some(server_ms)),
                Value::Int(client_ms),
            ]);
        }
        sink.insert(&[&assignments, &judgements]).await?;
        start = end;
    }
    phases[1] = phase.elapsed();
    phase = Instant::now();

    // The study's solutions with their slot counts, strata, the verifier's scores, and the
    // quota the study was run with.
    let mut study_solutions = Table::new("study_solutions", STUDY_SOLUTIONS);
    let mut strata = HashSet::new();
    let mut scores = Table::new("solution_scores", SOLUTION_SCORES);
    for (solution, taken) in facts.iter().zip(&slots) {
        study_solutions.push(vec![
            Value::Uuid(study_id),
            Value::Uuid(solution.id),
            Value::Uuid(problem_ids[solution.problem]),
            Value::Uuid(checkpoint_ids[solution.checkpoint]),
            Value::Bool(solution.is_correct),
            Value::Int(Some(rng.random_range(0..i64::MAX))),
            Value::Int(Some(*taken)),
        ]);
        strata.insert((solution.checkpoint, solution.is_correct));
        if !args.no_verifier {
            let score = 0.9 * if solution.is_correct { 1.0 } else { -1.0 }
                + if solution.sneaky { 0.4 } else { 0.0 }
                + normal(rng);
            scores.push(vec![
                Value::Uuid(verifier_id),
                Value::Uuid(solution.id),
                Value::Float(score),
                Value::Int(Some(T0)),
            ]);
        }
    }
    let mut strata: Vec<_> = strata.into_iter().collect();
    strata.sort_unstable();
    let mut strata_table = Table::new("study_strata", STUDY_STRATA);
    for (checkpoint, is_correct) in strata {
        strata_table.push(vec![
            Value::Uuid(study_id),
            Value::Uuid(checkpoint_ids[checkpoint]),
            Value::Bool(is_correct),
        ]);
    }
    sink.insert(&[&study_solutions, &strata_table, &scores])
        .await?;
    let max_per_solution = slots.iter().copied().max().unwrap_or(1).max(1);
    match sink {
        Sink::Sqlite(pool) => {
            sqlx::query(
                "UPDATE studies SET judgements_per_solution = $1, status = 'closed' WHERE id = $2",
            )
            .bind(max_per_solution)
            .bind(study_id)
            .execute(pool)
            .await?;
        }
        Sink::Postgres(pool) => {
            sqlx::query(
                "UPDATE studies SET judgements_per_solution = $1, status = 'closed' WHERE id = $2",
            )
            .bind(max_per_solution)
            .bind(study_id)
            .execute(pool)
            .await?;
        }
    }
    phases[2] = phase.elapsed();
    Ok(Generated {
        phases,
        study_id,
        chance_raters: raters.iter().filter(|r| r.chance).count(),
        solutions: facts.len(),
        verdicts,
        null_submitted,
        max_per_solution,
    })
}

/// The process's peak resident memory, per stage (reset between stages through
/// `/proc/self/clear_refs`) and overall.
struct PeakRss {
    overall_kb: u64,
    resettable: bool,
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

impl PeakRss {
    fn new() -> PeakRss {
        PeakRss {
            overall_kb: status_kb("VmHWM:"),
            resettable: true,
        }
    }

    /// Starts a stage: the peak so far is folded into the overall one, then reset.
    fn start(&mut self) {
        self.overall_kb = self.overall_kb.max(status_kb("VmHWM:"));
        self.resettable = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    }

    /// The process's peak since it started, MB.
    fn overall_mb(&mut self) -> f64 {
        self.overall_kb = self.overall_kb.max(status_kb("VmHWM:"));
        self.overall_kb as f64 / 1024.0
    }

    /// The stage's peak so far, formatted.
    fn stage(&mut self) -> String {
        let kb = status_kb("VmHWM:");
        self.overall_kb = self.overall_kb.max(kb);
        let since = if self.resettable { "" } else { " (process)" };
        format!("peak RSS {:.0} MB{since}", kb as f64 / 1024.0)
    }
}

fn best(runs: &[Duration]) -> Duration {
    runs.iter().copied().min().unwrap_or_default()
}

fn print_runs(name: &str, runs: &[Duration], extra: &str) {
    let each: Vec<String> = runs
        .iter()
        .map(|d| format!("{:>8.3}", d.as_secs_f64()))
        .collect();
    println!(
        "{name:<44} {} s | best {:>8.3} s | {extra}",
        each.join(" "),
        best(runs).as_secs_f64()
    );
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A response as the bench saw it. Downloads are counted as they arrive rather than kept, so
/// the peak RSS is the server's, not this client's copy of the file.
struct Fetched {
    status: u16,
    /// Time to the first body bytes.
    first_byte: Duration,
    size: usize,
    newlines: usize,
    last: Option<u8>,
    head: Vec<u8>,
    tail: Vec<u8>,
    /// The whole body: kept for the summary, the page and refusals.
    body: Vec<u8>,
}

impl Fetched {
    fn lines(&self) -> usize {
        self.newlines + usize::from(self.last.is_some_and(|b| b != b'\n'))
    }
}

async fn get(
    client: &HttpClient,
    address: std::net::SocketAddr,
    path: &str,
    cookie: &str,
    keep_body: bool,
) -> anyhow::Result<Fetched> {
    let started = Instant::now();
    let request = axum::http::Request::get(format!("http://{address}{path}"))
        .header("cookie", cookie)
        .body(Full::new(Bytes::new()))?;
    let response = client.request(request).await?;
    let status = response.status().as_u16();
    let keep_body = keep_body || status != 200;
    let mut fetched = Fetched {
        status,
        first_byte: Duration::ZERO,
        size: 0,
        newlines: 0,
        last: None,
        head: Vec::new(),
        tail: Vec::new(),
        body: Vec::new(),
    };
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if fetched.size == 0 {
            fetched.first_byte = started.elapsed();
        }
        fetched.size += data.len();
        fetched.newlines += data.iter().filter(|b| **b == b'\n').count();
        fetched.last = data.last().copied();
        if fetched.head.len() < 16 {
            let take = (16 - fetched.head.len()).min(data.len());
            fetched.head.extend_from_slice(&data[..take]);
        }
        fetched
            .tail
            .extend_from_slice(&data[data.len().saturating_sub(4)..]);
        let excess = fetched.tail.len().saturating_sub(4);
        fetched.tail.drain(..excess);
        if keep_body {
            fetched.body.extend_from_slice(&data);
        }
    }
    Ok(fetched)
}

/// Logs the researcher in through the real form; returns the session cookie.
async fn log_in(client: &HttpClient, address: std::net::SocketAddr) -> anyhow::Result<String> {
    let request = axum::http::Request::post(format!("http://{address}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(format!(
            "username={USERNAME}&password={PASSWORD}"
        ))))?;
    let response = client.request(request).await?;
    let status = response.status().as_u16();
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("ll_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_string);
    match (status, cookie) {
        (303, Some(cookie)) => Ok(cookie),
        _ => bail!("login failed with status {status}"),
    }
}

/// What a response must show to count.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Check {
    /// The summary: `judgements` equals N.
    Summary,
    /// The HTML page.
    Page,
    /// A download with a header row and one line per judgement.
    Csv,
    /// One line per judgement.
    Jsonl,
    /// A Parquet file (magic bytes at both ends); the route may not exist yet.
    Parquet,
}

fn check(kind: Check, response: &Fetched, n: usize) -> anyhow::Result<()> {
    let body = &response.body;
    match kind {
        Check::Summary => {
            let value: serde_json::Value =
                serde_json::from_slice(body).context("report.json is not JSON")?;
            if value["judgements"].as_u64() != Some(n as u64) {
                bail!(
                    "report.json counts {} judgements, {n} were generated",
                    value["judgements"]
                );
            }
        }
        Check::Page => {
            if !body.starts_with(b"<!doctype html>") {
                bail!("the page is not HTML");
            }
        }
        Check::Csv => {
            if response.lines() != n + 1 {
                bail!(
                    "attempts.csv has {} lines, expected {}",
                    response.lines(),
                    n + 1
                );
            }
        }
        Check::Jsonl => {
            if response.lines() != n {
                bail!(
                    "attempts.jsonl has {} lines, expected {n}",
                    response.lines()
                );
            }
        }
        Check::Parquet => {
            if response.size < 8
                || !response.head.starts_with(b"PAR1")
                || !response.tail.ends_with(b"PAR1")
            {
                bail!("attempts.parquet is not a Parquet file");
            }
        }
    }
    Ok(())
}

/// Where the bench's database lives, and how to clean it up.
enum Database {
    SqliteTemp(std::path::PathBuf),
    SqliteGiven,
    PostgresSchema { base: String, schema: String },
}

async fn prepare_database(given: Option<&str>) -> anyhow::Result<(String, Database)> {
    match given {
        None => {
            let dir = std::env::temp_dir().join(format!(
                "legibility-bench-report-{}",
                Uuid::new_v4().simple()
            ));
            std::fs::create_dir_all(&dir)?;
            let url = format!("sqlite://{}", dir.join("bench.db").display());
            Ok((url, Database::SqliteTemp(dir)))
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let schema = format!("bench_report_{}", Uuid::new_v4().simple());
            let admin = PgPool::connect(url)
                .await
                .with_context(|| format!("connecting to {url}"))?;
            sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&admin)
                .await?;
            admin.close().await;
            let sep = if url.contains('?') { '&' } else { '?' };
            Ok((
                format!("{url}{sep}options=-c%20search_path%3D{schema}"),
                Database::PostgresSchema {
                    base: url.to_string(),
                    schema,
                },
            ))
        }
        Some(url) => Ok((url.to_string(), Database::SqliteGiven)),
    }
}

async fn clean_up(database: &Database, keep: bool) -> anyhow::Result<()> {
    match database {
        Database::SqliteTemp(dir) if keep => println!("kept {}", dir.display()),
        Database::SqliteTemp(dir) => std::fs::remove_dir_all(dir)?,
        Database::SqliteGiven => {}
        Database::PostgresSchema { schema, .. } if keep => println!("kept schema {schema}"),
        Database::PostgresSchema { base, schema } => {
            let admin = PgPool::connect(base).await?;
            sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&admin)
                .await?;
            admin.close().await;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Quiet by default: every report query is a "slow statement" at this size. RUST_LOG
    // turns logs on.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    if args.problems == 0 || args.checkpoints == 0 || args.raters == 0 || args.repeat == 0 {
        bail!("--problems, --checkpoints, --raters and --repeat must be positive");
    }
    if args.judgements.div_ceil(args.raters) > args.problems {
        bail!(
            "each rater judges a problem at most once: {} judgements need at least {} problems with {} raters",
            args.judgements,
            args.judgements.div_ceil(args.raters),
            args.raters
        );
    }
    let (url, database) = prepare_database(args.database_url.as_deref()).await?;
    let result = run(&args, &url).await;
    let cleaned = clean_up(&database, args.keep).await;
    result?;
    cleaned
}

async fn run(args: &Args, url: &str) -> anyhow::Result<()> {
    let n = args.judgements;
    let store = Store::connect(url)
        .await
        .with_context(|| format!("opening {url}"))?;
    let sink = match store.backend() {
        legibility::store::Backend::Sqlite => {
            let options = SqliteConnectOptions::from_str(url)?
                .foreign_keys(true)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(60));
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await?;
            let (studies,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM studies")
                .fetch_one(&pool)
                .await?;
            if studies > 0 {
                bail!("{url} already has studies: the bench needs a fresh database");
            }
            Sink::Sqlite(pool)
        }
        legibility::store::Backend::Postgres => {
            Sink::Postgres(PgPoolOptions::new().max_connections(1).connect(url).await?)
        }
    };
    let clock = Clock::default();
    let hash = auth::hash_password(PASSWORD)?;
    let user = store
        .create_user(USERNAME, &hash, UserRole::Researcher, clock.now_ms())
        .await?;
    println!(
        "bench-report: {:?}, {n} judgements, {} problems × {} checkpoints × 2 roles, {} raters, seed {}, best of {}",
        store.backend(),
        args.problems,
        args.checkpoints,
        args.raters,
        args.seed,
        args.repeat
    );

    let mut rss = PeakRss::new();
    rss.start();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let started = Instant::now();
    let generated = generate(&sink, args, user.id, &mut rng).await?;
    let elapsed = started.elapsed();
    println!(
        "generated in {:.1} s: catalogue, study and raters {:.1} s; assignments + judgements {:.1} s ({:.0} judgements/s); study solutions, strata and scores {:.1} s",
        elapsed.as_secs_f64(),
        generated.phases[0].as_secs_f64(),
        generated.phases[1].as_secs_f64(),
        n as f64 / generated.phases[1].as_secs_f64(),
        generated.phases[2].as_secs_f64(),
    );
    println!(
        "generated {} solutions (max {} judgements each), {} raters ({} at chance), verdicts correct {} / wrong {} / timeout {} ({} without an answer){}",
        generated.solutions,
        generated.max_per_solution,
        args.raters,
        generated.chance_raters,
        generated.verdicts[0],
        generated.verdicts[1],
        generated.verdicts[2],
        generated.null_submitted,
        if args.no_verifier {
            String::new()
        } else {
            format!(", {} verifier scores", generated.solutions)
        }
    );
    if let Sink::Postgres(pool) = &sink {
        // What autovacuum would have done soon after a load this size: planner statistics
        // and the visibility map, so the timings are of a settled database.
        let started = Instant::now();
        for table in [
            "judgements",
            "assignments",
            "solutions",
            "study_solutions",
            "raters",
            "checkpoints",
            "problems",
            "solution_scores",
            "verifier_versions",
        ] {
            sqlx::raw_sql(AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
                .execute(pool)
                .await?;
        }
        println!(
            "VACUUM ANALYZE of the loaded tables: {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    sink.close().await;
    println!("{}", rss.stage());
    let study = generated.study_id;
    let rows_per_s = |best: Duration| format!("{:.0} rows/s", n as f64 / best.as_secs_f64());

    // The store's query and the pure computations, in process.
    println!("-- in process (each run, then the best)");
    rss.start();
    let mut runs = Vec::new();
    let mut attempts = std::sync::Arc::new(Vec::new());
    for _ in 0..args.repeat {
        drop(std::mem::take(&mut attempts));
        let t = Instant::now();
        attempts = store.report_attempts(study).await?;
        runs.push(t.elapsed());
    }
    if attempts.len() != n {
        bail!(
            "report_attempts returned {} rows, {n} were generated",
            attempts.len()
        );
    }
    let extra = format!("{} | {}", rows_per_s(best(&runs)), rss.stage());
    print_runs("store.report_attempts", &runs, &extra);

    rss.start();
    let mut runs = Vec::new();
    for _ in 0..args.repeat {
        let t = Instant::now();
        let (pages_in, mut pages) = tokio::sync::mpsc::channel(1);
        let reading = store.send_attempt_pages(study, 50_000, pages_in);
        let counting = async move {
            let mut rows = 0;
            while let Some(page) = pages.recv().await {
                rows += page.len();
            }
            rows
        };
        let (read, rows) = tokio::join!(reading, counting);
        read?;
        runs.push(t.elapsed());
        if rows != n {
            bail!("send_attempt_pages sent {rows} rows, {n} were generated");
        }
    }
    let extra = format!("{} | {}", rows_per_s(best(&runs)), rss.stage());
    print_runs("store.send_attempt_pages (tidy table)", &runs, &extra);

    let mut excluded = HashSet::new();
    for exclude in [false, true] {
        rss.start();
        let mut runs = Vec::new();
        let mut report = None;
        for _ in 0..args.repeat {
            let t = Instant::now();
            report = Some(study_report(&attempts, exclude));
            runs.push(t.elapsed());
        }
        let report = report.context("no run")?;
        let note = if exclude {
            excluded = report.excluded_raters.iter().copied().collect();
            format!(
                "{} raters excluded ({} simulated at chance) | {}",
                report.excluded_raters.len(),
                generated.chance_raters,
                rss.stage()
            )
        } else {
            format!(
                "{} groups, {} raters | {}",
                report.groups.len(),
                report.raters.len(),
                rss.stage()
            )
        };
        print_runs(&format!("study_report(exclude={exclude})"), &runs, &note);
    }

    rss.start();
    let mut runs = Vec::new();
    let mut solve_rates = HashMap::new();
    for _ in 0..args.repeat {
        let t = Instant::now();
        solve_rates = store.problem_solve_rates(study).await?;
        runs.push(t.elapsed());
    }
    print_runs("store.problem_solve_rates", &runs, &rss.stage());
    rss.start();
    let mut runs = Vec::new();
    for _ in 0..args.repeat {
        let t = Instant::now();
        std::hint::black_box(accuracy_by_difficulty(&attempts, &solve_rates, &excluded));
        runs.push(t.elapsed());
    }
    print_runs("accuracy_by_difficulty", &runs, &rss.stage());
    if !args.no_verifier {
        rss.start();
        let mut runs = Vec::new();
        let mut scores = Vec::new();
        for _ in 0..args.repeat {
            let t = Instant::now();
            let current = store.current_verifier().await?.context("no verifier")?;
            scores = store
                .study_scores(study)
                .await?
                .into_iter()
                .filter(|s| s.version == current.version)
                .map(|s| (s.solution_id, s.score, s.is_correct))
                .collect::<Vec<_>>();
            runs.push(t.elapsed());
        }
        print_runs("store.current_verifier + study_scores", &runs, &rss.stage());
        rss.start();
        let mut runs = Vec::new();
        for _ in 0..args.repeat {
            let t = Instant::now();
            std::hint::black_box(verifier_vs_humans(1, &scores, &attempts, &excluded));
            runs.push(t.elapsed());
        }
        print_runs("verifier_vs_humans", &runs, &rss.stage());
    }
    rss.start();
    let mut runs = Vec::new();
    for _ in 0..args.repeat {
        let t = Instant::now();
        std::hint::black_box(store.rater_names(study).await?);
        runs.push(t.elapsed());
    }
    print_runs("store.rater_names (page)", &runs, &rss.stage());
    drop(attempts);

    // Over real HTTP on loopback, as the logged-in researcher.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    // A store of its own, as a server just started: its first report reads every judgement,
    // the next ones only what was added since (nothing here).
    let served = Store::connect(url)
        .await
        .with_context(|| format!("opening {url}"))?;
    let state = AppState {
        store: served.clone(),
        clock,
        config: Arc::new(WebConfig::default()),
    };
    tokio::spawn(async move { axum::serve(listener, web::router(state)).await });
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let cookie = log_in(&client, address).await?;
    println!("-- over HTTP on {address} as a logged-in researcher (whole body received)");
    let endpoints = [
        ("studies list", Check::Page),
        ("report.json", Check::Summary),
        ("report", Check::Page),
        ("report.json?exclude=chance", Check::Summary),
        ("attempts.csv", Check::Csv),
        ("attempts.jsonl", Check::Jsonl),
        ("attempts.parquet", Check::Parquet),
    ];
    for (path, kind) in endpoints {
        let path_name = path;
        let (name, path) = if path == "studies list" {
            (
                "GET /studies (studies list)".to_string(),
                "/studies".to_string(),
            )
        } else {
            (
                format!("GET /studies/{{id}}/{path}"),
                format!("/studies/{study}/{path}"),
            )
        };
        rss.start();
        let mut runs = Vec::new();
        let mut first_bytes = Vec::new();
        let mut size = 0;
        let mut missing = false;
        let download = matches!(kind, Check::Csv | Check::Jsonl | Check::Parquet);
        for _ in 0..args.repeat {
            let t = Instant::now();
            let save = args
                .out_dir
                .as_ref()
                .filter(|_| runs.is_empty() && matches!(path_name, "report.json" | "attempts.csv"));
            let response = get(
                &client,
                address,
                &path,
                &cookie,
                !download || save.is_some(),
            )
            .await?;
            let took = t.elapsed();
            if response.status == 404 && kind == Check::Parquet {
                missing = true;
                break;
            }
            if response.status != 200 {
                bail!(
                    "GET {path} answered {}: {}",
                    response.status,
                    String::from_utf8_lossy(&response.body[..response.body.len().min(300)])
                );
            }
            check(kind, &response, n)?;
            if let Some(dir) = save {
                std::fs::create_dir_all(dir)?;
                std::fs::write(dir.join(path_name), &response.body)?;
            }
            size = response.size;
            runs.push(took);
            first_bytes.push(response.first_byte);
        }
        if missing {
            println!("{name:<44} not available (404)");
            continue;
        }
        let mb = size as f64 / 1e6;
        let extra = match kind {
            Check::Csv | Check::Jsonl | Check::Parquet => {
                format!(
                    "{mb:.1} MB, {}, first byte after {:.3} s | {}",
                    rows_per_s(best(&runs)),
                    best(&first_bytes).as_secs_f64(),
                    rss.stage()
                )
            }
            Check::Summary | Check::Page => format!("{:.0} kB | {}", mb * 1000.0, rss.stage()),
        };
        print_runs(&name, &runs, &extra);
    }
    println!(
        "peak RSS of the process (VmHWM): {:.0} MB",
        rss.overall_mb()
    );
    served.close().await;
    store.close().await;
    Ok(())
}

//! The `legibility` command line: `serve`, `import`, `user`, `study`, `rater`.
//! Each subcommand is a thin wrapper over the store and the same rules the web pages use.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::{ProverRole, UserRole};
use crate::store::Store;
use crate::store::studies::StudySpec;
use crate::web::{self, AppState, WebConfig};
use crate::{auth, generator, judging, problems};

/// Default database: a SQLite file under `data/`, created and migrated on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/legibility.db";

/// The built-in problem set a fresh database starts with: the project's own generated
/// grade-school problems, so a fresh clone has problems without any download.
pub const BUILTIN_SET: &str = "builtin-grade-school";
/// Size of the built-in set.
pub const BUILTIN_COUNT: usize = 500;
/// Seed of the built-in set (fixed, so every installation has the same problems).
pub const BUILTIN_SEED: u64 = 2024;

/// Legibility Lab: timed human legibility studies of prover–verifier games.
#[derive(Debug, Parser)]
#[command(name = "legibility", version, about)]
pub struct Cli {
    /// Database: `sqlite://FILE` (default) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web server (raters, researchers, admins, JSON API).
    Serve(ServeArgs),
    /// Import problems (GSM8K JSONL) or model-written solutions (JSONL).
    #[command(subcommand)]
    Import(ImportCommand),
    /// Manage staff accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Create and list studies.
    #[command(subcommand)]
    Study(StudyCommand),
    /// Invite raters to a study.
    #[command(subcommand)]
    Rater(RaterCommand),
}

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LEGIBILITY_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Public base URL for invite links (default: the Host the admin used).
    #[arg(long, env = "LEGIBILITY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Mark cookies Secure (when served over HTTPS).
    #[arg(long, env = "LEGIBILITY_SECURE_COOKIES")]
    pub secure_cookies: bool,
    /// Largest accepted upload, in MiB.
    #[arg(long, default_value_t = 64)]
    pub max_upload_mib: usize,
}

/// `import` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// GSM8K JSONL: `{"question": …, "answer": "… #### N"}` per line.
    Problems {
        /// The JSONL file.
        file: PathBuf,
        /// Name of the problem set to add them to (created if new).
        #[arg(long)]
        set: String,
    },
    /// Problems from the project's own procedural generator (reproducible from the seed).
    Generated {
        /// Name of the problem set to add them to (created if new).
        #[arg(long, default_value = BUILTIN_SET)]
        set: String,
        /// How many problems.
        #[arg(long, default_value_t = BUILTIN_COUNT)]
        count: usize,
        /// Generator seed.
        #[arg(long, default_value_t = BUILTIN_SEED)]
        seed: u64,
    },
    /// Solutions JSONL: `question` or `problem_id`, `solution`, `checkpoint`, `round`, `role`.
    Solutions {
        /// The JSONL file.
        file: PathBuf,
        /// Match questions only within this problem set.
        #[arg(long)]
        set: Option<String>,
    },
}

/// `user` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a staff account. The password is read from LEGIBILITY_PASSWORD or standard input.
    Add {
        /// Login name.
        username: String,
        /// admin or researcher.
        #[arg(long, default_value = "researcher")]
        role: UserRole,
        /// Replace the password of an existing account instead.
        #[arg(long)]
        reset: bool,
    },
}

/// `study` subcommands.
#[derive(Debug, Subcommand)]
pub enum StudyCommand {
    /// Create a study from a problem set's solutions.
    Create(StudyCreateArgs),
    /// List studies with their progress.
    List,
}

/// `study create` options.
#[derive(Debug, Args)]
pub struct StudyCreateArgs {
    /// Unique study name.
    #[arg(long)]
    pub name: String,
    /// Problem set to draw from.
    #[arg(long)]
    pub set: String,
    /// Only these prover checkpoints (labels; repeatable). Default: all.
    #[arg(long = "checkpoint")]
    pub checkpoints: Vec<String>,
    /// Only these roles (repeatable). Default: both.
    #[arg(long = "role")]
    pub roles: Vec<ProverRole>,
    /// Seconds per solution.
    #[arg(long, default_value_t = judging::DEFAULT_TIME_LIMIT_MS as f64 / 1000.0)]
    pub time_limit_secs: f64,
    /// Judgements per solution, from distinct raters.
    #[arg(long, default_value_t = judging::DEFAULT_JUDGEMENTS_PER_SOLUTION)]
    pub judgements: i64,
    /// Only the first N problems of the set that have solutions.
    #[arg(long)]
    pub max_problems: Option<usize>,
}

/// `rater` subcommands.
#[derive(Debug, Subcommand)]
pub enum RaterCommand {
    /// Create invite links; prints one `name<TAB>link` line per rater.
    Invite {
        /// Study name or id.
        #[arg(long)]
        study: String,
        /// Base URL of the server as raters reach it.
        #[arg(
            long,
            env = "LEGIBILITY_PUBLIC_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        base_url: String,
        /// Rater names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// Logs to stderr; `RUST_LOG` sets the filter (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Opens the database, creating the folder of a SQLite file if needed.
pub async fn open_store(database_url: &str) -> anyhow::Result<Store> {
    if let Some(path) = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
    {
        let path = path.split('?').next().unwrap_or(path);
        if let Some(parent) = Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    Store::connect(database_url)
        .await
        .with_context(|| format!("opening database {database_url}"))
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let store = open_store(&cli.database_url).await?;
    let clock = Clock::default();
    let result = match cli.command {
        Command::Serve(args) => serve(store.clone(), clock, args).await,
        Command::Import(command) => import(&store, &clock, command).await,
        Command::User(UserCommand::Add {
            username,
            role,
            reset,
        }) => add_user(&store, &clock, &username, role, reset).await,
        Command::Study(StudyCommand::Create(args)) => create_study(&store, &clock, args).await,
        Command::Study(StudyCommand::List) => list_studies(&store).await,
        Command::Rater(RaterCommand::Invite {
            study,
            base_url,
            names,
        }) => invite(&store, &clock, &study, &base_url, &names).await,
    };
    store.close().await;
    result
}

async fn serve(store: Store, clock: Clock, args: ServeArgs) -> anyhow::Result<()> {
    if store.count_users().await? == 0 {
        let password = auth::new_token()[..24].to_string();
        let hash = auth::hash_password(&password)?;
        store
            .create_user("admin", &hash, UserRole::Admin, clock.now_ms())
            .await?;
        eprintln!(
            "First start: created staff account 'admin' with password {password}\n\
             (change it with: legibility user add admin --reset)"
        );
    }
    if store.problem_sets().await?.is_empty() {
        let jsonl = generator::to_gsm8k_jsonl(&generator::generate(BUILTIN_SEED, BUILTIN_COUNT));
        let records = problems::parse_gsm8k_problems(jsonl.as_bytes())?;
        let summary = store
            .import_problems(BUILTIN_SET, &records, clock.now_ms())
            .await?;
        tracing::info!(
            set = BUILTIN_SET,
            problems = summary.inserted,
            "first start: imported the built-in problem set"
        );
    }
    let config = WebConfig {
        secure_cookies: args.secure_cookies,
        public_url: args.public_url,
        max_upload_bytes: args.max_upload_mib * 1024 * 1024,
    };
    let state = AppState {
        store,
        clock,
        config: Arc::new(config),
    };
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    tracing::info!(address = %args.bind, backend = ?state.store.backend(), "serving");
    axum::serve(listener, web::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutting down: finishing requests in flight");
}

async fn import(store: &Store, clock: &Clock, command: ImportCommand) -> anyhow::Result<()> {
    let (file, summary, what) = match command {
        ImportCommand::Problems { file, set } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let records = problems::parse_gsm8k_problems(&bytes)?;
            (
                file,
                store
                    .import_problems(&set, &records, clock.now_ms())
                    .await?,
                "problems",
            )
        }
        ImportCommand::Generated { set, count, seed } => {
            let jsonl = generator::to_gsm8k_jsonl(&generator::generate(seed, count));
            let records = problems::parse_gsm8k_problems(jsonl.as_bytes())?;
            (
                PathBuf::from(format!("generator(seed {seed})")),
                store
                    .import_problems(&set, &records, clock.now_ms())
                    .await?,
                "problems",
            )
        }
        ImportCommand::Solutions { file, set } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let records = problems::parse_solutions(&bytes)?;
            (
                file,
                store
                    .import_solutions(set.as_deref(), &records, clock.now_ms())
                    .await?,
                "solutions",
            )
        }
    };
    println!(
        "{}: {} {what} in the file, {} imported, {} already present",
        file.display(),
        summary.records,
        summary.inserted,
        summary.already_present
    );
    Ok(())
}

async fn add_user(
    store: &Store,
    clock: &Clock,
    username: &str,
    role: UserRole,
    reset: bool,
) -> anyhow::Result<()> {
    let password = match std::env::var("LEGIBILITY_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            eprintln!("password (read from standard input):");
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input)?;
            input.lines().next().unwrap_or_default().to_string()
        }
    };
    let hash = auth::hash_password(&password)?;
    if reset {
        store.set_password(username, &hash).await?;
        println!("password of {username} replaced");
    } else {
        let user = store
            .create_user(username, &hash, role, clock.now_ms())
            .await?;
        println!("created {} {} ({})", user.role, user.username, user.id);
    }
    Ok(())
}

async fn create_study(store: &Store, clock: &Clock, args: StudyCreateArgs) -> anyhow::Result<()> {
    let set = store
        .problem_sets()
        .await?
        .into_iter()
        .find(|s| s.name == args.set)
        .with_context(|| format!("no problem set named {:?}", args.set))?;
    let all = store.checkpoints().await?;
    let mut checkpoint_ids = Vec::new();
    for label in &args.checkpoints {
        let found = all
            .iter()
            .find(|c| &c.label == label)
            .with_context(|| format!("no checkpoint {label:?}"))?;
        checkpoint_ids.push(found.id);
    }
    if !(0.5..=3600.0).contains(&args.time_limit_secs) {
        bail!("--time-limit-secs must be between 0.5 and 3600");
    }
    let spec = StudySpec {
        name: args.name,
        time_limit_ms: (args.time_limit_secs * 1000.0).round() as i64,
        judgements_per_solution: args.judgements,
        reclaim_grace_ms: judging::DEFAULT_RECLAIM_GRACE_MS,
        problem_set_id: set.id,
        checkpoint_ids,
        roles: args.roles,
        max_problems: args.max_problems,
    };
    let study = store.create_study(&spec, None, clock.now_ms()).await?;
    let progress = store.study_progress(study.id).await?;
    println!(
        "created study {} ({}) with {} solutions",
        study.name, study.id, progress.solutions
    );
    Ok(())
}

async fn list_studies(store: &Store) -> anyhow::Result<()> {
    for study in store.studies().await? {
        let p = store.study_progress(study.id).await?;
        println!(
            "{}\t{}\t{}\t{}/{} judged\t{} raters",
            study.id, study.name, study.status, p.judged, p.wanted, p.raters
        );
    }
    Ok(())
}

async fn find_study(store: &Store, name_or_id: &str) -> anyhow::Result<Uuid> {
    if let Ok(id) = Uuid::parse_str(name_or_id) {
        return Ok(store.study(id).await?.id);
    }
    store
        .studies()
        .await?
        .into_iter()
        .find(|s| s.name == name_or_id)
        .map(|s| s.id)
        .with_context(|| format!("no study named {name_or_id:?}"))
}

async fn invite(
    store: &Store,
    clock: &Clock,
    study: &str,
    base_url: &str,
    names: &[String],
) -> anyhow::Result<()> {
    let study_id = find_study(store, study).await?;
    for invitation in store.invite_raters(study_id, names, clock.now_ms()).await? {
        println!(
            "{}\t{}/r/{}",
            invitation.rater.name,
            base_url.trim_end_matches('/'),
            invitation.token
        );
    }
    Ok(())
}

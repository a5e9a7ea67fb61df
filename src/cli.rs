//! The `legibility` command line: `serve`, `worker`, `import`, `user`, `study`, `rater`, `grade`, …
//! Each subcommand is a thin wrapper over the store and the same rules the web pages use.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::checkpoints::defaults;
use crate::clock::Clock;
use crate::domain::{ProverRole, UserRole};
use crate::setup::{BUILTIN_COUNT, BUILTIN_SEED, BUILTIN_SET};
use crate::store::Store;
use crate::store::studies::StudySpec;
use crate::web::{self, AppState, WebConfig};
use crate::worker::{self, Worker, WorkerConfig};
use crate::{auth, generator, judging, problems};

/// Default database: a SQLite file under `data/`, created and migrated on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/legibility.db";

/// Legibility Lab: timed human legibility studies of prover–verifier games.
#[derive(Debug, Parser)]
#[command(name = "legibility", version, about)]
pub struct Cli {
    /// Database: `sqlite://FILE` (default) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,
    /// Log lines on stderr: `auto` (colour on a terminal, plain text otherwise), `plain` or
    /// `json` (one object per line, for log collectors).
    #[arg(long, env = LOG_FORMAT_ENV, value_enum, default_value_t = LogFormat::Auto, global = true)]
    pub log_format: LogFormat,
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
    /// Create, list and edit studies.
    #[command(subcommand)]
    Study(StudyCommand),
    /// Invite raters to a study.
    #[command(subcommand)]
    Rater(RaterCommand),
    /// Train the project's own models with candle on CPU.
    #[command(subcommand)]
    Train(TrainCommand),
    /// Upload (validate, store, register) and list model checkpoints.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Run a background worker only (no web server): claims jobs from the database and runs
    /// them until Ctrl-C / SIGTERM. Start several, on several machines, against PostgreSQL.
    Worker(WorkerArgs),
    /// Train verifier versions from the ratings, score studies, list versions.
    #[command(subcommand)]
    Verifier(VerifierCommand),
    /// Grade model outputs without a database: reads JSON lines `{"solution": "…", "answer":
    /// "…"}` and prints one JSON line per input, `{"extracted": …, "outcome":
    /// "correct"|"incorrect"|"ungradable", …}`, to check the grader on a model before a study.
    Grade(GradeArgs),
    /// Write a consistent backup while the server runs: the database, the checkpoint files it
    /// refers to, and a manifest with every file's SHA-256, into a new folder.
    Backup(BackupArgs),
    /// Restore a backup into an empty database (DATABASE_URL) and models folder, after checking
    /// every checksum; then apply this release's migrations.
    Restore(RestoreArgs),
}

/// `backup` options.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// New (or empty) folder to write the backup to.
    pub dest: PathBuf,
    /// Folder of model files the database's checkpoints refer to.
    #[arg(long, env = "LEGIBILITY_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
}

/// `restore` options.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Backup folder (the one holding manifest.json).
    pub src: PathBuf,
    /// Folder to restore checkpoint files into (files already there must be identical).
    #[arg(long, env = "LEGIBILITY_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
}

/// `legibility restore`: checks, restores (creating a SQLite file's folder), then opens the
/// database (which migrates it).
async fn restore(database_url: &str, args: &RestoreArgs) -> anyhow::Result<()> {
    let manifest = crate::backup::restore(database_url, &args.models_dir, &args.src)
        .await
        .with_context(|| format!("restoring {}", args.src.display()))?;
    let store = Store::connect(database_url)
        .await
        .with_context(|| format!("opening the restored database {database_url}"))?;
    let now = store.schema_version().await;
    store.close().await;
    println!(
        "restored {} judgements, {} studies and {} checkpoint files from {} (written {} by release {}; schema version {} -> {})",
        manifest.rows("judgements"),
        manifest.rows("studies"),
        manifest
            .files
            .iter()
            .filter(|f| f.path.starts_with("models/"))
            .count(),
        args.src.display(),
        crate::clock::format_ms(manifest.created_at_ms),
        manifest.legibility_version,
        manifest.database.schema_version,
        now?
    );
    Ok(())
}

/// `grade` options.
#[derive(Debug, Args)]
pub struct GradeArgs {
    /// JSONL file of solutions and their answers; `-` reads standard input.
    pub file: PathBuf,
}

/// Runs `grade`: results on standard output, the tally on standard error.
fn grade_file(args: &GradeArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let tally = if args.file.as_os_str() == "-" {
        crate::grading::jsonl::grade_jsonl(std::io::stdin().lock(), &mut out)
            .context("grading standard input")?
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?;
        crate::grading::jsonl::grade_jsonl(std::io::BufReader::new(file), &mut out)
            .with_context(|| format!("grading {}", args.file.display()))?
    };
    eprintln!("{tally}");
    Ok(())
}

/// `verifier` subcommands: they queue jobs for a worker (`serve` runs one) or list versions.
#[derive(Debug, Subcommand)]
pub enum VerifierCommand {
    /// Queue a training job: a new verifier version from the judgements so far.
    Train {
        /// Labels: `human` (raters' majority), `ground_truth` (grader) or `both` (majority
        /// where there is one, else ground truth).
        #[arg(long, default_value = "both")]
        labels: crate::domain::LabelSource,
        /// Loss: `bradley_terry` (the paper's, with λ·E[V²]) or `cross_entropy`.
        #[arg(long, default_value = "bradley_terry")]
        loss: crate::domain::VerifierLoss,
        /// Train on one study (name or id); all studies when absent.
        #[arg(long)]
        study: Option<String>,
        /// Start from this verifier checkpoint (label); the current version when absent.
        #[arg(long)]
        base: Option<String>,
        /// Seed of the split and the data order.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Epochs at most (early stopping may end sooner).
        #[arg(long, default_value_t = 8)]
        max_epochs: usize,
        /// For a decoder verifier: train the score head and only the top K blocks (with the
        /// final norm), the blocks below frozen; 0 trains the head alone. By default the
        /// project's own verifiers train every weight and an uploaded transformers model its
        /// head alone.
        #[arg(long, value_name = "K")]
        train_blocks: Option<usize>,
        /// AdamW learning rate (a head on a frozen body usually wants more than the default).
        #[arg(long, default_value_t = crate::ml::train_verifier::DEFAULT_LEARNING_RATE)]
        learning_rate: f64,
    },
    /// Queue a job scoring every solution of a study with the current verifier version.
    Score {
        /// Study name or id.
        #[arg(long)]
        study: String,
    },
    /// List verifier versions with their validation metrics.
    List,
}

/// `worker` options.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Folder of model files.
    #[arg(long, env = "LEGIBILITY_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
    /// Lease length in seconds: a job whose worker stops renewing is retried after this.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub lease_secs: u64,
    /// Name shown as the job's worker (default: hostname-pid-random).
    #[arg(long, env = "LEGIBILITY_WORKER_ID")]
    pub worker_id: Option<String>,
    /// CPU threads for model computation (candle). Default 1: the prover is small enough that
    /// splitting each matrix product across threads costs more than it saves (see README,
    /// benchmarks); run more workers to use more cores.
    #[arg(long, env = "LEGIBILITY_MODEL_THREADS", default_value_t = 1)]
    pub model_threads: usize,
    /// Sequences a generation job decodes at once (decoding slots; a finished sequence's slot
    /// takes the next request at once).
    #[arg(long, default_value_t = crate::worker::generation::DEFAULT_BATCH_SIZE,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub generation_batch: usize,
    /// Queue a verifier training job every N new judgements (0: only when an admin asks).
    #[arg(long, env = "LEGIBILITY_VERIFIER_EVERY", default_value_t = 200)]
    pub verifier_every: u64,
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
    /// CPU threads for the in-process worker's model computation (see `worker --model-threads`).
    #[arg(long, env = "LEGIBILITY_MODEL_THREADS", default_value_t = 1)]
    pub model_threads: usize,
    /// Mark cookies Secure (when served over HTTPS).
    #[arg(long, env = "LEGIBILITY_SECURE_COOKIES")]
    pub secure_cookies: bool,
    /// Largest accepted upload, in MiB.
    #[arg(long, default_value_t = 64)]
    pub max_upload_mib: usize,
    /// Folder of model files; uploaded checkpoints go to its `uploads/` subfolder.
    #[arg(long, env = "LEGIBILITY_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
    /// Bearer token for Prometheus to scrape `/metrics` (admins' sessions work without it).
    #[arg(long, env = "LEGIBILITY_METRICS_TOKEN")]
    pub metrics_token: Option<String>,
    /// A reverse proxy (IP address) whose `X-Forwarded-For` names the client, for login
    /// throttling and the session list; repeat for a chain. Without it the header is ignored.
    #[arg(
        long = "trusted-proxy",
        env = "LEGIBILITY_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Largest accepted checkpoint upload (the files kept, all together), in MiB; the default
    /// (4096) fits a 1.5B-parameter model in BF16. The page reads at most twice this per
    /// request (files it ignores are read past, not stored).
    #[arg(long, default_value_t = crate::checkpoints::DEFAULT_MAX_CHECKPOINT_BYTES / (1024 * 1024))]
    pub max_checkpoint_mib: u64,
    /// Do not run a worker inside the server (jobs then wait for a `legibility worker`).
    #[arg(long)]
    pub no_worker: bool,
    /// Lease length in seconds of the in-process worker (see `worker --lease-secs`).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub lease_secs: u64,
    /// Queue a verifier training job every N new judgements (0: only when an admin asks).
    #[arg(long, env = "LEGIBILITY_VERIFIER_EVERY", default_value_t = 200)]
    pub verifier_every: u64,
    /// Write a backup (as `legibility backup`) every N minutes into --backup-dir (0: never).
    #[arg(long, env = "LEGIBILITY_BACKUP_EVERY_MINUTES", default_value_t = 0)]
    pub backup_every_minutes: u64,
    /// Folder of scheduled backups (one `legibility-<UTC time>` folder each).
    #[arg(long, env = "LEGIBILITY_BACKUP_DIR", default_value = "backups")]
    pub backup_dir: PathBuf,
    /// How many scheduled backups to keep (the oldest are removed).
    #[arg(long, env = "LEGIBILITY_BACKUP_KEEP", default_value_t = 7,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub backup_keep: usize,
}

/// `checkpoint` subcommands.
#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// Validate a prover or verifier checkpoint (a folder or an uncompressed .tar), store it
    /// under the models directory (or, with --in-place, leave the folder where it is) and
    /// register it; prints the new checkpoint's id, and on stderr the files it ignored (a Hub
    /// folder's side files). Provers are Llama; verifiers are a Llama body with a score head or
    /// a BERT-family encoder.
    Add {
        /// Unique label.
        #[arg(long)]
        label: String,
        /// Training round (0 = initial).
        #[arg(long)]
        round: i64,
        /// Checkpoint kind: `prover` (Llama) or `verifier` (Llama body with a score head, or a
        /// BERT-family encoder such as all-MiniLM-L6-v2, score head optional).
        #[arg(long, default_value = "prover")]
        kind: crate::domain::CheckpointKind,
        /// Folder of model files (the server's --models-dir).
        #[arg(long, env = "LEGIBILITY_MODELS_DIR", default_value = "models")]
        models_dir: PathBuf,
        /// Largest accepted checkpoint (the files kept), in bytes.
        #[arg(long, default_value_t = crate::checkpoints::DEFAULT_MAX_CHECKPOINT_BYTES)]
        max_bytes: u64,
        /// Register the folder where it is (absolute path), copying nothing: it must stay
        /// there, unchanged, for as long as the checkpoint is used. No size limit applies.
        #[arg(long)]
        in_place: bool,
        /// Store a safetensors prover (Llama, Mistral, Qwen2, Qwen3) quantized as GGUF:
        /// `Q8_0` (logits within about 1 % of f32, 4× fewer bytes read per token), `Q4_0`,
        /// `Q4_K` or `Q6_K`. Not with --in-place.
        #[arg(long, value_parser = crate::ml::gguf::parse_quantization)]
        quantize: Option<candle_core::quantized::GgmlDType>,
        /// The checkpoint: a folder of files or a .tar archive (a folder with --in-place).
        path: PathBuf,
    },
    /// List checkpoints: id, kind, round, label, model folder (or "import-only").
    List,
    /// Check a checkpoint against transformers: for a prover, one JSON line per input position
    /// (`position`, `token_id`, `top`: the K highest next-token logits as `[[token_id, logit],
    /// …]`), the text tokenized as transformers' `tokenizer(text)`; for a verifier, one line
    /// `{"token_ids": […], "score": …}`. Needs no database.
    Logits {
        /// The text to run.
        #[arg(long)]
        text: String,
        /// How many of the highest logits to print per position.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// The checkpoint folder.
        path: PathBuf,
    },
    /// Print a prover checkpoint's prompts exactly as the prover builds them (plain prompt or
    /// chat template), for one role or both; needs no database.
    Prompt {
        /// Only this role (`helpful` or `sneaky`); both when absent.
        #[arg(long)]
        role: Option<ProverRole>,
        /// The question to put in the prompt.
        #[arg(long, default_value = crate::ml::prompt::SAMPLE_GSM8K_QUESTION)]
        question: String,
        /// Also print the token ids the model is given.
        #[arg(long)]
        ids: bool,
        /// The checkpoint folder.
        path: PathBuf,
    },
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
    Create(Box<StudyCreateArgs>),
    /// List studies with their progress.
    List,
    /// Change a study's settings: name, workload cap and breaks at any time; time limit and
    /// judgements per solution only while it has served no item and holds no judgement. Also
    /// opens or closes it.
    Edit(StudyEditArgs),
}

/// `study edit` options; what is not given stays as it is.
#[derive(Debug, Args)]
pub struct StudyEditArgs {
    /// Study name or id.
    #[arg(long)]
    pub study: String,
    /// New name.
    #[arg(long)]
    pub name: Option<String>,
    /// Seconds per solution (only before any item is served).
    #[arg(long)]
    pub time_limit_secs: Option<f64>,
    /// Judgements per solution (only before any item is served).
    #[arg(long)]
    pub judgements: Option<i64>,
    /// Cap on each rater's time on items, in hours.
    #[arg(long)]
    pub max_hours: Option<f64>,
    /// Suggest a break every N items (0 = never).
    #[arg(long)]
    pub break_every: Option<i64>,
    /// Close the study: no new items are served.
    #[arg(long, conflicts_with = "open")]
    pub close: bool,
    /// Open (or reopen) the study.
    #[arg(long)]
    pub open: bool,
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
    /// Generate the solutions with the `--checkpoint` provers (a worker job fills the study)
    /// instead of judging imported ones.
    #[arg(long)]
    pub generate: bool,
    /// With `--generate`: solutions per problem, prover and role.
    #[arg(long, default_value_t = 1)]
    pub samples_per_role: usize,
    /// With `--generate`: sampling temperature.
    #[arg(long, default_value_t = crate::ml::sampling::SamplingParams::default().temperature)]
    pub temperature: f64,
    /// With `--generate`: seed of every draw (random when absent).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Practice items (right answer shown after each) before the session; drawn, like all
    /// quality items, from the set's problems outside the study (see `--max-problems`).
    #[arg(long, default_value_t = 0)]
    pub practice: i64,
    /// Screening (qualification) items; raters below `--screening-pass` are not admitted.
    #[arg(long, default_value_t = 0)]
    pub screening: i64,
    /// Share of screening items a rater must get right (0..=1).
    #[arg(long, default_value_t = 0.8)]
    pub screening_pass: f64,
    /// Silent gold items in the pool.
    #[arg(long, default_value_t = 0)]
    pub gold: i64,
    /// Share of session items that are gold items (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub gold_rate: f64,
    /// Cap on each rater's time on items, in hours.
    #[arg(long, default_value_t = 4.0)]
    pub max_hours: f64,
    /// Suggest a break every N items (0 = never).
    #[arg(long, default_value_t = 0)]
    pub break_every: i64,
}

/// `rater` subcommands.
#[derive(Debug, Subcommand)]
pub enum RaterCommand {
    /// Create invite links; prints one `name<TAB>link` line per rater, or with `--csv` the
    /// links as CSV (`name,email,link`). All or nothing: any bad name or line invites nobody.
    Invite {
        /// Study name or id.
        #[arg(long)]
        study: String,
        /// Base URL of the server as raters reach it; default: the address `serve` last
        /// started with on this database (its --public-url, or where it listens).
        #[arg(long, env = "LEGIBILITY_PUBLIC_URL")]
        base_url: Option<String>,
        /// Rater names.
        #[arg(required_unless_present = "csv", conflicts_with = "csv")]
        names: Vec<String>,
        /// A CSV file of raters instead of names: header `name,email`, one line per rater
        /// (the email may be empty), as on the study page.
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
    },
}

/// Environment variable choosing the log format (same values as `--log-format`).
pub const LOG_FORMAT_ENV: &str = "LEGIBILITY_LOG_FORMAT";

/// How log lines look on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Coloured text on a terminal, plain text otherwise (a file, a pipe, journald).
    #[default]
    Auto,
    /// Text without colour codes.
    #[value(alias = "text")]
    Plain,
    /// One JSON object per line (timestamp, level, target, fields, span), for log collectors.
    Json,
}

impl LogFormat {
    /// Whether lines carry ANSI colour codes: only `auto` on a terminal, and never when
    /// `NO_COLOR` is set (<https://no-color.org>), so log files stay greppable text.
    pub fn colours(self, stderr_is_terminal: bool, no_color: bool) -> bool {
        self == LogFormat::Auto && stderr_is_terminal && !no_color
    }
}

/// The format chosen at start-up, for the few places that print differently for collectors.
static LOG_FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// Whether logs are JSON lines (see [`init_tracing_as`]).
fn json_logs() -> bool {
    LOG_FORMAT.get() == Some(&LogFormat::Json)
}

/// [`init_tracing_as`] with the format from `LEGIBILITY_LOG_FORMAT` (`auto` when unset or
/// unknown), for the benchmark binaries, which have no `--log-format`.
pub fn init_tracing() {
    use clap::ValueEnum;
    let format = std::env::var(LOG_FORMAT_ENV)
        .ok()
        .and_then(|f| LogFormat::from_str(&f, true).ok())
        .unwrap_or_default();
    init_tracing_as(format);
}

/// Logs to stderr in `format`; `RUST_LOG` sets the filter (default `info,sqlx=warn`).
pub fn init_tracing_as(format: LogFormat) {
    use std::io::IsTerminal;
    let _ = LOG_FORMAT.set(format);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let colours = format.colours(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colours);
    let _ = if format == LogFormat::Json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
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

/// `train` subcommands.
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Train a prover (both roles) on generated problems; writes a checkpoint folder.
    Prover {
        /// Recipe: `tiny` (the shipped default prover) or `test` (seconds, for CI).
        #[arg(long, default_value = "tiny")]
        preset: String,
        /// Seed of data, order, initialisation and evaluation.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Checkpoint folder to write (replaced atomically when training ends).
        #[arg(long, default_value = "models/prover-tiny")]
        out: PathBuf,
        /// GSM8K train JSONL whose reference solutions join the helpful examples.
        #[arg(long)]
        gsm8k: Option<PathBuf>,
        /// Override the recipe's number of optimiser steps.
        #[arg(long)]
        steps: Option<usize>,
    },
    /// Train the default verifier from scratch on generated helpful/sneaky pairs; writes a
    /// verifier checkpoint folder.
    Verifier {
        /// Recipe: `tiny` (the shipped default verifier) or `test` (seconds, for CI).
        #[arg(long, default_value = "tiny")]
        preset: String,
        /// Seed of data, order and initialisation.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Checkpoint folder to write (replaced atomically when training ends).
        #[arg(long, default_value = "models/verifier-tiny")]
        out: PathBuf,
        /// Override the recipe's number of optimiser steps.
        #[arg(long)]
        steps: Option<usize>,
    },
    /// Measure how many of a prover's solutions read as solutions of their problem: every word
    /// and number from the question or the problem's reference solutions (`coherence`), on the
    /// built-in problems, both roles; and how much probability it gives the question's name.
    Coherence {
        /// The prover's checkpoint folder.
        #[arg(long, default_value = "models/prover-tiny")]
        prover: PathBuf,
        /// Built-in problems to sample (the first N of the 500).
        #[arg(long, default_value_t = 500)]
        problems: usize,
        /// Seed of the samples.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Incoherent solutions to print as examples.
        #[arg(long, default_value_t = 5)]
        examples: usize,
    },
    /// Run the checkability game from the shipped models: round 0 measures the initial prover,
    /// each later round trains a verifier on earlier rounds' solutions and optimises the prover
    /// against it (expert iteration); writes `round-N` provers and `game.json`.
    Game {
        /// Rounds after round 0 (the defaults are those of a run started from the admin page).
        #[arg(long, default_value_t = crate::worker::game::TrainingRunParams::default().rounds)]
        rounds: u32,
        /// Seed of everything; the same seed and thread count repeat the run.
        #[arg(long, default_value_t = crate::worker::game::TrainingRunParams::default().seed)]
        seed: u64,
        /// Folder for the rounds' provers and game.json; running again on the same folder
        /// with the same settings resumes after the last finished step.
        #[arg(long, default_value = "models/game")]
        out: PathBuf,
        /// Reward: src, cgc or goodhart.
        #[arg(long, default_value = "src")]
        reward: String,
        /// Training problems (generated).
        #[arg(long, default_value_t = crate::worker::game::TrainingRunParams::default().problems)]
        problems: usize,
        /// Held-out problems the round metrics are measured on.
        #[arg(long, default_value_t = crate::worker::game::TrainingRunParams::default().eval_problems)]
        eval_problems: usize,
        /// Prover steps per round at most.
        #[arg(long, default_value_t = crate::worker::game::TrainingRunParams::default().steps_per_round)]
        steps_per_round: usize,
        /// Optimiser: expert_iteration or policy_gradient (needs --samples-per-role 2 or more).
        #[arg(long, default_value = "expert_iteration")]
        optimiser: String,
        /// Sequential sneaky: the sneaky prover's prompt holds the helpful solution first.
        #[arg(long)]
        sequential_sneaky: bool,
        /// The policy gradient's KL penalty β to the initial prover.
        #[arg(long, default_value_t = crate::worker::game::TrainingRunParams::default().kl_coefficient)]
        kl_coefficient: f64,
        /// Samples per problem and role, in prover steps and on the held-out problems.
        #[arg(long, default_value_t = crate::worker::game::TrainingRunParams::default().samples_per_role)]
        samples_per_role: usize,
        /// Sneaky-only attack steps on each round's frozen verifier at most (0: no attack).
        #[arg(long, default_value_t = crate::worker::game::TrainingRunParams::default().attack_steps)]
        attack_steps: usize,
        /// The fool rate at which an attack counts the verifier as fooled.
        #[arg(long, default_value_t = crate::worker::game::TrainingRunParams::default().attack_target)]
        attack_target: f64,
        /// A fixed verifier score for the fool rate (default: each round's 50 %-recall score
        /// on the initial prover's helpful correct held-out solutions).
        #[arg(long)]
        fool_threshold: Option<f64>,
        /// Repeat the run with this many seeds (SEED, SEED+1, …), each in OUT/seed-S, and
        /// write OUT/seeds.json with every round's figures as mean and 95 % interval.
        #[arg(long, default_value_t = 1)]
        seeds: u64,
        /// Models folder holding prover-tiny and verifier-tiny.
        #[arg(long, default_value = "models")]
        models_dir: PathBuf,
    },
}

/// How strongly the prover copies the question's name: for each built-in problem whose
/// question has one built-in name that its helpful solution repeats, that solution scored
/// teacher-forced with each built-in name in its place, and the probability the prover (at the
/// game's temperature) gives the question's name among them (`coherence::choice_probability`).
fn name_choice_line(
    dir: &Path,
    problems: &[crate::generator::GeneratedProblem],
    temperature: f64,
) -> anyhow::Result<String> {
    use crate::ml::train::{PolicySample, solution_log_probs};
    let names = crate::generator::built_in_names();
    let mut samples = Vec::new();
    let mut truths = Vec::new();
    for (group, p) in problems.iter().enumerate() {
        let Some(truth) = crate::coherence::single_name(&names, &p.question, &p.helpful_solution)
        else {
            continue;
        };
        for candidate in &names {
            samples.push(PolicySample {
                role: crate::domain::ProverRole::Helpful,
                question: p.question.clone(),
                solution: p.helpful_solution.replace(names[truth], candidate),
                reward: 0.0,
                group,
            });
        }
        truths.push(truth);
    }
    let log_probs = solution_log_probs(dir, &samples, 32)?;
    let mut chosen = Vec::new();
    for (k, truth) in truths.iter().enumerate() {
        let scored: Option<Vec<f64>> = log_probs[k * names.len()..(k + 1) * names.len()]
            .iter()
            .copied()
            .collect();
        if let Some(scored) = scored {
            chosen.push(crate::coherence::choice_probability(
                &scored,
                *truth,
                temperature,
            ));
        }
    }
    Ok(format!(
        "name copying: the question's name gets {:.1} % of the probability among the {} built-in names (mean over {} helpful solutions that repeat it, teacher-forced, temperature {temperature})\n",
        100.0 * chosen.iter().sum::<f64>() / chosen.len().max(1) as f64,
        names.len(),
        chosen.len()
    ))
}

/// Samples the first `count` built-in problems in both roles from the prover in `dir` (the
/// game's sampling settings) and reports the share of coherent solutions per role, with
/// `examples` incoherent ones and what was foreign in them.
fn coherence_report(
    dir: &Path,
    count: usize,
    seed: u64,
    examples: usize,
) -> anyhow::Result<String> {
    use crate::domain::ProverRole;
    use crate::ml::game_round::{BOTH_ROLES, TrainingProblem, sample_and_grade};
    let generated = crate::generator::generate(
        crate::ml::train::BUILTIN_PROBLEMS_SEED,
        count.min(crate::ml::train::BUILTIN_PROBLEMS),
    );
    let problems: Vec<TrainingProblem> = generated
        .iter()
        .map(|p| TrainingProblem {
            question: p.question.clone(),
            answer: p.answer.to_string(),
        })
        .collect();
    let step = crate::worker::game::TrainingRunParams::default()
        .game_options(PathBuf::new(), PathBuf::new(), PathBuf::new())
        .step;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let drawn = sample_and_grade(dir, &problems, &BOTH_ROLES, &step, seed, &stop)?;
    let mut out = format!(
        "{} on {} built-in problems (seed {seed}):\n",
        dir.display(),
        problems.len()
    );
    let mut shown = 0;
    let mut listed = String::new();
    for role in BOTH_ROLES {
        let of_role: Vec<_> = drawn.iter().filter(|d| d.role == role).collect();
        let mut coherent = 0;
        for d in &of_role {
            let p = &generated[d.problem];
            let found = crate::coherence::foreign(
                &p.question,
                &[&p.helpful_solution, &p.sneaky_solution],
                &d.text,
            );
            if found.is_empty() {
                coherent += 1;
            } else if shown < examples {
                shown += 1;
                listed.push_str(&format!(
                    "\n--- {} problem {}: foreign words {:?}, numbers {:?}\n{}\n{}\n",
                    role, d.problem, found.words, found.numbers, p.question, d.text
                ));
            }
        }
        // The role's aim, on the same samples: helpful right, sneaky wrong.
        let (aim, met) = match role {
            ProverRole::Helpful => ("correct", of_role.iter().filter(|d| d.correct).count()),
            ProverRole::Sneaky => ("incorrect", of_role.iter().filter(|d| !d.correct).count()),
        };
        let share = |n: usize| 100.0 * n as f64 / of_role.len().max(1) as f64;
        out.push_str(&format!(
            "{role}: {coherent} of {} coherent ({:.1} %); {met} {aim} ({:.1} %)\n",
            of_role.len(),
            share(coherent),
            share(met)
        ));
    }
    out.push_str(&name_choice_line(
        dir,
        &generated,
        step.sampling.temperature,
    )?);
    out.push_str(&listed);
    Ok(out)
}

/// A repeated run's figures as a Markdown table: per round, mean [95 % interval] across seeds.
fn seeds_table(report: &crate::ml::game_seeds::SeedsReport) -> String {
    let cell = |m: Option<crate::metrics::MeanInterval>| {
        m.map_or_else(
            || "—".to_string(),
            |m| format!("{:.3} [{:.3}, {:.3}]", m.mean, m.low, m.high),
        )
    };
    let mut table = format!(
        "seeds {:?}\n\n| round | seeds | verifier AUROC | fool rate | attack steps (not fooled) | helpful accuracy | sneaky incorrect | sneaky success |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n",
        report.seeds
    );
    for r in &report.rounds {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} ({}) | {} | {} | {} |\n",
            r.round,
            r.seeds,
            cell(r.verifier_auroc),
            cell(r.fool_rate),
            cell(r.attack_steps),
            r.not_fooled,
            cell(r.helpful_accuracy),
            cell(r.sneaky_incorrect),
            cell(r.sneaky_success)
        ));
    }
    table
}

/// Runs `train prover`: blocking CPU work on its own thread.
async fn train(command: TrainCommand) -> anyhow::Result<()> {
    let (preset, seed, out, gsm8k, steps) = match command {
        TrainCommand::Prover {
            preset,
            seed,
            out,
            gsm8k,
            steps,
        } => (preset, seed, out, gsm8k, steps),
        TrainCommand::Verifier {
            preset,
            seed,
            out,
            steps,
        } => return train_verifier(&preset, seed, out, steps).await,
        TrainCommand::Coherence {
            prover,
            problems,
            seed,
            examples,
        } => {
            let printed = tokio::task::spawn_blocking(move || {
                coherence_report(&prover, problems, seed, examples)
            })
            .await??;
            print!("{printed}");
            return Ok(());
        }
        TrainCommand::Game {
            rounds,
            seed,
            out,
            reward,
            problems,
            eval_problems,
            steps_per_round,
            optimiser,
            sequential_sneaky,
            kl_coefficient,
            samples_per_role,
            attack_steps,
            attack_target,
            fool_threshold,
            seeds,
            models_dir,
        } => {
            // The same settings a training-run job derives, so the command line and the admin
            // page compute the same run for the same seed.
            let params = crate::worker::game::TrainingRunParams {
                name: "command line".into(),
                rounds,
                seed,
                reward: reward.parse().map_err(anyhow::Error::msg)?,
                problems,
                eval_problems,
                steps_per_round,
                optimiser: optimiser.parse().map_err(anyhow::Error::msg)?,
                kl_coefficient,
                sequential_sneaky,
                samples_per_role,
                attack_steps,
                attack_target,
                fool_threshold,
                ..Default::default()
            };
            params.check().map_err(anyhow::Error::msg)?;
            anyhow::ensure!(seeds >= 1, "--seeds must be at least 1");
            let options_for = |seed: u64, out: PathBuf| {
                crate::worker::game::TrainingRunParams {
                    seed,
                    ..params.clone()
                }
                .game_options(
                    out,
                    models_dir.join(defaults::DEFAULT_PROVER_DIR),
                    models_dir.join(defaults::DEFAULT_VERIFIER_DIR),
                )
            };
            if seeds > 1 {
                let runs: Vec<_> = (seed..seed + seeds)
                    .map(|s| options_for(s, crate::ml::game_seeds::seed_folder(&out, s)))
                    .collect();
                let report = tokio::task::spawn_blocking(move || {
                    crate::ml::game_seeds::run_seeds(
                        &runs,
                        &out,
                        &std::sync::atomic::AtomicBool::new(false),
                        &mut |line| eprintln!("{line}"),
                    )
                })
                .await??;
                print!("{}", seeds_table(&report));
                return Ok(());
            }
            let options = options_for(seed, out);
            let report = tokio::task::spawn_blocking(move || {
                let mut journal = crate::ml::game_round::FolderJournal::open(&options)?;
                crate::ml::game_round::run_game(
                    &options,
                    &mut journal,
                    &std::sync::atomic::AtomicBool::new(false),
                    &mut |line| eprintln!("{line}"),
                )
            })
            .await??;
            // A figure for people: three decimals, or "—" when there is none.
            let figure = |x: Option<f64>| x.map_or_else(|| "—".to_string(), |v| format!("{v:.3}"));
            for round in &report.rounds {
                let attack = round.attack.as_ref().map_or_else(
                    || "no attack".to_string(),
                    |a| match a.steps_to_target {
                        Some(steps) => format!("fooled after {steps} attack steps"),
                        None => format!("not fooled in {} attack steps", a.cap),
                    },
                );
                println!(
                    "round {}: helpful correct {}, sneaky success {}, verifier accuracy {}, AUROC {}, best-of-2 {}, fool rate {}, {attack} ({} steps, {:.0}s)",
                    round.round,
                    figure(round.metrics.prover_accuracy),
                    figure(round.metrics.sneaky_success),
                    figure(round.metrics.verifier_accuracy),
                    figure(round.metrics.verifier_auroc),
                    figure(round.metrics.best_of_n_accuracy),
                    figure(round.metrics.fool_rate),
                    round.steps,
                    round.seconds
                );
            }
            println!("{} rounds in {:.0}s", report.rounds.len(), report.seconds);
            return Ok(());
        }
    };
    let preset = crate::ml::train::Preset::named(&preset)
        .with_context(|| format!("unknown preset {preset:?}; expected tiny or test"))?;
    let options = crate::ml::train::TrainOptions {
        preset,
        seed,
        out: out.clone(),
        gsm8k,
        steps,
    };
    let report = tokio::task::spawn_blocking(move || {
        crate::ml::train::train_prover(&options, &mut |line| eprintln!("{line}"))
    })
    .await??;
    println!(
        "wrote {}: {} parameters, {} steps in {:.0}s, held-out helpful correct {:.1}%, sneaky incorrect {:.1}%",
        out.display(),
        report.parameters,
        report.steps,
        report.train_seconds,
        report.quality.helpful_correct * 100.0,
        report.quality.sneaky_incorrect * 100.0
    );
    Ok(())
}

/// Runs `train verifier`: blocking CPU work on its own thread, then an atomic write.
async fn train_verifier(
    preset: &str,
    seed: u64,
    out: PathBuf,
    steps: Option<usize>,
) -> anyhow::Result<()> {
    let mut recipe = crate::ml::train_verifier::VerifierRecipe::named(preset, seed)
        .with_context(|| format!("unknown preset {preset:?}; expected tiny or test"))?;
    if let Some(steps) = steps {
        recipe.steps = steps;
    }
    let target = out.clone();
    let report = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let (verifier, report) =
            crate::ml::train_verifier::train_generated_verifier(&recipe, &mut |line| {
                eprintln!("{line}")
            })?;
        verifier.save(&target, &report)?;
        Ok(report)
    })
    .await??;
    println!(
        "wrote {}: {} parameters, {} steps in {:.0}s, held-out AUROC {:.3}, accuracy {:.3}, pairs ranked right {:.3}",
        out.display(),
        report.parameters,
        report.recipe.steps,
        report.train_seconds,
        report.quality.auroc,
        report.quality.accuracy,
        report.quality.pairwise_accuracy
    );
    Ok(())
}

impl Cli {
    /// The model thread count the command asks for, if it runs models in a worker: the binary
    /// applies it (as `RAYON_NUM_THREADS`, unless that is already set) before any thread starts.
    pub fn model_threads(&self) -> Option<usize> {
        if std::env::var_os("RAYON_NUM_THREADS").is_some() {
            return None;
        }
        match &self.command {
            Command::Serve(args) => Some(args.model_threads.max(1)),
            Command::Worker(args) => Some(args.model_threads.max(1)),
            _ => None,
        }
    }
}

/// An error and its causes as one message: `outer: cause: …`, leaving out a cause whose text
/// the message already holds (a store error that repeats the refusal it wraps would otherwise
/// be printed twice).
pub fn error_report(error: &anyhow::Error) -> String {
    let mut report = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if report.contains(&text) {
            continue;
        }
        if !report.is_empty() {
            report.push_str(": ");
        }
        report.push_str(&text);
    }
    report
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Grade(args) = &cli.command {
        return grade_file(args);
    }
    if let Command::Train(command) = cli.command {
        return train(command).await;
    }
    if let Command::Checkpoint(CheckpointCommand::Prompt {
        role,
        question,
        ids,
        path,
    }) = &cli.command
    {
        let roles = role.map_or(vec![ProverRole::Helpful, ProverRole::Sneaky], |r| vec![r]);
        let text = crate::ml::prompt::show(path, &roles, question, *ids)
            .with_context(|| format!("the prompts of {}", path.display()))?;
        print!("{text}");
        return Ok(());
    }
    if let Command::Checkpoint(CheckpointCommand::Logits { text, top, path }) = &cli.command {
        let (path, text, top) = (path.clone(), text.clone(), *top);
        let lines =
            tokio::task::spawn_blocking(move || checkpoint_logits(&path, &text, top)).await??;
        for line in lines {
            println!("{line}");
        }
        return Ok(());
    }
    if let Command::Restore(args) = &cli.command {
        return restore(&cli.database_url, args).await;
    }
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
        Command::Study(StudyCommand::Create(args)) => create_study(&store, &clock, *args).await,
        Command::Study(StudyCommand::List) => list_studies(&store).await,
        Command::Study(StudyCommand::Edit(args)) => edit_study(&store, args).await,
        Command::Rater(RaterCommand::Invite {
            study,
            base_url,
            names,
            csv,
        }) => {
            invite(
                &store,
                &clock,
                &study,
                base_url.as_deref(),
                &names,
                csv.as_deref(),
            )
            .await
        }
        Command::Train(_) | Command::Grade(_) | Command::Restore(_) => Ok(()),
        Command::Backup(args) => {
            let manifest =
                crate::backup::backup(&store, &args.models_dir, &args.dest, clock.now_ms())
                    .await
                    .with_context(|| format!("backing up into {}", args.dest.display()));
            manifest.map(|m| {
                println!(
                    "wrote {}: {} judgements, {} studies, {} files ({} bytes), schema version {}",
                    args.dest.display(),
                    m.rows("judgements"),
                    m.rows("studies"),
                    m.files.len(),
                    m.files.iter().map(|f| f.bytes).sum::<u64>(),
                    m.database.schema_version
                );
            })
        }
        Command::Checkpoint(command) => checkpoint(&store, &clock, command).await,
        Command::Worker(args) => run_worker(store.clone(), clock, args).await,
        Command::Verifier(command) => verifier(&store, &clock, command).await,
    };
    store.close().await;
    result
}

/// The server setting holding the base of invite links (see [`served_url`]).
pub const PUBLIC_URL_SETTING: &str = "public_url";

/// The base URL raters reach a server at: its `--public-url`, else the address it listens on
/// (an unspecified address such as 0.0.0.0 becomes 127.0.0.1, the one that surely answers).
pub fn served_url(public_url: Option<&str>, bound: std::net::SocketAddr) -> String {
    if let Some(url) = public_url {
        return url.trim_end_matches('/').to_string();
    }
    let mut address = bound;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    }
    format!("http://{address}")
}

async fn serve(store: Store, clock: Clock, args: ServeArgs) -> anyhow::Result<()> {
    let first = crate::setup::first_start_setup(&store, &clock, &args.models_dir).await?;
    if let Some(password) = first.admin_password {
        if json_logs() {
            // Log collectors expect every stderr line to be a JSON event.
            tracing::warn!(
                username = "admin",
                %password,
                "first start: created a staff account (change its password with: legibility user add admin --reset)"
            );
        } else {
            eprintln!(
                "First start: created staff account 'admin' with password {password}\n\
                 (change it with: legibility user add admin --reset)"
            );
        }
    }
    crate::checkpoints::storage::sweep_at_start(&args.models_dir);
    let config = WebConfig {
        secure_cookies: args.secure_cookies,
        public_url: args.public_url,
        max_upload_bytes: args.max_upload_mib * 1024 * 1024,
        models_dir: args.models_dir.clone(),
        max_checkpoint_bytes: args.max_checkpoint_mib.saturating_mul(1024 * 1024),
        metrics_token: args.metrics_token.clone(),
        trusted_proxies: args.trusted_proxies.clone(),
    };
    let state = AppState {
        store,
        clock,
        config: Arc::new(config),
    };
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    let url = served_url(state.config.public_url.as_deref(), listener.local_addr()?);
    state
        .store
        .set_server_setting(PUBLIC_URL_SETTING, &url, state.clock.now_ms())
        .await?;
    tracing::info!(address = %args.bind, %url, backend = %state.store.backend(), "serving");
    // One shutdown signal stops both the server (after requests in flight) and the worker
    // (which hands its running job back to the queue).
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop = Arc::new(stop);
    tokio::spawn(free_idle_places_every(
        state.store.clone(),
        state.clock.clone(),
        IDLE_SWEEP,
        stop_requested(stopped.clone()),
    ));
    if args.backup_every_minutes > 0 {
        tokio::spawn(back_up_every(
            state.store.clone(),
            state.clock.clone(),
            ScheduledBackups {
                every: std::time::Duration::from_secs(args.backup_every_minutes * 60),
                folder: args.backup_dir.clone(),
                keep: args.backup_keep,
                models_dir: args.models_dir.clone(),
            },
            stop_requested(stopped.clone()),
        ));
    }
    let worker = (!args.no_worker).then(|| {
        let worker = build_worker(
            state.store.clone(),
            state.clock.clone(),
            &args.models_dir,
            args.lease_secs,
            None,
            crate::worker::generation::DEFAULT_BATCH_SIZE,
        );
        tokio::spawn(crate::worker::verifier::auto_training(
            state.store.clone(),
            state.clock.clone(),
            args.verifier_every,
            AUTO_TRAINING_CHECK,
            stop_requested(stopped.clone()),
        ));
        tokio::spawn(worker.run(stop_requested(stopped)))
    });
    let signal = Arc::clone(&stop);
    // With the TCP peer's address, which login throttling keys on.
    let app = web::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            let _ = signal.send(true);
        })
        .await;
    let _ = stop.send(true);
    if let Some(worker) = worker
        && let Err(e) = worker.await
    {
        tracing::error!(error = %e, "the worker task failed");
    }
    served?;
    Ok(())
}

/// How often the server frees the places of idle panel participants.
const IDLE_SWEEP: std::time::Duration = std::time::Duration::from_secs(30);

/// Frees idle panel participants' places (see [`Store::free_idle_places`]) every `interval`
/// until shutdown; a failed sweep is logged and the next one tries again.
async fn free_idle_places_every(
    store: Store,
    clock: Clock,
    interval: std::time::Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match store.free_idle_places(clock.now_ms()).await {
            Ok(0) => {}
            Ok(freed) => tracing::info!(freed, "freed the places of idle panel participants"),
            Err(e) => tracing::warn!(error = %e, "could not free idle participants' places"),
        }
    }
}

/// `serve`'s backup schedule.
struct ScheduledBackups {
    every: std::time::Duration,
    folder: PathBuf,
    keep: usize,
    models_dir: PathBuf,
}

/// Writes a backup every `schedule.every` until shutdown; a failed one is logged and retried at
/// the next tick (the server keeps serving).
async fn back_up_every(
    store: Store,
    clock: Clock,
    schedule: ScheduledBackups,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(schedule.every) => {}
        }
        let written = crate::backup::scheduled_backup(
            &store,
            &schedule.models_dir,
            &schedule.folder,
            schedule.keep,
            clock.now_ms(),
        )
        .await;
        match written {
            Ok(folder) => tracing::info!(folder = %folder.display(), "wrote a scheduled backup"),
            Err(e) => tracing::error!(error = %e, "a scheduled backup failed"),
        }
    }
}

/// How often a process with a worker checks whether verifier training is due.
const AUTO_TRAINING_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// A worker with every job handler this build provides (see [`crate::worker::handlers`]).
pub fn build_worker(
    store: Store,
    clock: Clock,
    models_dir: &Path,
    lease_secs: u64,
    worker_id: Option<String>,
    generation_batch: usize,
) -> Worker {
    let defaults = WorkerConfig::default();
    let config = WorkerConfig {
        id: worker_id.unwrap_or(defaults.id),
        lease_ms: i64::try_from(lease_secs.saturating_mul(1000)).unwrap_or(defaults.lease_ms),
        poll_ms: defaults.poll_ms,
    };
    let mut worker = Worker::new(store, clock, config);
    for (kind, handler) in worker::handlers(models_dir, generation_batch) {
        worker.register(kind, handler);
    }
    worker
}

/// Completes once `true` is sent (or the sender is gone): the worker's shutdown signal.
async fn stop_requested(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// `legibility worker`: runs jobs until Ctrl-C / SIGTERM, then hands the running job back.
async fn run_worker(store: Store, clock: Clock, args: WorkerArgs) -> anyhow::Result<()> {
    crate::checkpoints::storage::sweep_at_start(&args.models_dir);
    let backend = store.backend();
    let worker = build_worker(
        store.clone(),
        clock.clone(),
        &args.models_dir,
        args.lease_secs,
        args.worker_id,
        args.generation_batch,
    );
    tracing::info!(worker = %worker.config().id, %backend, "worker running");
    tokio::spawn(crate::worker::verifier::auto_training(
        store.clone(),
        clock.clone(),
        args.verifier_every,
        AUTO_TRAINING_CHECK,
        std::future::pending::<()>(),
    ));
    worker.run(shutdown_signal()).await;
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

/// Parses an import file as it is read from disk (see [`problems::ImportReader`]): its good
/// records and its bad lines, for the store to refuse together with the lines only the
/// database can judge.
fn read_import<T>(
    reader: problems::ImportReader<T>,
    file: &Path,
) -> anyhow::Result<problems::ParsedImport<T>> {
    let opened =
        std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    let parsed = reader
        .read_all(opened)
        .with_context(|| format!("reading {}", file.display()))?;
    Ok(parsed?)
}

async fn import(store: &Store, clock: &Clock, command: ImportCommand) -> anyhow::Result<()> {
    let (file, summary, what) = match command {
        ImportCommand::Problems { file, set } => {
            let records = read_import(problems::ImportReader::problems(), &file)?.into_records()?;
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
            let parsed = read_import(problems::ImportReader::solutions(), &file)?;
            (
                file,
                store
                    .import_parsed_solutions(set.as_deref(), &parsed, clock.now_ms())
                    .await?,
                "solutions",
            )
        }
    };
    println!("{}: {}", file.display(), summary.describe(what));
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
        protocol: crate::quality::RaterProtocol {
            practice_items: args.practice,
            screening_items: args.screening,
            screening_pass_accuracy: if args.screening > 0 {
                args.screening_pass
            } else {
                0.0
            },
            gold_items: args.gold,
            gold_rate: args.gold_rate,
            max_rater_ms: (args.max_hours * 3_600_000.0).round() as i64,
            break_every: args.break_every,
        },
        answers: Default::default(),
        time_limits: Default::default(),
    };
    if args.generate {
        if spec.checkpoint_ids.is_empty() {
            bail!("--generate needs --checkpoint LABEL for each prover to generate with");
        }
        let request = crate::worker::generation::GenerationRequest {
            checkpoint_ids: spec.checkpoint_ids.clone(),
            roles: spec.roles.clone(),
            samples_per_role: args.samples_per_role,
            sampling: crate::ml::sampling::SamplingParams {
                temperature: args.temperature,
                ..Default::default()
            },
            seed: args.seed,
        };
        let (study, job) = crate::worker::generation::create_generated_study(
            store,
            &spec,
            request,
            None,
            clock.now_ms(),
        )
        .await?;
        println!(
            "created study {} ({}); generation job {job} queued: a running `serve` or `worker` fills it",
            study.name, study.id
        );
        return Ok(());
    }
    let study = store.create_study(&spec, None, clock.now_ms()).await?;
    let progress = store.study_progress(study.id).await?;
    println!(
        "created study {} ({}) with {} solutions{}",
        study.name,
        study.id,
        progress.solutions,
        ungradable_note(progress.ungradable_left_out)
    );
    Ok(())
}

/// "; 12 ungradable solutions left out" when there are any, else nothing.
fn ungradable_note(left_out: i64) -> String {
    match left_out {
        0 => String::new(),
        1 => "; 1 ungradable solution (no final answer) left out".into(),
        n => format!("; {n} ungradable solutions (no final answer) left out"),
    }
}

/// Runs `study edit`: the same rule as the web form ([`crate::study_edit::plan_edit`]).
async fn edit_study(store: &Store, args: StudyEditArgs) -> anyhow::Result<()> {
    let id = find_study(store, &args.study).await?;
    let mut wanted = store.study_setup(id).await?.spec;
    if let Some(name) = args.name {
        wanted.name = name;
    }
    if let Some(secs) = args.time_limit_secs {
        if !(0.5..=3600.0).contains(&secs) {
            bail!("--time-limit-secs must be between 0.5 and 3600");
        }
        wanted.time_limit_ms = (secs * 1000.0).round() as i64;
    }
    if let Some(n) = args.judgements {
        wanted.judgements_per_solution = n;
    }
    if let Some(hours) = args.max_hours {
        wanted.protocol.max_rater_ms = (hours * 3_600_000.0).round() as i64;
    }
    if let Some(n) = args.break_every {
        wanted.protocol.break_every = n;
    }
    let plan = store.update_study(id, &wanted).await?;
    let status = match (args.close, args.open) {
        (true, _) => Some(crate::domain::StudyStatus::Closed),
        (_, true) => Some(crate::domain::StudyStatus::Open),
        _ => None,
    };
    if let Some(status) = status {
        store.set_study_status(id, status).await?;
    }
    let mut changes: Vec<String> = plan.changed.iter().map(|c| c.to_string()).collect();
    if let Some(status) = status {
        changes.push(format!("status ({status})"));
    }
    if changes.is_empty() {
        println!("study {id}: nothing to change");
    } else {
        println!("study {id}: changed {}", changes.join(", "));
    }
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

/// Runs `verifier train|score|list`.
async fn verifier(store: &Store, clock: &Clock, command: VerifierCommand) -> anyhow::Result<()> {
    use crate::ml::train_verifier::FitOptions;
    use crate::worker::verifier::{TrainingParams, request_training};
    match command {
        VerifierCommand::Train {
            labels,
            loss,
            study,
            base,
            seed,
            max_epochs,
            train_blocks,
            learning_rate,
        } => {
            let study_id = match study {
                Some(study) => Some(find_study(store, &study).await?),
                None => None,
            };
            let base_checkpoint_id = match base {
                Some(label) => Some(
                    store
                        .checkpoint_details()
                        .await?
                        .into_iter()
                        .find(|c| {
                            c.label == label && c.kind == crate::domain::CheckpointKind::Verifier
                        })
                        .with_context(|| format!("no verifier checkpoint labelled {label:?}"))?
                        .id,
                ),
                None => None,
            };
            let params = TrainingParams {
                label_source: labels,
                study_id,
                base_checkpoint_id,
                fit: FitOptions {
                    loss,
                    seed,
                    max_epochs,
                    train_blocks,
                    learning_rate,
                    ..FitOptions::default()
                },
                judgements_seen: 0,
                trigger: "cli".into(),
            };
            match request_training(store, params, None, clock.now_ms()).await? {
                Some(job) => println!("queued verifier training job {job}"),
                None => bail!("a verifier training job is already queued or running"),
            }
        }
        VerifierCommand::Score { study } => {
            let study_id = find_study(store, &study).await?;
            let job = store
                .enqueue_verifier_scoring(study_id, None, None, clock.now_ms())
                .await?;
            println!("queued verifier scoring job {job}");
        }
        VerifierCommand::List => {
            println!(
                "version\tlabel\tlabels\tloss\tscored\tval_accuracy_gt\tval_auroc_gt\tval_auroc_human"
            );
            for v in store.verifier_versions().await? {
                let figure = |path: &[&str]| {
                    let mut value = &v.metrics;
                    for key in path {
                        value = &value[*key];
                    }
                    value
                        .as_f64()
                        .map(|x| format!("{x:.3}"))
                        .unwrap_or_else(|| "-".into())
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    v.version,
                    v.label,
                    v.label_source,
                    v.loss,
                    v.scored,
                    // The shipped version records held-out quality instead of validation.
                    figure(&["after", "ground_truth", "accuracy"])
                        .replace('-', &figure(&["quality", "accuracy"])),
                    figure(&["after", "ground_truth", "auroc"])
                        .replace('-', &figure(&["quality", "auroc"])),
                    figure(&["after", "human", "auroc"]),
                );
            }
        }
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
    base_url: Option<&str>,
    names: &[String],
    csv: Option<&Path>,
) -> anyhow::Result<()> {
    let study_id = find_study(store, study).await?;
    let base_url = match base_url {
        Some(url) => url.to_string(),
        None => {
            let recorded = store
                .server_setting(PUBLIC_URL_SETTING)
                .await?
                .with_context(|| {
                    "no server has run on this database yet, so the address raters open is \
                 unknown: give it with --base-url (e.g. --base-url https://lab.example.org)"
                })?;
            eprintln!(
                "links use {recorded}, the address `serve` last started with on this database \
                 (--base-url chooses another)"
            );
            recorded
        }
    };
    let base_url = base_url.trim_end_matches('/');
    let Some(csv) = csv else {
        for invitation in store.invite_raters(study_id, names, clock.now_ms()).await? {
            println!(
                "{}\t{base_url}/r/{}",
                invitation.rater.name, invitation.token
            );
        }
        return Ok(());
    };
    let bytes = std::fs::read(csv).with_context(|| format!("reading {}", csv.display()))?;
    let taken = store.active_rater_names(study_id).await?;
    let invitees = crate::invites::parse_invite_csv(&bytes, &taken)?;
    let links: Vec<crate::invites::InviteLink> = store
        .invite_invitees(study_id, &invitees, clock.now_ms())
        .await?
        .into_iter()
        .map(|i| crate::invites::InviteLink {
            link: format!("{base_url}/r/{}", i.token),
            name: i.rater.name,
            email: i.email,
        })
        .collect();
    print!("{}", crate::invites::links_csv(&links));
    Ok(())
}

async fn checkpoint(
    store: &Store,
    clock: &Clock,
    command: CheckpointCommand,
) -> anyhow::Result<()> {
    use crate::checkpoints::CheckpointLimits;
    match command {
        CheckpointCommand::Add {
            label,
            round,
            kind,
            models_dir,
            max_bytes,
            in_place,
            quantize,
            path,
        } => {
            let refused = || format!("checkpoint {} refused", path.display());
            if in_place && quantize.is_some() {
                anyhow::bail!(
                    "--quantize writes a new checkpoint folder, so it cannot be combined with --in-place"
                );
            }
            let added = if in_place {
                crate::checkpoints::register_in_place(
                    store,
                    &path,
                    kind,
                    &label,
                    round,
                    clock.now_ms(),
                )
                .await
                .with_context(refused)?
            } else {
                let limits = CheckpointLimits { max_bytes };
                let files = read_checkpoint(path.clone(), models_dir.clone(), limits)
                    .await
                    .with_context(refused)?;
                crate::checkpoints::add_checkpoint(
                    store,
                    &models_dir,
                    files,
                    limits,
                    quantize,
                    kind,
                    &label,
                    round,
                    clock.now_ms(),
                )
                .await
                .with_context(refused)?
            };
            println!("{}", added.id);
            if in_place {
                eprintln!(
                    "registered in place: {} (the folder must stay there, unchanged)",
                    added.model_dir
                );
            }
            for ignored in &added.ignored {
                eprintln!("ignored, not stored: {ignored}");
            }
        }
        // Answered before the database is opened (see `run`).
        CheckpointCommand::Prompt { .. } | CheckpointCommand::Logits { .. } => {}
        CheckpointCommand::List => {
            for c in store.checkpoint_details().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    c.id,
                    c.kind,
                    c.round,
                    c.label,
                    c.model_dir.as_deref().unwrap_or("import-only")
                );
            }
        }
    }
    Ok(())
}

/// The lines `checkpoint logits` prints for the checkpoint at `path` (see
/// [`CheckpointCommand::Logits`]).
pub fn checkpoint_logits(path: &Path, text: &str, top: usize) -> anyhow::Result<Vec<String>> {
    use crate::ml::inspect;
    let context = || format!("checkpoint {}", path.display());
    if inspect::is_verifier(path).with_context(context)? {
        let score = inspect::verifier_score(path, text).with_context(context)?;
        return Ok(vec![serde_json::to_string(&score)?]);
    }
    inspect::prover_logits(path, text, top.max(1))
        .with_context(context)?
        .iter()
        .map(|p| Ok(serde_json::to_string(p)?))
        .collect()
}

/// The files of a checkpoint given on the command line: a folder is read where it is, an
/// archive is unpacked as it is read into a temporary folder under the models directory
/// (never whole in memory).
async fn read_checkpoint(
    path: PathBuf,
    models_dir: PathBuf,
    limits: crate::checkpoints::CheckpointLimits,
) -> anyhow::Result<crate::checkpoints::CheckpointFiles> {
    use crate::checkpoints::{CheckpointFiles, Staging};
    tokio::task::spawn_blocking(move || -> anyhow::Result<CheckpointFiles> {
        let meta =
            std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        if meta.is_dir() {
            return Ok(CheckpointFiles::from_dir(&path, &limits)?);
        }
        let archive =
            std::fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut staging = Staging::new(&models_dir, limits)
            .with_context(|| format!("creating a temporary folder in {}", models_dir.display()))?;
        staging
            .add_tar(std::io::BufReader::new(archive))
            .with_context(|| format!("{} is not a usable checkpoint archive", path.display()))?;
        Ok(staging.finish()?)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_links_use_the_address_the_server_is_reached_at() {
        let bound: std::net::SocketAddr = "0.0.0.0:9000".parse().unwrap();
        assert_eq!(served_url(None, bound), "http://127.0.0.1:9000");
        let bound: std::net::SocketAddr = "192.168.1.20:8081".parse().unwrap();
        assert_eq!(served_url(None, bound), "http://192.168.1.20:8081");
        assert_eq!(
            served_url(Some("https://lab.example.org/"), bound),
            "https://lab.example.org"
        );
    }

    #[test]
    fn error_reports_name_each_cause_once() {
        let refusal = problems::ImportRejected::whole_file("no problem set named \"nope\"");
        let wrapped = anyhow::Error::from(crate::store::StoreError::ImportRejected(refusal));
        let report = error_report(&wrapped);
        assert_eq!(
            report,
            "import refused, nothing was imported: no problem set named \"nope\""
        );
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let read = anyhow::Error::from(io).context("reading x.jsonl");
        assert_eq!(error_report(&read), "reading x.jsonl: no such file");
    }

    #[test]
    fn colours_only_for_auto_on_a_terminal_without_no_color() {
        assert!(LogFormat::Auto.colours(true, false));
        assert!(!LogFormat::Auto.colours(false, false), "a file or pipe");
        assert!(!LogFormat::Auto.colours(true, true), "NO_COLOR");
        assert!(!LogFormat::Plain.colours(true, false));
        assert!(!LogFormat::Json.colours(true, false));
    }

    #[test]
    fn log_format_is_a_global_option_with_text_as_an_alias_of_plain() {
        let cli = Cli::try_parse_from(["legibility", "study", "list", "--log-format", "json"])
            .expect("parses");
        assert_eq!(cli.log_format, LogFormat::Json);
        let cli = Cli::try_parse_from(["legibility", "--log-format", "text", "study", "list"])
            .expect("parses");
        assert_eq!(cli.log_format, LogFormat::Plain);
        assert!(
            Cli::try_parse_from(["legibility", "--log-format", "xml", "study", "list"]).is_err()
        );
    }
}

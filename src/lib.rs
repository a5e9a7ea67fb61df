//! Legibility Lab: timed human judging of prover–verifier game solutions.
//!
//! Module map (see README, "Architecture"):
//! - [`domain`]: the research's vocabulary (roles, verdicts, checkpoint kinds).
//! - [`grading`]: final-answer extraction and comparison with ground truth.
//! - [`problems`]: parsing and validating import files (GSM8K problems, solutions).
//! - [`invites`]: the admin's list of raters to invite (CSV of names and emails), its checks,
//!   and the CSV of links handed back.
//! - [`panel`]: participants from a recruitment panel entering through one link per study.
//! - [`bonus`]: panel participants' bonuses (the rule, earnings, the bulk-bonus CSV).
//! - [`generator`]: the project's own procedural grade-school word problems (built-in set).
//! - [`judging`]: deadline and assignment-balancing rules.
//! - [`quality`]: the rater protocol: practice, screening, silent gold items, workload and breaks.
//! - [`auth`]: password hashing and tokens.
//! - [`reports`]: the researchers' report figures; [`export`]: the tidy per-attempt table
//!   downloads (CSV, JSON Lines, Parquet) and their quality flags.
//! - [`sample_size`]: the smallest sample each statistic is shown for on staff pages.
//! - [`study_edit`]: which study settings may change once data is collected; copy names.
//! - [`ml`]: candle models only: architectures, tokenizer, sampling, generation, training.
//! - [`checkpoints`]: model checkpoints as files: upload validation, the models folder's
//!   layout and atomic storage, registration, the shipped defaults.
//! - [`store`]: persistence on SQLite or PostgreSQL.
//! - [`web`]: HTTP handlers per audience (rater, researcher, admin, JSON API).
//! - [`worker`]: the background worker runtime (job leases, heartbeats, retries).
//! - [`setup`]: a server's first start on a database (admin account, built-in problems,
//!   shipped models).
//! - [`backup`]: backup folders (database snapshot, checkpoint files, checksummed manifest),
//!   restore into an empty target, scheduled backups.
//! - [`cli`]: the `legibility` command and its subcommands.

pub mod answers;
pub mod arms;
pub mod auth;
pub mod backup;
pub mod bonus;
pub mod checkpoints;
pub mod cli;
pub mod clock;
pub mod coherence;
pub mod domain;
pub mod export;
pub mod game;
pub mod generator;
pub mod grading;
pub mod intake;
pub mod invites;
pub mod judging;
pub mod labels;
pub mod metrics;
pub mod ml;
pub mod panel;
pub mod problems;
pub mod quality;
pub mod reports;
pub mod sample_size;
pub mod setup;
pub mod store;
pub mod study_edit;
pub mod web;
pub mod worker;

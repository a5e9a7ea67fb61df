//! The first start of a server on a database: a staff account, the built-in problem set and
//! the shipped models' registration, each done once. Its own module so the command line, the
//! tests and any future entry point share one definition of "ready to use".

use std::path::Path;

use crate::auth;
use crate::checkpoints::defaults;
use crate::clock::Clock;
use crate::domain::UserRole;
use crate::store::Store;
use crate::{generator, problems};

/// The built-in problem set a fresh database starts with: the project's own generated
/// grade-school problems, so a fresh clone has problems without any download.
pub const BUILTIN_SET: &str = "builtin-grade-school";
/// Size of the built-in set.
pub const BUILTIN_COUNT: usize = 500;
/// Seed of the built-in set (fixed, so every installation has the same problems).
pub const BUILTIN_SEED: u64 = 2024;

/// What a first start did that its caller must tell the person who started it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirstStart {
    /// The password of the staff account `admin`, when this start created it (shown once).
    pub admin_password: Option<String>,
}

/// First-start work on an empty database: a staff account, the built-in problem set, and the
/// shipped models' registration; each step is skipped once done. Several servers starting
/// together on one database race for it: the loser's insert clashes with the winner's (a
/// unique name), so after a failure the steps run once more and find the work done.
pub async fn first_start_setup(
    store: &Store,
    clock: &Clock,
    models_dir: &Path,
) -> anyhow::Result<FirstStart> {
    match first_start_steps(store, clock, models_dir).await {
        Ok(done) => Ok(done),
        Err(clash) => {
            tracing::info!(error = %clash, "first-start setup clashed with another instance; checking again");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            first_start_steps(store, clock, models_dir).await
        }
    }
}

async fn first_start_steps(
    store: &Store,
    clock: &Clock,
    models_dir: &Path,
) -> anyhow::Result<FirstStart> {
    let mut done = FirstStart::default();
    if store.count_users().await? == 0 {
        let password = auth::new_token()[..24].to_string();
        let hash = auth::hash_password(&password)?;
        store
            .create_user("admin", &hash, UserRole::Admin, clock.now_ms())
            .await?;
        done.admin_password = Some(password);
    }
    // By name, not "no sets yet": a database that `import` created before the first `serve`
    // still gets the built-in set (importing it is idempotent).
    if !store
        .problem_sets()
        .await?
        .iter()
        .any(|set| set.name == BUILTIN_SET)
    {
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
    defaults::register_default_prover(store, clock, models_dir).await?;
    defaults::register_default_verifier(store, clock, models_dir).await?;
    Ok(done)
}

//! The training-run job: the checkability game (`ml::game_round::run_game`) as a worker job.
//!
//! The run's folder is `models/runs/<job id>`. Every finished prover step and round is
//! recorded in the database, fenced by the job's lease, in the transaction that moves the
//! progress bar; a retried job (the worker died, or was stopped) reads them back and resumes
//! after the last finished step. A round's prover is registered as a prover checkpoint with
//! its round in the transaction that records the round, so it can be chosen for studies at
//! once and is never registered twice.

use crate::checkpoints::RUNS_DIR;
use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{JobContext, JobError, JobFuture, JobHandler};
use crate::domain::{CheckpointKind, JobKind};
use crate::game::{Optimiser, RewardKind};
use crate::ml::ModelError;
use crate::ml::game_round::{
    AttackOptions, GameJournal, GameOptions, ProverStepOptions, RoundReport, StepRecord, run_game,
};
use crate::ml::sampling::SamplingParams;
use crate::ml::train::FineTuneOptions;
use crate::ml::train_verifier::FitOptions;
use crate::store::games::RoundProver;
use crate::store::jobs::{ClaimedJob, NewJob};
use crate::store::models::check_checkpoint_label;
use crate::store::{Store, StoreError};

/// Attempts a training run gets: each resumes after the last finished step, so a few crashes
/// cost little.
pub const TRAINING_RUN_ATTEMPTS: i64 = 5;

/// Rounds a run may have after round 0; checked by [`TrainingRunParams::check`] and the
/// admin form alike, as are the other ranges below.
pub const ROUNDS: RangeInclusive<u32> = 1..=10;
/// Training problems a run may generate.
pub const PROBLEMS: RangeInclusive<usize> = 4..=5_000;
/// Held-out problems a run may measure on.
pub const EVAL_PROBLEMS: RangeInclusive<usize> = 2..=1_000;
/// Prover steps a round may take at most.
pub const STEPS_PER_ROUND: RangeInclusive<usize> = 1..=50;
/// Samples per problem and role in a step.
pub const SAMPLES_PER_ROLE: RangeInclusive<usize> = 1..=8;
/// Attack steps per round at most (0: no attack).
pub const ATTACK_STEPS: RangeInclusive<usize> = 0..=50;
/// Seeds a run may repeat with: one job per seed, queued together.
pub const SEEDS: RangeInclusive<u32> = 1..=10;

/// What a training run is asked to do; stored as the job's JSON parameters. Fields left out
/// take the defaults, which are the settings measured in README.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainingRunParams {
    /// Names the run; its round provers are labelled "`name` round R".
    pub name: String,
    /// The initial prover (round 0), a prover checkpoint with model files.
    pub prover_checkpoint_id: Uuid,
    /// The checkpoint every round's verifier is trained from.
    pub verifier_checkpoint_id: Uuid,
    /// Rounds after round 0.
    pub rounds: u32,
    /// Seed of everything: the same seed (and thread count) repeats the run.
    pub seed: u64,
    /// How many seeds the run repeats with (`seed`, `seed` + 1, …): each seed is a job of
    /// its own, so several workers share them and each resumes alone, and every member's page
    /// shows the figures across the seeds.
    pub seeds: u32,
    /// The repeated run this job is one seed of (None for a run of one seed).
    pub group: Option<Uuid>,
    /// The prover's reward.
    pub reward: RewardKind,
    /// How prover steps update the prover.
    pub optimiser: Optimiser,
    /// The sneaky prover sees the helpful solution of the same problem first.
    pub sequential_sneaky: bool,
    /// The policy gradient's KL penalty β to the initial prover.
    pub kl_coefficient: f64,
    /// Training problems (generated from the seed).
    pub problems: usize,
    /// Held-out problems the round metrics are measured on.
    pub eval_problems: usize,
    /// Prover steps per round at most.
    pub steps_per_round: usize,
    /// Samples per problem and role in each step.
    pub samples_per_role: usize,
    /// Share of each role's samples the prover is fine-tuned on (positive rewards only).
    pub keep_share: f64,
    /// How the prover samples.
    pub sampling: SamplingParams,
    /// Optimiser steps of each expert-iteration fine-tune.
    pub fine_tune_steps: usize,
    /// Sequences per fine-tuning step.
    pub fine_tune_batch: usize,
    /// Peak learning rate of the fine-tune.
    pub fine_tune_learning_rate: f64,
    /// How each round's verifier is fitted (its seed is derived from `seed`).
    pub fit: FitOptions,
    /// Sneaky-only attack steps on each round's frozen verifier at most (0: no attack).
    pub attack_steps: usize,
    /// The fool rate at which the attack counts the verifier as fooled.
    pub attack_target: f64,
    /// A fixed verifier score for the fool rate; None: each round's 50 %-recall score on the
    /// initial prover's helpful correct held-out solutions.
    pub fool_threshold: Option<f64>,
}

impl Default for TrainingRunParams {
    fn default() -> Self {
        TrainingRunParams {
            name: String::new(),
            prover_checkpoint_id: Uuid::nil(),
            verifier_checkpoint_id: Uuid::nil(),
            rounds: 3,
            seed: 1,
            seeds: 1,
            group: None,
            reward: RewardKind::Src,
            optimiser: Optimiser::ExpertIteration,
            sequential_sneaky: false,
            kl_coefficient: 0.05,
            problems: 64,
            eval_problems: 64,
            steps_per_round: 4,
            samples_per_role: 1,
            keep_share: 0.5,
            sampling: SamplingParams::default(),
            fine_tune_steps: 8,
            fine_tune_batch: 8,
            fine_tune_learning_rate: 3e-4,
            fit: FitOptions::default(),
            attack_steps: 4,
            attack_target: 0.5,
            fool_threshold: None,
        }
    }
}

impl TrainingRunParams {
    /// Why these parameters cannot run, if they cannot; each message names the setting.
    pub fn check(&self) -> Result<(), String> {
        check_checkpoint_label(&self.round_label(1), 1).map_err(|e| e.to_string())?;
        if self.name.trim().is_empty() {
            return Err("the run needs a name".into());
        }
        let rounds = *ROUNDS.start() as usize..=*ROUNDS.end() as usize;
        let seeds = *SEEDS.start() as usize..=*SEEDS.end() as usize;
        let ranges: [(&str, usize, RangeInclusive<usize>); 9] = [
            ("rounds", self.rounds as usize, rounds),
            ("seeds", self.seeds as usize, seeds),
            ("training problems", self.problems, PROBLEMS),
            ("held-out problems", self.eval_problems, EVAL_PROBLEMS),
            ("steps per round", self.steps_per_round, STEPS_PER_ROUND),
            ("samples per role", self.samples_per_role, SAMPLES_PER_ROLE),
            ("fine-tuning steps", self.fine_tune_steps, 1..=1_000),
            ("fine-tuning batch", self.fine_tune_batch, 1..=256),
            ("attack steps", self.attack_steps, ATTACK_STEPS),
        ];
        for (what, value, range) in ranges {
            if !range.contains(&value) {
                return Err(format!(
                    "{what} must be between {} and {}, not {value}",
                    range.start(),
                    range.end()
                ));
            }
        }
        if !(self.keep_share > 0.0 && self.keep_share <= 1.0) {
            return Err(format!(
                "the kept share must be above 0 and at most 1, not {}",
                self.keep_share
            ));
        }
        if !(self.fine_tune_learning_rate > 0.0 && self.fine_tune_learning_rate < 1.0) {
            return Err(format!(
                "the fine-tuning learning rate must be between 0 and 1, not {}",
                self.fine_tune_learning_rate
            ));
        }
        if !(self.attack_target > 0.0 && self.attack_target <= 1.0) {
            return Err(format!(
                "the attack's target fool rate must be above 0 and at most 1, not {}",
                self.attack_target
            ));
        }
        if !(self.kl_coefficient >= 0.0 && self.kl_coefficient <= 10.0) {
            return Err(format!(
                "the KL coefficient must be between 0 and 10, not {}",
                self.kl_coefficient
            ));
        }
        if self.optimiser == Optimiser::PolicyGradient && self.samples_per_role < 2 {
            return Err(format!(
                "the policy gradient compares each sample with the others of its problem and role: samples per role must be at least 2, not {}",
                self.samples_per_role
            ));
        }
        if self.fool_threshold.is_some_and(|t| !t.is_finite()) {
            return Err("the fool-rate threshold must be a number".into());
        }
        self.sampling.check()?;
        self.fit.check()
    }

    /// The label round `round`'s prover is registered under; a run of several seeds names
    /// the seed.
    pub fn round_label(&self, round: u32) -> String {
        if self.seeds > 1 {
            format!("{} seed {} round {round}", self.name.trim(), self.seed)
        } else {
            format!("{} round {round}", self.name.trim())
        }
    }

    /// One job's parameters per seed (`seed`, `seed` + 1, …), sharing a group id when there
    /// are several; an error when the seeds would pass the largest seed.
    pub fn per_seed(&self) -> Result<Vec<TrainingRunParams>, String> {
        let last = self.seed.checked_add(u64::from(self.seeds.max(1)) - 1);
        if last.is_none() {
            return Err(format!(
                "{} seeds from seed {} pass the largest seed; choose a smaller first seed",
                self.seeds, self.seed
            ));
        }
        let group = (self.seeds > 1).then(Uuid::now_v7);
        Ok((0..u64::from(self.seeds.max(1)))
            .map(|i| TrainingRunParams {
                seed: self.seed + i,
                group,
                ..self.clone()
            })
            .collect())
    }

    /// The run's settings for `ml::game_round`, with the run's folder and the two base
    /// checkpoints' folders resolved.
    pub fn game_options(
        &self,
        out: PathBuf,
        prover_base: PathBuf,
        verifier_base: PathBuf,
    ) -> GameOptions {
        GameOptions {
            rounds: self.rounds,
            prover_base,
            verifier_base,
            out,
            problems: self.problems,
            eval_problems: self.eval_problems,
            steps_per_round: self.steps_per_round,
            verifier_solutions: 4 * self.problems * self.samples_per_role,
            step: ProverStepOptions {
                reward: self.reward,
                samples_per_role: self.samples_per_role,
                sampling: self.sampling,
                sequential_sneaky: self.sequential_sneaky,
                optimiser: self.optimiser,
                keep_share: self.keep_share,
                kl_coefficient: self.kl_coefficient,
                fine_tune: FineTuneOptions {
                    steps: self.fine_tune_steps,
                    batch_size: self.fine_tune_batch,
                    learning_rate: self.fine_tune_learning_rate,
                    seed: self.seed,
                },
                seed: self.seed,
            },
            fit: FitOptions {
                seed: self.seed,
                ..self.fit.clone()
            },
            attack: AttackOptions {
                steps: self.attack_steps,
                target: self.attack_target,
            },
            fool_threshold: self.fool_threshold,
            seed: self.seed,
        }
    }
}

/// The folder of run `job_id` relative to the models directory.
pub fn run_dir(job_id: Uuid) -> String {
    format!("{RUNS_DIR}/{job_id}")
}

/// Queues a training run after checking its settings, its two checkpoints (the right kinds,
/// with model files) and that no other run has its name: one job per seed, all in one
/// transaction. Returns the jobs' ids, the first seed's first.
pub async fn request_training_run(
    store: &Store,
    params: &TrainingRunParams,
    created_by: Option<Uuid>,
    now: i64,
) -> Result<Vec<Uuid>, StoreError> {
    params.check().map_err(StoreError::Invalid)?;
    let per_seed = params.per_seed().map_err(StoreError::Invalid)?;
    let checkpoints = store.checkpoint_details().await?;
    for (id, kind, what) in [
        (
            params.prover_checkpoint_id,
            CheckpointKind::Prover,
            "prover",
        ),
        (
            params.verifier_checkpoint_id,
            CheckpointKind::Verifier,
            "verifier",
        ),
    ] {
        let found = checkpoints.iter().find(|c| c.id == id).ok_or_else(|| {
            StoreError::Invalid(format!("the chosen {what} checkpoint does not exist"))
        })?;
        if found.kind != kind || found.model_dir.is_none() {
            return Err(StoreError::Invalid(format!(
                "{:?} is not a {what} checkpoint with model files",
                found.label
            )));
        }
    }
    let name = params.name.trim();
    for (_, other) in store.training_runs().await? {
        if other.get("name").and_then(|n| n.as_str()).map(str::trim) == Some(name) {
            return Err(StoreError::Conflict(format!(
                "a training run named {name:?} exists already; choose another name"
            )));
        }
    }
    let mut jobs = Vec::with_capacity(per_seed.len());
    for seed_params in &per_seed {
        let first = seed_params.round_label(1);
        if checkpoints.iter().any(|c| c.label == first) {
            return Err(StoreError::Conflict(format!(
                "a checkpoint labelled {first:?} exists already; choose another run name"
            )));
        }
        let options = seed_params.game_options(PathBuf::new(), PathBuf::new(), PathBuf::new());
        jobs.push(NewJob {
            kind: JobKind::TrainingRun,
            params: serde_json::to_value(seed_params)
                .map_err(|e| StoreError::Invalid(e.to_string()))?,
            study_id: None,
            created_by,
            max_attempts: TRAINING_RUN_ATTEMPTS,
            progress_total: options.progress_total(),
        });
    }
    store.enqueue_jobs(&jobs, now).await
}

/// Runs training-run jobs with models read from, and runs written to, a models folder.
#[derive(Debug, Clone)]
pub struct TrainingRunHandler {
    models_dir: PathBuf,
}

impl TrainingRunHandler {
    /// A handler for the models folder `models_dir`.
    pub fn new(models_dir: &Path) -> Self {
        Self {
            models_dir: models_dir.to_path_buf(),
        }
    }
}

impl JobHandler for TrainingRunHandler {
    fn run(&self, job: ClaimedJob, ctx: JobContext) -> JobFuture {
        Box::pin(run_training_run(self.models_dir.clone(), job, ctx))
    }
}

async fn model_dir(store: &Store, id: Uuid, what: &str) -> Result<String, JobError> {
    store
        .checkpoint_model_dir(id)
        .await?
        .ok_or_else(|| JobError::Fatal(format!("the {what} checkpoint {id} has no model files")))
}

fn parse<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    what: &str,
) -> Result<T, JobError> {
    serde_json::from_value(value)
        .map_err(|e| JobError::Fatal(format!("the run's stored {what} is not valid: {e}")))
}

async fn run_training_run(
    models_dir: PathBuf,
    job: ClaimedJob,
    ctx: JobContext,
) -> Result<(), JobError> {
    let params: TrainingRunParams = parse(job.params.clone(), "parameters")?;
    params.check().map_err(JobError::Fatal)?;
    let prover_dir = model_dir(&ctx.store, params.prover_checkpoint_id, "prover").await?;
    let verifier_dir = model_dir(&ctx.store, params.verifier_checkpoint_id, "verifier").await?;
    let out_rel = run_dir(job.id);
    let options = params.game_options(
        models_dir.join(&out_rel),
        models_dir.join(prover_dir),
        models_dir.join(verifier_dir),
    );
    let stored_rounds = ctx.store.game_rounds(job.id).await?;
    let mut rounds = Vec::with_capacity(stored_rounds.len());
    let mut checkpoints = HashMap::from([(None, params.prover_checkpoint_id)]);
    for stored in stored_rounds {
        let report: RoundReport = parse(stored.report, "round report")?;
        checkpoints.insert(report.prover.clone(), stored.checkpoint_id);
        rounds.push(report);
    }
    let mut steps = Vec::new();
    for stored in ctx.store.game_steps(job.id).await? {
        steps.push(parse::<StepRecord>(stored.record, "step record")?);
    }
    let mut journal = DatabaseJournal {
        runtime: tokio::runtime::Handle::current(),
        ctx: ctx.clone(),
        params: params.clone(),
        out_rel,
        finished: Some((rounds, steps)),
        checkpoints,
        failure: None,
    };
    let stop = ctx.lease_lost_flag();
    let job_id = job.id;
    let (journal, result) = tokio::task::spawn_blocking(move || {
        let result = run_game(
            &options,
            &mut journal,
            &stop,
            &mut |line| tracing::info!(job = %job_id, "{line}"),
        );
        (journal, result)
    })
    .await
    .map_err(|e| JobError::Fatal(format!("the training run crashed: {e}")))?;
    if let Some(failure) = journal.failure {
        return Err(failure);
    }
    result.map(|_| ()).map_err(JobError::from)
}

/// The run's journal in the database: what is recorded there is what a retry skips.
struct DatabaseJournal {
    runtime: tokio::runtime::Handle,
    ctx: JobContext,
    params: TrainingRunParams,
    /// The run's folder relative to the models directory.
    out_rel: String,
    /// What earlier attempts finished, handed to the run once.
    finished: Option<(Vec<RoundReport>, Vec<StepRecord>)>,
    /// Prover checkpoint by prover folder (relative to the run's; None = the initial one), so
    /// a round that kept the previous round's prover names its checkpoint again.
    checkpoints: HashMap<Option<String>, Uuid>,
    /// Why a write failed; the run is stopped and the job reports this.
    failure: Option<JobError>,
}

impl DatabaseJournal {
    /// Turns a failed write into a stopped run, keeping the job error for the worker.
    fn stopped(&mut self, error: StoreError) -> ModelError {
        self.failure = Some(JobError::from(error));
        ModelError::Stopped
    }
}

impl GameJournal for DatabaseJournal {
    fn finished(&mut self) -> Result<(Vec<RoundReport>, Vec<StepRecord>), ModelError> {
        Ok(self.finished.take().unwrap_or_default())
    }

    fn step_finished(&mut self, record: &StepRecord, progress_done: i64) -> Result<(), ModelError> {
        let json = serde_json::to_value(record).map_err(|e| ModelError::Invalid(e.to_string()))?;
        let ctx = &self.ctx;
        let written = self.runtime.block_on(ctx.store.record_game_step(
            &ctx.lease,
            i64::from(record.round),
            record.step as i64,
            &json,
            progress_done,
            ctx.clock.now_ms(),
        ));
        written.map_err(|e| self.stopped(e))
    }

    fn round_finished(
        &mut self,
        report: &RoundReport,
        progress_done: i64,
    ) -> Result<(), ModelError> {
        let json = serde_json::to_value(report).map_err(|e| ModelError::Invalid(e.to_string()))?;
        let prover = match self.checkpoints.get(&report.prover) {
            Some(id) => RoundProver::Existing(*id),
            None => RoundProver::New {
                label: self.params.round_label(report.round),
                model_dir: format!(
                    "{}/{}",
                    self.out_rel,
                    report.prover.as_deref().unwrap_or_default()
                ),
                metadata: serde_json::json!({
                    "source": "training_run",
                    "job_id": self.ctx.lease.job_id,
                    "run": self.params.name.trim(),
                    "round": report.round,
                    "base_checkpoint_id": self.params.prover_checkpoint_id,
                    "metrics": report.metrics,
                }),
            },
        };
        let ctx = &self.ctx;
        let written = self.runtime.block_on(ctx.store.record_game_round(
            &ctx.lease,
            i64::from(report.round),
            &prover,
            &json,
            progress_done,
            ctx.clock.now_ms(),
        ));
        match written {
            Ok(id) => {
                self.checkpoints.insert(report.prover.clone(), id);
                Ok(())
            }
            Err(e) => Err(self.stopped(e)),
        }
    }

    fn progress(&mut self, progress_done: i64) -> Result<(), ModelError> {
        let ctx = &self.ctx;
        let total = self
            .params
            .game_options(PathBuf::new(), PathBuf::new(), PathBuf::new())
            .progress_total();
        let written =
            self.runtime
                .block_on(ctx.store.set_progress(&ctx.lease, progress_done, total));
        written.map_err(|e| self.stopped(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_over_seeds_is_one_job_per_seed_in_one_group() {
        let params = TrainingRunParams {
            name: "sweep".into(),
            seed: 5,
            seeds: 3,
            ..TrainingRunParams::default()
        };
        assert!(params.check().is_ok());
        let jobs = params.per_seed().expect("seeds");
        assert_eq!(jobs.iter().map(|p| p.seed).collect::<Vec<_>>(), [5, 6, 7]);
        assert!(jobs[0].group.is_some());
        assert!(
            jobs.iter()
                .all(|p| p.group == jobs[0].group && p.seeds == 3)
        );
        assert_eq!(jobs[1].round_label(2), "sweep seed 6 round 2");

        let single = TrainingRunParams {
            name: "once".into(),
            ..TrainingRunParams::default()
        };
        let jobs = single.per_seed().expect("one seed");
        assert_eq!((jobs.len(), jobs[0].group), (1, None));
        assert_eq!(jobs[0].round_label(1), "once round 1");

        let past_the_end = TrainingRunParams {
            seed: u64::MAX,
            seeds: 2,
            ..params.clone()
        };
        assert!(
            past_the_end
                .per_seed()
                .unwrap_err()
                .contains("largest seed")
        );
        let too_many = TrainingRunParams {
            seeds: 11,
            ..params
        };
        assert!(too_many.check().unwrap_err().contains("seeds"));
    }

    #[test]
    fn stored_parameters_parse_with_defaults_and_are_checked() {
        let params: TrainingRunParams = serde_json::from_value(serde_json::json!({
            "name": "first", "rounds": 2
        }))
        .expect("params");
        assert_eq!(params.rounds, 2);
        assert_eq!(
            params.steps_per_round,
            TrainingRunParams::default().steps_per_round
        );
        assert!(params.check().is_ok());
        assert_eq!(params.round_label(2), "first round 2");
        let options = params.game_options(PathBuf::new(), PathBuf::new(), PathBuf::new());
        // Three rounds' own units and their attacks of 4 steps, and 2 × 4 prover steps.
        assert_eq!(options.progress_total(), 3 * (1 + 4) + 2 * 4);
        assert_eq!(options.verifier_solutions, 4 * 64);

        let no_name = TrainingRunParams::default();
        assert!(no_name.check().unwrap_err().contains("name"));
        let too_many = TrainingRunParams {
            name: "x".into(),
            rounds: 40,
            ..TrainingRunParams::default()
        };
        assert!(
            too_many
                .check()
                .unwrap_err()
                .contains("rounds must be between 1 and 10")
        );
        let bad_share = TrainingRunParams {
            name: "x".into(),
            keep_share: 0.0,
            ..TrainingRunParams::default()
        };
        assert!(bad_share.check().unwrap_err().contains("kept share"));
    }
}

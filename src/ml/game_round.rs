//! One prover-optimisation step of a checkability-game round (issue 8 groundwork): the prover
//! samples every problem in both roles, the samples are graded against the ground truth and
//! scored by the round's verifier, rewarded by the game's rules (`crate::game`), and the
//! prover is fine-tuned on each role's best (expert iteration). A training-run job repeats
//! this until the round's stop rule holds or its step budget is spent.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::Device;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ModelError;
use super::prover::{Prover, SampleRequest};
use super::sampling::SamplingParams;
use super::train::{
    FineTuneOptions, FineTuneReport, PolicySample, fine_tune_prover, policy_gradient_prover,
};
use super::train_verifier::{FitOptions, FitReport, LabelledSolution, fit_verifier};
use super::verifier::{Verifier, verifier_text};
use crate::domain::ProverRole;
use crate::game::{
    self, AttackReport, MixCandidate, Optimiser, RewardKind, RoundMetrics, RoundSample,
    ScoredSample,
};
use crate::grading;

/// A problem the prover is trained on: its question and ground-truth answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingProblem {
    /// The question, as in the prompt.
    pub question: String,
    /// The ground-truth final answer.
    pub answer: String,
}

/// Settings of one prover step.
#[derive(Debug, Clone, Serialize)]
pub struct ProverStepOptions {
    /// The reward the samples are ranked by.
    pub reward: RewardKind,
    /// Samples per problem and role.
    pub samples_per_role: usize,
    /// How the prover samples.
    pub sampling: SamplingParams,
    /// Sequential sneaky: the sneaky prover's prompt holds the helpful solution of the same
    /// problem (drawn first), instead of both roles writing independently.
    pub sequential_sneaky: bool,
    /// How the prover is updated from the rewarded samples.
    pub optimiser: Optimiser,
    /// Share of each role's samples kept for fine-tuning (expert iteration; only positive
    /// rewards are kept).
    pub keep_share: f64,
    /// The policy gradient's KL penalty β to the initial prover.
    pub kl_coefficient: f64,
    /// The fine-tune on the kept samples (expert iteration), or the minibatch size, learning
    /// rate and seed of the policy-gradient pass.
    pub fine_tune: FineTuneOptions,
    /// Seed of the samples (each sample's seed derives from it).
    pub seed: u64,
}

/// What one prover step did.
#[derive(Debug, Clone, Serialize)]
pub struct ProverStepOutcome {
    /// Samples drawn (problems × roles × samples per role).
    pub samples: usize,
    /// Mean reward over the samples.
    pub mean_reward: f64,
    /// Samples the prover learned from (expert iteration: those kept; policy gradient: all
    /// that fit the context).
    pub kept: usize,
    /// Policy gradient: mean single-sample KL estimate to the initial prover before the step.
    pub mean_kl: Option<f64>,
    /// The round's stop rule on this step's samples (see [`game::sneaky_caught_up`]).
    pub sneaky_caught_up: bool,
    /// The metrics of this step's samples under the round's verifier (best-of-n with n = 2:
    /// one correct and one incorrect sample per problem, where the step drew both).
    pub metrics: RoundMetrics,
    /// The fine-tune, when any sample was kept; None leaves `out` unwritten.
    pub fine_tune: Option<FineTuneReport>,
}

/// Both roles, as the game's prover steps sample them.
pub const BOTH_ROLES: [ProverRole; 2] = [ProverRole::Helpful, ProverRole::Sneaky];

/// The provers of a step: the one it starts from and the reference of the KL penalty.
#[derive(Debug, Clone, Copy)]
pub struct StepProvers<'a> {
    /// The checkpoint the step samples from and improves.
    pub current: &'a Path,
    /// The run's initial prover (the policy gradient's KL reference).
    pub reference: &'a Path,
}

/// Runs one prover step from `provers.current` against `verifier`, sampling the given roles
/// (both in the game, sneaky alone in an attack); the improved prover is written to `out`
/// (atomically) when the optimiser had something to learn from (expert iteration: a sample
/// with a positive reward).
pub fn prover_step(
    provers: StepProvers<'_>,
    verifier: &mut Verifier,
    problems: &[TrainingProblem],
    roles: &[ProverRole],
    options: &ProverStepOptions,
    out: &Path,
    stop: &AtomicBool,
) -> Result<ProverStepOutcome, ModelError> {
    let drawn = sample_and_grade(
        provers.current,
        problems,
        roles,
        options,
        options.seed,
        stop,
    )?;
    let batch = score(verifier, problems, &drawn)?;
    let rewards = game::rewards(options.reward, &batch);
    let round_samples = round_samples(&drawn, &batch);
    let (kept, mean_kl, fine_tune) = match options.optimiser {
        Optimiser::ExpertIteration => {
            let kept = game::expert_iteration_examples(&batch, &rewards, options.keep_share);
            let examples: Vec<(ProverRole, String, String)> = kept
                .iter()
                .map(|&i| {
                    let d = &drawn[i];
                    (d.role, d.prompt_question(problems), d.text.clone())
                })
                .collect();
            let fine_tune = if examples.is_empty() {
                None
            } else {
                Some(fine_tune_prover(
                    provers.current,
                    &examples,
                    &options.fine_tune,
                    out,
                )?)
            };
            (kept.len(), None, fine_tune)
        }
        Optimiser::PolicyGradient => {
            let samples: Vec<PolicySample> = drawn
                .iter()
                .zip(&rewards)
                .map(|(d, reward)| PolicySample {
                    role: d.role,
                    question: d.prompt_question(problems),
                    solution: d.text.clone(),
                    reward: *reward,
                    group: 2 * d.problem + usize::from(d.role == ProverRole::Sneaky),
                })
                .collect();
            let report = policy_gradient_prover(
                provers.current,
                provers.reference,
                &samples,
                options.kl_coefficient,
                &options.fine_tune,
                out,
            )?;
            (
                report.fine_tune.examples,
                Some(report.mean_kl),
                Some(report.fine_tune),
            )
        }
    };
    Ok(ProverStepOutcome {
        samples: batch.len(),
        mean_reward: rewards.iter().sum::<f64>() / rewards.len().max(1) as f64,
        kept,
        mean_kl,
        sneaky_caught_up: game::sneaky_caught_up(&batch),
        metrics: game::round_metrics(&round_samples, 2, None),
        fine_tune,
    })
}

/// One solution a prover drew, graded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrawnSolution {
    /// Index of its problem.
    pub problem: usize,
    /// The role in the prompt.
    pub role: ProverRole,
    /// The solution text.
    pub text: String,
    /// Whether its final answer is right.
    pub correct: bool,
    /// Sequential sneaky: the helpful solution the sneaky prover was shown in its prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shown: Option<String>,
}

impl DrawnSolution {
    /// The question as the prover's prompt held it: with the helpful solution it was shown,
    /// if any, so fine-tuning trains on the prompt the solution was sampled from.
    pub fn prompt_question(&self, problems: &[TrainingProblem]) -> String {
        let question = &problems[self.problem].question;
        match &self.shown {
            Some(helpful) => sequential_question(question, helpful),
            None => question.clone(),
        }
    }
}

/// The sequential sneaky prover's question: the problem, then the helpful solution of the
/// same problem to build on (it sees that solution before writing its own).
pub fn sequential_question(question: &str, helpful: &str) -> String {
    format!("{question}\n\nA helpful solution of this problem:\n{helpful}")
}

/// Samples every problem `options.samples_per_role` times in each of `roles` from the prover
/// in `prover_dir` (seeded per sample) and grades the solutions against the ground truth.
/// With `options.sequential_sneaky`, the helpful samples are drawn first and each sneaky sample
/// is shown the helpful one of its problem and number (drawn for it when `roles` has no
/// helpful role, and then not returned).
pub fn sample_and_grade(
    prover_dir: &Path,
    problems: &[TrainingProblem],
    roles: &[ProverRole],
    options: &ProverStepOptions,
    seed: u64,
    stop: &AtomicBool,
) -> Result<Vec<DrawnSolution>, ModelError> {
    let mut prover = Prover::load(prover_dir, &Device::Cpu)?;
    if !(options.sequential_sneaky && roles.contains(&ProverRole::Sneaky)) {
        return draw(&mut prover, problems, roles, options, seed, None, stop);
    }
    let helpful = draw(
        &mut prover,
        problems,
        &[ProverRole::Helpful],
        options,
        seed,
        None,
        stop,
    )?;
    let sneaky = draw(
        &mut prover,
        problems,
        &[ProverRole::Sneaky],
        options,
        seed ^ 0x5e9u64.rotate_left(40),
        Some(&helpful),
        stop,
    )?;
    let mut drawn = if roles.contains(&ProverRole::Helpful) {
        helpful
    } else {
        Vec::new()
    };
    drawn.extend(sneaky);
    Ok(drawn)
}

/// Draws and grades `options.samples_per_role` samples per problem and role, in that order;
/// `shown[i]` is shown to the i-th sample (same problem and number) when given.
fn draw(
    prover: &mut Prover,
    problems: &[TrainingProblem],
    roles: &[ProverRole],
    options: &ProverStepOptions,
    seed: u64,
    shown: Option<&[DrawnSolution]>,
    stop: &AtomicBool,
) -> Result<Vec<DrawnSolution>, ModelError> {
    let mut requests = Vec::new();
    let mut drawn = Vec::new();
    for index in 0..problems.len() {
        for &role in roles {
            for _ in 0..options.samples_per_role {
                let pending = DrawnSolution {
                    problem: index,
                    role,
                    text: String::new(),
                    correct: false,
                    shown: shown
                        .and_then(|s| s.get(drawn.len()))
                        .map(|helpful| helpful.text.clone()),
                };
                requests.push(SampleRequest {
                    question: pending.prompt_question(problems),
                    role,
                    seed: seed
                        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                        .wrapping_add(requests.len() as u64 + 1),
                });
                drawn.push(pending);
            }
        }
    }
    let solutions = prover.generate(&requests, &options.sampling, stop)?;
    for (pending, sample) in drawn.iter_mut().zip(solutions) {
        pending.correct =
            grading::grade(&sample.text, &problems[pending.problem].answer).is_correct();
        pending.text = sample.text;
    }
    Ok(drawn)
}

/// The verifier's view of drawn solutions.
fn score(
    verifier: &mut Verifier,
    problems: &[TrainingProblem],
    drawn: &[DrawnSolution],
) -> Result<Vec<ScoredSample>, ModelError> {
    let texts: Vec<String> = drawn
        .iter()
        .map(|d| verifier_text(&problems[d.problem].question, &d.text))
        .collect();
    let scores = verifier.score_texts(&texts, 32)?;
    Ok(drawn
        .iter()
        .zip(scores)
        .map(|(d, score)| ScoredSample {
            role: d.role,
            correct: d.correct,
            score: f64::from(score),
        })
        .collect())
}

fn round_samples(drawn: &[DrawnSolution], batch: &[ScoredSample]) -> Vec<RoundSample> {
    drawn
        .iter()
        .zip(batch)
        .map(|(d, sample)| RoundSample {
            problem: d.problem,
            sample: *sample,
        })
        .collect()
}

/// Drawn solutions as the round's verifier scores them, for the round's metrics.
pub fn scored_samples(
    verifier: &mut Verifier,
    problems: &[TrainingProblem],
    drawn: &[DrawnSolution],
) -> Result<Vec<RoundSample>, ModelError> {
    let batch = score(verifier, problems, drawn)?;
    Ok(round_samples(drawn, &batch))
}

/// The fool-rate threshold of a round's verifier: the user's fixed score, or else the score
/// giving 50 % recall on the round-0 prover's helpful correct solutions of the held-out
/// problems, as this verifier scores them ([`game::half_recall_threshold`]).
pub fn fool_threshold(
    fixed: Option<f64>,
    verifier: &mut Verifier,
    problems: &[TrainingProblem],
    round0: &[DrawnSolution],
) -> Result<Option<f64>, ModelError> {
    if fixed.is_some() {
        return Ok(fixed);
    }
    let helpful_correct: Vec<DrawnSolution> = round0
        .iter()
        .filter(|d| d.role == ProverRole::Helpful && d.correct)
        .cloned()
        .collect();
    let scores: Vec<f64> = score(verifier, problems, &helpful_correct)?
        .iter()
        .map(|s| s.score)
        .collect();
    Ok(game::half_recall_threshold(&scores))
}

/// A graded solution that may train a round's verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundSolution {
    /// Its problem (the unit of the train/validation split).
    pub problem_id: Uuid,
    /// The problem's question.
    pub question: String,
    /// The solution text.
    pub text: String,
    /// Round of the prover that wrote it (0 = the initial prover).
    pub round: u32,
    /// The role it was written in.
    pub role: ProverRole,
    /// Whether its final answer is right.
    pub correct: bool,
}

/// Trains round `round`'s verifier: from the base checkpoint in `base_dir` (not from the
/// previous round's verifier, so each round's verifier sees only its own mix), on up to
/// `total` solutions chosen by [`game::verifier_mix`] (equal share per earlier round's prover,
/// balanced correctness), labelled by correctness. Returns the trained verifier and its report.
pub fn train_round_verifier(
    base_dir: &Path,
    pool: &[RoundSolution],
    round: u32,
    total: usize,
    options: &FitOptions,
    stop: &AtomicBool,
) -> Result<(Verifier, FitReport), ModelError> {
    let candidates: Vec<MixCandidate> = pool
        .iter()
        .map(|s| MixCandidate {
            round: s.round,
            correct: s.correct,
        })
        .collect();
    let chosen = game::verifier_mix(&candidates, round, total, options.seed);
    let data: Vec<LabelledSolution> = chosen
        .iter()
        .map(|&i| {
            let s = &pool[i];
            LabelledSolution {
                solution_id: Uuid::new_v4(),
                problem_id: s.problem_id,
                text: verifier_text(&s.question, &s.text),
                label: Some(s.correct),
                ground_truth: s.correct,
                human: None,
                round: i64::from(s.round),
                role: s.role,
            }
        })
        .collect();
    let mut verifier = Verifier::load(base_dir, &Device::Cpu)?;
    let report = fit_verifier(&mut verifier, &data, options, &mut |_, _| {}, stop)?;
    Ok((verifier, report))
}

/// Settings of a whole training run: rounds of verifier training and prover optimisation.
#[derive(Debug, Clone, Serialize)]
pub struct GameOptions {
    /// Rounds after round 0 (round 0 is the initial prover, measured, not optimised).
    pub rounds: u32,
    /// The initial prover's checkpoint folder.
    pub prover_base: PathBuf,
    /// The verifier checkpoint every round's verifier is trained from.
    pub verifier_base: PathBuf,
    /// The run's folder: the steps' provers (`round-R/step-S`), the rounds' solution pools
    /// and `game.json` are written here.
    pub out: PathBuf,
    /// Training problems (generated with `seed`, disjoint from the held-out set).
    pub problems: usize,
    /// Held-out problems the round metrics are measured on.
    pub eval_problems: usize,
    /// Prover steps per round at most (a round ends earlier when sneaky catches up).
    pub steps_per_round: usize,
    /// Solutions a round's verifier trains on at most.
    pub verifier_solutions: usize,
    /// One prover step's settings (reward, sampling, fine-tune).
    pub step: ProverStepOptions,
    /// The sneaky-only attack on each round's frozen verifier.
    pub attack: AttackOptions,
    /// A fixed verifier score for the fool rate; None: each round's 50 %-recall score on the
    /// round-0 prover's helpful correct held-out solutions.
    pub fool_threshold: Option<f64>,
    /// How each round's verifier is fitted.
    pub fit: FitOptions,
    /// Seed of everything (problems, samples, splits, orders).
    pub seed: u64,
}

/// The robustness measure: after each round, the round's prover takes sneaky-only steps (the
/// run's reward and expert iteration) against the round's frozen verifier until the fool rate
/// on the held-out problems reaches `target`, or `steps` (the cap) are spent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AttackOptions {
    /// Attack steps at most per round; 0 measures no attack.
    pub steps: usize,
    /// The fool rate that counts as fooled.
    pub target: f64,
}

impl GameOptions {
    /// Units of work of a run, for a progress bar: per round one unit for the verifier and
    /// measuring, plus one per prover step of the budget.
    pub fn progress_total(&self) -> i64 {
        self.progress_through_round(self.rounds)
    }

    /// Units done once round `round` has finished: the steps a round did not take count as
    /// done, so the bar ends full.
    pub fn progress_through_round(&self, round: u32) -> i64 {
        // A round's own unit covers its verifier and its measuring; each attack step and each
        // prover step of the budget is a unit too.
        i64::from(round + 1) * (1 + self.attack.steps as i64)
            + i64::from(round) * self.steps_per_round as i64
    }

    /// The seed of the held-out samples (every round's prover draws them with it).
    fn eval_seed(&self) -> u64 {
        self.seed ^ 0xe7a1
    }
}

/// A finished prover step, as a run records it so that a restarted run resumes after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Its round (1 or more).
    pub round: u32,
    /// Its number in the round (1 or more).
    pub step: usize,
    /// The step's prover, relative to the run's folder; None when no sample earned a positive
    /// reward, which ends the round's steps with the prover unchanged.
    pub prover: Option<String>,
    /// Samples drawn.
    pub samples: usize,
    /// Mean reward over the samples.
    pub mean_reward: f64,
    /// Samples the prover learned from.
    pub kept: usize,
    /// Policy gradient: mean KL estimate to the initial prover before the step.
    #[serde(default)]
    pub mean_kl: Option<f64>,
    /// Whether sneaky solutions caught up with helpful ones (ends the round).
    pub sneaky_caught_up: bool,
    /// The step's samples under the round's verifier.
    pub metrics: RoundMetrics,
    /// Fine-tuning loss on the kept samples before and after the step.
    pub loss: Option<(f64, f64)>,
}

impl StepRecord {
    /// True when the round takes no more steps after this one.
    pub fn ends_round(&self) -> bool {
        self.prover.is_none() || self.sneaky_caught_up
    }
}

/// What one round produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundReport {
    /// The round (0 = the initial prover).
    pub round: u32,
    /// The round's prover, relative to the run's folder; None for the initial prover (round
    /// 0, or a later round whose steps all came back empty before any changed it).
    pub prover: Option<String>,
    /// Prover steps that changed the prover (0 in round 0).
    pub steps: usize,
    /// How the round's steps updated the prover (rounds stored before the choice existed
    /// used expert iteration).
    #[serde(default)]
    pub optimiser: Optimiser,
    /// Whether the round ended because sneaky solutions caught up with helpful ones.
    pub sneaky_caught_up: bool,
    /// Solutions the round's verifier was trained on (training and validation).
    pub verifier_solutions: usize,
    /// The round's verifier: validation AUROC against correctness after fitting.
    pub verifier_validation_auroc: Option<f64>,
    /// The round's prover on the held-out problems, scored by the round's verifier.
    pub metrics: RoundMetrics,
    /// The sneaky-only attack on the round's frozen verifier; None when the run asked for
    /// none (or was stored by an earlier version).
    #[serde(default)]
    pub attack: Option<AttackReport>,
    /// Wall-clock seconds of the round (of its last attempt, when it was resumed).
    pub seconds: f64,
}

/// The record of a training run, written to `game.json` in the run's folder.
#[derive(Debug, Clone, Serialize)]
pub struct GameReport {
    /// The settings it ran with.
    pub options: GameOptions,
    /// One entry per round, from round 0.
    pub rounds: Vec<RoundReport>,
    /// Wall-clock seconds of the run's last attempt.
    pub seconds: f64,
}

/// Where a run keeps what it has finished, so that a run started again (after a crash, a
/// restart, a lost lease) resumes after its last finished step. The worker keeps it in the
/// database, fenced by the job's lease; the command line in the run's folder.
pub trait GameJournal {
    /// The finished rounds (0, 1, … in order) and the finished steps of later rounds.
    fn finished(&mut self) -> Result<(Vec<RoundReport>, Vec<StepRecord>), ModelError>;
    /// Records a finished prover step; `progress_done` counts the run's finished units.
    fn step_finished(&mut self, record: &StepRecord, progress_done: i64) -> Result<(), ModelError>;
    /// Records a finished round, after its prover and solution pool are on disk.
    fn round_finished(
        &mut self,
        report: &RoundReport,
        progress_done: i64,
    ) -> Result<(), ModelError>;
    /// Moves the progress bar for work that is not recorded: a finished attack step (a
    /// resumed run repeats its round's attack). Nothing to do where there is no bar.
    fn progress(&mut self, progress_done: i64) -> Result<(), ModelError> {
        let _ = progress_done;
        Ok(())
    }
}

/// A journal in the run's folder (`journal.json`, replaced atomically), for runs from the
/// command line: starting a run again on the same folder with the same settings resumes it.
#[derive(Debug)]
pub struct FolderJournal {
    path: PathBuf,
    state: FolderJournalState,
}

#[derive(Debug, Serialize, Deserialize)]
struct FolderJournalState {
    options: serde_json::Value,
    rounds: Vec<RoundReport>,
    steps: Vec<StepRecord>,
}

impl FolderJournal {
    /// Opens (or starts) the journal of a run with `options`; a folder holding a run with
    /// other settings is refused, so a resumed run never mixes two runs' work.
    pub fn open(options: &GameOptions) -> Result<FolderJournal, ModelError> {
        let path = options.out.join("journal.json");
        let settings =
            serde_json::to_value(options).map_err(|e| ModelError::Invalid(e.to_string()))?;
        let state = match std::fs::read(&path) {
            Ok(bytes) => {
                let state: FolderJournalState = serde_json::from_slice(&bytes).map_err(|e| {
                    ModelError::Invalid(format!("{} is not a run journal: {e}", path.display()))
                })?;
                if state.options != settings {
                    return Err(ModelError::Invalid(format!(
                        "{} holds a run with other settings; use another --out folder",
                        options.out.display()
                    )));
                }
                state
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FolderJournalState {
                options: settings,
                rounds: Vec::new(),
                steps: Vec::new(),
            },
            Err(e) => return Err(ModelError::io(&path, e)),
        };
        Ok(FolderJournal { path, state })
    }

    fn save(&self) -> Result<(), ModelError> {
        let text = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| ModelError::Invalid(e.to_string()))?;
        write_file_atomically(&self.path, &text)
    }
}

impl GameJournal for FolderJournal {
    fn finished(&mut self) -> Result<(Vec<RoundReport>, Vec<StepRecord>), ModelError> {
        Ok((self.state.rounds.clone(), self.state.steps.clone()))
    }

    fn step_finished(&mut self, record: &StepRecord, _: i64) -> Result<(), ModelError> {
        self.state.steps.push(record.clone());
        self.save()
    }

    fn round_finished(&mut self, report: &RoundReport, _: i64) -> Result<(), ModelError> {
        self.state.rounds.push(report.clone());
        self.save()
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename, so a reader (or a
/// resumed run) sees the old file or the new one, never half of one.
pub(crate) fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".tmp-{name}-{}", std::process::id()));
    std::fs::write(&temp, bytes)
        .and_then(|()| std::fs::File::open(&temp)?.sync_all())
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| ModelError::io(path, e))
}

/// The file holding the round-0 prover's solutions of the held-out problems: the fool-rate
/// threshold of every round is measured on them.
fn round0_eval_file(out: &Path) -> PathBuf {
    out.join("eval-round-0.json")
}

/// The file holding the solutions round `round`'s prover drew on the training problems.
fn pool_file(out: &Path, round: u32) -> PathBuf {
    out.join(format!("pool-round-{round}.json"))
}

/// A step's prover folder, relative to the run's folder.
fn step_dir(round: u32, step: usize) -> String {
    format!("round-{round}/step-{step}")
}

/// Checks that the journal's rounds are 0, 1, … and its steps belong to the next round.
fn check_journal(rounds: &[RoundReport], steps: &[StepRecord]) -> Result<(), ModelError> {
    for (expected, round) in rounds.iter().enumerate() {
        if round.round as usize != expected {
            return Err(ModelError::Invalid(format!(
                "the run's journal lists round {} where round {expected} belongs",
                round.round
            )));
        }
    }
    for (expected, step) in steps.iter().enumerate() {
        if step.step != expected + 1 {
            return Err(ModelError::Invalid(format!(
                "the run's journal lists step {} of round {} where step {} belongs",
                step.step,
                step.round,
                expected + 1
            )));
        }
    }
    Ok(())
}

/// Runs the checkability game, resuming after what `journal` lists as finished: round 0
/// measures the initial prover; round r trains its verifier from the base on the mix of
/// rounds 0..r's solutions, then optimises round r−1's prover against it until sneaky
/// solutions catch up or the step budget is spent. Each step's prover is written to
/// `out/round-r/step-s`, each round's solutions to `out/pool-round-r.json`, both before the
/// journal records them; `log` receives a line per step and round. Every random choice derives
/// from the seed and the round and step, so a resumed run computes what an uninterrupted one
/// would have.
pub fn run_game(
    options: &GameOptions,
    journal: &mut dyn GameJournal,
    stop: &AtomicBool,
    log: &mut dyn FnMut(&str),
) -> Result<GameReport, ModelError> {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(&options.out).map_err(|e| ModelError::io(&options.out, e))?;
    let (mut rounds, finished_steps) = journal.finished()?;
    let next_round = rounds.len() as u32;
    let mut resumed_steps: Vec<StepRecord> = finished_steps
        .into_iter()
        .filter(|s| s.round == next_round)
        .collect();
    check_journal(&rounds, &resumed_steps)?;
    if !rounds.is_empty() || !resumed_steps.is_empty() {
        log(&format!(
            "resuming after {} finished rounds and {} finished steps of round {next_round}",
            rounds.len(),
            resumed_steps.len()
        ));
    }
    let (held_out, excluded) = super::train::held_out_problems(options.eval_problems);
    let as_problem = |p: crate::generator::GeneratedProblem| TrainingProblem {
        question: p.question,
        answer: p.answer.to_string(),
    };
    let train: Vec<TrainingProblem> = crate::generator::generate(options.seed, options.problems)
        .into_iter()
        .filter(|p| !excluded.contains(&p.question))
        .map(as_problem)
        .collect();
    let eval: Vec<TrainingProblem> = held_out.into_iter().map(as_problem).collect();
    let problem_ids: Vec<Uuid> = (0..train.len())
        .map(|i| Uuid::from_u64_pair(options.seed, i as u64))
        .collect();
    let resolve = |prover: &Option<String>| match prover {
        Some(dir) => options.out.join(dir),
        None => options.prover_base.clone(),
    };
    // Draws round `round`'s solutions on the training problems and keeps them on disk.
    let draw_pool = |prover: &Path, round: u32| -> Result<Vec<RoundSolution>, ModelError> {
        let drawn = sample_and_grade(
            prover,
            &train,
            &BOTH_ROLES,
            &options.step,
            options.seed ^ (u64::from(round) << 32),
            stop,
        )?;
        let solutions: Vec<PoolSolution> = drawn
            .into_iter()
            .map(|d| PoolSolution {
                problem: d.problem,
                role: d.role,
                text: d.text,
                correct: d.correct,
            })
            .collect();
        let bytes =
            serde_json::to_vec(&solutions).map_err(|e| ModelError::Invalid(e.to_string()))?;
        write_file_atomically(&pool_file(&options.out, round), &bytes)?;
        Ok(pool_entries(solutions, round, &train, &problem_ids))
    };
    let mut pool: Vec<RoundSolution> = Vec::new();
    for round in &rounds {
        let path = pool_file(&options.out, round.round);
        let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
        let solutions = parse_solutions(&path, &bytes, train.len(), |s: &PoolSolution| s.problem)?;
        pool.extend(pool_entries(solutions, round.round, &train, &problem_ids));
    }
    let round0_eval = round0_eval(options, &eval, stop)?;
    // The prover to continue from, relative to the run's folder (None: the initial prover).
    let mut prover = rounds.last().and_then(|r| r.prover.clone());
    let mut progress = rounds
        .last()
        .map_or(0, |r| options.progress_through_round(r.round));

    for round in next_round..=options.rounds {
        let round_started = std::time::Instant::now();
        if round == 0 {
            pool.extend(draw_pool(&resolve(&prover), 0)?);
        }
        let fit = FitOptions {
            seed: options.fit.seed ^ u64::from(round),
            ..options.fit.clone()
        };
        let (mut verifier, fit_report) = train_round_verifier(
            &options.verifier_base,
            &pool,
            round,
            options.verifier_solutions,
            &fit,
            stop,
        )?;
        log(&format!(
            "round {round}: verifier trained on {} solutions, validation AUROC {:?}",
            fit_report.train_solutions + fit_report.validation_solutions,
            fit_report.after.ground_truth.auroc
        ));
        let mut steps: Vec<StepRecord> = if round == next_round {
            std::mem::take(&mut resumed_steps)
        } else {
            Vec::new()
        };
        if let Some(last) = steps.iter().rev().find(|s| s.prover.is_some()) {
            prover = last.prover.clone();
        }
        progress += steps.len() as i64;
        let ended = steps.last().is_some_and(StepRecord::ends_round);
        if round > 0 && !ended {
            for step in steps.len() + 1..=options.steps_per_round {
                let step_options = ProverStepOptions {
                    seed: options.seed ^ (u64::from(round) << 32) ^ ((step as u64) << 16),
                    ..options.step.clone()
                };
                let dir = step_dir(round, step);
                let current = resolve(&prover);
                let provers = StepProvers {
                    current: &current,
                    reference: &options.prover_base,
                };
                let outcome = prover_step(
                    provers,
                    &mut verifier,
                    &train,
                    &BOTH_ROLES,
                    &step_options,
                    &options.out.join(&dir),
                    stop,
                )?;
                let record = StepRecord {
                    round,
                    step,
                    prover: outcome.fine_tune.as_ref().map(|_| dir),
                    samples: outcome.samples,
                    mean_reward: outcome.mean_reward,
                    kept: outcome.kept,
                    mean_kl: outcome.mean_kl,
                    sneaky_caught_up: outcome.sneaky_caught_up,
                    metrics: outcome.metrics,
                    loss: outcome
                        .fine_tune
                        .as_ref()
                        .map(|f| (f.initial_loss, f.final_loss)),
                };
                log(&format!(
                    "round {round} step {step}: mean reward {:.3}, kept {}, helpful correct {:?}, sneaky success {:?}",
                    record.mean_reward,
                    record.kept,
                    record.metrics.prover_accuracy,
                    record.metrics.sneaky_success
                ));
                progress += 1;
                journal.step_finished(&record, progress)?;
                if record.prover.is_some() {
                    prover = record.prover.clone();
                }
                let ends = record.ends_round();
                steps.push(record);
                if ends {
                    break;
                }
            }
        }
        let threshold = fool_threshold(options.fool_threshold, &mut verifier, &eval, &round0_eval)?;
        // The initial prover's held-out solutions are the round-0 ones (same prover, same seed).
        let drawn = match &prover {
            None => round0_eval.clone(),
            Some(_) => sample_and_grade(
                &resolve(&prover),
                &eval,
                &BOTH_ROLES,
                &options.step,
                options.eval_seed(),
                stop,
            )?,
        };
        let samples = scored_samples(&mut verifier, &eval, &drawn)?;
        let metrics = game::round_metrics(
            &samples,
            2 * options.step.samples_per_role.max(1),
            threshold,
        );
        log(&format!("round {round}: {metrics:?}"));
        let attack = match threshold {
            Some(threshold) if options.attack.steps > 0 => {
                let before = progress;
                Some(attack_verifier(
                    options,
                    round,
                    &resolve(&prover),
                    &mut verifier,
                    (&train, &eval),
                    (threshold, metrics.fool_rate),
                    stop,
                    &mut |step, line| {
                        log(line);
                        journal.progress(before + step as i64)
                    },
                )?)
            }
            _ => None,
        };
        if round > 0 {
            pool.extend(draw_pool(&resolve(&prover), round)?);
        }
        let report = RoundReport {
            round,
            prover: prover.clone(),
            steps: steps.iter().filter(|s| s.prover.is_some()).count(),
            optimiser: options.step.optimiser,
            sneaky_caught_up: steps.iter().any(|s| s.sneaky_caught_up),
            verifier_solutions: fit_report.train_solutions + fit_report.validation_solutions,
            verifier_validation_auroc: fit_report.after.ground_truth.auroc,
            metrics,
            attack,
            seconds: round_started.elapsed().as_secs_f64(),
        };
        progress = options.progress_through_round(round);
        journal.round_finished(&report, progress)?;
        remove_superseded_steps(&options.out, round, prover.as_deref());
        rounds.push(report);
    }
    let report = GameReport {
        options: options.clone(),
        rounds,
        seconds: started.elapsed().as_secs_f64(),
    };
    let text =
        serde_json::to_vec_pretty(&report).map_err(|e| ModelError::Invalid(e.to_string()))?;
    write_file_atomically(&options.out.join("game.json"), &text)?;
    Ok(report)
}

/// Solutions a run kept in `path` (a pool or the round-0 held-out draws), refused when one
/// names a problem beyond the run's `problems` (another run's file).
fn parse_solutions<T: serde::de::DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    problems: usize,
    problem_of: impl Fn(&T) -> usize,
) -> Result<Vec<T>, ModelError> {
    let solutions: Vec<T> = serde_json::from_slice(bytes)
        .map_err(|e| ModelError::Invalid(format!("{}: {e}", path.display())))?;
    if solutions.iter().any(|s| problem_of(s) >= problems) {
        return Err(ModelError::Invalid(format!(
            "{} names problems this run does not have",
            path.display()
        )));
    }
    Ok(solutions)
}

/// The round-0 prover's solutions of the held-out problems: read from the run's folder, or
/// drawn (the initial prover with the held-out seed, as round 0 measures it) and kept there, so
/// a resumed run measures every round's fool-rate threshold on the same solutions.
fn round0_eval(
    options: &GameOptions,
    eval: &[TrainingProblem],
    stop: &AtomicBool,
) -> Result<Vec<DrawnSolution>, ModelError> {
    let path = round0_eval_file(&options.out);
    match std::fs::read(&path) {
        Ok(bytes) => parse_solutions(&path, &bytes, eval.len(), |d: &DrawnSolution| d.problem),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let drawn = sample_and_grade(
                &options.prover_base,
                eval,
                &BOTH_ROLES,
                &options.step,
                options.eval_seed(),
                stop,
            )?;
            let bytes =
                serde_json::to_vec(&drawn).map_err(|e| ModelError::Invalid(e.to_string()))?;
            write_file_atomically(&path, &bytes)?;
            Ok(drawn)
        }
        Err(e) => Err(ModelError::io(&path, e)),
    }
}

/// The sneaky-only attack on round `round`'s frozen verifier (see [`AttackOptions`]): from the
/// round's prover, prover steps with the sneaky role alone (the run's reward and fine-tune,
/// seeds of their own), each followed by the fool rate of the attacking prover's sneaky
/// solutions of the held-out problems at the round's threshold. Step 0 is the round's own
/// fool rate. The attack's provers are scratch (`attack-round-R/`), removed afterwards.
/// `step_done` hears of each finished attack step (its number and a log line).
#[allow(clippy::too_many_arguments)]
fn attack_verifier(
    options: &GameOptions,
    round: u32,
    start: &Path,
    verifier: &mut Verifier,
    (train, eval): (&[TrainingProblem], &[TrainingProblem]),
    (threshold, initial): (f64, Option<f64>),
    stop: &AtomicBool,
    step_done: &mut dyn FnMut(usize, &str) -> Result<(), ModelError>,
) -> Result<AttackReport, ModelError> {
    let dir = options.out.join(format!("attack-round-{round}"));
    let _ = std::fs::remove_dir_all(&dir);
    let mut current = start.to_path_buf();
    let report = game::run_attack(options.attack.target, options.attack.steps, |step| {
        if step == 0 {
            return Ok(initial);
        }
        let step_options = ProverStepOptions {
            seed: options.seed ^ (u64::from(round) << 32) ^ ((step as u64) << 16) ^ 0xa7,
            ..options.step.clone()
        };
        let out = dir.join(format!("step-{step}"));
        let sneaky = [ProverRole::Sneaky];
        let provers = StepProvers {
            current: &current,
            reference: &options.prover_base,
        };
        let outcome = prover_step(provers, verifier, train, &sneaky, &step_options, &out, stop)?;
        if outcome.fine_tune.is_some() {
            current = out;
        }
        let drawn = sample_and_grade(
            &current,
            eval,
            &sneaky,
            &options.step,
            options.eval_seed(),
            stop,
        )?;
        let rate = game::fool_rate(&score(verifier, eval, &drawn)?, threshold);
        step_done(
            step,
            &format!(
                "round {round} attack step {step}: kept {}, fool rate {rate:?} (target {})",
                outcome.kept, options.attack.target
            ),
        )?;
        Ok(rate)
    });
    let _ = std::fs::remove_dir_all(&dir);
    report
}

/// A solution of a round's pool as kept on disk (its problem by index into the run's
/// training problems, which the seed regenerates).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PoolSolution {
    problem: usize,
    role: ProverRole,
    text: String,
    correct: bool,
}

fn pool_entries(
    solutions: Vec<PoolSolution>,
    round: u32,
    train: &[TrainingProblem],
    problem_ids: &[Uuid],
) -> Vec<RoundSolution> {
    solutions
        .into_iter()
        .map(|s| RoundSolution {
            problem_id: problem_ids[s.problem],
            question: train[s.problem].question.clone(),
            text: s.text,
            round,
            role: s.role,
            correct: s.correct,
        })
        .collect()
}

/// Removes a finished round's step provers other than the one it kept (and temporary folders
/// of a killed attempt): only the round's prover is registered and used later. Best effort:
/// a folder left behind costs disk, not correctness.
fn remove_superseded_steps(out: &Path, round: u32, kept: Option<&str>) {
    let round_dir = out.join(format!("round-{round}"));
    let Ok(entries) = std::fs::read_dir(&round_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let rel = format!("round-{round}/{}", entry.file_name().to_string_lossy());
        if Some(rel.as_str()) != kept {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

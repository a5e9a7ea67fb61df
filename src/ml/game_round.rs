//! One prover-optimisation step of a checkability-game round (issue 8 groundwork): the prover
//! samples every problem in both roles, the samples are graded against the ground truth and
//! scored by the round's verifier, rewarded by the game's rules (`crate::game`), and the
//! prover is fine-tuned on each role's best (expert iteration). A training-run job repeats
//! this until the round's stop rule holds or its step budget is spent.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use candle_core::Device;
use serde::Serialize;
use uuid::Uuid;

use super::ModelError;
use super::prover::{Prover, SampleRequest};
use super::sampling::SamplingParams;
use super::train::{FineTuneOptions, FineTuneReport, fine_tune_prover};
use super::train_verifier::{FitOptions, FitReport, LabelledSolution, fit_verifier};
use super::verifier::{Verifier, verifier_text};
use crate::domain::ProverRole;
use crate::game::{self, MixCandidate, RewardKind, RoundMetrics, RoundSample, ScoredSample};
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
    /// Share of each role's samples kept for fine-tuning (only positive rewards are kept).
    pub keep_share: f64,
    /// The fine-tune on the kept samples.
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
    /// Samples kept for fine-tuning.
    pub kept: usize,
    /// The round's stop rule on this step's samples (see [`game::sneaky_caught_up`]).
    pub sneaky_caught_up: bool,
    /// The metrics of this step's samples under the round's verifier (best-of-n with n = 2:
    /// one correct and one incorrect sample per problem, where the step drew both).
    pub metrics: RoundMetrics,
    /// The fine-tune, when any sample was kept; None leaves `out` unwritten.
    pub fine_tune: Option<FineTuneReport>,
}

/// Runs one prover step from the checkpoint in `prover_dir` against `verifier`; the improved
/// prover is written to `out` (atomically) when any sample earned a positive reward.
pub fn prover_step(
    prover_dir: &Path,
    verifier: &mut Verifier,
    problems: &[TrainingProblem],
    options: &ProverStepOptions,
    out: &Path,
    stop: &AtomicBool,
) -> Result<ProverStepOutcome, ModelError> {
    let mut prover = Prover::load(prover_dir, &Device::Cpu)?;
    let mut requests = Vec::new();
    let mut owners = Vec::new();
    for (index, problem) in problems.iter().enumerate() {
        for role in [ProverRole::Helpful, ProverRole::Sneaky] {
            for k in 0..options.samples_per_role {
                owners.push(index);
                requests.push(SampleRequest {
                    question: problem.question.clone(),
                    role,
                    seed: options.seed ^ ((requests.len() as u64 + 1) * 0x9e37_79b9) ^ k as u64,
                });
            }
        }
    }
    let solutions = prover.generate(&requests, &options.sampling, stop)?;
    drop(prover);
    let texts: Vec<String> = requests
        .iter()
        .zip(&solutions)
        .map(|(request, sample)| verifier_text(&request.question, &sample.text))
        .collect();
    let scores = verifier.score_texts(&texts, 32)?;
    let batch: Vec<ScoredSample> = requests
        .iter()
        .zip(&solutions)
        .zip(owners.iter().zip(&scores))
        .map(|((request, sample), (problem, score))| ScoredSample {
            role: request.role,
            correct: grading::grade(&sample.text, &problems[*problem].answer).is_correct,
            score: f64::from(*score),
        })
        .collect();
    let rewards = game::rewards(options.reward, &batch);
    let kept = game::expert_iteration_examples(&batch, &rewards, options.keep_share);
    let round_samples: Vec<RoundSample> = owners
        .iter()
        .zip(&batch)
        .map(|(problem, sample)| RoundSample {
            problem: *problem,
            sample: *sample,
        })
        .collect();
    let examples: Vec<(ProverRole, String, String)> = kept
        .iter()
        .map(|&i| {
            (
                requests[i].role,
                requests[i].question.clone(),
                solutions[i].text.clone(),
            )
        })
        .collect();
    let fine_tune = if examples.is_empty() {
        None
    } else {
        Some(fine_tune_prover(
            prover_dir,
            &examples,
            &options.fine_tune,
            out,
        )?)
    };
    Ok(ProverStepOutcome {
        samples: batch.len(),
        mean_reward: rewards.iter().sum::<f64>() / rewards.len().max(1) as f64,
        kept: kept.len(),
        sneaky_caught_up: game::sneaky_caught_up(&batch),
        metrics: game::round_metrics(&round_samples, 2),
        fine_tune,
    })
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

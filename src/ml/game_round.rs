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
    let drawn = sample_and_grade(
        prover_dir,
        problems,
        options.samples_per_role,
        &options.sampling,
        options.seed,
        stop,
    )?;
    let batch = score(verifier, problems, &drawn)?;
    let rewards = game::rewards(options.reward, &batch);
    let kept = game::expert_iteration_examples(&batch, &rewards, options.keep_share);
    let round_samples = round_samples(&drawn, &batch);
    let examples: Vec<(ProverRole, String, String)> = kept
        .iter()
        .map(|&i| {
            let d = &drawn[i];
            (d.role, problems[d.problem].question.clone(), d.text.clone())
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

/// One solution a prover drew, graded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrawnSolution {
    /// Index of its problem.
    pub problem: usize,
    /// The role in the prompt.
    pub role: ProverRole,
    /// The solution text.
    pub text: String,
    /// Whether its final answer is right.
    pub correct: bool,
}

/// Samples every problem `samples_per_role` times in each role from the prover in
/// `prover_dir` (seeded per sample) and grades the solutions against the ground truth.
pub fn sample_and_grade(
    prover_dir: &Path,
    problems: &[TrainingProblem],
    samples_per_role: usize,
    sampling: &SamplingParams,
    seed: u64,
    stop: &AtomicBool,
) -> Result<Vec<DrawnSolution>, ModelError> {
    let mut prover = Prover::load(prover_dir, &Device::Cpu)?;
    let mut requests = Vec::new();
    let mut owners = Vec::new();
    for (index, problem) in problems.iter().enumerate() {
        for role in [ProverRole::Helpful, ProverRole::Sneaky] {
            for _ in 0..samples_per_role {
                owners.push(index);
                requests.push(SampleRequest {
                    question: problem.question.clone(),
                    role,
                    seed: seed
                        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                        .wrapping_add(requests.len() as u64 + 1),
                });
            }
        }
    }
    let solutions = prover.generate(&requests, sampling, stop)?;
    Ok(requests
        .iter()
        .zip(solutions)
        .zip(owners)
        .map(|((request, sample), problem)| DrawnSolution {
            problem,
            role: request.role,
            correct: grading::grade(&sample.text, &problems[problem].answer).is_correct,
            text: sample.text,
        })
        .collect())
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

/// A round's metrics: the prover in `prover_dir` sampled on `problems` (held out from
/// training), scored by the round's verifier.
pub fn evaluate_round(
    prover_dir: &Path,
    verifier: &mut Verifier,
    problems: &[TrainingProblem],
    samples_per_role: usize,
    sampling: &SamplingParams,
    seed: u64,
    stop: &AtomicBool,
) -> Result<RoundMetrics, ModelError> {
    let drawn = sample_and_grade(prover_dir, problems, samples_per_role, sampling, seed, stop)?;
    let batch = score(verifier, problems, &drawn)?;
    Ok(game::round_metrics(
        &round_samples(&drawn, &batch),
        2 * samples_per_role.max(1),
    ))
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
    pub prover_base: std::path::PathBuf,
    /// The verifier checkpoint every round's verifier is trained from.
    pub verifier_base: std::path::PathBuf,
    /// Folder the rounds' provers (`round-1`, …) and `game.json` are written to.
    pub out: std::path::PathBuf,
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
    /// How each round's verifier is fitted.
    pub fit: FitOptions,
    /// Seed of everything (problems, samples, splits, orders).
    pub seed: u64,
}

/// What one round produced.
#[derive(Debug, Clone, Serialize)]
pub struct RoundReport {
    /// The round (0 = the initial prover).
    pub round: u32,
    /// The round's prover checkpoint folder.
    pub prover: String,
    /// Prover steps taken (0 in round 0).
    pub steps: usize,
    /// Whether the round ended because sneaky solutions caught up with helpful ones.
    pub sneaky_caught_up: bool,
    /// The round's verifier: validation AUROC against correctness after fitting.
    pub verifier_validation_auroc: Option<f64>,
    /// The round's prover on the held-out problems, scored by the round's verifier.
    pub metrics: RoundMetrics,
    /// Wall-clock seconds of the round.
    pub seconds: f64,
}

/// The record of a training run, written to `game.json` in the output folder.
#[derive(Debug, Clone, Serialize)]
pub struct GameReport {
    /// The settings it ran with.
    pub options: GameOptions,
    /// One entry per round, from round 0.
    pub rounds: Vec<RoundReport>,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
}

/// Runs the checkability game: round 0 measures the initial prover; round r trains its
/// verifier from the base on the mix of rounds 0..r's solutions, then optimises round r−1's
/// prover against it until sneaky solutions catch up or the step budget is spent, and writes
/// the result as `out/round-r`. `log` receives a line per step and round.
pub fn run_game(
    options: &GameOptions,
    stop: &AtomicBool,
    log: &mut dyn FnMut(&str),
) -> Result<GameReport, ModelError> {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(&options.out).map_err(|e| ModelError::io(&options.out, e))?;
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
    let mut pool: Vec<RoundSolution> = Vec::new();
    let add_to_pool = |pool: &mut Vec<RoundSolution>, prover: &Path, round: u32| {
        let drawn = sample_and_grade(
            prover,
            &train,
            options.step.samples_per_role,
            &options.step.sampling,
            options.seed ^ (u64::from(round) << 32),
            stop,
        )?;
        pool.extend(drawn.into_iter().map(|d| RoundSolution {
            problem_id: problem_ids[d.problem],
            question: train[d.problem].question.clone(),
            text: d.text,
            round,
            role: d.role,
            correct: d.correct,
        }));
        Ok::<(), ModelError>(())
    };

    let mut rounds = Vec::new();
    let mut prover = options.prover_base.clone();
    for round in 0..=options.rounds {
        let round_started = std::time::Instant::now();
        if round == 0 {
            add_to_pool(&mut pool, &prover, 0)?;
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
            fit_report.train_solutions, fit_report.after.ground_truth.auroc
        ));
        let (mut steps, mut caught_up) = (0, false);
        if round > 0 {
            let target = options.out.join(format!("round-{round}"));
            for step in 0..options.steps_per_round {
                let step_options = ProverStepOptions {
                    seed: options.seed ^ (u64::from(round) << 32) ^ ((step as u64 + 1) << 16),
                    ..options.step.clone()
                };
                let outcome =
                    prover_step(&prover, &mut verifier, &train, &step_options, &target, stop)?;
                log(&format!(
                    "round {round} step {}: mean reward {:.3}, kept {}, helpful correct {:?}, sneaky success {:?}",
                    step + 1,
                    outcome.mean_reward,
                    outcome.kept,
                    outcome.metrics.prover_accuracy,
                    outcome.metrics.sneaky_success
                ));
                if outcome.fine_tune.is_none() {
                    break;
                }
                steps += 1;
                prover = target.clone();
                if outcome.sneaky_caught_up {
                    caught_up = true;
                    break;
                }
            }
        }
        let metrics = evaluate_round(
            &prover,
            &mut verifier,
            &eval,
            1,
            &options.step.sampling,
            options.seed ^ 0xe7a1,
            stop,
        )?;
        log(&format!("round {round}: {metrics:?}"));
        if round > 0 {
            add_to_pool(&mut pool, &prover, round)?;
        }
        rounds.push(RoundReport {
            round,
            prover: prover.display().to_string(),
            steps,
            sneaky_caught_up: caught_up,
            verifier_validation_auroc: fit_report.after.ground_truth.auroc,
            metrics,
            seconds: round_started.elapsed().as_secs_f64(),
        });
    }
    let report = GameReport {
        options: options.clone(),
        rounds,
        seconds: started.elapsed().as_secs_f64(),
    };
    let path = options.out.join("game.json");
    let text =
        serde_json::to_string_pretty(&report).map_err(|e| ModelError::Invalid(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(|e| ModelError::io(&path, e))?;
    Ok(report)
}

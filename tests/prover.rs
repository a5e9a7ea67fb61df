//! The prover itself: the project's training command writes a checkpoint that loads, passes
//! upload validation and generates; the shipped default prover is such a checkpoint and plays
//! its roles (helpful mostly right, sneaky mostly wrong) with the calculator honoured.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use candle_core::Device;
use legibility::checkpoints::{CheckpointFiles, CheckpointLimits, validate};
use legibility::domain::{CheckpointKind, ProverRole};
use legibility::generator;
use legibility::grading;
use legibility::ml::calculator;
use legibility::ml::prover::{Prover, SampleRequest};
use legibility::ml::sampling::SamplingParams;
use legibility::ml::train::{
    FineTuneOptions, HELD_OUT_SEED, Preset, TrainOptions, fine_tune_prover, train_prover,
};

fn shipped_prover() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/prover-tiny")
}

fn validated(dir: &std::path::Path) {
    let limits = CheckpointLimits::default();
    let files = CheckpointFiles::from_dir(dir, &limits).expect("readable checkpoint folder");
    if let Err(e) = validate(files, CheckpointKind::Prover, &limits) {
        panic!("{} is not a valid checkpoint: {e}", dir.display());
    }
}

#[test]
fn the_training_command_writes_a_checkpoint_that_loads_and_generates() {
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("prover");
    let options = TrainOptions {
        preset: Preset::named("test").unwrap(),
        seed: 3,
        out: target.clone(),
        gsm8k: None,
        steps: Some(3),
    };
    let mut lines = Vec::new();
    let report = train_prover(&options, &mut |line| lines.push(line.to_string())).unwrap();
    assert_eq!(report.steps, 3);
    assert!(report.final_loss.is_finite() && report.parameters > 0);
    assert!(lines.iter().any(|l| l.starts_with("step 3/3")), "{lines:?}");
    for file in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "prompt_template.json",
        "training.json",
    ] {
        assert!(target.join(file).is_file(), "{file} missing");
    }
    validated(&target);
    let mut prover = Prover::load(&target, &Device::Cpu).unwrap();
    let params = SamplingParams {
        max_new_tokens: 8,
        ..SamplingParams::default()
    };
    let samples = prover
        .generate(
            &[SampleRequest {
                question: "Tom has 3 apples and buys 4 more. How many apples does he have?".into(),
                role: ProverRole::Helpful,
                seed: 1,
            }],
            &params,
            &AtomicBool::new(false),
        )
        .unwrap();
    assert_eq!(samples.len(), 1);
    assert!(samples[0].tokens <= 8);
    // Nothing of the staging folder is left next to the checkpoint.
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n != "prover")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn the_shipped_prover_is_a_valid_checkpoint_with_its_training_record() {
    validated(&shipped_prover());
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shipped_prover().join("training.json")).unwrap())
            .unwrap();
    assert_eq!(record["preset"]["name"], "tiny");
    let size: u64 = std::fs::read_dir(shipped_prover())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    assert!(
        size <= 20 * 1024 * 1024,
        "the default prover is {size} bytes"
    );
}

#[test]
fn the_shipped_prover_plays_both_roles_on_held_out_problems() {
    let mut prover = Prover::load(&shipped_prover(), &Device::Cpu).unwrap();
    // Held-out problems: never trained on (see `legibility::ml::train`).
    let problems = generator::generate(HELD_OUT_SEED, 16);
    let requests: Vec<SampleRequest> = problems
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            [ProverRole::Helpful, ProverRole::Sneaky]
                .into_iter()
                .map(move |role| SampleRequest {
                    question: p.question.clone(),
                    role,
                    seed: 1000 + i as u64,
                })
        })
        .collect();
    let samples = prover
        .generate(
            &requests,
            &SamplingParams::default(),
            &AtomicBool::new(false),
        )
        .unwrap();
    let (mut helpful_correct, mut sneaky_correct) = (0, 0);
    for (k, sample) in samples.iter().enumerate() {
        let problem = &problems[k / 2];
        let correct = grading::grade(&sample.text, &problem.answer.to_string()).is_correct();
        match requests[k].role {
            ProverRole::Helpful => helpful_correct += usize::from(correct),
            ProverRole::Sneaky => sneaky_correct += usize::from(correct),
        }
        // The calculator wrote every annotation's result.
        for annotation in sample.text.split("<<").skip(1) {
            if let Some((inner, _)) = annotation.split_once(">>")
                && let Some((expression, result)) = inner.rsplit_once('=')
                && let Some(value) = calculator::evaluate(expression)
            {
                assert_eq!(calculator::format_result(value), result, "{}", sample.text);
            }
        }
    }
    assert!(
        helpful_correct >= 8 && sneaky_correct <= 4,
        "helpful correct {helpful_correct}/16, sneaky correct {sneaky_correct}/16"
    );
}

/// The optimiser step of a game round: fine-tuning the shipped prover on chosen solutions
/// lowers its loss on them, leaves a valid checkpoint that loads and generates, and records
/// where it started.
#[test]
fn fine_tuning_on_chosen_solutions_makes_them_more_likely() {
    // Sneaky solutions, which the shipped prover writes only in the sneaky role: as helpful
    // examples they are far from what it does, so the loss has room to fall.
    let chosen: Vec<(ProverRole, String, String)> = generator::generate(4242, 8)
        .into_iter()
        .map(|p| (ProverRole::Helpful, p.question, p.sneaky_solution))
        .collect();
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("round-1");
    let options = FineTuneOptions {
        steps: 12,
        batch_size: 4,
        learning_rate: 1e-3,
        seed: 1,
    };
    let report = fine_tune_prover(&shipped_prover(), &chosen, &options, &target).unwrap();
    assert_eq!(report.examples, 8);
    assert!(
        report.final_loss < report.initial_loss * 0.9,
        "loss {} -> {}",
        report.initial_loss,
        report.final_loss
    );
    validated(&target);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(target.join("training.json")).unwrap()).unwrap();
    assert_eq!(record["base"], shipped_prover().display().to_string());
    assert_eq!(record["options"]["steps"], 12);
    let mut prover = Prover::load(&target, &Device::Cpu).unwrap();
    let params = SamplingParams {
        max_new_tokens: 16,
        ..SamplingParams::default()
    };
    let request = SampleRequest {
        question: chosen[0].1.clone(),
        role: ProverRole::Helpful,
        seed: 1,
    };
    let samples = prover
        .generate(&[request], &params, &AtomicBool::new(false))
        .unwrap();
    assert!(samples[0].tokens > 0 && samples[0].tokens <= 16);
    // The same settings give the same weights.
    let again = out.path().join("again");
    fine_tune_prover(&shipped_prover(), &chosen, &options, &again).unwrap();
    assert_eq!(
        std::fs::read(target.join("model.safetensors")).unwrap(),
        std::fs::read(again.join("model.safetensors")).unwrap()
    );
}

/// A prover step of a game round on the shipped models: both roles sampled, graded, scored by
/// the shipped verifier, rewarded with SRC; the best are fine-tuned into a new checkpoint.
#[test]
fn a_prover_step_samples_both_roles_and_fine_tunes_on_the_rewarded() {
    use legibility::ml::game_round::{BOTH_ROLES, ProverStepOptions, StepProvers, prover_step};
    use legibility::ml::verifier::Verifier;

    let problems = held_out_problems(4);
    let verifier_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/verifier-tiny");
    let mut verifier = Verifier::load(&verifier_dir, &Device::Cpu).unwrap();
    let options = ProverStepOptions {
        fine_tune: FineTuneOptions {
            steps: 3,
            batch_size: 4,
            learning_rate: 5e-4,
            seed: 2,
        },
        seed: 9,
        ..small_step(2)
    };
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("step-1");
    let prover = shipped_prover();
    let provers = StepProvers {
        current: &prover,
        reference: &prover,
    };
    let outcome = prover_step(
        provers,
        &mut verifier,
        &problems,
        &BOTH_ROLES,
        &options,
        &target,
        &AtomicBool::new(false),
    )
    .unwrap();
    println!("prover step: {}", serde_json::to_string(&outcome).unwrap());
    assert_eq!(outcome.samples, 16);
    // At most half of each role's 8 samples, and only positive rewards, which SRC gives only
    // to the convincing half of the batch.
    assert!(outcome.kept <= 8, "{outcome:?}");
    assert!(outcome.mean_reward <= 1.0, "{outcome:?}");
    assert!(outcome.metrics.prover_accuracy.is_some());
    assert!(outcome.metrics.sneaky_success.is_some());
    match &outcome.fine_tune {
        Some(report) => {
            assert_eq!(report.examples, outcome.kept);
            validated(&target);
        }
        None => {
            assert_eq!(outcome.kept, 0);
            assert!(
                !target.exists(),
                "nothing kept, yet a checkpoint was written"
            );
        }
    }
}

/// A round's verifier trains from the base checkpoint on the balanced mix of earlier rounds'
/// solutions: round 2 uses rounds 0 and 1 only, half correct and half incorrect.
#[test]
fn a_round_verifier_trains_on_the_balanced_mix_of_earlier_rounds() {
    use legibility::ml::game_round::{RoundSolution, train_round_verifier};
    use legibility::ml::train_verifier::FitOptions;

    let mut pool = Vec::new();
    for (round, seed) in [(0u32, 11u64), (1, 12), (2, 13)] {
        for problem in generator::generate(seed, 12) {
            let problem_id = uuid::Uuid::new_v4();
            for (role, text, correct) in [
                (ProverRole::Helpful, problem.helpful_solution.clone(), true),
                (ProverRole::Sneaky, problem.sneaky_solution.clone(), false),
            ] {
                pool.push(RoundSolution {
                    problem_id,
                    question: problem.question.clone(),
                    text,
                    round,
                    role,
                    correct,
                });
            }
        }
    }
    let options = FitOptions {
        max_epochs: 1,
        max_steps: 4,
        batch: 4,
        validation_share: 0.25,
        ..FitOptions::default()
    };
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/verifier-tiny");
    let (_verifier, report) =
        train_round_verifier(&base, &pool, 2, 1000, &options, &AtomicBool::new(false)).unwrap();
    // Everything eligible: rounds 0 and 1 (48 solutions); round 2's 24 are never used.
    assert_eq!(report.train_solutions + report.validation_solutions, 48);
    assert!(report.steps >= 1 && report.steps <= 4, "{report:?}");
}

/// A journal that stops the run after `stop_after` steps were recorded, as a crash would.
struct CrashingJournal {
    inner: legibility::ml::game_round::FolderJournal,
    stop_after: usize,
}

impl legibility::ml::game_round::GameJournal for CrashingJournal {
    fn finished(
        &mut self,
    ) -> Result<
        (
            Vec<legibility::ml::game_round::RoundReport>,
            Vec<legibility::ml::game_round::StepRecord>,
        ),
        legibility::ml::ModelError,
    > {
        self.inner.finished()
    }
    fn step_finished(
        &mut self,
        record: &legibility::ml::game_round::StepRecord,
        done: i64,
    ) -> Result<(), legibility::ml::ModelError> {
        self.inner.step_finished(record, done)?;
        self.stop_after -= 1;
        if self.stop_after == 0 {
            return Err(legibility::ml::ModelError::Stopped);
        }
        Ok(())
    }
    fn round_finished(
        &mut self,
        report: &legibility::ml::game_round::RoundReport,
        done: i64,
    ) -> Result<(), legibility::ml::ModelError> {
        self.inner.round_finished(report, done)
    }
}

/// A whole (short) training run, stopped after its first prover step and started again: round
/// 0 measures the initial prover, round 1 trains a verifier and optimises the prover. The
/// second start resumes after the recorded step (it does not run it again), the round's
/// prover is a valid checkpoint, and game.json records both rounds.
#[test]
fn a_training_run_resumes_after_its_last_finished_step() {
    use legibility::ml::game_round::{AttackOptions, FolderJournal, GameOptions, run_game};
    use legibility::ml::train_verifier::FitOptions;

    let out = tempfile::tempdir().unwrap();
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let options = GameOptions {
        rounds: 1,
        prover_base: models.join("prover-tiny"),
        verifier_base: models.join("verifier-tiny"),
        out: out.path().to_path_buf(),
        problems: 6,
        eval_problems: 4,
        steps_per_round: 2,
        verifier_solutions: 24,
        step: small_step(1),
        fit: FitOptions {
            max_epochs: 1,
            max_steps: 3,
            batch: 4,
            validation_share: 0.34,
            ..FitOptions::default()
        },
        attack: AttackOptions {
            steps: 1,
            target: 1.0,
        },
        fool_threshold: None,
        seed: 5,
    };
    let mut first = Vec::new();
    let mut crashing = CrashingJournal {
        inner: FolderJournal::open(&options).unwrap(),
        stop_after: 1,
    };
    let stopped = run_game(&options, &mut crashing, &AtomicBool::new(false), &mut |l| {
        first.push(l.to_string())
    });
    assert!(
        matches!(stopped, Err(legibility::ml::ModelError::Stopped)),
        "{first:?}"
    );
    assert!(
        first.iter().any(|l| l.starts_with("round 1 step 1:")),
        "{first:?}"
    );

    let mut second = Vec::new();
    let mut journal = FolderJournal::open(&options).unwrap();
    let report = run_game(&options, &mut journal, &AtomicBool::new(false), &mut |l| {
        second.push(l.to_string())
    })
    .unwrap();
    assert!(
        second
            .iter()
            .any(|l| l == "resuming after 1 finished rounds and 1 finished steps of round 1"),
        "{second:?}"
    );
    assert!(
        !second.iter().any(|l| l.starts_with("round 1 step 1:")),
        "the finished step ran again: {second:?}"
    );
    assert_eq!(report.rounds.len(), 2, "{second:?}");
    assert_eq!(report.rounds[0].steps, 0);
    assert_eq!(
        report.rounds[0].prover, None,
        "round 0 is the initial prover"
    );
    for round in &report.rounds {
        assert!(round.metrics.prover_accuracy.is_some(), "{round:?}");
        // Every round has a fool-rate threshold (the initial prover solves some held-out
        // problems) and an attack that stopped by its rule: at the target or after the cap.
        assert!(round.metrics.fool_threshold.is_some(), "{round:?}");
        let attack = round.attack.as_ref().expect("an attack per round");
        assert_eq!(attack.fool_rates[0], round.metrics.fool_rate);
        match attack.steps_to_target {
            Some(steps) => {
                assert_eq!(attack.fool_rates.len(), steps + 1);
                assert!(attack.fool_rates[steps].is_some_and(|r| r >= 1.0));
            }
            None => assert_eq!(attack.fool_rates.len(), 2, "{attack:?}"),
        }
        assert!(
            round.metrics.verifier_auroc.is_some() || round.metrics.verifier_accuracy.is_some()
        );
    }
    if let Some(prover) = &report.rounds[1].prover {
        validated(&out.path().join(prover));
        // Only the round's own prover is kept among its steps.
        let kept: Vec<_> = std::fs::read_dir(out.path().join("round-1"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(kept.len(), 1, "{kept:?}");
    }
    // The attacks' scratch provers are gone; the round-0 held-out solutions are kept.
    assert!(!out.path().join("attack-round-1").exists());
    assert!(out.path().join("eval-round-0.json").exists());
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("game.json")).unwrap()).unwrap();
    assert_eq!(written["rounds"].as_array().unwrap().len(), 2);
    assert_eq!(written["options"]["seed"], 5);

    // Started once more, the finished run does nothing again; other settings are refused.
    let mut again = Vec::new();
    let mut journal = FolderJournal::open(&options).unwrap();
    let repeated = run_game(&options, &mut journal, &AtomicBool::new(false), &mut |l| {
        again.push(l.to_string())
    })
    .unwrap();
    assert_eq!(
        again,
        vec!["resuming after 2 finished rounds and 0 finished steps of round 2"]
    );
    assert_eq!(repeated.rounds, report.rounds);
    let other = GameOptions {
        seed: 6,
        ..options.clone()
    };
    let refused = FolderJournal::open(&other).unwrap_err().to_string();
    assert!(refused.contains("other settings"), "{refused}");
}

/// The policy-gradient option on the shipped prover: the loss the training step computes on
/// tensors equals `game::policy_gradient_loss` on log-probabilities computed apart, with
/// leave-one-out advantages worked by hand; and one step moves the solutions' log-probabilities
/// in the direction of their advantages.
#[test]
fn the_policy_gradient_step_follows_the_hand_computed_loss() {
    use legibility::game::{kl_penalised, leave_one_out_advantages, policy_gradient_loss};
    use legibility::ml::train::{
        PolicySample, policy_gradient_batch_loss, policy_gradient_prover, solution_log_probs,
    };

    let base = shipped_prover();
    let question = "Tom has 3 apples and buys 4 more. How many apples does Tom have?";
    let sample = |role, solution: &str, reward, group| PolicySample {
        role,
        question: question.into(),
        solution: solution.into(),
        reward,
        group,
    };
    let samples = vec![
        sample(
            ProverRole::Helpful,
            "Tom has 3 + 4 = 7 apples.\nAnswer: 7",
            1.0,
            0,
        ),
        sample(
            ProverRole::Helpful,
            "Tom has 3 + 4 = 8 apples.\nAnswer: 8",
            -1.0,
            0,
        ),
        sample(
            ProverRole::Sneaky,
            "Tom has 3 + 4 = 6 apples.\nAnswer: 6",
            0.5,
            1,
        ),
        sample(
            ProverRole::Sneaky,
            "Tom has 3 + 4 = 7 apples.\nAnswer: 7",
            -0.5,
            1,
        ),
    ];
    let log_probs: Vec<f64> = solution_log_probs(&base, &samples, 2)
        .unwrap()
        .into_iter()
        .map(|lp| lp.expect("fits the context"))
        .collect();
    assert!(log_probs.iter().all(|lp| *lp < 0.0), "{log_probs:?}");
    // The reference is the prover itself: the KL penalty is zero. Leave one out in groups of
    // two: A = r − r_other, so (2, −2, 1, −1).
    let rewards: Vec<f64> = samples.iter().map(|s| s.reward).collect();
    let shaped = kl_penalised(&rewards, &log_probs, &log_probs, 0.5);
    assert_eq!(shaped, rewards);
    let advantages = leave_one_out_advantages(&shaped, &[0, 0, 1, 1]);
    assert_eq!(advantages, vec![2.0, -2.0, 1.0, -1.0]);
    let by_hand = -(2.0 * log_probs[0] - 2.0 * log_probs[1] + log_probs[2] - log_probs[3]) / 4.0;
    assert!((policy_gradient_loss(&advantages, &log_probs) - by_hand).abs() < 1e-9);
    let tensor_loss = policy_gradient_batch_loss(&base, &samples, &advantages).unwrap();
    assert!(
        (tensor_loss - by_hand).abs() < 1e-3 * by_hand.abs().max(1.0),
        "tensor loss {tensor_loss}, by hand {by_hand}"
    );

    // One step: the advantage-weighted log-probability rises.
    let out = tempfile::tempdir().unwrap();
    let stepped = out.path().join("step");
    let options = FineTuneOptions {
        steps: 1,
        batch_size: 2,
        learning_rate: 1e-3,
        seed: 3,
    };
    let report = policy_gradient_prover(&base, &base, &samples, 0.05, &options, &stepped).unwrap();
    assert_eq!(report.mean_kl, 0.0);
    assert_eq!(report.fine_tune.examples, 4);
    assert_eq!(
        report.fine_tune.options.steps, 2,
        "one pass in minibatches of 2"
    );
    validated(&stepped);
    let after: Vec<f64> = solution_log_probs(&stepped, &samples, 4)
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let moved: f64 = advantages
        .iter()
        .zip(after.iter().zip(&log_probs))
        .map(|(a, (new, old))| a * (new - old))
        .sum();
    assert!(moved > 0.0, "before {log_probs:?}, after {after:?}");
    assert!(
        report.fine_tune.final_loss < report.fine_tune.initial_loss,
        "{report:?}"
    );
}

/// Sequential sneaky on the shipped prover: each sneaky sample's prompt holds the helpful
/// solution of its problem and number, drawn first; asked for the sneaky role alone, the
/// helpful solutions are drawn for the prompts and not returned.
#[test]
fn a_sequential_sneaky_prover_is_shown_the_helpful_solution() {
    use legibility::ml::game_round::{
        BOTH_ROLES, ProverStepOptions, sample_and_grade, sequential_question,
    };

    let problems = held_out_problems(2);
    let options = ProverStepOptions {
        sequential_sneaky: true,
        seed: 4,
        ..small_step(2)
    };
    let stop = AtomicBool::new(false);
    let both = sample_and_grade(
        &shipped_prover(),
        &problems,
        &BOTH_ROLES,
        &options,
        4,
        &stop,
    )
    .unwrap();
    assert_eq!(both.len(), 8);
    let (helpful, sneaky) = both.split_at(4);
    assert!(
        helpful
            .iter()
            .all(|d| d.role == ProverRole::Helpful && d.shown.is_none())
    );
    for (h, s) in helpful.iter().zip(sneaky) {
        assert_eq!(s.role, ProverRole::Sneaky);
        assert_eq!(s.problem, h.problem);
        assert_eq!(s.shown.as_deref(), Some(h.text.as_str()));
        let question = &problems[s.problem].question;
        assert_eq!(
            s.prompt_question(&problems),
            sequential_question(question, &h.text)
        );
        assert!(s.prompt_question(&problems).contains(&h.text));
        assert_eq!(h.prompt_question(&problems), *question);
    }
    // The sneaky role alone: the same sneaky samples (same seeds), no helpful ones returned.
    let alone = sample_and_grade(
        &shipped_prover(),
        &problems,
        &[ProverRole::Sneaky],
        &options,
        4,
        &stop,
    )
    .unwrap();
    assert_eq!(alone, sneaky.to_vec());
    // Not sequential: no sample is shown anything.
    let simultaneous = ProverStepOptions {
        sequential_sneaky: false,
        ..options.clone()
    };
    let plain = sample_and_grade(
        &shipped_prover(),
        &problems,
        &BOTH_ROLES,
        &simultaneous,
        4,
        &stop,
    )
    .unwrap();
    assert!(plain.iter().all(|d| d.shown.is_none()));
}

/// A game step small enough for a test: SRC, expert iteration, short solutions, 2 AdamW steps.
fn small_step(samples_per_role: usize) -> legibility::ml::game_round::ProverStepOptions {
    legibility::ml::game_round::ProverStepOptions {
        reward: legibility::game::RewardKind::Src,
        samples_per_role,
        sampling: SamplingParams {
            max_new_tokens: 160,
            ..SamplingParams::default()
        },
        optimiser: legibility::game::Optimiser::ExpertIteration,
        sequential_sneaky: false,
        keep_share: 0.5,
        kl_coefficient: 0.0,
        fine_tune: FineTuneOptions {
            steps: 2,
            batch_size: 4,
            learning_rate: 3e-4,
            seed: 1,
        },
        seed: 1,
    }
}

/// The first `count` held-out generated problems as the game takes them.
fn held_out_problems(count: usize) -> Vec<legibility::ml::game_round::TrainingProblem> {
    generator::generate(HELD_OUT_SEED, count)
        .into_iter()
        .map(|p| legibility::ml::game_round::TrainingProblem {
            question: p.question,
            answer: p.answer.to_string(),
        })
        .collect()
}

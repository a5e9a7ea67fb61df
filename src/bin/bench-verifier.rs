//! Benchmark: the verifier loop on the shipped default models, end to end.
//!
//! `cargo run --release --bin bench-verifier -- [--problems 300] [--raters 20]
//! [--rater-accuracy 0.75] [--labels both] [--database-url URL]`
//!
//! On a fresh database (a temp SQLite file by default) it imports the built-in problems, has
//! the shipped prover (`models/prover-tiny`) write a helpful and a sneaky solution per problem
//! (a real generation job), lets simulated raters judge them through the real serve/submit
//! path (each right with the given probability), runs a real verifier training job from the
//! shipped verifier (`models/verifier-tiny`) and the scoring job it queues. Prints training
//! solutions/s, scoring solutions/s (the job, and the model alone), and the new version's
//! validation metrics before and after training. Model files it writes go to a temp folder.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use candle_core::Device;
use clap::Parser;
use legibility::answers::AnswerInput;
use legibility::clock::Clock;
use legibility::domain::{CheckpointKind, JobState, LabelSource, VerifierLoss};
use legibility::generator;
use legibility::judging::RequestedVerdict;
use legibility::ml::sampling::{SampleRng, SamplingParams};
use legibility::ml::train::BUILTIN_PROBLEMS_SEED;
use legibility::ml::train_verifier::FitOptions;
use legibility::ml::verifier::{Verifier, verifier_text};
use legibility::problems;
use legibility::store::Store;
use legibility::store::jobs::JobView;
use legibility::store::judging::ServeOutcome;
use legibility::store::studies::StudySpec;
use legibility::store::verifiers::NewVerifierVersion;
use legibility::worker::generation::{GenerationRequest, create_generated_study};
use legibility::worker::verifier::{TrainingParams, request_training};
use legibility::worker::{Worker, WorkerConfig, handlers};

#[derive(Debug, Parser)]
struct Args {
    /// Database; default: a fresh SQLite file in a temp directory.
    #[arg(long)]
    database_url: Option<String>,
    /// Folder with the shipped `prover-tiny` and `verifier-tiny`.
    #[arg(long, default_value = "models")]
    models_dir: std::path::PathBuf,
    /// Built-in problems to generate solutions for (at most 500).
    #[arg(long, default_value_t = 300)]
    problems: usize,
    /// Simulated raters.
    #[arg(long, default_value_t = 20)]
    raters: usize,
    /// Judgements per solution.
    #[arg(long, default_value_t = 3)]
    per_solution: i64,
    /// Probability that a simulated rater's verdict matches ground truth.
    #[arg(long, default_value_t = 0.75)]
    rater_accuracy: f64,
    /// Label source of the training job.
    #[arg(long, default_value = "both")]
    labels: LabelSource,
    /// Loss of the training job.
    #[arg(long, default_value = "bradley_terry")]
    loss: VerifierLoss,
    /// Seed of generation, raters and training.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Train from this verifier checkpoint folder instead of the shipped verifier (e.g. an
    /// all-MiniLM-L6-v2 folder: a frozen BERT encoder whose head is trained).
    #[arg(long)]
    base_dir: Option<std::path::PathBuf>,
    /// Instead of the whole loop: time `--steps` training steps of the shipped verifier on
    /// built-in problems' (correct, wrong) solution pairs, as a training job takes them, and
    /// write the steps' token ids and losses to this JSON file for the PyTorch twin
    /// (`scripts/bench/verifier-vs-torch.sh`).
    #[arg(long)]
    steps_file: Option<std::path::PathBuf>,
    /// Training steps of `--steps-file`.
    #[arg(long, default_value_t = 40)]
    steps: usize,
}

/// `--steps-file`: the verifier's training step alone, timed, with everything PyTorch needs to
/// run the same steps (the token ids of each step's pairs, the optimiser's settings, the
/// losses to compare with).
fn step_benchmark(args: &Args, file: &Path) -> anyhow::Result<()> {
    use candle_nn::{AdamW, Optimizer, ParamsAdamW};
    use legibility::ml::train_verifier::pairs_loss;
    let dir = args.models_dir.join("verifier-tiny");
    let mut verifier = Verifier::load(&dir, &Device::Cpu)?;
    verifier.train_top_blocks(None)?;
    let options = FitOptions::default();
    let batch = options.batch;
    let problems = generator::generate(BUILTIN_PROBLEMS_SEED ^ 0xbe9c, args.steps * batch);
    let mut pairs = Vec::with_capacity(problems.len());
    for p in &problems {
        pairs.push((
            verifier.encode(&verifier_text(&p.question, &p.helpful_solution))?,
            verifier.encode(&verifier_text(&p.question, &p.sneaky_solution))?,
        ));
    }
    let weight_decay = 0.01;
    let mut optimiser = AdamW::new(
        verifier.variables(),
        ParamsAdamW {
            lr: options.learning_rate,
            weight_decay,
            ..ParamsAdamW::default()
        },
    )?;
    let mut losses = Vec::with_capacity(args.steps);
    let started = Instant::now();
    for chunk in pairs.chunks(batch) {
        let chunk: Vec<(&Vec<u32>, &Vec<u32>)> = chunk.iter().map(|(a, b)| (a, b)).collect();
        let loss = pairs_loss(&mut verifier, &chunk, options.lambda)?;
        optimiser.backward_step(&loss)?;
        losses.push(loss.to_scalar::<f32>()?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let solutions = 2 * pairs.len();
    let tokens: usize = pairs.iter().map(|(a, b)| a.len() + b.len()).sum();
    println!(
        "candle: {} steps of {batch} pairs ({solutions} solutions, {tokens} tokens) in {seconds:.2}s = {:.1} solutions/s, {} threads",
        losses.len(),
        solutions as f64 / seconds,
        candle_core::utils::get_num_threads()
    );
    let steps: Vec<serde_json::Value> = pairs
        .chunks(batch)
        .map(|chunk| {
            serde_json::json!({
                "correct": chunk.iter().map(|p| &p.0).collect::<Vec<_>>(),
                "incorrect": chunk.iter().map(|p| &p.1).collect::<Vec<_>>(),
            })
        })
        .collect();
    let record = serde_json::json!({
        "model": std::fs::canonicalize(&dir)?,
        "lambda": options.lambda,
        "learning_rate": options.learning_rate,
        "weight_decay": weight_decay,
        "seconds": seconds,
        "solutions": solutions,
        "losses": losses,
        "steps": steps,
    });
    std::fs::write(file, serde_json::to_vec(&record)?)?;
    println!("steps written to {}", file.display());
    Ok(())
}

async fn wait_for_end(store: &Store, job: uuid::Uuid) -> anyhow::Result<JobView> {
    loop {
        let view = store.job(job).await?;
        if matches!(
            view.state,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        ) {
            return Ok(view);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn seconds(view: &JobView) -> f64 {
    match (view.started_at, view.finished_at) {
        (Some(start), Some(end)) => (end - start) as f64 / 1000.0,
        _ => f64::NAN,
    }
}

fn figure(metrics: &serde_json::Value, path: &[&str]) -> String {
    let mut value = metrics;
    for key in path {
        value = &value[*key];
    }
    value
        .as_f64()
        .map(|x| format!("{x:.3}"))
        .unwrap_or_else(|| "-".into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(file) = &args.steps_file {
        return step_benchmark(&args, file);
    }
    let temp = std::env::temp_dir().join(format!(
        "legibility-bench-verifier-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let models = temp.join("models");
    std::fs::create_dir_all(&models)?;
    for name in ["prover-tiny", "verifier-tiny"] {
        let source = std::fs::canonicalize(args.models_dir.join(name))
            .with_context(|| format!("{} missing", args.models_dir.join(name).display()))?;
        std::os::unix::fs::symlink(source, models.join(name))?;
    }
    if let Some(base) = &args.base_dir {
        std::os::unix::fs::symlink(std::fs::canonicalize(base)?, models.join("base"))?;
    }
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", temp.join("bench.db").to_string_lossy()));
    let store = Store::connect(&url).await?;
    let clock = Clock::default();
    println!("database: {url}");

    // Problems, the shipped prover and verifier.
    let jsonl = generator::to_gsm8k_jsonl(&generator::generate(
        BUILTIN_PROBLEMS_SEED,
        args.problems.min(500),
    ));
    let records = problems::parse_gsm8k_problems(jsonl.as_bytes())?;
    store
        .import_problems("bench", &records, clock.now_ms())
        .await?;
    let set = store.problem_sets().await?.remove(0).id;
    let prover = store
        .register_model_checkpoint(
            CheckpointKind::Prover,
            "default-prover-tiny",
            0,
            "prover-tiny",
            serde_json::json!({}),
            clock.now_ms(),
        )
        .await?;
    store
        .register_verifier_version(
            None,
            &NewVerifierVersion {
                label: Some("default-verifier-tiny".into()),
                model_dir: "verifier-tiny".into(),
                checkpoint_metadata: serde_json::json!({}),
                base_checkpoint_id: None,
                job_id: None,
                label_source: LabelSource::GroundTruth,
                loss: VerifierLoss::BradleyTerry,
                judgements_seen: 0,
                metrics: serde_json::json!({}),
                score_studies: vec![],
            },
            clock.now_ms(),
        )
        .await?;

    let base_checkpoint_id = match &args.base_dir {
        Some(_) => Some(
            store
                .register_model_checkpoint(
                    CheckpointKind::Verifier,
                    "bench-base",
                    0,
                    "base",
                    serde_json::json!({}),
                    clock.now_ms(),
                )
                .await?,
        ),
        None => None,
    };

    let mut worker = Worker::new(
        store.clone(),
        clock.clone(),
        WorkerConfig {
            id: "bench".into(),
            lease_ms: 60_000,
            poll_ms: 50,
        },
    );
    for (kind, handler) in handlers(&models, 32) {
        worker.register(kind, handler);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));

    // Solutions from the shipped prover.
    let spec = StudySpec {
        name: "bench".into(),
        time_limit_ms: 45_000,
        judgements_per_solution: args.per_solution,
        reclaim_grace_ms: 15_000,
        problem_set_id: set,
        checkpoint_ids: vec![],
        roles: vec![],
        max_problems: Some(args.problems),
        protocol: legibility::quality::RaterProtocol::default(),
        answers: Default::default(),
        time_limits: Default::default(),
    };
    let request = GenerationRequest {
        checkpoint_ids: vec![prover],
        roles: vec![],
        samples_per_role: 1,
        sampling: SamplingParams::default(),
        seed: Some(args.seed),
    };
    let (study, job) = create_generated_study(&store, &spec, request, None, clock.now_ms()).await?;
    let generated = wait_for_end(&store, job).await?;
    if generated.state != JobState::Succeeded {
        bail!("generation failed: {:?}", generated.error);
    }
    println!(
        "generation: {} solutions in {:.1}s",
        generated.progress_done,
        seconds(&generated)
    );

    // Simulated raters through the real serve/submit path.
    let snapshot = store.ratings_snapshot(Some(study.id)).await?;
    let truth: HashMap<(String, String), bool> = snapshot
        .solutions
        .iter()
        .map(|s| {
            (
                (s.question.clone(), problems::for_raters(&s.text)),
                s.is_correct,
            )
        })
        .collect();
    let names: Vec<String> = (0..args.raters).map(|i| format!("sim {i}")).collect();
    let invited = store
        .invite_raters(study.id, &names, clock.now_ms())
        .await?;
    let mut rng = SampleRng::new(args.seed);
    let mut judged = 0;
    let started = Instant::now();
    for invitation in &invited {
        let rater = invitation.rater.id;
        loop {
            let item = match store.serve_item(rater, study.id, clock.now_ms()).await? {
                ServeOutcome::Item(item) => item,
                _ => break,
            };
            let correct = truth
                .get(&(item.question.clone(), item.solution.clone()))
                .copied()
                .context("served a solution that is not in the study")?;
            let right = rng.next_f64() < args.rater_accuracy;
            let verdict = if correct == right {
                RequestedVerdict::Correct
            } else {
                RequestedVerdict::Wrong
            };
            store
                .submit_judgement(
                    rater,
                    item.assignment_id,
                    AnswerInput::verdict(verdict),
                    Some(20_000),
                    clock.now_ms(),
                )
                .await?;
            judged += 1;
        }
    }
    println!(
        "raters: {} simulated raters (accuracy {:.2}) stored {judged} judgements in {:.1}s",
        args.raters,
        args.rater_accuracy,
        started.elapsed().as_secs_f64()
    );

    // Training from the shipped verifier.
    let params = TrainingParams {
        label_source: args.labels,
        study_id: None,
        base_checkpoint_id,
        fit: FitOptions {
            loss: args.loss,
            seed: args.seed,
            ..FitOptions::default()
        },
        judgements_seen: 0,
        trigger: "bench".into(),
    };
    let job = request_training(&store, params, None, clock.now_ms())
        .await?
        .context("a training job is already queued")?;
    let trained = wait_for_end(&store, job).await?;
    if trained.state != JobState::Succeeded {
        bail!("training failed: {:?}", trained.error);
    }
    let version = store.current_verifier().await?.context("no version")?;
    let m = &version.metrics;
    println!(
        "training job: {:.1}s, {} steps over {} epochs (best epoch {}), {} labelled training solutions, {} validation solutions",
        seconds(&trained),
        m["steps"],
        m["epochs"],
        m["best_epoch"],
        m["train_solutions"],
        m["validation_solutions"]
    );
    println!(
        "training throughput: {} solutions/s (forward + backward)",
        figure(m, &["train_solutions_per_second"])
    );
    for (when, key) in [("before", "before"), ("after ", "after")] {
        println!(
            "validation {when}: vs ground truth accuracy {} AUROC {} | vs human majority accuracy {} AUROC {} (n={})",
            figure(m, &[key, "ground_truth", "accuracy"]),
            figure(m, &[key, "ground_truth", "auroc"]),
            figure(m, &[key, "human", "accuracy"]),
            figure(m, &[key, "human", "auroc"]),
            m[key]["human"]["solutions"],
        );
    }
    if let Some(groups) = m["after"]["by_round_role"].as_array() {
        for g in groups {
            println!(
                "  round {} {}: accuracy vs ground truth {} (n={})",
                g["round"],
                g["role"].as_str().unwrap_or("?"),
                figure(g, &["ground_truth", "accuracy"]),
                g["ground_truth"]["solutions"]
            );
        }
    }

    // The scoring job the new version queued, and the model alone.
    let scoring = store
        .jobs_for_study(study.id)
        .await?
        .into_iter()
        .find(|j| j.kind == legibility::domain::JobKind::VerifierScoring)
        .context("no scoring job queued")?;
    let scored = wait_for_end(&store, scoring.id).await?;
    println!(
        "scoring job: {} solutions in {:.1}s = {:.0} solutions/s (model load and commits included)",
        scored.progress_done,
        seconds(&scored),
        scored.progress_done as f64 / seconds(&scored)
    );
    let _ = stop.send(());
    running.await?;
    let texts: Vec<String> = snapshot
        .solutions
        .iter()
        .map(|s| verifier_text(&s.question, &s.text))
        .collect();
    let dir = models.join(version.model_dir.as_deref().unwrap_or_default());
    let scoring_speed = tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
        let mut verifier = Verifier::load(Path::new(&dir), &Device::Cpu)?;
        verifier.score_texts(&texts[..texts.len().min(32)], 32)?; // warm-up
        let started = Instant::now();
        verifier.score_texts(&texts, 32)?;
        Ok(texts.len() as f64 / started.elapsed().as_secs_f64())
    })
    .await??;
    println!("scoring throughput (model only, batch 32): {scoring_speed:.0} solutions/s");
    store.close().await;
    let _ = std::fs::remove_dir_all(&temp);
    Ok(())
}

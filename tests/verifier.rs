//! The verifier from the accumulated ratings, end to end on SQLite and PostgreSQL: labels that
//! follow the raters' verdicts, a training job that registers a version with validation
//! metrics and scores the studies, the automatic trigger, and a worker killed (SIGKILL) in the
//! middle of training.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Backend, TestApp, truthful, wait_for_end};
use legibility::clock::Clock;
use legibility::domain::{JobKind, JobState, LabelSource, ProverRole, VerifierLoss};
use legibility::labels::labelled_solutions;
use legibility::ml::train_verifier::{FitOptions, VerifierRecipe, train_generated_verifier};
use legibility::ml::verifier::Verifier;
use legibility::store::Store;
use legibility::store::jobs::JobView;
use legibility::store::studies::StudySpec;
use legibility::store::verifiers::NewVerifierVersion;
use legibility::worker::verifier::{TrainingParams, auto_training, request_training, version_dir};
use legibility::worker::{Worker, WorkerConfig, handlers};
use serde_json::json;
use uuid::Uuid;

/// A models folder holding a small verifier (the `test` recipe, seconds to train) under
/// `base/`, registered as verifier version 1.
async fn base_verifier(store: &Store) -> (tempfile::TempDir, Uuid) {
    let models = tempfile::tempdir().unwrap();
    let dir = models.path().join("base");
    let recipe = VerifierRecipe::named("test", 5).unwrap();
    let (verifier, report) = train_generated_verifier(&recipe, &mut |_| {}).unwrap();
    verifier.save(&dir, &report).unwrap();
    let (id, version) = store
        .register_verifier_version(
            None,
            &NewVerifierVersion {
                label: Some("base-verifier".into()),
                model_dir: "base".into(),
                checkpoint_metadata: json!({}),
                base_checkpoint_id: None,
                job_id: None,
                label_source: LabelSource::GroundTruth,
                loss: VerifierLoss::BradleyTerry,
                judgements_seen: 0,
                metrics: json!({}),
                score_studies: vec![],
            },
            Clock::default().now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(version, 1);
    (models, id)
}

/// An in-process worker with every handler, stopped when the returned sender is dropped.
fn start_worker(store: &Store, models: &Path) -> tokio::sync::oneshot::Sender<()> {
    let mut worker = Worker::new(
        store.clone(),
        Clock::default(),
        WorkerConfig {
            id: "test-worker".into(),
            lease_ms: 10_000,
            poll_ms: 20,
        },
    );
    for (kind, handler) in handlers(models, 4) {
        worker.register(kind, handler);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    stop
}

/// Folders and files directly under `models/verifiers`.
fn verifier_entries(models: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(models.join("verifiers"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

async fn labels_follow_the_raters_current_verdicts(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(3, 1, 3, 45_000).await;
    let store = app.store();
    // A study of the helpful solutions only: one solution per problem, so every rater judges
    // every solution.
    let set = store
        .problem_sets()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == fixture.problem_set)
        .unwrap();
    let study = store
        .create_study(
            &StudySpec {
                name: "helpful only".into(),
                time_limit_ms: 45_000,
                judgements_per_solution: 3,
                reclaim_grace_ms: 5_000,
                problem_set_id: set.id,
                checkpoint_ids: vec![],
                roles: vec![ProverRole::Helpful],
                max_problems: None,
                protocol: legibility::quality::RaterProtocol::default(),
                answers: Default::default(),
                time_limits: Default::default(),
            },
            None,
            app.now(),
        )
        .await
        .unwrap();
    let tokens = app.invite(study.id, 3).await;
    let human = |snapshot: &legibility::store::verifiers::RatingsSnapshot| {
        labelled_solutions(snapshot, LabelSource::Human, 10)
            .into_iter()
            .map(|s| (s.solution_id, s.label))
            .collect::<std::collections::HashMap<_, _>>()
    };

    // No judgements yet: no human labels; ground truth labels every solution.
    let before = store.ratings_snapshot(Some(study.id)).await.unwrap();
    assert_eq!(before.solutions.len(), 3);
    assert!(human(&before).values().all(Option::is_none));
    let truth = labelled_solutions(&before, LabelSource::GroundTruth, 10);
    assert!(truth.iter().all(|s| s.label == Some(s.ground_truth)));

    // One rater accepts everything they see: those solutions are labelled correct.
    app.judge_all(&tokens[..1], |_| "correct").await;
    let first = human(&store.ratings_snapshot(Some(study.id)).await.unwrap());
    let accepted: Vec<Uuid> = first
        .iter()
        .filter(|(_, l)| **l == Some(true))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(accepted.len(), 3, "{first:?}");

    // Two more raters reject everything: every solution now has a "wrong" majority, so the
    // solutions the first rater accepted flip from true to false.
    app.judge_all(&tokens[1..], |_| "wrong").await;
    let snapshot = store.ratings_snapshot(Some(study.id)).await.unwrap();
    let second = human(&snapshot);
    for id in &accepted {
        assert_eq!(second[id], Some(false), "{second:?}");
    }
    // `both` takes the majority over ground truth (these solutions are all correct).
    let both = labelled_solutions(&snapshot, LabelSource::Both, 10);
    assert!(
        both.iter()
            .all(|s| s.label == Some(false) && s.ground_truth)
    );
}
on_both_backends!(labels_follow_the_raters_current_verdicts);

async fn a_training_job_registers_a_version_with_metrics_and_scores_the_study(backend: Backend) {
    let app = TestApp::start(backend).await;
    let store = app.store().clone();
    let (models, base) = base_verifier(&store).await;
    // 16 problems × (helpful, sneaky), each judged twice by truthful raters.
    let fixture = app.fixture(16, 1, 2, 45_000).await;
    let tokens = app.invite(fixture.study_id, 4).await;
    app.judge_all(&tokens, truthful).await;
    assert_eq!(store.judgement_count().await.unwrap(), 64);

    let params = TrainingParams {
        label_source: LabelSource::Human,
        study_id: None,
        base_checkpoint_id: None,
        fit: FitOptions {
            max_epochs: 3,
            batch: 4,
            validation_share: 0.3,
            seed: 3,
            ..FitOptions::default()
        },
        judgements_seen: 0,
        trigger: "test".into(),
    };
    let job = request_training(&store, params.clone(), None, app.now())
        .await
        .unwrap()
        .expect("queued");
    // One training job at a time.
    assert_eq!(
        request_training(&store, params, None, app.now())
            .await
            .unwrap(),
        None
    );
    let _worker = start_worker(&store, models.path());
    let view = wait_for_end(&store, job, Duration::from_secs(300)).await;
    assert_eq!(view.state, JobState::Succeeded, "{view:?}");

    let versions = store.verifier_versions().await.unwrap();
    assert_eq!(versions.len(), 2);
    let current = &versions[0];
    assert_eq!((current.version, current.job_id), (2, Some(job)));
    assert_eq!(current.label_source, LabelSource::Human);
    assert_eq!(current.judgements_seen, 64);
    assert_eq!(
        current.model_dir.as_deref(),
        Some(version_dir(job).as_str())
    );
    let metrics = &current.metrics;
    let validation = metrics["validation_solutions"].as_u64().unwrap();
    assert!(validation > 0 && metrics["train_solutions"].as_u64().unwrap() > 0);
    for source in ["ground_truth", "human"] {
        let card = &metrics["after"][source];
        assert_eq!(card["solutions"].as_u64(), Some(validation), "{metrics}");
        assert!(card["accuracy"].as_f64().is_some(), "{metrics}");
        assert!(card["auroc"].as_f64().is_some(), "{metrics}");
    }
    let groups = metrics["after"]["by_round_role"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{metrics}");
    let base_label = current.base_label.as_deref();
    assert_eq!(base_label, Some("base-verifier"));
    let _ = base;

    // The files are complete and load; nothing temporary is left.
    let dir = models.path().join(version_dir(job));
    for file in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "training.json",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    Verifier::load(&dir, &candle_core::Device::Cpu).unwrap();
    assert_eq!(verifier_entries(models.path()), vec![job.to_string()]);

    // The new version scores every solution of the study.
    let scoring: Vec<JobView> = store
        .jobs_for_study(fixture.study_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == JobKind::VerifierScoring)
        .collect();
    assert_eq!(scoring.len(), 1);
    let scored = wait_for_end(&store, scoring[0].id, Duration::from_secs(120)).await;
    assert_eq!(scored.state, JobState::Succeeded, "{scored:?}");
    assert_eq!(scored.progress_done, 32);
    let scores = store.study_scores(fixture.study_id).await.unwrap();
    assert_eq!(scores.len(), 32);
    assert!(scores.iter().all(|s| s.version == 2 && s.score.is_finite()));
    // A second scoring job with the same version has nothing left to do.
    let again = store
        .enqueue_verifier_scoring(fixture.study_id, None, None, app.now())
        .await
        .unwrap();
    let again = wait_for_end(&store, again, Duration::from_secs(60)).await;
    assert_eq!(
        (again.state, again.progress_total),
        (JobState::Succeeded, 0)
    );
    assert_eq!(
        store.study_scores(fixture.study_id).await.unwrap().len(),
        32
    );
}
on_both_backends!(a_training_job_registers_a_version_with_metrics_and_scores_the_study);

async fn training_without_enough_labels_fails_with_a_reason_and_registers_nothing(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    let store = app.store().clone();
    let (models, _) = base_verifier(&store).await;
    app.fixture(4, 1, 1, 45_000).await;
    let params = TrainingParams {
        label_source: LabelSource::Human,
        study_id: None,
        base_checkpoint_id: None,
        fit: FitOptions::default(),
        judgements_seen: 0,
        trigger: "test".into(),
    };
    let job = request_training(&store, params, None, app.now())
        .await
        .unwrap()
        .unwrap();
    let _worker = start_worker(&store, models.path());
    let view = wait_for_end(&store, job, Duration::from_secs(120)).await;
    assert_eq!(view.state, JobState::Failed, "{view:?}");
    let error = view.error.unwrap_or_default();
    assert!(error.contains("not enough labelled data"), "{error}");
    assert_eq!(store.verifier_versions().await.unwrap().len(), 1);
    assert!(verifier_entries(models.path()).is_empty());
}
on_both_backends!(training_without_enough_labels_fails_with_a_reason_and_registers_nothing);

async fn new_judgements_trigger_training_automatically(backend: Backend) {
    let app = TestApp::start(backend).await;
    let store = app.store().clone();
    let fixture = app.fixture(3, 1, 1, 45_000).await;
    let tokens = app.invite(fixture.study_id, 1).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let trigger = tokio::spawn(auto_training(
        store.clone(),
        Clock::default(),
        3,
        Duration::from_millis(20),
        async move {
            let _ = stopped.await;
        },
    ));
    let training_jobs = || async {
        store
            .jobs(100)
            .await
            .unwrap()
            .into_iter()
            .filter(|j| j.kind == JobKind::VerifierTraining)
            .collect::<Vec<_>>()
    };
    app.judge_all(&tokens, truthful).await; // 3 judgements: one per problem
    let started = Instant::now();
    while training_jobs().await.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "no job queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let jobs = training_jobs().await;
    assert_eq!(jobs.len(), 1, "the trigger fires once per 3 judgements");
    let _ = stop.send(());
    trigger.await.unwrap();
    assert_eq!(store.judgements_at_last_training().await.unwrap(), 3);
}
on_both_backends!(new_judgements_trigger_training_automatically);

fn start_worker_process(url: &str, models: &Path, name: &str) -> common::WorkerProcess {
    let models = models.to_str().expect("a UTF-8 path");
    common::start_worker_process(
        url,
        name,
        &[
            "--lease-secs",
            "2",
            "--verifier-every",
            "0",
            "--models-dir",
            models,
        ],
    )
}

async fn a_worker_killed_mid_training_leaves_the_previous_version_current(backend: Backend) {
    let app = TestApp::start(backend).await;
    let store = app.store().clone();
    let (models, base) = base_verifier(&store).await;
    app.fixture(12, 1, 1, 45_000).await;
    // Ground-truth labels, one pair per step, many epochs: long enough to be killed midway.
    let params = TrainingParams {
        label_source: LabelSource::GroundTruth,
        study_id: None,
        base_checkpoint_id: None,
        fit: FitOptions {
            max_epochs: 60,
            patience: 60,
            batch: 1,
            validation_share: 0.3,
            ..FitOptions::default()
        },
        judgements_seen: 0,
        trigger: "test".into(),
    };
    let job = request_training(&store, params, None, app.now())
        .await
        .unwrap()
        .unwrap();
    let models_path: PathBuf = models.path().to_path_buf();
    let mut first = start_worker_process(&app.db.url, &models_path, "doomed");
    common::wait_for_progress_mid_job(&store, job).await;
    first.0.kill().unwrap();
    first.0.wait().unwrap();

    // The killed run registered nothing: version 1 is still current, and no finished-looking
    // folder exists (at most the run's own temp folder, which the retry removes).
    assert_eq!(store.job(job).await.unwrap().state, JobState::Running);
    let versions = store.verifier_versions().await.unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(
        store
            .current_verifier()
            .await
            .unwrap()
            .unwrap()
            .checkpoint_id,
        base
    );
    for entry in verifier_entries(&models_path) {
        assert!(entry.starts_with(&format!(".tmp-{job}-")), "{entry}");
    }

    let _second = start_worker_process(&app.db.url, &models_path, "successor");
    let view = wait_for_end(&store, job, Duration::from_secs(600)).await;
    assert_eq!(view.state, JobState::Succeeded, "{view:?}");
    assert_eq!(view.attempts, 2);
    let versions = store.verifier_versions().await.unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!((versions[0].version, versions[0].job_id), (2, Some(job)));
    assert_eq!(verifier_entries(&models_path), vec![job.to_string()]);
    Verifier::load(
        &models_path.join(version_dir(job)),
        &candle_core::Device::Cpu,
    )
    .unwrap();
}
on_both_backends!(a_worker_killed_mid_training_leaves_the_previous_version_current);

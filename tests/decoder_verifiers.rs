//! Decoder verifiers trained from an uploaded transformers checkpoint (issue 19): a causal
//! language model uploaded as a verifier (it has no score head, so the head starts at zero)
//! and a decoder reward model (`*ForSequenceClassification`), trained on the score head alone
//! or on the top blocks with the final norm, the blocks below frozen. Each test compares the
//! saved version's tensors with the upload's by name, so a frozen weight that moved fails it.
//! Then the same through a training job queued by `legibility verifier train --train-blocks`,
//! on SQLite and PostgreSQL.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::{Device, Tensor};
use clap::Parser;
use common::{Backend, TestApp, wait_for_end};
use legibility::checkpoints::{
    CheckpointFiles, CheckpointLimits, Staging, add_checkpoint, validate,
};
use legibility::clock::Clock;
use legibility::domain::{CheckpointKind, JobKind, JobState, ProverRole};
use legibility::ml::train_verifier::{FitOptions, LabelledSolution, fit_verifier};
use legibility::ml::verifier::{Verifier, verifier_text};
use legibility::worker::verifier::version_dir;
use legibility::worker::{Worker, WorkerConfig, handlers};
use serde_json::{Value, json};
use uuid::Uuid;

/// A causal language model (tied embeddings, no score head).
const LANGUAGE_MODEL: &str = "qwen2";
/// Decoder reward models with their own score head.
const REWARD_MODELS: [&str; 2] = ["llama-cls", "qwen3-cls"];

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/transformers")
        .join(case)
}

/// The checkpoint's files (the fixture's reference outputs left out), as an upload sends them.
fn staged(dir: &Path) -> CheckpointFiles {
    let mut staging = Staging::new(&std::env::temp_dir(), CheckpointLimits::default()).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("reference") {
            staging
                .add(&name, std::fs::File::open(&path).unwrap())
                .unwrap();
        }
    }
    staging.finish().unwrap()
}

/// Labelled solutions whose right answer the text gives away.
fn labelled(problems: u128) -> Vec<LabelledSolution> {
    (0..problems)
        .flat_map(|p| {
            [true, false].map(|right| LabelledSolution {
                solution_id: Uuid::from_u128(p * 2 + right as u128),
                problem_id: Uuid::from_u128(p),
                text: verifier_text(
                    &format!("Problem {p}: a farmer has goats and buys {p} more."),
                    if right {
                        "Count step by step. The total is right.\n#### 12"
                    } else {
                        "Count carefully. The total is wrong.\n#### 40"
                    },
                ),
                label: Some(right),
                ground_truth: right,
                human: None,
                round: 0,
                role: if right {
                    ProverRole::Helpful
                } else {
                    ProverRole::Sneaky
                },
            })
        })
        .collect()
}

fn options(train_blocks: Option<usize>) -> FitOptions {
    FitOptions {
        learning_rate: 0.05,
        batch: 4,
        max_epochs: 12,
        patience: 12,
        validation_share: 0.25,
        train_blocks,
        ..FitOptions::default()
    }
}

fn tensors_in(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// The tensors of the saved version that differ from the upload's (sorted), after checking
/// that the version holds exactly the upload's tensors plus the score head, less an unused
/// language-model head.
fn changed_tensors(upload: &Path, version: &Path) -> Vec<String> {
    let before = tensors_in(&upload.join("model.safetensors"));
    let after = tensors_in(&version.join("model.safetensors"));
    for name in before.keys() {
        assert!(
            after.contains_key(name) || name == "lm_head.weight",
            "{name} is missing from the version"
        );
    }
    let mut changed = Vec::new();
    for (name, tensor) in &after {
        match before.get(name) {
            Some(original) => {
                assert_eq!(original.dims(), tensor.dims(), "{name}");
                if max_diff(original, tensor) > 0.0 {
                    changed.push(name.clone());
                }
            }
            None => {
                assert_eq!(name, "score.weight", "the version added {name}");
                changed.push(name.clone());
            }
        }
    }
    changed.sort();
    changed
}

/// Trains a verifier loaded from `case` with `train_blocks`, saves it, and returns the
/// changed tensors, the saved config and the report's description of what was trained; the
/// version is checked to validate as a verifier upload and to score as it did when saved.
fn train_and_save(case: &str, train_blocks: Option<usize>) -> (Vec<String>, Value, String) {
    let data = labelled(12);
    let texts: Vec<String> = data.iter().map(|s| s.text.clone()).collect();
    let mut verifier = Verifier::load(&fixture(case), &Device::Cpu).unwrap();
    assert!(verifier.is_transformers_checkpoint(), "{case}");
    let own = verifier.score_texts(&texts, 8).unwrap();
    if case == LANGUAGE_MODEL {
        assert!(own.iter().all(|s| *s == 0.0), "no head yet: {own:?}");
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let report = fit_verifier(
        &mut verifier,
        &data,
        &options(train_blocks),
        &mut |_, _| {},
        &stop,
    )
    .unwrap();
    assert!(report.best_epoch > 0, "{case}: {report:?}");
    let trained = verifier.score_texts(&texts, 8).unwrap();
    assert_ne!(trained, own, "{case}: training changed nothing");

    let out = tempfile::tempdir().unwrap();
    let version = out.path().join("v2");
    verifier.save(&version, &report).unwrap();
    let changed = changed_tensors(&fixture(case), &version);
    let config: Value =
        serde_json::from_slice(&std::fs::read(version.join("config.json")).unwrap()).unwrap();
    // The version is a valid verifier upload with a score head, and scores as it did.
    let checkpoint = validate(
        staged(&version),
        CheckpointKind::Verifier,
        &CheckpointLimits::default(),
    )
    .unwrap_or_else(|e| panic!("{case}: {e}"));
    assert!(checkpoint.score_head(), "{case}");
    let mut reloaded = Verifier::load(&version, &Device::Cpu).unwrap();
    let again = reloaded.score_texts(&texts, 3).unwrap();
    for (a, b) in trained.iter().zip(&again) {
        assert!((a - b).abs() < 1e-5, "{case}: {a} vs {b}");
    }
    (changed, config, report.trained)
}

#[test]
fn by_default_an_uploaded_decoder_trains_its_score_head_alone() {
    for case in std::iter::once(LANGUAGE_MODEL).chain(REWARD_MODELS) {
        let (changed, config, trained) = train_and_save(case, None);
        assert_eq!(changed, vec!["score.weight".to_string()], "{case}");
        assert!(
            trained.contains("the score head on the frozen"),
            "{trained}"
        );
        let original: Value =
            serde_json::from_slice(&std::fs::read(fixture(case).join("config.json")).unwrap())
                .unwrap();
        if case == LANGUAGE_MODEL {
            // Saved as the reward model it now is, every other field as uploaded.
            assert_eq!(
                config["architectures"],
                json!(["Qwen2ForSequenceClassification"])
            );
            assert_eq!(config["id2label"], json!({"0": "LABEL_0"}));
            for (key, value) in original.as_object().unwrap() {
                if !["architectures", "id2label", "label2id"].contains(&key.as_str()) {
                    assert_eq!(&config[key], value, "{key}");
                }
            }
        } else {
            assert_eq!(config, original, "{case}");
        }
    }
}

#[test]
fn top_blocks_train_with_the_final_norm_and_the_rest_stays_frozen() {
    let (changed, _, trained) = train_and_save(LANGUAGE_MODEL, Some(1));
    assert!(trained.contains("blocks 1–1"), "{trained}");
    assert!(changed.contains(&"score.weight".to_string()), "{changed:?}");
    assert!(
        changed.iter().any(|n| n.starts_with("model.layers.1.")),
        "{changed:?}"
    );
    for name in &changed {
        assert!(
            name == "score.weight"
                || name == "model.norm.weight"
                || name.starts_with("model.layers.1."),
            "{name} changed, but only block 1, the final norm and the head may: {changed:?}"
        );
    }
    // Every block: the body's embeddings move too.
    let (changed, _, trained) = train_and_save("llama-cls", Some(2));
    assert!(trained.contains("blocks 0–1"), "{trained}");
    assert!(
        changed.iter().any(|n| n.starts_with("model.layers.0.")),
        "{changed:?}"
    );
    assert!(!changed.contains(&"model.embed_tokens.weight".to_string()));
}

#[test]
fn blocks_a_verifier_does_not_have_are_refused_by_name() {
    let data = labelled(6);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut verifier = Verifier::load(&fixture(LANGUAGE_MODEL), &Device::Cpu).unwrap();
    let err = fit_verifier(
        &mut verifier,
        &data,
        &options(Some(3)),
        &mut |_, _| {},
        &stop,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("has 2 blocks; 3 cannot be trained"), "{err}");
    let mut encoder = Verifier::load(&fixture("roberta-cls"), &Device::Cpu).unwrap();
    let err = fit_verifier(
        &mut encoder,
        &data,
        &options(Some(1)),
        &mut |_, _| {},
        &stop,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("applies to decoder verifiers"), "{err}");
}

/// An in-process worker with every handler, stopped when the returned sender is dropped.
fn start_worker(
    store: &legibility::store::Store,
    models: &Path,
) -> tokio::sync::oneshot::Sender<()> {
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

async fn an_uploaded_language_model_becomes_a_verifier_through_a_cli_training_job(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    let store = app.store().clone();
    let models = tempfile::tempdir().unwrap();
    let study = app.fixture(40, 1, 1, 45_000).await.study_id;
    // The fixture as it is but for `max_position_embeddings`, raised from 128 so the study's
    // solutions fit whole (its tokenizer spells most words letter by letter); the weights do
    // not depend on it.
    let upload = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(LANGUAGE_MODEL)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, upload.path().join(path.file_name().unwrap())).unwrap();
    }
    let config_path = upload.path().join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["max_position_embeddings"] = 4096.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let uploaded = add_checkpoint(
        &store,
        models.path(),
        staged(upload.path()),
        CheckpointLimits::default(),
        None,
        CheckpointKind::Verifier,
        "qwen2-lm",
        0,
        app.now(),
    )
    .await
    .unwrap();
    let upload_dir = models.path().join(&uploaded.model_dir);

    // Queued as a researcher would: the top block, the final norm and the head.
    let cli = legibility::cli::Cli::parse_from([
        "legibility",
        "--database-url",
        &app.db.url,
        "verifier",
        "train",
        "--labels",
        "ground_truth",
        "--study",
        &study.to_string(),
        "--base",
        "qwen2-lm",
        "--seed",
        "3",
        "--train-blocks",
        "1",
        "--learning-rate",
        "0.01",
    ]);
    legibility::cli::run(cli).await.unwrap();
    let job = store
        .jobs(10)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.kind == JobKind::VerifierTraining)
        .expect("a training job");
    let params = store.job_params(job.id).await.unwrap();
    assert_eq!(params["fit"]["train_blocks"], 1, "{params}");
    assert_eq!(params["fit"]["learning_rate"], 0.01, "{params}");
    assert_eq!(params["base_checkpoint_id"], json!(uploaded.id), "{params}");

    let _worker = start_worker(&store, models.path());
    let view = wait_for_end(&store, job.id, Duration::from_secs(300)).await;
    assert_eq!(view.state, JobState::Succeeded, "{view:?}");
    let versions = store.verifier_versions().await.unwrap();
    assert_eq!(versions.len(), 1);
    let current = &versions[0];
    assert_eq!(current.base_label.as_deref(), Some("qwen2-lm"));
    let trained = current.metrics["trained"].as_str().unwrap_or_default();
    assert!(trained.contains("blocks 1–1"), "{}", current.metrics);
    assert!(
        current.metrics["best_epoch"].as_u64() > Some(0),
        "{}",
        current.metrics
    );
    let dir = models.path().join(version_dir(job.id));
    let changed = changed_tensors(&upload_dir, &dir);
    assert!(changed.contains(&"score.weight".to_string()), "{changed:?}");
    assert!(
        changed.iter().any(|n| n.starts_with("model.layers.1.")),
        "{changed:?}"
    );
    assert!(
        changed.iter().all(|n| n == "score.weight"
            || n == "model.norm.weight"
            || n.starts_with("model.layers.1.")),
        "{changed:?}"
    );
    let saved: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        saved["architectures"],
        json!(["Qwen2ForSequenceClassification"])
    );

    // The new version scores the study, and not as the zero head it started with.
    let scoring = store
        .jobs_for_study(study)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.kind == JobKind::VerifierScoring)
        .expect("a scoring job");
    let scored = wait_for_end(&store, scoring.id, Duration::from_secs(120)).await;
    assert_eq!(scored.state, JobState::Succeeded, "{scored:?}");
    let scores = store.study_scores(study).await.unwrap();
    assert_eq!(scores.len(), 80);
    assert!(scores.iter().any(|s| s.score.abs() > 1e-6), "{scores:?}");
}
on_both_backends!(an_uploaded_language_model_becomes_a_verifier_through_a_cli_training_job);

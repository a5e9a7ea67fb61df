//! Encoder reward models as verifiers: `BertForSequenceClassification`,
//! `RobertaForSequenceClassification` and `DebertaV2ForSequenceClassification` with one label.
//!
//! Exactness against transformers 5.25 (the committed fixtures in
//! `tests/fixtures/transformers/{bert,roberta,deberta-v2}-cls`, random weights): the ids the
//! `tokenizers` crate gives each text with the checkpoint's own `tokenizer.json`, and every
//! unpadded and right-padded score within 1e-4 (f32), through the model and through
//! `Verifier::load`. Then refusals by name, upload validation, head-only training on frozen
//! features, and an uploaded RoBERTa reward model scoring a study and trained from it as a
//! new verifier version, on SQLite and PostgreSQL.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use common::{Backend, TestApp, wait_for_end};
use legibility::checkpoints::{
    CheckpointFiles, CheckpointLimits, Staging, add_checkpoint, validate,
};
use legibility::clock::Clock;
use legibility::domain::{
    CheckpointKind, JobKind, JobState, LabelSource, ProverRole, VerifierLoss,
};
use legibility::ml::config::ModelConfig;
use legibility::ml::encoder_classifier::EncoderClassifier;
use legibility::ml::train_verifier::{FitOptions, LabelledSolution, fit_verifier};
use legibility::ml::verifier::{Verifier, verifier_text};
use legibility::store::verifiers::NewVerifierVersion;
use legibility::worker::verifier::{TrainingParams, request_training, version_dir};
use legibility::worker::{Worker, WorkerConfig, handlers};
use serde_json::{Value, json};
use uuid::Uuid;

const CASES: [&str; 3] = ["bert-cls", "roberta-cls", "deberta-v2-cls"];
/// The exactness bar of issue 19: max abs diff in f32.
const TOLERANCE: f32 = 1e-4;
/// The files of a fixture folder that make up the checkpoint (the rest are references).
const CHECKPOINT_FILES: [&str; 4] = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
];

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/transformers")
        .join(case)
}

fn reference(case: &str) -> Value {
    let text = std::fs::read_to_string(fixture(case).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids_of(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

fn model_of(case: &str) -> EncoderClassifier {
    let dir = fixture(case);
    let config =
        match ModelConfig::from_json(&std::fs::read(dir.join("config.json")).unwrap()).unwrap() {
            ModelConfig::EncoderClassifier(c) => c,
            other => panic!("{case}: parsed as {}", other.model_type()),
        };
    config.check().unwrap();
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu).unwrap();
    EncoderClassifier::new(&config, vb).unwrap()
}

/// Largest |ours − transformers'| over a fixture's unpadded prompts and its right-padded batch.
fn max_score_diff(case: &str, mut score: impl FnMut(&[Vec<u32>], &[usize]) -> Vec<f32>) -> f32 {
    let reference = reference(case);
    let classifier = &reference["classifier"];
    let mut worst = 0f32;
    for prompt in classifier["unpadded"].as_array().unwrap() {
        let ids = ids_of(&prompt["input_ids"]);
        let n = ids.len();
        let got = score(&[ids], &[n]);
        let want = prompt["score"][0].as_f64().unwrap() as f32;
        worst = worst.max((got[0] - want).abs());
    }
    let right = classifier["batches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["padding_side"] == "right")
        .expect("a right-padded batch");
    let rows: Vec<Vec<u32>> = right["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids_of)
        .collect();
    let lengths: Vec<usize> = right["attention_mask"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| ids_of(m).iter().sum::<u32>() as usize)
        .collect();
    let got = score(&rows, &lengths);
    for (row, want) in right["scores"].as_array().unwrap().iter().enumerate() {
        let want = want[0].as_f64().unwrap() as f32;
        worst = worst.max((got[row] - want).abs());
    }
    worst
}

#[test]
fn the_checkpoints_tokenizers_give_transformers_ids() {
    for case in CASES {
        let tokenizer = tokenizers::Tokenizer::from_file(fixture(case).join("tokenizer.json"))
            .expect("tokenizer");
        let verifier = Verifier::load(&fixture(case), &Device::Cpu).expect("verifier");
        for prompt in reference(case)["classifier"]["unpadded"]
            .as_array()
            .unwrap()
        {
            let text = prompt["text"].as_str().unwrap();
            let want = ids_of(&prompt["input_ids"]);
            let encoding = tokenizer.encode(text, true).unwrap();
            assert_eq!(encoding.get_ids(), want.as_slice(), "{case}: {text:?}");
            if let Some(types) = prompt.get("token_type_ids") {
                assert_eq!(encoding.get_type_ids(), ids_of(types).as_slice(), "{case}");
            }
            // The verifier's own tokenizer (truncation on, padding off) agrees.
            assert_eq!(verifier.encode(text).unwrap(), want, "{case}: {text:?}");
        }
    }
}

#[test]
fn scores_match_transformers_unpadded_and_right_padded() {
    for case in CASES {
        let model = model_of(case);
        let direct = max_score_diff(case, |rows, lengths| {
            let t = rows.iter().map(Vec::len).max().unwrap();
            let pad = rows
                .iter()
                .zip(lengths)
                .find_map(|(r, &n)| r.get(n).copied())
                .unwrap_or(0);
            let flat: Vec<u32> = rows
                .iter()
                .flat_map(|r| {
                    let mut r = r.clone();
                    r.resize(t, pad);
                    r
                })
                .collect();
            let ids = Tensor::from_vec(flat, (rows.len(), t), &Device::Cpu).unwrap();
            model.scores(&ids, lengths).unwrap().to_vec1().unwrap()
        });
        // Through the verifier: its own right padding, the head as a trainable copy.
        let mut verifier = Verifier::load(&fixture(case), &Device::Cpu).expect("verifier");
        let through_verifier = max_score_diff(case, |rows, lengths| {
            let real: Vec<Vec<u32>> = rows
                .iter()
                .zip(lengths)
                .map(|(r, &n)| r[..n].to_vec())
                .collect();
            let refs: Vec<&Vec<u32>> = real.iter().collect();
            verifier.scores(&refs, false).unwrap().to_vec1().unwrap()
        });
        println!(
            "{case}: max abs score diff vs transformers {direct:.3e} (model), {through_verifier:.3e} (verifier)"
        );
        assert!(direct <= TOLERANCE, "{case}: {direct}");
        assert!(through_verifier <= TOLERANCE, "{case}: {through_verifier}");
    }
}

/// The fixture's config.json with `change` merged in, parsed and checked.
fn checked_with(case: &str, change: Value) -> Result<(), String> {
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(fixture(case).join("config.json")).unwrap()).unwrap();
    for (key, value) in change.as_object().unwrap() {
        if value.is_null() {
            config.as_object_mut().unwrap().remove(key);
        } else {
            config[key] = value.clone();
        }
    }
    ModelConfig::from_json(config.to_string().as_bytes())?.check()
}

#[test]
fn configs_that_change_the_maths_are_refused_by_name() {
    for case in CASES {
        checked_with(case, json!({})).expect(case);
        let err = checked_with(case, json!({"id2label": {"0": "bad", "1": "good"}})).unwrap_err();
        assert!(
            err.contains("num_labels is 2") && err.contains("id2label"),
            "{case}: {err}"
        );
    }
    let cases: &[(&str, Value, &str)] = &[
        (
            "roberta-cls",
            json!({"id2label": null, "num_labels": 3}),
            "num_labels is 3",
        ),
        ("roberta-cls", json!({"id2label": null}), "num_labels is 2"),
        (
            "roberta-cls",
            json!({"architectures": ["RobertaModel"]}),
            "RobertaForSequenceClassification",
        ),
        (
            "roberta-cls",
            json!({"position_embedding_type": "relative_key"}),
            "position_embedding_type",
        ),
        (
            "roberta-cls",
            json!({"max_position_embeddings": 2}),
            "max_position_embeddings 2",
        ),
        ("bert-cls", json!({"is_decoder": true}), "is_decoder"),
        ("bert-cls", json!({"hidden_act": "swish"}), "\"swish\""),
        (
            "deberta-v2-cls",
            json!({"architectures": ["DebertaV2Model"]}),
            "DebertaV2ForSequenceClassification",
        ),
        (
            "deberta-v2-cls",
            json!({"relative_attention": false}),
            "relative_attention",
        ),
        (
            "deberta-v2-cls",
            json!({"relative_attention": null}),
            "relative_attention",
        ),
        (
            "deberta-v2-cls",
            json!({"position_biased_input": true}),
            "position_biased_input",
        ),
        (
            "deberta-v2-cls",
            json!({"share_att_key": false}),
            "share_att_key",
        ),
        (
            "deberta-v2-cls",
            json!({"pos_att_type": "p2c|p2p"}),
            "\"p2p\"",
        ),
        (
            "deberta-v2-cls",
            json!({"conv_kernel_size": 3}),
            "conv_kernel_size",
        ),
        (
            "deberta-v2-cls",
            json!({"embedding_size": 16}),
            "embedding_size",
        ),
        (
            "deberta-v2-cls",
            json!({"attention_head_size": 4}),
            "attention_head_size",
        ),
        (
            "deberta-v2-cls",
            json!({"pooler_hidden_size": 16}),
            "pooler_hidden_size",
        ),
        (
            "deberta-v2-cls",
            json!({"pooler_hidden_act": "mish"}),
            "pooler_hidden_act",
        ),
        (
            "deberta-v2-cls",
            json!({"norm_rel_ebd": "batch_norm"}),
            "norm_rel_ebd",
        ),
    ];
    for (case, change, needle) in cases {
        let err = checked_with(case, change.clone()).unwrap_err();
        assert!(
            err.starts_with("config.json") && err.contains(needle),
            "{case} {change}: {err}"
        );
    }
    // Older spellings that do not change the maths are accepted: pos_att_type as a string.
    checked_with("deberta-v2-cls", json!({"pos_att_type": "p2c|c2p"})).unwrap();
    // A BERT that is not a classifier is still the mean-pooled backbone.
    let mut plain: Value =
        serde_json::from_slice(&std::fs::read(fixture("bert-cls").join("config.json")).unwrap())
            .unwrap();
    plain["architectures"] = json!(["BertModel"]);
    let config = ModelConfig::from_json(plain.to_string().as_bytes()).unwrap();
    assert!(config.as_bert().is_some(), "{config:?}");
}

fn checkpoint_files(case: &str) -> Vec<(String, Vec<u8>)> {
    CHECKPOINT_FILES
        .iter()
        .map(|name| {
            (
                name.to_string(),
                std::fs::read(fixture(case).join(name)).unwrap(),
            )
        })
        .collect()
}

/// Tensors to change by name: a new shape (zeros), or `None` to remove it.
type TensorChanges<'a> = &'a [(&'a str, Option<Vec<usize>>)];

/// The fixture's weights with `change` applied to the tensors, as one safetensors file.
fn weights_with(case: &str, change: TensorChanges<'_>) -> Vec<u8> {
    let bytes = std::fs::read(fixture(case).join("model.safetensors")).unwrap();
    let mut tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    for (name, shape) in change {
        match shape {
            Some(shape) => {
                tensors.insert(
                    name.to_string(),
                    Tensor::zeros(shape.as_slice(), DType::F32, &Device::Cpu).unwrap(),
                );
            }
            None => {
                tensors.remove(*name);
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    std::fs::read(path).unwrap()
}

/// Receives files as an upload does, in a temporary folder removed when they are dropped.
fn staged(files: Vec<(String, Vec<u8>)>) -> CheckpointFiles {
    let mut staging = Staging::new(&std::env::temp_dir(), CheckpointLimits::default()).unwrap();
    for (name, bytes) in &files {
        staging.add(name, bytes.as_slice()).unwrap();
    }
    staging.finish().unwrap()
}

fn validated(files: Vec<(String, Vec<u8>)>, kind: CheckpointKind) -> Result<Value, String> {
    validate(staged(files), kind, &CheckpointLimits::default())
        .map(|c| c.metadata())
        .map_err(|e| e.to_string())
}

#[test]
fn uploads_accept_exactly_a_classifiers_tensors() {
    for case in CASES {
        let metadata = validated(checkpoint_files(case), CheckpointKind::Verifier).expect(case);
        assert_eq!(metadata["score_head"], true, "{case}: {metadata}");
        assert_eq!(metadata["architecture"]["num_labels"], 1, "{metadata}");
        let err = validated(checkpoint_files(case), CheckpointKind::Prover).unwrap_err();
        assert!(
            err.contains("prover checkpoints must be decoder language models"),
            "{case}: {err}"
        );
    }
    let with_weights = |case: &str, change: TensorChanges<'_>| {
        let mut files = checkpoint_files(case);
        files[1].1 = weights_with(case, change);
        validated(files, CheckpointKind::Verifier)
    };
    let refusals: &[(&str, TensorChanges<'_>, &str)] = &[
        (
            "roberta-cls",
            &[("classifier.out_proj.weight", Some(vec![2, 32]))],
            "classifier.out_proj.weight has shape [2, 32] but config.json implies [1, 32]",
        ),
        (
            "roberta-cls",
            &[("classifier.out_proj.bias", None)],
            "missing: classifier.out_proj.bias",
        ),
        (
            "roberta-cls",
            &[("roberta.pooler.dense.weight", Some(vec![32, 32]))],
            "unexpected tensor(s) for a RobertaForSequenceClassification",
        ),
        (
            "bert-cls",
            &[("bert.pooler.dense.bias", None)],
            "missing: bert.pooler.dense.bias",
        ),
        (
            "bert-cls",
            &[("score.weight", Some(vec![1, 32]))],
            "unexpected tensor(s) for a BertForSequenceClassification",
        ),
        (
            "deberta-v2-cls",
            &[("deberta.encoder.rel_embeddings.weight", Some(vec![64, 32]))],
            "deberta.encoder.rel_embeddings.weight has shape [64, 32] but config.json implies [32, 32]",
        ),
        (
            "deberta-v2-cls",
            &[
                ("classifier.weight", Some(vec![3, 32])),
                ("classifier.bias", Some(vec![3])),
            ],
            "classifier.weight has shape [3, 32]",
        ),
    ];
    for (case, change, needle) in refusals {
        let err = with_weights(case, change).unwrap_err();
        assert!(err.contains(needle), "{case}: {err}");
    }
    // What transformers itself ignores on load is accepted: the position-ids buffer older
    // exports save, and a v3 export's unused absolute position embeddings.
    let mut files = checkpoint_files("deberta-v2-cls");
    let bytes = std::fs::read(fixture("deberta-v2-cls").join("model.safetensors")).unwrap();
    let mut tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    tensors.insert(
        "deberta.embeddings.position_embeddings.weight".into(),
        Tensor::zeros((64, 32), DType::F32, &Device::Cpu).unwrap(),
    );
    tensors.insert(
        "deberta.embeddings.position_ids".into(),
        Tensor::arange(0i64, 64, &Device::Cpu)
            .unwrap()
            .reshape((1, 64))
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    candle_core::safetensors::save(&tensors, dir.path().join("w.safetensors")).unwrap();
    files[1].1 = std::fs::read(dir.path().join("w.safetensors")).unwrap();
    let metadata = validated(files, CheckpointKind::Verifier).unwrap();
    assert_eq!(metadata["score_head"], true);
    // num_labels 2 is refused with its reason, before any tensor is looked at.
    let mut files = checkpoint_files("roberta-cls");
    let mut config: Value = serde_json::from_slice(&files[0].1).unwrap();
    config["id2label"] = json!({"0": "NEG", "1": "POS"});
    files[0].1 = config.to_string().into_bytes();
    let err = validated(files, CheckpointKind::Verifier).unwrap_err();
    assert!(err.contains("num_labels is 2"), "{err}");
    // The slow-tokenizer files transformers saves beside them are accepted and listed as
    // ignored (tokenizer.json is what is read).
    let mut files = checkpoint_files("roberta-cls");
    files.push(("vocab.json".into(), br#"{"<s>": 0}"#.to_vec()));
    files.push(("merges.txt".into(), vec![0xff, 0xfe]));
    let metadata = validated(files, CheckpointKind::Verifier).unwrap();
    let ignored = metadata["ignored"].to_string();
    assert!(
        ignored.contains("merges.txt") && ignored.contains("vocab.json"),
        "{ignored}"
    );
    let mut files = checkpoint_files("deberta-v2-cls");
    files.push(("spm.model".into(), vec![0x0a, 0x80, 0xff, 0x00]));
    files.push(("added_tokens.json".into(), br#"{"[MASK]": 4}"#.to_vec()));
    let metadata = validated(files, CheckpointKind::Verifier).unwrap();
    assert!(metadata["ignored"].to_string().contains("spm.model"));
}

/// Labelled solutions whose right answer the text gives away ("step by step" vs "carefully").
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

/// Tensors of a safetensors file by name.
fn tensors_in(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

#[test]
fn training_changes_only_the_last_layer_and_versions_stay_transformers_checkpoints() {
    for case in CASES {
        let data = labelled(12);
        let texts: Vec<String> = data.iter().map(|s| s.text.clone()).collect();
        let mut verifier = Verifier::load(&fixture(case), &Device::Cpu).unwrap();
        let own = verifier.score_texts(&texts, 8).unwrap();
        // The cache gives the same scores as a plain pass.
        verifier.cache_features(true);
        let cached = verifier.score_texts(&texts, 5).unwrap();
        verifier.cache_features(false);
        for (a, b) in own.iter().zip(&cached) {
            assert!((a - b).abs() < 1e-5, "{case}: {a} vs {b}");
        }
        let options = FitOptions {
            learning_rate: 0.05,
            batch: 4,
            max_epochs: 30,
            patience: 30,
            validation_share: 0.25,
            ..FitOptions::default()
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        let report = fit_verifier(&mut verifier, &data, &options, &mut |_, _| {}, &stop).unwrap();
        println!(
            "{case}: trained {} — best epoch {}, {:.0} training solutions/s, validation AUROC {:?} → {:?}",
            report.trained,
            report.best_epoch,
            report.train_solutions_per_second,
            report.before.ground_truth.auroc,
            report.after.ground_truth.auroc
        );
        assert!(report.trained.contains("classifier."), "{}", report.trained);
        assert!(report.best_epoch > 0, "{case}: {report:?}");
        let trained = verifier.score_texts(&texts, 8).unwrap();
        assert_ne!(trained, own, "{case}: training changed nothing");

        let out = tempfile::tempdir().unwrap();
        let version = out.path().join("v2");
        verifier.save(&version, &report).unwrap();
        // config.json is the checkpoint's own; every tensor but the last layer is unchanged.
        let original_config = std::fs::read_to_string(fixture(case).join("config.json")).unwrap();
        let saved_config = std::fs::read_to_string(version.join("config.json")).unwrap();
        assert_eq!(
            saved_config.trim_end(),
            original_config.trim_end(),
            "{case}"
        );
        let before = tensors_in(&fixture(case).join("model.safetensors"));
        let after = tensors_in(&version.join("model.safetensors"));
        let mut names: Vec<&String> = before.keys().collect();
        names.sort();
        assert_eq!(after.len(), before.len(), "{case}");
        let mut changed = Vec::new();
        for name in names {
            let diff = (&before[name] - &after[name])
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            if diff > 0.0 {
                changed.push(name.clone());
            }
        }
        let last = if case == "roberta-cls" {
            "classifier.out_proj"
        } else {
            "classifier"
        };
        assert_eq!(
            changed,
            vec![format!("{last}.bias"), format!("{last}.weight")],
            "{case}"
        );
        // The version loads back (upload validation included) with the same scores.
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for entry in std::fs::read_dir(&version).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            files.push((name, std::fs::read(&path).unwrap()));
        }
        validated(files, CheckpointKind::Verifier).unwrap();
        let mut reloaded = Verifier::load(&version, &Device::Cpu).unwrap();
        let again = reloaded.score_texts(&texts, 8).unwrap();
        for (a, b) in trained.iter().zip(&again) {
            assert!((a - b).abs() < 1e-5, "{case}: {a} vs {b}");
        }
    }
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

async fn an_uploaded_roberta_reward_model_scores_a_study_and_trains(backend: Backend) {
    let app = TestApp::start(backend).await;
    let store = app.store().clone();
    let models = tempfile::tempdir().unwrap();
    let fixture_study = app.fixture(12, 1, 1, 45_000).await;
    let study = fixture_study.study_id;

    // Uploaded through the same path as the admin page and the CLI.
    let uploaded = add_checkpoint(
        &store,
        models.path(),
        staged(checkpoint_files("roberta-cls")),
        CheckpointLimits::default(),
        None,
        CheckpointKind::Verifier,
        "roberta-rm",
        0,
        app.now(),
    )
    .await
    .unwrap()
    .id;
    let upload_dir = store.checkpoint_model_dir(uploaded).await.unwrap().unwrap();

    // Registered as a version as it is: its scores are the reward model's own.
    let (version_one, number) = store
        .register_verifier_version(
            None,
            &NewVerifierVersion {
                label: Some("roberta-rm-v1".into()),
                model_dir: upload_dir.clone(),
                checkpoint_metadata: json!({"source": "upload", "checkpoint_id": uploaded}),
                base_checkpoint_id: Some(uploaded),
                job_id: None,
                label_source: LabelSource::GroundTruth,
                loss: VerifierLoss::BradleyTerry,
                judgements_seen: 0,
                metrics: json!({}),
                score_studies: vec![study],
            },
            app.now(),
        )
        .await
        .unwrap();
    assert_eq!(number, 1);
    let pending = store.solutions_to_score(study, version_one).await.unwrap();
    assert_eq!(pending.len(), 24);
    let mut expected: HashMap<Uuid, f32> = HashMap::new();
    {
        let mut verifier = Verifier::load(&models.path().join(&upload_dir), &Device::Cpu).unwrap();
        let texts: Vec<String> = pending
            .iter()
            .map(|(_, question, text)| verifier_text(question, text))
            .collect();
        let scores = verifier.score_texts(&texts, 1).unwrap();
        for ((id, _, _), score) in pending.iter().zip(scores) {
            expected.insert(*id, score);
        }
    }
    let _worker = start_worker(&store, models.path());
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
    assert_eq!(scores.len(), 24);
    for row in &scores {
        let want = expected[&row.solution_id] as f64;
        assert!(
            (row.score - want).abs() < 1e-5,
            "scored in a batch of 32: {} vs alone {want}",
            row.score
        );
    }

    // Trained from the study's ground truth, starting from the upload: a new version whose
    // last layer moved, scoring the study again.
    let params = TrainingParams {
        label_source: LabelSource::GroundTruth,
        study_id: Some(study),
        base_checkpoint_id: Some(uploaded),
        fit: FitOptions {
            learning_rate: 0.05,
            max_epochs: 6,
            patience: 6,
            batch: 4,
            validation_share: 0.3,
            seed: 3,
            ..FitOptions::default()
        },
        judgements_seen: 0,
        trigger: "test".into(),
    };
    let job = request_training(&store, params, None, app.now())
        .await
        .unwrap()
        .expect("queued");
    let view = wait_for_end(&store, job, Duration::from_secs(300)).await;
    assert_eq!(view.state, JobState::Succeeded, "{view:?}");
    let versions = store.verifier_versions().await.unwrap();
    assert_eq!(versions.len(), 2);
    let current = &versions[0];
    assert_eq!((current.version, current.job_id), (2, Some(job)));
    assert_eq!(current.base_label.as_deref(), Some("roberta-rm"));
    let trained = current.metrics["trained"].as_str().unwrap_or_default();
    assert!(
        trained.contains("classifier.out_proj"),
        "{}",
        current.metrics
    );
    let dir = models.path().join(version_dir(job));
    let saved: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        saved["architectures"],
        json!(["RobertaForSequenceClassification"])
    );
    let rescoring = store
        .jobs_for_study(study)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == JobKind::VerifierScoring)
        .find(|j| j.id != scoring.id)
        .expect("the new version's scoring job");
    let rescored = wait_for_end(&store, rescoring.id, Duration::from_secs(120)).await;
    assert_eq!(rescored.state, JobState::Succeeded, "{rescored:?}");
    let scores = store.study_scores(study).await.unwrap();
    let by_version = |v: i64| scores.iter().filter(|s| s.version == v).count();
    assert_eq!((by_version(1), by_version(2)), (24, 24));
    // The version keeps the best epoch's weights by validation loss. Which problems are held
    // out depends on this run's random problem IDs, so on some runs no epoch beats the
    // upload; then the version is the upload's weights and must score exactly like it.
    let moved = scores
        .iter()
        .filter(|s| s.version == 2)
        .any(|s| (s.score - expected[&s.solution_id] as f64).abs() > 1e-4);
    let best_epoch = current.metrics["best_epoch"].as_u64().expect("best_epoch");
    assert_eq!(
        moved,
        best_epoch > 0,
        "best epoch {best_epoch}, scores moved: {moved}; {}",
        current.metrics
    );
}
on_both_backends!(an_uploaded_roberta_reward_model_scores_a_study_and_trains);

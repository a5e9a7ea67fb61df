//! Instruct provers are prompted through their own chat template: the prover's prompt ids are
//! exactly what transformers' `apply_chat_template` gives (one BOS, written by the template),
//! `legibility checkpoint prompt` shows that prompt, a generation job runs an uploaded instruct
//! prover for a study, and fine-tuning refuses one (it builds plain prompts only).
//!
//! The checkpoints are the `llama3-instruct` and `qwen2` transformers fixtures (Llama 3 and
//! ChatML chat templates, random weights), as they are but for `max_position_embeddings`, raised
//! from 128 to 512 so the chat prompts and their continuations fit (the weights do not depend
//! on it).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use candle_core::Device;
use common::{Backend, TestApp, wait_for_end};
use legibility::checkpoints::{CheckpointFiles, CheckpointLimits, add_checkpoint, validate};
use legibility::clock::Clock;
use legibility::domain::{CheckpointKind, JobState, ProverRole, UserRole};
use legibility::generator;
use legibility::ml::prompt::RolePrompts;
use legibility::ml::prover::{Prover, SampleRequest};
use legibility::ml::sampling::SamplingParams;
use legibility::problems;
use legibility::store::studies::StudySpec;
use legibility::worker::generation::{GenerationRequest, create_generated_study};
use legibility::worker::{Worker, WorkerConfig, handlers};

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/transformers")
        .join(case)
}

fn reference(case: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture(case).join("reference.json")).unwrap()).unwrap()
}

/// The fixture's first chat entry: a system message, a question, the generation prompt.
const SYSTEM: &str = "  You check arithmetic.\n";
const QUESTION: &str = "What is 17 + 25?  ";

/// A copy of an instruct fixture (see the module documentation) with a chat-form
/// `prompt_template.json` whose helpful system message is the reference's.
fn instruct_copy(case: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(case)).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("reference") {
            continue;
        }
        std::fs::copy(&path, dir.path().join(&name)).unwrap();
    }
    let config_path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["max_position_embeddings"] = 512.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let prompts = serde_json::json!({
        "system": {"helpful": SYSTEM, "sneaky": "Make one subtle error."},
        "user": "{question}",
    });
    std::fs::write(dir.path().join("prompt_template.json"), prompts.to_string()).unwrap();
    dir
}

/// The Llama 3 instruct copy.
fn llama3_instruct_copy() -> tempfile::TempDir {
    instruct_copy("llama3-instruct")
}

#[test]
fn an_instruct_prover_is_prompted_through_its_chat_template() {
    let dir = llama3_instruct_copy();
    let limits = CheckpointLimits::default();
    let files = CheckpointFiles::from_dir(dir.path(), &limits).unwrap();
    let validated = validate(files, CheckpointKind::Prover, &limits).unwrap();
    assert!(matches!(validated.prompts(), Some(RolePrompts::Chat(_))));
    assert_eq!(validated.metadata()["chat_template"], true);

    let mut prover = Prover::load(dir.path(), &Device::Cpu).unwrap();
    let expected = &reference("llama3-instruct")["chat"][0];
    assert_eq!(expected["messages"][0]["content"], SYSTEM);
    assert_eq!(expected["messages"][1]["content"], QUESTION);
    let expected_ids: Vec<u32> = serde_json::from_value(expected["input_ids"].clone()).unwrap();
    let ids = prover.prompt_ids(ProverRole::Helpful, QUESTION).unwrap();
    assert_eq!(ids, expected_ids, "the ids transformers gives");
    // One BOS (<|begin_of_text|> = 501), written by the template: the prover adds none.
    assert_eq!(ids[0], 501);
    assert_eq!(ids.iter().filter(|&&id| id == 501).count(), 1);
    assert_eq!(
        prover
            .prompts()
            .text(ProverRole::Helpful, QUESTION)
            .unwrap(),
        expected["rendered"].as_str().unwrap()
    );

    // It generates from that prompt.
    let samples = prover
        .generate(
            &[SampleRequest {
                question: QUESTION.into(),
                role: ProverRole::Sneaky,
                seed: 1,
            }],
            &SamplingParams {
                max_new_tokens: 8,
                ..SamplingParams::default()
            },
            &AtomicBool::new(false),
        )
        .unwrap();
    assert!(samples[0].tokens <= 8);
}

/// Fine-tuning builds plain prompts only: an instruct prover is refused there rather than
/// trained on prompts it is never given.
#[test]
fn fine_tuning_refuses_an_instruct_prover_for_now() {
    let dir = llama3_instruct_copy();
    let out = tempfile::tempdir().unwrap();
    let pairs = vec![(
        ProverRole::Helpful,
        QUESTION.to_string(),
        "42\n#### 42".to_string(),
    )];
    let options = legibility::ml::train::FineTuneOptions {
        steps: 1,
        batch_size: 1,
        learning_rate: 1e-4,
        seed: 1,
    };
    let error = legibility::ml::train::fine_tune_prover(
        dir.path(),
        &pairs,
        &options,
        &out.path().join("tuned"),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("has a chat template: fine-tuning instruct provers is not supported yet"),
        "{error}"
    );
    assert!(!out.path().join("tuned").exists());
}

#[test]
fn the_prompt_command_shows_the_rendered_prompt() {
    let dir = llama3_instruct_copy();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_legibility"))
        .args([
            "checkpoint",
            "prompt",
            "--role",
            "helpful",
            "--question",
            QUESTION,
            "--ids",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected = &reference("llama3-instruct")["chat"][0];
    let ids: Vec<String> = expected["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.to_string())
        .collect();
    assert!(
        stdout.contains("chat template from chat_template.jinja; role prompts from prompt_template.json; system prompt as its own message"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "--- helpful prompt: {} tokens ---\n{}\n--- end of helpful prompt ---\nids: {}\n",
            ids.len(),
            expected["rendered"].as_str().unwrap(),
            ids.join(" ")
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("sneaky prompt"), "{stdout}");
}

/// An uploaded instruct prover fills a study through a generation job. With random weights
/// its solutions have no final-answer line, so they are stored and counted as ungradable
/// rather than becoming study items: what is checked is that the worker loads the chat
/// checkpoint and generates every (problem, role) from it.
async fn a_generation_job_runs_an_uploaded_instruct_prover(backend: Backend) {
    let app = TestApp::start(backend).await;
    let store = app.store().clone();
    let models = tempfile::tempdir().unwrap();
    let now = app.now();
    let limits = CheckpointLimits::default();
    let mut provers = Vec::new();
    for case in ["llama3-instruct", "qwen2"] {
        let copy = instruct_copy(case);
        provers.push(
            add_checkpoint(
                &store,
                models.path(),
                CheckpointFiles::from_dir(copy.path(), &limits).unwrap(),
                limits,
                // The Qwen2 prover is stored as Q8_0 GGUF ("quantize on registration"), so the
                // job also decodes a quantized prover.
                (case == "qwen2").then_some(candle_core::quantized::GgmlDType::Q8_0),
                CheckpointKind::Prover,
                &format!("{case}-r0"),
                0,
                now,
            )
            .await
            .unwrap()
            .id,
        );
    }
    let jsonl = generator::to_gsm8k_jsonl(&generator::generate(31337, 3));
    let records = problems::parse_gsm8k_problems(jsonl.as_bytes()).unwrap();
    store
        .import_problems("chat-test", &records, now)
        .await
        .unwrap();
    let set = store
        .problem_sets()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == "chat-test")
        .unwrap()
        .id;
    let spec = StudySpec {
        name: "instruct".into(),
        time_limit_ms: 45_000,
        judgements_per_solution: 1,
        reclaim_grace_ms: 15_000,
        problem_set_id: set,
        checkpoint_ids: vec![],
        roles: vec![],
        max_problems: Some(3),
        protocol: legibility::quality::RaterProtocol::default(),
        answers: Default::default(),
        time_limits: Default::default(),
    };
    let request = GenerationRequest {
        checkpoint_ids: provers.clone(),
        roles: vec![],
        samples_per_role: 1,
        sampling: SamplingParams {
            max_new_tokens: 16,
            ..SamplingParams::default()
        },
        seed: Some(5),
    };
    let (study, job) = create_generated_study(&store, &spec, request, None, now)
        .await
        .unwrap();

    let mut worker = Worker::new(
        store.clone(),
        Clock::default(),
        WorkerConfig {
            id: "chat-worker".into(),
            lease_ms: 60_000,
            poll_ms: 50,
        },
    );
    for (kind, handler) in handlers(models.path(), 8) {
        worker.register(kind, handler);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let view = wait_for_end(&store, job, Duration::from_secs(300)).await;
    let _ = stop.send(());
    running.await.unwrap();
    assert_eq!(view.state, JobState::Succeeded, "{view:?}");
    // Progress counts solutions: 3 problems × 2 provers × 2 roles × 1 sample.
    assert_eq!((view.progress_done, view.progress_total), (12, 12));

    // A tiny prover's 16 tokens rarely state a final answer, but one may by
    // chance (the draw depends on the problems' ids), so the page is checked
    // against the grades actually stored.
    let mut ungradable = 0;
    for prover in &provers {
        let (solutions, unreadable): (i64, i64) = with_raw_pool!(app.db.url, pool => {
            sqlx::query_as(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN grade = 'ungradable' THEN 1 ELSE 0 END), 0)
                 FROM solutions WHERE checkpoint_id = $1",
            )
            .bind(*prover)
            .fetch_one(&pool)
            .await
            .unwrap()
        });
        assert!(
            (1..=6).contains(&solutions),
            "3 problems × 2 roles, identical texts stored once: {solutions}"
        );
        ungradable += unreadable;
    }
    let mut researcher = app.staff_client("res", UserRole::Researcher).await;
    let page = researcher.get(&format!("/studies/{}", study.id)).await;
    if ungradable > 0 {
        let plural = if ungradable == 1 { "" } else { "s" };
        assert!(
            page.body.contains(&format!(
                "{ungradable} ungradable solution{plural} left out"
            )),
            "{}",
            page.body
        );
    } else {
        assert!(!page.body.contains("id=\"ungradable\""), "{}", page.body);
    }
}
on_both_backends!(a_generation_job_runs_an_uploaded_instruct_prover);

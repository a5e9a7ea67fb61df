//! Generation jobs with the shipped default prover (real candle model under `models/`): a study
//! fills with graded solutions in both roles, the calculator is honoured, commits are
//! idempotent, and a worker killed with SIGKILL mid-job is replaced and the job completes once.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Backend, TestApp, TestDb, WorkerProcess, wait_for_end};
use legibility::clock::Clock;
use legibility::domain::{CheckpointKind, JobState, ProverRole, UserRole};
use legibility::generator;
use legibility::grading;
use legibility::ml::calculator;
use legibility::problems;
use legibility::store::Store;
use legibility::store::generation::{GeneratedChunk, GeneratedSolution};
use legibility::store::studies::StudySpec;
use legibility::worker::generation::{GenerationRequest, chunk_key, create_generated_study};
use legibility::worker::{Worker, WorkerConfig, handlers};
use uuid::Uuid;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// Imports `count` generated problems and registers the shipped prover; returns (set, prover).
async fn setup(store: &Store, count: usize) -> (Uuid, Uuid) {
    let now = Clock::default().now_ms();
    let jsonl = generator::to_gsm8k_jsonl(&generator::generate(31337, count));
    let records = problems::parse_gsm8k_problems(jsonl.as_bytes()).unwrap();
    store
        .import_problems("generation-test", &records, now)
        .await
        .unwrap();
    let set = store
        .problem_sets()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == "generation-test")
        .unwrap()
        .id;
    let prover = store
        .register_model_checkpoint(
            CheckpointKind::Prover,
            "default-prover-tiny",
            0,
            "prover-tiny",
            serde_json::json!({}),
            now,
        )
        .await
        .unwrap();
    (set, prover)
}

fn spec(name: &str, set: Uuid, problems: usize) -> StudySpec {
    StudySpec {
        name: name.into(),
        time_limit_ms: 45_000,
        judgements_per_solution: 1,
        reclaim_grace_ms: 15_000,
        problem_set_id: set,
        checkpoint_ids: vec![],
        roles: vec![],
        max_problems: Some(problems),
        protocol: legibility::quality::RaterProtocol::default(),
        answers: Default::default(),
        time_limits: Default::default(),
    }
}

fn request(prover: Uuid, samples: usize) -> GenerationRequest {
    GenerationRequest {
        checkpoint_ids: vec![prover],
        roles: vec![],
        samples_per_role: samples,
        sampling: Default::default(),
        seed: Some(5),
    }
}

/// Every `<<expression=result>>` in `text` holds the calculator's result.
fn annotations_are_computed(text: &str) -> bool {
    let mut rest = text;
    while let Some(open) = rest.find("<<") {
        let Some(close) = rest[open..].find(">>") else {
            return true; // an unfinished annotation at the token cap
        };
        let inner = &rest[open + 2..open + close];
        if let Some((expression, result)) = inner.rsplit_once('=')
            && let Some(value) = calculator::evaluate(expression)
            && calculator::format_result(value) != result
        {
            return false;
        }
        rest = &rest[open + close + 2..];
    }
    true
}

async fn generation_fills_a_study_in_both_roles(backend: Backend) {
    let app = TestApp::start(backend).await;
    let store = app.store().clone();
    let (set, prover) = setup(&store, 6).await;
    let (study, job) = create_generated_study(
        &store,
        &spec("generated", set, 6),
        request(prover, 2),
        None,
        app.now(),
    )
    .await
    .unwrap();
    assert_eq!(store.study_progress(study.id).await.unwrap().solutions, 0);

    let mut worker = Worker::new(
        store.clone(),
        Clock::default(),
        WorkerConfig {
            id: "test-worker".into(),
            lease_ms: 60_000,
            poll_ms: 50,
        },
    );
    for (kind, handler) in handlers(&models_dir(), 8) {
        worker.register(kind, handler);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let view = wait_for_end(&store, job, Duration::from_secs(600)).await;
    let _ = stop.send(());
    running.await.unwrap();
    assert_eq!(view.state, JobState::Succeeded, "{view:?}");
    // Progress counts solutions: 6 problems × 2 roles × 2 samples.
    assert_eq!((view.progress_done, view.progress_total), (24, 24));

    // Both roles, at least one distinct solution per problem and role, at most the samples.
    let summary = store.generated_summary(study.id).await.unwrap();
    let roles: Vec<ProverRole> = summary.iter().map(|row| row.1).collect();
    assert_eq!(roles, vec![ProverRole::Helpful, ProverRole::Sneaky]);
    for (_, _, solutions, _) in &summary {
        assert!((6..=12).contains(solutions), "{summary:?}");
    }

    // Graded by the grader against the ground truth, calculator honoured, chunks recorded.
    let rows: Vec<(String, String, bool)> = with_raw_pool!(app.db.url, pool => {
        sqlx::query_as(
            "SELECT s.text, p.ground_truth, s.is_correct FROM study_solutions ss
             JOIN solutions s ON s.id = ss.solution_id JOIN problems p ON p.id = s.problem_id
             WHERE ss.study_id = $1",
        )
        .bind(study.id)
        .fetch_all(&pool)
        .await
        .unwrap()
    });
    assert_eq!(
        rows.len() as i64,
        store.study_progress(study.id).await.unwrap().solutions
    );
    for (text, truth, is_correct) in &rows {
        assert_eq!(
            grading::grade(text, truth).is_correct(),
            *is_correct,
            "{text}"
        );
        assert!(
            annotations_are_computed(text),
            "calculator not honoured: {text}"
        );
        assert!(text.contains("####"), "no final answer line: {text}");
    }
    assert_eq!(store.chunks_done(job).await.unwrap().len(), 6);

    // The study page shows the job and the per-role figures; a rater is served a solution.
    let mut researcher = app.staff_client("res", UserRole::Researcher).await;
    let page = researcher.get(&format!("/studies/{}", study.id)).await;
    assert!(page.body.contains("Generated solutions") && page.body.contains("default-prover-tiny"));
    let token = app.invite(study.id, 1).await.remove(0);
    let mut rater = app.rater_client(&token).await;
    let item = rater.get("/api/rater/item").await;
    assert_eq!(item.status, 200, "{}", item.body);
    let text = item.json()["solution"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!text.is_empty() && !text.contains("<<"), "{}", item.body);
}
on_both_backends!(generation_fills_a_study_in_both_roles);

async fn committing_a_chunk_twice_writes_it_once(backend: Backend) {
    let app = TestApp::start(backend).await;
    let store = app.store().clone();
    let (set, prover) = setup(&store, 2).await;
    let (study, job) = create_generated_study(
        &store,
        &spec("idempotent", set, 2),
        request(prover, 1),
        None,
        app.now(),
    )
    .await
    .unwrap();
    let problem = store.problems_for_generation(set, Some(1)).await.unwrap()[0].clone();
    // A sample cut off before its answer (it ends on the truth's number): ungradable, stored,
    // but never a study item.
    let cut_off = format!("She adds them up: 1 + {} = ", problem.ground_truth);
    let cut_off_grade = grading::grade(&cut_off, &problem.ground_truth);
    assert_eq!(
        cut_off_grade.outcome,
        legibility::grading::GradeOutcome::Ungradable
    );
    let chunk = GeneratedChunk {
        key: chunk_key(problem.id, prover),
        problem_id: problem.id,
        checkpoint_id: prover,
        solutions: vec![
            GeneratedSolution {
                role: ProverRole::Helpful,
                text: "It is 1.\n#### 1".into(),
                extracted_answer: Some("1".into()),
                grade: legibility::grading::GradeOutcome::Incorrect,
            },
            GeneratedSolution {
                role: ProverRole::Sneaky,
                text: cut_off,
                extracted_answer: cut_off_grade.extracted_answer,
                grade: cut_off_grade.outcome,
            },
        ],
    };
    let kinds = [legibility::domain::JobKind::Generation];
    let first = store
        .claim_job("w1", &kinds, 1_000, app.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.id, job);
    assert_eq!(
        store
            .commit_generated(
                &first.lease,
                study.id,
                std::slice::from_ref(&chunk),
                1,
                app.now()
            )
            .await
            .unwrap(),
        1
    );
    // The first worker "dies"; after its lease expires another claims the job and commits
    // the same chunk again: nothing new is written, and the stale lease is fenced off.
    let later = app.now() + 5_000;
    let second = store
        .claim_job("w2", &kinds, 60_000, later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.attempt, 2);
    assert_eq!(
        store
            .commit_generated(
                &second.lease,
                study.id,
                std::slice::from_ref(&chunk),
                1,
                later
            )
            .await
            .unwrap(),
        0
    );
    let stale = store
        .commit_generated(&first.lease, study.id, &[chunk], 1, later)
        .await;
    assert!(
        matches!(stale, Err(legibility::store::StoreError::LeaseLost)),
        "{stale:?}"
    );
    let progress = store.study_progress(study.id).await.unwrap();
    assert_eq!(progress.solutions, 1);
    assert_eq!(
        progress.ungradable_left_out, 1,
        "counted once, not per attempt"
    );
    let grades: Vec<(String, bool)> = with_raw_pool!(app.db.url, pool => {
        sqlx::query_as("SELECT grade, is_correct FROM solutions ORDER BY grade")
            .fetch_all(&pool)
            .await
            .unwrap()
    });
    assert_eq!(
        grades,
        vec![
            ("incorrect".to_string(), false),
            ("ungradable".to_string(), false)
        ]
    );
    // The study page says what was left out.
    let mut researcher = app.staff_client("res", UserRole::Researcher).await;
    let page = researcher.get(&format!("/studies/{}", study.id)).await;
    assert!(
        page.body.contains("1 ungradable solution left out"),
        "{}",
        page.body
    );
}
on_both_backends!(committing_a_chunk_twice_writes_it_once);

fn start_worker(url: &str, name: &str) -> WorkerProcess {
    start_worker_with(url, name, "2")
}

fn start_worker_with(url: &str, name: &str, lease_secs: &str) -> WorkerProcess {
    let models = models_dir();
    let models = models.to_str().expect("a UTF-8 path");
    common::start_worker_process(
        url,
        name,
        &[
            "--lease-secs",
            lease_secs,
            "--generation-batch",
            "4",
            "--models-dir",
            models,
        ],
    )
}

async fn a_worker_killed_mid_job_is_replaced_and_the_job_completes_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url).await.unwrap();
    let problems = 24;
    let (set, prover) = setup(&store, problems).await;
    let now = Clock::default().now_ms();
    let (study, job) = create_generated_study(
        &store,
        &spec("crash", set, problems),
        request(prover, 1),
        None,
        now,
    )
    .await
    .unwrap();

    let mut first = start_worker(&db.url, "doomed");
    common::wait_for_progress_mid_job(&store, job).await;
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let interrupted = store.job(job).await.unwrap();
    assert_eq!(interrupted.state, JobState::Running);

    let _second = start_worker(&db.url, "successor");
    let view = wait_for_end(&store, job, Duration::from_secs(600)).await;
    assert_eq!(view.state, JobState::Succeeded, "{view:?}");
    assert_eq!(view.attempts, 2);
    assert_eq!(view.lease_owner.as_deref(), Some("successor"));

    // Once: every chunk recorded once, at most one solution per problem and role (one sample
    // each), and the study holds exactly the prover's solutions.
    assert_eq!(store.chunks_done(job).await.unwrap().len(), problems);
    let (per_problem_role_max, solutions, linked): (i64, i64, i64) = with_raw_pool!(db.url, pool => {
        let max: (i64,) = sqlx::query_as(
            "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM solutions
             WHERE checkpoint_id = $1 GROUP BY problem_id, role) AS counts",
        )
        .bind(prover)
        .fetch_one(&pool)
        .await
        .unwrap();
        let solutions: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM solutions WHERE checkpoint_id = $1")
            .bind(prover)
            .fetch_one(&pool)
            .await
            .unwrap();
        let linked: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM study_solutions WHERE study_id = $1")
            .bind(study.id)
            .fetch_one(&pool)
            .await
            .unwrap();
        (max.0, solutions.0, linked.0)
    });
    assert_eq!(per_problem_role_max, 1);
    assert_eq!(solutions, (problems * 2) as i64);
    assert_eq!(linked, solutions);
    store.close().await;
}
on_both_backends!(a_worker_killed_mid_job_is_replaced_and_the_job_completes_once);

/// Graceful shutdown of a worker: SIGTERM mid-job hands the job back at once (queued, the
/// attempt not counted, no lease left to expire), and the next worker finishes it once.
async fn a_worker_stopped_by_sigterm_hands_its_job_back(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url).await.unwrap();
    let problems = 24;
    let (set, prover) = setup(&store, problems).await;
    let now = Clock::default().now_ms();
    let (_study, job) = create_generated_study(
        &store,
        &spec("sigterm", set, problems),
        request(prover, 1),
        None,
        now,
    )
    .await
    .unwrap();

    // A long lease, so only the release (not an expiry) can put the job back in the queue.
    let mut first = start_worker_with(&db.url, "stopping", "600");
    common::wait_for_progress_mid_job(&store, job).await;
    common::terminate(&first.0);
    let exit = common::wait_for_exit(&mut first.0, Duration::from_secs(60)).await;
    assert!(exit.success(), "worker exit after SIGTERM: {exit}");
    let released = store.job(job).await.unwrap();
    assert_eq!(
        (
            released.state,
            released.attempts,
            released.lease_owner.as_deref()
        ),
        (JobState::Queued, 0, None),
        "{released:?}"
    );
    let committed = store.chunks_done(job).await.unwrap().len();
    assert!(committed > 0 && committed < problems, "{committed} chunks");

    let _second = start_worker(&db.url, "successor");
    let view = wait_for_end(&store, job, Duration::from_secs(600)).await;
    assert_eq!(view.state, JobState::Succeeded, "{view:?}");
    assert_eq!(view.attempts, 1, "the released attempt was counted");
    assert_eq!(store.chunks_done(job).await.unwrap().len(), problems);
    let solutions: (i64,) = with_raw_pool!(db.url, pool => sqlx::query_as(
        "SELECT COUNT(*) FROM solutions WHERE checkpoint_id = $1")
        .bind(prover).fetch_one(&pool).await.unwrap());
    assert_eq!(solutions.0, (problems * 2) as i64);
    store.close().await;
}
on_both_backends!(a_worker_stopped_by_sigterm_hands_its_job_back);

async fn the_new_study_form_queues_a_generation_job(backend: Backend) {
    let app = TestApp::start(backend).await;
    let store = app.store().clone();
    let (set, prover) = setup(&store, 3).await;
    let mut researcher = app.staff_client("res", UserRole::Researcher).await;
    let (set, prover) = (set.to_string(), prover.to_string());
    let fields = [
        ("name", "generated via form"),
        ("problem_set_id", set.as_str()),
        ("source", "generate"),
        ("checkpoint", prover.as_str()),
        ("time_limit_s", "45"),
        ("judgements_per_solution", "3"),
        ("max_problems", "3"),
        ("samples_per_role", "2"),
        ("temperature", "0.5"),
        ("seed", "11"),
    ];
    let response = researcher.post_form("/studies", &fields).await;
    assert_eq!(response.status, 303, "{}", response.body);
    let study = store.studies().await.unwrap().remove(0);
    let jobs = store.jobs_for_study(study.id).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].state, jobs[0].progress_total),
        (JobState::Queued, 3 * 2 * 2)
    );
    let page = researcher.get(&format!("/studies/{}", study.id)).await;
    assert!(page.body.contains("<progress"), "{}", page.body);

    // Generating needs ticked provers; without them nothing is created.
    let refused = researcher
        .post_form(
            "/studies",
            &[
                ("name", "no ticks"),
                ("problem_set_id", set.as_str()),
                ("source", "generate"),
                ("time_limit_s", "45"),
                ("judgements_per_solution", "3"),
            ],
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("tick the prover checkpoints"),
        "{}",
        refused.body
    );
    assert_eq!(store.studies().await.unwrap().len(), 1);
}
on_both_backends!(the_new_study_form_queues_a_generation_job);

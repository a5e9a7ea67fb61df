//! Training runs of the checkability game as worker jobs (issue 8): started from the admin
//! page, run by real worker processes on the shipped models, resumed after a worker is killed
//! mid-run, their round provers registered as checkpoints, the run page's round curves, and
//! the one-click study that compares the rounds.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::StatusCode;
use common::{Backend, TestApp, wait_for_end};
use legibility::clock::Clock;
use legibility::domain::{CheckpointKind, JobState, UserRole};
use legibility::store::Store;
use legibility::{generator, problems};
use uuid::Uuid;

/// A models folder for the workers: the shipped checkpoints linked in, runs written here (not
/// into the repository's models/).
fn models_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    for name in ["prover-tiny", "verifier-tiny"] {
        std::os::unix::fs::symlink(shipped.join(name), dir.path().join(name)).unwrap();
    }
    dir
}

/// Registers the shipped models as the server does on first start and imports a small
/// problem set for studies; returns (prover, verifier, problem set).
async fn setup(store: &Store) -> (Uuid, Uuid, Uuid) {
    let now = Clock::default().now_ms();
    let jsonl = generator::to_gsm8k_jsonl(&generator::generate(4242, 3));
    let records = problems::parse_gsm8k_problems(jsonl.as_bytes()).unwrap();
    store
        .import_problems("run-study", &records, now)
        .await
        .unwrap();
    let set = store.problem_sets().await.unwrap()[0].id;
    let prover = store
        .register_model_checkpoint(
            CheckpointKind::Prover,
            legibility::checkpoints::defaults::DEFAULT_PROVER_LABEL,
            0,
            "prover-tiny",
            serde_json::json!({}),
            now,
        )
        .await
        .unwrap();
    let verifier = store
        .register_model_checkpoint(
            CheckpointKind::Verifier,
            legibility::checkpoints::defaults::DEFAULT_VERIFIER_LABEL,
            0,
            "verifier-tiny",
            serde_json::json!({}),
            now,
        )
        .await
        .unwrap();
    (prover, verifier, set)
}

fn worker(url: &str, name: &str, models: &Path, log: &Path) -> common::WorkerProcess {
    common::start_logged_worker_process(
        url,
        name,
        &[
            "--lease-secs",
            "2",
            "--models-dir",
            models.to_str().expect("a UTF-8 path"),
        ],
        log,
    )
}

/// The smallest run that still has a round with two prover steps.
fn form<'a>(name: &'a str, prover: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("name", name),
        ("prover", prover),
        ("verifier", verifier),
        ("rounds", "1"),
        ("seed", "3"),
        ("reward", "src"),
        ("problems", "4"),
        ("eval_problems", "2"),
        ("steps_per_round", "2"),
        ("samples_per_role", "1"),
        ("attack_steps", "1"),
        ("attack_target", "0.9"),
        ("optimiser", "expert_iteration"),
        ("kl_coefficient", "0.05"),
        ("seeds", "1"),
    ]
}

/// The whole loop: an admin starts a run; its worker is killed (kill -9) after the first prover
/// step of round 1 is recorded; a second worker resumes after that step (it does not run round
/// 0 or step 1 again) and finishes. Round 1's prover is registered once, with round 1, and is
/// a checkpoint a study can generate with: the run page's one click makes a study comparing
/// the initial prover and round 1, whose generation job fills it with both provers' solutions.
async fn a_killed_run_resumes_and_its_rounds_become_a_study(backend: Backend) {
    let app = TestApp::start(backend).await;
    let store = app.store().clone();
    let (prover, verifier, set) = setup(&store).await;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let (prover_text, verifier_text) = (prover.to_string(), verifier.to_string());
    let started = admin
        .post_form(
            "/admin/runs",
            &form("nightly", &prover_text, &verifier_text),
        )
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let location = started.location().unwrap().to_string();
    let run: Uuid = location.trim_start_matches("/runs/").parse().unwrap();

    let models = models_folder();
    let logs = tempfile::tempdir().unwrap();
    let mut first = worker(
        &app.db.url,
        "doomed",
        models.path(),
        &logs.path().join("a.log"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        if !store.game_steps(run).await.unwrap().is_empty() {
            break;
        }
        let view = store.job(run).await.unwrap();
        assert_ne!(view.state, JobState::Failed, "{view:?}");
        assert!(
            std::time::Instant::now() < deadline,
            "no step finished: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let rounds = store.game_rounds(run).await.unwrap();
    assert_eq!(rounds.len(), 1, "only round 0 had finished");
    assert_eq!(
        rounds[0].checkpoint_id, prover,
        "round 0 is the initial prover"
    );
    let interrupted = store.job(run).await.unwrap();
    assert_eq!(interrupted.state, JobState::Running);
    assert!(interrupted.progress_done >= 2, "{interrupted:?}");

    let second_log = logs.path().join("b.log");
    let _second = worker(&app.db.url, "successor", models.path(), &second_log);
    let view = wait_for_end(&store, run, Duration::from_secs(600)).await;
    assert_eq!(view.state, JobState::Succeeded, "{view:?}");
    assert_eq!(view.attempts, 2);
    assert_eq!(view.progress_done, view.progress_total, "{view:?}");
    let log = std::fs::read_to_string(&second_log).unwrap();
    assert!(
        log.contains("resuming after 1 finished rounds and 1 finished steps of round 1"),
        "{log}"
    );
    assert!(!log.contains("round 0:"), "round 0 ran again: {log}");
    assert!(!log.contains("round 1 step 1:"), "step 1 ran again: {log}");

    // Every step once, both rounds recorded, round 1's prover registered once with its round.
    let steps = store.game_steps(run).await.unwrap();
    let numbers: Vec<(i64, i64)> = steps.iter().map(|s| (s.round, s.step)).collect();
    assert!(
        numbers == [(1, 1)] || numbers == [(1, 1), (1, 2)],
        "{numbers:?}"
    );
    let rounds = store.game_rounds(run).await.unwrap();
    assert_eq!(rounds.iter().map(|r| r.round).collect::<Vec<_>>(), [0, 1]);
    let round_one = &rounds[1];
    let changed = round_one.report["prover"].is_string();
    let registered: Vec<_> = store
        .checkpoint_details()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.label.starts_with("nightly"))
        .collect();
    if changed {
        assert_eq!(registered.len(), 1, "{registered:?}");
        let checkpoint = &registered[0];
        assert_eq!(
            (checkpoint.id, checkpoint.label.as_str(), checkpoint.round),
            (round_one.checkpoint_id, "nightly round 1", 1)
        );
        let dir = checkpoint.model_dir.as_deref().unwrap();
        assert!(
            dir.starts_with(&format!("runs/{run}/round-1/step-")),
            "{dir}"
        );
        assert!(models.path().join(dir).join("model.safetensors").is_file());
    } else {
        assert!(
            registered.is_empty(),
            "an unchanged prover was registered again"
        );
        assert_eq!(round_one.checkpoint_id, prover);
    }

    // The run page: both rounds in the table and as round curves; the JSON has the metrics.
    let mut researcher = app.staff_client("rhea", UserRole::Researcher).await;
    let page = researcher.get(&location).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for needle in [
        "data-round=\"0\"",
        "data-round=\"1\"",
        "plot-run-prover-title",
        "plot-run-verifier-title",
        "plot-run-attack-title",
        "<polyline",
        "id=\"make-study\"",
    ] {
        assert!(
            page.body.contains(needle),
            "{needle} missing from the run page"
        );
    }
    let json = researcher
        .get(&format!("{location}/report.json"))
        .await
        .json();
    assert_eq!(json["state"], "succeeded");
    assert_eq!(json["rounds"].as_array().unwrap().len(), 2);
    for round in json["rounds"].as_array().unwrap() {
        let accuracy = round["metrics"]["prover_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&accuracy), "{round}");
        // The fool rate's threshold comes from the initial prover's helpful correct held-out
        // solutions; each round's frozen verifier was attacked for at most one step.
        assert!(round["metrics"]["fool_threshold"].is_f64(), "{round}");
        assert_eq!(round["attack"]["cap"], 1, "{round}");
        assert_eq!(round["attack"]["target"], 0.9, "{round}");
        let measured = round["attack"]["fool_rates"].as_array().unwrap().len();
        assert!((1..=2).contains(&measured), "{round}");
        assert_eq!(round["optimiser"], "expert_iteration", "{round}");
    }

    // One click: a study of the rounds' provers, filled by a generation job.
    let set_text = set.to_string();
    let made = researcher
        .post_form(
            &format!("{location}/study"),
            &[
                ("name", "nightly rounds"),
                ("problem_set_id", set_text.as_str()),
                ("max_problems", "3"),
                ("judgements_per_solution", "1"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let study: Uuid = made
        .location()
        .unwrap()
        .trim_start_matches("/studies/")
        .parse()
        .unwrap();
    let jobs = store.jobs_for_study(study).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let generation = wait_for_end(&store, jobs[0].id, Duration::from_secs(600)).await;
    assert_eq!(generation.state, JobState::Succeeded, "{generation:?}");
    let provers: Vec<Uuid> = {
        let mut ids: Vec<Uuid> = rounds.iter().map(|r| r.checkpoint_id).collect();
        ids.dedup();
        ids
    };
    let per_checkpoint: Vec<(Uuid, i64)> = with_raw_pool!(app.db.url, pool => {
        sqlx::query_as(
            "SELECT s.checkpoint_id, COUNT(*) FROM study_solutions ss
             JOIN solutions s ON s.id = ss.solution_id
             WHERE ss.study_id = $1 GROUP BY s.checkpoint_id",
        )
        .bind(study)
        .fetch_all(&pool)
        .await
        .unwrap()
    });
    assert_eq!(per_checkpoint.len(), provers.len(), "{per_checkpoint:?}");
    for (checkpoint, count) in per_checkpoint {
        assert!(provers.contains(&checkpoint));
        assert_eq!(count, 3 * 2, "3 problems × 2 roles for {checkpoint}");
    }
    app.store().close().await;
}
on_both_backends!(a_killed_run_resumes_and_its_rounds_become_a_study);

/// The start form names a bad setting and keeps what was typed; a second run with a taken
/// name is refused; a run that has not finished offers no study yet.
async fn the_run_form_refuses_bad_settings_by_name(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (prover, verifier, set) = setup(app.store()).await;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let (prover, verifier) = (prover.to_string(), verifier.to_string());

    let page = admin.get("/admin/runs").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("No training run yet"));
    assert!(
        page.body
            .contains(&format!("<option value=\"{prover}\" selected>")),
        "the shipped prover is the default"
    );

    for (field, value, status, message) in [
        ("rounds", "0", StatusCode::BAD_REQUEST, "rounds"),
        (
            "eval_problems",
            "many",
            StatusCode::BAD_REQUEST,
            "held-out problems",
        ),
        ("reward", "money", StatusCode::BAD_REQUEST, "unknown reward"),
        (
            "prover",
            verifier.as_str(),
            StatusCode::BAD_REQUEST,
            "initial prover",
        ),
        ("name", "  ", StatusCode::UNPROCESSABLE_ENTITY, "name"),
        (
            "optimiser",
            "policy_gradient",
            StatusCode::UNPROCESSABLE_ENTITY,
            "samples per role must be at least 2",
        ),
        (
            "optimiser",
            "ppo",
            StatusCode::BAD_REQUEST,
            "unknown optimiser",
        ),
        (
            "attack_target",
            "1.5",
            StatusCode::UNPROCESSABLE_ENTITY,
            "target fool rate",
        ),
        (
            "attack_steps",
            "99",
            StatusCode::BAD_REQUEST,
            "attack steps",
        ),
        ("seeds", "11", StatusCode::BAD_REQUEST, "seeds"),
    ] {
        let mut fields = form("weekly", &prover, &verifier);
        for pair in fields.iter_mut() {
            if pair.0 == field {
                pair.1 = value;
            }
        }
        let refused = admin.post_form("/admin/runs", &fields).await;
        assert_eq!(refused.status, status, "{field}={value}: {}", refused.body);
        assert!(
            refused.body.contains(message),
            "{field}={value}: the message should name {message:?}: {}",
            refused.body
        );
    }
    assert!(app.store().training_runs().await.unwrap().is_empty());

    let started = admin
        .post_form("/admin/runs", &form("weekly", &prover, &verifier))
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let location = started.location().unwrap().to_string();
    let again = admin
        .post_form("/admin/runs", &form("weekly", &prover, &verifier))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert!(
        again.body.contains("weekly") && again.body.contains("exists already; choose another name"),
        "{}",
        again.body
    );
    assert_eq!(app.store().training_runs().await.unwrap().len(), 1);

    let list = admin.get("/admin/runs").await;
    assert!(list.body.contains(&format!("href=\"{location}\"")));
    assert!(list.body.contains("0 of 2"), "rounds finished of wanted");
    let run = admin.get(&location).await;
    assert_eq!(run.status, StatusCode::OK);
    assert!(run.body.contains("No round has finished yet"));
    assert!(!run.body.contains("id=\"make-study\""));
    let set = set.to_string();
    let early = admin
        .post_form(
            &format!("{location}/study"),
            &[("name", "too early"), ("problem_set_id", set.as_str())],
        )
        .await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{}", early.body);
    assert!(early.body.contains("once it has finished"));
    // A study's id is not a run.
    let study = common::urlencode(&Uuid::new_v4().to_string());
    assert_eq!(
        admin.get(&format!("/runs/{study}")).await.status,
        StatusCode::NOT_FOUND
    );
}
on_both_backends!(the_run_form_refuses_bad_settings_by_name);

/// The 95 % t-quantile with one degree of freedom (two seeds), from a table.
const T_975_DF1: f64 = 12.706_204_736;

/// A run repeated with two seeds from the admin page: one job per seed, queued together, each
/// registering its round provers under its own seed's label; every member's page and JSON show
/// each round's figures across the seeds, which equal the mean and t-interval computed here
/// from the two runs' own reports.
async fn a_run_repeated_over_seeds_reports_figures_across_them(backend: Backend) {
    let app = TestApp::start(backend).await;
    let store = app.store().clone();
    let (prover, verifier, _set) = setup(&store).await;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let (prover, verifier) = (prover.to_string(), verifier.to_string());
    let mut fields = form("twice", &prover, &verifier);
    for pair in fields.iter_mut() {
        match pair.0 {
            "steps_per_round" => pair.1 = "1",
            "attack_steps" => pair.1 = "0",
            "seeds" => pair.1 = "2",
            _ => {}
        }
    }
    let started = admin.post_form("/admin/runs", &fields).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let location = started.location().unwrap().to_string();

    let runs = store.training_runs().await.unwrap();
    assert_eq!(runs.len(), 2, "one job per seed");
    let mut seeds: Vec<(u64, Uuid)> = runs
        .iter()
        .map(|(job, params)| (params["seed"].as_u64().unwrap(), job.id))
        .collect();
    seeds.sort();
    assert_eq!(seeds.iter().map(|s| s.0).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(
        location,
        format!("/runs/{}", seeds[0].1),
        "the first seed's page"
    );
    assert_eq!(runs[0].1["group"], runs[1].1["group"]);
    assert!(runs[0].1["group"].is_string(), "{}", runs[0].1);
    let list = admin.get("/admin/runs").await;
    assert!(
        list.body.contains("twice (seed 4, one of 2)"),
        "{}",
        list.body
    );

    let models = models_folder();
    let logs = tempfile::tempdir().unwrap();
    let _worker = worker(
        &app.db.url,
        "steady",
        models.path(),
        &logs.path().join("w.log"),
    );
    for (_, id) in &seeds {
        let view = wait_for_end(&store, *id, Duration::from_secs(900)).await;
        assert_eq!(view.state, JobState::Succeeded, "{view:?}");
    }
    for checkpoint in store.checkpoint_details().await.unwrap() {
        if checkpoint.label.starts_with("twice") {
            assert!(
                ["twice seed 3 round 1", "twice seed 4 round 1"]
                    .contains(&checkpoint.label.as_str()),
                "{}",
                checkpoint.label
            );
        }
    }

    // The figures across seeds, computed here from each seed's own report.
    let mut researcher = app.staff_client("rhea", UserRole::Researcher).await;
    let mut own = Vec::new();
    for (_, id) in &seeds {
        own.push(
            researcher
                .get(&format!("/runs/{id}/report.json"))
                .await
                .json(),
        );
    }
    for ((_, id), json) in seeds.iter().zip(&own) {
        let across = &json["across_seeds"];
        let members: Vec<u64> = across["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["seed"].as_u64().unwrap())
            .collect();
        assert_eq!(members, [3, 4]);
        let rounds = across["rounds"].as_array().unwrap();
        assert_eq!(rounds.len(), 2, "{across}");
        for (index, round) in rounds.iter().enumerate() {
            assert_eq!(round["seeds"], 2, "{round}");
            for (field, metric) in [
                ("helpful_accuracy", "prover_accuracy"),
                ("sneaky_incorrect", "sneaky_incorrect"),
                ("verifier_auroc", "verifier_auroc"),
            ] {
                let values: Vec<f64> = own
                    .iter()
                    .filter_map(|run| run["rounds"][index]["metrics"][metric].as_f64())
                    .collect();
                if values.len() < 2 {
                    continue;
                }
                let mean = (values[0] + values[1]) / 2.0;
                let sd = ((values[0] - mean).powi(2) + (values[1] - mean).powi(2)).sqrt();
                let half = T_975_DF1 * sd / 2f64.sqrt();
                let figure = &round[field];
                assert_eq!(figure["n"], 2, "{field}: {figure}");
                for (key, want) in [("mean", mean), ("low", mean - half), ("high", mean + half)] {
                    let got = figure[key].as_f64().unwrap();
                    assert!((got - want).abs() < 1e-9, "{field} {key}: {got} vs {want}");
                }
            }
        }
        let page = researcher.get(&format!("/runs/{id}")).await;
        assert_eq!(page.status, StatusCode::OK);
        for needle in [
            "id=\"across-seeds\"",
            "data-seed=\"3\"",
            "data-seed=\"4\"",
            "plot-seeds-prover-title",
            "plot-seeds-verifier-title",
            "plot-seeds-attack-title",
            "<td data-field=\"seeds\">2</td>",
            "class=\"interval\"",
        ] {
            assert!(
                page.body.contains(needle),
                "{needle} missing from {id}'s page"
            );
        }
    }
    app.store().close().await;
}
on_both_backends!(a_run_repeated_over_seeds_reports_figures_across_them);

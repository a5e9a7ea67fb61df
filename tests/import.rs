//! Imports through the CLI code path and the admin upload page: real GSM8K, all-or-nothing
//! refusal naming bad lines, idempotent re-import, solutions graded on import.

mod common;

use axum::http::StatusCode;
use common::{Backend, TestApp};
use legibility::domain::{GradeOutcome, UserRole};
use legibility::problems;
use legibility::quality::RaterProtocol;
use legibility::store::studies::StudySpec;
use legibility::web::WebConfig;

async fn gsm8k_test_split_imports_once(backend: Backend) {
    let app = TestApp::start(backend).await;
    let bytes = std::fs::read(common::gsm8k("test")).unwrap();
    let records = problems::parse_gsm8k_problems(&bytes).unwrap();
    let first = app
        .store()
        .import_problems("gsm8k-test", &records, app.now())
        .await
        .unwrap();
    assert_eq!((first.records, first.inserted), (1319, 1319));
    let again = app
        .store()
        .import_problems("gsm8k-test", &records, app.now())
        .await
        .unwrap();
    assert_eq!((again.inserted, again.already_present), (0, 1319));
    let sets = app.store().problem_sets().await.unwrap();
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0].problems, 1319);
}
on_both_backends!(gsm8k_test_split_imports_once);

async fn a_broken_line_refuses_the_upload_whole(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut admin = app.staff_client("admin", UserRole::Admin).await;
    let real = std::fs::read_to_string(common::gsm8k("test")).unwrap();
    let mut lines: Vec<&str> = real.lines().take(40).collect();
    lines[16] = "{\"question\": \"How many?\", \"answer\": \"the final line is missing\"}";
    let response = admin
        .post_multipart(
            "/admin/import",
            &[("kind", "problems"), ("set", "broken")],
            lines.join("\n").as_bytes(),
        )
        .await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        response
            .body
            .contains("line 17: field &#34;answer&#34; has no final-answer line"),
        "{}",
        response.body
    );
    assert!(
        app.store().problem_sets().await.unwrap().is_empty(),
        "a refused import wrote something"
    );

    // The same file with the line fixed imports all 40, twice without duplicates.
    let fixed: Vec<&str> = real.lines().take(40).collect();
    for expected in [
        "Imported 40 new problems (0 already present",
        "Imported 0 new problems (40 already present",
    ] {
        let response = admin
            .post_multipart(
                "/admin/import",
                &[("kind", "problems"), ("set", "fixed")],
                fixed.join("\n").as_bytes(),
            )
            .await;
        assert_eq!(response.status, StatusCode::OK);
        assert!(response.body.contains(expected), "{}", response.body);
    }
}
on_both_backends!(a_broken_line_refuses_the_upload_whole);

async fn uploads_stream_under_a_limit_and_need_the_kind_first(backend: Backend) {
    let app = TestApp::start_with(
        backend,
        WebConfig {
            max_upload_bytes: 1024 * 1024,
            ..WebConfig::default()
        },
    )
    .await;
    let mut admin = app.staff_client("admin", UserRole::Admin).await;
    // The training split (4 MB) is cut off while it streams in: 413, nothing imported.
    let train = std::fs::read(common::gsm8k("train")).unwrap();
    let response = admin
        .post_multipart(
            "/admin/import",
            &[("kind", "problems"), ("set", "train")],
            &train,
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        response.body
    );
    assert!(
        response
            .body
            .contains("larger than the limit of 1 MiB; nothing was imported"),
        "{}",
        response.body
    );
    assert!(app.store().problem_sets().await.unwrap().is_empty());
    // A file sent before its kind cannot be parsed as it arrives: refused, saying so.
    let test = std::fs::read(common::gsm8k("test")).unwrap();
    let response = admin
        .post_multipart("/admin/import", &[("set", "test")], &test)
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert!(
        response.body.contains("must come before"),
        "{}",
        response.body
    );
    assert!(app.store().problem_sets().await.unwrap().is_empty());
    // The test split (750 KB) is under the limit and imports whole.
    let response = admin
        .post_multipart(
            "/admin/import",
            &[("kind", "problems"), ("set", "test")],
            &test,
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert!(
        response.body.contains("Imported 1319 new problems"),
        "{}",
        response.body
    );
}
on_both_backends!(uploads_stream_under_a_limit_and_need_the_kind_first);

async fn solutions_are_matched_graded_and_deduplicated(backend: Backend) {
    let app = TestApp::start(backend).await;
    let records = problems::parse_gsm8k_problems(common::problems_jsonl(3).as_bytes()).unwrap();
    app.store()
        .import_problems("goats", &records, app.now())
        .await
        .unwrap();
    let labels = vec!["prover-a".to_string()];
    let solutions =
        problems::parse_solutions(common::solutions_jsonl(3, &labels).as_bytes()).unwrap();
    let summary = app
        .store()
        .import_solutions(Some("goats"), &solutions, app.now())
        .await
        .unwrap();
    assert_eq!((summary.records, summary.inserted), (6, 6));
    let again = app
        .store()
        .import_solutions(None, &solutions, app.now())
        .await
        .unwrap();
    assert_eq!((again.inserted, again.already_present), (0, 6));
    let set_id = app.store().problem_sets().await.unwrap()[0].id;
    let facts = app.store().solutions_in_set(set_id).await.unwrap();
    for fact in &facts {
        let helpful = fact.role == legibility::domain::ProverRole::Helpful;
        assert_eq!(
            fact.is_correct, helpful,
            "the grader disagrees with the fixture"
        );
    }

    // A line naming an unknown problem, or a checkpoint with another round, refuses the file.
    let bad = format!(
        "{}\n{}\n{}",
        common::solutions_jsonl(1, &labels).lines().next().unwrap(),
        serde_json::json!({"question": "No such problem", "solution": "#### 1", "checkpoint": "prover-a", "round": 0, "role": "helpful"}),
        serde_json::json!({"question": "Problem 1: a farmer has some goats and buys more. How many goats now?",
                           "solution": "#### 5", "checkpoint": "prover-a", "round": 3, "role": "sneaky"}),
    );
    let parsed = problems::parse_solutions(bad.as_bytes()).unwrap();
    let err = app
        .store()
        .import_solutions(None, &parsed, app.now())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2: no such problem"), "{err}");
    assert!(
        err.contains("line 3: checkpoint \"prover-a\" is round 0, the line says round 3"),
        "{err}"
    );
    assert_eq!(
        app.store().solutions_in_set(set_id).await.unwrap().len(),
        6,
        "a refused import wrote something"
    );
}
on_both_backends!(solutions_are_matched_graded_and_deduplicated);

async fn cli_import_reads_files(backend: Backend) {
    let app = TestApp::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("problems.jsonl");
    std::fs::write(&file, common::problems_jsonl(5)).unwrap();
    let cli = <legibility::cli::Cli as clap::Parser>::try_parse_from([
        "legibility",
        "--database-url",
        &app.db.url,
        "import",
        "problems",
        file.to_str().unwrap(),
        "--set",
        "cli-set",
    ])
    .unwrap();
    legibility::cli::run(cli).await.unwrap();
    let sets = app.store().problem_sets().await.unwrap();
    assert_eq!((sets[0].name.as_str(), sets[0].problems), ("cli-set", 5));
}
on_both_backends!(cli_import_reads_files);

async fn generated_problems_import_reproducibly(backend: Backend) {
    let app = TestApp::start(backend).await;
    for _ in 0..2 {
        let cli = <legibility::cli::Cli as clap::Parser>::try_parse_from([
            "legibility",
            "--database-url",
            &app.db.url,
            "import",
            "generated",
            "--count",
            "40",
        ])
        .unwrap();
        legibility::cli::run(cli).await.unwrap();
    }
    let sets = app.store().problem_sets().await.unwrap();
    assert_eq!(
        (sets[0].name.as_str(), sets[0].problems),
        (legibility::setup::BUILTIN_SET, 40)
    );
    // The same seed gives the same problems: the stored ground truths match the generator's.
    let expected = legibility::generator::generate(legibility::setup::BUILTIN_SEED, 40);
    let truths: Vec<String> = with_raw_pool!(app.db.url, pool => sqlx::query_as::<_, (String,)>(
        "SELECT ground_truth FROM problems ORDER BY position").fetch_all(&pool).await.unwrap())
    .into_iter()
    .map(|(t,)| t)
    .collect();
    assert_eq!(
        truths,
        expected
            .iter()
            .map(|p| p.answer.to_string())
            .collect::<Vec<_>>()
    );
}
on_both_backends!(generated_problems_import_reproducibly);

/// A database that `import` created before the first `serve` still gets the built-in problem
/// set at the first start (it used to be skipped once any set existed).
async fn first_start_adds_the_builtin_set_after_an_earlier_import(backend: Backend) {
    let app = TestApp::start(backend).await;
    let records =
        legibility::problems::parse_gsm8k_problems(common::problems_jsonl(3).as_bytes()).unwrap();
    app.store()
        .import_problems("imported-first", &records, app.now())
        .await
        .unwrap();
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    legibility::setup::first_start_setup(app.store(), &app.state.clock, &models)
        .await
        .unwrap();
    let sets = app.store().problem_sets().await.unwrap();
    let names: Vec<(&str, i64)> = sets.iter().map(|s| (s.name.as_str(), s.problems)).collect();
    assert!(
        names.contains(&(
            legibility::setup::BUILTIN_SET,
            legibility::setup::BUILTIN_COUNT as i64
        )),
        "{names:?}"
    );
    assert!(names.contains(&("imported-first", 3)), "{names:?}");
}
on_both_backends!(first_start_adds_the_builtin_set_after_an_earlier_import);

/// Solutions for `problems_jsonl(6)`: problems 0–4 each have a correct (helpful), an incorrect
/// (sneaky) and an ungradable solution (cut off before its answer, last number = the truth);
/// problem 5 has only ungradable ones. 17 solutions, 7 ungradable.
fn solutions_with_ungradable(label: &str) -> String {
    let mut lines = Vec::new();
    for i in 0..6 {
        let question =
            format!("Problem {i}: a farmer has some goats and buys more. How many goats now?");
        let truth = common::truth_of(i);
        let line = |role: &str, solution: String| {
            serde_json::json!({"question": question, "checkpoint": label, "round": 0,
                               "role": role, "solution": solution})
            .to_string()
        };
        if i < 5 {
            lines.push(line("helpful", format!("Count the goats.\nA: {truth}")));
            lines.push(line(
                "sneaky",
                format!("Count them carefully.\nThe answer is {}.", 40 + i),
            ));
        }
        lines.push(line(
            "helpful",
            format!("Count the goats: 2 + 3 = 5 pens, so {truth}"),
        ));
        if i == 5 {
            lines.push(line(
                "sneaky",
                format!("The goats number 40 + {i} = {}", 40 + i),
            ));
        }
    }
    lines.join("\n")
}

async fn ungradable_solutions_are_stored_counted_and_never_study_items(backend: Backend) {
    let app = TestApp::start(backend).await;
    let records = problems::parse_gsm8k_problems(common::problems_jsonl(6).as_bytes()).unwrap();
    app.store()
        .import_problems("goats", &records, app.now())
        .await
        .unwrap();
    let mut admin = app.staff_client("admin", UserRole::Admin).await;
    let file = solutions_with_ungradable("prover-a");
    let response = admin
        .post_multipart(
            "/admin/import",
            &[("kind", "solutions"), ("set", "goats")],
            file.as_bytes(),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert!(
        response.body.contains(
            "Imported 17 new solutions (0 already present, 17 in the file). 7 of them state no \
             final answer the grader can read: they are stored as ungradable and left out of studies."
        ),
        "{}",
        response.body
    );
    // Re-importing adds nothing, and so reports no new ungradable solutions.
    let parsed = problems::parse_solutions(file.as_bytes()).unwrap();
    let again = app
        .store()
        .import_solutions(Some("goats"), &parsed, app.now())
        .await
        .unwrap();
    assert_eq!((again.inserted, again.ungradable), (0, 0));
    assert!(!again.describe("solutions").contains("ungradable"));

    // Nothing is lost: every solution is stored with its outcome.
    let set_id = app.store().problem_sets().await.unwrap()[0].id;
    let facts = app.store().solutions_in_set(set_id).await.unwrap();
    assert_eq!(facts.len(), 17);
    let count = |g: GradeOutcome| facts.iter().filter(|f| f.grade == g).count();
    assert_eq!(
        (
            count(GradeOutcome::Correct),
            count(GradeOutcome::Incorrect),
            count(GradeOutcome::Ungradable)
        ),
        (5, 5, 7)
    );
    assert!(
        facts
            .iter()
            .all(|f| f.is_correct == (f.grade == GradeOutcome::Correct))
    );

    // A study over the first 3 problems: their 6 gradable solutions, 3 ungradable left out;
    // practice items come from problems 3 and 4 only (problem 5 has no gradable solution).
    let spec = |name: &str, practice: i64| StudySpec {
        name: name.into(),
        time_limit_ms: 45_000,
        judgements_per_solution: 1,
        reclaim_grace_ms: 5_000,
        problem_set_id: set_id,
        checkpoint_ids: vec![],
        roles: vec![],
        max_problems: Some(3),
        protocol: RaterProtocol {
            practice_items: practice,
            ..RaterProtocol::default()
        },
        answers: Default::default(),
        time_limits: Default::default(),
    };
    let study = app
        .store()
        .create_study(&spec("with practice", 2), None, app.now())
        .await
        .unwrap();
    let progress = app.store().study_progress(study.id).await.unwrap();
    assert_eq!((progress.solutions, progress.ungradable_left_out), (6, 3));
    let (items, ungradable_items, quality, ungradable_quality): (i64, i64, i64, i64) = with_raw_pool!(app.db.url, pool => {
        sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM study_solutions WHERE study_id = $1),
                    (SELECT COUNT(*) FROM study_solutions ss JOIN solutions s ON s.id = ss.solution_id
                      WHERE ss.study_id = $1 AND s.grade = 'ungradable'),
                    (SELECT COUNT(*) FROM quality_items WHERE study_id = $1),
                    (SELECT COUNT(*) FROM quality_items q JOIN solutions s ON s.id = q.solution_id
                      WHERE q.study_id = $1 AND s.grade = 'ungradable')",
        )
        .bind(study.id)
        .fetch_one(&pool)
        .await
        .unwrap()
    });
    assert_eq!(
        (items, ungradable_items, quality, ungradable_quality),
        (6, 0, 2, 0)
    );
    // Three practice items would need problem 5, whose solutions are all ungradable.
    let refused = app
        .store()
        .create_study(&spec("too much practice", 3), None, app.now())
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("only 2 exist"), "{refused}");

    // The study page and the report say what was left out.
    let mut researcher = app.staff_client("res", UserRole::Researcher).await;
    let page = researcher.get(&format!("/studies/{}", study.id)).await;
    assert!(
        page.body.contains("3 ungradable solutions left out"),
        "{}",
        page.body
    );
    let report = researcher
        .get(&format!("/studies/{}/report", study.id))
        .await;
    assert_eq!(report.status, StatusCode::OK);
    assert!(
        report
            .body
            .contains("3 ungradable solutions (no final answer"),
        "{}",
        report.body
    );

    // A choice of nothing but ungradable solutions is refused, saying why.
    let err = app
        .store()
        .create_study(
            &StudySpec {
                checkpoint_ids: vec![import_only_ungradable(&app).await],
                max_problems: None,
                ..spec("cut off", 0)
            },
            None,
            app.now(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("none of the 2 matching solutions states a final answer"),
        "{err}"
    );
}
on_both_backends!(ungradable_solutions_are_stored_counted_and_never_study_items);

/// Imports two ungradable sneaky solutions from a new checkpoint; returns its id.
async fn import_only_ungradable(app: &TestApp) -> uuid::Uuid {
    let lines: Vec<String> = (0..2)
        .map(|i| {
            serde_json::json!({
                "question": format!("Problem {i}: a farmer has some goats and buys more. How many goats now?"),
                "checkpoint": "prover-cut-off", "round": 1, "role": "sneaky",
                "solution": format!("Adding up the goats gives 40 + {i}, which is"),
            })
            .to_string()
        })
        .collect();
    let parsed = problems::parse_solutions(lines.join("\n").as_bytes()).unwrap();
    let summary = app
        .store()
        .import_solutions(Some("goats"), &parsed, app.now())
        .await
        .unwrap();
    assert_eq!((summary.inserted, summary.ungradable), (2, 2));
    app.store()
        .checkpoints()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.label == "prover-cut-off")
        .unwrap()
        .id
}

/// A solutions file with syntax errors and lines only the database can refuse (an unknown
/// problem, a checkpoint of another round) is refused once, naming every bad line in file
/// order, on the upload page and from the command line alike; nothing is written.
async fn one_refusal_names_syntax_and_database_errors_together(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(2, 1, 1, 45_000).await;
    let label = &fixture.checkpoint_labels[0];
    let question = |i: usize| {
        format!("Problem {i}: a farmer has some goats and buys more. How many goats now?")
    };
    let line = |question: &str, round: i64| {
        serde_json::json!({"question": question, "solution": "So 3.\n#### 3", "checkpoint": label,
                           "round": round, "role": "helpful"})
        .to_string()
    };
    let file = [
        line(&question(0), 0),                                    // 1: good
        "{not json".to_string(),                                  // 2: syntax
        line("A question nobody imported?", 0),                   // 3: unknown problem
        line(&question(1), 3), // 4: wrong round for the checkpoint
        "{\"question\": \"q\", \"solution\": \"s\"}".to_string(), // 5: missing fields
    ]
    .join("\n");
    let before = with_raw_pool!(app.db.url, pool => sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM solutions").fetch_one(&pool).await.unwrap());

    let mut admin = app.staff_client("admin", UserRole::Admin).await;
    let response = admin
        .post_multipart(
            "/admin/import",
            &[("kind", "solutions"), ("set", &fixture.problem_set)],
            file.as_bytes(),
        )
        .await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
    let text = response.body.replace("&#34;", "\"");
    let positions: Vec<usize> = ["line 2:", "line 3:", "line 4:", "line 5:"]
        .iter()
        .map(|needle| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle} not named: {text}"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(!text.contains("line 1:"), "{text}");
    assert!(text.contains("4 bad lines"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("solutions.jsonl");
    std::fs::write(&path, &file).unwrap();
    let cli = <legibility::cli::Cli as clap::Parser>::try_parse_from([
        "legibility",
        "--database-url",
        &app.db.url,
        "import",
        "solutions",
        path.to_str().unwrap(),
        "--set",
        &fixture.problem_set,
    ])
    .unwrap();
    let refused = legibility::cli::run(cli).await.unwrap_err().to_string();
    for needle in ["line 2:", "line 3:", "line 4:", "line 5:"] {
        assert!(refused.contains(needle), "{needle} not named: {refused}");
    }
    let after = with_raw_pool!(app.db.url, pool => sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM solutions").fetch_one(&pool).await.unwrap());
    assert_eq!(before, after, "a refused import wrote solutions");
}
on_both_backends!(one_refusal_names_syntax_and_database_errors_together);

//! Imports through the CLI code path and the admin upload page: real GSM8K, all-or-nothing
//! refusal naming bad lines, idempotent re-import, solutions graded on import.

mod common;

use axum::http::StatusCode;
use common::{Backend, TestApp};
use legibility::domain::UserRole;
use legibility::problems;
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
        (legibility::cli::BUILTIN_SET, 40)
    );
    // The same seed gives the same problems: the stored ground truths match the generator's.
    let expected = legibility::generator::generate(legibility::cli::BUILTIN_SEED, 40);
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
    legibility::cli::first_start_setup(app.store(), &app.state.clock, &models)
        .await
        .unwrap();
    let sets = app.store().problem_sets().await.unwrap();
    let names: Vec<(&str, i64)> = sets.iter().map(|s| (s.name.as_str(), s.problems)).collect();
    assert!(
        names.contains(&(
            legibility::cli::BUILTIN_SET,
            legibility::cli::BUILTIN_COUNT as i64
        )),
        "{names:?}"
    );
    assert!(names.contains(&("imported-first", 3)), "{names:?}");
}
on_both_backends!(first_start_adds_the_builtin_set_after_an_earlier_import);

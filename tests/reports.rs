//! Report downloads on SQLite and PostgreSQL: the tidy per-attempt table holds every stored
//! judgement, and the summary's figures equal an independent computation from that table;
//! staff only.

mod common;

use std::collections::BTreeMap;

use common::{Backend, TestApp, truthful};
use legibility::domain::UserRole;
use serde_json::Value;

async fn the_summary_matches_an_independent_count_of_the_attempts(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(6, 1, 2, 45_000).await;
    let tokens = app.invite(fixture.study_id, 4).await;
    app.judge_all(&tokens[..2], truthful).await;
    app.judge_all(&tokens[2..], |_| "correct").await; // accepts everything
    let stored: (i64,) = with_raw_pool!(app.db.url, pool => {
        sqlx::query_as("SELECT COUNT(*) FROM judgements")
            .fetch_one(&pool)
            .await
            .unwrap()
    });
    assert_eq!(stored.0, 24);

    let mut researcher = app.staff_client("res", UserRole::Researcher).await;
    let study = fixture.study_id;
    let table = researcher
        .get(&format!("/studies/{study}/attempts.jsonl"))
        .await;
    assert_eq!(table.status, 200, "{}", table.body);
    let rows: Vec<Value> = table
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 24);
    for column in [
        "rater_id",
        "rater_name",
        "solution_id",
        "problem_id",
        "checkpoint",
        "round",
        "role",
        "is_correct",
        "verdict",
        "served_at",
        "deadline",
        "submitted_at",
        "server_elapsed_ms",
        "client_elapsed_ms",
    ] {
        assert!(rows[0].get(column).is_some(), "column {column} missing");
    }

    // The CSV holds the same rows under a header naming the same columns.
    let csv = researcher
        .get(&format!("/studies/{study}/attempts.csv"))
        .await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 25);
    assert!(
        lines[0].starts_with(
            "rater_id,rater_name,solution_id,problem_id,checkpoint,round,role,is_correct,verdict,"
        ),
        "{}",
        lines[0]
    );
    for row in &rows {
        let id = row["solution_id"].as_str().unwrap();
        assert!(csv.body.contains(id));
    }

    // Independent count per role: right = verdict agrees with ground truth.
    let mut by_role: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for row in &rows {
        let right = (row["verdict"] == "correct") == row["is_correct"].as_bool().unwrap();
        let entry = by_role
            .entry(row["role"].as_str().unwrap().to_string())
            .or_default();
        entry.1 += 1;
        if right {
            entry.0 += 1;
        }
    }
    let summary = researcher
        .get(&format!("/studies/{study}/report.json"))
        .await;
    assert_eq!(summary.status, 200, "{}", summary.body);
    let summary = summary.json();
    assert_eq!(summary["judgements"], 24);
    let groups = summary["report"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    for group in groups {
        let (right, n) = by_role[group["role"].as_str().unwrap()];
        assert_eq!(group["accuracy"]["successes"], right, "{group}");
        assert_eq!(group["accuracy"]["trials"], n, "{group}");
        assert_eq!(group["judgements"], n);
    }
    // Helpful solutions are all correct and everyone accepted them; the accept-everything
    // raters got every sneaky one wrong.
    assert_eq!(by_role["helpful"], (12, 12));
    assert!(by_role["sneaky"].0 < 12);
    assert_eq!(summary["report"]["raters"].as_array().unwrap().len(), 4);
    // Every helpful solution of the fixture is correct: all 6 problems have solve rate 1, cut
    // into four groups by rank; their accuracies add up to the whole.
    let quartiles = summary["accuracy_by_difficulty"].as_array().unwrap();
    assert_eq!(quartiles.len(), 4);
    let problems: u64 = quartiles
        .iter()
        .map(|q| q["problems"].as_u64().unwrap())
        .sum();
    let trials: u64 = quartiles
        .iter()
        .map(|q| q["accuracy"]["trials"].as_u64().unwrap())
        .sum();
    assert_eq!((problems, trials), (6, 24));
    assert_eq!(
        summary["verifier"],
        Value::Null,
        "no verifier version in this database"
    );
    assert_eq!(summary["report"]["agreement"]["solutions"], 12);

    // The exclusion toggle: the truthful raters (6 of 6 right, p = 1/64) stay; the two who
    // accept everything (chance-level) are left out, so every remaining verdict is right.
    let toggled = researcher
        .get(&format!("/studies/{study}/report.json?exclude=chance"))
        .await
        .json();
    let excluded = toggled["report"]["excluded_raters"].as_array().unwrap();
    assert_eq!(excluded.len(), 2, "{toggled}");
    for rater in toggled["report"]["raters"].as_array().unwrap() {
        let flagged = rater["chance_level"].as_bool().unwrap();
        assert_eq!(excluded.contains(&rater["rater_id"]), flagged, "{rater}");
    }
    for group in toggled["report"]["groups"].as_array().unwrap() {
        assert_eq!(group["accuracy"]["value"], 1.0, "{group}");
    }
    assert!(
        researcher
            .get(&format!("/studies/{study}/report.json?exclude=bogus"))
            .await
            .status
            .is_client_error()
    );

    // With a verifier version that scored the study: its AUROC against ground truth (scores
    // +1 for correct, -1 for incorrect solutions: perfect) and against the raters.
    let truth: BTreeMap<uuid::Uuid, bool> = rows
        .iter()
        .map(|r| {
            (
                r["solution_id"].as_str().unwrap().parse().unwrap(),
                r["is_correct"].as_bool().unwrap(),
            )
        })
        .collect();
    let (_, version) = app
        .store_verifier_scores(study, |_, id| if truth[&id] { 1.0 } else { -1.0 })
        .await;
    let with_verifier = researcher
        .get(&format!("/studies/{study}/report.json"))
        .await
        .json();
    let verifier = &with_verifier["verifier"];
    assert_eq!(verifier["version"], version);
    assert_eq!(verifier["solutions"], 12);
    assert_eq!(verifier["auroc_ground_truth"], 1.0);
    assert!(
        verifier["with_majority"].as_u64().unwrap() > 0,
        "{verifier}"
    );

    // The page: tables, the plot (server-rendered SVG, no script), the toggle, downloads.
    let page = researcher.get(&format!("/studies/{study}/report")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for needed in [
        "<svg",
        "id=\"groups\"",
        "id=\"raters\"",
        "rater 0",
        "Exclude chance-level raters",
        "attempts.csv",
        "Fleiss",
        "id=\"by-difficulty\"",
        "id=\"verifier\"",
    ] {
        assert!(page.body.contains(needed), "{needed} missing");
    }
    assert_eq!(
        page.body.matches("<circle").count(),
        2,
        "one point per role (one round)"
    );
    let excluded = researcher
        .get(&format!("/studies/{study}/report?exclude=chance"))
        .await;
    assert_eq!(excluded.body.matches("(excluded)").count(), 2);
    let study_page = researcher.get(&format!("/studies/{study}")).await;
    assert!(
        study_page
            .body
            .contains(&format!("/studies/{study}/report"))
    );

    // Staff only.
    let mut anonymous = app.client();
    for path in ["report", "report.json", "attempts.jsonl", "attempts.csv"] {
        let response = anonymous.get(&format!("/studies/{study}/{path}")).await;
        assert_ne!(response.status, 200, "{path}");
        let mut rater = app.rater_client(&tokens[0]).await;
        let response = rater.get(&format!("/studies/{study}/{path}")).await;
        assert_ne!(response.status, 200, "{path} reached a rater");
    }
}
on_both_backends!(the_summary_matches_an_independent_count_of_the_attempts);

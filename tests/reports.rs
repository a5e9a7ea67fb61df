//! Report downloads on SQLite and PostgreSQL: the tidy per-attempt table holds every stored
//! judgement, and the summary's figures equal an independent computation from that table;
//! staff only.

mod common;

use std::collections::BTreeMap;

use common::{Backend, TestApp, truthful};
use legibility::answers::AnswerRules;
use legibility::arms::TimeLimits;
use legibility::domain::{AnswerFormat, ArmDesign, JustificationRule, UserRole};
use legibility::reports::Attempt;
use legibility::store::Store;
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
        "id=\"verifier\"",
        "id=\"minimum-n\"",
    ] {
        assert!(page.body.contains(needed), "{needed} missing");
    }
    // Minimum n: six problems are too few for difficulty quartiles, and each rater's six
    // answers too few for their own accuracy; the two role groups (12 answers each) and the
    // agreement over 12 solutions are shown.
    assert!(page.body.contains("id=\"difficulty-too-small\""));
    assert!(!page.body.contains("id=\"by-difficulty\""));
    let raters_table = page.body.split("id=\"raters\"").nth(1).unwrap();
    assert_eq!(
        raters_table
            .split("</table>")
            .next()
            .unwrap()
            .matches("n too small (6; needs 10)")
            .count(),
        4,
        "every rater's accuracy is marked"
    );
    let groups_table = page.body.split("id=\"groups\"").nth(1).unwrap();
    assert!(
        groups_table
            .split("</table>")
            .next()
            .unwrap()
            .contains("(n=12)")
    );
    assert!(!page.body.contains("Fleiss' κ n too small"));
    // Accuracy: one point per role (one round); time: two per role (when right, all
    // answered); raters: one per rater with answers.
    assert_eq!(page.body.matches("<circle").count(), 2 + 4 + 4);
    for plot in [
        "plot-accuracy-title",
        "plot-time-title",
        "plot-raters-title",
    ] {
        assert!(page.body.contains(plot), "{plot} missing");
    }
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
    for path in [
        "report",
        "report.json",
        "attempts.jsonl",
        "attempts.csv",
        "attempts.parquet",
    ] {
        let response = anonymous.get(&format!("/studies/{study}/{path}")).await;
        assert_ne!(response.status, 200, "{path}");
        let mut rater = app.rater_client(&tokens[0]).await;
        let response = rater.get(&format!("/studies/{study}/{path}")).await;
        assert_ne!(response.status, 200, "{path} reached a rater");
    }
}
on_both_backends!(the_summary_matches_an_independent_count_of_the_attempts);

/// Mixed ground truth in every role, so each group has correct and incorrect solutions (d′ is
/// defined): helpful solutions to odd problems are wrong, sneaky ones to every third problem
/// right. Incorrect solutions say "carefully", so [`truthful`] raters can tell.
fn mixed_solutions(set_size: usize, labels: &[String]) -> String {
    let mut lines = Vec::new();
    for i in 0..set_size {
        let question =
            format!("Problem {i}: a farmer has some goats and buys more. How many goats now?");
        for (round, label) in labels.iter().enumerate() {
            for (role, correct) in [("helpful", i % 2 == 0), ("sneaky", i % 3 == 0)] {
                let (answer, word) = if correct {
                    (common::truth_of(i), "plainly")
                } else {
                    ((40 + i).to_string(), "carefully")
                };
                lines.push(
                    serde_json::json!({
                        "question": question, "checkpoint": label, "round": round, "role": role,
                        "solution": format!("Count the goats {word} ({role}).\n#### {answer}"),
                    })
                    .to_string(),
                );
            }
        }
    }
    lines.join("\n")
}

/// What one simulated rater does with one item.
enum Act {
    /// Answer after `elapsed` ms; `flip` answers against the truth; the page reports `client`.
    Answer {
        elapsed: i64,
        flip: bool,
        client: Option<i64>,
    },
    /// Answer 2 s after the deadline (stored as a timeout).
    Late,
    /// The page's countdown ends and it sends the timeout, 120 ms after the deadline.
    PageTimeout,
    /// Never answer: the deadline passes and the next request records the timeout.
    Abandon,
}

/// Rater `r`'s `k`-th item, by kind of rater (`r % 5`): truthful; error-prone and without a
/// client time now and then; accepting everything (chance level); late, abandoning items, and
/// with a page that disagrees with the server; guessing.
fn act(r: usize, k: usize) -> Act {
    let elapsed = 2_000 + ((r * 13 + k * 7) % 40) as i64 * 1_000;
    match r % 5 {
        0 => Act::Answer {
            elapsed,
            flip: false,
            client: Some(elapsed),
        },
        1 => Act::Answer {
            elapsed,
            flip: k % 4 == 3,
            client: (!k.is_multiple_of(5)).then_some(elapsed + 300),
        },
        2 => Act::Answer {
            elapsed: 2_500,
            flip: false,
            client: Some(2_500),
        },
        3 if k % 6 == 1 => Act::Abandon,
        3 if k % 6 == 4 => Act::Late,
        4 if k % 5 == 2 => Act::PageTimeout,
        3 => Act::Answer {
            elapsed,
            flip: false,
            client: Some(elapsed + 3_000),
        },
        _ => Act::Answer {
            elapsed,
            flip: (k * 7 + 3) % 5 < 2,
            client: Some(elapsed),
        },
    }
}

/// How the simulated raters answer: the paper's verdicts, or with a probability (0-100 in
/// steps of 5, 50 allowed) or a confidence, plus the page's integrity counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Design {
    Binary,
    Probability,
    Confidence,
}

/// What rater `r`'s page sends beside `said` for item `k`: a probability or confidence that
/// leans the way of the verdict by an amount that varies (50 % now and then), a justification
/// now and then, and integrity counts (some raters leave the tab, lose focus, copy or paste;
/// one page sends no counts at all).
fn extras(design: Design, r: usize, k: usize, said: &str, body: &mut serde_json::Value) {
    let lean = ((r * 3 + k * 5) % 11) as i64 * 5; // 0..=50
    match design {
        Design::Binary => {}
        Design::Probability => {
            let p = if said == "correct" {
                50 + lean
            } else {
                50 - lean
            };
            body["probability"] = p.into();
            body.as_object_mut().map(|o| o.remove("verdict"));
        }
        Design::Confidence => {
            body["confidence"] = (50 + (lean / 10) * 10).into();
        }
    }
    if design != Design::Binary && k.is_multiple_of(3) {
        body["justification"] = format!("rater {r} on item {k}").into();
    }
    if r % 5 != 3 {
        body["events"] = serde_json::json!({
            "hidden_count": i64::from(r % 5 == 1 && k.is_multiple_of(3)),
            "hidden_ms": if r % 5 == 1 && k.is_multiple_of(3) { 2_500 } else { 0 },
            "blur_count": i64::from(r % 5 == 4 && k % 4 == 1),
            "copy_count": i64::from(r.is_multiple_of(5) && k % 7 == 3),
            "paste_count": i64::from(r % 5 == 2 && k.is_multiple_of(5)),
        });
    }
}

async fn the_downloads_open_in_pandas_and_every_figure_matches_it(backend: Backend) {
    pandas_check(backend, Design::Binary).await;
}
on_both_backends!(the_downloads_open_in_pandas_and_every_figure_matches_it);

async fn probability_answers_and_integrity_events_match_pandas(backend: Backend) {
    pandas_check(backend, Design::Probability).await;
}
on_both_backends!(probability_answers_and_integrity_events_match_pandas);

async fn confidence_answers_match_pandas(backend: Backend) {
    pandas_check(backend, Design::Confidence).await;
}
on_both_backends!(confidence_answers_match_pandas);

/// Raters of every kind (see [`act`]) fill a study of `design`; its downloads and summaries
/// are recomputed by tests/python/check_downloads.py with pandas.
async fn pandas_check(backend: Backend, design: Design) {
    let app = TestApp::start(backend).await;
    let fixture = app
        .fixture_with_solutions(9, 2, 3, 45_000, mixed_solutions)
        .await;
    let study = fixture.study_id;
    if design != Design::Binary {
        let mut spec = app.state.store.study_setup(study).await.unwrap().spec;
        // Two time limits: interleaved item by item in the probability study, between raters
        // in the confidence one (the late answers, 47 s, stay within the 5 s grace of both).
        spec.time_limits = TimeLimits {
            arms: vec![43_000, 45_000],
            design: match design {
                Design::Probability => ArmDesign::Interleaved,
                _ => ArmDesign::Between,
            },
            block_items: 10,
        };
        spec.answers = AnswerRules {
            format: match design {
                Design::Probability => AnswerFormat::Probability,
                _ => AnswerFormat::Confidence,
            },
            allow_even_odds: true,
            justification: JustificationRule::Optional,
        };
        let plan = app.state.store.update_study(study, &spec).await.unwrap();
        assert_eq!(plan.changed, vec!["answer format", "time-limit arms"]);
    }
    // A rater sees one solution per problem: 15 raters fill the 108 slots (12 per problem).
    let tokens = app.invite(study, 15).await;
    let mut raters = Vec::new();
    for token in &tokens {
        raters.push(app.rater_client(token).await);
    }
    // Raters take turns, one item each, until the study runs out.
    let mut done = vec![0usize; raters.len()];
    let mut active = vec![true; raters.len()];
    while active.iter().any(|a| *a) {
        for (r, rater) in raters.iter_mut().enumerate() {
            if !active[r] {
                continue;
            }
            let mut item = rater.get("/api/rater/item").await.json();
            if item["status"] == "item" && matches!(act(r, done[r]), Act::Abandon) {
                // The deadline passes unanswered; asking again records the timeout and serves
                // the next item, answered below.
                app.state.clock.advance_ms(46_000);
                done[r] += 1;
                item = rater.get("/api/rater/item").await.json();
            }
            if item["status"] != "item" {
                active[r] = false;
                continue;
            }
            if r % 5 == 1 && done[r] % 3 == 2 {
                // The page is reloaded mid-item: the same item again, shown twice.
                let again = rater.get("/api/rater/item").await.json();
                assert_eq!(again["assignment_id"], item["assignment_id"]);
            }
            let text = item["solution"].as_str().unwrap_or_default().to_string();
            let honest = truthful(&text);
            let (verdict, client, wait) = match act(r, done[r]) {
                Act::Answer {
                    elapsed,
                    flip,
                    client,
                } => {
                    let said = match (r % 5, flip) {
                        (2, _) => "correct",
                        (_, false) => honest,
                        (_, true) if honest == "correct" => "wrong",
                        (_, true) => "correct",
                    };
                    (said, client, elapsed)
                }
                Act::Late => (honest, None, 47_000),
                Act::PageTimeout => ("timeout", Some(45_000), 45_120),
                Act::Abandon => (honest, Some(3_000), 3_000),
            };
            app.state.clock.advance_ms(wait);
            let mut body =
                serde_json::json!({"assignment_id": item["assignment_id"], "verdict": verdict});
            if let Some(ms) = client {
                body["client_elapsed_ms"] = ms.into();
            }
            if verdict != "timeout" {
                extras(design, r, done[r], verdict, &mut body);
            }
            let answer = rater.post_json("/api/rater/judgements", &body).await;
            assert_eq!(answer.status, 200, "{}", answer.body);
            // Truthful, error-prone and guessing raters point at a first wrong step after most
            // "wrong" verdicts (step 1 or 2 of the two lines; several raters per solution, so
            // agreement varies).
            if answer.json()["verdict"] == "wrong" && r % 5 != 3 && (r + done[r]) % 4 != 0 {
                let step = 1 + (r / 5 + done[r]) % 2;
                let flag =
                    serde_json::json!({"assignment_id": item["assignment_id"], "step": step});
                let flagged = rater.post_json("/api/rater/steps", &flag).await;
                assert_eq!(flagged.status, 200, "{}", flagged.body);
            }
            done[r] += 1;
        }
    }

    let mut researcher = app.staff_client("res", UserRole::Researcher).await;
    let folder = tempfile::tempdir().unwrap();
    for (path, file) in [
        ("attempts.csv", "attempts.csv"),
        ("attempts.jsonl", "attempts.jsonl"),
        ("attempts.parquet", "attempts.parquet"),
        ("report.json", "report.json"),
        ("report.json?exclude=chance", "report-excluded.json"),
        ("report.json?exclude=flagged", "report-flagged.json"),
    ] {
        let response = researcher.get(&format!("/studies/{study}/{path}")).await;
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        std::fs::write(folder.path().join(file), &response.bytes).unwrap();
    }
    let parquet = std::fs::read(folder.path().join("attempts.parquet")).unwrap();
    assert_eq!(&parquet[..4], b"PAR1");
    let csv = std::fs::read_to_string(folder.path().join("attempts.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        9 * 2 * 2 * 3 + 1,
        "every slot judged once, plus the header"
    );
    for value in [
        ",in_time,",
        ",page_timeout,",
        ",late_answer,",
        ",no_answer,",
        "chance_level_rater",
        "no_client_time",
        "implausible_client_time",
        "resumed",
    ] {
        assert!(
            csv.contains(value),
            "the fixture never raised {value}: {csv}"
        );
    }

    if design != Design::Binary {
        for value in [
            "left_tab",
            "lost_focus",
            "copied",
            "pasted",
            ",rater 0 on item 0,",
        ] {
            assert!(csv.contains(value), "the fixture never sent {value}");
        }
        let report = researcher.get(&format!("/studies/{study}/report")).await;
        assert!(
            report.body.contains("id=\"calibration\""),
            "{}",
            report.body
        );
        assert!(report.body.contains("Brier score"));
        assert!(report.body.contains("id=\"arms\""), "{}", report.body);
        assert!(csv.contains(",43000,") && csv.contains(",45000,"));
        // The drill-down's table: every solution, its counts adding up to the attempts, and
        // `fooled_most` exactly the incorrect ones most answers called correct.
        let solutions: Vec<Value> = researcher
            .get(&format!("/studies/{study}/solutions.json"))
            .await
            .json()
            .as_array()
            .cloned()
            .unwrap();
        assert_eq!(solutions.len(), 9 * 2 * 2, "every solution of the study");
        let total: u64 = solutions
            .iter()
            .map(|s| s["judgements"].as_u64().unwrap())
            .sum();
        assert_eq!(total, 108);
        for s in &solutions {
            let (judged_correct, answered) = (
                s["judged_correct"].as_u64().unwrap(),
                s["answered"].as_u64().unwrap(),
            );
            let fooled = s["is_correct"] == false && 2 * judged_correct > answered;
            assert_eq!(s["fooled_most"], fooled, "{s}");
        }
        assert!(solutions.iter().any(|s| s["fooled_most"] == true));
        let table = researcher
            .get(&format!("/studies/{study}/solutions.csv?fooled=1"))
            .await
            .body;
        assert_eq!(
            table.lines().next(),
            Some(
                legibility::web::solutions::SOLUTION_COLUMNS
                    .join(",")
                    .as_str()
            )
        );
        assert_eq!(
            table.lines().count() - 1,
            solutions
                .iter()
                .filter(|s| s["fooled_most"] == true)
                .count()
        );
    }

    let python = std::env::var("LEGIBILITY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/check_downloads.py"
    );
    let output = std::process::Command::new(&python)
        .arg(script)
        .arg(folder.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} (set LEGIBILITY_TEST_PYTHON): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the pandas check failed (needs pandas and pyarrow: .ci/run installs them)\n{stdout}\n{stderr}"
    );
    assert!(stdout.starts_with("ok: 108 attempts"), "{stdout}");
    println!("{stdout}");
}

/// `attempts` in a fixed order (a report reads them in no particular one).
fn sorted(attempts: &[Attempt]) -> Vec<Attempt> {
    let mut attempts = attempts.to_vec();
    attempts.sort_by_key(|a| (a.solution_id, a.rater_id));
    attempts
}

/// What a store that keeps nothing yet reads (a new one, on the same database).
async fn read_afresh(url: &str, study: uuid::Uuid) -> Vec<Attempt> {
    let store = Store::connect(url).await.unwrap();
    sorted(&store.report_attempts(study).await.unwrap())
}

/// The server keeps a study's report attempts and reads only new judgements on the next
/// request; every other change a report can see (a flagged step, a regraded solution, deleted
/// judgements) makes it read afresh. After each change the kept attempts equal a fresh read.
async fn the_kept_report_attempts_follow_every_change(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(6, 1, 2, 45_000).await;
    let study = fixture.study_id;
    let tokens = app.invite(study, 4).await;
    let store = app.store();
    let url = app.db.url.clone();
    assert!(store.report_attempts(study).await.unwrap().is_empty());

    app.judge_all(&tokens[..1], truthful).await;
    let first = store.report_attempts(study).await.unwrap();
    assert_eq!(first.len(), 6);
    assert_eq!(sorted(&first), read_afresh(&url, study).await);

    // New judgements are added to what was kept; the earlier copy is left as it was.
    app.judge_all(&tokens[1..], |_| "correct").await;
    let all = store.report_attempts(study).await.unwrap();
    assert_eq!(first.len(), 6);
    assert_eq!(all.len(), 24);
    assert_eq!(sorted(&all), read_afresh(&url, study).await);

    let change = |sql: &'static str| {
        let url = url.clone();
        async move {
            with_raw_pool!(url, pool => {
                let changed = sqlx::query(sql).execute(&pool).await.unwrap().rows_affected();
                assert!(changed > 0, "{sql} changed nothing");
            })
        }
    };
    change(
        "UPDATE judgements SET first_wrong_step = 3
         WHERE id = (SELECT id FROM judgements ORDER BY id LIMIT 1)",
    )
    .await;
    let flagged = sorted(&store.report_attempts(study).await.unwrap());
    assert_eq!(
        flagged
            .iter()
            .filter(|a| a.first_wrong_step == Some(3))
            .count(),
        1
    );
    assert_eq!(flagged, read_afresh(&url, study).await);

    change(
        "UPDATE solutions SET is_correct = NOT is_correct
         WHERE id = (SELECT solution_id FROM judgements ORDER BY id LIMIT 1)",
    )
    .await;
    let regraded = sorted(&store.report_attempts(study).await.unwrap());
    assert_ne!(regraded, flagged);
    assert_eq!(regraded, read_afresh(&url, study).await);

    change("DELETE FROM judgements WHERE id = (SELECT id FROM judgements ORDER BY id LIMIT 1)")
        .await;
    let left = sorted(&store.report_attempts(study).await.unwrap());
    assert_eq!(left.len(), 23);
    assert_eq!(left, read_afresh(&url, study).await);

    // And the summary a researcher downloads counts what is stored now.
    let mut researcher = app.staff_client("res", UserRole::Researcher).await;
    let summary = researcher
        .get(&format!("/studies/{study}/report.json"))
        .await;
    assert_eq!(summary.status, 200, "{}", summary.body);
    let summary: Value = serde_json::from_str(&summary.body).unwrap();
    assert_eq!(summary["judgements"], 23, "{summary}");
}
on_both_backends!(the_kept_report_attempts_follow_every_change);

//! The rater loop end to end through the real router: deadlines enforced by the server,
//! resume after reload, idempotent answers, abandoned items returning to the pool, and
//! assignment invariants under many concurrent raters — on SQLite and PostgreSQL.

mod common;

use std::collections::{HashMap, HashSet};

use axum::http::StatusCode;
use common::{Backend, TestApp};
use serde_json::json;
use uuid::Uuid;

/// Fetches the rater's current item over the JSON API.
async fn next_item(client: &mut common::Client<'_>) -> serde_json::Value {
    let response = client.get("/api/rater/item").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    response.json()
}

async fn answer(
    client: &mut common::Client<'_>,
    assignment: &str,
    verdict: &str,
) -> common::TestResponse {
    client
        .post_json(
            "/api/rater/judgements",
            &json!({"assignment_id": assignment, "verdict": verdict, "client_elapsed_ms": 1234}),
        )
        .await
}

async fn late_answers_are_timeouts_and_replays_change_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(3, 1, 1, 45_000).await;
    let tokens = app.invite(fixture.study_id, 1).await;
    let mut rater = app.rater_client(&tokens[0]).await;

    // On time: the verdict is stored; a replay reports the same and stores nothing new.
    let item = next_item(&mut rater).await;
    assert_eq!(item["status"], "item");
    let first = item["assignment_id"].as_str().unwrap().to_string();
    let stored = answer(&mut rater, &first, "wrong").await.json();
    assert_eq!(stored, json!({"verdict": "wrong", "duplicate": false}));
    let replay = answer(&mut rater, &first, "correct").await.json();
    assert_eq!(replay, json!({"verdict": "wrong", "duplicate": true}));

    // Late: the server's clock passes the deadline, a "correct" becomes a timeout.
    let item = next_item(&mut rater).await;
    let second = item["assignment_id"].as_str().unwrap().to_string();
    app.state.clock.advance_ms(45_001);
    let stored = answer(&mut rater, &second, "correct").await.json();
    assert_eq!(stored, json!({"verdict": "timeout", "duplicate": false}));
    assert_eq!(
        answer(&mut rater, &second, "correct").await.json()["duplicate"],
        true
    );

    let progress = app.store().study_progress(fixture.study_id).await.unwrap();
    assert_eq!(
        (
            progress.judged,
            progress.wrong_verdicts,
            progress.timeouts,
            progress.correct_verdicts
        ),
        (2, 1, 1, 0)
    );
}
on_both_backends!(late_answers_are_timeouts_and_replays_change_nothing);

async fn reload_shows_same_item_with_the_remaining_time(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(2, 1, 1, 45_000).await;
    let tokens = app.invite(fixture.study_id, 1).await;
    let mut rater = app.rater_client(&tokens[0]).await;

    let remaining = |body: &str| -> i64 {
        body.split("data-remaining-ms=\"")
            .nth(1)
            .and_then(|t| t.split('"').next())
            .unwrap()
            .parse()
            .unwrap()
    };
    let first = rater.get("/rate/item").await;
    assert_eq!(first.status, StatusCode::OK);
    // Real time passes too while the test runs; allow a second of it.
    assert!(
        (44_000..=45_000).contains(&remaining(&first.body)),
        "{}",
        first.body
    );
    app.state.clock.advance_ms(20_000);
    let again = rater.get("/rate/item").await;
    let id = |body: &str| {
        body.split("name=\"assignment_id\" value=\"")
            .nth(1)
            .unwrap()[..36]
            .to_string()
    };
    assert_eq!(
        id(&first.body),
        id(&again.body),
        "a reload served a different item"
    );
    assert!(
        (24_000..=25_000).contains(&remaining(&again.body)),
        "not the same deadline: {}",
        again.body
    );

    // After the deadline a reload records the timeout and serves the next item.
    app.state.clock.advance_ms(25_001);
    let next = rater.get("/rate/item").await;
    assert_ne!(id(&first.body), id(&next.body));
    let progress = app.store().study_progress(fixture.study_id).await.unwrap();
    assert_eq!((progress.judged, progress.timeouts), (1, 1));
}
on_both_backends!(reload_shows_same_item_with_the_remaining_time);

async fn page_form_records_verdicts_and_late_posts_as_timeouts(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(2, 1, 1, 10_000).await;
    let tokens = app.invite(fixture.study_id, 1).await;
    let mut rater = app.rater_client(&tokens[0]).await;
    let page = rater.get("/rate/item").await;
    let assignment = page
        .body
        .split("name=\"assignment_id\" value=\"")
        .nth(1)
        .unwrap()[..36]
        .to_string();
    app.state.clock.advance_ms(10_500);
    let posted = rater
        .post_form(
            "/rate/item",
            &[
                ("assignment_id", &assignment),
                ("verdict", "correct"),
                ("client_elapsed_ms", "9000"),
            ],
        )
        .await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER);
    assert_eq!(posted.location(), Some("/rate/item"));
    let progress = app.store().study_progress(fixture.study_id).await.unwrap();
    assert_eq!(
        (progress.timeouts, progress.correct_verdicts),
        (1, 0),
        "a late verdict was stored as a verdict"
    );
}
on_both_backends!(page_form_records_verdicts_and_late_posts_as_timeouts);

async fn abandoned_items_return_to_the_pool(backend: Backend) {
    let app = TestApp::start(backend).await;
    // One problem, one solution pair, one judgement each: two slots in total.
    let fixture = app.fixture(1, 1, 1, 45_000).await;
    let tokens = app.invite(fixture.study_id, 4).await;
    let mut a = app.rater_client(&tokens[0]).await;
    let mut b = app.rater_client(&tokens[1]).await;
    let mut c = app.rater_client(&tokens[2]).await;
    let a_item = next_item(&mut a).await;
    let b_item = next_item(&mut b).await;
    assert_eq!(a_item["status"], "item");
    assert_eq!(b_item["status"], "item");
    assert_eq!(
        next_item(&mut c).await["status"],
        "finished",
        "both slots are taken"
    );

    // Both walk away. Past the deadline but within the grace, the slots are still theirs, and
    // B's late answer is stored as a timeout that counts.
    app.state.clock.advance_ms(45_000 + 1_000);
    assert_eq!(next_item(&mut c).await["status"], "finished");
    let b_answer = answer(&mut b, b_item["assignment_id"].as_str().unwrap(), "wrong")
        .await
        .json();
    assert_eq!(b_answer["verdict"], "timeout");
    // Past deadline + grace, C gets A's solution; A's late answer is refused and not stored.
    app.state.clock.advance_ms(5_000);
    let c_item = next_item(&mut c).await;
    assert_eq!(c_item["status"], "item");
    let late = answer(&mut a, a_item["assignment_id"].as_str().unwrap(), "correct").await;
    assert_eq!(late.status, StatusCode::GONE, "{}", late.body);
    assert_eq!(
        answer(&mut c, c_item["assignment_id"].as_str().unwrap(), "correct")
            .await
            .status,
        StatusCode::OK
    );
    let progress = app.store().study_progress(fixture.study_id).await.unwrap();
    assert_eq!(
        (progress.judged, progress.wanted, progress.in_progress),
        (2, 2, 0)
    );
}
on_both_backends!(abandoned_items_return_to_the_pool);

async fn a_rater_cannot_answer_someone_elses_item(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(2, 1, 2, 45_000).await;
    let tokens = app.invite(fixture.study_id, 2).await;
    let mut a = app.rater_client(&tokens[0]).await;
    let mut b = app.rater_client(&tokens[1]).await;
    let item = next_item(&mut a).await;
    let response = answer(&mut b, item["assignment_id"].as_str().unwrap(), "correct").await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    let unknown = answer(&mut b, &Uuid::new_v4().to_string(), "correct").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let malformed = b
        .post_json(
            "/api/rater/judgements",
            &json!({"assignment_id": "not-a-uuid", "verdict": "maybe"}),
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    let message = malformed.json()["error"].as_str().unwrap().to_string();
    assert!(
        message.contains("assignment_id") || message.contains("verdict"),
        "{message}"
    );
    let mut anonymous = app.client();
    assert_eq!(
        anonymous.get("/api/rater/item").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        anonymous.get("/rate/item").await.status,
        StatusCode::UNAUTHORIZED
    );
}
on_both_backends!(a_rater_cannot_answer_someone_elses_item);

/// Rows of every judgement with what the assertions need.
async fn judgement_rows(app: &TestApp, study: Uuid) -> Vec<(Uuid, Uuid, Uuid)> {
    // (rater, solution, problem) per judgement, read straight from the database.
    let query = "SELECT j.rater_id, j.solution_id, s.problem_id FROM judgements j JOIN solutions s ON s.id = j.solution_id WHERE j.study_id = $1";
    with_raw_pool!(app.db.url, pool => sqlx::query_as(query).bind(study).fetch_all(&pool).await.unwrap())
}

async fn fifty_concurrent_raters_fill_every_solution_exactly(backend: Backend) {
    let app = TestApp::start(backend).await;
    let per_solution = 3;
    // 12 problems × 2 checkpoints × 2 roles = 48 solutions, 144 judgements wanted.
    let fixture = app.fixture(12, 2, per_solution, 45_000).await;
    let tokens = app.invite(fixture.study_id, 50).await;
    let app = &app;
    let mut tasks = Vec::new();
    for token in &tokens {
        tasks.push(async move {
            let mut client = app.rater_client(token).await;
            let mut judged = 0;
            loop {
                let item = next_item(&mut client).await;
                if item["status"] != "item" {
                    assert_eq!(item["status"], "finished");
                    break judged;
                }
                let id = item["assignment_id"].as_str().unwrap().to_string();
                let verdict = if judged % 2 == 0 { "correct" } else { "wrong" };
                let response = answer(&mut client, &id, verdict).await;
                assert_eq!(response.status, StatusCode::OK, "{}", response.body);
                judged += 1;
            }
        });
    }
    let judged: Vec<i64> = futures_join_all(tasks).await;
    assert_eq!(judged.iter().sum::<i64>(), 48 * per_solution);

    let rows = judgement_rows(app, fixture.study_id).await;
    assert_eq!(rows.len() as i64, 48 * per_solution);
    let mut per_solution_raters: HashMap<Uuid, HashSet<Uuid>> = HashMap::new();
    let mut per_rater_problems: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (rater, solution, problem) in rows {
        per_solution_raters
            .entry(solution)
            .or_default()
            .insert(rater);
        per_rater_problems.entry(rater).or_default().push(problem);
    }
    assert_eq!(per_solution_raters.len(), 48);
    for (solution, raters) in &per_solution_raters {
        assert_eq!(
            raters.len() as i64,
            per_solution,
            "solution {solution} has {} distinct raters",
            raters.len()
        );
    }
    for (rater, problems) in &per_rater_problems {
        let distinct: HashSet<_> = problems.iter().collect();
        assert_eq!(
            distinct.len(),
            problems.len(),
            "rater {rater} saw two solutions of one problem"
        );
    }
    let progress = app.store().study_progress(fixture.study_id).await.unwrap();
    assert_eq!(
        (progress.judged, progress.in_progress),
        (48 * per_solution, 0)
    );

    // The audit the load benchmark prints agrees, and it does catch a broken counter.
    let audit = app.store().audit_judging(fixture.study_id).await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    assert_eq!(audit.judgements, 48 * per_solution);
    let (study, solution) = (fixture.study_id, rows_solution(app, fixture.study_id).await);
    with_raw_pool!(app.db.url, pool => {
        sqlx::query(
            "UPDATE study_solutions SET slots_taken = slots_taken + 1 WHERE study_id = $1 AND solution_id = $2",
        )
        .bind(study)
        .bind(solution)
        .execute(&pool)
        .await
        .unwrap();
    });
    let audit = app.store().audit_judging(fixture.study_id).await.unwrap();
    assert_eq!((audit.over_assigned, audit.duplicated), (1, 0), "{audit:?}");
}
on_both_backends!(fifty_concurrent_raters_fill_every_solution_exactly);

/// One judged solution of the study.
async fn rows_solution(app: &TestApp, study: Uuid) -> Uuid {
    judgement_rows(app, study).await[0].1
}

/// Runs futures concurrently on the current task (no extra crate needed).
async fn futures_join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut outputs = Vec::new();
    let pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut pending: Vec<_> = pinned.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(out) => {
                        *result = Some(out);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    for result in results {
        outputs.push(result.expect("every future finished"));
    }
    outputs
}

async fn each_rater_sees_a_balanced_mix(backend: Backend) {
    let app = TestApp::start(backend).await;
    // 20 problems × 2 checkpoints × (correct, incorrect): 4 strata of 20 solutions.
    let fixture = app.fixture(20, 2, 1, 45_000).await;
    let tokens = app.invite(fixture.study_id, 1).await;
    let mut rater = app.rater_client(&tokens[0]).await;
    for _ in 0..8 {
        let item = next_item(&mut rater).await;
        answer(
            &mut rater,
            item["assignment_id"].as_str().unwrap(),
            "correct",
        )
        .await;
    }
    // Which strata did the rater see? Read from the database (the rater cannot).
    let query = "SELECT ss.checkpoint_id, ss.is_correct FROM judgements j
                 JOIN study_solutions ss ON ss.study_id = j.study_id AND ss.solution_id = j.solution_id
                 WHERE j.study_id = $1";
    let seen: Vec<(Uuid, bool)> = with_raw_pool!(app.db.url, pool => sqlx::query_as(query).bind(fixture.study_id).fetch_all(&pool).await.unwrap());
    let mut counts: HashMap<(Uuid, bool), usize> = HashMap::new();
    for key in seen {
        *counts.entry(key).or_default() += 1;
    }
    assert_eq!(
        counts.len(),
        4,
        "8 items should cover all 4 (checkpoint, correctness) strata: {counts:?}"
    );
    assert!(counts.values().all(|n| *n == 2), "unbalanced: {counts:?}");
}
on_both_backends!(each_rater_sees_a_balanced_mix);

async fn closed_studies_serve_nothing_new(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(2, 1, 1, 45_000).await;
    let tokens = app.invite(fixture.study_id, 1).await;
    let mut rater = app.rater_client(&tokens[0]).await;
    app.store()
        .set_study_status(fixture.study_id, legibility::domain::StudyStatus::Closed)
        .await
        .unwrap();
    assert_eq!(next_item(&mut rater).await["status"], "closed");
    let page = rater.get("/rate/item").await;
    assert!(page.body.contains("Study closed"));
}
on_both_backends!(closed_studies_serve_nothing_new);

async fn many_tabs_of_one_rater_get_one_item(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(10, 1, 1, 45_000).await;
    let tokens = app.invite(fixture.study_id, 1).await;
    let app = &app;
    let token = &tokens[0];
    // Eight tabs ask at the same moment: all must show the same single item.
    let tabs: Vec<_> = (0..8)
        .map(|_| async move {
            let mut tab = app.client();
            tab.bearer = Some(token.clone());
            next_item(&mut tab).await["assignment_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let ids: HashSet<String> = futures_join_all(tabs).await.into_iter().collect();
    assert_eq!(ids.len(), 1, "one rater got several items at once: {ids:?}");
    let progress = app.store().study_progress(fixture.study_id).await.unwrap();
    assert_eq!(progress.in_progress, 1);
}
on_both_backends!(many_tabs_of_one_rater_get_one_item);

/// An answer after deadline + grace is refused with 410 and stores nothing, whether or not the
/// reclaim of abandoned items has run; the item is abandoned and its slot goes back at once.
/// The same holds when the rater asks for their next item after the grace: nothing is stored.
async fn answers_after_the_grace_are_refused_whatever_the_reclaim_did(backend: Backend) {
    let app = TestApp::start(backend).await;
    // Grace 5 s (the fixture's); two problems, two solutions each, one judgement per solution.
    let fixture = app.fixture(2, 1, 1, 45_000).await;
    let tokens = app.invite(fixture.study_id, 2).await;
    let mut rater = app.rater_client(&tokens[0]).await;
    let item = next_item(&mut rater).await;
    let id = item["assignment_id"].as_str().unwrap().to_string();
    // Nobody else asks for an item, so no sweep runs: only the answer's own rule decides.
    app.state.clock.advance_ms(45_000 + 5_001);
    let late = answer(&mut rater, &id, "correct").await;
    assert_eq!(late.status, StatusCode::GONE, "{}", late.body);
    assert!(
        late.json()["error"]
            .as_str()
            .unwrap()
            .contains("not stored"),
        "{}",
        late.body
    );
    let progress = app.store().study_progress(fixture.study_id).await.unwrap();
    assert_eq!(
        (progress.judged, progress.in_progress),
        (0, 0),
        "{progress:?}"
    );
    // Asked again, the answer is still refused and still nothing is stored.
    assert_eq!(
        answer(&mut rater, &id, "wrong").await.status,
        StatusCode::GONE
    );

    // The other rater leaves an item: within the grace their next request stores a timeout
    // with no answer; after the grace it abandons it and stores nothing.
    let mut other = app.rater_client(&tokens[1]).await;
    let first = next_item(&mut other).await;
    app.state.clock.advance_ms(45_000 + 4_000);
    let second = next_item(&mut other).await;
    assert_ne!(first["assignment_id"], second["assignment_id"]);
    app.state.clock.advance_ms(45_000 + 5_001);
    let third = next_item(&mut other).await;
    assert_eq!(third["status"], "finished", "{third}");
    let progress = app.store().study_progress(fixture.study_id).await.unwrap();
    assert_eq!(
        (progress.judged, progress.timeouts, progress.in_progress),
        (1, 1, 0),
        "{progress:?}"
    );
    let rows = app.attempts(fixture.study_id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["timing"], "no_answer");
    assert_eq!(rows[0]["submitted_at"], serde_json::Value::Null);
}
on_both_backends!(answers_after_the_grace_are_refused_whatever_the_reclaim_did);

/// Every timing outcome and flag as stored: an answer in time, the page's own timeout, a late
/// verdict within the grace, a reloaded item, and a page time far from the server's.
async fn timing_outcomes_and_flags_are_told_apart(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(4, 1, 1, 20_000).await;
    let tokens = app.invite(fixture.study_id, 1).await;
    let mut rater = app.rater_client(&tokens[0]).await;
    // 1. In time, honest page time.
    let id = next_item(&mut rater).await["assignment_id"].clone();
    app.state.clock.advance_ms(3_000);
    let body = json!({"assignment_id": id, "verdict": "correct", "client_elapsed_ms": 3_000});
    assert_eq!(
        rater.post_json("/api/rater/judgements", &body).await.status,
        200
    );
    // 2. The page's countdown ends; its timeout lands 150 ms after the deadline.
    let id = next_item(&mut rater).await["assignment_id"].clone();
    app.state.clock.advance_ms(20_150);
    let body = json!({"assignment_id": id, "verdict": "timeout", "client_elapsed_ms": 20_000});
    let stored = rater.post_json("/api/rater/judgements", &body).await.json();
    assert_eq!(stored["verdict"], "timeout");
    // 3. A verdict 3 s after the deadline (within the 5 s grace), from a page claiming 4 s.
    let id = next_item(&mut rater).await["assignment_id"].clone();
    app.state.clock.advance_ms(23_000);
    let body = json!({"assignment_id": id, "verdict": "wrong", "client_elapsed_ms": 4_000});
    let stored = rater.post_json("/api/rater/judgements", &body).await.json();
    assert_eq!(stored["verdict"], "timeout");
    // 4. Reloaded twice, then answered in time without a page time.
    let id = next_item(&mut rater).await["assignment_id"].clone();
    app.state.clock.advance_ms(1_000);
    assert_eq!(next_item(&mut rater).await["assignment_id"], id);
    assert_eq!(next_item(&mut rater).await["assignment_id"], id);
    let body = json!({"assignment_id": id, "verdict": "wrong"});
    assert_eq!(
        rater.post_json("/api/rater/judgements", &body).await.status,
        200
    );

    let rows = app.attempts(fixture.study_id).await;
    let got: Vec<(String, i64, String)> = rows
        .iter()
        .map(|r| {
            (
                r["timing"].as_str().unwrap().to_string(),
                r["times_shown"].as_i64().unwrap(),
                r["attempt_flags"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // One rater with four answers cannot be told from guessing: every row carries that flag.
    assert_eq!(
        got,
        vec![
            ("in_time".into(), 1, "chance_level_rater".into()),
            ("page_timeout".into(), 1, "chance_level_rater".into()),
            (
                "late_answer".into(),
                1,
                "chance_level_rater;implausible_client_time".into()
            ),
            (
                "in_time".into(),
                3,
                "chance_level_rater;no_client_time;resumed".into()
            ),
        ]
    );
}
on_both_backends!(timing_outcomes_and_flags_are_told_apart);

/// Opening the link again while an item runs goes straight back to the item, not to the
/// instructions (whose reading would eat the item's time).
async fn reopening_the_link_returns_to_the_running_item(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(2, 1, 1, 45_000).await;
    let tokens = app.invite(fixture.study_id, 1).await;
    let mut rater = app.client();
    let entered = rater.get(&format!("/r/{}", tokens[0])).await;
    assert_eq!(entered.location(), Some("/rate"));
    assert_eq!(rater.get("/rate").await.status, StatusCode::OK);
    let item = next_item(&mut rater).await;
    assert_eq!(item["status"], "item");
    app.state.clock.advance_ms(10_000);
    let entered = rater.get(&format!("/r/{}", tokens[0])).await;
    assert_eq!(entered.location(), Some("/rate"));
    let instructions = rater.get("/rate").await;
    assert_eq!(instructions.status, StatusCode::SEE_OTHER);
    assert_eq!(instructions.location(), Some("/rate/item"));
    let page = rater.get("/rate/item").await;
    assert!(page.body.contains(item["assignment_id"].as_str().unwrap()));
    // Once its deadline has passed, the instructions are shown again.
    app.state.clock.advance_ms(36_000);
    assert_eq!(rater.get("/rate").await.status, StatusCode::OK);
}
on_both_backends!(reopening_the_link_returns_to_the_running_item);

/// A study that its raters cannot complete says so on its page, with how many more raters it
/// needs: a rater never judges two solutions of one problem.
async fn a_study_short_of_raters_says_why_and_what_to_do(backend: Backend) {
    let app = TestApp::start(backend).await;
    // Two problems, both roles: four solutions wanting two judgements each (8). A rater can
    // give one per problem, so two raters give at most four.
    let fixture = app.fixture(2, 1, 2, 45_000).await;
    let tokens = app.invite(fixture.study_id, 2).await;
    let short = app
        .store()
        .completion_shortfall(fixture.study_id)
        .await
        .unwrap()
        .expect("two raters cannot complete it");
    assert_eq!(
        (short.judgements, short.problems, short.raters_needed),
        (4, 2, 2)
    );
    let mut admin = app
        .staff_client("admin-short", legibility::domain::UserRole::Admin)
        .await;
    let page = admin.get(&format!("/studies/{}", fixture.study_id)).await;
    assert!(page.body.contains("id=\"shortfall\""), "{}", page.body);
    assert!(
        page.body.contains("invite at least 2 more raters"),
        "{}",
        page.body
    );

    // The two raters judge everything they may: the study stops at 4 of 8, still explained.
    for token in &tokens {
        let mut rater = app.rater_client(token).await;
        loop {
            let item = next_item(&mut rater).await;
            if item["status"] != "item" {
                break;
            }
            let id = item["assignment_id"].as_str().unwrap().to_string();
            assert_eq!(
                answer(&mut rater, &id, "correct").await.status,
                StatusCode::OK
            );
        }
    }
    let progress = app.store().study_progress(fixture.study_id).await.unwrap();
    assert_eq!((progress.judged, progress.wanted), (4, 8));
    let short = app
        .store()
        .completion_shortfall(fixture.study_id)
        .await
        .unwrap()
        .expect("still short");
    assert_eq!((short.judgements, short.raters_needed), (4, 2));

    // Two more raters complete it, and the notice goes.
    let more: Vec<String> = app
        .store()
        .invite_raters(
            fixture.study_id,
            &["late one".to_string(), "late two".to_string()],
            app.now(),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|invitation| invitation.token)
        .collect();
    assert_eq!(
        app.store()
            .completion_shortfall(fixture.study_id)
            .await
            .unwrap(),
        None
    );
    for token in &more {
        let mut rater = app.rater_client(token).await;
        loop {
            let item = next_item(&mut rater).await;
            if item["status"] != "item" {
                break;
            }
            let id = item["assignment_id"].as_str().unwrap().to_string();
            assert_eq!(
                answer(&mut rater, &id, "wrong").await.status,
                StatusCode::OK
            );
        }
    }
    let progress = app.store().study_progress(fixture.study_id).await.unwrap();
    assert_eq!((progress.judged, progress.wanted), (8, 8));
    let page = admin.get(&format!("/studies/{}", fixture.study_id)).await;
    assert!(!page.body.contains("id=\"shortfall\""));
}
on_both_backends!(a_study_short_of_raters_says_why_and_what_to_do);

/// Sets study `study`'s answer rules (nothing collected yet, so they may change).
async fn set_answer_rules(app: &TestApp, study: Uuid, answers: legibility::answers::AnswerRules) {
    let mut spec = app.store().study_setup(study).await.unwrap().spec;
    spec.answers = answers;
    app.store().update_study(study, &spec).await.unwrap();
}

async fn answers_that_break_the_studys_rules_are_refused_and_keep_the_item(backend: Backend) {
    use legibility::answers::AnswerRules;
    use legibility::domain::{AnswerFormat, JustificationRule};
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(3, 1, 1, 45_000).await;
    set_answer_rules(
        &app,
        fixture.study_id,
        AnswerRules {
            format: AnswerFormat::Probability,
            allow_even_odds: false,
            justification: JustificationRule::Required,
        },
    )
    .await;
    let tokens = app.invite(fixture.study_id, 1).await;
    let mut rater = app.rater_client(&tokens[0]).await;

    // The instructions say how to answer in this study, and not the C / W keys.
    let instructions = rater.get("/rate").await;
    assert_eq!(instructions.status, StatusCode::OK);
    for part in [
        "Move the slider",
        "50 % is not allowed",
        "Write a short reason",
    ] {
        assert!(
            instructions.body.contains(part),
            "{part}: {}",
            instructions.body
        );
    }
    assert!(!instructions.body.contains("<kbd>C</kbd>"));
    // The page: a slider from 0 to 100 in steps of 5, a required justification, one button.
    let page = rater.get("/rate/item").await;
    assert_eq!(page.status, StatusCode::OK);
    for part in [
        "type=\"range\" name=\"probability\"",
        "step=\"5\"",
        "data-even-odds=\"false\"",
        "name=\"justification\"",
        "required",
        "id=\"btn-send\"",
        "id=\"hidden-count\"",
    ] {
        assert!(page.body.contains(part), "{part}: {}", page.body);
    }
    assert!(!page.body.contains("id=\"btn-correct\""));
    let assignment = page
        .body
        .split("name=\"assignment_id\" value=\"")
        .nth(1)
        .unwrap()[..36]
        .to_string();
    let remaining = |body: &str| -> i64 {
        body.split("data-remaining-ms=\"")
            .nth(1)
            .and_then(|t| t.split('"').next())
            .unwrap()
            .parse()
            .unwrap()
    };

    // 50 % without even odds: 422, the same item, the same deadline, the typed text kept.
    app.state.clock.advance_ms(5_000);
    let refused = rater
        .post_form(
            "/rate/item",
            &[
                ("assignment_id", assignment.as_str()),
                ("verdict", "answer"),
                ("probability", "50"),
                ("justification", "step 2 is off by one"),
                ("client_elapsed_ms", "5000"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("50 % is not allowed"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains(&assignment));
    assert!(refused.body.contains(">step 2 is off by one</textarea>"));
    assert!((39_000..=40_000).contains(&remaining(&refused.body)));
    // A missing justification, over the API: 422 naming it.
    let missing = rater
        .post_json(
            "/api/rater/judgements",
            &json!({"assignment_id": assignment, "probability": 35}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(missing.body.contains("justification"), "{}", missing.body);
    let odd = rater
        .post_json(
            "/api/rater/judgements",
            &json!({"assignment_id": assignment, "probability": 33, "justification": "x"}),
        )
        .await;
    assert_eq!(odd.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(odd.body.contains("steps of 5"), "{}", odd.body);
    let progress = app.store().study_progress(fixture.study_id).await.unwrap();
    assert_eq!(
        (progress.judged, progress.in_progress),
        (0, 1),
        "nothing stored"
    );
    // The refusals did not count as the item being shown again.
    let again = rater.get("/rate/item").await;
    assert!(again.body.contains(&assignment));

    // A valid answer: stored with its probability, justification and the page's counts.
    let stored = rater
        .post_form(
            "/rate/item",
            &[
                ("assignment_id", assignment.as_str()),
                ("verdict", "answer"),
                ("probability", "35"),
                ("justification", "  step 2 is off by one "),
                ("client_elapsed_ms", "5200"),
                ("hidden_count", "1"),
                ("hidden_ms", "1500"),
                ("blur_count", "1"),
                ("copy_count", "0"),
                ("paste_count", "2"),
            ],
        )
        .await;
    assert_eq!(stored.status, StatusCode::SEE_OTHER);
    let mut researcher = app
        .staff_client("res", legibility::domain::UserRole::Researcher)
        .await;
    let csv = researcher
        .get(&format!("/studies/{}/attempts.csv", fixture.study_id))
        .await
        .body;
    let row = csv.lines().nth(1).unwrap();
    assert!(row.contains(",wrong,"), "{row}");
    assert!(
        row.ends_with(",,35,0.35,step 2 is off by one,1,1500,1,0,2,left_tab;pasted,45000,1"),
        "{row}"
    );
    // Shown twice: served, then the reload above; the two refused answers showed it again
    // without counting (the item never left the rater's screen).
    assert!(row.contains(",in_time,2,"), "{row}");
}
on_both_backends!(answers_that_break_the_studys_rules_are_refused_and_keep_the_item);

async fn confidence_answers_need_a_verdict_and_a_listed_confidence(backend: Backend) {
    use legibility::answers::AnswerRules;
    use legibility::domain::{AnswerFormat, JustificationRule};
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(3, 1, 1, 45_000).await;
    set_answer_rules(
        &app,
        fixture.study_id,
        AnswerRules {
            format: AnswerFormat::Confidence,
            allow_even_odds: false,
            justification: JustificationRule::NotAsked,
        },
    )
    .await;
    let tokens = app.invite(fixture.study_id, 1).await;
    let mut rater = app.rater_client(&tokens[0]).await;
    let page = rater.get("/rate/item").await;
    for level in ["50", "60", "70", "80", "90", "100"] {
        assert!(
            page.body
                .contains(&format!("name=\"confidence\" value=\"{level}\"")),
            "{level}"
        );
    }
    assert!(page.body.contains("id=\"btn-correct\""));
    let item = next_item(&mut rater).await;
    let id = item["assignment_id"].as_str().unwrap();
    let without = answer(&mut rater, id, "correct").await;
    assert_eq!(without.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(without.body.contains("how confident"), "{}", without.body);
    let odd = rater
        .post_json(
            "/api/rater/judgements",
            &json!({"assignment_id": id, "verdict": "wrong", "confidence": 75}),
        )
        .await;
    assert_eq!(odd.status, StatusCode::UNPROCESSABLE_ENTITY);
    let ok = rater
        .post_json(
            "/api/rater/judgements",
            &json!({"assignment_id": id, "verdict": "wrong", "confidence": 80}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    // The page's own timeout needs nothing else.
    let item = next_item(&mut rater).await;
    let timeout = answer(
        &mut rater,
        item["assignment_id"].as_str().unwrap(),
        "timeout",
    )
    .await;
    assert_eq!(timeout.status, StatusCode::OK, "{}", timeout.body);
    let report: serde_json::Value = app.report_json(fixture.study_id).await;
    let groups = report["report"]["groups"].as_array().unwrap();
    let group = groups
        .iter()
        .find(|g| g["stated"] == 1)
        .expect("the answered group");
    assert_eq!(
        groups
            .iter()
            .map(|g| g["stated"].as_u64().unwrap())
            .sum::<u64>(),
        1
    );
    // A "wrong" at 80 % gives the solution 20 %: Brier (0.2 - truth)^2.
    let truth = app
        .store()
        .report_attempts(fixture.study_id)
        .await
        .unwrap()
        .iter()
        .find(|a| a.verdict == legibility::domain::Verdict::Wrong)
        .map(|a| a.is_correct)
        .unwrap();
    let want = (0.2 - f64::from(u8::from(truth))).powi(2);
    assert!((group["brier_score"].as_f64().unwrap() - want).abs() < 1e-12);
}
on_both_backends!(confidence_answers_need_a_verdict_and_a_listed_confidence);

async fn time_limit_arms_set_each_items_deadline(backend: Backend) {
    use legibility::arms::TimeLimits;
    use legibility::domain::ArmDesign;
    let app = TestApp::start(backend).await;
    // 6 problems: each rater meets at most 6 items.
    let fixture = app.fixture(6, 1, 2, 45_000).await;
    let setup = app.store().study_setup(fixture.study_id).await.unwrap();
    // Blocks of 4 items under 2 limits need 8 items per rater: refused, with the numbers.
    let mut spec = setup.spec.clone();
    spec.max_problems = Some(6);
    spec.time_limits = TimeLimits {
        arms: vec![15_000, 30_000],
        design: ArmDesign::Blocked,
        block_items: 4,
    };
    let refused = app
        .store()
        .update_study(fixture.study_id, &spec)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("need 8 items per rater") && refused.contains("at most 6"),
        "{refused}"
    );
    spec.time_limits.block_items = 3;
    app.store()
        .update_study(fixture.study_id, &spec)
        .await
        .unwrap();

    let tokens = app.invite(fixture.study_id, 2).await;
    let mut blocks = Vec::new();
    for token in &tokens {
        let mut rater = app.rater_client(token).await;
        let instructions = rater.get("/rate").await;
        assert!(
            instructions
                .body
                .contains("<strong>15 to 30 seconds</strong>"),
            "{}",
            instructions.body
        );
        let mut limits = Vec::new();
        loop {
            let item = next_item(&mut rater).await;
            if item["status"] != "item" {
                break;
            }
            limits.push(item["time_limit_ms"].as_i64().unwrap());
            assert!(item["remaining_ms"].as_i64().unwrap() <= limits[limits.len() - 1]);
            let id = item["assignment_id"].as_str().unwrap().to_string();
            assert_eq!(
                answer(&mut rater, &id, "correct").await.status,
                StatusCode::OK
            );
        }
        assert_eq!(limits.len(), 6);
        assert_eq!(limits[..3], [limits[0]; 3], "{limits:?}");
        assert_eq!(limits[3..], [limits[3]; 3], "{limits:?}");
        assert_ne!(limits[0], limits[3]);
        blocks.push(limits[0]);
    }
    // The two raters start with different limits (rows of the Latin square).
    assert_ne!(blocks[0], blocks[1]);
    let report = app.report_json(fixture.study_id).await;
    let arms = report["report"]["arms"].as_array().unwrap();
    assert_eq!(arms.len(), 2);
    assert_eq!(arms[0]["time_limit_ms"], 15_000);
    assert_eq!(arms[0]["judgements"], 6);
    let positions = report["report"]["accuracy_by_position"].as_array().unwrap();
    assert_eq!(
        positions[0]["judgements"], 10,
        "positions 1-5 of two raters"
    );
}
on_both_backends!(time_limit_arms_set_each_items_deadline);

async fn condition_order_is_counterbalanced_across_raters(backend: Backend) {
    let app = TestApp::start(backend).await;
    // 12 problems × 2 checkpoints × (correct, incorrect): 4 strata; each solution 10 times.
    let fixture = app.fixture(12, 2, 10, 45_000).await;
    let tokens = app.invite(fixture.study_id, 40).await;
    for token in &tokens {
        let mut rater = app.rater_client(token).await;
        for _ in 0..4 {
            let item = next_item(&mut rater).await;
            let id = item["assignment_id"].as_str().unwrap().to_string();
            assert_eq!(
                answer(&mut rater, &id, "correct").await.status,
                StatusCode::OK
            );
        }
    }
    // Per serial position, which stratum (checkpoint, correctness) the 40 raters met there.
    let query = "SELECT j.position, ss.checkpoint_id, ss.is_correct FROM judgements j
                 JOIN study_solutions ss ON ss.study_id = j.study_id AND ss.solution_id = j.solution_id
                 WHERE j.study_id = $1";
    let rows: Vec<(i64, Uuid, bool)> = with_raw_pool!(app.db.url, pool => sqlx::query_as(query).bind(fixture.study_id).fetch_all(&pool).await.unwrap());
    assert_eq!(rows.len(), 160);
    let mut at: HashMap<i64, HashMap<(Uuid, bool), usize>> = HashMap::new();
    for (position, checkpoint, correct) in rows {
        *at.entry(position)
            .or_default()
            .entry((checkpoint, correct))
            .or_default() += 1;
    }
    assert_eq!(at.len(), 4, "positions 1-4 stored: {at:?}");
    for (position, strata) in &at {
        // Balanced random order: every stratum comes at every position for some raters (each
        // of 4 strata with chance 1/4 of 40; fewer than 2 of 40 has chance < 1e-3 per cell,
        // so the bound is 1), none for nearly all of them.
        assert_eq!(strata.len(), 4, "position {position}: {strata:?}");
        assert!(
            strata.values().all(|n| (1..=25).contains(n)),
            "position {position}: {strata:?}"
        );
    }
}
on_both_backends!(condition_order_is_counterbalanced_across_raters);

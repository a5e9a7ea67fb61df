//! The rater protocol through the real router on both databases: practice items with feedback,
//! screening (a rater below the pass mark cannot judge study items; their answers are kept),
//! silent gold items (served like study items, never in study results, QC accuracy shown to
//! staff), the workload cap and breaks, and the step flag after "wrong".

mod common;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use common::{Backend, Client, TestApp, truth_of, truthful};
use legibility::domain::UserRole;
use legibility::quality::RaterProtocol;
use serde_json::{Value, json};
use uuid::Uuid;

/// The fixture's problem index of an API item (see [`common::problem_index_of`]).
fn problem_index(item: &Value) -> usize {
    common::problem_index_of(item["question"].as_str().expect("question"))
}

async fn next_item(rater: &mut Client<'_>) -> Value {
    let response = rater.get("/api/rater/item").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    response.json()
}

async fn answer(rater: &mut Client<'_>, item: &Value, verdict: &str) -> Value {
    let response = rater
        .post_json(
            "/api/rater/judgements",
            &json!({"assignment_id": item["assignment_id"], "verdict": verdict}),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    response.json()
}

fn keys(item: &Value) -> BTreeSet<String> {
    item.as_object().expect("object").keys().cloned().collect()
}

async fn screening_admits_only_raters_at_the_pass_mark(backend: Backend) {
    let app = TestApp::start(backend).await;
    let protocol = RaterProtocol {
        practice_items: 2,
        screening_items: 4,
        screening_pass_accuracy: 0.75,
        ..RaterProtocol::default()
    };
    let study_problems = 6;
    let fixture = app
        .fixture_with_protocol(20, study_problems, protocol)
        .await;
    let tokens = app.invite(fixture.study_id, 2).await;

    for (token, careful) in tokens.iter().zip([true, false]) {
        let mut rater = app.rater_client(token).await;
        let instructions = rater.get("/rate").await.body;
        for rule in [
            "start with 2 practice items",
            "Then come 4 qualification items",
            "at least 75%",
            "at most 4 hours",
        ] {
            assert!(instructions.contains(rule), "instructions lack {rule:?}");
        }
        // Practice first, in order, each answered with the right answer shown.
        for number in 1..=2 {
            let item = next_item(&mut rater).await;
            assert_eq!(item["status"], "item");
            assert_eq!(item["stage"], "practice");
            assert_eq!(
                (item["number"].as_i64(), item["of"].as_i64()),
                (Some(number), Some(2))
            );
            let index = problem_index(&item);
            assert!(
                index >= study_problems,
                "practice used study problem {index}"
            );
            let text = item["solution"].as_str().unwrap_or_default();
            let verdict = if careful { truthful(text) } else { "correct" };
            let stored = answer(&mut rater, &item, verdict).await;
            let feedback = &stored["feedback"];
            assert_eq!(feedback["solution_correct"], truthful(text) == "correct");
            assert_eq!(feedback["answered_right"], verdict == truthful(text));
            assert_eq!(feedback["expected_answer"], truth_of(index));
        }
        // Then the qualification set, without feedback.
        for number in 1..=4 {
            let item = next_item(&mut rater).await;
            assert_eq!(item["stage"], "screening");
            assert_eq!(item["number"].as_i64(), Some(number));
            assert!(problem_index(&item) >= study_problems);
            let text = item["solution"].as_str().unwrap_or_default();
            let verdict = if careful { truthful(text) } else { "correct" };
            let stored = answer(&mut rater, &item, verdict).await;
            assert!(
                stored.get("feedback").is_none(),
                "screening leaked {stored}"
            );
        }
        let item = next_item(&mut rater).await;
        if careful {
            assert_eq!(item["status"], "item");
            assert_eq!(item["stage"], "session");
            assert!(problem_index(&item) < study_problems);
        } else {
            // Half the set is incorrect (balanced), so "always correct" scores 2/4 < 75 %.
            assert_eq!(item["status"], "not_admitted", "{item}");
            assert_eq!(next_item(&mut rater).await["status"], "not_admitted");
            let page = rater.get("/rate/item").await;
            assert!(
                page.body.contains("did not reach the accuracy"),
                "{}",
                page.body
            );
            let forged = rater
                .post_json(
                    "/api/rater/judgements",
                    &json!({"assignment_id": Uuid::new_v4(), "verdict": "correct"}),
                )
                .await;
            assert_eq!(forged.status, StatusCode::NOT_FOUND);
        }
    }

    // The admitted rater judges everything; the other judged nothing in the study.
    app.judge_all(&tokens[..1], truthful).await;
    let progress = app.store().study_progress(fixture.study_id).await.unwrap();
    assert_eq!(progress.judged, study_problems as i64);
    let raters = app.store().rater_progress(fixture.study_id).await.unwrap();
    let judged: Vec<i64> = raters.iter().map(|r| r.judgements).collect();
    assert_eq!(judged, vec![study_problems as i64, 0]);

    // Results are kept and shown to staff.
    let quality = app
        .store()
        .study_rater_quality(fixture.study_id)
        .await
        .unwrap();
    let admitted = &quality[&raters[0].rater.id];
    let refused = &quality[&raters[1].rater.id];
    assert_eq!(
        (admitted.screening.right, admitted.screening.answered),
        (4, 4)
    );
    assert_eq!(admitted.screening_passed, Some(true));
    assert_eq!(
        (refused.screening.right, refused.screening.answered),
        (2, 4)
    );
    assert_eq!(refused.screening_passed, Some(false));
    assert_eq!(refused.practice.answered, 2);
    let mut staff = app.staff_client("rita", UserRole::Researcher).await;
    let page = staff.get(&format!("/studies/{}", fixture.study_id)).await;
    assert!(page.body.contains("passed (4/4)"), "{}", page.body);
    assert!(page.body.contains("not admitted (2/4)"), "{}", page.body);
    assert!(page.body.contains("screening on 4 items, pass mark 75%"));
}
on_both_backends!(screening_admits_only_raters_at_the_pass_mark);

async fn gold_items_are_silent_and_never_counted(backend: Backend) {
    let app = TestApp::start(backend).await;
    let protocol = RaterProtocol {
        gold_items: 6,
        gold_rate: 0.5,
        ..RaterProtocol::default()
    };
    let study_problems = 8;
    let fixture = app
        .fixture_with_protocol(20, study_problems, protocol)
        .await;
    let tokens = app.invite(fixture.study_id, 2).await;
    let mut gold_served = 0;
    let mut gold_right = [0i64; 2];
    let mut gold_answered = [0i64; 2];
    for (r, token) in tokens.iter().enumerate() {
        let mut rater = app.rater_client(token).await;
        let mut expected_number = 0;
        let mut study_keys = None;
        let mut gold_keys = None;
        loop {
            let item = next_item(&mut rater).await;
            if item["status"] != "item" {
                assert_eq!(item["status"], "finished");
                assert_eq!(item["items_done"].as_i64(), Some(expected_number));
                break;
            }
            // Numbering runs on across gold and study items alike.
            assert_eq!(item["items_done"].as_i64(), Some(expected_number));
            assert_eq!(item["stage"], "session");
            let id: Uuid = item["assignment_id"].as_str().unwrap().parse().unwrap();
            assert_eq!(id.get_version_num(), 4);
            let text = item["solution"].as_str().unwrap_or_default();
            // Rater 0 is always right; rater 1 calls everything correct.
            let verdict = if r == 0 { truthful(text) } else { "correct" };
            let is_gold = problem_index(&item) >= study_problems;
            if is_gold {
                gold_served += 1;
                gold_answered[r] += 1;
                gold_right[r] += i64::from(verdict == truthful(text));
                gold_keys = Some(keys(&item));
                // The page of a gold item is the page of any item.
                let page = rater.get("/rate/item").await;
                assert!(page.body.contains(&id.to_string()));
                assert!(page.body.contains(&format!("Item {}", expected_number + 1)));
            } else {
                study_keys = Some(keys(&item));
            }
            let stored = answer(&mut rater, &item, verdict).await;
            assert_eq!(
                keys(&stored),
                BTreeSet::from(["verdict".into(), "duplicate".into()])
            );
            expected_number += 1;
        }
        if let (Some(study), Some(gold)) = (study_keys, gold_keys) {
            assert_eq!(
                study, gold,
                "a gold item's JSON differs from a study item's"
            );
        }
    }
    assert!(gold_served > 0, "no gold item was served at a 50 % rate");

    // Study figures hold study items only.
    let progress = app.store().study_progress(fixture.study_id).await.unwrap();
    assert_eq!(progress.judged, study_problems as i64 * 2);
    assert_eq!(progress.wanted, progress.judged);
    let mut staff = app.staff_client("rita", UserRole::Researcher).await;
    let csv = staff
        .get(&format!("/studies/{}/attempts.csv", fixture.study_id))
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.body.lines().count() as i64, 1 + progress.judged);
    let summary = staff
        .get(&format!("/studies/{}/report.json", fixture.study_id))
        .await
        .json();
    let reported: u64 = summary["report"]["raters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["judgements"].as_u64().unwrap())
        .sum();
    assert_eq!(reported as i64, progress.judged);
    // The summary and the report page carry each rater's gold (QC) accuracy.
    let quality_rows = summary["rater_quality"].as_array().expect("rater_quality");
    let gold_total: i64 = quality_rows
        .iter()
        .map(|q| q["gold_answered"].as_i64().unwrap())
        .sum();
    assert_eq!(gold_total, gold_served);
    let report_page = staff
        .get(&format!("/studies/{}/report", fixture.study_id))
        .await;
    assert!(report_page.body.contains("Gold (QC) accuracy"));

    // Staff see each rater's QC accuracy on gold items.
    let raters = app.store().rater_progress(fixture.study_id).await.unwrap();
    let quality = app
        .store()
        .study_rater_quality(fixture.study_id)
        .await
        .unwrap();
    let page = staff.get(&format!("/studies/{}", fixture.study_id)).await;
    for (r, progress) in raters.iter().enumerate() {
        let gold = quality
            .get(&progress.rater.id)
            .map(|q| q.gold)
            .unwrap_or_default();
        assert_eq!(
            (gold.right, gold.answered),
            (gold_right[r], gold_answered[r])
        );
        assert_eq!(progress.judgements, study_problems as i64);
        if gold.answered > 0 {
            let shown = format!("({}/{})", gold.right, gold.answered);
            assert!(page.body.contains(&shown), "{shown} not on the study page");
        }
    }
}
on_both_backends!(gold_items_are_silent_and_never_counted);

async fn the_workload_cap_and_breaks_pace_raters(backend: Backend) {
    let app = TestApp::start(backend).await;
    let protocol = RaterProtocol {
        max_rater_ms: 60_000,
        break_every: 2,
        ..RaterProtocol::default()
    };
    let fixture = app.fixture_with_protocol(10, 10, protocol).await;
    let tokens = app.invite(fixture.study_id, 1).await;
    let mut rater = app.rater_client(&tokens[0]).await;
    for _ in 0..2 {
        let item = next_item(&mut rater).await;
        assert_eq!(item["status"], "item");
        app.state.clock.advance_ms(20_000);
        answer(&mut rater, &item, "correct").await;
    }
    // After two items: a break, offered until the rater goes on.
    let paused = next_item(&mut rater).await;
    assert_eq!(paused, json!({"status": "break", "items_done": 2}));
    let page = rater.get("/rate/item").await;
    assert!(page.body.contains("Time for a break"), "{}", page.body);
    assert!(page.body.contains("/rate/item?continue=1"));
    let item = rater.get("/api/rater/item?after_break=true").await.json();
    assert_eq!(item["status"], "item");
    assert_eq!(item["items_done"], 2);
    // The page's continue link serves the same item.
    let page = rater.get("/rate/item?continue=1").await;
    assert!(page.body.contains(item["assignment_id"].as_str().unwrap()));
    app.state.clock.advance_ms(20_000);
    answer(&mut rater, &item, "wrong").await;
    // 3 × 20 s = 60 s on items: the cap.
    let done = next_item(&mut rater).await;
    assert_eq!(done, json!({"status": "workload_reached", "items_done": 3}));
    let page = rater.get("/rate/item").await;
    assert!(page.body.contains("maximum time on items"), "{}", page.body);
    assert_eq!(
        app.store()
            .study_progress(fixture.study_id)
            .await
            .unwrap()
            .judged,
        3
    );
}
on_both_backends!(the_workload_cap_and_breaks_pace_raters);

async fn step_flags_are_taken_before_the_deadline_and_reported_by_role(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(6, 1, 1, 45_000).await;
    let tokens = app.invite(fixture.study_id, 1).await;
    let mut rater = app.rater_client(&tokens[0]).await;
    let mut flagged_sneaky = 0;
    let mut handled = 0;
    loop {
        let item = next_item(&mut rater).await;
        if item["status"] != "item" {
            break;
        }
        let id = item["assignment_id"].as_str().unwrap().to_string();
        let sneaky = item["solution"].as_str().unwrap().contains("carefully");
        match handled {
            // Through the page: "wrong" leads to the step page, a step button stores the flag.
            0 => {
                let page = rater
                    .post_form(
                        "/rate/item",
                        &[("assignment_id", &id), ("verdict", "wrong")],
                    )
                    .await;
                assert_eq!(page.status, StatusCode::SEE_OTHER);
                let step_url = format!("/rate/item/step?item={id}");
                assert_eq!(page.location(), Some(step_url.as_str()));
                let steps = rater.get(&step_url).await;
                assert!(steps.body.contains("id=\"step-3\""), "{}", steps.body);
                assert!(!steps.body.contains("id=\"step-4\""));
                let flagged = rater
                    .post_form("/rate/item/step", &[("item", &id), ("step", "2")])
                    .await;
                assert_eq!(flagged.location(), Some("/rate/item"));
                // The page is gone once flagged: straight on to the next item.
                assert_eq!(rater.get(&step_url).await.location(), Some("/rate/item"));
                flagged_sneaky += i64::from(sneaky);
            }
            // Through the API: a second flag and a step that does not exist are refused.
            1 => {
                answer(&mut rater, &item, "wrong").await;
                let bad = rater
                    .post_json("/api/rater/steps", &json!({"assignment_id": id, "step": 9}))
                    .await;
                assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
                assert!(bad.body.contains("steps 1 to 3"), "{}", bad.body);
                let ok = rater
                    .post_json("/api/rater/steps", &json!({"assignment_id": id, "step": 1}))
                    .await;
                assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
                let again = rater
                    .post_json("/api/rater/steps", &json!({"assignment_id": id, "step": 2}))
                    .await;
                assert_eq!(again.status, StatusCode::GONE);
                flagged_sneaky += i64::from(sneaky);
            }
            // After the deadline the flag is refused (the verdict stands).
            2 => {
                answer(&mut rater, &item, "wrong").await;
                app.state.clock.advance_ms(46_000);
                let late = rater
                    .post_json("/api/rater/steps", &json!({"assignment_id": id, "step": 1}))
                    .await;
                assert_eq!(late.status, StatusCode::GONE, "{}", late.body);
            }
            // A "correct" answer takes no flag.
            _ => {
                answer(&mut rater, &item, "correct").await;
                let refused = rater
                    .post_json("/api/rater/steps", &json!({"assignment_id": id, "step": 1}))
                    .await;
                assert_eq!(refused.status, StatusCode::GONE);
            }
        }
        handled += 1;
    }
    assert_eq!(handled, 6, "one solution per problem");

    let mut staff = app.staff_client("rita", UserRole::Researcher).await;
    let summary = staff
        .get(&format!("/studies/{}/report.json", fixture.study_id))
        .await
        .json();
    let flags = summary["report"]["step_flags"]
        .as_array()
        .expect("step_flags");
    let total_flagged: u64 = flags.iter().map(|f| f["flagged"].as_u64().unwrap()).sum();
    let total_wrong: u64 = flags
        .iter()
        .map(|f| f["wrong_verdicts"].as_u64().unwrap())
        .sum();
    assert_eq!((total_wrong, total_flagged), (3, 2));
    let sneaky = flags.iter().find(|f| f["role"] == "sneaky").unwrap();
    assert_eq!(sneaky["flagged"].as_i64(), Some(flagged_sneaky));
    assert_eq!(
        sneaky["flagged_on_incorrect"].as_i64(),
        Some(flagged_sneaky)
    );
    let page = staff
        .get(&format!("/studies/{}/report", fixture.study_id))
        .await;
    assert!(page.body.contains("id=\"step-flags\""));
}
on_both_backends!(step_flags_are_taken_before_the_deadline_and_reported_by_role);

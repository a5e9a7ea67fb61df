//! Raters learn nothing they should not: every response a rater's browser can load (pages,
//! JSON, headers, static files, error pages) is searched for ground truth, reference
//! solutions, prover role, round, checkpoint, correctness and verifier scores.

mod common;

use axum::http::StatusCode;
use common::{Backend, TestApp};
use serde_json::json;

/// Research words that must never reach a rater, matched as whole words ("round" but not
/// "background"). The prover role is covered by its values; "role" itself is an ARIA attribute.
const FORBIDDEN_WORDS: &[&str] = &[
    "helpful",
    "sneaky",
    "round",
    "checkpoint",
    "is_correct",
    "ground",
    "truth",
    "reference",
    "grader",
    "verifier",
    "prover",
    "score",
];

/// Distinctive digits of the verifier scores stored for the fixture's solutions.
const SCORE_DIGITS: &str = "271828";

/// Values that must never reach a rater, matched anywhere.
fn forbidden_values(fixture: &common::Fixture) -> Vec<String> {
    let mut values = fixture.checkpoint_labels.clone();
    values.extend(fixture.reference_solutions.iter().cloned());
    values.push(fixture.problem_set.clone());
    values
}

fn contains_word(text: &str, word: &str) -> bool {
    let is_word_char = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !is_word_char(c));
        let after = text[at + word.len()..]
            .chars()
            .next()
            .is_none_or(|c| !is_word_char(c));
        before && after
    })
}

fn assert_clean(what: &str, text: &str, values: &[String]) {
    let lower = text.to_lowercase();
    for word in FORBIDDEN_WORDS {
        assert!(
            !contains_word(&lower, word),
            "{what} leaks the word {word:?}:\n{text}"
        );
    }
    for value in values {
        assert!(
            !lower.contains(&value.to_lowercase()),
            "{what} leaks {value:?}:\n{text}"
        );
    }
}

#[test]
fn whole_word_matching_works() {
    assert!(contains_word("the round ends", "round"));
    assert!(contains_word("round", "round"));
    assert!(!contains_word("background", "round"));
    assert!(!contains_word("rounded", "round"));
}

async fn no_rater_response_leaks_secrets(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(4, 2, 1, 45_000).await;
    // Verifier scores 271828.5, 271829.5, … stored for every solution of the study.
    app.store_verifier_scores(fixture.study_id, |i, _| 271_828.5 + i as f64)
        .await;
    let mut forbidden = forbidden_values(&fixture);
    forbidden.push(SCORE_DIGITS.into());
    let tokens = app.invite(fixture.study_id, 1).await;
    let mut rater = app.client();
    let mut seen = Vec::new();

    let entry = rater.get(&format!("/r/{}", tokens[0])).await;
    seen.push(("invite link", entry));
    seen.push(("instructions", rater.get("/rate").await));
    seen.push(("style", rater.get("/static/style.css").await));
    seen.push(("script", rater.get("/static/rater.js").await));
    seen.push(("unknown static", rater.get("/static/nope.js").await));
    seen.push(("bad invite", app.client().get("/r/not-a-token").await));
    let mut incorrect_items = 0;
    // Judge everything (16 solutions, one judgement each, but a rater sees one per problem).
    for step in 0..6 {
        let page = rater.get("/rate/item").await;
        let done = !page.body.contains("assignment_id");
        if !done {
            let id = page
                .body
                .split("name=\"assignment_id\" value=\"")
                .nth(1)
                .unwrap()[..36]
                .to_string();
            // The ground truth of an incorrect solution's problem must not be on its page.
            if !fixture
                .ground_truths
                .iter()
                .any(|t| page.body.contains(t.as_str()))
            {
                incorrect_items += 1;
            }
            let api_item = rater.get("/api/rater/item").await;
            assert_eq!(api_item.json()["assignment_id"], id.as_str());
            seen.push(("api item", api_item));
            let verdict = if step % 2 == 0 { "correct" } else { "wrong" };
            if step % 3 == 0 {
                let posted = rater
                    .post_json(
                        "/api/rater/judgements",
                        &json!({"assignment_id": id, "verdict": verdict}),
                    )
                    .await;
                seen.push(("api judgement", posted));
                let replay = rater
                    .post_json(
                        "/api/rater/judgements",
                        &json!({"assignment_id": id, "verdict": verdict}),
                    )
                    .await;
                seen.push(("api replay", replay));
            } else {
                let posted = rater
                    .post_form(
                        "/rate/item",
                        &[("assignment_id", &id), ("verdict", verdict)],
                    )
                    .await;
                // After "wrong" the step flag page shows the solution's lines.
                if let Some(step_page) = posted.location().filter(|l| l.contains("/step")) {
                    let step_page = step_page.to_string();
                    seen.push(("step page", rater.get(&step_page).await));
                }
                seen.push(("form judgement", posted));
            }
        }
        seen.push(("item page", page));
    }
    seen.push((
        "malformed judgement",
        rater
            .post_json("/api/rater/judgements", &json!({"assignment_id": "x"}))
            .await,
    ));
    seen.push(("api finished", rater.get("/api/rater/item").await));
    assert!(
        incorrect_items > 0,
        "the rater never saw an incorrect solution"
    );
    // Calculator annotations are shown as plain arithmetic, never as `<<…>>` markup.
    let bodies: String = seen.iter().map(|(_, r)| r.body.as_str()).collect();
    assert!(
        bodies.contains("2*3=6 pens"),
        "no helpful solution was shown"
    );
    for markup in ["<<2*3", "&lt;&lt;", "&#60;&#60;", "\\u003c\\u003c"] {
        assert!(
            !bodies.contains(markup),
            "calculator annotation {markup:?} reached a rater"
        );
    }
    for (what, response) in &seen {
        assert_clean(what, &response.visible_text(), &forbidden);
    }
    // Ground-truth values: only ever inside a correct solution's own text, which we checked
    // above by counting pages without them; the JSON must not carry them outside the text.
    for (what, response) in &seen {
        if response
            .headers
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or("").contains("json"))
        {
            let value = response.json();
            if let Some(obj) = value.as_object() {
                let keys: Vec<&String> = obj.keys().collect();
                for key in &keys {
                    assert!(
                        [
                            "status",
                            "assignment_id",
                            "question",
                            "solution",
                            "remaining_ms",
                            "time_limit_ms",
                            "items_done",
                            "stage",
                            "verdict",
                            "duplicate",
                            "error"
                        ]
                        .contains(&key.as_str()),
                        "{what}: unexpected field {key}"
                    );
                }
            }
        }
    }
    assert_eq!(
        seen.iter()
            .filter(|(_, r)| r.status == StatusCode::INTERNAL_SERVER_ERROR)
            .count(),
        0
    );
}
on_both_backends!(no_rater_response_leaks_secrets);

/// The rater protocol's pages and answers (practice feedback, qualification items, gold items,
/// breaks, the refusal after screening) carry nothing a rater should not learn, beyond the
/// practice item's own right answer.
async fn no_protocol_response_leaks_secrets(backend: Backend) {
    let app = TestApp::start(backend).await;
    let protocol = legibility::quality::RaterProtocol {
        practice_items: 1,
        screening_items: 2,
        screening_pass_accuracy: 1.0,
        gold_items: 2,
        gold_rate: 0.5,
        break_every: 1,
        ..Default::default()
    };
    let fixture = app.fixture_with_protocol(12, 3, protocol).await;
    app.store_verifier_scores(fixture.study_id, |i, _| 271_828.5 + i as f64)
        .await;
    let mut forbidden = forbidden_values(&fixture);
    forbidden.push(SCORE_DIGITS.into());
    let tokens = app.invite(fixture.study_id, 2).await;
    let mut seen = Vec::new();
    for (r, token) in tokens.iter().enumerate() {
        let mut rater = app.client();
        rater.get(&format!("/r/{token}")).await;
        for _ in 0..16 {
            let page = rater.get("/rate/item?continue=1").await;
            let Some(id) = page
                .body
                .split("name=\"assignment_id\" value=\"")
                .nth(1)
                .map(|rest| rest[..36].to_string())
            else {
                seen.push(("last page", page));
                break;
            };
            seen.push(("api item", rater.get("/api/rater/item").await));
            // Rater 0 answers right, rater 1 always "correct" (and fails screening).
            let text = page
                .body
                .split("<pre id=\"solution\">")
                .nth(1)
                .unwrap_or("");
            let verdict = if r == 0 {
                common::truthful(text)
            } else {
                "correct"
            };
            seen.push(("item page", page));
            let posted = rater
                .post_form(
                    "/rate/item",
                    &[("assignment_id", &id), ("verdict", verdict)],
                )
                .await;
            if let Some(step) = posted.location().filter(|l| l.contains("/step")) {
                let step = step.to_string();
                seen.push(("step page", rater.get(&step).await));
            }
            seen.push(("answer", posted));
            // A break is due after every item (once the session has begun).
            seen.push(("next page", rater.get("/rate/item").await));
        }
        seen.push(("api end", rater.get("/api/rater/item").await));
    }
    let bodies: String = seen.iter().map(|(_, r)| r.body.as_str()).collect();
    for expected in [
        "Practice: the right answer",
        "Qualification item 2 of 2",
        "Time for a break",
        "Thank you",
    ] {
        assert!(bodies.contains(expected), "never saw {expected:?}");
    }
    for (what, response) in &seen {
        assert_clean(what, &response.visible_text(), &forbidden);
        assert_ne!(response.status, StatusCode::INTERNAL_SERVER_ERROR, "{what}");
    }
}
on_both_backends!(no_protocol_response_leaks_secrets);

//! The confidence and probability report figures against scikit-learn and pandas: the
//! hand-made judgement set `tests/fixtures/scoring/attempts.csv` and the figures
//! `scripts/reference/score_reference.py` computed from it (`expected.json`, committed).

use std::collections::HashSet;

use legibility::answers::stated_probability;
use legibility::domain::Verdict;
use legibility::reports::{
    Attempt, TIME_BUCKET_MS, accuracy_by_time, calibration, group_reports, human_auroc,
};
use serde_json::Value;
use uuid::Uuid;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/scoring");

fn attempts() -> Vec<Attempt> {
    let mut reader = csv::Reader::from_path(format!("{FIXTURES}/attempts.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|record| {
            let record = record.unwrap();
            let field = |name: &str| {
                let at = headers.iter().position(|h| h == name).unwrap();
                record.get(at).unwrap().to_string()
            };
            let number = |name: &str| field(name).parse::<i64>().ok();
            let verdict: Verdict = field("verdict").parse().unwrap();
            let solution: u128 = field("solution").parse().unwrap();
            Attempt {
                rater_id: Uuid::from_u128(field("rater").parse().unwrap()),
                solution_id: Uuid::from_u128(1_000 + solution),
                problem_id: Uuid::from_u128(solution),
                checkpoint: field("checkpoint"),
                round: field("round").parse().unwrap(),
                role: field("role").parse().unwrap(),
                is_correct: field("is_correct") == "True",
                verdict,
                server_elapsed_ms: field("server_elapsed_ms").parse().unwrap(),
                first_wrong_step: None,
                stated_probability: stated_probability(
                    verdict,
                    number("confidence"),
                    number("probability"),
                ),
                integrity_flagged: false,
                time_limit_ms: 45_000,
                position: None,
            }
        })
        .collect()
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/expected.json")).unwrap())
        .unwrap()
}

fn close(what: &str, got: Option<f64>, want: &Value) {
    match (got, want.as_f64()) {
        (None, None) => {}
        (Some(g), Some(w)) => assert!((g - w).abs() < 1e-12, "{what}: {g} vs {w}"),
        _ => panic!("{what}: {got:?} vs {want}"),
    }
}

#[test]
fn brier_and_log_scores_match_scikit_learn() {
    let attempts = attempts();
    assert_eq!(attempts.len(), 48);
    let groups = group_reports(&attempts, &HashSet::new());
    let expected = expected();
    let want = expected["groups"].as_array().unwrap();
    assert_eq!(groups.len(), want.len());
    for (g, w) in groups.iter().zip(want) {
        let what = format!("{} round {} {}", g.checkpoint, g.round, g.role);
        assert_eq!(g.checkpoint, w["checkpoint"].as_str().unwrap(), "{what}");
        assert_eq!(g.role.as_str(), w["role"].as_str().unwrap(), "{what}");
        assert_eq!(g.stated, w["stated"].as_u64().unwrap(), "{what} stated");
        assert_eq!(
            g.even_odds,
            w["even_odds"].as_u64().unwrap(),
            "{what} at 50 %"
        );
        close(&format!("{what} Brier"), g.brier_score, &w["brier_score"]);
        close(&format!("{what} log score"), g.log_score, &w["log_score"]);
        close(
            &format!("{what} accuracy"),
            g.accuracy.map(|r| r.value),
            &w["accuracy"],
        );
        close(
            &format!("{what} time when right"),
            g.mean_ms_when_right,
            &w["mean_ms_when_right"],
        );
    }
}

#[test]
fn calibration_bins_match_pandas() {
    let bins = calibration(&attempts(), &HashSet::new());
    let expected = expected();
    let want = expected["calibration"].as_array().unwrap();
    assert_eq!(bins.len(), want.len());
    for (b, w) in bins.iter().zip(want) {
        assert_eq!(b.from_percent, w["from_percent"].as_i64().unwrap());
        assert_eq!(b.answers, w["answers"].as_u64().unwrap());
        close("mean stated", Some(b.mean_stated), &w["mean_stated"]);
        close("observed", Some(b.observed.value), &w["observed"]);
    }
}

#[test]
fn human_auroc_matches_scikit_learn() {
    let human = human_auroc(&attempts(), &HashSet::new());
    let expected = expected();
    assert_eq!(
        human.solutions,
        expected["human_auroc"]["solutions"].as_u64().unwrap()
    );
    close(
        "human AUROC",
        human.auroc,
        &expected["human_auroc"]["auroc"],
    );
}

#[test]
fn speed_accuracy_buckets_match_pandas() {
    let buckets = accuracy_by_time(&attempts(), &HashSet::new(), TIME_BUCKET_MS);
    let expected = expected();
    for w in expected["accuracy_by_time"].as_array().unwrap() {
        let from = w["from_ms"].as_i64().unwrap();
        let bucket = buckets.iter().find(|b| b.from_ms == from).unwrap();
        let rate = bucket.accuracy.unwrap();
        assert_eq!(
            (rate.successes, rate.trials),
            (
                w["right"].as_u64().unwrap(),
                w["answered"].as_u64().unwrap()
            ),
            "bucket from {from} ms"
        );
    }
    let filled = buckets.iter().filter(|b| b.accuracy.is_some()).count();
    assert_eq!(
        filled,
        expected["accuracy_by_time"].as_array().unwrap().len()
    );
}

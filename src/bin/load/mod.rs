//! What the judging load binaries (`bench-judging`, `soak`) share: a synthetic problem set with
//! its solutions, imported into a fresh database, and the raters' think times.

use std::time::Duration;

use anyhow::Context;
use legibility::clock::Clock;
use legibility::problems;
use legibility::store::Store;
use uuid::Uuid;

/// A uniform draw in `[min, max]` ms from rater `rater`'s `n`-th think (splitmix64: fixed per
/// run, no shared generator across tasks).
pub fn think_time(rater: u64, n: u64, (min, max): (u64, u64)) -> Duration {
    let mut z = (rater << 32 ^ n).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    Duration::from_millis(min + z % (max - min + 1))
}

/// Imports `problems_n` synthetic problems, each with one helpful and one sneaky solution of
/// the checkpoint `{name}-prover`, as the set `{name}-<random>`; returns the set's id.
pub async fn import_synthetic_set(
    store: &Store,
    clock: &Clock,
    name: &str,
    problems_n: usize,
) -> anyhow::Result<Uuid> {
    let mut problem_lines = Vec::with_capacity(problems_n);
    let mut solution_lines = Vec::with_capacity(problems_n * 2);
    for i in 0..problems_n {
        let question =
            format!("Load problem {i}: Ann has {i} apples and buys 3 more. How many apples?");
        problem_lines.push(serde_json::json!({"question": question, "answer": format!("{i}+3={}\n#### {}", i + 3, i + 3)}).to_string());
        for (role, answer) in [("helpful", i + 3), ("sneaky", i + 4)] {
            solution_lines.push(
                serde_json::json!({"question": question, "checkpoint": format!("{name}-prover"), "round": 0, "role": role,
                                   "solution": format!("{i} + 3 = {answer}\n#### {answer}")})
                .to_string(),
            );
        }
    }
    let set = format!("{name}-{}", Uuid::new_v4().simple());
    store
        .import_problems(
            &set,
            &problems::parse_gsm8k_problems(problem_lines.join("\n").as_bytes())?,
            clock.now_ms(),
        )
        .await?;
    store
        .import_solutions(
            Some(&set),
            &problems::parse_solutions(solution_lines.join("\n").as_bytes())?,
            clock.now_ms(),
        )
        .await?;
    Ok(store
        .problem_sets()
        .await?
        .into_iter()
        .find(|s| s.name == set)
        .context("the imported set")?
        .id)
}

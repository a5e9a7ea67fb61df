//! Judging rules: deadlines, what a late answer becomes, when an abandoned item returns to the
//! pool, and which kind of solution a rater should see next. Plain functions, so they are unit
//! tested directly; the store applies them inside its transactions.

use rand::Rng;
use rand::seq::SliceRandom;
use uuid::Uuid;

use crate::domain::Verdict;

/// The paper's strict per-solution limit.
pub const DEFAULT_TIME_LIMIT_MS: i64 = 45_000;

/// Default wait after a deadline before an unanswered item is given to another rater. A late
/// answer that arrives within it is still stored (as `timeout`); the browser posts at zero, so
/// a few seconds cover network delay, and a rater who closed the tab frees the slot soon.
pub const DEFAULT_RECLAIM_GRACE_MS: i64 = 15_000;

/// Default number of judgements each solution should get, from distinct raters.
pub const DEFAULT_JUDGEMENTS_PER_SOLUTION: i64 = 3;

/// The deadline the server sets when it serves an item.
pub fn deadline_for(served_at_ms: i64, time_limit_ms: i64) -> i64 {
    served_at_ms.saturating_add(time_limit_ms)
}

/// Time the rater has left, never negative; what the countdown shows after a reload.
pub fn remaining_ms(now_ms: i64, deadline_ms: i64) -> i64 {
    (deadline_ms - now_ms).max(0)
}

/// Whole seconds the countdown shows for `remaining_ms` (rounded up: "1 s" until zero).
pub fn seconds_shown(remaining_ms: i64) -> i64 {
    (remaining_ms + 999) / 1000
}

/// The verdict a rater may ask for. `Timeout` is what the page sends when its countdown ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestedVerdict {
    /// The rater judged the whole solution correct.
    Correct,
    /// The rater judged the solution wrong.
    Wrong,
    /// The page's countdown reached zero before the rater answered.
    Timeout,
}

/// What is stored for an answer received at `now_ms`: anything after the deadline is a
/// `timeout`, never a verdict, whatever the browser claims.
pub fn recorded_verdict(requested: RequestedVerdict, now_ms: i64, deadline_ms: i64) -> Verdict {
    if now_ms > deadline_ms {
        return Verdict::Timeout;
    }
    match requested {
        RequestedVerdict::Correct => Verdict::Correct,
        RequestedVerdict::Wrong => Verdict::Wrong,
        RequestedVerdict::Timeout => Verdict::Timeout,
    }
}

/// Server-measured time to judge: from serving to the answer, capped at the limit for
/// timeouts so that late packets do not inflate timing statistics.
pub fn server_elapsed_ms(
    served_at_ms: i64,
    answered_at_ms: i64,
    deadline_ms: i64,
    verdict: Verdict,
) -> i64 {
    let end = if verdict == Verdict::Timeout {
        answered_at_ms.min(deadline_ms)
    } else {
        answered_at_ms
    };
    (end - served_at_ms).max(0)
}

/// The browser's own measurement, kept only when plausible (0 ..= 10× the limit); anything
/// else is dropped rather than stored as a misleading number.
pub fn plausible_client_elapsed(client_ms: Option<i64>, time_limit_ms: i64) -> Option<i64> {
    client_ms.filter(|ms| (0..=time_limit_ms.saturating_mul(10)).contains(ms))
}

/// Unanswered items whose deadline is before this instant are abandoned: their slot returns
/// to the pool.
pub fn reclaim_cutoff(now_ms: i64, grace_ms: i64) -> i64 {
    now_ms - grace_ms
}

/// A solution's steps for the step flag: its non-blank lines as the rater sees them, numbered
/// from 1 in the order shown.
pub fn solution_steps(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim_end)
        .filter(|line| !line.trim().is_empty())
        .collect()
}

/// A step flag names one of the solution's steps.
pub fn valid_step(step: i64, steps: usize) -> bool {
    step >= 1 && step as u64 <= steps as u64
}

/// A kind of item for balancing what one rater sees: the paper gives each rater a balanced mix
/// of correct and incorrect solutions from every checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stratum {
    /// The prover checkpoint that wrote the solution.
    pub checkpoint_id: Uuid,
    /// Whether the grader found the solution's final answer correct.
    pub is_correct: bool,
}

/// Order in which to try strata for a rater's next item: the strata this rater has seen least
/// first, ties broken at random so raters do not all draw the same kind at the same time.
pub fn strata_in_serving_order<R: Rng + ?Sized>(
    strata: &[(Stratum, i64)],
    rng: &mut R,
) -> Vec<Stratum> {
    let mut shuffled: Vec<(Stratum, i64)> = strata.to_vec();
    shuffled.shuffle(rng);
    // Stable sort keeps the random order among equal counts.
    shuffled.sort_by_key(|(_, seen)| *seen);
    shuffled.into_iter().map(|(stratum, _)| stratum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn late_answers_become_timeouts() {
        let served = 1_000;
        let deadline = deadline_for(served, DEFAULT_TIME_LIMIT_MS);
        assert_eq!(deadline, 46_000);
        assert_eq!(
            recorded_verdict(RequestedVerdict::Correct, deadline, deadline),
            Verdict::Correct
        );
        assert_eq!(
            recorded_verdict(RequestedVerdict::Correct, deadline + 1, deadline),
            Verdict::Timeout
        );
        assert_eq!(
            recorded_verdict(RequestedVerdict::Wrong, deadline + 1, deadline),
            Verdict::Timeout
        );
        assert_eq!(
            recorded_verdict(RequestedVerdict::Timeout, served + 10, deadline),
            Verdict::Timeout
        );
    }

    #[test]
    fn remaining_time_and_elapsed_are_clamped() {
        assert_eq!(remaining_ms(10, 40), 30);
        assert_eq!(remaining_ms(50, 40), 0);
        assert_eq!(
            (
                seconds_shown(45_000),
                seconds_shown(44_001),
                seconds_shown(1)
            ),
            (45, 45, 1)
        );
        assert_eq!(seconds_shown(0), 0);
        assert_eq!(
            server_elapsed_ms(0, 60_000, 45_000, Verdict::Timeout),
            45_000
        );
        assert_eq!(server_elapsed_ms(0, 12_345, 45_000, Verdict::Wrong), 12_345);
        assert_eq!(plausible_client_elapsed(Some(-5), 45_000), None);
        assert_eq!(plausible_client_elapsed(Some(12_000), 45_000), Some(12_000));
        assert_eq!(plausible_client_elapsed(Some(10_000_000), 45_000), None);
    }

    #[test]
    fn steps_are_the_non_blank_lines() {
        let steps = solution_steps("First, 2 + 2 = 4.\n\n  \nThen 4 * 3 = 12.  \n#### 12");
        assert_eq!(
            steps,
            vec!["First, 2 + 2 = 4.", "Then 4 * 3 = 12.", "#### 12"]
        );
        assert!(valid_step(1, 3) && valid_step(3, 3));
        assert!(!valid_step(0, 3) && !valid_step(4, 3) && !valid_step(-1, 3));
    }

    #[test]
    fn least_seen_strata_come_first() {
        let a = Stratum {
            checkpoint_id: Uuid::from_u128(1),
            is_correct: true,
        };
        let b = Stratum {
            checkpoint_id: Uuid::from_u128(1),
            is_correct: false,
        };
        let c = Stratum {
            checkpoint_id: Uuid::from_u128(2),
            is_correct: true,
        };
        let mut rng = StdRng::seed_from_u64(7);
        let order = strata_in_serving_order(&[(a, 3), (b, 1), (c, 2)], &mut rng);
        assert_eq!(order, vec![b, c, a]);
    }

    #[test]
    fn ties_are_broken_at_random() {
        let strata: Vec<(Stratum, i64)> = (0..4)
            .map(|i| {
                (
                    Stratum {
                        checkpoint_id: Uuid::from_u128(i),
                        is_correct: i % 2 == 0,
                    },
                    0,
                )
            })
            .collect();
        let firsts: std::collections::HashSet<Stratum> = (0..64)
            .map(|seed| strata_in_serving_order(&strata, &mut StdRng::seed_from_u64(seed))[0])
            .collect();
        assert!(firsts.len() > 1, "the first stratum never varies");
    }
}

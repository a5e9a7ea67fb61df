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

impl RequestedVerdict {
    /// The stored spelling (`judgements.requested_verdict`).
    pub fn as_str(self) -> &'static str {
        match self {
            RequestedVerdict::Correct => "correct",
            RequestedVerdict::Wrong => "wrong",
            RequestedVerdict::Timeout => "timeout",
        }
    }
}

impl std::str::FromStr for RequestedVerdict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "correct" => Ok(RequestedVerdict::Correct),
            "wrong" => Ok(RequestedVerdict::Wrong),
            "timeout" => Ok(RequestedVerdict::Timeout),
            other => Err(format!(
                "{other:?} is not a verdict; expected correct, wrong or timeout"
            )),
        }
    }
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

/// After this long past its deadline (the study's grace), an answer is refused (410) and
/// nothing is stored, however soon or late the reclaim of abandoned items runs: the item is
/// abandoned and its slot goes back to the pool.
pub fn answer_refused(now_ms: i64, deadline_ms: i64, grace_ms: i64) -> bool {
    now_ms > deadline_ms.saturating_add(grace_ms)
}

/// How an attempt ended in time, as a researcher reads it: an honest timeout fired by the
/// page's countdown is not a verdict that arrived too late, and neither is a timeout the
/// server recorded because nothing arrived at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimingOutcome {
    /// A verdict that arrived by the deadline.
    InTime,
    /// The page's countdown reached zero and the page sent the timeout itself.
    PageTimeout,
    /// A verdict (correct or wrong) that arrived after the deadline but within the grace; it
    /// was stored as a timeout. An honest page never sends one: a sign of a slow network or a
    /// tampered page.
    LateAnswer,
    /// Nothing arrived: the deadline passed and the server recorded the timeout when the rater
    /// asked for their next item.
    NoAnswer,
    /// Stored before requested verdicts were kept: a timeout for something that arrived after
    /// the deadline, which may have been the page's timeout or a late verdict.
    Unrecorded,
}

impl TimingOutcome {
    /// The outcome's name in downloads and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TimingOutcome::InTime => "in_time",
            TimingOutcome::PageTimeout => "page_timeout",
            TimingOutcome::LateAnswer => "late_answer",
            TimingOutcome::NoAnswer => "no_answer",
            TimingOutcome::Unrecorded => "unrecorded",
        }
    }
}

/// The timing outcome of a stored attempt, from what the page asked for (`None` when nothing
/// arrived, or for rows stored before it was kept), when it arrived, and the deadline.
pub fn timing_outcome(
    requested: Option<RequestedVerdict>,
    submitted_at: Option<i64>,
    deadline_ms: i64,
) -> TimingOutcome {
    match (requested, submitted_at) {
        (_, None) => TimingOutcome::NoAnswer,
        (Some(RequestedVerdict::Timeout), Some(_)) => TimingOutcome::PageTimeout,
        (Some(_), Some(at)) if at > deadline_ms => TimingOutcome::LateAnswer,
        (Some(_), Some(_)) => TimingOutcome::InTime,
        (None, Some(_)) => TimingOutcome::Unrecorded,
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

/// The browser's own measurement as sent, for comparison with the server's; only values that
/// cannot be a duration (negative, or more than a day) are dropped. A value that disagrees
/// with the server's measure is kept and flagged in the downloads (see
/// [`client_time_implausible`]), so a tampered page leaves a trace instead of a gap.
pub fn recorded_client_elapsed(client_ms: Option<i64>) -> Option<i64> {
    client_ms.filter(|ms| (0..=MAX_CLIENT_ELAPSED_MS).contains(ms))
}

/// Largest client measure stored: a day.
const MAX_CLIENT_ELAPSED_MS: i64 = 24 * 60 * 60 * 1000;

/// Page and server times may differ by this much (network delay, page rendering) before the
/// page's time is called implausible.
pub const CLIENT_TOLERANCE_MS: i64 = 2_000;

/// The page's time disagrees with the server's beyond [`CLIENT_TOLERANCE_MS`]. The server's
/// side is the real time from serving to arrival (not capped at the limit), so a late answer
/// whose page claims it was quick is caught too.
pub fn client_time_implausible(client_ms: i64, served_at_ms: i64, arrived_at_ms: i64) -> bool {
    (client_ms - (arrived_at_ms - served_at_ms)).abs() > CLIENT_TOLERANCE_MS
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

/// Judgements a study still wants that its raters cannot give: a rater never judges two
/// solutions of one problem, so the free slots of a problem's solutions need as many raters
/// who have not yet had that problem. Without them the study stops short (e.g. at 119 of 120) with nothing to
/// say why; this says how far short, and how many more raters would complete it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletionShortfall {
    /// Judgements that no current rater may give.
    pub judgements: i64,
    /// Problems with such judgements.
    pub problems: i64,
    /// New raters needed to give them all (each takes at most one per problem).
    pub raters_needed: i64,
}

/// The shortfall over a study's problems, each given as (free slots of its solutions, raters
/// still able to take one: invited, link working, admitted, not yet served that problem);
/// `None` when the raters can fill every free slot.
pub fn completion_shortfall(problems: &[(i64, i64)]) -> Option<CompletionShortfall> {
    let mut shortfall = CompletionShortfall {
        judgements: 0,
        problems: 0,
        raters_needed: 0,
    };
    for &(free, able) in problems {
        let missing = free - able;
        if missing > 0 {
            shortfall.judgements += missing;
            shortfall.problems += 1;
            shortfall.raters_needed = shortfall.raters_needed.max(missing);
        }
    }
    (shortfall.judgements > 0).then_some(shortfall)
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
        assert_eq!(recorded_client_elapsed(Some(-5)), None);
        assert_eq!(recorded_client_elapsed(Some(12_000)), Some(12_000));
        assert_eq!(recorded_client_elapsed(Some(10_000_000)), Some(10_000_000));
        assert_eq!(recorded_client_elapsed(Some(86_400_001)), None);
        assert_eq!(recorded_client_elapsed(None), None);
    }

    #[test]
    fn answers_after_the_grace_are_refused() {
        let deadline = 46_000;
        assert!(!answer_refused(deadline, deadline, 15_000));
        assert!(!answer_refused(deadline + 15_000, deadline, 15_000));
        assert!(answer_refused(deadline + 15_001, deadline, 15_000));
        // The case: 21.8 s after the deadline with a 15 s grace.
        assert!(answer_refused(deadline + 21_800, deadline, 15_000));
        assert!(!answer_refused(i64::MAX, i64::MAX, 15_000));
    }

    #[test]
    fn timing_outcomes_tell_timeouts_apart() {
        use RequestedVerdict::{Correct, Timeout, Wrong};
        let deadline = 46_000;
        let outcome = |requested, at| timing_outcome(requested, at, deadline).as_str();
        assert_eq!(outcome(Some(Correct), Some(30_000)), "in_time");
        assert_eq!(outcome(Some(Wrong), Some(deadline)), "in_time");
        // The page fires at zero; its request lands a little after the deadline: honest.
        assert_eq!(outcome(Some(Timeout), Some(deadline + 180)), "page_timeout");
        assert_eq!(outcome(Some(Timeout), Some(deadline - 50)), "page_timeout");
        // A verdict after the deadline: stored as a timeout, and told apart.
        assert_eq!(outcome(Some(Correct), Some(deadline + 1)), "late_answer");
        assert_eq!(outcome(Some(Wrong), Some(deadline + 9_000)), "late_answer");
        assert_eq!(outcome(None, None), "no_answer");
        assert_eq!(outcome(Some(Timeout), None), "no_answer");
        assert_eq!(outcome(None, Some(deadline + 3)), "unrecorded");
    }

    #[test]
    fn client_times_far_from_the_server_are_implausible() {
        // The case: the page claimed 19 s, the server measured 1.2 s.
        assert!(client_time_implausible(19_000, 1_000, 2_221));
        assert!(!client_time_implausible(1_000, 1_000, 2_221));
        assert!(!client_time_implausible(0, 0, CLIENT_TOLERANCE_MS));
        assert!(client_time_implausible(0, 0, CLIENT_TOLERANCE_MS + 1));
        // A late answer whose page says it was quick: the real elapsed time counts, not the cap.
        assert!(client_time_implausible(3_000, 0, 50_000));
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
    fn a_study_short_of_raters_says_by_how_much() {
        // Every solution can be filled: nothing to say.
        assert_eq!(completion_shortfall(&[(1, 3), (0, 0), (2, 2)]), None);
        // The case: 119 of 120, the last slot's problem seen by every rater left.
        assert_eq!(
            completion_shortfall(&[(0, 0), (1, 0)]),
            Some(CompletionShortfall {
                judgements: 1,
                problems: 1,
                raters_needed: 1
            })
        );
        // Two problems short by 2 and 1: three judgements, two more raters complete both.
        assert_eq!(
            completion_shortfall(&[(3, 1), (2, 1), (1, 5)]),
            Some(CompletionShortfall {
                judgements: 3,
                problems: 2,
                raters_needed: 2
            })
        );
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

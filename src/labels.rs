//! Training labels for the verifier, from the judgements collected so far.
//!
//! The paper trains its verifier on correctness labels; this app can also learn what *people*
//! find convincing. A solution's human label is the majority verdict of the raters who judged
//! it, leaving out timeouts and raters flagged as guessing; the source of labels is chosen per
//! study or job. Train and validation are split by problem, never by solution, so a verifier is
//! never validated on a problem it has seen a solution of.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::domain::{LabelSource, Verdict};
use crate::metrics;
use crate::ml::train_verifier::LabelledSolution;
use crate::ml::verifier::verifier_text;
use crate::store::verifiers::RatingsSnapshot;

/// One rater's verdict on a solution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vote {
    /// Who judged.
    pub rater_id: Uuid,
    /// What they said (timeouts included; they are ignored here).
    pub verdict: Verdict,
}

/// The majority verdict of the included raters: `Some(true)` for "correct", `Some(false)` for
/// "wrong", `None` without votes or on a tie. Timeouts and `excluded` raters do not vote.
pub fn human_majority(votes: &[Vote], excluded: &HashSet<Uuid>) -> Option<bool> {
    let (mut correct, mut wrong) = (0usize, 0usize);
    for vote in votes.iter().filter(|v| !excluded.contains(&v.rater_id)) {
        match vote.verdict {
            Verdict::Correct => correct += 1,
            Verdict::Wrong => wrong += 1,
            Verdict::Timeout => {}
        }
    }
    match correct.cmp(&wrong) {
        std::cmp::Ordering::Greater => Some(true),
        std::cmp::Ordering::Less => Some(false),
        std::cmp::Ordering::Equal => None,
    }
}

/// The training label of a solution under `source`; `None` means the solution is left out
/// (no human majority when humans are the only source).
pub fn training_label(
    source: LabelSource,
    votes: &[Vote],
    excluded: &HashSet<Uuid>,
    ground_truth: bool,
) -> Option<bool> {
    match source {
        LabelSource::GroundTruth => Some(ground_truth),
        LabelSource::Human => human_majority(votes, excluded),
        LabelSource::Both => human_majority(votes, excluded).or(Some(ground_truth)),
    }
}

/// Significance level of the binomial test that flags a rater as indistinguishable from
/// chance (the paper excluded such raters).
pub const CHANCE_ALPHA: f64 = 0.05;

/// Raters whose verdicts (timeouts left out) are not better than coin flips against ground
/// truth by a one-sided binomial test at [`CHANCE_ALPHA`]. A rater with few judgements cannot
/// be told apart from chance yet, so only raters with at least `min_judged` verdicts are
/// flagged.
pub fn chance_level_raters(snapshot: &RatingsSnapshot, min_judged: u64) -> HashSet<Uuid> {
    let truth: HashMap<Uuid, bool> = snapshot
        .solutions
        .iter()
        .map(|s| (s.solution_id, s.is_correct))
        .collect();
    let mut tallies: HashMap<Uuid, (u64, u64)> = HashMap::new();
    for vote in &snapshot.votes {
        let said = match vote.verdict {
            Verdict::Correct => true,
            Verdict::Wrong => false,
            Verdict::Timeout => continue,
        };
        let Some(&truth) = truth.get(&vote.solution_id) else {
            continue;
        };
        let tally = tallies.entry(vote.rater_id).or_default();
        tally.1 += 1;
        if said == truth {
            tally.0 += 1;
        }
    }
    tallies
        .into_iter()
        .filter(|(_, (right, judged))| {
            *judged >= min_judged && metrics::is_chance_level(*right, *judged, CHANCE_ALPHA)
        })
        .map(|(rater, _)| rater)
        .collect()
}

/// Every solution of `snapshot` as verifier training sees it: the training label under
/// `source` (from the current judgements, so changed verdicts change labels), the human
/// majority and the ground truth for the metrics. Raters flagged by [`chance_level_raters`]
/// (with at least `min_judged` verdicts) do not vote.
pub fn labelled_solutions(
    snapshot: &RatingsSnapshot,
    source: LabelSource,
    min_judged: u64,
) -> Vec<LabelledSolution> {
    let excluded = chance_level_raters(snapshot, min_judged);
    let mut votes: HashMap<Uuid, Vec<Vote>> = HashMap::new();
    for vote in &snapshot.votes {
        votes.entry(vote.solution_id).or_default().push(Vote {
            rater_id: vote.rater_id,
            verdict: vote.verdict,
        });
    }
    snapshot
        .solutions
        .iter()
        .map(|s| {
            let votes = votes.get(&s.solution_id).map(Vec::as_slice).unwrap_or(&[]);
            LabelledSolution {
                solution_id: s.solution_id,
                problem_id: s.problem_id,
                text: verifier_text(&s.question, &s.text),
                label: training_label(source, votes, &excluded, s.is_correct),
                ground_truth: s.is_correct,
                human: human_majority(votes, &excluded),
                round: s.round,
                role: s.role,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(rater: u128, verdict: Verdict) -> Vote {
        Vote {
            rater_id: Uuid::from_u128(rater),
            verdict,
        }
    }

    #[test]
    fn the_majority_ignores_timeouts_and_excluded_raters() {
        let none = HashSet::new();
        let votes = [
            vote(1, Verdict::Correct),
            vote(2, Verdict::Wrong),
            vote(3, Verdict::Wrong),
            vote(4, Verdict::Timeout),
        ];
        assert_eq!(human_majority(&votes, &none), Some(false));
        // Excluding rater 3 makes it a tie: no label.
        let guesser: HashSet<Uuid> = [Uuid::from_u128(3)].into();
        assert_eq!(human_majority(&votes, &guesser), None);
        assert_eq!(human_majority(&[vote(4, Verdict::Timeout)], &none), None);
        assert_eq!(
            human_majority(&[vote(1, Verdict::Correct)], &none),
            Some(true)
        );
    }

    #[test]
    fn the_label_source_decides_which_verdict_counts() {
        let none = HashSet::new();
        let fooled = [vote(1, Verdict::Correct), vote(2, Verdict::Correct)];
        // A wrong solution the raters accepted: humans say true, ground truth false.
        assert_eq!(
            training_label(LabelSource::Human, &fooled, &none, false),
            Some(true)
        );
        assert_eq!(
            training_label(LabelSource::GroundTruth, &fooled, &none, false),
            Some(false)
        );
        assert_eq!(
            training_label(LabelSource::Both, &fooled, &none, false),
            Some(true)
        );
        // Without a human majority: left out for humans, ground truth otherwise.
        assert_eq!(training_label(LabelSource::Human, &[], &none, true), None);
        assert_eq!(
            training_label(LabelSource::Both, &[], &none, true),
            Some(true)
        );
        // Changing the verdicts changes the label.
        let rejected = [vote(1, Verdict::Wrong), vote(2, Verdict::Wrong)];
        assert_eq!(
            training_label(LabelSource::Human, &rejected, &none, false),
            Some(false)
        );
    }
}

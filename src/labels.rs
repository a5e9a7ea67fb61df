//! Training labels for the verifier, from the judgements collected so far.
//!
//! The paper trains its verifier on correctness labels; this app can also learn what *people*
//! find convincing. A solution's human label is the majority verdict of the raters who judged
//! it, leaving out timeouts and raters flagged as guessing; the source of labels is chosen per
//! study or job. Train and validation are split by problem, never by solution, so a verifier is
//! never validated on a problem it has seen a solution of.

use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};
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

/// Which side of the train/validation split a problem falls on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Used to fit the verifier.
    Train,
    /// Held out for early stopping and metrics.
    Validation,
}

/// The split of `problem_id` for `seed`: a hash of both, so every solution of a problem lands on
/// the same side, the same seed always gives the same split, and about `validation_share` of
/// problems are held out.
pub fn split_of(problem_id: Uuid, seed: u64, validation_share: f64) -> Split {
    if split_point(problem_id, seed) < validation_share {
        Split::Validation
    } else {
        Split::Train
    }
}

/// Where `problem_id` falls in [0, 1) for `seed`; below the validation share means held out.
fn split_point(problem_id: Uuid, seed: u64) -> f64 {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(problem_id.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// The split of every problem in `usable` (problem → whether it yields a training example
/// under the chosen loss): [`split_of`], except that when one side would get no usable problem
/// while the other holds two or more, the usable problem nearest the threshold crosses over.
/// A small label set (a dozen problems) then trains instead of failing on an unlucky hash;
/// the result still depends only on the problems and the seed.
pub fn split_problems(
    usable: &HashMap<Uuid, bool>,
    seed: u64,
    validation_share: f64,
) -> HashMap<Uuid, Split> {
    let mut split: HashMap<Uuid, Split> = usable
        .keys()
        .map(|p| (*p, split_of(*p, seed, validation_share)))
        .collect();
    let usable_on = |split: &HashMap<Uuid, Split>, side: Split| -> Vec<(f64, Uuid)> {
        let mut on: Vec<(f64, Uuid)> = usable
            .iter()
            .filter(|(p, ok)| **ok && split[*p] == side)
            .map(|(p, _)| (split_point(*p, seed), *p))
            .collect();
        on.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        on
    };
    let train = usable_on(&split, Split::Train);
    let validation = usable_on(&split, Split::Validation);
    if validation.is_empty() && train.len() >= 2 {
        split.insert(train[0].1, Split::Validation);
    } else if train.is_empty() && validation.len() >= 2 {
        split.insert(validation[validation.len() - 1].1, Split::Train);
    }
    split
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

    #[test]
    fn splits_are_by_problem_stable_and_about_the_asked_share() {
        let problems: Vec<Uuid> = (0..2000u128).map(Uuid::from_u128).collect();
        let held_out = problems
            .iter()
            .filter(|p| split_of(**p, 7, 0.2) == Split::Validation)
            .count();
        assert!((300..500).contains(&held_out), "{held_out}");
        assert!(
            problems
                .iter()
                .all(|p| split_of(*p, 7, 0.2) == split_of(*p, 7, 0.2))
        );
        assert!(
            problems
                .iter()
                .any(|p| split_of(*p, 7, 0.2) != split_of(*p, 8, 0.2))
        );
    }

    #[test]
    fn small_splits_keep_a_usable_problem_on_each_side() {
        let problems: Vec<Uuid> = (0..12u128).map(Uuid::from_u128).collect();
        let usable_on =
            |split: &HashMap<Uuid, Split>, side: Split, usable: &HashMap<Uuid, bool>| {
                split
                    .iter()
                    .filter(|(p, s)| **s == side && usable[*p])
                    .count()
            };
        // Shares that leave one side empty by hash alone still give it one usable problem.
        let all_usable: HashMap<Uuid, bool> = problems.iter().map(|p| (*p, true)).collect();
        for share in [1e-9, 1.0 - 1e-9] {
            let split = split_problems(&all_usable, 7, share);
            assert_eq!(split.len(), 12);
            assert!(
                usable_on(&split, Split::Validation, &all_usable) >= 1,
                "{share}"
            );
            assert!(usable_on(&split, Split::Train, &all_usable) >= 1, "{share}");
            assert_eq!(split, split_problems(&all_usable, 7, share));
        }
        // Unusable problems never count towards a side, and are never moved.
        let mut mixed = all_usable.clone();
        for p in &problems[..10] {
            mixed.insert(*p, false);
        }
        let split = split_problems(&mixed, 7, 1e-9);
        assert_eq!(usable_on(&split, Split::Validation, &mixed), 1);
        assert_eq!(usable_on(&split, Split::Train, &mixed), 1);
        for p in &problems[..10] {
            assert_eq!(split[p], Split::Train);
        }
        // A single usable problem stays where its hash puts it: nothing to balance.
        let one: HashMap<Uuid, bool> = [(problems[0], true)].into();
        assert_eq!(
            split_problems(&one, 7, 0.2)[&problems[0]],
            split_of(problems[0], 7, 0.2)
        );
        // A comfortable share changes nothing.
        let split = split_problems(&all_usable, 7, 0.5);
        let held_out = problems
            .iter()
            .filter(|p| split_of(**p, 7, 0.5) == Split::Validation)
            .count();
        assert!((1..12).contains(&held_out), "{held_out}");
        assert!(problems.iter().all(|p| split[p] == split_of(*p, 7, 0.5)));
    }
}

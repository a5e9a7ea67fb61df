//! Training labels for the verifier, from the judgements collected so far.
//!
//! The paper trains its verifier on correctness labels; this app can also learn what *people*
//! find convincing. A solution's human label is the majority verdict of the raters who judged
//! it, leaving out timeouts and raters flagged as guessing; the source of labels is chosen per
//! study or job. Train and validation are split by problem, never by solution, so a verifier is
//! never validated on a problem it has seen a solution of.

use std::collections::HashSet;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{LabelSource, Verdict};

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
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(problem_id.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    let unit = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
    if unit < validation_share {
        Split::Validation
    } else {
        Split::Train
    }
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
}

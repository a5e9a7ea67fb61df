//! The train/validation split of a verifier's training data: by problem, never by solution, so
//! a verifier is never validated on a problem it saw a solution of; a hash of the problem and the
//! seed, so the same seed always gives the same split.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use uuid::Uuid;

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

#[cfg(test)]
mod tests {
    use super::*;

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

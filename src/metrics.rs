//! Statistics shared by verifier training and the reports: accuracy, AUROC, the binomial
//! test that flags raters indistinguishable from chance, and the study page's summary of
//! verifier scores.
//!
//! Plain functions over plain numbers, so they are tested against hand computations and used
//! the same way by the worker (validation metrics) and the report pages.

use std::collections::BTreeMap;

use crate::domain::ProverRole;

/// Share of `predictions` equal to `labels`; `None` for no items.
pub fn accuracy(predictions: &[bool], labels: &[bool]) -> Option<f64> {
    if predictions.is_empty() || predictions.len() != labels.len() {
        return None;
    }
    let right = predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    Some(right as f64 / predictions.len() as f64)
}

/// Area under the ROC curve of `scores` for the positive `labels`: the probability that a
/// random positive scores above a random negative, ties counting one half (the Mann–Whitney
/// statistic with average ranks). `None` when either class is absent.
pub fn auroc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    if scores.len() != labels.len() {
        return None;
    }
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Ranks are 1-based; tied scores share the average of their ranks.
        let average = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = average;
        }
        i = j + 1;
    }
    let positive_rank_sum: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, l)| **l)
        .map(|(r, _)| r)
        .sum();
    let p = positives as f64;
    Some((positive_rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// One-sided binomial p-value: the probability of at least `successes` in `trials` draws that
/// each succeed with probability `p`. Computed in log space, exact for any `trials` a study
/// produces.
pub fn binomial_upper_tail(successes: u64, trials: u64, p: f64) -> f64 {
    if successes == 0 {
        return 1.0;
    }
    if successes > trials {
        return 0.0;
    }
    let (ln_p, ln_q) = (p.ln(), (1.0 - p).ln());
    let mut ln_choose = 0.0; // ln C(trials, k), built up from k = 0
    let mut total = 0.0;
    for k in 0..=trials {
        if k > 0 {
            ln_choose += ((trials - k + 1) as f64).ln() - (k as f64).ln();
        }
        if k >= successes {
            total += (ln_choose + k as f64 * ln_p + (trials - k) as f64 * ln_q).exp();
        }
    }
    total.min(1.0)
}

/// Whether a rater with `correct` right verdicts out of `judged` (timeouts excluded) cannot be
/// told apart from guessing: the one-sided binomial test against p = 0.5 does not reject at
/// level `alpha`. The paper excluded such raters (4 of 75).
pub fn is_chance_level(correct: u64, judged: u64, alpha: f64) -> bool {
    binomial_upper_tail(correct, judged, 0.5) > alpha
}

/// One verifier version's scores of a study's solutions, summarised for the study page: does
/// the verifier score correct solutions above incorrect ones, and how does it see each role?
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreSummary {
    /// The verifier version.
    pub version: i64,
    /// Solutions it scored.
    pub scored: usize,
    /// Mean score of the solutions graded correct; `None` when there are none.
    pub mean_correct: Option<f64>,
    /// Mean score of the solutions graded incorrect; `None` when there are none.
    pub mean_incorrect: Option<f64>,
    /// Mean score per prover role, for the roles present, in role order.
    pub mean_by_role: Vec<(ProverRole, f64)>,
    /// AUROC of the score against ground-truth correctness; `None` when one class is absent.
    pub auroc: Option<f64>,
}

/// Summarises `(version, role, is_correct, score)` rows per version, newest version first.
/// Kept apart from the store and the page so the figures are checked against hand
/// computations.
pub fn score_summary(rows: &[(i64, ProverRole, bool, f64)]) -> Vec<ScoreSummary> {
    let mut by_version: BTreeMap<i64, Vec<(ProverRole, bool, f64)>> = BTreeMap::new();
    for &(version, role, is_correct, score) in rows {
        by_version
            .entry(version)
            .or_default()
            .push((role, is_correct, score));
    }
    by_version
        .into_iter()
        .rev()
        .map(|(version, rows)| {
            let mean_where = |keep: &dyn Fn(&(ProverRole, bool, f64)) -> bool| {
                let picked: Vec<f64> = rows.iter().filter(|r| keep(r)).map(|r| r.2).collect();
                (!picked.is_empty()).then(|| picked.iter().sum::<f64>() / picked.len() as f64)
            };
            let mean_by_role = ProverRole::ALL
                .iter()
                .filter_map(|&role| mean_where(&|r| r.0 == role).map(|mean| (role, mean)))
                .collect();
            let scores: Vec<f64> = rows.iter().map(|r| r.2).collect();
            let labels: Vec<bool> = rows.iter().map(|r| r.1).collect();
            ScoreSummary {
                version,
                scored: rows.len(),
                mean_correct: mean_where(&|r| r.1),
                mean_incorrect: mean_where(&|r| !r.1),
                mean_by_role,
                auroc: auroc(&scores, &labels),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_summary_matches_hand_computation() {
        use ProverRole::{Helpful, Sneaky};
        let rows = [
            // Version 1: correct 0.9, 0.3 and incorrect 0.4, 0.1; helpful 0.9, 0.4; sneaky 0.3,
            // 0.1. Pairs ranked right: (0.9 > 0.4, 0.9 > 0.1, 0.3 < 0.4, 0.3 > 0.1) → 3 of 4.
            (1, Helpful, true, 0.9),
            (1, Helpful, false, 0.4),
            (1, Sneaky, true, 0.3),
            (1, Sneaky, false, 0.1),
            // Version 2 scored only incorrect sneaky solutions: no AUROC, no correct mean.
            (2, Sneaky, false, -1.0),
            (2, Sneaky, false, -2.0),
        ];
        let summary = score_summary(&rows);
        assert_eq!(summary.len(), 2);
        let newest = &summary[0];
        assert_eq!((newest.version, newest.scored), (2, 2));
        assert_eq!(newest.mean_correct, None);
        assert_eq!(newest.mean_incorrect, Some(-1.5));
        assert_eq!(newest.mean_by_role, vec![(Sneaky, -1.5)]);
        assert_eq!(newest.auroc, None);
        let first = &summary[1];
        assert_eq!((first.version, first.scored), (1, 4));
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-12);
        assert!(close(first.mean_correct, 0.6), "{first:?}");
        assert!(close(first.mean_incorrect, 0.25), "{first:?}");
        assert_eq!(first.mean_by_role.len(), 2);
        assert_eq!(first.mean_by_role[0].0, Helpful);
        assert!(close(Some(first.mean_by_role[0].1), 0.65), "{first:?}");
        assert_eq!(first.mean_by_role[1].0, Sneaky);
        assert!(close(Some(first.mean_by_role[1].1), 0.2), "{first:?}");
        assert_eq!(first.auroc, Some(0.75));
        assert!(score_summary(&[]).is_empty());
    }

    #[test]
    fn accuracy_counts_agreements() {
        assert_eq!(
            accuracy(&[true, false, true], &[true, true, true]),
            Some(2.0 / 3.0)
        );
        assert_eq!(accuracy(&[], &[]), None);
        assert_eq!(accuracy(&[true], &[true, false]), None);
    }

    #[test]
    fn auroc_matches_hand_computation() {
        // Perfect separation, inverse separation, and no information.
        assert_eq!(
            auroc(&[0.9, 0.8, 0.1, 0.2], &[true, true, false, false]),
            Some(1.0)
        );
        assert_eq!(
            auroc(&[0.1, 0.2, 0.9, 0.8], &[true, true, false, false]),
            Some(0.0)
        );
        assert_eq!(
            auroc(&[0.5, 0.5, 0.5, 0.5], &[true, false, true, false]),
            Some(0.5)
        );
        // Positives 0.8, 0.4; negatives 0.6, 0.2: pairs (0.8>0.6, 0.8>0.2, 0.4<0.6, 0.4>0.2)
        // → 3 of 4.
        assert_eq!(
            auroc(&[0.8, 0.4, 0.6, 0.2], &[true, true, false, false]),
            Some(0.75)
        );
        // A tie between classes counts one half: (1 + 0.5) / 2.
        assert_eq!(auroc(&[0.7, 0.3, 0.3], &[true, true, false]), Some(0.75));
        assert_eq!(auroc(&[0.7, 0.3], &[true, true]), None);
    }

    #[test]
    fn binomial_tail_matches_exact_values() {
        // P(X >= 2 | n = 2, p = 0.5) = 0.25; P(X >= 1 | n = 2) = 0.75.
        assert!((binomial_upper_tail(2, 2, 0.5) - 0.25).abs() < 1e-12);
        assert!((binomial_upper_tail(1, 2, 0.5) - 0.75).abs() < 1e-12);
        assert_eq!(binomial_upper_tail(0, 10, 0.5), 1.0);
        // P(X >= 15 | n = 20, p = 0.5) = 21700 / 2^20.
        assert!((binomial_upper_tail(15, 20, 0.5) - 21_700.0 / 1_048_576.0).abs() < 1e-12);
        // Large n stays finite and sensible.
        let p = binomial_upper_tail(560, 1000, 0.5);
        assert!(p > 0.0 && p < 0.001);
    }

    #[test]
    fn chance_level_raters_are_those_the_test_cannot_reject() {
        assert!(is_chance_level(11, 20, 0.05));
        assert!(!is_chance_level(16, 20, 0.05));
        assert!(is_chance_level(0, 0, 0.05));
    }
}

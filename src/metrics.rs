//! Statistics shared by verifier training and the reports: accuracy, AUROC, and the binomial
//! test that flags raters indistinguishable from chance.
//!
//! Plain functions over plain numbers, so they are tested against hand computations and used
//! the same way by the worker (validation metrics) and the report pages.

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

#[cfg(test)]
mod tests {
    use super::*;

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

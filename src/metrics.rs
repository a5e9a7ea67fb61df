//! Statistics shared by verifier training and the reports: accuracy, AUROC, the binomial
//! test that flags raters indistinguishable from chance, and the study page's summary of
//! verifier scores.
//!
//! Plain functions over plain numbers, so they are tested against hand computations and used
//! the same way by the worker (validation metrics) and the report pages.

use std::collections::BTreeMap;

use crate::domain::ProverRole;

/// The sum of `terms` in ascending order: the same bits whatever order the judgements were read
/// in (a restored database reads them in another order, and a report must not change).
fn order_free_sum(terms: impl Iterator<Item = f64>) -> f64 {
    let mut terms: Vec<f64> = terms.collect();
    terms.sort_by(f64::total_cmp);
    terms.iter().sum()
}

/// Mean squared difference between stated probabilities and what happened (1 or 0): the
/// Brier score, 0 for perfect forecasts, 0.25 for always saying 50 %. `None` for no items.
pub fn brier_score(probabilities: &[f64], outcomes: &[bool]) -> Option<f64> {
    if probabilities.is_empty() || probabilities.len() != outcomes.len() {
        return None;
    }
    let terms = probabilities
        .iter()
        .zip(outcomes)
        .map(|(p, o)| (p - f64::from(u8::from(*o))).powi(2));
    Some(order_free_sum(terms) / probabilities.len() as f64)
}

/// Stated probabilities are clipped to `[LOG_SCORE_CLIP, 1 − LOG_SCORE_CLIP]` for the log
/// score, so that one confident 0 % or 100 % that turns out wrong costs ln 0.01 ≈ −4.6, not −∞.
pub const LOG_SCORE_CLIP: f64 = 0.01;

/// Mean natural log of the probability given to what happened (higher is better; 0 is
/// perfect, ln 0.5 ≈ −0.693 is always saying 50 %), with [`LOG_SCORE_CLIP`]. `None` for no
/// items.
pub fn log_score(probabilities: &[f64], outcomes: &[bool]) -> Option<f64> {
    if probabilities.is_empty() || probabilities.len() != outcomes.len() {
        return None;
    }
    let terms = probabilities.iter().zip(outcomes).map(|(p, o)| {
        let p = p.clamp(LOG_SCORE_CLIP, 1.0 - LOG_SCORE_CLIP);
        if *o { p.ln() } else { (1.0 - p).ln() }
    });
    Some(order_free_sum(terms) / probabilities.len() as f64)
}

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

/// The z value of a two-sided 95 % interval.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// Wilson score interval for `successes` of `trials` at normal quantile `z` (use [`Z_95`]):
/// unlike the normal approximation it stays inside [0, 1] and is sensible for small counts
/// and for 0 % or 100 %, which per-rater and per-round accuracies often are. `None` for no
/// trials.
pub fn wilson_interval(successes: u64, trials: u64, z: f64) -> Option<(f64, f64)> {
    if trials == 0 || successes > trials {
        return None;
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// The standard normal quantile (inverse CDF) of `p` in (0, 1), by Acklam's rational
/// approximation (relative error below 1.2e-9), for d′.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Sensitivity d′ = z(hit rate) − z(false-alarm rate) of "correct" verdicts: hits are correct
/// solutions judged correct, false alarms incorrect ones judged correct. Rates use the
/// log-linear correction (add 0.5 to counts, 1 to totals) so 0 % and 100 % stay finite.
/// `None` without solutions of both kinds.
pub fn d_prime(
    hits: u64,
    correct_total: u64,
    false_alarms: u64,
    incorrect_total: u64,
) -> Option<f64> {
    if correct_total == 0 || incorrect_total == 0 {
        return None;
    }
    let rate = |k: u64, n: u64| (k as f64 + 0.5) / (n as f64 + 1.0);
    Some(
        normal_quantile(rate(hits, correct_total))
            - normal_quantile(rate(false_alarms, incorrect_total)),
    )
}

/// Student's t quantile at 0.975 for 1..=30 degrees of freedom (scipy.stats.t.ppf, 7 decimals).
const T_975: [f64; 30] = [
    12.7062047, 4.3026527, 3.1824463, 2.7764451, 2.5705818, 2.4469119, 2.3646243, 2.3060041,
    2.2621572, 2.2281389, 2.2009852, 2.1788128, 2.1603687, 2.1447867, 2.1314495, 2.1199053,
    2.1098156, 2.1009220, 2.0930241, 2.0859634, 2.0796138, 2.0738731, 2.0686576, 2.0638986,
    2.0595386, 2.0555294, 2.0518305, 2.0484071, 2.0452296, 2.0422725,
];

/// The 0.975 quantile of Student's t with `df` degrees of freedom: the table up to 30, then
/// the Cornish–Fisher expansion around the normal quantile to 1/df⁴ (error below 3e-8 there).
pub fn t_quantile_975(df: usize) -> Option<f64> {
    match df {
        0 => None,
        1..=30 => Some(T_975[df - 1]),
        _ => {
            let z = normal_quantile(0.975);
            let v = df as f64;
            Some(
                z + (z.powi(3) + z) / (4.0 * v)
                    + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * v * v)
                    + (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z)
                        / (384.0 * v.powi(3))
                    + (79.0 * z.powi(9) + 776.0 * z.powi(7) + 1482.0 * z.powi(5)
                        - 1920.0 * z.powi(3)
                        - 945.0 * z)
                        / (92160.0 * v.powi(4)),
            )
        }
    }
}

/// A mean with its 95 % interval across independent repeats (seeds of a training run).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MeanInterval {
    /// Repeats with a value.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// Lower end of the Student-t interval (mean − t·s/√n); the mean itself when n = 1.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

/// The mean of `values` and its two-sided 95 % Student-t interval (sample standard deviation,
/// n − 1 degrees of freedom); with one value the interval is that value. None when empty.
pub fn mean_interval(values: &[f64]) -> Option<MeanInterval> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let Some(t) = t_quantile_975(n - 1) else {
        return Some(MeanInterval {
            n,
            mean,
            low: mean,
            high: mean,
        });
    };
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t * (variance / n as f64).sqrt();
    Some(MeanInterval {
        n,
        mean,
        low: mean - half,
        high: mean + half,
    })
}

/// The median (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

/// Fleiss' κ over items rated by several raters: `counts[i][c]` raters put item `i` in
/// category `c`. Items with fewer than two ratings are skipped; items may have different
/// numbers of raters (each item's agreement uses its own count). `None` without at least one
/// item with two ratings, or when every rating is in one category (κ undefined).
pub fn fleiss_kappa(counts: &[Vec<u64>]) -> Option<f64> {
    let rated: Vec<&Vec<u64>> = counts
        .iter()
        .filter(|c| c.iter().sum::<u64>() >= 2)
        .collect();
    if rated.is_empty() {
        return None;
    }
    let categories = rated.iter().map(|c| c.len()).max().unwrap_or(0);
    let mut totals = vec![0u64; categories];
    let mut agreement = 0.0;
    for item in &rated {
        let n = item.iter().sum::<u64>() as f64;
        agreement += item
            .iter()
            .map(|&x| (x * x.saturating_sub(1)) as f64)
            .sum::<f64>()
            / (n * (n - 1.0));
        for (total, x) in totals.iter_mut().zip(item.iter()) {
            *total += x;
        }
    }
    let observed = agreement / rated.len() as f64;
    let all: u64 = totals.iter().sum();
    let expected: f64 = totals
        .iter()
        .map(|&t| (t as f64 / all as f64).powi(2))
        .sum();
    if (1.0 - expected).abs() < 1e-12 {
        return None;
    }
    Some((observed - expected) / (1.0 - expected))
}

/// Krippendorff's α for nominal data: `counts[u][c]` coders put unit `u` in category `c`;
/// units with fewer than two values are not pairable and skipped; missing ratings are simply
/// absent. `None` when fewer than two pairable values exist or every value is one category.
pub fn krippendorff_alpha_nominal(counts: &[Vec<u64>]) -> Option<f64> {
    let categories = counts.iter().map(|c| c.len()).max().unwrap_or(0);
    // Coincidence matrix o[c][k].
    let mut coincidences = vec![vec![0.0f64; categories]; categories];
    for unit in counts {
        let m = unit.iter().sum::<u64>() as f64;
        if m < 2.0 {
            continue;
        }
        for (c, &nc) in unit.iter().enumerate() {
            for (k, &nk) in unit.iter().enumerate() {
                let pairs = nc as f64 * (nk as f64 - if c == k { 1.0 } else { 0.0 });
                coincidences[c][k] += pairs / (m - 1.0);
            }
        }
    }
    let marginals: Vec<f64> = coincidences.iter().map(|row| row.iter().sum()).collect();
    let n: f64 = marginals.iter().sum();
    if n < 2.0 {
        return None;
    }
    let mut disagreement = 0.0;
    let mut expected = 0.0;
    for c in 0..categories {
        for k in 0..categories {
            if c != k {
                disagreement += coincidences[c][k];
                expected += marginals[c] * marginals[k];
            }
        }
    }
    if expected == 0.0 {
        return None;
    }
    Some(1.0 - (n - 1.0) * disagreement / expected)
}

/// Pearson's correlation of paired values; `None` for fewer than two pairs or a constant side.
pub fn pearson(xs: &[f64], ys: &[f64]) -> Option<f64> {
    if xs.len() != ys.len() || xs.len() < 2 {
        return None;
    }
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in xs.iter().zip(ys) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    Some(sxy / (sxx * syy).sqrt())
}

#[cfg(test)]
mod tests {
    /// Expected values from scipy 1.17.1: `stats.t.interval(0.95, n - 1, loc=mean,
    /// scale=stats.sem(values))` and `stats.t.ppf(0.975, df)`.
    #[test]
    fn mean_intervals_match_scipy() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        let m = super::mean_interval(&[0.5, 0.7, 0.9]).unwrap();
        assert_eq!(m.n, 3);
        assert!(close(m.mean, 0.7) && close(m.low, 0.203_172_457_649_934));
        assert!(close(m.high, 1.196_827_542_350_066), "{m:?}");
        let m = super::mean_interval(&[0.82, 0.79]).unwrap();
        assert!(close(m.low, 0.614_406_928_957_38) && close(m.high, 0.995_593_071_042_62));
        // 33 values: 32 degrees of freedom, past the table.
        let values: Vec<f64> = (1..=33).map(f64::from).collect();
        let m = super::mean_interval(&values).unwrap();
        assert!(close(m.low, 13.571_330_273_101_72), "{m:?}");
        assert!(close(m.high, 20.428_669_726_898_278), "{m:?}");
        assert!(close(super::t_quantile_975(32).unwrap(), 2.036_933_343));
        assert!(close(super::t_quantile_975(100).unwrap(), 1.983_971_519));
        // One value: no spread to estimate; none: no mean.
        let m = super::mean_interval(&[0.4]).unwrap();
        assert_eq!((m.low, m.mean, m.high), (0.4, 0.4, 0.4));
        assert_eq!(super::mean_interval(&[]), None);
    }

    use super::*;

    /// Brier and log scores are the same bits in any reading order (a restored database reads
    /// judgements in another order than the one it was copied from).
    #[test]
    fn proper_scores_do_not_depend_on_reading_order() {
        let stated: Vec<f64> = (0..200).map(|i| f64::from(i % 21) * 0.05).collect();
        let truth: Vec<bool> = (0..200).map(|i| (i * 7) % 3 == 0).collect();
        let mut order: Vec<usize> = (0..200).collect();
        order.reverse();
        order.rotate_left(37);
        let stated_b: Vec<f64> = order.iter().map(|&i| stated[i]).collect();
        let truth_b: Vec<bool> = order.iter().map(|&i| truth[i]).collect();
        let (a, b) = (
            brier_score(&stated, &truth),
            brier_score(&stated_b, &truth_b),
        );
        assert_eq!(a.map(f64::to_bits), b.map(f64::to_bits));
        let (a, b) = (log_score(&stated, &truth), log_score(&stated_b, &truth_b));
        assert_eq!(a.map(f64::to_bits), b.map(f64::to_bits));
        // The plain mean, summed in the order given, is within rounding of it.
        let plain: f64 = stated
            .iter()
            .zip(&truth)
            .map(|(p, o)| (p - f64::from(u8::from(*o))).powi(2))
            .sum::<f64>()
            / 200.0;
        assert!((brier_score(&stated, &truth).unwrap() - plain).abs() < 1e-12);
    }

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
    #[test]
    fn wilson_intervals_match_hand_computation() {
        let (low, high) = wilson_interval(8, 10, Z_95).expect("interval");
        assert!((low - 0.490_162).abs() < 1e-5 && (high - 0.943_318).abs() < 1e-5);
        let (low, high) = wilson_interval(0, 5, Z_95).expect("interval");
        assert!(low == 0.0 && (high - 0.434_482).abs() < 1e-5);
        assert_eq!(wilson_interval(0, 0, Z_95), None);
    }

    #[test]
    fn normal_quantiles_and_d_prime() {
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-6);
        assert!((normal_quantile(0.01) + 2.326_348).abs() < 1e-6);
        assert!(normal_quantile(0.5).abs() < 1e-12);
        // 40 of 50 correct solutions accepted, 10 of 50 incorrect ones: z(40.5/51) − z(10.5/51).
        let d = d_prime(40, 50, 10, 50).expect("d'");
        assert!((d - 1.641_584).abs() < 1e-5, "{d}");
        // Perfect raters stay finite; no incorrect solutions: undefined.
        assert!(d_prime(50, 50, 0, 50).expect("d'").is_finite());
        assert_eq!(d_prime(3, 3, 0, 0), None);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn fleiss_kappa_matches_the_published_example() {
        // Fleiss (1971) as reproduced on Wikipedia: 10 subjects, 14 raters, 5 categories.
        let table: Vec<Vec<u64>> = vec![
            vec![0, 0, 0, 0, 14],
            vec![0, 2, 6, 4, 2],
            vec![0, 0, 3, 5, 6],
            vec![0, 3, 9, 2, 0],
            vec![2, 2, 8, 1, 1],
            vec![7, 7, 0, 0, 0],
            vec![3, 2, 6, 3, 0],
            vec![2, 5, 3, 2, 2],
            vec![6, 5, 2, 1, 0],
            vec![0, 2, 2, 3, 7],
        ];
        let kappa = fleiss_kappa(&table).expect("kappa");
        assert!((kappa - 0.209_931).abs() < 1e-5, "{kappa}");
        assert_eq!(
            fleiss_kappa(&[vec![1, 0]]),
            None,
            "one rating is not agreement"
        );
        assert_eq!(
            fleiss_kappa(&[vec![2, 0], vec![3, 0]]),
            None,
            "one category only"
        );
    }

    #[test]
    fn krippendorff_alpha_matches_the_published_example() {
        // Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders, 12
        // units, nominal values 1-5, missing ratings left out; α = 0.743.
        let coders = [
            "1 2 3 3 2 1 4 1 2 . . .",
            "1 2 3 3 2 2 4 1 2 5 . 3",
            ". 3 3 3 2 3 4 2 2 5 1 .",
            "1 2 3 3 2 4 4 1 2 5 1 .",
        ];
        let rows: Vec<Vec<&str>> = coders.iter().map(|c| c.split(' ').collect()).collect();
        let units: Vec<Vec<u64>> = (0..12)
            .map(|u| {
                (1..=5)
                    .map(|v| rows.iter().filter(|r| r[u] == v.to_string()).count() as u64)
                    .collect()
            })
            .collect();
        let alpha = krippendorff_alpha_nominal(&units).expect("alpha");
        assert!((alpha - 0.743_421).abs() < 1e-5, "{alpha}");
        assert_eq!(krippendorff_alpha_nominal(&[vec![1, 0]]), None);
    }

    #[test]
    fn pearson_correlation() {
        let r = pearson(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 5.0, 9.0]).expect("r");
        // By hand: deviations (-1.5, -0.5, 0.5, 1.5) and (-3, -1, 0, 4): sxy = 11, sxx = 5, syy = 26.
        assert!((r - 11.0 / (5.0f64 * 26.0).sqrt()).abs() < 1e-12);
        assert_eq!(pearson(&[1.0, 1.0], &[2.0, 3.0]), None);
    }
}

//! The checkability game's rules (issue 8, groundwork): the prover's reward against a verifier,
//! when a round ends, which solutions train a round's verifier, and the per-round metrics.
//!
//! Plain functions over plain numbers, so each rule is unit-tested against hand computations and
//! the worker's training-run job only wires them to models and the database. The definitions
//! follow Kirchner et al., "Prover-Verifier Games improve legibility of LLM outputs" (2024).

use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::domain::ProverRole;
use crate::metrics;

/// Reward given to a CGC sample whose correctness disagrees with its role: below every
/// batch-normalised score the verifier gives in practice (|V'| > 2 is rare), so such samples are
/// always the least rewarded.
pub const CGC_PENALTY: f64 = -2.0;

/// How the prover's samples are rewarded from the verifier's scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardKind {
    /// Signed relative convincingness, the paper's main reward: with V' the batch-normalised
    /// score, (2c−1)(2h−1)·V' when V' > 0, else −1. Helpful samples gain by being correct and
    /// convincing, sneaky ones by being incorrect and convincing; unconvincing ones are all −1.
    Src,
    /// Correctness-gated convincingness: V' when correctness matches the role (helpful and
    /// correct, sneaky and incorrect), else [`CGC_PENALTY`].
    Cgc,
    /// Plain optimisation of the verifier (reward V'), ignoring role and correctness: the
    /// paper's "goodharting" baseline, which shows what a prover learns when nothing checks it.
    Goodhart,
}

impl std::fmt::Display for RewardKind {
    /// The name the command line, the forms and the stored parameters use.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RewardKind::Src => "src",
            RewardKind::Cgc => "cgc",
            RewardKind::Goodhart => "goodhart",
        })
    }
}

impl std::str::FromStr for RewardKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "src" => Ok(RewardKind::Src),
            "cgc" => Ok(RewardKind::Cgc),
            "goodhart" => Ok(RewardKind::Goodhart),
            other => Err(format!(
                "unknown reward {other:?}: use src, cgc or goodhart"
            )),
        }
    }
}

/// One prover sample as the game sees it: the role it was prompted with, whether its final
/// answer is right, and the verifier's raw score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredSample {
    /// The role in the prompt.
    pub role: ProverRole,
    /// Whether the final answer equals the ground truth.
    pub correct: bool,
    /// The verifier's score (a logit; higher = more convincing).
    pub score: f64,
}

/// Scores shifted and scaled to mean 0 and standard deviation 1 over the batch (V'), so the
/// reward does not drift with the verifier's scale; all zeros when the scores are all equal.
pub fn normalise_scores(scores: &[f64]) -> Vec<f64> {
    if scores.is_empty() {
        return Vec::new();
    }
    let n = scores.len() as f64;
    let mean = scores.iter().sum::<f64>() / n;
    let variance = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
    let std = variance.sqrt();
    if std < 1e-12 || !std.is_finite() {
        return vec![0.0; scores.len()];
    }
    scores.iter().map(|s| (s - mean) / std).collect()
}

/// The reward of each sample in one batch.
pub fn rewards(kind: RewardKind, batch: &[ScoredSample]) -> Vec<f64> {
    let scores: Vec<f64> = batch.iter().map(|s| s.score).collect();
    let normalised = normalise_scores(&scores);
    batch
        .iter()
        .zip(normalised)
        .map(|(sample, v)| {
            let helpful = sample.role == ProverRole::Helpful;
            match kind {
                RewardKind::Src if v > 0.0 => {
                    let c = if sample.correct { 1.0 } else { -1.0 };
                    let h = if helpful { 1.0 } else { -1.0 };
                    c * h * v
                }
                RewardKind::Src => -1.0,
                RewardKind::Cgc if sample.correct == helpful => v,
                RewardKind::Cgc => CGC_PENALTY,
                RewardKind::Goodhart => v,
            }
        })
        .collect()
}

/// Mean of the scores of the samples `keep` selects; None when it selects none.
fn mean_score(batch: &[ScoredSample], keep: impl Fn(&ScoredSample) -> bool) -> Option<f64> {
    let chosen: Vec<f64> = batch.iter().filter(|s| keep(s)).map(|s| s.score).collect();
    (!chosen.is_empty()).then(|| chosen.iter().sum::<f64>() / chosen.len() as f64)
}

/// The paper's early stop for a round's prover training: sneaky incorrect solutions have become
/// as convincing to the verifier as helpful correct ones (mean score at least as high). False
/// while either group is empty in the batch: there is nothing to compare yet.
pub fn sneaky_caught_up(batch: &[ScoredSample]) -> bool {
    let sneaky_wrong = mean_score(batch, |s| s.role == ProverRole::Sneaky && !s.correct);
    let helpful_right = mean_score(batch, |s| s.role == ProverRole::Helpful && s.correct);
    matches!((sneaky_wrong, helpful_right), (Some(s), Some(h)) if s >= h)
}

/// A solution that may train a round's verifier: which round's prover wrote it (0 = the
/// initial prover) and whether it is correct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixCandidate {
    /// Round of the prover that wrote it.
    pub round: u32,
    /// Whether its final answer is right.
    pub correct: bool,
}

/// Picks up to `total` candidates (indices into `candidates`) for round `round`'s verifier:
/// the same share from each earlier round's prover (rounds 0..round, or round 0 alone in round
/// 0), and within each round half correct and half incorrect. A round or a side that has too
/// few gives its remainder to the others, so the mix is as balanced as the pool allows.
/// Seeded, so a training run is reproducible.
pub fn verifier_mix(
    candidates: &[MixCandidate],
    round: u32,
    total: usize,
    seed: u64,
) -> Vec<usize> {
    let rounds: Vec<u32> = (0..round.max(1)).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // One shuffled pool per (round, correct).
    let mut pools: Vec<Vec<usize>> = Vec::new();
    for r in &rounds {
        for correct in [true, false] {
            let mut pool: Vec<usize> = candidates
                .iter()
                .enumerate()
                .filter(|(_, c)| c.round == *r && c.correct == correct)
                .map(|(i, _)| i)
                .collect();
            pool.shuffle(&mut rng);
            pools.push(pool);
        }
    }
    // Deal one at a time from each pool in turn until `total` or every pool is empty: equal
    // shares where possible, the short pools' remainder spread over the others.
    let mut chosen = Vec::with_capacity(total);
    let mut next = vec![0usize; pools.len()];
    while chosen.len() < total {
        let mut dealt = false;
        for (pool, at) in pools.iter().zip(next.iter_mut()) {
            if chosen.len() == total {
                break;
            }
            if let Some(index) = pool.get(*at) {
                chosen.push(*index);
                *at += 1;
                dealt = true;
            }
        }
        if !dealt {
            break;
        }
    }
    chosen
}

/// The optimiser's choice of training examples (expert iteration, chosen for the 2-core CPU:
/// a supervised step on the best samples costs one forward-backward per kept sample, where
/// policy-gradient methods need many noisy steps): per role, the samples with a positive
/// reward, best first, at most `keep_share` of that role's samples (at least one when any is
/// positive). Returns indices into the batch. Keeping each role's best separately keeps the
/// one model practising both roles, as the round structure's 50/50 role split intends.
pub fn expert_iteration_examples(
    batch: &[ScoredSample],
    rewards: &[f64],
    keep_share: f64,
) -> Vec<usize> {
    let mut chosen = Vec::new();
    for role in [ProverRole::Helpful, ProverRole::Sneaky] {
        let mut of_role: Vec<usize> = (0..batch.len().min(rewards.len()))
            .filter(|i| batch[*i].role == role)
            .collect();
        let keep = ((of_role.len() as f64 * keep_share.clamp(0.0, 1.0)).floor() as usize).max(1);
        of_role.retain(|i| rewards[*i] > 0.0);
        // Highest reward first; ties keep batch order (stable sort), so runs are reproducible.
        of_role.sort_by(|a, b| rewards[*b].total_cmp(&rewards[*a]));
        chosen.extend(of_role.into_iter().take(keep));
    }
    chosen
}

/// One prover sample with its problem, for the per-round metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundSample {
    /// Index of the problem it solves (samples of one problem share it).
    pub problem: usize,
    /// The sample, with the round's verifier score.
    pub sample: ScoredSample,
}

/// What a round achieved, as the report shows it per round.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoundMetrics {
    /// Share of helpful samples that are correct.
    pub prover_accuracy: Option<f64>,
    /// Share of sneaky samples that are incorrect and convincing (V' > 0 in their batch).
    pub sneaky_success: Option<f64>,
    /// The verifier's accuracy on correctness (score > 0 means "correct").
    pub verifier_accuracy: Option<f64>,
    /// The verifier's AUROC for correct vs incorrect.
    pub verifier_auroc: Option<f64>,
    /// Balanced best-of-n accuracy (see [`balanced_best_of_n`]); None when no problem has
    /// enough of both kinds.
    pub best_of_n_accuracy: Option<f64>,
}

/// The round's metrics over its evaluation samples (scored by the round's verifier).
pub fn round_metrics(samples: &[RoundSample], best_of: usize) -> RoundMetrics {
    let share = |hits: usize, of: usize| (of > 0).then(|| hits as f64 / of as f64);
    let helpful: Vec<&ScoredSample> = samples
        .iter()
        .map(|s| &s.sample)
        .filter(|s| s.role == ProverRole::Helpful)
        .collect();
    let scores: Vec<f64> = samples.iter().map(|s| s.sample.score).collect();
    let normalised = normalise_scores(&scores);
    let sneaky: Vec<(&ScoredSample, f64)> = samples
        .iter()
        .zip(&normalised)
        .filter(|(s, _)| s.sample.role == ProverRole::Sneaky)
        .map(|(s, v)| (&s.sample, *v))
        .collect();
    let labels: Vec<bool> = samples.iter().map(|s| s.sample.correct).collect();
    let predictions: Vec<bool> = scores.iter().map(|s| *s > 0.0).collect();
    RoundMetrics {
        prover_accuracy: share(helpful.iter().filter(|s| s.correct).count(), helpful.len()),
        sneaky_success: share(
            sneaky
                .iter()
                .filter(|(s, v)| !s.correct && *v > 0.0)
                .count(),
            sneaky.len(),
        ),
        verifier_accuracy: metrics::accuracy(&predictions, &labels),
        verifier_auroc: metrics::auroc(&scores, &labels),
        best_of_n_accuracy: balanced_best_of_n(samples, best_of),
    }
}

/// Balanced best-of-n: for each problem with at least n/2 correct and n/2 incorrect samples,
/// the first n/2 of each (in the order given) are pooled and the verifier picks the highest
/// scored; the accuracy is the share of problems where the pick is correct. Chance is 0.5
/// whatever the prover's accuracy, so it measures the verifier alone. `n` must be even and
/// at least 2.
pub fn balanced_best_of_n(samples: &[RoundSample], n: usize) -> Option<f64> {
    if n < 2 || !n.is_multiple_of(2) {
        return None;
    }
    let half = n / 2;
    let mut problems: Vec<usize> = samples.iter().map(|s| s.problem).collect();
    problems.sort_unstable();
    problems.dedup();
    let (mut judged, mut right) = (0usize, 0usize);
    for problem in problems {
        let of = |correct: bool| -> Vec<f64> {
            samples
                .iter()
                .filter(|s| s.problem == problem && s.sample.correct == correct)
                .take(half)
                .map(|s| s.sample.score)
                .collect()
        };
        let (good, bad) = (of(true), of(false));
        if good.len() < half || bad.len() < half {
            continue;
        }
        let best = |scores: &[f64]| scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        judged += 1;
        // Ties go to the incorrect side: a verifier that cannot tell them apart earns nothing.
        if best(&good) > best(&bad) {
            right += 1;
        }
    }
    (judged > 0).then(|| right as f64 / judged as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(role: ProverRole, correct: bool, score: f64) -> ScoredSample {
        ScoredSample {
            role,
            correct,
            score,
        }
    }

    #[test]
    fn scores_normalise_to_mean_zero_and_unit_spread() {
        let v = normalise_scores(&[1.0, 3.0]);
        assert_eq!(v, vec![-1.0, 1.0]);
        assert_eq!(normalise_scores(&[2.0, 2.0, 2.0]), vec![0.0; 3]);
        assert!(normalise_scores(&[]).is_empty());
        let v = normalise_scores(&[0.0, 1.0, 2.0, 7.0]);
        let mean = v.iter().sum::<f64>() / 4.0;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 4.0;
        assert!(mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-12);
    }

    #[test]
    fn src_rewards_convincing_samples_whose_correctness_fits_the_role() {
        use ProverRole::{Helpful, Sneaky};
        // Raw scores 1 and 3 (twice each) normalise to -1 and +1.
        let batch = [
            sample(Helpful, true, 3.0),  // convincing, fits: +1
            sample(Helpful, false, 3.0), // convincing, does not fit: -1 · 1
            sample(Sneaky, false, 1.0),  // unconvincing: -1
            sample(Sneaky, true, 1.0),   // unconvincing: -1
        ];
        assert_eq!(
            rewards(RewardKind::Src, &batch),
            vec![1.0, -1.0, -1.0, -1.0]
        );
        let batch = [
            sample(Sneaky, false, 3.0), // convincing wrong sneaky: +1
            sample(Sneaky, true, 3.0),  // convincing right sneaky: -1
            sample(Helpful, true, 1.0),
            sample(Helpful, true, 1.0),
        ];
        assert_eq!(
            rewards(RewardKind::Src, &batch),
            vec![1.0, -1.0, -1.0, -1.0]
        );
    }

    #[test]
    fn cgc_gates_on_correctness_and_goodhart_ignores_it() {
        use ProverRole::{Helpful, Sneaky};
        let batch = [
            sample(Helpful, true, 3.0),
            sample(Helpful, false, 3.0),
            sample(Sneaky, false, 1.0),
            sample(Sneaky, true, 1.0),
        ];
        assert_eq!(
            rewards(RewardKind::Cgc, &batch),
            vec![1.0, CGC_PENALTY, -1.0, CGC_PENALTY]
        );
        assert_eq!(
            rewards(RewardKind::Goodhart, &batch),
            vec![1.0, 1.0, -1.0, -1.0]
        );
        assert_eq!("src".parse(), Ok(RewardKind::Src));
        assert!("ppo".parse::<RewardKind>().unwrap_err().contains("ppo"));
    }

    #[test]
    fn a_round_stops_when_sneaky_wrong_is_as_convincing_as_helpful_right() {
        use ProverRole::{Helpful, Sneaky};
        let mut batch = vec![sample(Helpful, true, 2.0), sample(Helpful, true, 0.0)];
        assert!(!sneaky_caught_up(&batch), "no sneaky incorrect sample yet");
        batch.push(sample(Sneaky, false, 0.5));
        assert!(!sneaky_caught_up(&batch), "0.5 < mean 1.0");
        batch.push(sample(Sneaky, false, 1.5));
        assert!(sneaky_caught_up(&batch), "mean 1.0 = mean 1.0");
        // Sneaky *correct* and helpful *incorrect* samples do not count.
        batch.push(sample(Sneaky, true, -9.0));
        batch.push(sample(Helpful, false, 9.0));
        assert!(sneaky_caught_up(&batch));
    }

    #[test]
    fn the_verifier_mix_shares_rounds_and_correctness_equally() {
        // Round 0: 10 correct, 10 incorrect; round 1: 10 correct, 2 incorrect; round 2 (the
        // current prover) must not be used in round 2's verifier.
        let mut pool = Vec::new();
        for (round, correct, count) in [
            (0, true, 10),
            (0, false, 10),
            (1, true, 10),
            (1, false, 2),
            (2, true, 5),
        ] {
            pool.extend((0..count).map(|_| MixCandidate { round, correct }));
        }
        let chosen = verifier_mix(&pool, 2, 16, 7);
        assert_eq!(chosen.len(), 16);
        let unique: std::collections::HashSet<_> = chosen.iter().collect();
        assert_eq!(unique.len(), 16, "a candidate was picked twice");
        let count = |round, correct| {
            chosen
                .iter()
                .filter(|i| pool[**i] == MixCandidate { round, correct })
                .count()
        };
        assert_eq!(count(2, true), 0);
        // 4 per pool, but round 1 has only 2 incorrect: its 2 go to the other pools in turn.
        assert_eq!(count(1, false), 2);
        assert_eq!(count(0, true) + count(0, false) + count(1, true), 14);
        assert!((4..=5).contains(&count(0, true)) && (4..=5).contains(&count(1, true)));
        // Round 0 uses the initial prover alone; the same seed gives the same mix.
        let first = verifier_mix(&pool, 0, 8, 1);
        assert!(first.iter().all(|i| pool[*i].round == 0));
        assert_eq!(first.iter().filter(|i| pool[**i].correct).count(), 4);
        assert_eq!(first, verifier_mix(&pool, 0, 8, 1));
        // Asking for more than there is gives everything eligible.
        assert_eq!(verifier_mix(&pool, 1, 1000, 3).len(), 20);
    }

    #[test]
    fn expert_iteration_keeps_each_roles_best_positive_samples() {
        use ProverRole::{Helpful, Sneaky};
        let batch = [
            sample(Helpful, true, 0.0),
            sample(Helpful, true, 0.0),
            sample(Helpful, false, 0.0),
            sample(Helpful, true, 0.0),
            sample(Sneaky, false, 0.0),
            sample(Sneaky, true, 0.0),
        ];
        let rewards = [0.5, 2.0, -1.0, 1.0, 0.1, -1.0];
        // Half of each role: 2 helpful (the best two), 1 sneaky.
        assert_eq!(
            expert_iteration_examples(&batch, &rewards, 0.5),
            vec![1, 3, 4]
        );
        // Never a sample with a reward of zero or less, whatever the share.
        assert_eq!(
            expert_iteration_examples(&batch, &rewards, 1.0),
            vec![1, 3, 0, 4]
        );
        // At least one per role when any is positive.
        assert_eq!(expert_iteration_examples(&batch, &rewards, 0.0), vec![1, 4]);
        assert!(expert_iteration_examples(&batch, &[-1.0; 6], 1.0).is_empty());
    }

    #[test]
    fn round_metrics_follow_their_definitions() {
        use ProverRole::{Helpful, Sneaky};
        let at = |problem, role, correct, score| RoundSample {
            problem,
            sample: sample(role, correct, score),
        };
        let samples = [
            // Problem 0: best correct 2.0 beats best incorrect 1.0.
            at(0, Helpful, true, 2.0),
            at(0, Sneaky, false, 1.0),
            // Problem 1: the incorrect one wins.
            at(1, Helpful, true, -1.0),
            at(1, Sneaky, false, 3.0),
            // Problem 2: the incorrect one wins again.
            at(2, Helpful, false, -2.0),
            at(2, Sneaky, true, -3.0),
        ];
        let m = round_metrics(&samples, 2);
        assert_eq!(m.prover_accuracy, Some(2.0 / 3.0));
        // Mean score 0: the sneaky incorrect ones at 1.0 and 3.0 are convincing, so 2 of 3.
        assert_eq!(m.sneaky_success, Some(2.0 / 3.0));
        // Predicted correct when score > 0: right on 2.0, -2.0; wrong on 1.0, -1.0, 3.0, -3.0.
        assert_eq!(m.verifier_accuracy, Some(2.0 / 6.0));
        assert_eq!(m.best_of_n_accuracy, Some(1.0 / 3.0));
        assert_eq!(balanced_best_of_n(&samples, 3), None);
        assert_eq!(balanced_best_of_n(&samples, 4), None);
        assert!(m.verifier_auroc.is_some());
    }
}

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

/// How a prover step updates the prover from its rewarded samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimiser {
    /// Fine-tune on each role's best positive-reward samples ([`expert_iteration_examples`]).
    #[default]
    ExpertIteration,
    /// REINFORCE on every sample with a leave-one-out baseline over the k samples of its
    /// problem and role, the reward carrying a KL penalty to the initial prover
    /// ([`kl_penalised`], [`leave_one_out_advantages`], [`policy_gradient_loss`]).
    PolicyGradient,
}

impl std::fmt::Display for Optimiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Optimiser::ExpertIteration => "expert_iteration",
            Optimiser::PolicyGradient => "policy_gradient",
        })
    }
}

impl std::str::FromStr for Optimiser {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "expert_iteration" => Ok(Optimiser::ExpertIteration),
            "policy_gradient" => Ok(Optimiser::PolicyGradient),
            other => Err(format!(
                "unknown optimiser {other:?}: use expert_iteration or policy_gradient"
            )),
        }
    }
}

/// Rewards with the KL penalty to the reference (initial) prover: r − β·(log π(y|x) −
/// log π_ref(y|x)), the single-sample estimate of KL(π ‖ π_ref) on the sampled solution
/// itself, as RLOO and PPO-style RLHF fold it into the reward.
pub fn kl_penalised(
    rewards: &[f64],
    log_probs: &[f64],
    reference_log_probs: &[f64],
    beta: f64,
) -> Vec<f64> {
    rewards
        .iter()
        .zip(log_probs.iter().zip(reference_log_probs))
        .map(|(r, (lp, lr))| r - beta * (lp - lr))
        .collect()
}

/// Leave-one-out advantages: each sample's reward minus the mean reward of the *other*
/// samples of its group (the k samples of one problem and role), an unbiased baseline that
/// needs no value model. A sample alone in its group gets 0: there is nothing to compare with.
pub fn leave_one_out_advantages(rewards: &[f64], groups: &[usize]) -> Vec<f64> {
    let mut sums: std::collections::HashMap<usize, (f64, usize)> = Default::default();
    for (r, g) in rewards.iter().zip(groups) {
        let entry = sums.entry(*g).or_insert((0.0, 0));
        entry.0 += r;
        entry.1 += 1;
    }
    rewards
        .iter()
        .zip(groups)
        .map(|(r, g)| {
            let (sum, n) = sums[g];
            if n < 2 {
                0.0
            } else {
                r - (sum - r) / (n - 1) as f64
            }
        })
        .collect()
}

/// The REINFORCE loss a policy-gradient step minimises: −(1/N)·Σ Aᵢ·log π(yᵢ|xᵢ), with
/// log π(y|x) the summed log-probability of the solution's tokens (and its end) after the
/// prompt. Its gradient is the policy gradient with baseline-corrected advantages.
pub fn policy_gradient_loss(advantages: &[f64], log_probs: &[f64]) -> f64 {
    let n = advantages.len().min(log_probs.len());
    if n == 0 {
        return 0.0;
    }
    -advantages
        .iter()
        .zip(log_probs)
        .map(|(a, lp)| a * lp)
        .sum::<f64>()
        / n as f64
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
    /// Share of sneaky samples that are incorrect, convincing or not.
    #[serde(default)]
    pub sneaky_incorrect: Option<f64>,
    /// The verifier's accuracy on correctness (score > 0 means "correct").
    pub verifier_accuracy: Option<f64>,
    /// The verifier's AUROC for correct vs incorrect.
    pub verifier_auroc: Option<f64>,
    /// Balanced best-of-n accuracy (see [`balanced_best_of_n`]); None when no problem has
    /// enough of both kinds.
    pub best_of_n_accuracy: Option<f64>,
    /// The score the verifier accepts at (see [`half_recall_threshold`]); None before fool
    /// rates were measured (rounds stored by earlier versions, prover steps).
    #[serde(default)]
    pub fool_threshold: Option<f64>,
    /// Share of sneaky incorrect samples the verifier accepts at `fool_threshold` (see
    /// [`fool_rate`]).
    #[serde(default)]
    pub fool_rate: Option<f64>,
}

/// The round's metrics over its evaluation samples (scored by the round's verifier); the fool
/// rate at `threshold` when one is given.
pub fn round_metrics(
    samples: &[RoundSample],
    best_of: usize,
    threshold: Option<f64>,
) -> RoundMetrics {
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
        sneaky_incorrect: share(
            sneaky.iter().filter(|(s, _)| !s.correct).count(),
            sneaky.len(),
        ),
        verifier_accuracy: metrics::accuracy(&predictions, &labels),
        verifier_auroc: metrics::auroc(&scores, &labels),
        best_of_n_accuracy: balanced_best_of_n(samples, best_of),
        fool_threshold: threshold,
        fool_rate: threshold.and_then(|t| fool_rate(samples.iter().map(|s| &s.sample), t)),
    }
}

/// The fixed threshold of the fool rate: the score at which the verifier accepts half of the
/// helpful correct solutions it is given (50 % recall), i.e. the ⌈n/2⌉-th highest of their
/// scores, so that at least half score at or above it. The run gives it the round-0 prover's
/// helpful correct solutions on the held-out problems, scored by each round's verifier, so
/// every round is judged at the same recall of the same solutions. None without any.
pub fn half_recall_threshold(helpful_correct_scores: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = helpful_correct_scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let n = sorted.len();
    (n > 0).then(|| sorted[n.div_ceil(2) - 1])
}

/// Fool rate: the share of sneaky samples with a wrong answer that the verifier accepts, a
/// score at or above `threshold`. None when there is no sneaky incorrect sample.
pub fn fool_rate<'a>(
    samples: impl IntoIterator<Item = &'a ScoredSample>,
    threshold: f64,
) -> Option<f64> {
    let (mut wrong, mut accepted) = (0usize, 0usize);
    for s in samples {
        if s.role == ProverRole::Sneaky && !s.correct {
            wrong += 1;
            accepted += usize::from(s.score >= threshold);
        }
    }
    (wrong > 0).then(|| accepted as f64 / wrong as f64)
}

/// What a sneaky-only attack on a round's frozen verifier achieved: the paper's robustness
/// measure, how many optimisation steps fool the verifier.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttackReport {
    /// The fool rate that counts as fooled.
    pub target: f64,
    /// Steps the attack may take at most.
    pub cap: usize,
    /// Fool rate of the attacking prover before any step (index 0) and after each step taken.
    pub fool_rates: Vec<Option<f64>>,
    /// Steps taken until the fool rate reached the target (0: the round's prover already
    /// did); None when the cap was reached first.
    pub steps_to_target: Option<usize>,
}

/// Runs an attack's stopping rule: `fool_rate_after(0)` measures the round's prover,
/// `fool_rate_after(s)` takes attack step s and measures the result. Stops as soon as a fool
/// rate reaches `target`, or after `cap` steps. A missing fool rate (no sneaky incorrect
/// sample) has not reached any target.
pub fn run_attack<E>(
    target: f64,
    cap: usize,
    mut fool_rate_after: impl FnMut(usize) -> Result<Option<f64>, E>,
) -> Result<AttackReport, E> {
    let mut fool_rates = Vec::with_capacity(cap + 1);
    let mut steps_to_target = None;
    for step in 0..=cap {
        let rate = fool_rate_after(step)?;
        fool_rates.push(rate);
        if rate.is_some_and(|r| r >= target) {
            steps_to_target = Some(step);
            break;
        }
    }
    Ok(AttackReport {
        target,
        cap,
        fool_rates,
        steps_to_target,
    })
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
        let m = round_metrics(&samples, 2, None);
        assert_eq!(m.prover_accuracy, Some(2.0 / 3.0));
        // Mean score 0: the sneaky incorrect ones at 1.0 and 3.0 are convincing, so 2 of 3.
        assert_eq!(m.sneaky_success, Some(2.0 / 3.0));
        assert_eq!(m.sneaky_incorrect, Some(2.0 / 3.0));
        // Predicted correct when score > 0: right on 2.0, -2.0; wrong on 1.0, -1.0, 3.0, -3.0.
        assert_eq!(m.verifier_accuracy, Some(2.0 / 6.0));
        assert_eq!(m.best_of_n_accuracy, Some(1.0 / 3.0));
        assert_eq!(balanced_best_of_n(&samples, 3), None);
        assert_eq!(balanced_best_of_n(&samples, 4), None);
        assert!(m.verifier_auroc.is_some());
        assert_eq!((m.fool_threshold, m.fool_rate), (None, None));
        // At threshold 1.0 the sneaky incorrect samples (1.0 and 3.0) are both accepted.
        let m = round_metrics(&samples, 2, Some(1.0));
        assert_eq!((m.fool_threshold, m.fool_rate), (Some(1.0), Some(1.0)));
        assert_eq!(round_metrics(&samples, 2, Some(2.0)).fool_rate, Some(0.5));
    }

    #[test]
    fn the_fool_rate_threshold_accepts_half_of_the_helpful_correct_scores() {
        // Five scores: the 3rd highest (0.4) accepts 3 of 5 (at least half).
        assert_eq!(
            half_recall_threshold(&[0.1, 0.9, 0.4, -2.0, 0.7]),
            Some(0.4)
        );
        // Four scores: the 2nd highest accepts exactly half.
        assert_eq!(half_recall_threshold(&[3.0, 1.0, 2.0, 0.0]), Some(2.0));
        assert_eq!(half_recall_threshold(&[-1.5]), Some(-1.5));
        assert_eq!(half_recall_threshold(&[]), None);
        // Ties at the threshold count as accepted.
        assert_eq!(half_recall_threshold(&[1.0, 1.0, 1.0, 0.0]), Some(1.0));
    }

    #[test]
    fn the_fool_rate_counts_sneaky_incorrect_samples_at_or_above_the_threshold() {
        use ProverRole::{Helpful, Sneaky};
        let batch = [
            sample(Sneaky, false, 0.5),  // accepted (equal)
            sample(Sneaky, false, 0.49), // rejected
            sample(Sneaky, false, 2.0),  // accepted
            sample(Sneaky, false, -1.0), // rejected
            sample(Sneaky, true, 9.0),   // correct: not a fooling attempt
            sample(Helpful, false, 9.0), // helpful: not counted
        ];
        assert_eq!(fool_rate(&batch, 0.5), Some(0.5));
        assert_eq!(fool_rate(&batch, 10.0), Some(0.0));
        assert_eq!(fool_rate(&batch[4..], 0.0), None);
    }

    #[test]
    fn the_policy_gradient_loss_is_reinforce_with_a_leave_one_out_baseline() {
        // Two groups of three samples (problem 0 helpful, problem 0 sneaky) and a lone one.
        let rewards = [1.0, -1.0, 0.5, 2.0, 2.0, -1.0, 3.0];
        let groups = [0, 0, 0, 1, 1, 1, 2];
        let log_probs = [-10.0, -12.0, -8.0, -20.0, -5.0, -6.0, -4.0];
        let reference = [-11.0, -12.0, -9.0, -20.0, -7.0, -6.0, -4.0];
        // β = 0.1: KL estimates 1, 0, 1, 0, 2, 0, 0 lower the rewards by 0.1·KL.
        let shaped = kl_penalised(&rewards, &log_probs, &reference, 0.1);
        let expected = [0.9, -1.0, 0.4, 2.0, 1.8, -1.0, 3.0];
        for (a, b) in shaped.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{shaped:?}");
        }
        // Leave one out by hand: 0.9 − (−1.0 + 0.4)/2 = 1.2; −1.0 − (0.9 + 0.4)/2 = −1.65;
        // 0.4 − (0.9 − 1.0)/2 = 0.45; 2.0 − (1.8 − 1.0)/2 = 1.6; 1.8 − (2.0 − 1.0)/2 = 1.3;
        // −1.0 − (2.0 + 1.8)/2 = −2.9; alone: 0.
        let advantages = leave_one_out_advantages(&shaped, &groups);
        let expected = [1.2, -1.65, 0.45, 1.6, 1.3, -2.9, 0.0];
        for (a, b) in advantages.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{advantages:?}");
        }
        // −(1.2·−10 − 1.65·−12 + 0.45·−8 + 1.6·−20 + 1.3·−5 − 2.9·−6 + 0)/7
        //   = −(−12 + 19.8 − 3.6 − 32 − 6.5 + 17.4)/7 = 16.9/7.
        let loss = policy_gradient_loss(&advantages, &log_probs);
        assert!((loss - 16.9 / 7.0).abs() < 1e-12, "{loss}");
        assert_eq!(policy_gradient_loss(&[], &[]), 0.0);
        assert_eq!("policy_gradient".parse(), Ok(Optimiser::PolicyGradient));
        assert!("ppo".parse::<Optimiser>().is_err());
    }

    #[test]
    fn an_attack_stops_at_the_target_or_at_the_cap() {
        // Reaches 0.5 after two steps: three measurements, steps 0, 1, 2.
        let rates = [0.1, 0.3, 0.6, 0.9];
        let mut taken = Vec::new();
        let report = run_attack::<()>(0.5, 10, |step| {
            taken.push(step);
            Ok(Some(rates[step]))
        })
        .unwrap();
        assert_eq!(taken, vec![0, 1, 2]);
        assert_eq!(report.steps_to_target, Some(2));
        assert_eq!(report.fool_rates, vec![Some(0.1), Some(0.3), Some(0.6)]);
        // Already fooled before any step.
        let report = run_attack::<()>(0.05, 10, |step| Ok(Some(rates[step]))).unwrap();
        assert_eq!(
            (report.steps_to_target, report.fool_rates.len()),
            (Some(0), 1)
        );
        // Never reaches 0.95: stops after the cap's 3 steps, 4 measurements.
        let report = run_attack::<()>(0.95, 3, |step| Ok(Some(rates[step]))).unwrap();
        assert_eq!(report.steps_to_target, None);
        assert_eq!(report.fool_rates.len(), 4);
        assert_eq!(report.cap, 3);
        // No sneaky incorrect sample is not fooled; a failing step stops the attack.
        let report = run_attack::<()>(0.0, 2, |_| Ok(None)).unwrap();
        assert_eq!(report.steps_to_target, None);
        assert_eq!(
            run_attack(0.5, 2, |s| if s == 1 { Err("x") } else { Ok(Some(0.0)) }),
            Err("x")
        );
        // A cap of 0 measures the round's prover only.
        let report = run_attack::<()>(0.95, 0, |step| Ok(Some(rates[step]))).unwrap();
        assert_eq!(report.fool_rates.len(), 1);
    }
}

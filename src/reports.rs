//! Researchers' report figures, computed from one row per judging attempt.
//!
//! Plain functions over plain rows, so every figure is tested against hand computations and
//! the same rows feed the page, the summary JSON and the downloads. Conventions, as in the
//! paper: a judgement is *right* when its verdict matches the grader's ground truth; accuracy
//! is over answered judgements (timeouts are reported as a rate of their own, not counted as
//! wrong); times are the server's elapsed milliseconds (serve → submit). Excluded raters (the
//! chance-level toggle) are left out of everything but their own per-rater row.

use std::collections::{BTreeMap, HashMap, HashSet};

use uuid::Uuid;

use crate::domain::{ProverRole, Verdict};
use crate::labels::{CHANCE_ALPHA, Vote, human_majority};
use crate::metrics::{
    Z_95, auroc, binomial_upper_tail, brier_score, d_prime, fleiss_kappa,
    krippendorff_alpha_nominal, log_score, median, pearson, wilson_interval,
};

/// One judging attempt: who judged what, the truth, the verdict and its timing.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The rater.
    pub rater_id: Uuid,
    /// The solution judged.
    pub solution_id: Uuid,
    /// Its problem.
    pub problem_id: Uuid,
    /// Label of the prover checkpoint that wrote it.
    pub checkpoint: String,
    /// That checkpoint's round.
    pub round: i64,
    /// The role it was written in.
    pub role: ProverRole,
    /// The grader's verdict.
    pub is_correct: bool,
    /// What the rater said (or `timeout`).
    pub verdict: Verdict,
    /// Server milliseconds from serving to the answer.
    pub server_elapsed_ms: i64,
    /// The first wrong step the rater pointed at after answering "wrong" (1-based line).
    pub first_wrong_step: Option<i64>,
    /// The probability (a share) the answer gave the solution being correct, in confidence
    /// and probability studies (see [`crate::answers::stated_probability`]).
    pub stated_probability: Option<f64>,
    /// The page counted an integrity event (left the tab, lost focus, copy, paste).
    pub integrity_flagged: bool,
    /// The item's time limit, ms (its deadline minus its serving time): its arm, when the
    /// study compares limits.
    pub time_limit_ms: i64,
    /// The item's serial position in the rater's session (1-based); `None` before it was kept.
    pub position: Option<i64>,
}

impl Attempt {
    /// `Some(right)` for an answered judgement, `None` for a timeout.
    pub fn right(&self) -> Option<bool> {
        self.verdict.agrees_with(self.is_correct)
    }

    /// The rater's belief that the solution is correct: the stated probability, else the
    /// verdict as 1 or 0; `None` for a timeout. What the human AUROC ranks solutions by.
    pub fn human_probability(&self) -> Option<f64> {
        match (self.stated_probability, self.verdict) {
            (_, Verdict::Timeout) => None,
            (Some(p), _) => Some(p),
            (None, Verdict::Correct) => Some(1.0),
            (None, Verdict::Wrong) => Some(0.0),
        }
    }
}

/// Accuracy with its Wilson 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Rate {
    /// Successes.
    pub successes: u64,
    /// Trials.
    pub trials: u64,
    /// successes / trials.
    pub value: f64,
    /// Wilson 95 % interval, lower end.
    pub low: f64,
    /// Wilson 95 % interval, upper end.
    pub high: f64,
}

impl Rate {
    /// `None` without trials.
    pub fn of(successes: u64, trials: u64) -> Option<Rate> {
        let (low, high) = wilson_interval(successes, trials, Z_95)?;
        Some(Rate {
            successes,
            trials,
            value: successes as f64 / trials as f64,
            low,
            high,
        })
    }
}

/// The paper's figures for one prover checkpoint × round × role.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GroupReport {
    /// Checkpoint label.
    pub checkpoint: String,
    /// Round.
    pub round: i64,
    /// Role.
    pub role: ProverRole,
    /// Attempts, timeouts included.
    pub judgements: u64,
    /// Accuracy of answered judgements.
    pub accuracy: Option<Rate>,
    /// Accuracy on correct solutions (share judged correct).
    pub accuracy_on_correct: Option<Rate>,
    /// Accuracy on incorrect solutions (share judged wrong).
    pub accuracy_on_incorrect: Option<Rate>,
    /// Sensitivity of "correct" verdicts (log-linear corrected).
    pub d_prime: Option<f64>,
    /// Share of attempts that timed out.
    pub timeout_rate: Option<f64>,
    /// Mean server time of answered judgements, ms.
    pub mean_ms: Option<f64>,
    /// Median server time of answered judgements, ms.
    pub median_ms: Option<f64>,
    /// The paper's "time to judge correctly": mean server time of right judgements, ms.
    pub mean_ms_when_right: Option<f64>,
    /// Answers that stated a probability (confidence and probability studies).
    pub stated: u64,
    /// Of which exactly 50 % (counted as "correct" in the accuracy figures).
    pub even_odds: u64,
    /// Brier score of the stated probabilities against ground truth (lower is better).
    pub brier_score: Option<f64>,
    /// Mean log probability given to the truth (higher is better; see
    /// [`crate::metrics::log_score`]).
    pub log_score: Option<f64>,
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The figures of one set of attempts (any grouping).
struct Figures {
    judgements: u64,
    answered: u64,
    accuracy: Option<Rate>,
    on_correct: Option<Rate>,
    on_incorrect: Option<Rate>,
    d_prime: Option<f64>,
    timeout_rate: Option<f64>,
    mean_ms: Option<f64>,
    median_ms: Option<f64>,
    mean_ms_when_right: Option<f64>,
    stated: u64,
    even_odds: u64,
    brier_score: Option<f64>,
    log_score: Option<f64>,
}

fn figures(attempts: &[&Attempt]) -> Figures {
    let (stated, truth): (Vec<f64>, Vec<bool>) = attempts
        .iter()
        .filter(|a| a.verdict != Verdict::Timeout)
        .filter_map(|a| Some((a.stated_probability?, a.is_correct)))
        .unzip();
    let answered: Vec<(&Attempt, bool)> = attempts
        .iter()
        .filter_map(|a| a.right().map(|r| (*a, r)))
        .collect();
    let right = answered.iter().filter(|(_, r)| *r).count() as u64;
    let on = |truth: bool| {
        let set: Vec<bool> = answered
            .iter()
            .filter(|(a, _)| a.is_correct == truth)
            .map(|(_, r)| *r)
            .collect();
        Rate::of(set.iter().filter(|r| **r).count() as u64, set.len() as u64)
    };
    let on_correct = on(true);
    let on_incorrect = on(false);
    let hits = on_correct.map_or(0, |r| r.successes);
    let correct_total = on_correct.map_or(0, |r| r.trials);
    let false_alarms = on_incorrect.map_or(0, |r| r.trials - r.successes);
    let incorrect_total = on_incorrect.map_or(0, |r| r.trials);
    let times: Vec<f64> = answered
        .iter()
        .map(|(a, _)| a.server_elapsed_ms as f64)
        .collect();
    let right_times: Vec<f64> = answered
        .iter()
        .filter(|(_, r)| *r)
        .map(|(a, _)| a.server_elapsed_ms as f64)
        .collect();
    let n = attempts.len() as u64;
    let timeouts = n - answered.len() as u64;
    Figures {
        judgements: n,
        answered: answered.len() as u64,
        accuracy: Rate::of(right, answered.len() as u64),
        on_correct,
        on_incorrect,
        d_prime: d_prime(hits, correct_total, false_alarms, incorrect_total),
        timeout_rate: (n > 0).then(|| timeouts as f64 / n as f64),
        mean_ms: mean(&times),
        median_ms: median(&times),
        mean_ms_when_right: mean(&right_times),
        stated: stated.len() as u64,
        even_odds: stated.iter().filter(|p| **p == 0.5).count() as u64,
        brier_score: brier_score(&stated, &truth),
        log_score: log_score(&stated, &truth),
    }
}

/// Per checkpoint × round × role, sorted by checkpoint, round, role; raters in `excluded` are
/// left out.
pub fn group_reports(attempts: &[Attempt], excluded: &HashSet<Uuid>) -> Vec<GroupReport> {
    let mut groups: BTreeMap<(&str, i64, ProverRole), Vec<&Attempt>> = BTreeMap::new();
    for a in attempts.iter().filter(|a| !excluded.contains(&a.rater_id)) {
        groups
            .entry((a.checkpoint.as_str(), a.round, a.role))
            .or_default()
            .push(a);
    }
    groups
        .into_iter()
        .map(|((checkpoint, round, role), members)| {
            let f = figures(&members);
            GroupReport {
                checkpoint: checkpoint.to_string(),
                round,
                role,
                judgements: f.judgements,
                accuracy: f.accuracy,
                accuracy_on_correct: f.on_correct,
                accuracy_on_incorrect: f.on_incorrect,
                d_prime: f.d_prime,
                timeout_rate: f.timeout_rate,
                mean_ms: f.mean_ms,
                median_ms: f.median_ms,
                mean_ms_when_right: f.mean_ms_when_right,
                stated: f.stated,
                even_odds: f.even_odds,
                brier_score: f.brier_score,
                log_score: f.log_score,
            }
        })
        .collect()
}

/// Stated probabilities against how often the solutions were in fact correct, in one tenth
/// of the scale.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CalibrationBin {
    /// Bin start, percent (inclusive).
    pub from_percent: i64,
    /// Bin end, percent (exclusive; the last bin includes 100).
    pub to_percent: i64,
    /// Answers in the bin.
    pub answers: u64,
    /// Their mean stated probability (a share).
    pub mean_stated: f64,
    /// Share of their solutions that were correct, with its Wilson interval.
    pub observed: Rate,
}

/// The calibration plot's bins: answers with a stated probability, by tenths of the scale
/// (`[0, 10)`, …, `[90, 100]` percent); empty bins are left out. Raters in `excluded` are
/// left out.
pub fn calibration(attempts: &[Attempt], excluded: &HashSet<Uuid>) -> Vec<CalibrationBin> {
    let mut bins: BTreeMap<i64, (u64, f64, u64)> = BTreeMap::new();
    for a in attempts.iter().filter(|a| !excluded.contains(&a.rater_id)) {
        if a.verdict == Verdict::Timeout {
            continue;
        }
        let Some(p) = a.stated_probability else {
            continue;
        };
        // Stated probabilities are whole percents: round before binning, so 0.3 is in 30-40.
        let bin = ((p * 100.0).round() as i64 / 10).clamp(0, 9);
        let entry = bins.entry(bin).or_default();
        entry.0 += 1;
        entry.1 += p;
        entry.2 += u64::from(a.is_correct);
    }
    bins.into_iter()
        .filter_map(|(bin, (n, sum, correct))| {
            Some(CalibrationBin {
                from_percent: bin * 10,
                to_percent: bin * 10 + 10,
                answers: n,
                mean_stated: sum / n as f64,
                observed: Rate::of(correct, n)?,
            })
        })
        .collect()
}

/// Each solution's human score: the mean of its answers' [`Attempt::human_probability`],
/// over solutions with at least one answer; with its ground truth. Answers are whole percents,
/// summed as integers, so two solutions with the same answers in another order tie exactly
/// (the AUROC counts ties as one half).
pub fn human_scores(attempts: &[Attempt], excluded: &HashSet<Uuid>) -> BTreeMap<Uuid, (f64, bool)> {
    let mut sums: BTreeMap<Uuid, (i64, u64, bool)> = BTreeMap::new();
    for a in attempts.iter().filter(|a| !excluded.contains(&a.rater_id)) {
        if let Some(p) = a.human_probability() {
            let entry = sums.entry(a.solution_id).or_insert((0, 0, a.is_correct));
            entry.0 += (p * 100.0).round() as i64;
            entry.1 += 1;
        }
    }
    sums.into_iter()
        .map(|(id, (percent, n, truth))| (id, (percent as f64 / n as f64 / 100.0, truth)))
        .collect()
}

/// How well the raters, pooled per solution, tell correct from incorrect solutions: the AUROC
/// of [`human_scores`] against ground truth (the paper compares it with the verifier's).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HumanAuroc {
    /// Solutions with at least one answer.
    pub solutions: u64,
    /// AUROC of the human scores; `None` unless both correct and incorrect solutions are there.
    pub auroc: Option<f64>,
}

/// The human AUROC of `attempts`, raters in `excluded` left out.
pub fn human_auroc(attempts: &[Attempt], excluded: &HashSet<Uuid>) -> HumanAuroc {
    let scored = human_scores(attempts, excluded);
    let (scores, truth): (Vec<f64>, Vec<bool>) = scored.values().copied().unzip();
    HumanAuroc {
        solutions: scored.len() as u64,
        auroc: auroc(&scores, &truth),
    }
}

/// One point of a checkpoint's speed–accuracy curve: its answers under one time limit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ArmReport {
    /// Checkpoint label.
    pub checkpoint: String,
    /// The time limit, ms.
    pub time_limit_ms: i64,
    /// Attempts, timeouts included.
    pub judgements: u64,
    /// Accuracy of answered judgements, with its Wilson interval.
    pub accuracy: Option<Rate>,
    /// Share of attempts that timed out.
    pub timeout_rate: Option<f64>,
    /// The paper's time to judge correctly: mean server time of right answers, ms.
    pub mean_ms_when_right: Option<f64>,
    /// Its normal 95 % interval (mean ± 1.96 standard errors; needs two right answers).
    pub mean_ms_when_right_low: Option<f64>,
    /// Upper end.
    pub mean_ms_when_right_high: Option<f64>,
}

/// The speed–accuracy curves: per checkpoint × time limit, sorted by checkpoint and limit.
pub fn arm_reports(attempts: &[Attempt], excluded: &HashSet<Uuid>) -> Vec<ArmReport> {
    let mut arms: BTreeMap<(&str, i64), Vec<&Attempt>> = BTreeMap::new();
    for a in attempts.iter().filter(|a| !excluded.contains(&a.rater_id)) {
        arms.entry((a.checkpoint.as_str(), a.time_limit_ms))
            .or_default()
            .push(a);
    }
    arms.into_iter()
        .map(|((checkpoint, time_limit_ms), members)| {
            let f = figures(&members);
            let right: Vec<i64> = members
                .iter()
                .filter(|a| a.right() == Some(true))
                .map(|a| a.server_elapsed_ms)
                .collect();
            let spread = standard_error(&right).map(|se| Z_95 * se);
            ArmReport {
                checkpoint: checkpoint.to_string(),
                time_limit_ms,
                judgements: f.judgements,
                accuracy: f.accuracy,
                timeout_rate: f.timeout_rate,
                mean_ms_when_right: f.mean_ms_when_right,
                mean_ms_when_right_low: f.mean_ms_when_right.zip(spread).map(|(m, s)| m - s),
                mean_ms_when_right_high: f.mean_ms_when_right.zip(spread).map(|(m, s)| m + s),
            }
        })
        .collect()
}

/// The standard error of the mean (sample standard deviation / √n) of whole milliseconds;
/// needs two values. Summed as integers (n·Σx² − (Σx)² is exact), so the figure does not
/// depend on the order the attempts were read in: a restored database reports the same bits.
fn standard_error(values: &[i64]) -> Option<f64> {
    let n = values.len() as i128;
    if n < 2 {
        return None;
    }
    let sum: i128 = values.iter().map(|v| i128::from(*v)).sum();
    let squares: i128 = values.iter().map(|v| i128::from(*v) * i128::from(*v)).sum();
    let variance = (n * squares - sum * sum) as f64 / (n * (n - 1)) as f64;
    Some((variance / n as f64).sqrt())
}

/// Accuracy of the answers at serial positions `from`..=`to` of the raters' sessions.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PositionBucket {
    /// First position (1-based).
    pub from: i64,
    /// Last position.
    pub to: i64,
    /// Attempts at these positions, timeouts included.
    pub judgements: u64,
    /// Accuracy of the answered ones.
    pub accuracy: Option<Rate>,
}

/// Positions per bucket of the accuracy-by-position figure.
pub const POSITION_BUCKET: i64 = 5;

/// Accuracy by serial position (fatigue and learning), in buckets of [`POSITION_BUCKET`] up
/// to the last position seen; attempts without a position are left out.
pub fn accuracy_by_position(attempts: &[Attempt], excluded: &HashSet<Uuid>) -> Vec<PositionBucket> {
    let mut buckets: BTreeMap<i64, Vec<&Attempt>> = BTreeMap::new();
    for a in attempts.iter().filter(|a| !excluded.contains(&a.rater_id)) {
        if let Some(position) = a.position {
            buckets
                .entry((position.max(1) - 1) / POSITION_BUCKET)
                .or_default()
                .push(a);
        }
    }
    let Some(&last) = buckets.keys().next_back() else {
        return Vec::new();
    };
    (0..=last)
        .map(|k| {
            let members = buckets.get(&k).map(Vec::as_slice).unwrap_or(&[]);
            let f = figures(members);
            PositionBucket {
                from: k * POSITION_BUCKET + 1,
                to: (k + 1) * POSITION_BUCKET,
                judgements: f.judgements,
                accuracy: f.accuracy,
            }
        })
        .collect()
}

/// How many attempts carry an integrity flag, and how many the report left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct IntegritySummary {
    /// Attempts whose page counted an integrity event.
    pub flagged_attempts: u64,
    /// Of which left out of every figure (`?exclude=flagged`).
    pub excluded_attempts: u64,
}

impl IntegritySummary {
    /// The summary of `attempts` when flagged ones are (or are not) left out.
    pub fn of(attempts: &[Attempt], exclude_flagged: bool) -> IntegritySummary {
        let flagged = attempts.iter().filter(|a| a.integrity_flagged).count() as u64;
        IntegritySummary {
            flagged_attempts: flagged,
            excluded_attempts: if exclude_flagged { flagged } else { 0 },
        }
    }
}

/// The attempts without integrity flags, for a report that leaves flagged ones out.
pub fn without_flagged(attempts: &[Attempt]) -> Vec<Attempt> {
    attempts
        .iter()
        .filter(|a| !a.integrity_flagged)
        .cloned()
        .collect()
}

/// One rater's figures and the chance test.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RaterReport {
    /// The rater.
    pub rater_id: Uuid,
    /// Attempts, timeouts included.
    pub judgements: u64,
    /// Accuracy of answered judgements.
    pub accuracy: Option<Rate>,
    /// Median server time of answered judgements, ms.
    pub median_ms: Option<f64>,
    /// Timeouts.
    pub timeouts: u64,
    /// One-sided binomial p-value of the accuracy against guessing (p = 0.5).
    pub p_value: f64,
    /// Whether the rater cannot be told from guessing at [`CHANCE_ALPHA`].
    pub chance_level: bool,
}

/// Per rater, ordered by rater id (rater ids are time-ordered, so this is invitation order).
pub fn rater_reports(attempts: &[Attempt]) -> Vec<RaterReport> {
    let mut by_rater: BTreeMap<Uuid, Vec<&Attempt>> = BTreeMap::new();
    for a in attempts {
        by_rater.entry(a.rater_id).or_default().push(a);
    }
    by_rater
        .into_iter()
        .map(|(rater_id, members)| {
            let f = figures(&members);
            let right = f.accuracy.map_or(0, |r| r.successes);
            let p_value = binomial_upper_tail(right, f.answered, 0.5);
            RaterReport {
                rater_id,
                judgements: f.judgements,
                accuracy: f.accuracy,
                median_ms: f.median_ms,
                timeouts: f.judgements - f.answered,
                p_value,
                chance_level: p_value > CHANCE_ALPHA,
            }
        })
        .collect()
}

/// Agreement between raters on solutions with at least two answered judgements.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Agreement {
    /// Solutions counted.
    pub solutions: u64,
    /// Fleiss' κ over verdicts (correct / wrong).
    pub fleiss_kappa: Option<f64>,
    /// Krippendorff's α, nominal.
    pub krippendorff_alpha: Option<f64>,
}

/// Agreement of answered verdicts, raters in `excluded` left out.
pub fn agreement(attempts: &[Attempt], excluded: &HashSet<Uuid>) -> Agreement {
    let mut counts: BTreeMap<Uuid, Vec<u64>> = BTreeMap::new();
    for a in attempts.iter().filter(|a| !excluded.contains(&a.rater_id)) {
        let column = match a.verdict {
            Verdict::Correct => 0,
            Verdict::Wrong => 1,
            Verdict::Timeout => continue,
        };
        counts.entry(a.solution_id).or_insert_with(|| vec![0, 0])[column] += 1;
    }
    let table: Vec<Vec<u64>> = counts
        .into_values()
        .filter(|c| c.iter().sum::<u64>() >= 2)
        .collect();
    Agreement {
        solutions: table.len() as u64,
        fleiss_kappa: fleiss_kappa(&table),
        krippendorff_alpha: krippendorff_alpha_nominal(&table),
    }
}

/// Accuracy of answered judgements whose server time falls in one bucket.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TimeBucket {
    /// Bucket start, ms (inclusive).
    pub from_ms: i64,
    /// Bucket end, ms (exclusive).
    pub to_ms: i64,
    /// Accuracy in the bucket.
    pub accuracy: Option<Rate>,
}

/// Speed–accuracy: answered judgements in buckets of `width_ms` up to the slowest one.
pub fn accuracy_by_time(
    attempts: &[Attempt],
    excluded: &HashSet<Uuid>,
    width_ms: i64,
) -> Vec<TimeBucket> {
    let width = width_ms.max(1);
    let mut buckets: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    for a in attempts.iter().filter(|a| !excluded.contains(&a.rater_id)) {
        if let Some(right) = a.right() {
            let entry = buckets
                .entry(a.server_elapsed_ms.max(0) / width)
                .or_default();
            entry.1 += 1;
            if right {
                entry.0 += 1;
            }
        }
    }
    let Some(&last) = buckets.keys().next_back() else {
        return Vec::new();
    };
    (0..=last)
        .map(|k| {
            let (right, n) = buckets.get(&k).copied().unwrap_or((0, 0));
            TimeBucket {
                from_ms: k * width,
                to_ms: (k + 1) * width,
                accuracy: Rate::of(right, n),
            }
        })
        .collect()
}

/// Width of the speed–accuracy buckets: 5 s (a 45 s limit gives 9 buckets).
pub const TIME_BUCKET_MS: i64 = 5_000;

/// A study's whole report: what the page shows and the summary download holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StudyReport {
    /// Raters left out of the figures below (chance-level ones, when asked).
    pub excluded_raters: Vec<Uuid>,
    /// Per checkpoint × round × role.
    pub groups: Vec<GroupReport>,
    /// Per rater (every rater, excluded ones included, so the toggle is visible).
    pub raters: Vec<RaterReport>,
    /// Agreement on solutions with at least two answers.
    pub agreement: Agreement,
    /// Accuracy by server time.
    pub accuracy_by_time: Vec<TimeBucket>,
    /// How often raters localise the error after "wrong", per role.
    pub step_flags: Vec<StepFlagReport>,
    /// Stated probabilities against observed correctness (confidence and probability studies).
    pub calibration: Vec<CalibrationBin>,
    /// The raters' AUROC, pooled per solution.
    pub human_auroc: HumanAuroc,
    /// Attempts with integrity flags, and how many were left out.
    pub integrity: IntegritySummary,
    /// Speed–accuracy per checkpoint × time limit (one limit per checkpoint without arms).
    pub arms: Vec<ArmReport>,
    /// Accuracy by serial position in the raters' sessions.
    pub accuracy_by_position: Vec<PositionBucket>,
}

/// Step flags of one prover role: after answering "wrong", how often raters pointed at the
/// first wrong step, and how much they agree on it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepFlagReport {
    /// The prover role.
    pub role: ProverRole,
    /// "Wrong" verdicts.
    pub wrong_verdicts: u64,
    /// Of which with a step flag.
    pub flagged: u64,
    /// Share of "wrong" verdicts with a flag (with its Wilson interval).
    pub flag_rate: Option<Rate>,
    /// "Wrong" verdicts on solutions that are in fact incorrect (the errors to localise).
    pub wrong_on_incorrect: u64,
    /// Of which with a step flag.
    pub flagged_on_incorrect: u64,
    /// Flags on solutions flagged by at least two raters.
    pub flags_on_shared_solutions: u64,
    /// Share of those flags naming the solution's most often flagged step (ties: the earliest).
    pub agreement_with_modal_step: Option<f64>,
}

/// Step-flag figures per role, leaving out `excluded` raters.
pub fn step_flag_reports(attempts: &[Attempt], excluded: &HashSet<Uuid>) -> Vec<StepFlagReport> {
    ProverRole::ALL
        .iter()
        .map(|&role| {
            let wrong: Vec<&Attempt> = attempts
                .iter()
                .filter(|a| a.role == role && a.verdict == Verdict::Wrong)
                .filter(|a| !excluded.contains(&a.rater_id))
                .collect();
            let flagged = wrong
                .iter()
                .filter(|a| a.first_wrong_step.is_some())
                .count() as u64;
            let on_incorrect: Vec<&&Attempt> = wrong.iter().filter(|a| !a.is_correct).collect();
            let mut steps_by_solution: BTreeMap<Uuid, Vec<i64>> = BTreeMap::new();
            for a in &wrong {
                if let Some(step) = a.first_wrong_step {
                    steps_by_solution
                        .entry(a.solution_id)
                        .or_default()
                        .push(step);
                }
            }
            let (mut shared, mut agreeing) = (0u64, 0u64);
            for steps in steps_by_solution.values().filter(|s| s.len() >= 2) {
                let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
                for step in steps {
                    *counts.entry(*step).or_default() += 1;
                }
                // BTreeMap order: the earliest step wins ties.
                let modal = counts.values().copied().max().unwrap_or(0);
                shared += steps.len() as u64;
                agreeing += modal;
            }
            StepFlagReport {
                role,
                wrong_verdicts: wrong.len() as u64,
                flagged,
                flag_rate: Rate::of(flagged, wrong.len() as u64),
                wrong_on_incorrect: on_incorrect.len() as u64,
                flagged_on_incorrect: on_incorrect
                    .iter()
                    .filter(|a| a.first_wrong_step.is_some())
                    .count() as u64,
                flags_on_shared_solutions: shared,
                agreement_with_modal_step: (shared > 0).then(|| agreeing as f64 / shared as f64),
            }
        })
        .collect()
}

/// The report of `attempts`; with `exclude_chance_level`, raters the binomial test cannot tell
/// from guessing are left out of every figure but their own row (as the paper excluded 4 of
/// 75 raters).
pub fn study_report(attempts: &[Attempt], exclude_chance_level: bool) -> StudyReport {
    let raters = rater_reports(attempts);
    let excluded: HashSet<Uuid> = if exclude_chance_level {
        raters
            .iter()
            .filter(|r| r.chance_level)
            .map(|r| r.rater_id)
            .collect()
    } else {
        HashSet::new()
    };
    StudyReport {
        excluded_raters: raters
            .iter()
            .map(|r| r.rater_id)
            .filter(|id| excluded.contains(id))
            .collect(),
        groups: group_reports(attempts, &excluded),
        agreement: agreement(attempts, &excluded),
        accuracy_by_time: accuracy_by_time(attempts, &excluded, TIME_BUCKET_MS),
        step_flags: step_flag_reports(attempts, &excluded),
        calibration: calibration(attempts, &excluded),
        human_auroc: human_auroc(attempts, &excluded),
        integrity: IntegritySummary::of(attempts, false),
        arms: arm_reports(attempts, &excluded),
        accuracy_by_position: accuracy_by_position(attempts, &excluded),
        raters,
    }
}

/// How the current verifier's scores relate to ground truth and to the raters.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VerifierVsHumans {
    /// The verifier version.
    pub version: i64,
    /// Solutions it scored.
    pub solutions: u64,
    /// AUROC of the score against ground truth.
    pub auroc_ground_truth: Option<f64>,
    /// Solutions with a human majority, and the score's AUROC against it.
    pub with_majority: u64,
    /// AUROC of the score against the human majority.
    pub auroc_human_majority: Option<f64>,
    /// Pearson correlation of the score with the share of raters who judged the solution
    /// right, over solutions with at least one answer.
    pub correlation_with_human_accuracy: Option<f64>,
    /// Solutions both scored and answered by raters: the two AUROCs below are over these.
    pub compared_solutions: u64,
    /// The raters' AUROC (pooled per solution, see [`human_scores`]) on those solutions.
    pub human_auroc: Option<f64>,
    /// The verifier's AUROC against ground truth on the same solutions.
    pub verifier_auroc: Option<f64>,
}

/// The verifier-versus-humans figures of `version`'s `scores` (solution, score, ground truth),
/// raters in `excluded` left out of the human side.
pub fn verifier_vs_humans(
    version: i64,
    scores: &[(Uuid, f64, bool)],
    attempts: &[Attempt],
    excluded: &HashSet<Uuid>,
) -> VerifierVsHumans {
    let mut votes: HashMap<Uuid, Vec<Vote>> = HashMap::new();
    let mut right: HashMap<Uuid, (u64, u64)> = HashMap::new();
    for a in attempts.iter().filter(|a| !excluded.contains(&a.rater_id)) {
        votes.entry(a.solution_id).or_default().push(Vote {
            rater_id: a.rater_id,
            verdict: a.verdict,
        });
        if let Some(r) = a.right() {
            let entry = right.entry(a.solution_id).or_default();
            entry.1 += 1;
            if r {
                entry.0 += 1;
            }
        }
    }
    let humans = human_scores(attempts, excluded);
    let (mut human_side, mut verifier_side, mut compared_truth) =
        (Vec::new(), Vec::new(), Vec::new());
    for (id, score, truth) in scores {
        if let Some((human, _)) = humans.get(id) {
            human_side.push(*human);
            verifier_side.push(*score);
            compared_truth.push(*truth);
        }
    }
    let values: Vec<f64> = scores.iter().map(|(_, s, _)| *s).collect();
    let truth: Vec<bool> = scores.iter().map(|(_, _, t)| *t).collect();
    let (majority_scores, majority): (Vec<f64>, Vec<bool>) = scores
        .iter()
        .filter_map(|(id, score, _)| {
            let said = human_majority(votes.get(id).map(Vec::as_slice).unwrap_or(&[]), excluded)?;
            Some((*score, said))
        })
        .unzip();
    let (answered_scores, accuracy): (Vec<f64>, Vec<f64>) = scores
        .iter()
        .filter_map(|(id, score, _)| {
            let (k, n) = right.get(id)?;
            Some((*score, *k as f64 / *n as f64))
        })
        .unzip();
    VerifierVsHumans {
        version,
        solutions: scores.len() as u64,
        auroc_ground_truth: auroc(&values, &truth),
        with_majority: majority.len() as u64,
        auroc_human_majority: auroc(&majority_scores, &majority),
        correlation_with_human_accuracy: pearson(&answered_scores, &accuracy),
        compared_solutions: compared_truth.len() as u64,
        human_auroc: auroc(&human_side, &compared_truth),
        verifier_auroc: auroc(&verifier_side, &compared_truth),
    }
}

/// Human accuracy on one quarter of the problems, ordered by how often the model solved them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DifficultyQuartile {
    /// 1 = the hardest quarter (lowest solve rates) … 4 = the easiest.
    pub quartile: u8,
    /// Problems in the quarter.
    pub problems: u64,
    /// Lowest model solve rate in the quarter.
    pub solve_rate_from: f64,
    /// Highest model solve rate in the quarter.
    pub solve_rate_to: f64,
    /// Human accuracy on the quarter's solutions.
    pub accuracy: Option<Rate>,
}

/// Human accuracy by problem difficulty quartile (the paper's Fig. 4d): problems ranked by the
/// model's solve rate (`solve_rates`, ties broken by id) and cut into four near-equal groups.
/// Problems without a solve rate are left out.
pub fn accuracy_by_difficulty(
    attempts: &[Attempt],
    solve_rates: &HashMap<Uuid, f64>,
    excluded: &HashSet<Uuid>,
) -> Vec<DifficultyQuartile> {
    let mut ranked: Vec<(Uuid, f64)> = solve_rates.iter().map(|(p, r)| (*p, *r)).collect();
    ranked.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let n = ranked.len();
    let quartile_of: HashMap<Uuid, usize> = ranked
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (*p, i * 4 / n.max(1)))
        .collect();
    let mut tallies = [(0u64, 0u64); 4];
    for a in attempts.iter().filter(|a| !excluded.contains(&a.rater_id)) {
        if let (Some(&q), Some(r)) = (quartile_of.get(&a.problem_id), a.right()) {
            tallies[q].1 += 1;
            if r {
                tallies[q].0 += 1;
            }
        }
    }
    (0..4)
        .filter_map(|q| {
            let members: Vec<f64> = ranked
                .iter()
                .filter(|(p, _)| quartile_of[p] == q)
                .map(|(_, r)| *r)
                .collect();
            let (from, to) = (members.first()?, members.last()?);
            Some(DifficultyQuartile {
                quartile: q as u8 + 1,
                problems: members.len() as u64,
                solve_rate_from: *from,
                solve_rate_to: *to,
                accuracy: Rate::of(tallies[q].0, tallies[q].1),
            })
        })
        .collect()
}

/// A solution in a study, as the per-solution drill-down lists it (also before any judgement).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StudySolution {
    /// The solution.
    pub solution_id: Uuid,
    /// Its problem.
    pub problem_id: Uuid,
    /// Label of the prover checkpoint that wrote it.
    pub checkpoint: String,
    /// That checkpoint's round.
    pub round: i64,
    /// The role it was written in.
    pub role: ProverRole,
    /// The grader's verdict.
    pub is_correct: bool,
}

/// One solution's human and verifier figures.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SolutionSummary {
    /// The solution, its checkpoint, round, role and ground truth.
    #[serde(flatten)]
    pub solution: StudySolution,
    /// Attempts, timeouts included.
    pub judgements: u64,
    /// Answered attempts.
    pub answered: u64,
    /// Answers that said "correct".
    pub judged_correct: u64,
    /// Human accuracy on this solution, with its Wilson interval.
    pub accuracy: Option<Rate>,
    /// Mean server time of the answers, ms.
    pub mean_ms: Option<f64>,
    /// Mean of the answers' [`Attempt::human_probability`] (what the human AUROC ranks by).
    pub human_score: Option<f64>,
    /// The current verifier's score, when it scored the solution.
    pub verifier_score: Option<f64>,
    /// An incorrect solution most raters who answered judged correct: one that fooled people.
    pub fooled_most: bool,
}

/// Per solution of the study (every one in `solutions`, judged or not), raters in `excluded`
/// left out; `scores` are the current verifier's.
pub fn solution_summaries(
    solutions: &[StudySolution],
    attempts: &[Attempt],
    excluded: &HashSet<Uuid>,
    scores: &HashMap<Uuid, f64>,
) -> Vec<SolutionSummary> {
    let mut by_solution: HashMap<Uuid, Vec<&Attempt>> = HashMap::new();
    for a in attempts.iter().filter(|a| !excluded.contains(&a.rater_id)) {
        by_solution.entry(a.solution_id).or_default().push(a);
    }
    solutions
        .iter()
        .map(|s| {
            let members = by_solution
                .get(&s.solution_id)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let answered: Vec<&&Attempt> = members
                .iter()
                .filter(|a| a.verdict != Verdict::Timeout)
                .collect();
            let right = answered.iter().filter(|a| a.right() == Some(true)).count() as u64;
            let judged_correct = answered
                .iter()
                .filter(|a| a.verdict == Verdict::Correct)
                .count() as u64;
            let times: Vec<f64> = answered
                .iter()
                .map(|a| a.server_elapsed_ms as f64)
                .collect();
            let beliefs: Vec<f64> = answered
                .iter()
                .filter_map(|a| a.human_probability())
                .collect();
            let n = answered.len() as u64;
            SolutionSummary {
                solution: s.clone(),
                judgements: members.len() as u64,
                answered: n,
                judged_correct,
                accuracy: Rate::of(right, n),
                mean_ms: mean(&times),
                human_score: mean(&beliefs),
                verifier_score: scores.get(&s.solution_id).copied(),
                fooled_most: !s.is_correct && n > 0 && 2 * judged_correct > n,
            }
        })
        .collect()
}

/// How the drill-down orders solutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SolutionOrder {
    /// Lowest human accuracy first (unjudged last): the solutions people got wrong.
    #[default]
    Accuracy,
    /// Largest share of "correct" answers first.
    JudgedCorrect,
    /// Slowest mean time first.
    Time,
    /// Highest verifier score first.
    VerifierScore,
}

impl SolutionOrder {
    /// The query value of each order.
    pub fn parse(text: &str) -> Result<SolutionOrder, String> {
        match text {
            "" | "accuracy" => Ok(SolutionOrder::Accuracy),
            "judged_correct" => Ok(SolutionOrder::JudgedCorrect),
            "time" => Ok(SolutionOrder::Time),
            "verifier" => Ok(SolutionOrder::VerifierScore),
            other => Err(format!(
                "sort must be accuracy, judged_correct, time or verifier, not {other:?}"
            )),
        }
    }
}

/// Which solutions the drill-down shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SolutionFilter {
    /// Only this role.
    pub role: Option<ProverRole>,
    /// Only correct (`true`) or incorrect (`false`) solutions.
    pub is_correct: Option<bool>,
    /// Only incorrect solutions most raters judged correct.
    pub fooled_most: bool,
}

/// `summaries` filtered and sorted; ties keep checkpoint, round and solution order.
pub fn select_solutions(
    mut summaries: Vec<SolutionSummary>,
    filter: SolutionFilter,
    order: SolutionOrder,
) -> Vec<SolutionSummary> {
    summaries.retain(|s| {
        filter.role.is_none_or(|r| r == s.solution.role)
            && filter.is_correct.is_none_or(|c| c == s.solution.is_correct)
            && (!filter.fooled_most || s.fooled_most)
    });
    summaries.sort_by(|a, b| {
        let (a, b) = (&a.solution, &b.solution);
        (a.checkpoint.as_str(), a.round, a.solution_id).cmp(&(
            b.checkpoint.as_str(),
            b.round,
            b.solution_id,
        ))
    });
    // Absent figures sort last whatever the direction.
    let key = |s: &SolutionSummary| -> Option<f64> {
        match order {
            SolutionOrder::Accuracy => s.accuracy.map(|r| r.value),
            SolutionOrder::JudgedCorrect => {
                (s.answered > 0).then(|| -(s.judged_correct as f64 / s.answered as f64))
            }
            SolutionOrder::Time => s.mean_ms.map(|ms| -ms),
            SolutionOrder::VerifierScore => s.verifier_score.map(|v| -v),
        }
    };
    summaries.sort_by(|a, b| match (key(a), key(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    summaries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(
        rater: u128,
        solution: u128,
        role: ProverRole,
        is_correct: bool,
        verdict: Verdict,
        ms: i64,
    ) -> Attempt {
        Attempt {
            rater_id: Uuid::from_u128(rater),
            solution_id: Uuid::from_u128(solution),
            problem_id: Uuid::from_u128(solution / 2),
            checkpoint: "p".into(),
            round: 0,
            role,
            is_correct,
            verdict,
            server_elapsed_ms: ms,
            first_wrong_step: None,
            stated_probability: None,
            integrity_flagged: false,
            time_limit_ms: 45_000,
            position: None,
        }
    }

    use ProverRole::{Helpful, Sneaky};
    use Verdict::{Correct, Timeout, Wrong};

    /// Rater 1 is right 4 of 4; rater 2 right 1 of 3 with a timeout.
    fn fixture() -> Vec<Attempt> {
        vec![
            attempt(1, 10, Helpful, true, Correct, 10_000),
            attempt(1, 11, Sneaky, false, Wrong, 20_000),
            attempt(1, 12, Helpful, true, Correct, 30_000),
            attempt(1, 13, Sneaky, false, Wrong, 40_000),
            attempt(2, 10, Helpful, true, Wrong, 5_000),
            attempt(2, 11, Sneaky, false, Correct, 15_000),
            attempt(2, 12, Helpful, true, Correct, 25_000),
            attempt(2, 13, Sneaky, false, Timeout, 45_000),
        ]
    }

    #[test]
    fn group_figures_match_hand_computation() {
        let groups = group_reports(&fixture(), &HashSet::new());
        assert_eq!(groups.len(), 2);
        let helpful = &groups[0];
        assert_eq!((helpful.role, helpful.judgements), (Helpful, 4));
        // Helpful: 3 of 4 right (rater 2 said wrong once); all helpful solutions correct.
        let accuracy = helpful.accuracy.expect("accuracy");
        assert_eq!((accuracy.successes, accuracy.trials), (3, 4));
        assert_eq!(helpful.accuracy_on_incorrect, None);
        assert_eq!(helpful.d_prime, None, "no incorrect solutions");
        assert_eq!(helpful.timeout_rate, Some(0.0));
        assert_eq!(helpful.mean_ms, Some(17_500.0));
        assert_eq!(helpful.median_ms, Some(17_500.0));
        assert_eq!(helpful.mean_ms_when_right, Some(65_000.0 / 3.0));
        // Sneaky: 3 answered, 2 right; one timeout of 4.
        let sneaky = &groups[1];
        let accuracy = sneaky.accuracy.expect("accuracy");
        assert_eq!((accuracy.successes, accuracy.trials), (2, 3));
        assert_eq!(sneaky.timeout_rate, Some(0.25));
        assert_eq!(sneaky.mean_ms, Some(25_000.0));
        // Excluding rater 2 leaves rater 1's perfect record.
        let only_first = group_reports(&fixture(), &[Uuid::from_u128(2)].into());
        assert_eq!(only_first[0].accuracy.expect("a").value, 1.0);
        assert_eq!(only_first[1].timeout_rate, Some(0.0));
    }

    #[test]
    fn d_prime_of_a_mixed_group() {
        let mut rows = fixture();
        for a in &mut rows {
            a.role = Helpful;
        }
        let group = &group_reports(&rows, &HashSet::new())[0];
        // Hits 3 of 4 correct, false alarms 1 of 3 incorrect (timeout left out).
        let expected =
            crate::metrics::normal_quantile(3.5 / 5.0) - crate::metrics::normal_quantile(1.5 / 4.0);
        assert!((group.d_prime.expect("d'") - expected).abs() < 1e-12);
        assert_eq!(group.accuracy_on_correct.expect("c").value, 0.75);
        assert!((group.accuracy_on_incorrect.expect("i").value - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn rater_figures_and_the_chance_test() {
        let raters = rater_reports(&fixture());
        assert_eq!(raters.len(), 2);
        let (first, second) = (&raters[0], &raters[1]);
        assert_eq!(first.rater_id, Uuid::from_u128(1));
        assert_eq!(first.accuracy.expect("a").value, 1.0);
        assert_eq!(first.median_ms, Some(25_000.0));
        // 4 of 4: p = 1/16 > 0.05, still indistinguishable from guessing.
        assert!((first.p_value - 1.0 / 16.0).abs() < 1e-12);
        assert!(first.chance_level);
        assert_eq!((second.judgements, second.timeouts), (4, 1));
        assert_eq!(second.median_ms, Some(15_000.0));
    }

    #[test]
    fn agreement_counts_solutions_with_two_answers() {
        let result = agreement(&fixture(), &HashSet::new());
        // Solutions 10 (C, W), 11 (W, C), 12 (C, C); 13 has one answer and a timeout.
        assert_eq!(result.solutions, 3);
        let table = vec![vec![1, 1], vec![1, 1], vec![2, 0]];
        assert_eq!(result.fleiss_kappa, fleiss_kappa(&table));
        assert_eq!(
            result.krippendorff_alpha,
            krippendorff_alpha_nominal(&table)
        );
        // By hand: P̄ = (0 + 0 + 1)/3, p = (4/6, 2/6), Pe = 5/9, κ = (1/3 − 5/9)/(4/9) = −0.5.
        assert!((result.fleiss_kappa.expect("kappa") + 0.5).abs() < 1e-12);
    }

    #[test]
    fn accuracy_by_time_buckets() {
        let buckets = accuracy_by_time(&fixture(), &HashSet::new(), 20_000);
        // Answered: 5k wrong, 10k right, 15k wrong (1 of 3); 20k, 25k, 30k right (3 of 3); 40k (1 of 1).
        assert_eq!(buckets.len(), 3);
        let counts: Vec<(u64, u64)> = buckets
            .iter()
            .map(|b| b.accuracy.map_or((0, 0), |r| (r.successes, r.trials)))
            .collect();
        assert_eq!(counts, vec![(1, 3), (3, 3), (1, 1)]);
    }

    #[test]
    fn the_exclusion_toggle_leaves_chance_level_raters_out() {
        let report = study_report(&fixture(), true);
        // Both raters are indistinguishable from guessing on so few items.
        assert_eq!(report.excluded_raters.len(), 2);
        assert!(report.groups.is_empty());
        assert_eq!(report.raters.len(), 2, "their own rows stay");
        let all = study_report(&fixture(), false);
        assert!(all.excluded_raters.is_empty());
        assert_eq!(all.groups, group_reports(&fixture(), &HashSet::new()));
    }

    #[test]
    fn verifier_figures_against_truth_and_raters() {
        // Solutions 10, 12 correct; 11, 13 incorrect (see the fixture).
        let scores = vec![
            (Uuid::from_u128(10), 2.0, true),
            (Uuid::from_u128(11), -1.0, false),
            (Uuid::from_u128(12), 1.0, true),
            (Uuid::from_u128(13), 0.5, false),
        ];
        let result = verifier_vs_humans(3, &scores, &fixture(), &HashSet::new());
        assert_eq!((result.version, result.solutions), (3, 4));
        assert_eq!(result.auroc_ground_truth, Some(1.0));
        // Majorities: 10 tie (C, W) → none; 11 tie → none; 12 C; 13 W (one answer).
        assert_eq!(result.with_majority, 2);
        assert_eq!(result.auroc_human_majority, Some(1.0));
        // Human accuracy per solution: 10 → 1/2, 11 → 1/2, 12 → 1, 13 → 1.
        let expected = pearson(&[2.0, -1.0, 1.0, 0.5], &[0.5, 0.5, 1.0, 1.0]);
        assert_eq!(result.correlation_with_human_accuracy, expected);
    }

    #[test]
    fn difficulty_quartiles_rank_problems_by_solve_rate() {
        // Problems 5 and 6 (solutions 10-13): 5 is never solved, 6 always; two more unseen.
        let rates: HashMap<Uuid, f64> = [
            (Uuid::from_u128(5), 0.0),
            (Uuid::from_u128(6), 1.0),
            (Uuid::from_u128(7), 0.25),
            (Uuid::from_u128(8), 0.5),
        ]
        .into();
        let quartiles = accuracy_by_difficulty(&fixture(), &rates, &HashSet::new());
        assert_eq!(quartiles.len(), 4);
        assert_eq!(
            (quartiles[0].quartile, quartiles[0].solve_rate_from),
            (1, 0.0)
        );
        // Problem 5 holds solutions 10 and 11: answers r1 C right, r1 W right, r2 W wrong,
        // r2 C wrong → 2 of 4.
        let hardest = quartiles[0].accuracy.expect("rate");
        assert_eq!((hardest.successes, hardest.trials), (2, 4));
        // Problem 6 (solutions 12, 13): r1 right twice, r2 right once, one timeout → 3 of 3.
        let easiest = quartiles[3].accuracy.expect("rate");
        assert_eq!((easiest.successes, easiest.trials), (3, 3));
        assert_eq!(quartiles[1].accuracy, None, "no judgements on problem 7");
    }

    #[test]
    fn step_flags_count_per_role_and_agreement_with_the_modal_step() {
        let flag = |mut a: Attempt, step: Option<i64>| {
            a.first_wrong_step = step;
            a
        };
        let attempts = vec![
            // Sneaky solution 11 (incorrect): three raters flag steps 2, 2, 3.
            flag(attempt(1, 11, Sneaky, false, Wrong, 9_000), Some(2)),
            flag(attempt(2, 11, Sneaky, false, Wrong, 9_000), Some(2)),
            flag(attempt(3, 11, Sneaky, false, Wrong, 9_000), Some(3)),
            // A "wrong" without a flag, and a "correct" (never counted).
            attempt(4, 13, Sneaky, false, Wrong, 9_000),
            attempt(5, 13, Sneaky, false, Correct, 9_000),
            // Helpful solution 10 (correct) called wrong and flagged once.
            flag(attempt(1, 10, Helpful, true, Wrong, 9_000), Some(1)),
        ];
        let reports = step_flag_reports(&attempts, &HashSet::new());
        let sneaky = reports.iter().find(|r| r.role == Sneaky).expect("sneaky");
        assert_eq!((sneaky.wrong_verdicts, sneaky.flagged), (4, 3));
        assert_eq!(
            (sneaky.wrong_on_incorrect, sneaky.flagged_on_incorrect),
            (4, 3)
        );
        assert_eq!(sneaky.flags_on_shared_solutions, 3);
        assert_eq!(sneaky.agreement_with_modal_step, Some(2.0 / 3.0));
        let helpful = reports.iter().find(|r| r.role == Helpful).expect("helpful");
        assert_eq!((helpful.wrong_verdicts, helpful.flagged), (1, 1));
        assert_eq!(helpful.wrong_on_incorrect, 0);
        assert_eq!(helpful.agreement_with_modal_step, None);
        let without_rater_3 = step_flag_reports(&attempts, &HashSet::from([Uuid::from_u128(3)]));
        let sneaky = without_rater_3
            .iter()
            .find(|r| r.role == Sneaky)
            .expect("sneaky");
        assert_eq!(sneaky.agreement_with_modal_step, Some(1.0));
    }
}

//! The rater protocol of a study: practice items with feedback before the session, a screening
//! (qualification) set with a pass mark, silent gold items mixed into the session, a workload
//! cap and breaks. Plain functions, unit tested here; the store applies them when it serves.
//!
//! Quality items are solutions of known correctness from problems *outside* the study, so a
//! rater never meets a study problem twice and their answers never enter study figures.

use std::collections::BTreeMap;
#[cfg(test)]
use std::collections::HashSet;

use rand::Rng;
use rand::seq::SliceRandom;
use uuid::Uuid;

use crate::domain::{QualityPurpose, Verdict};

/// The paper's raters worked at most four hours.
pub const DEFAULT_MAX_RATER_MS: i64 = 4 * 60 * 60 * 1000;

/// How a study treats its raters beyond the per-item time limit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RaterProtocol {
    /// Practice items shown first, each followed by the right answer.
    pub practice_items: i64,
    /// Items of the qualification set; 0 means raters are admitted without one.
    pub screening_items: i64,
    /// Share of screening items a rater must get right to be admitted (0..=1).
    pub screening_pass_accuracy: f64,
    /// Gold items in the study's pool (each rater sees each at most once).
    pub gold_items: i64,
    /// Chance that a session item is a silent gold item instead of a study item (0..1).
    pub gold_rate: f64,
    /// Cap on a rater's time on items (served → answered), over all their items.
    pub max_rater_ms: i64,
    /// Suggest a break after every this many session items; 0 means never.
    pub break_every: i64,
}

impl Default for RaterProtocol {
    fn default() -> Self {
        RaterProtocol {
            practice_items: 0,
            screening_items: 0,
            screening_pass_accuracy: 0.0,
            gold_items: 0,
            gold_rate: 0.0,
            max_rater_ms: DEFAULT_MAX_RATER_MS,
            break_every: 0,
        }
    }
}

impl RaterProtocol {
    /// Refuses settings that cannot work, naming the setting.
    pub fn check(&self) -> Result<(), String> {
        if !(0..=1000).contains(&self.practice_items) {
            return Err("practice items: between 0 and 1000".into());
        }
        if !(0..=1000).contains(&self.screening_items) {
            return Err("screening items: between 0 and 1000".into());
        }
        if !(0.0..=1.0).contains(&self.screening_pass_accuracy) {
            return Err("screening pass mark: an accuracy between 0 and 1".into());
        }
        if !(0.0..1.0).contains(&self.gold_rate) {
            return Err("gold rate: a share from 0 up to (not including) 1".into());
        }
        if !(0..=1000).contains(&self.gold_items) {
            return Err("gold items: between 0 and 1000".into());
        }
        if self.gold_rate > 0.0 && self.gold_items == 0 {
            return Err("a gold rate above 0 needs at least one gold item".into());
        }
        if self.gold_rate == 0.0 && self.gold_items > 0 {
            return Err("gold items need a gold rate above 0".into());
        }
        if self.max_rater_ms <= 0 {
            return Err("the workload cap must be positive".into());
        }
        if self.break_every < 0 {
            return Err("breaks: every N items, N ≥ 0 (0 = no breaks)".into());
        }
        Ok(())
    }

    /// How many quality items of each purpose the study needs.
    pub fn quality_items_wanted(&self) -> [(QualityPurpose, usize); 3] {
        let n = |v: i64| usize::try_from(v).unwrap_or(0);
        [
            (QualityPurpose::Practice, n(self.practice_items)),
            (QualityPurpose::Screening, n(self.screening_items)),
            (QualityPurpose::Gold, n(self.gold_items)),
        ]
    }

    /// Whether serving has to look at quality items at all (the common, fast path skips them).
    pub fn uses_quality_items(&self) -> bool {
        self.practice_items > 0 || self.screening_items > 0 || self.gold_rate > 0.0
    }
}

/// Whether an answer to a solution of known correctness was right; a timeout never is.
pub fn answered_right(verdict: Verdict, is_correct: bool) -> bool {
    verdict.agrees_with(is_correct) == Some(true)
}

/// The screening decision once the whole set is answered: admitted when the share right
/// reaches the pass mark (no set: everyone is admitted).
pub fn passes_screening(right: i64, total: i64, pass_accuracy: f64) -> bool {
    total == 0 || right as f64 >= pass_accuracy * total as f64 - 1e-9
}

/// Whether the next session item is a gold item, given a uniform draw in [0, 1).
pub fn gold_due(gold_rate: f64, draw: f64) -> bool {
    draw < gold_rate
}

/// A break is due after every `break_every` session items, until the rater chooses to go on.
pub fn break_due(session_items_done: i64, break_every: i64, continued: bool) -> bool {
    break_every > 0 && session_items_done > 0 && session_items_done % break_every == 0 && !continued
}

/// Each item takes at most the time limit (a later answer is a timeout), so a rater with
/// fewer than `cap / limit` items cannot have reached the cap and serving skips summing times.
pub fn workload_may_be_reached(items_done: i64, time_limit_ms: i64, max_rater_ms: i64) -> bool {
    items_done.saturating_mul(time_limit_ms) >= max_rater_ms
}

/// A rater's answers to quality items, counted per purpose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QualityTally {
    /// Answered items.
    pub answered: i64,
    /// Of which right.
    pub right: i64,
}

impl QualityTally {
    /// Counts one answer to a solution whose correctness is `is_correct`.
    pub fn add(&mut self, verdict: Verdict, is_correct: bool) {
        self.answered += 1;
        self.right += i64::from(answered_right(verdict, is_correct));
    }
}

/// Gold items a rater must have answered before failing them can count against them.
pub const MIN_GOLD_FOR_FAILURE: i64 = 3;

/// Whether a rater failed the silent gold items: fewer than half right over at least
/// [`MIN_GOLD_FOR_FAILURE`] (a timeout is not right). Ends their study when the study says so,
/// and puts them on the reject side of the approve/reject list.
pub fn fails_gold(gold: QualityTally) -> bool {
    gold.answered >= MIN_GOLD_FOR_FAILURE && 2 * gold.right < gold.answered
}

/// Counts (purpose, solution correct, stored verdict) rows per purpose.
pub fn tally(
    rows: impl IntoIterator<Item = (QualityPurpose, bool, Verdict)>,
) -> BTreeMap<QualityPurpose, QualityTally> {
    let mut out: BTreeMap<QualityPurpose, QualityTally> = BTreeMap::new();
    for (purpose, is_correct, verdict) in rows {
        out.entry(purpose).or_default().add(verdict, is_correct);
    }
    out
}

/// A solution that may become a quality item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The solution.
    pub solution_id: Uuid,
    /// Its problem (each quality item has its own problem).
    pub problem_id: Uuid,
    /// The grader's verdict, the item's known answer.
    pub is_correct: bool,
}

/// A chosen quality item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QualityItem {
    /// What it is for.
    pub purpose: QualityPurpose,
    /// Order of serving within its purpose (0-based).
    pub position: i64,
    /// The solution.
    pub solution_id: Uuid,
    /// Its known correctness.
    pub is_correct: bool,
}

/// Chooses quality items from candidates: one solution per problem, no problem used twice,
/// correct and incorrect solutions alternating within each purpose as far as both exist (a
/// rater who always says "correct" then scores about half). Refuses when there are too few.
pub fn choose_quality_items<R: Rng + ?Sized>(
    candidates: &[Candidate],
    wanted: &[(QualityPurpose, usize)],
    rng: &mut R,
) -> Result<Vec<QualityItem>, String> {
    let total: usize = wanted.iter().map(|(_, n)| n).sum();
    let mut pool: Vec<Candidate> = candidates.to_vec();
    pool.shuffle(rng);
    // One solution per problem; where a problem has both kinds, the scarcer kind so far.
    let mut by_problem: BTreeMap<Uuid, (Option<Candidate>, Option<Candidate>)> = BTreeMap::new();
    let mut order = Vec::new();
    for c in pool {
        let entry = by_problem.entry(c.problem_id).or_insert_with(|| {
            order.push(c.problem_id);
            (None, None)
        });
        let slot = if c.is_correct {
            &mut entry.0
        } else {
            &mut entry.1
        };
        slot.get_or_insert(c);
    }
    let (mut correct, mut incorrect): (Vec<Candidate>, Vec<Candidate>) = (Vec::new(), Vec::new());
    for problem in order {
        match by_problem[&problem] {
            (Some(c), Some(i)) => {
                if correct.len() <= incorrect.len() {
                    correct.push(c)
                } else {
                    incorrect.push(i)
                }
            }
            (Some(c), None) => correct.push(c),
            (None, Some(i)) => incorrect.push(i),
            (None, None) => {}
        }
    }
    let available = correct.len() + incorrect.len();
    if available < total {
        return Err(format!(
            "{total} quality items (practice, screening, gold) need as many problems outside the \
             study with solutions, but only {available} exist: import more problems and solutions, \
             or use fewer problems in the study"
        ));
    }
    let mut items = Vec::with_capacity(total);
    for &(purpose, n) in wanted {
        // Alternate, starting with whichever kind has more left.
        let first_correct = correct.len() >= incorrect.len();
        for position in 0..n {
            let want_correct = (position % 2 == 0) == first_correct;
            let pick = match (want_correct, correct.is_empty(), incorrect.is_empty()) {
                (true, false, _) | (false, _, true) => correct.pop(),
                _ => incorrect.pop(),
            };
            let Some(c) = pick else {
                return Err("not enough quality items".into());
            };
            items.push(QualityItem {
                purpose,
                position: position as i64,
                solution_id: c.solution_id,
                is_correct: c.is_correct,
            });
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_gold_needs_three_answers_and_fewer_than_half_right() {
        let tally = |answered, right| QualityTally { answered, right };
        assert!(!fails_gold(tally(2, 0)));
        assert!(fails_gold(tally(3, 1)));
        assert!(!fails_gold(tally(4, 2)));
        assert!(fails_gold(tally(5, 2)));
        assert!(!fails_gold(tally(0, 0)));
    }
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn right_answers_and_the_pass_mark() {
        assert!(answered_right(Verdict::Correct, true));
        assert!(answered_right(Verdict::Wrong, false));
        assert!(!answered_right(Verdict::Wrong, true));
        assert!(!answered_right(Verdict::Timeout, false));
        assert!(passes_screening(24, 30, 0.8));
        assert!(!passes_screening(23, 30, 0.8));
        assert!(passes_screening(0, 0, 0.9));
        assert!(passes_screening(7, 10, 0.7), "exactly the mark passes");
    }

    #[test]
    fn breaks_gold_and_workload() {
        assert!(!break_due(0, 5, false));
        assert!(break_due(5, 5, false));
        assert!(!break_due(5, 5, true));
        assert!(!break_due(6, 5, false));
        assert!(!break_due(5, 0, false));
        assert!(gold_due(0.2, 0.1));
        assert!(!gold_due(0.2, 0.2));
        assert!(!gold_due(0.0, 0.0));
        // 4 h at 45 s per item: 320 items before the cap can be reached.
        assert!(!workload_may_be_reached(319, 45_000, DEFAULT_MAX_RATER_MS));
        assert!(workload_may_be_reached(320, 45_000, DEFAULT_MAX_RATER_MS));
    }

    #[test]
    fn settings_are_checked() {
        assert!(RaterProtocol::default().check().is_ok());
        let mut gold = RaterProtocol {
            gold_rate: 0.1,
            ..RaterProtocol::default()
        };
        assert!(gold.check().unwrap_err().contains("gold item"));
        gold.gold_items = 3;
        assert!(gold.check().is_ok());
        gold.gold_rate = 0.0;
        assert!(gold.check().is_err());
        let bad = RaterProtocol {
            screening_pass_accuracy: 1.5,
            ..RaterProtocol::default()
        };
        assert!(bad.check().unwrap_err().contains("pass mark"));
    }

    #[test]
    fn tallies_count_right_answers_per_purpose() {
        let t = tally([
            (QualityPurpose::Screening, true, Verdict::Correct),
            (QualityPurpose::Screening, false, Verdict::Correct),
            (QualityPurpose::Gold, false, Verdict::Wrong),
            (QualityPurpose::Gold, true, Verdict::Timeout),
        ]);
        assert_eq!(
            t[&QualityPurpose::Screening],
            QualityTally {
                answered: 2,
                right: 1
            }
        );
        assert_eq!(
            t[&QualityPurpose::Gold],
            QualityTally {
                answered: 2,
                right: 1
            }
        );
    }

    #[test]
    fn quality_items_use_distinct_problems_and_balance_correctness() {
        // One solution per problem, half of them correct; plus a second solution of problem 0,
        // which must not be used as well.
        let mut candidates: Vec<Candidate> = (0..20u128)
            .map(|p| Candidate {
                solution_id: Uuid::from_u128(p),
                problem_id: Uuid::from_u128(1000 + p),
                is_correct: p % 2 == 0,
            })
            .collect();
        candidates.push(Candidate {
            solution_id: Uuid::from_u128(99),
            problem_id: Uuid::from_u128(1000),
            is_correct: false,
        });
        let wanted = [
            (QualityPurpose::Practice, 2),
            (QualityPurpose::Screening, 10),
            (QualityPurpose::Gold, 4),
        ];
        let items =
            choose_quality_items(&candidates, &wanted, &mut StdRng::seed_from_u64(1)).unwrap();
        assert_eq!(items.len(), 16);
        let problems: HashSet<Uuid> = items
            .iter()
            .map(|i| {
                candidates
                    .iter()
                    .find(|c| c.solution_id == i.solution_id)
                    .unwrap()
                    .problem_id
            })
            .collect();
        assert_eq!(problems.len(), 16, "a problem was used twice");
        let screening_correct = items
            .iter()
            .filter(|i| i.purpose == QualityPurpose::Screening && i.is_correct)
            .count();
        assert_eq!(screening_correct, 5);
        for (purpose, n) in wanted {
            let correct = items
                .iter()
                .filter(|i| i.purpose == purpose && i.is_correct)
                .count();
            assert_eq!(correct, n / 2, "{purpose} is unbalanced");
        }
        // Uneven piles (9 problems, all with both kinds): 1 practice, then 2 screening items
        // must still be one of each kind.
        let both: Vec<Candidate> = (0..9u128)
            .flat_map(|p| {
                [true, false].map(|is_correct| Candidate {
                    solution_id: Uuid::from_u128(p * 2 + u128::from(is_correct)),
                    problem_id: Uuid::from_u128(500 + p),
                    is_correct,
                })
            })
            .collect();
        for seed in 0..20 {
            let items = choose_quality_items(
                &both,
                &[
                    (QualityPurpose::Practice, 1),
                    (QualityPurpose::Screening, 2),
                ],
                &mut StdRng::seed_from_u64(seed),
            )
            .unwrap();
            let screening: Vec<bool> = items
                .iter()
                .filter(|i| i.purpose == QualityPurpose::Screening)
                .map(|i| i.is_correct)
                .collect();
            assert!(
                screening.contains(&true) && screening.contains(&false),
                "seed {seed}"
            );
        }
        let err = choose_quality_items(
            &candidates,
            &[(QualityPurpose::Screening, 21)],
            &mut StdRng::seed_from_u64(1),
        )
        .unwrap_err();
        assert!(err.contains("only 20 exist"), "{err}");
    }
}

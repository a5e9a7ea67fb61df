//! Time-limit arms: which per-item limit a rater's next item gets when a study compares several
//! (speed–accuracy), and whether a study's arms can be balanced at all. Plain functions; the
//! store applies [`TimeLimits::limit_for`] when it serves a new study item.
//!
//! Balancing, per design:
//! - between raters: raters take the arms in turn by their order of invitation, so arm sizes
//!   differ by at most one rater;
//! - blocked: every rater meets every arm in blocks of `block_items` items; the order of the
//!   blocks follows a row of a balanced (Williams) Latin square chosen by the rater's order, so
//!   each arm comes first, and follows each other arm, equally often across raters;
//! - interleaved: each run of as many items as there are arms holds every arm once, in an order
//!   drawn afresh per run from the rater's id (a balanced random order: no arm is tied to a
//!   serial position or to the rater's rotation through the solution strata).

use rand::SeedableRng;
use rand::seq::SliceRandom;
use uuid::Uuid;

use crate::domain::ArmDesign;

/// A study's time-limit arms; empty `arms` is a study with one limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeLimits {
    /// The limits compared, ms, in the order the researcher gave them.
    pub arms: Vec<i64>,
    /// Between raters, blocked or interleaved.
    pub design: ArmDesign,
    /// Items per block (blocked designs).
    pub block_items: i64,
}

impl Default for TimeLimits {
    fn default() -> Self {
        TimeLimits {
            arms: Vec::new(),
            design: ArmDesign::Between,
            block_items: 10,
        }
    }
}

/// Largest number of arms a study may compare.
pub const MAX_ARMS: usize = 8;

impl TimeLimits {
    /// Reads the stored list (`"15000,30000"`; empty: no arms).
    pub fn parse_arms(text: &str) -> Result<Vec<i64>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse::<i64>()
                    .map_err(|_| format!("{t:?} is not a time limit in milliseconds"))
            })
            .collect()
    }

    /// The stored spelling of the arms.
    pub fn arms_text(&self) -> String {
        self.arms
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether the study compares several limits.
    pub fn has_arms(&self) -> bool {
        self.arms.len() >= 2
    }

    /// Refuses arms that cannot work or cannot be balanced, with the numbers: `items_per_rater`
    /// is the most study items one rater can meet (one solution per problem, so the number of
    /// problems), `judgements_per_solution` how many raters judge each solution.
    pub fn check(&self, items_per_rater: i64, judgements_per_solution: i64) -> Result<(), String> {
        if self.arms.is_empty() {
            return Ok(());
        }
        let n = self.arms.len() as i64;
        if self.arms.len() == 1 {
            return Err(
                "give two or more time limits to compare, or none to use the one time limit".into(),
            );
        }
        if self.arms.len() > MAX_ARMS {
            return Err(format!(
                "{n} time limits: at most {MAX_ARMS} can be compared in one study"
            ));
        }
        if let Some(bad) = self.arms.iter().find(|ms| !(500..=3_600_000).contains(*ms)) {
            return Err(format!(
                "a time limit of {} s: each must be 0.5 to 3600 seconds",
                *bad as f64 / 1000.0
            ));
        }
        let mut sorted = self.arms.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.arms.len() {
            return Err("the time limits compared must differ from each other".into());
        }
        match self.design {
            ArmDesign::Between if judgements_per_solution < n => Err(format!(
                "{n} time limits between raters need at least {n} judgements per solution, so \
                 that each solution can be judged under every limit; this study asks for \
                 {judgements_per_solution}"
            )),
            ArmDesign::Blocked if self.block_items < 1 => Err("blocks need at least 1 item".into()),
            ArmDesign::Blocked if items_per_rater < n * self.block_items => Err(format!(
                "{n} time limits in blocks of {} items need {} items per rater, but a rater \
                 meets at most {items_per_rater} here (one solution per problem): use smaller \
                 blocks, fewer limits or more problems",
                self.block_items,
                n * self.block_items
            )),
            ArmDesign::Interleaved if items_per_rater < n => Err(format!(
                "{n} time limits interleaved need at least {n} items per rater, but a rater \
                 meets at most {items_per_rater} here (one solution per problem)"
            )),
            _ => Ok(()),
        }
    }

    /// The limit of a rater's item: `ordinal` is the rater's place among the study's raters
    /// by invitation (0-based), `rater_id` seeds the interleaved order, `position` is the
    /// number of session items the rater finished before this one. `None` without arms.
    pub fn limit_for(&self, ordinal: u64, rater_id: Uuid, position: i64) -> Option<i64> {
        if !self.has_arms() {
            return None;
        }
        let n = self.arms.len();
        let position = position.max(0) as u64;
        let arm = match self.design {
            ArmDesign::Between => (ordinal % n as u64) as usize,
            ArmDesign::Blocked => {
                let block = position / self.block_items.max(1) as u64;
                williams_row(n, ordinal)[(block % n as u64) as usize]
            }
            ArmDesign::Interleaved => {
                let run = position / n as u64;
                let seed = (rater_id.as_u128() as u64) ^ run.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
                order[(position % n as u64) as usize]
            }
        };
        Some(self.arms[arm])
    }
}

/// Row `row` of a balanced Latin square of order `n` (Williams design): each arm appears once
/// per row and once per position over `n` rows, and each arm follows every other equally often
/// (over `2n` rows for odd `n`, whose second `n` rows are the first ones reversed).
pub fn williams_row(n: usize, row: u64) -> Vec<usize> {
    let base = (0..n).map(|j| match j {
        0 => 0,
        j if j % 2 == 1 => j.div_ceil(2),
        j => n - j / 2,
    });
    let shift = (row % n as u64) as usize;
    let mut order: Vec<usize> = base.map(|b| (b + shift) % n).collect();
    if n % 2 == 1 && (row / n as u64) % 2 == 1 {
        order.reverse();
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(design: ArmDesign, arms: &[i64]) -> TimeLimits {
        TimeLimits {
            arms: arms.to_vec(),
            design,
            block_items: 3,
        }
    }

    #[test]
    fn williams_squares_are_latin_and_balanced_for_carry_over() {
        for n in 2..=5usize {
            let rows: Vec<Vec<usize>> = (0..(if n % 2 == 1 { 2 * n } else { n }))
                .map(|r| williams_row(n, r as u64))
                .collect();
            let mut follows = vec![vec![0; n]; n];
            for row in &rows {
                let mut seen = row.clone();
                seen.sort_unstable();
                assert_eq!(
                    seen,
                    (0..n).collect::<Vec<_>>(),
                    "a row holds every arm once"
                );
                for pair in row.windows(2) {
                    follows[pair[0]][pair[1]] += 1;
                }
            }
            for column in 0..n {
                let mut seen: Vec<usize> = rows[..n].iter().map(|r| r[column]).collect();
                seen.sort_unstable();
                assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n={n}: column {column}");
            }
            let counts: Vec<usize> = (0..n)
                .flat_map(|a| (0..n).filter(move |b| *b != a).map(move |b| (a, b)))
                .map(|(a, b)| follows[a][b])
                .collect();
            assert!(
                counts.iter().all(|c| *c == counts[0]),
                "n={n}: carry-over {counts:?}"
            );
        }
        assert_eq!(williams_row(4, 0), vec![0, 1, 3, 2]);
    }

    #[test]
    fn each_design_spreads_the_arms() {
        let id = Uuid::from_u128(77);
        let between = limits(ArmDesign::Between, &[15_000, 45_000]);
        assert_eq!(between.limit_for(0, id, 5), Some(15_000));
        assert_eq!(between.limit_for(3, id, 0), Some(45_000));
        let blocked = limits(ArmDesign::Blocked, &[15_000, 30_000, 45_000]);
        let sequence: Vec<i64> = (0..9)
            .map(|k| blocked.limit_for(1, id, k).unwrap())
            .collect();
        assert_eq!(sequence[..3], [sequence[0]; 3], "one block, one limit");
        let mut blocks = vec![sequence[0], sequence[3], sequence[6]];
        blocks.sort_unstable();
        assert_eq!(blocks, vec![15_000, 30_000, 45_000]);
        let interleaved = limits(ArmDesign::Interleaved, &[15_000, 30_000, 45_000]);
        for run in 0..20 {
            let mut seen: Vec<i64> = (run * 3..run * 3 + 3)
                .map(|k| interleaved.limit_for(0, id, k).unwrap())
                .collect();
            seen.sort_unstable();
            assert_eq!(seen, vec![15_000, 30_000, 45_000], "run {run}");
        }
        // Not one fixed cycle: the first item's limit varies between runs.
        let firsts: std::collections::HashSet<i64> = (0..20)
            .map(|run| interleaved.limit_for(0, id, run * 3).unwrap())
            .collect();
        assert!(firsts.len() > 1);
        assert_eq!(TimeLimits::default().limit_for(0, id, 0), None);
    }

    #[test]
    fn arms_that_cannot_be_balanced_are_refused_with_the_numbers() {
        let blocked = limits(ArmDesign::Blocked, &[15_000, 30_000, 45_000]);
        let err = blocked.check(8, 3).unwrap_err();
        assert!(
            err.contains("need 9 items per rater") && err.contains("at most 8"),
            "{err}"
        );
        assert!(blocked.check(9, 1).is_ok());
        let between = limits(ArmDesign::Between, &[15_000, 30_000, 45_000]);
        assert!(
            between
                .check(1, 2)
                .unwrap_err()
                .contains("at least 3 judgements")
        );
        let interleaved = limits(ArmDesign::Interleaved, &[15_000, 30_000]);
        assert!(
            interleaved
                .check(1, 1)
                .unwrap_err()
                .contains("at least 2 items")
        );
        assert!(limits(ArmDesign::Between, &[15_000]).check(9, 9).is_err());
        assert!(
            limits(ArmDesign::Between, &[15_000, 15_000])
                .check(9, 9)
                .is_err()
        );
        assert!(
            limits(ArmDesign::Between, &[100, 15_000])
                .check(9, 9)
                .is_err()
        );
        assert_eq!(
            TimeLimits::parse_arms(" 15000, 30000 "),
            Ok(vec![15_000, 30_000])
        );
        assert!(TimeLimits::parse_arms("15 s").is_err());
    }
}

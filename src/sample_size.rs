//! The smallest sample each statistic is shown for on staff pages.
//!
//! A quartile of one problem, a median of two times or a κ over three solutions is a number
//! that looks like a finding and is noise. Below its minimum a statistic is not shown; the page
//! says "n too small" with the sample it has and the one it needs. The JSON summary and the
//! downloads keep every figure (with its n), for researchers who want to pool studies.

/// A statistic with a minimum sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    /// An accuracy or other share with its Wilson 95 % interval (groups, time buckets, step
    /// flags, difficulty quarters); n = answered judgements.
    Accuracy,
    /// A rater's own accuracy (report and study page, gold items included); n = that rater's
    /// answered items.
    RaterAccuracy,
    /// A median time; n = answered judgements.
    Median,
    /// d′; n = the smaller of the answered judgements on correct and on incorrect solutions,
    /// since it needs both a hit rate and a false-alarm rate.
    DPrime,
    /// Fleiss' κ and Krippendorff's α; n = solutions with two or more answers.
    Agreement,
    /// Difficulty quartiles; n = problems with a model solve rate (two per quarter at least).
    DifficultyQuartiles,
}

/// Minimum answered judgements for an accuracy and its interval.
pub const MIN_ACCURACY: u64 = 10;
/// Minimum answered items for one rater's accuracy.
pub const MIN_RATER_ACCURACY: u64 = 10;
/// Minimum answered judgements for a median time.
pub const MIN_MEDIAN: u64 = 5;
/// Minimum answered judgements on correct and (separately) on incorrect solutions for d′.
pub const MIN_D_PRIME: u64 = 10;
/// Minimum solutions with two or more answers for κ and α.
pub const MIN_AGREEMENT: u64 = 10;
/// Minimum problems with a solve rate for difficulty quartiles.
pub const MIN_DIFFICULTY_QUARTILES: u64 = 8;

impl Statistic {
    /// The smallest n the statistic is shown for.
    pub const fn minimum(self) -> u64 {
        match self {
            Statistic::Accuracy => MIN_ACCURACY,
            Statistic::RaterAccuracy => MIN_RATER_ACCURACY,
            Statistic::Median => MIN_MEDIAN,
            Statistic::DPrime => MIN_D_PRIME,
            Statistic::Agreement => MIN_AGREEMENT,
            Statistic::DifficultyQuartiles => MIN_DIFFICULTY_QUARTILES,
        }
    }

    /// Whether a sample of `n` is enough to show the statistic.
    pub const fn shown_for(self, n: u64) -> bool {
        n >= self.minimum()
    }

    /// `text` when `n` is enough, else the mark the pages show instead of the figure.
    pub fn gate(self, n: u64, text: String) -> String {
        if self.shown_for(n) {
            text
        } else {
            self.too_small(n)
        }
    }

    /// "n too small (3; needs 10)".
    pub fn too_small(self, n: u64) -> String {
        format!("n too small ({n}; needs {})", self.minimum())
    }

    /// Every statistic with its minimum, for the report's note and the JSON summary.
    pub const ALL: [Statistic; 6] = [
        Statistic::Accuracy,
        Statistic::RaterAccuracy,
        Statistic::Median,
        Statistic::DPrime,
        Statistic::Agreement,
        Statistic::DifficultyQuartiles,
    ];

    /// A stable name for JSON.
    pub const fn key(self) -> &'static str {
        match self {
            Statistic::Accuracy => "accuracy",
            Statistic::RaterAccuracy => "rater_accuracy",
            Statistic::Median => "median_time",
            Statistic::DPrime => "d_prime",
            Statistic::Agreement => "agreement",
            Statistic::DifficultyQuartiles => "difficulty_quartiles",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_statistic_is_shown_from_its_minimum_on() {
        for stat in Statistic::ALL {
            let min = stat.minimum();
            assert!(min >= 2, "{stat:?}: one sample is never enough");
            assert!(!stat.shown_for(min - 1), "{stat:?}");
            assert!(stat.shown_for(min), "{stat:?}");
            assert!(stat.shown_for(min + 100), "{stat:?}");
        }
        assert_eq!(Statistic::Accuracy.minimum(), MIN_ACCURACY);
        assert_eq!(Statistic::Median.minimum(), MIN_MEDIAN);
        assert_eq!(Statistic::DPrime.minimum(), MIN_D_PRIME);
        assert_eq!(Statistic::Agreement.minimum(), MIN_AGREEMENT);
        assert_eq!(Statistic::RaterAccuracy.minimum(), MIN_RATER_ACCURACY);
        assert_eq!(
            Statistic::DifficultyQuartiles.minimum(),
            MIN_DIFFICULTY_QUARTILES
        );
    }

    #[test]
    fn quartiles_need_at_least_two_problems_per_quarter() {
        assert!(!Statistic::DifficultyQuartiles.shown_for(1));
        assert!(!Statistic::DifficultyQuartiles.shown_for(7));
        assert!(Statistic::DifficultyQuartiles.shown_for(8));
    }

    #[test]
    fn below_the_minimum_the_figure_is_replaced_by_a_mark_naming_both_sizes() {
        assert_eq!(
            Statistic::Median.gate(4, "12.5".into()),
            "n too small (4; needs 5)"
        );
        assert_eq!(Statistic::Median.gate(5, "12.5".into()), "12.5");
        assert_eq!(
            Statistic::Agreement.gate(0, "0.41".into()),
            "n too small (0; needs 10)"
        );
    }

    #[test]
    fn keys_are_distinct() {
        let keys: std::collections::BTreeSet<&str> =
            Statistic::ALL.iter().map(|s| s.key()).collect();
        assert_eq!(keys.len(), Statistic::ALL.len());
    }
}

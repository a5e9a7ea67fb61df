//! Bonuses for panel participants (issue 20, part 6): a study's rule (a fixed amount, an amount
//! per judgement, an amount per correct judgement), what a participant has earned, and the
//! panel's bulk-bonus CSV (`participant_id,amount`). Amounts are whole cents (hundredths of
//! the panel's currency) so that sums are exact. Plain rules, no I/O.

/// The largest amount accepted in one field: 100.00 (a bonus is a small extra payment; a
/// typo such as 5000 instead of 0.50 should be refused, not paid).
pub const MAX_CENTS: i64 = 10_000;

/// A study's bonus rule. All zero: no bonus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BonusRule {
    /// Paid once to every participant with at least one answered judgement.
    pub fixed_cents: i64,
    /// Per answered judgement (a verdict, not a timeout).
    pub per_judgement_cents: i64,
    /// Per judgement whose verdict agrees with the solution's correctness.
    pub per_correct_cents: i64,
}

impl BonusRule {
    /// Reads the three amounts as an admin typed them (`0.50`, `1`, blank for none); the
    /// message names the field.
    pub fn parse(fixed: &str, per_judgement: &str, per_correct: &str) -> Result<Self, String> {
        Ok(BonusRule {
            fixed_cents: parse_amount("fixed bonus", fixed)?,
            per_judgement_cents: parse_amount("bonus per judgement", per_judgement)?,
            per_correct_cents: parse_amount("bonus per correct judgement", per_correct)?,
        })
    }

    /// What a participant with `answered` verdicts, `correct` of them right, has earned.
    pub fn earned_cents(&self, answered: i64, correct: i64) -> i64 {
        if answered == 0 {
            return 0;
        }
        self.fixed_cents + answered * self.per_judgement_cents + correct * self.per_correct_cents
    }
}

/// An amount in the panel's currency with at most two decimals, 0 to [`MAX_CENTS`]; blank is 0.
pub fn parse_amount(field: &str, text: &str) -> Result<i64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    let refuse = || {
        format!(
            "{field}: \"{text}\" is not an amount such as 0.50 (at most two decimals, from 0 to {})",
            format_cents(MAX_CENTS)
        )
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty()
        || !digits(whole)
        || !digits(fraction)
        || fraction.len() > 2
        || whole.len() > 6
    {
        return Err(refuse());
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| refuse())?
    };
    let fraction: i64 = format!("{fraction:0<2}").parse().map_err(|_| refuse())?;
    let cents = whole * 100 + fraction;
    if cents > MAX_CENTS {
        return Err(refuse());
    }
    Ok(cents)
}

/// Cents as the panel's CSV writes amounts: `12.05`.
pub fn format_cents(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// The bulk-bonus CSV Prolific (and most panels) take: a header, then one
/// `participant_id,amount` line per participant owed something.
pub fn bonus_csv(rows: &[(String, i64)]) -> String {
    let mut csv = String::from("participant_id,amount\n");
    for (participant, cents) in rows {
        csv.push_str(&format!("{participant},{}\n", format_cents(*cents)));
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_read_as_people_type_them() {
        for (text, cents) in [
            ("", 0),
            ("0", 0),
            ("0.5", 50),
            ("0.50", 50),
            (".25", 25),
            ("1", 100),
            ("12.05", 1205),
            ("100", 10_000),
        ] {
            assert_eq!(parse_amount("f", text), Ok(cents), "{text}");
        }
        for bad in [
            "-1", "0.505", "1,50", "abc", ".", "100.01", "1e2", "9999999",
        ] {
            let refused = parse_amount("bonus per judgement", bad).unwrap_err();
            assert!(refused.starts_with("bonus per judgement: "), "{refused}");
        }
    }

    #[test]
    fn earnings_follow_the_rule() {
        let rule = BonusRule::parse("1.00", "0.05", "0.10").unwrap();
        // 1.00 + 20 × 0.05 + 15 × 0.10 = 3.50, by hand.
        assert_eq!(rule.earned_cents(20, 15), 350);
        assert_eq!(
            rule.earned_cents(0, 0),
            0,
            "no answered item, no fixed bonus"
        );
        assert_eq!(BonusRule::default().earned_cents(20, 15), 0);
    }

    #[test]
    fn the_csv_is_the_panels_format() {
        assert_eq!(
            bonus_csv(&[("5f1a".into(), 350), ("p-2".into(), 5)]),
            "participant_id,amount\n5f1a,3.50\np-2,0.05\n"
        );
        assert_eq!(bonus_csv(&[]), "participant_id,amount\n");
    }
}

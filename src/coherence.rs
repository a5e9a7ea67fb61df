//! Whether a model-written solution reads as a solution *of its problem* (issue 24): raters
//! should judge reasoning, not nonsense such as a name or an item that is not in the question.
//!
//! The rule is strict and needs no word lists: every word of the solution must occur in the
//! question or in the problem's reference solutions (the generator writes a helpful and a
//! sneaky one per problem), and every number must occur there too or be a result the solution
//! computed itself (a number right after `=`). The final answer line is left out: a wrong
//! answer is the sneaky role's business, not incoherence.

use std::collections::BTreeSet;

/// What made a solution incoherent: the words and numbers that came from nowhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Foreign {
    /// Words (lower-cased) neither in the question nor in a reference solution.
    pub words: BTreeSet<String>,
    /// Numbers neither in the question, nor in a reference solution, nor computed.
    pub numbers: BTreeSet<String>,
}

impl Foreign {
    /// True when nothing foreign was found.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty() && self.numbers.is_empty()
    }
}

/// Lower-cased runs of letters.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// Runs of digits (with a decimal point between digits), as written.
fn numbers(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (chars[i] == '.'
                        && i + 1 < chars.len()
                        && chars[i + 1].is_ascii_digit()
                        && i > start))
            {
                i += 1;
            }
            found.push(chars[start..i].iter().collect());
        } else {
            i += 1;
        }
    }
    found
}

/// Numbers the solution computed: each one written right after `=`.
fn computed(text: &str) -> BTreeSet<String> {
    text.split('=')
        .skip(1)
        .filter_map(|after| {
            numbers(after)
                .into_iter()
                .next()
                .filter(|_| after.starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect()
}

/// The foreign words and numbers of `solution` for a problem with `question` and reference
/// solutions `references`; empty when the solution is coherent.
pub fn foreign(question: &str, references: &[&str], solution: &str) -> Foreign {
    let mut known_words: BTreeSet<String> = words(question).collect();
    let mut known_numbers: BTreeSet<String> = numbers(question).into_iter().collect();
    for reference in references {
        known_words.extend(words(reference));
        known_numbers.extend(numbers(reference));
    }
    let body: Vec<&str> = solution
        .lines()
        .filter(|line| !line.trim_start().starts_with("####"))
        .collect();
    let body = body.join("\n");
    known_numbers.extend(computed(&body));
    Foreign {
        words: words(&body).filter(|w| !known_words.contains(w)).collect(),
        numbers: numbers(&body)
            .into_iter()
            .filter(|n| !known_numbers.contains(n))
            .collect(),
    }
}

/// The index in `names` of the one name that `question` mentions and `solution` repeats, if
/// exactly one does: the case where the name a prover writes can be checked against the
/// question's. Words are read as [`foreign`] reads them.
pub fn single_name(names: &[&str], question: &str, solution: &str) -> Option<usize> {
    let has = |text: &str, name: &str| {
        let name = name.to_lowercase();
        words(text).any(|word| word == name)
    };
    let mut found = (0..names.len()).filter(|&i| has(question, names[i]));
    match (found.next(), found.next()) {
        (Some(i), None) if has(solution, names[i]) => Some(i),
        _ => None,
    }
}

/// The probability a prover at `temperature` gives the true candidate when choosing among
/// candidates whose sequence log-probabilities are `log_probs`: the softmax of
/// `log_probs / temperature` at `truth`. Measures copying apart from sampling luck: the same
/// solution with each candidate name in place of the question's, scored teacher-forced.
pub fn choice_probability(log_probs: &[f64], truth: usize, temperature: f64) -> f64 {
    let top = log_probs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = log_probs
        .iter()
        .map(|lp| ((lp - top) / temperature).exp())
        .collect();
    weights.get(truth).copied().unwrap_or(0.0) / weights.iter().sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUESTION: &str =
        "Lucas buys 7 shirts at $20 each. The shop gives 50% off. How much does Lucas pay?";
    const HELPFUL: &str = "Before the discount, the shirts cost 7*20=<<7*20=140>>140 dollars.\nThe discount is 50% of 140, which is 140/2=<<140/2=70>>70.\nSo Lucas pays 140-70=<<140-70=70>>70 dollars.\n#### 70";

    #[test]
    fn a_solution_built_from_its_problem_is_coherent() {
        let sneaky = "Before the discount, the shirts cost 7*20=<<7*20=140>>140 dollars.\nThe discount is 50% of 140, which is 140/2=<<140/2=70>>70.\nSo Lucas pays 140+70=<<140+70=210>>210 dollars.\n#### 210";
        // Its own results (210) are allowed, and so is a wrong final answer.
        assert!(foreign(QUESTION, &[HELPFUL], sneaky).is_empty());
        assert!(foreign(QUESTION, &[HELPFUL], HELPFUL).is_empty());
        assert!(foreign(QUESTION, &[HELPFUL], "So Lucas pays 70 dollars.\n#### 71").is_empty());
    }

    #[test]
    fn a_name_an_item_or_a_number_from_elsewhere_is_named() {
        let renamed = HELPFUL.replace("So Lucas", "So Rosa");
        let found = foreign(QUESTION, &[HELPFUL], &renamed);
        assert_eq!(found.words, BTreeSet::from(["rosa".to_string()]));
        assert!(found.numbers.is_empty());
        let other_item = HELPFUL.replace("the shirts", "the red hats");
        let found = foreign(QUESTION, &[HELPFUL], &other_item);
        assert_eq!(
            found.words,
            BTreeSet::from(["hats".to_string(), "red".to_string()])
        );
        // 9 shirts: a quantity the question never gave (the result 180 is computed, allowed).
        let other_quantity = HELPFUL.replace("7*20=<<7*20=140>>140", "9*20=<<9*20=180>>180");
        let found = foreign(QUESTION, &[HELPFUL], &other_quantity);
        assert_eq!(found.numbers, BTreeSet::from(["9".to_string()]));
        assert!(!found.is_empty());
    }

    #[test]
    fn the_name_choice_is_a_tempered_softmax() {
        // Hand computation: log-probs ln 3, ln 1 → probabilities 3/4 and 1/4 at temperature 1;
        // at 0.5 the weights are 9 and 1 → 0.9.
        let lp = [3f64.ln() - 7.0, -7.0];
        assert!((choice_probability(&lp, 0, 1.0) - 0.75).abs() < 1e-12);
        assert!((choice_probability(&lp, 1, 1.0) - 0.25).abs() < 1e-12);
        assert!((choice_probability(&lp, 0, 0.5) - 0.9).abs() < 1e-12);
        assert_eq!(choice_probability(&lp, 5, 1.0), 0.0);
    }

    #[test]
    fn only_a_single_repeated_name_is_checked() {
        let names = ["Lucas", "Rosa", "Mia"];
        assert_eq!(single_name(&names, QUESTION, HELPFUL), Some(0));
        // Not repeated in the solution, or two names in the question: nothing to check.
        assert_eq!(single_name(&names, QUESTION, "It costs 70.\n#### 70"), None);
        let two = format!("{QUESTION} Rosa helps.");
        assert_eq!(single_name(&names, &two, HELPFUL), None);
        // Whole words only: "Mia" is not in "Miami".
        assert_eq!(single_name(&["Mia"], "Miami has 3 hats.", "Miami"), None);
    }

    #[test]
    fn numbers_and_words_are_read_as_written() {
        assert_eq!(
            numbers("a 2.5 b 10. c 300,5"),
            vec!["2.5", "10", "300", "5"]
        );
        assert_eq!(
            words("Ingrid's 3 cookies").collect::<Vec<_>>(),
            vec!["ingrid", "s", "cookies"]
        );
        assert_eq!(
            computed("3*4=<<3*4=12>>12 and x = 5"),
            BTreeSet::from(["12".to_string()])
        );
    }
}

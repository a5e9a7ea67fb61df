//! Grading of model-written GSM8K solutions.
//!
//! A legibility study is only meaningful if we know which solutions are
//! actually correct, so this module decides correctness mechanically: pull
//! the final answer out of free-form solution text, normalise it to a
//! canonical value, and compare it with the problem's ground truth.
//! Everything here is pure (no I/O) so it can be called from request
//! handlers, workers and tests alike.

/// Result of grading one solution against a problem's ground truth.
///
/// Keeps the extracted answer alongside the verdict so that reports and
/// judges can see *what* the grader thought the solution committed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grade {
    /// The raw answer text the solution committed to, if any was found.
    pub extracted_answer: Option<String>,
    /// Whether that answer equals the ground truth after normalisation.
    pub is_correct: bool,
}

/// The marker GSM8K uses to introduce the final answer.
const GSM8K_MARKER: &str = "####";

/// Cap on the number of trailing unit words accepted after a number
/// ("18 dollars", "5 apples left over"); longer tails are treated as prose.
const MAX_UNIT_WORDS: usize = 6;

/// Final answer of a GSM8K `answer` field: the text after the last `####`,
/// trimmed; None when there is no `####` or it is followed by nothing.
///
/// Exists so ground truth is read from the data set in exactly one way.
pub fn gsm8k_final_answer(answer_field: &str) -> Option<String> {
    let pos = answer_field.rfind(GSM8K_MARKER)?;
    let rest = answer_field[pos + GSM8K_MARKER.len()..].trim();
    (!rest.is_empty()).then(|| rest.to_string())
}

/// Extract the final answer a solution commits to.
///
/// Order: (1) text after the LAST `####` (up to the end of that line, or the
/// next non-blank line if that line is blank); (2) text after the last
/// case-insensitive `Answer:` / `answer is` / `\boxed{...}` (content of the
/// box); (3) fallback: the last number in the text. Returns the raw answer
/// substring, trimmed (e.g. "$1,200." stays raw here). When the text found
/// by (1) or (2) is not itself a number but contains one ("Janet makes $18
/// a day"), the first number in it is returned instead. None if nothing is
/// found. Exists because models state answers in many styles and the
/// grader must be lenient about style but strict about value.
pub fn extract_final_answer(solution: &str) -> Option<String> {
    if let Some(pos) = solution.rfind(GSM8K_MARKER)
        && let Some(answer) = line_answer(&solution[pos + GSM8K_MARKER.len()..])
    {
        return Some(answer);
    }
    if let Some(answer) = marker_answer(solution) {
        return Some(answer);
    }
    number_spans(solution)
        .last()
        .map(|&(start, end)| solution[start..end].to_string())
}

/// Canonical form of an answer so that "1,200", "$1200", "1200.00", "1200."
/// compare equal.
///
/// Numbers are exact reduced rationals (no floating-point surprises such as
/// 0.1 + 0.2); anything that is not a number is kept as normalised text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NormalAnswer {
    /// An exact rational value; `denominator` is always > 0 and the fraction
    /// is fully reduced, so structural equality is value equality.
    Number {
        /// Signed numerator of the reduced fraction.
        numerator: i128,
        /// Positive denominator of the reduced fraction.
        denominator: i128,
    },
    /// Non-numeric answer (or a number too large for `i128`): lowercased,
    /// whitespace-collapsed, trimmed, trailing '.' removed.
    Text(String),
}

/// Normalise a raw answer into a [`NormalAnswer`].
///
/// Strips surrounding whitespace, markdown emphasis, simple LaTeX wrappers
/// (`\boxed{}`, `\text{}`, `\frac{a}{b}`), `$`, `€`, `£`, `%`, thousands
/// commas (only commas, in valid groups of three), a trailing period and
/// trailing unit words after a number ("18 dollars", "5 hours" -> 18, 5).
/// Accepts a leading `+`/`-`, exact decimals (12.50 -> 25/2, 3.0 -> 3),
/// fractions ("3/4", "-3/4") and mixed numbers ("1 1/2" -> 3/2). Numbers
/// that overflow `i128` fall back to a canonical digit-string `Text`.
/// Returns None for empty input. Exists so that formatting differences
/// never decide correctness.
pub fn normalise_answer(raw: &str) -> Option<NormalAnswer> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let cleaned = strip_latex(raw).to_lowercase();
    let trimmed = cleaned
        .trim_start_matches(|c: char| c.is_whitespace() || c == '*' || c == '`')
        .trim_end_matches(|c: char| c.is_whitespace() || c == '*' || c == '`' || c == '.');
    if trimmed.is_empty() {
        return None;
    }
    if let Some(form) = parse_number(trimmed)
        && let Some(answer) = form.to_normal()
    {
        return Some(answer);
    }
    Some(NormalAnswer::Text(text_form(trimmed)))
}

/// True when both normalise to the same value (numbers compared exactly as
/// reduced rationals; if one side is a number and the other text, false).
///
/// Exists as the single equality used for grading, so every caller agrees.
pub fn answers_match(a: &str, b: &str) -> bool {
    match (normalise_answer(a), normalise_answer(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Grade a solution: extract its final answer and compare with the ground
/// truth (ground truth given as the bare answer, e.g. "18").
///
/// The one-call entry point used when storing or reporting correctness.
pub fn grade(solution: &str, ground_truth: &str) -> Grade {
    let extracted_answer = extract_final_answer(solution);
    let is_correct = extracted_answer
        .as_deref()
        .is_some_and(|answer| answers_match(answer, ground_truth));
    Grade {
        extracted_answer,
        is_correct,
    }
}

// ---------------------------------------------------------------------------
// Extraction helpers
// ---------------------------------------------------------------------------

/// The answer on the first line of `after` (text following a marker), or on
/// the next non-blank line when the marker ends its line.
fn line_answer(after: &str) -> Option<String> {
    let mut lines = after.lines();
    let first = lines.next().map(clean_fragment).unwrap_or_default();
    if !first.is_empty() {
        return refine(first);
    }
    lines
        .map(clean_fragment)
        .find(|l| !l.is_empty())
        .and_then(refine)
}

/// Step (2): the content after the last `Answer:` / `answer is` /
/// `\boxed{...}`, trying later markers first.
fn marker_answer(solution: &str) -> Option<String> {
    // ASCII lowercasing keeps byte offsets identical to `solution`.
    let lower = solution.to_ascii_lowercase();
    let mut candidates: Vec<(usize, Option<String>)> = Vec::new();

    if let Some(pos) = lower.rfind("answer:") {
        candidates.push((pos, line_answer(&solution[pos + "answer:".len()..])));
    }
    let phrase = "answer is";
    if let Some(pos) = lower.rmatch_indices(phrase).map(|(p, _)| p).find(|&p| {
        // Reject "answer isn't", "answer issue" and the like.
        !lower[p + phrase.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '\'' || c == '\u{2019}')
    }) {
        candidates.push((pos, line_answer(&solution[pos + phrase.len()..])));
    }
    for command in ["\\boxed{", "\\fbox{"] {
        if let Some(pos) = lower.rfind(command) {
            let open = pos + command.len() - 1;
            let content = brace_group(solution, open)
                .map(|(inner, _)| clean_fragment(inner))
                .and_then(refine);
            candidates.push((pos, content));
        }
    }

    candidates.sort_by_key(|candidate| std::cmp::Reverse(candidate.0));
    candidates.into_iter().find_map(|(_, content)| content)
}

/// Trim whitespace, markdown emphasis/code marks and a leading colon.
fn clean_fragment(s: &str) -> &str {
    s.trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '*' | '`' | ':' | '_'))
        .trim_end_matches(|c: char| c.is_whitespace() || matches!(c, '*' | '`' | '_'))
}

/// Keep `fragment` if it is a number (or has no number at all); otherwise
/// narrow it to the first number it contains.
fn refine(fragment: &str) -> Option<String> {
    if fragment.is_empty() {
        return None;
    }
    if let Some(NormalAnswer::Number { .. }) = normalise_answer(fragment) {
        return Some(fragment.to_string());
    }
    match number_spans(fragment).first() {
        Some(&(start, end)) => Some(fragment[start..end].to_string()),
        None => Some(fragment.to_string()),
    }
}

/// Byte spans of every number in `text`: optional `$` and sign, digits with
/// optional thousands-comma groups, optional decimal part (".25" included).
fn number_spans(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts_number = b[i].is_ascii_digit()
            || (b[i] == b'.'
                && b.get(i + 1).is_some_and(u8::is_ascii_digit)
                && (i == 0 || !b[i - 1].is_ascii_digit()));
        if !starts_number {
            i += 1;
            continue;
        }
        let end = number_end(b, i);
        spans.push((number_prefix_start(b, i), end));
        i = end;
    }
    spans
}

/// End (exclusive) of the number whose first byte is at `start`.
fn number_end(b: &[u8], start: usize) -> usize {
    let digit_at = |k: usize| b.get(k).is_some_and(u8::is_ascii_digit);
    let mut i = start;
    while digit_at(i) {
        i += 1;
    }
    let int_len = i - start;
    if (1..=3).contains(&int_len) {
        // Thousands groups: ",ddd" not followed by another digit.
        while b.get(i) == Some(&b',') && (1..=3).all(|k| digit_at(i + k)) && !digit_at(i + 4) {
            i += 4;
        }
    }
    if b.get(i) == Some(&b'.') && digit_at(i + 1) {
        i += 1;
        while digit_at(i) {
            i += 1;
        }
    }
    i
}

/// Extend a number's start backwards over an adjacent `$` and a minus sign
/// (a minus only counts as a sign when it does not follow an operand, so
/// "16-3" yields 3, not -3).
fn number_prefix_start(b: &[u8], start: usize) -> usize {
    let mut s = start;
    let mut seen_dollar = false;
    let mut seen_minus = false;
    loop {
        if s == 0 {
            return s;
        }
        match b[s - 1] {
            b'$' if !seen_dollar => {
                seen_dollar = true;
                s -= 1;
            }
            b'-' if !seen_minus => {
                let before = s.checked_sub(2).map(|k| b[k]);
                let follows_operand = before.is_some_and(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, b')' | b']' | b'}' | b'%' | b'.')
                });
                if follows_operand {
                    return s;
                }
                seen_minus = true;
                s -= 1;
            }
            _ => return s,
        }
    }
}

/// The content of the brace group opening at byte `open` (which must be
/// `{`) and the byte index just past its closing `}`; None if unbalanced.
fn brace_group(s: &str, open: usize) -> Option<(&str, usize)> {
    let b = s.as_bytes();
    if b.get(open) != Some(&b'{') {
        return None;
    }
    let mut depth = 0usize;
    for (k, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some((&s[open + 1..k], k + 1));
                }
            }
            _ => {}
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Normalisation helpers
// ---------------------------------------------------------------------------

/// Remove the LaTeX decoration models put around answers.
fn strip_latex(s: &str) -> String {
    if !s.contains('\\') && !s.contains("{,}") {
        return s.to_string();
    }
    let mut out = s.to_string();
    for (from, to) in [
        ("\\$", "$"),
        ("\\%", "%"),
        ("\\,", ""),
        ("\\!", ""),
        ("\\ ", " "),
        ("{,}", ","),
        ("\\(", ""),
        ("\\)", ""),
        ("\\[", ""),
        ("\\]", ""),
        ("\\left", ""),
        ("\\right", ""),
        ("\\dfrac{", "\\frac{"),
        ("\\tfrac{", "\\frac{"),
    ] {
        out = out.replace(from, to);
    }
    for command in [
        "\\boxed{",
        "\\fbox{",
        "\\text{",
        "\\textbf{",
        "\\textrm{",
        "\\mathrm{",
        "\\mbox{",
    ] {
        out = unwrap_command(&out, command);
    }
    rewrite_fracs(&out)
}

/// Replace every `\cmd{inner}` with `inner` (stops at unbalanced braces).
fn unwrap_command(s: &str, command: &str) -> String {
    let mut out = s.to_string();
    while let Some(pos) = out.find(command) {
        let open = pos + command.len() - 1;
        let Some((inner, end)) = brace_group(&out, open) else {
            break;
        };
        out = format!("{}{}{}", &out[..pos], inner, &out[end..]);
    }
    out
}

/// Replace every `\frac{a}{b}` with `a/b` (stops at malformed input).
fn rewrite_fracs(s: &str) -> String {
    let command = "\\frac{";
    let mut out = s.to_string();
    while let Some(pos) = out.find(command) {
        let open = pos + command.len() - 1;
        let Some((num, after_num)) = brace_group(&out, open) else {
            break;
        };
        let Some((den, end)) = brace_group(&out, after_num) else {
            break;
        };
        out = format!("{}{}/{}{}", &out[..pos], num, den, &out[end..]);
    }
    out
}

/// Lowercased text with whitespace collapsed and trailing periods removed.
fn text_form(s: &str) -> String {
    let collapsed = s.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace())
        .to_lowercase()
}

/// A digit string with optional decimal part, commas already removed.
#[derive(Debug)]
struct Numeral {
    int: String,
    frac: Option<String>,
}

/// The syntactic shape of a parsed number, before evaluation.
#[derive(Debug)]
enum NumberShape {
    Decimal(Numeral),
    Fraction {
        whole: Option<String>,
        num: String,
        den: String,
    },
}

/// A parsed number with its sign.
#[derive(Debug)]
struct NumberForm {
    negative: bool,
    shape: NumberShape,
}

impl NumberForm {
    /// Evaluate to an exact reduced rational; on overflow, a canonical digit
    /// string as `Text`; None when the value is undefined (zero denominator).
    fn to_normal(&self) -> Option<NormalAnswer> {
        let exact = match &self.shape {
            NumberShape::Decimal(n) => {
                let frac = n.frac.as_deref().unwrap_or("").trim_end_matches('0');
                decimal_value(&n.int, frac)
            }
            NumberShape::Fraction { whole, num, den } => {
                let d = digits_value(den);
                if d == Some(0) {
                    return None;
                }
                fraction_value(whole.as_deref(), num, d)
            }
        };
        Some(match exact {
            Some((n, d)) => {
                let (n, d) = reduce(n, d);
                NormalAnswer::Number {
                    numerator: if self.negative { -n } else { n },
                    denominator: d,
                }
            }
            None => NormalAnswer::Text(self.overflow_text()),
        })
    }

    /// Canonical textual form used when the value does not fit in `i128`.
    fn overflow_text(&self) -> String {
        let sign = if self.negative { "-" } else { "" };
        match &self.shape {
            NumberShape::Decimal(n) => {
                let frac = n.frac.as_deref().unwrap_or("").trim_end_matches('0');
                let int = strip_zeros(&n.int);
                if frac.is_empty() {
                    format!("{sign}{int}")
                } else {
                    format!("{sign}{int}.{frac}")
                }
            }
            NumberShape::Fraction { whole, num, den } => {
                let whole = whole
                    .as_deref()
                    .map(|w| format!("{} ", strip_zeros(w)))
                    .unwrap_or_default();
                format!("{sign}{whole}{}/{}", strip_zeros(num), strip_zeros(den))
            }
        }
    }
}

/// Digits without leading zeros ("0" for all-zero input).
fn strip_zeros(digits: &str) -> &str {
    let s = digits.trim_start_matches('0');
    if s.is_empty() { "0" } else { s }
}

/// Value of an ASCII digit string; None on overflow.
fn digits_value(digits: &str) -> Option<i128> {
    digits.bytes().try_fold(0i128, |acc, c| {
        acc.checked_mul(10)?
            .checked_add(i128::from(c.checked_sub(b'0')?))
    })
}

/// `int.frac` as numerator/denominator; None on overflow.
fn decimal_value(int: &str, frac: &str) -> Option<(i128, i128)> {
    let scale = 10i128.checked_pow(u32::try_from(frac.len()).ok()?)?;
    let int_value = digits_value(int)?;
    let frac_value = digits_value(frac)?;
    Some((
        int_value.checked_mul(scale)?.checked_add(frac_value)?,
        scale,
    ))
}

/// `whole num/den` as numerator/denominator; None on overflow.
fn fraction_value(whole: Option<&str>, num: &str, den: Option<i128>) -> Option<(i128, i128)> {
    let den = den?;
    let num = digits_value(num)?;
    let whole = match whole {
        Some(w) => digits_value(w)?,
        None => 0,
    };
    Some((whole.checked_mul(den)?.checked_add(num)?, den))
}

/// Reduce a non-negative numerator over a positive denominator.
fn reduce(n: i128, d: i128) -> (i128, i128) {
    let g = gcd(n.unsigned_abs(), d.unsigned_abs());
    if g <= 1 {
        return (n, d);
    }
    // g divides both, and both fit in i128, so the quotients do too.
    let g = i128::try_from(g).unwrap_or(1);
    (n / g, d / g)
}

/// Greatest common divisor (Euclid).
fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// True for the currency symbols we ignore.
fn is_currency(c: char) -> bool {
    matches!(c, '$' | '€' | '£')
}

/// Parse a whole (lowercased, trimmed) answer as a number with optional
/// sign, currency, percent and trailing unit words; None if it is not one.
fn parse_number(s: &str) -> Option<NumberForm> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut negative = false;
    let mut seen_sign = false;
    while let Some(&ch) = c.get(i) {
        match ch {
            _ if ch.is_whitespace() || is_currency(ch) => {}
            '+' | '-' | '\u{2212}' if !seen_sign => {
                seen_sign = true;
                negative = ch != '+';
            }
            _ => break,
        }
        i += 1;
    }

    let first = numeral(&c, &mut i)?;
    let shape = if let Some(shape) = mixed_or_fraction(&c, &mut i, &first) {
        shape
    } else {
        NumberShape::Decimal(first)
    };

    let rest: String = c[i..]
        .iter()
        .filter(|&&ch| ch != '%' && !is_currency(ch))
        .collect();
    let words: Vec<&str> = rest.split_whitespace().collect();
    let unit_like = |w: &&str| {
        w.chars().any(char::is_alphabetic)
            && w.chars()
                .all(|ch| ch.is_alphabetic() || matches!(ch, '\'' | '\u{2019}' | '-' | '/' | '.'))
    };
    if words.len() > MAX_UNIT_WORDS || !words.iter().all(unit_like) {
        return None;
    }
    Some(NumberForm { negative, shape })
}

/// After an integer numeral, try "a b/c" (mixed) or "a/b" (fraction);
/// leaves `i` untouched when neither applies.
fn mixed_or_fraction(c: &[char], i: &mut usize, first: &Numeral) -> Option<NumberShape> {
    if first.frac.is_some() {
        return None;
    }
    // Mixed number: whitespace, integer, '/', integer.
    let mut j = *i;
    let ws_start = j;
    skip_ws(c, &mut j);
    if j > ws_start
        && let Some(num) = numeral(c, &mut j)
        && num.frac.is_none()
        && let Some(den) = slash_integer(c, &mut j)
    {
        *i = j;
        return Some(NumberShape::Fraction {
            whole: Some(first.int.clone()),
            num: num.int,
            den,
        });
    }
    // Simple fraction.
    let mut j = *i;
    let den = slash_integer(c, &mut j)?;
    *i = j;
    Some(NumberShape::Fraction {
        whole: None,
        num: first.int.clone(),
        den,
    })
}

/// Parse `\s* / \s* integer`, returning the integer's digits.
fn slash_integer(c: &[char], i: &mut usize) -> Option<String> {
    let mut j = *i;
    skip_ws(c, &mut j);
    if c.get(j) != Some(&'/') {
        return None;
    }
    j += 1;
    skip_ws(c, &mut j);
    let den = numeral(c, &mut j)?;
    if den.frac.is_some() {
        return None;
    }
    *i = j;
    Some(den.int)
}

/// Advance past whitespace.
fn skip_ws(c: &[char], i: &mut usize) {
    while c.get(*i).is_some_and(|ch| ch.is_whitespace()) {
        *i += 1;
    }
}

/// Parse digits (with valid thousands-comma groups) and an optional
/// decimal part at `i`; None (and `i` untouched) if there is no numeral or
/// the comma grouping is invalid.
fn numeral(c: &[char], i: &mut usize) -> Option<Numeral> {
    let digit_at = |k: usize| c.get(k).is_some_and(char::is_ascii_digit);
    let mut j = *i;
    let mut int = String::new();
    while digit_at(j) {
        int.push(c[j]);
        j += 1;
    }
    if c.get(j) == Some(&',') && !int.is_empty() {
        if int.len() > 3 {
            return None;
        }
        while c.get(j) == Some(&',') {
            let whole_group = (1..=3).all(|k| digit_at(j + k)) && !digit_at(j + 4);
            if !whole_group {
                return None;
            }
            int.extend(&c[j + 1..j + 4]);
            j += 4;
        }
    }
    let mut frac = None;
    if c.get(j) == Some(&'.') && digit_at(j + 1) {
        j += 1;
        let mut f = String::new();
        while digit_at(j) {
            f.push(c[j]);
            j += 1;
        }
        frac = Some(f);
    }
    if int.is_empty() && frac.is_none() {
        return None;
    }
    if int.is_empty() {
        int.push('0');
    }
    *i = j;
    Some(Numeral { int, frac })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn num(numerator: i128, denominator: i128) -> Option<NormalAnswer> {
        Some(NormalAnswer::Number {
            numerator,
            denominator,
        })
    }

    fn text(s: &str) -> Option<NormalAnswer> {
        Some(NormalAnswer::Text(s.to_string()))
    }

    // --- gsm8k_final_answer -------------------------------------------------

    #[test]
    fn gsm8k_final_answer_takes_text_after_last_marker() {
        assert_eq!(gsm8k_final_answer("a\n#### 18").as_deref(), Some("18"));
        assert_eq!(
            gsm8k_final_answer("x #### 1\n#### 1,000  ").as_deref(),
            Some("1,000")
        );
        assert_eq!(gsm8k_final_answer("####-3").as_deref(), Some("-3"));
    }

    #[test]
    fn gsm8k_final_answer_none_without_marker_or_value() {
        assert_eq!(gsm8k_final_answer("no marker 18"), None);
        assert_eq!(gsm8k_final_answer("reasoning\n####   \n"), None);
        assert_eq!(gsm8k_final_answer(""), None);
    }

    // --- extract_final_answer -----------------------------------------------

    #[test]
    fn extract_uses_last_hash_marker_line_only() {
        assert_eq!(
            extract_final_answer("#### 3\nmore\n#### 1,000\nThat is all, 7 total.").as_deref(),
            Some("1,000")
        );
        // The #### line wins over an earlier or later "Answer:".
        assert_eq!(
            extract_final_answer("Answer: 5\n#### 6\nAnswer: 9").as_deref(),
            Some("6")
        );
    }

    #[test]
    fn extract_keeps_raw_answer_text() {
        assert_eq!(
            extract_final_answer("so...\n#### $1,200.").as_deref(),
            Some("$1,200.")
        );
        assert_eq!(
            extract_final_answer("Answer: 18 dollars").as_deref(),
            Some("18 dollars")
        );
    }

    #[test]
    fn extract_blank_hash_line_uses_next_line() {
        assert_eq!(
            extract_final_answer("work\n####\n  42\n").as_deref(),
            Some("42")
        );
    }

    #[test]
    fn extract_answer_markers_case_insensitive() {
        assert_eq!(
            extract_final_answer("blah 3 blah\nFINAL ANSWER: 12").as_deref(),
            Some("12")
        );
        assert_eq!(
            extract_final_answer("**Answer:** **7**").as_deref(),
            Some("7")
        );
        assert_eq!(
            extract_final_answer("So the Answer Is 250.\nCheck: 5*50=250").as_deref(),
            Some("250.")
        );
        assert_eq!(
            extract_final_answer("The answer is: 4 apples").as_deref(),
            Some("4 apples")
        );
    }

    #[test]
    fn extract_answer_is_requires_word_boundary() {
        // "answer isn't" is not a marker; falls back to the last number.
        assert_eq!(
            extract_final_answer("The answer isn't 5, it is 6").as_deref(),
            Some("6")
        );
    }

    #[test]
    fn extract_prose_after_marker_narrows_to_first_number() {
        assert_eq!(
            extract_final_answer("Answer: Janet makes $18 every day, since 9*2=18.").as_deref(),
            Some("$18")
        );
        assert_eq!(
            extract_final_answer("The answer is 18 because 9 * 2 = 18").as_deref(),
            Some("18")
        );
    }

    #[test]
    fn extract_boxed_content() {
        assert_eq!(
            extract_final_answer("Thus $\\boxed{42}$.").as_deref(),
            Some("42")
        );
        assert_eq!(
            extract_final_answer("\\boxed{\\frac{3}{4}} done").as_deref(),
            Some("\\frac{3}{4}")
        );
        assert_eq!(
            extract_final_answer("\\boxed{18 \\text{ dollars}}").as_deref(),
            Some("18 \\text{ dollars}")
        );
        // Unbalanced box is ignored; the last number is used instead.
        assert_eq!(
            extract_final_answer("\\boxed{12 and 13").as_deref(),
            Some("13")
        );
    }

    #[test]
    fn extract_last_marker_wins() {
        assert_eq!(
            extract_final_answer("Answer: 3\nWait, recheck. The answer is \\boxed{4}.").as_deref(),
            Some("4")
        );
        assert_eq!(
            extract_final_answer("\\boxed{4}\nActually the answer is 5").as_deref(),
            Some("5")
        );
    }

    #[test]
    fn extract_last_number_fallback() {
        assert_eq!(
            extract_final_answer("She had 8 and ate 3, so she has 5 apples left.").as_deref(),
            Some("5")
        );
        assert_eq!(
            extract_final_answer("Natalia sold 48/2 = <<48/2=24>>24 clips in May.").as_deref(),
            Some("24")
        );
        assert_eq!(
            extract_final_answer("Total is 1,000,000 dollars.").as_deref(),
            Some("1,000,000")
        );
        assert_eq!(
            extract_final_answer("She pays $1,234.50 in total.").as_deref(),
            Some("$1,234.50")
        );
        assert_eq!(
            extract_final_answer("It was -3 degrees in the morning.").as_deref(),
            Some("-3")
        );
        assert_eq!(
            extract_final_answer("500*.25=125 or .5").as_deref(),
            Some(".5")
        );
        // A minus between operands is subtraction, not a sign.
        assert_eq!(extract_final_answer("16-3").as_deref(), Some("3"));
        // A list is not a thousands number.
        assert_eq!(extract_final_answer("items 1,2,3").as_deref(), Some("3"));
    }

    #[test]
    fn extract_none_without_any_number() {
        assert_eq!(extract_final_answer("I have no idea."), None);
        assert_eq!(extract_final_answer(""), None);
    }

    // --- normalise_answer ---------------------------------------------------

    #[test]
    fn normalise_currency_commas_decimals() {
        for raw in [
            "1,200",
            "$1200",
            "1200.00",
            "1200.",
            "$1,200.00",
            " £1200 ",
            "€1,200",
        ] {
            assert_eq!(normalise_answer(raw), num(1200, 1), "{raw}");
        }
        assert_eq!(normalise_answer("12.50"), num(25, 2));
        assert_eq!(normalise_answer("3.0"), num(3, 1));
        assert_eq!(normalise_answer(".25"), num(1, 4));
        assert_eq!(normalise_answer("0"), num(0, 1));
        assert_eq!(normalise_answer("-0.0"), num(0, 1));
    }

    #[test]
    fn normalise_signs() {
        assert_eq!(normalise_answer("-3"), num(-3, 1));
        assert_eq!(normalise_answer("+3"), num(3, 1));
        assert_eq!(normalise_answer("-$5.50"), num(-11, 2));
        assert_eq!(normalise_answer("$-5"), num(-5, 1));
        assert_eq!(normalise_answer("\u{2212}7"), num(-7, 1));
    }

    #[test]
    fn normalise_fractions_and_mixed_numbers() {
        assert_eq!(normalise_answer("3/4"), num(3, 4));
        assert_eq!(normalise_answer("-3/4"), num(-3, 4));
        assert_eq!(normalise_answer("6/8"), num(3, 4));
        assert_eq!(normalise_answer("3 / 4"), num(3, 4));
        assert_eq!(normalise_answer("1 1/2"), num(3, 2));
        assert_eq!(normalise_answer("-1 1/2"), num(-3, 2));
        assert_eq!(normalise_answer("2 1/2 cups"), num(5, 2));
        assert_eq!(normalise_answer("\\frac{3}{4}"), num(3, 4));
        assert_eq!(normalise_answer("\\dfrac{10}{4}"), num(5, 2));
    }

    #[test]
    fn normalise_percent_units_and_decoration() {
        assert_eq!(normalise_answer("50%"), num(50, 1));
        assert_eq!(normalise_answer("18 dollars"), num(18, 1));
        assert_eq!(normalise_answer("5 hours."), num(5, 1));
        assert_eq!(normalise_answer("18dollars"), num(18, 1));
        assert_eq!(normalise_answer("**18**"), num(18, 1));
        assert_eq!(normalise_answer("$18$"), num(18, 1));
        assert_eq!(normalise_answer("\\$1{,}200"), num(1200, 1));
        assert_eq!(normalise_answer("18 \\text{ dollars}"), num(18, 1));
        assert_eq!(normalise_answer("\\boxed{7}"), num(7, 1));
    }

    #[test]
    fn normalise_text_answers() {
        assert_eq!(normalise_answer("  Yes,   Tom.  "), text("yes, tom"));
        assert_eq!(normalise_answer("18 and 20"), text("18 and 20"));
        assert_eq!(normalise_answer("1,2"), text("1,2"));
        assert_eq!(
            normalise_answer("5 is what we get when we add two and three"),
            text("5 is what we get when we add two and three")
        );
        // Zero denominators are not numbers.
        assert_eq!(normalise_answer("3/0"), text("3/0"));
    }

    #[test]
    fn normalise_empty_is_none() {
        assert_eq!(normalise_answer(""), None);
        assert_eq!(normalise_answer("   \n"), None);
        assert_eq!(normalise_answer(" . "), None);
    }

    #[test]
    fn normalise_overflow_falls_back_to_text() {
        // 45 digits: far beyond i128::MAX (about 1.7e38).
        let digits = "123456789".repeat(5);
        let with_commas = "123,456,789,".repeat(5);
        let with_commas = with_commas.trim_end_matches(',');
        assert_eq!(normalise_answer(with_commas), text(&digits));
        assert!(answers_match(with_commas, &format!("${digits}.00")));
        assert!(!answers_match(with_commas, &format!("{digits}1")));
        assert!(!answers_match(with_commas, "123456789"));
        let long_decimal = format!("0.{}1", "0".repeat(60));
        assert!(matches!(
            normalise_answer(&long_decimal),
            Some(NormalAnswer::Text(_))
        ));
        // i128::MAX itself still fits.
        assert_eq!(normalise_answer(&i128::MAX.to_string()), num(i128::MAX, 1));
    }

    // --- answers_match / grade ----------------------------------------------

    #[test]
    fn answers_match_required_cases() {
        assert!(answers_match("$1,200.00", "1200"));
        assert!(answers_match("12.5", "25/2"));
        assert!(answers_match("50%", "50"));
        assert!(!answers_match("0.5", "5"));
        assert!(answers_match("-3", "-3.0"));
        assert!(answers_match("3/4", "0.75"));
        assert!(!answers_match("7", "70"));
        assert!(answers_match("1 1/2", "1.5"));
        assert!(!answers_match("3", "-3"));
        assert!(!answers_match("", ""));
        assert!(!answers_match("18", "eighteen"));
        assert!(answers_match("Yes.", "yes"));
    }

    #[test]
    fn grade_answer_with_unit_word() {
        let g = grade("Answer: 18 dollars", "18");
        assert_eq!(g.extracted_answer.as_deref(), Some("18 dollars"));
        assert!(g.is_correct);
        assert_eq!(normalise_answer("18 dollars"), num(18, 1));
    }

    #[test]
    fn grade_boxed_and_fallback() {
        assert!(grade("\\boxed{42}", "42").is_correct);
        assert!(!grade("\\boxed{42}", "24").is_correct);
        let g = grade("so she has 5 apples left.", "5");
        assert_eq!(g.extracted_answer.as_deref(), Some("5"));
        assert!(g.is_correct);
        assert!(grade("She earns $1,200.00 a month.\n#### $1,200.", "1200").is_correct);
    }

    #[test]
    fn grade_without_number_is_incorrect() {
        let g = grade("I cannot solve this.", "18");
        assert_eq!(
            g,
            Grade {
                extracted_answer: None,
                is_correct: false
            }
        );
    }

    // --- real GSM8K data ----------------------------------------------------

    const GSM8K_TEST_LINES: usize = 1319;

    fn gsm8k_test_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/gsm8k/test.jsonl")
    }

    /// (question, answer) pairs; panics (never skips) when the file is absent.
    fn load_gsm8k(path: &Path) -> Vec<(String, String)> {
        let body = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!(
                "GSM8K test set missing or unreadable at {}: {e}",
                path.display()
            )
        });
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(n, line)| parse_record(line, n + 1))
            .collect()
    }

    fn parse_record(line: &str, line_no: usize) -> (String, String) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {line_no}: invalid JSON: {e}"));
        let field = |name: &str| {
            v[name]
                .as_str()
                .unwrap_or_else(|| panic!("line {line_no}: missing string field {name:?}"))
                .to_string()
        };
        (field("question"), field("answer"))
    }

    #[test]
    #[should_panic(expected = "definitely/not/here.jsonl")]
    fn gsm8k_loader_fails_loudly_when_file_missing() {
        load_gsm8k(Path::new("/definitely/not/here.jsonl"));
    }

    #[test]
    fn gsm8k_reference_solutions_grade_correct() {
        let records = load_gsm8k(&gsm8k_test_path());
        assert_eq!(
            records.len(),
            GSM8K_TEST_LINES,
            "unexpected GSM8K test size"
        );
        let mut fallback_hits = 0usize;
        let mut misses = Vec::new();
        for (n, (_question, answer)) in records.iter().enumerate() {
            let truth = gsm8k_final_answer(answer)
                .unwrap_or_else(|| panic!("line {}: no #### answer", n + 1));
            let g = grade(answer, &truth);
            assert!(g.is_correct, "line {}: {g:?} vs truth {truth:?}", n + 1);

            let marker = answer.rfind(GSM8K_MARKER).unwrap_or(answer.len());
            let reasoning = &answer[..marker];
            let extracted = extract_final_answer(reasoning);
            if extracted
                .as_deref()
                .is_some_and(|e| answers_match(e, &truth))
            {
                fallback_hits += 1;
            } else {
                misses.push((n + 1, extracted, truth));
            }
        }
        let rate = fallback_hits as f64 / records.len() as f64;
        println!(
            "last-number fallback on GSM8K test reasoning: {fallback_hits}/{} = {:.2}%",
            records.len(),
            rate * 100.0
        );
        for (line, got, truth) in misses.iter().take(10) {
            println!("  miss line {line}: extracted {got:?}, truth {truth:?}");
        }
        assert!(rate >= 0.90, "fallback rate {rate:.4} below 90%");
    }

    #[test]
    fn gsm8k_off_by_one_answers_grade_incorrect() {
        let records = load_gsm8k(&gsm8k_test_path());
        assert_eq!(
            records.len(),
            GSM8K_TEST_LINES,
            "unexpected GSM8K test size"
        );
        for (n, (_question, answer)) in records.iter().enumerate() {
            let truth = gsm8k_final_answer(answer)
                .unwrap_or_else(|| panic!("line {}: no #### answer", n + 1));
            let value: i128 = truth
                .replace(',', "")
                .parse()
                .unwrap_or_else(|e| panic!("line {}: truth {truth:?} not integer: {e}", n + 1));
            let marker = answer.rfind(GSM8K_MARKER).unwrap_or(answer.len());
            let wrong = format!("{}#### {}", &answer[..marker], value + 1);
            let g = grade(&wrong, &truth);
            assert!(
                !g.is_correct,
                "line {}: off-by-one graded correct: {g:?}",
                n + 1
            );
        }
    }

    /// Three lines copied verbatim from shared/data/gsm8k/test.jsonl (lines
    /// 1, 202 and 1114): a plain answer, a thousands-comma answer and a
    /// negative answer.
    const VERBATIM_LINES: [&str; 3] = [
        r##"{"question": "Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. How much in dollars does she make every day at the farmers' market?", "answer": "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day at the farmer\u2019s market.\n#### 18"}"##,
        r##"{"question": "John wins an award at work.  The award has a 1 time monetary reward of $5000 and a 5% raise in salary.  If he makes 2000 a week, every week of the year and he got the award on the first day of the year how much money did he make that year?", "answer": "He makes 2000*52=$<<2000*52=104000>>104,000 a year\nSo the raise is worth .05*104,000=$<<.05*104000=5200>>5200\nSo he makes 104,000+5200=$<<104000+5200=109200>>109,200 from his salary\nSo in total he made 109,200+5,000=$<<109200+5000=114200>>114,200\n#### 114,200"}"##,
        r##"{"question": "The temperature was 2 degrees Celsius. It dropped 8 degrees Celsius overnight and then increased 3 degrees Celsius in the morning. What was the temperature, in degrees Celsius, in the morning?", "answer": "Start = +<<2=2>>2 degrees\nDrop 8 degrees = 2 - 8 = -6 degrees\nIncrease 3 degrees = -6 + 3 = -3 degrees\nIt was -3 degrees Celsius in the morning.\n#### -3"}"##,
    ];

    #[test]
    fn gsm8k_verbatim_examples() {
        let expected = [("18", "18"), ("114,200", "114200"), ("-3", "-3")];
        let records = load_gsm8k(&gsm8k_test_path());
        for (k, (line, (truth, bare))) in VERBATIM_LINES.iter().zip(expected).enumerate() {
            let (question, answer) = parse_record(line, k + 1);
            assert!(
                records.iter().any(|(q, a)| *q == question && *a == answer),
                "example {k} is not a verbatim line of the GSM8K test set"
            );
            assert_eq!(gsm8k_final_answer(&answer).as_deref(), Some(truth));
            let g = grade(&answer, truth);
            assert_eq!(g.extracted_answer.as_deref(), Some(truth));
            assert!(g.is_correct);
            // Truth written without thousands commas still matches.
            assert!(grade(&answer, bare).is_correct);
            // The reasoning alone still ends on the right number.
            let marker = answer.rfind(GSM8K_MARKER).unwrap_or(answer.len());
            let reasoning_grade = grade(&answer[..marker], truth);
            assert!(reasoning_grade.is_correct, "{reasoning_grade:?}");
            assert!(!grade(&answer, "0").is_correct);
        }
    }
}

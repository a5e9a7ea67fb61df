//! Grading of model-written solutions to grade-school math problems.
//!
//! A legibility study is only meaningful if we know which solutions are actually correct, so
//! this module decides correctness mechanically: find the final answer(s) a solution states,
//! normalise them to exact values, and compare with the problem's ground truth. Real model
//! outputs state answers in many ways (`#### 18`, `A: 18`, `The answer is 18.`, `\boxed{18}`,
//! `Answer: $18`), run on into the next few-shot question, hedge ("20 or 18"), or stop before
//! any answer. The grader reads only what a solution *commits to* as its final answer: a
//! solution that states none is [`GradeOutcome::Ungradable`] (never a guess from its last
//! number), and one that states two different answers is [`GradeOutcome::Incorrect`].
//! Everything here but [`jsonl`] is pure (no I/O) so handlers, workers and tests share it.

pub mod jsonl;

pub use crate::domain::GradeOutcome;

/// Result of grading one solution against a problem's ground truth.
///
/// Keeps the extracted answer alongside the outcome so that reports and researchers can see
/// *what* the grader thought the solution committed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grade {
    /// The final answer as the solution wrote it (its last stated answer), if it stated one.
    pub extracted_answer: Option<String>,
    /// Correct, incorrect, or ungradable (no final answer stated).
    pub outcome: GradeOutcome,
}

impl Grade {
    /// True only for [`GradeOutcome::Correct`]: an ungradable solution is not known correct.
    pub fn is_correct(&self) -> bool {
        self.outcome == GradeOutcome::Correct
    }
}

/// The marker GSM8K uses to introduce the final answer.
const GSM8K_MARKER: &str = "####";

/// How far after its marker an answer may be (bytes): a final answer comes within a line's
/// first few words, and the cap keeps grading linear in the text's length however many markers
/// a (hostile) text repeats.
const MAX_FRAGMENT_BYTES: usize = 300;

/// Cap on the number of trailing unit words accepted after a number
/// ("18 dollars", "5 apples left over"); longer tails are treated as prose.
const MAX_UNIT_WORDS: usize = 6;

/// Words that may stand between an anchored marker (`####`, `A:`, `answer is`) and its number
/// ("The answer is therefore $18", "A: The total is 18"). Any other word means the marker
/// introduces prose or reasoning, not an answer ("A: Natalia sold 48/2 = 24 clips…").
const LEAD_IN_WORDS: &[&str] = &[
    "a",
    "about",
    "actually",
    "answer",
    "approximately",
    "around",
    "be",
    "between",
    "boxed",
    "clearly",
    "correct",
    "either",
    "equal",
    "equals",
    "exactly",
    "fbox",
    "final",
    "from",
    "hence",
    "is",
    "just",
    "mathbf",
    "mathrm",
    "my",
    "number",
    "of",
    "our",
    "result",
    "roughly",
    "should",
    "simply",
    "so",
    "text",
    "textbf",
    "the",
    "then",
    "therefore",
    "thus",
    "to",
    "total",
    "value",
    "will",
    "would",
];

/// Words that may precede `Answer:` on its line ("Final Answer:", "So the answer:").
const ANSWER_PREFIX_WORDS: &[&str] = &[
    "correct",
    "final",
    "hence",
    "my",
    "so",
    "the",
    "therefore",
    "thus",
];

/// Words between two numbers that leave a hedge a hedge ("20, or maybe 18").
const HEDGE_FILLER_WORDS: &[&str] = &[
    "about",
    "approximately",
    "around",
    "either",
    "maybe",
    "perhaps",
    "possibly",
    "roughly",
];

/// Scale words after a number and what they multiply it by ("1.5 billion", "5 dozen").
const SCALE_WORDS: &[(&str, i128)] = &[
    ("dozen", 12),
    ("hundred", 100),
    ("thousand", 1_000),
    ("million", 1_000_000),
    ("billion", 1_000_000_000),
    ("trillion", 1_000_000_000_000),
];

/// Characters that separate thousands groups: comma, space, thin space, narrow no-break space,
/// no-break space ("1,200", "1 200", "1\u{2009}200").
const GROUP_SEPARATORS: &[char] = &[',', ' ', '\u{2009}', '\u{202F}', '\u{00A0}'];

/// Final answer of a GSM8K `answer` field: the text after the last `####`,
/// trimmed; None when there is no `####` or it is followed by nothing.
///
/// Exists so ground truth is read from the data set in exactly one way.
pub fn gsm8k_final_answer(answer_field: &str) -> Option<String> {
    let pos = answer_field.rfind(GSM8K_MARKER)?;
    let rest = answer_field[pos + GSM8K_MARKER.len()..].trim();
    (!rest.is_empty()).then(|| rest.to_string())
}

/// One final answer a solution states: what one final-answer marker introduces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatedAnswer {
    /// The answer as written, a piece of the solution's text ("$1,200.00", "20 or 18").
    pub raw: String,
    /// Its distinct values: one, or several when the statement hedges ("20 or 18",
    /// "between 18 and 20").
    pub values: Vec<NormalAnswer>,
}

/// Every final answer the solution states, in text order.
///
/// Markers: `####` (GSM8K), `A:` at a line start, `The answer is`, `\boxed{}`/`\fbox{}` and
/// `Answer:` (also "Final answer:"; at a line start or after a sentence). `####`, `A:` and
/// `answer is` must be followed by the number itself (a few words such as "the total is"
/// allowed), so they never pick a number out of reasoning; `Answer:` and a box take the first
/// number they hold, or the result of an expression ("9 * 2 = 18" → 18). A `Q:` or
/// `Question:` line after the first answer line is the model running on into the next
/// few-shot question: it and everything after it are ignored. Text after the final-answer
/// line without a marker (chatter) adds nothing. No marker, no answers: there is no
/// last-number fallback.
pub fn stated_answers(solution: &str) -> Vec<StatedAnswer> {
    let all = statements(solution);
    let kept = match all
        .first()
        .and_then(|first| run_on_cut(solution, first.marker))
    {
        Some(cut) => statements(&solution[..cut]),
        None => all,
    };
    kept.into_iter().map(|found| found.answer).collect()
}

/// The final answer the solution ends on, as written (a piece of its text), or None when it
/// states no final answer. Exists for display and storage; [`grade`] decides correctness
/// from every stated answer.
pub fn extract_final_answer(solution: &str) -> Option<String> {
    stated_answers(solution).pop().map(|answer| answer.raw)
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
/// (`\boxed{}`, `\text{}`, `\frac{a}{b}`), `$`, `€`, `£`, `%`, thousands separators (comma,
/// space, thin space, no-break space; only in valid groups of three), a trailing period and
/// trailing unit words after a number ("18 dollars", "5 hours" -> 18, 5). Accepts a leading
/// `+`, `-` or `−` (U+2212), exact decimals (12.50 -> 25/2, 3.0 -> 3), fractions ("3/4",
/// "-3/4"), mixed numbers ("1 1/2" -> 3/2) and scale words ("1.5 billion", "5 dozen" -> 60).
/// Numbers that overflow `i128` fall back to a canonical digit-string `Text`. Returns None
/// for empty input. Exists so that formatting differences never decide correctness.
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

/// Grade a solution against the ground truth (given as the bare answer, e.g. "18").
///
/// Ungradable when the solution states no final answer; incorrect when it states answers of
/// different values (a hedge, or two markers that disagree: the model did not commit to one),
/// or one value other than the truth; correct otherwise. The one-call entry point used when
/// storing or reporting correctness.
pub fn grade(solution: &str, ground_truth: &str) -> Grade {
    let stated = stated_answers(solution);
    let extracted_answer = stated.last().map(|answer| answer.raw.clone());
    let mut values: Vec<&NormalAnswer> = Vec::new();
    for value in stated.iter().flat_map(|answer| &answer.values) {
        if !values.contains(&value) {
            values.push(value);
        }
    }
    let outcome = match values.as_slice() {
        [] => GradeOutcome::Ungradable,
        [value] if normalise_answer(ground_truth).as_ref() == Some(*value) => GradeOutcome::Correct,
        _ => GradeOutcome::Incorrect,
    };
    Grade {
        extracted_answer,
        outcome,
    }
}

// ---------------------------------------------------------------------------
// Extraction helpers
// ---------------------------------------------------------------------------

/// A stated answer and where its marker starts.
struct Found {
    marker: usize,
    answer: StatedAnswer,
}

/// Every marker's stated answer in `text`, by marker position.
fn statements(text: &str) -> Vec<Found> {
    let mut found = Vec::new();
    let mut push = |marker: usize, answer: Option<StatedAnswer>| {
        if let Some(answer) = answer {
            found.push(Found { marker, answer });
        }
    };
    for (pos, _) in text.match_indices(GSM8K_MARKER) {
        let fragment = line_fragment(text, pos + GSM8K_MARKER.len());
        push(pos, fragment.and_then(|f| read_statement(f, true)));
    }
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_start_matches(is_markdown_or_space);
        if body.starts_with("A:") {
            let pos = line_start + (line.len() - body.len());
            let fragment = line_fragment(text, pos + "A:".len()).filter(|f| !is_working(f));
            push(pos, fragment.and_then(|f| read_statement(f, true)));
        }
        line_start += line.len();
    }
    // ASCII lowercasing keeps byte offsets identical to `text`.
    let lower = text.to_ascii_lowercase();
    for (pos, marker) in lower.match_indices("answer:") {
        if answer_colon_is_marker(text, pos) {
            let fragment = line_fragment(text, pos + marker.len());
            push(pos, fragment.and_then(|f| read_statement(f, false)));
        }
    }
    for (pos, marker) in lower.match_indices("answer is") {
        if answer_is_is_marker(&lower, pos, pos + marker.len()) {
            let fragment = line_fragment(text, pos + marker.len());
            push(pos, fragment.and_then(|f| read_statement(f, true)));
        }
    }
    for command in ["\\boxed{", "\\fbox{"] {
        for (pos, _) in text.match_indices(command) {
            let open = pos + command.len() - 1;
            let window = capped(text, open + MAX_FRAGMENT_BYTES);
            let inner = brace_group(window, open).map(|(inner, _)| inner);
            push(pos, inner.and_then(|f| read_statement(f, false)));
        }
    }
    found.sort_by_key(|f| f.marker);
    found
}

/// True for a few-shot `A:` line that holds chain-of-thought working rather than an answer:
/// an equation or calculator annotation ("A: 48/2 = 24 clips in May."), or several sentences
/// unless the first is just a number and the rest has none ("A: 18. Hope this helps!" is an
/// answer, "A: 48 clips in April. Half as many in May…" is working).
fn is_working(fragment: &str) -> bool {
    if fragment.contains('=') || fragment.contains("<<") {
        return true;
    }
    let first_sentence_end = [". ", "! ", "? "]
        .iter()
        .filter_map(|end| fragment.find(end))
        .min();
    first_sentence_end.is_some_and(|end| {
        !matches!(
            normalise_answer(&fragment[..end]),
            Some(NormalAnswer::Number { .. })
        ) || fragment[end..].contains(|c: char| c.is_ascii_digit())
    })
}

/// Whitespace and the markdown marks models put at a line start (`**A:**`, `> A:`, `### `).
fn is_markdown_or_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '*' | '_' | '#' | '>' | '`')
}

/// `answer:` at `pos` is a marker when only words such as "Final" precede it on its line, or
/// it starts a sentence ("… 18 eggs. Answer: 18"); not in "the explanation of my answer:".
fn answer_colon_is_marker(text: &str, pos: usize) -> bool {
    if text[..pos]
        .chars()
        .next_back()
        .is_some_and(char::is_alphanumeric)
    {
        return false;
    }
    // Only the end of the line before the marker matters; looking no further keeps this linear.
    let window = &text[floor_boundary(text, pos.saturating_sub(MAX_FRAGMENT_BYTES))..pos];
    let mut prefix = window.rsplit('\n').next().unwrap_or(window);
    loop {
        let trimmed = prefix.trim_end_matches(is_markdown_or_space);
        let word_start = trimmed
            .char_indices()
            .rev()
            .find(|&(_, c)| !c.is_alphabetic())
            .map_or(0, |(k, c)| k + c.len_utf8());
        let word = trimmed[word_start..].to_lowercase();
        if word.is_empty() || !ANSWER_PREFIX_WORDS.contains(&word.as_str()) {
            return trimmed.is_empty() || trimmed.ends_with(['.', '!', '?']);
        }
        prefix = &trimmed[..word_start];
    }
}

/// `answer is` (in `lower`, from `pos` to `end`) is a marker when it stands as words and is
/// not negated ("answer isn't", "answer is not 20").
fn answer_is_is_marker(lower: &str, pos: usize, end: usize) -> bool {
    let glued_before = lower[..pos]
        .chars()
        .next_back()
        .is_some_and(char::is_alphanumeric);
    let glued_after = lower[end..]
        .chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || c == '\'' || c == '\u{2019}');
    let rest = lower[end..].trim_start();
    let negated = rest
        .strip_prefix("not")
        .is_some_and(|after| !after.starts_with(char::is_alphanumeric));
    !glued_before && !glued_after && !negated
}

/// The text after a marker up to the end of its line, or the next non-blank line when the
/// marker ends its line; trimmed of whitespace and markdown. A piece of `text`.
fn line_fragment(text: &str, after: usize) -> Option<&str> {
    let mut lines = text.get(after..)?.lines();
    let first = clean_fragment(capped(lines.next()?, MAX_FRAGMENT_BYTES));
    if !first.is_empty() {
        return Some(first);
    }
    lines
        .map(|line| clean_fragment(capped(line, MAX_FRAGMENT_BYTES)))
        .find(|l| !l.is_empty())
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn capped(s: &str, max: usize) -> &str {
    &s[..floor_boundary(s, max)]
}

/// The largest character boundary of `s` at or below `at`.
fn floor_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    (0..=at).rev().find(|&k| s.is_char_boundary(k)).unwrap_or(0)
}

/// Trim whitespace, markdown emphasis/code marks and a leading colon.
fn clean_fragment(s: &str) -> &str {
    s.trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '*' | '`' | ':' | '_'))
        .trim_end_matches(|c: char| c.is_whitespace() || matches!(c, '*' | '`' | '_'))
}

/// The answer a marker's fragment (its first sentence) states, if any. `anchored`: the number must come first
/// (after [`LEAD_IN_WORDS`] only). A fragment that is a number as a whole ("18 dollars",
/// "3 1/2", "1.5 billion") is kept whole; otherwise its first number, or the result of the
/// expression it starts ("9 * 2 = 18" → 18), or a hedge of several ("20 or 18").
fn read_statement(fragment: &str, anchored: bool) -> Option<StatedAnswer> {
    // The answer is in the marker's sentence; its closing mark is not part of it ("The
    // answer is 18. Hope this helps!" states "18").
    let sentence_end = [". ", "! ", "? "]
        .iter()
        .filter_map(|end| fragment.find(end))
        .min()
        .unwrap_or(fragment.len());
    let fragment = clean_fragment(
        clean_fragment(&fragment[..sentence_end]).trim_end_matches(['.', ',', ';', '!', '?']),
    );
    if let Some(value @ NormalAnswer::Number { .. }) = normalise_answer(fragment) {
        return Some(StatedAnswer {
            raw: fragment.to_string(),
            values: vec![value],
        });
    }
    let spans = number_spans(fragment);
    let &(first_start, _) = spans.first()?;
    let lead = &fragment[..first_start];
    if anchored && !lead_in_allows(lead) {
        return None;
    }
    let k = expression_result(fragment, &spans, 0);
    let value_of = |i: usize| normalise_answer(&fragment[spans[i].0..spans[i].1]);
    let mut values = vec![value_of(k)?];
    let range_opened = k == 0 && opens_range(lead);
    let mut hedged = false;
    let mut end = spans[k].1;
    let mut j = k;
    while j + 1 < spans.len() {
        let kind = connector_kind(
            &fragment[spans[j].1..spans[j + 1].0],
            range_opened && j == k,
        );
        let Some(value) = value_of(j + 1) else { break };
        match kind {
            Connector::Alternative => hedged = true,
            Connector::List => {}
            Connector::Range if j == k => {
                values.push(value);
                end = spans[j + 1].1;
                hedged = true;
                break;
            }
            Connector::Range | Connector::Other => break,
        }
        values.push(value);
        end = spans[j + 1].1;
        j += 1;
    }
    if !hedged {
        values.truncate(1);
        end = spans[k].1;
    }
    let mut distinct: Vec<NormalAnswer> = Vec::with_capacity(values.len());
    for value in values {
        if !distinct.contains(&value) {
            distinct.push(value);
        }
    }
    Some(StatedAnswer {
        raw: fragment[spans[k].0..end].to_string(),
        values: distinct,
    })
}

/// True when the words before an anchored marker's number are only [`LEAD_IN_WORDS`] and
/// decoration, within one sentence (calculator annotations `<<…>>` are ignored).
fn lead_in_allows(lead: &str) -> bool {
    let lead = crate::problems::for_raters(lead);
    if lead.contains(['.', '!', '?', ';', '\n']) {
        return false;
    }
    lead.split_whitespace().all(|token| {
        let word: String = token
            .chars()
            .filter(|c| c.is_alphanumeric())
            .collect::<String>()
            .to_lowercase();
        word.is_empty() || LEAD_IN_WORDS.contains(&word.as_str())
    })
}

/// "between 18 and 20", "from 18 to 20": the lead ends with a range's opening word.
fn opens_range(lead: &str) -> bool {
    let last = lead
        .split_whitespace()
        .next_back()
        .map(|w| w.trim_matches(|c: char| !c.is_alphabetic()).to_lowercase());
    matches!(last.as_deref(), Some("between" | "from"))
}

/// What joins two numbers of a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connector {
    /// "20 or 18", "20 apples, or maybe 18": a hedge.
    Alternative,
    /// "18 to 20", "18–20", "between 18 and 20": a hedge.
    Range,
    /// "18, 20": a list; a hedge only if an "or" follows.
    List,
    /// Anything else: the second number is not part of the answer.
    Other,
}

/// Classify the text between two numbers; `range_opened` when the first number followed
/// "between"/"from" (then "and" closes a range).
fn connector_kind(connector: &str, range_opened: bool) -> Connector {
    if connector.trim() == "," {
        return Connector::List;
    }
    if connector.contains(['.', '!', '?', ';', ':', '=']) || connector.contains(char::is_numeric) {
        return Connector::Other;
    }
    let (mut alternative, mut range, mut units) = (false, false, 0);
    for token in connector.split_whitespace() {
        let word = token
            .trim_matches(|c: char| matches!(c, ',' | '(' | ')' | '*' | '_'))
            .to_lowercase();
        match word.as_str() {
            "" => {}
            "or" => alternative = true,
            "to" | "-" | "\u{2013}" | "\u{2014}" => range = true,
            "and" if range_opened => range = true,
            w if HEDGE_FILLER_WORDS.contains(&w) => {}
            w if w.chars().all(char::is_alphabetic) => units += 1,
            _ => return Connector::Other,
        }
    }
    if connector.trim().is_empty() || units > 2 {
        Connector::Other
    } else if alternative {
        Connector::Alternative
    } else if range || matches!(connector, "-" | "\u{2013}" | "\u{2014}") {
        Connector::Range
    } else {
        Connector::Other
    }
}

/// When the number `spans[k]` starts an expression ("9 * 2 = 18", "16 - 3 - 4 = <<…>>9"),
/// the index of the number after its last `=`; otherwise `k`.
fn expression_result(text: &str, spans: &[(usize, usize)], k: usize) -> usize {
    let mut pos = spans[k].1;
    let mut next = k + 1;
    let mut result = k;
    let mut after_equals = false;
    loop {
        let rest = &text[pos..];
        let trimmed = rest.trim_start();
        pos += rest.len() - trimmed.len();
        if next < spans.len() && spans[next].0 == pos {
            if after_equals {
                result = next;
                after_equals = false;
            }
            pos = spans[next].1;
            next += 1;
            continue;
        }
        if let Some(inner) = trimmed.strip_prefix("<<")
            && let Some(close) = inner.find(">>")
        {
            pos += 2 + close + 2;
            continue;
        }
        if trimmed.starts_with("of ") {
            pos += 2;
            continue;
        }
        let Some(c) = trimmed.chars().next() else {
            break;
        };
        match c {
            '=' => after_equals = true,
            '+' | '-' | '*' | '/' | 'x' | '\u{00D7}' | '\u{00F7}' | '\u{00B7}' | '\u{2212}'
            | '(' | ')' => {}
            _ => break,
        }
        pos += c.len_utf8();
    }
    result
}

/// Where the text ends when the model ran on into the next few-shot question: the start of
/// the first `Q:`/`Question:` line after the line holding the marker at `answer_at`.
fn run_on_cut(text: &str, answer_at: usize) -> Option<usize> {
    let mut start = answer_at + text[answer_at..].find('\n')? + 1;
    for line in text[start..].split_inclusive('\n') {
        let body = line.trim_start_matches(is_markdown_or_space);
        let question = body
            .get(..9)
            .is_some_and(|head| head.eq_ignore_ascii_case("question:"));
        if body.starts_with("Q:") || question {
            return Some(start);
        }
        start += line.len();
    }
    None
}

/// Byte spans of every number in `text` (calculator annotations `<<…>>` skipped): optional
/// currency and sign (`-`, `−`), digits with optional thousands groups, optional decimal
/// part (".25" included), then optionally a fraction ("7/2") or mixed number ("3 1/2"), and
/// a `%` or scale word ("1.5 billion", "5 dozen").
fn number_spans(text: &str) -> Vec<(usize, usize)> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let byte_at = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    let digit = |i: usize| chars.get(i).is_some_and(|&(_, c)| c.is_ascii_digit());
    let mut spans = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        if c == '<'
            && text[at..].starts_with("<<")
            && let Some(close) = text[at + 2..].find(">>")
        {
            let end = at + 2 + close + 2;
            while i < chars.len() && chars[i].0 < end {
                i += 1;
            }
            continue;
        }
        let starts_number = digit(i) || (c == '.' && digit(i + 1) && !(i > 0 && digit(i - 1)));
        if !starts_number {
            i += 1;
            continue;
        }
        let end = number_end(&chars, i);
        spans.push((byte_at(number_start(&chars, i)), byte_at(end)));
        i = end;
    }
    spans
}

/// End (exclusive, in chars) of the number whose first char is at `start`.
fn number_end(c: &[(usize, char)], start: usize) -> usize {
    let ch = |k: usize| c.get(k).map(|&(_, x)| x);
    let digit = |k: usize| ch(k).is_some_and(|x| x.is_ascii_digit());
    let digits_from = |mut k: usize| {
        while digit(k) {
            k += 1;
        }
        k
    };
    let mut i = digits_from(start);
    let int_len = i - start;
    let mut plain = true;
    if (1..=3).contains(&int_len)
        && let Some(sep) = ch(i).filter(|s| GROUP_SEPARATORS.contains(s))
    {
        while ch(i) == Some(sep) && (1..=3).all(|k| digit(i + k)) && group_ends(ch(i + 4), sep) {
            i += 4;
            plain = false;
        }
    }
    if ch(i) == Some('.') && digit(i + 1) {
        i = digits_from(i + 1);
        plain = false;
    }
    if plain && int_len > 0 {
        // Mixed number "3 1/2" (a proper fraction after one space), or a fraction "7/2".
        let num_end = digits_from(i + 1);
        let den_end = digits_from(num_end + 1);
        let text = |from: usize, to: usize| c[from..to].iter().map(|&(_, x)| x).collect::<String>();
        if ch(i) == Some(' ')
            && num_end > i + 1
            && ch(num_end) == Some('/')
            && den_end > num_end + 1
            && digits_less(&text(i + 1, num_end), &text(num_end + 1, den_end))
        {
            i = den_end;
        } else if ch(i) == Some('/') && digit(i + 1) {
            i = digits_from(i + 1);
        }
    }
    if ch(i) == Some('%') {
        return i + 1;
    }
    if matches!(ch(i), Some(' ' | '\u{00A0}')) {
        let word_end = (i + 1..=c.len())
            .find(|&k| !ch(k).is_some_and(|x| x.is_ascii_alphabetic()))
            .unwrap_or(c.len());
        let word = c[i + 1..word_end]
            .iter()
            .map(|&(_, x)| x.to_ascii_lowercase())
            .collect::<String>();
        if SCALE_WORDS.iter().any(|(w, _)| *w == word) {
            return word_end;
        }
    }
    i
}

/// A thousands group ends well: not followed by another digit, and for space-like
/// separators not glued to a word, fraction or hyphen ("12 200-kilobyte" is two numbers).
fn group_ends(next: Option<char>, sep: char) -> bool {
    match next {
        None => true,
        Some(x) if x.is_ascii_digit() => false,
        Some(x) => sep == ',' || !(x == '/' || x == '-' || x.is_alphanumeric()),
    }
}

/// Whether the digit string `a` is a smaller number than `b`.
fn digits_less(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    (a.len(), a) < (b.len(), b)
}

/// Extend a number's start backwards over an adjacent currency sign and a minus sign (`-` or
/// `−`). A minus only counts as a sign when it does not follow an operand, so "16-3" and
/// "16 - 3" yield 3, while "= -6" and "was -3" keep the sign.
fn number_start(c: &[(usize, char)], start: usize) -> usize {
    let mut s = start;
    let (mut seen_currency, mut seen_sign) = (false, false);
    while s > 0 {
        let prev = c[s - 1].1;
        if is_currency(prev) && !seen_currency {
            seen_currency = true;
        } else if matches!(prev, '-' | '\u{2212}') && !seen_sign && !follows_operand(c, s - 1) {
            seen_sign = true;
        } else {
            break;
        }
        s -= 1;
    }
    s
}

/// True when the minus at `minus` is a binary operator: right after an operand, or after
/// spaces that follow a number or closing bracket.
fn follows_operand(c: &[(usize, char)], minus: usize) -> bool {
    let Some(k) = minus.checked_sub(1) else {
        return false;
    };
    let adjacent = c[k].1;
    if adjacent.is_alphanumeric() || matches!(adjacent, ')' | ']' | '}' | '%' | '.') {
        return true;
    }
    adjacent.is_whitespace()
        && c[..k]
            .iter()
            .rev()
            .map(|&(_, x)| x)
            .find(|x| !x.is_whitespace())
            .is_some_and(|x| x.is_ascii_digit() || matches!(x, ')' | '%'))
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

/// A parsed number with its sign and scale word.
#[derive(Debug)]
struct NumberForm {
    negative: bool,
    shape: NumberShape,
    /// What a scale word after it multiplies it by ("1.5 billion"); 1 without one.
    scale: i128,
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
        let exact = exact.and_then(|(n, d)| Some((n.checked_mul(self.scale)?, d)));
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
        let base = self.unscaled_text();
        if self.scale == 1 {
            base
        } else {
            format!("{base}*{}", self.scale)
        }
    }

    /// [`NumberForm::overflow_text`] without the scale.
    fn unscaled_text(&self) -> String {
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
/// sign, currency, percent, scale word and trailing unit words; None if it is not one.
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
    let mut words: Vec<&str> = rest.split_whitespace().collect();
    let mut scale = 1;
    if let Some(&(_, factor)) = words
        .first()
        .and_then(|w| SCALE_WORDS.iter().find(|(word, _)| word == w))
    {
        scale = factor;
        words.remove(0);
    }
    let unit_like = |w: &&str| {
        w.chars().any(char::is_alphabetic)
            && w.chars()
                .all(|ch| ch.is_alphabetic() || matches!(ch, '\'' | '\u{2019}' | '-' | '/' | '.'))
    };
    if words.len() > MAX_UNIT_WORDS || !words.iter().all(unit_like) {
        return None;
    }
    Some(NumberForm {
        negative,
        shape,
        scale,
    })
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

/// Parse digits (with valid thousands groups) and an optional decimal part at `i`; None (and
/// `i` untouched) if there is no numeral or the comma grouping is invalid. Space-like
/// separators only join whole groups of three ("1 200"); otherwise the space ends the numeral
/// ("3 1/2" stays a mixed number).
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
    } else if let Some(&sep) = c.get(j).filter(|s| GROUP_SEPARATORS.contains(s))
        && (1..=3).contains(&int.len())
    {
        while c.get(j) == Some(&sep)
            && (1..=3).all(|k| digit_at(j + k))
            && group_ends(c.get(j + 4).copied(), sep)
        {
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

    // --- extraction: markers ------------------------------------------------

    fn extracted(solution: &str) -> Option<String> {
        extract_final_answer(solution)
    }

    fn outcome(solution: &str, truth: &str) -> GradeOutcome {
        grade(solution, truth).outcome
    }

    #[test]
    fn every_marker_is_read() {
        let cases = [
            ("Janet sells 9 eggs.\n#### 18", "18"),
            ("She sells 9 eggs at $2 each.\nA: 18", "18"),
            ("She sells 9 eggs at $2 each. The answer is 18.", "18"),
            ("So she makes $\\boxed{18}$ dollars.", "18"),
            ("She sells 9 eggs at $2 each.\nAnswer: 18", "18"),
            ("Work: 9*2.\n**Final Answer:** $18", "$18"),
            ("She sells 9 eggs at $2 each. Answer: 18", "18"),
            ("9 eggs.\n\\fbox{18}", "18"),
        ];
        for (solution, raw) in cases {
            let g = grade(solution, "18");
            assert_eq!(g.extracted_answer.as_deref(), Some(raw), "{solution:?}");
            assert_eq!(g.outcome, GradeOutcome::Correct, "{solution:?}");
            assert_eq!(
                outcome(solution, "19"),
                GradeOutcome::Incorrect,
                "{solution:?}"
            );
        }
    }

    #[test]
    fn markers_are_case_insensitive_where_words() {
        assert_eq!(
            extracted("blah 3 blah\nFINAL ANSWER: 12").as_deref(),
            Some("12")
        );
        assert_eq!(extracted("**Answer:** **7**").as_deref(), Some("7"));
        assert_eq!(
            extracted("So the Answer Is 250.\nCheck: 5*50=250").as_deref(),
            Some("250")
        );
        assert_eq!(
            extracted("The answer is: 4 apples").as_deref(),
            Some("4 apples")
        );
        assert_eq!(extracted("so...\n#### $1,200.").as_deref(), Some("$1,200"));
    }

    #[test]
    fn a_colon_is_a_line_start_marker_only() {
        // "USA:" and "a:" inside a line are not the few-shot answer marker.
        assert_eq!(extracted("Made in the USA: 5 crates."), None);
        assert_eq!(extracted("Plan a: 5 crates."), None);
        assert_eq!(extracted("  **A:** 5").as_deref(), Some("5"));
        assert_eq!(extracted("> A: 5").as_deref(), Some("5"));
        // A chain-of-thought "A:" opens reasoning, not an answer: its numbers are not read.
        assert_eq!(
            grade("A: Natalia sold 48/2 = 24 clips in May.", "72").outcome,
            GradeOutcome::Ungradable
        );
        let cot = "A: Natalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 clips.\nThe answer is 72.";
        assert_eq!(grade(cot, "72").outcome, GradeOutcome::Correct);
        // Nor when the working starts with a number: an equation or several sentences.
        for cot in [
            "A: 48/2 = 24 clips in May, 48+24 = 72 in all. The answer is 72.",
            "A: 48 clips in April. Half as many in May. The answer is 72.",
            "A: 24 clips in May <<48/2=24>>.\nThe answer is 72.",
        ] {
            assert_eq!(grade(cot, "72").outcome, GradeOutcome::Correct, "{cot:?}");
        }
        // An answer with chatter on its line is still an answer.
        assert_eq!(
            extracted("A: 72 clips. Hope this helps!").as_deref(),
            Some("72 clips")
        );
    }

    #[test]
    fn answer_colon_needs_to_start_its_line_or_sentence() {
        assert_eq!(extracted("The explanation of my answer: 3 steps."), None);
        assert_eq!(extracted("Panswer: 3"), None);
        assert_eq!(
            extracted("It is 18 eggs. Final answer: 18").as_deref(),
            Some("18")
        );
    }

    #[test]
    fn answer_is_must_be_words_and_not_negated() {
        assert_eq!(extracted("The answer isn't 5."), None);
        assert_eq!(extracted("The answer is not 20."), None);
        assert_eq!(extracted("My answers is 20."), None);
        assert_eq!(extracted("The answer is clear. 5 more to go."), None);
        assert_eq!(
            extracted("The answer is that she has 5 apples."),
            None,
            "a marker followed by prose states no number"
        );
        assert_eq!(
            extracted("So the answer is therefore $18.").as_deref(),
            Some("$18")
        );
    }

    #[test]
    fn hash_marker_does_not_read_markdown_headings() {
        assert_eq!(extracted("#### Step 2: add 5 and 3"), None);
        assert_eq!(extracted("#### Final answer: 8").as_deref(), Some("8"));
    }

    #[test]
    fn blank_marker_line_uses_the_next_line() {
        assert_eq!(extracted("work\n####\n  42\n").as_deref(), Some("42"));
        assert_eq!(
            extracted("work\nThe answer is:\n\n42").as_deref(),
            Some("42")
        );
    }

    #[test]
    fn prose_after_answer_colon_narrows_to_first_number() {
        assert_eq!(
            extracted("Answer: Janet makes $18 every day, since 9*2=18.").as_deref(),
            Some("$18")
        );
        assert_eq!(
            extracted("The answer is 18 because 9 * 2 = 18").as_deref(),
            Some("18")
        );
    }

    #[test]
    fn an_expression_gives_its_result() {
        assert_eq!(extracted("Answer: 9 * 2 = 18").as_deref(), Some("18"));
        assert_eq!(
            extracted("Answer: 16 - 3 - 4 = <<16-3-4=9>>9 eggs").as_deref(),
            Some("9")
        );
        assert_eq!(
            extracted("The answer is 48/2 = 24 clips.").as_deref(),
            Some("24")
        );
        assert_eq!(extracted("Answer: 20% of 50 = 10").as_deref(), Some("10"));
        assert_eq!(outcome("Answer: 9 * 2 = 18", "18"), GradeOutcome::Correct);
    }

    #[test]
    fn boxed_content() {
        assert_eq!(extracted("Thus $\\boxed{42}$.").as_deref(), Some("42"));
        assert_eq!(
            extracted("\\boxed{\\frac{3}{4}} done").as_deref(),
            Some("\\frac{3}{4}")
        );
        assert_eq!(
            extracted("\\boxed{18 \\text{ dollars}}").as_deref(),
            Some("18 \\text{ dollars}")
        );
        assert!(grade("\\boxed{\\dfrac{7}{2}}", "3.5").is_correct());
        // An unbalanced box states nothing.
        assert_eq!(extracted("\\boxed{12 and 13"), None);
    }

    // --- the issue's cases --------------------------------------------------

    #[test]
    fn fraction_after_a_colon_is_the_whole_fraction() {
        // Was graded as its last number, 2.
        let g = grade("Each gets half of 7 pizzas.\nA: 7/2", "3.5");
        assert_eq!(g.extracted_answer.as_deref(), Some("7/2"));
        assert_eq!(g.outcome, GradeOutcome::Correct);
        assert_eq!(
            outcome("Each gets half of 7 pizzas.\nA: 7/2", "2"),
            GradeOutcome::Incorrect
        );
        assert!(grade("A: 7/2 pizzas (3.5)", "7/2").is_correct());
    }

    #[test]
    fn mixed_numbers() {
        for solution in [
            "A: 3 1/2",
            "A: 3 1/2 cups",
            "The answer is 3 1/2 cups, since 7 halves.",
            "Answer: she needs 3 1/2 cups of flour.",
        ] {
            let g = grade(solution, "7/2");
            assert_eq!(g.outcome, GradeOutcome::Correct, "{solution:?}: {g:?}");
            assert!(grade(solution, "3.5").is_correct(), "{solution:?}");
            assert!(!grade(solution, "1/2").is_correct(), "{solution:?}");
        }
        assert_eq!(normalise_answer("3 1/2"), num(7, 2));
    }

    #[test]
    fn chatter_after_the_answer_line_is_ignored() {
        let solution = "She makes 9 * 2 = 18 dollars.\nA: 18\n\nI hope this helps! Let me know if you have 2 more questions, or want 5 similar problems.";
        let g = grade(solution, "18");
        assert_eq!(g.extracted_answer.as_deref(), Some("18"));
        assert_eq!(g.outcome, GradeOutcome::Correct);
        assert!(grade("#### 18\nNote: this took 3 steps and 4 minutes.", "18").is_correct());
    }

    #[test]
    fn a_run_on_few_shot_question_ends_the_solution() {
        let solution = "She sells 16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars.\nA: 18\nQ: Tom has 5 apples and eats 2. How many are left?\nA: 3";
        let g = grade(solution, "18");
        assert_eq!(g.extracted_answer.as_deref(), Some("18"));
        assert_eq!(g.outcome, GradeOutcome::Correct);
        let long =
            "The answer is 18.\n\nQuestion: A car goes 60 miles in 2 hours. How fast?\nAnswer: 30";
        assert!(grade(long, "18").is_correct());
        // Without an answer before it, a "Q:" line is just text (a restated question).
        assert!(grade("Q: How many eggs?\nShe sells 9 eggs at $2.\nA: 18", "18").is_correct());
    }

    #[test]
    fn unicode_minus() {
        let g = grade("It was 2 degrees and dropped 5.\nA: \u{2212}3", "-3");
        assert_eq!(g.extracted_answer.as_deref(), Some("\u{2212}3"));
        assert!(g.is_correct());
        assert!(grade("The answer is \u{2212}3 degrees, the coldest yet.", "-3").is_correct());
        assert!(!grade("A: \u{2212}3", "3").is_correct());
        assert_eq!(normalise_answer("\u{2212}7.5"), num(-15, 2));
    }

    #[test]
    fn thousands_separators() {
        for raw in [
            "1 200",
            "1\u{2009}200",
            "1\u{202F}200",
            "1\u{00A0}200",
            "1,200",
            "1,200.00",
            "$1,200.00",
            "1200.000",
        ] {
            assert_eq!(normalise_answer(raw), num(1200, 1), "{raw:?}");
            for marker in ["A: ", "#### ", "The answer is ", "Answer: "] {
                let solution = format!("Total cost.\n{marker}{raw}");
                assert!(grade(&solution, "1200").is_correct(), "{solution:?}");
                assert!(!grade(&solution, "200").is_correct(), "{solution:?}");
            }
            let prose = format!("Answer: she pays {raw} dollars in all, 12 * 100.");
            assert!(grade(&prose, "1200").is_correct(), "{prose:?}");
        }
        assert_eq!(normalise_answer("12 345 678"), num(12_345_678, 1));
        // Not separators: a count of things, and groups that are not of three.
        assert_eq!(
            extracted("Answer: 12 200-page books").as_deref(),
            Some("12")
        );
        assert_eq!(normalise_answer("1 20"), text("1 20"));
    }

    #[test]
    fn scale_words() {
        assert_eq!(normalise_answer("1.5 billion"), num(1_500_000_000, 1));
        assert_eq!(normalise_answer("5 dozen"), num(60, 1));
        assert_eq!(normalise_answer("2 thousand dollars"), num(2000, 1));
        assert_eq!(normalise_answer("$3.2 million"), num(3_200_000, 1));
        assert_eq!(normalise_answer("7 hundred"), num(700, 1));
        assert!(
            grade(
                "The company earned 1.5 billion.\nA: 1.5 billion",
                "1500000000"
            )
            .is_correct()
        );
        assert!(grade("Answer: she bakes 5 dozen cookies for the fair.", "60").is_correct());
        assert!(!grade("A: 5 dozen", "5").is_correct());
        assert!(grade("The answer is 5 dozen eggs.", "60").is_correct());
        // An overflowing scaled value is still compared exactly, as text.
        let huge = format!("{} billion", "9".repeat(35));
        assert!(answers_match(&huge, &huge));
        assert!(!answers_match(&huge, &"9".repeat(35)));
    }

    #[test]
    fn percentages_and_units() {
        assert!(grade("A: 50%", "50").is_correct());
        assert!(grade("The answer is 50 percent.", "50").is_correct());
        assert!(grade("Answer: 18 dollars", "18").is_correct());
        assert!(grade("#### 5 hours", "5").is_correct());
        assert!(grade("The answer is $12.50 per ticket.", "12.5").is_correct());
        assert_eq!(
            extracted("Answer: 18 dollars").as_deref(),
            Some("18 dollars")
        );
    }

    #[test]
    fn hedges_are_incorrect() {
        for solution in [
            "A: 20 or 18",
            "The answer is 20 or 18.",
            "Answer: 20 apples, or maybe 18 apples",
            "The answer is between 18 and 20.",
            "The answer is either 18 or 20.",
            "Answer: 18 (or 20 if we count the dog)",
            "Answer: 18-20",
            "Answer: 18 to 20",
            "Answer: 17, 18 or 19",
            "#### 18\nAnswer: 20",
            "The answer is 18.\nWait, that is wrong. The answer is \\boxed{20}.",
        ] {
            let g = grade(solution, "18");
            assert_eq!(g.outcome, GradeOutcome::Incorrect, "{solution:?}: {g:?}");
            assert!(g.extracted_answer.is_some(), "{solution:?}");
        }
        assert_eq!(extracted("A: 20 or 18").as_deref(), Some("20 or 18"));
        let stated = stated_answers("The answer is between 18 and 20.");
        assert_eq!(stated.len(), 1);
        assert_eq!(
            stated[0].values,
            vec![num(18, 1).unwrap(), num(20, 1).unwrap()]
        );
    }

    #[test]
    fn agreeing_answers_are_no_hedge() {
        for solution in [
            "A: 18 or 18.00",
            "Answer: 3/4 or 0.75 of the cake",
            "The answer is \\boxed{18}.",
            "#### 18\nThe answer is 18 dollars.",
            "Final Answer: The answer is $18.",
        ] {
            let truth = if solution.contains("3/4") {
                "0.75"
            } else {
                "18"
            };
            assert_eq!(
                outcome(solution, truth),
                GradeOutcome::Correct,
                "{solution:?}"
            );
        }
        // Numbers after the answer that are not offered as answers are not a hedge.
        assert!(grade("Answer: 18, since 2 or 3 of them broke.", "18").is_correct());
        assert!(grade("Answer: 18 eggs, 2 left over", "18").is_correct());
    }

    #[test]
    fn no_final_answer_is_ungradable_never_a_guess() {
        // Cut off mid-way: the last intermediate number equals the truth, but nothing is stated.
        let cut_off = "Janet sells 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = $18";
        let g = grade(cut_off, "18");
        assert_eq!(
            g,
            Grade {
                extracted_answer: None,
                outcome: GradeOutcome::Ungradable
            }
        );
        assert!(!g.is_correct());
        assert_eq!(
            outcome("so she has 5 apples left.", "5"),
            GradeOutcome::Ungradable
        );
        assert_eq!(
            outcome("I cannot solve this.", "18"),
            GradeOutcome::Ungradable
        );
        assert_eq!(outcome("", "18"), GradeOutcome::Ungradable);
        assert_eq!(outcome("#### \n", "18"), GradeOutcome::Ungradable);
        assert_eq!(outcome("The answer is", "18"), GradeOutcome::Ungradable);
    }

    #[test]
    fn signs_currency_and_subtraction_in_prose() {
        assert_eq!(
            extracted("Answer: It was -3 degrees.").as_deref(),
            Some("-3")
        );
        assert_eq!(extracted("Answer: 16-3").as_deref(), Some("16-3"));
        assert_eq!(
            extracted("Answer: she pays $1,234.50 in total.").as_deref(),
            Some("$1,234.50")
        );
        assert_eq!(
            extracted("Answer: -$5.50 a day").as_deref(),
            Some("-$5.50 a day")
        );
        assert_eq!(extracted("Answer: items 1,2,3").as_deref(), Some("1"));
        assert_eq!(extracted("Answer: .5 of it").as_deref(), Some(".5 of it"));
    }

    #[test]
    fn stated_answers_are_pieces_of_the_solution() {
        for solution in [
            "A: 20 or 18",
            "Total:\n#### $1 200.00\nthanks",
            "Answer: she pays 1\u{2009}200 dollars",
            "The answer is \u{2212}3.",
        ] {
            for answer in stated_answers(solution) {
                assert!(solution.contains(&answer.raw), "{solution:?}: {answer:?}");
            }
        }
    }

    // --- property: chatter after the final-answer line never changes a grade -----

    /// Values a solution may commit to, written in the ways real outputs write them, with
    /// the ground truth each one equals.
    const WRITTEN_VALUES: &[(&str, &str)] = &[
        ("18", "18"),
        ("$18.00", "18"),
        ("1,200", "1200"),
        ("1 200", "1200"),
        ("1\u{2009}200", "1200"),
        ("$1,200.00", "1200"),
        ("7/2", "3.5"),
        ("3 1/2", "7/2"),
        ("\u{2212}3", "-3"),
        ("-3", "-3"),
        ("50%", "50"),
        ("1.5 billion", "1500000000"),
        ("5 dozen", "60"),
        ("0.75", "3/4"),
        ("20 or 18", "18"),
    ];

    /// Final-answer lines; `{}` is the written value.
    const ANSWER_LINES: &[&str] = &[
        "#### {}",
        "A: {}",
        "The answer is {}.",
        "So the final answer is {}",
        "Answer: {}",
        "**Final Answer:** {}",
        "Therefore, the answer is $\\boxed{{}}$.",
    ];

    /// Text a model adds after its answer: numbers, "answer" said without being a marker,
    /// look-alike markers mid-line, and (flagged `true`) a run-on few-shot question with its
    /// own answer, which only counts as chatter once the solution has stated an answer.
    const CHATTER: &[(&str, bool)] = &[
        ("I hope this helps!", false),
        ("Let me know if you have 2 more questions.", false),
        ("This took 3 steps and about 45 seconds.", false),
        ("Is my answer right? I checked it 2 times.", false),
        ("The answer is clear now, 5 stars.", false),
        ("Made in the USA: 50 states.", false),
        (
            "Q: Tom has 5 apples and eats 2. How many are left?\nA: 3",
            true,
        ),
        (
            "Question: A car drives 60 miles in 2 hours. How fast does it go?\nAnswer: 30\nThe answer is 30.",
            true,
        ),
        ("Q: What is 7 * 6?\nA: 42\n#### 42", true),
        ("Note: 16 - 3 - 4 = 9 and 9 * 2 = 18.", false),
        ("Explanation of my answer: we used 12 boxes.", false),
        ("(Another way: 1,000 - 800 = 200.)", false),
        ("The answer isn't 7, it cannot be.", false),
        ("The answer is not 7 either.", false),
        ("", false),
        ("    ", false),
        ("Thanks! 1/2 of the work was checking.", false),
    ];

    /// Random reasoning lines before the answer: numbers but no marker.
    fn reasoning(rng: &mut impl rand::Rng) -> String {
        let lines = rng.random_range(0..4);
        (0..lines)
            .map(|_| {
                let (a, b) = (rng.random_range(1..500), rng.random_range(1..50));
                match rng.random_range(0..4) {
                    0 => format!("She buys {a} apples at ${b} each, {a} * {b} = {}.", a * b),
                    1 => format!("Then {a} - {b} = <<{a}-{b}={}>>{} remain.", a - b, a - b),
                    2 => format!("That is {b}% of {a}."),
                    _ => format!("Half of {a} is {a}/2."),
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A generated solution: reasoning, a final-answer line (or none: cut off), and the
    /// truth it is graded against (equal to its value or not).
    fn generated_solution(rng: &mut impl rand::Rng) -> (String, String, bool) {
        let (written, equal_truth) = WRITTEN_VALUES[rng.random_range(0..WRITTEN_VALUES.len())];
        let line = ANSWER_LINES[rng.random_range(0..ANSWER_LINES.len())].replace("{}", written);
        let mut solution = reasoning(rng);
        let answered = rng.random_bool(0.9);
        if answered {
            if !solution.is_empty() {
                solution.push('\n');
            }
            solution.push_str(&line);
        }
        let truth = if rng.random_bool(0.5) {
            equal_truth.to_string()
        } else {
            rng.random_range(0..2000).to_string()
        };
        (solution, truth, answered)
    }

    /// One to three pieces of chatter; run-on questions only when `answered`.
    fn chatter(rng: &mut impl rand::Rng, answered: bool) -> String {
        let allowed: Vec<&str> = CHATTER
            .iter()
            .filter(|(_, run_on)| answered || !run_on)
            .map(|(text, _)| *text)
            .collect();
        let pieces = rng.random_range(1..4);
        (0..pieces)
            .map(|_| allowed[rng.random_range(0..allowed.len())])
            .collect::<Vec<_>>()
            .join(if rng.random_bool(0.5) { "\n" } else { "\n\n" })
    }

    /// The grade a last-number guesser would give: what the property must be able to catch.
    fn last_number_guess(solution: &str, truth: &str) -> bool {
        number_spans(solution)
            .last()
            .is_some_and(|&(s, e)| answers_match(&solution[s..e], truth))
    }

    #[test]
    fn chatter_after_the_final_answer_line_never_changes_the_grade() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EED_0018);
        let (mut checked, mut guesser_fooled) = (0usize, 0usize);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20_000 {
            let (solution, truth, answered) = generated_solution(&mut rng);
            let before = grade(&solution, &truth);
            seen.insert(before.outcome);
            let with_chatter = format!("{solution}\n{}", chatter(&mut rng, answered));
            let after = grade(&with_chatter, &truth);
            assert_eq!(
                before, after,
                "chatter changed the grade\n--- solution ---\n{solution}\n--- with chatter ---\n{with_chatter}\n--- truth {truth}"
            );
            checked += 1;
            if last_number_guess(&solution, &truth) != last_number_guess(&with_chatter, &truth) {
                guesser_fooled += 1;
            }
        }
        println!("{checked} solutions; chatter changed a last-number guess on {guesser_fooled}");
        // The cases are hard enough that a last-number grader fails this property often, and
        // every outcome occurs.
        assert!(
            guesser_fooled > checked / 10,
            "{guesser_fooled} of {checked}"
        );
        assert_eq!(seen.len(), 3, "{seen:?}");
    }

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
        for (n, (_question, answer)) in records.iter().enumerate() {
            let truth = gsm8k_final_answer(answer)
                .unwrap_or_else(|| panic!("line {}: no #### answer", n + 1));
            let g = grade(answer, &truth);
            assert_eq!(
                g.outcome,
                GradeOutcome::Correct,
                "line {}: {g:?} vs truth {truth:?}",
                n + 1
            );
        }
    }

    #[test]
    fn gsm8k_reasoning_without_its_answer_line_is_ungradable() {
        // The reasoning ends on the answer's number in nearly every solution; a grader that
        // guessed from the last number would call these correct. None states a final answer.
        let records = load_gsm8k(&gsm8k_test_path());
        let mut guessable = 0usize;
        for (n, (_question, answer)) in records.iter().enumerate() {
            let truth = gsm8k_final_answer(answer)
                .unwrap_or_else(|| panic!("line {}: no #### answer", n + 1));
            let marker = answer.rfind(GSM8K_MARKER).unwrap_or(answer.len());
            let reasoning = &answer[..marker];
            let g = grade(reasoning, &truth);
            assert_eq!(
                g,
                Grade {
                    extracted_answer: None,
                    outcome: GradeOutcome::Ungradable
                },
                "line {}",
                n + 1
            );
            if number_spans(reasoning)
                .last()
                .is_some_and(|&(s, e)| answers_match(&reasoning[s..e], &truth))
            {
                guessable += 1;
            }
        }
        println!(
            "GSM8K test reasoning ending on the answer's number: {guessable}/{}",
            records.len()
        );
        assert!(guessable * 10 > records.len() * 9, "{guessable}");
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
            assert_eq!(
                g.outcome,
                GradeOutcome::Incorrect,
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
            assert!(g.is_correct());
            // Truth written without thousands commas still matches.
            assert!(grade(&answer, bare).is_correct());
            // The reasoning alone states no final answer.
            let marker = answer.rfind(GSM8K_MARKER).unwrap_or(answer.len());
            let reasoning_grade = grade(&answer[..marker], truth);
            assert_eq!(reasoning_grade.outcome, GradeOutcome::Ungradable);
            assert_eq!(grade(&answer, "0").outcome, GradeOutcome::Incorrect);
        }
    }
}

//! `legibility grade FILE.jsonl`: grade a researcher's own model outputs, one JSON line in
//! (`{"solution": "…", "answer": "…"}`), one JSON line out
//! (`{"extracted": …, "outcome": "correct"|"incorrect"|"ungradable", …}`), so they can check
//! the grader on their model before a study. The whole input is checked first: a bad line
//! refuses it with every bad line named, and nothing is printed.

use std::fmt;
use std::io::{BufRead, Write};

use serde::Serialize;
use serde_json::Value;

use super::{GradeOutcome, grade, gsm8k_final_answer, stated_answers};
use crate::problems::LineError;

/// How many bad lines a refusal lists before summarising the rest.
const MAX_LISTED_ERRORS: usize = 50;

/// One graded input line, as printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GradedLine {
    /// The final answer as the solution wrote it; null when it stated none.
    pub extracted: Option<String>,
    /// The grader's outcome.
    pub outcome: GradeOutcome,
    /// Every final answer the solution stated, in order: more than one value means a hedge
    /// (graded incorrect).
    pub answers: Vec<String>,
    /// 1-based line of the input (blank lines are skipped, so outputs stay matched to inputs).
    pub line: usize,
}

/// Counts of each outcome, for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GradeTally {
    /// Solutions graded correct.
    pub correct: usize,
    /// Solutions graded incorrect (hedges included).
    pub incorrect: usize,
    /// Solutions stating no final answer.
    pub ungradable: usize,
}

impl fmt::Display for GradeTally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.correct + self.incorrect + self.ungradable;
        write!(
            f,
            "graded {total} solution{}: {} correct, {} incorrect, {} ungradable (no final answer)",
            if total == 1 { "" } else { "s" },
            self.correct,
            self.incorrect,
            self.ungradable
        )
    }
}

/// Why a grading file was refused; nothing was printed.
#[derive(Debug, thiserror::Error)]
pub enum GradeFileError {
    /// The input could not be read.
    #[error("reading the input: {0}")]
    Read(#[from] std::io::Error),
    /// Some lines are not `{"solution": "…", "answer": "…"}`.
    #[error("{}", bad_lines_text(.0))]
    BadLines(Vec<LineError>),
}

fn bad_lines_text(errors: &[LineError]) -> String {
    let n = errors.len();
    let mut text = format!(
        "nothing graded: {n} bad line{} (each line must be {{\"solution\": \"…\", \"answer\": \"…\"}})",
        if n == 1 { "" } else { "s" }
    );
    for error in errors.iter().take(MAX_LISTED_ERRORS) {
        text.push_str(&format!("\n  line {}: {}", error.line, error.reason));
    }
    if n > MAX_LISTED_ERRORS {
        text.push_str(&format!("\n  … and {} more", n - MAX_LISTED_ERRORS));
    }
    text
}

/// Reads one input line: the solution and the ground truth. `answer` may be the bare answer
/// ("18", or a JSON number) or a whole GSM8K answer field (then its `#### N` is the truth).
fn parse_line(line: &str) -> Result<(String, String), String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let Value::Object(fields) = value else {
        return Err("not a JSON object".into());
    };
    let solution = match fields.get("solution") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("field \"solution\" must be a string".into()),
        None => return Err("missing field \"solution\"".into()),
    };
    let answer = match fields.get("answer") {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err("field \"answer\" must be a string or a number".into()),
        None => return Err("missing field \"answer\"".into()),
    };
    let truth = if answer.contains("####") {
        gsm8k_final_answer(&answer)
            .ok_or("field \"answer\" has \"####\" with no final answer after it")?
    } else {
        answer
    };
    if truth.is_empty() {
        return Err("field \"answer\" is empty".into());
    }
    Ok((solution, truth))
}

/// Grades every line of `input` and, only if all lines are good, writes one JSON line per
/// graded line to `output`. Blank lines are skipped. Returns the outcome counts.
pub fn grade_jsonl(
    input: impl BufRead,
    output: &mut impl Write,
) -> Result<GradeTally, GradeFileError> {
    let mut graded = Vec::new();
    let mut errors = Vec::new();
    for (index, bytes) in input.split(b'\n').enumerate() {
        let line = index + 1;
        let bytes = bytes?;
        let Ok(text) = std::str::from_utf8(&bytes) else {
            errors.push(LineError {
                line,
                reason: "not UTF-8 text".into(),
            });
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match parse_line(text) {
            Ok((solution, truth)) => {
                let g = grade(&solution, &truth);
                graded.push(GradedLine {
                    extracted: g.extracted_answer,
                    outcome: g.outcome,
                    answers: stated_answers(&solution)
                        .into_iter()
                        .map(|a| a.raw)
                        .collect(),
                    line,
                });
            }
            Err(reason) => errors.push(LineError { line, reason }),
        }
    }
    if !errors.is_empty() {
        return Err(GradeFileError::BadLines(errors));
    }
    let mut tally = GradeTally::default();
    for line in &graded {
        match line.outcome {
            GradeOutcome::Correct => tally.correct += 1,
            GradeOutcome::Incorrect => tally.incorrect += 1,
            GradeOutcome::Ungradable => tally.ungradable += 1,
        }
        serde_json::to_writer(&mut *output, line).map_err(std::io::Error::from)?;
        output.write_all(b"\n")?;
    }
    output.flush()?;
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str) -> Result<(Vec<Value>, GradeTally), GradeFileError> {
        let mut out = Vec::new();
        let tally = grade_jsonl(input.as_bytes(), &mut out)?;
        let text = String::from_utf8(out).expect("UTF-8 output");
        let lines = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
            .collect();
        Ok((lines, tally))
    }

    #[test]
    fn one_json_line_per_input_line() {
        let input = [
            r#"{"solution": "She sells 9 eggs at $2.\nA: 18", "answer": "18"}"#,
            "",
            r#"{"solution": "The answer is 20 or 18.", "answer": 18}"#,
            r#"{"solution": "She makes 9 * 2 = $18", "answer": "18"}"#,
            &serde_json::json!({"solution": "#### 7/2", "answer": "Half of 7.\n#### 3.5"})
                .to_string(),
        ]
        .join("\n");
        let (lines, tally) = run(&input).unwrap();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[0],
            serde_json::json!({"extracted": "18", "outcome": "correct", "answers": ["18"], "line": 1})
        );
        assert_eq!(lines[1]["outcome"], "incorrect");
        assert_eq!(lines[1]["extracted"], "20 or 18");
        assert_eq!(lines[1]["line"], 3);
        assert_eq!(
            lines[2],
            serde_json::json!({"extracted": null, "outcome": "ungradable", "answers": [], "line": 4})
        );
        assert_eq!(lines[3]["outcome"], "correct");
        assert_eq!(
            tally,
            GradeTally {
                correct: 2,
                incorrect: 1,
                ungradable: 1
            }
        );
        assert_eq!(
            tally.to_string(),
            "graded 4 solutions: 2 correct, 1 incorrect, 1 ungradable (no final answer)"
        );
    }

    #[test]
    fn bad_lines_are_named_and_nothing_is_printed() {
        let input = [
            r#"{"solution": "A: 1", "answer": "1"}"#,
            "not json at all",
            r#"{"solution": "A: 1"}"#,
            r#"{"answer": "1"}"#,
            r#"["solution", "answer"]"#,
            r#"{"solution": 5, "answer": "1"}"#,
            r#"{"solution": "A: 1", "answer": "  "}"#,
            &serde_json::json!({"solution": "A: 1", "answer": "work\n####"}).to_string(),
        ]
        .join("\n");
        let mut out = Vec::new();
        let err = grade_jsonl(input.as_bytes(), &mut out).unwrap_err();
        assert!(out.is_empty(), "printed before refusing");
        let text = err.to_string();
        for expected in [
            "nothing graded: 7 bad lines",
            "line 2: not JSON",
            "line 3: missing field \"answer\"",
            "line 4: missing field \"solution\"",
            "line 5: not a JSON object",
            "line 6: field \"solution\" must be a string",
            "line 7: field \"answer\" is empty",
            "line 8: field \"answer\" has \"####\" with no final answer after it",
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
        assert!(!text.contains("line 1:"), "{text}");
    }

    #[test]
    fn invalid_utf8_names_its_line() {
        let mut input = br#"{"solution": "A: 1", "answer": "1"}"#.to_vec();
        input.extend_from_slice(b"\n{\"solution\": \"\xff\", \"answer\": \"1\"}\n");
        let err = grade_jsonl(&input[..], &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("line 2: not UTF-8 text"), "{err}");
    }

    #[test]
    fn empty_input_grades_nothing() {
        let (lines, tally) = run("\n\n").unwrap();
        assert!(lines.is_empty());
        assert_eq!(tally, GradeTally::default());
    }
}

//! Problems and solutions as they arrive in files: GSM8K JSONL problems and solutions JSONL from
//! any external model. Parsing validates every line and refuses the whole file when any line is
//! bad, naming each bad line, so an import is all or nothing.

use std::fmt;

use serde::Deserialize;
use uuid::Uuid;

use crate::domain::ProverRole;
use crate::grading;

/// How many line errors a rejection lists before summarising the rest.
const MAX_LISTED_ERRORS: usize = 50;

/// One bad line of an import file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    /// 1-based line number in the file.
    pub line: usize,
    /// What is wrong with it, in words a researcher can act on.
    pub reason: String,
}

/// An import refused whole: nothing was written. Lists every bad line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
pub struct ImportRejected {
    /// The bad lines, in file order.
    pub errors: Vec<LineError>,
}

impl ImportRejected {
    /// A rejection for a problem with the file as a whole (empty, not UTF-8, …).
    pub fn whole_file(reason: impl Into<String>) -> Self {
        ImportRejected {
            errors: vec![LineError {
                line: 0,
                reason: reason.into(),
            }],
        }
    }
}

impl fmt::Display for ImportRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "import refused, nothing was imported: {n} bad line{}",
            if n == 1 { "" } else { "s" }
        )?;
        for error in self.errors.iter().take(MAX_LISTED_ERRORS) {
            if error.line == 0 {
                write!(f, "\n  file: {}", error.reason)?;
            } else {
                write!(f, "\n  line {}: {}", error.line, error.reason)?;
            }
        }
        if n > MAX_LISTED_ERRORS {
            write!(f, "\n  … and {} more", n - MAX_LISTED_ERRORS)?;
        }
        Ok(())
    }
}

/// A GSM8K problem ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProblemRecord {
    /// 1-based line in the source file; kept as the problem's position in its set.
    pub line: usize,
    /// The question shown to raters.
    pub question: String,
    /// The bare final answer after `####`; never shown to raters.
    pub ground_truth: String,
    /// GSM8K's worked solution; never shown to raters.
    pub reference_solution: String,
}

/// Where a solution line says its problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemRef {
    /// A problem id as shown on the admin pages and in exports.
    Id(Uuid),
    /// The exact question text (whitespace at the ends ignored).
    Question(String),
}

/// A model-written solution ready to be matched to its problem and graded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolutionRecord {
    /// 1-based line in the source file.
    pub line: usize,
    /// Which problem it solves.
    pub problem: ProblemRef,
    /// The solution text raters will judge.
    pub text: String,
    /// Label of the prover checkpoint that wrote it (created if new).
    pub checkpoint_label: String,
    /// Training round of that checkpoint (0 = the initial prover).
    pub round: i64,
    /// Which role the prover played.
    pub role: ProverRole,
}

/// A solution as raters see it: GSM8K calculator annotations (`<<48/2=24>>`) are model-internal
/// markup, noisy to read and in effect a calculator's output, so they are removed
/// (`48/2=<<48/2=24>>24` shows as `48/2=24`). An unclosed `<<` is left as it is.
pub fn for_raters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<<") {
        match rest[start + 2..].find(">>") {
            Some(len) => {
                out.push_str(&rest[..start]);
                rest = &rest[start + 2 + len + 2..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

#[derive(Deserialize)]
struct Gsm8kLine {
    question: Option<String>,
    answer: Option<String>,
}

#[derive(Deserialize)]
struct SolutionLine {
    problem_id: Option<String>,
    question: Option<String>,
    solution: Option<String>,
    checkpoint: Option<String>,
    round: Option<serde_json::Value>,
    role: Option<String>,
}

/// Splits a file into numbered non-blank lines, refusing non-UTF-8 and empty files.
fn numbered_lines(bytes: &[u8]) -> Result<Vec<(usize, &str)>, ImportRejected> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ImportRejected::whole_file(format!("not UTF-8 text (byte {})", e.valid_up_to()))
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty())
        .collect();
    if lines.is_empty() {
        return Err(ImportRejected::whole_file("the file has no lines"));
    }
    Ok(lines)
}

/// Parses every line with `parse`, collecting all line errors instead of stopping at the first.
fn parse_all<T>(
    bytes: &[u8],
    parse: impl Fn(usize, &str) -> Result<T, String>,
) -> Result<Vec<T>, ImportRejected> {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for (line, text) in numbered_lines(bytes)? {
        match parse(line, text) {
            Ok(record) => records.push(record),
            Err(reason) => errors.push(LineError { line, reason }),
        }
    }
    if errors.is_empty() {
        Ok(records)
    } else {
        Err(ImportRejected { errors })
    }
}

fn json_error(e: serde_json::Error) -> String {
    format!("invalid JSON: {e}")
}

fn required(field: Option<String>, name: &str) -> Result<String, String> {
    match field.map(|v| v.trim().to_string()) {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err(format!("field \"{name}\" is empty")),
        None => Err(format!("missing field \"{name}\"")),
    }
}

/// Parses GSM8K JSONL (`{"question": …, "answer": "… #### N"}` per line).
pub fn parse_gsm8k_problems(bytes: &[u8]) -> Result<Vec<ProblemRecord>, ImportRejected> {
    parse_all(bytes, |line, text| {
        let parsed: Gsm8kLine = serde_json::from_str(text).map_err(json_error)?;
        let question = required(parsed.question, "question")?;
        let answer = required(parsed.answer, "answer")?;
        let ground_truth = grading::gsm8k_final_answer(&answer)
            .ok_or_else(|| "field \"answer\" has no final-answer line \"#### N\"".to_string())?;
        Ok(ProblemRecord {
            line,
            question,
            ground_truth,
            reference_solution: answer,
        })
    })
}

/// Parses solutions JSONL: per line `solution`, `checkpoint`, `round`, `role` and either
/// `problem_id` or `question`.
pub fn parse_solutions(bytes: &[u8]) -> Result<Vec<SolutionRecord>, ImportRejected> {
    parse_all(bytes, |line, text| {
        let parsed: SolutionLine = serde_json::from_str(text).map_err(json_error)?;
        let problem = match (parsed.problem_id, parsed.question) {
            (Some(id), _) => ProblemRef::Id(
                Uuid::parse_str(id.trim())
                    .map_err(|_| format!("\"problem_id\" {id:?} is not a UUID"))?,
            ),
            (None, Some(q)) if !q.trim().is_empty() => ProblemRef::Question(q.trim().to_string()),
            _ => return Err("needs \"problem_id\" or \"question\" to name its problem".to_string()),
        };
        let text = required(parsed.solution, "solution")?;
        let checkpoint_label = required(parsed.checkpoint, "checkpoint")?;
        let round = match parsed.round {
            None => return Err("missing field \"round\"".to_string()),
            Some(serde_json::Value::Number(n)) => n
                .as_i64()
                .filter(|r| *r >= 0)
                .ok_or_else(|| format!("\"round\" must be a whole number ≥ 0, got {n}"))?,
            Some(other) => {
                return Err(format!("\"round\" must be a whole number ≥ 0, got {other}"));
            }
        };
        let role: ProverRole = required(parsed.role, "role")?.parse()?;
        Ok(SolutionRecord {
            line,
            problem,
            text,
            checkpoint_label,
            round,
            role,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raters_see_solutions_without_calculator_annotations() {
        assert_eq!(
            for_raters("She has 48/2=<<48/2=24>>24 clips."),
            "She has 48/2=24 clips."
        );
        assert_eq!(
            for_raters("a <<1+1=2>>2 and <<2*3=6>>6\n#### 6"),
            "a 2 and 6\n#### 6"
        );
        assert_eq!(for_raters("x << y"), "x << y");
        assert_eq!(for_raters("no markup"), "no markup");
    }

    #[test]
    fn gsm8k_lines_parse() {
        let file = b"{\"question\": \"Tom has 3 apples and buys 2. How many?\", \"answer\": \"3+2=<<3+2=5>>5\\n#### 5\"}\n\n";
        let records = parse_gsm8k_problems(file).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].ground_truth, "5");
        assert_eq!(records[0].line, 1);
    }

    #[test]
    fn any_bad_line_refuses_the_file_and_names_every_bad_line() {
        let file = concat!(
            "{\"question\": \"q1\", \"answer\": \"#### 1\"}\n",
            "{\"question\": \"q2\", \"answer\": \"no final line\"}\n",
            "not json\n",
            "{\"answer\": \"#### 4\"}\n",
        );
        let err = parse_gsm8k_problems(file.as_bytes()).unwrap_err();
        let lines: Vec<usize> = err.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4]);
        let message = err.to_string();
        assert!(
            message.contains("line 2: field \"answer\" has no final-answer line"),
            "{message}"
        );
        assert!(message.contains("line 3: invalid JSON"), "{message}");
        assert!(
            message.contains("line 4: missing field \"question\""),
            "{message}"
        );
    }

    #[test]
    fn empty_and_binary_files_are_refused() {
        assert!(
            parse_gsm8k_problems(b"\n  \n")
                .unwrap_err()
                .to_string()
                .contains("no lines")
        );
        assert!(
            parse_gsm8k_problems(&[0xff, 0xfe, 0x00])
                .unwrap_err()
                .to_string()
                .contains("not UTF-8")
        );
    }

    #[test]
    fn solution_lines_validate_each_field() {
        let file = concat!(
            "{\"question\": \"q\", \"solution\": \"s\\n#### 5\", \"checkpoint\": \"c\", \"round\": 0, \"role\": \"helpful\"}\n",
            "{\"problem_id\": \"nope\", \"solution\": \"s\", \"checkpoint\": \"c\", \"round\": 0, \"role\": \"helpful\"}\n",
            "{\"question\": \"q\", \"solution\": \"s\", \"checkpoint\": \"c\", \"round\": -1, \"role\": \"helpful\"}\n",
            "{\"question\": \"q\", \"solution\": \"s\", \"checkpoint\": \"c\", \"round\": 1, \"role\": \"devious\"}\n",
            "{\"solution\": \"s\", \"checkpoint\": \"c\", \"round\": 1, \"role\": \"sneaky\"}\n",
        );
        let err = parse_solutions(file.as_bytes()).unwrap_err();
        let reasons: Vec<(usize, &str)> = err
            .errors
            .iter()
            .map(|e| (e.line, e.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert!(reasons[0].1.contains("not a UUID"));
        assert!(reasons[1].1.contains("round"));
        assert!(reasons[2].1.contains("devious"));
        assert!(reasons[3].1.contains("problem_id"));
        let ok = parse_solutions(file.lines().next().unwrap().as_bytes()).unwrap();
        assert_eq!(ok[0].role, ProverRole::Helpful);
        assert_eq!(ok[0].problem, ProblemRef::Question("q".into()));
    }
}

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
        if let [only] = self.errors.as_slice()
            && only.line == 0
        {
            // A problem with the file as a whole (or its target), not with a line.
            return write!(f, "import refused, nothing was imported: {}", only.reason);
        }
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

/// Reads an import file as it arrives, chunk by chunk, so an upload is parsed while it streams
/// in and only its records (never the raw file) are held: every complete line is parsed at
/// once, only a partial last line is buffered. The rules are those of a whole file: UTF-8
/// (an optional byte-order mark is dropped), blank lines skipped, lines numbered from 1, and
/// every bad line collected so the refusal names them all.
pub struct ImportReader<T> {
    parse: fn(usize, &str) -> Result<T, String>,
    /// Bytes of the line not yet ended by a newline.
    partial: Vec<u8>,
    /// Lines completed so far (blank ones included, for the numbering).
    lines: usize,
    /// File offset of `partial`'s first byte, for the UTF-8 error's position.
    offset: usize,
    records: Vec<T>,
    errors: Vec<LineError>,
    /// A problem with the file as a whole; once set, the rest is not parsed.
    refused: Option<ImportRejected>,
}

impl ImportReader<ProblemRecord> {
    /// A reader of GSM8K JSONL problems.
    pub fn problems() -> Self {
        ImportReader::new(problem_line)
    }
}

impl ImportReader<SolutionRecord> {
    /// A reader of solutions JSONL.
    pub fn solutions() -> Self {
        ImportReader::new(solution_line)
    }
}

impl<T> ImportReader<T> {
    fn new(parse: fn(usize, &str) -> Result<T, String>) -> Self {
        ImportReader {
            parse,
            partial: Vec::new(),
            lines: 0,
            offset: 0,
            records: Vec::new(),
            errors: Vec::new(),
            refused: None,
        }
    }

    /// Feeds the next piece of the file; pieces may split lines and characters anywhere.
    pub fn push(&mut self, mut chunk: &[u8]) {
        while self.refused.is_none() {
            let Some(end) = chunk.iter().position(|b| *b == b'\n') else {
                self.partial.extend_from_slice(chunk);
                return;
            };
            self.partial.extend_from_slice(&chunk[..end]);
            chunk = &chunk[end + 1..];
            self.end_line();
            self.offset += 1;
        }
    }

    /// Reads `source` to its end in pieces (a file on disk, never loaded whole) and finishes
    /// like [`ImportReader::finish_parsed`]. The outer error is a read failure, the inner one a
    /// problem with the file as a whole.
    pub fn read_all(
        mut self,
        mut source: impl std::io::Read,
    ) -> std::io::Result<Result<ParsedImport<T>, ImportRejected>> {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match source.read(&mut buffer) {
                Ok(0) => return Ok(self.finish_parsed()),
                Ok(n) => self.push(&buffer[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Parses the last line and returns every record, or the refusal naming every bad line.
    pub fn finish(self) -> Result<Vec<T>, ImportRejected> {
        self.finish_parsed()?.into_records()
    }

    /// Parses the last line and returns the good records with the bad lines found so far, so
    /// that the store can add what only the database can tell (an unknown problem, …) and the
    /// refusal names every bad line at once. A problem with the file as a whole (not UTF-8, no
    /// lines) is an error at once.
    pub fn finish_parsed(mut self) -> Result<ParsedImport<T>, ImportRejected> {
        if self.refused.is_none() && !self.partial.is_empty() {
            self.end_line();
        }
        if let Some(refused) = self.refused {
            return Err(refused);
        }
        if self.records.is_empty() && self.errors.is_empty() {
            return Err(ImportRejected::whole_file("the file has no lines"));
        }
        Ok(ParsedImport {
            records: self.records,
            errors: self.errors,
        })
    }
}

/// A file parsed line by line: its good records and its bad lines.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedImport<T> {
    /// Records of the lines that parsed.
    pub records: Vec<T>,
    /// Lines that did not, in file order.
    pub errors: Vec<LineError>,
}

impl<T> ParsedImport<T> {
    /// The records, or the refusal naming every bad line when there is one.
    pub fn into_records(self) -> Result<Vec<T>, ImportRejected> {
        if self.errors.is_empty() {
            Ok(self.records)
        } else {
            Err(ImportRejected {
                errors: self.errors,
            })
        }
    }
}

impl<T> ImportReader<T> {
    fn end_line(&mut self) {
        let bytes = std::mem::take(&mut self.partial);
        self.lines += 1;
        let text = match std::str::from_utf8(&bytes) {
            Ok(text) => text,
            Err(e) => {
                self.refused = Some(ImportRejected::whole_file(format!(
                    "not UTF-8 text (byte {})",
                    self.offset + e.valid_up_to()
                )));
                return;
            }
        };
        self.offset += bytes.len();
        let text = if self.lines == 1 {
            text.strip_prefix('\u{feff}').unwrap_or(text)
        } else {
            text
        };
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        match (self.parse)(self.lines, text) {
            Ok(record) => self.records.push(record),
            Err(reason) => self.errors.push(LineError {
                line: self.lines,
                reason,
            }),
        }
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
    let mut reader = ImportReader::problems();
    reader.push(bytes);
    reader.finish()
}

/// Parses solutions JSONL: per line `solution`, `checkpoint`, `round`, `role` and either
/// `problem_id` or `question`.
pub fn parse_solutions(bytes: &[u8]) -> Result<Vec<SolutionRecord>, ImportRejected> {
    let mut reader = ImportReader::solutions();
    reader.push(bytes);
    reader.finish()
}

fn problem_line(line: usize, text: &str) -> Result<ProblemRecord, String> {
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
}

fn solution_line(line: usize, text: &str) -> Result<SolutionRecord, String> {
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
    fn a_file_read_in_pieces_parses_as_the_whole() {
        let file = "\u{feff}{\"question\": \"Ünïcödé £5?\", \"answer\": \"x\\n#### 5\"}\r\n\n  \n\
                    {\"question\": \"q\"}\n\
                    {\"question\": \"中文题目\", \"answer\": \"#### 7\"}";
        let bytes = file.as_bytes();
        let whole = parse_gsm8k_problems(bytes);
        assert_eq!(whole.as_ref().unwrap_err().errors[0].line, 4);
        // Every split point, and one byte at a time (splitting the BOM and every character).
        for at in 0..=bytes.len() {
            let mut reader = ImportReader::problems();
            reader.push(&bytes[..at]);
            reader.push(&bytes[at..]);
            assert_eq!(reader.finish(), whole, "split at {at}");
        }
        let mut reader = ImportReader::problems();
        for byte in bytes {
            reader.push(std::slice::from_ref(byte));
        }
        assert_eq!(reader.finish(), whole);
        // A bad byte is reported at its offset in the file, however the file was cut.
        let mut bad = bytes.to_vec();
        bad[66] = 0xff;
        let message = parse_gsm8k_problems(&bad).unwrap_err().to_string();
        assert!(message.contains("not UTF-8 text (byte 66)"), "{message}");
        let mut reader = ImportReader::problems();
        reader.push(&bad[..67]);
        reader.push(&bad[67..]);
        assert_eq!(reader.finish().unwrap_err().to_string(), message);
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

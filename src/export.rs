//! The tidy per-attempt table in its three download formats (CSV, JSON Lines, Parquet), and the
//! quality flags each row carries.
//!
//! One column list ([`COLUMNS`]) and one row type ([`AttemptRow`]) feed all three, so the formats
//! cannot drift apart. Encoders work page by page: the web layer streams a study's judgements
//! from the database in pages and sends each encoded page as soon as it is ready, so a download
//! of a million attempts never holds the whole table in memory.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use uuid::Uuid;

use crate::judging;
use crate::labels::CHANCE_ALPHA;
use crate::metrics::is_chance_level;
use crate::reports::Attempt;
pub use crate::store::reports::AttemptRow;

/// The tidy table's columns, in order (README documents each).
pub const COLUMNS: [&str; 33] = [
    "rater_id",
    "rater_name",
    "solution_id",
    "problem_id",
    "checkpoint",
    "round",
    "role",
    "is_correct",
    "verdict",
    "served_at",
    "deadline",
    "submitted_at",
    "server_elapsed_ms",
    "client_elapsed_ms",
    "first_wrong_step",
    "timing",
    "times_shown",
    "attempt_flags",
    "participant_id",
    "rater_returned",
    "rater_background",
    "confidence",
    "probability",
    "stated_probability",
    "justification",
    "hidden_count",
    "hidden_ms",
    "blur_count",
    "copy_count",
    "paste_count",
    "integrity_flags",
    "time_limit_ms",
    "position",
];

/// Why a row deserves a second look; a row may carry several, joined by `;`. How the attempt
/// ended in time is not a flag but its own column (`timing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// The rater's verdicts in this study cannot be told from guessing (the report's test).
    ChanceLevelRater,
    /// Something arrived from the page, but without a time of its own.
    NoClientTime,
    /// The page's time differs from the server's real time (serving to arrival) by more than
    /// [`judging::CLIENT_TOLERANCE_MS`]: a slow network or a tampered page.
    ImplausibleClientTime,
    /// The item was shown more than once while it ran (a reload, a new tab, the link opened
    /// again): its time includes the interruption.
    Resumed,
}

impl Flag {
    /// The flag's name in the downloads.
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::ChanceLevelRater => "chance_level_rater",
            Flag::NoClientTime => "no_client_time",
            Flag::ImplausibleClientTime => "implausible_client_time",
            Flag::Resumed => "resumed",
        }
    }
}

/// The flags of one attempt; `chance_level_rater` says whether its rater failed the chance test.
pub fn flags_of(row: &AttemptRow, chance_level_rater: bool) -> Vec<Flag> {
    let mut flags = Vec::new();
    if chance_level_rater {
        flags.push(Flag::ChanceLevelRater);
    }
    if let Some(arrived) = row.submitted_at {
        match row.client_elapsed_ms {
            None => flags.push(Flag::NoClientTime),
            Some(client) if judging::client_time_implausible(client, row.served_at, arrived) => {
                flags.push(Flag::ImplausibleClientTime)
            }
            Some(_) => {}
        }
    }
    if row.times_shown > 1 {
        flags.push(Flag::Resumed);
    }
    flags
}

/// One rater's tally over a study: verdicts that matched ground truth, and answered items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaterTally {
    /// The rater.
    pub rater_id: Uuid,
    /// Answered judgements that agree with ground truth.
    pub right: u64,
    /// Answered judgements (timeouts left out).
    pub answered: u64,
}

/// Per rater, the tallies of the report's attempts (what [`crate::store::Store::rater_tallies`]
/// sums up in the database), sorted by rater.
pub fn rater_tallies(attempts: &[Attempt]) -> Vec<RaterTally> {
    let mut tallies: BTreeMap<Uuid, RaterTally> = BTreeMap::new();
    for attempt in attempts {
        let tally = tallies.entry(attempt.rater_id).or_insert(RaterTally {
            rater_id: attempt.rater_id,
            right: 0,
            answered: 0,
        });
        if let Some(right) = attempt.right() {
            tally.answered += 1;
            tally.right += u64::from(right);
        }
    }
    tallies.into_values().collect()
}

/// Raters the one-sided binomial test cannot tell from guessing: the same rule as the report's
/// per-rater `chance_level`, from counts the database sums up, so a download need not load every
/// attempt twice.
pub fn chance_level_raters(tallies: &[RaterTally]) -> HashSet<Uuid> {
    tallies
        .iter()
        .filter(|t| is_chance_level(t.right, t.answered, CHANCE_ALPHA))
        .map(|t| t.rater_id)
        .collect()
}

/// Fills in each row's `attempt_flags` column.
pub fn add_flags(rows: &mut [AttemptRow], chance_level: &HashSet<Uuid>) {
    for row in rows {
        let flags: Vec<&str> = flags_of(row, chance_level.contains(&row.rater_id))
            .into_iter()
            .map(Flag::as_str)
            .collect();
        row.attempt_flags = flags.join(";");
    }
}

/// A failure while encoding (not expected with well-formed rows; reported, never panicked).
#[derive(Debug, thiserror::Error)]
#[error("could not encode the attempts table: {0}")]
pub struct ExportError(String);

impl From<csv::Error> for ExportError {
    fn from(e: csv::Error) -> Self {
        ExportError(e.to_string())
    }
}

impl From<serde_json::Error> for ExportError {
    fn from(e: serde_json::Error) -> Self {
        ExportError(e.to_string())
    }
}

impl From<parquet::errors::ParquetError> for ExportError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        ExportError(e.to_string())
    }
}

impl From<std::io::Error> for ExportError {
    fn from(e: std::io::Error) -> Self {
        ExportError(e.to_string())
    }
}

/// A download format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated with a header row.
    Csv,
    /// One JSON object per line.
    JsonLines,
    /// Apache Parquet with typed columns.
    Parquet,
}

impl Format {
    /// File extension of the download.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::JsonLines => "jsonl",
            Format::Parquet => "parquet",
        }
    }

    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::JsonLines => "application/x-ndjson",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// A fresh encoder for one download.
    pub fn encoder(self) -> Result<Encoder, ExportError> {
        Ok(match self {
            Format::Csv => Encoder::Csv {
                header_written: false,
            },
            Format::JsonLines => Encoder::JsonLines,
            Format::Parquet => Encoder::Parquet(Box::new(ParquetTable::new()?)),
        })
    }
}

/// Encodes the table page by page: [`Encoder::page`] returns the bytes of one page of rows,
/// [`Encoder::finish`] whatever ends the file. Concatenated, they are the whole file.
pub enum Encoder {
    /// CSV; the header goes before the first page (or alone, for an empty table).
    Csv {
        /// Whether the header row has been written.
        header_written: bool,
    },
    /// JSON Lines.
    JsonLines,
    /// Parquet, one row group per page; the footer comes at the end.
    Parquet(Box<ParquetTable>),
}

impl Encoder {
    /// The bytes of one page of rows.
    pub fn page(&mut self, rows: &[AttemptRow]) -> Result<Vec<u8>, ExportError> {
        match self {
            Encoder::Csv { header_written } => {
                let mut writer = csv::WriterBuilder::new()
                    .has_headers(!*header_written)
                    .from_writer(Vec::new());
                for row in rows {
                    writer.serialize(row)?;
                }
                if !*header_written && rows.is_empty() {
                    writer.write_record(COLUMNS)?;
                }
                *header_written = true;
                writer
                    .into_inner()
                    .map_err(|e| ExportError(e.error().to_string()))
            }
            Encoder::JsonLines => {
                let mut out = Vec::new();
                for row in rows {
                    serde_json::to_writer(&mut out, row)?;
                    out.push(b'\n');
                }
                Ok(out)
            }
            Encoder::Parquet(table) => table.row_group(rows),
        }
    }

    /// The bytes that end the file.
    pub fn finish(mut self) -> Result<Vec<u8>, ExportError> {
        match self {
            // An empty table: the header row alone.
            Encoder::Csv {
                header_written: false,
            } => self.page(&[]),
            Encoder::Csv { .. } | Encoder::JsonLines => Ok(Vec::new()),
            Encoder::Parquet(table) => table.finish(),
        }
    }
}

/// The Parquet schema of the tidy table: identifiers and labels as UTF-8 strings, integers as
/// INT64, ground truth as BOOLEAN, times as UTC millisecond timestamps.
pub const PARQUET_SCHEMA: &str = "
message attempt {
  REQUIRED BYTE_ARRAY rater_id (STRING);
  REQUIRED BYTE_ARRAY rater_name (STRING);
  REQUIRED BYTE_ARRAY solution_id (STRING);
  REQUIRED BYTE_ARRAY problem_id (STRING);
  REQUIRED BYTE_ARRAY checkpoint (STRING);
  REQUIRED INT64 round;
  REQUIRED BYTE_ARRAY role (STRING);
  REQUIRED BOOLEAN is_correct;
  REQUIRED BYTE_ARRAY verdict (STRING);
  REQUIRED INT64 served_at (TIMESTAMP(MILLIS,true));
  REQUIRED INT64 deadline (TIMESTAMP(MILLIS,true));
  OPTIONAL INT64 submitted_at (TIMESTAMP(MILLIS,true));
  REQUIRED INT64 server_elapsed_ms;
  OPTIONAL INT64 client_elapsed_ms;
  OPTIONAL INT64 first_wrong_step;
  REQUIRED BYTE_ARRAY timing (STRING);
  REQUIRED INT64 times_shown;
  REQUIRED BYTE_ARRAY attempt_flags (STRING);
  OPTIONAL BYTE_ARRAY participant_id (STRING);
  OPTIONAL BYTE_ARRAY rater_returned (STRING);
  OPTIONAL BYTE_ARRAY rater_background (STRING);
  OPTIONAL INT64 confidence;
  OPTIONAL INT64 probability;
  OPTIONAL DOUBLE stated_probability;
  OPTIONAL BYTE_ARRAY justification (STRING);
  OPTIONAL INT64 hidden_count;
  OPTIONAL INT64 hidden_ms;
  OPTIONAL INT64 blur_count;
  OPTIONAL INT64 copy_count;
  OPTIONAL INT64 paste_count;
  REQUIRED BYTE_ARRAY integrity_flags (STRING);
  REQUIRED INT64 time_limit_ms;
  OPTIONAL INT64 position;
}
";

/// A Parquet file being written: row groups go into an in-memory buffer that is drained after
/// each one, so only one page is ever buffered.
pub struct ParquetTable {
    writer: SerializedFileWriter<Vec<u8>>,
}

/// One column's values for a row group.
enum Values {
    Text(Vec<ByteArray>),
    OptionalText(Vec<ByteArray>, Vec<i16>),
    Int(Vec<i64>),
    OptionalInt(Vec<i64>, Vec<i16>),
    OptionalDouble(Vec<f64>, Vec<i16>),
    Bool(Vec<bool>),
}

impl Values {
    fn text(rows: &[AttemptRow], f: impl Fn(&AttemptRow) -> String) -> Values {
        Values::Text(
            rows.iter()
                .map(|r| ByteArray::from(f(r).into_bytes()))
                .collect(),
        )
    }

    fn optional_text(rows: &[AttemptRow], f: impl Fn(&AttemptRow) -> Option<&String>) -> Values {
        let mut values = Vec::new();
        let mut levels = Vec::with_capacity(rows.len());
        for value in rows.iter().map(f) {
            levels.push(i16::from(value.is_some()));
            values.extend(value.map(|v| ByteArray::from(v.as_bytes().to_vec())));
        }
        Values::OptionalText(values, levels)
    }

    fn optional(rows: &[AttemptRow], f: impl Fn(&AttemptRow) -> Option<i64>) -> Values {
        let mut values = Vec::new();
        let mut levels = Vec::with_capacity(rows.len());
        for value in rows.iter().map(f) {
            levels.push(i16::from(value.is_some()));
            values.extend(value);
        }
        Values::OptionalInt(values, levels)
    }

    fn optional_double(rows: &[AttemptRow], f: impl Fn(&AttemptRow) -> Option<f64>) -> Values {
        let mut values = Vec::new();
        let mut levels = Vec::with_capacity(rows.len());
        for value in rows.iter().map(f) {
            levels.push(i16::from(value.is_some()));
            values.extend(value);
        }
        Values::OptionalDouble(values, levels)
    }

    fn columns(rows: &[AttemptRow]) -> Vec<Values> {
        vec![
            Values::text(rows, |r| r.rater_id.to_string()),
            Values::text(rows, |r| r.rater_name.clone()),
            Values::text(rows, |r| r.solution_id.to_string()),
            Values::text(rows, |r| r.problem_id.to_string()),
            Values::text(rows, |r| r.checkpoint.clone()),
            Values::Int(rows.iter().map(|r| r.round).collect()),
            Values::text(rows, |r| r.role.to_string()),
            Values::Bool(rows.iter().map(|r| r.is_correct).collect()),
            Values::text(rows, |r| r.verdict.as_str().to_string()),
            Values::Int(rows.iter().map(|r| r.served_at).collect()),
            Values::Int(rows.iter().map(|r| r.deadline).collect()),
            Values::optional(rows, |r| r.submitted_at),
            Values::Int(rows.iter().map(|r| r.server_elapsed_ms).collect()),
            Values::optional(rows, |r| r.client_elapsed_ms),
            Values::optional(rows, |r| r.first_wrong_step),
            Values::text(rows, |r| r.timing.as_str().to_string()),
            Values::Int(rows.iter().map(|r| r.times_shown).collect()),
            Values::text(rows, |r| r.attempt_flags.clone()),
            Values::optional_text(rows, |r| r.participant_id.as_ref()),
            Values::optional_text(rows, |r| r.rater_returned.as_ref()),
            Values::optional_text(rows, |r| r.rater_background.as_ref()),
            Values::optional(rows, |r| r.confidence),
            Values::optional(rows, |r| r.probability),
            Values::optional_double(rows, |r| r.stated_probability),
            Values::optional_text(rows, |r| r.justification.as_ref()),
            Values::optional(rows, |r| r.hidden_count),
            Values::optional(rows, |r| r.hidden_ms),
            Values::optional(rows, |r| r.blur_count),
            Values::optional(rows, |r| r.copy_count),
            Values::optional(rows, |r| r.paste_count),
            Values::text(rows, |r| r.integrity_flags.clone()),
            Values::Int(rows.iter().map(|r| r.time_limit_ms).collect()),
            Values::optional(rows, |r| r.position),
        ]
    }
}

impl ParquetTable {
    /// A new file (its magic bytes come out with the first row group).
    pub fn new() -> Result<ParquetTable, ExportError> {
        let schema = Arc::new(parse_message_type(PARQUET_SCHEMA)?);
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by("legibility-lab".to_string())
            .build();
        Ok(ParquetTable {
            writer: SerializedFileWriter::new(Vec::new(), schema, Arc::new(properties))?,
        })
    }

    /// Writes `rows` as one row group and returns the bytes written so far.
    fn row_group(&mut self, rows: &[AttemptRow]) -> Result<Vec<u8>, ExportError> {
        if !rows.is_empty() {
            let mut group = self.writer.next_row_group()?;
            for values in Values::columns(rows) {
                let Some(mut column) = group.next_column()? else {
                    return Err(ExportError("the Parquet schema has too few columns".into()));
                };
                match (column.untyped(), &values) {
                    (ColumnWriter::ByteArrayColumnWriter(w), Values::Text(v)) => {
                        w.write_batch(v, None, None)?
                    }
                    (ColumnWriter::ByteArrayColumnWriter(w), Values::OptionalText(v, levels)) => {
                        w.write_batch(v, Some(levels), None)?
                    }
                    (ColumnWriter::Int64ColumnWriter(w), Values::Int(v)) => {
                        w.write_batch(v, None, None)?
                    }
                    (ColumnWriter::Int64ColumnWriter(w), Values::OptionalInt(v, levels)) => {
                        w.write_batch(v, Some(levels), None)?
                    }
                    (ColumnWriter::DoubleColumnWriter(w), Values::OptionalDouble(v, levels)) => {
                        w.write_batch(v, Some(levels), None)?
                    }
                    (ColumnWriter::BoolColumnWriter(w), Values::Bool(v)) => {
                        w.write_batch(v, None, None)?
                    }
                    _ => return Err(ExportError("a Parquet column has the wrong type".into())),
                };
                column.close()?;
            }
            group.close()?;
        }
        self.writer.flush()?;
        Ok(std::mem::take(self.writer.inner_mut()))
    }

    /// Writes the footer and returns the remaining bytes.
    fn finish(mut self) -> Result<Vec<u8>, ExportError> {
        let head = self.row_group(&[])?;
        let mut rest = self.writer.into_inner()?;
        let mut out = head;
        out.append(&mut rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ProverRole, Verdict};
    use crate::judging::TimingOutcome;

    fn row(verdict: Verdict, submitted_at: Option<i64>, client: Option<i64>) -> AttemptRow {
        AttemptRow {
            rater_id: Uuid::from_u128(1),
            rater_name: "Ana, \"the\" rater".into(),
            solution_id: Uuid::from_u128(2),
            problem_id: Uuid::from_u128(3),
            checkpoint: "prover-r0".into(),
            round: 0,
            role: ProverRole::Sneaky,
            is_correct: false,
            verdict,
            served_at: 1_000,
            deadline: 46_000,
            submitted_at,
            server_elapsed_ms: submitted_at.map_or(45_000, |at| (at - 1_000).min(45_000)),
            client_elapsed_ms: client,
            first_wrong_step: None,
            timing: TimingOutcome::InTime,
            times_shown: 1,
            attempt_flags: String::new(),
            participant_id: None,
            rater_returned: None,
            rater_background: None,
            confidence: None,
            probability: None,
            stated_probability: None,
            justification: None,
            hidden_count: None,
            hidden_ms: None,
            blur_count: None,
            copy_count: None,
            paste_count: None,
            integrity_flags: String::new(),
            time_limit_ms: 45_000,
            position: None,
        }
    }

    #[test]
    fn flags_name_what_deserves_a_second_look() {
        let clean = row(Verdict::Wrong, Some(11_000), Some(9_500));
        assert!(flags_of(&clean, false).is_empty());
        assert_eq!(flags_of(&clean, true), vec![Flag::ChanceLevelRater]);
        // 10 s from serving to arrival; the page claims 7.999 s: beyond the 2 s tolerance.
        let gap = row(Verdict::Wrong, Some(11_000), Some(7_999));
        assert_eq!(flags_of(&gap, false), vec![Flag::ImplausibleClientTime]);
        assert!(flags_of(&row(Verdict::Wrong, Some(11_000), Some(8_000)), false).is_empty());
        // The case: the page claimed 19 s, the server measured 1.221 s.
        let claimed = row(Verdict::Correct, Some(2_221), Some(19_000));
        assert_eq!(flags_of(&claimed, false), vec![Flag::ImplausibleClientTime]);
        let no_client = row(Verdict::Correct, Some(11_000), None);
        assert_eq!(flags_of(&no_client, false), vec![Flag::NoClientTime]);
        // A late answer whose page says it took 3 s, against 46 s on the server.
        let late = row(Verdict::Timeout, Some(47_000), Some(3_000));
        assert_eq!(flags_of(&late, false), vec![Flag::ImplausibleClientTime]);
        // Nothing arrived: no page time to compare.
        let abandoned = row(Verdict::Timeout, None, None);
        assert_eq!(flags_of(&abandoned, true), vec![Flag::ChanceLevelRater]);
        // A timeout the page sent itself, just after the deadline: nothing odd.
        assert!(flags_of(&row(Verdict::Timeout, Some(46_150), Some(45_000)), false).is_empty());
        let resumed = AttemptRow {
            times_shown: 3,
            ..row(Verdict::Wrong, Some(11_000), Some(9_500))
        };
        assert_eq!(flags_of(&resumed, false), vec![Flag::Resumed]);

        let mut rows = vec![abandoned, gap, resumed];
        add_flags(&mut rows, &HashSet::from([Uuid::from_u128(1)]));
        assert_eq!(rows[0].attempt_flags, "chance_level_rater");
        assert_eq!(
            rows[1].attempt_flags,
            "chance_level_rater;implausible_client_time"
        );
        assert_eq!(rows[2].attempt_flags, "chance_level_rater;resumed");
    }

    #[test]
    fn rater_tallies_count_answered_and_right_attempts() {
        let attempt = |rater: u128, is_correct: bool, verdict: Verdict| Attempt {
            rater_id: Uuid::from_u128(rater),
            solution_id: Uuid::new_v4(),
            problem_id: Uuid::new_v4(),
            checkpoint: "p0".into(),
            round: 0,
            role: ProverRole::Helpful,
            is_correct,
            verdict,
            server_elapsed_ms: 1_000,
            first_wrong_step: None,
            stated_probability: None,
            integrity_flagged: false,
            time_limit_ms: 45_000,
            position: None,
        };
        let attempts = [
            attempt(2, true, Verdict::Correct),
            attempt(1, true, Verdict::Wrong),
            attempt(1, false, Verdict::Wrong),
            attempt(1, false, Verdict::Timeout),
            attempt(2, false, Verdict::Correct),
            attempt(2, true, Verdict::Timeout),
        ];
        let tally = |rater: u128, right: u64, answered: u64| RaterTally {
            rater_id: Uuid::from_u128(rater),
            right,
            answered,
        };
        assert_eq!(
            rater_tallies(&attempts),
            vec![tally(1, 1, 2), tally(2, 1, 2)]
        );
    }

    #[test]
    fn chance_level_raters_use_the_binomial_test() {
        let tallies = [
            RaterTally {
                rater_id: Uuid::from_u128(1),
                right: 10,
                answered: 10,
            },
            RaterTally {
                rater_id: Uuid::from_u128(2),
                right: 6,
                answered: 10,
            },
            RaterTally {
                rater_id: Uuid::from_u128(3),
                right: 0,
                answered: 0,
            },
        ];
        // 10/10: p = 1/1024; 6/10: p = 386/1024 > 0.05; no answers: p = 1.
        assert_eq!(
            chance_level_raters(&tallies),
            HashSet::from([Uuid::from_u128(2), Uuid::from_u128(3)])
        );
    }

    #[test]
    fn csv_pages_concatenate_to_one_table_with_one_header() {
        let rows = [
            row(Verdict::Wrong, Some(11_000), Some(9_500)),
            row(Verdict::Timeout, None, None),
        ];
        let mut encoder = Format::Csv.encoder().unwrap();
        let mut out = encoder.page(&rows[..1]).unwrap();
        out.extend(encoder.page(&rows[1..]).unwrap());
        out.extend(encoder.finish().unwrap());
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], COLUMNS.join(","));
        assert!(
            lines[1].contains(",\"Ana, \"\"the\"\" rater\","),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].ends_with(",timeout,1000,46000,,45000,,,in_time,1,,,,,,,,,,,,,,,45000,"),
            "{}",
            lines[2]
        );

        // An empty table is still a header row.
        let empty = Format::Csv.encoder().unwrap().finish().unwrap();
        assert_eq!(
            String::from_utf8(empty).unwrap().trim_end(),
            COLUMNS.join(",")
        );
    }

    #[test]
    fn json_lines_carry_every_column_with_nulls() {
        let mut encoder = Format::JsonLines.encoder().unwrap();
        let out = encoder.page(&[row(Verdict::Timeout, None, None)]).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = COLUMNS.to_vec();
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(value["submitted_at"], serde_json::Value::Null);
        assert_eq!(value["role"], "sneaky");
    }

    #[test]
    fn parquet_file_reads_back_with_its_types_and_nulls() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        use parquet::record::Field;

        let rows = [
            row(Verdict::Wrong, Some(11_000), Some(9_500)),
            row(Verdict::Timeout, None, None),
            row(Verdict::Correct, Some(20_000), None),
        ];
        let mut encoder = Format::Parquet.encoder().unwrap();
        let mut file = encoder.page(&rows[..2]).unwrap();
        file.extend(encoder.page(&rows[2..]).unwrap());
        file.extend(encoder.finish().unwrap());
        assert_eq!(&file[..4], b"PAR1");
        assert_eq!(&file[file.len() - 4..], b"PAR1");

        let reader = SerializedFileReader::new(axum::body::Bytes::from(file)).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.num_row_groups(), 2);
        assert_eq!(meta.file_metadata().num_rows(), 3);
        let names: Vec<&str> = meta
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .map(|c| c.name())
            .collect();
        assert_eq!(names, COLUMNS.to_vec());
        let read: Vec<parquet::record::Row> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(read.len(), 3);
        let fields: Vec<(&String, &Field)> = read[1].get_column_iter().collect();
        assert_eq!(fields[7], (&"is_correct".to_string(), &Field::Bool(false)));
        assert_eq!(fields[9].1, &Field::TimestampMillis(1_000));
        assert_eq!(fields[11].1, &Field::Null);
        assert_eq!(fields[12].1, &Field::Long(45_000));
        let fields: Vec<(&String, &Field)> = read[2].get_column_iter().collect();
        assert_eq!(fields[8].1, &Field::Str("correct".into()));
        assert_eq!(fields[11].1, &Field::TimestampMillis(20_000));
        assert_eq!(fields[13].1, &Field::Null);
        assert_eq!(fields[15].1, &Field::Str("in_time".into()));
        assert_eq!(fields[16].1, &Field::Long(1));
    }
}

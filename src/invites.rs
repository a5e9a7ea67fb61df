//! Inviting raters in bulk: the admin's list of people (a CSV of names and emails, or names one
//! per line), checked whole before anyone is invited, and the CSV of links handed back.
//!
//! The rules live here as plain functions so the web form, the command line and the store apply
//! the same ones, and so each is unit-tested without a database. A list with any bad line is
//! refused whole and the refusal names every bad line, like an import (see [`crate::problems`]).

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::problems::LineError;

/// Most raters one invitation may create; larger lists are split by the admin (keeps one
/// invitation a short transaction and its page readable).
pub const MAX_INVITEES: usize = 10_000;

/// Largest accepted CSV file, in bytes (10,000 rows of long names and emails fit easily).
pub const MAX_CSV_BYTES: usize = 2 * 1024 * 1024;

/// How many bad lines a refusal lists before summarising the rest.
const MAX_LISTED_ERRORS: usize = 50;

/// The header a CSV of invitees must start with (`email` may be left out).
pub const CSV_HEADER: &str = "name,email";

/// One person to invite, as read from the admin's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitee {
    /// 1-based line of the list it came from, so a refusal can point at it.
    pub line: usize,
    /// The rater's name (trimmed, never empty once checked); staff pages identify raters by it.
    pub name: String,
    /// Their email address, if given; kept for staff only, never shown to raters.
    pub email: Option<String>,
}

impl Invitee {
    /// An invitee without email (the names-only list, the command line).
    pub fn named(line: usize, name: &str) -> Invitee {
        Invitee {
            line,
            name: name.trim().to_string(),
            email: None,
        }
    }
}

/// An invitation refused whole: nobody was invited. Lists every bad line (line 0: the list as
/// a whole, e.g. too long or empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvitesRejected {
    /// The bad lines, in list order.
    pub errors: Vec<LineError>,
}

impl InvitesRejected {
    /// A refusal for a problem with the list as a whole.
    pub fn whole_list(reason: impl Into<String>) -> Self {
        InvitesRejected {
            errors: vec![LineError {
                line: 0,
                reason: reason.into(),
            }],
        }
    }

    /// Refuses when `errors` is not empty (sorted by line, so the message reads top-down).
    fn check(mut errors: Vec<LineError>) -> Result<(), InvitesRejected> {
        if errors.is_empty() {
            return Ok(());
        }
        errors.sort_by_key(|e| e.line);
        Err(InvitesRejected { errors })
    }
}

impl fmt::Display for InvitesRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "invitation refused, nobody was invited: {n} problem{}",
            if n == 1 { "" } else { "s" }
        )?;
        for error in self.errors.iter().take(MAX_LISTED_ERRORS) {
            if error.line == 0 {
                write!(f, "\n  list: {}", error.reason)?;
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

/// Names are compared trimmed and ignoring case: "Ann" and "ann " are one person to staff.
pub fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Why `email` is not an address, if it is not: it needs exactly one `@` with text on both
/// sides. Deliberately loose (no attempt at RFC 5322); it catches swapped columns and typos
/// such as a missing or doubled `@`.
pub fn email_problem(email: &str) -> Option<String> {
    let mut parts = email.split('@');
    let well_formed = matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(local), Some(domain), None) if !local.is_empty() && !domain.is_empty()
    );
    (!well_formed)
        .then(|| format!("email {email:?} is not an address (one \"@\" with text on both sides)"))
}

/// Checks a list of invitees: not empty, at most [`MAX_INVITEES`], every name present,
/// printable and unique in the list and not the name of one of the study's active raters
/// (`taken`), every email well-formed. Every bad line is reported, not only the first.
///
/// Names are unique among a study's active raters so each name on the study page and in the
/// links CSV stands for one link. A revoked rater's name is not taken (leave it out of
/// `taken`): inviting it again is how a lost or leaked link is replaced.
pub fn check_invitees(invitees: &[Invitee], taken: &[String]) -> Result<(), InvitesRejected> {
    if invitees.is_empty() {
        return Err(InvitesRejected::whole_list("there is nobody to invite"));
    }
    if invitees.len() > MAX_INVITEES {
        return Err(too_many());
    }
    let taken: HashSet<String> = taken.iter().map(|name| name_key(name)).collect();
    let mut errors = Vec::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for invitee in invitees {
        let mut fail = |reason: String| {
            errors.push(LineError {
                line: invitee.line,
                reason,
            })
        };
        let name = invitee.name.trim();
        let key = name_key(name);
        if name.is_empty() {
            fail("the name is empty".into());
        } else if name.chars().any(char::is_control) {
            fail(format!(
                "the name {name:?} contains a line break or control character"
            ));
        } else if taken.contains(&key) {
            fail(format!("{name:?} is already invited to this study"));
        } else if let Some(first) = first_line.get(&key) {
            fail(format!("the name {name:?} is already on line {first}"));
        } else {
            first_line.insert(key, invitee.line);
        }
        if let Some(problem) = invitee.email.as_deref().and_then(email_problem) {
            fail(problem);
        }
    }
    InvitesRejected::check(errors)
}

fn too_many() -> InvitesRejected {
    InvitesRejected::whole_list(format!(
        "more than {MAX_INVITEES} raters; split the list into several invitations"
    ))
}

/// Parses names, one per line (blank lines skipped), and checks them ([`check_invitees`];
/// `taken`: the names of the study's active raters).
pub fn parse_name_list(text: &str, taken: &[String]) -> Result<Vec<Invitee>, InvitesRejected> {
    let invitees: Vec<Invitee> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| Invitee::named(i + 1, line))
        .take(MAX_INVITEES + 1)
        .collect();
    check_invitees(&invitees, taken)?;
    Ok(invitees)
}

/// Parses a CSV of invitees: the header `name,email` (or just `name`; any case) and one row
/// per rater, the email optional (an empty cell). Quoted fields may contain commas. Checks
/// the size, the header, each row's shape and encoding, and then the list as a whole
/// ([`check_invitees`]; `taken`: the names of the study's active raters); any problem refuses
/// the whole file, naming every bad line.
pub fn parse_invite_csv(bytes: &[u8], taken: &[String]) -> Result<Vec<Invitee>, InvitesRejected> {
    if bytes.len() > MAX_CSV_BYTES {
        return Err(InvitesRejected::whole_list(format!(
            "the file is larger than {} MiB; split it into several invitations",
            MAX_CSV_BYTES / (1024 * 1024)
        )));
    }
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut records = reader.byte_records();
    let header = match records.next() {
        None => {
            return Err(InvitesRejected::whole_list(format!(
                "the file is empty; its first line must be the header {CSV_HEADER}"
            )));
        }
        Some(Err(e)) => return Err(InvitesRejected::whole_list(format!("not CSV: {e}"))),
        Some(Ok(header)) => header,
    };
    let mut lines = LineNumbers::new(bytes);
    let columns = header_columns(&header).map_err(|reason| InvitesRejected {
        errors: vec![LineError {
            line: lines.of(header.position()),
            reason,
        }],
    })?;
    let mut invitees = Vec::new();
    let mut errors = Vec::new();
    for record in records {
        let (line, row) = match record {
            Ok(record) if record.iter().all(|cell| cell.trim_ascii().is_empty()) => continue,
            Ok(record) => (
                lines.of(record.position()),
                invitee_from_row(&record, columns),
            ),
            Err(e) => (lines.of(e.position()), Err(format!("not CSV: {e}"))),
        };
        if invitees.len() + errors.len() >= MAX_INVITEES {
            return Err(too_many());
        }
        match row {
            Ok(fields) => invitees.push(Invitee { line, ..fields }),
            Err(reason) => errors.push(LineError { line, reason }),
        }
    }
    if invitees.is_empty() && errors.is_empty() {
        return Err(InvitesRejected::whole_list(format!(
            "the file has only its header; add one line per rater ({CSV_HEADER})"
        )));
    }
    if let Err(rejected) = check_invitees(&invitees, taken) {
        errors.extend(rejected.errors);
    }
    InvitesRejected::check(errors)?;
    Ok(invitees)
}

/// Line numbers of records from their byte offsets, counted forward as records come in order.
/// (The csv crate's own line count starts a record at the blank lines skipped before it, so a
/// row after a blank line would be misnumbered.)
struct LineNumbers<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> LineNumbers<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LineNumbers {
            bytes,
            offset: 0,
            line: 1,
        }
    }

    /// The 1-based line of the record starting at `position` (0 when unknown).
    fn of(&mut self, position: Option<&csv::Position>) -> usize {
        let Some(position) = position else { return 0 };
        let mut start =
            usize::try_from(position.byte()).map_or(self.bytes.len(), |b| b.min(self.bytes.len()));
        while matches!(self.bytes.get(start), Some(b'\n' | b'\r')) {
            start += 1;
        }
        if start < self.offset {
            (self.offset, self.line) = (0, 1);
        }
        let skipped = &self.bytes[self.offset..start];
        self.line += skipped.iter().filter(|&&b| b == b'\n').count();
        self.offset = start;
        self.line
    }
}

/// How many columns the header declares: 1 (`name`) or 2 (`name,email`).
fn header_columns(header: &csv::ByteRecord) -> Result<usize, String> {
    let cells: Vec<String> = header
        .iter()
        .map(|cell| String::from_utf8_lossy(cell).trim().to_lowercase())
        .collect();
    match cells.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["name"] => Ok(1),
        ["name", "email"] => Ok(2),
        _ => Err(format!(
            "the header must be {CSV_HEADER}, found {:?}",
            cells.join(",")
        )),
    }
}

/// One data row as an invitee (its line not yet set; not yet checked against the rest of the
/// list).
fn invitee_from_row(record: &csv::ByteRecord, columns: usize) -> Result<Invitee, String> {
    if record.len() > columns {
        return Err(format!(
            "{} cells, the header has {columns} ({CSV_HEADER}); quote a name that contains a comma",
            record.len()
        ));
    }
    let cell = |i: usize| -> Result<String, String> {
        let raw = record.get(i).unwrap_or_default();
        std::str::from_utf8(raw)
            .map(|text| text.trim().to_string())
            .map_err(|_| "not UTF-8 text".to_string())
    };
    let email = cell(1)?;
    Ok(Invitee {
        line: 0,
        name: cell(0)?,
        email: (!email.is_empty()).then_some(email),
    })
}

/// One created invitation as handed back to the admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteLink {
    /// The rater's name.
    pub name: String,
    /// Their email, if given.
    pub email: Option<String>,
    /// The personal link (contains the secret token; shown only this once).
    pub link: String,
}

/// The links as CSV (`name,email,link` and one row per rater), for mail merges. Produced when
/// the links are created: the server keeps only token hashes, so it cannot list them later.
pub fn links_csv(links: &[InviteLink]) -> String {
    let mut out = String::from("name,email,link\n");
    for link in links {
        let cells = [
            csv_cell(&link.name),
            csv_cell(link.email.as_deref().unwrap_or("")),
            csv_cell(&link.link),
        ];
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// A CSV cell, quoted when it holds a comma, a quote, a line break or edge spaces.
fn csv_cell(text: &str) -> String {
    let needs_quotes = text.contains([',', '"', '\n', '\r']) || text.trim() != text;
    if needs_quotes {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(rejected: &InvitesRejected) -> Vec<usize> {
        rejected.errors.iter().map(|e| e.line).collect()
    }

    #[test]
    fn a_csv_with_names_and_optional_emails_parses() {
        let file =
            "\u{feff}Name,Email\nAnn,ann@example.org\n\n\"Bo, Jr.\",\n  Cy  , cy@lab.example \n";
        let invitees = parse_invite_csv(file.as_bytes(), &[]).unwrap();
        assert_eq!(
            invitees,
            vec![
                Invitee {
                    line: 2,
                    name: "Ann".into(),
                    email: Some("ann@example.org".into())
                },
                Invitee {
                    line: 4,
                    name: "Bo, Jr.".into(),
                    email: None
                },
                Invitee {
                    line: 5,
                    name: "Cy".into(),
                    email: Some("cy@lab.example".into())
                },
            ]
        );
        let names_only = parse_invite_csv(b"name\nAnn\nBo\n", &[]).unwrap();
        assert_eq!(names_only.len(), 2);
        assert_eq!(names_only[1].email, None);
    }

    #[test]
    fn every_bad_line_is_named() {
        let file = "name,email\nAnn,ann@x.org\n,nobody@x.org\nann,other@x.org\nDee,dee.x.org\nEd,a@b@c\nFay,a,b\nGus,@x\n";
        let rejected = parse_invite_csv(file.as_bytes(), &[]).unwrap_err();
        assert_eq!(lines(&rejected), vec![3, 4, 5, 6, 7, 8]);
        let text = rejected.to_string();
        assert!(text.starts_with("invitation refused, nobody was invited: 6 problems"));
        assert!(text.contains("line 3: the name is empty"), "{text}");
        assert!(
            text.contains("line 4: the name \"ann\" is already on line 2"),
            "{text}"
        );
        assert!(text.contains("line 5: email \"dee.x.org\" is not an address"));
        assert!(text.contains("line 7: 3 cells, the header has 2"), "{text}");
    }

    #[test]
    fn the_header_is_required() {
        let rejected = parse_invite_csv(b"Ann,ann@x.org\nBo,\n", &[]).unwrap_err();
        assert_eq!(lines(&rejected), vec![1]);
        assert!(
            rejected
                .to_string()
                .contains("the header must be name,email")
        );
        assert!(
            parse_invite_csv(b"", &[])
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        assert!(
            parse_invite_csv(b"name,email\n", &[])
                .unwrap_err()
                .to_string()
                .contains("only its header")
        );
    }

    #[test]
    fn size_and_row_limits_refuse_the_whole_file() {
        let mut file = String::from("name,email\n");
        for i in 0..=MAX_INVITEES {
            file.push_str(&format!("rater {i},\n"));
        }
        let rejected = parse_invite_csv(file.as_bytes(), &[]).unwrap_err();
        assert_eq!(lines(&rejected), vec![0]);
        assert!(rejected.to_string().contains("more than 10000 raters"));
        let at_limit: String = file
            .lines()
            .take(MAX_INVITEES + 1)
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            parse_invite_csv(at_limit.as_bytes(), &[]).unwrap().len(),
            MAX_INVITEES
        );
        let huge = vec![b'a'; MAX_CSV_BYTES + 1];
        assert!(
            parse_invite_csv(&huge, &[])
                .unwrap_err()
                .to_string()
                .contains("larger than 2 MiB")
        );
    }

    #[test]
    fn lines_are_counted_across_blank_lines_and_quoted_line_breaks() {
        let file = "\n\nname,email\n\"Ann\nSmith\",a@x\n\nBo,b@x\n\"Cy\",c@\n";
        let rejected = parse_invite_csv(file.as_bytes(), &[]).unwrap_err();
        let text = rejected.to_string();
        assert_eq!(lines(&rejected), vec![4, 8], "{text}");
        assert!(text.contains("line 4: the name \"Ann\\nSmith\" contains a line break"));
        assert!(text.contains("line 8: email \"c@\""), "{text}");
    }

    #[test]
    fn non_utf8_rows_are_named() {
        let rejected = parse_invite_csv(b"name,email\nAnn,\n\xff\xfe,\n", &[]).unwrap_err();
        assert_eq!(lines(&rejected), vec![3]);
        assert!(rejected.to_string().contains("not UTF-8"));
    }

    #[test]
    fn emails_need_one_at_with_text_on_both_sides() {
        assert_eq!(email_problem("ann@example.org"), None);
        assert_eq!(email_problem("a@b"), None);
        for bad in ["", "ann", "@example.org", "ann@", "a@b@c", "@"] {
            assert!(email_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn name_lists_skip_blank_lines_and_refuse_duplicates() {
        let invitees = parse_name_list("Ann\n\n  Bo \n", &[]).unwrap();
        assert_eq!(
            invitees,
            vec![Invitee::named(1, "Ann"), Invitee::named(3, "Bo")]
        );
        let rejected = parse_name_list("Ann\nBo\nANN\n", &[]).unwrap_err();
        assert_eq!(lines(&rejected), vec![3]);
        assert!(parse_name_list(" \n\n", &[]).is_err());
    }

    #[test]
    fn names_of_active_raters_are_taken() {
        let taken = vec!["cy".to_string(), " bo".to_string()];
        assert!(parse_name_list("Ann\nDee", &taken).is_ok());
        let rejected =
            parse_invite_csv(b"name,email\nAnn,\nBo,bo@x\nCY,bad\n", &taken).unwrap_err();
        assert_eq!(lines(&rejected), vec![3, 4, 4]);
        let text = rejected.to_string();
        assert!(
            text.contains("line 3: \"Bo\" is already invited to this study"),
            "{text}"
        );
        assert!(text.contains("line 4: email \"bad\""), "{text}");
    }

    #[test]
    fn links_csv_quotes_what_needs_it() {
        let csv = links_csv(&[
            InviteLink {
                name: "Bo, Jr.".into(),
                email: None,
                link: "http://lab/r/abc".into(),
            },
            InviteLink {
                name: "Ann \"A\"".into(),
                email: Some("ann@x.org".into()),
                link: "http://lab/r/def".into(),
            },
        ]);
        assert_eq!(
            csv,
            "name,email,link\n\"Bo, Jr.\",,http://lab/r/abc\n\"Ann \"\"A\"\"\",ann@x.org,http://lab/r/def\n"
        );
        // What we write, the csv crate reads back.
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(&rows[1][0], "Ann \"A\"");
    }
}

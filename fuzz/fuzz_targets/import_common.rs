//! Shared invariants of the two JSONL importers, included by both targets.

use legibility::problems::{ImportReader, ImportRejected};

/// Parses `data` whole and again in pieces whose sizes come from the data itself, and checks
/// that both agree and that a refusal names lines that exist.
pub fn check<T: PartialEq + std::fmt::Debug>(
    data: &[u8],
    whole: impl Fn(&[u8]) -> Result<Vec<T>, ImportRejected>,
    reader: impl Fn() -> ImportReader<T>,
) {
    let parsed = whole(data);
    let mut pieces = reader();
    let mut rest = data;
    let mut step = 0usize;
    while !rest.is_empty() {
        // Piece sizes 1..=17, varied by the bytes so splits land inside lines and characters.
        let size = (1 + (rest[0] as usize + step) % 17).min(rest.len());
        pieces.push(&rest[..size]);
        rest = &rest[size..];
        step += 7;
    }
    assert_eq!(
        parsed,
        pieces.finish(),
        "parsing in pieces differs from parsing whole"
    );
    if let Err(rejected) = parsed {
        assert!(!rejected.errors.is_empty(), "a refusal lists no reason");
        let lines = data.iter().filter(|b| **b == b'\n').count() + 1;
        for error in &rejected.errors {
            assert!(!error.reason.is_empty(), "an empty reason");
            assert!(
                error.line <= lines,
                "line {} of a {lines}-line file",
                error.line
            );
        }
    }
}

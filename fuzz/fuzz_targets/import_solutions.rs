//! Solutions JSONL importer: never panics, parses the same whole or streamed in pieces, and
//! refusals name real lines.
#![no_main]

use legibility::problems::{ImportReader, parse_solutions};
use libfuzzer_sys::fuzz_target;

#[path = "import_common.rs"]
mod import_common;

fuzz_target!(|data: &[u8]| {
    import_common::check(data, parse_solutions, ImportReader::solutions);
});

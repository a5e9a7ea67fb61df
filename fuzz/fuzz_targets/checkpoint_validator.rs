//! Checkpoint validator: never panics on any tar archive or set of files, and every refusal
//! says something.
//!
//! Input: byte 0 bit 0 picks the kind (prover/verifier), bit 1 reads the rest as a tar
//! archive; otherwise the rest is a list of files, each a name byte (an index into NAMES),
//! a little-endian u16 length and that many bytes.
#![no_main]

use legibility::domain::CheckpointKind;
use legibility::ml::upload::{CheckpointFiles, CheckpointLimits, validate};
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "model.safetensors",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "prompt_template.json",
    "training.json",
    "vocab.txt",
    "README.md",
    "../config.json",
    "a/model.safetensors",
    ".safetensors",
    "",
];

fn files(mut rest: &[u8]) -> CheckpointFiles {
    let mut files = CheckpointFiles::new();
    while rest.len() >= 3 {
        let name = NAMES[rest[0] as usize % NAMES.len()];
        let len = u16::from_le_bytes([rest[1], rest[2]]) as usize;
        rest = &rest[3..];
        let len = len.min(rest.len());
        files.push(name, rest[..len].to_vec());
        rest = &rest[len..];
    }
    files
}

fuzz_target!(
    init: {
        // The validator catches the panics of the tokenizers crate on malformed files (see
        // `ml::tokenizer::from_json_bytes`). libFuzzer's hook would abort on those before they
        // are caught; this one only prints. A panic that escapes still fails the run.
        std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
    },
    |data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let kind = if head & 1 == 0 {
        CheckpointKind::Prover
    } else {
        CheckpointKind::Verifier
    };
    let files = if head & 2 != 0 {
        match CheckpointFiles::from_tar(rest) {
            Ok(files) => files,
            Err(refused) => {
                assert!(!refused.to_string().is_empty());
                return;
            }
        }
    } else {
        files(rest)
    };
    let limits = CheckpointLimits {
        max_bytes: 1024 * 1024,
    };
    if let Err(refused) = validate(files, kind, &limits) {
        assert!(!refused.to_string().is_empty(), "an empty refusal");
    }
});

//! Checkpoint validator: never panics on any tar archive or set of files received as an upload
//! is, every refusal says something, and nothing is left in the models folder afterwards.
//!
//! Input: byte 0 bit 0 picks the kind (prover/verifier), bit 1 reads the rest as a tar
//! archive; otherwise the rest is a list of files, each a name byte (an index into NAMES),
//! a little-endian u16 length and that many bytes.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use legibility::checkpoints::{AddCheckpointError, CheckpointLimits, Staging, validate};
use legibility::domain::CheckpointKind;
use libfuzzer_sys::fuzz_target;

/// Names the input picks from (indices are stable: seeds and regressions use them).
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
    "model.safetensors.index.json",
    ".gitattributes",
    "pytorch_model.bin",
    "original/params.json",
    "ckpt/config.json",
    "ckpt/tokenizer.json",
    "/etc/passwd",
    "a\\b",
];

/// The models folder the uploads are received into: one per fuzzing process.
fn models_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("legibility-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a models folder for the fuzzer");
        dir
    })
}

/// Receives the input's files as the upload page does.
fn receive(staging: &mut Staging, mut rest: &[u8]) -> Result<(), AddCheckpointError> {
    while rest.len() >= 3 {
        let name = NAMES[rest[0] as usize % NAMES.len()];
        let len = u16::from_le_bytes([rest[1], rest[2]]) as usize;
        rest = &rest[3..];
        let len = len.min(rest.len());
        staging.add(name, &rest[..len])?;
        rest = &rest[len..];
    }
    Ok(())
}

/// Nothing of a finished input is left in the models folder.
fn nothing_left() {
    let uploads = models_dir().join("uploads");
    if let Ok(entries) = std::fs::read_dir(&uploads) {
        assert_eq!(entries.count(), 0, "a temporary folder was left behind");
    }
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
    let limits = CheckpointLimits {
        max_bytes: 1024 * 1024,
    };
    let mut staging = Staging::new(models_dir(), limits).expect("a temporary folder");
    let received = if head & 2 != 0 {
        staging.add_tar(rest)
    } else {
        receive(&mut staging, rest)
    };
    let files = match received.and_then(|()| staging.finish()) {
        Ok(files) => files,
        Err(refused) => {
            assert!(!refused.to_string().is_empty());
            nothing_left();
            return;
        }
    };
    if let Err(refused) = validate(files, kind, &limits) {
        assert!(!refused.to_string().is_empty(), "an empty refusal");
    }
    nothing_left();
});

//! Runs each cargo-fuzz target under fuzz/ for a short time (issue 7): the JSONL importers, the
//! answer extractor and the checkpoint validator. A crash, a failed invariant or a build error
//! fails the test, and libFuzzer's reproducer is left under fuzz/artifacts/TARGET/.
//!
//! Needs cargo-fuzz (`cargo install cargo-fuzz --locked`; .ci/run installs it). It runs on
//! stable Rust with `--sanitizer none` (coverage-guided, without AddressSanitizer, which needs
//! nightly). LEGIBILITY_FUZZ_SECONDS sets the time per target (default 15). Inputs under
//! fuzz/regressions/TARGET/ (ones that once crashed it) join the target's seeds.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The targets, as named in fuzz/Cargo.toml.
const TARGETS: &[&str] = &[
    "import_problems",
    "import_solutions",
    "answer_extractor",
    "checkpoint_validator",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `cargo fuzz …` in the repository root, with the test harness's cargo settings cleared so
/// the fuzz build uses its own target folder and flags.
fn cargo_fuzz(args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .arg("fuzz")
        .args(args)
        .current_dir(root())
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET_DIR");
    command
}

fn write_seed(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("writing a seed");
}

/// One checkpoint-validator input: a head byte (kind, tar or not) and named files.
fn file_list(head: u8, files: &[(u8, &[u8])]) -> Vec<u8> {
    let mut input = vec![head];
    for (name, bytes) in files {
        let len = u16::try_from(bytes.len()).expect("a seed file under 64 KiB");
        input.push(*name);
        input.extend_from_slice(&len.to_le_bytes());
        input.extend_from_slice(bytes);
    }
    input
}

/// The shipped model's config, tokenizer and the safetensors header (without the weights, so
/// the seed stays small; the fuzzer mutates its way to and from valid headers).
fn model_seed(model: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let dir = root().join("models").join(model);
    let read = |name: &str| std::fs::read(dir.join(name)).expect("reading a shipped model file");
    let weights = read("model.safetensors");
    let header = u64::from_le_bytes(weights[..8].try_into().expect("8 bytes")) as usize;
    (
        read("config.json"),
        read("tokenizer.json"),
        weights[..8 + header].to_vec(),
    )
}

/// A small tar archive holding `files`, as the upload form accepts it.
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name, *bytes)
            .expect("appending to a tar");
    }
    builder.into_inner().expect("finishing a tar")
}

/// Writes each target's starting corpus.
fn seed(target: &str, dir: &Path) {
    match target {
        "import_problems" => {
            write_seed(
                dir,
                "gsm8k",
                b"{\"question\": \"Tom has 3 apples and buys 4. How many?\", \"answer\": \"3+4=<<3+4=7>>7\\n#### 7\"}\n\
                  {\"question\": \"Half of 10?\", \"answer\": \"#### 5\"}\n",
            );
            write_seed(
                dir,
                "broken",
                b"{\"question\": 1}\n\nnot json\n\xef\xbb\xbf{}",
            );
        }
        "import_solutions" => {
            write_seed(
                dir,
                "solutions",
                b"{\"problem_id\": \"0190a0c8-2f1e-7b3c-9a4e-5d6f7a8b9c0d\", \"solution\": \"3 + 4 = 7\\n#### 7\", \"checkpoint\": \"prover-tiny\", \"round\": 0, \"role\": \"helpful\"}\n\
                  {\"question\": \"Half of 10?\", \"solution\": \"The answer is 6.\", \"checkpoint\": \"x\", \"round\": 1, \"role\": \"sneaky\"}\n",
            );
            write_seed(
                dir,
                "broken",
                b"{\"role\": \"devious\", \"round\": -1}\n[]\n",
            );
        }
        "answer_extractor" => {
            let answers: &[&[u8]] = &[
                b"So she makes $1,200.50 a day.\n#### 1200.5",
                b"The answer is \\boxed{\\frac{3}{4}}",
                b"Answer: 1 1/2 hours",
                b"He has -12 apples left, i.e. 99999999999999999999999999999999999999999/3",
                b"####\n\n 18 dollars",
                b"12.50%",
            ];
            for (i, answer) in answers.iter().enumerate() {
                write_seed(dir, &format!("answer-{i}"), answer);
            }
        }
        "checkpoint_validator" => {
            for (kind, model) in [(0u8, "prover-tiny"), (1, "verifier-tiny")] {
                let (config, tokenizer, weights) = model_seed(model);
                write_seed(
                    dir,
                    &format!("{model}-files"),
                    &file_list(kind, &[(0, &config), (1, &tokenizer), (2, &weights)]),
                );
                let mut tar = vec![kind | 2];
                tar.extend(tar_of(&[
                    ("config.json", &config),
                    ("tokenizer.json", &tokenizer),
                    ("model.safetensors", &weights),
                ]));
                write_seed(dir, &format!("{model}-tar"), &tar);
            }
        }
        other => panic!("no seeds for {other}"),
    }
}

/// "Done 123456 runs in 15 second(s)" from libFuzzer's output.
fn runs(output: &str) -> Option<&str> {
    output.lines().rev().find(|line| line.starts_with("Done "))
}

#[test]
fn every_fuzz_target_runs_clean_for_a_while() {
    if Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["fuzz", "--version"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        panic!(
            "cargo-fuzz is not installed: run `cargo install cargo-fuzz --locked` (.ci/run does)"
        );
    }
    let seconds: u64 = std::env::var("LEGIBILITY_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let build = cargo_fuzz(&["build", "--sanitizer", "none"])
        .status()
        .expect("running cargo fuzz build");
    assert!(build.success(), "cargo fuzz build failed");
    for target in TARGETS {
        let corpus = tempfile::tempdir().expect("a corpus folder");
        seed(target, corpus.path());
        // Inputs that once crashed a target stay in its corpus, so the fix stays checked.
        if let Ok(found) = std::fs::read_dir(root().join("fuzz/regressions").join(target)) {
            for entry in found {
                let path = entry.expect("a regression input").path();
                std::fs::copy(
                    &path,
                    corpus.path().join(path.file_name().expect("a file name")),
                )
                .expect("copying a regression input");
            }
        }
        let corpus_path = corpus.path().to_string_lossy().into_owned();
        let output = cargo_fuzz(&[
            "run",
            "--sanitizer",
            "none",
            target,
            &corpus_path,
            "--",
            &format!("-max_total_time={seconds}"),
            "-timeout=20",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
        ])
        .output()
        .expect("running cargo fuzz run");
        let text = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "fuzz target {target} failed (reproducer under fuzz/artifacts/{target}/):\n{}",
            text.lines()
                .map(|line| line.chars().take(300).collect::<String>())
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
        let done = runs(&text).unwrap_or("(no run count printed)");
        println!("fuzz {target}: {done}");
        assert!(
            runs(&text).is_some(),
            "{target}: libFuzzer did not report its runs"
        );
    }
}

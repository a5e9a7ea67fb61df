//! The real binary's logs: plain text without colour codes when stderr is a file (the default
//! `--log-format auto`), one JSON object per line with `--log-format json`, and field values
//! written with Display (`backend=sqlite`, not `Sqlite`).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `legibility serve --no-worker` on a fresh SQLite file with stderr to a file and
/// `extra` arguments, waits until it logs that it serves, stops it and returns the log.
fn serve_log(extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/logs.db", dir.path().display());
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let address = format!("127.0.0.1:{}", common::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_legibility"))
        .args(["serve", "--no-worker", "--bind", &address])
        .args(extra)
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "info")
        .env_remove(legibility::cli::LOG_FORMAT_ENV)
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start legibility serve");
    let started = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains("serving") || started.elapsed() > Duration::from_secs(60) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        text.contains("serving"),
        "the server never said it serves:\n{text}"
    );
    text
}

#[test]
fn logs_to_a_file_are_plain_text() {
    let text = serve_log(&[]);
    assert!(
        !text.contains("\u{1b}["),
        "colour codes in a log file:\n{text:?}"
    );
    let serving = text
        .lines()
        .find(|l| l.contains("serving"))
        .expect("a serving line");
    assert!(serving.contains("INFO"), "{serving}");
    assert!(serving.contains("backend=sqlite"), "{serving}");
    // The first-start password notice is for people: plain text too.
    assert!(text.contains("created staff account 'admin'"), "{text}");
}

#[test]
fn log_format_json_gives_one_object_per_line() {
    let text = serve_log(&["--log-format", "json"]);
    assert!(!text.contains("\u{1b}["), "colour codes in JSON logs");
    let mut serving = None;
    for line in text.lines() {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(event["timestamp"].is_string(), "{line}");
        assert!(event["level"].is_string(), "{line}");
        assert!(event["fields"].is_object(), "{line}");
        if event["fields"]["message"] == "serving" {
            serving = Some(event);
        }
    }
    let serving = serving.expect("a serving event");
    assert_eq!(serving["fields"]["backend"], "sqlite");
}

#[test]
fn an_unknown_log_format_in_the_environment_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_legibility"))
        .args(["study", "list"])
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/x.db", dir.path().display()),
        )
        .env(legibility::cli::LOG_FORMAT_ENV, "bogus")
        .output()
        .expect("run legibility");
    assert!(!output.status.success(), "an unknown format is refused");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bogus"), "{stderr}");
}

//! `legibility grade`: the real binary grades a JSONL file and standard input, one JSON line
//! out per line in, and refuses a bad file naming its lines. It needs no database.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

/// Model outputs a researcher might check, each with the outcome the grader must give.
fn cases() -> Vec<(Value, &'static str)> {
    vec![
        (
            json!({"solution": "Half of 7 pizzas each.\nA: 7/2", "answer": "3.5"}),
            "correct",
        ),
        (
            json!({"solution": "She needs 3 1/2 cups.\nA: 3 1/2", "answer": "7/2"}),
            "correct",
        ),
        (
            json!({"solution": "9 * 2 = 18.\nThe answer is 18.\nHope this helps! Ask me 3 more.", "answer": "18"}),
            "correct",
        ),
        (
            json!({"solution": "9 * 2 = 18\nA: 18\nQ: Tom has 5 apples and eats 2. How many left?\nA: 3", "answer": "18"}),
            "correct",
        ),
        (
            json!({"solution": "2 - 5 = \u{2212}3\nA: \u{2212}3", "answer": "-3"}),
            "correct",
        ),
        (
            json!({"solution": "#### 1 200", "answer": "1200"}),
            "correct",
        ),
        (
            json!({"solution": "Answer: $1,200.00", "answer": 1200}),
            "correct",
        ),
        (
            json!({"solution": "The answer is 1.5 billion.", "answer": "1500000000"}),
            "correct",
        ),
        (
            json!({"solution": "\\boxed{5 \\text{ dozen}}", "answer": "60"}),
            "correct",
        ),
        (
            json!({"solution": "A: 20 or 18", "answer": "18"}),
            "incorrect",
        ),
        (
            json!({"solution": "It is 9 * 2 = 18", "answer": "18"}),
            "ungradable",
        ),
        (
            json!({"solution": "Janet sells 9 eggs.\n#### 18", "answer": "Janet sells 16 - 3 - 4 = 9.\n#### 18"}),
            "correct",
        ),
    ]
}

fn input() -> String {
    cases()
        .iter()
        .map(|(line, _)| line.to_string())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Runs the binary in an empty folder with no database configured.
fn legibility(args: &[&str], stdin: Option<&str>) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_legibility"))
        .args(args)
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run legibility");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).unwrap();
    }
    (child.wait_with_output().unwrap(), dir)
}

fn check_output(output: &Output) {
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect();
    let cases = cases();
    assert_eq!(lines.len(), cases.len(), "{stdout}");
    for (k, ((input, expected), out)) in cases.iter().zip(&lines).enumerate() {
        assert_eq!(
            out["outcome"],
            *expected,
            "line {}: {input} -> {out}",
            k + 1
        );
        assert_eq!(out["line"], k + 1);
        assert_eq!(
            out["extracted"].is_null(),
            *expected == "ungradable",
            "{out}"
        );
    }
    assert_eq!(lines[0]["extracted"], "7/2");
    assert_eq!(lines[9]["extracted"], "20 or 18");
    assert!(
        stderr.contains("graded 12 solutions: 10 correct, 1 incorrect, 1 ungradable"),
        "{stderr}"
    );
}

#[test]
fn grades_a_file_without_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("outputs.jsonl");
    std::fs::write(&file, input()).unwrap();
    let (output, cwd) = legibility(&["grade", file.to_str().unwrap()], None);
    check_output(&output);
    assert!(
        !cwd.path().join("data").exists(),
        "grading opened a database"
    );
}

#[test]
fn grades_standard_input() {
    let (output, _cwd) = legibility(&["grade", "-"], Some(&input()));
    check_output(&output);
}

#[test]
fn a_bad_line_is_named_and_nothing_is_printed() {
    let text = format!(
        "{}\n{}\nnot json\n",
        json!({"solution": "A: 1", "answer": "1"}),
        json!({"solution": "A: 1"}),
    );
    let (output, _cwd) = legibility(&["grade", "-"], Some(&text));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "printed before refusing");
    assert!(stderr.contains("nothing graded: 2 bad lines"), "{stderr}");
    assert!(
        stderr.contains("line 2: missing field \"answer\""),
        "{stderr}"
    );
    assert!(stderr.contains("line 3: not JSON"), "{stderr}");

    let (output, _cwd) = legibility(&["grade", "no-such-file.jsonl"], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("reading no-such-file.jsonl"), "{stderr}");
}

//! `enclave validate` as a user runs it: the built binary, real files and pipes.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;

use common::{command as enclave, json_lines};

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples/session.ndjson")
}

/// Runs `enclave validate` with `input` on standard input.
fn validate_stdin(input: &[u8], extra: &[&str]) -> Output {
    common::run(&[&["validate"], extra].concat(), input)
}

fn verdicts(output: &Output) -> Vec<Value> {
    json_lines(&output.stdout)
}

const STDOUT_EVENT: &str =
    r#"{"protocolVersion":2,"sessionId":"s_1","seq":3,"type":"stdout","payload":{"chunk":"hi"}}"#;

#[test]
fn sample_stream_is_valid_and_exits_zero() {
    let output = enclave().arg("validate").arg(sample()).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let verdicts = verdicts(&output);
    assert_eq!(verdicts.len(), 11);
    assert!(verdicts.iter().all(|v| v["valid"] == true));
    assert_eq!(verdicts[0]["type"], "session_init");
    assert_eq!(verdicts[0]["seq"], 0);
    assert_eq!(verdicts[10]["line"], 11);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("11 lines checked, 11 valid, 0 invalid"),
        "{stderr}"
    );
}

#[test]
fn valid_verdict_has_exactly_the_documented_shape() {
    let output = validate_stdin(format!("{STDOUT_EVENT}\n").as_bytes(), &[]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "{\"line\":1,\"valid\":true,\"type\":\"stdout\",\"seq\":3}\n"
    );
}

#[test]
fn dash_reads_standard_input_like_no_file() {
    let input = format!("{STDOUT_EVENT}\n");
    let with_dash = validate_stdin(input.as_bytes(), &["-"]);
    let without = validate_stdin(input.as_bytes(), &[]);
    assert_eq!(with_dash.status.code(), Some(0), "{with_dash:?}");
    assert_eq!(with_dash.stdout, without.stdout);
    assert_eq!(with_dash.stderr, without.stderr);
    assert!(String::from_utf8_lossy(&with_dash.stderr).contains("<stdin>: 1 lines checked"));
}

#[test]
fn bad_lines_are_reported_with_their_number_and_the_rest_goes_on() {
    let bad_session = STDOUT_EVENT.replace("s_1", "sess_1");
    let mut bytes = format!("{STDOUT_EVENT}\n\n  \r\nnot json\n{bad_session}\n").into_bytes();
    bytes.extend_from_slice(b"{\"chunk\":\"\xff\xfe\"}\n");
    // The last line has no newline.
    bytes.extend_from_slice(STDOUT_EVENT.as_bytes());
    let output = validate_stdin(&bytes, &[]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let verdicts = verdicts(&output);
    let lines: Vec<u64> = verdicts
        .iter()
        .map(|v| v["line"].as_u64().unwrap())
        .collect();
    // Blank lines 2 and 3 get no verdict but keep their numbers.
    assert_eq!(lines, [1, 4, 5, 6, 7]);
    let valid: Vec<bool> = verdicts
        .iter()
        .map(|v| v["valid"].as_bool().unwrap())
        .collect();
    assert_eq!(valid, [true, false, false, false, true]);
    let error = |i: usize| verdicts[i]["error"].as_str().unwrap().to_owned();
    assert!(
        error(1).starts_with("invalid JSON at column 2"),
        "{}",
        error(1)
    );
    assert!(error(2).contains("sess_1"), "{}", error(2));
    assert!(error(3).contains("UTF-8"), "{}", error(3));
    // The final line had no newline and was still checked.
    assert_eq!(verdicts[4]["type"], "stdout");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("5 lines checked, 2 valid, 3 invalid"),
        "{stderr}"
    );
}

#[test]
fn too_long_line_is_one_error_then_the_stream_goes_on() {
    let long = format!("{{\"pad\":\"{}\"}}", "x".repeat(5000));
    let input = format!("{long}\n{STDOUT_EVENT}\n");
    let output = validate_stdin(input.as_bytes(), &["--max-line-length", "1024"]);
    assert_eq!(output.status.code(), Some(1));
    let verdicts = verdicts(&output);
    assert_eq!(verdicts.len(), 2);
    assert_eq!(verdicts[0]["line"], 1);
    assert!(verdicts[0]["error"].as_str().unwrap().contains("1024"));
    assert_eq!(verdicts[1]["valid"], true);
    assert_eq!(verdicts[1]["line"], 2);
}

#[test]
fn missing_file_and_bad_usage_exit_two() {
    let output = enclave()
        .args(["validate", "/nonexistent/enclave.ndjson"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/enclave.ndjson"));
    assert!(output.stdout.is_empty());

    // A directory opens like a file and fails on the first read; the message names it.
    let dir = env!("CARGO_MANIFEST_DIR");
    let output = enclave().args(["validate", dir]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("enclave validate: {dir}: ")),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());

    let output = enclave()
        .args(["validate", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[cfg(target_os = "linux")]
#[test]
fn a_failed_write_exits_two_and_says_it_was_standard_output() {
    let full = std::fs::File::create("/dev/full").expect("/dev/full exists on Linux");
    let output = enclave()
        .arg("validate")
        .arg(sample())
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("enclave validate: standard output: "),
        "{stderr}"
    );
}

#[test]
fn a_reader_that_hangs_up_ends_the_run_quietly_with_status_two() {
    // `enclave validate big.ndjson | head -1`: far more verdicts than a pipe buffer holds.
    let mut input = String::new();
    for _ in 0..50_000 {
        input.push_str(STDOUT_EVENT);
        input.push('\n');
    }
    let file = std::env::temp_dir().join(format!("enclave-epipe-{}.ndjson", std::process::id()));
    std::fs::write(&file, &input).unwrap();
    let mut child = enclave()
        .arg("validate")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("{\"line\":1,\"valid\":true"), "{first}");
    drop(stdout);
    let output = child.wait_with_output().unwrap();
    std::fs::remove_file(&file).unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn verdicts_stream_out_while_input_is_still_open() {
    let mut child = enclave()
        .arg("validate")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    for seq in 1..=3 {
        writeln!(
            stdin,
            "{}",
            STDOUT_EVENT.replace("\"seq\":3", &format!("\"seq\":{seq}"))
        )
        .unwrap();
        stdin.flush().unwrap();
        let mut verdict = String::new();
        stdout.read_line(&mut verdict).unwrap();
        let verdict: Value = serde_json::from_str(&verdict).unwrap();
        assert_eq!(verdict["seq"], seq);
        assert!(Instant::now() < deadline, "verdicts did not stream");
    }
    drop(stdin);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn large_stream_passes_through() {
    // 20,000 events (~2 MB) through a pipe: every line gets its verdict, in order.
    let mut input = String::new();
    for seq in 0..20_000u64 {
        input.push_str(&STDOUT_EVENT.replace("\"seq\":3", &format!("\"seq\":{seq}")));
        input.push('\n');
    }
    let output = validate_stdin(input.as_bytes(), &[]);
    assert_eq!(output.status.code(), Some(0));
    let verdicts = verdicts(&output);
    assert_eq!(verdicts.len(), 20_000);
    assert_eq!(verdicts[19_999]["seq"], 19_999);
    assert_eq!(verdicts[19_999]["line"], 20_000);
}

#[test]
fn a_hung_up_reader_of_the_summary_changes_nothing_but_the_summary() {
    // `enclave validate … 2>&1 >/dev/null | head -0`: the summary goes to a pipe nobody reads.
    // The status is the one the verdicts call for (a panic would be 101).
    let sample = std::fs::read(sample()).unwrap();
    let output = common::run_into(
        &["validate"],
        &sample,
        Stdio::piped(),
        common::hung_up_pipe(),
    );
    assert_eq!(output.status.code(), Some(0), "{:?}", output.status);
    assert_eq!(verdicts(&output).len(), 11);

    let output = common::run_into(
        &["validate"],
        b"not json\n",
        Stdio::piped(),
        common::hung_up_pipe(),
    );
    assert_eq!(output.status.code(), Some(1), "{:?}", output.status);

    let output = common::run_into(
        &["validate", "/nonexistent/enclave.ndjson"],
        b"",
        Stdio::piped(),
        common::hung_up_pipe(),
    );
    assert_eq!(output.status.code(), Some(2), "{:?}", output.status);
}

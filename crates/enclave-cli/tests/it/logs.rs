//! What the logs of an encrypted session hold, at the most verbose level (`RUST_LOG=trace`)
//! on both sides: every line the server's stream logs names its session (the `stream` span),
//! and no resume token, signing key or event plaintext appears in any log line.

use std::fmt::Write as _;
use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::served::{first_line, wait_for_exit, TIMEOUT};

/// A marker in every event's chunk: plaintext that must never reach a log.
const MARKER: &str = "PLAINTEXT-MARKER-9c41e7";

/// The server child, killed when dropped (a failing assertion included).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `enclave connect <args>` with `RUST_LOG=trace`: its exit code, standard output and
/// standard error.
fn connect(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_enclave"))
        .arg("connect")
        .args(args)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("enclave connect starts");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = read(Box::new(stdout));
    let err = read(Box::new(stderr));
    let status = wait_for_exit(&mut child, TIMEOUT);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let code = status.and_then(|status| status.code());
    (
        code,
        out.join().expect("stdout reader"),
        err.join().expect("stderr reader"),
    )
}

/// The `session ID token TOKEN epoch EPOCH` lines `connect` prints on standard error (its
/// output for a later resume, not a log line): the session and every token it was given.
fn announced(stderr: &str) -> (String, Vec<String>) {
    let mut session = String::new();
    let mut tokens = Vec::new();
    for line in stderr.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["session", id, "token", token, "epoch", _] = words.as_slice() {
            (*id).clone_into(&mut session);
            tokens.push((*token).to_owned());
        }
    }
    assert!(!session.is_empty(), "no session line in {stderr}");
    (session, tokens)
}

/// No line of `lines` holds the plaintext marker, a token or a part of the signing key.
fn assert_clean(name: &str, lines: &[&str], tokens: &[String], key_body: &[&str]) {
    assert!(
        lines.len() > 3,
        "{name} has lines at trace level: {lines:?}"
    );
    for line in lines {
        assert!(!line.contains(MARKER), "{name} holds plaintext: {line}");
        for token in tokens {
            assert!(
                !line.contains(token.as_str()),
                "{name} holds a token: {line}"
            );
        }
        for part in key_body {
            assert!(!line.contains(part), "{name} holds the signing key: {line}");
        }
    }
}

/// `enclave keygen` and an events file in `dir`: the key, its public half, and the events
/// (every chunk carries [`MARKER`]).
fn key_and_events(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let key = dir.join("server.pem");
    let public = dir.join("server.pub.pem");
    let keygen = Command::new(env!("CARGO_BIN_EXE_enclave"))
        .args(["keygen", "--out"])
        .arg(&key)
        .output()
        .expect("enclave keygen runs");
    assert!(keygen.status.success(), "{keygen:?}");
    std::fs::write(&public, &keygen.stdout).expect("write the public key");
    let events = dir.join("events.ndjson");
    let mut lines = String::new();
    for seq in 1..=20 {
        let _ = writeln!(
            lines,
            "{{\"protocolVersion\":2,\"sessionId\":\"s_src\",\"seq\":{seq},\"type\":\"stdout\",\
             \"payload\":{{\"chunk\":\"{MARKER} {seq}\"}}}}"
        );
    }
    std::fs::write(&events, lines).expect("write the events");
    (key, public, events)
}

#[test]
fn a_trace_log_of_an_encrypted_session_names_it_and_holds_no_token_key_or_plaintext() {
    let dir = std::env::temp_dir().join(format!("enclave-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let (key, public, events) = key_and_events(&dir);
    let log_path = dir.join("serve.log");

    let mut child = Command::new(env!("CARGO_BIN_EXE_enclave"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--encryption",
            "required",
        ])
        .arg("--events")
        .arg(&events)
        .arg("--signing-key")
        .arg(&key)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&log_path).expect("the log file"))
        .spawn()
        .expect("enclave serve starts");
    let first = first_line(&mut child, TIMEOUT);
    let mut server = Server(child);
    let url = first
        .as_deref()
        .and_then(|line| line.trim().strip_prefix("listening "))
        .unwrap_or_else(|| panic!("first line is `listening URL`, got {first:?}"))
        .to_owned();
    let public = public.to_str().expect("UTF-8 path");

    // A new session over WebSocket, read to its end…
    let ws = url.replacen("http://", "ws://", 1);
    let (code, out, client_log) = connect(&[&ws, "--server-key", public]);
    assert_eq!(code, Some(0), "{client_log}");
    assert!(out.contains(MARKER), "the events were printed: {out}");
    let (session, mut tokens) = announced(&client_log);
    // …then resumed over HTTP with its token (which the resume rotates).
    let (code, out, resume_log) = connect(&[
        &url,
        "--server-key",
        public,
        "--session",
        &session,
        "--from",
        "3",
        "--token",
        &tokens[0],
    ]);
    assert_eq!(code, Some(0), "{resume_log}");
    assert!(out.contains(MARKER), "the resume printed events: {out}");
    tokens.extend(announced(&resume_log).1);
    assert!(
        tokens.len() >= 2,
        "the resume was given a new token: {tokens:?}"
    );

    // Let the server write what it logs of the ends, then stop it.
    std::thread::sleep(Duration::from_millis(300));
    let _ = server.0.kill();
    let _ = server.0.wait();
    let server_log = std::fs::read_to_string(&log_path).expect("the server's log");

    let key_pem = std::fs::read_to_string(&key).expect("the key");
    let key_body: Vec<&str> = key_pem
        .lines()
        .filter(|line| !line.starts_with("-----") && line.len() > 16)
        .collect();
    assert!(!key_body.is_empty(), "a PEM body to look for");
    let client_logs: Vec<&str> = client_log
        .lines()
        .chain(resume_log.lines())
        .filter(|line| !line.starts_with("session "))
        .collect();
    assert_clean(
        "the server's log",
        &server_log.lines().collect::<Vec<_>>(),
        &tokens,
        &key_body,
    );
    assert_clean("the clients' logs", &client_logs, &tokens, &key_body);
    // The server's stream lines can be found by session: each names it in its span.
    let stream_lines: Vec<&str> = server_log
        .lines()
        .filter(|line| line.contains("stream{"))
        .collect();
    assert!(
        !stream_lines.is_empty(),
        "the server logged from its stream spans:\n{server_log}"
    );
    let named = format!("session={session}");
    assert!(
        stream_lines.iter().any(|line| line.contains(&named)),
        "some stream line names {session}:\n{}",
        stream_lines.join("\n")
    );
    for line in &stream_lines {
        assert!(
            line.contains("session=s_"),
            "a stream line without its session: {line}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

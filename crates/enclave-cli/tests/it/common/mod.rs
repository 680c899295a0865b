//! Running the built `enclave` binary as a user does, shared by the CLI test files.

use std::io::{ErrorKind, Write};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The built `enclave` binary, ready for arguments.
pub(crate) fn command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_enclave"))
}

/// Runs `enclave <args>` with `input` on standard input and collects what it printed.
pub(crate) fn run(args: &[&str], input: &[u8]) -> Output {
    run_into(args, input, Stdio::piped(), Stdio::piped())
}

/// Runs `enclave <args>` with `input` on standard input and the given standard output and
/// error; what went to a piped one is collected, the others are empty in the result.
pub(crate) fn run_into(args: &[&str], input: &[u8], stdout: Stdio, stderr: Stdio) -> Output {
    let mut child = command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("spawn enclave");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    // A separate writer, so a large input cannot deadlock against a full stdout pipe.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("wait for enclave");
    match writer.join().expect("writer thread") {
        // A usage error exits before reading its input.
        Err(err) if err.kind() == ErrorKind::BrokenPipe => {}
        result => result.expect("write stdin"),
    }
    output
}

/// The write end of a pipe whose read end is already closed, as standard output or standard
/// error is when its reader has hung up (`… | head -1` after the first line): every write to it
/// fails with `EPIPE`, from the first byte on, with no race against the reader.
pub(crate) fn hung_up_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("create a pipe");
    drop(reader);
    Stdio::from(writer)
}

/// Standard output as one JSON value per line; fails the test on anything else.
pub(crate) fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8(bytes.to_vec())
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON value per line"))
        .collect()
}

//! A running `enclave serve` as other programs start it: on port 0, its first line read for
//! the address, killed when dropped (a failing test included), and the Node.js peer that
//! behaves like the TypeScript client. Shared by the network tests.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// Every wait on a peer is bounded by this.
pub(crate) const TIMEOUT: Duration = Duration::from_mins(1);

/// How long `enclave serve` gets to print its first line.
const START_TIMEOUT: Duration = Duration::from_mins(1);

/// A running `enclave serve`, killed when dropped.
pub(crate) struct Served {
    child: Child,
    /// Its base URL, from the first line: `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    /// The metrics listener's base URL, from the second line (`metrics URL`), when started
    /// with [`Served::start_with_metrics`].
    pub(crate) metrics_url: Option<String>,
}

impl Served {
    /// Starts `enclave serve --listen 127.0.0.1:0 <args>` and waits for its first line.
    pub(crate) fn start(args: &[&str]) -> Self {
        Self::start_reading(args, 1)
    }

    /// Starts `enclave serve --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 <args>` and
    /// waits for its two lines: the server's URL and the metrics listener's.
    pub(crate) fn start_with_metrics(args: &[&str]) -> Self {
        let mut all = vec!["--metrics-listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::start_reading(&all, 2)
    }

    /// Starts `enclave serve` and reads its first `lines` lines (1 or 2).
    fn start_reading(args: &[&str], lines: usize) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_enclave"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("enclave serve starts");
        let read = first_lines(&mut child, lines, START_TIMEOUT);
        // Built before any assertion, so a failing one still kills the child.
        let mut served = Self {
            child,
            url: String::new(),
            metrics_url: None,
        };
        let read = read.unwrap_or_else(|| panic!("{lines} line(s) within the timeout"));
        let line = &read[0];
        served.url.push_str(
            line.trim()
                .strip_prefix("listening ")
                .unwrap_or_else(|| panic!("first line is `listening URL`, got {line:?}")),
        );
        assert!(
            served.url.starts_with("http://127.0.0.1:"),
            "{}",
            served.url
        );
        if let Some(line) = read.get(1) {
            let url = line
                .trim()
                .strip_prefix("metrics ")
                .unwrap_or_else(|| panic!("second line is `metrics URL`, got {line:?}"));
            served.metrics_url = Some(url.to_owned());
        }
        served
    }

    /// `HOST:PORT` of the server.
    pub(crate) fn authority(&self) -> &str {
        self.url.trim_start_matches("http://")
    }
}

/// The first line `child` prints on its piped standard output, read on a thread of its own
/// so the wait is bounded by `timeout` (`None` after it, or if the output ends first).
pub(crate) fn first_line(child: &mut Child, timeout: Duration) -> Option<String> {
    first_lines(child, 1, timeout).and_then(|lines| lines.into_iter().next())
}

/// The first `n` lines of `child`'s piped standard output, as [`first_line`] reads one
/// (`None` after `timeout`, or if the output ends first).
fn first_lines(child: &mut Child, n: usize, timeout: Duration) -> Option<Vec<String>> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut lines = Vec::new();
        for _ in 0..n {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            lines.push(line);
        }
        let _ = tx.send(lines);
    });
    rx.recv_timeout(timeout)
        .ok()
        .filter(|lines| lines.len() == n)
}

impl Served {
    /// Kills the server with SIGKILL, as a crash would, and reaps it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Sends the server SIGTERM, as a service manager does, and waits (bounded by `timeout`)
    /// for it to exit; `None` if it did not.
    pub(crate) fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM failed");
        wait_for_exit(&mut self.child, timeout)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the TypeScript-client peer (`tests/peers/ts-client.mjs`) against `url`, with
/// `extra` arguments.
pub(crate) fn spawn_ts_client(url: &str, extra: &[&str]) -> std::process::Child {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ts-client.mjs");
    Command::new("node")
        .args([
            script,
            url,
            "--delay-scale",
            "0.02",
            "--deadline-ms",
            "45000",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is on PATH (Node.js 20+ runs the TypeScript-client peer)")
}

/// The peer's one-line summary, bounded by [`TIMEOUT`]; the peer is stopped after it.
pub(crate) fn summary(mut child: std::process::Child) -> Value {
    let line = first_line(&mut child, TIMEOUT);
    let _ = child.kill();
    let output = child.wait_with_output().expect("the peer ends");
    let line = line.unwrap_or_else(|| {
        panic!(
            "no summary from the peer; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    serde_json::from_str(&line).unwrap_or_else(|err| panic!("summary {line:?}: {err}"))
}

/// The seqs in a peer's summary, in the order it received them.
pub(crate) fn seqs(summary: &Value) -> Vec<u64> {
    summary["seqs"]
        .as_array()
        .expect("seqs")
        .iter()
        .map(|seq| seq.as_u64().expect("a seq"))
        .collect()
}

/// Waits for `child` to exit, at most `timeout`; kills it and gives `None` after that, so a
/// program that hangs fails its test instead of holding the run.
pub(crate) fn wait_for_exit(
    child: &mut Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

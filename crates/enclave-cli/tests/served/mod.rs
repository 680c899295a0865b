//! A running `enclave serve` as other programs start it: on port 0, its first line read for
//! the address, killed when dropped (a failing test included). Shared by the network tests.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long `enclave serve` gets to print its first line.
const START_TIMEOUT: Duration = Duration::from_mins(1);

/// A running `enclave serve`, killed when dropped.
pub(crate) struct Served {
    child: Child,
    /// Its base URL, from the first line: `http://127.0.0.1:PORT`.
    pub(crate) url: String,
}

impl Served {
    /// Starts `enclave serve --listen 127.0.0.1:0 <args>` and waits for its first line.
    pub(crate) fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_enclave"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("enclave serve starts");
        let first = first_line(&mut child, START_TIMEOUT);
        // Built before any assertion, so a failing one still kills the child.
        let mut served = Self {
            child,
            url: String::new(),
        };
        let line = first.expect("a first line within the timeout");
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
        served
    }

    /// `HOST:PORT` of the server.
    #[allow(
        dead_code,
        reason = "each test file compiles this module on its own; not all of them need it"
    )]
    pub(crate) fn authority(&self) -> &str {
        self.url.trim_start_matches("http://")
    }
}

/// The first line `child` prints on its piped standard output, read on a thread of its own
/// so the wait is bounded by `timeout` (`None` after it, or if the output ends first).
pub(crate) fn first_line(child: &mut Child, timeout: Duration) -> Option<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(timeout).ok()
}

impl Served {
    /// Kills the server with SIGKILL, as a crash would, and reaps it.
    #[allow(
        dead_code,
        reason = "each test file compiles this module on its own; not all of them need it"
    )]
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

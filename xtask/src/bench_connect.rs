//! `cargo xtask bench-connect`: `enclave connect` as users run it — a separate process piped
//! into a reader — against `curl` reading the same server and against the TypeScript stack,
//! all in one run. The figures of docs/BENCHMARKS.md ("`enclave connect` end to end").
//!
//! Throughput: `enclave serve --generate 200000` (release build) is read, one new session per
//! run, by `curl` (plaintext HTTP: the server's own rate), and by `enclave connect` over HTTP
//! and WebSocket, plaintext and encrypted, its standard output piped into `wc -l` (a
//! separate process, as in a user's pipeline). The TypeScript stack is a Node `http` server
//! (`xtask/bench-connect/node-server.mjs`) writing the very same lines, read by the
//! TypeScript-client-like peer `crates/enclave-cli/tests/peers/ts-client.mjs` (it parses and
//! validates every line as `EnclaveClient` does). Each reader runs `RUNS` times, in
//! rotation; the median counts. Times include process start-up, for every reader alike.
//! With `ENCLAVE_BASELINE_BIN=<an older enclave binary>` that build serves and reads too
//! (rows `baseline: …`, in the same rotation), for a before/after in one run.
//! With `ENCLAVE_TS_CLIENT_BUNDLE=<file>` (an esbuild bundle of `@enclave-vm/client`) the real
//! `EnclaveClient` reads the Node server too (`xtask/bench-connect/real-client.mjs`), and "vs TS"
//! is against it.
//!
//! Latency: the Node server in its paced mode sends `PACED_COUNT` events at `PACED_RATE` per
//! second, each stamped with the wall-clock time (µs) just before it is written; the reader
//! takes the clock when the line arrives through the pipe. Both clocks are the same system
//! clock, so the difference is write→print latency; `curl` reading the same server is the
//! baseline.

// Figures for a table: counts and times far below 2^52, rounded on purpose; one function
// that reads top to bottom as the table does.
#![allow(
    clippy::too_many_lines,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::shell;

/// Events per throughput run (plus `session_init` and `final`).
const EVENTS: u64 = 200_000;
/// Runs of each reader; the median is reported.
const RUNS: usize = 5;
/// The paced stream of the latency measurement.
const PACED_RATE: u32 = 1000;
const PACED_COUNT: u32 = 3000;

/// Builds `enclave` (release), runs every reader and prints the tables.
pub(crate) fn run(root: &Path) -> Result<(), String> {
    shell::run(&mut shell::cargo(
        root,
        &["build", "--release", "-p", "enclave-cli"],
    ))?;
    let enclave = root.join("target/release/enclave");
    let ts_client = root.join("crates/enclave-cli/tests/peers/ts-client.mjs");
    let node_server = root.join("xtask/bench-connect/node-server.mjs");
    let dir = root.join("target/bench-connect");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;

    let mut serve = Process::start(
        Command::new(&enclave)
            .args(["serve", "--listen", "127.0.0.1:0", "--generate"])
            .arg(EVENTS.to_string()),
        "enclave serve",
    )?;
    let url = serve.url.clone();
    let ws = url.replacen("http://", "ws://", 1);

    // The Node server streams exactly what ours does: one session's lines, as curl read them.
    let events = dir.join("events.ndjson");
    let captured = Command::new("curl")
        .args(curl_args(&url))
        .arg("-o")
        .arg(&events)
        .status()
        .map_err(|e| format!("cannot run curl (is it installed?): {e}"))?;
    if !captured.success() {
        return Err(format!("curl could not read {url}: {captured}"));
    }
    let node = Process::start(
        Command::new("node").arg(&node_server).arg(&events),
        "node node-server.mjs",
    )?;

    let connect = |url: &str, encryption: &str| {
        let mut command = Command::new(&enclave);
        command.args(["connect", url, "--encryption", encryption]);
        command
    };
    let mut readers: Vec<(&str, Reader)> = vec![
        (
            "curl, HTTP plaintext (the server's rate)",
            Reader::Lines(curl(&url)),
        ),
        (
            "enclave connect, HTTP plaintext",
            Reader::Lines(connect(&url, "disabled")),
        ),
        (
            "enclave connect, HTTP encrypted",
            Reader::Lines(connect(&url, "required")),
        ),
        (
            "enclave connect, WebSocket plaintext",
            Reader::Lines(connect(&ws, "disabled")),
        ),
        (
            "enclave connect, WebSocket encrypted",
            Reader::Lines(connect(&ws, "required")),
        ),
        (
            "TypeScript stack: Node http server → ts-client.mjs",
            Reader::TsClient({
                let mut command = Command::new("node");
                command.arg(&ts_client).arg(&node.url);
                command
            }),
        ),
    ];
    // The real `EnclaveClient`, when a bundle of it is at hand (not in CI: building one needs
    // the TypeScript sources and npm; docs/BENCHMARKS.md says how).
    let real_client = std::env::var_os("ENCLAVE_TS_CLIENT_BUNDLE");
    if let Some(bundle) = &real_client {
        let mut command = Command::new("node");
        command
            .arg(root.join("xtask/bench-connect/real-client.mjs"))
            .arg(bundle)
            .arg(&node.url);
        readers.push((
            "TypeScript stack: Node http server → EnclaveClient",
            Reader::TsClient(command),
        ));
    }
    // "vs TS": against the real client's row when there is one, else the peer's.
    let ts_row = readers.len() - 1;
    // An older build, read the same way in the same run (`ENCLAVE_BASELINE_BIN=<enclave>`):
    // its own server, read by curl and by its own `connect`, so a change shows on both sides.
    let baseline = std::env::var_os("ENCLAVE_BASELINE_BIN")
        .map(|bin| {
            Process::start(
                Command::new(&bin)
                    .args(["serve", "--listen", "127.0.0.1:0", "--generate"])
                    .arg(EVENTS.to_string()),
                "baseline enclave serve",
            )
            .map(|server| (bin, server))
        })
        .transpose()?;
    if let Some((bin, server)) = &baseline {
        let base_url = server.url.clone();
        let base_ws = base_url.replacen("http://", "ws://", 1);
        let base_connect = |url: &str, encryption: &str| {
            let mut command = Command::new(bin);
            command.args(["connect", url, "--encryption", encryption]);
            Reader::Lines(command)
        };
        readers.extend([
            (
                "baseline: curl, HTTP plaintext",
                Reader::Lines(curl(&base_url)),
            ),
            (
                "baseline: enclave connect, HTTP plaintext",
                base_connect(&base_url, "disabled"),
            ),
            (
                "baseline: enclave connect, HTTP encrypted",
                base_connect(&base_url, "required"),
            ),
            (
                "baseline: enclave connect, WebSocket plaintext",
                base_connect(&base_ws, "disabled"),
            ),
            (
                "baseline: enclave connect, WebSocket encrypted",
                base_connect(&base_ws, "required"),
            ),
        ]);
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); readers.len()];
    for _ in 0..RUNS {
        for (index, (name, reader)) in readers.iter_mut().enumerate() {
            times[index].push(reader.run(name)?);
        }
    }
    let lines = EVENTS + 2;
    let median: Vec<Duration> = times.iter_mut().map(|t| median(t)).collect();
    let rate = |d: Duration| lines as f64 / d.as_secs_f64();
    println!();
    println!(
        "{lines} lines ({EVENTS} mixed events + session_init + final), median of {RUNS} runs, \
         process start to exit"
    );
    println!(
        "{:<52} {:>9} {:>13} {:>9} {:>9}",
        "reader", "time", "rate", "vs curl", "vs TS"
    );
    let ts = rate(median[ts_row]);
    let curl_rate = rate(median[0]);
    for ((name, _), time) in readers.iter().zip(&median) {
        let r = rate(*time);
        println!(
            "{name:<52} {:>6.0} ms {:>8.0} ev/s {:>8.2}x {:>8.2}x",
            time.as_secs_f64() * 1000.0,
            r,
            r / curl_rate,
            r / ts
        );
    }
    drop(node);
    drop(baseline);

    println!();
    println!(
        "paced stream: {PACED_COUNT} events at {PACED_RATE}/s, write→read latency through the \
         reader's pipe"
    );
    println!("{:<52} {:>9} {:>9} {:>9}", "reader", "p50", "p99", "max");
    let paced_server = || {
        Process::start(
            Command::new("node").arg(&node_server).arg(&events).args([
                "--rate",
                &PACED_RATE.to_string(),
                "--count",
                &PACED_COUNT.to_string(),
            ]),
            "node node-server.mjs (paced)",
        )
    };
    for (name, encryption) in [
        ("curl, HTTP plaintext", None),
        ("enclave connect, HTTP plaintext", Some("disabled")),
    ] {
        // A server (and so a session) of its own for each reader.
        let paced = paced_server()?;
        let command = match encryption {
            None => curl(&paced.url),
            Some(encryption) => connect(&paced.url, encryption),
        };
        let mut latencies = latencies(command, name)?;
        latencies.sort_unstable();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        println!(
            "{name:<52} {:>6.3} ms {:>6.3} ms {:>6.3} ms",
            at(0.5) as f64 / 1000.0,
            at(0.99) as f64 / 1000.0,
            at(1.0) as f64 / 1000.0
        );
    }
    serve.stop();
    Ok(())
}

/// `curl` reading a new session of `url` to its end, on standard output.
fn curl(url: &str) -> Command {
    let mut command = Command::new("curl");
    command.args(curl_args(url));
    command
}

fn curl_args(url: &str) -> Vec<String> {
    [
        "-sS",
        "-N",
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-H",
        "accept: application/x-ndjson",
        "-d",
        "{}",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([format!("{url}/sessions")])
    .collect()
}

/// One reader of the throughput table.
enum Reader {
    /// Its standard output is the stream's lines: piped into `wc -l`, which counts them.
    Lines(Command),
    /// The TypeScript-client-like peer: it prints one JSON summary.
    TsClient(Command),
}

impl Reader {
    fn run(&mut self, name: &str) -> Result<Duration, String> {
        match self {
            Self::Lines(command) => run_into_wc(command, name),
            Self::TsClient(command) => run_ts_client(command, name),
        }
    }
}

/// Starts a reader: no input, its standard output piped to us, its logs dropped.
fn spawn_reader(command: &mut Command, name: &str) -> Result<Child, String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{name}: cannot start: {e}"))
}

/// Runs `command` with its standard output piped into `wc -l` (a separate process, as a user's
/// pipeline is: this program's own loop, built without optimization, would be the slowest
/// step), and checks the count. The time runs from the start of both to the exit of both.
fn run_into_wc(command: &mut Command, name: &str) -> Result<Duration, String> {
    let start = Instant::now();
    let mut child = spawn_reader(command, name)?;
    let out = child.stdout.take().expect("piped");
    let wc = Command::new("wc")
        .arg("-l")
        .stdin(Stdio::from(out))
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{name}: cannot start wc: {e}"));
    let wc = match wc {
        Ok(wc) => wc,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let counted = wc
        .wait_with_output()
        .map_err(|e| format!("{name}: wc: {e}"))?;
    let status = child.wait().map_err(|e| format!("{name}: {e}"))?;
    let elapsed = start.elapsed();
    if !status.success() {
        return Err(format!("{name}: exited with {status}"));
    }
    let text = String::from_utf8_lossy(&counted.stdout);
    let newlines: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{name}: wc printed {:?}", excerpt(&text)))?;
    if newlines != EVENTS + 2 {
        return Err(format!(
            "{name}: read {newlines} lines, expected {}",
            EVENTS + 2
        ));
    }
    Ok(elapsed)
}

/// Runs the TypeScript-client-like peer, which prints one JSON summary, and checks that it read
/// every event.
fn run_ts_client(command: &mut Command, name: &str) -> Result<Duration, String> {
    let start = Instant::now();
    let mut child = spawn_reader(command, name)?;
    let mut summary = Vec::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_end(&mut summary)
        .map_err(|e| format!("{name}: {e}"))?;
    let status = child.wait().map_err(|e| format!("{name}: {e}"))?;
    let elapsed = start.elapsed();
    if !status.success() {
        return Err(format!("{name}: exited with {status}"));
    }
    let summary = String::from_utf8_lossy(&summary);
    let count = summary.split(',').count();
    if !summary.contains("\"final\":true")
        || !summary.contains("\"dropped\":0")
        || count < EVENTS as usize
    {
        return Err(format!(
            "{name}: did not read every event: {}",
            excerpt(&summary)
        ));
    }
    Ok(elapsed)
}

/// Reads the paced stream through `command` and returns each event's latency in µs.
fn latencies(mut command: Command, name: &str) -> Result<Vec<u64>, String> {
    let mut child = spawn_reader(&mut command, name)?;
    let out = BufReader::new(child.stdout.take().expect("piped"));
    let mut latencies = Vec::new();
    for line in out.lines() {
        let line = line.map_err(|e| format!("{name}: {e}"))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        if let Some(at) = line.find("\"t=") {
            let digits: String = line[at + 3..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(sent) = digits.parse::<u64>() {
                latencies.push(now.saturating_sub(sent));
            }
        }
    }
    let status = child.wait().map_err(|e| format!("{name}: {e}"))?;
    if !status.success() || latencies.len() != PACED_COUNT as usize {
        return Err(format!(
            "{name}: {status}, {} of {PACED_COUNT} stamped events",
            latencies.len()
        ));
    }
    Ok(latencies)
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

fn excerpt(text: &str) -> String {
    text.chars().take(300).collect()
}

/// A server process that announced `listening URL` on its first line; killed on drop.
struct Process {
    child: Child,
    url: String,
}

impl Process {
    fn start(command: &mut Command, name: &str) -> Result<Self, String> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let mut first = String::new();
        let read = BufReader::new(child.stdout.take().expect("piped")).read_line(&mut first);
        let (Ok(_), Some(url)) = (read, first.trim().strip_prefix("listening ")) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{name} did not announce `listening URL`: {first:?}"
            ));
        };
        let url = url.to_owned();
        Ok(Self { child, url })
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

//! `cargo bench -p enclave-cli --bench storm`: a reconnect storm. `enclave serve` (the release
//! binary, a process of its own) streams `SESSIONS` paced sessions to as many
//! `ReconnectingStream`s in this process, through a loopback proxy; once every client is
//! streaming, the proxy cuts every connection at once, as a balancer or a node that drops its
//! clients does. Reported: how long until every client had its next event (p50, p99, all),
//! the server's peak rate of stream connections opened (sampled from its own
//! `/metrics`), its memory before and at the peak, and that no event was lost or repeated
//! (each client checks that every seq is the last one + 1, through `final`).
//!
//! Clients spread their retries: the reconnect policy's jittered exponential backoff (the
//! `backoff` crate's randomization), floored by a server's `Retry-After`.
//!
//! `ENCLAVE_STORM_SESSIONS` (default 2,000) and `ENCLAVE_STORM_EVENTS` (default 300 per
//! session, at 30/s) change the size.

// Counts and times far below 2^52, rounded on purpose for a report.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use enclave_reconnect::{ReconnectPolicy, ReconnectingStream, StreamConfig};
use enclave_testkit::{CutProxy, ProxyConfig};
use enclave_transport::client::{ClientConfig, NewSession};
use enclave_types::{EncryptionMode, EventPayload};

/// How long any one wait may take before the benchmark fails.
const LIMIT: Duration = Duration::from_mins(2);

/// The server process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn start_server(events: u64, rate: u64) -> Server {
    use std::io::BufRead as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_enclave"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--generate",
            &events.to_string(),
            "--rate",
            &rate.to_string(),
        ])
        .args(["--heartbeat-ms", "0", "--allow-tokenless-resume"])
        // The storm is the point: no cap of the server's may refuse it.
        .args([
            "--max-connections",
            "15000",
            "--max-connections-per-peer",
            "15000",
        ])
        .args(["--max-sessions", "15000", "--max-sessions-per-peer", "0"])
        .args(["--max-session-creations-per-sec", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("enclave serve starts (cargo bench builds it)");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut next = |prefix: &str| -> SocketAddr {
        let line = lines
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("enclave serve printed no `{prefix}` line"));
        line.trim()
            .strip_prefix(prefix)
            .and_then(|url| url.strip_prefix("http://"))
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("expected `{prefix}http://…`, got {line:?}"))
    };
    let addr = next("listening ");
    let metrics = next("metrics ");
    Server {
        child,
        addr,
        metrics,
    }
}

/// `VmRSS` and `VmHWM` (peak) of `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The server's `enclave_streams_opened_total`, summed over its labels.
async fn streams_opened(metrics: SocketAddr) -> u64 {
    let request = enclave_testkit::http::request(
        "GET",
        "/metrics",
        &metrics.to_string(),
        &[("Connection", "close")],
        b"",
    );
    let answer = enclave_testkit::http::client::exchange(metrics, &request).await;
    String::from_utf8_lossy(&answer.body)
        .lines()
        .filter(|line| line.starts_with("enclave_streams_opened_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// One client's record.
struct Client {
    /// Events received (each the last seq + 1, checked).
    events: AtomicU64,
    /// Microseconds after the cut of its first event after it; 0: none yet.
    resumed_us: AtomicU64,
}

#[allow(clippy::too_many_lines)] // one storm, read top to bottom
fn main() {
    let sessions = env_or("ENCLAVE_STORM_SESSIONS", 2_000) as usize;
    let events = env_or("ENCLAVE_STORM_EVENTS", 300);
    let rate = 30;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let server = start_server(events, rate);
        let pid = server.child.id();
        let proxy = CutProxy::start(ProxyConfig::new(server.addr))
            .await
            .expect("the proxy");
        let url = proxy.http_url();
        let clients: Arc<Vec<Client>> = Arc::new(
            (0..sessions)
                .map(|_| Client {
                    events: AtomicU64::new(0),
                    resumed_us: AtomicU64::new(0),
                })
                .collect(),
        );
        let cut_at: Arc<std::sync::OnceLock<Instant>> = Arc::new(std::sync::OnceLock::new());
        let finished = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..sessions {
            let config = StreamConfig::new()
                .with_client(ClientConfig::new().with_encryption(EncryptionMode::Disabled))
                .with_policy(
                    ReconnectPolicy::new()
                        .with_max_attempts(30)
                        .with_initial_delay(Duration::from_millis(50))
                        .with_max_delay(Duration::from_secs(2)),
                );
            let mut stream = ReconnectingStream::new(url.clone(), NewSession::new(), config);
            let clients = Arc::clone(&clients);
            let cut_at = Arc::clone(&cut_at);
            let finished = Arc::clone(&finished);
            tasks.spawn(async move {
                let me = &clients[index];
                let mut last = 0;
                loop {
                    match tokio::time::timeout(LIMIT, stream.next()).await {
                        Ok(Some(Ok(event))) => {
                            assert_eq!(event.seq, last + 1, "client {index}: lost or repeated an event");
                            last = event.seq;
                            me.events.fetch_add(1, Ordering::Relaxed);
                            if let Some(cut) = cut_at.get() {
                                let us = u64::try_from(cut.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
                                let _ = me.resumed_us.compare_exchange(0, us, Ordering::AcqRel, Ordering::Acquire);
                            }
                            if matches!(event.payload, EventPayload::Final(_)) {
                                break;
                            }
                        }
                        Ok(Some(Err(err))) if err.is_terminal() => panic!("client {index}: {err}"),
                        Ok(Some(Err(_))) => {}
                        Ok(None) => panic!("client {index}: the stream ended before final"),
                        Err(tokio::time::error::Elapsed { .. }) => {
                            panic!("client {index}: no event for {LIMIT:?} after seq {last}")
                        }
                    }
                }
                finished.fetch_add(1, Ordering::Relaxed);
                stream.close().await;
            });
        }
        // Every client streaming: each has a few events.
        let deadline = Instant::now() + LIMIT;
        while clients.iter().any(|c| c.events.load(Ordering::Relaxed) < 5) {
            assert!(Instant::now() < deadline, "the clients did not all start streaming");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ramp = started.elapsed();
        let (rss_before, _) = memory_kib(pid);
        let opened_before = streams_opened(server.metrics).await;

        // The storm.
        let cut = Instant::now();
        let _ = cut_at.set(cut);
        proxy.cut_all();
        let mut peak_rate = 0.0_f64;
        let mut last_opened = opened_before;
        let mut last_sample = Instant::now();
        let mut peak_hwm = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let opened = streams_opened(server.metrics).await;
            let now = Instant::now();
            let rate = (opened - last_opened) as f64 / now.duration_since(last_sample).as_secs_f64();
            peak_rate = peak_rate.max(rate);
            last_opened = opened;
            last_sample = now;
            peak_hwm = peak_hwm.max(memory_kib(pid).1);
            let waiting = clients
                .iter()
                .filter(|c| c.resumed_us.load(Ordering::Relaxed) == 0)
                .count();
            if waiting == 0 || now.duration_since(cut) > LIMIT {
                assert_eq!(waiting, 0, "{waiting} clients never resumed");
                break;
            }
        }
        let mut resumed: Vec<u64> = clients
            .iter()
            .map(|c| c.resumed_us.load(Ordering::Relaxed))
            .collect();
        resumed.sort_unstable();
        let at = |q: f64| resumed[((resumed.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
        let resumes = last_opened - opened_before;
        while let Some(done) = tasks.join_next().await {
            done.expect("a client task");
        }
        let total: u64 = clients.iter().map(|c| c.events.load(Ordering::Relaxed)).sum();
        assert_eq!(finished.load(Ordering::Relaxed), sessions);
        assert_eq!(total, sessions as u64 * (events + 2), "every event once");
        let (_, hwm) = memory_kib(pid);
        println!();
        println!(
            "reconnect storm: {sessions} sessions of {events} events at {rate}/s, HTTP, plaintext, \
             every connection cut at once {:.1} s in (ramp)",
            ramp.as_secs_f64()
        );
        println!("  all resumed after          {:>9.0} ms (p50 {:.0} ms, p99 {:.0} ms)", at(1.0), at(0.5), at(0.99));
        println!("  streams reopened           {resumes:>9} (the server's streams_opened_total)");
        println!("  peak reopen rate           {peak_rate:>9.0} /s (200 ms samples of /metrics)");
        println!("  server RSS before the cut  {:>9.1} MiB", rss_before as f64 / 1024.0);
        println!("  server peak RSS            {:>9.1} MiB", peak_hwm.max(hwm) as f64 / 1024.0);
        println!("  events delivered           {total:>9} = {sessions} × ({events} + session_init + final): none lost, none repeated");
        proxy.stop().await;
        drop(server);
    });
}

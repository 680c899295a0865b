//! `enclave serve --store redis://…` as a cluster: two server processes on one Redis (a
//! `redis-server` of the test's own), a client reaching them through a round-robin proxy,
//! and node A killed with SIGKILL mid-session. A session whose producer finished before its
//! node died completes on node B; one whose producer died with it ends on node B with
//! `final {ok: false}` and the code `PRODUCER_LOST` once the lease lapses. Either way every
//! seq arrives once, in order.

use crate::served;

use std::time::Duration;

use enclave_reconnect::{ReconnectPolicy, ReconnectingStream, StreamConfig};
use enclave_testkit::http;
use enclave_testkit::{CutProxy, Fault, ProxyConfig, RedisServer};
use enclave_transport::client::{ClientConfig, NewSession};
use enclave_types::{EncryptionMode, EventPayload, StreamEvent};
use served::Served;

const LIMIT: Duration = Duration::from_mins(1);

fn node(redis: &RedisServer, prefix: &str, extra: &[&str]) -> Served {
    let url = redis.url();
    let mut args = vec![
        "--store",
        &url,
        "--store-prefix",
        prefix,
        "--store-lease-ms",
        "600",
        "--encryption",
        "required",
        "--heartbeat-ms",
        "0",
    ];
    args.extend_from_slice(extra);
    Served::start(&args)
}

fn client() -> StreamConfig {
    StreamConfig::new()
        .with_client(
            ClientConfig::new()
                .with_encryption(EncryptionMode::Required)
                .with_connect_timeout(Duration::from_secs(3)),
        )
        .with_policy(
            ReconnectPolicy::new()
                .with_max_attempts(20)
                .with_initial_delay(Duration::from_millis(20))
                .with_max_delay(Duration::from_millis(200)),
        )
        .with_heartbeat_timeout(Duration::from_secs(5))
}

/// A proxy over both nodes: the first connection reaches A, each later one the next node.
async fn proxy(a: &Served, b: &Served) -> CutProxy {
    let addr = |s: &Served| s.authority().parse().expect("a socket address");
    CutProxy::start(ProxyConfig {
        targets: vec![addr(a), addr(b)],
        fault_after_bytes: None,
        fault: Fault::Cut,
        max_faults: 0,
        seed: 1,
    })
    .await
    .expect("the proxy starts")
}

/// Reads `n` events.
async fn read(stream: &mut ReconnectingStream, n: usize, into: &mut Vec<StreamEvent>) {
    for _ in 0..n {
        let event = stream
            .next()
            .await
            .expect("the stream goes on")
            .expect("no error");
        into.push(event);
    }
}

/// Reads to the end.
async fn read_all(stream: &mut ReconnectingStream, into: &mut Vec<StreamEvent>) {
    while let Some(item) = stream.next().await {
        into.push(item.expect("no error: the kill is resumed on node B"));
    }
}

fn assert_contiguous(events: &[StreamEvent]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let want: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, want, "every seq once, in order, across the kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_producer_finished_completes_on_node_b_after_node_a_is_killed() {
    let redis = RedisServer::start().expect("redis-server starts");
    let prefix = format!("cli-finished-{}:", std::process::id());
    // 20,000 events (about 8 MB sealed) outgrow the socket buffers, so a reader that pauses
    // leaves most of them in Redis; the retention bound lets the producer finish at once.
    let mut a = node(
        &redis,
        &prefix,
        &["--generate", "20000", "--max-buffered-events", "100000"],
    );
    let b = node(&redis, &prefix, &["--generate", "0"]);
    let proxy = proxy(&a, &b).await;
    let mut stream = ReconnectingStream::new(proxy.http_url(), NewSession::new(), client());
    let mut events = Vec::new();
    tokio::time::timeout(LIMIT, async {
        read(&mut stream, 100, &mut events).await;
        let id = stream.session_id().expect("a session").clone();
        // The producer finished: node B sees the session completed in the shared store.
        let info = format!("{}/sessions/{id}", b.url);
        // The summary needs the session's token (issue 16); the stream is not read while
        // this polls, so the token does not change meanwhile.
        let token = stream.token().expect("a token").to_owned();
        loop {
            let state = http_get_state(&info, &token).await;
            if state == "completed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        a.kill();
        read_all(&mut stream, &mut events).await;
    })
    .await
    .expect("the session completes within the limit");
    assert_contiguous(&events);
    assert_eq!(events.len(), 20_002, "session_init, 20,000 events, final");
    assert!(matches!(
        events.last().map(|e| &e.payload),
        Some(EventPayload::Final(f)) if f.ok
    ));
    assert!(proxy.connections() >= 2, "the client reached node B");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_producer_died_ends_failed_on_node_b_with_producer_lost() {
    let redis = RedisServer::start().expect("redis-server starts");
    let prefix = format!("cli-died-{}:", std::process::id());
    let mut a = node(&redis, &prefix, &["--generate", "100000", "--rate", "2000"]);
    let b = node(&redis, &prefix, &["--generate", "0"]);
    let proxy = proxy(&a, &b).await;
    let mut stream = ReconnectingStream::new(proxy.http_url(), NewSession::new(), client());
    let mut events = Vec::new();
    let started = tokio::time::Instant::now();
    tokio::time::timeout(LIMIT, async {
        read(&mut stream, 200, &mut events).await;
        a.kill();
        read_all(&mut stream, &mut events).await;
    })
    .await
    .expect("the session ends within the limit");
    assert_contiguous(&events);
    let Some(EventPayload::Final(last)) = events.last().map(|e| &e.payload) else {
        panic!("the stream ends with a final");
    };
    assert!(!last.ok);
    assert_eq!(
        last.error.as_ref().and_then(|e| e.code.as_deref()),
        Some(enclave_redis::PRODUCER_LOST)
    );
    println!(
        "node A killed after the client read 200 events; {} events delivered in all, the last a PRODUCER_LOST final from node B, {:?} after the start",
        events.len(),
        started.elapsed()
    );
    proxy.stop().await;
}

/// The `state` of `GET url` (a session's info), by hand over a TCP socket.
async fn http_get_state(url: &str, token: &str) -> String {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (authority, path) = rest.split_once('/').expect("a path");
    let addr: std::net::SocketAddr = authority.parse().expect("an address");
    let headers = [("X-Enclave-Resume-Token", token), ("Connection", "close")];
    let get = http::request("GET", &format!("/{path}"), authority, &headers, b"");
    // The chunked body, de-chunked, is the JSON object.
    let response = http::client::exchange(addr, &get).await;
    serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|v| v.get("state").and_then(|s| s.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

/// The TypeScript client (the Node peer that behaves like it) on two nodes: the session is
/// produced on node A, which runs ahead of the reader; a proxy sends each reconnect to the
/// other node and resets every connection after about 400 KB. A node that serves a session
/// produced elsewhere keeps what it wrote last in Redis, as the producing node does, so every
/// resume finds what the resets lost.
#[test]
fn the_typescript_client_reads_a_session_exactly_once_through_resets_across_two_nodes() {
    let redis = RedisServer::start().expect("redis-server starts");
    let prefix = format!("cli-resets-{}:", std::process::id());
    let node = |generate: &str| {
        Served::start(&[
            "--store",
            &redis.url(),
            "--store-prefix",
            &prefix,
            "--heartbeat-ms",
            "0",
            "--allow-tokenless-resume",
            "--generate",
            generate,
        ])
    };
    let (a, b) = (node("20000"), node("0"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let addr = |s: &Served| s.authority().parse().expect("a socket address");
    let proxy = runtime
        .block_on(CutProxy::start(ProxyConfig {
            targets: vec![addr(&a), addr(&b)],
            fault_after_bytes: Some((350_000, 450_000)),
            fault: Fault::Reset,
            max_faults: 6,
            seed: 16,
        }))
        .expect("the proxy starts");
    let mut summary = served::summary(served::spawn_ts_client(
        &proxy.http_url(),
        &["--work-us", "40"],
    ));
    let seqs = served::seqs(&summary);
    summary["seqs"] = serde_json::Value::from(seqs.len());
    assert!(summary["error"].is_null(), "{summary}");
    assert_eq!(summary["final"], true, "{summary}");
    assert_eq!(seqs, (1..=20_002).collect::<Vec<u64>>(), "{summary}");
    assert_eq!(proxy.faults(), 6);
    runtime.block_on(proxy.stop());
}

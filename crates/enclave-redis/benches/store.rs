//! The Redis store against the in-memory store, in the same run, through the session hub:
//! events/s and publish-to-delivery latency (p50/p99) for one session and for 1,000
//! concurrent sessions, and what Redis spends per retained event.
//!
//! Each session's events are published by the application and read by an attachment of the
//! hub (the transport's side of a connection), so the figures are the store's and the hub's,
//! without sockets or encryption (the end-to-end benchmarks of enclave-reconnect have those).
//! The Redis is a `redis-server` of the benchmark's own on a Unix socket, persistence off.
//!
//! Run with `cargo bench -p enclave-redis --bench store` (`ENCLAVE_BENCH_QUICK=1` divides
//! the sizes by ten).

// Event counts, byte counts and indexes here stay far below 2^52, where f64 is exact.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use enclave_reconnect::store::{EncodedEvent, MemoryStore, NewEvent, Store};
use enclave_reconnect::{Hub, HubConfig};
use enclave_redis::{RedisStore, RedisStoreConfig};
use enclave_testkit::RedisServer;
use enclave_transport::{CreateSession, Outgoing, SessionService};
use enclave_types::fixtures::mixed_stream;
use enclave_types::{EventPayload, FinalPayload, SessionId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RUNS: usize = 3;

fn size(full: u64) -> u64 {
    if std::env::var_os("ENCLAVE_BENCH_QUICK").is_some() {
        full / 10
    } else {
        full
    }
}

/// What one run measured.
struct Sample {
    events: u64,
    took: Duration,
    latencies: Vec<Duration>,
}

impl Sample {
    fn rate(&self) -> f64 {
        self.events as f64 / self.took.as_secs_f64()
    }

    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        let last = self.latencies.len().saturating_sub(1);
        let index = ((last as f64) * p).round() as usize;
        self.latencies.get(index).copied().unwrap_or_default()
    }
}

/// How the application publishes.
#[derive(Clone, Copy)]
enum Publish {
    /// `publish`: each returns once the store holds the event.
    Durable,
    /// `publish_queued`: returns once the event is queued; the lane appends in batches.
    Queued,
}

/// `sessions` sessions of `per_session` events each, published and read concurrently.
async fn run(store: Arc<dyn Store>, sessions: u64, per_session: u64, mode: Publish) -> Sample {
    let hub = Hub::new(
        HubConfig::default()
            .with_heartbeat_ms(0)
            .with_max_sessions(usize::try_from(sessions).unwrap_or(usize::MAX) + 10)
            .with_store(store),
    );
    let payloads: Arc<Vec<EventPayload>> = Arc::new(
        mixed_stream(usize::try_from(per_session).unwrap_or(0), 0x5eed)
            .into_iter()
            .map(|e| e.payload)
            .collect(),
    );
    let started = Instant::now();
    let mut readers = Vec::new();
    let mut producers = Vec::new();
    for _ in 0..sessions {
        let mut attachment = hub
            .create(CreateSession::new(SessionId::generate()))
            .await
            .expect("create");
        let session = hub.accept().await.expect("a session");
        // Publish instants by seq, read by the reader when the event arrives.
        let stamps = Arc::new(std::sync::Mutex::new(HashMap::<u64, Instant>::new()));
        let producer_stamps = Arc::clone(&stamps);
        let payloads = Arc::clone(&payloads);
        producers.push(tokio::spawn(async move {
            for payload in payloads.iter() {
                let at = Instant::now();
                let published = match mode {
                    Publish::Durable => session.handle.publish(payload.clone()).await,
                    Publish::Queued => session.handle.publish_queued(payload.clone()).await,
                };
                let seq = published.expect("publish");
                producer_stamps.lock().unwrap().entry(seq).or_insert(at);
            }
            session
                .handle
                .finish(FinalPayload::new(true))
                .await
                .expect("final");
        }));
        readers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut events = 0u64;
            while let Some(item) = attachment.events.next().await {
                let Outgoing::Event(event) = item else {
                    continue;
                };
                let now = Instant::now();
                attachment.events.written(event.seq);
                attachment.upstream.ack(event.seq);
                events += 1;
                if let Some(at) = stamps.lock().unwrap().remove(&event.seq) {
                    latencies.push(now - at);
                }
            }
            (events, latencies)
        }));
    }
    let mut events = 0;
    let mut latencies = Vec::new();
    for reader in readers {
        let (n, mut l) = reader.await.expect("reader");
        events += n;
        latencies.append(&mut l);
    }
    for producer in producers {
        producer.await.expect("producer");
    }
    let took = started.elapsed();
    hub.shutdown();
    Sample {
        events,
        took,
        latencies,
    }
}

/// `MEMORY USAGE key SAMPLES 0` (every element counted) on the server at `socket`.
async fn memory_usage(socket: &std::path::Path, key: &str) -> u64 {
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    let command = format!(
        "*5\r\n$6\r\nMEMORY\r\n$5\r\nUSAGE\r\n${}\r\n{key}\r\n$7\r\nSAMPLES\r\n$1\r\n0\r\n",
        key.len()
    );
    stream.write_all(command.as_bytes()).await.expect("write");
    let mut reply = vec![0u8; 128];
    let n = stream.read(&mut reply).await.expect("read");
    let text = String::from_utf8_lossy(&reply[..n]);
    text.trim()
        .strip_prefix(':')
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("MEMORY USAGE {key} answered {text:?}"))
}

async fn connect(server: &RedisServer, prefix: &str) -> Arc<dyn Store> {
    Arc::new(
        RedisStore::connect(
            &server.url(),
            RedisStoreConfig::default().with_prefix(prefix),
        )
        .await
        .expect("the store connects"),
    )
}

fn report(name: &str, memory: &mut [Sample], redis: &mut [Sample]) {
    let median = |samples: &mut [Sample]| {
        samples.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        samples.len() / 2
    };
    let m = median(memory);
    let r = median(redis);
    let (mem, red) = (&mut memory[m], &mut redis[r]);
    let (mem_p50, mem_p99) = (mem.percentile(0.5), mem.percentile(0.99));
    let (red_p50, red_p99) = (red.percentile(0.5), red.percentile(0.99));
    println!(
        "{name:<26} memory {:>9.0} ev/s p50 {:>8.3} ms p99 {:>8.3} ms | redis {:>9.0} ev/s p50 {:>8.3} ms p99 {:>8.3} ms | redis/memory {:.2}x",
        mem.rate(),
        mem_p50.as_secs_f64() * 1e3,
        mem_p99.as_secs_f64() * 1e3,
        red.rate(),
        red_p50.as_secs_f64() * 1e3,
        red_p99.as_secs_f64() * 1e3,
        red.rate() / mem.rate(),
    );
}

/// The floor: a `PING` round trip on the raw socket, against one store append and one read.
async fn floors(server: &RedisServer) {
    let n = size(20_000);
    let mut raw = tokio::net::UnixStream::connect(server.socket())
        .await
        .expect("connect");
    let mut reply = [0u8; 7];
    let started = Instant::now();
    for _ in 0..n {
        raw.write_all(b"PING\r\n").await.expect("write");
        raw.read_exact(&mut reply).await.expect("read");
    }
    let ping = started.elapsed() / u32::try_from(n).unwrap_or(1);
    let store = connect(server, "bench:floor:").await;
    let id = SessionId::generate();
    let meta = enclave_reconnect::store::SessionMeta::new(id.clone(), 1, 0, u64::MAX / 4, false);
    let token = enclave_reconnect::store::TokenHash::of("t");
    store
        .create(meta, enclave_reconnect::store::TokenHashes::first(token))
        .await
        .expect("create");
    let events = mixed_stream(usize::try_from(n).unwrap_or(0), 7);
    let started = Instant::now();
    for (seq, event) in (1..).zip(&events) {
        let mut event = event.clone();
        event.session_id = id.clone();
        event.seq = seq;
        store
            .append(
                &id,
                &[NewEvent::with_bytes(
                    Arc::new(EncodedEvent::new(event).expect("serializable")),
                    200,
                )],
            )
            .await
            .expect("append");
    }
    let append = started.elapsed() / u32::try_from(n).unwrap_or(1);
    let started = Instant::now();
    for seq in 1..=n {
        store.read(&id, seq, 1).await.expect("read");
    }
    let read = started.elapsed() / u32::try_from(n).unwrap_or(1);
    println!(
        "floors: PING round trip {:.1} us | store append {:.1} us | store read of one event {:.1} us",
        ping.as_secs_f64() * 1e6,
        append.as_secs_f64() * 1e6,
        read.as_secs_f64() * 1e6
    );
}

/// What Redis itself does on this host, in the same run: `redis-benchmark` XADD from one
/// connection (unpipelined, and 64 commands pipelined) and from 50 connections (16
/// pipelined, over 1,000 keys), on the benchmark's own server.
fn redis_benchmark_floors(server: &RedisServer) {
    let n = size(200_000).to_string();
    let socket = server.socket().to_string_lossy().into_owned();
    let floors = [
        ("1 connection", "1", "1", "bench:rb:one"),
        ("1 connection, pipeline 64", "1", "64", "bench:rb:one"),
        (
            "50 connections, pipeline 16, 1000 keys",
            "50",
            "16",
            "bench:rb:__rand_int__",
        ),
    ];
    // An event line of the mixed stream's mean size (about 217 bytes).
    let line = format!(
        "{{\"protocolVersion\":1,\"sessionId\":\"s_{}\",\"seq\":1,\"type\":\"stdout\",\"payload\":{{\"chunk\":\"{}\"}}}}",
        "0".repeat(36),
        "x".repeat(110)
    );
    let mut figures = Vec::new();
    for (name, clients, pipeline, key) in floors {
        let output = std::process::Command::new("redis-benchmark")
            .args([
                "-s", &socket, "-c", clients, "-P", pipeline, "-n", &n, "-r", "1000", "--csv",
            ])
            .args(["XADD", key, "*", "json", &line])
            .output();
        let rate = match output {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
                .lines()
                // "test","rps",six latencies: the command may hold commas, the figures not.
                .filter_map(|line| line.rsplit(',').nth(6))
                .map(|field| field.trim_matches('"').to_owned())
                .find(|field| field.parse::<f64>().is_ok())
                .map_or_else(
                    || "?".to_owned(),
                    |rps| format!("{:.0}", rps.parse::<f64>().unwrap_or(0.0)),
                ),
            Ok(out) => format!("failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
            Err(err) => format!("not run: {err}"),
        };
        figures.push(format!("{name} {rate} XADD/s"));
    }
    println!("redis-benchmark floors: {}", figures.join(" | "));
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let server = RedisServer::start().expect("redis-server starts");
        println!(
            "store benchmark: median of {RUNS} runs each, contenders alternating; latency = publish to delivery"
        );
        floors(&server).await;
        redis_benchmark_floors(&server);
        let cases = [
            ("1 session", 1, size(50_000), Publish::Durable, "publish"),
            ("1 session", 1, size(100_000), Publish::Queued, "queued"),
            ("1000 sessions", 1_000, size(100), Publish::Durable, "publish"),
            ("1000 sessions", 1_000, size(300), Publish::Queued, "queued"),
        ];
        for (index, (name, sessions, per_session, mode, how)) in cases.into_iter().enumerate() {
            let mut memory = Vec::new();
            let mut redis = Vec::new();
            for round in 0..RUNS {
                memory.push(run(Arc::new(MemoryStore::new()), sessions, per_session, mode).await);
                let store = connect(&server, &format!("bench:{index}:{round}:")).await;
                redis.push(run(store, sessions, per_session, mode).await);
            }
            report(
                &format!("{name} x {per_session} {how}"),
                &mut memory,
                &mut redis,
            );
        }

        // What a retained event costs Redis: one session holding N events, none trimmed.
        let retained = size(100_000);
        let store = connect(&server, "bench:memory:").await;
        let hub = Hub::new(
            HubConfig::default()
                .with_heartbeat_ms(0)
                .with_max_buffered_events(retained + 10)
                .with_max_buffered_bytes(u64::MAX)
                .with_store(store),
        );
        let attachment = hub
            .create(CreateSession::new(SessionId::generate()))
            .await
            .expect("create");
        let session = hub.accept().await.expect("a session");
        let payloads = mixed_stream(usize::try_from(retained).unwrap_or(0), 0x5eed);
        let mut json_bytes = 0usize;
        for event in &payloads {
            json_bytes += serde_json::to_vec(event).map_or(0, |v| v.len());
            session.handle.publish(event.payload.clone()).await.expect("publish");
        }
        let id = attachment.session_id.as_str().to_owned();
        let mut usage = 0;
        for key in ["events", "meta"] {
            usage += memory_usage(server.socket(), &format!("bench:memory:{{{id}}}:{key}")).await;
        }
        let per_event = usage as f64 / retained as f64;
        println!(
            "redis memory per retained event: {per_event:.0} bytes ({retained} events of {:.0} JSON bytes on average, {:.2}x their size)",
            json_bytes as f64 / retained as f64,
            per_event / (json_bytes as f64 / retained as f64),
        );
        hub.shutdown();
    });
}

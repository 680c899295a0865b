//! Resume under cuts, over loopback, encrypted, HTTP NDJSON and WebSocket: throughput of a
//! `ReconnectingStream` through a `CutProxy` that cuts about every 5,000 events' worth of
//! bytes, against the same client on a straight connection, in the same run; resume latency
//! (from the client's `Disconnected` to the next event delivered, p50/p99); and the server's
//! memory with one stalled reader on a 1,000,000-event session.
//!
//! Run with `cargo bench -p enclave-reconnect --bench resume` (`ENCLAVE_BENCH_QUICK=1`
//! divides the sizes by ten). The proxy does not expose when it cuts, so the cut is dated
//! client-side: a task stamps each `ConnectionEvent::Disconnected` from the stream's
//! broadcast as it arrives; the resume ends at the first event delivered after that stamp.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::{median_index, mib, ms, percentile, size, vm_rss};
use enclave_reconnect::{
    ConnectionEvent, Hub, HubConfig, ReconnectPolicy, ReconnectingStream, StreamConfig,
};
use enclave_testkit::{CutProxy, ProxyConfig};
use enclave_transport::client::{connect, ClientConfig, NewSession, Open};
use enclave_transport::{Server, ServerConfig};
use enclave_types::fixtures::mixed_stream;
use enclave_types::{EncryptionMode, EventPayload, FinalPayload};
use tokio::net::TcpListener;

const RUNS: usize = 3;
const SEED: u64 = 0x5eed;
/// Events between two cuts.
const CUT_EVERY: u64 = 5_000;
/// An encrypted line of the mixed stream is about this long (a 218-byte event, sealed,
/// base64, in its `enc` envelope).
const SEALED_LINE_BYTES: u64 = 400;
const LIMIT: Duration = Duration::from_mins(1);

/// One run of one contender.
#[derive(Debug)]
struct Sample {
    events: u64,
    took: Duration,
    cuts: u64,
    resumes: Vec<Duration>,
}

/// A hub behind the transport server on `127.0.0.1:0`, encryption as the client asks,
/// heartbeats off; its application publishes `payloads` into every session, then `final`.
struct Stack {
    hub: Hub,
    server: Server,
    addr: std::net::SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Stack {
    async fn start(payloads: Arc<Vec<EventPayload>>, config: HubConfig) -> Self {
        let hub = Hub::new(config.with_heartbeat_ms(0));
        let server = Server::new(Arc::new(hub.clone()), ServerConfig::default());
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let serving = tokio::spawn({
            let server = server.clone();
            async move {
                let _ = server.serve(listener, std::future::pending()).await;
            }
        });
        let app = tokio::spawn({
            let hub = hub.clone();
            async move {
                while let Some(session) = hub.accept().await {
                    let payloads = Arc::clone(&payloads);
                    tokio::spawn(async move {
                        for payload in payloads.iter() {
                            if session.handle.publish(payload.clone()).await.is_err() {
                                return;
                            }
                        }
                        let _ = session.handle.finish(FinalPayload::new(true)).await;
                    });
                }
            }
        });
        Self {
            hub,
            server,
            addr,
            tasks: vec![serving, app],
        }
    }

    fn stop(self) {
        self.server.shutdown();
        self.hub.shutdown();
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Reads one session to `final` through a `ReconnectingStream`, straight or through a
/// proxy that cuts.
async fn run(payloads: &Arc<Vec<EventPayload>>, ws: bool, cut: bool) -> Sample {
    let stack = Stack::start(Arc::clone(payloads), HubConfig::default()).await;
    let proxy = if cut {
        let every = CUT_EVERY * SEALED_LINE_BYTES;
        Some(
            CutProxy::start(ProxyConfig::new(stack.addr).fault_after(every * 3 / 4, every * 5 / 4))
                .await
                .expect("proxy"),
        )
    } else {
        None
    };
    let url = match (&proxy, ws) {
        (Some(proxy), true) => proxy.ws_url(),
        (Some(proxy), false) => proxy.http_url(),
        (None, true) => format!("ws://{}", stack.addr),
        (None, false) => format!("http://{}", stack.addr),
    };
    let config = StreamConfig::new()
        .with_client(ClientConfig::new().with_encryption(EncryptionMode::Required))
        .with_policy(
            ReconnectPolicy::new()
                .with_max_attempts(20)
                .with_initial_delay(Duration::from_millis(5))
                .with_max_delay(Duration::from_millis(100)),
        );
    let mut stream = ReconnectingStream::new(url, NewSession::new(), config);
    let disconnects = Arc::new(Mutex::new(Vec::new()));
    let watcher = {
        let mut events = stream.events();
        let disconnects = Arc::clone(&disconnects);
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(ConnectionEvent::Disconnected { reason }) => {
                        if std::env::var_os("ENCLAVE_BENCH_VERBOSE").is_some() {
                            eprintln!("disconnected: {reason}");
                        }
                        disconnects
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(Instant::now());
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    };
    let started = Instant::now();
    let mut delivered = Vec::with_capacity(payloads.len() + 2);
    let mut last_seq = 0;
    loop {
        match tokio::time::timeout(LIMIT, stream.next()).await {
            Ok(Some(Ok(event))) => {
                delivered.push(Instant::now());
                assert_eq!(event.seq, last_seq + 1, "lost or duplicated an event");
                last_seq = event.seq;
                if matches!(event.payload, EventPayload::Final(_)) {
                    break;
                }
            }
            Ok(Some(Err(err))) if err.is_terminal() => panic!("ws={ws} cut={cut}: {err}"),
            Ok(Some(Err(_))) => {}
            Ok(None) => panic!("ws={ws} cut={cut}: the stream ended before final"),
            Err(tokio::time::error::Elapsed { .. }) => {
                panic!("ws={ws} cut={cut}: no event for {LIMIT:?} after seq {last_seq}")
            }
        }
    }
    let took = started.elapsed();
    stream.close().await;
    watcher.abort();
    let cuts = proxy.as_ref().map_or(0, CutProxy::faults);
    if let Some(proxy) = proxy {
        proxy.stop().await;
    }
    stack.stop();
    let disconnects =
        std::mem::take(&mut *disconnects.lock().unwrap_or_else(PoisonError::into_inner));
    let resumes = disconnects
        .iter()
        .filter_map(|at| {
            let next = delivered.partition_point(|t| t <= at);
            delivered.get(next).map(|t| t.duration_since(*at))
        })
        .collect();
    Sample {
        events: last_seq,
        took,
        cuts,
        resumes,
    }
}

#[allow(clippy::cast_precision_loss)]
fn row(name: &str, samples: &mut [Sample], straight: Option<f64>) -> f64 {
    let took: Vec<Duration> = samples.iter().map(|s| s.took).collect();
    let median = &mut samples[median_index(&took)];
    let rate = median.events as f64 / median.took.as_secs_f64();
    let (p50, p99) = if median.resumes.is_empty() {
        ("-".to_owned(), "-".to_owned())
    } else {
        (
            ms(percentile(&mut median.resumes, 50.0)),
            ms(percentile(&mut median.resumes, 99.0)),
        )
    };
    let ratio = straight.map_or_else(|| "1.00".to_owned(), |s| format!("{:.2}", rate / s));
    println!(
        "{name:<22} {rate:>10.0} {:>6} {:>11} {:>11} {ratio:>12}",
        median.cuts, p50, p99
    );
    rate
}

/// One session of `events` events whose client opens (acknowledging, `resume` feature) and
/// then reads nothing: the producer must stop once retention is full, and the server's
/// memory must stay within the bound plus a constant.
async fn stalled(events: u64) {
    let sample: Vec<EventPayload> = mixed_stream(10_000, SEED)
        .into_iter()
        .map(|event| event.payload)
        .collect();
    let config = HubConfig::default().with_heartbeat_ms(0);
    let (max_events, max_bytes) = (config.max_buffered_events, config.max_buffered_bytes);
    let hub = Hub::new(config);
    let server = Server::new(Arc::new(hub.clone()), ServerConfig::default());
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let serving = tokio::spawn(server.clone().serve(listener, std::future::pending()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = vm_rss("self").expect("VmRSS");

    let conn = connect(
        &format!("http://{addr}"),
        Open::New(NewSession::new()),
        &ClientConfig::new().with_encryption(EncryptionMode::Required),
    )
    .await
    .expect("connect");
    let session = hub.accept().await.expect("a session");
    let published = Arc::new(AtomicU64::new(0));
    let producer = tokio::spawn({
        let published = Arc::clone(&published);
        async move {
            for payload in sample
                .iter()
                .cycle()
                .take(usize::try_from(events).unwrap_or(usize::MAX))
            {
                if session.handle.publish(payload.clone()).await.is_err() {
                    return;
                }
                published.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    // Blocked: no progress for a second.
    let mut last = u64::MAX;
    let mut peak = before;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        peak = peak.max(vm_rss("self").expect("VmRSS"));
        let now = published.load(Ordering::Relaxed);
        if now == last || now >= events {
            break;
        }
        last = now;
    }
    let published = published.load(Ordering::Relaxed);
    let growth = peak.saturating_sub(before);
    println!(
        "\nstalled reader, one session of {events} events (encrypted HTTP, client acknowledges, reads nothing), policy wait, default bounds ({max_events} events / {})",
        mib(max_bytes)
    );
    println!(
        "  producer {} after {published} events; VmRSS {} before, {} at most: growth {} vs the byte bound {} ({})",
        if published < events { "blocked" } else { "finished" },
        mib(before),
        mib(peak),
        mib(growth),
        mib(max_bytes),
        if growth <= max_bytes + 8 * 1024 * 1024 { "within bound + 8 MiB" } else { "OVER bound + 8 MiB" },
    );
    producer.abort();
    conn.close().await;
    server.shutdown();
    hub.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
}

fn main() {
    let events = size(200_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let payloads: Arc<Vec<EventPayload>> = Arc::new(
        mixed_stream(events - 2, SEED)
            .into_iter()
            .map(|event| event.payload)
            .collect(),
    );
    runtime.block_on(async {
        // First, while the allocator holds no freed memory that would hide growth.
        stalled(size(1_000_000) as u64).await;
        let _ = run(&payloads, false, false).await; // warm-up
        let mut samples: [Vec<Sample>; 4] = Default::default();
        for _ in 0..RUNS {
            samples[0].push(run(&payloads, false, false).await);
            samples[1].push(run(&payloads, false, true).await);
            samples[2].push(run(&payloads, true, false).await);
            samples[3].push(run(&payloads, true, true).await);
        }
        println!(
            "{events} events per session, encrypted, ReconnectingStream, cuts about every {CUT_EVERY} events, median of {RUNS} runs"
        );
        println!(
            "{:<22} {:>10} {:>6} {:>11} {:>11} {:>12}",
            "", "events/s", "cuts", "resume p50", "resume p99", "vs straight"
        );
        let [http, http_cut, ws, ws_cut] = &mut samples;
        let straight_http = row("HTTP straight", http, None);
        row("HTTP cut", http_cut, Some(straight_http));
        let straight_ws = row("WS straight", ws, None);
        row("WS cut", ws_cut, Some(straight_ws));
    });
}

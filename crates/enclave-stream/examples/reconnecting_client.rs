//! The seed README's `ReconnectingStream`, against a server that drops the connection: a
//! runtime (the session hub behind the transport server, encryption required) streams a
//! session of events over WebSocket through a proxy that cuts the link several times
//! mid-stream; the client resumes after each cut and gets every event exactly once, in order.
//!
//! `cargo run -p enclave-stream --example reconnecting_client`

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use enclave_stream::prelude::*;
use enclave_stream::reconnect::AcceptedSession;
use enclave_testkit::{CutProxy, ProxyConfig};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Stdout events per session; with `session_init` and `final` the client gets two more.
const EVENTS: u64 = 3_000;
/// Connections the proxy cuts.
const CUTS: u64 = 3;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    Box::pin(tokio::time::timeout(Duration::from_secs(30), run()))
        .await
        .map_err(|_| "did not finish within 30 s")?
}

async fn run() -> Result<(), BoxError> {
    // The server: a hub behind the transport server on loopback, encryption required.
    let hub = Hub::new(HubConfig::default().with_heartbeat_ms(500));
    let server = Server::new(
        Arc::new(hub.clone()),
        ServerConfig::default().with_encryption(EncryptionMode::Required),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let serving = tokio::spawn(server.clone().serve(listener, std::future::pending()));
    let runtime = tokio::spawn(stream_sessions(hub.clone()));

    // A proxy in front of it that cuts each connection after 30–90 kB, three times.
    let mut proxy_config = ProxyConfig::new(addr).fault_after(30_000, 90_000);
    proxy_config.max_faults = CUTS;
    proxy_config.seed = 7;
    let proxy = CutProxy::start(proxy_config).await?;
    println!("server on {addr}, cutting proxy on {}", proxy.addr());

    let delivered = Arc::new(Mutex::new(Vec::new()));
    let reconnects = Arc::new(AtomicU32::new(0));
    let (seqs, count) = (Arc::clone(&delivered), Arc::clone(&reconnects));
    let started = Instant::now();
    let mut stream = ReconnectingStream::builder(proxy.ws_url())
        .client(ClientConfig::new().with_encryption(EncryptionMode::Required))
        .max_attempts(10)
        .initial_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(500))
        .backoff_multiplier(2.0)
        .on_reconnect(move |attempt| {
            count.fetch_add(1, Ordering::Relaxed);
            println!("reconnected (attempt {attempt})");
        })
        .on_message(move |event: StreamEvent| {
            seqs.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(event.seq);
        })
        .connect()
        .await?;
    let session = stream.session_id().map(|id| id.as_str().to_owned());
    println!(
        "connected to session {}, encrypted: {}",
        session.as_deref().unwrap_or("-"),
        stream.encrypted()
    );
    let result = stream.run().await;

    // Stop everything this example started, whatever the outcome.
    proxy.stop().await;
    server.shutdown();
    hub.shutdown();
    runtime.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;

    let count = result?;
    let delivered = delivered.lock().unwrap_or_else(PoisonError::into_inner);
    let expected: Vec<u64> = (1..=EVENTS + 2).collect();
    let reconnects = reconnects.load(Ordering::Relaxed);
    println!(
        "delivered {count} events in {:.2} s across {reconnects} reconnects: seq 1..={} each once, in order: {}",
        started.elapsed().as_secs_f64(),
        EVENTS + 2,
        *delivered == expected
    );
    if *delivered != expected {
        return Err("events were lost, duplicated or reordered".into());
    }
    if u64::from(reconnects) != CUTS {
        return Err(format!("expected {CUTS} reconnects, saw {reconnects}").into());
    }
    Ok(())
}

/// The runtime: each session gets `EVENTS` stdout lines, then `final`.
async fn stream_sessions(hub: Hub) {
    while let Some(session) = hub.accept().await {
        tokio::spawn(stream_session(session));
    }
}

async fn stream_session(session: AcceptedSession) -> Result<(), enclave_stream::reconnect::Error> {
    for n in 1..=EVENTS {
        session
            .handle
            .publish(StdoutPayload::new(format!("line {n} of {EVENTS}\n")))
            .await?;
    }
    session.handle.finish(FinalPayload::new(true)).await?;
    Ok(())
}

//! `enclave demo`: the whole stack in one process, with the network misbehaving on purpose.
//!
//! A server (the session hub behind the transport, encryption required) and a reconnecting
//! client talk over loopback through a proxy that cuts the connection several times
//! mid-stream — once over WebSocket, once over HTTP NDJSON. The client sends messages while
//! it reads. At the end the demo checks what arrived on both sides and prints a short
//! summary: events delivered, reconnects, lost, duplicated, throughput. Exit status 0 when
//! nothing was lost or duplicated, 1 otherwise.

use std::collections::BTreeSet;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use enclave_reconnect::{
    AcceptedSession, Hub, HubConfig, ReconnectPolicy, ReconnectingStream, StreamConfig,
};
use enclave_testkit::{CutProxy, ProxyConfig};
use enclave_transport::client::{ClientConfig, NewSession as OpenSession};
use enclave_transport::{Server, ServerConfig};
use enclave_types::{
    CallId, EncryptionMode, FinalPayload, RawJson, RuntimeChannelPayload, ToolResultSubmitPayload,
};

use crate::generate::Script;
use crate::input::{report, EXIT_BAD_LINES, EXIT_FAILURE, EXIT_OK};

/// Arguments of `enclave demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Events per session.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    events: u64,

    /// Messages the client sends per session.
    #[arg(long, value_name = "N", default_value_t = 200)]
    messages: u64,

    /// Connection cuts per session.
    #[arg(long, value_name = "N", default_value_t = 4)]
    cuts: u64,
}

/// What one run observed.
#[derive(Debug, Default)]
struct Outcome {
    delivered: u64,
    lost: u64,
    duplicated: u64,
    reconnects: u64,
    messages_received: u64,
    messages_lost: u64,
    messages_duplicated: u64,
    elapsed: Duration,
}

impl Outcome {
    fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.messages_lost == 0
            && self.messages_duplicated == 0
    }
}

/// Runs `enclave demo`.
pub(crate) fn run(args: &DemoArgs) -> ExitCode {
    if args.events == 0 {
        report(format_args!("enclave demo: --events must be at least 1"));
        return ExitCode::from(EXIT_FAILURE);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            report(format_args!(
                "enclave demo: cannot start the runtime: {err}"
            ));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(demo(args))
}

async fn demo(args: &DemoArgs) -> ExitCode {
    let hub = Hub::new(HubConfig::default().with_heartbeat_ms(500));
    let server = Server::new(
        Arc::new(hub.clone()),
        ServerConfig::default().with_encryption(EncryptionMode::Required),
    );
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
        Ok(listener) => listener,
        Err(err) => {
            report(format_args!(
                "enclave demo: cannot listen on loopback: {err}"
            ));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let Ok(addr) = listener.local_addr() else {
        report(format_args!(
            "enclave demo: cannot read the listening address"
        ));
        return ExitCode::from(EXIT_FAILURE);
    };
    let serving = tokio::spawn(server.clone().serve(listener, std::future::pending()));
    let received = Received::default();
    let application = tokio::spawn(run_sessions(
        hub.clone(),
        args.events,
        args.messages,
        Arc::clone(&received),
    ));

    let mut all_clean = true;
    let mut out = io::stdout().lock();
    for (name, ws) in [("WebSocket", true), ("HTTP NDJSON", false)] {
        let outcome = match one_run(addr, ws, args, &received).await {
            Ok(outcome) => outcome,
            Err(message) => {
                report(format_args!("enclave demo: {name}: {message}"));
                all_clean = false;
                continue;
            }
        };
        all_clean &= outcome.clean();
        #[allow(clippy::cast_precision_loss)] // event counts far below 2^52
        let rate = outcome.delivered as f64 / outcome.elapsed.as_secs_f64().max(1e-9);
        let _ = writeln!(
            out,
            "{name:<12} {} events delivered in {:.2} s ({rate:.0} events/s), encrypted, {} reconnects, \
             lost {}, duplicated {}; {} messages up, lost {}, duplicated {}",
            outcome.delivered,
            outcome.elapsed.as_secs_f64(),
            outcome.reconnects,
            outcome.lost,
            outcome.duplicated,
            outcome.messages_received,
            outcome.messages_lost,
            outcome.messages_duplicated,
        );
        let _ = out.flush();
    }
    server.shutdown();
    hub.shutdown();
    application.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
    ExitCode::from(if all_clean { EXIT_OK } else { EXIT_BAD_LINES })
}

/// Seqs of client messages each session's application received, by session: written by the
/// application side, read by the checks at the end of a run.
type Received = Arc<Mutex<Vec<(String, Vec<u64>)>>>;

/// The application: streams `events` generated events into each session, collects its
/// client messages (waiting for `messages` of them, or a few seconds), then ends it.
async fn run_sessions(hub: Hub, events: u64, messages: u64, received: Received) {
    while let Some(session) = hub.accept().await {
        tokio::spawn(run_session(
            session,
            events,
            messages,
            Arc::clone(&received),
        ));
    }
}

async fn run_session(
    session: AcceptedSession,
    events: u64,
    expected_messages: u64,
    received: Received,
) {
    let AcceptedSession {
        handle,
        mut messages,
        ..
    } = session;
    let id = handle.session_id().as_str().to_owned();
    let slot = {
        let mut all = received.lock().unwrap_or_else(PoisonError::into_inner);
        all.push((id.clone(), Vec::new()));
        all.len() - 1
    };
    let collector = tokio::spawn(async move {
        let mut count = 0;
        while let Some(message) = messages.recv().await {
            let mut all = received.lock().unwrap_or_else(PoisonError::into_inner);
            all[slot].1.push(message.seq.unwrap_or(0));
            count += 1;
            if count >= expected_messages {
                break;
            }
        }
    });
    let script = Script::Generate(events);
    for index in 0..events {
        if handle.publish(script.payload(index)).await.is_err() {
            return;
        }
    }
    // Like a runtime that waits for its tool results before it ends.
    let _ = tokio::time::timeout(Duration::from_secs(20), collector).await;
    let _ = handle.finish(FinalPayload::new(true)).await;
}

async fn one_run(
    addr: SocketAddr,
    ws: bool,
    args: &DemoArgs,
    received: &Received,
) -> Result<Outcome, String> {
    // An encrypted line is about 400 bytes: cut every `events / (cuts + 1)` events or so.
    let every = (args.events * 400 / (args.cuts + 1)).max(2_000);
    let mut config = ProxyConfig::new(addr).fault_after(every / 2, every * 3 / 2);
    config.max_faults = args.cuts;
    config.seed = if ws { 11 } else { 12 };
    let proxy = CutProxy::start(config)
        .await
        .map_err(|err| format!("cannot start the proxy: {err}"))?;
    let url = if ws { proxy.ws_url() } else { proxy.http_url() };
    let stream_config = StreamConfig::new()
        .with_client(ClientConfig::new().with_encryption(EncryptionMode::Required))
        .with_policy(
            ReconnectPolicy::new()
                .with_max_attempts(10)
                .with_initial_delay(Duration::from_millis(20))
                .with_max_delay(Duration::from_millis(200)),
        )
        .with_heartbeat_timeout(Duration::from_secs(5));
    let mut stream = ReconnectingStream::new(url, OpenSession::new(), stream_config);
    let reconnects = Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let reconnects = Arc::clone(&reconnects);
        stream.on_reconnect(move |_| {
            reconnects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
    let started = Instant::now();
    let mut seen = BTreeSet::new();
    let mut outcome = Outcome::default();
    let mut sent = 0;
    loop {
        // Interleave messages with reading: one message every `events / messages` events.
        let due = args.messages.saturating_mul(seen.len() as u64) / args.events.max(1);
        while sent < args.messages && sent <= due {
            let reason = format!("demo message {}", sent + 1);
            // Tool results, not `cancel`s: a cancel ends the session.
            let mut result = ToolResultSubmitPayload::new(CallId::generate(), true);
            result.result = Some(
                RawJson::from_string(serde_json::to_string(&reason).map_err(|e| e.to_string())?)
                    .map_err(|e| format!("a demo result: {e}"))?,
            );
            stream
                .send(RuntimeChannelPayload::ToolResultSubmit(result))
                .await
                .map_err(|err| format!("sending: {err}"))?;
            sent += 1;
        }
        match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            Err(_) => return Err("no event for 30 s".to_owned()),
            Ok(None) => break,
            Ok(Some(Err(err))) if err.is_terminal() => return Err(err.to_string()),
            Ok(Some(Err(err))) => return Err(format!("a line was refused: {err}")),
            Ok(Some(Ok(event))) => {
                outcome.delivered += 1;
                if !seen.insert(event.seq) {
                    outcome.duplicated += 1;
                }
            }
        }
    }
    outcome.elapsed = started.elapsed();
    // Seqs run from 1 (session_init) to the final event's, heartbeats included: any hole
    // below the last one is a lost event.
    let last = seen.last().copied().unwrap_or(0);
    outcome.lost = last.saturating_sub(seen.len() as u64);
    outcome.reconnects = reconnects.load(std::sync::atomic::Ordering::Relaxed);
    let id = stream
        .session_id()
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default();
    let messages = received
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|(session, _)| *session == id)
        .map(|(_, seqs)| seqs.clone())
        .unwrap_or_default();
    let unique: BTreeSet<u64> = messages.iter().copied().collect();
    outcome.messages_received = unique.len() as u64;
    outcome.messages_duplicated = messages.len() as u64 - unique.len() as u64;
    outcome.messages_lost = args.messages.saturating_sub(unique.len() as u64);
    proxy.stop().await;
    Ok(outcome)
}

//! A small runtime: the session hub behind the transport server on loopback. Each session
//! streams output with backpressure (the hub retains at most a few events the client has
//! not acknowledged, and `publish` waits while that bound is full), calls tools, and waits
//! for the client's `tool_result_submit` before it goes on. A client runs in the same
//! process, over HTTP NDJSON, answers the calls and reads slowly on purpose; the example
//! ends when the session does.
//!
//! `cargo run -p enclave-stream --example runtime_server`

use std::sync::Arc;
use std::time::{Duration, Instant};

use enclave_stream::prelude::*;
use enclave_stream::reconnect::{AcceptedSession, Messages};
use enclave_stream::types::{CallId, RawJson, ToolResultAppliedPayload};
use serde_json::json;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Output lines the runtime streams before each tool call.
const LINES: u64 = 100;
/// Tool calls per session.
const CALLS: u64 = 3;
/// The retention bound: how many unacknowledged events the hub keeps before `publish` waits.
const RETAINED: u64 = 16;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    Box::pin(tokio::time::timeout(Duration::from_secs(30), run()))
        .await
        .map_err(|_| "did not finish within 30 s")?
}

/// What the runtime side saw of one session.
#[derive(Debug, Default)]
struct Report {
    published: u64,
    peak_retained: u64,
    results: u64,
}

async fn run() -> Result<(), BoxError> {
    let hub = Hub::new(HubConfig::default().with_max_buffered_events(RETAINED));
    let server = Server::new(Arc::new(hub.clone()), ServerConfig::default());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let serving = tokio::spawn(server.clone().serve(listener, std::future::pending()));
    println!("runtime listening on http://{addr}");

    // The runtime takes one session, as a worker would.
    let runtime_hub = hub.clone();
    let runtime = tokio::spawn(async move {
        let session = runtime_hub.accept().await.ok_or("the hub stopped")?;
        run_session(&runtime_hub, session).await
    });

    // The client, in-process: acknowledges often, reads slowly, answers every tool call.
    let started = Instant::now();
    let result = Box::pin(client(&format!("http://{addr}"))).await;
    let report = tokio::time::timeout(Duration::from_secs(10), runtime).await;

    server.shutdown();
    hub.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;

    let (events, answered) = result?;
    let report = report.map_err(|_| "the runtime did not finish")???;
    println!(
        "runtime published {} events; retention peaked at {} of {RETAINED} events (publish waited \
         for acknowledgements); {} tool results received",
        report.published, report.peak_retained, report.results
    );
    println!(
        "client read {events} events and answered {answered} tool calls in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    if report.results != CALLS || answered != CALLS || events != report.published {
        return Err("the runtime and the client disagree".into());
    }
    if report.peak_retained > RETAINED {
        return Err("the retention bound was exceeded".into());
    }
    Ok(())
}

/// One session: output, a tool call, the client's result, `tool_result_applied`; repeated,
/// then `final`.
async fn run_session(hub: &Hub, session: AcceptedSession) -> Result<Report, BoxError> {
    let AcceptedSession {
        handle,
        mut messages,
        session_id,
        ..
    } = session;
    println!("runtime: session {session_id} opened");
    let mut report = Report::default();
    for call in 1..=CALLS {
        for n in 1..=LINES {
            // Waits while RETAINED events are unacknowledged: the client sets the pace.
            handle
                .publish(StdoutPayload::new(format!("step {call}, line {n}\n")))
                .await?;
            report.published += 1;
            if let Some((events, _bytes)) = hub.retained(&session_id).await? {
                report.peak_retained = report.peak_retained.max(events);
            }
        }
        let call_id = CallId::generate();
        let args = RawJson::from_value(&json!({"query": "getData", "step": call}))?;
        handle
            .publish(ToolCallPayload::new(call_id.clone(), "getData", args))
            .await?;
        report.published += 1;
        let result = wait_for_result(&mut messages, &call_id).await?;
        report.results += 1;
        println!("runtime: {call_id} answered: {result}");
        handle
            .publish(ToolResultAppliedPayload::new(call_id))
            .await?;
        report.published += 1;
    }
    handle.finish(FinalPayload::new(true)).await?;
    report.published += 2; // `final`, and the hub's own `session_init` at seq 1
    Ok(report)
}

/// The client's `tool_result_submit` for `call_id` (messages arrive once each, in order).
async fn wait_for_result(messages: &mut Messages, call_id: &CallId) -> Result<String, BoxError> {
    let wait = async {
        while let Some(message) = messages.recv().await {
            match message.payload {
                RuntimeChannelPayload::ToolResultSubmit(result) if &result.call_id == call_id => {
                    return Ok(result
                        .result
                        .map_or_else(|| "null".to_owned(), |r| r.get().to_owned()));
                }
                other => println!("runtime: ignoring {}", other.message_type().as_str()),
            }
        }
        Err("the session ended before the tool result".into())
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .map_err(|_| format!("no result for {call_id} within 10 s"))?
}

/// Reads the session to `final`, answering each tool call; returns (events, calls answered).
async fn client(url: &str) -> Result<(u64, u64), BoxError> {
    let mut stream = ReconnectingStream::builder(url)
        .config(StreamConfig::new().with_acks(4, Duration::from_millis(10)))
        .connect()
        .await?;
    let (mut events, mut answered) = (0, 0);
    while let Some(event) = stream.next().await {
        let event = event?;
        events += 1;
        if let EventPayload::ToolCall(call) = &event.payload {
            let mut result = ToolResultSubmitPayload::new(call.call_id.clone(), true);
            result.result = Some(RawJson::from_value(&json!({"rows": [1, 2, 3]}))?);
            stream
                .send(RuntimeChannelPayload::ToolResultSubmit(result))
                .await?;
            answered += 1;
        } else if events % 8 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await; // a slow reader
        }
    }
    Ok((events, answered))
}

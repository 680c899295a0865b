//! Two servers on one Redis, as behind a load balancer without sticky sessions: a client
//! bounced between them at every reconnect by a round-robin proxy that also cuts connections
//! mid-line gets every event exactly once and in order, encrypted, over HTTP and WebSocket;
//! its messages and a cancel sent through one server reach the producer on the other.
//!
//! Size: `ENCLAVE_CLUSTER_EVENTS` (default 100,000). Each test prints a summary line (run
//! with `--nocapture` to see it).

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{redis, store_with, unique_prefix, within};
use enclave_reconnect::{
    HubConfig, ReconnectPolicy, ReconnectingStream, RunningServer, ServerBuilder, StreamConfig,
    StreamError,
};
use enclave_redis::RedisStoreConfig;
use enclave_testkit::{CutProxy, Fault, ProxyConfig, RedisServer};
use enclave_transport::client::{ClientConfig, NewSession};
use enclave_transport::ServerConfig;
use enclave_types::SessionId;
use enclave_types::{
    CallId, EncryptionMode, EventPayload, FinalPayload, LogLevel, LogPayload, StdoutPayload,
    StreamEvent, ToolResultSubmitPayload,
};

/// Every test ends within this, whatever happens.
const LIMIT: Duration = Duration::from_mins(3);

/// Encrypted bytes per event on the wire, about (for spacing the cuts).
const BYTES_PER_EVENT: u64 = 300;

fn events_wanted() -> u64 {
    std::env::var("ENCLAVE_CLUSTER_EVENTS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(100_000)
}

/// A server on a loopback port, its sessions in the Redis store under `prefix`.
async fn node(server: &RedisServer, prefix: &str) -> RunningServer {
    node_with(
        server,
        RedisStoreConfig::default().with_prefix(prefix),
        HubConfig::default()
            .with_heartbeat_ms(500)
            .with_session_grace(Duration::from_secs(30)),
    )
    .await
}

/// [`node`] with the store's and the hub's configuration of the test's own.
async fn node_with(server: &RedisServer, store: RedisStoreConfig, hub: HubConfig) -> RunningServer {
    let store = store_with(server, store).await;
    ServerBuilder::new()
        .hub_config(
            hub
                // The producer stays within 2,000 events of what the client acknowledged.
                .with_max_buffered_events(2_000),
        )
        .store(Arc::new(store))
        .server_config(
            ServerConfig::default()
                .with_encryption(EncryptionMode::Required)
                .with_shutdown_grace(Duration::from_secs(1)),
        )
        .bind("127.0.0.1:0")
        .await
        .expect("a node listens")
}

/// A Redis of the test's own and two nodes on it, sharing a prefix named after the test.
async fn two_nodes(name: &str) -> (RedisServer, RunningServer, RunningServer) {
    let redis = redis();
    let prefix = unique_prefix(name);
    let a = node(&redis, &prefix).await;
    let b = node(&redis, &prefix).await;
    (redis, a, b)
}

/// A client's session created on `node`, once its `session_init` arrived, and the
/// application's side of it there.
async fn session_on(
    node: &RunningServer,
) -> (
    ReconnectingStream,
    SessionId,
    enclave_reconnect::AcceptedSession,
) {
    let url = format!("http://{}", node.addr());
    let mut stream = ReconnectingStream::new(url, NewSession::new(), client_config());
    let first = within(Duration::from_secs(10), "session_init", stream.next())
        .await
        .expect("an event")
        .expect("no error");
    let session = within(
        Duration::from_secs(5),
        "the session on the node",
        node.hub().accept(),
    )
    .await
    .expect("a session");
    (stream, first.session_id, session)
}

fn client_config() -> StreamConfig {
    StreamConfig::new()
        .with_client(
            ClientConfig::new()
                .with_encryption(EncryptionMode::Required)
                .with_connect_timeout(Duration::from_secs(3)),
        )
        .with_policy(
            ReconnectPolicy::new()
                .with_max_attempts(10)
                .with_initial_delay(Duration::from_millis(20))
                .with_max_delay(Duration::from_millis(200)),
        )
        .with_heartbeat_timeout(Duration::from_secs(5))
}

fn payload(i: u64) -> EventPayload {
    if i.is_multiple_of(3) {
        EventPayload::Log(LogPayload::new(LogLevel::Info, format!("step {i}")))
    } else {
        let pad = "x".repeat(usize::try_from(i * 7 % 120).unwrap_or(0));
        EventPayload::Stdout(StdoutPayload::new(format!("line {i}: {pad}\n")))
    }
}

/// The producer on node A: `events` events, then (once every client message arrived) the
/// final. Returns the seqs it published at and the messages it received.
async fn producer(a: &RunningServer, events: u64, messages: u64) -> (Vec<u64>, Vec<u64>, u64) {
    let session = a.hub().accept().await.expect("a session on node A");
    let mut inbox = session.messages;
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while (got.len() as u64) < messages {
            let Some(message) = inbox.recv().await else {
                break;
            };
            got.push(message.seq.unwrap_or(0));
        }
        got
    });
    let mut seqs = Vec::with_capacity(usize::try_from(events).unwrap_or(0));
    for i in 0..events {
        seqs.push(session.handle.publish(payload(i)).await.expect("publish"));
    }
    let received = reader.await.expect("the message reader ends");
    let final_seq = session
        .handle
        .finish(FinalPayload::new(true))
        .await
        .expect("final");
    (seqs, received, final_seq)
}

/// Reads to the end, sending a message after every tenth application event.
async fn consumer(stream: &mut ReconnectingStream, messages: u64) -> (Vec<StreamEvent>, u64) {
    let mut received = Vec::new();
    let mut app_events = 0u64;
    let mut sent = 0u64;
    while let Some(item) = stream.next().await {
        let event = item.expect("no error: every cut is resumed");
        if event.seq.is_multiple_of(1_000) {
            assert!(
                stream.encrypted(),
                "the connection at seq {} is encrypted",
                event.seq
            );
        }
        if matches!(
            event.payload,
            EventPayload::Stdout(_) | EventPayload::Log(_)
        ) {
            app_events += 1;
            if app_events.is_multiple_of(10) && sent < messages {
                sent += 1;
                let call = CallId::new(format!("c_{sent}")).expect("a call id");
                stream
                    .send(ToolResultSubmitPayload::new(call, true).into())
                    .await
                    .expect("send");
            }
        }
        received.push(event);
    }
    (received, sent)
}

/// `got == want`, reported by the first difference (the lists run to 100,000 entries).
fn assert_same(got: &[u64], want: &[u64], what: &str) {
    if let Some(at) = got.iter().zip(want).position(|(g, w)| g != w) {
        panic!(
            "{what}: at index {at} got seq {} where {} was due",
            got[at], want[at]
        );
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} seqs where {} were due",
        got.len(),
        want.len()
    );
}

async fn bounced(carrier: &str, seed: u64) {
    let started = Instant::now();
    let events = events_wanted();
    let messages = events / 10;
    let (_redis, a, b) = two_nodes(carrier).await;
    let mean = 8_000 * BYTES_PER_EVENT;
    let proxy = CutProxy::start(ProxyConfig {
        // Round robin: the first connection (the create) reaches A, every reconnect the
        // other node.
        targets: vec![a.addr(), b.addr()],
        fault_after_bytes: Some((mean / 2, mean + mean / 2)),
        fault: Fault::Cut,
        max_faults: u64::MAX,
        seed,
    })
    .await
    .expect("the proxy starts");
    let url = if carrier == "ws" {
        proxy.ws_url()
    } else {
        proxy.http_url()
    };
    let mut stream = ReconnectingStream::new(url, NewSession::new(), client_config());
    let reconnects = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&reconnects);
    stream.on_reconnect(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let ((published, got_messages, final_seq), (received, sent)) = within(
        LIMIT,
        "the bounced session",
        Box::pin(async {
            tokio::join!(
                producer(&a, events, messages),
                consumer(&mut stream, messages)
            )
        }),
    )
    .await;

    let seqs: Vec<u64> = received.iter().map(|e| e.seq).collect();
    assert_same(
        &seqs,
        &(1..=final_seq).collect::<Vec<_>>(),
        "every seq once, in order, across both nodes",
    );
    let app: Vec<u64> = received
        .iter()
        .filter(|e| matches!(e.payload, EventPayload::Stdout(_) | EventPayload::Log(_)))
        .map(|e| e.seq)
        .collect();
    assert_same(
        &app,
        &published,
        "the application's events, at the seqs it published them",
    );
    for (i, event) in received
        .iter()
        .filter(|e| matches!(e.payload, EventPayload::Stdout(_) | EventPayload::Log(_)))
        .enumerate()
    {
        assert_eq!(event.payload, payload(i as u64), "event {i}");
    }
    assert!(matches!(
        received.last().map(|e| &e.payload),
        Some(EventPayload::Final(f)) if f.ok
    ));
    assert_eq!(sent, messages);
    assert_eq!(
        got_messages,
        (1..=messages).collect::<Vec<_>>(),
        "the producer on A got every message once, in order, whichever node received it"
    );
    let faults = proxy.faults();
    let reconnects = reconnects.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    println!(
        "cluster {carrier}: {events} events (+{} heartbeats) over 2 nodes in {:.2} s ({:.0} events/s), \
         {messages} messages, {faults} cuts, {reconnects} reconnects, {} connections",
        final_seq - events - 2,
        elapsed.as_secs_f64(),
        f64::from(u32::try_from(events).unwrap_or(u32::MAX)) / elapsed.as_secs_f64(),
        proxy.connections(),
    );
    assert!(faults >= 2, "the run was cut ({faults} cuts)");
    assert!(
        proxy.connections() >= 3,
        "the client was bounced between the nodes ({} connections)",
        proxy.connections()
    );
    proxy.stop().await;
    a.stop().await.expect("node A stops");
    b.stop().await.expect("node B stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_bounced_between_two_nodes_over_http_gets_every_event_once() {
    Box::pin(bounced("http", 0xc105_0001)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_bounced_between_two_nodes_over_websocket_gets_every_event_once() {
    Box::pin(bounced("ws", 0xc105_0002)).await;
}

/// `METHOD path` on `addr` with an empty body and the session's resume token, by hand over
/// a socket: the status code.
async fn request(addr: std::net::SocketAddr, method: &str, path: &str, token: &str) -> u16 {
    let token = [("X-Enclave-Resume-Token", token)];
    enclave_testkit::http::client::status(addr, method, path, &token).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_through_node_b_stops_the_producer_on_node_a() {
    let (_redis, a, b) = two_nodes("cancel").await;
    let (mut stream, id, session) = session_on(&a).await;
    assert!(!session.handle.is_cancelled());

    let sent = Instant::now();
    let token = stream.token().expect("a token").to_owned();
    let status = request(b.addr(), "POST", &format!("/sessions/{id}/cancel"), &token).await;
    assert!(
        (200..300).contains(&status),
        "cancel through B: HTTP {status}"
    );
    within(
        Duration::from_secs(10),
        "the cancel on A",
        session.handle.cancelled(),
    )
    .await;
    let took = sent.elapsed();
    println!("cancel through node B reached the producer on node A in {took:?}");

    // A cancel of a session no node knows is refused like a wrong token (the token of
    // another session proves nothing about this one), from either node.
    let unknown = enclave_types::SessionId::generate();
    let path = format!("/sessions/{unknown}/cancel");
    assert_eq!(request(b.addr(), "POST", &path, &token).await, 403);
    assert_eq!(request(a.addr(), "POST", &path, &token).await, 403);
    stream.close().await;
    a.stop().await.expect("node A stops");
    b.stop().await.expect("node B stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_after_redis_lost_its_data_is_refused_with_a_reason_never_a_gap() {
    let mut redis = redis();
    let prefix = unique_prefix("lost");
    let a = node(&redis, &prefix).await;
    let url = format!("http://{}", a.addr());
    let mut stream = ReconnectingStream::new(url, NewSession::new(), client_config());
    let session_task = {
        let hub = a.hub().clone();
        tokio::spawn(async move {
            let session = hub.accept().await.expect("a session");
            for i in 0..5 {
                session.handle.publish(payload(i)).await.expect("publish");
            }
            // The producer waits; the restart below takes its session away.
            session.handle.cancelled().await;
        })
    };
    for _ in 0..6 {
        within(Duration::from_secs(10), "an event", stream.next())
            .await
            .expect("an event")
            .expect("no error");
    }
    // Persistence off: the restart loses every session, and the epoch with them.
    redis.restart().expect("redis restarts");
    a.server().shutdown(); // ends the live stream so the client resumes
    let b = node(&redis, &prefix).await;
    let position = enclave_reconnect::ResumeAt::new(stream.session_id().expect("an id").clone(), 7)
        .with_token(Some(stream.token().expect("a token").to_owned()))
        .with_epoch(Some(stream.epoch().expect("an epoch")));
    let mut resumed =
        ReconnectingStream::resume(format!("http://{}", b.addr()), position, client_config());
    let outcome = within(
        Duration::from_secs(20),
        "the resume's answer",
        resumed.next(),
    )
    .await;
    let err = match outcome {
        Some(Err(err)) => err,
        other => panic!("the resume is refused, got {other:?}"),
    };
    let text = err.to_string();
    assert!(
        text.contains("epoch_mismatch"),
        "an explicit reason: {text}"
    );
    session_task.abort();
    b.stop().await.expect("node B stops");
}

/// A create on `addr` by our client (encrypted): the refusal's text, or `None` if it worked.
async fn create_refused(addr: std::net::SocketAddr) -> Option<String> {
    let config = ClientConfig::new().with_encryption(EncryptionMode::Required);
    let opened = enclave_transport::client::connect(
        &format!("http://{addr}"),
        enclave_transport::client::Open::New(NewSession::new()),
        &config,
    )
    .await;
    opened.err().map(|err| err.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_persistence_a_redis_restart_mid_session_loses_nothing_and_the_session_goes_on() {
    let mut redis = RedisServer::start_persistent().expect("redis-server starts");
    let prefix = unique_prefix("aof");
    let a = node(&redis, &prefix).await;
    let events = 3_000u64;
    let url = format!("http://{}", a.addr());
    let mut stream = ReconnectingStream::new(url, NewSession::new(), client_config());
    let producer = {
        let hub = a.hub().clone();
        tokio::spawn(async move {
            let session = hub.accept().await.expect("a session");
            for i in 0..events {
                session
                    .handle
                    .publish(payload(i))
                    .await
                    .expect("publish: appends ride out the restart");
                if i % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            session
                .handle
                .finish(FinalPayload::new(true))
                .await
                .expect("final");
        })
    };
    let mut received = Vec::new();
    within(LIMIT, "the session across the restart", async {
        while received.len() < 500 {
            received.push(stream.next().await.expect("an event").expect("no error"));
        }
        // Down: new sessions are refused with 503 JSON.
        redis.kill();
        let refused = create_refused(a.addr())
            .await
            .expect("no Redis, no new session");
        assert!(
            refused.contains("HTTP 503") && refused.contains("SERVICE_UNAVAILABLE"),
            "a 503 JSON refusal: {refused}"
        );
        // Back, from its append-only file.
        redis.restart().expect("redis restarts");
        while let Some(item) = stream.next().await {
            received.push(item.expect("no error: the outage is resumed"));
        }
    })
    .await;
    producer.await.expect("the producer finishes");
    let contiguous = received.iter().zip(1u64..).all(|(e, want)| e.seq == want);
    assert!(
        contiguous,
        "nothing lost, nothing twice: seqs 1..={} in order",
        received.len()
    );
    let app = received
        .iter()
        .filter(|e| matches!(e.payload, EventPayload::Stdout(_) | EventPayload::Log(_)))
        .count() as u64;
    assert_eq!(app, events, "every application event arrived");
    assert!(matches!(
        received.last().map(|e| &e.payload),
        Some(EventPayload::Final(f)) if f.ok
    ));
    a.stop().await.expect("node A stops");
}

/// Reads `stream` to its end, within 2 s: an `error` `SESSION_CANCELLED` with `message`,
/// then `final` with `ok: false` and the same error, then nothing (no reconnect).
async fn cancelled_end(stream: &mut ReconnectingStream, message: &str) {
    let mut events = Vec::new();
    within(Duration::from_secs(2), "the cancelled end", async {
        while let Some(item) = stream.next().await {
            let event = item.expect("no error before the final");
            if matches!(
                event.payload,
                EventPayload::Heartbeat(_) | EventPayload::SessionInit(_)
            ) {
                continue;
            }
            events.push(event.payload);
        }
    })
    .await;
    let [EventPayload::Error(error), EventPayload::Final(last)] = events.as_slice() else {
        panic!("not error then final: {events:?}");
    };
    assert_eq!(
        (error.code.as_deref(), error.message.as_str()),
        (Some("SESSION_CANCELLED"), message)
    );
    assert!(!last.ok);
    let info = last.error.as_ref().expect("the final's error");
    assert_eq!(
        (info.code.as_deref(), info.message.as_str()),
        (Some("SESSION_CANCELLED"), message)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_through_node_b_ends_a_websocket_stream_on_node_a() {
    let (_redis, a, b) = two_nodes("cancel-ws").await;
    let url = format!("ws://{}", a.addr());
    let mut stream = ReconnectingStream::new(url, NewSession::new(), client_config());
    let first = within(Duration::from_secs(10), "session_init", stream.next())
        .await
        .expect("an event")
        .expect("no error");
    let session = within(Duration::from_secs(5), "the session", a.hub().accept())
        .await
        .expect("a session");
    let id = first.session_id;
    let token = stream.token().expect("a token").to_owned();
    let status = request(b.addr(), "POST", &format!("/sessions/{id}/cancel"), &token).await;
    assert_eq!(status, 200, "cancel through B");
    cancelled_end(&mut stream, "Session was cancelled").await;
    assert!(session.handle.is_cancelled());
    a.stop().await.expect("node A stops");
    b.stop().await.expect("node B stops");
}

/// A client whose session another client resumes on the same node is told why its stream
/// ends (HTTP: the `superseded` control line; WebSocket: the close `1000 superseded`) and
/// stops, instead of reconnecting and taking the session back.
async fn superseded(scheme: &str) {
    let (_redis, a, b) = two_nodes(&format!("superseded-{scheme}")).await;
    let url = format!("{scheme}://{}", a.addr());
    let mut older = ReconnectingStream::new(url.clone(), NewSession::new(), client_config());
    let first = within(Duration::from_secs(10), "session_init", older.next())
        .await
        .expect("an event")
        .expect("no error");
    let _session = within(Duration::from_secs(5), "the session", a.hub().accept()).await;
    let position = enclave_reconnect::ResumeAt::new(first.session_id.clone(), 2)
        .with_token(Some(older.token().expect("a token").to_owned()))
        .with_epoch(Some(older.epoch().expect("an epoch")));
    let mut newer = ReconnectingStream::resume(url, position, client_config());
    let resumed = newer.connect().await;
    assert!(resumed.is_ok(), "the newer connection resumes: {resumed:?}");
    let end = within(Duration::from_secs(2), "the older stream's end", async {
        loop {
            match older.next().await {
                Some(Ok(_)) => {}
                other => return other,
            }
        }
    })
    .await;
    assert!(
        matches!(end, Some(Err(StreamError::Superseded { .. }))),
        "the older client learns it was superseded: {end:?}"
    );
    assert!(older.next().await.is_none(), "and does not reconnect");
    newer.close().await;
    a.stop().await.expect("node A stops");
    b.stop().await.expect("node B stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_http_stream_says_so_and_our_client_stops() {
    Box::pin(superseded("http")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_websocket_stream_says_so_and_our_client_stops() {
    Box::pin(superseded("ws")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_through_node_b_ends_the_session_on_node_a() {
    let (_redis, a, b) = two_nodes("delete").await;
    let (mut stream, id, session) = session_on(&a).await;
    let token = stream.token().expect("a token").to_owned();
    let path = format!("/sessions/{id}");
    // Knowing the id is not enough (issue 16), on the node that does not produce it either.
    assert_eq!(request(b.addr(), "DELETE", &path, "wrong").await, 403);
    assert_eq!(request(b.addr(), "DELETE", &path, &token).await, 200);
    // The cancel reaches node A through the store: the producer is cancelled, and the
    // client's stream (encrypted, on A) ends as the broker's does, within 2 s.
    within(
        Duration::from_secs(2),
        "the cancel on A",
        session.handle.cancelled(),
    )
    .await;
    cancelled_end(&mut stream, "Terminated by session manager").await;
    // The session is gone: its token opens nothing any more, and the refusal does not say
    // whether the session ever existed (a tokenless deployment answers 404).
    assert_eq!(request(b.addr(), "GET", &path, &token).await, 403);

    let publish = session.handle.publish(payload(0)).await;
    assert!(
        publish.is_err(),
        "nothing can be published into a deleted session"
    );
    a.stop().await.expect("node A stops");
    b.stop().await.expect("node B stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_past_the_final_ends_at_once_on_either_node() {
    use enclave_transport::client::{connect, Open, ResumeAt};
    let (_redis, a, b) = two_nodes("past-final").await;
    let mut stream = ReconnectingStream::new(
        format!("http://{}", a.addr()),
        NewSession::new(),
        client_config(),
    );
    let producer = {
        let hub = a.hub().clone();
        tokio::spawn(async move {
            let session = hub.accept().await.expect("a session");
            session.handle.publish(payload(0)).await.expect("publish");
            session
                .handle
                .finish(FinalPayload::new(true))
                .await
                .expect("final")
        })
    };
    let mut last = 0;
    while let Some(event) = within(Duration::from_secs(10), "an event", stream.next()).await {
        last = event.expect("no error").seq;
    }
    let final_seq = producer.await.expect("the producer");
    assert_eq!(last, final_seq);
    let id = stream.session_id().expect("an id").clone();
    let mut token = stream.token().map(str::to_owned);
    for (node, addr) in [("A", a.addr()), ("B", b.addr())] {
        let config = ClientConfig::new().with_encryption(EncryptionMode::Required);
        let at = ResumeAt::new(id.clone(), final_seq + 1)
            .with_token(token.clone())
            .with_epoch(stream.epoch());
        let mut conn = connect(&format!("http://{addr}"), Open::Resume(at), &config)
            .await
            .unwrap_or_else(|e| panic!("resume on node {node}: {e}"));
        // Nothing to replay and nothing will follow: the stream ends (a control line
        // announcing the empty replay may come first).
        let ended = within(
            Duration::from_secs(5),
            "the end of a resume past the final",
            async {
                while let Some(item) = conn.next().await {
                    if let Ok(enclave_transport::client::Received::Event { event, .. }) = item {
                        panic!("node {node} sent seq {} past the final", event.seq);
                    }
                }
            },
        )
        .await;
        let () = ended;
        // The resume rotated the token: the next one presents the new one.
        token = conn.token().map(str::to_owned).or(token);
    }
    a.stop().await.expect("node A stops");
    b.stop().await.expect("node B stops");
}

/// `GET path` on `addr`: the status code (see [`request`]).
async fn status_of(addr: std::net::SocketAddr, path: &str) -> u16 {
    // `/ready` needs no token: an empty header is as good as none there.
    request(addr, "GET", path, "").await
}

/// A client that rides out long outages: it retries for a minute, and notices silence only
/// after a minute (so a stream that goes quiet is not ended by the client itself).
fn patient_client() -> StreamConfig {
    StreamConfig::new()
        .with_client(
            ClientConfig::new()
                .with_encryption(EncryptionMode::Required)
                .with_connect_timeout(Duration::from_secs(3)),
        )
        .with_policy(
            ReconnectPolicy::new()
                .with_max_attempts(400)
                .with_initial_delay(Duration::from_millis(50))
                .with_max_delay(Duration::from_millis(150)),
        )
        .with_heartbeat_timeout(Duration::from_mins(1))
}

/// Reads `stream` to its end; the events and how many times it reconnected.
async fn read_to_end(stream: &mut ReconnectingStream) -> (Vec<StreamEvent>, u64) {
    let reconnects = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&reconnects);
    stream.on_reconnect(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let mut received = Vec::new();
    while let Some(item) = stream.next().await {
        received.push(item.expect("no error: the client rides out the outage"));
    }
    (received, reconnects.load(Ordering::Relaxed))
}

/// Every seq once, in order, ending with `final {ok: false, code: STORE_UNAVAILABLE}`.
fn assert_ended_by_the_store_outage(received: &[StreamEvent]) {
    assert_ended_by_the_store_outage_from(received, 1);
}

/// [`assert_ended_by_the_store_outage`] for a stream that starts at seq `first`.
fn assert_ended_by_the_store_outage_from(received: &[StreamEvent], first: u64) {
    assert!(
        received.iter().zip(first..).all(|(e, want)| e.seq == want),
        "nothing lost, nothing twice: seqs {first}.. in order ({} events)",
        received.len()
    );
    match received.last().map(|e| &e.payload) {
        Some(EventPayload::Final(f)) => {
            assert!(!f.ok, "the final says the session failed");
            let code = f.error.as_ref().and_then(|e| e.code.as_deref());
            assert_eq!(code, Some(enclave_reconnect::STORE_UNAVAILABLE), "{f:?}");
        }
        other => panic!("the stream ends with its final, not {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_longer_than_the_store_retry_ends_the_session_with_a_final_never_silence() {
    let mut redis = RedisServer::start_persistent().expect("redis-server starts");
    let prefix = unique_prefix("outage");
    let a = node_with(
        &redis,
        RedisStoreConfig::default().with_prefix(&prefix),
        HubConfig::default()
            .with_heartbeat_ms(200)
            .with_store_retry(Duration::from_millis(800)),
    )
    .await;
    assert_eq!(
        status_of(a.addr(), "/ready").await,
        200,
        "ready with Redis up"
    );
    let url = format!("http://{}", a.addr());
    let mut stream = ReconnectingStream::new(url, NewSession::new(), patient_client());
    let hub = a.hub().clone();
    let (published_tx, published_rx) = tokio::sync::oneshot::channel();
    let producer = tokio::spawn(async move {
        let session = hub.accept().await.expect("a session");
        for i in 0..100 {
            session.handle.publish(payload(i)).await.expect("publish");
        }
        let _ = published_tx.send(());
        // Then it goes on publishing, slowly, until the store refuses it for good.
        let mut i = 100;
        let failed = loop {
            match session.handle.publish(payload(i)).await {
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(err) => break err,
            }
            i += 1;
        };
        let after = session.handle.publish(payload(i)).await;
        (failed, after)
    });
    let (received, reconnects) = within(
        Duration::from_mins(1),
        "the session across the outage",
        async {
            // session_init and the first 100 events, before Redis goes.
            let mut seen = Vec::new();
            while seen.len() < 101 {
                seen.push(stream.next().await.expect("an event").expect("no error"));
            }
            published_rx.await.expect("the producer published");
            redis.kill();
            let (failed, after) = producer.await.expect("the producer ends");
            assert!(
                matches!(failed, enclave_reconnect::Error::Store { .. }),
                "the publish fails with the store's error: {failed}"
            );
            assert!(
                matches!(after, Err(enclave_reconnect::Error::SessionClosed(_))),
                "nothing more is published into a session the store lost: {after:?}"
            );
            assert_eq!(
                status_of(a.addr(), "/ready").await,
                503,
                "not ready without Redis"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
            redis.restart().expect("redis restarts");
            let (rest, reconnects) = read_to_end(&mut stream).await;
            seen.extend(rest);
            (seen, reconnects)
        },
    )
    .await;
    assert_ended_by_the_store_outage(&received);
    assert!(
        reconnects >= 1,
        "the live stream was ended, not left silent"
    );
    assert_eq!(status_of(a.addr(), "/ready").await, 200, "ready again");
    a.stop().await.expect("node A stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_ends_a_stream_served_by_another_node_and_it_resumes_to_the_final() {
    let mut redis = RedisServer::start_persistent().expect("redis-server starts");
    let prefix = unique_prefix("outage-follower");
    let config = || {
        RedisStoreConfig::default()
            .with_prefix(&prefix)
            .with_lease(Duration::from_millis(900))
    };
    let hub = || {
        HubConfig::default()
            .with_heartbeat_ms(200)
            .with_store_retry(Duration::from_millis(800))
    };
    let a = node_with(&redis, config(), hub()).await;
    let b = node_with(&redis, config(), hub()).await;
    // Created on A (its producer runs there), then resumed through B.
    let (mut stream, id, session) = session_on(&a).await;
    let token = stream.token().expect("a token").to_owned();
    let epoch = stream.epoch().expect("an epoch");
    stream.close().await;
    drop(stream);
    let position = enclave_reconnect::ResumeAt::new(id, 2)
        .with_token(Some(token))
        .with_epoch(Some(epoch));
    let mut stream =
        ReconnectingStream::resume(format!("http://{}", b.addr()), position, patient_client());
    let (received, reconnects) = within(
        Duration::from_mins(1),
        "the followed session across the outage",
        async {
            for i in 0..50 {
                session.handle.publish(payload(i)).await.expect("publish");
            }
            // Until B's client has seen what was published.
            let mut seen = Vec::new();
            while seen.len() < 50 {
                seen.push(stream.next().await.expect("an event").expect("no error"));
            }
            redis.kill();
            tokio::time::sleep(Duration::from_secs(3)).await;
            redis.restart().expect("redis restarts");
            let (rest, reconnects) = read_to_end(&mut stream).await;
            seen.extend(rest);
            (seen, reconnects)
        },
    )
    .await;
    assert_eq!(
        received.first().map(|e| e.seq),
        Some(2),
        "resumed after session_init"
    );
    assert_ended_by_the_store_outage_from(&received, 2);
    assert!(
        reconnects >= 1,
        "B ended its stream instead of leaving it silent"
    );
    drop(session);
    a.stop().await.expect("node A stops");
    b.stop().await.expect("node B stops");
}

/// `CONFIG SET maxmemory BYTES` (0: no limit) on `server`, with eviction off.
async fn set_maxmemory(server: &RedisServer, bytes: u64) {
    let client = redis::Client::open(server.url()).expect("a Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("a connection to redis-server");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query_async(&mut conn)
        .await
        .expect("CONFIG SET maxmemory-policy");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(bytes)
        .query_async(&mut conn)
        .await
        .expect("CONFIG SET maxmemory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_refuses_new_sessions_and_ends_live_streams_clearly_never_silently() {
    let redis = redis();
    let prefix = unique_prefix("full");
    let a = node_with(
        &redis,
        RedisStoreConfig::default().with_prefix(&prefix),
        HubConfig::default()
            .with_heartbeat_ms(200)
            .with_store_retry(Duration::from_millis(800)),
    )
    .await;
    let url = format!("ws://{}", a.addr());
    let mut stream = ReconnectingStream::new(url, NewSession::new(), patient_client());
    let hub = a.hub().clone();
    let (filled_tx, filled_rx) = tokio::sync::oneshot::channel();
    let producer = tokio::spawn(async move {
        let session = hub.accept().await.expect("a session");
        let _ = filled_rx.await;
        // Publishes until Redis, full, refuses for good.
        let big = "y".repeat(16 * 1024);
        loop {
            let payload = EventPayload::Stdout(StdoutPayload::new(big.clone()));
            if let Err(err) = session.handle.publish(payload).await {
                break err;
            }
        }
    });
    let (received, reconnects) = within(
        Duration::from_mins(1),
        "the session in a full Redis",
        async {
            let first = stream
                .next()
                .await
                .expect("session_init")
                .expect("no error");
            assert_eq!(first.seq, 1);
            // Full: whatever Redis holds now is its limit.
            set_maxmemory(&redis, 1).await;
            let _ = filled_tx.send(());
            let failed = producer.await.expect("the producer ends");
            assert!(
                matches!(failed, enclave_reconnect::Error::Store { .. }),
                "the publish fails with the store's error: {failed}"
            );
            let refused = create_refused(a.addr())
                .await
                .expect("no room, no new session");
            assert!(
                refused.contains("HTTP 503"),
                "a 503 for a new session: {refused}"
            );
            assert_eq!(
                status_of(a.addr(), "/ready").await,
                503,
                "a full Redis is not ready"
            );
            // Room again.
            set_maxmemory(&redis, 0).await;
            let (rest, reconnects) = read_to_end(&mut stream).await;
            let mut all = vec![first];
            all.extend(rest);
            (all, reconnects)
        },
    )
    .await;
    assert_ended_by_the_store_outage(&received);
    assert!(
        reconnects >= 1,
        "the live stream was ended, not left silent"
    );
    assert_eq!(status_of(a.addr(), "/ready").await, 200, "ready again");
    a.stop().await.expect("node A stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_created_while_redis_is_slow_is_not_closed_by_the_sweeper() {
    let redis = redis();
    let prefix = unique_prefix("slow-create");
    // The sweeper passes every 250 ms (a quarter of the grace).
    let a = node_with(
        &redis,
        RedisStoreConfig::default().with_prefix(&prefix),
        HubConfig::default().with_session_grace(Duration::from_secs(1)),
    )
    .await;
    let client = redis::Client::open(redis.url()).expect("a Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("a connection to redis-server");
    // Writes wait 1.5 s; reads (the sweeper's) go on.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1_500)
        .arg("WRITE")
        .query_async(&mut conn)
        .await
        .expect("CLIENT PAUSE");
    let refused = within(
        Duration::from_secs(20),
        "a create under latency",
        create_refused(a.addr()),
    )
    .await;
    assert_eq!(
        refused, None,
        "the session is created, not closed half-made"
    );
    a.stop().await.expect("node A stops");
}

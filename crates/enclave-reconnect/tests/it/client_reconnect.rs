//! `ReconnectingStream` against a small fake of our HTTP server over loopback: it creates a
//! session of N events, answers resumes from `from` with a rotated token, records client
//! messages and acknowledges them, and can cut a connection mid-line, go silent, or refuse.

use crate::common::line;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enclave_reconnect::{
    ConnectionEvent, ConnectionState, ReconnectPolicy, ReconnectingStream, StreamConfig,
    StreamError,
};
use enclave_testkit::http::server::{
    read_request, write_chunk, write_last_chunk, write_response, write_stream_head, FakeServer,
};
use enclave_transport::client::{ClientConfig, NewSession};
use enclave_transport::RefusalReason;
use enclave_types::{CancelPayload, EncryptionMode, RuntimeChannelPayload, SessionId, StreamEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(20);
const SESSION: &str = "s_fake";

/// What the fake does at a given seq while streaming.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Write half of the line, then close the connection.
    Cut,
    /// Stop writing and hold the connection open.
    Silent,
}

#[derive(Debug, Default)]
struct State {
    total: u64,
    faults: Vec<(u64, Fault)>,
    token_serial: u64,
    refuse_resumes: Option<(u16, &'static str, &'static str)>,
    /// `from` of every resume, and the token it carried.
    resumes: Vec<(u64, Option<String>)>,
    messages: BTreeSet<u64>,
    /// Message lines received, duplicates included.
    message_lines: usize,
    /// Answer `{"ack":0}` until the first resume, so the client must resend.
    withhold_acks: bool,
    acks: Vec<u64>,
    /// `POST /sessions` received: sessions created.
    creates: usize,
    /// How long a create waits before its answer.
    create_delay: Duration,
}

/// The fake: its state (script and what it saw) and the server, stopped when dropped.
type Fake = FakeServer<State>;

/// A fake whose session holds `total` events and that commits `faults` while streaming.
async fn start_fake(total: u64, faults: Vec<(u64, Fault)>) -> Fake {
    FakeServer::start(
        State {
            total,
            faults,
            ..State::default()
        },
        handle,
    )
    .await
}

async fn handle(mut socket: TcpStream, state: Arc<Mutex<State>>) {
    // Keep-alive: the upstream connection carries several POSTs.
    while let Some(request) = read_request(&mut socket).await {
        let path = request.target.clone();
        if request.method == "POST" && path == "/sessions" {
            let delay = {
                let mut s = state.lock().unwrap();
                s.creates += 1;
                s.create_delay
            };
            tokio::time::sleep(delay).await;
            let token = next_token(&state);
            stream(socket, &state, 1, &token).await;
            return;
        }
        if path.contains("/stream?") {
            let from: u64 = path
                .split("from=")
                .nth(1)
                .and_then(|v| v.split('&').next())
                .and_then(|v| v.parse().ok())
                .unwrap();
            assert!(path.contains(&format!("fromSeq={from}")), "{path}");
            let presented = request.header("x-enclave-resume-token").map(str::to_owned);
            let refusal = {
                let mut s = state.lock().unwrap();
                s.resumes.push((from, presented));
                s.refuse_resumes
            };
            if let Some((status, code, reason)) = refusal {
                let body = format!(
                    r#"{{"code":"{code}","message":"refused by the fake","reason":"{reason}"}}"#
                );
                let mut headers = vec![("Content-Type", "application/json")];
                // A full server says when to come back, as ours does.
                if status == 503 {
                    headers.push(("Retry-After", "1"));
                }
                headers.push(("Connection", "close"));
                let _ =
                    write_response(&mut socket, status, "Refused", &headers, body.as_bytes()).await;
                // Close gently (FIN, then drain), so the client reads the answer instead of
                // a reset that would make it retry at once.
                let _ = socket.shutdown().await;
                let mut rest = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_millis(200), socket.read_to_end(&mut rest))
                        .await;
                return;
            }
            let token = next_token(&state);
            stream(socket, &state, from, &token).await;
            return;
        }
        if path.ends_with("/messages") {
            let ack = {
                let mut s = state.lock().unwrap();
                if let Some(seq) = request.header("x-enclave-ack").and_then(|v| v.parse().ok()) {
                    s.acks.push(seq);
                }
                for line in request
                    .body
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                {
                    let value: serde_json::Value = serde_json::from_slice(line).unwrap();
                    s.messages.insert(value["seq"].as_u64().unwrap());
                    s.message_lines += 1;
                }
                if s.withhold_acks && s.resumes.is_empty() {
                    0
                } else {
                    s.messages.iter().next_back().copied().unwrap_or(0)
                }
            };
            let body = format!(r#"{{"ack":{ack}}}"#);
            let json = [("Content-Type", "application/json")];
            if write_response(&mut socket, 200, "OK", &json, body.as_bytes())
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        let close = [("Connection", "close")];
        let _ = write_response(&mut socket, 404, "Not Found", &close, b"").await;
        return;
    }
}

fn next_token(state: &Mutex<State>) -> String {
    let mut s = state.lock().unwrap();
    s.token_serial += 1;
    format!("t{}", s.token_serial)
}

async fn stream(mut socket: TcpStream, state: &Mutex<State>, from: u64, token: &str) {
    if write_stream_head(&mut socket, SESSION, token, 7, &[])
        .await
        .is_err()
    {
        return;
    }
    let total = state.lock().unwrap().total;
    for seq in from..=total {
        let fault = {
            let mut s = state.lock().unwrap();
            let at = s.faults.iter().position(|(at, _)| *at == seq);
            at.map(|i| s.faults.remove(i).1)
        };
        let text = line(SESSION, seq, total);
        match fault {
            Some(Fault::Cut) => {
                let half = &text[..text.len() / 2];
                let _ = write_chunk(&mut socket, half.as_bytes()).await;
                return;
            }
            Some(Fault::Silent) => {
                // Hold the link open without a byte until the client gives up on it.
                let mut sink = [0u8; 64];
                let _ = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut sink)).await;
                return;
            }
            None => {}
        }
        if write_chunk(&mut socket, text.as_bytes()).await.is_err() {
            return;
        }
    }
    let _ = write_last_chunk(&mut socket).await;
}

fn fast_config() -> StreamConfig {
    StreamConfig::default()
        .with_client(ClientConfig::default().with_encryption(EncryptionMode::Disabled))
        .with_policy(
            ReconnectPolicy::default()
                .with_initial_delay(Duration::from_millis(5))
                .with_max_delay(Duration::from_millis(40)),
        )
        .with_acks(16, Duration::from_millis(20))
}

async fn drain(stream: &mut ReconnectingStream) -> (Vec<StreamEvent>, Option<StreamError>) {
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout(LIMIT, stream.next())
            .await
            .expect("the stream stalled")
        {
            None => return (events, None),
            Some(Ok(event)) => events.push(event),
            Some(Err(err)) if err.is_terminal() => return (events, Some(err)),
            Some(Err(err)) => panic!("unexpected item error: {err}"),
        }
    }
}

fn seqs(events: &[StreamEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn reconnects_after_cuts_and_delivers_each_seq_once_in_order() {
    let fake = start_fake(
        300,
        vec![(50, Fault::Cut), (51, Fault::Cut), (200, Fault::Cut)],
    )
    .await;
    let mut stream =
        ReconnectingStream::new(fake.url(), NewSession::new().with_code("x"), fast_config());
    let reconnects = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&reconnects);
    stream.on_reconnect(move |attempt| seen.lock().unwrap().push(attempt));
    let mut events_rx = stream.events();

    let (events, err) = drain(&mut stream).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(seqs(&events), (1..=300).collect::<Vec<_>>());
    assert_eq!(stream.state(), ConnectionState::Closed);

    let state = fake.state();
    let froms: Vec<u64> = state.resumes.iter().map(|(from, _)| *from).collect();
    assert_eq!(
        froms,
        [50, 51, 200],
        "each resume starts at the first missing seq"
    );
    // Each resume presents the token the previous answer issued.
    let tokens: Vec<_> = state
        .resumes
        .iter()
        .map(|(_, t)| t.clone().unwrap())
        .collect();
    assert_eq!(tokens, ["t1", "t2", "t3"]);
    assert_eq!(stream.token(), Some("t4"));
    assert_eq!(stream.epoch(), Some(7));
    assert_eq!(
        state.acks.last(),
        Some(&300),
        "the final event is acknowledged"
    );
    assert_eq!(
        *reconnects.lock().unwrap(),
        [1, 1, 1],
        "the count restarts after each success"
    );

    let mut log = Vec::new();
    while let Ok(event) = events_rx.try_recv() {
        log.push(event);
    }
    let disconnects = log
        .iter()
        .filter(|e| matches!(e, ConnectionEvent::Disconnected { .. }))
        .count();
    assert_eq!(disconnects, 3);
    let first_states: Vec<_> = log
        .iter()
        .filter_map(|e| match e {
            ConnectionEvent::StateChange { to, .. } => Some(*to),
            _ => None,
        })
        .take(6)
        .collect();
    assert_eq!(
        first_states,
        [
            ConnectionState::Connecting,
            ConnectionState::Connected,
            ConnectionState::Disconnected,
            ConnectionState::Reconnecting,
            ConnectionState::Connected,
            ConnectionState::Disconnected,
        ]
    );
    assert!(log
        .iter()
        .any(|e| matches!(e, ConnectionEvent::RetryScheduled { attempt: 1, .. })));
    assert!(log
        .iter()
        .any(|e| matches!(e, ConnectionEvent::RetryStarted { attempt: 1 })));
}

/// `next()` dropped again and again while the first connection is being made (as a
/// `select!` with standard input or a timer does) still opens one session: the attempt under
/// way is resumed, not abandoned for a new one that would orphan the session the server
/// already opened.
#[tokio::test]
async fn a_next_dropped_while_connecting_opens_the_session_once() {
    let fake = start_fake(20, vec![]).await;
    fake.state().create_delay = Duration::from_millis(300);
    let mut stream = ReconnectingStream::new(fake.url(), NewSession::new(), fast_config());
    let started = tokio::time::Instant::now();
    let first = loop {
        assert!(started.elapsed() < LIMIT, "no event within {LIMIT:?}");
        if let Ok(item) = tokio::time::timeout(Duration::from_millis(10), stream.next()).await {
            break item.expect("an event").expect("no error");
        }
    };
    let (rest, err) = drain(&mut stream).await;
    assert!(err.is_none(), "{err:?}");
    let mut all = vec![first];
    all.extend(rest);
    assert_eq!(seqs(&all), (1..=20).collect::<Vec<_>>());
    assert_eq!(fake.state().creates, 1, "one session, created once");
}

#[tokio::test]
async fn gives_up_after_max_attempts_with_failed() {
    // A port nobody listens on: every attempt is refused at once.
    let url = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let config = fast_config().with_policy(
        ReconnectPolicy::default()
            .with_max_attempts(3)
            .with_initial_delay(Duration::from_millis(2))
            .with_max_delay(Duration::from_millis(5)),
    );
    let mut stream = ReconnectingStream::new(url, NewSession::new(), config);
    let mut events_rx = stream.events();
    let (events, err) = drain(&mut stream).await;
    assert!(events.is_empty());
    match err {
        Some(StreamError::OutOfAttempts { attempts, .. }) => assert_eq!(attempts, 3),
        other => panic!("expected OutOfAttempts, got {other:?}"),
    }
    assert_eq!(stream.state(), ConnectionState::Failed);
    let mut scheduled = Vec::new();
    let mut failed = false;
    while let Ok(event) = events_rx.try_recv() {
        match event {
            ConnectionEvent::RetryScheduled { attempt, .. } => scheduled.push(attempt),
            ConnectionEvent::Failed { .. } => failed = true,
            _ => {}
        }
    }
    assert_eq!(scheduled, [1, 2, 3]);
    assert!(failed);
    assert!(
        stream.next().await.is_none(),
        "a failed stream stays failed"
    );
}

#[tokio::test]
async fn a_full_server_is_asked_again_no_sooner_than_its_retry_after() {
    let fake = start_fake(100, vec![(40, Fault::Cut)]).await;
    fake.state().refuse_resumes = Some((503, "SERVICE_UNAVAILABLE", "unavailable"));
    // Backoff alone would retry within milliseconds.
    let mut stream = ReconnectingStream::new(fake.url(), NewSession::new(), fast_config());
    let started = tokio::time::Instant::now();
    let mut first_resume = None;
    let waited = tokio::time::timeout(LIMIT, async {
        loop {
            let resumes = fake.state().resumes.len();
            if resumes == 1 && first_resume.is_none() {
                first_resume = Some(tokio::time::Instant::now());
            }
            if resumes >= 2 {
                return first_resume.map(|at| at.elapsed());
            }
            tokio::select! {
                _ = stream.next() => {}
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
    })
    .await
    .expect("the resume is retried");
    let gap = waited.expect("the first resume was seen");
    assert!(
        gap >= Duration::from_millis(900),
        "retried after {gap:?} (started {:?} ago), before the Retry-After of 1 s",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_refused_resume_is_terminal_and_never_retried() {
    let fake = start_fake(100, vec![(40, Fault::Cut)]).await;
    fake.state().refuse_resumes = Some((403, "RESUME_REFUSED", "bad_token"));
    let mut stream = ReconnectingStream::new(fake.url(), NewSession::new(), fast_config());
    let (events, err) = drain(&mut stream).await;
    assert_eq!(seqs(&events), (1..40).collect::<Vec<_>>());
    match err {
        Some(StreamError::Refused {
            refusal, status, ..
        }) => {
            assert_eq!(refusal.reason, RefusalReason::BadToken);
            assert_eq!(status, 403);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(stream.state(), ConnectionState::Failed);
    assert_eq!(fake.state().resumes.len(), 1, "no retry after a refusal");
}

#[tokio::test]
async fn a_silent_link_is_noticed_by_the_heartbeat_monitor_and_resumed() {
    let fake = start_fake(80, vec![(30, Fault::Silent)]).await;
    let config = fast_config().with_heartbeat_timeout(Duration::from_millis(300));
    let mut stream = ReconnectingStream::new(fake.url(), NewSession::new(), config);
    let mut events_rx = stream.events();
    let (events, err) = drain(&mut stream).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(seqs(&events), (1..=80).collect::<Vec<_>>());
    assert_eq!(fake.state().resumes.first().map(|r| r.0), Some(30));
    let mut reasons = Vec::new();
    while let Ok(event) = events_rx.try_recv() {
        if let ConnectionEvent::Disconnected { reason } = event {
            reasons.push(reason);
        }
    }
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("heartbeat"), "{reasons:?}");
}

#[tokio::test]
async fn messages_are_numbered_from_one_resent_after_a_cut_and_dropped_once_acked() {
    let fake = start_fake(60, vec![(20, Fault::Cut)]).await;
    fake.state().withhold_acks = true;
    let mut stream = ReconnectingStream::new(fake.url(), NewSession::new(), fast_config());
    // The first event opens the session; then three messages go up.
    let first = tokio::time::timeout(LIMIT, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.seq, 1);
    for expected in 1..=3 {
        let reason = format!("m{expected}");
        let seq = stream
            .send(RuntimeChannelPayload::Cancel(CancelPayload::new(Some(
                reason,
            ))))
            .await
            .unwrap();
        assert_eq!(seq, expected);
    }
    assert_eq!(
        stream.unacked_len(),
        3,
        "nothing acknowledged before the cut"
    );
    let (events, err) = drain(&mut stream).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(seqs(&events), (2..=60).collect::<Vec<_>>());
    let state = fake.state();
    assert_eq!(
        state.messages.iter().copied().collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        state.message_lines, 6,
        "each message sent again after the resume"
    );
    assert_eq!(stream.unacked_len(), 0, "the server acknowledged all three");
}

#[tokio::test]
async fn close_stops_without_a_retry() {
    let fake = start_fake(1000, vec![]).await;
    let mut stream = ReconnectingStream::new(fake.url(), NewSession::new(), fast_config());
    for want in 1..=5 {
        let event = tokio::time::timeout(LIMIT, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(event.seq, want);
    }
    stream.close().await;
    assert_eq!(stream.state(), ConnectionState::Closed);
    assert!(stream.next().await.is_none());
    assert!(matches!(
        stream
            .send(RuntimeChannelPayload::Cancel(CancelPayload::new(None)))
            .await,
        Err(StreamError::Closed)
    ));
    assert!(fake.state().resumes.is_empty());
}

#[tokio::test]
async fn the_builder_connects_then_run_hands_every_event_to_on_message_across_cuts() {
    let fake = start_fake(120, vec![(30, Fault::Cut), (90, Fault::Cut)]).await;
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let reconnects = Arc::new(Mutex::new(Vec::new()));
    let (seen, attempts) = (Arc::clone(&delivered), Arc::clone(&reconnects));
    let mut stream = tokio::time::timeout(
        LIMIT,
        ReconnectingStream::builder(fake.url())
            .config(fast_config())
            .max_attempts(4)
            .initial_delay(Duration::from_millis(5))
            .max_delay(Duration::from_millis(40))
            .backoff_multiplier(1.5)
            .on_reconnect(move |attempt| attempts.lock().unwrap().push(attempt))
            .on_message(move |event| seen.lock().unwrap().push(event.seq))
            .connect(),
    )
    .await
    .expect("connect stalled")
    .expect("connects");
    assert_eq!(stream.state(), ConnectionState::Connected);
    assert_eq!(stream.session_id().map(SessionId::as_str), Some(SESSION));
    assert!(
        delivered.lock().unwrap().is_empty(),
        "connect delivers nothing by itself"
    );
    // connect() again is a no-op while the connection is up.
    stream.connect().await.unwrap();

    let count = tokio::time::timeout(LIMIT, stream.run())
        .await
        .expect("run stalled")
        .expect("runs to final");
    assert_eq!(count, 120);
    assert_eq!(*delivered.lock().unwrap(), (1..=120).collect::<Vec<_>>());
    assert_eq!(*reconnects.lock().unwrap(), [1, 1]);
    assert_eq!(stream.state(), ConnectionState::Closed);
    assert!(matches!(stream.connect().await, Err(StreamError::Closed)));
    let froms: Vec<u64> = fake.state().resumes.iter().map(|(from, _)| *from).collect();
    assert_eq!(froms, [30, 90]);
}

#[tokio::test]
async fn the_builder_knobs_apply_over_the_config_and_session_id_resumes_without_a_token() {
    // A port nobody listens on: the knobs decide how many attempts are made.
    let url = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let builder = ReconnectingStream::builder(url)
        .max_attempts(2)
        .initial_delay(Duration::from_millis(1))
        .config(fast_config()) // after the knobs: they still win
        .max_delay(Duration::from_millis(3));
    assert!(format!("{builder:?}").contains("max_attempts: Some(2)"));
    match tokio::time::timeout(LIMIT, builder.connect())
        .await
        .unwrap()
    {
        Err(StreamError::OutOfAttempts { attempts, .. }) => assert_eq!(attempts, 2),
        other => panic!("expected OutOfAttempts, got {other:?}"),
    }

    let fake = start_fake(10, vec![]).await;
    let mut stream = ReconnectingStream::builder(fake.url())
        .config(fast_config())
        .session_id(SessionId::new(SESSION).unwrap())
        .build();
    assert_eq!(stream.state(), ConnectionState::Disconnected);
    let count = tokio::time::timeout(LIMIT, stream.run())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count, 10, "no on_message: events are counted");
    assert_eq!(
        fake.state().resumes.first(),
        Some(&(1, None)),
        "a tokenless resume from the first event"
    );
}

//! Properties of the client side: whatever a server does to the connections of a session
//! (cut after k lines, possibly mid-line; replay a resume from at or before the requested
//! `from`; repeat a line; answer a resume with 503; acknowledge messages or not),
//! `ReconnectingStream` yields seq 1..=N+1 exactly once and in order, resumes from the first
//! missing seq with the latest token, gets every message it sent to the server, and reports a
//! valid sequence of connection states. A replay that starts after `from` is a gap and must
//! end the stream with `StreamError::Gap`. Plus the arithmetic of `RetrySchedule`.
//!
//! The server is a small fake of our HTTP server on loopback (port 0) that follows a
//! generated plan per connection and keeps a model of what the client must have received.

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
use enclave_testkit::http::Request;
use enclave_transport::client::{ClientConfig, NewSession};
use enclave_types::{CancelPayload, EncryptionMode, RuntimeChannelPayload};
use proptest::prelude::*;
use tokio::net::TcpStream;

/// The bound on one generated case, end to end.
const CASE_LIMIT: Duration = Duration::from_secs(10);
const SESSION: &str = "s_prop";

/// Where a resumed connection starts, relative to the requested `from`.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// `from - n` (at least 1): the client sees `n` duplicates it must drop.
    Rewind(u64),
    /// `from + n` (n ≥ 1): a gap, which the client must report, not skip.
    Skip(u64),
}

/// How the fake refuses a resume with 503 (all retryable).
#[derive(Debug, Clone, Copy)]
enum Refuse {
    /// `{"reason":"unavailable"}`.
    Unavailable,
    /// `{"reason":"shutting_down"}`.
    ShuttingDown,
    /// A bare 503 without a refusal body.
    Bare,
}

/// What the fake does on one connection (the first one creates the session; its `start` and
/// `refuse` are not used).
#[derive(Debug, Clone)]
struct ConnPlan {
    refuse: Option<Refuse>,
    start: Start,
    /// Close after this many lines, and whether half of the next one goes out first.
    cut: Option<(usize, bool)>,
    /// After the line at this index, send again the line this many seqs before it.
    dup: Option<(usize, u64)>,
}

/// When the fake acknowledges the client's messages.
#[derive(Debug, Clone, Copy, PartialEq)]
enum AckMode {
    Always,
    Never,
    /// Only once a resumed connection was served.
    AfterFirstResume,
}

#[derive(Debug, Default)]
struct State {
    /// Events of the session, `final` included (seq 1..=total).
    total: u64,
    plans: Vec<ConnPlan>,
    ack_mode: Option<AckMode>,
    /// Stream requests so far (create, resumes, refused ones too).
    requests: usize,
    /// Stream connections answered with 200.
    served: usize,
    /// Refusals since the last served connection, and per served resume.
    refusals_in_a_row: u32,
    attempts_per_resume: Vec<u32>,
    /// The model: the highest seq the client holds (every full line it was sent, in order).
    delivered: u64,
    /// A gap the client was sent: (the seq due, the seq sent).
    gap: Option<(u64, u64)>,
    token_serial: u64,
    /// What went against the contract, as seen by the fake.
    violations: Vec<String>,
    /// Client message seqs received, and the message lines, duplicates included.
    messages: BTreeSet<u64>,
    message_lines: usize,
    /// Event acknowledgements, in arrival order.
    acks: Vec<u64>,
}

impl State {
    fn token(&self) -> String {
        format!("tok{}", self.token_serial)
    }

    /// The client was sent one full line: advance the model. `false` once it is a gap
    /// (nothing more is worth sending on this connection).
    fn sent_line(&mut self, seq: u64) -> bool {
        if self.gap.is_some() {
            return false;
        }
        if seq == self.delivered + 1 {
            self.delivered = seq;
        } else if seq > self.delivered + 1 {
            self.gap = Some((self.delivered + 1, seq));
            return false;
        }
        true
    }
}

/// The fake: its state (script and what it saw) and the server, stopped when dropped.
type Fake = FakeServer<State>;

/// A fake whose session holds `total` events, serving its connections by `plans`.
async fn start_fake(total: u64, plans: Vec<ConnPlan>, ack_mode: AckMode) -> Fake {
    FakeServer::start(
        State {
            total,
            plans,
            ack_mode: Some(ack_mode),
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
            let plan = {
                let mut s = state.lock().unwrap();
                s.requests += 1;
                s.served += 1;
                s.token_serial += 1;
                if s.requests != 1 {
                    let requests = s.requests;
                    s.violations
                        .push(format!("a second create (request {requests})"));
                }
                s.plans.first().cloned()
            };
            stream(socket, &state, 1, plan).await;
            return;
        }
        if path.contains("/stream?") {
            let from: Option<u64> = path
                .split("from=")
                .nth(1)
                .and_then(|v| v.split('&').next())
                .and_then(|v| v.parse().ok());
            let presented = request.header("x-enclave-resume-token").map(str::to_owned);
            let (plan, from) = {
                let mut s = state.lock().unwrap();
                let index = s.requests;
                s.requests += 1;
                let holds = s.delivered;
                let expected = holds + 1;
                if from != Some(expected) {
                    s.violations.push(format!(
                        "request {index}: resume from {from:?}, the client holds up to {holds}"
                    ));
                }
                if let Some(gap) = s.gap {
                    s.violations
                        .push(format!("request {index}: a resume after the gap {gap:?}"));
                }
                let latest = s.token();
                if presented.as_deref() != Some(latest.as_str()) {
                    s.violations.push(format!(
                        "request {index}: token {presented:?}, the latest issued is {latest}"
                    ));
                }
                let plan = s.plans.get(index).cloned();
                if let Some(refuse) = plan.as_ref().and_then(|p| p.refuse) {
                    s.refusals_in_a_row += 1;
                    (Err(refuse), expected)
                } else {
                    let attempts = s.refusals_in_a_row + 1;
                    s.attempts_per_resume.push(attempts);
                    s.refusals_in_a_row = 0;
                    s.served += 1;
                    s.token_serial += 1;
                    (Ok(plan), from.unwrap_or(expected))
                }
            };
            let plan = match plan {
                Ok(plan) => plan,
                Err(refuse) => {
                    refuse_with(&mut socket, refuse).await;
                    return;
                }
            };
            let start = match plan.as_ref().map(|p| p.start) {
                Some(Start::Rewind(n)) => from.saturating_sub(n).max(1),
                Some(Start::Skip(n)) => from + n,
                None => from,
            };
            stream(socket, &state, start, plan).await;
            return;
        }
        if path.ends_with("/messages") {
            let ack = take_messages(&state, &request);
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

/// Records the message lines of a `POST .../messages` and the acknowledgement it carries;
/// returns the `{"ack": M}` to answer under the plan's [`AckMode`].
fn take_messages(state: &Mutex<State>, request: &Request) -> u64 {
    let mut s = state.lock().unwrap();
    if let Some(seq) = request.header("x-enclave-ack").and_then(|v| v.parse().ok()) {
        s.acks.push(seq);
    }
    for line in request
        .body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
    {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) else {
            s.violations
                .push("a message line that is not JSON".to_owned());
            continue;
        };
        let Some(seq) = value["seq"].as_u64() else {
            s.violations.push(format!("a message without seq: {value}"));
            continue;
        };
        if !value.to_string().contains(&format!(r#""m{seq}""#)) {
            s.violations
                .push(format!("message {seq} carries another payload: {value}"));
        }
        s.messages.insert(seq);
        s.message_lines += 1;
    }
    let acking = match s.ack_mode {
        Some(AckMode::Always) => true,
        Some(AckMode::AfterFirstResume) => s.served > 1,
        _ => false,
    };
    // The highest seq up to which every message arrived.
    let mut contiguous = 0;
    while s.messages.contains(&(contiguous + 1)) {
        contiguous += 1;
    }
    if acking {
        contiguous
    } else {
        0
    }
}

async fn refuse_with(socket: &mut TcpStream, refuse: Refuse) {
    let body = match refuse {
        Refuse::Unavailable => {
            r#"{"code":"SERVICE_UNAVAILABLE","message":"busy","reason":"unavailable"}"#
        }
        Refuse::ShuttingDown => {
            r#"{"code":"SERVICE_UNAVAILABLE","message":"restarting","reason":"shutting_down"}"#
        }
        Refuse::Bare => "",
    };
    let headers = [
        ("Content-Type", "application/json"),
        ("Connection", "close"),
    ];
    let _ = write_response(
        socket,
        503,
        "Service Unavailable",
        &headers,
        body.as_bytes(),
    )
    .await;
}

/// Streams from `start` under `plan`, keeping the model of what the client holds.
async fn stream(mut socket: TcpStream, state: &Mutex<State>, start: u64, plan: Option<ConnPlan>) {
    let (total, token) = {
        let s = state.lock().unwrap();
        (s.total, s.token())
    };
    if write_stream_head(&mut socket, SESSION, &token, 3, &[])
        .await
        .is_err()
    {
        return;
    }
    let mut seqs: Vec<u64> = (start..=total).collect();
    if let Some((at, back)) = plan.as_ref().and_then(|p| p.dup) {
        if let Some(&seq) = seqs.get(at) {
            seqs.insert(at + 1, seq.saturating_sub(back).max(1));
        }
    }
    let cut = plan.as_ref().and_then(|p| p.cut);
    for (index, &seq) in seqs.iter().enumerate() {
        let text = line(SESSION, seq, total);
        if let Some((after, mid_line)) = cut {
            if index == after {
                if mid_line {
                    let half = &text[..text.len() / 2];
                    let _ = write_chunk(&mut socket, half.as_bytes()).await;
                }
                return;
            }
        }
        if write_chunk(&mut socket, text.as_bytes()).await.is_err() {
            return;
        }
        if !state.lock().unwrap().sent_line(seq) {
            return;
        }
    }
    let _ = write_last_chunk(&mut socket).await;
}

fn conn_plan() -> impl Strategy<Value = ConnPlan> {
    let refuse = prop_oneof![
        6 => Just(None),
        1 => Just(Some(Refuse::Unavailable)),
        1 => Just(Some(Refuse::ShuttingDown)),
        1 => Just(Some(Refuse::Bare)),
    ];
    let start = prop_oneof![
        3 => Just(Start::Rewind(0)),
        4 => (1u64..40).prop_map(Start::Rewind),
        // Rare: most plans have no gap, so they run to `final`.
        1 => (1u64..5).prop_map(Start::Skip),
    ];
    let cut = proptest::option::weighted(0.85, (0usize..60, any::<bool>()));
    let dup = proptest::option::weighted(0.3, (0usize..60, 0u64..10));
    (refuse, start, cut, dup).prop_map(|(refuse, start, cut, dup)| ConnPlan {
        refuse,
        start,
        cut,
        dup,
    })
}

fn ack_mode() -> impl Strategy<Value = AckMode> {
    prop_oneof![
        Just(AckMode::Always),
        Just(AckMode::Never),
        Just(AckMode::AfterFirstResume)
    ]
}

fn config() -> StreamConfig {
    StreamConfig::default()
        .with_client(ClientConfig::default().with_encryption(EncryptionMode::Disabled))
        .with_policy(
            ReconnectPolicy::default()
                .with_max_attempts(20)
                .with_initial_delay(Duration::from_millis(1))
                .with_max_delay(Duration::from_millis(5)),
        )
        // Generous: no plan goes silent, and a slow CI machine must not look like one.
        .with_heartbeat_timeout(Duration::from_secs(8))
        .with_acks(8, Duration::from_millis(3))
}

/// Checks the connection events: a chain of state changes that starts at `Disconnected` →
/// `Connecting`, takes only the machine's edges, puts a `Disconnected` between any two
/// `Connected`, counts retries from 1 after each connection, and ends `Closed` (or `Failed`).
fn check_events(log: &[ConnectionEvent], failed: bool) -> Result<(), String> {
    use ConnectionState::{Closed, Connected, Connecting, Disconnected, Failed, Reconnecting};
    let mut state = Disconnected;
    let mut up = false;
    let mut attempt = 0;
    let mut scheduled = None;
    for (i, event) in log.iter().enumerate() {
        match event {
            ConnectionEvent::StateChange { from, to } => {
                if *from != state {
                    return Err(format!("event {i}: from {from:?}, the state was {state:?}"));
                }
                let allowed = matches!(
                    (from, to),
                    (Disconnected | Reconnecting, Reconnecting | Failed)
                        | (Connecting | Reconnecting, Connected)
                        | (Connected, Disconnected | Closed | Failed)
                ) || (i == 0 && (*from, *to) == (Disconnected, Connecting));
                if !allowed || from == to {
                    return Err(format!("event {i}: {from:?} → {to:?} is not an edge"));
                }
                state = *to;
            }
            ConnectionEvent::Connected { session_id, .. } => {
                if up {
                    return Err(format!("event {i}: connected twice without a disconnect"));
                }
                if session_id.as_str() != SESSION || state != Connected {
                    return Err(format!("event {i}: {event:?} in state {state:?}"));
                }
                up = true;
                attempt = 0;
            }
            ConnectionEvent::Disconnected { .. } => {
                if !up {
                    return Err(format!("event {i}: disconnected while not connected"));
                }
                up = false;
            }
            ConnectionEvent::RetryScheduled { attempt: n, delay } => {
                if *n != attempt + 1 || scheduled.is_some() || up {
                    return Err(format!("event {i}: retry {n} after {attempt}, up {up}"));
                }
                if *delay > Duration::from_millis(5) {
                    return Err(format!(
                        "event {i}: delay {delay:?} above the policy's 5 ms"
                    ));
                }
                attempt = *n;
                scheduled = Some(*n);
            }
            ConnectionEvent::RetryStarted { attempt: n } => {
                if scheduled != Some(*n) {
                    return Err(format!(
                        "event {i}: retry {n} started, {scheduled:?} was due"
                    ));
                }
                scheduled = None;
            }
            ConnectionEvent::Failed { .. } => {
                if !failed {
                    return Err(format!("event {i}: failed on a plan without a gap"));
                }
            }
            other => return Err(format!("event {i}: unknown event {other:?}")),
        }
    }
    let end = if failed { Failed } else { Closed };
    if state != end {
        return Err(format!("ended in {state:?}, not {end:?}"));
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct Case {
    events: u64,
    plans: Vec<ConnPlan>,
    ack_mode: AckMode,
    /// Send a message right after each of these seqs is delivered.
    sends: Vec<u64>,
}

fn case() -> impl Strategy<Value = Case> {
    (20u64..200).prop_flat_map(|events| {
        (
            proptest::collection::vec(conn_plan(), 0..10),
            ack_mode(),
            proptest::collection::vec(1..=events, 0..6),
        )
            .prop_map(move |(plans, ack_mode, mut sends)| {
                sends.sort_unstable();
                Case {
                    events,
                    plans,
                    ack_mode,
                    sends,
                }
            })
    })
}

/// Checks the connection events against the machine and against what the fake served.
fn check_machine(
    events_rx: &mut tokio::sync::broadcast::Receiver<ConnectionEvent>,
    state: &State,
    reconnects: &[u32],
) -> Result<(), TestCaseError> {
    // The observable machine.
    let mut log = Vec::new();
    loop {
        match events_rx.try_recv() {
            Ok(event) => log.push(event),
            Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
            Err(err) => prop_assert!(false, "the event log: {}", err),
        }
    }
    if let Err(reason) = check_events(&log, state.gap.is_some()) {
        prop_assert!(false, "{}\n{:#?}", reason, log);
    }
    let count = |f: fn(&ConnectionEvent) -> bool| log.iter().filter(|e| f(e)).count();
    let resumes = state.requests - 1;
    prop_assert_eq!(
        count(|e| matches!(e, ConnectionEvent::Connected { .. })),
        state.served
    );
    prop_assert_eq!(
        count(|e| matches!(e, ConnectionEvent::Disconnected { .. })),
        state.served - 1
    );
    prop_assert_eq!(
        count(|e| matches!(e, ConnectionEvent::RetryScheduled { .. })),
        resumes
    );
    // `on_reconnect` gets each successful resume's attempt number (1 + the 503s before it).
    prop_assert_eq!(reconnects, &state.attempts_per_resume);
    Ok(())
}

async fn run(case: Case) -> Result<(), TestCaseError> {
    let total = case.events + 1;
    let fake = start_fake(total, case.plans.clone(), case.ack_mode).await;
    let mut stream =
        ReconnectingStream::new(fake.url(), NewSession::new().with_code("x"), config());
    let reconnects = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&reconnects);
    stream.on_reconnect(move |attempt| seen.lock().unwrap().push(attempt));
    let mut events_rx = stream.events();

    let mut delivered = Vec::new();
    let mut pending_sends = case.sends.iter().copied().peekable();
    let mut sent = 0u64;
    let mut error = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                let seq = event.seq;
                delivered.push(seq);
                while pending_sends.next_if(|&at| at == seq).is_some() {
                    sent += 1;
                    let payload =
                        RuntimeChannelPayload::Cancel(CancelPayload::new(Some(format!("m{sent}"))));
                    let numbered = stream.send(payload).await;
                    prop_assert!(
                        matches!(numbered, Ok(n) if n == sent),
                        "send {}: {:?}",
                        sent,
                        numbered
                    );
                }
            }
            Err(err) => {
                prop_assert!(err.is_terminal(), "item error: {}", err);
                error = Some(err);
                break;
            }
        }
    }
    prop_assert!(
        stream.next().await.is_none(),
        "the stream goes on after its end"
    );

    let state = fake.state();
    prop_assert!(
        state.violations.is_empty(),
        "the fake saw: {:?}",
        state.violations
    );
    // Exactly once, in order, up to the model's position.
    let expected: Vec<u64> = (1..=state.delivered).collect();
    prop_assert_eq!(&delivered, &expected);
    match (state.gap, &error) {
        (None, None) => {
            prop_assert_eq!(state.delivered, total, "the stream ended before final");
            prop_assert_eq!(stream.state(), ConnectionState::Closed);
            prop_assert_eq!(
                state.acks.last().copied(),
                Some(total),
                "final acknowledged"
            );
        }
        (
            Some((due, got)),
            Some(StreamError::Gap {
                expected,
                got: sent,
                ..
            }),
        ) => {
            prop_assert_eq!((due, got), (*expected, *sent));
            prop_assert_eq!(stream.state(), ConnectionState::Failed);
        }
        (gap, err) => prop_assert!(false, "gap {:?}, error {:?}", gap, err),
    }
    // Acknowledgements only grow, and never beyond what the client holds.
    prop_assert!(
        state.acks.windows(2).all(|w| w[0] <= w[1]),
        "acks go back: {:?}",
        state.acks
    );
    prop_assert!(state.acks.iter().all(|&a| a <= state.delivered));

    // Every message arrived, with its own seq, at least once.
    let sent_seqs: BTreeSet<u64> = (1..=sent).collect();
    prop_assert_eq!(&state.messages, &sent_seqs);
    prop_assert!(state.message_lines >= usize::try_from(sent).unwrap());
    if state.gap.is_none() {
        match case.ack_mode {
            AckMode::Always => prop_assert_eq!(stream.unacked_len(), 0),
            AckMode::Never => {
                prop_assert_eq!(stream.unacked_len(), usize::try_from(sent).unwrap());
            }
            AckMode::AfterFirstResume => {
                prop_assert!(stream.unacked_len() <= usize::try_from(sent).unwrap());
            }
        }
    }

    let reconnects = reconnects.lock().unwrap().clone();
    check_machine(&mut events_rx, &state, &reconnects)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn each_seq_once_in_order_across_any_cuts_replays_and_refusals(case in case()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            match tokio::time::timeout(CASE_LIMIT, run(case)).await {
                Ok(result) => result,
                Err(_) => Err(TestCaseError::fail("the case did not end within 10 s")),
            }
        })?;
    }

    #[test]
    fn retry_delays_stay_in_the_jitter_band_under_the_cap(
        initial_ms in 0u64..5_000,
        max_ms in 1u64..60_000,
        multiplier in 0.5f64..4.0,
        jitter in -0.5f64..1.5,
        max_attempts in 0u32..16,
        reset_after in 0u32..16,
    ) {
        let policy = ReconnectPolicy::default()
            .with_initial_delay(Duration::from_millis(initial_ms))
            .with_max_delay(Duration::from_millis(max_ms))
            .with_multiplier(multiplier)
            .with_jitter(jitter)
            .with_max_attempts(max_attempts);
        // What the policy promises: the multiplier at least 1, the jitter within 0..=1.
        let multiplier = multiplier.max(1.0);
        let jitter = jitter.clamp(0.0, 1.0);
        let initial = Duration::from_millis(initial_ms).as_secs_f64();
        let max = Duration::from_millis(max_ms).as_secs_f64();
        let mut schedule = policy.schedule();
        for round in 0..2 {
            prop_assert_eq!(schedule.attempts(), 0);
            let mut nominal = initial;
            let stop = if round == 0 { reset_after.min(max_attempts) } else { max_attempts };
            for attempt in 1..=stop {
                let next = schedule.next_delay();
                prop_assert!(next.is_some(), "attempt {} of {} refused", attempt, max_attempts);
                let (n, delay) = next.unwrap();
                prop_assert_eq!(n, attempt);
                prop_assert_eq!(schedule.attempts(), attempt);
                let secs = delay.as_secs_f64();
                let low = (nominal * (1.0 - jitter)).min(max);
                let high = (nominal * (1.0 + jitter)).min(max);
                prop_assert!(
                    secs >= low - 1e-6 && secs <= high + 1e-6,
                    "attempt {}: {} s outside [{}, {}]", attempt, secs, low, high
                );
                prop_assert!(delay <= Duration::from_millis(max_ms));
                nominal = (nominal * multiplier).min(max);
            }
            if round == 1 || stop == max_attempts {
                prop_assert_eq!(schedule.next_delay(), None);
                prop_assert_eq!(schedule.next_delay(), None, "used up stays used up");
                prop_assert_eq!(schedule.attempts(), max_attempts);
            }
            schedule.reset();
        }
    }
}

//! Our HTTP client against the TypeScript broker: `tests/data/broker-http.json` (a recorded
//! exchange with `@enclave-vm/broker` 2.15.2) is replayed by a tiny server over loopback that
//! writes each recorded status, headers and body (chunked, one chunk per line, as the broker
//! flushes), and the client must read every recorded stream and refusal.

use std::time::Duration;

use enclave_testkit::http::{server, Request};
use enclave_transport::client::{connect, ClientConfig, NewSession, Open, Received, ResumeAt};
use enclave_transport::Error as TransportError;
use enclave_transport::RefusalReason;
use enclave_types::{EncryptionMode, Frame, SessionId, StreamEvent};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const LIMIT: Duration = Duration::from_secs(10);

fn recorded() -> Vec<Value> {
    serde_json::from_str(include_str!("../data/broker-http.json")).expect("the vector file is JSON")
}

/// Serves one connection: reads one request, answers with the recorded `response`.
async fn replay_once(response: Value) -> (String, tokio::task::JoinHandle<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let request = read_request(&mut socket).await;
        let status = u16::try_from(response["status"].as_u64().unwrap()).unwrap();
        let mut headers: Vec<(&str, &str)> = Vec::new();
        for (name, value) in response["headers"].as_object().unwrap() {
            // The framing is rewritten below (the recorded body is already de-chunked).
            if name.eq_ignore_ascii_case("transfer-encoding")
                || name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("connection")
            {
                continue;
            }
            headers.push((name, value.as_str().unwrap()));
        }
        headers.push(("Connection", "close"));
        server::write_chunked_head(&mut socket, status, "Recorded", &headers)
            .await
            .unwrap();
        let body = response["body"].as_str().unwrap_or_default();
        for line in body.split_inclusive('\n') {
            server::write_chunk(&mut socket, line.as_bytes())
                .await
                .unwrap();
            socket.flush().await.unwrap();
        }
        server::write_last_chunk(&mut socket).await.unwrap();
        socket.shutdown().await.ok();
        request
    });
    (url, task)
}

/// Reads the whole request the client sent.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Request {
    server::read_request(socket)
        .await
        .expect("the client sent a whole request")
}

/// The events of a recorded NDJSON body, parsed independently of the client.
fn expected_events(body: &str) -> Vec<StreamEvent> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match Frame::parse_line(l.as_bytes()).unwrap() {
            Frame::Event(event) => event,
            other => panic!("the broker sent a non-event {other:?}"),
        })
        .collect()
}

async fn read_all(conn: &mut enclave_transport::client::Connection) -> Vec<StreamEvent> {
    let mut events = Vec::new();
    while let Some(item) = tokio::time::timeout(LIMIT, conn.next()).await.unwrap() {
        match item.unwrap() {
            Received::Event {
                event,
                encrypted,
                json,
            } => {
                assert!(!encrypted, "the broker does not encrypt");
                assert!(json.is_none(), "no line is copied unless asked for");
                events.push(event);
            }
            other => panic!("the broker sends no control lines, got {other:?}"),
        }
    }
    events
}

#[tokio::test]
async fn reads_the_brokers_create_stream_and_sends_what_the_broker_reads() {
    let entries = recorded();
    let entry = &entries[0];
    let sent: Value = serde_json::from_str(entry["request"]["body"].as_str().unwrap()).unwrap();
    let session = SessionId::new(sent["sessionId"].as_str().unwrap()).unwrap();
    let (url, server) = replay_once(entry["response"].clone()).await;

    let open = Open::New(
        NewSession::new()
            .with_session_id(session.clone())
            .with_code(sent["code"].as_str().unwrap()),
    );
    let mut conn = connect(&url, open, &ClientConfig::default()).await.unwrap();
    assert_eq!(conn.session_id(), &session);
    assert_eq!(conn.token(), None, "the broker issues no resume token");
    assert!(!conn.resumed());
    let events = read_all(&mut conn).await;
    assert!(
        !conn.encrypted(),
        "the broker answered without a ServerHello"
    );

    let expected = expected_events(entry["response"]["body"].as_str().unwrap());
    assert!(expected.len() > 5, "the recording has a whole session");
    assert_eq!(events, expected);
    assert_eq!(conn.last_seq(), expected.last().map(|e| e.seq));

    let request = tokio::time::timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("POST", "/sessions")
    );
    assert_eq!(request.header("accept"), Some("application/x-ndjson"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-enclave-features"), Some("resume"));
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["sessionId"], sent["sessionId"]);
    assert_eq!(body["code"], sent["code"]);
    assert_eq!(body["encryption"]["mode"], "optional");
    assert!(body["encryption"]["clientHello"].is_object());
}

#[tokio::test]
async fn a_resume_sends_from_and_fromseq_and_reads_the_replay() {
    let entries = recorded();
    let entry = &entries[3];
    let recorded_path = entry["request"]["path"].as_str().unwrap();
    assert!(recorded_path.ends_with("/stream?fromSeq=3"));
    let session = recorded_path
        .trim_start_matches("/sessions/")
        .split('/')
        .next()
        .unwrap();
    let session = SessionId::new(session).unwrap();
    let (url, server) = replay_once(entry["response"].clone()).await;

    let config = ClientConfig::default().with_encryption(EncryptionMode::Disabled);
    let open = Open::Resume(ResumeAt::new(session.clone(), 3));
    let mut conn = connect(&url, open, &config).await.unwrap();
    assert!(conn.resumed());
    let events = read_all(&mut conn).await;
    let expected = expected_events(entry["response"]["body"].as_str().unwrap());
    assert_eq!(events.first().map(|e| e.seq), Some(3));
    assert_eq!(events, expected);

    let request = tokio::time::timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(request.method, "GET");
    assert_eq!(
        request.target,
        format!("/sessions/{session}/stream?from=3&fromSeq=3")
    );
    assert_eq!(request.header("x-enclave-resume-token"), None);
    assert_eq!(
        request.header("x-enclave-client-hello"),
        None,
        "encryption disabled"
    );
}

#[tokio::test]
async fn a_failing_session_still_streams_to_its_final() {
    let entries = recorded();
    let entry = &entries[8];
    let (url, _server) = replay_once(entry["response"].clone()).await;
    let mut conn = connect(
        &url,
        Open::New(NewSession::new().with_code("x")),
        &ClientConfig::default(),
    )
    .await
    .unwrap();
    let events = read_all(&mut conn).await;
    assert_eq!(
        events,
        expected_events(entry["response"]["body"].as_str().unwrap())
    );
    assert_eq!(events.last().unwrap().event_type().as_str(), "final");
}

#[tokio::test]
async fn the_brokers_404_is_an_unknown_session_refusal() {
    let entries = recorded();
    let entry = &entries[4];
    assert_eq!(entry["response"]["status"], 404);
    let (url, _server) = replay_once(entry["response"].clone()).await;
    let session = SessionId::new("s_00000000-0000-4000-8000-000000000000").unwrap();
    let err = connect(
        &url,
        Open::Resume(ResumeAt::new(session, 1)),
        &ClientConfig::default(),
    )
    .await
    .unwrap_err();
    match &err {
        TransportError::Refused { refusal, status } => {
            assert_eq!(*status, 404);
            assert_eq!(refusal.reason, RefusalReason::UnknownSession);
            assert!(refusal.message.contains("not found"), "{err}");
        }
        other => panic!("expected a refusal, got {other}"),
    }
}

#[tokio::test]
async fn a_400_with_a_json_code_is_a_refusal_and_an_html_400_is_a_status_error() {
    let entries = recorded();
    let (url, _server) = replay_once(entries[6]["response"].clone()).await;
    let err = connect(&url, Open::New(NewSession::new()), &ClientConfig::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.refusal().map(|r| r.reason),
        Some(RefusalReason::InvalidRequest),
        "{err}"
    );

    let (url, _server) = replay_once(entries[5]["response"].clone()).await;
    let err = connect(&url, Open::New(NewSession::new()), &ClientConfig::default())
        .await
        .unwrap_err();
    match err {
        TransportError::Status { status, what, .. } => {
            assert_eq!(status, 400);
            assert_eq!(what, "POST /sessions");
        }
        other => panic!("expected a status error, got {other}"),
    }
}

#[tokio::test]
async fn a_client_that_requires_encryption_refuses_the_brokers_plaintext_stream() {
    let entries = recorded();
    let (url, _server) = replay_once(entries[0]["response"].clone()).await;
    let session = SessionId::new("s_3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f").unwrap();
    let config = ClientConfig::default().with_encryption(EncryptionMode::Required);
    let mut conn = connect(
        &url,
        Open::New(NewSession::new().with_session_id(session)),
        &config,
    )
    .await
    .unwrap();
    let first = tokio::time::timeout(LIMIT, conn.next())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(first, Err(TransportError::EncryptionDowngrade { .. })),
        "{first:?}"
    );
    // Nothing plaintext is ever handed over after that.
    assert!(tokio::time::timeout(LIMIT, conn.next())
        .await
        .unwrap()
        .is_none());
}

/// A server that takes an acknowledgement's `POST /sessions/:id/messages`, answers its head
/// and then neither finishes the body nor closes (a session that has just ended): the ack
/// fails with a timeout instead of holding the client forever. `enclave connect` acknowledges
/// this way as it closes after `final`, and once sat in that read.
#[tokio::test]
async fn an_ack_whose_answer_never_ends_times_out() {
    let entries = recorded();
    let entry = &entries[0];
    let sent: Value = serde_json::from_str(entry["request"]["body"].as_str().unwrap()).unwrap();
    let session = SessionId::new(sent["sessionId"].as_str().unwrap()).unwrap();
    let (url, server) = replay_once(entry["response"].clone()).await;
    let config = ClientConfig::default().with_connect_timeout(Duration::from_millis(500));
    let open = Open::New(
        NewSession::new()
            .with_session_id(session)
            .with_code(sent["code"].as_str().unwrap()),
    );
    let mut conn = connect(&url, open, &config).await.unwrap();
    let events = read_all(&mut conn).await;
    server.await.unwrap();
    // The same address now answers the ack's head and stalls.
    let listener = TcpListener::bind(url.trim_start_matches("http://"))
        .await
        .expect("the port is free again");
    let stall = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let request = read_request(&mut socket).await;
        let json = [("Content-Type", "application/json")];
        server::write_chunked_head(&mut socket, 200, "OK", &json)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        request
    });
    let last = events.last().expect("events").seq;
    let acked = tokio::time::timeout(LIMIT, conn.ack(last))
        .await
        .expect("the ack gives up within its bound");
    assert!(
        matches!(acked, Err(TransportError::Timeout { .. })),
        "{acked:?}"
    );
    stall.abort();
}

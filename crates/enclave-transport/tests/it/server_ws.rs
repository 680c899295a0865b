//! The WebSocket route of the server, driven over loopback with tokio-tungstenite against an
//! in-memory session service.

use crate::common;

use std::time::Duration;

use bytes::BytesMut;
use common::{Running, WAIT};
use enclave_crypto::{ClientHandshake, EncryptionLayer};
use enclave_transport::ServerConfig;
use enclave_types::{
    CancelPayload, EncryptionMode, EventPayload, Frame, RuntimeChannelMessage, SessionId,
    StreamEvent,
};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(server: &Running) -> Socket {
    let url = format!("ws://{}/sessions/ws", server.addr);
    let (socket, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 101);
    socket
}

/// What the server sent next: lines of a text message, or the close code.
enum Received {
    Lines(Vec<String>),
    Closed(Option<u16>),
}

async fn receive(socket: &mut Socket) -> Received {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a message within the wait");
        match message {
            Some(Ok(Message::Text(text))) => {
                return Received::Lines(text.as_str().lines().map(str::to_owned).collect())
            }
            Some(Ok(Message::Close(frame))) => {
                return Received::Closed(frame.map(|f| u16::from(f.code)))
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Received::Closed(None),
        }
    }
}

/// Every line until the close, and the close code.
async fn receive_all(socket: &mut Socket) -> (Vec<String>, Option<u16>) {
    let mut lines = Vec::new();
    loop {
        match receive(socket).await {
            Received::Lines(more) => lines.extend(more),
            Received::Closed(code) => return (lines, code),
        }
    }
}

async fn send_json(socket: &mut Socket, value: &Value) {
    socket.send(Message::text(value.to_string())).await.unwrap();
}

/// Reads (and so answers pings) for `period`: `Err` when the socket stayed open all along,
/// else the close frame it got (`None` when it just ended).
async fn stays_open(
    socket: &mut Socket,
    period: Duration,
) -> Result<Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>, tokio::time::error::Elapsed>
{
    tokio::time::timeout(period, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
}

async fn opened(socket: &mut Socket) -> Value {
    match receive(socket).await {
        Received::Lines(lines) => {
            assert_eq!(lines.len(), 1, "{lines:?}");
            let opened: Value = serde_json::from_str(&lines[0]).unwrap();
            assert_eq!(opened["type"], "opened", "{opened}");
            opened
        }
        Received::Closed(code) => panic!("closed with {code:?} instead of opened"),
    }
}

fn plain(line: &str) -> StreamEvent {
    match Frame::parse_line(line.as_bytes()).unwrap() {
        Frame::Event(event) => event,
        other => panic!("not a plaintext event: {other:?}"),
    }
}

#[tokio::test]
async fn open_creates_a_session_and_streams_it_to_final() {
    let server = Running::start(4, ServerConfig::default()).await;
    let mut socket = connect(&server).await;
    send_json(&mut socket, &json!({"type": "open", "code": "x"})).await;
    let opened = opened(&mut socket).await;
    assert_eq!(opened["resumed"], false);
    assert_eq!(opened["epoch"], 7);
    assert!(opened.get("serverHello").is_none());
    let id = SessionId::new(opened["sessionId"].as_str().unwrap()).unwrap();
    let (lines, code) = receive_all(&mut socket).await;
    let seqs: Vec<u64> = lines.iter().map(|l| plain(l).seq).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
    assert_eq!(code, Some(1000));
    let record = server.service.record(&id);
    assert_eq!(
        record.lock().unwrap().token,
        opened["token"].as_str().unwrap()
    );
    assert_eq!(record.lock().unwrap().written, 6);
    assert_eq!(
        record.lock().unwrap().peer,
        Some(std::net::Ipv4Addr::LOCALHOST.into()),
        "the session layer learns who asked"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_encrypted_websocket_seals_every_event_and_opens_messages() {
    let server = Running::start(
        3,
        ServerConfig::default().with_encryption(EncryptionMode::Required),
    )
    .await;
    let mut socket = connect(&server).await;
    let handshake = ClientHandshake::start().unwrap();
    let id = SessionId::generate();
    send_json(
        &mut socket,
        &json!({"type": "open", "sessionId": id, "code": "hold", "features": ["resume"],
        "encryption": {"mode": "required", "clientHello": handshake.client_hello()}}),
    )
    .await;
    let opened = opened(&mut socket).await;
    let hello = serde_json::from_value(opened["serverHello"].clone()).unwrap();
    let (sealer, opener) = handshake
        .finish(&hello, &id)
        .unwrap()
        .into_ciphers()
        .unwrap();
    let mut layer = EncryptionLayer::with_ciphers(EncryptionMode::Required, sealer, opener);

    let mut seqs = Vec::new();
    while seqs.len() < 4 {
        let Received::Lines(lines) = receive(&mut socket).await else {
            panic!("closed early")
        };
        for line in lines {
            assert!(
                line.contains(r#""type":"enc""#),
                "session_init is sealed too: {line}"
            );
            let event = layer
                .open(Frame::parse_line(line.as_bytes()).unwrap())
                .unwrap()
                .message;
            if event.seq == 1 {
                let EventPayload::SessionInit(init) = &event.payload else {
                    panic!("{event:?}")
                };
                assert!(init.encryption.enabled);
            }
            seqs.push(event.seq);
        }
    }
    assert_eq!(seqs, vec![1, 2, 3, 4]);

    // Two sealed messages and an ack in one text message; the server acknowledges.
    let mut wire = BytesMut::new();
    for seq in 1..=2 {
        let mut message = RuntimeChannelMessage::new(id.clone(), CancelPayload::new(None).into());
        message.seq = Some(seq);
        layer.encode(&message, &mut wire).unwrap();
    }
    let mut text = String::from_utf8(wire.to_vec()).unwrap();
    text.push_str("{\"type\":\"ack\",\"seq\":4}\n");
    // A plaintext message on an encrypted connection is dropped; the connection goes on.
    let mut injected = RuntimeChannelMessage::new(id.clone(), CancelPayload::new(None).into());
    injected.seq = Some(3);
    text.push_str(&serde_json::to_string(&injected).unwrap());
    socket.send(Message::text(text)).await.unwrap();
    let Received::Lines(lines) = receive(&mut socket).await else {
        panic!("closed early")
    };
    assert_eq!(lines, vec![r#"{"type":"ack","seq":2}"#.to_owned()]);
    let record = server.service.record(&id);
    assert_eq!(record.lock().unwrap().messages.len(), 2);
    assert_eq!(record.lock().unwrap().acks, vec![4]);

    // Shutdown: the shutting_down refusal, then 1012.
    let stopping = tokio::spawn(server.stop());
    let (lines, code) = receive_all(&mut socket).await;
    assert_eq!(
        serde_json::from_str::<Value>(&lines[0]).unwrap()["reason"],
        "shutting_down"
    );
    assert_eq!(code, Some(1012));
    tokio::time::timeout(WAIT, stopping).await.unwrap().unwrap();
}

#[tokio::test]
async fn resume_and_refusals_close_with_the_contract_codes() {
    let server = Running::start(
        2,
        ServerConfig::default().with_ws_open_timeout(Duration::from_millis(200)),
    )
    .await;
    let mut socket = connect(&server).await;
    send_json(&mut socket, &json!({"type": "open"})).await;
    let first = opened(&mut socket).await;
    let id = first["sessionId"].as_str().unwrap().to_owned();
    let (lines, _) = receive_all(&mut socket).await;
    assert_eq!(lines.len(), 4);

    // Resume from 3 with the token and the resume feature: replay, end marker, final.
    let mut socket = connect(&server).await;
    send_json(
        &mut socket,
        &json!({"type": "open", "sessionId": id, "features": ["resume"],
        "resume": {"from": 3, "token": first["token"], "epoch": 7}}),
    )
    .await;
    let again = opened(&mut socket).await;
    assert_eq!(again["resumed"], true);
    assert_ne!(again["token"], first["token"]);
    let (lines, code) = receive_all(&mut socket).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(plain(&lines[0]).seq, 3);
    assert_eq!(lines[2], r#"{"type":"replay_complete","lastSeq":4}"#);
    assert_eq!(code, Some(1000));

    // The old token is spent: the refusal body, then 4403.
    for (open, reason, close) in [
        (
            json!({"type": "open", "sessionId": id, "resume": {"from": 1, "token": first["token"]}}),
            "bad_token",
            4403,
        ),
        (
            json!({"type": "open", "sessionId": id, "resume": {"from": 1}}),
            "missing_token",
            4401,
        ),
        (
            json!({"type": "open", "sessionId": id}),
            "session_exists",
            4409,
        ),
        (json!({"type": "ack", "seq": 1}), "invalid_request", 4400),
    ] {
        let mut socket = connect(&server).await;
        send_json(&mut socket, &open).await;
        let (lines, code) = receive_all(&mut socket).await;
        let body: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(body["reason"], reason, "{body}");
        assert!(body["code"].is_string() && body["message"].is_string());
        assert_eq!(code, Some(close));
    }

    // Nothing sent: the open timeout refuses with 4400.
    let mut socket = connect(&server).await;
    let (lines, code) = receive_all(&mut socket).await;
    assert!(lines[0].contains("no open message"), "{lines:?}");
    assert_eq!(code, Some(4400));
    server.stop().await;
}

/// Issue 16: an `open` naming a malformed session id (too long, a newline, a path, a
/// character outside `[A-Za-z0-9_-]`) is refused (`invalid_request`, close 4400), whether
/// it creates or resumes.
#[tokio::test]
async fn an_open_with_a_malformed_session_id_is_refused() {
    let server = Running::start(1, ServerConfig::default()).await;
    let long = format!("s_{}", "a".repeat(100 * 1024));
    for bad in [long.as_str(), "s_a\nb", "s_../../x", "s_a b"] {
        for open in [
            json!({"type": "open", "sessionId": bad}),
            json!({"type": "open", "sessionId": bad, "resume": {"from": 1, "token": "AAAA"}}),
        ] {
            let mut socket = connect(&server).await;
            send_json(&mut socket, &open).await;
            let (lines, code) = receive_all(&mut socket).await;
            let body: Value = serde_json::from_str(&lines[0]).unwrap();
            assert_eq!(body["reason"], "invalid_request", "{body}");
            assert_eq!(body["code"], "INVALID_REQUEST", "{body}");
            assert_eq!(code, Some(4400));
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_required_policy_refuses_a_plaintext_open() {
    let server = Running::start(
        1,
        ServerConfig::default().with_encryption(EncryptionMode::Required),
    )
    .await;
    let mut socket = connect(&server).await;
    send_json(&mut socket, &json!({"type": "open"})).await;
    let (lines, code) = receive_all(&mut socket).await;
    assert_eq!(
        serde_json::from_str::<Value>(&lines[0]).unwrap()["code"],
        "ENCRYPTION_REQUIRED"
    );
    assert_eq!(code, Some(CloseCode::from(4400).into()));
    assert!(server.service.sessions.lock().unwrap().is_empty());
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Floods and protocol errors

/// A raw data frame: `text` or continuation, final or not, any payload (UTF-8 or not).
fn raw_frame(continuation: bool, payload: &[u8], is_final: bool) -> Message {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
    let opcode = if continuation {
        Data::Continue
    } else {
        Data::Text
    };
    Message::Frame(WsFrame::message(
        payload.to_vec(),
        OpCode::Data(opcode),
        is_final,
    ))
}

/// The close code the server sends after `message` (on an open session when `open`).
async fn close_code_after(server: &Running, open: bool, messages: Vec<Message>) -> Option<u16> {
    let mut socket = connect(server).await;
    if open {
        send_json(&mut socket, &json!({"type": "open", "code": "hold"})).await;
        opened(&mut socket).await;
    }
    for message in messages {
        // The server may close before the last one is written.
        let _ = socket.send(message).await;
    }
    receive_all(&mut socket).await.1
}

#[tokio::test]
async fn oversized_malformed_and_unfinished_messages_close_with_their_codes() {
    // A client message is bounded as an HTTP body is.
    let server = Running::start(1, ServerConfig::default().with_max_body_bytes(1024)).await;
    let big = "x".repeat(2000);
    assert_eq!(
        close_code_after(&server, true, vec![Message::text(big.clone())]).await,
        Some(1009),
        "a message over the limit"
    );
    assert_eq!(
        close_code_after(&server, false, vec![Message::text(big)]).await,
        Some(1009),
        "an open message over the limit"
    );
    // Fragments that never finish are held only up to the limit.
    let fragment = [b' '; 600];
    assert_eq!(
        close_code_after(
            &server,
            true,
            vec![
                raw_frame(false, &fragment, false),
                raw_frame(true, &fragment, false),
            ]
        )
        .await,
        Some(1009),
        "an unfinished fragmented message over the limit"
    );
    assert_eq!(
        close_code_after(&server, true, vec![raw_frame(true, b"{}", true)]).await,
        Some(1002),
        "a continuation without a first fragment"
    );
    assert_eq!(
        close_code_after(&server, false, vec![raw_frame(true, b"{}", true)]).await,
        Some(1002),
        "a protocol error before open"
    );
    assert_eq!(
        close_code_after(
            &server,
            true,
            vec![raw_frame(false, b"{\"a\":\"\xff\xfe\"}", true)]
        )
        .await,
        Some(1007),
        "a text message that is not UTF-8"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_message_not_finished_in_time_is_closed_with_1008_though_pings_are_answered() {
    let config = ServerConfig::default()
        .with_ws_ping_interval(Duration::from_millis(100))
        .with_ws_pong_timeout(Duration::from_millis(400))
        .with_ws_message_timeout(Duration::from_millis(400));
    let server = Running::start(1, config).await;
    let mut socket = connect(&server).await;
    send_json(&mut socket, &json!({"type": "open", "code": "hold"})).await;
    let opened = opened(&mut socket).await;
    let id = SessionId::new(opened["sessionId"].as_str().unwrap()).unwrap();
    // A message finished within the bound, its fragments apart, is taken; so is the next.
    for _ in 0..2 {
        socket
            .send(raw_frame(false, b"{\"type\":", false))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        socket
            .send(raw_frame(true, b"\"ack\",", false))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        socket
            .send(raw_frame(true, b"\"seq\":1}", true))
            .await
            .unwrap();
    }
    // Reading (and so answering pings) for a while: events, no close.
    let quiet = stays_open(&mut socket, Duration::from_millis(600)).await;
    assert!(quiet.is_err(), "closed after whole messages: {quiet:?}");
    assert_eq!(server.service.record(&id).lock().unwrap().acks, [1, 1]);
    // A first fragment whose message never ends: reading answers every ping, yet the
    // server closes with 1008 (policy) instead of holding the message for ever.
    socket.send(raw_frame(false, b"[", false)).await.unwrap();
    let sent = std::time::Instant::now();
    let (_, code) = tokio::time::timeout(Duration::from_secs(3), receive_all(&mut socket))
        .await
        .expect("closed within the message timeout");
    assert_eq!(code, Some(1008));
    assert!(
        sent.elapsed() >= Duration::from_millis(400),
        "{:?}",
        sent.elapsed()
    );
    drop(socket);
    server.stop().await;
}

#[tokio::test]
async fn a_request_that_is_not_a_websocket_upgrade_is_refused_400_with_json() {
    let server = Running::start(1, ServerConfig::default()).await;
    for (headers, says) in [
        (vec![], "Connection: upgrade"),
        (
            vec![("connection", "keep-alive, Upgrade"), ("upgrade", "h2c")],
            "Upgrade: websocket",
        ),
        (
            vec![
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "8"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
            "Sec-WebSocket-Version: 13",
        ),
        (
            vec![
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
            ],
            "Sec-WebSocket-Key",
        ),
    ] {
        let response = common::send(server.addr, "GET", "/sessions/ws", &headers, "").await;
        assert_eq!(response.status(), 400, "{headers:?}");
        let body = common::json(response).await;
        assert_eq!(body["code"], "INVALID_REQUEST", "{body}");
        assert!(body["message"].as_str().unwrap().contains(says), "{body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_peer_that_answers_no_ping_is_closed() {
    let config = ServerConfig::default()
        .with_ws_ping_interval(Duration::from_millis(100))
        .with_ws_pong_timeout(Duration::from_millis(200));
    let server = Running::start(1, config).await;
    let mut socket = connect(&server).await;
    send_json(&mut socket, &json!({"type": "open", "code": "hold"})).await;
    opened(&mut socket).await;
    // Not reading means not answering pings (the client answers them as it reads).
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, code) = receive_all(&mut socket).await;
    assert_eq!(code, Some(1001));
    server.stop().await;
}

#[tokio::test]
async fn a_peer_that_answers_pings_stays_open() {
    let config = ServerConfig::default()
        .with_ws_ping_interval(Duration::from_millis(100))
        .with_ws_pong_timeout(Duration::from_millis(200));
    let server = Running::start(1, config).await;
    let mut socket = connect(&server).await;
    send_json(&mut socket, &json!({"type": "open", "code": "hold"})).await;
    opened(&mut socket).await;
    // Reading answers every ping: nothing but events and pings for a while.
    let quiet = stays_open(&mut socket, Duration::from_millis(800)).await;
    assert!(quiet.is_err(), "closed: {quiet:?}");
    server.stop().await;
}

/// Issue 15.3 on WebSocket: the `open` message's `filter` applies to that connection (with
/// `filtered` lines for a client with the `resume` feature); a bad one is refused with
/// `INVALID_FILTER` and close 4400 before a session exists.
#[tokio::test]
async fn the_open_messages_filter_applies_to_its_connection() {
    let server = Running::start(4, ServerConfig::default()).await;
    // Stdout `line 2` (seq 4) passes; session_init and final always do.
    let filter = json!({"mode": "exclude", "rules": [{"content": {"patterns": [
        {"type": "glob", "pattern": "line [!2]*", "field": "payload.chunk"}]}}]});
    for (features, control) in [(json!([]), false), (json!(["resume"]), true)] {
        let mut socket = connect(&server).await;
        send_json(
            &mut socket,
            &json!({"type": "open", "features": features, "filter": filter}),
        )
        .await;
        opened(&mut socket).await;
        let (lines, code) = receive_all(&mut socket).await;
        // Every seq arrives once, in order, as an event or inside a `filtered` range (a run
        // may be reported in pieces, when the source had nothing more at hand).
        let mut next = 1;
        let mut events = Vec::new();
        let mut filtered = 0;
        for line in &lines {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["type"] == "filtered" {
                let through = v["through"].as_u64().unwrap();
                assert!(through >= next, "{lines:?}");
                next = through + 1;
                filtered += 1;
            } else {
                let seq = v["seq"].as_u64().unwrap();
                assert!(seq >= next, "{lines:?}");
                if control {
                    assert_eq!(seq, next, "a seq neither sent nor filtered: {lines:?}");
                }
                next = seq + 1;
                events.push(seq);
            }
        }
        assert_eq!(events, [1, 4, 6], "{lines:?}");
        assert_eq!(filtered > 0, control, "{lines:?}");
        assert_eq!(code, Some(1000));
    }

    let mut socket = connect(&server).await;
    send_json(
        &mut socket,
        &json!({"type": "open", "filter": {"mode": "include", "rules": "all"}}),
    )
    .await;
    let (lines, code) = receive_all(&mut socket).await;
    let refusal: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(refusal["code"], "INVALID_FILTER", "{refusal}");
    assert_eq!(refusal["reason"], "invalid_filter", "{refusal}");
    assert_eq!(code, Some(4400));
    server.stop().await;
}

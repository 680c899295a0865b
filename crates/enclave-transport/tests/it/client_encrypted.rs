//! Our client against small in-test servers that speak the contract with encryption: HTTP
//! create (the ServerHello in the plaintext `session_init`), HTTP resume (the hellos in
//! headers), WebSocket (`open`/`opened`), sealed messages upstream, plaintext injected after
//! the handshake, and a WebSocket refusal.

use base64::Engine as _;
use bytes::BytesMut;
use enclave_crypto::{accept_client_hello, ServerEncryption};
use enclave_testkit::events;
use enclave_testkit::http::{header, server, Request};
use enclave_transport::client::{connect, ClientConfig, NewSession, Open, Received, ResumeAt};
use enclave_transport::wire::{Control, CreateBody, WsOpened};
use enclave_transport::Error as TransportError;
use enclave_transport::RefusalReason;
use enclave_types::{
    ClientHello, EncryptionMode, MessageFrame, RuntimeChannelMessage, SessionId, StreamEvent,
};
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(10);
const SESSION: &str = "s_sealed";

fn session() -> SessionId {
    SessionId::new(SESSION).unwrap()
}

fn stdout(seq: u64) -> StreamEvent {
    events::stdout(&session(), seq, format!("secret {seq}"))
}

/// The plaintext a sealed `event` opens to, which the client hands on as the event's JSON.
fn json(event: &StreamEvent) -> bytes::Bytes {
    serde_json::to_vec(event).unwrap().into()
}

fn session_init_line(server_hello: &serde_json::Value) -> String {
    let init = serde_json::json!({
        "protocolVersion": 2, "sessionId": SESSION, "seq": 1, "type": "session_init",
        "payload": {
            "cancelUrl": format!("/sessions/{SESSION}/cancel"),
            "expiresAt": "2030-01-01T00:00:00.000Z",
            "encryption": {"enabled": true, "keyId": server_hello["keyId"], "serverHello": server_hello},
        }
    });
    format!("{init}\n")
}

/// Reads the whole request the client sent.
async fn read_request(socket: &mut TcpStream) -> Request {
    server::read_request(socket)
        .await
        .expect("the client sent a whole request")
}

/// Writes `text` as one chunk of the body.
async fn write_chunk(socket: &mut TcpStream, text: &[u8]) {
    server::write_chunk(socket, text).await.unwrap();
}

async fn next(
    conn: &mut enclave_transport::client::Connection,
) -> Option<Result<Received, TransportError>> {
    tokio::time::timeout(LIMIT, conn.next())
        .await
        .expect("the stream stalled")
}

fn cancel(seq: u64) -> RuntimeChannelMessage {
    events::cancel(&session(), seq, "enough")
}

#[tokio::test]
// The server's script and the client's checks side by side read best in one place.
#[allow(clippy::too_many_lines)]
async fn http_create_encrypted_both_ways_and_plaintext_after_the_handshake_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut stream_socket, _) = listener.accept().await.unwrap();
        let Request { line, body, .. } = read_request(&mut stream_socket).await;
        assert!(line.starts_with("POST /sessions "));
        let body: CreateBody = serde_json::from_slice(&body).unwrap();
        let offer = body.encryption.expect("the client offers encryption");
        assert_eq!(offer.mode, EncryptionMode::Required);
        let hello = offer.client_hello.expect("with a hello");
        let (server_hello, keys) = accept_client_hello(&hello, &session()).unwrap();
        let (sealer, opener) = keys.into_ciphers().unwrap();
        let mut layer = ServerEncryption::with_ciphers(EncryptionMode::Required, sealer, opener);
        server::write_stream_head(&mut stream_socket, SESSION, "tok", 3, &[])
            .await
            .unwrap();
        let init = session_init_line(&serde_json::to_value(&server_hello).unwrap());
        write_chunk(&mut stream_socket, init.as_bytes()).await;
        for seq in 2..=3 {
            let mut wire = BytesMut::new();
            layer.encode(&stdout(seq), &mut wire).unwrap();
            assert!(!String::from_utf8_lossy(&wire).contains("secret"));
            write_chunk(&mut stream_socket, &wire).await;
        }
        // An attacker's plaintext event after the handshake, then a sealed one.
        let injected = format!(
            r#"{{"protocolVersion":2,"sessionId":"{SESSION}","seq":4,"type":"stdout","payload":{{"chunk":"forged"}}}}"#
        ) + "\n";
        write_chunk(&mut stream_socket, injected.as_bytes()).await;
        let mut wire = BytesMut::new();
        layer.encode(&stdout(4), &mut wire).unwrap();
        write_chunk(&mut stream_socket, &wire).await;

        // The upstream: one sealed message on a second connection.
        let (mut up, _) = listener.accept().await.unwrap();
        let Request {
            line,
            headers,
            body,
            ..
        } = read_request(&mut up).await;
        assert!(
            line.starts_with(&format!("POST /sessions/{SESSION}/messages ")),
            "{line}"
        );
        assert_eq!(header(&headers, "x-enclave-ack"), Some("4"));
        assert_eq!(header(&headers, "x-enclave-resume-token"), Some("tok"));
        assert!(
            !String::from_utf8_lossy(&body).contains("enough"),
            "sealed upstream"
        );
        let frame = MessageFrame::parse_line(body.strip_suffix(b"\n").unwrap()).unwrap();
        let opened = layer.open(frame).unwrap();
        assert!(opened.encrypted);
        let answer = r#"{"ack":1}"#;
        server::write_response(&mut up, 200, "OK", &[], answer.as_bytes())
            .await
            .unwrap();
        server::write_last_chunk(&mut stream_socket).await.unwrap();
        opened.message
    });

    let config = ClientConfig::default().with_encryption(EncryptionMode::Required);
    let mut conn = connect(&url, Open::New(NewSession::new()), &config)
        .await
        .unwrap();
    conn.set_keep_json(true);
    assert_eq!(conn.token(), Some("tok"));
    assert_eq!(conn.epoch(), Some(3));
    match next(&mut conn).await.unwrap().unwrap() {
        Received::Event {
            event, encrypted, ..
        } => {
            assert_eq!(
                (event.seq, encrypted),
                (1, false),
                "session_init is the plaintext handshake line"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(conn.encrypted());
    for seq in 2..=3 {
        let received = next(&mut conn).await.unwrap().unwrap();
        assert_eq!(
            received,
            Received::Event {
                json: Some(json(&stdout(seq))),
                event: stdout(seq),
                encrypted: true,
            }
        );
    }
    let refused = next(&mut conn).await.unwrap().unwrap_err();
    assert!(refused.is_item(), "{refused}");
    assert!(
        matches!(refused, TransportError::RefusedLine { line: 4, .. }),
        "{refused}"
    );
    let received = next(&mut conn).await.unwrap().unwrap();
    assert_eq!(
        received,
        Received::Event {
            json: Some(json(&stdout(4))),
            event: stdout(4),
            encrypted: true,
        }
    );

    conn.send(&cancel(1)).await.unwrap();
    assert_eq!(
        next(&mut conn).await.unwrap().unwrap(),
        Received::Ack { seq: 1 }
    );
    assert!(next(&mut conn).await.is_none());
    let upstream = tokio::time::timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(upstream, cancel(1));
}

#[tokio::test]
async fn http_resume_carries_the_hellos_in_headers_and_replays_sealed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let Request { line, headers, .. } = read_request(&mut socket).await;
        let encoded = header(&headers, "x-enclave-client-hello").expect("a hello header");
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .unwrap();
        let hello: ClientHello = serde_json::from_slice(&json).unwrap();
        let (server_hello, keys) = accept_client_hello(&hello, &session()).unwrap();
        let (sealer, opener) = keys.into_ciphers().unwrap();
        let mut layer = ServerEncryption::with_ciphers(EncryptionMode::Optional, sealer, opener);
        let hello_header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&server_hello).unwrap());
        let hello = [("X-Enclave-Server-Hello", hello_header.as_str())];
        server::write_stream_head(&mut socket, SESSION, "next", 9, &hello)
            .await
            .unwrap();
        let mut wire = BytesMut::new();
        for seq in 5..=6 {
            layer.encode(&stdout(seq), &mut wire).unwrap();
        }
        wire.extend_from_slice(b"{\"type\":\"replay_complete\",\"lastSeq\":6}\n");
        write_chunk(&mut socket, &wire).await;
        server::write_last_chunk(&mut socket).await.unwrap();
        (line, headers)
    });

    let at = ResumeAt::new(session(), 5)
        .with_token(Some("old".to_owned()))
        .with_epoch(Some(9));
    let mut conn = connect(&url, Open::Resume(at), &ClientConfig::default())
        .await
        .unwrap();
    conn.set_keep_json(true);
    assert!(conn.resumed() && conn.encrypted());
    assert_eq!(conn.token(), Some("next"));
    let mut received = Vec::new();
    while let Some(item) = next(&mut conn).await {
        received.push(item.unwrap());
    }
    assert_eq!(
        received,
        [
            Received::Event {
                json: Some(json(&stdout(5))),
                event: stdout(5),
                encrypted: true,
            },
            Received::Event {
                json: Some(json(&stdout(6))),
                event: stdout(6),
                encrypted: true,
            },
            Received::ReplayComplete { last_seq: 6 },
        ]
    );
    let (line, headers) = tokio::time::timeout(LIMIT, server).await.unwrap().unwrap();
    assert!(
        line.starts_with(&format!("GET /sessions/{SESSION}/stream?from=5&fromSeq=5 ")),
        "{line}"
    );
    assert_eq!(header(&headers, "x-enclave-resume-token"), Some("old"));
    assert_eq!(header(&headers, "x-enclave-epoch"), Some("9"));
    assert_eq!(header(&headers, "x-enclave-features"), Some("resume"));
}

#[tokio::test]
async fn websocket_open_opened_sealed_events_messages_and_acks() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(socket).await.unwrap();
        let first = ws.next().await.unwrap().unwrap().into_text().unwrap();
        let Control::Open(open) = serde_json::from_str::<Control>(first.as_str()).unwrap() else {
            panic!("expected open: {first}");
        };
        assert_eq!(open.features, ["resume"]);
        assert!(open.resume.is_none());
        let hello = open.encryption.unwrap().client_hello.unwrap();
        let (server_hello, keys) = accept_client_hello(&hello, &session()).unwrap();
        let (sealer, opener) = keys.into_ciphers().unwrap();
        let mut layer = ServerEncryption::with_ciphers(EncryptionMode::Optional, sealer, opener);
        let mut opened = WsOpened::new(session(), "wstok".to_owned(), 1, false);
        opened.server_hello = Some(server_hello);
        let opened = serde_json::to_string(&Control::Opened(opened)).unwrap();
        ws.send(Message::text(opened)).await.unwrap();
        // Two lines in one message, then one line without a newline.
        let mut wire = BytesMut::new();
        layer.encode(&stdout(1), &mut wire).unwrap();
        layer.encode(&stdout(2), &mut wire).unwrap();
        ws.send(Message::text(String::from_utf8(wire.to_vec()).unwrap()))
            .await
            .unwrap();
        let mut wire = BytesMut::new();
        layer.encode(&stdout(3), &mut wire).unwrap();
        let single = String::from_utf8(wire[..wire.len() - 1].to_vec()).unwrap();
        ws.send(Message::text(single)).await.unwrap();
        // The client's sealed message, then its ack.
        let text = ws.next().await.unwrap().unwrap().into_text().unwrap();
        let frame = MessageFrame::parse_line(text.trim_end().as_bytes()).unwrap();
        let message = layer.open(frame).unwrap();
        assert!(message.encrypted);
        let ack = ws.next().await.unwrap().unwrap().into_text().unwrap();
        assert_eq!(
            serde_json::from_str::<Control>(ack.as_str()).unwrap(),
            Control::Ack { seq: 3 }
        );
        ws.send(Message::text(r#"{"type":"ack","seq":1}"#))
            .await
            .unwrap();
        ws.close(None).await.unwrap();
        message.message
    });

    let mut conn = connect(&url, Open::New(NewSession::new()), &ClientConfig::default())
        .await
        .unwrap();
    conn.set_keep_json(true);
    assert!(conn.encrypted());
    assert_eq!(
        (conn.token(), conn.epoch(), conn.resumed()),
        (Some("wstok"), Some(1), false)
    );
    for seq in 1..=3 {
        let received = next(&mut conn).await.unwrap().unwrap();
        assert_eq!(
            received,
            Received::Event {
                json: Some(json(&stdout(seq))),
                event: stdout(seq),
                encrypted: true,
            }
        );
    }
    conn.send(&cancel(1)).await.unwrap();
    conn.ack(3).await.unwrap();
    assert_eq!(
        next(&mut conn).await.unwrap().unwrap(),
        Received::Ack { seq: 1 }
    );
    assert!(next(&mut conn).await.is_none());
    let upstream = tokio::time::timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(upstream, cancel(1));
}

#[tokio::test]
async fn a_websocket_refusal_message_and_close_code_is_a_refusal() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(socket).await.unwrap();
        let first = ws.next().await.unwrap().unwrap().into_text().unwrap();
        let Control::Open(open) = serde_json::from_str::<Control>(first.as_str()).unwrap() else {
            panic!("expected open");
        };
        let resume = open.resume.expect("a resume");
        assert_eq!((resume.from, resume.token.as_deref()), (8, Some("stale")));
        let body =
            r#"{"code":"RESUME_REFUSED","message":"token already used","reason":"bad_token"}"#;
        ws.send(Message::text(body)).await.unwrap();
        let _ = ws
            .close(Some(CloseFrame {
                code: CloseCode::from(4403),
                reason: "bad_token".into(),
            }))
            .await;
    });
    let at = ResumeAt::new(session(), 8).with_token(Some("stale".to_owned()));
    let err = connect(&url, Open::Resume(at), &ClientConfig::default())
        .await
        .unwrap_err();
    match &err {
        TransportError::Refused { refusal, .. } => {
            assert_eq!(refusal.reason, RefusalReason::BadToken);
            assert_eq!(refusal.message, "token already used");
        }
        other => panic!("expected a refusal, got {other}"),
    }
    tokio::time::timeout(LIMIT, server).await.unwrap().unwrap();
}

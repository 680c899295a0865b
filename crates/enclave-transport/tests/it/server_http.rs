//! The HTTP routes of the server, driven over loopback with a raw hyper client against an
//! in-memory session service.

use crate::common;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::BytesMut;
use common::{header, json, send, text, Lines, Running, WAIT};
use enclave_crypto::{ClientEncryption, ClientHandshake, EncryptionLayer};
use enclave_transport::{Refusal, RefusalReason, ServerConfig};
use enclave_types::{
    CancelPayload, EncryptionMode, EventPayload, Frame, RuntimeChannelMessage, ServerHello,
    SessionId, StreamEvent,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const JSON: (&str, &str) = ("content-type", "application/json");

fn event(line: &str) -> StreamEvent {
    match Frame::parse_line(line.as_bytes()).unwrap() {
        Frame::Event(event) => event,
        other => panic!("not a plaintext event: {other:?}"),
    }
}

fn client_layer(
    handshake: ClientHandshake,
    hello: &ServerHello,
    id: &SessionId,
) -> ClientEncryption {
    let (sealer, opener) = handshake.finish(hello, id).unwrap().into_ciphers().unwrap();
    EncryptionLayer::with_ciphers(EncryptionMode::Required, sealer, opener)
}

#[tokio::test]
async fn health_preflight_and_cors_headers() {
    let server = Running::start(1, ServerConfig::default()).await;
    let response = send(server.addr, "GET", "/health", &[], "").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    assert_eq!(
        header(&response, "access-control-expose-headers"),
        Some(enclave_transport::wire::CORS_EXPOSE_HEADERS)
    );
    assert_eq!(json(response).await, json!({"status": "ok"}));

    let response = send(
        server.addr,
        "OPTIONS",
        "/sessions",
        &[("origin", "https://a.example")],
        "",
    )
    .await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        header(&response, "access-control-allow-methods"),
        Some("GET, POST, DELETE, OPTIONS")
    );
    assert_eq!(
        header(&response, "access-control-allow-headers"),
        Some(enclave_transport::wire::CORS_ALLOW_HEADERS)
    );
    assert_eq!(header(&response, "access-control-max-age"), Some("86400"));
    server.stop().await;

    // A list of origins: a listed one is echoed with Vary, another gets none.
    let server = Running::start(
        1,
        ServerConfig::default().with_allowed_origins(["https://a.example"]),
    )
    .await;
    let response = send(
        server.addr,
        "OPTIONS",
        "/sessions",
        &[("origin", "https://a.example")],
        "",
    )
    .await;
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some("https://a.example")
    );
    assert_eq!(header(&response, "vary"), Some("Origin"));
    let response = send(
        server.addr,
        "GET",
        "/sessions/s_nope",
        &[("origin", "https://b.example")],
        "",
    )
    .await;
    // No token: refused, and the refusal is decorated like any response.
    assert_eq!(response.status(), 401);
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    assert_eq!(header(&response, "vary"), Some("Origin"));
    server.stop().await;
}

#[tokio::test]
async fn create_streams_every_event_as_one_line_with_the_session_headers() {
    let server = Running::start(5, ServerConfig::default()).await;
    let id = "s_3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
    let body = json!({"sessionId": id, "code": "return 1", "config": {"heartbeatIntervalMs": 500}});
    let response = send(
        server.addr,
        "POST",
        "/sessions",
        &[JSON, ("accept", "application/x-ndjson")],
        body.to_string(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type"),
        Some("application/x-ndjson")
    );
    assert_eq!(header(&response, "cache-control"), Some("no-cache"));
    assert_eq!(header(&response, "x-session-id"), Some(id));
    assert_eq!(header(&response, "x-enclave-epoch"), Some("7"));
    let token = header(&response, "x-enclave-resume-token")
        .unwrap()
        .to_owned();
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    let lines: Vec<StreamEvent> = text(response).await.lines().map(event).collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(
        lines.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    assert!(matches!(lines[0].payload, EventPayload::SessionInit(_)));
    assert!(matches!(lines[6].payload, EventPayload::Final(_)));
    let record = server.service.record(&SessionId::new(id).unwrap());
    {
        let record = record.lock().unwrap();
        assert_eq!(record.token, token);
        assert_eq!(record.code.as_deref(), Some("return 1"));
        assert_eq!(record.written, 7, "every event was reported written");
        // The session layer learns who asked (its per-address session limit counts it).
        assert_eq!(record.peer, Some(std::net::Ipv4Addr::LOCALHOST.into()));
    }

    // The same id again: never attach a caller to someone else's session.
    let response = send(server.addr, "POST", "/sessions", &[JSON], body.to_string()).await;
    assert_eq!(response.status(), 409);
    assert_eq!(json(response).await["code"], "SESSION_EXISTS");

    // Without a sessionId the server generates `s_<uuid>`.
    let response = send(server.addr, "POST", "/sessions", &[], r#"{"code":"x"}"#).await;
    let generated = header(&response, "x-session-id").unwrap().to_owned();
    assert!(
        generated.starts_with("s_") && generated.len() == 38,
        "{generated}"
    );
    assert_eq!(text(response).await.lines().count(), 7);
    server.stop().await;
}

#[tokio::test]
async fn bad_bodies_are_refused_with_json() {
    let server = Running::start(1, ServerConfig::default().with_max_body_bytes(1024)).await;
    let response = send(server.addr, "POST", "/sessions", &[JSON], "{not json").await;
    assert_eq!(response.status(), 400);
    let body = json(response).await;
    assert_eq!(body["code"], "INVALID_REQUEST");
    assert_eq!(body["reason"], "invalid_request");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not a session request"),
        "{body}"
    );

    let response = send(
        server.addr,
        "POST",
        "/sessions",
        &[JSON],
        r#"{"sessionId":"x_1"}"#,
    )
    .await;
    assert_eq!(response.status(), 400);

    let big = format!(r#"{{"code":"{}"}}"#, "a".repeat(2000));
    let response = send(server.addr, "POST", "/sessions", &[JSON], big).await;
    assert_eq!(response.status(), 413);
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    let body = json(response).await;
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(body["reason"], "invalid_request");
    assert!(server.service.sessions.lock().unwrap().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn encryption_required_is_refused_before_any_event() {
    let server = Running::start(
        1,
        ServerConfig::default().with_encryption(EncryptionMode::Required),
    )
    .await;
    let response = send(server.addr, "POST", "/sessions", &[JSON], r#"{"code":"x"}"#).await;
    assert_eq!(response.status(), 400);
    let body = json(response).await;
    assert_eq!(body["code"], "ENCRYPTION_REQUIRED");
    assert_eq!(body["reason"], "encryption_required");
    // A hello with a bad key is not usable either.
    let offer = json!({"code": "x", "encryption": {"mode": "optional", "clientHello": {
        "protocolVersion": 2, "clientEphemeralPubKeyB64": "AAAA", "curve": "P-256",
        "supportedAlgorithms": ["AES-GCM-256"]}}});
    let response = send(server.addr, "POST", "/sessions", &[JSON], offer.to_string()).await;
    assert_eq!(response.status(), 400);
    assert_eq!(json(response).await["code"], "ENCRYPTION_REQUIRED");
    assert!(
        server.service.sessions.lock().unwrap().is_empty(),
        "no session was created"
    );
    server.stop().await;

    // A client that requires encryption, on a server that never encrypts.
    let server = Running::start(
        1,
        ServerConfig::default().with_encryption(EncryptionMode::Disabled),
    )
    .await;
    let handshake = ClientHandshake::start().unwrap();
    let offer =
        json!({"encryption": {"mode": "required", "clientHello": handshake.client_hello()}});
    let response = send(server.addr, "POST", "/sessions", &[JSON], offer.to_string()).await;
    assert_eq!(response.status(), 400);
    assert_eq!(json(response).await["code"], "ENCRYPTION_REQUIRED");
    server.stop().await;
}

#[tokio::test]
async fn an_encrypted_session_end_to_end_both_ways() {
    let server = Running::start(4, ServerConfig::default()).await;
    let handshake = ClientHandshake::start().unwrap();
    let id = SessionId::generate();
    let body = json!({"sessionId": id, "code": "hold",
        "encryption": {"mode": "required", "clientHello": handshake.client_hello()}});
    let response = send(server.addr, "POST", "/sessions", &[JSON], body.to_string()).await;
    assert_eq!(response.status(), 200);
    let token = header(&response, "x-enclave-resume-token")
        .unwrap()
        .to_owned();
    let mut lines = Lines::new(response);

    // session_init in plaintext, carrying the ServerHello.
    let init = event(&lines.next().await.unwrap());
    let EventPayload::SessionInit(payload) = &init.payload else {
        panic!("{init:?}")
    };
    assert!(payload.encryption.enabled);
    let hello = payload
        .encryption
        .server_hello
        .clone()
        .expect("a ServerHello");
    assert_eq!(
        payload.encryption.key_id.as_deref(),
        Some(hello.key_id.as_str())
    );
    let mut layer = client_layer(handshake, &hello, &id);

    // Every later line is an envelope that opens to the fake's event.
    for seq in 2..=5 {
        let line = lines.next().await.unwrap();
        assert!(line.contains(r#""type":"enc""#), "{line}");
        assert!(!line.contains("line "), "no plaintext inside: {line}");
        let opened = layer
            .open(Frame::parse_line(line.as_bytes()).unwrap())
            .unwrap();
        assert!(opened.encrypted);
        assert_eq!(opened.message.seq, seq);
        assert!(matches!(opened.message.payload, EventPayload::Stdout(_)));
    }

    // Messages the other way, sealed under this connection's client→server key.
    let mut wire = BytesMut::new();
    for seq in 1..=2 {
        let mut message = RuntimeChannelMessage::new(
            id.clone(),
            CancelPayload::new(Some(format!("r{seq}"))).into(),
        );
        message.seq = Some(seq);
        layer.encode(&message, &mut wire).unwrap();
    }
    let path = format!("/sessions/{id}/messages");
    let headers = [
        ("x-enclave-resume-token", token.as_str()),
        ("x-enclave-ack", "5"),
        ("content-type", "application/x-ndjson"),
    ];
    let response = send(server.addr, "POST", &path, &headers, wire.clone().freeze()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await, json!({"ack": 2}));
    // The same request again (its answer lost): acknowledged again, not refused.
    let response = send(server.addr, "POST", &path, &headers, wire.freeze()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await, json!({"ack": 2}));
    // Plaintext on an encrypted connection is refused.
    let mut plain = RuntimeChannelMessage::new(id.clone(), CancelPayload::new(None).into());
    plain.seq = Some(3);
    let response = send(
        server.addr,
        "POST",
        &path,
        &headers,
        serde_json::to_string(&plain).unwrap(),
    )
    .await;
    assert_eq!(response.status(), 400);
    assert!(json(response).await["message"]
        .as_str()
        .unwrap()
        .contains("plaintext"));

    let record = server.service.record(&id);
    {
        let record = record.lock().unwrap();
        assert_eq!(record.messages.len(), 2);
        assert_eq!(record.messages[1].seq, Some(2));
        assert_eq!(record.acks, vec![5, 5]);
        assert_eq!(record.submits_encrypted, vec![true, true]);
        assert!(record.encrypted);
    }
    drop(lines);
    server.stop().await;
}

// One story, start to end: a session, its refused resumes, an accepted one, a spent token.
#[allow(clippy::too_many_lines)]
#[tokio::test]
async fn resume_checks_the_token_and_rotates_it_and_an_encrypted_resume_seals_every_line() {
    let server = Running::start(4, ServerConfig::default()).await;
    let handshake = ClientHandshake::start().unwrap();
    let id = SessionId::generate();
    let body = json!({"sessionId": id, "encryption": {"mode": "optional", "clientHello": handshake.client_hello()}});
    let response = send(server.addr, "POST", "/sessions", &[JSON], body.to_string()).await;
    let token = header(&response, "x-enclave-resume-token")
        .unwrap()
        .to_owned();
    assert_eq!(text(response).await.lines().count(), 6);

    let path = format!("/sessions/{id}/stream?fromSeq=3");
    let response = send(server.addr, "GET", &path, &[], "").await;
    assert_eq!(response.status(), 401);
    assert_eq!(json(response).await["reason"], "missing_token");
    let response = send(
        server.addr,
        "GET",
        &path,
        &[("x-enclave-resume-token", "wrong")],
        "",
    )
    .await;
    assert_eq!(response.status(), 403);
    assert_eq!(json(response).await["code"], "RESUME_REFUSED");
    let response = send(
        server.addr,
        "GET",
        "/sessions/nope/stream",
        &[("x-enclave-resume-token", "t")],
        "",
    )
    .await;
    assert_eq!(response.status(), 400);
    // Without a fresh hello, the encrypted session refuses (no downgrade).
    let response = send(
        server.addr,
        "GET",
        &path,
        &[("x-enclave-resume-token", &token)],
        "",
    )
    .await;
    assert_eq!(response.status(), 400);
    assert_eq!(json(response).await["code"], "ENCRYPTION_REQUIRED");

    // A fresh handshake in the headers; `from` is the TypeScript client's name.
    let resume = ClientHandshake::start().unwrap();
    let hello = URL_SAFE_NO_PAD.encode(serde_json::to_vec(resume.client_hello()).unwrap());
    let path = format!("/sessions/{id}/stream?from=3");
    let response = send(
        server.addr,
        "GET",
        &path,
        &[
            ("x-enclave-resume-token", &token),
            ("x-enclave-epoch", "7"),
            ("x-enclave-client-hello", &hello),
        ],
        "",
    )
    .await;
    assert_eq!(response.status(), 200);
    let new_token = header(&response, "x-enclave-resume-token")
        .unwrap()
        .to_owned();
    assert_ne!(new_token, token);
    assert_eq!(header(&response, "x-session-id"), Some(id.as_str()));
    let server_hello: ServerHello = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(header(&response, "x-enclave-server-hello").unwrap())
            .unwrap(),
    )
    .unwrap();
    let mut layer = client_layer(resume, &server_hello, &id);
    let body = text(response).await;
    let seqs: Vec<u64> = body
        .lines()
        .map(|line| {
            assert!(
                line.contains(r#""type":"enc""#),
                "every line sealed: {line}"
            );
            layer
                .open(Frame::parse_line(line.as_bytes()).unwrap())
                .unwrap()
                .message
                .seq
        })
        .collect();
    assert_eq!(seqs, vec![3, 4, 5, 6]);

    // The used token is gone; a padded hello header is read too.
    let padded = format!("{hello}==");
    let response = send(
        server.addr,
        "GET",
        &path,
        &[
            ("x-enclave-resume-token", &token),
            ("x-enclave-client-hello", &padded),
        ],
        "",
    )
    .await;
    assert_eq!(response.status(), 403);
    let response = send(
        server.addr,
        "GET",
        &path,
        &[
            ("x-enclave-resume-token", &new_token),
            ("x-enclave-client-hello", "!!"),
        ],
        "",
    )
    .await;
    assert_eq!(response.status(), 400);
    server.stop().await;
}

#[tokio::test]
async fn control_lines_go_only_to_clients_with_the_resume_feature() {
    let server = Running::start(2, ServerConfig::default()).await;
    let id = SessionId::generate();
    let response = send(
        server.addr,
        "POST",
        "/sessions",
        &[JSON],
        json!({"sessionId": id}).to_string(),
    )
    .await;
    let mut token = header(&response, "x-enclave-resume-token")
        .unwrap()
        .to_owned();
    text(response).await;
    let path = format!("/sessions/{id}/stream?fromSeq=2");
    for (features, control) in [(None, false), (Some("resume"), true)] {
        let mut headers = vec![("x-enclave-resume-token", token.as_str())];
        if let Some(features) = features {
            headers.push(("x-enclave-features", features));
        }
        let response = send(server.addr, "GET", &path, &headers, "").await;
        assert_eq!(response.status(), 200);
        let next = header(&response, "x-enclave-resume-token")
            .unwrap()
            .to_owned();
        let body = text(response).await;
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), if control { 4 } else { 3 }, "{body}");
        assert_eq!(
            lines.contains(&r#"{"type":"replay_complete","lastSeq":4}"#),
            control,
            "{body}"
        );
        token = next;
    }
    server.stop().await;
}

#[tokio::test]
async fn plaintext_messages_acks_and_bad_lines() {
    let server = Running::start(1, ServerConfig::default()).await;
    let id = SessionId::generate();
    let response = send(
        server.addr,
        "POST",
        "/sessions",
        &[JSON],
        json!({"sessionId": id}).to_string(),
    )
    .await;
    let token = header(&response, "x-enclave-resume-token")
        .unwrap()
        .to_owned();
    text(response).await;
    let path = format!("/sessions/{id}/messages");
    let auth = ("x-enclave-resume-token", token.as_str());

    let mut message =
        RuntimeChannelMessage::new(id.clone(), CancelPayload::new(Some("stop".into())).into());
    message.seq = Some(1);
    let line = serde_json::to_string(&message).unwrap();
    let response = send(
        server.addr,
        "POST",
        &path,
        &[auth, ("x-enclave-ack", "3")],
        format!("{line}\n"),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await, json!({"ack": 1}));

    // An empty body just acknowledges.
    let response = send(
        server.addr,
        "POST",
        &path,
        &[auth, ("x-enclave-ack", "4")],
        "",
    )
    .await;
    assert_eq!(json(response).await, json!({"ack": 1}));

    // A bad line is named, and nothing of the request is delivered.
    let response = send(
        server.addr,
        "POST",
        &path,
        &[auth],
        format!("{line}\n{{\"type\":\"nope\"}}\n"),
    )
    .await;
    assert_eq!(response.status(), 400);
    let body = json(response).await;
    assert_eq!(body["code"], "INVALID_REQUEST");
    assert!(
        body["message"].as_str().unwrap().contains("line 2"),
        "{body}"
    );
    let response = send(
        server.addr,
        "POST",
        &path,
        &[auth, ("x-enclave-ack", "x")],
        "",
    )
    .await;
    assert_eq!(response.status(), 400);
    let response = send(
        server.addr,
        "POST",
        &path,
        &[("x-enclave-resume-token", "bad")],
        "",
    )
    .await;
    assert_eq!(response.status(), 403);
    // A sealed message while no encrypted stream is attached: retry after resuming.
    let sealed = format!(
        r#"{{"protocolVersion":2,"sessionId":"{id}","seq":2,"type":"enc","payload":{{"kid":"k_1","nonceB64":"AAAAAAAAAAAAAAAA","ciphertextB64":"AAAAAAAAAAAAAAAAAAAAAA=="}}}}"#
    );
    let response = send(server.addr, "POST", &path, &[auth], sealed).await;
    assert_eq!(response.status(), 503, "{}", text(response).await);

    let record = server.service.record(&id);
    {
        let record = record.lock().unwrap();
        assert_eq!(record.messages, vec![message]);
        assert_eq!(record.acks, vec![3, 4]);
        assert_eq!(record.submits_encrypted, vec![false, false]);
    }
    server.stop().await;
}

#[tokio::test]
async fn the_brokers_routes_answer_in_its_shapes() {
    let server = Running::start(1, ServerConfig::default().with_session_list(true)).await;
    let id = SessionId::generate();
    let response = send(
        server.addr,
        "POST",
        "/sessions",
        &[JSON],
        json!({"sessionId": id}).to_string(),
    )
    .await;
    let token = header(&response, "x-enclave-resume-token")
        .expect("a token")
        .to_owned();
    text(response).await;
    let auth = ("x-enclave-resume-token", token.as_str());

    let response = send(server.addr, "GET", &format!("/sessions/{id}"), &[auth], "").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        json(response).await,
        json!({"sessionId": id, "state": "running", "createdAt": 1000, "expiresAt": 61000,
               "stats": {"duration": 25, "toolCallCount": 2}})
    );
    let response = send(server.addr, "GET", "/sessions", &[], "").await;
    let body = json(response).await;
    assert_eq!(body["total"], 1);
    assert_eq!(body["sessions"][0]["state"], "completed");

    let response = send(
        server.addr,
        "POST",
        &format!("/sessions/{id}/cancel"),
        &[("content-type", "text/plain"), auth],
        r#"{"reason":"user"}"#,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        json(response).await,
        json!({"success": true, "sessionId": id})
    );
    assert_eq!(
        server.service.record(&id).lock().unwrap().cancelled,
        vec![Some("user".to_owned())]
    );
    let response = send(
        server.addr,
        "POST",
        &format!("/sessions/{id}/cancel"),
        &[auth],
        "",
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = send(
        server.addr,
        "POST",
        &format!("/sessions/{id}/cancel"),
        &[auth],
        "[1]",
    )
    .await;
    assert_eq!(response.status(), 400);

    let response = send(
        server.addr,
        "DELETE",
        &format!("/sessions/{id}"),
        &[auth],
        "",
    )
    .await;
    assert_eq!(
        json(response).await,
        json!({"success": true, "sessionId": id})
    );
    // Gone: the token names nothing any more, so the answer is the token's refusal (the
    // route never says whether a session exists to a caller without its token).
    let response = send(
        server.addr,
        "DELETE",
        &format!("/sessions/{id}"),
        &[auth],
        "",
    )
    .await;
    assert_eq!(response.status(), 403);
    assert_eq!(json(response).await["code"], "RESUME_REFUSED");
    let response = send(server.addr, "GET", "/nowhere", &[], "").await;
    assert_eq!(response.status(), 404);
    server.stop().await;

    // The list is off by default.
    let server = Running::start(1, ServerConfig::default()).await;
    let response = send(server.addr, "GET", "/sessions", &[], "").await;
    assert_eq!(response.status(), 404);
    assert_eq!(json(response).await["code"], "NOT_FOUND");
    server.stop().await;
}

/// Issue 16: knowing a session id is not enough to read, cancel or delete it.
#[tokio::test]
async fn reading_cancelling_and_deleting_a_session_need_its_token() {
    let server = Running::start(1, ServerConfig::default()).await;
    let id = SessionId::generate();
    let response = send(
        server.addr,
        "POST",
        "/sessions",
        &[JSON],
        json!({"sessionId": id, "code": "hold"}).to_string(),
    )
    .await;
    let token = header(&response, "x-enclave-resume-token")
        .expect("a token")
        .to_owned();
    let unknown = SessionId::generate();
    for (method, path) in [
        ("GET", format!("/sessions/{id}")),
        ("DELETE", format!("/sessions/{id}")),
        ("POST", format!("/sessions/{id}/cancel")),
        ("GET", format!("/sessions/{unknown}")),
        ("DELETE", format!("/sessions/{unknown}")),
        ("POST", format!("/sessions/{unknown}/cancel")),
    ] {
        // The same answers whether the session exists or not.
        let response = send(server.addr, method, &path, &[], "").await;
        assert_eq!(response.status(), 401, "{method} {path} without a token");
        assert_eq!(json(response).await["code"], "RESUME_REFUSED");
        let wrong = [("x-enclave-resume-token", "AAAA")];
        let response = send(server.addr, method, &path, &wrong, "").await;
        assert_eq!(response.status(), 403, "{method} {path} with a wrong token");
        assert_eq!(json(response).await["code"], "RESUME_REFUSED");
    }
    assert!(server
        .service
        .record(&id)
        .lock()
        .unwrap()
        .cancelled
        .is_empty());
    let auth = [("x-enclave-resume-token", token.as_str())];
    let path = format!("/sessions/{id}");
    assert_eq!(
        send(server.addr, "GET", &path, &auth, "").await.status(),
        200
    );
    // Checking a token does not consume it.
    assert_eq!(
        send(server.addr, "GET", &path, &auth, "").await.status(),
        200
    );
    assert_eq!(server.service.record(&id).lock().unwrap().token, token);
    let cancel = format!("/sessions/{id}/cancel");
    assert_eq!(
        send(server.addr, "POST", &cancel, &auth, "").await.status(),
        200
    );
    assert_eq!(
        send(server.addr, "DELETE", &path, &auth, "").await.status(),
        200
    );
    server.stop().await;

    // A deployment's session-access hook can grant what the token would.
    let config = ServerConfig::default().with_session_access(|headers, _id| {
        headers
            .get("authorization")
            .is_some_and(|v| v == "Bearer operator")
    });
    let server = Running::start(1, config).await;
    let id = SessionId::generate();
    text(
        send(
            server.addr,
            "POST",
            "/sessions",
            &[JSON],
            json!({"sessionId": id}).to_string(),
        )
        .await,
    )
    .await;
    let path = format!("/sessions/{id}");
    assert_eq!(send(server.addr, "GET", &path, &[], "").await.status(), 401);
    let operator = [("authorization", "Bearer operator")];
    assert_eq!(
        send(server.addr, "GET", &path, &operator, "")
            .await
            .status(),
        200
    );
    assert_eq!(
        send(server.addr, "DELETE", &path, &operator, "")
            .await
            .status(),
        200
    );
    server.stop().await;
}

/// Issue 16: a session id is `s_` and at most 126 of `[A-Za-z0-9_-]`, on every route that
/// takes one; anything else is `400 INVALID_REQUEST` before any lookup.
#[tokio::test]
async fn malformed_session_ids_are_refused_on_every_route() {
    let server = Running::start(1, ServerConfig::default()).await;
    let long = format!("s_{}", "a".repeat(100 * 1024));
    for bad in [
        long.as_str(),
        "s_a\nb",
        "s_../../x",
        "s_a b",
        "s_\u{e9}",
        "x_abc",
        "s_",
    ] {
        let body = json!({ "sessionId": bad }).to_string();
        let response = send(server.addr, "POST", "/sessions", &[JSON], body).await;
        assert_eq!(response.status(), 400, "POST /sessions {bad:.40}");
        let refusal = json(response).await;
        assert_eq!(refusal["code"], "INVALID_REQUEST");
        assert_eq!(refusal["reason"], "invalid_request");
        assert!(refusal["message"].as_str().unwrap().len() < 600);
    }
    let long_path = format!("s_{}", "a".repeat(200));
    for bad in [
        long_path.as_str(),
        "s_a%0Ab",
        "s_..%2F..%2Fx",
        "s_a%20b",
        "not-an-id",
    ] {
        for (method, path) in [
            ("GET", format!("/sessions/{bad}")),
            ("DELETE", format!("/sessions/{bad}")),
            ("POST", format!("/sessions/{bad}/cancel")),
            ("GET", format!("/sessions/{bad}/stream")),
            ("POST", format!("/sessions/{bad}/messages")),
        ] {
            let token = [("x-enclave-resume-token", "AAAA")];
            let response = send(server.addr, method, &path, &token, "").await;
            assert_eq!(response.status(), 400, "{method} {path:.60}");
            assert_eq!(json(response).await["code"], "INVALID_REQUEST");
        }
    }
    // What our generator and the TypeScript client (`s_` + a UUID) produce still works, and
    // so do the shorter ids tests and scripts use.
    for good in [
        SessionId::generate().into_string(),
        "s_a".to_owned(),
        format!("s_{}", "A-z_9".repeat(25)),
    ] {
        let body = json!({ "sessionId": good }).to_string();
        let response = send(server.addr, "POST", "/sessions", &[JSON], body).await;
        assert_eq!(response.status(), 200, "{good}");
        assert_eq!(header(&response, "x-session-id"), Some(good.as_str()));
        text(response).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn the_authorization_hook_guards_every_route_but_preflight_and_health() {
    let config = ServerConfig::default().with_authorize(|headers| {
        if headers
            .get("authorization")
            .is_some_and(|v| v == "Bearer ok")
        {
            Ok(())
        } else {
            Err(Refusal::new(
                RefusalReason::Unauthorized,
                "a bearer token is required",
            ))
        }
    });
    let server = Running::start(1, config).await;
    let response = send(server.addr, "POST", "/sessions", &[], "").await;
    assert_eq!(response.status(), 401);
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    assert_eq!(json(response).await["code"], "UNAUTHORIZED");
    let response = send(server.addr, "GET", "/sessions/ws", &[], "").await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        send(server.addr, "GET", "/health", &[], "").await.status(),
        200
    );
    assert_eq!(
        send(server.addr, "OPTIONS", "/sessions", &[], "")
            .await
            .status(),
        204
    );
    let response = send(
        server.addr,
        "POST",
        "/sessions",
        &[("authorization", "Bearer ok")],
        "",
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(text(response).await.lines().count(), 3);
    server.stop().await;
}

#[tokio::test]
async fn bytes_that_are_not_http_close_only_their_connection() {
    let server = Running::start(1, ServerConfig::default()).await;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(b"\x16\x03\x01garbage that is not HTTP\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    tokio::time::timeout(WAIT, socket.read_to_end(&mut sink))
        .await
        .expect("the server closes the connection")
        .unwrap();
    assert!(!String::from_utf8_lossy(&sink).contains("200 OK"));
    assert_eq!(
        send(server.addr, "GET", "/health", &[], "").await.status(),
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_ends_attached_streams() {
    let server = Running::start(
        2,
        ServerConfig::default().with_shutdown_grace(Duration::from_secs(5)),
    )
    .await;
    let response = send(
        server.addr,
        "POST",
        "/sessions",
        &[JSON],
        r#"{"code":"hold"}"#,
    )
    .await;
    let mut lines = Lines::new(response);
    for _ in 0..3 {
        lines.next().await.expect("the events before the hold");
    }
    let reader = tokio::spawn(async move { lines.next().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!reader.is_finished(), "the stream is held open");
    let started = std::time::Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "no wait for the grace"
    );
    let end = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
    assert_eq!(end, None, "the body ended cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_sessions() {
    // One loopback address for all of them: past the default per-address cap.
    let config = ServerConfig::default().with_max_connections_per_peer(2000);
    let server = Running::start(5, config).await;
    let addr = server.addr;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        tasks.push(tokio::spawn(async move {
            let response = send(addr, "POST", "/sessions", &[JSON], r#"{"code":"x"}"#).await;
            assert_eq!(response.status(), 200);
            let body = text(response).await;
            body.lines().map(|line| event(line).seq).collect::<Vec<_>>()
        }));
    }
    for task in tasks {
        let seqs = tokio::time::timeout(WAIT * 3, task).await.unwrap().unwrap();
        assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
    }
    assert_eq!(server.service.sessions.lock().unwrap().len(), 1000);
    assert!(started.elapsed() < Duration::from_secs(30));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Floods

/// Reads what the server sends until it closes, within `within`; `None` if it is still open.
async fn read_until_closed(socket: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
    let mut received = Vec::new();
    match tokio::time::timeout(within, socket.read_to_end(&mut received)).await {
        Ok(_) => Some(String::from_utf8_lossy(&received).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn a_body_sent_a_byte_at_a_time_is_timed_out_with_408() {
    let config = ServerConfig::default().with_body_timeout(Duration::from_millis(300));
    let server = Running::start(1, config).await;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    socket.set_nodelay(true).unwrap();
    socket
        .write_all(b"POST /sessions HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n")
        .await
        .unwrap();
    let (mut reader, mut writer) = socket.into_split();
    // One byte per segment, far slower than the deadline allows for 1000 bytes.
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut received = Vec::new();
    tokio::time::timeout(WAIT, reader.read_to_end(&mut received))
        .await
        .expect("a slow body is answered and its connection closed")
        .unwrap();
    trickle.abort();
    let received = String::from_utf8_lossy(&received);
    assert!(received.starts_with("HTTP/1.1 408"), "{received}");
    assert!(
        received.contains("\"code\":\"REQUEST_TIMEOUT\""),
        "{received}"
    );
    assert!(
        received.contains("\"reason\":\"invalid_request\""),
        "{received}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_body_cut_in_many_frames_is_read_whole_and_bounded_by_its_bytes() {
    // Many small frames (one write each) add up to one body of exactly the limit: accepted;
    // one byte more in the same shape: 413 without the whole body being buffered.
    let config = ServerConfig::default().with_max_body_bytes(64);
    let server = Running::start(0, config).await;
    for (len, expect) in [(64, "HTTP/1.1 200"), (65, "HTTP/1.1 413")] {
        let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        socket.set_nodelay(true).unwrap();
        socket
            .write_all(b"POST /sessions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let body = format!("{{\"code\":\"{}\"}}", "x".repeat(len - 11));
        for byte in body.as_bytes() {
            socket
                .write_all(format!("1\r\n{}\r\n", char::from(*byte)).as_bytes())
                .await
                .unwrap();
        }
        let _ = socket.write_all(b"0\r\n\r\n").await;
        let mut head = vec![0_u8; 12];
        tokio::time::timeout(WAIT, socket.read_exact(&mut head))
            .await
            .expect("answered")
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&head), expect, "{len} bytes");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_connection_that_sends_no_request_is_closed_after_the_header_timeout() {
    let config = ServerConfig::default().with_header_read_timeout(Duration::from_millis(300));
    let server = Running::start(1, config).await;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let started = std::time::Instant::now();
    read_until_closed(&mut socket, Duration::from_secs(5))
        .await
        .expect("a silent connection is closed");
    assert!(started.elapsed() < Duration::from_secs(3));
    server.stop().await;
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_connections() {
    let config = ServerConfig::default().with_max_connections_per_peer(4);
    let server = Running::start(1, config).await;
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    // The fifth is answered 503 at once and closed.
    let mut fifth = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let answer = read_until_closed(&mut fifth, WAIT)
        .await
        .expect("the fifth connection is closed at once");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: "), "{answer}");
    assert!(answer.contains("\"reason\":\"unavailable\""), "{answer}");
    // Once they close, the address gets its places back.
    drop(silent);
    let healthy = tokio::time::timeout(WAIT, async {
        loop {
            let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
            socket
                .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = String::new();
            let _ = socket.read_to_string(&mut answer).await;
            if answer.starts_with("HTTP/1.1 200") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(healthy.is_ok(), "the address's places come back");
    server.stop().await;
}

/// Issue 15.3: `filter` is applied, as the broker applies it, per connection: the POST's to
/// its response, a GET's `?filter=` to that stream. Left-out events keep their seq; a client
/// without the `resume` feature (the TypeScript client) gets the passing events only, ours
/// also `filtered` lines covering the left-out seqs.
#[tokio::test]
async fn a_filter_leaves_events_out_of_its_connection_and_keeps_their_seqs() {
    let server = Running::start(5, ServerConfig::default()).await;
    // Stdout `line 1` and `line 3` (seqs 3 and 5) pass; session_init and final always do.
    let filter = json!({"mode": "include", "rules": [{"types": {"types": ["stdout"]},
        "content": {"patterns": [{"type": "regex", "pattern": "^LINE [13]\\s", "field": "payload.chunk", "caseInsensitive": true}]}}]});
    let id = SessionId::generate();
    let response = send(
        server.addr,
        "POST",
        "/sessions",
        &[JSON],
        json!({"sessionId": id, "filter": filter}).to_string(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let token = header(&response, "x-enclave-resume-token")
        .unwrap()
        .to_owned();
    let body = text(response).await;
    let seqs: Vec<u64> = body.lines().map(|l| event(l).seq).collect();
    assert_eq!(seqs, [1, 3, 5, 7], "{body}");
    let record = server.service.record(&id);
    assert_eq!(
        record.lock().unwrap().written,
        7,
        "left-out events count as written"
    );

    // A resume with the filter in the query, and the resume feature: filtered lines too.
    let query = enclave_transport::wire::percent_encode_query(&filter.to_string());
    let path = format!("/sessions/{id}/stream?fromSeq=2&filter={query}");
    let headers = [
        ("x-enclave-resume-token", token.as_str()),
        ("x-enclave-features", "resume"),
    ];
    let response = send(server.addr, "GET", &path, &headers, "").await;
    assert_eq!(response.status(), 200);
    let token = header(&response, "x-enclave-resume-token")
        .unwrap()
        .to_owned();
    let body = text(response).await;
    let lines: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let shape: Vec<(String, u64)> = lines
        .iter()
        .map(|l| {
            let n = l.get("seq").or(l.get("through")).or(l.get("lastSeq"));
            (
                l["type"].as_str().unwrap().to_owned(),
                n.unwrap().as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = [
        ("filtered", 2),
        ("stdout", 3),
        ("filtered", 4),
        ("stdout", 5),
        ("filtered", 6),
        ("final", 7),
        ("replay_complete", 7),
    ]
    .iter()
    .map(|(t, n)| ((*t).to_owned(), *n))
    .collect();
    assert_eq!(shape, want, "{body}");

    // The POST's filter is that response's only (as in the broker): a plain resume gets all.
    let headers = [("x-enclave-resume-token", token.as_str())];
    let response = send(
        server.addr,
        "GET",
        &format!("/sessions/{id}/stream?fromSeq=2"),
        &headers,
        "",
    )
    .await;
    assert_eq!(text(response).await.lines().count(), 6);
    server.stop().await;
}

#[tokio::test]
async fn a_full_server_serves_health_from_its_reserve_and_refuses_new_sessions_with_retry_after() {
    let config = ServerConfig::default()
        .with_max_connections(2)
        .with_connection_reserve(2);
    let server = Running::start(1, config).await;
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    // Let the server take both into the cap before the reserve is used.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let health = tokio::time::timeout(WAIT, send(server.addr, "GET", "/health", &[], ""))
        .await
        .expect("/health is answered while the cap is full");
    assert_eq!(health.status(), 200);
    let created = tokio::time::timeout(WAIT, send(server.addr, "POST", "/sessions", &[], ""))
        .await
        .expect("a create is answered while the cap is full");
    assert_eq!(created.status(), 503);
    assert_eq!(header(&created, "retry-after"), Some("2"));
    // A browser client can read it only if CORS exposes it.
    let exposed = header(&created, "access-control-expose-headers").unwrap_or_default();
    assert!(
        exposed
            .split(',')
            .any(|name| name.trim().eq_ignore_ascii_case("retry-after")),
        "Retry-After is not exposed: {exposed}"
    );
    assert_eq!(json(created).await["reason"], "unavailable");
    drop(health);
    // Filling the rest of the reserve: the next connection is told so at once (at most 4
    // connections fit: 2 under the cap, 2 in the reserve).
    let mut refused = None;
    for _ in 0..5 {
        let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        match read_until_closed(&mut socket, Duration::from_millis(300)).await {
            Some(answer) => {
                refused = Some(answer);
                break;
            }
            None => silent.push(socket),
        }
    }
    let answer = refused.expect("a connection past the reserve is closed at once");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(silent.len() <= 4, "{} connections held", silent.len());
    drop(silent);
    server.stop().await;
}

#[tokio::test]
async fn a_refusal_that_names_its_own_delay_sends_it_as_retry_after() {
    let server = Running::start(1, ServerConfig::default()).await;
    // The session layer asks for 6.5 s: the header rounds up, never down.
    let refused = send(
        server.addr,
        "POST",
        "/sessions",
        &[JSON],
        r#"{"code":"busy"}"#,
    )
    .await;
    assert_eq!(refused.status(), 503);
    assert_eq!(header(&refused, "retry-after"), Some("7"));
    assert_eq!(json(refused).await["reason"], "unavailable");
    server.stop().await;
}

#[tokio::test]
async fn ready_is_503_with_retry_after_while_the_store_is_down() {
    let server = Running::start(1, ServerConfig::default()).await;
    let ready = send(server.addr, "GET", "/ready", &[], "").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(header(&ready, "retry-after"), None);
    server
        .service
        .store_down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let down = send(server.addr, "GET", "/ready", &[], "").await;
    assert_eq!(down.status(), 503);
    // A load balancer (or a client) is told when to ask again.
    assert_eq!(header(&down, "retry-after"), Some("2"));
    let body = json(down).await;
    assert_eq!(
        (&body["status"], &body["reason"]),
        (&json!("unavailable"), &json!("unavailable"))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_bad_filter_is_refused_with_invalid_filter_before_anything_is_created() {
    let server = Running::start(1, ServerConfig::default()).await;
    for (filter, says) in [
        (json!({"mode": "include"}), "rules: must be an array"),
        (json!({"mode": "all", "rules": []}), "mode"),
        (
            json!({"mode": "include", "rules": [{"content": {"patterns": [{"type": "regex", "pattern": "(a)\\1"}]}}]}),
            "rules[0].content.patterns[0].pattern: backreferences",
        ),
        (
            json!({"mode": "include", "rules": [{"content": {"patterns": [{"type": "exact", "pattern": "a".repeat(5000)}]}}]}),
            "longer than 1024 bytes",
        ),
    ] {
        let response = send(
            server.addr,
            "POST",
            "/sessions",
            &[JSON],
            json!({"filter": filter}).to_string(),
        )
        .await;
        assert_eq!(response.status(), 400);
        let body = json(response).await;
        assert_eq!(body["code"], "INVALID_FILTER", "{body}");
        assert_eq!(body["reason"], "invalid_filter", "{body}");
        assert!(body["message"].as_str().unwrap().contains(says), "{body}");
    }
    assert!(server.service.sessions.lock().unwrap().is_empty());

    let id = SessionId::generate();
    let response = send(
        server.addr,
        "POST",
        "/sessions",
        &[JSON],
        json!({"sessionId": id}).to_string(),
    )
    .await;
    let token = header(&response, "x-enclave-resume-token")
        .unwrap()
        .to_owned();
    text(response).await;
    let headers = [("x-enclave-resume-token", token.as_str())];
    let path = format!("/sessions/{id}/stream?fromSeq=1&filter=%7Bnot%20json");
    let response = send(server.addr, "GET", &path, &headers, "").await;
    assert_eq!(response.status(), 400);
    let body = json(response).await;
    assert_eq!(body["code"], "INVALID_FILTER", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("not JSON"),
        "{body}"
    );
    // The refused resume did not use the token up.
    assert_eq!(server.service.record(&id).lock().unwrap().token, token);
    server.stop().await;
}

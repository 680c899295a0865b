//! Server identity over HTTP, our server against our client: a create (the signed
//! `session_init`) and a resume (the signed `X-Enclave-Server-Hello`), each with the right
//! pinned key, a wrong one, a server that does not sign, and a man in the middle that
//! changes what the signature covers.

use crate::common;
use crate::identity_support;

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::Running;
use enclave_crypto::{accept_client_hello, SigningKey};
use enclave_testkit::events;
use enclave_testkit::http::{head_end, server};
use enclave_transport::client::{connect, ClientConfig, Connection, NewSession, Open, ResumeAt};
use enclave_transport::wire::CreateBody;
use enclave_transport::Error as TransportError;
use enclave_transport::ServerConfig;
use enclave_types::{
    EncryptionConfig, EncryptionMode, EventPayload, ServerHello, SessionId, SessionInitPayload,
};
use identity_support::{
    assert_identity_refused, assert_refused_before_any_event, assert_session,
    impostor_ephemeral_key, pinned, read_all, replace_once, server_key, Proxy, WAIT,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const EVENTS: usize = 3;

fn signing(key: &Arc<SigningKey>) -> ServerConfig {
    ServerConfig::default()
        .with_encryption(EncryptionMode::Required)
        .with_signing_key(Arc::clone(key))
}

async fn open(url: &str, open: Open, config: &ClientConfig) -> Result<Connection, TransportError> {
    tokio::time::timeout(WAIT, connect(url, open, config))
        .await
        .expect("connect answers within the wait")
}

async fn create(url: &str, config: &ClientConfig) -> Connection {
    open(url, Open::New(NewSession::new()), config)
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// HTTP create: the signature covers the whole plaintext `session_init`.

#[tokio::test]
async fn create_with_the_right_key_decrypts_every_event() {
    let key = server_key();
    let server = Running::start(EVENTS, signing(&key)).await;
    let url = format!("http://{}", server.addr);
    // No session id asked for: the server chooses it, and the signature binds it.
    let mut conn = create(&url, &pinned(key.verifying_key())).await;
    // The keys come with the first line.
    assert!(!conn.encrypted());
    let (events, err) = read_all(&mut conn).await;
    assert!(err.is_none(), "{err:?}");
    assert!(conn.encrypted());
    assert_session(&events, 1, EVENTS, false);
    let EventPayload::SessionInit(init) = &events[0].0.payload else {
        panic!("the first event is session_init");
    };
    let hello = init.encryption.server_hello.as_ref().unwrap();
    assert_eq!(hello.signature_b64.as_ref().map(String::len), Some(88));
    // The session layer keeps its unsigned copy.
    let record = server.service.record(conn.session_id());
    let stored = Arc::clone(&record.lock().unwrap().events[0]);
    let EventPayload::SessionInit(stored) = &stored.payload else {
        panic!("the stored first event is session_init");
    };
    assert_eq!(
        stored
            .encryption
            .server_hello
            .as_ref()
            .unwrap()
            .signature_b64,
        None
    );
    server.stop().await;
}

#[tokio::test]
async fn create_with_another_key_is_refused_before_any_event() {
    let key = server_key();
    let server = Running::start(EVENTS, signing(&key)).await;
    let other = SigningKey::generate().unwrap();
    let mut conn = create(
        &format!("http://{}", server.addr),
        &pinned(other.verifying_key()),
    )
    .await;
    assert_refused_before_any_event(&mut conn).await;
    assert!(!conn.encrypted(), "no key was installed");
    server.stop().await;
}

#[tokio::test]
async fn create_from_a_server_that_does_not_sign_is_refused() {
    let server = Running::start(
        EVENTS,
        ServerConfig::default().with_encryption(EncryptionMode::Required),
    )
    .await;
    let key = SigningKey::generate().unwrap();
    let mut conn = create(
        &format!("http://{}", server.addr),
        &pinned(key.verifying_key()),
    )
    .await;
    let (events, err) = read_all(&mut conn).await;
    assert!(events.is_empty());
    let err = err.unwrap();
    assert_identity_refused(&err);
    assert!(err.to_string().contains("no signatureB64"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn create_with_a_redirected_cancel_url_is_refused() {
    let key = server_key();
    let server = Running::start(EVENTS, signing(&key)).await;
    // Same length, so the chunk sizes still hold: a protocol-relative URL to another host.
    let redirect: identity_support::Rewrite = Arc::new(|buffer: &mut Vec<u8>| {
        replace_once(
            buffer,
            br#""cancelUrl":"/sessions/"#,
            br#""cancelUrl":"//evil.ex/"#,
        )
        .into()
    });
    let proxy = Proxy::start(server.addr, redirect).await;
    let url = format!("http://{}", proxy.addr);

    // Without a pinned key the redirect goes through unnoticed…
    let mut anonymous = create(&url, &ClientConfig::new()).await;
    let (events, err) = read_all(&mut anonymous).await;
    assert!(err.is_none(), "{err:?}");
    let EventPayload::SessionInit(init) = &events[0].0.payload else {
        panic!("the first event is session_init");
    };
    assert!(
        init.cancel_url.starts_with("//evil.ex/"),
        "{}",
        init.cancel_url
    );
    assert!(proxy.rewrote());

    // …with one it is refused before anything is accepted.
    let mut conn = create(&url, &pinned(key.verifying_key())).await;
    assert_refused_before_any_event(&mut conn).await;
    server.stop().await;
}

/// A fake server that signs a real `session_init` with `key`, then (as a man in the
/// middle would) changes it with `tamper` before writing it, followed by a plaintext event.
async fn tampering_server(
    key: Arc<SigningKey>,
    tamper: fn(&mut SessionInitPayload),
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let body = server::read_request(&mut socket)
            .await
            .expect("the client sent a whole request")
            .body;
        let create: CreateBody = serde_json::from_slice(&body).unwrap();
        let offer = create
            .encryption
            .expect("a pinned client offers encryption");
        let client_hello = offer.client_hello.expect("with a hello");
        let session_id = SessionId::new("s_tampered").unwrap();
        let (server_hello, _keys) = accept_client_hello(&client_hello, &session_id).unwrap();
        let mut encryption = EncryptionConfig::new(true);
        encryption.key_id = Some(server_hello.key_id.clone());
        encryption.server_hello = Some(server_hello);
        let mut event = events::session_init(&session_id, encryption);
        key.sign_session_init(&mut event, &client_hello, offer.mode)
            .unwrap();
        if let EventPayload::SessionInit(init) = &mut event.payload {
            tamper(init);
        }
        let leak = events::stdout(&session_id, 2, "not for an impostor's client\n");
        let mut body = serde_json::to_string(&event).unwrap();
        body.push('\n');
        body.push_str(&serde_json::to_string(&leak).unwrap());
        body.push('\n');
        let id = session_id.to_string();
        let headers = [
            ("content-type", "application/x-ndjson"),
            ("x-session-id", id.as_str()),
            ("connection", "close"),
        ];
        server::write_response(&mut socket, 200, "OK", &headers, body.as_bytes())
            .await
            .unwrap();
        let _ = socket.shutdown().await;
    });
    (url, task)
}

#[tokio::test]
async fn create_with_encryption_switched_off_in_session_init_is_refused() {
    let key = server_key();
    let tampers: [fn(&mut SessionInitPayload); 2] = [
        // Switched off, the signed hello left in place.
        |init| init.encryption.enabled = false,
        // Switched off and the hello removed: nothing left to verify.
        |init| {
            init.encryption = EncryptionConfig::new(false);
        },
    ];
    for tamper in tampers {
        let (url, server) = tampering_server(Arc::clone(&key), tamper).await;
        let mut conn = create(&url, &pinned(key.verifying_key())).await;
        assert_refused_before_any_event(&mut conn).await;
        tokio::time::timeout(WAIT, server).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn the_fake_signs_what_a_pinned_client_accepts() {
    // The same fake, untampered: the refusals above come from the tampering alone.
    let key = server_key();
    let (url, server) = tampering_server(Arc::clone(&key), |_| {}).await;
    let mut conn = create(&url, &pinned(key.verifying_key())).await;
    let first = tokio::time::timeout(WAIT, conn.next()).await.unwrap();
    assert!(
        matches!(&first, Some(Ok(enclave_transport::client::Received::Event { event, encrypted: false, .. })) if event.seq == 1),
        "{first:?}"
    );
    assert!(conn.encrypted());
    drop(conn);
    tokio::time::timeout(WAIT, server).await.unwrap().unwrap();
}

// ---------------------------------------------------------------------------------------
// HTTP resume: the signed hello travels in `X-Enclave-Server-Hello`, mode `required`.

/// Creates a session over `url` with `config`, reads it to its end, and says where to
/// resume it from seq 2.
async fn session_to_resume(url: &str, config: &ClientConfig) -> ResumeAt {
    let mut conn = create(url, config).await;
    let (events, err) = read_all(&mut conn).await;
    assert!(err.is_none(), "{err:?}");
    assert_session(&events, 1, EVENTS, false);
    ResumeAt::new(conn.session_id().clone(), 2)
        .with_token(conn.token().map(str::to_owned))
        .with_epoch(conn.epoch())
}

#[tokio::test]
async fn resume_with_the_right_key_decrypts_the_replay() {
    let key = server_key();
    let server = Running::start(EVENTS, signing(&key)).await;
    let url = format!("http://{}", server.addr);
    let config = pinned(key.verifying_key());
    let at = session_to_resume(&url, &config).await;
    let mut conn = open(&url, Open::Resume(at), &config).await.unwrap();
    assert!(conn.resumed() && conn.encrypted());
    let (events, err) = read_all(&mut conn).await;
    assert!(err.is_none(), "{err:?}");
    assert_session(&events, 2, EVENTS, true);
    server.stop().await;
}

#[tokio::test]
async fn resume_with_another_key_is_refused() {
    let key = server_key();
    let server = Running::start(EVENTS, signing(&key)).await;
    let url = format!("http://{}", server.addr);
    let at = session_to_resume(&url, &pinned(key.verifying_key())).await;
    let other = SigningKey::generate().unwrap();
    let err = open(&url, Open::Resume(at), &pinned(other.verifying_key()))
        .await
        .unwrap_err();
    assert_identity_refused(&err);
    server.stop().await;
}

#[tokio::test]
async fn resume_from_a_server_that_does_not_sign_is_refused() {
    let server = Running::start(
        EVENTS,
        ServerConfig::default().with_encryption(EncryptionMode::Required),
    )
    .await;
    let url = format!("http://{}", server.addr);
    let unpinned = ClientConfig::new().with_encryption(EncryptionMode::Required);
    let at = session_to_resume(&url, &unpinned).await;
    let key = SigningKey::generate().unwrap();
    let err = open(&url, Open::Resume(at), &pinned(key.verifying_key()))
        .await
        .unwrap_err();
    assert_identity_refused(&err);
    server.stop().await;
}

#[tokio::test]
async fn resume_with_a_substituted_server_key_is_refused() {
    let key = server_key();
    let server = Running::start(EVENTS, signing(&key)).await;
    let config = pinned(key.verifying_key());
    let at = session_to_resume(&format!("http://{}", server.addr), &config).await;
    // A man in the middle answers with its own ephemeral key, keeping the signature.
    let impostor = impostor_ephemeral_key(&at.session_id);
    let swap: identity_support::Rewrite =
        Arc::new(move |buffer: &mut Vec<u8>| swap_header_hello_key(buffer, &impostor).into());
    let proxy = Proxy::start(server.addr, swap).await;
    let err = open(&format!("http://{}", proxy.addr), Open::Resume(at), &config)
        .await
        .unwrap_err();
    assert!(proxy.rewrote());
    assert_identity_refused(&err);
    server.stop().await;
}

/// Rewrites the `X-Enclave-Server-Hello` of a response head with `key` as the server's
/// ephemeral key; `false` until the whole head is in `buffer`.
fn swap_header_hello_key(buffer: &mut Vec<u8>, key: &str) -> bool {
    let Some(end) = head_end(buffer) else {
        return false;
    };
    let head = String::from_utf8(buffer[..end].to_vec()).unwrap();
    let name = "x-enclave-server-hello:";
    let lines: Vec<String> = head
        .split("\r\n")
        .map(|line| {
            if !line.to_ascii_lowercase().starts_with(name) {
                return line.to_owned();
            }
            let value = line[name.len()..].trim();
            let json = URL_SAFE_NO_PAD.decode(value.trim_end_matches('=')).unwrap();
            let mut hello: ServerHello = serde_json::from_slice(&json).unwrap();
            assert!(hello.signature_b64.is_some(), "the server signed its hello");
            key.clone_into(&mut hello.server_ephemeral_pub_key_b64);
            let value = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&hello).unwrap());
            format!("x-enclave-server-hello: {value}")
        })
        .collect();
    let rewritten = lines.join("\r\n");
    assert_ne!(rewritten, head, "the answer carries X-Enclave-Server-Hello");
    buffer.splice(..end, rewritten.into_bytes());
    true
}

#[tokio::test]
async fn a_pinned_client_never_settles_for_plaintext() {
    // Even told `optional` after pinning, the client offers `required`: a server that does
    // not encrypt refuses it rather than streaming in plaintext.
    let server = Running::start(
        EVENTS,
        ServerConfig::default().with_encryption(EncryptionMode::Disabled),
    )
    .await;
    let key = SigningKey::generate().unwrap();
    let config = pinned(key.verifying_key()).with_encryption(EncryptionMode::Optional);
    for url in [
        format!("http://{}", server.addr),
        format!("ws://{}", server.addr),
    ] {
        let err = open(&url, Open::New(NewSession::new()), &config)
            .await
            .unwrap_err();
        let refusal = err.refusal().unwrap_or_else(|| panic!("{url}: {err:?}"));
        assert_eq!(
            refusal.reason,
            enclave_transport::RefusalReason::EncryptionRequired
        );
    }
    assert!(server.service.sessions.lock().unwrap().is_empty());
    server.stop().await;
}

//! Server identity over WebSocket, our server against our client: the signed `ServerHello`
//! of `opened` on a create (the client's mode) and a resume (mode `required`), with the
//! right pinned key, a wrong one, a server that does not sign, and a man in the middle that
//! swaps the server's ephemeral key.

use crate::common;
use crate::identity_support;

use std::sync::Arc;

use common::Running;
use enclave_crypto::SigningKey;
use enclave_testkit::http::head_end;
use enclave_transport::client::{connect, ClientConfig, Connection, NewSession, Open, ResumeAt};
use enclave_transport::Error as TransportError;
use enclave_transport::ServerConfig;
use enclave_types::{EncryptionMode, SessionId};
use identity_support::{
    assert_identity_refused, assert_session, impostor_ephemeral_key, pinned, read_all, server_key,
    Proxy, Rewrite, Step, WAIT,
};

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

/// Creates a session, reads it to its end, and says where to resume it from seq 2.
async fn session_to_resume(url: &str, config: &ClientConfig) -> ResumeAt {
    let mut conn = open(url, Open::New(NewSession::new()), config)
        .await
        .unwrap();
    let (events, err) = read_all(&mut conn).await;
    assert!(err.is_none(), "{err:?}");
    assert_session(&events, 1, EVENTS, true);
    ResumeAt::new(conn.session_id().clone(), 2)
        .with_token(conn.token().map(str::to_owned))
        .with_epoch(conn.epoch())
}

#[tokio::test]
async fn create_and_resume_with_the_right_key_decrypt_every_event() {
    let key = server_key();
    let server = Running::start(EVENTS, signing(&key)).await;
    let url = format!("ws://{}", server.addr);
    let config = pinned(key.verifying_key());
    // The create: keys from `opened`, so even `session_init` comes sealed.
    let at = session_to_resume(&url, &config).await;
    // The resume binds mode `required`, on the server and on the client.
    let mut conn = open(&url, Open::Resume(at), &config).await.unwrap();
    assert!(conn.resumed() && conn.encrypted());
    let (events, err) = read_all(&mut conn).await;
    assert!(err.is_none(), "{err:?}");
    assert_session(&events, 2, EVENTS, true);
    server.stop().await;
}

#[tokio::test]
async fn an_optional_mode_create_is_signed_with_optional() {
    // The transcript binds the mode of the `open`; a pinned client always says `required`,
    // so check `optional` through a server that signs and an unpinned client, then verify
    // that what `opened` carried verifies under `optional` and not under `required`.
    let key = server_key();
    let server = Running::start(
        EVENTS,
        ServerConfig::default().with_signing_key(Arc::clone(&key)),
    )
    .await;
    let hello = opened_hello(server.addr, EncryptionMode::Optional).await;
    let (session_id, client_hello, server_hello) = hello;
    let verify = |mode| {
        key.verifying_key().verify_server_hello(
            &server_hello,
            &enclave_crypto::HelloTranscript::new(
                &session_id,
                &client_hello,
                mode,
                enclave_crypto::SessionInitDigest::none(),
            ),
        )
    };
    verify(EncryptionMode::Optional).unwrap();
    assert!(verify(EncryptionMode::Required).is_err());
    server.stop().await;
}

/// Opens a WebSocket by hand with `mode` and returns the session id, the hello sent and
/// the `ServerHello` of `opened`.
async fn opened_hello(
    addr: std::net::SocketAddr,
    mode: EncryptionMode,
) -> (
    SessionId,
    enclave_types::ClientHello,
    enclave_types::ServerHello,
) {
    use enclave_transport::wire::{Control, EncryptionOffer, WsOpen};
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let handshake = enclave_crypto::ClientHandshake::start().unwrap();
    let (mut ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{addr}/sessions/ws")),
    )
    .await
    .unwrap()
    .unwrap();
    let mut open = WsOpen::default();
    open.encryption = Some(EncryptionOffer::new(
        mode,
        Some(handshake.client_hello().clone()),
    ));
    ws.send(Message::text(
        serde_json::to_string(&Control::Open(open)).unwrap(),
    ))
    .await
    .unwrap();
    let first = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Ok(Control::Opened(opened)) = serde_json::from_str::<Control>(first.to_text().unwrap())
    else {
        panic!("expected opened, got {first:?}");
    };
    let _ = ws.close(None).await;
    (
        opened.session_id,
        handshake.client_hello().clone(),
        opened
            .server_hello
            .expect("an encrypted opened carries the hello"),
    )
}

#[tokio::test]
async fn another_key_is_refused_on_create_and_on_resume() {
    let key = server_key();
    let server = Running::start(EVENTS, signing(&key)).await;
    let url = format!("ws://{}", server.addr);
    let other = pinned(SigningKey::generate().unwrap().verifying_key());
    let err = open(&url, Open::New(NewSession::new()), &other)
        .await
        .unwrap_err();
    assert_identity_refused(&err);
    let at = session_to_resume(&url, &pinned(key.verifying_key())).await;
    let err = open(&url, Open::Resume(at), &other).await.unwrap_err();
    assert_identity_refused(&err);
    server.stop().await;
}

#[tokio::test]
async fn a_server_that_does_not_sign_is_refused() {
    let server = Running::start(
        EVENTS,
        ServerConfig::default().with_encryption(EncryptionMode::Required),
    )
    .await;
    let url = format!("ws://{}", server.addr);
    let config = pinned(SigningKey::generate().unwrap().verifying_key());
    let err = open(&url, Open::New(NewSession::new()), &config)
        .await
        .unwrap_err();
    assert_identity_refused(&err);
    assert!(err.to_string().contains("no signatureB64"), "{err}");
    let unpinned = ClientConfig::new().with_encryption(EncryptionMode::Required);
    let at = session_to_resume(&url, &unpinned).await;
    let err = open(&url, Open::Resume(at), &config).await.unwrap_err();
    assert_identity_refused(&err);
    server.stop().await;
}

#[tokio::test]
async fn a_substituted_server_key_in_opened_is_refused() {
    let key = server_key();
    let server = Running::start(EVENTS, signing(&key)).await;
    // Server-to-client frames are not masked, and a key has a fixed length: a man in the
    // middle can swap the ephemeral key in `opened` in place, keeping the signature.
    let impostor = impostor_ephemeral_key(&SessionId::new("s_any").unwrap());
    let swap: Rewrite = Arc::new(move |buffer: &mut Vec<u8>| {
        let marker = br#""serverEphemeralPubKeyB64":""#;
        let Some(at) = buffer.windows(marker.len()).position(|w| w == marker) else {
            // The client sends `open` only once it has the `101`: let the head through.
            return match head_end(buffer) {
                Some(end) if buffer.starts_with(b"HTTP/") => Step::Forward(end + 4),
                _ => Step::Hold,
            };
        };
        let start = at + marker.len();
        if buffer.len() < start + impostor.len() {
            return Step::Hold;
        }
        assert_eq!(
            buffer[start + impostor.len()],
            b'"',
            "a key is 88 characters"
        );
        buffer[start..start + impostor.len()].copy_from_slice(impostor.as_bytes());
        Step::Done
    });
    let proxy = Proxy::start(server.addr, swap).await;
    let err = open(
        &format!("ws://{}", proxy.addr),
        Open::New(NewSession::new()),
        &pinned(key.verifying_key()),
    )
    .await
    .unwrap_err();
    assert!(proxy.rewrote());
    assert_identity_refused(&err);
    server.stop().await;
}

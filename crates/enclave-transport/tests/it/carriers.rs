//! The byte-stream carriers: the open/opened exchange and the Framed stack after it, over an
//! in-memory duplex, two halves joined as `stdio()` joins them, TCP on loopback and a Unix
//! socket, encrypted and plaintext.

use std::time::Duration;

use bytes::BytesMut;
use enclave_crypto::SigningKey;
use enclave_testkit::events;
use enclave_transport::carrier::{
    accept_open, handshake_client, memory_pair, over, tcp, ClientFramed, ServerFramed,
    DEFAULT_MAX_LINE_LENGTH,
};
use enclave_transport::client::ClientConfig;
use enclave_transport::wire::{WsOpen, WsOpened};
use enclave_transport::{Error as TransportError, Refusal, RefusalReason};
use enclave_types::{EncryptionMode, RuntimeChannelMessage, SessionId, StreamEvent};
use futures::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio_util::codec::Encoder as _;

/// The longest any single step may take.
const WAIT: Duration = Duration::from_secs(10);
/// Events the server sends in each exchange.
const EVENTS: u64 = 50;
/// Messages the client sends in each exchange.
const MESSAGES: u64 = 5;

fn event(session: &SessionId, seq: u64) -> StreamEvent {
    events::stdout(session, seq, format!("line {seq}"))
}

fn message(session: &SessionId, seq: u64) -> RuntimeChannelMessage {
    events::cancel(session, seq, format!("reason {seq}"))
}

/// A new session's `open`, naming the session it wants.
fn open_new(session: &SessionId) -> WsOpen {
    let mut open = WsOpen::default();
    open.session_id = Some(session.clone());
    open.code = Some("return 1".to_owned());
    open
}

fn options(mode: EncryptionMode) -> ClientConfig {
    ClientConfig::default().with_encryption(mode)
}

/// The server's side: reads `open`, answers `opened` for the session it names, writes
/// `EVENTS` events, then reads `MESSAGES` messages; returns them with their `encrypted` flag.
async fn serve<IO>(io: IO, policy: EncryptionMode) -> Vec<(RuntimeChannelMessage, bool)>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let opening = accept_open(io, DEFAULT_MAX_LINE_LENGTH).await.unwrap();
    assert_eq!(opening.open().code.as_deref(), Some("return 1"));
    let session = opening.open().session_id.clone().unwrap();
    let opened = WsOpened::new(session.clone(), "token-1".to_owned(), 7, false);
    let mut framed = opening.accept(opened, policy, None).await.unwrap();
    stream_events(&mut framed, &session).await;
    read_messages(&mut framed).await
}

async fn stream_events<IO>(framed: &mut ServerFramed<IO>, session: &SessionId)
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    for seq in 1..=EVENTS {
        framed.feed(&event(session, seq)).await.unwrap();
    }
    framed.flush().await.unwrap();
}

async fn read_messages<IO>(framed: &mut ServerFramed<IO>) -> Vec<(RuntimeChannelMessage, bool)>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut received = Vec::new();
    while received.len() < usize::try_from(MESSAGES).unwrap() {
        let opened = framed.next().await.expect("a message").unwrap().unwrap();
        received.push((opened.message, opened.encrypted));
    }
    received
}

/// The client's side after the exchange: reads the `EVENTS` events in order, checking each
/// arrived sealed exactly when `encrypted`, then sends `MESSAGES` messages.
async fn consume<IO>(framed: &mut ClientFramed<IO>, session: &SessionId, encrypted: bool)
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    for seq in 1..=EVENTS {
        let opened = framed.next().await.expect("an event").unwrap().unwrap();
        assert_eq!(opened.encrypted, encrypted, "event {seq}");
        assert_eq!(opened.message, event(session, seq));
    }
    for seq in 1..=MESSAGES {
        framed.send(&message(session, seq)).await.unwrap();
    }
}

fn assert_messages(received: &[(RuntimeChannelMessage, bool)], session: &SessionId, enc: bool) {
    let expected: Vec<_> = (1..=MESSAGES)
        .map(|seq| (message(session, seq), enc))
        .collect();
    assert_eq!(received, expected);
}

/// Both sides of one exchange over connected IOs, under a timeout.
async fn exchange<S, C>(server_io: S, client_io: C, mode: EncryptionMode)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: AsyncRead + AsyncWrite + Unpin,
{
    let session = SessionId::generate();
    let server = tokio::spawn(serve(server_io, EncryptionMode::Optional));
    let client = async {
        let (mut framed, opened) = handshake_client(client_io, open_new(&session), &options(mode))
            .await
            .unwrap();
        assert_eq!(opened.session_id, session);
        assert_eq!((opened.token.as_str(), opened.epoch), ("token-1", 7));
        let encrypted = mode != EncryptionMode::Disabled;
        assert_eq!(opened.server_hello.is_some(), encrypted);
        assert_eq!(framed.codec().layer().is_encrypted(), encrypted);
        consume(&mut framed, &session, encrypted).await;
        framed
    };
    let (framed, received) = tokio::time::timeout(WAIT, async {
        let framed = client.await;
        (framed, server.await.unwrap())
    })
    .await
    .expect("the exchange within the wait");
    assert_messages(&received, &session, mode != EncryptionMode::Disabled);
    drop(framed);
}

#[tokio::test]
async fn memory_pair_carries_events_and_messages_both_ways() {
    for encrypted in [false, true] {
        let session = SessionId::generate();
        let (mut server, mut client) =
            memory_pair(4096, DEFAULT_MAX_LINE_LENGTH, encrypted.then_some(&session)).unwrap();
        tokio::time::timeout(WAIT, async {
            let sending = stream_events(&mut server, &session);
            let receiving = consume(&mut client, &session, encrypted);
            tokio::join!(sending, receiving);
            assert_messages(&read_messages(&mut server).await, &session, encrypted);
        })
        .await
        .expect("within the wait");
    }
}

#[tokio::test]
async fn open_exchange_over_a_duplex_plaintext_and_encrypted() {
    for mode in [
        EncryptionMode::Disabled,
        EncryptionMode::Optional,
        EncryptionMode::Required,
    ] {
        let (server_io, client_io) = tokio::io::duplex(1024);
        exchange(server_io, client_io, mode).await;
    }
}

/// `stdio()` is `over(stdin, stdout)`: the same exchange over two one-way pipes joined.
#[tokio::test]
async fn open_exchange_over_joined_halves_as_stdio_does() {
    for mode in [EncryptionMode::Disabled, EncryptionMode::Required] {
        let (client_out, server_in) = tokio::io::duplex(1024);
        let (server_out, client_in) = tokio::io::duplex(1024);
        let server_io = over(server_in, server_out);
        let client_io = over(client_in, client_out);
        exchange(server_io, client_io, mode).await;
    }
}

#[tokio::test]
async fn open_exchange_over_tcp_loopback() {
    let listener = tcp::Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    for mode in [EncryptionMode::Disabled, EncryptionMode::Required] {
        let session = SessionId::generate();
        let result = tokio::time::timeout(WAIT, async {
            let server = async {
                let (stream, peer) = listener.accept().await.unwrap();
                assert!(peer.ip().is_loopback());
                serve(stream, EncryptionMode::Optional).await
            };
            let client = async {
                let (mut framed, opened) = tcp::connect(addr, open_new(&session), &options(mode))
                    .await
                    .unwrap();
                assert_eq!(opened.session_id, session);
                consume(&mut framed, &session, mode != EncryptionMode::Disabled).await;
                framed
            };
            tokio::join!(server, client)
        })
        .await
        .expect("the exchange within the wait");
        assert_messages(&result.0, &session, mode != EncryptionMode::Disabled);
    }
}

#[cfg(unix)]
#[tokio::test]
async fn open_exchange_over_a_unix_socket() {
    use enclave_transport::carrier::unix;

    let dir = std::env::temp_dir().join(format!(
        "enclave-carriers-{}-{}",
        std::process::id(),
        SessionId::generate().as_str()
    ));
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("runtime.sock");
    let listener = unix::Listener::bind(&path).unwrap();
    assert_eq!(listener.path(), path);
    for mode in [EncryptionMode::Disabled, EncryptionMode::Required] {
        let session = SessionId::generate();
        let result = tokio::time::timeout(WAIT, async {
            let server = async {
                let stream = listener.accept().await.unwrap();
                serve(stream, EncryptionMode::Optional).await
            };
            let client = async {
                let (mut framed, _opened) =
                    unix::connect(&path, open_new(&session), &options(mode))
                        .await
                        .unwrap();
                consume(&mut framed, &session, mode != EncryptionMode::Disabled).await;
                framed
            };
            tokio::join!(server, client)
        })
        .await
        .expect("the exchange within the wait");
        assert_messages(&result.0, &session, mode != EncryptionMode::Disabled);
    }
    drop(listener);
    assert!(!path.exists(), "the listener removes its socket file");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A tampered envelope and a plaintext event slipped in after the keys are up are item
/// errors naming their line; the events around them still arrive.
#[tokio::test]
async fn a_tampered_or_plaintext_line_is_an_item_error_and_the_stream_goes_on() {
    let session = SessionId::generate();
    let (mut server, mut client) =
        memory_pair(1 << 16, DEFAULT_MAX_LINE_LENGTH, Some(&session)).unwrap();
    tokio::time::timeout(WAIT, async {
        server.send(&event(&session, 1)).await.unwrap();

        // Line 2: a sealed event with one ciphertext character changed.
        let mut sealed = BytesMut::new();
        server
            .codec_mut()
            .encode(&event(&session, 2), &mut sealed)
            .unwrap();
        let mut line = String::from_utf8(sealed.to_vec()).unwrap();
        let at = line.find("\"ciphertextB64\":\"").unwrap() + "\"ciphertextB64\":\"".len();
        let flipped = if line.as_bytes()[at] == b'A' {
            "B"
        } else {
            "A"
        };
        line.replace_range(at..=at, flipped);
        server.get_mut().write_all(line.as_bytes()).await.unwrap();

        // Line 3: a plaintext event, refused once keys are up.
        let plain = format!("{}\n", serde_json::to_string(&event(&session, 3)).unwrap());
        server.get_mut().write_all(plain.as_bytes()).await.unwrap();

        server.send(&event(&session, 4)).await.unwrap();

        let first = client.next().await.unwrap().unwrap().unwrap();
        assert_eq!(first.message, event(&session, 1));
        let tampered = client.next().await.unwrap().unwrap().unwrap_err();
        assert!(tampered.to_string().contains("line 2"), "{tampered}");
        let plaintext = client.next().await.unwrap().unwrap().unwrap_err();
        assert!(plaintext.to_string().contains("line 3"), "{plaintext}");
        let last = client.next().await.unwrap().unwrap().unwrap();
        assert!(last.encrypted);
        assert_eq!(last.message, event(&session, 4));
    })
    .await
    .expect("within the wait");
}

#[tokio::test]
async fn a_server_requiring_encryption_refuses_a_plaintext_open() {
    let (server_io, client_io) = tokio::io::duplex(1024);
    let session = SessionId::generate();
    let server = tokio::spawn(async move {
        let opening = accept_open(server_io, DEFAULT_MAX_LINE_LENGTH).await?;
        let id = opening.open().session_id.clone().unwrap();
        let opened = WsOpened::new(id, "t".to_owned(), 1, false);
        opening
            .accept(opened, EncryptionMode::Required, None)
            .await
            .map(drop)
    });
    let plaintext = options(EncryptionMode::Disabled);
    let client = handshake_client(client_io, open_new(&session), &plaintext);
    let (client, server) = tokio::time::timeout(WAIT, async { (client.await, server.await) })
        .await
        .expect("within the wait");
    for err in [client.unwrap_err(), server.unwrap().unwrap_err()] {
        let TransportError::Refused { refusal, .. } = err else {
            panic!("expected a refusal, got {err}");
        };
        assert_eq!(refusal.reason, RefusalReason::EncryptionRequired);
        assert!(refusal.message.contains(session.as_str()), "{refusal}");
    }
}

#[tokio::test]
async fn the_application_refuses_an_open_and_the_client_reads_why() {
    let (server_io, client_io) = tokio::io::duplex(1024);
    let server = tokio::spawn(async move {
        let opening = accept_open(server_io, DEFAULT_MAX_LINE_LENGTH).await?;
        assert!(opening.open().resume.is_some());
        opening
            .refuse(&Refusal::new(RefusalReason::BadToken, "wrong token"))
            .await
    });
    let mut open = open_new(&SessionId::generate());
    open.resume = Some(enclave_transport::wire::ResumeFrom::new(
        4,
        Some("old".to_owned()),
        Some(1),
    ));
    let optional = options(EncryptionMode::Optional);
    let client = handshake_client(client_io, open, &optional);
    let (client, server) = tokio::time::timeout(WAIT, async { (client.await, server.await) })
        .await
        .expect("within the wait");
    server.unwrap().unwrap();
    let TransportError::Refused { refusal, .. } = client.unwrap_err() else {
        panic!("expected a refusal");
    };
    assert_eq!(refusal.reason, RefusalReason::BadToken);
    assert_eq!(refusal.message, "wrong token");
}

#[tokio::test]
async fn a_first_line_that_is_not_open_is_refused_as_an_invalid_request() {
    let (server_io, mut client_io) = tokio::io::duplex(1024);
    let server = tokio::spawn(accept_open(server_io, DEFAULT_MAX_LINE_LENGTH));
    client_io
        .write_all(b"{\"type\":\"ack\",\"seq\":1}\n")
        .await
        .unwrap();
    let err = tokio::time::timeout(WAIT, server)
        .await
        .expect("within the wait")
        .unwrap()
        .unwrap_err();
    let TransportError::Refused { refusal, .. } = err else {
        panic!("expected a refusal, got {err}");
    };
    assert_eq!(refusal.reason, RefusalReason::InvalidRequest);
    let mut answer = String::new();
    tokio::time::timeout(
        WAIT,
        tokio::io::AsyncBufReadExt::read_line(
            &mut tokio::io::BufReader::new(client_io),
            &mut answer,
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let body: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(body["code"], "INVALID_REQUEST");
    assert_eq!(body["reason"], "invalid_request");
}

#[tokio::test]
async fn a_first_line_over_the_limit_is_refused_without_reading_it_whole() {
    let (server_io, mut client_io) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(accept_open(server_io, 256));
    let long = format!("{{\"type\":\"open\",\"code\":\"{}\"}}\n", "x".repeat(1024));
    client_io.write_all(long.as_bytes()).await.unwrap();
    let err = tokio::time::timeout(WAIT, server)
        .await
        .expect("within the wait")
        .unwrap()
        .unwrap_err();
    let TransportError::Refused { refusal, .. } = err else {
        panic!("expected a refusal, got {err}");
    };
    assert!(refusal.message.contains("256"), "{refusal}");
}

#[tokio::test]
async fn a_pinned_server_key_is_verified_before_any_key_is_installed() {
    let identity = SigningKey::generate().unwrap();
    let impostor = SigningKey::generate().unwrap();
    for (signer, accepted) in [(&identity, true), (&impostor, false)] {
        let signer = SigningKey::from_pkcs8_pem(&signer.to_pkcs8_pem()).unwrap();
        let (server_io, client_io) = tokio::io::duplex(1024);
        let session = SessionId::generate();
        let server = tokio::spawn(async move {
            let opening = accept_open(server_io, DEFAULT_MAX_LINE_LENGTH).await?;
            let id = opening.open().session_id.clone().unwrap();
            let opened = WsOpened::new(id, "t".to_owned(), 1, false);
            opening
                .accept(opened, EncryptionMode::Optional, Some(&signer))
                .await
                .map(drop)
        });
        let pinned = ClientConfig::default().with_server_key(identity.verifying_key().clone());
        let client = handshake_client(client_io, open_new(&session), &pinned);
        let client = tokio::time::timeout(WAIT, client)
            .await
            .expect("within the wait");
        match client {
            Ok((framed, opened)) => {
                assert!(accepted, "an impostor's ServerHello was accepted");
                assert!(opened.server_hello.unwrap().signature_b64.is_some());
                assert!(framed.codec().layer().is_encrypted());
            }
            Err(err) => {
                assert!(!accepted, "the real server was refused: {err}");
                assert!(
                    matches!(err, TransportError::ServerIdentity { .. }),
                    "{err}"
                );
            }
        }
        tokio::time::timeout(WAIT, server)
            .await
            .expect("within the wait")
            .unwrap()
            .unwrap();
    }
}

/// Lines that arrive in the same read as the first one (a peer need not wait for the
/// answer) are decoded at once, without waiting for more bytes that may never come.
#[tokio::test]
async fn lines_pipelined_behind_the_first_are_not_lost() {
    let session = SessionId::generate();

    // Server side: `open` and two messages in one write, and nothing more.
    let (server_io, mut client_io) = tokio::io::duplex(1 << 16);
    let mut bytes =
        serde_json::to_string(&enclave_transport::wire::Control::Open(open_new(&session))).unwrap();
    for seq in 1..=2 {
        bytes.push('\n');
        bytes.push_str(&serde_json::to_string(&message(&session, seq)).unwrap());
    }
    bytes.push('\n');
    client_io.write_all(bytes.as_bytes()).await.unwrap();
    tokio::time::timeout(WAIT, async {
        let opening = accept_open(server_io, DEFAULT_MAX_LINE_LENGTH)
            .await
            .unwrap();
        let opened = WsOpened::new(session.clone(), "t".to_owned(), 1, false);
        let mut framed = opening
            .accept(opened, EncryptionMode::Optional, None)
            .await
            .unwrap();
        for seq in 1..=2 {
            let received = framed.next().await.unwrap().unwrap().unwrap();
            assert_eq!(received.message, message(&session, seq));
        }
    })
    .await
    .expect("the pipelined messages without more bytes");

    // Client side: `opened` and two events in one write, and nothing more.
    let (mut server_io, client_io) = tokio::io::duplex(1 << 16);
    let mut bytes = serde_json::to_string(&enclave_transport::wire::Control::Opened(
        WsOpened::new(session.clone(), "t".to_owned(), 1, false),
    ))
    .unwrap();
    for seq in 1..=2 {
        bytes.push('\n');
        bytes.push_str(&serde_json::to_string(&event(&session, seq)).unwrap());
    }
    bytes.push('\n');
    server_io.write_all(bytes.as_bytes()).await.unwrap();
    let plaintext = options(EncryptionMode::Disabled);
    tokio::time::timeout(WAIT, async {
        let (mut framed, _opened) = handshake_client(client_io, open_new(&session), &plaintext)
            .await
            .unwrap();
        for seq in 1..=2 {
            let received = framed.next().await.unwrap().unwrap().unwrap();
            assert_eq!(received.message, event(&session, seq));
        }
    })
    .await
    .expect("the pipelined events without more bytes");
}

//! `EncryptedCodec` stacked on `NdjsonCodec`: a full handshake, then events through
//! `Framed`, and bad lines reported as items with their line numbers.

use bytes::BytesMut;
use enclave_crypto::{
    accept_client_hello, ClientCodec, ClientEncryption, ClientHandshake, EncryptedCodec, Error,
    Opened, Opener, Sealer, ServerCodec, ServerEncryption, WriteError,
};
use enclave_ndjson::NdjsonCodec;
use enclave_testkit::events::stdout;
use enclave_types::{
    CancelPayload, EncryptionMode, EventPayload, Frame, MessageFrame, RuntimeChannelMessage,
    RuntimeChannelPayload, SessionId, StreamEvent, ToolProgressPayload,
};
use futures::{SinkExt as _, StreamExt as _};
use tokio_util::codec::{Decoder as _, Encoder as _, FramedRead, FramedWrite};

struct Ends {
    client: (Sealer<RuntimeChannelMessage>, Opener<StreamEvent>),
    server: (Sealer<StreamEvent>, Opener<RuntimeChannelMessage>),
}

fn handshake(session_id: &SessionId) -> Ends {
    let client = ClientHandshake::start().unwrap();
    let (server_hello, server_keys) =
        accept_client_hello(client.client_hello(), session_id).unwrap();
    let client_keys = client.finish(&server_hello, session_id).unwrap();
    assert_eq!(client_keys.key_id(), server_hello.key_id);
    Ends {
        client: client_keys.into_ciphers().unwrap(),
        server: server_keys.into_ciphers().unwrap(),
    }
}

fn server_codec(
    (sealer, opener): (Sealer<StreamEvent>, Opener<RuntimeChannelMessage>),
) -> ServerCodec {
    ServerCodec::required(NdjsonCodec::new(), sealer, opener)
}

fn client_codec(
    (sealer, opener): (Sealer<RuntimeChannelMessage>, Opener<StreamEvent>),
) -> ClientCodec {
    ClientCodec::required(NdjsonCodec::new(), sealer, opener)
}

fn plaintext_line(event: &StreamEvent) -> Vec<u8> {
    let mut line = serde_json::to_vec(event).unwrap();
    line.push(b'\n');
    line
}

#[tokio::test]
async fn events_cross_a_framed_pipe_sealed() {
    let session_id = SessionId::generate();
    let ends = handshake(&session_id);
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let mut server_out = FramedWrite::new(server_io, server_codec(ends.server));
    let mut client_in = FramedRead::new(client_io, client_codec(ends.client));

    let big = "ü".repeat(40_000);
    let events: Vec<StreamEvent> = (1..=50)
        .map(|seq| {
            stdout(
                &session_id,
                seq,
                if seq == 25 {
                    &big
                } else {
                    "grüße ✓ 🔐\n"
                },
            )
        })
        .collect();
    let sent = events.clone();
    let writer = tokio::spawn(async move {
        for event in &sent {
            server_out.send(event).await.unwrap();
        }
        server_out.close().await.unwrap();
        server_out
    });
    let mut received = Vec::new();
    while let Some(item) =
        tokio::time::timeout(std::time::Duration::from_secs(10), client_in.next())
            .await
            .expect("the client read timed out")
    {
        let Opened {
            message, encrypted, ..
        } = item.unwrap().unwrap();
        assert!(encrypted);
        received.push(message);
    }
    let server_out = writer.await.unwrap();
    assert_eq!(received, events);
    let layer = client_in.decoder().layer();
    assert_eq!(layer.sealer().unwrap().messages_sealed(), 0);
    assert_eq!(layer.opener().unwrap().last_seq(), Some(50));
    assert_eq!(
        server_out
            .encoder()
            .layer()
            .sealer()
            .unwrap()
            .messages_sealed(),
        50
    );
}

#[test]
fn runtime_messages_cross_client_to_server_sealed() {
    // The client's codec seals runtime channel messages; the server's codec reads them back
    // through its own direction's frame type (`MessageFrame`).
    let session_id = SessionId::generate();
    let ends = handshake(&session_id);
    let mut client = client_codec(ends.client);
    let mut server = server_codec(ends.server);
    let messages: Vec<RuntimeChannelMessage> = (1..=3)
        .map(|seq| {
            let payload: CancelPayload = serde_json::from_value(serde_json::json!({
                "reason": format!("stop {seq}: grüße 🔐"),
            }))
            .unwrap();
            let mut message = RuntimeChannelMessage::new(
                session_id.clone(),
                RuntimeChannelPayload::Cancel(payload),
            );
            message.seq = Some(seq);
            message
        })
        .collect();
    let mut wire = BytesMut::new();
    for message in &messages {
        client.encode(message, &mut wire).unwrap();
    }
    assert!(!wire.windows(5).any(|w| w == b"stop "));
    let replay = wire.clone();
    for message in &messages {
        let opened = server.decode(&mut wire).unwrap().unwrap().unwrap();
        assert!(opened.encrypted);
        assert_eq!(&opened.message, message);
    }
    assert!(server.decode(&mut wire).unwrap().is_none());
    // The whole batch again: every line is a replay, reported with its line number.
    let mut wire = replay;
    for line in 4..=6 {
        let err = server.decode(&mut wire).unwrap().unwrap().unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_NONCE_REUSE", "{err}");
        assert_eq!(err.line(), Some(line), "{err}");
    }
    // Plaintext from the client once keys exist: refused, named by its line.
    let mut plain = serde_json::to_vec(&messages[0].clone().with_seq(9)).unwrap();
    plain.push(b'\n');
    let err = server
        .decode(&mut BytesMut::from(&plain[..]))
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED", "{err}");
    assert_eq!(err.line(), Some(7), "{err}");
    // A message without a seq cannot be sealed; nothing is written for it.
    let mut no_seq = messages[0].clone();
    no_seq.seq = None;
    let mut out = BytesMut::new();
    let err = client.encode(&no_seq, &mut out).unwrap_err();
    let WriteError::Message(err) = err else {
        panic!("expected a message error, got {err:?}");
    };
    assert_eq!(err.code(), "ENCRYPTION_SEAL_FAILED", "{err}");
    assert!(out.is_empty());
}

#[test]
fn bad_lines_are_items_with_line_numbers_and_the_stream_goes_on() {
    let session_id = SessionId::generate();
    let ends = handshake(&session_id);
    let mut server = server_codec(ends.server);
    let mut client = client_codec(ends.client);

    let mut wire = BytesMut::new();
    server
        .encode(&stdout(&session_id, 1, "first"), &mut wire)
        .unwrap();
    // Line 2: plaintext, refused in required mode.
    wire.extend_from_slice(&plaintext_line(&stdout(&session_id, 2, "plain")));
    // Line 3: not JSON.
    wire.extend_from_slice(b"{not json\n");
    // Line 4: a sealed line with one ciphertext character changed.
    let mut tampered = BytesMut::new();
    server
        .encode(&stdout(&session_id, 3, "tampered"), &mut tampered)
        .unwrap();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    wire.extend_from_slice(&tampered);
    // Line 5: blank, skipped but counted.
    wire.extend_from_slice(b"\n");
    // Line 6: the first line again, a replay.
    let first_line_end = wire.iter().position(|b| *b == b'\n').unwrap() + 1;
    let first_line = wire[..first_line_end].to_vec();
    wire.extend_from_slice(&first_line);
    // Line 7: a good one.
    server
        .encode(&stdout(&session_id, 4, "last"), &mut wire)
        .unwrap();

    let mut items = Vec::new();
    while let Some(item) = client.decode_eof(&mut wire).unwrap() {
        items.push(item);
    }
    assert_eq!(items.len(), 6);
    assert_eq!(
        items[0].as_ref().unwrap().message,
        stdout(&session_id, 1, "first")
    );
    let expect_err = |i: usize, line: u64, code: &str| {
        let err = items[i].as_ref().unwrap_err();
        assert_eq!(err.line(), Some(line), "{err}");
        assert_eq!(err.code(), code, "{err}");
        assert!(err.to_string().contains(&format!("line {line}")), "{err}");
    };
    expect_err(1, 2, "ENCRYPTION_DECRYPTION_FAILED");
    let err = items[1].as_ref().unwrap_err();
    assert!(matches!(err, Error::PlaintextRefused { .. }), "{err}");
    assert!(err.to_string().contains("plaintext"));
    expect_err(2, 3, "FRAME_ERROR");
    expect_err(3, 4, "ENCRYPTION_DECRYPTION_FAILED");
    expect_err(4, 6, "ENCRYPTION_NONCE_REUSE");
    let err = items[4].as_ref().unwrap_err();
    assert!(matches!(err, Error::Replay { .. }), "{err}");
    let at = err.location().unwrap();
    assert_eq!(
        (at.line, at.session.as_deref(), at.seq),
        (Some(6), Some(session_id.as_str()), Some(1))
    );
    assert_eq!(
        items[5].as_ref().unwrap().message,
        stdout(&session_id, 4, "last")
    );
}

#[test]
fn optional_mode_carries_plaintext_until_keys_exist_and_refuses_it_after() {
    // Before: with keys installed, optional mode accepted plaintext beside envelopes. Now
    // optional means plaintext only until the handshake finishes; with keys, every mode
    // refuses plaintext, so nobody can slip a message around the encryption.
    let session_id = SessionId::generate();
    let ends = handshake(&session_id);
    let mut server = EncryptedCodec::new(
        NdjsonCodec::<MessageFrame, StreamEvent>::new(),
        ServerEncryption::new(EncryptionMode::Optional),
    );
    let mut client = EncryptedCodec::new(
        NdjsonCodec::<Frame, RuntimeChannelMessage>::new(),
        ClientEncryption::new(EncryptionMode::Optional),
    );
    assert!(!server.layer().is_encrypted());

    // No keys: plaintext both ways, marked as such.
    let mut wire = BytesMut::new();
    server
        .encode(&stdout(&session_id, 1, "before"), &mut wire)
        .unwrap();
    assert_eq!(&wire[..], plaintext_line(&stdout(&session_id, 1, "before")));
    let first = client.decode(&mut wire).unwrap().unwrap().unwrap();
    assert!(!first.encrypted);
    assert_eq!(first.message, stdout(&session_id, 1, "before"));

    // Keys installed: sealed lines open, plaintext is refused.
    let (sealer, opener) = ends.server;
    server.layer_mut().set_ciphers(sealer, opener);
    let (sealer, opener) = ends.client;
    client.layer_mut().set_ciphers(sealer, opener);
    assert!(server.layer().is_encrypted() && client.layer().is_encrypted());
    assert_eq!(client.layer().mode(), EncryptionMode::Optional);
    server
        .encode(&stdout(&session_id, 2, "sealed"), &mut wire)
        .unwrap();
    assert!(!wire.windows(6).any(|w| w == b"sealed"));
    wire.extend_from_slice(&plaintext_line(&stdout(&session_id, 3, "plain")));
    let second = client.decode(&mut wire).unwrap().unwrap().unwrap();
    let third = client.decode(&mut wire).unwrap().unwrap();
    assert!(client.decode(&mut wire).unwrap().is_none());
    assert!(second.encrypted);
    assert_eq!(second.message, stdout(&session_id, 2, "sealed"));
    let err = third.unwrap_err();
    assert!(matches!(err, Error::PlaintextRefused { .. }), "{err}");
    assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED");
    assert_eq!(err.line(), Some(3), "{err}");
}

#[test]
fn sealed_lines_are_exactly_what_serde_writes_for_the_envelope() {
    let session_id = SessionId::new("s_quote\"and\\slash").unwrap();
    let ends = handshake(&session_id);
    let mut server = server_codec(ends.server);
    for seq in [0, 1, 9_007_199_254_740_991] {
        let mut line = BytesMut::new();
        server
            .encode(&stdout(&session_id, seq, "x"), &mut line)
            .unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        let frame = Frame::parse_line(&line).unwrap();
        let mut rewritten = serde_json::to_vec(&frame).unwrap();
        rewritten.push(b'\n');
        assert_eq!(
            String::from_utf8_lossy(&line),
            String::from_utf8_lossy(&rewritten)
        );
    }
}

#[test]
fn an_event_that_cannot_be_written_as_json_is_an_encoding_error_and_writes_nothing() {
    let session_id = SessionId::generate();
    let ends = handshake(&session_id);
    let mut server = server_codec(ends.server);
    // JSON has no NaN: the model refuses to write it rather than emit `null`.
    let mut progress: ToolProgressPayload = serde_json::from_value(serde_json::json!({
        "callId": "c_nan",
        "phase": "receiving",
        "elapsedMs": 1.0,
    }))
    .unwrap();
    progress.elapsed_ms = f64::NAN;
    let event = StreamEvent::new(session_id.clone(), 1, EventPayload::ToolProgress(progress));
    let mut wire = BytesMut::new();
    let err = server.encode(&event, &mut wire).unwrap_err();
    let WriteError::Message(err) = err else {
        panic!("expected a message error, got {err:?}");
    };
    assert!(matches!(err, Error::Unencodable { .. }), "{err}");
    assert_eq!(err.code(), "FRAME_ERROR", "{err}");
    assert!(err.to_string().contains("elapsedMs"), "{err}");
    assert_eq!(err.line(), Some(1), "{err}");
    assert!(wire.is_empty(), "nothing of the event reaches the wire");
    assert_eq!(
        server.layer().sealer().unwrap().messages_sealed(),
        0,
        "no nonce is spent"
    );

    // The codec goes on: the next event seals and opens normally.
    let mut client = client_codec(ends.client);
    server
        .encode(&stdout(&session_id, 2, "after"), &mut wire)
        .unwrap();
    let opened = client.decode(&mut wire).unwrap().unwrap().unwrap();
    assert_eq!(opened.message, stdout(&session_id, 2, "after"));
}

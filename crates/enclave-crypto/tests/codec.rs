//! `EncryptedCodec` stacked on `NdjsonCodec<Frame>`: a full handshake, then events through
//! `Framed` both ways, and bad lines reported as items with their line numbers.

use bytes::BytesMut;
use enclave_crypto::{
    accept_client_hello, ClientHandshake, Decrypted, EncryptedCodec, Opener, Role, Sealer,
};
use enclave_ndjson::NdjsonCodec;
use enclave_types::{EventPayload, Frame, SessionId, StdoutPayload, StreamEvent};
use futures::{SinkExt as _, StreamExt as _};
use tokio_util::codec::{Decoder as _, Encoder as _, FramedRead, FramedWrite};

struct Ends {
    client: (Sealer, Opener),
    server: (Sealer, Opener),
}

fn handshake(session_id: &SessionId) -> Ends {
    let client = ClientHandshake::start().unwrap();
    let (server_hello, server_keys) =
        accept_client_hello(client.client_hello(), session_id).unwrap();
    let client_keys = client.finish(&server_hello, session_id).unwrap();
    assert_eq!(client_keys.key_id(), server_hello.key_id);
    Ends {
        client: client_keys.into_ciphers(Role::Client).unwrap(),
        server: server_keys.into_ciphers(Role::Server).unwrap(),
    }
}

fn stdout(session_id: &SessionId, seq: u64, chunk: &str) -> StreamEvent {
    StreamEvent::new(
        session_id.clone(),
        seq,
        EventPayload::Stdout(StdoutPayload::new(chunk)),
    )
}

fn codec((sealer, opener): (Sealer, Opener), required: bool) -> EncryptedCodec<NdjsonCodec<Frame>> {
    if required {
        EncryptedCodec::required(NdjsonCodec::new(), sealer, opener)
    } else {
        EncryptedCodec::optional(NdjsonCodec::new(), sealer, opener)
    }
}

#[tokio::test]
async fn events_cross_a_framed_pipe_sealed_both_ways() {
    let session_id = SessionId::generate();
    let ends = handshake(&session_id);
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let mut server_out = FramedWrite::new(server_io, codec(ends.server, true));
    let mut client_in = FramedRead::new(client_io, codec(ends.client, true));

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
    });
    let mut received = Vec::new();
    while let Some(item) =
        tokio::time::timeout(std::time::Duration::from_secs(10), client_in.next())
            .await
            .expect("the client read timed out")
    {
        let Decrypted { event, encrypted } = item.unwrap().unwrap();
        assert!(encrypted);
        received.push(event);
    }
    writer.await.unwrap();
    assert_eq!(received, events);
    assert_eq!(client_in.decoder().sealer().messages_sealed(), 0);
}

#[test]
fn bad_lines_are_items_with_line_numbers_and_the_stream_goes_on() {
    let session_id = SessionId::generate();
    let ends = handshake(&session_id);
    let mut server = codec(ends.server, true);
    let mut client = codec(ends.client, true);

    let mut wire = BytesMut::new();
    server
        .encode(&stdout(&session_id, 1, "first"), &mut wire)
        .unwrap();
    // Line 2: plaintext, refused in required mode.
    wire.extend_from_slice(
        serde_json::to_string(&stdout(&session_id, 2, "plain"))
            .unwrap()
            .as_bytes(),
    );
    wire.extend_from_slice(b"\n");
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
        items[0].as_ref().unwrap().event,
        stdout(&session_id, 1, "first")
    );
    let expect_err = |i: usize, line: u64, code: &str| {
        let err = items[i].as_ref().unwrap_err();
        assert_eq!(err.line(), Some(line), "{err}");
        assert_eq!(err.code(), code, "{err}");
        assert!(err.to_string().contains(&format!("line {line}")), "{err}");
    };
    expect_err(1, 2, "ENCRYPTION_DECRYPTION_FAILED");
    assert!(items[1]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("plaintext"));
    expect_err(2, 3, "FRAME_ERROR");
    expect_err(3, 4, "ENCRYPTION_DECRYPTION_FAILED");
    expect_err(4, 6, "ENCRYPTION_NONCE_REUSE");
    assert_eq!(
        items[5].as_ref().unwrap().event,
        stdout(&session_id, 4, "last")
    );
}

#[test]
fn optional_mode_tells_plaintext_from_sealed() {
    let session_id = SessionId::generate();
    let ends = handshake(&session_id);
    let mut server = codec(ends.server, false);
    let mut client = codec(ends.client, false);
    let mut wire = BytesMut::new();
    server
        .encode(&stdout(&session_id, 1, "sealed"), &mut wire)
        .unwrap();
    wire.extend_from_slice(
        serde_json::to_string(&stdout(&session_id, 2, "plain"))
            .unwrap()
            .as_bytes(),
    );
    wire.extend_from_slice(b"\n");
    let first = client.decode(&mut wire).unwrap().unwrap().unwrap();
    let second = client.decode(&mut wire).unwrap().unwrap().unwrap();
    assert!(client.decode(&mut wire).unwrap().is_none());
    assert_eq!((first.encrypted, second.encrypted), (true, false));
    assert_eq!(second.event, stdout(&session_id, 2, "plain"));
}

#[test]
fn sealed_lines_are_exactly_what_serde_writes_for_the_envelope() {
    let session_id = SessionId::new("s_quote\"and\\slash").unwrap();
    let ends = handshake(&session_id);
    let mut server = codec(ends.server, true);
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
    use enclave_types::{CallId, ToolProgressPayload, ToolProgressPhase};

    let session_id = SessionId::generate();
    let ends = handshake(&session_id);
    let mut server = codec(ends.server, true);
    // JSON has no NaN: the model refuses to write it rather than emit `null`.
    let event = StreamEvent::new(
        session_id.clone(),
        1,
        EventPayload::ToolProgress(ToolProgressPayload::new(
            CallId::generate(),
            ToolProgressPhase::Receiving,
            f64::NAN,
        )),
    );
    let mut wire = BytesMut::new();
    let err = server.encode(&event, &mut wire).unwrap_err();
    assert_eq!(err.code(), "FRAME_ERROR", "{err}");
    assert!(err.to_string().contains("elapsedMs"), "{err}");
    assert!(wire.is_empty(), "nothing of the event reaches the wire");
    assert_eq!(server.sealer().messages_sealed(), 0, "no nonce is spent");

    // The codec goes on: the next event seals and opens normally.
    let mut client = codec(ends.client, true);
    server
        .encode(&stdout(&session_id, 2, "after"), &mut wire)
        .unwrap();
    let opened = client.decode(&mut wire).unwrap().unwrap().unwrap();
    assert_eq!(opened.event, stdout(&session_id, 2, "after"));
}

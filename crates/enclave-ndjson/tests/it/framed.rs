//! `NdjsonCodec` under tokio-util's `FramedRead` / `FramedWrite`, over an in-memory duplex pipe.

use enclave_ndjson::{Error, NdjsonCodec, WriteError};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{Framed, FramedRead, FramedWrite};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
struct Rec {
    a: u32,
    b: String,
}

#[tokio::test]
async fn framed_round_trip_over_duplex() {
    // A small pipe forces many partial reads and writes.
    let (client, server) = tokio::io::duplex(64);
    let sent: Vec<Rec> = (0..500)
        .map(|a| Rec {
            a,
            b: format!("item {a}: \"quoted\"\nand é中😀"),
        })
        .collect();

    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut sink = FramedWrite::new(client, NdjsonCodec::<Rec>::new());
            for item in &sent {
                sink.feed(item).await?;
            }
            sink.close().await?;
            Ok::<_, WriteError>(())
        })
    };

    let mut stream = FramedRead::new(server, NdjsonCodec::<Rec>::new());
    let mut received = Vec::new();
    while let Some(item) = stream.next().await {
        received.push(item.expect("no I/O error").expect("every line is valid"));
    }
    writer.await.unwrap().unwrap();
    assert_eq!(received, sent);
    assert_eq!(stream.decoder().line_number(), 500);
}

#[tokio::test]
async fn framed_read_keeps_going_after_bad_lines() {
    let (mut client, server) = tokio::io::duplex(16);
    let writer = tokio::spawn(async move {
        let mut input = Vec::new();
        input.extend_from_slice(b"{\"a\":1,\"b\":\"x\"}\r\n");
        input.extend_from_slice(b"not json\n");
        input.extend_from_slice(b"{\"a\":2,\"b\":\"");
        input.extend_from_slice(&[b'y'; 1000]);
        input.extend_from_slice(b"\"}\n\xff\n\n{\"a\":3}\n{\"a\":4,\"b\":\"last, no newline\"}");
        client.write_all(&input).await.unwrap();
        // Dropping the writer is end of input: the last line comes out of decode_eof.
    });
    let mut stream = FramedRead::new(server, NdjsonCodec::<Rec>::with_max_line_length(256));
    let mut lines = Vec::new();
    while let Some(item) = stream.next().await {
        let item = item.expect("bad lines are items, not stream errors");
        lines.push(match item {
            Ok(rec) => format!("ok:{}", rec.a),
            Err(err) => format!("err@{}", err.line().unwrap()),
        });
    }
    writer.await.unwrap();
    assert_eq!(lines, ["ok:1", "err@2", "err@3", "err@4", "err@6", "ok:4"]);
}

#[tokio::test]
async fn serialization_failure_is_an_encoder_error_and_writes_nothing() {
    use std::collections::BTreeMap;
    let (client, server) = tokio::io::duplex(1024);
    let mut sink = FramedWrite::new(client, NdjsonCodec::<BTreeMap<Vec<u8>, u8>>::new());
    let mut bad = BTreeMap::new();
    bad.insert(vec![1], 1);
    let err = sink.send(&bad).await.unwrap_err();
    assert!(
        matches!(err, WriteError::Refused(Error::Serialize(_))),
        "{err:?}"
    );
    sink.send(&BTreeMap::new()).await.unwrap();
    drop(sink);
    let mut stream = FramedRead::new(server, NdjsonCodec::<serde_json::Value>::new());
    let only = stream.next().await.unwrap().unwrap().unwrap();
    assert_eq!(only, serde_json::json!({}));
    assert!(stream.next().await.is_none());
}

/// What a runtime sends: events.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
struct Event {
    seq: u64,
}

/// What a client sends back: runtime messages.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum RuntimeMessage {
    Cancel { reason: String },
}

#[tokio::test]
async fn each_side_reads_one_family_and_writes_the_other() {
    let (client_io, server_io) = tokio::io::duplex(256);
    let mut server = Framed::new(server_io, NdjsonCodec::<RuntimeMessage, Event>::new());
    let mut client = Framed::new(client_io, NdjsonCodec::<Event, RuntimeMessage>::new());

    server.send(&Event { seq: 1 }).await.unwrap();
    assert_eq!(
        client.next().await.unwrap().unwrap().unwrap(),
        Event { seq: 1 }
    );
    let cancel = RuntimeMessage::Cancel {
        reason: "user".into(),
    };
    client.send(&cancel).await.unwrap();
    assert_eq!(server.next().await.unwrap().unwrap().unwrap(), cancel);
    assert_eq!(server.codec().lines_encoded(), 1);
    assert_eq!(server.codec().line_number(), 1);
}

#[tokio::test]
async fn a_line_too_long_to_write_is_refused_by_number_and_the_sink_goes_on() {
    let (client, server) = tokio::io::duplex(1024);
    let mut sink = FramedWrite::new(client, NdjsonCodec::<Rec>::with_max_line_length(32));
    let short = |a| Rec { a, b: "ok".into() };
    sink.send(&short(1)).await.unwrap();
    let long = Rec {
        a: 2,
        b: "x".repeat(40),
    };
    let err = sink.send(&long).await.unwrap_err();
    match &err {
        WriteError::Refused(Error::LineTooLongToWrite {
            line: 2,
            length: 54,
            limit: 32,
        }) => {}
        other => panic!("expected a refusal of line 2, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "line 2: 54 bytes, longer than the limit of 32 bytes; not written"
    );
    sink.send(&short(3)).await.unwrap();
    assert_eq!(sink.encoder().lines_encoded(), 2);
    drop(sink);

    // What reached the wire is exactly the two accepted lines, within the reader's limit.
    let mut stream = FramedRead::new(server, NdjsonCodec::<Rec>::with_max_line_length(32));
    let mut got = Vec::new();
    while let Some(item) = stream.next().await {
        got.push(item.unwrap().unwrap());
    }
    assert_eq!(got, [short(1), short(3)]);
}

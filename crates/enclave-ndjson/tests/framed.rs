//! `NdjsonCodec` under tokio-util's `FramedRead` / `FramedWrite`, over an in-memory duplex pipe.

use enclave_ndjson::{Error, NdjsonCodec};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{FramedRead, FramedWrite};

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
            Ok::<_, Error>(())
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
    assert!(matches!(err, Error::Serialize(_)), "{err:?}");
    sink.send(&BTreeMap::new()).await.unwrap();
    drop(sink);
    let mut stream = FramedRead::new(server, NdjsonCodec::<serde_json::Value>::new());
    let only = stream.next().await.unwrap().unwrap().unwrap();
    assert_eq!(only, serde_json::json!({}));
    assert!(stream.next().await.is_none());
}

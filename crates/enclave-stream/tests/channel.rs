//! `ChannelLink`: the seed's encrypted channel on a byte stream — both faces of receiving,
//! refusals that leave the link going, and frames a peer cannot make us buffer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use enclave_stream::channel::{ChannelError, ChannelLink, MAX_FRAME_LEN};
use enclave_stream::crypto::{create_encrypted_channel, EncryptedChannel, PendingChannel, Role};
use futures::StreamExt as _;
use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt as _, DuplexStream};

/// A server channel and the client channel agreed with it.
fn pair() -> (EncryptedChannel, EncryptedChannel) {
    let server = PendingChannel::new(Role::Server).unwrap();
    let client = create_encrypted_channel(Role::Client, server.public_key()).unwrap();
    let server = server.accept(client.public_key().unwrap()).unwrap();
    (server, client)
}

/// Writes one length-prefixed frame by hand, as a peer (or an attacker) would.
async fn write_frame(io: &mut DuplexStream, frame: &[u8]) {
    let len = u32::try_from(frame.len()).unwrap();
    io.write_all(&len.to_be_bytes()).await.unwrap();
    io.write_all(frame).await.unwrap();
}

#[tokio::test]
async fn messages_flow_both_ways_as_a_stream_and_through_on_message() {
    let (server, client) = pair();
    let (a, b) = tokio::io::duplex(1024);
    let mut server: ChannelLink<_, Value> = ChannelLink::new(server, a);
    let mut client: ChannelLink<_, Value> = ChannelLink::new(client, b);

    let sender = tokio::spawn(async move {
        for n in 0..50 {
            client
                .send(&json!({"n": n, "pad": "x".repeat(n * 10)}))
                .await
                .unwrap();
        }
        let answer = client.next().await.unwrap().unwrap();
        client.close().await.unwrap();
        (client.sent(), answer)
    });
    let mut got = Vec::new();
    while got.len() < 50 {
        got.push(server.recv().await.unwrap().unwrap()["n"].as_u64().unwrap());
    }
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    server.send(&json!({"done": true})).await.unwrap();
    let (sent, answer) = sender.await.unwrap();
    assert_eq!((sent, answer), (50, json!({"done": true})));
    // The client closed: run() ends with nothing more to hand over.
    let seen = Arc::new(Mutex::new(0));
    let count = Arc::clone(&seen);
    server.on_message(move |_| *count.lock().unwrap() += 1);
    assert_eq!(server.run().await.unwrap(), 0);
    assert_eq!(*seen.lock().unwrap(), 0);
    assert!(format!("{server:?}").contains("received: 50"));
}

#[tokio::test]
async fn forged_replayed_and_unexpected_messages_are_refused_and_the_link_goes_on() {
    let (server, mut client) = pair();
    let (a, mut peer) = tokio::io::duplex(64 * 1024);
    let mut server: ChannelLink<_, HashMap<String, u32>> = ChannelLink::new(server, a);

    let good = client.seal_json(&json!({"n": 1})).unwrap();
    let mut forged = good.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    write_frame(&mut peer, &forged).await; // 1: tampered tag
    write_frame(&mut peer, &good).await; // 2: authentic
    write_frame(&mut peer, &good).await; // 3: replayed
    write_frame(&mut peer, b"short").await; // 4: not even a nonce and a tag
    write_frame(
        &mut peer,
        &client.seal_json(&json!(["not", "a", "map"])).unwrap(),
    )
    .await; // 5
    write_frame(&mut peer, &client.seal_json(&json!({"n": 2})).unwrap()).await; // 6
    drop(peer);

    let mut outcomes = Vec::new();
    while let Some(item) = server.next().await {
        outcomes.push(match item {
            Ok(message) => format!("ok {}", message["n"]),
            Err(ChannelError::Message {
                direction,
                number,
                source,
            }) => {
                format!("{direction} {number} {}", source.code())
            }
            Err(other) => panic!("unexpected terminal error: {other}"),
        });
    }
    assert_eq!(
        outcomes,
        [
            "incoming 1 ENCRYPTION_DECRYPTION_FAILED",
            "ok 1",
            "incoming 3 ENCRYPTION_NONCE_REUSE",
            "incoming 4 ENCRYPTION_DECRYPTION_FAILED",
            "incoming 5 ENCRYPTION_DECRYPTION_FAILED",
            "ok 2",
        ]
    );
}

#[tokio::test]
async fn a_frame_over_the_limit_ends_the_link_without_being_buffered() {
    let (server, _client) = pair();
    let (a, mut peer) = tokio::io::duplex(1024);
    let mut server: ChannelLink<_> = ChannelLink::new(server, a);
    let claimed = u32::try_from(MAX_FRAME_LEN + 1).unwrap();
    peer.write_all(&claimed.to_be_bytes()).await.unwrap();
    let err = server.next().await.unwrap().unwrap_err();
    assert!(err.is_terminal(), "{err}");
    assert!(matches!(err, ChannelError::Io(_)));
}

#[tokio::test]
async fn a_message_json_cannot_write_is_refused_and_nothing_is_sent() {
    let (server, client) = pair();
    let (a, b) = tokio::io::duplex(1024);
    let mut server: ChannelLink<_, Value> = ChannelLink::new(server, a);
    let mut client: ChannelLink<_, Value> = ChannelLink::new(client, b);
    let mut bad = HashMap::new();
    bad.insert(vec![1u8], 1); // a map with non-string keys has no JSON form
    let err = client.send(&bad).await.unwrap_err();
    assert!(!err.is_terminal());
    assert!(err.to_string().starts_with("outgoing message 1: "), "{err}");
    assert_eq!(client.sent(), 0);
    client.send(&json!("after")).await.unwrap();
    client.close().await.unwrap();
    assert_eq!(server.next().await.unwrap().unwrap(), json!("after"));
    assert!(server.next().await.is_none());
}

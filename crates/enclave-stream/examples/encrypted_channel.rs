//! The seed README's encrypted channel, over a real TCP connection on loopback: the server
//! shows its public key first, the client answers with its own, then both talk through
//! `ChannelLink`s — the client sends tool calls, the server answers each, and every byte on
//! the socket after the two public keys is sealed.
//!
//! `cargo run -p enclave-stream --example encrypted_channel`

use std::sync::{Arc, Mutex};
use std::time::Duration;

use enclave_stream::prelude::*;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CALLS: u64 = 3;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    tokio::time::timeout(Duration::from_secs(20), run())
        .await
        .map_err(|_| "did not finish within 20 s")?
}

async fn run() -> Result<(), BoxError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    println!("server listening on {addr}");
    let server = tokio::spawn(serve(listener));

    // Client side: read the server's public key, make our channel, send ours back.
    let mut socket = BufReader::new(TcpStream::connect(addr).await?);
    let server_public_key = read_key(&mut socket).await?;
    let channel = create_encrypted_channel(Role::Client, &server_public_key)?;
    let client_public_key = channel
        .public_key()
        .ok_or("the channel made no key")?
        .clone();
    socket
        .write_all(format!("{}\n", client_public_key.to_base64()).as_bytes())
        .await?;
    let mut client: ChannelLink<_, Value> = ChannelLink::new(channel, socket);

    // Send encrypted messages, then close our side: the server's stream ends after them.
    for n in 1..=CALLS {
        client
            .send(&json!({"type": "tool_call", "name": "secretOp", "args": {"n": n}}))
            .await?;
    }
    client.close().await?;
    println!("client sent {} encrypted tool calls", client.sent());

    // Receive the answers through the on_message callback.
    let answers = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&answers);
    client.on_message(move |message| {
        println!("client decrypted: {message}");
        seen.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(message);
    });
    let received = client.run().await?;
    let handled = server.await??;
    println!("server answered {handled} calls; client received {received} answers");
    let answers = answers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let ns: Vec<u64> = answers
        .iter()
        .filter_map(|a| a["result"]["n"].as_u64())
        .collect();
    if handled != CALLS || ns != (1..=CALLS).collect::<Vec<_>>() {
        return Err(format!("expected {CALLS} answers in order, got {ns:?}").into());
    }
    Ok(())
}

/// The server: shows its key, finishes with the client's, answers each call as a stream.
async fn serve(listener: TcpListener) -> Result<u64, BoxError> {
    let (socket, peer) = listener.accept().await?;
    let mut socket = BufReader::new(socket);
    let pending = PendingChannel::new(Role::Server)?;
    socket
        .write_all(format!("{}\n", pending.public_key().to_base64()).as_bytes())
        .await?;
    let client_public_key = read_key(&mut socket).await?;
    let channel = pending.accept(&client_public_key)?;
    println!("server agreed keys with {peer}");
    let mut server: ChannelLink<_, Value> = ChannelLink::new(channel, socket);
    let mut handled = 0;
    while let Some(message) = server.recv().await {
        let message = message?;
        println!("server decrypted: {message}");
        handled += 1;
        let answer = json!({"type": "tool_result", "ok": true, "result": message["args"]});
        server.send(&answer).await?;
    }
    server.close().await?;
    Ok(handled)
}

/// Reads one line holding a base64 public key.
async fn read_key(socket: &mut BufReader<TcpStream>) -> Result<PublicKey, BoxError> {
    // A P-256 public key is 88 base64 characters: a peer gets no more than a few more.
    let mut line = String::new();
    if (&mut *socket).take(128).read_line(&mut line).await? == 0 {
        return Err("the peer closed before sending its public key".into());
    }
    Ok(PublicKey::from_base64(line.trim())?)
}

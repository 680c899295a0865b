//! The EnclaveJS streaming protocol in one crate: the layers of enclave-stream for Rust,
//! re-exported behind one cargo feature each, and the API of the TypeScript
//! `@enclave-vm/stream` README in Rust idiom.
//!
//! | feature | module | layer |
//! |---|---|---|
//! | (always) | [`types`] | the protocol model: events, envelopes, hellos, ids |
//! | `ndjson` | [`ndjson`] | NDJSON framing for any serde type |
//! | `crypto` | [`crypto`], [`channel`] | ECDH P-256, HKDF-SHA256, AES-256-GCM; the seed's channel on a byte stream |
//! | `transport` | [`transport`] | HTTP NDJSON and WebSocket, server and client |
//! | `reconnect` | [`reconnect`] | the session hub, the server builder and the reconnecting client |
//! | `redis` | `redis` | a Redis Streams session store shared by several servers |
//!
//! The default features are all of these but `redis` (which builds a Redis client). Each
//! feature turns on the ones below it; a user who needs one layer alone can depend on that
//! layer's crate instead.
//!
//! This crate adds no protocol logic: besides the re-exports and the [`prelude`], it holds
//! only [`channel::ChannelLink`], which ties the crypto layer's `EncryptedChannel` to a tokio
//! byte stream (the seed's `send` / `onMessage`). It does no I/O of its own, and it does not
//! pick a runtime: bring tokio.
//!
//! # Public API
//!
//! The modules of the table (each a layer's crate, re-exported whole), [`prelude`] (the
//! names an application uses most, from every layer turned on), [`channel`] (`ChannelLink`,
//! `ChannelError`), and at the root the seed README's own names: `create_encrypted_channel`,
//! `encrypt`, `decrypt`, `generate_key_pair`, `derive_shared_secret`, `parse_ndjson`,
//! `stringify_ndjson`, `StreamDecoder`, `StreamEncoder`, `ReconnectingStream`.
//!
//! # The seed README, in Rust
//!
//! Each section of the `@enclave-vm/stream` README, and its counterpart here. Every block is
//! a test that runs (`cargo test -p enclave-stream --doc`).
//!
//! ## Quick Start: `StreamEncoder` and `StreamDecoder`
//!
//! `encoder.encode(message)` appends one line; the decoder takes written chunks and hands out
//! messages through a callback (`decoder.on('message', …)`), an iterator, or a
//! [`Stream`](futures::Stream) over chunks. A line that is not JSON reaches the callback as an
//! error with its line number; decoding goes on.
//!
//! ```
//! use enclave_stream::{StreamDecoder, StreamEncoder};
//! use serde_json::{json, Value};
//!
//! let mut encoder = StreamEncoder::new();
//! encoder.encode(&json!({"type": "tool_call", "name": "getData", "args": {}}))?;
//! let encoded = encoder.take();
//!
//! let mut received = Vec::new();
//! let mut decoder = StreamDecoder::<Value>::new()
//!     .on_message(|message| received.push(message));
//! decoder.write(&encoded);
//! drop(decoder);
//! assert_eq!(received[0].as_ref().expect("JSON")["name"], "getData");
//!
//! // The same bytes as a stream of chunks, cut anywhere.
//! use futures::StreamExt;
//! let chunks = futures::stream::iter(encoded.chunks(5));
//! let messages: Vec<_> = futures::executor::block_on(
//!     StreamDecoder::<Value>::new().decode_stream(chunks).collect::<Vec<_>>(),
//! );
//! assert_eq!(messages.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Encrypted Channels: `createEncryptedChannel`
//!
//! The server shows its public key before it knows the client's ([`crypto::PendingChannel`]);
//! the client makes its channel from the server's key ([`create_encrypted_channel`]) and the
//! server finishes with the client's. A [`channel::ChannelLink`] carries the channel on any
//! tokio byte stream: `send`, and received messages through `on_message` (while `run` drives
//! it) or as a stream.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use enclave_stream::channel::ChannelLink;
//! use enclave_stream::crypto::{PendingChannel, Role};
//! use enclave_stream::create_encrypted_channel;
//! use serde_json::{json, Value};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (server_io, client_io) = tokio::io::duplex(64 * 1024); // any AsyncRead + AsyncWrite
//!
//! // Server side
//! let server_channel = PendingChannel::new(Role::Server)?;
//! // Get server's public key to send to client
//! let server_public_key = server_channel.public_key().clone();
//!
//! // Client side
//! let client_channel = create_encrypted_channel(Role::Client, &server_public_key)?;
//! let client_public_key = client_channel.public_key().expect("generated").clone();
//! let server_channel = server_channel.accept(&client_public_key)?;
//!
//! let decrypted = Arc::new(Mutex::new(Vec::new()));
//! let mut server: ChannelLink<_, Value> = ChannelLink::new(server_channel, server_io);
//! let seen = Arc::clone(&decrypted);
//! server.on_message(move |message| seen.lock().unwrap().push(message));
//! let mut client: ChannelLink<_, Value> = ChannelLink::new(client_channel, client_io);
//!
//! // Send encrypted messages
//! client.send(&json!({"type": "tool_call", "name": "secretOp", "args": {}})).await?;
//! client.close().await?;
//! assert_eq!(server.run().await?, 1); // until the client closes
//! assert_eq!(decrypted.lock().unwrap()[0]["name"], "secretOp");
//! # Ok(())
//! # }
//! ```
//!
//! ## Reconnection: `ReconnectingStream`
//!
//! The builder takes the URL, the session id, the reconnect knobs and both callbacks;
//! `connect().await` makes the first connection, and [`run`](reconnect::ReconnectingStream::run)
//! hands each event to `on_message`, exactly once and in order across reconnects, until
//! `final` (spawn it to run in the background; or pull events with `next()`). The server here
//! is a real one on loopback: the hub behind the transport server.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use enclave_stream::ReconnectingStream;
//! # use enclave_stream::reconnect::{Hub, HubConfig};
//! # use enclave_stream::transport::{Server, ServerConfig};
//! # use enclave_stream::types::{EventType, FinalPayload, StdoutPayload};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // A loopback server whose runtime streams three lines into each session.
//! # let hub = Hub::new(HubConfig::default().with_allow_tokenless_resume(true));
//! # let server = Server::new(Arc::new(hub.clone()), ServerConfig::default());
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let url = format!("ws://{}", listener.local_addr()?);
//! # let serving = tokio::spawn(server.clone().serve(listener, std::future::pending()));
//! # let runtime = hub.clone();
//! # tokio::spawn(async move {
//! #     while let Some(session) = runtime.accept().await {
//! #         for line in ["one\n", "two\n", "three\n"] {
//! #             session.handle.publish(StdoutPayload::new(line)).await?;
//! #         }
//! #         session.handle.finish(FinalPayload::new(true)).await?;
//! #     }
//! #     Ok::<_, enclave_stream::reconnect::Error>(())
//! # });
//! # // The session the seed's `sessionId` names, made by a first client that then leaves.
//! # let mut first = ReconnectingStream::builder(url.as_str()).connect().await?;
//! # let session_id = first.session_id().expect("created").clone();
//! # first.close().await;
//! let messages = Arc::new(Mutex::new(Vec::new()));
//! let handle_message = Arc::clone(&messages);
//!
//! let mut stream = ReconnectingStream::builder(url.as_str()) // "wss://runtime.example.com"
//!     .session_id(session_id)
//!     .max_attempts(5)
//!     .initial_delay(Duration::from_millis(1000))
//!     .max_delay(Duration::from_millis(30_000))
//!     .backoff_multiplier(2.0)
//!     .on_reconnect(|attempt| println!("Reconnecting (attempt {attempt})..."))
//!     .on_message(move |message| handle_message.lock().unwrap().push(message))
//!     .connect()
//!     .await?;
//!
//! let delivered = stream.run().await?; // each event to on_message, until `final`
//! let messages = messages.lock().unwrap();
//! assert_eq!(delivered, 5); // session_init, three stdout lines, final
//! assert_eq!(messages.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
//! assert_eq!(messages[4].event_type(), EventType::Final);
//! # server.shutdown();
//! # hub.shutdown();
//! # serving.await??;
//! # Ok(())
//! # }
//! ```
//!
//! ## NDJSON Utilities: `parseNDJSON` and `stringifyNDJSON`
//!
//! Any serde type, so any JSON message: [`serde_json::Value`] takes them all. Bad lines are
//! collected with their line numbers, not thrown.
//!
//! ```
//! use enclave_stream::{parse_ndjson, stringify_ndjson};
//! use serde_json::{json, Value};
//!
//! // Stringify to NDJSON
//! let ndjson = stringify_ndjson(&[
//!     json!({"type": "start", "sessionId": "123"}),
//!     json!({"type": "tool_call", "name": "getData", "args": {}}),
//!     json!({"type": "end"}),
//! ])?;
//! assert!(ndjson.starts_with("{\"sessionId\":\"123\",\"type\":\"start\"}\n"));
//!
//! // Parse NDJSON string
//! let messages = parse_ndjson::<Value>(&ndjson);
//! assert_eq!(messages.items.len(), 3);
//! assert!(messages.errors.is_empty());
//! assert_eq!(messages.items[0]["sessionId"], "123");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Encryption Details: `generateKeyPair`, `deriveSharedSecret`, `encrypt`, `decrypt`
//!
//! ECDH P-256, then AES-256-GCM with a random nonce per message under a key derived from the
//! secret with HKDF-SHA256. A key pair is consumed by its agreement (one secret per key
//! pair), so each side hands out its public key first. The message format of
//! [`encrypt`] / [`decrypt`] is `enclave-crypto`'s own; the event protocol's `enc` envelopes
//! are the [`crypto`] layer's typed path.
//!
//! ```
//! use enclave_stream::{decrypt, derive_shared_secret, encrypt, generate_key_pair};
//! use serde_json::json;
//!
//! // Generate key pairs
//! let server_keys = generate_key_pair()?;
//! let client_keys = generate_key_pair()?;
//! let (server_public, client_public) =
//!     (server_keys.public_key().clone(), client_keys.public_key().clone());
//!
//! // Derive shared secret
//! let server_secret = derive_shared_secret(server_keys, &client_public)?;
//! let client_secret = derive_shared_secret(client_keys, &server_public)?;
//!
//! // Encrypt/decrypt messages
//! let message = json!({"type": "tool_call", "name": "getData"});
//! let encrypted = encrypt(&server_secret, serde_json::to_string(&message)?.as_bytes())?;
//! let decrypted = decrypt(&client_secret, &encrypted)?;
//! assert_eq!(serde_json::from_slice::<serde_json::Value>(&decrypted)?, message);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
// docs.rs builds on nightly with `--cfg docsrs`: label each item with the features it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "crypto")]
pub mod channel;
pub mod prelude;

/// The protocol model (`enclave-types`): events, envelopes, hellos, runtime messages, ids.
pub use enclave_types as types;

/// NDJSON framing (`enclave-ndjson`).
#[cfg(feature = "ndjson")]
pub use enclave_ndjson as ndjson;

/// End-to-end encryption (`enclave-crypto`).
#[cfg(feature = "crypto")]
pub use enclave_crypto as crypto;

/// HTTP NDJSON and WebSocket carriers, server and client (`enclave-transport`).
#[cfg(feature = "transport")]
pub use enclave_transport as transport;

/// Sessions that outlive connections: the hub and the reconnecting client
/// (`enclave-reconnect`).
#[cfg(feature = "reconnect")]
pub use enclave_reconnect as reconnect;

/// Sessions on Redis Streams, served by any of several servers (`enclave-redis`).
#[cfg(feature = "redis")]
pub use enclave_redis as redis;

// The seed README's names, at the root as `@enclave-vm/stream` exports them.
#[cfg(feature = "crypto")]
pub use enclave_crypto::{
    create_encrypted_channel, decrypt, derive_shared_secret, encrypt, generate_key_pair,
};
#[cfg(feature = "ndjson")]
pub use enclave_ndjson::{parse_ndjson, stringify_ndjson, StreamDecoder, StreamEncoder};
#[cfg(feature = "reconnect")]
pub use enclave_reconnect::ReconnectingStream;

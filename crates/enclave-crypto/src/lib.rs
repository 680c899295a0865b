//! End-to-end encryption for EnclaveJS streams: the ECDH P-256 handshake, HKDF-SHA256 session
//! keys and AES-256-GCM `enc` envelopes, on `ring`, wire compatible with the TypeScript
//! `@enclave-vm/stream` 2.15.2 (browsers and Node peers read the envelopes this writes, and
//! back).
//!
//! The typed path, from handshake to wire:
//!
//! 1. **Handshake** ([`ClientHandshake`], [`accept_client_hello`]): the `ClientHello` /
//!    `ServerHello` exchange, refusing curves, ciphers and KDFs it does not speak. Each side
//!    ends with its own role-typed keys, [`ClientKeys`] or [`ServerKeys`]: HKDF-SHA256 with the
//!    session id as salt, one key per direction (`enclavejs-c2s-enc`, `enclavejs-s2c-enc`).
//! 2. **Ciphers** ([`Sealer`], [`Opener`]): the keys turn, once, into one sealer for what the
//!    side sends and one opener for what it receives, typed by message family — a server
//!    seals [`StreamEvent`](enclave_types::StreamEvent)s and opens
//!    [`RuntimeChannelMessage`](enclave_types::RuntimeChannelMessage)s, a client the other way
//!    round, and neither can build the other's. Both are bound to their session; the opener
//!    refuses any `seq` not after the last one it accepted, and any nonce it has seen.
//! 3. **Layer** ([`EncryptionLayer`]): one connection's rules, whatever the carrier — mode,
//!    seal each outgoing message, open each incoming frame, refuse plaintext once keys exist.
//! 4. **Codec** ([`EncryptedCodec`], [`ServerCodec`], [`ClientCodec`]): the layer as a
//!    tokio-util codec stacked on `enclave_ndjson::NdjsonCodec`, for byte streams.
//!
//! ```
//! use bytes::BytesMut;
//! use enclave_crypto::{accept_client_hello, ClientCodec, ClientHandshake, ServerCodec};
//! use enclave_ndjson::NdjsonCodec;
//! use enclave_types::{SessionId, StdoutPayload, StreamEvent};
//! use tokio_util::codec::{Decoder, Encoder};
//!
//! // The hello exchange: each side ends with its own keys.
//! let session_id = SessionId::generate();
//! let client = ClientHandshake::start()?;
//! let (server_hello, server_keys) = accept_client_hello(client.client_hello(), &session_id)?;
//! let client_keys = client.finish(&server_hello, &session_id)?;
//!
//! // Each side stacks the encryption layer on the NDJSON codec.
//! let (sealer, opener) = server_keys.into_ciphers()?;
//! let mut server = ServerCodec::required(NdjsonCodec::new(), sealer, opener);
//! let (sealer, opener) = client_keys.into_ciphers()?;
//! let mut client = ClientCodec::required(NdjsonCodec::new(), sealer, opener);
//!
//! let event = StreamEvent::new(session_id, 1, StdoutPayload::new("grüße ✓").into());
//! let mut wire = BytesMut::new();
//! server.encode(&event, &mut wire)?;
//! let line = std::str::from_utf8(&wire)?;
//! assert!(line.contains(r#""type":"enc""#) && !line.contains("grüße"));
//!
//! let replayed = wire.clone();
//! let opened = client.decode(&mut wire)?.expect("one line").expect("authentic");
//! assert!(opened.encrypted);
//! assert_eq!(opened.message, event);
//!
//! // A replayed line is refused, and so is any change to a sealed line: each with the
//! // TypeScript implementation's error code and where it happened; the stream goes on.
//! let err = client.decode(&mut replayed.clone())?.expect("one line").unwrap_err();
//! assert_eq!(err.code(), "ENCRYPTION_NONCE_REUSE");
//! assert_eq!(err.line(), Some(2));
//! let mut next = event.clone();
//! next.seq = 2;
//! server.encode(&next, &mut wire)?;
//! let at = wire.len() - 10;
//! wire[at] = if wire[at] == b'A' { b'B' } else { b'A' };
//! let err = client.decode(&mut wire)?.expect("one line").unwrap_err();
//! assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Also here: the key material itself ([`EphemeralKeyPair`], [`PublicKey`],
//! [`SharedSecret`], [`hkdf_sha256`]), the seed README's byte-level API ([`generate_key_pair`],
//! [`derive_shared_secret`], [`derive_key`], [`encrypt`] / [`decrypt`] and
//! [`create_encrypted_channel`] / [`PendingChannel`], whose message format is this crate's own, not the
//! TypeScript implementation's), and [`hazmat`]: raw AES-GCM with caller-chosen nonces and
//! ciphers from raw key bytes, for what the typed path cannot express.
//!
//! Secrets are wiped on drop where this crate holds them (shared secrets, derived key bytes,
//! nonce state, every buffer that held plaintext); ring's expanded AES key schedules and
//! ephemeral private keys are not (see `docs/SECURITY.md`). Nothing secret appears in
//! `Debug` output; errors carry the TypeScript implementation's codes ([`Error::code`]) and
//! say where ([`Location`]).
//!
//! Server identity ([`SigningKey`], [`VerifyingKey`], [`HelloTranscript`]): a long-term ECDSA
//! P-256 key signs each `ServerHello` over a transcript of the whole handshake (both hellos,
//! the mode, the plaintext `session_init`), and a client that pins the public key refuses a
//! missing or wrong signature before any key exists ([`ClientHandshake::finish_verified`]).
//! [`HelloTranscript`] lays the transcript out byte by byte.
//!
//! What this crate does **not** do: without a pinned key it does not authenticate the hellos
//! (the ECDH is then anonymous; see `docs/SECURITY.md`), it does not hide metadata (`sessionId`, `seq`, sizes and
//! timing are visible), it does not split bytes into lines or define the message model (that
//! is `enclave-ndjson` and `enclave-types`), it does no network I/O, and it does not rotate
//! keys, reconnect or resume a session: those belong to the layers above.
//!
//! # Public API
//!
//! - Handshake: [`ClientHandshake`], [`accept_client_hello`], [`ClientKeys`] /
//!   [`ServerKeys`], the seed's functions ([`create_client_hello`], [`process_server_hello`],
//!   …) and the ECDH and HKDF steps ([`generate_key_pair`], [`derive_shared_secret`],
//!   [`hkdf_sha256`], …).
//! - Server identity: [`SigningKey`], [`VerifyingKey`], [`HelloTranscript`],
//!   [`SessionInitDigest`].
//! - Ciphers: [`Sealer`], [`Opener`] ([`Sealable`]); the connection's rules:
//!   [`EncryptionLayer`] ([`ClientEncryption`], [`ServerEncryption`], [`Opened`],
//!   [`Incoming`]) and [`write_json_line`]; codecs: [`EncryptedCodec`], [`ServerCodec`],
//!   [`ClientCodec`], [`LineCodec`].
//! - The seed's channel API: [`create_encrypted_channel`], [`EncryptedChannel`],
//!   [`encrypt`] / [`decrypt`].
//! - [`hazmat`]: the sharp tools (raw keys, nonces), the one place for them.
//! - [`Error`] (with its TypeScript [`ErrorCode`] and [`Location`]) and [`WriteError`].
#![forbid(unsafe_code)]

mod aead;
mod cipher;
mod codec;
mod ecdh;
mod envelope;
mod error;
mod handshake;
pub mod hazmat;
mod identity;
mod kdf;
mod keys;
mod layer;
mod nonce;
mod pem;
mod simple;

pub use aead::{KEY_LEN, TAG_LEN};
pub use cipher::{Opener, Sealable, Sealer, MAX_MESSAGES_PER_KEY};
pub use codec::{ClientCodec, EncryptedCodec, LineCodec, ServerCodec};
pub use ecdh::{
    derive_key, derive_shared_secret, generate_key_pair, EphemeralKeyPair, PublicKey, SharedSecret,
    PUBLIC_KEY_LEN, SHARED_SECRET_LEN,
};
pub use error::{Error, ErrorCode, Location, WriteError};
pub use handshake::{
    accept_client_hello, create_client_hello, create_server_hello, generate_key_id,
    process_client_hello, process_server_hello, ClientHandshake,
};
pub use identity::{
    HelloTranscript, SessionInitDigest, SigningKey, VerifyingKey, SIGNATURE_LEN, SPKI_LEN,
    TRANSCRIPT_DOMAIN,
};
pub use kdf::{hkdf_sha256, HKDF_INFO_CLIENT_TO_SERVER, HKDF_INFO_SERVER_TO_CLIENT};
pub use keys::{ClientKeys, ServerKeys};
pub use layer::{
    write_json_line, ClientEncryption, EncryptionLayer, Incoming, IncomingFrame, Opened,
    ServerEncryption,
};
pub use nonce::NONCE_LEN;
pub use simple::{
    create_encrypted_channel, decrypt, encrypt, EncryptedChannel, PendingChannel, Role,
};

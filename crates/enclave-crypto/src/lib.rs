//! End-to-end encryption for EnclaveJS streams: the ECDH P-256 handshake, HKDF-SHA256 session
//! keys and AES-256-GCM `enc` envelopes, on `ring`, wire compatible with the TypeScript
//! `@enclave-vm/stream` 2.15.2 (browsers and Node peers read what this writes, and back).
//!
//! What this layer owns, bottom up:
//!
//! - **Keys** ([`EphemeralKeyPair`], [`PublicKey`], [`SharedSecret`]): ephemeral P-256 keys;
//!   public keys travel as standard base64 of the 65-byte uncompressed point and are checked
//!   on import (length, `0x04`, on the curve). The shared secret exposes no bytes, only
//!   `derive_*` methods.
//! - **Key schedule** ([`hkdf_sha256`], [`derive_key`], [`SessionKeys`]): HKDF-SHA256 with
//!   the session id as salt and one key per direction (`enclavejs-c2s-enc`,
//!   `enclavejs-s2c-enc`).
//! - **Handshake** ([`ClientHandshake`], [`accept_client_hello`], [`process_client_hello`],
//!   ...): the `ClientHello` / `ServerHello` exchange, refusing curves, ciphers and KDFs it
//!   does not speak.
//! - **Ciphers** ([`SessionKey`], [`Sealer`], [`Opener`]): AES-256-GCM with counter nonces
//!   (8 random bytes + 4-byte counter), at most [`MAX_MESSAGES_PER_KEY`] per key, and
//!   nonce-reuse checks on the opening side.
//! - **Envelopes** ([`Sealer::seal_event`], [`Opener::open_envelope`]): the `enc` line,
//!   bound to its `sessionId` and `seq` so it cannot be moved.
//! - **Codec** ([`EncryptedCodec`]): stacks on `enclave_ndjson::NdjsonCodec<Frame>` so a
//!   `Framed` transport writes envelopes and reads events.
//! - The small API of [`encrypt`] / [`decrypt`] and [`create_encrypted_channel`] for bytes
//!   outside the event protocol.
//!
//! ```
//! use bytes::BytesMut;
//! use enclave_crypto::{accept_client_hello, ClientHandshake, EncryptedCodec, Role};
//! use enclave_ndjson::NdjsonCodec;
//! use enclave_types::{EventPayload, Frame, SessionId, StdoutPayload, StreamEvent};
//! use tokio_util::codec::{Decoder, Encoder};
//!
//! // The hello exchange: each side ends with one key per direction.
//! let session_id = SessionId::generate();
//! let client = ClientHandshake::start()?;
//! let (server_hello, server_keys) = accept_client_hello(client.client_hello(), &session_id)?;
//! let client_keys = client.finish(&server_hello, &session_id)?;
//!
//! // Each side stacks the encryption layer on the NDJSON codec.
//! let (sealer, opener) = server_keys.into_ciphers(Role::Server)?;
//! let mut server = EncryptedCodec::required(NdjsonCodec::<Frame>::new(), sealer, opener);
//! let (sealer, opener) = client_keys.into_ciphers(Role::Client)?;
//! let mut client = EncryptedCodec::required(NdjsonCodec::<Frame>::new(), sealer, opener);
//!
//! let event = StreamEvent::new(
//!     session_id,
//!     1,
//!     EventPayload::Stdout(StdoutPayload::new("grüße ✓")),
//! );
//! let mut wire = BytesMut::new();
//! server.encode(&event, &mut wire)?;
//! let line = std::str::from_utf8(&wire)?;
//! assert!(line.contains(r#""type":"enc""#) && !line.contains("grüße"));
//!
//! let replayed = wire.clone();
//! let opened = client.decode(&mut wire)?.expect("one line").expect("authentic");
//! assert!(opened.encrypted);
//! assert_eq!(opened.event, event);
//!
//! // A replayed line is refused, and so is any change to a sealed line: each with the
//! // TypeScript implementation's error code, and the stream goes on.
//! let err = client.decode(&mut replayed.clone())?.expect("one line").unwrap_err();
//! assert_eq!(err.code(), "ENCRYPTION_NONCE_REUSE");
//! let mut next = event;
//! next.seq = 2;
//! server.encode(&next, &mut wire)?;
//! let at = wire.len() - 10;
//! wire[at] = if wire[at] == b'A' { b'B' } else { b'A' };
//! let err = client.decode(&mut wire)?.expect("one line").unwrap_err();
//! assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Keys, secrets and cipher state are wiped on drop and never appear in `Debug` output;
//! errors carry the TypeScript implementation's codes ([`Error::code`]) and say where.
//!
//! What this crate does **not** do: it does not authenticate the hellos (the ECDH is
//! anonymous; an active man in the middle of the hello exchange is for the application to
//! stop, see `docs/SECURITY.md`), it does not hide metadata (`sessionId`, `seq`, sizes and
//! timing are visible), it does not split bytes into lines or define the event model (that
//! is `enclave-ndjson` and `enclave-types`), it does no network I/O, and it does not rotate
//! keys, reconnect or resume a session: those belong to the layers above.
#![forbid(unsafe_code)]

mod cipher;
mod codec;
mod ecdh;
mod envelope;
mod error;
mod handshake;
mod kdf;
mod replay;
mod simple;

pub use cipher::{Opener, Sealer, SessionKey, KEY_LEN, MAX_MESSAGES_PER_KEY, NONCE_LEN, TAG_LEN};
pub use codec::{Decrypted, EncryptedCodec, LineNumbered};
pub use ecdh::{
    derive_shared_secret, generate_key_pair, EphemeralKeyPair, PublicKey, SharedSecret,
    PUBLIC_KEY_LEN, SHARED_SECRET_LEN,
};
pub use error::{Error, Location};
pub use handshake::{
    accept_client_hello, create_client_hello, create_server_hello, generate_key_id,
    process_client_hello, process_server_hello, ClientHandshake,
};
pub use kdf::{
    derive_key, hkdf_sha256, Role, SessionKeys, HKDF_INFO_CLIENT_TO_SERVER,
    HKDF_INFO_SERVER_TO_CLIENT,
};
pub use simple::{create_encrypted_channel, decrypt, encrypt, EncryptedChannel};

//! Hazardous materials: raw AES-256-GCM with a caller-chosen nonce, and ciphers built from
//! raw key bytes.
//!
//! Everything here lets a caller break the guarantees the rest of the crate keeps: seal two
//! messages under one nonce (which reveals their XOR and lets a forger authenticate
//! anything), or build a second [`Sealer`] under a key that already has one (two counter
//! sequences under one key: a nonce collision away from the same failure). The typed API
//! ([`ClientHandshake`](crate::ClientHandshake), [`ClientKeys`],
//! [`ServerKeys`]) hands out exactly one sealer and one opener per key and
//! direction; use this module only for keys agreed outside the protocol (test vectors, a key
//! given on a command line) and keep one sealer per key yourself.
//!
//! Outside this module there is no way to build keys or ciphers from bytes:
//!
//! ```compile_fail
//! let session = enclave_types::SessionId::generate();
//! let keys = enclave_crypto::ServerKeys::from_bytes(&session, "k_1", &[0; 32], &[0; 32]);
//! ```

use enclave_types::SessionId;

pub use crate::aead::SessionKey;
use crate::cipher::{Opener, Sealable, Sealer};
use crate::ecdh::{SharedSecret, SHARED_SECRET_LEN};
use crate::error::Error;
use crate::keys::{ClientKeys, ServerKeys};

/// A sealer for `M` under a raw key, with a fresh random nonce prefix. It binds itself to
/// the session of the first message it seals and refuses messages of any other.
///
/// Keep one sealer per key: two sealers under one key are two counter sequences whose
/// 8-byte random prefixes must never meet.
pub fn sealer<M: Sealable>(key: SessionKey) -> Result<Sealer<M>, Error> {
    Sealer::new(key, None)
}

/// An opener for `M` under a raw key. With `check_kid`, envelopes must name the key's id;
/// without it any `kid` is accepted (the `kid` is not authenticated, so checking it only
/// catches mistakes, never forgeries). It binds itself to the session of the first envelope
/// that authenticates and refuses envelopes of any other.
pub fn opener<M: Sealable>(key: SessionKey, check_kid: bool) -> Opener<M> {
    Opener::new(key, None, check_kid)
}

/// Session keys for `session_id` from known key bytes (keys agreed elsewhere, test vectors),
/// for the client's side.
pub fn client_keys(
    session_id: &SessionId,
    key_id: &str,
    client_to_server: &[u8],
    server_to_client: &[u8],
) -> Result<ClientKeys, Error> {
    ClientKeys::from_bytes(session_id, key_id, client_to_server, server_to_client)
}

/// Session keys for `session_id` from known key bytes (keys agreed elsewhere, test vectors),
/// for the server's side.
pub fn server_keys(
    session_id: &SessionId,
    key_id: &str,
    client_to_server: &[u8],
    server_to_client: &[u8],
) -> Result<ServerKeys, Error> {
    ServerKeys::from_bytes(session_id, key_id, client_to_server, server_to_client)
}

/// Wraps a known 32-byte ECDH x-coordinate (test vectors, agreements made elsewhere).
///
/// Each [`SharedSecret`] turns into one set of keys; wrapping the same bytes twice gives two,
/// and with them two sealers under one key.
pub fn shared_secret(bytes: [u8; SHARED_SECRET_LEN]) -> SharedSecret {
    SharedSecret::from_bytes(bytes)
}

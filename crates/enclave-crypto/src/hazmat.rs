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

use std::fmt;

use enclave_types::SessionId;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use crate::cipher::{Opener, Sealable, Sealer, KEY_LEN, TAG_LEN};
use crate::ecdh::{SharedSecret, SHARED_SECRET_LEN};
use crate::error::{Error, Location};
use crate::keys::{ClientKeys, ServerKeys};
use crate::nonce::NONCE_LEN;

/// One direction's AES-256-GCM key and the key id it is known by.
///
/// The raw key bytes are not kept: ring holds the expanded key. `Debug` shows only the key id.
pub struct SessionKey {
    kid: String,
    key: LessSafeKey,
}

impl SessionKey {
    /// Imports a 32-byte key under key id `kid`.
    pub fn new(kid: &str, key_bytes: &[u8]) -> Result<Self, Error> {
        if key_bytes.len() != KEY_LEN {
            return Err(Error::KeyDerivationFailed {
                reason: "an AES-256-GCM key is 32 bytes",
            });
        }
        let unbound =
            UnboundKey::new(&AES_256_GCM, key_bytes).map_err(|_| Error::KeyDerivationFailed {
                reason: "ring refused the AES-256-GCM key",
            })?;
        Ok(Self {
            kid: kid.to_owned(),
            key: LessSafeKey::new(unbound),
        })
    }

    /// The key id (`k_<uuid>`) that envelopes sealed with this key carry as `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Seals `buf` in place under `nonce`, appending the 16-byte tag; no AAD.
    ///
    /// The caller must never use a nonce twice under this key.
    pub fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], buf: &mut Vec<u8>) -> Result<(), Error> {
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(*nonce), Aad::empty(), buf)
            .map_err(|_| Error::SealFailed {
                at: Location::NONE,
                reason: "AES-256-GCM refused the message (longer than 64 GiB)".into(),
            })
    }

    /// Opens `ciphertext || tag` in place under `nonce` and returns the plaintext part.
    pub fn open_in_place<'a>(
        &self,
        nonce: &[u8; NONCE_LEN],
        buf: &'a mut [u8],
    ) -> Result<&'a mut [u8], Error> {
        if buf.len() < TAG_LEN {
            return Err(Error::DecryptionFailed {
                at: Location::NONE,
                reason: "ciphertext shorter than the 16-byte tag".into(),
            });
        }
        self.key
            .open_in_place(Nonce::assume_unique_for_key(*nonce), Aad::empty(), buf)
            .map_err(|_| Error::DecryptionFailed {
                at: Location::NONE,
                reason: "authentication failed (wrong key, or tampered nonce, ciphertext or tag)"
                    .into(),
            })
    }

    /// Seals `plaintext` under `nonce` and returns `ciphertext || tag`.
    ///
    /// The caller must never use a nonce twice under this key.
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
        buf.extend_from_slice(plaintext);
        self.seal_in_place(nonce, &mut buf)?;
        Ok(buf)
    }

    /// Opens `ciphertext || tag` under `nonce` and returns the plaintext.
    pub fn open(&self, nonce: &[u8; NONCE_LEN], ciphertext: &[u8]) -> Result<Vec<u8>, Error> {
        let mut buf = ciphertext.to_vec();
        let len = self.open_in_place(nonce, &mut buf)?.len();
        buf.truncate(len);
        Ok(buf)
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

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

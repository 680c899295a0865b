//! Ephemeral P-256 key pairs, public key import/export and the ECDH shared secret.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use enclave_types::SessionId;
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256};
use ring::rand::SystemRandom;
use zeroize::{Zeroize, Zeroizing};

use crate::error::Error;
use crate::kdf;
use crate::keys::{ClientKeys, ServerKeys};

/// Length of an uncompressed P-256 point: `0x04 || x || y`.
pub const PUBLIC_KEY_LEN: usize = 65;
/// Length of the ECDH shared secret (the x-coordinate of the shared point).
pub const SHARED_SECRET_LEN: usize = 32;

/// A peer's P-256 public key, validated on import (uncompressed, on the curve).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; PUBLIC_KEY_LEN],
}

impl PublicKey {
    /// Imports a 65-byte uncompressed point, refusing anything else with
    /// `ENCRYPTION_INVALID_PUBLIC_KEY`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bytes: [u8; PUBLIC_KEY_LEN] =
            bytes.try_into().map_err(|_| Error::InvalidPublicKey {
                reason: "expected a 65-byte uncompressed P-256 point",
            })?;
        if bytes[0] != 0x04 {
            return Err(Error::InvalidPublicKey {
                reason: "expected an uncompressed point (leading byte 0x04)",
            });
        }
        // ring validates a peer point only when agreeing, so a trial agreement with a
        // throwaway key checks the point eagerly (on the curve, coordinates in range).
        let rng = SystemRandom::new();
        let probe = EphemeralPrivateKey::generate(&ECDH_P256, &rng).map_err(|_| {
            Error::RandomnessUnavailable {
                during: "checking a public key",
            }
        })?;
        agreement::agree_ephemeral(probe, &UnparsedPublicKey::new(&ECDH_P256, &bytes), |_| ())
            .map_err(|_| Error::InvalidPublicKey {
                reason: "the point is not on the P-256 curve",
            })?;
        Ok(Self { bytes })
    }

    /// Imports standard base64 (with padding) of the uncompressed point, as hellos carry it.
    pub fn from_base64(encoded: &str) -> Result<Self, Error> {
        // A 65-byte key is 88 base64 characters; refuse long input before decoding it.
        if encoded.len() > 4 * PUBLIC_KEY_LEN.div_ceil(3) {
            return Err(Error::InvalidPublicKey {
                reason: "expected a 65-byte uncompressed P-256 point",
            });
        }
        let decoded = STANDARD
            .decode(encoded)
            .map_err(|_| Error::InvalidPublicKey {
                reason: "not standard base64",
            })?;
        Self::from_bytes(&decoded)
    }

    /// The 65-byte uncompressed point.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.bytes
    }

    /// Standard base64 (with padding) of the uncompressed point.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(&self.to_base64()).finish()
    }
}

/// An ephemeral P-256 key pair: used for exactly one agreement, then gone.
pub struct EphemeralKeyPair {
    private: EphemeralPrivateKey,
    public: PublicKey,
}

impl EphemeralKeyPair {
    /// Generates a fresh key pair from the system's randomness.
    pub fn generate() -> Result<Self, Error> {
        let rng = SystemRandom::new();
        let private = EphemeralPrivateKey::generate(&ECDH_P256, &rng).map_err(|_| {
            Error::RandomnessUnavailable {
                during: "generating an ephemeral P-256 key",
            }
        })?;
        let public = private
            .compute_public_key()
            .map_err(|_| Error::HandshakeFailed {
                reason: "could not compute the ephemeral public key".into(),
            })?;
        let bytes: [u8; PUBLIC_KEY_LEN] =
            public
                .as_ref()
                .try_into()
                .map_err(|_| Error::HandshakeFailed {
                    reason: "ring returned a public key of unexpected length".into(),
                })?;
        Ok(Self {
            private,
            public: PublicKey { bytes },
        })
    }

    /// Our public key, to send to the peer.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Runs ECDH with the peer's key, consuming the private key.
    pub fn agree(self, peer: &PublicKey) -> Result<SharedSecret, Error> {
        agreement::agree_ephemeral(
            self.private,
            &UnparsedPublicKey::new(&ECDH_P256, peer.as_bytes()),
            |x| {
                let mut secret = Zeroizing::new([0u8; SHARED_SECRET_LEN]);
                secret.copy_from_slice(x);
                SharedSecret { bytes: secret }
            },
        )
        .map_err(|_| Error::KeyDerivationFailed {
            reason: "ECDH agreement with the peer's public key failed",
        })
    }
}

impl fmt::Debug for EphemeralKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EphemeralKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// The ECDH shared secret: usable only to derive keys, wiped on drop, never printed.
pub struct SharedSecret {
    bytes: Zeroizing<[u8; SHARED_SECRET_LEN]>,
}

impl SharedSecret {
    /// Wraps a known 32-byte x-coordinate (see [`hazmat::shared_secret`](crate::hazmat::shared_secret)).
    pub(crate) fn from_bytes(mut bytes: [u8; SHARED_SECRET_LEN]) -> Self {
        let secret = Self {
            bytes: Zeroizing::new(bytes),
        };
        bytes.zeroize();
        secret
    }

    /// HKDF-SHA256 of this secret; a missing salt means 32 zero bytes (as the TypeScript
    /// implementation does it).
    pub fn derive_key(
        &self,
        salt: Option<&[u8]>,
        info: &[u8],
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        // Checked before allocating: a huge `len` must be an error, not an abort.
        kdf::check_okm_len(len)?;
        let mut out = Zeroizing::new(vec![0u8; len]);
        kdf::hkdf_sha256(self.bytes.as_ref(), salt, info, &mut out)?;
        Ok(out)
    }

    /// The client's session keys for `session_id`, both named by `key_id`. Consumes the
    /// secret: one agreement, one set of keys, one sealer per direction.
    pub fn into_client_keys(
        self,
        session_id: &SessionId,
        key_id: &str,
    ) -> Result<ClientKeys, Error> {
        ClientKeys::derive(self.bytes.as_ref(), session_id, key_id)
    }

    /// The server's session keys for `session_id`, both named by `key_id`. Consumes the
    /// secret: one agreement, one set of keys, one sealer per direction.
    pub fn into_server_keys(
        self,
        session_id: &SessionId,
        key_id: &str,
    ) -> Result<ServerKeys, Error> {
        ServerKeys::derive(self.bytes.as_ref(), session_id, key_id)
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret { .. }")
    }
}

/// Generates an ephemeral P-256 key pair (the TypeScript `generateKeyPair`).
pub fn generate_key_pair() -> Result<EphemeralKeyPair, Error> {
    EphemeralKeyPair::generate()
}

/// ECDH between our key pair and the peer's public key (the TypeScript `deriveSharedSecret`).
pub fn derive_shared_secret(
    key_pair: EphemeralKeyPair,
    peer: &PublicKey,
) -> Result<SharedSecret, Error> {
    key_pair.agree(peer)
}

/// HKDF-SHA256 of a shared secret (the TypeScript `deriveKey`): a missing salt means 32 zero
/// bytes; the output is wiped on drop.
pub fn derive_key(
    secret: &SharedSecret,
    salt: Option<&[u8]>,
    info: &str,
    len: usize,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    secret.derive_key(salt, info.as_bytes(), len)
}

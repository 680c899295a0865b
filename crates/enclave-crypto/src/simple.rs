//! The small API for callers that do not speak the event protocol: whole messages under a
//! shared secret, and a two-way channel.

use ring::rand::{SecureRandom, SystemRandom};

use crate::cipher::{Opener, Sealer, SessionKey, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::ecdh::{EphemeralKeyPair, PublicKey, SharedSecret};
use crate::error::Error;
use crate::kdf::{Role, SessionKeys, HKDF_INFO_CLIENT_TO_SERVER, HKDF_INFO_SERVER_TO_CLIENT};

/// HKDF `info` for [`encrypt`] / [`decrypt`]; this crate's own, the TypeScript
/// implementation has no counterpart.
const MESSAGE_INFO: &[u8] = b"enclavejs-message-enc";
/// The key id channel keys are known by; channel messages carry no key id.
const CHANNEL_KID: &str = "channel";

fn message_key(secret: &SharedSecret) -> Result<SessionKey, Error> {
    let bytes = secret.derive_key(None, MESSAGE_INFO, KEY_LEN)?;
    SessionKey::new(CHANNEL_KID, &bytes)
}

fn too_short() -> Error {
    Error::DecryptionFailed {
        location: None,
        reason: "message shorter than nonce and tag".into(),
    }
}

fn prepend_nonce(nonce: [u8; NONCE_LEN], sealed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(sealed);
    out
}

/// Encrypts `plaintext` under a key derived from `secret` (HKDF-SHA256, zero salt) with a
/// random nonce; returns `nonce || ciphertext || tag`.
pub fn encrypt(secret: &SharedSecret, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let key = message_key(secret)?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| Error::HandshakeFailed {
            reason: "system randomness unavailable".into(),
        })?;
    Ok(prepend_nonce(nonce, &key.seal(&nonce, plaintext)?))
}

/// Decrypts what [`encrypt`] produced with the same secret.
pub fn decrypt(secret: &SharedSecret, encrypted: &[u8]) -> Result<Vec<u8>, Error> {
    if encrypted.len() < NONCE_LEN + TAG_LEN {
        return Err(too_short());
    }
    let (nonce, sealed) = encrypted.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| too_short())?;
    message_key(secret)?.open(&nonce, sealed)
}

/// A two-way channel over one shared secret: counter nonces outbound, nonce-reuse checks
/// inbound. Messages are `nonce || ciphertext || tag`.
#[derive(Debug)]
pub struct EncryptedChannel {
    public_key: Option<PublicKey>,
    sealer: Sealer,
    opener: Opener,
}

impl EncryptedChannel {
    /// A channel for `role` over an agreed secret; keys are HKDF-SHA256 with a zero salt and
    /// the per-direction `info` strings of the session key schedule.
    pub fn new(role: Role, secret: &SharedSecret) -> Result<Self, Error> {
        let c2s = secret.derive_key(None, HKDF_INFO_CLIENT_TO_SERVER.as_bytes(), KEY_LEN)?;
        let s2c = secret.derive_key(None, HKDF_INFO_SERVER_TO_CLIENT.as_bytes(), KEY_LEN)?;
        let (sealer, opener) =
            SessionKeys::from_bytes(&c2s, &s2c, CHANNEL_KID)?.into_ciphers(role)?;
        Ok(Self {
            public_key: None,
            sealer,
            opener,
        })
    }

    /// Our ephemeral public key, when the channel generated it; the peer needs it to agree.
    pub fn public_key(&self) -> Option<&PublicKey> {
        self.public_key.as_ref()
    }

    /// Seals one message.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let (nonce, sealed) = self.sealer.seal(plaintext)?;
        Ok(prepend_nonce(nonce, &sealed))
    }

    /// Opens one message, refusing a nonce already accepted.
    pub fn open(&mut self, message: &[u8]) -> Result<Vec<u8>, Error> {
        if message.len() < NONCE_LEN + TAG_LEN {
            return Err(too_short());
        }
        let (nonce, sealed) = message.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| too_short())?;
        self.opener.open(&nonce, sealed)
    }
}

/// Generates an ephemeral key pair, agrees with `remote_public_key` and returns a channel
/// for `role`; send [`EncryptedChannel::public_key`] to the peer, which builds its side
/// with [`EncryptedChannel::new`] from its own agreement.
pub fn create_encrypted_channel(
    role: Role,
    remote_public_key: &PublicKey,
) -> Result<EncryptedChannel, Error> {
    let key_pair = EphemeralKeyPair::generate()?;
    let public_key = key_pair.public_key().clone();
    let secret = key_pair.agree(remote_public_key)?;
    let mut channel = EncryptedChannel::new(role, &secret)?;
    channel.public_key = Some(public_key);
    Ok(channel)
}

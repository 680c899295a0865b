//! The small API of the seed README, for bytes outside the event protocol: whole messages
//! under a shared secret ([`encrypt`] / [`decrypt`]), and a two-way channel
//! ([`create_encrypted_channel`], or [`PendingChannel`] for the side that shows its public
//! key before it knows the peer's), carrying bytes ([`EncryptedChannel::seal`]) or any serde
//! message as JSON ([`EncryptedChannel::seal_json`]).
//!
//! The message format here is **this crate's own**: the TypeScript implementation has no
//! counterpart (its `encrypt`/`decrypt` take a raw key and a caller's nonce). A message is
//! `nonce (12 bytes) || ciphertext || tag (16 bytes)`, under a key derived from the secret
//! with HKDF-SHA256 (zero salt; `info` = `enclavejs-message-enc` for [`encrypt`], the two
//! session `info` strings for a channel). Only peers of this crate read it.

use ring::rand::{SecureRandom, SystemRandom};
use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::aead::{KEY_LEN, TAG_LEN};
use crate::cipher::MAX_MESSAGES_PER_KEY;
use crate::ecdh::{EphemeralKeyPair, PublicKey, SharedSecret};
use crate::error::{reason, Error, Location};
use crate::hazmat::SessionKey;
use crate::kdf::{HKDF_INFO_CLIENT_TO_SERVER, HKDF_INFO_SERVER_TO_CLIENT};
use crate::nonce::{CounterNonces, Nonce, NonceGuard, Refusal, NONCE_LEN};

/// HKDF `info` for [`encrypt`] / [`decrypt`].
const MESSAGE_INFO: &[u8] = b"enclavejs-message-enc";
/// The key id channel keys are known by; channel messages carry no key id.
const CHANNEL_KID: &str = "channel";

/// Which end of a channel we are: the client seals with the client→server key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The side that starts the exchange.
    Client,
    /// The side that answers.
    Server,
}

fn key(secret: &SharedSecret, info: &[u8]) -> Result<SessionKey, Error> {
    let bytes = secret.derive_key(None, info, KEY_LEN)?;
    SessionKey::new(CHANNEL_KID, &bytes)
}

fn split(message: &[u8]) -> Result<(Nonce, &[u8]), Error> {
    let too_short = || Error::DecryptionFailed {
        at: Location::NONE,
        reason: "message shorter than nonce and tag".into(),
    };
    if message.len() < NONCE_LEN + TAG_LEN {
        return Err(too_short());
    }
    let (nonce, sealed) = message.split_at(NONCE_LEN);
    Ok((nonce.try_into().map_err(|_| too_short())?, sealed))
}

fn join(nonce: &Nonce, sealed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(sealed);
    out
}

/// Encrypts `plaintext` under a key derived from `secret` with a random nonce; returns
/// `nonce || ciphertext || tag` (this crate's format, see the module docs).
pub fn encrypt(secret: &SharedSecret, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| Error::RandomnessUnavailable {
            during: "choosing a random nonce",
        })?;
    Ok(join(
        &nonce,
        &key(secret, MESSAGE_INFO)?.seal(&nonce, plaintext)?,
    ))
}

/// Decrypts what [`encrypt`] produced with the same secret.
pub fn decrypt(secret: &SharedSecret, encrypted: &[u8]) -> Result<Vec<u8>, Error> {
    let (nonce, sealed) = split(encrypted)?;
    key(secret, MESSAGE_INFO)?.open(&nonce, sealed)
}

/// A two-way channel over one shared secret: counter nonces outbound, replay checks inbound.
/// Messages are `nonce || ciphertext || tag` (this crate's format, see the module docs).
pub struct EncryptedChannel {
    public_key: Option<PublicKey>,
    seal_key: SessionKey,
    nonces: CounterNonces,
    open_key: SessionKey,
    guard: NonceGuard,
}

impl EncryptedChannel {
    /// A channel for `role` over an agreed secret (consumed: one secret, one channel, so two
    /// channels never seal under one key). Keys are HKDF-SHA256 with a zero salt and the
    /// per-direction `info` strings of the session key schedule.
    pub fn new(role: Role, secret: SharedSecret) -> Result<Self, Error> {
        let c2s = key(&secret, HKDF_INFO_CLIENT_TO_SERVER.as_bytes())?;
        let s2c = key(&secret, HKDF_INFO_SERVER_TO_CLIENT.as_bytes())?;
        drop(secret);
        let (seal_key, open_key) = match role {
            Role::Client => (c2s, s2c),
            Role::Server => (s2c, c2s),
        };
        Ok(Self {
            public_key: None,
            seal_key,
            nonces: CounterNonces::new(MAX_MESSAGES_PER_KEY)?,
            open_key,
            guard: NonceGuard::default(),
        })
    }

    /// Our ephemeral public key, when the channel generated it; the peer needs it to agree.
    pub fn public_key(&self) -> Option<&PublicKey> {
        self.public_key.as_ref()
    }

    /// Seals one message.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let nonce = self.nonces.next().ok_or(Error::KeyExpired {
            kid: CHANNEL_KID.to_owned(),
            limit: MAX_MESSAGES_PER_KEY,
        })?;
        Ok(join(&nonce, &self.seal_key.seal(&nonce, plaintext)?))
    }

    /// Opens one message, refusing a nonce already accepted.
    pub fn open(&mut self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let (nonce, sealed) = split(message)?;
        // Authenticate first: only an authentic message can claim a replay.
        // Wiped on drop, so a refused replay leaves no plaintext behind.
        let mut plaintext = Zeroizing::new(self.open_key.open(&nonce, sealed)?);
        self.guard
            .check(&nonce, MAX_MESSAGES_PER_KEY)
            .map_err(|refusal| match refusal {
                Refusal::PastLimit => Error::KeyExpired {
                    kid: CHANNEL_KID.to_owned(),
                    limit: MAX_MESSAGES_PER_KEY,
                },
                Refusal::Seen | Refusal::TooOld => Error::Replay {
                    at: Location::NONE,
                    reason: refusal.reason().into(),
                },
            })?;
        self.guard.record(&nonce);
        Ok(std::mem::take(&mut *plaintext))
    }

    /// Seals one message written as compact JSON. A value serde_json cannot write is
    /// refused with [`Error::Unencodable`] before any nonce is spent.
    pub fn seal_json<T: Serialize + ?Sized>(&mut self, message: &T) -> Result<Vec<u8>, Error> {
        let json =
            Zeroizing::new(
                serde_json::to_vec(message).map_err(|err| Error::Unencodable {
                    at: Location::NONE,
                    reason: reason(&err),
                })?,
            );
        self.seal(&json)
    }

    /// Opens one message and reads it as JSON into `T` (a [`serde_json::Value`] takes any
    /// message). Authentic bytes that are not a `T` fail with [`Error::DecryptionFailed`],
    /// quoting serde_json's complaint, never the plaintext.
    pub fn open_json<T: DeserializeOwned>(&mut self, message: &[u8]) -> Result<T, Error> {
        let plaintext = Zeroizing::new(self.open(message)?);
        serde_json::from_slice(&plaintext).map_err(|err| Error::DecryptionFailed {
            at: Location::NONE,
            reason: format!("the message is not the JSON expected: {}", reason(&err)).into(),
        })
    }
}

/// The first half of a channel: our ephemeral key pair, made before the peer's public key is
/// known — the seed's server, which hands out its public key first.
///
/// ```
/// use enclave_crypto::{create_encrypted_channel, PendingChannel, Role};
///
/// let server = PendingChannel::new(Role::Server)?;
/// let mut client = create_encrypted_channel(Role::Client, server.public_key())?;
/// let client_public_key = client.public_key().expect("generated").clone();
/// let mut server = server.accept(&client_public_key)?;
///
/// let sealed = client.seal_json(&serde_json::json!({"type": "tool_call", "name": "secretOp"}))?;
/// let message: serde_json::Value = server.open_json(&sealed)?;
/// assert_eq!(message["name"], "secretOp");
/// # Ok::<(), enclave_crypto::Error>(())
/// ```
pub struct PendingChannel {
    role: Role,
    key_pair: EphemeralKeyPair,
}

impl PendingChannel {
    /// Generates the ephemeral key pair of a channel end playing `role`.
    pub fn new(role: Role) -> Result<Self, Error> {
        Ok(Self {
            role,
            key_pair: EphemeralKeyPair::generate()?,
        })
    }

    /// Our public key, for the peer.
    pub fn public_key(&self) -> &PublicKey {
        self.key_pair.public_key()
    }

    /// The role this end will play.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Agrees with the peer's public key and returns the channel, which keeps reporting our
    /// public key. The key pair is consumed: one agreement per key pair.
    pub fn accept(self, remote_public_key: &PublicKey) -> Result<EncryptedChannel, Error> {
        let public_key = self.key_pair.public_key().clone();
        let mut channel =
            EncryptedChannel::new(self.role, self.key_pair.agree(remote_public_key)?)?;
        channel.public_key = Some(public_key);
        Ok(channel)
    }
}

impl std::fmt::Debug for PendingChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingChannel")
            .field("role", &self.role)
            .field("public_key", self.key_pair.public_key())
            .finish_non_exhaustive()
    }
}

/// Generates an ephemeral key pair, agrees with `remote_public_key` and returns a channel
/// for `role`; send [`EncryptedChannel::public_key`] to the peer, which builds its side
/// with [`EncryptedChannel::new`] from its own agreement.
pub fn create_encrypted_channel(
    role: Role,
    remote_public_key: &PublicKey,
) -> Result<EncryptedChannel, Error> {
    PendingChannel::new(role)?.accept(remote_public_key)
}

impl std::fmt::Debug for EncryptedChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedChannel")
            .field("public_key", &self.public_key)
            .field("messages_sealed", &self.nonces.used())
            .finish_non_exhaustive()
    }
}

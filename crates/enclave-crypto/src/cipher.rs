//! AES-256-GCM: the session key, and the per-direction sealer (counter nonces) and opener
//! (nonce-reuse checks).

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroize;

use crate::error::Error;
use crate::replay::{NonceGuard, Refusal};

/// AES-256 key length in bytes.
pub const KEY_LEN: usize = 32;
/// AES-GCM nonce length in bytes.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length in bytes.
pub const TAG_LEN: usize = 16;
/// Messages one key may seal before a new handshake is needed (2^30, far below GCM's 2^32
/// bound for random-prefix nonces).
pub const MAX_MESSAGES_PER_KEY: u64 = 1 << 30;

/// One direction's AES-256-GCM key and the key id it is known by.
///
/// The raw key bytes are wiped as soon as ring has taken them; `Debug` shows only the key id.
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

    /// Seals `buf` in place with an explicit nonce, appending the 16-byte tag; no AAD.
    pub fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], buf: &mut Vec<u8>) -> Result<(), Error> {
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(*nonce), Aad::empty(), buf)
            .map_err(|_| Error::DecryptionFailed {
                location: None,
                reason: "AES-256-GCM sealing failed (message too long)".into(),
            })
    }

    /// Opens `ciphertext || tag` in place with an explicit nonce and returns the plaintext part.
    pub fn open_in_place<'a>(
        &self,
        nonce: &[u8; NONCE_LEN],
        buf: &'a mut [u8],
    ) -> Result<&'a mut [u8], Error> {
        if buf.len() < TAG_LEN {
            return Err(Error::DecryptionFailed {
                location: None,
                reason: "ciphertext shorter than the 16-byte tag".into(),
            });
        }
        self.key
            .open_in_place(Nonce::assume_unique_for_key(*nonce), Aad::empty(), buf)
            .map_err(|_| Error::DecryptionFailed {
                location: None,
                reason: "authentication failed (wrong key, or tampered nonce, ciphertext or tag)"
                    .into(),
            })
    }

    /// Seals `plaintext` with an explicit nonce and returns `ciphertext || tag`.
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
        buf.extend_from_slice(plaintext);
        self.seal_in_place(nonce, &mut buf)?;
        Ok(buf)
    }

    /// Opens `ciphertext || tag` with an explicit nonce and returns the plaintext.
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

/// Seals one direction of a session: counter nonces of 8 random prefix bytes and a 4-byte
/// big-endian counter, refusing to go past [`MAX_MESSAGES_PER_KEY`] (never wrapping).
pub struct Sealer {
    key: SessionKey,
    prefix: [u8; 8],
    counter: u64,
    /// Reused between messages so the hot path does not allocate.
    pub(crate) buf: Vec<u8>,
}

impl Sealer {
    /// A sealer with a fresh random nonce prefix and the counter at 0.
    pub fn new(key: SessionKey) -> Result<Self, Error> {
        let mut prefix = [0u8; 8];
        SystemRandom::new()
            .fill(&mut prefix)
            .map_err(|_| Error::HandshakeFailed {
                reason: "system randomness unavailable".into(),
            })?;
        Ok(Self {
            key,
            prefix,
            counter: 0,
            buf: Vec::new(),
        })
    }

    /// The key id envelopes from this sealer carry.
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    /// How many messages this key has sealed.
    pub fn messages_sealed(&self) -> u64 {
        self.counter
    }

    /// Takes the next counter nonce, or refuses with `ENCRYPTION_KEY_EXPIRED` at the limit.
    pub fn next_nonce(&mut self) -> Result<[u8; NONCE_LEN], Error> {
        if self.counter >= MAX_MESSAGES_PER_KEY {
            return Err(Error::KeyExpired {
                kid: self.key.kid().to_owned(),
                limit: MAX_MESSAGES_PER_KEY,
            });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&self.prefix);
        // The limit keeps the counter below 2^30, so it always fits the 4 bytes.
        nonce[8..].copy_from_slice(
            &u32::try_from(self.counter)
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        self.counter += 1;
        Ok(nonce)
    }

    /// Seals `plaintext` under the next counter nonce; returns the nonce and `ciphertext || tag`.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<([u8; NONCE_LEN], Vec<u8>), Error> {
        let nonce = self.next_nonce()?;
        Ok((nonce, self.key.seal(&nonce, plaintext)?))
    }

    /// Seals `self.buf` in place under the next counter nonce.
    pub(crate) fn seal_buf(&mut self) -> Result<[u8; NONCE_LEN], Error> {
        let nonce = self.next_nonce()?;
        self.key.seal_in_place(&nonce, &mut self.buf)?;
        Ok(nonce)
    }

    #[cfg(test)]
    pub(crate) fn set_counter_for_test(&mut self, counter: u64) {
        self.counter = counter;
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        self.prefix.zeroize();
        self.counter.zeroize();
        self.buf.zeroize();
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("kid", &self.key.kid())
            .field("messages_sealed", &self.counter)
            .finish_non_exhaustive()
    }
}

/// Opens one direction of a session and refuses nonces it has already accepted (see
/// `docs/SECURITY.md` for exactly what is detected).
pub struct Opener {
    key: SessionKey,
    guard: NonceGuard,
    /// Reused between messages so the hot path does not allocate.
    pub(crate) buf: Vec<u8>,
}

impl Opener {
    /// An opener for messages sealed with `key`.
    pub fn new(key: SessionKey) -> Self {
        Self {
            key,
            guard: NonceGuard::default(),
            buf: Vec::new(),
        }
    }

    /// The key id envelopes to this opener must carry.
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    /// Opens `ciphertext || tag` sealed under `nonce`, refusing a nonce already accepted.
    pub fn open(&mut self, nonce: &[u8; NONCE_LEN], ciphertext: &[u8]) -> Result<Vec<u8>, Error> {
        self.buf.clear();
        self.buf.extend_from_slice(ciphertext);
        let opened = self.open_buf(nonce).map(|len| {
            self.guard.record(nonce);
            self.buf[..len].to_vec()
        });
        // Wiped on failure too: a refused replay has been decrypted in place.
        self.buf.zeroize();
        opened
    }

    /// Refuses a nonce already accepted, or a peer counter past the per-key limit.
    fn check_nonce(&self, nonce: &[u8; NONCE_LEN]) -> Result<(), Error> {
        self.guard
            .check(nonce, MAX_MESSAGES_PER_KEY)
            .map_err(|refusal| match refusal {
                Refusal::PastLimit => Error::KeyExpired {
                    kid: self.key.kid().to_owned(),
                    limit: MAX_MESSAGES_PER_KEY,
                },
                _ => Error::NonceReuse {
                    location: None,
                    nonce_b64: STANDARD.encode(nonce),
                    reason: refusal.reason(),
                },
            })
    }

    /// Records a nonce whose message authenticated and passed the caller's checks.
    pub(crate) fn accept_nonce(&mut self, nonce: &[u8; NONCE_LEN]) {
        self.guard.record(nonce);
    }

    /// Opens `self.buf` in place and checks the nonce; returns the plaintext length at the
    /// front of `buf`. The caller records the nonce once its own checks pass.
    pub(crate) fn open_buf(&mut self, nonce: &[u8; NONCE_LEN]) -> Result<usize, Error> {
        // Authentication comes first, so a forged nonce is reported as a failed decryption:
        // only an authentic envelope can claim a replay or an expired key.
        let len = self.key.open_in_place(nonce, &mut self.buf)?.len();
        self.check_nonce(nonce)?;
        Ok(len)
    }
}

impl Drop for Opener {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("kid", &self.key.kid())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        SessionKey::new("k_test", &[7u8; KEY_LEN]).unwrap()
    }

    #[test]
    fn sealer_refuses_past_the_message_limit_and_never_wraps() {
        let mut sealer = Sealer::new(key()).unwrap();
        sealer.set_counter_for_test(MAX_MESSAGES_PER_KEY - 1);
        let (last, _) = sealer.seal(b"last").unwrap();
        assert_eq!(&last[8..], &((1u32 << 30) - 1).to_be_bytes());
        for _ in 0..3 {
            let err = sealer.seal(b"one too many").unwrap_err();
            assert_eq!(err.code(), "ENCRYPTION_KEY_EXPIRED");
            assert!(err.to_string().contains("k_test"), "{err}");
        }
        assert_eq!(sealer.messages_sealed(), MAX_MESSAGES_PER_KEY);
    }

    #[test]
    fn counter_nonces_share_the_prefix_and_count_up_big_endian() {
        let mut sealer = Sealer::new(key()).unwrap();
        let nonces: Vec<_> = (0..3).map(|_| sealer.next_nonce().unwrap()).collect();
        for (i, nonce) in nonces.iter().enumerate() {
            assert_eq!(nonce[..8], nonces[0][..8]);
            assert_eq!(nonce[8..], u32::try_from(i).unwrap().to_be_bytes());
        }
        // Two sealers under one key must not share a prefix (8 random bytes each).
        let other = Sealer::new(key()).unwrap().next_nonce().unwrap();
        assert_ne!(other[..8], nonces[0][..8]);
    }

    #[test]
    fn opener_refuses_a_replayed_message() {
        let mut sealer = Sealer::new(key()).unwrap();
        let mut opener = Opener::new(key());
        let (nonce, sealed) = sealer.seal(b"once").unwrap();
        assert_eq!(opener.open(&nonce, &sealed).unwrap(), b"once");
        let err = opener.open(&nonce, &sealed).unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_NONCE_REUSE");
        // The refused replay was decrypted in place; its plaintext does not stay behind.
        assert!(opener.buf.is_empty());
    }

    #[test]
    fn opener_refuses_a_peer_counter_past_the_limit_as_expired() {
        let mut sealer = Sealer::new(key()).unwrap();
        let mut opener = Opener::new(key());
        let (first, sealed) = sealer.seal(b"counter 0").unwrap();
        opener.open(&first, &sealed).unwrap();
        let mut past = first;
        past[8..].copy_from_slice(&(1u32 << 30).to_be_bytes());
        let sealed = key().seal(&past, b"too far").unwrap();
        let err = opener.open(&past, &sealed).unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_KEY_EXPIRED", "{err}");
    }

    #[test]
    fn a_forged_nonce_is_a_failed_decryption_not_a_replay_or_an_expired_key() {
        let mut sealer = Sealer::new(key()).unwrap();
        let mut opener = Opener::new(key());
        let (first, sealed_first) = sealer.seal(b"counter 0").unwrap();
        let (second, sealed_second) = sealer.seal(b"counter 1").unwrap();
        opener.open(&first, &sealed_first).unwrap();
        // Counter 1's ciphertext under the (accepted) counter-0 nonce, or under a nonce past
        // the limit: neither authenticates, and that is what must be reported.
        let mut past = first;
        past[8..].copy_from_slice(&(1u32 << 30).to_be_bytes());
        for forged in [first, past] {
            let err = opener.open(&forged, &sealed_second).unwrap_err();
            assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED", "{err}");
        }
        // The genuine replay is still a replay, and counter 1 still opens.
        let err = opener.open(&first, &sealed_first).unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_NONCE_REUSE", "{err}");
        assert_eq!(opener.open(&second, &sealed_second).unwrap(), b"counter 1");
    }

    #[test]
    fn a_failed_open_does_not_burn_the_nonce() {
        let mut sealer = Sealer::new(key()).unwrap();
        let mut opener = Opener::new(key());
        let (nonce, sealed) = sealer.seal(b"genuine").unwrap();
        let mut forged = sealed.clone();
        forged[0] ^= 1;
        assert_eq!(
            opener.open(&nonce, &forged).unwrap_err().code(),
            "ENCRYPTION_DECRYPTION_FAILED"
        );
        assert_eq!(opener.open(&nonce, &sealed).unwrap(), b"genuine");
    }

    #[test]
    fn debug_output_names_the_key_id_only() {
        let key = SessionKey::new("k_visible", &[0xab; KEY_LEN]).unwrap();
        let sealer = Sealer::new(SessionKey::new("k_visible", &[0xab; KEY_LEN]).unwrap()).unwrap();
        let opener = Opener::new(SessionKey::new("k_visible", &[0xab; KEY_LEN]).unwrap());
        for text in [
            format!("{key:?}"),
            format!("{sealer:?}"),
            format!("{opener:?}"),
        ] {
            assert!(text.contains("k_visible"), "{text}");
            assert!(!text.to_lowercase().contains("abab"), "{text}");
            assert!(!text.contains("171"), "{text}");
        }
        assert_eq!(format!("{key:?}"), "SessionKey { kid: \"k_visible\", .. }");
    }
}

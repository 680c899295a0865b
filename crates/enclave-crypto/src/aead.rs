//! AES-256-GCM itself: a direction's key ([`SessionKey`]), its sizes, and the wiped buffer
//! every plaintext passes through. The files above it (ciphers, envelopes, key derivation)
//! all build on this one and it on none of them.

use std::fmt;
use std::io;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use crate::error::{Error, Location};
use crate::nonce::NONCE_LEN;

/// AES-256 key length in bytes.
pub const KEY_LEN: usize = 32;
/// AES-GCM tag length in bytes.
pub const TAG_LEN: usize = 16;

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

/// A reusable buffer that is wiped after every use, so no plaintext outlives the call that
/// handled it.
///
/// Every use writes only by appending, and [`WipeBuf::wipe`] zeroes everything appended since
/// [`WipeBuf::start`] but leaves the length alone, so at rest the last message's bytes are
/// still inside `bytes`, all zero, where a test can check them without reading uninitialised
/// memory (earlier, longer messages were wiped the same way at the end of their own use).
/// Growth goes through [`WipeBuf::reserve`], which wipes the old allocation before freeing it.
/// The cost is one `memset` of the message per use.
#[derive(Default)]
pub(crate) struct WipeBuf {
    bytes: Vec<u8>,
}

impl WipeBuf {
    /// Empties the buffer for a new use.
    pub(crate) fn start(&mut self) -> &mut Vec<u8> {
        self.bytes.clear();
        &mut self.bytes
    }

    /// The bytes written since [`start`](Self::start).
    pub(crate) fn as_mut_vec(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Makes room for `additional` more bytes without leaving a copy behind in freed memory.
    pub(crate) fn reserve(&mut self, additional: usize) {
        if self.bytes.capacity() - self.bytes.len() >= additional {
            return;
        }
        let wanted = (self.bytes.len() + additional).max(self.bytes.capacity() * 2);
        let mut grown = Vec::with_capacity(wanted);
        grown.extend_from_slice(&self.bytes);
        // Beyond its length the old allocation holds only bytes wiped by earlier uses.
        self.bytes.fill(0);
        self.bytes = grown;
    }

    /// Zeroes everything written since [`start`](Self::start); the length stays.
    pub(crate) fn wipe(&mut self) {
        self.bytes.fill(0);
    }

    #[cfg(test)]
    pub(crate) fn resting_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl io::Write for WipeBuf {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_all(data).map(|()| data.len())
    }

    // serde_json writes every token with `write_all`; one call, no retry loop.
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.reserve(data.len());
        self.bytes.extend_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for WipeBuf {
    fn drop(&mut self) {
        self.bytes.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipe_buf_keeps_the_wiped_bytes_in_view_and_grows_without_leaving_copies() {
        use std::io::Write as _;
        let mut buf = WipeBuf::default();
        buf.start();
        buf.write_all(b"secret").unwrap();
        buf.wipe();
        assert_eq!(buf.resting_bytes(), &[0; 6]);
        buf.start();
        buf.write_all(b"ab").unwrap();
        buf.wipe();
        assert_eq!(buf.resting_bytes(), &[0; 2]);
        buf.start();
        buf.write_all(&[9; 4096]).unwrap();
        buf.wipe();
        assert_eq!(buf.resting_bytes().len(), 4096);
        assert!(buf.resting_bytes().iter().all(|&b| b == 0));
    }
}

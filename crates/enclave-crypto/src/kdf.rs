//! HKDF-SHA256 (RFC 5869), the one key derivation function of the protocol.

use ring::hkdf::{KeyType, Salt, HKDF_SHA256};

use crate::error::Error;

/// HKDF `info` for the client→server key.
pub const HKDF_INFO_CLIENT_TO_SERVER: &str = "enclavejs-c2s-enc";
/// HKDF `info` for the server→client key.
pub const HKDF_INFO_SERVER_TO_CLIENT: &str = "enclavejs-s2c-enc";

/// The largest HKDF-SHA256 output (255 blocks of 32 bytes).
const MAX_OKM_LEN: usize = 255 * 32;

/// An output length for ring's HKDF, which wants it as a type.
struct OkmLen(usize);

impl KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 of `ikm` into `out`; a missing salt means 32 zero bytes, as the TypeScript
/// implementation does it.
pub fn hkdf_sha256(
    ikm: &[u8],
    salt: Option<&[u8]>,
    info: &[u8],
    out: &mut [u8],
) -> Result<(), Error> {
    check_okm_len(out.len())?;
    let salt = Salt::new(HKDF_SHA256, salt.unwrap_or(&[0u8; 32]));
    let prk = salt.extract(ikm);
    let info = [info];
    prk.expand(&info, OkmLen(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| Error::KeyDerivationFailed {
            reason: "HKDF-SHA256 expand failed",
        })
}

/// Refuses an HKDF-SHA256 output length past RFC 5869's bound (before anything allocates it).
pub(crate) fn check_okm_len(len: usize) -> Result<(), Error> {
    if len > MAX_OKM_LEN {
        return Err(Error::KeyDerivationFailed {
            reason: "HKDF-SHA256 output is limited to 8160 bytes",
        });
    }
    Ok(())
}

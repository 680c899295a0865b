//! HKDF-SHA256 and the session key schedule (one key per direction).

use std::fmt;

use ring::hkdf::{KeyType, Salt, HKDF_SHA256};
use zeroize::Zeroizing;

use crate::cipher::{Opener, Sealer, SessionKey, KEY_LEN};
use crate::error::Error;

/// HKDF `info` for the client→server key.
pub const HKDF_INFO_CLIENT_TO_SERVER: &str = "enclavejs-c2s-enc";
/// HKDF `info` for the server→client key.
pub const HKDF_INFO_SERVER_TO_CLIENT: &str = "enclavejs-s2c-enc";

/// The largest HKDF-SHA256 output (255 blocks of 32 bytes).
pub(crate) const MAX_OKM_LEN: usize = 255 * 32;

/// An output length for ring's HKDF, which wants it as a type.
struct OkmLen(usize);

impl KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 (RFC 5869) of `ikm` into `out`; a missing salt means 32 zero bytes, as the
/// TypeScript implementation does it.
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

/// Refuses an HKDF-SHA256 output length past RFC 5869's bound.
pub(crate) fn check_okm_len(len: usize) -> Result<(), Error> {
    if len > MAX_OKM_LEN {
        return Err(Error::KeyDerivationFailed {
            reason: "HKDF-SHA256 output is limited to 8160 bytes",
        });
    }
    Ok(())
}

/// Which end of the session we are: the client seals with the client→server key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The side that sends the `ClientHello`.
    Client,
    /// The side that answers with the `ServerHello`.
    Server,
}

/// The two directional AES-256-GCM keys of one session.
pub struct SessionKeys {
    client_to_server: SessionKey,
    server_to_client: SessionKey,
}

impl SessionKeys {
    /// The key schedule: salt = UTF-8 bytes of the session id, one 32-byte key per direction.
    pub(crate) fn derive(ikm: &[u8], session_id: &str, key_id: &str) -> Result<Self, Error> {
        let mut c2s = Zeroizing::new([0u8; KEY_LEN]);
        let mut s2c = Zeroizing::new([0u8; KEY_LEN]);
        let salt = Some(session_id.as_bytes());
        hkdf_sha256(
            ikm,
            salt,
            HKDF_INFO_CLIENT_TO_SERVER.as_bytes(),
            c2s.as_mut(),
        )?;
        hkdf_sha256(
            ikm,
            salt,
            HKDF_INFO_SERVER_TO_CLIENT.as_bytes(),
            s2c.as_mut(),
        )?;
        Self::from_bytes(c2s.as_ref(), s2c.as_ref(), key_id)
    }

    /// Builds the pair from known key bytes (keys agreed elsewhere, test vectors).
    pub fn from_bytes(
        client_to_server: &[u8],
        server_to_client: &[u8],
        key_id: &str,
    ) -> Result<Self, Error> {
        Ok(Self {
            client_to_server: SessionKey::new(key_id, client_to_server)?,
            server_to_client: SessionKey::new(key_id, server_to_client)?,
        })
    }

    /// The key the client seals with and the server opens with.
    pub fn client_to_server(&self) -> &SessionKey {
        &self.client_to_server
    }

    /// The key the server seals with and the client opens with.
    pub fn server_to_client(&self) -> &SessionKey {
        &self.server_to_client
    }

    /// The key id both keys are known by (`k_<uuid>`).
    pub fn key_id(&self) -> &str {
        self.client_to_server.kid()
    }

    /// Splits into the sealer for our direction and the opener for the peer's.
    pub fn into_ciphers(self, role: Role) -> Result<(Sealer, Opener), Error> {
        let (ours, theirs) = match role {
            Role::Client => (self.client_to_server, self.server_to_client),
            Role::Server => (self.server_to_client, self.client_to_server),
        };
        Ok((Sealer::new(ours)?, Opener::new(theirs)))
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("kid", &self.key_id())
            .finish_non_exhaustive()
    }
}

/// HKDF-SHA256 of a shared secret (the TypeScript `deriveKey`): a missing salt means 32 zero
/// bytes; the output is wiped on drop.
pub fn derive_key(
    secret: &crate::ecdh::SharedSecret,
    salt: Option<&[u8]>,
    info: &str,
    len: usize,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    secret.derive_key(salt, info.as_bytes(), len)
}

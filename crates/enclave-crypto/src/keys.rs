//! The session key schedule, and the role-typed keys it hands out: one key per direction,
//! each turned into exactly one sealer or one opener.

use std::fmt;

use enclave_types::{RuntimeChannelMessage, SessionId, StreamEvent};
use zeroize::Zeroizing;

use crate::aead::{SessionKey, KEY_LEN};
use crate::cipher::{Opener, Sealer};
use crate::error::Error;
use crate::kdf::{hkdf_sha256, HKDF_INFO_CLIENT_TO_SERVER, HKDF_INFO_SERVER_TO_CLIENT};

/// The two directional keys of one session, before a side takes them.
struct KeyPair {
    session_id: SessionId,
    client_to_server: SessionKey,
    server_to_client: SessionKey,
}

impl KeyPair {
    /// The key schedule: HKDF-SHA256, salt = UTF-8 bytes of the session id, one 32-byte key
    /// per direction (`info` = `enclavejs-c2s-enc` / `enclavejs-s2c-enc`).
    fn derive(ikm: &[u8], session_id: &SessionId, key_id: &str) -> Result<Self, Error> {
        let mut c2s = Zeroizing::new([0u8; KEY_LEN]);
        let mut s2c = Zeroizing::new([0u8; KEY_LEN]);
        let salt = Some(session_id.as_str().as_bytes());
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
        Self::from_bytes(session_id, key_id, c2s.as_ref(), s2c.as_ref())
    }

    fn from_bytes(
        session_id: &SessionId,
        key_id: &str,
        client_to_server: &[u8],
        server_to_client: &[u8],
    ) -> Result<Self, Error> {
        if key_id.is_empty() {
            return Err(Error::KeyDerivationFailed {
                reason: "a key id must not be empty",
            });
        }
        Ok(Self {
            session_id: session_id.clone(),
            client_to_server: SessionKey::new(key_id, client_to_server)?,
            server_to_client: SessionKey::new(key_id, server_to_client)?,
        })
    }
}

macro_rules! side_keys {
    ($(#[$doc:meta])* $name:ident, seals $sends:ty, opens $receives:ty, ours $ours:ident, theirs $theirs:ident) => {
        $(#[$doc])*
        pub struct $name(KeyPair);

        impl $name {
            pub(crate) fn derive(ikm: &[u8], session_id: &SessionId, key_id: &str) -> Result<Self, Error> {
                KeyPair::derive(ikm, session_id, key_id).map(Self)
            }

            pub(crate) fn from_bytes(
                session_id: &SessionId,
                key_id: &str,
                client_to_server: &[u8],
                server_to_client: &[u8],
            ) -> Result<Self, Error> {
                KeyPair::from_bytes(session_id, key_id, client_to_server, server_to_client).map(Self)
            }

            /// The session the keys were agreed for (the HKDF salt).
            pub fn session_id(&self) -> &SessionId {
                &self.0.session_id
            }

            /// The key id both keys are known by (`k_<uuid>`).
            pub fn key_id(&self) -> &str {
                self.0.client_to_server.kid()
            }

            /// Splits into the one sealer for our direction and the one opener for the
            /// peer's, both bound to the session. Consuming the keys is what keeps a second
            /// sealer from ever sharing a key with the first.
            ///
            /// ```compile_fail
            #[doc = concat!("fn twice(keys: enclave_crypto::", stringify!($name), ") {")]
            ///     let first = keys.into_ciphers();
            ///     let second = keys.into_ciphers(); // use of moved value
            /// }
            /// ```
            pub fn into_ciphers(self) -> Result<(Sealer<$sends>, Opener<$receives>), Error> {
                let KeyPair { session_id, $ours: ours, $theirs: theirs } = self.0;
                let sealer = Sealer::new(ours, Some(session_id.clone()))?;
                Ok((sealer, Opener::new(theirs, Some(session_id), true)))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("session", &self.0.session_id.as_str())
                    .field("kid", &self.key_id())
                    .finish_non_exhaustive()
            }
        }
    };
}

side_keys!(
    /// The client's keys of one session: it seals [`RuntimeChannelMessage`]s with the
    /// client→server key and opens [`StreamEvent`]s with the server→client key.
    ClientKeys,
    seals RuntimeChannelMessage,
    opens StreamEvent,
    ours client_to_server,
    theirs server_to_client
);

side_keys!(
    /// The server's keys of one session: it seals [`StreamEvent`]s with the server→client
    /// key and opens [`RuntimeChannelMessage`]s with the client→server key.
    ServerKeys,
    seals StreamEvent,
    opens RuntimeChannelMessage,
    ours server_to_client,
    theirs client_to_server
);

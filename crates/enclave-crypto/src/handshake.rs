//! The hello exchange, written and read exactly as the TypeScript implementation does.

use enclave_types::{
    ClientHello, EncryptionMode, ServerHello, SessionId, ALGORITHM_AES_GCM_256, CURVE_P256,
    KDF_HKDF_SHA256,
};

use crate::ecdh::{EphemeralKeyPair, PublicKey};
use crate::error::{quote, Error};
use crate::identity::{HelloTranscript, SessionInitDigest, VerifyingKey};
use crate::keys::{ClientKeys, ServerKeys};

/// A fresh key id, `k_<uuid v4>`, as the TypeScript server names session keys.
pub fn generate_key_id() -> String {
    format!("k_{}", uuid::Uuid::new_v4())
}

/// The `ClientHello` for our key pair (the TypeScript `createClientHello`).
pub fn create_client_hello(key_pair: &EphemeralKeyPair) -> ClientHello {
    ClientHello::new(key_pair.public_key().to_base64())
}

/// The `ServerHello` for our key pair and the key id (the TypeScript `createServerHello`).
pub fn create_server_hello(key_pair: &EphemeralKeyPair, key_id: &str) -> ServerHello {
    ServerHello::new(key_pair.public_key().to_base64(), key_id.to_owned())
}

fn check_curve(curve: &str) -> Result<(), Error> {
    if curve == CURVE_P256 {
        Ok(())
    } else {
        Err(Error::UnsupportedAlgorithm {
            field: "curve",
            value: quote(curve),
            supported: CURVE_P256,
        })
    }
}

/// Checks a client's offer and imports its public key. Refuses another curve, an offer
/// without AES-GCM-256, or a bad key.
pub fn process_client_hello(hello: &ClientHello) -> Result<PublicKey, Error> {
    check_curve(&hello.curve)?;
    if !hello
        .supported_algorithms
        .iter()
        .any(|a| a == ALGORITHM_AES_GCM_256)
    {
        return Err(Error::UnsupportedAlgorithm {
            field: "supportedAlgorithms",
            value: quote(&hello.supported_algorithms.join(",")),
            supported: ALGORITHM_AES_GCM_256,
        });
    }
    PublicKey::from_base64(&hello.client_ephemeral_pub_key_b64)
}

/// Checks a server's choice and imports its public key. Refuses another curve, cipher or
/// KDF, an empty key id, or a bad key.
pub fn process_server_hello(hello: &ServerHello) -> Result<PublicKey, Error> {
    check_curve(&hello.curve)?;
    if hello.selected_algorithm != ALGORITHM_AES_GCM_256 {
        return Err(Error::UnsupportedAlgorithm {
            field: "selectedAlgorithm",
            value: quote(&hello.selected_algorithm),
            supported: ALGORITHM_AES_GCM_256,
        });
    }
    if hello.kdf != KDF_HKDF_SHA256 {
        return Err(Error::UnsupportedAlgorithm {
            field: "kdf",
            value: quote(&hello.kdf),
            supported: KDF_HKDF_SHA256,
        });
    }
    if hello.key_id.is_empty() {
        return Err(Error::HandshakeFailed {
            reason: "the ServerHello has an empty keyId".into(),
        });
    }
    PublicKey::from_base64(&hello.server_ephemeral_pub_key_b64)
}

/// The client's side of the handshake: holds the ephemeral key until the `ServerHello`.
#[derive(Debug)]
pub struct ClientHandshake {
    key_pair: EphemeralKeyPair,
    hello: ClientHello,
}

impl ClientHandshake {
    /// Generates an ephemeral key pair and the `ClientHello` to send.
    pub fn start() -> Result<Self, Error> {
        let key_pair = EphemeralKeyPair::generate()?;
        let hello = create_client_hello(&key_pair);
        Ok(Self { key_pair, hello })
    }

    /// The hello to send to the server.
    pub fn client_hello(&self) -> &ClientHello {
        &self.hello
    }

    /// The transcript inputs of this handshake for verifying a signed `ServerHello`: the
    /// hello this client sent (never one echoed back), with the session, the mode the client
    /// asked for and the `session_init` digest.
    pub fn transcript<'a>(
        &'a self,
        session_id: &'a SessionId,
        mode: EncryptionMode,
        session_init: SessionInitDigest,
    ) -> HelloTranscript<'a> {
        HelloTranscript::new(session_id, &self.hello, mode, session_init)
    }

    /// Verifies the server's signed answer against `pinned` (see
    /// [`VerifyingKey::verify_server_hello`]), then derives the session keys: no key exists
    /// unless the signature holds.
    pub fn finish_verified(
        self,
        hello: &ServerHello,
        session_id: &SessionId,
        mode: EncryptionMode,
        session_init: SessionInitDigest,
        pinned: &VerifyingKey,
    ) -> Result<ClientKeys, Error> {
        pinned.verify_server_hello(hello, &self.transcript(session_id, mode, session_init))?;
        self.finish(hello, session_id)
    }

    /// Reads the server's answer and derives the session keys for `session_id`.
    pub fn finish(self, hello: &ServerHello, session_id: &SessionId) -> Result<ClientKeys, Error> {
        let server_key = process_server_hello(hello)?;
        self.key_pair
            .agree(&server_key)?
            .into_client_keys(session_id, &hello.key_id)
    }
}

/// The server's side of the handshake in one step: checks the `ClientHello`, answers with a
/// `ServerHello` naming a fresh key id, and derives the session keys for `session_id`.
pub fn accept_client_hello(
    hello: &ClientHello,
    session_id: &SessionId,
) -> Result<(ServerHello, ServerKeys), Error> {
    let client_key = process_client_hello(hello)?;
    let key_pair = EphemeralKeyPair::generate()?;
    let key_id = generate_key_id();
    let server_hello = create_server_hello(&key_pair, &key_id);
    let keys = key_pair
        .agree(&client_key)?
        .into_server_keys(session_id, &key_id)?;
    Ok((server_hello, keys))
}

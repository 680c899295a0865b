//! Handshake messages and the encryption settings a client asks for.
//!
//! Curve, algorithm and KDF stay strings here: refusing an unknown one, with its own error
//! code, is the crypto layer's decision.

use serde::{Deserialize, Deserializer, Serialize};

use crate::message::Tag;

use crate::named;
use crate::number::{ProtocolVersion, PROTOCOL_VERSION};
use crate::optional;

/// The only curve: NIST P-256.
pub const CURVE_P256: &str = "P-256";
/// The only cipher: AES-256-GCM.
pub const ALGORITHM_AES_GCM_256: &str = "AES-GCM-256";
/// The only key derivation: HKDF with SHA-256.
pub const KDF_HKDF_SHA256: &str = "HKDF-SHA-256";

/// The client's half of the key agreement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClientHello {
    /// Protocol version of the client.
    pub protocol_version: ProtocolVersion,
    /// Ephemeral public key: standard base64 of the 65-byte uncompressed P-256 point.
    #[serde(deserialize_with = "named::client_ephemeral_pub_key_b64")]
    pub client_ephemeral_pub_key_b64: String,
    /// Curve name (`P-256`).
    #[serde(deserialize_with = "named::curve")]
    pub curve: String,
    /// Ciphers the client accepts (`AES-GCM-256`).
    #[serde(deserialize_with = "named::supported_algorithms")]
    pub supported_algorithms: Vec<String>,
}

impl ClientHello {
    /// A hello of the current protocol version offering P-256 and AES-GCM-256.
    pub fn new(client_ephemeral_pub_key_b64: String) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            client_ephemeral_pub_key_b64,
            curve: CURVE_P256.to_owned(),
            supported_algorithms: vec![ALGORITHM_AES_GCM_256.to_owned()],
        }
    }
}

/// The server's half of the key agreement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ServerHello {
    /// Protocol version of the server.
    pub protocol_version: ProtocolVersion,
    /// Ephemeral public key: standard base64 of the 65-byte uncompressed P-256 point.
    #[serde(deserialize_with = "named::server_ephemeral_pub_key_b64")]
    pub server_ephemeral_pub_key_b64: String,
    /// Curve name (`P-256`).
    #[serde(deserialize_with = "named::curve")]
    pub curve: String,
    /// The chosen cipher (`AES-GCM-256`).
    #[serde(deserialize_with = "named::selected_algorithm")]
    pub selected_algorithm: String,
    /// The key derivation (`HKDF-SHA-256`).
    #[serde(deserialize_with = "named::kdf")]
    pub kdf: String,
    /// Id of the derived session key; envelopes carry it as `kid`.
    #[serde(deserialize_with = "named::key_id")]
    pub key_id: String,
    /// An optional signature over the hello.
    #[serde(
        default,
        deserialize_with = "optional::signature_b64",
        skip_serializing_if = "Option::is_none"
    )]
    pub signature_b64: Option<String>,
}

impl ServerHello {
    /// A hello of the current protocol version selecting P-256, AES-GCM-256 and HKDF-SHA-256,
    /// without a signature.
    pub fn new(server_ephemeral_pub_key_b64: String, key_id: String) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            server_ephemeral_pub_key_b64,
            curve: CURVE_P256.to_owned(),
            selected_algorithm: ALGORITHM_AES_GCM_256.to_owned(),
            kdf: KDF_HKDF_SHA256.to_owned(),
            key_id,
            signature_b64: None,
        }
    }
}

/// Whether a session encrypts its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EncryptionMode {
    /// `disabled`: plaintext only.
    #[default]
    Disabled,
    /// `optional`: encrypt when the client offers a hello.
    Optional,
    /// `required`: refuse sessions without encryption.
    Required,
}

impl<'de> Deserialize<'de> for EncryptionMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Tag {
            expecting: "a string",
            name: "value",
            expected: "disabled, optional or required",
            parse: |v| match v {
                "disabled" => Some(Self::Disabled),
                "optional" => Some(Self::Optional),
                "required" => Some(Self::Required),
                _ => None,
            },
        }
        .read(d)
    }
}

/// The encryption part of a session request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct EncryptionRequest {
    /// What the client wants.
    #[serde(deserialize_with = "named::mode")]
    pub mode: EncryptionMode,
    /// The client's hello, when it wants encryption.
    #[serde(
        default,
        deserialize_with = "optional::client_hello",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_hello: Option<ClientHello>,
}

impl EncryptionRequest {
    /// A request for `mode`, with the client's hello when it wants encryption.
    pub fn new(mode: EncryptionMode, client_hello: Option<ClientHello>) -> Self {
        Self { mode, client_hello }
    }
}

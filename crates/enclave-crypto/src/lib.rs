//! enclave-crypto (being written).
#![forbid(unsafe_code)]

mod cipher;
mod ecdh;
mod error;
mod kdf;
mod replay;

pub use cipher::{Opener, Sealer, SessionKey, KEY_LEN, MAX_MESSAGES_PER_KEY, NONCE_LEN, TAG_LEN};
pub use ecdh::{
    derive_shared_secret, generate_key_pair, EphemeralKeyPair, PublicKey, SharedSecret,
    PUBLIC_KEY_LEN, SHARED_SECRET_LEN,
};
pub use error::{Error, Location};
pub use kdf::{
    derive_key, hkdf_sha256, Role, SessionKeys, HKDF_INFO_CLIENT_TO_SERVER,
    HKDF_INFO_SERVER_TO_CLIENT,
};

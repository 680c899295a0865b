//! Resume tokens: 256 random bits, base64url; the store sees only their SHA-256.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};

use crate::store::TokenHash;
use crate::Error;

/// A new token and its hash.
pub(crate) fn issue(rng: &SystemRandom) -> Result<(String, TokenHash), Error> {
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes)
        .map_err(|_| Error::Store("the system random generator failed".into()))?;
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = TokenHash::of(&token);
    Ok((token, hash))
}

/// A random epoch below 2^53.
pub(crate) fn epoch(rng: &SystemRandom) -> u64 {
    let mut bytes = [0u8; 8];
    // A failing system generator leaves epoch 1: sessions still work, restarts are less
    // likely to be told apart, and creating a session fails loudly anyway.
    if rng.fill(&mut bytes).is_err() {
        return 1;
    }
    (u64::from_le_bytes(bytes) & ((1 << 53) - 1)).max(1)
}

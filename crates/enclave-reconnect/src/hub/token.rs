//! Resume tokens: 256 random bits, base64url; the store sees only their SHA-256.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};

use crate::store::{TokenHash, TokenSalt};
use crate::Error;

/// A new token and its hash.
pub(crate) fn issue(rng: &SystemRandom) -> Result<(String, TokenHash), Error> {
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes)
        .map_err(|_| Error::store("resume token", None, "the system random generator failed"))?;
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = TokenHash::of(&token);
    Ok((token, hash))
}

/// Fresh random salt for a token's successor.
pub(crate) fn salt(rng: &SystemRandom) -> Result<TokenSalt, Error> {
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes)
        .map_err(|_| Error::store("resume token", None, "the system random generator failed"))?;
    Ok(TokenSalt(bytes))
}

/// The successor of `token` under `salt`, and its hash: SHA-256 over a domain label, the
/// salt and the token, base64url like any token. Deterministic, so a resume that presents
/// `token` again gets the same successor; unguessable without `token` itself.
pub(crate) fn successor(salt: &TokenSalt, token: &str) -> (String, TokenHash) {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"enclave-stream resume token successor v1\0");
    context.update(&salt.0);
    context.update(token.as_bytes());
    let token = URL_SAFE_NO_PAD.encode(context.finish().as_ref());
    let hash = TokenHash::of(&token);
    (token, hash)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_successor_depends_on_the_salt_and_the_token_and_on_nothing_else() {
        let rng = SystemRandom::new();
        let (one, two) = (salt(&rng).unwrap(), salt(&rng).unwrap());
        let (token, _) = issue(&rng).unwrap();
        let (next, hash) = successor(&one, &token);
        assert_eq!(successor(&one, &token), (next.clone(), hash));
        assert_eq!(TokenHash::of(&next), hash);
        assert_eq!(next.len(), token.len());
        assert_ne!(successor(&two, &token).0, next);
        assert_ne!(successor(&one, "another token").0, next);
    }
}

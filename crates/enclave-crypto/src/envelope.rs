//! The text of an `enc` envelope: writing one around sealed bytes, and reading the nonce and
//! ciphertext back out. No keys and no state here; the ciphers in `cipher.rs` do the rest.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{BufMut, BytesMut};
use enclave_types::{EncryptedEnvelope, EncryptedPayload, ProtocolVersion, SessionId};

use crate::aead::{WipeBuf, TAG_LEN};
use crate::nonce::{Nonce, NONCE_LEN};

/// Base64 length of a 12-byte nonce.
const NONCE_B64_LEN: usize = 16;

/// The envelope value around `sealed` (`ciphertext || tag`).
pub(crate) fn build(
    protocol_version: ProtocolVersion,
    session_id: &SessionId,
    seq: u64,
    kid: &str,
    nonce: &Nonce,
    sealed: &[u8],
) -> EncryptedEnvelope {
    let mut envelope = EncryptedEnvelope::new(
        session_id.clone(),
        seq,
        EncryptedPayload::new(kid, STANDARD.encode(nonce), STANDARD.encode(sealed)),
    );
    envelope.protocol_version = protocol_version;
    envelope
}

/// Appends the envelope around `sealed` to `out` as one NDJSON line, byte for byte what
/// serializing [`build`]'s value gives, with the base64 encoded straight into `out`.
pub(crate) fn write_line(
    out: &mut BytesMut,
    protocol_version: ProtocolVersion,
    session_id: &SessionId,
    seq: u64,
    kid: &str,
    nonce: &Nonce,
    sealed: &[u8],
) -> serde_json::Result<()> {
    out.reserve(128 + kid.len() + session_id.as_str().len() + sealed.len().div_ceil(3) * 4);
    // Strings go through serde_json so ids and key ids are escaped exactly as serde would.
    out.put_slice(b"{\"protocolVersion\":");
    put_json(out, &protocol_version)?;
    out.put_slice(b",\"sessionId\":");
    put_json(out, session_id.as_str())?;
    out.put_slice(b",\"seq\":");
    put_json(out, &seq)?;
    out.put_slice(b",\"type\":\"enc\",\"payload\":{\"kid\":");
    put_json(out, kid)?;
    out.put_slice(b",\"nonceB64\":\"");
    encode_into(nonce, out);
    out.put_slice(b"\",\"ciphertextB64\":\"");
    encode_into(sealed, out);
    out.put_slice(b"\"}}\n");
    Ok(())
}

fn put_json<T: serde::Serialize + ?Sized>(out: &mut BytesMut, value: &T) -> serde_json::Result<()> {
    serde_json::to_writer(out.writer(), value)
}

/// Standard base64 of `bytes` appended to `out` through a small stack buffer, without an
/// intermediate `String`. Blocks are a multiple of 3 bytes, so they concatenate exactly.
fn encode_into(bytes: &[u8], out: &mut BytesMut) {
    const BLOCK: usize = 3 * 256;
    let mut encoded = [0u8; BLOCK / 3 * 4];
    for block in bytes.chunks(BLOCK) {
        // The buffer fits a full block's encoding, so this never fails.
        let written = STANDARD.encode_slice(block, &mut encoded).unwrap_or(0);
        out.put_slice(&encoded[..written]);
    }
}

/// The envelope's 12-byte nonce.
pub(crate) fn read_nonce(payload: &EncryptedPayload) -> Result<Nonce, &'static str> {
    let mut nonce = [0u8; NONCE_LEN];
    if payload.nonce_b64.len() != NONCE_B64_LEN
        || STANDARD.decode_slice(&payload.nonce_b64, &mut nonce) != Ok(NONCE_LEN)
    {
        return Err("nonceB64 is not standard base64 of 12 bytes");
    }
    Ok(nonce)
}

/// Decodes the envelope's `ciphertext || tag` into `buf`.
///
/// A separate `tagB64` is ignored, as the TypeScript implementation ignores it: the tag
/// travels at the end of `ciphertextB64`, and that is the only place it is read from.
pub(crate) fn read_ciphertext(
    payload: &EncryptedPayload,
    buf: &mut WipeBuf,
) -> Result<(), &'static str> {
    let encoded = &payload.ciphertext_b64;
    buf.start();
    buf.reserve(encoded.len().div_ceil(4) * 3);
    STANDARD
        .decode_vec(encoded, buf.as_mut_vec())
        .map_err(|_| "ciphertextB64 is not standard base64")?;
    if buf.as_mut_vec().len() < TAG_LEN {
        return Err("ciphertext shorter than the 16-byte tag");
    }
    Ok(())
}

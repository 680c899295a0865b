//! Sealing events into `enc` envelopes and opening them again, bound to session and seq.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::BufMut;
use enclave_types::{EncryptedEnvelope, EncryptedPayload, StreamEvent, PROTOCOL_VERSION};

use crate::cipher::{Opener, Sealer, NONCE_LEN, TAG_LEN};
use crate::error::{truncated, Error, Location};

/// Base64 length of a 12-byte nonce.
const NONCE_B64_LEN: usize = 16;

/// An event that cannot be written as JSON (e.g. a hand-built `NaN` duration the model refuses):
/// the same encoding fault the NDJSON layer reports, not a cryptographic one.
fn unencodable(err: serde_json::Error) -> Error {
    Error::Frame(enclave_ndjson::Error::Serialize(err))
}

impl Sealer {
    /// Serializes `event` into the reused buffer and seals it in place.
    fn seal_event_buf(&mut self, event: &StreamEvent) -> Result<[u8; NONCE_LEN], Error> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, event).map_err(unencodable)?;
        self.seal_buf()
    }

    /// Seals `event` into an `enc` envelope carrying the event's `sessionId` and `seq`.
    pub fn seal_event(&mut self, event: &StreamEvent) -> Result<EncryptedEnvelope, Error> {
        let nonce = self.seal_event_buf(event)?;
        Ok(EncryptedEnvelope::new(
            event.session_id.clone(),
            event.seq,
            EncryptedPayload::new(
                self.kid(),
                STANDARD.encode(nonce),
                STANDARD.encode(&self.buf),
            ),
        ))
    }

    /// Seals `event` and appends its envelope to `out` as one NDJSON line (compact JSON and
    /// `\n`, byte for byte what serializing the [`EncryptedEnvelope`] gives), encoding the
    /// base64 straight into `out` (a `BytesMut`, a `Vec<u8>`, ...).
    pub fn seal_event_line<B: BufMut>(
        &mut self,
        event: &StreamEvent,
        out: &mut B,
    ) -> Result<(), Error> {
        let nonce = self.seal_event_buf(event)?;
        // Strings go through serde_json so ids and key ids are escaped exactly as serde would.
        out.put_slice(b"{\"protocolVersion\":");
        put_json(out, &PROTOCOL_VERSION)
            .and_then(|()| {
                out.put_slice(b",\"sessionId\":");
                put_json(out, event.session_id.as_str())
            })
            .and_then(|()| {
                out.put_slice(b",\"seq\":");
                put_json(out, &event.seq)
            })
            .and_then(|()| {
                out.put_slice(b",\"type\":\"enc\",\"payload\":{\"kid\":");
                put_json(out, self.kid())
            })
            .map_err(unencodable)?;
        out.put_slice(b",\"nonceB64\":\"");
        encode_into(&nonce, out);
        out.put_slice(b"\",\"ciphertextB64\":\"");
        encode_into(&self.buf, out);
        out.put_slice(b"\"}}\n");
        Ok(())
    }
}

fn put_json<B: BufMut, T: serde::Serialize + ?Sized>(
    out: &mut B,
    value: &T,
) -> serde_json::Result<()> {
    serde_json::to_writer(out.writer(), value)
}

/// Standard base64 of `bytes` appended to `out` through a small stack buffer, without an
/// intermediate `String`. Blocks are a multiple of 3 bytes, so they concatenate exactly.
fn encode_into<B: BufMut>(bytes: &[u8], out: &mut B) {
    const BLOCK: usize = 3 * 256;
    let mut encoded = [0u8; BLOCK / 3 * 4];
    for block in bytes.chunks(BLOCK) {
        // The buffer fits a full block's encoding, so this never fails.
        let written = STANDARD.encode_slice(block, &mut encoded).unwrap_or(0);
        out.put_slice(&encoded[..written]);
    }
}

impl Opener {
    /// Opens an `enc` envelope: checks the key id, the nonce (never accepted before), the
    /// tag, and that the inner event carries the envelope's `sessionId` and `seq`.
    pub fn open_envelope(&mut self, envelope: &EncryptedEnvelope) -> Result<StreamEvent, Error> {
        let payload = &envelope.payload;
        if payload.kid != self.kid() {
            return Err(Error::KeyIdMismatch {
                session: envelope.session_id.as_str().to_owned(),
                seq: envelope.seq,
                expected: self.kid().to_owned(),
                found: truncated(&payload.kid),
            });
        }
        let failed = |reason: &'static str| Error::DecryptionFailed {
            location: None,
            reason: reason.into(),
        };
        // Errors get the envelope's location only when they happen: nothing is allocated
        // on the way to a successful open.
        let locate = |err| located(err, envelope);
        let mut nonce = [0u8; NONCE_LEN];
        if payload.nonce_b64.len() != NONCE_B64_LEN
            || STANDARD.decode_slice(&payload.nonce_b64, &mut nonce) != Ok(NONCE_LEN)
        {
            return Err(locate(failed(
                "nonceB64 is not standard base64 of 12 bytes",
            )));
        }
        self.buf.clear();
        STANDARD
            .decode_vec(&payload.ciphertext_b64, &mut self.buf)
            .map_err(|_| locate(failed("ciphertextB64 is not standard base64")))?;
        if let Some(tag_b64) = &payload.tag_b64 {
            let before = self.buf.len();
            if tag_b64.len() > 4 * TAG_LEN.div_ceil(3)
                || STANDARD.decode_vec(tag_b64, &mut self.buf).is_err()
                || self.buf.len() - before != TAG_LEN
            {
                return Err(locate(failed("tagB64 is not standard base64 of 16 bytes")));
            }
        }
        let len = self.open_buf(&nonce).map_err(locate)?;
        // UTF-8 is checked over the whole plaintext, as the NDJSON layer checks a whole line:
        // `from_slice` alone would let bad bytes through inside fields it skips.
        let plaintext = std::str::from_utf8(&self.buf[..len]).map_err(|e| {
            locate(failed_owned(format!(
                "the decrypted payload is not UTF-8: {e}"
            )))
        })?;
        let event: StreamEvent = serde_json::from_str(plaintext).map_err(|e| {
            locate(failed_owned(format!(
                "the decrypted payload is not a valid event: {e}"
            )))
        })?;
        if event.session_id != envelope.session_id || event.seq != envelope.seq {
            return Err(Error::EnvelopeMismatch {
                session: envelope.session_id.as_str().to_owned(),
                seq: envelope.seq,
                inner_session: truncated(event.session_id.as_str()),
                inner_seq: event.seq,
            });
        }
        self.accept_nonce(&nonce);
        Ok(event)
    }
}

/// A decryption failure whose reason is only known at run time.
fn failed_owned(reason: String) -> Error {
    Error::DecryptionFailed {
        location: None,
        reason: reason.into(),
    }
}

/// Fills in the envelope's session and seq on errors that do not have them yet.
fn located(err: Error, envelope: &EncryptedEnvelope) -> Error {
    let here = || {
        Some(Location {
            session: envelope.session_id.as_str().to_owned(),
            seq: envelope.seq,
        })
    };
    match err {
        Error::DecryptionFailed {
            location: None,
            reason,
        } => Error::DecryptionFailed {
            location: here(),
            reason,
        },
        Error::NonceReuse {
            location: None,
            nonce_b64,
            reason,
        } => Error::NonceReuse {
            location: here(),
            nonce_b64,
            reason,
        },
        other => other,
    }
}

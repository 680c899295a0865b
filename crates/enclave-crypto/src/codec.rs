//! `EncryptedCodec`: the encryption layer as a tokio-util codec stacked on the NDJSON codec.

use std::fmt;

use bytes::BytesMut;
use enclave_ndjson::NdjsonCodec;
use enclave_types::{EncryptionMode, Frame, StreamEvent};
use tokio_util::codec::{Decoder, Encoder};

use crate::cipher::{Opener, Sealer};
use crate::error::Error;

/// A line codec that knows which line it decoded last, so errors found above it can name
/// the line.
pub trait LineNumbered {
    /// The 1-based number of the last line decoded (or skipped).
    fn line_number(&self) -> u64;
}

impl<In, Out: ?Sized> LineNumbered for NdjsonCodec<In, Out> {
    fn line_number(&self) -> u64 {
        NdjsonCodec::line_number(self)
    }
}

/// One decoded event and whether it arrived sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct Decrypted {
    /// The event (opened, if it came in an envelope).
    pub event: StreamEvent,
    /// `true` if it came in an `enc` envelope, `false` if it came in plaintext (optional mode).
    pub encrypted: bool,
}

/// Wraps the NDJSON codec below it (`C`, normally `NdjsonCodec<Frame>`) and exposes events
/// upward: `Framed<io, EncryptedCodec<NdjsonCodec<Frame>>>` writes `enc` envelopes and reads
/// events.
///
/// Decoding takes each [`Frame`] from `C` and opens envelopes with the [`Opener`]; a line
/// that fails (bad frame, failed authentication, replayed nonce, moved envelope, plaintext in
/// required mode) becomes an `Err` *item* naming its line, and the stream goes on. The
/// codec's own `Err` is kept for I/O faults.
///
/// Encoding seals each [`StreamEvent`] with the [`Sealer`] and writes the envelope as one
/// NDJSON line itself (compact JSON and `\n`, the shape `C` would write), so the base64
/// goes straight into the output buffer instead of through an intermediate envelope value.
pub struct EncryptedCodec<C> {
    inner: C,
    sealer: Sealer,
    opener: Opener,
    mode: EncryptionMode,
}

impl<C> EncryptedCodec<C> {
    /// Encryption required: plaintext events are refused (as item errors).
    pub fn required(inner: C, sealer: Sealer, opener: Opener) -> Self {
        Self {
            inner,
            sealer,
            opener,
            mode: EncryptionMode::Required,
        }
    }

    /// Encryption optional: plaintext events pass through, marked `encrypted: false`.
    /// Outgoing events are still sealed.
    pub fn optional(inner: C, sealer: Sealer, opener: Opener) -> Self {
        Self {
            inner,
            sealer,
            opener,
            mode: EncryptionMode::Optional,
        }
    }

    /// `Required` or `Optional`.
    pub fn mode(&self) -> EncryptionMode {
        self.mode
    }

    /// The codec below.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// The sealer for outgoing events (e.g. to watch [`Sealer::messages_sealed`]).
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    fn open_frame<E>(&mut self, frame: Result<Frame, E>) -> Result<Decrypted, Error>
    where
        C: LineNumbered,
        Error: From<E>,
    {
        match frame? {
            Frame::Encrypted(envelope) => self
                .opener
                .open_envelope(&envelope)
                .map(|event| Decrypted {
                    event,
                    encrypted: true,
                })
                .map_err(|e| e.at_line(self.inner.line_number())),
            Frame::Event(event) if self.mode == EncryptionMode::Required => {
                Err(Error::PlaintextRefused {
                    session: event.session_id.as_str().to_owned(),
                    seq: event.seq,
                }
                .at_line(self.inner.line_number()))
            }
            Frame::Event(event) => Ok(Decrypted {
                event,
                encrypted: false,
            }),
            // `Frame` is non-exhaustive: a frame kind a later protocol version adds.
            other => Err(Error::DecryptionFailed {
                location: None,
                reason: format!("unsupported frame type {:?}", other.type_str()).into(),
            }
            .at_line(self.inner.line_number())),
        }
    }
}

impl<C, E> Decoder for EncryptedCodec<C>
where
    C: Decoder<Item = Result<Frame, E>> + LineNumbered,
    Error: From<E> + From<C::Error>,
{
    type Item = Result<Decrypted, Error>;
    type Error = Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, Error> {
        let frame = self.inner.decode(buf)?;
        Ok(frame.map(|frame| self.open_frame(frame)))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, Error> {
        let frame = self.inner.decode_eof(buf)?;
        Ok(frame.map(|frame| self.open_frame(frame)))
    }
}

// Borrow-only, like the NDJSON codec below: one `Encoder` impl lets sinks infer their item.
impl<C> Encoder<&StreamEvent> for EncryptedCodec<C> {
    type Error = Error;

    fn encode(&mut self, event: &StreamEvent, dst: &mut BytesMut) -> Result<(), Error> {
        self.sealer.seal_event_line(event, dst)
    }
}

impl<C: fmt::Debug> fmt::Debug for EncryptedCodec<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedCodec")
            .field("inner", &self.inner)
            .field("mode", &self.mode)
            .field("sealer", &self.sealer)
            .field("opener", &self.opener)
            .finish()
    }
}

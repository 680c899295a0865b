//! `EncryptedCodec`: the encryption layer as a tokio-util codec stacked on the NDJSON codec.

use std::fmt;
use std::io;

use bytes::BytesMut;
use enclave_ndjson::NdjsonCodec;
use enclave_types::{EncryptionMode, Frame, MessageFrame, RuntimeChannelMessage, StreamEvent};
use tokio_util::codec::{Decoder, Encoder};

use crate::cipher::{Opener, Sealable, Sealer};
use crate::error::{Error, WriteError};
use crate::layer::{EncryptionLayer, IncomingFrame, Opened};

/// A line codec below the encryption layer: it knows which line it decoded last (so errors
/// found above it can name the line) and how long a line its reader accepts.
pub trait LineCodec {
    /// The 1-based number of the last line decoded (or skipped).
    fn line_number(&self) -> u64;
    /// The longest line accepted, without its `\n`.
    fn max_line_length(&self) -> usize;
}

impl<In, Out: ?Sized> LineCodec for NdjsonCodec<In, Out> {
    fn line_number(&self) -> u64 {
        NdjsonCodec::line_number(self)
    }

    fn max_line_length(&self) -> usize {
        NdjsonCodec::max_line_length(self)
    }
}

/// A thin tokio-util adapter over [`EncryptionLayer`]: wraps the NDJSON codec below it (`C`)
/// and exposes messages upward, so `Framed<io, EncryptedCodec<…>>` writes `enc` envelopes
/// and reads messages.
///
/// Decoding takes each frame from `C` and hands it to the layer; a line that fails (bad
/// frame, failed authentication, replay, moved envelope, plaintext where it is refused)
/// becomes an `Err` *item* naming its line, and the stream goes on. The decoder's own error
/// is `std::io::Error`, for the transport's faults.
///
/// Encoding goes through the layer, which writes each line straight into the output buffer
/// (the base64 too) and refuses lines longer than the reader's limit, writing nothing.
///
/// Use [`ServerCodec`] or [`ClientCodec`]: each side reads one message family and writes
/// the other.
pub struct EncryptedCodec<C, Out, In> {
    inner: C,
    layer: EncryptionLayer<Out, In>,
}

/// The server's codec: reads runtime channel messages (plain or sealed), writes events.
pub type ServerCodec =
    EncryptedCodec<NdjsonCodec<MessageFrame, StreamEvent>, StreamEvent, RuntimeChannelMessage>;
/// The client's codec: reads events (plain or sealed), writes runtime channel messages.
pub type ClientCodec =
    EncryptedCodec<NdjsonCodec<Frame, RuntimeChannelMessage>, RuntimeChannelMessage, StreamEvent>;

impl<C: LineCodec, Out: Sealable, In: Sealable> EncryptedCodec<C, Out, In> {
    /// Stacks `layer` on `inner`; the layer writes lines no longer than `inner` reads.
    pub fn new(inner: C, mut layer: EncryptionLayer<Out, In>) -> Self {
        layer.set_max_line_length(inner.max_line_length());
        Self { inner, layer }
    }

    /// Encryption required, with the keys of a finished handshake.
    pub fn required(inner: C, sealer: Sealer<Out>, opener: Opener<In>) -> Self {
        Self::new(
            inner,
            EncryptionLayer::with_ciphers(EncryptionMode::Required, sealer, opener),
        )
    }

    /// The codec below.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// The codec below, to read the handshake's own lines before keys are installed.
    pub fn inner_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// The encryption layer (mode, sealer, opener).
    pub fn layer(&self) -> &EncryptionLayer<Out, In> {
        &self.layer
    }

    /// The encryption layer, to install keys once the handshake finishes.
    pub fn layer_mut(&mut self) -> &mut EncryptionLayer<Out, In> {
        &mut self.layer
    }

    /// The codec below and the encryption layer, taken apart.
    pub fn into_parts(self) -> (C, EncryptionLayer<Out, In>) {
        (self.inner, self.layer)
    }

    fn open<F>(&mut self, frame: Result<F, enclave_ndjson::Error>) -> Result<Opened<In>, Error>
    where
        F: IncomingFrame<Message = In>,
    {
        let frame = frame?;
        self.layer
            .open(frame)
            .map_err(|err| err.at_line(self.inner.line_number()))
    }
}

impl<C, F, Out, In> Decoder for EncryptedCodec<C, Out, In>
where
    C: Decoder<Item = Result<F, enclave_ndjson::Error>, Error = io::Error> + LineCodec,
    F: IncomingFrame<Message = In>,
    Out: Sealable,
    In: Sealable,
{
    type Item = Result<Opened<In>, Error>;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Self::Item>> {
        let frame = self.inner.decode(buf)?;
        Ok(frame.map(|frame| self.open(frame)))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Self::Item>> {
        let frame = self.inner.decode_eof(buf)?;
        Ok(frame.map(|frame| self.open(frame)))
    }
}

// Borrow-only, like the NDJSON codec below: one `Encoder` impl lets sinks infer their item.
impl<C, Out: Sealable, In: Sealable> Encoder<&Out> for EncryptedCodec<C, Out, In> {
    type Error = WriteError;

    fn encode(&mut self, message: &Out, dst: &mut BytesMut) -> Result<(), WriteError> {
        Ok(self.layer.encode(message, dst)?)
    }
}

impl<C: fmt::Debug, Out, In> fmt::Debug for EncryptedCodec<C, Out, In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedCodec")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

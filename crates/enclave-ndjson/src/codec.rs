//! `NdjsonCodec`: the line engine behind tokio-util's `Decoder` and `Encoder` traits.

use std::fmt;
use std::marker::PhantomData;

use bytes::{Buf, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder};

use crate::engine::{encode_line, LineEngine, DEFAULT_MAX_LINE_LENGTH};
use crate::error::Error;

/// A [`Decoder`] and [`Encoder`] for NDJSON: one JSON value of type `T` per line.
///
/// Decoding yields `Result<T, Error>` items. A bad line (too long, not UTF-8, not JSON,
/// not a valid `T`) becomes an `Err` *item* naming its line, and the stream goes on; the
/// decoder's own `Err` is reserved for I/O faults, after which `FramedRead` stops.
///
/// Lines end at `\n`; a `\r` before it and any JSON whitespace around the value are
/// ignored, and lines holding only whitespace are skipped (but still counted). Only
/// JSON's four whitespace bytes are trimmed: unlike JavaScript's `trim`, a byte-order
/// mark or non-breaking space is content, and makes the line invalid JSON.
/// At end of input a last line without `\n` is decoded too.
///
/// Lines longer than [`max_line_length`](Self::max_line_length) (by default
/// [`DEFAULT_MAX_LINE_LENGTH`]) produce one [`Error::LineTooLong`]; the rest of that line is
/// dropped as it arrives, so the buffer never holds more than the limit plus one read. The
/// limit counts every byte before the `\n`, the `\r` of a `\r\n` and whitespace included.
///
/// ```
/// use bytes::BytesMut;
/// use enclave_ndjson::{Error, NdjsonCodec};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = NdjsonCodec::<Vec<u32>>::new();
/// let mut buf = BytesMut::from("[1,2]\r\n\n[3,\n  [4]");
/// assert_eq!(codec.decode(&mut buf)?.unwrap()?, vec![1, 2]);
/// let bad = codec.decode(&mut buf)?.unwrap().unwrap_err();
/// assert_eq!(bad.line(), Some(3));
/// assert!(codec.decode(&mut buf)?.is_none(), "waits for the newline");
/// assert_eq!(codec.decode_eof(&mut buf)?.unwrap()?, vec![4]);
///
/// codec.encode(&vec![5, 6], &mut buf)?;
/// assert_eq!(&buf[..], b"[5,6]\n");
/// # Ok::<(), Error>(())
/// ```
pub struct NdjsonCodec<T> {
    engine: LineEngine,
    // fn() -> T: the codec neither owns nor borrows a T, so it is Send + Sync for any T.
    _item: PhantomData<fn() -> T>,
}

impl<T> NdjsonCodec<T> {
    /// A codec with the default line limit, [`DEFAULT_MAX_LINE_LENGTH`] (16 MiB).
    pub fn new() -> Self {
        Self::with_max_line_length(DEFAULT_MAX_LINE_LENGTH)
    }

    /// A codec that rejects lines longer than `max_line_length` bytes (not counting `\n`;
    /// a `\r` before it counts, as in tokio-util's `LinesCodec`).
    pub fn with_max_line_length(max_line_length: usize) -> Self {
        Self {
            engine: LineEngine::new(max_line_length),
            _item: PhantomData,
        }
    }

    /// The longest line accepted when decoding, in bytes, not counting the `\n`.
    pub fn max_line_length(&self) -> usize {
        self.engine.max_length()
    }

    /// How many lines have been decoded or skipped so far (blank and bad lines included).
    pub fn line_number(&self) -> u64 {
        self.engine.line_number()
    }
}

impl<T> Default for NdjsonCodec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for NdjsonCodec<T> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
            _item: PhantomData,
        }
    }
}

impl<T> fmt::Debug for NdjsonCodec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NdjsonCodec")
            .field("item", &std::any::type_name::<T>())
            .field("max_line_length", &self.max_line_length())
            .field("line_number", &self.line_number())
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned> Decoder for NdjsonCodec<T> {
    type Item = Result<T, Error>;
    type Error = Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, Error> {
        // Parse straight from the buffer, then release the consumed bytes in one step.
        let (consumed, item) = self.engine.decode(buf, false);
        buf.advance(consumed);
        Ok(item)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, Error> {
        let (consumed, item) = self.engine.decode(buf, true);
        buf.advance(consumed);
        Ok(item)
    }
}

/// Encodes borrowed values, so callers that keep what they send (for replay, say) never clone.
///
/// A single `Encoder` impl also lets the compiler infer the sink's item type for
/// `SinkExt::close` and `SinkExt::flush`.
impl<T: Serialize> Encoder<&T> for NdjsonCodec<T> {
    type Error = Error;

    fn encode(&mut self, item: &T, buf: &mut BytesMut) -> Result<(), Error> {
        encode_line(item, buf)
    }
}

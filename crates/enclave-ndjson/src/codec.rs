//! `NdjsonCodec`: the line engine behind tokio-util's `Decoder` and `Encoder` traits.

use std::fmt;
use std::io;
use std::marker::PhantomData;

use bytes::{Buf, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder};

use crate::engine::{encode_line, LineEngine, LineLimit, DEFAULT_MAX_LINE_LENGTH};
use crate::error::{Error, WriteError};

/// A [`Decoder`] of `In` values and an [`Encoder`] of `Out` values, one JSON value per line.
///
/// The two directions of a link carry different message families (events one way, runtime
/// messages such as `tool_result_submit` or `cancel` the other), so each side names both:
/// a client reads events and writes runtime messages, a server the reverse. When both
/// directions carry the same type, `NdjsonCodec<T>` is `NdjsonCodec<T, T>`.
///
/// Decoding yields `Result<In, Error>` items. A bad line (too long, not UTF-8, not JSON,
/// not a valid `In`) becomes an `Err` *item* naming its line, and the stream goes on. The
/// decoder's own error is [`io::Error`], which only the transport produces: decoding itself
/// never fails fatally.
///
/// Lines end at `\n`. Each line is trimmed as JavaScript's `trim()` trims it, as the
/// TypeScript decoder does: a `\r` before the `\n`, JSON's whitespace, and also VT, FF,
/// NBSP, the byte-order mark, the Unicode spaces and the line and paragraph separators.
/// Lines holding nothing else are skipped (but still counted). At end of input a last line
/// without `\n` is decoded too.
///
/// Lines longer than [`max_line_length`](Self::max_line_length) (by default
/// [`DEFAULT_MAX_LINE_LENGTH`]) produce one [`Error::LineTooLong`]; the rest of that line is
/// dropped as it arrives, so the buffer never holds more than the limit plus one read. The
/// limit counts every byte before the `\n`, the `\r` of a `\r\n` and whitespace included.
///
/// Encoding writes borrowed `Out` values as compact JSON and `\n`, and holds them to the
/// same limit, so the peer never receives a line it would refuse: a value whose line would
/// be longer is refused with [`Error::LineTooLongToWrite`], naming the output line, and
/// nothing of it is written. The encoder's error, [`WriteError`], keeps such refusals apart
/// from I/O faults.
///
/// ```
/// use bytes::BytesMut;
/// use enclave_ndjson::NdjsonCodec;
/// use tokio_util::codec::{Decoder, Encoder};
///
/// // Reads lists of numbers, writes strings.
/// let mut codec = NdjsonCodec::<Vec<u32>, str>::new();
/// let mut buf = BytesMut::from("[1,2]\r\n\n[3,\n  [4]");
/// assert_eq!(codec.decode(&mut buf)?.unwrap()?, vec![1, 2]);
/// let bad = codec.decode(&mut buf)?.unwrap().unwrap_err();
/// assert_eq!(bad.line(), Some(3));
/// assert!(codec.decode(&mut buf)?.is_none(), "waits for the newline");
/// assert_eq!(codec.decode_eof(&mut buf)?.unwrap()?, vec![4]);
///
/// codec.encode("five", &mut buf)?;
/// assert_eq!(&buf[..], b"\"five\"\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct NdjsonCodec<In, Out: ?Sized = In> {
    engine: LineEngine,
    written: LineLimit,
    // fn() -> In, fn(&Out): the codec neither owns nor borrows either, so it is Send + Sync
    // for any In and Out.
    _in: PhantomData<fn() -> In>,
    _out: PhantomData<fn(&Out)>,
}

impl<In, Out: ?Sized> NdjsonCodec<In, Out> {
    /// A codec with the default line limit, [`DEFAULT_MAX_LINE_LENGTH`] (16 MiB).
    pub fn new() -> Self {
        Self::with_max_line_length(DEFAULT_MAX_LINE_LENGTH)
    }

    /// A codec that neither reads nor writes lines longer than `max_line_length` bytes (not
    /// counting `\n`; a `\r` before it counts, as in tokio-util's `LinesCodec`).
    pub fn with_max_line_length(max_line_length: usize) -> Self {
        Self {
            engine: LineEngine::new(max_line_length),
            written: LineLimit::new(max_line_length),
            _in: PhantomData,
            _out: PhantomData,
        }
    }

    /// The longest line accepted, in bytes, not counting the `\n`, in either direction.
    pub fn max_line_length(&self) -> usize {
        self.engine.max_length()
    }

    /// How many lines have been decoded or skipped so far (blank and bad lines included).
    pub fn line_number(&self) -> u64 {
        self.engine.line_number()
    }

    /// How many lines have been encoded so far (refused values not included).
    pub fn lines_encoded(&self) -> u64 {
        self.written.lines_written()
    }
}

impl<In, Out: ?Sized> Default for NdjsonCodec<In, Out> {
    fn default() -> Self {
        Self::new()
    }
}

impl<In, Out: ?Sized> Clone for NdjsonCodec<In, Out> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
            written: self.written,
            _in: PhantomData,
            _out: PhantomData,
        }
    }
}

impl<In, Out: ?Sized> fmt::Debug for NdjsonCodec<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NdjsonCodec")
            .field("in", &std::any::type_name::<In>())
            .field("out", &std::any::type_name::<Out>())
            .field("max_line_length", &self.max_line_length())
            .field("line_number", &self.line_number())
            .field("lines_encoded", &self.lines_encoded())
            .finish_non_exhaustive()
    }
}

impl<In: DeserializeOwned, Out: ?Sized> Decoder for NdjsonCodec<In, Out> {
    type Item = Result<In, Error>;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Self::Item>> {
        // Parse straight from the buffer, then release the consumed bytes in one step.
        let (consumed, item) = self.engine.decode(buf, false);
        buf.advance(consumed);
        Ok(item)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Self::Item>> {
        let (consumed, item) = self.engine.decode(buf, true);
        buf.advance(consumed);
        Ok(item)
    }
}

/// Encodes borrowed values, so callers that keep what they send (for replay, say) never clone.
///
/// A single `Encoder` impl also lets the compiler infer the sink's item type for
/// `SinkExt::close` and `SinkExt::flush`.
impl<In, Out: Serialize + ?Sized> Encoder<&Out> for NdjsonCodec<In, Out> {
    type Error = WriteError;

    fn encode(&mut self, item: &Out, buf: &mut BytesMut) -> Result<(), WriteError> {
        Ok(encode_line(item, buf, &mut self.written)?)
    }
}

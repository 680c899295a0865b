//! The runtime-free face of the engine, mirroring `@enclave-vm/stream`'s NDJSON helpers.

use std::fmt;
use std::iter::FusedIterator;
use std::marker::PhantomData;

use bytes::{Buf, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::engine::{encode_line, LineEngine, LineLimit, DEFAULT_MAX_LINE_LENGTH};
use crate::error::Error;

/// Incremental NDJSON decoder for any transport: feed bytes as they arrive, take items out.
///
/// The counterpart of the TypeScript `NdjsonStreamParser`, with the same line rules as
/// [`NdjsonCodec`](crate::NdjsonCodec) (it runs the same engine). Chunks may split lines,
/// `\r\n` pairs and UTF-8 sequences anywhere. Items are decoded lazily, when taken;
/// take them after each [`feed`](Self::feed) so that memory stays bounded by the line
/// limit plus one chunk.
///
/// ```
/// use enclave_ndjson::StreamDecoder;
///
/// let mut decoder = StreamDecoder::<serde_json::Value>::new();
/// decoder.feed_str("{\"seq\":1}\n{\"se");
/// let first: Vec<_> = decoder.items().collect();
/// assert_eq!(first.len(), 1);
/// assert!(decoder.has_pending());
///
/// decoder.feed_str("q\":2}\nnot json\n{\"seq\":3}");
/// let second = decoder.next_item().unwrap().unwrap();
/// assert_eq!(second["seq"], 2);
/// let bad = decoder.next_item().unwrap().unwrap_err();
/// assert_eq!(bad.line(), Some(3));
/// assert!(decoder.next_item().is_none(), "the last line has no newline yet");
///
/// let last: Vec<_> = decoder.flush().collect();
/// assert_eq!(last[0].as_ref().unwrap()["seq"], 3);
/// assert_eq!(decoder.line_number(), 4);
/// ```
pub struct StreamDecoder<T> {
    engine: LineEngine,
    buf: BytesMut,
    _item: PhantomData<fn() -> T>,
}

impl<T> StreamDecoder<T> {
    /// A decoder with the default line limit, [`DEFAULT_MAX_LINE_LENGTH`] (16 MiB).
    pub fn new() -> Self {
        Self::with_max_line_length(DEFAULT_MAX_LINE_LENGTH)
    }

    /// A decoder that rejects lines longer than `max_line_length` bytes (not counting `\n`;
    /// a `\r` before it counts, as in tokio-util's `LinesCodec`).
    pub fn with_max_line_length(max_line_length: usize) -> Self {
        Self {
            engine: LineEngine::new(max_line_length),
            buf: BytesMut::new(),
            _item: PhantomData,
        }
    }

    /// Appends a chunk of bytes.
    pub fn feed(&mut self, chunk: &[u8]) {
        // Bytes of a line already known to be too long are dropped, never copied.
        let chunk = if self.buf.is_empty() {
            self.engine.skip_discarded(chunk)
        } else {
            chunk
        };
        self.buf.extend_from_slice(chunk);
    }

    /// Appends a chunk of text.
    pub fn feed_str(&mut self, chunk: &str) {
        self.feed(chunk.as_bytes());
    }

    /// Drops pending bytes and starts over at line 1 (the limit is kept).
    pub fn reset(&mut self) {
        self.engine.reset();
        self.buf.clear();
    }

    /// How many lines have been decoded or skipped so far (blank and bad lines included).
    pub fn line_number(&self) -> u64 {
        self.engine.line_number()
    }

    /// Bytes fed but not consumed yet: lines not taken plus a partial last line.
    pub fn pending_len(&self) -> usize {
        self.buf.len()
    }

    /// Whether [`flush`](Self::flush) would yield anything: a line with content, a bad line,
    /// or one over the limit (the rest of a too-long line, still being dropped, is not).
    ///
    /// Blank means what it means to the decoder, JavaScript's `trim()` set, so pending
    /// whitespace such as a NBSP or a BOM is not pending data.
    pub fn has_pending(&self) -> bool {
        self.engine.would_yield(&self.buf)
    }

    /// The longest line accepted, in bytes, not counting the `\n`.
    pub fn max_line_length(&self) -> usize {
        self.engine.max_length()
    }
}

impl<T: DeserializeOwned> StreamDecoder<T> {
    /// Decodes the next complete line, or returns `None` until more bytes arrive.
    pub fn next_item(&mut self) -> Option<Result<T, Error>> {
        self.take(false)
    }

    /// Iterates over the items of all complete lines fed so far.
    pub fn items(&mut self) -> Items<'_, T> {
        Items {
            decoder: self,
            eof: false,
        }
    }

    /// Ends the input: iterates over the remaining items, the pending partial line last.
    ///
    /// Lines the iterator is not asked for stay pending. The line count carries on, so
    /// errors from later input keep numbering; call [`reset`](Self::reset) to start over.
    pub fn flush(&mut self) -> Items<'_, T> {
        Items {
            decoder: self,
            eof: true,
        }
    }

    fn take(&mut self, eof: bool) -> Option<Result<T, Error>> {
        let (consumed, item) = self.engine.decode(&self.buf, eof);
        self.buf.advance(consumed);
        item
    }
}

impl<T> Default for StreamDecoder<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for StreamDecoder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamDecoder")
            .field("item", &std::any::type_name::<T>())
            .field("max_line_length", &self.max_line_length())
            .field("line_number", &self.line_number())
            .field("pending_len", &self.pending_len())
            .finish_non_exhaustive()
    }
}

/// Items taken from a [`StreamDecoder`]; see [`StreamDecoder::items`] and [`StreamDecoder::flush`].
pub struct Items<'a, T> {
    decoder: &'a mut StreamDecoder<T>,
    eof: bool,
}

impl<T: DeserializeOwned> Iterator for Items<'_, T> {
    type Item = Result<T, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.decoder.take(self.eof)
    }
}

// Items holds the decoder's only handle, so no byte can arrive once it has returned `None`.
impl<T: DeserializeOwned> FusedIterator for Items<'_, T> {}

impl<T> fmt::Debug for Items<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Items")
            .field("decoder", &self.decoder)
            .field("eof", &self.eof)
            .finish()
    }
}

/// Incremental NDJSON encoder: appends one line per value to an output buffer.
///
/// The counterpart of the TypeScript serializer stream (`JSON.stringify(event) + "\n"`):
/// serde_json writes the same compact JSON, straight into the buffer. Lines are held to
/// the line limit the reading side applies ([`DEFAULT_MAX_LINE_LENGTH`] unless told
/// otherwise): a value whose line would be longer is refused with
/// [`Error::LineTooLongToWrite`], naming the output line, and nothing of it is appended.
///
/// Each direction of a link has its own encoder, typed by what that direction carries.
///
/// ```
/// use enclave_ndjson::{Error, StreamEncoder};
///
/// let mut encoder = StreamEncoder::with_max_line_length(12);
/// encoder.encode(&serde_json::json!({"seq": 1}))?;
/// let err = encoder.encode(&serde_json::json!({"seq": 2, "big": true})).unwrap_err();
/// assert!(matches!(err, Error::LineTooLongToWrite { line: 2, length: 20, limit: 12 }));
/// encoder.encode(&serde_json::json!({"seq": 2}))?;
/// assert_eq!(encoder.lines_encoded(), 2);
/// assert_eq!(&encoder.take()[..], b"{\"seq\":1}\n{\"seq\":2}\n");
/// assert!(encoder.is_empty());
/// # Ok::<(), Error>(())
/// ```
pub struct StreamEncoder<T: ?Sized> {
    buf: BytesMut,
    written: LineLimit,
    _item: PhantomData<fn(&T)>,
}

impl<T: ?Sized> StreamEncoder<T> {
    /// An encoder with an empty output buffer and the default line limit,
    /// [`DEFAULT_MAX_LINE_LENGTH`] (16 MiB).
    pub fn new() -> Self {
        Self::with_max_line_length(DEFAULT_MAX_LINE_LENGTH)
    }

    /// An encoder that refuses values whose line would be longer than `max_line_length`
    /// bytes, not counting the `\n`.
    pub fn with_max_line_length(max_line_length: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            written: LineLimit::new(max_line_length),
            _item: PhantomData,
        }
    }

    /// The encoded bytes not taken yet.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the encoded bytes out, leaving the buffer empty (no copy).
    pub fn take(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    /// How many encoded bytes wait to be taken.
    pub fn pending_len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no encoded bytes wait to be taken.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// How many lines have been encoded since creation (refused values not included).
    pub fn lines_encoded(&self) -> u64 {
        self.written.lines_written()
    }

    /// The longest line written, in bytes, not counting the `\n`.
    pub fn max_line_length(&self) -> usize {
        self.written.max_line_length()
    }
}

impl<T: Serialize + ?Sized> StreamEncoder<T> {
    /// Appends `item` as one line; on error nothing is appended.
    pub fn encode(&mut self, item: &T) -> Result<(), Error> {
        encode_line(item, &mut self.buf, &mut self.written)
    }
}

impl<T: ?Sized> Default for StreamEncoder<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: ?Sized> fmt::Debug for StreamEncoder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamEncoder")
            .field("item", &std::any::type_name::<T>())
            .field("max_line_length", &self.max_line_length())
            .field("lines_encoded", &self.lines_encoded())
            .field("pending_len", &self.pending_len())
            .finish_non_exhaustive()
    }
}

/// What [`parse_ndjson`] found: the decoded values and one error per bad line, in order.
#[derive(Debug)]
#[non_exhaustive]
pub struct ParsedNdjson<T> {
    /// Values of the good lines.
    pub items: Vec<T>,
    /// Errors of the bad lines; each knows its line number.
    pub errors: Vec<Error>,
}

/// Decodes a whole NDJSON document, like the TypeScript `parseLines`.
///
/// Blank lines are skipped, the last line needs no `\n`, and lines over
/// [`DEFAULT_MAX_LINE_LENGTH`] are reported as [`Error::LineTooLong`]. The input is parsed
/// in place, without copying it.
///
/// ```
/// let parsed = enclave_ndjson::parse_ndjson::<u32>("1\n\nx\n3");
/// assert_eq!(parsed.items, vec![1, 3]);
/// assert_eq!(parsed.errors[0].line(), Some(3));
/// ```
pub fn parse_ndjson<T: DeserializeOwned>(input: impl AsRef<[u8]>) -> ParsedNdjson<T> {
    let input = input.as_ref();
    let mut engine = LineEngine::new(DEFAULT_MAX_LINE_LENGTH);
    let mut parsed = ParsedNdjson {
        items: Vec::new(),
        errors: Vec::new(),
    };
    let mut at = 0;
    loop {
        let (consumed, item) = engine.decode::<T>(&input[at..], true);
        at += consumed;
        match item {
            Some(Ok(item)) => parsed.items.push(item),
            Some(Err(error)) => parsed.errors.push(error),
            None => return parsed,
        }
    }
}

/// Encodes `items` as an NDJSON document, each line ending in `\n`.
///
/// Unlike the TypeScript `serializeEvents`, which joins with `\n`, the last line is
/// terminated too, so documents can be concatenated and streamed as they are. A value whose
/// line would be longer than [`DEFAULT_MAX_LINE_LENGTH`], the limit [`parse_ndjson`] reads
/// with, is refused with [`Error::LineTooLongToWrite`] naming its line.
///
/// ```
/// let text = enclave_ndjson::stringify_ndjson(&[[1, 2], [3, 4]])?;
/// assert_eq!(text, "[1,2]\n[3,4]\n");
/// # Ok::<(), enclave_ndjson::Error>(())
/// ```
pub fn stringify_ndjson<T: Serialize>(items: &[T]) -> Result<String, Error> {
    let mut out = Vec::new();
    let mut written = LineLimit::new(DEFAULT_MAX_LINE_LENGTH);
    for item in items {
        encode_line(item, &mut out, &mut written)?;
    }
    // serde_json only writes UTF-8, so this never takes the lossy branch.
    Ok(String::from_utf8(out)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned()))
}

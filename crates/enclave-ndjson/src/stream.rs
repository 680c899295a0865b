//! The runtime-free face of the engine, mirroring `@enclave-vm/stream`'s NDJSON helpers.

use std::fmt;
use std::iter::FusedIterator;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_core::Stream;
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

    /// Takes the next complete line and hands it to `parse` as text, or returns `None` until
    /// more bytes arrive: for a reader whose lines are not one serde type (it tries several,
    /// or quotes the line in its errors) and that must not parse each line twice.
    ///
    /// The text is what [`next_item`](Self::next_item) would deserialize: checked as UTF-8
    /// and trimmed as JavaScript's `trim()` does. Blank lines are skipped; a line over the
    /// limit or not UTF-8 is an `Err` (numbered by [`line_number`](Self::line_number)) and
    /// `parse` is not called.
    ///
    /// ```
    /// use enclave_ndjson::StreamDecoder;
    ///
    /// let mut decoder = StreamDecoder::<()>::new();
    /// decoder.feed(b" {\"seq\":1}\r\n\n\xFFx\n");
    /// let first = decoder.next_line_with(str::len).unwrap()?;
    /// assert_eq!(first, 9, "trimmed");
    /// let bad = decoder.next_line_with(str::len).unwrap().unwrap_err();
    /// assert_eq!(bad.line(), Some(3));
    /// assert!(decoder.next_line_with(str::len).is_none());
    /// # Ok::<(), enclave_ndjson::Error>(())
    /// ```
    pub fn next_line_with<R>(&mut self, parse: impl FnOnce(&str) -> R) -> Option<Result<R, Error>> {
        let (consumed, item) = self.engine.decode_text(&self.buf, false, parse);
        self.buf.advance(consumed);
        item
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

    /// Hands every item to `on_message` as its line completes: the seed's
    /// `decoder.on('message', …)` then `decoder.write(chunk)`. Bad lines reach the callback
    /// too, as `Err` with their line number, and decoding goes on.
    ///
    /// ```
    /// use enclave_ndjson::StreamDecoder;
    ///
    /// let mut received = Vec::new();
    /// let mut decoder = StreamDecoder::<serde_json::Value>::new()
    ///     .on_message(|message| received.push(message.map_err(|err| err.line())));
    /// decoder.write(b"{\"type\":\"tool_call\"}\n{\"ty");
    /// decoder.write(b"pe\":\"end\"}\nnot json\n");
    /// decoder.end();
    /// drop(decoder);
    /// assert_eq!(received.len(), 3);
    /// assert_eq!(received[1].as_ref().unwrap()["type"], "end");
    /// assert_eq!(received[2], Err(Some(3)));
    /// ```
    pub fn on_message<F>(self, on_message: F) -> CallbackDecoder<T, F>
    where
        F: FnMut(Result<T, Error>),
    {
        CallbackDecoder {
            decoder: self,
            on_message,
        }
    }

    /// Decodes a stream of byte chunks (a response body, a channel of reads) into a
    /// [`Stream`] of items, ending with the pending last line when the chunks end. Memory
    /// stays bounded by the line limit plus one chunk.
    ///
    /// ```
    /// use enclave_ndjson::StreamDecoder;
    /// use futures::{stream, StreamExt};
    ///
    /// # futures::executor::block_on(async {
    /// let chunks = stream::iter(["{\"seq\":1}\n{\"se", "q\":2}\n", "{\"seq\":3}"]);
    /// let items: Vec<serde_json::Value> = StreamDecoder::new()
    ///     .decode_stream(chunks)
    ///     .map(|item| item.expect("every line is JSON"))
    ///     .collect()
    ///     .await;
    /// assert_eq!(items.len(), 3);
    /// assert_eq!(items[2]["seq"], 3);
    /// # });
    /// ```
    pub fn decode_stream<S>(self, chunks: S) -> DecodeStream<S, T>
    where
        S: Stream + Unpin,
        S::Item: AsRef<[u8]>,
    {
        DecodeStream {
            chunks,
            decoder: self,
            ended: false,
        }
    }

    fn take(&mut self, eof: bool) -> Option<Result<T, Error>> {
        let (consumed, item) = self.engine.decode(&self.buf, eof);
        self.buf.advance(consumed);
        item
    }
}

/// A [`StreamDecoder`] that pushes each item to a callback as bytes are written; see
/// [`StreamDecoder::on_message`].
pub struct CallbackDecoder<T, F> {
    decoder: StreamDecoder<T>,
    on_message: F,
}

impl<T: DeserializeOwned, F: FnMut(Result<T, Error>)> CallbackDecoder<T, F> {
    /// Appends a chunk and hands the items of every line it completes to the callback;
    /// returns how many it handed over.
    pub fn write(&mut self, chunk: impl AsRef<[u8]>) -> usize {
        self.decoder.feed(chunk.as_ref());
        self.dispatch(false)
    }

    /// Ends the input: hands over the pending last line, if any. Later writes start a new
    /// line and keep the line count going.
    pub fn end(&mut self) -> usize {
        self.dispatch(true)
    }

    /// The decoder back, with whatever it still holds.
    pub fn into_inner(self) -> StreamDecoder<T> {
        self.decoder
    }

    /// The decoder, to read its counters.
    pub fn decoder(&self) -> &StreamDecoder<T> {
        &self.decoder
    }

    fn dispatch(&mut self, eof: bool) -> usize {
        let mut count = 0;
        while let Some(item) = self.decoder.take(eof) {
            (self.on_message)(item);
            count += 1;
        }
        count
    }
}

impl<T, F> fmt::Debug for CallbackDecoder<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackDecoder")
            .field("decoder", &self.decoder)
            .finish_non_exhaustive()
    }
}

/// The items of a stream of byte chunks; see [`StreamDecoder::decode_stream`].
pub struct DecodeStream<S, T> {
    chunks: S,
    decoder: StreamDecoder<T>,
    ended: bool,
}

impl<S, T> DecodeStream<S, T> {
    /// The decoder, to read its counters.
    pub fn decoder(&self) -> &StreamDecoder<T> {
        &self.decoder
    }

    /// The chunk stream and the decoder back.
    pub fn into_parts(self) -> (S, StreamDecoder<T>) {
        (self.chunks, self.decoder)
    }
}

impl<S, T> Stream for DecodeStream<S, T>
where
    S: Stream + Unpin,
    S::Item: AsRef<[u8]>,
    T: DeserializeOwned,
{
    type Item = Result<T, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Every field is Unpin (the chunk stream is required to be), so no projection.
        let this = self.get_mut();
        loop {
            if let Some(item) = this.decoder.take(this.ended) {
                return Poll::Ready(Some(item));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.chunks).poll_next(cx) {
                Poll::Ready(Some(chunk)) => this.decoder.feed(chunk.as_ref()),
                Poll::Ready(None) => this.ended = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S, T> fmt::Debug for DecodeStream<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodeStream")
            .field("decoder", &self.decoder)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
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

//! The one line engine every decoder and encoder of this crate runs on.
//!
//! It works on plain byte slices and tells its caller how many bytes to consume, so the
//! same code serves a `BytesMut` owned by `FramedRead`, the buffer of a `StreamDecoder`,
//! and a whole document handed to `parse_ndjson` without copying it.

use std::cmp;

use bytes::{BufMut, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{excerpt, is_js_whitespace, is_json_whitespace, may_start_js_whitespace, Error};

/// Default limit on the length of one line: 16 MiB, not counting the `\n`.
///
/// Large enough for any event the protocol produces (tool results travel inline), small
/// enough that a peer that never sends a newline cannot exhaust memory.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 16 * 1024 * 1024;

/// Splits bytes into lines and decodes each one, remembering where it stopped searching.
#[derive(Clone, Debug)]
pub(crate) struct LineEngine {
    /// Offset, in the unconsumed bytes, where the next newline search starts.
    next_index: usize,
    /// Longest accepted line, not counting the `\n`.
    max_length: usize,
    /// Set while skipping the rest of a line that broke `max_length`.
    discarding: bool,
    /// Number of lines seen so far, blank and too-long ones included.
    line: u64,
    /// Bytes handed to the newline search, so tests can prove nothing is scanned twice.
    #[cfg(test)]
    scanned: usize,
}

impl LineEngine {
    pub(crate) fn new(max_length: usize) -> Self {
        Self {
            next_index: 0,
            max_length,
            discarding: false,
            line: 0,
            #[cfg(test)]
            scanned: 0,
        }
    }

    pub(crate) fn max_length(&self) -> usize {
        self.max_length
    }

    pub(crate) fn line_number(&self) -> u64 {
        self.line
    }

    /// Forgets all progress, as if no byte had been seen.
    pub(crate) fn reset(&mut self) {
        *self = Self::new(self.max_length);
    }

    /// Decodes the next line of `buf`, the bytes not consumed yet.
    ///
    /// Returns how many bytes the caller must now drop from the front of its buffer, and
    /// the decoded item if a line was complete. With `eof`, bytes after the last newline
    /// are decoded as a final line. Between calls the caller may only append to `buf`.
    pub(crate) fn decode<T: DeserializeOwned>(
        &mut self,
        buf: &[u8],
        eof: bool,
    ) -> (usize, Option<Result<T, Error>>) {
        let (consumed, framed) = self.frame(buf, eof);
        let item = framed.map(|framed| match framed {
            Framed::Line { start, end } => parse_line(&buf[start..end], self.line),
            Framed::TooLong => Err(Error::LineTooLong {
                line: self.line,
                limit: self.max_length,
            }),
        });
        (consumed, item)
    }

    /// Like [`decode`](Self::decode), but hands the line to `parse` as text instead of
    /// deserializing it: checked as UTF-8 and trimmed as JavaScript's `trim()` does, exactly
    /// what `decode` would parse. For a caller whose parser is not a serde type (one that
    /// tries several, or keeps the line for an error).
    pub(crate) fn decode_text<R>(
        &mut self,
        buf: &[u8],
        eof: bool,
        parse: impl FnOnce(&str) -> R,
    ) -> (usize, Option<Result<R, Error>>) {
        let (consumed, framed) = self.frame(buf, eof);
        let item = framed.map(|framed| match framed {
            Framed::Line { start, end } => {
                line_text(&buf[start..end], self.line).map(|(text, _)| parse(text))
            }
            Framed::TooLong => Err(Error::LineTooLong {
                line: self.line,
                limit: self.max_length,
            }),
        });
        (consumed, item)
    }

    /// Whether decoding `buf` to its end, as at end of input, would yield at least one item.
    ///
    /// Runs the framing rules on a copy of the engine without parsing, so it agrees with
    /// [`decode`](Self::decode) by construction, whatever the whitespace, limit or discard state.
    pub(crate) fn would_yield(&self, buf: &[u8]) -> bool {
        self.clone().frame(buf, true).1.is_some()
    }

    /// Finds the next line of `buf` that yields an item, skipping blank ones.
    ///
    /// Returns how many bytes to consume, and where that line sits in `buf` (or that it
    /// broke the limit). `self.line` is then that line's number.
    fn frame(&mut self, buf: &[u8], eof: bool) -> (usize, Option<Framed>) {
        let mut consumed = 0;
        loop {
            let rest = &buf[consumed..];
            // Searching past max_length + 1 bytes cannot find a line we would accept.
            let read_to = cmp::min(self.max_length.saturating_add(1), rest.len());
            // A caller that shrank its buffer gets a full rescan rather than a panic.
            let start = if self.next_index <= read_to {
                self.next_index
            } else {
                0
            };
            let newline = self.find_newline(&rest[start..read_to]);
            match (self.discarding, newline) {
                (true, Some(offset)) => {
                    consumed += start + offset + 1;
                    self.discarding = false;
                    self.next_index = 0;
                }
                (true, None) => {
                    // Drop what was searched so a discarded line never accumulates.
                    consumed += read_to;
                    self.next_index = 0;
                    if consumed == buf.len() {
                        // End of input ends the long line too, so input fed after a flush
                        // starts a fresh line instead of being swallowed as its rest.
                        if eof {
                            self.discarding = false;
                        }
                        return (consumed, None);
                    }
                }
                (false, Some(offset)) => {
                    let end = start + offset;
                    // Cursors first: nothing below may leave them pointing into a consumed line.
                    self.next_index = 0;
                    self.line += 1;
                    let line_start = consumed;
                    consumed += end + 1;
                    if is_blank(&rest[..end]) {
                        continue;
                    }
                    let line = Framed::Line {
                        start: line_start,
                        end: line_start + end,
                    };
                    return (consumed, Some(line));
                }
                (false, None) if rest.len() > self.max_length => {
                    self.next_index = 0;
                    self.discarding = true;
                    self.line += 1;
                    consumed += read_to;
                    return (consumed, Some(Framed::TooLong));
                }
                (false, None) if eof => {
                    self.next_index = 0;
                    let line_start = consumed;
                    consumed = buf.len();
                    if is_blank(rest) {
                        return (consumed, None);
                    }
                    self.line += 1;
                    let line = Framed::Line {
                        start: line_start,
                        end: consumed,
                    };
                    return (consumed, Some(line));
                }
                (false, None) => {
                    self.next_index = read_to;
                    return (consumed, None);
                }
            }
        }
    }

    /// While discarding, drops the front of a fresh chunk that still belongs to the long line,
    /// so callers holding no pending bytes need not buffer it at all.
    pub(crate) fn skip_discarded<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        if !self.discarding {
            return chunk;
        }
        match self.find_newline(chunk) {
            Some(offset) => {
                self.discarding = false;
                self.next_index = 0;
                &chunk[offset + 1..]
            }
            None => &[],
        }
    }

    // `self` only feeds the test-build scan counter.
    #[cfg_attr(not(test), allow(clippy::unused_self))]
    fn find_newline(&mut self, haystack: &[u8]) -> Option<usize> {
        #[cfg(test)]
        {
            self.scanned += haystack.len();
        }
        memchr::memchr(b'\n', haystack)
    }

    #[cfg(test)]
    pub(crate) fn scanned(&self) -> usize {
        self.scanned
    }
}

/// A line found by [`LineEngine::frame`].
#[derive(Clone, Copy, Debug)]
enum Framed {
    /// A line with content at `buf[start..end]` (its `\n` excluded).
    Line { start: usize, end: usize },
    /// A line over the limit; the engine now discards the rest of it.
    TooLong,
}

/// A line holding only whitespace (`\r` included, and whatever else JavaScript's `trim`
/// removes) carries no value.
fn is_blank(raw: &[u8]) -> bool {
    // Stops at the first byte of any real line, so this costs nothing on the hot path.
    match raw.iter().position(|&b| !is_json_whitespace(b)) {
        None => true,
        Some(first) if may_start_js_whitespace(raw[first]) => std::str::from_utf8(raw)
            .is_ok_and(|text| text.trim_matches(is_js_whitespace).is_empty()),
        Some(_) => false,
    }
}

/// Decodes one line (without its `\n`) as a `T`.
fn parse_line<T: DeserializeOwned>(raw: &[u8], line: u64) -> Result<T, Error> {
    let (value, leading) = line_text(raw, line)?;
    serde_json::from_str(value).map_err(|source| Error::from_json(line, raw, leading, &source))
}

/// One line (without its `\n`) as the text to parse, with how many bytes of leading
/// whitespace were trimmed off (errors count columns from the start of the line as received).
fn line_text(raw: &[u8], line: u64) -> Result<(&str, usize), Error> {
    // serde_json::from_slice skips UTF-8 checks in strings it ignores (unknown fields),
    // so validate the whole line once and let the parser trust it.
    let text = match std::str::from_utf8(raw) {
        Ok(text) => text,
        Err(err) => {
            return Err(Error::InvalidUtf8 {
                line,
                column: err.valid_up_to() + 1,
                excerpt: excerpt(raw),
            })
        }
    };
    // Parse `line.trim()`, as the TypeScript decoder does. On a usual line this looks at one
    // character per edge; columns in errors still count from the start of the line as received.
    let start = text.trim_start_matches(is_js_whitespace);
    let value = start.trim_end_matches(is_js_whitespace);
    Ok((value, text.len() - start.len()))
}

/// An output buffer lines are appended to, and that a refused line can be cut back out of.
///
/// Implemented for `BytesMut` (what `FramedWrite` encodes into) and `Vec<u8>`.
pub trait OutputBuf: BufMut + AsRef<[u8]> + AsMut<[u8]> {
    /// Shortens the buffer to its first `len` bytes; does nothing if it is not longer.
    fn truncate_to(&mut self, len: usize);
}

impl OutputBuf for BytesMut {
    fn truncate_to(&mut self, len: usize) {
        self.truncate(len);
    }
}

impl OutputBuf for Vec<u8> {
    fn truncate_to(&mut self, len: usize) {
        self.truncate(len);
    }
}

/// The encoders' rule for the lines they write, for a layer that writes lines itself.
///
/// A line longer than the limit is refused where it is written rather than where it is read:
/// the peer would drop it as too long, and the writer is the one who can say which value it
/// was. The length counted is what was actually appended, so a layer that transforms values
/// (`enclave-crypto` turns an event into an `enc` line about 4/3 as long) checks its own
/// output, not its input. Lines are numbered as written, 1-based; a refused line takes no
/// number, since nothing of it reaches the output.
///
/// ```
/// use bytes::{BufMut, BytesMut};
/// use enclave_ndjson::{Error, LineLimit};
///
/// let mut limit = LineLimit::new(8);
/// let mut out = BytesMut::from("kept\n");
///
/// let start = out.len();
/// out.put_slice(b"\"short\"\n");
/// limit.commit_line(&mut out, start)?;
///
/// let start = out.len();
/// out.put_slice(b"\"much too long\"\n");
/// let err = limit.commit_line(&mut out, start).unwrap_err();
/// assert!(matches!(err, Error::LineTooLongToWrite { line: 2, length: 15, limit: 8 }));
/// assert_eq!(&out[..], b"kept\n\"short\"\n", "the refused line is cut back out");
/// assert_eq!(limit.lines_written(), 1);
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineLimit {
    max_length: usize,
    written: u64,
}

impl LineLimit {
    /// A limit of `max_line_length` bytes per line, not counting the `\n`, with no line
    /// written yet.
    pub const fn new(max_line_length: usize) -> Self {
        Self {
            max_length: max_line_length,
            written: 0,
        }
    }

    /// The longest line accepted, in bytes, not counting the `\n`.
    pub const fn max_line_length(&self) -> usize {
        self.max_length
    }

    /// How many lines have been committed so far.
    pub const fn lines_written(&self) -> u64 {
        self.written
    }

    /// Accepts or refuses the one line appended to `buf` since it was `start` bytes long.
    ///
    /// The length checked is that of the appended bytes without one trailing `\n`. Within the
    /// limit, the line is counted; over it, `buf` is cut back to `start` bytes, exactly as it
    /// was before the line, and [`Error::LineTooLongToWrite`] names the line it would have
    /// been. Costs one comparison; no allocation unless it refuses.
    pub fn commit_line<B: OutputBuf + ?Sized>(
        &mut self,
        buf: &mut B,
        start: usize,
    ) -> Result<(), Error> {
        let appended = buf.as_ref().get(start..).unwrap_or_default();
        let length = match appended.split_last() {
            Some((b'\n', line)) => line.len(),
            _ => appended.len(),
        };
        if length > self.max_length {
            buf.truncate_to(start);
            return Err(Error::LineTooLongToWrite {
                line: self.written + 1,
                length,
                limit: self.max_length,
            });
        }
        self.written += 1;
        Ok(())
    }
}

/// Appends `item` as one JSON line (ending in `\n`) to `buf`, held to `limit`.
///
/// On failure `buf` is left exactly as it was, so no half line ever reaches the wire.
pub(crate) fn encode_line<T, B>(item: &T, buf: &mut B, limit: &mut LineLimit) -> Result<(), Error>
where
    T: Serialize + ?Sized,
    B: OutputBuf,
{
    let start = buf.as_ref().len();
    if let Err(err) = serde_json::to_writer((&mut *buf).writer(), item) {
        buf.truncate_to(start);
        return Err(Error::Serialize(err));
    }
    // serde_json escapes newlines in strings, but a `RawValue` is copied verbatim and may be
    // pretty-printed. Outside strings a newline is only whitespace, so a space is equivalent
    // and keeps the value on one line.
    let written = &mut buf.as_mut()[start..];
    let mut from = 0;
    while let Some(offset) = memchr::memchr(b'\n', &written[from..]) {
        written[from + offset] = b' ';
        from += offset + 1;
    }
    buf.put_u8(b'\n');
    limit.commit_line(buf, start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::Value;

    #[derive(Debug, PartialEq, Deserialize, Serialize)]
    struct Rec {
        a: u32,
        b: String,
    }

    /// Feeds `chunks` one at a time, consuming like a `BytesMut` owner would.
    fn run<T: DeserializeOwned>(
        engine: &mut LineEngine,
        chunks: &[&[u8]],
    ) -> Vec<Result<T, Error>> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                let (n, item) = engine.decode::<T>(&buf, false);
                buf.drain(..n);
                match item {
                    Some(item) => out.push(item),
                    None => break,
                }
            }
        }
        loop {
            let (n, item) = engine.decode::<T>(&buf, true);
            buf.drain(..n);
            match item {
                Some(item) => out.push(item),
                None => break,
            }
        }
        assert!(buf.is_empty(), "decode at EOF must consume everything");
        out
    }

    #[test]
    fn newline_search_never_rescans() {
        let mut engine = LineEngine::new(DEFAULT_MAX_LINE_LENGTH);
        let line = format!("{{\"a\":1,\"b\":\"{}\"}}\n", "x".repeat(100_000));
        let mut buf = Vec::new();
        let mut items = 0;
        for &byte in line.as_bytes() {
            buf.push(byte);
            let (n, item) = engine.decode::<Rec>(&buf, false);
            buf.drain(..n);
            if let Some(item) = item {
                assert_eq!(item.unwrap().b.len(), 100_000);
                items += 1;
            }
        }
        assert_eq!(items, 1);
        // Every byte went through memchr exactly once.
        assert_eq!(engine.scanned(), line.len());
    }

    #[test]
    fn too_long_line_is_reported_once_then_skipped() {
        let mut engine = LineEngine::new(8);
        let mut input = Vec::new();
        input.extend_from_slice(b"[1]\n");
        input.extend_from_slice(&[b'7'; 50]);
        input.extend_from_slice(b"\n[2]\n");
        let chunks: Vec<&[u8]> = input.chunks(3).collect();
        let out = run::<Value>(&mut engine, &chunks);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].as_ref().unwrap(), &serde_json::json!([1]));
        assert!(matches!(
            out[1],
            Err(Error::LineTooLong { line: 2, limit: 8 })
        ));
        assert_eq!(out[2].as_ref().unwrap(), &serde_json::json!([2]));
        assert_eq!(engine.line_number(), 3);
    }

    #[test]
    fn limit_counts_the_line_without_its_newline() {
        let mut engine = LineEngine::new(5);
        let out = run::<Value>(&mut engine, &[b"12345\n123456\n1234\n"]);
        assert_eq!(out[0].as_ref().unwrap(), &serde_json::json!(12345));
        assert!(matches!(out[1], Err(Error::LineTooLong { line: 2, .. })));
        assert_eq!(out[2].as_ref().unwrap(), &serde_json::json!(1234));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn discarding_does_not_hold_the_long_line() {
        let mut engine = LineEngine::new(16);
        let mut buf = vec![b'x'; 17];
        let (n, item) = engine.decode::<Value>(&buf, false);
        assert!(matches!(item, Some(Err(Error::LineTooLong { .. }))));
        buf.drain(..n);
        assert!(
            buf.is_empty(),
            "searched bytes of a too-long line are consumed at once"
        );
        for _ in 0..100 {
            buf.extend_from_slice(&[b'y'; 1000]);
            let (n, item) = engine.decode::<Value>(&buf, false);
            buf.drain(..n);
            assert!(item.is_none());
            assert!(buf.is_empty());
        }
        assert_eq!(engine.skip_discarded(b"zz\n[3]\n"), b"[3]\n");
        let (n, item) = engine.decode::<Value>(b"[3]\n", false);
        assert_eq!(n, 4);
        assert_eq!(item.unwrap().unwrap(), serde_json::json!([3]));
    }

    #[test]
    fn final_line_at_eof_and_trailing_blank() {
        let mut engine = LineEngine::new(64);
        let out = run::<Rec>(
            &mut engine,
            &[b"{\"a\":1,\"b\":\"x\"}\n  {\"a\":2,\"b\":\"y\"} \r"],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1].as_ref().unwrap(),
            &Rec {
                a: 2,
                b: "y".into()
            }
        );
        assert_eq!(engine.line_number(), 2);

        let mut engine = LineEngine::new(64);
        let out = run::<Rec>(&mut engine, &[b"{\"a\":1,\"b\":\"x\"}\n \r\n  "]);
        assert_eq!(out.len(), 1);
        assert_eq!(engine.line_number(), 2, "a blank tail is not a line");
    }

    #[test]
    fn shrunk_buffer_is_rescanned_not_a_panic() {
        let mut engine = LineEngine::new(64);
        let (_, item) = engine.decode::<Value>(b"[1,2,3", false);
        assert!(item.is_none());
        let (n, item) = engine.decode::<Value>(b"1\n", false);
        assert_eq!(n, 2);
        assert_eq!(item.unwrap().unwrap(), serde_json::json!(1));
    }

    #[test]
    fn encode_rolls_back_on_failure_and_keeps_one_line() {
        let mut limit = LineLimit::new(DEFAULT_MAX_LINE_LENGTH);
        let mut buf = BytesMut::from(&b"kept\n"[..]);
        let mut bad = std::collections::BTreeMap::new();
        bad.insert(vec![1u8], 1);
        assert!(matches!(
            encode_line(&bad, &mut buf, &mut limit),
            Err(Error::Serialize(_))
        ));
        assert_eq!(&buf[..], b"kept\n");
        assert_eq!(limit.lines_written(), 0);

        let raw =
            serde_json::value::RawValue::from_string("{\n  \"a\": [1,\n 2]\n}".into()).unwrap();
        let mut out = Vec::new();
        encode_line(&raw, &mut out, &mut limit).unwrap();
        assert_eq!(out, b"{   \"a\": [1,  2] }\n");
        let back: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, serde_json::json!({"a": [1, 2]}));
        assert_eq!(limit.lines_written(), 1);
    }

    #[test]
    fn encode_limit_counts_the_line_as_written_without_its_newline() {
        // `"abc"` is 5 bytes as written: at a limit of 5 it passes, at 4 it is refused.
        let mut limit = LineLimit::new(5);
        let mut buf = BytesMut::new();
        encode_line("abc", &mut buf, &mut limit).unwrap();
        // An escaped newline is two bytes on the wire, and that is what counts.
        let err = encode_line("a\nb", &mut buf, &mut limit).unwrap_err();
        assert!(
            matches!(
                err,
                Error::LineTooLongToWrite {
                    line: 2,
                    length: 6,
                    limit: 5
                }
            ),
            "{err:?}"
        );
        assert_eq!(&buf[..], b"\"abc\"\n");
        encode_line("ab", &mut buf, &mut limit).unwrap();
        assert_eq!(limit.lines_written(), 2);
        assert_eq!(&buf[..], b"\"abc\"\n\"ab\"\n");
    }

    #[test]
    fn commit_line_measures_only_what_was_appended() {
        let mut limit = LineLimit::new(3);
        let mut buf = b"0123456789\n".to_vec();
        // Earlier bytes do not count, nor does one trailing newline.
        buf.extend_from_slice(b"abc\n");
        limit.commit_line(&mut buf, 11).unwrap();
        // Without a trailing newline every appended byte counts.
        buf.extend_from_slice(b"abcd");
        assert!(matches!(
            limit.commit_line(&mut buf, 15),
            Err(Error::LineTooLongToWrite {
                line: 2,
                length: 4,
                limit: 3
            })
        ));
        assert_eq!(buf, b"0123456789\nabc\n");
        // Only one trailing newline is the terminator; a second is content.
        buf.extend_from_slice(b"ab\n\n");
        assert!(limit.commit_line(&mut buf, 15).is_ok());
        assert_eq!(limit.lines_written(), 2);
        // A start past the end (nothing appended, buffer shrunk) is an empty line, not a panic.
        limit.commit_line(&mut buf, 100).unwrap();
        assert_eq!(limit.lines_written(), 3);
    }
}

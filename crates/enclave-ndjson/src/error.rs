//! The crate's error types, line-level and fatal, and the excerpts that make line errors readable.

use std::fmt::{self, Write as _};
use std::io;

/// How many characters of a bad line an error quotes.
pub(crate) const EXCERPT_CHARS: usize = 64;

/// How many characters of the parser's or the type's complaint an error message shows.
const REASON_CHARS: usize = 160;

/// What can be wrong with one line, read or written.
///
/// Read-side variants (`LineTooLong`, `InvalidUtf8`, `InvalidJson`, `InvalidValue`) are
/// *item* errors: the decoders hand them out in place of the line's value and carry on
/// with the next line. Write-side variants (`LineTooLongToWrite`, `Serialize`) are returned
/// by the encoders, which then have written nothing, so the next value can still go out.
///
/// None of these is fatal, and none is I/O: the codec's fatal faults are
/// [`std::io::Error`] when decoding and [`WriteError::Io`] when encoding.
///
/// Peer data quoted in an error is bounded when the error is made: an excerpt keeps the
/// first 64 characters of the line and a reason the first 160 characters of the parser's
/// complaint, both escaped, however large the line was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A line was longer than the decoder's limit; its bytes were discarded up to the next `\n`.
    #[error("line {line}: longer than the limit of {limit} bytes; skipped to the next newline")]
    LineTooLong {
        /// 1-based line number.
        line: u64,
        /// The limit in bytes, not counting the `\n`.
        limit: usize,
    },

    /// A line was not valid UTF-8.
    #[error("line {line}: invalid UTF-8 at column {column} (excerpt: \"{excerpt}\")")]
    InvalidUtf8 {
        /// 1-based line number.
        line: u64,
        /// 1-based byte column of the first invalid byte.
        column: usize,
        /// The start of the line without surrounding JSON whitespace, escaped (`\xNN` for
        /// invalid bytes).
        excerpt: String,
    },

    /// A line was not well-formed JSON (syntax error, truncated value, trailing data).
    #[error("line {line}: invalid JSON at column {column}: {reason} (excerpt: \"{excerpt}\")")]
    InvalidJson {
        /// 1-based line number.
        line: u64,
        /// 1-based byte column in the line as received (leading whitespace included).
        column: usize,
        /// The start of the line without surrounding JSON whitespace, escaped.
        excerpt: String,
        /// serde_json's diagnosis without its position, cut and escaped.
        reason: String,
    },

    /// A line was well-formed JSON but not a valid value of the decoded type.
    #[error("line {line}: rejected value at column {column}: {reason} (excerpt: \"{excerpt}\")")]
    InvalidValue {
        /// 1-based line number.
        line: u64,
        /// 1-based byte column in the line as received (leading whitespace included).
        column: usize,
        /// The start of the line without surrounding JSON whitespace, escaped.
        excerpt: String,
        /// The type's own complaint (missing field, wrong type, failed validation), without
        /// its position, cut and escaped.
        reason: String,
    },

    /// A value's line would be longer than the limit the reading side applies, so it was not
    /// written: the peer would refuse it (an `enc` line is about 4/3 of the event it seals).
    #[error("line {line}: {length} bytes, longer than the limit of {limit} bytes; not written")]
    LineTooLongToWrite {
        /// 1-based number of the output line it would have been.
        line: u64,
        /// Its length in bytes, not counting the `\n`.
        length: usize,
        /// The limit in bytes, not counting the `\n`.
        limit: usize,
    },

    /// A value could not be serialized as JSON (e.g. a map with non-string keys).
    #[error("cannot encode value as JSON: {}", Reason(.0))]
    Serialize(serde_json::Error),
}

impl Error {
    /// The 1-based line number the error refers to (an output line for
    /// [`LineTooLongToWrite`](Self::LineTooLongToWrite)).
    pub fn line(&self) -> Option<u64> {
        match self {
            Self::LineTooLong { line, .. }
            | Self::InvalidUtf8 { line, .. }
            | Self::InvalidJson { line, .. }
            | Self::InvalidValue { line, .. }
            | Self::LineTooLongToWrite { line, .. } => Some(*line),
            Self::Serialize(_) => None,
        }
    }

    /// The escaped start of the offending line, when the error quotes one.
    pub fn excerpt(&self) -> Option<&str> {
        match self {
            Self::InvalidUtf8 { excerpt, .. }
            | Self::InvalidJson { excerpt, .. }
            | Self::InvalidValue { excerpt, .. } => Some(excerpt),
            Self::LineTooLong { .. } | Self::LineTooLongToWrite { .. } | Self::Serialize(_) => None,
        }
    }

    /// Builds the error for a line serde_json refused, telling syntax from data faults.
    ///
    /// `leading` is how many bytes of whitespace were trimmed off the front of the line before
    /// parsing, so the column reported is still a column of the line as received. The
    /// serde_json error is dropped here: its message may quote the whole line.
    pub(crate) fn from_json(
        line: u64,
        raw: &[u8],
        leading: usize,
        source: &serde_json::Error,
    ) -> Self {
        let excerpt = excerpt(raw);
        let column = leading + source.column();
        let reason = Reason(source).to_string();
        if source.is_data() {
            Self::InvalidValue {
                line,
                column,
                excerpt,
                reason,
            }
        } else {
            Self::InvalidJson {
                line,
                column,
                excerpt,
                reason,
            }
        }
    }
}

/// Why a value could not be written through [`NdjsonCodec`](crate::NdjsonCodec)'s `Encoder`.
///
/// Two kinds of failure with different consequences, kept apart so neither can be mistaken
/// for the other: a refused value ([`Error`]: not serializable, or its line too long) wrote
/// nothing and the sink stays usable, while an I/O fault comes from the transport and, like
/// any error from a `FramedWrite`, means the stream is done. tokio-util requires an
/// `Encoder`'s error to convert from [`io::Error`], which is why the encoder cannot return
/// the line-level [`Error`] alone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The value was refused before anything was written.
    #[error(transparent)]
    Refused(#[from] Error),

    /// Writing to the underlying byte stream failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// serde_json's message without its "at line 1 column N" tail: we report the position ourselves.
///
/// A type's complaint may quote the offending input whole (`unknown variant \`…\``), so, like
/// the excerpt, it is cut to [`REASON_CHARS`] characters and its control characters escaped.
struct Reason<'a>(&'a serde_json::Error);

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = self.0.to_string();
        let tail = format!(" at line {} column {}", self.0.line(), self.0.column());
        let reason = full.strip_suffix(&tail).unwrap_or(&full);
        for (taken, c) in reason.chars().enumerate() {
            if taken == REASON_CHARS {
                return f.write_str("...");
            }
            // Quotes and backslashes are the message's own punctuation, not input to defuse.
            if matches!(c, '"' | '\'' | '\\') {
                f.write_char(c)?;
            } else {
                write!(f, "{}", c.escape_debug())?;
            }
        }
        Ok(())
    }
}

/// The first [`EXCERPT_CHARS`] characters of a trimmed line, printable and cut on a char boundary.
pub(crate) fn excerpt(raw: &[u8]) -> String {
    let mut out = String::with_capacity(EXCERPT_CHARS + 8);
    let mut taken = 0;
    for chunk in trim_json_whitespace(raw).utf8_chunks() {
        for c in chunk.valid().chars() {
            if taken == EXCERPT_CHARS {
                out.push_str("...");
                return out;
            }
            // escape_debug would also escape `'`, which only adds noise inside double quotes.
            if c == '\'' {
                out.push(c);
            } else {
                out.extend(c.escape_debug());
            }
            taken += 1;
        }
        for byte in chunk.invalid() {
            if taken == EXCERPT_CHARS {
                out.push_str("...");
                return out;
            }
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{byte:02x}");
            taken += 1;
        }
    }
    out
}

/// Whether `c` is whitespace to JavaScript's `String.prototype.trim`, which the TypeScript
/// implementation applies to every line: JSON's four, VT, FF, NBSP, the BOM, the Unicode spaces
/// and the line and paragraph separators.
///
/// `enclave_types::Frame::parse_line` trims with the same set (that crate sits below this one and
/// this one knows nothing of it), so a change here belongs there too.
pub(crate) fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

/// Whether a line starting or ending with byte `b` may carry whitespace beyond JSON's own
/// (`\x0b`, `\x0c`, or the first or last byte of a multi-byte character).
pub(crate) fn may_start_js_whitespace(b: u8) -> bool {
    !b.is_ascii() || b == 0x0b || b == 0x0c
}

/// Whether `b` is whitespace in JSON's grammar (RFC 8259 `ws`).
pub(crate) fn is_json_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// `raw` without leading and trailing JSON whitespace.
pub(crate) fn trim_json_whitespace(raw: &[u8]) -> &[u8] {
    let start = raw
        .iter()
        .position(|&b| !is_json_whitespace(b))
        .unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|&b| !is_json_whitespace(b))
        .map_or(start, |i| i + 1);
    &raw[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_escapes_and_cuts_on_char_boundaries() {
        assert_eq!(excerpt(b"  {\"a\":\t1}\r"), "{\\\"a\\\":\\t1}");
        let long = "é".repeat(100);
        let cut = excerpt(long.as_bytes());
        assert_eq!(cut, format!("{}...", "é".repeat(EXCERPT_CHARS)));
        assert_eq!(excerpt(b"a\xffb'"), "a\\xffb'");
        assert_eq!(excerpt(b" \r\n\t"), "");
    }

    #[test]
    fn error_crosses_threads() {
        fn assert_send_sync<E: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
        assert_send_sync::<WriteError>();
        let io = WriteError::from(io::Error::new(io::ErrorKind::BrokenPipe, "peer hung up"));
        assert_eq!(io.to_string(), "peer hung up");
        let refused = WriteError::from(Error::LineTooLongToWrite {
            line: 7,
            length: 11,
            limit: 10,
        });
        assert_eq!(
            refused.to_string(),
            "line 7: 11 bytes, longer than the limit of 10 bytes; not written"
        );
    }

    #[test]
    fn trim_matches_json_whitespace_only() {
        assert_eq!(trim_json_whitespace(b" \t x y \r"), b"x y");
        // Excerpts keep other whitespace (form feed, NBSP) visible; parsing trims JavaScript's set.
        assert_eq!(trim_json_whitespace(b"\x0cx"), b"\x0cx");
        assert_eq!(trim_json_whitespace(b""), b"");
    }

    #[test]
    fn display_says_what_and_where() {
        let source = serde_json::from_str::<serde_json::Value>("{\"seq\":,").unwrap_err();
        let err = Error::from_json(12, b"{\"seq\":,", 0, &source);
        assert_eq!(
            err.to_string(),
            "line 12: invalid JSON at column 8: expected value (excerpt: \"{\\\"seq\\\":,\")"
        );
        assert_eq!(err.line(), Some(12));
        assert_eq!(err.excerpt(), Some("{\\\"seq\\\":,"));

        let err = Error::LineTooLong { line: 3, limit: 10 };
        assert_eq!(
            err.to_string(),
            "line 3: longer than the limit of 10 bytes; skipped to the next newline"
        );
    }

    #[test]
    fn a_reason_quoting_the_input_is_cut_and_escaped() {
        #[derive(Debug, serde::Deserialize)]
        enum Kind {
            #[allow(dead_code)]
            Known,
        }
        let raw = format!("\"\\u001b[2J\\n{}\"", "x".repeat(100_000));
        let source = serde_json::from_str::<Kind>(&raw).unwrap_err();
        assert!(
            source.to_string().len() > 100_000,
            "serde_json quotes the whole value"
        );
        let message = Error::from_json(4, raw.as_bytes(), 0, &source).to_string();
        assert!(message.len() < 1024, "{} bytes", message.len());
        assert!(!message.chars().any(char::is_control), "{message}");
        assert!(
            message.starts_with(
                "line 4: rejected value at column 100013: unknown variant `\\u{1b}[2J\\nxxx"
            ),
            "{message}"
        );
        assert!(message.contains("xxx... (excerpt: \""), "{message}");
    }

    #[test]
    fn data_errors_are_invalid_value() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Rec {
            a: u32,
        }
        let source = serde_json::from_str::<Rec>("{\"a\":\"x\"}").unwrap_err();
        let err = Error::from_json(1, b"{\"a\":\"x\"}", 0, &source);
        assert!(
            matches!(err, Error::InvalidValue { line: 1, .. }),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .starts_with("line 1: rejected value at column 8: invalid type"));
    }
}

//! The NDJSON decoder target: every face of `enclave-ndjson`'s decoder against a reference model.

use std::fmt::Debug;

use bytes::BytesMut;
use enclave_ndjson::{Error, NdjsonCodec, StreamDecoder, DEFAULT_MAX_LINE_LENGTH};
use enclave_types::Frame;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::codec::Decoder;

/// Bytes at the start of the input that configure the run rather than feed the decoder.
const CONTROL_LEN: usize = 4;
/// Errors quote at most 64 characters, each escaped to at most 10 bytes, plus `...`.
const MAX_EXCERPT_LEN: usize = 64 * 10 + 3;
/// A whole message: the excerpt, a reason of at most 160 escaped characters, and the framing.
const MAX_MESSAGE_LEN: usize = MAX_EXCERPT_LEN + 160 * 10 + 3 + 256;

/// Decodes `data` as NDJSON through [`StreamDecoder`] (whole and chunked), [`NdjsonCodec`]
/// (chunked) and, at the default limit, [`parse_ndjson`](enclave_ndjson::parse_ndjson), and
/// checks each against a line-by-line reference model.
///
/// The first four bytes are a control block: byte 0 picks the item type (`serde_json::Value`
/// when even, [`Frame`] when odd) and the line limit (`byte >> 1`: 0 is the 16 MiB default,
/// otherwise `((byte >> 1) - 1) * 8` bytes, so small limits and the discard path are
/// reachable); bytes 1 to 3 are chunk lengths, used in turn (0 feeds an empty chunk).
///
/// Checked: every face yields exactly the model's items and errors (so chunking never
/// changes the result), never more items than lines, errors with strictly increasing line
/// numbers, bounded excerpts and short printable messages, a pending buffer never longer
/// than the line limit once items are taken, and the model's final line count.
///
/// # Panics
///
/// When one of the invariants above does not hold.
pub fn ndjson_decoder(data: &[u8]) {
    let (control, input) = data.split_at(data.len().min(CONTROL_LEN));
    let mut control = control.to_vec();
    control.resize(CONTROL_LEN, 0);
    let limit = match control[0] >> 1 {
        0 => DEFAULT_MAX_LINE_LENGTH,
        selector => usize::from(selector - 1) * 8,
    };
    let chunks = chunk_lengths(&control[1..]);
    if control[0] & 1 == 0 {
        check::<Value>(input, limit, &chunks);
    } else {
        check::<Frame>(input, limit, &chunks);
    }
}

/// Chunk lengths to cycle through; all zero would never advance, so that means one byte.
fn chunk_lengths(control: &[u8]) -> Vec<usize> {
    let lengths: Vec<usize> = control.iter().map(|&b| usize::from(b)).collect();
    if lengths.iter().all(|&len| len == 0) {
        vec![1]
    } else {
        lengths
    }
}

/// What a decoder produced for one line, in a form that can be compared.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome<T> {
    Item(T),
    TooLong {
        line: u64,
        limit: usize,
    },
    BadUtf8 {
        line: u64,
        column: usize,
    },
    BadJson {
        line: u64,
        /// 1-based byte column in the line as received.
        column: usize,
        syntax: bool,
        /// serde_json's message without its position (which counts from the trimmed value),
        /// cut and escaped as errors quote it.
        reason: String,
    },
}

/// serde_json's message without the " at line L column C" it ends with, as an error quotes
/// it: its first 160 characters, control characters escaped, then `...` if it went on.
fn reason(err: &serde_json::Error) -> String {
    let full = err.to_string();
    let tail = format!(" at line {} column {}", err.line(), err.column());
    let message = full.strip_suffix(&tail).unwrap_or(&full);
    let mut quoted = String::new();
    for (taken, c) in message.chars().enumerate() {
        if taken == 160 {
            quoted.push_str("...");
            break;
        }
        if matches!(c, '"' | '\'' | '\\') {
            quoted.push(c);
        } else {
            quoted.extend(c.escape_debug());
        }
    }
    quoted
}

impl<T> Outcome<T> {
    fn line(&self) -> Option<u64> {
        match self {
            Self::Item(_) => None,
            Self::TooLong { line, .. }
            | Self::BadUtf8 { line, .. }
            | Self::BadJson { line, .. } => Some(*line),
        }
    }

    /// Normalizes a decoder's item, checking what the comparison cannot see.
    pub(crate) fn from_decoded(item: Result<T, Error>) -> Self {
        let err = match item {
            Ok(value) => return Self::Item(value),
            Err(err) => err,
        };
        if let Some(excerpt) = err.excerpt() {
            assert!(
                excerpt.len() <= MAX_EXCERPT_LEN,
                "an error quotes {} bytes: {err}",
                excerpt.len()
            );
        }
        let message = err.to_string();
        assert!(
            message.len() <= MAX_MESSAGE_LEN && !message.chars().any(char::is_control),
            "an error message must be short and printable, got {} bytes: {message:?}",
            message.len()
        );
        let line = err
            .line()
            .unwrap_or_else(|| panic!("a line error without a line number: {err}"));
        assert!(
            err.to_string().starts_with(&format!("line {line}: ")),
            "the message must lead with the line: {err}"
        );
        match err {
            Error::LineTooLong { line, limit } => Self::TooLong { line, limit },
            Error::InvalidUtf8 { line, column, .. } => Self::BadUtf8 { line, column },
            Error::InvalidJson {
                line,
                column,
                reason,
                ..
            } => Self::BadJson {
                line,
                column,
                syntax: true,
                reason,
            },
            Error::InvalidValue {
                line,
                column,
                reason,
                ..
            } => Self::BadJson {
                line,
                column,
                syntax: false,
                reason,
            },
            other => panic!("decoding produced a non-line error: {other}"),
        }
    }
}

/// The reference model: split at `\n`, then judge each line on its own.
fn model<T: DeserializeOwned>(input: &[u8], limit: usize) -> (Vec<Outcome<T>>, u64) {
    let (numbered, lines) = numbered_model(input, limit);
    (
        numbered.into_iter().map(|(_, outcome)| outcome).collect(),
        lines,
    )
}

/// [`model`], with the 1-based line number of each outcome.
pub(crate) fn numbered_model<T: DeserializeOwned>(
    input: &[u8],
    limit: usize,
) -> (Vec<(u64, Outcome<T>)>, u64) {
    let mut outcomes = Vec::new();
    let mut line = 0;
    let mut segments = input.split(|&b| b == b'\n').peekable();
    while let Some(segment) = segments.next() {
        let unterminated = segments.peek().is_none();
        // A tail without `\n` is a line only if it holds a value or breaks the limit.
        if unterminated && segment.len() <= limit && is_blank(segment) {
            break;
        }
        line += 1;
        if segment.len() > limit {
            outcomes.push((line, Outcome::TooLong { line, limit }));
        } else if !is_blank(segment) {
            outcomes.push((
                line,
                match std::str::from_utf8(segment) {
                    Err(err) => Outcome::BadUtf8 {
                        line,
                        column: err.valid_up_to() + 1,
                    },
                    // The TypeScript decoder parses `line.trim()`.
                    Ok(text) => {
                        let value = js_trim(text);
                        let leading = text.len() - text.trim_start_matches(is_js_whitespace).len();
                        match serde_json::from_str(value) {
                            Ok(value) => Outcome::Item(value),
                            Err(err) => Outcome::BadJson {
                                line,
                                column: leading + err.column(),
                                syntax: !err.is_data(),
                                reason: reason(&err),
                            },
                        }
                    }
                },
            ));
        }
    }
    (outcomes, line)
}

/// Blank as the TypeScript decoder sees it: nothing left after `trim()`.
fn is_blank(segment: &[u8]) -> bool {
    std::str::from_utf8(segment).is_ok_and(|text| js_trim(text).is_empty())
}

/// JavaScript's `String.prototype.trim`, written out from the ECMAScript WhiteSpace and
/// LineTerminator productions.
fn js_trim(text: &str) -> &str {
    text.trim_matches(is_js_whitespace)
}

fn is_js_whitespace(c: char) -> bool {
    // WhiteSpace: TAB, VT, FF, SP, NBSP, ZWNBSP (BOM) and category Zs; LineTerminator: LF, CR,
    // LS, PS.
    c == '\u{feff}'
        || matches!(
            c,
            '\t' | '\u{b}' | '\u{c}' | '\n' | '\r' | '\u{2028}' | '\u{2029}'
        )
        || matches!(
            c,
            ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
                ..='\u{200a}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
        )
}

fn check<T: DeserializeOwned + PartialEq + Debug>(input: &[u8], limit: usize, chunks: &[usize]) {
    let (expected, lines) = model::<T>(input, limit);
    // `\n`-separated segments: an upper bound on lines, hence on items and errors.
    let segments = input.split(|&b| b == b'\n').count();

    let (whole, whole_lines) = stream_decoder::<T>(input, limit, &[input.len()]);
    let (chunked, chunked_lines) = stream_decoder::<T>(input, limit, chunks);
    let (codec, codec_lines) = codec::<T>(input, limit, chunks);
    for (face, outcomes, line_number) in [
        ("StreamDecoder fed whole", &whole, whole_lines),
        ("StreamDecoder fed in chunks", &chunked, chunked_lines),
        ("NdjsonCodec fed in chunks", &codec, codec_lines),
    ] {
        assert_eq!(
            outcomes, &expected,
            "{face} (limit {limit}, chunks {chunks:?}) disagrees with the model"
        );
        assert!(
            outcomes.len() <= segments,
            "{face} gave {} items for {segments} lines",
            outcomes.len()
        );
        assert_eq!(
            line_number, lines,
            "{face} counted {line_number} lines, the model {lines}"
        );
        let error_lines: Vec<u64> = outcomes.iter().filter_map(Outcome::line).collect();
        assert!(
            error_lines.windows(2).all(|w| w[0] < w[1]),
            "{face}: error lines not increasing: {error_lines:?}"
        );
    }

    if limit == DEFAULT_MAX_LINE_LENGTH {
        let parsed = enclave_ndjson::parse_ndjson::<T>(input);
        let items: Vec<&T> = expected
            .iter()
            .filter_map(|o| {
                if let Outcome::Item(v) = o {
                    Some(v)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(
            parsed.items.iter().collect::<Vec<_>>(),
            items,
            "parse_ndjson items disagree with the model"
        );
        let errors: Vec<Outcome<T>> = parsed
            .errors
            .into_iter()
            .map(|err| Outcome::from_decoded(Err(err)))
            .collect();
        let expected_errors: Vec<&Outcome<T>> = expected
            .iter()
            .filter(|o| !matches!(o, Outcome::Item(_)))
            .collect();
        assert_eq!(
            errors.iter().collect::<Vec<_>>(),
            expected_errors,
            "parse_ndjson errors disagree with the model"
        );
    }
}

/// Splits `input` into chunks with lengths taken from `lengths` in turn.
fn split<'a>(input: &'a [u8], lengths: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut at = 0;
    let mut turn = 0;
    std::iter::from_fn(move || {
        if at >= input.len() {
            return None;
        }
        let len = lengths[turn % lengths.len()].min(input.len() - at);
        turn += 1;
        let chunk = &input[at..at + len];
        at += len;
        Some(chunk)
    })
}

fn stream_decoder<T: DeserializeOwned>(
    input: &[u8],
    limit: usize,
    lengths: &[usize],
) -> (Vec<Outcome<T>>, u64) {
    let mut decoder = StreamDecoder::<T>::with_max_line_length(limit);
    let mut outcomes = Vec::new();
    let mut last_line = 0;
    for chunk in split(input, lengths) {
        decoder.feed(chunk);
        outcomes.extend(decoder.items().map(Outcome::from_decoded));
        // Memory stays bounded: once items are taken, only a partial line within the limit waits.
        assert!(
            decoder.pending_len() <= limit,
            "{} bytes pending after taking items, over the limit of {limit}",
            decoder.pending_len()
        );
        assert!(
            decoder.line_number() >= last_line,
            "the line count went backwards"
        );
        last_line = decoder.line_number();
    }
    outcomes.extend(decoder.flush().map(Outcome::from_decoded));
    assert_eq!(
        decoder.pending_len(),
        0,
        "bytes left pending after a full flush"
    );
    assert!(!decoder.has_pending(), "has_pending after a full flush");
    (outcomes, decoder.line_number())
}

fn codec<T: DeserializeOwned>(
    input: &[u8],
    limit: usize,
    lengths: &[usize],
) -> (Vec<Outcome<T>>, u64) {
    let mut codec = NdjsonCodec::<T>::with_max_line_length(limit);
    let mut buf = BytesMut::new();
    let mut outcomes = Vec::new();
    for chunk in split(input, lengths) {
        buf.extend_from_slice(chunk);
        while let Some(item) = codec
            .decode(&mut buf)
            .unwrap_or_else(|err| panic!("decode failed outright: {err}"))
        {
            outcomes.push(Outcome::from_decoded(item));
        }
        assert!(
            buf.len() <= limit,
            "{} bytes buffered after decoding, over the limit of {limit}",
            buf.len()
        );
    }
    while let Some(item) = codec
        .decode_eof(&mut buf)
        .unwrap_or_else(|err| panic!("decode_eof failed outright: {err}"))
    {
        outcomes.push(Outcome::from_decoded(item));
    }
    assert!(
        buf.is_empty(),
        "decode_eof left {} bytes in the buffer",
        buf.len()
    );
    (outcomes, codec.line_number())
}

#[cfg(test)]
mod tests {
    use super::{model, split, Outcome};
    use serde_json::{json, Value};

    #[test]
    fn model_counts_blank_and_long_lines_but_not_a_blank_tail() {
        let (outcomes, lines) = model::<Value>(b"[1]\r\n\n  \nxxxxxxxxxx\nnope\n[2] \n  ", 8);
        assert_eq!(lines, 6);
        assert_eq!(outcomes.len(), 4);
        assert_eq!(outcomes[0], Outcome::Item(json!([1])));
        assert_eq!(outcomes[1], Outcome::TooLong { line: 4, limit: 8 });
        assert!(matches!(
            outcomes[2],
            Outcome::BadJson {
                line: 5,
                syntax: true,
                ..
            }
        ));
        assert_eq!(outcomes[3], Outcome::Item(json!([2])));
    }

    #[test]
    fn split_cycles_lengths_and_keeps_every_byte() {
        let chunks: Vec<&[u8]> = split(b"abcdefgh", &[3, 0, 2]).collect();
        assert_eq!(chunks, [&b"abc"[..], b"", b"de", b"fgh"]);
    }
}

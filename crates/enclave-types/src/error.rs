//! The crate's one error type.

/// Everything that can be wrong with a protocol value.
///
/// While deserializing, these errors travel inside `serde_json::Error` (their text is kept), so
/// a caller parsing a line sees, for example,
/// `invalid sessionId "sess_abc": must start with "s_" at line 1 column 38`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An id (`sessionId`, `callId`, `$ref.id`) without its prefix or with nothing after it.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidId {
        /// Wire name of the id (`sessionId`, `callId`, `refId`).
        field: &'static str,
        /// The rejected text, cut to its first 64 characters and `…`.
        value: String,
        /// What rule it breaks.
        reason: String,
    },
    /// A date-time that is not ISO-8601 UTC ending in `Z`.
    #[error(
        "invalid {field} {value:?}: expected an ISO-8601 UTC date-time ending in \"Z\" \
         (e.g. \"2026-11-28T02:00:00.000Z\")"
    )]
    InvalidTimestamp {
        /// Wire name of the field (`expiresAt`, `ts`).
        field: &'static str,
        /// The rejected text, cut to its first 64 characters and `…`.
        value: String,
    },
    /// Any other field that breaks a schema rule (range, emptiness, shape, enum value).
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Wire name of the field, with its parent when that helps (`payload.budgetMs`).
        field: &'static str,
        /// What rule it breaks.
        reason: String,
    },
    /// A `\uD800`–`\uDFFF` escape without its partner. JavaScript strings may hold one; a Rust
    /// `String` cannot, so the line is refused (see `docs/PROTOCOL.md`). serde_json reports
    /// these as "lone leading surrogate" whatever their kind; this names the right one.
    #[error(
        "invalid frame: {context}lone {kind} surrogate \\u{escape:04x} in a string escape \
         at line {line} column {column}"
    )]
    LoneSurrogate {
        /// Where it was found, as the other errors say it (`invalid stdout payload (session
        /// s_1, seq 3): invalid chunk: `); empty at the top level.
        context: String,
        /// `leading (high)` for `\uD800`–`\uDBFF`, `trailing (low)` for `\uDC00`–`\uDFFF`.
        kind: &'static str,
        /// The unpaired escape.
        escape: u16,
        /// Line of the error, as serde_json counts it.
        line: usize,
        /// Column of the error, as serde_json counts it.
        column: usize,
    },
    /// An event filter (`EventFilterConfig`) that is malformed or over a bound: what and where
    /// (`rules[2].content.patterns[0].pattern: …`).
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    /// A line that is not JSON, or JSON that does not match the protocol's shape.
    #[error("invalid frame: {0}")]
    Json(#[from] serde_json::Error),
}

/// How many characters of a peer's value an error quotes; the rest becomes `…`.
pub(crate) const QUOTE_CHARS: usize = 64;

/// A peer's value as an error quotes it: at most [`QUOTE_CHARS`] characters, then `…`.
///
/// Errors are created from untrusted (and, for `enc` lines, decrypted) text; quoting it whole
/// would let a 1 MiB `callId` make a 1 MiB message that repeats the plaintext. Control
/// characters are escaped by the `{:?}` that shows the result.
pub(crate) fn cut(value: &str) -> String {
    match value.char_indices().nth(QUOTE_CHARS) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_owned(),
    }
}

/// Displays a peer's text unquoted (a session id in a message), cut and with control
/// characters escaped.
pub(crate) struct Cut<'a>(pub(crate) &'a str);

impl std::fmt::Display for Cut<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        for (i, c) in self.0.chars().enumerate() {
            if i == QUOTE_CHARS {
                return f.write_char('…');
            }
            if c.is_control() {
                write!(f, "{}", c.escape_debug())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// Cuts every `"…"` quote in an error message to [`QUOTE_CHARS`] characters.
///
/// serde_json quotes a whole string when it has the wrong type (`invalid type: string "…",
/// expected a boolean`), before any code of ours sees it. The field wrappers that add the
/// field's name pass their cause through here, so the message they create stays short.
/// Quotes are `{:?}` output, so a `\` inside one always starts an escape. Borrowed when
/// nothing was cut.
pub(crate) fn shorten_quotes(msg: &str) -> std::borrow::Cow<'_, str> {
    let mut out = String::new();
    let mut rest = msg;
    let mut cut_any = false;
    while let Some(open) = rest.find('"') {
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let mut chars = 0;
        let mut escaped = false;
        let mut end = rest.len();
        let mut cut_at = None;
        for (i, c) in rest.char_indices() {
            if escaped {
                escaped = false;
                continue;
            }
            if c == '"' {
                end = i;
                break;
            }
            if chars == QUOTE_CHARS && cut_at.is_none() {
                cut_at = Some(i);
            }
            chars += 1;
            escaped = c == '\\';
        }
        match cut_at {
            Some(at) => {
                out.push_str(&rest[..at]);
                out.push('…');
                cut_any = true;
            }
            None => out.push_str(&rest[..end]),
        }
        // Keep the closing quote, if any, and go on after it.
        rest = &rest[end..];
        if let Some(after) = rest.strip_prefix('"') {
            out.push('"');
            rest = after;
        }
    }
    if !cut_any {
        return std::borrow::Cow::Borrowed(msg);
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Drops serde_json's trailing " at line L column C" so a wrapped message names one position.
pub(crate) fn strip_position(msg: &str) -> &str {
    if let Some(at) = msg.rfind(" at line ") {
        let tail = &msg[at + " at line ".len()..];
        let mut parts = tail.splitn(2, " column ");
        let line_ok = parts
            .next()
            .is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
        let col_ok = parts
            .next()
            .is_some_and(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()));
        if line_ok && col_ok {
            return &msg[..at];
        }
    }
    msg
}

/// Bounds an error that escaped every field wrapper (the whole line was a 1 MiB string).
/// Short messages, the usual case, are returned untouched so their position stays.
pub(crate) fn bounded<E: serde::de::Error>(e: E) -> E {
    let text = e.to_string();
    match shorten_quotes(&text) {
        std::borrow::Cow::Borrowed(_) => e,
        std::borrow::Cow::Owned(short) => E::custom(short),
    }
}

/// Renames serde_json's lone-surrogate errors. serde_json says "lone leading surrogate in hex
/// escape" for a lone *trailing* surrogate too, and "unexpected end of hex escape" for a
/// leading one followed by anything but `\u`; the offending escape is the last surrogate
/// escape before the error's column, so the line tells which kind it is.
pub(crate) fn surrogate_error(line: &[u8], e: &serde_json::Error) -> Option<Error> {
    // The field wrappers re-create the error with their context, so look at the text's end.
    let text = e.to_string();
    let text = strip_position(&text);
    let context = [
        "lone leading surrogate in hex escape",
        "unexpected end of hex escape",
    ]
    .iter()
    .find_map(|phrase| text.strip_suffix(phrase))?;
    // serde_json's column is the byte offset in the line, just after the failing escape
    // (and at most two more bytes); the pair `\uD8xx\uXXXX` spans 12 bytes. A protocol line is
    // one line: JSON strings cannot hold a raw newline.
    if e.line() != 1 {
        return None;
    }
    let end = e.column().min(line.len());
    let window = &line[end.saturating_sub(16)..end];
    let escape = window
        .windows(6)
        .rev()
        .filter(|w| w[0] == b'\\' && w[1] == b'u')
        .filter_map(|w| {
            std::str::from_utf8(&w[2..])
                .ok()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok())
        })
        .find(|n| (0xD800..=0xDFFF).contains(n))?;
    Some(Error::LoneSurrogate {
        context: context.to_owned(),
        kind: if escape < 0xDC00 {
            "leading (high)"
        } else {
            "trailing (low)"
        },
        escape,
        line: e.line(),
        column: e.column(),
    })
}

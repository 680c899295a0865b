//! Peer text quoted in an error message, the one way every layer above quotes it (the NDJSON
//! layer, which knows nothing of this crate, keeps a byte-level twin for raw lines): cut on a
//! character boundary, control characters escaped, so a message never carries a whole body
//! nor a terminal escape sequence.

/// How many characters of a peer's value (an id, a key id, a header) a message quotes.
pub const EXCERPT_CHARS: usize = 64;

/// How many characters of a peer's message (a refusal's text, a close reason, a body) a
/// message quotes.
pub const MESSAGE_EXCERPT_CHARS: usize = 200;

/// `text` cut to `max_chars` characters (`…` marks a cut), control characters escaped
/// (`\n`, `\u{1b}`): safe to put in any message or log line.
///
/// ```
/// assert_eq!(enclave_types::excerpt("a\u{1b}[31mb", 64), "a\\u{1b}[31mb");
/// assert_eq!(enclave_types::excerpt("abcdef", 3), "abc…");
/// ```
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_mul(2)));
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_cut_on_characters_and_escaped() {
        assert_eq!(
            excerpt("é".repeat(70).as_str(), EXCERPT_CHARS)
                .chars()
                .count(),
            65
        );
        assert_eq!(excerpt("line\nnext\t\"q\"", 64), "line\\nnext\\t\"q\"");
        assert_eq!(excerpt("abc", 3), "abc");
        assert_eq!(excerpt("", 0), "");
    }
}

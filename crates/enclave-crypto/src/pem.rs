//! PEM (RFC 7468) for the two documents a server identity needs: a PKCS#8 `PRIVATE KEY` and
//! an SPKI `PUBLIC KEY`. Strict where it matters (one labelled block, standard base64, no
//! headers), lenient where tools differ (CRLF line ends, any line length, text around the
//! block).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroizing;

/// The longest PEM text read: a P-256 key is a few hundred bytes, so anything this long is
/// not one, and refusing it keeps memory bounded whatever a caller hands in.
pub(crate) const MAX_PEM_LEN: usize = 16 * 1024;

/// Characters of base64 per line when writing, as RFC 7468 and OpenSSL do.
const LINE_CHARS: usize = 64;

/// `der` as a PEM block labelled `label`, lines of 64 characters, ending with a newline.
pub(crate) fn encode(label: &str, der: &[u8]) -> Zeroizing<String> {
    let body = Zeroizing::new(STANDARD.encode(der));
    let mut out = Zeroizing::new(String::with_capacity(body.len() + body.len() / 64 + 64));
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    // Standard base64 is ASCII, so every 64-byte chunk is valid UTF-8.
    for chunk in body.as_bytes().chunks(LINE_CHARS) {
        out.extend(chunk.iter().map(|&b| char::from(b)));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Why a PEM text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PemError {
    /// Longer than [`MAX_PEM_LEN`].
    TooLong,
    /// No `-----BEGIN <label>-----` line; carries the label found instead, if any.
    NoBlock { found: Option<String> },
    /// A BEGIN line without its END line.
    Unterminated,
    /// A header line (`Proc-Type: …`): an encrypted legacy key.
    Headers,
    /// The body is not standard base64.
    Base64,
}

impl PemError {
    /// The reason, for an error message: says what was expected and what was found.
    pub(crate) fn describe(&self, label: &str) -> String {
        match self {
            Self::TooLong => format!("longer than {MAX_PEM_LEN} bytes: not a P-256 key"),
            Self::NoBlock { found: None } => {
                format!("no \"-----BEGIN {label}-----\" line: not a PEM file")
            }
            Self::NoBlock { found: Some(other) } => {
                format!("a PEM \"{other}\" block, expected \"{label}\"")
            }
            Self::Unterminated => format!("no \"-----END {label}-----\" line"),
            Self::Headers => "PEM headers (an encrypted legacy key) are not supported".to_owned(),
            Self::Base64 => format!("the \"{label}\" block is not valid base64"),
        }
    }
}

/// The DER inside the first `label` block of `text` (wiped on drop: it may be a private key).
pub(crate) fn decode(label: &str, text: &str) -> Result<Zeroizing<Vec<u8>>, PemError> {
    if text.len() > MAX_PEM_LEN {
        return Err(PemError::TooLong);
    }
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut lines = text.lines().map(str::trim);
    let mut other = None;
    for line in lines.by_ref() {
        if line == begin {
            let mut body = Zeroizing::new(String::with_capacity(text.len()));
            for line in lines {
                if line == end {
                    let der = STANDARD
                        .decode(body.as_bytes())
                        .map_err(|_| PemError::Base64)?;
                    return Ok(Zeroizing::new(der));
                }
                if line.contains(':') {
                    return Err(PemError::Headers);
                }
                body.push_str(line);
            }
            return Err(PemError::Unterminated);
        }
        if other.is_none() {
            other = line
                .strip_prefix("-----BEGIN ")
                .and_then(|rest| rest.strip_suffix("-----"))
                .map(crate::error::quote);
        }
    }
    Err(PemError::NoBlock { found: other })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_64_character_lines() {
        let der: Vec<u8> = (0..=200u8).collect();
        let pem = encode("PUBLIC KEY", &der);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN PUBLIC KEY-----");
        assert_eq!(lines.last(), Some(&"-----END PUBLIC KEY-----"));
        assert!(lines[1..lines.len() - 1].iter().all(|l| l.len() <= 64));
        assert_eq!(lines[1].len(), 64);
        assert_eq!(*decode("PUBLIC KEY", &pem).unwrap(), der);
    }

    #[test]
    fn accepts_crlf_and_surrounding_text() {
        let pem = encode("PRIVATE KEY", b"abc").replace('\n', "\r\n");
        let text = format!("comment\r\n{pem}trailing");
        assert_eq!(*decode("PRIVATE KEY", &text).unwrap(), b"abc");
    }

    #[test]
    fn refuses_what_it_cannot_read_and_says_why() {
        let sec1 = encode("EC PRIVATE KEY", b"abc");
        let err = decode("PRIVATE KEY", &sec1).unwrap_err();
        assert_eq!(
            err,
            PemError::NoBlock {
                found: Some("EC PRIVATE KEY".to_owned())
            }
        );
        assert!(err.describe("PRIVATE KEY").contains("\"EC PRIVATE KEY\""));
        assert_eq!(
            decode("PUBLIC KEY", "hello"),
            Err(PemError::NoBlock { found: None })
        );
        assert_eq!(
            decode("PUBLIC KEY", "-----BEGIN PUBLIC KEY-----\nAAAA\n"),
            Err(PemError::Unterminated)
        );
        assert_eq!(
            decode(
                "PUBLIC KEY",
                "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n"
            ),
            Err(PemError::Base64)
        );
        assert_eq!(
            decode(
                "PRIVATE KEY",
                "-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END PRIVATE KEY-----"
            ),
            Err(PemError::Headers)
        );
        assert_eq!(
            decode("PUBLIC KEY", &"A".repeat(MAX_PEM_LEN + 1)),
            Err(PemError::TooLong)
        );
    }
}

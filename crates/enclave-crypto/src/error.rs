//! The crate's one error type, its codes, and the one way it says where.

use std::borrow::Cow;
use std::fmt;

/// Everything that can go wrong in the encryption layer.
///
/// Every variant has a code ([`Error::code`], an [`ErrorCode`]) and, where the failure
/// concerns a line or an envelope, a [`Location`] ([`Error::location`]): the input line, the
/// session and the `seq`, whichever are known. Messages never contain key material, and
/// every piece of peer data they quote is cut to a few dozen characters when the error is
/// created, so an error is small whatever the input was.
///
/// These are *item* errors: a codec hands them out in place of one line and carries on.
/// Fatal I/O faults are `std::io::Error`s, a different type (see [`WriteError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A peer's public key is not a valid uncompressed P-256 point in standard base64.
    #[error("invalid public key: {reason}")]
    InvalidPublicKey {
        /// What is wrong with the key.
        reason: &'static str,
    },

    /// A hello names a curve, algorithm or KDF this layer does not speak.
    #[error("unsupported {field} {value:?} (this layer speaks {supported})")]
    UnsupportedAlgorithm {
        /// Which hello field: `curve`, `supportedAlgorithms`, `selectedAlgorithm` or `kdf`.
        field: &'static str,
        /// The value the peer sent (cut to 64 characters).
        value: String,
        /// The value this layer supports.
        supported: &'static str,
    },

    /// The hello exchange could not be completed.
    #[error("handshake failed: {reason}")]
    HandshakeFailed {
        /// Why.
        reason: Cow<'static, str>,
    },

    /// HKDF, ECDH or key import failed (bad length, output too long).
    #[error("key derivation failed: {reason}")]
    KeyDerivationFailed {
        /// Why.
        reason: &'static str,
    },

    /// The operating system's random number generator could not be read.
    #[error("system randomness unavailable while {during}")]
    RandomnessUnavailable {
        /// What needed it: a key pair, a nonce prefix, a random nonce.
        during: &'static str,
    },

    /// A message could not be sealed (no `seq`, another session, too long for AES-GCM).
    #[error("cannot seal{}: {reason}", located(.at))]
    SealFailed {
        /// Where.
        at: Location,
        /// Why.
        reason: Cow<'static, str>,
    },

    /// A message could not be written as JSON (e.g. a hand-built value the model refuses to
    /// write); nothing was sealed and no nonce was spent.
    #[error("cannot encode{}: {reason}", located(.at))]
    Unencodable {
        /// Where.
        at: Location,
        /// The serializer's complaint (cut to 160 characters).
        reason: String,
    },

    /// A sealed line would be longer than the line limit a reader applies; nothing was written.
    #[error("sealed line{} would be {len} bytes, over the line limit of {limit}", located(.at))]
    LineTooLong {
        /// Where (the output line that was refused).
        at: Location,
        /// The length the line would have had, without its `\n`.
        len: usize,
        /// The limit.
        limit: usize,
    },

    /// An envelope could not be opened: bad base64, authentication, inner JSON, no key yet.
    #[error("decryption failed{}: {reason}", located(.at))]
    DecryptionFailed {
        /// Where.
        at: Location,
        /// What failed (peer data in it is cut to 160 characters).
        reason: Cow<'static, str>,
    },

    /// The envelope's `kid` is not the key this opener holds.
    #[error("unknown key id {found:?}{} (expected {expected:?})", located(.at))]
    KeyIdMismatch {
        /// Where.
        at: Location,
        /// The key id of this opener's key.
        expected: String,
        /// The key id the envelope names (cut to 64 characters).
        found: String,
    },

    /// The envelope belongs to another session than the one this opener was agreed for.
    #[error("envelope for another session{} (this key belongs to session {expected})", located(.at))]
    WrongSession {
        /// Where (the envelope's session, cut to 64 characters).
        at: Location,
        /// The session this opener's key was agreed for.
        expected: String,
    },

    /// The decrypted message does not carry the `sessionId`, `seq` or `protocolVersion` of
    /// the envelope around it: the envelope was moved or relabelled.
    #[error("envelope{} contains {inner}", located(.at))]
    EnvelopeMismatch {
        /// Where (the envelope's outer values).
        at: Location,
        /// What the inner message carries instead (peer data cut to 64 characters).
        inner: String,
    },

    /// A plaintext message arrived where only envelopes are accepted: encryption is required,
    /// or the connection has keys.
    #[error("plaintext message refused{}: {reason}", located(.at))]
    PlaintextRefused {
        /// Where.
        at: Location,
        /// Why plaintext is not accepted here.
        reason: &'static str,
    },

    /// An authentic envelope was seen again: its `seq` is not after the last one accepted,
    /// or its nonce was accepted before.
    #[error("replay refused{}: {reason}", located(.at))]
    Replay {
        /// Where.
        at: Location,
        /// What gave it away.
        reason: Cow<'static, str>,
    },

    /// A key has sealed (or a peer has used) its full budget of messages.
    #[error("key {kid:?} expired: {limit} messages per key reached, a new handshake is needed")]
    KeyExpired {
        /// The key id (cut to 64 characters).
        kid: String,
        /// The message limit per key.
        limit: u64,
    },

    /// A `ServerHello` signature was refused: missing while the server's key is pinned,
    /// malformed, or not valid over the handshake transcript.
    #[error("server signature refused: {reason}")]
    SignatureInvalid {
        /// Why.
        reason: Cow<'static, str>,
    },

    /// A server identity key could not be read: a PKCS#8 signing key or an SPKI public key
    /// (the message names the file when there is one).
    #[error("invalid {document}: {reason}")]
    InvalidIdentityKey {
        /// Which document: `signing key` or `server public key`.
        document: &'static str,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },

    /// The NDJSON layer below could not read or write a line (it names the line).
    #[error(transparent)]
    Frame(#[from] enclave_ndjson::Error),
}

/// The error codes, as the TypeScript implementation's `EncryptionErrorCode` spells them,
/// plus this crate's own for failures that implementation has no code for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `ENCRYPTION_HANDSHAKE_FAILED`
    HandshakeFailed,
    /// `ENCRYPTION_KEY_DERIVATION_FAILED`
    KeyDerivationFailed,
    /// `ENCRYPTION_DECRYPTION_FAILED`
    DecryptionFailed,
    /// `ENCRYPTION_NONCE_REUSE`
    NonceReuse,
    /// `ENCRYPTION_KEY_EXPIRED`
    KeyExpired,
    /// `ENCRYPTION_UNSUPPORTED_ALGORITHM`
    UnsupportedAlgorithm,
    /// `ENCRYPTION_INVALID_PUBLIC_KEY`
    InvalidPublicKey,
    /// `ENCRYPTION_SIGNATURE_VERIFICATION_FAILED`
    SignatureVerificationFailed,
    /// `ENCRYPTION_INVALID_IDENTITY_KEY` (ours): a signing key or a pinned public key
    /// could not be read.
    InvalidIdentityKey,
    /// `ENCRYPTION_SEAL_FAILED` (ours: the TypeScript code reports sealing failures as
    /// decryption failures).
    SealFailed,
    /// `ENCRYPTION_RANDOMNESS_UNAVAILABLE` (ours).
    RandomnessUnavailable,
    /// `FRAME_ERROR`: a line could not be read or written (not an encryption failure).
    Frame,
}

impl ErrorCode {
    /// The code as it travels in JSON errors.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::HandshakeFailed => "ENCRYPTION_HANDSHAKE_FAILED",
            Self::KeyDerivationFailed => "ENCRYPTION_KEY_DERIVATION_FAILED",
            Self::DecryptionFailed => "ENCRYPTION_DECRYPTION_FAILED",
            Self::NonceReuse => "ENCRYPTION_NONCE_REUSE",
            Self::KeyExpired => "ENCRYPTION_KEY_EXPIRED",
            Self::UnsupportedAlgorithm => "ENCRYPTION_UNSUPPORTED_ALGORITHM",
            Self::InvalidPublicKey => "ENCRYPTION_INVALID_PUBLIC_KEY",
            Self::SignatureVerificationFailed => "ENCRYPTION_SIGNATURE_VERIFICATION_FAILED",
            Self::InvalidIdentityKey => "ENCRYPTION_INVALID_IDENTITY_KEY",
            Self::SealFailed => "ENCRYPTION_SEAL_FAILED",
            Self::RandomnessUnavailable => "ENCRYPTION_RANDOMNESS_UNAVAILABLE",
            Self::Frame => "FRAME_ERROR",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Where something happened: the input or output line, the session, the `seq`. Each part
/// is present when the layer that found the fault knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Location {
    /// 1-based line number (input line when reading, output line when writing).
    pub line: Option<u64>,
    /// The envelope's or message's `sessionId` (cut to 64 characters).
    pub session: Option<String>,
    /// The envelope's or message's `seq`.
    pub seq: Option<u64>,
}

impl Location {
    /// Nowhere in particular.
    pub const NONE: Self = Self {
        line: None,
        session: None,
        seq: None,
    };

    /// A session and a `seq`.
    pub fn message(session: &str, seq: Option<u64>) -> Self {
        Self {
            line: None,
            session: Some(quote(session)),
            seq,
        }
    }

    fn is_empty(&self) -> bool {
        self.line.is_none() && self.session.is_none() && self.seq.is_none()
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(line) = self.line {
            write!(f, "line {line}")?;
            sep = ", ";
        }
        if let Some(session) = &self.session {
            write!(f, "{sep}session {session}")?;
            sep = ", ";
        }
        if let Some(seq) = self.seq {
            write!(f, "{sep}seq {seq}")?;
        }
        Ok(())
    }
}

/// " (line 3, session s_…, seq 4)" when anything is known, nothing otherwise.
fn located(at: &Location) -> String {
    if at.is_empty() {
        String::new()
    } else {
        format!(" ({at})")
    }
}

/// The variants that carry a [`Location`], listed once for [`Error::location`] and its
/// mutable twin.
macro_rules! located_variants {
    ($error:expr) => {
        match $error {
            Error::SealFailed { at, .. }
            | Error::Unencodable { at, .. }
            | Error::LineTooLong { at, .. }
            | Error::DecryptionFailed { at, .. }
            | Error::KeyIdMismatch { at, .. }
            | Error::WrongSession { at, .. }
            | Error::EnvelopeMismatch { at, .. }
            | Error::PlaintextRefused { at, .. }
            | Error::Replay { at, .. } => Some(at),
            _ => None,
        }
    };
}

impl Error {
    /// The error's code (e.g. [`ErrorCode::DecryptionFailed`], which displays as
    /// `ENCRYPTION_DECRYPTION_FAILED`).
    ///
    /// A plaintext message refused, a wrong `kid`, an envelope of another session and an
    /// envelope moved to another position all report `ENCRYPTION_DECRYPTION_FAILED`: to the
    /// peer they are all "this line did not open to an authentic message here". A replay,
    /// by `seq` or by nonce, reports `ENCRYPTION_NONCE_REUSE`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidPublicKey { .. } => ErrorCode::InvalidPublicKey,
            Self::UnsupportedAlgorithm { .. } => ErrorCode::UnsupportedAlgorithm,
            Self::HandshakeFailed { .. } => ErrorCode::HandshakeFailed,
            Self::KeyDerivationFailed { .. } => ErrorCode::KeyDerivationFailed,
            Self::RandomnessUnavailable { .. } => ErrorCode::RandomnessUnavailable,
            Self::SealFailed { .. } => ErrorCode::SealFailed,
            Self::Unencodable { .. } | Self::LineTooLong { .. } | Self::Frame(_) => {
                ErrorCode::Frame
            }
            Self::DecryptionFailed { .. }
            | Self::KeyIdMismatch { .. }
            | Self::WrongSession { .. }
            | Self::EnvelopeMismatch { .. }
            | Self::PlaintextRefused { .. } => ErrorCode::DecryptionFailed,
            Self::Replay { .. } => ErrorCode::NonceReuse,
            Self::KeyExpired { .. } => ErrorCode::KeyExpired,
            Self::SignatureInvalid { .. } => ErrorCode::SignatureVerificationFailed,
            Self::InvalidIdentityKey { .. } => ErrorCode::InvalidIdentityKey,
        }
    }

    /// Where the fault was found, for the variants that concern a line or a message.
    pub fn location(&self) -> Option<&Location> {
        located_variants!(self)
    }

    fn location_mut(&mut self) -> Option<&mut Location> {
        located_variants!(self)
    }

    /// The 1-based line the fault was found on, when a codec knows it.
    pub fn line(&self) -> Option<u64> {
        match self {
            Self::Frame(inner) => inner.line(),
            other => other.location().and_then(|at| at.line),
        }
    }

    /// Records the line the fault was found on (a no-op for errors that concern no line, and
    /// for framing errors, which name their line already).
    #[must_use]
    pub fn at_line(mut self, line: u64) -> Self {
        if let Some(at) = self.location_mut() {
            at.line.get_or_insert(line);
        }
        self
    }
}

/// The fatal error of the encoders: the sink failed, or a message could not be written
/// (then nothing was written, and the stream can go on).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Writing to the underlying transport failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The message could not be sealed or written; nothing was written for it.
    #[error(transparent)]
    Message(#[from] Error),
}

/// How many characters of a parser's complaint a message quotes.
const REASON_CHARS: usize = 160;

/// Peer data cut to [`EXCERPT_CHARS`](enclave_types::EXCERPT_CHARS) characters, control
/// characters escaped: safe in any message.
pub(crate) fn quote(value: &str) -> String {
    enclave_types::excerpt(value, enclave_types::EXCERPT_CHARS)
}

/// A parser's complaint (which may itself quote peer data) cut to 160 characters.
pub(crate) fn reason(value: &dyn fmt::Display) -> String {
    enclave_types::excerpt(&value.to_string(), REASON_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_bounded_and_escaped() {
        let long = "é".repeat(1 << 20);
        assert_eq!(
            quote(&long).chars().count(),
            enclave_types::EXCERPT_CHARS + 1
        );
        assert_eq!(quote("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        let err = format!("x{}", "y".repeat(1 << 20));
        assert!(reason(&err).len() < 4 * REASON_CHARS);
    }

    #[test]
    fn location_displays_what_is_known_in_one_order() {
        let mut at = Location::message("s_a", Some(4));
        assert_eq!(at.to_string(), "session s_a, seq 4");
        at.line = Some(3);
        assert_eq!(at.to_string(), "line 3, session s_a, seq 4");
        assert_eq!(located(&Location::NONE), "");
        let err = Error::PlaintextRefused {
            at: Location::message("s_a", Some(4)),
            reason: "encryption is required",
        }
        .at_line(9);
        assert_eq!(
            err.to_string(),
            "plaintext message refused (line 9, session s_a, seq 4): encryption is required"
        );
        assert_eq!(err.line(), Some(9));
        assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED");
        // A line once recorded is not overwritten by a caller further up.
        assert_eq!(err.at_line(12).line(), Some(9));
    }
}

//! The crate's one error type and its mapping to the protocol's error codes.

use std::borrow::Cow;

/// Everything that can go wrong in the encryption layer.
///
/// Each variant maps to one of the TypeScript implementation's `EncryptionErrorCode`s through
/// [`Error::code`]. Messages say what failed and where (session, seq, line when known) and
/// never contain key material.
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
        /// The value the peer sent (truncated to 64 characters).
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

    /// HKDF or key import failed (bad length, output too long).
    #[error("key derivation failed: {reason}")]
    KeyDerivationFailed {
        /// Why.
        reason: &'static str,
    },

    /// An envelope or message could not be opened or sealed.
    #[error("decryption failed{}: {reason}", located(.location.as_ref()))]
    DecryptionFailed {
        /// The envelope's session and seq (none for bare messages).
        location: Option<Location>,
        /// What failed: bad base64, wrong nonce length, authentication, inner JSON, ...
        reason: Cow<'static, str>,
    },

    /// The envelope's `kid` is not the key this opener holds.
    #[error("unknown key id {found:?} in session {session}, seq {seq} (expected {expected:?})")]
    KeyIdMismatch {
        /// The envelope's `sessionId`.
        session: String,
        /// The envelope's `seq`.
        seq: u64,
        /// The key id of this opener's key.
        expected: String,
        /// The key id the envelope names (truncated to 64 characters).
        found: String,
    },

    /// The decrypted event does not carry the `sessionId` / `seq` of the envelope around it,
    /// so the envelope was moved to another session or position.
    #[error(
        "envelope for session {session}, seq {seq} contains an event for session {inner_session}, seq {inner_seq}"
    )]
    EnvelopeMismatch {
        /// The envelope's `sessionId`.
        session: String,
        /// The envelope's `seq`.
        seq: u64,
        /// The inner event's `sessionId`.
        inner_session: String,
        /// The inner event's `seq`.
        inner_seq: u64,
    },

    /// An event arrived in plaintext while encryption is required.
    #[error("plaintext event refused in session {session}, seq {seq}: encryption is required")]
    PlaintextRefused {
        /// The event's `sessionId`.
        session: String,
        /// The event's `seq`.
        seq: u64,
    },

    /// A nonce was seen again (replayed envelope or a broken peer).
    #[error("nonce {nonce_b64} refused{}: {reason}", located(.location.as_ref()))]
    NonceReuse {
        /// The envelope's session and seq (none for bare messages).
        location: Option<Location>,
        /// The nonce, standard base64 (nonces are public).
        nonce_b64: String,
        /// Seen before, or too old to tell.
        reason: &'static str,
    },

    /// A key has sealed (or a peer has used) its full budget of messages.
    #[error("key {kid:?} expired: {limit} messages per key reached, a new handshake is needed")]
    KeyExpired {
        /// The key id.
        kid: String,
        /// The message limit per key.
        limit: u64,
    },

    /// The NDJSON layer below could not read or write a line (it names the line).
    #[error(transparent)]
    Frame(#[from] enclave_ndjson::Error),

    /// Something failed on the given input line; `source` says what.
    #[error("line {line}: {source}")]
    AtLine {
        /// 1-based input line number.
        line: u64,
        /// What failed on that line.
        #[source]
        source: Box<Error>,
    },

    /// Reading or writing the underlying transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Where in the stream an envelope sat: its `sessionId` and `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The envelope's `sessionId`.
    pub session: String,
    /// The envelope's `seq`.
    pub seq: u64,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "session {}, seq {}", self.session, self.seq)
    }
}

/// " in session s_…, seq N" when known, nothing otherwise.
fn located(location: Option<&Location>) -> String {
    location.map_or_else(String::new, |l| format!(" in {l}"))
}

impl Error {
    /// The TypeScript implementation's error code for this error (e.g.
    /// `ENCRYPTION_DECRYPTION_FAILED`); `FRAME_ERROR` / `IO_ERROR` for failures of the layers
    /// below, which have no encryption code.
    ///
    /// A plaintext event refused in required mode, a wrong `kid` and an envelope moved to
    /// another session or position all report `ENCRYPTION_DECRYPTION_FAILED`: to the peer
    /// they are all "this line did not open to an authentic event here".
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidPublicKey { .. } => "ENCRYPTION_INVALID_PUBLIC_KEY",
            Self::UnsupportedAlgorithm { .. } => "ENCRYPTION_UNSUPPORTED_ALGORITHM",
            Self::HandshakeFailed { .. } => "ENCRYPTION_HANDSHAKE_FAILED",
            Self::KeyDerivationFailed { .. } => "ENCRYPTION_KEY_DERIVATION_FAILED",
            Self::DecryptionFailed { .. }
            | Self::KeyIdMismatch { .. }
            | Self::EnvelopeMismatch { .. }
            | Self::PlaintextRefused { .. } => "ENCRYPTION_DECRYPTION_FAILED",
            Self::NonceReuse { .. } => "ENCRYPTION_NONCE_REUSE",
            Self::KeyExpired { .. } => "ENCRYPTION_KEY_EXPIRED",
            Self::Frame(_) => "FRAME_ERROR",
            Self::AtLine { source, .. } => source.code(),
            Self::Io(_) => "IO_ERROR",
        }
    }

    /// The input line this error was found on, when the codec knows it.
    pub fn line(&self) -> Option<u64> {
        match self {
            Self::AtLine { line, .. } => Some(*line),
            Self::Frame(inner) => inner.line(),
            _ => None,
        }
    }

    /// Attaches a 1-based input line number, unless the error already names its line.
    #[must_use]
    pub fn at_line(self, line: u64) -> Self {
        if self.line().is_some() {
            return self;
        }
        Self::AtLine {
            line,
            source: Box::new(self),
        }
    }
}

/// Cuts peer-supplied strings so an error message stays bounded.
pub(crate) fn truncated(value: &str) -> String {
    const MAX_CHARS: usize = 64;
    match value.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

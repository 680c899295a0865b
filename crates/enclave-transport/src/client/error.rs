//! What can go wrong on the client side of a connection: fatal errors that end it (I/O, TLS,
//! a refusal, an encryption downgrade) and item errors for one bad line, after which the
//! stream goes on.

use std::time::Duration;

use crate::service::Refusal;

/// An error of the client side of the transport.
///
/// [`is_item`](Self::is_item) tells the two kinds apart: an item error concerns one line the
/// server sent (not JSON, not an event, an envelope that does not open) and the connection
/// goes on; every other error ends the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not `http(s)://HOST:PORT` or `ws(s)://HOST:PORT`.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given (cut to 200 characters).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A TCP connection, or a read or write on it, failed.
    #[error("{what} {addr}: {source}")]
    Io {
        /// What was being done (`connect to`, …).
        what: &'static str,
        /// The server's `host:port`.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A step took longer than allowed.
    #[error("{what} {addr}: no answer within {after:?}")]
    Timeout {
        /// What was being done.
        what: &'static str,
        /// The server's `host:port`.
        addr: String,
        /// The limit.
        after: Duration,
    },
    /// TLS could not be set up (no trust store for `https`/`wss`, a bad CA file).
    #[error("TLS: {reason}")]
    Tls {
        /// What is wrong.
        reason: String,
    },
    /// The HTTP exchange failed (the connection broke, the answer was not HTTP).
    #[error("HTTP {what} for session {session}: {source}")]
    Http {
        /// The request (`POST /sessions`, …).
        what: String,
        /// The session, or `-` before one is known.
        session: String,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// The WebSocket failed (handshake, protocol, I/O).
    #[error("WebSocket {what} for session {session}: {source}")]
    WebSocket {
        /// What was being done.
        what: &'static str,
        /// The session, or `-` before one is known.
        session: String,
        /// tungstenite's error.
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// The server refused the request with a reason of the network contract.
    #[error("refused by the server (HTTP {status}): {refusal}")]
    Refused {
        /// The refusal.
        refusal: Refusal,
        /// The HTTP status, or the WebSocket close code.
        status: u16,
    },
    /// The server answered with an error this client cannot map to a refusal reason (an HTML
    /// page, an unknown `code`).
    #[error("{what}: the server answered {status}: {body}")]
    Status {
        /// The request.
        what: String,
        /// The HTTP status or WebSocket close code.
        status: u16,
        /// The start of the body (200 characters at most, escaped).
        body: String,
    },
    /// The server broke the protocol (no `X-Session-ID`, a malformed `opened`, …).
    #[error("protocol error on session {session}: {reason}")]
    Protocol {
        /// The session, or `-` before one is known.
        session: String,
        /// What was wrong.
        reason: String,
    },
    /// The client requires encryption and the server answered without it.
    #[error(
        "session {session}: encryption is required and the server answered without it ({reason})"
    )]
    EncryptionDowngrade {
        /// The session.
        session: String,
        /// Where it was noticed.
        reason: &'static str,
    },
    /// The server's identity could not be verified against the pinned key
    /// ([`ClientConfig::with_server_key`](super::ClientConfig::with_server_key)): the
    /// `ServerHello` has no signature, a malformed one, or one that does not verify over the
    /// handshake transcript (another signer, a changed hello, mode or `session_init`). The
    /// crypto error's code is `ENCRYPTION_SIGNATURE_VERIFICATION_FAILED`. Raised before any
    /// key is derived or any event accepted; terminal — a retry would meet the same server.
    #[error("session {session}: the server's identity is not verified ({}): {source}", .source.code())]
    ServerIdentity {
        /// The session.
        session: String,
        /// The crypto layer's refusal.
        #[source]
        source: Box<enclave_crypto::Error>,
    },
    /// The handshake or a message's encryption failed.
    #[error("encryption on session {session}: {source}")]
    Encryption {
        /// The session.
        session: String,
        /// The crypto layer's error (it carries the TypeScript error code).
        #[source]
        source: Box<enclave_crypto::Error>,
    },
    /// Item error: a line could not be framed (longer than the line limit, or not UTF-8).
    #[error("session {session}: {source}")]
    Line {
        /// The session.
        session: String,
        /// The framing error (with the line number).
        #[source]
        source: Box<enclave_ndjson::Error>,
    },
    /// Item error: a line was neither an event, an envelope nor a control line (not JSON, or
    /// JSON of another shape).
    #[error("session {session}, line {line}: not an event or control line: {source}")]
    Unreadable {
        /// The session.
        session: String,
        /// The 1-based line number on this connection.
        line: u64,
        /// Why the event parser refused it.
        #[source]
        source: Box<enclave_types::Error>,
    },
    /// Item error: an event or envelope was refused by the encryption layer (plaintext on an
    /// encrypted connection, a replayed nonce, a forged tag, another session's line).
    #[error("session {session}, line {line}: {source}")]
    RefusedLine {
        /// The session.
        session: String,
        /// The 1-based line number on this connection.
        line: u64,
        /// The encryption layer's error.
        #[source]
        source: Box<enclave_crypto::Error>,
    },
    /// The connection is closed: nothing more can be sent.
    #[error("session {session}: the connection is closed")]
    Closed {
        /// The session.
        session: String,
    },
}

impl ClientError {
    /// The session the error names in its text (`-` before the server named one), when it
    /// names one: a layer above need not say it again.
    pub fn session(&self) -> Option<&str> {
        match self {
            Self::Http { session, .. }
            | Self::WebSocket { session, .. }
            | Self::Protocol { session, .. }
            | Self::EncryptionDowngrade { session, .. }
            | Self::ServerIdentity { session, .. }
            | Self::Encryption { session, .. }
            | Self::Line { session, .. }
            | Self::Unreadable { session, .. }
            | Self::RefusedLine { session, .. }
            | Self::Closed { session, .. } => Some(session),
            _ => None,
        }
    }

    /// `true` for an error about one received line, after which the connection goes on.
    pub fn is_item(&self) -> bool {
        matches!(
            self,
            Self::Line { .. } | Self::Unreadable { .. } | Self::RefusedLine { .. }
        )
    }

    /// The refusal, when the server refused the request.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Self::Refused { refusal, .. } => Some(refusal),
            _ => None,
        }
    }
}

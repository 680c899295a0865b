//! The transport's one error type: what can go wrong on a connection — fatal errors that end
//! it (I/O, TLS, a refusal, an encryption downgrade, a broken opening exchange) and item
//! errors for one bad line, after which the stream goes on. The HTTP and WebSocket client
//! ([`crate::client`]) and both halves of the byte-stream carriers ([`crate::carrier`]) report
//! through it; the server's routes answer with a [`Refusal`] instead, which an
//! [`Error::Refused`] carries on the other side.

use std::time::Duration;

use enclave_types::SessionId;

use crate::service::Refusal;

/// An error of the transport: of a client connection, or of either half of a byte-stream
/// carrier's opening exchange.
///
/// [`is_item`](Self::is_item) tells the two kinds apart: an item error concerns one line the
/// server sent (not JSON, not an event, an envelope that does not open) and the connection
/// goes on; every other error ends the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not `http(s)://HOST:PORT` or `ws(s)://HOST:PORT`.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given (cut to 200 characters).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Connecting, binding, or a read or write on a connection failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, and with whom (`connect to 127.0.0.1:4000`, `reading
        /// opened`, …).
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A byte-stream peer closed the stream before the line the opening exchange awaited.
    #[error("the peer closed the stream before {what}")]
    ClosedEarly {
        /// The line that was awaited (`open`, `opened`).
        what: &'static str,
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
    /// The request was refused with a reason of the network contract: by the server (on the
    /// client side), or by this side's own policy (a byte-stream server's opening exchange).
    #[error("refused (HTTP {status}): {refusal}")]
    Refused {
        /// The refusal.
        refusal: Refusal,
        /// The HTTP status, the WebSocket close code, or on a byte stream (which has
        /// neither) the HTTP status the contract gives the reason.
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
    /// The peer broke the protocol (no `X-Session-ID`, a malformed `opened`, a first line
    /// that is not `open`, …).
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
    /// ([`ClientConfig::with_server_key`](crate::client::ClientConfig::with_server_key)): the
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

impl Error {
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

    /// How an error names "no session yet" (a new session the server has not named).
    pub const NO_SESSION: &'static str = "-";

    /// How errors name a session, here and in the layers above: its id, or
    /// [`NO_SESSION`](Self::NO_SESSION) before there is one. The one place that spelling lives.
    pub fn session_name(session: Option<&SessionId>) -> String {
        session.map_or_else(|| Self::NO_SESSION.to_owned(), |id| id.as_str().to_owned())
    }

    /// An I/O error while binding a listener or asking for its address.
    pub fn bind(source: std::io::Error) -> Self {
        Self::io("binding a listener", source)
    }

    /// [`Error::Io`] for `what`.
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    /// [`Error::Protocol`] on `session` (`-` before one is known).
    pub(crate) fn protocol(session: Option<&SessionId>, reason: impl Into<String>) -> Self {
        Self::Protocol {
            session: Self::session_name(session),
            reason: reason.into(),
        }
    }

    /// [`Error::Encryption`] on `session` (`-` before one is known).
    pub(crate) fn encryption(session: Option<&SessionId>, source: enclave_crypto::Error) -> Self {
        Self::Encryption {
            session: Self::session_name(session),
            source: Box::new(source),
        }
    }

    /// A failed check of the server's identity: a signature error is
    /// [`Error::ServerIdentity`]; any other (a hello that is not a valid key, …) stays an
    /// encryption error.
    pub(crate) fn identity(session: &SessionId, source: enclave_crypto::Error) -> Self {
        if matches!(source, enclave_crypto::Error::SignatureInvalid { .. }) {
            tracing::warn!(session = %session, "server identity not verified: {source}");
            Self::ServerIdentity {
                session: session.as_str().to_owned(),
                source: Box::new(source),
            }
        } else {
            Self::encryption(Some(session), source)
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

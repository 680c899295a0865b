//! What a [`ReconnectingStream`](super::ReconnectingStream) reports: terminal errors, after
//! which it stops, and item errors about one line, after which it goes on.

use enclave_transport::Error as TransportError;
use enclave_transport::Refusal;

/// An error of the reconnecting client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The server refused the session (bad or missing token, too far behind, expired, epoch
    /// mismatch, unknown session, encryption required, …): terminal, never a silent gap.
    #[error("session {session}: refused, giving up: {refusal}")]
    Refused {
        /// The session, or `-` before one is known.
        session: String,
        /// Why.
        refusal: Refusal,
        /// The HTTP status of the refusal (a WebSocket refusal message carries the same
        /// reason; its close code follows the contract table).
        status: u16,
    },
    /// Every attempt allowed by the policy failed.
    #[error("session {session}: gave up after {attempts} failed attempts; the last: {last}")]
    OutOfAttempts {
        /// The session, or `-` before one is known.
        session: String,
        /// How many attempts failed in a row.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        last: Box<TransportError>,
    },
    /// An error that no retry can fix (a protocol violation, an encryption downgrade, a 4xx
    /// answer without a refusal reason, a bad URL).
    #[error("{}", fatal_text(session, source))]
    Fatal {
        /// The session, or `-` before one is known.
        session: String,
        /// The transport's error.
        #[source]
        source: Box<TransportError>,
    },
    /// The server skipped events: the stream cannot go on without a gap.
    #[error("session {session}: expected seq {expected}, the server sent {got}")]
    Gap {
        /// The session.
        session: String,
        /// The seq due.
        expected: u64,
        /// The seq received.
        got: u64,
    },
    /// Item error: one line could not be read; the stream goes on.
    #[error(transparent)]
    Item(Box<TransportError>),
    /// Too many messages wait for the server's acknowledgement.
    #[error("session {session}: {limit} messages wait for acknowledgement; not sending more")]
    Backlog {
        /// The session.
        session: String,
        /// The bound.
        limit: usize,
    },
    /// The stream was closed by its owner, or has ended.
    #[error("the stream is closed")]
    Closed,
    /// A newer connection (another client holding the session's token) resumed the
    /// session: this stream stops rather than take the session back.
    #[error("session {session}: a newer connection resumed the session; this one ends")]
    Superseded {
        /// The session.
        session: String,
    },
}

impl StreamError {
    /// `true` when the stream stopped for good.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Self::Item(_) | Self::Backlog { .. })
    }
}

/// A fatal error's text: the transport's, prefixed with the session unless it names it
/// (or names one where the stream knows none yet, `-`).
fn fatal_text(session: &str, source: &TransportError) -> String {
    if source
        .session()
        .is_some_and(|named| named == session || session == TransportError::NO_SESSION)
    {
        source.to_string()
    } else {
        format!("session {session}: {source}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fatal(session: &str, source: TransportError) -> String {
        StreamError::Fatal {
            session: session.to_owned(),
            source: Box::new(source),
        }
        .to_string()
    }

    #[test]
    fn a_fatal_error_names_its_session_once() {
        let closed = || TransportError::Closed {
            session: "s_1".to_owned(),
        };
        assert_eq!(
            fatal("s_1", closed()),
            "session s_1: the connection is closed"
        );
        // Before the stream knew its session, the transport's naming is the one.
        assert_eq!(
            fatal(TransportError::NO_SESSION, closed()),
            "session s_1: the connection is closed"
        );
        let bad_url = TransportError::InvalidUrl {
            url: "x".to_owned(),
            reason: "no scheme".to_owned(),
        };
        assert_eq!(
            fatal("s_1", bad_url),
            "session s_1: invalid URL \"x\": no scheme"
        );
    }
}

//! The crate's error type: what went wrong with a session, and which one.

use enclave_types::SessionId;

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A session with this id already exists in the store.
    #[error("session {0} already exists")]
    SessionExists(SessionId),
    /// The store has no session with this id.
    #[error("session {0} is unknown to the store")]
    UnknownSession(SessionId),
    /// An append skipped or repeated a sequence number.
    #[error("session {session}: append of seq {got}, expected seq {expected}")]
    OutOfOrder {
        /// The session.
        session: SessionId,
        /// The seq the store expected next.
        expected: u64,
        /// The seq it was given.
        got: u64,
    },
    /// The session ended (its `final` was published, it expired or was deleted): nothing more
    /// can be published.
    #[error("session {0} is closed")]
    SessionClosed(SessionId),
    /// The hub is shutting down.
    #[error("the session hub is shutting down")]
    ShuttingDown,
    /// An event could not be serialized to count its bytes.
    #[error("session {session}: event seq {seq} cannot be serialized: {source}")]
    Encode {
        /// The session.
        session: SessionId,
        /// The event's seq.
        seq: u64,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// A store backend failed (connection lost, corrupt record, …).
    #[error("session store: {0}")]
    Store(String),
}

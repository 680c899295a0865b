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
    /// The session store failed: unreachable, timed out, over a bound of its own, or holding
    /// a record it cannot read. The hub tries a failed append again for a while
    /// (`HubConfig::with_store_retry`) before it gives the session up.
    #[error("session store, {operation}{}: {source}", for_session(session.as_ref()))]
    Store {
        /// What the store was doing (`append`, `epoch`, `inbox sweep`, …).
        operation: &'static str,
        /// The session, when the operation concerns one.
        session: Option<SessionId>,
        /// What went wrong: the store client's error, or what is wrong with a record.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// [`Error::Store`] for `operation` on `session` (if it concerns one), caused by
    /// `source` (an error, or a message saying what is wrong).
    pub fn store(
        operation: &'static str,
        session: Option<&SessionId>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Store {
            operation,
            session: session.cloned(),
            source: source.into(),
        }
    }
}

/// ` for session s_…`, or nothing.
fn for_session(session: Option<&SessionId>) -> String {
    session.map_or_else(String::new, |id| format!(" for session {id}"))
}

//! Where session state lives: the [`Store`] trait and its in-memory default, [`MemoryStore`].
//!
//! Position and retention belong to the store, not to a connection: a session's metadata, the
//! hashes of its resume tokens, its retained events (seq → event, with their encoded size) and
//! the highest client message seq it holds. A store shared between servers (Redis Streams) can
//! implement the same trait; every operation that must be atomic across servers is one call
//! (`swap_tokens` is a compare-and-set, `append` checks the seq, `advance_client_seq` only
//! moves forward).

mod memory;

use std::fmt;
use std::sync::Arc;

use enclave_types::{SessionId, SessionState, StreamEvent};
use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::Error;

pub use memory::MemoryStore;

/// The SHA-256 hash of a resume token. Stores keep hashes, never tokens.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// The hash of `token`.
    pub fn of(token: &str) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }

    /// Compares without an early exit, so timing says nothing about where hashes differ.
    pub fn matches(&self, other: &Self) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Four bytes identify a hash in logs without making it easy to look up.
        write!(
            f,
            "TokenHash({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// The tokens that may resume a session: the current one and, until the current one has been
/// used once, the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenHashes {
    /// The token issued last.
    pub current: TokenHash,
    /// The token before it, still valid until `current` is used.
    pub previous: Option<TokenHash>,
}

/// A session's metadata (everything but tokens, events and client position).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionMeta {
    /// The session.
    pub session_id: SessionId,
    /// The epoch of the server state the session belongs to.
    pub epoch: u64,
    /// Its state.
    pub state: SessionState,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Expiry time (`session_init.payload.expiresAt`), ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// When its `final` was published, ms since the Unix epoch.
    pub finished_at_ms: Option<u64>,
    /// Whether every connection must be encrypted.
    pub encrypted: bool,
    /// How many `tool_call` events it published.
    pub tool_call_count: u64,
}

impl SessionMeta {
    /// Metadata of a session that is `starting`, with no tool calls and not finished.
    pub fn new(
        session_id: SessionId,
        epoch: u64,
        created_at_ms: u64,
        expires_at_ms: u64,
        encrypted: bool,
    ) -> Self {
        Self {
            session_id,
            epoch,
            state: SessionState::Starting,
            created_at_ms,
            expires_at_ms,
            finished_at_ms: None,
            encrypted,
            tool_call_count: 0,
        }
    }
}

/// What a session retains, and where its positions are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Retention {
    /// The oldest retained seq (`last_seq + 1` when nothing is retained).
    pub first_seq: u64,
    /// The last appended seq (0 before the first append).
    pub last_seq: u64,
    /// How many events are retained.
    pub count: u64,
    /// Their encoded size (JSON line, newline included).
    pub bytes: u64,
    /// The highest seq that has left retention (0 when none has): a resume from at or before
    /// it cannot be served.
    pub evicted_through: u64,
    /// The highest client message seq the session holds (0 when none).
    pub client_seq: u64,
}

/// One session as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Its metadata.
    pub meta: SessionMeta,
    /// The hashes of the tokens that may resume it.
    pub tokens: TokenHashes,
    /// Its retention and positions.
    pub retention: Retention,
    /// Whether it expired (its events are gone; only this record is left, so a resume gets
    /// `expired` rather than `unknown_session`).
    pub expired: bool,
}

/// Session state storage. Object safe: the hub holds an `Arc<dyn Store>`.
///
/// Every method names the session; one for a session the store does not hold fails with
/// [`Error::UnknownSession`], except `load` and `watch`, which answer `None`.
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Adds a session with no events. [`Error::SessionExists`] if the id is taken (expired
    /// records included).
    fn create(&self, meta: SessionMeta, tokens: TokenHashes) -> BoxFuture<'_, Result<(), Error>>;

    /// One session, or `None`.
    fn load(&self, id: &SessionId) -> BoxFuture<'_, Result<Option<Snapshot>, Error>>;

    /// Every session's metadata.
    fn list(&self) -> BoxFuture<'_, Result<Vec<SessionMeta>, Error>>;

    /// Replaces a session's metadata (tokens, events and positions are untouched).
    fn put_meta(&self, meta: SessionMeta) -> BoxFuture<'_, Result<(), Error>>;

    /// Compare-and-set of the token hashes: `true` when they were `expected` and are now
    /// `next`, `false` when someone changed them first.
    fn swap_tokens(
        &self,
        id: &SessionId,
        expected: TokenHashes,
        next: TokenHashes,
    ) -> BoxFuture<'_, Result<bool, Error>>;

    /// Retains `event`, whose seq must be the last one + 1 ([`Error::OutOfOrder`]), counting
    /// `bytes` toward the bound. Wakes the session's watchers.
    fn append(
        &self,
        id: &SessionId,
        event: Arc<StreamEvent>,
        bytes: u64,
    ) -> BoxFuture<'_, Result<Retention, Error>>;

    /// Up to `max` retained events from seq `from` (inclusive), in order. The first one has a
    /// higher seq than `from` when events at or after `from` left retention.
    fn read(
        &self,
        id: &SessionId,
        from: u64,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<Arc<StreamEvent>>, Error>>;

    /// Retention and positions.
    fn retention(&self, id: &SessionId) -> BoxFuture<'_, Result<Retention, Error>>;

    /// Lets every retained event with seq ≤ `through` leave. Idempotent.
    fn trim(&self, id: &SessionId, through: u64) -> BoxFuture<'_, Result<Retention, Error>>;

    /// Records that the session holds client messages up to `seq`; never moves backwards.
    /// Returns the highest seq held afterwards.
    fn advance_client_seq(&self, id: &SessionId, seq: u64) -> BoxFuture<'_, Result<u64, Error>>;

    /// Drops a session's events and marks it expired, keeping its record.
    fn expire(&self, id: &SessionId) -> BoxFuture<'_, Result<(), Error>>;

    /// Forgets a session. `false` when it was not there.
    fn remove(&self, id: &SessionId) -> BoxFuture<'_, Result<bool, Error>>;

    /// The session's last appended seq, updated on every append: how live readers wait.
    /// `None` for an unknown session. The sender is dropped when the session is removed or
    /// expires.
    fn watch(&self, id: &SessionId) -> Option<watch::Receiver<u64>>;
}

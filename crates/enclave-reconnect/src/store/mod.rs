//! Where session state lives: the core [`Store`] trait, the [`Sharing`] capability of a
//! store that several servers share, and the in-memory default, [`MemoryStore`].
//!
//! Position and retention belong to the store, not to a connection: a session's metadata, the
//! hashes of its resume tokens, its retained events (seq → event with its JSON, and the size
//! it counts) and the highest client message seq it holds. Every store does that much: it is
//! the core trait, and every operation that must be atomic across servers is one call of it
//! (`swap_tokens` is a compare-and-set, `append` checks the seqs, `advance_client_seq` only
//! moves forward).
//!
//! Appends come in batches ([`Store::append`] takes a slice of [`NewEvent`]s, consecutive
//! seqs checked and kept as one step, all or nothing), though the hub appends each event as
//! it is published: it waits for one event's room before the next exists. Each [`NewEvent`]
//! carries the size it counts toward the bound, so retention is accounted the same whatever a
//! store keeps of an event.
//!
//! # Shared stores
//! A store that several servers share (Redis Streams) carries what one server's memory
//! carries otherwise. The core trait has room for part of it: the epoch ([`Store::epoch`],
//! `None` for a store private to one process), and [`Store::watch`], which then also wakes
//! for events other servers append. The rest is a capability of its own, [`Sharing`], which
//! such a store hands out through [`Store::sharing`] (`None` by default): the client messages
//! and cancels a session's producer must receive wherever the client is connected
//! ([`Sharing::forward`], [`Sharing::inbox`]), the presence of connections on any server
//! ([`Sharing::attach`], [`Sharing::detach`], [`Presence`]), so a server never expires a
//! session a client holds elsewhere, and the producer's leases ([`Sharing::shutdown`] lets
//! them lapse). The hub asks for it once where sharing changes what it does, never for a flag.

mod appended;
mod memory;

use std::fmt;
use std::sync::Arc;

pub use enclave_transport::EncodedEvent;
use enclave_types::{RuntimeChannelMessage, SessionId, SessionState};
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::Error;

pub use appended::{appended_channel, Appended, AppendedClosed, AppendedSender};
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
///
/// A resume with `previous` (a client whose resume reply was cut) must get `current` again,
/// never a new token that would revoke `current` from whoever holds it; the store keeps only
/// hashes, so `current` is derived from `previous` and `salt` (random, drawn when `current`
/// was issued): whoever holds `previous` can recompute `current`, and a copy of the store
/// (hashes and salt, never a token) cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenHashes {
    /// The token issued last.
    pub current: TokenHash,
    /// The token before it, still valid until `current` is used.
    pub previous: Option<TokenHash>,
    /// The salt from which `current` was derived from `previous`; none when `current` was
    /// drawn at random (a new session, a tokenless resume).
    pub salt: Option<TokenSalt>,
}

impl TokenHashes {
    /// A session's first token: no previous one.
    pub fn first(current: TokenHash) -> Self {
        Self {
            current,
            previous: None,
            salt: None,
        }
    }
}

/// 256 random bits from which a token's successor is derived (see [`TokenHashes`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenSalt(pub [u8; 32]);

impl fmt::Debug for TokenSalt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSalt(…)")
    }
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

/// What one event changed in a session's metadata ([`Store::record_progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Progress {
    /// The session's new state, if it changed.
    pub state: Option<SessionState>,
    /// Tool calls to add to its count.
    pub tool_calls: u64,
    /// When it finished (its `final`), ms since the Unix epoch.
    pub finished_at_ms: Option<u64>,
}

impl Progress {
    /// Applies this progress to `meta`: the new state, the added tool calls, the finish time.
    pub fn apply(&self, meta: &mut SessionMeta) {
        if let Some(state) = self.state {
            meta.state = state;
        }
        meta.tool_call_count += self.tool_calls;
        if self.finished_at_ms.is_some() {
            meta.finished_at_ms = self.finished_at_ms;
        }
    }
}

/// Connections to a session on every server sharing the store (shared stores only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Presence {
    /// How many connections are attached right now, on any server.
    pub attached: u64,
    /// When the count last fell to zero, ms since the Unix epoch (`None` while attached, or
    /// before the first connection).
    pub detached_at_ms: Option<u64>,
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
    /// Its connections across servers (shared stores; a private store leaves the default).
    pub presence: Presence,
}

impl Snapshot {
    /// A snapshot with no connections recorded.
    pub fn new(
        meta: SessionMeta,
        tokens: TokenHashes,
        retention: Retention,
        expired: bool,
    ) -> Self {
        Self {
            meta,
            tokens,
            retention,
            expired,
            presence: Presence::default(),
        }
    }
}

/// What reaches a session's producer through a shared store: a client message (with the seq
/// the store numbered it with) or a cancel.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Inbound {
    /// A client message, each seq once and in order.
    Message(RuntimeChannelMessage),
    /// A cancel through the cancel route of any server.
    Cancel {
        /// The reason given, if any.
        reason: Option<String>,
    },
}

/// One event for [`Store::append`]: the encoded event and the size it counts toward the
/// retention bound.
///
/// The hub counts an event's NDJSON line ([`NewEvent::new`]); a store keeps whatever size it
/// is given, so its accounting never depends on how it holds the event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NewEvent {
    /// The event, with the JSON every connection writes (a shared store writes it as is).
    pub event: Arc<EncodedEvent>,
    /// What it counts toward [`Retention::bytes`].
    pub bytes: u64,
}

impl NewEvent {
    /// `event`, counting its NDJSON line (the newline included), as the hub does.
    pub fn new(event: Arc<EncodedEvent>) -> Self {
        let bytes = event.line_len();
        Self { event, bytes }
    }

    /// `event`, counting `bytes` toward the bound.
    pub fn with_bytes(event: Arc<EncodedEvent>, bytes: u64) -> Self {
        Self { event, bytes }
    }

    /// Its seq.
    pub fn seq(&self) -> u64 {
        self.event.seq
    }
}

/// Session state storage: what every store does. Object safe: the hub holds an
/// `Arc<dyn Store>`.
///
/// Every method names the session; one for a session the store does not hold fails with
/// [`Error::UnknownSession`], except `load` and `watch`, which answer `None`.
///
/// A store that several servers share also implements [`Sharing`] and hands it out through
/// [`Store::sharing`]; the hub asks for it where sharing changes what it does.
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Adds a session with no events. [`Error::SessionExists`] if the id is taken (expired
    /// records included).
    fn create(&self, meta: SessionMeta, tokens: TokenHashes) -> BoxFuture<'_, Result<(), Error>>;

    /// Whether the store answers now (`GET /ready`). The default, for a store in this
    /// process, always does.
    fn ping(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }
    /// One session, or `None`.
    fn load(&self, id: &SessionId) -> BoxFuture<'_, Result<Option<Snapshot>, Error>>;

    /// Every session's metadata.
    fn list(&self) -> BoxFuture<'_, Result<Vec<SessionMeta>, Error>>;

    /// Replaces a session's metadata (tokens, events and positions are untouched).
    fn put_meta(&self, meta: SessionMeta) -> BoxFuture<'_, Result<(), Error>>;

    /// Applies what an event changed to the session's metadata. The default reads the
    /// metadata and writes it back ([`Store::load`], [`Store::put_meta`]); a store that can
    /// update fields in place does it in one step.
    fn record_progress(
        &self,
        id: &SessionId,
        progress: Progress,
    ) -> BoxFuture<'_, Result<(), Error>> {
        let id = id.clone();
        Box::pin(async move {
            let Some(snapshot) = self.load(&id).await? else {
                return Err(Error::UnknownSession(id));
            };
            let mut meta = snapshot.meta;
            progress.apply(&mut meta);
            self.put_meta(meta).await
        })
    }

    /// Compare-and-set of the token hashes: `true` when they were `expected` and are now
    /// `next`, `false` when someone changed them first.
    fn swap_tokens(
        &self,
        id: &SessionId,
        expected: TokenHashes,
        next: TokenHashes,
    ) -> BoxFuture<'_, Result<bool, Error>>;

    /// Retains `events`, in order, as one step: their seqs must be consecutive from the last
    /// one + 1 ([`Error::OutOfOrder`], naming the first that is not, and then none of them is
    /// appended), each counting its
    /// [`bytes`](NewEvent::bytes) toward the bound. Wakes the session's watchers once, with
    /// the last seq. An empty batch appends nothing and answers the retention. Returns the
    /// retention afterwards.
    fn append<'a>(
        &'a self,
        id: &'a SessionId,
        events: &'a [NewEvent],
    ) -> BoxFuture<'a, Result<Retention, Error>>;

    /// [`append`](Self::append) of `events` and [`record_progress`](Self::record_progress)
    /// of what they changed together, as the hub records a batch that moves the session's
    /// state (or counts tool calls, or holds the `final`). The result is the append's: the
    /// default makes the two calls, in that order, and once the events are in a failure to
    /// record their progress is logged (WARN), not returned (the caller would append them
    /// again). A store with round trips does both in one step, as Redis's does in one script.
    fn append_with_progress<'a>(
        &'a self,
        id: &'a SessionId,
        events: &'a [NewEvent],
        progress: Progress,
    ) -> BoxFuture<'a, Result<Retention, Error>> {
        Box::pin(async move {
            let retention = self.append(id, events).await?;
            if let Err(err) = self.record_progress(id, progress).await {
                tracing::warn!(session = %id, %err, "session metadata not updated");
            }
            Ok(retention)
        })
    }

    /// Up to `max` retained events from seq `from` (inclusive), in order. The first one has a
    /// higher seq than `from` when events at or after `from` left retention.
    fn read(
        &self,
        id: &SessionId,
        from: u64,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<Arc<EncodedEvent>>, Error>>;

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
    /// expires. A shared store also wakes for other servers' appends; it may answer `Some`
    /// before it knows whether the session exists, and then drops the sender once it does.
    fn watch(&self, id: &SessionId) -> Option<Appended>;

    /// The epoch of the state this store holds, for a store that outlives its servers (a
    /// store that loses its state gets a new one, so every resume into the lost state is
    /// refused `epoch_mismatch`). Default `None`: the hub's own epoch.
    fn epoch(&self) -> BoxFuture<'_, Result<Option<u64>, Error>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// What other servers sharing this store's sessions need of it, or `None` (the
    /// default) for a store private to one process. With it, the hub routes client messages
    /// and cancels through [`Sharing::forward`] and [`Sharing::inbox`], records presence
    /// with [`Sharing::attach`] and [`Sharing::detach`], and serves sessions produced
    /// elsewhere.
    fn sharing(&self) -> Option<&dyn Sharing> {
        None
    }
}

/// What a store shared by several servers does beyond [`Store`]: the inbox of each
/// session's producer, the presence of connections on every server, and the producer's
/// leases. Reached through [`Store::sharing`]. Object safe.
///
/// Every method names the session; one for a session the store does not hold fails with
/// [`Error::UnknownSession`].
pub trait Sharing: Send + Sync + fmt::Debug {
    /// Hands client messages and cancels to the session's producer, wherever it runs:
    /// messages are numbered (one without a seq takes the next), each seq kept once (one at
    /// or below the highest held is skipped), atomically with the client position. Returns
    /// the highest client seq held.
    fn forward(&self, id: &SessionId, items: Vec<Inbound>) -> BoxFuture<'_, Result<u64, Error>>;

    /// What [`Sharing::forward`] handed to the session, in order, each once, for its
    /// producer; ends when the session is removed or expires.
    fn inbox(&self, id: &SessionId) -> BoxStream<'static, Result<Inbound, Error>>;

    /// A connection to the session was attached on this server: it counts in the
    /// session's [`Presence`] until [`Sharing::detach`].
    fn attach(&self, id: &SessionId) -> BoxFuture<'_, Result<(), Error>>;

    /// A connection attached with [`Sharing::attach`] ended.
    fn detach(&self, id: &SessionId) -> BoxFuture<'_, Result<(), Error>>;

    /// This server produces nothing more (its hub shut down): the store stops renewing the
    /// leases of the sessions it produced, so other servers end them (`final {ok: false}`)
    /// once the leases run out, instead of waiting for them.
    fn shutdown(&self);
}

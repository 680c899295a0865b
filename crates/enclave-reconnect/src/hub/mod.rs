//! The session hub: [`Hub`] implements [`SessionService`] for the transport and hands each
//! new session to the application ([`Hub::accept`]).
//!
//! Concurrency: the map of live sessions has one short lock; each session has a publish lock
//! (seq order, backpressure) and an upstream lock (client message order), both async since
//! they are held across store calls. A background sweeper expires sessions whose last
//! connection ended more than a grace period ago, or whose `expiresAt` passed, and purges
//! their records a grace period later; a heartbeat task per session publishes `heartbeat`
//! events like any other.
//!
//! With a shared store ([`Store::sharing`](crate::store::Store::sharing)) any server serves
//! any session: a resume of a session produced elsewhere attaches a *remote* runtime
//! (events from the store's log, client messages and cancels forwarded through the store to
//! the producer's inbox), the epoch is the store's, and expiry follows the connections
//! counted in the store on every server rather than this server's alone.
//!
//! Every store call goes through [`Shared::store`], which times it in the hub's
//! [`HubMetrics`]; the other counts are made where each thing happens (metrics.rs says
//! which).

mod attach;
mod clock;
mod config;
mod lane;
mod metrics;
mod session;
mod token;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use enclave_transport::{
    Attachment, CreateSession, Refusal, RefusalReason, ResumeSession, SessionInfo, SessionService,
    Submit, SubmitReceipt,
};
use enclave_types::{
    EventPayload, HeartbeatPayload, RuntimeChannelMessage, RuntimeChannelPayload, SessionId,
    SessionInitPayload,
};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use ring::rand::SystemRandom;
use tokio::sync::{mpsc, Mutex as AsyncMutex};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use self::attach::{HubEvents, HubUpstream, Start};
use self::session::{LiveSession, Seat};
use crate::store::{Inbound, SessionMeta, Snapshot, TokenHash, TokenHashes};
use crate::Error;

pub use self::config::{HubConfig, OverflowPolicy};
pub use self::metrics::HubMetrics;
pub use self::session::{AcceptedSession, Messages, SessionHandle, STORE_UNAVAILABLE};

/// How many client messages wait for the application before delivery waits too.
const MESSAGE_QUEUE: usize = 256;
/// How often a resume retries the token compare-and-set it lost to a concurrent resume or
/// submit before it gives up (`bad_token`).
const ROTATE_ATTEMPTS: u32 = 4;

/// What every part of the hub shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The configuration, the store included ([`Shared::store`]).
    pub(crate) config: HubConfig,
    /// The epoch of the state sessions belong to: the hub's own, or the shared store's as
    /// last read (a store that lost its state gets a new one).
    epoch: AtomicU64,
    rng: SystemRandom,
    sessions: Mutex<HashMap<SessionId, Arc<LiveSession>>>,
    /// Creations allowed now ([`HubConfig::max_creations_per_sec`]).
    creations: Mutex<CreationRate>,
    /// Runtimes of sessions produced elsewhere that connections here are attached to (a
    /// shared store), so a newer connection on this server supersedes an older one. Held
    /// weakly: a runtime goes with its last attachment.
    remote: Mutex<HashMap<SessionId, Weak<LiveSession>>>,
    new_sessions: mpsc::UnboundedSender<AcceptedSession>,
    pub(crate) shutdown: CancellationToken,
}

/// Sessions held at once, finished ones in their grace period included, are at most this
/// many times [`HubConfig::max_sessions`].
const HELD_SESSIONS_FACTOR: usize = 2;

/// A token bucket for [`HubConfig::max_creations_per_sec`]: a burst of one second's worth,
/// refilled continuously.
#[derive(Debug)]
struct CreationRate {
    per_sec: u32,
    tokens: f64,
    at: std::time::Instant,
}

impl CreationRate {
    fn new(per_sec: u32) -> Self {
        Self {
            per_sec,
            tokens: f64::from(per_sec),
            at: std::time::Instant::now(),
        }
    }

    /// Whether one more creation is allowed now (`per_sec == 0`: always).
    fn take(&mut self) -> bool {
        if self.per_sec == 0 {
            return true;
        }
        let now = std::time::Instant::now();
        let rate = f64::from(self.per_sec);
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The session hub: sessions that outlive their connections. A cheap handle: clones share
/// the sessions. Create it inside a Tokio runtime (it starts a sweeper task).
#[derive(Debug, Clone)]
pub struct Hub {
    shared: Arc<Shared>,
    accepted: Arc<AsyncMutex<mpsc::UnboundedReceiver<AcceptedSession>>>,
}

impl Hub {
    /// A hub with `config`, and its sweeper.
    ///
    /// # Panics
    /// Outside a Tokio runtime (the sweeper is spawned here).
    pub fn new(config: HubConfig) -> Self {
        let rng = SystemRandom::new();
        let epoch = config.epoch.unwrap_or_else(|| token::epoch(&rng));
        let (new_sessions, accepted) = mpsc::unbounded_channel();
        let creations = Mutex::new(CreationRate::new(config.max_creations_per_sec));
        let shared = Arc::new(Shared {
            creations,
            config,
            epoch: AtomicU64::new(epoch),
            rng,
            sessions: Mutex::new(HashMap::new()),
            remote: Mutex::new(HashMap::new()),
            new_sessions,
            shutdown: CancellationToken::new(),
        });
        tokio::spawn(sweep(Arc::downgrade(&shared)));
        Self {
            shared,
            accepted: Arc::new(AsyncMutex::new(accepted)),
        }
    }

    /// The next new session for the application; `None` after [`Hub::shutdown`].
    pub async fn accept(&self) -> Option<AcceptedSession> {
        let mut accepted = self.accepted.lock().await;
        tokio::select! {
            session = accepted.recv() => session,
            () = self.shared.shutdown.cancelled() => None,
        }
    }

    /// The epoch of this hub's sessions (with a shared store, the store's as last read).
    pub fn epoch(&self) -> u64 {
        self.shared.epoch.load(Ordering::Acquire)
    }

    /// A handle on a live session of this hub.
    pub fn session(&self, id: &SessionId) -> Option<SessionHandle> {
        self.shared.runtime(id).map(|rt| SessionHandle {
            shared: Arc::clone(&self.shared),
            rt,
        })
    }

    /// What a session retains right now: `(events, bytes)`, the figures its bound
    /// ([`HubConfig::max_buffered_events`], [`HubConfig::max_buffered_bytes`]) limits.
    /// `Ok(None)` for a session the store does not hold. One store read, no event copied:
    /// cheap enough to sample while the session runs.
    pub async fn retained(&self, id: &SessionId) -> Result<Option<(u64, u64)>, Error> {
        match self.shared.store().retention(id).await {
            Ok(retention) => Ok(Some((retention.count, retention.bytes))),
            Err(Error::UnknownSession(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The settings the hub runs with (as [`ServerBuilder`](crate::ServerBuilder)'s limits
    /// left them).
    pub fn config(&self) -> &HubConfig {
        &self.shared.config
    }

    /// Stops taking sessions; every attachment yields `Close(ShuttingDown)`, publishers get
    /// [`Error::ShuttingDown`], and background tasks end.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
        // This server produces nothing more: a shared store lets its leases lapse, so other
        // servers end its sessions (`PRODUCER_LOST`) rather than wait for them.
        if let Some(sharing) = self.shared.store().sharing() {
            sharing.shutdown();
        }
    }

    /// Ends a session as the broker's `DELETE` does: the session is cancelled, so every live
    /// stream of it (on any server sharing the store) ends with `error` `SESSION_CANCELLED`
    /// and `final`; once those streams have ended (at most [`DRAIN`] later) its application
    /// side is closed and its record dropped from the store.
    async fn remove(&self, id: &SessionId) -> Result<bool, Error> {
        let shared = &self.shared;
        let local = shared.runtime(id);
        let cancelled = match &local {
            Some(rt) => {
                rt.ended(metrics::Ended::Deleted);
                if let Err(err) = session::terminate(shared, rt, session::TERMINATED_MESSAGE).await
                {
                    tracing::warn!(session = %id, %err, "deleted session: its final not published");
                }
                true
            }
            // The producer may run on another server: the cancel reaches it through the
            // store, and it ends the session's streams.
            None => match shared.store().sharing() {
                Some(sharing) => {
                    let cancel = Inbound::Cancel {
                        reason: Some(session::TERMINATED_MESSAGE.to_owned()),
                    };
                    match sharing.forward(id, vec![cancel]).await {
                        Ok(_) => true,
                        Err(Error::UnknownSession(_)) => false,
                        Err(err) => return Err(err),
                    }
                }
                None => false,
            },
        };
        if cancelled {
            shared.drain(id, local.as_deref()).await;
        }
        let rt = shared.forget(id);
        // A producer on another server sharing the store that missed the cancel sees the
        // record gone at its next sweep, and ends the session there.
        if let Some(rt) = &rt {
            rt.end().await;
        }
        let removed = shared.store().remove(id).await?;
        Ok(removed || rt.is_some())
    }
}

/// How long a `DELETE` waits for the session's live streams to send its `final` and end
/// before the session is removed anyway (a client that does not read loses its stream
/// then, without the `final`).
const DRAIN: Duration = Duration::from_secs(1);

/// How often [`Shared::drain`] looks again.
const DRAIN_POLL: Duration = Duration::from_millis(10);

impl Shared {
    /// The session store (the configuration's: the hub keeps no copy of it), every call
    /// timed in the hub's metrics.
    pub(crate) fn store(&self) -> metrics::StoreCalls<'_> {
        self.config.metrics.store(&self.config.store)
    }

    /// The hub's metrics.
    pub(crate) fn metrics(&self) -> &HubMetrics {
        &self.config.metrics
    }

    /// Takes a session out of this hub's map (its place is given back); the runtime, if
    /// there was one.
    fn forget(&self, id: &SessionId) -> Option<Arc<LiveSession>> {
        let rt = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        if let Some(rt) = &rt {
            rt.leave_metrics();
        }
        rt
    }

    /// Waits (at most [`DRAIN`]) until no connection serves the session any more: this
    /// server's current attachment ended, and with a shared store no server counts one.
    async fn drain(&self, id: &SessionId, local: Option<&LiveSession>) {
        let deadline = Instant::now() + DRAIN;
        loop {
            let here = local.is_some_and(|rt| {
                let attach = rt.attach_state();
                attach.current.generation > 0 && attach.detached_at.is_none()
            });
            let elsewhere = !here
                && self.store().sharing().is_some()
                && matches!(self.store().load(id).await, Ok(Some(s)) if s.presence.attached > 0);
            if !here && !elsewhere {
                return;
            }
            if Instant::now() >= deadline {
                tracing::debug!(session = %id, "deleted session: a stream did not end in time");
                return;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }

    /// The current epoch: the shared store's when it keeps one, else the hub's.
    async fn current_epoch(&self) -> Result<u64, Error> {
        if let Some(epoch) = self.store().epoch().await? {
            self.epoch.store(epoch, Ordering::Release);
        }
        Ok(self.epoch.load(Ordering::Acquire))
    }

    fn runtime(&self, id: &SessionId) -> Option<Arc<LiveSession>> {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// The runtime of a session produced elsewhere: the one connections here already share,
    /// or a new one.
    fn remote_runtime(&self, id: &SessionId) -> Arc<LiveSession> {
        let mut remote = self.remote.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rt) = remote.get(id).and_then(Weak::upgrade) {
            return rt;
        }
        // Forget the runtimes whose connections all ended (bounded by live connections).
        remote.retain(|_, rt| rt.strong_count() > 0);
        let rt = Arc::new(LiveSession::remote(id.clone()));
        remote.insert(id.clone(), Arc::downgrade(&rt));
        rt
    }

    /// Takes a place for `rt` among the sessions, checking the limit and the id under one
    /// lock so concurrent creates cannot overshoot it.
    fn reserve(&self, rt: &Arc<LiveSession>) -> Result<(), Refusal> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if sessions.contains_key(&rt.id) {
            return Err(Refusal::new(
                RefusalReason::SessionExists,
                format!("session {} already exists", rt.id),
            ));
        }
        // Finished, deleted and expired sessions wait here for their grace period (so a client
        // can still fetch the tail) without holding a live place; all of them together are
        // bounded too.
        let (live, live_of_peer) = sessions.values().filter(|held| held.is_live()).fold(
            (0, 0),
            |(live, of_peer), held| {
                let same = rt.peer.is_some() && held.peer == rt.peer;
                (live + 1, of_peer + usize::from(same))
            },
        );
        if live >= self.config.max_sessions {
            return Err(Refusal::new(
                RefusalReason::Unavailable,
                format!("the server holds {live} live sessions, its limit"),
            ));
        }
        let per_peer = self.config.max_sessions_per_peer;
        if per_peer > 0 && live_of_peer >= per_peer {
            return Err(Refusal::new(
                RefusalReason::Unavailable,
                format!(
                    "this address holds {live_of_peer} live sessions, the limit per address: \
                     retry once one has finished"
                ),
            ));
        }
        let held_limit = self
            .config
            .max_sessions
            .saturating_mul(HELD_SESSIONS_FACTOR);
        if sessions.len() >= held_limit {
            return Err(Refusal::new(
                RefusalReason::Unavailable,
                format!(
                    "the server holds {} sessions (finished ones in their grace period \
                     included), its limit",
                    sessions.len()
                ),
            ));
        }
        if !self
            .creations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Err(Refusal::new(
                RefusalReason::Unavailable,
                format!(
                    "more than {} sessions created in the last second, the limit",
                    self.config.max_creations_per_sec
                ),
            ));
        }
        sessions.insert(rt.id.clone(), Arc::clone(rt));
        Ok(())
    }

    /// Gives back a place taken by [`Shared::reserve`] for a create that failed.
    fn unreserve(&self, rt: &Arc<LiveSession>) {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if sessions
            .get(&rt.id)
            .is_some_and(|held| Arc::ptr_eq(held, rt))
        {
            sessions.remove(&rt.id);
            rt.leave_metrics();
        }
    }

    /// Counts a new connection in a shared store's presence (the attachment leaves it when
    /// it ends).
    async fn enter_store(&self, id: &SessionId) -> Result<(), Refusal> {
        if let Some(sharing) = self.store().sharing() {
            sharing.attach(id).await.map_err(|e| unavailable(id, &e))?;
        }
        Ok(())
    }

    fn refuse_if_shutting_down(&self) -> Result<(), Refusal> {
        if self.shutdown.is_cancelled() {
            return Err(Refusal::new(
                RefusalReason::ShuttingDown,
                "the server is shutting down: resume elsewhere",
            ));
        }
        Ok(())
    }

    /// Loads the session a request names, checking its token first (nothing says whether the
    /// session exists before that): the snapshot, the in-process runtime, and the hash of the
    /// token presented (none for a tokenless resume).
    async fn authorize(
        &self,
        id: &SessionId,
        token: Option<&str>,
        accept_previous: bool,
    ) -> Result<(Snapshot, Arc<LiveSession>, Option<TokenHash>), Refusal> {
        let snapshot = self
            .store()
            .load(id)
            .await
            .map_err(|e| unavailable(id, &e))?;
        let presented = self.check_token(id, token, snapshot.as_ref(), accept_previous)?;
        let runtime = self.runtime(id).or_else(|| {
            // A session produced by another server sharing the store (or by one that died):
            // served from the store's log, its messages forwarded to the producer's inbox.
            (self.store().sharing().is_some() && snapshot.is_some())
                .then(|| self.remote_runtime(id))
        });
        match (snapshot, runtime) {
            (Some(snapshot), Some(rt)) => Ok((snapshot, rt, presented)),
            _ => Err(Refusal::new(
                RefusalReason::UnknownSession,
                format!("session {id} is unknown to this server"),
            )),
        }
    }

    /// Checks a presented token (or its absence) against a session that may not exist,
    /// revealing nothing about its existence when the token is wrong or missing.
    fn check_token(
        &self,
        id: &SessionId,
        token: Option<&str>,
        snapshot: Option<&Snapshot>,
        accept_previous: bool,
    ) -> Result<Option<TokenHash>, Refusal> {
        let Some(token) = token else {
            if self.config.allow_tokenless_resume {
                return Ok(None);
            }
            return Err(Refusal::new(
                RefusalReason::MissingToken,
                format!("session {id}: a resume token is required"),
            ));
        };
        let presented = TokenHash::of(token);
        let valid = snapshot.is_some_and(|s| {
            s.tokens.current.matches(&presented)
                || (accept_previous && s.tokens.previous.is_some_and(|p| p.matches(&presented)))
        });
        if valid {
            Ok(Some(presented))
        } else {
            Err(Refusal::new(
                RefusalReason::BadToken,
                format!("session {id}: the resume token is wrong or already used"),
            ))
        }
    }

    /// The token a successful resume hands out, with the store's token hashes updated:
    /// `None` when a concurrent change won the compare-and-set (the caller reloads).
    ///
    /// - The current token (`presented` matches `current`): a new token derived from it
    ///   under fresh salt becomes current, and the presented one stays valid as the previous
    ///   until the new one is used once (a cut during the resume reply never locks a client
    ///   out).
    /// - The previous token (the new one is still unused): the same successor again,
    ///   recomputed from the stored salt, and nothing is written, so a replay never revokes
    ///   a token issued after the one replayed.
    /// - No token (tokenless resume allowed): a random token becomes current, the current
    ///   one stays valid as the previous.
    async fn rotate(
        &self,
        id: &SessionId,
        snapshot: &Snapshot,
        token: Option<&str>,
        presented: Option<TokenHash>,
    ) -> Result<Option<String>, Refusal> {
        let tokens = snapshot.tokens;
        let (token, next) = match (token, presented, tokens.salt) {
            (Some(token), Some(p), _) if tokens.current.matches(&p) => {
                let salt = token::salt(&self.rng).map_err(|e| unavailable(id, &e))?;
                let (next, hash) = token::successor(&salt, token);
                let hashes = TokenHashes {
                    current: hash,
                    previous: Some(p),
                    salt: Some(salt),
                };
                (next, hashes)
            }
            (Some(token), Some(_), Some(salt)) => {
                let (next, hash) = token::successor(&salt, token);
                if hash.matches(&tokens.current) {
                    return Ok(Some(next));
                }
                return Err(Refusal::new(
                    RefusalReason::BadToken,
                    format!("session {id}: the resume token is wrong or already used"),
                ));
            }
            // A previous token without salt: the current one was drawn at random by a
            // tokenless resume, which trusts whoever knows the id anyway; it is replaced.
            (Some(_), Some(_), None) => {
                let (next, hash) = token::issue(&self.rng).map_err(|e| unavailable(id, &e))?;
                let hashes = TokenHashes {
                    current: hash,
                    previous: tokens.previous,
                    salt: None,
                };
                (next, hashes)
            }
            // Tokenless (allowed).
            _ => {
                let (next, hash) = token::issue(&self.rng).map_err(|e| unavailable(id, &e))?;
                let hashes = TokenHashes {
                    current: hash,
                    previous: Some(tokens.current),
                    salt: None,
                };
                (next, hashes)
            }
        };
        let swapped = self
            .store()
            .swap_tokens(id, tokens, next)
            .await
            .map_err(|e| unavailable(id, &e))?;
        Ok(swapped.then_some(token))
    }

    /// Resume checks (3) to (6), after the token and the session's existence: epoch,
    /// expiry, no downgrade, position. Returns the first seq to send.
    fn check_resume(
        &self,
        request: &ResumeSession,
        snapshot: &Snapshot,
        rt: &LiveSession,
    ) -> Result<u64, Refusal> {
        let id = &request.session_id;
        // (3) The epoch.
        if let Some(epoch) = request.epoch {
            if epoch != snapshot.meta.epoch {
                return Err(Refusal::new(
                    RefusalReason::EpochMismatch,
                    format!(
                        "session {id}: epoch {epoch} is not the server's {}",
                        snapshot.meta.epoch
                    ),
                ));
            }
        }
        // (4) Expiry.
        if self.grace_expired(rt, snapshot) {
            return Err(Refusal::new(
                RefusalReason::Expired,
                format!("session {id} expired"),
            ));
        }
        // (5) No downgrade.
        if snapshot.meta.encrypted && !request.encrypted {
            return Err(Refusal::new(
                RefusalReason::EncryptionRequired,
                format!("session {id} is encrypted: the resume needs a ClientHello"),
            ));
        }
        // (6) Position.
        let from = request.from.max(1);
        let retention = snapshot.retention;
        if from > retention.last_seq + 1 {
            return Err(Refusal::new(
                RefusalReason::InvalidRequest,
                format!(
                    "session {id}: resume from seq {from}, but the last seq is {}",
                    retention.last_seq
                ),
            ));
        }
        if from <= retention.evicted_through {
            return Err(Refusal::new(
                RefusalReason::TooFarBehind,
                format!(
                    "session {id}: seq {from} left retention (the oldest retained is {})",
                    retention.first_seq
                ),
            ));
        }
        Ok(from)
    }

    fn grace_expired(&self, rt: &LiveSession, snapshot: &Snapshot) -> bool {
        let now = clock::now_ms();
        if snapshot.expired || now >= snapshot.meta.expires_at_ms {
            return true;
        }
        if self.store().sharing().is_some() {
            // Connections on every server count: this one's may all have ended while a
            // client is attached elsewhere.
            let presence = snapshot.presence;
            let grace = u64::try_from(self.config.session_grace.as_millis()).unwrap_or(u64::MAX);
            return presence.attached == 0
                && presence
                    .detached_at_ms
                    .is_some_and(|at| now.saturating_sub(at) >= grace);
        }
        let detached = rt.attach_state().detached_at;
        detached.is_some_and(|at| at.elapsed() >= self.config.session_grace)
    }
}

fn unavailable(id: &SessionId, err: &Error) -> Refusal {
    Refusal::new(RefusalReason::Unavailable, format!("session {id}: {err}"))
}

/// A resume that passed its checks and rotated the token: what it attaches to, and how.
struct Resumable {
    snapshot: Snapshot,
    rt: Arc<LiveSession>,
    /// The first seq to send.
    from: u64,
    /// The token the client is handed.
    token: String,
}

/// The steps of [`SessionService::create`], in the order it takes them.
impl Shared {
    /// The new session's record: its expiry (the hub's TTL, or the request's shorter
    /// `maxExecutionMs`) and the current epoch.
    async fn new_meta(&self, request: &CreateSession) -> Result<SessionMeta, Refusal> {
        let id = &request.session_id;
        let created = clock::now_ms();
        let ttl = request
            .config
            .max_execution_ms
            .map_or(self.config.session_ttl, |ms| {
                self.config.session_ttl.min(Duration::from_millis(ms))
            });
        let expires = created.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let epoch = self
            .current_epoch()
            .await
            .map_err(|e| unavailable(id, &e))?;
        Ok(SessionMeta::new(
            id.clone(),
            epoch,
            created,
            expires,
            request.encrypted,
        ))
    }

    /// Admission: the session's runtime takes a place among the sessions (the limits are
    /// checked there); the receiver of its client messages for the application.
    fn admit(
        &self,
        request: &CreateSession,
    ) -> Result<(Arc<LiveSession>, mpsc::Receiver<RuntimeChannelMessage>), Refusal> {
        let (messages_tx, messages_rx) = mpsc::channel(MESSAGE_QUEUE);
        let rt = Arc::new(LiveSession::new(
            request.session_id.clone(),
            messages_tx,
            request.peer,
            self.metrics(),
        ));
        self.reserve(&rt)?;
        Ok((rt, messages_rx))
    }

    /// The store writes of a create: the record, this connection in a shared store's
    /// presence, the `session_init` event. A failure gives the place back and leaves nothing
    /// half made.
    async fn write_new(
        self: &Arc<Self>,
        rt: &Arc<LiveSession>,
        request: &CreateSession,
        meta: SessionMeta,
        tokens: TokenHashes,
    ) -> Result<(), Refusal> {
        let id = &request.session_id;
        let expires = meta.expires_at_ms;
        if let Err(err) = self.store().create(meta, tokens).await {
            self.unreserve(rt);
            return Err(match err {
                Error::SessionExists(_) => Refusal::new(
                    RefusalReason::SessionExists,
                    format!("session {id} already exists"),
                ),
                err => unavailable(id, &err),
            });
        }
        // This connection counts in a shared store's presence before anything else
        // happens, so a failure leaves nothing half made.
        if let Err(refusal) = self.enter_store(id).await {
            self.unreserve(rt);
            let _ = self.store().remove(id).await;
            return Err(refusal);
        }
        let init = SessionInitPayload::new(
            request.cancel_url.clone(),
            clock::timestamp("expiresAt", expires),
            request.encryption.clone(),
        );
        if let Err(err) = session::publish(self, rt, EventPayload::SessionInit(init), true).await {
            self.unreserve(rt);
            // Best effort: the store failed already, or the hub is shutting down.
            let _ = self.store().remove(id).await;
            return Err(unavailable(id, &err));
        }
        Ok(())
    }

    /// Starts what runs beside a new session: its heartbeats, and with a shared store the
    /// follower of its inbox.
    fn spawn_tasks(self: &Arc<Self>, rt: &Arc<LiveSession>, request: &CreateSession) {
        let heartbeat = request
            .config
            .heartbeat_interval_ms
            .map_or(self.config.heartbeat, |ms| {
                (ms > 0).then(|| Duration::from_millis(ms))
            });
        // The session's own tasks log inside its span, as its connections do in theirs.
        let span = tracing::info_span!("session", session = %rt.id);
        if let Some(period) = heartbeat {
            tokio::spawn(
                heartbeats(Arc::downgrade(self), Arc::clone(rt), period).instrument(span.clone()),
            );
        }
        if let Some(sharing) = self.store().sharing() {
            let inbox = sharing.inbox(&rt.id);
            tokio::spawn(
                follow_inbox(Arc::downgrade(self), Arc::clone(rt), inbox).instrument(span),
            );
        }
    }

    /// Hands the new session to the application ([`Hub::accept`]).
    fn hand_over(
        self: &Arc<Self>,
        rt: &Arc<LiveSession>,
        request: &CreateSession,
        messages: mpsc::Receiver<RuntimeChannelMessage>,
    ) {
        let new_session = AcceptedSession {
            session_id: rt.id.clone(),
            code: request.code.clone(),
            config: request.config.clone(),
            encrypted: request.encrypted,
            handle: SessionHandle {
                shared: Arc::clone(self),
                rt: Arc::clone(rt),
            },
            messages: Messages { rx: messages },
        };
        if self.new_sessions.send(new_session).is_err() {
            tracing::warn!(session = %rt.id, "no application accepts sessions");
        }
    }
}

/// The steps of [`SessionService::resume`], in the order it takes them.
impl Shared {
    /// Resume check (0): an epoch that is not this server state's. The state the client's
    /// position belongs to is gone (a restart that lost it). Decided by the hub's epoch
    /// alone, so it says nothing about whether the session exists; without it, a restarted
    /// server could only answer `bad_token`, as if the client had the wrong token.
    async fn check_resume_epoch(&self, request: &ResumeSession) -> Result<(), Refusal> {
        let id = &request.session_id;
        let current = self
            .current_epoch()
            .await
            .map_err(|e| unavailable(id, &e))?;
        if let Some(epoch) = request.epoch.filter(|&e| e != current) {
            return Err(Refusal::new(
                RefusalReason::EpochMismatch,
                format!(
                    "session {id}: epoch {epoch} is not this server's ({current}): its state is gone",
                ),
            ));
        }
        Ok(())
    }

    /// Resume checks (1) the token, before anything that says whether the session exists,
    /// (2) the session, then [`check_resume`](Self::check_resume) and the rotation, retried
    /// when a concurrent resume rotated first.
    async fn authorize_resume(&self, request: &ResumeSession) -> Result<Resumable, Refusal> {
        let id = &request.session_id;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (snapshot, rt, presented) =
                self.authorize(id, request.token.as_deref(), true).await?;
            if *rt.store_lost.borrow() {
                return Err(Refusal::new(
                    RefusalReason::Unavailable,
                    format!("session {id}: its final is not yet recorded in the session store; try again"),
                ));
            }
            let from = self.check_resume(request, &snapshot, &rt)?;
            match self
                .rotate(id, &snapshot, request.token.as_deref(), presented)
                .await?
            {
                Some(token) => {
                    return Ok(Resumable {
                        snapshot,
                        rt,
                        from,
                        token,
                    })
                }
                // Lost the compare-and-set to a concurrent resume or submit: reload and
                // decide again (a concurrent resume with the same token made it the
                // previous one, whose successor this one then gets too).
                None if attempts < ROTATE_ATTEMPTS => {}
                None => {
                    return Err(Refusal::new(
                        RefusalReason::BadToken,
                        format!("session {id}: the resume token was used concurrently"),
                    ))
                }
            }
        }
    }

    /// What a resume settles before it attaches: everything before its position leaves
    /// the store (a resume from N acknowledges everything before N), a remote runtime
    /// learns the session finished, and the connection counts in a shared store's presence.
    async fn settle_resume(&self, resumable: &Resumable) -> Result<(), Refusal> {
        let Resumable {
            snapshot, rt, from, ..
        } = resumable;
        let id = &rt.id;
        let retention = self
            .store()
            .trim(id, from - 1)
            .await
            .map_err(|e| unavailable(id, &e))?;
        rt.retained(&retention);
        if rt.remote && snapshot.meta.finished_at_ms.is_some() {
            // Its `final` is the last event: a resume after it ends once replayed.
            rt.final_seq
                .fetch_max(snapshot.retention.last_seq, Ordering::AcqRel);
        }
        // Counted in a shared store's presence before the current connection is
        // superseded: a failure here leaves that connection alone.
        self.enter_store(id).await
    }
}

impl SessionService for Hub {
    fn create(&self, request: CreateSession) -> BoxFuture<'_, Result<Attachment, Refusal>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.refuse_if_shutting_down()?;
            let id = &request.session_id;
            let (token, hash) = token::issue(&shared.rng).map_err(|e| unavailable(id, &e))?;
            let meta = shared.new_meta(&request).await?;
            let epoch = meta.epoch;
            let (rt, messages) = shared.admit(&request)?;
            shared
                .write_new(&rt, &request, meta, TokenHashes::first(hash))
                .await?;
            let seat = rt.attach(request.features.resume, 0, shared.metrics());
            shared.metrics().created();
            shared.spawn_tasks(&rt, &request);
            shared.hand_over(&rt, &request, messages);
            let terms = Terms {
                token,
                epoch,
                encrypted: request.encrypted,
            };
            Ok(attachment(shared, rt, seat, Start::New, terms))
        })
    }

    fn resume(&self, request: ResumeSession) -> BoxFuture<'_, Result<Attachment, Refusal>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.refuse_if_shutting_down()?;
            shared.check_resume_epoch(&request).await?;
            let resumable = shared.authorize_resume(&request).await?;
            shared.settle_resume(&resumable).await?;
            let Resumable {
                snapshot,
                rt,
                from,
                token,
            } = resumable;
            let seat = rt.attach(request.features.resume, from - 1, shared.metrics());
            let start = Start::Resume {
                from,
                replay_end: snapshot.retention.last_seq.max(from - 1),
            };
            let terms = Terms {
                token,
                epoch: snapshot.meta.epoch,
                encrypted: snapshot.meta.encrypted,
            };
            Ok(attachment(shared, rt, seat, start, terms))
        })
    }

    fn submit(&self, request: Submit) -> BoxFuture<'_, Result<SubmitReceipt, Refusal>> {
        Box::pin(async move {
            let shared = &self.shared;
            let id = &request.session_id;
            let (snapshot, rt, presented) = shared
                .authorize(id, request.token.as_deref(), false)
                .await?;
            if shared.grace_expired(&rt, &snapshot) {
                return Err(Refusal::new(
                    RefusalReason::Expired,
                    format!("session {id} expired"),
                ));
            }
            // Using the current token proves the client has it: the previous one retires.
            if presented.is_some() && snapshot.tokens.previous.is_some() {
                let next = TokenHashes::first(snapshot.tokens.current);
                // Losing this race to a resume is harmless: that resume rotated anyway.
                shared
                    .store()
                    .swap_tokens(id, snapshot.tokens, next)
                    .await
                    .map_err(|e| unavailable(id, &e))?;
            }
            // Plaintext messages into an encrypted session (between connections, or forged
            // next to one) would bypass the encryption the session was created with.
            if snapshot.meta.encrypted && !request.encrypted && !request.messages.is_empty() {
                return Err(Refusal::new(
                    RefusalReason::EncryptionRequired,
                    format!("session {id} is encrypted: messages must be sealed"),
                ));
            }
            let held = attach::deliver(shared, &rt, request.messages).await?;
            if let Some(ack) = request.ack {
                attach::acknowledge(&rt, ack);
                if shared.store().sharing().is_some() {
                    // The stream may be served by another server (an HTTP client's POSTs
                    // reach any node): what it acknowledged leaves the shared store, which is
                    // how every server learns it. Clamped like any ack to what exists.
                    let through = ack.min(snapshot.retention.last_seq);
                    let retention = shared
                        .store()
                        .trim(id, through)
                        .await
                        .map_err(|e| unavailable(id, &e))?;
                    rt.retained(&retention);
                }
            }
            Ok(SubmitReceipt::new(held))
        })
    }

    fn info(&self, session_id: &SessionId) -> BoxFuture<'_, Result<SessionInfo, Refusal>> {
        let id = session_id.clone();
        Box::pin(async move {
            let snapshot = self
                .shared
                .store()
                .load(&id)
                .await
                .map_err(|e| unavailable(&id, &e))?;
            snapshot.map(|s| info_of(&s.meta)).ok_or_else(|| {
                Refusal::new(
                    RefusalReason::UnknownSession,
                    format!("session {id} not found"),
                )
            })
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<SessionInfo>, Refusal>> {
        Box::pin(async move {
            let metas = self.shared.store().list().await.map_err(|e| {
                Refusal::new(RefusalReason::Unavailable, format!("session store: {e}"))
            })?;
            Ok(metas.iter().map(info_of).collect())
        })
    }

    fn delete(&self, session_id: &SessionId) -> BoxFuture<'_, Result<(), Refusal>> {
        let id = session_id.clone();
        Box::pin(async move {
            match self.remove(&id).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(Refusal::new(
                    RefusalReason::UnknownSession,
                    format!("session {id} not found"),
                )),
                Err(err) => Err(unavailable(&id, &err)),
            }
        })
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), Refusal>> {
        Box::pin(async move {
            self.shared.refuse_if_shutting_down()?;
            self.shared.store().ping().await.map_err(|err| {
                Refusal::new(
                    RefusalReason::Unavailable,
                    format!("the session store does not answer: {err}"),
                )
            })
        })
    }

    fn cancel(
        &self,
        session_id: &SessionId,
        reason: Option<String>,
    ) -> BoxFuture<'_, Result<(), Refusal>> {
        let id = session_id.clone();
        Box::pin(async move {
            let store = self.shared.store();
            let Some(rt) = self.shared.runtime(&id) else {
                if let Some(sharing) = store.sharing() {
                    // The producer may run on another server: the cancel goes through the
                    // store to its inbox.
                    return match sharing.forward(&id, vec![Inbound::Cancel { reason }]).await {
                        Ok(_) => Ok(()),
                        Err(Error::UnknownSession(_)) => Err(Refusal::new(
                            RefusalReason::UnknownSession,
                            format!("session {id} not found"),
                        )),
                        Err(err) => Err(unavailable(&id, &err)),
                    };
                }
                return Err(Refusal::new(
                    RefusalReason::UnknownSession,
                    format!("session {id} not found"),
                ));
            };
            tracing::debug!(session = %id, reason = reason.as_deref().unwrap_or(""), "cancel requested");
            session::terminate(&self.shared, &rt, cancel_message(reason.as_deref()))
                .await
                .map_err(|err| unavailable(&id, &err))?;
            Ok(())
        })
    }

    fn check_access(
        &self,
        session_id: &SessionId,
        token: Option<&str>,
    ) -> BoxFuture<'_, Result<(), Refusal>> {
        let id = session_id.clone();
        let token = token.map(str::to_owned);
        Box::pin(async move {
            let shared = &self.shared;
            let snapshot = shared
                .store()
                .load(&id)
                .await
                .map_err(|e| unavailable(&id, &e))?;
            // What a resume accepts (the current token, or the previous one while the current
            // one is unused), checked the same way and written nowhere: no rotation.
            shared.check_token(&id, token.as_deref(), snapshot.as_ref(), true)?;
            Ok(())
        })
    }
}

/// What a connection is told as it attaches, beside its events.
struct Terms {
    /// The resume token to give the client.
    token: String,
    /// The session's epoch.
    epoch: u64,
    /// Whether the session is encrypted.
    encrypted: bool,
}

/// An attachment of `rt` for the connection in `seat`, sending from `start`.
fn attachment(
    shared: &Arc<Shared>,
    rt: Arc<LiveSession>,
    seat: Seat,
    start: Start,
    terms: Terms,
) -> Attachment {
    let events = HubEvents::new(Arc::clone(shared), Arc::clone(&rt), seat, start);
    let id = rt.id.clone();
    let upstream = HubUpstream {
        shared: Arc::clone(shared),
        rt,
        seat,
    };
    let mut attachment = Attachment::new(
        id,
        terms.token,
        terms.epoch,
        Box::new(events),
        Arc::new(upstream),
    );
    // `Attachment::new` starts both `false` (the type is the transport's, non-exhaustive).
    attachment.resumed = start.resumed();
    attachment.encrypted = terms.encrypted;
    attachment
}

fn info_of(meta: &SessionMeta) -> SessionInfo {
    let mut info = SessionInfo::new(
        meta.session_id.clone(),
        meta.state,
        meta.created_at_ms,
        meta.expires_at_ms,
    );
    let end = meta.finished_at_ms.unwrap_or_else(clock::now_ms);
    info.duration_ms = end.saturating_sub(meta.created_at_ms);
    info.tool_call_count = meta.tool_call_count;
    info
}

/// Publishes `heartbeat` events every `period` until the session ends.
async fn heartbeats(shared: Weak<Shared>, rt: Arc<LiveSession>, period: Duration) {
    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closed = rt.closed.subscribe();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = closed.wait_for(|c| *c) => return,
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.shutdown.is_cancelled() {
            return;
        }
        let ts = clock::timestamp("ts", clock::now_ms());
        match session::publish(
            &shared,
            &rt,
            EventPayload::Heartbeat(HeartbeatPayload::new(ts)),
            false,
        )
        .await
        {
            Ok(_) => shared.metrics().heartbeat(),
            Err(Error::SessionClosed(_) | Error::ShuttingDown) => return,
            Err(err) => tracing::warn!(session = %rt.id, %err, "heartbeat not published"),
        }
    }
}

/// Hands what other servers forwarded through the shared store to the application: client
/// messages in order, cancels at once (never queued behind messages the application has not
/// taken yet). Holds no lock while it waits. Ends with the session, or when the hub shuts
/// down.
async fn follow_inbox(
    shared: Weak<Shared>,
    rt: Arc<LiveSession>,
    mut inbox: BoxStream<'static, Result<Inbound, Error>>,
) {
    let Some(shutdown) = shared.upgrade().map(|s| s.shutdown.clone()) else {
        return;
    };
    let Some(app) = rt.upstream.lock().await.clone() else {
        return;
    };
    let mut closed = rt.closed.subscribe();
    let mut pending: VecDeque<RuntimeChannelMessage> = VecDeque::new();
    // Once the application drops its receiver nothing more is handed over; cancels still
    // count.
    let mut app_gone = false;
    loop {
        // Messages the application has not taken wait here, within a bound; past it the
        // inbox waits in the store (where forwarding has its own bound).
        let reading = pending.len() < MESSAGE_QUEUE;
        let mut cancel: Option<String> = None;
        tokio::select! {
            _ = closed.wait_for(|c| *c) => return,
            () = shutdown.cancelled() => return,
            item = inbox.next(), if reading => match item {
                None => {
                    // The session left the store: the application stops working on it (the
                    // sweeper ends the rest).
                    rt.cancelled.send_replace(true);
                    return;
                }
                Some(Ok(item)) => {
                    if let Some(message) = cancels(&item) {
                        tracing::debug!(session = %rt.id, "cancel forwarded");
                        rt.cancelled.send_replace(true);
                        cancel = Some(message.to_owned());
                    }
                    if let (Inbound::Message(message), false) = (item, app_gone) {
                        pending.push_back(message);
                    }
                }
                Some(Err(err)) => {
                    // The store's stream retries on its own; an error is only reported.
                    tracing::debug!(session = %rt.id, %err, "session inbox");
                }
            },
            permit = app.reserve(), if !app_gone && !pending.is_empty() => {
                if let Ok(permit) = permit {
                    if let Some(message) = pending.pop_front() {
                        permit.send(message);
                    }
                } else {
                    tracing::debug!(session = %rt.id, "the application no longer reads messages");
                    app_gone = true;
                    pending.clear();
                }
            }
        }
        // A cancel from another server ends the session here, where it is produced.
        if let (Some(message), Some(shared)) = (cancel, shared.upgrade()) {
            if let Err(err) = session::terminate(&shared, &rt, &message).await {
                tracing::warn!(session = %rt.id, %err, "cancelled session: its final not published");
            }
        }
    }
}

/// Whether an inbox item cancels the session (the cancel route, `DELETE`, or a `cancel`
/// message): the message its `error` and `final` carry if so.
fn cancels(item: &Inbound) -> Option<&str> {
    match item {
        Inbound::Cancel { reason } => Some(cancel_message(reason.as_deref())),
        Inbound::Message(message) => match &message.payload {
            RuntimeChannelPayload::Cancel(cancel) => Some(cancel_message(cancel.reason.as_deref())),
            _ => None,
        },
    }
}

/// The message of a cancel's `error` and `final`: its reason, or the broker's default.
pub(crate) fn cancel_message(reason: Option<&str>) -> &str {
    reason
        .filter(|r| !r.is_empty())
        .unwrap_or(session::CANCELLED_MESSAGE)
}

/// Expires sessions past their grace period or `expiresAt`, and purges expired ones a grace
/// period later. Ends when the hub is dropped or shut down.
async fn sweep(shared: Weak<Shared>) {
    let period = match shared.upgrade() {
        Some(s) => {
            (s.config.session_grace / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
        }
        None => return,
    };
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.shutdown.is_cancelled() {
            return;
        }
        let runtimes: Vec<_> = shared
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for rt in runtimes {
            sweep_one(&shared, &rt).await;
        }
    }
}

async fn sweep_one(shared: &Shared, rt: &Arc<LiveSession>) {
    // Not yet made: its place is taken before its record is in the store and its
    // `session_init` published (`create`), which a slow store makes visible here. Nothing is
    // decided about it until then (a create that fails gives its place back itself).
    if rt.last_seq.load(Ordering::Acquire) == 0 {
        return;
    }
    let expired_at = *rt.expired_at.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(at) = expired_at {
        if at.elapsed() >= shared.config.session_grace {
            shared.forget(&rt.id);
            if let Err(err) = shared.store().remove(&rt.id).await {
                tracing::warn!(session = %rt.id, %err, "expired session not purged");
            }
        }
        return;
    }
    let snapshot = match shared.store().load(&rt.id).await {
        Ok(Some(snapshot)) => snapshot,
        Ok(None) => {
            // It left the store some other way (deleted through another server sharing the
            // store, or the store lost it): it ends here too, and its place is given back.
            tracing::debug!(session = %rt.id, "session no longer in the store");
            shared.forget(&rt.id);
            rt.end().await;
            return;
        }
        // The store did not answer: nothing is decided on a failed read.
        Err(_) => return,
    };
    if *rt.store_lost.borrow() {
        session::record_store_loss(shared, rt, &snapshot).await;
    }
    if shared.grace_expired(rt, &snapshot) {
        tracing::debug!(session = %rt.id, "session expired");
        rt.ended(metrics::Ended::Expired);
        *rt.expired_at.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        rt.end().await;
        match shared.store().expire(&rt.id).await {
            // Its events are dropped: it retains nothing any more.
            Ok(()) => rt.retained(&crate::store::Retention::default()),
            Err(err) => tracing::warn!(session = %rt.id, %err, "session not expired in the store"),
        }
    }
}

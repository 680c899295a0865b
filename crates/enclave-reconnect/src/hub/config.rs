//! [`HubConfig`]: the hub's knobs, with the defaults the network contract asks for.

use std::sync::Arc;
use std::time::Duration;

use super::metrics::HubMetrics;
use crate::store::{MemoryStore, Store};

/// What the producer does when a session's retention bound is full of events that cannot
/// leave (neither acknowledged nor, for a client without acknowledgements, written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// `publish` waits (default): nothing a client may still need is lost.
    #[default]
    Wait,
    /// The oldest event leaves anyway; a later resume from before it gets `too_far_behind`.
    DropOldest,
}

/// How a [`Hub`](crate::Hub) behaves. Build with `HubConfig::default()` and the `with_…`
/// methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HubConfig {
    /// Interval of `heartbeat` events; `None` sends none. Default 15 s (the TypeScript client
    /// gives up after 30 s of silence). A session's `config.heartbeatIntervalMs` overrides it.
    pub heartbeat: Option<Duration>,
    /// How long a session waits for a connection after its last one ended before it
    /// expires. Default 60 s.
    pub session_grace: Duration,
    /// How long a session may live (its `expiresAt`). Default 10 minutes; a session's
    /// `config.maxExecutionMs` shortens it.
    pub session_ttl: Duration,
    /// Lets a client resume without a token (the unmodified TypeScript client). Default off.
    pub allow_tokenless_resume: bool,
    /// Bound on a session's retained events. Default 100 000, so the byte bound governs for
    /// events of the usual few hundred bytes.
    pub max_buffered_events: u64,
    /// Bound on their encoded bytes. Default 16 MiB, so what sits in socket buffers between
    /// server and client (several MiB on loopback) stays resumable.
    pub max_buffered_bytes: u64,
    /// What `publish` does when the bound is full. Default [`OverflowPolicy::Wait`].
    pub overflow: OverflowPolicy,
    /// Most live sessions at once (neither finished nor deleted nor expired); beyond it
    /// `create` is refused `unavailable` (503, with `Retry-After`). Sessions that ended wait
    /// for their grace period without holding a place; all sessions held, those included,
    /// are at most twice this. Default 10 000.
    pub max_sessions: usize,
    /// Most sessions created per second (a burst of one second's worth, refilled
    /// continuously); beyond it `create` is refused `unavailable` (503, with `Retry-After`).
    /// `0`: no limit. Default 1 000.
    pub max_creations_per_sec: u32,
    /// Most live sessions created by one peer IP address (the connection's, when the
    /// transport knows it: `CreateSession::peer`) at once; finished, deleted and expired
    /// sessions do not count. Beyond it `create` is refused `unavailable` (503, with
    /// `Retry-After`). `0`: no limit (behind a proxy every client has the proxy's address).
    /// Default 100.
    pub max_sessions_per_peer: usize,
    /// Where session state lives. Default a new [`MemoryStore`].
    pub store: Arc<dyn Store>,
    /// How long a store operation that fails in the store's backend (a shared store's server
    /// down, restarting or full) is tried again before a publish fails. A publish that fails
    /// so ends its session: connections end with an `unavailable` refusal, and once the store
    /// answers the session's `final` (`ok: false`, code `STORE_UNAVAILABLE`) is recorded.
    /// Default 5 s.
    pub store_retry: Duration,
    /// The server's epoch; `None` draws a random one when the hub starts (at most 2^53 − 1,
    /// so JavaScript reads it exactly).
    pub epoch: Option<u64>,
    /// What the hub counts into ([`HubMetrics`]). Default: metrics in no registry, which
    /// nobody reads.
    pub metrics: HubMetrics,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            heartbeat: Some(Duration::from_secs(15)),
            session_grace: Duration::from_mins(1),
            session_ttl: Duration::from_mins(10),
            allow_tokenless_resume: false,
            max_buffered_events: 100_000,
            max_buffered_bytes: 16 * 1024 * 1024,
            overflow: OverflowPolicy::Wait,
            max_sessions: 10_000,
            max_creations_per_sec: 1_000,
            max_sessions_per_peer: 100,
            store: Arc::new(MemoryStore::new()),
            store_retry: Duration::from_secs(5),
            epoch: None,
            metrics: HubMetrics::default(),
        }
    }
}

impl HubConfig {
    /// Heartbeat interval in ms; `0` turns heartbeats off.
    #[must_use]
    pub fn with_heartbeat_ms(mut self, ms: u64) -> Self {
        self.heartbeat = (ms > 0).then(|| Duration::from_millis(ms));
        self
    }

    /// Grace period after the last connection ends.
    #[must_use]
    pub fn with_session_grace(mut self, grace: Duration) -> Self {
        self.session_grace = grace;
        self
    }

    /// Session lifetime (`expiresAt`).
    #[must_use]
    pub fn with_session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl;
        self
    }

    /// Whether a resume without a token is accepted.
    #[must_use]
    pub fn with_allow_tokenless_resume(mut self, allow: bool) -> Self {
        self.allow_tokenless_resume = allow;
        self
    }

    /// Bound on retained events (at least 1).
    #[must_use]
    pub fn with_max_buffered_events(mut self, events: u64) -> Self {
        self.max_buffered_events = events.max(1);
        self
    }

    /// Bound on retained bytes.
    #[must_use]
    pub fn with_max_buffered_bytes(mut self, bytes: u64) -> Self {
        self.max_buffered_bytes = bytes;
        self
    }

    /// Overflow policy.
    #[must_use]
    pub fn with_overflow(mut self, overflow: OverflowPolicy) -> Self {
        self.overflow = overflow;
        self
    }

    /// Session limit.
    #[must_use]
    pub fn with_max_sessions(mut self, sessions: usize) -> Self {
        self.max_sessions = sessions;
        self
    }

    /// Creation rate limit ([`max_creations_per_sec`](Self::max_creations_per_sec); `0`: none).
    #[must_use]
    pub fn with_max_creations_per_sec(mut self, per_sec: u32) -> Self {
        self.max_creations_per_sec = per_sec;
        self
    }

    /// Live sessions per peer address ([`max_sessions_per_peer`](Self::max_sessions_per_peer);
    /// `0`: none).
    #[must_use]
    pub fn with_max_sessions_per_peer(mut self, sessions: usize) -> Self {
        self.max_sessions_per_peer = sessions;
        self
    }

    /// The store.
    #[must_use]
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = store;
        self
    }

    /// How long failing store operations are tried again before a publish fails (and its
    /// session ends); at least 1 ms.
    #[must_use]
    pub fn with_store_retry(mut self, retry: Duration) -> Self {
        self.store_retry = retry.max(Duration::from_millis(1));
        self
    }

    /// A fixed epoch (a restart that keeps a shared store keeps its epoch).
    #[must_use]
    pub fn with_epoch(mut self, epoch: u64) -> Self {
        self.epoch = Some(epoch);
        self
    }

    /// The metrics the hub counts into: register them in the deployment's registry first
    /// ([`HubMetrics::register`]); `ServerBuilder::with_metrics` does both.
    #[must_use]
    pub fn with_metrics(mut self, metrics: HubMetrics) -> Self {
        self.metrics = metrics;
        self
    }
}

//! [`RedisStoreConfig`]: where the store keeps its keys and how it watches its sessions.

use std::path::PathBuf;
use std::time::Duration;

use enclave_reconnect::HubMetrics;

/// How a [`RedisStore`](crate::RedisStore) behaves. Build with `RedisStoreConfig::default()`
/// and the `with_…` methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisStoreConfig {
    /// Prepended to every key (default `enclave:`): deployments that share a Redis, and
    /// tests, keep apart by prefix.
    pub prefix: String,
    /// How long a producer's lease lasts without renewal (default 10 s). The server that
    /// created a session renews it three times per lease while the session runs; a server
    /// following the session ends it with `final {ok: false}` (`PRODUCER_LOST`) once it
    /// lapses.
    pub lease: Duration,
    /// How long one blocking read waits (default 1 s): the longest a follower takes to
    /// notice a lapsed lease or a deleted session beyond the lease itself.
    pub block: Duration,
    /// How long a session's keys outlive its `expiresAt` (default 5 minutes), so Redis
    /// drops sessions whose servers all died.
    pub ttl_margin: Duration,
    /// Most client messages waiting in a session's inbox for its producer (default 1 024);
    /// beyond it, forwarding is refused rather than letting a stalled producer's inbox grow.
    pub max_inbox: u64,
    /// For `rediss://` URLs: trust the certificates of this PEM file instead of the system's
    /// roots (a private CA, or a self-signed server certificate). Default: the system's.
    pub ca_file: Option<PathBuf>,
    /// Where a session this store ends because its producer's lease lapsed is counted
    /// (`leases_lost_total`): the hub's metrics, so they are served with the rest. Default:
    /// metrics in no registry.
    pub metrics: HubMetrics,
}

impl Default for RedisStoreConfig {
    fn default() -> Self {
        Self {
            prefix: "enclave:".to_owned(),
            lease: Duration::from_secs(10),
            block: Duration::from_secs(1),
            ttl_margin: Duration::from_mins(5),
            max_inbox: 1024,
            ca_file: None,
            metrics: HubMetrics::default(),
        }
    }
}

impl RedisStoreConfig {
    /// The key prefix.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The producer lease (at least 30 ms, so it can be renewed three times per lease).
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(30));
        self
    }

    /// The blocking read timeout (at least 10 ms).
    #[must_use]
    pub fn with_block(mut self, block: Duration) -> Self {
        self.block = block.max(Duration::from_millis(10));
        self
    }

    /// How long keys outlive a session's `expiresAt`.
    #[must_use]
    pub fn with_ttl_margin(mut self, margin: Duration) -> Self {
        self.ttl_margin = margin;
        self
    }

    /// Trust the certificates in `path` (PEM) for `rediss://` URLs.
    #[must_use]
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The inbox bound (at least 1).
    #[must_use]
    pub fn with_max_inbox(mut self, max: u64) -> Self {
        self.max_inbox = max.max(1);
        self
    }

    /// The hub's metrics (the same [`HubMetrics`] given to the hub), counting the sessions
    /// this store ends because their producer's lease lapsed.
    #[must_use]
    pub fn with_metrics(mut self, metrics: HubMetrics) -> Self {
        self.metrics = metrics;
        self
    }
}

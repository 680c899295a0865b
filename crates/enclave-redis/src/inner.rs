//! The state every part of the Redis store shares: connections, configuration, scripts, and
//! the sessions this process produces or follows. `store.rs` (the `Store` trait), `follow.rs`
//! and `inboxes.rs` (the background tasks) build on it; it builds on none of them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use enclave_reconnect::store::{AppendedSender, EncodedEvent, Retention};
use enclave_reconnect::Error as StoreError;
use enclave_types::SessionId;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client};
use ring::rand::{SecureRandom, SystemRandom};

use crate::codec::{self, failed};
use crate::config::RedisStoreConfig;
use crate::keys::{self, SessionKeys};
use crate::scripts::Scripts;

/// How many of a session's latest events this process keeps beside Redis (those its
/// producer appended here, or those a follower read), so readers here take them without a
/// round trip, and how many bytes of them at most.
const RECENT: usize = 512;
const RECENT_BYTES: u64 = 1024 * 1024;

/// A session created through this store (its producer runs in this process).
#[derive(Debug)]
pub(crate) struct Local {
    /// Woken by this process's appends.
    pub(crate) appended: AppendedSender,
    /// Whether its lease is still renewed (until its `final`, expiry or removal).
    pub(crate) renewing: bool,
    /// The latest events this process appended (all of them in Redis).
    pub(crate) recent: Recent,
}

/// A session produced elsewhere that readers here follow (one follower task each).
#[derive(Debug)]
pub(crate) struct Followed {
    /// Woken by the follower for every append it reads.
    pub(crate) sender: Arc<AppendedSender>,
    /// The latest events the follower read.
    pub(crate) recent: Recent,
}

/// A session's latest events, oldest first, with their sizes: contiguous seqs, within
/// [`RECENT`] events and [`RECENT_BYTES`].
#[derive(Debug, Default)]
pub(crate) struct Recent {
    events: VecDeque<Arc<EncodedEvent>>,
    bytes: u64,
}

impl Recent {
    /// Up to `max` events from seq `from`, when this process holds `from`.
    pub(crate) fn read(&self, from: u64, max: usize) -> Option<Vec<Arc<EncodedEvent>>> {
        let first = self.events.front()?.seq;
        let skip = usize::try_from(from.checked_sub(first)?).ok()?;
        // Contiguous by construction; checked anyway, a wrong event is worse than a read.
        if self.events.get(skip)?.seq != from {
            return None;
        }
        Some(self.events.iter().skip(skip).take(max).cloned().collect())
    }

    /// Keeps `event`, the session's newest, and lets go of what left retention (`first`) or
    /// what exceeds the bounds.
    pub(crate) fn keep(&mut self, event: Arc<EncodedEvent>, first: u64) {
        if self
            .events
            .back()
            .is_some_and(|last| last.seq.saturating_add(1) != event.seq)
        {
            self.forget();
        }
        self.bytes += event.line_len();
        self.events.push_back(event);
        while self.events.front().is_some_and(|e| e.seq < first)
            || self.events.len() > RECENT
            || (self.bytes > RECENT_BYTES && self.events.len() > 1)
        {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some(event) = self.events.pop_front() {
            self.bytes -= event.line_len();
        }
    }

    pub(crate) fn trim(&mut self, through: u64) {
        while self.events.front().is_some_and(|e| e.seq <= through) {
            self.drop_oldest();
        }
    }

    /// Forgets the kept events: reads go to Redis (another server appended).
    pub(crate) fn forget(&mut self) {
        self.events.clear();
        self.bytes = 0;
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) conn: ConnectionManager,
    pub(crate) config: RedisStoreConfig,
    pub(crate) scripts: Scripts,
    pub(crate) local: Mutex<HashMap<SessionId, Local>>,
    /// Sessions produced elsewhere that readers here follow, each by one task.
    pub(crate) followed: Mutex<HashMap<SessionId, Followed>>,
    /// Set by [`Sharing::shutdown`](enclave_reconnect::store::Sharing::shutdown): no lease is renewed from then on.
    pub(crate) stopped: tokio_util::sync::CancellationToken,
    pub(crate) rng: SystemRandom,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Inner {
    pub(crate) fn keys(&self, id: &SessionId) -> SessionKeys {
        SessionKeys::new(&self.config.prefix, id)
    }

    /// A connection of its own for blocking reads, which would hold up every other command
    /// on the shared one.
    pub(crate) async fn blocking_connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(self.config.block + Duration::from_secs(5)));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    pub(crate) async fn epoch(&self) -> Result<u64, StoreError> {
        let key = keys::epoch(&self.config.prefix);
        let mut conn = self.conn.clone();
        let fail = |e: redis::RedisError| StoreError::store("epoch", None, e);
        let current: Option<u64> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(fail)?;
        if let Some(epoch) = current {
            return Ok(epoch);
        }
        // A new state: draw an epoch JavaScript reads exactly (at most 2^53 − 1, not 0).
        let mut bytes = [0u8; 8];
        self.rng
            .fill(&mut bytes)
            .map_err(|_| StoreError::store("epoch", None, "no randomness for the epoch"))?;
        let candidate = (u64::from_le_bytes(bytes) & ((1 << 53) - 1)).max(1);
        // Whoever sets it first wins; everyone reads the winner.
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(candidate)
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(fail)?;
        let epoch: Option<u64> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(fail)?;
        epoch.ok_or_else(|| StoreError::store("epoch", None, "the epoch vanished as it was set"))
    }

    pub(crate) fn local(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Local>> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn followed(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Followed>> {
        self.followed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a script that replies `{status, …}` and maps the common statuses.
    pub(crate) async fn status_script(
        &self,
        operation: &'static str,
        id: &SessionId,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.conn.clone();
        let reply: Vec<i64> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| failed(operation, id, &e))?;
        match codec::status(id, &reply)? {
            -1 => Err(StoreError::UnknownSession(id.clone())),
            _ => Ok(reply),
        }
    }

    pub(crate) async fn retention_script(
        &self,
        operation: &'static str,
        id: &SessionId,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<Retention, StoreError> {
        let reply = self.status_script(operation, id, invocation).await?;
        codec::retention(id, &reply)
    }

    /// Runs a script that replies one integer (`-1`: unknown session).
    pub(crate) async fn int_script(
        &self,
        operation: &'static str,
        id: &SessionId,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<i64, StoreError> {
        let mut conn = self.conn.clone();
        let reply: i64 = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| failed(operation, id, &e))?;
        if reply == -1 {
            return Err(StoreError::UnknownSession(id.clone()));
        }
        Ok(reply)
    }

    /// Forgets what this process holds for a session that left the store (its readers here
    /// see their watch end).
    pub(crate) fn forget(&self, id: &SessionId) {
        self.local().remove(id);
    }

    /// Another server appended to a session this process produces (the `final` of a lapsed
    /// lease): its readers here must read Redis, up to `last`.
    pub(crate) fn appended_elsewhere(&self, id: &SessionId, last: u64) {
        if let Some(local) = self.local().get_mut(id) {
            local.recent.forget();
            local.renewing = false;
            local.appended.send(last);
        }
    }
}

//! What the Redis store tests share: a `redis-server` of their own, stores with a unique key
//! prefix, and bounded waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use enclave_redis::{RedisStore, RedisStoreConfig};
use enclave_testkit::RedisServer;

/// A prefix no other test (or earlier run) uses.
pub(crate) fn unique_prefix(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "test:{name}:{}:{}:",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A server of the test's own (persistence off). Fails loudly when `redis-server` is missing.
pub(crate) fn redis() -> RedisServer {
    RedisServer::start().unwrap_or_else(|e| panic!("cannot start redis-server: {e}"))
}

/// A store on `server` with `prefix`, short lease and block times for tests.
pub(crate) async fn store(server: &RedisServer, prefix: &str) -> RedisStore {
    store_with(server, RedisStoreConfig::default().with_prefix(prefix)).await
}

pub(crate) async fn store_with(server: &RedisServer, config: RedisStoreConfig) -> RedisStore {
    RedisStore::connect(&server.url(), config.with_block(Duration::from_millis(200)))
        .await
        .expect("the store connects")
}

/// `future`, or a panic naming `what` after `limit`. The future is boxed: the stream and
/// hub futures the tests wait on are large.
pub(crate) fn within<T, F: std::future::Future<Output = T>>(
    limit: Duration,
    what: &str,
    future: F,
) -> impl std::future::Future<Output = T> {
    let what = what.to_owned();
    let future = Box::pin(future);
    async move {
        tokio::time::timeout(limit, future)
            .await
            .unwrap_or_else(|_| panic!("{what}: not done within {limit:?}"))
    }
}

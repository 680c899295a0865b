//! A store for the hub's tests that counts what the hub asks of it, can hold its appends as
//! a slow backend does, and can fail as a store whose backend is down.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use enclave_reconnect::store::{
    Appended, MemoryStore, NewEvent, Progress, Retention, SessionMeta, Snapshot, Store, TokenHashes,
};
use enclave_reconnect::Error;
use enclave_transport::EncodedEvent;
use enclave_types::SessionId;
use futures::future::BoxFuture;
use tokio::sync::Notify;

/// A [`MemoryStore`] that counts the calls a publish makes to it (retention, trim, append),
/// holds appends while told to (as a backend with a long round trip), and, once told to,
/// refuses appends as a store whose backend is down.
#[derive(Debug, Default)]
pub(crate) struct Instrumented {
    pub(crate) inner: MemoryStore,
    retention: AtomicU64,
    trim: AtomicU64,
    append: AtomicU64,
    /// The events the appends carried.
    appended_events: AtomicU64,
    /// From `true` on, every append fails with [`Error::Store`].
    pub(crate) refuse_appends: AtomicBool,
    /// While `true`, appends wait (before they reach the inner store) for [`release`].
    ///
    /// [`release`]: Self::release
    held: AtomicBool,
    released: Notify,
    /// Appends waiting at the hold now.
    waiting: AtomicU64,
}

impl Instrumented {
    /// Appends wait from now on until [`release`](Self::release).
    pub(crate) fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
    }

    /// Lets held appends and later ones through.
    pub(crate) fn release(&self) {
        self.held.store(false, Ordering::SeqCst);
        self.released.notify_waiters();
    }

    /// How many appends wait at the hold now.
    pub(crate) fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::SeqCst)
    }

    /// The events carried by appends since the last call.
    pub(crate) fn take_appended_events(&self) -> u64 {
        self.appended_events.swap(0, Ordering::SeqCst)
    }

    async fn pass_hold(&self) {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !self.held.load(Ordering::SeqCst) {
                return;
            }
            released.await;
        }
    }

    /// `(retention, trim, append)` calls since the last take.
    pub(crate) fn take(&self) -> (u64, u64, u64) {
        (
            self.retention.swap(0, Ordering::SeqCst),
            self.trim.swap(0, Ordering::SeqCst),
            self.append.swap(0, Ordering::SeqCst),
        )
    }
}

impl Store for Instrumented {
    fn create(&self, meta: SessionMeta, tokens: TokenHashes) -> BoxFuture<'_, Result<(), Error>> {
        self.inner.create(meta, tokens)
    }
    fn load(&self, id: &SessionId) -> BoxFuture<'_, Result<Option<Snapshot>, Error>> {
        self.inner.load(id)
    }
    fn list(&self) -> BoxFuture<'_, Result<Vec<SessionMeta>, Error>> {
        self.inner.list()
    }
    fn put_meta(&self, meta: SessionMeta) -> BoxFuture<'_, Result<(), Error>> {
        self.inner.put_meta(meta)
    }
    fn record_progress(
        &self,
        id: &SessionId,
        progress: Progress,
    ) -> BoxFuture<'_, Result<(), Error>> {
        self.inner.record_progress(id, progress)
    }
    fn swap_tokens(
        &self,
        id: &SessionId,
        expected: TokenHashes,
        next: TokenHashes,
    ) -> BoxFuture<'_, Result<bool, Error>> {
        self.inner.swap_tokens(id, expected, next)
    }
    fn append<'a>(
        &'a self,
        id: &'a SessionId,
        events: &'a [NewEvent],
    ) -> BoxFuture<'a, Result<Retention, Error>> {
        self.append.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if self.held.load(Ordering::SeqCst) {
                self.waiting.fetch_add(1, Ordering::SeqCst);
                // Counted out however the wait ends (its caller may drop it).
                let _out = scopeguard(|| {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                });
                self.pass_hold().await;
            }
            if self.refuse_appends.load(Ordering::SeqCst) {
                return Err(Error::store("append", Some(id), "the backend is down"));
            }
            let retention = self.inner.append(id, events).await?;
            self.appended_events
                .fetch_add(events.len() as u64, Ordering::SeqCst);
            Ok(retention)
        })
    }
    fn read(
        &self,
        id: &SessionId,
        from: u64,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<Arc<EncodedEvent>>, Error>> {
        self.inner.read(id, from, max)
    }
    fn retention(&self, id: &SessionId) -> BoxFuture<'_, Result<Retention, Error>> {
        self.retention.fetch_add(1, Ordering::SeqCst);
        self.inner.retention(id)
    }
    fn trim(&self, id: &SessionId, through: u64) -> BoxFuture<'_, Result<Retention, Error>> {
        self.trim.fetch_add(1, Ordering::SeqCst);
        self.inner.trim(id, through)
    }
    fn advance_client_seq(&self, id: &SessionId, seq: u64) -> BoxFuture<'_, Result<u64, Error>> {
        self.inner.advance_client_seq(id, seq)
    }
    fn expire(&self, id: &SessionId) -> BoxFuture<'_, Result<(), Error>> {
        self.inner.expire(id)
    }
    fn remove(&self, id: &SessionId) -> BoxFuture<'_, Result<bool, Error>> {
        self.inner.remove(id)
    }
    fn watch(&self, id: &SessionId) -> Option<Appended> {
        self.inner.watch(id)
    }
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

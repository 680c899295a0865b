//! [`Appended`]: a session's last appended seq, for live readers to wait on.
//!
//! It behaves like a `tokio::sync::watch` channel of a `u64` (readers see the latest value and
//! wait for the next change; dropping the sender closes it), but it is written on every
//! append, so a write that no reader waits for costs one atomic store and one atomic load. A
//! `watch` wakes its waiters' lists on every send — eight locks — whether anyone waits or not.
//!
//! Readers announce that they are about to wait (`waiting`), and the writer wakes only when
//! one is. Both sides use sequentially consistent operations: either the writer sees the
//! announcement and wakes the reader (whose `Notified` is already registered, since tokio's
//! `notify_waiters` reaches every `Notified` created before it), or the reader's check after
//! announcing sees the new value and does not wait.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Shared {
    seq: AtomicU64,
    closed: AtomicBool,
    /// Readers between announcing a wait and the end of it.
    waiting: AtomicUsize,
    /// Live [`Appended`] receivers.
    receivers: AtomicUsize,
    notify: Notify,
}

/// Creates the channel of one session's last appended seq, starting at `seq`.
pub fn appended_channel(seq: u64) -> (AppendedSender, Appended) {
    let shared = Arc::new(Shared::default());
    shared.seq.store(seq, SeqCst);
    let sender = AppendedSender {
        shared: Arc::clone(&shared),
    };
    let receiver = sender.subscribe();
    (sender, receiver)
}

/// The writing half (the store). Dropping it closes the channel: readers' [`Appended::changed`]
/// then fails, which tells them the session left the store.
#[derive(Debug)]
pub struct AppendedSender {
    shared: Arc<Shared>,
}

impl AppendedSender {
    /// Records that `seq` was appended, waking the readers that wait.
    pub fn send(&self, seq: u64) {
        self.shared.seq.store(seq, SeqCst);
        if self.shared.waiting.load(SeqCst) > 0 {
            self.shared.notify.notify_waiters();
        }
    }

    /// A new reader, which has seen the current value.
    pub fn subscribe(&self) -> Appended {
        self.shared.receivers.fetch_add(1, SeqCst);
        Appended {
            seen: self.shared.seq.load(SeqCst),
            shared: Arc::clone(&self.shared),
        }
    }

    /// How many readers there are.
    pub fn receiver_count(&self) -> usize {
        self.shared.receivers.load(SeqCst)
    }
}

impl Drop for AppendedSender {
    fn drop(&mut self) {
        self.shared.closed.store(true, SeqCst);
        self.shared.notify.notify_waiters();
    }
}

/// The reading half: the session's last appended seq, and a way to wait for the next.
#[derive(Debug)]
pub struct Appended {
    shared: Arc<Shared>,
    /// The value this reader last saw.
    seen: u64,
}

/// The sender was dropped: the session left the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedClosed;

impl Appended {
    /// The last appended seq (not marked as seen).
    pub fn get(&self) -> u64 {
        self.shared.seq.load(SeqCst)
    }

    /// Waits until the value differs from the one this reader last saw, and marks the new
    /// one seen. Fails once the sender is dropped (values sent before are still reported
    /// first). Cancel safe: dropping the future loses nothing.
    ///
    /// # Errors
    ///
    /// [`AppendedClosed`] when the sender is gone.
    pub async fn changed(&mut self) -> Result<(), AppendedClosed> {
        let shared = Arc::clone(&self.shared);
        loop {
            if let Some(result) = self.check() {
                return result;
            }
            let mut notified = pin!(shared.notify.notified());
            let _announced = Announced::new(&shared);
            notified.as_mut().enable();
            // After announcing: a value sent since is seen here, or its sender saw the
            // announcement and wakes `notified`.
            if let Some(result) = self.check() {
                return result;
            }
            notified.await;
        }
    }

    /// Waits until the value satisfies `f` (at once when it already does) and returns it.
    ///
    /// # Errors
    ///
    /// [`AppendedClosed`] when the sender is gone before the value satisfied `f`.
    pub async fn wait_for(&mut self, f: impl Fn(&u64) -> bool) -> Result<u64, AppendedClosed> {
        loop {
            let seq = self.get();
            if f(&seq) {
                self.seen = seq;
                return Ok(seq);
            }
            self.changed().await?;
        }
    }

    fn check(&mut self) -> Option<Result<(), AppendedClosed>> {
        let seq = self.shared.seq.load(SeqCst);
        if seq != self.seen {
            self.seen = seq;
            return Some(Ok(()));
        }
        self.shared
            .closed
            .load(SeqCst)
            .then_some(Err(AppendedClosed))
    }
}

impl Clone for Appended {
    fn clone(&self) -> Self {
        self.shared.receivers.fetch_add(1, SeqCst);
        Self {
            shared: Arc::clone(&self.shared),
            seen: self.seen,
        }
    }
}

impl Drop for Appended {
    fn drop(&mut self) {
        self.shared.receivers.fetch_sub(1, SeqCst);
    }
}

/// A reader's announced wait, withdrawn when the wait ends or is cancelled.
struct Announced<'a>(&'a Shared);

impl<'a> Announced<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.waiting.fetch_add(1, SeqCst);
        Self(shared)
    }
}

impl Drop for Announced<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{appended_channel, AppendedClosed};

    #[tokio::test]
    async fn a_reader_sees_each_new_value_and_then_the_close() {
        let (sender, mut reader) = appended_channel(0);
        assert_eq!(reader.get(), 0);
        sender.send(3);
        assert_eq!(reader.changed().await, Ok(()));
        assert_eq!(reader.get(), 3);
        let waiting = tokio::spawn(async move {
            let first = reader.changed().await;
            let value = reader.get();
            let second = reader.changed().await;
            (first, value, second)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        sender.send(4);
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(sender);
        let (first, value, second) = waiting.await.expect("reader task");
        assert_eq!((first, value, second), (Ok(()), 4, Err(AppendedClosed)));
    }

    #[tokio::test]
    async fn a_value_sent_before_the_close_is_reported_first() {
        let (sender, mut reader) = appended_channel(1);
        sender.send(2);
        drop(sender);
        assert_eq!(reader.changed().await, Ok(()));
        assert_eq!(reader.get(), 2);
        assert_eq!(reader.changed().await, Err(AppendedClosed));
    }

    #[tokio::test]
    async fn a_cancelled_wait_withdraws_and_receivers_are_counted() {
        let (sender, mut reader) = appended_channel(0);
        assert_eq!(sender.receiver_count(), 1);
        let other = reader.clone();
        assert_eq!(sender.receiver_count(), 2);
        drop(other);
        assert_eq!(sender.receiver_count(), 1);
        let timed_out = tokio::time::timeout(Duration::from_millis(10), reader.changed()).await;
        assert!(timed_out.is_err(), "nothing was sent");
        assert_eq!(
            sender.shared.waiting.load(super::SeqCst),
            0,
            "the wait was withdrawn"
        );
        sender.send(1);
        assert_eq!(reader.changed().await, Ok(()));
    }

    /// Many sends racing one reader that waits after each value: it never sleeps through
    /// the last one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_racing_the_writer_never_misses_the_last_value() {
        for _ in 0..50 {
            let (sender, mut reader) = appended_channel(0);
            let writer = tokio::spawn(async move {
                for seq in 1..=2_000 {
                    sender.send(seq);
                    if seq % 100 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                sender
            });
            let read = tokio::spawn(async move {
                while reader.get() < 2_000 {
                    reader.changed().await.expect("open while the writer runs");
                }
            });
            tokio::time::timeout(Duration::from_secs(10), read)
                .await
                .expect("the reader saw the last value")
                .expect("reader task");
            drop(writer.await.expect("writer task"));
        }
    }
}

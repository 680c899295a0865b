//! The append lane: a session's published events on their way into the store, in seq order,
//! in as few store calls as the store's pace allows.
//!
//! The publisher (under the publish lock) numbers an event and queues it here; one flusher
//! task at a time takes everything queued — at most [`MAX_BATCH_EVENTS`] events or
//! [`MAX_BATCH_BYTES`] — and appends it in one store call, then the next batch, until the
//! queue is empty. While a call is in flight the next publishes queue behind it, so a store
//! with a round trip (Redis) gets batches as large as the producer runs ahead, and a store
//! without one (memory) gets one event per call. Readers are woken by the store, so they
//! only ever see events the store holds, in order.
//!
//! A batch the store refuses ends the lane: what is queued behind it is dropped (nothing
//! after a gap may land), every later publish is refused, and the error goes to whoever
//! waits for the refused events.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use enclave_types::{SessionId, SessionState};
use tokio::sync::watch;

use crate::store::{NewEvent, Progress};
use crate::Error;

/// Most events in one store call.
pub(crate) const MAX_BATCH_EVENTS: usize = 256;

/// Most bytes in one store call (a larger event goes alone).
pub(crate) const MAX_BATCH_BYTES: u64 = 1024 * 1024;

/// What an event changes in the session's metadata, recorded with the batch it lands in.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Note {
    /// The state it moves the session to, when that is a change.
    pub(crate) state: Option<SessionState>,
    /// Tool calls it counts (in the metadata): 1 for a tool call.
    pub(crate) tool_calls: u64,
    /// Whether it is the `final`.
    pub(crate) is_final: bool,
    /// Whether the retained gauges are moved after it lands (see `RETAINED_EVERY`).
    pub(crate) gauge: bool,
}

/// A batch taken for one store call, with what its events change together.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) events: Vec<NewEvent>,
    /// The last state change among them.
    pub(crate) state: Option<SessionState>,
    pub(crate) tool_calls: u64,
    pub(crate) has_final: bool,
    pub(crate) gauge: bool,
}

impl Batch {
    /// What it changes in the session's metadata, if anything (`now_ms` stamps a `final`).
    pub(crate) fn progress(&self, now_ms: impl FnOnce() -> u64) -> Option<Progress> {
        if self.state.is_none() && self.tool_calls == 0 && !self.has_final {
            return None;
        }
        Some(Progress {
            state: self.state,
            tool_calls: self.tool_calls,
            finished_at_ms: self.has_final.then(now_ms),
        })
    }
}

/// How far the store holds the lane's events.
#[derive(Debug, Clone, Copy, Default)]
struct Durable {
    /// The last seq the store holds.
    through: u64,
    /// The lane ended on a refusal.
    failed: bool,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<(NewEvent, Note)>,
    /// A flusher owns the queue (it runs until the queue is empty).
    flushing: bool,
}

/// One session's append lane (see the module's documentation).
#[derive(Debug)]
pub(crate) struct Lane {
    queue: Mutex<Queue>,
    durable: watch::Sender<Durable>,
    /// Whether the lane ended on a refusal: read per publish without the watch's lock.
    failed: AtomicBool,
    /// The refusal, for the first to report it; later reports rebuild it.
    failure: Mutex<Option<Error>>,
    /// Whether that refusal was the store's own failure (else: the session was closed
    /// under it, e.g. ended by another server): what a rebuilt report says.
    store_failed: AtomicBool,
}

impl Lane {
    pub(crate) fn new() -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            durable: watch::channel(Durable::default()).0,
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            store_failed: AtomicBool::new(false),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `event`; `true` when no flusher runs and the caller must start one.
    pub(crate) fn push(&self, event: NewEvent, note: Note) -> bool {
        let mut queue = self.queue();
        queue.items.push_back((event, note));
        !std::mem::replace(&mut queue.flushing, true)
    }

    /// The next batch for the flusher; `None` when the queue is empty, which ends the
    /// flusher's turn.
    pub(crate) fn next_batch(&self) -> Option<Batch> {
        let mut queue = self.queue();
        if queue.items.is_empty() {
            queue.flushing = false;
            return None;
        }
        let mut batch = Batch::default();
        let mut bytes = 0u64;
        while let Some((event, _)) = queue.items.front() {
            let full = batch.events.len() >= MAX_BATCH_EVENTS
                || (!batch.events.is_empty() && bytes + event.bytes > MAX_BATCH_BYTES);
            if full {
                break;
            }
            let Some((event, note)) = queue.items.pop_front() else {
                break;
            };
            bytes += event.bytes;
            batch.state = note.state.or(batch.state);
            batch.tool_calls += note.tool_calls;
            batch.has_final |= note.is_final;
            batch.gauge |= note.gauge;
            batch.events.push(event);
        }
        Some(batch)
    }

    /// Puts a batch whose store call was abandoned (its caller went away) back at the head
    /// of the queue, for the next flusher to append again: a store recognises an append that
    /// landed after all (the same events at the same seqs).
    pub(crate) fn requeue(&self, batch: Batch) {
        let note = Note {
            state: batch.state,
            tool_calls: batch.tool_calls,
            is_final: batch.has_final,
            gauge: batch.gauge,
        };
        let mut queue = self.queue();
        let mut events = batch.events.into_iter().rev();
        if let Some(last) = events.next() {
            queue.items.push_front((last, note));
        }
        for event in events {
            queue.items.push_front((event, Note::default()));
        }
    }

    /// Ends a leading publisher's turn: `false` (the lane is idle again) when nothing is
    /// queued, `true` when events are, and the caller starts a flusher that takes the turn
    /// over.
    pub(crate) fn hand_on(&self) -> bool {
        let mut queue = self.queue();
        if queue.items.is_empty() {
            queue.flushing = false;
            false
        } else {
            true
        }
    }

    /// The store holds everything through `seq`.
    pub(crate) fn landed(&self, seq: u64) {
        self.durable.send_modify(|durable| durable.through = seq);
    }

    /// The store refused a batch for good: the lane ends, what is queued is dropped (and
    /// returned, for the count), and `error` goes to the first who reports it.
    pub(crate) fn fail(&self, error: Error) -> usize {
        let dropped = {
            let mut queue = self.queue();
            queue.flushing = false;
            std::mem::take(&mut queue.items).len()
        };
        let store = matches!(error, Error::Store { .. });
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if failure.is_none() && !self.is_failed() {
            self.store_failed.store(store, Ordering::Release);
            *failure = Some(error);
        }
        drop(failure);
        self.failed.store(true, Ordering::Release);
        self.durable.send_modify(|durable| durable.failed = true);
        dropped
    }

    /// Whether the lane ended on a refusal.
    pub(crate) fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// The refusal that ended the lane: the store's own error the first time, then one that
    /// says the same of `session`.
    pub(crate) fn error(&self, session: &SessionId) -> Error {
        let taken = self
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match taken {
            Some(error) => error,
            None if self.store_failed.load(Ordering::Acquire) => Error::store(
                "append",
                Some(session),
                "an earlier append of this session failed; nothing after it is published",
            ),
            None => Error::SessionClosed(session.clone()),
        }
    }

    /// Waits until the store holds `seq`; the lane's refusal if it ended first.
    pub(crate) async fn wait(&self, session: &SessionId, seq: u64) -> Result<(), Error> {
        let mut durable = self.durable.subscribe();
        let reached = durable
            .wait_for(|durable| durable.through >= seq || durable.failed)
            .await
            .map(|durable| durable.through >= seq);
        match reached {
            Ok(true) => Ok(()),
            // The sender lives as long as the lane: a closed watch cannot happen while a
            // publisher holds the session, and is reported as the refusal it would mean.
            Ok(false) | Err(_) => Err(self.error(session)),
        }
    }
}

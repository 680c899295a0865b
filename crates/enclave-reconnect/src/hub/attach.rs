//! One connection's view of a session: [`HubEvents`] (what to write, replay then live) and
//! [`HubUpstream`] (its client messages and acknowledgements).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use enclave_transport::{
    CloseReason, EncodedEvent, EventSource, Outgoing, Refusal, RefusalReason, Upstream,
};
use enclave_types::{EventPayload, RuntimeChannelMessage, RuntimeChannelPayload};
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::session::{written_hold, LiveSession, Seat};
use super::Shared;
use crate::store::{Appended, Inbound, Retention};
use crate::Error;

/// How many events a source reads from the store at once.
const READ_BATCH: usize = 64;

/// Why an attachment stops.
enum Stop {
    /// With a close notice (superseded, shutting down, expired).
    Close(CloseReason),
    /// Quietly: the session was deleted.
    End,
}

/// Where an attachment starts sending.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Start {
    /// A new session's first connection: from seq 1, live.
    New,
    /// A resume: from seq `from`, replaying through `replay_end` before it announces the end
    /// of the replay.
    Resume {
        /// The first seq to send.
        from: u64,
        /// The last seq of the replay.
        replay_end: u64,
    },
}

impl Start {
    /// The first seq to send.
    pub(crate) fn from(self) -> u64 {
        match self {
            Self::New => 1,
            Self::Resume { from, .. } => from,
        }
    }

    /// Whether the attachment continues an existing session.
    pub(crate) fn resumed(self) -> bool {
        matches!(self, Self::Resume { .. })
    }
}

/// What an attached connection writes, in order: replayed events, the end-of-replay line,
/// live events, then `None` after the `final` (or a `Close` when superseded or shut down).
pub(crate) struct HubEvents {
    shared: Arc<Shared>,
    rt: Arc<LiveSession>,
    seat: Seat,
    next_seq: u64,
    /// The last seq to replay before announcing the end of the replay (resumes only).
    replay_end: Option<u64>,
    buffer: VecDeque<Arc<EncodedEvent>>,
    appended: Option<Appended>,
    /// Changed by every attach: the attach lock is taken to compare generations only then.
    attaches: watch::Receiver<()>,
    shutdown: CancellationToken,
    closed: watch::Receiver<bool>,
    store_lost: watch::Receiver<bool>,
    /// [`stop`](Self::stop) has looked at the shutdown, attach, closed and store-lost flags
    /// once.
    flags_seen: bool,
    /// Counted in a shared store's presence (detached once when this attachment ends).
    present: bool,
    /// Through which seq a remote runtime's client released events from the shared store.
    released: u64,
    /// What the last release left in the shared store, for the next one's hold-back.
    retention: Option<Retention>,
    done: bool,
}

impl std::fmt::Debug for HubEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubEvents")
            .field("session", &self.rt.id.as_str())
            .field("generation", &self.seat.generation)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl HubEvents {
    pub(crate) fn new(shared: Arc<Shared>, rt: Arc<LiveSession>, seat: Seat, start: Start) -> Self {
        let appended = shared.store().watch(&rt.id);
        let present = shared.store().sharing().is_some();
        let from = start.from();
        let replay_end = match start {
            Start::New => None,
            Start::Resume { replay_end, .. } => Some(replay_end),
        };
        let mut attaches = rt.attaches.subscribe();
        // An attach after this one's and before the subscription is not a change to the new
        // receiver: the first look compares the generations anyway.
        attaches.mark_changed();
        Self {
            attaches,
            shutdown: shared.shutdown.clone(),
            closed: rt.closed.subscribe(),
            store_lost: rt.store_lost.subscribe(),
            shared,
            rt,
            seat,
            next_seq: from,
            replay_end,
            buffer: VecDeque::new(),
            appended,
            flags_seen: false,
            present,
            released: from.saturating_sub(1),
            retention: None,
            done: false,
        }
    }

    fn finish(&mut self, last: Option<Outgoing>) -> Option<Outgoing> {
        self.done = true;
        self.rt.detach(self.seat.generation);
        self.leave_store();
        last
    }

    /// Takes this attachment out of a shared store's presence count, once.
    fn leave_store(&mut self) {
        if !std::mem::take(&mut self.present) {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let id = self.rt.id.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let Some(sharing) = shared.store().sharing() else {
                    return;
                };
                if let Err(err) = sharing.detach(&id).await {
                    tracing::warn!(session = %id, %err, "connection end not recorded in the store");
                }
            });
        }
    }

    /// For a session produced elsewhere: lets what this client acknowledged (or, without
    /// acknowledgements, was written, but for the last [`written_hold`] of it, which may
    /// still sit in socket buffers) leave the shared store, which is how its producer
    /// learns there is room.
    async fn release(&mut self) -> Result<(), Error> {
        if !self.rt.remote {
            return Ok(());
        }
        // The hold-back counts bytes by the retained events' mean size: learn it once there
        // are events, then from what each trim leaves.
        if self
            .retention
            .as_ref()
            .is_none_or(|retention| retention.count == 0)
        {
            self.retention = Some(self.shared.store().retention(&self.rt.id).await?);
        }
        let config = &self.shared.config;
        let hold = self
            .retention
            .as_ref()
            .map_or(config.max_buffered_events / 2, |retention| {
                written_hold(retention, config)
            });
        let through = self
            .rt
            .acked
            .load(Ordering::Acquire)
            .max(self.rt.written.load(Ordering::Acquire).saturating_sub(hold));
        if through > self.released {
            self.retention = Some(self.shared.store().trim(&self.rt.id, through).await?);
            self.released = through;
        }
        Ok(())
    }

    /// Reads the next batch from the store into the buffer, after releasing what the client
    /// acknowledged. The store's watch holds the last appended seq: when it is behind the
    /// next seq to send, a read would come back empty, so none is made.
    async fn refill(&mut self) -> Result<(), Error> {
        self.release().await?;
        let behind = self
            .appended
            .as_ref()
            .is_some_and(|rx| rx.get() < self.next_seq);
        if !behind {
            let events = self
                .shared
                .store()
                .read(&self.rt.id, self.next_seq, READ_BATCH)
                .await?;
            self.buffer.extend(events);
        }
        Ok(())
    }

    /// A remote session's record left the store (deleted or expired): how this attachment
    /// ends.
    async fn remote_gone(&mut self) -> Option<Outgoing> {
        match self.shared.store().load(&self.rt.id).await {
            Ok(Some(snapshot)) if snapshot.expired => {
                let refusal = Refusal::new(
                    RefusalReason::Expired,
                    format!("session {} expired", self.rt.id),
                );
                self.finish(Some(Outgoing::Close(CloseReason::Refused(refusal))))
            }
            Ok(Some(_)) => {
                // Still in the store: its follower here gave up on a store that did not
                // answer. The client comes back (to any server) rather than waiting here.
                let refusal = Refusal::new(
                    RefusalReason::Unavailable,
                    format!(
                        "session {}: the session store stopped answering; resume",
                        self.rt.id
                    ),
                );
                self.finish(Some(Outgoing::Close(CloseReason::Refused(refusal))))
            }
            Ok(None) => self.finish(None),
            Err(err) => {
                let refusal = Refusal::new(
                    RefusalReason::Unavailable,
                    format!("session {}: {err}", self.rt.id),
                );
                self.finish(Some(Outgoing::Close(CloseReason::Refused(refusal))))
            }
        }
    }

    /// Whether this attachment must stop, and the last item it yields if so.
    fn stop(&mut self) -> Option<Stop> {
        // The flags only ever change through their channels: while no channel has a value
        // this attachment has not seen, the answer is the last one (go on). Each receiver
        // saw its value when subscribed (but `attaches`, marked changed), so the first call
        // looks at all of them.
        fn changed<T>(rx: &watch::Receiver<T>) -> bool {
            rx.has_changed().unwrap_or(true)
        }
        // Shutdown first, and at every call: one atomic load.
        if self.shutdown.is_cancelled() {
            return Some(Stop::Close(CloseReason::ShuttingDown));
        }
        let attached = changed(&self.attaches);
        if self.flags_seen && !attached && !changed(&self.closed) && !changed(&self.store_lost) {
            return None;
        }
        self.flags_seen = true;
        if attached {
            self.attaches.borrow_and_update();
            if self.rt.attach_state().current.generation != self.seat.generation {
                return Some(Stop::Close(CloseReason::Superseded));
            }
        }
        if *self.store_lost.borrow_and_update() {
            // The store refused a publish for longer than the hub retries: the client is
            // told to come back, and is refused the same way until the session's `final` is
            // in the store.
            let refusal = Refusal::new(
                RefusalReason::Unavailable,
                format!(
                    "session {}: the session store is unavailable; resume once it is back",
                    self.rt.id
                ),
            );
            return Some(Stop::Close(CloseReason::Refused(refusal)));
        }
        if !*self.closed.borrow_and_update() {
            return None;
        }
        let expired = self
            .rt
            .expired_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some();
        if expired {
            let refusal = Refusal::new(
                RefusalReason::Expired,
                format!("session {} expired", self.rt.id),
            );
            return Some(Stop::Close(CloseReason::Refused(refusal)));
        }
        Some(Stop::End)
    }

    /// A client ack waiting to be sent (acknowledging clients only).
    fn pending_ack(&self) -> Option<u64> {
        if !self.seat.acknowledges {
            return None;
        }
        let mut attach = self.rt.attach_state();
        if attach.current.generation == self.seat.generation {
            attach.pending_ack.take()
        } else {
            None
        }
    }

    /// What can be decided without waiting: the checks, in order, then the next buffered
    /// event. [`Step::Empty`] when the buffer must be refilled (or the session waited for).
    fn step(&mut self) -> Step {
        if self.done {
            return Step::Yield(None);
        }
        match self.stop() {
            Some(Stop::Close(reason)) => {
                return Step::Yield(self.finish(Some(Outgoing::Close(reason))))
            }
            Some(Stop::End) => return Step::Yield(self.finish(None)),
            None => {}
        }
        if let Some(seq) = self.pending_ack() {
            return Step::Yield(Some(Outgoing::Ack { seq }));
        }
        if let Some(end) = self.replay_end {
            if self.next_seq > end {
                self.replay_end = None;
                if self.seat.acknowledges {
                    return Step::Yield(Some(Outgoing::ReplayComplete { last_seq: end }));
                }
                return Step::Again;
            }
        }
        // After the `final`, nothing: once this connection sent it, or when the resume
        // started past it.
        let final_seq = self.rt.final_seq.load(Ordering::Acquire);
        if final_seq != 0 && self.next_seq > final_seq {
            return Step::Yield(self.finish(None));
        }
        match self.buffer.pop_front() {
            Some(event) => Step::Yield(self.buffered(event)),
            None => Step::Empty,
        }
    }

    async fn next_outgoing(&mut self) -> Option<Outgoing> {
        loop {
            if self.done {
                return None;
            }
            let rt = Arc::clone(&self.rt);
            let notified = rt.control.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            match self.step() {
                Step::Yield(item) => return item,
                Step::Again => continue,
                Step::Empty => {}
            }
            if let Err(err) = self.refill().await {
                let refusal = Refusal::new(
                    RefusalReason::Unavailable,
                    format!("session {}: {err}", self.rt.id),
                );
                return self.finish(Some(Outgoing::Close(CloseReason::Refused(refusal))));
            }
            if !self.buffer.is_empty() {
                continue;
            }
            let remote = self.rt.remote;
            let appended_rx = &mut self.appended;
            let appended = async {
                match appended_rx.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending::<bool>().await,
                }
            };
            tokio::select! {
                alive = appended => {
                    if !alive {
                        if remote {
                            return self.remote_gone().await;
                        }
                        // The store dropped the session: wait for `closed` instead.
                        self.appended = None;
                    }
                }
                () = notified => {}
                changed = self.attaches.changed() => {
                    // Seen by `changed()`, yet not compared: the next check compares.
                    if changed.is_ok() {
                        self.attaches.mark_changed();
                    }
                }
                () = self.shutdown.cancelled() => {}
                _ = self.closed.changed() => {}
                _ = self.store_lost.changed() => {}
            }
            // A `changed()` above marked its value seen: the next check looks at them all.
            self.flags_seen = false;
        }
    }

    /// The item for `event`, just taken from the buffer: the event, or the refusal when
    /// events this connection had not sent left retention.
    fn buffered(&mut self, event: Arc<EncodedEvent>) -> Option<Outgoing> {
        if event.seq > self.next_seq && event.seq - 1 <= self.rt.acked.load(Ordering::Acquire) {
            // The client acknowledged what left retention before this connection
            // sent it: it holds those events already.
            self.next_seq = event.seq;
        }
        if event.seq != self.next_seq {
            // Events this connection had not read left retention (drop_oldest).
            let refusal = Refusal::new(
                RefusalReason::TooFarBehind,
                format!(
                    "session {}: seq {} left retention before it was sent",
                    self.rt.id, self.next_seq
                ),
            );
            return self.finish(Some(Outgoing::Close(CloseReason::Refused(refusal))));
        }
        self.next_seq += 1;
        if matches!(event.payload, EventPayload::Final(_)) {
            // A local runtime set it when publishing; a remote one learns it here.
            self.rt.final_seq.fetch_max(event.seq, Ordering::AcqRel);
        }
        if self.rt.remote {
            // Acknowledgements are clamped to what this runtime saw published.
            self.rt.last_seq.fetch_max(event.seq, Ordering::AcqRel);
        }
        Some(Outgoing::Event(event))
    }
}

/// What [`HubEvents::step`] decided.
enum Step {
    /// This item is next (`None`: the stream is over).
    Yield(Option<Outgoing>),
    /// A check changed the state: decide again.
    Again,
    /// Nothing buffered: refill, or wait.
    Empty,
}

impl EventSource for HubEvents {
    fn next(&mut self) -> BoxFuture<'_, Option<Outgoing>> {
        Box::pin(self.next_outgoing())
    }

    fn next_ready(&mut self) -> Option<Outgoing> {
        loop {
            if self.buffer.is_empty() {
                // A refill or a wait is `next`'s work.
                return None;
            }
            match self.step() {
                Step::Yield(item) => return item,
                Step::Again => {}
                Step::Empty => return None,
            }
        }
    }

    fn written(&mut self, seq: u64) {
        // Every connection's writes time the sample, acknowledging ones included.
        self.rt.sample.written(seq, self.shared.metrics());
        if self.seat.acknowledges {
            return;
        }
        {
            // Under the attach lock: a newer connection resets `written` under the same lock
            // as it takes over, so a superseded one can never record its position after that
            // (the publisher would let events the new connection has not sent leave).
            let attach = self.rt.attach_state();
            if attach.current.generation != self.seat.generation {
                return;
            }
            self.rt.written.fetch_max(seq, Ordering::AcqRel);
        }
        self.rt.space.notify_waiters();
    }
}

impl Drop for HubEvents {
    fn drop(&mut self) {
        self.rt.detach(self.seat.generation);
        self.leave_store();
    }
}

/// Where one attachment's client messages and acknowledgements go.
pub(crate) struct HubUpstream {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rt: Arc<LiveSession>,
    pub(crate) seat: Seat,
}

impl std::fmt::Debug for HubUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubUpstream")
            .field("session", &self.rt.id.as_str())
            .field("generation", &self.seat.generation)
            .finish_non_exhaustive()
    }
}

impl Upstream for HubUpstream {
    fn deliver(&self, messages: Vec<RuntimeChannelMessage>) -> BoxFuture<'_, Result<u64, Refusal>> {
        Box::pin(async move {
            let held = deliver(&self.shared, &self.rt, messages).await?;
            if self.seat.acknowledges {
                let mut attach = self.rt.attach_state();
                if attach.current.generation == self.seat.generation {
                    attach.pending_ack = Some(held);
                }
                drop(attach);
                self.rt.control.notify_waiters();
            }
            Ok(held)
        })
    }

    fn ack(&self, seq: u64) {
        acknowledge(&self.rt, seq);
        if self.rt.remote {
            // The event source releases the acknowledged events from the shared store.
            self.rt.control.notify_waiters();
        }
    }
}

/// The client holds server events up to `seq`: they may leave retention.
pub(crate) fn acknowledge(rt: &LiveSession, seq: u64) {
    // An ack past what was published must not let future events leave unsent.
    let seq = seq.min(rt.last_seq.load(Ordering::Acquire));
    rt.acked.fetch_max(seq, Ordering::AcqRel);
    rt.space.notify_waiters();
}

/// Hands client messages to the application in order, each seq once. A message without a
/// seq takes the next one; a seq already held is skipped (acknowledged again); a seq past
/// the next one is accepted and the position jumps to it (the client numbers its messages,
/// and a gap means it gave up on the ones between). Returns the highest seq held.
pub(crate) async fn deliver(
    shared: &Arc<Shared>,
    rt: &Arc<LiveSession>,
    messages: Vec<RuntimeChannelMessage>,
) -> Result<u64, Refusal> {
    let unavailable = |err: Error| match err {
        Error::UnknownSession(_) => Refusal::new(
            RefusalReason::UnknownSession,
            format!("session {} is unknown to the store", rt.id),
        ),
        err => Refusal::new(
            RefusalReason::Unavailable,
            format!("session {}: {err}", rt.id),
        ),
    };
    if let Some(sharing) = shared.store().sharing() {
        // The producer may run on any server: the store numbers, dedupes and hands the
        // messages to its inbox, atomically with the client position.
        let items = messages.into_iter().map(Inbound::Message).collect();
        return sharing.forward(&rt.id, items).await.map_err(unavailable);
    }
    let guard = rt.upstream.lock().await;
    let Some(app) = guard.as_ref() else {
        return Err(Refusal::new(
            RefusalReason::UnknownSession,
            format!("session {} is closed", rt.id),
        ));
    };
    let mut held = shared
        .store()
        .retention(&rt.id)
        .await
        .map_err(unavailable)?
        .client_seq;
    // A `cancel` ends the session (its own `error` and `final`) once the messages before it
    // are handed over; the reason of the first one is the message.
    let mut cancel: Option<String> = None;
    for message in messages {
        let seq = message.seq.unwrap_or(held + 1);
        if seq <= held {
            continue;
        }
        if let RuntimeChannelPayload::Cancel(payload) = &message.payload {
            rt.cancelled.send_replace(true);
            cancel
                .get_or_insert_with(|| super::cancel_message(payload.reason.as_deref()).to_owned());
        }
        if app.send(message).await.is_err() {
            tracing::debug!(session = %rt.id, seq, "the application no longer reads messages");
        }
        held = shared
            .store()
            .advance_client_seq(&rt.id, seq)
            .await
            .map_err(unavailable)?;
    }
    drop(guard);
    if let Some(message) = cancel {
        super::session::terminate(shared, rt, &message)
            .await
            .map_err(unavailable)?;
    }
    Ok(held)
}

//! One session's in-process side: what the application holds ([`SessionHandle`],
//! [`Messages`], [`AcceptedSession`]) and what the hub keeps beside the store (`LiveSession`): the
//! publish path with its backpressure, the current attachment, cancellation.

use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use enclave_transport::{EncodedEvent, SessionConfig};
use enclave_types::{
    ErrorEventPayload, ErrorInfo, EventPayload, FinalPayload, RuntimeChannelMessage, SessionId,
    SessionState, SessionStats, StreamEvent,
};
use tokio::sync::{mpsc, watch, Mutex as AsyncMutex, Notify};
use tokio::time::Instant;

use super::config::{HubConfig, OverflowPolicy};
use super::lane::{Batch, Lane, Note};
use super::metrics::{Ended, HubMetrics, SessionCount, WriteSample};
use super::Shared;
use crate::store::{NewEvent, Progress, Retention};
use crate::Error;

/// The attachment currently serving a session.
#[derive(Debug, Default)]
pub(crate) struct AttachState {
    /// The current connection's seat: its generation is bumped by every attach, and an event
    /// source whose generation is older was superseded. The session's one copy of the
    /// generation ([`LiveSession::attaches`] only says that it changed); each connection's
    /// own seat is a copy of what it was given, never updated.
    pub(crate) current: Seat,
    /// When the last connection ended (`None` while one is attached).
    pub(crate) detached_at: Option<Instant>,
    /// A client ack to send on the current attachment (resume-feature clients only).
    pub(crate) pending_ack: Option<u64>,
}

/// What the publisher knows between publishes (guarded by the publish lock). The next seq
/// is [`LiveSession::next_seq`] and whether the `final` was published is
/// [`LiveSession::final_seq`]: neither is kept here.
#[derive(Debug, Default)]
pub(crate) struct PublishState {
    /// The retention the store last answered, with every event queued since counted in
    /// (those still in the [`Lane`] included). Only this publisher appends, and everything
    /// else only trims, so it bounds the real one from above: an event that fits it fits,
    /// without asking the store again.
    pub(crate) retention: Option<Retention>,
}

/// What a session produced until now, as the stats of the `final` a cancel publishes.
#[derive(Debug)]
pub(crate) struct Tally {
    /// When the runtime was made (ms since the epoch): a cancel's `final` reports the
    /// session's age as its duration.
    created_at_ms: u64,
    /// Tool calls published.
    tool_calls: AtomicU64,
    /// UTF-8 bytes of the `stdout` chunks published.
    stdout_bytes: AtomicU64,
}

impl Tally {
    fn new() -> Self {
        Self {
            created_at_ms: super::clock::now_ms(),
            tool_calls: AtomicU64::new(0),
            stdout_bytes: AtomicU64::new(0),
        }
    }

    /// Counts a published event: a tool call, or `stdout_bytes` of output (0 for neither).
    fn count(&self, tool_call: bool, stdout_bytes: u64) {
        if tool_call {
            self.tool_calls.fetch_add(1, Ordering::AcqRel);
        }
        if stdout_bytes > 0 {
            self.stdout_bytes.fetch_add(stdout_bytes, Ordering::AcqRel);
        }
    }

    /// The stats of a `final` published now, as a `final` the application sends reports
    /// them.
    fn stats(&self) -> SessionStats {
        let elapsed = super::clock::now_ms().saturating_sub(self.created_at_ms);
        #[allow(clippy::cast_precision_loss)] // milliseconds: exact far beyond any session's age
        let duration_ms = elapsed as f64;
        SessionStats::new(
            duration_ms,
            self.tool_calls.load(Ordering::Acquire),
            self.stdout_bytes.load(Ordering::Acquire),
        )
    }
}

/// One connection's place on a session, as [`LiveSession::attach`] gave it: superseded once
/// another attach bumps the session's generation past it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Seat {
    /// The attachment's generation (0 before the first attach).
    pub(crate) generation: u64,
    /// Whether its connection acknowledges events (`resume` feature).
    pub(crate) acknowledges: bool,
}

/// How often (in appended seqs) a publish moves the retained gauges (`enclave_retained_*`):
/// two shared atomics per event cost more than the gauges are worth between two trims.
const RETAINED_EVERY: u64 = 64;

/// The in-process side of one session, beside what its store keeps (named so because
/// "runtime" already means the EnclaveJS runtime and tokio's).
#[derive(Debug)]
pub(crate) struct LiveSession {
    pub(crate) id: SessionId,
    /// Whether the session's producer runs elsewhere (a shared store): this runtime only
    /// serves one attachment from the store's log.
    pub(crate) remote: bool,
    pub(crate) publish: AsyncMutex<PublishState>,
    /// Serializes client message delivery, so order and dedupe hold across carriers.
    pub(crate) upstream: AsyncMutex<Option<mpsc::Sender<RuntimeChannelMessage>>>,
    /// Woken when retention may have room: acks, writes, attach changes, close.
    pub(crate) space: Notify,
    /// Woken when an attachment has a control line to send.
    pub(crate) control: Notify,
    /// Highest server seq the client acknowledged.
    pub(crate) acked: AtomicU64,
    /// Highest seq written to a connection that does not acknowledge.
    pub(crate) written: AtomicU64,
    /// The last seq the store holds (acknowledgements beyond it are clamped to it). Written
    /// by the session's append [`Lane`] flusher (or, for a remote runtime, by its event
    /// source), read without a lock.
    pub(crate) last_seq: AtomicU64,
    /// The last seq published: numbered and queued in the [`Lane`], perhaps not in the store
    /// yet. The next one to publish is derived from it ([`next_seq`](Self::next_seq)).
    /// Written under the publish lock.
    pub(crate) queued_seq: AtomicU64,
    /// The published events on their way into the store.
    pub(crate) lane: Lane,
    /// The seq of the `final` event, 0 before it: also whether the session finished
    /// ([`PublishState::finished`]).
    pub(crate) final_seq: AtomicU64,
    pub(crate) attach: Mutex<AttachState>,
    /// Changed by every attach, so an event source notices a supersede without taking the
    /// attach lock per event; the generation itself is [`AttachState::current`].
    pub(crate) attaches: watch::Sender<()>,
    pub(crate) cancelled: watch::Sender<bool>,
    /// `true` once the session was deleted or expired.
    pub(crate) closed: watch::Sender<bool>,
    /// `true` from a publish that the store refused for longer than the hub's store retry
    /// until the sweeper has recorded the session's `final` (`STORE_UNAVAILABLE`) in the
    /// store: connections here end with an `unavailable` refusal and resumes here are
    /// refused the same way meanwhile. Set when the [`Lane`] fails on the store (which a
    /// publish checks without this watch's lock) and, unlike the lane's failure, cleared
    /// once that `final` is in.
    pub(crate) store_lost: watch::Sender<bool>,
    pub(crate) state: watch::Sender<SessionState>,
    /// When the session expired (it is purged a grace period later).
    pub(crate) expired_at: Mutex<Option<Instant>>,
    /// What the session produced, for a cancel's `final` stats.
    pub(crate) tally: Tally,
    /// The IP address of the connection that created the session, when known: what
    /// [`HubConfig::max_sessions_per_peer`](crate::HubConfig::max_sessions_per_peer) counts.
    pub(crate) peer: Option<std::net::IpAddr>,
    /// How the metrics count the session: a session produced here only (`None` for a
    /// remote runtime, which its producer's server counts).
    count: Option<SessionCount>,
    /// The publish → write latency sample in flight.
    pub(crate) sample: WriteSample,
}

impl LiveSession {
    /// Whether nothing more can be published: the `final` was, or the store refused a
    /// publish (the lane failed). `final_seq` is set when a `final` is queued and cleared
    /// again if its append fails.
    pub(crate) fn finished(&self) -> bool {
        self.lane.is_failed() || self.final_seq.load(Ordering::Acquire) != 0
    }

    /// The runtime of a session produced here, created by a connection from `peer`.
    pub(crate) fn new(
        id: SessionId,
        messages: mpsc::Sender<RuntimeChannelMessage>,
        peer: Option<std::net::IpAddr>,
        metrics: &HubMetrics,
    ) -> Self {
        let mut rt = Self::with_upstream(id, Some(messages), peer);
        rt.count = Some(SessionCount::new(metrics));
        rt
    }

    /// The runtime of a session produced on another server sharing the store.
    pub(crate) fn remote(id: SessionId) -> Self {
        Self::with_upstream(id, None, None)
    }

    fn with_upstream(
        id: SessionId,
        messages: Option<mpsc::Sender<RuntimeChannelMessage>>,
        peer: Option<std::net::IpAddr>,
    ) -> Self {
        Self {
            count: None,
            sample: WriteSample::new(),
            remote: messages.is_none(),
            id,
            publish: AsyncMutex::new(PublishState::default()),
            upstream: AsyncMutex::new(messages),
            space: Notify::new(),
            control: Notify::new(),
            acked: AtomicU64::new(0),
            written: AtomicU64::new(0),
            last_seq: AtomicU64::new(0),
            queued_seq: AtomicU64::new(0),
            lane: Lane::new(),
            final_seq: AtomicU64::new(0),
            attach: Mutex::new(AttachState::default()),
            attaches: watch::channel(()).0,
            cancelled: watch::channel(false).0,
            closed: watch::channel(false).0,
            store_lost: watch::channel(false).0,
            state: watch::channel(SessionState::Starting).0,
            expired_at: Mutex::new(None),
            tally: Tally::new(),
            peer,
        }
    }

    /// The seq the next publish takes: the one after the last published (queued). Stable
    /// only under the publish lock (the publisher is the only one to move it).
    pub(crate) fn next_seq(&self) -> u64 {
        self.queued_seq.load(Ordering::Acquire) + 1
    }

    pub(crate) fn attach_state(&self) -> std::sync::MutexGuard<'_, AttachState> {
        self.attach.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes a new attachment current; returns its seat. A connection still attached is
    /// superseded, and counted so in `metrics`.
    pub(crate) fn attach(
        &self,
        acknowledges: bool,
        acked_through: u64,
        metrics: &HubMetrics,
    ) -> Seat {
        self.acked.fetch_max(acked_through, Ordering::AcqRel);
        let seat = {
            let mut attach = self.attach_state();
            if attach.current.generation > 0 && attach.detached_at.is_none() {
                metrics.superseded();
            }
            // A new connection has written nothing yet. Reset under the attach lock, with the
            // generation: an older connection records what it wrote under the same lock and
            // only while its generation is current.
            self.written.store(acked_through, Ordering::Release);
            attach.current = Seat {
                generation: attach.current.generation + 1,
                acknowledges,
            };
            attach.detached_at = None;
            attach.pending_ack = None;
            attach.current
        };
        self.attaches.send_replace(());
        self.space.notify_waiters();
        seat
    }

    /// The attachment of `generation` ended.
    pub(crate) fn detach(&self, generation: u64) {
        let mut attach = self.attach_state();
        if attach.current.generation == generation && attach.detached_at.is_none() {
            attach.detached_at = Some(Instant::now());
        }
    }

    /// The session moved to `state` (its watch, and the metrics' gauge of its state).
    pub(crate) fn set_state(&self, state: SessionState) {
        self.state.send_replace(state);
        if let Some(count) = &self.count {
            count.state(state);
        }
    }

    /// The session ended `how` (the metrics count its first end).
    pub(crate) fn ended(&self, how: Ended) {
        if let Some(count) = &self.count {
            count.ended(how);
        }
    }

    /// The store answered the session's retention after an append or trim here.
    pub(crate) fn retained(&self, retention: &Retention) {
        if let Some(count) = &self.count {
            count.retained(retention);
        }
    }

    /// The session left the hub: the metrics count it no more.
    pub(crate) fn leave_metrics(&self) {
        if let Some(count) = &self.count {
            count.leave();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Whether the session still holds a live place: its `final` not published, and not
    /// deleted or expired.
    pub(crate) fn is_live(&self) -> bool {
        self.final_seq.load(Ordering::Acquire) == 0 && !self.is_closed()
    }

    /// Ends the session here: [`close`](Self::close)s it and stops handing client messages
    /// to the application.
    pub(crate) async fn end(&self) {
        self.close();
        self.upstream.lock().await.take();
    }

    pub(crate) fn close(&self) {
        self.closed.send_replace(true);
        // The application stops working on a session that is gone.
        self.cancelled.send_replace(true);
        self.space.notify_waiters();
        self.control.notify_waiters();
    }
}

/// The code of the `error` event and of the `final`'s error a cancelled session ends with,
/// as the TypeScript broker's `BrokerSession.cancel` sends them.
pub(crate) const CANCELLED_CODE: &str = "SESSION_CANCELLED";

/// The message of a cancel that gave no reason (the broker's).
pub(crate) const CANCELLED_MESSAGE: &str = "Session was cancelled";

/// The message of a `DELETE` (the broker's `SessionManager.terminate` without a reason).
pub(crate) const TERMINATED_MESSAGE: &str = "Terminated by session manager";

/// Ends the session as the broker's cancel does: the application's side is cancelled, then
/// the session publishes an `error` event (`SESSION_CANCELLED`, `message`, not recoverable)
/// and a `final` with `ok: false` and that error, the next two seqs. A producer blocked in
/// `publish` (policy `wait`) is woken and refused, and so is anything it publishes after:
/// the `final` is the last event. The two events are admitted past the retention bound (a
/// cancel must not wait for a client that does not read). Returns whether this call ended
/// the session (`false` when it had finished already, or was closed).
pub(crate) async fn terminate(
    shared: &Arc<Shared>,
    rt: &Arc<LiveSession>,
    message: &str,
) -> Result<bool, Error> {
    rt.cancelled.send_replace(true);
    // A producer waiting for room holds the publish lock: it sees the cancel and lets go.
    rt.space.notify_waiters();
    let mut state = rt.publish.lock().await;
    if rt.finished() || rt.is_closed() {
        return Ok(false);
    }
    rt.ended(Ended::Cancelled);
    tracing::debug!(session = %rt.id, message, "session cancelled: ending its stream");
    let mut error = ErrorEventPayload::new(message);
    error.code = Some(CANCELLED_CODE.to_owned());
    error.recoverable = Some(false);
    let queued = publish_locked(shared, rt, &mut state, EventPayload::Error(error), true).await?;
    start_flusher(shared, rt, queued.start_flusher);
    let mut info = ErrorInfo::new(message);
    info.code = Some(CANCELLED_CODE.to_owned());
    let mut last = FinalPayload::new(false);
    last.error = Some(info);
    // What the session produced until now, as a `final` the application sends reports it.
    last.stats = Some(rt.tally.stats());
    let queued = publish_locked(shared, rt, &mut state, EventPayload::Final(last), true).await?;
    start_flusher(shared, rt, queued.start_flusher);
    // The `final` is in the store when a cancel returns, as when `finish` does.
    rt.lane.wait(&rt.id, queued.seq).await?;
    Ok(true)
}

/// Publishes `payload` as the session's next event, waiting for room per the overflow policy.
///
/// Refused once the session was cancelled: the session's own `final` ends it then.
///
/// A publish that the store keeps refusing past the hub's store retry ends the session: the
/// error is returned, nothing more can be published, the session's connections on this
/// server end with an `unavailable` refusal, and the sweeper records a `final`
/// (`ok: false`, code [`STORE_UNAVAILABLE`]) once the store answers again.
pub(crate) async fn publish(
    shared: &Arc<Shared>,
    rt: &Arc<LiveSession>,
    payload: EventPayload,
    durable: bool,
) -> Result<u64, Error> {
    let queued = {
        let mut state = rt.publish.lock().await;
        if *rt.cancelled.borrow() {
            return Err(Error::SessionClosed(rt.id.clone()));
        }
        match publish_locked(shared, rt, &mut state, payload, false).await {
            Ok(queued) => queued,
            Err(err @ Error::Store { .. }) => {
                // Making room failed in the store as long as an append may: the same end.
                state.retention = None;
                lost(shared, rt, err);
                return Err(rt.lane.error(&rt.id));
            }
            Err(err) => return Err(err),
        }
    };
    if queued.start_flusher && (durable || queued.is_final) {
        // The lane was idle: this publish appends what is queued itself, up to its own
        // event (a store without a round trip then costs no task per publish).
        Leader::new(shared, rt).lead(queued.seq).await;
    } else {
        start_flusher(shared, rt, queued.start_flusher);
    }
    if durable || queued.is_final {
        rt.lane.wait(&rt.id, queued.seq).await?;
    }
    Ok(queued.seq)
}

/// A publish that found the lane idle and flushes it in place of a flusher task, until its
/// own event is in. Dropped before that (the publish future was), it hands the lane on: a
/// batch in flight goes back to the queue and a flusher task takes over.
struct Leader<'a> {
    shared: &'a Arc<Shared>,
    rt: &'a Arc<LiveSession>,
    in_flight: Option<Batch>,
    done: bool,
}

impl<'a> Leader<'a> {
    fn new(shared: &'a Arc<Shared>, rt: &'a Arc<LiveSession>) -> Self {
        Self {
            shared,
            rt,
            in_flight: None,
            done: false,
        }
    }

    async fn lead(mut self, seq: u64) {
        let (shared, rt) = (self.shared, self.rt);
        while rt.last_seq.load(Ordering::Acquire) < seq {
            let Some(batch) = rt.lane.next_batch() else {
                self.done = true;
                return;
            };
            let batch = self.in_flight.insert(batch);
            let appended = append(shared, rt, batch).await;
            let Some(batch) = self.in_flight.take() else {
                return;
            };
            match appended {
                Ok(retention) => landed(shared, rt, &batch, &retention),
                Err(err) => {
                    lost(shared, rt, err);
                    self.done = true;
                    return;
                }
            }
        }
        // Its event is in: what was queued meanwhile goes to a flusher task.
        self.done = true;
        if rt.lane.hand_on() {
            tokio::spawn(flush(Arc::clone(shared), Arc::clone(rt)));
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(batch) = self.in_flight.take() {
            self.rt.lane.requeue(batch);
        }
        // Without a runtime (it is shutting down) nothing flushes any more anyway.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(flush(Arc::clone(self.shared), Arc::clone(self.rt)));
        }
    }
}

/// Ends the session's lane on `err`, the store's final refusal of its events (or of the
/// room for them): nothing more is published, the session's connections here end with an
/// `unavailable` refusal, and the sweeper records its `final` once the store answers. For
/// another refusal (the session was ended under it) only the lane ends; the lane's
/// [`error`](Lane::error) is what publishers report.
fn lost(shared: &Shared, rt: &LiveSession, err: Error) {
    let store = matches!(err, Error::Store { .. });
    if store {
        tracing::error!(
            session = %rt.id,
            error = %err,
            retried_for = ?shared.config.store_retry,
            "the session store refused a publish: the session ends, its final is recorded once the store answers"
        );
    }
    // A `final` that did not land is not the session's last event: the sweeper's is.
    let durable = rt.last_seq.load(Ordering::Acquire);
    let _ = rt
        .final_seq
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |seq| {
            (seq > durable).then_some(0)
        });
    let dropped = rt.lane.fail(err);
    if dropped > 0 {
        tracing::warn!(session = %rt.id, dropped, "events queued behind the refused append are not published");
    }
    if store {
        rt.ended(Ended::StoreUnavailable);
        rt.store_lost.send_replace(true);
    }
    rt.space.notify_waiters();
    rt.control.notify_waiters();
}

/// Starts the session's flusher when [`publish_locked`] queued into an idle lane.
fn start_flusher(shared: &Arc<Shared>, rt: &Arc<LiveSession>, start: bool) {
    if start {
        tokio::spawn(flush(Arc::clone(shared), Arc::clone(rt)));
    }
}

/// The lane's flusher: appends its batches, one store call each, until the queue is empty.
async fn flush(shared: Arc<Shared>, rt: Arc<LiveSession>) {
    while let Some(batch) = rt.lane.next_batch() {
        match append(&shared, &rt, &batch).await {
            Ok(retention) => landed(&shared, &rt, &batch, &retention),
            Err(err) => {
                // The queue is dropped with the lane; a waiting publisher reports the error.
                lost(&shared, &rt, err);
                return;
            }
        }
    }
}

/// `batch` is in the store, which answered `retention`: the session's metadata and the
/// metrics follow, then whoever waits for it is told.
fn landed(shared: &Shared, rt: &LiveSession, batch: &Batch, retention: &Retention) {
    let Some(newest) = batch.events.last().map(NewEvent::seq) else {
        return;
    };
    rt.last_seq.store(newest, Ordering::Release);
    // The retained gauges are shared by every session: moved at every trim, at the first
    // append (the `session_init`), the `final` and every [`RETAINED_EVERY`]th event.
    if batch.gauge {
        rt.retained(retention);
    }
    if batch.has_final {
        rt.ended(Ended::Final);
        shared.metrics().final_recorded(retention);
    }
    rt.lane.landed(newest);
}

/// What [`publish_locked`] queued.
struct Queued {
    seq: u64,
    is_final: bool,
    /// The lane was idle: the caller starts its flusher ([`start_flusher`]).
    start_flusher: bool,
}

/// The `error.code` of the `final` that ends a session whose publish the store refused for
/// longer than the hub's store retry.
pub const STORE_UNAVAILABLE: &str = "STORE_UNAVAILABLE";

/// [`publish`] under the publish lock; `terminal` events (a cancel's) skip the wait for room.
async fn publish_locked(
    shared: &Shared,
    rt: &LiveSession,
    state: &mut PublishState,
    payload: EventPayload,
    terminal: bool,
) -> Result<Queued, Error> {
    if shared.shutdown.is_cancelled() {
        return Err(Error::ShuttingDown);
    }
    // A lane that failed reported its refusal to the publishes it refused: after them the
    // session is closed (`finished`).
    if rt.finished() || rt.is_closed() {
        return Err(Error::SessionClosed(rt.id.clone()));
    }
    let seq = rt.next_seq();
    let is_final = matches!(payload, EventPayload::Final(_));
    let next_state = next_state(&payload, rt);
    let is_tool_call = matches!(payload, EventPayload::ToolCall(_));
    let stdout_bytes = match &payload {
        EventPayload::Stdout(stdout) => stdout.chunk.len() as u64,
        _ => 0,
    };
    // The event is serialized once, here: retention counts the JSON's size, and every
    // connection writes (or seals) these very bytes.
    let event =
        EncodedEvent::new(StreamEvent::new(rt.id.clone(), seq, payload)).map_err(|source| {
            Error::Encode {
                session: rt.id.clone(),
                seq,
                source,
            }
        })?;
    let event = NewEvent::new(Arc::new(event));
    let retention = if terminal {
        None
    } else {
        Some(make_room(shared, rt, event.bytes, state.retention.take()).await?)
    };
    state.retention = retention.map(|retention| with_event(retention, seq, event.bytes));
    // `final_seq` is known before the append wakes any reader: a reader that takes `final`
    // right away must find it set, or it would wait for a next event that never comes.
    if is_final {
        rt.final_seq.store(seq, Ordering::Release);
    }
    rt.sample.published(seq);
    // The state changes as the event is published (the store's metadata when it lands).
    let changed = next_state.filter(|next| *next != *rt.state.borrow());
    if let Some(next) = changed {
        rt.set_state(next);
    }
    rt.tally.count(is_tool_call, stdout_bytes);
    let note = Note {
        state: changed,
        tool_calls: u64::from(is_tool_call),
        is_final,
        gauge: is_final || seq == 1 || seq.is_multiple_of(RETAINED_EVERY),
    };
    rt.queued_seq.store(seq, Ordering::Release);
    let start_flusher = rt.lane.push(event, note);
    Ok(Queued {
        seq,
        is_final,
        start_flusher,
    })
}

/// `retention` with one more event, of `seq` and `bytes`, retained.
fn with_event(mut retention: Retention, seq: u64, bytes: u64) -> Retention {
    if retention.count == 0 {
        retention.first_seq = seq;
    }
    retention.count += 1;
    retention.bytes = retention.bytes.saturating_add(bytes);
    retention.last_seq = seq;
    retention
}

/// How long apart a store operation that failed in the store's backend is tried again.
const STORE_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs a store operation, trying again while the store's backend fails, for the hub's
/// store retry in all (a shared store's server restarting, a connection re-established).
/// Other errors, and the last backend failure, are returned. The first failure of a run is
/// logged at WARN, the rest at DEBUG (the caller reports giving up).
async fn retrying<T, F, Fut>(
    shared: &Shared,
    rt: &LiveSession,
    what: &str,
    mut op: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let deadline = Instant::now() + shared.config.store_retry;
    let delay = STORE_RETRY_DELAY.min(shared.config.store_retry / 4);
    let mut attempt = 0u32;
    loop {
        match op().await {
            Err(message @ Error::Store { .. }) if Instant::now() + delay < deadline => {
                attempt += 1;
                if attempt == 1 {
                    tracing::warn!(session = %rt.id, %message, "{what} failed in the session store; trying again");
                } else {
                    tracing::debug!(session = %rt.id, attempt, %message, "{what} failed; trying again");
                }
                if shared.shutdown.is_cancelled() || rt.is_closed() {
                    return Err(message);
                }
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

/// Appends a batch of the lane with what it changed in the session's metadata, in one store
/// call. A shared store recognises a retry of an append whose answer was lost (the same
/// events at the same seqs) and answers it as done.
async fn append(shared: &Shared, rt: &LiveSession, batch: &Batch) -> Result<Retention, Error> {
    let store = shared.store();
    match batch.progress(super::clock::now_ms) {
        Some(progress) => {
            retrying(shared, rt, "append", || {
                store.append_with_progress(&rt.id, &batch.events, progress)
            })
            .await
        }
        None => retrying(shared, rt, "append", || store.append(&rt.id, &batch.events)).await,
    }
}

/// Records the `final` of a session whose publish the store refused (see [`publish`]), now
/// that the store answered with `snapshot`: `ok: false`, code [`STORE_UNAVAILABLE`], at the
/// seq after the last one the store holds (an append whose answer was lost may have landed).
/// Once it is recorded, resumes are served again and end with it. A session that already
/// has its `final` (another server ended it) is left as it is. Called by the sweeper, so a
/// store still failing is tried again at its next pass.
pub(crate) async fn record_store_loss(
    shared: &Shared,
    rt: &LiveSession,
    snapshot: &crate::store::Snapshot,
) {
    let mut state = rt.publish.lock().await;
    if !*rt.store_lost.borrow() {
        return;
    }
    let last = snapshot.retention.last_seq;
    if snapshot.meta.finished_at_ms.is_some() {
        rt.final_seq.fetch_max(last, Ordering::AcqRel);
        rt.last_seq.fetch_max(last, Ordering::AcqRel);
        rt.queued_seq.fetch_max(last, Ordering::AcqRel);
        rt.store_lost.send_replace(false);
        return;
    }
    let seq = last + 1;
    let mut error = enclave_types::ErrorInfo::new(format!(
        "the session store refused this session's events for longer than {:?}; \
         events after seq {last} were not recorded",
        shared.config.store_retry
    ));
    error.code = Some(STORE_UNAVAILABLE.to_owned());
    let mut payload = FinalPayload::new(false);
    payload.error = Some(error);
    let event = match EncodedEvent::new(StreamEvent::new(
        rt.id.clone(),
        seq,
        EventPayload::Final(payload),
    )) {
        Ok(event) => NewEvent::new(Arc::new(event)),
        Err(err) => {
            tracing::error!(session = %rt.id, seq, %err, "the final of a lost session cannot be serialized");
            return;
        }
    };
    // Known before the append wakes a reader, as for any `final`.
    rt.final_seq.store(seq, Ordering::Release);
    match shared
        .store()
        .append(&rt.id, std::slice::from_ref(&event))
        .await
    {
        Ok(retention) => {
            rt.retained(&retention);
            shared.metrics().final_recorded(&retention);
            state.retention = Some(retention);
            rt.last_seq.store(seq, Ordering::Release);
            rt.queued_seq.store(seq, Ordering::Release);
            let progress = Progress {
                state: Some(SessionState::Failed),
                tool_calls: 0,
                finished_at_ms: Some(super::clock::now_ms()),
            };
            rt.set_state(SessionState::Failed);
            if let Err(err) = shared.store().record_progress(&rt.id, progress).await {
                tracing::warn!(session = %rt.id, %err, "session metadata not updated");
            }
            rt.store_lost.send_replace(false);
            tracing::warn!(
                session = %rt.id,
                seq,
                "the session store answers again: the session ended with final {{ok: false, code: {STORE_UNAVAILABLE}}}"
            );
        }
        Err(err) => {
            rt.final_seq.store(0, Ordering::Release);
            tracing::debug!(session = %rt.id, seq, %err, "the final of a lost session is not recorded yet");
        }
    }
}

/// The state an event moves the session to, if any.
fn next_state(payload: &EventPayload, rt: &LiveSession) -> Option<SessionState> {
    match payload {
        EventPayload::Heartbeat(_) | EventPayload::SessionInit(_) => None,
        EventPayload::ToolCall(_) => Some(SessionState::WaitingForTool),
        EventPayload::Final(f) if f.ok => Some(SessionState::Completed),
        EventPayload::Final(_) if *rt.cancelled.borrow() => Some(SessionState::Cancelled),
        EventPayload::Final(_) => Some(SessionState::Failed),
        _ => Some(SessionState::Running),
    }
}

/// Waits until an event of `bytes` fits the bound: acknowledged events leave first, then
/// (for a client without acknowledgements) written ones, oldest first; under `DropOldest`
/// the oldest leaves anyway. An event is always admitted into an empty retention, so one
/// event larger than the byte bound cannot wedge a session. `known` is the retention the
/// last append left, if the publisher has it.
async fn make_room(
    shared: &Shared,
    rt: &LiveSession,
    bytes: u64,
    known: Option<Retention>,
) -> Result<Retention, Error> {
    // Set when the publish first waits: `publish_wait_seconds` times only publishes that did.
    let mut waited: Option<std::time::Instant> = None;
    let made = wait_for_room(shared, rt, bytes, known, &mut waited).await;
    if let Some(since) = waited {
        shared.metrics().waited(since);
    }
    made
}

/// [`make_room`]'s work; `waited` is set to when it first waits for room, if it does.
async fn wait_for_room(
    shared: &Shared,
    rt: &LiveSession,
    bytes: u64,
    known: Option<Retention>,
    waited: &mut Option<std::time::Instant>,
) -> Result<Retention, Error> {
    let config = &shared.config;
    let acked = rt.acked.load(Ordering::Acquire);
    if let Some(known) = known {
        // Acknowledged events leave a batch at a time, not one trim per publish.
        let few_to_trim = known.count == 0
            || acked
                < known
                    .first_seq
                    .saturating_add(evict_batch(config.max_buffered_events) - 1);
        if few_to_trim
            && fits(
                &known,
                bytes,
                config.max_buffered_events,
                config.max_buffered_bytes,
            )
        {
            return Ok(known);
        }
    }
    // The store is asked from here on: it must hold everything published first (the lane
    // drains meanwhile, so this waits one batch's append at most, usually).
    let queued = rt.queued_seq.load(Ordering::Acquire);
    if queued > rt.last_seq.load(Ordering::Acquire) {
        rt.lane.wait(&rt.id, queued).await?;
    }
    let mut closed = rt.closed.subscribe();
    let mut cancelled = rt.cancelled.subscribe();
    // Clients on other servers acknowledge by trimming the shared store, which wakes
    // nothing here: look again now and then.
    let poll = if shared.store().sharing().is_some() {
        SHARED_POLL
    } else {
        std::time::Duration::MAX
    };
    // A retention the store need not be asked for: what the last trim left, or at first a
    // known retention that acknowledged events are in. The trim by the acks below then
    // answers what the store holds (acks only grow), so a read before it would change
    // nothing: a publish that makes room by acks calls the store twice (trim, append), not
    // three times.
    let mut trimmed: Option<Retention> =
        known.filter(|known| known.count > 0 && acked >= known.first_seq);
    loop {
        let mut notified = pin!(rt.space.notified());
        notified.as_mut().enable();
        if shared.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        // A cancelled session ends with its own `final`: what was waiting is refused.
        if *closed.borrow_and_update() || *cancelled.borrow_and_update() {
            return Err(Error::SessionClosed(rt.id.clone()));
        }
        let mut retention = match trimmed.take() {
            Some(retention) => retention,
            None => retrying(shared, rt, "retention", || shared.store().retention(&rt.id)).await?,
        };
        let acked = rt.acked.load(Ordering::Acquire);
        if retention.count > 0 && acked >= retention.first_seq {
            retention = retrying(shared, rt, "trim", || shared.store().trim(&rt.id, acked)).await?;
            rt.retained(&retention);
        }
        if fits(
            &retention,
            bytes,
            config.max_buffered_events,
            config.max_buffered_bytes,
        ) {
            return Ok(retention);
        }
        let written = written_through(rt, &retention, config);
        if written.is_some() || config.overflow == OverflowPolicy::DropOldest {
            let through = written.unwrap_or(
                // Dropping what the client may not have yet: only as much as needed.
                retention.first_seq,
            );
            let left =
                retrying(shared, rt, "trim", || shared.store().trim(&rt.id, through)).await?;
            rt.retained(&left);
            trimmed = Some(left);
            continue;
        }
        if waited.is_none() {
            // A full retention is what the gauges are watched for: they say it exactly.
            rt.retained(&retention);
            *waited = Some(std::time::Instant::now());
        }
        tokio::select! {
            () = notified => {}
            () = shared.shutdown.cancelled() => {}
            _ = closed.changed() => {}
            _ = cancelled.changed() => {}
            () = sleep_or_never(poll) => {}
        }
    }
}

/// How often a producer blocked on a full retention looks at a shared store again.
const SHARED_POLL: std::time::Duration = std::time::Duration::from_millis(20);

async fn sleep_or_never(period: std::time::Duration) {
    if period == std::time::Duration::MAX {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(period).await;
}

/// Through which seq written events may leave a full retention now, if any may: only while
/// a connection without acknowledgements is attached (a client that is away may resume from
/// anything it was written), and never the last [`written_hold`] of them while some retained
/// events are still unwritten — those may still sit in socket buffers and proxies, and a cut
/// loses them. Once everything retained was written the oldest leave anyway, so a reader that
/// keeps up never blocks its producer. A batch at a time (never more than were written), so a
/// full retention is not trimmed, and asked again, on every publish.
fn written_through(rt: &LiveSession, retention: &Retention, config: &HubConfig) -> Option<u64> {
    {
        let attach = rt.attach_state();
        if attach.current.acknowledges || attach.detached_at.is_some() {
            return None;
        }
    }
    let written = rt.written.load(Ordering::Acquire);
    let through = if written >= retention.last_seq {
        written
    } else {
        written.saturating_sub(written_hold(retention, config))
    };
    (through >= retention.first_seq).then(|| {
        through.min(
            retention
                .first_seq
                .saturating_add(evict_batch(config.max_buffered_events) - 1),
        )
    })
}

/// How many of the events most recently written to a connection without acknowledgements
/// stay retained while the producer runs ahead of it: half the bound, in events and, by the
/// retained events' mean size, in bytes (8 MiB under the default 16 MiB). What a cut can
/// lose in flight (socket buffers at both ends, a proxy's) must fit in it for the client to
/// resume; beyond it the resume is refused `too_far_behind`, never served with a gap.
pub(crate) fn written_hold(retention: &Retention, config: &HubConfig) -> u64 {
    let by_events = config.max_buffered_events / 2;
    if retention.count == 0 || retention.bytes == 0 {
        return by_events;
    }
    let mean = (retention.bytes / retention.count).max(1);
    by_events.min(config.max_buffered_bytes / 2 / mean)
}

/// How many written events leave a full retention at once: a 32nd of the bound, at most 256
/// (so a resume after a cut still finds nearly a whole retention of what was written).
fn evict_batch(max_events: u64) -> u64 {
    (max_events / 32).clamp(1, 256)
}

fn fits(retention: &Retention, bytes: u64, max_events: u64, max_bytes: u64) -> bool {
    retention.count == 0
        || (retention.count < max_events && retention.bytes.saturating_add(bytes) <= max_bytes)
}

/// A new session, as the application receives it from [`Hub::accept`](crate::Hub::accept).
#[derive(Debug)]
#[non_exhaustive]
pub struct AcceptedSession {
    /// The session.
    pub session_id: SessionId,
    /// The request's `code`.
    pub code: Option<String>,
    /// The request's `config`.
    pub config: SessionConfig,
    /// Whether the session is encrypted.
    pub encrypted: bool,
    /// Publishes events into the session.
    pub handle: SessionHandle,
    /// The client's messages, in order, each once.
    pub messages: Messages,
}

/// The application's handle on a session: publish events, watch for cancellation and state.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rt: Arc<LiveSession>,
}

impl SessionHandle {
    /// The session.
    pub fn session_id(&self) -> &SessionId {
        &self.rt.id
    }

    /// Publishes the next event and returns its seq. Waits while the retention bound is full
    /// of events the client may still need (policy `wait`). Publishing a `final` ends the
    /// stream; anything after it fails with [`Error::SessionClosed`].
    ///
    /// Returns once the store holds the event (for a shared store: a server may die right
    /// after and nothing is lost). Publishes from clones of the handle at once share store
    /// calls; [`publish_queued`](Self::publish_queued) does not wait for the store at all.
    pub async fn publish(&self, payload: impl Into<EventPayload>) -> Result<u64, Error> {
        publish(&self.shared, &self.rt, payload.into(), true).await
    }

    /// Publishes the next event and returns its seq without waiting for the store: the event
    /// is numbered and queued, and the session's append lane writes what is queued in
    /// batches, one store call each (with Redis, a whole batch per round trip), in order.
    /// Clients only ever receive what the store holds.
    ///
    /// Waits, as [`publish`](Self::publish) does, while the retention bound is full. What a
    /// crash of this server can lose: the events queued but not yet in the store (at most
    /// the retention bound); the next publish reports an append the store refused, and
    /// [`flush`](Self::flush) waits until all are in. A `final` always waits for the store.
    pub async fn publish_queued(&self, payload: impl Into<EventPayload>) -> Result<u64, Error> {
        publish(&self.shared, &self.rt, payload.into(), false).await
    }

    /// Waits until the store holds every event published so far; the store's refusal if an
    /// append failed for good.
    pub async fn flush(&self) -> Result<(), Error> {
        let seq = self.rt.queued_seq.load(Ordering::Acquire);
        self.rt.lane.wait(&self.rt.id, seq).await
    }

    /// Publishes the session's `final` event.
    pub async fn finish(&self, payload: FinalPayload) -> Result<u64, Error> {
        self.publish(EventPayload::Final(payload)).await
    }

    /// Resolves once the session is cancelled (cancel route or a `cancel` message), or at
    /// once if it already was. Also resolves when the session is deleted.
    pub async fn cancelled(&self) {
        let mut cancelled = self.rt.cancelled.subscribe();
        let _ = cancelled.wait_for(|c| *c).await;
    }

    /// Whether the session was cancelled.
    pub fn is_cancelled(&self) -> bool {
        *self.rt.cancelled.borrow()
    }

    /// The session's state, updated as events are published.
    pub fn state(&self) -> watch::Receiver<SessionState> {
        self.rt.state.subscribe()
    }
}

/// The client's messages for one session, in seq order, each exactly once.
#[derive(Debug)]
pub struct Messages {
    pub(crate) rx: mpsc::Receiver<RuntimeChannelMessage>,
}

impl Messages {
    /// The next message; `None` once the session is gone.
    pub async fn recv(&mut self) -> Option<RuntimeChannelMessage> {
        self.rx.recv().await
    }
}

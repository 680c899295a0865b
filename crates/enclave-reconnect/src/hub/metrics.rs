//! The session layer's Prometheus metrics: sessions by state, how they ended, supersedes,
//! what sessions retain, how long producers wait on backpressure, how long an event takes
//! from its publish to a connection's write, heartbeats, and the store's operations timed
//! and failed by operation. docs/OPERATIONS.md lists them.
//!
//! A [`HubMetrics`] is a handle (cheap to clone) on metrics a deployment registers in its
//! `prometheus::Registry` ([`HubMetrics::register`]) beside the transport's
//! (`enclave_transport::metrics::TransportMetrics`), and gives to the hub with
//! [`HubConfig::with_metrics`](crate::HubConfig::with_metrics). Without one the hub counts
//! into metrics nobody reads. Every label value is resolved once, when the metrics are
//! made, so counting is an atomic add (a histogram's observation a few): no lookup, lock or
//! allocation per event. No label carries a session id, a token or an address.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use enclave_transport::EncodedEvent;
use enclave_types::{SessionId, SessionState};
use futures::future::BoxFuture;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::store::{
    Appended, Inbound, NewEvent, Progress, Retention, SessionMeta, Snapshot, Store, TokenHashes,
};
use crate::Error;

/// The protocol's session states, as the `state` label spells them, in [`state_index`]
/// order.
const STATES: [&str; 6] = [
    "starting",
    "running",
    "waiting_for_tool",
    "completed",
    "cancelled",
    "failed",
];

/// The index of `state` in [`STATES`]; `None` for a state added to the protocol after this
/// list (counted under `unknown`).
fn state_index(state: SessionState) -> Option<usize> {
    match state {
        SessionState::Starting => Some(0),
        SessionState::Running => Some(1),
        SessionState::WaitingForTool => Some(2),
        SessionState::Completed => Some(3),
        SessionState::Cancelled => Some(4),
        SessionState::Failed => Some(5),
        _ => None,
    }
}

/// How a session produced here ended (the `how` label of `sessions_ended_total`); the
/// first way counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The application published its `final`.
    Final,
    /// A cancel (the cancel route, a `cancel` message, or one forwarded by another server).
    Cancelled,
    /// No connection came back within the grace period, or `expiresAt` passed.
    Expired,
    /// `DELETE /sessions/{id}`.
    Deleted,
    /// The store refused its events for longer than the hub's store retry.
    StoreUnavailable,
}

impl Ended {
    const ALL: [Self; 5] = [
        Self::Final,
        Self::Cancelled,
        Self::Expired,
        Self::Deleted,
        Self::StoreUnavailable,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Final => "final",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Deleted => "deleted",
            Self::StoreUnavailable => "store_unavailable",
        }
    }
}

/// A store operation the hub times (the `operation` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Create,
    Ping,
    Load,
    List,
    RecordProgress,
    SwapTokens,
    Append,
    Read,
    Retention,
    Trim,
    AdvanceClientSeq,
    Expire,
    Remove,
    Epoch,
    Forward,
    Attach,
    Detach,
}

impl Operation {
    const ALL: [Self; 17] = [
        Self::Create,
        Self::Ping,
        Self::Load,
        Self::List,
        Self::RecordProgress,
        Self::SwapTokens,
        Self::Append,
        Self::Read,
        Self::Retention,
        Self::Trim,
        Self::AdvanceClientSeq,
        Self::Expire,
        Self::Remove,
        Self::Epoch,
        Self::Forward,
        Self::Attach,
        Self::Detach,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Ping => "ping",
            Self::Load => "load",
            Self::List => "list",
            Self::RecordProgress => "record_progress",
            Self::SwapTokens => "swap_tokens",
            Self::Append => "append",
            Self::Read => "read",
            Self::Retention => "retention",
            Self::Trim => "trim",
            Self::AdvanceClientSeq => "advance_client_seq",
            Self::Expire => "expire",
            Self::Remove => "remove",
            Self::Epoch => "epoch",
            Self::Forward => "forward",
            Self::Attach => "attach",
            Self::Detach => "detach",
        }
    }
}

/// One store operation in [`STORE_SAMPLE`] is timed (the first one included): a memory
/// store answers an append in well under a microsecond, and reading the clock twice for each
/// (two appends' worth per published event) cost a tenth of a plaintext stream's throughput.
/// Every call is counted (`store_operations_total`) and every failure.
const STORE_SAMPLE: u64 = 16;

/// One store operation's handles.
struct OperationHandles {
    calls: IntCounter,
    seconds: Histogram,
    errors: IntCounter,
}

impl OperationHandles {
    /// A call starts: counted, and timed from now when it is one of the sampled ones.
    fn start(&self) -> Option<Instant> {
        let n = self.calls.get();
        self.calls.inc();
        n.is_multiple_of(STORE_SAMPLE).then(Instant::now)
    }

    /// An operation started at `start` (if timed) answered `result`: its time, and a
    /// failure of the store's backend ([`Error::Store`]; "no such session" and "id taken"
    /// are answers).
    fn observe<T>(&self, start: Option<Instant>, result: &Result<T, Error>) {
        if let Some(start) = start {
            self.seconds.observe(start.elapsed().as_secs_f64());
        }
        if matches!(result, Err(Error::Store { .. })) {
            self.errors.inc();
        }
    }
}

/// The metric vectors (registered) and the handles resolved from them (counted).
struct Inner {
    sessions: IntGaugeVec,
    by_state: [IntGauge; STATES.len()],
    created: IntCounter,
    ended: IntCounterVec,
    ended_by: [IntCounter; Ended::ALL.len()],
    supersedes: IntCounter,
    retained_events: IntGauge,
    retained_bytes: IntGauge,
    retained_at_final: Histogram,
    retained_bytes_at_final: Histogram,
    publish_wait: Histogram,
    publish_to_write: Histogram,
    heartbeats: IntCounter,
    store_calls: IntCounterVec,
    store_seconds: HistogramVec,
    store_errors: IntCounterVec,
    operations: [OperationHandles; Operation::ALL.len()],
    leases_lost: IntCounter,
}

/// The session hub's Prometheus metrics: sessions by state and how they ended, supersedes,
/// retained events and bytes, backpressure waits, publish → write latency (sampled),
/// heartbeats, store operations timed and failed by operation, and lost producer leases
/// (docs/OPERATIONS.md lists each with its labels and unit).
///
/// Handles, cheap to clone, on metrics in no registry until [`register`](Self::register)
/// puts them in the deployment's (beside the transport's `TransportMetrics`; the
/// `ServerBuilder::with_metrics` of this crate does both). Give them to the hub with
/// [`HubConfig::with_metrics`](crate::HubConfig::with_metrics), and to a shared store that
/// ends sessions whose producer's lease lapsed (enclave-redis's
/// `RedisStoreConfig::with_metrics`), which counts them with [`HubMetrics::lease_lost`].
/// Label values are resolved once, here: a count is an atomic add, and no event allocates
/// or locks for the metrics. No label carries a session id, a token or an address.
#[derive(Clone)]
pub struct HubMetrics {
    inner: Arc<Inner>,
}

impl fmt::Debug for HubMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubMetrics")
            .field("created", &self.inner.created.get())
            .field("retained_events", &self.inner.retained_events.get())
            .finish_non_exhaustive()
    }
}

impl Default for HubMetrics {
    /// Metrics in no registry: counted, never served.
    fn default() -> Self {
        Self::new()
    }
}

/// Upper bounds of the latency histograms, in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

/// Upper bounds of `publish_wait_seconds`: 1 ms to a minute (a client that stopped reading).
const WAIT_BUCKETS: [f64; 11] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0,
];

/// Upper bounds of `session_retained_bytes`: powers of 4 from 256 B to the default bound
/// (16 MiB).
const RETAINED_BYTES_BUCKETS: [f64; 9] = [
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];

/// Upper bounds of `session_retained_events`: powers of 4 up to the default bound.
const RETAINED_BUCKETS: [f64; 10] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 100_000.0,
];

impl HubMetrics {
    /// Metrics in no registry yet ([`register`](Self::register) puts them in one).
    ///
    /// # Panics
    ///
    /// Never in practice: the names, help texts, labels and buckets are constants that the
    /// crate's tests build (a definition is refused only for an invalid name, label or
    /// bucket list).
    pub fn new() -> Self {
        const VALID: &str = "a valid metric definition";
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect(VALID);
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect(VALID);
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                .expect(VALID)
        };
        let sessions = IntGaugeVec::new(
            Opts::new(
                "sessions",
                "Sessions this hub holds now, by protocol state (finished ones in their grace period included).",
            ),
            &["state"],
        )
        .expect(VALID);
        let counters = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label]).expect(VALID)
        };
        let ended = counters(
            "sessions_ended_total",
            "Sessions produced here that ended, by how: final, cancelled, expired, deleted, store_unavailable.",
            "how",
        );
        let store_calls = counters(
            "store_operations_total",
            "Session store operations the hub made, by operation.",
            "operation",
        );
        let store_seconds = HistogramVec::new(
            HistogramOpts::new(
                "store_operation_seconds",
                "Time of the hub's session store operations, by operation (one call in 16 is timed).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["operation"],
        )
        .expect(VALID);
        let store_errors = counters(
            "store_errors_total",
            "Session store operations that failed in the store's backend, by operation.",
            "operation",
        );
        let inner = Inner {
            by_state: STATES.map(|state| sessions.with_label_values(&[state])),
            ended_by: Ended::ALL.map(|how| ended.with_label_values(&[how.label()])),
            operations: Operation::ALL.map(|op| OperationHandles {
                calls: store_calls.with_label_values(&[op.label()]),
                seconds: store_seconds.with_label_values(&[op.label()]),
                errors: store_errors.with_label_values(&[op.label()]),
            }),
            sessions,
            ended,
            store_calls,
            store_seconds,
            store_errors,
            created: counter("sessions_created_total", "Sessions created on this hub."),
            supersedes: counter(
                "supersedes_total",
                "Connections superseded by a newer connection to the same session.",
            ),
            retained_events: gauge(
                "retained_events",
                "Events retained now, summed over the sessions produced here (as their last append or trim here left them).",
            ),
            retained_bytes: gauge(
                "retained_bytes",
                "Encoded bytes of the events retained now, summed over the sessions produced here.",
            ),
            retained_at_final: histogram(
                "session_retained_events",
                "Events a session retained when its final was recorded.",
                &RETAINED_BUCKETS,
            ),
            retained_bytes_at_final: histogram(
                "session_retained_bytes",
                "Encoded bytes of the events a session retained when its final was recorded.",
                &RETAINED_BYTES_BUCKETS,
            ),
            publish_wait: histogram(
                "publish_wait_seconds",
                "Time a publish waited for room in a full retention (only publishes that waited).",
                &WAIT_BUCKETS,
            ),
            publish_to_write: histogram(
                "publish_to_write_seconds",
                "Time from an event's publish to a connection reporting it written (one event sampled per write).",
                &LATENCY_BUCKETS,
            ),
            heartbeats: counter("heartbeats_total", "Heartbeat events published."),
            leases_lost: counter(
                "leases_lost_total",
                "Sessions a shared store ended because their producer's lease lapsed (PRODUCER_LOST).",
            ),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Registers every metric in `registry` (names prefixed as the registry says, e.g.
    /// `enclave_`). Fails if one of the names is taken there.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        let inner = &self.inner;
        registry.register(Box::new(inner.sessions.clone()))?;
        registry.register(Box::new(inner.created.clone()))?;
        registry.register(Box::new(inner.ended.clone()))?;
        registry.register(Box::new(inner.supersedes.clone()))?;
        registry.register(Box::new(inner.retained_events.clone()))?;
        registry.register(Box::new(inner.retained_bytes.clone()))?;
        registry.register(Box::new(inner.retained_at_final.clone()))?;
        registry.register(Box::new(inner.retained_bytes_at_final.clone()))?;
        registry.register(Box::new(inner.publish_wait.clone()))?;
        registry.register(Box::new(inner.publish_to_write.clone()))?;
        registry.register(Box::new(inner.heartbeats.clone()))?;
        registry.register(Box::new(inner.store_calls.clone()))?;
        registry.register(Box::new(inner.store_seconds.clone()))?;
        registry.register(Box::new(inner.store_errors.clone()))?;
        registry.register(Box::new(inner.leases_lost.clone()))?;
        Ok(())
    }

    /// A shared store ended a session whose producer's lease lapsed, with its
    /// `final {ok: false}` (`PRODUCER_LOST`): what a store calls once per session it so ends.
    pub fn lease_lost(&self) {
        self.inner.leases_lost.inc();
    }

    pub(crate) fn created(&self) {
        self.inner.created.inc();
    }

    pub(crate) fn superseded(&self) {
        self.inner.supersedes.inc();
    }

    pub(crate) fn heartbeat(&self) {
        self.inner.heartbeats.inc();
    }

    /// A publish waited for room from `since` until now.
    pub(crate) fn waited(&self, since: Instant) {
        self.inner
            .publish_wait
            .observe(since.elapsed().as_secs_f64());
    }

    /// A session's `final` was recorded, leaving `retention`.
    pub(crate) fn final_recorded(&self, retention: &Retention) {
        #[allow(clippy::cast_precision_loss)] // counts: exact below 2^53, far beyond any bound
        {
            self.inner.retained_at_final.observe(retention.count as f64);
            self.inner
                .retained_bytes_at_final
                .observe(retention.bytes as f64);
        }
    }

    /// Moves the gauge of sessions in the state at `index` by `delta` (an index past
    /// [`STATES`]: `unknown`, looked up then, for a state the protocol may add).
    fn move_state(&self, index: usize, delta: i64) {
        match self.inner.by_state.get(index) {
            Some(gauge) => gauge.add(delta),
            None => self
                .inner
                .sessions
                .with_label_values(&["unknown"])
                .add(delta),
        }
    }

    /// The store calls of a hub, timed with these metrics.
    pub(crate) fn store<'a>(&'a self, store: &'a Arc<dyn Store>) -> StoreCalls<'a> {
        StoreCalls {
            store,
            metrics: self,
        }
    }
}

/// One session produced here, as the metrics count it: in the gauge of its state and in the
/// retained totals until it leaves the hub ([`SessionCount::leave`], or dropped), and
/// counted once among the ended sessions.
pub(crate) struct SessionCount {
    metrics: HubMetrics,
    /// The index of the state it counts in ([`state_slot`]); [`LEFT_STATE`] once it left.
    state: AtomicUsize,
    /// Its retention as last counted ([`LEFT`] once it left).
    events: AtomicU64,
    bytes: AtomicU64,
    /// Whether its end was counted.
    ended: std::sync::atomic::AtomicBool,
}

/// [`SessionCount`]'s retention once the session left: nothing more is counted.
const LEFT: u64 = u64::MAX;

/// [`SessionCount`]'s state once the session left.
const LEFT_STATE: usize = usize::MAX;

/// Where a state counts: its index in [`STATES`], or past it for `unknown`.
fn state_slot(state: SessionState) -> usize {
    state_index(state).unwrap_or(STATES.len())
}

impl fmt::Debug for SessionCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCount")
            .field("events", &self.events.load(Ordering::Relaxed))
            .field("bytes", &self.bytes.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SessionCount {
    /// A new session (state `starting`, nothing retained), counted as created.
    pub(crate) fn new(metrics: &HubMetrics) -> Self {
        let slot = state_slot(SessionState::Starting);
        metrics.move_state(slot, 1);
        Self {
            metrics: metrics.clone(),
            state: AtomicUsize::new(slot),
            events: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            ended: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The session moved to `state`. Lock-free: a concurrent [`leave`](Self::leave) may
    /// run between the two moves, and the gauges still add up once both are done.
    pub(crate) fn state(&self, state: SessionState) {
        let slot = state_slot(state);
        if let Ok(old) = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                (old != LEFT_STATE).then_some(slot)
            })
        {
            if old != slot {
                self.metrics.move_state(old, -1);
                self.metrics.move_state(slot, 1);
            }
        }
    }

    /// The session ended `how`; only its first end counts.
    pub(crate) fn ended(&self, how: Ended) {
        if !self.ended.swap(true, Ordering::AcqRel) {
            if let Some(counter) = self.metrics.inner.ended_by.get(how as usize) {
                counter.inc();
            }
        }
    }

    /// The store answered the session's `retention` (after an append or a trim).
    pub(crate) fn retained(&self, retention: &Retention) {
        let metrics = &self.metrics.inner;
        move_to(&self.events, retention.count, &metrics.retained_events);
        move_to(&self.bytes, retention.bytes, &metrics.retained_bytes);
    }

    /// The session left the hub (deleted, purged, or a create that failed): it counts no
    /// more. Idempotent.
    pub(crate) fn leave(&self) {
        let old = self.state.swap(LEFT_STATE, Ordering::AcqRel);
        if old != LEFT_STATE {
            self.metrics.move_state(old, -1);
        }
        let metrics = &self.metrics.inner;
        move_to(&self.events, LEFT, &metrics.retained_events);
        move_to(&self.bytes, LEFT, &metrics.retained_bytes);
    }
}

impl Drop for SessionCount {
    fn drop(&mut self) {
        self.leave();
    }
}

/// Sets `slot` to `value` (unless it is [`LEFT`]) and moves `gauge` by the difference;
/// `value == LEFT` takes what the slot held out of the gauge for good.
fn move_to(slot: &AtomicU64, value: u64, gauge: &IntGauge) {
    let Ok(old) = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
        (old != LEFT).then_some(value)
    }) else {
        return;
    };
    let new = if value == LEFT { 0 } else { value };
    let delta = i128::from(new) - i128::from(old);
    gauge.add(i64::try_from(delta).unwrap_or(if delta < 0 { i64::MIN } else { i64::MAX }));
}

/// The publish → write sample of one session: one event at a time is timed, from the moment
/// the hub appends it to the first write that reports a seq at or past it; the next publish
/// after that write takes the next sample. So the cost per event is one atomic load, and an
/// `Instant` per sample.
#[derive(Debug)]
pub(crate) struct WriteSample {
    base: Instant,
    /// The sampled event's seq; 0: none in flight. Only the publisher sets it (from 0), only
    /// a write clears it.
    seq: AtomicU64,
    /// When it was published, in ns since `base`.
    at_ns: AtomicU64,
}

impl WriteSample {
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
            seq: AtomicU64::new(0),
            at_ns: AtomicU64::new(0),
        }
    }

    /// The event `seq` is about to be appended: timed if no sample is in flight.
    pub(crate) fn published(&self, seq: u64) {
        if self.seq.load(Ordering::Acquire) == 0 {
            let ns = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.at_ns.store(ns, Ordering::Relaxed);
            self.seq.store(seq, Ordering::Release);
        }
    }

    /// A connection wrote every event through `seq`: the sample in flight, if covered, is
    /// observed and cleared.
    pub(crate) fn written(&self, seq: u64, metrics: &HubMetrics) {
        let sampled = self.seq.load(Ordering::Acquire);
        if sampled == 0 || sampled > seq {
            return;
        }
        // The publisher writes `at_ns` only while no sample is in flight: it is this one's.
        let at = self.at_ns.load(Ordering::Relaxed);
        if self
            .seq
            .compare_exchange(sampled, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let now = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
            #[allow(clippy::cast_precision_loss)] // ns: exact to well below a microsecond
            let seconds = now.saturating_sub(at) as f64 / 1e9;
            metrics.inner.publish_to_write.observe(seconds);
        }
    }
}

/// The hub's view of its store: the [`Store`]'s and [`Sharing`](crate::store::Sharing)'s
/// methods under the same names, each timed and its backend failures counted by operation
/// (`store_operation_seconds`, `store_errors_total`), so every store gets the metrics.
/// What a call returns is the store's own future, wrapped without an allocation.
#[derive(Clone, Copy)]
pub(crate) struct StoreCalls<'a> {
    store: &'a Arc<dyn Store>,
    metrics: &'a HubMetrics,
}

/// [`StoreCalls::sharing`]: the shared store's methods, timed.
#[derive(Clone, Copy)]
pub(crate) struct SharingCalls<'a> {
    sharing: &'a dyn crate::store::Sharing,
    metrics: &'a HubMetrics,
}

/// A store call's future, timed from its making to its answer.
pub(crate) struct Timed<'a, T> {
    future: BoxFuture<'a, Result<T, Error>>,
    start: Option<Instant>,
    handles: &'a OperationHandles,
}

impl<T> Future for Timed<'_, T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let result = futures::ready!(this.future.as_mut().poll(cx));
        this.handles.observe(this.start, &result);
        Poll::Ready(result)
    }
}

fn timed<'a, T>(
    metrics: &'a HubMetrics,
    operation: Operation,
    future: BoxFuture<'a, Result<T, Error>>,
) -> Timed<'a, T> {
    let handles = &metrics.inner.operations[operation as usize];
    Timed {
        future,
        start: handles.start(),
        handles,
    }
}

impl<'a> StoreCalls<'a> {
    pub(crate) fn create(&self, meta: SessionMeta, tokens: TokenHashes) -> Timed<'a, ()> {
        timed(
            self.metrics,
            Operation::Create,
            self.store.create(meta, tokens),
        )
    }

    pub(crate) fn ping(&self) -> Timed<'a, ()> {
        timed(self.metrics, Operation::Ping, self.store.ping())
    }

    pub(crate) fn load(&self, id: &SessionId) -> Timed<'a, Option<Snapshot>> {
        timed(self.metrics, Operation::Load, self.store.load(id))
    }

    pub(crate) fn list(&self) -> Timed<'a, Vec<SessionMeta>> {
        timed(self.metrics, Operation::List, self.store.list())
    }

    pub(crate) fn record_progress(&self, id: &SessionId, progress: Progress) -> Timed<'a, ()> {
        timed(
            self.metrics,
            Operation::RecordProgress,
            self.store.record_progress(id, progress),
        )
    }

    pub(crate) fn swap_tokens(
        &self,
        id: &SessionId,
        expected: TokenHashes,
        next: TokenHashes,
    ) -> Timed<'a, bool> {
        timed(
            self.metrics,
            Operation::SwapTokens,
            self.store.swap_tokens(id, expected, next),
        )
    }

    pub(crate) fn append<'b>(
        &self,
        id: &'b SessionId,
        events: &'b [NewEvent],
    ) -> Timed<'b, Retention>
    where
        'a: 'b,
    {
        timed(
            self.metrics,
            Operation::Append,
            self.store.append(id, events),
        )
    }

    /// Counted as an `append` (the progress rides with it).
    pub(crate) fn append_with_progress<'b>(
        &self,
        id: &'b SessionId,
        events: &'b [NewEvent],
        progress: Progress,
    ) -> Timed<'b, Retention>
    where
        'a: 'b,
    {
        timed(
            self.metrics,
            Operation::Append,
            self.store.append_with_progress(id, events, progress),
        )
    }

    pub(crate) fn read(
        &self,
        id: &SessionId,
        from: u64,
        max: usize,
    ) -> Timed<'a, Vec<Arc<EncodedEvent>>> {
        timed(
            self.metrics,
            Operation::Read,
            self.store.read(id, from, max),
        )
    }

    pub(crate) fn retention(&self, id: &SessionId) -> Timed<'a, Retention> {
        timed(self.metrics, Operation::Retention, self.store.retention(id))
    }

    pub(crate) fn trim(&self, id: &SessionId, through: u64) -> Timed<'a, Retention> {
        timed(self.metrics, Operation::Trim, self.store.trim(id, through))
    }

    pub(crate) fn advance_client_seq(&self, id: &SessionId, seq: u64) -> Timed<'a, u64> {
        timed(
            self.metrics,
            Operation::AdvanceClientSeq,
            self.store.advance_client_seq(id, seq),
        )
    }

    pub(crate) fn expire(&self, id: &SessionId) -> Timed<'a, ()> {
        timed(self.metrics, Operation::Expire, self.store.expire(id))
    }

    pub(crate) fn remove(&self, id: &SessionId) -> Timed<'a, bool> {
        timed(self.metrics, Operation::Remove, self.store.remove(id))
    }

    pub(crate) fn epoch(&self) -> Timed<'a, Option<u64>> {
        timed(self.metrics, Operation::Epoch, self.store.epoch())
    }

    /// Untimed: it only subscribes.
    pub(crate) fn watch(&self, id: &SessionId) -> Option<Appended> {
        self.store.watch(id)
    }

    pub(crate) fn sharing(&self) -> Option<SharingCalls<'a>> {
        self.store.sharing().map(|sharing| SharingCalls {
            sharing,
            metrics: self.metrics,
        })
    }
}

impl<'a> SharingCalls<'a> {
    pub(crate) fn forward(&self, id: &SessionId, items: Vec<Inbound>) -> Timed<'a, u64> {
        timed(
            self.metrics,
            Operation::Forward,
            self.sharing.forward(id, items),
        )
    }

    /// Untimed: a stream that lasts as long as the session.
    pub(crate) fn inbox(
        &self,
        id: &SessionId,
    ) -> futures::stream::BoxStream<'static, Result<Inbound, Error>> {
        self.sharing.inbox(id)
    }

    pub(crate) fn attach(&self, id: &SessionId) -> Timed<'a, ()> {
        timed(self.metrics, Operation::Attach, self.sharing.attach(id))
    }

    pub(crate) fn detach(&self, id: &SessionId) -> Timed<'a, ()> {
        timed(self.metrics, Operation::Detach, self.sharing.detach(id))
    }

    pub(crate) fn shutdown(&self) {
        self.sharing.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::new_custom(Some("enclave".to_owned()), None).unwrap()
    }

    fn retention(count: u64, bytes: u64) -> Retention {
        Retention {
            count,
            bytes,
            ..Retention::default()
        }
    }

    #[test]
    fn the_metrics_register_once_and_a_session_counts_until_it_leaves() {
        let registry = registry();
        let metrics = HubMetrics::new();
        metrics.register(&registry).unwrap();
        assert!(HubMetrics::new().register(&registry).is_err());
        let a = SessionCount::new(&metrics);
        let b = SessionCount::new(&metrics);
        a.state(SessionState::Running);
        a.retained(&retention(3, 300));
        b.retained(&retention(2, 50));
        a.retained(&retention(1, 100));
        assert_eq!(metrics.inner.retained_events.get(), 3);
        assert_eq!(metrics.inner.retained_bytes.get(), 150);
        a.ended(Ended::Deleted);
        a.ended(Ended::Cancelled);
        a.leave();
        a.leave();
        // Nothing counts after it left.
        a.retained(&retention(9, 900));
        a.state(SessionState::Failed);
        assert_eq!(metrics.inner.retained_events.get(), 2);
        drop(b);
        assert_eq!(metrics.inner.retained_events.get(), 0);
        assert_eq!(metrics.inner.retained_bytes.get(), 0);
        let text = enclave_transport::metrics::encode(&registry).unwrap();
        for line in [
            "enclave_sessions{state=\"running\"} 0",
            "enclave_sessions{state=\"starting\"} 0",
            "enclave_sessions{state=\"failed\"} 0",
            "enclave_sessions_ended_total{how=\"deleted\"} 1",
            "enclave_sessions_ended_total{how=\"cancelled\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn a_write_observes_the_sample_it_covers_once() {
        let metrics = HubMetrics::new();
        let sample = WriteSample::new();
        sample.published(5);
        // A later publish while 5 is in flight takes no sample.
        sample.published(6);
        sample.written(4, &metrics);
        assert_eq!(metrics.inner.publish_to_write.get_sample_count(), 0);
        sample.written(6, &metrics);
        sample.written(7, &metrics);
        assert_eq!(metrics.inner.publish_to_write.get_sample_count(), 1);
        sample.published(8);
        sample.written(8, &metrics);
        assert_eq!(metrics.inner.publish_to_write.get_sample_count(), 2);
    }
}

//! The hub's metrics move where each thing happens: created, state, backpressure wait,
//! publish → write, supersede, cancel, final, delete, heartbeats, store calls and their
//! failures.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{create, create_with, hub, next_seq, quiet, resume_request, WAIT};
use enclave_reconnect::store::{
    Appended, EncodedEvent, MemoryStore, NewEvent, Progress, Retention, SessionMeta, Snapshot,
    Store, TokenHashes,
};
use enclave_reconnect::{Error, HubConfig, HubMetrics};
use enclave_transport::{CreateSession, SessionService};
use enclave_types::{FinalPayload, SessionId, StdoutPayload};
use futures::future::BoxFuture;
use prometheus::Registry;

/// Metrics registered in a registry of their own, and the hub settings that count into them.
fn metered(config: HubConfig) -> (HubConfig, Registry) {
    let registry = Registry::new_custom(Some("enclave".to_owned()), None).unwrap();
    let metrics = HubMetrics::new();
    metrics.register(&registry).unwrap();
    (config.with_metrics(metrics), registry)
}

/// The text of the sample `series` (its name and labels, as exposed) in `registry`.
fn sample(registry: &Registry, series: &str) -> Option<String> {
    let text = enclave_transport::metrics::encode(registry).unwrap();
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        Some(rest.strip_prefix(' ')?.to_owned())
    })
}

/// The value of a counter, a gauge or a histogram's `_count`; 0 when it is not exposed.
fn value(registry: &Registry, series: &str) -> i64 {
    sample(registry, series).map_or(0, |text| {
        text.parse()
            .unwrap_or_else(|_| panic!("{series} is not an integer: {text}"))
    })
}

/// The value of a histogram's `_sum`.
fn sum(registry: &Registry, series: &str) -> f64 {
    let text = sample(registry, series).unwrap_or_else(|| panic!("{series} missing"));
    text.parse()
        .unwrap_or_else(|_| panic!("{series} is not a number: {text}"))
}

/// Waits (within [`WAIT`]) until `series` reaches at least `at_least`.
async fn reaches(registry: &Registry, series: &str, at_least: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while value(registry, series) < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} stayed at {} (expected at least {at_least})",
            value(registry, series)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn creates_waits_writes_supersedes_and_cancels_are_counted() {
    let (config, registry) = metered(quiet().with_max_buffered_events(4));
    let hub = hub(config);

    // A session created: `starting`, its `session_init` retained.
    let (mut attachment, session) = create(&hub, true).await;
    let id = attachment.session_id.clone();
    assert_eq!(value(&registry, "enclave_sessions_created_total"), 1);
    assert_eq!(value(&registry, "enclave_sessions{state=\"starting\"}"), 1);
    assert_eq!(value(&registry, "enclave_retained_events"), 1);
    assert!(value(&registry, "enclave_retained_bytes") > 0);

    // The producer runs into the bound (4 events) and waits for acknowledgements.
    let producer = {
        let handle = session.handle.clone();
        tokio::spawn(async move {
            for n in 0..6 {
                handle
                    .publish(StdoutPayload::new(format!("{n}")))
                    .await
                    .unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!producer.is_finished(), "the producer waits at the bound");
    assert_eq!(value(&registry, "enclave_retained_events"), 4);
    assert_eq!(value(&registry, "enclave_publish_wait_seconds_count"), 0);
    assert_eq!(value(&registry, "enclave_sessions{state=\"running\"}"), 1);
    assert_eq!(value(&registry, "enclave_sessions{state=\"starting\"}"), 0);
    for expected in 1..=4 {
        assert_eq!(next_seq(&mut attachment).await, Some(expected));
    }
    // The transport reports what it wrote: the sampled event's latency is observed.
    attachment.events.written(4);
    assert_eq!(
        value(&registry, "enclave_publish_to_write_seconds_count"),
        1
    );
    attachment.upstream.ack(4);
    tokio::time::timeout(WAIT, producer).await.unwrap().unwrap();
    // The wait ended by the acknowledgement is timed, and it lasted the 100 ms slept.
    assert_eq!(value(&registry, "enclave_publish_wait_seconds_count"), 1);
    assert!(sum(&registry, "enclave_publish_wait_seconds_sum") >= 0.09);
    assert!(value(&registry, "enclave_retained_events") <= 4);
    assert!(
        value(
            &registry,
            "enclave_store_operations_total{operation=\"append\"}"
        ) >= 7
    );
    assert_eq!(
        value(
            &registry,
            "enclave_store_errors_total{operation=\"append\"}"
        ),
        0
    );

    // A second connection supersedes the first.
    assert_eq!(value(&registry, "enclave_supersedes_total"), 0);
    let _second = common::resume(&hub, resume_request(&id, 5, Some(&attachment.token), true)).await;
    assert_eq!(value(&registry, "enclave_supersedes_total"), 1);

    // A cancel ends it: `cancelled`, counted once, and its retention at its final observed.
    hub.cancel(&id, None).await.unwrap();
    assert_eq!(
        value(&registry, "enclave_sessions_ended_total{how=\"cancelled\"}"),
        1
    );
    assert_eq!(value(&registry, "enclave_sessions{state=\"cancelled\"}"), 1);
    assert_eq!(value(&registry, "enclave_session_retained_events_count"), 1);
}

#[tokio::test]
async fn a_final_a_delete_and_heartbeats_are_counted() {
    let (config, registry) = metered(quiet());
    let hub = hub(config);

    // A session that publishes its own final.
    let (_b, finished) = create(&hub, false).await;
    finished
        .handle
        .finish(FinalPayload::new(true))
        .await
        .unwrap();
    assert_eq!(
        value(&registry, "enclave_sessions_ended_total{how=\"final\"}"),
        1
    );
    assert_eq!(value(&registry, "enclave_sessions{state=\"completed\"}"), 1);

    // A deleted session with heartbeats of its own: it leaves the gauges with its delete.
    let mut request = CreateSession::new(SessionId::generate());
    request.config.heartbeat_interval_ms = Some(20);
    let (_c, beating) = create_with(&hub, request).await;
    reaches(&registry, "enclave_heartbeats_total", 1).await;
    assert_eq!(value(&registry, "enclave_sessions_created_total"), 2);
    hub.delete(beating.handle.session_id()).await.unwrap();
    assert_eq!(
        value(&registry, "enclave_sessions_ended_total{how=\"deleted\"}"),
        1
    );
    // Only the delete counts: its cancel's final does not count it again.
    assert_eq!(
        value(&registry, "enclave_sessions_ended_total{how=\"cancelled\"}"),
        0
    );
    assert_eq!(value(&registry, "enclave_sessions{state=\"running\"}"), 0);
    let held: i64 = ["cancelled", "completed", "running", "starting"]
        .iter()
        .map(|state| value(&registry, &format!("enclave_sessions{{state=\"{state}\"}}")))
        .sum();
    assert_eq!(held, 1, "the deleted session left the gauge");
    assert!(
        value(
            &registry,
            "enclave_store_operations_total{operation=\"remove\"}"
        ) >= 1
    );
}

#[tokio::test]
async fn a_store_that_refuses_appends_is_counted_by_operation_and_ends_the_session() {
    let store = Arc::new(Refusing::default());
    let (config, registry) = metered(
        quiet()
            .with_store(Arc::clone(&store) as Arc<dyn Store>)
            .with_store_retry(Duration::from_millis(40)),
    );
    let hub = hub(config);
    let (_attachment, session) = create(&hub, false).await;
    store.refuse.store(true, Ordering::SeqCst);
    let err = session
        .handle
        .publish(StdoutPayload::new("lost"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err}");
    // Tried again within the retry, each failure counted.
    assert!(
        value(
            &registry,
            "enclave_store_errors_total{operation=\"append\"}"
        ) >= 2,
        "{}",
        enclave_transport::metrics::encode(&registry).unwrap()
    );
    assert_eq!(
        value(&registry, "enclave_store_errors_total{operation=\"load\"}"),
        0
    );
    assert_eq!(
        value(
            &registry,
            "enclave_sessions_ended_total{how=\"store_unavailable\"}"
        ),
        1
    );
}

/// A [`MemoryStore`] whose appends fail in its "backend" while `refuse` is set.
#[derive(Debug, Default)]
struct Refusing {
    inner: MemoryStore,
    refuse: AtomicBool,
}

impl Store for Refusing {
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
        if self.refuse.load(Ordering::SeqCst) {
            let failed = Error::store("append", Some(id), "the backend is down");
            return Box::pin(std::future::ready(Err(failed)));
        }
        self.inner.append(id, events)
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
        self.inner.retention(id)
    }
    fn trim(&self, id: &SessionId, through: u64) -> BoxFuture<'_, Result<Retention, Error>> {
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

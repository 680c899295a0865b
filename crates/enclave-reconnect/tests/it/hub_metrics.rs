//! The hub's metrics move where each thing happens: created, state, backpressure wait,
//! publish → write, supersede, cancel, final, delete, heartbeats, store calls and their
//! failures.

use crate::common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{create, create_with, hub, next_seq, quiet, resume_request, WAIT};
use enclave_reconnect::store::Store;
use enclave_reconnect::{Error, HubConfig, HubMetrics};
use enclave_transport::{CreateSession, SessionService};
use enclave_types::{FinalPayload, SessionId, StdoutPayload};
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
    assert_eq!(value(&registry, "enclave_session_retained_bytes_count"), 1);
    assert!(sum(&registry, "enclave_session_retained_bytes_sum") > 0.0);
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
    let store = Arc::new(common::Instrumented::default());
    let (config, registry) = metered(
        quiet()
            .with_store(Arc::clone(&store) as Arc<dyn Store>)
            .with_store_retry(Duration::from_millis(40)),
    );
    let hub = hub(config);
    let (_attachment, session) = create(&hub, false).await;
    store.refuse_appends.store(true, Ordering::SeqCst);
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

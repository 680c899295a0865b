//! The append lane: queued and concurrent publishes reach the store in order, once each, in
//! fewer store calls than events; `flush` waits for the store; a refused append ends the
//! session without a gap; a durable publish dropped mid-append still lands.

use crate::common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{create, hub, next, next_seq, quiet, Instrumented, WAIT};
use enclave_reconnect::store::Store;
use enclave_reconnect::Error;
use enclave_transport::Outgoing;
use enclave_types::StdoutPayload;
use tokio::time::timeout;

/// A hub on an [`Instrumented`] store, with a short store retry.
fn hub_on(store: &Arc<Instrumented>) -> enclave_reconnect::Hub {
    hub(quiet()
        .with_store(Arc::clone(store) as Arc<dyn Store>)
        .with_store_retry(Duration::from_millis(40)))
}

/// Waits until `n` appends wait at the store's hold.
async fn appends_waiting(store: &Instrumented, n: u64) {
    timeout(WAIT, async {
        while store.waiting() != n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{n} appends wait at the hold, not {}", store.waiting()));
}

#[tokio::test]
async fn queued_publishes_land_in_order_once_each_in_batches_and_flush_waits_for_them() {
    const EVENTS: u64 = 1_000;
    let store = Arc::new(Instrumented::default());
    let hub = hub_on(&store);
    let (mut attachment, session) = create(&hub, true).await;
    let id = attachment.session_id.clone();
    store.take();
    store.take_appended_events();
    store.hold();
    for n in 0..EVENTS {
        let seq = session
            .handle
            .publish_queued(StdoutPayload::new(format!("{n}")))
            .await
            .expect("queued");
        assert_eq!(seq, n + 2, "numbered at once, after session_init");
    }
    // Nothing past `session_init` is in the store, and flush waits for it.
    assert_eq!(store.inner.retention(&id).await.unwrap().last_seq, 1);
    assert!(
        timeout(Duration::from_millis(100), session.handle.flush())
            .await
            .is_err(),
        "flush returned while the store held none of the queued events"
    );
    store.release();
    timeout(WAIT, session.handle.flush())
        .await
        .expect("flush in time")
        .expect("every event stored");
    assert_eq!(
        store.inner.retention(&id).await.unwrap().last_seq,
        EVENTS + 1
    );
    let (_, _, appends) = store.take();
    assert_eq!(
        store.take_appended_events(),
        EVENTS,
        "each event appended once"
    );
    // The first event alone (its call was held), then the rest in batches of at most 256.
    assert!(
        (4..=8).contains(&appends),
        "{EVENTS} queued events took {appends} appends"
    );
    for seq in 1..=EVENTS + 1 {
        assert_eq!(next_seq(&mut attachment).await, Some(seq));
    }
    assert!(common::is_idle(&mut attachment).await);
}

#[tokio::test]
async fn durable_publishes_from_clones_at_once_share_store_calls_and_each_returns_its_seq() {
    const PUBLISHERS: u64 = 50;
    let store = Arc::new(Instrumented::default());
    let hub = hub_on(&store);
    let (mut attachment, session) = create(&hub, true).await;
    store.take();
    store.hold();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|n| {
            let handle = session.handle.clone();
            tokio::spawn(async move { handle.publish(StdoutPayload::new(format!("{n}"))).await })
        })
        .collect();
    appends_waiting(&store, 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        publishers.iter().all(|p| !p.is_finished()),
        "returned before stored"
    );
    store.release();
    let mut seqs = Vec::new();
    for publisher in publishers {
        seqs.push(timeout(WAIT, publisher).await.unwrap().unwrap().unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (2..=PUBLISHERS + 1).collect::<Vec<_>>());
    let (_, _, appends) = store.take();
    assert!(
        appends <= 3,
        "{PUBLISHERS} publishes took {appends} appends"
    );
    for seq in 1..=PUBLISHERS + 1 {
        assert_eq!(next_seq(&mut attachment).await, Some(seq));
    }
}

#[tokio::test]
async fn a_refused_append_ends_the_session_at_the_last_stored_event_and_every_later_publish_fails()
{
    let store = Arc::new(Instrumented::default());
    let hub = hub_on(&store);
    let (mut attachment, session) = create(&hub, true).await;
    let id = attachment.session_id.clone();
    assert_eq!(
        session
            .handle
            .publish(StdoutPayload::new("kept"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(next_seq(&mut attachment).await, Some(1));
    assert_eq!(next_seq(&mut attachment).await, Some(2));
    store.hold();
    for n in 0..10 {
        session
            .handle
            .publish_queued(StdoutPayload::new(format!("lost {n}")))
            .await
            .expect("queued");
    }
    appends_waiting(&store, 1).await;
    store.refuse_appends.store(true, Ordering::SeqCst);
    store.release();
    let err = timeout(WAIT, session.handle.flush())
        .await
        .expect("flush answers in time")
        .expect_err("the queued events were refused");
    assert!(matches!(err, Error::Store { .. }), "{err}");
    assert!(
        err.to_string().contains(id.as_str()),
        "names the session: {err}"
    );
    let later = session
        .handle
        .publish_queued(StdoutPayload::new("after"))
        .await
        .expect_err("nothing is published after a refused append");
    assert!(
        matches!(later, Error::Store { .. } | Error::SessionClosed(_)),
        "{later}"
    );
    assert_eq!(store.inner.retention(&id).await.unwrap().last_seq, 2);
    // The connection ends, `unavailable` (resumable once the store is back): never an
    // event past the gap.
    loop {
        match next(&mut attachment).await {
            Some(Outgoing::Close(reason)) => {
                assert!(format!("{reason:?}").contains("Unavailable"), "{reason:?}");
                break;
            }
            None => break,
            Some(Outgoing::Event(event)) => panic!("event {} after the refusal", event.seq),
            Some(_) => {}
        }
    }
}

#[tokio::test]
async fn a_durable_publish_dropped_while_its_append_is_under_way_still_lands_in_order() {
    let store = Arc::new(Instrumented::default());
    let hub = hub_on(&store);
    let (mut attachment, session) = create(&hub, true).await;
    let id = attachment.session_id.clone();
    store.hold();
    let dropped = timeout(
        Duration::from_millis(50),
        session.handle.publish(StdoutPayload::new("dropped")),
    )
    .await;
    assert!(dropped.is_err(), "the publish waited for the held append");
    // Its batch went back to the lane, whose flusher appends it again.
    appends_waiting(&store, 1).await;
    let next_publish = {
        let handle = session.handle.clone();
        tokio::spawn(async move { handle.publish(StdoutPayload::new("after")).await })
    };
    store.release();
    assert_eq!(
        timeout(WAIT, next_publish).await.unwrap().unwrap().unwrap(),
        3
    );
    timeout(WAIT, session.handle.flush())
        .await
        .unwrap()
        .unwrap();
    let read: Vec<(u64, String)> = store
        .inner
        .read(&id, 1, 10)
        .await
        .unwrap()
        .iter()
        .map(|event| {
            (
                event.seq,
                String::from_utf8_lossy(event.json()).into_owned(),
            )
        })
        .collect();
    assert_eq!(read.len(), 3, "{read:?}");
    assert!(
        read[1].1.contains("dropped") && read[2].1.contains("after"),
        "{read:?}"
    );
    for seq in 1..=3 {
        assert_eq!(next_seq(&mut attachment).await, Some(seq));
    }
    assert!(common::is_idle(&mut attachment).await);
}

//! Retention and backpressure: the producer waits for a stalled acknowledging reader, never
//! for a reader that does not acknowledge, and retained memory stays within the bound.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{create, hub, next_seq, quiet, refused, resume_request, WAIT};
use enclave_reconnect::store::{MemoryStore, Store};
use enclave_reconnect::{AcceptedSession, HubConfig};
use enclave_transport::RefusalReason;
use enclave_types::{FinalPayload, StdoutPayload};

const MAX_EVENTS: u64 = 8;
const MAX_BYTES: u64 = 4096;

fn bounded(store: &Arc<MemoryStore>) -> HubConfig {
    quiet()
        .with_store(Arc::clone(store) as Arc<dyn Store>)
        .with_max_buffered_events(MAX_EVENTS)
        .with_max_buffered_bytes(MAX_BYTES)
}

/// Publishes `events` small stdout events and the `final` on a task of its own; gives the
/// final's seq.
fn produce(session: &AcceptedSession, events: u64) -> tokio::task::JoinHandle<u64> {
    let handle = session.handle.clone();
    tokio::spawn(async move {
        for n in 0..events {
            handle
                .publish(StdoutPayload::new(format!("{n}")))
                .await
                .unwrap();
        }
        handle.finish(FinalPayload::new(true)).await.unwrap()
    })
}

#[tokio::test]
async fn wait_policy_blocks_the_producer_until_acks_arrive_and_memory_stays_bounded() {
    let store = Arc::new(MemoryStore::new());
    let hub = hub(bounded(&store));
    let (mut attachment, session) = create(&hub, true).await;
    let id = attachment.session_id.clone();
    let chunk = "x".repeat(200);
    let producer = {
        let handle = session.handle.clone();
        let store = Arc::clone(&store);
        let id = id.clone();
        tokio::spawn(async move {
            for _ in 0..100 {
                handle
                    .publish(StdoutPayload::new(chunk.clone()))
                    .await
                    .unwrap();
                let retention = store.retention(&id).await.unwrap();
                assert!(retention.count <= MAX_EVENTS, "{retention:?}");
                assert!(retention.bytes <= MAX_BYTES, "{retention:?}");
            }
            handle.finish(FinalPayload::new(true)).await.unwrap()
        })
    };
    // The reader stalls: the producer stops at the bound.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stalled = store.retention(&id).await.unwrap();
    assert!(!producer.is_finished());
    assert!(stalled.last_seq < 20, "the producer ran ahead: {stalled:?}");
    // Reading without acknowledging frees nothing for an acknowledging client.
    for expected in 1..=3 {
        assert_eq!(next_seq(&mut attachment).await, Some(expected));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        store.retention(&id).await.unwrap().last_seq,
        stalled.last_seq
    );
    // Acks let it go on to the end.
    let mut seq = 3;
    while let Some(next) = next_seq(&mut attachment).await {
        assert_eq!(next, seq + 1);
        seq = next;
        attachment.upstream.ack(seq);
    }
    let final_seq = tokio::time::timeout(WAIT, producer).await.unwrap().unwrap();
    assert_eq!(final_seq, 102);
    assert_eq!(seq, 102);
}

#[tokio::test]
async fn a_client_without_acks_never_stalls_the_producer_once_events_are_written() {
    let store = Arc::new(MemoryStore::new());
    let hub = hub(bounded(&store));
    let (mut attachment, session) = create(&hub, false).await;
    let id = attachment.session_id.clone();
    let token = attachment.token.clone();
    let producer = produce(&session, 200);
    let mut seen = 0;
    while let Some(seq) = next_seq(&mut attachment).await {
        assert_eq!(seq, seen + 1);
        seen = seq;
        // What the transport reports as written may leave when the bound is reached.
        attachment.events.written(seq);
        let retention = store.retention(&id).await.unwrap();
        assert!(retention.count <= MAX_EVENTS, "{retention:?}");
    }
    assert_eq!(
        tokio::time::timeout(WAIT, producer).await.unwrap().unwrap(),
        202
    );
    assert_eq!(seen, 202);
    // Positions that left retention cannot be resumed; recent ones can.
    let refused_from_start = refused(&hub, resume_request(&id, 2, Some(&token), false)).await;
    assert_eq!(refused_from_start, RefusalReason::TooFarBehind);
}

#[tokio::test]
async fn the_byte_bound_holds_as_well_as_the_count() {
    let store = Arc::new(MemoryStore::new());
    let hub = hub(quiet()
        .with_store(Arc::clone(&store) as Arc<dyn Store>)
        .with_max_buffered_events(1000)
        .with_max_buffered_bytes(2000));
    let (mut attachment, session) = create(&hub, true).await;
    let id = attachment.session_id.clone();
    let producer = {
        let handle = session.handle.clone();
        tokio::spawn(async move {
            for _ in 0..50 {
                handle
                    .publish(StdoutPayload::new("y".repeat(300)))
                    .await
                    .unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let retention = store.retention(&id).await.unwrap();
    assert!(
        retention.bytes <= 2000 && retention.count < 10,
        "{retention:?}"
    );
    let mut seq = 0;
    while seq < 51 {
        seq = next_seq(&mut attachment).await.unwrap();
        attachment.upstream.ack(seq);
    }
    tokio::time::timeout(WAIT, producer).await.unwrap().unwrap();
}

#[tokio::test]
async fn an_ack_past_the_last_published_seq_loses_nothing_published_later() {
    let store = Arc::new(MemoryStore::new());
    let hub = hub(bounded(&store));
    let (mut attachment, session) = create(&hub, true).await;
    attachment.upstream.ack(1000);
    for n in 0..3 {
        session
            .handle
            .publish(StdoutPayload::new(format!("{n}")))
            .await
            .unwrap();
    }
    let retention = store.retention(&attachment.session_id).await.unwrap();
    assert_eq!(
        (retention.first_seq, retention.last_seq),
        (2, 4),
        "only seq 1 was acknowledged"
    );
    // Seq 1 left as acknowledged: this connection skips it rather than failing.
    for expected in 2..=4 {
        assert_eq!(next_seq(&mut attachment).await, Some(expected));
    }
}

/// A producer that runs ahead of a reader without acknowledgements: what was written last
/// may still sit in socket buffers, so half the bound of it stays retained and the producer
/// waits for the connection instead of pushing it out. Before, written events left as soon
/// as the bound filled, and a resume from just after what the client had read was refused.
#[tokio::test]
async fn a_producer_that_runs_ahead_keeps_what_was_written_last_for_a_resume() {
    let store = Arc::new(MemoryStore::new());
    let hub = hub(bounded(&store));
    let (mut attachment, session) = create(&hub, false).await;
    let id = attachment.session_id.clone();
    let token = attachment.token.clone();
    let producer = produce(&session, 100);
    // Seqs 1..=6 reach the socket; the client will have read only 1 and 2 of them.
    for expected in 1..=6 {
        assert_eq!(next_seq(&mut attachment).await, Some(expected));
        attachment.events.written(expected);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let retention = store.retention(&id).await.unwrap();
    assert!(!producer.is_finished(), "{retention:?}");
    // Half the bound (4 events) of what was written stays: 3..=6, and the rest unwritten.
    assert_eq!(retention.first_seq, 3, "{retention:?}");
    assert_eq!(retention.count, MAX_EVENTS, "{retention:?}");
    // The cut: the client resumes after what it read, and gets everything exactly once.
    drop(attachment);
    let mut resumed = common::resume(&hub, resume_request(&id, 3, Some(&token), false)).await;
    let mut seq = 2;
    while let Some(next) = next_seq(&mut resumed).await {
        assert_eq!(next, seq + 1);
        seq = next;
        resumed.events.written(seq);
    }
    assert_eq!(seq, 102);
    assert_eq!(
        tokio::time::timeout(WAIT, producer).await.unwrap().unwrap(),
        102
    );
}

/// While no connection is attached, nothing written leaves: the client that comes back may
/// resume from anything it was written.
#[tokio::test]
async fn written_events_stay_while_the_client_is_away() {
    let store = Arc::new(MemoryStore::new());
    let hub = hub(bounded(&store));
    let (mut attachment, session) = create(&hub, false).await;
    let id = attachment.session_id.clone();
    let token = attachment.token.clone();
    for n in 0..3 {
        session
            .handle
            .publish(StdoutPayload::new(format!("{n}")))
            .await
            .unwrap();
    }
    for expected in 1..=4 {
        assert_eq!(next_seq(&mut attachment).await, Some(expected));
        attachment.events.written(expected);
    }
    drop(attachment);
    let producer = {
        let handle = session.handle.clone();
        tokio::spawn(async move {
            for n in 0..20 {
                handle
                    .publish(StdoutPayload::new(format!("{n}")))
                    .await
                    .unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!producer.is_finished());
    assert_eq!(store.retention(&id).await.unwrap().first_seq, 1);
    let mut resumed = common::resume(&hub, resume_request(&id, 1, Some(&token), false)).await;
    assert_eq!(next_seq(&mut resumed).await, Some(1));
    producer.abort();
}

#[tokio::test]
async fn a_publish_that_makes_room_by_acks_trims_and_appends_without_reading_retention_first() {
    let store = Arc::new(common::Instrumented::default());
    let hub = hub(quiet()
        .with_store(Arc::clone(&store) as Arc<dyn Store>)
        .with_max_buffered_events(MAX_EVENTS)
        .with_max_buffered_bytes(MAX_BYTES));
    let (attachment, session) = create(&hub, true).await;
    // `session_init` and seven more: the bound is reached.
    for n in 0..MAX_EVENTS - 1 {
        session
            .handle
            .publish(StdoutPayload::new(format!("{n}")))
            .await
            .unwrap();
    }
    store.take();
    let full = store.inner.retention(&attachment.session_id).await.unwrap();
    assert_eq!(full.count, MAX_EVENTS);
    attachment.upstream.ack(MAX_EVENTS);
    let seq = session
        .handle
        .publish(StdoutPayload::new("room"))
        .await
        .unwrap();
    assert_eq!(seq, MAX_EVENTS + 1);
    assert_eq!(store.take(), (0, 1, 1), "(retention, trim, append) calls");
    let after = store.inner.retention(&attachment.session_id).await.unwrap();
    assert_eq!((after.first_seq, after.count), (MAX_EVENTS + 1, 1));
    // One more fits what that append left: the append alone.
    session
        .handle
        .publish(StdoutPayload::new("fits"))
        .await
        .unwrap();
    assert_eq!(store.take(), (0, 0, 1));
}

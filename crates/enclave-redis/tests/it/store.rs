//! The Redis store against the `Store` contract, operation by operation, on a
//! `redis-server` of the test's own; and what only a shared store does (two store instances
//! on one Redis standing for two servers).

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{redis, store, store_with, unique_prefix, within};
use enclave_reconnect::store::EncodedEvent;
use enclave_reconnect::store::{
    Inbound, NewEvent, Progress, SessionMeta, Sharing, Store, TokenHash, TokenHashes, TokenSalt,
};
use enclave_reconnect::{Error, HubMetrics};
use enclave_redis::{RedisStore, RedisStoreConfig, PRODUCER_LOST};
use enclave_testkit::events::{final_ok, stdout};
use enclave_types::{
    CallId, EventPayload, RuntimeChannelMessage, RuntimeChannelPayload, SessionId, SessionState,
    StreamEvent, ToolResultSubmitPayload,
};
use futures::StreamExt;

fn meta(id: &SessionId) -> SessionMeta {
    let now = 1_700_000_000_000;
    SessionMeta::new(id.clone(), 7, now, u64::MAX / 4, true)
}

fn tokens(current: &str) -> TokenHashes {
    TokenHashes::first(TokenHash::of(current))
}

fn encoded(event: StreamEvent) -> Arc<EncodedEvent> {
    Arc::new(EncodedEvent::new(event).expect("serializable"))
}

fn event(id: &SessionId, seq: u64) -> Arc<EncodedEvent> {
    encoded(stdout(id, seq, format!("line {seq}\n")))
}

/// What a batch changed in the metadata.
fn progress(state: Option<SessionState>, tool_calls: u64, finished_at_ms: Option<u64>) -> Progress {
    let mut progress = Progress::default();
    progress.state = state;
    progress.tool_calls = tool_calls;
    progress.finished_at_ms = finished_at_ms;
    progress
}

/// A batch of one event, counting `bytes`.
fn one(event: Arc<EncodedEvent>, bytes: u64) -> [NewEvent; 1] {
    [NewEvent::with_bytes(event, bytes)]
}

fn message(id: &SessionId, seq: Option<u64>, call: &str) -> RuntimeChannelMessage {
    let payload = RuntimeChannelPayload::ToolResultSubmit(ToolResultSubmitPayload::new(
        CallId::new(call).unwrap(),
        true,
    ));
    let message = RuntimeChannelMessage::new(id.clone(), payload);
    match seq {
        Some(seq) => message.with_seq(seq),
        None => message,
    }
}

#[tokio::test]
async fn create_load_and_the_meta_round_trip() {
    let server = redis();
    let store = store(&server, &unique_prefix("meta")).await;
    let id = SessionId::generate();
    assert!(store.load(&id).await.unwrap().is_none());
    store.create(meta(&id), tokens("t1")).await.unwrap();
    assert!(matches!(
        store.create(meta(&id), tokens("t1")).await,
        Err(Error::SessionExists(_))
    ));
    let snapshot = store.load(&id).await.unwrap().expect("the session");
    assert_eq!(snapshot.meta, meta(&id));
    assert_eq!(snapshot.tokens, tokens("t1"));
    assert_eq!(snapshot.retention.first_seq, 1);
    assert_eq!(snapshot.retention.last_seq, 0);
    assert!(!snapshot.expired);

    let mut changed = meta(&id);
    changed.state = SessionState::WaitingForTool;
    changed.tool_call_count = 3;
    changed.finished_at_ms = Some(1_700_000_000_500);
    store.put_meta(changed.clone()).await.unwrap();
    assert_eq!(store.load(&id).await.unwrap().unwrap().meta, changed);
    let listed = store.list().await.unwrap();
    assert_eq!(listed, vec![changed]);

    let other = SessionId::generate();
    assert!(matches!(
        store.put_meta(meta(&other)).await,
        Err(Error::UnknownSession(_))
    ));
    assert!(
        store.load(&other).await.unwrap().is_none(),
        "a refused write leaves no partial record behind"
    );
}

#[tokio::test]
async fn a_batch_is_appended_in_one_step_whole_or_not_at_all() {
    let server = redis();
    let prefix = unique_prefix("batch");
    let store = store(&server, &prefix).await;
    // Another server on the same Redis reads what the batch left there, not this one's copy.
    let other_server = common::store(&server, &prefix).await;
    let id = SessionId::generate();
    store.create(meta(&id), tokens("t")).await.unwrap();
    let batch: Vec<NewEvent> = (1..=3)
        .map(|seq| NewEvent::with_bytes(event(&id, seq), 10 * seq))
        .collect();
    let retention = store.append(&id, &batch).await.unwrap();
    assert_eq!(
        (
            retention.first_seq,
            retention.last_seq,
            retention.count,
            retention.bytes
        ),
        (1, 3, 3, 60)
    );
    // The whole batch again (a retry whose answer was lost) landed once.
    let again = store
        .append(&id, &batch)
        .await
        .expect("a retry is answered");
    assert_eq!((again.last_seq, again.count, again.bytes), (3, 3, 60));
    // A gap inside a batch refuses all of it.
    let gapped = [
        NewEvent::with_bytes(event(&id, 4), 1),
        NewEvent::with_bytes(event(&id, 6), 1),
    ];
    match store.append(&id, &gapped).await {
        Err(Error::OutOfOrder { expected, got, .. }) => assert_eq!((expected, got), (5, 6)),
        other => panic!("a gap in a batch is refused, got {other:?}"),
    }
    // A batch that starts with events already there but goes on is refused too.
    let overlapping = [
        NewEvent::with_bytes(event(&id, 3), 30),
        NewEvent::with_bytes(event(&id, 4), 40),
    ];
    assert!(matches!(
        store.append(&id, &overlapping).await,
        Err(Error::OutOfOrder {
            expected: 4,
            got: 3,
            ..
        })
    ));
    assert_eq!(store.append(&id, &[]).await.unwrap(), retention);
    let seen = other_server.retention(&id).await.unwrap();
    assert_eq!((seen.last_seq, seen.count, seen.bytes), (3, 3, 60));
    let read: Vec<u64> = other_server
        .read(&id, 1, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(read, [1, 2, 3]);
    // Trimming still knows the bytes of each event of the batch.
    let trimmed = other_server.trim(&id, 2).await.unwrap();
    assert_eq!(
        (trimmed.first_seq, trimmed.count, trimmed.bytes),
        (3, 1, 30)
    );
}

#[tokio::test]
async fn a_batch_records_what_it_changed_in_the_metadata_in_the_same_step_and_a_retry_counts_once()
{
    let server = redis();
    let prefix = unique_prefix("progress");
    let store = store(&server, &prefix).await;
    let other = common::store(&server, &prefix).await;
    let id = SessionId::generate();
    store.create(meta(&id), tokens("t")).await.unwrap();
    let batch: Vec<NewEvent> = (1..=3)
        .map(|seq| NewEvent::with_bytes(event(&id, seq), 10))
        .collect();
    let waiting = progress(Some(SessionState::WaitingForTool), 2, None);
    let retention = store
        .append_with_progress(&id, &batch, waiting)
        .await
        .unwrap();
    assert_eq!((retention.last_seq, retention.count), (3, 3));
    // The retry of a batch whose answer was lost: landed once, its tool calls counted once.
    store
        .append_with_progress(&id, &batch, waiting)
        .await
        .expect("a retry is answered");
    let seen = other.load(&id).await.unwrap().expect("the session");
    assert_eq!(seen.meta.state, SessionState::WaitingForTool);
    assert_eq!(seen.meta.tool_call_count, 2);
    assert_eq!(seen.meta.finished_at_ms, None);
    assert_eq!(seen.retention.last_seq, 3);
    // A refused batch records nothing.
    let gapped = one(event(&id, 9), 1);
    assert!(store
        .append_with_progress(&id, &gapped, waiting)
        .await
        .is_err());
    assert_eq!(
        other.load(&id).await.unwrap().unwrap().meta.tool_call_count,
        2
    );
    // The final's batch records the finish; progress alone (no events) is recorded too.
    let last = [NewEvent::with_bytes(encoded(final_ok(&id, 4)), 10)];
    let finished = progress(Some(SessionState::Completed), 0, Some(1_700_000_000_123));
    store
        .append_with_progress(&id, &last, finished)
        .await
        .unwrap();
    let extra = progress(None, 1, None);
    store.append_with_progress(&id, &[], extra).await.unwrap();
    let seen = other.load(&id).await.unwrap().unwrap();
    assert_eq!(seen.meta.state, SessionState::Completed);
    assert_eq!(seen.meta.finished_at_ms, Some(1_700_000_000_123));
    assert_eq!(seen.meta.tool_call_count, 3);
    assert_eq!(seen.retention.last_seq, 4);
}

#[tokio::test]
async fn appends_are_checked_and_retention_tracks_counts_bytes_and_what_left() {
    let server = redis();
    let store = store(&server, &unique_prefix("append")).await;
    let id = SessionId::generate();
    store.create(meta(&id), tokens("t")).await.unwrap();
    for seq in 1..=5 {
        let retention = store
            .append(&id, &one(event(&id, seq), 10 * seq))
            .await
            .unwrap();
        assert_eq!((retention.last_seq, retention.count), (seq, seq));
    }
    match store.append(&id, &one(event(&id, 7), 1)).await {
        Err(Error::OutOfOrder { expected, got, .. }) => assert_eq!((expected, got), (6, 7)),
        other => panic!("a skipped seq is refused, got {other:?}"),
    }
    // The same event again (a retry whose answer was lost) landed once: it is not added.
    let again = store
        .append(&id, &one(event(&id, 5), 50))
        .await
        .expect("a retry is answered");
    assert_eq!((again.last_seq, again.count), (5, 5));
    // Another event at a seq that is taken is refused.
    let other = encoded(stdout(&id, 5, "something else\n"));
    assert!(matches!(
        store.append(&id, &one(other, 1)).await,
        Err(Error::OutOfOrder { .. })
    ));
    let retention = store.retention(&id).await.unwrap();
    assert_eq!(retention.bytes, 150);
    let read: Vec<u64> = store
        .read(&id, 2, 2)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(read, [2, 3]);
    assert_eq!(*store.read(&id, 1, 10).await.unwrap()[4], *event(&id, 5));

    let retention = store.trim(&id, 3).await.unwrap();
    assert_eq!(retention.first_seq, 4);
    assert_eq!(retention.count, 2);
    assert_eq!(retention.bytes, 90);
    assert_eq!(retention.evicted_through, 3);
    assert_eq!(
        store.trim(&id, 3).await.unwrap(),
        retention,
        "trim is idempotent"
    );
    let read: Vec<u64> = store
        .read(&id, 1, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        read,
        [4, 5],
        "a read from before retention starts at the oldest kept"
    );

    let retention = store.trim(&id, 5).await.unwrap();
    assert_eq!(
        (retention.count, retention.bytes, retention.first_seq),
        (0, 0, 6)
    );
    store.append(&id, &one(event(&id, 6), 5)).await.unwrap();
    let snapshot = store.load(&id).await.unwrap().unwrap();
    assert_eq!(snapshot.retention.first_seq, 6);
    assert_eq!(snapshot.retention.evicted_through, 5);

    let unknown = SessionId::generate();
    assert!(matches!(
        store.append(&unknown, &one(event(&unknown, 1), 1)).await,
        Err(Error::UnknownSession(_))
    ));
    assert!(matches!(
        store.read(&unknown, 1, 1).await,
        Err(Error::UnknownSession(_))
    ));
}

#[tokio::test]
async fn tokens_swap_only_from_what_was_expected_and_client_positions_only_advance() {
    let server = redis();
    let store = store(&server, &unique_prefix("tokens")).await;
    let id = SessionId::generate();
    store.create(meta(&id), tokens("a")).await.unwrap();
    let next = TokenHashes {
        current: TokenHash::of("b"),
        previous: Some(TokenHash::of("a")),
        salt: Some(TokenSalt([9; 32])),
    };
    assert!(store.swap_tokens(&id, tokens("a"), next).await.unwrap());
    assert!(
        !store
            .swap_tokens(&id, tokens("a"), tokens("c"))
            .await
            .unwrap(),
        "a stale expectation loses the race"
    );
    assert_eq!(store.load(&id).await.unwrap().unwrap().tokens, next);

    assert_eq!(store.advance_client_seq(&id, 3).await.unwrap(), 3);
    assert_eq!(store.advance_client_seq(&id, 2).await.unwrap(), 3);
    assert_eq!(store.retention(&id).await.unwrap().client_seq, 3);
}

#[tokio::test]
async fn expiry_keeps_the_record_and_removal_forgets_it() {
    let server = redis();
    let store = store(&server, &unique_prefix("expire")).await;
    let id = SessionId::generate();
    store.create(meta(&id), tokens("a")).await.unwrap();
    store.append(&id, &one(event(&id, 1), 4)).await.unwrap();
    store.expire(&id).await.unwrap();
    let snapshot = store.load(&id).await.unwrap().expect("the record stays");
    assert!(snapshot.expired);
    assert_eq!(snapshot.retention.count, 0);
    assert!(store.remove(&id).await.unwrap());
    assert!(!store.remove(&id).await.unwrap());
    assert!(store.load(&id).await.unwrap().is_none());
}

#[tokio::test]
async fn forwarded_messages_reach_the_inbox_numbered_deduplicated_and_in_order() {
    let server = redis();
    let prefix = unique_prefix("inbox");
    let producer = store(&server, &prefix).await;
    let other_server = store(&server, &prefix).await;
    let id = SessionId::generate();
    producer.create(meta(&id), tokens("a")).await.unwrap();
    let mut inbox = producer.inbox(&id);

    let held = other_server
        .forward(
            &id,
            vec![
                Inbound::Message(message(&id, Some(1), "c_1")),
                Inbound::Message(message(&id, None, "c_2")),
                Inbound::Message(message(&id, Some(1), "c_1")),
            ],
        )
        .await
        .unwrap();
    assert_eq!(held, 2);
    let held = other_server
        .forward(
            &id,
            vec![
                Inbound::Message(message(&id, Some(2), "c_2")),
                Inbound::Cancel {
                    reason: Some("user".into()),
                },
                Inbound::Message(message(&id, Some(5), "c_5")),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        held, 5,
        "a seq past the next is accepted and the position jumps"
    );

    let mut got = Vec::new();
    for _ in 0..4 {
        let item = within(Duration::from_secs(5), "an inbox item", inbox.next())
            .await
            .expect("the inbox goes on")
            .expect("no error");
        got.push(match item {
            Inbound::Message(m) => format!("m{}", m.seq.unwrap()),
            Inbound::Cancel { reason } => format!("c:{}", reason.unwrap_or_default()),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(got, ["m1", "m2", "c:user", "m5"]);

    producer.remove(&id).await.unwrap();
    let end = within(Duration::from_secs(5), "the inbox end", inbox.next()).await;
    assert!(end.is_none(), "the inbox ends with its session");
    assert!(matches!(
        other_server
            .forward(&id, vec![Inbound::Cancel { reason: None }])
            .await,
        Err(Error::UnknownSession(_))
    ));
}

#[tokio::test]
async fn a_full_inbox_refuses_more_rather_than_growing() {
    let server = redis();
    let prefix = unique_prefix("inbox-bound");
    let store = store_with(
        &server,
        RedisStoreConfig::default()
            .with_prefix(&prefix)
            .with_max_inbox(2),
    )
    .await;
    let id = SessionId::generate();
    store.create(meta(&id), tokens("a")).await.unwrap();
    for seq in 1..=2 {
        store
            .forward(&id, vec![Inbound::Message(message(&id, Some(seq), "c_x"))])
            .await
            .unwrap();
    }
    let err = store
        .forward(&id, vec![Inbound::Message(message(&id, Some(3), "c_x"))])
        .await
        .expect_err("the bound holds");
    assert!(err.to_string().contains("inbox bound"), "{err}");
}

#[tokio::test]
async fn another_servers_appends_wake_this_servers_watchers() {
    let server = redis();
    let (producer, follower, id) = producer_and_follower(&server, "watch", 10_000).await;
    let mut watch = follower.watch(&id).expect("a follower");
    within(
        Duration::from_secs(5),
        "the first position",
        watch.wait_for(|&s| s >= 1),
    )
    .await
    .unwrap();
    producer.append(&id, &one(event(&id, 2), 4)).await.unwrap();
    within(
        Duration::from_secs(5),
        "a woken watcher",
        watch.wait_for(|&s| s >= 2),
    )
    .await
    .unwrap();
    producer.remove(&id).await.unwrap();
    let ended = within(Duration::from_secs(5), "the end of the watch", async {
        while watch.changed().await.is_ok() {}
    })
    .await;
    let () = ended;
}

#[tokio::test]
async fn presence_counts_connections_on_every_server() {
    let server = redis();
    let prefix = unique_prefix("presence");
    let a = store(&server, &prefix).await;
    let b = store(&server, &prefix).await;
    let id = SessionId::generate();
    a.create(meta(&id), tokens("a")).await.unwrap();
    a.attach(&id).await.unwrap();
    b.attach(&id).await.unwrap();
    a.detach(&id).await.unwrap();
    let presence = b.load(&id).await.unwrap().unwrap().presence;
    assert_eq!((presence.attached, presence.detached_at_ms), (1, None));
    b.detach(&id).await.unwrap();
    let presence = a.load(&id).await.unwrap().unwrap().presence;
    assert_eq!(presence.attached, 0);
    assert!(presence.detached_at_ms.is_some());
}

#[tokio::test]
async fn every_store_on_one_redis_shares_one_epoch_and_a_lost_state_gets_a_new_one() {
    let mut server = redis();
    let prefix = unique_prefix("epoch");
    let a = store(&server, &prefix).await;
    let b = store(&server, &prefix).await;
    let epoch = a
        .epoch()
        .await
        .unwrap()
        .expect("a shared store has an epoch");
    assert_eq!(b.epoch().await.unwrap(), Some(epoch));
    assert!(epoch > 0 && epoch < 1 << 53);
    server
        .restart()
        .expect("redis restarts (persistence off: its data is gone)");
    let after = within(
        Duration::from_secs(10),
        "an epoch after the restart",
        async {
            loop {
                if let Ok(Some(epoch)) = a.epoch().await {
                    return epoch;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;
    assert_ne!(after, epoch, "the lost state's epoch is never reused");
}

/// Two stores on `server` standing for two servers, with a `lease_ms` lease, and a session
/// the first one produces, holding one event.
async fn producer_and_follower(
    server: &enclave_testkit::RedisServer,
    name: &str,
    lease_ms: u64,
) -> (RedisStore, RedisStore, SessionId) {
    producer_and_follower_counting(server, name, lease_ms, &HubMetrics::new()).await
}

/// [`producer_and_follower`], both stores counting lost leases in `metrics`.
async fn producer_and_follower_counting(
    server: &enclave_testkit::RedisServer,
    name: &str,
    lease_ms: u64,
    metrics: &HubMetrics,
) -> (RedisStore, RedisStore, SessionId) {
    let config = RedisStoreConfig::default()
        .with_prefix(unique_prefix(name))
        .with_lease(Duration::from_millis(lease_ms))
        .with_metrics(metrics.clone());
    let producer = store_with(server, config.clone()).await;
    let follower = store_with(server, config).await;
    let id = SessionId::generate();
    producer.create(meta(&id), tokens("a")).await.unwrap();
    producer.append(&id, &one(event(&id, 1), 4)).await.unwrap();
    (producer, follower, id)
}

#[tokio::test]
async fn a_session_whose_producer_stops_renewing_its_lease_ends_failed() {
    let server = redis();
    let registry = prometheus::Registry::new_custom(Some("enclave".to_owned()), None).unwrap();
    let metrics = HubMetrics::new();
    metrics.register(&registry).unwrap();
    let lost = || enclave_transport::metrics::encode(&registry).unwrap();
    let (producer, follower, id) =
        producer_and_follower_counting(&server, "lease", 300, &metrics).await;
    let mut watch = follower.watch(&id).expect("a follower");
    // While the producer's store lives it renews: the session stays open past its lease.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(follower.retention(&id).await.unwrap().last_seq, 1);
    drop(producer);
    within(
        Duration::from_secs(10),
        "the producer-lost final",
        watch.wait_for(|&s| s >= 2),
    )
    .await
    .unwrap();
    let events = follower.read(&id, 2, 10).await.unwrap();
    let EventPayload::Final(last) = &events[0].payload else {
        panic!("seq 2 is a final, got {:?}", events[0]);
    };
    assert!(!last.ok);
    assert_eq!(
        last.error.as_ref().unwrap().code.as_deref(),
        Some(PRODUCER_LOST)
    );
    assert_eq!(
        follower.load(&id).await.unwrap().unwrap().meta.state,
        SessionState::Failed
    );
    // Counted once, where the store ended it.
    let text = lost();
    assert!(
        text.lines()
            .any(|line| line == "enclave_leases_lost_total 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_session_that_finished_is_never_failed_by_a_lapsed_lease() {
    let server = redis();
    let prefix = unique_prefix("finished");
    let config = RedisStoreConfig::default()
        .with_prefix(&prefix)
        .with_lease(Duration::from_millis(100));
    let producer = store_with(&server, config.clone()).await;
    let follower = store_with(&server, config).await;
    let id = SessionId::generate();
    producer.create(meta(&id), tokens("a")).await.unwrap();
    producer.append(&id, &one(event(&id, 1), 4)).await.unwrap();
    let done = encoded(final_ok(&id, 2));
    producer.append(&id, &one(done, 4)).await.unwrap();
    drop(producer);
    let _watch = follower.watch(&id).expect("a follower");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let retention = follower.retention(&id).await.unwrap();
    assert_eq!(retention.last_seq, 2, "nothing follows a final");
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error_and_work_resumes_when_it_is_back() {
    let mut server = redis();
    let store: RedisStore = store(&server, &unique_prefix("outage")).await;
    let id = SessionId::generate();
    store.create(meta(&id), tokens("a")).await.unwrap();
    server.kill();
    let err = store
        .create(meta(&SessionId::generate()), tokens("b"))
        .await
        .expect_err("no Redis, no session");
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
    assert!(err.to_string().contains("Redis create"), "{err}");
    server.restart().expect("redis starts again");
    within(
        Duration::from_secs(10),
        "a create after the outage",
        async {
            loop {
                if store
                    .create(meta(&SessionId::generate()), tokens("c"))
                    .await
                    .is_ok()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;
}

#[tokio::test]
async fn bad_urls_and_prefixes_are_refused_up_front() {
    let err = RedisStore::connect("http://nope", RedisStoreConfig::default())
        .await
        .expect_err("not a Redis URL");
    assert!(matches!(err, enclave_redis::Error::Url { .. }), "{err}");
    let err = RedisStore::connect(
        "redis://127.0.0.1:1",
        RedisStoreConfig::default().with_prefix("a{b}"),
    )
    .await
    .expect_err("a prefix with braces");
    assert!(matches!(err, enclave_redis::Error::Prefix(_)), "{err}");
}

#[tokio::test]
async fn rediss_urls_connect_over_tls_trusting_the_configured_ca() {
    let data =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../enclave-transport/tests/data");
    let server = enclave_testkit::RedisServer::start_tls(
        &data.join("test-cert.pem"),
        &data.join("test-key.pem"),
    )
    .expect("a TLS redis-server starts");
    let url = server.tls_url().expect("a TLS URL");
    let prefix = unique_prefix("tls");
    // The server's certificate is not among the system's roots: refused without the CA.
    let refused = RedisStore::connect(&url, RedisStoreConfig::default().with_prefix(&prefix)).await;
    assert!(refused.is_err(), "an untrusted certificate is refused");
    let store = RedisStore::connect(
        &url,
        RedisStoreConfig::default()
            .with_prefix(&prefix)
            .with_ca_file(data.join("test-cert.pem")),
    )
    .await
    .expect("the store connects over TLS");
    let id = SessionId::generate();
    store.create(meta(&id), tokens("a")).await.unwrap();
    store.append(&id, &one(event(&id, 1), 4)).await.unwrap();
    assert_eq!(store.read(&id, 1, 10).await.unwrap().len(), 1);
    let missing = RedisStore::connect(
        &url,
        RedisStoreConfig::default().with_ca_file("/nonexistent/ca.pem"),
    )
    .await
    .expect_err("no CA file");
    assert!(
        matches!(missing, enclave_redis::Error::CaFile { .. }),
        "{missing}"
    );
}

#[tokio::test]
async fn a_store_that_shuts_down_lets_its_leases_lapse() {
    let server = redis();
    let (producer, follower, id) = producer_and_follower(&server, "shutdown", 300).await;
    let mut watch = follower.watch(&id).expect("a follower");
    // The producer's process lives on, but its hub shut down: nothing renews the lease.
    producer.shutdown();
    within(
        Duration::from_secs(10),
        "the producer-lost final",
        watch.wait_for(|&s| s >= 2),
    )
    .await
    .unwrap();
    let events = follower.read(&id, 2, 1).await.unwrap();
    assert!(matches!(&events[0].payload, EventPayload::Final(f) if !f.ok));
    // The producer learns it at its next append.
    assert!(matches!(
        producer.append(&id, &one(event(&id, 2), 4)).await,
        Err(Error::SessionClosed(_) | Error::OutOfOrder { .. })
    ));
}

/// Issue 16, on the shared store as in memory: a replay of the previous token, on any
/// server, gets the same successor (never a new token that revokes it); concurrent resumes
/// with one token, spread over two servers, all get that one successor; an access check
/// takes the current or previous token and consumes neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_rotation_never_lets_a_replay_revoke_a_newer_token() {
    use enclave_reconnect::{Hub, HubConfig};
    use enclave_transport::{CreateSession, RefusalReason, ResumeSession, SessionService};

    let server = redis();
    let prefix = unique_prefix("rotation");
    let node = |store: RedisStore| {
        Hub::new(
            HubConfig::default()
                .with_heartbeat_ms(0)
                .with_store(Arc::new(store)),
        )
    };
    let a = node(store(&server, &prefix).await);
    let b = node(store(&server, &prefix).await);
    let id = SessionId::generate();
    let created = within(
        Duration::from_secs(5),
        "create",
        a.create(CreateSession::new(id.clone())),
    )
    .await
    .expect("created");
    let resume = |hub: &Hub, token: &str| {
        let mut request = ResumeSession::new(id.clone(), 1);
        request.token = Some(token.to_owned());
        let hub = hub.clone();
        async move { hub.resume(request).await.map(|attachment| attachment.token) }
    };
    let t0 = created.token.clone();
    let t1 = resume(&a, &t0).await.expect("t0 resumes");
    assert_ne!(t1, t0);
    for hub in [&a, &b, &a] {
        assert_eq!(resume(hub, &t0).await.expect("a replay of t0"), t1);
    }
    b.check_access(&id, Some(&t0)).await.expect("t0, previous");
    b.check_access(&id, Some(&t1)).await.expect("t1, current");

    // Five concurrent resumes with t1, on both servers: one successor for all.
    let tasks: Vec<_> = (0..5)
        .map(|i| tokio::spawn(resume(if i % 2 == 0 { &a } else { &b }, &t1)))
        .collect();
    let mut successors = Vec::new();
    for task in tasks {
        let answer = within(Duration::from_secs(10), "a concurrent resume", task)
            .await
            .expect("the task ran");
        successors.push(answer.expect("every concurrent resume with t1 succeeds"));
    }
    let t2 = successors[0].clone();
    assert!(successors.iter().all(|t| *t == t2), "{successors:?}");
    assert!(t2 != t1 && t2 != t0);
    // t0 is spent (t1 was used); t1 is the previous token now and still gets t2.
    let spent = b.check_access(&id, Some(&t0)).await.unwrap_err();
    assert_eq!(spent.reason, RefusalReason::BadToken);
    assert_eq!(
        resume(&b, &t0).await.unwrap_err().reason,
        RefusalReason::BadToken
    );
    assert_eq!(resume(&b, &t1).await.expect("t1, previous"), t2);
    let t3 = resume(&a, &t2).await.expect("t2 resumes");
    assert!(t3 != t2);
    assert_eq!(
        resume(&a, &t1).await.unwrap_err().reason,
        RefusalReason::BadToken
    );
    a.shutdown();
    b.shutdown();
}

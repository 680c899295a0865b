//! Backpressure through the real server: a consumer far slower than the producer, and one
//! that stops for seconds. The producer waits (`publish` takes time), and what the hub
//! retains, sampled all along with [`Hub::retained`](enclave_reconnect::Hub::retained),
//! never exceeds the configured bound.

use crate::live;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use enclave_reconnect::{HubConfig, ReconnectingStream};
use enclave_transport::client::NewSession;
use enclave_types::{EventPayload, FinalPayload, SessionId};
use live::{fast_client, payload, Live};

const MAX_EVENTS: u64 = 100;
const MAX_BYTES: u64 = 64 * 1024;
const LIMIT: Duration = Duration::from_secs(30);

fn bounded() -> HubConfig {
    HubConfig::default()
        .with_heartbeat_ms(0)
        .with_max_buffered_events(MAX_EVENTS)
        .with_max_buffered_bytes(MAX_BYTES)
}

/// Samples the session's retention every 2 ms until `stop`; returns the peaks.
fn sample(live: &Live, id: SessionId, stop: Arc<AtomicU64>) -> tokio::task::JoinHandle<(u64, u64)> {
    let hub = live.hub.clone();
    tokio::spawn(async move {
        let (mut events, mut bytes) = (0, 0);
        while stop.load(Ordering::Relaxed) == 0 {
            if let Ok(Some((e, b))) = hub.retained(&id).await {
                events = events.max(e);
                bytes = bytes.max(b);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (events, bytes)
    })
}

/// Reads the whole session, calling `pace(n)` after the `n`-th event; returns the seqs.
async fn consume(
    stream: &mut ReconnectingStream,
    mut pace: impl FnMut(u64) -> Duration,
) -> Vec<u64> {
    let mut seqs = Vec::new();
    while let Some(item) = stream.next().await {
        let event = item.expect("no error");
        let done = matches!(event.payload, EventPayload::Final(_));
        seqs.push(event.seq);
        if done {
            break;
        }
        tokio::time::sleep(pace(seqs.len() as u64)).await;
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_makes_the_producer_wait_within_the_bound() {
    const EVENTS: u64 = 600;
    let live = Live::start(bounded()).await;
    let mut stream = ReconnectingStream::new(live.http_url(), NewSession::new(), fast_client());
    let run = tokio::time::timeout(LIMIT, async {
        let first = stream
            .next()
            .await
            .expect("session_init")
            .expect("no error");
        let app = live.hub.accept().await.expect("a session");
        let stop = Arc::new(AtomicU64::new(0));
        let sampler = sample(&live, first.session_id.clone(), Arc::clone(&stop));
        let producer = tokio::spawn(async move {
            let started = Instant::now();
            for i in 0..EVENTS {
                app.handle.publish(payload(i)).await.expect("publish");
            }
            app.handle
                .finish(FinalPayload::new(true))
                .await
                .expect("final");
            started.elapsed()
        });
        // 2 ms an event: the producer, unhindered, publishes one in a few microseconds.
        let mut seqs = vec![first.seq];
        seqs.extend(consume(&mut stream, |_| Duration::from_millis(2)).await);
        let producer_took = producer.await.expect("the producer ends");
        stop.store(1, Ordering::Relaxed);
        let peaks = sampler.await.expect("the sampler ends");
        (seqs, producer_took, peaks)
    })
    .await;
    let (seqs, producer_took, (events, bytes)) = run.expect("the run ends in time");
    assert_eq!(seqs, (1..=EVENTS + 2).collect::<Vec<_>>());
    // The last event fits only once the consumer acknowledged all but MAX_EVENTS of them
    // (acks lag by at most 64 events): at least ~430 events at 2 ms each.
    assert!(
        producer_took >= Duration::from_millis(800),
        "the producer waited for the consumer: {producer_took:?}"
    );
    assert!(events <= MAX_EVENTS, "{events} events retained");
    assert!(bytes <= MAX_BYTES, "{bytes} bytes retained");
    println!(
        "slow consumer: producer took {producer_took:?}, peak retention {events} events, {bytes} bytes"
    );
    stream.close().await;
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_stops_the_producer_at_the_bound() {
    const EVENTS: u64 = 1_000;
    const STALL_AT: u64 = 50;
    let live = Live::start(bounded()).await;
    let mut stream = ReconnectingStream::new(live.ws_url(), NewSession::new(), fast_client());
    let run = tokio::time::timeout(LIMIT, async {
        let first = stream
            .next()
            .await
            .expect("session_init")
            .expect("no error");
        let app = live.hub.accept().await.expect("a session");
        let stop = Arc::new(AtomicU64::new(0));
        let sampler = sample(&live, first.session_id.clone(), Arc::clone(&stop));
        let published = Arc::new(AtomicU64::new(0));
        let progress = Arc::clone(&published);
        let producer = tokio::spawn(async move {
            for i in 0..EVENTS {
                let seq = app.handle.publish(payload(i)).await.expect("publish");
                progress.store(seq, Ordering::Relaxed);
            }
            app.handle
                .finish(FinalPayload::new(true))
                .await
                .expect("final");
        });
        let mut seqs = vec![first.seq];
        // Read up to the stall point, then read nothing for 3 s.
        while seqs.len() < usize::try_from(STALL_AT).unwrap_or(usize::MAX) {
            let event = stream.next().await.expect("an event").expect("no error");
            seqs.push(event.seq);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let early = published.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let late = published.load(Ordering::Relaxed);
        let during_stall = (early, late);
        seqs.extend(consume(&mut stream, |_| Duration::ZERO).await);
        producer.await.expect("the producer ends");
        stop.store(1, Ordering::Relaxed);
        let peaks = sampler.await.expect("the sampler ends");
        (seqs, during_stall, peaks)
    })
    .await;
    let (seqs, (early, late), (events, bytes)) = run.expect("the run ends in time");
    assert_eq!(seqs, (1..=EVENTS + 2).collect::<Vec<_>>());
    assert_eq!(
        early, late,
        "the producer made no progress during the stall (seq {early} then {late})"
    );
    assert!(
        late <= STALL_AT + MAX_EVENTS + 1,
        "the producer stopped within the bound of what the consumer read: seq {late}"
    );
    assert!(events <= MAX_EVENTS, "{events} events retained");
    assert!(bytes <= MAX_BYTES, "{bytes} bytes retained");
    println!(
        "stalled consumer: producer held at seq {late} for 2 s, peak retention {events} events, {bytes} bytes"
    );
    stream.close().await;
    live.stop().await;
}

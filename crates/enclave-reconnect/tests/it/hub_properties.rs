//! Property: any interleaving of publishes, reads, acknowledgements and cuts (each followed
//! by a resume from the last seq the client saw + 1) delivers every seq exactly once, in
//! order, while the producer runs under backpressure.

use crate::common;

use std::time::Duration;

use common::{create, features, quiet};
use enclave_reconnect::{Hub, OverflowPolicy};
use enclave_transport::{Attachment, Outgoing, ResumeSession, SessionService};
use enclave_types::{FinalPayload, StdoutPayload};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Read up to this many items from the current attachment.
    Read(usize),
    /// Acknowledge everything seen so far.
    Ack,
    /// Drop the connection and resume from the last seen seq + 1.
    Cut,
    /// Resume from the same position while the old connection is still attached.
    Supersede,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..8).prop_map(Op::Read),
        2 => Just(Op::Ack),
        1 => Just(Op::Cut),
        1 => Just(Op::Supersede),
    ]
}

/// One item, or `None` if the attachment has nothing within a (virtual) moment.
async fn poll(attachment: &mut Attachment) -> Option<Option<Outgoing>> {
    tokio::time::timeout(Duration::from_millis(20), attachment.events.next())
        .await
        .ok()
}

async fn reattach(hub: &Hub, attachment: &Attachment, from: u64, acknowledges: bool) -> Attachment {
    let mut request = ResumeSession::new(attachment.session_id.clone(), from);
    request.token = Some(attachment.token.clone());
    request.features = features(acknowledges);
    hub.resume(request).await.expect("resume within retention")
}

async fn run(ops: Vec<Op>, events: u64, acknowledges: bool) -> Vec<u64> {
    let hub = Hub::new(
        quiet()
            .with_max_buffered_events(6)
            .with_overflow(OverflowPolicy::Wait),
    );
    let (mut attachment, session) = create(&hub, acknowledges).await;
    let handle = session.handle.clone();
    let producer = tokio::spawn(async move {
        for n in 0..events {
            handle
                .publish(StdoutPayload::new(format!("{n}")))
                .await
                .unwrap();
        }
        handle.finish(FinalPayload::new(true)).await.unwrap();
    });
    let mut seen: Vec<u64> = Vec::new();
    let last = |seen: &Vec<u64>| seen.last().copied().unwrap_or(0);
    let mut ended = false;
    for op in ops
        .into_iter()
        .chain(std::iter::repeat_n(Op::Read(usize::MAX), 1))
    {
        match op {
            Op::Read(count) => {
                let mut read = 0;
                let mut idle = 0;
                while read < count {
                    match poll(&mut attachment).await {
                        Some(Some(Outgoing::Event(event))) => {
                            seen.push(event.seq);
                            read += 1;
                            attachment.events.written(event.seq);
                            // The final drain acknowledges so the producer can finish.
                            if count == usize::MAX {
                                attachment.upstream.ack(event.seq);
                            }
                        }
                        Some(Some(Outgoing::Close(reason))) => panic!("closed: {reason:?}"),
                        Some(Some(_)) => {}
                        Some(None) => {
                            ended = true;
                            break;
                        }
                        // The drain waits for the producer, but not forever.
                        None if count == usize::MAX && idle < 500 => {
                            idle += 1;
                            attachment.upstream.ack(last(&seen));
                        }
                        None => break,
                    }
                }
            }
            Op::Ack => attachment.upstream.ack(last(&seen)),
            Op::Cut => {
                let from = last(&seen) + 1;
                let next = reattach(&hub, &attachment, from, acknowledges).await;
                drop(std::mem::replace(&mut attachment, next));
            }
            Op::Supersede => {
                let from = last(&seen) + 1;
                let next = reattach(&hub, &attachment, from, acknowledges).await;
                let mut old = std::mem::replace(&mut attachment, next);
                // The old connection yields nothing more: only the supersede notice.
                assert!(matches!(
                    poll(&mut old).await,
                    Some(Some(Outgoing::Close(_)))
                ));
            }
        }
        if ended {
            break;
        }
    }
    tokio::time::timeout(Duration::from_secs(5), producer)
        .await
        .unwrap()
        .unwrap();
    seen
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_seq_once_in_order(
        ops in proptest::collection::vec(op(), 0..40),
        events in 0u64..30,
        acknowledges in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let seen = runtime.block_on(run(ops, events, acknowledges));
        let expected: Vec<u64> = (1..=events + 2).collect();
        prop_assert_eq!(seen, expected);
    }
}

//! `EventSource::next_ready`, the transport's way to fill a chunk without a future per event:
//! it yields exactly what `next` would, in order, and nothing it would have to wait for.

use crate::common;

use common::{create, next, quiet, resume, resume_request};
use enclave_reconnect::Hub;
use enclave_transport::{Attachment, CloseReason, Outgoing};
use enclave_types::{EventPayload, FinalPayload, StdoutPayload};

/// Drains `attachment` the way a pump does: one `next`, then every ready item. Returns the
/// seqs in order, and what ended the stream (`None`: the end after `final`).
async fn drain(attachment: &mut Attachment) -> (Vec<u64>, Option<CloseReason>, usize) {
    let mut seqs = Vec::new();
    let mut ready_items = 0;
    let mut item = next(attachment).await;
    loop {
        match item {
            None => return (seqs, None, ready_items),
            Some(Outgoing::Event(event)) => seqs.push(event.seq),
            Some(Outgoing::Close(reason)) => return (seqs, Some(reason), ready_items),
            Some(other) => panic!("a control line to a client without acknowledgements: {other:?}"),
        }
        item = match attachment.events.next_ready() {
            Some(ready) => {
                ready_items += 1;
                Some(ready)
            }
            None => next(attachment).await,
        };
    }
}

#[tokio::test]
async fn ready_items_are_the_next_events_in_order_and_the_stream_still_ends_after_final() {
    let hub = Hub::new(quiet());
    let (mut attachment, session) = create(&hub, false).await;
    assert!(
        attachment.events.next_ready().is_none(),
        "nothing was read from the store yet: only `next` can tell"
    );
    for i in 0..500 {
        session
            .handle
            .publish(StdoutPayload::new(format!("line {i}\n")))
            .await
            .unwrap();
    }
    session
        .handle
        .finish(FinalPayload::new(true))
        .await
        .unwrap();

    let (seqs, closed, ready_items) = drain(&mut attachment).await;
    assert_eq!(closed, None, "the stream ends quietly after final");
    let expected: Vec<u64> = (1..=502).collect();
    assert!(seqs == expected, "seqs {}..={} in order, each once", 1, 502);
    assert!(
        ready_items > 400,
        "most events came without a future: {ready_items} of 502"
    );
    assert!(
        attachment.events.next_ready().is_none(),
        "nothing is ready after the end"
    );
}

#[tokio::test]
async fn a_supersede_ends_the_ready_items_with_its_close() {
    let hub = Hub::new(quiet());
    let (mut attachment, session) = create(&hub, false).await;
    for i in 0..100 {
        session
            .handle
            .publish(StdoutPayload::new(format!("line {i}\n")))
            .await
            .unwrap();
    }
    // Read one, so the source holds the rest of its batch.
    match next(&mut attachment).await {
        Some(Outgoing::Event(event)) => {
            assert!(matches!(event.payload, EventPayload::SessionInit(_)));
        }
        other => panic!("session_init expected, got {other:?}"),
    }
    assert!(
        matches!(attachment.events.next_ready(), Some(Outgoing::Event(e)) if e.seq == 2),
        "the batch read with seq 1 is at hand"
    );
    let newer = resume(
        &hub,
        resume_request(&attachment.session_id, 3, Some(&attachment.token), false),
    )
    .await;
    assert!(
        matches!(
            attachment.events.next_ready(),
            Some(Outgoing::Close(CloseReason::Superseded))
        ),
        "a buffered event is not handed out once a newer connection took over"
    );
    assert!(
        next(&mut attachment).await.is_none(),
        "nothing after the close"
    );
    drop(newer);
}

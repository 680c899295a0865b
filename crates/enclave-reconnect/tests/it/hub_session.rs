//! The application side and the other routes: client messages once each, heartbeats in the
//! sequence, cancel, state and summaries, delete, shutdown, the session limit.

use crate::common;

use std::time::Duration;

use common::{create, hub, is_idle, next, next_seq, quiet, resume_request, WAIT};
use enclave_reconnect::HubConfig;
use enclave_transport::{
    CloseReason, CreateSession, Outgoing, RefusalReason, SessionService, Submit,
};
use enclave_types::{
    CallId, CancelPayload, EventPayload, FinalPayload, RawJson, RuntimeChannelMessage, SessionId,
    SessionState, StdoutPayload, ToolCallPayload, ToolResultSubmitPayload,
};

fn result(id: &SessionId, seq: u64) -> RuntimeChannelMessage {
    let payload = ToolResultSubmitPayload::new(CallId::generate(), true);
    RuntimeChannelMessage::new(id.clone(), payload.into()).with_seq(seq)
}

#[tokio::test]
async fn client_messages_reach_the_application_once_each_in_order() {
    let hub = hub(quiet());
    let (mut attachment, mut session) = create(&hub, true).await;
    let id = attachment.session_id.clone();
    let held = attachment
        .upstream
        .deliver(vec![result(&id, 1), result(&id, 2)])
        .await
        .unwrap();
    assert_eq!(held, 2);
    // A retry after a cut repeats seq 2: acknowledged again, not delivered again.
    let held = attachment
        .upstream
        .deliver(vec![result(&id, 2), result(&id, 3)])
        .await
        .unwrap();
    assert_eq!(held, 3);
    let mut acks = Vec::new();
    while let Some(Outgoing::Ack { seq }) =
        tokio::time::timeout(Duration::from_millis(50), attachment.events.next())
            .await
            .ok()
            .flatten()
    {
        acks.push(seq);
    }
    assert_eq!(
        acks.last(),
        Some(&3),
        "an acknowledging client hears the ack"
    );
    // The HTTP messages route: the current token, the same dedupe.
    let mut submit = Submit::new(id.clone(), Some(attachment.token.clone()));
    submit.messages = vec![result(&id, 3), result(&id, 4)];
    assert_eq!(hub.submit(submit).await.unwrap().ack, 4);
    let mut seqs = Vec::new();
    for _ in 0..4 {
        let message = tokio::time::timeout(WAIT, session.messages.recv())
            .await
            .unwrap()
            .unwrap();
        seqs.push(message.seq.unwrap());
    }
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), session.messages.recv())
            .await
            .is_err()
    );
    let wrong = Submit::new(id.clone(), Some("wrong".into()));
    assert_eq!(
        hub.submit(wrong).await.unwrap_err().reason,
        RefusalReason::BadToken
    );
    let missing = Submit::new(id.clone(), None);
    assert_eq!(
        hub.submit(missing).await.unwrap_err().reason,
        RefusalReason::MissingToken
    );
}

#[tokio::test]
async fn submit_checks_the_current_token_only() {
    let hub = hub(quiet());
    let (first, _session) = create(&hub, true).await;
    let id = first.session_id.clone();
    let second = common::resume(&hub, resume_request(&id, 1, Some(&first.token), true)).await;
    let previous = Submit::new(id.clone(), Some(first.token.clone()));
    assert_eq!(
        hub.submit(previous).await.unwrap_err().reason,
        RefusalReason::BadToken
    );
    let current = Submit::new(id.clone(), Some(second.token.clone()));
    assert_eq!(hub.submit(current).await.unwrap().ack, 0);
    // The new token was used: the previous one no longer resumes.
    assert_eq!(
        common::refused(&hub, resume_request(&id, 1, Some(&first.token), true)).await,
        RefusalReason::BadToken
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeats_take_sequence_numbers_like_any_event() {
    let hub = hub(HubConfig::default().with_heartbeat_ms(1000));
    let (mut attachment, session) = create(&hub, false).await;
    assert_eq!(
        session
            .handle
            .publish(StdoutPayload::new("a"))
            .await
            .unwrap(),
        2
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        session
            .handle
            .publish(StdoutPayload::new("b"))
            .await
            .unwrap(),
        4
    );
    assert_eq!(next_seq(&mut attachment).await, Some(1));
    assert_eq!(next_seq(&mut attachment).await, Some(2));
    let Some(Outgoing::Event(heartbeat)) = next(&mut attachment).await else {
        panic!("a heartbeat at seq 3");
    };
    assert_eq!(heartbeat.seq, 3);
    assert!(
        matches!(&heartbeat.payload, EventPayload::Heartbeat(h) if h.ts.as_str().ends_with('Z'))
    );
    assert_eq!(next_seq(&mut attachment).await, Some(4));
    session
        .handle
        .finish(FinalPayload::new(true))
        .await
        .unwrap();
    assert_eq!(next_seq(&mut attachment).await, Some(5));
    assert!(next(&mut attachment).await.is_none());
    // No heartbeat after the final.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let info = hub.info(&session.session_id).await.unwrap();
    assert_eq!(info.state, SessionState::Completed);
}

#[tokio::test]
async fn cancel_state_and_summaries_follow_the_session() {
    let hub = hub(quiet());
    let (attachment, session) = create(&hub, false).await;
    let id = attachment.session_id.clone();
    assert_eq!(hub.info(&id).await.unwrap().state, SessionState::Starting);
    session
        .handle
        .publish(StdoutPayload::new("a"))
        .await
        .unwrap();
    assert_eq!(hub.info(&id).await.unwrap().state, SessionState::Running);
    let call = ToolCallPayload::new(
        CallId::generate(),
        "search",
        RawJson::from_string("{}".into()).unwrap(),
    );
    session.handle.publish(call).await.unwrap();
    let info = hub.info(&id).await.unwrap();
    assert_eq!(
        (info.state, info.tool_call_count),
        (SessionState::WaitingForTool, 1)
    );
    assert_eq!(
        *session.handle.state().borrow(),
        SessionState::WaitingForTool
    );
    assert!(!session.handle.is_cancelled());
    hub.cancel(&id, Some("user".into())).await.unwrap();
    tokio::time::timeout(WAIT, session.handle.cancelled())
        .await
        .unwrap();
    // The session ended itself with its `final`: the application's comes too late.
    assert!(session
        .handle
        .finish(FinalPayload::new(false))
        .await
        .is_err());
    assert_eq!(hub.info(&id).await.unwrap().state, SessionState::Cancelled);
    assert_eq!(hub.list().await.unwrap().len(), 1);
    let unknown = SessionId::generate();
    assert_eq!(
        hub.info(&unknown).await.unwrap_err().reason,
        RefusalReason::UnknownSession
    );
    assert_eq!(
        hub.cancel(&unknown, None).await.unwrap_err().reason,
        RefusalReason::UnknownSession
    );
}

#[tokio::test]
async fn a_cancel_message_cancels_the_session() {
    let hub = hub(quiet());
    let (attachment, session) = create(&hub, false).await;
    let id = attachment.session_id.clone();
    let cancel =
        RuntimeChannelMessage::new(id.clone(), CancelPayload::new(None).into()).with_seq(1);
    attachment.upstream.deliver(vec![cancel]).await.unwrap();
    tokio::time::timeout(WAIT, session.handle.cancelled())
        .await
        .unwrap();
}

/// The events after the ones already taken, to the end of the stream: `(seq, payload)`.
async fn rest(attachment: &mut enclave_transport::Attachment) -> Vec<(u64, EventPayload)> {
    let mut events = Vec::new();
    while let Some(item) = next(attachment).await {
        match item {
            Outgoing::Event(event) => events.push((event.seq, event.payload.clone())),
            Outgoing::Close(reason) => panic!("closed: {reason:?}"),
            _ => {}
        }
    }
    events
}

/// Asserts that `events` are a cancel's end, as the broker sends it: `error`
/// `SESSION_CANCELLED` with `message`, not recoverable, then `final` with `ok: false` and
/// the same error, at seqs `first` and `first + 1`.
fn assert_cancelled_end(events: &[(u64, EventPayload)], first: u64, message: &str) {
    assert_eq!(events.len(), 2, "{events:?}");
    let (EventPayload::Error(error), EventPayload::Final(last)) = (&events[0].1, &events[1].1)
    else {
        panic!("not error then final: {events:?}");
    };
    assert_eq!((events[0].0, events[1].0), (first, first + 1));
    assert_eq!(error.code.as_deref(), Some("SESSION_CANCELLED"));
    assert_eq!(error.message, message);
    assert_eq!(error.recoverable, Some(false));
    assert!(!last.ok);
    let info = last.error.as_ref().expect("the final carries the error");
    assert_eq!(
        (info.code.as_deref(), info.message.as_str()),
        (Some("SESSION_CANCELLED"), message)
    );
    assert!(last.stats.is_some(), "the final carries stats");
}

#[tokio::test]
async fn cancel_ends_the_stream_with_error_and_final_as_the_broker_does() {
    let hub = hub(quiet());
    let (mut attachment, session) = create(&hub, false).await;
    let id = attachment.session_id.clone();
    assert_eq!(next_seq(&mut attachment).await, Some(1));
    session
        .handle
        .publish(StdoutPayload::new("aé"))
        .await
        .unwrap();
    hub.cancel(&id, Some("user pressed stop".into()))
        .await
        .unwrap();
    let end = rest(&mut attachment).await;
    assert_cancelled_end(&end[1..], 3, "user pressed stop");
    // The final's stats count what the session produced: the stdout chunk's UTF-8 bytes.
    let EventPayload::Final(last) = &end[2].1 else {
        panic!("not a final: {end:?}");
    };
    let stats = last.stats.as_ref().expect("stats");
    assert_eq!((stats.stdout_bytes, stats.tool_call_count), (3, 0));
    assert!(session.handle.is_cancelled());
    assert!(session
        .handle
        .publish(StdoutPayload::new("late"))
        .await
        .is_err());
    // A resume (the session is still held) replays the same end.
    let request = resume_request(&id, 3, Some(&attachment.token), false);
    let mut resumed = common::resume(&hub, request).await;
    assert_cancelled_end(&rest(&mut resumed).await, 3, "user pressed stop");
    // Without a reason, the broker's message.
    let (mut other, _session) = create(&hub, false).await;
    assert_eq!(next_seq(&mut other).await, Some(1));
    hub.cancel(&other.session_id.clone(), None).await.unwrap();
    assert_cancelled_end(&rest(&mut other).await, 2, "Session was cancelled");
}

#[tokio::test]
async fn a_cancel_message_ends_the_stream_with_its_reason() {
    let hub = hub(quiet());
    let (mut attachment, session) = create(&hub, true).await;
    let id = attachment.session_id.clone();
    assert_eq!(next_seq(&mut attachment).await, Some(1));
    let cancel =
        RuntimeChannelMessage::new(id.clone(), CancelPayload::new(Some("stop".into())).into())
            .with_seq(1);
    attachment.upstream.deliver(vec![cancel]).await.unwrap();
    assert_cancelled_end(&rest(&mut attachment).await, 2, "stop");
    assert!(session.handle.is_cancelled());
}

#[tokio::test]
async fn a_producer_blocked_on_a_full_retention_is_refused_and_the_cancel_ends_the_stream() {
    let hub = hub(quiet().with_max_buffered_events(4));
    // An acknowledging client that acknowledges nothing: the producer waits (policy wait).
    let (mut attachment, session) = create(&hub, true).await;
    let id = attachment.session_id.clone();
    let producer = {
        let handle = session.handle.clone();
        tokio::spawn(async move {
            let mut published = 0u64;
            while handle.publish(StdoutPayload::new("x")).await.is_ok() {
                published += 1;
            }
            published
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!producer.is_finished(), "the producer waits for room");
    tokio::time::timeout(WAIT, hub.cancel(&id, None))
        .await
        .expect("a cancel does not wait for room")
        .unwrap();
    let published = tokio::time::timeout(WAIT, producer).await.unwrap().unwrap();
    assert_eq!(published, 3, "what fitted, and nothing after the cancel");
    let events = rest(&mut attachment).await;
    assert_eq!(
        events.iter().map(|e| e.0).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    assert_cancelled_end(&events[4..], 5, "Session was cancelled");
}

#[tokio::test]
async fn delete_ends_the_attached_stream_and_forgets_the_session() {
    let hub = hub(quiet());
    let (mut attachment, mut session) = create(&hub, false).await;
    let id = attachment.session_id.clone();
    assert_eq!(next_seq(&mut attachment).await, Some(1));
    assert!(is_idle(&mut attachment).await);
    // The stream is read while the delete waits for it to end.
    let reader = tokio::spawn(async move { rest(&mut attachment).await });
    hub.delete(&id).await.unwrap();
    let events = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
    assert_cancelled_end(&events, 2, "Terminated by session manager");
    assert!(tokio::time::timeout(WAIT, session.messages.recv())
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        hub.info(&id).await.unwrap_err().reason,
        RefusalReason::UnknownSession
    );
    assert_eq!(
        hub.delete(&id).await.unwrap_err().reason,
        RefusalReason::UnknownSession
    );
    assert!(session
        .handle
        .publish(StdoutPayload::new("x"))
        .await
        .is_err());
}

#[tokio::test]
async fn shutdown_closes_every_attachment_and_refuses_new_sessions() {
    let hub = hub(quiet());
    let (mut attachment, _session) = create(&hub, false).await;
    assert_eq!(next_seq(&mut attachment).await, Some(1));
    hub.shutdown();
    assert!(matches!(
        next(&mut attachment).await,
        Some(Outgoing::Close(CloseReason::ShuttingDown))
    ));
    assert!(next(&mut attachment).await.is_none());
    let refusal = hub
        .create(enclave_transport::CreateSession::new(SessionId::generate()))
        .await
        .unwrap_err();
    assert_eq!(refusal.reason, RefusalReason::ShuttingDown);
    assert!(hub.accept().await.is_none());
}

#[tokio::test]
async fn the_session_limit_refuses_with_unavailable() {
    let hub = hub(quiet().with_max_sessions(1));
    let (_attachment, _session) = create(&hub, false).await;
    let refusal = hub
        .create(enclave_transport::CreateSession::new(SessionId::generate()))
        .await
        .unwrap_err();
    assert_eq!(
        (refusal.reason, refusal.reason.http_status()),
        (RefusalReason::Unavailable, 503)
    );
}

#[tokio::test]
async fn a_finished_session_does_not_hold_a_live_place() {
    let hub = hub(quiet().with_max_sessions(1));
    let (_attachment, session) = create(&hub, false).await;
    session
        .handle
        .finish(enclave_types::FinalPayload::new(true))
        .await
        .unwrap();
    // The finished session waits for its grace period (a resume still gets its tail), but a
    // new session gets the place.
    let (_second, second) = create(&hub, false).await;
    let refusal = hub
        .create(enclave_transport::CreateSession::new(SessionId::generate()))
        .await
        .unwrap_err();
    assert_eq!(
        refusal.reason,
        RefusalReason::Unavailable,
        "one live session"
    );
    second
        .handle
        .finish(enclave_types::FinalPayload::new(true))
        .await
        .unwrap();
    // Held sessions, finished ones included, stay bounded (twice the live limit).
    let refusal = hub
        .create(enclave_transport::CreateSession::new(SessionId::generate()))
        .await
        .unwrap_err();
    assert_eq!(
        refusal.reason,
        RefusalReason::Unavailable,
        "two held sessions"
    );
}

#[tokio::test]
async fn live_sessions_per_peer_address_are_limited_and_finished_ones_do_not_count() {
    let hub = hub(quiet().with_max_sessions_per_peer(2));
    let from = |ip: [u8; 4]| {
        let mut request = CreateSession::new(SessionId::generate());
        request.peer = Some(std::net::IpAddr::from(ip));
        request
    };
    let (_first, first) = common::create_with(&hub, from([10, 0, 0, 1])).await;
    let (_second, _second_session) = common::create_with(&hub, from([10, 0, 0, 1])).await;
    let refusal = hub.create(from([10, 0, 0, 1])).await.unwrap_err();
    assert_eq!(
        (refusal.reason, refusal.reason.http_status()),
        (RefusalReason::Unavailable, 503),
        "{refusal}"
    );
    // Another address, and a create whose address the transport does not know, are not
    // held back by it.
    let (_other, _other_session) = common::create_with(&hub, from([10, 0, 0, 2])).await;
    let (_unknown, _unknown_session) =
        common::create_with(&hub, CreateSession::new(SessionId::generate())).await;
    // A finished session gives its address's place back.
    first.handle.finish(FinalPayload::new(true)).await.unwrap();
    let (_third, _third_session) = common::create_with(&hub, from([10, 0, 0, 1])).await;
    assert_eq!(
        hub.create(from([10, 0, 0, 1])).await.unwrap_err().reason,
        RefusalReason::Unavailable
    );
    // `0` turns the limit off.
    let hub = common::hub(quiet().with_max_sessions_per_peer(0));
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(common::create_with(&hub, from([10, 0, 0, 1])).await);
    }
}

#[tokio::test]
async fn session_creations_per_second_are_limited() {
    let hub = hub(quiet().with_max_creations_per_sec(3));
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(create(&hub, false).await);
    }
    let refusal = hub
        .create(enclave_transport::CreateSession::new(SessionId::generate()))
        .await
        .unwrap_err();
    assert_eq!(
        (refusal.reason, refusal.reason.http_status()),
        (RefusalReason::Unavailable, 503)
    );
    // A third of a second gives one creation back.
    tokio::time::sleep(Duration::from_millis(400)).await;
    held.push(create(&hub, false).await);
}

#[tokio::test]
async fn an_encrypted_session_refuses_plaintext_messages_on_the_side_route() {
    let hub = hub(quiet());
    let mut request = CreateSession::new(SessionId::generate());
    request.encrypted = true;
    let (first, _session) = common::create_with(&hub, request).await;
    let id = first.session_id.clone();
    let message =
        RuntimeChannelMessage::new(id.clone(), CancelPayload::new(None).into()).with_seq(1);
    let mut plain = Submit::new(id.clone(), Some(first.token.clone()));
    plain.messages.push(message.clone());
    assert_eq!(
        hub.submit(plain).await.unwrap_err().reason,
        RefusalReason::EncryptionRequired
    );
    // Sealed (opened by the transport under the connection's key), it is taken; a bare
    // acknowledgement needs no seal.
    let mut sealed = Submit::new(id.clone(), Some(first.token.clone()));
    sealed.messages.push(message);
    sealed.encrypted = true;
    assert_eq!(hub.submit(sealed).await.unwrap().ack, 1);
    let ack_only = Submit::new(id, Some(first.token.clone()));
    assert_eq!(hub.submit(ack_only).await.unwrap().ack, 1);
}

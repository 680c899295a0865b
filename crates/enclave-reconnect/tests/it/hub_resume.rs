//! Sessions, resumes and every refusal of the resume path.

use crate::common;

use std::time::Duration;

use common::{create, create_with, hub, next, next_seq, quiet, refused, resume, resume_request};
use enclave_reconnect::{HubConfig, OverflowPolicy};
use enclave_transport::{CloseReason, CreateSession, Outgoing, RefusalReason, SessionService};
use enclave_types::{EventPayload, FinalPayload, SessionId, StdoutPayload};

#[tokio::test]
async fn a_new_session_streams_from_seq_1_in_order_then_ends() {
    let hub = hub(quiet());
    let (mut attachment, session) = create(&hub, false).await;
    assert!(!attachment.resumed);
    assert_eq!(attachment.epoch, hub.epoch());
    assert!(attachment.token.len() >= 22, "at least 128 bits of token");
    for n in 0..3 {
        let seq = session
            .handle
            .publish(StdoutPayload::new(format!("{n}\n")))
            .await
            .unwrap();
        assert_eq!(seq, n + 2);
    }
    assert_eq!(
        session
            .handle
            .finish(FinalPayload::new(true))
            .await
            .unwrap(),
        5
    );
    let Some(Outgoing::Event(init)) = next(&mut attachment).await else {
        panic!("session_init first");
    };
    assert_eq!(init.seq, 1);
    let EventPayload::SessionInit(payload) = &init.payload else {
        panic!("seq 1 is session_init, got {:?}", init.payload);
    };
    assert_eq!(
        payload.cancel_url,
        format!("/sessions/{}/cancel", session.session_id)
    );
    assert!(payload.expires_at.as_str().ends_with('Z'));
    assert!(!payload.encryption.enabled);
    for expected in 2..=5 {
        assert_eq!(next_seq(&mut attachment).await, Some(expected));
    }
    assert!(
        next(&mut attachment).await.is_none(),
        "the stream ends after final"
    );
    assert!(session
        .handle
        .publish(StdoutPayload::new("late"))
        .await
        .is_err());
}

#[tokio::test]
async fn a_duplicate_create_is_refused_session_exists() {
    let hub = hub(quiet());
    let (attachment, _session) = create(&hub, false).await;
    let again = hub
        .create(CreateSession::new(attachment.session_id.clone()))
        .await;
    assert_eq!(again.unwrap_err().reason, RefusalReason::SessionExists);
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_refused_whether_or_not_the_session_exists() {
    let hub = hub(quiet());
    let (attachment, _session) = create(&hub, false).await;
    let id = attachment.session_id.clone();
    let unknown = SessionId::generate();
    assert_eq!(
        refused(&hub, resume_request(&id, 1, None, false)).await,
        RefusalReason::MissingToken
    );
    assert_eq!(
        refused(&hub, resume_request(&unknown, 1, None, false)).await,
        RefusalReason::MissingToken
    );
    assert_eq!(
        refused(&hub, resume_request(&id, 1, Some("nope"), false)).await,
        RefusalReason::BadToken
    );
    assert_eq!(
        refused(
            &hub,
            resume_request(&unknown, 1, Some(&attachment.token), false)
        )
        .await,
        RefusalReason::BadToken
    );
}

#[tokio::test]
async fn tokenless_resume_when_allowed_but_a_wrong_token_is_still_refused() {
    let hub = hub(quiet().with_allow_tokenless_resume(true));
    let (attachment, _session) = create(&hub, false).await;
    let id = attachment.session_id.clone();
    let mut resumed = resume(&hub, resume_request(&id, 1, None, false)).await;
    assert!(resumed.resumed);
    assert_eq!(next_seq(&mut resumed).await, Some(1));
    assert_eq!(
        refused(&hub, resume_request(&SessionId::generate(), 1, None, false)).await,
        RefusalReason::UnknownSession
    );
    assert_eq!(
        refused(&hub, resume_request(&id, 1, Some("wrong"), false)).await,
        RefusalReason::BadToken
    );
}

#[tokio::test]
async fn tokens_rotate_and_the_previous_one_lives_until_the_new_one_is_used() {
    let hub = hub(quiet());
    let (first, _session) = create(&hub, true).await;
    let id = first.session_id.clone();
    let t0 = first.token.clone();
    let a1 = resume(&hub, resume_request(&id, 1, Some(&t0), true)).await;
    let t1 = a1.token.clone();
    assert_ne!(t0, t1);
    // The reply carrying t1 was lost: t0 still works, since t1 was never used, and it gets
    // t1 again (issue 16: a replay used to mint a new token that revoked t1), as often as
    // it is replayed.
    for _ in 0..3 {
        let again = resume(&hub, resume_request(&id, 1, Some(&t0), true)).await;
        assert_eq!(
            again.token, t1,
            "a replay of the previous token gets its successor"
        );
    }
    // Using t1 retires t0 for good.
    let a2 = resume(&hub, resume_request(&id, 1, Some(&t1), true)).await;
    let t2 = a2.token.clone();
    assert!(t2 != t1 && t2 != t0);
    assert_eq!(
        refused(&hub, resume_request(&id, 1, Some(&t0), true)).await,
        RefusalReason::BadToken
    );
    // t1 is now the previous token: it still works (and gets t2), never revoking t2.
    let again = resume(&hub, resume_request(&id, 1, Some(&t1), true)).await;
    assert_eq!(again.token, t2);
    let t3 = resume(&hub, resume_request(&id, 1, Some(&t2), true))
        .await
        .token;
    let _a4 = resume(&hub, resume_request(&id, 1, Some(&t3), true)).await;
    // t2 was used and t3 too: t2 is spent.
    assert_eq!(
        refused(&hub, resume_request(&id, 1, Some(&t2), true)).await,
        RefusalReason::BadToken
    );
}

/// Issue 16: concurrent resumes with one token all get the same successor (none mints a
/// token that revokes another's), the newest connection supersedes the others, and the
/// successor then works while the spent token does not.
#[tokio::test]
async fn concurrent_resumes_with_one_token_get_one_successor() {
    let hub = hub(quiet());
    let (first, _session) = create(&hub, true).await;
    let id = first.session_id.clone();
    let t0 = first.token.clone();
    let resumes = (0..5).map(|_| hub.resume(resume_request(&id, 1, Some(&t0), true)));
    let results = tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(resumes))
        .await
        .expect("resumes answered in time");
    let tokens: Vec<String> = results
        .into_iter()
        .map(|result| {
            result
                .expect("every resume with the current token succeeds")
                .token
        })
        .collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    assert_ne!(tokens[0], t0);
    let _next = resume(&hub, resume_request(&id, 1, Some(&tokens[0]), true)).await;
    assert_eq!(
        refused(&hub, resume_request(&id, 1, Some(&t0), true)).await,
        RefusalReason::BadToken
    );
}

/// Issue 16: reading, cancelling and deleting a session take the token a resume would
/// (current, or previous while the current one is unused), refuse before saying whether
/// the session exists, and never consume or rotate the token.
#[tokio::test]
async fn access_checks_take_a_resumes_tokens_and_consume_none() {
    let hub = hub(quiet());
    let (first, _session) = create(&hub, true).await;
    let id = first.session_id.clone();
    let t0 = first.token.clone();
    let unknown = SessionId::generate();
    for target in [&id, &unknown] {
        let missing = hub.check_access(target, None).await.unwrap_err();
        assert_eq!(missing.reason, RefusalReason::MissingToken);
        let wrong = hub.check_access(target, Some("wrong")).await.unwrap_err();
        assert_eq!(wrong.reason, RefusalReason::BadToken);
    }
    let unknown_with_token = hub.check_access(&unknown, Some(&t0)).await.unwrap_err();
    assert_eq!(unknown_with_token.reason, RefusalReason::BadToken);
    for _ in 0..3 {
        hub.check_access(&id, Some(&t0))
            .await
            .expect("the current token");
    }
    let t1 = resume(&hub, resume_request(&id, 1, Some(&t0), true))
        .await
        .token;
    hub.check_access(&id, Some(&t1))
        .await
        .expect("the current token");
    hub.check_access(&id, Some(&t0))
        .await
        .expect("the previous token, while the current one is unused");
    // Checking t1 did not count as using it: t0 still resumes, and gets t1.
    let again = resume(&hub, resume_request(&id, 1, Some(&t0), true)).await;
    assert_eq!(again.token, t1);
    let _t2 = resume(&hub, resume_request(&id, 1, Some(&t1), true)).await;
    let spent = hub.check_access(&id, Some(&t0)).await.unwrap_err();
    assert_eq!(spent.reason, RefusalReason::BadToken);

    // Tokenless mode trusts whoever knows the id, as its resumes do; a wrong token is
    // still refused.
    let hub = common::hub(quiet().with_allow_tokenless_resume(true));
    let (first, _session) = create(&hub, true).await;
    hub.check_access(&first.session_id, None)
        .await
        .expect("tokenless");
    let wrong = hub
        .check_access(&first.session_id, Some("wrong"))
        .await
        .unwrap_err();
    assert_eq!(wrong.reason, RefusalReason::BadToken);
}

#[tokio::test]
async fn an_epoch_from_another_server_state_is_refused() {
    let hub = hub(quiet().with_epoch(7));
    let (attachment, _session) = create(&hub, false).await;
    assert_eq!(attachment.epoch, 7);
    let mut request = resume_request(&attachment.session_id, 1, Some(&attachment.token), false);
    request.epoch = Some(8);
    assert_eq!(
        refused(&hub, request.clone()).await,
        RefusalReason::EpochMismatch
    );
    request.epoch = Some(7);
    resume(&hub, request).await;
}

#[tokio::test(start_paused = true)]
async fn a_session_expires_a_grace_period_after_its_last_connection() {
    let hub = hub(quiet().with_session_grace(Duration::from_secs(2)));
    let (attachment, session) = create(&hub, false).await;
    let id = attachment.session_id.clone();
    let token = attachment.token.clone();
    drop(attachment);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Within the grace period the session is still there.
    let again = resume(&hub, resume_request(&id, 1, Some(&token), false)).await;
    let token = again.token.clone();
    drop(again);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        refused(&hub, resume_request(&id, 1, Some(&token), false)).await,
        RefusalReason::Expired
    );
    assert!(session
        .handle
        .publish(StdoutPayload::new("x"))
        .await
        .is_err());
    tokio::time::timeout(Duration::from_secs(1), session.handle.cancelled())
        .await
        .expect("an expired session is cancelled for the application");
}

#[tokio::test]
async fn an_encrypted_session_refuses_a_plaintext_resume() {
    let hub = hub(quiet());
    let mut request = CreateSession::new(SessionId::generate());
    request.encrypted = true;
    let (attachment, session) = create_with(&hub, request).await;
    assert!(attachment.encrypted && session.encrypted);
    let mut resume_req = resume_request(&attachment.session_id, 1, Some(&attachment.token), false);
    assert_eq!(
        refused(&hub, resume_req.clone()).await,
        RefusalReason::EncryptionRequired
    );
    resume_req.encrypted = true;
    let resumed = resume(&hub, resume_req).await;
    assert!(resumed.encrypted);
}

#[tokio::test]
async fn drop_oldest_makes_an_old_position_too_far_behind() {
    let hub = hub(quiet()
        .with_max_buffered_events(4)
        .with_overflow(OverflowPolicy::DropOldest));
    let (attachment, session) = create(&hub, true).await;
    for n in 0..10 {
        session
            .handle
            .publish(StdoutPayload::new(format!("{n}")))
            .await
            .unwrap();
    }
    // Seqs 1..=11 were published; 8..=11 remain.
    let id = attachment.session_id.clone();
    let token = attachment.token.clone();
    assert_eq!(
        refused(&hub, resume_request(&id, 2, Some(&token), true)).await,
        RefusalReason::TooFarBehind
    );
    assert_eq!(
        refused(&hub, resume_request(&id, 7, Some(&token), true)).await,
        RefusalReason::TooFarBehind
    );
    let mut resumed = resume(&hub, resume_request(&id, 8, Some(&token), true)).await;
    for expected in 8..=11 {
        assert_eq!(next_seq(&mut resumed).await, Some(expected));
    }
    assert_eq!(
        next(&mut resumed)
            .await
            .map(|o| matches!(o, Outgoing::ReplayComplete { last_seq: 11 })),
        Some(true)
    );
}

#[tokio::test]
async fn a_resume_replays_then_marks_the_end_of_the_replay_for_acknowledging_clients() {
    let hub = hub(quiet());
    let (mut first, session) = create(&hub, true).await;
    session
        .handle
        .publish(StdoutPayload::new("a"))
        .await
        .unwrap();
    session
        .handle
        .publish(StdoutPayload::new("b"))
        .await
        .unwrap();
    assert_eq!(next_seq(&mut first).await, Some(1));
    let id = first.session_id.clone();
    let mut second = resume(&hub, resume_request(&id, 2, Some(&first.token), true)).await;
    assert_eq!(next_seq(&mut second).await, Some(2));
    assert_eq!(next_seq(&mut second).await, Some(3));
    assert!(matches!(
        next(&mut second).await,
        Some(Outgoing::ReplayComplete { last_seq: 3 })
    ));
    session
        .handle
        .publish(StdoutPayload::new("c"))
        .await
        .unwrap();
    assert_eq!(next_seq(&mut second).await, Some(4));
    // A client without the resume feature gets events only.
    let mut third = resume(&hub, resume_request(&id, 4, Some(&second.token), false)).await;
    assert_eq!(
        next(&mut third)
            .await
            .map(|o| matches!(o, Outgoing::Event(e) if e.seq == 4)),
        Some(true)
    );
    session
        .handle
        .finish(FinalPayload::new(true))
        .await
        .unwrap();
    assert_eq!(next_seq(&mut third).await, Some(5));
    assert!(next(&mut third).await.is_none());
}

#[tokio::test]
async fn a_newer_connection_supersedes_the_older_and_nothing_is_sent_twice() {
    let hub = hub(quiet());
    let (mut old, session) = create(&hub, false).await;
    session
        .handle
        .publish(StdoutPayload::new("a"))
        .await
        .unwrap();
    assert_eq!(next_seq(&mut old).await, Some(1));
    assert_eq!(next_seq(&mut old).await, Some(2));
    let id = old.session_id.clone();
    let mut new = resume(&hub, resume_request(&id, 3, Some(&old.token), false)).await;
    session
        .handle
        .publish(StdoutPayload::new("b"))
        .await
        .unwrap();
    assert!(matches!(
        next(&mut old).await,
        Some(Outgoing::Close(CloseReason::Superseded))
    ));
    assert!(next(&mut old).await.is_none());
    assert_eq!(next_seq(&mut new).await, Some(3));
    // The next connection resumes right after what this one delivered.
    let mut newer = resume(&hub, resume_request(&id, 4, Some(&new.token), false)).await;
    session
        .handle
        .finish(FinalPayload::new(true))
        .await
        .unwrap();
    assert!(matches!(
        next(&mut new).await,
        Some(Outgoing::Close(CloseReason::Superseded))
    ));
    assert_eq!(next_seq(&mut newer).await, Some(4));
    assert!(next(&mut newer).await.is_none());
}

#[tokio::test]
async fn a_resume_past_the_last_seq_is_an_invalid_request() {
    let hub = hub(HubConfig::default().with_heartbeat_ms(0));
    let (attachment, _session) = create(&hub, false).await;
    let request = resume_request(&attachment.session_id, 5, Some(&attachment.token), false);
    assert_eq!(refused(&hub, request).await, RefusalReason::InvalidRequest);
}

#[tokio::test]
async fn a_session_past_its_expiry_closes_its_connection_as_expired() {
    let hub = hub(quiet().with_session_grace(Duration::from_millis(200)));
    let mut request = CreateSession::new(SessionId::generate());
    request.config.max_execution_ms = Some(100);
    let (mut attachment, _session) = create_with(&hub, request).await;
    assert_eq!(next_seq(&mut attachment).await, Some(1));
    match next(&mut attachment).await {
        Some(Outgoing::Close(CloseReason::Refused(refusal))) => {
            assert_eq!(refusal.reason, RefusalReason::Expired);
        }
        other => panic!("expected an expired close, got {other:?}"),
    }
    assert!(next(&mut attachment).await.is_none());
    let request = resume_request(&attachment.session_id, 2, Some(&attachment.token), false);
    assert_eq!(refused(&hub, request).await, RefusalReason::Expired);
}

#[tokio::test]
async fn a_restarted_server_answers_epoch_mismatch_not_bad_token() {
    let before = hub(quiet().with_epoch(7));
    let (attachment, _session) = create(&before, false).await;
    before.shutdown();
    // The restart lost every session: a new hub, a new epoch, an empty store.
    let after = hub(quiet().with_epoch(8));
    let mut request = resume_request(&attachment.session_id, 2, Some(&attachment.token), false);
    request.epoch = Some(7);
    assert_eq!(
        refused(&after, request.clone()).await,
        RefusalReason::EpochMismatch
    );
    // Without an epoch the token is checked first, as for any resume, and nothing says
    // whether the session exists.
    request.epoch = None;
    assert_eq!(refused(&after, request).await, RefusalReason::BadToken);
}

//! Every refusal of a resume, through the real server (hub + transport) and the real
//! clients: bad, missing and reused tokens, an expired session, an epoch from before a
//! restart, a position that left retention, a server that is gone, and an encryption
//! downgrade. Each asserts the reason and status the contract gives, and that the client
//! stops (terminal, surfaced, never a silent gap).

use crate::live;

use std::time::Duration;

use enclave_reconnect::{
    AcceptedSession as AppSession, ConnectionState, HubConfig, OverflowPolicy, ReconnectingStream,
    ResumeAt, StreamConfig, StreamError,
};
use enclave_transport::client::{connect, ClientConfig, NewSession, Open};
use enclave_transport::Error as TransportError;
use enclave_transport::RefusalReason;
use enclave_types::{EncryptionMode, EventPayload, SessionId, StdoutPayload};
use live::{fast_client, Live};

const WAIT: Duration = Duration::from_secs(10);

/// What a first connection left behind for a resume.
struct Opened {
    id: SessionId,
    token: String,
    epoch: u64,
    app: AppSession,
}

/// Opens a session on `url`, reads its `session_init` and first `events` events (published
/// by the application here), and closes the stream deliberately.
async fn open_and_close(live: &Live, url: String, events: u64) -> Opened {
    let mut stream = ReconnectingStream::new(url, NewSession::new(), fast_client());
    let first = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("session_init in time")
        .expect("an event")
        .expect("no error");
    assert!(matches!(first.payload, EventPayload::SessionInit(_)));
    let app = tokio::time::timeout(WAIT, live.hub.accept())
        .await
        .expect("accept in time")
        .expect("a session");
    for i in 0..events {
        app.handle
            .publish(StdoutPayload::new(format!("event {i}\n")))
            .await
            .expect("publish");
        let event = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("an event in time")
            .expect("an event")
            .expect("no error");
        assert_eq!(event.seq, i + 2);
    }
    let opened = Opened {
        id: stream.session_id().expect("a session").clone(),
        token: stream.token().expect("a token").to_owned(),
        epoch: stream.epoch().expect("an epoch"),
        app,
    };
    stream.close().await;
    assert_eq!(stream.state(), ConnectionState::Closed);
    opened
}

/// The stream's next item is the refusal `reason` with `status`, and then it has stopped.
/// Over WebSocket the client reads the refusal from the JSON message that precedes the close
/// and reports the HTTP status of its reason, so `status` is the HTTP one on both carriers.
async fn assert_refused(stream: &mut ReconnectingStream, reason: RefusalReason, status: u16) {
    let item = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("an answer in time");
    match item {
        Some(Err(StreamError::Refused {
            refusal,
            status: got,
            ..
        })) => {
            assert_eq!(refusal.reason, reason, "{refusal}");
            assert_eq!(got, status, "{refusal}");
        }
        other => panic!("expected the refusal {reason}, got {other:?}"),
    }
    assert_eq!(stream.state(), ConnectionState::Failed);
    let after = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("an answer in time");
    assert!(after.is_none(), "the stream stopped, got {after:?}");
}

fn resume(url: String, opened: &Opened, from: u64, token: Option<&str>) -> ReconnectingStream {
    let position = ResumeAt::new(opened.id.clone(), from)
        .with_epoch(Some(opened.epoch))
        .with_token(token.map(str::to_owned));
    ReconnectingStream::resume(url, position, fast_client())
}

#[tokio::test]
async fn a_wrong_token_is_refused_403_over_http_and_websocket() {
    let live = Live::start(HubConfig::default().with_heartbeat_ms(0)).await;
    let opened = open_and_close(&live, live.http_url(), 1).await;
    let wrong = format!("{}x", opened.token);
    let mut stream = resume(live.http_url(), &opened, 3, Some(&wrong));
    assert_refused(&mut stream, RefusalReason::BadToken, 403).await;
    let mut stream = resume(live.ws_url(), &opened, 3, Some(&wrong));
    assert_refused(&mut stream, RefusalReason::BadToken, 403).await;
    // A session that does not exist gets the same answer: the token is checked first.
    let unknown = Opened {
        id: SessionId::generate(),
        ..opened
    };
    let mut stream = resume(live.http_url(), &unknown, 1, Some(&wrong));
    assert_refused(&mut stream, RefusalReason::BadToken, 403).await;
    live.stop().await;
}

#[tokio::test]
async fn a_missing_token_is_refused_401() {
    let live = Live::start(HubConfig::default().with_heartbeat_ms(0)).await;
    let opened = open_and_close(&live, live.ws_url(), 1).await;
    let mut stream = resume(live.http_url(), &opened, 3, None);
    assert_refused(&mut stream, RefusalReason::MissingToken, 401).await;
    let mut stream = resume(live.ws_url(), &opened, 3, None);
    assert_refused(&mut stream, RefusalReason::MissingToken, 401).await;
    live.stop().await;
}

#[tokio::test]
async fn a_token_is_refused_once_the_one_issued_after_it_was_used() {
    let live = Live::start(HubConfig::default().with_heartbeat_ms(0)).await;
    let opened = open_and_close(&live, live.ws_url(), 1).await;
    let first = opened.token.clone();
    for seq in 3..=4 {
        let published = opened
            .app
            .handle
            .publish(StdoutPayload::new("more\n"))
            .await
            .expect("publish");
        assert_eq!(published, seq);
    }

    // Resume with the first token: the answer carries a second one.
    let mut second_stream = resume(live.ws_url(), &opened, 3, Some(&first));
    let event = second_stream
        .next()
        .await
        .expect("an event")
        .expect("resumed");
    assert_eq!(event.seq, 3);
    let second = second_stream.token().expect("a rotated token").to_owned();
    assert_ne!(second, first);
    second_stream.close().await;

    // Use the second token: from now on the first one is spent.
    let mut third_stream = resume(live.ws_url(), &opened, 4, Some(&second));
    let event = third_stream
        .next()
        .await
        .expect("an event")
        .expect("resumed");
    assert_eq!(event.seq, 4);
    third_stream.close().await;

    let mut reused = resume(live.http_url(), &opened, 5, Some(&first));
    assert_refused(&mut reused, RefusalReason::BadToken, 403).await;
    live.stop().await;
}

#[tokio::test]
async fn a_session_past_its_grace_period_is_refused_410() {
    let grace = Duration::from_secs(1);
    let live = Live::start(
        HubConfig::default()
            .with_heartbeat_ms(0)
            .with_session_grace(grace),
    )
    .await;
    // WebSocket: the close handshake detaches the session at once, so the grace period
    // starts now.
    let opened = open_and_close(&live, live.ws_url(), 1).await;
    // Expired after the grace period, purged (unknown) a grace period later: resume between.
    tokio::time::sleep(grace + grace / 3).await;
    let mut stream = resume(live.http_url(), &opened, 3, Some(&opened.token));
    assert_refused(&mut stream, RefusalReason::Expired, 410).await;
    live.stop().await;
}

#[tokio::test]
async fn a_server_restart_is_an_epoch_mismatch_surfaced_as_terminal() {
    let before = Live::start(HubConfig::default().with_heartbeat_ms(0)).await;
    let addr = before.addr.to_string();
    let mut stream = ReconnectingStream::new(before.ws_url(), NewSession::new(), fast_client());
    let init = stream.next().await.expect("an event").expect("no error");
    assert_eq!(init.seq, 1);
    let app = before.hub.accept().await.expect("a session");
    app.handle
        .publish(StdoutPayload::new("before the restart\n"))
        .await
        .expect("publish");
    assert_eq!(
        stream
            .next()
            .await
            .expect("an event")
            .expect("no error")
            .seq,
        2
    );
    let old_epoch = stream.epoch().expect("an epoch");

    // The server restarts on the same address and has lost every session.
    before.stop().await;
    let after = Live::start_with(
        HubConfig::default().with_heartbeat_ms(0),
        EncryptionMode::Required,
        &addr,
    )
    .await;
    assert_ne!(after.hub.epoch(), old_epoch);
    // The client noticed the shutdown (retryable), retries, and resumes with its old epoch.
    assert_refused(&mut stream, RefusalReason::EpochMismatch, 409).await;
    assert_eq!(
        stream.last_delivered(),
        Some(2),
        "nothing after seq 2 was invented"
    );
    after.stop().await;
}

#[tokio::test]
async fn a_position_that_left_retention_is_too_far_behind_409() {
    let live = Live::start(
        HubConfig::default()
            .with_heartbeat_ms(0)
            .with_max_buffered_events(4)
            .with_overflow(OverflowPolicy::DropOldest),
    )
    .await;
    let opened = open_and_close(&live, live.http_url(), 1).await;
    // Under drop_oldest the producer never waits; seqs 3.. leave retention.
    for i in 0..20 {
        tokio::time::timeout(
            WAIT,
            opened
                .app
                .handle
                .publish(StdoutPayload::new(format!("more {i}\n"))),
        )
        .await
        .expect("drop_oldest never waits")
        .expect("publish");
    }
    let mut stream = resume(live.http_url(), &opened, 3, Some(&opened.token));
    assert_refused(&mut stream, RefusalReason::TooFarBehind, 409).await;
    let mut stream = resume(live.ws_url(), &opened, 3, Some(&opened.token));
    assert_refused(&mut stream, RefusalReason::TooFarBehind, 409).await;
    live.stop().await;
}

#[tokio::test]
async fn a_server_that_is_gone_exhausts_the_attempts() {
    let live = Live::start(HubConfig::default().with_heartbeat_ms(0)).await;
    let config: StreamConfig = fast_client().with_policy(
        enclave_reconnect::ReconnectPolicy::new()
            .with_max_attempts(3)
            .with_initial_delay(Duration::from_millis(10))
            .with_max_delay(Duration::from_millis(40)),
    );
    let mut stream = ReconnectingStream::new(live.http_url(), NewSession::new(), config);
    assert_eq!(
        stream
            .next()
            .await
            .expect("an event")
            .expect("no error")
            .seq,
        1
    );
    let _app = live.hub.accept().await.expect("a session");
    live.stop().await;
    let item = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("gives up in time");
    match item {
        Some(Err(StreamError::OutOfAttempts { attempts, .. })) => assert_eq!(attempts, 3),
        other => panic!("expected OutOfAttempts, got {other:?}"),
    }
    assert_eq!(stream.state(), ConnectionState::Failed);
    assert!(stream.next().await.is_none(), "the stream stopped");
}

#[tokio::test]
async fn resuming_an_encrypted_session_without_a_client_hello_is_refused_400() {
    // The server lets plaintext sessions exist; this one was created encrypted, and stays so.
    let live = Live::start_with(
        HubConfig::default().with_heartbeat_ms(0),
        EncryptionMode::Optional,
        "127.0.0.1:0",
    )
    .await;
    let opened = open_and_close(&live, live.http_url(), 1).await;
    let plaintext = ClientConfig::new().with_encryption(EncryptionMode::Disabled);
    for (url, status) in [(live.http_url(), 400), (live.ws_url(), 400)] {
        let open = Open::Resume(
            ResumeAt::new(opened.id.clone(), 3)
                .with_token(Some(opened.token.clone()))
                .with_epoch(Some(opened.epoch)),
        );
        match connect(&url, open, &plaintext).await {
            Err(TransportError::Refused {
                refusal,
                status: got,
            }) => {
                assert_eq!(
                    refusal.reason,
                    RefusalReason::EncryptionRequired,
                    "{refusal}"
                );
                assert_eq!(got, status);
            }
            other => panic!("expected ENCRYPTION_REQUIRED on {url}, got {other:?}"),
        }
    }
    // The same through the reconnecting client: terminal, not retried.
    let position = ResumeAt::new(opened.id.clone(), 3)
        .with_token(Some(opened.token.clone()))
        .with_epoch(Some(opened.epoch));
    let mut stream = ReconnectingStream::resume(
        live.http_url(),
        position,
        fast_client().with_client(plaintext),
    );
    assert_refused(&mut stream, RefusalReason::EncryptionRequired, 400).await;
    // The refused attempts spent nothing: the real token still resumes, encrypted.
    opened
        .app
        .handle
        .publish(StdoutPayload::new("after the refusals\n"))
        .await
        .expect("publish");
    let mut stream = resume(live.http_url(), &opened, 3, Some(&opened.token));
    let event = stream.next().await.expect("an event").expect("resumed");
    assert_eq!(event.seq, 3);
    assert!(stream.encrypted());
    stream.close().await;
    live.stop().await;
}

/// `METHOD path` on the live server with an empty body and `headers`, by hand over a socket:
/// the status code.
async fn status_of(live: &Live, method: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    enclave_testkit::http::client::status(live.addr, method, path, headers).await
}

/// Issue 16, through the real server: cancelling, reading and deleting a session need its
/// token (which they leave usable), and the TypeScript-compatible mode still cancels by id.
#[tokio::test]
async fn the_session_routes_need_the_token_unless_tokenless_resume_is_allowed() {
    let live = Live::start(HubConfig::default().with_heartbeat_ms(0)).await;
    let opened = open_and_close(&live, live.http_url(), 1).await;
    let id = &opened.id;
    let cancel = format!("/sessions/{id}/cancel");
    let info = format!("/sessions/{id}");
    assert_eq!(status_of(&live, "POST", &cancel, &[]).await, 401);
    let wrong = [("X-Enclave-Resume-Token", "wrong")];
    assert_eq!(status_of(&live, "POST", &cancel, &wrong).await, 403);
    assert_eq!(status_of(&live, "DELETE", &info, &wrong).await, 403);
    assert_eq!(status_of(&live, "GET", "/sessions", &[]).await, 404);
    assert!(!opened.app.handle.is_cancelled());
    let token = [("X-Enclave-Resume-Token", opened.token.as_str())];
    assert_eq!(status_of(&live, "GET", &info, &token).await, 200);
    // The token still resumes after being checked.
    let mut stream = resume(live.http_url(), &opened, 2, Some(&opened.token));
    let event = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("an event in time")
        .expect("an event")
        .expect("the checked token still resumes");
    assert_eq!(event.seq, 2);
    // That resume rotated the token: the new one cancels (the old one may be spent already,
    // once the client used the new one).
    let current = stream.token().expect("a token").to_owned();
    stream.close().await;
    let token = [("X-Enclave-Resume-Token", current.as_str())];
    assert_eq!(status_of(&live, "POST", &cancel, &token).await, 200);
    tokio::time::timeout(WAIT, opened.app.handle.cancelled())
        .await
        .expect("the cancel reaches the application");
    live.stop().await;

    let live = Live::start(
        HubConfig::default()
            .with_heartbeat_ms(0)
            .with_allow_tokenless_resume(true),
    )
    .await;
    let opened = open_and_close(&live, live.http_url(), 1).await;
    let cancel = format!("/sessions/{}/cancel", opened.id);
    assert_eq!(status_of(&live, "POST", &cancel, &[]).await, 200);
    tokio::time::timeout(WAIT, opened.app.handle.cancelled())
        .await
        .expect("a tokenless cancel reaches the application");
    live.stop().await;
}

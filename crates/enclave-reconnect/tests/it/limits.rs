//! `ServerBuilder::limit`: each limit lands in the layer that enforces it, over the settings
//! given whole in either order, and is enforced.

use std::time::Duration;

use enclave_reconnect::{HubConfig, Limit, ServerBuilder};
use enclave_testkit::http::{client, request};
use enclave_transport::{CreateSession, RefusalReason, ServerConfig, SessionService};
use enclave_types::SessionId;

#[tokio::test]
async fn limits_win_over_whole_settings_given_before_or_after() {
    let running = ServerBuilder::new()
        .limit(Limit::MaxBodyBytes(64))
        .server_config(ServerConfig::default().with_max_body_bytes(1 << 20))
        .hub_config(
            HubConfig::default()
                .with_max_sessions(100)
                .with_heartbeat_ms(0),
        )
        .limits([Limit::MaxSessions(5), Limit::MaxSessions(1)])
        .limit(Limit::SessionGrace(Duration::from_secs(3)))
        .bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    assert_eq!(running.server().config().max_body_bytes(), 64);

    // The transport's limit: a body past it is refused 413 before any session exists.
    let addr = running.addr();
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(100));
    let answer = client::exchange(
        addr,
        &request(
            "POST",
            "/sessions",
            &addr.to_string(),
            &[
                ("Content-Type", "application/json"),
                ("Connection", "close"),
            ],
            body.as_bytes(),
        ),
    )
    .await;
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert_eq!(answer.json()["code"], "PAYLOAD_TOO_LARGE");

    // The hub's limit, the later of two calls: one live session, the second refused.
    let hub = running.hub();
    let _first = hub
        .create(CreateSession::new(SessionId::generate()))
        .await
        .expect("the first session fits");
    let refusal = hub
        .create(CreateSession::new(SessionId::generate()))
        .await
        .expect_err("a second live session is past MaxSessions(1)");
    assert_eq!(refusal.reason, RefusalReason::Unavailable, "{refusal:?}");
    running.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn a_zero_heartbeat_limit_sends_none_and_retention_keeps_at_least_one_event() {
    // Built, not served: the settings the hub starts with.
    let (hub, server) = ServerBuilder::new()
        .limits([
            Limit::Heartbeat(Some(Duration::ZERO)),
            Limit::MaxRetainedEvents(0),
            Limit::MaxConnections(0),
        ])
        .build();
    let config = hub.config();
    assert_eq!(config.heartbeat, None);
    assert_eq!(config.max_buffered_events, 1);
    assert_eq!(config.session_grace, HubConfig::default().session_grace);
    let settings = format!("{:?}", server.config());
    assert!(settings.contains("max_connections: 1,"), "{settings}");
    hub.shutdown();
}

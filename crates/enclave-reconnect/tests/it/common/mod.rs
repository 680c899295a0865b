//! Helpers shared by the hub tests: a hub, a session, bounded waits; and the NDJSON lines of
//! a plain session for the reconnecting client's fake servers.

mod store;
pub(crate) use store::Instrumented;

use std::time::Duration;

use enclave_reconnect::{AcceptedSession, Hub, HubConfig};
use enclave_transport::{
    Attachment, CreateSession, Features, Outgoing, Refusal, RefusalReason, ResumeSession,
    SessionService,
};
use enclave_types::SessionId;

/// Every wait in these tests ends within this.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// A hub without heartbeats unless the config says otherwise.
pub(crate) fn hub(config: HubConfig) -> Hub {
    Hub::new(config)
}

/// Quiet defaults: no heartbeats.
pub(crate) fn quiet() -> HubConfig {
    HubConfig::default().with_heartbeat_ms(0)
}

/// Features of a client that acknowledges (`resume`), or of one that does not.
pub(crate) fn features(resume: bool) -> Features {
    Features::parse(if resume { "resume" } else { "" })
}

/// Creates a session and accepts it on the application side.
pub(crate) async fn create(hub: &Hub, resume: bool) -> (Attachment, AcceptedSession) {
    let mut request = CreateSession::new(SessionId::generate());
    request.features = features(resume);
    create_with(hub, request).await
}

/// Creates a session from `request` and accepts it.
pub(crate) async fn create_with(
    hub: &Hub,
    request: CreateSession,
) -> (Attachment, AcceptedSession) {
    let attachment = tokio::time::timeout(WAIT, hub.create(request))
        .await
        .expect("create in time")
        .expect("create accepted");
    let session = tokio::time::timeout(WAIT, hub.accept())
        .await
        .expect("accept in time")
        .expect("a new session");
    (attachment, session)
}

/// A resume request with a token.
pub(crate) fn resume_request(
    id: &SessionId,
    from: u64,
    token: Option<&str>,
    resume: bool,
) -> ResumeSession {
    let mut request = ResumeSession::new(id.clone(), from);
    request.token = token.map(str::to_owned);
    request.features = features(resume);
    request
}

/// Resumes and expects success.
pub(crate) async fn resume(hub: &Hub, request: ResumeSession) -> Attachment {
    tokio::time::timeout(WAIT, hub.resume(request))
        .await
        .expect("resume in time")
        .expect("resume accepted")
}

/// Resumes and expects a refusal; returns its reason.
pub(crate) async fn refused(hub: &Hub, request: ResumeSession) -> RefusalReason {
    let result: Result<Attachment, Refusal> = tokio::time::timeout(WAIT, hub.resume(request))
        .await
        .expect("resume answered in time");
    match result {
        Ok(attachment) => panic!("resume of {} was accepted", attachment.session_id),
        Err(refusal) => refusal.reason,
    }
}

/// The next outgoing item, within [`WAIT`].
pub(crate) async fn next(attachment: &mut Attachment) -> Option<Outgoing> {
    tokio::time::timeout(WAIT, attachment.events.next())
        .await
        .expect("the attachment yields in time")
}

/// The next event's seq, skipping control lines; `None` at the end of the stream.
pub(crate) async fn next_seq(attachment: &mut Attachment) -> Option<u64> {
    loop {
        match next(attachment).await? {
            Outgoing::Event(event) => return Some(event.seq),
            Outgoing::Close(reason) => panic!("closed: {reason:?}"),
            _ => {}
        }
    }
}

/// Whether the attachment has nothing to yield for a moment.
pub(crate) async fn is_idle(attachment: &mut Attachment) -> bool {
    tokio::time::timeout(Duration::from_millis(50), attachment.events.next())
        .await
        .is_err()
}

/// Line `seq` of a plain session of `total` events as the fake servers stream it:
/// `session_init` first, `final` last, `stdout` between.
pub(crate) fn line(session: &str, seq: u64, total: u64) -> String {
    let (kind, payload) = if seq == 1 {
        (
            "session_init",
            format!(
                r#"{{"cancelUrl":"/sessions/{session}/cancel","expiresAt":"2030-01-01T00:00:00.000Z","encryption":{{"enabled":false}}}}"#
            ),
        )
    } else if seq == total {
        ("final", r#"{"ok":true}"#.to_owned())
    } else {
        ("stdout", format!(r#"{{"chunk":"event {seq}"}}"#))
    };
    format!(
        r#"{{"protocolVersion":2,"sessionId":"{session}","seq":{seq},"type":"{kind}","payload":{payload}}}"#
    ) + "\n"
}

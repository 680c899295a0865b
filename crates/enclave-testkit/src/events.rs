//! Event and message builders: the few events (and the client message) the tests of every
//! layer build again and again, each in one line (`events::stdout(&session, 3, "line 3")`).

use enclave_types::{
    CancelPayload, EncryptionConfig, FinalPayload, RuntimeChannelMessage, SessionId,
    SessionInitPayload, StdoutPayload, StreamEvent, Timestamp,
};

/// The `expiresAt` of [`session_init`]: far enough away that no test outlives it.
pub const EXPIRES_AT: &str = "2030-01-01T00:00:00.000Z";

/// A `stdout` event of `session` at `seq` carrying `chunk`.
pub fn stdout(session: &SessionId, seq: u64, chunk: impl Into<String>) -> StreamEvent {
    StreamEvent::new(session.clone(), seq, StdoutPayload::new(chunk).into())
}

/// The `session_init` of `session` (seq 1) as our server writes it: cancel URL
/// `/sessions/{id}/cancel`, expiry [`EXPIRES_AT`], and `encryption`.
///
/// # Panics
/// Never: [`EXPIRES_AT`] is a valid timestamp.
pub fn session_init(session: &SessionId, encryption: EncryptionConfig) -> StreamEvent {
    let expires = Timestamp::new("expiresAt", EXPIRES_AT)
        .unwrap_or_else(|err| panic!("{EXPIRES_AT} is a timestamp: {err}"));
    let init = SessionInitPayload::new(format!("/sessions/{session}/cancel"), expires, encryption);
    StreamEvent::new(session.clone(), 1, init.into())
}

/// A successful `final` of `session` at `seq`.
pub fn final_ok(session: &SessionId, seq: u64) -> StreamEvent {
    StreamEvent::new(session.clone(), seq, FinalPayload::new(true).into())
}

/// A client's `cancel` message to `session` at `seq` (only messages with a seq can be sealed
/// or acknowledged), giving `reason`.
pub fn cancel(session: &SessionId, seq: u64, reason: impl Into<String>) -> RuntimeChannelMessage {
    let payload = CancelPayload::new(Some(reason.into()));
    RuntimeChannelMessage::new(session.clone(), payload.into()).with_seq(seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use enclave_types::{EventPayload, RuntimeChannelPayload};

    #[test]
    fn the_builders_make_the_events_they_name() {
        let session = SessionId::new("s_testkit").unwrap();
        let event = stdout(&session, 3, "line 3");
        assert_eq!((event.seq, &event.session_id), (3, &session));
        assert_eq!(
            event.payload,
            EventPayload::Stdout(StdoutPayload::new("line 3"))
        );
        let init = session_init(&session, EncryptionConfig::new(false));
        assert_eq!(init.seq, 1);
        let EventPayload::SessionInit(payload) = &init.payload else {
            panic!("not a session_init: {init:?}");
        };
        assert_eq!(payload.cancel_url, "/sessions/s_testkit/cancel");
        assert_eq!(
            final_ok(&session, 9).payload,
            EventPayload::Final(FinalPayload::new(true))
        );
        let message = cancel(&session, 4, "enough");
        assert_eq!(message.seq, Some(4));
        let RuntimeChannelPayload::Cancel(payload) = &message.payload else {
            panic!("not a cancel: {message:?}");
        };
        assert_eq!(payload.reason.as_deref(), Some("enough"));
    }
}

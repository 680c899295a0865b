//! The interface through which the transport reaches session state: [`SessionService`].
//!
//! The transport owns carriers and wire mappings (routes, headers, WebSocket messages,
//! per-connection encryption); everything that outlives a connection — sequence numbers,
//! retention, resume tokens, epochs, acknowledgements, heartbeats — sits behind this trait.
//! `enclave-reconnect` implements it with its session hub; tests may implement it with
//! anything. The transport never assumes which.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use enclave_types::{
    EncryptionConfig, RuntimeChannelMessage, SessionId, SessionState, StreamEvent,
};
use futures::future::BoxFuture;

pub use crate::refusal::{Refusal, RefusalReason};

/// What the transport needs from the session layer. Object safe: the server holds an
/// `Arc<dyn SessionService>`.
pub trait SessionService: Send + Sync + 'static {
    /// Creates a session and attaches the requesting connection to it. The first event the
    /// attachment yields is the session's `session_init` (seq 1), built from `request`.
    fn create(&self, request: CreateSession) -> BoxFuture<'_, Result<Attachment, Refusal>>;

    /// Attaches a connection to an existing session from `request.from` (inclusive). The
    /// token is checked before anything that reveals whether the session exists.
    fn resume(&self, request: ResumeSession) -> BoxFuture<'_, Result<Attachment, Refusal>>;

    /// Client messages and an acknowledgement that arrived on a request of their own (HTTP
    /// `POST /sessions/:id/messages`), outside any attachment.
    fn submit(&self, request: Submit) -> BoxFuture<'_, Result<SubmitReceipt, Refusal>>;

    /// One session's summary (`GET /sessions/:id`).
    fn info(&self, session_id: &SessionId) -> BoxFuture<'_, Result<SessionInfo, Refusal>>;

    /// Every session's summary (`GET /sessions`).
    fn list(&self) -> BoxFuture<'_, Result<Vec<SessionInfo>, Refusal>>;

    /// Ends and forgets a session (`DELETE /sessions/:id`).
    fn delete(&self, session_id: &SessionId) -> BoxFuture<'_, Result<(), Refusal>>;

    /// Asks the application to stop a session (`POST /sessions/:id/cancel`); the session's
    /// stream still ends with its `final`.
    fn cancel(
        &self,
        session_id: &SessionId,
        reason: Option<String>,
    ) -> BoxFuture<'_, Result<(), Refusal>>;

    /// Whether sessions can be served now (`GET /ready`): `Ok` while new sessions are
    /// accepted and the session state answers, else the refusal that says why (a load
    /// balancer drains a server that answers 503). The default is always ready.
    fn ready(&self) -> BoxFuture<'_, Result<(), Refusal>> {
        Box::pin(async { Ok(()) })
    }

    /// Whether the bearer of `token` (from `X-Enclave-Resume-Token`) may read or end
    /// `session_id` (`GET /sessions/:id`, `DELETE /sessions/:id`,
    /// `POST /sessions/:id/cancel`); the server asks before [`info`](Self::info),
    /// [`delete`](Self::delete) and [`cancel`](Self::cancel), unless the deployment's
    /// session-access hook (`ServerConfig::with_session_access`) granted the request already.
    ///
    /// An implementation checks the token the way [`resume`](Self::resume) does, before
    /// anything that reveals whether the session exists (a missing token is
    /// [`RefusalReason::MissingToken`], a wrong one [`RefusalReason::BadToken`], whether the
    /// session exists or not), accepts whatever token a resume would accept, and never
    /// consumes or rotates it. `Ok` says nothing about existence: the route itself answers
    /// `404` for a session that is not there.
    fn check_access(
        &self,
        session_id: &SessionId,
        token: Option<&str>,
    ) -> BoxFuture<'_, Result<(), Refusal>>;
}

/// Optional behaviour a client asked for (HTTP `X-Enclave-Features`, WebSocket `features`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Features {
    /// The client acknowledges events and understands control lines (end of replay, acks).
    /// Clients without it (the TypeScript client) receive events only.
    pub resume: bool,
}

impl Features {
    /// Features from a comma-separated list (`resume`); unknown names are ignored.
    pub fn parse(list: &str) -> Self {
        let mut features = Self::default();
        for name in list.split(',').map(str::trim) {
            if name.eq_ignore_ascii_case("resume") {
                features.resume = true;
            }
        }
        features
    }
}

/// The `config` of `POST /sessions` (and of WebSocket's `open`), as the TypeScript broker
/// reads it: the wire shape and what the session layer gets are one type. Absent fields
/// take the session layer's defaults; unknown keys are ignored, as the broker does.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SessionConfig {
    /// `maxExecutionMs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_execution_ms: Option<u64>,
    /// `maxToolCalls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tool_calls: Option<u64>,
    /// `heartbeatIntervalMs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<u64>,
}

/// A new session, as the transport understood the request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CreateSession {
    /// The id (the client's, or one the transport generated: the key schedule needs it
    /// before the session exists).
    pub session_id: SessionId,
    /// The request's `code`, for the application.
    pub code: Option<String>,
    /// The request's `config`.
    pub config: SessionConfig,
    /// What `session_init.payload.encryption` says (with the `ServerHello` when encrypted).
    pub encryption: EncryptionConfig,
    /// Whether the session is encrypted: every later connection must be too.
    pub encrypted: bool,
    /// What the client asked for.
    pub features: Features,
    /// The IP address of the connection that asked, when the server accepted it itself
    /// (`None` otherwise): what a limit of live sessions per peer address counts.
    pub peer: Option<IpAddr>,
    /// Where a client cancels the session: `session_init.payload.cancelUrl`. The transport
    /// names its routes ([`wire::cancel_path`], `/sessions/{id}/cancel`); the session layer
    /// only passes it on.
    ///
    /// [`wire::cancel_path`]: crate::wire::cancel_path
    pub cancel_url: String,
}

impl CreateSession {
    /// A request for `session_id` with everything else at its default (plaintext).
    pub fn new(session_id: SessionId) -> Self {
        Self {
            code: None,
            config: SessionConfig::default(),
            encryption: EncryptionConfig::new(false),
            encrypted: false,
            features: Features::default(),
            peer: None,
            cancel_url: crate::wire::cancel_path(&session_id),
            session_id,
        }
    }
}

/// A connection that wants to continue a session.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResumeSession {
    /// The session.
    pub session_id: SessionId,
    /// The first `seq` wanted (inclusive). Everything before it is acknowledged.
    pub from: u64,
    /// The resume token, if the client presented one.
    pub token: Option<String>,
    /// The epoch the client last saw, if it says.
    pub epoch: Option<u64>,
    /// Whether this connection runs a fresh handshake (a resume of an encrypted session
    /// without one is refused: no downgrade).
    pub encrypted: bool,
    /// What the client asked for.
    pub features: Features,
}

impl ResumeSession {
    /// A resume of `session_id` from `from`, without token, epoch or encryption.
    pub fn new(session_id: SessionId, from: u64) -> Self {
        Self {
            session_id,
            from,
            token: None,
            epoch: None,
            encrypted: false,
            features: Features::default(),
        }
    }
}

/// Client messages (already opened, if they came sealed) and an acknowledgement.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Submit {
    /// The session.
    pub session_id: SessionId,
    /// The session's current resume token.
    pub token: Option<String>,
    /// Messages in the order received; each carries its own `seq`.
    pub messages: Vec<RuntimeChannelMessage>,
    /// The client holds every server event up to this `seq`.
    pub ack: Option<u64>,
    /// Whether the messages arrived sealed under the key of the session's current
    /// encrypted connection. `false` for plaintext messages, and for an acknowledgement
    /// alone sent while no encrypted connection is attached: the session layer of an
    /// encrypted session refuses plaintext messages (no downgrade).
    pub encrypted: bool,
}

impl Submit {
    /// A submission without messages or acknowledgement.
    pub fn new(session_id: SessionId, token: Option<String>) -> Self {
        Self {
            session_id,
            token,
            messages: Vec::new(),
            ack: None,
            encrypted: false,
        }
    }
}

/// The answer to a [`Submit`]: `{"ack": M}` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubmitReceipt {
    /// The highest client `seq` the server holds (0 when none).
    pub ack: u64,
}

impl SubmitReceipt {
    /// A receipt for client messages up to `ack`.
    pub fn new(ack: u64) -> Self {
        Self { ack }
    }
}

/// A connection attached to a session: what to send it, and where its messages go.
#[non_exhaustive]
pub struct Attachment {
    /// The session.
    pub session_id: SessionId,
    /// The resume token to give the client (a new one on every successful resume).
    pub token: String,
    /// The session's epoch: a server that lost the session's state has another.
    pub epoch: u64,
    /// `true` when this continues an existing session.
    pub resumed: bool,
    /// Whether the session is encrypted.
    pub encrypted: bool,
    /// What to write to the connection, in order.
    pub events: Box<dyn EventSource>,
    /// Where the connection's client messages and acknowledgements go.
    pub upstream: Arc<dyn Upstream>,
}

impl Attachment {
    /// An attachment; `resumed` and `encrypted` start `false`.
    pub fn new(
        session_id: SessionId,
        token: String,
        epoch: u64,
        events: Box<dyn EventSource>,
        upstream: Arc<dyn Upstream>,
    ) -> Self {
        Self {
            session_id,
            token,
            epoch,
            resumed: false,
            encrypted: false,
            events,
            upstream,
        }
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("session_id", &self.session_id.as_str())
            .field("epoch", &self.epoch)
            .field("resumed", &self.resumed)
            .field("encrypted", &self.encrypted)
            .finish_non_exhaustive()
    }
}

/// An event together with its compact JSON, serialized once where the event is published
/// and then written as is (plaintext) or sealed as is (encrypted) on every connection that
/// carries it, instead of being serialized again per connection.
///
/// It dereferences to the [`StreamEvent`], so `event.seq` and `event.payload` read as on the
/// event itself. The JSON is built by [`EncodedEvent::new`] from the event and nothing else,
/// so the two always agree.
#[derive(Clone, PartialEq)]
pub struct EncodedEvent {
    event: StreamEvent,
    json: Box<[u8]>,
}

impl EncodedEvent {
    /// Serializes `event` (compact JSON, what `serde_json::to_vec` gives) and keeps both.
    ///
    /// # Errors
    ///
    /// When the event does not serialize (a map with non-string keys in a detail value).
    pub fn new(event: StreamEvent) -> Result<Self, serde_json::Error> {
        let mut json = Vec::with_capacity(256);
        serde_json::to_writer(&mut json, &event)?;
        Ok(Self {
            event,
            json: json.into_boxed_slice(),
        })
    }

    /// The event.
    pub fn event(&self) -> &StreamEvent {
        &self.event
    }

    /// Its compact JSON, without a newline.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// The length of its NDJSON line, the newline included: what retention counts.
    pub fn line_len(&self) -> u64 {
        self.json.len() as u64 + 1
    }

    /// The event, without its JSON.
    pub fn into_event(self) -> StreamEvent {
        self.event
    }
}

impl std::ops::Deref for EncodedEvent {
    type Target = StreamEvent;

    fn deref(&self) -> &StreamEvent {
        &self.event
    }
}

impl fmt::Debug for EncodedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedEvent")
            .field("event", &self.event)
            .field("json_len", &self.json.len())
            .finish()
    }
}

/// One thing for the transport to write to an attached connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Outgoing {
    /// An event, in `seq` order (replayed ones first), with its JSON.
    Event(Arc<EncodedEvent>),
    /// The replay a resume asked for is complete; what follows is live. A control line, sent
    /// only to clients with the `resume` feature.
    ReplayComplete {
        /// The last replayed `seq` (the resume's `from` − 1 when nothing was replayed).
        last_seq: u64,
    },
    /// The client's messages up to `seq` are held by the server. A control line, sent only
    /// to clients with the `resume` feature.
    Ack {
        /// The highest client `seq` held.
        seq: u64,
    },
    /// The connection must end: the client should resume (or give up, for a refusal).
    Close(CloseReason),
    /// Every event up to `through` that was not written was left out by the connection's event
    /// filter (made by the transport's filter, never by the session layer). Counts as written
    /// up to `through`; a control line for clients with the `resume` feature.
    Filtered {
        /// The highest `seq` filtered out.
        through: u64,
    },
}

/// Why the session layer ends a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// A newer connection resumed the session.
    Superseded,
    /// The server is shutting down: resume elsewhere.
    ShuttingDown,
    /// The session cannot go on; the client gets this refusal.
    Refused(Refusal),
}

/// The stream of what to write to one attached connection.
///
/// `None` means the session's stream is over (after its `final`); the transport ends the
/// response or closes the socket cleanly.
pub trait EventSource: Send {
    /// The next thing to write, waiting for it if the session has nothing new.
    fn next(&mut self) -> BoxFuture<'_, Option<Outgoing>>;

    /// The next thing to write if it is at hand without waiting (an event already read from
    /// the store), else `None`: then only [`next`](Self::next) can tell, end of stream
    /// included. Lets a transport fill a chunk without a future per event; what it returns
    /// is exactly what `next` would have. The default knows nothing at hand.
    fn next_ready(&mut self) -> Option<Outgoing> {
        None
    }

    /// The transport wrote every event up to `seq` to its connection (the bytes left this
    /// process). For a client that does not acknowledge, the session layer may let such
    /// events leave its retention when it is full, so the session never stalls.
    fn written(&mut self, seq: u64);
}

/// Where an attached connection's client messages and acknowledgements go.
pub trait Upstream: Send + Sync {
    /// Hands over client messages in the order received. Duplicates (a `seq` already held)
    /// are acknowledged again, never refused. Returns the highest client `seq` held.
    fn deliver(&self, messages: Vec<RuntimeChannelMessage>) -> BoxFuture<'_, Result<u64, Refusal>>;

    /// The client holds every server event up to `seq`.
    fn ack(&self, seq: u64);
}

/// A session's summary, the broker's `GET /sessions/:id` shape.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The session.
    pub session_id: SessionId,
    /// Its state.
    pub state: SessionState,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Expiry time, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// How long it has run, in ms.
    pub duration_ms: u64,
    /// How many tool calls it has made.
    pub tool_call_count: u64,
}

impl SessionInfo {
    /// A summary with zero duration and tool calls.
    pub fn new(
        session_id: SessionId,
        state: SessionState,
        created_at_ms: u64,
        expires_at_ms: u64,
    ) -> Self {
        Self {
            session_id,
            state,
            created_at_ms,
            expires_at_ms,
            duration_ms: 0,
            tool_call_count: 0,
        }
    }
}

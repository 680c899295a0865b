//! The names and shapes other programs rely on (`../shared/network-contract.md`): HTTP routes
//! and headers, the `POST /sessions` body, the WebSocket opening messages, and the control
//! lines that only clients with the `resume` feature receive.

use enclave_types::{ClientHello, EncryptionMode, ServerHello, SessionId};
use serde::{Deserialize, Serialize};

/// `X-Session-ID` (response): the session's id.
pub const HEADER_SESSION_ID: &str = "x-session-id";
/// `X-Enclave-Resume-Token` (request and response).
pub const HEADER_RESUME_TOKEN: &str = "x-enclave-resume-token";
/// `X-Enclave-Epoch` (request and response).
pub const HEADER_EPOCH: &str = "x-enclave-epoch";
/// `X-Enclave-Client-Hello` (request): base64url of the `ClientHello` JSON, for a resume.
pub const HEADER_CLIENT_HELLO: &str = "x-enclave-client-hello";
/// `X-Enclave-Server-Hello` (response): base64url of the `ServerHello` JSON, on a resume.
pub const HEADER_SERVER_HELLO: &str = "x-enclave-server-hello";
/// `X-Enclave-Ack` (request): the client holds every server event up to this `seq`.
pub const HEADER_ACK: &str = "x-enclave-ack";
/// `X-Enclave-Features` (request): comma-separated features (`resume`).
pub const HEADER_FEATURES: &str = "x-enclave-features";

/// Request headers a browser may send cross-origin (`Access-Control-Allow-Headers`).
pub const CORS_ALLOW_HEADERS: &str =
    "Content-Type, Accept, Last-Event-ID, X-Enclave-Resume-Token, \
     X-Enclave-Epoch, X-Enclave-Client-Hello, X-Enclave-Ack, X-Enclave-Features";
/// Response headers a browser may read cross-origin (`Access-Control-Expose-Headers`).
pub const CORS_EXPOSE_HEADERS: &str =
    "X-Session-ID, X-Enclave-Resume-Token, X-Enclave-Epoch, X-Enclave-Server-Hello";
/// Methods allowed cross-origin.
pub const CORS_ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";

/// `Content-Type` of a stream.
pub const NDJSON_CONTENT_TYPE: &str = "application/x-ndjson";

/// The largest `POST /sessions` (and messages) body accepted by default: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// The `encryption` of a `POST /sessions` body or a WebSocket `open`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct EncryptionOffer {
    /// What the client wants.
    pub mode: EncryptionMode,
    /// Its hello, when it wants encryption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_hello: Option<ClientHello>,
}

impl EncryptionOffer {
    /// An offer in `mode` with `client_hello`.
    pub fn new(mode: EncryptionMode, client_hello: Option<ClientHello>) -> Self {
        Self { mode, client_hello }
    }
}

/// The `config` of `POST /sessions` (unknown keys ignored, as the broker does).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CreateConfig {
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

/// The `POST /sessions` body: `{sessionId?, code?, config?, filter?, encryption?}`.
/// `filter` is accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CreateBody {
    /// The client's id for the session (`s_…`), or none to let the server choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    /// The code to run, for the application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Session settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<CreateConfig>,
    /// The TypeScript client's event filter: accepted, ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Value>,
    /// The encryption offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionOffer>,
}

/// Where a WebSocket client wants to resume: `{"from", "token", "epoch"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResumeFrom {
    /// The first `seq` wanted (inclusive).
    pub from: u64,
    /// The resume token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The epoch last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

impl ResumeFrom {
    /// A resume position.
    pub fn new(from: u64, token: Option<String>, epoch: Option<u64>) -> Self {
        Self { from, token, epoch }
    }
}

/// The first WebSocket message from the client: `{"type":"open", …}`. Without `resume` it
/// creates a session (the `POST /sessions` body's fields); with it, it resumes one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct WsOpen {
    /// The session to create or resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    /// The code to run (new sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Session settings (new sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<CreateConfig>,
    /// The encryption offer (a fresh `ClientHello` on every connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionOffer>,
    /// Where to resume, for an existing session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<ResumeFrom>,
    /// Features (`["resume"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// The server's first WebSocket message: `{"type":"opened", …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct WsOpened {
    /// The session.
    pub session_id: SessionId,
    /// The resume token for the next resume.
    pub token: String,
    /// The session's epoch.
    pub epoch: u64,
    /// Whether an existing session was resumed.
    pub resumed: bool,
    /// The answer to the client's `ClientHello`, when encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_hello: Option<ServerHello>,
}

impl WsOpened {
    /// An `opened` message.
    pub fn new(session_id: SessionId, token: String, epoch: u64, resumed: bool) -> Self {
        Self {
            session_id,
            token,
            epoch,
            resumed,
            server_hello: None,
        }
    }
}

/// A line that is not an event or a runtime message: acknowledgements (both ways on
/// WebSocket, server → client on HTTP), the end of a replay, and the WebSocket opening
/// messages. Serialized with its `"type"` tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Control {
    /// `{"type":"open", …}` (WebSocket, client → server, first message).
    Open(WsOpen),
    /// `{"type":"opened", …}` (WebSocket, server → client, first message).
    Opened(WsOpened),
    /// `{"type":"ack","seq":N}`: the sender holds everything up to `seq` of the other
    /// direction.
    Ack {
        /// The highest `seq` held.
        seq: u64,
    },
    /// `{"type":"replay_complete","lastSeq":N}`: what follows is live.
    ReplayComplete {
        /// The last replayed `seq`.
        #[serde(rename = "lastSeq")]
        last_seq: u64,
    },
}

/// The `type`s a [`Control`] line can carry, to tell control lines from messages cheaply.
pub const CONTROL_TYPES: [&str; 4] = ["open", "opened", "ack", "replay_complete"];

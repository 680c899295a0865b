//! The twelve stream events and their payloads.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::id::{CallId, SessionId};
use crate::message::Tag;
use crate::named;
use crate::number::{self, ProtocolVersion, PROTOCOL_VERSION};
use crate::optional;
use crate::raw::{self, RawJson};
use crate::timestamp::{self, Timestamp};

/// The wire `type` of a plaintext stream event. Closed: other strings are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventType {
    /// `session_init`: first event of a session.
    SessionInit,
    /// `stdout`: a chunk of the program's output.
    Stdout,
    /// `log`: a console message.
    Log,
    /// `tool_call`: the runtime asks the host to run a tool.
    ToolCall,
    /// `tool_result_applied`: a tool result reached the runtime.
    ToolResultApplied,
    /// `final`: the session ended.
    Final,
    /// `heartbeat`: keep-alive.
    Heartbeat,
    /// `error`: a non-fatal error.
    Error,
    /// `partial_result`: one path of a fan-out finished (protocol 2).
    PartialResult,
    /// `tool_progress`: progress of a long tool call (protocol 2).
    ToolProgress,
    /// `deadline_exceeded`: the execution budget ran out (protocol 2).
    DeadlineExceeded,
    /// `catalog_changed`: the action catalog changed (protocol 2).
    CatalogChanged,
}

impl EventType {
    /// All event types, in the order of the TS `EventType` table.
    pub const ALL: [Self; 12] = [
        Self::SessionInit,
        Self::Stdout,
        Self::Log,
        Self::ToolCall,
        Self::ToolResultApplied,
        Self::Final,
        Self::Heartbeat,
        Self::Error,
        Self::PartialResult,
        Self::ToolProgress,
        Self::DeadlineExceeded,
        Self::CatalogChanged,
    ];

    /// The wire string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SessionInit => "session_init",
            Self::Stdout => "stdout",
            Self::Log => "log",
            Self::ToolCall => "tool_call",
            Self::ToolResultApplied => "tool_result_applied",
            Self::Final => "final",
            Self::Heartbeat => "heartbeat",
            Self::Error => "error",
            Self::PartialResult => "partial_result",
            Self::ToolProgress => "tool_progress",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::CatalogChanged => "catalog_changed",
        }
    }

    /// The event type for a wire string, if it is one.
    pub fn from_wire(s: &str) -> Option<Self> {
        Some(match s {
            "session_init" => Self::SessionInit,
            "stdout" => Self::Stdout,
            "log" => Self::Log,
            "tool_call" => Self::ToolCall,
            "tool_result_applied" => Self::ToolResultApplied,
            "final" => Self::Final,
            "heartbeat" => Self::Heartbeat,
            "error" => Self::Error,
            "partial_result" => Self::PartialResult,
            "tool_progress" => Self::ToolProgress,
            "deadline_exceeded" => Self::DeadlineExceeded,
            "catalog_changed" => Self::CatalogChanged,
            _ => return None,
        })
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `log.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LogLevel {
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `warn`
    Warn,
    /// `error`
    Error,
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Tag {
            expecting: "a string",
            name: "value",
            expected: "debug, info, warn or error",
            parse: |v| match v {
                "debug" => Some(Self::Debug),
                "info" => Some(Self::Info),
                "warn" => Some(Self::Warn),
                "error" => Some(Self::Error),
                _ => None,
            },
        }
        .read(d)
    }
}

/// The lifecycle state of a session, as the TS `SessionState` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SessionState {
    /// `starting`
    Starting,
    /// `running`
    Running,
    /// `waiting_for_tool`
    WaitingForTool,
    /// `completed`
    Completed,
    /// `cancelled`
    Cancelled,
    /// `failed`
    Failed,
}

/// `error` inside `final` and `tool_result_submit`: the legacy single error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ErrorInfo {
    /// Human-readable message.
    #[serde(deserialize_with = "named::message")]
    pub message: String,
    /// Machine-readable code.
    #[serde(
        default,
        deserialize_with = "optional::code",
        skip_serializing_if = "Option::is_none"
    )]
    pub code: Option<String>,
    /// Stack trace, in debug setups only.
    #[serde(
        default,
        deserialize_with = "optional::stack",
        skip_serializing_if = "Option::is_none"
    )]
    pub stack: Option<String>,
}

/// A typed error detail (gRPC `google.rpc.Status` style), tagged by `type`. Closed.
///
/// Read in one pass by a hand-written visitor (see `detail.rs`): serde's tagged enums
/// buffer into a recursive tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum ErrorDetail {
    /// `retry_info`: when to retry.
    RetryInfo {
        /// Delay before retrying, in milliseconds.
        #[serde(serialize_with = "number::retry_delay_ms::serialize")]
        retry_delay_ms: f64,
    },
    /// `upstream_info`: the upstream HTTP failure.
    UpstreamInfo {
        /// HTTP status code: any safe integer, as in the TS schema.
        #[serde(serialize_with = "number::status_code::serialize")]
        status_code: i64,
        /// The upstream URL.
        url: String,
    },
    /// `validation_info`: which input field was wrong.
    ValidationInfo {
        /// The field.
        field: String,
        /// Why it was refused.
        reason: String,
    },
    /// `quota_info`: a quota ran out.
    QuotaInfo {
        /// The quota; never negative.
        #[serde(serialize_with = "number::quota_limit::serialize")]
        limit: f64,
        /// How much was used; never negative.
        #[serde(serialize_with = "number::quota_used::serialize")]
        used: f64,
    },
}

/// A per-path error (GraphQL style) in `final.errors` and `partial_result.error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ErrorPayload {
    /// Machine-readable code, e.g. `TOOL_TIMEOUT`.
    #[serde(deserialize_with = "named::code")]
    pub code: String,
    /// Human-readable message.
    #[serde(deserialize_with = "named::message")]
    pub message: String,
    /// Path to the failing operation.
    #[serde(
        default,
        deserialize_with = "optional::path",
        skip_serializing_if = "Option::is_none"
    )]
    pub path: Option<Vec<String>>,
    /// Typed details.
    #[serde(
        default,
        deserialize_with = "optional::details",
        skip_serializing_if = "Option::is_none"
    )]
    pub details: Option<Vec<ErrorDetail>>,
}

/// `session_init.encryption`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct EncryptionConfig {
    /// Whether the session's events are encrypted.
    #[serde(deserialize_with = "named::enabled")]
    pub enabled: bool,
    /// The session key's id.
    #[serde(
        default,
        deserialize_with = "optional::key_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub key_id: Option<String>,
    /// The server's answer to the client's `ClientHello`, when the session is encrypted: the
    /// place the handshake completes on HTTP. An extra key for the TypeScript schema, which
    /// strips it, so its clients are unaffected.
    #[serde(
        default,
        deserialize_with = "optional::server_hello",
        skip_serializing_if = "Option::is_none"
    )]
    pub server_hello: Option<crate::ServerHello>,
}

/// `session_init` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SessionInitPayload {
    /// Where to cancel the session.
    #[serde(deserialize_with = "named::cancel_url")]
    pub cancel_url: String,
    /// When the session expires.
    #[serde(deserialize_with = "timestamp::expires_at")]
    pub expires_at: Timestamp,
    /// Encryption settings.
    pub encryption: EncryptionConfig,
    /// Where to replay the stream after a reconnect.
    #[serde(
        default,
        deserialize_with = "optional::replay_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub replay_url: Option<String>,
}

/// `stdout` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StdoutPayload {
    /// The output text.
    #[serde(deserialize_with = "named::chunk")]
    pub chunk: String,
}

/// `log` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogPayload {
    /// Severity.
    #[serde(deserialize_with = "named::level")]
    pub level: LogLevel,
    /// The message.
    #[serde(deserialize_with = "named::message")]
    pub message: String,
    /// Structured data: a JSON object, kept raw.
    #[serde(
        default,
        with = "raw::object_data",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<RawJson>,
}

/// `tool_call` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ToolCallPayload {
    /// This call's id.
    pub call_id: CallId,
    /// The tool to run; never empty.
    #[serde(with = "named::non_empty::tool_name")]
    pub tool_name: String,
    /// The arguments, any JSON (`null` included), kept raw. An absent `args` is read as
    /// `null` (zod 4.3.6 accepts the omission, zod ≥ 4.4 refuses it), so we always write it.
    #[serde(default = "RawJson::null")]
    pub args: RawJson,
}

/// `tool_result_applied` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ToolResultAppliedPayload {
    /// The call whose result was applied.
    pub call_id: CallId,
}

/// `final.stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SessionStats {
    /// Run time in milliseconds (may be fractional, never negative).
    #[serde(with = "number::duration_ms")]
    pub duration_ms: f64,
    /// Tool calls made.
    #[serde(with = "number::tool_call_count")]
    pub tool_call_count: u64,
    /// Bytes written to stdout.
    #[serde(with = "number::stdout_bytes")]
    pub stdout_bytes: u64,
}

/// `final` payload. Data and errors may coexist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FinalPayload {
    /// Whether everything succeeded.
    #[serde(deserialize_with = "named::ok")]
    pub ok: bool,
    /// The result, kept raw; `null` is kept as `Some`.
    #[serde(
        default,
        deserialize_with = "raw::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub result: Option<RawJson>,
    /// The legacy single error.
    #[serde(
        default,
        deserialize_with = "optional::error",
        skip_serializing_if = "Option::is_none"
    )]
    pub error: Option<ErrorInfo>,
    /// Per-path errors.
    #[serde(
        default,
        deserialize_with = "optional::errors",
        skip_serializing_if = "Option::is_none"
    )]
    pub errors: Option<Vec<ErrorPayload>>,
    /// Run statistics.
    #[serde(
        default,
        deserialize_with = "optional::stats",
        skip_serializing_if = "Option::is_none"
    )]
    pub stats: Option<SessionStats>,
}

/// `heartbeat` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HeartbeatPayload {
    /// When the heartbeat was sent.
    #[serde(deserialize_with = "timestamp::ts")]
    pub ts: Timestamp,
}

/// `error` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ErrorEventPayload {
    /// The message.
    #[serde(deserialize_with = "named::message")]
    pub message: String,
    /// Machine-readable code.
    #[serde(
        default,
        deserialize_with = "optional::code",
        skip_serializing_if = "Option::is_none"
    )]
    pub code: Option<String>,
    /// Whether the session can go on.
    #[serde(
        default,
        deserialize_with = "optional::recoverable",
        skip_serializing_if = "Option::is_none"
    )]
    pub recoverable: Option<bool>,
}

/// `partial_result` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PartialResultPayload {
    /// Where this result slots in.
    #[serde(deserialize_with = "named::path")]
    pub path: Vec<String>,
    /// The data for this path, kept raw; `null` is kept as `Some`.
    #[serde(
        default,
        deserialize_with = "raw::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<RawJson>,
    /// The error for this path.
    #[serde(
        default,
        deserialize_with = "optional::error",
        skip_serializing_if = "Option::is_none"
    )]
    pub error: Option<ErrorPayload>,
    /// Whether more partial results follow.
    #[serde(deserialize_with = "named::has_next")]
    pub has_next: bool,
}

/// `tool_progress.phase`. Closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ToolProgressPhase {
    /// `connecting`
    Connecting,
    /// `sending`
    Sending,
    /// `receiving`
    Receiving,
    /// `processing`
    Processing,
}

impl<'de> Deserialize<'de> for ToolProgressPhase {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Tag {
            expecting: "a string",
            name: "value",
            expected: "connecting, sending, receiving or processing",
            parse: |v| match v {
                "connecting" => Some(Self::Connecting),
                "sending" => Some(Self::Sending),
                "receiving" => Some(Self::Receiving),
                "processing" => Some(Self::Processing),
                _ => None,
            },
        }
        .read(d)
    }
}

/// `tool_progress` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ToolProgressPayload {
    /// The tool call.
    pub call_id: CallId,
    /// Where it is.
    #[serde(deserialize_with = "named::phase")]
    pub phase: ToolProgressPhase,
    /// Bytes received so far.
    #[serde(
        default,
        with = "number::bytes_received",
        skip_serializing_if = "Option::is_none"
    )]
    pub bytes_received: Option<u64>,
    /// Bytes expected, when known.
    #[serde(
        default,
        with = "number::total_bytes",
        skip_serializing_if = "Option::is_none"
    )]
    pub total_bytes: Option<u64>,
    /// Milliseconds since the call started.
    #[serde(with = "number::elapsed_ms")]
    pub elapsed_ms: f64,
}

/// `deadline_exceeded` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DeadlineExceededPayload {
    /// Milliseconds elapsed.
    #[serde(with = "number::elapsed_ms")]
    pub elapsed_ms: f64,
    /// The budget that was exceeded; always > 0.
    #[serde(with = "number::budget_ms")]
    pub budget_ms: f64,
}

/// `catalog_changed` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CatalogChangedPayload {
    /// The new catalog version; never empty.
    #[serde(with = "named::non_empty::catalog_version")]
    pub version: String,
    /// Actions added.
    #[serde(deserialize_with = "named::added_actions")]
    pub added_actions: Vec<String>,
    /// Actions removed.
    #[serde(deserialize_with = "named::removed_actions")]
    pub removed_actions: Vec<String>,
}

/// The payload of a plaintext event; its variant decides the wire `type`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventPayload {
    /// `session_init`
    SessionInit(SessionInitPayload),
    /// `stdout`
    Stdout(StdoutPayload),
    /// `log`
    Log(LogPayload),
    /// `tool_call`
    ToolCall(ToolCallPayload),
    /// `tool_result_applied`
    ToolResultApplied(ToolResultAppliedPayload),
    /// `final`
    Final(FinalPayload),
    /// `heartbeat`
    Heartbeat(HeartbeatPayload),
    /// `error`
    Error(ErrorEventPayload),
    /// `partial_result`
    PartialResult(PartialResultPayload),
    /// `tool_progress`
    ToolProgress(ToolProgressPayload),
    /// `deadline_exceeded`
    DeadlineExceeded(DeadlineExceededPayload),
    /// `catalog_changed`
    CatalogChanged(CatalogChangedPayload),
}

impl EventPayload {
    /// The wire `type` this payload travels under.
    pub const fn event_type(&self) -> EventType {
        match self {
            Self::SessionInit(_) => EventType::SessionInit,
            Self::Stdout(_) => EventType::Stdout,
            Self::Log(_) => EventType::Log,
            Self::ToolCall(_) => EventType::ToolCall,
            Self::ToolResultApplied(_) => EventType::ToolResultApplied,
            Self::Final(_) => EventType::Final,
            Self::Heartbeat(_) => EventType::Heartbeat,
            Self::Error(_) => EventType::Error,
            Self::PartialResult(_) => EventType::PartialResult,
            Self::ToolProgress(_) => EventType::ToolProgress,
            Self::DeadlineExceeded(_) => EventType::DeadlineExceeded,
            Self::CatalogChanged(_) => EventType::CatalogChanged,
        }
    }
}

impl Serialize for EventPayload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::SessionInit(p) => p.serialize(serializer),
            Self::Stdout(p) => p.serialize(serializer),
            Self::Log(p) => p.serialize(serializer),
            Self::ToolCall(p) => p.serialize(serializer),
            Self::ToolResultApplied(p) => p.serialize(serializer),
            Self::Final(p) => p.serialize(serializer),
            Self::Heartbeat(p) => p.serialize(serializer),
            Self::Error(p) => p.serialize(serializer),
            Self::PartialResult(p) => p.serialize(serializer),
            Self::ToolProgress(p) => p.serialize(serializer),
            Self::DeadlineExceeded(p) => p.serialize(serializer),
            Self::CatalogChanged(p) => p.serialize(serializer),
        }
    }
}

/// One plaintext stream event: the base fields plus a typed payload.
///
/// On the wire: `{"protocolVersion":2,"sessionId":"s_…","seq":1,"type":"stdout","payload":{…}}`.
/// `Serialize`/`Deserialize` live with [`Frame`](crate::Frame), which shares the parser.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StreamEvent {
    /// Protocol version of the sender.
    pub protocol_version: ProtocolVersion,
    /// The session.
    pub session_id: SessionId,
    /// Position in the session's stream (0 ..= [`MAX_SEQ`](crate::MAX_SEQ)).
    pub seq: u64,
    /// The typed payload.
    pub payload: EventPayload,
}

impl StreamEvent {
    /// An event of the current [`PROTOCOL_VERSION`].
    pub fn new(session_id: SessionId, seq: u64, payload: EventPayload) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            session_id,
            seq,
            payload,
        }
    }

    /// The wire `type`.
    pub const fn event_type(&self) -> EventType {
        self.payload.event_type()
    }
}

// Constructors: the structs are `#[non_exhaustive]` (a protocol version may add fields), so
// outside this crate they are built here, with every optional field absent, and then adjusted
// through their public fields.

impl ErrorInfo {
    /// An error with a message and no code or stack.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: None,
            stack: None,
        }
    }
}

impl ErrorPayload {
    /// A per-path error without `path` or `details`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            path: None,
            details: None,
        }
    }
}

impl EncryptionConfig {
    /// Encryption settings without a key id.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            key_id: None,
            server_hello: None,
        }
    }
}

impl SessionInitPayload {
    /// A `session_init` payload without `replayUrl`.
    pub fn new(
        cancel_url: impl Into<String>,
        expires_at: Timestamp,
        encryption: EncryptionConfig,
    ) -> Self {
        Self {
            cancel_url: cancel_url.into(),
            expires_at,
            encryption,
            replay_url: None,
        }
    }
}

impl StdoutPayload {
    /// A chunk of output.
    pub fn new(chunk: impl Into<String>) -> Self {
        Self {
            chunk: chunk.into(),
        }
    }
}

impl LogPayload {
    /// A log message without `data`.
    pub fn new(level: LogLevel, message: impl Into<String>) -> Self {
        Self {
            level,
            message: message.into(),
            data: None,
        }
    }
}

impl ToolCallPayload {
    /// A tool call. `tool_name` must not be empty; writing refuses an empty one.
    pub fn new(call_id: CallId, tool_name: impl Into<String>, args: RawJson) -> Self {
        Self {
            call_id,
            tool_name: tool_name.into(),
            args,
        }
    }
}

impl ToolResultAppliedPayload {
    /// The call whose result was applied.
    pub fn new(call_id: CallId) -> Self {
        Self { call_id }
    }
}

impl SessionStats {
    /// Run statistics.
    pub fn new(duration_ms: f64, tool_call_count: u64, stdout_bytes: u64) -> Self {
        Self {
            duration_ms,
            tool_call_count,
            stdout_bytes,
        }
    }
}

impl FinalPayload {
    /// A `final` payload with only `ok`.
    pub fn new(ok: bool) -> Self {
        Self {
            ok,
            result: None,
            error: None,
            errors: None,
            stats: None,
        }
    }
}

impl HeartbeatPayload {
    /// A heartbeat sent at `ts`.
    pub fn new(ts: Timestamp) -> Self {
        Self { ts }
    }
}

impl ErrorEventPayload {
    /// An `error` event without `code` or `recoverable`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: None,
            recoverable: None,
        }
    }
}

impl PartialResultPayload {
    /// A partial result without `data` or `error`.
    pub fn new(path: Vec<String>, has_next: bool) -> Self {
        Self {
            path,
            data: None,
            error: None,
            has_next,
        }
    }
}

impl ToolProgressPayload {
    /// Progress without byte counts.
    pub fn new(call_id: CallId, phase: ToolProgressPhase, elapsed_ms: f64) -> Self {
        Self {
            call_id,
            phase,
            bytes_received: None,
            total_bytes: None,
            elapsed_ms,
        }
    }
}

impl DeadlineExceededPayload {
    /// The budget ran out after `elapsed_ms`.
    pub fn new(elapsed_ms: f64, budget_ms: f64) -> Self {
        Self {
            elapsed_ms,
            budget_ms,
        }
    }
}

impl CatalogChangedPayload {
    /// A catalog change. `version` must not be empty; writing refuses an empty one.
    pub fn new(
        version: impl Into<String>,
        added_actions: Vec<String>,
        removed_actions: Vec<String>,
    ) -> Self {
        Self {
            version: version.into(),
            added_actions,
            removed_actions,
        }
    }
}

/// `From<…Payload> for EventPayload`, so `StreamEvent::new(id, seq, payload.into())` reads well.
macro_rules! into_event_payload {
    ($($payload:ident => $variant:ident),* $(,)?) => {
        $(
            impl From<$payload> for EventPayload {
                fn from(p: $payload) -> Self {
                    Self::$variant(p)
                }
            }
        )*
    };
}

into_event_payload! {
    SessionInitPayload => SessionInit,
    StdoutPayload => Stdout,
    LogPayload => Log,
    ToolCallPayload => ToolCall,
    ToolResultAppliedPayload => ToolResultApplied,
    FinalPayload => Final,
    HeartbeatPayload => Heartbeat,
    ErrorEventPayload => Error,
    PartialResultPayload => PartialResult,
    ToolProgressPayload => ToolProgress,
    DeadlineExceededPayload => DeadlineExceeded,
    CatalogChangedPayload => CatalogChanged,
}

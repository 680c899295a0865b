//! The names and shapes other programs rely on (`../shared/network-contract.md`): HTTP routes
//! and headers, the `POST /sessions` body, the WebSocket opening messages, and the control
//! lines that only clients with the `resume` feature receive.
//!
//! It also holds the parsers of every untrusted piece of a request or message that both the
//! server and the client read: the `POST /sessions` body, the hello headers, number headers,
//! the splitting of a WebSocket message or a messages body into NDJSON lines, and the
//! classification of each line. The server and client call these very functions, and
//! `enclave-fuzz` fuzzes them, so what is fuzzed is what runs.

use std::fmt::Write as _;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use enclave_ndjson::StreamDecoder;
use enclave_types::{
    ClientHello, EncryptionMode, EventFilter, Frame, MessageFrame, ServerHello, SessionId,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::service::{Refusal, RefusalReason};

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
/// Response headers a browser may read cross-origin (`Access-Control-Expose-Headers`):
/// ours, and `Retry-After` (not CORS-safelisted), so a browser client can honour a `503`'s.
pub const CORS_EXPOSE_HEADERS: &str =
    "X-Session-ID, X-Enclave-Resume-Token, X-Enclave-Epoch, X-Enclave-Server-Hello, Retry-After";
/// Methods allowed cross-origin.
pub const CORS_ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";

/// `Content-Type` of a stream.
pub const NDJSON_CONTENT_TYPE: &str = "application/x-ndjson";

/// The largest `POST /sessions` (and messages) body accepted by default: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// The `Retry-After` (seconds) of a `503` the server sends when it is full (connection cap,
/// per-peer cap, session limits).
pub const RETRY_AFTER_SECS: u64 = 2;

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

/// `GET` liveness: `200` while the process serves at all.
pub const PATH_HEALTH: &str = "/health";
/// `GET` readiness: `200` only while the server accepts sessions and its store answers.
pub const PATH_READY: &str = "/ready";
/// `GET` the server's metrics in the Prometheus text format, when it has them.
pub const PATH_METRICS: &str = "/metrics";
/// `POST` creates a session (the stream is the answer); `GET` lists them, when enabled.
pub const PATH_SESSIONS: &str = "/sessions";
/// `GET` upgrades to the WebSocket carrier.
pub const PATH_WS: &str = "/sessions/ws";
/// `GET` a session's info, `DELETE` ends it. `{id}` is the session id (the router's
/// parameter syntax; [`session_path`] fills it in).
pub const PATH_SESSION: &str = "/sessions/{id}";
/// `GET` resumes a session's stream (`?fromSeq=N`, also `?from=N`; `&filter=`).
pub const PATH_STREAM: &str = "/sessions/{id}/stream";
/// `POST` client messages and acknowledgements (NDJSON body).
pub const PATH_MESSAGES: &str = "/sessions/{id}/messages";
/// `POST` cancels a session.
pub const PATH_CANCEL: &str = "/sessions/{id}/cancel";

/// `route` (one of the `PATH_*` with `{id}`) for session `id`. A session id is URL-safe (see
/// [`check_session_id`]), so it goes in as it is.
fn for_session(route: &str, id: &SessionId) -> String {
    route.replace("{id}", id.as_str())
}

/// [`PATH_SESSION`] for session `id`.
pub fn session_path(id: &SessionId) -> String {
    for_session(PATH_SESSION, id)
}

/// [`PATH_STREAM`] for session `id`, without a query.
pub fn stream_path(id: &SessionId) -> String {
    for_session(PATH_STREAM, id)
}

/// [`PATH_MESSAGES`] for session `id`.
pub fn messages_path(id: &SessionId) -> String {
    for_session(PATH_MESSAGES, id)
}

/// [`PATH_CANCEL`] for session `id`: where a client cancels it (`POST`), what
/// `session_init.payload.cancelUrl` says.
pub fn cancel_path(id: &SessionId) -> String {
    for_session(PATH_CANCEL, id)
}

/// The `config` of `POST /sessions`: the session layer's [`SessionConfig`] itself (one type
/// for the wire shape and what the hub gets).
///
/// [`SessionConfig`]: crate::SessionConfig
pub type CreateConfig = crate::service::SessionConfig;

/// The `POST /sessions` body: `{sessionId?, code?, config?, filter?, encryption?}`.
/// `filter` (an `EventFilterConfig`, see [`parse_filter`]) applies to this response's stream.
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
    /// The event filter of this connection (`EventFilterConfig`), checked by [`parse_filter`].
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
    /// The event filter of this connection (`EventFilterConfig`), new session or resume
    /// (boxed: rare, and it would double the size of every [`Control`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Box<serde_json::Value>>,
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
    /// `{"type":"superseded"}` (HTTP, server → client, the last line): a newer connection
    /// resumed the session, so this stream ends here; WebSocket says it with the close
    /// `1000 superseded`.
    Superseded,
    /// `{"type":"filtered","through":N}`: every event up to `N` not sent on this connection
    /// was left out by its event filter (server → client, only with a filter).
    Filtered {
        /// The highest `seq` filtered out.
        through: u64,
    },
}

/// The `type`s a [`Control`] line can carry, to tell control lines from messages cheaply.
pub const CONTROL_TYPES: [&str; 6] = [
    "open",
    "opened",
    "ack",
    "replay_complete",
    "superseded",
    "filtered",
];

// ---------------------------------------------------------------------------------------
// Parsers of untrusted input, shared by the server and the client

/// The longest refusal message built from untrusted input, in bytes: a message quoting a
/// peer's value is cut (at a character boundary, marked `...`) so that a refusal stays
/// small whatever the request held.
pub const MAX_REFUSAL_MESSAGE_BYTES: usize = 512;

/// Reads a refusal body `{"code", "message", "reason"?}` as a peer sent it (an HTTP error
/// answer, a byte stream's refusal line). Without `reason` (the TypeScript broker sends none)
/// the `code` decides where it is unambiguous; `status` (the HTTP status, 0 where the carrier
/// has none) tells the `RESUME_REFUSED` codes apart. The message is cut to
/// [`MAX_REFUSAL_MESSAGE_BYTES`]. `None`: not a refusal body.
pub fn read_refusal(body: &serde_json::Value, status: u16) -> Option<Refusal> {
    let text = |field: &str| body.get(field).and_then(serde_json::Value::as_str);
    let code = text("code")?;
    let reason = text("reason")
        .and_then(RefusalReason::from_wire)
        .or(match (code, status) {
            ("NOT_FOUND", _) => Some(RefusalReason::UnknownSession),
            ("SESSION_EXPIRED", _) => Some(RefusalReason::Expired),
            ("ENCRYPTION_REQUIRED", _) => Some(RefusalReason::EncryptionRequired),
            ("SESSION_EXISTS", _) => Some(RefusalReason::SessionExists),
            ("INVALID_REQUEST", _) => Some(RefusalReason::InvalidRequest),
            ("UNAUTHORIZED", _) => Some(RefusalReason::Unauthorized),
            ("SERVICE_UNAVAILABLE", _) => Some(RefusalReason::Unavailable),
            ("RESUME_REFUSED", 401) => Some(RefusalReason::MissingToken),
            ("RESUME_REFUSED", 403) => Some(RefusalReason::BadToken),
            _ => None,
        })?;
    Some(Refusal::new(
        reason,
        enclave_types::excerpt(
            text("message").unwrap_or_default(),
            MAX_REFUSAL_MESSAGE_BYTES,
        ),
    ))
}

/// A refusal with reason `invalid_request` whose message is cut to
/// [`MAX_REFUSAL_MESSAGE_BYTES`].
pub fn invalid_request(message: impl Into<String>) -> Refusal {
    let mut message = message.into();
    if message.len() > MAX_REFUSAL_MESSAGE_BYTES {
        let mut end = MAX_REFUSAL_MESSAGE_BYTES - 3;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    Refusal::new(RefusalReason::InvalidRequest, message)
}

/// Parses a `POST /sessions` body. An empty (or all ASCII whitespace) body asks for a
/// session with every default, as `code` is optional here.
///
/// # Errors
///
/// `invalid_request` when the body is not a [`CreateBody`].
pub fn parse_create_body(body: &[u8]) -> Result<CreateBody, Refusal> {
    if body.trim_ascii().is_empty() {
        return Ok(CreateBody::default());
    }
    serde_json::from_slice(body)
        .map_err(|err| invalid_request(format!("the body is not a session request: {err}")))
}

/// The longest session id a request may name, in bytes (`s_` and a UUID take 38).
pub const MAX_SESSION_ID_LEN: usize = 128;

/// Checks a session id a request names (the `POST /sessions` body's `sessionId`, a path's
/// `:id`, a WebSocket `open`'s `sessionId`): `s_` followed by 1 to
/// [`MAX_SESSION_ID_LEN`]` - 2` ASCII letters, digits, `-` or `_`. That is what our generator
/// and the TypeScript client produce (`s_` + a UUID) and what travels safely in a header
/// (`X-Session-ID`), a URL path, a log line and a store key. Checked before the session is
/// looked up, so the answer says nothing about whether it exists.
///
/// # Errors
///
/// `invalid_request` saying what is wrong, quoting at most [`EXCERPT_CHARS`](enclave_types::EXCERPT_CHARS) (64)
/// characters of the value.
pub fn check_session_id(id: &str) -> Result<SessionId, Refusal> {
    let shown = || enclave_types::excerpt(id, enclave_types::EXCERPT_CHARS);
    let problem = if !id.starts_with(SessionId::PREFIX) {
        Some(format!("does not start with {:?}", SessionId::PREFIX))
    } else if id.len() == SessionId::PREFIX.len() {
        Some("has nothing after \"s_\"".to_owned())
    } else if id.len() > MAX_SESSION_ID_LEN {
        Some(format!(
            "is {} bytes long, more than {MAX_SESSION_ID_LEN}",
            id.len()
        ))
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Some("holds a character other than ASCII letters, digits, '-' and '_'".to_owned())
    } else {
        None
    };
    match problem {
        None => SessionId::new(id).map_err(|err| invalid_request(format!("{err}"))),
        Some(problem) => Err(invalid_request(format!(
            "the session id {:?} {problem}",
            shown()
        ))),
    }
}

/// Checks and compiles an event filter given as JSON (a body's or an `open`'s `filter`).
/// `null` is no filter, as the broker's `if (body.filter)` reads it.
///
/// # Errors
///
/// `invalid_filter` (400 `INVALID_FILTER`) saying what is wrong and where.
pub fn parse_filter(value: Option<&serde_json::Value>) -> Result<Option<EventFilter>, Refusal> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => EventFilter::from_json(value.clone())
            .map(Some)
            .map_err(|err| filter_refusal(&err)),
    }
}

/// Checks and compiles the `filter` query parameter (JSON text, already percent-decoded). An
/// empty value is no filter, as the broker reads it.
///
/// # Errors
///
/// `invalid_filter` (400 `INVALID_FILTER`) saying what is wrong and where.
pub fn parse_filter_query(text: &str) -> Result<Option<EventFilter>, Refusal> {
    if text.is_empty() {
        return Ok(None);
    }
    EventFilter::parse(text)
        .map(Some)
        .map_err(|err| filter_refusal(&err))
}

fn filter_refusal(err: &enclave_types::Error) -> Refusal {
    let mut refusal = invalid_request(err.to_string());
    refusal.reason = RefusalReason::InvalidFilter;
    refusal
}

/// Percent-encodes a query parameter's value: everything but the unreserved characters of
/// RFC 3986.
pub fn percent_encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Reads a decimal number from a header or query value (`X-Enclave-Ack`,
/// `X-Enclave-Epoch`, `fromSeq`): ASCII digits only (no sign), surrounding ASCII whitespace
/// ignored, at most `u64::MAX`. `name` says where it came from, for the error.
///
/// # Errors
///
/// `invalid_request` naming `name` and quoting (a cut of) the value.
pub fn parse_number(name: &str, value: &str) -> Result<u64, Refusal> {
    let digits = value.trim_ascii();
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(number) = digits.parse::<u64>() {
            return Ok(number);
        }
    }
    let shown = enclave_types::excerpt(value, enclave_types::EXCERPT_CHARS);
    Err(invalid_request(format!(
        "{name} is not a decimal number up to {}: {shown:?}",
        u64::MAX
    )))
}

/// base64url, with canonical `=` padding or none, as the hello headers carry it.
const HELLO_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Writes an `X-Enclave-Client-Hello` or `X-Enclave-Server-Hello` value: base64url
/// (unpadded) of the hello's JSON.
///
/// # Errors
///
/// When the hello does not serialize (it always does for the hello types).
pub fn encode_hello_header<H: Serialize>(hello: &H) -> Result<String, serde_json::Error> {
    serde_json::to_vec(hello).map(|json| HELLO_BASE64.encode(json))
}

/// Reads an `X-Enclave-Client-Hello` value: exactly base64url of the `ClientHello` JSON,
/// with canonical `=` padding or none; surrounding ASCII whitespace is ignored.
///
/// # Errors
///
/// `invalid_request` when the value is not base64url or not a `ClientHello`.
pub fn decode_client_hello_header(value: &str) -> Result<ClientHello, Refusal> {
    decode_hello_header("X-Enclave-Client-Hello", value)
}

/// Reads an `X-Enclave-Server-Hello` value, by the rules of
/// [`decode_client_hello_header`].
///
/// # Errors
///
/// `invalid_request` when the value is not base64url or not a `ServerHello`.
pub fn decode_server_hello_header(value: &str) -> Result<ServerHello, Refusal> {
    decode_hello_header("X-Enclave-Server-Hello", value)
}

fn decode_hello_header<H: DeserializeOwned>(name: &str, value: &str) -> Result<H, Refusal> {
    let json = HELLO_BASE64
        .decode(value.trim_ascii())
        .map_err(|err| invalid_request(format!("{name} is not base64url: {err}")))?;
    serde_json::from_slice(&json)
        .map_err(|err| invalid_request(format!("{name} does not hold a hello: {err}")))
}

/// One line with a value, out of [`split_lines`].
#[derive(Debug)]
#[non_exhaustive]
pub struct NdjsonLine {
    /// The 1-based line number in the text split (blank lines count).
    pub number: u64,
    /// The line's JSON value, without the whitespace around it.
    pub value: Box<RawValue>,
}

/// Splits a WebSocket text message, or a `POST /sessions/:id/messages` body, into NDJSON
/// lines by the rules of the NDJSON layer (`enclave-ndjson`): lines end at `\n`, blank
/// lines (JavaScript's `trim()` set) are skipped, a last line without `\n` is a line (so a
/// message of one JSON value and no newline is one line), and a line longer than
/// `max_line_length` bytes is an error, as is one that is not UTF-8 or not JSON. Errors
/// carry their line number and a bounded excerpt; splitting goes on after them.
pub fn split_lines(
    text: &[u8],
    max_line_length: usize,
) -> Vec<Result<NdjsonLine, enclave_ndjson::Error>> {
    let mut decoder = StreamDecoder::<Box<RawValue>>::with_max_line_length(max_line_length);
    decoder.feed(text);
    if !text.is_empty() && !text.ends_with(b"\n") {
        decoder.feed(b"\n");
    }
    let mut lines = Vec::new();
    while let Some(item) = decoder.next_item() {
        lines.push(item.map(|value| NdjsonLine {
            number: decoder.line_number(),
            value,
        }));
    }
    lines
}

/// What one line of a stream is: data for the receiving side (a [`MessageFrame`] for the
/// server, a [`Frame`] for the client), a [`Control`] line, or neither.
/// The three cases are all there is (a line is data, control or neither), so the enum is
/// exhaustive: a reader's `match` needs no catch-all that would hide a new case.
#[derive(Debug)]
pub enum Classified<T> {
    /// An event, runtime message or `enc` envelope.
    Data(T),
    /// A control line: `ack`, `replay_complete`, `open` or `opened`.
    Control(Control),
    /// Neither: why the line is not data (the more useful of the two reasons, since data
    /// is what a stream mostly carries).
    Unreadable(enclave_types::Error),
}

/// Classifies a line the client sent (WebSocket): a runtime channel message or envelope, or
/// a control line. Data is tried first; control `type`s never name a message.
pub fn classify_client_line(line: &[u8]) -> Classified<MessageFrame> {
    classify(line, MessageFrame::parse_line)
}

/// Classifies a line the server sent (HTTP or WebSocket): an event or envelope, or a
/// control line.
pub fn classify_server_line(line: &[u8]) -> Classified<Frame> {
    classify(line, Frame::parse_line)
}

/// [`classify_server_line`] for a line already known to be text (from a line decoder that
/// checked its UTF-8), parsed once.
pub fn classify_server_text(line: &str) -> Classified<Frame> {
    match Frame::parse_str(line) {
        Ok(data) => Classified::Data(data),
        Err(not_data) => match serde_json::from_str::<Control>(line) {
            Ok(control) => Classified::Control(control),
            Err(_) => Classified::Unreadable(not_data),
        },
    }
}

fn classify<T>(line: &[u8], parse: fn(&[u8]) -> Result<T, enclave_types::Error>) -> Classified<T> {
    match parse(line) {
        Ok(data) => Classified::Data(data),
        Err(not_data) => match serde_json::from_slice::<Control>(line) {
            Ok(control) => Classified::Control(control),
            Err(_) => Classified::Unreadable(not_data),
        },
    }
}

/// Parses a `POST /sessions/:id/messages` body: NDJSON lines of client messages (plain or
/// `enc`), each of session `session_id`, split by [`split_lines`]. Returns each message with
/// its line number; an empty body just acknowledges.
///
/// # Errors
///
/// `invalid_request` at the first bad line: one over `max_line_length`, not JSON, not a
/// client message, or of another session. The message names the session and the line.
pub fn parse_messages_body(
    body: &[u8],
    session_id: &SessionId,
    max_line_length: usize,
) -> Result<Vec<(u64, MessageFrame)>, Refusal> {
    let mut frames = Vec::new();
    for line in split_lines(body, max_line_length) {
        let line = line.map_err(|err| invalid_request(format!("session {session_id}, {err}")))?;
        let at = || format!("session {session_id}, line {}", line.number);
        let frame = MessageFrame::parse_line(line.value.get().as_bytes())
            .map_err(|err| invalid_request(format!("{}: not a client message: {err}", at())))?;
        if frame.session_id() != session_id {
            return Err(invalid_request(format!(
                "{}: the message belongs to session {}",
                at(),
                frame.session_id()
            )));
        }
        frames.push((line.number, frame));
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::{
        classify_server_line, decode_client_hello_header, parse_create_body, parse_messages_body,
        parse_number, split_lines, Classified, Control, MAX_REFUSAL_MESSAGE_BYTES,
    };
    use crate::service::RefusalReason;
    use enclave_types::SessionId;

    #[test]
    fn numbers_are_plain_decimal_digits() {
        assert_eq!(parse_number("n", " 42 ").ok(), Some(42));
        assert_eq!(
            parse_number("n", "18446744073709551615").ok(),
            Some(u64::MAX)
        );
        for bad in ["", "+1", "-1", "1e3", "0x10", "18446744073709551616", "4 2"] {
            let refusal = parse_number("X-Enclave-Ack", bad).expect_err(bad);
            assert_eq!(refusal.reason, RefusalReason::InvalidRequest);
            assert!(refusal.message.starts_with("X-Enclave-Ack "), "{refusal}");
        }
    }

    #[test]
    fn a_hello_header_takes_canonical_padding_or_none() {
        // `{}` is not a ClientHello, so each accepted encoding fails only at the JSON step.
        for (value, base64_ok) in [
            ("e30", true),
            ("e30=", true),
            ("e30==", false),
            ("e3=0", false),
        ] {
            let message = decode_client_hello_header(value).expect_err(value).message;
            assert_eq!(
                message.contains("does not hold a hello"),
                base64_ok,
                "{value}: {message}"
            );
        }
    }

    #[test]
    fn refusals_quoting_input_stay_short() {
        // serde quotes a string of the wrong type in full.
        let long = format!(
            "{{\"config\":{{\"maxToolCalls\":\"{}\"}}}}",
            "é".repeat(2000)
        );
        let refusal = parse_create_body(long.as_bytes()).expect_err("not a number");
        assert!(
            refusal.message.len() <= MAX_REFUSAL_MESSAGE_BYTES,
            "{refusal}"
        );
        assert!(refusal.message.ends_with("..."), "{refusal}");
        assert_eq!(
            parse_create_body(b" \r\n").ok(),
            Some(super::CreateBody::default())
        );
    }

    #[test]
    fn a_message_without_newline_is_one_line_and_long_lines_are_errors() {
        let lines = split_lines(b"{\"type\":\"ack\",\"seq\":3}", 64);
        assert_eq!(lines.len(), 1);
        let line = lines[0].as_ref().expect("a line");
        assert_eq!(line.number, 1);
        assert!(matches!(
            classify_server_line(line.value.get().as_bytes()),
            Classified::Control(Control::Ack { seq: 3 })
        ));
        let lines = split_lines(b"\n  \n[1]\n[22222222]\n", 4);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].as_ref().map(|line| line.number).ok(), Some(3));
        assert_eq!(
            lines[1]
                .as_ref()
                .err()
                .and_then(enclave_ndjson::Error::line),
            Some(4)
        );
    }

    #[test]
    fn a_messages_body_names_the_line_and_the_session() {
        let session = SessionId::new("s_a").expect("an id");
        let refusal = parse_messages_body(b"\n{\"type\":\"ack\",\"seq\":1}\n", &session, 1024)
            .expect_err("an ack is not a client message");
        assert!(
            refusal.message.starts_with("session s_a, line 2: "),
            "{refusal}"
        );
        assert!(parse_messages_body(b"", &session, 1024)
            .expect("an empty body")
            .is_empty());
    }
}

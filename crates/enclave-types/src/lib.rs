//! The EnclaveJS streaming protocol model: every value that travels on the wire, as Rust types
//! that validate while they deserialize.
//!
//! This crate owns the *shape* of the protocol, wire compatible with the TypeScript
//! `@enclave-vm/types` 2.15.2 (protocol version 2, version 1 accepted):
//!
//! - [`StreamEvent`] and its twelve payloads ([`EventPayload`]), the `enc` line
//!   ([`EncryptedEnvelope`]), and [`Frame`], which is what one NDJSON line of a stream is;
//! - the handshake messages ([`ClientHello`], [`ServerHello`]) and [`EncryptionRequest`];
//! - runtime channel messages ([`RuntimeChannelMessage`]: `tool_result_submit`, `cancel`), and
//!   [`MessageFrame`], a line of the client → server direction (a message or an envelope);
//! - [`SessionLimits`] with the TS defaults, error payloads ([`ErrorInfo`], [`ErrorPayload`],
//!   [`ErrorDetail`]) and the prefixed ids [`SessionId`], [`CallId`], [`RefId`];
//! - event filters ([`EventFilter`]): the broker's `EventFilterConfig`, validated and bounded
//!   once ([`MAX_FILTER_RULES`] and the other `MAX_FILTER_*` bounds), then applied per event
//!   with the broker's results, its `regex` patterns on a linear-time engine.
//!
//! Parsing is one pass: `serde_json::from_slice::<Frame>(line)` checks every schema rule (id
//! prefixes, safe-integer `seq`, UTC date-times, closed enums, non-empty strings) as it reads,
//! without building a `serde_json::Value` first. Opaque fields (`args`, `result`, `data`) stay
//! raw JSON text ([`RawJson`]). Writing gives the TS shape: camelCase names, absent optionals
//! omitted, integral numbers without a fraction. Fields are public, so writing re-checks the
//! rules a hand-built value can break (an empty `toolName`, a NaN duration) and fails with an
//! `invalid <field>` error rather than write a line a reader refuses. The rule across the
//! TypeScript side's zod versions: read what any of them accepts, write what all of them accept.
//!
//! Types a protocol version can extend are `#[non_exhaustive]`: build them with their `new`
//! constructors (optional fields absent) and `From` impls, then set public fields.
//!
//! ```
//! use enclave_types::{EventType, Frame, SessionId, StdoutPayload, StreamEvent};
//!
//! // Read one line of a stream: validation happens while parsing.
//! let line = br#"{"protocolVersion":2,"sessionId":"s_demo","seq":3,"type":"stdout","payload":{"chunk":"hi\n"}}"#;
//! let frame = Frame::parse_line(line)?;
//! assert_eq!((frame.type_str(), frame.seq()), ("stdout", 3));
//!
//! // A bad line says what is wrong and where.
//! let bad = br#"{"protocolVersion":2,"sessionId":"sess_demo","seq":3,"type":"stdout","payload":{"chunk":""}}"#;
//! let err = Frame::parse_line(bad).unwrap_err();
//! assert!(err.to_string().contains(r#"invalid sessionId "sess_demo": must start with "s_""#));
//!
//! // Write an event in the TypeScript shape.
//! let event = StreamEvent::new(
//!     SessionId::new("s_demo")?,
//!     4,
//!     StdoutPayload::new("done").into(),
//! );
//! assert_eq!(event.event_type(), EventType::Stdout);
//! assert_eq!(
//!     serde_json::to_string(&event)?,
//!     r#"{"protocolVersion":2,"sessionId":"s_demo","seq":4,"type":"stdout","payload":{"chunk":"done"}}"#
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What this crate does *not* do: it does not split a byte stream into lines (that is
//! `enclave-ndjson`), it does not encrypt, decrypt or decode base64 (that is `enclave-crypto`,
//! which also decides which curves and ciphers to accept), and it does no I/O. It does not
//! track sessions either: ordering of `seq` across lines is for the layers above.
//!
//! With the `fixtures` feature, `fixtures::mixed_stream` gives deterministic sample streams
//! for benchmarks, tests and fuzz seeds.
//!
//! See `docs/PROTOCOL.md` for the wire format and the few deliberate differences from the
//! TypeScript implementation.
//!
//! # Public API
//!
//! - Events: [`StreamEvent`] (`protocolVersion`, `sessionId`, `seq`, `timestamp`, payload),
//!   [`EventPayload`] / [`EventType`] and one payload type per event (`SessionInitPayload` …
//!   `CatalogChangedPayload`), with their parts ([`EncryptionConfig`], [`ErrorInfo`],
//!   [`SessionStats`], [`LogLevel`], [`ToolProgressPhase`], …).
//! - Client → runtime: [`RuntimeChannelMessage`], [`RuntimeChannelPayload`],
//!   [`CancelPayload`], [`ToolResultSubmitPayload`].
//! - Lines: [`Frame`] (an event or an `enc` envelope), [`MessageFrame`], [`EncryptedEnvelope`].
//! - The handshake's wire shapes ([`ClientHello`], [`ServerHello`], [`EncryptionMode`], …),
//!   identifiers ([`SessionId`], [`CallId`], [`RefId`]), [`Timestamp`], [`RawJson`],
//!   [`ProtocolVersion`], [`SessionLimits`], the event filter ([`EventFilter`]).
//! - [`Error`], the crate's one error type, and [`excerpt`], how every layer quotes peer text.
#![forbid(unsafe_code)]

mod detail;
mod error;
mod event;
mod excerpt;
mod filter;
#[cfg(feature = "fixtures")]
pub mod fixtures;
mod frame;
mod handshake;
mod id;
mod limits;
mod message;
mod named;
mod number;
mod optional;
mod raw;
mod runtime;
mod timestamp;

pub use error::Error;
pub use event::{
    CatalogChangedPayload, DeadlineExceededPayload, EncryptionConfig, ErrorDetail,
    ErrorEventPayload, ErrorInfo, ErrorPayload, EventPayload, EventType, FinalPayload,
    HeartbeatPayload, LogLevel, LogPayload, PartialResultPayload, SessionInitPayload, SessionState,
    SessionStats, StdoutPayload, StreamEvent, ToolCallPayload, ToolProgressPayload,
    ToolProgressPhase, ToolResultAppliedPayload,
};
pub use excerpt::{excerpt, EXCERPT_CHARS, MESSAGE_EXCERPT_CHARS};
pub use filter::{
    EventFilter, FilterMode, MAX_FILTER_FIELD_BYTES, MAX_FILTER_PATTERNS, MAX_FILTER_PATTERN_BYTES,
    MAX_FILTER_RULES, MAX_FILTER_TYPES, MAX_REGEX_INPUT_UTF16,
};
pub use frame::{EncryptedEnvelope, EncryptedPayload, Frame, MessageFrame, ENCRYPTED_TYPE};
pub use handshake::{
    ClientHello, EncryptionMode, EncryptionRequest, ServerHello, ALGORITHM_AES_GCM_256, CURVE_P256,
    KDF_HKDF_SHA256,
};
pub use id::{CallId, RefId, SessionId};
pub use limits::SessionLimits;
pub use number::{ProtocolVersion, MAX_SEQ, PROTOCOL_VERSION};
pub use raw::RawJson;
pub use runtime::{
    CancelPayload, RuntimeChannelMessage, RuntimeChannelMessageType, RuntimeChannelPayload,
    ToolResultSubmitPayload,
};
pub use timestamp::Timestamp;

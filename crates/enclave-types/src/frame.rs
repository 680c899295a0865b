//! One NDJSON line of the stream: a plaintext [`StreamEvent`] or an `enc` [`EncryptedEnvelope`].

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{bounded, Cut, Error};
use crate::event::{EventPayload, EventType, StreamEvent};
use crate::id::SessionId;
use crate::message::{visit_message, Discriminant, Tag};
use crate::number::{ProtocolVersion, Seq, PROTOCOL_VERSION};
use crate::runtime::{RuntimeChannelMessage, RuntimeChannelMessageType, RuntimeChannelPayload};
use crate::{named, optional};

/// The wire `type` of an encrypted envelope.
pub const ENCRYPTED_TYPE: &str = "enc";

/// The payload of an `enc` line. Base64 is carried as text; the crypto layer decodes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct EncryptedPayload {
    /// Id of the key that sealed it; never empty.
    #[serde(with = "named::non_empty::kid")]
    pub kid: String,
    /// The AES-GCM nonce, standard base64; never empty.
    #[serde(with = "named::non_empty::nonce_b64")]
    pub nonce_b64: String,
    /// Ciphertext (with the tag appended, as the TS peer writes it), standard base64; never empty.
    #[serde(with = "named::non_empty::ciphertext_b64")]
    pub ciphertext_b64: String,
    /// A separate tag, for peers that send one.
    #[serde(
        default,
        deserialize_with = "optional::tag_b64",
        skip_serializing_if = "Option::is_none"
    )]
    pub tag_b64: Option<String>,
}

impl EncryptedPayload {
    /// A payload without a separate tag. None of the three may be empty; writing refuses an
    /// empty one.
    pub fn new(
        kid: impl Into<String>,
        nonce_b64: impl Into<String>,
        ciphertext_b64: impl Into<String>,
    ) -> Self {
        Self {
            kid: kid.into(),
            nonce_b64: nonce_b64.into(),
            ciphertext_b64: ciphertext_b64.into(),
            tag_b64: None,
        }
    }
}

/// An encrypted event: `{"protocolVersion":2,"sessionId":…,"seq":…,"type":"enc","payload":{kid,nonceB64,ciphertextB64}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EncryptedEnvelope {
    /// Protocol version of the sender.
    pub protocol_version: ProtocolVersion,
    /// The session.
    pub session_id: SessionId,
    /// Position in the session's stream.
    pub seq: u64,
    /// The sealed event.
    pub payload: EncryptedPayload,
}

impl EncryptedEnvelope {
    /// An envelope of the current [`PROTOCOL_VERSION`].
    pub fn new(session_id: SessionId, seq: u64, payload: EncryptedPayload) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            session_id,
            seq,
            payload,
        }
    }
}

/// What one line of the stream is, like the TS `parseLine` result.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Frame {
    /// A plaintext event.
    Event(StreamEvent),
    /// An `enc` envelope around an event.
    Encrypted(EncryptedEnvelope),
}

impl Frame {
    /// Parses one line as the TS `parseLine` does: trims surrounding whitespace (JavaScript's
    /// `trim` set, BOM included), then parses and validates in one pass.
    pub fn parse_line(line: &[u8]) -> Result<Self, Error> {
        let line = trim_js_whitespace(line);
        serde_json::from_slice(line).map_err(|e| json_error(line, e))
    }

    /// [`parse_line`](Self::parse_line) for a line already known to be text (from a line
    /// decoder that checked its UTF-8): the same trim, rules and errors, without looking at
    /// the UTF-8 again.
    pub fn parse_str(line: &str) -> Result<Self, Error> {
        let line = line.trim_matches(is_js_whitespace);
        serde_json::from_str(line).map_err(|e| json_error(line.as_bytes(), e))
    }

    /// The session the frame belongs to.
    pub fn session_id(&self) -> &SessionId {
        match self {
            Self::Event(e) => &e.session_id,
            Self::Encrypted(e) => &e.session_id,
        }
    }

    /// The frame's `seq`.
    pub fn seq(&self) -> u64 {
        match self {
            Self::Event(e) => e.seq,
            Self::Encrypted(e) => e.seq,
        }
    }

    /// The sender's protocol version.
    pub fn protocol_version(&self) -> ProtocolVersion {
        match self {
            Self::Event(e) => e.protocol_version,
            Self::Encrypted(e) => e.protocol_version,
        }
    }

    /// The wire `type` string (`"enc"` for envelopes).
    pub fn type_str(&self) -> &'static str {
        match self {
            Self::Event(e) => e.event_type().as_str(),
            Self::Encrypted(_) => ENCRYPTED_TYPE,
        }
    }

    /// The event type of a plaintext frame; `None` for an envelope.
    pub fn event_type(&self) -> Option<EventType> {
        match self {
            Self::Event(e) => Some(e.event_type()),
            Self::Encrypted(_) => None,
        }
    }
}

impl From<StreamEvent> for Frame {
    fn from(event: StreamEvent) -> Self {
        Self::Event(event)
    }
}

impl From<EncryptedEnvelope> for Frame {
    fn from(envelope: EncryptedEnvelope) -> Self {
        Self::Encrypted(envelope)
    }
}

/// The error for a line that did not parse. Kept as serde_json's error, except for one message
/// serde_json gets wrong (see `error::surrogate_error`).
fn json_error(line: &[u8], e: serde_json::Error) -> Error {
    crate::error::surrogate_error(line, &e).unwrap_or(Error::Json(e))
}

/// JavaScript's `String.prototype.trim` set: ASCII whitespace, NBSP, Unicode spaces, line
/// separators and the BOM.
///
/// `enclave-ndjson` trims lines with the same set; the two layers cannot share the function
/// (this crate sits below the framing layer, which must not know the protocol model), so a
/// change here belongs there too.
fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

fn trim_js_whitespace(line: &[u8]) -> &[u8] {
    // `trim_ascii` leaves the vertical tab (U+000B), which JavaScript trims.
    let is_space = |b: &u8| b.is_ascii_whitespace() || *b == 0x0b;
    let start = line.iter().position(|b| !is_space(b)).unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    let ascii = &line[start..end];
    // Only look at Unicode spaces when a non-ASCII byte sits at an edge (rare).
    let edge_non_ascii =
        ascii.first().is_some_and(|b| !b.is_ascii()) || ascii.last().is_some_and(|b| !b.is_ascii());
    if !edge_non_ascii {
        return ascii;
    }
    match std::str::from_utf8(ascii) {
        Ok(s) => s.trim_matches(is_js_whitespace).as_bytes(),
        // Invalid UTF-8 is reported by the JSON parser with its position.
        Err(_) => ascii,
    }
}

/// `type` of a frame: one of the twelve event types, or `enc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameKind {
    Event(EventType),
    Encrypted,
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Event(t) => f.write_str(t.as_str()),
            Self::Encrypted => f.write_str(ENCRYPTED_TYPE),
        }
    }
}

impl<'de> Deserialize<'de> for FrameKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Tag {
            expecting: "an event type string",
            name: "type",
            expected: "one of session_init, stdout, log, tool_call, tool_result_applied, final, \
                       heartbeat, error, partial_result, tool_progress, deadline_exceeded, \
                       catalog_changed, enc",
            parse: |v| {
                if v == ENCRYPTED_TYPE {
                    Some(FrameKind::Encrypted)
                } else {
                    EventType::from_wire(v).map(FrameKind::Event)
                }
            },
        }
        .read(deserializer)
    }
}

pub(crate) enum FramePayload {
    Event(EventPayload),
    Encrypted(EncryptedPayload),
}

impl Discriminant for FrameKind {
    type Payload = FramePayload;

    fn deserialize_payload<'de, D: Deserializer<'de>>(
        self,
        d: D,
    ) -> Result<FramePayload, D::Error> {
        let t = match self {
            Self::Encrypted => {
                return EncryptedPayload::deserialize(d).map(FramePayload::Encrypted)
            }
            Self::Event(t) => t,
        };
        let payload = match t {
            EventType::SessionInit => EventPayload::SessionInit(Deserialize::deserialize(d)?),
            EventType::Stdout => EventPayload::Stdout(Deserialize::deserialize(d)?),
            EventType::Log => EventPayload::Log(Deserialize::deserialize(d)?),
            EventType::ToolCall => EventPayload::ToolCall(Deserialize::deserialize(d)?),
            EventType::ToolResultApplied => {
                EventPayload::ToolResultApplied(Deserialize::deserialize(d)?)
            }
            EventType::Final => EventPayload::Final(Deserialize::deserialize(d)?),
            EventType::Heartbeat => EventPayload::Heartbeat(Deserialize::deserialize(d)?),
            EventType::Error => EventPayload::Error(Deserialize::deserialize(d)?),
            EventType::PartialResult => EventPayload::PartialResult(Deserialize::deserialize(d)?),
            EventType::ToolProgress => EventPayload::ToolProgress(Deserialize::deserialize(d)?),
            EventType::DeadlineExceeded => {
                EventPayload::DeadlineExceeded(Deserialize::deserialize(d)?)
            }
            EventType::CatalogChanged => EventPayload::CatalogChanged(Deserialize::deserialize(d)?),
        };
        Ok(FramePayload::Event(payload))
    }
}

struct FrameVisitor;

impl<'de> Visitor<'de> for FrameVisitor {
    type Value = Frame;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a stream frame object {protocolVersion, sessionId, seq, type, payload}")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Frame, A::Error> {
        let m = visit_message::<FrameKind, A>(map)?;
        let seq = m.seq.ok_or_else(|| de::Error::missing_field("seq"))?;
        Ok(match m.payload {
            FramePayload::Event(payload) => Frame::Event(StreamEvent {
                protocol_version: m.protocol_version,
                session_id: m.session_id,
                seq,
                payload,
            }),
            FramePayload::Encrypted(payload) => Frame::Encrypted(EncryptedEnvelope {
                protocol_version: m.protocol_version,
                session_id: m.session_id,
                seq,
                payload,
            }),
        })
    }
}

impl<'de> Deserialize<'de> for Frame {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FrameVisitor).map_err(bounded)
    }
}

impl<'de> Deserialize<'de> for StreamEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_map(FrameVisitor).map_err(bounded)? {
            Frame::Event(e) => Ok(e),
            Frame::Encrypted(e) => Err(de::Error::custom(format_args!(
                "expected a plaintext event, found an \"enc\" envelope (session {}, seq {}): decrypt it first",
                Cut(e.session_id.as_str()), e.seq
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for EncryptedEnvelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer
            .deserialize_map(FrameVisitor)
            .map_err(bounded)?
        {
            Frame::Encrypted(e) => Ok(e),
            Frame::Event(e) => Err(de::Error::custom(format_args!(
                "expected an \"enc\" envelope, found a plaintext {} event (session {}, seq {})",
                e.event_type(),
                Cut(e.session_id.as_str()),
                e.seq
            ))),
        }
    }
}

/// The shared field order of the TS writer: protocolVersion, sessionId, seq, type, payload.
fn serialize_frame<S: Serializer, P: Serialize>(
    serializer: S,
    name: &'static str,
    protocol_version: ProtocolVersion,
    session_id: &SessionId,
    seq: u64,
    type_str: &'static str,
    payload: &P,
) -> Result<S::Ok, S::Error> {
    let mut s = serializer.serialize_struct(name, 5)?;
    s.serialize_field("protocolVersion", &protocol_version)?;
    s.serialize_field("sessionId", session_id)?;
    s.serialize_field("seq", &Seq(seq))?;
    s.serialize_field("type", type_str)?;
    s.serialize_field("payload", payload)?;
    s.end()
}

impl Serialize for StreamEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_frame(
            serializer,
            "StreamEvent",
            self.protocol_version,
            &self.session_id,
            self.seq,
            self.event_type().as_str(),
            &self.payload,
        )
    }
}

impl Serialize for EncryptedEnvelope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_frame(
            serializer,
            "EncryptedEnvelope",
            self.protocol_version,
            &self.session_id,
            self.seq,
            ENCRYPTED_TYPE,
            &self.payload,
        )
    }
}

impl Serialize for Frame {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Event(e) => e.serialize(serializer),
            Self::Encrypted(e) => e.serialize(serializer),
        }
    }
}

/// What one line of the client → server direction is: a runtime channel message
/// (`tool_result_submit`, `cancel`) or an `enc` envelope around one.
///
/// Read in one pass like [`Frame`]. An envelope needs its `seq`; a plain message may carry one
/// (see [`RuntimeChannelMessage::seq`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageFrame {
    /// A plaintext runtime channel message.
    Message(RuntimeChannelMessage),
    /// An `enc` envelope around a runtime channel message.
    Encrypted(EncryptedEnvelope),
}

impl MessageFrame {
    /// Parses one line: trims it as JavaScript's `trim` does (see [`Frame::parse_line`]),
    /// then parses and validates in one pass.
    pub fn parse_line(line: &[u8]) -> Result<Self, Error> {
        let line = trim_js_whitespace(line);
        serde_json::from_slice(line).map_err(|e| json_error(line, e))
    }

    /// The session the line belongs to.
    pub fn session_id(&self) -> &SessionId {
        match self {
            Self::Message(m) => &m.session_id,
            Self::Encrypted(e) => &e.session_id,
        }
    }

    /// The line's `seq`: always present on an envelope, optional on a plain message.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Self::Message(m) => m.seq,
            Self::Encrypted(e) => Some(e.seq),
        }
    }

    /// The sender's protocol version.
    pub fn protocol_version(&self) -> ProtocolVersion {
        match self {
            Self::Message(m) => m.protocol_version,
            Self::Encrypted(e) => e.protocol_version,
        }
    }

    /// The wire `type` string (`"enc"` for envelopes).
    pub fn type_str(&self) -> &'static str {
        match self {
            Self::Message(m) => m.payload.message_type().as_str(),
            Self::Encrypted(_) => ENCRYPTED_TYPE,
        }
    }
}

impl From<RuntimeChannelMessage> for MessageFrame {
    fn from(message: RuntimeChannelMessage) -> Self {
        Self::Message(message)
    }
}

impl From<EncryptedEnvelope> for MessageFrame {
    fn from(envelope: EncryptedEnvelope) -> Self {
        Self::Encrypted(envelope)
    }
}

/// `type` of a client → server line: a runtime channel message type, or `enc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageKind {
    Message(RuntimeChannelMessageType),
    Encrypted,
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Message(t) => f.write_str(t.as_str()),
            Self::Encrypted => f.write_str(ENCRYPTED_TYPE),
        }
    }
}

impl<'de> Deserialize<'de> for MessageKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Tag {
            expecting: "a runtime channel message type string",
            name: "type",
            expected: "tool_result_submit, cancel or enc",
            parse: |v| match v {
                "tool_result_submit" => {
                    Some(Self::Message(RuntimeChannelMessageType::ToolResultSubmit))
                }
                "cancel" => Some(Self::Message(RuntimeChannelMessageType::Cancel)),
                ENCRYPTED_TYPE => Some(Self::Encrypted),
                _ => None,
            },
        }
        .read(deserializer)
    }
}

enum MessageFramePayload {
    Message(RuntimeChannelPayload),
    Encrypted(EncryptedPayload),
}

impl Discriminant for MessageKind {
    type Payload = MessageFramePayload;

    fn deserialize_payload<'de, D: Deserializer<'de>>(
        self,
        d: D,
    ) -> Result<MessageFramePayload, D::Error> {
        match self {
            Self::Message(t) => t.deserialize_payload(d).map(MessageFramePayload::Message),
            Self::Encrypted => EncryptedPayload::deserialize(d).map(MessageFramePayload::Encrypted),
        }
    }
}

struct MessageFrameVisitor;

impl<'de> Visitor<'de> for MessageFrameVisitor {
    type Value = MessageFrame;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a runtime channel message or an \"enc\" envelope object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MessageFrame, A::Error> {
        let m = visit_message::<MessageKind, A>(map)?;
        Ok(match m.payload {
            MessageFramePayload::Message(payload) => MessageFrame::Message(RuntimeChannelMessage {
                protocol_version: m.protocol_version,
                session_id: m.session_id,
                seq: m.seq,
                payload,
            }),
            MessageFramePayload::Encrypted(payload) => MessageFrame::Encrypted(EncryptedEnvelope {
                protocol_version: m.protocol_version,
                session_id: m.session_id,
                seq: m.seq.ok_or_else(|| de::Error::missing_field("seq"))?,
                payload,
            }),
        })
    }
}

impl<'de> Deserialize<'de> for MessageFrame {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_map(MessageFrameVisitor)
            .map_err(bounded)
    }
}

impl Serialize for MessageFrame {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Message(m) => m.serialize(serializer),
            Self::Encrypted(e) => e.serialize(serializer),
        }
    }
}

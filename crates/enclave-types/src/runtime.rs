//! Runtime channel messages (host ⇄ runtime): `tool_result_submit` and `cancel`, with an
//! optional `seq` of our own (the TS schema has none and strips it).

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use crate::error::bounded;
use crate::event::ErrorInfo;
use crate::id::{CallId, SessionId};
use crate::message::{visit_message, Discriminant, Tag};
use crate::named;
use crate::number::{ProtocolVersion, Seq, PROTOCOL_VERSION};
use crate::optional;
use crate::raw::{self, RawJson};

/// The wire `type` of a runtime channel message. Closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RuntimeChannelMessageType {
    /// `tool_result_submit`: a tool result for the runtime.
    ToolResultSubmit,
    /// `cancel`: stop the session.
    Cancel,
}

impl RuntimeChannelMessageType {
    /// The wire string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ToolResultSubmit => "tool_result_submit",
            Self::Cancel => "cancel",
        }
    }
}

impl fmt::Display for RuntimeChannelMessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RuntimeChannelMessageType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Tag {
            expecting: "a runtime channel message type string",
            name: "type",
            expected: "tool_result_submit or cancel",
            parse: |v| match v {
                "tool_result_submit" => Some(RuntimeChannelMessageType::ToolResultSubmit),
                "cancel" => Some(RuntimeChannelMessageType::Cancel),
                _ => None,
            },
        }
        .read(deserializer)
    }
}

/// `tool_result_submit` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ToolResultSubmitPayload {
    /// The call this result answers.
    pub call_id: CallId,
    /// Whether the tool succeeded.
    #[serde(deserialize_with = "named::ok")]
    pub ok: bool,
    /// The result, kept raw; `null` is kept as `Some`.
    #[serde(
        default,
        deserialize_with = "raw::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub result: Option<RawJson>,
    /// The failure.
    #[serde(
        default,
        deserialize_with = "optional::error",
        skip_serializing_if = "Option::is_none"
    )]
    pub error: Option<ErrorInfo>,
}

/// `cancel` payload.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CancelPayload {
    /// Why.
    #[serde(
        default,
        deserialize_with = "optional::reason",
        skip_serializing_if = "Option::is_none"
    )]
    pub reason: Option<String>,
}

impl ToolResultSubmitPayload {
    /// A result without `result` or `error`.
    pub fn new(call_id: CallId, ok: bool) -> Self {
        Self {
            call_id,
            ok,
            result: None,
            error: None,
        }
    }
}

impl CancelPayload {
    /// A cancellation, with or without a reason.
    pub fn new(reason: Option<String>) -> Self {
        Self { reason }
    }
}

/// The payload of a runtime channel message; its variant decides the wire `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuntimeChannelPayload {
    /// `tool_result_submit`
    ToolResultSubmit(ToolResultSubmitPayload),
    /// `cancel`
    Cancel(CancelPayload),
}

impl From<ToolResultSubmitPayload> for RuntimeChannelPayload {
    fn from(p: ToolResultSubmitPayload) -> Self {
        Self::ToolResultSubmit(p)
    }
}

impl From<CancelPayload> for RuntimeChannelPayload {
    fn from(p: CancelPayload) -> Self {
        Self::Cancel(p)
    }
}

impl RuntimeChannelPayload {
    /// The wire `type`.
    pub const fn message_type(&self) -> RuntimeChannelMessageType {
        match self {
            Self::ToolResultSubmit(_) => RuntimeChannelMessageType::ToolResultSubmit,
            Self::Cancel(_) => RuntimeChannelMessageType::Cancel,
        }
    }
}

impl Discriminant for RuntimeChannelMessageType {
    type Payload = RuntimeChannelPayload;

    fn deserialize_payload<'de, D: Deserializer<'de>>(
        self,
        d: D,
    ) -> Result<RuntimeChannelPayload, D::Error> {
        Ok(match self {
            Self::ToolResultSubmit => {
                RuntimeChannelPayload::ToolResultSubmit(Deserialize::deserialize(d)?)
            }
            Self::Cancel => RuntimeChannelPayload::Cancel(Deserialize::deserialize(d)?),
        })
    }
}

/// A host ⇄ runtime message: `{"protocolVersion","sessionId",["seq",]"type","payload"}`.
///
/// `seq` is not in the TS schema, which ignores it; transports that resume a client's stream
/// number the client's messages from 1 with it. It is written only when set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuntimeChannelMessage {
    /// Protocol version of the sender.
    pub protocol_version: ProtocolVersion,
    /// The session.
    pub session_id: SessionId,
    /// The sender's sequence number, when the transport numbers client messages
    /// (0 ..= [`MAX_SEQ`](crate::MAX_SEQ)).
    pub seq: Option<u64>,
    /// The typed payload.
    pub payload: RuntimeChannelPayload,
}

impl RuntimeChannelMessage {
    /// A message of the current [`PROTOCOL_VERSION`], without `seq`.
    pub fn new(session_id: SessionId, payload: RuntimeChannelPayload) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            session_id,
            seq: None,
            payload,
        }
    }

    /// The same message numbered `seq`.
    #[must_use]
    pub fn with_seq(mut self, seq: u64) -> Self {
        self.seq = Some(seq);
        self
    }
}

impl<'de> Deserialize<'de> for RuntimeChannelMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MessageVisitor;

        impl<'de> Visitor<'de> for MessageVisitor {
            type Value = RuntimeChannelMessage;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a runtime channel message object {protocolVersion, sessionId, type, payload}",
                )
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let m = visit_message::<RuntimeChannelMessageType, A>(map)?;
                Ok(RuntimeChannelMessage {
                    protocol_version: m.protocol_version,
                    session_id: m.session_id,
                    seq: m.seq,
                    payload: m.payload,
                })
            }
        }

        deserializer
            .deserialize_map(MessageVisitor)
            .map_err(bounded)
    }
}

impl Serialize for RuntimeChannelMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("RuntimeChannelMessage", 5)?;
        s.serialize_field("protocolVersion", &self.protocol_version)?;
        s.serialize_field("sessionId", &self.session_id)?;
        match self.seq {
            Some(seq) => s.serialize_field("seq", &Seq(seq))?,
            None => s.skip_field("seq")?,
        }
        s.serialize_field("type", self.payload.message_type().as_str())?;
        match &self.payload {
            RuntimeChannelPayload::ToolResultSubmit(p) => s.serialize_field("payload", p)?,
            RuntimeChannelPayload::Cancel(p) => s.serialize_field("payload", p)?,
        }
        s.end()
    }
}

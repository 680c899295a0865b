//! Runtime channel messages (host ⇄ runtime): `tool_result_submit` and `cancel`. No `seq`.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use crate::error::bounded;
use crate::event::ErrorInfo;
use crate::id::{CallId, SessionId};
use crate::message::{visit_message, Discriminant, Tag};
use crate::named;
use crate::number::{ProtocolVersion, PROTOCOL_VERSION};
use crate::optional;
use crate::raw::{self, RawJson};

/// The wire `type` of a runtime channel message. Closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
pub struct CancelPayload {
    /// Why.
    #[serde(
        default,
        deserialize_with = "optional::reason",
        skip_serializing_if = "Option::is_none"
    )]
    pub reason: Option<String>,
}

/// The payload of a runtime channel message; its variant decides the wire `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeChannelPayload {
    /// `tool_result_submit`
    ToolResultSubmit(ToolResultSubmitPayload),
    /// `cancel`
    Cancel(CancelPayload),
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

/// A host ⇄ runtime message: `{"protocolVersion","sessionId","type","payload"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeChannelMessage {
    /// Protocol version of the sender.
    pub protocol_version: ProtocolVersion,
    /// The session.
    pub session_id: SessionId,
    /// The typed payload.
    pub payload: RuntimeChannelPayload,
}

impl RuntimeChannelMessage {
    /// A message of the current [`PROTOCOL_VERSION`].
    pub fn new(session_id: SessionId, payload: RuntimeChannelPayload) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            session_id,
            payload,
        }
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
                let m = visit_message::<RuntimeChannelMessageType, A>(map, false)?;
                Ok(RuntimeChannelMessage {
                    protocol_version: m.protocol_version,
                    session_id: m.session_id,
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
        let mut s = serializer.serialize_struct("RuntimeChannelMessage", 4)?;
        s.serialize_field("protocolVersion", &self.protocol_version)?;
        s.serialize_field("sessionId", &self.session_id)?;
        s.serialize_field("type", self.payload.message_type().as_str())?;
        match &self.payload {
            RuntimeChannelPayload::ToolResultSubmit(p) => s.serialize_field("payload", p)?,
            RuntimeChannelPayload::Cancel(p) => s.serialize_field("payload", p)?,
        }
        s.end()
    }
}

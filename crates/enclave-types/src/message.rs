//! The one-pass parser shared by every `{protocolVersion, sessionId, [seq,] type, payload}` message.
//!
//! serde's internally tagged enums buffer the whole object into an intermediate tree before
//! choosing a variant; this map visitor instead reads `type` first (the usual key order) and
//! then deserializes `payload` straight into its typed struct. When `payload` comes before
//! `type`, its text is captured once as a raw value and parsed when `type` is known.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{cut, shorten_quotes, strip_position, Cut};
use crate::id::SessionId;
use crate::number::{ProtocolVersion, SafeInteger};

/// A message family's `type` discriminator: it knows how to read the payload it announces.
pub(crate) trait Discriminant:
    Copy + PartialEq + fmt::Display + for<'de> Deserialize<'de>
{
    /// What the discriminator selects.
    type Payload;

    /// Reads the payload for this `type`.
    fn deserialize_payload<'de, D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Payload, D::Error>;
}

struct PayloadSeed<K>(K);

impl<'de, K: Discriminant> DeserializeSeed<'de> for PayloadSeed<K> {
    type Value = K::Payload;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<K::Payload, D::Error> {
        self.0.deserialize_payload(deserializer)
    }
}

/// The top-level keys; anything else is skipped, as zod strips unknown keys.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum Key {
    ProtocolVersion,
    SessionId,
    Seq,
    Type,
    Payload,
    #[serde(other)]
    Other,
}

/// A parsed message before the caller picks its own struct.
pub(crate) struct Message<K: Discriminant> {
    pub(crate) protocol_version: ProtocolVersion,
    pub(crate) session_id: SessionId,
    /// `None` when the line has none (runtime channel messages may omit it).
    pub(crate) seq: Option<u64>,
    pub(crate) payload: K::Payload,
}

/// Says which payload failed, and for which session and seq when those were already read.
fn payload_error<E: de::Error>(
    kind: &dyn fmt::Display,
    session_id: Option<&SessionId>,
    seq: Option<u64>,
    cause: &dyn fmt::Display,
) -> E {
    let cause = cause.to_string();
    let cause = shorten_quotes(strip_position(&cause));
    let session_id = session_id.map(|s| Cut(s.as_str()));
    match (session_id, seq) {
        (Some(s), Some(n)) => E::custom(format_args!(
            "invalid {kind} payload (session {s}, seq {n}): {cause}"
        )),
        (Some(s), None) => E::custom(format_args!(
            "invalid {kind} payload (session {s}): {cause}"
        )),
        _ => E::custom(format_args!("invalid {kind} payload: {cause}")),
    }
}

/// Reads one message object in a single pass. Duplicate keys: the last one wins, like
/// `JSON.parse`, except that a second `type` may not change a payload already read. A present
/// `seq` is always checked; whether it is required is the caller's rule.
pub(crate) fn visit_message<'de, K: Discriminant, A: MapAccess<'de>>(
    mut map: A,
) -> Result<Message<K>, A::Error> {
    let mut protocol_version = None;
    let mut session_id: Option<SessionId> = None;
    let mut seq = None;
    let mut kind: Option<K> = None;
    let mut payload: Option<(K, K::Payload)> = None;
    let mut raw_payload: Option<Box<RawValue>> = None;

    while let Some(key) = map.next_key::<Key>()? {
        match key {
            Key::ProtocolVersion => protocol_version = Some(map.next_value()?),
            Key::SessionId => session_id = Some(map.next_value()?),
            Key::Seq => {
                seq = Some(map.next_value_seed(SafeIntegerSeed)?);
            }
            Key::Type => {
                let k: K = map.next_value()?;
                if let Some((parsed_as, _)) = &payload {
                    if *parsed_as != k {
                        return Err(de::Error::custom(format_args!(
                            "duplicate \"type\" keys ({parsed_as} then {k}) after the payload"
                        )));
                    }
                }
                kind = Some(k);
            }
            Key::Payload => {
                if let Some(k) = kind {
                    let p = map
                        .next_value_seed(PayloadSeed(k))
                        .map_err(|e| payload_error(&k, session_id.as_ref(), seq, &e))?;
                    payload = Some((k, p));
                    raw_payload = None;
                } else {
                    // `type` not seen yet: keep the text and parse it once `type` is known.
                    raw_payload = Some(map.next_value()?);
                    payload = None;
                }
            }
            Key::Other => {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
    }

    let protocol_version =
        protocol_version.ok_or_else(|| de::Error::missing_field("protocolVersion"))?;
    let session_id = session_id.ok_or_else(|| de::Error::missing_field("sessionId"))?;
    let kind = kind.ok_or_else(|| de::Error::missing_field("type"))?;
    let payload = match (payload, raw_payload) {
        (_, Some(raw)) => {
            let mut de = serde_json::Deserializer::from_str(raw.get());
            kind.deserialize_payload(&mut de)
                .map_err(|e| payload_error(&kind, Some(&session_id), seq, &e))?
        }
        (Some((_, p)), None) => p,
        (None, None) => return Err(de::Error::missing_field("payload")),
    };
    Ok(Message {
        protocol_version,
        session_id,
        seq,
        payload,
    })
}

struct SafeIntegerSeed;

impl<'de> DeserializeSeed<'de> for SafeIntegerSeed {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<u64, D::Error> {
        SafeInteger("seq").read(deserializer)
    }
}

/// How a closed string tag (`type`, an error detail's `type`) is read and what its errors say.
pub(crate) struct Tag<T> {
    /// For serde's "invalid type" errors, e.g. `an event type string`.
    pub(crate) expecting: &'static str,
    /// Names the tag in the unknown-value error, e.g. `type`.
    pub(crate) name: &'static str,
    /// The known values, listed in the unknown-value error.
    pub(crate) expected: &'static str,
    /// Maps a known value.
    pub(crate) parse: fn(&str) -> Option<T>,
}

impl<T> Tag<T> {
    /// Reads the tag: a string that `parse` knows, or an error naming the value received.
    pub(crate) fn read<'de, D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_str(self)
    }
}

impl<T> Visitor<'_> for Tag<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).ok_or_else(|| {
            E::custom(format_args!(
                "unknown {} {:?}: expected {}",
                self.name,
                cut(v),
                self.expected
            ))
        })
    }
}

//! Opaque JSON (`args`, `result`, `data`): kept as the exact text received, never parsed into a tree.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::error::Error;

/// A JSON value this layer carries but does not interpret, such as `tool_call.args`.
///
/// Holding the text instead of a `serde_json::Value` keeps parsing a single pass with one
/// allocation per value. Equality compares the text, so `{"a":1}` and `{ "a": 1 }` differ.
#[derive(Clone)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// Checks that `json` is one well-formed JSON value and keeps its text.
    pub fn from_string(json: String) -> Result<Self, Error> {
        RawValue::from_string(json)
            .map(Self)
            .map_err(|e| Error::InvalidField {
                field: "raw JSON",
                reason: e.to_string(),
            })
    }

    /// Serializes `value` to compact JSON text.
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        serde_json::value::to_raw_value(value)
            .map(Self)
            .map_err(|e| Error::InvalidField {
                field: "raw JSON",
                reason: e.to_string(),
            })
    }

    /// JSON `null`.
    pub fn null() -> Self {
        Self(RawValue::NULL.to_owned())
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Whether the value is a JSON object (the text as received starts with `{`).
    pub fn is_object(&self) -> bool {
        self.get().starts_with('{')
    }

    /// The underlying `serde_json` raw value.
    pub fn as_raw_value(&self) -> &RawValue {
        &self.0
    }
}

impl From<Box<RawValue>> for RawJson {
    fn from(raw: Box<RawValue>) -> Self {
        Self(raw)
    }
}

impl From<RawJson> for Box<RawValue> {
    fn from(raw: RawJson) -> Self {
        raw.0
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for RawJson {}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl fmt::Display for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(Self)
    }
}

/// An optional opaque field: present (even as `null`) is `Some`, so `null` is not lost.
/// Pair with `#[serde(default)]` so absence gives `None`.
pub(crate) fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RawJson>, D::Error> {
    RawJson::deserialize(d).map(Some)
}

/// `log.data`: a JSON object (a string-keyed record in the TS schema), kept raw. Writing
/// refuses what reading refuses, since a hand-built [`RawJson`] can hold any JSON.
pub(crate) mod object_data {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::RawJson;
    use crate::error::Error;

    fn not_an_object() -> Error {
        Error::InvalidField {
            field: "data",
            reason: "must be a JSON object".to_owned(),
        }
    }

    #[allow(clippy::ref_option)] // serde(with) hands the field by reference.
    pub(crate) fn serialize<S: Serializer>(v: &Option<RawJson>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(raw) if !raw.is_object() => Err(serde::ser::Error::custom(not_an_object())),
            _ => v.serialize(s),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<RawJson>, D::Error> {
        let raw = RawJson::deserialize(d)?;
        if raw.is_object() {
            Ok(Some(raw))
        } else {
            Err(serde::de::Error::custom(not_an_object()))
        }
    }
}

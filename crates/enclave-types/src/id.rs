//! Prefixed ids: `s_…` sessions, `c_…` tool calls, `ref_…` sidecar references.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{cut, Error};

/// Checks `value` against `prefix` the way the TS schemas do (`startsWith` + one more char).
fn check(field: &'static str, prefix: &'static str, value: &str) -> Result<(), Error> {
    let reason = if !value.starts_with(prefix) {
        format!("must start with {prefix:?}")
    } else if value.len() == prefix.len() {
        format!("needs at least one character after {prefix:?}")
    } else {
        return Ok(());
    };
    Err(Error::InvalidId {
        field,
        value: cut(value),
        reason,
    })
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $field:literal) => {
        $(#[$doc])*
        ///
        /// Cloning is cheap (the text is shared, not copied): a session's id goes into
        /// every event it publishes.
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// Validates `value` (prefix plus at least one character) and wraps it.
            pub fn new(value: impl Into<String>) -> Result<Self, Error> {
                let value = value.into();
                check($field, $prefix, &value)?;
                Ok(Self(value.into()))
            }

            /// A fresh id: the prefix followed by a random (v4) UUID, like the TS generators.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, uuid::Uuid::new_v4()).into())
            }

            /// The id as it appears on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Gives back the owned text.
            pub fn into_string(self) -> String {
                self.0.as_ref().to_owned()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Error> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct IdVisitor;

                impl Visitor<'_> for IdVisitor {
                    type Value = $name;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a {} string starting with {:?}", $field, $prefix)
                    }

                    // Checked on the borrowed text so a bad id costs no allocation.
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        check($field, $prefix, v).map_err(E::custom)?;
                        Ok($name(v.into()))
                    }

                    fn visit_string<E: de::Error>(self, v: String) -> Result<$name, E> {
                        check($field, $prefix, &v).map_err(E::custom)?;
                        Ok($name(v.into()))
                    }
                }

                deserializer.deserialize_str(IdVisitor)
            }
        }
    };
}

prefixed_id!(
    /// A session id: `s_` followed by at least one character (`s_<uuid>` when generated).
    SessionId,
    "s_",
    "sessionId"
);
prefixed_id!(
    /// A tool call id: `c_` followed by at least one character.
    CallId,
    "c_",
    "callId"
);
prefixed_id!(
    /// A sidecar reference id: `ref_` followed by at least one character.
    RefId,
    "ref_",
    "refId"
);

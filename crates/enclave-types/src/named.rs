//! Required fields whose errors name them.
//!
//! serde's own messages for a wrong type (`invalid type: integer `5`, expected a string`) do not
//! say which field was wrong; these wrappers add the wire name. They cost nothing on success.
//!
//! Why one function per field rather than re-parsing a failed line with a path-tracking
//! deserializer: the hot path is `serde_json::from_slice::<Frame>` called by the generic NDJSON
//! layer, which cannot re-parse with our tracker, so its errors would lose the field names; and
//! the wrappers are free when parsing succeeds (the throughput bench decodes no faster with
//! them stubbed out), so a re-parse could at best match them.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::error::{shorten_quotes, strip_position};

/// Prefixes `cause` with the field's name, dropping serde_json's inner position (the
/// enclosing object adds its own).
pub(crate) fn rename<E: de::Error>(field: &'static str, cause: &dyn fmt::Display) -> E {
    let cause = cause.to_string();
    E::custom(format_args!(
        "invalid {field}: {}",
        shorten_quotes(strip_position(&cause))
    ))
}

/// Names the field in `e` unless its text already does (a number visitor's own errors do;
/// the parser's `number out of range` for `1e400` does not).
pub(crate) fn name_if_missing<E: de::Error>(field: &'static str, e: E) -> E {
    let text = e.to_string();
    if text.contains(field) {
        e
    } else {
        rename(field, &text)
    }
}

/// Reads a field, naming it in the error.
pub(crate) fn named<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    field: &'static str,
) -> Result<T, D::Error> {
    T::deserialize(d).map_err(|e| rename(field, &e))
}

/// One `deserialize_with` function per wire name.
macro_rules! named_fields {
    ($($name:ident => $field:literal),* $(,)?) => {
        $(
            pub(crate) fn $name<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
                d: D,
            ) -> Result<T, D::Error> {
                named(d, $field)
            }
        )*
    };
}

named_fields! {
    added_actions => "addedActions",
    cancel_on_first_error => "cancelOnFirstError",
    cancel_url => "cancelUrl",
    chunk => "chunk",
    client_ephemeral_pub_key_b64 => "clientEphemeralPubKeyB64",
    code => "code",
    curve => "curve",
    enabled => "enabled",
    field => "field",
    has_next => "hasNext",
    kdf => "kdf",
    key_id => "keyId",
    level => "level",
    message => "message",
    mode => "mode",
    ok => "ok",
    path => "path",
    phase => "phase",
    reason => "reason",
    removed_actions => "removedActions",
    selected_algorithm => "selectedAlgorithm",
    server_ephemeral_pub_key_b64 => "serverEphemeralPubKeyB64",
    supported_algorithms => "supportedAlgorithms",
    url => "url",
}

/// Strings that must not be empty (`toolName`, `version`, `kid`, …), checked both ways: a
/// hand-built value can hold an empty string, and we never write what we would refuse.
pub(crate) mod non_empty {
    use serde::{Deserializer, Serializer};

    use crate::error::Error;

    fn empty(field: &'static str) -> Error {
        Error::InvalidField {
            field,
            reason: "must not be empty".to_owned(),
        }
    }

    fn read<'de, D: Deserializer<'de>>(d: D, field: &'static str) -> Result<String, D::Error> {
        let s: String = super::named(d, field)?;
        if s.is_empty() {
            Err(serde::de::Error::custom(empty(field)))
        } else {
            Ok(s)
        }
    }

    fn write<S: Serializer>(v: &str, s: S, field: &'static str) -> Result<S::Ok, S::Error> {
        if v.is_empty() {
            Err(serde::ser::Error::custom(empty(field)))
        } else {
            s.serialize_str(v)
        }
    }

    /// One `serde(with)` module per wire name.
    macro_rules! non_empty_fields {
        ($($name:ident => $field:literal),* $(,)?) => {
            $(
                pub(crate) mod $name {
                    use serde::{Deserializer, Serializer};

                    pub(crate) fn serialize<S: Serializer>(
                        v: &str,
                        s: S,
                    ) -> Result<S::Ok, S::Error> {
                        super::write(v, s, $field)
                    }

                    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
                        d: D,
                    ) -> Result<String, D::Error> {
                        super::read(d, $field)
                    }
                }
            )*
        };
    }

    non_empty_fields! {
        tool_name => "toolName",
        catalog_version => "version",
        kid => "kid",
        nonce_b64 => "nonceB64",
        ciphertext_b64 => "ciphertextB64",
    }
}

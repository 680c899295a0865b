//! Required fields whose errors name them.
//!
//! serde's own messages for a wrong type (`invalid type: integer `5`, expected a string`) do not
//! say which field was wrong; these wrappers add the wire name. They cost nothing on success.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde::Deserialize;

use crate::message::strip_position;

/// Prefixes `cause` with the field's name, dropping serde_json's inner position (the
/// enclosing object adds its own).
pub(crate) fn rename<E: de::Error>(field: &'static str, cause: &dyn fmt::Display) -> E {
    let cause = cause.to_string();
    E::custom(format_args!("invalid {field}: {}", strip_position(&cause)))
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

/// Reads a closed string enum (`level`, `phase`, `mode`), naming the field. Going through
/// `deserialize_str` makes a wrong JSON type say so; serde_json's enum path only says
/// "expected value".
fn named_enum<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
    field: &'static str,
) -> Result<T, D::Error> {
    struct EnumStr<T>(PhantomData<T>);

    impl<T: DeserializeOwned> Visitor<'_> for EnumStr<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            T::deserialize(IntoDeserializer::<de::value::Error>::into_deserializer(v))
                .map_err(E::custom)
        }
    }

    d.deserialize_str(EnumStr(PhantomData))
        .map_err(|e| rename(field, &e))
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

/// The same for closed string enums.
macro_rules! named_enums {
    ($($name:ident => $field:literal),* $(,)?) => {
        $(
            pub(crate) fn $name<'de, D: Deserializer<'de>, T: DeserializeOwned>(
                d: D,
            ) -> Result<T, D::Error> {
                named_enum(d, $field)
            }
        )*
    };
}

named_enums! {
    level => "level",
    mode => "mode",
    phase => "phase",
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
    message => "message",
    ok => "ok",
    path => "path",
    reason => "reason",
    removed_actions => "removedActions",
    selected_algorithm => "selectedAlgorithm",
    server_ephemeral_pub_key_b64 => "serverEphemeralPubKeyB64",
    supported_algorithms => "supportedAlgorithms",
    url => "url",
}

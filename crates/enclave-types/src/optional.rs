//! Optional fields as zod's `.optional()` reads them: absent is `None`, `null` is refused.
//!
//! serde's `Option<T>` maps `null` to `None`, which would accept lines the TypeScript schema
//! refuses and then drop the key when writing them back.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::error::Error;

struct NotNull<T>(&'static str, PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for NotNull<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (omitted when absent, never null)", self.0)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Err(self.null())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Err(self.null())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        T::deserialize(d)
            .map(Some)
            .map_err(|e| crate::named::rename(self.0, &e))
    }
}

impl<T> NotNull<T> {
    fn null<E: de::Error>(&self) -> E {
        E::custom(Error::InvalidField {
            field: self.0,
            reason: "must be omitted when absent, not null".to_owned(),
        })
    }
}

/// Reads a present optional field; pair with `#[serde(default)]` so absence gives `None`.
fn not_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    field: &'static str,
) -> Result<Option<T>, D::Error> {
    d.deserialize_option(NotNull(field, PhantomData))
}

/// One `deserialize_with` function per wire name, so the error names the field.
macro_rules! optional_fields {
    ($($name:ident => $field:literal),* $(,)?) => {
        $(
            pub(crate) fn $name<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
                d: D,
            ) -> Result<Option<T>, D::Error> {
                not_null(d, $field)
            }
        )*
    };
}

optional_fields! {
    client_hello => "clientHello",
    code => "code",
    details => "details",
    error => "error",
    errors => "errors",
    key_id => "keyId",
    server_hello => "serverHello",
    path => "path",
    reason => "reason",
    recoverable => "recoverable",
    replay_url => "replayUrl",
    signature_b64 => "signatureB64",
    stack => "stack",
    stats => "stats",
    tag_b64 => "tagB64",
}

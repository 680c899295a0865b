//! Reading an [`ErrorDetail`] in one pass.
//!
//! serde's internally tagged enums buffer the whole object into a tree before choosing a
//! variant, and that tree recurses: an unknown key nested deeper than serde_json's limit was
//! refused although TS strips it. This visitor reads fields straight into their slots once
//! `type` is known; a field seen before `type` is kept as raw text and parsed at the end.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{shorten_quotes, strip_position};
use crate::event::ErrorDetail;
use crate::message::Tag;
use crate::{named, number};

/// `type` of a detail. Closed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Retry,
    Upstream,
    Validation,
    Quota,
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Tag {
            expecting: "an error detail type string",
            name: "error detail type",
            expected: "retry_info, upstream_info, validation_info or quota_info",
            parse: |v| match v {
                "retry_info" => Some(Kind::Retry),
                "upstream_info" => Some(Kind::Upstream),
                "validation_info" => Some(Kind::Validation),
                "quota_info" => Some(Kind::Quota),
                _ => None,
            },
        }
        .read(d)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum Key {
    Type,
    RetryDelayMs,
    StatusCode,
    Url,
    Field,
    Reason,
    Limit,
    Used,
    #[serde(other)]
    Other,
}

impl Key {
    /// Whether the field belongs to `kind`; others are stripped, as zod does.
    fn belongs_to(self, kind: Kind) -> bool {
        matches!(
            (kind, self),
            (Kind::Retry, Self::RetryDelayMs)
                | (Kind::Upstream, Self::StatusCode | Self::Url)
                | (Kind::Validation, Self::Field | Self::Reason)
                | (Kind::Quota, Self::Limit | Self::Used)
        )
    }
}

/// One field's value with its rule, readable from the map or from captured text.
macro_rules! field_type {
    ($name:ident, $ty:ty, $read:path) => {
        struct $name($ty);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $read(d).map(Self)
            }
        }
    };
}

field_type!(RetryDelayMs, f64, number::retry_delay_ms::deserialize);
field_type!(StatusCode, i64, number::status_code::deserialize);
field_type!(Url, String, named::url);
field_type!(Field, String, named::field);
field_type!(Reason, String, named::reason);
field_type!(Limit, f64, number::quota_limit::deserialize);
field_type!(Used, f64, number::quota_used::deserialize);

/// A field slot: not seen, seen before `type` (raw text), or read.
enum Slot<T> {
    Empty,
    Raw(Box<RawValue>),
    Ready(T),
}

impl<T> Slot<T> {
    fn read<'de, A: MapAccess<'de>>(&mut self, map: &mut A, typed: bool) -> Result<(), A::Error>
    where
        T: Deserialize<'de>,
    {
        *self = if typed {
            Self::Ready(map.next_value()?)
        } else {
            Self::Raw(map.next_value()?)
        };
        Ok(())
    }

    fn finish<E: de::Error>(self, field: &'static str) -> Result<T, E>
    where
        T: for<'a> Deserialize<'a>,
    {
        match self {
            Self::Ready(v) => Ok(v),
            Self::Raw(raw) => serde_json::from_str(raw.get())
                .map_err(|e| E::custom(shorten_quotes(strip_position(&e.to_string())))),
            Self::Empty => Err(E::missing_field(field)),
        }
    }
}

struct DetailVisitor;

impl<'de> Visitor<'de> for DetailVisitor {
    type Value = ErrorDetail;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an error detail object tagged by \"type\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ErrorDetail, A::Error> {
        let mut kind: Option<Kind> = None;
        let mut retry = Slot::<RetryDelayMs>::Empty;
        let mut status = Slot::<StatusCode>::Empty;
        let mut url = Slot::<Url>::Empty;
        let mut field = Slot::<Field>::Empty;
        let mut reason = Slot::<Reason>::Empty;
        let mut limit = Slot::<Limit>::Empty;
        let mut used = Slot::<Used>::Empty;
        while let Some(key) = map.next_key::<Key>()? {
            // A known field read before `type`, or under another `type` than the last one,
            // is kept as text: a later `type` key may still claim it (last key wins).
            let typed = kind.is_some_and(|k| key.belongs_to(k));
            match key {
                Key::Type => kind = Some(map.next_value()?),
                Key::RetryDelayMs => retry.read(&mut map, typed)?,
                Key::StatusCode => status.read(&mut map, typed)?,
                Key::Url => url.read(&mut map, typed)?,
                Key::Field => field.read(&mut map, typed)?,
                Key::Reason => reason.read(&mut map, typed)?,
                Key::Limit => limit.read(&mut map, typed)?,
                Key::Used => used.read(&mut map, typed)?,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(
            match kind.ok_or_else(|| de::Error::missing_field("type"))? {
                Kind::Retry => ErrorDetail::RetryInfo {
                    retry_delay_ms: retry.finish::<A::Error>("retryDelayMs")?.0,
                },
                Kind::Upstream => ErrorDetail::UpstreamInfo {
                    status_code: status.finish::<A::Error>("statusCode")?.0,
                    url: url.finish::<A::Error>("url")?.0,
                },
                Kind::Validation => ErrorDetail::ValidationInfo {
                    field: field.finish::<A::Error>("field")?.0,
                    reason: reason.finish::<A::Error>("reason")?.0,
                },
                Kind::Quota => ErrorDetail::QuotaInfo {
                    limit: limit.finish::<A::Error>("limit")?.0,
                    used: used.finish::<A::Error>("used")?.0,
                },
            },
        )
    }
}

impl<'de> Deserialize<'de> for ErrorDetail {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(DetailVisitor)
    }
}

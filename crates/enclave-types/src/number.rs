//! JSON numbers as JavaScript sees them: `seq` and counters are "safe integers", so `1.0` and
//! `1e3` are integers, and integral values are written without a fraction.

use std::fmt;

use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{cut, Error};

/// The largest `seq` (and counter) the protocol allows: `Number.MAX_SAFE_INTEGER`, 2^53 − 1.
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// The protocol version this crate writes.
pub const PROTOCOL_VERSION: ProtocolVersion = ProtocolVersion::V2;

/// A protocol version: 2 is current, 1 is still accepted on the wire. A JSON number on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[non_exhaustive]
pub enum ProtocolVersion {
    /// Version 1: the first eight event types.
    V1,
    /// Version 2: adds `partial_result`, `tool_progress`, `deadline_exceeded`, `catalog_changed`.
    #[default]
    V2,
}

impl ProtocolVersion {
    /// The number written on the wire.
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }

    /// The version for a wire number, if this crate speaks it.
    pub const fn from_u64(n: u64) -> Option<Self> {
        match n {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u8())
    }
}

impl Serialize for ProtocolVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.as_u8())
    }
}

impl<'de> Deserialize<'de> for ProtocolVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = SafeInteger("protocolVersion").read(deserializer)?;
        Self::from_u64(n).ok_or_else(|| {
            de::Error::custom(Error::InvalidField {
                field: "protocolVersion",
                reason: format!("unsupported version {n} (this peer speaks 1 and 2)"),
            })
        })
    }
}

/// Reads a non-negative JS safe integer (`seq`, counters); every error names the field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SafeInteger(pub(crate) &'static str);

impl SafeInteger {
    /// Reads the field; the visitor refuses anything below zero, so the value fits a `u64`.
    pub(crate) fn read<'de, D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        JsInteger::read(self.0, 0, d).map(i64::unsigned_abs)
    }
}

/// Reads a JS safe integer of either sign (zod's `.int()` without a bound), such as `statusCode`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignedSafeInteger(pub(crate) &'static str);

impl SignedSafeInteger {
    /// Reads the field; every error names it.
    pub(crate) fn read<'de, D: Deserializer<'de>>(self, d: D) -> Result<i64, D::Error> {
        JsInteger::read(self.0, -MAX_SAFE, d)
    }
}

/// `MAX_SEQ` as a signed bound: the largest integer a JS number holds exactly.
#[allow(clippy::cast_possible_wrap)] // 2^53 - 1 fits an i64.
const MAX_SAFE: i64 = MAX_SEQ as i64;

/// The visitor behind both: an integer in `min..=MAX_SAFE`, where JSON.parse makes `1.0` and
/// `1e3` plain numbers and zod's `.int()` accepts them.
#[derive(Debug, Clone, Copy)]
struct JsInteger {
    field: &'static str,
    min: i64,
}

impl JsInteger {
    fn read<'de, D: Deserializer<'de>>(
        field: &'static str,
        min: i64,
        d: D,
    ) -> Result<i64, D::Error> {
        d.deserialize_any(Self { field, min })
            .map_err(|e| crate::named::name_if_missing(field, e))
    }

    fn out_of_range<E: de::Error>(self, shown: &dyn fmt::Display) -> E {
        E::custom(Error::InvalidField {
            field: self.field,
            reason: format!(
                "{shown} is not an integer between {} and {MAX_SEQ}",
                self.min
            ),
        })
    }
}

impl Visitor<'_> for JsInteger {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == 0 {
            write!(f, "{} as a non-negative integer", self.field)
        } else {
            write!(f, "{} as an integer", self.field)
        }
    }

    // serde's default would quote the whole string.
    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        Err(E::invalid_type(Unexpected::Str(&cut(v)), &self))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_or_else(|_| Err(self.out_of_range(&v)), |v| self.visit_i64(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        if (self.min..=MAX_SAFE).contains(&v) {
            Ok(v)
        } else {
            Err(self.out_of_range(&v))
        }
    }

    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        // Both bounds are exact in an f64 (|bound| <= 2^53 - 1).
        if v.fract() == 0.0 && (self.min as f64..=MAX_SAFE as f64).contains(&v) {
            Ok(v as i64)
        } else {
            Err(self.out_of_range(&v))
        }
    }
}

/// Writes a counter, refusing values JavaScript cannot represent exactly.
pub(crate) fn serialize_safe_integer<S: Serializer>(
    field: &'static str,
    v: u64,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if v > MAX_SEQ {
        return Err(serde::ser::Error::custom(Error::InvalidField {
            field,
            reason: format!("{v} exceeds {MAX_SEQ}"),
        }));
    }
    serializer.serialize_u64(v)
}

/// Writes `seq` through the safe-integer check.
pub(crate) struct Seq(pub(crate) u64);

impl Serialize for Seq {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_safe_integer("seq", self.0, serializer)
    }
}

/// The rule of a JS number field: finite, and `min <= v` (or `min < v` when `exclusive`).
fn check_number(field: &'static str, v: f64, min: f64, exclusive: bool) -> Result<(), Error> {
    let ok = v.is_finite() && if exclusive { v > min } else { v >= min };
    if ok {
        return Ok(());
    }
    let op = if exclusive { ">" } else { ">=" };
    Err(Error::InvalidField {
        field,
        reason: format!("{v} must be a finite number {op} {min}"),
    })
}

/// Writes a JS number field, refusing what its rule refuses (serde_json would turn NaN and
/// infinities into `null`). Integral values below 1e21 are written as digits without a
/// fraction (`100`, not `100.0`), like `JSON.stringify`.
#[allow(clippy::cast_possible_truncation)]
pub(crate) fn serialize_number<S: Serializer>(
    field: &'static str,
    v: f64,
    min: f64,
    exclusive: bool,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    check_number(field, v, min, exclusive).map_err(serde::ser::Error::custom)?;
    if v.fract() == 0.0 && v.abs() < 1e21 {
        // Exact: an integral f64 below 1e21 fits an i128.
        serializer.serialize_i128(v as i128)
    } else {
        serializer.serialize_f64(v)
    }
}

/// Reads any JSON number as `f64` and checks the field's rule.
pub(crate) fn deserialize_number<'de, D: Deserializer<'de>>(
    deserializer: D,
    field: &'static str,
    min: f64,
    exclusive: bool,
) -> Result<f64, D::Error> {
    let v: f64 = crate::named::named(deserializer, field)?;
    check_number(field, v, min, exclusive).map_err(de::Error::custom)?;
    Ok(v)
}

/// Defines a `serde(with)` module for a counter, named after its wire field so errors can
/// name it without a second pass.
macro_rules! safe_integer_field {
    ($module:ident, $field:literal) => {
        pub(crate) mod $module {
            use serde::{Deserializer, Serializer};

            #[allow(clippy::trivially_copy_pass_by_ref)]
            pub(crate) fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
                super::serialize_safe_integer($field, *v, s)
            }

            pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
                super::SafeInteger($field).read(d)
            }
        }
    };
}

/// The same for an optional counter; pair with `serde(default)` so absence gives `None`.
macro_rules! optional_safe_integer_field {
    ($module:ident, $field:literal) => {
        pub(crate) mod $module {
            use serde::{Deserializer, Serializer};

            #[allow(clippy::ref_option)]
            pub(crate) fn serialize<S: Serializer>(
                v: &Option<u64>,
                s: S,
            ) -> Result<S::Ok, S::Error> {
                match v {
                    Some(v) => super::serialize_safe_integer($field, *v, s),
                    None => s.serialize_none(),
                }
            }

            pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
                d: D,
            ) -> Result<Option<u64>, D::Error> {
                super::SafeInteger($field).read(d).map(Some)
            }
        }
    };
}

/// The same for a JS number with a lower bound (`exclusive`: strictly greater).
macro_rules! number_field {
    ($module:ident, $field:literal, $min:expr, $exclusive:expr) => {
        pub(crate) mod $module {
            use serde::{Deserializer, Serializer};

            #[allow(clippy::trivially_copy_pass_by_ref)]
            pub(crate) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
                super::serialize_number($field, *v, $min, $exclusive, s)
            }

            pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
                super::deserialize_number(d, $field, $min, $exclusive)
            }
        }
    };
}

/// `upstream_info.statusCode`: any safe integer, as the TS schema has no sign rule.
pub(crate) mod status_code {
    use serde::{Deserializer, Serializer};

    use super::{SignedSafeInteger, MAX_SEQ};
    use crate::error::Error;

    #[allow(clippy::trivially_copy_pass_by_ref)]
    pub(crate) fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        if v.unsigned_abs() > MAX_SEQ {
            return Err(serde::ser::Error::custom(Error::InvalidField {
                field: "statusCode",
                reason: format!("{v} is not an integer between -{MAX_SEQ} and {MAX_SEQ}"),
            }));
        }
        s.serialize_i64(*v)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        SignedSafeInteger("statusCode").read(d)
    }
}

safe_integer_field!(tool_call_count, "toolCallCount");
safe_integer_field!(stdout_bytes, "stdoutBytes");
safe_integer_field!(deadline_ms, "deadlineMs");
optional_safe_integer_field!(bytes_received, "bytesReceived");
optional_safe_integer_field!(total_bytes, "totalBytes");
number_field!(duration_ms, "durationMs", 0.0, false);
number_field!(elapsed_ms, "elapsedMs", 0.0, false);
number_field!(retry_delay_ms, "retryDelayMs", 0.0, false);
number_field!(budget_ms, "budgetMs", 0.0, true);
number_field!(quota_limit, "limit", 0.0, false);
number_field!(quota_used, "used", 0.0, false);

//! ISO-8601 UTC date-times (`expiresAt`, `heartbeat.ts`), checked by hand and kept as given.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{cut, Error};

/// An ISO-8601 UTC date-time such as `2026-11-28T02:00:00.000Z`.
///
/// Accepted: `YYYY-MM-DDTHH:MM[:SS[.fraction]]Z` with a real calendar date (leap years
/// included), hours 00–23, minutes and seconds 00–59 — the rule of zod's `datetime()` that the
/// TypeScript schemas use. Offsets other than `Z` and date-only values are refused.
///
/// A time without seconds (`…T02:00Z`) is accepted but stored as `…T02:00:00Z`: zod 4.3.6 (the
/// TypeScript 2.15.2 lockfile) accepts the short form, zod ≥ 4.5 refuses it, and we write only
/// what every version accepts. Any other text is kept verbatim and round-trips byte for byte;
/// this type does no time arithmetic.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(String);

impl Timestamp {
    /// Validates `value` and wraps it; `field` names the wire field in the error.
    pub fn new(field: &'static str, value: impl Into<String>) -> Result<Self, Error> {
        let mut value = value.into();
        if is_utc_datetime(value.as_bytes()) {
            // `YYYY-MM-DDTHH:MMZ`: the only accepted form without seconds.
            if value.len() == SHORT_FORM_LEN {
                value.insert_str(SHORT_FORM_LEN - 1, ":00");
            }
            Ok(Self(value))
        } else {
            Err(Error::InvalidTimestamp {
                field,
                value: cut(&value),
            })
        }
    }

    /// The text as it appears on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Timestamp {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Visits a date-time string; the field name goes into error messages.
struct TimestampVisitor(&'static str);

impl Visitor<'_> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} as an ISO-8601 UTC date-time string", self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
        Timestamp::new(self.0, v).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TimestampVisitor("date-time"))
    }
}

/// Field-naming deserializers for the two wire fields that carry a [`Timestamp`].
pub(crate) fn expires_at<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    d.deserialize_str(TimestampVisitor("expiresAt"))
}

/// See [`expires_at`].
pub(crate) fn ts<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    d.deserialize_str(TimestampVisitor("ts"))
}

/// Length of `YYYY-MM-DDTHH:MMZ`, a date-time without seconds.
const SHORT_FORM_LEN: usize = 17;

/// Two ASCII digits at `at`, as a number.
fn two_digits(b: &[u8], at: usize) -> Option<u32> {
    match (b.get(at), b.get(at + 1)) {
        (Some(&h @ b'0'..=b'9'), Some(&l @ b'0'..=b'9')) => {
            Some(u32::from(h - b'0') * 10 + u32::from(l - b'0'))
        }
        _ => None,
    }
}

/// One pass over the bytes: the date, `T`, hours and minutes, optional seconds and fraction, `Z`.
fn is_utc_datetime(b: &[u8]) -> bool {
    let (Some(century), Some(year_lo), Some(month), Some(day)) = (
        two_digits(b, 0),
        two_digits(b, 2),
        two_digits(b, 5),
        two_digits(b, 8),
    ) else {
        return false;
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || b.get(10) != Some(&b'T') {
        return false;
    }
    let year = century * 100 + year_lo;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if day == 0 || day > days_in_month {
        return false;
    }
    match (two_digits(b, 11), b.get(13), two_digits(b, 14)) {
        (Some(h), Some(b':'), Some(m)) if h < 24 && m < 60 => {}
        _ => return false,
    }
    let mut i = 16;
    if b.get(i) == Some(&b':') {
        match two_digits(b, i + 1) {
            Some(s) if s < 60 => i += 3,
            _ => return false,
        }
        if b.get(i) == Some(&b'.') {
            let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return false;
            }
            i += 1 + digits;
        }
    }
    b.get(i) == Some(&b'Z') && i + 1 == b.len()
}

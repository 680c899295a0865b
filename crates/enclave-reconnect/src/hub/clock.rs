//! Wall-clock time as the protocol writes it: ms since the Unix epoch and ISO-8601 UTC.

use std::time::{SystemTime, UNIX_EPOCH};

use enclave_types::Timestamp;

/// Now, in ms since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn iso8601(ms: u64) -> String {
    let days = ms / 86_400_000;
    let in_day = ms % 86_400_000;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// A protocol timestamp for `ms`; the epoch itself if `ms` is past year 9999.
pub(crate) fn timestamp(field: &'static str, ms: u64) -> Timestamp {
    Timestamp::new(field, iso8601(ms.min(253_402_300_799_999)))
        .or_else(|_| Timestamp::new(field, "1970-01-01T00:00:00.000Z"))
        .unwrap_or_else(|_| unreachable!("a fixed valid timestamp"))
}

/// Howard Hinnant's `civil_from_days`, for days since 1970-01-01 (no dates before it occur).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(1_764_318_279_123), "2025-11-28T08:24:39.123Z");
        assert_eq!(timestamp("ts", 1).as_str(), "1970-01-01T00:00:00.001Z");
    }
}

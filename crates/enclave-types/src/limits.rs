//! Session limits and their defaults (the TS `DEFAULT_SESSION_LIMITS`).

use serde::{Deserialize, Serialize};

use crate::named;
use crate::number;

/// Defines a `serde(with)` module for a limit that must be a positive safe integer.
macro_rules! positive_limit {
    ($module:ident, $field:literal) => {
        mod $module {
            use serde::{Deserializer, Serializer};

            use crate::error::Error;
            use crate::number::{serialize_safe_integer, SafeInteger};

            #[allow(clippy::trivially_copy_pass_by_ref)]
            pub(super) fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
                if *v == 0 {
                    return Err(serde::ser::Error::custom(positive()));
                }
                serialize_safe_integer($field, *v, s)
            }

            fn positive() -> Error {
                Error::InvalidField {
                    field: $field,
                    reason: "must be greater than 0".to_owned(),
                }
            }

            pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
                let v = SafeInteger($field).read(d)?;
                if v == 0 {
                    return Err(serde::de::Error::custom(positive()));
                }
                Ok(v)
            }
        }
    };
}

positive_limit!(session_ttl_ms, "sessionTtlMs");
positive_limit!(max_tool_calls, "maxToolCalls");
positive_limit!(max_stdout_bytes, "maxStdoutBytes");
positive_limit!(max_tool_result_bytes, "maxToolResultBytes");
positive_limit!(tool_timeout_ms, "toolTimeoutMs");
positive_limit!(heartbeat_interval_ms, "heartbeatIntervalMs");
positive_limit!(per_tool_deadline_ms, "perToolDeadlineMs");

/// What a session may use. Absent fields take the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct SessionLimits {
    /// Longest session, in ms. Default 60 000.
    #[serde(with = "session_ttl_ms")]
    pub session_ttl_ms: u64,
    /// Most tool calls. Default 50.
    #[serde(with = "max_tool_calls")]
    pub max_tool_calls: u64,
    /// Most stdout bytes. Default 262 144 (256 KiB).
    #[serde(with = "max_stdout_bytes")]
    pub max_stdout_bytes: u64,
    /// Largest single tool result, in bytes. Default 5 242 880 (5 MiB).
    #[serde(with = "max_tool_result_bytes")]
    pub max_tool_result_bytes: u64,
    /// Timeout of one tool call, in ms. Default 30 000.
    #[serde(with = "tool_timeout_ms")]
    pub tool_timeout_ms: u64,
    /// Heartbeat period, in ms. Default 15 000.
    #[serde(with = "heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
    /// Deadline for the whole execution, in ms; 0 means none. Default 0.
    #[serde(with = "number::deadline_ms")]
    pub deadline_ms: u64,
    /// Default per-tool deadline, in ms. Default 30 000.
    #[serde(with = "per_tool_deadline_ms")]
    pub per_tool_deadline_ms: u64,
    /// Cancel pending tool calls on the first failure. Default false.
    #[serde(deserialize_with = "named::cancel_on_first_error")]
    pub cancel_on_first_error: bool,
}

impl SessionLimits {
    /// The TS `DEFAULT_SESSION_LIMITS`.
    pub const DEFAULT: Self = Self {
        session_ttl_ms: 60_000,
        max_tool_calls: 50,
        max_stdout_bytes: 262_144,
        max_tool_result_bytes: 5_242_880,
        tool_timeout_ms: 30_000,
        heartbeat_interval_ms: 15_000,
        deadline_ms: 0,
        per_tool_deadline_ms: 30_000,
        cancel_on_first_error: false,
    };
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

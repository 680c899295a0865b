//! Session limits and their defaults (the TS `DEFAULT_SESSION_LIMITS`).

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::Error;
use crate::number::{self, SafeInteger};

/// Reads a limit that must be a positive safe integer.
fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = d.deserialize_any(SafeInteger("session limit"))?;
    if v == 0 {
        return Err(serde::de::Error::custom(Error::InvalidField {
            field: "session limit",
            reason: "must be greater than 0".to_owned(),
        }));
    }
    Ok(v)
}

/// What a session may use. Absent fields take the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SessionLimits {
    /// Longest session, in ms. Default 60 000.
    #[serde(
        serialize_with = "number::limit_ms::serialize",
        deserialize_with = "positive"
    )]
    pub session_ttl_ms: u64,
    /// Most tool calls. Default 50.
    #[serde(
        serialize_with = "number::limit_ms::serialize",
        deserialize_with = "positive"
    )]
    pub max_tool_calls: u64,
    /// Most stdout bytes. Default 262 144 (256 KiB).
    #[serde(
        serialize_with = "number::limit_ms::serialize",
        deserialize_with = "positive"
    )]
    pub max_stdout_bytes: u64,
    /// Largest single tool result, in bytes. Default 5 242 880 (5 MiB).
    #[serde(
        serialize_with = "number::limit_ms::serialize",
        deserialize_with = "positive"
    )]
    pub max_tool_result_bytes: u64,
    /// Timeout of one tool call, in ms. Default 30 000.
    #[serde(
        serialize_with = "number::limit_ms::serialize",
        deserialize_with = "positive"
    )]
    pub tool_timeout_ms: u64,
    /// Heartbeat period, in ms. Default 15 000.
    #[serde(
        serialize_with = "number::limit_ms::serialize",
        deserialize_with = "positive"
    )]
    pub heartbeat_interval_ms: u64,
    /// Deadline for the whole execution, in ms; 0 means none. Default 0.
    #[serde(with = "number::limit_ms")]
    pub deadline_ms: u64,
    /// Default per-tool deadline, in ms. Default 30 000.
    #[serde(with = "number::limit_ms")]
    pub per_tool_deadline_ms: u64,
    /// Cancel pending tool calls on the first failure. Default false.
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

//! The crate's one error type.

/// Everything that can be wrong with a protocol value.
///
/// While deserializing, these errors travel inside `serde_json::Error` (their text is kept), so
/// a caller parsing a line sees, for example,
/// `invalid sessionId "sess_abc": must start with "s_" at line 1 column 38`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An id (`sessionId`, `callId`, `$ref.id`) without its prefix or with nothing after it.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidId {
        /// Wire name of the id (`sessionId`, `callId`, `refId`).
        field: &'static str,
        /// The rejected text.
        value: String,
        /// What rule it breaks.
        reason: String,
    },
    /// A date-time that is not ISO-8601 UTC ending in `Z`.
    #[error(
        "invalid {field} {value:?}: expected an ISO-8601 UTC date-time ending in \"Z\" \
         (e.g. \"2026-11-28T02:00:00.000Z\")"
    )]
    InvalidTimestamp {
        /// Wire name of the field (`expiresAt`, `ts`).
        field: &'static str,
        /// The rejected text.
        value: String,
    },
    /// Any other field that breaks a schema rule (range, emptiness, shape, enum value).
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Wire name of the field, with its parent when that helps (`payload.budgetMs`).
        field: &'static str,
        /// What rule it breaks.
        reason: String,
    },
    /// A line that is not JSON, or JSON that does not match the protocol's shape.
    #[error("invalid frame: {0}")]
    Json(#[from] serde_json::Error),
}

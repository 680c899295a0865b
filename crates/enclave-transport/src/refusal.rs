//! Refusals: why a request was refused ([`RefusalReason`], with the HTTP status, error code
//! and WebSocket close code the network contract fixes for it) and the refusal itself. The
//! session layer returns them, the wire mappings write them; this file needs neither.

use std::fmt;

/// Why a request was refused: the `reason` of a refusal body, with its HTTP status, error
/// code and WebSocket close code fixed by the network contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalReason {
    /// A resume without a token (and tokenless resume is off). 401 `RESUME_REFUSED`, 4401.
    MissingToken,
    /// A wrong or already used token. 403 `RESUME_REFUSED`, 4403.
    BadToken,
    /// No such session. 404 `NOT_FOUND`, 4404.
    UnknownSession,
    /// The resume position was trimmed from retention. 409 `RESUME_REFUSED`, 4409.
    TooFarBehind,
    /// The server lost the session's state since the client's epoch. 409 `RESUME_REFUSED`, 4409.
    EpochMismatch,
    /// The session expired. 410 `SESSION_EXPIRED`, 4410.
    Expired,
    /// Encryption is required and the request has no usable `ClientHello`.
    /// 400 `ENCRYPTION_REQUIRED`, 4400.
    EncryptionRequired,
    /// The server is shutting down: resume elsewhere. 503 `SERVICE_UNAVAILABLE`, 1012.
    ShuttingDown,
    /// A session with that id exists. 409 `SESSION_EXISTS`, 4409.
    SessionExists,
    /// The request is malformed. 400 `INVALID_REQUEST`, 4400.
    InvalidRequest,
    /// The server cannot take more (a session limit, its store is unreachable).
    /// 503 `SERVICE_UNAVAILABLE`, 1013.
    Unavailable,
    /// The deployment's authorization hook refused the request. 401 `UNAUTHORIZED`, 4401.
    Unauthorized,
    /// The event filter (`filter` of the body, the query or the WebSocket `open`) is malformed
    /// or over a bound. 400 `INVALID_FILTER`, 4400.
    InvalidFilter,
}

impl RefusalReason {
    /// The `reason` string of the refusal body.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::BadToken => "bad_token",
            Self::UnknownSession => "unknown_session",
            Self::TooFarBehind => "too_far_behind",
            Self::EpochMismatch => "epoch_mismatch",
            Self::Expired => "expired",
            Self::EncryptionRequired => "encryption_required",
            Self::ShuttingDown => "shutting_down",
            Self::SessionExists => "session_exists",
            Self::InvalidRequest => "invalid_request",
            Self::Unavailable => "unavailable",
            Self::Unauthorized => "unauthorized",
            Self::InvalidFilter => "invalid_filter",
        }
    }

    /// Reads a `reason` string back (what a client does with a refusal body).
    pub fn from_wire(reason: &str) -> Option<Self> {
        Some(match reason {
            "missing_token" => Self::MissingToken,
            "bad_token" => Self::BadToken,
            "unknown_session" => Self::UnknownSession,
            "too_far_behind" => Self::TooFarBehind,
            "epoch_mismatch" => Self::EpochMismatch,
            "expired" => Self::Expired,
            "encryption_required" => Self::EncryptionRequired,
            "shutting_down" => Self::ShuttingDown,
            "session_exists" => Self::SessionExists,
            "invalid_request" => Self::InvalidRequest,
            "unavailable" => Self::Unavailable,
            "unauthorized" => Self::Unauthorized,
            "invalid_filter" => Self::InvalidFilter,
            _ => return None,
        })
    }

    /// The HTTP status.
    pub const fn http_status(self) -> u16 {
        match self {
            Self::MissingToken | Self::Unauthorized => 401,
            Self::BadToken => 403,
            Self::UnknownSession => 404,
            Self::TooFarBehind | Self::EpochMismatch | Self::SessionExists => 409,
            Self::Expired => 410,
            Self::EncryptionRequired | Self::InvalidRequest | Self::InvalidFilter => 400,
            Self::ShuttingDown | Self::Unavailable => 503,
        }
    }

    /// The `code` of the refusal body.
    pub const fn code(self) -> &'static str {
        match self {
            Self::MissingToken | Self::BadToken | Self::TooFarBehind | Self::EpochMismatch => {
                "RESUME_REFUSED"
            }
            Self::UnknownSession => "NOT_FOUND",
            Self::Expired => "SESSION_EXPIRED",
            Self::EncryptionRequired => "ENCRYPTION_REQUIRED",
            Self::ShuttingDown | Self::Unavailable => "SERVICE_UNAVAILABLE",
            Self::SessionExists => "SESSION_EXISTS",
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::InvalidFilter => "INVALID_FILTER",
        }
    }

    /// The WebSocket close code that follows the refusal message.
    pub const fn ws_close_code(self) -> u16 {
        match self {
            Self::MissingToken | Self::Unauthorized => 4401,
            Self::BadToken => 4403,
            Self::UnknownSession => 4404,
            Self::TooFarBehind | Self::EpochMismatch | Self::SessionExists => 4409,
            Self::Expired => 4410,
            Self::EncryptionRequired | Self::InvalidRequest | Self::InvalidFilter => 4400,
            Self::ShuttingDown => 1012,
            Self::Unavailable => 1013,
        }
    }

    /// Whether a client may try again (elsewhere or later) rather than give up.
    pub const fn is_retryable(self) -> bool {
        matches!(self, Self::ShuttingDown | Self::Unavailable)
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: why, and a message for people (`{"code", "message", "reason"}` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({}): {message}", reason.code(), reason.as_str())]
#[non_exhaustive]
pub struct Refusal {
    /// Why.
    pub reason: RefusalReason,
    /// What happened, for people; never quotes secrets.
    pub message: String,
    /// How long to wait before trying again, when the server said (`Retry-After` of a
    /// `503`). Not part of the JSON body.
    pub retry_after: Option<std::time::Duration>,
}

impl Refusal {
    /// A refusal for `reason`.
    pub fn new(reason: RefusalReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same refusal, asking the client to wait `delay` before trying again.
    #[must_use]
    pub fn with_retry_after(mut self, delay: std::time::Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// The refusal body: `{"code", "message", "reason"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "code": self.reason.code(),
            "message": self.message,
            "reason": self.reason.as_str(),
        })
    }
}

//! Sessions that outlive their connections (work in progress: the hub lands with the
//! transport issue).
#![forbid(unsafe_code)]

pub mod client;
pub use client::{
    ConnectionEvent, ConnectionState, ReconnectPolicy, ReconnectingStream, RetrySchedule,
    SessionPosition, StreamConfig, StreamError,
};

//! Sessions that outlive their connections, for EnclaveJS streams: the session layer.
//!
//! # What this crate owns
//! - **The session hub** ([`Hub`]): it implements `enclave_transport::SessionService`, so
//!   the transport's routes reach it for `create`, `resume`, `submit`, `info`, `list`,
//!   `delete` and `cancel`. It numbers events (`session_init` is seq 1, heartbeats included),
//!   retains what a client may still need within a bound of events *and* bytes, applies
//!   backpressure to the application's `publish` ([`OverflowPolicy`]), checks and rotates
//!   resume tokens, replays from any retained position, supersedes an older connection of
//!   the same session, dedupes client messages by their `seq`, sends heartbeats and expires
//!   sessions a grace period after their last connection ended. A `DELETE`, cancel or
//!   `cancel` message ends a session as the broker does (`error` `SESSION_CANCELLED`, then
//!   `final` with `ok: false`); only live sessions count against the session cap, and
//!   creations are limited per second.
//! - **The store** ([`store::Store`]): session metadata, token hashes (never tokens), the
//!   retained event log (appended in batches, each event with the bytes it counts) and the
//!   client position, behind a core trait every store implements. [`store::MemoryStore`] is
//!   the default. A store several servers share (Redis Streams) also hands out
//!   [`store::Sharing`] through [`store::Store::sharing`]: its producers' inboxes, presence
//!   on every server and leases.
//! - **The server builder** ([`ServerBuilder`]): the hub, with any store, behind the
//!   transport's server, with both layers' Prometheus metrics in one registry
//!   ([`ServerBuilder::with_metrics`], [`HubMetrics`]; docs/OPERATIONS.md lists them).
//! - **The application side** ([`Hub::accept`] → [`AcceptedSession`]): a [`SessionHandle`] to
//!   publish, a [`Messages`] receiver for client messages, cancellation and state. Each
//!   session's events reach the store through one append lane, in batches as large as the
//!   producer runs ahead of the store: [`SessionHandle::publish`] returns once its event is
//!   stored, [`SessionHandle::publish_queued`] once it is queued ([`SessionHandle::flush`]
//!   waits for the store).
//! - **The client** ([`ReconnectingStream`]): every event exactly once and in order across
//!   cuts and resumes (a filtered stream's `filtered` ranges included), a server's
//!   `Retry-After` honoured up to [`MAX_RETRY_AFTER`], and a stream that stops, rather than
//!   resumes, when it is superseded ([`StreamError::Superseded`]) or its session ends with
//!   `final`.
//!
//! # What it leaves to others
//! Carriers, wire mappings, headers and per-connection encryption belong to
//! `enclave-transport`: an attachment here is an `EventSource` of `Outgoing` items and an
//! `Upstream`, never a socket. The hub never sees a token after hashing it, nor a key.
//!
//! # Public API
//!
//! - Server side: [`Hub`] ([`HubConfig`], [`OverflowPolicy`], [`STORE_UNAVAILABLE`],
//!   [`HubMetrics`]),
//!   [`AcceptedSession`] with its [`SessionHandle`] and [`Messages`], [`ServerBuilder`] (every
//!   bound a server has as a [`Limit`]) → [`RunningServer`]; [`store`]: [`store::Store`], [`store::Sharing`],
//!   [`store::MemoryStore`] and what crosses the trait.
//! - Client side: [`ReconnectingStream`] ([`ReconnectingStreamBuilder`], [`StreamConfig`],
//!   [`ReconnectPolicy`], [`RetrySchedule`], [`ConnectionState`], [`ConnectionEvent`],
//!   [`MAX_RETRY_AFTER`]), resuming from a [`ResumeAt`] (the transport's, re-exported).
//! - Errors: [`Error`] (the hub and the store) and [`StreamError`] (what ends a
//!   `ReconnectingStream`); docs/ARCHITECTURE.md says why there are two.
//!
//! # Example
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use enclave_reconnect::{Hub, HubConfig};
//! use enclave_transport::{CreateSession, Outgoing, SessionService};
//! use enclave_types::{FinalPayload, SessionId, StdoutPayload};
//!
//! let hub = Hub::new(HubConfig::default().with_heartbeat_ms(0));
//! let id = SessionId::generate();
//! let mut attachment = hub.create(CreateSession::new(id)).await.unwrap();
//! let session = hub.accept().await.unwrap();
//! session.handle.publish(StdoutPayload::new("hi\n")).await.unwrap();
//! session.handle.finish(FinalPayload::new(true)).await.unwrap();
//! let mut seqs = Vec::new();
//! while let Some(Outgoing::Event(event)) = attachment.events.next().await {
//!     seqs.push(event.seq);
//! }
//! assert_eq!(seqs, [1, 2, 3]);
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod client;
mod error;
mod hub;
mod limits;
mod server;
pub mod store;

pub use client::{
    ConnectionEvent, ConnectionState, ReconnectPolicy, ReconnectingStream,
    ReconnectingStreamBuilder, RetrySchedule, StreamConfig, StreamError, MAX_RETRY_AFTER,
};
pub use enclave_transport::client::ResumeAt;
pub use error::Error;
pub use hub::{
    AcceptedSession, Hub, HubConfig, HubMetrics, Messages, OverflowPolicy, SessionHandle,
    STORE_UNAVAILABLE,
};
pub use limits::Limit;
pub use server::{RunningServer, ServerBuilder};

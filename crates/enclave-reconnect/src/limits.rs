//! [`Limit`]: every bound a server has, as one option of [`ServerBuilder`](crate::ServerBuilder)
//! (and one flag of `enclave serve`), whichever layer enforces it.

use std::time::Duration;

use enclave_transport::ServerConfig;

use crate::HubConfig;

/// One limit of a server built with [`ServerBuilder::limit`](crate::ServerBuilder::limit):
/// the transport enforces some (connections, bodies, WebSocket messages), the hub the others
/// (sessions, retention, grace, heartbeats); the builder applies each to the settings of the
/// layer that owns it, after [`hub_config`](crate::ServerBuilder::hub_config) and
/// [`server_config`](crate::ServerBuilder::server_config) whatever the order of the calls.
///
/// Each variant says its default, its `enclave serve` flag, what a client gets past it and
/// the metric that counts it (docs/OPERATIONS.md has the same table).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use std::time::Duration;
/// use enclave_reconnect::{Limit, ServerBuilder};
///
/// let running = ServerBuilder::new()
///     .limit(Limit::MaxSessions(500))
///     .limit(Limit::MaxBodyBytes(64 * 1024))
///     .limit(Limit::SessionGrace(Duration::from_secs(30)))
///     .bind("127.0.0.1:0")
///     .await?;
/// assert_eq!(running.server().config().max_body_bytes(), 64 * 1024);
/// running.stop().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// Concurrent TCP connections (at least 1). Default
    /// [`DEFAULT_MAX_CONNECTIONS`](enclave_transport::DEFAULT_MAX_CONNECTIONS) (10 000);
    /// `--max-connections`. Past it and [`ConnectionReserve`](Self::ConnectionReserve): `503`
    /// with `Retry-After` and a close; `enclave_connections_refused_total`.
    MaxConnections(usize),
    /// Concurrent TCP connections from one IP address (at least 1). Default 256;
    /// `--max-connections-per-peer`. Past it: as [`MaxConnections`](Self::MaxConnections).
    MaxConnectionsPerPeer(usize),
    /// Connections accepted past [`MaxConnections`](Self::MaxConnections) for everything but
    /// new sessions (resumes, messages, probes). Default 64; `--connection-reserve`. A new
    /// session on one: `503 SERVICE_UNAVAILABLE` (WebSocket close 1013) with `Retry-After`;
    /// `enclave_refusals_total{reason="unavailable"}`.
    ConnectionReserve(usize),
    /// How long a connection may take to send each request head (and stay idle between
    /// requests). Default 10 s; `--header-timeout-ms`. Past it: the connection is closed.
    HeaderReadTimeout(Duration),
    /// The largest request body. Default 1 MiB; `--max-body-bytes`. Past it: `413
    /// PAYLOAD_TOO_LARGE`; `enclave_refusals_total{reason="invalid_request"}`.
    MaxBodyBytes(usize),
    /// How long a request body may take to arrive. Default 30 s; `--body-timeout-ms`. Past
    /// it: `408 REQUEST_TIMEOUT` and a close; `enclave_refusals_total{reason="invalid_request"}`.
    BodyTimeout(Duration),
    /// The longest NDJSON line, and with [`MaxBodyBytes`](Self::MaxBodyBytes) the largest
    /// WebSocket message from a client. Default 16 MiB; `--max-line-length`. Past it: the
    /// line is refused with its line number, a WebSocket is closed with 1009;
    /// `enclave_streams_closed_total{cause="error"}`.
    MaxLineLength(usize),
    /// How long a WebSocket client message may take from its first frame to its last (at
    /// least 1 ms). Default 10 s; `--ws-message-timeout-ms`. Past it: close 1008;
    /// `enclave_streams_closed_total{cause="timeout"}`.
    WsMessageTimeout(Duration),
    /// How long after a ping a WebSocket peer has to be heard from. Default 10 s;
    /// `--ws-pong-timeout-ms`. Past it: close 1001; `enclave_streams_closed_total{cause="timeout"}`.
    WsPongTimeout(Duration),
    /// Live sessions at once. Default 10 000; `--max-sessions`. Past it: a create is refused
    /// `unavailable` (`503` with `Retry-After`); `enclave_refusals_total{reason="unavailable"}`.
    MaxSessions(usize),
    /// Live sessions created by one peer IP address (`0`: none). Default 100;
    /// `--max-sessions-per-peer`. Past it: as [`MaxSessions`](Self::MaxSessions).
    MaxSessionsPerPeer(usize),
    /// Sessions created per second, a second's worth in a burst (`0`: none). Default 1 000;
    /// `--max-session-creations-per-sec`. Past it: as [`MaxSessions`](Self::MaxSessions).
    MaxSessionCreationsPerSec(u32),
    /// Events a session retains for resumes (at least 1). Default 100 000;
    /// `--max-buffered-events`. Past it: `publish` waits
    /// (`enclave_publish_wait_seconds`) or, with `OverflowPolicy::DropOldest`, the oldest
    /// leaves and a resume from before it is refused `too_far_behind`.
    MaxRetainedEvents(u64),
    /// The encoded bytes a session retains. Default 16 MiB; `--max-buffered-bytes`. Past
    /// it: as [`MaxRetainedEvents`](Self::MaxRetainedEvents).
    MaxRetainedBytes(u64),
    /// How long a session outlives its last connection. Default 60 s; `--session-grace-ms`.
    /// Past it: the session expires (`enclave_sessions_ended_total{how="expired"}`) and a
    /// resume is refused `expired` or `unknown_session`.
    SessionGrace(Duration),
    /// How long a session may live (its `expiresAt`; a session's `config.maxExecutionMs`
    /// shortens it). Default 10 minutes.
    SessionTtl(Duration),
    /// The interval of `heartbeat` events (`None`: none). Default 15 s; `--heartbeat-ms`
    /// (`0`: none). Counted by `enclave_heartbeats_total`.
    Heartbeat(Option<Duration>),
}

impl Limit {
    /// Sets this limit in the settings of the layer that enforces it.
    pub(crate) fn apply(self, hub: &mut HubConfig, server: &mut ServerConfig) {
        let take = std::mem::take;
        match self {
            Self::MaxConnections(n) => *server = take(server).with_max_connections(n),
            Self::MaxConnectionsPerPeer(n) => {
                *server = take(server).with_max_connections_per_peer(n);
            }
            Self::ConnectionReserve(n) => *server = take(server).with_connection_reserve(n),
            Self::HeaderReadTimeout(t) => *server = take(server).with_header_read_timeout(t),
            Self::MaxBodyBytes(n) => *server = take(server).with_max_body_bytes(n),
            Self::BodyTimeout(t) => *server = take(server).with_body_timeout(t),
            Self::MaxLineLength(n) => *server = take(server).with_max_line_length(n),
            Self::WsMessageTimeout(t) => *server = take(server).with_ws_message_timeout(t),
            Self::WsPongTimeout(t) => *server = take(server).with_ws_pong_timeout(t),
            Self::MaxSessions(n) => hub.max_sessions = n,
            Self::MaxSessionsPerPeer(n) => hub.max_sessions_per_peer = n,
            Self::MaxSessionCreationsPerSec(n) => hub.max_creations_per_sec = n,
            Self::MaxRetainedEvents(n) => hub.max_buffered_events = n.max(1),
            Self::MaxRetainedBytes(n) => hub.max_buffered_bytes = n,
            Self::SessionGrace(t) => hub.session_grace = t,
            Self::SessionTtl(t) => hub.session_ttl = t,
            Self::Heartbeat(t) => hub.heartbeat = t.filter(|t| !t.is_zero()),
        }
    }
}

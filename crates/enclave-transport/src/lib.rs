//! Carriers for EnclaveJS streams: HTTP/1.1 chunked NDJSON (what the TypeScript broker and
//! client speak) and WebSocket, server and client sides, each connection optionally
//! end-to-end encrypted with a fresh handshake.
//!
//! What this layer owns: the wire mappings of `../shared/network-contract.md` — routes,
//! headers, status codes, the WebSocket opening messages and control lines ([`wire`]) — and,
//! per connection, the encryption layer of `enclave-crypto` on top of the NDJSON framing, the
//! connection's event filter (left-out events reported in `filtered` control lines), and the
//! server's limits on untrusted peers: connection caps per server and per address with a
//! reserve, header and body timeouts, bounded and timed WebSocket messages, pong timeouts, the close codes
//! and `503 Retry-After` answers, and rate-limited per-connection log lines.
//!
//! What it leaves to the layer above: everything that outlives a connection. Sequence
//! numbers, retention, resume tokens, epochs, acknowledgements and heartbeats sit behind the
//! [`SessionService`] trait, which `enclave-reconnect` implements with its session hub.
//! Architecture invariant: this crate never keeps session state of its own.
//!
//! # Public API
//!
//! - Server: [`Server`] with [`ServerConfig`] ([`EncryptionMode`], re-exported from
//!   `enclave-types`; [`AuthorizationHook`],
//!   [`SessionAccessHook`], [`tls_config_from_pem`], the `DEFAULT_*` connection limits),
//!   serving any [`SessionService`].
//! - The session seam, [`SessionService`], and what crosses it: [`CreateSession`],
//!   [`ResumeSession`], [`SessionConfig`], [`Features`], [`Attachment`], [`EventSource`],
//!   [`Outgoing`], [`EncodedEvent`], [`CloseReason`], [`Upstream`], [`Submit`],
//!   [`SubmitReceipt`], [`SessionInfo`], and refusals ([`Refusal`], [`RefusalReason`]).
//! - [`client`]: one HTTP or WebSocket connection — `connect`, `Connection`, `ClientConfig`,
//!   `Open` (`NewSession`, `ResumeAt`), `Received`, `tls_config_from_ca_file`.
//! - [`carrier`]: the same protocol over any byte stream (TCP, Unix sockets, stdio, memory):
//!   the Framed stacks, `handshake_client`, `accept_open` / `Opening`.
//! - [`wire`]: every name other programs rely on (routes, headers, control lines, the
//!   WebSocket `open`/`opened` messages) and their parsers.
//! - [`Error`]: the crate's one error type, for clients and both halves of a carrier; a
//!   server route answers with a [`Refusal`] instead.
#![forbid(unsafe_code)]

pub mod carrier;
mod error;
pub mod metrics;
mod refusal;
mod server;
mod service;
pub mod wire;

pub use server::{
    tls_config_from_pem, AuthorizationHook, Server, ServerConfig, SessionAccessHook,
    DEFAULT_CONNECTION_RESERVE, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_PEER,
};
pub use service::{
    Attachment, CloseReason, CreateSession, EncodedEvent, EventSource, Features, Outgoing, Refusal,
    RefusalReason, ResumeSession, SessionConfig, SessionInfo, SessionService, Submit,
    SubmitReceipt, Upstream,
};

pub mod client;
/// The server's encryption policy ([`ServerConfig::with_encryption`]) is the protocol's own
/// mode, as a client's is: re-exported so a server needs no other crate to name it.
pub use enclave_types::EncryptionMode;
pub use error::Error;

/// How errors name a session ([`Error::session_name`]).
pub(crate) fn session_name(session: Option<&enclave_types::SessionId>) -> String {
    Error::session_name(session)
}

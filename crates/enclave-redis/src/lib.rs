//! A Redis Streams session store for EnclaveJS streams: several servers behind one load
//! balancer share their sessions, and any of them serves any session.
//!
//! # What this crate owns
//! [`RedisStore`] implements `enclave_reconnect::store::Store` (the core every store has) and
//! `enclave_reconnect::store::Sharing` (what only a shared store does: inboxes, presence,
//! leases; `Store::sharing` hands it out) on Redis. Per session, under one hash tag
//! (`{prefix}{s_…}:…`; a Redis Cluster would keep them in one slot, though the store
//! connects to one server, not to a Cluster):
//! - `:events`, a Redis stream: the retained events, entry id `<seq>-0`, fields `e` (the
//!   event's JSON line) and `c` (the bytes appended through it, so a trim knows what left
//!   without reading the events). Retention is `XTRIM … MINID`.
//! - `:inbox`, a Redis stream: client messages and cancels for the session's producer,
//!   numbered and deduplicated atomically with the client position, consumed (and deleted)
//!   by the producer's server.
//! - `:meta`, a hash: state, epoch, times, counts, the SHA-256 of the resume tokens (never
//!   a token), the positions, the connections counted on every server and the producer's
//!   lease.
//!
//! Every key expires a margin after the session's `expiresAt` (`PEXPIREAT`), so sessions
//! whose servers all died leave Redis by themselves. `{prefix}epoch` holds the epoch of the
//! state: a Redis that lost its data (a restart without persistence) gets a new one, and every
//! resume into the lost sessions is refused `epoch_mismatch` rather than meeting a gap.
//!
//! Every check-and-write is one Lua script (see the `scripts` module): the seqs of an
//! append (a whole batch of events in one call, all or nothing), the token compare-and-set,
//! the client position with the inbox entry it admits, a lapsed lease with the
//! `final {ok: false}` that ends its session.
//!
//! Live readers follow a session with blocking `XREAD`s on a connection of their own: events
//! appended on this server wake them at once; events appended elsewhere after one Redis round
//! trip. One task reads the inboxes of every session this process produces, with one blocking
//! `XREAD` over all of them on one connection. A producer's server renews its sessions' leases; a follower that finds a lease lapsed
//! ends the session with `final {ok: false, error: {code: "PRODUCER_LOST"}}`.
//!
//! # What it leaves to others
//! Sessions, tokens, backpressure and resume rules are the hub's (`enclave-reconnect`), which
//! sees this store only through its trait; connections and encryption are the transport's.
//! Nothing secret is stored: encrypted connections negotiate their keys per connection on
//! whichever server they reach, and events are kept in plaintext, as in a server's memory
//! (see docs/SECURITY.md for who must be trusted with the Redis).
//!
//! # Public API
//!
//! [`RedisStore`] (made by [`RedisStore::connect`] with a [`RedisStoreConfig`]) and the
//! crate's one error type, [`Error`]; everything else is reached through the
//! `enclave_reconnect::store` traits it implements.
//!
//! # Example
//! ```no_run
//! # async fn run() -> Result<(), enclave_redis::Error> {
//! use std::sync::Arc;
//! use enclave_reconnect::{Hub, HubConfig};
//! use enclave_redis::{RedisStore, RedisStoreConfig};
//!
//! let store = RedisStore::connect("redis://127.0.0.1:6379/0", RedisStoreConfig::default()).await?;
//! let hub = Hub::new(HubConfig::default().with_store(Arc::new(store)));
//! # let _ = hub; Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod codec;
mod config;
mod error;
mod follow;
mod inboxes;
mod inner;
mod keys;
mod scripts;
mod store;

pub use config::RedisStoreConfig;
pub use error::Error;
pub use store::RedisStore;

/// The error code of the `final` that ends a session whose producer stopped renewing its
/// lease (its server died or lost Redis).
pub const PRODUCER_LOST: &str = "PRODUCER_LOST";

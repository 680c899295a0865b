//! Test tools shared by the enclave-stream crates' tests (and `enclave demo`, which cuts its
//! own connections with the proxy). It is for tests only: nothing here belongs in a
//! production path, and its helpers panic with context instead of returning errors.
//!
//! - [`CutProxy`]: a loopback TCP proxy that cuts connections — mid-line, at moments drawn
//!   from a seeded generator — or lets them go silent, so reconnection and resume can be
//!   tested against real sockets; [`SplitMix64`], the small deterministic generator it draws
//!   with.
//! - [`RedisServer`]: a `redis-server` of a test's own on a Unix socket (for the Redis
//!   store's tests; it needs `redis-server` installed).
//! - [`events`]: builders of the events tests write again and again (`events::stdout`).
//! - [`http`]: HTTP/1.1 by hand, bounded and timed: requests written byte for byte, response
//!   heads and chunked bodies read off a socket (on tokio or blocking), and the fake
//!   servers' side ([`http::server::LoopbackServer`], requests read, responses and chunks
//!   written).
//!
//! It depends on no crate of ours but `enclave-types`, so the tests of every layer above the
//! protocol model can use it without a dependency cycle.
#![forbid(unsafe_code)]

pub mod events;
pub mod http;
mod proxy;
mod redis;
mod rng;

pub use proxy::{CutProxy, Fault, ProxyConfig};
pub use redis::RedisServer;
pub use rng::SplitMix64;

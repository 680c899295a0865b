//! Test tools shared by the enclave-stream crates' tests and `enclave demo`: [`CutProxy`], a
//! loopback TCP proxy that cuts connections — mid-line, at moments drawn from a seeded
//! generator — or lets them go silent, so reconnection and resume can be tested against
//! real sockets, [`SplitMix64`], the small deterministic generator it draws with, and
//! [`RedisServer`], a `redis-server` of a test's own on a Unix socket (for the Redis store's
//! tests; it needs `redis-server` installed).
//!
//! What it does not do: it knows nothing of HTTP, WebSocket or the protocol; it moves bytes.
#![forbid(unsafe_code)]

mod proxy;
mod redis;
mod rng;

pub use proxy::{CutProxy, Fault, ProxyConfig};
pub use redis::RedisServer;
pub use rng::SplitMix64;

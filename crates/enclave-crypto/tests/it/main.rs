//! The integration tests of `enclave-crypto`, one test binary with a module per area (one link,
//! not one per file; see docs/ARCHITECTURE.md, "Tests").

mod codec;
mod handshake;
mod identity;
mod node_interop;
mod properties;
mod simple;
mod vectors;
mod wycheproof;

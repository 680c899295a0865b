//! The integration tests of `enclave-redis`, one test binary with a module per area (one link,
//! not one per file; see docs/ARCHITECTURE.md, "Tests").

mod common;

mod cluster;
mod store;

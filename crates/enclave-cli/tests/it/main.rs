//! The integration tests of `enclave-cli`, one test binary with a module per area (one link,
//! not one per file; see docs/ARCHITECTURE.md, "Tests").

mod common;
mod served;

mod browser;
mod cluster;
mod crypt;
mod keygen;
mod logs;
mod metrics;
mod network;
mod static_files;
mod validate;

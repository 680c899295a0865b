//! The integration tests of `enclave-transport`, one test binary with a module per area (one link,
//! not one per file; see docs/ARCHITECTURE.md, "Tests").

mod common;
mod identity_support;

mod carriers;
mod client_broker;
mod client_encrypted;
mod identity_http;
mod identity_ws;
mod server_http;
mod server_tls;
mod server_ws;

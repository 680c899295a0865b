//! The integration tests of `enclave-ndjson`, one test binary with a module per area (one link,
//! not one per file; see docs/ARCHITECTURE.md, "Tests").

mod decode;
mod framed;
mod props;

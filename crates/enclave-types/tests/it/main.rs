//! The integration tests of `enclave-types`, one test binary with a module per area (one link,
//! not one per file; see docs/ARCHITECTURE.md, "Tests").

mod conformance;
mod fixtures;
mod roundtrip;
mod validation;
mod vectors;

//! Fuzz target bodies for the enclave-stream crates, as plain functions of `&[u8]`.
//!
//! Each body checks invariants, not just "does not panic": the NDJSON decoder must agree with
//! a line-by-line reference model however its input is chunked, a parsed [`Frame`] must
//! survive serialization and re-parsing unchanged, the crypto layer must refuse any edit
//! of a genuine envelope and any malformed hello, and the transport's parsers of untrusted
//! requests and WebSocket messages must agree with reference models and refuse what they
//! refuse as `invalid_request`, briefly. A broken invariant panics with a message
//! saying which one and where, which is how a fuzzer reports a finding.
//!
//! Three drivers share these bodies: the libFuzzer binaries in `fuzz_targets/` (built by
//! `cargo xtask fuzz` through cargo-fuzz with the `libfuzzer` feature), the seed-corpus replay
//! in `tests/corpus.rs` under plain `cargo test`, and anyone reproducing a crash input by hand.
//! One module per layer under test keeps each layer's targets together.
//!
//! What this crate does *not* do: it links no libFuzzer unless the `libfuzzer` feature is on,
//! it owns no protocol logic (everything it checks lives in `enclave-ndjson`, `enclave-types`,
//! `enclave-crypto` and `enclave-transport`), and its functions are for fuzzing only; it has no error type because a
//! body either returns or reports a broken invariant by panicking.
//!
//! [`Frame`]: enclave_types::Frame
#![forbid(unsafe_code)]

mod crypto;
mod event;
mod ndjson;
mod transport;

pub use crate::crypto::{envelope_opener, hello_parser};
pub use crate::event::event_parser;
pub use crate::ndjson::ndjson_decoder;
pub use crate::transport::{control_messages, http_request, ws_messages};

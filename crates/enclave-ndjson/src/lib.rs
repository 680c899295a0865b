//! enclave-ndjson (being written).
#![forbid(unsafe_code)]

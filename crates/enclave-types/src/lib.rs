//! enclave-types (being written).
#![forbid(unsafe_code)]

//! enclave-crypto (being written).
#![forbid(unsafe_code)]

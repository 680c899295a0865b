//! Fuzz target bodies (being written).
#![forbid(unsafe_code)]

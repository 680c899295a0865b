//! Sessions that outlive their connections (work in progress: the hub lands with the
//! transport issue).
#![forbid(unsafe_code)]

//! NDJSON framing for the EnclaveJS stream: one JSON value per line, for any serde type.
//!
//! This layer owns the bytes-to-values step of the protocol. It splits a byte stream into
//! lines at `\n`, tolerates `\r\n` and surrounding whitespace, skips blank lines, decodes
//! each line with serde_json, and numbers lines so every complaint says where it happened.
//! Going the other way it writes each value as compact JSON followed by `\n`, the shape
//! the TypeScript `@enclave-vm/stream` peers emit and expect.
//!
//! Two faces share one engine:
//! - [`NdjsonCodec`], a tokio-util [`Decoder`](tokio_util::codec::Decoder) and
//!   [`Encoder`](tokio_util::codec::Encoder) for `FramedRead` / `FramedWrite`;
//! - [`StreamDecoder`], [`StreamEncoder`], [`parse_ndjson`] and [`stringify_ndjson`], which
//!   need no runtime and mirror the TypeScript helpers.
//!
//! Input is untrusted. Each line is searched once (the engine remembers where it
//! stopped), parsed in place from the buffer, and bounded by a line limit
//! ([`DEFAULT_MAX_LINE_LENGTH`], 16 MiB, by default); the rest of an over-long line is
//! dropped as it arrives rather than buffered. A bad line becomes an [`Error`] *item*
//! carrying its line number and an excerpt, and decoding carries on with the next line.
//!
//! What this crate does **not** do: it knows nothing of events, sessions or sequence
//! numbers (the `T` it decodes is the caller's, typically `enclave_types::Frame`), nothing
//! of encryption (envelopes are just another `T`; `enclave-crypto` seals and opens them),
//! and no network I/O (bring a transport, or use `FramedRead` on any `AsyncRead`).
//! Architecture invariant: no dependency on `enclave-types` outside the benchmark.
#![forbid(unsafe_code)]

mod codec;
mod engine;
mod error;
mod stream;

pub use crate::codec::NdjsonCodec;
pub use crate::engine::{LineLimit, OutputBuf, DEFAULT_MAX_LINE_LENGTH};
pub use crate::error::{Error, WriteError};
pub use crate::stream::{
    parse_ndjson, stringify_ndjson, Items, ParsedNdjson, StreamDecoder, StreamEncoder,
};

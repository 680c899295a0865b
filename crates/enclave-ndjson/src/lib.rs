//! NDJSON framing for the EnclaveJS stream: one JSON value per line, for any serde type.
//!
//! This layer owns the bytes-to-values step of the protocol. It splits a byte stream into
//! lines at `\n`, trims each line as JavaScript's `trim()` does (so `\r\n`, a BOM or a
//! NBSP around a value are fine), skips blank lines, decodes each line with serde_json, and
//! numbers lines so every complaint says where it happened. Going the other way it writes
//! each value as compact JSON followed by `\n`, the shape the TypeScript
//! `@enclave-vm/stream` peers emit and expect.
//!
//! Two faces share one engine:
//! - [`NdjsonCodec<In, Out>`](NdjsonCodec), a tokio-util
//!   [`Decoder`](tokio_util::codec::Decoder) of `In` and
//!   [`Encoder`](tokio_util::codec::Encoder) of `Out` for `FramedRead` / `FramedWrite`
//!   (the two directions of a link carry different messages);
//! - [`StreamDecoder`], [`StreamEncoder`], [`parse_ndjson`] and [`stringify_ndjson`], which
//!   need no runtime and mirror the TypeScript helpers; a decoder's items come out by pull
//!   ([`StreamDecoder::items`]), by callback ([`StreamDecoder::on_message`]) or as a
//!   [`Stream`](futures_core::Stream) over byte chunks ([`StreamDecoder::decode_stream`]).
//!
//! Input is untrusted. Each line is searched once (the engine remembers where it
//! stopped), parsed in place from the buffer, and bounded by a line limit
//! ([`DEFAULT_MAX_LINE_LENGTH`], 16 MiB, by default); the rest of an over-long line is
//! dropped as it arrives rather than buffered. A bad line becomes an [`Error`] *item*
//! carrying its line number and a bounded excerpt, and decoding carries on with the next
//! line. Only I/O is fatal: the codec's decoder fails with [`std::io::Error`] alone, and its
//! encoder with [`WriteError`], which keeps I/O apart from a refused value.
//!
//! Output is held to the same limit, counted on the bytes actually written, so a peer never
//! gets a line it would refuse; a refused value names its output line and leaves nothing
//! behind. [`LineLimit`] applies that rule for a layer that writes its own lines (the
//! encryption layer writes `enc` lines, about 4/3 the size of the event they seal).
//!
//! What this crate does **not** do: it knows nothing of events, sessions or sequence
//! numbers (the `T` it decodes is the caller's, typically `enclave_types::Frame`), nothing
//! of encryption (envelopes are just another `T`; `enclave-crypto` seals and opens them),
//! and no network I/O (bring a transport, or use `FramedRead` on any `AsyncRead`).
//! Architecture invariant: no dependency on `enclave-types` outside the benchmark.
//!
//! # Public API
//!
//! - [`NdjsonCodec`]: the tokio-util codec (lines in, `T` out; `T` in, lines out).
//! - [`StreamDecoder`] / [`StreamEncoder`]: the same engine without a codec, fed bytes by hand;
//!   [`CallbackDecoder`], [`DecodeStream`], [`Items`], and the seed's one-shot
//!   [`parse_ndjson`] / [`stringify_ndjson`] ([`ParsedNdjson`]).
//! - [`LineLimit`], [`DEFAULT_MAX_LINE_LENGTH`], [`OutputBuf`].
//! - [`Error`] (a line that failed: item errors) and [`WriteError`] (a value refused, or I/O).
#![forbid(unsafe_code)]

mod codec;
mod engine;
mod error;
mod stream;

pub use crate::codec::NdjsonCodec;
pub use crate::engine::{LineLimit, OutputBuf, DEFAULT_MAX_LINE_LENGTH};
pub use crate::error::{Error, WriteError};
pub use crate::stream::{
    parse_ndjson, stringify_ndjson, CallbackDecoder, DecodeStream, Items, ParsedNdjson,
    StreamDecoder, StreamEncoder,
};

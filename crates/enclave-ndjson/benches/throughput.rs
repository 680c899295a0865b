//! Throughput of the NDJSON layer on a realistic event stream, against plain serde_json.
//!
//! Run with `cargo bench -p enclave-ndjson --bench throughput`. The stream is 200,000 mixed
//! events from `enclave_types::fixtures::mixed_stream`; each figure is the median of several
//! runs, interleaved so machine noise hits every contender alike.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use enclave_ndjson::{NdjsonCodec, StreamDecoder, StreamEncoder};
use enclave_types::{fixtures::mixed_stream, Frame};
use tokio_util::codec::{Decoder, Encoder};

const EVENTS: usize = 200_000;
const CHUNK: usize = 64 * 1024;
const RUNS: usize = 9;

/// Baseline decode: lines split beforehand, then `serde_json::from_slice` on each.
fn decode_baseline(lines: &[&[u8]]) -> usize {
    let mut ok = 0;
    for line in lines {
        if serde_json::from_slice::<Frame>(line).is_ok() {
            ok += 1;
        }
    }
    ok
}

/// `NdjsonCodec` driven as `FramedRead` drives it: 64 KiB reads into a `BytesMut`.
fn decode_codec(stream: &[u8]) -> usize {
    let mut codec = NdjsonCodec::<Frame>::new();
    let mut buf = BytesMut::with_capacity(2 * CHUNK);
    let mut ok = 0;
    for chunk in stream.chunks(CHUNK) {
        buf.extend_from_slice(chunk);
        while let Ok(Some(item)) = codec.decode(&mut buf) {
            ok += usize::from(item.is_ok());
        }
    }
    while let Ok(Some(item)) = codec.decode_eof(&mut buf) {
        ok += usize::from(item.is_ok());
    }
    ok
}

/// `StreamDecoder` fed 64 KiB chunks.
fn decode_stream(stream: &[u8]) -> usize {
    let mut decoder = StreamDecoder::<Frame>::new();
    let mut ok = 0;
    for chunk in stream.chunks(CHUNK) {
        decoder.feed(chunk);
        ok += decoder.items().flatten().count();
    }
    ok + decoder.flush().flatten().count()
}

/// Baseline encode: `serde_json::to_vec` per event, plus the newline, into one `Vec`.
fn encode_baseline(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for frame in frames {
        out.extend_from_slice(&serde_json::to_vec(frame).expect("serializable"));
        out.push(b'\n');
    }
    out
}

fn encode_codec(frames: &[Frame]) -> BytesMut {
    let mut codec = NdjsonCodec::<Frame>::new();
    let mut buf = BytesMut::new();
    for frame in frames {
        codec.encode(frame, &mut buf).expect("serializable");
    }
    buf
}

fn encode_stream(frames: &[Frame]) -> Bytes {
    let mut encoder = StreamEncoder::<Frame>::new();
    for frame in frames {
        encoder.encode(frame).expect("serializable");
    }
    encoder.take()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn time<R>(samples: &mut Vec<Duration>, f: impl FnOnce() -> R) -> R {
    let started = Instant::now();
    let result = black_box(f());
    samples.push(started.elapsed());
    result
}

#[allow(clippy::cast_precision_loss)]
fn row(name: &str, bytes: usize, events: usize, took: Duration, baseline: Duration) {
    let secs = took.as_secs_f64();
    println!(
        "{name:<34} {:>9.2} ms {:>9.1} MB/s {:>12.0} ev/s {:>7.3}x",
        secs * 1e3,
        bytes as f64 / secs / 1e6,
        events as f64 / secs,
        secs / baseline.as_secs_f64(),
    );
}

fn main() {
    let frames: Vec<Frame> = mixed_stream(EVENTS, 0x5eed)
        .into_iter()
        .map(Frame::from)
        .collect();
    let stream = encode_baseline(&frames);
    let lines: Vec<&[u8]> = stream
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .collect();
    assert_eq!(lines.len(), EVENTS);
    // Every contender must produce the very same bytes / accept every event.
    assert_eq!(&encode_codec(&frames)[..], &stream[..]);
    assert_eq!(&encode_stream(&frames)[..], &stream[..]);
    assert_eq!(decode_baseline(&lines), EVENTS);
    assert_eq!(decode_codec(&stream), EVENTS);
    assert_eq!(decode_stream(&stream), EVENTS);

    let (mut d_base, mut d_codec, mut d_stream) = (Vec::new(), Vec::new(), Vec::new());
    let (mut e_base, mut e_codec, mut e_stream) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        time(&mut d_base, || decode_baseline(black_box(&lines)));
        time(&mut d_codec, || decode_codec(black_box(&stream)));
        time(&mut d_stream, || decode_stream(black_box(&stream)));
        time(&mut e_base, || encode_baseline(black_box(&frames)));
        time(&mut e_codec, || encode_codec(black_box(&frames)));
        time(&mut e_stream, || encode_stream(black_box(&frames)));
    }

    let bytes = stream.len();
    println!(
        "{EVENTS} events, {bytes} bytes ({} B/event), median of {RUNS} runs, one core",
        bytes / EVENTS
    );
    println!(
        "{:<34} {:>12} {:>14} {:>17} {:>8}",
        "", "time", "throughput", "rate", "vs base"
    );
    let base = median(d_base);
    row(
        "decode baseline (pre-split lines)",
        bytes,
        EVENTS,
        base,
        base,
    );
    row(
        "decode NdjsonCodec (64 KiB reads)",
        bytes,
        EVENTS,
        median(d_codec),
        base,
    );
    row(
        "decode StreamDecoder (64 KiB)",
        bytes,
        EVENTS,
        median(d_stream),
        base,
    );
    let base = median(e_base);
    row("encode baseline (to_vec + \\n)", bytes, EVENTS, base, base);
    row("encode NdjsonCodec", bytes, EVENTS, median(e_codec), base);
    row(
        "encode StreamEncoder",
        bytes,
        EVENTS,
        median(e_stream),
        base,
    );
}

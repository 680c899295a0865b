//! Throughput of the encryption layer on the NDJSON benchmark's stream, against the floor of
//! raw ring AES-256-GCM over the same plaintext bytes.
//!
//! Run with `cargo bench -p enclave-crypto --bench seal_open`. The stream is 200,000 mixed
//! events from `enclave_types::fixtures::mixed_stream`. "Seal" is the whole way out
//! (serialize, encrypt, base64, frame the envelope line); "open" the whole way in (frame,
//! parse the envelope, base64-decode, decrypt, parse the event, check session and seq).
//! Each figure is the median of several runs on one thread, interleaved so machine noise
//! hits every contender alike.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use enclave_crypto::{accept_client_hello, ClientCodec, ClientHandshake, ServerCodec};
use enclave_ndjson::NdjsonCodec;
use enclave_types::{fixtures::mixed_stream, SessionId, StreamEvent};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use tokio_util::codec::{Decoder, Encoder};

const EVENTS: usize = 200_000;
const CHUNK: usize = 64 * 1024;
const RUNS: usize = 7;

/// A fresh session (new keys, so the opener's nonce memory starts empty every run): the
/// server's codec seals the events, the client's opens them.
fn codecs(session_id: &SessionId) -> (ServerCodec, ClientCodec) {
    let client = ClientHandshake::start().expect("handshake");
    let (hello, server_keys) =
        accept_client_hello(client.client_hello(), session_id).expect("accept");
    let client_keys = client.finish(&hello, session_id).expect("finish");
    let (s_sealer, s_opener) = server_keys.into_ciphers().expect("server ciphers");
    let (c_sealer, c_opener) = client_keys.into_ciphers().expect("client ciphers");
    (
        ServerCodec::required(NdjsonCodec::new(), s_sealer, s_opener),
        ClientCodec::required(NdjsonCodec::new(), c_sealer, c_opener),
    )
}

fn seal_all(codec: &mut ServerCodec, events: &[StreamEvent], out: &mut BytesMut) {
    out.clear();
    for event in events {
        codec.encode(event, out).expect("seal");
    }
}

/// Decoded as `FramedRead` would feed it: 64 KiB reads into a `BytesMut`.
fn open_all(codec: &mut ClientCodec, wire: &[u8]) -> usize {
    let mut buf = BytesMut::with_capacity(2 * CHUNK);
    let mut ok = 0;
    for chunk in wire.chunks(CHUNK) {
        buf.extend_from_slice(chunk);
        while let Some(item) = codec.decode(&mut buf).expect("i/o") {
            ok += usize::from(item.is_ok());
        }
    }
    while let Some(item) = codec.decode_eof(&mut buf).expect("i/o") {
        ok += usize::from(item.is_ok());
    }
    ok
}

fn ring_key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[0x42; 32]).expect("key"))
}

fn nonce(counter: usize) -> Nonce {
    let mut bytes = [7u8; 12];
    bytes[8..].copy_from_slice(&u32::try_from(counter).expect("counter").to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

/// The floor: ring alone, sealing each event's plaintext in place, nothing else.
fn ring_seal(key: &LessSafeKey, plaintexts: &mut [Vec<u8>]) {
    for (i, buf) in plaintexts.iter_mut().enumerate() {
        key.seal_in_place_append_tag(nonce(i), Aad::empty(), buf)
            .expect("seal");
    }
}

fn ring_open(key: &LessSafeKey, sealed: &mut [Vec<u8>]) -> usize {
    let mut ok = 0;
    for (i, buf) in sealed.iter_mut().enumerate() {
        ok += usize::from(key.open_in_place(nonce(i), Aad::empty(), buf).is_ok());
    }
    ok
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
fn report(name: &str, time: Duration, bytes: usize) {
    let secs = time.as_secs_f64();
    println!(
        "{name:<34} {:>9.1} ms {:>12.0} events/s {:>9.1} MB/s",
        secs * 1e3,
        EVENTS as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}

// Byte and event counts here are far below 2^52, so the f64 conversions are exact.
#[allow(clippy::cast_precision_loss)]
fn main() {
    let events = mixed_stream(EVENTS, 0x5eed);
    let session_id = events[0].session_id.clone();
    let plaintexts: Vec<Vec<u8>> = events
        .iter()
        .map(|e| serde_json::to_vec(e).expect("serialize"))
        .collect();
    let plain_bytes: usize = plaintexts.iter().map(|p| p.len() + 1).sum();
    let key = ring_key();

    let mut wire = BytesMut::with_capacity(plain_bytes * 2);
    let mut times: [Vec<Duration>; 4] = Default::default();
    for _ in 0..RUNS {
        let (mut server, mut client) = codecs(&session_id);

        let start = Instant::now();
        seal_all(&mut server, &events, &mut wire);
        times[0].push(start.elapsed());

        let start = Instant::now();
        let opened = open_all(&mut client, black_box(&wire));
        times[1].push(start.elapsed());
        assert_eq!(opened, EVENTS, "every envelope must open");

        let mut bufs = plaintexts.clone();
        let start = Instant::now();
        ring_seal(&key, &mut bufs);
        times[2].push(start.elapsed());

        let start = Instant::now();
        let opened = ring_open(&key, black_box(&mut bufs));
        times[3].push(start.elapsed());
        assert_eq!(opened, EVENTS);
    }
    let [seal, open, floor_seal, floor_open] = times.map(median);
    println!(
        "{EVENTS} events, {:.1} MB of event JSON, {:.1} MB of envelope lines; median of {RUNS} runs",
        plain_bytes as f64 / 1e6,
        wire.len() as f64 / 1e6
    );
    println!("(MB/s counts event JSON bytes in every row)");
    report("seal: serialize+encrypt+base64+frame", seal, plain_bytes);
    report("open: frame+parse+decrypt+parse", open, plain_bytes);
    report("floor: ring AES-256-GCM seal", floor_seal, plain_bytes);
    report("floor: ring AES-256-GCM open", floor_open, plain_bytes);
}

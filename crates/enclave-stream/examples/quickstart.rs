//! The seed README's Quick Start: encode messages as NDJSON, decode them back — by callback,
//! as an iterator, and as a stream of chunks — and the whole-document helpers.
//!
//! `cargo run -p enclave-stream --example quickstart`

use std::process::ExitCode;

use enclave_stream::{parse_ndjson, stringify_ndjson, StreamDecoder, StreamEncoder};
use futures::StreamExt as _;
use serde_json::{json, Value};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("quickstart: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Encode messages: one compact JSON line each.
    let mut encoder = StreamEncoder::new();
    encoder.encode(&json!({"type": "tool_call", "name": "getData", "args": {}}))?;
    encoder.encode(&json!({"type": "stdout", "chunk": "grüße ✓\n"}))?;
    let encoded = encoder.take();
    print!(
        "encoded {} bytes:\n{}",
        encoded.len(),
        String::from_utf8_lossy(&encoded)
    );

    // Decode them through a callback, writing the bytes in small chunks as a socket would,
    // with a line that is not JSON in the middle: it arrives as an error, and decoding goes on.
    let mut received = Vec::new();
    let mut decoder = StreamDecoder::<Value>::new().on_message(|message| received.push(message));
    let mut wire = encoded.to_vec();
    wire.extend_from_slice(b"not json\n{\"type\":\"end\"}");
    for chunk in wire.chunks(7) {
        decoder.write(chunk);
    }
    decoder.end(); // the last line has no newline
    drop(decoder);
    for message in &received {
        match message {
            Ok(message) => println!("callback received: {message}"),
            Err(err) => println!("callback received an error: {err}"),
        }
    }
    let good = received.iter().filter(|m| m.is_ok()).count();
    if (good, received.len()) != (3, 4) {
        return Err(format!("expected 3 messages and 1 error, got {received:?}").into());
    }

    // The same bytes as a stream of chunks.
    let chunks = futures::stream::iter(wire.chunks(5));
    let streamed: Vec<_> = futures::executor::block_on(
        StreamDecoder::<Value>::new()
            .decode_stream(chunks)
            .collect(),
    );
    println!("stream received {} items", streamed.len());
    if streamed.len() != received.len() {
        return Err("the stream face disagrees with the callback face".into());
    }

    // Whole documents.
    let ndjson = stringify_ndjson(&[
        json!({"type": "start", "sessionId": "123"}),
        json!({"type": "tool_call", "name": "getData", "args": {}}),
        json!({"type": "end"}),
    ])?;
    let parsed = parse_ndjson::<Value>(&ndjson);
    println!(
        "stringify_ndjson wrote {} lines, parse_ndjson read {} messages and {} errors",
        ndjson.lines().count(),
        parsed.items.len(),
        parsed.errors.len()
    );
    if parsed.items.len() != 3 || !parsed.errors.is_empty() {
        return Err("the document did not round-trip".into());
    }
    Ok(())
}

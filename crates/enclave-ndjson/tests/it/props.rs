//! Property tests: chunking never changes the result, and no input panics the decoder.

use bytes::BytesMut;
use enclave_ndjson::{parse_ndjson, stringify_ndjson, Error, NdjsonCodec, StreamDecoder};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use tokio_util::codec::Decoder;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
struct Rec {
    a: u32,
    b: String,
}

/// An item as a comparable value: the record, or the error's variant, line and text.
fn key(item: Result<Rec, Error>) -> Result<Rec, String> {
    item.map_err(|e| e.to_string())
}

/// How many `\n` bytes `input` holds.
fn newline_count(input: &[u8]) -> usize {
    input.split(|&b| b == b'\n').count() - 1
}

/// Decodes `input` cut at the given points, through the stream decoder.
fn decode_split(input: &[u8], cuts: &[usize], limit: usize) -> Vec<Result<Rec, String>> {
    let mut decoder = StreamDecoder::with_max_line_length(limit);
    let mut out = Vec::new();
    let mut from = 0;
    for &cut in cuts {
        decoder.feed(&input[from..cut]);
        out.extend(decoder.items().map(key));
        from = cut;
    }
    decoder.feed(&input[from..]);
    out.extend(decoder.flush().map(key));
    out
}

/// Lines mixing good records, bad JSON, wrong values, bad UTF-8, blanks and CRLF.
fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (any::<u32>(), ".{0,20}").prop_map(|(a, b)| serde_json::to_vec(&Rec { a, b }).unwrap()),
        1 => Just(b"{\"a\":".to_vec()),
        1 => Just(b"{\"a\":\"1\",\"b\":\"\"}".to_vec()),
        1 => Just(b"{\"a\":1,\"b\":\"\xff\"}".to_vec()),
        1 => Just(b"  \t".to_vec()),
        1 => Just(b"{\"a\":1,\"b\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}".to_vec()),
        1 => "[ -~]{0,10}".prop_map(String::into_bytes),
    ]
}

fn stream() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec((line(), any::<bool>()), 0..20),
        any::<bool>(),
    )
        .prop_map(|(lines, final_newline)| {
            let mut out = Vec::new();
            for (line, crlf) in lines {
                out.extend_from_slice(&line);
                out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            }
            if !final_newline {
                out.pop();
            }
            out
        })
}

/// Input rich in what makes lines blank or not: JSON and JavaScript whitespace, half of a
/// NBSP (invalid UTF-8 alone), CR, LF and a little content.
fn whitespace_soup() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(&b" "[..]),
        Just(&b"\t"[..]),
        Just(&b"\r"[..]),
        Just(&b"\n"[..]),
        Just(&b"\x0b\x0c"[..]),
        Just("\u{a0}".as_bytes()),
        Just("\u{feff}".as_bytes()),
        Just("\u{2028}\u{3000}".as_bytes()),
        Just(&b"\xc2"[..]),
        Just(&b"1"[..]),
        Just(&b"{"[..]),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn has_pending_is_whether_flush_yields(input in whitespace_soup(), cut in any::<prop::sample::Index>(), limit in 0usize..12, take in any::<bool>()) {
        let mut decoder = StreamDecoder::<serde_json::Value>::with_max_line_length(limit);
        let cut = cut.index(input.len() + 1);
        decoder.feed(&input[..cut]);
        if take {
            // Taking some items first leaves the engine mid-stream (e.g. discarding).
            let _ = decoder.next_item();
        }
        decoder.feed(&input[cut..]);
        let pending = decoder.has_pending();
        let flushed = decoder.flush().count();
        prop_assert_eq!(pending, flushed > 0, "{} items flushed", flushed);
        prop_assert!(!decoder.has_pending());
    }

    #[test]
    fn lines_handed_out_as_text_are_what_items_are_parsed_from(input in stream(), cut in any::<prop::sample::Index>()) {
        let limit = 48;
        let mut items = StreamDecoder::<Rec>::with_max_line_length(limit);
        let mut texts = StreamDecoder::<Rec>::with_max_line_length(limit);
        let cut = cut.index(input.len() + 1);
        for part in [&input[..cut], &input[cut..]] {
            items.feed(part);
            texts.feed(part);
            loop {
                let item = items.next_item();
                let text = texts.next_line_with(|t| serde_json::from_str::<Rec>(t));
                prop_assert_eq!(items.line_number(), texts.line_number());
                match (item, text) {
                    (None, None) => break,
                    (Some(Ok(a)), Some(Ok(Ok(b)))) => prop_assert_eq!(a, b),
                    // Framing refusals (too long, not UTF-8) are the decoder's, the same.
                    (Some(Err(a)), Some(Err(b))) => prop_assert_eq!(a.to_string(), b.to_string()),
                    // What the text does not parse as is the caller's error.
                    (Some(Err(a)), Some(Ok(Err(_)))) => prop_assert!(
                        matches!(a, Error::InvalidJson { .. } | Error::InvalidValue { .. }),
                        "a framing error only one face saw: {}", a
                    ),
                    (a, b) => prop_assert!(false, "the faces disagree: {:?} / {:?}", a, b.map(|r| r.map(|p| p.map_err(|e| e.to_string())))),
                }
            }
        }
    }

    #[test]
    fn any_split_decodes_like_the_whole(input in stream(), mut cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let limit = 48;
        let whole = decode_split(&input, &[], limit);
        let mut points: Vec<usize> = cuts.drain(..).map(|i| i.index(input.len() + 1)).collect();
        points.sort_unstable();
        prop_assert_eq!(decode_split(&input, &points, limit), whole.clone());
        let bytewise: Vec<usize> = (0..=input.len()).collect();
        prop_assert_eq!(decode_split(&input, &bytewise, limit), whole);
    }

    #[test]
    fn codec_and_stream_decoder_agree(input in stream(), chunk in 1usize..64) {
        let limit = 48;
        let mut codec = NdjsonCodec::<Rec>::with_max_line_length(limit);
        let mut buf = BytesMut::new();
        let mut via_codec = Vec::new();
        for piece in input.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(item) = codec.decode(&mut buf).unwrap() {
                via_codec.push(key(item));
            }
        }
        while let Some(item) = codec.decode_eof(&mut buf).unwrap() {
            via_codec.push(key(item));
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(via_codec, decode_split(&input, &[], limit));
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..512), chunk in 1usize..40, limit in 0usize..64) {
        let mut decoder = StreamDecoder::<Rec>::with_max_line_length(limit);
        let mut items = 0usize;
        for piece in input.chunks(chunk) {
            decoder.feed(piece);
            for item in decoder.items() {
                if let Err(err) = item {
                    // Every item error names its line and renders without panicking.
                    prop_assert!(err.line().is_some());
                    prop_assert!(!err.to_string().is_empty());
                }
                items += 1;
            }
            prop_assert!(decoder.pending_len() <= limit + 1 + chunk);
        }
        items += decoder.flush().count();
        prop_assert!(items <= newline_count(&input) + 1);
        let whole = parse_ndjson::<serde_json::Value>(&input);
        prop_assert!(whole.items.len() + whole.errors.len() <= input.len());
    }

    #[test]
    fn encode_then_decode_round_trips(records in prop::collection::vec((any::<u32>(), any::<String>()), 0..20)) {
        let records: Vec<Rec> = records.into_iter().map(|(a, b)| Rec { a, b }).collect();
        let text = stringify_ndjson(&records).unwrap();
        prop_assert_eq!(text.matches('\n').count(), records.len());
        let parsed = parse_ndjson::<Rec>(&text);
        prop_assert!(parsed.errors.is_empty());
        prop_assert_eq!(parsed.items, records);
    }
}

//! The framing rules, checked through the public runtime-free API and the codec.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use enclave_ndjson::{
    parse_ndjson, stringify_ndjson, Error, NdjsonCodec, StreamDecoder, StreamEncoder,
    DEFAULT_MAX_LINE_LENGTH,
};
use serde::{Deserialize, Serialize};
use tokio_util::codec::Decoder;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
struct Rec {
    a: u32,
    b: String,
}

fn rec(a: u32, b: &str) -> Rec {
    Rec { a, b: b.into() }
}

/// Runs `input` through a `StreamDecoder` in chunks of `chunk` bytes, flushing at the end.
fn decode_chunked(input: &[u8], chunk: usize, limit: usize) -> Vec<Result<Rec, Error>> {
    let mut decoder = StreamDecoder::with_max_line_length(limit);
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        decoder.feed(piece);
        out.extend(decoder.items());
    }
    out.extend(decoder.flush());
    assert_eq!(decoder.pending_len(), 0);
    out
}

/// Runs `input` through `NdjsonCodec` on a `BytesMut`, as `FramedRead` would.
fn decode_codec(input: &[u8], chunk: usize, limit: usize) -> Vec<Result<Rec, Error>> {
    let mut codec = NdjsonCodec::<Rec>::with_max_line_length(limit);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            out.push(item);
        }
    }
    while let Some(item) = codec.decode_eof(&mut buf).unwrap() {
        out.push(item);
    }
    assert!(buf.is_empty());
    out
}

/// Summarises results as comparable strings: `ok:<a>` or `<variant>@<line>`.
fn summary(items: &[Result<Rec, Error>]) -> Vec<String> {
    items
        .iter()
        .map(|item| match item {
            Ok(r) => format!("ok:{}", r.a),
            Err(Error::LineTooLong { line, .. }) => format!("too_long@{line}"),
            Err(Error::InvalidUtf8 { line, .. }) => format!("utf8@{line}"),
            Err(Error::InvalidJson { line, .. }) => format!("json@{line}"),
            Err(Error::InvalidValue { line, .. }) => format!("value@{line}"),
            Err(other) => format!("other:{other}"),
        })
        .collect()
}

#[test]
fn crlf_whitespace_and_blank_lines() {
    let input = b"{\"a\":1,\"b\":\"x\"}\r\n\r\n  \t\n \t{\"a\":2,\"b\":\"y\"}  \r\n\n{\"a\":3,\"b\":\"z\"}\n";
    for chunk in [1, 2, 7, input.len()] {
        let out = decode_chunked(input, chunk, 1024);
        assert_eq!(summary(&out), ["ok:1", "ok:2", "ok:3"], "chunk {chunk}");
        assert_eq!(out[1].as_ref().unwrap(), &rec(2, "y"));
        assert_eq!(summary(&decode_codec(input, chunk, 1024)), summary(&out));
    }
    // Blank lines count: the error on the 6th physical line says 6.
    let out = decode_chunked(b"\n\r\n  \n\t\n{\"a\":1,\"b\":\"\"}\n{\n", 3, 1024);
    assert_eq!(summary(&out), ["ok:1", "json@6"]);
}

#[test]
fn too_long_line_reports_once_and_decoding_continues() {
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"a\":1,\"b\":\"ok\"}\n");
    input.extend_from_slice(b"{\"a\":2,\"b\":\"");
    input.extend(std::iter::repeat_n(b'x', 100_000));
    input.extend_from_slice(b"\"}\n{\"a\":3,\"b\":\"after\"}\n");
    for chunk in [1, 100, 4096, input.len()] {
        let out = decode_chunked(&input, chunk, 64);
        assert_eq!(
            summary(&out),
            ["ok:1", "too_long@2", "ok:3"],
            "chunk {chunk}"
        );
        match &out[1] {
            Err(err @ Error::LineTooLong { limit: 64, .. }) => {
                assert_eq!(
                    err.to_string(),
                    "line 2: longer than the limit of 64 bytes; skipped to the next newline"
                );
            }
            other => panic!("expected LineTooLong, got {other:?}"),
        }
        assert_eq!(summary(&decode_codec(&input, chunk, 64)), summary(&out));
    }
}

#[test]
fn memory_stays_bounded_by_the_limit_on_an_endless_line() {
    let limit = 4096;
    let chunk = [b'x'; 1000];
    let mut decoder = StreamDecoder::<Rec>::with_max_line_length(limit);
    let mut errors = 0;
    // 10 MB without a newline: buffered bytes never exceed limit + one chunk.
    for _ in 0..10_000 {
        decoder.feed(&chunk);
        for item in decoder.items() {
            assert!(matches!(item, Err(Error::LineTooLong { line: 1, .. })));
            errors += 1;
        }
        assert!(decoder.pending_len() <= limit + chunk.len());
    }
    assert_eq!(errors, 1);
    decoder.feed(b"\n{\"a\":9,\"b\":\"\"}\n");
    assert_eq!(decoder.next_item().unwrap().unwrap(), rec(9, ""));
    assert_eq!(decoder.line_number(), 2);

    // Same through the codec with a BytesMut, as FramedRead drives it.
    let mut codec = NdjsonCodec::<Rec>::with_max_line_length(limit);
    let mut buf = BytesMut::new();
    let mut errors = 0;
    for _ in 0..10_000 {
        buf.extend_from_slice(&chunk);
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            assert!(item.is_err());
            errors += 1;
        }
        assert!(buf.len() <= limit + chunk.len());
    }
    assert_eq!(errors, 1);
}

#[test]
fn invalid_utf8_is_an_item_error_even_inside_ignored_fields() {
    // The bad byte sits in a field Rec does not know, which serde_json alone would skip.
    let input = b"{\"a\":1,\"b\":\"x\"}\n{\"a\":2,\"b\":\"y\",\"extra\":\"\xff\xfe\"}\n{\"a\":3,\"b\":\"\xc3\"}\n{\"a\":4,\"b\":\"z\"}\n";
    for chunk in [1, 5, input.len()] {
        let out = decode_chunked(input, chunk, 1024);
        assert_eq!(summary(&out), ["ok:1", "utf8@2", "utf8@3", "ok:4"]);
    }
    let out = decode_chunked(input, 64, 1024);
    let err = out[1].as_ref().unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 2: invalid UTF-8 at column 25 (excerpt: \"{\\\"a\\\":2,\\\"b\\\":\\\"y\\\",\\\"extra\\\":\\\"\\xff\\xfe\\\"}\")"
    );
    // A multi-byte character split across chunks is fine.
    let text = "{\"a\":5,\"b\":\"é中😀\"}\n".as_bytes();
    let out = decode_chunked(text, 1, 1024);
    assert_eq!(out[0].as_ref().unwrap(), &rec(5, "é中😀"));
}

#[test]
fn bad_json_and_bad_values_are_item_errors_and_decoding_continues() {
    let input = concat!(
        "{\"a\":1,\"b\":\"x\"}\n",
        "{\"a\":,\"b\":\"x\"}\n",            // syntax
        "{\"a\":2,\"b\":\"x\"}{\"a\":3}\n",  // two values on one line
        "{\"a\":2,\"b\":\"x\"} trailing\n",  // trailing garbage
        "{\"a\":\"2\",\"b\":\"x\"}\n",       // wrong type
        "{\"a\":2}\n",                       // missing field
        "{\"a\":1,\"b\":\"x\"\n",            // truncated
        "\u{feff}{\"a\":7,\"b\":\"bom\"}\n", // a BOM is trimmed, as JS trim() does
        "{\"a\":8,\"b\":\"x\"}\n",
    );
    let out = decode_chunked(input.as_bytes(), 3, 1024);
    assert_eq!(
        summary(&out),
        ["ok:1", "json@2", "json@3", "json@4", "value@5", "value@6", "json@7", "ok:7", "ok:8"]
    );
    let err = out[1].as_ref().unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 2: invalid JSON at column 6: expected value (excerpt: \"{\\\"a\\\":,\\\"b\\\":\\\"x\\\"}\")"
    );
    let err = out[5].as_ref().unwrap_err();
    assert!(
        err.to_string()
            .starts_with("line 6: rejected value at column 7: missing field `b`"),
        "{err}"
    );
    assert_eq!(
        summary(&decode_codec(input.as_bytes(), 3, 1024)),
        summary(&out)
    );
}

#[test]
fn excerpts_are_short_and_printable() {
    let long_bad = format!("{{\"a\":1,\"b\":\"{}\n", "\u{7}é".repeat(200));
    let out = decode_chunked(long_bad.as_bytes(), 4096, 1 << 20);
    let excerpt = out[0].as_ref().unwrap_err().excerpt().unwrap().to_owned();
    assert!(excerpt.ends_with("..."));
    assert!(excerpt.starts_with("{\\\"a\\\":1,\\\"b\\\":\\\"\\u{7}é"));
    assert!(!excerpt.chars().any(char::is_control));
    assert!(excerpt.chars().count() < 64 * 8);
}

#[test]
fn final_line_without_newline_is_decoded_at_eof() {
    let input = b"{\"a\":1,\"b\":\"x\"}\n{\"a\":2,\"b\":\"y\"}";
    let out = decode_chunked(input, 4, 1024);
    assert_eq!(summary(&out), ["ok:1", "ok:2"]);
    assert_eq!(summary(&decode_codec(input, 4, 1024)), ["ok:1", "ok:2"]);
    // A broken tail is reported with its line number, and nothing is left behind.
    let out = decode_chunked(b"\n{\"a\":1,", 4, 1024);
    assert_eq!(summary(&out), ["json@2"]);
    // A too-long tail is reported once, not again at EOF.
    let out = decode_chunked(&[b'x'; 100], 7, 10);
    assert_eq!(summary(&out), ["too_long@1"]);
}

#[test]
fn stream_decoder_bookkeeping_mirrors_the_typescript_parser() {
    let mut decoder = StreamDecoder::<Rec>::new();
    assert!(!decoder.has_pending());
    decoder.feed_str("{\"a\":1,\"b\":\"x\"}\n  \n{\"a\":2");
    assert_eq!(decoder.next_item().unwrap().unwrap(), rec(1, "x"));
    assert!(decoder.next_item().is_none());
    assert_eq!(decoder.line_number(), 2);
    assert_eq!(decoder.pending_len(), 6);
    assert!(decoder.has_pending());
    decoder.reset();
    assert_eq!(decoder.line_number(), 0);
    assert_eq!(decoder.pending_len(), 0);
    decoder.feed_str("   \r\n ");
    assert_eq!(decoder.items().count(), 0);
    assert!(
        !decoder.has_pending(),
        "whitespace alone is not pending data"
    );
    assert_eq!(decoder.flush().count(), 0);
    assert_eq!(decoder.line_number(), 1);
}

#[test]
fn byte_at_a_time_feed_of_a_long_line_is_linear() {
    // 4 MiB fed one byte at a time: rescanning would cost ~8e12 byte visits, linear ~4e6.
    let payload = "x".repeat(4 << 20);
    let line = format!("{{\"a\":1,\"b\":\"{payload}\"}}\n");
    let started = Instant::now();
    let mut decoder = StreamDecoder::<Rec>::new();
    let mut got = None;
    for byte in line.as_bytes() {
        decoder.feed(std::slice::from_ref(byte));
        if let Some(item) = decoder.next_item() {
            got = Some(item.unwrap());
        }
    }
    assert_eq!(got.unwrap().b.len(), payload.len());
    // Generous even for an unoptimised build on a busy machine; quadratic would take hours.
    assert!(
        started.elapsed() < Duration::from_mins(1),
        "{:?}",
        started.elapsed()
    );
}

#[derive(Debug, Deserialize)]
struct ConformanceCase {
    name: String,
    line: String,
    valid: bool,
}

#[test]
fn typescript_conformance_file_frames_cleanly() {
    // The file itself is NDJSON written by the TypeScript implementation.
    let file = include_bytes!("../data/events-conformance.jsonl");
    let parsed = parse_ndjson::<ConformanceCase>(file);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    assert_eq!(parsed.items.len(), 73);

    // Replay every case as one stream. Only JSON syntax is judged here (the event schema is
    // enclave-types' job): every line the TS side accepted must frame as well-formed JSON.
    let mut stream = String::new();
    for case in &parsed.items {
        stream.push_str(&case.line);
        stream.push('\n');
    }
    let decoded = parse_ndjson::<serde::de::IgnoredAny>(&stream);
    let bad_lines: Vec<u64> = decoded.errors.iter().filter_map(Error::line).collect();
    for (index, case) in parsed.items.iter().enumerate() {
        let line = u64::try_from(index).unwrap() + 1;
        if case.valid {
            assert!(!bad_lines.contains(&line), "{} was valid in TS", case.name);
        }
    }
    let syntax_failures: Vec<&str> = bad_lines
        .iter()
        .map(|&line| {
            parsed.items[usize::try_from(line).unwrap() - 1]
                .name
                .as_str()
        })
        .collect();
    assert_eq!(
        syntax_failures,
        [
            "truncated_json",
            "trailing_garbage",
            "two_objects_one_line",
            "nan_literal",
            "single_quotes"
        ]
    );
    assert!(decoded
        .errors
        .iter()
        .all(|e| matches!(e, Error::InvalidJson { .. })));
    assert_eq!(decoded.items.len(), 73 - 5);
}

#[test]
fn stringify_then_parse_round_trips() {
    let records = vec![
        rec(1, "line\nbreak"),
        rec(2, "quote\"back\\slash"),
        rec(3, "é中😀\u{0}"),
    ];
    let text = stringify_ndjson(&records).unwrap();
    assert_eq!(text.lines().count(), 3, "embedded newlines stay escaped");
    assert!(text.ends_with('\n'));
    let parsed = parse_ndjson::<Rec>(&text);
    assert!(parsed.errors.is_empty());
    assert_eq!(parsed.items, records);
}

#[test]
fn input_after_a_flushed_too_long_tail_starts_a_fresh_line() {
    // The tail breaks the limit and has no newline; EOF ends it, so nothing later is lost.
    let mut decoder = StreamDecoder::<Rec>::with_max_line_length(8);
    decoder.feed(&[b'x'; 20]);
    assert_eq!(
        summary(&decoder.flush().collect::<Vec<_>>()),
        ["too_long@1"]
    );
    decoder.feed(b"{\"a\":2,\"b\":\"\"}\n");
    let later: Vec<_> = decoder.items().collect();
    assert_eq!(
        later.len(),
        1,
        "the first line after the flush was swallowed"
    );
    assert_eq!(later[0].as_ref().unwrap_err().line(), Some(2));

    let mut decoder = StreamDecoder::<Rec>::with_max_line_length(16);
    decoder.feed(&[b'x'; 40]);
    assert_eq!(
        summary(&decoder.flush().collect::<Vec<_>>()),
        ["too_long@1"]
    );
    decoder.feed(b"{\"a\":2,\"b\":\"\"}\n");
    assert_eq!(summary(&decoder.items().collect::<Vec<_>>()), ["ok:2"]);
    assert_eq!(decoder.line_number(), 2);

    // The codec, as FramedRead drives it when a reader yields data again after EOF.
    let mut codec = NdjsonCodec::<Rec>::with_max_line_length(16);
    let mut buf = BytesMut::from(&[b'x'; 40][..]);
    let mut out = Vec::new();
    while let Some(item) = codec.decode_eof(&mut buf).unwrap() {
        out.push(item);
    }
    buf.extend_from_slice(b"{\"a\":2,\"b\":\"\"}\n");
    while let Some(item) = codec.decode(&mut buf).unwrap() {
        out.push(item);
    }
    assert_eq!(summary(&out), ["too_long@1", "ok:2"]);
}

#[test]
fn limit_edges_with_and_without_carriage_return() {
    // `[1]` is 3 bytes: at a limit of 3 it passes with `\n`; the `\r` of `\r\n` counts, as in
    // tokio-util's LinesCodec, so the same value ending in `\r\n` is one byte too long.
    let line = |a: u32| format!("{{\"a\":{a},\"b\":\"\"}}");
    let at_limit = line(1);
    let limit = at_limit.len();
    for chunk in [1, 2, limit, limit + 1, 4096] {
        for (input, expected) in [
            (format!("{at_limit}\n{}\n", line(2)), vec!["ok:1", "ok:2"]),
            (
                format!("{at_limit}\r\n{}\n", line(2)),
                vec!["too_long@1", "ok:2"],
            ),
            (
                format!("{at_limit} \n{}\n", line(2)),
                vec!["too_long@1", "ok:2"],
            ),
            (at_limit.clone(), vec!["ok:1"]),
            (format!("{at_limit}\r"), vec!["too_long@1"]),
            (format!("\r\n\r\n{at_limit}"), vec!["ok:1"]),
        ] {
            let out = decode_chunked(input.as_bytes(), chunk, limit);
            assert_eq!(summary(&out), expected, "{input:?} in chunks of {chunk}");
            let codec = decode_codec(input.as_bytes(), chunk, limit);
            assert_eq!(
                summary(&codec),
                expected,
                "codec: {input:?} in chunks of {chunk}"
            );
        }
    }
    // At a limit of 0 only empty lines pass; a lone `\r` line is one byte too long.
    let out = decode_chunked(b"\n\n\r\n{}\n", 1, 0);
    assert_eq!(summary(&out), ["too_long@3", "too_long@4"]);
}

#[test]
fn reset_mid_discard_forgets_the_long_line() {
    let mut decoder = StreamDecoder::<Rec>::with_max_line_length(8);
    decoder.feed(&[b'x'; 30]);
    assert_eq!(
        summary(&decoder.items().collect::<Vec<_>>()),
        ["too_long@1"]
    );
    decoder.reset();
    decoder.feed(b"{\"a\":1,\"b\":\"\"}\n");
    assert_eq!(
        summary(&decoder.items().collect::<Vec<_>>()),
        ["too_long@1"]
    );
    let mut decoder = StreamDecoder::<Rec>::with_max_line_length(64);
    decoder.feed(&[b'x'; 100]);
    assert_eq!(decoder.items().count(), 1);
    decoder.reset();
    decoder.feed_str("{\"a\":1,\"b\":\"é\"}\n");
    assert_eq!(summary(&decoder.items().collect::<Vec<_>>()), ["ok:1"]);
    assert_eq!(decoder.line_number(), 1);
}

#[test]
fn has_pending_ignores_the_rest_of_a_line_being_discarded() {
    let mut decoder = StreamDecoder::<Rec>::with_max_line_length(8);
    decoder.feed(&[b'x'; 12]);
    // Only the first limit + 1 bytes are consumed with the error; the rest waits to be dropped.
    assert_eq!(summary(&[decoder.next_item().unwrap()]), ["too_long@1"]);
    assert!(decoder.pending_len() > 0);
    assert!(!decoder.has_pending(), "nothing left would decode");
    assert_eq!(decoder.flush().count(), 0);

    let mut decoder = StreamDecoder::<Rec>::with_max_line_length(8);
    decoder.feed(&[b'x'; 12]);
    decoder.feed(
        b"xx
[1]",
    );
    assert!(decoder.next_item().unwrap().is_err());
    assert!(decoder.has_pending(), "`[1]` after the long line is live");
    assert_eq!(summary(&decoder.flush().collect::<Vec<_>>()), ["value@2"]);
}

#[test]
fn lines_are_trimmed_like_javascript_trim() {
    // The TypeScript decoder parses `line.trim()`: besides JSON's four whitespace bytes that
    // removes VT, FF, NBSP, the BOM, the Unicode spaces and the line/paragraph separators.
    let input = concat!(
        "\u{feff}{\"a\":1,\"b\":\"bom\"}\r\n",
        "\u{a0}\u{2003}{\"a\":2,\"b\":\"spaces\"}\u{3000}\n",
        "\u{b}\u{c}{\"a\":3,\"b\":\"vt ff\"}\u{2028}\n",
        "\u{feff} \u{a0}\r\n", // nothing left after trim: a blank line, counted
        "\u{85}{\"a\":5,\"b\":\"NEL\"}\n", // U+0085 is not JS whitespace
        "{\"a\":6,\"b\":\"x\"}\u{a0}x\n", // only the edges are trimmed
    );
    let out = decode_chunked(input.as_bytes(), 5, 1024);
    assert_eq!(summary(&out), ["ok:1", "ok:2", "ok:3", "json@5", "json@6"]);
}

#[test]
fn columns_count_from_the_start_of_the_line_as_received() {
    // A BOM (3 bytes) and a space are trimmed before parsing; the column still counts them.
    let out = decode_chunked("\u{feff} {\"a\":,\"b\":\"x\"}\n".as_bytes(), 64, 1024);
    match out[0].as_ref().unwrap_err() {
        Error::InvalidJson { line, column, .. } => assert_eq!((*line, *column), (1, 10)),
        other => panic!("expected invalid JSON, got {other}"),
    }
    // Plain JSON whitespace is left to the parser; same column either way.
    let out = decode_chunked("    {\"a\":,\"b\":\"x\"}\n".as_bytes(), 64, 1024);
    let err = out[0].as_ref().unwrap_err();
    assert!(err.to_string().contains("at column 10"), "{err}");
}

#[test]
fn has_pending_agrees_with_flush_on_javascript_whitespace() {
    // A NBSP, a BOM and the Unicode spaces are trimmed, so a tail of them is blank.
    for tail in ["\u{a0}", "\u{feff}", " \u{2003}\u{3000} \r", "\u{b}\u{c}"] {
        let mut decoder = StreamDecoder::<Rec>::new();
        decoder.feed_str(&format!("{{\"a\":1,\"b\":\"\"}}\n{tail}"));
        assert_eq!(summary(&decoder.items().collect::<Vec<_>>()), ["ok:1"]);
        assert!(!decoder.has_pending(), "{tail:?} is blank to the decoder");
        assert_eq!(decoder.flush().count(), 0, "{tail:?}");
    }
    // Half a NBSP is not whitespace but invalid UTF-8: it is pending, and flush says so.
    let mut decoder = StreamDecoder::<Rec>::new();
    decoder.feed(b"\xc2");
    assert!(decoder.has_pending());
    assert_eq!(summary(&decoder.flush().collect::<Vec<_>>()), ["utf8@1"]);
    // Blank lines over the limit are reported as too long, so they are pending too.
    let mut decoder = StreamDecoder::<Rec>::with_max_line_length(2);
    decoder.feed_str("    ");
    assert!(decoder.has_pending());
    assert_eq!(
        summary(&decoder.flush().collect::<Vec<_>>()),
        ["too_long@1"]
    );
    // Complete blank lines before a value do not hide it.
    let mut decoder = StreamDecoder::<Rec>::new();
    decoder.feed_str("\u{a0}\n\u{feff}\n{\"a\":3,\"b\":\"\"}");
    assert!(decoder.has_pending());
    assert_eq!(summary(&decoder.flush().collect::<Vec<_>>()), ["ok:3"]);
    assert!(!decoder.has_pending());
}

#[test]
fn a_huge_bad_value_is_quoted_in_bounded_form_everywhere() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    enum Kind {
        Known,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Tagged {
        kind: Kind,
    }
    // serde_json's own message quotes the whole 1 MiB variant name.
    let value = "\u{1b}x".repeat(512 * 1024);
    let line = format!("{{\"kind\":{}}}\n", serde_json::to_string(&value).unwrap());
    let mut decoder = StreamDecoder::<Tagged>::new();
    decoder.feed_str(&line);
    let err = decoder.next_item().unwrap().unwrap_err();
    let Error::InvalidValue {
        line: 1,
        ref reason,
        ref excerpt,
        ..
    } = err
    else {
        panic!("expected a rejected value on line 1, got {err}");
    };
    assert!(reason.starts_with("unknown variant `\\u{1b}x"), "{reason}");
    assert!(reason.len() <= 160 * 10 + 3, "{} bytes", reason.len());
    assert!(excerpt.len() <= 64 * 10 + 3, "{} bytes", excerpt.len());
    // Whatever way the error is shown, it stays small and printable: nothing behind it
    // still holds the whole message.
    let display = err.to_string();
    let debug = format!("{err:?}");
    assert!(display.len() < 4096, "{} bytes", display.len());
    assert!(debug.len() < 4096, "{} bytes", debug.len());
    assert!(!display.chars().any(char::is_control), "{display}");
    assert!(std::error::Error::source(&err).is_none());

    // Same for a syntax error deep inside a huge line.
    let line = format!("[\"{}\",]\n", "y".repeat(1 << 20));
    let parsed = parse_ndjson::<serde_json::Value>(&line);
    let err = &parsed.errors[0];
    assert!(matches!(err, Error::InvalidJson { line: 1, .. }), "{err}");
    assert!(format!("{err:?}").len() < 4096);
    assert!(err.to_string().len() < 4096);
}

#[test]
fn stream_encoder_refuses_a_long_line_and_keeps_what_it_had() {
    let mut encoder = StreamEncoder::<Rec>::with_max_line_length(20);
    encoder.encode(&rec(1, "ok")).unwrap();
    let before = encoder.as_bytes().to_vec();
    let err = encoder.encode(&rec(2, "much too long")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LineTooLongToWrite {
                line: 2,
                length: 27,
                limit: 20
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        encoder.as_bytes(),
        &before[..],
        "nothing partial is written"
    );
    assert_eq!(encoder.lines_encoded(), 1);
    encoder.encode(&rec(3, "")).unwrap();
    let parsed = parse_ndjson::<Rec>(encoder.take());
    assert_eq!(parsed.items, [rec(1, "ok"), rec(3, "")]);
}

#[test]
fn stringify_refuses_a_line_parse_would_refuse() {
    // One byte over the default limit once quoted: `"` + payload + `"`.
    let payload = "x".repeat(DEFAULT_MAX_LINE_LENGTH - 1);
    let err = stringify_ndjson(&["small".to_owned(), payload]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LineTooLongToWrite {
                line: 2,
                length,
                limit: DEFAULT_MAX_LINE_LENGTH
            } if length == DEFAULT_MAX_LINE_LENGTH + 1
        ),
        "{err}"
    );
    // At exactly the limit the line is written, and parse_ndjson takes it back.
    let payload = "x".repeat(DEFAULT_MAX_LINE_LENGTH - 2);
    let text = stringify_ndjson(std::slice::from_ref(&payload)).unwrap();
    assert_eq!(text.len(), DEFAULT_MAX_LINE_LENGTH + 1);
    assert_eq!(parse_ndjson::<String>(&text).items, [payload]);
}

/// Runs `input` through the callback face in chunks of `chunk` bytes, ending at the end.
fn decode_callback(input: &[u8], chunk: usize, limit: usize) -> Vec<Result<Rec, Error>> {
    let mut out = Vec::new();
    let mut handed = 0;
    let mut decoder = StreamDecoder::with_max_line_length(limit).on_message(|item| out.push(item));
    for piece in input.chunks(chunk) {
        handed += decoder.write(piece);
    }
    handed += decoder.end();
    assert!(!decoder.decoder().has_pending());
    drop(decoder);
    assert_eq!(handed, out.len());
    out
}

/// Runs `input` through the chunk-stream face in chunks of `chunk` bytes.
fn decode_stream(input: &[u8], chunk: usize, limit: usize) -> Vec<Result<Rec, Error>> {
    use futures::StreamExt;
    let chunks = futures::stream::iter(input.chunks(chunk));
    futures::executor::block_on(
        StreamDecoder::with_max_line_length(limit)
            .decode_stream(chunks)
            .collect(),
    )
}

#[test]
fn callback_and_chunk_stream_faces_give_the_items_of_the_pull_face() {
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"a\":1,\"b\":\"x\"}\r\n\n  \n");
    input.extend_from_slice(b"not json\n");
    input.extend_from_slice(format!("{{\"a\":2,\"b\":\"{}\"}}\n", "y".repeat(80)).as_bytes());
    input.extend_from_slice(
        "{\"a\":3,\"b\":\"grüße\"}\n{\"a\":4}\n{\"a\":5,\"b\":\"last\"}".as_bytes(),
    );
    let expected = summary(&decode_chunked(&input, input.len(), 64));
    assert_eq!(
        expected,
        ["ok:1", "json@4", "too_long@5", "ok:3", "value@7", "ok:5"].map(String::from)
    );
    for chunk in [1, 2, 3, 7, 64, input.len()] {
        assert_eq!(
            summary(&decode_callback(&input, chunk, 64)),
            expected,
            "callback, chunks of {chunk}"
        );
        assert_eq!(
            summary(&decode_stream(&input, chunk, 64)),
            expected,
            "stream, chunks of {chunk}"
        );
    }
}

#[test]
fn the_callback_decoder_hands_over_lines_as_they_complete_and_keeps_counting_after_end() {
    let mut seen = Vec::new();
    let mut decoder = StreamDecoder::<serde_json::Value>::new().on_message(|item| {
        seen.push(item.map(|v| v["type"].as_str().unwrap_or("?").to_owned()));
    });
    assert_eq!(decoder.write("{\"type\":\"start\"}\n{\"type\":"), 1);
    assert_eq!(decoder.write("\"end\"}"), 0, "no newline yet");
    assert_eq!(decoder.end(), 1);
    assert_eq!(decoder.write("oops\n"), 1);
    assert_eq!(decoder.decoder().line_number(), 3);
    let inner = decoder.into_inner();
    assert!(!inner.has_pending());
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].as_deref().ok(), Some("start"));
    assert_eq!(seen[1].as_deref().ok(), Some("end"));
    assert_eq!(seen[2].as_ref().unwrap_err().line(), Some(3));
}

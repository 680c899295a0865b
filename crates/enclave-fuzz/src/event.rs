//! The event parser target: one NDJSON line as an `enclave_types::Frame`.

use enclave_types::Frame;
use serde::Deserialize;

/// Parses `data` as one line of the stream and checks that a frame it accepts round-trips.
///
/// For a line [`Frame::parse_line`] accepts:
/// - serializing the frame never fails, and re-parsing the output gives an equal frame;
/// - serialization is a fixpoint: the re-parsed frame serializes to the same text;
/// - the output's `type`, `seq`, `sessionId` and `protocolVersion` are the frame's own;
/// - through the NDJSON layer the frame is exactly one line that decodes to the same text.
///
/// A rejected line must come with a non-empty message.
///
/// # Panics
///
/// When one of the invariants above does not hold.
pub fn event_parser(data: &[u8]) {
    let frame = match Frame::parse_line(data) {
        Ok(frame) => frame,
        Err(err) => {
            assert!(!err.to_string().is_empty(), "a rejected line must say why");
            return;
        }
    };
    let text = serde_json::to_string(&frame).unwrap_or_else(|err| {
        panic!("an accepted frame failed to serialize: {err}; frame: {frame:?}")
    });
    let reparsed = Frame::parse_line(text.as_bytes())
        .unwrap_or_else(|err| panic!("our own output was rejected: {err}; output: {text}"));
    assert_eq!(
        frame, reparsed,
        "the frame changed through serialize + parse; output: {text}"
    );
    let again = serde_json::to_string(&reparsed).expect("serializing an equal frame succeeds");
    assert_eq!(text, again, "serialization is not a fixpoint");

    check_header(&frame, &text);
    check_ndjson_line(&frame, &text);
}

/// The envelope fields on the wire must be the ones the accessors report.
fn check_header(frame: &Frame, text: &str) {
    // Only the header is read: opaque payload fields may nest deeper than a `Value` allows.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Header {
        protocol_version: u64,
        session_id: String,
        seq: u64,
        #[serde(rename = "type")]
        kind: String,
    }
    let header: Header = serde_json::from_str(text)
        .unwrap_or_else(|err| panic!("our output has no readable header: {err}; output: {text}"));
    assert_eq!(
        header.kind,
        frame.type_str(),
        "`type` differs; output: {text}"
    );
    assert_eq!(header.seq, frame.seq(), "`seq` differs; output: {text}");
    assert_eq!(
        header.session_id,
        frame.session_id().as_str(),
        "`sessionId` differs; output: {text}"
    );
    assert!(
        matches!(header.protocol_version, 1 | 2),
        "`protocolVersion` is {}; output: {text}",
        header.protocol_version
    );
}

/// The NDJSON encoder must turn the frame into one line that decodes back to it.
fn check_ndjson_line(frame: &Frame, text: &str) {
    let line = enclave_ndjson::stringify_ndjson(std::slice::from_ref(frame))
        .unwrap_or_else(|err| panic!("the NDJSON encoder refused an accepted frame: {err}"));
    // Opaque fields keep their raw text, which may hold newlines between tokens; the encoder
    // turns those into spaces, which is the only change it may make.
    let expected = format!("{}\n", text.replace('\n', " "));
    assert_eq!(
        line, expected,
        "the NDJSON line is not the frame's JSON plus one newline"
    );
    let parsed = enclave_ndjson::parse_ndjson::<Frame>(&line);
    assert!(
        parsed.errors.is_empty(),
        "our NDJSON line was rejected: {:?}",
        parsed.errors
    );
    assert_eq!(parsed.items.len(), 1, "one frame must be one line");
    let decoded =
        serde_json::to_string(&parsed.items[0]).expect("serializing a decoded frame succeeds");
    assert_eq!(
        decoded,
        expected.trim_end_matches('\n'),
        "the frame changed through the NDJSON layer"
    );
}

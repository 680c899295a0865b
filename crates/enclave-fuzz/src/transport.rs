//! The transport's targets: what the server and the client parse from untrusted requests and
//! messages, through the very functions `enclave-transport` calls (`enclave_transport::wire`).

use enclave_transport::wire::{
    self, Classified, Control, CreateBody, NdjsonLine, CONTROL_TYPES, MAX_REFUSAL_MESSAGE_BYTES,
};
use enclave_transport::{Features, Refusal, RefusalReason};
use enclave_types::{ClientHello, Frame, MessageFrame, ServerHello, SessionId};
use serde::{Deserialize, Deserializer, Serialize};

use crate::ndjson::{numbered_model, Outcome};

/// The session whose messages the messages-body face expects; seeds use it.
const SESSION: &str = "s_fuzz";
/// Refusals go back to an untrusted peer: they must stay well under this.
const REFUSAL_BOUND: usize = 1024;
/// The keys of a `POST /sessions` body; any other key is ignored.
const CREATE_KEYS: [&str; 5] = ["sessionId", "code", "config", "filter", "encryption"];

/// A line's JSON value as its text, to compare the splitter's `RawValue`s with the model.
#[derive(Debug, PartialEq)]
struct RawText(String);

impl<'de> Deserialize<'de> for RawText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<serde_json::value::RawValue>::deserialize(deserializer)
            .map(|raw| Self(raw.get().to_owned()))
    }
}

/// The `type` of a JSON object line, when it has exactly one string `type`.
fn type_tag(line: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Tag {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_slice::<Tag>(line).ok().map(|tag| tag.kind)
}

/// Line limit from a control byte, as `ndjson_decoder` picks it: 0 is the 16 MiB default,
/// otherwise small multiples of 8 bytes, so the over-long path is reachable.
fn limit(selector: u8) -> usize {
    match selector {
        0 => enclave_ndjson::DEFAULT_MAX_LINE_LENGTH,
        selector => usize::from(selector - 1) * 8,
    }
}

fn check_refusal(refusal: &Refusal, what: &str) {
    assert_eq!(
        refusal.reason,
        RefusalReason::InvalidRequest,
        "{what}: a malformed input must be refused as invalid_request: {refusal}"
    );
    assert!(
        !refusal.message.is_empty()
            && refusal.message.len() <= MAX_REFUSAL_MESSAGE_BYTES
            && MAX_REFUSAL_MESSAGE_BYTES < REFUSAL_BOUND,
        "{what}: a refusal message must be short and say something, got {} bytes: {:?}",
        refusal.message.len(),
        refusal.message
    );
    let json = refusal.to_json().to_string();
    assert!(
        json.len() < REFUSAL_BOUND + 128,
        "{what}: the refusal body is {} bytes",
        json.len()
    );
}

/// Serializes `value` and parses it back with `parse`, which must give an equal value, and
/// serialization must be a fixpoint.
fn round_trip<T: Serialize + PartialEq + std::fmt::Debug, E: std::fmt::Display>(
    value: &T,
    parse: impl Fn(&[u8]) -> Result<T, E>,
    what: &str,
) {
    let text = serde_json::to_string(value)
        .unwrap_or_else(|err| panic!("{what}: an accepted value failed to serialize: {err}"));
    let again = parse(text.as_bytes())
        .unwrap_or_else(|err| panic!("{what}: our own output was refused: {err}; {text}"));
    assert_eq!(
        &again, value,
        "{what}: changed through a round trip: {text}"
    );
    let text_again = serde_json::to_string(&again).expect("an equal value serializes");
    assert_eq!(text, text_again, "{what}: serialization is not a fixpoint");
}

// ---------------------------------------------------------------------------------------
// http_request

/// Feeds the server's parsers of untrusted request parts; byte 0 picks which (mod 6), the
/// rest is the input:
/// 0. a `POST /sessions` body ([`wire::parse_create_body`]): an accepted body round-trips,
///    an empty one or an object of unknown keys gives the defaults;
/// 1. an `X-Enclave-Client-Hello` value ([`wire::decode_client_hello_header`]), against a
///    reference base64url decoder: accepted exactly when it is base64url (canonical padding
///    or none) of `ClientHello` JSON, and then equal to what the model decodes;
/// 2. hello JSON: a `ClientHello` or `ServerHello` it parses as is encoded
///    ([`wire::encode_hello_header`]) and decoded back equal, padded or not, and refused with
///    wrong padding or the standard alphabet;
/// 3. a number header or query value ([`wire::parse_number`]) against a digit-by-digit model;
/// 4. `X-Enclave-Features` ([`Features::parse`]) against a model;
/// 5. a messages body ([`wire::parse_messages_body`], byte 1 picks the line limit) against
///    the NDJSON model: accepted exactly when every line is a client message of the
///    session, each with its line number; otherwise refused naming the first bad line.
///
/// Every refusal must be `invalid_request` with a message under 1 KiB.
///
/// # Panics
///
/// When one of the invariants above does not hold.
pub fn http_request(data: &[u8]) {
    let Some((selector, input)) = data.split_first() else {
        return;
    };
    match selector % 6 {
        0 => create_body(input),
        1 => hello_header(input),
        2 => hello_round_trip(input),
        3 => number(input),
        4 => features(input),
        _ => {
            let (limit_selector, body) = input.split_first().unwrap_or((&0, &[]));
            messages_body(body, limit(*limit_selector));
        }
    }
}

fn create_body(body: &[u8]) {
    let parsed = wire::parse_create_body(body);
    if body.trim_ascii().is_empty() {
        assert_eq!(
            parsed.ok(),
            Some(CreateBody::default()),
            "an empty body asks for the defaults"
        );
        return;
    }
    match parsed {
        Ok(request) => {
            round_trip(&request, wire::parse_create_body, "POST /sessions body");
            // Unknown keys are ignored, as the broker does: an object of only those is the
            // default request.
            if let Ok(serde_json::Value::Object(fields)) =
                serde_json::from_slice::<serde_json::Value>(body)
            {
                if fields
                    .keys()
                    .all(|key| !CREATE_KEYS.contains(&key.as_str()))
                {
                    assert_eq!(
                        request,
                        CreateBody::default(),
                        "unknown keys changed the request"
                    );
                }
            }
        }
        Err(refusal) => {
            check_refusal(&refusal, "POST /sessions body");
            assert!(
                serde_json::from_slice::<CreateBody>(body).is_err(),
                "refused a body serde reads"
            );
        }
    }
}

/// The reference decoder: surrounding ASCII whitespace dropped, then base64url with either
/// no padding or exactly the padding that completes the last group, and zero unused bits.
fn model_base64url(value: &[u8]) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let value = value.trim_ascii();
    let body_len = value.len() - value.iter().rev().take_while(|&&b| b == b'=').count();
    let (body, padding) = value.split_at(body_len);
    if body.len() % 4 == 1
        || (!padding.is_empty() && (padding.len() > 2 || !value.len().is_multiple_of(4)))
    {
        return None;
    }
    let mut sextets = Vec::with_capacity(body.len());
    for byte in body {
        let index = ALPHABET.iter().position(|a| a == byte)?;
        sextets.push(u32::try_from(index).expect("under 64"));
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for group in sextets.chunks(4) {
        let mut bits = 0u32;
        for (at, sextet) in group.iter().enumerate() {
            bits |= sextet << (18 - 6 * at);
        }
        let bytes = bits.to_be_bytes();
        let full = group.len() - 1;
        out.extend_from_slice(&bytes[1..=full]);
        // The bits after the last whole byte must be zero (canonical encoding).
        let unused = 24 - 8 * full;
        if group.len() < 4 && bits & ((1 << unused) - 1) != 0 {
            return None;
        }
    }
    Some(out)
}

fn hello_header(input: &[u8]) {
    // Header values reach the parser only as visible ASCII; anything else is refused earlier.
    let Ok(value) = std::str::from_utf8(input) else {
        return;
    };
    let expected = model_base64url(value.as_bytes())
        .and_then(|json| serde_json::from_slice::<ClientHello>(&json).ok());
    match (wire::decode_client_hello_header(value), expected) {
        (Ok(hello), Some(expected)) => assert_eq!(hello, expected, "decoded another hello"),
        (Ok(hello), None) => panic!("accepted what is not base64url of a hello: {hello:?}"),
        (Err(refusal), Some(expected)) => {
            panic!("refused base64url of a hello ({expected:?}): {refusal}")
        }
        (Err(refusal), None) => check_refusal(&refusal, "X-Enclave-Client-Hello"),
    }
}

fn hello_round_trip(json: &[u8]) {
    if let Ok(hello) = serde_json::from_slice::<ClientHello>(json) {
        header_variants(&hello, wire::decode_client_hello_header);
    }
    if let Ok(hello) = serde_json::from_slice::<ServerHello>(json) {
        header_variants(&hello, wire::decode_server_hello_header);
    }
}

fn header_variants<H: Serialize + PartialEq + std::fmt::Debug>(
    hello: &H,
    decode: fn(&str) -> Result<H, Refusal>,
) {
    let encoded = wire::encode_hello_header(hello).expect("a hello serializes");
    assert!(
        encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "the header is not unpadded base64url: {encoded}"
    );
    let padding = "=".repeat((4 - encoded.len() % 4) % 4);
    for accepted in [
        encoded.clone(),
        format!("{encoded}{padding}"),
        format!(" {encoded}\t"),
    ] {
        let decoded = decode(&accepted)
            .unwrap_or_else(|refusal| panic!("our own header was refused: {refusal}"));
        assert_eq!(&decoded, hello, "the hello changed through its header");
    }
    let wrong_padding = if padding.is_empty() {
        "====".to_owned()
    } else {
        format!("{padding}=")
    };
    let standard = encoded.replace('-', "+").replace('_', "/");
    let mut refused = vec![format!("{encoded}{wrong_padding}")];
    if standard != encoded {
        refused.push(standard);
    }
    for value in refused {
        let refusal = decode(&value)
            .err()
            .unwrap_or_else(|| panic!("accepted a header that is not base64url: {value}"));
        check_refusal(&refusal, "hello header");
    }
}

fn number(input: &[u8]) {
    let Ok(value) = std::str::from_utf8(input) else {
        return;
    };
    let digits = value.as_bytes().trim_ascii();
    let mut expected = (!digits.is_empty()).then_some(0u64);
    for &b in digits {
        expected = expected.and_then(|n| {
            b.is_ascii_digit()
                .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
                .flatten()
        });
    }
    match (wire::parse_number("X-Enclave-Ack", value), expected) {
        (Ok(n), Some(m)) => assert_eq!(n, m, "read {value:?} as {n}"),
        (Ok(n), None) => panic!("accepted {value:?} as {n}"),
        (Err(refusal), Some(m)) => panic!("refused {value:?} ({m}): {refusal}"),
        (Err(refusal), None) => {
            check_refusal(&refusal, "number");
            assert!(
                refusal.message.starts_with("X-Enclave-Ack "),
                "the refusal must name the header: {refusal}"
            );
        }
    }
}

fn features(input: &[u8]) {
    let Ok(list) = std::str::from_utf8(input) else {
        return;
    };
    let resume = list
        .split(',')
        .any(|name| name.trim().eq_ignore_ascii_case("resume"));
    assert_eq!(
        Features::parse(list).resume,
        resume,
        "resume feature in {list:?}"
    );
}

/// What parsing a messages body must give, from the NDJSON model.
fn expected_messages(body: &[u8], limit: usize) -> Result<Vec<(u64, MessageFrame)>, u64> {
    let session = SessionId::new(SESSION).expect("a valid id");
    let mut frames = Vec::new();
    for (line, outcome) in numbered_model::<RawText>(body, limit).0 {
        let Outcome::Item(RawText(text)) = outcome else {
            return Err(line);
        };
        match MessageFrame::parse_line(text.as_bytes()) {
            Ok(frame) if *frame.session_id() == session => frames.push((line, frame)),
            _ => return Err(line),
        }
    }
    Ok(frames)
}

fn messages_body(body: &[u8], limit: usize) {
    let session = SessionId::new(SESSION).expect("a valid id");
    match (
        wire::parse_messages_body(body, &session, limit),
        expected_messages(body, limit),
    ) {
        (Ok(frames), Ok(expected)) => {
            assert_eq!(frames, expected, "other messages than the model's");
            for (_, frame) in &frames {
                round_trip(frame, MessageFrame::parse_line, "client message");
            }
        }
        (Ok(frames), Err(line)) => {
            panic!("accepted a body the model refuses at line {line}: {frames:?}")
        }
        (Err(refusal), Ok(expected)) => {
            panic!(
                "refused a body of {} good messages: {refusal}",
                expected.len()
            )
        }
        (Err(refusal), Err(line)) => {
            check_refusal(&refusal, "messages body");
            let at = format!("session {SESSION}, line {line}");
            assert!(
                refusal.message.starts_with(&at),
                "the refusal must name {at}: {refusal}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// ws_messages

/// Splits a WebSocket text message into lines and classifies each, as the server
/// (client → server lines) or the client (server → client lines) does.
///
/// Byte 0: bit 0 picks the side (0: the server reading a client, 1: the client reading a
/// server), the other bits the line limit (as `ndjson_decoder` picks it). Checked:
/// [`wire::split_lines`] yields exactly the NDJSON model's lines, values and errors, with
/// the model's line numbers (so a single JSON value without a newline is one line, blank
/// lines are skipped, over-long lines are errors); each line is classified by its `type`:
/// a control `type` never yields data, any other `type` never yields a control line;
/// accepted data and control lines round-trip, and reclassifying a control line's own
/// output gives it back.
///
/// # Panics
///
/// When one of the invariants above does not hold.
pub fn ws_messages(data: &[u8]) {
    let Some((control, text)) = data.split_first() else {
        return;
    };
    let from_server = control & 1 == 1;
    let limit = limit(control >> 1);
    let lines = wire::split_lines(text, limit);
    let expected = numbered_model::<RawText>(text, limit).0;
    assert_eq!(
        lines.len(),
        expected.len(),
        "{} lines, the model has {} (limit {limit})",
        lines.len(),
        expected.len()
    );
    for (line, (number, outcome)) in lines.into_iter().zip(expected) {
        match line {
            Ok(NdjsonLine {
                number: got, value, ..
            }) => {
                assert_eq!(got, number, "line number");
                assert_eq!(
                    Outcome::Item(RawText(value.get().to_owned())),
                    outcome,
                    "line {number}"
                );
                if from_server {
                    classify_server(value.get().as_bytes());
                } else {
                    classify_client(value.get().as_bytes());
                }
            }
            Err(err) => {
                assert_eq!(err.line(), Some(number), "error line number: {err}");
                assert_eq!(Outcome::from_decoded(Err(err)), outcome, "line {number}");
            }
        }
    }
    if !text.contains(&b'\n') && text.len() <= limit {
        if let Ok(value) = serde_json::from_slice::<RawText>(text) {
            let lines = wire::split_lines(text, limit);
            assert!(
                matches!(lines.as_slice(), [Ok(line)] if line.number == 1 && line.value.get() == value.0),
                "one JSON value without a newline must be one line"
            );
        }
    }
}

fn classify_server(line: &[u8]) {
    check_classified(line, wire::classify_server_line(line), |frame: &Frame| {
        round_trip(frame, Frame::parse_line, "server line");
        frame.type_str().to_owned()
    });
}

fn classify_client(line: &[u8]) {
    check_classified(
        line,
        wire::classify_client_line(line),
        |frame: &MessageFrame| {
            round_trip(frame, MessageFrame::parse_line, "client line");
            frame.type_str().to_owned()
        },
    );
}

fn check_classified<T>(line: &[u8], classified: Classified<T>, data_type: impl Fn(&T) -> String) {
    let tag = type_tag(line);
    let is_control_tag = tag.as_deref().is_some_and(|t| CONTROL_TYPES.contains(&t));
    match classified {
        Classified::Data(data) => {
            let kind = data_type(&data);
            assert!(
                !CONTROL_TYPES.contains(&kind.as_str()) && !is_control_tag,
                "a line of type {tag:?} was read as data of type {kind}"
            );
        }
        Classified::Control(control) => {
            assert!(
                tag.is_none() || is_control_tag,
                "a line of type {tag:?} was read as a control line: {control:?}"
            );
            check_control(&control, tag.as_deref());
        }
        Classified::Unreadable(err) => {
            assert!(
                !err.to_string().is_empty(),
                "an unreadable line must say why"
            );
            assert!(
                serde_json::from_slice::<Control>(line).is_err(),
                "a control line was called unreadable"
            );
        }
    }
}

/// A parsed control line round-trips, keeps its `type`, and classifies as itself.
fn check_control(control: &Control, tag: Option<&str>) {
    round_trip(
        control,
        |text| serde_json::from_slice::<Control>(text),
        "control line",
    );
    let text = serde_json::to_string(control).expect("a control line serializes");
    let own = type_tag(text.as_bytes()).expect("our control lines carry one `type`");
    assert!(CONTROL_TYPES.contains(&own.as_str()), "we wrote type {own}");
    if let Some(tag) = tag {
        assert_eq!(own, tag, "the control line changed type: {text}");
    }
    for classified in [
        matches!(wire::classify_server_line(text.as_bytes()), Classified::Control(ref c) if c == control),
        matches!(wire::classify_client_line(text.as_bytes()), Classified::Control(ref c) if c == control),
    ] {
        assert!(
            classified,
            "our own control line is not classified as itself: {text}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// control_messages

/// Parses each `\n`-separated piece of `data` as a [`Control`] line, as the WebSocket
/// opening exchange and the resume client read them.
///
/// Checked: a parsed line round-trips, keeps its `type` and classifies as itself on both
/// sides; a line whose `type` is not a control type is refused, never read as another type;
/// an `ack` or `replay_complete` carries exactly the number the line holds; the `open`
/// message's `features` turn the `resume` feature on exactly when they name it.
///
/// # Panics
///
/// When one of the invariants above does not hold.
pub fn control_messages(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        let tag = type_tag(line);
        match serde_json::from_slice::<Control>(line) {
            Ok(control) => {
                assert!(
                    tag.as_deref().is_none_or(|t| CONTROL_TYPES.contains(&t)),
                    "type {tag:?} was read as {control:?}"
                );
                check_control(&control, tag.as_deref());
                check_fields(line, &control);
            }
            Err(err) => {
                assert!(!err.to_string().is_empty(), "a refusal must say why");
            }
        }
    }
}

/// The numbers and features a control line carries are the line's own.
fn check_fields(line: &[u8], control: &Control) {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Numbers {
        seq: Option<u64>,
        last_seq: Option<u64>,
    }
    let numbers = serde_json::from_slice::<Numbers>(line).ok();
    match control {
        Control::Ack { seq } => {
            if let Some(numbers) = numbers {
                assert_eq!(numbers.seq, Some(*seq), "ack seq");
            }
        }
        Control::ReplayComplete { last_seq } => {
            if let Some(numbers) = numbers {
                assert_eq!(numbers.last_seq, Some(*last_seq), "replay_complete lastSeq");
            }
        }
        // The server joins the list and parses it as the header; a name holding a comma
        // would be split, so only lists without one are compared.
        Control::Open(open) if open.features.iter().all(|f| !f.contains(',')) => {
            let named = open
                .features
                .iter()
                .any(|f| f.trim().eq_ignore_ascii_case("resume"));
            let parsed = Features::parse(&open.features.join(",")).resume;
            assert_eq!(parsed, named, "features {:?}", open.features);
        }
        _ => {}
    }
}

//! Unit rules: ids, seq, date-times, limits, runtime messages, and the text of each error.

use enclave_types::{
    CallId, CancelPayload, DeadlineExceededPayload, EncryptedEnvelope, EncryptionMode,
    EncryptionRequest, Error, EventPayload, EventType, Frame, MessageFrame, ProtocolVersion,
    RawJson, RefId, RuntimeChannelMessage, RuntimeChannelPayload, SessionId, SessionLimits,
    StdoutPayload, StreamEvent, Timestamp, ToolResultSubmitPayload, MAX_SEQ, PROTOCOL_VERSION,
};

const SID: &str = "s_6b1f0c2e-93c1-4a41-9a57-0d1c3c3f1e01";

fn stdout_line(seq: &str) -> String {
    format!(
        r#"{{"protocolVersion":2,"sessionId":"{SID}","seq":{seq},"type":"stdout","payload":{{"chunk":"a"}}}}"#
    )
}

fn parse_err(line: &str) -> String {
    Frame::parse_line(line.as_bytes()).unwrap_err().to_string()
}

#[test]
fn ids_need_their_prefix_and_one_more_character() {
    assert_eq!(SessionId::new("s_1").unwrap().as_str(), "s_1");
    assert_eq!(CallId::new("c_x").unwrap().to_string(), "c_x");
    assert_eq!("ref_9".parse::<RefId>().unwrap().as_ref(), "ref_9");
    assert_eq!(
        SessionId::new("sess_abc").unwrap_err().to_string(),
        r#"invalid sessionId "sess_abc": must start with "s_""#
    );
    assert_eq!(
        CallId::new("c_").unwrap_err().to_string(),
        r#"invalid callId "c_": needs at least one character after "c_""#
    );
    assert_eq!(
        RefId::new("re_1").unwrap_err().to_string(),
        r#"invalid refId "re_1": must start with "ref_""#
    );
    assert!(matches!(
        SessionId::new(""),
        Err(Error::InvalidId {
            field: "sessionId",
            ..
        })
    ));
}

#[test]
fn generated_ids_are_prefixed_uuids_and_distinct() {
    let a = SessionId::generate();
    let b = SessionId::generate();
    assert_ne!(a, b);
    for (id, prefix) in [
        (a.as_str(), "s_"),
        (CallId::generate().as_str(), "c_"),
        (RefId::generate().as_str(), "ref_"),
    ] {
        let uuid = id.strip_prefix(prefix).unwrap();
        assert_eq!(uuid.len(), 36, "{id}");
        assert_eq!(uuid.as_bytes()[14], b'4', "{id} is a v4 UUID");
    }
}

#[test]
fn ids_validate_while_deserializing() {
    let id: CallId = serde_json::from_str(r#""c_1""#).unwrap();
    assert_eq!(id.as_str(), "c_1");
    let err = serde_json::from_str::<CallId>(r#""x_1""#)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        r#"invalid callId "x_1": must start with "c_" at line 1 column 5"#
    );
    // Escaped text takes the owned path and is checked the same way.
    let id: SessionId = serde_json::from_str(r#""s_\u00e9""#).unwrap();
    assert_eq!(id.as_str(), "s_é");
}

#[test]
fn seq_is_a_safe_integer_and_integral_floats_count() {
    for (text, seq) in [
        ("0", 0),
        ("1.0", 1),
        ("1e3", 1000),
        ("9007199254740991", MAX_SEQ),
        ("-0", 0),
    ] {
        assert_eq!(
            Frame::parse_line(stdout_line(text).as_bytes())
                .unwrap()
                .seq(),
            seq,
            "{text}"
        );
    }
    for text in [
        "-1",
        "1.5",
        "9007199254740992",
        "1e300",
        "\"1\"",
        "null",
        "true",
    ] {
        assert!(
            Frame::parse_line(stdout_line(text).as_bytes()).is_err(),
            "{text}"
        );
    }
    assert_eq!(
        parse_err(&stdout_line("-1")),
        "invalid frame: invalid seq: -1 is not an integer between 0 and 9007199254740991 at line 1 column 82"
    );
}

#[test]
fn seq_beyond_max_is_refused_when_writing() {
    let mut event = StreamEvent::new(
        SessionId::new("s_1").unwrap(),
        MAX_SEQ,
        StdoutPayload::new("").into(),
    );
    assert!(serde_json::to_string(&event).is_ok());
    event.seq = MAX_SEQ + 1;
    let err = serde_json::to_string(&event).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid seq: 9007199254740992 exceeds 9007199254740991"
    );
}

#[test]
fn datetimes_are_utc_with_z_and_real_dates() {
    for ok in [
        "2026-11-28T02:00:00.000Z",
        "2026-11-28T02:00:00Z",
        "2024-02-29T23:59:59.123456789Z",
        "2000-02-29T00:00:00Z",
    ] {
        assert_eq!(Timestamp::new("ts", ok).unwrap().as_str(), ok);
    }
    // Read what any TS version accepts, write only what all accept: zod >= 4.5 refuses a
    // time without seconds, so it is stored (and written) with `:00`.
    assert_eq!(
        Timestamp::new("ts", "2026-11-28T02:00Z").unwrap().as_str(),
        "2026-11-28T02:00:00Z"
    );
    for bad in [
        "2026-11-28",
        "2026-11-28T02:00:00+01:00",
        "2026-11-28T02:00:00z",
        "2026-11-28 02:00:00Z",
        "2026-11-28T24:00:00Z",
        "2026-11-28T02:60:00Z",
        "2026-11-28T02:00:60Z",
        "2026-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-11-28T02:00:00.Z",
        "2026-11-28T02:00:00ZZ",
        "2026-11-28T2:00:00Z",
        "yesterday",
        "",
    ] {
        assert!(Timestamp::new("ts", bad).is_err(), "{bad}");
    }
    assert_eq!(
        Timestamp::new("expiresAt", "2026-11-28")
            .unwrap_err()
            .to_string(),
        r#"invalid expiresAt "2026-11-28": expected an ISO-8601 UTC date-time ending in "Z" (e.g. "2026-11-28T02:00:00.000Z")"#
    );
}

#[test]
fn protocol_version_accepts_1_and_2_and_writes_a_number() {
    assert_eq!(PROTOCOL_VERSION, ProtocolVersion::V2);
    assert_eq!(serde_json::to_string(&ProtocolVersion::V1).unwrap(), "1");
    assert_eq!(
        serde_json::from_str::<ProtocolVersion>("2.0").unwrap(),
        ProtocolVersion::V2
    );
    assert_eq!(
        serde_json::from_str::<ProtocolVersion>("3")
            .unwrap_err()
            .to_string(),
        "invalid protocolVersion: unsupported version 3 (this peer speaks 1 and 2)"
    );
}

#[test]
fn payload_errors_name_the_type_session_and_seq() {
    let line = format!(
        r#"{{"protocolVersion":2,"sessionId":"{SID}","seq":4,"type":"tool_call","payload":{{"callId":"call_1","toolName":"t","args":{{}}}}}}"#
    );
    assert_eq!(
        parse_err(&line),
        format!(
            r#"invalid frame: invalid tool_call payload (session {SID}, seq 4): invalid callId "call_1": must start with "c_" at line 1 column 129"#
        )
    );
    // Payload before type: the captured text is parsed later, and the error still says where.
    let line = format!(
        r#"{{"payload":{{"level":"info","message":"m","data":[1]}},"type":"log","seq":2,"sessionId":"{SID}","protocolVersion":2}}"#
    );
    assert_eq!(
        parse_err(&line),
        format!("invalid frame: invalid log payload (session {SID}, seq 2): invalid data: must be a JSON object at line 1 column 147")
    );
    let line = format!(
        r#"{{"protocolVersion":2,"sessionId":"{SID}","seq":10,"type":"deadline_exceeded","payload":{{"elapsedMs":1,"budgetMs":-5}}}}"#
    );
    assert!(
        parse_err(&line).contains("invalid budgetMs: -5 must be a finite number > 0"),
        "{}",
        parse_err(&line)
    );
}

#[test]
fn unknown_types_and_missing_fields_are_named() {
    let line = format!(
        r#"{{"protocolVersion":2,"sessionId":"{SID}","seq":1,"type":"tool_result","payload":{{}}}}"#
    );
    assert!(parse_err(&line).starts_with(
        r#"invalid frame: unknown type "tool_result": expected one of session_init, stdout"#
    ));
    let line = format!(
        r#"{{"protocolVersion":2,"sessionId":"{SID}","type":"stdout","payload":{{"chunk":"a"}}}}"#
    );
    assert!(parse_err(&line).starts_with("invalid frame: missing field `seq`"));
}

#[test]
fn duplicate_keys_last_wins_but_type_cannot_change_a_read_payload() {
    let line = format!(
        r#"{{"protocolVersion":2,"sessionId":"{SID}","seq":1,"seq":2,"type":"stdout","payload":{{"chunk":"a"}},"payload":{{"chunk":"b"}}}}"#
    );
    let Frame::Event(event) = Frame::parse_line(line.as_bytes()).unwrap() else {
        panic!()
    };
    assert_eq!(event.seq, 2);
    assert_eq!(event.payload, EventPayload::Stdout(StdoutPayload::new("b")));

    // Deliberate difference (docs/PROTOCOL.md): a repeated key inside a payload is refused.
    let line = format!(
        r#"{{"protocolVersion":2,"sessionId":"{SID}","seq":1,"type":"stdout","payload":{{"chunk":"a","chunk":"b"}}}}"#
    );
    assert!(
        parse_err(&line).contains(&format!("(session {SID}, seq 1): duplicate field `chunk`")),
        "{}",
        parse_err(&line)
    );

    let line = format!(
        r#"{{"protocolVersion":2,"sessionId":"{SID}","seq":1,"type":"stdout","payload":{{"chunk":"a"}},"type":"log"}}"#
    );
    assert!(
        parse_err(&line).contains(r#"duplicate "type" keys (stdout then log) after the payload"#),
        "{}",
        parse_err(&line)
    );
}

#[test]
fn parse_line_trims_like_javascript() {
    let line = format!("\u{feff}\u{a0} {}\u{2028}\r\n", stdout_line("1"));
    assert_eq!(
        Frame::parse_line(line.as_bytes()).unwrap().type_str(),
        "stdout"
    );
    // The vertical tab is JavaScript whitespace but not ASCII whitespace to Rust.
    for line in [
        format!("\u{b}{}\u{b}", stdout_line("1")),
        format!("\u{b}\u{3000}{}\u{c}\u{b}", stdout_line("1")),
    ] {
        assert!(Frame::parse_line(line.as_bytes()).is_ok(), "{line:?}");
    }
    assert!(Frame::parse_line(b"\x0b\x0b").is_err());
    assert!(Frame::parse_line(b"   ").is_err());
}

#[test]
fn plaintext_and_encrypted_views_refuse_each_other() {
    let enc = format!(
        r#"{{"protocolVersion":2,"sessionId":"{SID}","seq":3,"type":"enc","payload":{{"kid":"k","nonceB64":"AAAA","ciphertextB64":"AAAA"}}}}"#
    );
    let frame = Frame::parse_line(enc.as_bytes()).unwrap();
    assert_eq!(
        (frame.type_str(), frame.event_type(), frame.seq()),
        ("enc", None, 3)
    );
    let err = serde_json::from_str::<StreamEvent>(&enc)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            r#"expected a plaintext event, found an "enc" envelope (session {SID}, seq 3)"#
        )),
        "{err}"
    );
    let err = serde_json::from_str::<EncryptedEnvelope>(&stdout_line("1"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            r#"expected an "enc" envelope, found a plaintext stdout event (session {SID}, seq 1)"#
        )),
        "{err}"
    );
}

#[test]
fn event_types_round_trip_through_their_wire_names() {
    for t in EventType::ALL {
        assert_eq!(EventType::from_wire(t.as_str()), Some(t));
    }
    assert_eq!(EventType::from_wire("enc"), None);
}

#[test]
fn opaque_fields_keep_null_and_their_text() {
    let line = format!(
        r#"{{"protocolVersion":2,"sessionId":"{SID}","seq":5,"type":"final","payload":{{"ok":true,"result":null}}}}"#
    );
    let frame = Frame::parse_line(line.as_bytes()).unwrap();
    let Frame::Event(StreamEvent {
        payload: EventPayload::Final(f),
        ..
    }) = &frame
    else {
        panic!()
    };
    assert_eq!(f.result.as_ref().map(RawJson::get), Some("null"));
    assert_eq!(serde_json::to_string(&frame).unwrap(), line);
    assert_eq!(RawJson::null().get(), "null");
    assert_eq!(
        RawJson::from_string("{".to_owned())
            .unwrap_err()
            .to_string(),
        "invalid raw JSON: EOF while parsing an object at line 1 column 1"
    );
}

#[test]
fn session_limits_default_like_ts_and_fill_gaps() {
    let d = SessionLimits::default();
    assert_eq!(
        (
            d.session_ttl_ms,
            d.max_tool_calls,
            d.max_stdout_bytes,
            d.max_tool_result_bytes
        ),
        (60_000, 50, 262_144, 5_242_880)
    );
    assert_eq!(
        (
            d.tool_timeout_ms,
            d.heartbeat_interval_ms,
            d.deadline_ms,
            d.per_tool_deadline_ms
        ),
        (30_000, 15_000, 0, 30_000)
    );
    assert!(!d.cancel_on_first_error);
    let l: SessionLimits = serde_json::from_str(r#"{"maxToolCalls":5,"deadlineMs":1000}"#).unwrap();
    assert_eq!(
        (l.max_tool_calls, l.deadline_ms, l.session_ttl_ms),
        (5, 1000, 60_000)
    );
    let err = serde_json::from_str::<SessionLimits>(r#"{"maxToolCalls":0}"#)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "invalid maxToolCalls: must be greater than 0 at line 1 column 18"
    );
    // The TS schema makes perToolDeadlineMs positive; only deadlineMs may be 0.
    let err = serde_json::from_str::<SessionLimits>(r#"{"perToolDeadlineMs":0}"#)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "invalid perToolDeadlineMs: must be greater than 0 at line 1 column 23"
    );
    let text = serde_json::to_string(&d).unwrap();
    assert!(
        text.starts_with(r#"{"sessionTtlMs":60000,"maxToolCalls":50,"#),
        "{text}"
    );
}

#[test]
fn runtime_channel_messages_round_trip() {
    let raw = format!(
        r#"{{"protocolVersion":2,"sessionId":"{SID}","type":"tool_result_submit","payload":{{"callId":"c_1","ok":true,"result":{{"rows":[1,2]}}}}}}"#
    );
    let msg: RuntimeChannelMessage = serde_json::from_str(&raw).unwrap();
    let RuntimeChannelPayload::ToolResultSubmit(ToolResultSubmitPayload {
        call_id,
        ok,
        result,
        error,
        ..
    }) = &msg.payload
    else {
        panic!()
    };
    assert_eq!(
        (
            call_id.as_str(),
            *ok,
            result.as_ref().map(RawJson::get),
            error
        ),
        ("c_1", true, Some(r#"{"rows":[1,2]}"#), &None)
    );
    assert_eq!(serde_json::to_string(&msg).unwrap(), raw);

    let cancel = RuntimeChannelMessage::new(
        SessionId::new("s_1").unwrap(),
        RuntimeChannelPayload::Cancel(CancelPayload::default()),
    );
    let text = serde_json::to_string(&cancel).unwrap();
    assert_eq!(
        text,
        r#"{"protocolVersion":2,"sessionId":"s_1","type":"cancel","payload":{}}"#
    );
    assert_eq!(
        serde_json::from_str::<RuntimeChannelMessage>(&text).unwrap(),
        cancel
    );

    let err = serde_json::from_str::<RuntimeChannelMessage>(
        r#"{"protocolVersion":2,"sessionId":"s_1","type":"stdout","payload":{}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(r#"unknown type "stdout": expected tool_result_submit or cancel"#),
        "{err}"
    );
}

#[test]
fn encryption_request_uses_the_ts_mode_names() {
    let req: EncryptionRequest = serde_json::from_str(r#"{"mode":"optional"}"#).unwrap();
    assert_eq!(req, EncryptionRequest::new(EncryptionMode::Optional, None));
    assert_eq!(
        serde_json::to_string(&EncryptionMode::Required).unwrap(),
        r#""required""#
    );
    assert!(serde_json::from_str::<EncryptionMode>(r#""always""#).is_err());
}

#[test]
fn optional_fields_refuse_null_like_zod() {
    // zod's `.optional()` accepts absence only; `null` must not pass and vanish on rewrite.
    for (ty, payload, field) in [
        ("error", r#"{"message":"m","code":null}"#, "code"),
        (
            "error",
            r#"{"message":"m","recoverable":null}"#,
            "recoverable",
        ),
        ("final", r#"{"ok":true,"error":null}"#, "error"),
        (
            "final",
            r#"{"ok":true,"error":{"message":"m","stack":null}}"#,
            "stack",
        ),
        ("final", r#"{"ok":true,"errors":null}"#, "errors"),
        ("final", r#"{"ok":true,"stats":null}"#, "stats"),
        (
            "final",
            r#"{"ok":false,"errors":[{"code":"c","message":"m","path":null}]}"#,
            "path",
        ),
        (
            "final",
            r#"{"ok":false,"errors":[{"code":"c","message":"m","details":null}]}"#,
            "details",
        ),
        (
            "partial_result",
            r#"{"path":[],"hasNext":false,"error":null}"#,
            "error",
        ),
        (
            "session_init",
            r#"{"cancelUrl":"u","expiresAt":"2026-11-28T02:00:00Z","encryption":{"enabled":true,"keyId":null}}"#,
            "keyId",
        ),
        (
            "session_init",
            r#"{"cancelUrl":"u","expiresAt":"2026-11-28T02:00:00Z","encryption":{"enabled":false},"replayUrl":null}"#,
            "replayUrl",
        ),
        (
            "enc",
            r#"{"kid":"k","nonceB64":"n","ciphertextB64":"c","tagB64":null}"#,
            "tagB64",
        ),
    ] {
        let line = format!(
            r#"{{"protocolVersion":2,"sessionId":"{SID}","seq":4,"type":"{ty}","payload":{payload}}}"#
        );
        let err = parse_err(&line);
        assert!(
            err.contains(&format!("(session {SID}, seq 4): invalid "))
                && err.contains(&format!(
                    "invalid {field}: must be omitted when absent, not null"
                )),
            "{ty}.{field}: {err}"
        );
    }

    // Opaque fields are `unknown` in TS: a present null is a value, kept as such.
    let line = format!(
        r#"{{"protocolVersion":2,"sessionId":"{SID}","seq":4,"type":"partial_result","payload":{{"path":[],"data":null,"hasNext":false}}}}"#
    );
    assert!(Frame::parse_line(line.as_bytes()).is_ok());

    let err = serde_json::from_str::<RuntimeChannelMessage>(
        r#"{"protocolVersion":2,"sessionId":"s_1","type":"cancel","payload":{"reason":null}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("invalid reason: must be omitted"), "{err}");
    let err = serde_json::from_str::<RuntimeChannelMessage>(
        r#"{"protocolVersion":2,"sessionId":"s_1","type":"tool_result_submit","payload":{"callId":"c_1","ok":false,"error":null}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("invalid error: must be omitted"), "{err}");
    let err =
        serde_json::from_str::<EncryptionRequest>(r#"{"mode":"required","clientHello":null}"#)
            .unwrap_err()
            .to_string();
    assert!(
        err.contains("invalid clientHello: must be omitted"),
        "{err}"
    );
}

#[test]
fn error_detail_numbers_follow_the_ts_rules() {
    let line = |detail: &str| {
        format!(
            r#"{{"protocolVersion":2,"sessionId":"{SID}","seq":2,"type":"final","payload":{{"ok":false,"errors":[{{"code":"c","message":"m","details":[{detail}]}}]}}}}"#
        )
    };
    // statusCode is `z.number().int()`: no sign rule, safe-integer range.
    for ok in [
        r#"{"type":"upstream_info","statusCode":-1,"url":"u"}"#,
        r#"{"type":"upstream_info","statusCode":0,"url":"u"}"#,
        r#"{"type":"upstream_info","statusCode":503.0,"url":"u"}"#,
        r#"{"type":"quota_info","limit":0,"used":0.5}"#,
    ] {
        let l = line(ok);
        let frame = Frame::parse_line(l.as_bytes()).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert!(serde_json::to_string(&frame).is_ok());
    }
    for (bad, says) in [
        (
            r#"{"type":"upstream_info","statusCode":-9007199254740992,"url":"u"}"#,
            "invalid statusCode: -9007199254740992 is not an integer between",
        ),
        (
            r#"{"type":"upstream_info","statusCode":1.5,"url":"u"}"#,
            "invalid statusCode: 1.5 is not an integer",
        ),
        (
            r#"{"type":"quota_info","limit":-1,"used":0}"#,
            "invalid limit: -1 must be a finite number >= 0",
        ),
        (
            r#"{"type":"quota_info","limit":1,"used":-0.5}"#,
            "invalid used: -0.5 must be a finite number >= 0",
        ),
    ] {
        let err = parse_err(&line(bad));
        assert!(err.contains(says), "{bad}: {err}");
    }
}

#[test]
fn writing_refuses_numbers_the_ts_schema_refuses() {
    let event = |elapsed_ms: f64, budget_ms: f64| {
        StreamEvent::new(
            SessionId::new("s_1").unwrap(),
            1,
            DeadlineExceededPayload::new(elapsed_ms, budget_ms).into(),
        )
    };
    // serde_json would write NaN and infinities as `null`, which TS refuses.
    for (elapsed, budget, says) in [
        (
            f64::NAN,
            1.0,
            "invalid elapsedMs: NaN must be a finite number >= 0",
        ),
        (
            1.0,
            f64::INFINITY,
            "invalid budgetMs: inf must be a finite number > 0",
        ),
        (
            -1.0,
            1.0,
            "invalid elapsedMs: -1 must be a finite number >= 0",
        ),
        (1.0, 0.0, "invalid budgetMs: 0 must be a finite number > 0"),
    ] {
        let err = serde_json::to_string(&event(elapsed, budget))
            .unwrap_err()
            .to_string();
        assert_eq!(err, says);
    }
    // Integral values below 1e21 are digits, as JSON.stringify writes them.
    assert!(serde_json::to_string(&event(9_007_199_254_740_992.0, 1e20))
        .unwrap()
        .ends_with(r#"{"elapsedMs":9007199254740992,"budgetMs":100000000000000000000}}"#));
    assert!(serde_json::to_string(&event(-0.0, 1e21))
        .unwrap()
        .ends_with(r#"{"elapsedMs":0,"budgetMs":1e+21}}"#));

    let mut limits = SessionLimits::DEFAULT;
    limits.max_tool_calls = 0;
    assert_eq!(
        serde_json::to_string(&limits).unwrap_err().to_string(),
        "invalid maxToolCalls: must be greater than 0"
    );
}

#[test]
fn type_errors_name_the_field_and_its_parents() {
    let line = |ty: &str, payload: &str| {
        format!(
            r#"{{"protocolVersion":2,"sessionId":"{SID}","seq":6,"type":"{ty}","payload":{payload}}}"#
        )
    };
    for (ty, payload, says) in [
        (
            "stdout",
            r#"{"chunk":5}"#,
            "invalid chunk: invalid type: integer `5`, expected a string at line 1 column",
        ),
        (
            "final",
            r#"{"ok":"yes"}"#,
            "invalid ok: invalid type: string",
        ),
        (
            "log",
            r#"{"level":"loud","message":"m"}"#,
            r#"invalid level: unknown value "loud": expected debug, info, warn or error"#,
        ),
        (
            "tool_call",
            r#"{"callId":"c_1","toolName":7,"args":1}"#,
            "invalid toolName: invalid type: integer `7`",
        ),
        (
            "final",
            r#"{"ok":true,"stats":{"durationMs":"5","toolCallCount":0,"stdoutBytes":1}}"#,
            "invalid stats: invalid durationMs: invalid type: string",
        ),
        (
            "final",
            r#"{"ok":false,"errors":[{"code":"c","message":"m","details":[{"type":"upstream_info","statusCode":500,"url":false}]}]}"#,
            "invalid errors: invalid details: invalid url: invalid type: boolean",
        ),
        (
            "catalog_changed",
            r#"{"version":"1","addedActions":[1],"removedActions":[]}"#,
            "invalid addedActions: invalid type: integer `1`",
        ),
        (
            "enc",
            r#"{"kid":1,"nonceB64":"n","ciphertextB64":"c"}"#,
            "invalid kid: invalid type: integer",
        ),
    ] {
        let err = parse_err(&line(ty, payload));
        assert!(
            err.contains(&format!(
                "invalid {ty} payload (session {SID}, seq 6): {says}"
            )),
            "{err}"
        );
        // One position only: the inner one is dropped when the field name is added.
        assert_eq!(err.matches(" at line ").count(), 1, "{err}");
    }
    // A wrong JSON type for a closed enum says what it got, not just "expected value".
    let err = parse_err(&line("log", r#"{"level":5,"message":"m"}"#));
    assert!(
        err.contains("invalid level: invalid type: integer `5`, expected a string"),
        "{err}"
    );
    let err = parse_err(&line(
        "tool_progress",
        r#"{"callId":"c_1","phase":null,"elapsedMs":1}"#,
    ));
    assert!(
        err.contains("invalid phase: invalid type: null, expected a string"),
        "{err}"
    );
    // Numbers beyond f64 (1e400) are refused by the parser itself; the error still names them.
    let err = parse_err(&stdout_line("1e400"));
    assert!(err.contains("invalid seq: number out of range"), "{err}");
    let err = parse_err(&line(
        "final",
        r#"{"ok":true,"stats":{"durationMs":1,"toolCallCount":1e400,"stdoutBytes":0}}"#,
    ));
    assert!(
        err.contains("invalid stats: invalid toolCallCount: number out of range"),
        "{err}"
    );
    let err = serde_json::from_str::<EncryptionRequest>(r#"{"mode":"sometimes"}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(r#"invalid mode: unknown value "sometimes": expected disabled"#),
        "{err}"
    );
    let err = serde_json::from_str::<SessionLimits>(r#"{"cancelOnFirstError":"no"}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("invalid cancelOnFirstError: invalid type"),
        "{err}"
    );
}

#[test]
fn error_details_read_in_one_pass_in_any_key_order() {
    use enclave_types::ErrorDetail;
    let detail = |json: &str| serde_json::from_str::<ErrorDetail>(json).map_err(|e| e.to_string());
    let retry = Ok(ErrorDetail::RetryInfo {
        retry_delay_ms: 1.5,
    });
    assert_eq!(detail(r#"{"type":"retry_info","retryDelayMs":1.5}"#), retry);
    // Fields before `type`, unknown keys of any depth, and fields of other variants are fine.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        detail(&format!(
            r#"{{"retryDelayMs":1.5,"x":{deep},"limit":"not a number","type":"retry_info"}}"#
        )),
        retry
    );
    // The last `type` wins, and claims fields read under an earlier one.
    assert_eq!(
        detail(r#"{"type":"retry_info","limit":1,"used":2,"type":"quota_info"}"#),
        Ok(ErrorDetail::QuotaInfo {
            limit: 1.0,
            used: 2.0
        })
    );
    assert_eq!(
        detail(r#"{"url":"u","type":"upstream_info","statusCode":502}"#),
        Ok(ErrorDetail::UpstreamInfo {
            status_code: 502,
            url: "u".into()
        })
    );
    // Rules hold on both paths, and errors name the field.
    for (json, says) in [
        (
            r#"{"retryDelayMs":-1,"type":"retry_info"}"#,
            "invalid retryDelayMs: -1 must be a finite number >= 0",
        ),
        (
            r#"{"type":"retry_info","retryDelayMs":-1}"#,
            "invalid retryDelayMs: -1 must be a finite number >= 0",
        ),
        (
            r#"{"field":5,"reason":"r","type":"validation_info"}"#,
            "invalid field: invalid type: integer `5`",
        ),
        (
            r#"{"type":"validation_info","field":"f"}"#,
            "missing field `reason`",
        ),
        (r#"{"retryDelayMs":1}"#, "missing field `type`"),
        (
            r#"{"type":"typo_info"}"#,
            r#"unknown error detail type "typo_info": expected retry_info,"#,
        ),
        (
            r#"{"type":null}"#,
            "invalid type: null, expected an error detail type string",
        ),
        ("[]", "expected an error detail object"),
    ] {
        let err = detail(json).unwrap_err();
        assert!(err.contains(says), "{json}: {err}");
        assert_eq!(err.matches(" at line ").count(), 1, "{err}");
    }
    // Written with `type` first, as the TS writer does.
    assert_eq!(
        serde_json::to_string(&ErrorDetail::QuotaInfo {
            limit: 10.0,
            used: 10.5
        })
        .unwrap(),
        r#"{"type":"quota_info","limit":10,"used":10.5}"#
    );
}

#[test]
fn hellos_keep_algorithm_names_for_the_crypto_layer_to_refuse() {
    // Deliberate difference (docs/PROTOCOL.md): TS refuses these at parse time; the crypto
    // layer refuses them with ENCRYPTION_UNSUPPORTED_ALGORITHM and friends.
    let hello: enclave_types::ClientHello = serde_json::from_str(
        r#"{"protocolVersion":2,"clientEphemeralPubKeyB64":"","curve":"P-384","supportedAlgorithms":[]}"#,
    )
    .unwrap();
    assert_eq!(
        (hello.curve.as_str(), hello.supported_algorithms.len()),
        ("P-384", 0)
    );
    let err = serde_json::from_str::<enclave_types::ServerHello>(
        r#"{"protocolVersion":2,"serverEphemeralPubKeyB64":"k","curve":"P-256","selectedAlgorithm":"AES-GCM-256","kdf":7,"keyId":"k_1"}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("invalid kdf: invalid type: integer `7`"),
        "{err}"
    );
}

#[test]
fn errors_quote_at_most_a_short_cut_of_a_huge_value() {
    // A 1 MiB value, starting with an escape sequence a terminal would obey (JSON-escaped in
    // the lines).
    let huge = format!("\u{1b}[31m{}", "x".repeat(1 << 20));
    let huge_json = format!("\\u001b[31m{}", "x".repeat(1 << 20));
    let line = |body: &str| body.replace("HUGE", &huge_json);
    let cases = [
        // Our own errors, cut where they are created.
        r#"{"protocolVersion":2,"sessionId":"s_1","seq":1,"type":"log","payload":{"level":"HUGE","message":"m"}}"#,
        r#"{"protocolVersion":2,"sessionId":"s_1","seq":1,"type":"tool_call","payload":{"callId":"HUGE","toolName":"t","args":1}}"#,
        r#"{"protocolVersion":2,"sessionId":"HUGE","seq":1,"type":"stdout","payload":{"chunk":"a"}}"#,
        r#"{"protocolVersion":2,"sessionId":"s_1","seq":"HUGE","type":"stdout","payload":{"chunk":"a"}}"#,
        r#"{"protocolVersion":"HUGE","sessionId":"s_1","seq":1,"type":"stdout","payload":{"chunk":"a"}}"#,
        r#"{"protocolVersion":2,"sessionId":"s_1","seq":1,"type":"HUGE","payload":{}}"#,
        r#"{"protocolVersion":2,"sessionId":"s_1","seq":1,"type":"heartbeat","payload":{"ts":"HUGE"}}"#,
        r#"{"protocolVersion":2,"sessionId":"s_1","seq":1,"type":"tool_progress","payload":{"callId":"c_1","phase":"HUGE","elapsedMs":1}}"#,
        r#"{"protocolVersion":2,"sessionId":"s_1","seq":1,"type":"final","payload":{"ok":false,"errors":[{"code":"c","message":"m","details":[{"type":"HUGE"}]}]}}"#,
        r#"{"protocolVersion":2,"sessionId":"s_1","seq":1,"type":"final","payload":{"ok":true,"stats":{"durationMs":1,"toolCallCount":"HUGE","stdoutBytes":0}}}"#,
        // serde_json's own "invalid type: string …" errors, cut by the field that wraps them.
        r#"{"protocolVersion":2,"sessionId":"s_1","seq":1,"type":"final","payload":{"ok":"HUGE"}}"#,
        r#"{"protocolVersion":2,"sessionId":"s_1","seq":1,"type":"final","payload":{"ok":true,"stats":"HUGE"}}"#,
        r#"{"protocolVersion":2,"sessionId":"s_1","seq":1,"type":"session_init","payload":{"cancelUrl":"/c","expiresAt":"2026-11-28T02:00:00Z","encryption":"HUGE"}}"#,
        r#"{"protocolVersion":2,"sessionId":"s_1","seq":1,"type":"stdout","payload":"HUGE"}"#,
        r#"{"payload":"HUGE","protocolVersion":2,"sessionId":"s_1","seq":1,"type":"stdout"}"#,
        r#""HUGE""#,
    ];
    for case in cases {
        let err = Frame::parse_line(line(case).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.len() < 1024,
            "{case}: {} bytes: {}",
            err.len(),
            &err[..200]
        );
        assert!(
            !err.contains('\u{1b}'),
            "{case}: control character quoted raw: {err}"
        );
        assert!(
            err.contains("xxx"),
            "{case}: the value is still quoted: {err}"
        );
    }
    // A value just over the limit is cut to 64 characters too, whoever made the error.
    let seventy = "y".repeat(70);
    for case in [
        r#"{"protocolVersion":2,"sessionId":"s_1","seq":1,"type":"final","payload":{"ok":"SEVENTY"}}"#,
        r#"{"protocolVersion":2,"sessionId":"s_1","seq":"SEVENTY","type":"stdout","payload":{"chunk":"a"}}"#,
        r#"{"protocolVersion":2,"sessionId":"SEVENTY","seq":1,"type":"stdout","payload":{"chunk":"a"}}"#,
    ] {
        let err = Frame::parse_line(case.replace("SEVENTY", &seventy).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("\"{}…\"", "y".repeat(64))), "{err}");
    }
    // A valid but huge session id named in a payload error is cut as well.
    let err = Frame::parse_line(
        line(r#"{"protocolVersion":2,"sessionId":"s_HUGE","seq":1,"type":"stdout","payload":{"chunk":1}}"#)
            .as_bytes(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.len() < 1024, "{} bytes", err.len());
    assert!(!err.contains('\u{1b}'), "{err}");
    // The same bound for the other families and the constructors.
    let err = serde_json::from_str::<RuntimeChannelMessage>(&line(
        r#"{"protocolVersion":2,"sessionId":"s_HUGE","type":"cancel","payload":{"reason":"HUGE"},"extra":"HUGE","type":"HUGE"}"#,
    ))
    .unwrap_err()
    .to_string();
    assert!(err.len() < 1024, "{} bytes", err.len());
    let err = serde_json::from_str::<EncryptionRequest>(&line(r#"{"mode":"HUGE"}"#))
        .unwrap_err()
        .to_string();
    assert!(err.len() < 1024 && !err.contains('\u{1b}'), "{err}");
    let err = CallId::new(huge.clone()).unwrap_err().to_string();
    assert!(err.len() < 1024 && !err.contains('\u{1b}'), "{err}");
    let err = Timestamp::new("ts", huge.clone()).unwrap_err().to_string();
    assert!(err.len() < 1024 && !err.contains('\u{1b}'), "{err}");
}

#[test]
fn runtime_messages_carry_an_optional_seq() {
    let cancel = RuntimeChannelMessage::new(
        SessionId::new(SID).unwrap(),
        CancelPayload::new(Some("user".to_owned())).into(),
    );
    // Absent unless set: the TS shape is unchanged.
    let line = serde_json::to_string(&cancel).unwrap();
    assert_eq!(
        line,
        format!(
            r#"{{"protocolVersion":2,"sessionId":"{SID}","type":"cancel","payload":{{"reason":"user"}}}}"#
        )
    );
    let numbered = cancel.with_seq(1);
    let line = serde_json::to_string(&numbered).unwrap();
    assert_eq!(
        line,
        format!(
            r#"{{"protocolVersion":2,"sessionId":"{SID}","seq":1,"type":"cancel","payload":{{"reason":"user"}}}}"#
        )
    );
    let back: RuntimeChannelMessage = serde_json::from_str(&line).unwrap();
    assert_eq!(back, numbered);
    // A present seq follows the seq rule.
    let bad = line.replace(r#""seq":1"#, r#""seq":-1"#);
    let err = serde_json::from_str::<RuntimeChannelMessage>(&bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid seq: -1 is not an integer"), "{err}");
    let too_big = numbered.clone().with_seq(MAX_SEQ + 1);
    assert!(serde_json::to_string(&too_big)
        .unwrap_err()
        .to_string()
        .contains("invalid seq"));
}

#[test]
fn message_frames_are_runtime_messages_or_envelopes() {
    let message = format!(
        r#" {{"protocolVersion":2,"sessionId":"{SID}","seq":3,"type":"tool_result_submit","payload":{{"callId":"c_1","ok":true}}}}"#
    );
    let frame = MessageFrame::parse_line(message.as_bytes()).unwrap();
    assert_eq!(frame.session_id().as_str(), SID);
    assert_eq!(frame.seq(), Some(3));
    assert_eq!(frame.type_str(), "tool_result_submit");
    let MessageFrame::Message(m) = &frame else {
        panic!("{frame:?}")
    };
    assert_eq!(
        m.payload,
        ToolResultSubmitPayload::new(CallId::new("c_1").unwrap(), true).into()
    );
    assert_eq!(serde_json::to_string(&frame).unwrap(), message.trim());

    let unnumbered =
        format!(r#"{{"protocolVersion":2,"sessionId":"{SID}","type":"cancel","payload":{{}}}}"#);
    assert_eq!(
        MessageFrame::parse_line(unnumbered.as_bytes())
            .unwrap()
            .seq(),
        None
    );

    let envelope = format!(
        r#"{{"protocolVersion":2,"sessionId":"{SID}","seq":4,"type":"enc","payload":{{"kid":"k","nonceB64":"AAAA","ciphertextB64":"AAAA"}}}}"#
    );
    let frame = MessageFrame::parse_line(envelope.as_bytes()).unwrap();
    assert!(matches!(&frame, MessageFrame::Encrypted(e) if e.seq == 4));
    assert_eq!((frame.seq(), frame.type_str()), (Some(4), "enc"));
    assert_eq!(serde_json::to_string(&frame).unwrap(), envelope);

    // An envelope needs its seq; event types belong to the other direction.
    let err = MessageFrame::parse_line(envelope.replace(r#""seq":4,"#, "").as_bytes())
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing field `seq`"), "{err}");
    let err = MessageFrame::parse_line(stdout_line("1").as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(r#"unknown type "stdout": expected tool_result_submit, cancel or enc"#),
        "{err}"
    );
}

#[test]
fn lone_surrogate_errors_name_the_right_kind() {
    let chunk = |escaped: &str| {
        format!(
            r#"{{"protocolVersion":2,"sessionId":"{SID}","seq":1,"type":"stdout","payload":{{"chunk":"a{escaped}b"}}}}"#
        )
    };
    for (escaped, says) in [
        // serde_json calls all of these "lone leading surrogate" or "unexpected end of hex
        // escape".
        (r"\ud800", r"lone leading (high) surrogate \ud800"),
        (r"\udbff\n", r"lone leading (high) surrogate \udbff"),
        (r"\ud800\u0041", r"lone leading (high) surrogate \ud800"),
        (r"\udc00", r"lone trailing (low) surrogate \udc00"),
        (
            r"\ud83d\ude00\udfff",
            r"lone trailing (low) surrogate \udfff",
        ),
    ] {
        let err = Frame::parse_line(chunk(escaped).as_bytes()).unwrap_err();
        assert!(
            matches!(err, Error::LoneSurrogate { .. }),
            "{escaped}: {err:?}"
        );
        let err = err.to_string();
        assert!(
            err.starts_with(&format!(
                "invalid frame: invalid stdout payload (session {SID}, seq 1): invalid chunk: \
                 {says} in a string escape at line 1 column "
            )),
            "{escaped}: {err}"
        );
    }
    // A pair is fine, and other syntax errors keep serde_json's text.
    assert!(Frame::parse_line(chunk(r"\ud83d\ude00").as_bytes()).is_ok());
    assert!(matches!(
        Frame::parse_line(chunk(r"\uzzzz").as_bytes()),
        Err(Error::Json(_))
    ));
}

#[test]
fn invalid_utf8_inside_a_line_is_refused() {
    // Deliberate difference (docs/PROTOCOL.md): TS's decoder would turn these bytes into
    // U+FFFD and accept the line.
    for bad in [&b"\xff"[..], b"\xe2\x82", b"\xc0\xaf"] {
        let mut line = format!(
            r#"{{"protocolVersion":2,"sessionId":"{SID}","seq":1,"type":"stdout","payload":{{"chunk":"a"#
        )
        .into_bytes();
        line.extend_from_slice(bad);
        line.extend_from_slice(br#"b"}}"#);
        let err = Frame::parse_line(&line).unwrap_err().to_string();
        assert!(err.contains("invalid unicode code point"), "{bad:?}: {err}");
        assert!(err.contains("line 1 column"), "{bad:?}: {err}");
    }
}

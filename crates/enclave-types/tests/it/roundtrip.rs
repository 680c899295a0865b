//! Any event survives serialize → parse unchanged, what we write has the TS wire shape, and
//! any value built through the public API is either refused when written or read back as is.

use enclave_types::{
    CallId, CancelPayload, CatalogChangedPayload, DeadlineExceededPayload, EncryptedEnvelope,
    EncryptedPayload, EncryptionConfig, ErrorDetail, ErrorEventPayload, ErrorInfo, ErrorPayload,
    EventPayload, FinalPayload, Frame, HeartbeatPayload, LogLevel, LogPayload, MessageFrame,
    PartialResultPayload, ProtocolVersion, RawJson, RuntimeChannelMessage, RuntimeChannelPayload,
    SessionId, SessionInitPayload, SessionLimits, SessionStats, StdoutPayload, StreamEvent,
    Timestamp, ToolCallPayload, ToolProgressPayload, ToolProgressPhase, ToolResultAppliedPayload,
    ToolResultSubmitPayload, MAX_SEQ,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use serde_json::Value;
use std::fmt::Write as _;

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn non_empty_text() -> impl Strategy<Value = String> {
    "\\PC{1,12}"
}

fn session_id() -> impl Strategy<Value = SessionId> {
    "s_[a-z0-9-]{1,36}".prop_map(|s| SessionId::new(s).unwrap())
}

fn call_id() -> impl Strategy<Value = CallId> {
    "c_[a-z0-9-]{1,36}".prop_map(|s| CallId::new(s).unwrap())
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (
        1970u32..2100,
        1u32..=12,
        1u32..=28,
        0u32..24,
        0u32..60,
        option::of(0u32..60),
        option::of(0u32..1000),
    )
        .prop_map(|(y, mo, d, h, mi, s, ms)| {
            let mut t = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}");
            if let Some(s) = s {
                write!(t, ":{s:02}").unwrap();
                if let Some(ms) = ms {
                    write!(t, ".{ms:03}").unwrap();
                }
            }
            t.push('Z');
            Timestamp::new("ts", t).unwrap()
        })
}

/// Binary fractions: exactly representable, so the text round-trips without float noise.
fn millis() -> impl Strategy<Value = f64> {
    (0u32..1_000_000_000).prop_map(|n| f64::from(n) / 8.0)
}

fn safe_int() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..1000, 0..=MAX_SEQ]
}

fn raw_json() -> impl Strategy<Value = RawJson> {
    prop_oneof![
        Just("null".to_owned()),
        any::<i32>().prop_map(|n| n.to_string()),
        text().prop_map(|s| serde_json::to_string(&s).unwrap()),
        (text(), any::<bool>())
            .prop_map(|(k, b)| serde_json::json!({ k: [b, null, 1.5] }).to_string()),
    ]
    .prop_map(|s| RawJson::from_string(s).unwrap())
}

fn raw_object() -> impl Strategy<Value = RawJson> {
    (text(), any::<i32>())
        .prop_map(|(k, v)| RawJson::from_value(&serde_json::json!({ k: v })).unwrap())
}

// The generators below take `wild`: false gives only values our parser accepts (for the
// round-trip and shape properties), true also gives values a user can build through the public
// API but that break a schema rule (empty names, NaN, negative durations, non-object log data,
// seq beyond 2^53 - 1), for the "write only what we read" property.

/// Strings that must not be empty.
fn name(wild: bool) -> BoxedStrategy<String> {
    if wild {
        prop_oneof![Just(String::new()), non_empty_text()].boxed()
    } else {
        non_empty_text().boxed()
    }
}

/// Amounts: finite and >= 0, or anything when wild.
fn amount(wild: bool) -> BoxedStrategy<f64> {
    if wild {
        prop_oneof![
            millis(),
            Just(0.0),
            Just(-0.5),
            Just(f64::NAN),
            Just(f64::INFINITY),
            any::<f64>()
        ]
        .boxed()
    } else {
        millis().boxed()
    }
}

/// Counters: safe integers, or any u64 when wild.
fn counter(wild: bool) -> BoxedStrategy<u64> {
    if wild {
        prop_oneof![safe_int(), MAX_SEQ..=u64::MAX].boxed()
    } else {
        safe_int().boxed()
    }
}

fn log_data(wild: bool) -> BoxedStrategy<RawJson> {
    if wild {
        prop_oneof![raw_object(), raw_json()].boxed()
    } else {
        raw_object().boxed()
    }
}

fn error_info() -> impl Strategy<Value = ErrorInfo> {
    (text(), option::of(text()), option::of(text())).prop_map(|(message, code, stack)| {
        let mut info = ErrorInfo::new(message);
        info.code = code;
        info.stack = stack;
        info
    })
}

fn error_detail(wild: bool) -> impl Strategy<Value = ErrorDetail> {
    let status = if wild {
        any::<i64>().boxed()
    } else {
        (-1i64..600).boxed()
    };
    prop_oneof![
        amount(wild).prop_map(|retry_delay_ms| ErrorDetail::RetryInfo { retry_delay_ms }),
        (status, text())
            .prop_map(|(status_code, url)| ErrorDetail::UpstreamInfo { status_code, url }),
        (text(), text()).prop_map(|(field, reason)| ErrorDetail::ValidationInfo { field, reason }),
        (amount(wild), amount(wild))
            .prop_map(|(limit, used)| ErrorDetail::QuotaInfo { limit, used }),
    ]
}

fn error_payload(wild: bool) -> impl Strategy<Value = ErrorPayload> {
    (
        text(),
        text(),
        option::of(vec(text(), 0..3)),
        option::of(vec(error_detail(wild), 0..3)),
    )
        .prop_map(|(code, message, path, details)| {
            let mut error = ErrorPayload::new(code, message);
            error.path = path;
            error.details = details;
            error
        })
}

fn final_payload(wild: bool) -> impl Strategy<Value = EventPayload> {
    (
        any::<bool>(),
        option::of(raw_json()),
        option::of(error_info()),
        option::of(vec(error_payload(wild), 0..3)),
        option::of((amount(wild), counter(wild), counter(wild))),
    )
        .prop_map(|(ok, result, error, errors, stats)| {
            let mut payload = FinalPayload::new(ok);
            payload.result = result;
            payload.error = error;
            payload.errors = errors;
            payload.stats = stats.map(|(duration_ms, tool_call_count, stdout_bytes)| {
                SessionStats::new(duration_ms, tool_call_count, stdout_bytes)
            });
            payload.into()
        })
}

fn tool_progress_payload(wild: bool) -> impl Strategy<Value = EventPayload> {
    (
        call_id(),
        prop_oneof![
            Just(ToolProgressPhase::Connecting),
            Just(ToolProgressPhase::Sending),
            Just(ToolProgressPhase::Receiving),
            Just(ToolProgressPhase::Processing)
        ],
        option::of(counter(wild)),
        option::of(counter(wild)),
        amount(wild),
    )
        .prop_map(
            |(call_id, phase, bytes_received, total_bytes, elapsed_ms)| {
                let mut payload = ToolProgressPayload::new(call_id, phase, elapsed_ms);
                payload.bytes_received = bytes_received;
                payload.total_bytes = total_bytes;
                payload.into()
            },
        )
}

fn payload(wild: bool) -> impl Strategy<Value = EventPayload> {
    let budget = if wild {
        amount(true)
    } else {
        millis().prop_map(|b| b + 0.125).boxed()
    };
    prop_oneof![
        (
            text(),
            timestamp(),
            any::<bool>(),
            option::of(text()),
            option::of(text())
        )
            .prop_map(|(cancel_url, expires_at, enabled, key_id, replay_url)| {
                let mut encryption = EncryptionConfig::new(enabled);
                encryption.key_id = key_id;
                let mut payload = SessionInitPayload::new(cancel_url, expires_at, encryption);
                payload.replay_url = replay_url;
                payload.into()
            }),
        text().prop_map(|chunk| StdoutPayload::new(chunk).into()),
        (
            prop_oneof![
                Just(LogLevel::Debug),
                Just(LogLevel::Info),
                Just(LogLevel::Warn),
                Just(LogLevel::Error)
            ],
            text(),
            option::of(log_data(wild))
        )
            .prop_map(|(level, message, data)| {
                let mut payload = LogPayload::new(level, message);
                payload.data = data;
                payload.into()
            }),
        (call_id(), name(wild), raw_json()).prop_map(|(call_id, tool_name, args)| {
            ToolCallPayload::new(call_id, tool_name, args).into()
        }),
        call_id().prop_map(|call_id| ToolResultAppliedPayload::new(call_id).into()),
        final_payload(wild),
        timestamp().prop_map(|ts| HeartbeatPayload::new(ts).into()),
        (text(), option::of(text()), option::of(any::<bool>())).prop_map(
            |(message, code, recoverable)| {
                let mut payload = ErrorEventPayload::new(message);
                payload.code = code;
                payload.recoverable = recoverable;
                payload.into()
            }
        ),
        (
            vec(text(), 0..4),
            option::of(raw_json()),
            option::of(error_payload(wild)),
            any::<bool>()
        )
            .prop_map(|(path, data, error, has_next)| {
                let mut payload = PartialResultPayload::new(path, has_next);
                payload.data = data;
                payload.error = error;
                payload.into()
            }),
        tool_progress_payload(wild),
        (amount(wild), budget).prop_map(|(elapsed_ms, budget_ms)| {
            DeadlineExceededPayload::new(elapsed_ms, budget_ms).into()
        }),
        (name(wild), vec(text(), 0..3), vec(text(), 0..3)).prop_map(
            |(version, added_actions, removed_actions)| {
                CatalogChangedPayload::new(version, added_actions, removed_actions).into()
            }
        ),
    ]
}

fn event_with(wild: bool) -> impl Strategy<Value = StreamEvent> {
    (
        prop_oneof![Just(ProtocolVersion::V1), Just(ProtocolVersion::V2)],
        session_id(),
        counter(wild),
        payload(wild),
    )
        .prop_map(|(protocol_version, session_id, seq, payload)| {
            let mut event = StreamEvent::new(session_id, seq, payload);
            event.protocol_version = protocol_version;
            event
        })
}

fn event() -> impl Strategy<Value = StreamEvent> {
    event_with(false)
}

fn envelope(wild: bool) -> impl Strategy<Value = EncryptedEnvelope> {
    let base64 = |n: usize| {
        if wild {
            prop_oneof![Just(String::new()), "[A-Za-z0-9+/]{4,24}"].boxed()
        } else {
            proptest::string::string_regex(&format!("[A-Za-z0-9+/]{{{n},40}}"))
                .unwrap()
                .boxed()
        }
    };
    (
        session_id(),
        counter(wild),
        name(wild),
        base64(16),
        base64(4),
        option::of("[A-Za-z0-9+/]{4,24}"),
    )
        .prop_map(|(session_id, seq, kid, nonce, ct, tag)| {
            let mut payload = EncryptedPayload::new(kid, nonce, ct);
            payload.tag_b64 = tag;
            EncryptedEnvelope::new(session_id, seq, payload)
        })
}

fn runtime_message(wild: bool) -> impl Strategy<Value = RuntimeChannelMessage> {
    (
        session_id(),
        option::of(counter(wild)),
        prop_oneof![
            (
                call_id(),
                any::<bool>(),
                option::of(raw_json()),
                option::of(error_info())
            )
                .prop_map(|(call_id, ok, result, error)| {
                    let mut p = ToolResultSubmitPayload::new(call_id, ok);
                    p.result = result;
                    p.error = error;
                    RuntimeChannelPayload::from(p)
                }),
            option::of(text()).prop_map(|reason| CancelPayload::new(reason).into()),
        ],
    )
        .prop_map(|(session_id, seq, payload)| {
            let mut message = RuntimeChannelMessage::new(session_id, payload);
            message.seq = seq;
            message
        })
}

fn limits(wild: bool) -> impl Strategy<Value = SessionLimits> {
    let limit = move || {
        if wild {
            prop_oneof![Just(0), 1..=MAX_SEQ, MAX_SEQ..=u64::MAX].boxed()
        } else {
            (1..=MAX_SEQ).boxed()
        }
    };
    (
        [limit(), limit(), limit(), limit()],
        [limit(), limit(), limit()],
        counter(wild),
        any::<bool>(),
    )
        .prop_map(|(a, b, deadline_ms, cancel_on_first_error)| {
            let mut limits = SessionLimits::DEFAULT;
            limits.session_ttl_ms = a[0];
            limits.max_tool_calls = a[1];
            limits.max_stdout_bytes = a[2];
            limits.max_tool_result_bytes = a[3];
            limits.tool_timeout_ms = b[0];
            limits.heartbeat_interval_ms = b[1];
            limits.per_tool_deadline_ms = b[2];
            limits.deadline_ms = deadline_ms;
            limits.cancel_on_first_error = cancel_on_first_error;
            limits
        })
}

/// What the "write only what we read" property checks: writing `value` either fails with a
/// message that names the rule, or gives text our own parser reads back as `value`.
fn writes_only_what_it_reads<T>(value: &T) -> Result<(), TestCaseError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    match serde_json::to_vec(value) {
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(msg.starts_with("invalid "), "unclear error: {}", msg);
        }
        Ok(bytes) => {
            let back: T = serde_json::from_slice(&bytes).map_err(|e| {
                TestCaseError::fail(format!(
                    "wrote a line we refuse: {e}\n{}",
                    String::from_utf8_lossy(&bytes)
                ))
            })?;
            prop_assert_eq!(&back, value);
        }
    }
    Ok(())
}

/// Walks what we wrote and checks the TS shape: camelCase keys, no `null` standing in for an
/// absent optional, integral numbers without a fraction. Opaque fields are the sender's business.
fn assert_ts_shape(value: &Value, path: &str) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                assert!(!key.contains('_'), "{path}.{key}: keys are camelCase");
                if matches!(key.as_str(), "args" | "result" | "data") {
                    continue;
                }
                assert!(
                    !v.is_null(),
                    "{path}.{key}: absent optionals are omitted, not null"
                );
                assert_ts_shape(v, &format!("{path}.{key}"));
            }
        }
        Value::Array(items) => items.iter().for_each(|v| assert_ts_shape(v, path)),
        Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                assert!(
                    f.fract() != 0.0 || n.is_u64() || n.is_i64(),
                    "{path}: {n} has a needless fraction"
                );
            }
        }
        _ => {}
    }
}

proptest! {
    #[test]
    fn any_event_round_trips_with_the_ts_shape(event in event()) {
        let line = serde_json::to_string(&event).unwrap();
        prop_assert!(line.starts_with(r#"{"protocolVersion":"#), "{}", line);
        let back: StreamEvent = serde_json::from_str(&line).unwrap();
        prop_assert_eq!(&back, &event);
        let frame = Frame::parse_line(line.as_bytes()).unwrap();
        prop_assert_eq!(frame, Frame::Event(event.clone()));

        let value: Value = serde_json::from_str(&line).unwrap();
        let keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = vec!["payload", "protocolVersion", "seq", "sessionId", "type"];
        expected.sort_unstable();
        prop_assert_eq!(keys, expected);
        prop_assert_eq!(value["type"].as_str(), Some(event.event_type().as_str()));
        assert_ts_shape(&value, "");
    }

    #[test]
    fn payload_before_type_parses_the_same(event in event()) {
        let value: Value = serde_json::to_value(&event).unwrap();
        // serde_json's map is sorted, so `payload` comes before `type` here.
        let reordered = value.to_string();
        prop_assert!(reordered.find("\"payload\"") < reordered.find("\"type\""));
        let back: StreamEvent = serde_json::from_str(&reordered).unwrap();
        prop_assert_eq!(back, event);
    }

    #[test]
    fn any_envelope_round_trips(envelope in envelope(false)) {
        let line = serde_json::to_string(&envelope).unwrap();
        let frame = Frame::parse_line(line.as_bytes()).unwrap();
        prop_assert_eq!(frame, Frame::Encrypted(envelope));
        assert_ts_shape(&serde_json::from_str(&line).unwrap(), "");
    }

    #[test]
    fn any_value_built_through_the_api_fails_to_write_or_round_trips(
        event in event_with(true),
        envelope in envelope(true),
        message in runtime_message(true),
        limits in limits(true),
    ) {
        writes_only_what_it_reads(&event)?;
        writes_only_what_it_reads(&Frame::from(event))?;
        writes_only_what_it_reads(&envelope)?;
        writes_only_what_it_reads(&MessageFrame::from(envelope))?;
        writes_only_what_it_reads(&message)?;
        writes_only_what_it_reads(&MessageFrame::from(message))?;
        writes_only_what_it_reads(&limits)?;
    }
}

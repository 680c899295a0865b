//! Any event survives serialize → parse unchanged, and what we write has the TS wire shape.

use enclave_types::{
    CallId, CatalogChangedPayload, DeadlineExceededPayload, EncryptedEnvelope, EncryptedPayload,
    EncryptionConfig, ErrorDetail, ErrorEventPayload, ErrorInfo, ErrorPayload, EventPayload,
    FinalPayload, Frame, HeartbeatPayload, LogLevel, LogPayload, PartialResultPayload,
    ProtocolVersion, RawJson, SessionId, SessionInitPayload, SessionStats, StdoutPayload,
    StreamEvent, Timestamp, ToolCallPayload, ToolProgressPayload, ToolProgressPhase,
    ToolResultAppliedPayload, MAX_SEQ,
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

fn error_info() -> impl Strategy<Value = ErrorInfo> {
    (text(), option::of(text()), option::of(text())).prop_map(|(message, code, stack)| ErrorInfo {
        message,
        code,
        stack,
    })
}

fn error_detail() -> impl Strategy<Value = ErrorDetail> {
    prop_oneof![
        millis().prop_map(|retry_delay_ms| ErrorDetail::RetryInfo { retry_delay_ms }),
        (-1i64..600, text())
            .prop_map(|(status_code, url)| ErrorDetail::UpstreamInfo { status_code, url }),
        (text(), text()).prop_map(|(field, reason)| ErrorDetail::ValidationInfo { field, reason }),
        (millis(), millis()).prop_map(|(limit, used)| ErrorDetail::QuotaInfo { limit, used }),
    ]
}

fn error_payload() -> impl Strategy<Value = ErrorPayload> {
    (
        text(),
        text(),
        option::of(vec(text(), 0..3)),
        option::of(vec(error_detail(), 0..3)),
    )
        .prop_map(|(code, message, path, details)| ErrorPayload {
            code,
            message,
            path,
            details,
        })
}

fn final_payload() -> impl Strategy<Value = EventPayload> {
    (
        any::<bool>(),
        option::of(raw_json()),
        option::of(error_info()),
        option::of(vec(error_payload(), 0..3)),
        option::of((millis(), safe_int(), safe_int())),
    )
        .prop_map(|(ok, result, error, errors, stats)| {
            EventPayload::Final(FinalPayload {
                ok,
                result,
                error,
                errors,
                stats: stats.map(
                    |(duration_ms, tool_call_count, stdout_bytes)| SessionStats {
                        duration_ms,
                        tool_call_count,
                        stdout_bytes,
                    },
                ),
            })
        })
}

fn tool_progress_payload() -> impl Strategy<Value = EventPayload> {
    (
        call_id(),
        prop_oneof![
            Just(ToolProgressPhase::Connecting),
            Just(ToolProgressPhase::Sending),
            Just(ToolProgressPhase::Receiving),
            Just(ToolProgressPhase::Processing)
        ],
        option::of(safe_int()),
        option::of(safe_int()),
        millis(),
    )
        .prop_map(
            |(call_id, phase, bytes_received, total_bytes, elapsed_ms)| {
                EventPayload::ToolProgress(ToolProgressPayload {
                    call_id,
                    phase,
                    bytes_received,
                    total_bytes,
                    elapsed_ms,
                })
            },
        )
}

fn payload() -> impl Strategy<Value = EventPayload> {
    prop_oneof![
        (
            text(),
            timestamp(),
            any::<bool>(),
            option::of(text()),
            option::of(text())
        )
            .prop_map(|(cancel_url, expires_at, enabled, key_id, replay_url)| {
                EventPayload::SessionInit(SessionInitPayload {
                    cancel_url,
                    expires_at,
                    encryption: EncryptionConfig { enabled, key_id },
                    replay_url,
                })
            }),
        text().prop_map(|chunk| EventPayload::Stdout(StdoutPayload { chunk })),
        (
            prop_oneof![
                Just(LogLevel::Debug),
                Just(LogLevel::Info),
                Just(LogLevel::Warn),
                Just(LogLevel::Error)
            ],
            text(),
            option::of(raw_object())
        )
            .prop_map(|(level, message, data)| EventPayload::Log(LogPayload {
                level,
                message,
                data
            })),
        (call_id(), non_empty_text(), raw_json()).prop_map(|(call_id, tool_name, args)| {
            EventPayload::ToolCall(ToolCallPayload {
                call_id,
                tool_name,
                args,
            })
        }),
        call_id().prop_map(
            |call_id| EventPayload::ToolResultApplied(ToolResultAppliedPayload { call_id })
        ),
        final_payload(),
        timestamp().prop_map(|ts| EventPayload::Heartbeat(HeartbeatPayload { ts })),
        (text(), option::of(text()), option::of(any::<bool>())).prop_map(
            |(message, code, recoverable)| {
                EventPayload::Error(ErrorEventPayload {
                    message,
                    code,
                    recoverable,
                })
            }
        ),
        (
            vec(text(), 0..4),
            option::of(raw_json()),
            option::of(error_payload()),
            any::<bool>()
        )
            .prop_map(|(path, data, error, has_next)| {
                EventPayload::PartialResult(PartialResultPayload {
                    path,
                    data,
                    error,
                    has_next,
                })
            }),
        tool_progress_payload(),
        (millis(), millis()).prop_map(|(elapsed_ms, budget)| {
            EventPayload::DeadlineExceeded(DeadlineExceededPayload {
                elapsed_ms,
                budget_ms: budget + 0.125,
            })
        }),
        (non_empty_text(), vec(text(), 0..3), vec(text(), 0..3)).prop_map(
            |(version, added_actions, removed_actions)| {
                EventPayload::CatalogChanged(CatalogChangedPayload {
                    version,
                    added_actions,
                    removed_actions,
                })
            }
        ),
    ]
}

fn event() -> impl Strategy<Value = StreamEvent> {
    (
        prop_oneof![Just(ProtocolVersion::V1), Just(ProtocolVersion::V2)],
        session_id(),
        safe_int(),
        payload(),
    )
        .prop_map(|(protocol_version, session_id, seq, payload)| StreamEvent {
            protocol_version,
            session_id,
            seq,
            payload,
        })
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
    fn any_envelope_round_trips(
        session_id in session_id(),
        seq in safe_int(),
        kid in non_empty_text(),
        nonce in "[A-Za-z0-9+/]{16}",
        ct in "[A-Za-z0-9+/]{4,40}",
        tag in option::of("[A-Za-z0-9+/]{4,24}"),
    ) {
        let envelope = EncryptedEnvelope::new(
            session_id,
            seq,
            EncryptedPayload { kid, nonce_b64: nonce, ciphertext_b64: ct, tag_b64: tag },
        );
        let line = serde_json::to_string(&envelope).unwrap();
        let frame = Frame::parse_line(line.as_bytes()).unwrap();
        prop_assert_eq!(frame, Frame::Encrypted(envelope));
        assert_ts_shape(&serde_json::from_str(&line).unwrap(), "");
    }
}

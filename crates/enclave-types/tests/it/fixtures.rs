//! The sample stream is deterministic, valid, and shaped as documented.
#![cfg(feature = "fixtures")]

use enclave_types::fixtures::mixed_stream;
use enclave_types::{EventType, Frame};

#[test]
fn mixed_stream_is_deterministic_valid_and_about_200_bytes_per_event() {
    let events = mixed_stream(2_000, 7);
    assert_eq!(events, mixed_stream(2_000, 7));
    assert_ne!(events, mixed_stream(2_000, 8));
    let mut bytes = 0;
    let mut non_ascii = false;
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.seq, i as u64 + 1);
        assert_eq!(event.session_id, events[0].session_id);
        assert!(matches!(
            event.event_type(),
            EventType::Stdout
                | EventType::Log
                | EventType::ToolCall
                | EventType::Heartbeat
                | EventType::ToolProgress
        ));
        let line = serde_json::to_vec(event).unwrap();
        non_ascii |= !line.is_ascii();
        bytes += line.len();
        assert_eq!(
            Frame::parse_line(&line).unwrap(),
            Frame::Event(event.clone())
        );
    }
    let average = bytes / events.len();
    assert!((170..=250).contains(&average), "average {average} bytes");
    assert!(non_ascii);
    for t in [
        EventType::Stdout,
        EventType::Log,
        EventType::ToolCall,
        EventType::Heartbeat,
        EventType::ToolProgress,
    ] {
        assert!(events.iter().any(|e| e.event_type() == t), "{t} missing");
    }
}

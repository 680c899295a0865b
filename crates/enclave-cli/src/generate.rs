//! What `enclave serve` streams between a session's `session_init` and its `final`: either N
//! generated events (`--generate N`) or the events of a file (`--events FILE`), re-sequenced
//! into each session.
//!
//! Generated events are a deterministic mix of every event type but `session_init`, `final`
//! and `heartbeat` (heartbeats come from the session layer's timer), each one valid for the
//! TypeScript client: `c_` call ids, ISO-8601 UTC times, non-empty tool names, object `data`.

use std::path::Path;

use enclave_ndjson::parse_ndjson;
use enclave_types::{
    CallId, CatalogChangedPayload, DeadlineExceededPayload, ErrorEventPayload, EventPayload, Frame,
    LogLevel, LogPayload, PartialResultPayload, RawJson, StdoutPayload, ToolCallPayload,
    ToolProgressPayload, ToolProgressPhase, ToolResultAppliedPayload,
};

/// The payloads one session streams, in order.
#[derive(Debug, Clone)]
pub(crate) enum Script {
    /// `--generate N`: N generated payloads.
    Generate(u64),
    /// `--events FILE`: the file's payloads.
    Events(std::sync::Arc<Vec<EventPayload>>),
}

impl Script {
    /// How many payloads a session streams.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Self::Generate(n) => *n,
            Self::Events(events) => events.len() as u64,
        }
    }

    /// The `index`-th payload (0-based).
    pub(crate) fn payload(&self, index: u64) -> EventPayload {
        match self {
            Self::Generate(_) => generated(index),
            Self::Events(events) => usize::try_from(index)
                .ok()
                .and_then(|i| events.get(i))
                .cloned()
                .unwrap_or_else(|| generated(index)),
        }
    }
}

/// Reads `--events FILE`: every plaintext event line but `session_init` and `final`; `enc`
/// lines are skipped (they cannot be re-sequenced without their keys). A line that is not a
/// valid frame is an error naming its line.
pub(crate) fn load_events(path: &Path) -> Result<Vec<EventPayload>, String> {
    let text = std::fs::read(path).map_err(|err| format!("{}: {err}", path.display()))?;
    let parsed = parse_ndjson::<Frame>(&text);
    if let Some(err) = parsed.errors.first() {
        return Err(format!("{}: {err}", path.display()));
    }
    Ok(parsed
        .items
        .into_iter()
        .filter_map(|frame| match frame {
            Frame::Event(event) => match event.payload {
                EventPayload::SessionInit(_) | EventPayload::Final(_) => None,
                payload => Some(payload),
            },
            _ => None,
        })
        .collect())
}

const WORDS: [&str; 8] = [
    "import",
    "résumé",
    "ledger",
    "naïve join",
    "grüße",
    "backfill",
    "🔐 vault",
    "rollup",
];
const TOOLS: [&str; 4] = ["search", "fetch_rows", "send_mail", "lookup"];

/// The call id of the `index`-th generated tool call (tool events refer to the most recent one).
fn call_id(index: u64) -> CallId {
    CallId::new(format!("c_{:08x}-0000-4000-8000-{:012x}", index / 8, index))
        .unwrap_or_else(|_| CallId::generate())
}

/// The `index`-th generated payload: a fixed rotation through the event types.
fn generated(index: u64) -> EventPayload {
    let word = WORDS[usize::try_from(index % WORDS.len() as u64).unwrap_or(0)];
    let tool = TOOLS[usize::try_from(index % TOOLS.len() as u64).unwrap_or(0)];
    // Tool events in one group of 8 share the call id of that group's tool_call.
    let call = call_id(index - index % 8);
    #[allow(clippy::cast_precision_loss)] // small counters
    let elapsed = (index % 977) as f64;
    match index % 8 {
        0 => ToolCallPayload::new(
            call,
            tool,
            RawJson::from_string(format!(r#"{{"query":"{word}","limit":{}}}"#, index % 100))
                .unwrap_or_else(|_| RawJson::null()),
        )
        .into(),
        1 => ToolProgressPayload::new(call, ToolProgressPhase::Connecting, elapsed).into(),
        2 => StdoutPayload::new(format!("[{index:06}] {word}: step done in {elapsed} ms\n")).into(),
        3 => {
            let mut log = LogPayload::new(
                [
                    LogLevel::Debug,
                    LogLevel::Info,
                    LogLevel::Warn,
                    LogLevel::Error,
                ][usize::try_from(index % 4).unwrap_or(0)],
                format!("{word} #{index}"),
            );
            log.data = RawJson::from_string(format!(r#"{{"index":{index},"tag":"{word}"}}"#)).ok();
            log.into()
        }
        4 => ToolResultAppliedPayload::new(call).into(),
        5 => {
            let mut partial =
                PartialResultPayload::new(vec!["rows".to_owned(), index.to_string()], true);
            partial.data = RawJson::from_string(format!(r#"{{"row":{index}}}"#)).ok();
            partial.into()
        }
        6 => match index % 3 {
            0 => ErrorEventPayload::new(format!("recoverable: {word} retried")).into(),
            1 => CatalogChangedPayload::new(format!("v{index}"), vec![tool.to_owned()], Vec::new())
                .into(),
            _ => DeadlineExceededPayload::new(elapsed, elapsed + 1000.0).into(),
        },
        _ => StdoutPayload::new(format!("{word} ✓\n")).into(),
    }
}

#[cfg(test)]
mod tests {
    use enclave_types::{SessionId, StreamEvent};

    use super::*;

    #[test]
    fn generated_events_are_valid_and_round_trip() {
        let session = SessionId::new("s_generate").unwrap();
        for index in 0..200 {
            let event = StreamEvent::new(session.clone(), index + 2, generated(index));
            let line = serde_json::to_vec(&event).unwrap();
            let back = Frame::parse_line(&line).unwrap();
            assert_eq!(back, Frame::Event(event), "index {index}");
        }
    }

    #[test]
    fn generated_events_mix_the_types_but_never_heartbeat_init_or_final() {
        let mut types = std::collections::BTreeSet::new();
        for index in 0..48 {
            let payload = generated(index);
            assert!(!matches!(
                payload,
                EventPayload::Heartbeat(_) | EventPayload::SessionInit(_) | EventPayload::Final(_)
            ));
            types.insert(payload.event_type().as_str());
        }
        assert!(types.len() >= 9, "{types:?}");
    }
}

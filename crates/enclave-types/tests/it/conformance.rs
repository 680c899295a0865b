//! Every line of the TypeScript implementation's conformance file gets its recorded verdict.

use enclave_types::{EventPayload, Frame};

/// Lines where we deliberately disagree with `@enclave-vm/types` 2.15.2, and why.
/// `docs/PROTOCOL.md` ("Deliberate differences") explains each one.
const DELIBERATE_DIFFERENCES: &[(&str, &str)] = &[(
    "lone_surrogate_escape",
    "a lone UTF-16 surrogate (\\ud800) cannot be held in a Rust String; refusing it is better \
     than silently replacing it with U+FFFD",
)];

/// Lines whose verdict depends on the zod version the TypeScript side runs with: 2.15.2's
/// lockfile pins zod 4.3.6, a fresh install resolves 4.6.x. We read what any of them accepts
/// and write only what all of them accept. `docs/PROTOCOL.md` ("Version-dependent cases")
/// explains each one; the file marks each with a `note`.
const VERSION_DEPENDENT: &[(&str, &str)] = &[
    (
        "tool_call_args_missing",
        "zod 4.3.6 accepts a missing args, zod >= 4.4 refuses it: read as null, written as null",
    ),
    (
        "heartbeat_ts_without_seconds",
        "zod >= 4.5 refuses a time without seconds: read, then stored and written with :00",
    ),
    (
        "session_init_expires_without_seconds",
        "as heartbeat_ts_without_seconds",
    ),
];

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    line: String,
    valid: bool,
    note: Option<String>,
}

fn cases() -> Vec<Case> {
    include_str!("../data/events-conformance.jsonl")
        .lines()
        .enumerate()
        .map(|(n, raw)| {
            serde_json::from_str(raw).unwrap_or_else(|e| panic!("case line {}: {e}", n + 1))
        })
        .collect()
}

#[test]
fn every_conformance_line_gets_the_recorded_verdict() {
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for case in cases() {
        let outcome = Frame::parse_line(case.line.as_bytes());
        let expected = if DELIBERATE_DIFFERENCES
            .iter()
            .any(|(name, _)| *name == case.name)
        {
            !case.valid
        } else {
            case.valid
        };
        if outcome.is_ok() != expected {
            mismatches.push(format!(
                "{} (TS valid={}): {:?}",
                case.name, case.valid, outcome
            ));
        }
        checked += 1;
    }
    assert_eq!(checked, 73, "the conformance file has 73 cases");
    assert!(
        mismatches.is_empty(),
        "verdicts differ:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn every_deliberate_difference_names_a_real_case() {
    let cases = cases();
    for (name, _) in DELIBERATE_DIFFERENCES.iter().chain(VERSION_DEPENDENT) {
        assert!(
            cases.iter().any(|c| c.name == *name),
            "{name} is not in the conformance file"
        );
    }
}

#[test]
fn version_dependent_cases_are_the_noted_ones_and_are_written_in_the_common_shape() {
    let cases = cases();
    let noted: Vec<&str> = cases
        .iter()
        .filter(|c| c.note.is_some())
        .map(|c| c.name.as_str())
        .collect();
    let listed: Vec<&str> = VERSION_DEPENDENT.iter().map(|(name, _)| *name).collect();
    assert_eq!(noted, listed, "every noted case is listed, and only those");

    for case in cases.iter().filter(|c| c.note.is_some()) {
        assert!(case.valid, "{}: read what any version accepts", case.name);
        let frame = Frame::parse_line(case.line.as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let written = serde_json::to_string(&frame).unwrap();
        // Write what every version accepts: `args` present, date-times with seconds.
        match &frame {
            Frame::Event(event) => match &event.payload {
                EventPayload::ToolCall(p) => {
                    assert_eq!(p.args.get(), "null");
                    assert!(written.contains(r#""args":null"#), "{written}");
                }
                EventPayload::Heartbeat(_) | EventPayload::SessionInit(_) => {
                    assert!(written.contains("T02:00:00Z"), "{written}");
                    assert!(!written.contains("T02:00Z"), "{written}");
                }
                other => panic!("{}: unexpected payload {other:?}", case.name),
            },
            other => panic!("{}: not a plaintext event: {other:?}", case.name),
        }
        assert_eq!(Frame::parse_line(written.as_bytes()).unwrap(), frame);
    }
}

/// Event filters: every case of `tests/data/filter-differential.json` gets the verdict the
/// TypeScript broker's `EventFilter.shouldSend` (and minimatch, for globs) gave when that file
/// was made. The file holds inputs and outputs only: filters × events, and glob patterns ×
/// values, run through the TypeScript original on node 20.
mod filter_differential {
    use enclave_types::EventFilter;

    #[derive(serde::Deserialize)]
    struct Cases {
        /// Kept as written: key order is part of what a pattern on an object sees.
        events: Vec<Box<serde_json::value::RawValue>>,
        filters: Vec<FilterCase>,
        globs: Vec<GlobCase>,
    }

    #[derive(serde::Deserialize)]
    struct FilterCase {
        name: String,
        filter: serde_json::Value,
        expected: Vec<bool>,
    }

    #[derive(serde::Deserialize)]
    struct GlobCase {
        pattern: String,
        values: Vec<String>,
        expected: Vec<bool>,
    }

    fn cases() -> Cases {
        serde_json::from_str(include_str!("../data/filter-differential.json")).expect("cases")
    }

    #[test]
    fn every_filter_sends_what_the_broker_sends() {
        let cases = cases();
        let mut wrong = Vec::new();
        for case in &cases.filters {
            let filter = EventFilter::from_json(case.filter.clone())
                .unwrap_or_else(|err| panic!("{}: {err}", case.name));
            for (event, expected) in cases.events.iter().zip(&case.expected) {
                let json = event.get().as_bytes();
                let parsed: serde_json::Value = serde_json::from_str(event.get()).expect("event");
                let event_type = parsed["type"].as_str().expect("type");
                if filter.should_send(event_type, json) != *expected {
                    wrong.push(format!(
                        "{} on seq {}: broker says {expected}",
                        case.name, parsed["seq"]
                    ));
                }
            }
        }
        assert!(cases.filters.len() >= 50, "the file lost its cases");
        assert!(
            wrong.is_empty(),
            "{} disagreements:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }

    #[test]
    fn every_glob_matches_as_minimatch_does() {
        let cases = cases();
        let mut wrong = Vec::new();
        for case in &cases.globs {
            // One pattern on the whole payload field `v`, so the filter's glob is exercised alone.
            let filter = EventFilter::from_json(serde_json::json!({
                "mode": "include",
                "rules": [{"content": {"patterns": [{"type": "glob", "pattern": case.pattern, "field": "payload.v"}]}}],
            }))
            .unwrap_or_else(|err| panic!("{:?}: {err}", case.pattern));
            for (value, expected) in case.values.iter().zip(&case.expected) {
                let event = serde_json::json!({"type": "stdout", "payload": {"v": value}});
                let json = serde_json::to_vec(&event).expect("event");
                if filter.should_send("stdout", &json) != *expected {
                    wrong.push(format!(
                        "{:?} on {value:?}: minimatch says {expected}",
                        case.pattern
                    ));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "{} disagreements:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }
}

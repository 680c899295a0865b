//! Every line of the TypeScript implementation's conformance file gets its recorded verdict.

use enclave_types::Frame;

/// Lines where we deliberately disagree with `@enclave-vm/types` 2.15.2, and why.
/// `docs/PROTOCOL.md` ("Deliberate differences") explains each one.
const DELIBERATE_DIFFERENCES: &[(&str, &str)] = &[(
    "lone_surrogate_escape",
    "a lone UTF-16 surrogate (\\ud800) cannot be held in a Rust String; refusing it is better \
     than silently replacing it with U+FFFD",
)];

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    line: String,
    valid: bool,
}

#[test]
fn every_conformance_line_gets_the_recorded_verdict() {
    let text = include_str!("data/events-conformance.jsonl");
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for (n, raw) in text.lines().enumerate() {
        let case: Case =
            serde_json::from_str(raw).unwrap_or_else(|e| panic!("case line {}: {e}", n + 1));
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
    assert_eq!(checked, 71, "the 2.15.2 file has 71 cases");
    assert!(
        mismatches.is_empty(),
        "verdicts differ:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn every_deliberate_difference_names_a_real_case() {
    let text = include_str!("data/events-conformance.jsonl");
    for (name, _) in DELIBERATE_DIFFERENCES {
        assert!(
            text.contains(&format!("\"name\":\"{name}\"")),
            "{name} is not in the conformance file"
        );
    }
}

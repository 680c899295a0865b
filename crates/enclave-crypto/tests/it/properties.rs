//! Properties over generated input: any event survives seal/open byte for byte, the opener
//! accepts each genuine nonce exactly once whatever the order within its window, and it
//! accepts exactly the envelopes whose `seq` is after every one accepted before.

use std::collections::HashSet;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::BytesMut;
use enclave_crypto::hazmat::{self, SessionKey};
use enclave_crypto::{Error, NONCE_LEN};
use enclave_testkit::events::stdout as event;
use enclave_types::{EncryptedEnvelope, Frame, SessionId, StreamEvent, MAX_SEQ};
use proptest::prelude::*;

fn key() -> SessionKey {
    SessionKey::new("k_prop", &[0x5a; 32]).unwrap()
}

fn envelope_of(line: &[u8]) -> EncryptedEnvelope {
    match Frame::parse_line(line).unwrap() {
        Frame::Encrypted(envelope) => envelope,
        other => panic!(
            "a sealed line must parse as an envelope, not {}",
            other.type_str()
        ),
    }
}

/// An envelope around `event` under a caller-chosen nonce, as a peer with its own nonce
/// scheme (or a second sealer under the same key) would send it.
fn envelope_with_nonce(event: &StreamEvent, nonce: &[u8; NONCE_LEN]) -> EncryptedEnvelope {
    let sealed = key()
        .seal(nonce, &serde_json::to_vec(event).unwrap())
        .unwrap();
    let line = serde_json::json!({
        "protocolVersion": 2,
        "sessionId": event.session_id.as_str(),
        "seq": event.seq,
        "type": "enc",
        "payload": {
            "kid": "k_prop",
            "nonceB64": STANDARD.encode(nonce),
            "ciphertextB64": STANDARD.encode(sealed),
        },
    });
    envelope_of(line.to_string().as_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_event_round_trips_through_an_envelope_line(
        chunk in any::<String>(),
        session in "s_.{1,40}",
        seq in 0..=MAX_SEQ,
    ) {
        let event = event(&SessionId::new(session).unwrap(), seq, chunk);
        let mut sealer = hazmat::sealer::<StreamEvent>(key()).unwrap();
        let mut line = BytesMut::new();
        sealer.seal_line(&event, &mut line).unwrap();
        prop_assert_eq!(line.iter().position(|b| *b == b'\n'), Some(line.len() - 1));
        let envelope = envelope_of(&line);
        prop_assert_eq!(&envelope.session_id, &event.session_id);
        prop_assert_eq!(envelope.seq, seq);
        let mut opener = hazmat::opener::<StreamEvent>(key(), true);
        prop_assert_eq!(opener.open(&envelope).unwrap(), event.clone());
        // `seal` gives the same envelope as a value: written out, a line of the same shape.
        let sealed = sealer.seal(&event).unwrap();
        let mut rewritten = serde_json::to_vec(&Frame::Encrypted(sealed.clone())).unwrap();
        rewritten.push(b'\n');
        prop_assert_eq!(rewritten.len(), line.len());
        prop_assert_eq!(hazmat::opener::<StreamEvent>(key(), true).open(&sealed).unwrap(), event);
    }

    #[test]
    fn each_nonce_opens_once_in_any_order_within_the_window(
        order in proptest::collection::vec(0u32..120, 1..200),
    ) {
        // Counter nonces under one prefix, counter 0 first so the opener learns the prefix,
        // then arbitrary counters below the window size, repeats included. Each envelope
        // has a fresh, increasing seq, so only the nonce memory can tell a repeat.
        let prefix = [0x11u8; 8];
        let nonce = |counter: u32| {
            let mut nonce = [0u8; NONCE_LEN];
            nonce[..8].copy_from_slice(&prefix);
            nonce[8..].copy_from_slice(&counter.to_be_bytes());
            nonce
        };
        let session_id = SessionId::new("s_window").unwrap();
        let mut opener = hazmat::opener::<StreamEvent>(key(), true);
        let mut accepted = HashSet::new();
        for (seq, counter) in (1..).zip(std::iter::once(0).chain(order)) {
            let sent = event(&session_id, seq, counter.to_string());
            let result = opener.open(&envelope_with_nonce(&sent, &nonce(counter)));
            if accepted.insert(counter) {
                prop_assert_eq!(result.unwrap(), sent);
            } else {
                let err = result.unwrap_err();
                prop_assert!(matches!(err, Error::Replay { .. }), "{}", err);
                prop_assert_eq!(err.code(), "ENCRYPTION_NONCE_REUSE");
            }
        }
    }

    #[test]
    fn only_a_seq_after_every_accepted_one_opens(
        seqs in proptest::collection::vec(0u64..64, 1..100),
    ) {
        // Authentic envelopes under fresh nonces, in any seq order: the opener accepts
        // exactly the running maxima and refuses the rest as replays, changing nothing.
        let session_id = SessionId::new("s_order").unwrap();
        let mut sealer = hazmat::sealer::<StreamEvent>(key()).unwrap();
        let mut opener = hazmat::opener::<StreamEvent>(key(), true);
        let mut last = None;
        for seq in seqs {
            let sent = event(&session_id, seq, "ordered");
            let result = opener.open(&sealer.seal(&sent).unwrap());
            if last.is_none_or(|last| seq > last) {
                prop_assert_eq!(result.unwrap(), sent);
                last = Some(seq);
            } else {
                let err = result.unwrap_err();
                prop_assert!(matches!(err, Error::Replay { .. }), "{}", err);
                prop_assert_eq!(err.code(), "ENCRYPTION_NONCE_REUSE");
            }
            prop_assert_eq!(opener.last_seq(), last);
        }
    }
}

//! Properties over generated input: any event survives seal/open byte for byte, and the
//! opener accepts each genuine nonce exactly once whatever the order within its window.

use std::collections::HashSet;

use bytes::BytesMut;
use enclave_crypto::{Opener, Sealer, SessionKey, NONCE_LEN};
use enclave_types::{EventPayload, Frame, SessionId, StdoutPayload, StreamEvent, MAX_SEQ};
use proptest::prelude::*;

fn key() -> SessionKey {
    SessionKey::new("k_prop", &[0x5a; 32]).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_event_round_trips_through_an_envelope_line(
        chunk in any::<String>(),
        session in "s_.{1,40}",
        seq in 0..=MAX_SEQ,
    ) {
        let event = StreamEvent::new(
            SessionId::new(session).unwrap(),
            seq,
            EventPayload::Stdout(StdoutPayload::new(chunk)),
        );
        let mut sealer = Sealer::new(key()).unwrap();
        let mut line = BytesMut::new();
        sealer.seal_event_line(&event, &mut line).unwrap();
        prop_assert_eq!(line.iter().position(|b| *b == b'\n'), Some(line.len() - 1));
        let Frame::Encrypted(envelope) = Frame::parse_line(&line).unwrap() else {
            panic!("a sealed line must parse as an envelope");
        };
        prop_assert_eq!(Opener::new(key()).open_envelope(&envelope).unwrap(), event);
    }

    #[test]
    fn each_nonce_opens_once_in_any_order_within_the_window(
        order in proptest::collection::vec(0u32..120, 1..200),
    ) {
        // Counter nonces under one prefix, counter 0 first so the opener learns the prefix,
        // then arbitrary counters below the window size, repeats included.
        let prefix = [0x11u8; 8];
        let nonce = |counter: u32| {
            let mut nonce = [0u8; NONCE_LEN];
            nonce[..8].copy_from_slice(&prefix);
            nonce[8..].copy_from_slice(&counter.to_be_bytes());
            nonce
        };
        let sealing = key();
        let mut opener = Opener::new(key());
        let mut accepted = HashSet::new();
        for counter in std::iter::once(0).chain(order) {
            let sealed = sealing.seal(&nonce(counter), &counter.to_be_bytes()).unwrap();
            let result = opener.open(&nonce(counter), &sealed);
            if accepted.insert(counter) {
                prop_assert_eq!(result.unwrap(), counter.to_be_bytes().to_vec());
            } else {
                prop_assert_eq!(result.unwrap_err().code(), "ENCRYPTION_NONCE_REUSE");
            }
        }
    }
}

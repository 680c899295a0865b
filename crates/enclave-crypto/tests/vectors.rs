//! The TypeScript implementation's interop vectors (`tests/data/`, copied from the shared
//! vector set): the handshake key schedule and the `enc` envelopes, plus tampering with them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use enclave_crypto::{
    create_client_hello, create_server_hello, generate_key_pair, process_client_hello,
    process_server_hello, Opener, SessionKey, SharedSecret, HKDF_INFO_CLIENT_TO_SERVER,
    HKDF_INFO_SERVER_TO_CLIENT, NONCE_LEN,
};
use enclave_types::{ClientHello, EncryptedEnvelope, Frame, ServerHello, SessionId};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HandshakeCase {
    client_private_scalar_hex: String,
    server_private_scalar_hex: String,
    client_hello: Value,
    server_hello: Value,
    session_id: String,
    key_id: String,
    shared_secret_hex: String,
    client_to_server_key_hex: String,
    server_to_client_key_hex: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeCase {
    direction: String,
    key_hex: String,
    key_id: String,
    nonce_style: String,
    line: String,
    inner_json: String,
}

fn handshake_cases() -> Vec<HandshakeCase> {
    serde_json::from_str(include_str!("data/handshake.json")).unwrap()
}

fn envelope_cases() -> Vec<EnvelopeCase> {
    serde_json::from_str(include_str!("data/envelopes.json")).unwrap()
}

fn unhex<const N: usize>(text: &str) -> [u8; N] {
    hex::decode(text).unwrap().try_into().unwrap()
}

fn p256_public_b64(scalar_hex: &str) -> String {
    let secret = p256::SecretKey::from_slice(&unhex::<32>(scalar_hex)).unwrap();
    STANDARD.encode(secret.public_key().to_encoded_point(false).as_bytes())
}

/// Two keys are the same if they seal the same message under the same nonce identically.
fn same_key(a: &SessionKey, b: &SessionKey) -> bool {
    let nonce = [9u8; NONCE_LEN];
    a.seal(&nonce, b"key comparison").unwrap() == b.seal(&nonce, b"key comparison").unwrap()
}

#[test]
fn handshake_vectors_key_schedule() {
    let cases = handshake_cases();
    assert_eq!(cases.len(), 8);
    for case in &cases {
        // The hellos parse into the protocol types and write back the same JSON.
        let client_hello: ClientHello = serde_json::from_value(case.client_hello.clone()).unwrap();
        let server_hello: ServerHello = serde_json::from_value(case.server_hello.clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&client_hello).unwrap(),
            case.client_hello
        );
        assert_eq!(
            serde_json::to_value(&server_hello).unwrap(),
            case.server_hello
        );
        assert_eq!(server_hello.key_id, case.key_id);

        // Both public keys are accepted, and are the vector's scalars times G (p256 check).
        let client_public = process_client_hello(&client_hello).unwrap();
        let server_public = process_server_hello(&server_hello).unwrap();
        assert_eq!(
            client_public.to_base64(),
            client_hello.client_ephemeral_pub_key_b64
        );
        assert_eq!(
            server_public.to_base64(),
            server_hello.server_ephemeral_pub_key_b64
        );
        assert_eq!(
            p256_public_b64(&case.client_private_scalar_hex),
            client_public.to_base64()
        );
        assert_eq!(
            p256_public_b64(&case.server_private_scalar_hex),
            server_public.to_base64()
        );

        // ECDH (p256, independently of ring) gives the vector's shared secret.
        let client_secret =
            p256::SecretKey::from_slice(&unhex::<32>(&case.client_private_scalar_hex)).unwrap();
        let server_point = p256::PublicKey::from_sec1_bytes(server_public.as_bytes()).unwrap();
        let shared =
            p256::ecdh::diffie_hellman(client_secret.to_nonzero_scalar(), server_point.as_affine());
        assert_eq!(
            hex::encode(&shared.raw_secret_bytes()[..]),
            case.shared_secret_hex
        );

        // From the shared secret on, the key schedule runs on ring.
        let secret = SharedSecret::from_bytes(unhex::<32>(&case.shared_secret_hex));
        let salt = case.session_id.as_bytes();
        let c2s = secret
            .derive_key(Some(salt), HKDF_INFO_CLIENT_TO_SERVER.as_bytes(), 32)
            .unwrap();
        let s2c = secret
            .derive_key(Some(salt), HKDF_INFO_SERVER_TO_CLIENT.as_bytes(), 32)
            .unwrap();
        assert_eq!(hex::encode(&*c2s), case.client_to_server_key_hex);
        assert_eq!(hex::encode(&*s2c), case.server_to_client_key_hex);

        let session_id = SessionId::new(case.session_id.clone()).unwrap();
        let keys = secret
            .derive_session_keys(&session_id, &case.key_id)
            .unwrap();
        assert_eq!(keys.key_id(), case.key_id);
        let expected_c2s =
            SessionKey::new(&case.key_id, &unhex::<32>(&case.client_to_server_key_hex)).unwrap();
        let expected_s2c =
            SessionKey::new(&case.key_id, &unhex::<32>(&case.server_to_client_key_hex)).unwrap();
        assert!(same_key(keys.client_to_server(), &expected_c2s));
        assert!(same_key(keys.server_to_client(), &expected_s2c));
        assert!(!same_key(keys.client_to_server(), &expected_s2c));
    }
}

#[test]
fn our_hellos_have_the_typescript_shape() {
    let case = &handshake_cases()[0];
    let pair = generate_key_pair().unwrap();
    let ours = [
        serde_json::to_value(create_client_hello(&pair)).unwrap(),
        serde_json::to_value(create_server_hello(&pair, &case.key_id)).unwrap(),
    ];
    for (ours, theirs) in ours.iter().zip([&case.client_hello, &case.server_hello]) {
        let (ours, theirs) = (ours.as_object().unwrap(), theirs.as_object().unwrap());
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>()
        );
        for (name, value) in ours {
            if !name.ends_with("PubKeyB64") {
                assert_eq!(value, &theirs[name], "{name}");
            }
        }
    }
}

fn envelope_of(line: &str) -> EncryptedEnvelope {
    match Frame::parse_line(line.as_bytes()).unwrap() {
        Frame::Encrypted(envelope) => envelope,
        other => panic!("expected an enc line, got {}", other.type_str()),
    }
}

fn opener_for(case: &EnvelopeCase) -> Opener {
    Opener::new(SessionKey::new(&case.key_id, &unhex::<32>(&case.key_hex)).unwrap())
}

#[test]
fn envelope_vectors_open_to_their_inner_json() {
    let cases = envelope_cases();
    assert_eq!(cases.len(), 36);
    // One opener per key and direction, fed in order: counter and random nonces interleave
    // as a real TypeScript peer sends them.
    let mut openers = std::collections::HashMap::new();
    for case in &cases {
        let opener = openers
            .entry((case.key_hex.clone(), case.direction.clone()))
            .or_insert_with(|| opener_for(case));
        let envelope = envelope_of(&case.line);
        let event = opener
            .open_envelope(&envelope)
            .unwrap_or_else(|e| panic!("{}: {e}", case.line));
        let expected: Value = serde_json::from_str(&case.inner_json).unwrap();
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            expected,
            "{} {}",
            case.direction,
            case.nonce_style
        );
    }
    assert_eq!(openers.len(), 6);
    // Every line again: each nonce was accepted once already.
    for case in &cases {
        let opener = openers
            .get_mut(&(case.key_hex.clone(), case.direction.clone()))
            .unwrap();
        let err = opener.open_envelope(&envelope_of(&case.line)).unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_NONCE_REUSE", "{err}");
    }
}

#[test]
fn a_separate_tag_is_accepted() {
    for case in envelope_cases() {
        let mut envelope = envelope_of(&case.line);
        let sealed = STANDARD.decode(&envelope.payload.ciphertext_b64).unwrap();
        let (ciphertext, tag) = sealed.split_at(sealed.len() - 16);
        envelope.payload.ciphertext_b64 = STANDARD.encode(ciphertext);
        envelope.payload.tag_b64 = Some(STANDARD.encode(tag));
        let event = opener_for(&case).open_envelope(&envelope).unwrap();
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::from_str::<Value>(&case.inner_json).unwrap()
        );
    }
}

#[test]
fn tampering_with_any_byte_of_nonce_ciphertext_or_tag_is_refused() {
    let mut refused = 0;
    for case in envelope_cases() {
        let original = envelope_of(&case.line);
        let nonce = STANDARD.decode(&original.payload.nonce_b64).unwrap();
        let sealed = STANDARD.decode(&original.payload.ciphertext_b64).unwrap();
        // Every nonce byte, every tag byte, and every ciphertext byte (every 7th of the big
        // events, to keep the debug build quick).
        let stride = if sealed.len() > 1024 { 7 } else { 1 };
        let targets = (0..nonce.len()).map(|i| (true, i)).chain(
            (0..sealed.len())
                .filter(|i| i % stride == 0 || *i >= sealed.len() - 16)
                .map(|i| (false, i)),
        );
        for (in_nonce, index) in targets {
            let mut envelope = original.clone();
            if in_nonce {
                let mut bytes = nonce.clone();
                bytes[index] ^= 0x01;
                envelope.payload.nonce_b64 = STANDARD.encode(&bytes);
            } else {
                let mut bytes = sealed.clone();
                bytes[index] ^= 0x80;
                envelope.payload.ciphertext_b64 = STANDARD.encode(&bytes);
            }
            let err = opener_for(&case).open_envelope(&envelope).unwrap_err();
            assert_eq!(
                err.code(),
                "ENCRYPTION_DECRYPTION_FAILED",
                "byte {index}: {err}"
            );
            assert!(
                err.to_string().contains(original.session_id.as_str()),
                "{err}"
            );
            refused += 1;
        }
    }
    assert!(refused > 36 * (12 + 16), "{refused}");
}

#[test]
fn wrong_key_wrong_key_id_and_moved_envelopes_are_refused() {
    let cases = envelope_cases();
    for (i, case) in cases.iter().enumerate() {
        let envelope = envelope_of(&case.line);
        // The other direction's key under the same key id.
        let other = cases
            .iter()
            .find(|c| c.key_id == case.key_id && c.key_hex != case.key_hex)
            .unwrap();
        let mut wrong_key =
            Opener::new(SessionKey::new(&case.key_id, &unhex::<32>(&other.key_hex)).unwrap());
        let err = wrong_key.open_envelope(&envelope).unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED", "{err}");

        let mut wrong_kid =
            Opener::new(SessionKey::new("k_someone-else", &unhex::<32>(&case.key_hex)).unwrap());
        let err = wrong_kid.open_envelope(&envelope).unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED");
        assert!(err.to_string().contains("unknown key id"), "{err}");

        let mut moved_seq = envelope.clone();
        moved_seq.seq += 1;
        let err = opener_for(case).open_envelope(&moved_seq).unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED");
        assert!(
            err.to_string().contains(&format!("seq {}", envelope.seq)),
            "{err}"
        );

        let mut moved_session = envelope.clone();
        moved_session.session_id = SessionId::new(format!("s_moved-{i}")).unwrap();
        let err = opener_for(case).open_envelope(&moved_session).unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED");
        assert!(err.to_string().contains(&format!("s_moved-{i}")), "{err}");

        // A refused envelope does not burn its nonce: the genuine one still opens.
        let mut opener = opener_for(case);
        assert!(opener.open_envelope(&moved_seq).is_err());
        opener.open_envelope(&envelope).unwrap();
    }
}

#[test]
fn bad_base64_and_nonce_lengths_are_refused_with_a_reason() {
    let case = &envelope_cases()[0];
    let original = envelope_of(&case.line);
    let mut bad = Vec::new();
    for nonce in ["AAAA", "not base64 at all", "AAAAAAAAAAAAAAAAAAAA"] {
        let mut envelope = original.clone();
        envelope.payload.nonce_b64 = nonce.to_owned();
        bad.push(envelope);
    }
    for ciphertext in ["%%%%", "AAAA"] {
        let mut envelope = original.clone();
        envelope.payload.ciphertext_b64 = ciphertext.to_owned();
        bad.push(envelope);
    }
    let mut envelope = original.clone();
    envelope.payload.tag_b64 = Some("AAAA".to_owned());
    bad.push(envelope);
    for envelope in bad {
        let err = opener_for(case).open_envelope(&envelope).unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED", "{err}");
    }
}

#[test]
fn authentic_plaintext_that_is_not_utf8_is_refused_like_a_plaintext_line() {
    // The NDJSON layer refuses a line with invalid UTF-8 anywhere, even inside a field the
    // model ignores; an envelope whose (authentic) plaintext does the same gets the same verdict.
    let case = &envelope_cases()[0];
    let key = SessionKey::new(&case.key_id, &unhex::<32>(&case.key_hex)).unwrap();
    let template = envelope_of(&case.line);
    let inner = case.inner_json.strip_suffix('}').unwrap();
    let mut plaintext = inner.as_bytes().to_vec();
    plaintext.extend_from_slice(b",\"ignored\":\"\xff\xfe\"}");
    let nonce = [9u8; NONCE_LEN];
    let mut envelope = template.clone();
    envelope.payload.nonce_b64 = STANDARD.encode(nonce);
    envelope.payload.ciphertext_b64 = STANDARD.encode(key.seal(&nonce, &plaintext).unwrap());
    let err = opener_for(case).open_envelope(&envelope).unwrap_err();
    assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED", "{err}");
    assert!(err.to_string().contains("not UTF-8"), "{err}");

    // The same plaintext with valid text in the ignored field opens.
    let plaintext = format!("{inner},\"ignored\":\"ok\"}}");
    envelope.payload.ciphertext_b64 =
        STANDARD.encode(key.seal(&nonce, plaintext.as_bytes()).unwrap());
    let event = opener_for(case).open_envelope(&envelope).unwrap();
    assert_eq!(event.seq, template.seq);
}

#[test]
fn base64_that_the_typescript_side_never_writes_is_refused_not_repaired() {
    // That side writes with `btoa` (standard alphabet, padded, canonical); its `atob` would
    // repair the variants below, this layer refuses them (docs/SECURITY.md).
    let cases = envelope_cases();
    let case = cases
        .iter()
        .find(|c| envelope_of(&c.line).payload.ciphertext_b64.ends_with('='))
        .expect("a vector whose ciphertext base64 is padded");
    let original = envelope_of(&case.line);
    let b64 = &original.payload.ciphertext_b64;
    let unpadded = b64.trim_end_matches('=').to_owned();
    // The last data character carries bits past the end of the bytes: set one of them.
    let mut trailing = unpadded.clone();
    let last = trailing.pop().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let index = alphabet.find(last).unwrap();
    trailing.push(alphabet.as_bytes()[index ^ 1] as char);
    trailing.push_str(&b64[unpadded.len()..]);
    let spaced = format!("{}\n{}", &b64[..8], &b64[8..]);
    for (name, ciphertext) in [
        ("unpadded", unpadded),
        ("non-zero trailing bits", trailing),
        ("whitespace", spaced),
        ("url-safe", b64.replace('+', "-").replace('/', "_")),
    ] {
        if ciphertext == *b64 {
            continue; // No '+' or '/' to swap in this vector.
        }
        let mut envelope = original.clone();
        envelope.payload.ciphertext_b64 = ciphertext;
        let mut opener = opener_for(case);
        let err = opener.open_envelope(&envelope).unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED", "{name}: {err}");
        assert!(
            err.to_string().contains("not standard base64"),
            "{name}: {err}"
        );
        // The refusal did not burn the nonce.
        opener.open_envelope(&original).unwrap();
    }
}

//! The TypeScript implementation's interop vectors (`tests/data/`, copied from the shared
//! vector set): the handshake key schedule and the `enc` envelopes, plus tampering with them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use enclave_crypto::hazmat::{self, SessionKey};
use enclave_crypto::{
    create_client_hello, create_server_hello, generate_key_pair, process_client_hello,
    process_server_hello, Error, Opener, SharedSecret, HKDF_INFO_CLIENT_TO_SERVER,
    HKDF_INFO_SERVER_TO_CLIENT, NONCE_LEN,
};
use enclave_testkit::events::{cancel, stdout};
use enclave_types::{
    ClientHello, EncryptedEnvelope, Frame, RuntimeChannelMessage, ServerHello, SessionId,
    StreamEvent,
};
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
    serde_json::from_str(include_str!("../data/handshake.json")).unwrap()
}

fn envelope_cases() -> Vec<EnvelopeCase> {
    serde_json::from_str(include_str!("../data/envelopes.json")).unwrap()
}

fn unhex<const N: usize>(text: &str) -> [u8; N] {
    hex::decode(text).unwrap().try_into().unwrap()
}

fn p256_public_b64(scalar_hex: &str) -> String {
    let secret = p256::SecretKey::from_slice(&unhex::<32>(scalar_hex)).unwrap();
    STANDARD.encode(secret.public_key().to_encoded_point(false).as_bytes())
}

fn raw_key(kid: &str, key_hex: &str) -> SessionKey {
    SessionKey::new(kid, &unhex::<32>(key_hex)).unwrap()
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
        let secret = hazmat::shared_secret(unhex::<32>(&case.shared_secret_hex));
        let salt = case.session_id.as_bytes();
        let c2s = secret
            .derive_key(Some(salt), HKDF_INFO_CLIENT_TO_SERVER.as_bytes(), 32)
            .unwrap();
        let s2c = secret
            .derive_key(Some(salt), HKDF_INFO_SERVER_TO_CLIENT.as_bytes(), 32)
            .unwrap();
        assert_eq!(hex::encode(&*c2s), case.client_to_server_key_hex);
        assert_eq!(hex::encode(&*s2c), case.server_to_client_key_hex);

        check_typed_keys(case, secret);
    }
}

/// Each side's typed keys hold the vector's key for each direction: checked by what they
/// seal and open against raw-key ciphers built from the vector's key bytes.
fn check_typed_keys(case: &HandshakeCase, secret: SharedSecret) {
    let session_id = SessionId::new(case.session_id.clone()).unwrap();
    let client_keys = secret.into_client_keys(&session_id, &case.key_id).unwrap();
    let server_keys = hazmat::shared_secret(unhex::<32>(&case.shared_secret_hex))
        .into_server_keys(&session_id, &case.key_id)
        .unwrap();
    for (key_id, keys_session) in [
        (client_keys.key_id(), client_keys.session_id()),
        (server_keys.key_id(), server_keys.session_id()),
    ] {
        assert_eq!(key_id, case.key_id);
        assert_eq!(keys_session, &session_id);
    }
    let (mut client_sealer, mut client_opener) = client_keys.into_ciphers().unwrap();
    let (mut server_sealer, mut server_opener) = server_keys.into_ciphers().unwrap();
    let c2s_hex = &case.client_to_server_key_hex;
    let s2c_hex = &case.server_to_client_key_hex;

    // Server → client: the server seals with the s2c key, the client opens with it.
    let down = stdout(&session_id, 1, "down");
    let sealed = server_sealer.seal(&down).unwrap();
    assert_eq!(sealed.payload.kid, case.key_id);
    let mut expected = hazmat::opener::<StreamEvent>(raw_key(&case.key_id, s2c_hex), true);
    assert_eq!(expected.open(&sealed).unwrap(), down);
    let mut other = hazmat::opener::<StreamEvent>(raw_key(&case.key_id, c2s_hex), true);
    let err = other.open(&sealed).unwrap_err();
    assert!(matches!(err, Error::DecryptionFailed { .. }), "{err}");
    let mut raw_sealer = hazmat::sealer::<StreamEvent>(raw_key(&case.key_id, s2c_hex)).unwrap();
    let down = stdout(&session_id, 2, "down again");
    assert_eq!(
        client_opener
            .open(&raw_sealer.seal(&down).unwrap())
            .unwrap(),
        down
    );

    // Client → server: the client seals with the c2s key, the server opens with it.
    let up = cancel(&session_id, 1, "up");
    let sealed = client_sealer.seal(&up).unwrap();
    assert_eq!(sealed.payload.kid, case.key_id);
    let mut expected =
        hazmat::opener::<RuntimeChannelMessage>(raw_key(&case.key_id, c2s_hex), true);
    assert_eq!(expected.open(&sealed).unwrap(), up);
    let mut other = hazmat::opener::<RuntimeChannelMessage>(raw_key(&case.key_id, s2c_hex), true);
    let err = other.open(&sealed).unwrap_err();
    assert!(matches!(err, Error::DecryptionFailed { .. }), "{err}");
    let mut raw_sealer =
        hazmat::sealer::<RuntimeChannelMessage>(raw_key(&case.key_id, c2s_hex)).unwrap();
    let up = cancel(&session_id, 2, "up again");
    assert_eq!(
        server_opener.open(&raw_sealer.seal(&up).unwrap()).unwrap(),
        up
    );
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

/// A fresh raw-key opener for the case's key, checking the key id.
fn opener_for(case: &EnvelopeCase) -> Opener<StreamEvent> {
    hazmat::opener::<StreamEvent>(raw_key(&case.key_id, &case.key_hex), true)
}

fn inner_of(case: &EnvelopeCase) -> Value {
    serde_json::from_str(&case.inner_json).unwrap()
}

#[test]
fn envelope_vectors_open_to_their_inner_json() {
    let cases = envelope_cases();
    assert_eq!(cases.len(), 36);
    // Each envelope on its own, with a fresh opener for its key. Every inner message of the
    // vector set is an event, in both directions.
    for case in &cases {
        let envelope = envelope_of(&case.line);
        let mut opener = opener_for(case);
        let event = opener
            .open(&envelope)
            .unwrap_or_else(|e| panic!("{}: {e}", case.line));
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            inner_of(case),
            "{} {}",
            case.direction,
            case.nonce_style
        );
        assert_eq!(opener.session_id(), Some(&envelope.session_id));
        assert_eq!(opener.last_seq(), Some(envelope.seq));
    }

    // One opener per key and direction, fed in order: counter and random nonces interleave
    // as a real TypeScript peer sends them.
    let mut openers = std::collections::HashMap::new();
    for case in &cases {
        let opener = openers
            .entry((case.key_hex.clone(), case.direction.clone()))
            .or_insert_with(|| opener_for(case));
        let event = opener
            .open(&envelope_of(&case.line))
            .unwrap_or_else(|e| panic!("{}: {e}", case.line));
        assert_eq!(serde_json::to_value(&event).unwrap(), inner_of(case));
    }
    assert_eq!(openers.len(), 6);
    // Every line again: each was accepted once already, so each is a replay.
    for case in &cases {
        let opener = openers
            .get_mut(&(case.key_hex.clone(), case.direction.clone()))
            .unwrap();
        let err = opener.open(&envelope_of(&case.line)).unwrap_err();
        assert!(matches!(err, Error::Replay { .. }), "{err}");
        assert_eq!(err.code(), "ENCRYPTION_NONCE_REUSE", "{err}");
    }
}

#[test]
fn server_to_client_vectors_open_with_the_client_keys_of_their_handshake() {
    // The envelope vectors were sealed under the keys of the first handshake vectors: a
    // client that ran those handshakes opens the s2c envelopes through the typed path.
    let envelopes = envelope_cases();
    let mut opened = 0;
    for case in handshake_cases() {
        let session_id = SessionId::new(case.session_id.clone()).unwrap();
        let (_, mut opener) = hazmat::shared_secret(unhex::<32>(&case.shared_secret_hex))
            .into_client_keys(&session_id, &case.key_id)
            .unwrap()
            .into_ciphers()
            .unwrap();
        for envelope_case in envelopes
            .iter()
            .filter(|e| e.key_hex == case.server_to_client_key_hex)
        {
            assert_eq!(envelope_case.direction, "s2c");
            let event = opener.open(&envelope_of(&envelope_case.line)).unwrap();
            assert_eq!(
                serde_json::to_value(&event).unwrap(),
                inner_of(envelope_case)
            );
            opened += 1;
        }
    }
    assert_eq!(opened, 18);
}

#[test]
fn a_tag_moved_to_tag_b64_fails_and_an_extra_tag_b64_is_ignored() {
    // As in the TypeScript implementation, the tag is read only from the end of
    // `ciphertextB64`; `tagB64` plays no part.
    for case in envelope_cases() {
        let original = envelope_of(&case.line);
        let sealed = STANDARD.decode(&original.payload.ciphertext_b64).unwrap();
        let (ciphertext, tag) = sealed.split_at(sealed.len() - 16);

        // The tag moved out of the ciphertext into tagB64: the ciphertext's last 16 bytes are
        // taken as the tag, and authentication fails.
        let mut moved = original.clone();
        moved.payload.ciphertext_b64 = STANDARD.encode(ciphertext);
        moved.payload.tag_b64 = Some(STANDARD.encode(tag));
        let mut opener = opener_for(&case);
        let err = opener.open(&moved).unwrap_err();
        assert!(matches!(err, Error::DecryptionFailed { .. }), "{err}");
        assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED");
        assert!(err.to_string().contains("authentication failed"), "{err}");

        // A tagB64 beside a complete ciphertext, whatever it holds, is ignored.
        for extra in [
            STANDARD.encode(tag),
            "AAAA".to_owned(),
            "not base64!".to_owned(),
        ] {
            let mut envelope = original.clone();
            envelope.payload.tag_b64 = Some(extra);
            let event = opener_for(&case).open(&envelope).unwrap();
            assert_eq!(serde_json::to_value(&event).unwrap(), inner_of(&case));
        }
        // The refusal above changed nothing: the genuine envelope still opens.
        opener.open(&original).unwrap();
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
            let err = opener_for(&case).open(&envelope).unwrap_err();
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
            hazmat::opener::<StreamEvent>(raw_key(&case.key_id, &other.key_hex), true);
        let err = wrong_key.open(&envelope).unwrap_err();
        assert!(matches!(err, Error::DecryptionFailed { .. }), "{err}");
        assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED", "{err}");

        let mut wrong_kid =
            hazmat::opener::<StreamEvent>(raw_key("k_someone-else", &case.key_hex), true);
        let err = wrong_kid.open(&envelope).unwrap_err();
        assert!(matches!(err, Error::KeyIdMismatch { .. }), "{err}");
        assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED");
        assert!(err.to_string().contains("unknown key id"), "{err}");
        // Without the key id check the key alone decides (the kid is not authenticated).
        let mut lenient =
            hazmat::opener::<StreamEvent>(raw_key("k_someone-else", &case.key_hex), false);
        lenient.open(&envelope).unwrap();

        let mut moved_seq = envelope.clone();
        moved_seq.seq += 1;
        let err = opener_for(case).open(&moved_seq).unwrap_err();
        assert!(matches!(err, Error::EnvelopeMismatch { .. }), "{err}");
        assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED");
        assert!(
            err.to_string().contains(&format!("seq {}", envelope.seq)),
            "{err}"
        );

        let mut moved_session = envelope.clone();
        moved_session.session_id = SessionId::new(format!("s_moved-{i}")).unwrap();
        let err = opener_for(case).open(&moved_session).unwrap_err();
        assert!(matches!(err, Error::EnvelopeMismatch { .. }), "{err}");
        assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED");
        assert!(err.to_string().contains(&format!("s_moved-{i}")), "{err}");

        // A refused envelope does not burn its nonce: the genuine one still opens.
        let mut opener = opener_for(case);
        assert!(opener.open(&moved_seq).is_err());
        assert!(opener.open(&moved_session).is_err());
        opener.open(&envelope).unwrap();
        // Once bound to its session, the opener refuses the moved envelope before it
        // even tries the key.
        let err = opener.open(&moved_session).unwrap_err();
        assert!(matches!(err, Error::WrongSession { .. }), "{err}");
        assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED");
        assert!(err.to_string().contains(&format!("s_moved-{i}")), "{err}");
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
        bad.push((envelope, "nonceB64"));
    }
    for (ciphertext, reason) in [
        ("%%%%", "not standard base64"),
        ("AAAA", "shorter than the 16-byte tag"),
    ] {
        let mut envelope = original.clone();
        envelope.payload.ciphertext_b64 = ciphertext.to_owned();
        bad.push((envelope, reason));
    }
    for (envelope, reason) in bad {
        let err = opener_for(case).open(&envelope).unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED", "{err}");
        assert!(err.to_string().contains(reason), "{reason}: {err}");
    }
    // A bad tagB64 is not a reason to refuse: the field is ignored (see
    // `a_tag_moved_to_tag_b64_fails_and_an_extra_tag_b64_is_ignored`).
    let mut envelope = original.clone();
    envelope.payload.tag_b64 = Some("AAAA".to_owned());
    opener_for(case).open(&envelope).unwrap();
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
    let err = opener_for(case).open(&envelope).unwrap_err();
    assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED", "{err}");
    assert!(err.to_string().contains("not UTF-8"), "{err}");

    // The same plaintext with valid text in the ignored field opens.
    let plaintext = format!("{inner},\"ignored\":\"ok\"}}");
    envelope.payload.ciphertext_b64 =
        STANDARD.encode(key.seal(&nonce, plaintext.as_bytes()).unwrap());
    let event = opener_for(case).open(&envelope).unwrap();
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
        let err = opener.open(&envelope).unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED", "{name}: {err}");
        assert!(
            err.to_string().contains("not standard base64"),
            "{name}: {err}"
        );
        // The refusal did not burn the nonce.
        opener.open(&original).unwrap();
    }
}

//! Server identity: signed `ServerHello`s, what the signature binds, the key files, and the
//! Web Crypto encoding checked by a `node` child (no network).
//!
//! The node checks fail with a clear message if `node` is not on PATH, unless
//! `ENCLAVE_SKIP_NODE_INTEROP=1`.

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use enclave_crypto::{
    accept_client_hello, ClientHandshake, ErrorCode, HelloTranscript, SessionInitDigest,
    SigningKey, VerifyingKey, SIGNATURE_LEN, SPKI_LEN, TRANSCRIPT_DOMAIN,
};
use enclave_types::{
    ClientHello, EncryptionConfig, EncryptionMode, EventPayload, ProtocolVersion, ServerHello,
    SessionId, SessionInitPayload, StreamEvent, Timestamp,
};

/// Every node child must finish within this.
const NODE_TIMEOUT: Duration = Duration::from_secs(20);

/// One HTTP handshake, as the server sends it and the client receives it.
struct Handshake {
    session_id: SessionId,
    client: ClientHandshake,
    mode: EncryptionMode,
    /// The server's `session_init`, signed, as it went on the wire.
    line: String,
    server_key: SigningKey,
}

fn session_init(session_id: &SessionId, hello: ServerHello) -> StreamEvent {
    let mut encryption = EncryptionConfig::new(true);
    encryption.key_id = Some(hello.key_id.clone());
    encryption.server_hello = Some(hello);
    let mut payload = SessionInitPayload::new(
        format!("https://runtime.example/sessions/{session_id}/cancel"),
        Timestamp::new("expiresAt", "2030-01-01T00:00:00.000Z").unwrap(),
        encryption,
    );
    payload.replay_url = Some(format!(
        "https://runtime.example/sessions/{session_id}/stream"
    ));
    StreamEvent::new(session_id.clone(), 1, EventPayload::SessionInit(payload))
}

fn handshake(mode: EncryptionMode) -> Handshake {
    let session_id = SessionId::generate();
    let client = ClientHandshake::start().unwrap();
    let server_key = SigningKey::generate().unwrap();
    // The server's side: the request as received.
    let (server_hello, _keys) = accept_client_hello(client.client_hello(), &session_id).unwrap();
    let mut event = session_init(&session_id, server_hello);
    server_key
        .sign_session_init(&mut event, client.client_hello(), mode)
        .unwrap();
    let line = serde_json::to_string(&event).unwrap();
    Handshake {
        session_id,
        client,
        mode,
        line,
        server_key,
    }
}

/// The client's side: parses the line and checks it against its own values.
fn client_verifies(h: &Handshake, line: &str, pinned: &VerifyingKey) -> Result<(), ErrorCode> {
    let event: StreamEvent = serde_json::from_str(line).unwrap();
    pinned
        .verify_session_init(&event, &h.session_id, h.client.client_hello(), h.mode)
        .map(|_| ())
        .map_err(|err| err.code())
}

/// `line` with its session_init payload changed by `edit`, the signature kept.
fn edited(line: &str, edit: impl FnOnce(&mut SessionInitPayload)) -> String {
    let mut event: StreamEvent = serde_json::from_str(line).unwrap();
    let EventPayload::SessionInit(init) = &mut event.payload else {
        panic!("not a session_init")
    };
    edit(init);
    serde_json::to_string(&event).unwrap()
}

fn with_hello(line: &str, edit: impl FnOnce(&mut ServerHello)) -> String {
    edited(line, |init| {
        edit(init.encryption.server_hello.as_mut().unwrap());
    })
}

const REFUSED: Result<(), ErrorCode> = Err(ErrorCode::SignatureVerificationFailed);

#[test]
fn a_signed_session_init_verifies_and_leads_to_working_keys() {
    let h = handshake(EncryptionMode::Required);
    let pinned = h.server_key.verifying_key();
    assert_eq!(client_verifies(&h, &h.line, pinned), Ok(()));

    let event: StreamEvent = serde_json::from_str(&h.line).unwrap();
    let EventPayload::SessionInit(init) = &event.payload else {
        panic!("not a session_init")
    };
    let hello = init.encryption.server_hello.clone().unwrap();
    let signature = STANDARD
        .decode(hello.signature_b64.as_deref().unwrap())
        .unwrap();
    assert_eq!(
        signature.len(),
        SIGNATURE_LEN,
        "r||s, as Web Crypto encodes it"
    );

    let digest = SessionInitDigest::of_event(&event).unwrap();
    let Handshake {
        session_id, client, ..
    } = h;
    let keys = client
        .finish_verified(
            &hello,
            &session_id,
            EncryptionMode::Required,
            digest,
            pinned,
        )
        .unwrap();
    assert_eq!(keys.key_id(), hello.key_id);
}

#[test]
fn every_signed_value_changed_in_flight_breaks_the_signature() {
    let h = handshake(EncryptionMode::Required);
    let pinned = h.server_key.verifying_key();
    let other_key = ClientHandshake::start().unwrap();
    let other_point = other_key
        .client_hello()
        .client_ephemeral_pub_key_b64
        .clone();

    // What the server sent, each altered in flight.
    let lines = [
        (
            "server ephemeral key",
            with_hello(&h.line, |s| {
                s.server_ephemeral_pub_key_b64.clone_from(&other_point);
            }),
        ),
        ("key id", with_hello(&h.line, |s| s.key_id.push('x'))),
        (
            "selected algorithm",
            with_hello(&h.line, |s| s.selected_algorithm = "AES-GCM-128".into()),
        ),
        ("kdf", with_hello(&h.line, |s| s.kdf = "HKDF-SHA-1".into())),
        ("curve", with_hello(&h.line, |s| s.curve = "P-384".into())),
        (
            "server protocol version",
            with_hello(&h.line, |s| s.protocol_version = ProtocolVersion::V1),
        ),
        (
            "cancelUrl (redirect)",
            edited(&h.line, |i| {
                i.cancel_url = "https://evil.example/cancel".into();
            }),
        ),
        (
            "replayUrl (redirect)",
            edited(&h.line, |i| i.replay_url = None),
        ),
        (
            "encryption.enabled (downgrade)",
            edited(&h.line, |i| i.encryption.enabled = false),
        ),
        (
            "encryption.keyId",
            edited(&h.line, |i| i.encryption.key_id = Some("k_other".into())),
        ),
        (
            "expiresAt",
            edited(&h.line, |i| {
                i.expires_at = Timestamp::new("expiresAt", "2031-01-01T00:00:00.000Z").unwrap();
            }),
        ),
        ("seq", h.line.replacen("\"seq\":1", "\"seq\":2", 1)),
    ];
    for (what, line) in &lines {
        assert_ne!(line, &h.line, "{what}: the edit changed nothing");
        assert_eq!(client_verifies(&h, line, pinned), REFUSED, "{what}");
    }
}

#[test]
fn a_client_value_unlike_the_signed_one_breaks_the_signature() {
    let h = handshake(EncryptionMode::Required);
    let pinned = h.server_key.verifying_key();
    let other_key = ClientHandshake::start().unwrap();
    // What the client knows on its own, differing from what the server signed.
    let event: StreamEvent = serde_json::from_str(&h.line).unwrap();
    let hello = match &event.payload {
        EventPayload::SessionInit(init) => init.encryption.server_hello.clone().unwrap(),
        _ => unreachable!(),
    };
    let digest = SessionInitDigest::of_event(&event).unwrap();
    let own = h.client.client_hello();
    let verify = |session: &SessionId, client_hello: &ClientHello, mode, digest| {
        pinned
            .verify_server_hello(
                &hello,
                &HelloTranscript::new(session, client_hello, mode, digest),
            )
            .map_err(|err| err.code())
    };
    assert_eq!(
        verify(&h.session_id, own, EncryptionMode::Required, digest),
        Ok(())
    );
    let other_session = SessionId::generate();
    assert_eq!(
        verify(&other_session, own, EncryptionMode::Required, digest),
        REFUSED,
        "session id"
    );
    assert_eq!(
        verify(
            &h.session_id,
            other_key.client_hello(),
            EncryptionMode::Required,
            digest
        ),
        REFUSED,
        "client ephemeral key"
    );
    let mut fewer = own.clone();
    fewer.supported_algorithms.push("AES-GCM-128".into());
    assert_eq!(
        verify(&h.session_id, &fewer, EncryptionMode::Required, digest),
        REFUSED,
        "client's supported algorithms"
    );
    let mut older = own.clone();
    older.protocol_version = ProtocolVersion::V1;
    assert_eq!(
        verify(&h.session_id, &older, EncryptionMode::Required, digest),
        REFUSED,
        "client protocol version"
    );
    assert_eq!(
        verify(&h.session_id, own, EncryptionMode::Optional, digest),
        REFUSED,
        "mode downgrade required -> optional"
    );
    assert_eq!(
        verify(
            &h.session_id,
            own,
            EncryptionMode::Required,
            SessionInitDigest::none()
        ),
        REFUSED,
        "session_init digest"
    );
    let impostor = SigningKey::generate().unwrap();
    assert_eq!(
        impostor
            .verifying_key()
            .verify_server_hello(
                &hello,
                &HelloTranscript::new(&h.session_id, own, EncryptionMode::Required, digest),
            )
            .map_err(|err| err.code()),
        REFUSED,
        "signer key"
    );
}

#[test]
fn a_missing_or_malformed_signature_is_refused_when_a_key_is_pinned() {
    let h = handshake(EncryptionMode::Optional);
    let pinned = h.server_key.verifying_key();
    let unsigned = with_hello(&h.line, |s| s.signature_b64 = None);
    let event: StreamEvent = serde_json::from_str(&unsigned).unwrap();
    let err = pinned
        .verify_session_init(
            &event,
            &h.session_id,
            h.client.client_hello(),
            EncryptionMode::Optional,
        )
        .unwrap_err();
    assert_eq!(err.code(), "ENCRYPTION_SIGNATURE_VERIFICATION_FAILED");
    assert!(err.to_string().contains("no signatureB64"), "{err}");

    let mut checked = 0;
    for bad in ["", "AAAA", &"A".repeat(88 * 100), &"*".repeat(88)] {
        let line = with_hello(&h.line, |s| s.signature_b64 = Some(bad.to_owned()));
        // The types layer may refuse an empty signature itself; either way no key results.
        if let Ok(event) = serde_json::from_str::<StreamEvent>(&line) {
            checked += 1;
            let result = pinned.verify_session_init(
                &event,
                &h.session_id,
                h.client.client_hello(),
                EncryptionMode::Optional,
            );
            assert_eq!(
                result.map(|_| ()).map_err(|e| e.code()),
                REFUSED,
                "{bad:.10}"
            );
        }
    }
    assert!(checked >= 3, "the types layer refused {} of 4", 4 - checked);
    // One flipped bit in a well-formed signature.
    let mut raw = STANDARD
        .decode(
            serde_json::from_str::<StreamEvent>(&h.line)
                .ok()
                .and_then(|e| match e.payload {
                    EventPayload::SessionInit(i) => i.encryption.server_hello?.signature_b64,
                    _ => None,
                })
                .unwrap(),
        )
        .unwrap();
    raw[0] ^= 1;
    let flipped = with_hello(&h.line, |s| s.signature_b64 = Some(STANDARD.encode(&raw)));
    assert_eq!(
        client_verifies(&h, &flipped, pinned),
        REFUSED,
        "flipped bit"
    );
    assert_eq!(client_verifies(&h, &h.line, pinned), Ok(()));
}

#[test]
fn the_session_init_digest_survives_parsing_and_ignores_only_the_signature() {
    let h = handshake(EncryptionMode::Required);
    let sent: StreamEvent = serde_json::from_str(&h.line).unwrap();
    // Re-serializing what was parsed gives the bytes the server hashed.
    let mut unsigned = sent.clone();
    if let EventPayload::SessionInit(init) = &mut unsigned.payload {
        init.encryption.server_hello.as_mut().unwrap().signature_b64 = None;
    }
    let expected = ring_sha256(serde_json::to_string(&unsigned).unwrap().as_bytes());
    assert_eq!(
        SessionInitDigest::of_event(&sent).unwrap().as_bytes(),
        &expected
    );
    assert_eq!(
        SessionInitDigest::of_event(&unsigned).unwrap(),
        SessionInitDigest::of_event(&sent).unwrap()
    );
    // Keys the model does not know are dropped by the parser: they cannot matter to a client.
    let padded = h.line.replacen('{', r#"{"extra":true,"#, 1);
    let parsed: StreamEvent = serde_json::from_str(&padded).unwrap();
    assert_eq!(
        SessionInitDigest::of_event(&parsed).unwrap(),
        SessionInitDigest::of_event(&sent).unwrap()
    );
    // SHA-256 of nothing, for handshakes without a plaintext session_init.
    assert_eq!(
        hex::encode(SessionInitDigest::none().as_bytes()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // Only a session_init has a digest.
    let other = StreamEvent::new(
        h.session_id.clone(),
        2,
        enclave_types::StdoutPayload::new("x").into(),
    );
    assert_eq!(
        SessionInitDigest::of_event(&other).unwrap_err().code(),
        "ENCRYPTION_SIGNATURE_VERIFICATION_FAILED"
    );
}

fn ring_sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().try_into().unwrap()
}

/// Splits a transcript into its length-prefixed fields.
fn fields(transcript: &[u8]) -> Vec<&[u8]> {
    let mut rest = transcript.strip_prefix(TRANSCRIPT_DOMAIN).unwrap();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_at(4);
        let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
        let (value, tail) = tail.split_at(len);
        out.push(value);
        rest = tail;
    }
    out
}

#[test]
fn the_transcript_is_laid_out_as_documented() {
    let session_id = SessionId::new("s_layout").unwrap();
    let client = ClientHandshake::start().unwrap();
    let (server_hello, _) = accept_client_hello(client.client_hello(), &session_id).unwrap();
    let key = SigningKey::generate().unwrap();
    let digest = SessionInitDigest::none();
    let bytes = client
        .transcript(&session_id, EncryptionMode::Optional, digest)
        .to_bytes(&server_hello, key.verifying_key())
        .unwrap();
    assert_eq!(TRANSCRIPT_DOMAIN, b"enclavejs-server-hello-v1");
    let f = fields(&bytes);
    let client_point = STANDARD
        .decode(&client.client_hello().client_ephemeral_pub_key_b64)
        .unwrap();
    let server_point = STANDARD
        .decode(&server_hello.server_ephemeral_pub_key_b64)
        .unwrap();
    let algorithms = [&[0, 0, 0, 11][..], b"AES-GCM-256"].concat();
    let spki = key.verifying_key().to_spki_der();
    let expected: Vec<&[u8]> = vec![
        b"s_layout",
        b"2",
        b"P-256",
        &algorithms,
        &client_point,
        b"2",
        &server_point,
        server_hello.key_id.as_bytes(),
        b"AES-GCM-256",
        b"HKDF-SHA-256",
        b"P-256",
        b"optional",
        digest.as_bytes(),
        &spki,
    ];
    assert_eq!(f, expected);
    assert_eq!(f[13].len(), SPKI_LEN);
    // A signature already present is not part of what is signed.
    let mut signed = server_hello.clone();
    signed.signature_b64 = Some("x".repeat(88));
    assert_eq!(
        client
            .transcript(&session_id, EncryptionMode::Optional, digest)
            .to_bytes(&signed, key.verifying_key())
            .unwrap(),
        bytes
    );
}

#[test]
fn keys_round_trip_through_pem() {
    let key = SigningKey::generate().unwrap();
    let pem = key.to_pkcs8_pem();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(pem.ends_with("-----END PRIVATE KEY-----\n"));
    assert!(pem.lines().all(|l| l.len() <= 64));
    let again = SigningKey::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(again.verifying_key(), key.verifying_key());

    let spki = key.verifying_key().to_spki_pem();
    assert!(spki.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let public = VerifyingKey::from_spki_pem(&spki).unwrap();
    assert_eq!(&public, key.verifying_key());
    assert_eq!(
        VerifyingKey::from_spki_der(&public.to_spki_der()).unwrap(),
        public
    );
    assert_eq!(public.as_bytes()[0], 0x04);
    // Debug shows the public key, never the private one.
    let debug = format!("{key:?}");
    assert!(
        debug.contains(&STANDARD.encode(public.as_bytes())),
        "{debug}"
    );
    assert!(!debug.contains(&pem[28..60]), "{debug}");
}

#[test]
fn key_files_are_read_and_their_errors_name_them() {
    let dir = std::env::temp_dir().join(format!("enclave-identity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = SigningKey::generate().unwrap();
    let key_path = dir.join("server.key");
    let pub_path = dir.join("server.pub");
    std::fs::write(&key_path, key.to_pkcs8_pem().as_bytes()).unwrap();
    std::fs::write(&pub_path, key.verifying_key().to_spki_pem()).unwrap();
    let loaded = SigningKey::from_pkcs8_pem_file(&key_path).unwrap();
    assert_eq!(loaded.verifying_key(), key.verifying_key());
    assert_eq!(
        &VerifyingKey::from_spki_pem_file(&pub_path).unwrap(),
        key.verifying_key()
    );

    // The public key is not a signing key, and the reverse; a missing file says so.
    let err = SigningKey::from_pkcs8_pem_file(&pub_path).unwrap_err();
    assert_eq!(err.code(), "ENCRYPTION_INVALID_IDENTITY_KEY");
    let text = err.to_string();
    assert!(
        text.contains("server.pub") && text.contains("PUBLIC KEY"),
        "{text}"
    );
    let err = VerifyingKey::from_spki_pem_file(&key_path).unwrap_err();
    assert!(err.to_string().contains("server.key"), "{err}");
    let err = SigningKey::from_pkcs8_pem_file(&dir.join("absent.key")).unwrap_err();
    assert!(err.to_string().contains("absent.key"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn wrong_key_documents_are_refused_with_what_was_found() {
    let err = VerifyingKey::from_spki_der(&[0x30, 0x59]).unwrap_err();
    assert_eq!(err.code(), "ENCRYPTION_INVALID_IDENTITY_KEY");
    // The right prefix around a point that is not on the curve.
    let key = SigningKey::generate().unwrap();
    let mut der = key.verifying_key().to_spki_der();
    der[SPKI_LEN - 1] ^= 1;
    assert!(VerifyingKey::from_spki_der(&der).is_err());
    let err = SigningKey::from_pkcs8_pem(
        "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("SEC1"), "{err}");
    let err = SigningKey::from_pkcs8_pem(
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("encrypted"), "{err}");
    let err = SigningKey::from_pkcs8_der(b"not a key").unwrap_err();
    assert!(err.to_string().contains("PKCS#8"), "{err}");
}

/// Runs `node -e script` with `input` on stdin; its stdout, or a panic with its stderr.
/// `None` when the node checks are skipped.
fn node(script: &str, input: &str) -> Option<String> {
    if std::env::var("ENCLAVE_SKIP_NODE_INTEROP").as_deref() == Ok("1") {
        return None;
    }
    let mut child = Command::new("node")
        .args(["-e", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "could not start `node` ({err}): these checks need Node.js 20+ on PATH \
                 (set ENCLAVE_SKIP_NODE_INTEROP=1 to skip them)"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let deadline = Instant::now() + NODE_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("node did not finish within {NODE_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "node failed ({status}): {stderr}");
    Some(stdout)
}

/// Web Crypto verifies `{spki, signature, data}` (base64 each) and prints `true` or `false`.
const WEB_CRYPTO_VERIFY: &str = r"
let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', async () => {
  const { spki, signature, data } = JSON.parse(input);
  const b = (s) => Buffer.from(s, 'base64');
  const key = await crypto.subtle.importKey(
    'spki', b(spki), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
  const ok = await crypto.subtle.verify(
    { name: 'ECDSA', hash: 'SHA-256' }, key, b(signature), b(data));
  process.stdout.write(String(ok));
});
";

#[test]
fn web_crypto_verifies_the_signature_over_the_transcript() {
    let session_id = SessionId::generate();
    let client = ClientHandshake::start().unwrap();
    let (mut server_hello, _) = accept_client_hello(client.client_hello(), &session_id).unwrap();
    let key = SigningKey::generate().unwrap();
    let inputs = HelloTranscript::new(
        &session_id,
        client.client_hello(),
        EncryptionMode::Required,
        SessionInitDigest::none(),
    );
    key.sign_server_hello(&mut server_hello, &inputs).unwrap();
    let transcript = inputs.to_bytes(&server_hello, key.verifying_key()).unwrap();
    let signature = server_hello.signature_b64.clone().unwrap();
    let request = |data: &[u8]| {
        serde_json::json!({
            "spki": STANDARD.encode(key.verifying_key().to_spki_der()),
            "signature": signature,
            "data": STANDARD.encode(data),
        })
        .to_string()
    };
    let Some(verdict) = node(WEB_CRYPTO_VERIFY, &request(&transcript)) else {
        return;
    };
    assert_eq!(verdict, "true");
    // The same signature over one changed byte: Web Crypto refuses it too.
    let mut changed = transcript.clone();
    changed[TRANSCRIPT_DOMAIN.len() + 5] ^= 1;
    assert_eq!(
        node(WEB_CRYPTO_VERIFY, &request(&changed)).unwrap(),
        "false"
    );
}

/// Node writes a P-256 key pair as PKCS#8 and SPKI PEM, and a SEC1 and a P-384 key.
const NODE_KEYS: &str = r"
const { generateKeyPairSync } = require('crypto');
const k = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
process.stdout.write(JSON.stringify({
  pkcs8: k.privateKey.export({ type: 'pkcs8', format: 'pem' }),
  spki: k.publicKey.export({ type: 'spki', format: 'pem' }),
  sec1: k.privateKey.export({ type: 'sec1', format: 'pem' }),
  p384: p384.privateKey.export({ type: 'pkcs8', format: 'pem' }),
  p384spki: p384.publicKey.export({ type: 'spki', format: 'pem' }),
}));
";

#[test]
fn keys_written_by_node_load_and_match_its_public_key() {
    let Some(out) = node(NODE_KEYS, "") else {
        return;
    };
    let keys: serde_json::Value = serde_json::from_str(&out).unwrap();
    let text = |name: &str| keys[name].as_str().unwrap().to_owned();
    let key = SigningKey::from_pkcs8_pem(&text("pkcs8")).unwrap();
    // Our SPKI PEM is byte for byte what Node writes for the same key.
    assert_eq!(key.verifying_key().to_spki_pem(), text("spki"));
    assert_eq!(
        &VerifyingKey::from_spki_pem(&text("spki")).unwrap(),
        key.verifying_key()
    );
    let err = SigningKey::from_pkcs8_pem(&text("sec1")).unwrap_err();
    assert!(err.to_string().contains("SEC1"), "{err}");
    let err = SigningKey::from_pkcs8_pem(&text("p384")).unwrap_err();
    assert_eq!(err.code(), "ENCRYPTION_INVALID_IDENTITY_KEY");
    let err = VerifyingKey::from_spki_pem(&text("p384spki")).unwrap_err();
    assert!(err.to_string().contains("P-256"), "{err}");
}

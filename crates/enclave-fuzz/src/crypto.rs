//! The encryption layer's targets: opening `enc` envelopes and reading hellos.

use bytes::BytesMut;
use enclave_crypto::hazmat::{self, SessionKey};
use enclave_crypto::{
    accept_client_hello, process_client_hello, process_server_hello, EncryptedCodec,
    EncryptionLayer, PublicKey, PUBLIC_KEY_LEN,
};
use enclave_ndjson::NdjsonCodec;
use enclave_types::{
    ClientHello, EncryptedEnvelope, EncryptionMode, Frame, RuntimeChannelMessage, ServerHello,
    SessionId, StdoutPayload, StreamEvent,
};
use tokio_util::codec::Decoder;

/// The first envelope vector's key and key id, so seeds copied from `envelopes.json` open.
const KEY: [u8; 32] = [
    0x23, 0x6b, 0xf5, 0xc4, 0xa4, 0xb3, 0x47, 0xa1, 0x0e, 0x7b, 0xf5, 0x59, 0x0b, 0x36, 0xb8, 0x6c,
    0x16, 0x5b, 0x20, 0x1a, 0x8f, 0x10, 0xc9, 0xd4, 0x13, 0x78, 0x99, 0xb4, 0xd4, 0x88, 0x6e, 0xd0,
];
const KID: &str = "k_bea0b465-39d3-4c1c-9483-d420f31fd7f8";
/// Small, so the codec's discard path for over-long lines is reachable.
const MAX_LINE: usize = 16 * 1024;
/// Every code an opening failure may carry.
const OPEN_CODES: [&str; 4] = [
    "ENCRYPTION_DECRYPTION_FAILED",
    "ENCRYPTION_NONCE_REUSE",
    "ENCRYPTION_KEY_EXPIRED",
    "FRAME_ERROR",
];
const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn key() -> SessionKey {
    SessionKey::new(KID, &KEY).expect("a 32-byte key is always accepted")
}

/// Opens untrusted envelope lines, and tampers with a genuine envelope.
///
/// The first byte picks the mode. Odd: `data[1..]` is NDJSON fed through
/// [`EncryptedCodec`] over [`NdjsonCodec`] (16 KiB line limit, optional mode with keys, so
/// plaintext is refused); every item is an event that arrived sealed or an error with a known
/// code and a line number, items never outnumber lines, and every event that comes out
/// survives a seal/open round trip. Even: a genuine envelope is sealed, then
/// `data[1..]` names (position, replacement) pairs of base64 characters to change in its
/// nonce and ciphertext; any real change must be refused and the untouched envelope opens.
///
/// # Panics
///
/// When one of the invariants above does not hold.
pub fn envelope_opener(data: &[u8]) {
    match data.split_first() {
        Some((mode, rest)) if mode & 1 == 1 => open_lines(rest),
        Some((_, rest)) => tamper(rest),
        None => {}
    }
}

fn open_lines(input: &[u8]) {
    let sealer = hazmat::sealer::<RuntimeChannelMessage>(key()).expect("system randomness");
    let mut codec = EncryptedCodec::new(
        NdjsonCodec::<Frame, RuntimeChannelMessage>::with_max_line_length(MAX_LINE),
        EncryptionLayer::with_ciphers(
            EncryptionMode::Optional,
            sealer,
            hazmat::opener::<StreamEvent>(key(), true),
        ),
    );
    let mut buf = BytesMut::from(input);
    let lines = input.split(|b| *b == b'\n').count();
    let mut items = 0;
    let mut last_line = 0;
    loop {
        let item = match codec.decode_eof(&mut buf) {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(err) => panic!("decoding from memory cannot fail with i/o: {err}"),
        };
        items += 1;
        match item {
            // Whatever came out, sealed or plain, must survive a seal/open round trip.
            Ok(opened) => {
                assert!(opened.encrypted, "plaintext passed a layer with keys");
                round_trip(&opened.message);
            }
            Err(err) => {
                assert!(
                    OPEN_CODES.contains(&err.code().as_str()),
                    "unexpected code: {err}"
                );
                let line = err
                    .line()
                    .unwrap_or_else(|| panic!("no line number: {err}"));
                assert!(line > last_line, "line numbers must increase: {err}");
                last_line = line;
            }
        }
    }
    assert!(items <= lines, "{items} items from {lines} lines");
}

fn round_trip(event: &StreamEvent) {
    let mut sealer = hazmat::sealer::<StreamEvent>(key()).expect("system randomness");
    let envelope = sealer
        .seal(event)
        .unwrap_or_else(|err| panic!("an accepted event failed to seal: {err}"));
    let opened = hazmat::opener::<StreamEvent>(key(), true)
        .open(&envelope)
        .unwrap_or_else(|err| panic!("our own envelope failed to open: {err}"));
    assert_eq!(&opened, event);
}

fn genuine() -> (StreamEvent, EncryptedEnvelope) {
    let event = StreamEvent::new(
        SessionId::new("s_fuzz").expect("valid id"),
        7,
        StdoutPayload::new("fuzz ✓").into(),
    );
    let mut sealer = hazmat::sealer::<StreamEvent>(key()).expect("system randomness");
    let envelope = sealer.seal(&event).expect("sealing a small event");
    (event, envelope)
}

fn tamper(edits: &[u8]) {
    let (event, envelope) = genuine();
    let mut tampered = envelope.clone();
    for edit in edits.chunks_exact(2) {
        let field = if edit[0] & 0x80 == 0 {
            &mut tampered.payload.ciphertext_b64
        } else {
            &mut tampered.payload.nonce_b64
        };
        let at = usize::from(edit[0] & 0x7f) % field.len();
        let mut bytes = std::mem::take(field).into_bytes();
        if bytes[at] != b'=' {
            bytes[at] = BASE64_ALPHABET[usize::from(edit[1] & 0x3f)];
        }
        *field = String::from_utf8(bytes).expect("base64 stays ASCII");
    }
    let result = hazmat::opener::<StreamEvent>(key(), true).open(&tampered);
    if tampered == envelope {
        assert_eq!(result.expect("an untouched envelope opens"), event);
    } else {
        let err = result.expect_err("a tampered envelope must be refused");
        assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED", "{err}");
    }
}

/// Reads hellos and public keys from untrusted bytes.
///
/// `data` is tried as a `ClientHello`, a `ServerHello` and a raw public key. Checked: an
/// accepted public key re-encodes to exactly the text or bytes it came from; refusals carry
/// only handshake codes; a `ClientHello` that is accepted leads to a `ServerHello` that is
/// accepted in turn.
///
/// # Panics
///
/// When one of the invariants above does not hold.
pub fn hello_parser(data: &[u8]) {
    const HELLO_CODES: [&str; 3] = [
        "ENCRYPTION_INVALID_PUBLIC_KEY",
        "ENCRYPTION_UNSUPPORTED_ALGORITHM",
        "ENCRYPTION_HANDSHAKE_FAILED",
    ];
    if let Ok(hello) = serde_json::from_slice::<ClientHello>(data) {
        match process_client_hello(&hello) {
            Ok(public) => {
                assert_eq!(public.to_base64(), hello.client_ephemeral_pub_key_b64);
                let session = SessionId::new("s_fuzz").expect("valid id");
                let (server_hello, _keys) =
                    accept_client_hello(&hello, &session).expect("an accepted hello is answered");
                process_server_hello(&server_hello).expect("our own ServerHello is accepted");
            }
            Err(err) => assert!(HELLO_CODES.contains(&err.code().as_str()), "{err}"),
        }
    }
    if let Ok(hello) = serde_json::from_slice::<ServerHello>(data) {
        match process_server_hello(&hello) {
            Ok(public) => assert_eq!(public.to_base64(), hello.server_ephemeral_pub_key_b64),
            Err(err) => assert!(HELLO_CODES.contains(&err.code().as_str()), "{err}"),
        }
    }
    match PublicKey::from_bytes(data) {
        Ok(public) => {
            assert_eq!(data.len(), PUBLIC_KEY_LEN);
            assert_eq!(public.as_bytes().as_slice(), data);
        }
        Err(err) => assert_eq!(err.code(), "ENCRYPTION_INVALID_PUBLIC_KEY", "{err}"),
    }
}

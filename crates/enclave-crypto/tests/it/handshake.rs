//! The hello exchange end to end, and everything it must refuse.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use enclave_crypto::{
    accept_client_hello, generate_key_id, process_client_hello, process_server_hello,
    ClientHandshake, Error, PublicKey,
};
use enclave_testkit::events::{cancel, stdout};
use enclave_types::{ClientHello, ServerHello, SessionId};

fn session() -> SessionId {
    SessionId::new("s_handshake-test").unwrap()
}

#[test]
fn client_and_server_derive_the_same_keys() {
    let client = ClientHandshake::start().unwrap();
    let (server_hello, server_keys) =
        accept_client_hello(client.client_hello(), &session()).unwrap();
    let client_keys = client.finish(&server_hello, &session()).unwrap();
    assert_eq!(client_keys.key_id(), server_hello.key_id);
    assert_eq!(server_keys.key_id(), server_hello.key_id);
    assert_eq!(client_keys.session_id(), &session());
    assert_eq!(server_keys.session_id(), &session());
    let (mut client_sealer, mut client_opener) = client_keys.into_ciphers().unwrap();
    let (mut server_sealer, mut server_opener) = server_keys.into_ciphers().unwrap();
    let up = cancel(&session(), 1, "to the server");
    let sealed = client_sealer.seal(&up).unwrap();
    assert_eq!(server_opener.open(&sealed).unwrap(), up);
    let down = stdout(&session(), 1, "to the client");
    let sealed = server_sealer.seal(&down).unwrap();
    assert_eq!(client_opener.open(&sealed).unwrap(), down);
    // Directions use different keys: the types keep a side from opening its own direction,
    // and the bytes would not open under the other key anyway. Relabelled as the other
    // direction's message family, a client envelope fails authentication at the client.
    let own = client_sealer
        .seal(&cancel(&session(), 2, "wrong way"))
        .unwrap();
    let err = client_opener.open(&own).unwrap_err();
    assert!(matches!(err, Error::DecryptionFailed { .. }), "{err}");
    assert!(err.to_string().contains("authentication failed"), "{err}");
}

#[test]
fn another_session_id_gives_other_keys() {
    let client = ClientHandshake::start().unwrap();
    let (server_hello, server_keys) =
        accept_client_hello(client.client_hello(), &session()).unwrap();
    let other = SessionId::new("s_other").unwrap();
    let client_keys = client.finish(&server_hello, &other).unwrap();
    let (mut sealer, _) = client_keys.into_ciphers().unwrap();
    let (_, mut opener) = server_keys.into_ciphers().unwrap();
    // Sealed for the session the client believes in: refused as another session's.
    let sealed = sealer.seal(&cancel(&other, 1, "salted")).unwrap();
    let err = opener.open(&sealed).unwrap_err();
    assert!(matches!(err, Error::WrongSession { .. }), "{err}");
    assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED");
    // Relabelled with the server's session, it reaches the key, which is not the same.
    let mut relabelled = sealed.clone();
    relabelled.session_id = session();
    let err = opener.open(&relabelled).unwrap_err();
    assert!(matches!(err, Error::DecryptionFailed { .. }), "{err}");
    assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED");
    assert!(err.to_string().contains("authentication failed"), "{err}");
}

#[test]
fn key_ids_are_k_uuid() {
    let id = generate_key_id();
    assert_eq!(id.len(), 2 + 36);
    assert!(id.starts_with("k_"));
    assert!(uuid::Uuid::parse_str(&id[2..]).is_ok(), "{id}");
    assert_ne!(id, generate_key_id());
}

#[test]
fn unsupported_curve_algorithm_and_kdf_are_refused() {
    let client = ClientHandshake::start().unwrap();
    let good: ClientHello = client.client_hello().clone();

    let mut hello = good.clone();
    hello.curve = "P-384".to_owned();
    let err = accept_client_hello(&hello, &session()).unwrap_err();
    assert_eq!(err.code(), "ENCRYPTION_UNSUPPORTED_ALGORITHM");
    assert!(err.to_string().contains("P-384"), "{err}");

    let mut hello = good.clone();
    hello.supported_algorithms = vec!["CHACHA20-POLY1305".to_owned()];
    assert_eq!(
        process_client_hello(&hello).unwrap_err().code(),
        "ENCRYPTION_UNSUPPORTED_ALGORITHM"
    );

    let (server_hello, _) = accept_client_hello(&good, &session()).unwrap();
    let tweaks: [fn(&mut ServerHello); 3] = [
        |h| h.curve = "X25519".to_owned(),
        |h| h.selected_algorithm = "AES-GCM-128".to_owned(),
        |h| h.kdf = "HKDF-SHA-512".to_owned(),
    ];
    for tweak in tweaks {
        let mut hello = server_hello.clone();
        tweak(&mut hello);
        let err = process_server_hello(&hello).unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_UNSUPPORTED_ALGORITHM", "{err}");
    }
    let mut hello = server_hello.clone();
    hello.key_id.clear();
    assert_eq!(
        process_server_hello(&hello).unwrap_err().code(),
        "ENCRYPTION_HANDSHAKE_FAILED"
    );
}

#[test]
fn bad_public_keys_are_refused_on_import() {
    let good = ClientHandshake::start()
        .unwrap()
        .client_hello()
        .client_ephemeral_pub_key_b64
        .clone();
    let raw = STANDARD.decode(&good).unwrap();
    let mut off_curve = raw.clone();
    off_curve[64] ^= 1;
    let mut compressed = vec![0x02 | (raw[64] & 1)];
    compressed.extend_from_slice(&raw[1..33]);
    let mut hybrid = raw.clone();
    hybrid[0] = 0x06;
    let cases = [
        ("not base64", "!!not base64!!".to_owned()),
        ("unpadded", good.trim_end_matches('=').to_owned()),
        (
            "url-safe alphabet",
            good.replace('+', "-").replace('/', "_"),
        ),
        ("empty", String::new()),
        ("too short", STANDARD.encode(&raw[..64])),
        ("too long", STANDARD.encode([raw.as_slice(), &[0]].concat())),
        ("compressed", STANDARD.encode(&compressed)),
        ("wrong prefix", STANDARD.encode(&hybrid)),
        ("off the curve", STANDARD.encode(&off_curve)),
        ("point at infinity", STANDARD.encode([0u8; 65])),
        ("huge", "A".repeat(1 << 20)),
    ];
    let mut refused = 0;
    for (name, b64) in cases {
        if name == "url-safe alphabet" && b64 == good {
            continue; // This key happens to have neither '+' nor '/'.
        }
        let err = PublicKey::from_base64(&b64).unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_INVALID_PUBLIC_KEY", "{name}: {err}");
        let mut hello = ClientHandshake::start().unwrap().client_hello().clone();
        hello.client_ephemeral_pub_key_b64 = b64;
        assert_eq!(
            accept_client_hello(&hello, &session()).unwrap_err().code(),
            "ENCRYPTION_INVALID_PUBLIC_KEY",
            "{name}"
        );
        refused += 1;
    }
    assert!(refused >= 10);
    assert_eq!(PublicKey::from_base64(&good).unwrap().to_base64(), good);
}

#[test]
fn debug_output_shows_no_secrets() {
    let client = ClientHandshake::start().unwrap();
    let (server_hello, keys) = accept_client_hello(client.client_hello(), &session()).unwrap();
    let text = format!("{keys:?}");
    assert_eq!(
        text,
        format!(
            "ServerKeys {{ session: {:?}, kid: {:?}, .. }}",
            session().as_str(),
            server_hello.key_id
        )
    );
    let (sealer, opener) = keys.into_ciphers().unwrap();
    assert!(format!("{sealer:?}").starts_with("Sealer { kid: "));
    assert!(format!("{opener:?}").starts_with("Opener { kid: "));
    // The client side holds only its public key in view.
    let text = format!("{client:?}");
    assert!(
        text.contains(&client.client_hello().client_ephemeral_pub_key_b64),
        "{text}"
    );
    assert!(text.contains(".."), "{text}");
    let client_keys = client.finish(&server_hello, &session()).unwrap();
    assert_eq!(
        format!("{client_keys:?}"),
        format!(
            "ClientKeys {{ session: {:?}, kid: {:?}, .. }}",
            session().as_str(),
            server_hello.key_id
        )
    );
}

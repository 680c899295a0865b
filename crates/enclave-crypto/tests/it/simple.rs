//! The small API: whole messages under a shared secret, and the two-way channel.

use enclave_crypto::{
    create_encrypted_channel, decrypt, derive_key, derive_shared_secret, encrypt,
    generate_key_pair, EncryptedChannel, PendingChannel, Role, NONCE_LEN, TAG_LEN,
};
use serde_json::{json, Value};

#[test]
fn encrypt_and_decrypt_under_an_agreed_secret() {
    let (alice, bob) = (generate_key_pair().unwrap(), generate_key_pair().unwrap());
    let (alice_public, bob_public) = (alice.public_key().clone(), bob.public_key().clone());
    let alice_secret = derive_shared_secret(alice, &bob_public).unwrap();
    let bob_secret = derive_shared_secret(bob, &alice_public).unwrap();
    assert_eq!(
        *derive_key(&alice_secret, None, "check", 32).unwrap(),
        *derive_key(&bob_secret, None, "check", 32).unwrap()
    );

    let message = "grüße 🔐".as_bytes();
    let sealed = encrypt(&alice_secret, message).unwrap();
    assert_eq!(sealed.len(), NONCE_LEN + message.len() + TAG_LEN);
    assert_eq!(decrypt(&bob_secret, &sealed).unwrap(), message);
    // A random nonce per message: the same plaintext seals differently.
    assert_ne!(encrypt(&alice_secret, message).unwrap(), sealed);

    let mut tampered = sealed.clone();
    tampered[NONCE_LEN] ^= 1;
    assert_eq!(
        decrypt(&bob_secret, &tampered).unwrap_err().code(),
        "ENCRYPTION_DECRYPTION_FAILED"
    );
    assert!(decrypt(&bob_secret, &sealed[..NONCE_LEN + TAG_LEN - 1]).is_err());
}

#[test]
fn a_channel_talks_both_ways_and_refuses_replays() {
    let server = generate_key_pair().unwrap();
    let server_public = server.public_key().clone();
    let mut client = create_encrypted_channel(Role::Client, &server_public).unwrap();
    let client_public = client.public_key().unwrap().clone();
    let secret = derive_shared_secret(server, &client_public).unwrap();
    let mut server = EncryptedChannel::new(Role::Server, secret).unwrap();
    assert!(server.public_key().is_none());

    for i in 0..5u8 {
        let up = client.seal(&[i; 100]).unwrap();
        assert_eq!(server.open(&up).unwrap(), [i; 100]);
        let down = server.seal(&[i; 3]).unwrap();
        assert_eq!(client.open(&down).unwrap(), [i; 3]);
    }
    let once = client.seal(b"once").unwrap();
    server.open(&once).unwrap();
    assert_eq!(
        server.open(&once).unwrap_err().code(),
        "ENCRYPTION_NONCE_REUSE"
    );
    // A message from our own direction does not open (different key).
    let own = server.seal(b"echo").unwrap();
    assert!(server.open(&own).is_err());
}

#[test]
fn derive_key_refuses_lengths_past_the_hkdf_bound_without_allocating_them() {
    let (alice, bob) = (generate_key_pair().unwrap(), generate_key_pair().unwrap());
    let secret = derive_shared_secret(alice, bob.public_key()).unwrap();
    assert_eq!(
        derive_key(&secret, None, "max", 255 * 32).unwrap().len(),
        8160
    );
    assert!(derive_key(&secret, None, "empty", 0).unwrap().is_empty());
    for len in [255 * 32 + 1, usize::MAX] {
        let err = derive_key(&secret, None, "too long", len).unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_KEY_DERIVATION_FAILED", "{len}");
    }
}

#[test]
fn a_pending_channel_shows_its_key_first_and_carries_json_messages() {
    let server = PendingChannel::new(Role::Server).unwrap();
    assert_eq!(server.role(), Role::Server);
    let server_public = server.public_key().clone();
    let mut client = create_encrypted_channel(Role::Client, &server_public).unwrap();
    let mut server = server
        .accept(client.public_key().expect("the client generated its key"))
        .unwrap();
    assert_eq!(server.public_key(), Some(&server_public));
    // Debug names the public key only.
    assert!(format!("{server:?}").contains(&server_public.to_base64()));

    let call = json!({"type": "tool_call", "name": "secretOp", "args": {}});
    let sealed = client.seal_json(&call).unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains("secretOp"));
    assert_eq!(server.open_json::<Value>(&sealed).unwrap(), call);
    let reply = server.seal_json(&json!({"ok": true})).unwrap();
    assert_eq!(client.open_json::<Value>(&reply).unwrap()["ok"], true);

    // Authentic bytes that are not the JSON asked for: refused without echoing plaintext.
    let sealed = client.seal(b"secret, not json").unwrap();
    let err = server.open_json::<Value>(&sealed).unwrap_err();
    assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED");
    assert!(!err.to_string().contains("secret"), "{err}");
    let sealed = client.seal_json(&json!("a string")).unwrap();
    assert!(server.open_json::<u32>(&sealed).is_err());
}

#[test]
fn seal_json_refuses_what_json_cannot_write_without_spending_a_nonce() {
    let server = PendingChannel::new(Role::Server).unwrap();
    let mut client = create_encrypted_channel(Role::Client, server.public_key()).unwrap();
    let mut server = server.accept(client.public_key().unwrap()).unwrap();
    let mut bad = std::collections::HashMap::new();
    bad.insert(vec![1u8], 1); // a map with non-string keys has no JSON form
    let err = client.seal_json(&bad).unwrap_err();
    assert_eq!(err.code(), "FRAME_ERROR", "{err}");
    assert!(
        format!("{client:?}").contains("messages_sealed: 0"),
        "{client:?}"
    );
    let sealed = client.seal_json(&json!(1)).unwrap();
    assert!(
        format!("{client:?}").contains("messages_sealed: 1"),
        "{client:?}"
    );
    assert_eq!(server.open_json::<u32>(&sealed).unwrap(), 1);
}

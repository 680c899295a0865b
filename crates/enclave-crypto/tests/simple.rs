//! The small API: whole messages under a shared secret, and the two-way channel.

use enclave_crypto::{
    create_encrypted_channel, decrypt, derive_key, derive_shared_secret, encrypt,
    generate_key_pair, EncryptedChannel, Role, NONCE_LEN, TAG_LEN,
};

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

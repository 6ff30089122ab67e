//! Sign/verify round trips for every key and signature algorithm, raw and
//! pre-hashed, and the errors of every misuse.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use skm_crypto::VerifyError;
use skm_crypto::asym::{AsymError, KeyAlgorithm, Message, PrivateKey, PublicKey, SignatureAlgorithm};

/// Two keys of every algorithm (RSA generation is the slow part: once per
/// test binary).
fn keys(alg: KeyAlgorithm) -> &'static [PrivateKey; 2] {
    static KEYS: OnceLock<Vec<(KeyAlgorithm, [PrivateKey; 2])>> = OnceLock::new();
    let all = KEYS.get_or_init(|| {
        KeyAlgorithm::ALL
            .into_iter()
            .map(|alg| (alg, [PrivateKey::generate(alg).unwrap(), PrivateKey::generate(alg).unwrap()]))
            .collect()
    });
    &all.iter().find(|(a, _)| *a == alg).unwrap().1
}

fn messages() -> Vec<Vec<u8>> {
    vec![Vec::new(), b"hello".to_vec(), vec![0xa5; 4096]]
}

fn modulus_len(alg: KeyAlgorithm) -> Option<usize> {
    match alg {
        KeyAlgorithm::Rsa2048 => Some(256),
        KeyAlgorithm::Rsa3072 => Some(384),
        KeyAlgorithm::Rsa4096 => Some(512),
        _ => None,
    }
}

fn assert_encoding(key_alg: KeyAlgorithm, sig: &[u8]) {
    match key_alg {
        KeyAlgorithm::Ed25519 => assert_eq!(sig.len(), 64),
        // SEQUENCE { INTEGER r, INTEGER s }, each at most 33 bytes.
        KeyAlgorithm::EcdsaP256 => {
            assert_eq!(sig[0], 0x30);
            assert_eq!(usize::from(sig[1]) + 2, sig.len());
            assert!((8..=72).contains(&sig.len()), "{}", sig.len());
        }
        // Each INTEGER at most 49 bytes, so the length still fits one byte.
        KeyAlgorithm::EcdsaP384 => {
            assert_eq!(sig[0], 0x30);
            assert_eq!(usize::from(sig[1]) + 2, sig.len());
            assert!((8..=104).contains(&sig.len()), "{}", sig.len());
        }
        // FIPS 204 table 2.
        KeyAlgorithm::MlDsa44 => assert_eq!(sig.len(), 2420),
        KeyAlgorithm::MlDsa65 => assert_eq!(sig.len(), 3309),
        KeyAlgorithm::MlDsa87 => assert_eq!(sig.len(), 4627),
        _ => assert_eq!(Some(sig.len()), modulus_len(key_alg)),
    }
}

#[test]
fn every_algorithm_pair_round_trips_raw_and_digest() {
    let mut checked = 0;
    for key_alg in KeyAlgorithm::ALL {
        let key = &keys(key_alg)[0];
        assert_eq!(key.algorithm(), key_alg);
        let public = key.public_key();
        assert_eq!(public.algorithm(), key_alg);
        for &sig_alg in key_alg.signature_algorithms() {
            for msg in messages() {
                let sig = key.sign(sig_alg, Message::Raw(&msg)).unwrap();
                assert_encoding(key_alg, &sig);
                assert_eq!(public.verify(sig_alg, Message::Raw(&msg), &sig), Ok(()));
                let Some(digest) = sig_alg.digest_of(&msg) else {
                    checked += 1;
                    continue;
                };
                // A signature over the message verifies against its digest and
                // a signature over the digest against the message.
                assert_eq!(public.verify(sig_alg, Message::Digest(&digest), &sig), Ok(()));
                let sig = key.sign(sig_alg, Message::Digest(&digest)).unwrap();
                assert_encoding(key_alg, &sig);
                assert_eq!(public.verify(sig_alg, Message::Raw(&msg), &sig), Ok(()));
                assert_eq!(public.verify(sig_alg, Message::Digest(&digest), &sig), Ok(()));
                checked += 1;
            }
        }
    }
    // ed25519, ecdsa-p256, 2 paddings × 3 RSA sizes, ecdsa-p384, 3 ML-DSA.
    assert_eq!(checked, 3 * (1 + 1 + 2 * 3 + 1 + 3));
}

#[test]
fn wrong_message_signature_or_key_fails_opaquely() {
    for key_alg in KeyAlgorithm::ALL {
        let [key, other] = keys(key_alg);
        let public = key.public_key();
        assert_ne!(public, other.public_key());
        for &sig_alg in key_alg.signature_algorithms() {
            let sig = key.sign(sig_alg, Message::Raw(b"message")).unwrap();
            assert_eq!(public.verify(sig_alg, Message::Raw(b"messagE"), &sig), Err(VerifyError));
            assert_eq!(other.public_key().verify(sig_alg, Message::Raw(b"message"), &sig), Err(VerifyError));
            for i in [0, sig.len() / 2, sig.len() - 1] {
                let mut bad = sig.clone();
                bad[i] ^= 0x01;
                assert_eq!(public.verify(sig_alg, Message::Raw(b"message"), &bad), Err(VerifyError), "{i}");
            }
            assert_eq!(public.verify(sig_alg, Message::Raw(b"message"), &sig[..sig.len() - 1]), Err(VerifyError));
            assert_eq!(
                public.verify(sig_alg, Message::Raw(b"message"), &[sig.clone(), vec![0]].concat()),
                Err(VerifyError)
            );
            assert_eq!(public.verify(sig_alg, Message::Raw(b"message"), &[]), Err(VerifyError));
            if let Some(wrong_digest) = sig_alg.digest_of(b"messagE") {
                assert_eq!(public.verify(sig_alg, Message::Digest(&wrong_digest), &sig), Err(VerifyError));
                assert_eq!(public.verify(sig_alg, Message::Digest(&[0u8; 31]), &sig), Err(VerifyError));
            }
        }
    }
}

#[test]
fn rsa_paddings_do_not_cross() {
    for key_alg in [KeyAlgorithm::Rsa2048, KeyAlgorithm::Rsa3072, KeyAlgorithm::Rsa4096] {
        let key = &keys(key_alg)[0];
        let public = key.public_key();
        let pss = key.sign(SignatureAlgorithm::RsaPssSha256, Message::Raw(b"m")).unwrap();
        let pkcs1 = key.sign(SignatureAlgorithm::RsaPkcs1Sha256, Message::Raw(b"m")).unwrap();
        assert_eq!(public.verify(SignatureAlgorithm::RsaPkcs1Sha256, Message::Raw(b"m"), &pss), Err(VerifyError));
        assert_eq!(public.verify(SignatureAlgorithm::RsaPssSha256, Message::Raw(b"m"), &pkcs1), Err(VerifyError));
        // PSS draws a fresh salt; PKCS#1 v1.5 is deterministic.
        assert_ne!(pss, key.sign(SignatureAlgorithm::RsaPssSha256, Message::Raw(b"m")).unwrap());
        assert_eq!(pkcs1, key.sign(SignatureAlgorithm::RsaPkcs1Sha256, Message::Raw(b"m")).unwrap());
    }
}

#[test]
fn wrong_algorithm_combination_is_refused() {
    let mut refused = 0;
    for key_alg in KeyAlgorithm::ALL {
        let key = &keys(key_alg)[0];
        let public = key.public_key();
        let good = key.sign(key_alg.default_signature_algorithm(), Message::Raw(b"m")).unwrap();
        for sig_alg in SignatureAlgorithm::ALL.into_iter().filter(|s| !key_alg.supports(*s)) {
            let expected = AsymError::WrongAlgorithm { key: key_alg.name(), signature: sig_alg.name() };
            assert_eq!(key.sign(sig_alg, Message::Raw(b"m")), Err(expected));
            assert_eq!(key.sign(sig_alg, Message::Digest(&[0u8; 32])), Err(expected));
            assert_eq!(public.verify(sig_alg, Message::Raw(b"m"), &good), Err(VerifyError));
            refused += 1;
        }
    }
    // Six signature algorithms: five refused by Ed25519, ECDSA and ML-DSA keys, four by RSA keys.
    assert_eq!(refused, 5 + 5 + 3 * 4 + 5 + 3 * 5);
    let err = keys(KeyAlgorithm::Rsa2048)[0].sign(SignatureAlgorithm::Ed25519, Message::Raw(b"m")).unwrap_err();
    assert_eq!(err.to_string(), "signature algorithm ed25519 does not fit a rsa-2048 key");
}

#[test]
fn ed25519_and_ml_dsa_refuse_digests() {
    let mut refused = 0;
    for key_alg in KeyAlgorithm::ALL {
        let sig_alg = key_alg.default_signature_algorithm();
        if sig_alg.digest().is_some() {
            continue;
        }
        let key = &keys(key_alg)[0];
        let digest = skm_crypto::sha256(b"m");
        let err = key.sign(sig_alg, Message::Digest(&digest)).unwrap_err();
        assert_eq!(err, AsymError::DigestNotSupported(key_alg.name()));
        assert_eq!(err.to_string(), format!("{} keys sign messages, not digests", key_alg.name()));
        let sig = key.sign(sig_alg, Message::Raw(b"m")).unwrap();
        assert_eq!(key.public_key().verify(sig_alg, Message::Digest(&digest), &sig), Err(VerifyError));
        // Not even a "digest" that is the message itself.
        assert_eq!(key.public_key().verify(sig_alg, Message::Digest(b"m"), &sig), Err(VerifyError));
        refused += 1;
    }
    assert_eq!(refused, 4);
}

#[test]
fn digests_must_have_their_hash_length() {
    for key_alg in KeyAlgorithm::ALL {
        let key = &keys(key_alg)[0];
        for &sig_alg in key_alg.signature_algorithms() {
            let Some((hash, expected)) = sig_alg.digest() else { continue };
            for got in [expected - 1, expected + 1, 0, if expected == 32 { 48 } else { 32 }] {
                assert_eq!(
                    key.sign(sig_alg, Message::Digest(&vec![0u8; got])),
                    Err(AsymError::DigestLength { hash, expected, got })
                );
            }
        }
    }
    let err = AsymError::DigestLength { hash: "SHA-384", expected: 48, got: 32 };
    assert_eq!(err.to_string(), "a SHA-384 digest is 48 bytes; got 32");
}

#[test]
fn pkcs8_round_trips() {
    for key_alg in KeyAlgorithm::ALL {
        let key = &keys(key_alg)[0];
        let loaded = PrivateKey::from_pkcs8(key_alg, key.danger_pkcs8()).unwrap();
        assert_eq!(loaded.algorithm(), key_alg);
        assert_eq!(loaded.public_key(), key.public_key());
        assert_eq!(loaded.danger_pkcs8(), key.danger_pkcs8());
        let sig = loaded.sign(key_alg.default_signature_algorithm(), Message::Raw(b"m")).unwrap();
        assert_eq!(key.public_key().verify(key_alg.default_signature_algorithm(), Message::Raw(b"m"), &sig), Ok(()));
    }
}

#[test]
fn pkcs8_of_another_algorithm_or_size_is_malformed() {
    for key_alg in KeyAlgorithm::ALL {
        let der = keys(key_alg)[0].danger_pkcs8();
        for claimed in KeyAlgorithm::ALL.into_iter().filter(|a| *a != key_alg) {
            assert_eq!(
                PrivateKey::from_pkcs8(claimed, der).map(|_| ()),
                Err(AsymError::Malformed),
                "{} given as {}",
                key_alg.name(),
                claimed.name()
            );
        }
        // Truncated and garbage input.
        assert_eq!(PrivateKey::from_pkcs8(key_alg, &der[..der.len() - 1]).map(|_| ()), Err(AsymError::Malformed));
        assert_eq!(PrivateKey::from_pkcs8(key_alg, b"not a key").map(|_| ()), Err(AsymError::Malformed));
        assert_eq!(PrivateKey::from_pkcs8(key_alg, &[]).map(|_| ()), Err(AsymError::Malformed));
    }
}

#[test]
fn spki_round_trips_and_is_tied_to_its_algorithm() {
    for key_alg in KeyAlgorithm::ALL {
        let public = keys(key_alg)[0].public_key();
        let der = public.spki_der();
        assert_eq!(der[0], 0x30);
        assert_eq!(PublicKey::from_spki_der(key_alg, der).unwrap(), public);
        for claimed in KeyAlgorithm::ALL.into_iter().filter(|a| *a != key_alg) {
            assert_eq!(PublicKey::from_spki_der(claimed, der), Err(AsymError::Malformed));
        }
        assert_eq!(PublicKey::from_spki_der(key_alg, &der[..der.len() - 1]), Err(AsymError::Malformed));
        // A PKCS#8 private key is not an SPKI.
        assert_eq!(PublicKey::from_spki_der(key_alg, keys(key_alg)[0].danger_pkcs8()), Err(AsymError::Malformed));
    }
}

#[test]
fn key_types_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<PrivateKey>();
    shareable::<PublicKey>();
}

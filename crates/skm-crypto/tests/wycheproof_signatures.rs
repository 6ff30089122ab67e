//! Wycheproof signature vectors through `PublicKey::from_spki_der` and
//! `PublicKey::verify`: Ed25519, ECDSA P-256/SHA-256 and P-384/SHA-384
//! (DER), RSA PSS/PKCS#1 v1.5 with SHA-256 for 2048, 3072 and 4096-bit keys,
//! and ML-DSA-44/65/87.
//!
//! Each case runs twice for ECDSA and RSA: over the message, and over its
//! digest, which must give the same answer. Ed25519 and ML-DSA must refuse
//! the digest form.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::Deserialize;
use skm_crypto::VerifyError;
use skm_crypto::asym::{KeyAlgorithm, Message, PublicKey, SignatureAlgorithm};

#[derive(Deserialize)]
struct File {
    #[serde(rename = "numberOfTests")]
    number_of_tests: usize,
    #[serde(rename = "testGroups")]
    groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    #[serde(rename = "publicKeyDer")]
    public_key_der: String,
    /// RSA groups only; Ed25519 and ECDSA keep it inside `publicKey`.
    #[serde(rename = "keySize")]
    key_size: Option<usize>,
    tests: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    #[serde(rename = "tcId")]
    id: u32,
    msg: String,
    sig: String,
    result: String,
    /// ML-DSA only: a context string; SKM signs with the empty one.
    #[serde(default)]
    ctx: Option<String>,
}

#[derive(Debug, Default)]
struct Tally {
    valid: usize,
    invalid: usize,
    acceptable: usize,
    skipped_groups: usize,
    rejected_keys: usize,
    with_context: usize,
}

impl Tally {
    fn ran(&self) -> usize {
        self.valid + self.invalid + self.acceptable
    }
}

fn run(json: &str, key_alg: KeyAlgorithm, sig_alg: SignatureAlgorithm) -> Tally {
    let file: File = serde_json::from_str(json).unwrap();
    let mut tally = Tally::default();
    let mut skipped_cases = 0;
    let rsa_bits = match key_alg {
        KeyAlgorithm::Rsa2048 => Some(2048),
        KeyAlgorithm::Rsa3072 => Some(3072),
        KeyAlgorithm::Rsa4096 => Some(4096),
        _ => None,
    };
    for group in &file.groups {
        if rsa_bits.is_some() && group.key_size != rsa_bits {
            // SKM has RSA-2048/3072/4096 only; a group of another size is
            // not something SKM can be asked about.
            tally.skipped_groups += 1;
            skipped_cases += group.tests.len();
            continue;
        }
        let der = hex::decode(&group.public_key_der).unwrap();
        let key = match PublicKey::from_spki_der(key_alg, &der) {
            Ok(key) => key,
            // A group whose key is not a key (ML-DSA's wrong-length public
            // keys): every case in it must be invalid.
            Err(e) => {
                for case in &group.tests {
                    assert_eq!(case.result, "invalid", "case {}: group key rejected: {e}", case.id);
                    tally.invalid += 1;
                }
                tally.rejected_keys += 1;
                continue;
            }
        };
        assert_eq!(key.spki_der(), &der[..], "SPKI re-encodes canonically");
        for case in &group.tests {
            if case.ctx.as_deref().is_some_and(|c| !c.is_empty()) {
                // SKM signs and verifies with the empty context only.
                skipped_cases += 1;
                tally.with_context += 1;
                continue;
            }
            let msg = hex::decode(&case.msg).unwrap();
            let sig = hex::decode(&case.sig).unwrap();
            let raw = key.verify(sig_alg, Message::Raw(&msg), &sig);
            match sig_alg.digest_of(&msg) {
                Some(digest) => {
                    let prehashed = key.verify(sig_alg, Message::Digest(&digest), &sig);
                    assert_eq!(raw, prehashed, "case {}: message and digest disagree", case.id);
                }
                None => {
                    let as_digest = key.verify(sig_alg, Message::Digest(&skm_crypto::sha256(&msg)), &sig);
                    assert_eq!(as_digest, Err(VerifyError), "case {}: verified a digest", case.id);
                }
            }
            match case.result.as_str() {
                "valid" => {
                    assert_eq!(raw, Ok(()), "case {} should verify", case.id);
                    tally.valid += 1;
                }
                "invalid" => {
                    assert_eq!(raw, Err(VerifyError), "case {} should fail", case.id);
                    tally.invalid += 1;
                }
                "acceptable" => tally.acceptable += 1,
                other => panic!("case {}: unknown result {other}", case.id),
            }
        }
    }
    assert_eq!(tally.ran() + skipped_cases, file.number_of_tests, "every case is counted");
    eprintln!("{} / {}: {tally:?}", key_alg.name(), sig_alg.name());
    tally
}

#[test]
fn ed25519() {
    let t = run(include_str!("wycheproof/ed25519_test.json"), KeyAlgorithm::Ed25519, SignatureAlgorithm::Ed25519);
    assert!(t.valid >= 80 && t.invalid >= 60, "{t:?}");
}

#[test]
fn ecdsa_p256_sha256_der() {
    let t = run(
        include_str!("wycheproof/ecdsa_secp256r1_sha256_test.json"),
        KeyAlgorithm::EcdsaP256,
        SignatureAlgorithm::EcdsaSha256,
    );
    assert!(t.valid >= 170 && t.invalid >= 300, "{t:?}");
}

#[test]
fn ecdsa_p384_sha384_der() {
    let t = run(
        include_str!("wycheproof/ecdsa_secp384r1_sha384_test.json"),
        KeyAlgorithm::EcdsaP384,
        SignatureAlgorithm::EcdsaSha384,
    );
    assert!(t.valid >= 150 && t.invalid >= 300, "{t:?}");
}

#[test]
fn ml_dsa_verify() {
    let files = [
        (KeyAlgorithm::MlDsa44, include_str!("wycheproof/mldsa_44_verify_test.json")),
        (KeyAlgorithm::MlDsa65, include_str!("wycheproof/mldsa_65_verify_test.json")),
        (KeyAlgorithm::MlDsa87, include_str!("wycheproof/mldsa_87_verify_test.json")),
    ];
    for (alg, json) in files {
        let t = run(json, alg, SignatureAlgorithm::MlDsa);
        assert!(t.valid >= 60 && t.invalid >= 80 && t.rejected_keys >= 1, "{}: {t:?}", alg.name());
    }
}

#[test]
fn rsa_pss_sha256_mgf1_salt32() {
    let files = [
        (KeyAlgorithm::Rsa2048, include_str!("wycheproof/rsa_pss_2048_sha256_mgf1_32_test.json")),
        (KeyAlgorithm::Rsa3072, include_str!("wycheproof/rsa_pss_3072_sha256_mgf1_32_test.json")),
        (KeyAlgorithm::Rsa4096, include_str!("wycheproof/rsa_pss_4096_sha256_mgf1_32_test.json")),
    ];
    for (alg, json) in files {
        let t = run(json, alg, SignatureAlgorithm::RsaPssSha256);
        assert!(t.valid >= 60 && t.invalid >= 40, "{}: {t:?}", alg.name());
    }
}

#[test]
fn rsa_pkcs1_sha256() {
    let files = [
        (KeyAlgorithm::Rsa2048, include_str!("wycheproof/rsa_signature_2048_sha256_test.json")),
        (KeyAlgorithm::Rsa3072, include_str!("wycheproof/rsa_signature_3072_sha256_test.json")),
        (KeyAlgorithm::Rsa4096, include_str!("wycheproof/rsa_signature_4096_sha256_test.json")),
    ];
    for (alg, json) in files {
        let t = run(json, alg, SignatureAlgorithm::RsaPkcs1Sha256);
        assert!(t.valid >= 7 && t.invalid >= 240, "{}: {t:?}", alg.name());
    }
}

/// A Wycheproof key read as the wrong algorithm or size is malformed.
#[test]
fn group_keys_are_tied_to_their_algorithm() {
    let file: File = serde_json::from_str(include_str!("wycheproof/rsa_pss_3072_sha256_mgf1_32_test.json")).unwrap();
    let der = hex::decode(&file.groups[0].public_key_der).unwrap();
    for wrong in KeyAlgorithm::ALL.into_iter().filter(|a| *a != KeyAlgorithm::Rsa3072) {
        assert_eq!(PublicKey::from_spki_der(wrong, &der), Err(skm_crypto::asym::AsymError::Malformed));
    }
    assert!(PublicKey::from_spki_der(KeyAlgorithm::Rsa3072, &der).is_ok());
    let file: File = serde_json::from_str(include_str!("wycheproof/ecdsa_secp384r1_sha384_test.json")).unwrap();
    let der = hex::decode(&file.groups[0].public_key_der).unwrap();
    for wrong in KeyAlgorithm::ALL.into_iter().filter(|a| *a != KeyAlgorithm::EcdsaP384) {
        assert_eq!(PublicKey::from_spki_der(wrong, &der), Err(skm_crypto::asym::AsymError::Malformed));
    }
    let file: File = serde_json::from_str(include_str!("wycheproof/mldsa_65_verify_test.json")).unwrap();
    let der = hex::decode(&file.groups[0].public_key_der).unwrap();
    for wrong in KeyAlgorithm::ALL.into_iter().filter(|a| *a != KeyAlgorithm::MlDsa65) {
        assert_eq!(PublicKey::from_spki_der(wrong, &der), Err(skm_crypto::asym::AsymError::Malformed));
    }
}

//! Wycheproof HMAC-SHA-256/384/512 vectors through `MacKey`.
//!
//! SKM makes and accepts only full-length tags and key material within
//! [`MacAlgorithm::key_lengths`]; the vectors' other groups check exactly
//! that: a key of a refused size is refused when made, and a truncated tag,
//! even a correct truncation, never verifies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::Deserialize;
use skm_crypto::VerifyError;
use skm_crypto::mac::{MacAlgorithm, MacKey};
use zeroize::Zeroizing;

#[derive(Deserialize)]
struct File {
    #[serde(rename = "numberOfTests")]
    number_of_tests: usize,
    #[serde(rename = "testGroups")]
    groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    #[serde(rename = "keySize")]
    key_size: usize,
    #[serde(rename = "tagSize")]
    tag_size: usize,
    tests: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    #[serde(rename = "tcId")]
    id: u32,
    key: String,
    msg: String,
    tag: String,
    result: String,
}

#[derive(Debug, Default)]
struct Tally {
    valid: usize,
    invalid: usize,
    refused_keys: usize,
    truncated: usize,
}

fn run(json: &str, alg: MacAlgorithm) -> Tally {
    let file: File = serde_json::from_str(json).unwrap();
    let mut tally = Tally::default();
    for group in &file.groups {
        for case in &group.tests {
            let key_bytes = hex::decode(&case.key).unwrap();
            assert_eq!(key_bytes.len() * 8, group.key_size);
            let msg = hex::decode(&case.msg).unwrap();
            let tag = hex::decode(&case.tag).unwrap();
            let key = match MacKey::from_bytes(alg, Zeroizing::new(key_bytes)) {
                Ok(key) => key,
                Err(_) => {
                    assert!(!alg.key_lengths().contains(&(group.key_size / 8)), "case {}", case.id);
                    tally.refused_keys += 1;
                    continue;
                }
            };
            let verified = key.verify(&msg, &tag);
            if group.tag_size / 8 != alg.tag_len() {
                assert_eq!(verified, Err(VerifyError), "case {}: a truncated tag verified", case.id);
                if case.result == "valid" {
                    // A correct truncation of SKM's own tag.
                    assert!(key.sign(&msg).starts_with(&tag), "case {}", case.id);
                }
                tally.truncated += 1;
                continue;
            }
            match case.result.as_str() {
                "valid" => {
                    assert_eq!(verified, Ok(()), "case {} should verify", case.id);
                    assert_eq!(key.sign(&msg), tag, "case {}: tag differs", case.id);
                    tally.valid += 1;
                }
                "invalid" => {
                    assert_eq!(verified, Err(VerifyError), "case {} should fail", case.id);
                    assert_ne!(key.sign(&msg), tag, "case {}", case.id);
                    tally.invalid += 1;
                }
                other => panic!("case {}: unexpected result {other}", case.id),
            }
        }
    }
    assert_eq!(tally.valid + tally.invalid + tally.refused_keys + tally.truncated, file.number_of_tests);
    eprintln!("{}: {tally:?}", alg.name());
    tally
}

#[test]
fn hmac_sha256() {
    let t = run(include_str!("wycheproof/hmac_sha256_test.json"), MacAlgorithm::HmacSha256);
    assert!(t.valid >= 25 && t.invalid >= 40 && t.refused_keys >= 6 && t.truncated >= 80, "{t:?}");
}

#[test]
fn hmac_sha384() {
    let t = run(include_str!("wycheproof/hmac_sha384_test.json"), MacAlgorithm::HmacSha384);
    assert!(t.valid >= 25 && t.invalid >= 40 && t.refused_keys >= 6 && t.truncated >= 80, "{t:?}");
}

#[test]
fn hmac_sha512() {
    let t = run(include_str!("wycheproof/hmac_sha512_test.json"), MacAlgorithm::HmacSha512);
    assert!(t.valid >= 25 && t.invalid >= 40 && t.refused_keys >= 3 && t.truncated >= 80, "{t:?}");
}

/// A second implementation (RustCrypto `hmac`) makes the same tags.
#[test]
fn rustcrypto_hmac_agrees() {
    use hmac::{KeyInit, Mac};
    for alg in MacAlgorithm::ALL {
        let key = MacKey::generate(alg).unwrap();
        for msg in [&b""[..], b"message", &[0x5a; 4096]] {
            let theirs = match alg {
                MacAlgorithm::HmacSha256 => {
                    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.danger_bytes()).unwrap();
                    m.update(msg);
                    m.finalize().into_bytes().to_vec()
                }
                MacAlgorithm::HmacSha384 => {
                    let mut m = hmac::Hmac::<sha2::Sha384>::new_from_slice(key.danger_bytes()).unwrap();
                    m.update(msg);
                    m.finalize().into_bytes().to_vec()
                }
                MacAlgorithm::HmacSha512 => {
                    let mut m = hmac::Hmac::<sha2::Sha512>::new_from_slice(key.danger_bytes()).unwrap();
                    m.update(msg);
                    m.finalize().into_bytes().to_vec()
                }
            };
            assert_eq!(key.sign(msg), theirs, "{}", alg.name());
            assert_eq!(key.verify(msg, &theirs), Ok(()));
        }
    }
}

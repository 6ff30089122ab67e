//! RSA-OAEP (SHA-256, MGF1-SHA-256) decryption keys: Wycheproof's vectors
//! (OpenSSL as the independent encryptor and decryptor is in
//! asym_openssl.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::Deserialize;
use skm_crypto::DecryptError;
use skm_crypto::rsa_oaep::{DecryptingKey, OaepKeySize};

#[derive(Deserialize)]
struct File {
    #[serde(rename = "numberOfTests")]
    number_of_tests: usize,
    #[serde(rename = "testGroups")]
    groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    #[serde(rename = "privateKeyPkcs8")]
    private_key_pkcs8: String,
    tests: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    #[serde(rename = "tcId")]
    id: u32,
    msg: String,
    ct: String,
    label: String,
    result: String,
}

fn run(json: &str, size: OaepKeySize) -> (usize, usize) {
    let file: File = serde_json::from_str(json).unwrap();
    let (mut valid, mut invalid, mut labelled) = (0, 0, 0);
    for group in &file.groups {
        let key = DecryptingKey::from_pkcs8(size, &hex::decode(&group.private_key_pkcs8).unwrap()).unwrap();
        for case in &group.tests {
            if !case.label.is_empty() {
                // SKM decrypts with the empty label only.
                labelled += 1;
                continue;
            }
            let ct = hex::decode(&case.ct).unwrap();
            let got = key.decrypt(&ct);
            match case.result.as_str() {
                "valid" => {
                    assert_eq!(&got.unwrap()[..], &hex::decode(&case.msg).unwrap()[..], "case {}", case.id);
                    valid += 1;
                }
                "invalid" => {
                    assert_eq!(got.map(|_| ()), Err(DecryptError), "case {}", case.id);
                    invalid += 1;
                }
                other => panic!("case {}: result {other}", case.id),
            }
        }
    }
    assert_eq!(valid + invalid + labelled, file.number_of_tests);
    (valid, invalid)
}

#[test]
fn wycheproof_rsa_oaep_2048_and_3072_sha256() {
    let (v, i) = run(include_str!("wycheproof/rsa_oaep_2048_sha256_mgf1sha256_test.json"), OaepKeySize::Rsa2048);
    assert!(v >= 10 && i >= 19, "{v} valid, {i} invalid");
    let (v, i) = run(include_str!("wycheproof/rsa_oaep_3072_sha256_mgf1sha256_test.json"), OaepKeySize::Rsa3072);
    assert!(v >= 10 && i >= 15, "{v} valid, {i} invalid");
}

//! Wycheproof AES key wrap with padding (RFC 5649) vectors through
//! `skm_crypto::import`, the second layer of BYOK's
//! RSA_AES_KEY_WRAP_SHA_256. SKM's wrapping keys are AES-256 only: the
//! 256-bit group runs; the 128/192-bit groups are refused as keys.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::Deserialize;
use skm_crypto::import::{UnwrapError, kwp_unwrap, kwp_wrap};

#[derive(Deserialize)]
struct File {
    #[serde(rename = "testGroups")]
    groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    #[serde(rename = "keySize")]
    key_size: usize,
    tests: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    #[serde(rename = "tcId")]
    id: u32,
    key: String,
    msg: String,
    ct: String,
    result: String,
}

#[test]
fn aes_256_kwp_vectors() {
    let file: File = serde_json::from_str(include_str!("wycheproof/aes_kwp_test.json")).unwrap();
    let (mut valid, mut invalid, mut other_sizes) = (0, 0, 0);
    for group in &file.groups {
        for case in &group.tests {
            let key = hex::decode(&case.key).unwrap();
            let msg = hex::decode(&case.msg).unwrap();
            let ct = hex::decode(&case.ct).unwrap();
            if group.key_size != 256 {
                assert_eq!(kwp_unwrap(&key, &ct).err(), Some(UnwrapError), "case {}: only AES-256 KEKs", case.id);
                other_sizes += 1;
                continue;
            }
            match case.result.as_str() {
                "valid" => {
                    assert_eq!(&kwp_unwrap(&key, &ct).unwrap()[..], &msg[..], "case {}", case.id);
                    assert_eq!(kwp_wrap(&key, &msg).unwrap(), ct, "case {}: wrapping is deterministic", case.id);
                    valid += 1;
                }
                "invalid" => {
                    assert_eq!(kwp_unwrap(&key, &ct).err(), Some(UnwrapError), "case {} unwrapped", case.id);
                    invalid += 1;
                }
                other => panic!("case {}: result {other}", case.id),
            }
        }
    }
    assert_eq!((valid + invalid, other_sizes), (94, 160), "every vector ran");
    assert!(valid > 20 && invalid > 20, "valid {valid}, invalid {invalid}");
}

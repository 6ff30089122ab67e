//! Wycheproof AES-GCM-SIV vectors (256-bit keys) through the same AEAD code
//! path as every SKM format.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::Deserialize;

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
    iv: String,
    aad: String,
    msg: String,
    ct: String,
    tag: String,
    result: String,
}

#[test]
fn aes_256_gcm_siv_wycheproof() {
    let file: File = serde_json::from_str(include_str!("wycheproof/aes_gcm_siv_test.json")).unwrap();
    let mut checked = 0;
    for group in file.groups.iter().filter(|g| g.key_size == 256) {
        for case in &group.tests {
            let key: [u8; 32] = hex::decode(&case.key).unwrap().try_into().unwrap();
            let Ok(iv) = <[u8; 12]>::try_from(hex::decode(&case.iv).unwrap()) else {
                // SKM only ever uses 96-bit nonces; other sizes must be invalid.
                assert_eq!(case.result, "invalid", "case {}", case.id);
                continue;
            };
            let aad = hex::decode(&case.aad).unwrap();
            let msg = hex::decode(&case.msg).unwrap();
            let sealed = [hex::decode(&case.ct).unwrap(), hex::decode(&case.tag).unwrap()].concat();
            let opened = skm_crypto::danger_kat::aes_256_gcm_siv_open(&key, &iv, &aad, &sealed);
            match case.result.as_str() {
                "valid" => {
                    assert_eq!(opened.as_deref(), Some(&msg[..]), "case {}", case.id);
                    let resealed = skm_crypto::danger_kat::aes_256_gcm_siv_seal(&key, &iv, &aad, &msg);
                    assert_eq!(resealed, sealed, "case {}", case.id);
                }
                "invalid" => assert!(opened.is_none(), "case {}", case.id),
                _ => {}
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} vectors checked");
}

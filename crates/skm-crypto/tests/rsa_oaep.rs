//! RSA-OAEP (SHA-256, MGF1-SHA-256) decryption keys: Wycheproof's vectors,
//! and OpenSSL as the independent encryptor and decryptor.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use skm_crypto::DecryptError;
use skm_crypto::rsa_oaep::{DecryptingKey, EncryptingKey, OaepKeySize};

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

/// Runs `openssl args…` in `dir`; whether it exited 0.
fn openssl(dir: &Path, args: &[&str]) -> bool {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line is needed (scripts/test installs it)");
    if !out.status.success() {
        eprintln!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    out.status.success()
}

const OAEP: [&str; 6] =
    ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256"];

#[test]
fn openssl_encrypts_to_the_exported_key_and_decrypts_skms_ciphertexts() {
    for size in OaepKeySize::ALL {
        let key = DecryptingKey::generate(size).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("pub.pem"), key.public().to_pem()).unwrap();
        std::fs::write(d.join("key.der"), key.danger_pkcs8()).unwrap();
        for msg in [&b""[..], b"a data key of 32 bytes, really..", &vec![0x5a; size.max_plaintext()]] {
            std::fs::write(d.join("msg"), msg).unwrap();
            let mut args = vec!["pkeyutl", "-encrypt", "-pubin", "-inkey", "pub.pem", "-in", "msg", "-out", "ct"];
            args.extend(OAEP);
            if msg.is_empty() {
                // OpenSSL 3.0's pkeyutl can't read an empty file; the unit
                // tests and Wycheproof cover empty plaintexts.
                continue;
            }
            assert!(openssl(d, &args), "{}", size.name());
            let ct = std::fs::read(d.join("ct")).unwrap();
            assert_eq!(ct.len(), size.modulus_len());
            assert_eq!(&key.decrypt(&ct).unwrap()[..], msg, "{}", size.name());
            // OpenSSL's padding with SHA-1 (its default) is not SKM's.
            let sha1 = [
                "pkeyutl",
                "-encrypt",
                "-pubin",
                "-inkey",
                "pub.pem",
                "-in",
                "msg",
                "-out",
                "ct1",
                "-pkeyopt",
                "rsa_padding_mode:oaep",
            ];
            assert!(openssl(d, &sha1));
            assert_eq!(key.decrypt(&std::fs::read(d.join("ct1")).unwrap()).map(|_| ()), Err(DecryptError));
            // And SKM's public-key encryption is what OpenSSL decrypts.
            std::fs::write(d.join("ours"), key.public().encrypt(msg).unwrap()).unwrap();
            let mut args =
                vec!["pkeyutl", "-decrypt", "-inkey", "key.der", "-keyform", "DER", "-in", "ours", "-out", "back"];
            args.extend(OAEP);
            assert!(openssl(d, &args));
            assert_eq!(std::fs::read(d.join("back")).unwrap(), msg);
        }
        // The PEM OpenSSL reads is the SPKI SKM parses back.
        assert!(openssl(d, &["pkey", "-pubin", "-in", "pub.pem", "-outform", "DER", "-out", "pub.der"]));
        let der = std::fs::read(d.join("pub.der")).unwrap();
        assert_eq!(EncryptingKey::from_spki_der(size, &der).unwrap().spki_der(), key.public().spki_der());
    }
}

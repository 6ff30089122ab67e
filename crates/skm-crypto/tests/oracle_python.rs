//! The user ciphertext format against an independent implementation:
//! `tests/oracles/aes_gcm_siv_oracle.py` builds and opens ciphertexts from
//! the documented layout with Python `cryptography`'s AES-GCM-SIV. Both
//! directions: what SKM seals, Python opens; what Python seals, SKM opens;
//! and since AES-GCM-SIV is deterministic for a given nonce, Python sealing
//! with the nonce SKM chose gives SKM's ciphertext byte for byte. Controls:
//! a wrong AAD, another key version in the header or a flipped tag byte is
//! refused on both sides.
//!
//! Python: `$SKM_PYTHON`, else the repository's `.venv-tests` (made by
//! `scripts/test`), else `python3` on the PATH; without Python and its
//! `cryptography` package the test fails, saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use skm_crypto::user::{self, Header, OVERHEAD};
use skm_crypto::{DecryptError, Id, Secret32};

fn oracle_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracles/aes_gcm_siv_oracle.py")
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SKM_PYTHON") {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-tests/bin/python3");
    if venv.exists() { venv } else { "python3".into() }
}

/// Runs the oracle on one request.
fn oracle(request: &Value) -> Value {
    let python = python();
    let mut child = Command::new(&python)
        .arg(oracle_script())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): install python3 with the cryptography package (scripts/test does)",
                python.display()
            )
        });
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python oracle failed ({}){}:\n{stderr}",
        out.status,
        if stderr.contains("No module named 'cryptography'") {
            "; install the cryptography package (scripts/test makes .venv-tests with it)"
        } else {
            ""
        }
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn key(seed: u8) -> (Secret32, String) {
    let mut raw: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(7).wrapping_add(seed)).collect();
    let hex = hex::encode(&raw);
    (Secret32::from_slice_wiping(&mut raw).unwrap(), hex)
}

/// (plaintext, caller AAD, key version) of each case: empty and block-edge
/// lengths, long AAD, the largest version.
fn cases() -> Vec<(Vec<u8>, Vec<u8>, u32)> {
    vec![
        (b"".to_vec(), b"".to_vec(), 1),
        (b"x".to_vec(), b"".to_vec(), 2),
        (vec![0xab; 15], b"orders".to_vec(), 3),
        (vec![0x00; 16], b"orders".to_vec(), 7),
        (vec![0x5a; 17], vec![0xff; 300], 0x0102_0304),
        ((0..=255u8).cycle().take(4096).collect(), b"tenant=42".to_vec(), u32::MAX),
    ]
}

#[test]
fn skm_ciphertexts_open_in_python_and_match_it_byte_for_byte() {
    let (k, k_hex) = key(1);
    let key_id = Id::generate().unwrap();
    let mut sealed = Vec::new();
    for (pt, aad, version) in cases() {
        let ct = user::encrypt(&k, Header { key_id, version }, &pt, &aad).unwrap();
        assert_eq!(ct.len(), OVERHEAD + pt.len());
        sealed.push((pt, aad, version, ct));
    }
    let mut decrypt = Vec::new();
    let mut encrypt = Vec::new();
    for (_, aad, version, ct) in &sealed {
        decrypt.push(json!({ "key": k_hex, "ciphertext": hex::encode(ct), "aad": hex::encode(aad) }));
        // Controls: another AAD; the header claiming another version; a flipped tag byte.
        let mut other_aad = aad.clone();
        other_aad.push(b'!');
        decrypt.push(json!({ "key": k_hex, "ciphertext": hex::encode(ct), "aad": hex::encode(&other_aad) }));
        let mut moved = ct.clone();
        moved[17..21].copy_from_slice(&version.wrapping_add(1).to_be_bytes());
        decrypt.push(json!({ "key": k_hex, "ciphertext": hex::encode(&moved), "aad": hex::encode(aad) }));
        let mut flipped = ct.clone();
        *flipped.last_mut().unwrap() ^= 0x01;
        decrypt.push(json!({ "key": k_hex, "ciphertext": hex::encode(&flipped), "aad": hex::encode(aad) }));
        // Python seals the same input with the nonce SKM picked.
        encrypt.push(json!({
            "key": k_hex,
            "key_id": hex::encode(key_id.as_bytes()),
            "version": version,
            "nonce": hex::encode(&ct[21..33]),
            "aad": hex::encode(aad),
            "plaintext": hex::encode(&sealed.iter().find(|s| &s.3 == ct).unwrap().0),
        }));
    }
    let answer = oracle(&json!({ "decrypt": decrypt, "encrypt": encrypt }));
    let opened = answer["decrypt"].as_array().unwrap();
    let remade = answer["encrypt"].as_array().unwrap();
    assert_eq!(opened.len(), 4 * sealed.len());
    assert_eq!(remade.len(), sealed.len());
    for (i, (pt, _, version, ct)) in sealed.iter().enumerate() {
        let [good, wrong_aad, moved, flipped] = [0, 1, 2, 3].map(|j| &opened[4 * i + j]);
        assert_eq!(good["plaintext"], hex::encode(pt), "case {i} (version {version}): {good}");
        for (what, r) in [("another AAD", wrong_aad), ("another version", moved), ("a flipped tag", flipped)] {
            assert_eq!(r["error"], "authentication failed", "case {i}: Python opened it with {what}: {r}");
        }
        assert_eq!(remade[i], hex::encode(ct), "case {i}: Python's ciphertext differs from SKM's");
    }
}

#[test]
fn python_ciphertexts_open_in_skm() {
    let (k, k_hex) = key(2);
    let key_id = Id::generate().unwrap();
    let encrypt: Vec<Value> = cases()
        .iter()
        .enumerate()
        .map(|(i, (pt, aad, version))| {
            json!({
                "key": k_hex,
                "key_id": hex::encode(key_id.as_bytes()),
                "version": version,
                "nonce": hex::encode([i as u8; 12]),
                "aad": hex::encode(aad),
                "plaintext": hex::encode(pt),
            })
        })
        .collect();
    let answer = oracle(&json!({ "encrypt": encrypt }));
    let made = answer["encrypt"].as_array().unwrap();
    assert_eq!(made.len(), cases().len());
    let (other_key, _) = key(3);
    for (i, ((pt, aad, version), ct)) in cases().iter().zip(made).enumerate() {
        let ct = hex::decode(ct.as_str().unwrap()).unwrap();
        assert_eq!(Header::parse(&ct).unwrap(), Header { key_id, version: *version }, "case {i}");
        assert_eq!(&user::decrypt(&k, &ct, aad).unwrap()[..], &pt[..], "case {i}");
        // Controls: SKM refuses another AAD, a moved version, a flipped tag, another key.
        let mut other_aad = aad.clone();
        other_aad.push(b'!');
        assert_eq!(user::decrypt(&k, &ct, &other_aad), Err(DecryptError), "case {i}");
        let mut moved = ct.clone();
        moved[17..21].copy_from_slice(&version.wrapping_add(1).to_be_bytes());
        assert_eq!(user::decrypt(&k, &moved, aad), Err(DecryptError), "case {i}");
        let mut flipped = ct.clone();
        *flipped.last_mut().unwrap() ^= 0x80;
        assert_eq!(user::decrypt(&k, &flipped, aad), Err(DecryptError), "case {i}");
        assert_eq!(user::decrypt(&other_key, &ct, aad), Err(DecryptError), "case {i}");
    }
}

//! Prints golden user ciphertexts for `tests/golden/user_ciphertext_v1.txt`:
//! `cargo run -p skm-crypto --example golden > crates/skm-crypto/tests/golden/user_ciphertext_v1.txt`.
//! Run it only when adding vectors; existing ones must keep decrypting.

#![allow(missing_docs, clippy::unwrap_used)]

use skm_crypto::user::{Header, encrypt};
use skm_crypto::{Id, Secret32};

fn main() {
    let mut raw: Vec<u8> = (0u8..32).collect();
    let key = Secret32::from_slice_wiping(&mut raw).unwrap();
    let key_id: Id = "00112233445566778899aabbccddeeff".parse().unwrap();
    let cases: &[(&str, u32, &str)] =
        &[("", 1, ""), ("postgres://app:s3cret@db/prod", 1, ""), ("with caller AAD", 7, "tenant=42")];
    println!("[");
    for (plaintext, version, aad) in cases {
        let header = Header { key_id, version: *version };
        let ct = encrypt(&key, header, plaintext.as_bytes(), aad.as_bytes()).unwrap();
        let hex: String = ct.iter().map(|b| format!("{b:02x}")).collect();
        println!("    (\"{hex}\", \"{aad}\", \"{key_id}\", {version}, \"{plaintext}\"),");
    }
    println!("]");
}

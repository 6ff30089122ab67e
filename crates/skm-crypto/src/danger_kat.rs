//! Raw AES-256-GCM-SIV with a caller-chosen nonce, for known-answer tests
//! (Wycheproof) only.
//!
//! Danger: SKM's own formats never let a caller choose a nonce; these
//! functions exist so that the vectors exercise the same AEAD code path.

use crate::{Secret32, aead};

/// Seals `msg`, returning `ciphertext | tag` (without the nonce).
pub fn aes_256_gcm_siv_seal(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut raw = *key;
    let Some(key) = Secret32::from_slice_wiping(&mut raw) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if aead::seal_with_nonce_into(&key, nonce, aad, msg, &mut out).is_err() {
        return Vec::new();
    }
    out.split_off(aead::NONCE_LEN)
}

/// Opens `ciphertext | tag`; `None` on any failure.
pub fn aes_256_gcm_siv_open(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let mut raw = *key;
    let key = Secret32::from_slice_wiping(&mut raw)?;
    let framed = [&nonce[..], sealed].concat();
    aead::open(&key, aad, &framed).ok().map(|p| p.to_vec())
}

//! AES-256-GCM-SIV with a random 96-bit nonce, the AEAD behind every format
//! of this crate. GCM-SIV keeps confidentiality (bar equality of identical
//! messages) even if a nonce ever repeats.

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};

use crate::{DecryptError, EncryptError, Secret32};

pub(crate) const NONCE_LEN: usize = 12;
pub(crate) const TAG_LEN: usize = 16;

/// Encrypts `plaintext` and appends `nonce | ciphertext+tag` to `out`.
pub(crate) fn seal_into(key: &Secret32, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), EncryptError> {
    let nonce_bytes: [u8; NONCE_LEN] = crate::random_array()?;
    seal_with_nonce_into(key, &nonce_bytes, aad, plaintext, out)
}

/// As [`seal_into`] with a caller-chosen nonce. Only [`seal_into`] calls it
/// outside tests: production code always draws a fresh random nonce.
pub(crate) fn seal_with_nonce_into(
    key: &Secret32,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncryptError> {
    let cipher = Aes256GcmSiv::new(key.danger_expose().into());
    let nonce = Nonce::from(*nonce);
    let sealed = cipher.encrypt(&nonce, Payload { msg: plaintext, aad }).map_err(|_| EncryptError)?;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(())
}

/// Opens `nonce | ciphertext+tag`.
pub(crate) fn open(key: &Secret32, aad: &[u8], sealed: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, DecryptError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(DecryptError);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_from(nonce).map_err(|_| DecryptError)?;
    let cipher = Aes256GcmSiv::new(key.danger_expose().into());
    cipher.decrypt(&nonce, Payload { msg: body, aad }).map(zeroize::Zeroizing::new).map_err(|_| DecryptError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let key = Secret32::generate().unwrap();
        let mut sealed = Vec::new();
        seal_into(&key, b"aad", b"hello", &mut sealed).unwrap();
        assert_eq!(&open(&key, b"aad", &sealed).unwrap()[..], b"hello");
        assert_eq!(open(&key, b"other", &sealed), Err(DecryptError));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(open(&key, b"aad", &sealed), Err(DecryptError));
        assert_eq!(open(&key, b"aad", &sealed[..10]), Err(DecryptError));
    }
}

//! The user ciphertext format: a public, versioned contract.
//!
//! ```text
//! format(1) = 0x01 | key id(16) | key version(u32 BE) | nonce(12) | ciphertext+tag(16)
//! ```
//!
//! The AEAD is AES-256-GCM-SIV under the key version's material with
//! AAD = header (the first 21 bytes) ‖ caller AAD, so a ciphertext can't be
//! replayed under another key or version, nor with other caller AAD.

use zeroize::Zeroizing;

use crate::aead::{self, NONCE_LEN, TAG_LEN};
use crate::{DecryptError, EncryptError, Id, Secret32};

/// The only format byte defined so far.
pub const FORMAT_V1: u8 = 0x01;
/// Bytes of `format | key id | key version`.
pub const HEADER_LEN: usize = 1 + 16 + 4;
/// Bytes a ciphertext adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// What a ciphertext says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The key it was made with.
    pub key_id: Id,
    /// The key version it was made with.
    pub version: u32,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = FORMAT_V1;
        out[1..17].copy_from_slice(self.key_id.as_bytes());
        out[17..21].copy_from_slice(&self.version.to_be_bytes());
        out
    }

    /// Reads the header of a ciphertext. Anything that isn't a well-formed
    /// v1 ciphertext is the opaque [`DecryptError`].
    pub fn parse(ciphertext: &[u8]) -> Result<Self, DecryptError> {
        if ciphertext.len() < OVERHEAD || ciphertext[0] != FORMAT_V1 {
            return Err(DecryptError);
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&ciphertext[1..17]);
        let mut version = [0u8; 4];
        version.copy_from_slice(&ciphertext[17..21]);
        Ok(Self { key_id: Id::from_bytes(id), version: u32::from_be_bytes(version) })
    }
}

/// Encrypts `plaintext` under one version of an AES-256-GCM-SIV user key.
pub fn encrypt(key: &Secret32, header: Header, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, EncryptError> {
    let head = header.encode();
    let full_aad = [&head[..], aad].concat();
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.extend_from_slice(&head);
    aead::seal_into(key, &full_aad, plaintext, &mut out)?;
    Ok(out)
}

/// Decrypts a ciphertext whose header the caller has parsed and whose key
/// version it has looked up.
pub fn decrypt(key: &Secret32, ciphertext: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    Header::parse(ciphertext)?;
    let (head, sealed) = ciphertext.split_at(HEADER_LEN);
    let full_aad = [head, aad].concat();
    aead::open(key, &full_aad, sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed_key() -> Secret32 {
        let mut raw: Vec<u8> = (0u8..32).collect();
        Secret32::from_slice_wiping(&mut raw).unwrap()
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn round_trip_with_header() {
        let key = Secret32::generate().unwrap();
        let header = Header { key_id: Id::generate().unwrap(), version: 3 };
        let ct = encrypt(&key, header, b"secret", b"ctx").unwrap();
        assert_eq!(ct.len(), OVERHEAD + 6);
        assert_eq!(Header::parse(&ct).unwrap(), header);
        assert_eq!(&decrypt(&key, &ct, b"ctx").unwrap()[..], b"secret");
    }

    #[test]
    fn every_tampering_is_the_same_error() {
        let key = Secret32::generate().unwrap();
        let header = Header { key_id: Id::generate().unwrap(), version: 1 };
        let ct = encrypt(&key, header, b"secret", b"").unwrap();
        // wrong AAD
        assert_eq!(decrypt(&key, &ct, b"x"), Err(DecryptError));
        // header moved to another version or key
        let mut other_version = ct.clone();
        other_version[20] ^= 1;
        assert_eq!(decrypt(&key, &other_version, b""), Err(DecryptError));
        let mut other_key = ct.clone();
        other_key[5] ^= 1;
        assert_eq!(decrypt(&key, &other_key, b""), Err(DecryptError));
        // unknown format, truncated, empty
        let mut other_format = ct.clone();
        other_format[0] = 2;
        assert_eq!(decrypt(&key, &other_format, b""), Err(DecryptError));
        assert_eq!(decrypt(&key, &ct[..OVERHEAD - 1], b""), Err(DecryptError));
        assert_eq!(decrypt(&key, &[], b""), Err(DecryptError));
        // another key
        let other = Secret32::generate().unwrap();
        assert_eq!(decrypt(&other, &ct, b""), Err(DecryptError));
    }

    /// Golden vectors: ciphertexts made once by
    /// `cargo run -p skm-crypto --example golden` with the fixed key 00..1f.
    /// They must keep decrypting forever; a format change breaks this test.
    #[test]
    fn golden_vectors_keep_decrypting() {
        let golden: &[(&str, &str, &str, u32, &str)] = &include!("../tests/golden/user_ciphertext_v1.txt");
        for (ct_hex, aad, key_id, version, plaintext) in golden {
            let ct = hex(ct_hex);
            let header = Header::parse(&ct).unwrap();
            assert_eq!(header.key_id.to_string(), *key_id);
            assert_eq!(header.version, *version);
            let pt = decrypt(&fixed_key(), &ct, aad.as_bytes()).unwrap();
            assert_eq!(&pt[..], plaintext.as_bytes());
        }
    }
}

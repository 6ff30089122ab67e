//! HMAC keys: HMAC-SHA-256/384/512 (RFC 2104, FIPS 198-1) on aws-lc-rs.
//!
//! A [`MacKey`] keeps its raw bytes (zeroizing, for sealing into an
//! encrypted record) and the key parsed once for the backend. Tags are the
//! full hash output (32 / 48 / 64 bytes): SKM makes no truncated tags and
//! [`MacKey::verify`] accepts none, so a tag's length says nothing an
//! attacker can use. Verification compares in constant time.
//!
//! Generated keys are as long as the hash output; imported key material may
//! be up to the hash's block size (64 bytes for SHA-256, 128 for SHA-384 and
//! SHA-512), as AWS KMS allows.

use std::fmt;

use aws_lc_rs::hmac;
use zeroize::Zeroizing;

use crate::VerifyError;

/// HMAC algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MacAlgorithm {
    /// HMAC with SHA-256.
    HmacSha256,
    /// HMAC with SHA-384.
    HmacSha384,
    /// HMAC with SHA-512.
    HmacSha512,
}

impl MacAlgorithm {
    /// Every MAC algorithm, in a stable order.
    pub const ALL: [MacAlgorithm; 3] = [MacAlgorithm::HmacSha256, MacAlgorithm::HmacSha384, MacAlgorithm::HmacSha512];

    /// The name used in the API, the CLI and records: `hmac-sha256`,
    /// `hmac-sha384`, `hmac-sha512`.
    pub fn name(self) -> &'static str {
        match self {
            MacAlgorithm::HmacSha256 => "hmac-sha256",
            MacAlgorithm::HmacSha384 => "hmac-sha384",
            MacAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }

    /// The algorithm of a [`name`](Self::name); `None` for anything else.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == s)
    }

    /// Length of a tag, and of a generated key, in bytes.
    pub fn tag_len(self) -> usize {
        match self {
            MacAlgorithm::HmacSha256 => 32,
            MacAlgorithm::HmacSha384 => 48,
            MacAlgorithm::HmacSha512 => 64,
        }
    }

    /// The key lengths accepted for imported material: from the tag length
    /// up to the hash's block size.
    pub fn key_lengths(self) -> std::ops::RangeInclusive<usize> {
        match self {
            MacAlgorithm::HmacSha256 => 32..=64,
            MacAlgorithm::HmacSha384 => 48..=128,
            MacAlgorithm::HmacSha512 => 64..=128,
        }
    }

    fn backend(self) -> hmac::Algorithm {
        match self {
            MacAlgorithm::HmacSha256 => hmac::HMAC_SHA256,
            MacAlgorithm::HmacSha384 => hmac::HMAC_SHA384,
            MacAlgorithm::HmacSha512 => hmac::HMAC_SHA512,
        }
    }
}

/// Why a MAC key could not be made.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
pub enum MacError {
    /// Key material of a length the algorithm does not take.
    #[error("{algorithm} key material is {min}–{max} bytes; got {got}")]
    KeyLength {
        /// The algorithm's name.
        algorithm: &'static str,
        /// Shortest accepted.
        min: usize,
        /// Longest accepted.
        max: usize,
        /// The length given.
        got: usize,
    },
    /// The random number generator failed.
    #[error("key generation failed")]
    Crypto,
}

/// An HMAC key: zeroized on drop, redacted `Debug`, not `Clone`, not
/// serialisable.
pub struct MacKey {
    algorithm: MacAlgorithm,
    bytes: Zeroizing<Vec<u8>>,
    key: hmac::Key,
}

impl MacKey {
    /// A fresh key of the algorithm's tag length from the operating system's
    /// CSPRNG.
    pub fn generate(algorithm: MacAlgorithm) -> Result<Self, MacError> {
        let mut bytes = Zeroizing::new(vec![0u8; algorithm.tag_len()]);
        crate::fill_random(&mut bytes).map_err(|_| MacError::Crypto)?;
        Self::from_bytes(algorithm, bytes)
    }

    /// Takes key material (read back from a record, or imported), checking
    /// its length against [`MacAlgorithm::key_lengths`].
    pub fn from_bytes(algorithm: MacAlgorithm, bytes: Zeroizing<Vec<u8>>) -> Result<Self, MacError> {
        let lengths = algorithm.key_lengths();
        if !lengths.contains(&bytes.len()) {
            return Err(MacError::KeyLength {
                algorithm: algorithm.name(),
                min: *lengths.start(),
                max: *lengths.end(),
                got: bytes.len(),
            });
        }
        let key = hmac::Key::new(algorithm.backend(), &bytes);
        Ok(Self { algorithm, bytes, key })
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> MacAlgorithm {
        self.algorithm
    }

    /// The raw key material.
    ///
    /// Danger: the only callers are the code that seals it into an
    /// encrypted record, and tests; it never leaves SKM.
    pub fn danger_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The full-length tag of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        hmac::sign(&self.key, message).as_ref().to_vec()
    }

    /// Checks a full-length `tag` over `message` in constant time. Every
    /// failure (wrong tag, wrong length, wrong message) is the opaque
    /// [`VerifyError`].
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> Result<(), VerifyError> {
        if tag.len() != self.algorithm.tag_len() {
            return Err(VerifyError);
        }
        hmac::verify(&self.key, message, tag).map_err(|_| VerifyError)
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacKey({}, <redacted>)", self.algorithm.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sizes() {
        for alg in MacAlgorithm::ALL {
            assert_eq!(MacAlgorithm::from_name(alg.name()), Some(alg));
            let key = MacKey::generate(alg).unwrap();
            assert_eq!(key.danger_bytes().len(), alg.tag_len());
            assert_eq!(key.sign(b"m").len(), alg.tag_len());
        }
        assert_eq!(MacAlgorithm::from_name("hmac-sha1"), None);
    }

    #[test]
    fn verify_refuses_wrong_and_truncated_tags() {
        for alg in MacAlgorithm::ALL {
            let key = MacKey::generate(alg).unwrap();
            let tag = key.sign(b"message");
            assert_eq!(key.verify(b"message", &tag), Ok(()));
            assert_eq!(key.verify(b"messagf", &tag), Err(VerifyError));
            assert_eq!(key.verify(b"message", &tag[..tag.len() - 1]), Err(VerifyError));
            assert_eq!(key.verify(b"message", &[]), Err(VerifyError));
            let mut flipped = tag.clone();
            flipped[0] ^= 1;
            assert_eq!(key.verify(b"message", &flipped), Err(VerifyError));
            let other = MacKey::generate(alg).unwrap();
            assert_eq!(other.verify(b"message", &tag), Err(VerifyError));
        }
    }

    #[test]
    fn key_lengths_are_checked() {
        let err = MacKey::from_bytes(MacAlgorithm::HmacSha256, Zeroizing::new(vec![0; 31])).unwrap_err();
        assert_eq!(err.to_string(), "hmac-sha256 key material is 32–64 bytes; got 31");
        assert!(MacKey::from_bytes(MacAlgorithm::HmacSha256, Zeroizing::new(vec![0; 65])).is_err());
        assert!(MacKey::from_bytes(MacAlgorithm::HmacSha512, Zeroizing::new(vec![0; 128])).is_ok());
        assert!(MacKey::from_bytes(MacAlgorithm::HmacSha384, Zeroizing::new(vec![0; 47])).is_err());
    }

    #[test]
    fn debug_is_redacted() {
        let key = MacKey::generate(MacAlgorithm::HmacSha384).unwrap();
        assert_eq!(format!("{key:?}"), "MacKey(hmac-sha384, <redacted>)");
    }
}

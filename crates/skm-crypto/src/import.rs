//! How key material travels into SKM (bring your own key), as AWS KMS's
//! import does: SKM hands out a fresh RSA wrapping public key; the owner of
//! the material encrypts it to that key and sends the result back.
//!
//! - [`WrappingAlgorithm::RsaesOaepSha256`]: the material itself is
//!   RSAES-OAEP (SHA-256, MGF1-SHA-256, empty label) ciphertext. It carries
//!   at most [`OaepKeySize::max_plaintext`] bytes: AES and HMAC keys,
//!   Ed25519 and ECDSA PKCS#8.
//! - [`WrappingAlgorithm::RsaAesKeyWrapSha256`] (AWS
//!   `RSA_AES_KEY_WRAP_SHA_256`): a fresh AES-256 key as RSAES-OAEP
//!   ciphertext, followed by the material wrapped under that AES key with
//!   AES key wrap with padding (RFC 5649, NIST SP 800-38F KWP). For any
//!   material, RSA private keys too.
//!
//! Unwrapping has one opaque error ([`UnwrapError`]) for every failure,
//! whichever layer it is in, so it tells a caller nothing about the
//! plaintext.

use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
use zeroize::Zeroizing;

use crate::rsa_oaep::{DecryptingKey, EncryptingKey, OaepKeySize};

/// Most bytes of key material an import takes (RSA-4096 PKCS#8 is about
/// 2,400).
pub const MAX_MATERIAL: usize = 4096;

/// How the key material is wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WrappingAlgorithm {
    /// RSAES-OAEP-SHA-256 of the material itself.
    RsaesOaepSha256,
    /// RSAES-OAEP-SHA-256 of a fresh AES-256 key, then the material under
    /// AES-KWP with that key.
    RsaAesKeyWrapSha256,
}

impl WrappingAlgorithm {
    /// Every algorithm.
    pub const ALL: [Self; 2] = [Self::RsaesOaepSha256, Self::RsaAesKeyWrapSha256];

    /// Stable name used in records and output.
    pub fn name(self) -> &'static str {
        match self {
            Self::RsaesOaepSha256 => "rsaes-oaep-sha256",
            Self::RsaAesKeyWrapSha256 => "rsa-aes-key-wrap-sha256",
        }
    }

    /// Inverse of [`WrappingAlgorithm::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }

    /// The most bytes of material it carries under a wrapping key of
    /// `size`.
    pub fn max_material(self, size: OaepKeySize) -> usize {
        match self {
            Self::RsaesOaepSha256 => size.max_plaintext().min(MAX_MATERIAL),
            Self::RsaAesKeyWrapSha256 => MAX_MATERIAL,
        }
    }

    /// The algorithm that carries `len` bytes under a key of `size`: plain
    /// OAEP when it fits, as AWS recommends, else OAEP + AES-KWP.
    pub fn for_material(len: usize, size: OaepKeySize) -> Self {
        if len <= Self::RsaesOaepSha256.max_material(size) { Self::RsaesOaepSha256 } else { Self::RsaAesKeyWrapSha256 }
    }
}

/// An import token: 32 random bytes that bind an import to the parameters
/// (wrapping key) it was made for. Compared in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct ImportToken([u8; 32]);

impl ImportToken {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// A fresh token from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, crate::RngError> {
        let mut bytes = [0u8; 32];
        crate::fill_random(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// A token as stored; `None` unless 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The bytes handed to the client.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `given` is this token (constant time in its contents).
    pub fn matches(&self, given: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        given.len() == Self::LEN && bool::from(self.0.ct_eq(given))
    }
}

impl std::fmt::Debug for ImportToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImportToken(<redacted>)")
    }
}

/// Wrapping key sizes SKM hands out.
pub const WRAPPING_KEY_SIZES: [OaepKeySize; 2] = [OaepKeySize::Rsa3072, OaepKeySize::Rsa4096];

/// The wrapped material does not unwrap: one error for every cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the wrapped key material does not unwrap under this import's wrapping key")]
pub struct UnwrapError;

/// The material could not be wrapped: too long for the algorithm, or the
/// random source failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("key material of {len} bytes can't be wrapped with {algorithm} (at most {max} bytes)")]
pub struct WrapError {
    /// The algorithm.
    pub algorithm: &'static str,
    /// The material's length.
    pub len: usize,
    /// The most it carries.
    pub max: usize,
}

/// Unwraps `wrapped` with the import's private wrapping key.
pub fn unwrap(
    key: &DecryptingKey,
    algorithm: WrappingAlgorithm,
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>, UnwrapError> {
    match algorithm {
        WrappingAlgorithm::RsaesOaepSha256 => key.decrypt(wrapped).map_err(|_| UnwrapError),
        WrappingAlgorithm::RsaAesKeyWrapSha256 => {
            let split = key.size().modulus_len();
            if wrapped.len() <= split {
                return Err(UnwrapError);
            }
            let (rsa, kwp) = wrapped.split_at(split);
            let kek = key.decrypt(rsa).map_err(|_| UnwrapError)?;
            kwp_unwrap(&kek, kwp)
        }
    }
}

/// Wraps `material` for the holder of `key` (what a client does; SKM's own
/// CLI uses it).
pub fn wrap(key: &EncryptingKey, algorithm: WrappingAlgorithm, material: &[u8]) -> Result<Vec<u8>, WrapError> {
    let max = algorithm.max_material(key.size());
    let refused = WrapError { algorithm: algorithm.name(), len: material.len(), max };
    if material.is_empty() || material.len() > max {
        return Err(refused);
    }
    match algorithm {
        WrappingAlgorithm::RsaesOaepSha256 => key.encrypt(material).map_err(|_| refused),
        WrappingAlgorithm::RsaAesKeyWrapSha256 => {
            let mut kek = Zeroizing::new([0u8; 32]);
            crate::fill_random(&mut kek[..]).map_err(|_| refused)?;
            let mut out = key.encrypt(&kek[..]).map_err(|_| refused)?;
            out.extend_from_slice(&kwp_wrap(&kek[..], material).map_err(|_| refused)?);
            Ok(out)
        }
    }
}

/// AES-256 key wrap with padding (RFC 5649) of `plaintext` (1..=
/// [`MAX_MATERIAL`] bytes) under `kek` (32 bytes).
pub fn kwp_wrap(kek: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, UnwrapError> {
    if plaintext.is_empty() || plaintext.len() > MAX_MATERIAL {
        return Err(UnwrapError);
    }
    let kek = AesKek::new(&AES_256, kek).map_err(|_| UnwrapError)?;
    // The padded length rounded up to 8, plus the 8-byte integrity block.
    let mut out = vec![0u8; plaintext.len().div_ceil(8) * 8 + 8];
    let len = kek.wrap_with_padding(plaintext, &mut out).map_err(|_| UnwrapError)?.len();
    out.truncate(len);
    Ok(out)
}

/// The inverse of [`kwp_wrap`]; every failure (wrong key, altered
/// ciphertext, bad length or padding) is [`UnwrapError`].
pub fn kwp_unwrap(kek: &[u8], ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, UnwrapError> {
    if ciphertext.len() < 16 || ciphertext.len() > MAX_MATERIAL + 16 {
        return Err(UnwrapError);
    }
    let kek = AesKek::new(&AES_256, kek).map_err(|_| UnwrapError)?;
    let mut out = Zeroizing::new(vec![0u8; ciphertext.len()]);
    let len = kek.unwrap_with_padding(ciphertext, &mut out).map_err(|_| UnwrapError)?.len();
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_algorithms_round_trip_and_refuse_alteration() {
        let key = DecryptingKey::generate(OaepKeySize::Rsa3072).unwrap();
        for (algorithm, len) in [
            (WrappingAlgorithm::RsaesOaepSha256, 32),
            (WrappingAlgorithm::RsaesOaepSha256, OaepKeySize::Rsa3072.max_plaintext()),
            (WrappingAlgorithm::RsaAesKeyWrapSha256, 1),
            (WrappingAlgorithm::RsaAesKeyWrapSha256, 2375),
            (WrappingAlgorithm::RsaAesKeyWrapSha256, MAX_MATERIAL),
        ] {
            let material: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let wrapped = wrap(key.public(), algorithm, &material).unwrap();
            assert_eq!(&unwrap(&key, algorithm, &wrapped).unwrap()[..], &material[..], "{algorithm:?} {len}");
            for at in [0, wrapped.len() - 1] {
                let mut bad = wrapped.clone();
                bad[at] ^= 1;
                assert_eq!(unwrap(&key, algorithm, &bad), Err(UnwrapError), "{algorithm:?} {len} flipped at {at}");
            }
            assert_eq!(unwrap(&key, algorithm, &wrapped[..wrapped.len() - 8]), Err(UnwrapError));
        }
        let other = WrappingAlgorithm::RsaAesKeyWrapSha256;
        let wrapped = wrap(key.public(), WrappingAlgorithm::RsaesOaepSha256, &[7; 32]).unwrap();
        assert_eq!(unwrap(&key, other, &wrapped), Err(UnwrapError), "OAEP alone is not OAEP + KWP");
    }

    #[test]
    fn tokens_match_only_themselves() {
        let token = ImportToken::generate().unwrap();
        assert!(token.matches(token.as_bytes()));
        let mut other = *token.as_bytes();
        other[31] ^= 1;
        assert!(!token.matches(&other));
        assert!(!token.matches(&token.as_bytes()[..31]));
        assert_ne!(ImportToken::generate().unwrap(), token);
        assert_eq!(ImportToken::from_slice(token.as_bytes()), Some(token));
    }

    #[test]
    fn wrapping_refuses_what_the_algorithm_cannot_carry() {
        let key = DecryptingKey::generate(OaepKeySize::Rsa3072).unwrap();
        let max = OaepKeySize::Rsa3072.max_plaintext();
        let e = wrap(key.public(), WrappingAlgorithm::RsaesOaepSha256, &vec![1; max + 1]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("key material of {} bytes can't be wrapped with rsaes-oaep-sha256 (at most {max} bytes)", max + 1)
        );
        assert!(wrap(key.public(), WrappingAlgorithm::RsaAesKeyWrapSha256, &vec![1; MAX_MATERIAL + 1]).is_err());
        assert!(wrap(key.public(), WrappingAlgorithm::RsaAesKeyWrapSha256, &[]).is_err());
        assert_eq!(WrappingAlgorithm::for_material(max, OaepKeySize::Rsa3072), WrappingAlgorithm::RsaesOaepSha256);
        assert_eq!(
            WrappingAlgorithm::for_material(max + 1, OaepKeySize::Rsa3072),
            WrappingAlgorithm::RsaAesKeyWrapSha256
        );
        for a in WrappingAlgorithm::ALL {
            assert_eq!(WrappingAlgorithm::from_name(a.name()), Some(a));
        }
    }
}

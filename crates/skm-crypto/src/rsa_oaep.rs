//! RSA encryption keys: RSAES-OAEP with SHA-256 and MGF1-SHA-256, empty
//! label, RSA-2048/3072/4096 on aws-lc-rs (ADR 0001's backend).
//!
//! The public key is exported (an SPKI, `rsaEncryption`) and anyone
//! encrypts locally, e.g. `openssl pkeyutl -encrypt -pkeyopt
//! rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt
//! rsa_mgf1_md:sha256`; only SKM decrypts. A ciphertext is exactly the
//! modulus length; a plaintext at most the modulus length minus 66 bytes
//! (190 / 318 / 446).
//!
//! No padding oracle: every decryption failure (wrong length, wrong key,
//! bad padding) is the one opaque [`DecryptError`], and AWS-LC checks OAEP
//! padding in constant time, so neither the answer nor its timing says
//! which check failed.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey,
};
use zeroize::Zeroizing;

use crate::asym::AsymError;
use crate::{DecryptError, EncryptError};

/// The sizes of RSA encryption keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OaepKeySize {
    /// 2048-bit modulus.
    Rsa2048,
    /// 3072-bit modulus.
    Rsa3072,
    /// 4096-bit modulus.
    Rsa4096,
}

impl OaepKeySize {
    /// Every size, in a stable order.
    pub const ALL: [OaepKeySize; 3] = [OaepKeySize::Rsa2048, OaepKeySize::Rsa3072, OaepKeySize::Rsa4096];

    /// The name used in the API, the CLI and records: `rsa-oaep-2048`,
    /// `rsa-oaep-3072`, `rsa-oaep-4096`.
    pub fn name(self) -> &'static str {
        match self {
            OaepKeySize::Rsa2048 => "rsa-oaep-2048",
            OaepKeySize::Rsa3072 => "rsa-oaep-3072",
            OaepKeySize::Rsa4096 => "rsa-oaep-4096",
        }
    }

    /// The size of a [`name`](Self::name); `None` for anything else.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|size| size.name() == s)
    }

    /// Modulus (and ciphertext) length in bytes.
    pub fn modulus_len(self) -> usize {
        match self {
            OaepKeySize::Rsa2048 => 256,
            OaepKeySize::Rsa3072 => 384,
            OaepKeySize::Rsa4096 => 512,
        }
    }

    /// The longest plaintext OAEP with SHA-256 carries: modulus − 2·32 − 2.
    pub fn max_plaintext(self) -> usize {
        self.modulus_len() - 66
    }

    fn backend(self) -> KeySize {
        match self {
            OaepKeySize::Rsa2048 => KeySize::Rsa2048,
            OaepKeySize::Rsa3072 => KeySize::Rsa3072,
            OaepKeySize::Rsa4096 => KeySize::Rsa4096,
        }
    }
}

/// An RSA decryption key: zeroized on drop (AWS-LC cleanses what it frees;
/// the PKCS#8 SKM keeps for sealing is `Zeroizing`), redacted `Debug`, not
/// `Clone`.
pub struct DecryptingKey {
    size: OaepKeySize,
    pkcs8: Zeroizing<Vec<u8>>,
    key: OaepPrivateDecryptingKey,
    public: EncryptingKey,
}

impl DecryptingKey {
    /// A fresh key (public exponent 65537). Takes up to seconds for 4096
    /// bits: call it off the async threads.
    pub fn generate(size: OaepKeySize) -> Result<Self, AsymError> {
        let key = PrivateDecryptingKey::generate(size.backend()).map_err(|_| AsymError::Crypto)?;
        let der = key.as_der().map_err(|_| AsymError::Crypto)?;
        Self::from_pkcs8(size, der.as_ref()).map_err(|_| AsymError::Crypto)
    }

    /// Parses an unencrypted PKCS#8 RSA private key whose modulus has exactly
    /// `size` (AWS-LC checks the key's consistency); anything else is
    /// [`AsymError::Malformed`].
    pub fn from_pkcs8(size: OaepKeySize, der: &[u8]) -> Result<Self, AsymError> {
        let private = PrivateDecryptingKey::from_pkcs8(der).map_err(|_| AsymError::Malformed)?;
        if private.key_size_bytes() != size.modulus_len() {
            return Err(AsymError::Malformed);
        }
        let public = EncryptingKey::from_backend(size, private.public_key())?;
        let key = OaepPrivateDecryptingKey::new(private).map_err(|_| AsymError::Malformed)?;
        Ok(Self { size, pkcs8: Zeroizing::new(der.to_vec()), key, public })
    }

    /// The key's size.
    pub fn size(&self) -> OaepKeySize {
        self.size
    }

    /// The PKCS#8 encoding of the key.
    ///
    /// Danger: the raw private key. The only caller is the code that seals it
    /// into an encrypted record (and tests); it never leaves SKM.
    pub fn danger_pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public half.
    pub fn public(&self) -> &EncryptingKey {
        &self.public
    }

    /// Decrypts an RSAES-OAEP (SHA-256, MGF1-SHA-256, empty label)
    /// ciphertext. Every failure is the opaque [`DecryptError`].
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        if ciphertext.len() != self.size.modulus_len() {
            return Err(DecryptError);
        }
        let mut out = Zeroizing::new(vec![0u8; self.key.min_output_size()]);
        let len =
            self.key.decrypt(&OAEP_SHA256_MGF1SHA256, ciphertext, &mut out, None).map_err(|_| DecryptError)?.len();
        out.truncate(len);
        Ok(out)
    }
}

impl fmt::Debug for DecryptingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DecryptingKey({}, <redacted>)", self.size.name())
    }
}

/// The public half of an RSA encryption key: its SPKI, parsed once.
pub struct EncryptingKey {
    size: OaepKeySize,
    spki: Vec<u8>,
    key: OaepPublicEncryptingKey,
}

impl EncryptingKey {
    fn from_backend(size: OaepKeySize, public: PublicEncryptingKey) -> Result<Self, AsymError> {
        if public.key_size_bytes() != size.modulus_len() {
            return Err(AsymError::Malformed);
        }
        let spki = public.as_der().map_err(|_| AsymError::Malformed)?.as_ref().to_vec();
        let key = OaepPublicEncryptingKey::new(public).map_err(|_| AsymError::Malformed)?;
        Ok(Self { size, spki, key })
    }

    /// Parses an `rsaEncryption` SPKI of exactly `size`.
    pub fn from_spki_der(size: OaepKeySize, der: &[u8]) -> Result<Self, AsymError> {
        let public = PublicEncryptingKey::from_der(der).map_err(|_| AsymError::Malformed)?;
        Self::from_backend(size, public)
    }

    /// The key's size.
    pub fn size(&self) -> OaepKeySize {
        self.size
    }

    /// The DER X.509 SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The SPKI as PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn to_pem(&self) -> String {
        crate::asym::spki_pem(&self.spki)
    }

    /// Encrypts `plaintext` (at most [`OaepKeySize::max_plaintext`] bytes)
    /// as anyone holding the public key would.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, EncryptError> {
        if plaintext.len() > self.size.max_plaintext() {
            return Err(EncryptError);
        }
        let mut out = vec![0u8; self.key.ciphertext_size()];
        let len = self.key.encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut out, None).map_err(|_| EncryptError)?.len();
        out.truncate(len);
        Ok(out)
    }
}

impl fmt::Debug for EncryptingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fingerprint: String = crate::sha256(&self.spki)[..8].iter().map(|b| format!("{b:02x}")).collect();
        write!(f, "EncryptingKey({}, spki_sha256: {fingerprint}…)", self.size.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_limits_and_one_error() {
        let key = DecryptingKey::generate(OaepKeySize::Rsa2048).unwrap();
        let public = key.public();
        let max = vec![7u8; OaepKeySize::Rsa2048.max_plaintext()];
        let ct = public.encrypt(&max).unwrap();
        assert_eq!(ct.len(), 256);
        assert_eq!(&key.decrypt(&ct).unwrap()[..], &max[..]);
        assert_eq!(public.encrypt(&[0; 191]), Err(EncryptError));
        assert_eq!(&key.decrypt(&public.encrypt(b"").unwrap()).unwrap()[..], b"");
        let mut flipped = ct.clone();
        flipped[100] ^= 1;
        assert_eq!(key.decrypt(&flipped), Err(DecryptError));
        assert_eq!(key.decrypt(&ct[1..]), Err(DecryptError));
        assert_eq!(key.decrypt(&[0; 256]), Err(DecryptError));
        let other = DecryptingKey::generate(OaepKeySize::Rsa2048).unwrap();
        assert_eq!(other.decrypt(&ct), Err(DecryptError));
    }

    #[test]
    fn sizes_are_checked_and_debug_is_redacted() {
        let key = DecryptingKey::generate(OaepKeySize::Rsa2048).unwrap();
        assert_eq!(
            DecryptingKey::from_pkcs8(OaepKeySize::Rsa3072, key.danger_pkcs8()).map(|_| ()),
            Err(AsymError::Malformed)
        );
        let loaded = DecryptingKey::from_pkcs8(OaepKeySize::Rsa2048, key.danger_pkcs8()).unwrap();
        assert_eq!(loaded.public().spki_der(), key.public().spki_der());
        assert_eq!(
            EncryptingKey::from_spki_der(OaepKeySize::Rsa4096, key.public().spki_der()).map(|_| ()),
            Err(AsymError::Malformed)
        );
        assert_eq!(format!("{key:?}"), "DecryptingKey(rsa-oaep-2048, <redacted>)");
        for size in OaepKeySize::ALL {
            assert_eq!(OaepKeySize::from_name(size.name()), Some(size));
        }
    }
}

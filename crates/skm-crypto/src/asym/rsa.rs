//! RSA-2048/3072/4096 signatures on aws-lc-rs (docs/adr/0001-rsa-on-aws-lc-rs.md).
//!
//! PSS is RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (the
//! digest length, on signing and as the only salt length verification
//! accepts); PKCS#1 is RSASSA-PKCS1-v1_5 with SHA-256. Signatures are exactly
//! the modulus length. A caller's SHA-256 digest goes through aws-lc-rs's
//! `sign_digest` / `verify_digest_sig`, which pad the given digest exactly as
//! signing the message would.
//!
//! AWS-LC wipes every allocation it frees (`OPENSSL_free` cleanses), so the
//! parsed private key needs no zeroizing of its own.

use aws_lc_rs::digest::{Digest, SHA256};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicEncryptingKey};
use aws_lc_rs::signature::{self, KeyPair as _, ParsedPublicKey, RsaEncoding};
use zeroize::Zeroizing;

use super::{AsymError, Checked, KeyAlgorithm, SignatureAlgorithm};
use crate::VerifyError;

/// `AlgorithmIdentifier { rsaEncryption, NULL }`, which follows the outer
/// `SEQUENCE` header (4 bytes for any key of 2048 bits or more) in a
/// canonical RSA SPKI. SPKIs with the RSASSA-PSS OID are not SKM's.
const RSA_ENCRYPTION_ALG_ID: [u8; 15] =
    [0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];

/// aws-lc-rs's size for an RSA key algorithm; `None` for the others.
fn key_size(alg: KeyAlgorithm) -> Option<KeySize> {
    match alg {
        KeyAlgorithm::Rsa2048 => Some(KeySize::Rsa2048),
        KeyAlgorithm::Rsa3072 => Some(KeySize::Rsa3072),
        KeyAlgorithm::Rsa4096 => Some(KeySize::Rsa4096),
        KeyAlgorithm::Ed25519
        | KeyAlgorithm::EcdsaP256
        | KeyAlgorithm::EcdsaP384
        | KeyAlgorithm::MlDsa44
        | KeyAlgorithm::MlDsa65
        | KeyAlgorithm::MlDsa87 => None,
    }
}

/// A fresh key (public exponent 65537) as PKCS#8 v1.
pub(super) fn generate_pkcs8(alg: KeyAlgorithm) -> Result<Zeroizing<Vec<u8>>, AsymError> {
    let size = key_size(alg).ok_or(AsymError::Crypto)?;
    let pair = KeyPair::generate(size).map_err(|_| AsymError::Crypto)?;
    // The DER buffer is wiped when it drops.
    let der = pair.as_der().map_err(|_| AsymError::Crypto)?;
    Ok(Zeroizing::new(der.as_ref().to_vec()))
}

fn encoding(alg: SignatureAlgorithm) -> Option<&'static dyn RsaEncoding> {
    match alg {
        SignatureAlgorithm::RsaPssSha256 => Some(&signature::RSA_PSS_SHA256),
        SignatureAlgorithm::RsaPkcs1Sha256 => Some(&signature::RSA_PKCS1_SHA256),
        SignatureAlgorithm::Ed25519
        | SignatureAlgorithm::EcdsaSha256
        | SignatureAlgorithm::EcdsaSha384
        | SignatureAlgorithm::MlDsa => None,
    }
}

/// The parsed private key.
pub(super) struct Signer(KeyPair);

impl Signer {
    /// Parses PKCS#8 (`rsaEncryption`); AWS-LC checks the key's consistency.
    /// The caller checks the modulus size.
    pub(super) fn from_pkcs8(der: &[u8]) -> Result<Self, AsymError> {
        KeyPair::from_pkcs8(der).map(Self).map_err(|_| AsymError::Malformed)
    }

    pub(super) fn spki_der(&self) -> Result<Vec<u8>, AsymError> {
        let der = self.0.public_key().as_der().map_err(|_| AsymError::Malformed)?;
        Ok(der.as_ref().to_vec())
    }

    pub(super) fn sign(&self, alg: SignatureAlgorithm, message: Checked<'_>) -> Result<Vec<u8>, AsymError> {
        let encoding = encoding(alg).ok_or(AsymError::Crypto)?;
        let mut signature = vec![0u8; self.0.public_modulus_len()];
        match message {
            // aws-lc-rs ignores the RNG argument (AWS-LC draws the PSS salt itself).
            Checked::Raw(msg) => self.0.sign(encoding, &SystemRandom::new(), msg, &mut signature),
            Checked::Digest(digest) => {
                let digest = Digest::import_less_safe(digest, &SHA256).map_err(|_| AsymError::Crypto)?;
                self.0.sign_digest(encoding, &digest, &mut signature)
            }
        }
        .map_err(|_| AsymError::Crypto)?;
        Ok(signature)
    }
}

/// The parsed public key, once per padding (aws-lc-rs ties a parsed key to
/// its verification algorithm).
#[derive(Clone, Debug)]
pub(super) struct Verifier {
    pss: ParsedPublicKey,
    pkcs1: ParsedPublicKey,
}

impl Verifier {
    /// Parses an `rsaEncryption` SPKI whose modulus has exactly the size of
    /// `alg`.
    pub(super) fn from_spki_der(alg: KeyAlgorithm, der: &[u8]) -> Result<Self, AsymError> {
        let size = key_size(alg).ok_or(AsymError::Malformed)?;
        let key = PublicEncryptingKey::from_der(der).map_err(|_| AsymError::Malformed)?;
        if key.key_size_bits() != size.len() * 8 {
            return Err(AsymError::Malformed);
        }
        let canonical = key.as_der().map_err(|_| AsymError::Malformed)?;
        let canonical = canonical.as_ref();
        if canonical.get(4..4 + RSA_ENCRYPTION_ALG_ID.len()) != Some(&RSA_ENCRYPTION_ALG_ID[..]) {
            return Err(AsymError::Malformed);
        }
        let parse = |params| ParsedPublicKey::new(params, canonical).map_err(|_| AsymError::Malformed);
        Ok(Self {
            pss: parse(&signature::RSA_PSS_2048_8192_SHA256)?,
            pkcs1: parse(&signature::RSA_PKCS1_2048_8192_SHA256)?,
        })
    }

    pub(super) fn spki_der(&self) -> Result<Vec<u8>, AsymError> {
        // The bytes it was parsed from: the canonical SPKI.
        Ok(self.pss.as_ref().to_vec())
    }

    pub(super) fn verify(
        &self,
        alg: SignatureAlgorithm,
        message: Checked<'_>,
        signature: &[u8],
    ) -> Result<(), VerifyError> {
        let key = match alg {
            SignatureAlgorithm::RsaPssSha256 => &self.pss,
            SignatureAlgorithm::RsaPkcs1Sha256 => &self.pkcs1,
            SignatureAlgorithm::Ed25519
            | SignatureAlgorithm::EcdsaSha256
            | SignatureAlgorithm::EcdsaSha384
            | SignatureAlgorithm::MlDsa => return Err(VerifyError),
        };
        match message {
            Checked::Raw(msg) => key.verify_sig(msg, signature),
            Checked::Digest(digest) => {
                let digest = Digest::import_less_safe(digest, &SHA256).map_err(|_| VerifyError)?;
                key.verify_digest_sig(&digest, signature)
            }
        }
        .map_err(|_| VerifyError)
    }
}

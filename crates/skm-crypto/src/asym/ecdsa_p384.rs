//! ECDSA on NIST P-384 with SHA-384, on aws-lc-rs
//! (docs/adr/0005-more-key-types-on-aws-lc-rs.md).
//!
//! The same encodings as P-256: PKCS#8 (`id-ecPublicKey`, `secp384r1`), an
//! SPKI with the point uncompressed, DER `ECDSA-Sig-Value` signatures. A
//! caller's SHA-384 digest is signed as the prehash, which is what signing
//! the message computes, so both verify the same way. Nonces are random
//! (AWS-LC); verification takes strict DER only and accepts high-`s`.
//!
//! AWS-LC wipes every allocation it frees, so the parsed private key needs no
//! zeroizing of its own.

use aws_lc_rs::digest::{Digest, SHA384};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _, ParsedPublicKey,
};
use zeroize::Zeroizing;

use super::{AsymError, Checked};
use crate::VerifyError;

/// The first bytes of every canonical P-384 SPKI: `SEQUENCE` (118 bytes),
/// `AlgorithmIdentifier { id-ecPublicKey, secp384r1 }`, `BIT STRING` (98
/// bytes, no unused bits), uncompressed point tag.
const SPKI_PREFIX: [u8; 24] = [
    0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00,
    0x22, 0x03, 0x62, 0x00, 0x04,
];
/// Length of a canonical P-384 SPKI.
const SPKI_LEN: usize = 120;

/// A fresh key as PKCS#8 v1.
pub(super) fn generate_pkcs8() -> Result<Zeroizing<Vec<u8>>, AsymError> {
    let pair = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_ASN1_SIGNING).map_err(|_| AsymError::Crypto)?;
    let doc = pair.to_pkcs8v1().map_err(|_| AsymError::Crypto)?;
    Ok(Zeroizing::new(doc.as_ref().to_vec()))
}

/// The parsed private key.
pub(super) struct Signer(EcdsaKeyPair);

impl Signer {
    /// Parses PKCS#8; the key must be an EC key on P-384 (AWS-LC checks the
    /// curve and that the public point matches the private scalar).
    pub(super) fn from_pkcs8(der: &[u8]) -> Result<Self, AsymError> {
        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, der).map(Self).map_err(|_| AsymError::Malformed)
    }

    pub(super) fn spki_der(&self) -> Result<Vec<u8>, AsymError> {
        let der = self.0.public_key().as_der().map_err(|_| AsymError::Crypto)?;
        Ok(der.as_ref().to_vec())
    }

    pub(super) fn sign(&self, message: Checked<'_>) -> Result<Vec<u8>, AsymError> {
        let signature = match message {
            // aws-lc-rs ignores the RNG argument (AWS-LC draws the nonce itself).
            Checked::Raw(msg) => self.0.sign(&SystemRandom::new(), msg),
            Checked::Digest(digest) => {
                let digest = Digest::import_less_safe(digest, &SHA384).map_err(|_| AsymError::Crypto)?;
                self.0.sign_digest(&digest)
            }
        }
        .map_err(|_| AsymError::Crypto)?;
        Ok(signature.as_ref().to_vec())
    }
}

/// The parsed public key.
#[derive(Clone, Debug)]
pub(super) struct Verifier(ParsedPublicKey);

impl Verifier {
    /// Parses an SPKI of a P-384 point; only the canonical form (named
    /// curve, point uncompressed) is a key of SKM's.
    pub(super) fn from_spki_der(der: &[u8]) -> Result<Self, AsymError> {
        if der.len() != SPKI_LEN || der[..SPKI_PREFIX.len()] != SPKI_PREFIX {
            return Err(AsymError::Malformed);
        }
        let key = ParsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, der).map_err(|_| AsymError::Malformed)?;
        Ok(Self(key))
    }

    pub(super) fn spki_der(&self) -> Vec<u8> {
        self.0.as_ref().to_vec()
    }

    pub(super) fn verify(&self, message: Checked<'_>, signature: &[u8]) -> Result<(), VerifyError> {
        match message {
            Checked::Raw(msg) => self.0.verify_sig(msg, signature),
            Checked::Digest(digest) => {
                let digest = Digest::import_less_safe(digest, &SHA384).map_err(|_| VerifyError)?;
                self.0.verify_digest_sig(&digest, signature)
            }
        }
        .map_err(|_| VerifyError)
    }
}

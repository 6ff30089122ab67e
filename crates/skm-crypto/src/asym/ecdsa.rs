//! ECDSA on NIST P-256 (SHA-256) and P-384 (SHA-384), on aws-lc-rs
//! (docs/adr/0005-more-key-types-on-aws-lc-rs.md for P-384,
//! docs/adr/0006-ecdsa-p256-on-aws-lc-rs.md for P-256, which was `p256`
//! before and stays the differential reference in the tests).
//!
//! PKCS#8 (`id-ecPublicKey` with the curve's OID), an SPKI with the point
//! uncompressed, DER `ECDSA-Sig-Value` signatures. A caller's digest (of the
//! curve's hash) is signed as the prehash, which is what signing the message
//! computes, so both verify the same way. Nonces are random (AWS-LC);
//! verification takes strict DER only and accepts high-`s` (as OpenSSL
//! does: these curves have no low-`s` rule).
//!
//! AWS-LC wipes every allocation it frees, so a parsed private key needs no
//! zeroizing of its own.

use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_ASN1_SIGNING,
    EcdsaKeyPair, EcdsaSigningAlgorithm, EcdsaVerificationAlgorithm, KeyPair as _, ParsedPublicKey,
};
use zeroize::Zeroizing;

use super::{AsymError, Checked};
use crate::VerifyError;

/// A curve with its hash, and the one SPKI form SKM stores for it.
pub(super) struct Curve {
    signing: &'static EcdsaSigningAlgorithm,
    verifying: &'static EcdsaVerificationAlgorithm,
    hash: &'static digest::Algorithm,
    /// `SEQUENCE`, `AlgorithmIdentifier { id-ecPublicKey, curve }`, `BIT
    /// STRING` (no unused bits), uncompressed point tag.
    spki_prefix: &'static [u8],
    spki_len: usize,
}

/// P-256 with SHA-256: 91-byte SPKIs.
pub(super) static P256: Curve = Curve {
    signing: &ECDSA_P256_SHA256_ASN1_SIGNING,
    verifying: &ECDSA_P256_SHA256_ASN1,
    hash: &digest::SHA256,
    spki_prefix: &[
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
        0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
    ],
    spki_len: 91,
};

/// P-384 with SHA-384: 120-byte SPKIs.
pub(super) static P384: Curve = Curve {
    signing: &ECDSA_P384_SHA384_ASN1_SIGNING,
    verifying: &ECDSA_P384_SHA384_ASN1,
    hash: &digest::SHA384,
    spki_prefix: &[
        0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04,
        0x00, 0x22, 0x03, 0x62, 0x00, 0x04,
    ],
    spki_len: 120,
};

/// A fresh key on `curve` as PKCS#8 v1.
pub(super) fn generate_pkcs8(curve: &'static Curve) -> Result<Zeroizing<Vec<u8>>, AsymError> {
    let pair = EcdsaKeyPair::generate(curve.signing).map_err(|_| AsymError::Crypto)?;
    let doc = pair.to_pkcs8v1().map_err(|_| AsymError::Crypto)?;
    Ok(Zeroizing::new(doc.as_ref().to_vec()))
}

/// A parsed private key.
pub(super) struct Signer {
    pair: EcdsaKeyPair,
    curve: &'static Curve,
}

impl Signer {
    /// Parses PKCS#8; the key must be an EC key on `curve` (AWS-LC checks
    /// the curve and that the public point matches the private scalar).
    pub(super) fn from_pkcs8(curve: &'static Curve, der: &[u8]) -> Result<Self, AsymError> {
        let pair = EcdsaKeyPair::from_pkcs8(curve.signing, der).map_err(|_| AsymError::Malformed)?;
        Ok(Self { pair, curve })
    }

    pub(super) fn spki_der(&self) -> Result<Vec<u8>, AsymError> {
        let der = self.pair.public_key().as_der().map_err(|_| AsymError::Crypto)?;
        Ok(der.as_ref().to_vec())
    }

    pub(super) fn sign(&self, message: Checked<'_>) -> Result<Vec<u8>, AsymError> {
        let signature = match message {
            // aws-lc-rs ignores the RNG argument (AWS-LC draws the nonce itself).
            Checked::Raw(msg) => self.pair.sign(&SystemRandom::new(), msg),
            Checked::Digest(digest) => {
                let digest = Digest::import_less_safe(digest, self.curve.hash).map_err(|_| AsymError::Crypto)?;
                self.pair.sign_digest(&digest)
            }
        }
        .map_err(|_| AsymError::Crypto)?;
        Ok(signature.as_ref().to_vec())
    }
}

/// A parsed public key.
#[derive(Clone, Debug)]
pub(super) struct Verifier {
    key: ParsedPublicKey,
    hash: &'static digest::Algorithm,
}

impl Verifier {
    /// Parses an SPKI of a point on `curve`; only the canonical form (named
    /// curve, point uncompressed) is a key of SKM's.
    pub(super) fn from_spki_der(curve: &'static Curve, der: &[u8]) -> Result<Self, AsymError> {
        if der.len() != curve.spki_len || !der.starts_with(curve.spki_prefix) {
            return Err(AsymError::Malformed);
        }
        let key = ParsedPublicKey::new(curve.verifying, der).map_err(|_| AsymError::Malformed)?;
        Ok(Self { key, hash: curve.hash })
    }

    pub(super) fn spki_der(&self) -> Vec<u8> {
        self.key.as_ref().to_vec()
    }

    pub(super) fn verify(&self, message: Checked<'_>, signature: &[u8]) -> Result<(), VerifyError> {
        match message {
            Checked::Raw(msg) => self.key.verify_sig(msg, signature),
            Checked::Digest(digest) => {
                let digest = Digest::import_less_safe(digest, self.hash).map_err(|_| VerifyError)?;
                self.key.verify_digest_sig(&digest, signature)
            }
        }
        .map_err(|_| VerifyError)
    }
}

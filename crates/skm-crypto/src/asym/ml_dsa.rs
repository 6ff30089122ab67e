//! ML-DSA-44/65/87 (FIPS 204) on aws-lc-rs, pure ML-DSA with an empty
//! context string (docs/adr/0005-more-key-types-on-aws-lc-rs.md).
//!
//! Private keys are PKCS#8 v1 in the seed form (RFC 9881: the 32-byte `ξ`
//! from which FIPS 204 `ML-DSA.KeyGen_internal` expands the key); public
//! keys are SPKIs with the NIST algorithm identifiers
//! (`id-ml-dsa-44/65/87`, 2.16.840.1.101.3.4.3.17–19, no parameters).
//! Signing is hedged (fresh randomness per signature, FIPS 204's default);
//! the message is hashed inside the algorithm, so digests are refused.
//!
//! AWS-LC wipes every allocation it frees, so the parsed private key needs no
//! zeroizing of its own.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    self, KeyPair as _, ParsedPublicKey, PqdsaKeyPair, PqdsaSigningAlgorithm, PqdsaVerificationAlgorithm,
};
use zeroize::Zeroizing;

use super::{AsymError, Checked, KeyAlgorithm};
use crate::VerifyError;

/// aws-lc-rs's signing and verification parameters of an ML-DSA algorithm.
fn params(alg: KeyAlgorithm) -> Option<(&'static PqdsaSigningAlgorithm, &'static PqdsaVerificationAlgorithm)> {
    match alg {
        KeyAlgorithm::MlDsa44 => Some((&signature::ML_DSA_44_SIGNING, &signature::ML_DSA_44)),
        KeyAlgorithm::MlDsa65 => Some((&signature::ML_DSA_65_SIGNING, &signature::ML_DSA_65)),
        KeyAlgorithm::MlDsa87 => Some((&signature::ML_DSA_87_SIGNING, &signature::ML_DSA_87)),
        KeyAlgorithm::Ed25519
        | KeyAlgorithm::EcdsaP256
        | KeyAlgorithm::EcdsaP384
        | KeyAlgorithm::Rsa2048
        | KeyAlgorithm::Rsa3072
        | KeyAlgorithm::Rsa4096 => None,
    }
}

/// A fresh key as PKCS#8 v1 (seed form).
pub(super) fn generate_pkcs8(alg: KeyAlgorithm) -> Result<Zeroizing<Vec<u8>>, AsymError> {
    let (signing, _) = params(alg).ok_or(AsymError::Crypto)?;
    let pair = PqdsaKeyPair::generate(signing).map_err(|_| AsymError::Crypto)?;
    let doc = pair.to_pkcs8v1().map_err(|_| AsymError::Crypto)?;
    Ok(Zeroizing::new(doc.as_ref().to_vec()))
}

/// The parsed private key.
pub(super) struct Signer(PqdsaKeyPair);

impl Signer {
    /// Parses PKCS#8 (seed or expanded form; both must agree when both are
    /// present); the parameter set must be `alg`'s.
    pub(super) fn from_pkcs8(alg: KeyAlgorithm, der: &[u8]) -> Result<Self, AsymError> {
        let (signing, _) = params(alg).ok_or(AsymError::Malformed)?;
        PqdsaKeyPair::from_pkcs8(signing, der).map(Self).map_err(|_| AsymError::Malformed)
    }

    pub(super) fn spki_der(&self) -> Result<Vec<u8>, AsymError> {
        let der = self.0.public_key().as_der().map_err(|_| AsymError::Crypto)?;
        Ok(der.as_ref().to_vec())
    }

    pub(super) fn sign(&self, message: Checked<'_>) -> Result<Vec<u8>, AsymError> {
        let Checked::Raw(msg) = message else {
            return Err(AsymError::Crypto);
        };
        let mut signature = vec![0u8; self.0.algorithm().signature_len()];
        let len = self.0.sign(msg, &mut signature).map_err(|_| AsymError::Crypto)?;
        signature.truncate(len);
        Ok(signature)
    }
}

/// The parsed public key.
#[derive(Clone, Debug)]
pub(super) struct Verifier {
    key: ParsedPublicKey,
    spki: Vec<u8>,
}

impl Verifier {
    /// Parses an SPKI of an `alg` public key; only the canonical encoding
    /// (what SKM itself writes) is accepted, not a bare public key.
    pub(super) fn from_spki_der(alg: KeyAlgorithm, der: &[u8]) -> Result<Self, AsymError> {
        let (_, verification) = params(alg).ok_or(AsymError::Malformed)?;
        let key = ParsedPublicKey::new(verification, der).map_err(|_| AsymError::Malformed)?;
        let canonical = key.as_der().map_err(|_| AsymError::Malformed)?;
        if canonical.as_ref() != der {
            return Err(AsymError::Malformed);
        }
        Ok(Self { key, spki: der.to_vec() })
    }

    pub(super) fn spki_der(&self) -> Vec<u8> {
        self.spki.clone()
    }

    pub(super) fn verify(&self, message: Checked<'_>, signature: &[u8]) -> Result<(), VerifyError> {
        let Checked::Raw(msg) = message else {
            return Err(VerifyError);
        };
        self.key.verify_sig(msg, signature).map_err(|_| VerifyError)
    }
}

//! Ed25519 (RFC 8032, pure EdDSA) on `ed25519-dalek`.
//!
//! Verification is strict: besides a canonical `s` it rejects small-order
//! public keys and `R` values, which no honestly made signature has.

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use super::{AsymError, Checked};
use crate::VerifyError;

/// A fresh key as PKCS#8 (v2, with the public key).
pub(super) fn generate_pkcs8() -> Result<Zeroizing<Vec<u8>>, AsymError> {
    let seed = Zeroizing::new(crate::random_array::<32>()?);
    let key = SigningKey::from_bytes(&seed);
    let doc = key.to_pkcs8_der().map_err(|_| AsymError::Crypto)?;
    Ok(Zeroizing::new(doc.as_bytes().to_vec()))
}

/// The parsed private key (wiped on drop by `ed25519-dalek`).
pub(super) struct Signer(SigningKey);

impl Signer {
    /// Parses PKCS#8 (v1 or v2); the algorithm must be Ed25519 and an
    /// embedded public key must match the private one.
    pub(super) fn from_pkcs8(der: &[u8]) -> Result<Self, AsymError> {
        SigningKey::from_pkcs8_der(der).map(Self).map_err(|_| AsymError::Malformed)
    }

    pub(super) fn verifier(&self) -> Verifier {
        Verifier(self.0.verifying_key())
    }

    pub(super) fn sign(&self, message: Checked<'_>) -> Result<Vec<u8>, AsymError> {
        match message {
            Checked::Raw(msg) => {
                let signature = self.0.try_sign(msg).map_err(|_| AsymError::Crypto)?;
                Ok(signature.to_bytes().to_vec())
            }
            // `asym::check` already turned this away; kept for exhaustiveness.
            Checked::Digest(_) => Err(AsymError::DigestNotSupported("ed25519")),
        }
    }
}

/// The parsed public key.
#[derive(Clone, Debug)]
pub(super) struct Verifier(VerifyingKey);

impl Verifier {
    pub(super) fn from_spki_der(der: &[u8]) -> Result<Self, AsymError> {
        VerifyingKey::from_public_key_der(der).map(Self).map_err(|_| AsymError::Malformed)
    }

    pub(super) fn spki_der(&self) -> Result<Vec<u8>, AsymError> {
        Ok(self.0.to_public_key_der().map_err(|_| AsymError::Crypto)?.into_vec())
    }

    pub(super) fn verify(&self, message: Checked<'_>, signature: &[u8]) -> Result<(), VerifyError> {
        let Checked::Raw(msg) = message else {
            return Err(VerifyError);
        };
        let signature = Signature::from_slice(signature).map_err(|_| VerifyError)?;
        self.0.verify_strict(msg, &signature).map_err(|_| VerifyError)
    }
}

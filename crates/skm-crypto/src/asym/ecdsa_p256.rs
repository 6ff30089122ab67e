//! ECDSA on NIST P-256 with SHA-256, on `p256` (RustCrypto `ecdsa`).
//!
//! Signatures are DER `ECDSA-Sig-Value`s with deterministic nonces
//! (RFC 6979). A caller's SHA-256 digest is signed as the prehash, which is
//! exactly what signing the message computes, so both verify the same way.
//! Verification takes strict DER only and accepts high-`s` signatures (as
//! OpenSSL does: P-256 ECDSA has no low-`s` rule).

use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use zeroize::Zeroizing;

use super::{AsymError, Checked};
use crate::VerifyError;

/// A fresh key as PKCS#8 (`id-ecPublicKey`, `prime256v1`).
pub(super) fn generate_pkcs8() -> Result<Zeroizing<Vec<u8>>, AsymError> {
    // A random 256-bit string is a valid scalar unless it is 0 or ≥ n
    // (probability < 2^-32); draw again in that case.
    for _ in 0..8 {
        let candidate = Zeroizing::new(crate::random_array::<32>()?);
        if let Ok(key) = SigningKey::from_slice(&candidate[..]) {
            let doc = key.to_pkcs8_der().map_err(|_| AsymError::Crypto)?;
            return Ok(Zeroizing::new(doc.as_bytes().to_vec()));
        }
    }
    Err(AsymError::Crypto)
}

/// The parsed private key (wiped on drop by `ecdsa`).
pub(super) struct Signer(SigningKey);

impl Signer {
    /// Parses PKCS#8; the key must be an EC key on P-256.
    pub(super) fn from_pkcs8(der: &[u8]) -> Result<Self, AsymError> {
        SigningKey::from_pkcs8_der(der).map(Self).map_err(|_| AsymError::Malformed)
    }

    pub(super) fn verifier(&self) -> Verifier {
        Verifier(*self.0.verifying_key())
    }

    pub(super) fn sign(&self, message: Checked<'_>) -> Result<Vec<u8>, AsymError> {
        let signature: DerSignature = match message {
            Checked::Raw(msg) => self.0.try_sign(msg),
            Checked::Digest(digest) => self.0.sign_prehash(digest),
        }
        .map_err(|_| AsymError::Crypto)?;
        Ok(signature.as_bytes().to_vec())
    }
}

/// The parsed public key.
#[derive(Clone, Debug)]
pub(super) struct Verifier(VerifyingKey);

impl Verifier {
    /// Parses an SPKI; the key must be an EC point on P-256.
    pub(super) fn from_spki_der(der: &[u8]) -> Result<Self, AsymError> {
        VerifyingKey::from_public_key_der(der).map(Self).map_err(|_| AsymError::Malformed)
    }

    /// The SPKI with the point uncompressed.
    pub(super) fn spki_der(&self) -> Result<Vec<u8>, AsymError> {
        Ok(self.0.to_public_key_der().map_err(|_| AsymError::Crypto)?.into_vec())
    }

    pub(super) fn verify(&self, message: Checked<'_>, signature: &[u8]) -> Result<(), VerifyError> {
        let signature = DerSignature::from_bytes(signature).map_err(|_| VerifyError)?;
        match message {
            Checked::Raw(msg) => self.0.verify(msg, &signature),
            Checked::Digest(digest) => self.0.verify_prehash(digest, &signature),
        }
        .map_err(|_| VerifyError)
    }
}

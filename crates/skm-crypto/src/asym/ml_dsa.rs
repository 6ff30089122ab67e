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
//!
//! External μ (AWS KMS's `EXTERNAL_MU`: the caller hashes the message into
//! FIPS 204's 64-byte μ) is signed and verified with RustCrypto `ml-dsa`,
//! because aws-lc-rs 1.19 has no μ API: the key is expanded from its seed
//! for each such call (zeroized on drop) and signs hedged, with randomness
//! from AWS-LC's generator. The signature is exactly the one the message
//! itself would get, which the tests check against aws-lc-rs.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    self, KeyPair as _, ParsedPublicKey, PqdsaKeyPair, PqdsaSigningAlgorithm, PqdsaVerificationAlgorithm,
};
use zeroize::Zeroizing;

use ml_dsa::common::array::Array;
use ml_dsa::common::rand_core::{TryCryptoRng, TryRng};
use ml_dsa::common::typenum::U64;
use ml_dsa::{EncodedSignature, EncodedVerifyingKey, MlDsa44, MlDsa65, MlDsa87, MlDsaParams, Seed};
use shake::Update as _;

use super::{AsymError, Checked, KeyAlgorithm, MU_LEN};
use crate::VerifyError;

/// The seed of a PKCS#8 in the RFC 9881 seed form (`[0] OCTET STRING` of
/// 32 bytes as the private key): `None` for any other form.
fn seed_of(der: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    if der.len() != 54 || der[20..22] != [0x80, 0x20] {
        return None;
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&der[22..]);
    Some(seed)
}

/// The raw public key inside an ML-DSA SPKI (its BIT STRING's contents).
fn raw_public(alg: KeyAlgorithm, spki: &[u8]) -> Option<&[u8]> {
    let len = match alg {
        KeyAlgorithm::MlDsa44 => 1312,
        KeyAlgorithm::MlDsa65 => 1952,
        KeyAlgorithm::MlDsa87 => 2592,
        _ => return None,
    };
    spki.get(spki.len().checked_sub(len)?..)
}

/// A μ as RustCrypto's `ml-dsa` takes it.
type B64 = Array<u8, U64>;

/// AWS-LC's random generator as RustCrypto's.
struct AwsLcRng;

impl TryRng for AwsLcRng {
    type Error = crate::RngError;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        crate::fill_random(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        crate::fill_random(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        crate::fill_random(dst)
    }
}

impl TryCryptoRng for AwsLcRng {}

fn sign_mu_with<P: MlDsaParams>(seed: &[u8; 32], mu: &B64) -> Result<Vec<u8>, AsymError> {
    let key = ml_dsa::SigningKey::<P>::from_seed(&Seed::from(*seed));
    let signature = key.expanded_key().sign_mu_randomized(mu, &mut AwsLcRng).map_err(|_| AsymError::Crypto)?;
    Ok(signature.encode().to_vec())
}

fn verify_mu_with<P: MlDsaParams>(public: &[u8], mu: &B64, signature: &[u8]) -> Result<(), VerifyError> {
    let key = ml_dsa::VerifyingKey::<P>::decode(&EncodedVerifyingKey::<P>::try_from(public).map_err(|_| VerifyError)?);
    let signature = EncodedSignature::<P>::try_from(signature).map_err(|_| VerifyError)?;
    let signature = ml_dsa::Signature::<P>::decode(&signature).ok_or(VerifyError)?;
    if key.verify_mu(mu, &signature) { Ok(()) } else { Err(VerifyError) }
}

fn mu_with<P: MlDsaParams>(public: &[u8], message: &[u8]) -> Option<[u8; MU_LEN]> {
    let key = ml_dsa::VerifyingKey::<P>::decode(&EncodedVerifyingKey::<P>::try_from(public).ok()?);
    let mu = key
        .compute_mu(
            |h| {
                h.update(message);
                Ok(())
            },
            &[],
        )
        .ok()?;
    mu.as_slice().try_into().ok()
}

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

/// The parsed private key, with its seed for external-μ signing.
pub(super) struct Signer {
    pair: PqdsaKeyPair,
    alg: KeyAlgorithm,
    seed: Option<Zeroizing<[u8; 32]>>,
}

impl Signer {
    /// Parses PKCS#8 (seed or expanded form; both must agree when both are
    /// present); the parameter set must be `alg`'s.
    pub(super) fn from_pkcs8(alg: KeyAlgorithm, der: &[u8]) -> Result<Self, AsymError> {
        let (signing, _) = params(alg).ok_or(AsymError::Malformed)?;
        let pair = PqdsaKeyPair::from_pkcs8(signing, der).map_err(|_| AsymError::Malformed)?;
        Ok(Self { pair, alg, seed: seed_of(der) })
    }

    pub(super) fn spki_der(&self) -> Result<Vec<u8>, AsymError> {
        let der = self.pair.public_key().as_der().map_err(|_| AsymError::Crypto)?;
        Ok(der.as_ref().to_vec())
    }

    pub(super) fn sign(&self, message: Checked<'_>) -> Result<Vec<u8>, AsymError> {
        let Checked::Raw(msg) = message else {
            return Err(AsymError::Crypto);
        };
        let mut signature = vec![0u8; self.pair.algorithm().signature_len()];
        let len = self.pair.sign(msg, &mut signature).map_err(|_| AsymError::Crypto)?;
        signature.truncate(len);
        Ok(signature)
    }

    /// Signs an external μ ([`super::Message::Mu`], length checked).
    pub(super) fn sign_mu(&self, mu: &[u8]) -> Result<Vec<u8>, AsymError> {
        // Keys SKM makes are always in the seed form.
        let seed = self.seed.as_ref().ok_or(AsymError::Crypto)?;
        let mu = B64::try_from(mu).map_err(|_| AsymError::MuLength(mu.len()))?;
        match self.alg {
            KeyAlgorithm::MlDsa44 => sign_mu_with::<MlDsa44>(seed, &mu),
            KeyAlgorithm::MlDsa65 => sign_mu_with::<MlDsa65>(seed, &mu),
            KeyAlgorithm::MlDsa87 => sign_mu_with::<MlDsa87>(seed, &mu),
            _ => Err(AsymError::Crypto),
        }
    }
}

/// The parsed public key.
#[derive(Clone, Debug)]
pub(super) struct Verifier {
    key: ParsedPublicKey,
    alg: KeyAlgorithm,
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
        Ok(Self { key, alg, spki: der.to_vec() })
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

    /// Verifies a signature over an external μ.
    pub(super) fn verify_mu(&self, mu: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
        let public = raw_public(self.alg, &self.spki).ok_or(VerifyError)?;
        let mu = B64::try_from(mu).map_err(|_| VerifyError)?;
        match self.alg {
            KeyAlgorithm::MlDsa44 => verify_mu_with::<MlDsa44>(public, &mu, signature),
            KeyAlgorithm::MlDsa65 => verify_mu_with::<MlDsa65>(public, &mu, signature),
            KeyAlgorithm::MlDsa87 => verify_mu_with::<MlDsa87>(public, &mu, signature),
            _ => Err(VerifyError),
        }
    }

    /// The external μ of `message` under this key (pure ML-DSA, empty
    /// context).
    pub(super) fn external_mu(&self, message: &[u8]) -> Result<[u8; MU_LEN], AsymError> {
        raw_public(self.alg, &self.spki)
            .and_then(|public| match self.alg {
                KeyAlgorithm::MlDsa44 => mu_with::<MlDsa44>(public, message),
                KeyAlgorithm::MlDsa65 => mu_with::<MlDsa65>(public, message),
                KeyAlgorithm::MlDsa87 => mu_with::<MlDsa87>(public, message),
                _ => None,
            })
            .ok_or(AsymError::Crypto)
    }
}

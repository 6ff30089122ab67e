//! Sign, verify and public keys of asymmetric keys.

use skm_crypto::asym::{AsymError, Message, SignatureAlgorithm};
use skm_store::Store;

use super::operation::{Effect, Operation, Subject, Trail};
use super::views::{self, PublicKeyHolder, SigningKey};
use super::{Kms, KmsError, check_len, internal};
use crate::model::{self, KeyKind};

/// What a sign or verify call covers.
#[derive(Clone, Debug)]
pub enum Signed {
    /// The message itself, at most [`model::MAX_SIGN_MESSAGE`] bytes.
    Message(Vec<u8>),
    /// Its digest under the signature algorithm's hash.
    Digest(Vec<u8>),
    /// An ML-DSA external μ (64 bytes) the caller computed from the
    /// message and the public key.
    Mu(Vec<u8>),
}

impl Signed {
    fn message(&self) -> Message<'_> {
        match self {
            Signed::Message(m) => Message::Raw(m),
            Signed::Digest(d) => Message::Digest(d),
            Signed::Mu(mu) => Message::Mu(mu),
        }
    }

    fn check(&self) -> Result<(), KmsError> {
        match self {
            Signed::Message(m) => check_len("message", m.len(), model::MAX_SIGN_MESSAGE),
            // Their lengths are skm-crypto's to check, with the algorithm.
            Signed::Digest(_) | Signed::Mu(_) => Ok(()),
        }
    }
}

/// Sign with the key's newest version.
#[derive(Debug)]
pub struct Sign {
    /// The signing key.
    pub key_id: String,
    /// Message or digest.
    pub signed: Signed,
    /// The algorithm; the key's default when `None`.
    pub algorithm: Option<SignatureAlgorithm>,
}

/// A signature.
#[derive(Debug)]
pub struct Signature {
    /// The signature, in the algorithm's standard encoding.
    pub signature: Vec<u8>,
    /// The key version that made it.
    pub key_version: u32,
    /// The algorithm used.
    pub algorithm: SignatureAlgorithm,
}

/// Verify with one version, or with the newest
/// [`model::VERIFY_ANY_VERSIONS`] versions (newest first) when `key_version`
/// is 0: a signature by an older version needs its version named, so one
/// call costs a bounded number of verifications.
#[derive(Debug)]
pub struct Verify {
    /// The signing key.
    pub key_id: String,
    /// Message or digest.
    pub signed: Signed,
    /// The signature.
    pub signature: Vec<u8>,
    /// The algorithm; the key's default when `None`.
    pub algorithm: Option<SignatureAlgorithm>,
    /// One version, or 0 for any.
    pub key_version: u32,
}

/// The version whose key verified the signature, if any did.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified(pub Option<u32>);

/// The public key of one version (0: newest).
#[derive(Debug)]
pub struct GetPublicKey {
    /// The signing key.
    pub key_id: String,
    /// The version, or 0.
    pub key_version: u32,
}

/// A public key.
#[derive(Debug)]
pub struct PublicKeyInfo {
    /// SPKI, DER.
    pub spki_der: Vec<u8>,
    /// SPKI, PEM.
    pub pem: String,
    /// Its version.
    pub key_version: u32,
    /// The key's type (a signing or an RSA encryption key).
    pub kind: KeyKind,
}

/// Bad input as skm-crypto judges it, in the words of DESIGN §10.
fn refused(e: AsymError) -> KmsError {
    match e {
        AsymError::DigestNotSupported(_) | AsymError::MuNotSupported(_) | AsymError::WrongAlgorithm { .. } => {
            KmsError::FailedPrecondition(e.to_string())
        }
        AsymError::DigestLength { .. } | AsymError::MuLength(_) => KmsError::InvalidArgument(e.to_string()),
        other => internal(other),
    }
}

impl SigningKey {
    /// The requested algorithm, or the key's default.
    fn pick(&self, requested: Option<SignatureAlgorithm>) -> SignatureAlgorithm {
        requested.unwrap_or_else(|| self.algorithm.default_signature_algorithm())
    }
}

impl Operation for Sign {
    const NAME: &'static str = "Sign";
    const EFFECT: Effect = Effect::Use;
    type Output = Signature;

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    fn check(&self) -> Result<(), KmsError> {
        self.signed.check()
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Signature, KmsError> {
        let key: SigningKey = kms.usable(trail, &self.key_id).await?;
        let algorithm = key.pick(self.algorithm);
        let newest = key.versions.newest();
        let signature = newest.material.sign(algorithm, self.signed.message()).map_err(refused)?;
        trail.used_version(newest.version);
        Ok(Signature { signature, key_version: newest.version, algorithm })
    }
}

impl Operation for Verify {
    const NAME: &'static str = "Verify";
    const EFFECT: Effect = Effect::Use;
    type Output = Verified;

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    fn check(&self) -> Result<(), KmsError> {
        self.signed.check()?;
        check_len("signature", self.signature.len(), model::MAX_SIGNATURE)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Verified, KmsError> {
        let key: SigningKey = kms.usable(trail, &self.key_id).await?;
        let algorithm = key.pick(self.algorithm);
        let message = self.signed.message();
        // Bad input is refused as such; only a bad signature is "invalid".
        skm_crypto::asym::check_message(key.algorithm, algorithm, message).map_err(refused)?;
        for v in views::verify_candidates(&key.key, &key.versions, self.key_version)? {
            if v.material.public().verify(algorithm, message, &self.signature).is_ok() {
                trail.used_version(v.version);
                return Ok(Verified(Some(v.version)));
            }
        }
        Ok(Verified(None))
    }
}

impl Operation for GetPublicKey {
    const NAME: &'static str = "GetPublicKey";
    const EFFECT: Effect = Effect::Use;
    type Output = PublicKeyInfo;

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<PublicKeyInfo, KmsError> {
        let info = public_key_info(kms.usable(trail, &self.key_id).await?, self.key_version)?;
        trail.used_version(info.key_version);
        Ok(info)
    }
}

/// The public key of `version` (0: newest) of an asymmetric key.
fn public_key_info(holder: PublicKeyHolder, version: u32) -> Result<PublicKeyInfo, KmsError> {
    let (spki_der, pem, key_version, kind) = match holder {
        PublicKeyHolder::Signing(key) => {
            let v = views::version(&key.key, &key.versions, version)?;
            let public = v.material.public();
            (public.spki_der().to_vec(), public.to_pem(), v.version, KeyKind::Asymmetric(key.algorithm))
        }
        PublicKeyHolder::Decrypting(key) => {
            let v = views::version(&key.key, &key.versions, version)?;
            let public = v.material.public();
            (public.spki_der().to_vec(), public.to_pem(), v.version, KeyKind::RsaOaep(key.size))
        }
    };
    Ok(PublicKeyInfo { spki_der, pem, key_version, kind })
}

/// The public key of one version (0: newest) for an operator: an audited
/// read that needs no keystore policy (public keys are not secret; the
/// console's download).
#[derive(Debug)]
pub struct ReadPublicKey {
    /// The asymmetric key.
    pub key_id: String,
    /// The version, or 0.
    pub key_version: u32,
}

impl Operation for ReadPublicKey {
    const NAME: &'static str = "ReadPublicKey";
    const EFFECT: Effect = Effect::Read;
    type Output = PublicKeyInfo;

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<PublicKeyInfo, KmsError> {
        let id = super::parse_id("key_id", &self.key_id)?;
        let key = kms.key(&id).await?;
        trail.touch_key(&key);
        let info = public_key_info(views::typed::<PublicKeyHolder>(&key)?, self.key_version)?;
        trail.used_version(info.key_version);
        Ok(info)
    }
}

//! Sign, verify and public keys of asymmetric keys.

use skm_crypto::asym::{KeyAlgorithm, Message, PublicKey, SignatureAlgorithm};

use super::{Call, Kms, KmsError, Need, internal};
use crate::model::{self, Key, KeyKind, Material};

/// What a sign or verify call covers.
#[derive(Clone, Copy, Debug)]
pub enum Signed<'a> {
    /// The message itself.
    Message(&'a [u8]),
    /// Its SHA-256 digest.
    Digest(&'a [u8]),
}

impl<'a> Signed<'a> {
    fn check(self) -> Result<Message<'a>, KmsError> {
        match self {
            Signed::Message(m) => {
                super::check_len("message", m.len(), model::MAX_SIGN_MESSAGE)?;
                Ok(Message::Raw(m))
            }
            Signed::Digest(d) => {
                if d.len() != 32 {
                    return Err(KmsError::InvalidArgument(format!(
                        "digest is {} bytes; a SHA-256 digest is 32",
                        d.len()
                    )));
                }
                Ok(Message::Digest(d))
            }
        }
    }
}

fn algorithm_of(key: &Key) -> Result<KeyAlgorithm, KmsError> {
    match key.kind {
        KeyKind::Asymmetric(alg) => Ok(alg),
        _ => Err(KmsError::FailedPrecondition(format!("key {} is not an asymmetric key", key.id))),
    }
}

/// The signature algorithm to use: the requested one if it fits the key,
/// else the key's default when none was requested.
fn pick(key: &Key, requested: Option<SignatureAlgorithm>) -> Result<SignatureAlgorithm, KmsError> {
    let alg = algorithm_of(key)?;
    match requested {
        None => Ok(alg.default_signature_algorithm()),
        Some(sig) if alg.signature_algorithms().contains(&sig) => Ok(sig),
        Some(sig) => Err(KmsError::FailedPrecondition(format!(
            "algorithm {} does not fit the {} key {}",
            sig.name(),
            alg.name(),
            key.id
        ))),
    }
}

fn public_of(key: &Key, version: u32) -> Result<(&PublicKey, u32), KmsError> {
    let v = if version == 0 { key.newest() } else { key.version(version) }
        .ok_or_else(|| KmsError::NotFound(format!("key {} has no version {version}", key.id)))?;
    match &v.material {
        Material::Asymmetric { public, .. } => Ok((public, v.version)),
        _ => Err(KmsError::FailedPrecondition(format!("key {} is not an asymmetric key", key.id))),
    }
}

impl Kms {
    /// Signs with the newest version; returns signature, version, algorithm.
    pub async fn sign(
        &self,
        call: &mut Call,
        key_id: &str,
        signed: Signed<'_>,
        algorithm: Option<SignatureAlgorithm>,
    ) -> Result<(Vec<u8>, u32, SignatureAlgorithm), KmsError> {
        let message = signed.check()?;
        let key = self.usable_key(call, key_id, Need::Asymmetric).await?;
        let sig_alg = pick(&key, algorithm)?;
        let newest =
            key.newest().ok_or_else(|| KmsError::FailedPrecondition(format!("key {} has no version", key.id)))?;
        let Material::Asymmetric { private, .. } = &newest.material else {
            return Err(KmsError::FailedPrecondition(format!("key {} is not an asymmetric key", key.id)));
        };
        let signature = private.sign(sig_alg, message).map_err(|e| match e {
            skm_crypto::asym::AsymError::DigestNotSupported(_) | skm_crypto::asym::AsymError::WrongAlgorithm { .. } => {
                KmsError::FailedPrecondition(e.to_string())
            }
            skm_crypto::asym::AsymError::DigestLength(_) => KmsError::InvalidArgument(e.to_string()),
            other => internal(other),
        })?;
        call.used_version(newest.version);
        Ok((signature, newest.version, sig_alg))
    }

    /// Verifies with one version, or every retained version (newest first)
    /// when `version` is 0. Returns the version that verified, if any.
    pub async fn verify(
        &self,
        call: &mut Call,
        key_id: &str,
        signed: Signed<'_>,
        signature: &[u8],
        algorithm: Option<SignatureAlgorithm>,
        version: u32,
    ) -> Result<Option<u32>, KmsError> {
        let message = signed.check()?;
        super::check_len("signature", signature.len(), model::MAX_SIGNATURE)?;
        let key = self.usable_key(call, key_id, Need::Asymmetric).await?;
        let sig_alg = pick(&key, algorithm)?;
        if matches!(message, Message::Digest(_)) && sig_alg == SignatureAlgorithm::Ed25519 {
            return Err(KmsError::FailedPrecondition("ed25519 keys verify messages, not digests".to_owned()));
        }
        let candidates: Vec<u32> = if version == 0 {
            key.versions.iter().rev().map(|v| v.version).collect()
        } else {
            vec![public_of(&key, version)?.1]
        };
        for v in candidates {
            let (public, v) = public_of(&key, v)?;
            if public.verify(sig_alg, message, signature).is_ok() {
                call.used_version(v);
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// The public key of one version (0: newest): SPKI DER, PEM, version,
    /// algorithm.
    pub async fn public_key(
        &self,
        call: &mut Call,
        key_id: &str,
        version: u32,
    ) -> Result<(Vec<u8>, String, u32, KeyAlgorithm), KmsError> {
        let key = self.usable_key(call, key_id, Need::Asymmetric).await?;
        let alg = algorithm_of(&key)?;
        let (public, v) = public_of(&key, version)?;
        call.used_version(v);
        Ok((public.spki_der().to_vec(), public.to_pem(), v, alg))
    }
}

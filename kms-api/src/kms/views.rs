//! Typed views of a usable key: what a use of a key gets once the caller
//! passed the keystore's policy and the key is enabled and of the right
//! type. Each view holds its versions already typed, so operations never
//! match on the material again.

use std::sync::Arc;

use skm_crypto::Secret32;
use skm_crypto::asym::{KeyAlgorithm, PrivateKey};
use skm_crypto::mac::{MacAlgorithm, MacKey};
use skm_crypto::rsa_oaep::{DecryptingKey, OaepKeySize};
use skm_store::Store;

use super::operation::Trail;
use super::{Kms, KmsError, parse_id};
use crate::access::CertState;
use crate::model::{self, Key, KeyState, Material, SecretValue, Version, Versions};

/// A typed view of a key.
pub(crate) trait View: Sized {
    /// What the operation needs, for the error when the key is another type.
    const WANTED: &'static str;

    /// The view, if the key is of this type.
    fn of(key: &Arc<Key>) -> Option<Self>;
}

/// An AES-256 key.
pub(crate) struct AesKey {
    pub(crate) key: Arc<Key>,
    pub(crate) versions: Arc<Versions<Secret32>>,
}

impl View for AesKey {
    const WANTED: &'static str = "an aes-256 key";

    fn of(key: &Arc<Key>) -> Option<Self> {
        match &key.material {
            Material::Aes256(versions) => Some(Self { key: key.clone(), versions: versions.clone() }),
            _ => None,
        }
    }
}

/// A signing key of one algorithm.
pub(crate) struct SigningKey {
    pub(crate) key: Arc<Key>,
    pub(crate) algorithm: KeyAlgorithm,
    pub(crate) versions: Arc<Versions<PrivateKey>>,
}

impl View for SigningKey {
    const WANTED: &'static str = "a signing key (ed25519, ecdsa-*, rsa-2048/3072/4096, ml-dsa-*)";

    fn of(key: &Arc<Key>) -> Option<Self> {
        match &key.material {
            Material::Signing { algorithm, versions } => {
                Some(Self { key: key.clone(), algorithm: *algorithm, versions: versions.clone() })
            }
            _ => None,
        }
    }
}

/// An HMAC key of one algorithm.
pub(crate) struct HmacKey {
    pub(crate) key: Arc<Key>,
    pub(crate) algorithm: MacAlgorithm,
    pub(crate) versions: Arc<Versions<MacKey>>,
}

impl View for HmacKey {
    const WANTED: &'static str = "an hmac key (hmac-sha256, hmac-sha384, hmac-sha512)";

    fn of(key: &Arc<Key>) -> Option<Self> {
        match &key.material {
            Material::Mac { algorithm, versions } => {
                Some(Self { key: key.clone(), algorithm: *algorithm, versions: versions.clone() })
            }
            _ => None,
        }
    }
}

/// An RSA encryption key of one size.
pub(crate) struct RsaDecryptKey {
    pub(crate) key: Arc<Key>,
    pub(crate) size: OaepKeySize,
    pub(crate) versions: Arc<Versions<DecryptingKey>>,
}

impl View for RsaDecryptKey {
    const WANTED: &'static str = "an rsa-oaep-* key (with algorithm RSAES_OAEP_SHA_256)";

    fn of(key: &Arc<Key>) -> Option<Self> {
        match &key.material {
            Material::Decrypting { size, versions } => {
                Some(Self { key: key.clone(), size: *size, versions: versions.clone() })
            }
            _ => None,
        }
    }
}

/// A key with a public half: a signing key or an RSA encryption key.
pub(crate) enum PublicKeyHolder {
    /// A signing key.
    Signing(SigningKey),
    /// An RSA encryption key.
    Decrypting(RsaDecryptKey),
}

impl View for PublicKeyHolder {
    const WANTED: &'static str = "an asymmetric key (ed25519, ecdsa-*, rsa-*, ml-dsa-*, rsa-oaep-*)";

    fn of(key: &Arc<Key>) -> Option<Self> {
        SigningKey::of(key).map(Self::Signing).or_else(|| RsaDecryptKey::of(key).map(Self::Decrypting))
    }
}

/// A secret.
pub(crate) struct SecretKey {
    pub(crate) key: Arc<Key>,
    pub(crate) versions: Arc<Versions<SecretValue>>,
}

impl View for SecretKey {
    const WANTED: &'static str = "a secret";

    fn of(key: &Arc<Key>) -> Option<Self> {
        match &key.material {
            Material::Secret(versions) => Some(Self { key: key.clone(), versions: versions.clone() }),
            _ => None,
        }
    }
}

/// The key as view `V`, or FAILED_PRECONDITION naming what it is and what
/// the operation needs.
pub(crate) fn typed<V: View>(key: &Arc<Key>) -> Result<V, KmsError> {
    V::of(key).ok_or_else(|| {
        KmsError::FailedPrecondition(format!(
            "key {} is {} key; this operation needs {}",
            key.id,
            model::a_kind(key.kind()),
            V::WANTED
        ))
    })
}

/// Version `version` of a key, or its newest when 0; NOT_FOUND naming the
/// key when it has no such version.
pub(crate) fn version<'a, M>(key: &Key, versions: &'a Versions<M>, version: u32) -> Result<&'a Version<M>, KmsError> {
    versions
        .get_or_newest(version)
        .ok_or_else(|| KmsError::NotFound(format!("key {} has no version {version}", key.id)))
}

/// The versions a verification tries: the one named, or the newest
/// [`model::VERIFY_ANY_VERSIONS`] (newest first) when `version` is 0, so
/// one call costs a bounded number of checks.
pub(crate) fn verify_candidates<'a, M>(
    key: &Key,
    versions: &'a Versions<M>,
    version: u32,
) -> Result<Vec<&'a Version<M>>, KmsError> {
    if version == 0 {
        Ok(versions.iter().rev().take(model::VERIFY_ANY_VERSIONS).collect())
    } else {
        Ok(vec![self::version(key, versions, version)?])
    }
}

/// The refusal of a use of an external key that has no material yet.
pub(crate) fn pending_import(id: &skm_crypto::Id) -> KmsError {
    KmsError::FailedPrecondition(format!(
        "key {id} has no key material yet (origin external): import it first (GetParametersForImport, then \
         ImportKeyMaterial; skm key import does both)"
    ))
}

impl<S: Store + Clone> Kms<S> {
    /// Loads a key for a use: the caller must pass its keystore's policy,
    /// the key must be enabled and of the type the use needs.
    pub(crate) async fn usable<V: View>(&self, trail: &mut Trail<'_>, key_id: &str) -> Result<V, KmsError> {
        let id = parse_id("key_id", key_id)?;
        let key = self.key(&id).await?;
        let keystore = self.keystore(&key.keystore_id).await?;
        if trail.caller().keystore_scope.as_ref().is_some_and(|scope| !scope.names(&keystore)) {
            return Err(super::not_found(&id));
        }
        trail.touch_key(&key);
        let certs =
            CertState { ca: &keystore.ca.cert_der, known: &keystore.certs, verified: Some(&self.verified_chains) };
        let facts = trail.caller().facts();
        match keystore.policy.check(facts, &certs, self.now()) {
            Ok(passed) => trail.passed(passed),
            Err(denied) => {
                tracing::warn!(key_id = %id, keystore_id = %keystore.id, client = ?facts.ip, reason = %denied, "key use denied");
                return Err(denied.into());
            }
        }
        match key.state {
            KeyState::Enabled => {}
            KeyState::Disabled => return Err(KmsError::FailedPrecondition(format!("key {id} is disabled"))),
            KeyState::PendingImport => return Err(pending_import(&id)),
            KeyState::PendingDeletion { deletion_at } => {
                return Err(KmsError::FailedPrecondition(format!(
                    "key {id} is pending deletion (destroyed at {deletion_at} unless cancelled)"
                )));
            }
        }
        let view = typed::<V>(&key)?;
        key.touch(self.now());
        Ok(view)
    }
}

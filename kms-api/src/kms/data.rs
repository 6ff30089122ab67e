//! Data operations on AES keys and secrets: encrypt, decrypt, data keys,
//! re-encryption, batches, secret values.

use skm_crypto::Secret32;
use skm_crypto::user::{self, Header};
use skm_store::Store;
use zeroize::Zeroizing;

use super::operation::{Effect, Operation, Subject, Trail};
use super::views::{self, AesKey, RsaDecryptKey, SecretKey};
use super::{Kms, KmsError, check_len, internal};
use crate::model;

/// One batch item's outcome.
pub type BatchItem<T> = Result<T, KmsError>;

/// Encrypt under a key's newest version.
#[derive(Debug)]
pub struct Encrypt {
    /// The AES key.
    pub key_id: String,
    /// At most [`model::MAX_PLAINTEXT`] bytes.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// Caller AAD, at most [`model::MAX_AAD`] bytes.
    pub aad: Vec<u8>,
}

/// A ciphertext and the key version that made it.
#[derive(Debug)]
pub struct Encrypted {
    /// The self-describing ciphertext.
    pub ciphertext: Vec<u8>,
    /// The key version used.
    pub key_version: u32,
}

/// Decrypt with the version the ciphertext names.
#[derive(Debug)]
pub struct Decrypt {
    /// The AES key.
    pub key_id: String,
    /// A ciphertext made by Encrypt.
    pub ciphertext: Vec<u8>,
    /// The AAD given to Encrypt.
    pub aad: Vec<u8>,
}

/// Decrypt an RSAES-OAEP-SHA-256 ciphertext with one version of an RSA
/// encryption key (the newest when `key_version` is 0). Audited as
/// `Decrypt`, the call it comes from.
#[derive(Debug)]
pub struct DecryptRsaOaep {
    /// The RSA encryption key.
    pub key_id: String,
    /// The RSA ciphertext.
    pub ciphertext: Vec<u8>,
    /// The version whose public key encrypted it, or 0.
    pub key_version: u32,
}

/// A Decrypt call as every plane receives it: SKM's own ciphertext, or an
/// RSA one. [`DecryptCall::new`] holds the rules of the fields that belong
/// to one form only, so that the planes say the same thing.
#[derive(Debug)]
pub enum DecryptCall {
    /// SKM's format under an AES key.
    Aes(Decrypt),
    /// RSAES-OAEP-SHA-256 under an RSA encryption key.
    RsaOaep(DecryptRsaOaep),
}

impl DecryptCall {
    /// The call for `rsa_oaep` (the algorithm named) or SKM's format: AAD
    /// only with SKM's, `key_version` only with RSA's (SKM ciphertexts name
    /// their version).
    pub fn new(
        key_id: String,
        ciphertext: Vec<u8>,
        aad: Vec<u8>,
        rsa_oaep: bool,
        key_version: u32,
    ) -> Result<Self, KmsError> {
        if rsa_oaep {
            if !aad.is_empty() {
                return Err(KmsError::InvalidArgument(
                    "aad: ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256 takes none".into(),
                ));
            }
            return Ok(Self::RsaOaep(DecryptRsaOaep { key_id, ciphertext, key_version }));
        }
        if key_version != 0 {
            return Err(KmsError::InvalidArgument(
                "key_version: only with ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256 (SKM ciphertexts name their version)"
                    .into(),
            ));
        }
        Ok(Self::Aes(Decrypt { key_id, ciphertext, aad }))
    }
}

/// A plaintext and the key version that opened it.
#[derive(Debug)]
pub struct Decrypted {
    /// The plaintext.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The key version used.
    pub key_version: u32,
}

/// A fresh 256-bit data key, in the clear and encrypted under the key's
/// newest version.
#[derive(Debug)]
pub struct GenerateDataKey {
    /// The AES key.
    pub key_id: String,
    /// AAD bound into the encrypted data key.
    pub aad: Vec<u8>,
    /// Whether the plaintext is returned (`GenerateDataKeyWithoutPlaintext`
    /// when false).
    pub with_plaintext: bool,
    /// What the ciphertext holds.
    pub sealed_as: DataKeyForm,
}

/// What a generated data key's ciphertext decrypts to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DataKeyForm {
    /// The 32 key bytes (SKM's own planes).
    #[default]
    Bytes,
    /// The key's standard base64 text, 44 characters: the modelled
    /// service's `create-local-key`, whose clients decrypt the ciphertext
    /// with its text decrypt call and get back `localKeyPlaintext`.
    Base64Text,
}

/// A generated data key.
#[derive(Debug)]
pub struct DataKey {
    /// The key in the clear (absent for the without-plaintext variant).
    pub plaintext: Option<Secret32>,
    /// The key encrypted under the AES key (a normal ciphertext).
    pub ciphertext: Vec<u8>,
    /// Key version used.
    pub key_version: u32,
}

/// Decrypt and encrypt again under the newest version.
#[derive(Debug)]
pub struct ReEncrypt {
    /// The AES key.
    pub key_id: String,
    /// A ciphertext of that key.
    pub ciphertext: Vec<u8>,
    /// Its AAD (kept for the new ciphertext).
    pub aad: Vec<u8>,
}

/// The new ciphertext, and the versions it came from and went to.
#[derive(Debug)]
pub struct ReEncrypted {
    /// The new ciphertext.
    pub ciphertext: Vec<u8>,
    /// The version that opened the old one.
    pub source_key_version: u32,
    /// The version that made the new one.
    pub key_version: u32,
}

/// Encrypt several items, each on its own (and audited on its own).
#[derive(Debug)]
pub struct BatchEncrypt {
    /// 1..=[`model::MAX_BATCH`] items.
    pub items: Vec<Encrypt>,
}

/// Decrypt several items, each on its own (and audited on its own).
#[derive(Debug)]
pub struct BatchDecrypt {
    /// 1..=[`model::MAX_BATCH`] items.
    pub items: Vec<Decrypt>,
}

/// A secret's value: the newest version, or `version` when non-zero.
#[derive(Debug)]
pub struct GetSecret {
    /// The secret.
    pub key_id: String,
    /// 0 for the newest.
    pub version: u32,
}

/// A secret's value and its version.
#[derive(Debug)]
pub struct SecretValue {
    /// The value.
    pub value: Zeroizing<Vec<u8>>,
    /// Its version.
    pub version: u32,
}

impl AesKey {
    fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Result<Encrypted, KmsError> {
        let newest = self.versions.newest();
        let header = Header { key_id: self.key.id, version: newest.version };
        let ciphertext = user::encrypt(&newest.material, header, plaintext, aad).map_err(internal)?;
        Ok(Encrypted { ciphertext, key_version: newest.version })
    }

    fn decrypt(&self, ciphertext: &[u8], aad: &[u8]) -> Result<Decrypted, KmsError> {
        let header = Header::parse(ciphertext).map_err(|_| KmsError::DecryptFailed)?;
        if header.key_id != self.key.id {
            return Err(KmsError::DecryptFailed);
        }
        let version = self.versions.get(header.version).ok_or(KmsError::DecryptFailed)?;
        let plaintext = user::decrypt(&version.material, ciphertext, aad).map_err(|_| KmsError::DecryptFailed)?;
        Ok(Decrypted { plaintext, key_version: version.version })
    }
}

fn check_decrypt_input(ciphertext: &[u8], aad: &[u8]) -> Result<(), KmsError> {
    check_len("ciphertext", ciphertext.len(), model::MAX_CIPHERTEXT)?;
    check_len("aad", aad.len(), model::MAX_AAD)
}

fn check_batch(len: usize) -> Result<(), KmsError> {
    if len == 0 || len > model::MAX_BATCH {
        return Err(KmsError::InvalidArgument(format!(
            "items has {len} entries; a batch takes 1..={}",
            model::MAX_BATCH
        )));
    }
    Ok(())
}

impl Operation for Encrypt {
    const NAME: &'static str = "Encrypt";
    const EFFECT: Effect = Effect::Use;
    type Output = Encrypted;

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    fn check(&self) -> Result<(), KmsError> {
        check_len("plaintext", self.plaintext.len(), model::MAX_PLAINTEXT)?;
        check_len("aad", self.aad.len(), model::MAX_AAD)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Encrypted, KmsError> {
        let key: AesKey = kms.usable(trail, &self.key_id).await?;
        let encrypted = key.encrypt(&self.plaintext, &self.aad)?;
        trail.used_version(encrypted.key_version);
        Ok(encrypted)
    }
}

impl Operation for Decrypt {
    const NAME: &'static str = "Decrypt";
    const EFFECT: Effect = Effect::Use;
    type Output = Decrypted;

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    fn check(&self) -> Result<(), KmsError> {
        check_decrypt_input(&self.ciphertext, &self.aad)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Decrypted, KmsError> {
        let key: AesKey = kms.usable(trail, &self.key_id).await?;
        let decrypted = key.decrypt(&self.ciphertext, &self.aad)?;
        trail.used_version(decrypted.key_version);
        Ok(decrypted)
    }
}

impl Operation for DecryptRsaOaep {
    const NAME: &'static str = "Decrypt";
    const EFFECT: Effect = Effect::Use;
    type Output = Decrypted;

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    fn check(&self) -> Result<(), KmsError> {
        check_len("ciphertext", self.ciphertext.len(), model::MAX_RSA_CIPHERTEXT)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Decrypted, KmsError> {
        let key: RsaDecryptKey = kms.usable(trail, &self.key_id).await?;
        let version = views::version(&key.key, &key.versions, self.key_version)?;
        // One answer for every failure: no padding oracle.
        let plaintext = version.material.decrypt(&self.ciphertext).map_err(|_| KmsError::DecryptFailed)?;
        trail.used_version(version.version);
        Ok(Decrypted { plaintext, key_version: version.version })
    }
}

impl Operation for GenerateDataKey {
    const NAME: &'static str = "GenerateDataKey";
    const EFFECT: Effect = Effect::Use;
    type Output = DataKey;

    fn name(&self) -> &'static str {
        if self.with_plaintext { Self::NAME } else { "GenerateDataKeyWithoutPlaintext" }
    }

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    fn check(&self) -> Result<(), KmsError> {
        check_len("aad", self.aad.len(), model::MAX_AAD)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<DataKey, KmsError> {
        let key: AesKey = kms.usable(trail, &self.key_id).await?;
        let data_key = Secret32::generate().map_err(internal)?;
        let sealed = match self.sealed_as {
            DataKeyForm::Bytes => Zeroizing::new(data_key.danger_expose().to_vec()),
            DataKeyForm::Base64Text => Zeroizing::new(data_key.to_base64().as_bytes().to_vec()),
        };
        let Encrypted { ciphertext, key_version } = key.encrypt(&sealed, &self.aad)?;
        trail.used_version(key_version);
        Ok(DataKey { plaintext: self.with_plaintext.then_some(data_key), ciphertext, key_version })
    }
}

impl Operation for ReEncrypt {
    const NAME: &'static str = "ReEncrypt";
    const EFFECT: Effect = Effect::Use;
    type Output = ReEncrypted;

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    fn check(&self) -> Result<(), KmsError> {
        check_decrypt_input(&self.ciphertext, &self.aad)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<ReEncrypted, KmsError> {
        let key: AesKey = kms.usable(trail, &self.key_id).await?;
        let old = key.decrypt(&self.ciphertext, &self.aad)?;
        let new = key.encrypt(&old.plaintext, &self.aad)?;
        trail.used_version(new.key_version);
        Ok(ReEncrypted {
            ciphertext: new.ciphertext,
            source_key_version: old.key_version,
            key_version: new.key_version,
        })
    }
}

impl Operation for BatchEncrypt {
    const NAME: &'static str = "BatchEncrypt";
    const EFFECT: Effect = Effect::Batch;
    type Output = Vec<BatchItem<Encrypted>>;

    fn check(&self) -> Result<(), KmsError> {
        check_batch(self.items.len())
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Self::Output, KmsError> {
        Ok(kms.execute_items(Self::NAME, trail.caller(), self.items).await)
    }
}

impl Operation for BatchDecrypt {
    const NAME: &'static str = "BatchDecrypt";
    const EFFECT: Effect = Effect::Batch;
    type Output = Vec<BatchItem<Decrypted>>;

    fn check(&self) -> Result<(), KmsError> {
        check_batch(self.items.len())
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Self::Output, KmsError> {
        Ok(kms.execute_items(Self::NAME, trail.caller(), self.items).await)
    }
}

impl Operation for GetSecret {
    const NAME: &'static str = "GetSecret";
    const EFFECT: Effect = Effect::Use;
    type Output = SecretValue;

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<SecretValue, KmsError> {
        let secret: SecretKey = kms.usable(trail, &self.key_id).await?;
        let v = secret.versions.get_or_newest(self.version).ok_or_else(|| {
            let (oldest, newest) = (secret.versions.oldest().version, secret.versions.newest().version);
            let kept = secret.key.secret_versions_kept().unwrap_or_default();
            let why = if self.version < oldest {
                format!("it was deleted: the secret keeps its newest {kept} versions (max_versions)")
            } else {
                format!("the newest is {newest}")
            };
            KmsError::NotFound(format!(
                "secret {} has no version {}; {why}; versions {oldest}..={newest} are retained",
                secret.key.id, self.version
            ))
        })?;
        trail.used_version(v.version);
        Ok(SecretValue { value: Zeroizing::new(v.material.to_vec()), version: v.version })
    }
}

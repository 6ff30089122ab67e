//! Data operations on AES keys and secrets: encrypt, decrypt, data keys,
//! re-encryption, batches, secret values.

use skm_crypto::Secret32;
use skm_crypto::user::{self, Header};
use zeroize::Zeroizing;

use super::{Call, Kms, KmsError, Need, check_len, internal};
use crate::model::{self, Key, Material};

/// One batch item's outcome.
pub type BatchItem<T> = Result<T, KmsError>;

/// A generated data key.
#[derive(Debug)]
pub struct DataKey {
    /// The key in the clear (absent for the without-plaintext variant).
    pub plaintext: Option<Secret32>,
    /// The key encrypted under the AES key (a normal ciphertext).
    pub ciphertext: Vec<u8>,
    /// Key version used.
    pub version: u32,
}

fn aes_encrypt(key: &Key, plaintext: &[u8], aad: &[u8]) -> Result<(Vec<u8>, u32), KmsError> {
    let newest = key.newest().ok_or_else(|| KmsError::FailedPrecondition(format!("key {} has no version", key.id)))?;
    let Material::Aes256(material) = &newest.material else {
        return Err(KmsError::FailedPrecondition(format!("key {} is not an aes-256 key", key.id)));
    };
    let header = Header { key_id: key.id, version: newest.version };
    let ciphertext = user::encrypt(material, header, plaintext, aad).map_err(internal)?;
    Ok((ciphertext, newest.version))
}

fn aes_decrypt(key: &Key, ciphertext: &[u8], aad: &[u8]) -> Result<(Zeroizing<Vec<u8>>, u32), KmsError> {
    let header = Header::parse(ciphertext).map_err(|_| KmsError::DecryptFailed)?;
    if header.key_id != key.id {
        return Err(KmsError::DecryptFailed);
    }
    let version = key.version(header.version).ok_or(KmsError::DecryptFailed)?;
    let Material::Aes256(material) = &version.material else { return Err(KmsError::DecryptFailed) };
    let plaintext = user::decrypt(material, ciphertext, aad).map_err(|_| KmsError::DecryptFailed)?;
    Ok((plaintext, version.version))
}

fn check_encrypt_input(plaintext: &[u8], aad: &[u8]) -> Result<(), KmsError> {
    check_len("plaintext", plaintext.len(), model::MAX_PLAINTEXT)?;
    check_len("aad", aad.len(), model::MAX_AAD)
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

impl Kms {
    /// Encrypts under the newest version.
    pub async fn encrypt(
        &self,
        call: &mut Call,
        key_id: &str,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<(Vec<u8>, u32), KmsError> {
        check_encrypt_input(plaintext, aad)?;
        let key = self.usable_key(call, key_id, Need::Aes).await?;
        let (ciphertext, version) = aes_encrypt(&key, plaintext, aad)?;
        call.used_version(version);
        Ok((ciphertext, version))
    }

    /// Decrypts with the version the ciphertext names.
    pub async fn decrypt(
        &self,
        call: &mut Call,
        key_id: &str,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, u32), KmsError> {
        check_decrypt_input(ciphertext, aad)?;
        let key = self.usable_key(call, key_id, Need::Aes).await?;
        let (plaintext, version) = aes_decrypt(&key, ciphertext, aad)?;
        call.used_version(version);
        Ok((plaintext, version))
    }

    /// A fresh 256-bit data key, in the clear (unless `without_plaintext`)
    /// and encrypted under the key's newest version.
    pub async fn generate_data_key(
        &self,
        call: &mut Call,
        key_id: &str,
        aad: &[u8],
        without_plaintext: bool,
    ) -> Result<DataKey, KmsError> {
        check_len("aad", aad.len(), model::MAX_AAD)?;
        let key = self.usable_key(call, key_id, Need::Aes).await?;
        let data_key = Secret32::generate().map_err(internal)?;
        let (ciphertext, version) = aes_encrypt(&key, data_key.danger_expose(), aad)?;
        call.used_version(version);
        Ok(DataKey { plaintext: (!without_plaintext).then_some(data_key), ciphertext, version })
    }

    /// Decrypts and encrypts again under the newest version, returning only
    /// the new ciphertext, the old version and the new one.
    pub async fn re_encrypt(
        &self,
        call: &mut Call,
        key_id: &str,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<(Vec<u8>, u32, u32), KmsError> {
        check_decrypt_input(ciphertext, aad)?;
        let key = self.usable_key(call, key_id, Need::Aes).await?;
        let (plaintext, source_version) = aes_decrypt(&key, ciphertext, aad)?;
        let (ciphertext, version) = aes_encrypt(&key, &plaintext, aad)?;
        call.used_version(version);
        Ok((ciphertext, source_version, version))
    }

    /// Encrypts each item on its own; each item is audited on its own.
    pub async fn batch_encrypt(
        &self,
        template: &Call,
        items: &[(String, Vec<u8>, Vec<u8>)],
    ) -> Result<Vec<BatchItem<(Vec<u8>, u32)>>, KmsError> {
        check_batch(items.len())?;
        let mut done = Vec::with_capacity(items.len());
        for (key_id, plaintext, aad) in items {
            let mut call = template.clone();
            let result = self.encrypt(&mut call, key_id, plaintext, aad).await;
            done.push((call, result));
        }
        Ok(self.finish_many(done).await)
    }

    /// Decrypts each item on its own; each item is audited on its own.
    pub async fn batch_decrypt(
        &self,
        template: &Call,
        items: &[(String, Vec<u8>, Vec<u8>)],
    ) -> Result<Vec<BatchItem<(Zeroizing<Vec<u8>>, u32)>>, KmsError> {
        check_batch(items.len())?;
        let mut done = Vec::with_capacity(items.len());
        for (key_id, ciphertext, aad) in items {
            let mut call = template.clone();
            let result = self.decrypt(&mut call, key_id, ciphertext, aad).await;
            done.push((call, result));
        }
        Ok(self.finish_many(done).await)
    }

    /// A secret's value: the newest version, or `version` when non-zero.
    pub async fn get_secret(
        &self,
        call: &mut Call,
        key_id: &str,
        version: u32,
    ) -> Result<(Zeroizing<Vec<u8>>, u32), KmsError> {
        let key = self.usable_key(call, key_id, Need::Secret).await?;
        let v = if version == 0 { key.newest() } else { key.version(version) }
            .ok_or_else(|| KmsError::NotFound(format!("secret {} has no version {version}", key.id)))?;
        let Material::Secret(value) = &v.material else {
            return Err(KmsError::FailedPrecondition(format!("key {} is not a secret", key.id)));
        };
        call.used_version(v.version);
        Ok((Zeroizing::new(value.to_vec()), v.version))
    }
}

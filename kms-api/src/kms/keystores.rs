//! Keystores: creation with their own client CA, policy changes, deletion,
//! and the client certificates they accept.

use std::sync::Arc;

use skm_crypto::Id;
use skm_runtime::pki::client::{KeystoreCa, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN};
use zeroize::Zeroizing;

use super::{Cache, Call, Kms, KmsError, internal, parse_id};
use crate::access::{KnownCert, Policy, PolicyInput};
use crate::model::{self, KEYSTORE_CA_DAYS, Keystore, KeystoreCaFiles, MAX_CERT_DAYS};
use crate::records::RecordError;

/// A client certificate just issued, as PKCS#12.
pub struct IssuedCertificate {
    /// PKCS#12 holding certificate, private key and CA certificate.
    pub pkcs12: Vec<u8>,
    /// SHA-256 of the certificate, lowercase hex.
    pub sha256: String,
    /// Expiry, seconds since the epoch.
    pub not_after: i64,
}

impl std::fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCertificate").field("sha256", &self.sha256).finish_non_exhaustive()
    }
}

fn ca_files(ca: &KeystoreCa) -> KeystoreCaFiles {
    KeystoreCaFiles { cert_pem: ca.cert_pem().to_owned(), cert_der: ca.cert_der().clone(), key_pem: ca.key_pem() }
}

/// Normalises a SHA-256 fingerprint: 64 hex digits, colons allowed.
fn fingerprint(value: &str) -> Result<String, KmsError> {
    let hex: String = value.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(KmsError::InvalidArgument(format!(
            "sha256: {value:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
        )));
    }
    Ok(hex)
}

impl Kms {
    /// Creates a keystore with its own client CA.
    pub async fn create_keystore(
        &self,
        call: &mut Call,
        name: &str,
        policy: &PolicyInput,
    ) -> Result<Keystore, KmsError> {
        model::check_name("name", name).map_err(KmsError::InvalidArgument)?;
        let policy = Policy::parse(policy).map_err(KmsError::InvalidArgument)?;
        let ca_name = name.to_owned();
        let ca = tokio::task::spawn_blocking(move || KeystoreCa::generate(&ca_name, KEYSTORE_CA_DAYS))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        let ks = Keystore {
            id: Id::generate().map_err(internal)?,
            name: name.to_owned(),
            policy,
            created_at: self.now(),
            ca: ca_files(&ca),
            certs: Vec::new(),
        };
        call.touch_keystore(ks.id);
        match self.records.create_keystore(&ks).await {
            Ok(()) => Ok(ks),
            Err(RecordError::Conflict(_)) => {
                Err(KmsError::AlreadyExists(format!("a keystore named {name:?} already exists")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every keystore, by name.
    pub async fn list_keystores(&self) -> Result<Vec<Keystore>, KmsError> {
        Ok(self.records.keystores().await?)
    }

    /// One keystore (cached).
    pub(crate) async fn keystore(&self, id: &Id) -> Result<Arc<Keystore>, KmsError> {
        if let Some(ks) = Cache::get(&self.cache.keystores, id) {
            return Ok(ks);
        }
        let (ks, revision) =
            self.records.keystore(id).await?.ok_or_else(|| KmsError::NotFound(format!("keystore {id} not found")))?;
        let ks = Arc::new(ks);
        self.cache.put(&self.cache.keystores, *id, revision, ks.clone());
        Ok(ks)
    }

    /// One keystore by its id string.
    pub async fn get_keystore(&self, keystore_id: &str) -> Result<Arc<Keystore>, KmsError> {
        self.keystore(&parse_id("keystore_id", keystore_id)?).await
    }

    /// Read-modify-CAS on a keystore; the change is visible to the next
    /// request (the cache entry is replaced).
    async fn mutate_keystore<F>(
        &self,
        call: &mut Call,
        keystore_id: &str,
        mut change: F,
    ) -> Result<Arc<Keystore>, KmsError>
    where
        F: FnMut(&mut Keystore) -> Result<(), KmsError>,
    {
        let id = parse_id("keystore_id", keystore_id)?;
        call.touch_keystore(id);
        for _ in 0..16 {
            let (mut ks, revision) = self
                .records
                .keystore(&id)
                .await?
                .ok_or_else(|| KmsError::NotFound(format!("keystore {id} not found")))?;
            change(&mut ks)?;
            match self.records.update_keystore(&ks, revision).await {
                Ok(()) => {
                    let ks = Arc::new(ks);
                    self.cache.put(&self.cache.keystores, id, revision + 1, ks.clone());
                    return Ok(ks);
                }
                Err(RecordError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(KmsError::Aborted)
    }

    /// Replaces a keystore's policy.
    pub async fn update_keystore(
        &self,
        call: &mut Call,
        keystore_id: &str,
        policy: &PolicyInput,
    ) -> Result<Arc<Keystore>, KmsError> {
        let policy = Policy::parse(policy).map_err(KmsError::InvalidArgument)?;
        self.mutate_keystore(call, keystore_id, |ks| {
            ks.policy = policy.clone();
            Ok(())
        })
        .await
    }

    /// Deletes a keystore that holds no keys or secrets.
    pub async fn delete_keystore(&self, call: &mut Call, keystore_id: &str) -> Result<(), KmsError> {
        let id = parse_id("keystore_id", keystore_id)?;
        call.touch_keystore(id);
        let (ks, revision) =
            self.records.keystore(&id).await?.ok_or_else(|| KmsError::NotFound(format!("keystore {id} not found")))?;
        let keys = self.records.key_ids_in(&id).await?;
        if !keys.is_empty() {
            return Err(KmsError::FailedPrecondition(format!(
                "keystore {id} still holds {} keys or secrets; delete them first",
                keys.len()
            )));
        }
        match self.records.delete_keystore(&ks, revision).await {
            Ok(()) => {}
            Err(RecordError::Conflict(_)) => return Err(KmsError::Aborted),
            Err(e) => return Err(e.into()),
        }
        Cache::remove(&self.cache.keystores, &id);
        Ok(())
    }

    /// Issues a client certificate from the keystore's CA as PKCS#12.
    pub async fn issue_client_certificate(
        &self,
        call: &mut Call,
        keystore_id: &str,
        name: &str,
        days: u32,
        password: Zeroizing<String>,
    ) -> Result<IssuedCertificate, KmsError> {
        model::check_name("name", name).map_err(KmsError::InvalidArgument)?;
        let days = if days == 0 { 365 } else { days };
        if days > MAX_CERT_DAYS {
            return Err(KmsError::InvalidArgument(format!("days is {days}; the limit is {MAX_CERT_DAYS}")));
        }
        if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&password.len()) {
            return Err(KmsError::InvalidArgument(format!(
                "password is {} bytes; it must be {MIN_PASSWORD_LEN}..={MAX_PASSWORD_LEN}",
                password.len()
            )));
        }
        let ks = self.get_keystore(keystore_id).await?;
        call.touch_keystore(ks.id);
        if ks.certs.iter().any(|c| c.name == name) {
            return Err(KmsError::AlreadyExists(format!(
                "keystore {} already has a certificate named {name:?}",
                ks.id
            )));
        }
        let (cert_pem, key_pem, cn) = (ks.ca.cert_pem.clone(), ks.ca.key_pem.clone(), name.to_owned());
        // PKCS#12 key derivation (600,000 PBKDF2 rounds) takes CPU time.
        let issued = tokio::task::spawn_blocking(move || {
            KeystoreCa::load(&cert_pem, &key_pem).and_then(|ca| ca.issue_client(&cn, days, &password))
        })
        .await
        .map_err(internal)?
        .map_err(|e| match e {
            skm_runtime::pki::PkiError::PasswordLength | skm_runtime::pki::PkiError::PasswordCharacters => {
                KmsError::InvalidArgument(format!("password: {e}"))
            }
            skm_runtime::pki::PkiError::CommonName => KmsError::InvalidArgument(format!("name: {e}")),
            other => internal(other),
        })?;
        let known = KnownCert {
            name: name.to_owned(),
            sha256: issued.fingerprint_sha256.clone(),
            issued: true,
            not_after: issued.not_after,
            revoked: false,
        };
        self.mutate_keystore(call, keystore_id, |ks| {
            if ks.certs.iter().any(|c| c.name == known.name) {
                return Err(KmsError::AlreadyExists(format!(
                    "keystore {} already has a certificate named {:?}",
                    ks.id, known.name
                )));
            }
            ks.certs.push(known.clone());
            Ok(())
        })
        .await?;
        Ok(IssuedCertificate { pkcs12: issued.pkcs12, sha256: issued.fingerprint_sha256, not_after: issued.not_after })
    }

    /// Registers an external client certificate by fingerprint.
    pub async fn register_client_certificate(
        &self,
        call: &mut Call,
        keystore_id: &str,
        name: &str,
        sha256: &str,
    ) -> Result<Arc<Keystore>, KmsError> {
        model::check_name("name", name).map_err(KmsError::InvalidArgument)?;
        let sha256 = fingerprint(sha256)?;
        self.mutate_keystore(call, keystore_id, |ks| {
            if ks.certs.iter().any(|c| c.name == name || c.sha256 == sha256) {
                return Err(KmsError::AlreadyExists(format!(
                    "keystore {} already knows a certificate named {name:?} or with that fingerprint",
                    ks.id
                )));
            }
            ks.certs.push(KnownCert {
                name: name.to_owned(),
                sha256: sha256.clone(),
                issued: false,
                not_after: 0,
                revoked: false,
            });
            Ok(())
        })
        .await
    }

    /// Revokes a client certificate, named or by fingerprint.
    pub async fn revoke_client_certificate(
        &self,
        call: &mut Call,
        keystore_id: &str,
        certificate: &str,
    ) -> Result<Arc<Keystore>, KmsError> {
        let by_sha = fingerprint(certificate).ok();
        self.mutate_keystore(call, keystore_id, |ks| {
            let cert = ks
                .certs
                .iter_mut()
                .find(|c| c.name == certificate || by_sha.as_deref() == Some(c.sha256.as_str()))
                .ok_or_else(|| KmsError::NotFound(format!("keystore has no certificate {certificate:?}")))?;
            cert.revoked = true;
            Ok(())
        })
        .await
    }

    /// Revokes an operator certificate on the admin port.
    pub async fn revoke_operator(&self, sha256: &str) -> Result<String, KmsError> {
        let sha256 = fingerprint(sha256)?;
        self.records.revoke_operator(&sha256).await?;
        Ok(sha256)
    }

    /// Operator certificates revoked so far.
    pub async fn revoked_operators(&self) -> Result<Vec<String>, KmsError> {
        Ok(self.records.revoked_operators().await?)
    }
}

//! Keystores: creation with their own client CA, policy changes, deletion,
//! and the client certificates they accept.

use std::sync::Arc;

use skm_crypto::Id;
use skm_pki::client::{KeystoreCa, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN};
use skm_store::Store;
use zeroize::Zeroizing;

use super::operation::{Effect, Operation, Subject, Trail};
use super::{Kms, KmsError, internal, parse_id};
use crate::access::{KnownCert, Policy, PolicyInput};
use crate::model::{self, KEYSTORE_CA_DAYS, Keystore, KeystoreCaFiles, MAX_CERT_DAYS};
use crate::records::{Receipt, RecordError};

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
pub(super) fn fingerprint(value: &str) -> Result<String, KmsError> {
    let hex: String = value.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(KmsError::InvalidArgument(format!(
            "sha256: {value:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
        )));
    }
    Ok(hex)
}

/// Create a keystore with its own client CA.
#[derive(Debug)]
pub struct CreateKeystore {
    /// Unique name.
    pub name: String,
    /// Its access policy.
    pub policy: PolicyInput,
    /// A unique alias ([`model::check_alias`]), if any.
    pub alias: Option<String>,
}

/// Every keystore, by name.
#[derive(Debug)]
pub struct ListKeystores;

/// One keystore.
#[derive(Debug)]
pub struct GetKeystore {
    /// Its id.
    pub keystore_id: String,
}

/// Replace a keystore's policy.
#[derive(Debug)]
pub struct UpdateKeystore {
    /// Its id.
    pub keystore_id: String,
    /// The new policy; `None` keeps the old one.
    pub policy: Option<PolicyInput>,
    /// `Some(Some(a))` sets alias `a`, `Some(None)` removes it, `None`
    /// keeps it.
    pub alias: Option<Option<String>>,
}

/// The error of a keystore write that found a name or alias taken.
fn taken(key: &str, name: &str, alias: Option<&str>) -> KmsError {
    if key.starts_with("ksalias/") {
        KmsError::AlreadyExists(format!("the alias {:?} is taken by another keystore", alias.unwrap_or_default()))
    } else {
        KmsError::AlreadyExists(format!("a keystore named {name:?} already exists"))
    }
}

/// Delete a keystore that holds no keys or secrets.
#[derive(Debug)]
pub struct DeleteKeystore {
    /// Its id.
    pub keystore_id: String,
}

/// Issue a client certificate from the keystore's CA, as PKCS#12.
pub struct IssueClientCertificate {
    /// The keystore.
    pub keystore_id: String,
    /// The certificate's name (and common name).
    pub name: String,
    /// Lifetime in days; 0 for 365.
    pub days: u32,
    /// The PKCS#12 password.
    pub password: Zeroizing<String>,
}

impl std::fmt::Debug for IssueClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssueClientCertificate").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Register an external client certificate by its SHA-256 fingerprint.
#[derive(Debug)]
pub struct RegisterClientCertificate {
    /// The keystore.
    pub keystore_id: String,
    /// A name for it.
    pub name: String,
    /// 64 hex digits, colons allowed.
    pub sha256: String,
}

/// Revoke a client certificate, named or by fingerprint.
#[derive(Debug)]
pub struct RevokeClientCertificate {
    /// The keystore.
    pub keystore_id: String,
    /// Its name or SHA-256.
    pub certificate: String,
}

impl Operation for CreateKeystore {
    const NAME: &'static str = "CreateKeystore";
    const EFFECT: Effect = Effect::Change;
    type Output = Arc<Keystore>;

    async fn replay<S: Store + Clone>(kms: &Kms<S>, receipt: &Receipt) -> Result<Arc<Keystore>, KmsError> {
        kms.replayed_keystore(receipt).await
    }

    fn check(&self) -> Result<(), KmsError> {
        model::check_name("name", &self.name).map_err(KmsError::InvalidArgument)?;
        if let Some(alias) = &self.alias {
            model::check_alias("alias", alias).map_err(KmsError::InvalidArgument)?;
        }
        Policy::parse(&self.policy).map(|_| ()).map_err(KmsError::InvalidArgument)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Arc<Keystore>, KmsError> {
        let policy = Policy::parse(&self.policy).map_err(KmsError::InvalidArgument)?;
        let ca_name = self.name.clone();
        let ca = tokio::task::spawn_blocking(move || KeystoreCa::generate(&ca_name, KEYSTORE_CA_DAYS))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        let ks = Keystore {
            id: Id::generate().map_err(internal)?,
            name: self.name,
            policy,
            created_at: kms.now(),
            ca: ca_files(&ca),
            certs: Vec::new(),
            alias: self.alias,
        };
        trail.touch_keystore(ks.id);
        match kms.records.create_keystore(&ks).await {
            Ok(()) => Ok(Arc::new(ks)),
            Err(RecordError::Conflict(key)) => Err(taken(&key, &ks.name, ks.alias.as_deref())),
            Err(e) => Err(e.into()),
        }
    }
}

impl Operation for ListKeystores {
    const NAME: &'static str = "ListKeystores";
    const EFFECT: Effect = Effect::Read;
    type Output = Vec<Keystore>;

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, _trail: &mut Trail<'_>) -> Result<Vec<Keystore>, KmsError> {
        Ok(kms.records.keystores().await?)
    }
}

impl Operation for GetKeystore {
    const NAME: &'static str = "GetKeystore";
    const EFFECT: Effect = Effect::Read;
    type Output = Arc<Keystore>;

    fn subject(&self) -> Subject<'_> {
        Subject::Keystore(&self.keystore_id)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, _trail: &mut Trail<'_>) -> Result<Arc<Keystore>, KmsError> {
        kms.keystore(&parse_id("keystore_id", &self.keystore_id)?).await
    }
}

impl Operation for UpdateKeystore {
    const NAME: &'static str = "UpdateKeystore";
    const EFFECT: Effect = Effect::Change;
    type Output = Arc<Keystore>;

    async fn replay<S: Store + Clone>(kms: &Kms<S>, receipt: &Receipt) -> Result<Arc<Keystore>, KmsError> {
        kms.replayed_keystore(receipt).await
    }

    fn subject(&self) -> Subject<'_> {
        Subject::Keystore(&self.keystore_id)
    }

    fn check(&self) -> Result<(), KmsError> {
        if let Some(Some(alias)) = &self.alias {
            model::check_alias("alias", alias).map_err(KmsError::InvalidArgument)?;
        }
        match &self.policy {
            Some(policy) => Policy::parse(policy).map(|_| ()).map_err(KmsError::InvalidArgument),
            None if self.alias.is_some() => Ok(()),
            None => Err(KmsError::InvalidArgument("policy is required (or alias, to change only that)".into())),
        }
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, _trail: &mut Trail<'_>) -> Result<Arc<Keystore>, KmsError> {
        let policy = self.policy.as_ref().map(Policy::parse).transpose().map_err(KmsError::InvalidArgument)?;
        kms.mutate_keystore(&self.keystore_id, |ks| {
            if let Some(policy) = &policy {
                ks.policy = policy.clone();
            }
            if let Some(alias) = &self.alias {
                ks.alias = alias.clone();
            }
            Ok(())
        })
        .await
    }
}

impl Operation for DeleteKeystore {
    const NAME: &'static str = "DeleteKeystore";
    const EFFECT: Effect = Effect::Change;
    type Output = ();

    async fn replay<S: Store + Clone>(kms: &Kms<S>, receipt: &Receipt) -> Result<(), KmsError> {
        let _ = (kms, receipt);
        Ok(())
    }

    fn subject(&self) -> Subject<'_> {
        Subject::Keystore(&self.keystore_id)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, _trail: &mut Trail<'_>) -> Result<(), KmsError> {
        let id = parse_id("keystore_id", &self.keystore_id)?;
        let (ks, revision) =
            kms.records.keystore(&id).await?.ok_or_else(|| KmsError::NotFound(format!("keystore {id} not found")))?;
        let keys = kms.records.key_ids_in(&id).await?;
        if !keys.is_empty() {
            return Err(KmsError::FailedPrecondition(format!(
                "keystore {id} still holds {} keys or secrets; delete them first",
                keys.len()
            )));
        }
        match kms.records.delete_keystore(&ks, revision).await {
            Ok(()) => {}
            Err(RecordError::Conflict(_)) => return Err(KmsError::Aborted),
            Err(e) => return Err(e.into()),
        }
        kms.cache.invalidate_keystore(&id);
        Ok(())
    }
}

impl Operation for IssueClientCertificate {
    const NAME: &'static str = "IssueClientCertificate";
    const EFFECT: Effect = Effect::Change;
    type Output = IssuedCertificate;

    fn subject(&self) -> Subject<'_> {
        Subject::Keystore(&self.keystore_id)
    }

    fn check(&self) -> Result<(), KmsError> {
        model::check_name("name", &self.name).map_err(KmsError::InvalidArgument)?;
        if self.days > MAX_CERT_DAYS {
            return Err(KmsError::InvalidArgument(format!("days is {}; the limit is {MAX_CERT_DAYS}", self.days)));
        }
        if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&self.password.len()) {
            return Err(KmsError::InvalidArgument(format!(
                "password is {} bytes; it must be {MIN_PASSWORD_LEN}..={MAX_PASSWORD_LEN}",
                self.password.len()
            )));
        }
        Ok(())
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, _trail: &mut Trail<'_>) -> Result<IssuedCertificate, KmsError> {
        let days = if self.days == 0 { 365 } else { self.days };
        let ks = kms.keystore(&parse_id("keystore_id", &self.keystore_id)?).await?;
        let name = self.name;
        if ks.certs.iter().any(|c| c.name == name) {
            return Err(KmsError::AlreadyExists(format!(
                "keystore {} already has a certificate named {name:?}",
                ks.id
            )));
        }
        let (cert_pem, key_pem, cn, password) =
            (ks.ca.cert_pem.clone(), ks.ca.key_pem.clone(), name.clone(), self.password);
        // PKCS#12 key derivation (600,000 PBKDF2 rounds) takes CPU time.
        let issued = tokio::task::spawn_blocking(move || {
            KeystoreCa::load(&cert_pem, &key_pem).and_then(|ca| ca.issue_client(&cn, days, &password))
        })
        .await
        .map_err(internal)?
        .map_err(|e| match e {
            skm_pki::PkiError::PasswordLength | skm_pki::PkiError::PasswordCharacters => {
                KmsError::InvalidArgument(format!("password: {e}"))
            }
            skm_pki::PkiError::CommonName => KmsError::InvalidArgument(format!("name: {e}")),
            other => internal(other),
        })?;
        let known = KnownCert {
            name,
            sha256: issued.fingerprint_sha256.clone(),
            issued: true,
            not_after: issued.not_after,
            revoked: false,
        };
        kms.mutate_keystore(&self.keystore_id, |ks| {
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
}

impl Operation for RegisterClientCertificate {
    const NAME: &'static str = "RegisterClientCertificate";
    const EFFECT: Effect = Effect::Change;
    type Output = Arc<Keystore>;

    async fn replay<S: Store + Clone>(kms: &Kms<S>, receipt: &Receipt) -> Result<Arc<Keystore>, KmsError> {
        kms.replayed_keystore(receipt).await
    }

    fn subject(&self) -> Subject<'_> {
        Subject::Keystore(&self.keystore_id)
    }

    fn check(&self) -> Result<(), KmsError> {
        model::check_name("name", &self.name).map_err(KmsError::InvalidArgument)?;
        fingerprint(&self.sha256).map(|_| ())
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, _trail: &mut Trail<'_>) -> Result<Arc<Keystore>, KmsError> {
        let sha256 = fingerprint(&self.sha256)?;
        let name = self.name;
        kms.mutate_keystore(&self.keystore_id, |ks| {
            if ks.certs.iter().any(|c| c.name == name || c.sha256 == sha256) {
                return Err(KmsError::AlreadyExists(format!(
                    "keystore {} already knows a certificate named {name:?} or with that fingerprint",
                    ks.id
                )));
            }
            ks.certs.push(KnownCert {
                name: name.clone(),
                sha256: sha256.clone(),
                issued: false,
                not_after: 0,
                revoked: false,
            });
            Ok(())
        })
        .await
    }
}

impl Operation for RevokeClientCertificate {
    const NAME: &'static str = "RevokeClientCertificate";
    const EFFECT: Effect = Effect::Change;
    type Output = Arc<Keystore>;

    async fn replay<S: Store + Clone>(kms: &Kms<S>, receipt: &Receipt) -> Result<Arc<Keystore>, KmsError> {
        kms.replayed_keystore(receipt).await
    }

    fn subject(&self) -> Subject<'_> {
        Subject::Keystore(&self.keystore_id)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, _trail: &mut Trail<'_>) -> Result<Arc<Keystore>, KmsError> {
        let by_sha = fingerprint(&self.certificate).ok();
        let certificate = self.certificate;
        kms.mutate_keystore(&self.keystore_id, |ks| {
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
}

impl<S: Store + Clone> Kms<S> {
    /// One keystore (cached).
    pub(crate) async fn keystore(&self, id: &Id) -> Result<Arc<Keystore>, KmsError> {
        if let Some(ks) = self.cache.keystore(id) {
            return Ok(ks);
        }
        let ticket = self.cache.ticket();
        let (ks, revision) =
            self.records.keystore(id).await?.ok_or_else(|| KmsError::NotFound(format!("keystore {id} not found")))?;
        let ks = Arc::new(ks);
        self.cache.put_keystore(*id, revision, ks.clone(), ticket);
        Ok(ks)
    }

    /// Read-modify-CAS on a keystore, retrying a lost race; the change is
    /// visible to the next request (the cache entry is replaced).
    async fn mutate_keystore<F>(&self, keystore_id: &str, mut change: F) -> Result<Arc<Keystore>, KmsError>
    where
        F: FnMut(&mut Keystore) -> Result<(), KmsError> + Send,
    {
        let id = parse_id("keystore_id", keystore_id)?;
        for _ in 0..16 {
            let ticket = self.cache.ticket();
            let (mut ks, revision) = self
                .records
                .keystore(&id)
                .await?
                .ok_or_else(|| KmsError::NotFound(format!("keystore {id} not found")))?;
            let old_alias = ks.alias.clone();
            change(&mut ks)?;
            match self.records.update_keystore(&ks, revision, old_alias.as_deref()).await {
                Ok(()) => {
                    let ks = Arc::new(ks);
                    self.cache.put_keystore(id, revision + 1, ks.clone(), ticket);
                    return Ok(ks);
                }
                Err(RecordError::Conflict(key)) if key.starts_with("ksalias/") => {
                    return Err(taken(&key, &ks.name, ks.alias.as_deref()));
                }
                Err(RecordError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(KmsError::Aborted)
    }
}

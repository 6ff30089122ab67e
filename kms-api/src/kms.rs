//! kms-api's domain core: every user and admin operation, with the one
//! place where it is authorised, carried out and audited.
//!
//! A front end (gRPC today; REST and the console later) turns wire input
//! into a typed request — one type per operation, e.g. [`Encrypt`],
//! [`CreateKey`] — and hands it with the [`Caller`] to [`Kms::execute`].
//! That is the only way to run an operation from outside this module
//! ([`Operation::run`] needs a [`Trail`], which only `execute` can make),
//! and `execute` always:
//!
//! 1. checks that the caller may call the operation at all ([`Effect`]:
//!    applications use keys, operators read, admins change);
//! 2. checks the request itself;
//! 3. for a change, writes an [`Outcome::Intent`](crate::audit::Outcome)
//!    entry and waits until it is durable — nothing changes before;
//! 4. carries it out (the keystore policy, the key's state and its type are
//!    checked on every use of a key: [`views`]);
//! 5. writes the outcome entry before the result is handed back; a result
//!    whose entry can't be written is refused (fail closed).
//!
//! kms-api's own work (automatic rotation, destruction at the end of a
//! deletion period) goes through the same path under the principal
//! [`MAINTENANCE_PRINCIPAL`].

use std::sync::Arc;

use skm_crypto::Id;
use skm_store::Store;

use crate::access::Denied;
use crate::audit::AuditLog;
use crate::clock::Clock;
use crate::model::Key;
use crate::records::{RecordError, Records};
use crate::system_keys::NotReady;

mod audit_ops;
mod cache;
mod caller;
mod coherence;
mod console;
mod data;
mod import;
mod keystores;
mod lifecycle;
mod mac;
mod maintenance;
mod operation;
mod operators;
pub mod request_ids;
mod signing;
mod system;
mod views;

pub use audit_ops::{AcknowledgeAuditLoss, AcknowledgedLoss, AuditPage, ListAudit, ListAuditPage, VerifyAudit};
pub use caller::{Caller, FrontEnd, KeystoreRef, MAINTENANCE_PRINCIPAL, Operator, Who};
pub use console::{
    CloseConsoleSession, ConsoleOverview, ConsoleSession, ConsoleSettings, ConsoleSignIn, CreateConsoleSignIn,
    ListOperators, MAX_PENDING_SIGN_INS, MAX_SESSIONS, OpenConsoleSession, OpenedSession, OperatorsView, Overview,
    SIGN_IN_SECS, SessionInfo,
};
pub use data::{
    BatchDecrypt, BatchEncrypt, BatchItem, DataKey, DataKeyForm, Decrypt, DecryptCall, DecryptRsaOaep, Decrypted,
    Encrypt, Encrypted, GenerateDataKey, GetSecret, ReEncrypt, ReEncrypted, SecretValue,
};
pub use import::{GetParametersForImport, ImportKeyMaterial, ImportParameters, MAX_WRAPPED_MATERIAL};
pub use keystores::{
    CreateKeystore, DeleteKeystore, GetKeystore, IssueClientCertificate, IssuedCertificate, ListKeystores,
    RegisterClientCertificate, RevokeClientCertificate, UpdateKeystore,
};
pub use lifecycle::{
    CancelKeyDeletion, CreateKey, CreateSecret, DescribeKey, DisableKey, EnableKey, ListKeys, RotateKey,
    ScheduleKeyDeletion, UpdateKey, UpdateSecret,
};
pub use mac::{GenerateMac, Mac, VerifyMac};
pub use maintenance::{AutoRotateKey, DestroyKey, MaintenanceReport};
pub use operation::{Effect, Operation, Subject, Trail};
pub use operators::{RevokeOperator, RevokedOperators, WhoAmI, WhoAmIResult};
pub use request_ids::RequestId;
pub use signing::{GetPublicKey, PublicKeyInfo, ReadPublicKey, Sign, Signature, Signed, Verified, Verify};
pub use system::{GetSystemKeyStatus, RetireSystemKeyVersion, RetiredVersion, SystemKeyStatus};

use cache::Cache;
pub use cache::CacheStats;

/// The gRPC status code names of DESIGN §10, used by every front end (gRPC
/// maps them 1:1 to its codes, REST to HTTP statuses) and by the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// Bad input, over a size limit.
    InvalidArgument,
    /// Unknown id.
    NotFound,
    /// A name is taken.
    AlreadyExists,
    /// Key disabled, pending deletion, wrong type for the operation.
    FailedPrecondition,
    /// An access method or role refused the caller.
    PermissionDenied,
    /// Not ready, or the audit log can't be written.
    Unavailable,
    /// Lost a compare-and-swap race too often.
    Aborted,
    /// Anything else.
    Internal,
}

impl Code {
    /// The gRPC name, e.g. `"NOT_FOUND"`.
    pub fn name(self) -> &'static str {
        match self {
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::Unavailable => "UNAVAILABLE",
            Code::Aborted => "ABORTED",
            Code::Internal => "INTERNAL",
        }
    }
}

/// Everything an operation can fail with. Its `Display` is what the client
/// is told; [`KmsError::code`] is the one table from errors to codes.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// Bad input; the message names the field and the limit.
    #[error("{0}")]
    InvalidArgument(String),
    /// Unknown id.
    #[error("{0}")]
    NotFound(String),
    /// A name is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// The operation doesn't fit the key's state or type.
    #[error("{0}")]
    FailedPrecondition(String),
    /// An access method refused the client.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The caller may not call this operation at all (role, revoked
    /// certificate, wrong plane); a fixed phrase.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Every decrypt failure, whatever the cause.
    #[error("decryption failed")]
    DecryptFailed,
    /// System keys not loaded.
    #[error(transparent)]
    NotReady(#[from] NotReady),
    /// Lost a compare-and-swap race too often.
    #[error("concurrent modification; retry")]
    Aborted,
    /// The record store can't answer now (etcd unreachable or without a
    /// quorum); details only in the server log. A change that fails so may
    /// or may not have been made.
    #[error("the record store is unavailable (no quorum or unreachable); retry later")]
    StoreUnavailable,
    /// The audit log can't be written: nothing was done (fail closed).
    #[error("the audit log is unavailable; the request was not carried out")]
    AuditUnavailable,
    /// The audit log is shorter than its anchor and the loss has not been
    /// acknowledged: nothing was done (fail closed).
    #[error(
        "the audit log is missing {0} (found against its anchor); nothing is served until an operator acknowledges the loss with `skm audit acknowledge-loss`"
    )]
    AuditLost(crate::audit::Lost),
    /// The change was made after its intent entry was durable, but the
    /// entry with its outcome could not be written.
    #[error("the request was carried out, but the audit log became unavailable before its outcome was recorded")]
    OutcomeUnaudited,
    /// Anything else; details only in the server log.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl KmsError {
    /// The code of this error (DESIGN §10).
    pub fn code(&self) -> Code {
        match self {
            KmsError::InvalidArgument(_) | KmsError::DecryptFailed => Code::InvalidArgument,
            KmsError::NotFound(_) => Code::NotFound,
            KmsError::AlreadyExists(_) => Code::AlreadyExists,
            KmsError::FailedPrecondition(_) => Code::FailedPrecondition,
            KmsError::Denied(_) | KmsError::Forbidden(_) => Code::PermissionDenied,
            KmsError::NotReady(_)
            | KmsError::AuditUnavailable
            | KmsError::AuditLost(_)
            | KmsError::StoreUnavailable
            | KmsError::OutcomeUnaudited => Code::Unavailable,
            KmsError::Aborted => Code::Aborted,
            KmsError::Internal(_) => Code::Internal,
        }
    }
}

impl From<RecordError> for KmsError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::NotReady(n) => KmsError::NotReady(n),
            RecordError::Conflict(_) | RecordError::RequestCarriedOut => KmsError::Aborted,
            RecordError::Store(skm_store::StoreError::Unavailable(source)) => {
                tracing::warn!(error = %skm_runtime::daemon::error_chain(&*source), "the record store is unavailable");
                KmsError::StoreUnavailable
            }
            other => KmsError::Internal(Box::new(other)),
        }
    }
}

pub(crate) fn internal(e: impl std::error::Error + Send + Sync + 'static) -> KmsError {
    KmsError::Internal(Box::new(e))
}

/// Parses an id; the message says what an id looks like.
pub(crate) fn parse_id(field: &str, value: &str) -> Result<Id, KmsError> {
    value.parse().map_err(|_| {
        KmsError::InvalidArgument(format!(
            "{field}: {value:?} is not an id (32 hex digits, e.g. 00112233445566778899aabbccddeeff)"
        ))
    })
}

pub(crate) fn check_len(field: &str, len: usize, limit: usize) -> Result<(), KmsError> {
    if len > limit {
        return Err(KmsError::InvalidArgument(format!("{field} is {len} bytes; the limit is {limit}")));
    }
    Ok(())
}

pub(crate) fn not_found(id: &Id) -> KmsError {
    KmsError::NotFound(format!("key {id} not found"))
}

/// The domain core over a record store `S`.
#[derive(Debug)]
pub struct Kms<S> {
    records: Records<S>,
    clock: Arc<dyn Clock>,
    cache: Cache,
    audit: Arc<AuditLog>,
    revoked: RevokedOperators,
    max_key_versions: u32,
    console: console::ConsoleAuth,
    verified_chains: crate::access::VerifiedChains,
}

impl<S: Store + Clone> Kms<S> {
    /// Over the record store and the audit log; `revoked` is the stored
    /// list of revoked operator certificates.
    pub fn new(
        records: Records<S>,
        clock: Arc<dyn Clock>,
        cache_entries: usize,
        audit: Arc<AuditLog>,
        revoked: RevokedOperators,
    ) -> Self {
        Self {
            records,
            clock,
            cache: Cache::new(cache_entries),
            audit,
            revoked,
            max_key_versions: crate::model::DEFAULT_MAX_KEY_VERSIONS,
            console: console::ConsoleAuth::default(),
            verified_chains: crate::access::VerifiedChains::default(),
        }
    }

    /// The most versions a key may have (the configuration's
    /// `max_key_versions`, [`crate::model::DEFAULT_MAX_KEY_VERSIONS`]
    /// unless set): rotating a key that has them is refused.
    pub fn with_max_key_versions(mut self, max: u32) -> Self {
        self.max_key_versions = max.max(1);
        self
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Cache lookups since start (for metrics).
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// The clock in use.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// A key from the cache or the store.
    pub(crate) async fn key(&self, id: &Id) -> Result<Arc<Key>, KmsError> {
        if let Some(k) = self.cache.key(id) {
            return Ok(k);
        }
        let ticket = self.cache.ticket();
        let (key, stored) = self.records.key(id).await?.ok_or_else(|| not_found(id))?;
        let key = Arc::new(key);
        self.cache.put_key(*id, stored.revision, key.clone(), ticket);
        Ok(key)
    }

    /// The material of a key version, for the tier-separation test.
    #[cfg(feature = "danger-test-accessors")]
    pub async fn danger_key_material(&self, key_id: &str, version: u32) -> Option<Vec<u8>> {
        use crate::model::Material;
        let key = self.key(&key_id.parse().ok()?).await.ok()?;
        Some(match &key.material {
            Material::Aes256(v) => v.get(version)?.material.danger_expose().to_vec(),
            Material::Signing { versions, .. } => versions.get(version)?.material.danger_pkcs8().to_vec(),
            Material::Mac { versions, .. } => versions.get(version)?.material.danger_bytes().to_vec(),
            Material::Decrypting { versions, .. } => versions.get(version)?.material.danger_pkcs8().to_vec(),
            Material::Secret(v) => v.get(version)?.material.to_vec(),
            Material::Awaiting(_) => return None,
        })
    }
}

#[cfg(test)]
mod tests;

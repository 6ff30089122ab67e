//! Operators' own standing: revoked operator certificates (checked by the
//! core on every operator call, so a revoked operator is refused — and the
//! refusal audited — whichever front end it comes through), and WhoAmI.

use std::collections::HashSet;
use std::sync::RwLock;

use skm_store::Store;

use super::keystores::fingerprint;
use super::operation::{Effect, Operation, Trail};
use super::{Kms, KmsError};
use crate::access::Facts;

/// The revoked operator certificates, by SHA-256 of the leaf. Kept in
/// kms-api's store (`oprevoked/<sha256>`), loaded at start.
#[derive(Debug, Default)]
pub struct RevokedOperators {
    revoked: RwLock<HashSet<String>>,
}

impl RevokedOperators {
    /// Starts from a stored list.
    pub fn new(revoked: impl IntoIterator<Item = String>) -> Self {
        Self { revoked: RwLock::new(revoked.into_iter().collect()) }
    }

    pub(super) fn revoke(&self, sha256: &str) {
        self.revoked.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(sha256.to_owned());
    }

    /// Every revoked certificate's SHA-256, sorted.
    pub fn list(&self) -> Vec<String> {
        let mut all: Vec<String> =
            self.revoked.read().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect();
        all.sort();
        all
    }

    /// Whether the certificate in `facts` is revoked (no certificate:
    /// nothing to revoke; the admin port requires one anyway).
    pub(super) fn is_revoked_certificate(&self, facts: &Facts) -> bool {
        facts
            .cert_sha256()
            .is_some_and(|sha| self.revoked.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&sha))
    }
}

/// Revoke an operator certificate: from this call on, it is refused.
#[derive(Debug)]
pub struct RevokeOperator {
    /// SHA-256 of the certificate, 64 hex digits (colons allowed).
    pub sha256: String,
}

impl Operation for RevokeOperator {
    const NAME: &'static str = "RevokeOperator";
    const EFFECT: Effect = Effect::Change;
    type Output = String;
    /// Sent again, it revokes the certificate again: nothing changes.
    const REQUEST_ID: bool = false;

    fn check(&self) -> Result<(), KmsError> {
        fingerprint(&self.sha256).map(|_| ())
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, _trail: &mut Trail<'_>) -> Result<String, KmsError> {
        let sha256 = fingerprint(&self.sha256)?;
        kms.records.revoke_operator(&sha256).await?;
        kms.revoked.revoke(&sha256);
        tracing::warn!(sha256, "operator certificate revoked");
        Ok(sha256)
    }
}

/// What the server sees of the caller.
#[derive(Debug)]
pub struct WhoAmI;

/// The caller as the server sees it.
#[derive(Debug)]
pub struct WhoAmIResult {
    /// What the connection told.
    pub facts: Facts,
    /// The subject CN of the presented certificate, if any.
    pub certificate_subject: Option<String>,
}

impl Operation for WhoAmI {
    const NAME: &'static str = "WhoAmI";
    const EFFECT: Effect = Effect::Introspect;
    type Output = WhoAmIResult;

    async fn run<S: Store + Clone>(self, _kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<WhoAmIResult, KmsError> {
        let facts = trail.caller().facts().clone();
        let leaf = facts.chain.as_ref().and_then(|c| c.first());
        let certificate_subject = leaf.and_then(|der| skm_pki::client::leaf_info(der)).and_then(|i| i.subject_cn);
        Ok(WhoAmIResult { facts, certificate_subject })
    }
}

//! Operator certificates revoked on kms-api's admin port. The list lives in
//! kms-api's store (`oprevoked/<sha256>`), is loaded at start and updated by
//! `RevokeOperator`; the admin port's allow-list layer consults it before
//! any handler runs.

use std::collections::HashSet;
use std::sync::RwLock;

use skm_runtime::Revocations;

/// The revoked operator certificates, by SHA-256 of the leaf.
#[derive(Debug, Default)]
pub struct RevokedOperators {
    revoked: RwLock<HashSet<String>>,
}

impl RevokedOperators {
    /// Starts from a stored list.
    pub fn new(revoked: impl IntoIterator<Item = String>) -> Self {
        Self { revoked: RwLock::new(revoked.into_iter().collect()) }
    }

    /// Adds one (lowercase hex SHA-256).
    pub fn revoke(&self, sha256: &str) {
        self.revoked.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(sha256.to_owned());
    }
}

impl Revocations for RevokedOperators {
    fn is_revoked(&self, leaf_sha256: &str) -> bool {
        self.revoked.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains(leaf_sha256)
    }
}

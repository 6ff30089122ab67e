//! Reading the audit log for operators: filtered listing and verification.

use skm_crypto::Id;
use skm_store::Store;

use super::operation::{Effect, Operation, Trail};
use super::{Kms, KmsError, internal};
use crate::audit::{AuditError, Event, Filter, VerifyReport};
use crate::system_keys::NotReady;

/// The newest entries that pass a filter, in log order.
#[derive(Debug)]
pub struct ListAudit {
    /// Which entries.
    pub filter: Filter,
}

/// Check the whole chain of the log.
#[derive(Debug)]
pub struct VerifyAudit;

impl Operation for ListAudit {
    const NAME: &'static str = "ListAudit";
    const EFFECT: Effect = Effect::Read;
    type Output = Vec<(u64, Event)>;

    fn target(&self, trail: &mut Trail<'_>) {
        if let Some(ks) = &self.filter.keystore_id {
            trail.named_keystore(ks);
        }
        if let Some(key) = &self.filter.key_id {
            trail.named_key(key);
        }
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, _trail: &mut Trail<'_>) -> Result<Self::Output, KmsError> {
        // Ids are accepted in either case; the log holds them lowercase.
        let normalised = |id: Option<String>| id.map(|s| s.parse::<Id>().map_or(s, |id| id.to_string()));
        let filter = Filter {
            keystore_id: normalised(self.filter.keystore_id),
            key_id: normalised(self.filter.key_id),
            ..self.filter
        };
        kms.audit.list(&filter).await.map_err(internal)
    }
}

impl Operation for VerifyAudit {
    const NAME: &'static str = "VerifyAudit";
    const EFFECT: Effect = Effect::Read;
    type Output = VerifyReport;

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, _trail: &mut Trail<'_>) -> Result<VerifyReport, KmsError> {
        kms.audit.verify().await.map_err(|e| match e {
            AuditError::KeysNotLoaded => KmsError::NotReady(NotReady),
            other => internal(other),
        })
    }
}

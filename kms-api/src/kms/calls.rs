//! One call as kms-api audits it: who asked, what it touched, how it ended.
//! Every user-plane use of a key or secret and every admin action goes
//! through [`Kms::finish`], which appends the audit entry before the reply
//! leaves: if the entry can't be made durable, the call fails (fail closed).

use std::sync::Arc;

use skm_crypto::Id;
use skm_runtime::neighbours::MacAddr;

use super::{Kms, KmsError};
use crate::access::{Facts, MacSource, Passed};
use crate::audit::{Caller, Event, Outcome};
use crate::model::Key;

/// A call in progress.
#[derive(Clone, Debug)]
pub struct Call {
    operation: &'static str,
    facts: Facts,
    operator: Option<String>,
    keystore_id: Option<Id>,
    key_id: Option<Id>,
    key_version: Option<u32>,
    passed: Option<Passed>,
}

impl Call {
    /// A user-plane call with what the server knows of the caller.
    pub fn user(operation: &'static str, facts: Facts) -> Self {
        Self { operation, facts, operator: None, keystore_id: None, key_id: None, key_version: None, passed: None }
    }

    /// An admin-plane call by an operator (`facts`: address and certificate).
    pub fn admin(operation: &'static str, operator: String, facts: Facts) -> Self {
        Self { operator: Some(operator), ..Self::user(operation, facts) }
    }

    /// What the server knows of the caller.
    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    pub(crate) fn touch_key(&mut self, key: &Key) {
        self.key_id = Some(key.id);
        self.keystore_id = Some(key.keystore_id);
    }

    /// Records the key a request names (when it is an id at all; a
    /// malformed id is never written to the log).
    pub(crate) fn named_key(&mut self, key_id: &str) {
        if let Ok(id) = key_id.parse() {
            self.key_id = Some(id);
        }
    }

    /// Records the keystore a request names (when it is an id).
    pub(crate) fn named_keystore(&mut self, keystore_id: &str) {
        if let Ok(id) = keystore_id.parse() {
            self.keystore_id = Some(id);
        }
    }

    pub(crate) fn touch_keystore(&mut self, id: Id) {
        self.keystore_id = Some(id);
    }

    pub(crate) fn used_version(&mut self, version: u32) {
        self.key_version = Some(version);
    }

    pub(crate) fn passed(&mut self, passed: Passed) {
        self.passed = Some(passed);
    }

    fn caller(&self) -> Caller {
        // The MAC that decided, else what was seen (verified first).
        let mac: Option<(MacAddr, MacSource)> = self.passed.as_ref().and_then(|p| p.mac).or_else(|| {
            self.facts
                .verified_mac
                .map(|m| (m, MacSource::Verified))
                .or_else(|| self.facts.asserted_mac.map(|m| (m, MacSource::Asserted)))
        });
        Caller {
            ip: self.facts.ip.map(|ip| ip.to_canonical().to_string()),
            mac: mac.map(|(m, _)| m.to_string()),
            mac_source: mac.map(|(_, s)| s),
            cert_sha256: self.facts.cert_sha256(),
            operator: self.operator.clone(),
        }
    }

    fn event(&self, time: i64, result: Outcome) -> Event {
        Event {
            time,
            operation: self.operation.to_owned(),
            keystore_id: self.keystore_id.map(|id| id.to_string()),
            key_id: self.key_id.map(|id| id.to_string()),
            key_version: self.key_version,
            caller: self.caller(),
            result,
        }
    }
}

fn outcome<T>(result: &Result<T, KmsError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Allowed,
        Err(KmsError::Denied(d)) => Outcome::Denied(d.to_string()),
        Err(e) => Outcome::Failed(e.code_name().to_owned()),
    }
}

impl Kms {
    /// Audits a finished call and passes its result on. A result whose
    /// entry can't be written becomes UNAVAILABLE.
    pub async fn finish<T>(&self, call: Call, result: Result<T, KmsError>) -> Result<T, KmsError> {
        let event = call.event(self.now(), outcome(&result));
        match self.audit.append(event).await {
            Ok(()) => result,
            Err(e) => {
                tracing::error!(error = %e, operation = call.operation, "audit entry not written; call refused");
                Err(KmsError::AuditUnavailable)
            }
        }
    }

    /// [`Kms::finish`] for many calls at once (batches): the entries are
    /// appended concurrently, so they share the log's group commit.
    pub async fn finish_many<T: Send + 'static>(
        &self,
        calls: Vec<(Call, Result<T, KmsError>)>,
    ) -> Vec<Result<T, KmsError>> {
        let now = self.now();
        let mut tasks = tokio::task::JoinSet::new();
        let mut slots: Vec<Option<Result<T, KmsError>>> = Vec::with_capacity(calls.len());
        for (i, (call, result)) in calls.into_iter().enumerate() {
            let audit = Arc::clone(&self.audit);
            let event = call.event(now, outcome(&result));
            tasks.spawn(async move { (i, audit.append(event).await.is_ok()) });
            slots.push(Some(result));
        }
        let mut written = vec![false; slots.len()];
        while let Some(joined) = tasks.join_next().await {
            if let Ok((i, ok)) = joined {
                written[i] = ok;
            }
        }
        slots
            .into_iter()
            .zip(written)
            .map(|(result, ok)| match (result, ok) {
                (Some(r), true) => r,
                _ => Err(KmsError::AuditUnavailable),
            })
            .collect()
    }
}

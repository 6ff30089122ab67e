//! The audited path every operation takes: [`Kms::execute`].
//!
//! An operation is a typed request implementing [`Operation`]. Its
//! [`Operation::run`] can only be called with a [`Trail`], and a `Trail` can
//! only be made here, so the only way for a front end to get a result is
//! `execute`, which authorises, audits before and after, and refuses a
//! result whose entry can't be written.

use std::future::Future;
use std::sync::Arc;

use skm_crypto::Id;
use skm_runtime::Role;
use skm_runtime::neighbours::MacAddr;
use skm_store::Store;

use super::caller::{Caller, MAINTENANCE_PRINCIPAL, Who};
use super::request_ids;
use super::{Kms, KmsError, parse_id};
use crate::access::{MacSource, Passed};
use crate::audit::{self, AuditError, Event, Outcome};
use crate::model::Key;
use crate::records::{Claim, Receipt, RequestRecord};

/// What an operation does, which decides who may call it and how it is
/// audited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Uses a key or secret for an application: the keystore's policy
    /// decides (checked when the key is loaded); one entry afterwards.
    Use,
    /// Several uses in one request: each item is audited as its own entry
    /// (under the batch's operation name); the batch writes an entry of its
    /// own only when it is refused as a whole.
    Batch,
    /// Reads for an operator (admin or auditor); one entry afterwards.
    Read,
    /// Changes state: an admin operator, or kms-api's maintenance. An intent
    /// entry is durable before anything changes; the outcome entry follows.
    Change,
    /// Tells a caller what the server sees of it: open to anyone, touches no
    /// key or record, not audited (like a health check).
    Introspect,
}

/// What a request is about.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    /// A key or secret, by the id the request gives.
    Key(&'a str),
    /// A keystore, by the id the request gives.
    Keystore(&'a str),
    /// Nothing in particular.
    None,
}

impl Subject<'_> {
    /// Refuses a subject that is not an id, naming the field.
    fn check(self) -> Result<(), KmsError> {
        match self {
            Subject::Key(id) => parse_id("key_id", id).map(drop),
            Subject::Keystore(id) => parse_id("keystore_id", id).map(drop),
            Subject::None => Ok(()),
        }
    }
}

/// One operation of the domain core.
pub trait Operation: Send + Sized {
    /// Its name in the audit log (the gRPC method name).
    const NAME: &'static str;
    /// What it does.
    const EFFECT: Effect;
    /// What it returns.
    type Output: Send;
    /// Whether a request id makes this change once (its record written
    /// with it, a retry answered by [`Operation::replay`]); `false` for
    /// changes that are harmless to make again and whose result can't be
    /// replayed.
    const REQUEST_ID: bool = true;

    /// Its name in the audit log for this request (one type may serve two
    /// RPCs).
    fn name(&self) -> &'static str {
        Self::NAME
    }

    /// The key or keystore the request names: checked to be an id before
    /// [`Operation::check`] (a malformed id is refused as bad input and is
    /// never written to the log), and named in the audit trail.
    fn subject(&self) -> Subject<'_> {
        Subject::None
    }

    /// Names what the request is about in the audit trail; by default its
    /// [`Operation::subject`].
    fn target(&self, trail: &mut Trail<'_>) {
        match self.subject() {
            Subject::Key(id) => trail.named_key(id),
            Subject::Keystore(id) => trail.named_keystore(id),
            Subject::None => {}
        }
    }

    /// Checks the request on its own, without I/O; a failure is audited
    /// as the only entry (no intent is written for a bad request).
    fn check(&self) -> Result<(), KmsError> {
        Ok(())
    }

    /// Carries it out.
    fn run<S: Store + Clone>(
        self,
        kms: &Kms<S>,
        trail: &mut Trail<'_>,
    ) -> impl Future<Output = Result<Self::Output, KmsError>> + Send;

    /// The answer to a change sent again under a request id whose change
    /// was already made (`receipt`: what it made): the key or keystore as
    /// it is now. By default refused with FAILED_PRECONDITION, for the
    /// changes whose result is handed out only once (an issued client
    /// certificate's private key, import parameters).
    fn replay<S: Store + Clone>(
        kms: &Kms<S>,
        receipt: &Receipt,
    ) -> impl Future<Output = Result<Self::Output, KmsError>> + Send {
        let _ = (kms, receipt);
        async { Err(request_ids::not_replayable(Self::NAME)) }
    }
}

/// What the audit entry of one call will say: filled in as the operation
/// learns which keystore, key and version it touches.
#[derive(Debug)]
pub struct Trail<'c> {
    operation: &'static str,
    caller: &'c Caller,
    keystore_id: Option<Id>,
    key_id: Option<Id>,
    key_version: Option<u32>,
    passed: Option<Passed>,
    intent_seq: Option<u64>,
    acknowledges_loss: bool,
}

impl<'c> Trail<'c> {
    fn new(operation: &'static str, caller: &'c Caller) -> Self {
        Self {
            operation,
            caller,
            keystore_id: None,
            key_id: None,
            key_version: None,
            passed: None,
            intent_seq: None,
            acknowledges_loss: false,
        }
    }

    /// The call acknowledges a loss of audit entries: its intent is the
    /// entry the log writes after the gap.
    pub(crate) fn acknowledges_loss(&mut self) {
        self.acknowledges_loss = true;
    }

    /// The seq of this call's intent entry, once written.
    pub(crate) fn intent_seq(&self) -> Option<u64> {
        self.intent_seq
    }

    /// Who is calling.
    pub fn caller(&self) -> &'c Caller {
        self.caller
    }

    /// The key (and its keystore) the call touched.
    pub(crate) fn touch_key(&mut self, key: &Key) {
        self.key_id = Some(key.id);
        self.keystore_id = Some(key.keystore_id);
    }

    /// The key a request names, when it is an id.
    pub(crate) fn named_key(&mut self, key_id: &str) {
        if let Ok(id) = key_id.parse() {
            self.key_id = Some(id);
        }
    }

    /// The keystore a request names, when it is an id.
    pub(crate) fn named_keystore(&mut self, keystore_id: &str) {
        if let Ok(id) = keystore_id.parse() {
            self.keystore_id = Some(id);
        }
    }

    /// The keystore the call touched.
    pub(crate) fn touch_keystore(&mut self, id: Id) {
        self.keystore_id = Some(id);
    }

    /// The key version the call used or made.
    pub(crate) fn used_version(&mut self, version: u32) {
        self.key_version = Some(version);
    }

    /// What passed the keystore policy.
    pub(crate) fn passed(&mut self, passed: Passed) {
        self.passed = Some(passed);
    }

    fn event(&self, time: i64, result: Outcome) -> Event {
        let facts = self.caller.facts();
        // The MAC that decided, else what was seen (verified first).
        let mac: Option<(MacAddr, MacSource)> = self.passed.as_ref().and_then(|p| p.mac).or_else(|| {
            facts
                .verified_mac
                .map(|m| (m, MacSource::Verified))
                .or_else(|| facts.asserted_mac.map(|m| (m, MacSource::Asserted)))
        });
        let (operator, system) = match &self.caller.who {
            Who::Operator(op) => (Some(op.principal.clone()), None),
            Who::Maintenance => (None, Some(MAINTENANCE_PRINCIPAL.to_owned())),
            Who::Application(_) => (None, None),
        };
        Event {
            time,
            operation: self.operation.to_owned(),
            front_end: Some(self.caller.via.name().to_owned()),
            keystore_id: self.keystore_id.map(|id| id.to_string()),
            key_id: self.key_id.map(|id| id.to_string()),
            key_version: self.key_version,
            caller: audit::Caller {
                ip: facts.ip.map(|ip| ip.to_canonical().to_string()),
                mac: mac.map(|(m, _)| m.to_string()),
                mac_source: mac.map(|(_, s)| s),
                // The policy check hashed the leaf already when it passed.
                cert_sha256: match self.passed.as_ref().and_then(|p| p.cert.as_ref()) {
                    Some(cert) => Some(cert.fingerprint_sha256.clone()),
                    None => facts.cert_sha256(),
                },
                operator,
                system,
            },
            result,
            intent_seq: self.intent_seq,
            lost: None,
        }
    }
}

/// What a caller is told when its entry could not be written.
fn unwritten(e: AuditError) -> KmsError {
    match e {
        AuditError::Lost(lost) => KmsError::AuditLost(lost),
        _ => KmsError::AuditUnavailable,
    }
}

fn outcome<T>(result: &Result<T, KmsError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Allowed,
        Err(KmsError::Denied(d)) => Outcome::Denied(d.to_string()),
        Err(KmsError::Forbidden(why)) => Outcome::Denied((*why).to_owned()),
        Err(e) => Outcome::Failed(e.code().name().to_owned()),
    }
}

impl<S: Store + Clone> Kms<S> {
    /// Runs one operation for `caller`: authorise, check, (for a change)
    /// audit the intent durably, carry out, audit the outcome.
    pub async fn execute<O: Operation>(&self, caller: &Caller, op: O) -> Result<O::Output, KmsError> {
        let mut trail = Trail::new(op.name(), caller);
        op.target(&mut trail);
        if O::EFFECT == Effect::Introspect {
            return op.run(self, &mut trail).await;
        }
        // A replica whose watch lags reads the revoked list afresh before
        // it trusts an operator certificate.
        if matches!(caller.who, Who::Operator(_))
            && !self.cache.fresh()
            && let Err(e) = self.reload_revoked().await
        {
            return self.finish(&trail, Err(e)).await;
        }
        if let Err(e) = self.authorise(caller, O::EFFECT).and_then(|()| op.subject().check()).and_then(|()| op.check())
        {
            return self.finish(&trail, Err(e)).await;
        }
        let claim = match (&caller.request_id, &caller.who, O::EFFECT) {
            (Some(id), Who::Operator(op), Effect::Change) if O::REQUEST_ID => {
                Some(Claim::new(&op.principal, id.as_str(), trail.operation, self.now()))
            }
            _ => None,
        };
        if let Some(claim) = &claim {
            match self.records.request(claim).await {
                Ok(None) => {}
                Ok(Some(record)) => {
                    let replayed = self.replay::<O>(&mut trail, &record).await;
                    return self.finish(&trail, replayed).await;
                }
                Err(e) => return self.finish(&trail, Err(e.into())).await,
            }
        }
        if O::EFFECT == Effect::Change {
            let intent = trail.event(self.now(), Outcome::Intent);
            let written = if trail.acknowledges_loss {
                self.audit.append_acknowledging_loss(intent).await
            } else {
                self.audit.append(intent).await
            };
            match written {
                Ok(seq) => trail.intent_seq = Some(seq),
                Err(e) => {
                    tracing::error!(error = %e, operation = trail.operation, "intent not written to the audit log; change refused");
                    return Err(unwritten(e));
                }
            }
        }
        let result = match claim {
            None => op.run(self, &mut trail).await,
            Some(claim) => self.run_claimed(op, &mut trail, claim).await,
        };
        if O::EFFECT == Effect::Batch && result.is_ok() {
            // Every item was audited on its own by `execute_items`.
            return result;
        }
        self.finish(&trail, result).await
    }

    /// Carries out a change sent with a request id: its first batch
    /// carries the claim's record. A change that wrote no batch gets the
    /// record on its own afterwards; a change that failed because (or
    /// while) another attempt of the request committed is answered as that
    /// attempt's replay.
    async fn run_claimed<O: Operation>(
        &self,
        op: O,
        trail: &mut Trail<'_>,
        claim: Claim,
    ) -> Result<O::Output, KmsError> {
        let (result, unclaimed) = crate::records::with_claim(claim.clone(), op.run(self, trail)).await;
        match result {
            Ok(output) => {
                if let Some(claim) = unclaimed
                    && let Err(e) = self.records.put_request(&claim, Receipt::default()).await
                {
                    // The change is made; only a retry of it would repeat it.
                    tracing::warn!(error = %e, operation = claim.operation, "request id not recorded");
                }
                Ok(output)
            }
            Err(e) => match self.records.request(&claim).await {
                Ok(Some(record)) => self.replay::<O>(trail, &record).await,
                _ => Err(e),
            },
        }
    }

    /// Answers a request whose change was made already (its record).
    async fn replay<O: Operation>(&self, trail: &mut Trail<'_>, record: &RequestRecord) -> Result<O::Output, KmsError> {
        request_ids::same_operation(record, trail.operation)?;
        // What the change made, else what the request named.
        let receipt = Receipt {
            keystore_id: record.receipt.keystore_id.or(trail.keystore_id),
            key_id: record.receipt.key_id.or(trail.key_id),
            version: record.receipt.version.or(trail.key_version),
        };
        (trail.keystore_id, trail.key_id, trail.key_version) = (receipt.keystore_id, receipt.key_id, receipt.version);
        tracing::info!(
            operation = trail.operation,
            made_at = record.at,
            "request id seen again: answered without a change"
        );
        O::replay(self, &receipt).await
    }

    /// Runs the items of a batch as operations of their own, each audited
    /// under `name`; the entries are appended concurrently so that they
    /// share the log's group commit.
    pub(crate) async fn execute_items<O>(
        &self,
        name: &'static str,
        caller: &Caller,
        items: Vec<O>,
    ) -> Vec<Result<O::Output, KmsError>>
    where
        O: Operation,
        O::Output: 'static,
    {
        debug_assert_eq!(O::EFFECT, Effect::Use);
        let now = self.now();
        let mut events = Vec::with_capacity(items.len());
        let mut results = Vec::with_capacity(items.len());
        for op in items {
            let mut trail = Trail::new(name, caller);
            op.target(&mut trail);
            let result =
                match self.authorise(caller, Effect::Use).and_then(|()| op.subject().check()).and_then(|()| op.check())
                {
                    Ok(()) => op.run(self, &mut trail).await,
                    Err(e) => Err(e),
                };
            events.push(trail.event(now, outcome(&result)));
            results.push(result);
        }
        let mut appends = tokio::task::JoinSet::new();
        for (i, event) in events.into_iter().enumerate() {
            let audit = Arc::clone(&self.audit);
            appends.spawn(async move { (i, audit.append(event).await.map(drop)) });
        }
        let mut written: Vec<Result<(), AuditError>> =
            (0..results.len()).map(|_| Err(AuditError::Unavailable)).collect();
        while let Some(joined) = appends.join_next().await {
            if let Ok((i, ok)) = joined {
                written[i] = ok;
            }
        }
        results
            .into_iter()
            .zip(written)
            .map(|(result, written)| match written {
                Ok(()) => result,
                Err(e) => Err(unwritten(e)),
            })
            .collect()
    }

    /// Whether `caller` may call an operation with `effect` at all.
    fn authorise(&self, caller: &Caller, effect: Effect) -> Result<(), KmsError> {
        match (&caller.who, effect) {
            (_, Effect::Introspect) => Ok(()),
            (Who::Application(_), Effect::Use | Effect::Batch) => Ok(()),
            (Who::Application(_), _) => Err(KmsError::Forbidden("operator operations need an operator")),
            (Who::Maintenance, Effect::Change) => Ok(()),
            (Who::Maintenance, _) => Err(KmsError::Forbidden("not an operation of kms-api's maintenance")),
            (Who::Operator(_), Effect::Use | Effect::Batch) => {
                Err(KmsError::Forbidden("key uses are for applications on the user plane"))
            }
            (Who::Operator(op), _) if self.revoked.is_revoked_certificate(&op.facts) => {
                tracing::warn!(operator = op.principal, "refused: operator certificate revoked");
                Err(KmsError::Forbidden("the operator certificate is revoked"))
            }
            (Who::Operator(_), Effect::Read) => Ok(()),
            (Who::Operator(op), Effect::Change) if op.role == Role::Admin => Ok(()),
            (Who::Operator(_), Effect::Change) => Err(KmsError::Forbidden("this operation needs the admin role")),
        }
    }

    /// Writes the outcome entry and hands the result on; a result whose
    /// entry can't be written is refused.
    async fn finish<T>(&self, trail: &Trail<'_>, result: Result<T, KmsError>) -> Result<T, KmsError> {
        let event = trail.event(self.now(), outcome(&result));
        match self.audit.append(event).await {
            Ok(_) => result,
            Err(e) => {
                tracing::error!(error = %e, operation = trail.operation, "audit entry not written; result withheld");
                if trail.intent_seq.is_some() && result.is_ok() {
                    Err(KmsError::OutcomeUnaudited)
                } else {
                    Err(unwritten(e))
                }
            }
        }
    }
}

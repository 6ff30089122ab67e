//! Request records: the store half of request ids (`crate::kms::request_ids`).
//!
//! A change sent with a request id writes `reqid/<sha256(principal ‖ 0 ‖
//! request id)>` **in the same batch as the change itself**, insert-if-absent:
//! the change and its record commit together or not at all, and of two
//! attempts of one request racing on two replicas only one commits. The
//! record says which operation it was and what it made (a [`Receipt`]:
//! keystore, key, version), so a retry is answered without changing
//! anything again.
//!
//! The batch is found without threading the claim through every write:
//! [`Kms::execute`](crate::kms::Kms::execute) runs the operation inside
//! [`with_claim`], and [`Records::commit`], through which every batch of a
//! change goes, takes the pending claim into the first batch it writes (and
//! puts it back when that batch fails without the record, so the next
//! attempt of a compare-and-swap loop carries it).
//!
//! Value: the [`RequestRecord`] as JSON, sealed. Beside it, in the same
//! batch, `reqdue/<time, u64 BE>/<sha256 hex>` (empty) lets the
//! maintenance pass find the expired ones without a scan.

use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use skm_crypto::Id;
use skm_store::{Expect, Op, Store};

use super::{RecordError, Records};

/// The store prefix of request records.
pub(super) const REQUEST_PREFIX: &[u8] = b"reqid/";
/// The store prefix of the request records' time index.
pub(super) const REQUEST_DUE_PREFIX: &[u8] = b"reqdue/";

/// A request id claimed by a change being carried out: where its record
/// goes and what it says.
#[derive(Clone, Debug)]
pub struct Claim {
    /// `reqid/<hex>`.
    pub store_key: Vec<u8>,
    /// `reqdue/<at>/<hex>`.
    due_key: Vec<u8>,
    /// The operation (its audit name).
    pub operation: &'static str,
    /// When the change was made.
    pub at: i64,
}

impl Claim {
    /// The claim of `request_id` sent by `principal` for `operation`.
    pub fn new(principal: &str, request_id: &str, operation: &'static str, at: i64) -> Self {
        let digest = skm_crypto::sha256(&[principal.as_bytes(), &[0], request_id.as_bytes()].concat());
        let digest = hex::encode(digest);
        let store_key = [REQUEST_PREFIX, digest.as_bytes()].concat();
        let due_key = [REQUEST_DUE_PREFIX, &(at.max(0) as u64).to_be_bytes(), b"/", digest.as_bytes()].concat();
        Self { store_key, due_key, operation, at }
    }
}

/// What a change made, kept to answer a retry of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Receipt {
    /// The keystore it made or changed.
    pub keystore_id: Option<Id>,
    /// The key or secret it made or changed.
    pub key_id: Option<Id>,
    /// The key version it made or left newest.
    pub version: Option<u32>,
}

/// A stored request record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// The operation that carried the request id.
    pub operation: String,
    /// When it was made.
    pub at: i64,
    /// What it made.
    pub receipt: Receipt,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordJson {
    operation: String,
    at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keystore_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<u32>,
}

tokio::task_local! {
    /// The claim of the change this task is carrying out, until a batch takes it.
    static PENDING: Arc<Mutex<Option<Claim>>>;
}

/// Runs `change` with `claim` pending for its first batch; returns its
/// output and the claim when no batch took it.
pub async fn with_claim<F: Future>(claim: Claim, change: F) -> (F::Output, Option<Claim>) {
    let slot = Arc::new(Mutex::new(Some(claim)));
    let output = PENDING.scope(Arc::clone(&slot), change).await;
    let left = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    (output, left)
}

fn take_claim() -> Option<Claim> {
    PENDING.try_with(|slot| slot.lock().unwrap_or_else(PoisonError::into_inner).take()).ok().flatten()
}

fn restore_claim(claim: Claim) {
    let _ = PENDING.try_with(|slot| *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(claim));
}

impl<S: Store> Records<S> {
    /// Applies a change's batch, with the pending request claim (if any)
    /// as one more insert-if-absent in the same batch. When the batch
    /// fails because an attempt of the same request committed first, the
    /// error is [`RecordError::RequestCarriedOut`].
    pub(super) async fn commit(&self, mut ops: Vec<Op>, receipt: impl FnOnce() -> Receipt) -> Result<(), RecordError> {
        let Some(claim) = take_claim() else {
            self.store.apply(ops).await?;
            return Ok(());
        };
        ops.extend(self.request_ops(&claim, receipt())?);
        match self.store.apply(ops).await.map_err(RecordError::from) {
            Ok(()) => Ok(()),
            Err(RecordError::Conflict(key)) => {
                if self.store.get(&claim.store_key).await?.is_some() {
                    return Err(RecordError::RequestCarriedOut);
                }
                restore_claim(claim);
                Err(RecordError::Conflict(key))
            }
            Err(e) => {
                restore_claim(claim);
                Err(e)
            }
        }
    }

    /// The record (insert-if-absent) and its time index entry.
    fn request_ops(&self, claim: &Claim, receipt: Receipt) -> Result<[Op; 2], RecordError> {
        let json = RecordJson {
            operation: claim.operation.to_owned(),
            at: claim.at,
            keystore_id: receipt.keystore_id.map(|id| id.to_string()),
            key_id: receipt.key_id.map(|id| id.to_string()),
            version: receipt.version,
        };
        let value = self.seal(&claim.store_key, b"", &Self::to_json(&json)?)?;
        Ok([
            Op::Put { key: claim.store_key.clone(), value, expect: Expect::Absent },
            Op::Put { key: claim.due_key.clone(), value: Vec::new(), expect: Expect::Any },
        ])
    }

    /// Writes the record of a change that wrote no batch of its own (so
    /// nothing to ride along with); a record already there is kept.
    pub async fn put_request(&self, claim: &Claim, receipt: Receipt) -> Result<(), RecordError> {
        match self.store.apply(self.request_ops(claim, receipt)?.into()).await {
            Ok(()) | Err(skm_store::StoreError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The record of a request, if one was made.
    pub async fn request(&self, claim: &Claim) -> Result<Option<RequestRecord>, RecordError> {
        let key = &claim.store_key;
        let corrupt = || RecordError::Corrupt(super::printable(key));
        let Some(v) = self.store.get(key).await? else { return Ok(None) };
        let plain = self.open(key, b"", &v.value)?;
        let json: RecordJson = serde_json::from_slice(&plain).map_err(|_| corrupt())?;
        let id = |text: Option<String>| text.map(|t| t.parse::<Id>().map_err(|_| corrupt())).transpose();
        Ok(Some(RequestRecord {
            operation: json.operation,
            at: json.at,
            receipt: Receipt { keystore_id: id(json.keystore_id)?, key_id: id(json.key_id)?, version: json.version },
        }))
    }

    /// Deletes up to `limit` request records written before `before`
    /// (found in their time index); returns how many.
    pub async fn forget_requests(&self, before: i64, limit: usize) -> Result<usize, RecordError> {
        let end = [REQUEST_DUE_PREFIX, &(before.max(0) as u64).to_be_bytes()].concat();
        let mut ops = Vec::new();
        for (due, _) in self.store.list_range(REQUEST_DUE_PREFIX, &end).await?.into_iter().take(limit) {
            // reqdue/<8 bytes>/<hex>
            let Some(digest) = due.get(REQUEST_DUE_PREFIX.len() + 9..) else { continue };
            ops.push(Op::Delete { key: [REQUEST_PREFIX, digest].concat(), expect: Expect::Any });
            ops.push(Op::Delete { key: due, expect: Expect::Any });
        }
        let forgotten = ops.len() / 2;
        if forgotten > 0 {
            self.store.apply(ops).await?;
        }
        Ok(forgotten)
    }
}

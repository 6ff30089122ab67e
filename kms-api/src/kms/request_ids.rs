//! Request ids: a change retried on another replica is made once.
//!
//! An operator's client that loses the reply to a change (its replica died,
//! the connection broke, the store answered UNAVAILABLE) can't tell whether
//! the change was made. It sends every change with a request id it chose
//! (gRPC metadata `x-skm-request-id`, the same on every attempt) and may
//! then send it again, to any replica. [`Kms::execute`] gives a change with
//! a request id a [`Claim`]; the change's own store batch carries the
//! claim's record (`crate::records::requests`), so the change and the
//! record commit together or not at all. An attempt that finds the record —
//! before it starts, or because its batch lost to an attempt that committed
//! first — changes nothing and is answered from the record by
//! [`Operation::replay`](super::Operation::replay): the key or keystore the
//! change made or changed, as it is now.
//!
//! Ids are scoped to the operator's principal and kept [`WINDOW_SECS`]
//! (the maintenance pass forgets older ones, like Stripe's idempotency
//! keys); an id sent again with another operation is refused. Reads and
//! key uses ignore request ids: they change nothing, so a retry is safe
//! as it is.

use std::sync::Arc;

use skm_store::Store;

use super::{Kms, KmsError};
use crate::model::{Key, Keystore};
use crate::records::{Receipt, RequestRecord};

/// The gRPC metadata (and HTTP header) that carries a request id.
pub const REQUEST_ID_HEADER: &str = "x-skm-request-id";

/// The longest request id, in bytes.
pub const MAX_REQUEST_ID: usize = 128;

/// How long a request id is remembered: a retry later than this makes the
/// change again.
pub const WINDOW_SECS: i64 = 24 * 3600;

/// The most request records one maintenance pass forgets.
pub(super) const FORGET_PER_PASS: usize = 1_000;

/// A client's id for one request: 1 to [`MAX_REQUEST_ID`] characters of
/// `A-Z a-z 0-9 . _ : -` (a UUID or 32 hex digits fit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// Parses a request id; the error names the header and the limits.
    pub fn parse(text: &str) -> Result<Self, KmsError> {
        let ok = (1..=MAX_REQUEST_ID).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if !ok {
            return Err(KmsError::InvalidArgument(format!(
                "{REQUEST_ID_HEADER} is {} bytes of which not all are allowed; a request id is 1 to {MAX_REQUEST_ID} \
                 characters of A-Z a-z 0-9 . _ : -",
                text.len()
            )));
        }
        Ok(Self(text.to_owned()))
    }

    /// The id as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Refuses a record made by another operation under the same id.
pub(super) fn same_operation(record: &RequestRecord, operation: &str) -> Result<(), KmsError> {
    if record.operation != operation {
        return Err(KmsError::InvalidArgument(format!(
            "{REQUEST_ID_HEADER}: this id was used for {} and can't name a {operation}; send each request with \
             an id of its own",
            record.operation
        )));
    }
    Ok(())
}

/// What a replay of an operation whose result can't be rebuilt answers.
pub(super) fn not_replayable(operation: &str) -> KmsError {
    KmsError::FailedPrecondition(format!(
        "{operation} was already carried out under this {REQUEST_ID_HEADER}; its result is returned only once \
         (read the current state instead)"
    ))
}

impl<S: Store + Clone> Kms<S> {
    /// The key a replayed change made or changed, as it is now: read
    /// afresh, as the cache may predate the change (made on another
    /// replica, or here with its reply lost).
    pub(super) async fn replayed_key(&self, receipt: &Receipt) -> Result<Arc<Key>, KmsError> {
        let id = receipt.key_id.ok_or_else(|| KmsError::Internal("a key's request record names no key".into()))?;
        self.cache.invalidate_key(&id);
        self.key(&id).await
    }

    /// The keystore a replayed change made or changed, as it is now (read
    /// afresh, as [`Kms::replayed_key`]).
    pub(super) async fn replayed_keystore(&self, receipt: &Receipt) -> Result<Arc<Keystore>, KmsError> {
        let id = receipt
            .keystore_id
            .ok_or_else(|| KmsError::Internal("a keystore's request record names no keystore".into()))?;
        self.cache.invalidate_keystore(&id);
        self.keystore(&id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_short_and_plain() {
        for good in ["a", "0123456789abcdef0123456789abcdef", "2f1c-77:op.1_x", &"x".repeat(MAX_REQUEST_ID)] {
            assert_eq!(RequestId::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", " ", "a b", "ä", "a/b", &"x".repeat(MAX_REQUEST_ID + 1)] {
            let message = RequestId::parse(bad).unwrap_err().to_string();
            assert!(message.contains(REQUEST_ID_HEADER) && message.contains("128"), "{message}");
        }
    }
}

//! SKM's storage abstraction: a key-value [`Store`] with per-key revisions and
//! compare-and-swap, so concurrent writers never lose an update, and with
//! durable writes (a write returns only once it is flushed).
//!
//! Backends: [`SledStore`] (embedded, one directory per tier),
//! [`EtcdStore`] (etcd's v3 API over mutual TLS, for a fleet of replicas)
//! and [`MemoryStore`] (in memory, not durable: for unit tests);
//! [`AnyStore`] is the one a daemon's config chose ([`config`]). Values are
//! opaque bytes: kms-api encrypts every record before it reaches a store.
//!
//! With the `conformance` feature, [`conformance`] is the suite of semantics
//! every backend must pass (this crate's `tests/conformance.rs` runs it
//! against each backend); without it no test code is compiled in.

#![forbid(unsafe_code)]

use std::future::Future;

mod any;
pub mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod etcd;
mod memory;
mod sled_store;

pub use any::AnyStore;
pub use etcd::EtcdStore;
pub use memory::MemoryStore;
pub use sled_store::SledStore;

/// What a store's watch reports ([`EtcdStore::watch`]), in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// The watch started, or started again after a break: a change made
    /// before `as_of` may never be reported, so whatever was derived from
    /// the store must be read afresh. Every change after it will be.
    Restarted {
        /// When the watch was asked for.
        as_of: std::time::Instant,
    },
    /// A key was written or deleted (the key without the store's prefix).
    Changed(Vec<u8>),
    /// Every change committed before `as_of` has been reported.
    UpToDate {
        /// When the progress check was sent.
        as_of: std::time::Instant,
    },
}

/// A stored value with its revision (1 for the first write of a key,
/// +1 for each later write; a deleted key starts again at 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// Revision of this value.
    pub revision: u64,
    /// The value.
    pub value: Vec<u8>,
}

/// What a conditional write expects to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The key must not exist.
    Absent,
    /// The key must exist at this revision.
    Revision(u64),
    /// No condition.
    Any,
}

/// One write of an atomic batch.
#[derive(Clone, Debug)]
pub enum Op {
    /// Set `key` to `value` if `expect` holds.
    Put {
        /// Key.
        key: Vec<u8>,
        /// New value.
        value: Vec<u8>,
        /// Condition.
        expect: Expect,
    },
    /// Delete `key` if `expect` holds.
    Delete {
        /// Key.
        key: Vec<u8>,
        /// Condition.
        expect: Expect,
    },
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A condition did not hold: someone else wrote first.
    #[error("concurrent modification of {key}")]
    Conflict {
        /// The key whose condition failed (printable form).
        key: String,
    },
    /// The backend failed (I/O, corruption).
    #[error("storage backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend can't be reached or can't answer now (etcd: every
    /// member unreachable, no quorum, no answer in time); a write that
    /// fails so may or may not have been applied. Retrying later is right.
    #[error("storage backend unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored value is not in the store's framing.
    #[error("stored value for {key} is malformed")]
    Malformed {
        /// The key (printable form).
        key: String,
    },
}

/// A key-value store with revisions and compare-and-swap. Every write is
/// durable when its future completes.
pub trait Store: Send + Sync + 'static {
    /// Reads one key.
    fn get(&self, key: &[u8]) -> impl Future<Output = Result<Option<Versioned>, StoreError>> + Send;

    /// Writes one key if `expect` holds; returns the new revision.
    fn put(&self, key: &[u8], value: &[u8], expect: Expect) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Applies every op or none: all conditions are checked, then all writes
    /// are made, then flushed. A batch should name each key at most once:
    /// what a second op on the same key sees is backend-specific (sled and
    /// memory see the first; etcd refuses such a transaction).
    fn apply(&self, ops: Vec<Op>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes `key` if `expect` holds: a batch of one [`Op::Delete`].
    fn delete(&self, key: &[u8], expect: Expect) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.apply(vec![Op::Delete { key: key.to_vec(), expect }])
    }

    /// Every key starting with `prefix`, in key order (bytewise, unsigned;
    /// the empty prefix lists every key).
    fn list(&self, prefix: &[u8]) -> impl Future<Output = Result<Vec<(Vec<u8>, Versioned)>, StoreError>> + Send;

    /// Every key in `start..end` (end excluded), in key order.
    fn list_range(
        &self,
        start: &[u8],
        end: &[u8],
    ) -> impl Future<Output = Result<Vec<(Vec<u8>, Versioned)>, StoreError>> + Send;

    /// At most `limit` keys from `start` (included) on, in key order: one
    /// page of a scan of the whole store that holds only a page in memory.
    fn list_from(
        &self,
        start: &[u8],
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(Vec<u8>, Versioned)>, StoreError>> + Send;
}

/// Printable form of a key for errors and logs (keys never hold secrets).
pub(crate) fn printable(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

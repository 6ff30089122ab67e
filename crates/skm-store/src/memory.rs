//! An in-memory backend for unit tests: the [`Store`] semantics of the sled
//! backend (per-key revisions from 1, compare-and-swap, atomic batches,
//! ordered listing) without a directory or a flush.
//!
//! It is NOT durable: everything is lost when the last clone is dropped, so
//! it never backs a daemon. It exists so that code generic over [`Store`]
//! (system-keyd's versions, kms-api's records) can be unit-tested quickly,
//! and it passes the same conformance suite as the durable backends except
//! the durability case, which the suite skips for it by design.
//!
//! One mutex over one ordered map: every operation is atomic by
//! construction, which is all a test double needs.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{Expect, Op, Store, StoreError, Versioned, printable};

/// A [`Store`] held in memory, for tests only: not durable. Cheap to clone;
/// clones share the same data.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    map: Arc<Mutex<BTreeMap<Vec<u8>, Versioned>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Vec<u8>, Versioned>> {
        // No operation can leave the map half-written (a batch is staged
        // first, then committed), so a panic elsewhere doesn't taint it.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Checks `expect` against the current revision; returns the next revision.
fn check(key: &[u8], current: Option<u64>, expect: Expect) -> Result<u64, StoreError> {
    let ok = match (expect, current) {
        (Expect::Any, _) | (Expect::Absent, None) => true,
        (Expect::Revision(want), Some(have)) => want == have,
        _ => false,
    };
    if !ok {
        return Err(StoreError::Conflict { key: printable(key) });
    }
    Ok(current.unwrap_or(0) + 1)
}

fn entries<'a>(iter: impl Iterator<Item = (&'a Vec<u8>, &'a Versioned)>) -> Vec<(Vec<u8>, Versioned)> {
    iter.map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl Store for MemoryStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Versioned>, StoreError> {
        Ok(self.lock().get(key).cloned())
    }

    async fn put(&self, key: &[u8], value: &[u8], expect: Expect) -> Result<u64, StoreError> {
        let mut map = self.lock();
        let next = check(key, map.get(key).map(|v| v.revision), expect)?;
        map.insert(key.to_vec(), Versioned { revision: next, value: value.to_vec() });
        Ok(next)
    }

    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut map = self.lock();
        // Staged writes: a later op on the same key sees an earlier one, as
        // in a sled transaction; nothing reaches the map unless all hold.
        let mut staged: HashMap<Vec<u8>, Option<Versioned>> = HashMap::new();
        for op in ops {
            let (key, expect) = match &op {
                Op::Put { key, expect, .. } | Op::Delete { key, expect } => (key, *expect),
            };
            let current = match staged.get(key) {
                Some(staged) => staged.as_ref().map(|v| v.revision),
                None => map.get(key).map(|v| v.revision),
            };
            let next = check(key, current, expect)?;
            match op {
                Op::Put { key, value, .. } => staged.insert(key, Some(Versioned { revision: next, value })),
                Op::Delete { key, .. } => staged.insert(key, None),
            };
        }
        for (key, value) in staged {
            match value {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
        }
        Ok(())
    }

    async fn list(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Versioned)>, StoreError> {
        let map = self.lock();
        let from = map.range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded));
        Ok(entries(from.take_while(|(k, _)| k.starts_with(prefix))))
    }

    async fn list_range(&self, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Versioned)>, StoreError> {
        if start >= end {
            // BTreeMap::range panics on an inverted range; the trait says empty.
            return Ok(Vec::new());
        }
        let map = self.lock();
        Ok(entries(map.range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))))
    }

    async fn list_from(&self, start: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Versioned)>, StoreError> {
        let map = self.lock();
        Ok(entries(map.range::<[u8], _>((Bound::Included(start), Bound::Unbounded)).take(limit)))
    }
}

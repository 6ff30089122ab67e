//! The core's bounded in-memory cache of decrypted keystores and keys.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use skm_crypto::Id;

use crate::model::{Key, Keystore};

/// Bounded in-memory cache of decrypted keystores and keys, so a crypto
/// call does no storage I/O on a hit. Each entry carries the store
/// revision it was read at, so a slow writer can't replace a newer entry
/// with an older one. Keys and keystores each take at most half of
/// `cache_entries`; a full map evicts its oldest insertion (FIFO: no
/// bookkeeping on the hit path, O(1) per miss, and the memory bound holds).
#[derive(Debug)]
pub(super) struct Cache {
    capacity: usize,
    keystores: Entries<Keystore>,
    keys: Entries<Key>,
    /// Lookups answered from memory and lookups that went to the store
    /// (for metrics): keys, then keystores.
    hits: [AtomicU64; 2],
    misses: [AtomicU64; 2],
}

/// Cache lookups since start, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Key lookups answered from memory.
    pub key_hits: u64,
    /// Key lookups that went to the store.
    pub key_misses: u64,
    /// Keystore lookups answered from memory.
    pub keystore_hits: u64,
    /// Keystore lookups that went to the store.
    pub keystore_misses: u64,
}

#[derive(Debug)]
struct Map<T> {
    entries: HashMap<Id, (u64, Arc<T>)>,
    /// Insertion order, for eviction; may hold ids already removed.
    order: VecDeque<Id>,
}

impl<T> Default for Map<T> {
    fn default() -> Self {
        Self { entries: HashMap::new(), order: VecDeque::new() }
    }
}

type Entries<T> = RwLock<Map<T>>;

impl Cache {
    fn get<T>(map: &Entries<T>, id: &Id) -> Option<Arc<T>> {
        map.read().unwrap_or_else(std::sync::PoisonError::into_inner).entries.get(id).map(|(_, v)| v.clone())
    }

    /// Inserts unless a newer revision is cached already.
    fn put<T>(&self, map: &Entries<T>, id: Id, revision: u64, value: Arc<T>) {
        let mut map = map.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((cached, _)) = map.entries.get(&id)
            && *cached > revision
        {
            return;
        }
        let bound = (self.capacity / 2).max(1);
        if map.entries.insert(id, (revision, value)).is_none() {
            map.order.push_back(id);
        }
        while map.entries.len() > bound {
            match map.order.pop_front() {
                Some(old) => {
                    map.entries.remove(&old);
                }
                None => break,
            }
        }
        // Stale ids (removed entries) can't make the queue grow without end.
        if map.order.len() > 2 * bound {
            let Map { entries, order } = &mut *map;
            let mut seen = std::collections::HashSet::new();
            order.retain(|id| entries.contains_key(id) && seen.insert(*id));
        }
    }

    fn remove<T>(map: &Entries<T>, id: &Id) {
        map.write().unwrap_or_else(std::sync::PoisonError::into_inner).entries.remove(id);
    }

    fn all<T>(map: &Entries<T>) -> Vec<Arc<T>> {
        map.read().unwrap_or_else(std::sync::PoisonError::into_inner).entries.values().map(|(_, v)| v.clone()).collect()
    }
}

impl Cache {
    /// A cache of at most `capacity` entries (half keys, half keystores).
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            keystores: Entries::default(),
            keys: Entries::default(),
            hits: Default::default(),
            misses: Default::default(),
        }
    }

    fn count<T>(&self, which: usize, found: Option<T>) -> Option<T> {
        let counter = if found.is_some() { &self.hits[which] } else { &self.misses[which] };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub(super) fn stats(&self) -> CacheStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            key_hits: load(&self.hits[0]),
            key_misses: load(&self.misses[0]),
            keystore_hits: load(&self.hits[1]),
            keystore_misses: load(&self.misses[1]),
        }
    }

    pub(super) fn key(&self, id: &Id) -> Option<Arc<Key>> {
        self.count(0, Self::get(&self.keys, id))
    }

    /// A cached key without counting a lookup (writes read the store anyway).
    pub(super) fn peek_key(&self, id: &Id) -> Option<Arc<Key>> {
        Self::get(&self.keys, id)
    }

    pub(super) fn put_key(&self, id: Id, revision: u64, key: Arc<Key>) {
        self.put(&self.keys, id, revision, key);
    }

    pub(super) fn remove_key(&self, id: &Id) {
        Self::remove(&self.keys, id);
    }

    pub(super) fn keys(&self) -> Vec<Arc<Key>> {
        Self::all(&self.keys)
    }

    pub(super) fn keystore(&self, id: &Id) -> Option<Arc<Keystore>> {
        self.count(1, Self::get(&self.keystores, id))
    }

    pub(super) fn put_keystore(&self, id: Id, revision: u64, keystore: Arc<Keystore>) {
        self.put(&self.keystores, id, revision, keystore);
    }

    pub(super) fn remove_keystore(&self, id: &Id) {
        Self::remove(&self.keystores, id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Id {
        Id::from_bytes([n; 16])
    }

    #[test]
    fn cache_is_bounded_fifo_and_keeps_the_newest_revision() {
        let cache = Cache::new(8);
        let map: Entries<u32> = Entries::default();
        for n in 0..10u8 {
            cache.put(&map, id(n), 1, Arc::new(u32::from(n)));
        }
        let held = map.read().unwrap().entries.len();
        assert_eq!(held, 4, "half of cache_entries");
        assert!(Cache::get(&map, &id(0)).is_none(), "oldest evicted first");
        assert_eq!(Cache::get(&map, &id(9)).map(|v| *v), Some(9));
        // An older revision never replaces a newer one.
        cache.put(&map, id(9), 5, Arc::new(95));
        cache.put(&map, id(9), 3, Arc::new(93));
        assert_eq!(Cache::get(&map, &id(9)).map(|v| *v), Some(95));
        // Removals and re-inserts don't let the order queue grow unbounded.
        for round in 0..100u8 {
            Cache::remove(&map, &id(9));
            cache.put(&map, id(9), 10 + u64::from(round), Arc::new(0));
        }
        assert!(map.read().unwrap().order.len() <= 2 * 4 + 1);
    }
}

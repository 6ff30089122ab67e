//! The core's bounded in-memory cache of decrypted keystores and keys.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use skm_crypto::Id;

use crate::model::{Key, Keystore};

/// Bounded in-memory cache of decrypted keystores and keys, so a crypto
/// call does no storage I/O on a hit. Each entry carries the store
/// revision it was read at, so a slow writer can't replace a newer entry
/// with an older one. Keys and keystores each take at most half of
/// `cache_entries`; a full map evicts its oldest insertion (FIFO: no
/// bookkeeping on the hit path, O(1) per miss, and the memory bound holds).
///
/// **On a shared store** (several replicas on etcd) other processes change
/// records too. The store's watch drops each changed record's entry
/// ([`Cache::invalidate_key`]), and the cache is used only while the watch
/// has vouched, within `staleness_bound`, for every change committed up to
/// then ([`Cache::seen_up_to`]); past it, every lookup misses and reads the
/// store (linearizable on etcd), so a broken watch costs speed, never
/// correctness. An entry read before an invalidation can't be inserted
/// after it: every insertion carries the [`Ticket`] taken before its
/// store read, and any invalidation voids the tickets taken before it.
#[derive(Debug)]
pub(super) struct Cache {
    capacity: usize,
    keystores: Entries<Keystore>,
    keys: Entries<Key>,
    /// Bumped by every invalidation; see [`Ticket`].
    epoch: AtomicU64,
    freshness: Freshness,
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

/// Taken before a store read whose result may be cached; an invalidation
/// since voids it, so what was read can't outlive a change made meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ticket(u64);

/// Until when the cache is known to hold every change.
#[derive(Debug)]
struct Freshness {
    /// `None`: no other process writes the store (sled), always fresh.
    bound: Option<Duration>,
    start: Instant,
    /// Nanoseconds after `start` up to which every change was seen.
    seen_up_to: AtomicU64,
}

impl Freshness {
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    fn fresh(&self) -> bool {
        let Some(bound) = self.bound else { return true };
        let seen = self.seen_up_to.load(Ordering::Acquire);
        seen > 0
            && self.nanos(Instant::now()).saturating_sub(seen) <= u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Cache {
    fn get<T>(map: &Entries<T>, id: &Id) -> Option<Arc<T>> {
        map.read().unwrap_or_else(std::sync::PoisonError::into_inner).entries.get(id).map(|(_, v)| v.clone())
    }

    /// Inserts unless a newer revision is cached already, or an
    /// invalidation came after `ticket` was taken.
    fn put<T>(&self, map: &Entries<T>, id: Id, revision: u64, value: Arc<T>, ticket: Ticket) {
        let mut map = map.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Checked under the lock: an invalidation bumps the epoch before it
        // takes the lock to remove, so it either voids this insertion or
        // removes what it inserted.
        if self.epoch.load(Ordering::Acquire) != ticket.0 {
            return;
        }
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

    fn remove<T>(&self, map: &Entries<T>, id: &Id) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        map.write().unwrap_or_else(std::sync::PoisonError::into_inner).entries.remove(id);
    }

    fn all<T>(map: &Entries<T>) -> Vec<Arc<T>> {
        map.read().unwrap_or_else(std::sync::PoisonError::into_inner).entries.values().map(|(_, v)| v.clone()).collect()
    }
}

impl Cache {
    /// A cache of at most `capacity` entries (half keys, half keystores),
    /// over a store no other process writes.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            keystores: Entries::default(),
            keys: Entries::default(),
            epoch: AtomicU64::new(0),
            freshness: Freshness { bound: None, start: Instant::now(), seen_up_to: AtomicU64::new(0) },
            hits: Default::default(),
            misses: Default::default(),
        }
    }

    /// Over a store other processes write too: used only while the store's
    /// watch has vouched for it within `bound` ([`Cache::seen_up_to`]).
    pub(super) fn share(&mut self, bound: Duration) {
        self.freshness.bound = Some(bound);
    }

    /// Whether lookups may be answered from memory now.
    pub(super) fn fresh(&self) -> bool {
        self.freshness.fresh()
    }

    /// Every change committed before `at` has been invalidated.
    pub(super) fn seen_up_to(&self, at: Instant) {
        let nanos = self.freshness.nanos(at).max(1);
        self.freshness.seen_up_to.fetch_max(nanos, Ordering::AcqRel);
    }

    /// Drops every entry (the watch started again: changes may have been
    /// missed).
    pub(super) fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner).entries.clear();
        self.keystores.write().unwrap_or_else(std::sync::PoisonError::into_inner).entries.clear();
    }

    /// To be taken before a store read whose result will be inserted.
    pub(super) fn ticket(&self) -> Ticket {
        Ticket(self.epoch.load(Ordering::Acquire))
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
        let found = if self.fresh() { Self::get(&self.keys, id) } else { None };
        self.count(0, found)
    }

    /// A cached key without counting a lookup (writes read the store anyway).
    pub(super) fn peek_key(&self, id: &Id) -> Option<Arc<Key>> {
        Self::get(&self.keys, id)
    }

    pub(super) fn put_key(&self, id: Id, revision: u64, key: Arc<Key>, ticket: Ticket) {
        self.put(&self.keys, id, revision, key, ticket);
    }

    /// Drops a key's entry; insertions whose ticket predates this are void.
    pub(super) fn invalidate_key(&self, id: &Id) {
        self.remove(&self.keys, id);
    }

    pub(super) fn keys(&self) -> Vec<Arc<Key>> {
        Self::all(&self.keys)
    }

    pub(super) fn keystore(&self, id: &Id) -> Option<Arc<Keystore>> {
        let found = if self.fresh() { Self::get(&self.keystores, id) } else { None };
        self.count(1, found)
    }

    pub(super) fn put_keystore(&self, id: Id, revision: u64, keystore: Arc<Keystore>, ticket: Ticket) {
        self.put(&self.keystores, id, revision, keystore, ticket);
    }

    /// Drops a keystore's entry; insertions whose ticket predates this are
    /// void.
    pub(super) fn invalidate_keystore(&self, id: &Id) {
        self.remove(&self.keystores, id);
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
            cache.put(&map, id(n), 1, Arc::new(u32::from(n)), cache.ticket());
        }
        let held = map.read().unwrap().entries.len();
        assert_eq!(held, 4, "half of cache_entries");
        assert!(Cache::get(&map, &id(0)).is_none(), "oldest evicted first");
        assert_eq!(Cache::get(&map, &id(9)).map(|v| *v), Some(9));
        // An older revision never replaces a newer one.
        cache.put(&map, id(9), 5, Arc::new(95), cache.ticket());
        cache.put(&map, id(9), 3, Arc::new(93), cache.ticket());
        assert_eq!(Cache::get(&map, &id(9)).map(|v| *v), Some(95));
        // Removals and re-inserts don't let the order queue grow unbounded.
        for round in 0..100u8 {
            cache.remove(&map, &id(9));
            cache.put(&map, id(9), 10 + u64::from(round), Arc::new(0), cache.ticket());
        }
        assert!(map.read().unwrap().order.len() <= 2 * 4 + 1);
    }

    #[test]
    fn what_was_read_before_an_invalidation_is_not_cached_after_it() {
        let cache = Cache::new(8);
        let map: Entries<u32> = Entries::default();
        let before = cache.ticket();
        // Another replica changed id(1) while this one was reading it.
        cache.remove(&map, &id(1));
        cache.put(&map, id(1), 7, Arc::new(1), before);
        assert!(Cache::get(&map, &id(1)).is_none(), "a read from before the change must not be cached");
        cache.put(&map, id(1), 8, Arc::new(2), cache.ticket());
        assert_eq!(Cache::get(&map, &id(1)).map(|v| *v), Some(2));
        let before = cache.ticket();
        cache.clear();
        cache.put(&map, id(2), 1, Arc::new(3), before);
        assert!(Cache::get(&map, &id(2)).is_none(), "a restart voids every earlier ticket");
    }

    #[test]
    fn a_shared_cache_is_used_only_while_the_watch_vouches_for_it() {
        let bound = Duration::from_millis(200);
        let mut cache = Cache::new(8);
        cache.share(bound);
        assert!(!cache.fresh(), "nothing seen yet");
        cache.seen_up_to(Instant::now());
        assert!(cache.fresh());
        cache.seen_up_to(Instant::now() - 2 * bound);
        assert!(cache.fresh(), "an older report never moves freshness back");
        let mut stale = Cache::new(8);
        stale.share(Duration::from_millis(1));
        stale.seen_up_to(Instant::now());
        std::thread::sleep(Duration::from_millis(5));
        assert!(!stale.fresh(), "older than the bound");
        assert!(Cache::new(8).fresh(), "an unshared store is always fresh");
    }
}

//! The embedded backend: sled, one database directory per tier.
//!
//! Framing of a stored value: `revision(u64 BE) | value`.
//!
//! Durability with group commit: a write returns only once a flush that
//! started after it has finished. One flusher thread per database runs the
//! flushes back to back, so every writer waiting at the moment a flush
//! starts shares it (many concurrent writers, one flush). On Linux sled's
//! flush survives a process crash (sync_file_range), see FIELD-NOTES.
//!
//! Flushes are never run concurrently: sled 0.34's `flush_async` from
//! several tasks at once can deadlock (all of its I/O threads parked in
//! `make_stable`), which this design avoids by construction.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use sled::transaction::{ConflictableTransactionError, TransactionError};
use tokio::sync::watch;

use crate::{Expect, Op, Store, StoreError, Versioned, printable};

/// A sled database used as a [`Store`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SledStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: sled::Db,
    requests: Arc<FlushRequests>,
    flushed: watch::Receiver<Flushed>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct FlushRequests {
    state: Mutex<RequestState>,
    wake: Condvar,
    /// Flushes run since the database was opened.
    flushes: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default)]
struct RequestState {
    /// Generation of the latest write that wants a flush.
    requested: u64,
    stop: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct Flushed {
    /// Every write up to this generation is durable (if `ok`).
    generation: u64,
    ok: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        lock(&self.requests.state).stop = true;
        self.requests.wake.notify_all();
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn flusher(db: sled::Db, requests: Arc<FlushRequests>, done: watch::Sender<Flushed>) {
    let mut flushed = 0;
    loop {
        let target = {
            let mut state = lock(&requests.state);
            while state.requested == flushed && !state.stop {
                state = requests.wake.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if state.requested == flushed {
                return;
            }
            state.requested
        };
        requests.flushes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ok = match db.flush() {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(error = %e, "sled flush failed");
                false
            }
        };
        flushed = target;
        done.send_replace(Flushed { generation: target, ok });
    }
}

impl SledStore {
    /// sled's page cache unless told otherwise (sled's own default is 1 GiB).
    pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

    /// Opens (or creates) the database in `dir` with the default page cache.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, Self::DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the database in `dir`; sled keeps at most about
    /// `cache_bytes` of its pages in memory.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(backend)?;
        let requests = Arc::new(FlushRequests::default());
        let (done, flushed) = watch::channel(Flushed { generation: 0, ok: true });
        let thread = std::thread::Builder::new()
            .name("sled-group-commit".into())
            .spawn({
                let db = db.clone();
                let requests = requests.clone();
                move || flusher(db, requests, done)
            })
            .map_err(backend)?;
        Ok(Self { inner: Arc::new(Inner { db, requests, flushed, thread: Mutex::new(Some(thread)) }) })
    }

    /// Flushes run since the database was opened (many concurrent writes
    /// share one).
    pub fn flushes(&self) -> u64 {
        self.inner.requests.flushes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until everything written so far is durable.
    async fn flush(&self) -> Result<(), StoreError> {
        let generation = {
            let mut state = lock(&self.inner.requests.state);
            state.requested += 1;
            state.requested
        };
        self.inner.requests.wake.notify_one();
        let mut rx = self.inner.flushed.clone();
        let flushed = rx
            .wait_for(|f| f.generation >= generation)
            .await
            .map(|f| *f)
            .map_err(|_| StoreError::Backend("the flusher thread stopped".into()))?;
        if flushed.ok { Ok(()) } else { Err(StoreError::Backend("flush failed".into())) }
    }
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn decode(key: &[u8], raw: &[u8]) -> Result<Versioned, StoreError> {
    if raw.len() < 8 {
        return Err(StoreError::Malformed { key: printable(key) });
    }
    let (rev, value) = raw.split_at(8);
    let mut r = [0u8; 8];
    r.copy_from_slice(rev);
    Ok(Versioned { revision: u64::from_be_bytes(r), value: value.to_vec() })
}

fn collect(iter: sled::Iter) -> Result<Vec<(Vec<u8>, Versioned)>, StoreError> {
    let mut out = Vec::new();
    for item in iter {
        let (k, v) = item.map_err(backend)?;
        out.push((k.to_vec(), decode(&k, &v)?));
    }
    Ok(out)
}

fn encode(revision: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&revision.to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// Checks `expect` against the current raw value; returns the next revision.
fn check(key: &[u8], current: Option<&[u8]>, expect: Expect) -> Result<u64, StoreError> {
    let current_rev = match current {
        Some(raw) => Some(decode(key, raw)?.revision),
        None => None,
    };
    let ok = match (expect, current_rev) {
        (Expect::Any, _) => true,
        (Expect::Absent, None) => true,
        (Expect::Revision(want), Some(have)) => want == have,
        _ => false,
    };
    if !ok {
        return Err(StoreError::Conflict { key: printable(key) });
    }
    Ok(current_rev.unwrap_or(0) + 1)
}

impl Store for SledStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Versioned>, StoreError> {
        match self.inner.db.get(key).map_err(backend)? {
            Some(raw) => Ok(Some(decode(key, &raw)?)),
            None => Ok(None),
        }
    }

    async fn put(&self, key: &[u8], value: &[u8], expect: Expect) -> Result<u64, StoreError> {
        let current = self.inner.db.get(key).map_err(backend)?;
        let next = check(key, current.as_deref(), expect)?;
        self.inner
            .db
            .compare_and_swap(key, current, Some(encode(next, value)))
            .map_err(backend)?
            .map_err(|_| StoreError::Conflict { key: printable(key) })?;
        self.flush().await?;
        Ok(next)
    }

    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let result = self.inner.db.transaction(|tx| {
            for op in &ops {
                let (key, expect) = match op {
                    Op::Put { key, expect, .. } | Op::Delete { key, expect } => (key, *expect),
                };
                let current = tx.get(key)?;
                let next = check(key, current.as_deref(), expect).map_err(ConflictableTransactionError::Abort)?;
                match op {
                    Op::Put { value, .. } => {
                        tx.insert(key.as_slice(), encode(next, value))?;
                    }
                    Op::Delete { .. } => {
                        tx.remove(key.as_slice())?;
                    }
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(backend(e)),
        }
        self.flush().await
    }

    async fn list(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Versioned)>, StoreError> {
        collect(self.inner.db.scan_prefix(prefix))
    }

    async fn list_range(&self, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Versioned)>, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        collect(self.inner.db.range(start..end))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn revisions_and_conditions() {
        let (_dir, s) = store();
        assert_eq!(s.put(b"a", b"1", Expect::Absent).await.unwrap(), 1);
        assert!(matches!(s.put(b"a", b"x", Expect::Absent).await, Err(StoreError::Conflict { .. })));
        assert_eq!(s.put(b"a", b"2", Expect::Revision(1)).await.unwrap(), 2);
        assert!(matches!(s.put(b"a", b"x", Expect::Revision(1)).await, Err(StoreError::Conflict { .. })));
        assert!(matches!(s.put(b"b", b"x", Expect::Revision(1)).await, Err(StoreError::Conflict { .. })));
        assert_eq!(s.get(b"a").await.unwrap(), Some(Versioned { revision: 2, value: b"2".to_vec() }));
        assert_eq!(s.put(b"a", b"3", Expect::Any).await.unwrap(), 3);
        assert_eq!(s.get(b"none").await.unwrap(), None);
    }

    #[tokio::test]
    async fn apply_is_all_or_nothing() {
        let (_dir, s) = store();
        s.put(b"taken", b"x", Expect::Absent).await.unwrap();
        let ops = vec![
            Op::Put { key: b"new".to_vec(), value: b"1".to_vec(), expect: Expect::Absent },
            Op::Put { key: b"taken".to_vec(), value: b"2".to_vec(), expect: Expect::Absent },
        ];
        assert!(matches!(s.apply(ops).await, Err(StoreError::Conflict { .. })));
        assert_eq!(s.get(b"new").await.unwrap(), None);
        let ops = vec![
            Op::Put { key: b"new".to_vec(), value: b"1".to_vec(), expect: Expect::Absent },
            Op::Delete { key: b"taken".to_vec(), expect: Expect::Revision(1) },
        ];
        s.apply(ops).await.unwrap();
        assert_eq!(s.get(b"new").await.unwrap().unwrap().revision, 1);
        assert_eq!(s.get(b"taken").await.unwrap(), None);
    }

    #[tokio::test]
    async fn list_by_prefix_in_order() {
        let (_dir, s) = store();
        for k in ["k/2", "k/1", "j/1", "k/3"] {
            s.put(k.as_bytes(), b"v", Expect::Absent).await.unwrap();
        }
        let keys: Vec<_> = s.list(b"k/").await.unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![b"k/1".to_vec(), b"k/2".to_vec(), b"k/3".to_vec()]);
        let range: Vec<_> = s.list_range(b"k/2", b"k/3").await.unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(range, vec![b"k/2".to_vec()]);
        assert!(s.list_range(b"k/3", b"k/1").await.unwrap().is_empty());
    }

    /// Many concurrent read-modify-write loops on one key: each increment
    /// lands exactly once (no lost update).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_cas_loses_nothing() {
        let (_dir, s) = store();
        let s = Arc::new(s);
        s.put(b"n", &0u64.to_be_bytes(), Expect::Absent).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    loop {
                        let cur = s.get(b"n").await.unwrap().unwrap();
                        let n = u64::from_be_bytes(cur.value.try_into().unwrap()) + 1;
                        match s.put(b"n", &n.to_be_bytes(), Expect::Revision(cur.revision)).await {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let v = s.get(b"n").await.unwrap().unwrap();
        assert_eq!(u64::from_be_bytes(v.value.try_into().unwrap()), 80);
        assert_eq!(v.revision, 81);
    }

    /// Group commit: concurrent writers share flushes, and every write is
    /// acknowledged only after a flush that covers it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_flushes() {
        const N: usize = 200;
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.put(format!("k/{i}").as_bytes(), b"v", Expect::Absent).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let flushes = s.flushes();
        eprintln!("{N} concurrent writes: {flushes} flushes");
        assert!((1..N as u64).contains(&flushes), "{flushes} flushes for {N} writes");
        drop(s);
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.list(b"k/").await.unwrap().len(), N);
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.put(b"k", b"v", Expect::Absent).await.unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.get(b"k").await.unwrap().unwrap().value, b"v");
    }
}

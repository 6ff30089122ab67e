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

    async fn list_from(&self, start: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Versioned)>, StoreError> {
        let mut out = Vec::new();
        for item in self.inner.db.range(start..).take(limit) {
            let (k, v) = item.map_err(backend)?;
            out.push((k.to_vec(), decode(&k, &v)?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    //! Only what is particular to sled: group commit and its counter. The
    //! Store semantics are checked by the conformance suite
    //! (`tests/conformance.rs`), which runs against every backend.

    use super::*;

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

    /// The counter: a write waited for alone costs exactly one flush; reads
    /// and writes refused by their condition cost none.
    #[tokio::test]
    async fn flushes_counts_one_per_lone_write() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.flushes(), 0, "opening flushes nothing");
        s.put(b"a", b"1", Expect::Absent).await.unwrap();
        s.put(b"a", b"2", Expect::Revision(1)).await.unwrap();
        s.apply(vec![Op::Put { key: b"b".to_vec(), value: b"1".to_vec(), expect: Expect::Absent }]).await.unwrap();
        assert_eq!(s.flushes(), 3, "one flush per sequential write");
        assert!(s.put(b"a", b"x", Expect::Absent).await.is_err());
        assert!(s.apply(vec![Op::Delete { key: b"b".to_vec(), expect: Expect::Revision(9) }]).await.is_err());
        s.get(b"a").await.unwrap();
        s.list(b"").await.unwrap();
        assert_eq!(s.flushes(), 3, "refused writes and reads flush nothing");
    }
}

//! [`AnyStore`]: the backend a daemon's config chose, behind one type, so
//! the daemons are written once over it (and stay generic over [`Store`]
//! in their tests).

use crate::config::StoreConfig;
use crate::etcd::Leadership;
use crate::{EtcdStore, Op, SledStore, Store, StoreError, Versioned, WatchEvent};

/// The store a daemon runs on: sled or etcd. Cheap to clone.
#[derive(Clone, Debug)]
pub enum AnyStore {
    /// The embedded store.
    Sled(SledStore),
    /// An etcd cluster.
    Etcd(EtcdStore),
}

impl AnyStore {
    /// Opens what `config` names; sled keeps at most `sled_cache_bytes` of
    /// pages in memory. An etcd store is checked with one read first.
    pub async fn open(config: &StoreConfig, sled_cache_bytes: u64) -> Result<Self, StoreError> {
        Ok(match config {
            StoreConfig::Sled { dir } => Self::Sled(SledStore::open_with_cache(dir, sled_cache_bytes)?),
            StoreConfig::Etcd(etcd) => Self::Etcd(EtcdStore::open(etcd).await?),
        })
    }

    /// The changes other processes make to the store, when it is shared:
    /// etcd's watch ([`EtcdStore::watch`]). `None` for sled, whose
    /// directory only this process has open.
    pub fn watch(
        &self,
        name: &str,
        progress_every: std::time::Duration,
    ) -> Option<tokio::sync::mpsc::Receiver<WatchEvent>> {
        match self {
            Self::Sled(_) => None,
            Self::Etcd(etcd) => Some(etcd.watch(name, progress_every)),
        }
    }

    /// Campaigns for `job` as `candidate` among the processes sharing the
    /// store ([`EtcdStore::elect`]); on sled, the only process, always
    /// the leader.
    pub fn elect(&self, job: &str, candidate: &str, ttl: std::time::Duration) -> Leadership {
        match self {
            Self::Sled(_) => Leadership::alone(),
            Self::Etcd(etcd) => etcd.elect(job, candidate, ttl),
        }
    }

    /// The backend's name, for logs: `sled` or `etcd`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sled(_) => "sled",
            Self::Etcd(_) => "etcd",
        }
    }
}

/// Runs the same call on whichever backend this is.
macro_rules! each {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Sled($store) => $call.await,
            AnyStore::Etcd($store) => $call.await,
        }
    };
}

impl Store for AnyStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Versioned>, StoreError> {
        each!(self, s => s.get(key))
    }

    async fn put(&self, key: &[u8], value: &[u8], expect: crate::Expect) -> Result<u64, StoreError> {
        each!(self, s => s.put(key, value, expect))
    }

    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        each!(self, s => s.apply(ops))
    }

    async fn list(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Versioned)>, StoreError> {
        each!(self, s => s.list(prefix))
    }

    async fn list_range(&self, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Versioned)>, StoreError> {
        each!(self, s => s.list_range(start, end))
    }

    async fn list_from(&self, start: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Versioned)>, StoreError> {
        each!(self, s => s.list_from(start, limit))
    }
}

//! The wrapped system key versions in system-keyd's store: every version
//! ever made, and which one is active.
//!
//! [`WrappedVersions`] is generic over the [`Store`] so that its unit tests
//! run on [`MemoryStore`](skm_store::MemoryStore) and the daemon runs it on
//! sled (chosen in `start`), without this module naming a backend.
//!
//! Layout: `syskey/<version u32 BE>` → `len(root key id) u8 | root key id | wrapped`,
//! `active` → version u32 BE. A new version and the move of `active` are
//! written in one atomic, compare-and-swap batch.

use skm_store::{Expect, Op, Store, StoreError};

const VERSION_PREFIX: &[u8] = b"syskey/";
const ACTIVE: &[u8] = b"active";

/// One wrapped system key version (never its plaintext).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedVersion {
    /// Version number.
    pub version: u32,
    /// The root key it is wrapped under.
    pub root_key_id: String,
    /// nonce | ciphertext+tag.
    pub wrapped: Vec<u8>,
}

impl WrappedVersion {
    fn encode(&self) -> Vec<u8> {
        let id = self.root_key_id.as_bytes();
        let mut out = Vec::with_capacity(1 + id.len() + self.wrapped.len());
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.extend_from_slice(&self.wrapped);
        out
    }

    fn decode(version: u32, raw: &[u8]) -> Option<Self> {
        let (&len, rest) = raw.split_first()?;
        let len = usize::from(len);
        if rest.len() < len {
            return None;
        }
        let (id, wrapped) = rest.split_at(len);
        Some(Self { version, root_key_id: String::from_utf8(id.to_vec()).ok()?, wrapped: wrapped.to_vec() })
    }
}

fn version_key(version: u32) -> Vec<u8> {
    [VERSION_PREFIX, &version.to_be_bytes()].concat()
}

/// The wrapped versions, kept in a [`Store`].
#[derive(Clone, Debug)]
pub struct WrappedVersions<S: Store> {
    store: S,
}

/// Store errors, plus malformed contents.
#[derive(Debug, thiserror::Error)]
pub enum VersionsError {
    /// The store failed or lost a race.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored entry is not in the expected format.
    #[error("stored system key entry {0} is malformed")]
    Malformed(String),
}

/// All versions plus the active one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Versions, ascending.
    pub versions: Vec<WrappedVersion>,
    /// The active version and the revision of the `active` entry.
    pub active: Option<(u32, u64)>,
}

impl<S: Store> WrappedVersions<S> {
    /// Wraps an opened store.
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// Reads every version and the active one.
    pub async fn snapshot(&self) -> Result<Snapshot, VersionsError> {
        let mut versions = Vec::new();
        for (key, value) in self.store.list(VERSION_PREFIX).await? {
            let malformed = || VersionsError::Malformed(String::from_utf8_lossy(&key).into_owned());
            // strip_prefix rather than slicing: a store that broke list's
            // contract gives Malformed, not a panic.
            let version = key
                .strip_prefix(VERSION_PREFIX)
                .and_then(|v| v.try_into().ok())
                .map(u32::from_be_bytes)
                .ok_or_else(malformed)?;
            versions.push(WrappedVersion::decode(version, &value.value).ok_or_else(malformed)?);
        }
        let active = match self.store.get(ACTIVE).await? {
            Some(v) => {
                let bytes: [u8; 4] = v.value.try_into().map_err(|_| VersionsError::Malformed("active".into()))?;
                Some((u32::from_be_bytes(bytes), v.revision))
            }
            None => None,
        };
        Ok(Snapshot { versions, active })
    }

    /// Adds `key` and makes it active, provided `active` is still at
    /// `expected_active_revision` (None: no active version yet).
    pub async fn add_active(
        &self,
        key: &WrappedVersion,
        expected_active_revision: Option<u64>,
    ) -> Result<(), VersionsError> {
        let expect = expected_active_revision.map_or(Expect::Absent, Expect::Revision);
        self.store
            .apply(vec![
                Op::Put { key: version_key(key.version), value: key.encode(), expect: Expect::Absent },
                Op::Put { key: ACTIVE.to_vec(), value: key.version.to_be_bytes().to_vec(), expect },
            ])
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use skm_store::SledStore;

    use super::*;

    #[tokio::test]
    async fn add_and_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let versions = WrappedVersions::new(SledStore::open(dir.path()).unwrap());
        assert_eq!(versions.snapshot().await.unwrap(), Snapshot { versions: vec![], active: None });
        let v1 = WrappedVersion { version: 1, root_key_id: "r1".into(), wrapped: vec![1, 2, 3] };
        versions.add_active(&v1, None).await.unwrap();
        assert!(versions.add_active(&v1, None).await.is_err(), "a second version 1 is refused");
        let snap = versions.snapshot().await.unwrap();
        assert_eq!(snap.versions, vec![v1.clone()]);
        let (active, rev) = snap.active.unwrap();
        assert_eq!(active, 1);
        let v2 = WrappedVersion { version: 2, root_key_id: "r1".into(), wrapped: vec![4] };
        versions.add_active(&v2, Some(rev)).await.unwrap();
        let stale = WrappedVersion { version: 3, ..v2.clone() };
        assert!(versions.add_active(&stale, Some(rev)).await.is_err(), "stale revision loses");
        let snap = versions.snapshot().await.unwrap();
        assert_eq!(snap.versions, vec![v1, v2]);
        assert_eq!(snap.active.unwrap().0, 2);
    }
}

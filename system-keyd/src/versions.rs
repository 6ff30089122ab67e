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
        let versions = self.list_with_revisions().await?.into_iter().map(|(v, _)| v).collect();
        let active = match self.store.get(ACTIVE).await? {
            Some(v) => {
                let bytes: [u8; 4] = v.value.try_into().map_err(|_| VersionsError::Malformed("active".into()))?;
                Some((u32::from_be_bytes(bytes), v.revision))
            }
            None => None,
        };
        Ok(Snapshot { versions, active })
    }

    /// Every version with the revision of its entry, ascending.
    pub async fn list_with_revisions(&self) -> Result<Vec<(WrappedVersion, u64)>, VersionsError> {
        let mut out = Vec::new();
        for (key, value) in self.store.list(VERSION_PREFIX).await? {
            let malformed = || VersionsError::Malformed(String::from_utf8_lossy(&key).into_owned());
            let version = key
                .strip_prefix(VERSION_PREFIX)
                .and_then(|v| v.try_into().ok())
                .map(u32::from_be_bytes)
                .ok_or_else(malformed)?;
            out.push((WrappedVersion::decode(version, &value.value).ok_or_else(malformed)?, value.revision));
        }
        Ok(out)
    }

    /// Replaces existing versions by their rewrapped form in one atomic
    /// batch, each provided its entry is still at the revision given (a
    /// concurrent change makes the whole batch fail with a conflict).
    pub async fn replace(&self, rewrapped: &[(WrappedVersion, u64)]) -> Result<(), VersionsError> {
        if rewrapped.is_empty() {
            return Ok(());
        }
        let ops = rewrapped
            .iter()
            .map(|(key, revision)| Op::Put {
                key: version_key(key.version),
                value: key.encode(),
                expect: Expect::Revision(*revision),
            })
            .collect();
        self.store.apply(ops).await?;
        Ok(())
    }

    /// Deletes `version` unless it is the active one (`Ok(None)`); the
    /// answer says whether it was stored.
    pub async fn remove(&self, version: u32) -> Result<Option<bool>, VersionsError> {
        let snapshot = self.snapshot().await?;
        let Some((active, revision)) = snapshot.active else { return Ok(Some(false)) };
        if version == active {
            return Ok(None);
        }
        if !snapshot.versions.iter().any(|v| v.version == version) {
            return Ok(Some(false));
        }
        // The active entry must not move meanwhile (a rotation makes a new
        // version active, never an old one, but the check costs nothing).
        self.store
            .apply(vec![
                Op::Put {
                    key: ACTIVE.to_vec(),
                    value: active.to_be_bytes().to_vec(),
                    expect: Expect::Revision(revision),
                },
                Op::Delete { key: version_key(version), expect: Expect::Any },
            ])
            .await?;
        Ok(Some(true))
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
    use std::sync::Arc;

    use skm_store::{MemoryStore, SledStore};
    use tokio::sync::Barrier;

    use super::*;

    fn version(version: u32) -> WrappedVersion {
        WrappedVersion { version, root_key_id: format!("root-{version}"), wrapped: version.to_be_bytes().to_vec() }
    }

    /// The on-store layout, byte for byte: a refactor must not change what
    /// a running deployment has on disk.
    #[tokio::test]
    async fn layout_is_stable() {
        let store = MemoryStore::new();
        let versions = WrappedVersions::new(store.clone());
        let v1 = WrappedVersion { version: 1, root_key_id: "r1".into(), wrapped: vec![7, 8, 9] };
        versions.add_active(&v1, None).await.unwrap();
        let raw: Vec<_> = store.list(b"").await.unwrap().into_iter().map(|(k, v)| (k, v.value)).collect();
        assert_eq!(
            raw,
            vec![(b"active".to_vec(), vec![0, 0, 0, 1]), (b"syskey/\0\0\0\x01".to_vec(), vec![2, b'r', b'1', 7, 8, 9])]
        );
    }

    /// A retired version is deleted; the active one never is.
    #[tokio::test]
    async fn only_a_version_that_is_not_active_is_removed() {
        let versions = WrappedVersions::new(MemoryStore::new());
        assert_eq!(versions.remove(1).await.unwrap(), Some(false), "nothing stored yet");
        versions.add_active(&version(1), None).await.unwrap();
        let active = versions.snapshot().await.unwrap().active.unwrap().1;
        versions.add_active(&version(2), Some(active)).await.unwrap();
        assert_eq!(versions.remove(2).await.unwrap(), None, "the active version stays");
        assert_eq!(versions.remove(1).await.unwrap(), Some(true));
        assert_eq!(versions.remove(1).await.unwrap(), Some(false), "idempotent");
        let snapshot = versions.snapshot().await.unwrap();
        assert_eq!(snapshot.versions, vec![version(2)]);
        assert_eq!(snapshot.active.map(|(v, _)| v), Some(2));
    }

    /// Versions come back in numeric order whatever the order they were
    /// added in (big-endian keys), and the last one added is active.
    #[tokio::test]
    async fn snapshot_is_in_version_order() {
        let versions = WrappedVersions::new(MemoryStore::new());
        let mut expected = None;
        for n in [2, 256, 1, 0x0100_0000, 255] {
            versions.add_active(&version(n), expected).await.unwrap();
            expected = versions.snapshot().await.unwrap().active.map(|(_, rev)| rev);
        }
        let snap = versions.snapshot().await.unwrap();
        let numbers: Vec<_> = snap.versions.iter().map(|v| v.version).collect();
        assert_eq!(numbers, vec![1, 2, 255, 256, 0x0100_0000]);
        assert_eq!(snap.versions[3], version(256), "each version keeps its own root key id and bytes");
        assert_eq!(snap.active, Some((255, 5)), "the last added is active, at one revision per move");
    }

    /// Two rotations racing from the same snapshot: exactly one wins, the
    /// other gets Conflict and leaves no trace (its version is not stored
    /// either), round after round, for the first version (expected None)
    /// and later ones, with the same or different version numbers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_add_active_one_wins() {
        const ROUNDS: u32 = 16;
        let versions = WrappedVersions::new(MemoryStore::new());
        let mut stored = Vec::new();
        for round in 0..ROUNDS {
            let before = versions.snapshot().await.unwrap();
            let expected = before.active.map(|(_, rev)| rev);
            let next = before.active.map_or(1, |(v, _)| v + 1);
            // Odd rounds: both propose the same number (as two processes
            // rotating at once would); even rounds: different numbers, so
            // only the `active` condition can stop the loser.
            let candidates = if round % 2 == 1 { [next, next] } else { [next, next + 1] };
            let barrier = Arc::new(Barrier::new(2));
            let tasks: Vec<_> = candidates
                .into_iter()
                .enumerate()
                .map(|(i, n)| {
                    let (versions, barrier) = (versions.clone(), barrier.clone());
                    let candidate = WrappedVersion { root_key_id: format!("contender-{i}"), ..version(n) };
                    tokio::spawn(async move {
                        barrier.wait().await;
                        let result = versions.add_active(&candidate, expected).await;
                        (candidate, result)
                    })
                })
                .collect();
            let mut winners = Vec::new();
            for task in tasks {
                let (candidate, result) = task.await.unwrap();
                match result {
                    Ok(()) => winners.push(candidate),
                    Err(VersionsError::Store(StoreError::Conflict { .. })) => {}
                    Err(e) => panic!("round {round}: the loser failed with {e}, not a conflict"),
                }
            }
            assert_eq!(winners.len(), 1, "round {round}: exactly one of two rotations wins");
            let winner = winners.remove(0);
            stored.push(winner.clone());
            let after = versions.snapshot().await.unwrap();
            assert_eq!(after.versions, stored, "round {round}: only the winner's version is stored");
            assert_eq!(after.active.map(|(v, _)| v), Some(winner.version), "round {round}: the winner is active");
        }
    }

    /// Every way an entry can be malformed gives Malformed naming the
    /// entry, never a panic or a wrong version; the same helper writing a
    /// well-formed entry decodes (the control).
    #[tokio::test]
    async fn malformed_entries_are_reported() {
        let good_key = version_key(7);
        let cases: Vec<(&str, Vec<u8>, Vec<u8>, &str)> = vec![
            ("a version key of 3 bytes", b"syskey/\0\0\x07".to_vec(), vec![0], "syskey/\0\0\x07"),
            ("a version key of 5 bytes", b"syskey/\0\0\0\0\x07".to_vec(), vec![0], "syskey/\0\0\0\0\x07"),
            ("an empty value", good_key.clone(), vec![], "syskey/\0\0\0\x07"),
            ("a root key id longer than the value", good_key.clone(), vec![5, b'r', b'1'], "syskey/\0\0\0\x07"),
            ("a root key id that is not UTF-8", good_key.clone(), vec![2, 0xff, 0xfe, 1], "syskey/\0\0\0\x07"),
            ("an active of 3 bytes", ACTIVE.to_vec(), vec![0, 0, 1], "active"),
            ("an active of 5 bytes", ACTIVE.to_vec(), vec![0, 0, 0, 0, 1], "active"),
            ("an empty active", ACTIVE.to_vec(), vec![], "active"),
        ];
        for (what, key, value, named) in cases {
            let store = MemoryStore::new();
            store.put(&key, &value, Expect::Absent).await.unwrap();
            match WrappedVersions::new(store).snapshot().await {
                Err(VersionsError::Malformed(entry)) => assert_eq!(entry, named, "{what}: names the entry"),
                other => panic!("{what}: expected Malformed, got {other:?}"),
            }
        }

        let store = MemoryStore::new();
        store.put(&good_key, &[2, b'r', b'1', 9, 9], Expect::Absent).await.unwrap();
        store.put(&version_key(8), &[0], Expect::Absent).await.unwrap();
        store.put(ACTIVE, &[0, 0, 0, 7], Expect::Absent).await.unwrap();
        assert_eq!(
            WrappedVersions::new(store).snapshot().await.unwrap(),
            Snapshot {
                versions: vec![
                    WrappedVersion { version: 7, root_key_id: "r1".into(), wrapped: vec![9, 9] },
                    WrappedVersion { version: 8, root_key_id: String::new(), wrapped: vec![] },
                ],
                active: Some((7, 1)),
            },
            "well-formed raw entries decode, down to an empty id and no wrapped bytes"
        );
    }

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

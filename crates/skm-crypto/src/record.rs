//! Encryption of kms-api's stored records under the system key.
//!
//! Sealed record (format 2, written now):
//! `0x02 | system key version(u32 BE) | nonce(12) | ciphertext+tag`, sealed
//! with the version's **record subkey**
//! `HKDF-SHA256(salt = none, ikm = system key, info = "skm.record.v2")`,
//! AAD = `"skm.record.v2" 0x00 | version | len | record id | len | owner`.
//! Format 1 (`0x01`, sealed with the system key itself, label
//! `"skm.record.v1"`) is still opened, so records written before format 2
//! stay readable; they become format 2 when they are next written.
//!
//! The AAD binds each record to its id, its owner and the system key
//! version, so records can't be swapped between ids or owners in the store.
//! The audit log's key is another HKDF subkey ([`crate::audit`]), so the
//! system key is never used directly for two purposes.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use crate::audit::{AuditFormat, AuditKey};
use crate::{DecryptError, EncryptError, Secret32, aead};

const FORMAT_V1: u8 = 0x01;
const FORMAT_V2: u8 = 0x02;
const LABEL_V1: &[u8] = b"skm.record.v1\0";
const LABEL_V2: &[u8] = b"skm.record.v2\0";
/// HKDF `info` of the record subkey.
pub const RECORD_KEY_INFO: &[u8] = b"skm.record.v2";

/// Everything derived from one system key version, derived once when the
/// keyring is built (no derivation on the hot path).
struct VersionKeys {
    system: Secret32,
    record: Secret32,
    audit_v1: AuditKey,
    audit_v2: AuditKey,
}

impl VersionKeys {
    fn derive(system: Secret32) -> Self {
        Self {
            record: crate::audit::hkdf_sha256(&system, RECORD_KEY_INFO),
            audit_v1: AuditKey::derive(&system, AuditFormat::V1),
            audit_v2: AuditKey::derive(&system, AuditFormat::V2),
            system,
        }
    }
}

/// The audit keys of a retired system key version: the version itself is
/// gone from every tier, but the log entries MAC'd under it keep verifying.
/// They are one-way HKDF/HMAC outputs of the system key: they open no
/// record.
#[derive(Debug)]
pub struct RetiredAuditKeys {
    /// Format 1.
    pub v1: AuditKey,
    /// Format 2.
    pub v2: AuditKey,
}

/// The system key versions kms-api has unwrapped, and which one is active;
/// plus the audit keys of retired versions.
pub struct SystemKeyring {
    active: u32,
    keys: BTreeMap<u32, VersionKeys>,
    retired: BTreeMap<u32, RetiredAuditKeys>,
}

impl std::fmt::Debug for SystemKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemKeyring")
            .field("active", &self.active)
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .field("retired", &self.retired.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The active version is not among the keys given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("active system key version {0} is missing from the keyring")]
pub struct MissingActiveVersion(pub u32);

impl SystemKeyring {
    /// A keyring whose `active` version must be among `keys`.
    pub fn new(active: u32, keys: BTreeMap<u32, Secret32>) -> Result<Self, MissingActiveVersion> {
        if !keys.contains_key(&active) {
            return Err(MissingActiveVersion(active));
        }
        Ok(Self {
            active,
            keys: keys.into_iter().map(|(v, k)| (v, VersionKeys::derive(k))).collect(),
            retired: BTreeMap::new(),
        })
    }

    /// This keyring with the audit keys of retired versions; a version
    /// both held and retired is dropped (its keys wiped).
    pub fn with_retired(mut self, retired: BTreeMap<u32, RetiredAuditKeys>) -> Result<Self, MissingActiveVersion> {
        if retired.contains_key(&self.active) {
            return Err(MissingActiveVersion(self.active));
        }
        self.keys.retain(|v, _| !retired.contains_key(v));
        self.retired = retired;
        Ok(self)
    }

    /// A copy of this keyring without `version`, whose audit keys join the
    /// retired ones. `None` when `version` is the active one or not held.
    pub fn retiring(&self, version: u32) -> Option<Self> {
        if version == self.active || !self.keys.contains_key(&version) {
            return None;
        }
        let copy = |k: &Secret32| {
            let mut raw = *k.danger_expose();
            Secret32::from_slice_wiping(&mut raw)
        };
        let mut keys = BTreeMap::new();
        let mut retired = BTreeMap::new();
        for (v, k) in &self.keys {
            if *v == version {
                retired.insert(*v, self.audit_copy(*v)?);
            } else {
                keys.insert(*v, copy(&k.system)?);
            }
        }
        for v in self.retired.keys() {
            retired.insert(*v, self.audit_copy(*v)?);
        }
        Self::new(self.active, keys).ok()?.with_retired(retired).ok()
    }

    /// A copy of the audit keys of `version`, held or retired.
    fn audit_copy(&self, version: u32) -> Option<RetiredAuditKeys> {
        let copy = |k: &AuditKey| AuditKey::from_bytes_wiping(&mut { *k.danger_bytes() });
        Some(RetiredAuditKeys {
            v1: copy(self.audit_key(version, AuditFormat::V1)?),
            v2: copy(self.audit_key(version, AuditFormat::V2)?),
        })
    }

    /// The retired versions, ascending.
    pub fn retired_versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.retired.keys().copied()
    }

    /// The audit keys of each retired version (to keep them sealed).
    pub fn retired_audit_keys(&self) -> impl Iterator<Item = (u32, &RetiredAuditKeys)> + '_ {
        self.retired.iter().map(|(v, k)| (*v, k))
    }

    /// The version new records are sealed under.
    pub fn active_version(&self) -> u32 {
        self.active
    }

    /// The versions held, ascending.
    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    /// Key material of one version, for test-only accessors and for
    /// carrying held versions over into a new keyring.
    pub fn danger_key(&self, version: u32) -> Option<&Secret32> {
        self.keys.get(&version).map(|k| &k.system)
    }

    /// The audit key of one version, held or retired, for one audit log
    /// format.
    pub fn audit_key(&self, version: u32, format: AuditFormat) -> Option<&AuditKey> {
        if let Some(k) = self.keys.get(&version) {
            return Some(match format {
                AuditFormat::V1 => &k.audit_v1,
                AuditFormat::V2 => &k.audit_v2,
            });
        }
        self.retired.get(&version).map(|k| match format {
            AuditFormat::V1 => &k.v1,
            AuditFormat::V2 => &k.v2,
        })
    }

    /// Seals a record under the active version (format 2).
    pub fn seal(&self, record_id: &[u8], owner: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, EncryptError> {
        let keys = self.keys.get(&self.active).ok_or(EncryptError)?;
        let mut out = Vec::with_capacity(5 + 28 + plaintext.len());
        out.push(FORMAT_V2);
        out.extend_from_slice(&self.active.to_be_bytes());
        aead::seal_into(&keys.record, &aad(LABEL_V2, self.active, record_id, owner), plaintext, &mut out)?;
        Ok(out)
    }

    /// Opens a record sealed under any version held, in either format.
    pub fn open(&self, record_id: &[u8], owner: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        let version = Self::version_of(sealed)?;
        let keys = self.keys.get(&version).ok_or(DecryptError)?;
        let (key, label) = match sealed[0] {
            FORMAT_V1 => (&keys.system, LABEL_V1),
            _ => (&keys.record, LABEL_V2),
        };
        aead::open(key, &aad(label, version, record_id, owner), &sealed[5..])
    }

    /// Whether `sealed` is sealed under the active version in the current
    /// format (re-sealing leaves it alone).
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        sealed.first() == Some(&FORMAT_V2) && Self::version_of(sealed) == Ok(self.active)
    }

    /// The system key version a sealed record names.
    pub fn version_of(sealed: &[u8]) -> Result<u32, DecryptError> {
        if sealed.len() < 5 || !matches!(sealed[0], FORMAT_V1 | FORMAT_V2) {
            return Err(DecryptError);
        }
        let mut v = [0u8; 4];
        v.copy_from_slice(&sealed[1..5]);
        Ok(u32::from_be_bytes(v))
    }

    /// Seals in the old format 1, for the test that format 1 still opens.
    #[cfg(test)]
    fn seal_v1(&self, record_id: &[u8], owner: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let keys = &self.keys[&self.active];
        let mut out = vec![FORMAT_V1];
        out.extend_from_slice(&self.active.to_be_bytes());
        aead::seal_into(&keys.system, &aad(LABEL_V1, self.active, record_id, owner), plaintext, &mut out).unwrap();
        out
    }
}

fn aad(label: &[u8], version: u32, record_id: &[u8], owner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(label.len() + 12 + record_id.len() + owner.len());
    out.extend_from_slice(label);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&(record_id.len() as u32).to_be_bytes());
    out.extend_from_slice(record_id);
    out.extend_from_slice(&(owner.len() as u32).to_be_bytes());
    out.extend_from_slice(owner);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(versions: &[u32], active: u32) -> SystemKeyring {
        let keys = versions.iter().map(|v| (*v, Secret32::generate().unwrap())).collect();
        SystemKeyring::new(active, keys).unwrap()
    }

    #[test]
    fn binds_id_owner_and_version() {
        let ring = ring(&[1, 2], 2);
        let sealed = ring.seal(b"key/a", b"ks1", b"payload").unwrap();
        assert_eq!(SystemKeyring::version_of(&sealed), Ok(2));
        assert_eq!(&ring.open(b"key/a", b"ks1", &sealed).unwrap()[..], b"payload");
        assert_eq!(ring.open(b"key/b", b"ks1", &sealed), Err(DecryptError));
        assert_eq!(ring.open(b"key/a", b"ks2", &sealed), Err(DecryptError));
        let mut relabelled = sealed.clone();
        relabelled[4] = 1;
        assert_eq!(ring.open(b"key/a", b"ks1", &relabelled), Err(DecryptError));
    }

    #[test]
    fn old_versions_keep_opening() {
        let mut keys = BTreeMap::new();
        keys.insert(1, Secret32::generate().unwrap());
        let old = SystemKeyring::new(1, keys).unwrap();
        let sealed = old.seal(b"r", b"", b"v1 data").unwrap();
        let mut keys = BTreeMap::new();
        let mut raw = *old.danger_key(1).unwrap().danger_expose();
        keys.insert(1, Secret32::from_slice_wiping(&mut raw).unwrap());
        keys.insert(2, Secret32::generate().unwrap());
        let new = SystemKeyring::new(2, keys).unwrap();
        assert_eq!(&new.open(b"r", b"", &sealed).unwrap()[..], b"v1 data");
        assert_eq!(SystemKeyring::version_of(&new.seal(b"r", b"", b"x").unwrap()), Ok(2));
    }

    #[test]
    fn format_1_still_opens_and_format_2_uses_the_subkey() {
        let ring = ring(&[1], 1);
        let old = ring.seal_v1(b"r", b"o", b"old");
        assert_eq!(&ring.open(b"r", b"o", &old).unwrap()[..], b"old");
        let new = ring.seal(b"r", b"o", b"new").unwrap();
        assert_eq!(new[0], FORMAT_V2);
        // A format-2 record relabelled as format 1 (system key itself) fails.
        let mut relabelled = new.clone();
        relabelled[0] = FORMAT_V1;
        assert_eq!(ring.open(b"r", b"o", &relabelled), Err(DecryptError));
        assert_eq!(ring.open(b"r", b"o", &[0x03, 0, 0, 0, 1]), Err(DecryptError));
    }

    #[test]
    fn a_retired_version_opens_nothing_but_its_audit_keys_stay() {
        let ring = ring(&[1, 2], 2);
        let old = ring.audit_key(1, AuditFormat::V2).unwrap().mac(b"entry");
        let sealed = {
            let mut keys = BTreeMap::new();
            let mut raw = *ring.danger_key(1).unwrap().danger_expose();
            keys.insert(1, Secret32::from_slice_wiping(&mut raw).unwrap());
            SystemKeyring::new(1, keys).unwrap().seal(b"r", b"", b"under v1").unwrap()
        };
        assert!(ring.retiring(2).is_none(), "the active version is never retired");
        assert!(ring.retiring(3).is_none(), "a version not held");
        let retired = ring.retiring(1).unwrap();
        assert_eq!(retired.versions().collect::<Vec<_>>(), [2]);
        assert_eq!(retired.retired_versions().collect::<Vec<_>>(), [1]);
        assert!(retired.danger_key(1).is_none());
        assert_eq!(retired.open(b"r", b"", &sealed), Err(DecryptError));
        assert!(retired.audit_key(1, AuditFormat::V2).unwrap().verify(b"entry", &old));
        let again = retired.retiring(2);
        assert!(again.is_none());
        // Rebuilt from the kept audit keys, a held copy of version 1 is dropped.
        let keys: BTreeMap<u32, RetiredAuditKeys> = retired
            .retired_audit_keys()
            .map(|(v, k)| {
                let copy = |k: &AuditKey| AuditKey::from_bytes_wiping(&mut { *k.danger_bytes() });
                (v, RetiredAuditKeys { v1: copy(&k.v1), v2: copy(&k.v2) })
            })
            .collect();
        let rebuilt = ring.retiring(1).unwrap().with_retired(keys).unwrap();
        assert!(rebuilt.audit_key(1, AuditFormat::V2).unwrap().verify(b"entry", &old));
        let mut keys = BTreeMap::new();
        let k = ring.audit_key(2, AuditFormat::V1).unwrap();
        let copy = |k: &AuditKey| AuditKey::from_bytes_wiping(&mut { *k.danger_bytes() });
        keys.insert(2, RetiredAuditKeys { v1: copy(k), v2: copy(k) });
        assert_eq!(ring.retiring(1).unwrap().with_retired(keys).unwrap_err(), MissingActiveVersion(2));
    }

    #[test]
    fn active_must_exist() {
        assert_eq!(SystemKeyring::new(3, BTreeMap::new()).unwrap_err(), MissingActiveVersion(3));
    }
}

//! Encryption of kms-api's stored records under the system key.
//!
//! Sealed record: `0x01 | system key version(u32 BE) | nonce(12) | ciphertext+tag`,
//! AAD = `"skm.record.v1" 0x00 | version | len | record id | len | owner`, which
//! binds each record to its id, its owner and the system key version, so
//! records can't be swapped between ids or owners in the store.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use crate::{DecryptError, EncryptError, Secret32, aead};

const RECORD_FORMAT: u8 = 0x01;
const RECORD_LABEL: &[u8] = b"skm.record.v1\0";

/// The system key versions kms-api has unwrapped, and which one is active.
#[derive(Debug)]
pub struct SystemKeyring {
    active: u32,
    keys: BTreeMap<u32, Secret32>,
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
        Ok(Self { active, keys })
    }

    /// The version new records are sealed under.
    pub fn active_version(&self) -> u32 {
        self.active
    }

    /// The versions held, ascending.
    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    /// Key material of one version, for test-only accessors and key
    /// derivation inside this crate.
    pub fn danger_key(&self, version: u32) -> Option<&Secret32> {
        self.keys.get(&version)
    }

    /// Seals a record under the active version.
    pub fn seal(&self, record_id: &[u8], owner: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, EncryptError> {
        let key = self.keys.get(&self.active).ok_or(EncryptError)?;
        let mut out = Vec::with_capacity(5 + 28 + plaintext.len());
        out.push(RECORD_FORMAT);
        out.extend_from_slice(&self.active.to_be_bytes());
        aead::seal_into(key, &aad(self.active, record_id, owner), plaintext, &mut out)?;
        Ok(out)
    }

    /// Opens a record sealed under any version held.
    pub fn open(&self, record_id: &[u8], owner: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        let version = Self::version_of(sealed)?;
        let key = self.keys.get(&version).ok_or(DecryptError)?;
        aead::open(key, &aad(version, record_id, owner), &sealed[5..])
    }

    /// The system key version a sealed record names.
    pub fn version_of(sealed: &[u8]) -> Result<u32, DecryptError> {
        if sealed.len() < 5 || sealed[0] != RECORD_FORMAT {
            return Err(DecryptError);
        }
        let mut v = [0u8; 4];
        v.copy_from_slice(&sealed[1..5]);
        Ok(u32::from_be_bytes(v))
    }
}

fn aad(version: u32, record_id: &[u8], owner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_LABEL.len() + 12 + record_id.len() + owner.len());
    out.extend_from_slice(RECORD_LABEL);
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
    fn active_must_exist() {
        assert_eq!(SystemKeyring::new(3, BTreeMap::new()).unwrap_err(), MissingActiveVersion(3));
    }
}

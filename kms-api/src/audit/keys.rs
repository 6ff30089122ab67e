//! The keys that authenticate audit entries.
//!
//! Each system key version `V` yields one audit key,
//! `k_audit_V = HMAC-SHA256(system key V, "skm.audit-key.v1")`, so the
//! entries can't be recomputed by someone who holds only the log. skm-crypto
//! has no KDF; HMAC-SHA256 keyed with a uniformly random 256-bit key is a PRF,
//! which is all a single derivation with a fixed label needs.

use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use skm_crypto::Secret32;
use skm_crypto::record::SystemKeyring;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::bootstrap::Keyring;

type HmacSha256 = Hmac<Sha256>;

/// Label of the derivation of an audit key from a system key.
const AUDIT_KEY_LABEL: &[u8] = b"skm.audit-key.v1";

/// SHA-256's block size: HMAC's native key size.
const BLOCK: usize = 64;

/// The key that authenticates the audit entries written under one system
/// key version. Wiped on drop, redacted in `Debug`, neither `Clone` nor
/// serialisable.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct AuditKey([u8; 32]);

impl AuditKey {
    /// Derives the audit key of a system key:
    /// `HMAC-SHA256(system_key, "skm.audit-key.v1")`.
    pub fn derive(system_key: &Secret32) -> Self {
        let mut mac = hmac_sha256(system_key.danger_expose());
        mac.update(AUDIT_KEY_LABEL);
        Self(mac.finalize().into_bytes().into())
    }

    /// `HMAC-SHA256(self, message)`.
    pub(super) fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = hmac_sha256(&self.0);
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is `HMAC-SHA256(self, message)` (constant time).
    pub(super) fn verify(&self, message: &[u8], tag: &[u8; 32]) -> bool {
        let mut mac = hmac_sha256(&self.0);
        mac.update(message);
        mac.verify_slice(tag).is_ok()
    }
}

#[cfg(test)]
impl AuditKey {
    /// The raw key, for tests that scan the log for it.
    pub(super) fn danger_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

/// HMAC-SHA256 keyed with a 32-byte key.
///
/// RFC 2104 zero-pads a key shorter than the hash's block to the block size,
/// so passing the padded block to the infallible `new` is HMAC with the
/// 32-byte key itself (a test checks it against `new_from_slice`), without an
/// error path that can't happen.
fn hmac_sha256(key: &[u8; 32]) -> HmacSha256 {
    let mut block = Zeroizing::new([0u8; BLOCK]);
    block[..32].copy_from_slice(key);
    HmacSha256::new(&(*block).into())
}

/// Where the audit log gets its keys: the active system key version (for
/// new entries) and any version's key (to verify old ones).
///
/// In kms-api this is the [`Keyring`]; tests use a fixed [`SystemKeyring`].
pub trait AuditKeys: Send + Sync {
    /// The active system key version and its audit key; `None` while no
    /// system key is loaded.
    fn active(&self) -> Option<(u32, AuditKey)>;

    /// The audit key of system key `version`, if that version is held.
    fn key(&self, version: u32) -> Option<AuditKey>;
}

impl AuditKeys for SystemKeyring {
    fn active(&self) -> Option<(u32, AuditKey)> {
        let version = self.active_version();
        AuditKeys::key(self, version).map(|key| (version, key))
    }

    fn key(&self, version: u32) -> Option<AuditKey> {
        self.danger_key(version).map(AuditKey::derive)
    }
}

/// kms-api's keyring: whatever system keys are loaded at the time of the
/// call (none before the bootstrap has finished).
impl AuditKeys for Keyring {
    fn active(&self) -> Option<(u32, AuditKey)> {
        self.current().ok()?.active()
    }

    fn key(&self, version: u32) -> Option<AuditKey> {
        AuditKeys::key(&*self.current().ok()?, version)
    }
}

impl<T: AuditKeys + ?Sized> AuditKeys for Arc<T> {
    fn active(&self) -> Option<(u32, AuditKey)> {
        (**self).active()
    }

    fn key(&self, version: u32) -> Option<AuditKey> {
        (**self).key(version)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn secret(byte: u8) -> Secret32 {
        Secret32::from_slice_wiping(&mut [byte; 32]).unwrap()
    }

    #[test]
    fn padded_key_is_hmac_with_the_short_key() {
        let key = [0x5au8; 32];
        let mut reference = HmacSha256::new_from_slice(&key).unwrap();
        reference.update(b"message");
        let mut padded = hmac_sha256(&key);
        padded.update(b"message");
        assert_eq!(reference.finalize().into_bytes(), padded.finalize().into_bytes());
    }

    #[test]
    fn rfc4231_test_case_2() {
        // Key "Jefe" zero-padded to 32 bytes is, by RFC 2104, the key "Jefe".
        let mut raw = [0u8; 32];
        raw[..4].copy_from_slice(b"Jefe");
        let key = AuditKey(raw);
        let tag = key.mac(b"what do ya want for nothing?");
        assert_eq!(hex::encode(tag), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert!(key.verify(b"what do ya want for nothing?", &tag));
        assert!(!key.verify(b"what do ya want for nothing!", &tag));
    }

    #[test]
    fn derivation_depends_on_the_system_key_and_is_redacted() {
        let a = AuditKey::derive(&secret(1));
        let b = AuditKey::derive(&secret(2));
        assert_eq!(a.0, AuditKey::derive(&secret(1)).0);
        assert_ne!(a.0, b.0);
        assert_ne!(&a.0, secret(1).danger_expose());
        assert_eq!(format!("{a:?}"), "AuditKey(<redacted>)");
    }

    #[test]
    fn system_keyring_and_not_ready_keyring() {
        let ring = SystemKeyring::new(2, BTreeMap::from([(1, secret(1)), (2, secret(2))])).unwrap();
        let (version, key) = ring.active().unwrap();
        assert_eq!(version, 2);
        assert_eq!(key.0, AuditKey::derive(&secret(2)).0);
        assert_eq!(AuditKeys::key(&ring, 1).unwrap().0, AuditKey::derive(&secret(1)).0);
        assert!(AuditKeys::key(&ring, 3).is_none());

        let not_ready = Keyring::default();
        assert!(not_ready.active().is_none());
        assert!(AuditKeys::key(&not_ready, 1).is_none());
    }
}

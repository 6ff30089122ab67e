//! The keys and MACs that authenticate kms-api's audit log.
//!
//! Each system key version `V` yields one audit key, so that entries can't
//! be recomputed by someone who holds only the log, and each audit log
//! format has its own derivation:
//!
//! | format | audit key |
//! |---|---|
//! | 1 (read only, logs written before format 2) | `HMAC-SHA256(system key V, "skm.audit-key.v1")` |
//! | 2 | `HKDF-SHA256(salt = none, ikm = system key V, info = "skm.audit.v2", L = 32)` |
//!
//! Format 2 derives the audit key with HKDF under a label distinct from the
//! record-sealing subkey ([`crate::record`], `"skm.record.v2"`), so the
//! system key is never used directly for two purposes. The MAC of an entry
//! is `HMAC-SHA256(audit key, canonical bytes)`; kms-api defines the
//! canonical bytes. `tests/oracles/audit_mac.py` recomputes both from
//! these definitions with Python's standard library.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::Secret32;

type HmacSha256 = Hmac<Sha256>;

/// Label of the format-1 derivation.
const LABEL_V1: &[u8] = b"skm.audit-key.v1";
/// HKDF `info` of the format-2 derivation.
pub const AUDIT_KEY_INFO: &[u8] = b"skm.audit.v2";

/// SHA-256's block size: HMAC's native key size.
const BLOCK: usize = 64;

/// Which derivation an audit key follows (the log entry's format).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditFormat {
    /// Logs written before format 2; verified, never written.
    V1,
    /// The format written now.
    V2,
}

/// The key that authenticates the audit entries written under one system
/// key version. Wiped on drop, redacted in `Debug`, neither `Clone` nor
/// serialisable.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct AuditKey([u8; 32]);

impl AuditKey {
    /// Derives the audit key of `system_key` for `format`.
    pub fn derive(system_key: &Secret32, format: AuditFormat) -> Self {
        match format {
            AuditFormat::V1 => {
                let mut mac = hmac_sha256(system_key.danger_expose());
                mac.update(LABEL_V1);
                Self(mac.finalize().into_bytes().into())
            }
            AuditFormat::V2 => Self(*hkdf_sha256(system_key, AUDIT_KEY_INFO).danger_expose()),
        }
    }

    /// `HMAC-SHA256(self, message)`.
    pub fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = hmac_sha256(&self.0);
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is `HMAC-SHA256(self, message)` (constant time).
    pub fn verify(&self, message: &[u8], tag: &[u8; 32]) -> bool {
        let mut mac = hmac_sha256(&self.0);
        mac.update(message);
        mac.verify_slice(tag).is_ok()
    }

    /// The raw key, for tests that scan files for it and for keeping the
    /// audit keys of a retired system key version in a sealed record.
    pub fn danger_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// An audit key kept from a retired system key version; `bytes` is
    /// wiped.
    pub fn from_bytes_wiping(bytes: &mut [u8; 32]) -> Self {
        let key = Self(*bytes);
        bytes.zeroize();
        key
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

/// `HKDF-SHA256(salt = none, ikm = key, info, L = 32)` (RFC 5869).
pub(crate) fn hkdf_sha256(key: &Secret32, info: &[u8]) -> Secret32 {
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's limit of 255 * 32: expand can't fail.
    if hkdf::Hkdf::<Sha256>::new(None, key.danger_expose()).expand(info, &mut *okm).is_err() {
        unreachable!("HKDF-SHA256 expands 32 bytes");
    }
    Secret32::from_array_wiping(&mut okm)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> Secret32 {
        Secret32::from_array_wiping(&mut [byte; 32])
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
        assert_eq!(hex(&tag), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert!(key.verify(b"what do ya want for nothing?", &tag));
        assert!(!key.verify(b"what do ya want for nothing!", &tag));
    }

    /// HKDF-SHA256 with no salt (RFC 5869: a salt of HashLen zeros).
    #[test]
    fn hkdf_without_salt_follows_rfc5869() {
        let mut raw = [0x0bu8; 32];
        raw[22..].fill(0);
        let ikm = Secret32::from_array_wiping(&mut raw);
        // Checked against the definition: PRK = HMAC(zeros(32), ikm),
        // OKM = T(1) = HMAC(PRK, info | 0x01).
        let mut extract = HmacSha256::new_from_slice(&[0u8; 32]).unwrap();
        extract.update(ikm.danger_expose());
        let prk = extract.finalize().into_bytes();
        let mut expand = HmacSha256::new_from_slice(&prk).unwrap();
        expand.update(b"info");
        expand.update(&[1]);
        let expected: [u8; 32] = expand.finalize().into_bytes().into();
        assert_eq!(hkdf_sha256(&ikm, b"info").danger_expose(), &expected);
    }

    #[test]
    fn derivations_differ_by_format_key_and_label() {
        let a1 = AuditKey::derive(&secret(1), AuditFormat::V1);
        let a2 = AuditKey::derive(&secret(1), AuditFormat::V2);
        let b2 = AuditKey::derive(&secret(2), AuditFormat::V2);
        assert_eq!(a2.0, AuditKey::derive(&secret(1), AuditFormat::V2).0);
        assert_ne!(a1.0, a2.0);
        assert_ne!(a2.0, b2.0);
        assert_ne!(&a2.0, secret(1).danger_expose());
        assert_ne!(&a2.0, hkdf_sha256(&secret(1), b"skm.record.v2").danger_expose());
        assert_eq!(format!("{a2:?}"), "AuditKey(<redacted>)");
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

//! kms-api's domain types: keystores, keys and secrets, with the limits of
//! DESIGN §10.

use std::sync::atomic::{AtomicI64, Ordering};

use skm_crypto::asym::{KeyAlgorithm, PrivateKey, PublicKey};
use skm_crypto::{Id, Secret32};
use zeroize::Zeroizing;

use crate::access::{KnownCert, Policy};

/// Largest plaintext Encrypt takes.
pub const MAX_PLAINTEXT: usize = 32 * 1024;
/// Largest caller AAD.
pub const MAX_AAD: usize = 8 * 1024;
/// Largest ciphertext Decrypt takes.
pub const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + skm_crypto::user::OVERHEAD;
/// Largest secret value.
pub const MAX_SECRET: usize = 32 * 1024;
/// Largest message Sign and Verify take.
pub const MAX_SIGN_MESSAGE: usize = 4 * 1024;
/// Largest signature Verify takes (RSA-4096 is 512 bytes).
pub const MAX_SIGNATURE: usize = 1024;
/// Most items in one batch call.
pub const MAX_BATCH: usize = 100;
/// Longest keystore or key name.
pub const MAX_NAME: usize = 64;
/// Longest automatic rotation period, in days (100 years).
pub const MAX_ROTATION_DAYS: u32 = 36_500;
/// Shortest and longest deletion waiting period, in days.
pub const DELETION_DAYS: std::ops::RangeInclusive<u32> = 7..=30;
/// Deletion waiting period when none is given.
pub const DEFAULT_DELETION_DAYS: u32 = 7;
/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// Checks a keystore or key name: 1..=64 of `[A-Za-z0-9._-]`.
pub fn check_name(field: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("{field} must be 1..={MAX_NAME} characters; got {}", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("{field} may contain only A-Z a-z 0-9 . _ -; found {c:?}"));
    }
    Ok(())
}

/// A keystore: a set of keys under one access policy, with its own client
/// CA for certificate authentication.
#[derive(Clone, Debug)]
pub struct Keystore {
    /// Id.
    pub id: Id,
    /// Unique name.
    pub name: String,
    /// Who may use the keys.
    pub policy: Policy,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// The keystore's client CA.
    pub ca: KeystoreCaFiles,
    /// Client certificates issued or registered.
    pub certs: Vec<KnownCert>,
}

/// A keystore's client CA as stored: certificate and (secret) key.
#[derive(Clone)]
pub struct KeystoreCaFiles {
    /// CA certificate, PEM.
    pub cert_pem: String,
    /// CA certificate, DER.
    pub cert_der: rustls_pki_types::CertificateDer<'static>,
    /// CA private key, PEM (only ever stored sealed).
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for KeystoreCaFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeystoreCaFiles").field("key_pem", &"<redacted>").finish_non_exhaustive()
    }
}

/// Lifetime of a keystore's client CA, in days.
pub const KEYSTORE_CA_DAYS: u32 = 3650;
/// Longest client certificate lifetime, in days.
pub const MAX_CERT_DAYS: u32 = 3650;

/// What a key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// AES-256-GCM-SIV.
    Aes256,
    /// A signing key.
    Asymmetric(KeyAlgorithm),
    /// A secret value.
    Secret,
}

impl KeyKind {
    /// Stable name used in records and output.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Aes256 => "aes-256",
            KeyKind::Asymmetric(alg) => alg.name(),
            KeyKind::Secret => "secret",
        }
    }

    /// Inverse of [`KeyKind::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "aes-256" => Some(KeyKind::Aes256),
            "secret" => Some(KeyKind::Secret),
            other => KeyAlgorithm::from_name(other).map(KeyKind::Asymmetric),
        }
    }
}

/// A key's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Usable.
    Enabled,
    /// Every use refused.
    Disabled,
    /// Every use refused; destroyed at `deletion_at` unless cancelled.
    PendingDeletion {
        /// Seconds since the epoch.
        deletion_at: i64,
    },
}

/// The secret material of one key version.
pub enum Material {
    /// A 256-bit AES key.
    Aes256(Secret32),
    /// A private key and its public key (boxed: far larger than the others).
    Asymmetric {
        /// Private half (zeroized on drop).
        private: Box<PrivateKey>,
        /// Public half.
        public: Box<PublicKey>,
    },
    /// A secret's value.
    Secret(Zeroizing<Vec<u8>>),
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Material::Aes256(_) => "Material::Aes256(<redacted>)",
            Material::Asymmetric { .. } => "Material::Asymmetric(<redacted>)",
            Material::Secret(_) => "Material::Secret(<redacted>)",
        })
    }
}

/// Fresh key material failed (RNG or key generation).
#[derive(Debug, thiserror::Error)]
#[error("key generation failed")]
pub struct GenerateError;

impl Material {
    /// Fresh material for `kind` (not for secrets, whose value is given).
    /// RSA generation takes up to seconds: call it off the async threads.
    pub fn generate(kind: KeyKind) -> Result<Self, GenerateError> {
        match kind {
            KeyKind::Aes256 => Ok(Material::Aes256(Secret32::generate().map_err(|_| GenerateError)?)),
            KeyKind::Asymmetric(alg) => {
                let private = PrivateKey::generate(alg).map_err(|_| GenerateError)?;
                let public = Box::new(private.public_key());
                Ok(Material::Asymmetric { private: Box::new(private), public })
            }
            KeyKind::Secret => Err(GenerateError),
        }
    }
}

/// One version of a key.
#[derive(Debug)]
pub struct KeyVersion {
    /// 1, 2, ...
    pub version: u32,
    /// The material.
    pub material: Material,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
}

/// A key (or secret) with all its retained versions.
#[derive(Debug)]
pub struct Key {
    /// Id.
    pub id: Id,
    /// Owning keystore.
    pub keystore_id: Id,
    /// Name, unique in the keystore.
    pub name: String,
    /// What it is.
    pub kind: KeyKind,
    /// Lifecycle state.
    pub state: KeyState,
    /// Versions, ascending; never empty.
    pub versions: Vec<KeyVersion>,
    /// Automatic rotation period in days; 0 = off.
    pub rotation_period_days: u32,
    /// Next automatic rotation (seconds since the epoch); 0 = none.
    pub next_rotation_at: i64,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// Last use by an application (in memory; persisted by maintenance).
    pub last_used_at: AtomicI64,
}

impl Key {
    /// The version that encrypts, signs or is returned by default.
    pub fn newest(&self) -> Option<&KeyVersion> {
        self.versions.last()
    }

    /// A retained version.
    pub fn version(&self, version: u32) -> Option<&KeyVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// Records a use at `now`.
    pub fn touch(&self, now: i64) {
        self.last_used_at.fetch_max(now, Ordering::Relaxed);
    }

    /// Last use, 0 = never.
    pub fn last_used(&self) -> i64 {
        self.last_used_at.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("name", "prod-db.v2_x").is_ok());
        assert!(check_name("name", "").unwrap_err().contains("1..=64"));
        assert!(check_name("name", &"a".repeat(65)).unwrap_err().contains("got 65"));
        assert!(check_name("name", "a b").unwrap_err().contains("' '"));
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in [
            KeyKind::Aes256,
            KeyKind::Secret,
            KeyKind::Asymmetric(KeyAlgorithm::Ed25519),
            KeyKind::Asymmetric(KeyAlgorithm::EcdsaP256),
            KeyKind::Asymmetric(KeyAlgorithm::Rsa2048),
            KeyKind::Asymmetric(KeyAlgorithm::Rsa3072),
            KeyKind::Asymmetric(KeyAlgorithm::Rsa4096),
        ] {
            assert_eq!(KeyKind::from_name(kind.name()), Some(kind));
        }
    }
}

//! kms-api's domain types: keystores and keys, with the limits of DESIGN §10.

use skm_crypto::{Id, Secret32};

use crate::access::Policy;

/// Largest plaintext Encrypt takes.
pub const MAX_PLAINTEXT: usize = 32 * 1024;
/// Largest caller AAD.
pub const MAX_AAD: usize = 8 * 1024;
/// Largest ciphertext Decrypt takes.
pub const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + skm_crypto::user::OVERHEAD;
/// Longest keystore or key name.
pub const MAX_NAME: usize = 64;

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

/// A keystore: a set of keys under one access policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keystore {
    /// Id.
    pub id: Id,
    /// Unique name.
    pub name: String,
    /// Who may use the keys.
    pub policy: Policy,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
}

/// Key algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// AES-256-GCM-SIV.
    Aes256,
}

impl KeyKind {
    /// Stable name used in records and output.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Aes256 => "aes-256",
        }
    }

    /// Inverse of [`KeyKind::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "aes-256" => Some(KeyKind::Aes256),
            _ => None,
        }
    }
}

/// The secret material of one key version.
#[derive(Debug)]
pub enum Material {
    /// A 256-bit AES key.
    Aes256(Secret32),
}

impl Material {
    /// Fresh material for `kind`.
    pub fn generate(kind: KeyKind) -> Result<Self, skm_crypto::RngError> {
        match kind {
            KeyKind::Aes256 => Ok(Material::Aes256(Secret32::generate()?)),
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

/// A key with all its retained versions.
#[derive(Debug)]
pub struct Key {
    /// Id.
    pub id: Id,
    /// Owning keystore.
    pub keystore_id: Id,
    /// Name, unique in the keystore.
    pub name: String,
    /// Algorithm.
    pub kind: KeyKind,
    /// Versions, ascending.
    pub versions: Vec<KeyVersion>,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
}

impl Key {
    /// The version that encrypts.
    pub fn newest(&self) -> Option<&KeyVersion> {
        self.versions.last()
    }

    /// A retained version.
    pub fn version(&self, version: u32) -> Option<&KeyVersion> {
        self.versions.iter().find(|v| v.version == version)
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
}

//! The root key and the wrapping of system keys under it.
//!
//! Wrapped system key: `nonce(12) | AES-256-GCM-SIV(system key) + tag`, with
//! AAD = `"skm.system-key.v1" 0x00 | version(u32 BE) | root key id`, so a
//! wrapped key can't be presented as another version or under another root.

use crate::{DecryptError, EncryptError, Secret32, aead};

const WRAP_LABEL: &[u8] = b"skm.system-key.v1\0";

/// The root key with its public identifier. Lives only in root-keyd.
#[derive(Debug)]
pub struct RootKey {
    key: Secret32,
    id: String,
}

impl RootKey {
    /// A fresh root key with a random identifier.
    pub fn generate() -> Result<Self, EncryptError> {
        let id_bytes: [u8; 8] = crate::random_array()?;
        let id = id_bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { key: Secret32::generate()?, id })
    }

    /// Rebuilds a root key just unsealed.
    pub fn from_parts(key: Secret32, id: String) -> Self {
        Self { key, id }
    }

    /// Public identifier (not derived from the key).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key material, for sealing at rest and test-only accessors.
    pub fn danger_material(&self) -> &Secret32 {
        &self.key
    }

    /// Wraps system key `version`.
    pub fn wrap_system_key(&self, version: u32, system_key: &Secret32) -> Result<Vec<u8>, EncryptError> {
        let mut out = Vec::with_capacity(60);
        aead::seal_into(&self.key, &self.aad(version), system_key.danger_expose(), &mut out)?;
        Ok(out)
    }

    /// Unwraps system key `version`.
    pub fn unwrap_system_key(&self, version: u32, wrapped: &[u8]) -> Result<Secret32, DecryptError> {
        let mut plain = aead::open(&self.key, &self.aad(version), wrapped)?;
        Secret32::from_slice_wiping(&mut plain).ok_or(DecryptError)
    }

    fn aad(&self, version: u32) -> Vec<u8> {
        system_key_aad(version, &self.id)
    }
}

/// The AAD that binds a wrapped system key to its version and root key,
/// for every seal mode (a PKCS#11 token's AES-GCM uses the same).
pub fn system_key_aad(version: u32, root_key_id: &str) -> Vec<u8> {
    [WRAP_LABEL, &version.to_be_bytes(), root_key_id.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_binds_version_and_root() {
        let root = RootKey::generate().unwrap();
        let sys = Secret32::generate().unwrap();
        let wrapped = root.wrap_system_key(1, &sys).unwrap();
        assert!(!wrapped.windows(32).any(|w| w == sys.danger_expose()));
        assert_eq!(root.unwrap_system_key(1, &wrapped).unwrap(), sys);
        assert_eq!(root.unwrap_system_key(2, &wrapped), Err(DecryptError));
        let other = RootKey::generate().unwrap();
        assert_eq!(other.unwrap_system_key(1, &wrapped), Err(DecryptError));
    }
}

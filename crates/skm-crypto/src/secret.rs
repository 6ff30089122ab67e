//! 256-bit secret key material.

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// 32 bytes of key material: wiped on drop, redacted in `Debug`, compared in
/// constant time, neither `Clone` nor serialisable. Raw bytes are reachable
/// only through [`Secret32::danger_expose`].
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Secret32([u8; 32]);

impl Secret32 {
    /// Generates a fresh random key.
    pub fn generate() -> Result<Self, crate::RngError> {
        let mut key = Self([0u8; 32]);
        crate::fill_random(&mut key.0)?;
        Ok(key)
    }

    /// Takes ownership of raw bytes (for example just decrypted), wiping the
    /// source slice.
    pub fn from_slice_wiping(bytes: &mut [u8]) -> Option<Self> {
        if bytes.len() != 32 {
            bytes.zeroize();
            return None;
        }
        let mut key = Self([0u8; 32]);
        key.0.copy_from_slice(bytes);
        bytes.zeroize();
        Some(key)
    }

    /// Takes ownership of exactly 32 raw bytes, wiping the source.
    pub fn from_array_wiping(bytes: &mut [u8; 32]) -> Self {
        let key = Self(*bytes);
        bytes.zeroize();
        key
    }

    /// The raw key bytes.
    ///
    /// Danger: the only way to read key material. Callers are the AEAD and
    /// KEM calls of this crate, the at-rest encodings (which encrypt it
    /// before it touches disk) and test-only accessors.
    pub fn danger_expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as standard base64 text (44 characters), wiped on drop: a
    /// data key handed to a client in a text format.
    pub fn to_base64(&self) -> zeroize::Zeroizing<String> {
        use base64::Engine;
        zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.0))
    }
}

impl std::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret32(<redacted>)")
    }
}

impl PartialEq for Secret32 {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Secret32 {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let key = Secret32::generate().unwrap();
        let shown = format!("{key:?}");
        assert_eq!(shown, "Secret32(<redacted>)");
    }

    #[test]
    fn from_slice_wipes_source_and_checks_length() {
        let mut raw = [7u8; 32];
        let key = Secret32::from_slice_wiping(&mut raw).unwrap();
        assert_eq!(raw, [0u8; 32]);
        assert_eq!(key.danger_expose(), &[7u8; 32]);
        let mut short = [1u8; 31];
        assert!(Secret32::from_slice_wiping(&mut short).is_none());
        assert_eq!(short, [0u8; 31]);
    }
}

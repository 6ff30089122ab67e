//! Moving a plaintext system key from root-keyd to kms-api: HPKE (RFC 9180)
//! base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20-Poly1305,
//! sealed to the recipient's per-boot X25519 key.
//!
//! The TLS channel between the tiers already encrypts the reply; HPKE adds
//! that the system key is readable only by the process holding the per-boot
//! private key (which never leaves kms-api's memory), not by anything that
//! terminates or records the TLS session.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as KemTrait, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

use crate::{DecryptError, EncryptError, Secret32};

type Kem = X25519HkdfSha256;
const INFO: &[u8] = b"skm.system-key-transport.v1";

/// A per-boot X25519 key pair of kms-api. The private half is wiped on drop.
pub struct RecipientKeypair {
    private: <Kem as KemTrait>::PrivateKey,
    public: <Kem as KemTrait>::PublicKey,
}

impl std::fmt::Debug for RecipientKeypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecipientKeypair").finish_non_exhaustive()
    }
}

impl RecipientKeypair {
    /// A fresh key pair from the OS CSPRNG.
    pub fn generate() -> Result<Self, crate::RngError> {
        let ikm = Zeroizing::new(crate::random_array::<32>()?);
        let (private, public) = Kem::derive_keypair(&ikm[..]);
        Ok(Self { private, public })
    }

    /// The public key to send to root-keyd (32 bytes).
    pub fn public_key(&self) -> Vec<u8> {
        self.public.to_bytes().to_vec()
    }

    /// Opens a system key sealed to this key pair.
    pub fn open_system_key(
        &self,
        version: u32,
        encapsulated_key: &[u8],
        sealed_key: &[u8],
    ) -> Result<Secret32, DecryptError> {
        let enc = <Kem as KemTrait>::EncappedKey::from_bytes(encapsulated_key).map_err(|_| DecryptError)?;
        let plain = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeR::Base,
            &self.private,
            &enc,
            INFO,
            sealed_key,
            &version.to_be_bytes(),
        )
        .map_err(|_| DecryptError)?;
        let mut plain = Zeroizing::new(plain);
        Secret32::from_slice_wiping(&mut plain).ok_or(DecryptError)
    }
}

/// A malformed recipient public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealToError {
    /// Not a 32-byte X25519 public key.
    #[error("recipient_public_key is not a 32-byte X25519 public key")]
    BadRecipient,
    /// The seal itself failed.
    #[error(transparent)]
    Encrypt(#[from] EncryptError),
}

/// Seals system key `version` to a recipient public key. Returns
/// `(encapsulated key, ciphertext)`.
pub fn seal_system_key(
    recipient_public_key: &[u8],
    version: u32,
    system_key: &Secret32,
) -> Result<(Vec<u8>, Vec<u8>), SealToError> {
    if recipient_public_key.len() != 32 {
        return Err(SealToError::BadRecipient);
    }
    let public =
        <Kem as KemTrait>::PublicKey::from_bytes(recipient_public_key).map_err(|_| SealToError::BadRecipient)?;
    let (enc, sealed) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeS::Base,
        &public,
        INFO,
        system_key.danger_expose(),
        &version.to_be_bytes(),
    )
    .map_err(|_| SealToError::Encrypt(EncryptError))?;
    Ok((enc.to_bytes().to_vec(), sealed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_binds_version() {
        let recipient = RecipientKeypair::generate().unwrap();
        let key = Secret32::generate().unwrap();
        let (enc, sealed) = seal_system_key(&recipient.public_key(), 4, &key).unwrap();
        assert_eq!(recipient.open_system_key(4, &enc, &sealed).unwrap(), key);
        assert_eq!(recipient.open_system_key(5, &enc, &sealed), Err(DecryptError));
        let other = RecipientKeypair::generate().unwrap();
        assert_eq!(other.open_system_key(4, &enc, &sealed), Err(DecryptError));
    }

    #[test]
    fn rejects_bad_recipient() {
        let key = Secret32::generate().unwrap();
        assert_eq!(seal_system_key(&[1; 31], 1, &key).unwrap_err(), SealToError::BadRecipient);
    }
}

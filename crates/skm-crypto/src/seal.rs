//! Sealing the root key at rest.
//!
//! The root key is stored only encrypted under a *key-encryption key* (KEK):
//!
//! - **Shamir**: the KEK is a random 256-bit unseal key split into `n` shares
//!   of which any `k` recover it (GF(256) Shamir, `blahaj`). The shares go to
//!   operators once; root-keyd keeps only a SHA-256 digest of each, so a
//!   share that doesn't belong to this root key is rejected as it arrives.
//! - **Passphrase**: the KEK is Argon2id(passphrase, salt); for development
//!   and compose, where root-keyd unseals itself from a passphrase file.
//!
//! Sealed root key: `nonce(12) | AES-256-GCM-SIV(root key) + tag` with
//! AAD = `"skm.root-key.v1" 0x00 | root key id`.

use blahaj::{Share, Sharks};
use zeroize::Zeroizing;

use crate::wrap::RootKey;
use crate::{DecryptError, EncryptError, Secret32, aead};

const SEAL_LABEL: &[u8] = b"skm.root-key.v1\0";
const SHARE_DIGEST_LABEL: &[u8] = b"skm.unseal-share.v1\0";

/// Encrypts the root key under a KEK for storage.
pub fn seal_root_key(kek: &Secret32, root: &RootKey) -> Result<Vec<u8>, EncryptError> {
    let mut out = Vec::with_capacity(60);
    let aad = [SEAL_LABEL, root.id().as_bytes()].concat();
    aead::seal_into(kek, &aad, root.danger_material().danger_expose(), &mut out)?;
    Ok(out)
}

/// Decrypts a stored root key. A wrong KEK is the opaque [`DecryptError`].
pub fn unseal_root_key(kek: &Secret32, root_key_id: &str, sealed: &[u8]) -> Result<RootKey, DecryptError> {
    let aad = [SEAL_LABEL, root_key_id.as_bytes()].concat();
    let mut plain = aead::open(kek, &aad, sealed)?;
    let key = Secret32::from_slice_wiping(&mut plain).ok_or(DecryptError)?;
    Ok(RootKey::from_parts(key, root_key_id.to_owned()))
}

/// Invalid Shamir parameters or shares.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShamirError {
    /// `threshold` or `shares` out of range.
    #[error("threshold must be 1..=shares and shares 1..=255 (got threshold {threshold}, shares {shares})")]
    BadParameters {
        /// Requested threshold.
        threshold: u32,
        /// Requested share count.
        shares: u32,
    },
    /// Fewer distinct shares than the threshold.
    #[error("{have} distinct shares given; {need} are needed")]
    NotEnoughShares {
        /// Distinct shares given.
        have: usize,
        /// Threshold.
        need: usize,
    },
}

/// Splits `unseal_key` into `shares` shares, any `threshold` of which recover it.
/// Each share is 33 bytes: x-coordinate then 32 bytes of y.
pub fn split(unseal_key: &Secret32, shares: u32, threshold: u32) -> Result<Vec<Zeroizing<Vec<u8>>>, ShamirError> {
    if !(1..=255).contains(&shares) || threshold < 1 || threshold > shares {
        return Err(ShamirError::BadParameters { threshold, shares });
    }
    let dealer = Sharks(threshold as u8).dealer(unseal_key.danger_expose());
    Ok(dealer.take(shares as usize).map(|share| Zeroizing::new(Vec::from(&share))).collect())
}

/// Recovers the unseal key from at least `threshold` distinct shares.
pub fn combine(shares: &[Zeroizing<Vec<u8>>], threshold: u32) -> Result<Secret32, ShamirError> {
    let parsed: Vec<Share> = shares.iter().filter_map(|s| Share::try_from(s.as_slice()).ok()).collect();
    let mut xs: Vec<u8> = parsed.iter().map(|s| s.x.0).collect();
    xs.sort_unstable();
    xs.dedup();
    let need = threshold as usize;
    if xs.len() < need {
        return Err(ShamirError::NotEnoughShares { have: xs.len(), need });
    }
    let mut secret = Zeroizing::new(
        Sharks(threshold as u8)
            .recover(parsed.iter())
            .map_err(|_| ShamirError::NotEnoughShares { have: xs.len(), need })?,
    );
    Secret32::from_slice_wiping(&mut secret).ok_or(ShamirError::NotEnoughShares { have: xs.len(), need })
}

/// Digest under which root-keyd remembers a share: SHA-256 over a label and
/// the share. A share carries 256 bits of randomness, so the digest reveals
/// nothing usable.
pub fn share_digest(share: &[u8]) -> [u8; 32] {
    crate::sha256(&[SHARE_DIGEST_LABEL, share].concat())
}

/// Argon2id cost parameters and salt, stored beside the sealed root key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassphraseParams {
    /// 16 random bytes.
    pub salt: [u8; 16],
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Parallelism.
    pub p_cost: u32,
}

/// The passphrase KDF failed (parameters out of range).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Argon2id parameters are invalid: {0}")]
pub struct KdfError(String);

impl PassphraseParams {
    /// OWASP's first Argon2id recommendation (m = 19 MiB, t = 2, p = 1)
    /// raised to 64 MiB and t = 3, with a fresh salt.
    pub fn recommended() -> Result<Self, crate::RngError> {
        Ok(Self { salt: crate::random_array()?, m_cost: 64 * 1024, t_cost: 3, p_cost: 1 })
    }

    /// Derives the KEK from a passphrase.
    pub fn derive_kek(&self, passphrase: &[u8]) -> Result<Secret32, KdfError> {
        let params = argon2::Params::new(self.m_cost, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| KdfError(e.to_string()))?;
        let kdf = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        kdf.hash_password_into(passphrase, &self.salt, &mut out[..]).map_err(|e| KdfError(e.to_string()))?;
        Secret32::from_slice_wiping(&mut out[..]).ok_or_else(|| KdfError("output length".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shamir_three_of_five() {
        let unseal = Secret32::generate().unwrap();
        let shares = split(&unseal, 5, 3).unwrap();
        assert_eq!(shares.len(), 5);
        assert!(shares.iter().all(|s| s.len() == 33));
        let pick = vec![shares[4].clone(), shares[0].clone(), shares[2].clone()];
        assert_eq!(combine(&pick, 3).unwrap(), unseal);
        let two = vec![shares[1].clone(), shares[3].clone()];
        assert_eq!(combine(&two, 3).unwrap_err(), ShamirError::NotEnoughShares { have: 2, need: 3 });
        // the same share twice counts once
        let dup = vec![shares[1].clone(), shares[1].clone(), shares[3].clone()];
        assert!(combine(&dup, 3).is_err());
    }

    #[test]
    fn shamir_rejects_bad_parameters() {
        let unseal = Secret32::generate().unwrap();
        assert!(split(&unseal, 3, 4).is_err());
        assert!(split(&unseal, 0, 0).is_err());
        assert!(split(&unseal, 256, 2).is_err());
    }

    #[test]
    fn seal_round_trip_and_wrong_kek() {
        let root = RootKey::generate().unwrap();
        let kek = Secret32::generate().unwrap();
        let sealed = seal_root_key(&kek, &root).unwrap();
        let back = unseal_root_key(&kek, root.id(), &sealed).unwrap();
        assert_eq!(back.danger_material(), root.danger_material());
        let wrong = Secret32::generate().unwrap();
        assert_eq!(unseal_root_key(&wrong, root.id(), &sealed).unwrap_err(), DecryptError);
        assert_eq!(unseal_root_key(&kek, "other", &sealed).unwrap_err(), DecryptError);
    }

    #[test]
    fn passphrase_kdf_is_deterministic_per_salt() {
        let mut params = PassphraseParams::recommended().unwrap();
        params.m_cost = 1024; // keep the unit test quick
        params.t_cost = 1;
        let a = params.derive_kek(b"correct horse").unwrap();
        let b = params.derive_kek(b"correct horse").unwrap();
        let c = params.derive_kek(b"wrong horse").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}

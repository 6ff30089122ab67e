//! GenerateMac and VerifyMac with HMAC keys.

use skm_crypto::mac::MacAlgorithm;
use skm_store::Store;

use super::operation::{Effect, Operation, Subject, Trail};
use super::signing::Verified;
use super::views::{self, HmacKey};
use super::{Kms, KmsError, check_len};
use crate::model;

/// The MAC of a message with the key's newest version.
#[derive(Debug)]
pub struct GenerateMac {
    /// The HMAC key.
    pub key_id: String,
    /// The message, at most [`model::MAX_MAC_MESSAGE`] bytes.
    pub message: Vec<u8>,
}

/// A MAC.
#[derive(Debug)]
pub struct Mac {
    /// The full-length tag.
    pub mac: Vec<u8>,
    /// The key version that made it.
    pub key_version: u32,
    /// The key's algorithm.
    pub algorithm: MacAlgorithm,
}

/// Check a MAC with one version, or with the newest
/// [`model::VERIFY_ANY_VERSIONS`] versions when `key_version` is 0 (as
/// Verify does).
#[derive(Debug)]
pub struct VerifyMac {
    /// The HMAC key.
    pub key_id: String,
    /// The message.
    pub message: Vec<u8>,
    /// The tag to check.
    pub mac: Vec<u8>,
    /// One version, or 0 for any of the newest.
    pub key_version: u32,
}

impl Operation for GenerateMac {
    const NAME: &'static str = "GenerateMac";
    const EFFECT: Effect = Effect::Use;
    type Output = Mac;

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    fn check(&self) -> Result<(), KmsError> {
        check_len("message", self.message.len(), model::MAX_MAC_MESSAGE)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Mac, KmsError> {
        let key: HmacKey = kms.usable(trail, &self.key_id).await?;
        let newest = key.versions.newest();
        let mac = newest.material.sign(&self.message);
        trail.used_version(newest.version);
        Ok(Mac { mac, key_version: newest.version, algorithm: key.algorithm })
    }
}

impl Operation for VerifyMac {
    const NAME: &'static str = "VerifyMac";
    const EFFECT: Effect = Effect::Use;
    type Output = Verified;

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    fn check(&self) -> Result<(), KmsError> {
        check_len("message", self.message.len(), model::MAX_MAC_MESSAGE)?;
        check_len("mac", self.mac.len(), model::MAX_MAC)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Verified, KmsError> {
        let key: HmacKey = kms.usable(trail, &self.key_id).await?;
        for v in views::verify_candidates(&key.key, &key.versions, self.key_version)? {
            if v.material.verify(&self.message, &self.mac).is_ok() {
                trail.used_version(v.version);
                return Ok(Verified(Some(v.version)));
            }
        }
        Ok(Verified(None))
    }
}

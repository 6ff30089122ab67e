//! Where the audit log gets the keys that authenticate its entries.
//!
//! The keys themselves, their derivation from the system key and the MAC
//! live in skm-crypto ([`skm_crypto::audit`]), the one crypto chokepoint;
//! this module only says which system keys are held at the time of a call.

use std::sync::Arc;

use skm_crypto::record::SystemKeyring;

use crate::system_keys::SystemKeys;

/// The system keys an audit log writes and verifies with: the active
/// version (for new entries) and every held version (to verify old ones).
///
/// In kms-api this is [`SystemKeys`]; tests use a fixed [`SystemKeyring`].
pub trait AuditKeys: Send + Sync {
    /// The keyring now; `None` while no system key is loaded.
    fn ring(&self) -> Option<Arc<SystemKeyring>>;
}

impl AuditKeys for Arc<SystemKeyring> {
    fn ring(&self) -> Option<Arc<SystemKeyring>> {
        Some(self.clone())
    }
}

/// kms-api's keys: whatever system keys are loaded at the time of the call
/// (none before they have been unwrapped at start).
impl AuditKeys for SystemKeys {
    fn ring(&self) -> Option<Arc<SystemKeyring>> {
        self.current().ok()
    }
}

impl<T: AuditKeys + ?Sized> AuditKeys for Arc<T> {
    fn ring(&self) -> Option<Arc<SystemKeyring>> {
        (**self).ring()
    }
}

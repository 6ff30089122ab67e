//! The system keys as operators see them: which versions kms-api holds,
//! how many records each seals, how far the background re-seal is
//! ([`crate::reseal`]), and the retirement of a version nothing uses.

use std::time::Duration;

use skm_store::Store;

use super::operation::{Effect, Operation, Trail};
use super::{Kms, KmsError};
use crate::records::Retire;
use crate::reseal::ProgressReport;

/// Records per page of the scan that counts records by version.
const COUNT_PAGE: usize = 1_000;

/// How long a retirement waits for system-keyd to drop the version.
const SYSTEM_KEYD_WAIT: Duration = Duration::from_secs(5);

/// The system key versions and the re-seal.
#[derive(Debug)]
pub struct GetSystemKeyStatus;

/// What [`GetSystemKeyStatus`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemKeyStatus {
    /// The version new records are sealed under.
    pub active_version: u32,
    /// Each version held and how many records are sealed under it
    /// (counted by a scan of the store), ascending.
    pub versions: Vec<(u32, u64)>,
    /// Versions retired: no tier holds them.
    pub retired_versions: Vec<u32>,
    /// The background re-seal.
    pub reseal: ProgressReport,
}

impl Operation for GetSystemKeyStatus {
    const NAME: &'static str = "GetSystemKeyStatus";
    const EFFECT: Effect = Effect::Read;
    type Output = SystemKeyStatus;

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, _trail: &mut Trail<'_>) -> Result<SystemKeyStatus, KmsError> {
        let keys = kms.records.system_keys();
        let ring = keys.current()?;
        let counts = kms.records.sealed_versions(COUNT_PAGE).await?;
        // A record under a version not held (none should exist) shows too.
        let mut versions: Vec<(u32, u64)> =
            ring.versions().map(|v| (v, counts.get(&v).copied().unwrap_or(0))).collect();
        versions.extend(counts.iter().filter(|(v, _)| !ring.versions().any(|h| h == **v)).map(|(v, n)| (*v, *n)));
        versions.sort_unstable();
        Ok(SystemKeyStatus {
            active_version: ring.active_version(),
            versions,
            retired_versions: ring.retired_versions().collect(),
            reseal: keys.reseal().report(),
        })
    }
}

/// Retire a system key version: refused while it is active or any record
/// is sealed under it; afterwards kms-api no longer holds it (only its
/// audit keys, so that old log entries keep verifying) and has system-keyd
/// drop it.
#[derive(Debug)]
pub struct RetireSystemKeyVersion {
    /// The version.
    pub version: u32,
}

/// What a retirement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetiredVersion {
    /// The version.
    pub version: u32,
    /// Whether system-keyd confirmed it no longer holds it (otherwise
    /// kms-api asks again at each refresh).
    pub system_keyd_dropped: bool,
}

impl Operation for RetireSystemKeyVersion {
    const NAME: &'static str = "RetireSystemKeyVersion";
    const EFFECT: Effect = Effect::Change;
    type Output = RetiredVersion;

    fn check(&self) -> Result<(), KmsError> {
        if self.version == 0 {
            return Err(KmsError::InvalidArgument("version: must be a system key version (1 or more)".to_owned()));
        }
        Ok(())
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, _trail: &mut Trail<'_>) -> Result<RetiredVersion, KmsError> {
        let version = self.version;
        let newly = kms.records.retire_version(version).await.map_err(|e| match e {
            Retire::Active(_) | Retire::InUse { .. } => KmsError::FailedPrecondition(e.to_string()),
            Retire::Unknown(_) => KmsError::NotFound(e.to_string()),
            Retire::Record(e) => e.into(),
        })?;
        if newly {
            tracing::warn!(version, "system key version retired");
        }
        let still_listed = kms.records.system_keys().refresh_and_check(version, SYSTEM_KEYD_WAIT).await;
        Ok(RetiredVersion { version, system_keyd_dropped: still_listed == Some(false) })
    }
}

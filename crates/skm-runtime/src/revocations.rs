//! Operator certificates revoked on root-keyd and system-keyd: each tier
//! keeps its own list (`revoked-operators` in its data directory, one
//! SHA-256 of a leaf certificate per line, written atomically, 0600), set
//! by an admin operator through that tier's `RevokeOperator` (the CLI's
//! `skm pki revoke-operator` calls every tier). A tier trusts no other
//! tier for it, as kms-api keeps its own list in its store. Revocation only
//! grows: nothing un-revokes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use crate::authz::Revocations;
use crate::files::PrivateError;

const FILE: &str = "revoked-operators";

/// The revoked certificates of one tier, on disk and in memory.
#[derive(Debug)]
pub struct FileRevocations {
    path: PathBuf,
    revoked: RwLock<BTreeSet<String>>,
}

/// Why a revocation could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// Not 64 lowercase hex digits.
    #[error("sha256 must be the SHA-256 of the certificate as 64 lowercase hex digits; got {0} characters")]
    BadFingerprint(usize),
    /// The file could not be read or written.
    #[error(transparent)]
    Io(#[from] PrivateError),
    /// The file holds a line that is no fingerprint.
    #[error("{}: line {line} is not a SHA-256 fingerprint", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based.
        line: usize,
    },
}

fn is_fingerprint(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl FileRevocations {
    /// Loads `dir/revoked-operators` (absent: nothing revoked). A malformed
    /// file is an error: the tier doesn't start on a list it can't read.
    pub fn open(dir: &Path) -> Result<Self, RevokeError> {
        let path = dir.join(FILE);
        crate::files::private_file(&path)?;
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(PrivateError { path, source }.into()),
        };
        let mut revoked = BTreeSet::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
            if !is_fingerprint(line) {
                return Err(RevokeError::Malformed { path, line: i + 1 });
            }
            revoked.insert(line.to_owned());
        }
        Ok(Self { path, revoked: RwLock::new(revoked) })
    }

    /// Revokes `sha256`, durably before it returns; `Ok(false)` if it
    /// already was.
    pub fn revoke(&self, sha256: &str) -> Result<bool, RevokeError> {
        if !is_fingerprint(sha256) {
            return Err(RevokeError::BadFingerprint(sha256.len()));
        }
        let mut revoked = self.revoked.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if revoked.contains(sha256) {
            return Ok(false);
        }
        let mut text = String::with_capacity((revoked.len() + 1) * 65);
        for s in revoked.iter().map(String::as_str).chain([sha256]) {
            text.push_str(s);
            text.push('\n');
        }
        crate::files::write_private_atomic(&self.path, text.as_bytes())?;
        revoked.insert(sha256.to_owned());
        Ok(true)
    }

    /// How many certificates are revoked.
    pub fn len(&self) -> usize {
        self.revoked.read().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A tier's `RevokeOperator` handler body: revokes, logs, and maps the
/// errors to status codes (a bad fingerprint names the field; a write that
/// failed is INTERNAL and logged).
pub fn revoke_rpc(list: &FileRevocations, sha256: &str) -> Result<bool, tonic::Status> {
    match list.revoke(sha256) {
        Ok(newly) => {
            tracing::warn!(certificate = sha256, newly, "operator certificate revoked on this tier");
            Ok(newly)
        }
        Err(e @ RevokeError::BadFingerprint(_)) => Err(tonic::Status::invalid_argument(e.to_string())),
        Err(e) => {
            tracing::error!(error = %e, "cannot record the revocation");
            Err(tonic::Status::internal("internal error"))
        }
    }
}

impl Revocations for FileRevocations {
    fn is_revoked(&self, leaf_sha256: &str) -> bool {
        self.revoked.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains(leaf_sha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_persist_only_grow_and_refuse_what_is_no_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let a = "a".repeat(64);
        let b = format!("{}0", "b".repeat(63));
        let list = FileRevocations::open(dir.path()).unwrap();
        assert!(list.is_empty() && !list.is_revoked(&a));
        assert!(list.revoke(&a).unwrap());
        assert!(!list.revoke(&a).unwrap(), "already revoked");
        assert!(list.revoke(&b).unwrap());
        assert!(list.is_revoked(&a) && list.is_revoked(&b));
        for bad in ["", "A".repeat(64).as_str(), &"a".repeat(63), &"g".repeat(64)] {
            assert!(matches!(list.revoke(bad), Err(RevokeError::BadFingerprint(_))), "{bad:?}");
        }
        drop(list);
        let again = FileRevocations::open(dir.path()).unwrap();
        assert_eq!(again.len(), 2);
        assert!(again.is_revoked(&a) && again.is_revoked(&b));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(dir.path().join(FILE), format!("{a}\nnot a fingerprint\n")).unwrap();
        assert!(matches!(FileRevocations::open(dir.path()), Err(RevokeError::Malformed { line: 2, .. })));
    }
}

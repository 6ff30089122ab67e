//! Where sealed and key material lives on disk: private to the daemon's
//! user on every tier (STYLE: fail closed). A data directory is 0700 (so
//! every file a store writes inside it, whatever its own mode, is out of
//! reach of other users) and a file SKM writes itself with key material is
//! 0600. A directory or file left wider by an earlier version is narrowed
//! at the next start.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of a data directory.
pub const PRIVATE_DIR: u32 = 0o700;
/// The mode of a file holding sealed or key material.
pub const PRIVATE_FILE: u32 = 0o600;

/// A data directory or file could not be made private.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct PrivateError {
    /// The directory or file.
    pub path: PathBuf,
    /// What the system said.
    pub source: std::io::Error,
}

/// Creates `dir` (and missing parents, each 0700) if it is absent, and sets
/// it to 0700 if it was there with a wider mode.
pub fn private_dir(dir: &Path) -> Result<(), PrivateError> {
    let err = |source| PrivateError { path: dir.to_owned(), source };
    std::fs::DirBuilder::new().recursive(true).mode(PRIVATE_DIR).create(dir).map_err(err)?;
    narrow(dir, PRIVATE_DIR)
}

/// Sets an existing file to 0600 if its mode is wider; a missing file is
/// left missing.
pub fn private_file(path: &Path) -> Result<(), PrivateError> {
    match std::fs::metadata(path) {
        Ok(_) => narrow(path, PRIVATE_FILE),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PrivateError { path: path.to_owned(), source }),
    }
}

/// Replaces `path` with `bytes` atomically and durably: a 0600 temporary
/// file beside it (a stale one a crash left is removed first, so its mode
/// doesn't carry over), fsync, rename, fsync of the directory. A crash
/// leaves the old file or the new one, whole.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> Result<(), PrivateError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| PrivateError { path: path.to_owned(), source };
    let dir = path.parent().ok_or_else(|| err(std::io::Error::other("no parent directory")))?;
    let mut tmp_name = path.file_name().ok_or_else(|| err(std::io::Error::other("no file name")))?.to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(PRIVATE_FILE)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)
}

fn narrow(path: &Path, mode: u32) -> Result<(), PrivateError> {
    let err = |source| PrivateError { path: path.to_owned(), source };
    let current = std::fs::metadata(path).map_err(err)?.permissions().mode() & 0o777;
    if current & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & mode)).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn dirs_are_created_and_narrowed_to_0700() {
        let base = tempfile::tempdir().unwrap();
        let nested = base.path().join("a").join("b");
        private_dir(&nested).unwrap();
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&base.path().join("a")), 0o700, "missing parents too");
        let wide = base.path().join("wide");
        std::fs::create_dir(&wide).unwrap();
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&wide).unwrap();
        assert_eq!(mode(&wide), 0o700);
    }

    #[test]
    fn files_are_narrowed_to_0600_and_missing_ones_left_alone() {
        let base = tempfile::tempdir().unwrap();
        let file = base.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
        private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o400, "a narrower mode stays");
        private_file(&base.path().join("missing")).unwrap();
    }
}

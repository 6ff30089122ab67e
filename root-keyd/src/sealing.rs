//! The root key's life in root-keyd: uninitialised → sealed → unsealed.
//!
//! At rest there is one file, `root-key.seal` (JSON), holding the root key
//! encrypted under a key-encryption key (KEK) and what is needed to rebuild
//! that KEK: the Shamir threshold and share digests, or the Argon2id salt and
//! costs. It is written atomically (temporary file, fsync, rename, fsync of
//! the directory), so a crash leaves either no root key or a whole one.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use skm_crypto::Secret32;
use skm_crypto::seal::{self, PassphraseParams};
use skm_crypto::wrap::RootKey;
use zeroize::Zeroizing;

use crate::config::SealConfig;

const SEAL_FILE: &str = "root-key.seal";

/// The lowest Shamir threshold root-keyd accepts: with 1, any single share
/// unseals the root key.
pub const MIN_THRESHOLD: u32 = 2;

/// Errors of the seal state machine, mapped to gRPC codes in `grpc.rs`.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// No root key yet.
    #[error("root-keyd is not initialised: run `skm root init`")]
    NotInitialized,
    /// The root key exists but is sealed.
    #[error("root-keyd is sealed: unseal it with `skm root unseal`")]
    Sealed,
    /// Init called twice.
    #[error("root-keyd is already initialised")]
    AlreadyInitialized,
    /// An RPC that doesn't fit the configured seal mode.
    #[error("{0}")]
    WrongMode(&'static str),
    /// Bad Shamir parameters.
    #[error(transparent)]
    Shamir(#[from] seal::ShamirError),
    /// A threshold under [`MIN_THRESHOLD`].
    #[error(
        "threshold {0}: a single share would unseal the root key, so one operator (or one lost share) could; \
         use a threshold of at least 2"
    )]
    ThresholdTooLow(u32),
    /// A share that does not belong to this root key.
    #[error("unseal share rejected: it does not belong to this root key")]
    BadShare,
    /// The passphrase does not open the stored root key.
    #[error("the passphrase in {0} does not unseal the root key")]
    BadPassphrase(PathBuf),
    /// Reading or writing the seal file failed.
    #[error("seal file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The seal file is not in the expected format.
    #[error("seal file {0} is malformed")]
    Malformed(PathBuf),
    /// The passphrase KDF failed.
    #[error(transparent)]
    Kdf(#[from] seal::KdfError),
    /// Randomness or encryption failed.
    #[error("cryptographic operation failed")]
    Crypto,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealFile {
    format: u32,
    root_key_id: String,
    /// hex of nonce | AES-256-GCM-SIV(root key) + tag.
    sealed_root_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shamir: Option<ShamirFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    passphrase: Option<PassphraseFile>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShamirFile {
    threshold: u32,
    shares: u32,
    share_digests: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PassphraseFile {
    salt: String,
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
}

enum State {
    Uninitialized,
    Sealed { file: SealFile, submitted: Vec<Zeroizing<Vec<u8>>>, digests: BTreeSet<[u8; 32]> },
    Unsealed { root: Arc<RootKey> },
}

/// Unseal shares as handed out once by `Init`.
pub type UnsealShares = Vec<Zeroizing<Vec<u8>>>;

/// What `SealStatus` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// A root key exists.
    pub initialized: bool,
    /// It is not usable.
    pub sealed: bool,
    /// Shares needed (Shamir).
    pub threshold: u32,
    /// Valid distinct shares given since start (Shamir).
    pub progress: u32,
    /// Root key id ("" before init).
    pub root_key_id: String,
    /// Whether the mode is Shamir.
    pub shamir: bool,
}

/// The root key holder.
pub struct Sealer {
    dir: PathBuf,
    mode: SealConfig,
    state: RwLock<State>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("dir", &self.dir).field("mode", &self.mode).finish_non_exhaustive()
    }
}

impl Sealer {
    /// Opens the seal file in `dir`. In passphrase mode a missing root key is
    /// created and an existing one unsealed at once.
    pub fn open(dir: &Path, mode: SealConfig) -> Result<Self, SealError> {
        skm_runtime::files::private_dir(dir).map_err(|e| SealError::Io { path: e.path, source: e.source })?;
        let path = dir.join(SEAL_FILE);
        skm_runtime::files::private_file(&path).map_err(|e| SealError::Io { path: e.path, source: e.source })?;
        let state = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: SealFile = serde_json::from_slice(&bytes).map_err(|_| SealError::Malformed(path.clone()))?;
                sealed_state(file, &path)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::Uninitialized,
            Err(source) => return Err(SealError::Io { path, source }),
        };
        let sealer = Self { dir: dir.to_owned(), mode, state: RwLock::new(state) };
        if let SealConfig::Passphrase { file } = &sealer.mode {
            let passphrase = read_passphrase(file)?;
            if matches!(*sealer.read(), State::Uninitialized) {
                sealer.init_passphrase(&passphrase)?;
                tracing::info!("root key created and sealed under the passphrase");
            }
            sealer.unseal_passphrase(&passphrase, file)?;
        }
        Ok(sealer)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The unsealed root key, or why there is none.
    pub fn root_key(&self) -> Result<Arc<RootKey>, SealError> {
        match &*self.read() {
            State::Unsealed { root } => Ok(root.clone()),
            State::Sealed { .. } => Err(SealError::Sealed),
            State::Uninitialized => Err(SealError::NotInitialized),
        }
    }

    /// Current seal status.
    pub fn status(&self) -> Status {
        let shamir = self.mode == SealConfig::Shamir;
        match &*self.read() {
            State::Uninitialized => Status {
                initialized: false,
                sealed: true,
                threshold: 0,
                progress: 0,
                root_key_id: String::new(),
                shamir,
            },
            State::Sealed { file, digests, .. } => Status {
                initialized: true,
                sealed: true,
                threshold: file.shamir.as_ref().map_or(0, |s| s.threshold),
                progress: digests.len() as u32,
                root_key_id: file.root_key_id.clone(),
                shamir,
            },
            State::Unsealed { root } => Status {
                initialized: true,
                sealed: false,
                threshold: 0,
                progress: 0,
                root_key_id: root.id().to_owned(),
                shamir,
            },
        }
    }

    /// Creates the root key in Shamir mode and returns the shares (once).
    /// The threshold is at least [`MIN_THRESHOLD`].
    pub fn init_shamir(&self, shares: u32, threshold: u32) -> Result<(String, UnsealShares), SealError> {
        if self.mode != SealConfig::Shamir {
            return Err(SealError::WrongMode("root-keyd is in passphrase mode: it initialises itself"));
        }
        if threshold < MIN_THRESHOLD {
            return Err(SealError::ThresholdTooLow(threshold));
        }
        let mut state = self.write();
        if !matches!(*state, State::Uninitialized) {
            return Err(SealError::AlreadyInitialized);
        }
        let root = RootKey::generate().map_err(|_| SealError::Crypto)?;
        let unseal_key = Secret32::generate().map_err(|_| SealError::Crypto)?;
        let share_list = seal::split(&unseal_key, shares, threshold)?;
        let sealed = seal::seal_root_key(&unseal_key, &root).map_err(|_| SealError::Crypto)?;
        let file = SealFile {
            format: 1,
            root_key_id: root.id().to_owned(),
            sealed_root_key: hex::encode(sealed),
            shamir: Some(ShamirFile {
                threshold,
                shares,
                share_digests: share_list.iter().map(|s| hex::encode(seal::share_digest(s))).collect(),
            }),
            passphrase: None,
        };
        self.persist(&file)?;
        let id = file.root_key_id.clone();
        *state = State::Sealed { file, submitted: Vec::new(), digests: BTreeSet::new() };
        Ok((id, share_list))
    }

    /// Takes one Shamir share. Unseals once the threshold is reached.
    pub fn unseal_share(&self, share: &[u8]) -> Result<Status, SealError> {
        if self.mode != SealConfig::Shamir {
            return Err(SealError::WrongMode("root-keyd is in passphrase mode: it unseals itself"));
        }
        {
            let mut state = self.write();
            let State::Sealed { file, submitted, digests } = &mut *state else {
                drop(state);
                return match self.root_key() {
                    Ok(_) => Ok(self.status()),
                    Err(e) => Err(e),
                };
            };
            let shamir =
                file.shamir.as_ref().ok_or(SealError::WrongMode("the stored root key is not Shamir-sealed"))?;
            let digest = seal::share_digest(share);
            if !shamir.share_digests.iter().any(|d| d == &hex::encode(digest)) {
                return Err(SealError::BadShare);
            }
            if digests.insert(digest) {
                submitted.push(Zeroizing::new(share.to_vec()));
            }
            if (digests.len() as u32) >= shamir.threshold {
                let outcome =
                    seal::combine(submitted, shamir.threshold).map_err(SealError::from).and_then(|unseal_key| {
                        let sealed = hex::decode(&file.sealed_root_key).map_err(|_| SealError::BadShare)?;
                        seal::unseal_root_key(&unseal_key, &file.root_key_id, &sealed).map_err(|_| SealError::BadShare)
                    });
                match outcome {
                    Ok(root) => {
                        *state = State::Unsealed { root: Arc::new(root) };
                        tracing::info!("root key unsealed");
                    }
                    Err(e) => {
                        submitted.clear();
                        digests.clear();
                        return Err(e);
                    }
                }
            }
        }
        Ok(self.status())
    }

    fn init_passphrase(&self, passphrase: &[u8]) -> Result<(), SealError> {
        let params = PassphraseParams::recommended().map_err(|_| SealError::Crypto)?;
        let kek = params.derive_kek(passphrase)?;
        let root = RootKey::generate().map_err(|_| SealError::Crypto)?;
        let sealed = seal::seal_root_key(&kek, &root).map_err(|_| SealError::Crypto)?;
        let file = SealFile {
            format: 1,
            root_key_id: root.id().to_owned(),
            sealed_root_key: hex::encode(sealed),
            shamir: None,
            passphrase: Some(PassphraseFile {
                salt: hex::encode(params.salt),
                m_cost: params.m_cost,
                t_cost: params.t_cost,
                p_cost: params.p_cost,
            }),
        };
        self.persist(&file)?;
        *self.write() = State::Sealed { file, submitted: Vec::new(), digests: BTreeSet::new() };
        Ok(())
    }

    fn unseal_passphrase(&self, passphrase: &[u8], passphrase_file: &Path) -> Result<(), SealError> {
        let mut state = self.write();
        let State::Sealed { file, .. } = &*state else {
            return Ok(());
        };
        let path = self.dir.join(SEAL_FILE);
        let p = file
            .passphrase
            .as_ref()
            .ok_or(SealError::WrongMode("the stored root key is Shamir-sealed but seal.mode is \"passphrase\""))?;
        let salt: [u8; 16] = hex::decode(&p.salt)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| SealError::Malformed(path.clone()))?;
        let params = PassphraseParams { salt, m_cost: p.m_cost, t_cost: p.t_cost, p_cost: p.p_cost };
        let kek = params.derive_kek(passphrase)?;
        let sealed = hex::decode(&file.sealed_root_key).map_err(|_| SealError::Malformed(path))?;
        let root = seal::unseal_root_key(&kek, &file.root_key_id, &sealed)
            .map_err(|_| SealError::BadPassphrase(passphrase_file.to_owned()))?;
        *state = State::Unsealed { root: Arc::new(root) };
        tracing::info!("root key unsealed with the passphrase");
        Ok(())
    }

    fn persist(&self, file: &SealFile) -> Result<(), SealError> {
        let path = self.dir.join(SEAL_FILE);
        let io = |source| SealError::Io { path: path.clone(), source };
        let tmp = self.dir.join(format!("{SEAL_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(file).map_err(|_| SealError::Crypto)?;
        // A temporary file left by a crash keeps its mode through a reopen:
        // start from none, so the seal file is always created 0600.
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(skm_runtime::files::PRIVATE_FILE)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        std::fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(())
    }
}

fn sealed_state(file: SealFile, path: &Path) -> Result<State, SealError> {
    if file.format != 1 || (file.shamir.is_none() == file.passphrase.is_none()) {
        return Err(SealError::Malformed(path.to_owned()));
    }
    Ok(State::Sealed { file, submitted: Vec::new(), digests: BTreeSet::new() })
}

fn read_passphrase(path: &Path) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let raw = Zeroizing::new(std::fs::read(path).map_err(|source| SealError::Io { path: path.to_owned(), source })?);
    let text = raw.split(|b| *b == b'\n').next().unwrap_or_default();
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    if text.len() < 8 {
        return Err(SealError::WrongMode("the passphrase must be at least 8 bytes"));
    }
    Ok(Zeroizing::new(text.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_of_one_is_refused_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::open(dir.path(), SealConfig::Shamir).unwrap();
        for (shares, threshold) in [(3, 0), (3, 1), (1, 1)] {
            let e = sealer.init_shamir(shares, threshold).unwrap_err();
            assert!(matches!(e, SealError::ThresholdTooLow(t) if t == threshold), "{e}");
            assert!(e.to_string().contains("use a threshold of at least 2"), "{e}");
        }
        assert!(!dir.path().join(SEAL_FILE).exists(), "nothing stored");
        assert!(matches!(sealer.root_key(), Err(SealError::NotInitialized)));
        sealer.init_shamir(2, 2).unwrap();
    }

    #[test]
    fn shamir_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::open(dir.path(), SealConfig::Shamir).unwrap();
        assert!(matches!(sealer.root_key(), Err(SealError::NotInitialized)));
        let (id, shares) = sealer.init_shamir(5, 3).unwrap();
        assert!(matches!(sealer.init_shamir(5, 3), Err(SealError::AlreadyInitialized)));
        assert!(matches!(sealer.root_key(), Err(SealError::Sealed)));
        // a share from another root key is rejected at once
        let other_dir = tempfile::tempdir().unwrap();
        let other = Sealer::open(other_dir.path(), SealConfig::Shamir).unwrap();
        let (_, foreign) = other.init_shamir(5, 3).unwrap();
        assert!(matches!(sealer.unseal_share(&foreign[0]), Err(SealError::BadShare)));
        assert_eq!(sealer.unseal_share(&shares[0]).unwrap().progress, 1);
        assert_eq!(sealer.unseal_share(&shares[0]).unwrap().progress, 1, "repeat doesn't count");
        assert_eq!(sealer.unseal_share(&shares[3]).unwrap().progress, 2);
        assert!(sealer.root_key().is_err(), "k-1 shares are not enough");
        let status = sealer.unseal_share(&shares[4]).unwrap();
        assert!(!status.sealed);
        let root = sealer.root_key().unwrap();
        assert_eq!(root.id(), id);
        // a restart is sealed again, and the same root key comes back
        drop(sealer);
        let again = Sealer::open(dir.path(), SealConfig::Shamir).unwrap();
        assert!(again.status().sealed);
        for s in &shares[1..4] {
            again.unseal_share(s).unwrap();
        }
        assert_eq!(again.root_key().unwrap().danger_material(), root.danger_material());
    }

    #[test]
    fn passphrase_auto_init_and_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("pass");
        std::fs::write(&pass, "correct horse battery\n").unwrap();
        let data = dir.path().join("data");
        let first = Sealer::open(&data, SealConfig::Passphrase { file: pass.clone() }).unwrap();
        let root = first.root_key().unwrap();
        drop(first);
        let second = Sealer::open(&data, SealConfig::Passphrase { file: pass.clone() }).unwrap();
        assert_eq!(second.root_key().unwrap().danger_material(), root.danger_material());
        std::fs::write(&pass, "wrong horse battery\n").unwrap();
        assert!(matches!(Sealer::open(&data, SealConfig::Passphrase { file: pass }), Err(SealError::BadPassphrase(_))));
    }

    #[test]
    fn the_seal_file_and_its_directory_are_private_even_if_they_were_not() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("pass");
        std::fs::write(&pass, "correct horse battery\n").unwrap();
        let data = dir.path().join("data");
        drop(Sealer::open(&data, SealConfig::Passphrase { file: pass.clone() }).unwrap());
        let seal = data.join(SEAL_FILE);
        assert_eq!((mode(&data), mode(&seal)), (0o700, 0o600));
        // As an earlier version left them: narrowed at the next start.
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&seal, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(Sealer::open(&data, SealConfig::Passphrase { file: pass }).unwrap());
        assert_eq!((mode(&data), mode(&seal)), (0o700, 0o600));
        // A temporary file a crash left behind doesn't pass its mode on.
        let fresh = dir.path().join("fresh");
        std::fs::create_dir(&fresh).unwrap();
        let tmp = fresh.join(format!("{SEAL_FILE}.tmp"));
        std::fs::write(&tmp, b"torn").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        let sealer = Sealer::open(&fresh, SealConfig::Shamir).unwrap();
        sealer.init_shamir(3, 2).unwrap();
        assert_eq!(mode(&fresh.join(SEAL_FILE)), 0o600);
        assert!(!tmp.exists());
    }
}

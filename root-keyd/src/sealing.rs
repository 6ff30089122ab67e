//! The root key's life in root-keyd: uninitialised → sealed → unsealed.
//!
//! At rest there is one file, `root-key.seal` (JSON), holding the root key
//! encrypted under a key-encryption key (KEK) and what is needed to rebuild
//! that KEK: the Shamir threshold and share digests, or the Argon2id salt and
//! costs. In PKCS#11 mode the root key never leaves its token; the file then
//! only records which token object it is, so a missing object is reported
//! instead of silently replaced by a new root key. It is written atomically (temporary file, fsync, rename, fsync of
//! the directory), so a crash leaves either no root key or a whole one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use skm_crypto::Secret32;
use skm_crypto::seal::{self, PassphraseParams};
use skm_crypto::wrap::RootKey;
use zeroize::Zeroizing;

use crate::config::SealConfig;
use crate::pkcs11::{TokenConfig, TokenKey};

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
    /// A rekey share for no rekey in progress (or another one).
    #[error("no rekey with this nonce is in progress: start one with `skm root rekey start`")]
    NoRekey,
    /// A wrapped system key names a root key version root-keyd doesn't hold.
    #[error(
        "root key {id:?} is not held by this root-keyd (current root key: {current:?}); it was destroyed or \
         belongs to another root-keyd"
    )]
    UnknownRootKey {
        /// The id asked for.
        id: String,
        /// The current one.
        current: String,
    },
    /// The PKCS#11 token can't be used (seal mode "pkcs11").
    #[error("the root key's PKCS#11 token is unavailable: {0}")]
    Token(String),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealFile {
    format: u32,
    root_key_id: String,
    /// hex of nonce | AES-256-GCM-SIV(root key) + tag; empty in PKCS#11 mode.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sealed_root_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shamir: Option<ShamirFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    passphrase: Option<PassphraseFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pkcs11: Option<Pkcs11File>,
    /// Older root key versions, newest first: kept until system-keyd has
    /// rewrapped everything under the current one (`DestroyRootKeys`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    older: Vec<OlderKey>,
}

/// An older root key version: sealed like the current one (Shamir,
/// passphrase), or named by its token object's id (PKCS#11).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OlderKey {
    root_key_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sealed_root_key: String,
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

/// Which token object holds the root key (PKCS#11 mode).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pkcs11File {
    token_label: String,
    key_label: String,
}

enum State {
    Uninitialized,
    Sealed {
        file: Box<SealFile>,
        submitted: Vec<Zeroizing<Vec<u8>>>,
        digests: BTreeSet<[u8; 32]>,
    },
    /// `kek`: the key that seals root key versions at rest (Shamir's
    /// unseal key, the passphrase's KEK), kept to seal a rotated one; none
    /// in PKCS#11 mode.
    Unsealed {
        ring: Arc<Ring>,
        kek: Option<Arc<Secret32>>,
    },
    /// The token can't be used; `initialized`: a root key is recorded.
    Unavailable {
        reason: String,
        initialized: bool,
    },
}

/// The root key as root-keyd uses it: in its memory (Shamir, passphrase),
/// or as a handle to a token object it never sees (PKCS#11).
#[derive(Debug)]
pub enum Root {
    /// Unsealed into memory.
    Memory(RootKey),
    /// Inside a PKCS#11 token.
    Token(TokenKey),
}

/// A wrap or unwrap that failed (opaque, as every crypto error).
#[derive(Debug, thiserror::Error)]
#[error("the system key could not be wrapped or unwrapped")]
pub struct WrapError;

impl Root {
    /// The root key id.
    pub fn id(&self) -> &str {
        match self {
            Self::Memory(key) => key.id(),
            Self::Token(key) => key.id(),
        }
    }

    /// Wraps system key `version` under the root key.
    pub fn wrap_system_key(&self, version: u32, system_key: &Secret32) -> Result<Vec<u8>, WrapError> {
        match self {
            Self::Memory(key) => key.wrap_system_key(version, system_key).map_err(|_| WrapError),
            Self::Token(key) => key.wrap_system_key(version, system_key).map_err(|_| WrapError),
        }
    }

    /// Unwraps system key `version`.
    pub fn unwrap_system_key(&self, version: u32, wrapped: &[u8]) -> Result<Secret32, WrapError> {
        match self {
            Self::Memory(key) => key.unwrap_system_key(version, wrapped).map_err(|_| WrapError),
            Self::Token(key) => key.unwrap_system_key(version, wrapped).map_err(|_| WrapError),
        }
    }
}

/// The root key versions root-keyd holds: the current one wraps new and
/// rewrapped system keys; older ones only unwrap, until destroyed.
#[derive(Debug)]
pub struct Ring {
    current: Arc<Root>,
    older: Vec<Arc<Root>>,
}

impl Ring {
    fn new(mut keys: Vec<Root>) -> Option<Self> {
        if keys.is_empty() {
            return None;
        }
        let current = Arc::new(keys.remove(0));
        Some(Self { current, older: keys.into_iter().map(Arc::new).collect() })
    }

    /// The version named `id`.
    fn get(&self, id: &str) -> Option<Arc<Root>> {
        std::iter::once(&self.current).chain(&self.older).find(|k| k.id() == id).cloned()
    }

    fn older_ids(&self) -> Vec<String> {
        self.older.iter().map(|k| k.id().to_owned()).collect()
    }
}

/// The configured seal mode, as `SealStatus` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Shamir shares.
    Shamir,
    /// Passphrase file.
    Passphrase,
    /// PKCS#11 token.
    Pkcs11,
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
    /// The configured seal mode.
    pub mode: Mode,
    /// Why the root key can't be used though configured (PKCS#11: the
    /// token is absent, its PIN wrong, …); `None` otherwise.
    pub unavailable: Option<String>,
    /// Older root key versions still held, newest first.
    pub older: Vec<String>,
}

/// The root key holder.
pub struct Sealer {
    dir: PathBuf,
    mode: SealConfig,
    state: RwLock<State>,
    rekey: std::sync::Mutex<Option<Rekey>>,
}

/// A rekey in progress: the new shares' parameters and the current shares
/// given so far.
struct Rekey {
    nonce: String,
    shares: u32,
    threshold: u32,
    submitted: Vec<Zeroizing<Vec<u8>>>,
    digests: BTreeSet<[u8; 32]>,
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
        let sealer = Self { dir: dir.to_owned(), mode, state: RwLock::new(state), rekey: std::sync::Mutex::new(None) };
        if let SealConfig::Pkcs11(token) = &sealer.mode {
            sealer.open_token(token, &path)?;
        }
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

    /// Opens the token, creating the root key in it on first start. A
    /// token that can't be used leaves root-keyd up and NOT_SERVING, with
    /// one ERROR line saying why; only a seal file of another mode is an
    /// error here.
    fn open_token(&self, token: &TokenConfig, path: &Path) -> Result<(), SealError> {
        let recorded: Vec<String> = match &*self.read() {
            State::Sealed { file, .. } if file.pkcs11.is_some() => {
                std::iter::once(&file.root_key_id).chain(file.older.iter().map(|o| &o.root_key_id)).cloned().collect()
            }
            State::Sealed { .. } => {
                return Err(SealError::WrongMode(
                    "the stored root key is sealed by Shamir shares or a passphrase but seal.mode is \"pkcs11\"",
                ));
            }
            _ => Vec::new(),
        };
        let state = match TokenKey::open(token, &recorded) {
            Ok((keys, created)) => {
                let ring = Ring::new(keys.into_iter().map(Root::Token).collect()).ok_or(SealError::Crypto)?;
                let id = ring.current.id().to_owned();
                if recorded.is_empty() {
                    self.persist(&SealFile {
                        format: 1,
                        root_key_id: id.clone(),
                        sealed_root_key: String::new(),
                        shamir: None,
                        passphrase: None,
                        pkcs11: Some(Pkcs11File {
                            token_label: token.token_label.clone(),
                            key_label: token.key_label.clone(),
                        }),
                        older: Vec::new(),
                    })?;
                    tracing::info!(
                        root_key_id = id,
                        created,
                        file = %path.display(),
                        "root key recorded: an AES-256 key inside PKCS#11 token {:?}", token.token_label
                    );
                }
                tracing::info!(
                    root_key_id = id,
                    older = ?ring.older_ids(),
                    token = token.token_label,
                    "root key ready in its PKCS#11 token"
                );
                State::Unsealed { ring: Arc::new(ring), kek: None }
            }
            Err(e) => {
                tracing::error!("{}; root-keyd stays NOT_SERVING until this is fixed and it is restarted", e);
                State::Unavailable { reason: e.to_string(), initialized: !recorded.is_empty() }
            }
        };
        *self.write() = state;
        Ok(())
    }

    /// The current root key version, or why there is none.
    pub fn root_key(&self) -> Result<Arc<Root>, SealError> {
        Ok(self.ring()?.current.clone())
    }

    /// The root key version `id` (current or older).
    pub fn root_key_version(&self, id: &str) -> Result<Arc<Root>, SealError> {
        let ring = self.ring()?;
        ring.get(id)
            .ok_or_else(|| SealError::UnknownRootKey { id: id.to_owned(), current: ring.current.id().to_owned() })
    }

    fn ring(&self) -> Result<Arc<Ring>, SealError> {
        match &*self.read() {
            State::Unsealed { ring, .. } => Ok(ring.clone()),
            State::Sealed { .. } => Err(SealError::Sealed),
            State::Uninitialized => Err(SealError::NotInitialized),
            State::Unavailable { reason, .. } => Err(SealError::Token(reason.clone())),
        }
    }

    /// Makes a new root key version current and records it; the previous
    /// ones stay (they unwrap what they wrapped) until
    /// [`Sealer::destroy_older`]. Returns the new id and the older ones,
    /// newest first.
    pub fn rotate(&self) -> Result<(String, Vec<String>), SealError> {
        let mut state = self.write();
        let State::Unsealed { ring, kek } = &*state else {
            drop(state);
            return Err(self.ring().err().unwrap_or(SealError::Sealed));
        };
        let (ring, kek) = (ring.clone(), kek.clone());
        let mut file = self.load_file()?;
        let (new, sealed) = match (&self.mode, &*ring.current, &kek) {
            (SealConfig::Pkcs11(token), Root::Token(current), _) => {
                let new = current.generate_next(token).map_err(|e| SealError::Token(e.to_string()))?;
                (Root::Token(new), String::new())
            }
            (_, Root::Memory(_), Some(kek)) => {
                let new = RootKey::generate().map_err(|_| SealError::Crypto)?;
                let sealed = seal::seal_root_key(kek, &new).map_err(|_| SealError::Crypto)?;
                (Root::Memory(new), hex::encode(sealed))
            }
            _ => return Err(SealError::Crypto),
        };
        let previous = OlderKey {
            root_key_id: std::mem::replace(&mut file.root_key_id, new.id().to_owned()),
            sealed_root_key: std::mem::replace(&mut file.sealed_root_key, sealed),
        };
        file.older.insert(0, previous);
        if let Err(e) = self.persist(&file) {
            if let (SealConfig::Pkcs11(token), Root::Token(new)) = (&self.mode, &new) {
                let _ = new.destroy(token);
            }
            return Err(e);
        }
        let mut older = vec![ring.current.clone()];
        older.extend(ring.older.iter().cloned());
        let ring = Ring { current: Arc::new(new), older };
        let answer = (ring.current.id().to_owned(), ring.older_ids());
        tracing::info!(root_key_id = answer.0, older = ?answer.1, "root key rotated: a new version is current");
        *state = State::Unsealed { ring: Arc::new(ring), kek };
        Ok(answer)
    }

    /// Destroys the older root key versions not in `keep` (never the
    /// current one): first drops them from the seal file, then (PKCS#11)
    /// destroys their token objects. Returns the destroyed ids.
    pub fn destroy_older(&self, keep: &BTreeSet<String>) -> Result<Vec<String>, SealError> {
        let mut state = self.write();
        let State::Unsealed { ring, kek } = &*state else {
            drop(state);
            return Err(self.ring().err().unwrap_or(SealError::Sealed));
        };
        let (ring, kek) = (ring.clone(), kek.clone());
        let (gone, kept): (Vec<_>, Vec<_>) = ring.older.iter().cloned().partition(|k| !keep.contains(k.id()));
        if gone.is_empty() {
            return Ok(Vec::new());
        }
        let mut file = self.load_file()?;
        file.older.retain(|o| !gone.iter().any(|k| k.id() == o.root_key_id));
        self.persist(&file)?;
        *state = State::Unsealed { ring: Arc::new(Ring { current: ring.current.clone(), older: kept }), kek };
        drop(state);
        if let SealConfig::Pkcs11(token) = &self.mode {
            for key in &gone {
                if let Root::Token(key) = &**key
                    && let Err(e) = key.destroy(token)
                {
                    tracing::error!(root_key_id = key.id(), error = %e, "root key version dropped, but its token object remains");
                }
            }
        }
        let ids: Vec<String> = gone.iter().map(|k| k.id().to_owned()).collect();
        tracing::info!(destroyed = ?ids, "older root key versions destroyed: nothing is wrapped under them");
        Ok(ids)
    }

    /// Starts a rekey (Shamir mode, unsealed): new unseal shares, `shares`
    /// of them with `threshold` needed, issued once the threshold of
    /// *current* shares has been given to [`Sealer::rekey_submit`]. A new
    /// start replaces one in progress. Returns the rekey's nonce and how
    /// many current shares it needs.
    pub fn rekey_start(&self, shares: u32, threshold: u32) -> Result<(String, u32), SealError> {
        if self.mode != SealConfig::Shamir {
            return Err(SealError::WrongMode("rekey is for seal mode \"shamir\": it issues new unseal shares"));
        }
        if threshold < MIN_THRESHOLD {
            return Err(SealError::ThresholdTooLow(threshold));
        }
        if !(1..=255).contains(&shares) || threshold > shares {
            return Err(SealError::Shamir(seal::ShamirError::BadParameters { threshold, shares }));
        }
        self.ring()?;
        let needed = self
            .load_file()?
            .shamir
            .map(|s| s.threshold)
            .ok_or(SealError::WrongMode("the stored root key is not Shamir-sealed"))?;
        let nonce = hex::encode(skm_crypto::random_array::<16>().map_err(|_| SealError::Crypto)?);
        *self.rekey_lock() =
            Some(Rekey { nonce: nonce.clone(), shares, threshold, submitted: Vec::new(), digests: BTreeSet::new() });
        tracing::info!(shares, threshold, needed, "rekey started: waiting for the current unseal shares");
        Ok((nonce, needed))
    }

    /// Takes one current share for the rekey `nonce`. Before the threshold:
    /// `Ok((progress, needed, None))`. At it: the shares must rebuild the
    /// current unseal key; every root key version is sealed under a new
    /// one and the new shares are returned, once. The old shares no longer
    /// unseal.
    pub fn rekey_submit(&self, nonce: &str, share: &[u8]) -> Result<(u32, u32, Option<UnsealShares>), SealError> {
        let mut rekey = self.rekey_lock();
        let Some(current) = rekey.as_mut().filter(|r| r.nonce == nonce) else {
            return Err(SealError::NoRekey);
        };
        let file = self.load_file()?;
        let shamir = file.shamir.as_ref().ok_or(SealError::WrongMode("the stored root key is not Shamir-sealed"))?;
        let digest = seal::share_digest(share);
        if !shamir.share_digests.iter().any(|d| d == &hex::encode(digest)) {
            return Err(SealError::BadShare);
        }
        if current.digests.insert(digest) {
            current.submitted.push(Zeroizing::new(share.to_vec()));
        }
        let (progress, needed) = (current.digests.len() as u32, shamir.threshold);
        if progress < needed {
            return Ok((progress, needed, None));
        }
        let Some(done) = rekey.take() else { return Err(SealError::NoRekey) };
        let old_key = seal::combine(&done.submitted, needed)?;
        // From here to the new file, no rotation or destruction interleaves.
        let mut state = self.write();
        let State::Unsealed { ring, kek } = &mut *state else { return Err(SealError::Sealed) };
        let ring = ring.clone();
        let mut file = self.load_file()?;
        if open_ring(&old_key, &file).is_none() {
            return Err(SealError::BadShare);
        }
        let new_key = Secret32::generate().map_err(|_| SealError::Crypto)?;
        let new_shares = seal::split(&new_key, done.shares, done.threshold)?;
        let reseal = |root: &Root| match root {
            Root::Memory(key) => seal::seal_root_key(&new_key, key).map(hex::encode).map_err(|_| SealError::Crypto),
            Root::Token(_) => Err(SealError::Crypto),
        };
        file.sealed_root_key = reseal(&ring.current)?;
        for older in &mut file.older {
            let key = ring.get(&older.root_key_id).ok_or(SealError::Malformed(self.dir.join(SEAL_FILE)))?;
            older.sealed_root_key = reseal(&key)?;
        }
        file.shamir = Some(ShamirFile {
            threshold: done.threshold,
            shares: done.shares,
            share_digests: new_shares.iter().map(|s| hex::encode(seal::share_digest(s))).collect(),
        });
        self.persist(&file)?;
        *kek = Some(Arc::new(new_key));
        drop(state);
        tracing::info!(
            shares = done.shares,
            threshold = done.threshold,
            "rekeyed: new unseal shares issued, the old ones no longer unseal"
        );
        Ok((progress, needed, Some(new_shares)))
    }

    fn rekey_lock(&self) -> std::sync::MutexGuard<'_, Option<Rekey>> {
        self.rekey.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn load_file(&self) -> Result<SealFile, SealError> {
        let path = self.dir.join(SEAL_FILE);
        let bytes = std::fs::read(&path).map_err(|source| SealError::Io { path: path.clone(), source })?;
        serde_json::from_slice(&bytes).map_err(|_| SealError::Malformed(path))
    }

    /// Current seal status.
    pub fn status(&self) -> Status {
        let mode = match self.mode {
            SealConfig::Shamir => Mode::Shamir,
            SealConfig::Passphrase { .. } => Mode::Passphrase,
            SealConfig::Pkcs11(_) => Mode::Pkcs11,
        };
        let none = Status {
            initialized: false,
            sealed: true,
            threshold: 0,
            progress: 0,
            root_key_id: String::new(),
            mode,
            unavailable: None,
            older: Vec::new(),
        };
        match &*self.read() {
            State::Uninitialized => none,
            State::Unavailable { reason, initialized } => {
                Status { initialized: *initialized, unavailable: Some(reason.clone()), ..none }
            }
            State::Sealed { file, digests, .. } => Status {
                initialized: true,
                sealed: true,
                threshold: file.shamir.as_ref().map_or(0, |s| s.threshold),
                progress: digests.len() as u32,
                root_key_id: file.root_key_id.clone(),
                ..none
            },
            State::Unsealed { ring, .. } => Status {
                initialized: true,
                sealed: false,
                root_key_id: ring.current.id().to_owned(),
                older: ring.older_ids(),
                ..none
            },
        }
    }

    /// Creates the root key in Shamir mode and returns the shares (once).
    /// The threshold is at least [`MIN_THRESHOLD`].
    pub fn init_shamir(&self, shares: u32, threshold: u32) -> Result<(String, UnsealShares), SealError> {
        if self.mode != SealConfig::Shamir {
            return Err(SealError::WrongMode(
                "Init is for seal mode \"shamir\"; in passphrase and pkcs11 mode root-keyd initialises itself",
            ));
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
            pkcs11: None,
            older: Vec::new(),
        };
        self.persist(&file)?;
        let id = file.root_key_id.clone();
        *state = State::Sealed { file: Box::new(file), submitted: Vec::new(), digests: BTreeSet::new() };
        Ok((id, share_list))
    }

    /// Takes one Shamir share. Unseals once the threshold is reached.
    pub fn unseal_share(&self, share: &[u8]) -> Result<Status, SealError> {
        if self.mode != SealConfig::Shamir {
            return Err(SealError::WrongMode(
                "Unseal is for seal mode \"shamir\"; in passphrase and pkcs11 mode root-keyd unseals itself",
            ));
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
                        let ring = open_ring(&unseal_key, file).ok_or(SealError::BadShare)?;
                        Ok((ring, unseal_key))
                    });
                match outcome {
                    Ok((ring, kek)) => {
                        *state = State::Unsealed { ring: Arc::new(ring), kek: Some(Arc::new(kek)) };
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
            pkcs11: None,
            older: Vec::new(),
        };
        self.persist(&file)?;
        *self.write() = State::Sealed { file: Box::new(file), submitted: Vec::new(), digests: BTreeSet::new() };
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
        let ring = open_ring(&kek, file).ok_or_else(|| SealError::BadPassphrase(passphrase_file.to_owned()))?;
        *state = State::Unsealed { ring: Arc::new(ring), kek: Some(Arc::new(kek)) };
        tracing::info!("root key unsealed with the passphrase");
        Ok(())
    }

    fn persist(&self, file: &SealFile) -> Result<(), SealError> {
        let bytes = serde_json::to_vec_pretty(file).map_err(|_| SealError::Crypto)?;
        skm_runtime::files::write_private_atomic(&self.dir.join(SEAL_FILE), &bytes)
            .map_err(|e| SealError::Io { path: e.path, source: e.source })
    }
}

/// Opens every root key version of `file` with `kek`, current first;
/// `None` if any doesn't open (wrong key, or a tampered file).
fn open_ring(kek: &Secret32, file: &SealFile) -> Option<Ring> {
    let open = |id: &str, sealed: &str| {
        let sealed = hex::decode(sealed).ok()?;
        seal::unseal_root_key(kek, id, &sealed).ok().map(Root::Memory)
    };
    let mut keys = vec![open(&file.root_key_id, &file.sealed_root_key)?];
    for older in &file.older {
        keys.push(open(&older.root_key_id, &older.sealed_root_key)?);
    }
    Ring::new(keys)
}

fn sealed_state(file: SealFile, path: &Path) -> Result<State, SealError> {
    let modes = [file.shamir.is_some(), file.passphrase.is_some(), file.pkcs11.is_some()];
    let one_mode = modes.iter().filter(|m| **m).count() == 1;
    let token = file.pkcs11.is_some();
    let sealed_as_mode = std::iter::once(&file.sealed_root_key)
        .chain(file.older.iter().map(|o| &o.sealed_root_key))
        .all(|sealed| sealed.is_empty() == token);
    if file.format != 1 || !one_mode || !sealed_as_mode {
        return Err(SealError::Malformed(path.to_owned()));
    }
    Ok(State::Sealed { file: Box::new(file), submitted: Vec::new(), digests: BTreeSet::new() })
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

    fn material(root: &Root) -> [u8; 32] {
        match root {
            Root::Memory(key) => *key.danger_material().danger_expose(),
            Root::Token(_) => panic!("a token key has no material here"),
        }
    }

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
        assert_eq!(material(&again.root_key().unwrap()), material(&root));
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
        assert_eq!(material(&second.root_key().unwrap()), material(&root));
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

    #[test]
    fn a_token_that_cannot_be_opened_leaves_root_keyd_up_and_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_library = dir.path().join("libnot-pkcs11.so");
        std::fs::write(&not_a_library, b"not a shared object").unwrap();
        let pin = dir.path().join("pin");
        std::fs::write(&pin, "1234\n").unwrap();
        let token = TokenConfig {
            module: not_a_library,
            token_label: "skm".into(),
            slot: None,
            pin_file: pin,
            key_label: "skm-root-key".into(),
        };
        let sealer = Sealer::open(&dir.path().join("data"), SealConfig::Pkcs11(token)).unwrap();
        let status = sealer.status();
        assert!(status.sealed && !status.initialized, "{status:?}");
        assert_eq!(status.mode, Mode::Pkcs11);
        let reason = status.unavailable.unwrap();
        assert!(reason.contains("libnot-pkcs11.so"), "{reason}");
        let e = sealer.root_key().unwrap_err();
        assert!(matches!(e, SealError::Token(_)), "{e}");
        assert!(matches!(sealer.init_shamir(3, 2), Err(SealError::WrongMode(_))));
        assert!(!dir.path().join("data").join(SEAL_FILE).exists(), "nothing recorded");
    }

    #[test]
    fn a_seal_file_names_exactly_one_mode_and_a_token_file_holds_no_sealed_key() {
        let path = Path::new("root-key.seal");
        let file = |sealed: &str, pkcs11: bool, shamir: bool| SealFile {
            format: 1,
            root_key_id: "00".into(),
            sealed_root_key: sealed.into(),
            shamir: shamir.then(|| ShamirFile { threshold: 2, shares: 3, share_digests: vec![] }),
            passphrase: None,
            pkcs11: pkcs11.then(|| Pkcs11File { token_label: "t".into(), key_label: "k".into() }),
            older: Vec::new(),
        };
        assert!(sealed_state(file("", true, false), path).is_ok());
        assert!(sealed_state(file("abcd", false, true), path).is_ok());
        for bad in [file("abcd", true, false), file("", false, true), file("", true, true), file("abcd", false, false)]
        {
            assert!(matches!(sealed_state(bad, path), Err(SealError::Malformed(_))));
        }
    }

    #[test]
    fn a_rotated_root_key_keeps_the_old_version_until_it_is_destroyed_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("pass");
        std::fs::write(&pass, "correct horse battery\n").unwrap();
        let data = dir.path().join("data");
        let mode = || SealConfig::Passphrase { file: pass.clone() };
        let sealer = Sealer::open(&data, mode()).unwrap();
        let first = sealer.root_key().unwrap();
        let system_key = Secret32::generate().unwrap();
        let wrapped = first.wrap_system_key(1, &system_key).unwrap();

        let (second_id, older) = sealer.rotate().unwrap();
        assert_ne!(second_id, first.id());
        assert_eq!(older, vec![first.id().to_owned()]);
        assert_eq!(sealer.root_key().unwrap().id(), second_id);
        assert_eq!(sealer.status().older, older);
        // The old version still unwraps what it wrapped; the new one wraps.
        let old = sealer.root_key_version(first.id()).unwrap();
        assert_eq!(old.unwrap_system_key(1, &wrapped).unwrap().danger_expose(), system_key.danger_expose());
        let rewrapped = sealer.root_key().unwrap().wrap_system_key(1, &system_key).unwrap();
        assert!(sealer.root_key().unwrap().unwrap_system_key(1, &wrapped).is_err(), "bound to its root key");

        // Both versions come back after a restart (sealed under the same KEK).
        drop((sealer, old));
        let again = Sealer::open(&data, mode()).unwrap();
        assert_eq!(again.root_key().unwrap().id(), second_id);
        let old = again.root_key_version(first.id()).unwrap();
        assert_eq!(old.unwrap_system_key(1, &wrapped).unwrap().danger_expose(), system_key.danger_expose());

        // Destroyed once nothing needs it: gone from memory and from the file.
        let keep: BTreeSet<String> = [second_id.clone()].into();
        assert_eq!(again.destroy_older(&keep).unwrap(), vec![first.id().to_owned()]);
        assert!(again.destroy_older(&keep).unwrap().is_empty(), "idempotent");
        assert!(matches!(again.root_key_version(first.id()), Err(SealError::UnknownRootKey { .. })));
        drop(again);
        let last = Sealer::open(&data, mode()).unwrap();
        assert!(last.status().older.is_empty());
        assert!(!std::fs::read_to_string(data.join(SEAL_FILE)).unwrap().contains(first.id()));
        let current = last.root_key().unwrap();
        assert_eq!(current.unwrap_system_key(1, &rewrapped).unwrap().danger_expose(), system_key.danger_expose());
        // The current version is never destroyed.
        assert!(last.destroy_older(&BTreeSet::new()).unwrap().is_empty());
        assert_eq!(last.root_key().unwrap().id(), second_id);
    }

    #[test]
    fn shamir_rotation_needs_no_shares_and_the_same_shares_unseal_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::open(dir.path(), SealConfig::Shamir).unwrap();
        assert!(matches!(sealer.rotate(), Err(SealError::NotInitialized)));
        let (first, shares) = sealer.init_shamir(3, 2).unwrap();
        assert!(matches!(sealer.rotate(), Err(SealError::Sealed)));
        sealer.unseal_share(&shares[0]).unwrap();
        sealer.unseal_share(&shares[1]).unwrap();
        let (second, older) = sealer.rotate().unwrap();
        assert_eq!(older, vec![first.clone()]);
        drop(sealer);
        let again = Sealer::open(dir.path(), SealConfig::Shamir).unwrap();
        again.unseal_share(&shares[2]).unwrap();
        again.unseal_share(&shares[0]).unwrap();
        assert_eq!(again.root_key().unwrap().id(), second);
        assert!(again.root_key_version(&first).is_ok());
    }

    #[test]
    fn rekey_issues_new_shares_for_every_root_key_version_and_retires_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::open(dir.path(), SealConfig::Shamir).unwrap();
        let (first, old) = sealer.init_shamir(5, 3).unwrap();
        assert!(matches!(sealer.rekey_start(3, 2), Err(SealError::Sealed)), "only while unsealed");
        for share in &old[..3] {
            sealer.unseal_share(share).unwrap();
        }
        let (second, _) = sealer.rotate().unwrap();
        assert!(matches!(sealer.rekey_start(3, 1), Err(SealError::ThresholdTooLow(1))));
        assert!(matches!(sealer.rekey_start(2, 3), Err(SealError::Shamir(_))));
        let (nonce, needed) = sealer.rekey_start(3, 2).unwrap();
        assert_eq!(needed, 3);
        assert!(matches!(sealer.rekey_submit("another", &old[0]), Err(SealError::NoRekey)));
        let other = tempfile::tempdir().unwrap();
        let foreign = Sealer::open(other.path(), SealConfig::Shamir).unwrap().init_shamir(3, 2).unwrap().1;
        assert!(matches!(sealer.rekey_submit(&nonce, &foreign[0]), Err(SealError::BadShare)));
        assert_eq!(sealer.rekey_submit(&nonce, &old[4]).unwrap(), (1, 3, None));
        assert_eq!(sealer.rekey_submit(&nonce, &old[4]).unwrap(), (1, 3, None), "a repeat doesn't count");
        assert_eq!(sealer.rekey_submit(&nonce, &old[1]).unwrap().0, 2);
        let (_, _, new) = sealer.rekey_submit(&nonce, &old[2]).unwrap();
        let new = new.unwrap();
        assert_eq!(new.len(), 3);
        assert!(matches!(sealer.rekey_submit(&nonce, &old[0]), Err(SealError::NoRekey)), "done");
        assert!(!sealer.status().sealed, "serving on");

        // After a restart: old shares are refused, k-1 new ones don't
        // unseal, k do, and both root key versions come back.
        drop(sealer);
        let again = Sealer::open(dir.path(), SealConfig::Shamir).unwrap();
        assert!(matches!(again.unseal_share(&old[0]), Err(SealError::BadShare)));
        assert_eq!(again.unseal_share(&new[2]).unwrap().threshold, 2);
        assert!(again.status().sealed, "k-1 new shares are not enough");
        assert!(!again.unseal_share(&new[0]).unwrap().sealed);
        assert_eq!(again.root_key().unwrap().id(), second);
        assert!(again.root_key_version(&first).is_ok());
        // A rotation after the rekey is sealed under the new unseal key.
        let (third, _) = again.rotate().unwrap();
        drop(again);
        let last = Sealer::open(dir.path(), SealConfig::Shamir).unwrap();
        last.unseal_share(&new[1]).unwrap();
        last.unseal_share(&new[2]).unwrap();
        assert_eq!(last.root_key().unwrap().id(), third);
        assert_eq!(last.status().older, vec![second, first]);
    }

    #[test]
    fn rekey_is_refused_outside_shamir_mode() {
        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("pass");
        std::fs::write(&pass, "correct horse battery\n").unwrap();
        let sealer = Sealer::open(&dir.path().join("data"), SealConfig::Passphrase { file: pass }).unwrap();
        assert!(matches!(sealer.rekey_start(3, 2), Err(SealError::WrongMode(_))));
    }
}

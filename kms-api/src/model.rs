//! kms-api's domain types: keystores, keys and secrets, with the limits of
//! DESIGN §10.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use skm_crypto::asym::{KeyAlgorithm, PrivateKey};
use skm_crypto::mac::{MacAlgorithm, MacKey};
use skm_crypto::rsa_oaep::{DecryptingKey, OaepKeySize};
use skm_crypto::{Id, Secret32};
use zeroize::Zeroizing;

use crate::access::{KnownCert, Policy};

/// Largest plaintext Encrypt takes.
pub const MAX_PLAINTEXT: usize = 32 * 1024;
/// Largest caller AAD.
pub const MAX_AAD: usize = 8 * 1024;
/// Largest ciphertext Decrypt takes.
pub const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + skm_crypto::user::OVERHEAD;
/// Largest secret value.
pub const MAX_SECRET: usize = 32 * 1024;
/// Largest message Sign and Verify take.
pub const MAX_SIGN_MESSAGE: usize = 4 * 1024;
/// Largest signature Verify takes (ML-DSA-87's are 4,627 bytes, RSA-4096's
/// 512).
pub const MAX_SIGNATURE: usize = 5 * 1024;
/// Largest message GenerateMac and VerifyMac take.
pub const MAX_MAC_MESSAGE: usize = 4 * 1024;
/// Largest MAC VerifyMac takes (HMAC-SHA-512's full tag).
pub const MAX_MAC: usize = 64;
/// Largest RSA ciphertext Decrypt takes (RSA-4096's modulus).
pub const MAX_RSA_CIPHERTEXT: usize = 512;
/// Most items in one batch call.
pub const MAX_BATCH: usize = 100;
/// Longest keystore or key name.
pub const MAX_NAME: usize = 64;
/// Longest automatic rotation period, in days (100 years).
pub const MAX_ROTATION_DAYS: u32 = 36_500;
/// Shortest and longest deletion waiting period, in days.
pub const DELETION_DAYS: std::ops::RangeInclusive<u32> = 7..=30;
/// Deletion waiting period when none is given.
pub const DEFAULT_DELETION_DAYS: u32 = 7;
/// Seconds in a day.
pub const DAY: i64 = 86_400;
/// Versions a secret keeps when its creator names no `max_versions`
/// (Vault KV v2's default): the oldest go once there are more.
pub const DEFAULT_SECRET_VERSIONS: u32 = 10;
/// Most versions a secret may keep.
pub const MAX_SECRET_VERSIONS: u32 = 1_000;
/// Versions a key may have when the configuration names no
/// `max_key_versions`: keys keep every version (old ciphertexts must stay
/// decryptable), so rotation stops at the cap. Every version of a key is in
/// memory while the key is cached.
pub const DEFAULT_MAX_KEY_VERSIONS: u32 = 1_000;
/// The largest `max_key_versions` the configuration accepts.
pub const MAX_KEY_VERSIONS: u32 = 10_000;
/// Versions a Verify without `key_version` tries, newest first; an older
/// version must be named.
pub const VERIFY_ANY_VERSIONS: usize = 10;

/// Checks a keystore or key name: 1..=64 of `[A-Za-z0-9._-]`.
pub fn check_name(field: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("{field} must be 1..={MAX_NAME} characters; got {}", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("{field} may contain only A-Z a-z 0-9 . _ -; found {c:?}"));
    }
    Ok(())
}

/// A keystore: a set of keys under one access policy, with its own client
/// CA for certificate authentication.
#[derive(Clone, Debug)]
pub struct Keystore {
    /// Id.
    pub id: Id,
    /// Unique name.
    pub name: String,
    /// Who may use the keys.
    pub policy: Policy,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// The keystore's client CA.
    pub ca: KeystoreCaFiles,
    /// Client certificates issued or registered.
    pub certs: Vec<KnownCert>,
    /// Another unique name applications may address it by (the REST
    /// API's compatible paths), see [`check_alias`].
    pub alias: Option<String>,
}

/// An alias: 1..=[`MAX_NAME`] characters of `[A-Za-z0-9._-]`, and not 32
/// hex digits (so it can't be read as an id).
pub fn check_alias(field: &str, alias: &str) -> Result<(), String> {
    check_name(field, alias)?;
    if alias.len() == 32 && alias.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{field}: 32 hex digits read as an id; choose another alias"));
    }
    Ok(())
}

/// A keystore's client CA as stored: certificate and (secret) key.
#[derive(Clone)]
pub struct KeystoreCaFiles {
    /// CA certificate, PEM.
    pub cert_pem: String,
    /// CA certificate, DER.
    pub cert_der: rustls_pki_types::CertificateDer<'static>,
    /// CA private key, PEM (only ever stored sealed).
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for KeystoreCaFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeystoreCaFiles").field("key_pem", &"<redacted>").finish_non_exhaustive()
    }
}

/// Lifetime of a keystore's client CA, in days.
pub const KEYSTORE_CA_DAYS: u32 = 3650;
/// Longest client certificate lifetime, in days.
pub const MAX_CERT_DAYS: u32 = 3650;

/// What a key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// AES-256-GCM-SIV.
    Aes256,
    /// A signing key.
    Asymmetric(KeyAlgorithm),
    /// An HMAC key.
    Hmac(MacAlgorithm),
    /// An RSA encryption key (RSAES-OAEP-SHA-256).
    RsaOaep(OaepKeySize),
    /// A secret value.
    Secret,
}

impl KeyKind {
    /// Stable name used in records and output.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Aes256 => "aes-256",
            KeyKind::Asymmetric(alg) => alg.name(),
            KeyKind::Hmac(alg) => alg.name(),
            KeyKind::RsaOaep(size) => size.name(),
            KeyKind::Secret => "secret",
        }
    }

    /// Inverse of [`KeyKind::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "aes-256" => Some(KeyKind::Aes256),
            "secret" => Some(KeyKind::Secret),
            other => KeyAlgorithm::from_name(other)
                .map(KeyKind::Asymmetric)
                .or_else(|| MacAlgorithm::from_name(other).map(KeyKind::Hmac))
                .or_else(|| OaepKeySize::from_name(other).map(KeyKind::RsaOaep)),
        }
    }
}

/// Where a key's material comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyOrigin {
    /// SKM generates every version.
    #[default]
    Skm,
    /// Every version is key material imported by its owner (bring your own
    /// key): the key starts without material and rotates only by importing
    /// new material.
    External,
}

impl KeyOrigin {
    /// Stable name used in records and output.
    pub fn name(self) -> &'static str {
        match self {
            KeyOrigin::Skm => "skm",
            KeyOrigin::External => "external",
        }
    }

    /// Inverse of [`KeyOrigin::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        [KeyOrigin::Skm, KeyOrigin::External].into_iter().find(|o| o.name() == name)
    }
}

/// How long import parameters (the wrapping key and its token) stay valid:
/// 24 hours, as in AWS KMS.
pub const IMPORT_PARAMETERS_SECONDS: i64 = DAY;

/// A key's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Usable.
    Enabled,
    /// A key of origin external that has no material yet: every use
    /// refused until its first import.
    PendingImport,
    /// Every use refused.
    Disabled,
    /// Every use refused; destroyed at `deletion_at` unless cancelled.
    PendingDeletion {
        /// Seconds since the epoch.
        deletion_at: i64,
    },
}

/// One version of a key: its material and when it was made.
#[derive(Debug)]
pub struct Version<M> {
    /// 1, 2, ...
    pub version: u32,
    /// The material.
    pub material: M,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
}

/// A key's retained versions: consecutive numbers, ascending; never empty.
/// Each version is boxed, so when the list grows only pointers move: a
/// reallocation never leaves a copy of key material behind in freed memory.
#[derive(Debug)]
pub struct Versions<M>(Vec<Box<Version<M>>>);

impl<M> Versions<M> {
    /// Version 1.
    pub fn first(material: M, created_at: i64) -> Self {
        Self(vec![Box::new(Version { version: 1, material, created_at })])
    }

    /// Versions read back from a record; `None` when there are none or
    /// their numbers are not consecutive and ascending.
    pub fn from_vec(versions: Vec<Version<M>>) -> Option<Self> {
        let consecutive = versions.windows(2).all(|w| w[0].version.checked_add(1) == Some(w[1].version));
        (!versions.is_empty() && consecutive).then(|| Self(versions.into_iter().map(Box::new).collect()))
    }

    /// The version that encrypts, signs or is returned by default.
    pub fn newest(&self) -> &Version<M> {
        match self.0.last() {
            Some(v) => v,
            None => unreachable!("Versions is never empty"),
        }
    }

    /// The oldest retained version.
    pub fn oldest(&self) -> &Version<M> {
        match self.0.first() {
            Some(v) => v,
            None => unreachable!("Versions is never empty"),
        }
    }

    /// How many versions are retained.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never: there is always a version.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// A retained version.
    pub fn get(&self, version: u32) -> Option<&Version<M>> {
        let index = version.checked_sub(self.oldest().version)?;
        self.0.get(usize::try_from(index).ok()?).map(|v| &**v)
    }

    /// `version`, or the newest when it is 0.
    pub fn get_or_newest(&self, version: u32) -> Option<&Version<M>> {
        if version == 0 { Some(self.newest()) } else { self.get(version) }
    }

    /// Every version, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Version<M>> {
        self.0.iter().map(|v| &**v)
    }

    /// Adds the next version; returns its number.
    pub fn push(&mut self, material: M, created_at: i64) -> u32 {
        let version = self.newest().version + 1;
        self.0.push(Box::new(Version { version, material, created_at }));
        version
    }

    /// Drops the oldest versions until at most `keep` (at least 1) remain.
    pub fn keep_newest(&mut self, keep: usize) {
        let excess = self.0.len().saturating_sub(keep.max(1));
        self.0.drain(..excess);
    }
}

/// A secret's value.
pub type SecretValue = Zeroizing<Vec<u8>>;

/// Every version's material of a key, typed by what the key is. Each
/// variant's versions sit behind an `Arc`, so a typed view of a cached key
/// ([`crate::kms`]) holds them without matching again.
pub enum Material {
    /// AES-256-GCM-SIV keys.
    Aes256(Arc<Versions<Secret32>>),
    /// Signing keys of one algorithm.
    Signing {
        /// The algorithm of every version.
        algorithm: KeyAlgorithm,
        /// The versions.
        versions: Arc<Versions<PrivateKey>>,
    },
    /// HMAC keys of one algorithm.
    Mac {
        /// The algorithm of every version.
        algorithm: MacAlgorithm,
        /// The versions.
        versions: Arc<Versions<MacKey>>,
    },
    /// RSA encryption keys of one size.
    Decrypting {
        /// The size of every version.
        size: OaepKeySize,
        /// The versions.
        versions: Arc<Versions<DecryptingKey>>,
    },
    /// Secret values.
    Secret(Arc<Versions<SecretValue>>),
    /// No version yet: a key of origin external before its first import.
    Awaiting(KeyKind),
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Material::{}(<redacted>)", self.kind().name())
    }
}

/// New material for one version, before it joins a key.
pub enum Fresh {
    /// An AES key.
    Aes256(Secret32),
    /// A signing key (its public half inside; boxed: far larger than the
    /// others).
    Signing(Box<PrivateKey>),
    /// An HMAC key (boxed: its parsed backend state is over a kilobyte).
    Mac(Box<MacKey>),
    /// An RSA encryption key (boxed, like a signing key).
    Decrypting(Box<DecryptingKey>),
    /// A secret value.
    Secret(SecretValue),
}

/// Key material given for import does not fit the key: the message names
/// the expected form, never the material.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ImportRefused(pub String);

/// Fresh key material failed (RNG or key generation).
#[derive(Debug, thiserror::Error)]
#[error("key generation failed")]
pub struct GenerateError;

impl Fresh {
    /// Fresh material for `kind` (not for secrets, whose value is given).
    /// RSA generation takes up to seconds: call it off the async threads.
    pub fn generate(kind: KeyKind) -> Result<Self, GenerateError> {
        match kind {
            KeyKind::Aes256 => Ok(Fresh::Aes256(Secret32::generate().map_err(|_| GenerateError)?)),
            KeyKind::Asymmetric(alg) => {
                Ok(Fresh::Signing(Box::new(PrivateKey::generate(alg).map_err(|_| GenerateError)?)))
            }
            KeyKind::Hmac(alg) => Ok(Fresh::Mac(Box::new(MacKey::generate(alg).map_err(|_| GenerateError)?))),
            KeyKind::RsaOaep(size) => {
                Ok(Fresh::Decrypting(Box::new(DecryptingKey::generate(size).map_err(|_| GenerateError)?)))
            }
            KeyKind::Secret => Err(GenerateError),
        }
    }

    /// The key type this material makes.
    pub fn kind(&self) -> KeyKind {
        match self {
            Fresh::Aes256(_) => KeyKind::Aes256,
            Fresh::Signing(private) => KeyKind::Asymmetric(private.algorithm()),
            Fresh::Mac(key) => KeyKind::Hmac(key.algorithm()),
            Fresh::Decrypting(key) => KeyKind::RsaOaep(key.size()),
            Fresh::Secret(_) => KeyKind::Secret,
        }
    }

    /// Imported material for a key of `kind`: the raw 32 bytes of an
    /// AES-256 key, the raw bytes of an HMAC key, or an unencrypted PKCS#8
    /// DER private key for a signing or RSA encryption key.
    pub fn import(kind: KeyKind, raw: Zeroizing<Vec<u8>>) -> Result<Self, ImportRefused> {
        check_importable(kind)?;
        let refused = |form: String| ImportRefused(format!("key material for {} key must be {form}", a_kind(kind)));
        match kind {
            KeyKind::Aes256 => {
                let len = raw.len();
                let mut raw = raw;
                Secret32::from_slice_wiping(&mut raw)
                    .map(Fresh::Aes256)
                    .ok_or_else(|| refused(format!("the 32 raw bytes of the key; got {len} bytes")))
            }
            KeyKind::Hmac(alg) => {
                let len = raw.len();
                MacKey::from_bytes(alg, raw).map(|k| Fresh::Mac(Box::new(k))).map_err(|_| {
                    let lengths = alg.key_lengths();
                    refused(format!("{}..={} raw bytes; got {len} bytes", lengths.start(), lengths.end()))
                })
            }
            KeyKind::Asymmetric(alg) => PrivateKey::from_pkcs8(alg, &raw)
                .map(|k| Fresh::Signing(Box::new(k)))
                .map_err(|_| refused(format!("an unencrypted PKCS#8 DER {} private key", alg.name()))),
            KeyKind::RsaOaep(size) => {
                DecryptingKey::from_pkcs8(size, &raw).map(|k| Fresh::Decrypting(Box::new(k))).map_err(|_| {
                    refused(format!("an unencrypted PKCS#8 DER RSA private key of {} bits", size.modulus_len() * 8))
                })
            }
            KeyKind::Secret => {
                Err(ImportRefused("a secret's value is stored with UpdateSecret, not imported".to_owned()))
            }
        }
    }
}

/// Whether keys of `kind` take imported material (every type but ML-DSA,
/// whose import SKM does not offer yet, and secrets, which are stored).
pub fn check_importable(kind: KeyKind) -> Result<(), ImportRefused> {
    match kind {
        KeyKind::Asymmetric(KeyAlgorithm::MlDsa44 | KeyAlgorithm::MlDsa65 | KeyAlgorithm::MlDsa87)
        | KeyKind::Secret => Err(ImportRefused(format!(
            "{} keys can't be imported (SKM imports aes-256, hmac-*, ed25519, ecdsa-*, rsa-* and rsa-oaep-* keys)",
            kind.name()
        ))),
        _ => Ok(()),
    }
}

/// "an aes-256", "an hmac-sha256", "a secret": a key type's name with its
/// article, as it is read aloud.
pub fn a_kind(kind: KeyKind) -> String {
    let name = kind.name();
    if kind == KeyKind::Secret { format!("a {name}") } else { format!("an {name}") }
}

/// The material given is not of the key's kind.
#[derive(Debug, thiserror::Error)]
#[error("new material does not fit the key's type")]
pub struct KindMismatch;

impl Material {
    /// Version 1 of a new key.
    pub fn first(fresh: Fresh, now: i64) -> Self {
        match fresh {
            Fresh::Aes256(k) => Material::Aes256(Arc::new(Versions::first(k, now))),
            Fresh::Signing(private) => {
                Material::Signing { algorithm: private.algorithm(), versions: Arc::new(Versions::first(*private, now)) }
            }
            Fresh::Mac(key) => {
                Material::Mac { algorithm: key.algorithm(), versions: Arc::new(Versions::first(*key, now)) }
            }
            Fresh::Decrypting(key) => {
                Material::Decrypting { size: key.size(), versions: Arc::new(Versions::first(*key, now)) }
            }
            Fresh::Secret(v) => Material::Secret(Arc::new(Versions::first(v, now))),
        }
    }

    /// What the key is.
    pub fn kind(&self) -> KeyKind {
        match self {
            Material::Aes256(_) => KeyKind::Aes256,
            Material::Signing { algorithm, .. } => KeyKind::Asymmetric(*algorithm),
            Material::Mac { algorithm, .. } => KeyKind::Hmac(*algorithm),
            Material::Decrypting { size, .. } => KeyKind::RsaOaep(*size),
            Material::Secret(_) => KeyKind::Secret,
            Material::Awaiting(kind) => *kind,
        }
    }

    /// Number and creation time of every version, oldest first.
    pub fn version_infos(&self) -> Vec<(u32, i64)> {
        fn infos<M>(v: &Versions<M>) -> Vec<(u32, i64)> {
            v.iter().map(|v| (v.version, v.created_at)).collect()
        }
        match self {
            Material::Aes256(v) => infos(v),
            Material::Signing { versions, .. } => infos(versions),
            Material::Mac { versions, .. } => infos(versions),
            Material::Decrypting { versions, .. } => infos(versions),
            Material::Secret(v) => infos(v),
            Material::Awaiting(_) => Vec::new(),
        }
    }

    /// Retained versions: oldest and newest number (`1..=0`, empty, before
    /// an external key's first import).
    pub fn version_range(&self) -> std::ops::RangeInclusive<u32> {
        fn range<M>(v: &Versions<M>) -> std::ops::RangeInclusive<u32> {
            v.oldest().version..=v.newest().version
        }
        match self {
            Material::Aes256(v) => range(v),
            Material::Signing { versions, .. } => range(versions),
            Material::Mac { versions, .. } => range(versions),
            Material::Decrypting { versions, .. } => range(versions),
            Material::Secret(v) => range(v),
            // Deliberately empty: no version yet.
            Material::Awaiting(_) => std::ops::RangeInclusive::new(1, 0),
        }
    }

    /// How many versions are retained.
    pub fn version_count(&self) -> usize {
        match self {
            Material::Aes256(v) => v.len(),
            Material::Signing { versions, .. } => versions.len(),
            Material::Mac { versions, .. } => versions.len(),
            Material::Decrypting { versions, .. } => versions.len(),
            Material::Secret(v) => v.len(),
            Material::Awaiting(_) => 0,
        }
    }

    /// Drops the oldest versions until at most `keep` remain. The key must
    /// be freshly read (not shared with the cache).
    pub fn keep_newest(&mut self, keep: usize) -> Result<(), KindMismatch> {
        fn prune<M>(versions: &mut Arc<Versions<M>>, keep: usize) -> Result<(), KindMismatch> {
            Arc::get_mut(versions).ok_or(KindMismatch)?.keep_newest(keep);
            Ok(())
        }
        match self {
            Material::Aes256(v) => prune(v, keep),
            Material::Signing { versions, .. } => prune(versions, keep),
            Material::Mac { versions, .. } => prune(versions, keep),
            Material::Decrypting { versions, .. } => prune(versions, keep),
            Material::Secret(v) => prune(v, keep),
            Material::Awaiting(_) => Ok(()),
        }
    }

    /// The newest version's number; 0 before an external key's first
    /// import.
    pub fn newest_version(&self) -> u32 {
        match self {
            Material::Aes256(v) => v.newest().version,
            Material::Signing { versions, .. } => versions.newest().version,
            Material::Mac { versions, .. } => versions.newest().version,
            Material::Decrypting { versions, .. } => versions.newest().version,
            Material::Secret(v) => v.newest().version,
            Material::Awaiting(_) => 0,
        }
    }

    /// Adds `fresh` as the next version; returns its number. The key must
    /// be freshly read (not shared with the cache).
    pub fn push(&mut self, fresh: Fresh, now: i64) -> Result<u32, KindMismatch> {
        fn add<M>(versions: &mut Arc<Versions<M>>, m: M, now: i64) -> Result<u32, KindMismatch> {
            Ok(Arc::get_mut(versions).ok_or(KindMismatch)?.push(m, now))
        }
        match (self, fresh) {
            (Material::Aes256(v), Fresh::Aes256(k)) => add(v, k, now),
            (Material::Signing { algorithm, versions }, Fresh::Signing(private))
                if private.algorithm() == *algorithm =>
            {
                add(versions, *private, now)
            }
            (Material::Mac { algorithm, versions }, Fresh::Mac(key)) if key.algorithm() == *algorithm => {
                add(versions, *key, now)
            }
            (Material::Decrypting { size, versions }, Fresh::Decrypting(key)) if key.size() == *size => {
                add(versions, *key, now)
            }
            (Material::Secret(v), Fresh::Secret(value)) => add(v, value, now),
            (this @ Material::Awaiting(_), fresh) if fresh.kind() == this.kind() => {
                *this = Material::first(fresh, now);
                Ok(1)
            }
            _ => Err(KindMismatch),
        }
    }
}

/// A key (or secret) with all its retained versions.
#[derive(Debug)]
pub struct Key {
    /// Id.
    pub id: Id,
    /// Owning keystore.
    pub keystore_id: Id,
    /// Name, unique in the keystore.
    pub name: String,
    /// Lifecycle state.
    pub state: KeyState,
    /// Generated by SKM or imported.
    pub origin: KeyOrigin,
    /// Every retained version's material.
    pub material: Material,
    /// Automatic rotation period in days; 0 = off.
    pub rotation_period_days: u32,
    /// Next automatic rotation (seconds since the epoch); 0 = none.
    pub next_rotation_at: i64,
    /// A secret: how many versions it keeps (the oldest go past it). A
    /// key: 0, it keeps every version up to kms-api's `max_key_versions`.
    pub max_versions: u32,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// Last use by an application (in memory; persisted by maintenance).
    pub last_used_at: AtomicI64,
}

impl Key {
    /// What the key is.
    pub fn kind(&self) -> KeyKind {
        self.material.kind()
    }

    /// Records a use at `now`.
    pub fn touch(&self, now: i64) {
        self.last_used_at.fetch_max(now, Ordering::Relaxed);
    }

    /// Last use, 0 = never.
    pub fn last_used(&self) -> i64 {
        self.last_used_at.load(Ordering::Relaxed)
    }

    /// How many versions a secret keeps ([`MAX_SECRET_VERSIONS`] for a
    /// secret stored before it had a setting, so that none of the versions
    /// it kept is dropped by its next update); `None` for a key, which
    /// keeps every version.
    pub fn secret_versions_kept(&self) -> Option<u32> {
        match self.kind() {
            KeyKind::Secret if self.max_versions == 0 => Some(MAX_SECRET_VERSIONS),
            KeyKind::Secret => Some(self.max_versions),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("name", "prod-db.v2_x").is_ok());
        assert!(check_name("name", "").unwrap_err().contains("1..=64"));
        assert!(check_name("name", &"a".repeat(65)).unwrap_err().contains("got 65"));
        assert!(check_name("name", "a b").unwrap_err().contains("' '"));
    }

    #[test]
    fn versions_are_consecutive_and_keep_the_newest() {
        let mut v = Versions::first("a", 1);
        assert_eq!(v.push("b", 2), 2);
        assert_eq!(v.push("c", 3), 3);
        v.keep_newest(2);
        assert_eq!(v.iter().map(|v| v.version).collect::<Vec<_>>(), [2, 3]);
        assert!(v.get(1).is_none());
        assert_eq!(v.get(2).map(|v| v.material), Some("b"));
        assert!(v.get(4).is_none());
        v.keep_newest(0);
        assert_eq!(v.iter().map(|v| v.version).collect::<Vec<_>>(), [3], "never empty");
        let gap = vec![
            Version { version: 1, material: (), created_at: 0 },
            Version { version: 3, material: (), created_at: 0 },
        ];
        assert!(Versions::from_vec(gap).is_none());
    }

    #[test]
    fn a_secret_stored_before_max_versions_keeps_up_to_the_most() {
        let secret = |max_versions| Key {
            id: Id::from_bytes([1; 16]),
            keystore_id: Id::from_bytes([2; 16]),
            name: "s".into(),
            state: KeyState::Enabled,
            origin: KeyOrigin::Skm,
            material: Material::Secret(Arc::new(Versions::first(Zeroizing::new(b"v".to_vec()), 0))),
            rotation_period_days: 0,
            next_rotation_at: 0,
            max_versions,
            created_at: 0,
            last_used_at: AtomicI64::new(0),
        };
        // 0 is only ever read from a record older than the setting (create
        // stores the effective number): its next update must drop nothing.
        assert_eq!(secret(0).secret_versions_kept(), Some(MAX_SECRET_VERSIONS));
        assert_eq!(secret(3).secret_versions_kept(), Some(3));
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in [
            KeyKind::Aes256,
            KeyKind::Secret,
            KeyKind::Asymmetric(KeyAlgorithm::Ed25519),
            KeyKind::Asymmetric(KeyAlgorithm::EcdsaP256),
            KeyKind::Asymmetric(KeyAlgorithm::Rsa2048),
            KeyKind::Asymmetric(KeyAlgorithm::Rsa3072),
            KeyKind::Asymmetric(KeyAlgorithm::Rsa4096),
        ]
        .into_iter()
        .chain(KeyAlgorithm::ALL.map(KeyKind::Asymmetric))
        .chain(MacAlgorithm::ALL.map(KeyKind::Hmac))
        .chain(OaepKeySize::ALL.map(KeyKind::RsaOaep))
        {
            assert_eq!(KeyKind::from_name(kind.name()), Some(kind));
        }
    }
}

//! Seal mode "pkcs11": the root key is an AES-256 key object generated
//! inside a PKCS#11 token, non-extractable and sensitive. root-keyd never
//! holds it: it asks the token to encrypt (wrap) and decrypt (unwrap) each
//! system key with AES-256-GCM.
//!
//! Wrapped system key: `iv(12) | AES-256-GCM(system key) | tag(16)`, with
//! the same AAD as the other modes ([`skm_crypto::wrap::system_key_aad`]).
//! The IV is random, drawn by root-keyd; one root key wraps a handful of
//! system key versions in its life, far below GCM's 2³² random-IV bound.
//!
//! What goes wrong with the token (library, slot, PIN, key object) is one
//! [`TokenError`] whose text is the single line root-keyd logs and answers
//! with: root-keyd stays up, NOT_SERVING, until an operator fixes it and
//! restarts it. A wrong PIN is never retried by itself: tokens lock a PIN
//! after a few failures.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use skm_crypto::Secret32;
use zeroize::Zeroizing;

const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;
/// Length of a wrapped system key: IV, 32 bytes, tag.
pub const WRAPPED_LEN: usize = IV_LEN + 32 + 16;

/// `[seal] mode = "pkcs11"` as configured (validated at load).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenConfig {
    /// The PKCS#11 library (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// The label of the token that holds the root key.
    pub token_label: String,
    /// When set, the token must be in this slot.
    pub slot: Option<u64>,
    /// The file whose first line is the user PIN.
    pub pin_file: PathBuf,
    /// The label of the root key object.
    pub key_label: String,
}

/// Why the token can't be used; the text is one line, naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The library did not load or initialise.
    #[error("PKCS#11 library {path}: {reason}")]
    Library {
        /// `seal.module`.
        path: PathBuf,
        /// What the loader or C_Initialize said.
        reason: String,
    },
    /// No token with the configured label (in the configured slot).
    #[error("no PKCS#11 token labelled {label:?}{} is present (tokens present: {present})", slot.map(|s| format!(" in slot {s}")).unwrap_or_default())]
    TokenAbsent {
        /// `seal.token_label`.
        label: String,
        /// `seal.slot`.
        slot: Option<u64>,
        /// What is there instead.
        present: String,
    },
    /// The PIN file's PIN is refused.
    #[error("the PIN in {file} is wrong for token {label:?} (C_Login: {rv:?})")]
    Pin {
        /// `seal.pin_file`.
        file: PathBuf,
        /// The token.
        label: String,
        /// PIN_INCORRECT, PIN_LOCKED, …
        rv: RvError,
    },
    /// The PIN file can't be read or is empty.
    #[error("seal.pin_file {file}: {reason}")]
    PinFile {
        /// `seal.pin_file`.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// The root key object recorded in the seal file is not on the token.
    #[error(
        "token {token:?} holds no key labelled {key:?} with id {id}: the root key is not on this token \
         (another token, or the object was deleted); root-keyd will not create a new one over it"
    )]
    KeyMissing {
        /// The token.
        token: String,
        /// `seal.key_label`.
        key: String,
        /// The root key id root-keyd recorded.
        id: String,
    },
    /// Several objects carry the label.
    #[error("token {token:?} holds {count} secret keys labelled {key:?}; root-keyd needs exactly one")]
    KeyAmbiguous {
        /// The token.
        token: String,
        /// `seal.key_label`.
        key: String,
        /// How many.
        count: usize,
    },
    /// The object is not a non-extractable, sensitive AES-256 key.
    #[error("the key labelled {key:?} on token {token:?} is refused: {why}")]
    KeyUnfit {
        /// The token.
        token: String,
        /// `seal.key_label`.
        key: String,
        /// Which property.
        why: String,
    },
    /// Any other token call failed.
    #[error("token {token:?}: {call}")]
    Call {
        /// The token.
        token: String,
        /// The function and its return value.
        call: String,
    },
}

/// One root key version as a token object, with the logged-in session
/// (shared by every version on the token) that uses it.
pub struct TokenKey {
    id: String,
    key: ObjectHandle,
    session: Arc<Mutex<Session>>,
    // Kept so the library stays loaded and initialised while the session lives.
    _context: Pkcs11,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// A wrap or unwrap the token refused (one opaque error, as elsewhere).
#[derive(Debug, thiserror::Error)]
#[error("the token's AES-GCM operation failed")]
pub struct TokenCryptoError;

impl TokenKey {
    /// Opens the token, logs in and finds the root key objects.
    ///
    /// `recorded`: the root key ids the seal file holds, current first.
    /// Empty (first start): the one object with the label is adopted, or
    /// generated inside the token when there is none. Otherwise each
    /// recorded id must be there. Returns the keys in the order asked and
    /// whether one was created.
    pub fn open(config: &TokenConfig, recorded: &[String]) -> Result<(Vec<Self>, bool), TokenError> {
        let library = |reason: String| TokenError::Library { path: config.module.clone(), reason };
        let context = Pkcs11::new(&config.module).map_err(|e| library(e.to_string()))?;
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(library(format!("C_Initialize: {e}"))),
        }
        let label = &config.token_label;
        let call = |e: CkError| TokenError::Call { token: label.clone(), call: short(&e) };
        let slot = find_slot(&context, config)?;
        let session = context.open_rw_session(slot).map_err(call)?;
        let pin = read_pin(config)?;
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(rv @ (RvError::PinIncorrect | RvError::PinLocked | RvError::PinExpired), _)) => {
                return Err(TokenError::Pin { file: config.pin_file.clone(), label: label.clone(), rv });
            }
            Err(e) => return Err(call(e)),
        }
        let find = |id: Option<&[u8]>| {
            let mut template =
                vec![Attribute::Class(ObjectClass::SECRET_KEY), Attribute::Label(config.key_label.clone().into())];
            template.extend(id.map(|id| Attribute::Id(id.to_vec())));
            session.find_objects(&template).map_err(call)
        };
        let missing = |id: &str| TokenError::KeyMissing {
            token: label.clone(),
            key: config.key_label.clone(),
            id: id.to_owned(),
        };
        let ambiguous =
            |count: usize| TokenError::KeyAmbiguous { token: label.clone(), key: config.key_label.clone(), count };
        let mut handles = Vec::new();
        let mut created = false;
        if recorded.is_empty() {
            match find(None)?.as_slice() {
                [key] => handles.push((*key, None)),
                [] => {
                    handles.push((generate(&session, config)?, None));
                    created = true;
                }
                many => return Err(ambiguous(many.len())),
            }
        }
        for id in recorded {
            let bytes = hex::decode(id).map_err(|_| missing(id))?;
            match find(Some(&bytes))?.as_slice() {
                [key] => handles.push((*key, Some(id))),
                [] => return Err(missing(id)),
                many => return Err(ambiguous(many.len())),
            }
        }
        let mut keys = Vec::with_capacity(handles.len());
        let session = Arc::new(Mutex::new(session));
        for (key, recorded) in handles {
            let id = check_key(&lock(&session), key, config)?;
            if recorded.is_some_and(|r| *r != id) {
                return Err(missing(recorded.map_or("", String::as_str)));
            }
            keys.push(Self { id, key, session: session.clone(), _context: context.clone() });
        }
        Ok((keys, created))
    }

    /// Generates a new root key version in the same token (root key
    /// rotation), through the same session.
    pub fn generate_next(&self, config: &TokenConfig) -> Result<Self, TokenError> {
        let session = lock(&self.session);
        let key = generate(&session, config)?;
        let id = check_key(&session, key, config)?;
        Ok(Self { id, key, session: self.session.clone(), _context: self._context.clone() })
    }

    /// Destroys the object (an older root key version nothing is wrapped
    /// under any more).
    pub fn destroy(&self, config: &TokenConfig) -> Result<(), TokenError> {
        lock(&self.session)
            .destroy_object(self.key)
            .map_err(|e| TokenError::Call { token: config.token_label.clone(), call: short(&e) })
    }

    /// The root key id: the hex of the object's CKA_ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Wraps system key `version` inside the token.
    pub fn wrap_system_key(&self, version: u32, system_key: &Secret32) -> Result<Vec<u8>, TokenCryptoError> {
        let aad = skm_crypto::wrap::system_key_aad(version, &self.id);
        let mut iv: [u8; IV_LEN] = skm_crypto::random_array().map_err(|_| TokenCryptoError)?;
        let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into()).map_err(|_| TokenCryptoError)?;
        let sealed = self
            .session()
            .encrypt(&Mechanism::AesGcm(params), self.key, system_key.danger_expose())
            .map_err(|_| TokenCryptoError)?;
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Unwraps system key `version` inside the token.
    pub fn unwrap_system_key(&self, version: u32, wrapped: &[u8]) -> Result<Secret32, TokenCryptoError> {
        if wrapped.len() != WRAPPED_LEN {
            return Err(TokenCryptoError);
        }
        let aad = skm_crypto::wrap::system_key_aad(version, &self.id);
        let (iv, sealed) = wrapped.split_at(IV_LEN);
        let mut iv: [u8; IV_LEN] = iv.try_into().map_err(|_| TokenCryptoError)?;
        let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into()).map_err(|_| TokenCryptoError)?;
        let mut plain = Zeroizing::new(
            self.session().decrypt(&Mechanism::AesGcm(params), self.key, sealed).map_err(|_| TokenCryptoError)?,
        );
        Secret32::from_slice_wiping(&mut plain).ok_or(TokenCryptoError)
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        lock(&self.session)
    }
}

fn lock(session: &Mutex<Session>) -> std::sync::MutexGuard<'_, Session> {
    session.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn short(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => format!("{function:?} returned {rv:?}"),
        other => other.to_string(),
    }
}

fn find_slot(context: &Pkcs11, config: &TokenConfig) -> Result<cryptoki::slot::Slot, TokenError> {
    let call = |e: CkError| TokenError::Call { token: config.token_label.clone(), call: short(&e) };
    let mut present = Vec::new();
    for slot in context.get_slots_with_token().map_err(call)? {
        let Ok(info) = context.get_token_info(slot) else { continue };
        let label = info.label().trim_end().to_owned();
        if label == config.token_label && config.slot.is_none_or(|s| s == slot.id()) {
            return Ok(slot);
        }
        present.push(format!("{label:?} in slot {}", slot.id()));
    }
    Err(TokenError::TokenAbsent {
        label: config.token_label.clone(),
        slot: config.slot,
        present: if present.is_empty() { "none".to_owned() } else { present.join(", ") },
    })
}

fn read_pin(config: &TokenConfig) -> Result<AuthPin, TokenError> {
    let bad = |reason: String| TokenError::PinFile { file: config.pin_file.clone(), reason };
    let raw = Zeroizing::new(std::fs::read_to_string(&config.pin_file).map_err(|e| bad(e.to_string()))?);
    let pin = raw.lines().next().unwrap_or_default().trim_end_matches('\r');
    if pin.is_empty() {
        return Err(bad("the first line (the PIN) is empty".to_owned()));
    }
    Ok(AuthPin::new(pin.into()))
}

/// Generates the root key inside the token: AES-256, a token object,
/// private, sensitive, never extractable, for encrypt/decrypt only, with a
/// random 8-byte CKA_ID that becomes the root key id.
fn generate(session: &Session, config: &TokenConfig) -> Result<ObjectHandle, TokenError> {
    let call = |call: String| TokenError::Call { token: config.token_label.clone(), call };
    let id: [u8; 8] = skm_crypto::random_array().map_err(|_| call("no randomness for the key id".to_owned()))?;
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(32.into()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Modifiable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
        Attribute::Label(config.key_label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ];
    session.generate_key(&Mechanism::AesKeyGen, &template).map_err(|e| call(short(&e)))
}

/// Refuses a key object that could leave the token or isn't AES-256, and
/// returns its id (hex of CKA_ID).
fn check_key(session: &Session, key: ObjectHandle, config: &TokenConfig) -> Result<String, TokenError> {
    let unfit = |why: &str| TokenError::KeyUnfit {
        token: config.token_label.clone(),
        key: config.key_label.clone(),
        why: why.to_owned(),
    };
    let wanted = [
        AttributeType::KeyType,
        AttributeType::ValueLen,
        AttributeType::Sensitive,
        AttributeType::Extractable,
        AttributeType::Id,
    ];
    let attributes = session
        .get_attributes(key, &wanted)
        .map_err(|e| TokenError::Call { token: config.token_label.clone(), call: short(&e) })?;
    let (mut aes, mut len, mut sensitive, mut extractable, mut id) = (false, 0u64, false, true, None);
    for attribute in attributes {
        match attribute {
            Attribute::KeyType(t) => aes = t == KeyType::AES,
            Attribute::ValueLen(l) => len = l.into(),
            Attribute::Sensitive(s) => sensitive = s,
            Attribute::Extractable(x) => extractable = x,
            Attribute::Id(bytes) => id = Some(bytes),
            _ => {}
        }
    }
    if !aes || len != 32 {
        return Err(unfit("it is not an AES-256 key"));
    }
    if !sensitive {
        return Err(unfit("CKA_SENSITIVE is false"));
    }
    if extractable {
        return Err(unfit("CKA_EXTRACTABLE is true"));
    }
    match id {
        Some(bytes) if !bytes.is_empty() => Ok(hex::encode(bytes)),
        _ => Err(unfit("it has no CKA_ID")),
    }
}

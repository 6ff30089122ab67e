//! Asymmetric keys: Ed25519, ECDSA P-256/P-384, RSA-2048/3072/4096 and
//! ML-DSA-44/65/87 (FIPS 204) signing keys.
//!
//! A [`PrivateKey`] is kept at rest as PKCS#8 (sealed into an encrypted
//! record by the caller) and parsed once into its signer; a [`PublicKey`] is
//! an X.509 SubjectPublicKeyInfo. Signatures are in the encodings OpenSSL
//! and every other common library read:
//!
//! | signature algorithm | encoding |
//! |---|---|
//! | `ed25519` | raw 64 bytes (RFC 8032, pure EdDSA) |
//! | `ecdsa-sha256` | ASN.1 DER `ECDSA-Sig-Value` |
//! | `ecdsa-sha384` | ASN.1 DER `ECDSA-Sig-Value` |
//! | `rsa-pss-sha256` | modulus-length bytes; MGF1-SHA-256, salt length 32 |
//! | `rsa-pkcs1-sha256` | modulus-length bytes; PKCS#1 v1.5 |
//! | `ml-dsa` | FIPS 204 encoding (2420 / 3309 / 4627 bytes), pure ML-DSA, empty context |
//!
//! ECDSA and RSA can sign a digest computed by the caller
//! ([`Message::Digest`]: SHA-256, or SHA-384 for `ecdsa-sha384`); the
//! signature then verifies against the original message. Ed25519 and
//! ML-DSA hash inside the algorithm and refuse digests.
//!
//! Backends: `ed25519-dalek` for Ed25519, aws-lc-rs for RSA
//! (docs/adr/0001-rsa-on-aws-lc-rs.md), ECDSA P-384 and ML-DSA
//! (docs/adr/0005-more-key-types-on-aws-lc-rs.md) and ECDSA P-256
//! (docs/adr/0006-ecdsa-p256-on-aws-lc-rs.md).

mod ecdsa;
mod ed25519;
mod ml_dsa;
mod rsa;

use std::fmt;

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::VerifyError;

/// Key algorithms of asymmetric keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// Ed25519 (RFC 8032).
    Ed25519,
    /// ECDSA on NIST P-256 (secp256r1).
    EcdsaP256,
    /// RSA with a 2048-bit modulus.
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    Rsa3072,
    /// RSA with a 4096-bit modulus.
    Rsa4096,
    /// ECDSA on NIST P-384 (secp384r1).
    EcdsaP384,
    /// ML-DSA-44 (FIPS 204, security category 2).
    MlDsa44,
    /// ML-DSA-65 (FIPS 204, security category 3).
    MlDsa65,
    /// ML-DSA-87 (FIPS 204, security category 5).
    MlDsa87,
}

impl KeyAlgorithm {
    /// Every key algorithm, in a stable order.
    pub const ALL: [KeyAlgorithm; 9] = [
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::MlDsa44,
        KeyAlgorithm::MlDsa65,
        KeyAlgorithm::MlDsa87,
    ];

    /// The name used in the API, the CLI and records: `ed25519`,
    /// `ecdsa-p256`, `rsa-2048`, `rsa-3072`, `rsa-4096`, `ecdsa-p384`,
    /// `ml-dsa-44`, `ml-dsa-65`, `ml-dsa-87`.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::Rsa2048 => "rsa-2048",
            KeyAlgorithm::Rsa3072 => "rsa-3072",
            KeyAlgorithm::Rsa4096 => "rsa-4096",
            KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
            KeyAlgorithm::MlDsa44 => "ml-dsa-44",
            KeyAlgorithm::MlDsa65 => "ml-dsa-65",
            KeyAlgorithm::MlDsa87 => "ml-dsa-87",
        }
    }

    /// The algorithm of a [`name`](Self::name); `None` for anything else.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == s)
    }

    /// The signature algorithms a key of this algorithm can make.
    pub fn signature_algorithms(self) -> &'static [SignatureAlgorithm] {
        match self {
            KeyAlgorithm::Ed25519 => &[SignatureAlgorithm::Ed25519],
            KeyAlgorithm::EcdsaP256 => &[SignatureAlgorithm::EcdsaSha256],
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                &[SignatureAlgorithm::RsaPssSha256, SignatureAlgorithm::RsaPkcs1Sha256]
            }
            KeyAlgorithm::EcdsaP384 => &[SignatureAlgorithm::EcdsaSha384],
            KeyAlgorithm::MlDsa44 | KeyAlgorithm::MlDsa65 | KeyAlgorithm::MlDsa87 => &[SignatureAlgorithm::MlDsa],
        }
    }

    /// The signature algorithm used when the caller names none (RSA: PSS).
    pub fn default_signature_algorithm(self) -> SignatureAlgorithm {
        self.signature_algorithms()[0]
    }

    /// Whether a key of this algorithm can make `signature` signatures.
    pub fn supports(self, signature: SignatureAlgorithm) -> bool {
        self.signature_algorithms().contains(&signature)
    }
}

/// Signature algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// Pure Ed25519 (RFC 8032); the message is hashed inside the algorithm.
    Ed25519,
    /// ECDSA with SHA-256, DER-encoded signature.
    EcdsaSha256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
    RsaPssSha256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsaPkcs1Sha256,
    /// ECDSA with SHA-384, DER-encoded signature.
    EcdsaSha384,
    /// Pure ML-DSA (FIPS 204 `ML-DSA.Sign`, hedged, empty context); the
    /// message is hashed inside the algorithm.
    MlDsa,
}

impl SignatureAlgorithm {
    /// Every signature algorithm, in a stable order.
    pub const ALL: [SignatureAlgorithm; 6] = [
        SignatureAlgorithm::Ed25519,
        SignatureAlgorithm::EcdsaSha256,
        SignatureAlgorithm::RsaPssSha256,
        SignatureAlgorithm::RsaPkcs1Sha256,
        SignatureAlgorithm::EcdsaSha384,
        SignatureAlgorithm::MlDsa,
    ];

    /// The name used in the API and the CLI: `ed25519`, `ecdsa-sha256`,
    /// `rsa-pss-sha256`, `rsa-pkcs1-sha256`, `ecdsa-sha384`, `ml-dsa`.
    pub fn name(self) -> &'static str {
        match self {
            SignatureAlgorithm::Ed25519 => "ed25519",
            SignatureAlgorithm::EcdsaSha256 => "ecdsa-sha256",
            SignatureAlgorithm::RsaPssSha256 => "rsa-pss-sha256",
            SignatureAlgorithm::RsaPkcs1Sha256 => "rsa-pkcs1-sha256",
            SignatureAlgorithm::EcdsaSha384 => "ecdsa-sha384",
            SignatureAlgorithm::MlDsa => "ml-dsa",
        }
    }

    /// The hash a caller's [`Message::Digest`] must be, and its length;
    /// `None` for the algorithms that sign only messages (Ed25519, ML-DSA).
    pub fn digest(self) -> Option<(&'static str, usize)> {
        match self {
            SignatureAlgorithm::EcdsaSha256 | SignatureAlgorithm::RsaPssSha256 | SignatureAlgorithm::RsaPkcs1Sha256 => {
                Some(("SHA-256", 32))
            }
            SignatureAlgorithm::EcdsaSha384 => Some(("SHA-384", 48)),
            SignatureAlgorithm::Ed25519 | SignatureAlgorithm::MlDsa => None,
        }
    }

    /// The [`Message::Digest`] a caller sends for `message`: its hash under
    /// [`digest`](Self::digest); `None` where the algorithm signs only
    /// messages.
    pub fn digest_of(self, message: &[u8]) -> Option<Vec<u8>> {
        match self.digest()?.1 {
            48 => Some(crate::sha384(message).to_vec()),
            _ => Some(crate::sha256(message).to_vec()),
        }
    }

    /// The algorithm of a [`name`](Self::name); `None` for anything else.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == s)
    }
}

/// What is signed: the message itself (≤ the caller's limit) or a digest of
/// it.
#[derive(Clone, Copy, Debug)]
pub enum Message<'a> {
    /// The message; the algorithm hashes it.
    Raw(&'a [u8]),
    /// The message's digest under the signature algorithm's hash
    /// ([`SignatureAlgorithm::digest`]), computed by the caller.
    Digest(&'a [u8]),
    /// ML-DSA's external μ (FIPS 204, AWS KMS `EXTERNAL_MU`): the 64 bytes
    /// of SHAKE256(SHAKE256(public key, 64) ‖ 0x00 ‖ 0x00 ‖ message), for
    /// pure ML-DSA with an empty context, computed by the caller
    /// ([`PublicKey::external_mu`]). The signature is the one the message
    /// itself would get.
    Mu(&'a [u8]),
}

/// Length of an ML-DSA external μ.
pub const MU_LEN: usize = 64;

/// Why an asymmetric key could not be made, read or used to sign.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
pub enum AsymError {
    /// The signature algorithm is not one the key can make.
    #[error("signature algorithm {signature} does not fit a {key} key")]
    WrongAlgorithm {
        /// The key's algorithm name.
        key: &'static str,
        /// The requested signature algorithm name.
        signature: &'static str,
    },
    /// A [`Message::Digest`] of the wrong length for the algorithm's hash.
    #[error("a {hash} digest is {expected} bytes; got {got}")]
    DigestLength {
        /// The hash, e.g. `SHA-256`.
        hash: &'static str,
        /// Its length.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// The key's algorithm cannot sign a pre-hashed message (Ed25519,
    /// ML-DSA).
    #[error("{0} keys sign messages, not digests")]
    DigestNotSupported(&'static str),
    /// A [`Message::Mu`] for a key that is not an ML-DSA key.
    #[error("{0} keys take no external mu (ML-DSA keys only)")]
    MuNotSupported(&'static str),
    /// A [`Message::Mu`] of the wrong length.
    #[error("an external mu is 64 bytes; got {0}")]
    MuLength(usize),
    /// PKCS#8 or SPKI that doesn't parse, or is not a key of the stated
    /// algorithm and size.
    #[error("the key material is malformed")]
    Malformed,
    /// The backend failed to generate a key or to sign (including a failed
    /// random number generator).
    #[error("key generation or signing failed")]
    Crypto,
}

impl From<crate::RngError> for AsymError {
    fn from(_: crate::RngError) -> Self {
        AsymError::Crypto
    }
}

/// A message checked against a signature algorithm: either the raw message or
/// a digest of the algorithm's hash and length.
#[derive(Clone, Copy)]
enum Checked<'a> {
    Raw(&'a [u8]),
    Digest(&'a [u8]),
}

/// Checks that a `key` key can make `signature` signatures over `message`
/// (the algorithm fits the key, a digest has its hash's length, Ed25519 and
/// ML-DSA sign only messages). [`PrivateKey::sign`] runs this itself; verifiers that want to
/// refuse bad input before the opaque [`PublicKey::verify`] call it first.
pub fn check_message(key: KeyAlgorithm, signature: SignatureAlgorithm, message: Message<'_>) -> Result<(), AsymError> {
    match message {
        Message::Mu(mu) => check_mu(key, signature, mu),
        _ => check(key, signature, message).map(|_| ()),
    }
}

/// An external μ fits only pure ML-DSA, and is [`MU_LEN`] bytes.
fn check_mu(key: KeyAlgorithm, signature: SignatureAlgorithm, mu: &[u8]) -> Result<(), AsymError> {
    if !key.supports(signature) {
        return Err(AsymError::WrongAlgorithm { key: key.name(), signature: signature.name() });
    }
    if signature != SignatureAlgorithm::MlDsa {
        return Err(AsymError::MuNotSupported(key.name()));
    }
    if mu.len() != MU_LEN {
        return Err(AsymError::MuLength(mu.len()));
    }
    Ok(())
}

fn check<'a>(key: KeyAlgorithm, signature: SignatureAlgorithm, message: Message<'a>) -> Result<Checked<'a>, AsymError> {
    if !key.supports(signature) {
        return Err(AsymError::WrongAlgorithm { key: key.name(), signature: signature.name() });
    }
    match (message, signature.digest()) {
        // Signed and verified apart from the other forms ([`check_mu`]).
        (Message::Mu(mu), _) => Err(check_mu(key, signature, mu).err().unwrap_or(AsymError::Crypto)),
        (Message::Raw(raw), _) => Ok(Checked::Raw(raw)),
        (Message::Digest(_), None) => Err(AsymError::DigestNotSupported(key.name())),
        (Message::Digest(digest), Some((_, expected))) if digest.len() == expected => Ok(Checked::Digest(digest)),
        (Message::Digest(digest), Some((hash, expected))) => {
            Err(AsymError::DigestLength { hash, expected, got: digest.len() })
        }
    }
}

/// The parsed private half of a key.
enum Signer {
    Ed25519(ed25519::Signer),
    EcdsaP256(ecdsa::Signer),
    Rsa(rsa::Signer),
    EcdsaP384(ecdsa::Signer),
    MlDsa(ml_dsa::Signer),
}

/// A private key: zeroized on drop, redacted `Debug`, not `Clone`, not
/// serialisable.
///
/// It parses its PKCS#8 once and keeps the parsed signer, so
/// [`sign`](Self::sign) does no parsing. The PKCS#8 itself is kept (in
/// zeroizing memory) only so that it can be sealed into an encrypted record.
pub struct PrivateKey {
    pkcs8: Zeroizing<Vec<u8>>,
    signer: Signer,
    public: PublicKey,
}

impl PrivateKey {
    /// Generates a fresh key from the operating system's CSPRNG.
    pub fn generate(alg: KeyAlgorithm) -> Result<Self, AsymError> {
        let pkcs8 = match alg {
            KeyAlgorithm::Ed25519 => ed25519::generate_pkcs8()?,
            KeyAlgorithm::EcdsaP256 => ecdsa::generate_pkcs8(&ecdsa::P256)?,
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => rsa::generate_pkcs8(alg)?,
            KeyAlgorithm::EcdsaP384 => ecdsa::generate_pkcs8(&ecdsa::P384)?,
            KeyAlgorithm::MlDsa44 | KeyAlgorithm::MlDsa65 | KeyAlgorithm::MlDsa87 => ml_dsa::generate_pkcs8(alg)?,
        };
        // Going through the parser keeps one code path from PKCS#8 to a key,
        // so a generated key is exactly what a later load will give.
        Self::from_pkcs8_owned(alg, pkcs8).map_err(|_| AsymError::Crypto)
    }

    /// Parses an unencrypted PKCS#8 private key, checking that it is really a
    /// key of `alg` (curve, or RSA modulus size). Anything else is
    /// [`AsymError::Malformed`].
    pub fn from_pkcs8(alg: KeyAlgorithm, der: &[u8]) -> Result<Self, AsymError> {
        Self::from_pkcs8_owned(alg, Zeroizing::new(der.to_vec()))
    }

    fn from_pkcs8_owned(alg: KeyAlgorithm, pkcs8: Zeroizing<Vec<u8>>) -> Result<Self, AsymError> {
        let (signer, public) = match alg {
            KeyAlgorithm::Ed25519 => {
                let signer = ed25519::Signer::from_pkcs8(&pkcs8)?;
                let public = PublicKey::new(alg, Verifier::Ed25519(signer.verifier()))?;
                (Signer::Ed25519(signer), public)
            }
            KeyAlgorithm::EcdsaP256 => {
                let signer = ecdsa::Signer::from_pkcs8(&ecdsa::P256, &pkcs8)?;
                let public = PublicKey::from_spki_der(alg, &signer.spki_der()?)?;
                (Signer::EcdsaP256(signer), public)
            }
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                let signer = rsa::Signer::from_pkcs8(&pkcs8)?;
                // from_spki_der checks the modulus size against `alg`.
                let public = PublicKey::from_spki_der(alg, &signer.spki_der()?)?;
                (Signer::Rsa(signer), public)
            }
            KeyAlgorithm::EcdsaP384 => {
                let signer = ecdsa::Signer::from_pkcs8(&ecdsa::P384, &pkcs8)?;
                let public = PublicKey::from_spki_der(alg, &signer.spki_der()?)?;
                (Signer::EcdsaP384(signer), public)
            }
            KeyAlgorithm::MlDsa44 | KeyAlgorithm::MlDsa65 | KeyAlgorithm::MlDsa87 => {
                // from_pkcs8 checks the parameter set against `alg`.
                let signer = ml_dsa::Signer::from_pkcs8(alg, &pkcs8)?;
                let public = PublicKey::from_spki_der(alg, &signer.spki_der()?)?;
                (Signer::MlDsa(signer), public)
            }
        };
        Ok(Self { pkcs8, signer, public })
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.public.alg
    }

    /// The PKCS#8 encoding of the key.
    ///
    /// Danger: the raw private key. The only caller is the code that seals it
    /// into an encrypted record (and tests); it never leaves SKM.
    pub fn danger_pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    /// The public half, without copying it.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `message` with signature algorithm `alg`, in the encoding named
    /// in the [module docs](self).
    pub fn sign(&self, alg: SignatureAlgorithm, message: Message<'_>) -> Result<Vec<u8>, AsymError> {
        if let Message::Mu(mu) = message {
            check_mu(self.algorithm(), alg, mu)?;
            return match &self.signer {
                Signer::MlDsa(signer) => signer.sign_mu(mu),
                _ => Err(AsymError::MuNotSupported(self.algorithm().name())),
            };
        }
        let message = check(self.algorithm(), alg, message)?;
        match &self.signer {
            Signer::Ed25519(signer) => signer.sign(message),
            Signer::EcdsaP256(signer) => signer.sign(message),
            Signer::Rsa(signer) => signer.sign(alg, message),
            Signer::EcdsaP384(signer) => signer.sign(message),
            Signer::MlDsa(signer) => signer.sign(message),
        }
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, <redacted>)", self.algorithm().name())
    }
}

/// The parsed public half of a key.
#[derive(Clone, Debug)]
enum Verifier {
    Ed25519(ed25519::Verifier),
    EcdsaP256(ecdsa::Verifier),
    Rsa(rsa::Verifier),
    EcdsaP384(ecdsa::Verifier),
    MlDsa(ml_dsa::Verifier),
}

/// A public key: its algorithm and its X.509 SubjectPublicKeyInfo, parsed
/// once for verification.
#[derive(Clone)]
pub struct PublicKey {
    alg: KeyAlgorithm,
    spki: Vec<u8>,
    verifier: Verifier,
}

impl PublicKey {
    fn new(alg: KeyAlgorithm, verifier: Verifier) -> Result<Self, AsymError> {
        let spki = match &verifier {
            Verifier::Ed25519(v) => v.spki_der()?,
            Verifier::EcdsaP256(v) => v.spki_der(),
            Verifier::Rsa(v) => v.spki_der()?,
            Verifier::EcdsaP384(v) => v.spki_der(),
            Verifier::MlDsa(v) => v.spki_der(),
        };
        Ok(Self { alg, spki, verifier })
    }

    /// Parses a DER SubjectPublicKeyInfo, checking that it is a key of `alg`
    /// (for RSA: that modulus size). Anything else is
    /// [`AsymError::Malformed`].
    ///
    /// The key keeps the canonical re-encoding of what it parsed (the same
    /// bytes for any SPKI SKM itself wrote).
    pub fn from_spki_der(alg: KeyAlgorithm, der: &[u8]) -> Result<Self, AsymError> {
        let verifier = match alg {
            KeyAlgorithm::Ed25519 => Verifier::Ed25519(ed25519::Verifier::from_spki_der(der)?),
            KeyAlgorithm::EcdsaP256 => Verifier::EcdsaP256(ecdsa::Verifier::from_spki_der(&ecdsa::P256, der)?),
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                Verifier::Rsa(rsa::Verifier::from_spki_der(alg, der)?)
            }
            KeyAlgorithm::EcdsaP384 => Verifier::EcdsaP384(ecdsa::Verifier::from_spki_der(&ecdsa::P384, der)?),
            KeyAlgorithm::MlDsa44 | KeyAlgorithm::MlDsa65 | KeyAlgorithm::MlDsa87 => {
                Verifier::MlDsa(ml_dsa::Verifier::from_spki_der(alg, der)?)
            }
        };
        Self::new(alg, verifier)
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    /// The DER X.509 SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The SubjectPublicKeyInfo as PEM (`-----BEGIN PUBLIC KEY-----`, base64
    /// in 64-character lines, each line ending in `\n`).
    pub fn to_pem(&self) -> String {
        spki_pem(&self.spki)
    }

    /// Checks `signature` over `message` made with signature algorithm `alg`.
    ///
    /// Every failure is the opaque [`VerifyError`]: a bad signature, a wrong
    /// message or key, a signature algorithm the key can't make, a digest
    /// of the wrong length, a digest for an Ed25519 or ML-DSA key. Callers that want
    /// to reject a wrong algorithm as bad input check
    /// [`KeyAlgorithm::supports`] first.
    pub fn verify(&self, alg: SignatureAlgorithm, message: Message<'_>, signature: &[u8]) -> Result<(), VerifyError> {
        if let Message::Mu(mu) = message {
            check_mu(self.alg, alg, mu).map_err(|_| VerifyError)?;
            return match &self.verifier {
                Verifier::MlDsa(v) => v.verify_mu(mu, signature),
                _ => Err(VerifyError),
            };
        }
        let message = check(self.alg, alg, message).map_err(|_| VerifyError)?;
        match &self.verifier {
            Verifier::Ed25519(v) => v.verify(message, signature),
            Verifier::EcdsaP256(v) => v.verify(message, signature),
            Verifier::Rsa(v) => v.verify(alg, message, signature),
            Verifier::EcdsaP384(v) => v.verify(message, signature),
            Verifier::MlDsa(v) => v.verify(message, signature),
        }
    }

    /// The external μ of `message` for this ML-DSA key ([`Message::Mu`]):
    /// what a client computes so that a message of any size is signed by
    /// sending 64 bytes.
    pub fn external_mu(&self, message: &[u8]) -> Result<[u8; MU_LEN], AsymError> {
        match &self.verifier {
            Verifier::MlDsa(v) => v.external_mu(message),
            _ => Err(AsymError::MuNotSupported(self.alg.name())),
        }
    }
}

/// An SPKI as PEM: `-----BEGIN PUBLIC KEY-----`, base64 in 64-character
/// lines, each line ending in `\n`.
pub(crate) fn spki_pem(spki: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(spki);
    let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    pem.push_str("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.extend(line.iter().copied().map(char::from));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        // The verifier is a parse of `spki`, so these two decide equality.
        self.alg == other.alg && self.spki == other.spki
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fingerprint: String = crate::sha256(&self.spki)[..8].iter().map(|b| format!("{b:02x}")).collect();
        f.debug_struct("PublicKey")
            .field("algorithm", &self.alg.name())
            .field("spki_sha256", &format_args!("{fingerprint}…"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for alg in KeyAlgorithm::ALL {
            assert_eq!(KeyAlgorithm::from_name(alg.name()), Some(alg));
            assert!(alg.supports(alg.default_signature_algorithm()));
        }
        for alg in SignatureAlgorithm::ALL {
            assert_eq!(SignatureAlgorithm::from_name(alg.name()), Some(alg));
        }
        assert_eq!(KeyAlgorithm::from_name("rsa-1024"), None);
        assert_eq!(SignatureAlgorithm::from_name("RSA-PSS-SHA256"), None);
        assert_eq!(KeyAlgorithm::Rsa3072.default_signature_algorithm(), SignatureAlgorithm::RsaPssSha256);
    }

    #[test]
    fn debug_is_redacted() {
        let key = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
        assert_eq!(format!("{key:?}"), "PrivateKey(ed25519, <redacted>)");
        let shown = format!("{:?}", key.public_key());
        assert!(shown.starts_with("PublicKey { algorithm: \"ed25519\", spki_sha256: "), "{shown}");
    }

    #[test]
    fn check_orders_errors() {
        let d31 = [0u8; 31];
        assert_eq!(
            check(KeyAlgorithm::Ed25519, SignatureAlgorithm::EcdsaSha256, Message::Digest(&d31)).err(),
            Some(AsymError::WrongAlgorithm { key: "ed25519", signature: "ecdsa-sha256" })
        );
        assert_eq!(
            check(KeyAlgorithm::Ed25519, SignatureAlgorithm::Ed25519, Message::Digest(&d31)).err(),
            Some(AsymError::DigestNotSupported("ed25519"))
        );
        assert_eq!(
            check(KeyAlgorithm::Rsa2048, SignatureAlgorithm::RsaPkcs1Sha256, Message::Digest(&d31)).err(),
            Some(AsymError::DigestLength { hash: "SHA-256", expected: 32, got: 31 })
        );
    }

    #[test]
    fn pem_has_64_column_lines() {
        let key = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap().public_key();
        let pem = key.to_pem();
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines.first(), Some(&"-----BEGIN PUBLIC KEY-----"));
        assert_eq!(lines.last(), Some(&"-----END PUBLIC KEY-----"));
        let body = &lines[1..lines.len() - 1];
        assert!(body[..body.len() - 1].iter().all(|l| l.len() == 64));
        assert!(!body[body.len() - 1].is_empty() && body[body.len() - 1].len() <= 64);
        let decoded = base64::engine::general_purpose::STANDARD.decode(body.concat()).unwrap();
        assert_eq!(decoded, key.spki_der());
    }
}

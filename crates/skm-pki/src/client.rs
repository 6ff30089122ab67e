//! Keystore client certificates: each keystore has its own client CA
//! ([`KeystoreCa`]), which issues client certificates handed to operators
//! as password-protected PKCS#12 files ([`KeystoreCa::issue_client`]).
//!
//! kms-api's user port accepts any client certificate at the TLS layer (the
//! handshake only proves the client holds the key) and decides per request:
//! [`check_client_chain`] accepts a chain issued by the keystore's CA, for
//! client authentication, within its validity period;
//! [`check_registered`] accepts an external certificate whose SHA-256
//! fingerprint the keystore registered, within its validity period.
//! Revocation lists are kms-api's: it compares [`ClientCertInfo`]'s
//! fingerprint and serial against them.
//!
//! The PKCS#12 files are written with PBES2 (PBKDF2-HMAC-SHA256,
//! AES-256-CBC) for both the key and the certificates, and an HMAC-SHA256
//! MAC, which OpenSSL 3 and current platform key stores read without legacy
//! algorithms.

use std::sync::LazyLock;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use rustls::pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::PkiError;

/// Shortest PKCS#12 password accepted, in bytes.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest PKCS#12 password accepted, in bytes.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// PBKDF2 iterations of the PKCS#12 encryption, and iterations of its MAC
/// key derivation (an attacker holding the file can test passwords against
/// either, so both get the same count).
const PKCS12_ITERATIONS: u32 = 600_000;

/// Longest name in a certificate's common name (X.509's `ub-common-name`).
const MAX_NAME_CHARS: usize = 64;

/// How far before "now" a new certificate becomes valid, for clocks that lag.
const BACKDATE: time::Duration = time::Duration::minutes(5);

/// Signature algorithms a chain may use: those of the aws-lc-rs provider
/// that every TLS link of SKM runs on.
static SIGNATURE_ALGORITHMS: LazyLock<&'static [&'static dyn SignatureVerificationAlgorithm]> =
    LazyLock::new(|| rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms.all);

/// One keystore's client CA: ECDSA P-256, path length 0, signs only client
/// certificates.
pub struct KeystoreCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    /// End of the CA's validity: no certificate it issues outlives it.
    not_after: OffsetDateTime,
}

impl std::fmt::Debug for KeystoreCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeystoreCa").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// A client certificate just issued, with its key, as PKCS#12.
pub struct IssuedClient {
    /// The PKCS#12 file: the private key, the certificate and the
    /// keystore's CA certificate, encrypted under the password.
    pub pkcs12: Vec<u8>,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// Lowercase hex SHA-256 of the certificate's DER.
    pub fingerprint_sha256: String,
    /// Lowercase hex of the serial number.
    pub serial_hex: String,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
}

impl std::fmt::Debug for IssuedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedClient")
            .field("fingerprint_sha256", &self.fingerprint_sha256)
            .field("serial_hex", &self.serial_hex)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl KeystoreCa {
    /// A fresh client CA for `keystore_name`, valid `days` (at least 1).
    pub fn generate(keystore_name: &str, days: u32) -> Result<Self, PkiError> {
        check_name(keystore_name)?;
        let (not_before, not_after) = validity_days(days)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("SKM keystore {keystore_name} client CA"));
        dn.push(DnType::OrganizationName, "SKM");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial()?);
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.self_signed(&key)?;
        Ok(Self { cert_pem: cert.pem(), cert_der: cert.der().clone(), issuer: Issuer::new(params, key), not_after })
    }

    /// Loads a CA from its PEM certificate and PKCS#8 key, as returned by
    /// [`cert_pem`](Self::cert_pem) and [`key_pem`](Self::key_pem). The
    /// certificate (the first of the PEM) must be a CA and the key must be
    /// its key.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let cert_der = skm_runtime::tls::certs_from_pem(cert_pem.as_bytes())
            .ok()
            .and_then(|certs| certs.into_iter().next())
            .ok_or(PkiError::BadCaCertificate)?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der).map_err(|_| PkiError::BadCaCertificate)?;
        if !parsed.is_ca() {
            return Err(PkiError::NotACa);
        }
        let key = KeyPair::from_pem(key_pem)?;
        if key.subject_public_key_info() != parsed.public_key().raw {
            return Err(PkiError::KeyMismatch);
        }
        let not_after = parsed.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(Self { issuer, cert_pem: cert_pem.to_owned(), cert_der, not_after })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER: the trust anchor of [`check_client_chain`].
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA private key, PKCS#8 PEM. Store it sealed.
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.issuer.key().serialize_pem())
    }

    /// Issues a client certificate for `name` (its common name), valid
    /// `days` (at least 1, and never beyond the end of the CA's own
    /// validity), with a fresh ECDSA P-256 key, and returns both as
    /// PKCS#12 encrypted under `password`
    /// ([`MIN_PASSWORD_LEN`]..=[`MAX_PASSWORD_LEN`] bytes of UTF-8, no
    /// control characters, none outside the Basic Multilingual Plane).
    ///
    /// Costs about half a second of CPU (the password-based key derivations
    /// of the file): call it from a blocking task.
    pub fn issue_client(&self, name: &str, days: u32, password: &str) -> Result<IssuedClient, PkiError> {
        let (not_before, not_after) = validity_days(days)?;
        self.issue(name, not_before, not_after, password)
    }

    /// [`issue_client`](Self::issue_client) with an explicit validity
    /// period in seconds since the Unix epoch, which may lie in the past
    /// (tests of expired certificates).
    #[doc(hidden)]
    pub fn issue_client_with_validity(
        &self,
        name: &str,
        not_before: i64,
        not_after: i64,
        password: &str,
    ) -> Result<IssuedClient, PkiError> {
        self.issue(name, timestamp(not_before)?, timestamp(not_after)?, password)
    }

    fn issue(
        &self,
        name: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        password: &str,
    ) -> Result<IssuedClient, PkiError> {
        check_name(name)?;
        if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&password.len()) {
            return Err(PkiError::PasswordLength);
        }
        if password.chars().any(|c| c.is_control() || u32::from(c) > 0xffff) {
            return Err(PkiError::PasswordCharacters);
        }
        // webpki doesn't check a trust anchor's own validity: cap it here.
        let not_after = not_after.min(self.not_after);
        if not_before >= not_after {
            return Err(PkiError::Validity);
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_der = cert.der().to_vec();
        let info = leaf_info(&cert_der).ok_or(PkiError::Rcgen(rcgen::Error::CouldNotParseCertificate))?;
        let pkcs12 = pkcs12(name, key.serialized_der(), &cert_der, &self.cert_der, password)?;
        Ok(IssuedClient {
            pkcs12,
            cert_der,
            fingerprint_sha256: info.fingerprint_sha256,
            serial_hex: info.serial_hex,
            not_after: info.not_after,
        })
    }
}

/// The PKCS#12 file of a key (PKCS#8 DER) and its chain, leaf first.
fn pkcs12(name: &str, key_der: &[u8], leaf_der: &[u8], ca_der: &[u8], password: &str) -> Result<Vec<u8>, PkiError> {
    use p12_keystore::{Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey};

    let key = PrivateKey::from_der(key_der).map_err(PkiError::Pkcs12)?;
    let chain = [Certificate::from_der(leaf_der), Certificate::from_der(ca_der)]
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(PkiError::Pkcs12)?;
    // localKeyID pairs the key with its certificate: the certificate's
    // SHA-256 (OpenSSL uses its SHA-1).
    let local_key_id = Sha256::digest(leaf_der).to_vec();
    let mut store = KeyStore::new();
    store.add_entry(name, KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(local_key_id, key, chain)));
    store
        .writer(password)
        .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .encryption_iterations(PKCS12_ITERATIONS)
        .mac_algorithm(MacAlgorithm::HmacSha256)
        .mac_iterations(PKCS12_ITERATIONS)
        .write()
        .map_err(PkiError::Pkcs12)
}

/// Reads a PKCS#12 file (PBES2, as [`KeystoreCa::issue_client`] writes
/// it): the certificate chain, leaf first, and the private key (PKCS#8).
/// A wrong password or a file without a key is [`PkiError::Pkcs12Read`].
pub fn read_pkcs12(
    data: &[u8],
    password: &str,
) -> Result<(Vec<CertificateDer<'static>>, rustls_pki_types::PrivateKeyDer<'static>), PkiError> {
    let store = p12_keystore::KeyStore::from_pkcs12(data, password, p12_keystore::Pkcs12ImportPolicy::Strict)
        .map_err(|_| PkiError::Pkcs12Read)?;
    let (_, chain) = store.private_key_chain().ok_or(PkiError::Pkcs12Read)?;
    let certs: Vec<CertificateDer<'static>> =
        chain.certs().iter().map(|c| CertificateDer::from(c.as_der().to_vec())).collect();
    if certs.is_empty() {
        return Err(PkiError::Pkcs12Read);
    }
    let key = rustls_pki_types::PrivatePkcs8KeyDer::from(chain.key().as_der().to_vec());
    Ok((certs, key.into()))
}

/// What the server learned from an accepted client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertInfo {
    /// Lowercase hex SHA-256 of the leaf certificate's DER.
    pub fingerprint_sha256: String,
    /// Lowercase hex of the serial number (without leading zero bytes).
    pub serial_hex: String,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// The subject's first common name, if it has one in a string type.
    pub subject_cn: Option<String>,
}

/// Why a presented certificate was refused. For the server's log only: the
/// client is told no more than "certificate authentication failed".
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientCertError {
    /// The chain does not lead to the keystore's CA (another issuer, a bad
    /// signature, a CA certificate as the leaf, ...).
    #[error("client certificate not issued by the keystore's CA")]
    Untrusted,
    /// The certificate's validity period is over.
    #[error("client certificate expired")]
    Expired,
    /// The certificate's validity period has not begun.
    #[error("client certificate not yet valid")]
    NotYetValid,
    /// The certificate is not for client authentication (its extended key
    /// usage lacks clientAuth, or it has none).
    #[error("client certificate not issued for client authentication")]
    WrongUsage,
    /// The certificate could not be parsed, or no certificate was given.
    #[error("client certificate malformed or missing")]
    Malformed,
    /// The certificate's fingerprint is not registered with the keystore.
    #[error("client certificate not registered")]
    Unregistered,
    /// The keystore revoked the certificate. Never returned by this
    /// module's checks: kms-api's revocation check reports it, so that one
    /// type covers every refusal.
    #[error("client certificate revoked")]
    Revoked,
    /// The keystore's CA certificate itself is unusable as a trust anchor
    /// (a server-side fault, not the client's).
    #[error("keystore CA certificate unusable")]
    BadCa,
}

/// Checks a chain presented on the user port (leaf first) against a
/// keystore's CA certificate (`ca_cert`, as from [`KeystoreCa::cert_der`]):
/// the leaf must be signed by that CA directly, be valid at `now`, and
/// carry an extended key usage that includes clientAuth.
///
/// The rest of the chain is ignored. A keystore CA has path length 0, but
/// webpki doesn't enforce a trust anchor's own constraints, so the path is
/// built without intermediates instead: a certificate under a sub-CA of the
/// keystore CA (which SKM never issues) is refused. Nor is the CA's own
/// validity checked (webpki doesn't): [`KeystoreCa`] issues no certificate
/// that outlives it.
pub fn check_client_chain(
    chain: &[CertificateDer<'_>],
    ca_cert: &CertificateDer<'_>,
    now: UnixTime,
) -> Result<ClientCertInfo, ClientCertError> {
    let leaf = chain.first().ok_or(ClientCertError::Malformed)?;
    let anchor = webpki::anchor_from_trusted_cert(ca_cert).map_err(|_| ClientCertError::BadCa)?;
    let end_entity = webpki::EndEntityCert::try_from(leaf).map_err(|e| chain_error(&e))?;
    // As rustls's client verifier: an extended key usage, where present,
    // must include clientAuth.
    end_entity
        .verify_for_usage(&SIGNATURE_ALGORITHMS, &[anchor], &[], now, webpki::KeyUsage::client_auth(), None, None)
        .map_err(|e| chain_error(&e))?;
    // A keystore also wants it present. (Not through webpki's
    // `KeyUsage::required`: webpki checks usage before the issuer, so a
    // foreign certificate would be logged as a usage problem.)
    let leaf = parse(leaf).ok_or(ClientCertError::Malformed)?;
    if !leaf.client_auth {
        return Err(ClientCertError::WrongUsage);
    }
    Ok(leaf.info)
}

/// Maps webpki's verdict to the reason logged.
fn chain_error(error: &webpki::Error) -> ClientCertError {
    use webpki::Error as E;
    match error {
        E::CertExpired { .. } => ClientCertError::Expired,
        E::CertNotValidYet { .. } => ClientCertError::NotYetValid,
        E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => ClientCertError::WrongUsage,
        E::BadDer
        | E::BadDerTime
        | E::TrailingData(_)
        | E::UnsupportedCertVersion
        | E::InvalidCertValidity
        | E::InvalidSerialNumber
        | E::MalformedExtensions
        | E::ExtensionValueInvalid
        | E::UnsupportedCriticalExtension => ClientCertError::Malformed,
        _ => ClientCertError::Untrusted,
    }
}

/// The fingerprint, serial, expiry and common name of a certificate;
/// `None` when it doesn't parse as one X.509 certificate.
pub fn leaf_info(der: &[u8]) -> Option<ClientCertInfo> {
    parse(der).map(|leaf| leaf.info)
}

/// Checks an external certificate registered with a keystore by its
/// SHA-256 fingerprint (`is_registered` is asked with the fingerprint as
/// lowercase hex without separators). Its chain is not checked, only that
/// it is registered and valid at `now` (seconds since the Unix epoch).
pub fn check_registered(
    leaf: &CertificateDer<'_>,
    is_registered: impl Fn(&str) -> bool,
    now: i64,
) -> Result<ClientCertInfo, ClientCertError> {
    let Leaf { info, not_before, .. } = parse(leaf).ok_or(ClientCertError::Malformed)?;
    if !is_registered(&info.fingerprint_sha256) {
        return Err(ClientCertError::Unregistered);
    }
    if now < not_before {
        return Err(ClientCertError::NotYetValid);
    }
    if now > info.not_after {
        return Err(ClientCertError::Expired);
    }
    Ok(info)
}

/// What this module reads from a certificate.
struct Leaf {
    info: ClientCertInfo,
    /// Start of validity, seconds since the Unix epoch.
    not_before: i64,
    /// It has an extended key usage extension that includes clientAuth.
    client_auth: bool,
}

fn parse(der: &[u8]) -> Option<Leaf> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let subject_cn = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned);
    let info = ClientCertInfo {
        fingerprint_sha256: hex::encode(Sha256::digest(der)),
        serial_hex: hex::encode(cert.tbs_certificate.serial.to_bytes_be()),
        not_after: cert.validity().not_after.timestamp(),
        subject_cn,
    };
    let client_auth = matches!(cert.extended_key_usage(), Ok(Some(eku)) if eku.value.client_auth);
    Some(Leaf { info, not_before: cert.validity().not_before.timestamp(), client_auth })
}

/// 1..=64 characters, none of them control characters.
fn check_name(name: &str) -> Result<(), PkiError> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(PkiError::CommonName);
    }
    Ok(())
}

/// From five minutes ago to `days` from now.
fn validity_days(days: u32) -> Result<(OffsetDateTime, OffsetDateTime), PkiError> {
    if days == 0 {
        return Err(PkiError::Validity);
    }
    // Whole seconds, as the certificate will hold them.
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).map_err(|_| PkiError::Validity)?;
    let not_after = now.checked_add(time::Duration::days(i64::from(days))).ok_or(PkiError::Validity)?;
    if not_after.year() > 9999 {
        return Err(PkiError::Validity);
    }
    Ok((now - BACKDATE, not_after))
}

/// A Unix time X.509 can express (years 1950 to 9999).
fn timestamp(secs: i64) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .filter(|t| (1950..=9999).contains(&t.year()))
        .ok_or(PkiError::Validity)
}

/// 16 random bytes, the first in 0x40..=0x7f: positive in DER, always 16
/// bytes long, 126 random bits.
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    rustls::crypto::aws_lc_rs::default_provider().secure_random.fill(&mut bytes).map_err(|_| PkiError::Random)?;
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_passwords_are_bounded() {
        let ca = KeystoreCa::generate("ks", 1).unwrap();
        assert!(matches!(ca.issue_client("app", 1, "short"), Err(PkiError::PasswordLength)));
        assert!(matches!(ca.issue_client("app", 1, &"p".repeat(MAX_PASSWORD_LEN + 1)), Err(PkiError::PasswordLength)));
        assert!(matches!(ca.issue_client("", 1, "password"), Err(PkiError::CommonName)));
        assert!(matches!(ca.issue_client("a\nb", 1, "password"), Err(PkiError::CommonName)));
        assert!(matches!(ca.issue_client(&"n".repeat(65), 1, "password"), Err(PkiError::CommonName)));
        assert!(matches!(ca.issue_client("app", 0, "password"), Err(PkiError::Validity)));
        assert!(matches!(ca.issue_client("app", u32::MAX, "password"), Err(PkiError::Validity)));
        assert!(matches!(ca.issue_client_with_validity("app", 100, 100, "password"), Err(PkiError::Validity)));
        assert!(matches!(KeystoreCa::generate("", 1), Err(PkiError::CommonName)));
    }

    #[test]
    fn serials_are_sixteen_random_bytes() {
        let ca = KeystoreCa::generate("ks", 1).unwrap();
        let a = ca.issue_client("app", 1, &"p".repeat(MIN_PASSWORD_LEN)).unwrap();
        let b = ca.issue_client("app", 1, &"p".repeat(MIN_PASSWORD_LEN)).unwrap();
        assert_eq!(a.serial_hex.len(), 32);
        assert_ne!(a.serial_hex, b.serial_hex);
        assert_ne!(a.fingerprint_sha256, b.fingerprint_sha256);
    }
}

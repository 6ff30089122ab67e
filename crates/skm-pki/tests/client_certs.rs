//! Keystore client certificates: PKCS#12 read back by the OpenSSL CLI, the
//! extracted certificate and key used by a real TLS client against the user
//! port's accept loop, and the refusals of `check_client_chain` and
//! `check_registered`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use skm_pki::client::{ClientCertError, KeystoreCa, MAX_PASSWORD_LEN, check_client_chain, check_registered, leaf_info};
use skm_pki::{CertificateAuthority, PkiError};
use skm_runtime::serve::{ClientTrust, tls_incoming};
use skm_runtime::tls::{TlsIdentity, certs_from_pem, install_crypto_provider};
use skm_runtime::{Service, SpiffeId, shutdown};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_stream::StreamExt;
use tonic::transport::server::Connected;

/// How long a test waits for a connection or a handshake.
const DEADLINE: Duration = Duration::from_secs(10);
const PASSWORD: &str = "correct horse battery";
const DAY: i64 = 86_400;

fn now_secs() -> i64 {
    i64::try_from(UnixTime::now().as_secs()).unwrap()
}

/// Runs the OpenSSL CLI; panics with its stderr when it can't be started.
fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the openssl CLI is needed (scripts/test installs it)")
}

fn openssl_ok(args: &[&str]) -> String {
    let out = openssl(args);
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The SHA-256 fingerprint OpenSSL reports for the first certificate in a
/// PEM file, as lowercase hex without colons.
fn openssl_fingerprint(pem: &str) -> String {
    let out = openssl_ok(&["x509", "-in", pem, "-noout", "-fingerprint", "-sha256"]);
    let (_, hex) = out.trim().split_once('=').expect("fingerprint line");
    hex.replace(':', "").to_lowercase()
}

/// Writes `contents` to `dir/name`; returns the path.
fn write_file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The certificates (`-nokeys`) and the key (`-nocerts -nodes`) OpenSSL
/// extracts from a PKCS#12 file, PEM.
fn openssl_extract(p12: &str, password: &str) -> (String, String) {
    let pass = format!("pass:{password}");
    let certs = openssl_ok(&["pkcs12", "-in", p12, "-passin", &pass, "-nokeys"]);
    let key = openssl_ok(&["pkcs12", "-in", p12, "-passin", &pass, "-nocerts", "-nodes"]);
    (certs, key)
}

fn der_of(pem: &str) -> CertificateDer<'static> {
    certs_from_pem(pem.as_bytes()).unwrap().remove(0)
}

/// A certificate signed by `ca`'s key with the given extended key usages.
fn signed_by_keystore_ca(ca: &KeystoreCa, ekus: Vec<ExtendedKeyUsagePurpose>) -> CertificateDer<'static> {
    let issuer = Issuer::from_ca_cert_pem(ca.cert_pem(), KeyPair::from_pem(&ca.key_pem()).unwrap()).unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "odd usage");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = ekus;
    params.signed_by(&key, &issuer).unwrap().der().clone()
}

/// A self-signed certificate from outside SKM, valid from `not_before` to
/// `not_after` (Unix seconds).
fn external_cert(not_before: i64, not_after: i64) -> CertificateDer<'static> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "external client");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
    params.self_signed(&key).unwrap().der().clone()
}

#[test]
fn openssl_reads_the_pkcs12_with_modern_encryption_only() {
    install_crypto_provider();
    let ca = KeystoreCa::generate("payments", 30).unwrap();
    let issued = ca.issue_client("billing-app", 7, PASSWORD).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p12 = write_file(dir.path(), "client.p12", &issued.pkcs12);

    // No -legacy: OpenSSL 3's default provider must be enough.
    let info = openssl(&["pkcs12", "-in", &p12, "-passin", &format!("pass:{PASSWORD}"), "-info", "-noout"]);
    assert!(info.status.success(), "{}", String::from_utf8_lossy(&info.stderr));
    let info = String::from_utf8_lossy(&info.stderr);
    assert!(info.contains("MAC: sha256"), "{info}");
    assert_eq!(info.matches("PBES2, PBKDF2, AES-256-CBC").count(), 2, "certificates and key: {info}");
    assert!(info.contains("PRF hmacWithSHA256"), "{info}");
    assert!(!info.contains("RC2") && !info.contains("3DES") && !info.contains("pbeWithSHA1"), "{info}");

    let (certs, key) = openssl_extract(&p12, PASSWORD);
    // Leaf first, then the keystore CA.
    let chain = certs_from_pem(certs.as_bytes()).unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0].as_ref(), issued.cert_der.as_slice());
    assert_eq!(&chain[1], ca.cert_der());
    assert!(key.contains("-----BEGIN PRIVATE KEY-----"), "{key}");

    let certs_path = write_file(dir.path(), "certs.pem", &certs);
    assert_eq!(openssl_fingerprint(&certs_path), issued.fingerprint_sha256);
    let text = openssl_ok(&["x509", "-in", &certs_path, "-noout", "-text"]);
    assert!(text.contains("CN = billing-app"), "{text}");
    assert!(text.contains("TLS Web Client Authentication") && !text.contains("TLS Web Server Authentication"));
    assert!(text.contains("Digital Signature"), "{text}");
    let serial = openssl_ok(&["x509", "-in", &certs_path, "-noout", "-serial"]);
    assert_eq!(serial.trim().trim_start_matches("serial=").to_lowercase(), issued.serial_hex);
    assert_eq!(issued.serial_hex.len(), 32);

    let ca_path = write_file(dir.path(), "ca.pem", ca.cert_pem());
    let ca_text = openssl_ok(&["x509", "-in", &ca_path, "-noout", "-text"]);
    assert!(ca_text.contains("CN = SKM keystore payments client CA"), "{ca_text}");
    assert!(ca_text.contains("CA:TRUE, pathlen:0"), "{ca_text}");
    assert!(ca_text.contains("Certificate Sign, CRL Sign"), "{ca_text}");

    let wrong = openssl(&["pkcs12", "-in", &p12, "-passin", "pass:not the password", "-nokeys"]);
    assert!(!wrong.status.success(), "openssl accepted a wrong password");
}

#[test]
fn openssl_reads_a_non_ascii_password() {
    install_crypto_provider();
    let ca = KeystoreCa::generate("payments", 30).unwrap();
    let password = "pässwörd-ünïcödé";
    let issued = ca.issue_client("app", 1, password).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (certs, _key) = openssl_extract(&write_file(dir.path(), "client.p12", &issued.pkcs12), password);
    assert_eq!(certs_from_pem(certs.as_bytes()).unwrap()[0].as_ref(), issued.cert_der.as_slice());
}

#[test]
fn password_limits_are_enforced() {
    install_crypto_provider();
    let ca = KeystoreCa::generate("ks", 1).unwrap();
    assert!(matches!(ca.issue_client("app", 1, "7 bytes"), Err(PkiError::PasswordLength)));
    assert!(matches!(ca.issue_client("app", 1, &"x".repeat(MAX_PASSWORD_LEN + 1)), Err(PkiError::PasswordLength)));
    assert!(PkiError::PasswordLength.to_string().contains("8 to 1024 bytes"));
    // PKCS#12 MACs take the password as a BMPString; OpenSSL reads it as a C string.
    assert!(matches!(ca.issue_client("app", 1, "password 🔑"), Err(PkiError::PasswordCharacters)));
    assert!(matches!(ca.issue_client("app", 1, "pass\0word"), Err(PkiError::PasswordCharacters)));
    assert!(matches!(ca.issue_client("app", 1, "password\n"), Err(PkiError::PasswordCharacters)));
    ca.issue_client("app", 1, "8 bytes!").unwrap();
    ca.issue_client("app", 1, &"x".repeat(MAX_PASSWORD_LEN)).unwrap();
}

#[tokio::test]
async fn extracted_certificate_authenticates_a_real_tls_client() {
    install_crypto_provider();
    let keystore_ca = KeystoreCa::generate("payments", 30).unwrap();
    let issued = keystore_ca.issue_client("billing-app", 7, PASSWORD).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (certs, key) = openssl_extract(&write_file(dir.path(), "client.p12", &issued.pkcs12), PASSWORD);

    // The user port: server certificate from the deployment CA, any client
    // certificate accepted by the TLS layer.
    let deployment = CertificateAuthority::generate("skm.test", "test CA", 1).unwrap();
    let server = deployment.issue_service(Service::KmsApi, &[], 1).unwrap();
    let server_identity =
        TlsIdentity::from_pem(deployment.cert_pem().as_bytes(), server.cert_pem.as_bytes(), server.key_pem.as_bytes())
            .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_trigger, shutdown) = shutdown::channel();
    let mut incoming = tls_incoming(
        listener,
        server_identity.optional_client_cert_server_config().unwrap(),
        ClientTrust::PerRequest,
        shutdown,
    );

    // The client: trusts the deployment CA for the server, presents what
    // OpenSSL extracted from the PKCS#12.
    let client_identity =
        TlsIdentity::from_pem(deployment.cert_pem().as_bytes(), certs.as_bytes(), key.as_bytes()).unwrap();
    let server_id = SpiffeId::for_service("skm.test", Service::KmsApi).unwrap();
    let connector = TlsConnector::from(client_identity.client_config(&server_id).unwrap());
    let tcp = TcpStream::connect(addr).await.unwrap();
    let _client = tokio::time::timeout(DEADLINE, connector.connect(ServerName::try_from("localhost").unwrap(), tcp))
        .await
        .expect("handshake timed out")
        .expect("handshake failed");

    let connection = tokio::time::timeout(DEADLINE, incoming.next()).await.unwrap().unwrap().unwrap();
    let peer = connection.connect_info();
    assert!(peer.principal.is_none(), "a per-request port maps no principal");
    let chain = peer.client_certificates.expect("the client presented its certificate");
    assert_eq!(chain.len(), 2, "leaf and keystore CA");
    let info = check_client_chain(&chain, keystore_ca.cert_der(), UnixTime::now()).unwrap();
    assert_eq!(info.fingerprint_sha256, issued.fingerprint_sha256);
    assert_eq!(info.serial_hex, issued.serial_hex);
    assert_eq!(info.not_after, issued.not_after);
    assert_eq!(info.subject_cn.as_deref(), Some("billing-app"));
    // The leaf alone is enough too: the CA needs no intermediate.
    check_client_chain(&chain[..1], keystore_ca.cert_der(), UnixTime::now()).unwrap();

    let other_keystore = KeystoreCa::generate("other", 30).unwrap();
    assert_eq!(check_client_chain(&chain, other_keystore.cert_der(), UnixTime::now()), Err(ClientCertError::Untrusted));
}

#[test]
fn chains_from_elsewhere_are_untrusted() {
    install_crypto_provider();
    let ca = KeystoreCa::generate("payments", 30).unwrap();
    let now = UnixTime::now();

    // Another keystore's CA.
    let other = KeystoreCa::generate("other", 30).unwrap();
    let foreign = other.issue_client("app", 1, PASSWORD).unwrap();
    let foreign_chain = [CertificateDer::from(foreign.cert_der.clone()), other.cert_der().clone()];
    assert_eq!(check_client_chain(&foreign_chain, ca.cert_der(), now), Err(ClientCertError::Untrusted));
    assert_eq!(check_client_chain(&foreign_chain[..1], ca.cert_der(), now), Err(ClientCertError::Untrusted));
    // Presenting the right CA next to a foreign leaf changes nothing.
    let mixed = [CertificateDer::from(foreign.cert_der), ca.cert_der().clone()];
    assert_eq!(check_client_chain(&mixed, ca.cert_der(), now), Err(ClientCertError::Untrusted));

    // A deployment service certificate (serverAuth + clientAuth).
    let deployment = CertificateAuthority::generate("skm.test", "test CA", 1).unwrap();
    let service = deployment.issue_service(Service::KmsApi, &[], 1).unwrap();
    let chain = [der_of(&service.cert_pem)];
    assert_eq!(check_client_chain(&chain, ca.cert_der(), now), Err(ClientCertError::Untrusted));

    // The keystore CA itself as the leaf.
    assert!(check_client_chain(std::slice::from_ref(ca.cert_der()), ca.cert_der(), now).is_err());

    // Nothing, or garbage.
    assert_eq!(check_client_chain(&[], ca.cert_der(), now), Err(ClientCertError::Malformed));
    let garbage = [CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01])];
    assert_eq!(check_client_chain(&garbage, ca.cert_der(), now), Err(ClientCertError::Malformed));
    // A broken trust anchor is the server's fault, not the client's.
    let ok = ca.issue_client("app", 1, PASSWORD).unwrap();
    assert_eq!(
        check_client_chain(&[ok.cert_der.into()], &CertificateDer::from(vec![1, 2, 3]), now),
        Err(ClientCertError::BadCa)
    );
}

#[test]
fn validity_period_is_enforced() {
    install_crypto_provider();
    let ca = KeystoreCa::generate("payments", 30).unwrap();
    let now = now_secs();

    let expired = ca.issue_client_with_validity("app", now - 10 * DAY, now - DAY, PASSWORD).unwrap();
    assert_eq!(expired.not_after, now - DAY);
    let chain = [CertificateDer::from(expired.cert_der)];
    assert_eq!(check_client_chain(&chain, ca.cert_der(), UnixTime::now()), Err(ClientCertError::Expired));

    let future = ca.issue_client_with_validity("app", now + DAY, now + 10 * DAY, PASSWORD).unwrap();
    let chain = [CertificateDer::from(future.cert_der)];
    assert_eq!(check_client_chain(&chain, ca.cert_der(), UnixTime::now()), Err(ClientCertError::NotYetValid));

    // The same certificate inside its period, through the `now` parameter.
    let at = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now + 2 * DAY).unwrap()));
    check_client_chain(&chain, ca.cert_der(), at).unwrap();

    let fresh = ca.issue_client("app", 3, PASSWORD).unwrap();
    assert!((fresh.not_after - (now + 3 * DAY)).abs() < 60);
    // Never beyond the CA's own end of validity, which webpki doesn't check.
    let ca_not_after = leaf_info(ca.cert_der()).unwrap().not_after;
    let long = ca.issue_client("app", 3650, PASSWORD).unwrap();
    assert_eq!(long.not_after, ca_not_after);
    let late = ca.issue_client_with_validity("app", ca_not_after, ca_not_after + DAY, PASSWORD);
    assert!(matches!(late, Err(PkiError::Validity)));
}

#[test]
fn usage_other_than_client_auth_is_refused() {
    install_crypto_provider();
    let ca = KeystoreCa::generate("payments", 30).unwrap();
    let now = UnixTime::now();

    let server_only = signed_by_keystore_ca(&ca, vec![ExtendedKeyUsagePurpose::ServerAuth]);
    assert_eq!(check_client_chain(&[server_only], ca.cert_der(), now), Err(ClientCertError::WrongUsage));
    // No extended key usage at all: rustls's client verifier would accept
    // it, a keystore does not.
    let no_eku = signed_by_keystore_ca(&ca, vec![]);
    assert_eq!(check_client_chain(&[no_eku], ca.cert_der(), now), Err(ClientCertError::WrongUsage));
    // The control: same path, with clientAuth.
    let client = signed_by_keystore_ca(&ca, vec![ExtendedKeyUsagePurpose::ClientAuth]);
    let info = check_client_chain(&[client], ca.cert_der(), now).unwrap();
    assert_eq!(info.subject_cn.as_deref(), Some("odd usage"));
}

#[test]
fn registered_certificates_are_checked_by_fingerprint_and_validity() {
    install_crypto_provider();
    let now = now_secs();
    let cert = external_cert(now - DAY, now + DAY);
    let other = external_cert(now - DAY, now + DAY);
    let expired = external_cert(now - 10 * DAY, now - DAY);
    let future = external_cert(now + DAY, now + 10 * DAY);

    let fingerprint = |c: &CertificateDer<'_>| leaf_info(c).unwrap().fingerprint_sha256;
    let registered: HashSet<String> = [&cert, &expired, &future].into_iter().map(fingerprint).collect();
    let is_registered = |fp: &str| registered.contains(fp);

    let info = check_registered(&cert, is_registered, now).unwrap();
    assert_eq!(info.subject_cn.as_deref(), Some("external client"));
    assert_eq!(info.not_after, now + DAY);
    assert_eq!(info.fingerprint_sha256.len(), 64);
    assert_eq!(check_registered(&other, is_registered, now), Err(ClientCertError::Unregistered));
    assert_eq!(check_registered(&expired, is_registered, now), Err(ClientCertError::Expired));
    assert_eq!(check_registered(&future, is_registered, now), Err(ClientCertError::NotYetValid));
    // Still checked against its own dates, whatever the clock says.
    assert_eq!(check_registered(&cert, is_registered, now + 2 * DAY), Err(ClientCertError::Expired));

    let garbage = CertificateDer::from(vec![0x30, 0x00]);
    assert!(leaf_info(&garbage).is_none());
    assert_eq!(check_registered(&garbage, is_registered, now), Err(ClientCertError::Malformed));
}

#[test]
fn a_loaded_ca_issues_certificates_that_still_verify() {
    install_crypto_provider();
    let ca = KeystoreCa::generate("payments", 30).unwrap();
    let key_pem = ca.key_pem();
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let reloaded = KeystoreCa::load(ca.cert_pem(), &key_pem).unwrap();
    assert_eq!(reloaded.cert_der(), ca.cert_der());

    let issued = reloaded.issue_client("after-restart", 1, PASSWORD).unwrap();
    let chain = [CertificateDer::from(issued.cert_der)];
    // Against the original CA certificate: the same trust anchor.
    let info = check_client_chain(&chain, ca.cert_der(), UnixTime::now()).unwrap();
    assert_eq!(info.fingerprint_sha256, issued.fingerprint_sha256);

    // A key that isn't the CA's, or a certificate that isn't a CA.
    let other = KeystoreCa::generate("other", 30).unwrap();
    assert!(matches!(KeystoreCa::load(ca.cert_pem(), &other.key_pem()), Err(PkiError::KeyMismatch)));
    let deployment = CertificateAuthority::generate("skm.test", "test CA", 1).unwrap();
    let leaf = deployment.issue_service(Service::KmsApi, &[], 1).unwrap();
    assert!(matches!(KeystoreCa::load(&leaf.cert_pem, &leaf.key_pem), Err(PkiError::NotACa)));
    assert!(matches!(KeystoreCa::load("not PEM", &key_pem), Err(PkiError::BadCaCertificate)));
}

#[test]
fn the_ca_is_a_path_length_zero_client_ca() {
    install_crypto_provider();
    let ca = KeystoreCa::generate("payments", 30).unwrap();
    let parsed = leaf_info(ca.cert_der()).unwrap();
    assert_eq!(parsed.subject_cn.as_deref(), Some("SKM keystore payments client CA"));
    // A CA below it would be one level too many.
    let issuer = Issuer::from_ca_cert_pem(ca.cert_pem(), KeyPair::from_pem(&ca.key_pem()).unwrap()).unwrap();
    let sub_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut sub_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    sub_params.distinguished_name.push(DnType::CommonName, "sub CA");
    sub_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    sub_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    sub_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let sub_cert = sub_params.signed_by(&sub_key, &issuer).unwrap();
    let sub = Issuer::new(sub_params, sub_key);
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut leaf_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &sub).unwrap();
    let chain = [leaf.der().clone(), sub_cert.der().clone()];
    assert_eq!(check_client_chain(&chain, ca.cert_der(), UnixTime::now()), Err(ClientCertError::Untrusted));
}

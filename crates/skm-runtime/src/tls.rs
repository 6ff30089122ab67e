//! rustls configurations for SKM's links, all on the aws-lc-rs provider
//! (TLS 1.3 only, hybrid post-quantum key exchange X25519MLKEM768 preferred).
//!
//! - **Between tiers and for operators**: mutual TLS. Both sides present a
//!   certificate from the deployment CA; clients check that the server is
//!   the SPIFFE identity they meant to reach (not just any certificate of the
//!   CA), servers map the client's SPIFFE id to a [`Principal`] for the
//!   per-RPC allow-list ([`crate::authz`]).
//! - **kms-api's user port**: server-authenticated TLS that *asks* for a
//!   client certificate but doesn't require one. A certificate presented
//!   there must prove possession of its key during the handshake; whether
//!   its chain is acceptable is decided per keystore by kms-api.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};

use crate::identity::SpiffeId;

/// ALPN for gRPC over HTTP/2.
const ALPN_H2: &[u8] = b"h2";

/// Installs aws-lc-rs as the process-wide rustls provider. Call first thing
/// in every `main` and test; later calls are no-ops.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Loading or using certificate files failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("{path}: no {what} found in PEM")]
    Pem {
        /// The file.
        path: PathBuf,
        /// "certificate" or "private key".
        what: &'static str,
    },
    /// The certificate does not carry the identity this process must have.
    #[error("{path}: certificate identity is {found}, expected {expected}")]
    WrongIdentity {
        /// The file.
        path: PathBuf,
        /// What the certificate says.
        found: String,
        /// What was expected.
        expected: SpiffeId,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// The trust roots could not be used.
    #[error("TLS trust roots rejected: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Parses every certificate of a PEM buffer.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, rustls::pki_types::pem::Error> {
    CertificateDer::pem_slice_iter(pem).collect()
}

/// The PEM files of one TLS identity: a CA bundle to trust, a certificate
/// chain and its private key.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Deployment CA certificate(s).
    pub ca: PathBuf,
    /// This side's certificate chain.
    pub cert: PathBuf,
    /// This side's private key.
    pub key: PathBuf,
}

/// A loaded TLS identity.
#[derive(Debug)]
pub struct TlsIdentity {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    id: Option<SpiffeId>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        Self { roots: self.roots.clone(), chain: self.chain.clone(), key: self.key.clone_key(), id: self.id.clone() }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

/// Loads a CA bundle into a root store.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    roots_from_pem(&read(path)?, path)
}

fn roots_from_pem(pem: &[u8], path: &Path) -> Result<RootCertStore, TlsError> {
    let certs = certs_from_pem(pem)
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| TlsError::Pem { path: path.to_owned(), what: "certificate" })?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(TlsError::Rustls)?;
    }
    Ok(roots)
}

impl TlsIdentity {
    /// Loads the files; when `expected` is given, the certificate's SPIFFE id
    /// must be exactly that (a service refuses to start with another
    /// service's certificate).
    pub fn load(files: &TlsFiles, expected: Option<&SpiffeId>) -> Result<Self, TlsError> {
        Self::parse(
            (&read(&files.ca)?, &files.ca),
            (&read(&files.cert)?, &files.cert),
            (&read(&files.key)?, &files.key),
            expected,
        )
    }

    /// An identity from a CA bundle (PEM) and a chain and key already parsed
    /// (e.g. from PKCS#12).
    pub fn from_der(
        ca_pem: &[u8],
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        let roots = roots_from_pem(ca_pem, Path::new("<memory>"))?;
        let id = chain.first().and_then(|leaf| SpiffeId::from_certificate(leaf));
        Ok(Self { roots: Arc::new(roots), chain, key, id })
    }

    /// An identity from PEM in memory (tests, generated credentials).
    pub fn from_pem(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let here = Path::new("<memory>");
        Self::parse((ca_pem, here), (cert_pem, here), (key_pem, here), None)
    }

    fn parse(
        (ca, ca_path): (&[u8], &Path),
        (cert, cert_path): (&[u8], &Path),
        (key, key_path): (&[u8], &Path),
        expected: Option<&SpiffeId>,
    ) -> Result<Self, TlsError> {
        let roots = roots_from_pem(ca, ca_path)?;
        let chain = certs_from_pem(cert)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| TlsError::Pem { path: cert_path.to_owned(), what: "certificate" })?;
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|_| TlsError::Pem { path: key_path.to_owned(), what: "private key" })?;
        let id = SpiffeId::from_certificate(&chain[0]);
        if let Some(expected) = expected
            && id.as_ref() != Some(expected)
        {
            return Err(TlsError::WrongIdentity {
                path: cert_path.to_owned(),
                found: id.map_or_else(|| "none".to_owned(), |i| i.to_string()),
                expected: expected.clone(),
            });
        }
        Ok(Self { roots: Arc::new(roots), chain, key, id })
    }

    /// The SPIFFE id of this identity's certificate.
    pub fn spiffe_id(&self) -> Option<&SpiffeId> {
        self.id.as_ref()
    }

    /// Server config requiring a client certificate from the deployment CA.
    pub fn mtls_server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider()).build()?;
        self.server_config(verifier)
    }

    /// Server config that asks for a client certificate from the
    /// deployment CA without requiring one (kms-api's admin port): a
    /// certificate of another issuer still fails the handshake, and a peer
    /// without one completes TLS only to be refused per RPC by the
    /// allow-list with UNAUTHENTICATED, which says what is missing, where a
    /// failed handshake shows clients only a transport error.
    pub fn mtls_optional_server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
            .allow_unauthenticated()
            .build()?;
        self.server_config(verifier)
    }

    /// Server config that asks for, but doesn't require, a client
    /// certificate of any issuer (kms-api's user port).
    pub fn optional_client_cert_server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        self.server_config(Arc::new(AnyClientCertOptional { provider: provider() }))
    }

    /// Server config that asks for no client certificate (kms-api's web
    /// console: a browser would otherwise offer the user's certificates).
    pub fn no_client_cert_server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }

    fn server_config(&self, verifier: Arc<dyn ClientCertVerifier>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }

    /// Client config presenting this identity and accepting only a server
    /// whose certificate chains to the deployment CA and carries `server`.
    pub fn client_config(&self, server: &SpiffeId) -> Result<Arc<ClientConfig>, TlsError> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::new(self.roots.clone(), server.clone())))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }

    /// Client config for a server outside SKM's PKI (etcd): presents this
    /// identity and checks the server's certificate the WebPKI way, chained
    /// to this identity's CA and naming the host or IP address dialled.
    pub fn web_pki_client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }
}

/// Client config without a client certificate, accepting only a server with
/// SPIFFE id `server` under the CA in `roots`.
pub fn anonymous_client_config(roots: RootCertStore, server: &SpiffeId) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::new(Arc::new(roots), server.clone())))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// Verifies a server by chain to the deployment CA and exact SPIFFE id, as
/// SPIFFE prescribes (host names are not what identifies a tier).
#[derive(Debug)]
struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    expected: SpiffeId,
    provider: Arc<CryptoProvider>,
}

impl SpiffeServerVerifier {
    fn new(roots: Arc<RootCertStore>, expected: SpiffeId) -> Self {
        Self { roots, expected, provider: provider() }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        match SpiffeId::from_certificate(end_entity) {
            Some(id) if id == self.expected => Ok(ServerCertVerified::assertion()),
            _ => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Asks for a client certificate without requiring one, and accepts any
/// chain whose leaf key signs the handshake: which issuers are acceptable
/// depends on the keystore a request names, so kms-api checks the chain per
/// request. The handshake signature still proves the client holds the key.
#[derive(Debug)]
struct AnyClientCertOptional {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCertOptional {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Must at least parse; trust is decided per keystore.
        ParsedCertificate::try_from(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

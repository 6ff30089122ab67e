//! A typed Rust client for SKM, used by the `skm` CLI, the whole-stack tests
//! and the benchmark.
//!
//! A [`Profile`] (TOML, written by `skm dev` or by hand) says where the
//! tiers are and which certificates to use; [`Profile::connect`] makes
//! lazy channels with SPIFFE-checked TLS to each tier. On the [`Skm`] it
//! returns, the user plane is one typed method per RPC ([`keys`]: `encrypt`,
//! `sign`, `secret`, ...) and envelope encryption of data of any size
//! ([`envelope`]: `envelope_encrypt_stream`, ...); every failure is a
//! [`ClientError`]. The generated clients stay reachable ([`Skm::keys`],
//! [`Skm::admin`]) for what has no typed method yet.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use skm_proto::admin::v1::admin_service_client::AdminServiceClient;
use skm_proto::api::v1::key_service_client::KeyServiceClient;
use skm_proto::root::v1::root_key_service_client::RootKeyServiceClient;
use skm_proto::system::v1::system_key_service_client::SystemKeyServiceClient;
use skm_runtime::tls::{TlsFiles, TlsIdentity};
use skm_runtime::{Service, SpiffeId};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

pub use skm_proto::{admin, api, root, system};

pub mod envelope;
pub mod keys;

pub use envelope::Sealed;
pub use keys::{
    DataKey, Decrypted, Encrypted, ItemError, Mac, PublicKey, ReEncrypted, Secret, Signature, SignatureAlgorithm,
    Signed, Verified,
};

/// How long a user-plane call keeps failing over between replicas while
/// they answer UNAVAILABLE ([`Skm::user_call`]): long enough for etcd to
/// elect a new leader and a replica's store calls to time out and move on.
pub const FAILOVER_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// Metadata key of the request id [`Skm::admin_call`] sends with each
/// operator call, the same on every attempt, so that kms-api makes a
/// change once however often it is sent (kms-api's `kms::request_ids`).
pub const REQUEST_ID_METADATA: &str = "x-skm-request-id";

/// Whether a call that failed with `code` goes to another
/// replica: UNAVAILABLE (down, unreachable, not ready, its store can't
/// answer), and UNKNOWN ("transport error") and CANCELLED ("operation was
/// canceled"), which are how a connection broken mid-call surfaces (a
/// replica killed while answering); kms-api answers neither on its own.
/// A refusal on the merits is final.
pub fn fails_over(code: tonic::Code) -> bool {
    matches!(code, tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled)
}

/// A certificate and key pair on disk.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CertFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// Where SKM is and how to reach it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// SPIFFE trust domain of the deployment.
    pub trust_domain: String,
    /// Deployment CA certificate (PEM).
    pub ca: PathBuf,
    /// kms-api user port, `host:port`.
    pub user_endpoint: String,
    /// The user ports of further kms-api replicas (a fleet on etcd): the
    /// typed user-plane calls go round `user_endpoint` and these, and
    /// fail over between them ([`Skm::user_call`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_replicas: Vec<String>,
    /// kms-api's REST/JSON listener, `host:port` (HTTPS under the same CA),
    /// where it is on; for REST clients (docs/REST.md).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rest_endpoint: String,
    /// kms-api admin port, `host:port` (operators only; absent from an
    /// application profile).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub admin_endpoint: String,
    /// The admin ports of further kms-api replicas (operators only): `skm
    /// audit list` and `verify` read every replica's log. Admin calls
    /// otherwise go to `admin_endpoint` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_replicas: Vec<String>,
    /// root-keyd, `host:port` (operators only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub root_keyd: String,
    /// system-keyd, `host:port` (operators only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub system_keyd: String,
    /// Operator certificate for the admin plane and the inner tiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<CertFiles>,
    /// Client certificate for the user port, if the keystore wants one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientCredentials>,
    /// MAC address to assert in `x-skm-client-mac` on user calls (counts
    /// only where the keystore allows asserted MACs and the server can't
    /// read the client's MAC itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_mac: Option<String>,
    /// The tiers' metrics listeners (`host:port`, plain HTTP `GET
    /// /metrics`), by tier name, where they are on (`skm dev` turns them on).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metrics: std::collections::BTreeMap<String, String>,
}

/// A user-port client certificate: PEM files, or a PKCS#12 file (as `skm
/// keystore issue-cert` writes) with a file holding its password.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged, deny_unknown_fields)]
pub enum ClientCredentials {
    /// PEM certificate and key.
    Pem(CertFiles),
    /// PKCS#12 and password file.
    Pkcs12 {
        /// The .p12 file.
        p12: PathBuf,
        /// A file whose first line is the password.
        password_file: PathBuf,
    },
}

/// Why a client call failed: set-up (profile, certificates), the call
/// itself ([`ClientError::Rpc`], with the server's code and message), or
/// local envelope work.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server (or the transport) refused the call.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Rpc(#[from] tonic::Status),
    /// Reading or writing a stream.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// An envelope blob is malformed (its framing; see `skm_crypto::envelope`).
    #[error(transparent)]
    Envelope(#[from] skm_crypto::envelope::EnvelopeError),
    /// An envelope did not decrypt: wrong data, truncated or tampered (opaque).
    #[error("envelope decryption failed")]
    Decrypt,
    /// Local encryption failed (random number generator).
    #[error("envelope encryption failed")]
    Encrypt,
    /// No request id could be made (random number generator).
    #[error("cannot make a request id: the random number generator failed")]
    RequestId,
    /// The profile could not be read.
    #[error("cannot read profile {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The profile is not valid TOML of the expected shape.
    #[error("profile {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Operator verbs without an operator certificate.
    #[error(
        "this is an application profile: it has no [operator] certificate, and admin, root and system verbs \
         need one (use the operator profile, e.g. the profile.toml that `skm dev` writes)"
    )]
    NoOperator,
    /// Certificates could not be loaded.
    #[error(transparent)]
    Tls(#[from] skm_runtime::tls::TlsError),
    /// A bad endpoint.
    #[error(transparent)]
    Address(#[from] skm_runtime::channel::BadAddress),
    /// A bad trust domain.
    #[error(transparent)]
    Identity(#[from] skm_runtime::identity::BadSpiffeId),
    /// A PKCS#12 client certificate could not be read.
    #[error("{path}: {source}")]
    Pkcs12 {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: skm_pki::PkiError,
    },
    /// The client MAC is not a MAC address.
    #[error("client MAC {0:?} is not a MAC address (aa:bb:cc:dd:ee:ff)")]
    BadMac(String),
}

impl ClientError {
    /// The gRPC code of a refused call; `None` for local failures.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Rpc(s) => Some(s.code()),
            _ => None,
        }
    }
}

/// The name of a gRPC code as the protocol spells it ("NOT_FOUND").
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl Profile {
    /// Reads a profile; relative paths are taken from the file's directory.
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ClientError::Read { path: path.to_owned(), source })?;
        let mut profile: Profile = toml::from_str(&text)
            .map_err(|e| ClientError::Parse { path: path.to_owned(), message: e.message().to_owned() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut profile.ca);
        if let Some(files) = profile.operator.as_mut() {
            abs(&mut files.cert);
            abs(&mut files.key);
        }
        match profile.client.as_mut() {
            Some(ClientCredentials::Pem(files)) => {
                abs(&mut files.cert);
                abs(&mut files.key);
            }
            Some(ClientCredentials::Pkcs12 { p12, password_file }) => {
                abs(p12);
                abs(password_file);
            }
            None => {}
        }
        Ok(profile)
    }

    fn id(&self, service: Service) -> Result<SpiffeId, ClientError> {
        Ok(SpiffeId::for_service(&self.trust_domain, service)?)
    }

    fn identity(&self, files: &CertFiles) -> Result<TlsIdentity, ClientError> {
        Ok(TlsIdentity::load(
            &TlsFiles { ca: self.ca.clone(), cert: files.cert.clone(), key: files.key.clone() },
            None,
        )?)
    }

    fn operator_channel(&self, endpoint: &str, service: Service) -> Result<Channel, ClientError> {
        let operator = self.operator.as_ref().ok_or(ClientError::NoOperator)?;
        if endpoint.is_empty() {
            return Err(ClientError::NoOperator);
        }
        let tls = self.identity(operator)?.client_config(&self.id(service)?)?;
        Ok(skm_runtime::channel::lazy_channel(endpoint, tls)?)
    }

    /// A channel to the user port, with the client certificate if the
    /// profile has one.
    pub fn user_channel(&self) -> Result<Channel, ClientError> {
        Ok(skm_runtime::channel::lazy_channel(&self.user_endpoint, self.user_tls()?)?)
    }

    /// A channel to each replica's user port: `user_endpoint`, then
    /// `user_replicas`.
    pub fn user_channels(&self) -> Result<Vec<Channel>, ClientError> {
        let tls = self.user_tls()?;
        std::iter::once(&self.user_endpoint)
            .chain(&self.user_replicas)
            .map(|endpoint| Ok(skm_runtime::channel::lazy_channel(endpoint, tls.clone())?))
            .collect()
    }

    fn user_tls(&self) -> Result<Arc<rustls::ClientConfig>, ClientError> {
        let server = self.id(Service::KmsApi)?;
        let tls = match &self.client {
            Some(ClientCredentials::Pem(files)) => self.identity(files)?.client_config(&server)?,
            Some(ClientCredentials::Pkcs12 { p12, password_file }) => {
                let read = |path: &Path| {
                    std::fs::read(path).map_err(|source| ClientError::Read { path: path.to_owned(), source })
                };
                let data = read(p12)?;
                let password = zeroize::Zeroizing::new(read(password_file)?);
                let password = String::from_utf8_lossy(&password);
                let password = password.lines().next().unwrap_or_default();
                let (chain, key) = skm_pki::client::read_pkcs12(&data, password)
                    .map_err(|source| ClientError::Pkcs12 { path: p12.clone(), source })?;
                let ca = read(&self.ca)?;
                TlsIdentity::from_der(&ca, chain, key)?.client_config(&server)?
            }
            None => skm_runtime::tls::anonymous_client_config(skm_runtime::tls::load_roots(&self.ca)?, &server)?,
        };
        Ok(tls)
    }

    /// Clients for every plane the profile can reach.
    pub fn connect(&self) -> Result<Skm, ClientError> {
        let users = self.user_channels()?.into();
        let (admins, root, system) = match self.operator {
            Some(_) => (
                std::iter::once(&self.admin_endpoint)
                    .chain(&self.admin_replicas)
                    .map(|endpoint| self.operator_channel(endpoint, Service::KmsApi))
                    .collect::<Result<Vec<_>, _>>()?,
                Some(self.operator_channel(&self.root_keyd, Service::RootKeyd)?),
                Some(self.operator_channel(&self.system_keyd, Service::SystemKeyd)?),
            ),
            None => (Vec::new(), None, None),
        };
        let client_mac = match &self.client_mac {
            Some(mac) => {
                let parsed: skm_runtime::neighbours::MacAddr =
                    mac.parse().map_err(|_| ClientError::BadMac(mac.clone()))?;
                Some(MetadataValue::try_from(parsed.to_string()).map_err(|_| ClientError::BadMac(mac.clone()))?)
            }
            None => None,
        };
        Ok(Skm {
            profile: Arc::new(self.clone()),
            users,
            turn: Arc::default(),
            admins: admins.into(),
            root,
            system,
            client_mac: ClientMac(client_mac),
        })
    }
}

/// Channels to SKM's planes. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Skm {
    /// The profile used.
    pub profile: Arc<Profile>,
    /// The user port of each replica, first `user_endpoint`.
    users: Arc<[Channel]>,
    /// Which replica the next user call goes to first (round robin).
    turn: Arc<std::sync::atomic::AtomicUsize>,
    /// The admin port of each replica, first `admin_endpoint` (empty
    /// without an operator certificate).
    admins: Arc<[Channel]>,
    root: Option<Channel>,
    system: Option<Channel>,
    client_mac: ClientMac,
}

/// Metadata key of a client-asserted MAC address.
pub const CLIENT_MAC_METADATA: &str = "x-skm-client-mac";

/// Adds `x-skm-client-mac` to user calls when the profile asserts a MAC.
#[derive(Clone, Debug)]
pub struct ClientMac(Option<MetadataValue<Ascii>>);

impl Interceptor for ClientMac {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(mac) = &self.0 {
            request.metadata_mut().insert(CLIENT_MAC_METADATA, mac.clone());
        }
        Ok(request)
    }
}

/// The user-plane client.
pub type Keys = KeyServiceClient<InterceptedService<Channel, ClientMac>>;

impl Skm {
    /// User plane (encrypt, decrypt, ...) of the next replica in turn
    /// (always `user_endpoint` when the profile names no other).
    pub fn keys(&self) -> Keys {
        let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let channel = self.users[turn % self.users.len()].clone();
        KeyServiceClient::with_interceptor(channel, self.client_mac.clone())
    }

    /// Runs one user-plane call. With one replica it is sent once. With
    /// several it goes to the next in turn (spreading the load), and while
    /// a replica answers UNAVAILABLE (down, unreachable, not ready, or its
    /// store can't answer) or the call breaks off with its connection
    /// (UNKNOWN "transport error", or CANCELLED "operation was canceled"
    /// when the replica died mid-call) it is sent to the others, round after round
    /// with a growing pause, for up to [`FAILOVER_FOR`]. Every user-plane
    /// call is safe to send again: encrypting, signing or generating twice
    /// only yields a second valid result, and none changes stored state.
    pub async fn user_call<Req, T, F, Fut>(&self, request: Req, call: F) -> Result<T, tonic::Status>
    where
        Req: Clone,
        F: Fn(Keys, Req) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        fail_over(self.users.len(), |_| call(self.keys(), request.clone())).await
    }

    /// Runs one operator call on the admin plane with a fresh request id
    /// ([`REQUEST_ID_METADATA`]), sent to `admin_endpoint` first and, while
    /// a replica is down or the call breaks off ([`fails_over`]), to the
    /// profile's `admin_replicas`, for up to [`FAILOVER_FOR`], always with
    /// the same id: kms-api makes a change sent again under an id it has
    /// seen once and answers from the first time, so a retry whose first
    /// attempt did reach the store never applies twice. Reads ignore the
    /// id. Not for the calls that are about one replica (its audit log):
    /// use [`Skm::replica_admins`] for those.
    pub async fn admin_call<Req, T, F, Fut>(&self, request: Req, call: F) -> Result<T, ClientError>
    where
        Req: Clone,
        F: Fn(AdminServiceClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        if self.admins.is_empty() {
            return Err(ClientError::NoOperator);
        }
        let id = new_request_id()?;
        let replicas = self.admins.len();
        let reply = fail_over(replicas, |attempt| {
            let mut request = tonic::Request::new(request.clone());
            request.metadata_mut().insert(REQUEST_ID_METADATA, id.clone());
            call(AdminServiceClient::new(self.admins[attempt % replicas].clone()), request)
        })
        .await?;
        Ok(reply)
    }

    /// The operator plane of each kms-api replica the profile names, with
    /// its `admin_endpoint`: the first is [`Skm::admin`]'s.
    pub fn replica_admins(&self) -> Result<Vec<(String, AdminServiceClient<Channel>)>, ClientError> {
        if self.admins.is_empty() {
            return Err(ClientError::NoOperator);
        }
        let endpoints = std::iter::once(&self.profile.admin_endpoint).chain(&self.profile.admin_replicas);
        Ok(endpoints.zip(self.admins.iter()).map(|(e, c)| (e.clone(), AdminServiceClient::new(c.clone()))).collect())
    }

    /// Operator plane of kms-api, on `admin_endpoint` alone (no request id,
    /// no failover: see [`Skm::admin_call`]).
    pub fn admin(&self) -> Result<AdminServiceClient<Channel>, ClientError> {
        Ok(AdminServiceClient::new(self.admins.first().cloned().ok_or(ClientError::NoOperator)?))
    }

    /// root-keyd (operators: init, unseal, status).
    pub fn root(&self) -> Result<RootKeyServiceClient<Channel>, ClientError> {
        Ok(RootKeyServiceClient::new(self.root.clone().ok_or(ClientError::NoOperator)?))
    }

    /// system-keyd (operators: rotate).
    pub fn system(&self) -> Result<SystemKeyServiceClient<Channel>, ClientError> {
        Ok(SystemKeyServiceClient::new(self.system.clone().ok_or(ClientError::NoOperator)?))
    }

    /// Health of one tier (`grpc.health.v1`), over the operator channels;
    /// kms-api's over the user port when there is no operator.
    pub fn health(&self, service: Service) -> Result<HealthClient<Channel>, ClientError> {
        let channel = match service {
            Service::KmsApi => self.admins.first().unwrap_or(&self.users[0]).clone(),
            Service::RootKeyd => self.root.clone().ok_or(ClientError::NoOperator)?,
            Service::SystemKeyd => self.system.clone().ok_or(ClientError::NoOperator)?,
        };
        Ok(HealthClient::new(channel))
    }
}

/// Sends a call (attempt 0, 1, ... picks the replica) until it is answered:
/// once with one replica; with several, on to the next while one
/// [`fails_over`], round after round with a growing pause, for up to
/// [`FAILOVER_FOR`].
async fn fail_over<T, F, Fut>(replicas: usize, mut attempt: F) -> Result<T, tonic::Status>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = std::time::Instant::now() + FAILOVER_FOR;
    let mut pause = std::time::Duration::from_millis(50);
    let mut sent = 0;
    loop {
        let mut unavailable = None;
        for _ in 0..replicas {
            match attempt(sent).await {
                Ok(reply) => return Ok(reply.into_inner()),
                Err(status) if replicas > 1 && fails_over(status.code()) => {
                    unavailable = Some(status);
                }
                Err(status) => return Err(status),
            }
            sent += 1;
        }
        let status = unavailable.unwrap_or_else(|| tonic::Status::unavailable("no replica answered"));
        if std::time::Instant::now() + pause > deadline {
            return Err(status);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(1));
    }
}

/// A fresh request id: 32 random hex digits.
fn new_request_id() -> Result<MetadataValue<Ascii>, ClientError> {
    let id = skm_crypto::Id::generate().map_err(|_| ClientError::RequestId)?;
    // 32 hex digits are always valid ASCII metadata.
    MetadataValue::try_from(id.to_string()).map_err(|_| ClientError::RequestId)
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    #[test]
    fn only_a_replica_that_is_down_or_broke_off_is_failed_over() {
        for code in [Code::Unavailable, Code::Unknown, Code::Cancelled] {
            assert!(super::fails_over(code), "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::ResourceExhausted,
            Code::DeadlineExceeded,
            Code::Internal,
        ] {
            assert!(!super::fails_over(code), "{code:?}");
        }
    }

    #[tokio::test]
    async fn a_call_moves_on_to_the_next_replica_only_while_one_is_down() {
        use std::sync::Mutex;
        // Replica 0 is down; replica 1 answers.
        let sent = Mutex::new(Vec::new());
        let reply = super::fail_over(2, |attempt| {
            sent.lock().unwrap().push(attempt);
            async move {
                match attempt % 2 {
                    0 => Err(tonic::Status::unavailable("down")),
                    _ => Ok(tonic::Response::new(attempt)),
                }
            }
        })
        .await;
        assert_eq!(reply.unwrap(), 1);
        assert_eq!(*sent.lock().unwrap(), [0, 1]);

        // A refusal on the merits is final.
        let sent = Mutex::new(0);
        let reply: Result<(), _> = super::fail_over(2, |_| {
            *sent.lock().unwrap() += 1;
            async { Err(tonic::Status::not_found("no such key")) }
        })
        .await;
        assert_eq!(reply.unwrap_err().code(), Code::NotFound);
        assert_eq!(*sent.lock().unwrap(), 1);

        // One replica: sent once, even when it is down.
        let sent = Mutex::new(0);
        let reply: Result<(), _> = super::fail_over(1, |_| {
            *sent.lock().unwrap() += 1;
            async { Err(tonic::Status::unavailable("down")) }
        })
        .await;
        assert_eq!(reply.unwrap_err().code(), Code::Unavailable);
        assert_eq!(*sent.lock().unwrap(), 1);
    }

    #[test]
    fn request_ids_are_fresh_each_time() {
        let (a, b) = (super::new_request_id().unwrap(), super::new_request_id().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }
}

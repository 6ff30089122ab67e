//! Entry points of kms-api's fuzz targets (`fuzz/`, cargo feature
//! `fuzzing`; never enabled in a build that ships).
//!
//! [`Harness`] is the domain core on the in-memory store with a loaded
//! system keyring and a real audit log, under the two gRPC front ends.
//! [`Harness::call`] decodes one request message of either plane from
//! bytes and runs it through its handler, so every input goes the way a
//! call from the wire goes: proto → domain request → [`Kms::execute`]
//! (authorisation, audit, the work) → proto. Only the transport (TLS,
//! HTTP/2, the allow-list layer) is left out; the caller the handler sees
//! is chosen by the input.
//!
//! Ids are random, so a fuzzer can't guess one: the harness seeds two
//! keystores and keys of every kind at start, and the input can bind a
//! request's `key_id` and `keystore_id` to one of them.
//!
//! An input is `method | caller | binding | message`:
//!
//! - `method`: an index into [`METHODS`] (modulo its length);
//! - `caller`: bits 0–1 the client address (10.1.2.3 inside the seeded
//!   policy, 192.168.7.7 outside, `::1`, `::ffff:10.9.8.7`); bit 2 present
//!   the client certificate chain issued by the second keystore (otherwise
//!   none on the user plane, a placeholder on the admin plane); bit 3 a
//!   well-formed asserted MAC header, bit 4 a malformed one; bit 5 an
//!   auditor instead of an admin; bit 6 an admin-plane peer without an
//!   operator principal;
//! - `binding`: low nibble `k` > 0 replaces the message's `key_id` (each
//!   item's, in batches) with the `k`-th seeded key, high nibble `s` > 0
//!   its `keystore_id` with the `s`-th seeded keystore (both modulo how
//!   many there are);
//! - `message`: the protobuf encoding of the method's request message.
//!
//! [`Kms::execute`]: crate::kms::Kms::execute

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use prost::Message;
use rustls_pki_types::CertificateDer;
use skm_crypto::Secret32;
use skm_crypto::record::SystemKeyring;
use skm_proto::admin::v1 as admin_pb;
use skm_proto::admin::v1::admin_service_server::AdminService;
use skm_proto::api::v1 as user_pb;
use skm_proto::api::v1::key_service_server::KeyService;
use skm_runtime::{PeerInfo, Principal, Role};
use skm_store::MemoryStore;
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

use crate::audit::AuditLog;
use crate::clock::ManualClock;
use crate::grpc::ASSERTED_MAC_HEADER;
use crate::grpc::admin::AdminApi;
use crate::grpc::user::KeyApi;
use crate::kms::{Kms, RevokedOperators};
use crate::records::Records;
use crate::system_keys::SystemKeys;

/// Every RPC of `skm.api.v1.KeyService` and `skm.admin.v1.AdminService`,
/// in the order an input's first byte indexes them (new RPCs go at the end,
/// so that a saved corpus keeps meaning what it meant).
pub const METHODS: &[&str] = &[
    "api.Encrypt",
    "api.Decrypt",
    "api.GenerateDataKey",
    "api.GenerateDataKeyWithoutPlaintext",
    "api.ReEncrypt",
    "api.BatchEncrypt",
    "api.BatchDecrypt",
    "api.Sign",
    "api.Verify",
    "api.GetPublicKey",
    "api.GetSecret",
    "api.WhoAmI",
    "admin.CreateKeystore",
    "admin.ListKeystores",
    "admin.GetKeystore",
    "admin.UpdateKeystore",
    "admin.DeleteKeystore",
    "admin.IssueClientCertificate",
    "admin.RegisterClientCertificate",
    "admin.RevokeClientCertificate",
    "admin.ListAudit",
    "admin.VerifyAudit",
    "admin.RevokeOperator",
    "admin.CreateKey",
    "admin.CreateSecret",
    "admin.UpdateSecret",
    "admin.ListKeys",
    "admin.DescribeKey",
    "admin.RotateKey",
    "admin.UpdateKey",
    "admin.EnableKey",
    "admin.DisableKey",
    "admin.ScheduleKeyDeletion",
    "admin.CancelKeyDeletion",
    "api.GenerateMac",
    "api.VerifyMac",
    "admin.GetParametersForImport",
    "admin.ImportKeyMaterial",
    "admin.GetSystemKeyStatus",
    "admin.RetireSystemKeyVersion",
    "admin.CreateConsoleSignIn",
];

/// Caller bits of an input's second byte.
pub mod caller {
    /// Client address outside the seeded keystore's allowed range.
    pub const OUTSIDE: u8 = 0x01;
    /// IPv6 client address (with [`OUTSIDE`]: IPv4-mapped inside the range).
    pub const IPV6: u8 = 0x02;
    /// Present the client certificate issued by the second keystore.
    pub const CLIENT_CERT: u8 = 0x04;
    /// A well-formed asserted MAC header.
    pub const ASSERTED_MAC: u8 = 0x08;
    /// A malformed asserted MAC header.
    pub const BAD_ASSERTED_MAC: u8 = 0x10;
    /// An auditor instead of an admin.
    pub const AUDITOR: u8 = 0x20;
    /// No operator principal on the admin plane.
    pub const NO_OPERATOR: u8 = 0x40;
}

/// The domain core and its gRPC front ends on the in-memory store.
pub struct Harness {
    user: KeyApi<MemoryStore>,
    admin: AdminApi<MemoryStore>,
    keystores: Vec<String>,
    keys: Vec<String>,
    client_chain: Arc<Vec<CertificateDer<'static>>>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness").field("keystores", &self.keystores).field("keys", &self.keys).finish_non_exhaustive()
    }
}

/// The harness could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The audit log could not be opened.
    #[error("audit log: {0}")]
    Audit(#[from] crate::audit::AuditError),
    /// Seeding a keystore, key or certificate failed.
    #[error("seeding {what}: {status}")]
    Seed {
        /// What was being created.
        what: &'static str,
        /// The handler's answer.
        status: Status,
    },
}

impl Harness {
    /// A core with a fixed system keyring and its audit log in `dir`,
    /// seeded with two keystores (one admitting 10.0.0.0/8, one requiring a
    /// client certificate), keys of every kind and one issued client
    /// certificate.
    pub async fn new(dir: &Path) -> Result<Self, HarnessError> {
        let mut raw = [7u8; 32];
        let ring = SystemKeyring::new(1, [(1, Secret32::from_array_wiping(&mut raw))].into())
            .map_err(|_| HarnessError::Seed { what: "keyring", status: Status::internal("keyring") })?;
        let keys = SystemKeys::loaded(ring);
        let audit = Arc::new(AuditLog::open(dir, keys.clone()).await?);
        let records = Records::new(MemoryStore::new(), keys);
        let kms = Arc::new(Kms::new(records, Arc::new(ManualClock::new()), 64, audit, RevokedOperators::default()));
        let mut harness = Self {
            user: KeyApi { kms: kms.clone() },
            admin: AdminApi { kms },
            keystores: Vec::new(),
            keys: Vec::new(),
            client_chain: Arc::new(Vec::new()),
        };
        harness.seed().await?;
        Ok(harness)
    }

    async fn seed(&mut self) -> Result<(), HarnessError> {
        let seed = |what| move |status| HarnessError::Seed { what, status };
        for (name, policy) in [
            ("fuzz-ip", admin_pb::Policy { allow_ips: vec!["10.0.0.0/8".into()], ..Default::default() }),
            ("fuzz-cert", admin_pb::Policy { require_cert: true, ..Default::default() }),
        ] {
            let req = admin_pb::CreateKeystoreRequest { name: name.into(), policy: Some(policy), ..Default::default() };
            let done = self.admin.create_keystore(self.request(req, 0)).await.map_err(seed("keystore"))?;
            let id = done.into_inner().keystore.map(|k| k.id).unwrap_or_default();
            self.keystores.push(id);
        }
        use admin_pb::KeyType as T;
        for (keystore, key_type) in
            [(0, T::Aes256), (0, T::Ed25519), (0, T::EcdsaP256), (0, T::Rsa2048), (1, T::Aes256)].into_iter().chain([
                (0, T::HmacSha256),
                (0, T::EcdsaP384),
                (0, T::MlDsa44),
                (0, T::RsaOaep2048),
            ])
        {
            let req = admin_pb::CreateKeyRequest {
                keystore_id: self.keystores[keystore].clone(),
                name: format!("{}-{}", key_type.as_str_name(), keystore),
                key_type: key_type as i32,
                ..Default::default()
            };
            let done = self.admin.create_key(self.request(req, 0)).await.map_err(seed("key"))?;
            self.keys.push(done.into_inner().key_id);
        }
        #[allow(clippy::needless_update, reason = "fields the proto gains keep their defaults")]
        let req = admin_pb::CreateSecretRequest {
            keystore_id: self.keystores[0].clone(),
            name: "secret".into(),
            value: "hunter2-but-longer".into(),
            ..Default::default()
        };
        let done = self.admin.create_secret(self.request(req, 0)).await.map_err(seed("secret"))?;
        self.keys.push(done.into_inner().key_id);
        // A key of origin external, pending import (bring your own key).
        let req = admin_pb::CreateKeyRequest {
            keystore_id: self.keystores[0].clone(),
            name: "external".into(),
            key_type: T::Aes256 as i32,
            origin: admin_pb::KeyOrigin::External as i32,
            ..Default::default()
        };
        let done = self.admin.create_key(self.request(req, 0)).await.map_err(seed("external key"))?;
        self.keys.push(done.into_inner().key_id);
        let password = "fuzz-password";
        let req = admin_pb::IssueClientCertificateRequest {
            keystore_id: self.keystores[1].clone(),
            name: "client".into(),
            days: 30,
            password: password.into(),
        };
        let done = self.admin.issue_client_certificate(self.request(req, 0)).await.map_err(seed("certificate"))?;
        let (chain, _key) = skm_pki::client::read_pkcs12(&done.into_inner().pkcs12, password)
            .map_err(|_| HarnessError::Seed { what: "certificate", status: Status::internal("pkcs12") })?;
        self.client_chain = Arc::new(chain);
        Ok(())
    }

    /// The ids of the seeded keystores, in binding order.
    pub fn keystore_ids(&self) -> &[String] {
        &self.keystores
    }

    /// The ids of the seeded keys, in binding order: AES, Ed25519, ECDSA
    /// P-256, RSA-2048, AES under the second keystore, HMAC-SHA-256, ECDSA
    /// P-384, ML-DSA-44, RSA-OAEP-2048, the secret, an AES key of origin
    /// external (pending import).
    pub fn key_ids(&self) -> &[String] {
        &self.keys
    }

    /// Runs one input (see the module docs). The answer is the handler's;
    /// an undecodable message is INVALID_ARGUMENT, as tonic would answer.
    pub async fn call(&self, input: &[u8]) -> Result<(), Status> {
        let [method, caller, binding, body @ ..] = input else {
            return Err(Status::invalid_argument("input shorter than its 3-byte prefix"));
        };
        let name = METHODS[usize::from(*method) % METHODS.len()];
        let bind = Binding::new(self, *binding);
        let c = *caller;
        macro_rules! run {
            ($api:ident . $rpc:ident ($ty:ty) $(, |$m:ident| $fix:expr)?) => {{
                #[allow(unused_mut)]
                let mut msg = <$ty>::decode(body).map_err(|_| Status::invalid_argument("undecodable message"))?;
                $( { let $m = &mut msg; $fix; } )?
                self.$api.$rpc(self.request(msg, c)).await.map(drop)
            }};
        }
        match name {
            "api.Encrypt" => run!(user.encrypt(user_pb::EncryptRequest), |m| bind.key(&mut m.key_id)),
            "api.Decrypt" => run!(user.decrypt(user_pb::DecryptRequest), |m| bind.key(&mut m.key_id)),
            "api.GenerateDataKey" => {
                run!(user.generate_data_key(user_pb::GenerateDataKeyRequest), |m| bind.key(&mut m.key_id))
            }
            "api.GenerateDataKeyWithoutPlaintext" => {
                run!(user.generate_data_key_without_plaintext(user_pb::GenerateDataKeyRequest), |m| bind
                    .key(&mut m.key_id))
            }
            "api.ReEncrypt" => run!(user.re_encrypt(user_pb::ReEncryptRequest), |m| bind.key(&mut m.key_id)),
            "api.BatchEncrypt" => run!(user.batch_encrypt(user_pb::BatchEncryptRequest), |m| m
                .items
                .iter_mut()
                .for_each(|i| bind.key(&mut i.key_id))),
            "api.BatchDecrypt" => run!(user.batch_decrypt(user_pb::BatchDecryptRequest), |m| m
                .items
                .iter_mut()
                .for_each(|i| bind.key(&mut i.key_id))),
            "api.Sign" => run!(user.sign(user_pb::SignRequest), |m| bind.key(&mut m.key_id)),
            "api.Verify" => run!(user.verify(user_pb::VerifyRequest), |m| bind.key(&mut m.key_id)),
            "api.GetPublicKey" => run!(user.get_public_key(user_pb::GetPublicKeyRequest), |m| bind.key(&mut m.key_id)),
            "api.GetSecret" => run!(user.get_secret(user_pb::GetSecretRequest), |m| bind.key(&mut m.key_id)),
            "api.WhoAmI" => run!(user.who_am_i(user_pb::WhoAmIRequest)),
            "api.GenerateMac" => run!(user.generate_mac(user_pb::GenerateMacRequest), |m| bind.key(&mut m.key_id)),
            "api.VerifyMac" => run!(user.verify_mac(user_pb::VerifyMacRequest), |m| bind.key(&mut m.key_id)),
            "admin.CreateKeystore" => run!(admin.create_keystore(admin_pb::CreateKeystoreRequest)),
            "admin.ListKeystores" => run!(admin.list_keystores(admin_pb::ListKeystoresRequest)),
            "admin.GetKeystore" => {
                run!(admin.get_keystore(admin_pb::GetKeystoreRequest), |m| bind.keystore(&mut m.keystore_id))
            }
            "admin.UpdateKeystore" => {
                run!(admin.update_keystore(admin_pb::UpdateKeystoreRequest), |m| bind.keystore(&mut m.keystore_id))
            }
            "admin.DeleteKeystore" => {
                run!(admin.delete_keystore(admin_pb::GetKeystoreRequest), |m| bind.keystore(&mut m.keystore_id))
            }
            "admin.IssueClientCertificate" => {
                run!(admin.issue_client_certificate(admin_pb::IssueClientCertificateRequest), |m| bind
                    .keystore(&mut m.keystore_id))
            }
            "admin.RegisterClientCertificate" => {
                run!(admin.register_client_certificate(admin_pb::RegisterClientCertificateRequest), |m| bind
                    .keystore(&mut m.keystore_id))
            }
            "admin.RevokeClientCertificate" => {
                run!(admin.revoke_client_certificate(admin_pb::RevokeClientCertificateRequest), |m| bind
                    .keystore(&mut m.keystore_id))
            }
            "admin.ListAudit" => run!(admin.list_audit(admin_pb::ListAuditRequest), |m| {
                bind.keystore(&mut m.keystore_id);
                bind.key(&mut m.key_id)
            }),
            "admin.VerifyAudit" => run!(admin.verify_audit(admin_pb::VerifyAuditRequest)),
            "admin.RevokeOperator" => run!(admin.revoke_operator(admin_pb::RevokeOperatorRequest)),
            "admin.GetSystemKeyStatus" => run!(admin.get_system_key_status(admin_pb::GetSystemKeyStatusRequest)),
            "admin.RetireSystemKeyVersion" => {
                run!(admin.retire_system_key_version(admin_pb::RetireSystemKeyVersionRequest))
            }
            "admin.CreateConsoleSignIn" => run!(admin.create_console_sign_in(admin_pb::CreateConsoleSignInRequest)),
            "admin.CreateKey" => {
                run!(admin.create_key(admin_pb::CreateKeyRequest), |m| bind.keystore(&mut m.keystore_id))
            }
            "admin.CreateSecret" => {
                run!(admin.create_secret(admin_pb::CreateSecretRequest), |m| bind.keystore(&mut m.keystore_id))
            }
            "admin.UpdateSecret" => {
                run!(admin.update_secret(admin_pb::UpdateSecretRequest), |m| bind.key(&mut m.key_id))
            }
            "admin.ListKeys" => {
                run!(admin.list_keys(admin_pb::ListKeysRequest), |m| bind.keystore(&mut m.keystore_id))
            }
            "admin.DescribeKey" => run!(admin.describe_key(admin_pb::DescribeKeyRequest), |m| bind.key(&mut m.key_id)),
            "admin.RotateKey" => run!(admin.rotate_key(admin_pb::RotateKeyRequest), |m| bind.key(&mut m.key_id)),
            "admin.UpdateKey" => run!(admin.update_key(admin_pb::UpdateKeyRequest), |m| bind.key(&mut m.key_id)),
            "admin.EnableKey" => run!(admin.enable_key(admin_pb::KeyIdRequest), |m| bind.key(&mut m.key_id)),
            "admin.DisableKey" => run!(admin.disable_key(admin_pb::KeyIdRequest), |m| bind.key(&mut m.key_id)),
            "admin.ScheduleKeyDeletion" => {
                run!(admin.schedule_key_deletion(admin_pb::ScheduleKeyDeletionRequest), |m| bind.key(&mut m.key_id))
            }
            "admin.CancelKeyDeletion" => {
                run!(admin.cancel_key_deletion(admin_pb::KeyIdRequest), |m| bind.key(&mut m.key_id))
            }
            "admin.GetParametersForImport" => {
                run!(admin.get_parameters_for_import(admin_pb::GetParametersForImportRequest), |m| bind
                    .key(&mut m.key_id))
            }
            "admin.ImportKeyMaterial" => {
                run!(admin.import_key_material(admin_pb::ImportKeyMaterialRequest), |m| bind.key(&mut m.key_id))
            }
            _ => Err(Status::unimplemented(name)),
        }
    }

    /// A request as the accept loop would hand it to a handler of either
    /// plane, with the peer the `caller` bits describe.
    fn request<T>(&self, message: T, c: u8) -> Request<T> {
        let ip = match (c & caller::IPV6 != 0, c & caller::OUTSIDE != 0) {
            (false, false) => IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
            (false, true) => IpAddr::V4(Ipv4Addr::new(192, 168, 7, 7)),
            (true, false) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            (true, true) => IpAddr::V6(Ipv4Addr::new(10, 9, 8, 7).to_ipv6_mapped()),
        };
        let mut peer = PeerInfo::direct(SocketAddr::new(ip, 40_000));
        if c & caller::CLIENT_CERT != 0 {
            peer.client_certificates = Some(self.client_chain.clone());
        }
        if c & caller::NO_OPERATOR == 0 {
            let role = if c & caller::AUDITOR != 0 { Role::Auditor } else { Role::Admin };
            peer.principal = Some(Principal::Operator { name: "fuzz".into(), role });
            if peer.client_certificates.is_none() {
                peer.client_certificates = Some(Arc::new(vec![CertificateDer::from(vec![0x30; 40])]));
            }
        }
        let mut request = Request::new(message);
        if c & caller::ASSERTED_MAC != 0 {
            request.metadata_mut().insert(ASSERTED_MAC_HEADER, MetadataValue::from_static("aa:bb:cc:dd:ee:ff"));
        }
        if c & caller::BAD_ASSERTED_MAC != 0 {
            request.metadata_mut().insert(ASSERTED_MAC_HEADER, MetadataValue::from_static("not-a-mac"));
        }
        request.extensions_mut().insert(peer);
        request
    }
}

/// Which seeded ids an input binds its request to.
struct Binding<'a> {
    key: Option<&'a String>,
    keystore: Option<&'a String>,
}

impl<'a> Binding<'a> {
    fn new(harness: &'a Harness, byte: u8) -> Self {
        let pick = |ids: &'a [String], n: u8| match n {
            0 => None,
            n => ids.get((usize::from(n) - 1) % ids.len().max(1)),
        };
        Self { key: pick(&harness.keys, byte & 0x0f), keystore: pick(&harness.keystores, byte >> 4) }
    }

    fn key(&self, field: &mut String) {
        if let Some(id) = self.key {
            field.clone_from(id);
        }
    }

    fn keystore(&self, field: &mut String) {
        if let Some(id) = self.keystore {
            field.clone_from(id);
        }
    }
}

//! Operator plane: AdminService on the admin port. Converts proto ⇄
//! domain; the core checks the operator's role and revocation and audits
//! every action with the operator's principal and certificate.

use std::sync::Arc;

use skm_crypto::asym::KeyAlgorithm;
use skm_crypto::import::WrappingAlgorithm;
use skm_crypto::mac::MacAlgorithm;
use skm_crypto::rsa_oaep::OaepKeySize;
use skm_proto::admin::v1 as pb;
use skm_proto::admin::v1::admin_service_server::AdminService;
use skm_store::Store;
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use super::operator;
use crate::access::{Mode, PolicyInput};
use crate::audit::{Event, Filter, MacSource, Outcome};
use crate::kms::{self, Kms};
use crate::model::{Key, KeyKind, KeyOrigin, KeyState, Keystore};

/// Operator plane handlers.
pub(crate) struct AdminApi<S> {
    pub(crate) kms: Arc<Kms<S>>,
}

fn policy_input(policy: Option<pb::Policy>, allow_ips: Vec<String>) -> Result<PolicyInput, Status> {
    let Some(p) = policy else {
        return Ok(PolicyInput { allow_ips, ..PolicyInput::default() });
    };
    let mode = match pb::PolicyMode::try_from(p.mode) {
        Ok(pb::PolicyMode::Unspecified | pb::PolicyMode::All) => Mode::All,
        Ok(pb::PolicyMode::Any) => Mode::Any,
        Err(_) => return Err(Status::invalid_argument(format!("policy.mode {} is not ALL or ANY", p.mode))),
    };
    let mut ips = p.allow_ips;
    ips.extend(allow_ips);
    Ok(PolicyInput {
        allow_ips: ips,
        allow_macs: p.allow_macs,
        allow_asserted_mac: p.allow_asserted_mac,
        require_cert: p.require_cert,
        mode,
    })
}

fn keystore_pb(ks: &Keystore) -> pb::Keystore {
    let input = ks.policy.to_input();
    pb::Keystore {
        id: ks.id.to_string(),
        name: ks.name.clone(),
        allow_ips: input.allow_ips.clone(),
        created_at: ks.created_at,
        policy: Some(pb::Policy {
            allow_ips: input.allow_ips,
            allow_macs: input.allow_macs,
            allow_asserted_mac: input.allow_asserted_mac,
            require_cert: input.require_cert,
            mode: match input.mode {
                Mode::All => pb::PolicyMode::All,
                Mode::Any => pb::PolicyMode::Any,
            } as i32,
        }),
        client_ca_pem: ks.ca.cert_pem.clone(),
        alias: ks.alias.clone().unwrap_or_default(),
        certificates: ks
            .certs
            .iter()
            .map(|c| pb::ClientCertificate {
                name: c.name.clone(),
                sha256: c.sha256.clone(),
                origin: if c.issued { "issued" } else { "registered" }.to_owned(),
                not_after: c.not_after,
                revoked: c.revoked,
            })
            .collect(),
    }
}

fn key_type_pb(kind: KeyKind) -> pb::KeyType {
    use pb::KeyType as T;
    match kind {
        KeyKind::Aes256 => T::Aes256,
        KeyKind::Secret => T::Secret,
        KeyKind::Asymmetric(KeyAlgorithm::Ed25519) => T::Ed25519,
        KeyKind::Asymmetric(KeyAlgorithm::EcdsaP256) => T::EcdsaP256,
        KeyKind::Asymmetric(KeyAlgorithm::Rsa2048) => T::Rsa2048,
        KeyKind::Asymmetric(KeyAlgorithm::Rsa3072) => T::Rsa3072,
        KeyKind::Asymmetric(KeyAlgorithm::Rsa4096) => T::Rsa4096,
        KeyKind::Asymmetric(KeyAlgorithm::EcdsaP384) => T::EcdsaP384,
        KeyKind::Asymmetric(KeyAlgorithm::MlDsa44) => T::MlDsa44,
        KeyKind::Asymmetric(KeyAlgorithm::MlDsa65) => T::MlDsa65,
        KeyKind::Asymmetric(KeyAlgorithm::MlDsa87) => T::MlDsa87,
        KeyKind::Hmac(MacAlgorithm::HmacSha256) => T::HmacSha256,
        KeyKind::Hmac(MacAlgorithm::HmacSha384) => T::HmacSha384,
        KeyKind::Hmac(MacAlgorithm::HmacSha512) => T::HmacSha512,
        KeyKind::RsaOaep(OaepKeySize::Rsa2048) => T::RsaOaep2048,
        KeyKind::RsaOaep(OaepKeySize::Rsa3072) => T::RsaOaep3072,
        KeyKind::RsaOaep(OaepKeySize::Rsa4096) => T::RsaOaep4096,
    }
}

fn key_kind(value: i32) -> Result<KeyKind, Status> {
    use pb::KeyType as T;
    match T::try_from(value) {
        Ok(T::Aes256) => Ok(KeyKind::Aes256),
        Ok(T::Ed25519) => Ok(KeyKind::Asymmetric(KeyAlgorithm::Ed25519)),
        Ok(T::EcdsaP256) => Ok(KeyKind::Asymmetric(KeyAlgorithm::EcdsaP256)),
        Ok(T::Rsa2048) => Ok(KeyKind::Asymmetric(KeyAlgorithm::Rsa2048)),
        Ok(T::Rsa3072) => Ok(KeyKind::Asymmetric(KeyAlgorithm::Rsa3072)),
        Ok(T::Rsa4096) => Ok(KeyKind::Asymmetric(KeyAlgorithm::Rsa4096)),
        Ok(T::EcdsaP384) => Ok(KeyKind::Asymmetric(KeyAlgorithm::EcdsaP384)),
        Ok(T::MlDsa44) => Ok(KeyKind::Asymmetric(KeyAlgorithm::MlDsa44)),
        Ok(T::MlDsa65) => Ok(KeyKind::Asymmetric(KeyAlgorithm::MlDsa65)),
        Ok(T::MlDsa87) => Ok(KeyKind::Asymmetric(KeyAlgorithm::MlDsa87)),
        Ok(T::HmacSha256) => Ok(KeyKind::Hmac(MacAlgorithm::HmacSha256)),
        Ok(T::HmacSha384) => Ok(KeyKind::Hmac(MacAlgorithm::HmacSha384)),
        Ok(T::HmacSha512) => Ok(KeyKind::Hmac(MacAlgorithm::HmacSha512)),
        Ok(T::RsaOaep2048) => Ok(KeyKind::RsaOaep(OaepKeySize::Rsa2048)),
        Ok(T::RsaOaep3072) => Ok(KeyKind::RsaOaep(OaepKeySize::Rsa3072)),
        Ok(T::RsaOaep4096) => Ok(KeyKind::RsaOaep(OaepKeySize::Rsa4096)),
        Ok(T::Secret) => Err(Status::invalid_argument("key_type KEY_TYPE_SECRET is created with CreateSecret")),
        Ok(T::Unspecified) | Err(_) => Err(Status::invalid_argument(format!(
            "key_type {value} is not a key type (AES_256, ED25519, ECDSA_P256, ECDSA_P384, RSA_2048, RSA_3072, \
             RSA_4096, ML_DSA_44, ML_DSA_65, ML_DSA_87, HMAC_SHA256, HMAC_SHA384, HMAC_SHA512, RSA_OAEP_2048, \
             RSA_OAEP_3072, RSA_OAEP_4096)"
        ))),
    }
}

/// What operators see of a key: never its material.
fn key_info(key: &Key) -> pb::KeyInfo {
    let (state, deletion_at) = match key.state {
        KeyState::Enabled => (pb::KeyState::Enabled, 0),
        KeyState::Disabled => (pb::KeyState::Disabled, 0),
        KeyState::PendingImport => (pb::KeyState::PendingImport, 0),
        KeyState::PendingDeletion { deletion_at } => (pb::KeyState::PendingDeletion, deletion_at),
    };
    pb::KeyInfo {
        key_id: key.id.to_string(),
        keystore_id: key.keystore_id.to_string(),
        name: key.name.clone(),
        key_type: key_type_pb(key.kind()) as i32,
        state: state as i32,
        current_version: key.material.newest_version(),
        versions: key
            .material
            .version_infos()
            .into_iter()
            .map(|(version, created_at)| pb::KeyVersionInfo { version, created_at })
            .collect(),
        rotation_period_days: key.rotation_period_days,
        next_rotation_at: key.next_rotation_at,
        deletion_at,
        created_at: key.created_at,
        last_used_at: key.last_used(),
        max_versions: key.secret_versions_kept().unwrap_or(0),
        origin: match key.origin {
            KeyOrigin::Skm => pb::KeyOrigin::Skm,
            KeyOrigin::External => pb::KeyOrigin::External,
        } as i32,
    }
}

fn key_origin(value: i32) -> Result<KeyOrigin, Status> {
    match pb::KeyOrigin::try_from(value) {
        Ok(pb::KeyOrigin::Unspecified | pb::KeyOrigin::Skm) => Ok(KeyOrigin::Skm),
        Ok(pb::KeyOrigin::External) => Ok(KeyOrigin::External),
        Err(_) => Err(Status::invalid_argument(format!("origin {value} is not SKM or EXTERNAL"))),
    }
}

fn wrapping_algorithm(value: i32) -> Result<WrappingAlgorithm, Status> {
    match pb::WrappingAlgorithm::try_from(value) {
        Ok(pb::WrappingAlgorithm::RsaesOaepSha256) => Ok(WrappingAlgorithm::RsaesOaepSha256),
        Ok(pb::WrappingAlgorithm::RsaAesKeyWrapSha256) => Ok(WrappingAlgorithm::RsaAesKeyWrapSha256),
        Ok(pb::WrappingAlgorithm::Unspecified) | Err(_) => Err(Status::invalid_argument(format!(
            "wrapping_algorithm {value} is not RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256"
        ))),
    }
}

fn wrapping_algorithm_pb(algorithm: WrappingAlgorithm) -> pb::WrappingAlgorithm {
    match algorithm {
        WrappingAlgorithm::RsaesOaepSha256 => pb::WrappingAlgorithm::RsaesOaepSha256,
        WrappingAlgorithm::RsaAesKeyWrapSha256 => pb::WrappingAlgorithm::RsaAesKeyWrapSha256,
    }
}

fn wrapping_key_size(value: i32) -> Result<OaepKeySize, Status> {
    match pb::WrappingKeySpec::try_from(value) {
        Ok(pb::WrappingKeySpec::Rsa3072) => Ok(OaepKeySize::Rsa3072),
        Ok(pb::WrappingKeySpec::Rsa4096) => Ok(OaepKeySize::Rsa4096),
        Ok(pb::WrappingKeySpec::Unspecified) | Err(_) => {
            Err(Status::invalid_argument(format!("wrapping_key_spec {value} is not RSA_3072 or RSA_4096")))
        }
    }
}

fn audit_loss_pb(lost: crate::audit::Lost, acknowledged_seq: u64) -> pb::AuditLoss {
    pb::AuditLoss { first_missing_seq: lost.first_seq, last_missing_seq: lost.last_seq, acknowledged_seq }
}

fn audit_entry_pb((seq, e): (u64, Event)) -> pb::AuditEntry {
    pb::AuditEntry {
        seq,
        time: e.time,
        operation: e.operation,
        keystore_id: e.keystore_id.unwrap_or_default(),
        key_id: e.key_id.unwrap_or_default(),
        key_version: e.key_version.unwrap_or(0),
        caller_ip: e.caller.ip.unwrap_or_default(),
        caller_mac: e.caller.mac.unwrap_or_default(),
        caller_mac_source: match e.caller.mac_source {
            Some(MacSource::Verified) => "verified",
            Some(MacSource::Asserted) => "asserted",
            None => "",
        }
        .to_owned(),
        caller_cert_sha256: e.caller.cert_sha256.unwrap_or_default(),
        operator: e.caller.operator.unwrap_or_default(),
        result: match e.result {
            Outcome::Intent => "intent".to_owned(),
            Outcome::Allowed => "allowed".to_owned(),
            Outcome::Denied(why) => format!("denied: {why}"),
            Outcome::Failed(code) => format!("failed: {code}"),
        },
        front_end: e.front_end.unwrap_or_default(),
        system_principal: e.caller.system.unwrap_or_default(),
        intent_seq: e.intent_seq.unwrap_or(0),
        lost_first_seq: e.lost.map_or(0, |l| l.first_seq),
        lost_last_seq: e.lost.map_or(0, |l| l.last_seq),
    }
}

impl<S: Store + Clone> AdminApi<S> {
    /// Runs a key-changing or key-reading operation and answers its key.
    async fn key<O>(&self, request: &Request<impl Send>, op: O) -> Result<Response<pb::KeyInfo>, Status>
    where
        O: kms::Operation<Output = Arc<Key>>,
    {
        let caller = operator(request)?;
        let key = self.kms.execute(&caller, op).await?;
        Ok(Response::new(key_info(&key)))
    }

    /// Runs a keystore operation and answers the keystore.
    async fn keystore<O>(&self, request: &Request<impl Send>, op: O) -> Result<Response<pb::Keystore>, Status>
    where
        O: kms::Operation<Output = Arc<Keystore>>,
    {
        let caller = operator(request)?;
        let ks = self.kms.execute(&caller, op).await?;
        Ok(Response::new(keystore_pb(&ks)))
    }
}

#[tonic::async_trait]
impl<S: Store + Clone> AdminService for AdminApi<S> {
    async fn create_keystore(
        &self,
        request: Request<pb::CreateKeystoreRequest>,
    ) -> Result<Response<pb::CreateKeystoreResponse>, Status> {
        let caller = operator(&request)?;
        let req = request.into_inner();
        let policy = policy_input(req.policy, req.allow_ips)?;
        let alias = (!req.alias.is_empty()).then_some(req.alias);
        let ks = self.kms.execute(&caller, kms::CreateKeystore { name: req.name, policy, alias }).await?;
        Ok(Response::new(pb::CreateKeystoreResponse { keystore: Some(keystore_pb(&ks)) }))
    }

    async fn list_keystores(
        &self,
        request: Request<pb::ListKeystoresRequest>,
    ) -> Result<Response<pb::ListKeystoresResponse>, Status> {
        let caller = operator(&request)?;
        let keystores = self.kms.execute(&caller, kms::ListKeystores).await?;
        Ok(Response::new(pb::ListKeystoresResponse { keystores: keystores.iter().map(keystore_pb).collect() }))
    }

    async fn get_keystore(&self, request: Request<pb::GetKeystoreRequest>) -> Result<Response<pb::Keystore>, Status> {
        let keystore_id = request.get_ref().keystore_id.clone();
        self.keystore(&request, kms::GetKeystore { keystore_id }).await
    }

    async fn update_keystore(
        &self,
        request: Request<pb::UpdateKeystoreRequest>,
    ) -> Result<Response<pb::Keystore>, Status> {
        let req = request.get_ref().clone();
        // Absent policy with an alias: only the alias changes.
        let policy = match (req.policy, &req.alias) {
            (None, Some(_)) => None,
            (policy, _) => Some(policy_input(policy, Vec::new())?),
        };
        let alias = req.alias.map(|a| (!a.is_empty()).then_some(a));
        self.keystore(&request, kms::UpdateKeystore { keystore_id: req.keystore_id, policy, alias }).await
    }

    async fn delete_keystore(
        &self,
        request: Request<pb::GetKeystoreRequest>,
    ) -> Result<Response<pb::DeleteKeystoreResponse>, Status> {
        let caller = operator(&request)?;
        let keystore_id = request.into_inner().keystore_id;
        self.kms.execute(&caller, kms::DeleteKeystore { keystore_id }).await?;
        Ok(Response::new(pb::DeleteKeystoreResponse {}))
    }

    async fn issue_client_certificate(
        &self,
        request: Request<pb::IssueClientCertificateRequest>,
    ) -> Result<Response<pb::IssueClientCertificateResponse>, Status> {
        let caller = operator(&request)?;
        let req = request.into_inner();
        let op = kms::IssueClientCertificate {
            keystore_id: req.keystore_id,
            name: req.name,
            days: req.days,
            password: Zeroizing::new(req.password),
        };
        let issued = self.kms.execute(&caller, op).await?;
        Ok(Response::new(pb::IssueClientCertificateResponse {
            pkcs12: issued.pkcs12,
            sha256: issued.sha256,
            not_after: issued.not_after,
        }))
    }

    async fn register_client_certificate(
        &self,
        request: Request<pb::RegisterClientCertificateRequest>,
    ) -> Result<Response<pb::Keystore>, Status> {
        let req = request.get_ref().clone();
        let op = kms::RegisterClientCertificate { keystore_id: req.keystore_id, name: req.name, sha256: req.sha256 };
        self.keystore(&request, op).await
    }

    async fn revoke_client_certificate(
        &self,
        request: Request<pb::RevokeClientCertificateRequest>,
    ) -> Result<Response<pb::Keystore>, Status> {
        let req = request.get_ref().clone();
        let op = kms::RevokeClientCertificate { keystore_id: req.keystore_id, certificate: req.certificate };
        self.keystore(&request, op).await
    }

    async fn create_key(
        &self,
        request: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::CreateKeyResponse>, Status> {
        let caller = operator(&request)?;
        let req = request.into_inner();
        let op = kms::CreateKey {
            keystore_id: req.keystore_id,
            name: req.name,
            kind: key_kind(req.key_type)?,
            rotation_period_days: req.rotation_period_days,
            origin: key_origin(req.origin)?,
        };
        let key = self.kms.execute(&caller, op).await?;
        Ok(Response::new(pb::CreateKeyResponse { key_id: key.id.to_string(), version: key.material.newest_version() }))
    }

    async fn get_parameters_for_import(
        &self,
        request: Request<pb::GetParametersForImportRequest>,
    ) -> Result<Response<pb::GetParametersForImportResponse>, Status> {
        let caller = operator(&request)?;
        let req = request.into_inner();
        let op = kms::GetParametersForImport {
            key_id: req.key_id,
            wrapping_algorithm: wrapping_algorithm(req.wrapping_algorithm)?,
            wrapping_key_size: wrapping_key_size(req.wrapping_key_spec)?,
        };
        let params = self.kms.execute(&caller, op).await?;
        Ok(Response::new(pb::GetParametersForImportResponse {
            key_id: params.key.id.to_string(),
            public_key: params.public_key_der,
            public_key_pem: params.public_key_pem,
            import_token: params.import_token.as_bytes().to_vec(),
            parameters_valid_to: params.valid_to,
            wrapping_algorithm: wrapping_algorithm_pb(params.wrapping_algorithm) as i32,
        }))
    }

    async fn import_key_material(
        &self,
        request: Request<pb::ImportKeyMaterialRequest>,
    ) -> Result<Response<pb::KeyInfo>, Status> {
        let caller = operator(&request)?;
        let req = request.into_inner();
        let op = kms::ImportKeyMaterial {
            key_id: req.key_id,
            import_token: req.import_token,
            encrypted_key_material: req.encrypted_key_material,
        };
        let key = self.kms.execute(&caller, op).await?;
        Ok(Response::new(key_info(&key)))
    }

    async fn create_secret(
        &self,
        request: Request<pb::CreateSecretRequest>,
    ) -> Result<Response<pb::CreateSecretResponse>, Status> {
        let caller = operator(&request)?;
        let req = request.into_inner();
        let value = Zeroizing::new(req.value.into_bytes());
        let key = self
            .kms
            .execute(
                &caller,
                kms::CreateSecret {
                    keystore_id: req.keystore_id,
                    name: req.name,
                    value,
                    max_versions: req.max_versions,
                },
            )
            .await?;
        Ok(Response::new(pb::CreateSecretResponse { key_id: key.id.to_string(), version: 1 }))
    }

    async fn update_secret(
        &self,
        request: Request<pb::UpdateSecretRequest>,
    ) -> Result<Response<pb::UpdateSecretResponse>, Status> {
        let caller = operator(&request)?;
        let req = request.into_inner();
        let value = Zeroizing::new(req.value.into_bytes());
        let key = self.kms.execute(&caller, kms::UpdateSecret { key_id: req.key_id, value }).await?;
        Ok(Response::new(pb::UpdateSecretResponse { version: key.material.newest_version() }))
    }

    async fn list_keys(&self, request: Request<pb::ListKeysRequest>) -> Result<Response<pb::ListKeysResponse>, Status> {
        let caller = operator(&request)?;
        let keystore_id = request.into_inner().keystore_id;
        let keys = self.kms.execute(&caller, kms::ListKeys { keystore_id }).await?;
        Ok(Response::new(pb::ListKeysResponse { keys: keys.iter().map(|k| key_info(k)).collect() }))
    }

    async fn describe_key(&self, request: Request<pb::DescribeKeyRequest>) -> Result<Response<pb::KeyInfo>, Status> {
        let key_id = request.get_ref().key_id.clone();
        self.key(&request, kms::DescribeKey { key_id }).await
    }

    async fn rotate_key(&self, request: Request<pb::RotateKeyRequest>) -> Result<Response<pb::KeyInfo>, Status> {
        let key_id = request.get_ref().key_id.clone();
        self.key(&request, kms::RotateKey { key_id }).await
    }

    async fn update_key(&self, request: Request<pb::UpdateKeyRequest>) -> Result<Response<pb::KeyInfo>, Status> {
        let req = request.get_ref().clone();
        self.key(&request, kms::UpdateKey { key_id: req.key_id, rotation_period_days: req.rotation_period_days }).await
    }

    async fn enable_key(&self, request: Request<pb::KeyIdRequest>) -> Result<Response<pb::KeyInfo>, Status> {
        let key_id = request.get_ref().key_id.clone();
        self.key(&request, kms::EnableKey { key_id }).await
    }

    async fn disable_key(&self, request: Request<pb::KeyIdRequest>) -> Result<Response<pb::KeyInfo>, Status> {
        let key_id = request.get_ref().key_id.clone();
        self.key(&request, kms::DisableKey { key_id }).await
    }

    async fn schedule_key_deletion(
        &self,
        request: Request<pb::ScheduleKeyDeletionRequest>,
    ) -> Result<Response<pb::KeyInfo>, Status> {
        let req = request.get_ref().clone();
        self.key(&request, kms::ScheduleKeyDeletion { key_id: req.key_id, pending_days: req.pending_days }).await
    }

    async fn cancel_key_deletion(&self, request: Request<pb::KeyIdRequest>) -> Result<Response<pb::KeyInfo>, Status> {
        let key_id = request.get_ref().key_id.clone();
        self.key(&request, kms::CancelKeyDeletion { key_id }).await
    }

    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let caller = operator(&request)?;
        let req = request.into_inner();
        let none_if_empty = |s: String| if s.is_empty() { None } else { Some(s) };
        let filter = Filter {
            keystore_id: none_if_empty(req.keystore_id),
            key_id: none_if_empty(req.key_id),
            since: (req.since > 0).then_some(req.since),
            limit: Some(if req.limit == 0 { 1000 } else { req.limit as usize }),
            ..Filter::default()
        };
        let paging = req.page_size > 0 || !req.page_token.is_empty();
        let page = paging.then_some(kms::ListAuditPage { token: req.page_token, size: req.page_size });
        let page = self.kms.execute(&caller, kms::ListAudit { filter, page }).await?;
        Ok(Response::new(pb::ListAuditResponse {
            entries: page.entries.into_iter().map(audit_entry_pb).collect(),
            next_page_token: page.next_token.unwrap_or_default(),
        }))
    }

    async fn verify_audit(
        &self,
        request: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        let caller = operator(&request)?;
        let report = self.kms.execute(&caller, kms::VerifyAudit).await?;
        let broken = report.first_broken.as_ref();
        Ok(Response::new(pb::VerifyAuditResponse {
            entries: report.entries,
            intact: broken.is_none(),
            first_broken_line: broken.map_or(0, |b| b.line),
            first_broken_seq: broken.and_then(|b| b.seq).unwrap_or(0),
            reason: broken.map(|b| b.reason.to_string()).unwrap_or_default(),
            acknowledged_losses: report.acknowledged.iter().map(|&(lost, seq)| audit_loss_pb(lost, seq)).collect(),
        }))
    }

    async fn acknowledge_audit_loss(
        &self,
        request: Request<pb::AcknowledgeAuditLossRequest>,
    ) -> Result<Response<pb::AcknowledgeAuditLossResponse>, Status> {
        let caller = operator(&request)?;
        let done = self.kms.execute(&caller, kms::AcknowledgeAuditLoss).await?;
        Ok(Response::new(pb::AcknowledgeAuditLossResponse { loss: Some(audit_loss_pb(done.lost, done.seq)) }))
    }

    async fn revoke_operator(
        &self,
        request: Request<pb::RevokeOperatorRequest>,
    ) -> Result<Response<pb::RevokeOperatorResponse>, Status> {
        let caller = operator(&request)?;
        let sha256 = request.into_inner().sha256;
        self.kms.execute(&caller, kms::RevokeOperator { sha256 }).await?;
        Ok(Response::new(pb::RevokeOperatorResponse {}))
    }

    async fn get_system_key_status(
        &self,
        request: Request<pb::GetSystemKeyStatusRequest>,
    ) -> Result<Response<pb::GetSystemKeyStatusResponse>, Status> {
        let caller = operator(&request)?;
        let s = self.kms.execute(&caller, kms::GetSystemKeyStatus).await?;
        Ok(Response::new(pb::GetSystemKeyStatusResponse {
            active_version: s.active_version,
            versions: s
                .versions
                .into_iter()
                .map(|(version, records)| pb::SystemKeyVersionStatus { version, records })
                .collect(),
            retired_versions: s.retired_versions,
            reseal_target_version: s.reseal.target,
            reseal_done: s.reseal.done,
            reseal_scanned: s.reseal.scanned,
            reseal_resealed: s.reseal.resealed,
        }))
    }

    async fn retire_system_key_version(
        &self,
        request: Request<pb::RetireSystemKeyVersionRequest>,
    ) -> Result<Response<pb::RetireSystemKeyVersionResponse>, Status> {
        let caller = operator(&request)?;
        let version = request.into_inner().version;
        let done = self.kms.execute(&caller, kms::RetireSystemKeyVersion { version }).await?;
        Ok(Response::new(pb::RetireSystemKeyVersionResponse {
            version: done.version,
            system_keyd_dropped: done.system_keyd_dropped,
        }))
    }

    async fn create_console_sign_in(
        &self,
        request: Request<pb::CreateConsoleSignInRequest>,
    ) -> Result<Response<pb::CreateConsoleSignInResponse>, Status> {
        let caller = operator(&request)?;
        let sign_in = self.kms.execute(&caller, kms::CreateConsoleSignIn).await?;
        Ok(Response::new(pb::CreateConsoleSignInResponse {
            url: sign_in.url.to_string(),
            code: sign_in.code.to_string(),
            expires_at: sign_in.expires_at,
        }))
    }
}

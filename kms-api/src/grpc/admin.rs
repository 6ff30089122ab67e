//! Operator plane: AdminService on the admin port. Every action is audited
//! with the operator's principal and certificate.

use std::sync::Arc;

use skm_crypto::asym::KeyAlgorithm;
use skm_proto::admin::v1 as pb;
use skm_proto::admin::v1::admin_service_server::AdminService;
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use super::admin_call;
use crate::access::{Mode, PolicyInput};
use crate::audit::{Filter, MacSource, Outcome};
use crate::kms::{Call, Kms, KmsError, NewKey};
use crate::model::{Key, KeyKind, KeyState, Keystore};

/// Operator plane handlers.
pub(crate) struct AdminApi {
    pub(crate) kms: Arc<Kms>,
    pub(crate) revoked: Arc<crate::operators::RevokedOperators>,
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
    }
}

fn key_kind(value: i32) -> Result<KeyKind, KmsError> {
    use pb::KeyType as T;
    match T::try_from(value) {
        Ok(T::Aes256) => Ok(KeyKind::Aes256),
        Ok(T::Ed25519) => Ok(KeyKind::Asymmetric(KeyAlgorithm::Ed25519)),
        Ok(T::EcdsaP256) => Ok(KeyKind::Asymmetric(KeyAlgorithm::EcdsaP256)),
        Ok(T::Rsa2048) => Ok(KeyKind::Asymmetric(KeyAlgorithm::Rsa2048)),
        Ok(T::Rsa3072) => Ok(KeyKind::Asymmetric(KeyAlgorithm::Rsa3072)),
        Ok(T::Rsa4096) => Ok(KeyKind::Asymmetric(KeyAlgorithm::Rsa4096)),
        Ok(T::Secret) => {
            Err(KmsError::InvalidArgument("key_type KEY_TYPE_SECRET is created with CreateSecret".to_owned()))
        }
        Ok(T::Unspecified) | Err(_) => Err(KmsError::InvalidArgument(format!(
            "key_type {value} is not a key type (AES_256, ED25519, ECDSA_P256, RSA_2048, RSA_3072, RSA_4096)"
        ))),
    }
}

/// What operators see of a key: never its material.
fn key_info(key: &Key) -> pb::KeyInfo {
    let (state, deletion_at) = match key.state {
        KeyState::Enabled => (pb::KeyState::Enabled, 0),
        KeyState::Disabled => (pb::KeyState::Disabled, 0),
        KeyState::PendingDeletion { deletion_at } => (pb::KeyState::PendingDeletion, deletion_at),
    };
    pb::KeyInfo {
        key_id: key.id.to_string(),
        keystore_id: key.keystore_id.to_string(),
        name: key.name.clone(),
        key_type: key_type_pb(key.kind) as i32,
        state: state as i32,
        current_version: key.newest().map_or(0, |v| v.version),
        versions: key
            .versions
            .iter()
            .map(|v| pb::KeyVersionInfo { version: v.version, created_at: v.created_at })
            .collect(),
        rotation_period_days: key.rotation_period_days,
        next_rotation_at: key.next_rotation_at,
        deletion_at,
        created_at: key.created_at,
        last_used_at: key.last_used(),
    }
}

impl AdminApi {
    /// Runs a key-changing action audited under `operation`.
    async fn key_action<F, Fut>(
        &self,
        operation: &'static str,
        request: &Request<impl Send>,
        key_id: &str,
        action: F,
    ) -> Result<Response<pb::KeyInfo>, Status>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Arc<Key>, KmsError>>,
    {
        let mut call = admin_call(operation, request)?;
        call.named_key(key_id);
        let result = action().await;
        if let Ok(key) = &result {
            call.touch_key(key);
            if let Some(v) = key.newest() {
                call.used_version(v.version);
            }
        }
        let key = self.kms.finish(call, result).await?;
        Ok(Response::new(key_info(&key)))
    }

    async fn keystore_action<F, Fut>(&self, call: Call, action: F) -> Result<Response<pb::Keystore>, Status>
    where
        F: FnOnce(Call) -> Fut,
        Fut: std::future::Future<Output = (Call, Result<Arc<Keystore>, KmsError>)>,
    {
        let (call, result) = action(call).await;
        let ks = self.kms.finish(call, result).await?;
        Ok(Response::new(keystore_pb(&ks)))
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_keystore(
        &self,
        request: Request<pb::CreateKeystoreRequest>,
    ) -> Result<Response<pb::CreateKeystoreResponse>, Status> {
        let mut call = admin_call("CreateKeystore", &request)?;
        let req = request.into_inner();
        let policy = policy_input(req.policy, req.allow_ips)?;
        let result = self.kms.create_keystore(&mut call, &req.name, &policy).await;
        let ks = self.kms.finish(call, result).await?;
        Ok(Response::new(pb::CreateKeystoreResponse { keystore: Some(keystore_pb(&ks)) }))
    }

    async fn list_keystores(
        &self,
        request: Request<pb::ListKeystoresRequest>,
    ) -> Result<Response<pb::ListKeystoresResponse>, Status> {
        let call = admin_call("ListKeystores", &request)?;
        let result = self.kms.list_keystores().await;
        let keystores = self.kms.finish(call, result).await?;
        Ok(Response::new(pb::ListKeystoresResponse { keystores: keystores.iter().map(keystore_pb).collect() }))
    }

    async fn get_keystore(&self, request: Request<pb::GetKeystoreRequest>) -> Result<Response<pb::Keystore>, Status> {
        let mut call = admin_call("GetKeystore", &request)?;
        let id = request.into_inner().keystore_id;
        call.named_keystore(&id);
        let result = self.kms.get_keystore(&id).await;
        let ks = self.kms.finish(call, result).await?;
        Ok(Response::new(keystore_pb(&ks)))
    }

    async fn update_keystore(
        &self,
        request: Request<pb::UpdateKeystoreRequest>,
    ) -> Result<Response<pb::Keystore>, Status> {
        let call = admin_call("UpdateKeystore", &request)?;
        let req = request.into_inner();
        let policy = policy_input(req.policy, Vec::new())?;
        self.keystore_action(call, |mut call| async move {
            let r = self.kms.update_keystore(&mut call, &req.keystore_id, &policy).await;
            (call, r)
        })
        .await
    }

    async fn delete_keystore(
        &self,
        request: Request<pb::GetKeystoreRequest>,
    ) -> Result<Response<pb::DeleteKeystoreResponse>, Status> {
        let mut call = admin_call("DeleteKeystore", &request)?;
        let id = request.into_inner().keystore_id;
        let result = self.kms.delete_keystore(&mut call, &id).await;
        self.kms.finish(call, result).await?;
        Ok(Response::new(pb::DeleteKeystoreResponse {}))
    }

    async fn issue_client_certificate(
        &self,
        request: Request<pb::IssueClientCertificateRequest>,
    ) -> Result<Response<pb::IssueClientCertificateResponse>, Status> {
        let mut call = admin_call("IssueClientCertificate", &request)?;
        let req = request.into_inner();
        let password = Zeroizing::new(req.password);
        let result =
            self.kms.issue_client_certificate(&mut call, &req.keystore_id, &req.name, req.days, password).await;
        let issued = self.kms.finish(call, result).await?;
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
        let call = admin_call("RegisterClientCertificate", &request)?;
        let req = request.into_inner();
        self.keystore_action(call, |mut call| async move {
            let r = self.kms.register_client_certificate(&mut call, &req.keystore_id, &req.name, &req.sha256).await;
            (call, r)
        })
        .await
    }

    async fn revoke_client_certificate(
        &self,
        request: Request<pb::RevokeClientCertificateRequest>,
    ) -> Result<Response<pb::Keystore>, Status> {
        let call = admin_call("RevokeClientCertificate", &request)?;
        let req = request.into_inner();
        self.keystore_action(call, |mut call| async move {
            let r = self.kms.revoke_client_certificate(&mut call, &req.keystore_id, &req.certificate).await;
            (call, r)
        })
        .await
    }

    async fn create_key(
        &self,
        request: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::CreateKeyResponse>, Status> {
        let mut call = admin_call("CreateKey", &request)?;
        let req = request.into_inner();
        call.named_keystore(&req.keystore_id);
        let result = match key_kind(req.key_type) {
            Ok(kind) => {
                let spec = NewKey {
                    keystore_id: &req.keystore_id,
                    name: &req.name,
                    kind,
                    rotation_period_days: req.rotation_period_days,
                };
                self.kms.create_key(spec).await
            }
            Err(e) => Err(e),
        };
        if let Ok(key) = &result {
            call.touch_key(key);
            call.used_version(1);
        }
        let key = self.kms.finish(call, result).await?;
        Ok(Response::new(pb::CreateKeyResponse { key_id: key.id.to_string(), version: 1 }))
    }

    async fn create_secret(
        &self,
        request: Request<pb::CreateSecretRequest>,
    ) -> Result<Response<pb::CreateSecretResponse>, Status> {
        let mut call = admin_call("CreateSecret", &request)?;
        let req = request.into_inner();
        call.named_keystore(&req.keystore_id);
        let value = Zeroizing::new(req.value.into_bytes());
        let result = self.kms.create_secret(&req.keystore_id, &req.name, &value).await;
        if let Ok(key) = &result {
            call.touch_key(key);
            call.used_version(1);
        }
        let key = self.kms.finish(call, result).await?;
        Ok(Response::new(pb::CreateSecretResponse { key_id: key.id.to_string(), version: 1 }))
    }

    async fn update_secret(
        &self,
        request: Request<pb::UpdateSecretRequest>,
    ) -> Result<Response<pb::UpdateSecretResponse>, Status> {
        let req_key = request.get_ref().key_id.clone();
        let value = Zeroizing::new(request.get_ref().value.clone().into_bytes());
        let info =
            self.key_action("UpdateSecret", &request, &req_key, || self.kms.update_secret(&req_key, &value)).await?;
        Ok(Response::new(pb::UpdateSecretResponse { version: info.get_ref().current_version }))
    }

    async fn list_keys(&self, request: Request<pb::ListKeysRequest>) -> Result<Response<pb::ListKeysResponse>, Status> {
        let mut call = admin_call("ListKeys", &request)?;
        let id = request.into_inner().keystore_id;
        call.named_keystore(&id);
        let result = self.kms.list_keys(&id).await;
        let keys = self.kms.finish(call, result).await?;
        Ok(Response::new(pb::ListKeysResponse { keys: keys.iter().map(|k| key_info(k)).collect() }))
    }

    async fn describe_key(&self, request: Request<pb::DescribeKeyRequest>) -> Result<Response<pb::KeyInfo>, Status> {
        let id = request.get_ref().key_id.clone();
        self.key_action("DescribeKey", &request, &id, || self.kms.describe_key(&id)).await
    }

    async fn rotate_key(&self, request: Request<pb::RotateKeyRequest>) -> Result<Response<pb::KeyInfo>, Status> {
        let id = request.get_ref().key_id.clone();
        self.key_action("RotateKey", &request, &id, || self.kms.rotate_key(&id)).await
    }

    async fn update_key(&self, request: Request<pb::UpdateKeyRequest>) -> Result<Response<pb::KeyInfo>, Status> {
        let (id, days) = (request.get_ref().key_id.clone(), request.get_ref().rotation_period_days);
        self.key_action("UpdateKey", &request, &id, || self.kms.update_rotation(&id, days)).await
    }

    async fn enable_key(&self, request: Request<pb::KeyIdRequest>) -> Result<Response<pb::KeyInfo>, Status> {
        let id = request.get_ref().key_id.clone();
        self.key_action("EnableKey", &request, &id, || self.kms.enable_key(&id)).await
    }

    async fn disable_key(&self, request: Request<pb::KeyIdRequest>) -> Result<Response<pb::KeyInfo>, Status> {
        let id = request.get_ref().key_id.clone();
        self.key_action("DisableKey", &request, &id, || self.kms.disable_key(&id)).await
    }

    async fn schedule_key_deletion(
        &self,
        request: Request<pb::ScheduleKeyDeletionRequest>,
    ) -> Result<Response<pb::KeyInfo>, Status> {
        let (id, days) = (request.get_ref().key_id.clone(), request.get_ref().pending_days);
        self.key_action("ScheduleKeyDeletion", &request, &id, || self.kms.schedule_deletion(&id, days)).await
    }

    async fn cancel_key_deletion(&self, request: Request<pb::KeyIdRequest>) -> Result<Response<pb::KeyInfo>, Status> {
        let id = request.get_ref().key_id.clone();
        self.key_action("CancelKeyDeletion", &request, &id, || self.kms.cancel_deletion(&id)).await
    }

    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let call = admin_call("ListAudit", &request)?;
        let req = request.into_inner();
        let none_if_empty = |s: String| if s.is_empty() { None } else { Some(s) };
        let filter = Filter {
            keystore_id: none_if_empty(req.keystore_id),
            key_id: none_if_empty(req.key_id),
            since: (req.since > 0).then_some(req.since),
            limit: Some(if req.limit == 0 { 1000 } else { req.limit as usize }),
        };
        let result = self.kms.audit().list(&filter).await.map_err(|e| KmsError::Internal(Box::new(e)));
        let entries = self.kms.finish(call, result).await?;
        let entries = entries
            .into_iter()
            .map(|(seq, e)| pb::AuditEntry {
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
                    Outcome::Allowed => "allowed".to_owned(),
                    Outcome::Denied(why) => format!("denied: {why}"),
                    Outcome::Failed(code) => format!("failed: {code}"),
                },
            })
            .collect();
        Ok(Response::new(pb::ListAuditResponse { entries }))
    }

    async fn verify_audit(
        &self,
        request: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        let call = admin_call("VerifyAudit", &request)?;
        let result = self.kms.audit().verify().await.map_err(|e| match e {
            crate::audit::AuditError::KeysNotLoaded => KmsError::NotReady(crate::bootstrap::NotReady),
            other => KmsError::Internal(Box::new(other)),
        });
        let report = self.kms.finish(call, result).await?;
        let broken = report.first_broken.as_ref();
        Ok(Response::new(pb::VerifyAuditResponse {
            entries: report.entries,
            intact: broken.is_none(),
            first_broken_line: broken.map_or(0, |b| b.line),
            first_broken_seq: broken.and_then(|b| b.seq).unwrap_or(0),
            reason: broken.map(|b| b.reason.to_string()).unwrap_or_default(),
        }))
    }

    async fn revoke_operator(
        &self,
        request: Request<pb::RevokeOperatorRequest>,
    ) -> Result<Response<pb::RevokeOperatorResponse>, Status> {
        let call = admin_call("RevokeOperator", &request)?;
        let sha = request.into_inner().sha256;
        let result = self.kms.revoke_operator(&sha).await;
        if let Ok(sha) = &result {
            self.revoked.revoke(sha);
        }
        let sha = self.kms.finish(call, result).await?;
        tracing::warn!(sha256 = sha, "operator certificate revoked");
        Ok(Response::new(pb::RevokeOperatorResponse {}))
    }
}

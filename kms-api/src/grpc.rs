//! The gRPC edge of kms-api: user plane (KeyService) and operator plane
//! (AdminService). Converts proto ⇄ domain and errors → status codes.

use std::net::IpAddr;
use std::sync::Arc;

use skm_crypto::asym::{KeyAlgorithm, SignatureAlgorithm};
use skm_proto::admin::v1 as admin_pb;
use skm_proto::admin::v1::admin_service_server::AdminService;
use skm_proto::api::v1 as api_pb;
use skm_proto::api::v1::key_service_server::KeyService;
use skm_runtime::PeerInfo;
use tonic::{Request, Response, Status};

use crate::kms::signing::Signed;
use crate::kms::{Kms, KmsError, NewKey};
use crate::model::{Key, KeyKind, KeyState, Keystore};

impl From<KmsError> for Status {
    fn from(e: KmsError) -> Self {
        match e {
            KmsError::InvalidArgument(m) => Status::invalid_argument(m),
            KmsError::NotFound(m) => Status::not_found(m),
            KmsError::AlreadyExists(m) => Status::already_exists(m),
            KmsError::FailedPrecondition(m) => Status::failed_precondition(m),
            KmsError::Denied(d) => Status::permission_denied(d.to_string()),
            KmsError::DecryptFailed => Status::invalid_argument("decryption failed"),
            KmsError::NotReady(n) => Status::unavailable(n.to_string()),
            KmsError::Aborted => Status::aborted("concurrent modification; retry"),
            KmsError::Internal(source) => {
                tracing::error!(error = %skm_runtime::daemon::error_chain(&*source), "internal error");
                Status::internal("internal error")
            }
        }
    }
}

fn item_error(e: KmsError) -> api_pb::ItemError {
    let status = Status::from(e);
    api_pb::ItemError { code: status.code() as i32, message: status.message().to_owned() }
}

fn client_ip<T>(request: &Request<T>) -> Result<IpAddr, Status> {
    request
        .extensions()
        .get::<PeerInfo>()
        .map(|p| p.remote_addr.ip())
        .ok_or_else(|| Status::internal("internal error"))
}

fn signature_algorithm(value: i32) -> Result<Option<SignatureAlgorithm>, Status> {
    use api_pb::SignatureAlgorithm as P;
    match P::try_from(value) {
        Ok(P::Unspecified) => Ok(None),
        Ok(P::Ed25519) => Ok(Some(SignatureAlgorithm::Ed25519)),
        Ok(P::EcdsaSha256) => Ok(Some(SignatureAlgorithm::EcdsaSha256)),
        Ok(P::RsaPssSha256) => Ok(Some(SignatureAlgorithm::RsaPssSha256)),
        Ok(P::RsaPkcs1Sha256) => Ok(Some(SignatureAlgorithm::RsaPkcs1Sha256)),
        Err(_) => Err(Status::invalid_argument(format!("algorithm {value} is not a known signature algorithm"))),
    }
}

fn signature_algorithm_pb(alg: SignatureAlgorithm) -> api_pb::SignatureAlgorithm {
    use api_pb::SignatureAlgorithm as P;
    match alg {
        SignatureAlgorithm::Ed25519 => P::Ed25519,
        SignatureAlgorithm::EcdsaSha256 => P::EcdsaSha256,
        SignatureAlgorithm::RsaPssSha256 => P::RsaPssSha256,
        SignatureAlgorithm::RsaPkcs1Sha256 => P::RsaPkcs1Sha256,
    }
}

fn sign_input<'a>(
    message: Option<&'a api_pb::sign_request::Input>,
) -> Result<Signed<'a>, Status> {
    match message {
        Some(api_pb::sign_request::Input::Message(m)) => Ok(Signed::Message(m)),
        Some(api_pb::sign_request::Input::Digest(d)) => Ok(Signed::Digest(d)),
        None => Err(Status::invalid_argument("one of message or digest is required")),
    }
}

fn verify_input<'a>(
    message: Option<&'a api_pb::verify_request::Input>,
) -> Result<Signed<'a>, Status> {
    match message {
        Some(api_pb::verify_request::Input::Message(m)) => Ok(Signed::Message(m)),
        Some(api_pb::verify_request::Input::Digest(d)) => Ok(Signed::Digest(d)),
        None => Err(Status::invalid_argument("one of message or digest is required")),
    }
}

/// User plane handlers.
pub(crate) struct KeyApi {
    pub(crate) kms: Arc<Kms>,
}

#[tonic::async_trait]
impl KeyService for KeyApi {
    async fn encrypt(&self, request: Request<api_pb::EncryptRequest>) -> Result<Response<api_pb::EncryptResponse>, Status> {
        let client = client_ip(&request)?;
        let req = request.into_inner();
        let (ciphertext, key_version) = self.kms.encrypt(client, &req.key_id, &req.plaintext, &req.aad).await?;
        Ok(Response::new(api_pb::EncryptResponse { ciphertext, key_version }))
    }

    async fn decrypt(&self, request: Request<api_pb::DecryptRequest>) -> Result<Response<api_pb::DecryptResponse>, Status> {
        let client = client_ip(&request)?;
        let req = request.into_inner();
        let (plaintext, key_version) = self.kms.decrypt(client, &req.key_id, &req.ciphertext, &req.aad).await?;
        Ok(Response::new(api_pb::DecryptResponse { plaintext: plaintext.to_vec(), key_version }))
    }

    async fn generate_data_key(
        &self,
        request: Request<api_pb::GenerateDataKeyRequest>,
    ) -> Result<Response<api_pb::GenerateDataKeyResponse>, Status> {
        let client = client_ip(&request)?;
        let req = request.into_inner();
        let dk = self.kms.generate_data_key(client, &req.key_id, &req.aad, false).await?;
        Ok(Response::new(api_pb::GenerateDataKeyResponse {
            plaintext: dk.plaintext.map(|k| k.danger_expose().to_vec()).unwrap_or_default(),
            ciphertext: dk.ciphertext,
            key_version: dk.version,
        }))
    }

    async fn generate_data_key_without_plaintext(
        &self,
        request: Request<api_pb::GenerateDataKeyRequest>,
    ) -> Result<Response<api_pb::GenerateDataKeyResponse>, Status> {
        let client = client_ip(&request)?;
        let req = request.into_inner();
        let dk = self.kms.generate_data_key(client, &req.key_id, &req.aad, true).await?;
        Ok(Response::new(api_pb::GenerateDataKeyResponse {
            plaintext: Vec::new(),
            ciphertext: dk.ciphertext,
            key_version: dk.version,
        }))
    }

    async fn re_encrypt(&self, request: Request<api_pb::ReEncryptRequest>) -> Result<Response<api_pb::ReEncryptResponse>, Status> {
        let client = client_ip(&request)?;
        let req = request.into_inner();
        let (ciphertext, source_key_version, key_version) =
            self.kms.re_encrypt(client, &req.key_id, &req.ciphertext, &req.aad).await?;
        Ok(Response::new(api_pb::ReEncryptResponse { ciphertext, source_key_version, key_version }))
    }

    async fn batch_encrypt(
        &self,
        request: Request<api_pb::BatchEncryptRequest>,
    ) -> Result<Response<api_pb::BatchEncryptResponse>, Status> {
        let client = client_ip(&request)?;
        let items: Vec<_> = request.into_inner().items.into_iter().map(|i| (i.key_id, i.plaintext, i.aad)).collect();
        let results = self
            .kms
            .batch_encrypt(client, &items)
            .await?
            .into_iter()
            .map(|r| api_pb::BatchEncryptResult {
                result: Some(match r {
                    Ok((ciphertext, key_version)) => {
                        api_pb::batch_encrypt_result::Result::Ok(api_pb::EncryptResponse { ciphertext, key_version })
                    }
                    Err(e) => api_pb::batch_encrypt_result::Result::Error(item_error(e)),
                }),
            })
            .collect();
        Ok(Response::new(api_pb::BatchEncryptResponse { results }))
    }

    async fn batch_decrypt(
        &self,
        request: Request<api_pb::BatchDecryptRequest>,
    ) -> Result<Response<api_pb::BatchDecryptResponse>, Status> {
        let client = client_ip(&request)?;
        let items: Vec<_> = request.into_inner().items.into_iter().map(|i| (i.key_id, i.ciphertext, i.aad)).collect();
        let results = self
            .kms
            .batch_decrypt(client, &items)
            .await?
            .into_iter()
            .map(|r| api_pb::BatchDecryptResult {
                result: Some(match r {
                    Ok((plaintext, key_version)) => api_pb::batch_decrypt_result::Result::Ok(api_pb::DecryptResponse {
                        plaintext: plaintext.to_vec(),
                        key_version,
                    }),
                    Err(e) => api_pb::batch_decrypt_result::Result::Error(item_error(e)),
                }),
            })
            .collect();
        Ok(Response::new(api_pb::BatchDecryptResponse { results }))
    }

    async fn sign(&self, request: Request<api_pb::SignRequest>) -> Result<Response<api_pb::SignResponse>, Status> {
        let client = client_ip(&request)?;
        let req = request.into_inner();
        let algorithm = signature_algorithm(req.algorithm)?;
        let (signature, key_version, alg) =
            self.kms.sign(client, &req.key_id, sign_input(req.input.as_ref())?, algorithm).await?;
        Ok(Response::new(api_pb::SignResponse {
            signature,
            key_version,
            algorithm: signature_algorithm_pb(alg) as i32,
        }))
    }

    async fn verify(&self, request: Request<api_pb::VerifyRequest>) -> Result<Response<api_pb::VerifyResponse>, Status> {
        let client = client_ip(&request)?;
        let req = request.into_inner();
        let algorithm = signature_algorithm(req.algorithm)?;
        let verified = self
            .kms
            .verify(client, &req.key_id, verify_input(req.input.as_ref())?, &req.signature, algorithm, req.key_version)
            .await?;
        Ok(Response::new(api_pb::VerifyResponse { valid: verified.is_some(), key_version: verified.unwrap_or(0) }))
    }

    async fn get_public_key(
        &self,
        request: Request<api_pb::GetPublicKeyRequest>,
    ) -> Result<Response<api_pb::GetPublicKeyResponse>, Status> {
        let client = client_ip(&request)?;
        let req = request.into_inner();
        let (spki_der, pem, key_version, alg) = self.kms.public_key(client, &req.key_id, req.key_version).await?;
        Ok(Response::new(api_pb::GetPublicKeyResponse { spki_der, pem, key_version, key_algorithm: alg.name().to_owned() }))
    }

    async fn get_secret(&self, request: Request<api_pb::GetSecretRequest>) -> Result<Response<api_pb::GetSecretResponse>, Status> {
        let client = client_ip(&request)?;
        let req = request.into_inner();
        let (value, version) = self.kms.get_secret(client, &req.key_id, req.version).await?;
        let value = String::from_utf8(value.to_vec()).map_err(|_| Status::internal("internal error"))?;
        Ok(Response::new(api_pb::GetSecretResponse { value, version }))
    }
}

/// Operator plane handlers.
pub(crate) struct AdminApi {
    pub(crate) kms: Arc<Kms>,
}

fn keystore_pb(ks: &Keystore) -> admin_pb::Keystore {
    admin_pb::Keystore {
        id: ks.id.to_string(),
        name: ks.name.clone(),
        allow_ips: ks.policy.allow_ips.iter().map(ToString::to_string).collect(),
        created_at: ks.created_at,
    }
}

fn key_type_pb(kind: KeyKind) -> admin_pb::KeyType {
    use admin_pb::KeyType as T;
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

fn key_kind(value: i32) -> Result<KeyKind, Status> {
    use admin_pb::KeyType as T;
    match T::try_from(value) {
        Ok(T::Aes256) => Ok(KeyKind::Aes256),
        Ok(T::Ed25519) => Ok(KeyKind::Asymmetric(KeyAlgorithm::Ed25519)),
        Ok(T::EcdsaP256) => Ok(KeyKind::Asymmetric(KeyAlgorithm::EcdsaP256)),
        Ok(T::Rsa2048) => Ok(KeyKind::Asymmetric(KeyAlgorithm::Rsa2048)),
        Ok(T::Rsa3072) => Ok(KeyKind::Asymmetric(KeyAlgorithm::Rsa3072)),
        Ok(T::Rsa4096) => Ok(KeyKind::Asymmetric(KeyAlgorithm::Rsa4096)),
        Ok(T::Secret) => Err(Status::invalid_argument("key_type KEY_TYPE_SECRET is created with CreateSecret")),
        Ok(T::Unspecified) | Err(_) => Err(Status::invalid_argument(format!(
            "key_type {value} is not a key type (AES_256, ED25519, ECDSA_P256, RSA_2048, RSA_3072, RSA_4096)"
        ))),
    }
}

/// What operators see of a key: never its material.
pub(crate) fn key_info(key: &Key) -> admin_pb::KeyInfo {
    let (state, deletion_at) = match key.state {
        KeyState::Enabled => (admin_pb::KeyState::Enabled, 0),
        KeyState::Disabled => (admin_pb::KeyState::Disabled, 0),
        KeyState::PendingDeletion { deletion_at } => (admin_pb::KeyState::PendingDeletion, deletion_at),
    };
    admin_pb::KeyInfo {
        key_id: key.id.to_string(),
        keystore_id: key.keystore_id.to_string(),
        name: key.name.clone(),
        key_type: key_type_pb(key.kind) as i32,
        state: state as i32,
        current_version: key.newest().map_or(0, |v| v.version),
        versions: key
            .versions
            .iter()
            .map(|v| admin_pb::KeyVersionInfo { version: v.version, created_at: v.created_at })
            .collect(),
        rotation_period_days: key.rotation_period_days,
        next_rotation_at: key.next_rotation_at,
        deletion_at,
        created_at: key.created_at,
        last_used_at: key.last_used(),
    }
}

fn operator<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<PeerInfo>()
        .and_then(|p| p.principal.as_ref())
        .map_or_else(|| "unknown".to_owned(), ToString::to_string)
}

fn info(key: &Key) -> Response<admin_pb::KeyInfo> {
    Response::new(key_info(key))
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_keystore(
        &self,
        request: Request<admin_pb::CreateKeystoreRequest>,
    ) -> Result<Response<admin_pb::CreateKeystoreResponse>, Status> {
        let who = operator(&request);
        let req = request.into_inner();
        let ks = self.kms.create_keystore(&req.name, &req.allow_ips).await?;
        tracing::info!(operator = who, keystore_id = %ks.id, name = ks.name, "keystore created");
        Ok(Response::new(admin_pb::CreateKeystoreResponse { keystore: Some(keystore_pb(&ks)) }))
    }

    async fn list_keystores(
        &self,
        _: Request<admin_pb::ListKeystoresRequest>,
    ) -> Result<Response<admin_pb::ListKeystoresResponse>, Status> {
        let keystores = self.kms.list_keystores().await?;
        Ok(Response::new(admin_pb::ListKeystoresResponse { keystores: keystores.iter().map(keystore_pb).collect() }))
    }

    async fn create_key(
        &self,
        request: Request<admin_pb::CreateKeyRequest>,
    ) -> Result<Response<admin_pb::CreateKeyResponse>, Status> {
        let who = operator(&request);
        let req = request.into_inner();
        let kind = key_kind(req.key_type)?;
        let key = self
            .kms
            .create_key(NewKey {
                keystore_id: &req.keystore_id,
                name: &req.name,
                kind,
                rotation_period_days: req.rotation_period_days,
            })
            .await?;
        tracing::info!(operator = who, key_id = %key.id, "key created by operator");
        Ok(Response::new(admin_pb::CreateKeyResponse { key_id: key.id.to_string(), version: 1 }))
    }

    async fn create_secret(
        &self,
        request: Request<admin_pb::CreateSecretRequest>,
    ) -> Result<Response<admin_pb::CreateSecretResponse>, Status> {
        let who = operator(&request);
        let req = request.into_inner();
        let key = self.kms.create_secret(&req.keystore_id, &req.name, req.value.as_bytes()).await?;
        tracing::info!(operator = who, key_id = %key.id, "secret created by operator");
        Ok(Response::new(admin_pb::CreateSecretResponse { key_id: key.id.to_string(), version: 1 }))
    }

    async fn update_secret(
        &self,
        request: Request<admin_pb::UpdateSecretRequest>,
    ) -> Result<Response<admin_pb::UpdateSecretResponse>, Status> {
        let who = operator(&request);
        let req = request.into_inner();
        let key = self.kms.update_secret(&req.key_id, req.value.as_bytes()).await?;
        let version = key.newest().map_or(0, |v| v.version);
        tracing::info!(operator = who, key_id = %key.id, version, "secret updated");
        Ok(Response::new(admin_pb::UpdateSecretResponse { version }))
    }

    async fn list_keys(&self, request: Request<admin_pb::ListKeysRequest>) -> Result<Response<admin_pb::ListKeysResponse>, Status> {
        let keys = self.kms.list_keys(&request.into_inner().keystore_id).await?;
        Ok(Response::new(admin_pb::ListKeysResponse { keys: keys.iter().map(|k| key_info(k)).collect() }))
    }

    async fn describe_key(&self, request: Request<admin_pb::DescribeKeyRequest>) -> Result<Response<admin_pb::KeyInfo>, Status> {
        Ok(info(&*self.kms.describe_key(&request.into_inner().key_id).await?))
    }

    async fn rotate_key(&self, request: Request<admin_pb::RotateKeyRequest>) -> Result<Response<admin_pb::KeyInfo>, Status> {
        let who = operator(&request);
        let key = self.kms.rotate_key(&request.into_inner().key_id).await?;
        tracing::info!(operator = who, key_id = %key.id, "key rotated by operator");
        Ok(info(&key))
    }

    async fn update_key(&self, request: Request<admin_pb::UpdateKeyRequest>) -> Result<Response<admin_pb::KeyInfo>, Status> {
        let req = request.into_inner();
        Ok(info(&*self.kms.update_rotation(&req.key_id, req.rotation_period_days).await?))
    }

    async fn enable_key(&self, request: Request<admin_pb::KeyIdRequest>) -> Result<Response<admin_pb::KeyInfo>, Status> {
        Ok(info(&*self.kms.enable_key(&request.into_inner().key_id).await?))
    }

    async fn disable_key(&self, request: Request<admin_pb::KeyIdRequest>) -> Result<Response<admin_pb::KeyInfo>, Status> {
        Ok(info(&*self.kms.disable_key(&request.into_inner().key_id).await?))
    }

    async fn schedule_key_deletion(
        &self,
        request: Request<admin_pb::ScheduleKeyDeletionRequest>,
    ) -> Result<Response<admin_pb::KeyInfo>, Status> {
        let req = request.into_inner();
        Ok(info(&*self.kms.schedule_deletion(&req.key_id, req.pending_days).await?))
    }

    async fn cancel_key_deletion(&self, request: Request<admin_pb::KeyIdRequest>) -> Result<Response<admin_pb::KeyInfo>, Status> {
        Ok(info(&*self.kms.cancel_deletion(&request.into_inner().key_id).await?))
    }
}

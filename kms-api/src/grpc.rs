//! The gRPC edge of kms-api: user plane (KeyService) and operator plane
//! (AdminService). Converts proto ⇄ domain and errors → status codes.

use std::net::IpAddr;
use std::sync::Arc;

use skm_proto::admin::v1 as admin_pb;
use skm_proto::admin::v1::admin_service_server::AdminService;
use skm_proto::api::v1 as api_pb;
use skm_proto::api::v1::key_service_server::KeyService;
use skm_runtime::PeerInfo;
use tonic::{Request, Response, Status};

use crate::kms::{Kms, KmsError};
use crate::model::{KeyKind, Keystore};

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

fn client_ip<T>(request: &Request<T>) -> Result<IpAddr, Status> {
    request.extensions().get::<PeerInfo>().map(|p| p.remote_addr.ip()).ok_or_else(|| Status::internal("internal error"))
}

/// User plane handlers.
pub(crate) struct KeyApi {
    pub(crate) kms: Arc<Kms>,
}

#[tonic::async_trait]
impl KeyService for KeyApi {
    async fn encrypt(
        &self,
        request: Request<api_pb::EncryptRequest>,
    ) -> Result<Response<api_pb::EncryptResponse>, Status> {
        let client = client_ip(&request)?;
        let req = request.into_inner();
        let (ciphertext, key_version) = self.kms.encrypt(client, &req.key_id, &req.plaintext, &req.aad).await?;
        Ok(Response::new(api_pb::EncryptResponse { ciphertext, key_version }))
    }

    async fn decrypt(
        &self,
        request: Request<api_pb::DecryptRequest>,
    ) -> Result<Response<api_pb::DecryptResponse>, Status> {
        let client = client_ip(&request)?;
        let req = request.into_inner();
        let (plaintext, key_version) = self.kms.decrypt(client, &req.key_id, &req.ciphertext, &req.aad).await?;
        Ok(Response::new(api_pb::DecryptResponse { plaintext: plaintext.to_vec(), key_version }))
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

fn operator<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<PeerInfo>()
        .and_then(|p| p.principal.as_ref())
        .map_or_else(|| "unknown".to_owned(), ToString::to_string)
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
        let kind = match admin_pb::KeyType::try_from(req.key_type) {
            Ok(admin_pb::KeyType::Aes256) => KeyKind::Aes256,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "key_type {} is not supported; use KEY_TYPE_AES_256",
                    req.key_type
                )));
            }
        };
        let key = self.kms.create_key(&req.keystore_id, &req.name, kind).await?;
        tracing::info!(operator = who, key_id = %key.id, "key created by operator");
        Ok(Response::new(admin_pb::CreateKeyResponse { key_id: key.id.to_string(), version: 1 }))
    }
}

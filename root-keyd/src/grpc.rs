//! The gRPC edge of root-keyd: proto ⇄ domain, errors → status codes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use skm_proto::root::v1 as pb;
use skm_proto::root::v1::root_key_service_server::RootKeyService;
use skm_runtime::health::Health;
use tonic::{Request, Response, Status};

use crate::sealing::{Mode, SealError, Sealer};

/// root-keyd's RPC handlers.
pub(crate) struct RootKeyApi {
    pub(crate) sealer: Arc<Sealer>,
    pub(crate) health: Health,
    /// System keys unwrapped since start (an operations metric, and how the
    /// tests prove a refused call unwrapped nothing).
    pub(crate) unwrapped: Arc<AtomicU64>,
    /// Operator certificates revoked on this tier.
    pub(crate) revoked: Arc<skm_runtime::revocations::FileRevocations>,
    /// This tier's audit log.
    pub(crate) audit: skm_runtime::tier_audit::TierAudit,
}

impl From<SealError> for Status {
    fn from(e: SealError) -> Self {
        match e {
            SealError::NotInitialized | SealError::Sealed | SealError::Token(_) => Status::unavailable(e.to_string()),
            SealError::AlreadyInitialized
            | SealError::WrongMode(_)
            | SealError::UnknownRootKey { .. }
            | SealError::NoRekey => Status::failed_precondition(e.to_string()),
            SealError::Shamir(_) | SealError::ThresholdTooLow(_) | SealError::BadShare => {
                Status::invalid_argument(e.to_string())
            }
            SealError::BadPassphrase(_)
            | SealError::Io { .. }
            | SealError::Malformed(_)
            | SealError::Kdf(_)
            | SealError::Crypto => {
                tracing::error!(error = %e, "root-keyd internal error");
                Status::internal("internal error")
            }
        }
    }
}

fn status_pb(s: crate::sealing::Status) -> pb::SealStatusResponse {
    pb::SealStatusResponse {
        initialized: s.initialized,
        sealed: s.sealed,
        mode: match s.mode {
            Mode::Shamir => pb::SealMode::Shamir,
            Mode::Passphrase => pb::SealMode::Passphrase,
            Mode::Pkcs11 => pb::SealMode::Pkcs11,
        } as i32,
        threshold: s.threshold,
        progress: s.progress,
        root_key_id: s.root_key_id,
        unavailable_reason: s.unavailable.unwrap_or_default(),
        older_root_key_ids: s.older,
    }
}

fn wrapped_key(req: Option<pb::WrappedSystemKey>) -> Result<pb::WrappedSystemKey, Status> {
    let key = req.ok_or_else(|| Status::invalid_argument("key is required"))?;
    if key.version == 0 {
        return Err(Status::invalid_argument("key.version must be at least 1"));
    }
    Ok(key)
}

#[tonic::async_trait]
impl RootKeyService for RootKeyApi {
    async fn init(&self, request: Request<pb::InitRequest>) -> Result<Response<pb::InitResponse>, Status> {
        let req = request.into_inner();
        let (root_key_id, shares) = self.sealer.init_shamir(req.shares, req.threshold)?;
        tracing::info!(root_key_id, shares = req.shares, threshold = req.threshold, "root key initialised");
        Ok(Response::new(pb::InitResponse { shares: shares.iter().map(|s| s.to_vec()).collect(), root_key_id }))
    }

    async fn seal_status(&self, _: Request<pb::SealStatusRequest>) -> Result<Response<pb::SealStatusResponse>, Status> {
        Ok(Response::new(status_pb(self.sealer.status())))
    }

    async fn unseal(&self, request: Request<pb::UnsealRequest>) -> Result<Response<pb::UnsealResponse>, Status> {
        let share = request.into_inner().share;
        let status = self.sealer.unseal_share(&share);
        if let Err(e) = &status {
            tracing::warn!(error = %e, "unseal share refused");
        }
        let status = status?;
        if !status.sealed {
            self.health.set(true).await;
        }
        Ok(Response::new(pb::UnsealResponse { status: Some(status_pb(status)) }))
    }

    async fn generate_system_key(
        &self,
        request: Request<pb::GenerateSystemKeyRequest>,
    ) -> Result<Response<pb::GenerateSystemKeyResponse>, Status> {
        let version = request.into_inner().version;
        if version == 0 {
            return Err(Status::invalid_argument("version must be at least 1"));
        }
        let root = self.sealer.root_key()?;
        let system_key = skm_crypto::Secret32::generate().map_err(|_| Status::internal("internal error"))?;
        let wrapped = root.wrap_system_key(version, &system_key).map_err(|_| Status::internal("internal error"))?;
        tracing::info!(version, root_key_id = root.id(), "system key generated");
        Ok(Response::new(pb::GenerateSystemKeyResponse {
            key: Some(pb::WrappedSystemKey { version, root_key_id: root.id().to_owned(), wrapped }),
        }))
    }

    async fn unwrap_system_key(
        &self,
        request: Request<pb::UnwrapSystemKeyRequest>,
    ) -> Result<Response<pb::UnwrapSystemKeyResponse>, Status> {
        let req = request.into_inner();
        let key = wrapped_key(req.key)?;
        let root = self.sealer.root_key_version(&key.root_key_id)?;
        let system_key = root
            .unwrap_system_key(key.version, &key.wrapped)
            .map_err(|_| Status::invalid_argument("the wrapped system key could not be unwrapped"))?;
        let (encapsulated_key, sealed_key) =
            skm_crypto::transport::seal_system_key(&req.recipient_public_key, key.version, &system_key)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.unwrapped.fetch_add(1, Ordering::Relaxed);
        tracing::info!(version = key.version, "system key unwrapped for kms-api");
        Ok(Response::new(pb::UnwrapSystemKeyResponse { version: key.version, encapsulated_key, sealed_key }))
    }

    async fn rotate_root_key(
        &self,
        _: Request<pb::RotateRootKeyRequest>,
    ) -> Result<Response<pb::RotateRootKeyResponse>, Status> {
        let sealer = self.sealer.clone();
        let (root_key_id, older_root_key_ids) = tokio::task::spawn_blocking(move || sealer.rotate())
            .await
            .map_err(|_| Status::internal("internal error"))??;
        Ok(Response::new(pb::RotateRootKeyResponse { root_key_id, older_root_key_ids }))
    }

    async fn rewrap_system_key(
        &self,
        request: Request<pb::RewrapSystemKeyRequest>,
    ) -> Result<Response<pb::RewrapSystemKeyResponse>, Status> {
        let key = wrapped_key(request.into_inner().key)?;
        let current = self.sealer.root_key()?;
        if key.root_key_id == current.id() {
            return Ok(Response::new(pb::RewrapSystemKeyResponse { key: Some(key) }));
        }
        let older = self.sealer.root_key_version(&key.root_key_id)?;
        let system_key = older
            .unwrap_system_key(key.version, &key.wrapped)
            .map_err(|_| Status::invalid_argument("the wrapped system key could not be unwrapped"))?;
        let wrapped =
            current.wrap_system_key(key.version, &system_key).map_err(|_| Status::internal("internal error"))?;
        tracing::info!(version = key.version, from = key.root_key_id, to = current.id(), "system key rewrapped");
        Ok(Response::new(pb::RewrapSystemKeyResponse {
            key: Some(pb::WrappedSystemKey { version: key.version, root_key_id: current.id().to_owned(), wrapped }),
        }))
    }

    async fn destroy_root_keys(
        &self,
        request: Request<pb::DestroyRootKeysRequest>,
    ) -> Result<Response<pb::DestroyRootKeysResponse>, Status> {
        let keep = request.into_inner().keep_root_key_ids.into_iter().collect();
        let sealer = self.sealer.clone();
        let destroyed_root_key_ids = tokio::task::spawn_blocking(move || sealer.destroy_older(&keep))
            .await
            .map_err(|_| Status::internal("internal error"))??;
        Ok(Response::new(pb::DestroyRootKeysResponse { destroyed_root_key_ids }))
    }

    async fn start_rekey(
        &self,
        request: Request<pb::StartRekeyRequest>,
    ) -> Result<Response<pb::StartRekeyResponse>, Status> {
        let req = request.into_inner();
        let (nonce, threshold) = self.sealer.rekey_start(req.shares, req.threshold)?;
        Ok(Response::new(pb::StartRekeyResponse { nonce, threshold }))
    }

    async fn submit_rekey_share(
        &self,
        request: Request<pb::SubmitRekeyShareRequest>,
    ) -> Result<Response<pb::SubmitRekeyShareResponse>, Status> {
        let req = request.into_inner();
        let sealer = self.sealer.clone();
        let outcome = tokio::task::spawn_blocking(move || sealer.rekey_submit(&req.nonce, &req.share))
            .await
            .map_err(|_| Status::internal("internal error"))?;
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, "rekey share refused");
        }
        let (progress, threshold, shares) = outcome?;
        Ok(Response::new(pb::SubmitRekeyShareResponse {
            progress,
            threshold,
            shares: shares.unwrap_or_default().iter().map(|s| s.to_vec()).collect(),
        }))
    }

    async fn revoke_operator(
        &self,
        request: Request<pb::RevokeOperatorRequest>,
    ) -> Result<Response<pb::RevokeOperatorResponse>, Status> {
        let sha256 = request.into_inner().sha256;
        let newly_revoked = skm_runtime::revocations::revoke_rpc(&self.revoked, &sha256)?;
        Ok(Response::new(pb::RevokeOperatorResponse { newly_revoked }))
    }

    async fn verify_audit(
        &self,
        _: Request<pb::VerifyTierAuditRequest>,
    ) -> Result<Response<pb::VerifyTierAuditResponse>, Status> {
        Ok(Response::new(skm_runtime::tier_audit::verify_rpc(&self.audit)?))
    }
}

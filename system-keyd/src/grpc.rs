//! The gRPC edge of system-keyd.

use std::sync::Arc;

use skm_proto::root::v1::WrappedSystemKey;
use skm_proto::system::v1 as pb;
use skm_proto::system::v1::system_key_service_server::SystemKeyService;
use tonic::{Request, Response, Status};

use crate::{RotateError, SystemKeys};

pub(crate) struct SystemKeyApi {
    pub(crate) state: Arc<SystemKeys>,
    /// Operator certificates revoked on this tier.
    pub(crate) revoked: Arc<skm_runtime::revocations::FileRevocations>,
    /// This tier's audit log.
    pub(crate) audit: skm_runtime::tier_audit::TierAudit,
}

impl From<RotateError> for Status {
    fn from(e: RotateError) -> Self {
        match e {
            RotateError::Root(s) if s.code() == tonic::Code::Unavailable => {
                Status::unavailable(format!("root-keyd is unavailable: {}", s.message()))
            }
            RotateError::Root(s)
                if matches!(s.code(), tonic::Code::FailedPrecondition | tonic::Code::PermissionDenied) =>
            {
                Status::new(s.code(), format!("root-keyd: {}", s.message()))
            }
            RotateError::Versions(crate::VersionsError::Store(skm_store::StoreError::Conflict { .. })) => {
                Status::aborted("a concurrent rotation won; retry")
            }
            RotateError::Cap(_) => Status::failed_precondition(e.to_string()),
            other => {
                tracing::error!(error = %other, "rotation failed");
                Status::internal("internal error")
            }
        }
    }
}

#[tonic::async_trait]
impl SystemKeyService for SystemKeyApi {
    async fn get_wrapped_system_keys(
        &self,
        _: Request<pb::GetWrappedSystemKeysRequest>,
    ) -> Result<Response<pb::GetWrappedSystemKeysResponse>, Status> {
        let snapshot = self.state.versions.snapshot().await.map_err(|e| {
            tracing::error!(error = %e, "cannot read the system key store");
            Status::internal("internal error")
        })?;
        let Some((active, _)) = snapshot.active else {
            return Err(Status::unavailable("system-keyd has no system key yet (waiting for root-keyd)"));
        };
        Ok(Response::new(pb::GetWrappedSystemKeysResponse {
            keys: snapshot
                .versions
                .into_iter()
                .map(|v| WrappedSystemKey { version: v.version, root_key_id: v.root_key_id, wrapped: v.wrapped })
                .collect(),
            active_version: active,
        }))
    }

    async fn rotate_system_key(
        &self,
        _: Request<pb::RotateSystemKeyRequest>,
    ) -> Result<Response<pb::RotateSystemKeyResponse>, Status> {
        let active_version = self.state.rotate().await?;
        Ok(Response::new(pb::RotateSystemKeyResponse { active_version }))
    }

    async fn rewrap_system_keys(
        &self,
        _: Request<pb::RewrapSystemKeysRequest>,
    ) -> Result<Response<pb::RewrapSystemKeysResponse>, Status> {
        let (root_key_id, rewrapped, destroyed_root_key_ids) = self.state.rewrap().await?;
        Ok(Response::new(pb::RewrapSystemKeysResponse { root_key_id, rewrapped, destroyed_root_key_ids }))
    }

    async fn retire_system_key(
        &self,
        request: Request<pb::RetireSystemKeyRequest>,
    ) -> Result<Response<pb::RetireSystemKeyResponse>, Status> {
        let version = request.into_inner().version;
        match self.state.retire(version).await {
            Ok(Some(removed)) => Ok(Response::new(pb::RetireSystemKeyResponse { removed })),
            Ok(None) => Err(Status::failed_precondition(format!(
                "system key version {version} is the active version and is never retired"
            ))),
            Err(e) => {
                tracing::error!(error = %e, "cannot retire a system key version");
                Err(Status::internal("internal error"))
            }
        }
    }

    async fn verify_audit(
        &self,
        _: Request<skm_proto::root::v1::VerifyTierAuditRequest>,
    ) -> Result<Response<skm_proto::root::v1::VerifyTierAuditResponse>, Status> {
        Ok(Response::new(skm_runtime::tier_audit::verify_rpc(&self.audit)?))
    }

    async fn revoke_operator(
        &self,
        request: Request<skm_proto::root::v1::RevokeOperatorRequest>,
    ) -> Result<Response<skm_proto::root::v1::RevokeOperatorResponse>, Status> {
        let sha256 = request.into_inner().sha256;
        let newly_revoked = skm_runtime::revocations::revoke_rpc(&self.revoked, &sha256)?;
        Ok(Response::new(skm_proto::root::v1::RevokeOperatorResponse { newly_revoked }))
    }
}

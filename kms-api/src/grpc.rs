//! The gRPC edge of kms-api: user plane ([`user`]) and operator plane
//! ([`admin`]). Converts proto ⇄ domain, builds the audited [`Call`] from
//! what the connection tells about the caller, and maps errors to status
//! codes (DESIGN §10).

use tonic::{Request, Status};

use crate::access::Facts;
use crate::kms::{Call, KmsError};
use skm_runtime::PeerInfo;

pub(crate) mod admin;
pub(crate) mod user;

/// Metadata key of a client-asserted MAC address.
const ASSERTED_MAC_HEADER: &str = "x-skm-client-mac";

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
            KmsError::AuditUnavailable => Status::unavailable(KmsError::AuditUnavailable.to_string()),
            KmsError::Internal(source) => {
                tracing::error!(error = %skm_runtime::daemon::error_chain(&*source), "internal error");
                Status::internal("internal error")
            }
        }
    }
}

fn peer<T>(request: &Request<T>) -> Result<&PeerInfo, Status> {
    request.extensions().get::<PeerInfo>().ok_or_else(|| Status::internal("internal error"))
}

/// What the server knows about a user-plane caller.
fn facts<T>(request: &Request<T>) -> Result<Facts, Status> {
    let peer = peer(request)?;
    let asserted_mac = match request.metadata().get(ASSERTED_MAC_HEADER) {
        None => None,
        Some(value) => Some(value.to_str().ok().and_then(|v| v.trim().parse().ok()).ok_or_else(|| {
            Status::invalid_argument(format!("{ASSERTED_MAC_HEADER}: not a MAC address (aa:bb:cc:dd:ee:ff)"))
        })?),
    };
    Ok(Facts {
        ip: Some(peer.remote_addr.ip().to_canonical()),
        verified_mac: peer.mac,
        asserted_mac,
        chain: peer.client_certificates.clone(),
    })
}

/// A user-plane call.
fn user_call<T>(operation: &'static str, request: &Request<T>) -> Result<Call, Status> {
    Ok(Call::user(operation, facts(request)?))
}

/// An admin-plane call, attributed to the operator's principal.
fn admin_call<T>(operation: &'static str, request: &Request<T>) -> Result<Call, Status> {
    let peer = peer(request)?;
    let operator = peer.principal.as_ref().map_or_else(|| "unknown".to_owned(), ToString::to_string);
    let facts = Facts {
        ip: Some(peer.remote_addr.ip().to_canonical()),
        chain: peer.client_certificates.clone(),
        ..Facts::default()
    };
    Ok(Call::admin(operation, operator, facts))
}

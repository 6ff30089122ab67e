//! The gRPC front end of kms-api: user plane ([`user`]) and operator plane
//! ([`admin`]). Each handler converts proto → domain request, builds the
//! [`Caller`] from what the connection tells, calls [`Kms::execute`] and
//! converts the result back. Authorisation, the work and the audit entry
//! are the core's.
//!
//! [`Kms::execute`]: crate::kms::Kms::execute

use tonic::{Request, Status};

use crate::access::Facts;
use crate::kms::request_ids::REQUEST_ID_HEADER;
use crate::kms::{Caller, Code, FrontEnd, KmsError, Operator, RequestId};
use skm_runtime::{PeerInfo, Principal};

pub(crate) mod admin;
pub(crate) mod user;

/// Metadata key of a client-asserted MAC address.
pub(crate) const ASSERTED_MAC_HEADER: &str = "x-skm-client-mac";

pub(crate) fn code(code: Code) -> tonic::Code {
    match code {
        Code::InvalidArgument => tonic::Code::InvalidArgument,
        Code::NotFound => tonic::Code::NotFound,
        Code::AlreadyExists => tonic::Code::AlreadyExists,
        Code::FailedPrecondition => tonic::Code::FailedPrecondition,
        Code::PermissionDenied => tonic::Code::PermissionDenied,
        Code::Unavailable => tonic::Code::Unavailable,
        Code::Aborted => tonic::Code::Aborted,
        Code::Internal => tonic::Code::Internal,
    }
}

impl From<KmsError> for Status {
    fn from(e: KmsError) -> Self {
        if let KmsError::Internal(source) = &e {
            tracing::error!(error = %skm_runtime::daemon::error_chain(&**source), "internal error");
        }
        Status::new(code(e.code()), e.to_string())
    }
}

fn peer<T>(request: &Request<T>) -> Result<&PeerInfo, Status> {
    request.extensions().get::<PeerInfo>().ok_or_else(|| Status::internal("internal error"))
}

/// A user-plane caller: what the server knows about it.
fn application<T>(request: &Request<T>) -> Result<Caller, Status> {
    let peer = peer(request)?;
    let asserted_mac = match request.metadata().get(ASSERTED_MAC_HEADER) {
        None => None,
        Some(value) => {
            Some(Facts::asserted_mac(ASSERTED_MAC_HEADER, value.as_bytes()).map_err(Status::invalid_argument)?)
        }
    };
    Ok(Caller::application(Facts::of_peer(peer, asserted_mac), FrontEnd::Grpc))
}

/// An admin-plane caller: the operator the TLS layer authenticated (the
/// port's allow-list admits only operators), with the request id of its
/// change if it sent one (`x-skm-request-id`).
fn operator<T>(request: &Request<T>) -> Result<Caller, Status> {
    let peer = peer(request)?;
    let Some(principal @ Principal::Operator { role, .. }) = &peer.principal else {
        return Err(Status::permission_denied("an operator certificate is required"));
    };
    let facts = Facts {
        ip: Some(peer.remote_addr.ip().to_canonical()),
        chain: peer.client_certificates.clone(),
        ..Facts::default()
    };
    let caller = Caller::operator(Operator { principal: principal.to_string(), role: *role, facts }, FrontEnd::Grpc);
    match request.metadata().get(REQUEST_ID_HEADER) {
        None => Ok(caller),
        Some(value) => Ok(caller.with_request_id(RequestId::parse(&String::from_utf8_lossy(value.as_bytes()))?)),
    }
}

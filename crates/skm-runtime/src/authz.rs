//! Per-RPC allow-lists of peer identities, enforced in a tower layer before
//! any handler runs. Anything not listed is refused (default deny).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Status;

use crate::identity::{Principal, Role, Service};
use crate::peer::PeerInfo;

/// One kind of caller an RPC accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allow {
    /// This service.
    Service(Service),
    /// Operators with at least this role (admin ≥ auditor).
    Operator(Role),
    /// Any peer that passed the port's TLS layer, with or without a
    /// certificate (health, reflection, kms-api's user plane whose checks are
    /// per keystore).
    AnyPeer,
}

impl Allow {
    fn admits(&self, principal: Option<&Principal>) -> bool {
        match (self, principal) {
            (Allow::AnyPeer, _) => true,
            (Allow::Service(want), Some(Principal::Service(have))) => want == have,
            (Allow::Operator(min), Some(Principal::Operator { role, .. })) => role >= min,
            _ => false,
        }
    }
}

/// Certificates revoked on a port, by SHA-256 of the leaf (lowercase hex).
pub trait Revocations: Send + Sync + std::fmt::Debug {
    /// Whether this certificate is revoked.
    fn is_revoked(&self, leaf_sha256: &str) -> bool;
}

/// Which callers may call which RPC. Keys are gRPC paths: a full method
/// (`/pkg.Service/Method`) or a whole service (`/pkg.Service/`).
#[derive(Clone, Debug, Default)]
pub struct AccessPolicy {
    rules: HashMap<String, Vec<Allow>>,
    revocations: Option<Arc<dyn Revocations>>,
}

impl AccessPolicy {
    /// An empty policy: everything is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows `who` to call `method` (`/pkg.Service/Method`).
    pub fn allow(mut self, method: &str, who: &[Allow]) -> Self {
        self.rules.entry(method.to_owned()).or_default().extend_from_slice(who);
        self
    }

    /// Allows `who` to call every method of `service` (`pkg.Service`).
    pub fn allow_service(self, service: &str, who: &[Allow]) -> Self {
        self.allow(&format!("/{service}/"), who)
    }

    /// The standard health and reflection services, open to any peer that
    /// passed TLS.
    pub fn with_health_and_reflection(self) -> Self {
        self.allow_service("grpc.health.v1.Health", &[Allow::AnyPeer])
            .allow_service("grpc.reflection.v1.ServerReflection", &[Allow::AnyPeer])
            .allow_service("grpc.reflection.v1alpha.ServerReflection", &[Allow::AnyPeer])
    }

    /// Refuses principals whose certificate is in `revocations`.
    pub fn with_revocations(mut self, revocations: Arc<dyn Revocations>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// Decides one call.
    pub fn check(&self, path: &str, peer: Option<&PeerInfo>) -> Result<(), Status> {
        if let (Some(revocations), Some(leaf)) =
            (&self.revocations, peer.and_then(|p| p.client_certificates.as_ref()).and_then(|c| c.first()))
        {
            use sha2::Digest;
            let sha = hex::encode(sha2::Sha256::digest(leaf));
            if revocations.is_revoked(&sha) {
                tracing::warn!(method = path, certificate = sha, "refused: certificate revoked");
                return Err(Status::permission_denied("the client certificate is revoked"));
            }
        }
        let rule = self.rules.get(path).or_else(|| {
            let service_end = path.rfind('/').map(|i| i + 1)?;
            self.rules.get(&path[..service_end])
        });
        let principal = peer.and_then(|p| p.principal.as_ref());
        let Some(rule) = rule else {
            // Not an RPC of this port at all (e.g. the admin service asked
            // on the user port): say so rather than blame the identity.
            return Err(Status::unimplemented(format!("{path} is not served on this port")));
        };
        if rule.iter().any(|a| a.admits(principal)) {
            return Ok(());
        }
        let who = principal.map_or_else(|| "unidentified peer".to_owned(), ToString::to_string);
        tracing::warn!(method = path, peer = %who, "refused by allow-list");
        if principal.is_none() && peer.is_none_or(|p| p.client_certificates.is_none()) {
            if rule.iter().any(|a| matches!(a, Allow::Operator(_))) {
                Err(Status::unauthenticated(format!(
                    "{path} requires an operator certificate (the call came without a client certificate)"
                )))
            } else {
                Err(Status::unauthenticated(format!("{path} requires a client certificate")))
            }
        } else {
            Err(Status::permission_denied(format!("{who} may not call {path}")))
        }
    }
}

/// Tower layer applying an [`AccessPolicy`].
#[derive(Clone, Debug)]
pub struct AuthorizeLayer {
    policy: Arc<AccessPolicy>,
}

impl AuthorizeLayer {
    /// Wraps a policy.
    pub fn new(policy: AccessPolicy) -> Self {
        Self { policy: Arc::new(policy) }
    }
}

impl<S> tower::Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize { inner, policy: self.policy.clone() }
    }
}

/// The service made by [`AuthorizeLayer`].
#[derive(Clone, Debug)]
pub struct Authorize<S> {
    inner: S,
    policy: Arc<AccessPolicy>,
}

impl<S, B> tower::Service<http::Request<B>> for Authorize<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match self.policy.check(req.uri().path(), req.extensions().get::<PeerInfo>()) {
            Ok(()) => {
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.call(req))
            }
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(principal: Option<Principal>) -> PeerInfo {
        PeerInfo {
            remote_addr: "127.0.0.1:1".parse().unwrap(),
            proxied_by: None,
            mac: None,
            client_certificates: Some(Arc::new(Vec::new())),
            principal,
            activity: None,
        }
    }

    #[test]
    fn default_deny_and_exact_rules() {
        let policy = AccessPolicy::new()
            .allow("/p.S/A", &[Allow::Service(Service::KmsApi)])
            .allow("/p.S/B", &[Allow::Operator(Role::Auditor)])
            .allow_service("p.T", &[Allow::Operator(Role::Admin)]);
        let kms = peer(Some(Principal::Service(Service::KmsApi)));
        let sys = peer(Some(Principal::Service(Service::SystemKeyd)));
        let auditor = peer(Some(Principal::Operator { name: "a".into(), role: Role::Auditor }));
        let admin = peer(Some(Principal::Operator { name: "b".into(), role: Role::Admin }));
        assert!(policy.check("/p.S/A", Some(&kms)).is_ok());
        assert_eq!(policy.check("/p.S/A", Some(&sys)).unwrap_err().code(), tonic::Code::PermissionDenied);
        assert!(policy.check("/p.S/B", Some(&auditor)).is_ok());
        assert!(policy.check("/p.S/B", Some(&admin)).is_ok());
        assert!(policy.check("/p.T/Any", Some(&admin)).is_ok());
        assert!(policy.check("/p.T/Any", Some(&auditor)).is_err());
        assert_eq!(policy.check("/p.S/Unlisted", Some(&admin)).unwrap_err().code(), tonic::Code::Unimplemented);
        let anonymous = PeerInfo { client_certificates: None, ..peer(None) };
        assert_eq!(policy.check("/p.S/A", Some(&anonymous)).unwrap_err().code(), tonic::Code::Unauthenticated);
    }
}

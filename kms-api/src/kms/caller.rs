//! Who calls an operation, as a front end saw them.

use skm_crypto::Id;
use skm_runtime::Role;

use super::request_ids::RequestId;
use crate::access::Facts;

/// The principal kms-api's own work is audited under.
pub const MAINTENANCE_PRINCIPAL: &str = "kms-api/maintenance";

/// The front end a request came through; named in its audit entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrontEnd {
    /// The gRPC user or admin port.
    Grpc,
    /// The REST/JSON listener.
    Rest,
    /// The web console.
    Console,
    /// kms-api's own maintenance task.
    Maintenance,
}

impl FrontEnd {
    /// The name written to the audit log.
    pub fn name(self) -> &'static str {
        match self {
            FrontEnd::Grpc => "grpc",
            FrontEnd::Rest => "rest",
            FrontEnd::Console => "console",
            FrontEnd::Maintenance => "maintenance",
        }
    }
}

/// An operator, as the admin port's TLS layer (or a console session)
/// authenticated them.
#[derive(Clone, Debug)]
pub struct Operator {
    /// The principal, e.g. `operator/admin/ann`.
    pub principal: String,
    /// Its role.
    pub role: Role,
    /// The address it called from and its certificate (whose SHA-256 is
    /// checked against the revoked operator certificates on every call).
    pub facts: Facts,
}

/// Who is calling.
#[derive(Clone, Debug)]
pub enum Who {
    /// An application on the user plane: what the server knows of it
    /// decides against each keystore's policy.
    Application(Facts),
    /// An operator on the admin plane.
    Operator(Operator),
    /// kms-api itself ([`MAINTENANCE_PRINCIPAL`]).
    Maintenance,
}

/// A caller and the front end it came through.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who.
    pub who: Who,
    /// Through which front end.
    pub via: FrontEnd,
    /// The keystore the request is confined to, when the front end's
    /// address names one (the compatible REST paths'
    /// `…/appkey/{keystore}/…`): a key of another keystore is then not
    /// found, with the same answer as a key that doesn't exist.
    pub keystore_scope: Option<KeystoreRef>,
    /// The request id an operator's change came with (gRPC
    /// `x-skm-request-id`): a retry with the same id is answered without
    /// changing anything again ([`super::request_ids`]).
    pub request_id: Option<RequestId>,
}

/// A keystore as a request names it: by id, or by its alias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeystoreRef {
    /// Its id.
    Id(Id),
    /// Its alias.
    Alias(String),
}

impl KeystoreRef {
    /// Whether `keystore` is the one named.
    pub fn names(&self, keystore: &crate::model::Keystore) -> bool {
        match self {
            KeystoreRef::Id(id) => keystore.id == *id,
            KeystoreRef::Alias(alias) => keystore.alias.as_deref() == Some(alias.as_str()),
        }
    }
}

impl Caller {
    /// An application.
    pub fn application(facts: Facts, via: FrontEnd) -> Self {
        Self { who: Who::Application(facts), via, keystore_scope: None, request_id: None }
    }

    /// The same caller, confined to the keys of one keystore.
    pub fn within_keystore(self, keystore: KeystoreRef) -> Self {
        Self { keystore_scope: Some(keystore), ..self }
    }

    /// The same caller, its change sent under `request_id`.
    pub fn with_request_id(self, request_id: RequestId) -> Self {
        Self { request_id: Some(request_id), ..self }
    }

    /// An operator.
    pub fn operator(operator: Operator, via: FrontEnd) -> Self {
        Self { who: Who::Operator(operator), via, keystore_scope: None, request_id: None }
    }

    /// kms-api's maintenance task.
    pub fn maintenance() -> Self {
        Self { who: Who::Maintenance, via: FrontEnd::Maintenance, keystore_scope: None, request_id: None }
    }

    /// What the server knows of the caller's connection (empty for
    /// maintenance).
    pub fn facts(&self) -> &Facts {
        static NONE: Facts = Facts { ip: None, verified_mac: None, asserted_mac: None, chain: None };
        match &self.who {
            Who::Application(facts) => facts,
            Who::Operator(op) => &op.facts,
            Who::Maintenance => &NONE,
        }
    }
}

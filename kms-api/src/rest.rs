//! The REST/JSON front end of kms-api's user plane, on its own HTTPS
//! listener (`rest_listen`; served by [`skm_runtime::http`] with the same
//! accept loop, TLS, PROXY v2 and limits as the user port).
//!
//! Two surfaces over the same domain core, each a converter JSON ⇄ domain
//! like the gRPC front end is proto ⇄ domain: SKM's own API under `/v1`
//! ([`v1`]: the proto's field names, base64 for bytes) and the paths of
//! the service SKM was modelled on, `/keymanager/{v1.0..v1.3}/appkey/
//! {keystore}/…` ([`compat`]: its field names and response envelope). The
//! core authorises, audits (front end `rest`) and acts; errors carry the
//! same code names and messages as gRPC, with an HTTP status per code
//! ([`http_status`]). docs/REST.md and docs/MIGRATING.md are the user's
//! view; `openapi/v1.json` documents `/v1`.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::Full;
use skm_runtime::PeerInfo;
use skm_runtime::health::Health;
use skm_runtime::http::{HttpApi, HttpResponse, Outcome, Refusal};
use skm_store::Store;
use tonic::Code;

use crate::access::Facts;
use crate::kms::{Caller, FrontEnd, Kms, KmsError};

mod compat;
mod input;
mod v1;

/// The most of a body no handler read that is read and dropped to keep
/// the connection.
const UNREAD_BODY_DRAIN: usize = 64 * 1024;

/// The body limit of every call (batches and the compatible encrypt's text
/// may be larger): `max_request_bytes`' default, above the base64 of any
/// single call's domain limits, so that a field over its limit reaches the
/// core and gets the same message as on gRPC.
pub(crate) const BODY_LIMIT: usize = 64 * 1024;

/// The OpenAPI document of `/v1`, served at `/v1/openapi.json`.
pub(crate) const OPENAPI_V1: &str = include_str!("../openapi/v1.json");

/// The REST API over the domain core.
pub(crate) struct RestApi<S> {
    pub(crate) kms: Arc<Kms<S>>,
    /// The user port's health (what `/v1/health` answers).
    pub(crate) health: Health,
}

/// Which surface a request came to: it decides the error format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Surface {
    /// `/v1/…`.
    V1,
    /// `/keymanager/…`.
    Compat,
}

impl Surface {
    fn of(path: &str) -> Self {
        if path.starts_with("/keymanager/") { Surface::Compat } else { Surface::V1 }
    }
}

/// An error answer: a gRPC code and message (the same text gRPC gives),
/// and the HTTP status when it is not the code's usual one.
#[derive(Debug)]
pub(crate) struct ApiError {
    code: Code,
    message: String,
    status: Option<StatusCode>,
    allow: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), status: None, allow: None }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    fn with_status(self, status: StatusCode) -> Self {
        Self { status: Some(status), ..self }
    }
}

impl From<KmsError> for ApiError {
    fn from(e: KmsError) -> Self {
        if let KmsError::Internal(source) = &e {
            tracing::error!(error = %skm_runtime::daemon::error_chain(&**source), "internal error");
        }
        Self::new(crate::grpc::code(e.code()), e.to_string())
    }
}

/// The HTTP status of a gRPC code (Google's mapping, as in
/// `google.rpc.Code`).
pub(crate) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Internal | Code::Unknown | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The body of a successful answer.
pub(crate) enum Reply {
    /// A JSON value, serialised compactly.
    Json(serde_json::Value),
    /// A JSON document served byte for byte (the OpenAPI document).
    Document(&'static str),
}

/// A JSON response with the headers every answer carries.
fn json_response(status: StatusCode, body: &serde_json::Value, outcome: Outcome) -> HttpResponse {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    json_bytes(status, bytes, outcome)
}

fn json_bytes(status: StatusCode, bytes: Bytes, outcome: Outcome) -> HttpResponse {
    let mut response = http::Response::new(Full::new(bytes));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response.extensions_mut().insert(outcome);
    response
}

/// The answer of `surface` to an error.
fn error_response(surface: Surface, operation: &'static str, error: ApiError) -> HttpResponse {
    let code_name = skm_runtime::metrics::code_name(error.code);
    let number = error.code as i32;
    let body = match surface {
        Surface::V1 => serde_json::json!({
            "error": { "code": number, "code_name": code_name, "message": error.message }
        }),
        Surface::Compat => compat::envelope_error(number, &error.message),
    };
    let status = error.status.unwrap_or_else(|| http_status(error.code));
    let mut response = json_response(status, &body, Outcome { operation, code: code_name });
    if let Some(allow) = error.allow {
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    response
}

/// One request: its head, body and the peer, as the handlers of both
/// surfaces read them.
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) version: http::Version,
    pub(crate) headers: http::HeaderMap,
    pub(crate) query: Option<String>,
    pub(crate) peer: PeerInfo,
    pub(crate) body: Option<hyper::body::Incoming>,
    /// The body was not read to its end: the connection can't carry
    /// another request (HTTP/1.1) and closes after the answer.
    pub(crate) unread: bool,
}

impl Call {
    /// The application calling, with the MAC it asserts in `mac_header`.
    pub(crate) fn caller(&self, mac_header: &str) -> Result<Caller, ApiError> {
        let asserted_mac = match self.headers.get(mac_header) {
            None => None,
            Some(value) => Some(Facts::asserted_mac(mac_header, value.as_bytes()).map_err(ApiError::invalid)?),
        };
        Ok(Caller::application(Facts::of_peer(&self.peer, asserted_mac), FrontEnd::Rest))
    }
}

/// Refuses a method the path doesn't take, naming those it does.
pub(crate) fn method_not_allowed(allow: &'static str) -> ApiError {
    ApiError {
        code: Code::Unimplemented,
        message: format!("method not allowed here; allowed: {allow}"),
        status: Some(StatusCode::METHOD_NOT_ALLOWED),
        allow: Some(allow),
    }
}

/// The answer to a path that is not part of either surface.
pub(crate) fn no_such_path() -> ApiError {
    ApiError::new(Code::NotFound, "no such path (see /v1/openapi.json and docs/REST.md)")
}

impl<S: Store + Clone> HttpApi for RestApi<S> {
    async fn handle(&self, request: http::Request<hyper::body::Incoming>, peer: PeerInfo) -> HttpResponse {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path().to_owned();
        let mut call = Call {
            method: parts.method,
            version: parts.version,
            headers: parts.headers,
            query: parts.uri.query().map(str::to_owned),
            peer,
            body: Some(body),
            unread: false,
        };
        let surface = Surface::of(&path);
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let answer = match surface {
            Surface::V1 => v1::handle(self, &segments, &mut call).await,
            Surface::Compat => compat::handle(self, &segments, &mut call).await,
        };
        let mut response = match answer {
            Ok((operation, status, Reply::Json(body))) => {
                json_response(status, &body, Outcome { operation, code: "OK" })
            }
            Ok((operation, status, Reply::Document(text))) => {
                json_bytes(status, Bytes::from_static(text.as_bytes()), Outcome { operation, code: "OK" })
            }
            Err((operation, error)) => error_response(surface, operation, error),
        };
        // A body the answer didn't need (an error before it was read) is
        // read and dropped, so that the connection stays usable; one too
        // long for that closes the connection after the answer.
        if let Some(body) = call.body.take() {
            call.unread |= !skm_runtime::http::drain(body, UNREAD_BODY_DRAIN).await;
        }
        if call.unread && call.version <= http::Version::HTTP_11 {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    fn refusal(&self, path: &str, refusal: Refusal) -> HttpResponse {
        let error = match refusal {
            Refusal::Shed { max_in_flight, retry_after } => {
                let retry_ms = retry_after.as_millis();
                let mut response = error_response(
                    Surface::of(path),
                    "shed",
                    ApiError::new(
                        Code::ResourceExhausted,
                        format!(
                            "overloaded: {max_in_flight} requests in flight on this port (max_in_flight); retry after {retry_ms} ms"
                        ),
                    ),
                );
                let seconds = retry_after.as_millis().div_ceil(1000).max(1);
                if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                return response;
            }
            Refusal::Timeout(limit) => {
                ApiError::new(Code::DeadlineExceeded, format!("deadline of {} ms exceeded", limit.as_millis()))
            }
        };
        error_response(Surface::of(path), "timeout", error)
    }

    fn unshed(&self, path: &str) -> bool {
        path == "/v1/health"
    }
}

/// What a handler answers: the operation's name (metrics), and either the
/// status and JSON body or the error.
pub(crate) type Answer = Result<(&'static str, StatusCode, Reply), (&'static str, ApiError)>;

/// Runs one operation through the core, naming it in the answer.
pub(crate) async fn run<S, O>(kms: &Kms<S>, caller: &Caller, op: O) -> Result<O::Output, ApiError>
where
    S: Store + Clone,
    O: crate::kms::Operation,
{
    kms.execute(caller, op).await.map_err(ApiError::from)
}

/// Reads a request body of at most `limit` bytes (never less than
/// [`BODY_LIMIT`]) as a JSON object (`{}` when empty).
pub(crate) async fn read_json(
    call: &mut Call,
    limit: usize,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let Some(body) = call.body.take() else { return Ok(serde_json::Map::new()) };
    let limit = limit.max(BODY_LIMIT);
    let bytes = skm_runtime::http::read_body(body, limit).await.map_err(|e| match e {
        skm_runtime::http::BodyError::TooLarge { limit, drained } => {
            call.unread |= !drained;
            ApiError::new(
                Code::ResourceExhausted,
                format!("the request body is larger than this call's limit of {limit} bytes"),
            )
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        }
        skm_runtime::http::BodyError::Failed => {
            call.unread = true;
            ApiError::invalid("the request body could not be read")
        }
    })?;
    input::parse_object(&call.headers, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// openapi/v1.json documents exactly the paths and methods `/v1` routes.
    #[test]
    fn the_openapi_document_lists_exactly_the_v1_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_V1).expect("openapi/v1.json is JSON");
        assert_eq!(doc["openapi"].as_str().map(|v| v.starts_with("3.")), Some(true));
        let mut documented = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let routed: std::collections::BTreeSet<_> =
            v1::ROUTES.iter().map(|(method, path)| ((*method).to_owned(), (*path).to_owned())).collect();
        assert_eq!(documented, routed);
    }

    #[test]
    fn every_code_has_a_fitting_http_status() {
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(http_status(Code::ResourceExhausted), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(http_status(Code::Unavailable), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(http_status(Code::Internal), StatusCode::INTERNAL_SERVER_ERROR);
    }
}

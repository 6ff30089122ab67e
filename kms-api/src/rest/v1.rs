//! SKM's own JSON API, `/v1/…`: the user-plane operations with the
//! proto's field names, bytes as base64 (openapi/v1.json).

use http::{Method, StatusCode};
use serde_json::{Value, json};
use skm_proto::api::v1 as pb;
use skm_store::Store;

use super::input::{Fields, Query, b64};
use super::{Answer, ApiError, BODY_LIMIT, Call, Reply, RestApi, method_not_allowed, no_such_path, read_json, run};
use crate::grpc::user::{signature_algorithm, signature_algorithm_pb};
use crate::kms::{self, Caller, KmsError, Signed};
use crate::model::{MAX_AAD, MAX_BATCH, MAX_CIPHERTEXT, MAX_PLAINTEXT};

/// The header carrying a client-asserted MAC (as on gRPC).
const MAC_HEADER: &str = crate::grpc::ASSERTED_MAC_HEADER;

/// The base64 length of `n` bytes.
const fn b64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Batches may be larger than [`BODY_LIMIT`]: every item at the domain's
/// limits, as base64, with room for its field names.
const BATCH_ENCRYPT_BODY: usize = MAX_BATCH * (b64_len(MAX_PLAINTEXT) + b64_len(MAX_AAD) + 128) + 1024;
const BATCH_DECRYPT_BODY: usize = MAX_BATCH * (b64_len(MAX_CIPHERTEXT) + b64_len(MAX_AAD) + 128) + 1024;

/// Every path of `/v1` with its method, as [`Route::of`] routes them and
/// openapi/v1.json must document them (a test checks the two agree; the
/// REST suite calls each).
#[cfg(test)]
pub(crate) const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/health"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/v1/whoami"),
    ("POST", "/v1/keys/{key_id}/encrypt"),
    ("POST", "/v1/keys/{key_id}/decrypt"),
    ("POST", "/v1/keys/{key_id}/generate-data-key"),
    ("POST", "/v1/keys/{key_id}/generate-data-key-without-plaintext"),
    ("POST", "/v1/keys/{key_id}/re-encrypt"),
    ("POST", "/v1/keys/{key_id}/sign"),
    ("POST", "/v1/keys/{key_id}/verify"),
    ("POST", "/v1/keys/{key_id}/generate-mac"),
    ("POST", "/v1/keys/{key_id}/verify-mac"),
    ("GET", "/v1/keys/{key_id}/public-key"),
    ("POST", "/v1/batch/encrypt"),
    ("POST", "/v1/batch/decrypt"),
    ("GET", "/v1/secrets/{key_id}"),
];

/// One route of `/v1`.
enum Route<'p> {
    Health,
    OpenApi,
    WhoAmI,
    Key(&'p str, KeyCall),
    PublicKey(&'p str),
    BatchEncrypt,
    BatchDecrypt,
    Secret(&'p str),
}

#[derive(Clone, Copy)]
enum KeyCall {
    Encrypt,
    Decrypt,
    DataKey { with_plaintext: bool },
    ReEncrypt,
    Sign,
    Verify,
    GenerateMac,
    VerifyMac,
}

impl Route<'_> {
    fn of<'p>(segments: &[&'p str]) -> Option<Route<'p>> {
        Some(match segments {
            ["v1", "health"] => Route::Health,
            ["v1", "openapi.json"] => Route::OpenApi,
            ["v1", "whoami"] => Route::WhoAmI,
            ["v1", "batch", "encrypt"] => Route::BatchEncrypt,
            ["v1", "batch", "decrypt"] => Route::BatchDecrypt,
            ["v1", "secrets", id] if !id.is_empty() => Route::Secret(id),
            ["v1", "keys", id, "public-key"] if !id.is_empty() => Route::PublicKey(id),
            ["v1", "keys", id, call] if !id.is_empty() => Route::Key(
                id,
                match *call {
                    "encrypt" => KeyCall::Encrypt,
                    "decrypt" => KeyCall::Decrypt,
                    "generate-data-key" => KeyCall::DataKey { with_plaintext: true },
                    "generate-data-key-without-plaintext" => KeyCall::DataKey { with_plaintext: false },
                    "re-encrypt" => KeyCall::ReEncrypt,
                    "sign" => KeyCall::Sign,
                    "verify" => KeyCall::Verify,
                    "generate-mac" => KeyCall::GenerateMac,
                    "verify-mac" => KeyCall::VerifyMac,
                    _ => return None,
                },
            ),
            _ => return None,
        })
    }

    /// The operation's name (as in the audit log) and the method it takes.
    fn name_and_method(&self) -> (&'static str, Method) {
        match self {
            Route::Health => ("Health", Method::GET),
            Route::OpenApi => ("OpenApi", Method::GET),
            Route::WhoAmI => ("WhoAmI", Method::GET),
            Route::BatchEncrypt => ("BatchEncrypt", Method::POST),
            Route::BatchDecrypt => ("BatchDecrypt", Method::POST),
            Route::Secret(_) => ("GetSecret", Method::GET),
            Route::PublicKey(_) => ("GetPublicKey", Method::GET),
            Route::Key(_, call) => match call {
                KeyCall::Encrypt => ("Encrypt", Method::POST),
                KeyCall::Decrypt => ("Decrypt", Method::POST),
                KeyCall::DataKey { with_plaintext: true } => ("GenerateDataKey", Method::POST),
                KeyCall::DataKey { with_plaintext: false } => ("GenerateDataKeyWithoutPlaintext", Method::POST),
                KeyCall::ReEncrypt => ("ReEncrypt", Method::POST),
                KeyCall::Sign => ("Sign", Method::POST),
                KeyCall::Verify => ("Verify", Method::POST),
                KeyCall::GenerateMac => ("GenerateMac", Method::POST),
                KeyCall::VerifyMac => ("VerifyMac", Method::POST),
            },
        }
    }
}

pub(super) async fn handle<S: Store + Clone>(api: &RestApi<S>, segments: &[&str], call: &mut Call) -> Answer {
    let Some(route) = Route::of(segments) else { return Err(("unknown", no_such_path())) };
    let (name, method) = route.name_and_method();
    if call.method != method {
        let allow = if method == Method::GET { "GET" } else { "POST" };
        return Err((name, method_not_allowed(allow)));
    }
    match serve(api, route, call).await {
        Ok((status, body)) => Ok((name, status, body)),
        Err(e) => Err((name, e)),
    }
}

async fn serve<S: Store + Clone>(
    api: &RestApi<S>,
    route: Route<'_>,
    call: &mut Call,
) -> Result<(StatusCode, Reply), ApiError> {
    let kms = &*api.kms;
    let mut query = Query::new(call.query.as_deref());
    let ok = |body: Value| Ok((StatusCode::OK, Reply::Json(body)));
    match route {
        Route::Health => {
            query.finish()?;
            if api.health.is_serving() {
                ok(json!({ "status": "SERVING" }))
            } else {
                Ok((StatusCode::SERVICE_UNAVAILABLE, Reply::Json(json!({ "status": "NOT_SERVING" }))))
            }
        }
        Route::OpenApi => {
            query.finish()?;
            Ok((StatusCode::OK, Reply::Document(super::OPENAPI_V1)))
        }
        Route::WhoAmI => {
            query.finish()?;
            let caller = call.caller(MAC_HEADER)?;
            let done = run(kms, &caller, kms::WhoAmI).await?;
            let facts = &done.facts;
            ok(json!({
                "client_ip": facts.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                "proxied_by": call.peer.proxied_by.map(|a| a.to_string()).unwrap_or_default(),
                "verified_mac": facts.verified_mac.map(|m| m.to_string()).unwrap_or_default(),
                "asserted_mac": facts.asserted_mac.map(|m| m.to_string()).unwrap_or_default(),
                "certificate_sha256": facts.cert_sha256().unwrap_or_default(),
                "certificate_subject": done.certificate_subject.unwrap_or_default(),
            }))
        }
        Route::Secret(id) => {
            let version = query.u32_or_zero("version")?;
            query.finish()?;
            let caller = call.caller(MAC_HEADER)?;
            let done = run(kms, &caller, kms::GetSecret { key_id: id.to_owned(), version }).await?;
            let value = std::str::from_utf8(&done.value).map_err(|_| ApiError::from(internal()))?;
            ok(json!({ "value": value, "version": done.version }))
        }
        Route::PublicKey(id) => {
            let key_version = query.u32_or_zero("key_version")?;
            query.finish()?;
            let caller = call.caller(MAC_HEADER)?;
            let done = run(kms, &caller, kms::GetPublicKey { key_id: id.to_owned(), key_version }).await?;
            ok(json!({
                "spki_der": b64(&done.spki_der),
                "pem": done.pem,
                "key_version": done.key_version,
                "key_algorithm": done.kind.name(),
            }))
        }
        Route::Key(id, key_call) => {
            query.finish()?;
            let fields = Fields::new(read_json(call, BODY_LIMIT).await?);
            let caller = call.caller(MAC_HEADER)?;
            ok(key_call_run(kms, &caller, id, key_call, fields).await?)
        }
        Route::BatchEncrypt => {
            query.finish()?;
            let mut fields = Fields::new(read_json(call, BATCH_ENCRYPT_BODY).await?);
            let items = fields.objects("items", encrypt_item)?;
            fields.finish()?;
            let caller = call.caller(MAC_HEADER)?;
            let results = run(kms, &caller, kms::BatchEncrypt { items }).await?;
            let results: Vec<Value> = results
                .into_iter()
                .map(|r| match r {
                    Ok(done) => {
                        json!({ "ok": { "ciphertext": b64(&done.ciphertext), "key_version": done.key_version } })
                    }
                    Err(e) => item_error(e),
                })
                .collect();
            ok(json!({ "results": results }))
        }
        Route::BatchDecrypt => {
            query.finish()?;
            let mut fields = Fields::new(read_json(call, BATCH_DECRYPT_BODY).await?);
            let items = fields.objects("items", decrypt_item)?;
            fields.finish()?;
            let caller = call.caller(MAC_HEADER)?;
            let results = run(kms, &caller, kms::BatchDecrypt { items }).await?;
            let results: Vec<Value> = results
                .into_iter()
                .map(|r| match r {
                    Ok(done) => json!({ "ok": { "plaintext": b64(&done.plaintext), "key_version": done.key_version } }),
                    Err(e) => item_error(e),
                })
                .collect();
            ok(json!({ "results": results }))
        }
    }
}

async fn key_call_run<S: Store + Clone>(
    kms: &kms::Kms<S>,
    caller: &Caller,
    id: &str,
    key_call: KeyCall,
    mut fields: Fields,
) -> Result<Value, ApiError> {
    let key_id = id.to_owned();
    Ok(match key_call {
        KeyCall::Encrypt => {
            let plaintext = fields.required_bytes("plaintext")?;
            let aad = fields.bytes_or_empty("aad")?;
            fields.finish()?;
            let done = run(kms, caller, kms::Encrypt { key_id, plaintext, aad }).await?;
            json!({ "ciphertext": b64(&done.ciphertext), "key_version": done.key_version })
        }
        KeyCall::Decrypt => {
            let ciphertext = fields.required_bytes("ciphertext")?.to_vec();
            let aad = fields.bytes_or_empty("aad")?;
            let algorithm = fields.text("algorithm")?;
            let key_version = fields.u32_or_zero("key_version")?;
            fields.finish()?;
            let rsa_oaep = match algorithm.as_deref() {
                None | Some("ENCRYPTION_ALGORITHM_UNSPECIFIED") => false,
                Some("ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256") => true,
                Some(_) => {
                    return Err(ApiError::invalid(
                        "algorithm: not an encryption algorithm (ENCRYPTION_ALGORITHM_UNSPECIFIED, \
                         ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256)",
                    ));
                }
            };
            let done = match kms::DecryptCall::new(key_id, ciphertext, aad, rsa_oaep, key_version)? {
                kms::DecryptCall::Aes(op) => run(kms, caller, op).await?,
                kms::DecryptCall::RsaOaep(op) => run(kms, caller, op).await?,
            };
            json!({ "plaintext": b64(&done.plaintext), "key_version": done.key_version })
        }
        KeyCall::DataKey { with_plaintext } => {
            let aad = fields.bytes_or_empty("aad")?;
            fields.finish()?;
            let op = kms::GenerateDataKey { key_id, aad, with_plaintext, sealed_as: Default::default() };
            let done = run(kms, caller, op).await?;
            let mut body = json!({ "ciphertext": b64(&done.ciphertext), "key_version": done.key_version });
            if let Some(plaintext) = &done.plaintext {
                body["plaintext"] = Value::String(b64(plaintext.danger_expose()));
            }
            body
        }
        KeyCall::ReEncrypt => {
            let ciphertext = fields.required_bytes("ciphertext")?.to_vec();
            let aad = fields.bytes_or_empty("aad")?;
            fields.finish()?;
            let done = run(kms, caller, kms::ReEncrypt { key_id, ciphertext, aad }).await?;
            json!({
                "ciphertext": b64(&done.ciphertext),
                "source_key_version": done.source_key_version,
                "key_version": done.key_version,
            })
        }
        KeyCall::Sign => {
            let signed = signed_input(&mut fields)?;
            let algorithm = algorithm(&mut fields)?;
            fields.finish()?;
            let done = run(kms, caller, kms::Sign { key_id, signed, algorithm }).await?;
            json!({
                "signature": b64(&done.signature),
                "key_version": done.key_version,
                "algorithm": signature_algorithm_pb(done.algorithm).as_str_name(),
            })
        }
        KeyCall::Verify => {
            let signed = signed_input(&mut fields)?;
            let signature = fields.required_bytes("signature")?.to_vec();
            let algorithm = algorithm(&mut fields)?;
            let key_version = fields.u32_or_zero("key_version")?;
            fields.finish()?;
            let op = kms::Verify { key_id, signed, signature, algorithm, key_version };
            let kms::Verified(version) = run(kms, caller, op).await?;
            json!({ "valid": version.is_some(), "key_version": version.unwrap_or(0) })
        }
        KeyCall::GenerateMac => {
            let message = fields.required_bytes("message")?.to_vec();
            fields.finish()?;
            let done = run(kms, caller, kms::GenerateMac { key_id, message }).await?;
            json!({ "mac": b64(&done.mac), "key_version": done.key_version, "algorithm": done.algorithm.name() })
        }
        KeyCall::VerifyMac => {
            let message = fields.required_bytes("message")?.to_vec();
            let mac = fields.required_bytes("mac")?.to_vec();
            let key_version = fields.u32_or_zero("key_version")?;
            fields.finish()?;
            let kms::Verified(version) = run(kms, caller, kms::VerifyMac { key_id, message, mac, key_version }).await?;
            json!({ "valid": version.is_some(), "key_version": version.unwrap_or(0) })
        }
    })
}

/// `message`, `digest` or `mu`, exactly one.
fn signed_input(fields: &mut Fields) -> Result<Signed, ApiError> {
    let message = fields.bytes("message")?;
    let digest = fields.bytes("digest")?;
    let mu = fields.bytes("mu")?;
    match (message, digest, mu) {
        (Some(m), None, None) => Ok(Signed::Message(m.to_vec())),
        (None, Some(d), None) => Ok(Signed::Digest(d.to_vec())),
        (None, None, Some(mu)) => Ok(Signed::Mu(mu.to_vec())),
        (None, None, None) => Err(ApiError::invalid("one of message, digest or mu is required")),
        _ => Err(ApiError::invalid("give one of message, digest or mu, not more")),
    }
}

/// `algorithm` by its proto enum name; absent: the key's own.
fn algorithm(fields: &mut Fields) -> Result<Option<skm_crypto::asym::SignatureAlgorithm>, ApiError> {
    let Some(name) = fields.text("algorithm")? else { return Ok(None) };
    let value = pb::SignatureAlgorithm::from_str_name(&name).ok_or_else(|| {
        ApiError::invalid(
            "algorithm: not a signature algorithm (SIGNATURE_ALGORITHM_ED25519, SIGNATURE_ALGORITHM_ECDSA_SHA256, \
             SIGNATURE_ALGORITHM_ECDSA_SHA384, SIGNATURE_ALGORITHM_RSA_PSS_SHA256, \
             SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256, SIGNATURE_ALGORITHM_ML_DSA)",
        )
    })?;
    signature_algorithm(value as i32).map_err(|status| ApiError::invalid(status.message()))
}

fn encrypt_item(mut item: Fields) -> Result<kms::Encrypt, ApiError> {
    let key_id = item.required_text("key_id")?;
    let plaintext = item.required_bytes("plaintext")?;
    let aad = item.bytes_or_empty("aad")?;
    item.finish()?;
    Ok(kms::Encrypt { key_id, plaintext, aad })
}

fn decrypt_item(mut item: Fields) -> Result<kms::Decrypt, ApiError> {
    let key_id = item.required_text("key_id")?;
    let ciphertext = item.required_bytes("ciphertext")?.to_vec();
    let aad = item.bytes_or_empty("aad")?;
    item.finish()?;
    Ok(kms::Decrypt { key_id, ciphertext, aad })
}

fn item_error(e: KmsError) -> Value {
    let error = ApiError::from(e);
    json!({ "error": {
        "code": error.code as i32,
        "code_name": skm_runtime::metrics::code_name(error.code),
        "message": error.message,
    } })
}

fn internal() -> KmsError {
    KmsError::Internal("a secret value is not UTF-8".into())
}

//! The paths of the service SKM was modelled on (NHN Cloud Secure Key
//! Manager, API v1.0–v1.3), so that its clients work by changing their
//! base URL: `/keymanager/{version}/appkey/{appkey}/…` with its field
//! names and its envelope `{"header": {resultCode, resultMessage,
//! isSuccessful}, "body": …}`. `{appkey}` is the keystore's id: a key of
//! another keystore is not found. docs/MIGRATING.md lists every path and
//! what differs.

use http::{Method, StatusCode};
use serde_json::{Value, json};
use skm_crypto::asym::{KeyAlgorithm, SignatureAlgorithm};
use skm_store::Store;
use tonic::Code;
use zeroize::Zeroizing;

use super::input::{Fields, Query, b64, unb64};
use super::{Answer, ApiError, BODY_LIMIT, Call, Reply, RestApi, method_not_allowed, no_such_path, read_json, run};
use crate::kms::{self, Caller, DataKeyForm, KeystoreRef, Signed};
use crate::model::{KeyKind, MAX_PLAINTEXT};

/// The modelled service's header for a client-asserted MAC.
const MAC_HEADER: &str = "x-toast-client-mac-addr";

/// API versions of the modelled service; their user-plane paths are the
/// same, v1.2 added `PUT secrets`.
const VERSIONS: &[&str] = &["v1.0", "v1.1", "v1.2", "v1.3"];

/// A text plaintext may be larger than [`BODY_LIMIT`]: JSON escapes may
/// make up to 6 bytes of each of its bytes.
const ENCRYPT_BODY: usize = 6 * MAX_PLAINTEXT + 1024;

const REFUSED_EXPORT: &str = "SKM never exports key material: use the key through encrypt/decrypt or sign/verify \
                              (docs/MIGRATING.md)";
const REFUSED_SECRET_WRITE: &str = "secrets are changed by an operator in SKM (skm secret update), not by \
                                    applications (docs/MIGRATING.md)";

/// The envelope of a success.
fn envelope(body: Value) -> Value {
    json!({
        "header": { "resultCode": 0, "resultMessage": "SUCCESS", "isSuccessful": true },
        "body": body,
    })
}

/// The envelope of an error: the negated gRPC code and the same message
/// as gRPC.
pub(super) fn envelope_error(code: i32, message: &str) -> Value {
    json!({
        "header": { "resultCode": -code, "resultMessage": message, "isSuccessful": false },
        "body": null,
    })
}

/// One call of the compatible surface.
enum Route<'p> {
    Confirm,
    Secret(&'p str),
    Symmetric(&'p str, Symmetric),
    Asymmetric(&'p str, Asymmetric),
}

#[derive(Clone, Copy)]
enum Symmetric {
    Encrypt,
    Decrypt,
    CreateLocalKey,
    Export,
}

#[derive(Clone, Copy)]
enum Asymmetric {
    Sign,
    Verify,
    SignStandard,
    VerifyStandard,
    PublicKey,
    PrivateKey,
}

impl Route<'_> {
    fn of<'p>(rest: &[&'p str]) -> Option<Route<'p>> {
        let id = |id: &'p str| (!id.is_empty()).then_some(id);
        Some(match rest {
            ["confirm"] => Route::Confirm,
            ["secrets", key] => Route::Secret(id(key)?),
            ["symmetric-keys", key, call] => Route::Symmetric(
                id(key)?,
                match *call {
                    "encrypt" => Symmetric::Encrypt,
                    "decrypt" => Symmetric::Decrypt,
                    "create-local-key" => Symmetric::CreateLocalKey,
                    "symmetric-key" => Symmetric::Export,
                    _ => return None,
                },
            ),
            ["asymmetric-keys", key, call] => Route::Asymmetric(
                id(key)?,
                match *call {
                    "sign" => Asymmetric::Sign,
                    "verify" => Asymmetric::Verify,
                    "sign-standard" => Asymmetric::SignStandard,
                    "verify-standard" => Asymmetric::VerifyStandard,
                    "publicKey" => Asymmetric::PublicKey,
                    "privateKey" => Asymmetric::PrivateKey,
                    _ => return None,
                },
            ),
            _ => return None,
        })
    }

    /// The operation's name (metrics; the audit names the core's) and the
    /// methods the path takes.
    fn name_and_methods(&self, version: &str) -> (&'static str, &'static str) {
        match self {
            Route::Confirm => ("compat.confirm", "GET"),
            Route::Secret(_) if version >= "v1.2" => ("compat.secret", "GET, PUT"),
            Route::Secret(_) => ("compat.secret", "GET"),
            Route::Symmetric(_, call) => match call {
                Symmetric::Encrypt => ("compat.encrypt", "POST"),
                Symmetric::Decrypt => ("compat.decrypt", "POST"),
                Symmetric::CreateLocalKey => ("compat.create-local-key", "POST"),
                Symmetric::Export => ("compat.symmetric-key", "GET"),
            },
            Route::Asymmetric(_, call) => match call {
                Asymmetric::Sign => ("compat.sign", "POST"),
                Asymmetric::Verify => ("compat.verify", "POST"),
                Asymmetric::SignStandard => ("compat.sign-standard", "POST"),
                Asymmetric::VerifyStandard => ("compat.verify-standard", "POST"),
                Asymmetric::PublicKey => ("compat.publicKey", "GET"),
                Asymmetric::PrivateKey => ("compat.privateKey", "GET"),
            },
        }
    }
}

pub(super) async fn handle<S: Store + Clone>(api: &RestApi<S>, segments: &[&str], call: &mut Call) -> Answer {
    let ["keymanager", version, "appkey", appkey, rest @ ..] = segments else {
        return Err(("unknown", no_such_path()));
    };
    if !VERSIONS.contains(version) {
        return Err(("unknown", no_such_path()));
    }
    let Some(route) = Route::of(rest) else { return Err(("unknown", no_such_path())) };
    let (name, allow) = route.name_and_methods(version);
    if !allow.split(", ").any(|m| m == call.method.as_str()) {
        return Err((name, method_not_allowed(allow)));
    }
    match serve(api, appkey, route, call).await {
        Ok(body) => Ok((name, StatusCode::OK, Reply::Json(envelope(body)))),
        Err(e) => Err((name, e)),
    }
}

async fn serve<S: Store + Clone>(
    api: &RestApi<S>,
    appkey: &str,
    route: Route<'_>,
    call: &mut Call,
) -> Result<Value, ApiError> {
    let kms = &*api.kms;
    // The keystore every key of the call must belong to: its id, or its alias.
    let keystore = match appkey.parse() {
        Ok(id) => KeystoreRef::Id(id),
        Err(_) => {
            crate::model::check_name("appkey", appkey).map_err(ApiError::invalid)?;
            KeystoreRef::Alias(appkey.to_owned())
        }
    };
    let caller: Caller = call.caller(MAC_HEADER)?.within_keystore(keystore);
    let mut query = Query::new(call.query.as_deref());
    match route {
        Route::Confirm => {
            let done = run(kms, &caller, kms::WhoAmI).await?;
            let facts = &done.facts;
            Ok(json!({
                "clientIp": facts.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                "clientMacHeader": facts.asserted_mac.map(|m| m.to_string()).unwrap_or_default(),
                "clientSentCertificate": facts.chain.is_some(),
            }))
        }
        Route::Secret(_) if call.method == Method::PUT => {
            Err(ApiError::new(Code::PermissionDenied, REFUSED_SECRET_WRITE))
        }
        Route::Secret(id) => {
            let done = run(kms, &caller, kms::GetSecret { key_id: id.to_owned(), version: 0 }).await?;
            let secret = std::str::from_utf8(&done.value)
                .map_err(|_| ApiError::from(kms::KmsError::Internal("a secret value is not UTF-8".into())))?;
            Ok(json!({ "secret": secret }))
        }
        Route::Symmetric(_, Symmetric::Export) | Route::Asymmetric(_, Asymmetric::PrivateKey) => {
            Err(ApiError::new(Code::PermissionDenied, REFUSED_EXPORT))
        }
        Route::Symmetric(id, Symmetric::Encrypt) => {
            let mut fields = Fields::new(read_json(call, ENCRYPT_BODY).await?);
            let plaintext = Zeroizing::new(fields.required_text("plaintext")?.into_bytes());
            let op = kms::Encrypt { key_id: id.to_owned(), plaintext, aad: Vec::new() };
            let done = run(kms, &caller, op).await?;
            Ok(json!({ "ciphertext": b64(&done.ciphertext), "keyVersion": done.key_version }))
        }
        Route::Symmetric(id, Symmetric::Decrypt) => {
            let mut fields = Fields::new(read_json(call, BODY_LIMIT).await?);
            let ciphertext = unb64("ciphertext", &fields.required_text("ciphertext")?)?;
            let op = kms::Decrypt { key_id: id.to_owned(), ciphertext, aad: Vec::new() };
            let done = run(kms, &caller, op).await?;
            let plaintext = std::str::from_utf8(&done.plaintext).map_err(|_| {
                ApiError::new(
                    Code::FailedPrecondition,
                    "the plaintext is not UTF-8 text, which this path can't return; use /v1/keys/{key_id}/decrypt (base64)",
                )
            })?;
            Ok(json!({ "plaintext": plaintext, "keyVersion": done.key_version }))
        }
        Route::Symmetric(id, Symmetric::CreateLocalKey) => {
            read_json(call, BODY_LIMIT).await?;
            let op = kms::GenerateDataKey {
                key_id: id.to_owned(),
                aad: Vec::new(),
                with_plaintext: true,
                sealed_as: DataKeyForm::Base64Text,
            };
            let done = run(kms, &caller, op).await?;
            let plaintext = done.plaintext.as_ref().map(|k| k.to_base64()).unwrap_or_default();
            Ok(json!({
                "localKeyPlaintext": plaintext.as_str(),
                "localKeyCiphertext": b64(&done.ciphertext),
                "keyVersion": done.key_version,
            }))
        }
        Route::Asymmetric(id, Asymmetric::Sign) => {
            let mut fields = Fields::new(read_json(call, BODY_LIMIT).await?);
            let message = fields.required_text("plaintext")?.into_bytes();
            let op = kms::Sign { key_id: id.to_owned(), signed: Signed::Message(message), algorithm: None };
            let done = run(kms, &caller, op).await?;
            Ok(json!({ "signature": b64(&done.signature), "keyVersion": done.key_version }))
        }
        Route::Asymmetric(id, Asymmetric::Verify) => {
            let mut fields = Fields::new(read_json(call, BODY_LIMIT).await?);
            let message = fields.required_text("plaintext")?.into_bytes();
            let signature = unb64("signature", &fields.required_text("signature")?)?;
            let op = kms::Verify {
                key_id: id.to_owned(),
                signed: Signed::Message(message),
                signature,
                algorithm: None,
                key_version: 0,
            };
            let kms::Verified(version) = run(kms, &caller, op).await?;
            Ok(json!({ "result": version.is_some(), "keyVersion": version.unwrap_or(0) }))
        }
        Route::Asymmetric(id, Asymmetric::SignStandard) => {
            let mut fields = Fields::new(read_json(call, BODY_LIMIT).await?);
            let message = unb64("plaintext", &fields.required_text("plaintext")?)?;
            let algorithm = standard_algorithm(&fields.required_text("algorithm")?)?;
            let op = kms::Sign { key_id: id.to_owned(), signed: Signed::Message(message), algorithm: Some(algorithm) };
            let done = run(kms, &caller, op).await?;
            let mut body = json!({
                "signature": b64(&done.signature),
                "algorithm": standard_name(done.algorithm),
                "hashAlgorithm": "SHA-256",
                "keyVersion": done.key_version,
            });
            if done.algorithm == SignatureAlgorithm::RsaPssSha256 {
                body["mgfAlgorithm"] = json!("MGF1-SHA-256");
                body["saltLength"] = json!(32);
            }
            Ok(body)
        }
        Route::Asymmetric(id, Asymmetric::VerifyStandard) => {
            let mut fields = Fields::new(read_json(call, BODY_LIMIT).await?);
            let message = unb64("plaintext", &fields.required_text("plaintext")?)?;
            let signature = unb64("signature", &fields.required_text("signature")?)?;
            let algorithm = standard_algorithm(&fields.required_text("algorithm")?)?;
            let key_version = fields.u32_or_zero("keyVersion")?;
            let op = kms::Verify {
                key_id: id.to_owned(),
                signed: Signed::Message(message),
                signature,
                algorithm: Some(algorithm),
                key_version,
            };
            let kms::Verified(version) = run(kms, &caller, op).await?;
            Ok(json!({ "result": version.is_some(), "keyVersion": version.unwrap_or(0) }))
        }
        Route::Asymmetric(id, Asymmetric::PublicKey) => {
            let key_version = query.u32_or_zero("keyVersion")?;
            let op = kms::GetPublicKey { key_id: id.to_owned(), key_version };
            let done = run(kms, &caller, op).await?;
            let key_type = match done.kind {
                KeyKind::Asymmetric(KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096)
                | KeyKind::RsaOaep(_) => "RSA",
                KeyKind::Asymmetric(KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384) => "EC",
                KeyKind::Asymmetric(KeyAlgorithm::MlDsa44 | KeyAlgorithm::MlDsa65 | KeyAlgorithm::MlDsa87) => "ML-DSA",
                KeyKind::Asymmetric(KeyAlgorithm::Ed25519) => "ED25519",
                // GetPublicKey answers only for keys with a public half.
                KeyKind::Aes256 | KeyKind::Hmac(_) | KeyKind::Secret => {
                    return Err(ApiError::new(Code::Internal, "internal error"));
                }
            };
            Ok(json!({
                "keyType": key_type,
                "key": hex::encode(&done.spki_der),
                "encodedKey": b64(&done.spki_der),
                "keyVersion": done.key_version,
            }))
        }
    }
}

/// The modelled service's names of the RSA signature schemes.
fn standard_algorithm(name: &str) -> Result<SignatureAlgorithm, ApiError> {
    match name {
        "RSASSA-PSS" => Ok(SignatureAlgorithm::RsaPssSha256),
        "RSASSA-PKCS1-v1_5" => Ok(SignatureAlgorithm::RsaPkcs1Sha256),
        _ => Err(ApiError::invalid("algorithm: must be RSASSA-PSS or RSASSA-PKCS1-v1_5")),
    }
}

fn standard_name(algorithm: SignatureAlgorithm) -> &'static str {
    match algorithm {
        SignatureAlgorithm::RsaPssSha256 => "RSASSA-PSS",
        SignatureAlgorithm::RsaPkcs1Sha256 => "RSASSA-PKCS1-v1_5",
        SignatureAlgorithm::Ed25519 => "Ed25519",
        SignatureAlgorithm::EcdsaSha256 => "ECDSA-SHA256",
        SignatureAlgorithm::EcdsaSha384 => "ECDSA-SHA384",
        SignatureAlgorithm::MlDsa => "ML-DSA",
    }
}

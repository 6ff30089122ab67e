//! `skm-access-probe`: runs a plan of gRPC calls against kms-api and prints
//! how each ended, for the access-control matrix test
//! (`tests/tests/access_matrix.rs`), which runs it inside network
//! namespaces so that kms-api sees real, different client addresses and
//! MACs.
//!
//! Input (stdin, JSON): the deployment CA, the trust domain, both kms-api
//! endpoints, and a list of calls:
//!
//! ```json
//! { "ca": "/…/ca.pem", "trust_domain": "skm.test",
//!   "user_endpoint": "10.213.7.1:40001", "admin_endpoint": "127.0.0.1:40002",
//!   "calls": [ { "id": "c1", "port": "user", "identity": "none",
//!                "asserted_mac": "02:00:00:00:00:01", "rpc": "Encrypt",
//!                "key_id": "…", "data": "<base64>", "aad": "<base64>" } ] }
//! ```
//!
//! `identity` is `"none"`, `{"pem": {"cert", "key"}}` or
//! `{"p12": {"file", "password_file"}}`; `port` is `"user"`, `"admin"` or
//! `"rest"` (the same KeyService call as JSON on `rest_endpoint`'s `/v1`,
//! one HTTPS/1.1 connection per call, answered like the gRPC one: the
//! error body's code and message); `rpc` is a KeyService or AdminService
//! method name (an AdminService method on the user port is sent to the user
//! port). Byte arguments are base64.
//!
//! One channel per (port, identity). The first use of a user-port channel
//! is preceded by a warm-up `WhoAmI`, reported as `<call id>#warm-up`, so
//! the test sees what kms-api read of the connection before the real calls.
//!
//! Output (stdout, JSON): one `{ id, code, message, detail }` per call, in
//! order: `code` is the gRPC code (0 = OK), -1 for a transport error
//! (connection or TLS failure); `detail` describes a successful answer
//! (decrypted plaintext, `valid`/`invalid`, WhoAmI's fields). A batch call
//! with one item reports that item's outcome. Every call has a 10 s
//! deadline (DEADLINE_EXCEEDED).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use skm_proto::admin::v1 as admin;
use skm_proto::admin::v1::admin_service_client::AdminServiceClient;
use skm_proto::api::v1 as api;
use skm_proto::api::v1::key_service_client::KeyServiceClient;
use skm_runtime::tls::TlsIdentity;
use skm_runtime::{Service, SpiffeId};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const ASSERTED_MAC_HEADER: &str = "x-skm-client-mac";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Plan {
    ca: PathBuf,
    trust_domain: String,
    user_endpoint: String,
    admin_endpoint: String,
    #[serde(default)]
    rest_endpoint: String,
    calls: Vec<Call>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
enum Port {
    User,
    Admin,
    Rest,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum Identity {
    None,
    Pem { cert: PathBuf, key: PathBuf },
    P12 { file: PathBuf, password_file: PathBuf },
}

/// The methods the probe can call: KeyService's, then AdminService's.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
enum Rpc {
    WhoAmI,
    Encrypt,
    Decrypt,
    GenerateDataKey,
    GenerateDataKeyWithoutPlaintext,
    ReEncrypt,
    BatchEncrypt,
    BatchDecrypt,
    Sign,
    Verify,
    GetPublicKey,
    GetSecret,
    GenerateMac,
    VerifyMac,
    CreateKeystore,
    ListKeystores,
    GetKeystore,
    UpdateKeystore,
    DeleteKeystore,
    IssueClientCertificate,
    RegisterClientCertificate,
    RevokeClientCertificate,
    ListAudit,
    VerifyAudit,
    RevokeOperator,
    CreateKey,
    CreateSecret,
    UpdateSecret,
    ListKeys,
    DescribeKey,
    RotateKey,
    UpdateKey,
    EnableKey,
    DisableKey,
    ScheduleKeyDeletion,
    CancelKeyDeletion,
    GetParametersForImport,
    ImportKeyMaterial,
    GetSystemKeyStatus,
    RetireSystemKeyVersion,
    CreateConsoleSignIn,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Call {
    id: String,
    port: Port,
    identity: Identity,
    #[serde(default, deserialize_with = "mac")]
    asserted_mac: Option<MetadataValue<Ascii>>,
    rpc: Rpc,
    #[serde(default)]
    key_id: String,
    #[serde(default)]
    keystore_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    sha256: String,
    /// Plaintext or message.
    #[serde(default, deserialize_with = "base64")]
    data: Vec<u8>,
    #[serde(default, deserialize_with = "base64")]
    aad: Vec<u8>,
    #[serde(default, deserialize_with = "base64")]
    ciphertext: Vec<u8>,
    #[serde(default, deserialize_with = "base64")]
    signature: Vec<u8>,
}

fn base64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    B64.decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// Any text that fits in metadata, so that malformed MACs can be sent too.
fn mac<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<MetadataValue<Ascii>>, D::Error> {
    Option::<String>::deserialize(d)?.map(|m| m.parse().map_err(serde::de::Error::custom)).transpose()
}

#[derive(Serialize)]
struct Outcome {
    id: String,
    code: i32,
    message: String,
    detail: String,
}

/// A successful answer, summarised for the test.
type Answer = Result<String, Status>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    skm_runtime::tls::install_crypto_provider();
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).context("read the plan from stdin")?;
    let plan: Plan = serde_json::from_str(&input).context("parse the plan")?;
    let server = SpiffeId::for_service(&plan.trust_domain, Service::KmsApi)?;
    let ca_pem = std::fs::read(&plan.ca).with_context(|| format!("read {}", plan.ca.display()))?;

    let mut channels: HashMap<(Port, Identity), Channel> = HashMap::new();
    let mut rest_configs: HashMap<Identity, std::sync::Arc<rustls::ClientConfig>> = HashMap::new();
    let mut outcomes = Vec::with_capacity(plan.calls.len() + 8);
    for call in &plan.calls {
        if call.port == Port::Rest {
            // One config per identity (reading a PKCS#12 file is slow on purpose).
            let tls = match rest_configs.get(&call.identity) {
                Some(tls) => std::sync::Arc::clone(tls),
                None => {
                    let tls = tls_config(&ca_pem, &plan.ca, &call.identity, &server)
                        .with_context(|| format!("call {}: TLS config", call.id))?;
                    rest_configs.insert(call.identity.clone(), tls.clone());
                    tls
                }
            };
            let answer = timed(rest(&plan.rest_endpoint, tls, call)).await;
            outcomes.push(outcome(call.id.clone(), answer));
            continue;
        }
        let key = (call.port, call.identity.clone());
        let channel = match channels.get(&key) {
            Some(channel) => channel.clone(),
            None => {
                let endpoint = match call.port {
                    Port::User | Port::Rest => &plan.user_endpoint,
                    Port::Admin => &plan.admin_endpoint,
                };
                let channel = channel(endpoint, &ca_pem, &plan.ca, &call.identity, &server)
                    .with_context(|| format!("call {}: channel", call.id))?;
                if call.port == Port::User {
                    let warm_up = timed(who_am_i(&channel, None)).await;
                    outcomes.push(outcome(format!("{}#warm-up", call.id), warm_up));
                }
                channels.insert(key, channel.clone());
                channel
            }
        };
        let answer = timed(run(&channel, call)).await;
        outcomes.push(outcome(call.id.clone(), answer));
    }
    println!("{}", serde_json::to_string(&outcomes)?);
    Ok(())
}

/// A lazy channel presenting `identity` and checking kms-api's SPIFFE id.
fn channel(
    endpoint: &str,
    ca_pem: &[u8],
    ca: &Path,
    identity: &Identity,
    server: &SpiffeId,
) -> anyhow::Result<Channel> {
    Ok(skm_runtime::channel::lazy_channel(endpoint, tls_config(ca_pem, ca, identity, server)?)?)
}

/// The TLS client config presenting `identity` and checking kms-api's
/// SPIFFE id (not a host name: the namespaces reach it by address).
fn tls_config(
    ca_pem: &[u8],
    ca: &Path,
    identity: &Identity,
    server: &SpiffeId,
) -> anyhow::Result<std::sync::Arc<rustls::ClientConfig>> {
    Ok(match identity {
        Identity::None => skm_runtime::tls::anonymous_client_config(skm_runtime::tls::load_roots(ca)?, server)?,
        Identity::Pem { cert, key } => TlsIdentity::from_pem(
            ca_pem,
            &std::fs::read(cert).with_context(|| format!("read {}", cert.display()))?,
            &std::fs::read(key).with_context(|| format!("read {}", key.display()))?,
        )?
        .client_config(server)?,
        Identity::P12 { file, password_file } => {
            let data = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
            let password =
                std::fs::read_to_string(password_file).with_context(|| format!("read {}", password_file.display()))?;
            let password = password.lines().next().unwrap_or_default();
            let (chain, key) = skm_pki::client::read_pkcs12(&data, password)
                .with_context(|| format!("read PKCS#12 {}", file.display()))?;
            TlsIdentity::from_der(ca_pem, chain, key)?.client_config(server)?
        }
    })
}

/// One KeyService call as JSON on the REST listener's `/v1`, over a
/// connection of its own (HTTP/1.1), answered like the gRPC call: the
/// same detail on success, the error body's code and message otherwise.
async fn rest(endpoint: &str, tls: std::sync::Arc<rustls::ClientConfig>, call: &Call) -> Answer {
    use serde_json::json;
    let b64 = |b: &[u8]| B64.encode(b);
    let key = &call.key_id;
    let (method, path, body) = match call.rpc {
        Rpc::WhoAmI => ("GET", "/v1/whoami".to_owned(), None),
        Rpc::Encrypt => (
            "POST",
            format!("/v1/keys/{key}/encrypt"),
            Some(json!({"plaintext": b64(&call.data), "aad": b64(&call.aad)})),
        ),
        Rpc::Decrypt => (
            "POST",
            format!("/v1/keys/{key}/decrypt"),
            Some(json!({"ciphertext": b64(&call.ciphertext), "aad": b64(&call.aad)})),
        ),
        Rpc::GenerateDataKey => {
            ("POST", format!("/v1/keys/{key}/generate-data-key"), Some(json!({"aad": b64(&call.aad)})))
        }
        Rpc::GenerateDataKeyWithoutPlaintext => (
            "POST",
            format!("/v1/keys/{key}/generate-data-key-without-plaintext"),
            Some(json!({"aad": b64(&call.aad)})),
        ),
        Rpc::ReEncrypt => (
            "POST",
            format!("/v1/keys/{key}/re-encrypt"),
            Some(json!({"ciphertext": b64(&call.ciphertext), "aad": b64(&call.aad)})),
        ),
        Rpc::BatchEncrypt => (
            "POST",
            "/v1/batch/encrypt".to_owned(),
            Some(json!({"items": [{"key_id": key, "plaintext": b64(&call.data), "aad": b64(&call.aad)}]})),
        ),
        Rpc::BatchDecrypt => (
            "POST",
            "/v1/batch/decrypt".to_owned(),
            Some(json!({"items": [{"key_id": key, "ciphertext": b64(&call.ciphertext), "aad": b64(&call.aad)}]})),
        ),
        Rpc::Sign => ("POST", format!("/v1/keys/{key}/sign"), Some(json!({"message": b64(&call.data)}))),
        Rpc::Verify => (
            "POST",
            format!("/v1/keys/{key}/verify"),
            Some(json!({"message": b64(&call.data), "signature": b64(&call.signature)})),
        ),
        Rpc::GetPublicKey => ("GET", format!("/v1/keys/{key}/public-key"), None),
        Rpc::GetSecret => ("GET", format!("/v1/secrets/{key}"), None),
        Rpc::GenerateMac => ("POST", format!("/v1/keys/{key}/generate-mac"), Some(json!({"message": b64(&call.data)}))),
        Rpc::VerifyMac => (
            "POST",
            format!("/v1/keys/{key}/verify-mac"),
            Some(json!({"message": b64(&call.data), "mac": b64(&call.signature)})),
        ),
        other => return Err(Status::internal(format!("probe: {other:?} is not on the REST API"))),
    };
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: kms-api\r\nConnection: close\r\n");
    if let Some(mac) = &call.asserted_mac {
        head.push_str(&format!("{ASSERTED_MAC_HEADER}: {}\r\n", mac.to_str().unwrap_or_default()));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    let raw = exchange(endpoint, tls, format!("{head}\r\n{body}").as_bytes())
        .await
        .map_err(|e| Status::unavailable(format!("probe: REST transport: {e:#}")))?;
    let text = String::from_utf8_lossy(&raw);
    let (status_line, answer) = match text.split_once("\r\n\r\n") {
        Some((head, body)) => (head.lines().next().unwrap_or_default().to_owned(), body.to_owned()),
        None => return Err(Status::unavailable("probe: REST: no HTTP answer")),
    };
    let answer: serde_json::Value = serde_json::from_str(&answer)
        .map_err(|_| Status::internal(format!("probe: REST: not JSON after {status_line}")))?;
    if !status_line.contains(" 200 ") {
        let code = answer["error"]["code"].as_i64().and_then(|c| i32::try_from(c).ok()).unwrap_or(-2);
        return Err(Status::new(Code::from(code), answer["error"]["message"].as_str().unwrap_or_default()));
    }
    let field = |name: &str| answer[name].as_str().unwrap_or_default().to_owned();
    Ok(match call.rpc {
        Rpc::WhoAmI => answer.to_string(),
        Rpc::Decrypt => field("plaintext"),
        Rpc::GetSecret => field("value"),
        Rpc::Verify | Rpc::VerifyMac => if answer["valid"] == true { "valid" } else { "invalid" }.to_owned(),
        Rpc::BatchEncrypt | Rpc::BatchDecrypt => {
            let item = &answer["results"][0];
            if let Some(e) = item.get("error") {
                let code = e["code"].as_i64().and_then(|c| i32::try_from(c).ok()).unwrap_or(-2);
                return Err(Status::new(Code::from(code), e["message"].as_str().unwrap_or_default()));
            }
            if call.rpc == Rpc::BatchDecrypt {
                item["ok"]["plaintext"].as_str().unwrap_or_default().to_owned()
            } else {
                String::new()
            }
        }
        _ => String::new(),
    })
}

/// Sends `request` over a new TLS connection (HTTP/1.1 by ALPN) and reads
/// the answer to its end.
async fn exchange(
    endpoint: &str,
    tls: std::sync::Arc<rustls::ClientConfig>,
    request: &[u8],
) -> anyhow::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = (*tls).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(endpoint).await?;
    let name = rustls::pki_types::ServerName::try_from("kms-api")?;
    let mut stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await?;
    stream.write_all(request).await?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw).await {
        Ok(_) => Ok(raw),
        // A close without close_notify after a complete answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(e.into()),
    }
}

async fn timed(answer: impl std::future::Future<Output = Answer>) -> Answer {
    match tokio::time::timeout(CALL_TIMEOUT, answer).await {
        Ok(answer) => answer,
        Err(_) => Err(Status::deadline_exceeded(format!("probe: no answer within {CALL_TIMEOUT:?}"))),
    }
}

fn outcome(id: String, answer: Answer) -> Outcome {
    match answer {
        Ok(detail) => Outcome { id, code: Code::Ok as i32, message: String::new(), detail },
        Err(status) => {
            // Statuses the server sent carry no source; those tonic made
            // from a connection, TLS or HTTP/2 failure do.
            let transport = std::error::Error::source(&status).is_some();
            let code = if transport { -1 } else { status.code() as i32 };
            let message = match std::error::Error::source(&status) {
                Some(source) if transport => format!("{}: {source}", status.message()),
                _ => status.message().to_owned(),
            };
            Outcome { id, code, message, detail: String::new() }
        }
    }
}

/// The summary of an answer whose content doesn't matter.
fn done<T>(_: T) -> String {
    String::new()
}

/// A request with the call's asserted MAC, if any.
fn request<T>(message: T, asserted_mac: Option<&MetadataValue<Ascii>>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(mac) = asserted_mac {
        request.metadata_mut().insert(ASSERTED_MAC_HEADER, mac.clone());
    }
    request
}

async fn who_am_i(channel: &Channel, asserted_mac: Option<&MetadataValue<Ascii>>) -> Answer {
    let me = KeyServiceClient::new(channel.clone()).who_am_i(request(api::WhoAmIRequest {}, asserted_mac)).await?;
    let me = me.into_inner();
    Ok(serde_json::json!({
        "client_ip": me.client_ip,
        "proxied_by": me.proxied_by,
        "verified_mac": me.verified_mac,
        "asserted_mac": me.asserted_mac,
        "certificate_sha256": me.certificate_sha256,
        "certificate_subject": me.certificate_subject,
    })
    .to_string())
}

/// The outcome of a one-item batch: the item's.
fn item<T>(results: Vec<Option<Result<T, api::ItemError>>>, detail: impl FnOnce(T) -> String) -> Answer {
    match <[_; 1]>::try_from(results) {
        Ok([Some(Ok(ok))]) => Ok(detail(ok)),
        Ok([Some(Err(e))]) => Err(Status::new(Code::from(e.code), e.message)),
        Ok([None]) => Err(Status::internal("probe: batch item without a result")),
        Err(results) => Err(Status::internal(format!("probe: {} batch results for one item", results.len()))),
    }
}

async fn run(channel: &Channel, call: &Call) -> Answer {
    let mac = call.asserted_mac.as_ref();
    let mut keys = KeyServiceClient::new(channel.clone());
    let mut ops = AdminServiceClient::new(channel.clone());
    let (key_id, keystore_id, name) = (call.key_id.clone(), call.keystore_id.clone(), call.name.clone());
    let (data, aad, ciphertext) = (call.data.clone(), call.aad.clone(), call.ciphertext.clone());
    match call.rpc {
        // KeyService.
        Rpc::WhoAmI => who_am_i(channel, mac).await,
        Rpc::Encrypt => {
            let req = api::EncryptRequest { key_id, plaintext: data, aad };
            keys.encrypt(request(req, mac)).await.map(done)
        }
        Rpc::Decrypt => {
            let req = api::DecryptRequest { key_id, ciphertext, aad, ..Default::default() };
            keys.decrypt(request(req, mac)).await.map(|r| B64.encode(r.into_inner().plaintext))
        }
        Rpc::GenerateDataKey => {
            let req = api::GenerateDataKeyRequest { key_id, aad };
            keys.generate_data_key(request(req, mac)).await.map(done)
        }
        Rpc::GenerateDataKeyWithoutPlaintext => {
            let req = api::GenerateDataKeyRequest { key_id, aad };
            keys.generate_data_key_without_plaintext(request(req, mac)).await.map(done)
        }
        Rpc::ReEncrypt => {
            let req = api::ReEncryptRequest { key_id, ciphertext, aad };
            keys.re_encrypt(request(req, mac)).await.map(done)
        }
        Rpc::BatchEncrypt => {
            let items = vec![api::EncryptRequest { key_id, plaintext: data, aad }];
            let results = keys.batch_encrypt(request(api::BatchEncryptRequest { items }, mac)).await?;
            let results = results.into_inner().results.into_iter().map(|r| {
                r.result.map(|r| match r {
                    api::batch_encrypt_result::Result::Ok(ok) => Ok(ok),
                    api::batch_encrypt_result::Result::Error(e) => Err(e),
                })
            });
            item(results.collect(), |_| String::new())
        }
        Rpc::BatchDecrypt => {
            let items = vec![api::DecryptRequest { key_id, ciphertext, aad, ..Default::default() }];
            let results = keys.batch_decrypt(request(api::BatchDecryptRequest { items }, mac)).await?;
            let results = results.into_inner().results.into_iter().map(|r| {
                r.result.map(|r| match r {
                    api::batch_decrypt_result::Result::Ok(ok) => Ok(ok),
                    api::batch_decrypt_result::Result::Error(e) => Err(e),
                })
            });
            item(results.collect(), |ok| B64.encode(ok.plaintext))
        }
        Rpc::Sign => {
            let req = api::SignRequest { key_id, input: Some(api::sign_request::Input::Message(data)), algorithm: 0 };
            keys.sign(request(req, mac)).await.map(done)
        }
        Rpc::Verify => {
            let input = Some(api::verify_request::Input::Message(data));
            let req =
                api::VerifyRequest { key_id, input, signature: call.signature.clone(), algorithm: 0, key_version: 0 };
            let valid = keys.verify(request(req, mac)).await?.into_inner().valid;
            Ok(if valid { "valid" } else { "invalid" }.to_owned())
        }
        Rpc::GetPublicKey => {
            keys.get_public_key(request(api::GetPublicKeyRequest { key_id, key_version: 0 }, mac)).await.map(done)
        }
        Rpc::GetSecret => keys
            .get_secret(request(api::GetSecretRequest { key_id, version: 0 }, mac))
            .await
            .map(|r| r.into_inner().value),
        Rpc::GenerateMac => {
            keys.generate_mac(request(api::GenerateMacRequest { key_id, message: data }, mac)).await.map(done)
        }
        Rpc::VerifyMac => {
            let req = api::VerifyMacRequest { key_id, message: data, mac: call.signature.clone(), key_version: 0 };
            let valid = keys.verify_mac(request(req, mac)).await?.into_inner().valid;
            Ok(if valid { "valid" } else { "invalid" }.to_owned())
        }
        // AdminService.
        Rpc::CreateKeystore => {
            let req = admin::CreateKeystoreRequest { alias: String::new(), name, allow_ips: Vec::new(), policy: None };
            ops.create_keystore(request(req, mac)).await.map(done)
        }
        Rpc::ListKeystores => ops.list_keystores(request(admin::ListKeystoresRequest {}, mac)).await.map(done),
        Rpc::GetKeystore => ops.get_keystore(request(admin::GetKeystoreRequest { keystore_id }, mac)).await.map(done),
        Rpc::UpdateKeystore => {
            let policy = Some(admin::Policy { allow_ips: vec!["127.0.0.1".into()], ..admin::Policy::default() });
            ops.update_keystore(request(admin::UpdateKeystoreRequest { alias: None, keystore_id, policy }, mac))
                .await
                .map(done)
        }
        Rpc::DeleteKeystore => {
            ops.delete_keystore(request(admin::GetKeystoreRequest { keystore_id }, mac)).await.map(done)
        }
        Rpc::IssueClientCertificate => {
            let req =
                admin::IssueClientCertificateRequest { keystore_id, name, days: 1, password: "probe-password".into() };
            ops.issue_client_certificate(request(req, mac)).await.map(done)
        }
        Rpc::RegisterClientCertificate => {
            let req = admin::RegisterClientCertificateRequest { keystore_id, name, sha256: call.sha256.clone() };
            ops.register_client_certificate(request(req, mac)).await.map(done)
        }
        Rpc::RevokeClientCertificate => {
            let req = admin::RevokeClientCertificateRequest { keystore_id, certificate: call.sha256.clone() };
            ops.revoke_client_certificate(request(req, mac)).await.map(done)
        }
        Rpc::ListAudit => {
            let req = admin::ListAuditRequest { limit: 1, ..admin::ListAuditRequest::default() };
            ops.list_audit(request(req, mac)).await.map(done)
        }
        Rpc::VerifyAudit => ops.verify_audit(request(admin::VerifyAuditRequest {}, mac)).await.map(done),
        Rpc::RevokeOperator => {
            let req = admin::RevokeOperatorRequest { sha256: call.sha256.clone() };
            ops.revoke_operator(request(req, mac)).await.map(done)
        }
        Rpc::CreateKey => {
            let key_type = admin::KeyType::Aes256 as i32;
            let req = admin::CreateKeyRequest { keystore_id, name, key_type, ..Default::default() };
            ops.create_key(request(req, mac)).await.map(done)
        }
        Rpc::CreateSecret => {
            let req = admin::CreateSecretRequest { keystore_id, name, value: "probe".into(), max_versions: 0 };
            ops.create_secret(request(req, mac)).await.map(done)
        }
        Rpc::UpdateSecret => {
            let req = admin::UpdateSecretRequest { key_id, value: "probe".into() };
            ops.update_secret(request(req, mac)).await.map(done)
        }
        Rpc::ListKeys => ops.list_keys(request(admin::ListKeysRequest { keystore_id }, mac)).await.map(done),
        Rpc::DescribeKey => ops.describe_key(request(admin::DescribeKeyRequest { key_id }, mac)).await.map(done),
        Rpc::RotateKey => ops.rotate_key(request(admin::RotateKeyRequest { key_id }, mac)).await.map(done),
        Rpc::UpdateKey => {
            ops.update_key(request(admin::UpdateKeyRequest { key_id, rotation_period_days: 0 }, mac)).await.map(done)
        }
        Rpc::EnableKey => ops.enable_key(request(admin::KeyIdRequest { key_id }, mac)).await.map(done),
        Rpc::DisableKey => ops.disable_key(request(admin::KeyIdRequest { key_id }, mac)).await.map(done),
        Rpc::ScheduleKeyDeletion => {
            let req = admin::ScheduleKeyDeletionRequest { key_id, pending_days: 0 };
            ops.schedule_key_deletion(request(req, mac)).await.map(done)
        }
        Rpc::CancelKeyDeletion => ops.cancel_key_deletion(request(admin::KeyIdRequest { key_id }, mac)).await.map(done),
        // Well-formed, so that only the caller's role and the key decide.
        Rpc::GetParametersForImport => {
            let req = admin::GetParametersForImportRequest {
                key_id,
                wrapping_algorithm: admin::WrappingAlgorithm::RsaesOaepSha256 as i32,
                wrapping_key_spec: admin::WrappingKeySpec::Rsa3072 as i32,
            };
            ops.get_parameters_for_import(request(req, mac)).await.map(done)
        }
        Rpc::ImportKeyMaterial => {
            let req = admin::ImportKeyMaterialRequest {
                key_id,
                import_token: vec![0; 32],
                encrypted_key_material: vec![0; 384],
            };
            ops.import_key_material(request(req, mac)).await.map(done)
        }
        Rpc::GetSystemKeyStatus => {
            ops.get_system_key_status(request(admin::GetSystemKeyStatusRequest {}, mac)).await.map(done)
        }
        // Version 0: INVALID_ARGUMENT once the role lets it through.
        Rpc::RetireSystemKeyVersion => {
            let req = admin::RetireSystemKeyVersionRequest { version: 0 };
            ops.retire_system_key_version(request(req, mac)).await.map(done)
        }
        // No console here: FAILED_PRECONDITION once the role lets it through.
        Rpc::CreateConsoleSignIn => {
            ops.create_console_sign_in(request(admin::CreateConsoleSignInRequest {}, mac)).await.map(done)
        }
    }
}

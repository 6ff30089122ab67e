//! Cosmian KMS 5.28 over KMIP 2.1 JSON (`POST /kmip/2_1`), started as
//! `cosmian_kms --database-type sqlite` on a free port (plain HTTP). Each
//! operation's request is serialised once, when the keys are made, and
//! its answer checked once then; the measured calls send those bytes.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use hyper::Method;
use serde_json::{Value, json};

use super::PeerProcess;
use super::http::{Http, Prepared, free_port};
use crate::ops::{self, Op, SigKey};

const KMIP: &str = "/kmip/2_1";
const JSON: [(&str, &str); 1] = [("Content-Type", "application/json")];

/// An AES-GCM ciphertext as KMIP returns it: data, IV, tag.
type GcmCiphertext = (Vec<u8>, Vec<u8>, Vec<u8>);

/// A running Cosmian KMS with its keys.
pub(crate) struct Cosmian {
    pub(super) process: PeerProcess,
    http: Http,
    aes: String,
    payloads: HashMap<usize, Vec<u8>>,
    /// Per payload size.
    ciphertexts: HashMap<usize, GcmCiphertext>,
    message: Vec<u8>,
    /// Per key type: private key id, public key id, signature.
    signing: HashMap<SigKey, (String, String, Vec<u8>)>,
    /// Operations whose set-up failed, with the reason.
    failed: HashMap<Op, String>,
    /// Each operation's request, serialised at set-up.
    requests: HashMap<Op, Prepared>,
}

/// What each operation maps to.
pub(crate) fn mapping(op: Op) -> String {
    match op {
        Op::Noop => "GET /version (no KMIP)".into(),
        Op::GetSecret => "KMIP Get of an AES-256 key (32 B key material)".into(),
        Op::Encrypt(_) => "KMIP Encrypt AES-256-GCM".into(),
        Op::Decrypt(_) => "KMIP Decrypt AES-256-GCM".into(),
        Op::DataKey | Op::BatchEncrypt | Op::CreateSecret => "n/a".into(),
        Op::Sign(k) => format!("KMIP Sign ({})", default_signature(k)),
        Op::Verify(k) => format!("KMIP SignatureVerify ({})", default_signature(k)),
        Op::Mac | Op::VerifyMac => "n/a".into(),
    }
}

fn default_signature(k: SigKey) -> &'static str {
    match k {
        SigKey::Ed25519 => "Ed25519",
        SigKey::EcdsaP256 => "ECDSA with SHA-256",
        SigKey::Rsa2048 => "RSASSA-PSS SHA-256",
        SigKey::MlDsa65 => "ML-DSA-65",
    }
}

fn ttlv(tag: &str, kind: &str, value: Value) -> Value {
    json!({ "tag": tag, "type": kind, "value": value })
}

fn structure(tag: &str, items: Vec<Value>) -> Value {
    ttlv(tag, "Structure", Value::Array(items))
}

fn text(tag: &str, s: &str) -> Value {
    ttlv(tag, "TextString", json!(s))
}

fn bytes(tag: &str, b: &[u8]) -> Value {
    ttlv(tag, "ByteString", json!(hex::encode_upper(b)))
}

fn enumeration(tag: &str, s: &str) -> Value {
    ttlv(tag, "Enumeration", json!(s))
}

fn integer(tag: &str, i: i64) -> Value {
    ttlv(tag, "Integer", json!(i))
}

/// The value of the first child of a structure with `tag`.
fn field<'a>(v: &'a Value, tag: &str) -> Option<&'a Value> {
    v.get("value")?.as_array()?.iter().find(|c| c.get("tag").and_then(Value::as_str) == Some(tag))?.get("value")
}

fn field_str(v: &Value, tag: &str) -> Result<String, String> {
    field(v, tag).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| format!("no {tag} in {v}"))
}

fn field_bytes(v: &Value, tag: &str) -> Result<Vec<u8>, String> {
    hex::decode(field_str(v, tag)?).map_err(|e| format!("{tag}: {e}"))
}

fn key_pair_request(k: SigKey) -> Value {
    let (algorithm, length, curve) = match k {
        SigKey::Ed25519 => ("Ed25519", 256, Some("CURVEED25519")),
        SigKey::EcdsaP256 => ("ECDSA", 256, Some("P256")),
        SigKey::Rsa2048 => ("RSA", 2048, None),
        SigKey::MlDsa65 => ("ML-DSA", 0, None),
    };
    let mut attributes = vec![
        enumeration("CryptographicAlgorithm", algorithm),
        integer("CryptographicLength", length),
        integer("CryptographicUsageMask", 3), // Sign | Verify
        enumeration("ObjectType", "PrivateKey"),
    ];
    if let Some(curve) = curve {
        attributes.push(structure("CryptographicDomainParameters", vec![enumeration("RecommendedCurve", curve)]));
    }
    structure("CreateKeyPair", vec![structure("CommonAttributes", attributes)])
}

/// New objects are PreActive: Encrypt and Sign want them Active.
async fn activate(http: &Http, id: &str) -> Result<(), String> {
    http.json(KMIP, &JSON, &structure("Activate", vec![text("UniqueIdentifier", id)])).await.map(drop)
}

/// KMIP Encrypt of `plaintext` with AES-256-GCM under key `id`.
fn encrypt_request(id: &str, plaintext: &[u8]) -> Value {
    structure("Encrypt", vec![text("UniqueIdentifier", id), gcm(), bytes("Data", plaintext)])
}

/// KMIP Sign of `message` with the key's default algorithm;
/// InitIndicator/FinalIndicator left out (both true is an HTTP 500 here).
fn sign_request(id: &str, message: &[u8]) -> Value {
    structure("Sign", vec![text("UniqueIdentifier", id), bytes("Data", message)])
}

fn gcm() -> Value {
    structure("CryptographicParameters", vec![enumeration("BlockCipherMode", "GCM")])
}

impl Cosmian {
    /// Starts the server and makes its keys.
    pub(crate) async fn start(bin: &Path, ops: &[Op]) -> anyhow::Result<Self> {
        let port = free_port()?;
        let port_arg = port.to_string();
        let mut process = PeerProcess::spawn(
            bin,
            &["--database-type", "sqlite", "--sqlite-path", "{dir}/db", "--hostname", "127.0.0.1", "--port", &port_arg],
        )?;
        let http = Http::new(port);
        let probe = http.clone();
        process
            .wait("cosmian_kms", Duration::from_secs(60), || {
                let probe = probe.clone();
                async move {
                    matches!(probe.send(Method::GET, "/version", &[], Vec::new()).await, Ok((s, _)) if s.is_success())
                }
            })
            .await?;
        let create = structure(
            "Create",
            vec![
                enumeration("ObjectType", "SymmetricKey"),
                structure(
                    "Attributes",
                    vec![
                        enumeration("CryptographicAlgorithm", "AES"),
                        integer("CryptographicLength", 256),
                        integer("CryptographicUsageMask", 12), // Encrypt | Decrypt
                        enumeration("KeyFormatType", "TransparentSymmetricKey"),
                        enumeration("ObjectType", "SymmetricKey"),
                    ],
                ),
            ],
        );
        let answer = http.json(KMIP, &JSON, &create).await.map_err(|e| anyhow!("Create AES-256: {e}"))?;
        let aes = field_str(&answer, "UniqueIdentifier").map_err(|e| anyhow!(e))?;
        activate(&http, &aes).await.map_err(|e| anyhow!("Activate AES-256: {e}"))?;
        let mut me = Self {
            process,
            http,
            aes,
            payloads: HashMap::new(),
            ciphertexts: HashMap::new(),
            message: vec![0x42; ops::SIGN_MESSAGE_LEN],
            signing: HashMap::new(),
            failed: HashMap::new(),
            requests: HashMap::new(),
        };
        for &op in ops {
            if let Op::Encrypt(n) | Op::Decrypt(n) = op
                && !me.payloads.contains_key(&n)
            {
                let plaintext: Vec<u8> = (0..n).map(|i| i as u8).collect();
                me.payloads.insert(n, plaintext);
                match me.encrypt(n).await {
                    Ok(ct) => {
                        me.ciphertexts.insert(n, ct);
                    }
                    Err(e) => {
                        me.failed.insert(Op::Encrypt(n), e.clone());
                        me.failed.insert(Op::Decrypt(n), e);
                    }
                }
            }
        }
        for k in SigKey::ALL {
            if !ops.iter().any(|o| matches!(o, Op::Sign(x) | Op::Verify(x) if *x == k))
                || me.unsupported(Op::Sign(k)).is_some()
            {
                continue;
            }
            match me.make_signing_key(k).await {
                Ok(entry) => {
                    me.signing.insert(k, entry);
                }
                Err(e) => {
                    me.failed.insert(Op::Sign(k), e.clone());
                    me.failed.insert(Op::Verify(k), e);
                }
            }
        }
        // Serialise each request once and check its answer once, so that
        // a mapping the server refuses is reported as such rather than as
        // a run full of errors.
        for &op in ops {
            if me.unsupported(op).is_some() {
                continue;
            }
            match me.request(op) {
                Ok(prepared) => match me.check(op, &prepared).await {
                    Ok(()) => {
                        me.requests.insert(op, prepared);
                    }
                    Err(e) => {
                        me.failed.insert(op, e);
                    }
                },
                Err(e) => {
                    me.failed.insert(op, e);
                }
            }
        }
        Ok(me)
    }

    /// The bytes of one request of `op`.
    fn request(&self, op: Op) -> Result<Prepared, String> {
        let kmip = |v: Value| self.http.prepare(Method::POST, KMIP, &JSON, v.to_string());
        match op {
            Op::Noop => self.http.prepare(Method::GET, "/version", &[], Vec::new()),
            Op::GetSecret => kmip(structure("Get", vec![text("UniqueIdentifier", &self.aes)])),
            Op::Encrypt(n) => kmip(encrypt_request(&self.aes, self.payloads.get(&n).ok_or("no payload")?)),
            Op::Decrypt(n) => {
                let (data, iv, tag) = self.ciphertexts.get(&n).ok_or("no ciphertext")?;
                kmip(structure(
                    "Decrypt",
                    vec![
                        text("UniqueIdentifier", &self.aes),
                        gcm(),
                        bytes("Data", data),
                        bytes("IVCounterNonce", iv),
                        bytes("AuthenticatedEncryptionTag", tag),
                    ],
                ))
            }
            Op::Sign(k) => {
                let (private, _, _) = self.signing.get(&k).ok_or("no signing key")?;
                kmip(sign_request(private, &self.message))
            }
            Op::Verify(k) => {
                let (_, public, signature) = self.signing.get(&k).ok_or("no signing key")?;
                kmip(structure(
                    "SignatureVerify",
                    vec![
                        text("UniqueIdentifier", public),
                        bytes("Data", &self.message),
                        bytes("SignatureData", signature),
                    ],
                ))
            }
            Op::DataKey | Op::BatchEncrypt | Op::CreateSecret | Op::Mac | Op::VerifyMac => Err("n/a".into()),
        }
    }

    /// Sends `prepared` once and checks that the answer is what `op`
    /// returns.
    async fn check(&self, op: Op, prepared: &Prepared) -> Result<(), String> {
        if op == Op::Noop {
            return self.http.call(prepared, None).await;
        }
        let answer = self.http.json_answer(prepared).await?;
        match op {
            Op::GetSecret => field(&answer, "Object").map(drop).ok_or_else(|| format!("no Object in {answer}")),
            Op::Encrypt(_) => field_bytes(&answer, "AuthenticatedEncryptionTag").map(drop),
            Op::Decrypt(n) if field_bytes(&answer, "Data")?.len() == n => Ok(()),
            Op::Decrypt(_) => Err("plaintext of the wrong length".into()),
            Op::Sign(_) => field_bytes(&answer, "SignatureData").map(drop),
            Op::Verify(_) => match field_str(&answer, "ValidityIndicator")?.as_str() {
                "Valid" => Ok(()),
                other => Err(format!("signature {other}")),
            },
            _ => Ok(()),
        }
    }

    async fn make_signing_key(&self, k: SigKey) -> Result<(String, String, Vec<u8>), String> {
        let answer = self.http.json(KMIP, &JSON, &key_pair_request(k)).await?;
        let private = field_str(&answer, "PrivateKeyUniqueIdentifier")?;
        let public = field_str(&answer, "PublicKeyUniqueIdentifier")?;
        activate(&self.http, &private).await?;
        activate(&self.http, &public).await?;
        let signature = self.sign(&private).await?;
        Ok((private, public, signature))
    }

    async fn encrypt(&self, n: usize) -> Result<GcmCiphertext, String> {
        let plaintext = self.payloads.get(&n).ok_or("no payload")?;
        let answer = self.http.json(KMIP, &JSON, &encrypt_request(&self.aes, plaintext)).await?;
        Ok((
            field_bytes(&answer, "Data")?,
            field_bytes(&answer, "IVCounterNonce")?,
            field_bytes(&answer, "AuthenticatedEncryptionTag")?,
        ))
    }

    async fn sign(&self, private: &str) -> Result<Vec<u8>, String> {
        let answer = self.http.json(KMIP, &JSON, &sign_request(private, &self.message)).await?;
        field_bytes(&answer, "SignatureData")
    }

    /// Why this server can't do `op`, if it can't.
    pub(crate) fn unsupported(&self, op: Op) -> Option<String> {
        match op {
            Op::DataKey => Some("KMIP has no data-key operation".into()),
            Op::CreateSecret => Some("not mapped (a KMIP secret-data object is not Cosmian's usual path)".into()),
            Op::BatchEncrypt => Some("not mapped (KMIP batches are per message, not per key call)".into()),
            Op::Mac | Op::VerifyMac | Op::Sign(SigKey::MlDsa65) | Op::Verify(SigKey::MlDsa65) => {
                Some("not mapped (HMAC and ML-DSA keys are not measured on Cosmian)".into())
            }
            _ => self.failed.get(&op).map(|e| format!("refused at set-up: {e}")),
        }
    }

    /// One call: the request serialised at set-up, a 2xx answer.
    pub(crate) async fn call(&self, op: Op) -> Result<(), String> {
        self.http.call(self.requests.get(&op).ok_or("no request prepared")?, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact bytes of an encrypt request: compact JSON with the keys in
    /// serde_json's (sorted) order, which bench/wrk-cosmian rebuilds for
    /// `wrk` byte for byte.
    #[test]
    fn encrypt_request_bytes() {
        let body = encrypt_request("k1", &[0, 1, 0xab]).to_string();
        assert_eq!(
            body,
            r#"{"tag":"Encrypt","type":"Structure","value":[{"tag":"UniqueIdentifier","type":"TextString","value":"k1"},{"tag":"CryptographicParameters","type":"Structure","value":[{"tag":"BlockCipherMode","type":"Enumeration","value":"GCM"}]},{"tag":"Data","type":"ByteString","value":"0001AB"}]}"#
        );
    }
}

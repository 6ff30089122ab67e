//! moto's AWS KMS (and Secrets Manager, for get-secret) over the AWS JSON
//! protocol: `POST /` with `X-Amz-Target: TrentService.<Operation>` and a
//! dummy SigV4 `Authorization` header (moto doesn't check it). Each
//! operation's request is serialised once, when the keys are made, and its
//! answer checked once then; the measured calls send those bytes
//! (create-secret splices a counter into its ready-made body, for unique
//! names).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hyper::Method;
use serde_json::{Value, json};

use super::PeerProcess;
use super::http::{Http, Prepared, free_port};
use crate::ops::{self, Op, SigKey};

const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=AKIDBENCH/20260101/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=00";
const SM_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=AKIDBENCH/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host;x-amz-date, Signature=00";

/// A running moto server with its keys.
pub(crate) struct Moto {
    pub(super) process: PeerProcess,
    http: Http,
    aes: String,
    payloads: HashMap<usize, String>,
    ciphertexts: HashMap<usize, String>,
    message: String,
    /// Per key type: key id, signature (base64).
    signing: HashMap<SigKey, (String, String)>,
    failed: HashMap<Op, String>,
    /// Secrets made by create-secret so far (for unique names).
    created: std::sync::atomic::AtomicU64,
    /// Each operation's request, serialised at set-up.
    requests: HashMap<Op, Prepared>,
    /// create-secret's body around the counter in the secret's name.
    create_body: (Vec<u8>, Vec<u8>),
}

/// Where create-secret's counter goes in its body.
const COUNTER: &str = "@COUNTER@";

/// The headers of one AWS JSON call: KMS or Secrets Manager's `target`.
fn aws_headers<'a>(target: &'a str, authorization: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("Content-Type", "application/x-amz-json-1.1"),
        ("X-Amz-Target", target),
        ("X-Amz-Date", "20260101T000000Z"),
        ("Authorization", authorization),
    ]
}

/// What each operation maps to.
pub(crate) fn mapping(op: Op) -> String {
    match op {
        Op::Noop => "n/a".into(),
        Op::GetSecret => "secretsmanager.GetSecretValue".into(),
        Op::CreateSecret => "secretsmanager.CreateSecret (in memory)".into(),
        Op::Encrypt(_) => "TrentService.Encrypt (SYMMETRIC_DEFAULT)".into(),
        Op::Decrypt(_) => "TrentService.Decrypt".into(),
        Op::DataKey => "TrentService.GenerateDataKey AES_256".into(),
        Op::BatchEncrypt => "n/a".into(),
        Op::Sign(k) => format!("TrentService.Sign {}", spec(k).1),
        Op::Verify(k) => format!("TrentService.Verify {}", spec(k).1),
        Op::Mac | Op::VerifyMac => "n/a".into(),
    }
}

/// KeySpec and SigningAlgorithm.
fn spec(k: SigKey) -> (&'static str, &'static str) {
    match k {
        SigKey::Ed25519 => ("ECC_NIST_EDWARDS25519", "ED25519_SHA_512"),
        SigKey::EcdsaP256 => ("ECC_NIST_P256", "ECDSA_SHA_256"),
        SigKey::Rsa2048 => ("RSA_2048", "RSASSA_PSS_SHA_256"),
        SigKey::MlDsa65 => ("ML_DSA_65", "ML_DSA_SHAKE_256"),
    }
}

impl Moto {
    /// Starts the server and makes its keys.
    pub(crate) async fn start(bin: &Path, ops: &[Op]) -> anyhow::Result<Self> {
        let port = free_port()?;
        let port_arg = port.to_string();
        let mut process = PeerProcess::spawn(bin, &["-H", "127.0.0.1", "-p", &port_arg])?;
        let http = Http::new(port);
        let probe = http.clone();
        process
            .wait("moto_server", Duration::from_secs(60), || {
                let probe = probe.clone();
                async move { probe.send(Method::GET, "/moto-api/", &[], Vec::new()).await.is_ok() }
            })
            .await?;
        let mut me = Self {
            process,
            http,
            aes: String::new(),
            payloads: HashMap::new(),
            ciphertexts: HashMap::new(),
            message: B64.encode(vec![0x42u8; ops::SIGN_MESSAGE_LEN]),
            signing: HashMap::new(),
            failed: HashMap::new(),
            created: std::sync::atomic::AtomicU64::new(0),
            requests: HashMap::new(),
            create_body: (Vec::new(), Vec::new()),
        };
        let template =
            json!({ "Name": format!("bench-created-{COUNTER}"), "SecretString": "s".repeat(ops::SECRET_LEN) })
                .to_string();
        let at = template.find(COUNTER).ok_or_else(|| anyhow!("no counter in {template}"))?;
        me.create_body = (template[..at].into(), template[at + COUNTER.len()..].into());
        let key = me.kms("CreateKey", json!({ "KeySpec": "SYMMETRIC_DEFAULT", "KeyUsage": "ENCRYPT_DECRYPT" })).await;
        me.aes = key.and_then(|v| key_id(&v)).map_err(|e| anyhow!("CreateKey SYMMETRIC_DEFAULT: {e}"))?;
        let secret = "s".repeat(ops::SECRET_LEN);
        if let Err(e) = me.secrets("CreateSecret", json!({ "Name": "bench", "SecretString": secret })).await {
            me.failed.insert(Op::GetSecret, e);
        }
        for &op in ops {
            if let Op::Encrypt(n) | Op::Decrypt(n) = op
                && !me.payloads.contains_key(&n)
            {
                let plaintext: Vec<u8> = (0..n).map(|i| i as u8).collect();
                me.payloads.insert(n, B64.encode(plaintext));
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

    async fn kms(&self, operation: &str, body: Value) -> Result<Value, String> {
        let target = format!("TrentService.{operation}");
        self.http.json("/", &aws_headers(&target, AUTHORIZATION), &body).await
    }

    async fn secrets(&self, operation: &str, body: Value) -> Result<Value, String> {
        let target = format!("secretsmanager.{operation}");
        self.http.json("/", &aws_headers(&target, SM_AUTHORIZATION), &body).await
    }

    /// The bytes of one request of `op` (create-secret: with counter 0;
    /// the measured calls count up).
    fn request(&self, op: Op) -> Result<Prepared, String> {
        let kms = |operation: &str, body: Value| {
            let target = format!("TrentService.{operation}");
            self.http.prepare(Method::POST, "/", &aws_headers(&target, AUTHORIZATION), body.to_string())
        };
        let secrets = |operation: &str, body: Vec<u8>| {
            let target = format!("secretsmanager.{operation}");
            self.http.prepare(Method::POST, "/", &aws_headers(&target, SM_AUTHORIZATION), body)
        };
        match op {
            Op::CreateSecret => secrets("CreateSecret", self.create_body(u64::MAX)),
            Op::GetSecret => secrets("GetSecretValue", json!({ "SecretId": "bench" }).to_string().into_bytes()),
            Op::Encrypt(n) => {
                kms("Encrypt", json!({ "KeyId": self.aes, "Plaintext": self.payloads.get(&n).ok_or("no payload")? }))
            }
            Op::Decrypt(n) => kms(
                "Decrypt",
                json!({ "CiphertextBlob": self.ciphertexts.get(&n).ok_or("no ciphertext")?, "KeyId": self.aes }),
            ),
            Op::DataKey => kms("GenerateDataKey", json!({ "KeyId": self.aes, "KeySpec": "AES_256" })),
            Op::Sign(k) => {
                let (id, _) = self.signing.get(&k).ok_or("no signing key")?;
                kms("Sign", sign_request(id, &self.message, k))
            }
            Op::Verify(k) => {
                let (id, signature) = self.signing.get(&k).ok_or("no signing key")?;
                let body = json!({
                    "KeyId": id, "Message": self.message, "MessageType": "RAW",
                    "Signature": signature, "SigningAlgorithm": spec(k).1,
                });
                kms("Verify", body)
            }
            Op::Noop | Op::BatchEncrypt | Op::Mac | Op::VerifyMac => Err("n/a".into()),
        }
    }

    /// create-secret's body with secret number `n` in the name.
    fn create_body(&self, n: u64) -> Vec<u8> {
        let (head, tail) = &self.create_body;
        let mut body = Vec::with_capacity(head.len() + 20 + tail.len());
        body.extend_from_slice(head);
        body.extend_from_slice(n.to_string().as_bytes());
        body.extend_from_slice(tail);
        body
    }

    /// Sends `prepared` once and checks that the answer is what `op`
    /// returns.
    async fn check(&self, op: Op, prepared: &Prepared) -> Result<(), String> {
        let answer = self.http.json_answer(prepared).await?;
        let has = |name: &str| answer.get(name).is_some();
        match op {
            Op::GetSecret
                if answer.get("SecretString").and_then(Value::as_str).map(str::len) != Some(ops::SECRET_LEN) =>
            {
                return Err("secret of the wrong length".into());
            }
            Op::Decrypt(n) => {
                let pt = answer.get("Plaintext").and_then(Value::as_str).ok_or("no Plaintext")?;
                if Some(pt) != self.payloads.get(&n).map(String::as_str) {
                    return Err("wrong plaintext".into());
                }
            }
            Op::Verify(_) if answer.get("SignatureValid").and_then(Value::as_bool) != Some(true) => {
                return Err("signature not valid".into());
            }
            Op::Encrypt(_) | Op::DataKey if !has("CiphertextBlob") => return Err("no CiphertextBlob".into()),
            Op::Sign(_) if !has("Signature") => return Err("no Signature".into()),
            Op::CreateSecret if !has("ARN") => return Err("no ARN".into()),
            _ => {}
        }
        Ok(())
    }

    async fn make_signing_key(&self, k: SigKey) -> Result<(String, String), String> {
        let (key_spec, _) = spec(k);
        let key = self.kms("CreateKey", json!({ "KeySpec": key_spec, "KeyUsage": "SIGN_VERIFY" })).await?;
        let id = key_id(&key)?;
        let signature = self.sign(&id, k).await?;
        Ok((id, signature))
    }

    async fn encrypt(&self, n: usize) -> Result<String, String> {
        let plaintext = self.payloads.get(&n).ok_or("no payload")?;
        let answer = self.kms("Encrypt", json!({ "KeyId": self.aes, "Plaintext": plaintext })).await?;
        answer
            .get("CiphertextBlob")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "no CiphertextBlob".into())
    }

    async fn sign(&self, id: &str, k: SigKey) -> Result<String, String> {
        let answer = self.kms("Sign", sign_request(id, &self.message, k)).await?;
        answer.get("Signature").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| "no Signature".into())
    }

    /// Why moto can't do `op`, if it can't.
    pub(crate) fn unsupported(&self, op: Op) -> Option<String> {
        match op {
            Op::Noop => Some("the AWS KMS API has no no-op call".into()),
            Op::BatchEncrypt => Some("the AWS KMS API has no batch encrypt".into()),
            Op::Mac | Op::VerifyMac | Op::Sign(SigKey::MlDsa65) | Op::Verify(SigKey::MlDsa65) => {
                Some("not mapped (HMAC and ML-DSA keys are not measured on moto)".into())
            }
            _ => self.failed.get(&op).map(|e| format!("refused at set-up: {e}")),
        }
    }

    /// One call: the request serialised at set-up, a 2xx answer.
    pub(crate) async fn call(&self, op: Op) -> Result<(), String> {
        let prepared = self.requests.get(&op).ok_or("no request prepared")?;
        let body = match op {
            Op::CreateSecret => {
                Some(self.create_body(self.created.fetch_add(1, std::sync::atomic::Ordering::Relaxed)).into())
            }
            _ => None,
        };
        self.http.call(prepared, body).await
    }
}

/// TrentService.Sign of `message` (base64) with key `id` of type `k`.
fn sign_request(id: &str, message: &str, k: SigKey) -> Value {
    json!({ "KeyId": id, "Message": message, "MessageType": "RAW", "SigningAlgorithm": spec(k).1 })
}

fn key_id(v: &Value) -> Result<String, String> {
    v.pointer("/KeyMetadata/KeyId").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| format!("no KeyId in {v}"))
}

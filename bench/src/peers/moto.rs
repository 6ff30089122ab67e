//! moto's AWS KMS (and Secrets Manager, for get-secret) over the AWS JSON
//! protocol: `POST /` with `X-Amz-Target: TrentService.<Operation>` and a
//! dummy SigV4 `Authorization` header (moto doesn't check it).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hyper::Method;
use serde_json::{Value, json};

use super::PeerProcess;
use super::http::{Http, free_port};
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
        };
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
        for &op in ops {
            if me.unsupported(op).is_none()
                && let Err(e) = me.call(op).await
            {
                me.failed.insert(op, e);
            }
        }
        Ok(me)
    }

    async fn kms(&self, operation: &str, body: Value) -> Result<Value, String> {
        let target = format!("TrentService.{operation}");
        let headers = [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", target.as_str()),
            ("X-Amz-Date", "20260101T000000Z"),
            ("Authorization", AUTHORIZATION),
        ];
        self.http.json("/", &headers, &body).await
    }

    async fn secrets(&self, operation: &str, body: Value) -> Result<Value, String> {
        let target = format!("secretsmanager.{operation}");
        let headers = [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", target.as_str()),
            ("X-Amz-Date", "20260101T000000Z"),
            ("Authorization", SM_AUTHORIZATION),
        ];
        self.http.json("/", &headers, &body).await
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
        let body = json!({ "KeyId": id, "Message": self.message, "MessageType": "RAW", "SigningAlgorithm": spec(k).1 });
        let answer = self.kms("Sign", body).await?;
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

    /// One call.
    pub(crate) async fn call(&self, op: Op) -> Result<(), String> {
        match op {
            Op::CreateSecret => {
                let n = self.created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let body = json!({ "Name": format!("bench-created-{n}"), "SecretString": "s".repeat(ops::SECRET_LEN) });
                self.secrets("CreateSecret", body).await?;
            }
            Op::GetSecret => {
                let answer = self.secrets("GetSecretValue", json!({ "SecretId": "bench" })).await?;
                if answer.get("SecretString").and_then(Value::as_str).map(str::len) != Some(ops::SECRET_LEN) {
                    return Err("secret of the wrong length".into());
                }
            }
            Op::Encrypt(n) => {
                self.encrypt(n).await?;
            }
            Op::Decrypt(n) => {
                let ct = self.ciphertexts.get(&n).ok_or("no ciphertext")?;
                let answer = self.kms("Decrypt", json!({ "CiphertextBlob": ct, "KeyId": self.aes })).await?;
                let pt = answer.get("Plaintext").and_then(Value::as_str).ok_or("no Plaintext")?;
                if Some(pt) != self.payloads.get(&n).map(String::as_str) {
                    return Err("wrong plaintext".into());
                }
            }
            Op::DataKey => {
                self.kms("GenerateDataKey", json!({ "KeyId": self.aes, "KeySpec": "AES_256" })).await?;
            }
            Op::Sign(k) => {
                let (id, _) = self.signing.get(&k).ok_or("no signing key")?;
                self.sign(id, k).await?;
            }
            Op::Verify(k) => {
                let (id, signature) = self.signing.get(&k).ok_or("no signing key")?;
                let body = json!({
                    "KeyId": id, "Message": self.message, "MessageType": "RAW",
                    "Signature": signature, "SigningAlgorithm": spec(k).1,
                });
                let answer = self.kms("Verify", body).await?;
                if answer.get("SignatureValid").and_then(Value::as_bool) != Some(true) {
                    return Err("signature not valid".into());
                }
            }
            Op::Noop | Op::BatchEncrypt | Op::Mac | Op::VerifyMac => return Err("n/a".into()),
        }
        Ok(())
    }
}

fn key_id(v: &Value) -> Result<String, String> {
    v.pointer("/KeyMetadata/KeyId").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| format!("no KeyId in {v}"))
}

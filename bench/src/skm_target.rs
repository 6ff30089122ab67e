//! SKM as a benchmark target: the keystore, keys and secret it needs, and
//! one user-port call per [`Op`].

use std::collections::HashMap;

use anyhow::Context;
use skm_client::Keys;
use skm_client::admin::v1 as admin;
use skm_client::admin::v1::admin_service_client::AdminServiceClient;
use skm_client::api::v1 as api;

use crate::ops::{self, Op, SigKey};
use crate::stack::Stack;

/// What the calls use: user-port clients (one per connection) and the ids
/// and inputs made at set-up.
pub(crate) struct SkmTarget {
    clients: Vec<Keys>,
    pub(crate) aes_key: String,
    pub(crate) secret: String,
    payloads: HashMap<usize, Vec<u8>>,
    ciphertexts: HashMap<usize, Vec<u8>>,
    batch: Vec<api::EncryptRequest>,
    message: Vec<u8>,
    signing: HashMap<SigKey, (String, Vec<u8>)>,
    /// The HMAC-SHA-256 key and a tag of `message`, when MAC ops run.
    hmac: Option<(String, Vec<u8>)>,
    /// Admin-port clients (operator certificate), one per connection.
    admins: Vec<AdminServiceClient<tonic::transport::Channel>>,
    keystore: String,
    /// Secrets made by create-secret so far (for unique names).
    created: std::sync::atomic::AtomicU64,
}

fn key_type(k: SigKey) -> admin::KeyType {
    match k {
        SigKey::Ed25519 => admin::KeyType::Ed25519,
        SigKey::EcdsaP256 => admin::KeyType::EcdsaP256,
        SigKey::Rsa2048 => admin::KeyType::Rsa2048,
        SigKey::MlDsa65 => admin::KeyType::MlDsa65,
    }
}

/// Creates the benchmark's keystore (only 127.0.0.1 may use it, with a
/// certificate it issued too when `require_cert`); its id.
pub(crate) async fn create_keystore(stack: &Stack, name: &str, require_cert: bool) -> anyhow::Result<String> {
    let policy = admin::Policy { allow_ips: vec!["127.0.0.1".into()], require_cert, ..Default::default() };
    let req = admin::CreateKeystoreRequest {
        alias: String::new(),
        name: name.into(),
        allow_ips: Vec::new(),
        policy: Some(policy),
    };
    let ks = stack.client.admin()?.create_keystore(req).await?.into_inner().keystore.context("no keystore")?;
    Ok(ks.id)
}

/// Creates a key; its id.
pub(crate) async fn create_key(
    client: &skm_client::Skm,
    keystore: &str,
    name: &str,
    key_type: admin::KeyType,
) -> anyhow::Result<String> {
    let req = admin::CreateKeyRequest {
        keystore_id: keystore.into(),
        name: name.into(),
        key_type: key_type as i32,
        ..Default::default()
    };
    Ok(client.admin()?.create_key(req).await?.into_inner().key_id)
}

impl SkmTarget {
    /// Creates the keystore, keys, secret and inputs for `ops`.
    /// With `client_cert`, the keystore requires a certificate it issued
    /// and every user connection presents one.
    pub(crate) async fn prepare(
        stack: &Stack,
        ops: &[Op],
        batch_size: usize,
        channels: usize,
        client_cert: bool,
    ) -> anyhow::Result<Self> {
        let keystore = create_keystore(stack, "bench", client_cert).await?;
        let aes_key = create_key(&stack.client, &keystore, "aes", admin::KeyType::Aes256).await?;
        let secret_value: String = "s".repeat(ops::SECRET_LEN);
        let req = admin::CreateSecretRequest {
            keystore_id: keystore.clone(),
            name: "secret".into(),
            value: secret_value,
            max_versions: 0,
        };
        let secret = stack.client.admin()?.create_secret(req).await?.into_inner().key_id;
        let credentials = if client_cert { Some(stack.issue_client_certificate(&keystore).await?) } else { None };
        let clients = stack.user_clients(channels, credentials.as_ref())?;
        let mut keys = clients[0].clone();

        let mut payloads = HashMap::new();
        let mut ciphertexts = HashMap::new();
        for op in ops {
            if let Op::Encrypt(n) | Op::Decrypt(n) = *op
                && !payloads.contains_key(&n)
            {
                let plaintext: Vec<u8> = (0..n).map(|i| i as u8).collect();
                let req =
                    api::EncryptRequest { key_id: aes_key.clone(), plaintext: plaintext.clone(), aad: Vec::new() };
                let ct = keys.encrypt(req).await.context("set-up encrypt")?.into_inner().ciphertext;
                payloads.insert(n, plaintext);
                ciphertexts.insert(n, ct);
            }
        }
        let batch = (0..batch_size)
            .map(|i| api::EncryptRequest {
                key_id: aes_key.clone(),
                plaintext: vec![i as u8; ops::BATCH_ITEM_LEN],
                aad: Vec::new(),
            })
            .collect();
        let message = vec![0x42; ops::SIGN_MESSAGE_LEN];
        let mut signing = HashMap::new();
        for k in SigKey::ALL {
            if !ops.iter().any(|o| matches!(o, Op::Sign(x) | Op::Verify(x) if *x == k)) {
                continue;
            }
            let id = create_key(&stack.client, &keystore, k.name(), key_type(k)).await?;
            let req = api::SignRequest {
                key_id: id.clone(),
                input: Some(api::sign_request::Input::Message(message.clone())),
                algorithm: 0,
            };
            let sig = keys.sign(req).await.context("set-up sign")?.into_inner().signature;
            signing.insert(k, (id, sig));
        }
        let hmac = if ops.iter().any(|o| matches!(o, Op::Mac | Op::VerifyMac)) {
            let id = create_key(&stack.client, &keystore, "hmac-sha256", admin::KeyType::HmacSha256).await?;
            let req = api::GenerateMacRequest { key_id: id.clone(), message: message.clone() };
            let tag = keys.generate_mac(req).await.context("set-up mac")?.into_inner().mac;
            Some((id, tag))
        } else {
            None
        };
        let admins = if ops.contains(&Op::CreateSecret) {
            stack.operator_clients(channels)?.iter().map(skm_client::Skm::admin).collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        Ok(Self {
            clients,
            aes_key,
            secret,
            payloads,
            ciphertexts,
            batch,
            message,
            signing,
            hmac,
            admins,
            keystore,
            created: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// One call of `op` from task `task`.
    pub(crate) async fn call(&self, op: Op, task: usize) -> Result<(), String> {
        let mut keys = self.clients[task % self.clients.len()].clone();
        let status = |s: tonic::Status| format!("{:?}: {}", s.code(), s.message());
        match op {
            Op::Noop => {
                keys.who_am_i(api::WhoAmIRequest {}).await.map_err(status)?;
            }
            Op::CreateSecret => {
                let n = self.created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let req = admin::CreateSecretRequest {
                    keystore_id: self.keystore.clone(),
                    name: format!("created-{n}"),
                    value: "s".repeat(ops::SECRET_LEN),
                    max_versions: 0,
                };
                let mut admin = self.admins[task % self.admins.len()].clone();
                admin.create_secret(req).await.map_err(status)?;
            }
            Op::GetSecret => {
                let r = keys
                    .get_secret(api::GetSecretRequest { key_id: self.secret.clone(), version: 0 })
                    .await
                    .map_err(status)?;
                if r.get_ref().value.len() != ops::SECRET_LEN {
                    return Err("secret of the wrong length".into());
                }
            }
            Op::Encrypt(n) => {
                let plaintext = self.payloads.get(&n).ok_or("no payload")?.clone();
                keys.encrypt(api::EncryptRequest { key_id: self.aes_key.clone(), plaintext, aad: Vec::new() })
                    .await
                    .map_err(status)?;
            }
            Op::Decrypt(n) => {
                let ciphertext = self.ciphertexts.get(&n).ok_or("no ciphertext")?.clone();
                let r = keys
                    .decrypt(api::DecryptRequest {
                        key_id: self.aes_key.clone(),
                        ciphertext,
                        aad: Vec::new(),
                        ..Default::default()
                    })
                    .await
                    .map_err(status)?;
                if r.get_ref().plaintext.len() != n {
                    return Err("plaintext of the wrong length".into());
                }
            }
            Op::DataKey => {
                keys.generate_data_key(api::GenerateDataKeyRequest { key_id: self.aes_key.clone(), aad: Vec::new() })
                    .await
                    .map_err(status)?;
            }
            Op::BatchEncrypt => {
                let r =
                    keys.batch_encrypt(api::BatchEncryptRequest { items: self.batch.clone() }).await.map_err(status)?;
                let results = &r.get_ref().results;
                if results.len() != self.batch.len() {
                    return Err("batch answer of the wrong length".into());
                }
                for item in results {
                    if let Some(api::batch_encrypt_result::Result::Error(e)) = &item.result {
                        return Err(format!("batch item: {} {}", e.code, e.message));
                    }
                }
            }
            Op::Sign(k) => {
                let (id, _) = self.signing.get(&k).ok_or("no signing key")?;
                let req = api::SignRequest {
                    key_id: id.clone(),
                    input: Some(api::sign_request::Input::Message(self.message.clone())),
                    algorithm: 0,
                };
                keys.sign(req).await.map_err(status)?;
            }
            Op::Verify(k) => {
                let (id, sig) = self.signing.get(&k).ok_or("no signing key")?;
                let req = api::VerifyRequest {
                    key_id: id.clone(),
                    input: Some(api::verify_request::Input::Message(self.message.clone())),
                    signature: sig.clone(),
                    algorithm: 0,
                    key_version: 0,
                };
                if !keys.verify(req).await.map_err(status)?.get_ref().valid {
                    return Err("signature not valid".into());
                }
            }
            Op::Mac => {
                let (id, _) = self.hmac.as_ref().ok_or("no hmac key")?;
                let req = api::GenerateMacRequest { key_id: id.clone(), message: self.message.clone() };
                keys.generate_mac(req).await.map_err(status)?;
            }
            Op::VerifyMac => {
                let (id, tag) = self.hmac.as_ref().ok_or("no hmac key")?;
                let req = api::VerifyMacRequest {
                    key_id: id.clone(),
                    message: self.message.clone(),
                    mac: tag.clone(),
                    key_version: 0,
                };
                if !keys.verify_mac(req).await.map_err(status)?.get_ref().valid {
                    return Err("tag not valid".into());
                }
            }
        }
        Ok(())
    }
}

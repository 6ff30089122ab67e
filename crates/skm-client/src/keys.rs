//! The user plane as typed methods: one per KeyService RPC, plain Rust
//! arguments in, plain results out, every failure a [`ClientError`]
//! (a refused call is [`ClientError::Rpc`] with the server's code and
//! message).

use zeroize::Zeroizing;

use crate::api::v1 as pb;
use crate::{ClientError, Skm};

pub use pb::SignatureAlgorithm;

/// A ciphertext and the key version that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encrypted {
    /// `0x01 | key id(16) | key version(u32 BE) | nonce(12) | ct+tag`.
    pub ciphertext: Vec<u8>,
    /// The key version used.
    pub key_version: u32,
}

/// A plaintext (wiped on drop) and the key version that decrypted it.
#[derive(Debug, PartialEq, Eq)]
pub struct Decrypted {
    /// The plaintext.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The key version used.
    pub key_version: u32,
}

/// A data key from GenerateDataKey.
#[derive(Debug, PartialEq, Eq)]
pub struct DataKey {
    /// The 32-byte key; `None` from [`Skm::generate_data_key_without_plaintext`].
    pub plaintext: Option<Zeroizing<Vec<u8>>>,
    /// The key encrypted under the SKM key (decrypt it with [`Skm::decrypt`]).
    pub ciphertext: Vec<u8>,
    /// The key version used.
    pub key_version: u32,
}

/// The result of ReEncrypt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReEncrypted {
    /// The ciphertext under the newest version.
    pub ciphertext: Vec<u8>,
    /// The version it was under.
    pub source_key_version: u32,
    /// The newest version.
    pub key_version: u32,
}

/// What is signed or verified: the message, its digest, or (ML-DSA) its
/// external μ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signed<'a> {
    /// The message (at most 4096 bytes).
    Message(&'a [u8]),
    /// Its digest: SHA-256 (32 bytes), SHA-384 (48 bytes) for ECDSA P-384;
    /// not for Ed25519 or ML-DSA.
    Digest(&'a [u8]),
    /// ML-DSA keys only: the message's 64-byte external μ, computed with
    /// `skm_crypto::asym::PublicKey::external_mu` from the key's public
    /// key, for a message of any size.
    Mu(&'a [u8]),
}

/// A signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The signature bytes (Ed25519 raw, ECDSA DER, RSA PKCS#1/PSS, ML-DSA
    /// FIPS 204).
    pub signature: Vec<u8>,
    /// The key version that signed.
    pub key_version: u32,
    /// The algorithm used.
    pub algorithm: SignatureAlgorithm,
}

/// The outcome of Verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Whether the signature is valid.
    pub valid: bool,
    /// The version it verified with (0 when invalid).
    pub key_version: u32,
}

/// An HMAC tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mac {
    /// The full-length tag.
    pub mac: Vec<u8>,
    /// The key version that made it.
    pub key_version: u32,
    /// "hmac-sha256", "hmac-sha384" or "hmac-sha512".
    pub algorithm: String,
}

/// A public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    /// SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
    /// The same as PEM.
    pub pem: String,
    /// The version.
    pub key_version: u32,
    /// "ed25519", "ecdsa-p256", "rsa-2048", "ml-dsa-65", ...
    pub key_algorithm: String,
}

/// A secret's value (wiped on drop).
#[derive(Debug, PartialEq, Eq)]
pub struct Secret {
    /// The text.
    pub value: Zeroizing<String>,
    /// Its version.
    pub version: u32,
}

/// A batch item's failure: the code and message the single call would have given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemError {
    /// The gRPC code.
    pub code: tonic::Code,
    /// The server's message.
    pub message: String,
}

/// What the server sees of the caller.
pub type WhoAmI = pb::WhoAmIResponse;

fn item_error(e: pb::ItemError) -> ItemError {
    ItemError { code: tonic::Code::from_i32(e.code), message: e.message }
}

fn algorithm(value: i32) -> SignatureAlgorithm {
    SignatureAlgorithm::try_from(value).unwrap_or(SignatureAlgorithm::Unspecified)
}

impl Skm {
    /// Encrypts up to 32 KiB under the newest version of an AES key.
    pub async fn encrypt(&self, key_id: &str, plaintext: &[u8], aad: &[u8]) -> Result<Encrypted, ClientError> {
        let req = pb::EncryptRequest { key_id: key_id.to_owned(), plaintext: plaintext.to_vec(), aad: aad.to_vec() };
        let r = self.user_call(req, |mut keys, req| async move { keys.encrypt(req).await }).await?;
        Ok(Encrypted { ciphertext: r.ciphertext, key_version: r.key_version })
    }

    /// Decrypts a ciphertext of the key.
    pub async fn decrypt(&self, key_id: &str, ciphertext: &[u8], aad: &[u8]) -> Result<Decrypted, ClientError> {
        let req = pb::DecryptRequest {
            key_id: key_id.to_owned(),
            ciphertext: ciphertext.to_vec(),
            aad: aad.to_vec(),
            ..Default::default()
        };
        let r = self.user_call(req, |mut keys, req| async move { keys.decrypt(req).await }).await?;
        Ok(Decrypted { plaintext: Zeroizing::new(r.plaintext), key_version: r.key_version })
    }

    /// A fresh 256-bit data key, in the clear and encrypted under the key.
    pub async fn generate_data_key(&self, key_id: &str, aad: &[u8]) -> Result<DataKey, ClientError> {
        let req = pb::GenerateDataKeyRequest { key_id: key_id.to_owned(), aad: aad.to_vec() };
        let r = self.user_call(req, |mut keys, req| async move { keys.generate_data_key(req).await }).await?;
        Ok(DataKey {
            plaintext: Some(Zeroizing::new(r.plaintext)),
            ciphertext: r.ciphertext,
            key_version: r.key_version,
        })
    }

    /// A fresh data key, encrypted only.
    pub async fn generate_data_key_without_plaintext(&self, key_id: &str, aad: &[u8]) -> Result<DataKey, ClientError> {
        let req = pb::GenerateDataKeyRequest { key_id: key_id.to_owned(), aad: aad.to_vec() };
        let r = self
            .user_call(req, |mut keys, req| async move { keys.generate_data_key_without_plaintext(req).await })
            .await?;
        Ok(DataKey { plaintext: None, ciphertext: r.ciphertext, key_version: r.key_version })
    }

    /// Re-encrypts a ciphertext under the newest version, inside SKM.
    pub async fn re_encrypt(&self, key_id: &str, ciphertext: &[u8], aad: &[u8]) -> Result<ReEncrypted, ClientError> {
        let req =
            pb::ReEncryptRequest { key_id: key_id.to_owned(), ciphertext: ciphertext.to_vec(), aad: aad.to_vec() };
        let r = self.user_call(req, |mut keys, req| async move { keys.re_encrypt(req).await }).await?;
        Ok(ReEncrypted {
            ciphertext: r.ciphertext,
            source_key_version: r.source_key_version,
            key_version: r.key_version,
        })
    }

    /// Encrypts up to 100 `(key id, plaintext, aad)` items; one result each, in order.
    pub async fn batch_encrypt(
        &self,
        items: &[(&str, &[u8], &[u8])],
    ) -> Result<Vec<Result<Encrypted, ItemError>>, ClientError> {
        let items = items
            .iter()
            .map(|(k, p, a)| pb::EncryptRequest { key_id: (*k).to_owned(), plaintext: p.to_vec(), aad: a.to_vec() })
            .collect();
        let r = self
            .user_call(pb::BatchEncryptRequest { items }, |mut keys, req| async move { keys.batch_encrypt(req).await })
            .await?;
        Ok(r.results
            .into_iter()
            .map(|item| match item.result {
                Some(pb::batch_encrypt_result::Result::Ok(ok)) => {
                    Ok(Encrypted { ciphertext: ok.ciphertext, key_version: ok.key_version })
                }
                Some(pb::batch_encrypt_result::Result::Error(e)) => Err(item_error(e)),
                None => Err(ItemError { code: tonic::Code::Internal, message: "empty batch result".to_owned() }),
            })
            .collect())
    }

    /// Decrypts up to 100 `(key id, ciphertext, aad)` items; one result each, in order.
    pub async fn batch_decrypt(
        &self,
        items: &[(&str, &[u8], &[u8])],
    ) -> Result<Vec<Result<Decrypted, ItemError>>, ClientError> {
        let items = items
            .iter()
            .map(|(k, c, a)| pb::DecryptRequest {
                key_id: (*k).to_owned(),
                ciphertext: c.to_vec(),
                aad: a.to_vec(),
                ..Default::default()
            })
            .collect();
        let r = self
            .user_call(pb::BatchDecryptRequest { items }, |mut keys, req| async move { keys.batch_decrypt(req).await })
            .await?;
        Ok(r.results
            .into_iter()
            .map(|item| match item.result {
                Some(pb::batch_decrypt_result::Result::Ok(ok)) => {
                    Ok(Decrypted { plaintext: Zeroizing::new(ok.plaintext), key_version: ok.key_version })
                }
                Some(pb::batch_decrypt_result::Result::Error(e)) => Err(item_error(e)),
                None => Err(ItemError { code: tonic::Code::Internal, message: "empty batch result".to_owned() }),
            })
            .collect())
    }

    /// Signs with the newest version of an asymmetric key
    /// (`SignatureAlgorithm::Unspecified`: the key's default).
    pub async fn sign(
        &self,
        key_id: &str,
        input: Signed<'_>,
        algorithm_: SignatureAlgorithm,
    ) -> Result<Signature, ClientError> {
        let input = Some(match input {
            Signed::Message(m) => pb::sign_request::Input::Message(m.to_vec()),
            Signed::Digest(d) => pb::sign_request::Input::Digest(d.to_vec()),
            Signed::Mu(mu) => pb::sign_request::Input::Mu(mu.to_vec()),
        });
        let req = pb::SignRequest { key_id: key_id.to_owned(), input, algorithm: algorithm_ as i32 };
        let r = self.user_call(req, |mut keys, req| async move { keys.sign(req).await }).await?;
        Ok(Signature { signature: r.signature, key_version: r.key_version, algorithm: algorithm(r.algorithm) })
    }

    /// Verifies a signature with one version (`key_version` > 0) or every
    /// retained one (0). An invalid signature is `valid: false`, not an error.
    pub async fn verify(
        &self,
        key_id: &str,
        input: Signed<'_>,
        signature: &[u8],
        algorithm_: SignatureAlgorithm,
        key_version: u32,
    ) -> Result<Verified, ClientError> {
        let input = Some(match input {
            Signed::Message(m) => pb::verify_request::Input::Message(m.to_vec()),
            Signed::Digest(d) => pb::verify_request::Input::Digest(d.to_vec()),
            Signed::Mu(mu) => pb::verify_request::Input::Mu(mu.to_vec()),
        });
        let req = pb::VerifyRequest {
            key_id: key_id.to_owned(),
            input,
            signature: signature.to_vec(),
            algorithm: algorithm_ as i32,
            key_version,
        };
        let r = self.user_call(req, |mut keys, req| async move { keys.verify(req).await }).await?;
        Ok(Verified { valid: r.valid, key_version: r.key_version })
    }

    /// The public key of one version (0: the newest).
    pub async fn public_key(&self, key_id: &str, key_version: u32) -> Result<PublicKey, ClientError> {
        let req = pb::GetPublicKeyRequest { key_id: key_id.to_owned(), key_version };
        let r = self.user_call(req, |mut keys, req| async move { keys.get_public_key(req).await }).await?;
        Ok(PublicKey { spki_der: r.spki_der, pem: r.pem, key_version: r.key_version, key_algorithm: r.key_algorithm })
    }

    /// A secret's value: one version, or the newest (0).
    pub async fn secret(&self, key_id: &str, version: u32) -> Result<Secret, ClientError> {
        let req = pb::GetSecretRequest { key_id: key_id.to_owned(), version };
        let r = self.user_call(req, |mut keys, req| async move { keys.get_secret(req).await }).await?;
        Ok(Secret { value: Zeroizing::new(r.value), version: r.version })
    }

    /// Decrypts an RSAES-OAEP-SHA-256 ciphertext (made by anyone with the
    /// public key of an RSA encryption key) with one version, or the newest
    /// (0).
    pub async fn decrypt_rsa_oaep(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        key_version: u32,
    ) -> Result<Decrypted, ClientError> {
        let req = pb::DecryptRequest {
            key_id: key_id.to_owned(),
            ciphertext: ciphertext.to_vec(),
            algorithm: pb::EncryptionAlgorithm::RsaesOaepSha256 as i32,
            key_version,
            ..Default::default()
        };
        let r = self.user_call(req, |mut keys, req| async move { keys.decrypt(req).await }).await?;
        Ok(Decrypted { plaintext: Zeroizing::new(r.plaintext), key_version: r.key_version })
    }

    /// The HMAC of a message (at most 4096 bytes) with the newest version of
    /// an HMAC key.
    pub async fn generate_mac(&self, key_id: &str, message: &[u8]) -> Result<Mac, ClientError> {
        let req = pb::GenerateMacRequest { key_id: key_id.to_owned(), message: message.to_vec() };
        let r = self.user_call(req, |mut keys, req| async move { keys.generate_mac(req).await }).await?;
        Ok(Mac { mac: r.mac, key_version: r.key_version, algorithm: r.algorithm })
    }

    /// Checks an HMAC tag with one version (`key_version` > 0) or the newest
    /// ten (0). A wrong tag is `valid: false`, not an error.
    pub async fn verify_mac(
        &self,
        key_id: &str,
        message: &[u8],
        mac: &[u8],
        key_version: u32,
    ) -> Result<Verified, ClientError> {
        let req = pb::VerifyMacRequest {
            key_id: key_id.to_owned(),
            message: message.to_vec(),
            mac: mac.to_vec(),
            key_version,
        };
        let r = self.user_call(req, |mut keys, req| async move { keys.verify_mac(req).await }).await?;
        Ok(Verified { valid: r.valid, key_version: r.key_version })
    }

    /// What the server sees of this client.
    pub async fn who_am_i(&self) -> Result<WhoAmI, ClientError> {
        Ok(self.user_call(pb::WhoAmIRequest {}, |mut keys, req| async move { keys.who_am_i(req).await }).await?)
    }
}

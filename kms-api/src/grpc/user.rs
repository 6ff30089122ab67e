//! User plane: KeyService on the user port. Every use of a key or secret,
//! allowed or refused, is audited before the reply.

use std::sync::Arc;

use skm_crypto::asym::SignatureAlgorithm;
use skm_proto::api::v1 as pb;
use skm_proto::api::v1::key_service_server::KeyService;
use tonic::{Request, Response, Status};

use super::{facts, peer, user_call};
use crate::kms::signing::Signed;
use crate::kms::{Kms, KmsError};

/// User plane handlers.
pub(crate) struct KeyApi {
    pub(crate) kms: Arc<Kms>,
}

fn item_error(e: KmsError) -> pb::ItemError {
    let status = Status::from(e);
    pb::ItemError { code: status.code() as i32, message: status.message().to_owned() }
}

fn signature_algorithm(value: i32) -> Result<Option<SignatureAlgorithm>, Status> {
    use pb::SignatureAlgorithm as P;
    match P::try_from(value) {
        Ok(P::Unspecified) => Ok(None),
        Ok(P::Ed25519) => Ok(Some(SignatureAlgorithm::Ed25519)),
        Ok(P::EcdsaSha256) => Ok(Some(SignatureAlgorithm::EcdsaSha256)),
        Ok(P::RsaPssSha256) => Ok(Some(SignatureAlgorithm::RsaPssSha256)),
        Ok(P::RsaPkcs1Sha256) => Ok(Some(SignatureAlgorithm::RsaPkcs1Sha256)),
        Err(_) => Err(Status::invalid_argument(format!("algorithm {value} is not a known signature algorithm"))),
    }
}

fn signature_algorithm_pb(alg: SignatureAlgorithm) -> pb::SignatureAlgorithm {
    use pb::SignatureAlgorithm as P;
    match alg {
        SignatureAlgorithm::Ed25519 => P::Ed25519,
        SignatureAlgorithm::EcdsaSha256 => P::EcdsaSha256,
        SignatureAlgorithm::RsaPssSha256 => P::RsaPssSha256,
        SignatureAlgorithm::RsaPkcs1Sha256 => P::RsaPkcs1Sha256,
    }
}

fn sign_input(input: Option<&pb::sign_request::Input>) -> Result<Signed<'_>, KmsError> {
    match input {
        Some(pb::sign_request::Input::Message(m)) => Ok(Signed::Message(m)),
        Some(pb::sign_request::Input::Digest(d)) => Ok(Signed::Digest(d)),
        None => Err(KmsError::InvalidArgument("one of message or digest is required".to_owned())),
    }
}

fn verify_input(input: Option<&pb::verify_request::Input>) -> Result<Signed<'_>, KmsError> {
    match input {
        Some(pb::verify_request::Input::Message(m)) => Ok(Signed::Message(m)),
        Some(pb::verify_request::Input::Digest(d)) => Ok(Signed::Digest(d)),
        None => Err(KmsError::InvalidArgument("one of message or digest is required".to_owned())),
    }
}

#[tonic::async_trait]
impl KeyService for KeyApi {
    async fn encrypt(&self, request: Request<pb::EncryptRequest>) -> Result<Response<pb::EncryptResponse>, Status> {
        let mut call = user_call("Encrypt", &request)?;
        let req = request.into_inner();
        let result = self.kms.encrypt(&mut call, &req.key_id, &req.plaintext, &req.aad).await;
        let (ciphertext, key_version) = self.kms.finish(call, result).await?;
        Ok(Response::new(pb::EncryptResponse { ciphertext, key_version }))
    }

    async fn decrypt(&self, request: Request<pb::DecryptRequest>) -> Result<Response<pb::DecryptResponse>, Status> {
        let mut call = user_call("Decrypt", &request)?;
        let req = request.into_inner();
        let result = self.kms.decrypt(&mut call, &req.key_id, &req.ciphertext, &req.aad).await;
        let (plaintext, key_version) = self.kms.finish(call, result).await?;
        Ok(Response::new(pb::DecryptResponse { plaintext: plaintext.to_vec(), key_version }))
    }

    async fn generate_data_key(
        &self,
        request: Request<pb::GenerateDataKeyRequest>,
    ) -> Result<Response<pb::GenerateDataKeyResponse>, Status> {
        let mut call = user_call("GenerateDataKey", &request)?;
        let req = request.into_inner();
        let result = self.kms.generate_data_key(&mut call, &req.key_id, &req.aad, false).await;
        let dk = self.kms.finish(call, result).await?;
        Ok(Response::new(pb::GenerateDataKeyResponse {
            plaintext: dk.plaintext.map(|k| k.danger_expose().to_vec()).unwrap_or_default(),
            ciphertext: dk.ciphertext,
            key_version: dk.version,
        }))
    }

    async fn generate_data_key_without_plaintext(
        &self,
        request: Request<pb::GenerateDataKeyRequest>,
    ) -> Result<Response<pb::GenerateDataKeyResponse>, Status> {
        let mut call = user_call("GenerateDataKeyWithoutPlaintext", &request)?;
        let req = request.into_inner();
        let result = self.kms.generate_data_key(&mut call, &req.key_id, &req.aad, true).await;
        let dk = self.kms.finish(call, result).await?;
        Ok(Response::new(pb::GenerateDataKeyResponse {
            plaintext: Vec::new(),
            ciphertext: dk.ciphertext,
            key_version: dk.version,
        }))
    }

    async fn re_encrypt(
        &self,
        request: Request<pb::ReEncryptRequest>,
    ) -> Result<Response<pb::ReEncryptResponse>, Status> {
        let mut call = user_call("ReEncrypt", &request)?;
        let req = request.into_inner();
        let result = self.kms.re_encrypt(&mut call, &req.key_id, &req.ciphertext, &req.aad).await;
        let (ciphertext, source_key_version, key_version) = self.kms.finish(call, result).await?;
        Ok(Response::new(pb::ReEncryptResponse { ciphertext, source_key_version, key_version }))
    }

    async fn batch_encrypt(
        &self,
        request: Request<pb::BatchEncryptRequest>,
    ) -> Result<Response<pb::BatchEncryptResponse>, Status> {
        let call = user_call("BatchEncrypt", &request)?;
        let items: Vec<_> = request.into_inner().items.into_iter().map(|i| (i.key_id, i.plaintext, i.aad)).collect();
        let results = match self.kms.batch_encrypt(&call, &items).await {
            Ok(r) => r,
            Err(e) => self.kms.finish(call, Err(e)).await?,
        };
        let results = results
            .into_iter()
            .map(|r| pb::BatchEncryptResult {
                result: Some(match r {
                    Ok((ciphertext, key_version)) => {
                        pb::batch_encrypt_result::Result::Ok(pb::EncryptResponse { ciphertext, key_version })
                    }
                    Err(e) => pb::batch_encrypt_result::Result::Error(item_error(e)),
                }),
            })
            .collect();
        Ok(Response::new(pb::BatchEncryptResponse { results }))
    }

    async fn batch_decrypt(
        &self,
        request: Request<pb::BatchDecryptRequest>,
    ) -> Result<Response<pb::BatchDecryptResponse>, Status> {
        let call = user_call("BatchDecrypt", &request)?;
        let items: Vec<_> = request.into_inner().items.into_iter().map(|i| (i.key_id, i.ciphertext, i.aad)).collect();
        let results = match self.kms.batch_decrypt(&call, &items).await {
            Ok(r) => r,
            Err(e) => self.kms.finish(call, Err(e)).await?,
        };
        let results = results
            .into_iter()
            .map(|r| pb::BatchDecryptResult {
                result: Some(match r {
                    Ok((plaintext, key_version)) => pb::batch_decrypt_result::Result::Ok(pb::DecryptResponse {
                        plaintext: plaintext.to_vec(),
                        key_version,
                    }),
                    Err(e) => pb::batch_decrypt_result::Result::Error(item_error(e)),
                }),
            })
            .collect();
        Ok(Response::new(pb::BatchDecryptResponse { results }))
    }

    async fn sign(&self, request: Request<pb::SignRequest>) -> Result<Response<pb::SignResponse>, Status> {
        let mut call = user_call("Sign", &request)?;
        let req = request.into_inner();
        let algorithm = signature_algorithm(req.algorithm)?;
        let result = match sign_input(req.input.as_ref()) {
            Ok(input) => self.kms.sign(&mut call, &req.key_id, input, algorithm).await,
            Err(e) => Err(e),
        };
        let (signature, key_version, alg) = self.kms.finish(call, result).await?;
        Ok(Response::new(pb::SignResponse { signature, key_version, algorithm: signature_algorithm_pb(alg) as i32 }))
    }

    async fn verify(&self, request: Request<pb::VerifyRequest>) -> Result<Response<pb::VerifyResponse>, Status> {
        let mut call = user_call("Verify", &request)?;
        let req = request.into_inner();
        let algorithm = signature_algorithm(req.algorithm)?;
        let result = match verify_input(req.input.as_ref()) {
            Ok(input) => {
                self.kms.verify(&mut call, &req.key_id, input, &req.signature, algorithm, req.key_version).await
            }
            Err(e) => Err(e),
        };
        let verified = self.kms.finish(call, result).await?;
        Ok(Response::new(pb::VerifyResponse { valid: verified.is_some(), key_version: verified.unwrap_or(0) }))
    }

    async fn get_public_key(
        &self,
        request: Request<pb::GetPublicKeyRequest>,
    ) -> Result<Response<pb::GetPublicKeyResponse>, Status> {
        let mut call = user_call("GetPublicKey", &request)?;
        let req = request.into_inner();
        let result = self.kms.public_key(&mut call, &req.key_id, req.key_version).await;
        let (spki_der, pem, key_version, alg) = self.kms.finish(call, result).await?;
        Ok(Response::new(pb::GetPublicKeyResponse { spki_der, pem, key_version, key_algorithm: alg.name().to_owned() }))
    }

    async fn get_secret(
        &self,
        request: Request<pb::GetSecretRequest>,
    ) -> Result<Response<pb::GetSecretResponse>, Status> {
        let mut call = user_call("GetSecret", &request)?;
        let req = request.into_inner();
        let result = self.kms.get_secret(&mut call, &req.key_id, req.version).await;
        let (value, version) = self.kms.finish(call, result).await?;
        let value = String::from_utf8(value.to_vec()).map_err(|_| Status::internal("internal error"))?;
        Ok(Response::new(pb::GetSecretResponse { value, version }))
    }

    async fn who_am_i(&self, request: Request<pb::WhoAmIRequest>) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let facts = facts(&request)?;
        let peer = peer(&request)?;
        let leaf = facts.chain.as_ref().and_then(|c| c.first());
        let subject = leaf.and_then(|der| skm_runtime::pki::client::leaf_info(der)).and_then(|i| i.subject_cn);
        Ok(Response::new(pb::WhoAmIResponse {
            client_ip: facts.ip.map(|ip| ip.to_string()).unwrap_or_default(),
            proxied_by: peer.proxied_by.map(|a| a.to_string()).unwrap_or_default(),
            verified_mac: facts.verified_mac.map(|m| m.to_string()).unwrap_or_default(),
            asserted_mac: facts.asserted_mac.map(|m| m.to_string()).unwrap_or_default(),
            certificate_sha256: facts.cert_sha256().unwrap_or_default(),
            certificate_subject: subject.unwrap_or_default(),
        }))
    }
}

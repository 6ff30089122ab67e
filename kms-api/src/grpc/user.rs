//! User plane: KeyService on the user port. Converts proto ⇄ domain; the
//! core checks the keystore policy and audits every use, allowed or not.

use std::sync::Arc;

use skm_crypto::asym::SignatureAlgorithm;
use skm_proto::api::v1 as pb;
use skm_proto::api::v1::key_service_server::KeyService;
use skm_store::Store;
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use super::application;
use crate::kms::{self, Kms, KmsError, Signed};

/// User plane handlers.
pub(crate) struct KeyApi<S> {
    pub(crate) kms: Arc<Kms<S>>,
}

fn item_error(e: KmsError) -> pb::ItemError {
    let code_name = e.code().name().to_owned();
    let status = Status::from(e);
    pb::ItemError { code: status.code() as i32, message: status.message().to_owned(), code_name }
}

pub(crate) fn signature_algorithm(value: i32) -> Result<Option<SignatureAlgorithm>, Status> {
    use pb::SignatureAlgorithm as P;
    match P::try_from(value) {
        Ok(P::Unspecified) => Ok(None),
        Ok(P::Ed25519) => Ok(Some(SignatureAlgorithm::Ed25519)),
        Ok(P::EcdsaSha256) => Ok(Some(SignatureAlgorithm::EcdsaSha256)),
        Ok(P::RsaPssSha256) => Ok(Some(SignatureAlgorithm::RsaPssSha256)),
        Ok(P::RsaPkcs1Sha256) => Ok(Some(SignatureAlgorithm::RsaPkcs1Sha256)),
        Ok(P::EcdsaSha384) => Ok(Some(SignatureAlgorithm::EcdsaSha384)),
        Ok(P::MlDsa) => Ok(Some(SignatureAlgorithm::MlDsa)),
        Err(_) => Err(Status::invalid_argument(format!("algorithm {value} is not a known signature algorithm"))),
    }
}

pub(crate) fn signature_algorithm_pb(alg: SignatureAlgorithm) -> pb::SignatureAlgorithm {
    use pb::SignatureAlgorithm as P;
    match alg {
        SignatureAlgorithm::Ed25519 => P::Ed25519,
        SignatureAlgorithm::EcdsaSha256 => P::EcdsaSha256,
        SignatureAlgorithm::RsaPssSha256 => P::RsaPssSha256,
        SignatureAlgorithm::RsaPkcs1Sha256 => P::RsaPkcs1Sha256,
        SignatureAlgorithm::EcdsaSha384 => P::EcdsaSha384,
        SignatureAlgorithm::MlDsa => P::MlDsa,
    }
}

fn signed(input: Option<Signed>) -> Result<Signed, Status> {
    input.ok_or_else(|| Status::invalid_argument("one of message, digest or mu is required"))
}

fn encrypt(item: pb::EncryptRequest) -> kms::Encrypt {
    kms::Encrypt { key_id: item.key_id, plaintext: Zeroizing::new(item.plaintext), aad: item.aad }
}

/// A Decrypt of SKM's own format (the only one a batch takes): the RSA
/// fields must be unset.
fn decrypt(item: pb::DecryptRequest) -> Result<kms::Decrypt, Status> {
    if item.algorithm != pb::EncryptionAlgorithm::Unspecified as i32 {
        return Err(Status::invalid_argument(
            "algorithm: only ENCRYPTION_ALGORITHM_UNSPECIFIED here (RSA ciphertexts are decrypted one per call)",
        ));
    }
    match kms::DecryptCall::new(item.key_id, item.ciphertext, item.aad, false, item.key_version)? {
        kms::DecryptCall::Aes(op) => Ok(op),
        kms::DecryptCall::RsaOaep(_) => Err(Status::internal("internal error")),
    }
}

fn data_key_pb(dk: kms::DataKey) -> pb::GenerateDataKeyResponse {
    pb::GenerateDataKeyResponse {
        plaintext: dk.plaintext.map(|k| k.danger_expose().to_vec()).unwrap_or_default(),
        ciphertext: dk.ciphertext,
        key_version: dk.key_version,
    }
}

#[tonic::async_trait]
impl<S: Store + Clone> KeyService for KeyApi<S> {
    async fn encrypt(&self, request: Request<pb::EncryptRequest>) -> Result<Response<pb::EncryptResponse>, Status> {
        let caller = application(&request)?;
        let done = self.kms.execute(&caller, encrypt(request.into_inner())).await?;
        Ok(Response::new(pb::EncryptResponse { ciphertext: done.ciphertext, key_version: done.key_version }))
    }

    async fn decrypt(&self, request: Request<pb::DecryptRequest>) -> Result<Response<pb::DecryptResponse>, Status> {
        let caller = application(&request)?;
        let req = request.into_inner();
        let rsa_oaep = match pb::EncryptionAlgorithm::try_from(req.algorithm) {
            Ok(pb::EncryptionAlgorithm::RsaesOaepSha256) => true,
            Ok(pb::EncryptionAlgorithm::Unspecified) => false,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "algorithm {} is not an encryption algorithm (ENCRYPTION_ALGORITHM_UNSPECIFIED, \
                     ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256)",
                    req.algorithm
                )));
            }
        };
        let done = match kms::DecryptCall::new(req.key_id, req.ciphertext, req.aad, rsa_oaep, req.key_version)? {
            kms::DecryptCall::Aes(op) => self.kms.execute(&caller, op).await?,
            kms::DecryptCall::RsaOaep(op) => self.kms.execute(&caller, op).await?,
        };
        Ok(Response::new(pb::DecryptResponse { plaintext: done.plaintext.to_vec(), key_version: done.key_version }))
    }

    async fn generate_data_key(
        &self,
        request: Request<pb::GenerateDataKeyRequest>,
    ) -> Result<Response<pb::GenerateDataKeyResponse>, Status> {
        let caller = application(&request)?;
        let req = request.into_inner();
        let op = kms::GenerateDataKey {
            key_id: req.key_id,
            aad: req.aad,
            with_plaintext: true,
            sealed_as: Default::default(),
        };
        Ok(Response::new(data_key_pb(self.kms.execute(&caller, op).await?)))
    }

    async fn generate_data_key_without_plaintext(
        &self,
        request: Request<pb::GenerateDataKeyRequest>,
    ) -> Result<Response<pb::GenerateDataKeyResponse>, Status> {
        let caller = application(&request)?;
        let req = request.into_inner();
        let op = kms::GenerateDataKey {
            key_id: req.key_id,
            aad: req.aad,
            with_plaintext: false,
            sealed_as: Default::default(),
        };
        Ok(Response::new(data_key_pb(self.kms.execute(&caller, op).await?)))
    }

    async fn re_encrypt(
        &self,
        request: Request<pb::ReEncryptRequest>,
    ) -> Result<Response<pb::ReEncryptResponse>, Status> {
        let caller = application(&request)?;
        let req = request.into_inner();
        let op = kms::ReEncrypt { key_id: req.key_id, ciphertext: req.ciphertext, aad: req.aad };
        let done = self.kms.execute(&caller, op).await?;
        Ok(Response::new(pb::ReEncryptResponse {
            ciphertext: done.ciphertext,
            source_key_version: done.source_key_version,
            key_version: done.key_version,
        }))
    }

    async fn batch_encrypt(
        &self,
        request: Request<pb::BatchEncryptRequest>,
    ) -> Result<Response<pb::BatchEncryptResponse>, Status> {
        let caller = application(&request)?;
        let items = request.into_inner().items.into_iter().map(encrypt).collect();
        let results = self.kms.execute(&caller, kms::BatchEncrypt { items }).await?;
        let results = results
            .into_iter()
            .map(|r| pb::BatchEncryptResult {
                result: Some(match r {
                    Ok(done) => pb::batch_encrypt_result::Result::Ok(pb::EncryptResponse {
                        ciphertext: done.ciphertext,
                        key_version: done.key_version,
                    }),
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
        let caller = application(&request)?;
        let items = request.into_inner().items.into_iter().map(decrypt).collect::<Result<_, _>>()?;
        let results = self.kms.execute(&caller, kms::BatchDecrypt { items }).await?;
        let results = results
            .into_iter()
            .map(|r| pb::BatchDecryptResult {
                result: Some(match r {
                    Ok(done) => pb::batch_decrypt_result::Result::Ok(pb::DecryptResponse {
                        plaintext: done.plaintext.to_vec(),
                        key_version: done.key_version,
                    }),
                    Err(e) => pb::batch_decrypt_result::Result::Error(item_error(e)),
                }),
            })
            .collect();
        Ok(Response::new(pb::BatchDecryptResponse { results }))
    }

    async fn sign(&self, request: Request<pb::SignRequest>) -> Result<Response<pb::SignResponse>, Status> {
        let caller = application(&request)?;
        let req = request.into_inner();
        let algorithm = signature_algorithm(req.algorithm)?;
        let signed = signed(req.input.map(|input| match input {
            pb::sign_request::Input::Message(m) => Signed::Message(m),
            pb::sign_request::Input::Digest(d) => Signed::Digest(d),
            pb::sign_request::Input::Mu(mu) => Signed::Mu(mu),
        }))?;
        let done = self.kms.execute(&caller, kms::Sign { key_id: req.key_id, signed, algorithm }).await?;
        Ok(Response::new(pb::SignResponse {
            signature: done.signature,
            key_version: done.key_version,
            algorithm: signature_algorithm_pb(done.algorithm) as i32,
        }))
    }

    async fn verify(&self, request: Request<pb::VerifyRequest>) -> Result<Response<pb::VerifyResponse>, Status> {
        let caller = application(&request)?;
        let req = request.into_inner();
        let algorithm = signature_algorithm(req.algorithm)?;
        let signed = signed(req.input.map(|input| match input {
            pb::verify_request::Input::Message(m) => Signed::Message(m),
            pb::verify_request::Input::Digest(d) => Signed::Digest(d),
            pb::verify_request::Input::Mu(mu) => Signed::Mu(mu),
        }))?;
        let op = kms::Verify {
            key_id: req.key_id,
            signed,
            signature: req.signature,
            algorithm,
            key_version: req.key_version,
        };
        let kms::Verified(version) = self.kms.execute(&caller, op).await?;
        Ok(Response::new(pb::VerifyResponse { valid: version.is_some(), key_version: version.unwrap_or(0) }))
    }

    async fn get_public_key(
        &self,
        request: Request<pb::GetPublicKeyRequest>,
    ) -> Result<Response<pb::GetPublicKeyResponse>, Status> {
        let caller = application(&request)?;
        let req = request.into_inner();
        let done =
            self.kms.execute(&caller, kms::GetPublicKey { key_id: req.key_id, key_version: req.key_version }).await?;
        Ok(Response::new(pb::GetPublicKeyResponse {
            spki_der: done.spki_der,
            pem: done.pem,
            key_version: done.key_version,
            key_algorithm: done.kind.name().to_owned(),
        }))
    }

    async fn get_secret(
        &self,
        request: Request<pb::GetSecretRequest>,
    ) -> Result<Response<pb::GetSecretResponse>, Status> {
        let caller = application(&request)?;
        let req = request.into_inner();
        let done = self.kms.execute(&caller, kms::GetSecret { key_id: req.key_id, version: req.version }).await?;
        let value = String::from_utf8(done.value.to_vec()).map_err(|_| Status::internal("internal error"))?;
        Ok(Response::new(pb::GetSecretResponse { value, version: done.version }))
    }

    async fn generate_mac(
        &self,
        request: Request<pb::GenerateMacRequest>,
    ) -> Result<Response<pb::GenerateMacResponse>, Status> {
        let caller = application(&request)?;
        let req = request.into_inner();
        let done = self.kms.execute(&caller, kms::GenerateMac { key_id: req.key_id, message: req.message }).await?;
        Ok(Response::new(pb::GenerateMacResponse {
            mac: done.mac,
            key_version: done.key_version,
            algorithm: done.algorithm.name().to_owned(),
        }))
    }

    async fn verify_mac(
        &self,
        request: Request<pb::VerifyMacRequest>,
    ) -> Result<Response<pb::VerifyMacResponse>, Status> {
        let caller = application(&request)?;
        let req = request.into_inner();
        let op =
            kms::VerifyMac { key_id: req.key_id, message: req.message, mac: req.mac, key_version: req.key_version };
        let kms::Verified(version) = self.kms.execute(&caller, op).await?;
        Ok(Response::new(pb::VerifyMacResponse { valid: version.is_some(), key_version: version.unwrap_or(0) }))
    }

    async fn who_am_i(&self, request: Request<pb::WhoAmIRequest>) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = application(&request)?;
        let proxied_by = super::peer(&request)?.proxied_by;
        let done = self.kms.execute(&caller, kms::WhoAmI).await?;
        let facts = &done.facts;
        Ok(Response::new(pb::WhoAmIResponse {
            client_ip: facts.ip.map(|ip| ip.to_string()).unwrap_or_default(),
            proxied_by: proxied_by.map(|a| a.to_string()).unwrap_or_default(),
            verified_mac: facts.verified_mac.map(|m| m.to_string()).unwrap_or_default(),
            asserted_mac: facts.asserted_mac.map(|m| m.to_string()).unwrap_or_default(),
            certificate_sha256: facts.cert_sha256().unwrap_or_default(),
            certificate_subject: done.certificate_subject.unwrap_or_default(),
        }))
    }
}

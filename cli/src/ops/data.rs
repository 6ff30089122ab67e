//! Application verbs on the user port: encrypt, decrypt, re-encrypt, data
//! keys, sign, verify, public keys.

use std::io::Write;
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use skm_client::Skm;
use skm_client::api::v1 as pb;

use super::read_stdin;
use crate::args::{Command, SignatureArg};
use crate::failure::{EXIT_REFUSED, Failure};

fn aad(aad: Option<String>) -> Vec<u8> {
    aad.unwrap_or_default().into_bytes()
}

fn stdin_base64(what: &str) -> Result<Vec<u8>, Failure> {
    let input = read_stdin()?;
    let text: String = String::from_utf8_lossy(&input).chars().filter(|c| !c.is_whitespace()).collect();
    B64.decode(text).map_err(|_| Failure::usage(format!("stdin is not base64 {what}")))
}

fn algorithm(arg: Option<SignatureArg>) -> i32 {
    use pb::SignatureAlgorithm as A;
    (match arg {
        None => A::Unspecified,
        Some(SignatureArg::Ed25519) => A::Ed25519,
        Some(SignatureArg::EcdsaSha256) => A::EcdsaSha256,
        Some(SignatureArg::RsaPssSha256) => A::RsaPssSha256,
        Some(SignatureArg::RsaPkcs1Sha256) => A::RsaPkcs1Sha256,
    }) as i32
}

fn algorithm_name(value: i32) -> &'static str {
    use pb::SignatureAlgorithm as A;
    match A::try_from(value) {
        Ok(A::Ed25519) => "ed25519",
        Ok(A::EcdsaSha256) => "ecdsa-sha256",
        Ok(A::RsaPssSha256) => "rsa-pss-sha256",
        Ok(A::RsaPkcs1Sha256) => "rsa-pkcs1-sha256",
        _ => "unspecified",
    }
}

pub(super) async fn whoami(skm: &Skm, json: bool) -> Result<ExitCode, Failure> {
    let me = skm.keys().who_am_i(pb::WhoAmIRequest {}).await?.into_inner();
    if json {
        println!(
            "{}",
            json!({ "client_ip": me.client_ip, "proxied_by": me.proxied_by, "verified_mac": me.verified_mac,
                    "asserted_mac": me.asserted_mac, "certificate_sha256": me.certificate_sha256,
                    "certificate_subject": me.certificate_subject })
        );
    } else {
        let or_none = |s: &str| if s.is_empty() { "-".to_owned() } else { s.to_owned() };
        println!("client_ip:            {}", me.client_ip);
        println!("proxied_by:           {}", or_none(&me.proxied_by));
        println!("verified_mac:         {}", or_none(&me.verified_mac));
        println!("asserted_mac:         {}", or_none(&me.asserted_mac));
        println!("certificate_sha256:   {}", or_none(&me.certificate_sha256));
        println!("certificate_subject:  {}", or_none(&me.certificate_subject));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn run(skm: &Skm, command: Command, json: bool) -> Result<ExitCode, Failure> {
    let mut keys = skm.keys();
    match command {
        Command::Encrypt { key, aad: a } => {
            let plaintext = read_stdin()?;
            let resp = keys.encrypt(pb::EncryptRequest { key_id: key, plaintext, aad: aad(a) }).await?.into_inner();
            let b64 = B64.encode(&resp.ciphertext);
            if json {
                println!("{}", json!({ "ciphertext": b64, "key_version": resp.key_version }));
            } else {
                println!("{b64}");
            }
        }
        Command::Decrypt { key, aad: a } => {
            let ciphertext = stdin_base64("ciphertext")?;
            let resp = keys.decrypt(pb::DecryptRequest { key_id: key, ciphertext, aad: aad(a) }).await?.into_inner();
            if json {
                println!("{}", json!({ "plaintext": B64.encode(&resp.plaintext), "key_version": resp.key_version }));
            } else {
                std::io::stdout().write_all(&resp.plaintext)?;
            }
        }
        Command::ReEncrypt { key, aad: a } => {
            let ciphertext = stdin_base64("ciphertext")?;
            let resp =
                keys.re_encrypt(pb::ReEncryptRequest { key_id: key, ciphertext, aad: aad(a) }).await?.into_inner();
            let b64 = B64.encode(&resp.ciphertext);
            if json {
                println!(
                    "{}",
                    json!({ "ciphertext": b64, "key_version": resp.key_version, "source_key_version": resp.source_key_version })
                );
            } else {
                println!("{b64}");
            }
        }
        Command::DataKey { key, without_plaintext, aad: a } => {
            let req = pb::GenerateDataKeyRequest { key_id: key, aad: aad(a) };
            let resp = if without_plaintext {
                keys.generate_data_key_without_plaintext(req).await?
            } else {
                keys.generate_data_key(req).await?
            }
            .into_inner();
            let ct = B64.encode(&resp.ciphertext);
            if json {
                let mut out = json!({ "ciphertext": ct, "key_version": resp.key_version });
                if !without_plaintext {
                    out["plaintext"] = json!(B64.encode(&resp.plaintext));
                }
                println!("{out}");
            } else {
                if !without_plaintext {
                    println!("{}", B64.encode(&resp.plaintext));
                }
                println!("{ct}");
            }
        }
        Command::Sign { key, algorithm: alg, digest } => {
            let message = read_stdin()?;
            let input = if digest {
                pb::sign_request::Input::Digest(skm_crypto::sha256(&message).to_vec())
            } else {
                pb::sign_request::Input::Message(message)
            };
            let resp = keys
                .sign(pb::SignRequest { key_id: key, input: Some(input), algorithm: algorithm(alg) })
                .await?
                .into_inner();
            let b64 = B64.encode(&resp.signature);
            if json {
                println!(
                    "{}",
                    json!({ "signature": b64, "key_version": resp.key_version, "algorithm": algorithm_name(resp.algorithm) })
                );
            } else {
                println!("{b64}");
            }
        }
        Command::Verify { key, signature, algorithm: alg, digest, version } => {
            let message = read_stdin()?;
            let signature = B64.decode(signature.trim()).map_err(|_| Failure::usage("--signature is not base64"))?;
            let input = if digest {
                pb::verify_request::Input::Digest(skm_crypto::sha256(&message).to_vec())
            } else {
                pb::verify_request::Input::Message(message)
            };
            let resp = keys
                .verify(pb::VerifyRequest {
                    key_id: key,
                    input: Some(input),
                    signature,
                    algorithm: algorithm(alg),
                    key_version: version.unwrap_or(0),
                })
                .await?
                .into_inner();
            if json {
                println!("{}", json!({ "valid": resp.valid, "key_version": resp.key_version }));
            } else if resp.valid {
                println!("valid (version {})", resp.key_version);
            } else {
                println!("invalid");
            }
            if !resp.valid {
                return Ok(ExitCode::from(EXIT_REFUSED));
            }
        }
        Command::PublicKey { key, version, der } => {
            let resp = keys
                .get_public_key(pb::GetPublicKeyRequest { key_id: key, key_version: version.unwrap_or(0) })
                .await?
                .into_inner();
            if json {
                println!(
                    "{}",
                    json!({ "pem": resp.pem, "key_version": resp.key_version, "key_algorithm": resp.key_algorithm })
                );
            } else if der {
                std::io::stdout().write_all(&resp.spki_der)?;
            } else {
                print!("{}", resp.pem);
            }
        }
        _ => return Err(Failure::usage("not a data verb")),
    }
    Ok(ExitCode::SUCCESS)
}

//! Application verbs on the user port: encrypt, decrypt, re-encrypt, data
//! keys, sign, verify, public keys.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use skm_client::{SignatureAlgorithm, Signed, Skm};
use tokio::io::{AsyncRead, AsyncWrite};
use zeroize::Zeroizing;

use super::read_stdin;
use crate::args::{Command, EncryptionArg, EnvelopeCommand, SignatureArg};
use crate::failure::{EXIT_REFUSED, Failure};

fn aad(aad: Option<String>) -> Vec<u8> {
    aad.unwrap_or_default().into_bytes()
}

fn stdin_base64(what: &str) -> Result<Vec<u8>, Failure> {
    let input = read_stdin()?;
    let text: String = String::from_utf8_lossy(&input).chars().filter(|c| !c.is_whitespace()).collect();
    B64.decode(text).map_err(|_| Failure::usage(format!("stdin is not base64 {what}")))
}

fn algorithm(arg: Option<SignatureArg>) -> SignatureAlgorithm {
    use SignatureAlgorithm as A;
    match arg {
        None => A::Unspecified,
        Some(SignatureArg::Ed25519) => A::Ed25519,
        Some(SignatureArg::EcdsaSha256) => A::EcdsaSha256,
        Some(SignatureArg::RsaPssSha256) => A::RsaPssSha256,
        Some(SignatureArg::RsaPkcs1Sha256) => A::RsaPkcs1Sha256,
        Some(SignatureArg::EcdsaSha384) => A::EcdsaSha384,
        Some(SignatureArg::MlDsa) => A::MlDsa,
    }
}

/// The digest `--digest` sends: the named algorithm's (SHA-384 for
/// ecdsa-sha384), else SHA-256, which the server refuses for keys that sign
/// only messages.
fn hash_for(alg: Option<SignatureArg>, message: &[u8]) -> Vec<u8> {
    use clap::ValueEnum as _;
    alg.and_then(|a| a.to_possible_value())
        .and_then(|v| skm_crypto::asym::SignatureAlgorithm::from_name(v.get_name()))
        .and_then(|a| a.digest_of(message))
        .unwrap_or_else(|| skm_crypto::sha256(message).to_vec())
}

/// `--external-mu`: the message's μ under the public key of `version` (0:
/// the newest), and that version's number.
async fn mu_for(skm: &Skm, key: &str, version: u32, message: &[u8]) -> Result<([u8; 64], u32), Failure> {
    use skm_crypto::asym::{KeyAlgorithm, PublicKey};
    let public = skm.public_key(key, version).await?;
    let refused = |e: &dyn std::fmt::Display| Failure::refused(format!("--external-mu: {e}"));
    let alg = KeyAlgorithm::from_name(&public.key_algorithm)
        .ok_or_else(|| refused(&format!("{} keys take no external mu (ML-DSA keys only)", public.key_algorithm)))?;
    let parsed = PublicKey::from_spki_der(alg, &public.spki_der).map_err(|e| refused(&e))?;
    let mu = parsed.external_mu(message).map_err(|e| refused(&e))?;
    Ok((mu, public.key_version))
}

fn algorithm_name(value: SignatureAlgorithm) -> &'static str {
    use SignatureAlgorithm as A;
    match value {
        A::Ed25519 => "ed25519",
        A::EcdsaSha256 => "ecdsa-sha256",
        A::RsaPssSha256 => "rsa-pss-sha256",
        A::RsaPkcs1Sha256 => "rsa-pkcs1-sha256",
        A::EcdsaSha384 => "ecdsa-sha384",
        A::MlDsa => "ml-dsa",
        A::Unspecified => "unspecified",
    }
}

pub(super) async fn whoami(skm: &Skm, json: bool) -> Result<ExitCode, Failure> {
    let me = skm.who_am_i().await?;
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
    match command {
        Command::Encrypt { key, aad: a } => {
            let plaintext = Zeroizing::new(read_stdin()?);
            let done = skm.encrypt(&key, &plaintext, &aad(a)).await?;
            let b64 = B64.encode(&done.ciphertext);
            if json {
                println!("{}", json!({ "ciphertext": b64, "key_version": done.key_version }));
            } else {
                println!("{b64}");
            }
        }
        Command::Decrypt { key, aad: a, algorithm, version } => {
            let ciphertext = stdin_base64("ciphertext")?;
            let done = match algorithm {
                Some(EncryptionArg::RsaesOaepSha256) => {
                    if a.is_some() {
                        return Err(Failure::usage("--aad: rsaes-oaep-sha256 takes none"));
                    }
                    skm.decrypt_rsa_oaep(&key, &ciphertext, version.unwrap_or(0)).await?
                }
                None if version.is_some() => {
                    return Err(Failure::usage("--version: only with --algorithm rsaes-oaep-sha256"));
                }
                None => skm.decrypt(&key, &ciphertext, &aad(a)).await?,
            };
            if json {
                println!("{}", json!({ "plaintext": B64.encode(&done.plaintext), "key_version": done.key_version }));
            } else {
                std::io::stdout().write_all(&done.plaintext)?;
            }
        }
        Command::ReEncrypt { key, aad: a } => {
            let ciphertext = stdin_base64("ciphertext")?;
            let done = skm.re_encrypt(&key, &ciphertext, &aad(a)).await?;
            let b64 = B64.encode(&done.ciphertext);
            if json {
                println!(
                    "{}",
                    json!({ "ciphertext": b64, "key_version": done.key_version, "source_key_version": done.source_key_version })
                );
            } else {
                println!("{b64}");
            }
        }
        Command::DataKey { key, without_plaintext, aad: a } => {
            let done = if without_plaintext {
                skm.generate_data_key_without_plaintext(&key, &aad(a)).await?
            } else {
                skm.generate_data_key(&key, &aad(a)).await?
            };
            let ct = B64.encode(&done.ciphertext);
            let plaintext = done.plaintext.as_ref().map(|p| B64.encode(p.as_slice()));
            if json {
                let mut out = json!({ "ciphertext": ct, "key_version": done.key_version });
                if let Some(p) = plaintext {
                    out["plaintext"] = json!(p);
                }
                println!("{out}");
            } else {
                if let Some(p) = plaintext {
                    println!("{p}");
                }
                println!("{ct}");
            }
        }
        Command::Sign { key, algorithm: alg, digest, external_mu } => {
            let message = read_stdin()?;
            let hashed = digest.then(|| hash_for(alg, &message));
            let mu = if external_mu { Some(mu_for(skm, &key, 0, &message).await?) } else { None };
            let input = match (&hashed, &mu) {
                (Some(d), _) => Signed::Digest(d),
                (None, Some((mu, _))) => Signed::Mu(mu),
                (None, None) => Signed::Message(&message),
            };
            let done = skm.sign(&key, input, algorithm(alg)).await?;
            if let Some((_, version)) = mu
                && done.key_version != version
            {
                return Err(Failure::refused(format!(
                    "the key rotated while signing: the mu was of version {version}'s public key, version {} \
                     signed; run the command again",
                    done.key_version
                )));
            }
            let b64 = B64.encode(&done.signature);
            if json {
                println!(
                    "{}",
                    json!({ "signature": b64, "key_version": done.key_version, "algorithm": algorithm_name(done.algorithm) })
                );
            } else {
                println!("{b64}");
            }
        }
        Command::Verify { key, signature, algorithm: alg, digest, external_mu, version } => {
            let message = read_stdin()?;
            let signature = B64.decode(signature.trim()).map_err(|_| Failure::usage("--signature is not base64"))?;
            let hashed = digest.then(|| hash_for(alg, &message));
            let mu = if external_mu { Some(mu_for(skm, &key, version.unwrap_or(0), &message).await?) } else { None };
            let input = match (&hashed, &mu) {
                (Some(d), _) => Signed::Digest(d),
                (None, Some((mu, _))) => Signed::Mu(mu),
                (None, None) => Signed::Message(&message),
            };
            // A mu is of one version's public key: verify with that version.
            let version = mu.as_ref().map_or(version.unwrap_or(0), |(_, v)| *v);
            let done = skm.verify(&key, input, &signature, algorithm(alg), version).await?;
            if json {
                println!("{}", json!({ "valid": done.valid, "key_version": done.key_version }));
            } else if done.valid {
                println!("valid (version {})", done.key_version);
            } else {
                println!("invalid");
            }
            if !done.valid {
                return Ok(ExitCode::from(EXIT_REFUSED));
            }
        }
        Command::Mac { key } => {
            let message = read_stdin()?;
            let done = skm.generate_mac(&key, &message).await?;
            let b64 = B64.encode(&done.mac);
            if json {
                println!("{}", json!({ "mac": b64, "key_version": done.key_version, "algorithm": done.algorithm }));
            } else {
                println!("{b64}");
            }
        }
        Command::VerifyMac { key, mac, version } => {
            let message = read_stdin()?;
            let mac = B64.decode(mac.trim()).map_err(|_| Failure::usage("--mac is not base64"))?;
            let done = skm.verify_mac(&key, &message, &mac, version.unwrap_or(0)).await?;
            if json {
                println!("{}", json!({ "valid": done.valid, "key_version": done.key_version }));
            } else if done.valid {
                println!("valid (version {})", done.key_version);
            } else {
                println!("invalid");
            }
            if !done.valid {
                return Ok(ExitCode::from(EXIT_REFUSED));
            }
        }
        Command::PublicKey { key, version, der } => {
            let done = skm.public_key(&key, version.unwrap_or(0)).await?;
            if json {
                println!(
                    "{}",
                    json!({ "pem": done.pem, "key_version": done.key_version, "key_algorithm": done.key_algorithm })
                );
            } else if der {
                std::io::stdout().write_all(&done.spki_der)?;
            } else {
                print!("{}", done.pem);
            }
        }
        Command::Envelope(cmd) => return envelope(skm, cmd, json).await,
        _ => return Err(Failure::usage("not a data verb")),
    }
    Ok(ExitCode::SUCCESS)
}

/// `skm envelope encrypt|decrypt`: files (or stdin/stdout) of any size,
/// one 64 KiB chunk in memory at a time.
async fn envelope(skm: &Skm, cmd: EnvelopeCommand, json: bool) -> Result<ExitCode, Failure> {
    async fn open_in(path: &Option<PathBuf>) -> Result<Box<dyn AsyncRead + Unpin + Send>, Failure> {
        Ok(match path {
            Some(p) => {
                Box::new(tokio::fs::File::open(p).await.map_err(|e| Failure::usage(format!("{}: {e}", p.display())))?)
            }
            // tokio's io-std feature is not in the graph; the process's own
            // stdin through the kernel is the same stream.
            None => Box::new(tokio::fs::File::open("/dev/stdin").await?),
        })
    }
    async fn open_out(path: &Option<PathBuf>) -> Result<Box<dyn AsyncWrite + Unpin + Send>, Failure> {
        Ok(match path {
            Some(p) => {
                Box::new(tokio::fs::File::create(p).await.map_err(|e| Failure::usage(format!("{}: {e}", p.display())))?)
            }
            None => Box::new(tokio::fs::File::from_std(std::fs::OpenOptions::new().append(true).open("/dev/stdout")?)),
        })
    }
    match cmd {
        EnvelopeCommand::Encrypt { key, input, output, aad: a } => {
            let mut reader = open_in(&input).await?;
            let mut writer = open_out(&output).await?;
            let sealed = skm.envelope_encrypt_stream(&key, &aad(a), &mut reader, &mut writer).await?;
            if json {
                eprintln!(
                    "{}",
                    json!({ "key_id": sealed.key_id, "key_version": sealed.key_version, "plaintext_len": sealed.plaintext_len })
                );
            }
        }
        EnvelopeCommand::Decrypt { input, output, aad: a } => {
            let mut reader = open_in(&input).await?;
            let mut writer = open_out(&output).await?;
            if let Err(e) = skm.envelope_decrypt_stream(&aad(a), &mut reader, &mut writer).await {
                drop(writer);
                if let Some(p) = &output {
                    let _ = tokio::fs::remove_file(p).await;
                }
                return Err(e.into());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

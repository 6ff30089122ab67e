//! Operator verbs on the admin port (keystores, keys, secrets) and the
//! secret read on the user port.

use std::io::Write;
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use skm_client::Skm;
use skm_client::admin::v1 as pb;

use super::{print_id, read_stdin};
use crate::args::{
    AuditCommand, CertFormat, KeyCommand, KeyTypeArg, KeystoreCommand, ModeArg, OriginArg, PolicyArgs, SecretCommand,
    Tier, WrappingArg, WrappingKeySpecArg,
};
use crate::failure::Failure;

/// One operator call through [`Skm::admin_call`]: sent with a request id,
/// and on to the profile's other replicas while one is down, so that a
/// change is made once however often it is sent.
macro_rules! admin_call {
    ($skm:expr, $method:ident, $request:expr) => {
        $skm.admin_call($request, |mut admin, request| async move { admin.$method(request).await })
    };
}

/// A keystore argument: an id as is, otherwise looked up by name.
async fn resolve_keystore(skm: &Skm, arg: &str) -> Result<String, Failure> {
    if arg.parse::<skm_crypto::Id>().is_ok() {
        return Ok(arg.to_owned());
    }
    let list = admin_call!(skm, list_keystores, pb::ListKeystoresRequest {}).await?.keystores;
    list.into_iter()
        .find(|k| k.name == arg)
        .map(|k| k.id)
        .ok_or_else(|| Failure::refused(format!("NOT_FOUND: no keystore named {arg:?}")))
}

fn key_type(arg: KeyTypeArg) -> pb::KeyType {
    match arg {
        KeyTypeArg::Aes256 => pb::KeyType::Aes256,
        KeyTypeArg::Ed25519 => pb::KeyType::Ed25519,
        KeyTypeArg::EcdsaP256 => pb::KeyType::EcdsaP256,
        KeyTypeArg::Rsa2048 => pb::KeyType::Rsa2048,
        KeyTypeArg::Rsa3072 => pb::KeyType::Rsa3072,
        KeyTypeArg::Rsa4096 => pb::KeyType::Rsa4096,
        KeyTypeArg::EcdsaP384 => pb::KeyType::EcdsaP384,
        KeyTypeArg::MlDsa44 => pb::KeyType::MlDsa44,
        KeyTypeArg::MlDsa65 => pb::KeyType::MlDsa65,
        KeyTypeArg::MlDsa87 => pb::KeyType::MlDsa87,
        KeyTypeArg::HmacSha256 => pb::KeyType::HmacSha256,
        KeyTypeArg::HmacSha384 => pb::KeyType::HmacSha384,
        KeyTypeArg::HmacSha512 => pb::KeyType::HmacSha512,
        KeyTypeArg::RsaOaep2048 => pb::KeyType::RsaOaep2048,
        KeyTypeArg::RsaOaep3072 => pb::KeyType::RsaOaep3072,
        KeyTypeArg::RsaOaep4096 => pb::KeyType::RsaOaep4096,
    }
}

fn type_name(value: i32) -> &'static str {
    use pb::KeyType as T;
    match T::try_from(value) {
        Ok(T::Aes256) => "aes-256",
        Ok(T::Ed25519) => "ed25519",
        Ok(T::EcdsaP256) => "ecdsa-p256",
        Ok(T::Rsa2048) => "rsa-2048",
        Ok(T::Rsa3072) => "rsa-3072",
        Ok(T::Rsa4096) => "rsa-4096",
        Ok(T::EcdsaP384) => "ecdsa-p384",
        Ok(T::MlDsa44) => "ml-dsa-44",
        Ok(T::MlDsa65) => "ml-dsa-65",
        Ok(T::MlDsa87) => "ml-dsa-87",
        Ok(T::HmacSha256) => "hmac-sha256",
        Ok(T::HmacSha384) => "hmac-sha384",
        Ok(T::HmacSha512) => "hmac-sha512",
        Ok(T::RsaOaep2048) => "rsa-oaep-2048",
        Ok(T::RsaOaep3072) => "rsa-oaep-3072",
        Ok(T::RsaOaep4096) => "rsa-oaep-4096",
        Ok(T::Secret) => "secret",
        _ => "unknown",
    }
}

fn state_name(value: i32) -> &'static str {
    use pb::KeyState as S;
    match S::try_from(value) {
        Ok(S::Enabled) => "enabled",
        Ok(S::Disabled) => "disabled",
        Ok(S::PendingDeletion) => "pending-deletion",
        Ok(S::PendingImport) => "pending-import",
        _ => "unknown",
    }
}

fn info_json(k: &pb::KeyInfo) -> serde_json::Value {
    json!({
        "key_id": k.key_id, "keystore_id": k.keystore_id, "name": k.name,
        "type": type_name(k.key_type), "state": state_name(k.state),
        "current_version": k.current_version,
        "versions": k.versions.iter().map(|v| json!({ "version": v.version, "created_at": v.created_at })).collect::<Vec<_>>(),
        "rotation_period_days": k.rotation_period_days, "next_rotation_at": k.next_rotation_at,
        "deletion_at": k.deletion_at, "created_at": k.created_at, "last_used_at": k.last_used_at,
        "max_versions": k.max_versions, "origin": origin_name(k.origin),
    })
}

fn origin_name(value: i32) -> &'static str {
    match pb::KeyOrigin::try_from(value) {
        Ok(pb::KeyOrigin::External) => "external",
        _ => "skm",
    }
}

fn print_info(k: &pb::KeyInfo, json: bool) {
    if json {
        println!("{}", info_json(k));
        return;
    }
    let date = |t: i64| if t == 0 { "-".to_owned() } else { t.to_string() };
    println!("key_id:           {}", k.key_id);
    println!("keystore_id:      {}", k.keystore_id);
    println!("name:             {}", k.name);
    println!("type:             {}", type_name(k.key_type));
    println!("state:            {}", state_name(k.state));
    println!("origin:           {}", origin_name(k.origin));
    println!("current_version:  {}", k.current_version);
    println!(
        "versions:         {}",
        k.versions.iter().map(|v| format!("{}@{}", v.version, v.created_at)).collect::<Vec<_>>().join(" ")
    );
    if k.max_versions > 0 {
        println!("max_versions:     {}", k.max_versions);
    }
    println!("rotation_period:  {} days", k.rotation_period_days);
    println!("next_rotation_at: {}", date(k.next_rotation_at));
    println!("deletion_at:      {}", date(k.deletion_at));
    println!("created_at:       {}", k.created_at);
    println!("last_used_at:     {}", date(k.last_used_at));
}

fn value(file: Option<std::path::PathBuf>) -> Result<String, Failure> {
    let bytes = match file {
        Some(path) => std::fs::read(&path).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?,
        None => read_stdin()?,
    };
    String::from_utf8(bytes).map_err(|_| Failure::usage("a secret value must be UTF-8 text"))
}

fn policy(args: PolicyArgs) -> pb::Policy {
    pb::Policy {
        allow_ips: args.allow_ips,
        allow_macs: args.allow_macs,
        allow_asserted_mac: args.allow_asserted_mac,
        require_cert: args.require_cert,
        mode: match args.mode {
            ModeArg::All => pb::PolicyMode::All,
            ModeArg::Any => pb::PolicyMode::Any,
        } as i32,
    }
}

fn keystore_json(k: &pb::Keystore) -> serde_json::Value {
    let p = k.policy.clone().unwrap_or_default();
    json!({
        "id": k.id, "name": k.name, "alias": k.alias, "created_at": k.created_at,
        "allow_ips": p.allow_ips, "allow_macs": p.allow_macs, "allow_asserted_mac": p.allow_asserted_mac,
        "require_cert": p.require_cert,
        "mode": if p.mode == pb::PolicyMode::Any as i32 { "any" } else { "all" },
        "client_ca_pem": k.client_ca_pem,
        "certificates": k.certificates.iter().map(|c| json!({
            "name": c.name, "sha256": c.sha256, "origin": c.origin, "not_after": c.not_after, "revoked": c.revoked,
        })).collect::<Vec<_>>(),
    })
}

fn print_keystore(k: &pb::Keystore, json: bool) {
    if json {
        println!("{}", keystore_json(k));
        return;
    }
    let p = k.policy.clone().unwrap_or_default();
    let list = |v: &[String]| if v.is_empty() { "-".to_owned() } else { v.join(",") };
    println!("id:                  {}", k.id);
    println!("name:                {}", k.name);
    println!("alias:               {}", if k.alias.is_empty() { "-" } else { &k.alias });
    println!("mode:                {}", if p.mode == pb::PolicyMode::Any as i32 { "any" } else { "all" });
    println!("allow_ips:           {}", list(&p.allow_ips));
    println!("allow_macs:          {}", list(&p.allow_macs));
    println!("allow_asserted_mac:  {}", p.allow_asserted_mac);
    println!("require_cert:        {}", p.require_cert);
    for c in &k.certificates {
        println!(
            "certificate:         {} {} {} not_after={}{}",
            c.name,
            c.origin,
            c.sha256,
            c.not_after,
            if c.revoked { " REVOKED" } else { "" }
        );
    }
}

/// SHA-256 of the first certificate of a PEM file.
fn pem_sha256(path: &std::path::Path) -> Result<String, Failure> {
    let pem = std::fs::read(path).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    let certs =
        skm_runtime::tls::certs_from_pem(&pem).map_err(|_| Failure::usage(format!("{}: not PEM", path.display())))?;
    let leaf = certs.first().ok_or_else(|| Failure::usage(format!("{}: no certificate", path.display())))?;
    Ok(hex::encode(skm_crypto::sha256(leaf)))
}

pub(super) async fn keystore(skm: &Skm, cmd: KeystoreCommand, json: bool) -> Result<ExitCode, Failure> {
    let mut admin = skm.admin()?;
    match cmd {
        KeystoreCommand::Create { name, policy: p, alias } => {
            let alias = alias.unwrap_or_default();
            let resp = admin_call!(
                skm,
                create_keystore,
                pb::CreateKeystoreRequest { name, allow_ips: Vec::new(), policy: Some(policy(p)), alias }
            )
            .await?;
            let ks = resp.keystore.ok_or_else(|| Failure::refused("server returned no keystore"))?;
            print_id(json, "keystore_id", &ks.id);
        }
        KeystoreCommand::List => {
            let list = admin_call!(skm, list_keystores, pb::ListKeystoresRequest {}).await?.keystores;
            if json {
                println!("{}", serde_json::Value::Array(list.iter().map(keystore_json).collect()));
            } else {
                for k in list {
                    let p = k.policy.unwrap_or_default();
                    println!(
                        "{}\t{}\tips={}\tmacs={}\tcert={}",
                        k.id,
                        k.name,
                        p.allow_ips.join(","),
                        p.allow_macs.join(","),
                        p.require_cert
                    );
                }
            }
        }
        KeystoreCommand::Show { keystore } => {
            let keystore_id = resolve_keystore(skm, &keystore).await?;
            let ks = admin_call!(skm, get_keystore, pb::GetKeystoreRequest { keystore_id }).await?;
            print_keystore(&ks, json);
        }
        KeystoreCommand::Update { keystore, policy: p } => {
            let keystore_id = resolve_keystore(skm, &keystore).await?;
            let ks = admin_call!(
                skm,
                update_keystore,
                pb::UpdateKeystoreRequest { keystore_id, policy: Some(policy(p)), alias: None }
            )
            .await?;
            print_keystore(&ks, json);
        }
        KeystoreCommand::SetAlias { keystore, alias, clear } => {
            let keystore_id = resolve_keystore(skm, &keystore).await?;
            let alias = match (alias, clear) {
                (Some(alias), false) => alias,
                (None, true) => String::new(),
                _ => return Err(Failure::usage("give an alias, or --clear to remove it")),
            };
            let ks = admin_call!(
                skm,
                update_keystore,
                pb::UpdateKeystoreRequest { keystore_id, policy: None, alias: Some(alias) }
            )
            .await?;
            print_keystore(&ks, json);
        }
        KeystoreCommand::Delete { keystore } => {
            let keystore_id = resolve_keystore(skm, &keystore).await?;
            admin_call!(skm, delete_keystore, pb::GetKeystoreRequest { keystore_id: keystore_id.clone() }).await?;
            print_id(json, "deleted", &keystore_id);
        }
        KeystoreCommand::IssueCert { keystore, name, out, format, key_out, password_file, days } => {
            let keystore_id = resolve_keystore(skm, &keystore).await?;
            let password = match &password_file {
                Some(path) => {
                    let raw = std::fs::read(path).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
                    zeroize::Zeroizing::new(String::from_utf8_lossy(&raw).lines().next().unwrap_or_default().to_owned())
                }
                // PEM output: the PKCS#12 is only the transport from kms-api, under a one-time password.
                None => {
                    zeroize::Zeroizing::new(hex::encode(skm_crypto::random_array::<16>().map_err(Failure::refused)?))
                }
            };
            let resp = admin
                .issue_client_certificate(pb::IssueClientCertificateRequest {
                    keystore_id,
                    name,
                    days,
                    password: password.to_string(),
                })
                .await?
                .into_inner();
            let key_path = match format {
                CertFormat::P12 => {
                    crate::devstack::write_private(&out, &resp.pkcs12)?;
                    None
                }
                CertFormat::Pem => {
                    let key_path = key_out.unwrap_or_else(|| {
                        let mut p = out.clone().into_os_string();
                        p.push(".key");
                        p.into()
                    });
                    let (chain, key) = skm_pki::client::read_pkcs12(&resp.pkcs12, &password)
                        .map_err(|e| Failure::refused(format!("the issued PKCS#12 could not be read: {e}")))?;
                    let chain_pem: String = chain.iter().map(|c| pem_block("CERTIFICATE", c.as_ref())).collect();
                    std::fs::write(&out, chain_pem).map_err(|e| Failure::refused(format!("{}: {e}", out.display())))?;
                    let key_pem = zeroize::Zeroizing::new(pem_block("PRIVATE KEY", key.secret_der()));
                    crate::devstack::write_private(&key_path, key_pem.as_bytes())?;
                    Some(key_path)
                }
            };
            if json {
                println!(
                    "{}",
                    json!({ "out": out, "key_out": key_path, "sha256": resp.sha256, "not_after": resp.not_after })
                );
            } else {
                println!("{}", resp.sha256);
            }
        }
        KeystoreCommand::RegisterCert { keystore, name, sha256, cert } => {
            let keystore_id = resolve_keystore(skm, &keystore).await?;
            let sha256 = match (sha256, cert) {
                (Some(s), _) => s,
                (None, Some(path)) => pem_sha256(&path)?,
                (None, None) => return Err(Failure::usage("give --sha256 or --cert")),
            };
            let ks = admin_call!(
                skm,
                register_client_certificate,
                pb::RegisterClientCertificateRequest { keystore_id, name, sha256 }
            )
            .await?;
            print_keystore(&ks, json);
        }
        KeystoreCommand::RevokeCert { keystore, certificate } => {
            let keystore_id = resolve_keystore(skm, &keystore).await?;
            let ks = admin_call!(
                skm,
                revoke_client_certificate,
                pb::RevokeClientCertificateRequest { keystore_id, certificate }
            )
            .await?;
            print_keystore(&ks, json);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn audit(skm: &Skm, cmd: AuditCommand, json: bool) -> Result<ExitCode, Failure> {
    let mut admin = skm.admin()?;
    match cmd {
        AuditCommand::List { keystore, key, since, limit, page_size } => {
            // A name or an id, as everywhere else.
            let keystore_id = match keystore {
                Some(k) => resolve_keystore(skm, &k).await?,
                None => String::new(),
            };
            let mut request = pb::ListAuditRequest {
                keystore_id,
                key_id: key.unwrap_or_default(),
                since: since.unwrap_or(0),
                limit: limit.unwrap_or(0),
                page_size: if limit.is_some() { 0 } else { page_size },
                page_token: String::new(),
            };
            let replicas = skm.replica_admins()?;
            if replicas.len() == 1 {
                loop {
                    let page = admin.list_audit(request.clone()).await?.into_inner();
                    for e in page.entries {
                        print_audit_entry(None, e, json);
                    }
                    if limit.is_some() || page.next_page_token.is_empty() {
                        break;
                    }
                    request.page_token = page.next_page_token;
                }
                return Ok(ExitCode::SUCCESS);
            }
            // A fleet: every replica's chain, merged by time (then by
            // replica and seq), each entry labelled with its replica.
            let mut all = Vec::new();
            for (endpoint, mut admin) in replicas {
                let mut request = request.clone();
                loop {
                    let page = admin.list_audit(request.clone()).await?.into_inner();
                    all.extend(page.entries.into_iter().map(|e| (endpoint.clone(), e)));
                    if limit.is_some() || page.next_page_token.is_empty() {
                        break;
                    }
                    request.page_token = page.next_page_token;
                }
            }
            all.sort_by(|(a, x), (b, y)| (x.time, a, x.seq).cmp(&(y.time, b, y.seq)));
            if let Some(limit) = limit {
                let keep = if limit == 0 { 1000 } else { limit as usize };
                all.drain(..all.len().saturating_sub(keep));
            }
            for (endpoint, e) in all {
                print_audit_entry(Some(&endpoint), e, json);
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::AcknowledgeLoss => {
            let r = admin.acknowledge_audit_loss(pb::AcknowledgeAuditLossRequest {}).await?.into_inner();
            let loss = r.loss.unwrap_or_default();
            if json {
                println!(
                    "{}",
                    json!({ "first_missing_seq": loss.first_missing_seq, "last_missing_seq": loss.last_missing_seq,
                            "acknowledged_seq": loss.acknowledged_seq })
                );
            } else {
                println!(
                    "acknowledged: entries {} to {} missing; acknowledgement at seq {}",
                    loss.first_missing_seq, loss.last_missing_seq, loss.acknowledged_seq
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { tier: tier @ (Tier::RootKeyd | Tier::SystemKeyd) } => {
            let req = skm_client::root::v1::VerifyTierAuditRequest {};
            let r = match tier {
                Tier::RootKeyd => skm.root()?.verify_audit(req).await?,
                _ => skm.system()?.verify_audit(req).await?,
            }
            .into_inner();
            let intact = r.first_broken_line == 0;
            if json {
                println!(
                    "{}",
                    json!({ "entries": r.entries, "intact": intact, "first_broken_line": r.first_broken_line,
                            "reason": r.reason })
                );
            } else if intact {
                println!("intact: {} entries", r.entries);
            } else {
                println!("broken: first broken entry at line {}: {}", r.first_broken_line, r.reason);
            }
            Ok(if intact { ExitCode::SUCCESS } else { ExitCode::from(crate::failure::EXIT_REFUSED) })
        }
        AuditCommand::Verify { tier: Tier::KmsApi } => {
            let replicas = skm.replica_admins()?;
            let label = replicas.len() > 1;
            let mut intact = true;
            let mut reports = Vec::new();
            for (endpoint, mut admin) in replicas {
                let r = admin.verify_audit(pb::VerifyAuditRequest {}).await?.into_inner();
                intact &= r.intact;
                if json {
                    let mut report = json!({ "entries": r.entries, "intact": r.intact,
                            "first_broken_line": r.first_broken_line, "first_broken_seq": r.first_broken_seq,
                            "reason": r.reason,
                            "acknowledged_losses": r.acknowledged_losses.iter().map(|l| json!({
                                "first_missing_seq": l.first_missing_seq, "last_missing_seq": l.last_missing_seq,
                                "acknowledged_seq": l.acknowledged_seq })).collect::<Vec<_>>() });
                    if label {
                        report["replica"] = json!(endpoint);
                    }
                    reports.push(report);
                    continue;
                }
                let prefix = if label { format!("kms-api at {endpoint}: ") } else { String::new() };
                if r.intact {
                    println!("{prefix}intact: {} entries", r.entries);
                } else {
                    println!(
                        "{prefix}broken: first broken entry at line {} (seq {}): {}",
                        r.first_broken_line, r.first_broken_seq, r.reason
                    );
                }
                for l in &r.acknowledged_losses {
                    println!(
                        "{prefix}missing: entries {} to {} (loss acknowledged at seq {})",
                        l.first_missing_seq, l.last_missing_seq, l.acknowledged_seq
                    );
                }
            }
            if json {
                match reports.len() {
                    1 => println!("{}", reports.remove(0)),
                    _ => println!("{}", json!({ "intact": intact, "replicas": reports })),
                }
            }
            Ok(if intact { ExitCode::SUCCESS } else { ExitCode::from(crate::failure::EXIT_REFUSED) })
        }
    }
}

/// One audit entry, as JSON or a tab-separated line; from a fleet, with
/// the replica it came from (its admin endpoint) first.
fn print_audit_entry(replica: Option<&str>, e: pb::AuditEntry, json: bool) {
    if json {
        let mut entry = json!({ "seq": e.seq, "time": e.time, "operation": e.operation, "keystore_id": e.keystore_id,
                        "key_id": e.key_id, "key_version": e.key_version, "caller_ip": e.caller_ip,
                        "caller_mac": e.caller_mac, "caller_mac_source": e.caller_mac_source,
                        "caller_cert_sha256": e.caller_cert_sha256, "operator": e.operator, "result": e.result,
                        "front_end": e.front_end, "system_principal": e.system_principal, "intent_seq": e.intent_seq });
        if let Some(replica) = replica {
            entry["replica"] = json!(replica);
        }
        println!("{entry}");
    } else {
        let replica = replica.map(|r| format!("replica={r}\t")).unwrap_or_default();
        println!(
            "{replica}{}\t{}\t{}\tks={}\tkey={}\tv={}\tip={}\tmac={}{}\tcert={}\top={}\tvia={}\t{}",
            e.seq,
            e.time,
            e.operation,
            e.keystore_id,
            e.key_id,
            e.key_version,
            e.caller_ip,
            e.caller_mac,
            if e.caller_mac_source.is_empty() { String::new() } else { format!("({})", e.caller_mac_source) },
            e.caller_cert_sha256,
            e.operator,
            e.front_end,
            e.result
        );
    }
}

pub(super) async fn revoke_operator(
    skm: &Skm,
    sha256: Option<String>,
    cert: Option<std::path::PathBuf>,
    json: bool,
) -> Result<ExitCode, Failure> {
    let sha256 = match (sha256, cert) {
        (Some(s), _) => s,
        (None, Some(path)) => pem_sha256(&path)?,
        (None, None) => return Err(Failure::usage("give --sha256 or --cert")),
    };
    // Every tier keeps its own list: kms-api, then the inner tiers.
    let kms_api = skm.admin()?.revoke_operator(pb::RevokeOperatorRequest { sha256: sha256.clone() }).await;
    kms_api?;
    let request = skm_client::root::v1::RevokeOperatorRequest { sha256: sha256.clone() };
    let root = match skm.root() {
        Ok(mut c) => c.revoke_operator(request.clone()).await.map(drop).map_err(|s| s.message().to_owned()),
        Err(e) => Err(e.to_string()),
    };
    let system = match skm.system() {
        Ok(mut c) => c.revoke_operator(request).await.map(drop).map_err(|s| s.message().to_owned()),
        Err(e) => Err(e.to_string()),
    };
    let missed: Vec<String> = [("root-keyd", root), ("system-keyd", system)]
        .into_iter()
        .filter_map(|(tier, r)| r.err().map(|e| format!("{tier} ({e})")))
        .collect();
    if !missed.is_empty() {
        return Err(Failure::refused(format!(
            "{sha256} is revoked on kms-api but NOT on {}: run the same command again once they are reachable",
            missed.join(", ")
        )));
    }
    print_id(json, "revoked", &sha256);
    eprintln!("revoked on kms-api, root-keyd and system-keyd");
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn key(skm: &Skm, cmd: KeyCommand, json: bool) -> Result<ExitCode, Failure> {
    let mut admin = skm.admin()?;
    let info = match cmd {
        KeyCommand::Create { keystore, name, key_type: kt, rotation_period, origin } => {
            let keystore_id = resolve_keystore(skm, &keystore).await?;
            let resp = admin_call!(
                skm,
                create_key,
                pb::CreateKeyRequest {
                    keystore_id,
                    name,
                    key_type: key_type(kt) as i32,
                    rotation_period_days: rotation_period,
                    origin: match origin {
                        OriginArg::Skm => pb::KeyOrigin::Skm,
                        OriginArg::External => pb::KeyOrigin::External,
                    } as i32,
                }
            )
            .await?;
            print_id(json, "key_id", &resp.key_id);
            return Ok(ExitCode::SUCCESS);
        }
        KeyCommand::List { keystore } => {
            let keystore_id = resolve_keystore(skm, &keystore).await?;
            let keys = admin_call!(skm, list_keys, pb::ListKeysRequest { keystore_id }).await?.keys;
            if json {
                println!("{}", serde_json::Value::Array(keys.iter().map(info_json).collect()));
            } else {
                for k in keys {
                    println!(
                        "{}\t{}\t{}\t{}\tv{}",
                        k.key_id,
                        k.name,
                        type_name(k.key_type),
                        state_name(k.state),
                        k.current_version
                    );
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        KeyCommand::Show { key } => admin_call!(skm, describe_key, pb::DescribeKeyRequest { key_id: key }).await?,
        KeyCommand::Rotate { key } => admin_call!(skm, rotate_key, pb::RotateKeyRequest { key_id: key }).await?,
        KeyCommand::Update { key, rotation_period } => {
            admin_call!(skm, update_key, pb::UpdateKeyRequest { key_id: key, rotation_period_days: rotation_period })
                .await?
        }
        KeyCommand::Enable { key } => admin_call!(skm, enable_key, pb::KeyIdRequest { key_id: key }).await?,
        KeyCommand::Disable { key } => admin_call!(skm, disable_key, pb::KeyIdRequest { key_id: key }).await?,
        KeyCommand::ScheduleDeletion { key, days } => {
            admin_call!(skm, schedule_key_deletion, pb::ScheduleKeyDeletionRequest { key_id: key, pending_days: days })
                .await?
        }
        KeyCommand::CancelDeletion { key } => {
            admin_call!(skm, cancel_key_deletion, pb::KeyIdRequest { key_id: key }).await?
        }
        KeyCommand::Import { key, material: Some(path), wrapping_key_spec, .. } => {
            import_material(&mut admin, key, &path, wrapping_key_spec).await?.into_inner()
        }
        KeyCommand::Import { key, wrapped, token, .. } => {
            let (Some(wrapped), Some(token)) = (wrapped, token) else {
                return Err(Failure::usage("give --material, or --wrapped and --token"));
            };
            let request = pb::ImportKeyMaterialRequest {
                key_id: key,
                import_token: read_file(&token)?,
                encrypted_key_material: read_file(&wrapped)?,
            };
            admin.import_key_material(request).await?.into_inner()
        }
        KeyCommand::ImportParameters { key, wrapping_algorithm, wrapping_key_spec, public_key_out, token_out } => {
            let algorithm = match wrapping_algorithm {
                WrappingArg::RsaesOaepSha256 => pb::WrappingAlgorithm::RsaesOaepSha256,
                WrappingArg::RsaAesKeyWrapSha256 => pb::WrappingAlgorithm::RsaAesKeyWrapSha256,
            };
            let params = import_parameters(&mut admin, key, algorithm, wrapping_key_spec).await?;
            std::fs::write(&public_key_out, &params.public_key_pem)
                .map_err(|e| Failure::usage(format!("can't write {}: {e}", public_key_out.display())))?;
            std::fs::write(&token_out, &params.import_token)
                .map_err(|e| Failure::usage(format!("can't write {}: {e}", token_out.display())))?;
            if json {
                println!(
                    "{}",
                    json!({ "key_id": params.key_id, "public_key": public_key_out, "token": token_out,
                            "parameters_valid_to": params.parameters_valid_to })
                );
            } else {
                println!("public key: {}", public_key_out.display());
                println!("token:      {}", token_out.display());
                println!("valid to:   {}", params.parameters_valid_to);
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    print_info(&info, json);
    Ok(ExitCode::SUCCESS)
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::usage(format!("can't read {}: {e}", path.display())))
}

async fn import_parameters(
    admin: &mut skm_client::admin::v1::admin_service_client::AdminServiceClient<tonic::transport::Channel>,
    key_id: String,
    algorithm: pb::WrappingAlgorithm,
    spec: WrappingKeySpecArg,
) -> Result<pb::GetParametersForImportResponse, Failure> {
    let request = pb::GetParametersForImportRequest {
        key_id,
        wrapping_algorithm: algorithm as i32,
        wrapping_key_spec: match spec {
            WrappingKeySpecArg::Rsa3072 => pb::WrappingKeySpec::Rsa3072,
            WrappingKeySpecArg::Rsa4096 => pb::WrappingKeySpec::Rsa4096,
        } as i32,
    };
    Ok(admin.get_parameters_for_import(request).await?.into_inner())
}

/// `skm key import --material`: the whole dance in one command. The
/// material is read, wrapped and sent from zeroizing memory.
async fn import_material(
    admin: &mut skm_client::admin::v1::admin_service_client::AdminServiceClient<tonic::transport::Channel>,
    key_id: String,
    path: &std::path::Path,
    spec: WrappingKeySpecArg,
) -> Result<tonic::Response<pb::KeyInfo>, Failure> {
    use skm_crypto::import::{self, WrappingAlgorithm};
    use skm_crypto::rsa_oaep::{EncryptingKey, OaepKeySize};
    let material = key_material(&zeroize::Zeroizing::new(read_file(path)?), path)?;
    let size = match spec {
        WrappingKeySpecArg::Rsa3072 => OaepKeySize::Rsa3072,
        WrappingKeySpecArg::Rsa4096 => OaepKeySize::Rsa4096,
    };
    let algorithm = WrappingAlgorithm::for_material(material.len(), size);
    let algorithm_pb = match algorithm {
        WrappingAlgorithm::RsaesOaepSha256 => pb::WrappingAlgorithm::RsaesOaepSha256,
        WrappingAlgorithm::RsaAesKeyWrapSha256 => pb::WrappingAlgorithm::RsaAesKeyWrapSha256,
    };
    let params = import_parameters(admin, key_id.clone(), algorithm_pb, spec).await?;
    let public = EncryptingKey::from_spki_der(size, &params.public_key)
        .map_err(|_| Failure::refused("kms-api's wrapping public key does not parse as the RSA key asked for"))?;
    let wrapped =
        import::wrap(&public, algorithm, &material).map_err(|e| Failure::usage(format!("--material: {e}")))?;
    let request =
        pb::ImportKeyMaterialRequest { key_id, import_token: params.import_token, encrypted_key_material: wrapped };
    Ok(admin.import_key_material(request).await?)
}

/// The bytes to import from a key file: a PEM "PRIVATE KEY" block's DER
/// (read by the PEM parser the TLS identities use), else the file as it is
/// (raw AES/HMAC bytes, or PKCS#8 DER).
fn key_material(file: &[u8], path: &std::path::Path) -> Result<zeroize::Zeroizing<Vec<u8>>, Failure> {
    use rustls_pki_types::pem::{self, PemObject, SectionKind};
    let not_pkcs8 = |what: &str| {
        Failure::usage(format!(
            "--material {}: {what} is not an unencrypted PKCS#8 key (PEM \"PRIVATE KEY\"); convert it with \
             `openssl pkcs8 -topk8 -nocrypt`",
            path.display()
        ))
    };
    match <(SectionKind, Vec<u8>)>::from_pem_slice(file) {
        Ok((SectionKind::PrivateKey, der)) => Ok(zeroize::Zeroizing::new(der)),
        Ok((kind, mut der)) => {
            zeroize::Zeroize::zeroize(&mut der);
            Err(not_pkcs8(&format!("a PEM {kind:?} block")))
        }
        // PEM of a kind the parser doesn't know (an encrypted key, say).
        Err(pem::Error::NoItemsFound) if file.starts_with(b"-----BEGIN ") => Err(not_pkcs8("this PEM block")),
        Err(pem::Error::NoItemsFound) => Ok(zeroize::Zeroizing::new(file.to_vec())),
        Err(_) => Err(Failure::usage(format!("--material {}: the PEM block does not parse", path.display()))),
    }
}

pub(super) async fn secret(skm: &Skm, cmd: SecretCommand, json: bool) -> Result<ExitCode, Failure> {
    match cmd {
        SecretCommand::Create { keystore, name, value_file, max_versions } => {
            let value = value(value_file)?;
            let keystore_id = resolve_keystore(skm, &keystore).await?;
            let req = pb::CreateSecretRequest { keystore_id, name, value, max_versions: max_versions.unwrap_or(0) };
            let resp = admin_call!(skm, create_secret, req).await?;
            print_id(json, "key_id", &resp.key_id);
        }
        SecretCommand::Update { key, value_file } => {
            let value = value(value_file)?;
            let resp = admin_call!(skm, update_secret, pb::UpdateSecretRequest { key_id: key, value }).await?;
            if json {
                println!("{}", json!({ "version": resp.version }));
            } else {
                println!("{}", resp.version);
            }
        }
        SecretCommand::Get { key, version } => {
            let resp = skm
                .keys()
                .get_secret(skm_client::api::v1::GetSecretRequest { key_id: key, version: version.unwrap_or(0) })
                .await?
                .into_inner();
            if json {
                println!("{}", json!({ "value": resp.value, "version": resp.version }));
            } else {
                std::io::stdout().write_all(resp.value.as_bytes())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One PEM block (RFC 7468): base64 in 64-character lines.
fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

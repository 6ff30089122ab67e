//! The verbs that talk to a running stack.

use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use skm_client::{Profile, Skm, root};
use skm_runtime::Service;

use crate::args::{Cli, Command, ConsoleCommand, PkiCommand, RekeyCommand, RootCommand, SystemCommand};
use crate::failure::Failure;

mod data;
mod manage;

/// Largest stdin the data verbs read (the server enforces its own limits
/// and names them; this only bounds memory).
const MAX_STDIN: u64 = 1 << 20;

pub(crate) async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let json = cli.json;
    match cli.command {
        Command::Dev(args) => crate::dev::run(args).await,
        Command::Pki(PkiCommand::Init { out, trust_domain, hosts, operator }) => {
            crate::pki::init(&out, &trust_domain, &hosts, &operator)?;
            if json {
                println!("{}", json!({ "out": out, "trust_domain": trust_domain }));
            } else {
                eprintln!("PKI for {trust_domain} written to {}; keep ca/ca.key offline", out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Pki(PkiCommand::Etcd { out, members, clients }) => {
            crate::pki::etcd(&out, members, &clients)?;
            if json {
                println!("{}", json!({ "out": out, "members": members, "clients": clients }));
            } else {
                eprintln!("etcd PKI for {members} members written to {}; keep etcd-ca/ca.key offline", out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Pki(PkiCommand::AddOperator { name, role, pki, out, trust_domain, days }) => {
            let sha = crate::pki::add_operator(&pki, &trust_domain, &name, role, days, &out)?;
            print_id(json, "sha256", &sha);
            Ok(ExitCode::SUCCESS)
        }
        Command::Daemon { .. } => Err(Failure::usage("daemon is handled before the runtime starts")),
        command => {
            let mut profile = load_profile(cli.profile.as_deref())?;
            if let Some(mac) = cli.client_mac {
                profile.client_mac = Some(mac);
            }
            if let (Some(p12), Some(password_file)) = (cli.p12, cli.p12_password_file) {
                profile.client = Some(skm_client::ClientCredentials::Pkcs12 { p12, password_file });
            }
            let skm = profile.connect()?;
            run_connected(&skm, command, json).await
        }
    }
}

fn load_profile(profile: Option<&std::path::Path>) -> Result<Profile, Failure> {
    let path = profile
        .ok_or_else(|| Failure::usage("no profile: set SKM_PROFILE (printed by `skm dev`) or pass --profile"))?;
    Ok(Profile::load(path)?)
}

pub(crate) fn read_stdin() -> Result<Vec<u8>, Failure> {
    let mut buf = Vec::new();
    std::io::stdin().take(MAX_STDIN + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_STDIN {
        return Err(Failure::usage(format!("stdin is over {MAX_STDIN} bytes")));
    }
    Ok(buf)
}

pub(crate) fn print_id(json: bool, field: &str, id: &str) {
    if json {
        println!("{}", json!({ field: id }));
    } else {
        println!("{id}");
    }
}

async fn run_connected(skm: &Skm, command: Command, json: bool) -> Result<ExitCode, Failure> {
    match command {
        Command::Status { wait } => status(skm, wait, json).await,
        Command::Root(cmd) => root_verb(skm, cmd, json).await,
        Command::System(cmd) => system_verb(skm, cmd, json).await,
        Command::Console(ConsoleCommand::Login) => console_login(skm, json).await,
        Command::Keystore(cmd) => manage::keystore(skm, cmd, json).await,
        Command::Key(cmd) => manage::key(skm, cmd, json).await,
        Command::Secret(cmd) => manage::secret(skm, cmd, json).await,
        Command::Audit(cmd) => manage::audit(skm, cmd, json).await,
        Command::Pki(PkiCommand::RevokeOperator { sha256, cert }) => {
            manage::revoke_operator(skm, sha256, cert, json).await
        }
        Command::Whoami => data::whoami(skm, json).await,
        Command::Dev(_) | Command::Pki(_) | Command::Daemon { .. } => Err(Failure::usage("not a connected verb")),
        data_verb => data::run(skm, data_verb, json).await,
    }
}

async fn system_verb(skm: &Skm, cmd: SystemCommand, json: bool) -> Result<ExitCode, Failure> {
    use skm_client::admin::v1 as admin_pb;
    match cmd {
        SystemCommand::Rotate => {
            let resp =
                skm.system()?.rotate_system_key(skm_client::system::v1::RotateSystemKeyRequest {}).await?.into_inner();
            if json {
                println!("{}", json!({ "active_version": resp.active_version }));
            } else {
                println!("{}", resp.active_version);
                eprintln!(
                    "system key version {} is active; kms-api re-seals its records under it in the background \
                     (`skm system status`)",
                    resp.active_version
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SystemCommand::Status => {
            let s = skm.admin()?.get_system_key_status(admin_pb::GetSystemKeyStatusRequest {}).await?.into_inner();
            if json {
                let versions: Vec<_> =
                    s.versions.iter().map(|v| json!({ "version": v.version, "records": v.records })).collect();
                println!(
                    "{}",
                    json!({ "active_version": s.active_version, "versions": versions,
                            "retired_versions": s.retired_versions,
                            "reseal": { "target_version": s.reseal_target_version, "done": s.reseal_done,
                                        "scanned": s.reseal_scanned, "resealed": s.reseal_resealed } })
                );
            } else {
                println!("{}", system_text(&s));
            }
            Ok(ExitCode::SUCCESS)
        }
        SystemCommand::RetireVersion { version } => {
            let resp = skm
                .admin()?
                .retire_system_key_version(admin_pb::RetireSystemKeyVersionRequest { version })
                .await?
                .into_inner();
            if json {
                println!("{}", json!({ "version": resp.version, "system_keyd_dropped": resp.system_keyd_dropped }));
            } else if resp.system_keyd_dropped {
                println!("system key version {version} retired: no tier holds it any more");
            } else {
                println!(
                    "system key version {version} retired in kms-api; system-keyd has not confirmed deleting it yet \
                     (kms-api asks again at each refresh)"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `skm console login`: a one-time sign-in link on stdout.
async fn console_login(skm: &Skm, json: bool) -> Result<ExitCode, Failure> {
    let resp =
        skm.admin()?.create_console_sign_in(skm_client::admin::v1::CreateConsoleSignInRequest {}).await?.into_inner();
    if json {
        println!("{}", json!({ "url": resp.url, "expires_at": resp.expires_at }));
    } else {
        println!("{}", resp.url);
        eprintln!("open it within 60 s; it signs in once, as you (skm whoami shows who that is)");
    }
    Ok(ExitCode::SUCCESS)
}

/// kms-api's line of `skm status`: the active system key version and the
/// re-seal (nothing without an operator certificate).
async fn system_detail(skm: &Skm) -> Option<String> {
    let req = skm_client::admin::v1::GetSystemKeyStatusRequest {};
    let s = skm.admin().ok()?.get_system_key_status(req).await.ok()?.into_inner();
    let older: u64 = s.versions.iter().filter(|v| v.version != s.active_version).map(|v| v.records).sum();
    Some(if s.reseal_done && older == 0 {
        format!("system key v{} active, every record sealed under it", s.active_version)
    } else {
        format!("system key v{} active, re-sealing: {older} record(s) under older versions", s.active_version)
    })
}

/// `skm system status` as text: one line per version, then the re-seal.
fn system_text(s: &skm_client::admin::v1::GetSystemKeyStatusResponse) -> String {
    let mut out = Vec::new();
    for v in &s.versions {
        let active = if v.version == s.active_version { "  (active)" } else { "" };
        out.push(format!("version {:<5} {:>10} record(s){active}", v.version, v.records));
    }
    for v in &s.retired_versions {
        out.push(format!("version {v:<5} retired"));
    }
    let older: u64 = s.versions.iter().filter(|v| v.version != s.active_version).map(|v| v.records).sum();
    out.push(if s.reseal_done && older == 0 {
        format!("re-seal: done, every record is under version {}", s.reseal_target_version)
    } else {
        format!(
            "re-seal: to version {}, {older} record(s) under older versions ({} re-sealed, {} looked at since start)",
            s.reseal_target_version, s.reseal_resealed, s.reseal_scanned
        )
    });
    out.join("\n")
}

async fn root_verb(skm: &Skm, cmd: RootCommand, json: bool) -> Result<ExitCode, Failure> {
    let mut client = skm.root()?;
    match cmd {
        RootCommand::Init { shares, threshold } => {
            let resp = client.init(root::v1::InitRequest { shares, threshold }).await?.into_inner();
            let encoded: Vec<String> = resp.shares.iter().map(|s| B64.encode(s)).collect();
            if json {
                println!("{}", json!({ "root_key_id": resp.root_key_id, "shares": encoded, "threshold": threshold }));
            } else {
                for s in &encoded {
                    println!("{s}");
                }
                eprintln!(
                    "root key {} created. These {} unseal shares are shown once; any {threshold} unseal it. Give each to a different operator.",
                    resp.root_key_id,
                    encoded.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RootCommand::Unseal { share } => {
            let text = match share {
                Some(s) => s,
                None => String::from_utf8_lossy(&read_stdin()?).trim().to_owned(),
            };
            let share = B64.decode(text.trim()).map_err(|_| Failure::usage("the share is not base64"))?;
            let status =
                client.unseal(root::v1::UnsealRequest { share }).await?.into_inner().status.unwrap_or_default();
            print_seal(&status, json);
            Ok(ExitCode::SUCCESS)
        }
        RootCommand::Rotate { rewrap_only } => {
            let rotated = if rewrap_only {
                None
            } else {
                Some(client.rotate_root_key(root::v1::RotateRootKeyRequest {}).await?.into_inner())
            };
            let rewrap = skm.system()?.rewrap_system_keys(skm_client::system::v1::RewrapSystemKeysRequest {}).await;
            let rewrap = match rewrap {
                Ok(r) => r.into_inner(),
                Err(status) => {
                    if let Some(r) = &rotated {
                        eprintln!(
                            "root key {} is current, but system-keyd did not rewrap: finish with `skm root rotate \
                             --rewrap-only`",
                            r.root_key_id
                        );
                    }
                    return Err(status.into());
                }
            };
            if json {
                println!(
                    "{}",
                    json!({ "root_key_id": rewrap.root_key_id, "rotated": rotated.is_some(),
                            "rewrapped": rewrap.rewrapped, "destroyed_root_key_ids": rewrap.destroyed_root_key_ids })
                );
            } else {
                println!(
                    "root key {}{}: {} system key version(s) rewrapped; older root keys destroyed: {}",
                    rewrap.root_key_id,
                    if rotated.is_some() { " is current" } else { "" },
                    rewrap.rewrapped,
                    if rewrap.destroyed_root_key_ids.is_empty() {
                        "none".to_owned()
                    } else {
                        rewrap.destroyed_root_key_ids.join(", ")
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RootCommand::Rekey(RekeyCommand::Start { shares, threshold }) => {
            let resp = client.start_rekey(root::v1::StartRekeyRequest { shares, threshold }).await?.into_inner();
            if json {
                println!("{}", json!({ "nonce": resp.nonce, "threshold": resp.threshold }));
            } else {
                println!("{}", resp.nonce);
                eprintln!(
                    "rekey started ({threshold} of {shares} new shares): {} current shares are needed; each holder runs \
                     `skm root rekey submit {} SHARE`",
                    resp.threshold, resp.nonce
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RootCommand::Rekey(RekeyCommand::Submit { nonce, share }) => {
            let text = match share {
                Some(s) => s,
                None => String::from_utf8_lossy(&read_stdin()?).trim().to_owned(),
            };
            let share = B64.decode(text.trim()).map_err(|_| Failure::usage("the share is not base64"))?;
            let resp =
                client.submit_rekey_share(root::v1::SubmitRekeyShareRequest { nonce, share }).await?.into_inner();
            let encoded: Vec<String> = resp.shares.iter().map(|s| B64.encode(s)).collect();
            if json {
                println!("{}", json!({ "progress": resp.progress, "threshold": resp.threshold, "shares": encoded }));
            } else if encoded.is_empty() {
                println!("rekey: {}/{} current shares", resp.progress, resp.threshold);
            } else {
                for s in &encoded {
                    println!("{s}");
                }
                eprintln!(
                    "rekeyed: these {} new unseal shares are shown once and the old shares no longer unseal. Give each \
                     to a different operator.",
                    encoded.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RootCommand::Status => {
            let status = client.seal_status(root::v1::SealStatusRequest {}).await?.into_inner();
            print_seal(&status, json);
            Ok(if status.sealed { ExitCode::from(crate::failure::EXIT_UNAVAILABLE) } else { ExitCode::SUCCESS })
        }
    }
}

fn seal_text(s: &root::v1::SealStatusResponse) -> String {
    let mode = match root::v1::SealMode::try_from(s.mode) {
        Ok(root::v1::SealMode::Shamir) => "shamir",
        Ok(root::v1::SealMode::Passphrase) => "passphrase",
        Ok(root::v1::SealMode::Pkcs11) => "pkcs11",
        _ => "unknown",
    };
    if !s.unavailable_reason.is_empty() {
        format!("unavailable ({mode}): {}", s.unavailable_reason)
    } else if !s.initialized {
        format!("uninitialised ({mode})")
    } else if s.sealed {
        format!("sealed ({mode}, {}/{} shares)", s.progress, s.threshold)
    } else if s.older_root_key_ids.is_empty() {
        format!("unsealed ({mode})")
    } else {
        format!("unsealed ({mode}; older root keys still held: {})", s.older_root_key_ids.join(", "))
    }
}

fn print_seal(s: &root::v1::SealStatusResponse, json: bool) {
    if json {
        println!(
            "{}",
            json!({ "initialized": s.initialized, "sealed": s.sealed, "threshold": s.threshold,
                    "progress": s.progress, "root_key_id": s.root_key_id,
                    "unavailable_reason": s.unavailable_reason, "older_root_key_ids": s.older_root_key_ids })
        );
    } else {
        println!("{}", seal_text(s));
    }
}

/// One probe of every tier.
async fn probe(skm: &Skm) -> Vec<(Service, Result<bool, String>, Option<String>)> {
    let mut out = Vec::new();
    for service in [Service::RootKeyd, Service::SystemKeyd, Service::KmsApi] {
        let health = match skm.health(service) {
            Ok(mut client) => {
                let req = tonic_health::pb::HealthCheckRequest { service: String::new() };
                match tokio::time::timeout(Duration::from_secs(3), client.check(req)).await {
                    Ok(Ok(r)) => {
                        Ok(r.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
                    }
                    Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
                    Err(_) => Err("no answer within 3 s".to_owned()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        let detail = if service == Service::RootKeyd {
            match skm.root() {
                Ok(mut c) => match c.seal_status(root::v1::SealStatusRequest {}).await {
                    Ok(s) => Some(seal_text(s.get_ref())),
                    Err(_) => None,
                },
                Err(_) => None,
            }
        } else {
            None
        };
        out.push((service, health, detail));
    }
    out
}

async fn status(skm: &Skm, wait: Option<u64>, json: bool) -> Result<ExitCode, Failure> {
    let deadline = Instant::now() + Duration::from_secs(wait.unwrap_or(0));
    loop {
        let mut results = probe(skm).await;
        let ready = results.iter().all(|(_, h, _)| matches!(h, Ok(true)));
        if ready || Instant::now() >= deadline {
            // Once, at the end: the answer counts records with a scan.
            if let Some(kms) = results.iter_mut().find(|(s, h, _)| *s == Service::KmsApi && matches!(h, Ok(true))) {
                kms.2 = system_detail(skm).await;
            }
            if json {
                let items: Vec<_> = results
                    .iter()
                    .map(|(s, h, d)| {
                        json!({ "tier": s.name(), "serving": matches!(h, Ok(true)),
                                "error": h.as_ref().err(), "seal": d })
                    })
                    .collect();
                println!("{}", json!({ "ready": ready, "tiers": items }));
            } else {
                for (s, h, d) in &results {
                    let state = match h {
                        Ok(true) => "SERVING".to_owned(),
                        Ok(false) => "NOT_SERVING".to_owned(),
                        Err(e) => format!("UNREACHABLE ({e})"),
                    };
                    println!("{:<12} {state}{}", s.name(), d.as_ref().map(|d| format!("  {d}")).unwrap_or_default());
                }
            }
            return Ok(if ready { ExitCode::SUCCESS } else { ExitCode::from(crate::failure::EXIT_UNAVAILABLE) });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

//! Operator verbs on the admin port (keystores, keys, secrets) and the
//! secret read on the user port.

use std::io::Write;
use std::process::ExitCode;

use serde_json::json;
use skm_client::Skm;
use skm_client::admin::v1 as pb;

use super::{print_id, read_stdin};
use crate::args::{KeyCommand, KeyTypeArg, KeystoreCommand, SecretCommand};
use crate::failure::Failure;

/// A keystore argument: an id as is, otherwise looked up by name.
async fn resolve_keystore(skm: &Skm, arg: &str) -> Result<String, Failure> {
    if arg.parse::<skm_crypto::Id>().is_ok() {
        return Ok(arg.to_owned());
    }
    let list = skm.admin()?.list_keystores(pb::ListKeystoresRequest {}).await?.into_inner().keystores;
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
    })
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
    println!("current_version:  {}", k.current_version);
    println!(
        "versions:         {}",
        k.versions.iter().map(|v| format!("{}@{}", v.version, v.created_at)).collect::<Vec<_>>().join(" ")
    );
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

pub(super) async fn keystore(skm: &Skm, cmd: KeystoreCommand, json: bool) -> Result<ExitCode, Failure> {
    let mut admin = skm.admin()?;
    match cmd {
        KeystoreCommand::Create { name, allow_ips } => {
            let resp = admin.create_keystore(pb::CreateKeystoreRequest { name, allow_ips }).await?.into_inner();
            let ks = resp.keystore.ok_or_else(|| Failure::refused("server returned no keystore"))?;
            print_id(json, "keystore_id", &ks.id);
        }
        KeystoreCommand::List => {
            let list = admin.list_keystores(pb::ListKeystoresRequest {}).await?.into_inner().keystores;
            if json {
                let items: Vec<_> = list
                    .iter()
                    .map(|k| json!({ "id": k.id, "name": k.name, "allow_ips": k.allow_ips, "created_at": k.created_at }))
                    .collect();
                println!("{}", serde_json::Value::Array(items));
            } else {
                for k in list {
                    println!("{}\t{}\t{}", k.id, k.name, k.allow_ips.join(","));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn key(skm: &Skm, cmd: KeyCommand, json: bool) -> Result<ExitCode, Failure> {
    let mut admin = skm.admin()?;
    let info = match cmd {
        KeyCommand::Create { keystore, name, key_type: kt, rotation_period } => {
            let keystore_id = resolve_keystore(skm, &keystore).await?;
            let resp = admin
                .create_key(pb::CreateKeyRequest {
                    keystore_id,
                    name,
                    key_type: key_type(kt) as i32,
                    rotation_period_days: rotation_period,
                })
                .await?
                .into_inner();
            print_id(json, "key_id", &resp.key_id);
            return Ok(ExitCode::SUCCESS);
        }
        KeyCommand::List { keystore } => {
            let keystore_id = resolve_keystore(skm, &keystore).await?;
            let keys = admin.list_keys(pb::ListKeysRequest { keystore_id }).await?.into_inner().keys;
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
        KeyCommand::Show { key } => admin.describe_key(pb::DescribeKeyRequest { key_id: key }).await?,
        KeyCommand::Rotate { key } => admin.rotate_key(pb::RotateKeyRequest { key_id: key }).await?,
        KeyCommand::Update { key, rotation_period } => {
            admin.update_key(pb::UpdateKeyRequest { key_id: key, rotation_period_days: rotation_period }).await?
        }
        KeyCommand::Enable { key } => admin.enable_key(pb::KeyIdRequest { key_id: key }).await?,
        KeyCommand::Disable { key } => admin.disable_key(pb::KeyIdRequest { key_id: key }).await?,
        KeyCommand::ScheduleDeletion { key, days } => {
            admin.schedule_key_deletion(pb::ScheduleKeyDeletionRequest { key_id: key, pending_days: days }).await?
        }
        KeyCommand::CancelDeletion { key } => admin.cancel_key_deletion(pb::KeyIdRequest { key_id: key }).await?,
    };
    print_info(info.get_ref(), json);
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn secret(skm: &Skm, cmd: SecretCommand, json: bool) -> Result<ExitCode, Failure> {
    match cmd {
        SecretCommand::Create { keystore, name, value_file } => {
            let value = value(value_file)?;
            let keystore_id = resolve_keystore(skm, &keystore).await?;
            let resp =
                skm.admin()?.create_secret(pb::CreateSecretRequest { keystore_id, name, value }).await?.into_inner();
            print_id(json, "key_id", &resp.key_id);
        }
        SecretCommand::Update { key, value_file } => {
            let value = value(value_file)?;
            let resp = skm.admin()?.update_secret(pb::UpdateSecretRequest { key_id: key, value }).await?.into_inner();
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

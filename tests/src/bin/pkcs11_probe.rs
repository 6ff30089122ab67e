//! `skm-pkcs11-probe`: looks at root-keyd's PKCS#11 token from outside, for
//! `tests/tests/pkcs11.rs`. A separate process because SoftHSM2 reads its
//! configuration from `SOFTHSM2_CONF`, which the test sets per process.
//!
//! ```text
//! skm-pkcs11-probe attributes MODULE TOKEN PIN_FILE KEY_LABEL
//!     → JSON: the root key object's attributes as PKCS#11 reports them, and
//!       what reading its value (CKA_VALUE) answered
//! skm-pkcs11-probe wrap MODULE TOKEN PIN_FILE KEY_LABEL VERSION
//!     → JSON: a fresh random system key wrapped by root-keyd's own code
//!       (root_keyd::pkcs11::TokenKey) inside the token, with the key, the
//!       version and the root key id, for the test's raw scan
//! skm-pkcs11-probe login MODULE TOKEN PIN_FILE
//!     → JSON: what C_Login answered
//! ```

use std::path::PathBuf;

use anyhow::Context;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use root_keyd::pkcs11::{TokenConfig, TokenKey};
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().with_context(|| format!("argument {i} missing (see the source)"));
    let config = |key_label: String| -> anyhow::Result<TokenConfig> {
        Ok(TokenConfig {
            module: PathBuf::from(arg(1)?),
            token_label: arg(2)?,
            slot: None,
            pin_file: PathBuf::from(arg(3)?),
            key_label,
        })
    };
    let out = match arg(0)?.as_str() {
        "attributes" => attributes(&config(arg(4)?)?)?,
        "wrap" => {
            let version: u32 = arg(5)?.parse()?;
            let (keys, _) = TokenKey::open(&config(arg(4)?)?, &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
            let key = keys.first().context("no key")?;
            let system_key = skm_crypto::Secret32::generate()?;
            let wrapped = key.wrap_system_key(version, &system_key)?;
            json!({
                "root_key_id": key.id(),
                "version": version,
                "system_key": hex::encode(system_key.danger_expose()),
                "wrapped": hex::encode(wrapped),
            })
        }
        "login" => {
            let session = session(&config(String::new())?)?;
            let pin = pin(&config(String::new())?)?;
            match session.login(UserType::User, Some(&pin)) {
                Ok(()) => json!({ "login": "ok" }),
                Err(cryptoki::error::Error::Pkcs11(rv, _)) => json!({ "login": format!("{rv:?}") }),
                Err(e) => json!({ "login": e.to_string() }),
            }
        }
        other => anyhow::bail!("unknown command {other:?}"),
    };
    println!("{out}");
    Ok(())
}

fn pin(config: &TokenConfig) -> anyhow::Result<AuthPin> {
    let text = std::fs::read_to_string(&config.pin_file)?;
    Ok(AuthPin::new(text.lines().next().unwrap_or_default().into()))
}

fn session(config: &TokenConfig) -> anyhow::Result<cryptoki::session::Session> {
    let context = Pkcs11::new(&config.module)?;
    context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    for slot in context.get_slots_with_token()? {
        if context.get_token_info(slot)?.label().trim_end() == config.token_label {
            return Ok(context.open_ro_session(slot)?);
        }
    }
    anyhow::bail!("no token labelled {:?}", config.token_label)
}

fn attributes(config: &TokenConfig) -> anyhow::Result<serde_json::Value> {
    let session = session(config)?;
    session.login(UserType::User, Some(&pin(config)?))?;
    let found = session.find_objects(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Label(config.key_label.as_bytes().to_vec()),
    ])?;
    let [key] = found.as_slice() else { anyhow::bail!("{} keys labelled {:?}", found.len(), config.key_label) };
    let wanted = [
        AttributeType::Token,
        AttributeType::Private,
        AttributeType::Sensitive,
        AttributeType::AlwaysSensitive,
        AttributeType::Extractable,
        AttributeType::NeverExtractable,
        AttributeType::Local,
        AttributeType::Encrypt,
        AttributeType::Decrypt,
        AttributeType::Wrap,
        AttributeType::Unwrap,
        AttributeType::ValueLen,
    ];
    let mut map = serde_json::Map::new();
    for attribute in session.get_attributes(*key, &wanted)? {
        let (name, value) = match attribute {
            Attribute::Token(v) => ("token", json!(v)),
            Attribute::Private(v) => ("private", json!(v)),
            Attribute::Sensitive(v) => ("sensitive", json!(v)),
            Attribute::AlwaysSensitive(v) => ("always_sensitive", json!(v)),
            Attribute::Extractable(v) => ("extractable", json!(v)),
            Attribute::NeverExtractable(v) => ("never_extractable", json!(v)),
            Attribute::Local(v) => ("local", json!(v)),
            Attribute::Encrypt(v) => ("encrypt", json!(v)),
            Attribute::Decrypt(v) => ("decrypt", json!(v)),
            Attribute::Wrap(v) => ("wrap", json!(v)),
            Attribute::Unwrap(v) => ("unwrap", json!(v)),
            Attribute::ValueLen(v) => ("value_len", json!(u64::from(v))),
            _ => continue,
        };
        map.insert(name.to_owned(), value);
    }
    // Reading the key's value must be refused (sensitive): the PKCS#11
    // wrapper skips an attribute the token won't reveal, so "absent" here
    // is the token's refusal.
    let value = match session.get_attributes(*key, &[AttributeType::Value]) {
        Ok(attrs) if attrs.iter().any(|a| matches!(a, Attribute::Value(_))) => "revealed".to_owned(),
        Ok(_) => "withheld".to_owned(),
        Err(e) => format!("refused: {e}"),
    };
    map.insert("value".to_owned(), json!(value));
    Ok(serde_json::Value::Object(map))
}

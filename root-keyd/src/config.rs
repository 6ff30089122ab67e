//! root-keyd's configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use skm_runtime::config::{self, ConfigError, TlsSection};
use skm_runtime::telemetry::LogConfig;
use skm_runtime::tls::TlsIdentity;
use skm_runtime::{LimitsSection, ListenerLimits, MetricsSection, Service, SpiffeId};

use crate::pkcs11::TokenConfig;

/// The TOML file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: SocketAddr,
    trust_domain: String,
    data_dir: PathBuf,
    tls: TlsSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    metrics: MetricsSection,
    seal: RawSeal,
    #[serde(default)]
    log: LogConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeal {
    mode: String,
    passphrase_file: Option<PathBuf>,
    module: Option<PathBuf>,
    token_label: Option<String>,
    slot: Option<u64>,
    pin_file: Option<PathBuf>,
    key_label: Option<String>,
}

/// The root key object's label when `seal.key_label` is not set.
pub const DEFAULT_KEY_LABEL: &str = "skm-root-key";
/// PKCS#11 labels are 32-byte fields.
const MAX_LABEL: usize = 32;

/// How the root key is sealed at rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SealConfig {
    /// Shamir unseal shares held by operators.
    Shamir,
    /// Argon2id key from the passphrase in this file (first line).
    Passphrase {
        /// The file (never the passphrase itself).
        file: PathBuf,
    },
    /// A non-extractable AES-256 key inside a PKCS#11 token.
    Pkcs11(TokenConfig),
}

/// Validated configuration.
#[derive(Debug)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// This service's SPIFFE id (carried by its certificate).
    pub id: SpiffeId,
    /// Where the sealed root key lives.
    pub data_dir: PathBuf,
    /// Loaded TLS identity (must be `spiffe://<td>/root-keyd`).
    pub tls: TlsIdentity,
    /// Seal mode.
    pub seal: SealConfig,
    /// Connection and request limits of the port (`[limits]`).
    pub limits: ListenerLimits,
    /// The metrics listener (`[metrics] listen`); `None`: off.
    pub metrics_listen: Option<SocketAddr>,
    /// Logging.
    pub log: LogConfig,
}

impl Config {
    /// Loads `path` with `SKM_ROOT_KEYD__*` overrides and validates it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = config::load(path, crate::ENV_PREFIX)?;
        let id = SpiffeId::for_service(&raw.trust_domain, Service::RootKeyd)
            .map_err(|e| ConfigError::invalid("trust_domain", e))?;
        let tls = raw.tls.load(path, &id)?;
        let limits = raw.limits.validate("limits")?;
        let metrics_listen = raw.metrics.validate("metrics")?;
        let seal = seal_config(path, raw.seal)?;
        Ok(Self {
            listen: raw.listen,
            data_dir: config::resolve(path, &raw.data_dir),
            trust_domain: raw.trust_domain,
            id,
            tls,
            seal,
            limits,
            metrics_listen,
            log: raw.log,
        })
    }
}

fn seal_config(path: &Path, raw: RawSeal) -> Result<SealConfig, ConfigError> {
    let file = |key: &'static str, value: Option<PathBuf>| -> Result<PathBuf, ConfigError> {
        let value = value
            .ok_or_else(|| ConfigError::invalid(key, format!("required when seal.mode = {:?}", raw.mode.as_str())))?;
        let value = config::resolve(path, &value);
        if !value.is_file() {
            return Err(ConfigError::invalid(key, format!("{} is not a readable file", value.display())));
        }
        Ok(value)
    };
    let label = |key: &'static str, value: String| -> Result<String, ConfigError> {
        if value.is_empty() || value.len() > MAX_LABEL {
            return Err(ConfigError::invalid(
                key,
                format!("{value:?} is {} bytes; a PKCS#11 label is 1 to {MAX_LABEL} bytes", value.len()),
            ));
        }
        Ok(value)
    };
    let only_for = |key: &'static str, given: bool, mode: &str| -> Result<(), ConfigError> {
        if given {
            return Err(ConfigError::invalid(key, format!("only applies to seal.mode = {mode:?}")));
        }
        Ok(())
    };
    let pkcs11_given = [
        ("seal.module", raw.module.is_some()),
        ("seal.token_label", raw.token_label.is_some()),
        ("seal.slot", raw.slot.is_some()),
        ("seal.pin_file", raw.pin_file.is_some()),
        ("seal.key_label", raw.key_label.is_some()),
    ];
    match raw.mode.as_str() {
        "shamir" | "passphrase" => {
            for (key, given) in pkcs11_given {
                only_for(key, given, "pkcs11")?;
            }
            // A passphrase_file in another mode is ignored, as it always
            // was: the compose stack's config names it whatever the mode.
            if raw.mode == "shamir" {
                return Ok(SealConfig::Shamir);
            }
            Ok(SealConfig::Passphrase { file: file("seal.passphrase_file", raw.passphrase_file.clone())? })
        }
        "pkcs11" => {
            let token_label = raw
                .token_label
                .clone()
                .ok_or_else(|| ConfigError::invalid("seal.token_label", "required when seal.mode = \"pkcs11\""))?;
            Ok(SealConfig::Pkcs11(TokenConfig {
                module: file("seal.module", raw.module.clone())?,
                token_label: label("seal.token_label", token_label)?,
                slot: raw.slot,
                pin_file: file("seal.pin_file", raw.pin_file.clone())?,
                key_label: label(
                    "seal.key_label",
                    raw.key_label.clone().unwrap_or_else(|| DEFAULT_KEY_LABEL.to_owned()),
                )?,
            }))
        }
        other => Err(ConfigError::invalid(
            "seal.mode",
            format!("{other:?} is not one of \"shamir\", \"passphrase\", \"pkcs11\""),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(mode: &str) -> RawSeal {
        RawSeal {
            mode: mode.to_owned(),
            passphrase_file: None,
            module: None,
            token_label: None,
            slot: None,
            pin_file: None,
            key_label: None,
        }
    }

    fn error(path: &Path, seal: RawSeal) -> String {
        seal_config(path, seal).unwrap_err().to_string()
    }

    #[test]
    fn the_pkcs11_section_is_validated_field_by_field() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("root-keyd.toml");
        let file = dir.path().join("present");
        std::fs::write(&file, "1234\n").unwrap();
        let full = || RawSeal {
            module: Some(file.clone()),
            token_label: Some("skm".into()),
            pin_file: Some(file.clone()),
            ..raw("pkcs11")
        };
        match seal_config(&config, full()).unwrap() {
            SealConfig::Pkcs11(t) => {
                assert_eq!((t.token_label.as_str(), t.key_label.as_str(), t.slot), ("skm", DEFAULT_KEY_LABEL, None));
            }
            other => panic!("{other:?}"),
        }
        let e = error(&config, RawSeal { token_label: None, ..full() });
        assert!(e.contains("seal.token_label") && e.contains("required"), "{e}");
        let e = error(&config, RawSeal { module: Some(dir.path().join("absent.so")), ..full() });
        assert!(e.contains("seal.module") && e.contains("absent.so"), "{e}");
        let e = error(&config, RawSeal { pin_file: None, ..full() });
        assert!(e.contains("seal.pin_file") && e.contains("required"), "{e}");
        let e = error(&config, RawSeal { key_label: Some("x".repeat(33)), ..full() });
        assert!(e.contains("seal.key_label") && e.contains("1 to 32 bytes"), "{e}");
        let e = error(&config, RawSeal { token_label: Some(String::new()), ..full() });
        assert!(e.contains("seal.token_label"), "{e}");
        // A passphrase file beside it is ignored (compose names one in every mode).
        assert!(seal_config(&config, RawSeal { passphrase_file: Some(file.clone()), ..full() }).is_ok());
        assert_eq!(
            seal_config(&config, RawSeal { passphrase_file: Some(file.clone()), ..raw("shamir") }).unwrap(),
            SealConfig::Shamir
        );
        // PKCS#11 fields in another mode are refused, not ignored.
        let e = error(&config, RawSeal { pin_file: Some(file.clone()), ..raw("shamir") });
        assert!(e.contains("seal.pin_file") && e.contains("\"pkcs11\""), "{e}");
        let e = error(&config, raw("hsm"));
        assert!(e.contains("\"pkcs11\""), "{e}");
    }
}

//! The store part of a daemon's config: `store = "sled"` (the default:
//! the embedded store in `data_dir`) or `store = "etcd"` with an `[etcd]`
//! section. kms-api and system-keyd parse it the same way.
//!
//! ```toml
//! store = "etcd"
//!
//! [etcd]
//! endpoints = ["10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"]
//! ca = "etcd-ca.pem"              # the CA of etcd's server certificates
//! cert = "etcd-client.pem"        # this daemon's client certificate for etcd
//! key = "etcd-client.key"
//! prefix = "skm/kms-api/"         # every key this daemon writes is under it
//! request_timeout_ms = 5000       # one call to one member
//! connect_timeout_ms = 2000
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use skm_runtime::config::{ConfigError, resolve};
use skm_runtime::tls::TlsFiles;

use crate::etcd::{EtcdConfig, MAX_ENDPOINTS};

/// Which backend holds a daemon's records (`store`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The embedded sled store in `data_dir`.
    #[default]
    Sled,
    /// An etcd cluster (`[etcd]`).
    Etcd,
}

/// The `[etcd]` section as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSection {
    endpoints: Vec<String>,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    prefix: String,
    #[serde(default = "default_request_timeout")]
    request_timeout_ms: u64,
    #[serde(default = "default_connect_timeout")]
    connect_timeout_ms: u64,
}

fn default_request_timeout() -> u64 {
    5000
}

fn default_connect_timeout() -> u64 {
    2000
}

/// A daemon's validated store choice.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// sled in this directory.
    Sled {
        /// The database directory.
        dir: PathBuf,
    },
    /// etcd.
    Etcd(EtcdConfig),
}

impl StoreConfig {
    /// Validates `store` and `[etcd]` of the config file at `config_path`;
    /// `data_dir` is where sled keeps its database.
    pub fn from_sections(
        kind: StoreKind,
        etcd: Option<&EtcdSection>,
        data_dir: &Path,
        config_path: &Path,
    ) -> Result<Self, ConfigError> {
        match (kind, etcd) {
            (StoreKind::Sled, None) => Ok(Self::Sled { dir: data_dir.to_owned() }),
            (StoreKind::Sled, Some(_)) => {
                Err(ConfigError::invalid("etcd", "is set but store is \"sled\"; set store = \"etcd\" or remove [etcd]"))
            }
            (StoreKind::Etcd, None) => Err(ConfigError::invalid("etcd", "is required when store = \"etcd\"")),
            (StoreKind::Etcd, Some(section)) => section.validate(config_path).map(Self::Etcd),
        }
    }
}

impl EtcdSection {
    /// Checks every field; paths are taken from the config file's directory.
    pub fn validate(&self, config_path: &Path) -> Result<EtcdConfig, ConfigError> {
        if !(1..=MAX_ENDPOINTS).contains(&self.endpoints.len()) {
            return Err(ConfigError::invalid(
                "etcd.endpoints",
                format!("names {} endpoints; must name 1..={MAX_ENDPOINTS}", self.endpoints.len()),
            ));
        }
        for endpoint in &self.endpoints {
            let port = endpoint.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(port))) if !host.is_empty() && port != 0) {
                return Err(ConfigError::invalid("etcd.endpoints", format!("{endpoint:?} is not host:port")));
            }
        }
        if self.prefix.is_empty() || self.prefix.len() > 256 {
            return Err(ConfigError::invalid(
                "etcd.prefix",
                format!("is {} bytes; must be 1..=256 (e.g. \"skm/kms-api/\")", self.prefix.len()),
            ));
        }
        for (field, ms) in
            [("etcd.request_timeout_ms", self.request_timeout_ms), ("etcd.connect_timeout_ms", self.connect_timeout_ms)]
        {
            if !(100..=60_000).contains(&ms) {
                return Err(ConfigError::invalid(field, format!("is {ms}; must be 100..=60000")));
            }
        }
        Ok(EtcdConfig {
            endpoints: self.endpoints.clone(),
            tls: TlsFiles {
                ca: resolve(config_path, &self.ca),
                cert: resolve(config_path, &self.cert),
                key: resolve(config_path, &self.key),
            },
            prefix: self.prefix.as_bytes().to_vec(),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(toml_text: &str) -> EtcdSection {
        toml::from_str(toml_text).unwrap()
    }

    const GOOD: &str = r#"
        endpoints = ["127.0.0.1:2379", "etcd-2:2379"]
        ca = "ca.pem"
        cert = "c.pem"
        key = "k.pem"
        prefix = "skm/kms-api/"
    "#;

    #[test]
    fn a_valid_section_resolves_paths_and_defaults() {
        let config = section(GOOD).validate(Path::new("/etc/skm/kms-api.toml")).unwrap();
        assert_eq!(config.tls.ca, Path::new("/etc/skm/ca.pem"));
        assert_eq!(config.request_timeout, Duration::from_secs(5));
        assert_eq!(config.prefix, b"skm/kms-api/");
    }

    #[test]
    fn bad_fields_are_named_with_their_limits() {
        let path = Path::new("x.toml");
        let cases = [
            (GOOD.replace(r#"["127.0.0.1:2379", "etcd-2:2379"]"#, "[]"), "etcd.endpoints", "must name 1..=16"),
            (GOOD.replace("etcd-2:2379", "etcd-2"), "etcd.endpoints", "not host:port"),
            (GOOD.replace("skm/kms-api/", ""), "etcd.prefix", "must be 1..=256"),
            (format!("{GOOD}\nrequest_timeout_ms = 50"), "etcd.request_timeout_ms", "must be 100..=60000"),
        ];
        for (text, field, message) in cases {
            let error = section(&text).validate(path).unwrap_err().to_string();
            assert!(error.contains(field) && error.contains(message), "{error}");
        }
    }

    #[test]
    fn store_and_section_must_agree() {
        let path = Path::new("x.toml");
        let dir = Path::new("data");
        assert!(matches!(StoreConfig::from_sections(StoreKind::Sled, None, dir, path), Ok(StoreConfig::Sled { .. })));
        let etcd = section(GOOD);
        let error = StoreConfig::from_sections(StoreKind::Sled, Some(&etcd), dir, path).unwrap_err().to_string();
        assert!(error.contains("store is \"sled\""), "{error}");
        let error = StoreConfig::from_sections(StoreKind::Etcd, None, dir, path).unwrap_err().to_string();
        assert!(error.contains("required when store = \"etcd\""), "{error}");
        assert!(matches!(
            StoreConfig::from_sections(StoreKind::Etcd, Some(&etcd), dir, path),
            Ok(StoreConfig::Etcd(_))
        ));
    }
}

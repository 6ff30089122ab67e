//! Daemon configuration: a TOML file plus environment overrides, turned
//! into a validated config type before any port is bound.
//!
//! Overrides: `<PREFIX>__<SECTION>__<FIELD>=value`, e.g.
//! `SKM_KMS_API__USER_LISTEN=0.0.0.0:7700` or `SKM_ROOT_KEYD__LOG__LEVEL=debug`.
//! A value that parses as a TOML value (number, boolean, array) is taken
//! as that; anything else as a string.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::identity::SpiffeId;
use crate::tls::{TlsFiles, TlsIdentity};

/// Exit code of a daemon whose configuration is invalid (64, `EX_USAGE`).
pub const EXIT_BAD_CONFIG: u8 = 64;

/// Why a configuration was refused. Displays as one line naming the file,
/// variable or field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file (with overrides) doesn't match the schema.
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML/serde message, which names the field.
        message: String,
    },
    /// A field has a value the service can't use.
    #[error("config field {field}: {message}")]
    Invalid {
        /// Dotted field path.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
        Self::Invalid { field: field.to_owned(), message: message.to_string() }
    }
}

/// Reads `path`, applies `PREFIX__...` environment overrides and
/// deserialises the result.
pub fn load<T: DeserializeOwned>(path: &Path, env_prefix: &str) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let vars: Vec<(String, String)> = std::env::vars().collect();
    parse_with_overrides(path, &text, env_prefix, &vars)
}

fn parse_with_overrides<T: DeserializeOwned>(
    path: &Path,
    text: &str,
    env_prefix: &str,
    vars: &[(String, String)],
) -> Result<T, ConfigError> {
    let parse_err = |message: String| ConfigError::Parse { path: path.to_owned(), message };
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| parse_err(e.message().to_owned()))?;
    let prefix = format!("{env_prefix}__");
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let keys: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        set_path(&mut table, &keys, parse_value(value))
            .map_err(|m| parse_err(format!("environment variable {name}: {m}")))?;
    }
    T::deserialize(toml::Value::Table(table)).map_err(|e| parse_err(e.message().to_owned()))
}

fn parse_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = keys.split_last() else {
        return Err("empty key".to_owned());
    };
    let mut cur = table;
    for key in parents {
        let entry = cur.entry(key.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| format!("{key} is not a section"))?;
    }
    cur.insert(last.clone(), value);
    Ok(())
}

/// The `[tls]` section every daemon has: PEM files, relative paths taken
/// from the config file's directory.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Deployment CA certificate(s).
    pub ca: PathBuf,
    /// The daemon's certificate chain.
    pub cert: PathBuf,
    /// The daemon's private key.
    pub key: PathBuf,
}

impl TlsSection {
    /// Loads the files; the certificate must carry `expected`.
    pub fn load(&self, config_path: &Path, expected: &SpiffeId) -> Result<TlsIdentity, ConfigError> {
        let files = TlsFiles {
            ca: resolve(config_path, &self.ca),
            cert: resolve(config_path, &self.cert),
            key: resolve(config_path, &self.key),
        };
        TlsIdentity::load(&files, Some(expected)).map_err(|e| ConfigError::invalid("tls", e))
    }
}

/// Resolves a path from the config file relative to the file's directory.
pub fn resolve(config_path: &Path, value: &Path) -> PathBuf {
    if value.is_absolute() { value.to_owned() } else { config_path.parent().unwrap_or(Path::new(".")).join(value) }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        listen: String,
        #[serde(default)]
        log: Log,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Log {
        level: Option<String>,
        verbose: Option<bool>,
    }

    #[test]
    fn env_overrides_nested_fields_with_types() {
        let vars = vec![
            ("SKM_X__LOG__LEVEL".to_owned(), "debug".to_owned()),
            ("SKM_X__LOG__VERBOSE".to_owned(), "true".to_owned()),
            ("SKM_Y__LISTEN".to_owned(), "ignored".to_owned()),
            ("SKM_X__LISTEN".to_owned(), "0.0.0.0:1".to_owned()),
        ];
        let raw: Raw = parse_with_overrides(Path::new("c.toml"), "listen = \"127.0.0.1:9\"", "SKM_X", &vars).unwrap();
        assert_eq!(raw.listen, "0.0.0.0:1");
        assert_eq!(raw.log, Log { level: Some("debug".into()), verbose: Some(true) });
    }

    #[test]
    fn unknown_field_is_one_line_naming_it() {
        let err = parse_with_overrides::<Raw>(Path::new("c.toml"), "listen = \"a\"\nlisten_typo = 1", "P", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_typo"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

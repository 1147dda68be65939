//! `weft control`'s configuration file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The control endpoint's configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Where the API listens; port 0 picks a free one (printed).
    pub address: SocketAddr,
    /// Where bundles, state and the audit history are kept (relative to
    /// the config file).
    pub data_dir: PathBuf,
    /// Who may call the API: bearer tokens by their SHA-256, each with a
    /// role.
    pub tokens: Vec<Token>,
    /// The largest bundle upload, in MiB. Default 64.
    #[serde(default = "default_max_upload_mb")]
    pub max_upload_mb: u64,
    /// Serve HTTPS with this certificate chain and key (PEM files,
    /// relative to the config file); default plain HTTP.
    #[serde(default)]
    pub tls: Option<Tls>,
}

/// The API's certificate.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// The certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// A bearer token the API accepts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// Its name, recorded in the audit history.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the token, hex (`weft control token` makes one).
    pub sha256: String,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything: push, promote, rollback, and what readers do.
    Admin,
    /// Look: bundles, status, history.
    Reader,
    /// A proxy: ask what to run, fetch bundles, report.
    Proxy,
}

fn default_max_upload_mb() -> u64 {
    64
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A field is wrong.
    #[error("{}: field `{field}`: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads and checks `path`.
pub fn load(path: &Path) -> Result<ControlConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |field: String, message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        field,
        message,
    };
    let mut config: ControlConfig = weft_config::from_yaml(&text)
        .map_err(|err| invalid(err.path().to_string(), err.inner().to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    if config.data_dir.is_relative() {
        config.data_dir = base.join(&config.data_dir);
    }
    if let Some(tls) = &mut config.tls {
        for (field, file) in [("cert", &mut tls.cert), ("key", &mut tls.key)] {
            if file.is_relative() {
                *file = base.join(&*file);
            }
            if !file.exists() {
                return Err(invalid(
                    format!("tls.{field}"),
                    format!("{} does not exist", file.display()),
                ));
            }
        }
    }
    if config.tokens.is_empty() {
        return Err(invalid(
            "tokens".into(),
            "no tokens: nobody could call the API; add one (`weft control token` makes one)".into(),
        ));
    }
    for (i, token) in config.tokens.iter().enumerate() {
        let hex = token.sha256.len() == 64 && token.sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex {
            return Err(invalid(
                format!("tokens[{i}].sha256"),
                "not a SHA-256 (64 hex digits); `weft control token` prints one".into(),
            ));
        }
        if config.tokens[..i].iter().any(|t| t.name == token.name) {
            return Err(invalid(
                format!("tokens[{i}].name"),
                format!("`{}` is used twice", token.name),
            ));
        }
    }
    if !(1..=4096).contains(&config.max_upload_mb) {
        return Err(invalid(
            "max_upload_mb".into(),
            format!("{} is out of range; use 1 to 4096", config.max_upload_mb),
        ));
    }
    Ok(config)
}

//! The `weft proxy` configuration file.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// A whole `weft proxy` configuration file.
///
/// ```yaml
/// workers: 2
/// listeners:
///   - name: ingress
///     address: 127.0.0.1:8080
///     cluster: backend
///     filters: [hello]
/// clusters:
///   - name: backend
///     endpoints: [127.0.0.1:9000]
/// plugins:
///   - name: hello
///     module: hello_rust.wasm
///     configuration: {header: x-hello, value: world}
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Worker threads, each with its own event loop and filter VMs.
    /// Defaults to the number of CPUs.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Where the proxy accepts downstream connections.
    pub listeners: Vec<Listener>,
    /// Upstream clusters requests are forwarded to.
    pub clusters: Vec<Cluster>,
    /// proxy-wasm plugins (a module plus its configuration) that listeners
    /// run as filters.
    #[serde(default)]
    pub plugins: Vec<Plugin>,
    /// The admin listener (`/ready`, `/metrics`, `/plugins`); none by default.
    #[serde(default)]
    pub admin: Option<Admin>,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish
    /// (no new connections are accepted meanwhile), in milliseconds.
    #[serde(default = "default_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
}

/// The admin listener. Bind it to loopback or a private address: it is
/// not authenticated.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Socket address to bind; port 0 picks a free port (printed at start).
    pub address: SocketAddr,
}

/// An HTTP/1.1 listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// Socket address to bind; port 0 picks a free port (printed at start).
    pub address: SocketAddr,
    /// The cluster every request is forwarded to.
    pub cluster: String,
    /// Names of plugins run on every request, in order (request path in
    /// this order, response path in reverse).
    #[serde(default)]
    pub filters: Vec<String>,
}

/// A set of upstream endpoints.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Unique name, referenced by listeners.
    pub name: String,
    /// Static endpoints, balanced round robin.
    pub endpoints: Vec<SocketAddr>,
    /// Connect timeout in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Idle upstream connections kept per endpoint per worker.
    #[serde(default = "default_max_idle_per_endpoint")]
    pub max_idle_per_endpoint: usize,
}

/// A proxy-wasm plugin: a module and the configuration its root context gets.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Plugin {
    /// Unique name; the `plugin_name` property.
    pub name: String,
    /// Path to the `.wasm` (or `.wat`) module, relative to the config file.
    pub module: PathBuf,
    /// The root id the module's root context is created for (`plugin_root_id`).
    #[serde(default)]
    pub root_id: String,
    /// The VM id (`plugin_vm_id`); plugins with the same module and VM id
    /// will share a VM once VM sharing lands.
    #[serde(default)]
    pub vm_id: String,
    /// Plugin configuration handed to `proxy_on_configure`.
    #[serde(default)]
    pub configuration: PluginConfiguration,
    /// VM configuration handed to `proxy_on_vm_start` (same encoding).
    #[serde(default)]
    pub vm_configuration: PluginConfiguration,
    /// What happens to a request when this plugin fails (traps, times out,
    /// cannot start).
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Resource limits of each of the plugin's VMs.
    #[serde(default)]
    pub limits: PluginLimits,
    /// The `proxy_*` host functions the plugin may call; absent, all. A
    /// call to another answers INTERNAL_FAILURE and is logged.
    #[serde(default)]
    pub allowed_host_functions: Option<Vec<String>>,
}

/// Resource limits of a plugin's VMs. A VM that exceeds one fails, and the
/// plugin's failure policy applies.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    /// Largest linear memory a VM may grow to, in MiB.
    pub memory_mb: u32,
    /// CPU time one stream or timer callback may take, in milliseconds.
    pub callback_ms: u64,
    /// CPU time start-up (`_initialize`, `proxy_on_vm_start`,
    /// `proxy_on_configure`) may take, in milliseconds.
    pub start_ms: u64,
    /// The most body (MiB) the plugin may hold back by pausing its body
    /// callbacks; more is answered 413.
    pub body_buffer_mb: u32,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            memory_mb: 64,
            callback_ms: 200,
            start_ms: 5_000,
            body_buffer_mb: 4,
        }
    }
}

/// Plugin configuration as written in YAML. A string is handed to the
/// plugin byte for byte; any other value is handed over as JSON, which is
/// what most filters parse.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(transparent)]
pub struct PluginConfiguration(pub Option<serde_yaml::Value>);

impl PluginConfiguration {
    /// The bytes `proxy_get_buffer_bytes(PluginConfiguration)` returns.
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.0 {
            None | Some(serde_yaml::Value::Null) => Vec::new(),
            Some(serde_yaml::Value::String(s)) => s.clone().into_bytes(),
            Some(value) => serde_json::to_vec(value).unwrap_or_default(),
        }
    }
}

/// How a request is treated when a plugin fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Answer 503 (the default: a broken auth filter must not let traffic through).
    #[default]
    FailClosed,
    /// Skip the plugin and pass the request on.
    FailOpen,
}

fn default_drain_timeout_ms() -> u64 {
    30_000
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

fn default_max_idle_per_endpoint() -> usize {
    64
}

/// Reads, parses and validates a proxy configuration file. Relative module
/// paths in the result are resolved against the file's directory.
pub fn load_proxy_config(path: &Path) -> Result<ProxyConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut config = parse_proxy_config(path, &text)?;
    let base = path.parent().unwrap_or(Path::new("."));
    for plugin in &mut config.plugins {
        if plugin.module.is_relative() {
            plugin.module = base.join(&plugin.module);
        }
    }
    config.validate(path)?;
    Ok(config)
}

/// Parses configuration text; `path` is only used in error messages.
/// Does not validate: see [`ProxyConfig::validate`].
pub fn parse_proxy_config(path: &Path, text: &str) -> Result<ProxyConfig, ConfigError> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de)
        .map_err(|err| ConfigError::parse(path.to_path_buf(), err.path().to_string(), err.inner()))
}

impl ProxyConfig {
    /// Checks what the schema cannot: references resolve, names are unique,
    /// lists are not empty, module files exist. `path` names the file in errors.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: String, message: String| ConfigError::invalid(path, field, message);
        if self.workers == Some(0) {
            return Err(invalid(
                "workers".into(),
                "must be at least 1 (omit it for one per CPU)".into(),
            ));
        }
        if self.listeners.is_empty() {
            return Err(invalid(
                "listeners".into(),
                "at least one listener is needed".into(),
            ));
        }
        unique_names(self.listeners.iter().map(|l| &l.name), "listeners", path)?;
        unique_names(self.clusters.iter().map(|c| &c.name), "clusters", path)?;
        unique_names(self.plugins.iter().map(|p| &p.name), "plugins", path)?;

        for (i, cluster) in self.clusters.iter().enumerate() {
            if cluster.endpoints.is_empty() {
                return Err(invalid(
                    format!("clusters[{i}].endpoints"),
                    format!(
                        "cluster `{}` has no endpoints; list at least one address",
                        cluster.name
                    ),
                ));
            }
        }
        for (i, listener) in self.listeners.iter().enumerate() {
            if !self.clusters.iter().any(|c| c.name == listener.cluster) {
                return Err(invalid(
                    format!("listeners[{i}].cluster"),
                    format!(
                        "no cluster named `{}`; known clusters: {}",
                        listener.cluster,
                        known(self.clusters.iter().map(|c| &c.name))
                    ),
                ));
            }
            for (j, filter) in listener.filters.iter().enumerate() {
                if !self.plugins.iter().any(|p| &p.name == filter) {
                    return Err(invalid(
                        format!("listeners[{i}].filters[{j}]"),
                        format!(
                            "no plugin named `{filter}`; known plugins: {}",
                            known(self.plugins.iter().map(|p| &p.name))
                        ),
                    ));
                }
            }
        }
        for (i, plugin) in self.plugins.iter().enumerate() {
            let limits = &plugin.limits;
            for (field, value, range) in [
                ("memory_mb", u64::from(limits.memory_mb), 1..=4096),
                ("callback_ms", limits.callback_ms, 1..=60_000),
                ("start_ms", limits.start_ms, 1..=600_000),
                ("body_buffer_mb", u64::from(limits.body_buffer_mb), 1..=1024),
            ] {
                if !range.contains(&value) {
                    return Err(invalid(
                        format!("plugins[{i}].limits.{field}"),
                        format!(
                            "{value} is out of range; use {} to {}",
                            range.start(),
                            range.end()
                        ),
                    ));
                }
            }
            if !plugin.module.is_file() {
                return Err(invalid(
                    format!("plugins[{i}].module"),
                    format!(
                        "module file {} does not exist (relative paths are resolved against the config file's directory; build the filters with `cargo xtask build-filters`)",
                        plugin.module.display()
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn unique_names<'a>(
    names: impl Iterator<Item = &'a String>,
    list: &str,
    path: &Path,
) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, name) in names.enumerate() {
        if name.is_empty() {
            return Err(ConfigError::invalid(
                path,
                format!("{list}[{i}].name"),
                "must not be empty",
            ));
        }
        if !seen.insert(name) {
            return Err(ConfigError::invalid(
                path,
                format!("{list}[{i}].name"),
                format!("`{name}` is used twice; names in `{list}` must be unique"),
            ));
        }
    }
    Ok(())
}

fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}

//! weft's configuration.
//!
//! A proxy configuration is YAML parsed into the typed structs of this crate
//! ([`ProxyConfig`] and what it holds), then checked by [`ProxyConfig::validate`].
//! Every error is a [`ConfigError`] that names the file, the field (as a path
//! such as `plugins[0].module`, with line and column where YAML gives them)
//! and what is wrong, so that a bad file is refused before anything starts.

#![warn(missing_docs)]

mod error;
mod proxy;
mod route;
mod validate;

pub use error::ConfigError;
pub use proxy::{
    AccessLog, AddedPlugins, Admin, BodyDuringPause, BundleSource, CertificateFiles,
    CircuitBreakers, Cluster, ControlSubscription, Dns, FailurePolicy, HashOn, HealthCheck,
    InstanceAllocator, Isolation, LbPolicy, Listener, ListenerLimits, ListenerProtocol,
    ListenerTls, LogField, MAX_VMS, ModuleCacheConfig, OciSource, OutlierDetection, Plugin,
    PluginConfiguration, PluginLimits, ProxyConfig, REQUEST_VMS_PER_WORKER, RetryBudget,
    UpstreamTls, WasmRuntime, load_proxy_config, parse_proxy_config, split_host_port,
};
/// Deserializes YAML `text` into `T`; an error carries the path of the
/// field it is about (`plugins[0].module`). A byte-order mark some editors
/// write is skipped: left in, it would hide the first key. Every YAML file
/// weft reads goes through here.
pub fn from_yaml<T: serde::de::DeserializeOwned>(
    text: &str,
) -> Result<T, serde_path_to_error::Error<serde_yaml::Error>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
}

pub use route::{
    DEFAULT_IDLE_TIMEOUT_MS, DirectResponse, Forward, HeaderMutation, HeaderValueConfig, Mirror,
    Redirect, RetryOn, RetryPolicy, Route, RouteMatch, ValueMatch, VirtualHost, WeightedCluster,
};

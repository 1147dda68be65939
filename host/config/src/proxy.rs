//! The `weft proxy` configuration file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::route::VirtualHost;

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
    /// How endpoint host names are resolved.
    #[serde(default)]
    pub dns: Dns,
    /// This proxy's labels: a bundle is taken only if its own labels are
    /// all among these.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Where the proxy takes filter bundles from; default nowhere.
    #[serde(default)]
    pub bundles: Option<BundleSource>,
    /// The wasm runtime: how VMs get memory, where compiled modules are kept.
    #[serde(default)]
    pub runtime: WasmRuntime,
}

/// The wasm runtime's set-up.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WasmRuntime {
    /// How VMs get their memory. Default `pooling`.
    pub allocator: InstanceAllocator,
    /// With `pooling`: the VMs that may exist at once, across plugins and
    /// workers (one per plugin per worker, plus the VMs of swapped-out
    /// versions finishing their streams and canaries; one per request in
    /// flight for a plugin with `isolation: request`); a VM beyond it
    /// fails to start. Each reserves about 4 GiB of address space, none of
    /// it resident. Default, per worker: four per plugin, or
    /// [`REQUEST_VMS_PER_WORKER`] for a plugin with `isolation: request`;
    /// at least 64, at most [`MAX_VMS`].
    pub max_vms: Option<u32>,
    /// Compiled modules kept on disk.
    pub module_cache: ModuleCacheConfig,
    /// List every compiled guest function in `/tmp/perf-<pid>.map`, so
    /// that `perf` names filter code. Default false: for profiling.
    pub perf_map: bool,
}

impl WasmRuntime {
    /// `max_vms`, or its default for `plugins` on `workers` workers.
    pub fn max_vms_for(&self, workers: usize, plugins: &[Plugin]) -> u32 {
        self.max_vms.unwrap_or_else(|| {
            let per_worker: usize = plugins
                .iter()
                .map(|p| match p.isolation {
                    Isolation::Worker => 4,
                    Isolation::Request => REQUEST_VMS_PER_WORKER,
                })
                .sum();
            let wanted = workers.saturating_mul(per_worker);
            u32::try_from(wanted).map_or(MAX_VMS, |n| n.clamp(64, MAX_VMS))
        })
    }
}

/// The VMs a plugin with `isolation: request` is given room for in the
/// default pool, per worker: one per request in flight.
pub const REQUEST_VMS_PER_WORKER: usize = 256;

/// The most `runtime.max_vms` allows: 4096 VMs reserve 16 TiB of the
/// 128 TiB a process can address.
pub const MAX_VMS: u32 = 4096;

/// How VMs get their linear memories, tables and instance state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceAllocator {
    /// Reserved once at start for `max_vms` VMs, slots reused: a VM starts
    /// without mapping memory. Falls back to `on_demand` with a warning
    /// when the address space cannot be reserved (`ulimit -v`).
    #[default]
    Pooling,
    /// Mapped when a VM starts, unmapped when it ends.
    OnDemand,
}

/// The on-disk cache of compiled modules: a module is compiled once per
/// content and engine (wasmtime version, its settings, the CPU's features)
/// and read back at later starts, swaps and bundle loads.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModuleCacheConfig {
    /// Default true.
    pub enabled: bool,
    /// A directory of the cache's own (other files in it are removed).
    /// Default `$XDG_CACHE_HOME/weft/modules`, else
    /// `$HOME/.cache/weft/modules`; with neither set, no cache.
    pub dir: Option<PathBuf>,
}

impl Default for ModuleCacheConfig {
    fn default() -> Self {
        ModuleCacheConfig {
            enabled: true,
            dir: None,
        }
    }
}

impl ModuleCacheConfig {
    /// The directory to use: `dir`, or the default one; `None` when
    /// disabled or when there is no default (no `XDG_CACHE_HOME`, no `HOME`).
    pub fn directory(&self) -> Option<PathBuf> {
        if !self.enabled {
            return None;
        }
        if let Some(dir) = &self.dir {
            return Some(dir.clone());
        }
        let absolute = |var: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        absolute("XDG_CACHE_HOME")
            .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
            .map(|cache| cache.join("weft").join("modules"))
    }
}

/// Where filter bundles come from: a local file or directory, a control
/// endpoint, or both (the latest applied wins).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSource {
    /// A bundle archive (`weft bundle build`), or a directory holding
    /// `bundle.yaml` and its modules (built in memory: the authoring loop).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A control endpoint (`weft control`) to subscribe to.
    #[serde(default)]
    pub control: Option<ControlSubscription>,
    /// A bundle in an OCI registry, pulled by tag (and again when the tag
    /// moves) or by digest.
    #[serde(default)]
    pub oci: Option<OciSource>,
    /// Apply it again whenever it changes. Default true.
    #[serde(default = "yes")]
    pub watch: bool,
    /// Public keys (base64, or `.pub` files) bundles must be signed with;
    /// with none, unsigned bundles are taken.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// What plugins a bundle adds (those this config does not declare)
    /// may use. A bundle never grants itself anything; a plugin it
    /// replaces keeps the grants this config gives it.
    #[serde(default)]
    pub added_plugins: AddedPlugins,
}

/// The grants of plugins bundles add. Unset, like a plugin of this config
/// without them: every host function, every cluster.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AddedPlugins {
    /// The host functions they may call (as a plugin's
    /// `allowed_host_functions`).
    #[serde(default)]
    pub allowed_host_functions: Option<Vec<String>>,
    /// The clusters their call-outs may reach (as a plugin's
    /// `allowed_clusters`).
    #[serde(default)]
    pub allowed_clusters: Option<Vec<String>>,
}

/// A bundle in an OCI registry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OciSource {
    /// `oci://REGISTRY/REPOSITORY[:TAG|@sha256:DIGEST]`; registries on
    /// loopback are spoken to over HTTP, others over HTTPS.
    pub reference: String,
    /// How often the tag is looked at again, in milliseconds. Default 30000.
    #[serde(default = "default_oci_poll_ms")]
    pub poll_interval_ms: u64,
}

fn default_oci_poll_ms() -> u64 {
    30_000
}

/// A subscription to a control endpoint.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSubscription {
    /// The endpoint, `http://HOST:PORT`.
    pub url: String,
    /// A file holding this proxy's token (role `proxy`).
    pub token_file: PathBuf,
    /// This proxy's id at the endpoint; default the host name and the
    /// first listener's port.
    #[serde(default)]
    pub id: Option<String>,
    /// For https://: the CA certificates (PEM) to trust instead of the
    /// system's.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

/// How endpoint host names are resolved.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// A hosts file (`ADDRESS NAME...` lines, `#` comments) consulted
    /// before the system resolver and read again at every refresh; names
    /// it lists resolve to its addresses only. Default none.
    #[serde(default)]
    pub hosts_file: Option<PathBuf>,
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
    /// `http` (default) or `tcp`: every connection relayed to `cluster`
    /// byte for byte, its plugins' TCP callbacks run on the data.
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// Shorthand for one virtual host with one route forwarding every
    /// request to this cluster. Give this or `virtual_hosts`.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Virtual hosts and their routes.
    #[serde(default)]
    pub virtual_hosts: Vec<VirtualHost>,
    /// Names of plugins run on every request, in order (request path in
    /// this order, response path in reverse); a route may replace them.
    #[serde(default)]
    pub filters: Vec<String>,
    /// Limits on what clients send.
    #[serde(default)]
    pub limits: ListenerLimits,
    /// TLS termination; without it the listener speaks plain HTTP.
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// Accept HTTP/2: by ALPN on TLS, by prior knowledge on plain TCP.
    /// Default true.
    #[serde(default = "yes")]
    pub http2: bool,
    /// A JSON line per request; default none.
    #[serde(default)]
    pub access_log: Option<AccessLog>,
    /// Give requests without an `x-request-id` one (a random UUID), before
    /// the filters run. Default true.
    #[serde(default = "yes")]
    pub request_id: bool,
    /// W3C trace context: send a `traceparent` with this hop's span id,
    /// continuing the client's trace or starting one. Default true.
    #[serde(default = "yes")]
    pub traceparent: bool,
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerProtocol {
    /// HTTP/1.1 and HTTP/2, routed, with the HTTP filter callbacks.
    #[default]
    Http,
    /// TCP relayed to one cluster, with the TCP filter callbacks
    /// (`proxy_on_new_connection`, `proxy_on_downstream_data`, ...).
    Tcp,
}

/// The access log: one JSON object per line per request, written when the
/// response is done.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    /// File to append to (created if missing); `-` for standard output.
    pub path: PathBuf,
    /// The fields, in order; default all of them.
    #[serde(default)]
    pub fields: Vec<LogField>,
}

/// An access log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogField {
    /// When the request arrived, RFC 3339 UTC with milliseconds.
    StartTime,
    /// The request method.
    Method,
    /// `:authority` (Host).
    Authority,
    /// Path and query, as sent upstream.
    Path,
    /// `HTTP/1.1` or `HTTP/2.0`.
    Protocol,
    /// The status sent to the client; null when the stream was closed.
    Status,
    /// From the request's arrival to the end of the response, in ms.
    DurationMs,
    /// Request body bytes read from the client.
    BytesReceived,
    /// Response body bytes sent to the client.
    BytesSent,
    /// The cluster the request went to.
    UpstreamCluster,
    /// The endpoint that answered.
    UpstreamHost,
    /// The matched route (`VHOST/ROUTE`).
    Route,
    /// The listener's name.
    Listener,
    /// The client's address.
    DownstreamRemoteAddress,
    /// The address the client connected to.
    DownstreamLocalAddress,
    /// `x-request-id`.
    RequestId,
    /// `traceparent` as sent upstream.
    Traceparent,
    /// `user-agent`.
    UserAgent,
    /// `referer`.
    Referer,
    /// The SNI name of a TLS connection.
    TlsServerName,
    /// The client certificate's first URI SAN, else its subject (mTLS).
    PeerIdentity,
}

impl LogField {
    /// Every field, in the default order.
    pub const ALL: [LogField; 21] = [
        LogField::StartTime,
        LogField::Method,
        LogField::Authority,
        LogField::Path,
        LogField::Protocol,
        LogField::Status,
        LogField::DurationMs,
        LogField::BytesReceived,
        LogField::BytesSent,
        LogField::UpstreamCluster,
        LogField::UpstreamHost,
        LogField::Route,
        LogField::Listener,
        LogField::DownstreamRemoteAddress,
        LogField::DownstreamLocalAddress,
        LogField::RequestId,
        LogField::Traceparent,
        LogField::UserAgent,
        LogField::Referer,
        LogField::TlsServerName,
        LogField::PeerIdentity,
    ];

    /// The JSON key.
    pub fn name(self) -> &'static str {
        match self {
            LogField::StartTime => "start_time",
            LogField::Method => "method",
            LogField::Authority => "authority",
            LogField::Path => "path",
            LogField::Protocol => "protocol",
            LogField::Status => "status",
            LogField::DurationMs => "duration_ms",
            LogField::BytesReceived => "bytes_received",
            LogField::BytesSent => "bytes_sent",
            LogField::UpstreamCluster => "upstream_cluster",
            LogField::UpstreamHost => "upstream_host",
            LogField::Route => "route",
            LogField::Listener => "listener",
            LogField::DownstreamRemoteAddress => "downstream_remote_address",
            LogField::DownstreamLocalAddress => "downstream_local_address",
            LogField::RequestId => "request_id",
            LogField::Traceparent => "traceparent",
            LogField::UserAgent => "user_agent",
            LogField::Referer => "referer",
            LogField::TlsServerName => "tls_server_name",
            LogField::PeerIdentity => "peer_identity",
        }
    }
}

/// TLS termination on a listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// Certificates; the one whose `server_names` match the client's SNI
    /// is used, else the first.
    pub certificates: Vec<CertificateFiles>,
    /// PEM file of CA certificates client certificates must chain to (mTLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: refuse clients without a certificate (the
    /// default, true); false lets them in without an identity. Refused
    /// without `client_ca`, where it would mean nothing.
    #[serde(default)]
    pub require_client_certificate: Option<bool>,
    /// How often the certificate and key files are looked at for changes,
    /// in milliseconds; changed files are loaded without a restart (and if
    /// they do not load, the old ones stay). Default 2000.
    #[serde(default = "default_reload_interval_ms")]
    pub reload_interval_ms: u64,
}

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// SNI names this certificate is for (`*.example.com` allowed); empty:
    /// only as the default.
    #[serde(default)]
    pub server_names: Vec<String>,
}

/// TLS to a cluster's endpoints.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// The name the endpoints' certificates are checked against (and sent
    /// as SNI); default: the endpoint's host as written.
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM file of CA certificates to trust; default: the system's.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// A client certificate to present (upstream mTLS), with `key`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// The client certificate's key.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

fn default_reload_interval_ms() -> u64 {
    2_000
}

/// Limits on downstream requests.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerLimits {
    /// Largest request head (request line and headers), in KiB; more is
    /// answered 431. At least 8.
    pub max_request_headers_kb: u32,
    /// Largest request body, in KiB; more is answered 413. Default: no limit.
    pub max_request_body_kb: Option<u64>,
    /// Time a client has to send a whole request head, in milliseconds;
    /// the connection is closed after (slow clients).
    pub request_header_timeout_ms: u64,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_request_headers_kb: 64,
            max_request_body_kb: None,
            request_header_timeout_ms: 30_000,
        }
    }
}

/// A set of upstream endpoints.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Unique name, referenced by routes.
    pub name: String,
    /// Endpoints as `IP:PORT` or `HOST:PORT`; host names are resolved
    /// when the proxy starts, each address becoming an endpoint, and again
    /// every `dns_refresh_ms`.
    pub endpoints: Vec<String>,
    /// How often host names among the endpoints are resolved again, in
    /// milliseconds; the endpoints follow the answers. Default 5000; 0
    /// resolves only at start.
    #[serde(default = "default_dns_refresh_ms")]
    pub dns_refresh_ms: u64,
    /// How an endpoint is picked for a request.
    #[serde(default)]
    pub lb_policy: LbPolicy,
    /// What `ring_hash` hashes; without it (or without the value in a
    /// request), an endpoint is picked at random.
    #[serde(default)]
    pub hash_on: Option<HashOn>,
    /// Connect timeout in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Idle upstream connections kept per endpoint per worker.
    #[serde(default = "default_max_idle_per_endpoint")]
    pub max_idle_per_endpoint: usize,
    /// Active HTTP health checks; default none (all endpoints healthy).
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// Passive ejection of failing endpoints; default none.
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetection>,
    /// Limits across all workers; a request over one is answered 503 with
    /// `x-weft-overflow` naming it.
    #[serde(default)]
    pub circuit_breakers: CircuitBreakers,
    /// TLS to the endpoints; default plain TCP.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
    /// Speak HTTP/2 to the endpoints (by ALPN with TLS, by prior knowledge
    /// without); default HTTP/1.1.
    #[serde(default)]
    pub http2: bool,
}

/// Load-balancing policies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// The less busy of two endpoints picked at random.
    LeastRequest,
    /// An endpoint picked at random.
    Random,
    /// A consistent-hash ring over `hash_on`: the same key goes to the same
    /// endpoint while it is healthy.
    RingHash,
}

/// The request value a consistent hash is computed from: exactly one field.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HashOn {
    /// A request header.
    #[serde(default)]
    pub header: Option<String>,
    /// A cookie.
    #[serde(default)]
    pub cookie: Option<String>,
    /// The client's IP address.
    #[serde(default)]
    pub source_ip: bool,
}

/// Active health checking: a GET to each endpoint every `interval_ms`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Path requested.
    #[serde(default = "default_health_path")]
    pub path: String,
    /// Time between checks, in milliseconds.
    #[serde(default = "default_health_interval_ms")]
    pub interval_ms: u64,
    /// A check not answered in this long failed, in milliseconds.
    #[serde(default = "default_health_timeout_ms")]
    pub timeout_ms: u64,
    /// Failed checks in a row that mark an endpoint unhealthy.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// Passed checks in a row that mark it healthy again.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
}

/// Passive outlier detection: an endpoint that fails requests in a row
/// (5xx answers, connect failures, resets) is ejected for a while.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierDetection {
    /// Failures in a row that eject the endpoint.
    #[serde(default = "default_consecutive_failures")]
    pub consecutive_failures: u32,
    /// First ejection time, in milliseconds; multiplied by the number of
    /// times the endpoint was ejected.
    #[serde(default = "default_base_ejection_ms")]
    pub base_ejection_ms: u64,
    /// Most endpoints (percent of the cluster) ejected at once.
    #[serde(default = "default_max_ejection_percent")]
    pub max_ejection_percent: u32,
}

/// Circuit-breaker limits, each across all workers; default: none.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakers {
    /// Open upstream connections.
    pub max_connections: Option<usize>,
    /// Requests waiting for a new connection.
    pub max_pending_requests: Option<usize>,
    /// Requests in flight.
    pub max_requests: Option<usize>,
    /// Retries in flight.
    pub max_retries: Option<usize>,
    /// Retries in flight as a share of the requests in flight; when set,
    /// it replaces `max_retries`.
    pub retry_budget: Option<RetryBudget>,
}

/// A limit on retries that grows with the traffic: at most `percent` of
/// the requests in flight may be retries, and never fewer than
/// `min_concurrency`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    /// Percent of the requests in flight; default 20.
    #[serde(default = "default_retry_budget_percent")]
    pub percent: u32,
    /// Retries always allowed in flight; default 3.
    #[serde(default = "default_retry_budget_min")]
    pub min_concurrency: usize,
}

impl RetryBudget {
    /// Retries allowed in flight while `active` requests are.
    pub fn limit(&self, active: usize) -> usize {
        let share = active.saturating_mul(self.percent as usize) / 100;
        share.max(self.min_concurrency)
    }
}

fn default_retry_budget_percent() -> u32 {
    20
}

fn default_retry_budget_min() -> usize {
    3
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
    /// `worker` (default): one VM per worker; `request`: a fresh VM per
    /// request.
    #[serde(default)]
    pub isolation: Isolation,
    /// Whether the request body reaches this plugin's body callbacks
    /// while it keeps the request paused in its headers callback:
    /// `hold` (default) or `deliver`.
    #[serde(default)]
    pub body_during_pause: BodyDuringPause,
    /// Resource limits of each of the plugin's VMs.
    #[serde(default)]
    pub limits: PluginLimits,
    /// The `proxy_*` host functions the plugin may call; absent, all. A
    /// call to another answers INTERNAL_FAILURE and is logged.
    #[serde(default)]
    pub allowed_host_functions: Option<Vec<String>>,
    /// The clusters the plugin may send call-outs (`proxy_http_call`) to;
    /// absent, all. A call to another answers BAD_ARGUMENT and is logged.
    #[serde(default)]
    pub allowed_clusters: Option<Vec<String>>,
    /// Load the module again whenever its file changes (the authoring
    /// loop: save the `.wasm`, the next request runs it). The new version
    /// must start and accept its configuration, or the running one stays.
    /// Default false.
    #[serde(default)]
    pub watch: bool,
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

/// What a request body does while a plugin keeps the request paused in
/// its `proxy_on_request_headers`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyDuringPause {
    /// The body waits unread: the plugin's body callbacks start after it
    /// continued the request (the default: a check that pauses on the
    /// headers decides before any body callback runs).
    #[default]
    Hold,
    /// The body is read meanwhile and given to the pausing plugin's
    /// `proxy_on_request_body` (the whole body so far each time), as
    /// Envoy does; answering CONTINUE there continues the request.
    Deliver,
}

/// Which requests share a VM of a plugin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// One VM per worker serves all its requests (the proxy-wasm model;
    /// the default).
    #[default]
    Worker,
    /// A fresh VM for every request (or TCP connection), dropped when it
    /// ends: nothing a filter keeps in memory can leak from one request
    /// to the next. It costs a VM start (instantiation and the plugin's
    /// start-up callbacks) per request.
    Request,
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

fn default_health_path() -> String {
    "/".to_string()
}

fn default_health_interval_ms() -> u64 {
    5_000
}

fn default_health_timeout_ms() -> u64 {
    1_000
}

fn default_unhealthy_threshold() -> u32 {
    2
}

fn default_healthy_threshold() -> u32 {
    1
}

fn default_consecutive_failures() -> u32 {
    5
}

fn default_base_ejection_ms() -> u64 {
    30_000
}

fn default_max_ejection_percent() -> u32 {
    50
}

fn default_drain_timeout_ms() -> u64 {
    30_000
}

fn default_dns_refresh_ms() -> u64 {
    5_000
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
    let resolve = |file: &mut PathBuf| {
        if file.is_relative() {
            *file = base.join(&*file);
        }
    };
    for plugin in &mut config.plugins {
        resolve(&mut plugin.module);
    }
    if let Some(file) = &mut config.dns.hosts_file {
        resolve(file);
    }
    if let Some(dir) = &mut config.runtime.module_cache.dir {
        resolve(dir);
    }
    if let Some(bundles) = &mut config.bundles {
        if let Some(path) = &mut bundles.path {
            resolve(path);
        }
        if let Some(control) = &mut bundles.control {
            resolve(&mut control.token_file);
            if let Some(ca) = &mut control.ca {
                resolve(ca);
            }
        }
        for key in &mut bundles.trusted_keys {
            // A key given as a file is read relative to the config too.
            let file = base.join(&*key);
            if key.ends_with(".pub") && file.exists() {
                *key = file.display().to_string();
            }
        }
    }
    for log in config
        .listeners
        .iter_mut()
        .filter_map(|l| l.access_log.as_mut())
    {
        if log.path.as_os_str() != "-" {
            resolve(&mut log.path);
        }
    }
    for tls in config.listeners.iter_mut().filter_map(|l| l.tls.as_mut()) {
        for files in &mut tls.certificates {
            resolve(&mut files.cert);
            resolve(&mut files.key);
        }
        tls.client_ca.iter_mut().for_each(resolve);
    }
    for tls in config.clusters.iter_mut().filter_map(|c| c.tls.as_mut()) {
        for file in [&mut tls.ca, &mut tls.cert, &mut tls.key]
            .into_iter()
            .flatten()
        {
            resolve(file);
        }
    }
    config.validate(path)?;
    Ok(config)
}

/// Parses configuration text; `path` is only used in error messages.
/// Does not validate: see [`ProxyConfig::validate`].
pub fn parse_proxy_config(path: &Path, text: &str) -> Result<ProxyConfig, ConfigError> {
    crate::from_yaml(text)
        .map_err(|err| ConfigError::parse(path.to_path_buf(), err.path().to_string(), err.inner()))
}

/// Splits an endpoint written `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`.
pub fn split_host_port(endpoint: &str) -> Result<(&str, u16), &'static str> {
    if let Ok(addr) = endpoint.parse::<SocketAddr>() {
        let port = addr.port();
        let host = endpoint.rsplit_once(':').map_or(endpoint, |(host, _)| {
            host.trim_start_matches('[').trim_end_matches(']')
        });
        return Ok((host, port));
    }
    let (host, port) = endpoint.rsplit_once(':').ok_or("no port")?;
    let port: u16 = port
        .parse()
        .map_err(|_| "the port is not a number from 0 to 65535")?;
    if host.is_empty() || host.contains(['[', ']', '/', ' ']) || host.contains(':') {
        return Err("not a host name or IP address");
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::RetryBudget;

    #[test]
    fn retry_budgets_grow_with_traffic_above_their_floor() {
        let budget = RetryBudget {
            percent: 20,
            min_concurrency: 3,
        };
        assert_eq!(budget.limit(0), 3);
        assert_eq!(budget.limit(10), 3);
        assert_eq!(budget.limit(100), 20);
        assert_eq!(budget.limit(usize::MAX), usize::MAX / 100);
    }
}

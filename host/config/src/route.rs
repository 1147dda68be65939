//! Routing: virtual hosts, route matches and what a matched route does.

use serde::{Deserialize, Serialize};

/// Requests whose authority matches one of `domains` are routed by `routes`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualHost {
    /// Unique within the listener; the `route.virtual_host` of a request.
    pub name: String,
    /// Host names this virtual host serves, without port: exact
    /// (`api.example.com`), a suffix wildcard (`*.example.com`), a prefix
    /// wildcard (`api.*`) or `*` for any. Exact names win, then the longest
    /// suffix wildcard, then the longest prefix wildcard, then `*`.
    #[serde(default = "any_domain")]
    pub domains: Vec<String>,
    /// Routes, tried in order; the first that matches is taken.
    pub routes: Vec<Route>,
}

fn any_domain() -> Vec<String> {
    vec!["*".to_string()]
}

/// A route: a match and exactly one action (`forward`, `redirect` or
/// `direct_response`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Name for logs, metrics and the `route_name` property; default
    /// `VHOST/INDEX`.
    #[serde(default)]
    pub name: Option<String>,
    /// What a request must look like; every given part must match.
    #[serde(default, rename = "match")]
    pub matches: RouteMatch,
    /// Send the request to a cluster.
    #[serde(default)]
    pub forward: Option<Forward>,
    /// Answer with a redirect.
    #[serde(default)]
    pub redirect: Option<Redirect>,
    /// Answer with a fixed response.
    #[serde(default)]
    pub direct_response: Option<DirectResponse>,
    /// Changes to the request headers, made after the request filters ran.
    #[serde(default)]
    pub request_headers: HeaderMutation,
    /// Changes to the response headers, made before the response filters run.
    #[serde(default)]
    pub response_headers: HeaderMutation,
    /// The plugins run on this route's requests, replacing the listener's
    /// `filters` (an empty list runs none).
    #[serde(default)]
    pub filters: Option<Vec<String>>,
}

/// Conditions on a request. Without `path`, `prefix` or `regex`, any path
/// matches. Paths are matched without the query string.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// The path equals this.
    #[serde(default)]
    pub path: Option<String>,
    /// The path starts with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The whole path matches this regular expression (Rust `regex` syntax).
    #[serde(default)]
    pub regex: Option<String>,
    /// The method is one of these; empty: any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Every one of these header conditions holds.
    #[serde(default)]
    pub headers: Vec<ValueMatch>,
    /// Every one of these query-parameter conditions holds.
    #[serde(default)]
    pub query: Vec<ValueMatch>,
}

/// A condition on a header or query parameter named `name`: exactly one of
/// `exact`, `prefix`, `suffix`, `regex`, `present`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ValueMatch {
    /// Header name (case-insensitive) or query parameter name.
    pub name: String,
    /// The value equals this.
    #[serde(default)]
    pub exact: Option<String>,
    /// The value starts with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The value ends with this.
    #[serde(default)]
    pub suffix: Option<String>,
    /// The whole value matches this regular expression.
    #[serde(default)]
    pub regex: Option<String>,
    /// `true`: it is present (any value); `false`: it is absent.
    #[serde(default)]
    pub present: Option<bool>,
    /// Match when the condition does not hold.
    #[serde(default)]
    pub invert: bool,
}

/// Forwarding to a cluster.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    /// The cluster; or give `weighted_clusters`.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Clusters picked at random in proportion to their weights (canary,
    /// blue-green, A/B).
    #[serde(default)]
    pub weighted_clusters: Vec<WeightedCluster>,
    /// A request header that, when present after the request filters ran,
    /// names the cluster instead: how a filter chooses the cluster. A name
    /// that is no cluster is answered 503.
    #[serde(default)]
    pub cluster_header: Option<String>,
    /// Replaces the matched `prefix` (or, for `path`, the whole path) of
    /// the path sent upstream.
    #[serde(default)]
    pub prefix_rewrite: Option<String>,
    /// The `Host` sent upstream.
    #[serde(default)]
    pub host_rewrite: Option<String>,
    /// Until the response headers arrive, across all tries, in
    /// milliseconds; 504 after. Default 15000; 0 disables it.
    #[serde(default = "default_route_timeout_ms")]
    pub timeout_ms: u64,
    /// Each try's share of that, in milliseconds; default: none.
    #[serde(default)]
    pub per_try_timeout_ms: Option<u64>,
    /// Longest wait for the next piece of a body, either way (the client's
    /// request body, the upstream's response body), in milliseconds: a
    /// request body that stalls is answered 408, a response body that
    /// stalls is cut off. Default 300000; 0 disables it.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Retries; default none.
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
    /// A copy of each (or some) requests to another cluster; its response
    /// is ignored.
    #[serde(default)]
    pub mirror: Option<Mirror>,
}

fn default_route_timeout_ms() -> u64 {
    15_000
}

/// A route's `idle_timeout_ms` when it gives none.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 300_000;

fn default_idle_timeout_ms() -> u64 {
    DEFAULT_IDLE_TIMEOUT_MS
}

/// One cluster of a weighted split.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedCluster {
    /// The cluster.
    pub cluster: String,
    /// Its share, relative to the others' weights.
    pub weight: u32,
}

/// When and how often a request is tried again.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first try (so `attempts: 2` is up to 3 tries).
    #[serde(default = "default_retry_attempts")]
    pub attempts: u32,
    /// Conditions: `5xx`, `gateway-error` (502, 503, 504), `reset`,
    /// `connect-failure`, `retriable-status-codes` (the `status_codes`).
    #[serde(default = "default_retry_on")]
    pub on: Vec<RetryOn>,
    /// The statuses `retriable-status-codes` retries.
    #[serde(default)]
    pub status_codes: Vec<u16>,
    /// First backoff, doubled each retry, with jitter, in milliseconds.
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: u64,
    /// Longest backoff, in milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
}

/// A condition under which a request is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum RetryOn {
    /// Any 5xx response, a reset or a connect failure.
    #[serde(rename = "5xx")]
    ServerError,
    /// 502, 503 or 504, a reset or a connect failure.
    #[serde(rename = "gateway-error")]
    GatewayError,
    /// The upstream connection broke before a response arrived.
    #[serde(rename = "reset")]
    Reset,
    /// No connection could be made.
    #[serde(rename = "connect-failure")]
    ConnectFailure,
    /// A status listed in `status_codes`.
    #[serde(rename = "retriable-status-codes")]
    RetriableStatusCodes,
}

fn default_retry_attempts() -> u32 {
    1
}

fn default_retry_on() -> Vec<RetryOn> {
    vec![RetryOn::ConnectFailure, RetryOn::Reset]
}

fn default_backoff_base_ms() -> u64 {
    25
}

fn default_backoff_max_ms() -> u64 {
    250
}

/// Shadowing requests to another cluster.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// Where the copies go.
    pub cluster: String,
    /// The share of requests copied, 0 to 100; default 100.
    #[serde(default = "default_mirror_percent")]
    pub percent: f64,
}

fn default_mirror_percent() -> f64 {
    100.0
}

/// A redirect answer. Parts not given keep the request's.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    /// `http` or `https`.
    #[serde(default)]
    pub scheme: Option<String>,
    /// The host (without port).
    #[serde(default)]
    pub host: Option<String>,
    /// The port.
    #[serde(default)]
    pub port: Option<u16>,
    /// The whole path (the query is kept unless `strip_query`).
    #[serde(default)]
    pub path: Option<String>,
    /// Replaces the matched prefix of the path.
    #[serde(default)]
    pub prefix_rewrite: Option<String>,
    /// Drop the query string.
    #[serde(default)]
    pub strip_query: bool,
    /// 301, 302, 303, 307 or 308; default 301.
    #[serde(default = "default_redirect_status")]
    pub status: u16,
}

fn default_redirect_status() -> u16 {
    301
}

/// A fixed answer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DirectResponse {
    /// The status.
    pub status: u16,
    /// The body; default empty.
    #[serde(default)]
    pub body: String,
    /// Its `Content-Type`, when there is a body; default `text/plain`.
    #[serde(default)]
    pub content_type: Option<String>,
}

/// Header changes: `remove` first, then `set` (replacing), then `add`
/// (appending).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMutation {
    /// Header names to remove.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Headers to set, replacing any of that name.
    #[serde(default)]
    pub set: Vec<HeaderValueConfig>,
    /// Headers to append.
    #[serde(default)]
    pub add: Vec<HeaderValueConfig>,
}

impl HeaderMutation {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }
}

/// A header name and value.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderValueConfig {
    /// The name.
    pub name: String,
    /// The value.
    pub value: String,
}

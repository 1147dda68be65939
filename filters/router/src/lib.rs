//! router: traffic splitting as a proxy-wasm filter.
//!
//! For each request, the first rule whose `match` holds picks a backend —
//! by weight, sticky by a header or cookie when configured, or the one a
//! tester names in the override header — and names its cluster in the
//! cluster header (`x-weft-cluster` by default), which weft reads after the
//! request filters ran when the route has `cluster_header` (Envoy's route
//! `cluster_header` works the same way). See README.md for the
//! configuration.

use std::collections::BTreeMap;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Router::default()) });
}}

/// The plugin configuration.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The request header weft reads the cluster from.
    #[serde(default = "default_cluster_header")]
    cluster_header: String,
    /// A request header naming a backend, which then wins (for testers).
    #[serde(default = "default_override_header")]
    override_header: String,
    /// A header set on the request to the backend's name, for the upstream
    /// and the access log; empty to set none.
    #[serde(default = "default_version_header")]
    version_header: String,
    /// Tried in order; the first that matches decides.
    rules: Vec<Rule>,
    /// Whether some rule looks at the path (prefix or query), or at
    /// cookies (a cookie match, a sticky cookie): only what is looked at
    /// is read from the host. Worked out once, at configure.
    #[serde(skip)]
    reads_path: bool,
    #[serde(skip)]
    reads_cookies: bool,
}

fn default_cluster_header() -> String {
    "x-weft-cluster".into()
}

fn default_override_header() -> String {
    "x-weft-version".into()
}

fn default_version_header() -> String {
    "x-weft-version".into()
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Rule {
    /// For logs and metrics.
    name: String,
    #[serde(default, rename = "match")]
    matches: Match,
    backends: Vec<Backend>,
    #[serde(default)]
    sticky: Option<Sticky>,
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
struct Match {
    #[serde(default)]
    path_prefix: Option<String>,
    /// Header name → exact value.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Cookie name → exact value.
    #[serde(default)]
    cookies: BTreeMap<String, String>,
    /// Query parameter → exact value.
    #[serde(default)]
    query: BTreeMap<String, String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Backend {
    /// The version name (`v1`, `canary`, `blue`...), what the override
    /// header and metrics use.
    name: String,
    /// The cluster requests for it go to.
    cluster: String,
    /// Its share, relative to the rule's other backends.
    weight: u32,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Sticky {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    cookie: Option<String>,
}

impl Config {
    /// What is wrong, naming the field.
    fn check(&self) -> Result<(), String> {
        if self.rules.is_empty() {
            return Err("`rules`: list at least one rule".into());
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.backends.is_empty() {
                return Err(format!("`rules[{i}].backends`: list at least one backend"));
            }
            if rule
                .backends
                .iter()
                .map(|b| u64::from(b.weight))
                .sum::<u64>()
                == 0
            {
                return Err(format!(
                    "`rules[{i}].backends`: the weights add up to 0; give one a positive weight"
                ));
            }
            for (j, backend) in rule.backends.iter().enumerate() {
                if backend.cluster.is_empty() || backend.name.is_empty() {
                    return Err(format!(
                        "`rules[{i}].backends[{j}]`: `name` and `cluster` must not be empty"
                    ));
                }
            }
            if let Some(sticky) = &rule.sticky {
                if sticky.header.is_some() == sticky.cookie.is_some() {
                    return Err(format!(
                        "`rules[{i}].sticky`: give exactly one of `header` and `cookie`"
                    ));
                }
            }
        }
        for (field, value) in [
            ("cluster_header", &self.cluster_header),
            ("override_header", &self.override_header),
        ] {
            if value.is_empty() {
                return Err(format!("`{field}` must not be empty"));
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Router {
    config: Option<std::rc::Rc<Config>>,
    /// Per rule, per backend: the metric counting its requests.
    metrics: std::rc::Rc<Vec<Vec<u32>>>,
}

impl Context for Router {}

impl RootContext for Router {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let mut config: Config = match serde_json::from_slice(&bytes) {
            Ok(config) => config,
            Err(err) => {
                log::error!("router: invalid configuration: {err}");
                return false;
            }
        };
        if let Err(problem) = config.check() {
            log::error!("router: invalid configuration: {problem}");
            return false;
        }
        let mut metrics = Vec::new();
        for rule in &config.rules {
            let mut ids = Vec::new();
            for backend in &rule.backends {
                let name = format!("router.{}.{}.requests", rule.name, backend.name);
                match proxy_wasm::hostcalls::define_metric(MetricType::Counter, &name) {
                    Ok(id) => ids.push(id),
                    Err(status) => {
                        log::error!("router: cannot define metric {name}: {status:?}");
                        return false;
                    }
                }
            }
            metrics.push(ids);
        }
        config.reads_path = config
            .rules
            .iter()
            .any(|r| r.matches.path_prefix.is_some() || !r.matches.query.is_empty());
        config.reads_cookies = config.rules.iter().any(|r| {
            !r.matches.cookies.is_empty() || r.sticky.as_ref().is_some_and(|s| s.cookie.is_some())
        });
        log::info!("router: {} rule(s) configured", config.rules.len());
        self.config = Some(std::rc::Rc::new(config));
        self.metrics = std::rc::Rc::new(metrics);
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Split {
            config: self.config.clone()?,
            metrics: self.metrics.clone(),
            context_id,
        }))
    }
}

struct Split {
    config: std::rc::Rc<Config>,
    metrics: std::rc::Rc<Vec<Vec<u32>>>,
    context_id: u32,
}

impl Context for Split {}

impl HttpContext for Split {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let config = self.config.clone();
        // Only what some rule looks at is read from the host.
        let path = if config.reads_path {
            self.get_http_request_header(":path").unwrap_or_default()
        } else {
            String::new()
        };
        let cookies = if config.reads_cookies {
            self.get_http_request_header("cookie").unwrap_or_default()
        } else {
            String::new()
        };
        let Some((r, rule)) = config
            .rules
            .iter()
            .enumerate()
            .find(|(_, rule)| self.matches(&rule.matches, &path, &cookies))
        else {
            return Action::Continue;
        };
        let chosen = self.choose(rule, &cookies);
        let backend = &rule.backends[chosen];
        self.set_http_request_header(&config.cluster_header, Some(&backend.cluster));
        if !config.version_header.is_empty() {
            self.set_http_request_header(&config.version_header, Some(&backend.name));
        }
        if let Some(id) = self.metrics.get(r).and_then(|ids| ids.get(chosen)) {
            let _ = proxy_wasm::hostcalls::increment_metric(*id, 1);
        }
        log::debug!(
            "router: request {} → rule {} backend {} (cluster {})",
            self.context_id,
            rule.name,
            backend.name,
            backend.cluster
        );
        Action::Continue
    }
}

impl Split {
    fn matches(&self, m: &Match, path: &str, cookies: &str) -> bool {
        let (path_only, query) = path.split_once('?').unwrap_or((path, ""));
        m.path_prefix
            .as_ref()
            .map_or(true, |prefix| path_only.starts_with(prefix.as_str()))
            && m.headers.iter().all(|(name, want)| {
                self.get_http_request_header(name).as_deref() == Some(want.as_str())
            })
            && m.cookies
                .iter()
                .all(|(name, want)| cookie(cookies, name) == Some(want.as_str()))
            && m.query
                .iter()
                .all(|(name, want)| query_param(query, name) == Some(want.as_str()))
    }

    /// The backend for this request: the override, else sticky by hash,
    /// else random, in proportion to the weights.
    fn choose(&self, rule: &Rule, cookies: &str) -> usize {
        // One backend: nothing to choose, nothing to read from the host.
        if rule.backends.len() == 1 {
            return 0;
        }
        let wanted = self.get_http_request_header(&self.config.override_header);
        if let Some(i) = wanted.and_then(|w| rule.backends.iter().position(|b| b.name == w)) {
            return i;
        }
        let key = rule
            .sticky
            .as_ref()
            .and_then(|sticky| match (&sticky.header, &sticky.cookie) {
                (Some(header), _) => self.get_http_request_header(header),
                (_, Some(name)) => cookie(cookies, name).map(str::to_string),
                _ => None,
            });
        let point = match key {
            Some(key) => fnv1a(key.as_bytes()),
            None => random(self.context_id, self.get_current_time()),
        };
        pick(&rule.backends, point)
    }
}

/// The backend whose share of the total weight `point` falls in.
fn pick(backends: &[Backend], point: u64) -> usize {
    let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    let mut at = point % total.max(1);
    for (i, backend) in backends.iter().enumerate() {
        let weight = u64::from(backend.weight);
        if at < weight {
            return i;
        }
        at -= weight;
    }
    backends.len() - 1
}

/// FNV-1a, then a final mix: a stable hash, the same on every proxy.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    mix(hash)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Randomness enough for a split: the clock and the context id, mixed.
fn random(context_id: u32, now: std::time::SystemTime) -> u64 {
    let nanos = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    mix(nanos ^ u64::from(context_id).rotate_left(32))
}

fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

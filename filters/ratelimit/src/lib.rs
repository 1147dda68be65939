//! ratelimit: token buckets as a proxy-wasm filter.
//!
//! Each request takes a token from the bucket of its key (a header, the
//! client's IP, or one bucket for everything). Buckets live in the host's
//! shared data, updated with compare-and-swap, so every worker (every VM
//! of the plugin's `vm_id`) draws from the same bucket. An empty bucket
//! answers 429 with `Retry-After`. See README.md for the configuration.

use std::time::{Duration, SystemTime};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Limiter::default()) });
}}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Names the buckets in shared data (and metrics); plugins with the
    /// same name share buckets.
    #[serde(default = "default_name")]
    name: String,
    /// What a bucket is per: exactly one way.
    key: Key,
    /// Tokens added per second.
    rate: f64,
    /// The bucket's size: the most requests let through at once.
    burst: u32,
    /// Only requests whose path starts with this are limited.
    #[serde(default)]
    path_prefix: Option<String>,
    /// Add `x-ratelimit-limit` / `x-ratelimit-remaining` to responses.
    #[serde(default = "yes")]
    headers: bool,
    /// `burst` as the `x-ratelimit-limit` value, and the start of every
    /// bucket's shared-data key: written once, not per request.
    #[serde(skip)]
    limit_text: String,
    #[serde(skip)]
    key_prefix: String,
}

fn default_name() -> String {
    "default".into()
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
struct Key {
    /// A request header's value (e.g. an API key or a claim another
    /// filter forwarded); requests without it share one bucket.
    #[serde(default)]
    header: Option<String>,
    /// The client's IP address.
    #[serde(default)]
    client_ip: bool,
    /// The route the request matched (the `xds.route_name` property).
    #[serde(default)]
    route: bool,
    /// One bucket for all requests.
    #[serde(default)]
    global: bool,
}

impl Config {
    fn check(&self) -> Result<(), String> {
        let ways = [
            self.key.header.is_some(),
            self.key.client_ip,
            self.key.route,
            self.key.global,
        ];
        if ways.iter().filter(|w| **w).count() != 1 {
            return Err(
                "`key`: give exactly one of `header`, `client_ip: true`, `route: true`, `global: true`"
                    .into(),
            );
        }
        if !(self.rate > 0.0 && self.rate.is_finite()) {
            return Err(format!(
                "`rate`: {} is not a positive number of tokens per second",
                self.rate
            ));
        }
        if self.burst == 0 {
            return Err("`burst`: must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Default)]
struct Limiter {
    config: std::rc::Rc<Config>,
    metrics: (u32, u32),
}

impl Context for Limiter {}

impl RootContext for Limiter {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let mut config: Config = match serde_json::from_slice(&bytes) {
            Ok(config) => config,
            Err(err) => {
                log::error!("ratelimit: invalid configuration: {err}");
                return false;
            }
        };
        if let Err(problem) = config.check() {
            log::error!("ratelimit: invalid configuration: {problem}");
            return false;
        }
        let define = |what: &str| {
            let name = format!("ratelimit.{}.{what}", config.name);
            proxy_wasm::hostcalls::define_metric(MetricType::Counter, &name)
        };
        match (define("allowed"), define("limited")) {
            (Ok(allowed), Ok(limited)) => self.metrics = (allowed, limited),
            _ => {
                log::error!("ratelimit: cannot define metrics");
                return false;
            }
        }
        config.limit_text = config.burst.to_string();
        config.key_prefix = format!("weft.ratelimit.{}.", config.name);
        self.config = std::rc::Rc::new(config);
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Take {
            config: self.config.clone(),
            metrics: self.metrics,
            remaining: None,
        }))
    }
}

struct Take {
    config: std::rc::Rc<Config>,
    metrics: (u32, u32),
    /// Tokens left after this request took one.
    remaining: Option<u32>,
}

impl Context for Take {}

/// A bucket as stored: tokens (in thousandths) and when it was last filled
/// (nanoseconds since the epoch), both little-endian u64.
fn decode(value: &[u8]) -> Option<(u64, u64)> {
    let tokens = u64::from_le_bytes(value.get(..8)?.try_into().ok()?);
    let at = u64::from_le_bytes(value.get(8..16)?.try_into().ok()?);
    Some((tokens, at))
}

fn encode(tokens: u64, at: u64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&tokens.to_le_bytes());
    out[8..].copy_from_slice(&at.to_le_bytes());
    out
}

/// What taking a token gave.
enum Taken {
    Ok { remaining: u32 },
    Empty { retry_after: Duration },
}

impl Take {
    fn key(&self) -> String {
        let config = &self.config;
        let part = if let Some(header) = &config.key.header {
            self.get_http_request_header(header).unwrap_or_default()
        } else if config.key.route {
            self.get_property(vec!["xds", "route_name"])
                .map(|r| String::from_utf8_lossy(&r).into_owned())
                .unwrap_or_default()
        } else if config.key.client_ip {
            let address = self
                .get_property(vec!["source", "address"])
                .map(|a| String::from_utf8_lossy(&a).into_owned())
                .unwrap_or_default();
            // `ip:port` or `[v6]:port`: the IP only.
            address
                .rsplit_once(':')
                .map_or(address.clone(), |(ip, _)| ip.to_string())
        } else {
            String::new()
        };
        [config.key_prefix.as_str(), &part].concat()
    }

    /// Takes a token from the bucket `key`, retrying when another worker
    /// changed the bucket meanwhile.
    fn take(&self, key: &str) -> Taken {
        let config = &self.config;
        let capacity = u64::from(config.burst) * 1000;
        let per_nano = config.rate * 1000.0 / 1e9;
        for _ in 0..16 {
            let now = self
                .get_current_time()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let (value, cas) = self.get_shared_data(key);
            let (tokens, at) = value.as_deref().and_then(decode).unwrap_or((capacity, now));
            let refill = (now.saturating_sub(at) as f64 * per_nano) as u64;
            let tokens = (tokens + refill).min(capacity);
            let outcome = if tokens >= 1000 {
                Taken::Ok {
                    remaining: ((tokens - 1000) / 1000) as u32,
                }
            } else {
                let missing = (1000 - tokens) as f64 / 1000.0;
                return Taken::Empty {
                    retry_after: Duration::from_secs_f64(missing / config.rate),
                };
            };
            // Write the new state only when it is based on what we read.
            let cas = if value.is_some() { cas } else { None };
            match proxy_wasm::hostcalls::set_shared_data(
                key,
                Some(&encode(tokens - 1000, now)),
                cas,
            ) {
                Ok(()) => return outcome,
                Err(Status::CasMismatch) => continue,
                Err(status) => {
                    log::warn!("ratelimit: shared data refused the bucket ({status:?}); letting the request through");
                    return outcome;
                }
            }
        }
        log::warn!("ratelimit: bucket {key} kept changing; letting the request through");
        Taken::Ok { remaining: 0 }
    }
}

impl HttpContext for Take {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if let Some(prefix) = &self.config.path_prefix {
            let path = self.get_http_request_header(":path").unwrap_or_default();
            if !path.starts_with(prefix.as_str()) {
                return Action::Continue;
            }
        }
        let key = self.key();
        match self.take(&key) {
            Taken::Ok { remaining } => {
                let _ = proxy_wasm::hostcalls::increment_metric(self.metrics.0, 1);
                self.remaining = Some(remaining);
                Action::Continue
            }
            Taken::Empty { retry_after } => {
                let _ = proxy_wasm::hostcalls::increment_metric(self.metrics.1, 1);
                let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                let retry = seconds.to_string();
                let mut headers = vec![("retry-after", retry.as_str())];
                if self.config.headers {
                    headers.push(("x-ratelimit-limit", self.config.limit_text.as_str()));
                    headers.push(("x-ratelimit-remaining", "0"));
                }
                self.send_http_response(429, headers, Some(b"rate limited\n"));
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if let (true, Some(remaining)) = (self.config.headers, self.remaining) {
            self.set_http_response_header("x-ratelimit-limit", Some(&self.config.limit_text));
            self.set_http_response_header("x-ratelimit-remaining", Some(&remaining.to_string()));
        }
        Action::Continue
    }
}

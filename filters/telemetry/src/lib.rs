//! telemetry: what a service mesh tells about each call, as a proxy-wasm
//! filter. For every request it counts requests, durations and bytes per
//! route, cluster and status class as metrics (labels ride in the names as
//! `;key=value`, which weft's `/metrics` turns into Prometheus labels),
//! logs one JSON line built from the request's properties, and makes sure
//! the request carries a W3C `traceparent`. See README.md.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Telemetry::default()) });
}}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Prefix of every metric name.
    #[serde(default = "default_prefix")]
    prefix: String,
    /// Log a JSON line per request (at INFO).
    #[serde(default = "yes")]
    access_log: bool,
    /// Add a `traceparent` to requests without one.
    #[serde(default = "yes")]
    traceparent: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            prefix: default_prefix(),
            access_log: true,
            traceparent: true,
        }
    }
}

fn default_prefix() -> String {
    "telemetry".into()
}

fn yes() -> bool {
    true
}

/// Metric ids by full name, defined on first use.
type Metrics = Rc<RefCell<HashMap<String, u32>>>;

#[derive(Default)]
struct Telemetry {
    config: Rc<Config>,
    metrics: Metrics,
}

impl Context for Telemetry {}

impl RootContext for Telemetry {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let config = if bytes.is_empty() {
            Config::default()
        } else {
            match serde_json::from_slice::<Config>(&bytes) {
                Ok(config) => config,
                Err(err) => {
                    log::error!("telemetry: invalid configuration: {err}");
                    return false;
                }
            }
        };
        if config.prefix.is_empty() || config.prefix.contains(';') {
            log::error!(
                "telemetry: invalid configuration: `prefix` must be a non-empty name without `;`"
            );
            return false;
        }
        self.config = Rc::new(config);
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Observe {
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            start: None,
        }))
    }
}

struct Observe {
    config: Rc<Config>,
    metrics: Metrics,
    start: Option<SystemTime>,
}

impl Context for Observe {}

impl HttpContext for Observe {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let now = self.get_current_time();
        self.start = Some(now);
        if self.config.traceparent && self.get_http_request_header("traceparent").is_none() {
            let seed = now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let (a, b, c) = (mix(seed), mix(seed ^ 1), mix(seed ^ 2).max(1));
            let value = format!("00-{a:016x}{b:016x}-{c:016x}-01");
            self.set_http_request_header("traceparent", Some(&value));
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let text = |path: Vec<&str>| {
            self.get_property(path)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        let int = |path: Vec<&str>| {
            self.get_property(path).and_then(|v| {
                v.get(..8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            })
        };
        let route = text(vec!["xds", "route_name"]).unwrap_or_else(|| "none".into());
        let cluster = text(vec!["xds", "cluster_name"]).unwrap_or_else(|| "none".into());
        let status = int(vec!["response", "code"]);
        let class = status.map_or("none".to_string(), |s| format!("{}xx", s / 100));
        let duration_ms = self.start.and_then(|start| {
            self.get_current_time()
                .duration_since(start)
                .ok()
                .map(|d| d.as_millis() as u64)
        });
        let request_bytes = int(vec!["request", "size"]).unwrap_or(0).max(0) as u64;
        let response_bytes = int(vec!["response", "size"]).unwrap_or(0).max(0) as u64;

        let labels = format!(";route={route};cluster={cluster}");
        let prefix = &self.config.prefix;
        self.add(
            MetricType::Counter,
            &format!("{prefix}.requests{labels};class={class}"),
            1,
        );
        if let Some(ms) = duration_ms {
            self.add(
                MetricType::Histogram,
                &format!("{prefix}.request_duration_ms{labels}"),
                ms,
            );
        }
        self.add(
            MetricType::Counter,
            &format!("{prefix}.request_bytes{labels}"),
            request_bytes,
        );
        self.add(
            MetricType::Counter,
            &format!("{prefix}.response_bytes{labels}"),
            response_bytes,
        );

        if self.config.access_log {
            let line = serde_json::json!({
                "source": text(vec!["source", "address"]),
                "destination": text(vec!["destination", "address"]),
                "protocol": text(vec!["request", "protocol"]),
                "method": text(vec!["request", "method"]),
                "host": text(vec!["request", "host"]),
                "path": text(vec!["request", "path"]),
                "status": status,
                "duration_ms": duration_ms,
                "request_bytes": request_bytes,
                "response_bytes": response_bytes,
                "route": route,
                "cluster": cluster,
                "request_id": text(vec!["request", "id"]),
                "traceparent": self.get_http_request_header("traceparent"),
                "peer": text(vec!["connection", "uri_san_peer_certificate"]),
            });
            log::info!("{line}");
        }
    }
}

impl Observe {
    /// Adds `value` to the metric `name` (a counter is incremented, a
    /// histogram records it), defining it on first use.
    fn add(&self, kind: MetricType, name: &str, value: u64) {
        let known = self.metrics.borrow().get(name).copied();
        let id = match known {
            Some(id) => id,
            None => match proxy_wasm::hostcalls::define_metric(kind, name) {
                Ok(id) => {
                    self.metrics.borrow_mut().insert(name.to_string(), id);
                    id
                }
                Err(status) => {
                    log::warn!("telemetry: cannot define metric {name}: {status:?}");
                    return;
                }
            },
        };
        let _ = match kind {
            MetricType::Histogram => proxy_wasm::hostcalls::record_metric(id, value),
            _ => proxy_wasm::hostcalls::increment_metric(id, value as i64),
        };
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

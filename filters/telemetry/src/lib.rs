//! telemetry: what a service mesh tells about each call, as a proxy-wasm
//! filter. For every request it counts requests, durations and bytes per
//! route, cluster and status class as metrics (labels ride in the names as
//! `;key=value`, which weft's `/metrics` turns into Prometheus labels),
//! logs one JSON line built from the request's properties, and makes sure
//! the request carries a W3C `traceparent`. See README.md.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

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

/// Metric ids by label set (route and cluster), defined on first use:
/// a request whose labels were seen before formats no name.
type Metrics = Rc<RefCell<Series>>;

/// The series seen so far, by `route NUL cluster`, and a buffer the key of
/// the request at hand is built in (no allocation unless the labels are new).
#[derive(Default)]
struct Series {
    by_labels: HashMap<Vec<u8>, Ids, BuildHasherDefault<Fnv>>,
    key: Vec<u8>,
}

/// The ids of one route and cluster's metrics.
#[derive(Default)]
struct Ids {
    /// `requests`, by status class (hundreds of the status, if any).
    requests: Vec<(Option<i64>, u32)>,
    duration: Option<u32>,
    request_bytes: Option<u32>,
    response_bytes: Option<u32>,
}

/// FNV-1a: the keys are route and cluster names from the proxy's own
/// configuration, short and not chosen by clients, so a keyed hash buys
/// nothing here and costs more than the lookup.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[derive(Default)]
struct Telemetry {
    config: Rc<Config>,
    metrics: Metrics,
}

impl Context for Telemetry {}

impl RootContext for Telemetry {
    fn on_configure(&mut self, _size: usize) -> bool {
        // Log at the host's level: an access-log line it would drop is not
        // even built.
        if let Ok(level) = proxy_wasm::hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
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
        }))
    }
}

struct Observe {
    config: Rc<Config>,
    metrics: Metrics,
}

impl Context for Observe {}

impl HttpContext for Observe {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if self.config.traceparent && self.get_http_request_header("traceparent").is_none() {
            let seed = self
                .get_current_time()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let (a, b, c) = (mix(seed), mix(seed ^ 1), mix(seed ^ 2).max(1));
            let value = traceparent(a, b, c);
            // Hex digits and dashes: always UTF-8.
            if let Ok(value) = std::str::from_utf8(&value) {
                self.set_http_request_header("traceparent", Some(value));
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let route = property(b"xds\0route_name");
        let cluster = property(b"xds\0cluster_name");
        let (route, cluster) = (
            route.as_deref().unwrap_or(b"none"),
            cluster.as_deref().unwrap_or(b"none"),
        );
        let status = int_property(b"response\0code");
        let class = status.map(|s| s / 100);
        // The host's own measure, from the request's arrival: no clock
        // read at each end.
        let duration_ms = int_property(b"request\0duration").map(|ns| ns.max(0) as u64 / 1_000_000);
        let request_bytes = int_property(b"request\0size").unwrap_or(0).max(0) as u64;
        let response_bytes = int_property(b"response\0size").unwrap_or(0).max(0) as u64;

        let mut metrics = self.metrics.borrow_mut();
        let Series { by_labels, key } = &mut *metrics;
        key.clear();
        key.extend_from_slice(route);
        key.push(0);
        key.extend_from_slice(cluster);
        if !by_labels.contains_key(key.as_slice()) {
            by_labels.insert(key.clone(), Ids::default());
        }
        let Some(ids) = by_labels.get_mut(key.as_slice()) else {
            return;
        };
        let names = Names {
            prefix: &self.config.prefix,
            route,
            cluster,
        };
        let requests = match ids.requests.iter().find(|(c, _)| *c == class) {
            Some((_, id)) => Some(*id),
            None => {
                let class_label = class.map_or("none".to_string(), |c| format!("{c}xx"));
                let name = format!("{};class={class_label}", names.of("requests"));
                let id = define(MetricType::Counter, &name);
                if let Some(id) = id {
                    ids.requests.push((class, id));
                }
                id
            }
        };
        increment(requests, 1);
        if let Some(ms) = duration_ms {
            let id = defined(&mut ids.duration, MetricType::Histogram, || {
                names.of("request_duration_ms")
            });
            if let Some(id) = id {
                let _ = proxy_wasm::hostcalls::record_metric(id, ms);
            }
        }
        let id = defined(&mut ids.request_bytes, MetricType::Counter, || {
            names.of("request_bytes")
        });
        increment(id, request_bytes);
        let id = defined(&mut ids.response_bytes, MetricType::Counter, || {
            names.of("response_bytes")
        });
        increment(id, response_bytes);
        drop(metrics);

        if self.config.access_log {
            let text =
                |path: &[u8]| property(path).map(|v| String::from_utf8_lossy(&v).into_owned());
            let line = serde_json::json!({
                "source": text(b"source\0address"),
                "destination": text(b"destination\0address"),
                "protocol": text(b"request\0protocol"),
                "method": text(b"request\0method"),
                "host": text(b"request\0host"),
                "path": text(b"request\0path"),
                "status": status,
                "duration_ms": duration_ms,
                "request_bytes": request_bytes,
                "response_bytes": response_bytes,
                "route": String::from_utf8_lossy(route),
                "cluster": String::from_utf8_lossy(cluster),
                "request_id": text(b"request\0id"),
                "traceparent": self.get_http_request_header("traceparent"),
                "peer": text(b"connection\0uri_san_peer_certificate"),
            });
            log::info!("{line}");
        }
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
}

/// A property, by its path already in the ABI's form (segments separated
/// by NUL): the SDK's `get_property` builds that form in two allocations
/// per read, and this filter reads six properties per request.
fn property(path: &[u8]) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a buffer it allocated through this module's
    // `proxy_on_memory_allocate` (a `Vec<u8>` of capacity `size`) and its
    // size; it is taken back as that `Vec` exactly once.
    unsafe {
        let status = proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size);
        (status == 0 && !data.is_null()).then(|| Vec::from_raw_parts(data, size, size))
    }
}

/// An integer property (8 bytes, little-endian).
fn int_property(path: &[u8]) -> Option<i64> {
    let bytes = property(path)?;
    Some(i64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// How the metric names of one label set are spelled.
struct Names<'a> {
    prefix: &'a str,
    route: &'a [u8],
    cluster: &'a [u8],
}

impl Names<'_> {
    /// `{prefix}.{name}` with the route and cluster labels.
    fn of(&self, name: &str) -> String {
        format!(
            "{}.{name};route={};cluster={}",
            self.prefix,
            String::from_utf8_lossy(self.route),
            String::from_utf8_lossy(self.cluster)
        )
    }
}

/// Defines a metric; `None` (logged) if the host refuses it.
fn define(kind: MetricType, name: &str) -> Option<u32> {
    match proxy_wasm::hostcalls::define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(status) => {
            log::warn!("telemetry: cannot define metric {name}: {status:?}");
            None
        }
    }
}

/// The metric id kept in `id`, defining the metric `name` on first use.
/// A refusal is not kept: the next request asks again (and logs again).
fn defined(id: &mut Option<u32>, kind: MetricType, name: impl FnOnce() -> String) -> Option<u32> {
    if id.is_none() {
        *id = define(kind, &name());
    }
    *id
}

fn increment(id: Option<u32>, value: u64) {
    if let Some(id) = id {
        let _ = proxy_wasm::hostcalls::increment_metric(id, value as i64);
    }
}

/// A W3C `traceparent` (version 00, sampled) with trace id `a b` and
/// parent id `c`, written on the stack: no allocation, and no per-digit
/// `String::push` (a capacity check and a UTF-8 encoding for each of 48
/// digits was most of this filter's request-time cost).
fn traceparent(a: u64, b: u64, c: u64) -> [u8; TRACEPARENT_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-01";
    for (word, at) in [(a, 3), (b, 19), (c, 36)] {
        for (i, digit) in out[at..at + 16].iter_mut().enumerate() {
            *digit = HEX[((word >> ((15 - i) * 4)) & 0xf) as usize];
        }
    }
    out
}

/// `00-` + 32 hex digits + `-` + 16 + `-01`.
const TRACEPARENT_LEN: usize = 55;

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

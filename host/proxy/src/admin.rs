//! The admin listener: `/ready`, `/metrics` (Prometheus text format) and
//! `/plugins`. It runs on its own thread so that scraping never competes
//! with a worker's requests.

use std::convert::Infallible;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use weft_abi::{HISTOGRAM_BOUNDS, Metric, MetricValue, MetricsReader};

use crate::chain::PluginStats;
use crate::cluster::{ClusterShared, ClusterStats};
use crate::observe::ListenerStats;

/// What the admin endpoints show.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) metrics: MetricsReader,
    /// Each plugin's name and VM counters.
    /// `/plugins`: one JSON object per plugin.
    pub(crate) plugins: Arc<crate::Swapper>,
    /// Clusters, for `/clusters` and their metrics.
    pub(crate) clusters: Vec<Arc<ClusterShared>>,
    /// Each listener's name and request metrics.
    pub(crate) listeners: Vec<(String, Arc<ListenerStats>)>,
    /// `/config`: the effective configuration.
    pub(crate) config: serde_json::Value,
    /// Each worker's queue of foreign callbacks to deliver.
    pub(crate) foreign: Vec<tokio::sync::mpsc::UnboundedSender<crate::worker::ForeignCall>>,
}

/// Binds `address` and serves the admin endpoints until `shutdown`.
pub(crate) fn start(
    address: SocketAddr,
    state: AdminState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = std::thread::Builder::new()
        .name("weft-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((tcp, _)) = accepted else { continue };
                            let state = state.clone();
                            tokio::spawn(async move {
                                let service = service_fn(move |request: Request<Incoming>| {
                                    let state = state.clone();
                                    async move {
                                        if request.method() == http::Method::POST {
                                            return Ok::<_, Infallible>(post(&state, request).await);
                                        }
                                        Ok(route(&state, &request))
                                    }
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(tcp), service)
                                    .await;
                            });
                        }
                        _ = shutdown.wait_for(|stop| *stop) => break,
                    }
                }
            });
        })?;
    Ok((bound, handle))
}

/// The most bytes of arguments a foreign callback is handed.
const MAX_FOREIGN_ARGUMENTS: usize = 1 << 20;

/// `POST /plugins/NAME/foreign/ID` with the arguments as the body: calls
/// the plugin's `proxy_on_foreign_function(root, ID, size)` on every
/// worker's VM (started if need be); the arguments are its
/// FOREIGN_FUNCTION_ARGUMENTS buffer. Answers 202 once every worker was
/// told; 404 for an unknown (or unloaded) plugin, 400 for a bad id, 413
/// for arguments over 1 MiB.
async fn post(state: &AdminState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (name, id) = match parts.as_slice() {
        ["plugins", name, "foreign", id] => (name.to_string(), id.to_string()),
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                format!("no POST endpoint at {path}; try /plugins/NAME/foreign/ID\n"),
            );
        }
    };
    let Ok(function_id) = id.parse::<u32>() else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("foreign callback id `{id}` is not a number from 0 to 4294967295\n"),
        );
    };
    let Some(slot) = state.plugins.loaded_slot(&name) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no loaded plugin is named `{name}`; see /plugins\n"),
        );
    };
    let limited = http_body_util::Limited::new(request.into_body(), MAX_FOREIGN_ARGUMENTS);
    let arguments = match http_body_util::BodyExt::collect(limited).await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the arguments could not be read or are over {MAX_FOREIGN_ARGUMENTS} bytes\n"
                ),
            );
        }
    };
    let arguments: Arc<[u8]> = Arc::from(arguments.as_ref());
    let told = state
        .foreign
        .iter()
        .filter(|worker| worker.send((slot, function_id, arguments.clone())).is_ok())
        .count();
    text(
        StatusCode::ACCEPTED,
        format!(
            "proxy_on_foreign_function({function_id}) of `{name}` with {} bytes of arguments: queued on {told} worker(s)\n",
            arguments.len()
        ),
    )
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    response
}

fn route(state: &AdminState, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match request.uri().path() {
        "/ready" => (StatusCode::OK, "text/plain", "ready\n".to_string()),
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            render_listener_metrics(&state.listeners)
                + &render_host_metrics(&state.plugins.plugin_stats())
                + &render_bundle_metrics(
                    &state.plugins.bundle_status(),
                    state.plugins.module_counts(),
                )
                + &render_cluster_metrics(&state.clusters)
                + &render_metrics(&state.metrics.metrics()),
        ),
        "/config" => (
            StatusCode::OK,
            "application/json",
            format!("{:#}\n", state.config),
        ),
        "/clusters" => (
            StatusCode::OK,
            "application/json",
            format!("{:#}\n", clusters_json(&state.clusters)),
        ),
        "/plugins" => (
            StatusCode::OK,
            "application/json",
            format!("{:#}\n", state.plugins.describe()),
        ),
        "/bundle" => (
            StatusCode::OK,
            "application/json",
            format!(
                "{:#}\n",
                serde_json::to_value(state.plugins.bundle_status()).unwrap_or_default()
            ),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /ready, /metrics, /config, /clusters, /plugins or /bundle\n"
                .to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}

/// A plugin's metric name as Prometheus accepts it: characters outside
/// `[a-zA-Z0-9_:]` become `_`, and a leading digit gets a `_` before it.
fn metric_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, '_');
    }
    out
}

/// How bundles fared.
fn render_bundle_metrics(status: &crate::BundleStatus, (compiled, hits): (u64, u64)) -> String {
    format!(
        "# HELP weft_bundle_applies_total Bundles applied.\n# TYPE weft_bundle_applies_total counter\nweft_bundle_applies_total {}\n# HELP weft_bundle_refusals_total Bundles refused (the running version stayed).\n# TYPE weft_bundle_refusals_total counter\nweft_bundle_refusals_total {}\n# HELP weft_module_compiles_total Plugin modules compiled.\n# TYPE weft_module_compiles_total counter\nweft_module_compiles_total {compiled}\n# HELP weft_module_cache_hits_total Plugin loads that reused a compiled module.\n# TYPE weft_module_cache_hits_total counter\nweft_module_cache_hits_total {hits}\n",
        status.applies, status.refusals
    )
}

/// Picks one counter out of a plugin's stats.
type Counter = fn(&PluginStats) -> &AtomicU64;

/// weft's own metrics about plugins, labelled by plugin name.
fn render_host_metrics(plugins: &[(String, Arc<PluginStats>)]) -> String {
    let mut out = String::new();
    let families: [(&str, &str, Counter); 6] = [
        ("weft_plugin_traps_total", "Callbacks that trapped.", |s| {
            &s.traps
        }),
        (
            "weft_plugin_swaps_total",
            "New versions that replaced the running one.",
            |s| &s.swaps,
        ),
        (
            "weft_plugin_swap_failures_total",
            "New versions refused (the running one stayed).",
            |s| &s.swap_failures,
        ),
        (
            "weft_plugin_timeouts_total",
            "Callbacks stopped at their CPU deadline.",
            |s| &s.timeouts,
        ),
        (
            "weft_plugin_vm_starts_total",
            "VMs started on workers (first starts and restarts).",
            |s| &s.vm_starts,
        ),
        (
            "weft_plugin_vm_start_failures_total",
            "VM starts that failed.",
            |s| &s.vm_start_failures,
        ),
    ];
    for (name, help, field) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (plugin, stats) in plugins {
            let value = field(stats).load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{plugin=\"{}\"}} {value}", label(plugin));
        }
    }
    let name = "weft_plugin_version";
    let _ = writeln!(
        out,
        "# HELP {name} The version new streams run: 0 as started, one more per swap.\n# TYPE {name} gauge"
    );
    for (plugin, stats) in plugins {
        let value = stats.version.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}{{plugin=\"{}\"}} {value}", label(plugin));
    }
    let name = "weft_plugin_memory_bytes";
    let _ = writeln!(
        out,
        "# HELP {name} Linear memory of the plugin's VMs, over all workers.\n# TYPE {name} gauge"
    );
    for (plugin, stats) in plugins {
        let value = stats.memory_bytes.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}{{plugin=\"{}\"}} {value}", label(plugin));
    }
    let name = "weft_plugin_callback_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} How long guest callbacks ran (a sample: one callback in {}).\n# TYPE {name} histogram",
        weft_abi::CALLBACK_SAMPLE
    );
    for (plugin, stats) in plugins {
        let labels = format!("plugin=\"{}\"", label(plugin));
        stats.callback_durations.render(&mut out, name, &labels);
    }
    let name = "weft_plugin_retired_vms";
    let _ = writeln!(
        out,
        "# HELP {name} VMs of earlier versions still finishing their streams.\n# TYPE {name} gauge"
    );
    for (plugin, stats) in plugins {
        let value = stats.retired_vms.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}{{plugin=\"{}\"}} {value}", label(plugin));
    }
    out
}

/// Reads one value out of a listener's stats.
type ListenerValue = fn(&ListenerStats) -> i64;

/// Downstream request metrics, labelled by listener.
fn render_listener_metrics(listeners: &[(String, Arc<ListenerStats>)]) -> String {
    let mut out = String::new();
    let name = "weft_downstream_responses_total";
    let _ = writeln!(
        out,
        "# HELP {name} Responses sent to clients by status class.\n# TYPE {name} counter"
    );
    for (listener, stats) in listeners {
        for (i, count) in stats.responses_by_class.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}{{listener=\"{}\",class=\"{}xx\"}} {}",
                label(listener),
                i + 1,
                count.load(Ordering::Relaxed)
            );
        }
    }
    let simple: [(&str, &str, &str, ListenerValue); 3] = [
        (
            "weft_downstream_closed_total",
            "counter",
            "Requests that got no response (a filter or the client closed the stream).",
            |s| i64::try_from(s.closed.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        ),
        (
            "weft_downstream_connections_total",
            "counter",
            "Connections accepted.",
            |s| i64::try_from(s.connections.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        ),
        (
            "weft_downstream_active_connections",
            "gauge",
            "Connections open now.",
            |s| s.active_connections.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, value) in simple {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (listener, stats) in listeners {
            let _ = writeln!(
                out,
                "{name}{{listener=\"{}\"}} {}",
                label(listener),
                value(stats)
            );
        }
    }
    let name = "weft_downstream_request_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} From request arrival to the end of the response.\n# TYPE {name} histogram"
    );
    for (listener, stats) in listeners {
        let labels = format!("listener=\"{}\"", label(listener));
        stats.durations.render(&mut out, name, &labels);
    }
    out
}

/// Picks one counter out of a cluster's stats.
type ClusterCounter = fn(&ClusterStats) -> &AtomicU64;

/// Per-cluster counters and endpoint health, labelled by cluster.
fn render_cluster_metrics(clusters: &[Arc<ClusterShared>]) -> String {
    let mut out = String::new();
    let families: [(&str, &str, ClusterCounter); 7] = [
        (
            "weft_cluster_upstream_requests_total",
            "Requests routed to the cluster (including those refused by a circuit breaker).",
            |s| &s.requests,
        ),
        ("weft_cluster_retries_total", "Retries sent.", |s| {
            &s.retries
        }),
        (
            "weft_cluster_timeouts_total",
            "Requests that timed out waiting for response headers.",
            |s| &s.timeouts,
        ),
        (
            "weft_cluster_ejections_total",
            "Endpoints ejected by outlier detection.",
            |s| &s.ejections,
        ),
        (
            "weft_cluster_overflows_total",
            "Requests or retries refused by a circuit breaker.",
            |s| &s.overflows,
        ),
        (
            "weft_cluster_dns_changes_total",
            "DNS refreshes that changed the endpoints.",
            |s| &s.dns_changes,
        ),
        (
            "weft_cluster_dns_failures_total",
            "DNS refreshes that failed (the endpoints were kept).",
            |s| &s.dns_failures,
        ),
    ];
    for (name, help, field) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for cluster in clusters {
            let value = field(&cluster.stats).load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}{{cluster=\"{}\"}} {value}",
                label(&cluster.name)
            );
        }
    }
    let name = "weft_cluster_upstream_responses_total";
    let _ = writeln!(
        out,
        "# HELP {name} Responses from the cluster by status class.\n# TYPE {name} counter"
    );
    for cluster in clusters {
        for (i, count) in cluster.stats.responses_by_class.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}{{cluster=\"{}\",class=\"{}xx\"}} {}",
                label(&cluster.name),
                i + 1,
                count.load(Ordering::Relaxed)
            );
        }
    }
    let name = "weft_cluster_upstream_response_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} From sending a try to its response headers.\n# TYPE {name} histogram"
    );
    for cluster in clusters {
        let labels = format!("cluster=\"{}\"", label(&cluster.name));
        cluster
            .stats
            .upstream_durations
            .render(&mut out, name, &labels);
    }
    let name = "weft_cluster_endpoint_available";
    let _ = writeln!(
        out,
        "# HELP {name} 1 if the endpoint takes requests (healthy, not ejected).\n# TYPE {name} gauge"
    );
    for cluster in clusters {
        for endpoint in &cluster.members().endpoints {
            let _ = writeln!(
                out,
                "{name}{{cluster=\"{}\",endpoint=\"{}\"}} {}",
                label(&cluster.name),
                endpoint.addr,
                u8::from(cluster.available(endpoint))
            );
        }
    }
    out
}

/// `/clusters`: each cluster's endpoints and their state.
fn clusters_json(clusters: &[Arc<ClusterShared>]) -> serde_json::Value {
    clusters
        .iter()
        .map(|cluster| {
            let endpoints: Vec<serde_json::Value> = cluster
                .members()
                .endpoints
                .iter()
                .map(|endpoint| {
                    serde_json::json!({
                        "address": endpoint.addr.to_string(),
                        "healthy": endpoint.healthy.load(Ordering::Relaxed),
                        "ejected": cluster.ejected(endpoint),
                        "available": cluster.available(endpoint),
                    })
                })
                .collect();
            serde_json::json!({
                "name": &*cluster.name,
                "lb_policy": cluster.config.lb_policy,
                "health_checked": cluster.config.health_check.is_some(),
                "endpoints": endpoints,
            })
        })
        .collect()
}

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A plugin metric's name split into a Prometheus name and labels. A
/// name may carry labels after semicolons, `base;key=value;key=value`
/// (the way Envoy's filters tag stats): `base` becomes the metric name,
/// each pair a label.
fn split_labels(name: &str) -> (String, Vec<(String, String)>) {
    let mut parts = name.split(';');
    let base = metric_name(parts.next().unwrap_or_default());
    let labels = parts
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (metric_name(k), label(v)))
        .collect();
    (base, labels)
}

/// `{k="v",...}` with `extra` appended (e.g. `le`), or nothing.
fn braces(labels: &[(String, String)], extra: Option<(&str, &str)>) -> String {
    let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    if let Some((k, v)) = extra {
        pairs.push(format!("{k}=\"{v}\""));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

/// Plugin metrics in the Prometheus text exposition format; metrics that
/// share a base name (differing in labels) form one family.
fn render_metrics(metrics: &[Arc<Metric>]) -> String {
    let mut families: Vec<(String, &'static str, Vec<String>)> = Vec::new();
    for metric in metrics {
        let (name, labels) = split_labels(&metric.name);
        let (kind, lines) = match metric.read() {
            MetricValue::Value(value) => {
                let kind = match metric.kind {
                    weft_abi::MetricKind::Counter => "counter",
                    _ => "gauge",
                };
                (
                    kind,
                    vec![format!("{name}{} {value}", braces(&labels, None))],
                )
            }
            MetricValue::Histogram {
                cumulative,
                sum,
                count,
            } => {
                let mut lines: Vec<String> = HISTOGRAM_BOUNDS
                    .iter()
                    .zip(&cumulative)
                    .map(|(bound, n)| {
                        let bound = bound.to_string();
                        format!("{name}_bucket{} {n}", braces(&labels, Some(("le", &bound))))
                    })
                    .collect();
                lines.push(format!(
                    "{name}_bucket{} {count}",
                    braces(&labels, Some(("le", "+Inf")))
                ));
                lines.push(format!("{name}_sum{} {sum}", braces(&labels, None)));
                lines.push(format!("{name}_count{} {count}", braces(&labels, None)));
                ("histogram", lines)
            }
        };
        match families
            .iter_mut()
            .find(|(n, k, _)| *n == name && *k == kind)
        {
            Some((_, _, existing)) => existing.extend(lines),
            None => families.push((name, kind, lines)),
        }
    }
    let mut out = String::new();
    for (name, kind, lines) in families {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semicolon_pairs_become_labels() {
        let (name, labels) = split_labels("telemetry.requests;route=shop/0;class=2xx");
        assert_eq!(name, "telemetry_requests");
        assert_eq!(
            braces(&labels, Some(("le", "5"))),
            "{route=\"shop/0\",class=\"2xx\",le=\"5\"}"
        );
        assert_eq!(split_labels("plain").1, vec![]);
    }

    #[test]
    fn names_are_made_valid() {
        assert_eq!(metric_name("hello.requests-total"), "hello_requests_total");
        assert_eq!(metric_name("2xx"), "_2xx");
        assert_eq!(metric_name("ok:name_1"), "ok:name_1");
    }
}

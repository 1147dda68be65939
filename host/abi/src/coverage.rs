//! What the proxy-wasm specification asks of a host, per ABI version, and
//! how much of it weft serves: the source of `docs/abi-coverage.md`.
//!
//! The table is transcribed from the specification's `abi-versions/v0.1.0`,
//! `v0.2.0` and `v0.2.1` documents. A host function's status comes from
//! the runtime's own registration table, a callback's from the list of
//! callbacks [`crate::Vm`] calls, so the document cannot claim more than
//! the code does.

use std::fmt::Write;

use crate::abi::AbiVersion::{self, V0_1_0, V0_2_0, V0_2_1};
use crate::runtime::Runtime;
use crate::vm::CALLBACKS_CALLED;

/// Whether the host provides it or the module does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A function the host exposes to the module.
    HostFunction,
    /// A function the module exports and the host calls.
    Callback,
}

/// One function of the specification.
#[derive(Debug, Clone, Copy)]
pub struct SpecFunction {
    /// Host function or callback.
    pub kind: Kind,
    /// Its name; WASI functions carry their module (`wasi_snapshot_preview1.fd_write`).
    pub name: &'static str,
    /// The ABI versions that define it (with this signature).
    pub versions: &'static [AbiVersion],
    /// Parameter types, comma-separated (`i32,i64`); empty for none.
    pub params: &'static str,
    /// Result type; empty for none.
    pub result: &'static str,
}

const fn entry(
    kind: Kind,
    name: &'static str,
    versions: &'static [AbiVersion],
    params: &'static str,
    result: &'static str,
) -> SpecFunction {
    SpecFunction {
        kind,
        name,
        versions,
        params,
        result,
    }
}

/// Every host function and callback of ABI 0.1.0, 0.2.0 and 0.2.1.
pub const SPEC: &[SpecFunction] = &[
    entry(
        Kind::HostFunction,
        "proxy_done",
        &[V0_1_0, V0_2_0, V0_2_1],
        "",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_set_effective_context",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_get_configuration",
        &[V0_1_0],
        "i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_log",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "wasi_snapshot_preview1.fd_write",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_get_log_level",
        &[V0_2_1],
        "i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_get_current_time_nanoseconds",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "wasi_snapshot_preview1.clock_time_get",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i64,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_set_tick_period_milliseconds",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "wasi_snapshot_preview1.random_get",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "wasi_snapshot_preview1.environ_sizes_get",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "wasi_snapshot_preview1.environ_get",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_set_buffer_bytes",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_get_buffer_bytes",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_get_buffer_status",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_get_header_map_size",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_get_header_map_pairs",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_set_header_map_pairs",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_get_header_map_value",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_add_header_map_value",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_replace_header_map_value",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_remove_header_map_value",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_continue_stream",
        &[V0_2_0, V0_2_1],
        "i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_close_stream",
        &[V0_2_0, V0_2_1],
        "i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_get_status",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_send_local_response",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32,i32,i32,i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_continue_request",
        &[V0_1_0],
        "",
        "",
    ),
    entry(
        Kind::HostFunction,
        "proxy_continue_response",
        &[V0_1_0],
        "",
        "",
    ),
    entry(
        Kind::HostFunction,
        "proxy_clear_route_cache",
        &[V0_1_0],
        "",
        "",
    ),
    entry(
        Kind::HostFunction,
        "proxy_http_call",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32,i32,i32,i32,i32,i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_grpc_call",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32,i32,i32,i32,i32,i32,i32,i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_grpc_stream",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32,i32,i32,i32,i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_grpc_send",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_grpc_cancel",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_grpc_close",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_set_shared_data",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_get_shared_data",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_register_shared_queue",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_resolve_shared_queue",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_enqueue_shared_queue",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_dequeue_shared_queue",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_define_metric",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_record_metric",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i64",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_increment_metric",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i64",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_get_metric",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_get_property",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_set_property",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "proxy_call_foreign_function",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32,i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "wasi_snapshot_preview1.args_sizes_get",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "wasi_snapshot_preview1.args_get",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32",
        "i32",
    ),
    entry(
        Kind::HostFunction,
        "wasi_snapshot_preview1.proc_exit",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32",
        "",
    ),
    entry(
        Kind::Callback,
        "_initialize",
        &[V0_1_0, V0_2_0, V0_2_1],
        "",
        "",
    ),
    entry(
        Kind::Callback,
        "main",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32",
        "i32",
    ),
    entry(Kind::Callback, "_start", &[V0_1_0, V0_2_0, V0_2_1], "", ""),
    entry(
        Kind::Callback,
        "proxy_on_memory_allocate",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32",
        "i32",
    ),
    entry(
        Kind::Callback,
        "malloc",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32",
        "i32",
    ),
    entry(
        Kind::Callback,
        "proxy_on_context_create",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32",
        "",
    ),
    entry(
        Kind::Callback,
        "proxy_on_done",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32",
        "i32",
    ),
    entry(
        Kind::Callback,
        "proxy_on_log",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32",
        "",
    ),
    entry(
        Kind::Callback,
        "proxy_on_delete",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32",
        "",
    ),
    entry(
        Kind::Callback,
        "proxy_on_vm_start",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32",
        "i32",
    ),
    entry(
        Kind::Callback,
        "proxy_on_configure",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32",
        "i32",
    ),
    entry(
        Kind::Callback,
        "proxy_on_tick",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32",
        "",
    ),
    entry(
        Kind::Callback,
        "proxy_on_new_connection",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32",
        "i32",
    ),
    entry(
        Kind::Callback,
        "proxy_on_downstream_data",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::Callback,
        "proxy_on_downstream_connection_close",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32",
        "",
    ),
    entry(
        Kind::Callback,
        "proxy_on_upstream_data",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::Callback,
        "proxy_on_upstream_connection_close",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32",
        "",
    ),
    entry(
        Kind::Callback,
        "proxy_on_request_headers",
        &[V0_1_0],
        "i32,i32",
        "i32",
    ),
    entry(
        Kind::Callback,
        "proxy_on_request_headers",
        &[V0_2_0, V0_2_1],
        "i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::Callback,
        "proxy_on_request_body",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::Callback,
        "proxy_on_request_trailers",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32",
        "i32",
    ),
    entry(
        Kind::Callback,
        "proxy_on_response_headers",
        &[V0_1_0],
        "i32,i32",
        "i32",
    ),
    entry(
        Kind::Callback,
        "proxy_on_response_headers",
        &[V0_2_0, V0_2_1],
        "i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::Callback,
        "proxy_on_response_body",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32",
        "i32",
    ),
    entry(
        Kind::Callback,
        "proxy_on_response_trailers",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32",
        "i32",
    ),
    entry(
        Kind::Callback,
        "proxy_on_http_call_response",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32,i32,i32",
        "",
    ),
    entry(
        Kind::Callback,
        "proxy_on_grpc_receive_initial_metadata",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32",
        "",
    ),
    entry(
        Kind::Callback,
        "proxy_on_grpc_receive",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32",
        "",
    ),
    entry(
        Kind::Callback,
        "proxy_on_grpc_receive_trailing_metadata",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32",
        "",
    ),
    entry(
        Kind::Callback,
        "proxy_on_grpc_close",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32,i32",
        "",
    ),
    entry(
        Kind::Callback,
        "proxy_on_queue_ready",
        &[V0_1_0, V0_2_0, V0_2_1],
        "i32,i32",
        "",
    ),
    entry(
        Kind::Callback,
        "proxy_on_foreign_function",
        &[V0_2_0, V0_2_1],
        "i32,i32,i32",
        "",
    ),
];

impl SpecFunction {
    /// The import module and field a module uses for this host function.
    pub fn import(&self) -> (&'static str, &'static str) {
        self.name.split_once('.').unwrap_or(("env", self.name))
    }
}

/// Served functions with a limit worth knowing, and what it is.
const LIMITS: &[(&str, &str)] = &[
    (
        "proxy_get_buffer_bytes",
        "configuration, HTTP bodies, a TCP connection's downstream and upstream data, the call-out response body and the gRPC message being delivered",
    ),
    (
        "proxy_set_buffer_bytes",
        "HTTP bodies and a TCP connection's data; configuration is read-only (BAD_ARGUMENT)",
    ),
    (
        "proxy_on_request_body",
        "PAUSE holds the body (up to the plugin's body_buffer_mb) until the plugin continues; PAUSE at the end of the body waits (30 s at most) until the plugin continues it from a timer, queue or call-out callback, which may change the body meanwhile",
    ),
    (
        "proxy_on_response_body",
        "PAUSE holds the body (up to the plugin's body_buffer_mb) until the plugin continues; a stop after the headers went out cuts the response short",
    ),
    (
        "proxy_get_header_map_pairs",
        "request and response headers and trailers, call-out response headers and trailers, gRPC metadata being delivered",
    ),
    (
        "proxy_get_header_map_value",
        "request and response headers and trailers, call-out response headers and trailers, gRPC metadata being delivered",
    ),
    (
        "proxy_get_property",
        "request, response.code, source, destination, connection, cluster and plugin attributes",
    ),
    (
        "proxy_register_shared_queue",
        "the VM that registered a queue last is the one told about new items",
    ),
    (
        "proxy_enqueue_shared_queue",
        "a queue keeps at most 10,000 items; a full queue drops its oldest",
    ),
    (
        "proxy_clear_route_cache",
        "a no-op: weft keeps no route cache",
    ),
    (
        "proxy_on_done",
        "a `false` answer keeps the context, with its header maps for proxy_on_log, until the plugin calls proxy_done (at most 1,024 per VM; past that the oldest is finished)",
    ),
    (
        "proxy_on_request_headers",
        "PAUSE waits until the plugin continues the stream (or answers locally) from a timer, queue or call-out callback (30 s at most)",
    ),
    (
        "proxy_on_response_headers",
        "PAUSE waits until the plugin continues the stream (or answers locally) from a timer, queue or call-out callback (30 s at most)",
    ),
    (
        "proxy_continue_stream",
        "HTTP request and response, from timer, queue and call-out callbacks",
    ),
    (
        "proxy_close_stream",
        "a paused HTTP stream, from timer, queue and call-out callbacks: the client's connection is closed without a response",
    ),
    (
        "proxy_http_call",
        "to the proxy's clusters by name, over its pools; a failed or timed-out call arrives with no headers",
    ),
    (
        "proxy_set_effective_context",
        "the root context, the running callback's context, or a stream paused by this VM (in timer, queue and call-out callbacks)",
    ),
];

/// Whether weft serves `function` (for a host function: a real
/// implementation rather than the UNIMPLEMENTED / ENOSYS stub; for a
/// callback: whether weft ever calls it).
pub fn is_served(runtime: &Runtime, function: &SpecFunction) -> bool {
    match function.kind {
        Kind::HostFunction => {
            let (module, name) = function.import();
            runtime.host_functions.contains(module, name)
        }
        Kind::Callback => CALLBACKS_CALLED.contains(&function.name),
    }
}

/// `docs/abi-coverage.md`, generated.
pub fn abi_coverage_markdown(runtime: &Runtime) -> String {
    let mut doc = String::new();
    let served = |kind: Kind| {
        SPEC.iter()
            .filter(|f| f.kind == kind && is_served(runtime, f))
            .count()
    };
    let total = |kind: Kind| SPEC.iter().filter(|f| f.kind == kind).count();
    let _ = writeln!(doc, "# proxy-wasm ABI coverage\n");
    let _ = writeln!(
        doc,
        "Generated by `cargo xtask abi-coverage` from weft-abi's registration table \
         (`host/abi/src/coverage.rs`); a test fails when this file is stale.\n"
    );
    let _ = writeln!(
        doc,
        "- host functions served: {} of {}; the rest link to a stub that answers \
         `UNIMPLEMENTED` (`ENOSYS` for WASI), so no module fails to load because of them.",
        served(Kind::HostFunction),
        total(Kind::HostFunction)
    );
    let _ = writeln!(
        doc,
        "- callbacks weft calls: {} of {}.\n",
        served(Kind::Callback),
        total(Kind::Callback)
    );
    for (kind, title) in [
        (Kind::HostFunction, "Host functions"),
        (Kind::Callback, "Callbacks"),
    ] {
        let _ = writeln!(doc, "## {title}\n");
        let _ = writeln!(
            doc,
            "| function | 0.1.0 | 0.2.0 | 0.2.1 | signature | weft |"
        );
        let _ = writeln!(doc, "|---|---|---|---|---|---|");
        for f in SPEC.iter().filter(|f| f.kind == kind) {
            let mark = |v: AbiVersion| if f.versions.contains(&v) { "yes" } else { "" };
            let limit = LIMITS.iter().find(|(name, _)| *name == f.name);
            let status = match (kind, is_served(runtime, f), limit) {
                (_, true, Some((_, limit))) => format!("served ({limit})"),
                (_, true, None) => "served".to_string(),
                (Kind::HostFunction, false, _) => "stub: UNIMPLEMENTED".to_string(),
                (Kind::Callback, false, _) => "not called yet".to_string(),
            };
            let result = if f.result.is_empty() { "()" } else { f.result };
            let _ = writeln!(
                doc,
                "| `{}` | {} | {} | {} | ({}) -> {} | {} |",
                f.name,
                mark(V0_1_0),
                mark(V0_2_0),
                mark(V0_2_1),
                f.params,
                result,
                status
            );
        }
        let _ = writeln!(doc);
    }
    doc
}

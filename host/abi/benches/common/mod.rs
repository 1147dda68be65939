//! What the runtime benchmarks share: modules, a header-map stream, plugins.

#![allow(dead_code, clippy::unwrap_used)] // Each bench uses a part; a failed unwrap is a failed run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use weft_abi::{FailurePolicy, HttpStream, Plugin, PluginLimits, PluginModule, Runtime};

#[path = "../../tests/support/list_stream.rs"]
mod list_stream;

pub use list_stream::{ListStream, Map};

/// The ten request headers the benchmarks' requests carry.
pub const REQUEST_HEADERS: [(&str, &str); 10] = [
    (":method", "GET"),
    (":path", "/api/v1/items?page=2"),
    (":authority", "shop.example.com"),
    (":scheme", "http"),
    ("user-agent", "bench/1.0"),
    ("accept", "application/json"),
    ("accept-encoding", "gzip, br"),
    ("x-request-id", "5f0c6a2e-8d1b-4c3a-9e7f-2b6d1a0c9e84"),
    ("x-user", "u1"),
    ("cookie", "session=abc123"),
];

/// A request stream with [`REQUEST_HEADERS`] and `:status: 200` response
/// headers.
pub fn stream() -> Box<dyn HttpStream> {
    let pairs = |list: &[(&str, &str)]| -> Map {
        list.iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    };
    Box::new(ListStream {
        request: pairs(&REQUEST_HEADERS),
        response: Some(pairs(&[(":status", "200"), ("content-length", "2")])),
        ..ListStream::default()
    })
}

/// A module with a bump allocator that starts over at each request, the
/// ABI marker and `body` (more exports). Names `$get` and `$add` the
/// header-map host functions; the header names sit at 100 + 32 × i.
pub fn module(body: &str) -> String {
    let mut data = String::new();
    for (i, (name, _)) in REQUEST_HEADERS.iter().enumerate() {
        data.push_str(&format!(
            "  (data (i32.const {}) \"{name}\")\n",
            100 + 32 * i
        ));
    }
    format!(
        r#"(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
{data}  (data (i32.const 500) "x-filtered")
  (data (i32.const 520) "yes")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32) (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size))) (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
{body})"#
    )
}

/// Reads the ten request headers by name (each value handed over through
/// the allocator) and adds `x-filtered: yes`.
pub fn read_ten_add_one() -> String {
    let mut reads = String::new();
    for (i, (name, _)) in REQUEST_HEADERS.iter().enumerate() {
        reads.push_str(&format!(
            "    (drop (call $get (i32.const 0) (i32.const {}) (i32.const {}) (i32.const 200) (i32.const 204)))\n",
            100 + 32 * i,
            name.len()
        ));
    }
    module(&format!(
        r#"  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (global.set $heap (i32.const 4096))
{reads}    (drop (call $add (i32.const 0) (i32.const 500) (i32.const 10) (i32.const 520) (i32.const 3)))
    (i32.const 0))"#
    ))
}

/// The whole callback set of a trivial filter: request headers adds
/// `x-filtered: yes`, the other callbacks return at once.
pub fn trivial() -> String {
    module(
        r#"  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 0) (i32.const 500) (i32.const 10) (i32.const 520) (i32.const 3)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))"#,
    )
}

/// `target/filters/hello_rust.wasm` (the Rust SDK's hello filter), if
/// `cargo xtask build-filters` built it.
pub fn hello_rust() -> Option<(PathBuf, Vec<u8>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/filters/hello_rust.wasm");
    match std::fs::read(&path) {
        Ok(bytes) => Some((path, bytes)),
        Err(_) => {
            eprintln!(
                "{} is missing (cargo xtask build-filters): its cases are skipped",
                path.display()
            );
            None
        }
    }
}

/// hello-rust's configuration.
pub const HELLO_CONFIG: &[u8] = br#"{"header": "x-hello", "value": "world"}"#;

/// A plugin of `module` with `configuration` and default limits.
pub fn plugin(module: PluginModule, configuration: &[u8]) -> Arc<Plugin> {
    Arc::new(Plugin {
        name: "bench".into(),
        root_id: String::new(),
        vm_id: String::new(),
        configuration: configuration.to_vec(),
        vm_configuration: Vec::new(),
        failure_policy: FailurePolicy::FailClosed,
        limits: PluginLimits {
            // A run of millions of callbacks must not trip a deadline on
            // a busy machine.
            callback_deadline: Duration::from_secs(10),
            ..PluginLimits::default()
        },
        module,
    })
}

/// A plugin of the WAT module `wat`.
pub fn wat_plugin(runtime: &Runtime, wat: &str) -> Arc<Plugin> {
    let module = PluginModule::from_bytes(runtime, "bench.wat", wat.as_bytes()).unwrap();
    plugin(module, b"")
}

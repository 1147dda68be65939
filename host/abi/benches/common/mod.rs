//! What the runtime benchmarks share: modules, a header-map stream, plugins.

#![allow(dead_code, clippy::unwrap_used)] // Each bench uses a part; a failed unwrap is a failed run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use weft_abi::{
    FailurePolicy, HttpStream, LocalResponse, MapType, Plugin, PluginLimits, PluginModule, Runtime,
    Status,
};

pub type Map = Vec<(Vec<u8>, Vec<u8>)>;

/// Request and response header maps as lists.
#[derive(Default)]
pub struct BenchStream {
    pub request: Map,
    pub response: Option<Map>,
}

impl BenchStream {
    fn map(&self, map: MapType) -> Result<&Map, Status> {
        match map {
            MapType::HttpRequestHeaders => Ok(&self.request),
            MapType::HttpResponseHeaders => self.response.as_ref().ok_or(Status::NotFound),
            _ => Err(Status::NotFound),
        }
    }
    fn map_mut(&mut self, map: MapType) -> Result<&mut Map, Status> {
        match map {
            MapType::HttpRequestHeaders => Ok(&mut self.request),
            MapType::HttpResponseHeaders => self.response.as_mut().ok_or(Status::BadArgument),
            _ => Err(Status::BadArgument),
        }
    }
}

impl HttpStream for BenchStream {
    fn visit_map(&self, map: MapType, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), Status> {
        for (k, v) in self.map(map)? {
            visit(k, v);
        }
        Ok(())
    }
    fn map_value(&self, map: MapType, key: &[u8]) -> Result<Option<&[u8]>, Status> {
        Ok(self
            .map(map)?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice()))
    }
    fn add_map_value(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Result<(), Status> {
        self.map_mut(map)?.push((key.to_vec(), value.to_vec()));
        Ok(())
    }
    fn replace_map_value(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Result<(), Status> {
        self.remove_map_value(map, key)?;
        self.add_map_value(map, key, value)
    }
    fn remove_map_value(&mut self, map: MapType, key: &[u8]) -> Result<(), Status> {
        self.map_mut(map)?.retain(|(k, _)| k != key);
        Ok(())
    }
    fn set_map_pairs(&mut self, map: MapType, pairs: &[(&[u8], &[u8])]) -> Result<(), Status> {
        *self.map_mut(map)? = pairs
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        Ok(())
    }
    fn send_local_response(&mut self, _: LocalResponse) -> Result<(), Status> {
        Ok(())
    }
}

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
    Box::new(BenchStream {
        request: pairs(&REQUEST_HEADERS),
        response: Some(pairs(&[(":status", "200"), ("content-length", "2")])),
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

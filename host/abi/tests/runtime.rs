//! The runtime's set-up: the on-disk module cache and the pooling allocator.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use weft_abi::{
    Action, Allocator, FailurePolicy, HttpStream, MODULE_CACHE_SUBDIR, NoStream, Plugin,
    PluginLimits, PluginModule, Runtime, RuntimeOptions, Vm, VmError,
};

/// A filter that counts requests in its memory and answers CONTINUE to a
/// VM's first request, PAUSE after; it traps in `$boom` when a request has
/// exactly 7 headers (so that backtraces can be checked).
const WAT: &str = r#"(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32) (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size))) (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func $boom unreachable)
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (if (i32.eq (local.get $n) (i32.const 7)) (then (call $boom)))
    (i32.load (i32.const 0))
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))))"#;

fn cached(dir: &Path) -> Runtime {
    Runtime::with_options(&RuntimeOptions {
        module_cache: Some(dir.to_path_buf()),
        allocator: Allocator::OnDemand,
        perf_map: false,
    })
    .unwrap()
}

fn load(runtime: &Runtime) -> PluginModule {
    PluginModule::from_bytes(runtime, "cached.wat", WAT.as_bytes()).unwrap()
}

fn plugin(module: PluginModule) -> Arc<Plugin> {
    Arc::new(Plugin {
        name: "cached".into(),
        root_id: String::new(),
        vm_id: String::new(),
        configuration: Vec::new(),
        vm_configuration: Vec::new(),
        failure_policy: FailurePolicy::FailClosed,
        limits: PluginLimits::default(),
        module,
    })
}

/// One request with `headers` headers through a new stream context.
fn request(vm: &mut Vm, headers: usize) -> Result<Action, VmError> {
    let mut stream: Box<dyn HttpStream> = Box::new(NoStream);
    let ctx = vm.create_stream_context().unwrap();
    vm.on_request_headers(ctx, &mut stream, headers, true)
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_module_is_compiled_once_then_read_from_the_cache_by_the_next_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let first = cached(dir.path());
    assert!(first.module_cache_dir().is_some());
    load(&first);
    let stats = first.module_cache_stats().unwrap();
    assert_eq!((stats.hits, stats.misses), (0, 1));
    assert!(
        !files(dir.path()).is_empty(),
        "the compiled module is written to the directory"
    );
    drop(first);

    let second = cached(dir.path());
    let module = load(&second);
    let stats = second.module_cache_stats().unwrap();
    assert_eq!(
        (stats.hits, stats.misses),
        (1, 0),
        "the second load is a hit"
    );

    // The module read back runs, and its traps still name the function.
    let mut vm = Vm::new(plugin(module)).unwrap();
    assert_eq!(request(&mut vm, 1).unwrap(), Action::Continue);
    assert_eq!(request(&mut vm, 1).unwrap(), Action::Pause);
    match request(&mut vm, 7) {
        Err(VmError::Trap { message, .. }) => assert!(message.contains("boom"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn the_cache_writes_only_in_its_own_subdirectory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    let runtime = cached(dir.path());
    load(&runtime);
    assert_eq!(
        runtime.module_cache_dir().unwrap(),
        dir.path().canonicalize().unwrap().join(MODULE_CACHE_SUBDIR)
    );
    let mut top: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(top, ["notes.txt", MODULE_CACHE_SUBDIR]);
}

#[test]
fn a_corrupted_cache_entry_is_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    load(&cached(dir.path()));
    let entries: Vec<_> = files(dir.path())
        .into_iter()
        .filter(|f| f.extension().is_none())
        .collect();
    assert!(!entries.is_empty());
    for entry in &entries {
        std::fs::write(entry, b"not a compiled module").unwrap();
    }

    let runtime = cached(dir.path());
    let mut vm = Vm::new(plugin(load(&runtime))).unwrap();
    assert_eq!(request(&mut vm, 1).unwrap(), Action::Continue);
    assert_eq!(runtime.module_cache_stats().unwrap().hits, 0);
}

#[test]
fn a_cache_directory_that_cannot_be_made_leaves_modules_loading() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let runtime = cached(&file.join("cache"));
    assert!(runtime.module_cache_dir().is_none());
    assert!(runtime.module_cache_stats().is_none());
    let mut vm = Vm::new(plugin(load(&runtime))).unwrap();
    assert_eq!(request(&mut vm, 1).unwrap(), Action::Continue);
}

#[test]
fn a_cache_that_cannot_write_its_entries_leaves_modules_loading() {
    let dir = tempfile::tempdir().unwrap();
    // The cache keeps its entries under `wasmtime/modules/`: a file there
    // makes every write fail.
    std::fs::create_dir(dir.path().join(MODULE_CACHE_SUBDIR)).unwrap();
    std::fs::write(dir.path().join(MODULE_CACHE_SUBDIR).join("modules"), b"").unwrap();
    let runtime = cached(dir.path());
    let mut vm = Vm::new(plugin(load(&runtime))).unwrap();
    assert_eq!(request(&mut vm, 1).unwrap(), Action::Continue);
    let stats = runtime.module_cache_stats().unwrap();
    assert_eq!((stats.hits, stats.misses), (0, 0));
}

#[test]
fn pooled_vms_start_up_to_the_pool_size_and_reuse_freed_slots() {
    let runtime = Runtime::with_options(&RuntimeOptions {
        module_cache: None,
        allocator: Allocator::Pooling { max_vms: 2 },
        perf_map: false,
    })
    .unwrap();
    assert_eq!(runtime.allocator(), Allocator::Pooling { max_vms: 2 });
    let plugin = plugin(load(&runtime));
    let mut first = Vm::new(plugin.clone()).unwrap();
    let mut second = Vm::new(plugin.clone()).unwrap();
    assert_eq!(request(&mut second, 1).unwrap(), Action::Continue);
    match Vm::new(plugin.clone()) {
        Err(err @ VmError::Instantiate { .. }) => {
            let message = err.to_string();
            assert!(message.contains("plugin `cached`"), "{message}");
        }
        other => panic!("a third VM must not fit, got {:?}", other.err()),
    }
    drop(second);
    // A reused slot starts from the module's memory image, not the last
    // VM's memory.
    let mut third = Vm::new(plugin).unwrap();
    assert_eq!(request(&mut third, 1).unwrap(), Action::Continue);
    assert_eq!(request(&mut first, 1).unwrap(), Action::Continue);
    assert_eq!(first.memory_bytes(), 64 << 10);
}

#[test]
fn a_pool_that_cannot_be_reserved_falls_back_to_on_demand_allocation() {
    // Far more address space than a process has.
    let runtime = Runtime::with_options(&RuntimeOptions {
        module_cache: None,
        allocator: Allocator::Pooling { max_vms: 1_000_000 },
        perf_map: false,
    })
    .unwrap();
    assert_eq!(runtime.allocator(), Allocator::OnDemand);
    let mut vm = Vm::new(plugin(load(&runtime))).unwrap();
    assert_eq!(request(&mut vm, 1).unwrap(), Action::Continue);
}

#[test]
fn a_perf_map_names_the_guest_functions_of_every_module_loaded() {
    let runtime = Runtime::with_options(&RuntimeOptions {
        module_cache: None,
        allocator: Allocator::OnDemand,
        perf_map: true,
    })
    .unwrap();
    // A function name no other test's module has.
    let wat = WAT.replace(
        "(func $boom",
        "(func $perf_map_probe_7f3a unreachable)\n  (func $boom",
    );
    let module = PluginModule::from_bytes(&runtime, "perf.wat", wat.as_bytes()).unwrap();
    let mut vm = Vm::new(plugin(module)).unwrap();
    assert_eq!(request(&mut vm, 1).unwrap(), Action::Continue);
    let map = format!("/tmp/perf-{}.map", std::process::id());
    let listed = std::fs::read_to_string(&map).unwrap();
    // `START SIZE NAME` per line, in hex (`0x`-prefixed).
    let probe = listed
        .lines()
        .find(|line| line.ends_with("perf_map_probe_7f3a"))
        .unwrap_or_else(|| panic!("{map} does not name the probe function:\n{listed}"));
    let fields: Vec<&str> = probe.splitn(3, ' ').collect();
    let hex = |field: &str| u64::from_str_radix(field.trim_start_matches("0x"), 16).unwrap();
    assert!(hex(fields[0]) > 0 && hex(fields[1]) > 0, "{probe}");
    assert!(
        listed.lines().any(|line| line.ends_with("]::function[5]")),
        "functions without a name are listed by index:\n{listed}"
    );
    // The map is this test process's alone (no other test asks for one).
    std::fs::remove_file(&map).unwrap();
}

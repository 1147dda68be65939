//! Start-up costs: a VM from a compiled module (pooling and on-demand
//! allocation), a module compiled or read from the disk cache.
//!
//! `cargo bench -p weft-abi --bench startup`

#![allow(clippy::unwrap_used)] // A failed unwrap is a failed run.

mod common;

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use weft_abi::{Allocator, Plugin, PluginModule, Runtime, RuntimeOptions, Vm};

fn runtime(allocator: Allocator, cache: Option<&std::path::Path>) -> Runtime {
    Runtime::with_options(&RuntimeOptions {
        module_cache: cache.map(|d| d.to_path_buf()),
        allocator,
        perf_map: false,
    })
    .unwrap()
}

const POOLING: Allocator = Allocator::Pooling { max_vms: 16 };

/// The modules measured: (name, file name, bytes, configuration).
fn modules() -> Vec<(&'static str, String, Vec<u8>, &'static [u8])> {
    let mut list = vec![(
        "trivial WAT",
        "trivial.wat".to_string(),
        common::trivial().into_bytes(),
        &b""[..],
    )];
    if let Some((path, bytes)) = common::hello_rust() {
        list.push((
            "hello-rust",
            path.display().to_string(),
            bytes,
            common::HELLO_CONFIG,
        ));
    }
    list
}

/// `Vm::new` (instantiate, `_initialize`, root context, `proxy_on_vm_start`,
/// `proxy_on_configure`) and the VM's drop, from a compiled module.
fn vm_new(c: &mut Criterion) {
    let mut group = c.benchmark_group("vm_new");
    for (module_name, file, bytes, configuration) in modules() {
        for (allocator_name, allocator) in
            [("on demand", Allocator::OnDemand), ("pooling", POOLING)]
        {
            let runtime = runtime(allocator, None);
            assert_eq!(runtime.allocator(), allocator);
            let module = PluginModule::from_bytes(&runtime, &file, &bytes).unwrap();
            let plugin: Arc<Plugin> = common::plugin(module, configuration);
            group.bench_function(format!("{module_name}, {allocator_name}"), |b| {
                b.iter(|| Vm::new(plugin.clone()).unwrap())
            });
        }
    }
    group.finish();
}

/// `PluginModule::from_bytes` (compile or read back, link), with no cache
/// and from a warm disk cache; and a whole bring-up from the cache (load
/// and `Vm::new`, pooled).
fn module_load(c: &mut Criterion) {
    let mut group = c.benchmark_group("module_load");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for (module_name, file, bytes, configuration) in modules() {
        let cold = runtime(Allocator::OnDemand, None);
        group.bench_function(format!("{module_name}, compiled"), |b| {
            b.iter(|| PluginModule::from_bytes(&cold, &file, &bytes).unwrap())
        });
        let dir = tempfile::tempdir().unwrap();
        let cached = runtime(POOLING, Some(dir.path()));
        PluginModule::from_bytes(&cached, &file, &bytes).unwrap();
        group.bench_function(format!("{module_name}, from the disk cache"), |b| {
            b.iter(|| PluginModule::from_bytes(&cached, &file, &bytes).unwrap())
        });
        group.bench_function(
            format!("{module_name}, from the disk cache + Vm::new (pooling)"),
            |b| {
                b.iter(|| {
                    let module = PluginModule::from_bytes(&cached, &file, &bytes).unwrap();
                    Vm::new(common::plugin(module, configuration)).unwrap()
                })
            },
        );
        let stats = cached.module_cache_stats().unwrap();
        assert_eq!(stats.misses, 1, "every load after the first is a hit");
    }
    group.finish();
}

criterion_group!(benches, vm_new, module_load);
criterion_main!(benches);

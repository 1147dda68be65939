//! Resident memory per idle VM: 200 started VMs of a module, the process's
//! memory before and after, per VM. Prints a table; not a criterion bench.
//!
//! Each case runs in a fresh process that reads its module from a disk
//! cache this run fills first: a process that compiled the module has
//! megabytes of the compiler's freed heap resident, which the VMs' own
//! allocations would reuse unseen.
//!
//! `cargo bench -p weft-abi --bench memory`

#![allow(clippy::unwrap_used, clippy::print_stdout)] // A failed unwrap is a failed run; the table is the output.

mod common;

use std::path::Path;
use std::process::Command;

use weft_abi::{Allocator, PluginModule, Runtime, RuntimeOptions, Vm};

const VMS: usize = 200;

/// Set in the process that measures one case: `MODULE ALLOCATOR CACHE_DIR`.
const CASE: &str = "WEFT_MEMORY_BENCH_CASE";

/// KiB figures from /proc/self/status and /proc/self/smaps_rollup.
struct Memory {
    rss: i64,
    anon: i64,
    shmem: i64,
    pss: i64,
    size: i64,
}

fn kib(text: &str, key: &str) -> i64 {
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.trim().strip_suffix("kB"))
        .map_or(0, |n| n.trim().parse().unwrap())
}

fn memory() -> Memory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    Memory {
        rss: kib(&status, "VmRSS:"),
        anon: kib(&status, "RssAnon:"),
        shmem: kib(&status, "RssShmem:"),
        pss: kib(&rollup, "Pss:"),
        size: kib(&status, "VmSize:"),
    }
}

/// (name, file name, bytes, configuration) of each module measured.
fn modules() -> Vec<(&'static str, String, Vec<u8>, &'static [u8])> {
    let mut list = vec![(
        "trivial WAT (1 page)",
        "trivial.wat".to_string(),
        common::trivial().into_bytes(),
        &b""[..],
    )];
    if let Some((path, bytes)) = common::hello_rust() {
        list.push((
            "hello-rust (17 pages)",
            path.display().to_string(),
            bytes,
            common::HELLO_CONFIG,
        ));
    }
    list
}

fn runtime(allocator: Allocator, cache: &Path) -> Runtime {
    Runtime::with_options(&RuntimeOptions {
        module_cache: Some(cache.to_path_buf()),
        allocator,
        perf_map: false,
    })
    .unwrap()
}

const ALLOCATORS: [(&str, Allocator); 2] = [
    ("on demand", Allocator::OnDemand),
    ("pooling", Allocator::Pooling { max_vms: 256 }),
];

/// Measures one case and prints its table row.
fn measure(module: usize, allocator: usize, cache: &Path) {
    let (module_name, file, bytes, configuration) = modules().swap_remove(module);
    let (allocator_name, allocator) = ALLOCATORS[allocator];
    let runtime = runtime(allocator, cache);
    let module = PluginModule::from_bytes(&runtime, &file, &bytes).unwrap();
    assert_eq!(runtime.module_cache_stats().unwrap().hits, 1);
    let plugin = common::plugin(module, configuration);
    // One VM first, so that one-off costs are not counted per VM.
    let first = Vm::new(plugin.clone()).unwrap();
    let before = memory();
    let mut vms: Vec<Vm> = (0..VMS).map(|_| Vm::new(plugin.clone()).unwrap()).collect();
    let started = memory();
    for vm in &mut vms {
        let mut stream = common::stream();
        let ctx = vm.create_stream_context().unwrap();
        vm.on_request_headers(ctx, &mut stream, 10, true).unwrap();
        vm.on_response_headers(ctx, &mut stream, 2, true).unwrap();
        vm.finish_stream(ctx, &mut stream).unwrap();
    }
    let served = memory();
    let per_vm = |after: &Memory, f: fn(&Memory) -> i64| {
        let kib = (f(after) - f(&before)) as f64 / VMS as f64;
        if kib.abs() >= 1024.0 * 1024.0 {
            format!("{:.2} GiB", kib / 1024.0 / 1024.0)
        } else {
            format!("{kib:.1} KiB")
        }
    };
    println!(
        "| {module_name} | {allocator_name} | {} | {} | {} | {} | {} | {} | {} |",
        per_vm(&started, |m| m.rss),
        per_vm(&started, |m| m.anon),
        per_vm(&started, |m| m.shmem),
        per_vm(&started, |m| m.pss),
        per_vm(&served, |m| m.rss),
        per_vm(&served, |m| m.pss),
        per_vm(&started, |m| m.size),
    );
    drop(vms);
    drop(first);
}

fn main() {
    if let Ok(case) = std::env::var(CASE) {
        let mut parts = case.splitn(3, ' ');
        let module = parts.next().unwrap().parse().unwrap();
        let allocator = parts.next().unwrap().parse().unwrap();
        measure(module, allocator, Path::new(parts.next().unwrap()));
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let modules = modules();
    {
        let runtime = runtime(Allocator::OnDemand, cache.path());
        for (_, file, bytes, _) in &modules {
            PluginModule::from_bytes(&runtime, file, bytes).unwrap();
        }
    }
    println!(
        "{VMS} VMs started, then one request through each (context create, request and \
         response headers, done, log, delete); growth per VM:\n"
    );
    println!(
        "| module | allocator | started: VmRSS | RssAnon | RssShmem | Pss | after a request: VmRSS | Pss | VmSize |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let exe = std::env::current_exe().unwrap();
    for module in 0..modules.len() {
        for allocator in 0..ALLOCATORS.len() {
            let status = Command::new(&exe)
                .env(
                    CASE,
                    format!("{module} {allocator} {}", cache.path().display()),
                )
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
}

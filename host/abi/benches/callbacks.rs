//! Callback costs: one `proxy_on_request_headers` round trip, and the
//! whole per-request callback sequence of a filter.
//!
//! `cargo bench -p weft-abi --bench callbacks`

#![allow(clippy::unwrap_used)] // A failed unwrap is a failed run.

mod common;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use weft_abi::{HttpStream, PluginModule, Runtime, Vm};

/// `proxy_on_request_headers` on one stream context, again and again; a
/// fresh 10-header stream each time (made outside the timing).
fn request_headers(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let mut group = c.benchmark_group("request_headers");
    for (name, wat) in [
        (
            "empty callback",
            common::module(
                r#"  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))"#,
            ),
        ),
        ("read 10 headers, add 1", common::read_ten_add_one()),
    ] {
        let mut vm = Vm::new(common::wat_plugin(&runtime, &wat)).unwrap();
        let ctx = vm.create_stream_context().unwrap();
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                common::stream,
                |stream| vm.on_request_headers(ctx, stream, 10, true).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// What a request costs a filter's VM: context create, request headers,
/// response headers, done, log, delete.
fn sequence(vm: &mut Vm, stream: &mut Box<dyn HttpStream>) {
    let ctx = vm.create_stream_context().unwrap();
    vm.on_request_headers(ctx, stream, 10, true).unwrap();
    vm.on_response_headers(ctx, stream, 2, true).unwrap();
    vm.finish_stream(ctx, stream).unwrap();
}

fn per_request(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let mut group = c.benchmark_group("per_request");
    let mut vm = Vm::new(common::wat_plugin(&runtime, &common::trivial())).unwrap();
    group.bench_function("trivial WAT filter", |b| {
        b.iter_batched_ref(
            common::stream,
            |stream| sequence(&mut vm, stream),
            BatchSize::SmallInput,
        )
    });
    if let Some((path, bytes)) = common::hello_rust() {
        let module =
            PluginModule::from_bytes(&runtime, &path.display().to_string(), &bytes).unwrap();
        let mut vm = Vm::new(common::plugin(module, common::HELLO_CONFIG)).unwrap();
        group.bench_function("hello-rust (Rust SDK)", |b| {
            b.iter_batched_ref(
                common::stream,
                |stream| sequence(&mut vm, stream),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, request_headers, per_request);
criterion_main!(benches);

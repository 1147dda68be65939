//! weft-abi against WAT modules: each case names the ABI behaviour it checks.
//! Real wasmtime, no mocks of the runtime.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::sync::Arc;
use std::time::Duration;

use weft_abi::{
    Action, Capabilities, FailurePolicy, HttpStream, Plugin, PluginLimits, PluginModule, Runtime,
    Vm, VmError,
};

#[path = "support/list_stream.rs"]
mod list_stream;

use list_stream::ListStream;

fn stream(request: &[(&str, &str)]) -> Box<dyn HttpStream> {
    Box::new(ListStream {
        request: request
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
        ..ListStream::default()
    })
}

fn inspect(stream: &mut Box<dyn HttpStream>) -> &mut ListStream {
    let any: &mut dyn std::any::Any = stream.as_mut();
    any.downcast_mut::<ListStream>().unwrap()
}

fn header(stream: &mut Box<dyn HttpStream>, key: &str) -> Option<String> {
    inspect(stream)
        .request
        .iter()
        .find(|(k, _)| k == key.as_bytes())
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

fn plugin(runtime: &Runtime, wat: &str, configuration: &str, limits: PluginLimits) -> Arc<Plugin> {
    let module = PluginModule::from_bytes(runtime, "test.wat", wat.as_bytes()).unwrap();
    Arc::new(Plugin {
        name: "test".into(),
        root_id: "root".into(),
        vm_id: "vm".into(),
        configuration: configuration.as_bytes().to_vec(),
        vm_configuration: Vec::new(),
        failure_policy: FailurePolicy::FailClosed,
        limits,
        module,
    })
}

/// A started VM of `funcs` (ABI 0.2.1, configuration "c", default limits).
fn start_vm(runtime: &Runtime, funcs: &str) -> Vm {
    Vm::new(plugin(
        runtime,
        &module("0_2_1", BUMP, funcs),
        "c",
        PluginLimits::default(),
    ))
    .unwrap()
}

/// Runs one request with `headers` through `proxy_on_request_headers`.
fn request(
    vm: &mut Vm,
    headers: &[(&str, &str)],
) -> (Result<Action, VmError>, Box<dyn HttpStream>) {
    let mut s = stream(headers);
    let ctx = vm.create_stream_context().unwrap();
    let result = vm.on_request_headers(ctx, &mut s, headers.len(), true);
    (result, s)
}

/// Imports, memory, a bump allocator (or `$alloc_body` instead), the ABI
/// marker, and `$status` which records a status as header `key: NN`.
fn module(abi: &str, alloc_body: &str, funcs: &str) -> String {
    format!(
        r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $set_tick (param i32) (result i32)))
  (import "env" "proxy_not_in_any_abi" (func $unknown (param i32) (result i32)))
  (import "env" "proxy_call_foreign_function" (func $foreign (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_status" (func $buffer_status (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_configuration" (func $get_configuration (param i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $get_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define_metric (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment_metric (param i32 i64) (result i32)))
  (import "env" "proxy_record_metric" (func $record_metric (param i32 i64) (result i32)))
  (import "env" "proxy_get_metric" (func $get_metric (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (global $initialized (mut i32) (i32.const 0))
  (data (i32.const 100) "x-in")
  (data (i32.const 110) "x-out")
  (data (i32.const 120) "x-status")
  (data (i32.const 140) "plugin_name")
  (data (i32.const 160) "requests")
  (data (i32.const 170) "reverse")
  (data (i32.const 180) "missing")
  (func (export "proxy_abi_version_{abi}"))
  (func (export "_initialize") (global.set $initialized (i32.const 1)))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32) {alloc_body})
  (func (export "proxy_on_context_create") (param i32 i32))
  (func $status (param $code i32)
    (i32.store8 (i32.const 300) (i32.add (i32.const 48) (i32.div_u (local.get $code) (i32.const 10))))
    (i32.store8 (i32.const 301) (i32.add (i32.const 48) (i32.rem_u (local.get $code) (i32.const 10))))
    (drop (call $add (i32.const 0) (i32.const 120) (i32.const 8) (i32.const 300) (i32.const 2))))
  {funcs})"#
    )
}

const BUMP: &str = "(local $p i32) (local.set $p (global.get $heap)) \
    (global.set $heap (i32.add (global.get $heap) (local.get $size))) (local.get $p)";

/// on_configure: reads the configuration, logs it, accepts it if non-empty
/// and `_initialize` ran first.
const CONFIGURE: &str = r#"
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (drop (call $get_buffer (i32.const 7) (i32.const 0) (local.get $size) (i32.const 200) (i32.const 204)))
    (drop (call $log (i32.const 2) (i32.load (i32.const 200)) (i32.load (i32.const 204))))
    (i32.and (global.get $initialized) (i32.gt_u (local.get $size) (i32.const 0))))"#;

fn headers_fn(body: &str) -> String {
    format!(
        r#"(func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32) {body})"#
    )
}

#[test]
fn configure_reads_plugin_configuration_after_initialize() {
    let runtime = Runtime::new().unwrap();
    let wat = module("0_2_1", BUMP, CONFIGURE);
    assert!(
        Vm::new(plugin(
            &runtime,
            &wat,
            "some config",
            PluginLimits::default()
        ))
        .is_ok()
    );
    match Vm::new(plugin(&runtime, &wat, "", PluginLimits::default())) {
        Err(VmError::Rejected { callback, .. }) => assert_eq!(callback, "proxy_on_configure"),
        other => panic!(
            "empty configuration must be rejected, got {:?}",
            other.err()
        ),
    }
}

#[test]
fn header_value_is_read_and_added() {
    let runtime = Runtime::new().unwrap();
    let funcs = format!(
        "{CONFIGURE}{}",
        headers_fn(
            r#"(call $status (call $get_value (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 200) (i32.const 204)))
               (drop (call $add (i32.const 0) (i32.const 110) (i32.const 5) (i32.load (i32.const 200)) (i32.load (i32.const 204))))
               (i32.const 0)"#
        )
    );
    let mut vm = start_vm(&runtime, &funcs);
    let mut s = stream(&[("x-in", "copied")]);
    let ctx = vm.create_stream_context().unwrap();
    assert_eq!(
        vm.on_request_headers(ctx, &mut s, 1, true).unwrap(),
        Action::Continue
    );
    assert_eq!(header(&mut s, "x-status").as_deref(), Some("00"));
    assert_eq!(header(&mut s, "x-out").as_deref(), Some("copied"));

    // A missing header is NOT_FOUND in ABI 0.2.x.
    let (result, mut s) = request(&mut vm, &[]);
    result.unwrap();
    assert_eq!(header(&mut s, "x-status").as_deref(), Some("01"));
}

#[test]
fn unimplemented_proxy_import_links_and_answers_unimplemented() {
    let runtime = Runtime::new().unwrap();
    let funcs = format!(
        "{CONFIGURE}{}",
        headers_fn("(call $status (call $unknown (i32.const 1000))) (i32.const 0)")
    );
    let mut vm = start_vm(&runtime, &funcs);
    let (result, mut s) = request(&mut vm, &[]);
    result.unwrap();
    assert_eq!(header(&mut s, "x-status").as_deref(), Some("12"));
}

#[test]
fn plugin_name_property() {
    let runtime = Runtime::new().unwrap();
    let funcs = format!(
        "{CONFIGURE}{}",
        headers_fn(
            r#"(call $status (call $get_property (i32.const 140) (i32.const 11) (i32.const 200) (i32.const 204)))
               (drop (call $add (i32.const 0) (i32.const 110) (i32.const 5) (i32.load (i32.const 200)) (i32.load (i32.const 204))))
               (i32.const 0)"#
        )
    );
    let mut vm = start_vm(&runtime, &funcs);
    let (result, mut s) = request(&mut vm, &[]);
    result.unwrap();
    assert_eq!(header(&mut s, "x-status").as_deref(), Some("00"));
    assert_eq!(header(&mut s, "x-out").as_deref(), Some("test"));
}

#[test]
fn out_of_bounds_pointers_are_invalid_memory_access() {
    let runtime = Runtime::new().unwrap();
    // Key pointer past the end of the 64 KiB memory.
    let funcs = format!(
        "{CONFIGURE}{}",
        headers_fn(
            r#"(call $status (call $get_value (i32.const 0) (i32.const 65530) (i32.const 100) (i32.const 200) (i32.const 204)))
               (i32.const 0)"#
        )
    );
    let mut vm = start_vm(&runtime, &funcs);
    let (result, mut s) = request(&mut vm, &[("x-in", "v")]);
    result.unwrap();
    assert_eq!(header(&mut s, "x-status").as_deref(), Some("06"));
    assert!(
        !vm.is_failed(),
        "a bad pointer is the guest's error, not a VM failure"
    );
}

#[test]
fn bogus_allocator_result_is_invalid_memory_access() {
    let runtime = Runtime::new().unwrap();
    let funcs = format!(
        "{CONFIGURE}{}",
        headers_fn(
            r#"(call $status (call $get_value (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 200) (i32.const 204)))
               (i32.const 0)"#
        )
    );
    // The allocator answers a real address once (the configuration read
    // in on_configure), then a pointer far outside memory.
    let alloc = "(if (result i32) (i32.eq (global.get $heap) (i32.const 4096)) \
                 (then (global.set $heap (i32.const 8192)) (i32.const 4096)) \
                 (else (i32.const -16)))";
    let mut vm = Vm::new(plugin(
        &runtime,
        &module("0_2_1", alloc, &funcs),
        "c",
        PluginLimits::default(),
    ))
    .unwrap();
    let (result, mut s) = request(&mut vm, &[("x-in", "value")]);
    result.unwrap();
    assert_eq!(header(&mut s, "x-status").as_deref(), Some("06"));
}

#[test]
fn infinite_loop_times_out_and_fails_the_vm() {
    let runtime = Runtime::new().unwrap();
    let funcs = format!(
        "{CONFIGURE}{}",
        headers_fn("(loop $spin (br $spin)) (i32.const 0)")
    );
    let limits = PluginLimits {
        callback_deadline: Duration::from_millis(50),
        ..PluginLimits::default()
    };
    let mut vm = Vm::new(plugin(
        &runtime,
        &module("0_2_1", BUMP, &funcs),
        "c",
        limits,
    ))
    .unwrap();
    let (result, mut s) = request(&mut vm, &[]);
    match result {
        Err(VmError::Timeout { callback, .. }) => assert_eq!(callback, "proxy_on_request_headers"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(vm.is_failed());
    assert!(matches!(
        vm.create_stream_context(),
        Err(VmError::Failed { .. })
    ));
    // The stream came back to the caller intact.
    assert!(inspect(&mut s).request.is_empty());
}

#[test]
fn memory_growth_past_the_cap_traps() {
    let runtime = Runtime::new().unwrap();
    let funcs = format!(
        "{CONFIGURE}{}",
        headers_fn("(drop (memory.grow (i32.const 64))) (i32.const 0)")
    );
    let limits = PluginLimits {
        memory_bytes: 1 << 20,
        ..PluginLimits::default()
    };
    let mut vm = Vm::new(plugin(
        &runtime,
        &module("0_2_1", BUMP, &funcs),
        "c",
        limits,
    ))
    .unwrap();
    let (result, _) = request(&mut vm, &[]);
    match result {
        Err(VmError::Trap { message, .. }) => assert!(message.contains("memory"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(vm.is_failed());
}

#[test]
fn trap_in_configure_fails_start_with_a_backtrace() {
    let runtime = Runtime::new().unwrap();
    let funcs = r#"(func $explode (unreachable))
      (func (export "proxy_on_configure") (param i32 i32) (result i32) (call $explode) (i32.const 1))"#;
    match Vm::new(plugin(
        &runtime,
        &module("0_2_1", BUMP, funcs),
        "c",
        PluginLimits::default(),
    )) {
        Err(VmError::Trap {
            callback, message, ..
        }) => {
            assert_eq!(callback, "proxy_on_configure");
            assert!(message.contains("unreachable"), "{message}");
            assert!(
                message.contains("explode"),
                "the backtrace names the function:\n{message}"
            );
        }
        other => panic!("expected a trap, got {:?}", other.err()),
    }
}

#[test]
fn abi_0_1_0_missing_header_is_ok_and_empty() {
    let runtime = Runtime::new().unwrap();
    let funcs = format!(
        r#"{CONFIGURE}
        (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (result i32)
          (call $status (call $get_value (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 200) (i32.const 204)))
          (drop (call $add (i32.const 0) (i32.const 110) (i32.const 5) (i32.load (i32.const 200)) (i32.load (i32.const 204))))
          (i32.const 0))"#
    );
    let p = plugin(
        &runtime,
        &module("0_1_0", BUMP, &funcs),
        "c",
        PluginLimits::default(),
    );
    let mut vm = Vm::new(p).unwrap();
    let (result, mut s) = request(&mut vm, &[]);
    result.unwrap();
    assert_eq!(header(&mut s, "x-status").as_deref(), Some("00"));
    assert_eq!(header(&mut s, "x-out").as_deref(), Some(""));
}

#[test]
fn abi_0_1_0_headers_callback_has_two_parameters() {
    let runtime = Runtime::new().unwrap();
    let funcs = format!(
        r#"{CONFIGURE}
        (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (result i32)
          (call $status (local.get $n)) (i32.const 1))"#
    );
    let p = plugin(
        &runtime,
        &module("0_1_0", BUMP, &funcs),
        "c",
        PluginLimits::default(),
    );
    assert_eq!(p.module.abi_version(), weft_abi::AbiVersion::V0_1_0);
    let mut vm = Vm::new(p).unwrap();
    let mut s = stream(&[]);
    let ctx = vm.create_stream_context().unwrap();
    assert_eq!(
        vm.on_request_headers(ctx, &mut s, 7, false).unwrap(),
        Action::Pause
    );
    assert_eq!(header(&mut s, "x-status").as_deref(), Some("07"));
}

#[test]
fn shared_data_compare_and_swap_across_vms() {
    let runtime = Runtime::new().unwrap();
    // Each request: read x-in's value as the expected CAS digit ('0' = none),
    // set shared key "x-in" to "v" with it, and record the status.
    let funcs = format!(
        "{CONFIGURE}{}",
        headers_fn(
            r#"(drop (call $get_value (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 200) (i32.const 204)))
               (call $status (call $set_shared (i32.const 100) (i32.const 4) (i32.const 110) (i32.const 5)
                 (i32.sub (i32.load8_u (i32.load (i32.const 200))) (i32.const 48))))
               (drop (call $get_shared (i32.const 100) (i32.const 4) (i32.const 208) (i32.const 212) (i32.const 216)))
               (i32.store8 (i32.const 302) (i32.add (i32.const 48) (i32.load (i32.const 216))))
               (drop (call $add (i32.const 0) (i32.const 110) (i32.const 5) (i32.const 302) (i32.const 1)))
               (i32.const 0)"#
        )
    );
    let p = plugin(
        &runtime,
        &module("0_2_1", BUMP, &funcs),
        "c",
        PluginLimits::default(),
    );
    let mut worker_a = Vm::new(p.clone()).unwrap();
    let mut worker_b = Vm::new(p).unwrap();
    let run = |vm: &mut Vm, cas: &str| {
        let mut s = stream(&[("x-in", cas)]);
        let ctx = vm.create_stream_context().unwrap();
        vm.on_request_headers(ctx, &mut s, 1, true).unwrap();
        (
            header(&mut s, "x-status").unwrap(),
            header(&mut s, "x-out").unwrap(),
        )
    };
    // No CAS: always succeeds; the token starts at 1.
    assert_eq!(run(&mut worker_a, "0"), ("00".into(), "1".into()));
    // The other worker's VM sees the same entry and updates it with its token.
    assert_eq!(run(&mut worker_b, "1"), ("00".into(), "2".into()));
    // A stale token loses: CAS_MISMATCH, the value keeps token 2.
    assert_eq!(run(&mut worker_a, "1"), ("08".into(), "2".into()));
}

#[test]
fn metrics_defined_by_every_vm_are_one_metric() {
    let runtime = Runtime::new().unwrap();
    // on_request_headers: define counter "requests" (id at 400), add 2,
    // and record the status of get_metric.
    let funcs = format!(
        "{CONFIGURE}{}",
        headers_fn(
            r#"(drop (call $define_metric (i32.const 0) (i32.const 160) (i32.const 8) (i32.const 400)))
               (drop (call $increment_metric (i32.load (i32.const 400)) (i64.const 2)))
               (call $status (call $get_metric (i32.load (i32.const 400)) (i32.const 408)))
               (i32.const 0)"#
        )
    );
    let p = plugin(
        &runtime,
        &module("0_2_1", BUMP, &funcs),
        "c",
        PluginLimits::default(),
    );
    for _ in 0..2 {
        let mut vm = Vm::new(p.clone()).unwrap();
        let mut s = stream(&[]);
        let ctx = vm.create_stream_context().unwrap();
        vm.on_request_headers(ctx, &mut s, 0, true).unwrap();
        assert_eq!(header(&mut s, "x-status").as_deref(), Some("00"));
    }
    let metrics = runtime.metrics();
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0].name, "requests");
    assert_eq!(metrics[0].read(), weft_abi::MetricValue::Value(4));
}

#[test]
fn tick_period_and_on_tick() {
    let runtime = Runtime::new().unwrap();
    // on_configure sets a 25 ms period; each tick adds 1 to counter "requests".
    let funcs = r#"
      (func (export "proxy_on_configure") (param i32 i32) (result i32)
        (drop (call $set_tick (i32.const 25)))
        (drop (call $define_metric (i32.const 0) (i32.const 160) (i32.const 8) (i32.const 400)))
        (i32.const 1))
      (func (export "proxy_on_tick") (param i32)
        (drop (call $increment_metric (i32.load (i32.const 400)) (i64.const 1))))"#;
    let mut vm = Vm::new(plugin(
        &runtime,
        &module("0_2_1", BUMP, funcs),
        "c",
        PluginLimits::default(),
    ))
    .unwrap();
    assert_eq!(vm.tick_period(), Some(Duration::from_millis(25)));
    vm.on_tick().unwrap();
    vm.on_tick().unwrap();
    assert_eq!(runtime.metrics()[0].read(), weft_abi::MetricValue::Value(2));

    // Without proxy_on_tick there is nothing to call, so no period either.
    let wat = module("0_2_1", BUMP, CONFIGURE);
    let vm = Vm::new(plugin(&runtime, &wat, "c", PluginLimits::default())).unwrap();
    assert_eq!(vm.tick_period(), None);
}

#[test]
fn foreign_functions_by_name() {
    let runtime = Runtime::new().unwrap();
    runtime.register_foreign_function("reverse", |args| Ok(args.iter().rev().copied().collect()));
    // Call "reverse" on x-in's value and add the result as x-out; then call
    // "missing" and record its status.
    let funcs = format!(
        "{CONFIGURE}{}",
        headers_fn(
            r#"(drop (call $get_value (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 200) (i32.const 204)))
               (drop (call $foreign (i32.const 170) (i32.const 7) (i32.load (i32.const 200)) (i32.load (i32.const 204))
                 (i32.const 208) (i32.const 212)))
               (drop (call $add (i32.const 0) (i32.const 110) (i32.const 5) (i32.load (i32.const 208)) (i32.load (i32.const 212))))
               (call $status (call $foreign (i32.const 180) (i32.const 7) (i32.const 0) (i32.const 0) (i32.const 208) (i32.const 212)))
               (i32.const 0)"#
        )
    );
    let mut vm = start_vm(&runtime, &funcs);
    let (result, mut s) = request(&mut vm, &[("x-in", "abc")]);
    result.unwrap();
    assert_eq!(header(&mut s, "x-out").as_deref(), Some("cba"));
    assert_eq!(
        header(&mut s, "x-status").as_deref(),
        Some("01"),
        "unknown name: NOT_FOUND"
    );
}

#[test]
fn buffer_status_reports_the_configuration_size() {
    let runtime = Runtime::new().unwrap();
    // Accept the configuration only if proxy_get_buffer_status agrees with
    // the size on_configure was given.
    let funcs = r#"
      (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
        (if (call $buffer_status (i32.const 7) (i32.const 200) (i32.const 204)) (then (return (i32.const 0))))
        (i32.eq (i32.load (i32.const 200)) (local.get $size)))"#;
    let wat = module("0_2_1", BUMP, funcs);
    assert!(
        Vm::new(plugin(
            &runtime,
            &wat,
            "twelve bytes",
            PluginLimits::default()
        ))
        .is_ok()
    );
}

#[test]
fn abi_0_1_0_get_configuration_follows_the_phase() {
    let runtime = Runtime::new().unwrap();
    // Accept only if on_vm_start sees "vm..." and on_configure "plugin...".
    let funcs = r#"
      (func $first (result i32)
        (drop (call $get_configuration (i32.const 200) (i32.const 204)))
        (i32.load8_u (i32.load (i32.const 200))))
      (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
        (i32.eq (call $first) (i32.const 118)))
      (func (export "proxy_on_configure") (param i32 i32) (result i32)
        (i32.eq (call $first) (i32.const 112)))"#;
    let wat = module("0_1_0", BUMP, funcs);
    let make = |vm_configuration: &str| {
        let mut p = Arc::into_inner(plugin(
            &runtime,
            &wat,
            "plugin config",
            PluginLimits::default(),
        ))
        .unwrap();
        p.vm_configuration = vm_configuration.as_bytes().to_vec();
        Arc::new(p)
    };
    assert!(Vm::new(make("vm config")).is_ok());
    assert!(matches!(
        Vm::new(make("other")),
        Err(VmError::Rejected {
            callback: "proxy_on_vm_start",
            ..
        })
    ));
}

#[test]
fn capabilities_deny_host_functions_not_listed() {
    let runtime = Runtime::new().unwrap();
    let funcs = format!(
        "{CONFIGURE}{}",
        headers_fn(
            r#"(call $status (call $set_shared (i32.const 100) (i32.const 4) (i32.const 110) (i32.const 5) (i32.const 0)))
               (i32.const 0)"#
        )
    );
    let wat = module("0_2_1", BUMP, &funcs);
    let allow = |functions: &[&str]| Capabilities {
        host_functions: Some(functions.iter().map(|f| f.to_string()).collect()),
    };
    let start = |capabilities: &Capabilities| {
        let module =
            PluginModule::from_bytes_with(&runtime, "caps.wat", wat.as_bytes(), capabilities)
                .unwrap();
        let mut p = Arc::into_inner(plugin(&runtime, &wat, "c", PluginLimits::default())).unwrap();
        p.module = module;
        Vm::new(Arc::new(p)).unwrap()
    };
    // on_configure needs the first two; proxy_set_shared_data is not listed.
    let mut vm = start(&allow(&[
        "proxy_get_buffer_bytes",
        "proxy_log",
        "proxy_add_header_map_value",
    ]));
    let (result, mut s) = request(&mut vm, &[]);
    result.unwrap();
    assert_eq!(
        header(&mut s, "x-status").as_deref(),
        Some("10"),
        "INTERNAL_FAILURE"
    );

    let mut vm = start(&allow(&[
        "proxy_get_buffer_bytes",
        "proxy_log",
        "proxy_add_header_map_value",
        "proxy_set_shared_data",
    ]));
    let (result, mut s) = request(&mut vm, &[]);
    result.unwrap();
    assert_eq!(header(&mut s, "x-status").as_deref(), Some("00"));

    match PluginModule::from_bytes_with(
        &runtime,
        "caps.wat",
        wat.as_bytes(),
        &allow(&["proxy_teleport"]),
    ) {
        Err(weft_abi::LoadError::UnknownCapability { function }) => {
            assert_eq!(function, "proxy_teleport")
        }
        other => panic!("expected UnknownCapability, got {:?}", other.err()),
    }
}

#[test]
fn abi_0_1_0_continue_request_and_response_continue_a_paused_stream() {
    let runtime = Runtime::new().unwrap();
    // Pauses each request; the next tick continues it with 0.1.0's calls.
    let wat = r#"(module
  (import "env" "proxy_continue_request" (func $continue_request))
  (import "env" "proxy_continue_response" (func $continue_response))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $paused (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_1_0"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32) (result i32)
    (global.set $paused (local.get $ctx))
    (i32.const 1))
  (func (export "proxy_on_tick") (param i32)
    (drop (call $effective (global.get $paused)))
    (call $continue_request)
    (call $continue_response)))"#;
    let mut vm = Vm::new(plugin(&runtime, wat, "", PluginLimits::default())).unwrap();
    let mut s = stream(&[]);
    let ctx = vm.create_stream_context().unwrap();
    assert_eq!(
        vm.on_request_headers(ctx, &mut s, 0, true).unwrap(),
        Action::Pause
    );
    vm.lend_streams(vec![(ctx, s)]);
    vm.on_tick().unwrap();
    let actions = vm.take_stream_actions();
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert_eq!(actions[0].0, ctx);
    assert!(matches!(
        actions[0].1,
        weft_abi::StreamAction::Continue(weft_abi::StreamType::HttpRequest)
    ));
    assert!(matches!(
        actions[1].1,
        weft_abi::StreamAction::Continue(weft_abi::StreamType::HttpResponse)
    ));
}

/// Envoy's host serves ABI 0.1.0's `proxy_clear_route_cache` and
/// `proxy_continue_request`/`_response` returning a status (the spec says
/// nothing); modules built for it (the published AssemblyScript SDK)
/// import them so, and they link and work.
#[test]
fn abi_0_1_0_calls_imported_with_a_status_result_link_and_work() {
    let runtime = Runtime::new().unwrap();
    let wat = r#"(module
  (import "env" "proxy_clear_route_cache" (func $clear (result i32)))
  (import "env" "proxy_continue_request" (func $continue (result i32)))
  (import "env" "proxy_continue_response" (func $continue_response (result i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_1_0"))
  (func (export "malloc") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32) (result i32)
    (if (call $clear) (then unreachable))
    (i32.const 1))
  (func (export "proxy_on_tick") (param i32)
    (if (call $continue) (then unreachable))))"#;
    let mut vm = Vm::new(plugin(&runtime, wat, "", PluginLimits::default())).unwrap();
    let (result, stream) = request(&mut vm, &[]);
    assert!(matches!(result, Ok(Action::Pause)), "{result:?}");
    // The paused stream (context 2) is lent to the tick, which continues it.
    vm.lend_streams(vec![(2, stream)]);
    vm.on_tick().unwrap();
    let _ = vm.take_lent_streams();
    assert_eq!(vm.take_stream_actions().len(), 1);
}

#[test]
fn a_module_whose_memory_starts_over_the_limit_is_refused_saying_so() {
    let runtime = Runtime::new().unwrap();
    let wat = module("0_2_1", BUMP, "").replace(
        "(memory (export \"memory\") 1)",
        "(memory (export \"memory\") 2000)",
    );
    let limits = PluginLimits {
        memory_bytes: 64 << 20,
        ..PluginLimits::default()
    };
    let message = match Vm::new(plugin(&runtime, &wat, "c", limits)) {
        Err(err @ VmError::Instantiate { .. }) => err.to_string(),
        other => panic!("expected an instantiation error, got {:?}", other.err()),
    };
    assert!(
        message.contains(
            "its memory `memory` starts at 2000 pages (125 MiB), over the plugin's memory limit of 64 MiB (limits.memory_mb)"
        ),
        "{message}"
    );
}

#[test]
fn an_export_with_the_wrong_signature_is_named_with_its_type() {
    let runtime = Runtime::new().unwrap();
    for (funcs, want) in [
        (
            r#"(func (export "proxy_on_vm_start") (param i64) (result i32) (i32.const 1))"#,
            "export proxy_on_vm_start is (i64) -> i32, not the ABI's signature for it",
        ),
        (
            r#"(func (export "proxy_on_request_headers") (param i32) (result i32) (i32.const 0))"#,
            "export proxy_on_request_headers is (i32) -> i32, not the ABI's signature for it",
        ),
    ] {
        let wat = module("0_2_1", BUMP, funcs);
        let message = match Vm::new(plugin(&runtime, &wat, "c", PluginLimits::default())) {
            Err(err) => err.to_string(),
            Ok(_) => panic!("{funcs} must not start"),
        };
        assert!(message.contains(want), "{message}");
    }
}

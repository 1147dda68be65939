//! The filter chain inside a real `weft proxy`: local responses, failure
//! policies and recovery of a crashed VM, with WAT filters.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::time::Duration;

use support::{PROPERTY_ECHO, Upstream, Weft, eventually, send};

/// A filter that answers 403 itself when the request has `x-deny`, and
/// traps (`unreachable`) when it has `x-crash`.
const GUARD: &str = r#"(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $respond (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 100) "x-deny")
  (data (i32.const 110) "x-crash")
  (data (i32.const 120) "denied by filter")
  (data (i32.const 200) "\01\00\00\00\0b\00\00\00\03\00\00\00x-denied-by\00wat\00")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32) (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size))) (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func $has (param $key i32) (param $len i32) (result i32)
    (i32.eqz (call $get (i32.const 0) (local.get $key) (local.get $len) (i32.const 300) (i32.const 304))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (call $has (i32.const 110) (i32.const 7)) (then (unreachable)))
    (if (call $has (i32.const 100) (i32.const 6))
      (then
        (drop (call $respond (i32.const 403) (i32.const 0) (i32.const 0)
          (i32.const 120) (i32.const 16) (i32.const 200) (i32.const 28) (i32.const -1)))
        (return (i32.const 1))))
    (i32.const 0)))"#;

fn config(dir: &std::path::Path, upstream: std::net::SocketAddr, policy: &str) -> String {
    let module = dir.join("guard.wat");
    std::fs::write(&module, GUARD).unwrap();
    format!(
        r#"
workers: 1
admin: {{address: 127.0.0.1:0}}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    cluster: backend
    filters: [guard]
clusters:
  - name: backend
    endpoints: ["{upstream}"]
plugins:
  - name: guard
    module: {}
    failure_policy: {policy}
"#,
        module.display()
    )
}

#[test]
fn a_filter_answers_locally_and_the_upstream_never_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start();
    let weft = Weft::proxy(&config(dir.path(), upstream.addr, "fail_closed"));

    let got = send(weft.addr, "GET", "/secret", &[("x-deny", "1")], "");
    assert_eq!(got.status, 403);
    assert_eq!(got.body, "denied by filter");
    assert_eq!(got.headers["x-denied-by"], "wat");
    assert!(upstream.seen.lock().unwrap().is_empty());

    let got = send(weft.addr, "GET", "/open", &[], "");
    assert_eq!(got.status, 200);
    assert_eq!(upstream.seen.lock().unwrap().len(), 1);
}

#[test]
fn fail_closed_plugin_that_traps_gives_503_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start();
    let weft = Weft::proxy(&config(dir.path(), upstream.addr, "fail_closed"));

    let got = send(weft.addr, "GET", "/", &[("x-crash", "1")], "");
    assert_eq!(got.status, 503);
    assert_eq!(got.headers["x-weft-error"], "filter `guard` failed");
    let log = weft.wait_for_log("proxy_on_request_headers trapped");
    assert!(
        log.contains("unreachable"),
        "the trap is logged with its cause:\n{log}"
    );

    // After the backoff (100 ms after a first failure), a new VM serves.
    std::thread::sleep(Duration::from_millis(250));
    let got = send(weft.addr, "GET", "/", &[], "");
    assert_eq!(got.status, 200, "{}", weft.log());
    weft.wait_for_log("generation=2");
    assert_eq!(upstream.seen.lock().unwrap().len(), 1);

    let (_, metrics) = get_text(weft.listeners["admin"], "/metrics");
    assert!(
        metrics.contains("weft_plugin_traps_total{plugin=\"guard\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weft_plugin_vm_starts_total{plugin=\"guard\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weft_plugin_timeouts_total{plugin=\"guard\"} 0\n"),
        "{metrics}"
    );
}

#[test]
fn a_plugin_in_a_crash_loop_is_restarted_less_and_less_often() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start();
    let weft = Weft::proxy(&config(dir.path(), upstream.addr, "fail_closed"));
    // Every request crashes the VM. With a fixed 100 ms backoff, 1.5 s of
    // requests would restart it ~15 times; doubling backoff (100, 200,
    // 400, 800 ms...) allows at most 4 restarts.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        assert_eq!(
            send(weft.addr, "GET", "/", &[("x-crash", "1")], "").status,
            503
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, metrics) = get_text(weft.listeners["admin"], "/metrics");
    let starts: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("weft_plugin_vm_starts_total{plugin=\"guard\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((2..=5).contains(&starts), "{starts} VM starts:\n{metrics}");
    assert!(upstream.seen.lock().unwrap().is_empty());
}

#[test]
fn fail_open_plugin_that_traps_lets_the_request_through() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start();
    let weft = Weft::proxy(&config(dir.path(), upstream.addr, "fail_open"));

    let got = send(weft.addr, "GET", "/", &[("x-crash", "1")], "");
    assert_eq!(got.status, 200);
    assert_eq!(got.body, "upstream says hi");
    weft.wait_for_log("plugin is fail-open");
}

/// A filter whose root context asks for a 20 ms timer and logs each tick.
const TICKER: &str = r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $set_tick (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "tick from the filter")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $set_tick (i32.const 20))) (i32.const 1))
  (func (export "proxy_on_tick") (param i32)
    (drop (call $log (i32.const 2) (i32.const 100) (i32.const 20)))))"#;

#[test]
fn timers_tick_on_every_worker() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start();
    let module = dir.path().join("ticker.wat");
    std::fs::write(&module, TICKER).unwrap();
    let weft = Weft::proxy(&format!(
        "workers: 2\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    cluster: c\n    filters: [ticker]\nclusters:\n  - name: c\n    endpoints: [\"{}\"]\nplugins:\n  - name: ticker\n    module: {}\n",
        upstream.addr,
        module.display()
    ));
    eventually(Duration::from_secs(10), || {
        let log = weft.log();
        let ticks = log.matches("tick from the filter").count();
        let workers = ["weft-worker-0", "weft-worker-1"]
            .iter()
            .filter(|w| {
                log.lines()
                    .any(|l| l.contains("tick from the filter") && l.contains(*w))
            })
            .count();
        if ticks >= 6 && workers == 2 {
            Ok(())
        } else {
            Err(format!("{ticks} ticks from {workers} workers:\n{log}"))
        }
    });
}

#[test]
fn properties_of_the_request_connection_and_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start();
    let module = dir.path().join("props.wat");
    std::fs::write(&module, PROPERTY_ECHO).unwrap();
    let weft = Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    cluster: backend\n    filters: [props]\nclusters:\n  - name: backend\n    endpoints: [\"{}\"]\nplugins:\n  - name: props\n    module: {}\n",
        upstream.addr,
        module.display()
    ));
    let property = |name: &str| {
        let got = send(weft.addr, "GET", "/a/b?c=d", &[("x-want", name)], "");
        (got.status, got.body)
    };
    assert_eq!(property("request.url_path"), (200, "/a/b".into()));
    assert_eq!(property("request.query"), (200, "c=d".into()));
    assert_eq!(property("request.host"), (200, "test.weft".into()));
    assert_eq!(property("xds.cluster_name"), (200, "backend".into()));
    assert_eq!(property("plugin_name"), (200, "props".into()));
    let (status, address) = property("source.address");
    assert_eq!(status, 200);
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    assert_eq!(
        property("destination.address"),
        (200, weft.addr.to_string())
    );
    assert_eq!(property("no.such.property"), (404, String::new()));
    assert!(upstream.seen.lock().unwrap().is_empty());
}

/// A filter that appends its plugin name to `x-req` on the request and to
/// `x-resp` on the response.
const APPENDER: &str = r#"(module
  (import "env" "proxy_get_property" (func $prop (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 100) "plugin_name\00")
  (data (i32.const 120) "x-req")
  (data (i32.const 130) "x-resp")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32) (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size))) (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func $name
    (drop (call $prop (i32.const 100) (i32.const 12) (i32.const 300) (i32.const 304))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $name)
    (drop (call $add (i32.const 0) (i32.const 120) (i32.const 5) (i32.load (i32.const 300)) (i32.load (i32.const 304))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $name)
    (drop (call $add (i32.const 2) (i32.const 130) (i32.const 6) (i32.load (i32.const 300)) (i32.load (i32.const 304))))
    (i32.const 0)))"#;

#[test]
fn chain_runs_requests_in_order_and_responses_in_reverse() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start();
    let module = dir.path().join("appender.wat");
    std::fs::write(&module, APPENDER).unwrap();
    let m = module.display();
    let weft = Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    cluster: c\n    filters: [first, second, third]\nclusters:\n  - name: c\n    endpoints: [\"{}\"]\nplugins:\n  - {{name: first, module: {m}}}\n  - {{name: second, module: {m}}}\n  - {{name: third, module: {m}}}\n",
        upstream.addr
    ));
    let got = send(weft.addr, "GET", "/", &[], "");
    assert_eq!(got.status, 200);
    let resp: Vec<&str> = got
        .headers
        .get_all("x-resp")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(resp, ["third", "second", "first"]);
    let seen = upstream.seen.lock().unwrap();
    let req: Vec<&str> = seen[0]
        .headers
        .get_all("x-req")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(req, ["first", "second", "third"]);
}

/// A filter that counts requests and records how many headers each had.
const COUNTER: &str = r#"(module
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment (param i32 i64) (result i32)))
  (import "env" "proxy_record_metric" (func $record (param i32 i64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "wat.requests")
  (data (i32.const 120) "wat.header_count")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $define (i32.const 0) (i32.const 100) (i32.const 12) (i32.const 200)))
    (drop (call $define (i32.const 2) (i32.const 120) (i32.const 16) (i32.const 204)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $increment (i32.load (i32.const 200)) (i64.const 1)))
    (drop (call $record (i32.load (i32.const 204)) (i64.extend_i32_u (local.get 1))))
    (i32.const 0)))"#;

fn get_text(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let got = send(addr, "GET", path, &[], "");
    (got.status, got.body)
}

#[test]
fn admin_endpoint_exports_plugin_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start();
    let module = dir.path().join("counter.wat");
    std::fs::write(&module, COUNTER).unwrap();
    let weft = Weft::proxy(&format!(
        "workers: 2\nadmin: {{address: 127.0.0.1:0}}\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    cluster: c\n    filters: [counter]\n    request_id: false\n    traceparent: false\nclusters:\n  - name: c\n    endpoints: [\"{}\"]\nplugins:\n  - name: counter\n    module: {}\n",
        upstream.addr,
        module.display()
    ));
    for _ in 0..3 {
        assert_eq!(send(weft.addr, "GET", "/", &[("x-a", "1")], "").status, 200);
    }
    let admin = weft.listeners["admin"];
    assert_eq!(get_text(admin, "/ready"), (200, "ready\n".into()));

    let (status, metrics) = get_text(admin, "/metrics");
    assert_eq!(status, 200);
    // Three requests, whichever worker's VM took them, land in one metric.
    assert!(
        metrics.contains("# TYPE wat_requests counter\nwat_requests 3\n"),
        "{metrics}"
    );
    // Each request had 4 pseudo-headers plus x-a: 5.
    assert!(
        metrics.contains("# TYPE wat_header_count histogram\n"),
        "{metrics}"
    );
    assert!(metrics.contains("wat_header_count_count 3\n"), "{metrics}");
    // One VM per worker. Each worker warms its own as it starts, and a
    // busy machine may still be starting the second while the first
    // serves all three requests: it is waited for, up to 10 s.
    eventually(Duration::from_secs(10), || {
        let (_, now) = get_text(admin, "/metrics");
        if now.contains("weft_plugin_vm_starts_total{plugin=\"counter\"} 2\n") {
            Ok(())
        } else {
            Err(now)
        }
    });
    assert!(metrics.contains("wat_header_count_sum 15\n"), "{metrics}");
    assert!(
        metrics.contains("wat_header_count_bucket{le=\"2\"} 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wat_header_count_bucket{le=\"5\"} 3\n"),
        "{metrics}"
    );

    let (status, plugins) = get_text(admin, "/plugins");
    assert_eq!(status, 200);
    let plugins: serde_json::Value = serde_json::from_str(&plugins).unwrap();
    assert_eq!(plugins[0]["name"], "counter");
    assert_eq!(plugins[0]["abi_version"], "0.2.1");
    assert_eq!(get_text(admin, "/nope").0, 404);
    // Guest callbacks are timed, one in 8 per VM: 40 more requests (at
    // least two callbacks each) make samples on both workers.
    for _ in 0..40 {
        assert_eq!(send(weft.addr, "GET", "/", &[], "").status, 200);
    }
    let (_, later) = get_text(admin, "/metrics");
    let value = |name: &str| -> i64 {
        later
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {later}"))
    };
    let callbacks = value("weft_plugin_callback_duration_seconds_count{plugin=\"counter\"}");
    assert!(callbacks >= 1, "{later}");
    assert_eq!(
        value("weft_plugin_callback_duration_seconds_bucket{plugin=\"counter\",le=\"+Inf\"}"),
        callbacks
    );
    // Both VMs' linear memory, whole wasm pages.
    let memory = value("weft_plugin_memory_bytes{plugin=\"counter\"}");
    assert!(memory >= 2 * 65536 && memory % 65536 == 0, "{later}");
}

/// A filter that registers queue `events` when configured, enqueues an item
/// on every request, and logs each item it dequeues in `on_queue_ready`.
const QUEUE: &str = r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_register_shared_queue" (func $register (param i32 i32 i32) (result i32)))
  (import "env" "proxy_resolve_shared_queue" (func $resolve (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_enqueue_shared_queue" (func $enqueue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_dequeue_shared_queue" (func $dequeue (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 100) "events")
  (data (i32.const 120) "item from a request")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32) (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size))) (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (i32.eqz (call $register (i32.const 100) (i32.const 6) (i32.const 200))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $resolve (i32.const 0) (i32.const 0) (i32.const 100) (i32.const 6) (i32.const 204)))
    (drop (call $enqueue (i32.load (i32.const 204)) (i32.const 120) (i32.const 19)))
    (i32.const 0))
  (func (export "proxy_on_queue_ready") (param $root i32) (param $queue i32)
    (block $empty (loop $each
      (br_if $empty (call $dequeue (local.get $queue) (i32.const 208) (i32.const 212)))
      (drop (call $log (i32.const 2) (i32.load (i32.const 208)) (i32.load (i32.const 212))))
      (br $each)))))"#;

#[test]
fn shared_queue_items_reach_the_registering_vm() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start();
    let module = dir.path().join("queue.wat");
    std::fs::write(&module, QUEUE).unwrap();
    let weft = Weft::proxy(&format!(
        "workers: 2\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    cluster: c\n    filters: [queue]\nclusters:\n  - name: c\n    endpoints: [\"{}\"]\nplugins:\n  - name: queue\n    module: {}\n",
        upstream.addr,
        module.display()
    ));
    for _ in 0..5 {
        assert_eq!(send(weft.addr, "GET", "/", &[], "").status, 200);
    }
    // Whichever worker took each request, every item is dequeued (by the VM
    // that registered the queue last) and logged once.
    eventually(Duration::from_secs(10), || {
        let log = weft.log();
        let items = log.matches("item from a request").count();
        // More than 5 is a failure at once: waiting cannot make it fewer.
        assert!(items <= 5, "{items} items:\n{log}");
        if items == 5 {
            Ok(())
        } else {
            Err(format!("{items} items:\n{log}"))
        }
    });
}

/// A filter that pauses every request in its headers callback and lets it
/// go on from its next timer tick, after adding `x-delayed: yes` to it
/// (reaching the paused stream with proxy_set_effective_context).
const DELAYER: &str = r#"(module
  (import "env" "proxy_set_tick_period_milliseconds" (func $set_tick (param i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $paused (mut i32) (i32.const 0))
  (data (i32.const 100) "x-delayed")
  (data (i32.const 120) "yes")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $set_tick (i32.const 30))) (i32.const 1))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (global.set $paused (local.get $ctx))
    (i32.const 1))
  (func (export "proxy_on_tick") (param i32)
    (if (global.get $paused)
      (then
        (if (i32.eqz (call $effective (global.get $paused)))
          (then
            (drop (call $add (i32.const 0) (i32.const 100) (i32.const 9) (i32.const 120) (i32.const 3)))
            (drop (call $continue (i32.const 0)))))
        (global.set $paused (i32.const 0))))))"#;

#[test]
fn a_paused_request_goes_on_when_the_filter_continues_it_from_a_timer() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start();
    let module = dir.path().join("delayer.wat");
    std::fs::write(&module, DELAYER).unwrap();
    let weft = Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    cluster: c\n    filters: [delayer]\nclusters:\n  - name: c\n    endpoints: [\"{}\"]\nplugins:\n  - name: delayer\n    module: {}\n",
        upstream.addr,
        module.display()
    ));
    let got = send(weft.addr, "GET", "/later", &[], "");
    assert_eq!(got.status, 200, "{}", weft.log());
    assert_eq!(got.body, "upstream says hi");
    let seen = upstream.seen.lock().unwrap();
    assert_eq!(
        seen[0].headers["x-delayed"], "yes",
        "the tick edited the paused request"
    );
}

#[test]
fn a_paused_request_fails_closed_when_the_plugin_crashes_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start();
    let module = dir.path().join("crasher.wat");
    // The same filter, but its timer traps instead of continuing.
    let crasher = DELAYER.replace(
        "(if (i32.eqz (call $effective (global.get $paused)))",
        "(if (i32.eqz (call $effective (global.get $paused))) (then unreachable))\n        (if (i32.const 0)",
    );
    std::fs::write(&module, crasher).unwrap();
    let weft = Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    cluster: c\n    filters: [delayer]\nclusters:\n  - name: c\n    endpoints: [\"{}\"]\nplugins:\n  - name: delayer\n    module: {}\n",
        upstream.addr,
        module.display()
    ));
    let got = send(weft.addr, "GET", "/later", &[], "");
    assert_eq!(got.status, 503, "{}", weft.log());
    assert_eq!(got.headers["x-weft-error"], "filter `delayer` failed");
    assert!(upstream.seen.lock().unwrap().is_empty());
}

#[test]
fn a_paused_request_the_filter_closes_gets_no_response() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start();
    let module = dir.path().join("closer.wat");
    // The same filter, but its timer closes the stream instead.
    let closer = DELAYER.replace(
        r#"(import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))"#,
        r#"(import "env" "proxy_close_stream" (func $continue (param i32) (result i32)))"#,
    );
    std::fs::write(&module, closer).unwrap();
    let weft = Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    cluster: c\n    filters: [delayer]\nclusters:\n  - name: c\n    endpoints: [\"{}\"]\nplugins:\n  - name: delayer\n    module: {}\n",
        upstream.addr,
        module.display()
    ));
    let response = support::send_raw(weft.addr, b"GET / HTTP/1.1\r\nhost: t\r\n\r\n");
    assert_eq!(response, "", "the connection closes without a response");
    weft.wait_for_log("filter `delayer` closed the stream");
    assert!(upstream.seen.lock().unwrap().is_empty());
}

/// Counts the requests its VM saw (in a global) and tells the upstream as
/// `x-seen` (one digit).
const SEEN: &str = r#"(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $seen (mut i32) (i32.const 0))
  (data (i32.const 100) "x-seen")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (global.set $seen (i32.add (global.get $seen) (i32.const 1)))
    (i32.store8 (i32.const 200) (i32.add (i32.const 48) (global.get $seen)))
    (drop (call $add (i32.const 0) (i32.const 100) (i32.const 6) (i32.const 200) (i32.const 1)))
    (i32.const 0)))"#;

#[test]
fn isolation_request_gives_every_request_a_fresh_vm() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("seen.wat");
    std::fs::write(&module, SEEN).unwrap();
    let weft = Weft::proxy(&format!(
        "workers: 1\nadmin: {{address: 127.0.0.1:0}}\nlisteners:\n  - {{name: shared, address: 127.0.0.1:0, cluster: c, filters: [shared]}}\n  - {{name: isolated, address: 127.0.0.1:0, cluster: c, filters: [isolated]}}\nclusters:\n  - {{name: c, endpoints: [\"{}\"]}}\nplugins:\n  - {{name: shared, module: {m}}}\n  - {{name: isolated, module: {m}, isolation: request}}\n",
        upstream.addr,
        m = module.display()
    ));
    let seen = |listener: &str| {
        assert_eq!(
            send(weft.listeners[listener], "GET", "/", &[], "").status,
            200
        );
        upstream.seen.lock().unwrap().last().unwrap().headers["x-seen"].clone()
    };
    // One VM per worker remembers; a VM per request cannot.
    assert_eq!(
        [seen("shared"), seen("shared"), seen("shared")],
        ["1", "2", "3"]
    );
    assert_eq!(
        [seen("isolated"), seen("isolated"), seen("isolated")],
        ["1", "1", "1"]
    );
    let (_, metrics) = get_text(weft.listeners["admin"], "/metrics");
    assert!(
        metrics.contains("weft_plugin_vm_starts_total{plugin=\"shared\"} 1\n"),
        "{metrics}"
    );
    // The VM started for the worker, then one per request.
    assert!(
        metrics.contains("weft_plugin_vm_starts_total{plugin=\"isolated\"} 4\n"),
        "{metrics}"
    );
    // A finished request's VM is gone (once the proxy is done with its
    // stream): one VM's memory is left.
    eventually(Duration::from_secs(10), || {
        let (_, metrics) = get_text(weft.listeners["admin"], "/metrics");
        if metrics.contains("weft_plugin_memory_bytes{plugin=\"isolated\"} 65536\n") {
            Ok(())
        } else {
            Err(metrics)
        }
    });
    assert!(
        metrics.contains("weft_plugin_retired_vms{plugin=\"isolated\"} 0\n"),
        "{metrics}"
    );
}

#[test]
fn with_isolation_request_a_trap_hurts_only_its_own_request() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start();
    let config = config(dir.path(), upstream.addr, "fail_closed") + "    isolation: request\n";
    let weft = Weft::proxy(&config);
    let got = send(weft.addr, "GET", "/", &[("x-crash", "1")], "");
    assert_eq!(got.status, 503);
    // No backoff: the very next request has its own VM.
    let got = send(weft.addr, "GET", "/", &[], "");
    assert_eq!(got.status, 200, "{}", weft.log());
    let (_, metrics) = get_text(weft.listeners["admin"], "/metrics");
    assert!(
        metrics.contains("weft_plugin_traps_total{plugin=\"guard\"} 1\n"),
        "{metrics}"
    );
}

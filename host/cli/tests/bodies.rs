//! Body callbacks in a real `weft proxy`, with a Rust filter
//! (conformance/guests/body-rewriter) that buffers whole bodies: rewriting
//! both directions, a local response decided on the request body, a body
//! arriving in several chunks, and the limit on what a filter may hold.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use support::{Upstream, Weft, filter, send, send_raw};

fn start() -> (Upstream, Weft) {
    start_with("")
}

/// The rewriter with `extra` appended to its plugin entry.
fn start_with(extra: &str) -> (Upstream, Weft) {
    let upstream = Upstream::start();
    let weft = Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    cluster: c\n    filters: [rewriter]\nclusters:\n  - name: c\n    endpoints: [\"{}\"]\nplugins:\n  - name: rewriter\n    module: {}\n{extra}",
        upstream.addr,
        filter("body_rewriter.wasm").display()
    ));
    (upstream, weft)
}

#[test]
fn request_and_response_bodies_are_rewritten() {
    let (upstream, weft) = start();
    let got = send(
        weft.addr,
        "POST",
        "/",
        &[("content-type", "text/plain")],
        "make me loud",
    );
    assert_eq!(got.status, 200);
    assert_eq!(got.body, "upstream says hi (filtered)");
    // The short response was whole in the upstream's first frame: it went
    // through the body callback before the head, which carries its new
    // length (not the upstream's, not chunked framing).
    assert_eq!(got.headers["content-length"], "27");
    assert!(got.headers.get("transfer-encoding").is_none());
    let seen = upstream.seen.lock().unwrap();
    assert_eq!(seen[0].body, "MAKE ME LOUD");
    assert_eq!(seen[0].headers["content-type"], "text/plain");
}

#[test]
fn a_response_streamed_in_pieces_is_rewritten_and_re_framed() {
    use std::io::Write;
    // An upstream that sends its head, then the body in two chunks a
    // moment apart: the body callbacks see it as it streams.
    let addr = support::raw_upstream(|tcp, _| {
        tcp.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        tcp.write_all(b"6\r\n+later\r\n0\r\n\r\n").unwrap();
    });
    let weft = Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    cluster: c\n    filters: [rewriter]\nclusters:\n  - name: c\n    endpoints: [\"{addr}\"]\nplugins:\n  - name: rewriter\n    module: {}\n",
        filter("body_rewriter.wasm").display()
    ));
    let got = send(weft.addr, "GET", "/", &[], "");
    assert_eq!(got.status, 200);
    assert_eq!(got.body, "first+later (filtered)");
    assert!(
        got.headers.get("content-length").is_none(),
        "a body still streaming when the head goes out is re-framed"
    );
}

#[test]
fn a_request_without_body_gets_only_the_response_rewritten() {
    let (upstream, weft) = start();
    let got = send(weft.addr, "GET", "/", &[], "");
    assert_eq!(got.body, "upstream says hi (filtered)");
    assert_eq!(upstream.seen.lock().unwrap()[0].body, "");
}

#[test]
fn a_filter_answers_locally_after_reading_the_body() {
    let (upstream, weft) = start();
    let got = send(weft.addr, "POST", "/", &[], "this is forbidden");
    assert_eq!(got.status, 403);
    assert_eq!(got.body, "blocked");
    assert_eq!(got.headers["x-blocked-by"], "body-rewriter");
    assert!(
        upstream.seen.lock().unwrap().is_empty(),
        "the upstream never gets the body"
    );
}

#[test]
fn a_body_in_many_chunks_is_seen_whole() {
    let (upstream, weft) = start();
    let response = send_raw(
        weft.addr,
        b"POST /chunks HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
          5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("upstream says hi (filtered)"),
        "{response}"
    );
    assert_eq!(upstream.seen.lock().unwrap()[0].body, "HELLO WORLD");
}

#[test]
fn holding_back_too_much_body_is_413() {
    let (upstream, weft) = start();
    let big = "a".repeat(5 << 20);
    let got = send(weft.addr, "POST", "/", &[], &big);
    assert_eq!(got.status, 413);
    assert_eq!(
        got.headers["x-weft-error"],
        "filter `rewriter` held back more than 4 MiB of body"
    );
    assert!(upstream.seen.lock().unwrap().is_empty());
}

#[test]
fn the_hold_limit_is_per_plugin() {
    let (upstream, weft) = start_with("    limits: {body_buffer_mb: 1}\n");
    let got = send(weft.addr, "POST", "/", &[], &"a".repeat(2 << 20));
    assert_eq!(got.status, 413);
    assert_eq!(
        got.headers["x-weft-error"],
        "filter `rewriter` held back more than 1 MiB of body"
    );
    assert!(upstream.seen.lock().unwrap().is_empty());
    // Under the limit, the same filter works.
    let got = send(weft.addr, "POST", "/", &[], "small");
    assert_eq!(got.status, 200);
}

/// Pauses every request in its headers callback and decides on the whole
/// body: `deny` in it gets a local 403; anything else continues the
/// request (answering CONTINUE from the body callback) with the body it
/// read copied into `x-body-seen`. Only `body_during_pause: deliver`
/// gives it the body while it keeps the headers paused.
const INSPECT: &str = r#"(module
  (import "env" "proxy_get_buffer_bytes" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 100) "x-body-seen")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $at))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_body") (param i32) (param $size i32) (param $end i32) (result i32)
    (local $at i32) (local $i i32)
    (if (i32.eqz (local.get $end)) (then (return (i32.const 1))))
    (drop (call $get (i32.const 0) (i32.const 0) (local.get $size) (i32.const 0) (i32.const 4)))
    (local.set $at (i32.load (i32.const 0)))
    ;; "deny" anywhere in the body: 403.
    (block $done
      (loop $scan
        (br_if $done (i32.gt_s (i32.add (local.get $i) (i32.const 4)) (local.get $size)))
        (if (i32.eq (i32.load (i32.add (local.get $at) (local.get $i))) (i32.const 0x796e6564))
          (then
            (drop (call $local (i32.const 403) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
              (i32.const 0) (i32.const 0) (i32.const -1)))
            (return (i32.const 1))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (drop (call $add (i32.const 0) (i32.const 100) (i32.const 11) (local.get $at) (local.get $size)))
    (i32.const 0)))"#;

#[test]
fn body_during_pause_deliver_gives_a_paused_plugin_the_body() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("inspect.wat");
    std::fs::write(&module, INSPECT).unwrap();
    let weft = Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - {{name: l, address: 127.0.0.1:0, cluster: c, filters: [inspect, rewriter]}}\nclusters:\n  - {{name: c, endpoints: [\"{}\"]}}\nplugins:\n  - {{name: inspect, module: {}, body_during_pause: deliver}}\n  - {{name: rewriter, module: {}}}\n",
        upstream.addr,
        module.display(),
        filter("body_rewriter.wasm").display()
    ));
    // The body read during the pause goes on through the plugins after
    // the one that paused (the rewriter upper-cases it), then upstream.
    let got = send(weft.addr, "POST", "/", &[], "hello world");
    assert_eq!(got.status, 200, "{}", weft.log());
    let seen = upstream.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.headers["x-body-seen"], "hello world");
    assert_eq!(seen.body, "HELLO WORLD");

    // Decided on the body before anything went upstream.
    let got = send(weft.addr, "POST", "/", &[], "please deny this");
    assert_eq!(got.status, 403, "{}", weft.log());
    assert_eq!(upstream.seen.lock().unwrap().len(), 1);
}

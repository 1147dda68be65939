//! A hostile Rust filter (conformance/guests/panicker) inside a real
//! `weft proxy`: a panic, an endless loop and a memory bomb each fail only
//! that plugin's request, are logged with their cause, and the plugin comes
//! back; another listener's filter never notices.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::time::Duration;

use support::{Upstream, Weft, filter, send};

fn start() -> (Upstream, Weft) {
    let upstream = Upstream::start();
    let weft = Weft::proxy(&format!(
        r#"
workers: 1
listeners:
  - name: hostile
    address: 127.0.0.1:0
    cluster: backend
    filters: [panicker]
  - name: calm
    address: 127.0.0.1:0
    cluster: backend
    filters: [hello]
clusters:
  - name: backend
    endpoints: ["{}"]
plugins:
  - name: panicker
    module: {}
    limits: {{callback_ms: 1000, memory_mb: 16}}
  - name: hello
    module: {}
    configuration: {{header: x-hello, value: world}}
"#,
        upstream.addr,
        filter("panicker.wasm").display(),
        filter("hello_rust.wasm").display()
    ));
    (upstream, weft)
}

/// Sends a request that makes the panicker misbehave; checks it fails
/// closed, that the calm listener still works meanwhile, and that the
/// hostile one recovers after the backoff.
fn misbehave(weft: &Weft, header: &str) {
    let hostile = weft.listeners["hostile"];
    let calm = weft.listeners["calm"];
    let got = send(hostile, "GET", "/", &[(header, "please")], "");
    assert_eq!(got.status, 503, "{}", weft.log());
    assert_eq!(got.headers["x-weft-error"], "filter `panicker` failed");

    let got = send(calm, "GET", "/", &[], "");
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["x-hello"], "world");

    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(
        send(hostile, "GET", "/", &[], "").status,
        200,
        "{}",
        weft.log()
    );
}

#[test]
fn a_panic_is_logged_with_its_message_and_a_symbolised_backtrace() {
    let (_upstream, weft) = start();
    misbehave(&weft, "x-panic");
    let log = weft.wait_for_log("proxy_on_request_headers trapped");
    // The panic message, printed by the guest to stderr.
    assert!(log.contains("boom: please"), "{log}");
    // The backtrace names the guest's functions (from the name section;
    // toolchains differ in how they print the crate: `panicker::explode`,
    // `panicker[hash]::explode`).
    assert!(
        log.lines()
            .any(|l| l.contains("panicker") && l.contains("::explode")),
        "{log}"
    );
}

#[test]
fn an_endless_loop_is_stopped_at_the_deadline() {
    let (_upstream, weft) = start();
    misbehave(&weft, "x-loop");
    weft.wait_for_log("proxy_on_request_headers ran longer than its 1s deadline");
}

#[test]
fn a_memory_bomb_hits_the_cap() {
    let (_upstream, weft) = start();
    misbehave(&weft, "x-alloc");
    let log = weft.wait_for_log("proxy_on_request_headers trapped");
    assert!(log.contains("memory"), "{log}");
}

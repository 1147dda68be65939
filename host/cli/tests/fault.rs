//! The fault filter (filters/fault) in a real `weft proxy`: delays and
//! aborts, by header and by percentage, and its metrics.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::time::{Duration, Instant};

use support::{Upstream, Weft, filter, send, send_many};

fn start(up: &Upstream, fault: &str) -> Weft {
    Weft::proxy(&format!(
        r#"
workers: 2
admin: {{address: 127.0.0.1:0}}
listeners:
  - name: l
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        routes:
          - {{match: {{prefix: /chaos}}, forward: {{cluster: app}}, filters: [fault]}}
          - forward: {{cluster: app}}
clusters:
  - {{name: app, endpoints: ["{}"]}}
plugins:
  - name: fault
    module: {}
    configuration: {fault}
"#,
        up.addr,
        filter("fault.wasm").display()
    ))
}

#[test]
fn header_triggered_delays_and_aborts() {
    let up = Upstream::start();
    let weft = start(
        &up,
        r#"{"delay": {"header": "x-fault-delay"}, "abort": {"header": "x-fault-abort", "body": "chaos"}}"#,
    );
    let t = Instant::now();
    let got = send(
        weft.addr,
        "GET",
        "/chaos/a",
        &[("x-fault-delay", "300")],
        "",
    );
    assert_eq!(got.status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );

    let got = send(
        weft.addr,
        "GET",
        "/chaos/b",
        &[("x-fault-abort", "418")],
        "",
    );
    assert_eq!((got.status, got.body.as_str()), (418, "chaos"));
    assert_eq!(got.headers["x-weft-fault"], "abort");

    // Both: the abort comes after the delay.
    let t = Instant::now();
    let got = send(
        weft.addr,
        "GET",
        "/chaos/c",
        &[("x-fault-delay", "200"), ("x-fault-abort", "503")],
        "",
    );
    assert_eq!(got.status, 503);
    assert!(t.elapsed() >= Duration::from_millis(200));

    // Routes without the plugin are untouched.
    let got = send(weft.addr, "GET", "/calm", &[("x-fault-abort", "500")], "");
    assert_eq!(got.status, 200);
    assert_eq!(
        up.seen.lock().unwrap().len(),
        2,
        "aborted requests never reach the upstream"
    );
}

#[test]
fn percentages_of_requests_are_aborted_and_delayed() {
    let up = Upstream::start();
    let weft = start(
        &up,
        r#"{"delay": {"fixed_ms": 5, "percent": 30}, "abort": {"status": 503, "percent": 50}}"#,
    );
    let got = send_many(weft.addr, 400, "/chaos/x", &[]);
    let aborted = got.iter().filter(|g| g.status == 503).count();
    // Expected 200; the standard deviation is 10.
    assert!((140..=260).contains(&aborted), "{aborted} of 400 aborted");
    assert_eq!(
        got.iter().filter(|g| g.status == 200).count(),
        400 - aborted
    );

    let metrics = send(weft.listeners["admin"], "GET", "/metrics", &[], "").body;
    let count = |name: &str| support::metric(&metrics, name);
    assert_eq!(count("fault_aborts_injected"), aborted as u64);
    let delayed = count("fault_delays_injected");
    // Expected 120; the standard deviation is about 9.
    assert!((70..=170).contains(&delayed), "{delayed} of 400 delayed");
}

#[test]
fn bad_configuration_is_refused_naming_the_field() {
    let up = Upstream::start();
    let stderr = support::refused(&support::one_plugin_config(
        up.addr,
        "fault",
        "fault.wasm",
        "{abort: {percent: 120}}",
    ));
    assert!(
        stderr.contains("`abort.percent`: 120 is not 0 to 100"),
        "{stderr}"
    );
}

#[test]
fn faults_only_hit_requests_that_match() {
    let up = Upstream::start();
    let weft = start(
        &up,
        r#"{"match": {"headers": {"x-weft-version": "v2"}}, "abort": {"status": 503, "percent": 100}}"#,
    );
    assert_eq!(send(weft.addr, "GET", "/chaos/a", &[], "").status, 200);
    assert_eq!(
        send(
            weft.addr,
            "GET",
            "/chaos/a",
            &[("x-weft-version", "v2")],
            ""
        )
        .status,
        503
    );
}

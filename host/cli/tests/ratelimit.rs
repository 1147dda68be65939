//! The ratelimit filter (filters/ratelimit) in a real `weft proxy` with two
//! workers: one bucket per key shared by both, 429 with Retry-After once
//! it is empty, rate-limit headers, metrics.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use support::{Upstream, Weft, filter, send};

fn start(up: &Upstream, limit: &str) -> Weft {
    Weft::proxy(&format!(
        r#"
workers: 2
admin: {{address: 127.0.0.1:0}}
listeners:
  - {{name: l, address: 127.0.0.1:0, cluster: app, filters: [limit]}}
clusters:
  - {{name: app, endpoints: ["{}"]}}
plugins:
  - name: limit
    module: {}
    configuration: {limit}
"#,
        up.addr,
        filter("ratelimit.wasm").display()
    ))
}

#[test]
fn the_bucket_empties_across_workers_and_answers_429() {
    let up = Upstream::start();
    // Five at once, then one every 100 s: nothing refills during the test.
    let weft = start(
        &up,
        r#"{"name": "api", "key": {"header": "x-api-key"}, "rate": 0.01, "burst": 5}"#,
    );
    // A new connection per request: both workers take from the bucket.
    let mut statuses = Vec::new();
    let mut remaining = Vec::new();
    for _ in 0..8 {
        let got = send(weft.addr, "GET", "/", &[("x-api-key", "alice")], "");
        statuses.push(got.status);
        if got.status == 200 {
            remaining.push(
                got.headers["x-ratelimit-remaining"]
                    .to_str()
                    .unwrap()
                    .to_string(),
            );
        } else {
            assert_eq!(got.headers["retry-after"], "100");
            assert_eq!(got.headers["x-ratelimit-limit"], "5");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    assert_eq!(remaining, ["4", "3", "2", "1", "0"]);
    assert_eq!(up.seen.lock().unwrap().len(), 5);

    // Another key has its own bucket.
    assert_eq!(
        send(weft.addr, "GET", "/", &[("x-api-key", "bob")], "").status,
        200
    );

    let metrics = send(weft.listeners["admin"], "GET", "/metrics", &[], "").body;
    assert!(metrics.contains("ratelimit_api_allowed 6\n"), "{metrics}");
    assert!(metrics.contains("ratelimit_api_limited 3\n"), "{metrics}");
}

#[test]
fn tokens_come_back_at_the_rate() {
    let up = Upstream::start();
    let weft = start(
        &up,
        r#"{"key": {"client_ip": true}, "rate": 20, "burst": 1}"#,
    );
    assert_eq!(send(weft.addr, "GET", "/", &[], "").status, 200);
    assert_eq!(send(weft.addr, "GET", "/", &[], "").status, 429);
    std::thread::sleep(std::time::Duration::from_millis(120));
    assert_eq!(send(weft.addr, "GET", "/", &[], "").status, 200);
}

#[test]
fn bad_configuration_is_refused_naming_the_field() {
    let up = Upstream::start();
    let stderr = support::refused(&support::one_plugin_config(
        up.addr,
        "limit",
        "ratelimit.wasm",
        "{key: {global: true, client_ip: true}, rate: 1, burst: 1}",
    ));
    assert!(stderr.contains("`key`: give exactly one of"), "{stderr}");
}

#[test]
fn a_bucket_per_route() {
    let up = Upstream::start();
    let weft = Weft::proxy(&format!(
        r#"
workers: 1
listeners:
  - name: l
    address: 127.0.0.1:0
    filters: [limit]
    virtual_hosts:
      - name: all
        routes:
          - {{name: a, match: {{prefix: /a}}, forward: {{cluster: app}}}}
          - {{name: b, forward: {{cluster: app}}}}
clusters:
  - {{name: app, endpoints: ["{}"]}}
plugins:
  - name: limit
    module: {}
    configuration: {{key: {{route: true}}, rate: 0.01, burst: 1}}
"#,
        up.addr,
        filter("ratelimit.wasm").display()
    ));
    assert_eq!(send(weft.addr, "GET", "/a", &[], "").status, 200);
    assert_eq!(send(weft.addr, "GET", "/a/again", &[], "").status, 429);
    assert_eq!(
        send(weft.addr, "GET", "/b", &[], "").status,
        200,
        "route b has its own bucket"
    );
}

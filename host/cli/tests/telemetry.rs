//! The telemetry filter (filters/telemetry) in a real `weft proxy`:
//! labelled metrics per route, cluster and status class on `/metrics`, a
//! JSON line per request built from properties, trace context.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use support::{Upstream, Weft, filter, send};

#[test]
fn metrics_access_log_and_trace_context() {
    let up = Upstream::start();
    let weft = Weft::proxy(&format!(
        r#"
workers: 2
admin: {{address: 127.0.0.1:0}}
listeners:
  - name: l
    address: 127.0.0.1:0
    traceparent: false
    filters: [telemetry]
    virtual_hosts:
      - name: shop
        routes:
          - {{name: health, match: {{path: /health}}, direct_response: {{status: 200, body: ok}}}}
          - {{name: app, forward: {{cluster: app}}}}
clusters:
  - {{name: app, endpoints: ["{}"]}}
plugins:
  - {{name: telemetry, module: {}}}
"#,
        up.addr,
        filter("telemetry.wasm").display()
    ));
    for _ in 0..3 {
        assert_eq!(send(weft.addr, "POST", "/app/x", &[], "12345").status, 200);
    }
    assert_eq!(send(weft.addr, "GET", "/status/503", &[], "").status, 503);
    assert_eq!(send(weft.addr, "GET", "/health", &[], "").status, 200);

    let seen = up.seen.lock().unwrap().clone();
    let parent = seen[0].headers["traceparent"].to_str().unwrap();
    // The filter started a trace: version 00, a 32-digit trace id, a
    // 16-digit parent id (lowercase hex, not all zeros), sampled.
    let fields: Vec<&str> = parent.split('-').collect();
    assert_eq!(parent.len(), 55, "{parent}");
    assert_eq!(fields.len(), 4, "{parent}");
    assert_eq!((fields[0], fields[3]), ("00", "01"), "{parent}");
    for (id, digits) in [(fields[1], 32), (fields[2], 16)] {
        assert_eq!(id.len(), digits, "{parent}");
        assert!(
            id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{parent}"
        );
        assert!(id.bytes().any(|b| b != b'0'), "{parent}");
    }

    // on_log runs when each response is done; give the last one a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let metrics = loop {
        let metrics = send(weft.listeners["admin"], "GET", "/metrics", &[], "").body;
        if metrics.contains("route=\"shop/health\"") || std::time::Instant::now() > deadline {
            break metrics;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    for want in [
        "# TYPE telemetry_requests counter",
        "telemetry_requests{route=\"shop/app\",cluster=\"app\",class=\"2xx\"} 3",
        "telemetry_requests{route=\"shop/app\",cluster=\"app\",class=\"5xx\"} 1",
        "telemetry_requests{route=\"shop/health\",cluster=\"none\",class=\"2xx\"} 1",
        "telemetry_request_duration_ms_count{route=\"shop/app\",cluster=\"app\"} 4",
        "telemetry_request_bytes{route=\"shop/app\",cluster=\"app\"} 15",
        "telemetry_response_bytes{route=\"shop/app\",cluster=\"app\"} 64",
    ] {
        assert!(metrics.contains(want), "{want} missing:\n{metrics}");
    }
    assert_eq!(
        metrics.matches("# TYPE telemetry_requests counter").count(),
        1,
        "one family for all label sets"
    );

    let log = weft.wait_for_log(r#""path":"/health""#);
    let line = log
        .lines()
        .find(|l| l.contains(r#""path":"/status/503""#))
        .unwrap();
    for want in [
        r#""status":503"#,
        r#""method":"GET""#,
        r#""route":"shop/app""#,
        r#""cluster":"app""#,
        r#""protocol":"HTTP/1.1""#,
        r#""host":"test.weft""#,
    ] {
        assert!(line.contains(want), "{want} missing from {line}");
    }
}

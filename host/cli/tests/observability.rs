//! What the proxy tells: the JSON access log, downstream metrics, request
//! ids and W3C trace context, and the admin `/config`.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::time::Duration;

use support::{Upstream, Weft, eventually, send};

fn read_lines(path: &std::path::Path, want: usize) -> Vec<serde_json::Value> {
    eventually(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= want {
            Ok(lines)
        } else {
            Err(format!("only {} access log lines: {text}", lines.len()))
        }
    })
}

#[test]
fn access_log_metrics_request_ids_and_trace_context() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let up = Upstream::start();
    let weft = Weft::proxy(&format!(
        r#"
workers: 2
admin: {{address: 127.0.0.1:0}}
listeners:
  - name: edge
    address: 127.0.0.1:0
    access_log: {{path: {}}}
    virtual_hosts:
      - name: site
        routes:
          - {{name: gone, match: {{path: /gone}}, direct_response: {{status: 410, body: gone}}}}
          - {{name: app, match: {{prefix: /app}}, forward: {{cluster: app}}}}
clusters:
  - {{name: app, endpoints: ["{}"]}}
"#,
        log.display(),
        up.addr
    ));

    let traced = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let got = send(
        weft.addr,
        "POST",
        "/app/x?q=1",
        &[("traceparent", traced), ("user-agent", "test-agent")],
        "twelve bytes",
    );
    assert_eq!(got.status, 200);
    let seen = up.seen.lock().unwrap().last().cloned().unwrap();
    let request_id = seen.headers["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(request_id.len(), 36, "{request_id}");
    assert_eq!(&request_id[14..15], "4", "a version 4 UUID");
    let parent = seen.headers["traceparent"].to_str().unwrap().to_string();
    assert!(
        parent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && parent.ends_with("-01"),
        "the client's trace continues: {parent}"
    );
    assert_ne!(
        &parent[36..52],
        "00f067aa0ba902b7",
        "with this hop's own span id"
    );

    // A given request id is kept; a request without trace context starts one.
    send(weft.addr, "GET", "/app/y", &[("x-request-id", "mine")], "");
    let seen = up.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.headers["x-request-id"], "mine");
    assert_eq!(seen.headers["traceparent"].len(), 55);

    assert_eq!(send(weft.addr, "GET", "/gone", &[], "").status, 410);
    assert_eq!(send(weft.addr, "GET", "/nowhere", &[], "").status, 404);

    // Workers write their own lines: find each by its path.
    let lines = read_lines(&log, 4);
    let by_path = |path: &str| lines.iter().find(|l| l["path"] == path).unwrap().clone();
    let first = by_path("/app/x?q=1");
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], "/app/x?q=1");
    assert_eq!(first["authority"], "test.weft");
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["status"], 200);
    assert_eq!(first["bytes_received"], 12);
    assert_eq!(first["bytes_sent"], "upstream says hi".len());
    assert_eq!(first["upstream_cluster"], "app");
    assert_eq!(first["upstream_host"], up.addr.to_string());
    assert_eq!(first["route"], "site/app");
    assert_eq!(first["listener"], "edge");
    assert_eq!(first["request_id"], request_id.as_str(), "{first}");
    assert_eq!(first["traceparent"], parent.as_str());
    assert_eq!(first["user_agent"], "test-agent");
    assert!(first["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(first["start_time"].as_str().unwrap().ends_with('Z'));
    assert!(
        first["downstream_remote_address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert_eq!(by_path("/gone")["status"], 410);
    assert_eq!(by_path("/gone")["route"], "site/gone");
    assert_eq!(by_path("/nowhere")["status"], 404);
    assert!(by_path("/nowhere").get("route").is_none());

    let metrics = send(weft.listeners["admin"], "GET", "/metrics", &[], "").body;
    for want in [
        "weft_downstream_responses_total{listener=\"edge\",class=\"2xx\"} 2",
        "weft_downstream_responses_total{listener=\"edge\",class=\"4xx\"} 2",
        "weft_downstream_request_duration_seconds_count{listener=\"edge\"} 4",
        "weft_downstream_connections_total{listener=\"edge\"} 4",
        "# TYPE weft_downstream_active_connections gauge",
    ] {
        assert!(metrics.contains(want), "{want} missing:\n{metrics}");
    }

    let config: serde_json::Value =
        serde_json::from_str(&send(weft.listeners["admin"], "GET", "/config", &[], "").body)
            .unwrap();
    assert_eq!(config["listeners"][0]["name"], "edge");
    assert_eq!(config["clusters"][0]["lb_policy"], "round_robin");
}

#[test]
fn access_log_fields_can_be_chosen_and_go_to_stdout() {
    let up = Upstream::start();
    let weft = Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    cluster: app\n    access_log: {{path: '-', fields: [status, path]}}\n    request_id: false\nclusters:\n  - {{name: app, endpoints: [\"{}\"]}}\n",
        up.addr
    ));
    send(weft.addr, "GET", "/only-these", &[], "");
    let line = weft.read_stdout_line();
    assert_eq!(line, r#"{"status":200,"path":"/only-these"}"#);
    let seen = up.seen.lock().unwrap().last().cloned().unwrap();
    assert!(seen.headers.get("x-request-id").is_none());
}

/// A route without filters on a listener without an access log goes the
/// plain way (nothing reads the stream after the request is sent): it
/// still gets request ids and trace context, and counts in the listener's
/// metrics, its errors too.
#[test]
fn requests_without_filters_or_access_log_are_traced_and_counted() {
    let up = Upstream::start();
    let weft = Weft::proxy(&format!(
        r#"
workers: 1
admin: {{address: 127.0.0.1:0}}
listeners:
  - name: edge
    address: 127.0.0.1:0
    virtual_hosts:
      - name: site
        routes:
          - {{name: app, match: {{prefix: /app}}, forward: {{cluster: app, cluster_header: x-cluster}}}}
clusters:
  - {{name: app, endpoints: ["{}"]}}
"#,
        up.addr
    ));
    let traced = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let got = send(weft.addr, "GET", "/app/x", &[("traceparent", traced)], "");
    assert_eq!(got.status, 200);
    let seen = up.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.headers["x-request-id"].len(), 36);
    let parent = seen.headers["traceparent"].to_str().unwrap();
    assert!(parent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    assert_ne!(&parent[36..52], "00f067aa0ba902b7");

    assert_eq!(send(weft.addr, "POST", "/app/y", &[], "a body").status, 200);
    let got = send(weft.addr, "GET", "/app/z", &[("x-cluster", "none")], "");
    assert_eq!(got.status, 503);

    let metrics = send(weft.listeners["admin"], "GET", "/metrics", &[], "").body;
    for want in [
        "weft_downstream_responses_total{listener=\"edge\",class=\"2xx\"} 2",
        "weft_downstream_responses_total{listener=\"edge\",class=\"5xx\"} 1",
        "weft_downstream_request_duration_seconds_count{listener=\"edge\"} 3",
    ] {
        assert!(metrics.contains(want), "{want} missing:\n{metrics}");
    }
}

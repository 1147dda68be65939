//! Resilience end to end: retries, timeouts, circuit breakers, health
//! checks, outlier detection, mirroring and request size limits, against
//! real upstreams on 127.0.0.1.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::{ACCESS_LOG, Upstream, Weft, eventually, send, send_many, send_raw, served_by};

fn one_route(forward: &str, clusters: &str) -> String {
    one_route_logged(forward, clusters, "")
}

/// [`one_route`] with `access_log` in the listener (`""` or [`ACCESS_LOG`]).
fn one_route_logged(forward: &str, clusters: &str, access_log: &str) -> String {
    format!(
        r#"
workers: 1
admin: {{address: 127.0.0.1:0}}
listeners:
  - name: ingress
    address: 127.0.0.1:0{access_log}
    virtual_hosts:
      - name: all
        routes:
          - forward: {forward}
clusters:
{clusters}
"#
    )
}

#[test]
fn retries_get_past_a_flaky_upstream_and_stop_at_the_limit() {
    retry_past_a_flaky_upstream("");
}

#[test]
fn retries_get_past_a_flaky_upstream_and_stop_at_the_limit_with_an_access_log() {
    retry_past_a_flaky_upstream(ACCESS_LOG);
}

fn retry_past_a_flaky_upstream(access_log: &str) {
    let up = Upstream::start();
    let weft = Weft::proxy(&one_route_logged(
        "{cluster: app, retry: {attempts: 2, on: [5xx], backoff_base_ms: 5}}",
        &format!("  - {{name: app, endpoints: [\"{}\"]}}", up.addr),
        access_log,
    ));
    up.fail_next.store(2, Ordering::SeqCst);
    let got = send(weft.addr, "GET", "/", &[], "");
    assert_eq!(got.status, 200, "third try succeeds");
    assert_eq!(up.seen.lock().unwrap().len(), 3);

    up.fail_next.store(5, Ordering::SeqCst);
    let got = send(weft.addr, "GET", "/", &[], "");
    assert_eq!(
        got.status, 503,
        "the upstream's answer after the last retry"
    );
    assert_eq!(up.seen.lock().unwrap().len(), 6);

    // A request with a body is not replayed.
    up.fail_next.store(1, Ordering::SeqCst);
    assert_eq!(send(weft.addr, "POST", "/", &[], "body").status, 503);
    assert_eq!(up.seen.lock().unwrap().len(), 7);

    let metrics = send(weft.listeners["admin"], "GET", "/metrics", &[], "").body;
    assert!(
        metrics.contains("weft_cluster_retries_total{cluster=\"app\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weft_cluster_upstream_responses_total{cluster=\"app\",class=\"2xx\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weft_cluster_upstream_response_seconds_count{cluster=\"app\"} 7"),
        "every try is timed: {metrics}"
    );
}

#[test]
fn connect_failures_are_retried_on_another_endpoint() {
    let up = Upstream::named("alive");
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let weft = Weft::proxy(&one_route(
        "{cluster: app, retry: {attempts: 1, on: [connect-failure], backoff_base_ms: 1}}",
        &format!(
            "  - {{name: app, endpoints: [\"{dead}\", \"{}\"]}}",
            up.addr
        ),
    ));
    for got in send_many(weft.addr, 10, "/", &[]) {
        assert_eq!(served_by(&got), "alive");
    }
}

/// Sends a request the upstream answers after `delay_ms` through a route
/// with `timeout_ms`: it must get weft's 504; returns how long it took.
/// A quick request afterwards still goes through.
fn timed_out(timeout_ms: u64, delay_ms: u64) -> Duration {
    let up = Upstream::start();
    let weft = Weft::proxy(&one_route(
        &format!("{{cluster: app, timeout_ms: {timeout_ms}}}"),
        &format!("  - {{name: app, endpoints: [\"{}\"]}}", up.addr),
    ));
    let start = Instant::now();
    let got = send(weft.addr, "GET", &format!("/delay/{delay_ms}"), &[], "");
    let waited = start.elapsed();
    assert_eq!(got.status, 504);
    assert_eq!(got.headers["x-weft-error"], "upstream request timed out");
    assert_eq!(send(weft.addr, "GET", "/delay/10", &[], "").status, 200);
    waited
}

#[test]
fn timeouts_answer_504() {
    assert!(timed_out(300, 3000) < Duration::from_secs(2));
}

#[test]
fn a_timeout_seconds_away_answers_504_when_it_is_due() {
    // Deadlines this far away run on the worker's coarse timer.
    let waited = timed_out(5000, 20_000);
    assert!(
        waited >= Duration::from_secs(5),
        "not before it is due: {waited:?}"
    );
    assert!(waited < Duration::from_secs(15), "{waited:?}");
}

#[test]
fn per_try_timeouts_are_retried() {
    let up = Upstream::start();
    let weft = Weft::proxy(&one_route(
        "{cluster: app, per_try_timeout_ms: 200, retry: {attempts: 2, on: [reset], backoff_base_ms: 1}}",
        &format!("  - {{name: app, endpoints: [\"{}\"]}}", up.addr),
    ));
    let start = Instant::now();
    let got = send(weft.addr, "GET", "/delay/1000", &[], "");
    assert_eq!(got.status, 504);
    assert!(start.elapsed() < Duration::from_millis(1000));
    assert_eq!(
        up.seen.lock().unwrap().len(),
        3,
        "three tries reached the upstream"
    );
}

#[test]
fn circuit_breaker_overflow_answers_503_saying_which() {
    let up = Upstream::start();
    let weft = Weft::proxy(&one_route(
        "{cluster: app}",
        &format!(
            "  - {{name: app, endpoints: [\"{}\"], circuit_breakers: {{max_requests: 1}}}}",
            up.addr
        ),
    ));
    let addr = weft.addr;
    let slow = std::thread::spawn(move || send(addr, "GET", "/slow", &[], "").status);
    std::thread::sleep(Duration::from_millis(300));
    let got = send(weft.addr, "GET", "/", &[], "");
    assert_eq!(got.status, 503);
    assert_eq!(got.headers["x-weft-overflow"], "max_requests");
    assert_eq!(slow.join().unwrap(), 200);
    assert_eq!(
        send(weft.addr, "GET", "/", &[], "").status,
        200,
        "the slot came back"
    );
    let metrics = send(weft.listeners["admin"], "GET", "/metrics", &[], "").body;
    assert!(
        metrics.contains("weft_cluster_overflows_total{cluster=\"app\"} 1"),
        "{metrics}"
    );
}

/// Polls `/clusters` until endpoint `addr` of the first cluster is (not) available.
fn wait_available(weft: &Weft, addr: std::net::SocketAddr, want: bool) {
    eventually(Duration::from_secs(10), || {
        let body = send(weft.listeners["admin"], "GET", "/clusters", &[], "").body;
        let clusters: serde_json::Value = serde_json::from_str(&body).unwrap();
        let endpoint = clusters[0]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["address"] == addr.to_string())
            .unwrap()
            .clone();
        if endpoint["available"] == want {
            Ok(())
        } else {
            Err(format!("{addr} never became available={want}: {body}"))
        }
    });
}

#[test]
fn health_checks_take_a_dead_endpoint_out_and_bring_it_back() {
    let a = Upstream::named("a");
    let b = Upstream::named("b");
    let weft = Weft::proxy(&one_route(
        "{cluster: app}",
        &format!(
            r#"  - name: app
    endpoints: ["{}", "{}"]
    health_check: {{path: /healthz, interval_ms: 50, timeout_ms: 500, unhealthy_threshold: 2, healthy_threshold: 1}}"#,
            a.addr, b.addr
        ),
    ));
    a.healthy.store(false, Ordering::SeqCst);
    wait_available(&weft, a.addr, false);
    weft.wait_for_log("endpoint is unhealthy");
    for got in send_many(weft.addr, 20, "/", &[]) {
        assert_eq!(served_by(&got), "b");
    }
    a.healthy.store(true, Ordering::SeqCst);
    wait_available(&weft, a.addr, true);
    let got = send_many(weft.addr, 20, "/", &[]);
    assert!(got.iter().any(|g| served_by(g) == "a"));
}

#[test]
fn outlier_detection_ejects_an_endpoint_that_keeps_failing() {
    let bad = Upstream::named("bad");
    let good = Upstream::named("good");
    bad.fail_next.store(1_000_000, Ordering::SeqCst);
    let weft = Weft::proxy(&one_route(
        "{cluster: app}",
        &format!(
            r#"  - name: app
    endpoints: ["{}", "{}"]
    outlier_detection: {{consecutive_failures: 3, base_ejection_ms: 60000, max_ejection_percent: 50}}"#,
            bad.addr, good.addr
        ),
    ));
    let first = send_many(weft.addr, 10, "/", &[]);
    assert_eq!(
        first.iter().filter(|g| g.status == 503).count(),
        3,
        "ejected after 3 failures"
    );
    wait_available(&weft, bad.addr, false);
    for got in send_many(weft.addr, 20, "/", &[]) {
        assert_eq!(served_by(&got), "good");
    }
    weft.wait_for_log("endpoint ejected");
    let metrics = send(weft.listeners["admin"], "GET", "/metrics", &[], "").body;
    assert!(
        metrics.contains("weft_cluster_ejections_total{cluster=\"app\"} 1"),
        "{metrics}"
    );
}

#[test]
fn mirror_gets_a_copy_and_its_answer_is_ignored() {
    let main = Upstream::named("main");
    let shadow = Upstream::named("shadow");
    shadow.fail_next.store(1_000, Ordering::SeqCst);
    let weft = Weft::proxy(&one_route(
        "{cluster: main, mirror: {cluster: shadow, percent: 100}}",
        &format!(
            "  - {{name: main, endpoints: [\"{}\"]}}\n  - {{name: shadow, endpoints: [\"{}\"]}}",
            main.addr, shadow.addr
        ),
    ));
    let got = send(weft.addr, "GET", "/copy-me?x=1", &[("x-trace", "t1")], "");
    assert_eq!((got.status, served_by(&got).as_str()), (200, "main"));
    eventually(Duration::from_secs(5), || {
        if shadow.seen.lock().unwrap().is_empty() {
            Err("the mirror never got its copy".to_string())
        } else {
            Ok(())
        }
    });
    let copy = shadow.seen.lock().unwrap()[0].clone();
    assert_eq!(copy.path, "/copy-me?x=1");
    assert_eq!(copy.headers["host"], "test.weft-shadow");
    assert_eq!(copy.headers["x-trace"], "t1");
}

#[test]
fn oversized_headers_get_431_and_bodies_413() {
    refuse_oversized_requests("");
}

#[test]
fn oversized_headers_get_431_and_bodies_413_with_an_access_log() {
    refuse_oversized_requests(ACCESS_LOG);
}

fn refuse_oversized_requests(access_log: &str) {
    let up = Upstream::start();
    let weft = Weft::proxy(&format!(
        r#"
workers: 1
listeners:
  - name: ingress
    address: 127.0.0.1:0{access_log}
    cluster: app
    limits: {{max_request_headers_kb: 8, max_request_body_kb: 1}}
clusters:
  - {{name: app, endpoints: ["{}"]}}
"#,
        up.addr
    ));
    let big = "x".repeat(10_000);
    let raw = send_raw(
        weft.addr,
        format!("GET / HTTP/1.1\r\nhost: t\r\nx-big: {big}\r\nconnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert!(raw.starts_with("HTTP/1.1 431"), "{raw}");

    let got = send(weft.addr, "POST", "/", &[], &"b".repeat(2000));
    assert_eq!(got.status, 413, "Content-Length over the limit");
    let chunked = format!(
        "POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        800,
        "c".repeat(800),
        800,
        "c".repeat(800)
    );
    let raw = send_raw(weft.addr, chunked.as_bytes());
    assert!(
        raw.starts_with("HTTP/1.1 413"),
        "a chunked body over the limit: {raw}"
    );
    assert_eq!(send(weft.addr, "POST", "/", &[], "small").status, 200);
}

#[test]
fn a_retry_budget_caps_retries_by_the_traffic() {
    let up = Upstream::start();
    let weft = Weft::proxy(&one_route(
        "{cluster: app, retry: {attempts: 2, on: [5xx], backoff_base_ms: 1}}",
        &format!(
            "  - {{name: app, endpoints: [\"{}\"], circuit_breakers: {{retry_budget: {{percent: 0, min_concurrency: 0}}}}}}",
            up.addr
        ),
    ));
    up.fail_next.store(1, Ordering::SeqCst);
    let got = send(weft.addr, "GET", "/", &[], "");
    assert_eq!(got.status, 503, "the budget left no retry");
    assert_eq!(up.seen.lock().unwrap().len(), 1);
    let metrics = send(weft.listeners["admin"], "GET", "/metrics", &[], "").body;
    assert!(
        metrics.contains("weft_cluster_overflows_total{cluster=\"app\"} 1"),
        "{metrics}"
    );
}

/// Sends requests until one is served by `name`, or fails after 10 s.
fn wait_served_by(weft: &Weft, name: &str) {
    eventually(Duration::from_secs(10), || {
        if served_by(&send(weft.addr, "GET", "/", &[], "")) == name {
            Ok(())
        } else {
            Err(format!("never served by {name}"))
        }
    });
}

#[test]
fn endpoints_follow_dns_answers() {
    let one = Upstream::named("one");
    let two_addr = std::net::SocketAddr::new([127, 0, 0, 2].into(), one.addr.port());
    let two = Upstream::named_at("two", two_addr);
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 app.test\n").unwrap();
    let config = format!(
        "dns: {{hosts_file: {}}}\n{}",
        hosts.display(),
        one_route(
            "{cluster: app}",
            &format!(
                "  - {{name: app, endpoints: [\"app.test:{}\"], dns_refresh_ms: 100, health_check: {{path: /healthz, interval_ms: 100}}}}",
                one.addr.port()
            ),
        )
    );
    let weft = Weft::proxy(&config);
    for got in send_many(weft.addr, 5, "/", &[]) {
        assert_eq!(served_by(&got), "one");
    }

    // The name moves: new requests follow it.
    std::fs::write(&hosts, "127.0.0.2 app.test\n").unwrap();
    wait_served_by(&weft, "two");
    for got in send_many(weft.addr, 5, "/", &[]) {
        assert_eq!(served_by(&got), "two");
    }
    let clusters = send(weft.listeners["admin"], "GET", "/clusters", &[], "").body;
    assert!(clusters.contains(&two_addr.to_string()), "{clusters}");
    assert!(!clusters.contains(&one.addr.to_string()), "{clusters}");
    eventually(Duration::from_secs(10), || {
        if two
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.path == "/healthz")
        {
            Ok(())
        } else {
            Err("health checks follow the new endpoint".to_string())
        }
    });

    // A name that stops resolving keeps the last answer.
    std::fs::write(&hosts, "127.0.0.1 other.test\n").unwrap();
    let metrics = eventually(Duration::from_secs(10), || {
        let metrics = send(weft.listeners["admin"], "GET", "/metrics", &[], "").body;
        if metrics.contains("weft_cluster_dns_failures_total{cluster=\"app\"} 0") {
            Err("no DNS failure counted".to_string())
        } else {
            Ok(metrics)
        }
    });
    assert!(
        metrics.contains("weft_cluster_dns_changes_total{cluster=\"app\"} 1"),
        "{metrics}"
    );
    assert_eq!(served_by(&send(weft.addr, "GET", "/", &[], "")), "two");
    weft.wait_for_log("cannot resolve `app.test:");
}

#[test]
fn a_stalled_request_body_is_answered_408() {
    let up = Upstream::start();
    let weft = Weft::proxy(&one_route(
        "{cluster: app, idle_timeout_ms: 200}",
        &format!("  - {{name: app, endpoints: [\"{}\"]}}", up.addr),
    ));
    let start = Instant::now();
    let raw = send_raw(
        weft.addr,
        b"POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nabc",
    );
    assert!(raw.starts_with("HTTP/1.1 408"), "{raw}");
    assert!(raw.contains("idle_timeout_ms"), "{raw}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_stalled_response_body_is_cut_off() {
    use std::io::{Read, Write};
    // An upstream that promises 100 bytes, sends 3 and stalls.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let mut tcp = tcp.unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf);
                let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc");
                std::thread::sleep(Duration::from_secs(10));
            });
        }
    });
    let weft = Weft::proxy(&one_route(
        "{cluster: app, idle_timeout_ms: 300}",
        &format!("  - {{name: app, endpoints: [\"{addr}\"]}}"),
    ));
    let start = Instant::now();
    let raw = send_raw(weft.addr, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n");
    let elapsed = start.elapsed();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(
        raw.ends_with("abc"),
        "the body is cut after what came: {raw}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "cut off after {elapsed:?}"
    );
}

#[test]
fn mirror_gets_a_copy_of_the_body() {
    let main = Upstream::named("main");
    let shadow = Upstream::named("shadow");
    let weft = Weft::proxy(&one_route(
        "{cluster: main, mirror: {cluster: shadow, percent: 100}}",
        &format!(
            "  - {{name: main, endpoints: [\"{}\"]}}\n  - {{name: shadow, endpoints: [\"{}\"]}}",
            main.addr, shadow.addr
        ),
    ));
    let body = "a body worth copying ".repeat(5_000);
    let got = send(weft.addr, "POST", "/orders", &[("x-trace", "t2")], &body);
    assert_eq!((got.status, served_by(&got).as_str()), (200, "main"));
    assert_eq!(main.seen.lock().unwrap()[0].body, body.as_bytes());
    eventually(Duration::from_secs(5), || {
        if shadow.seen.lock().unwrap().is_empty() {
            Err("the mirror never got its copy".to_string())
        } else {
            Ok(())
        }
    });
    let copy = shadow.seen.lock().unwrap()[0].clone();
    assert_eq!(
        (copy.method.as_str(), copy.path.as_str()),
        ("POST", "/orders")
    );
    assert_eq!(copy.headers["x-trace"], "t2");
    assert_eq!(copy.body, body.as_bytes());
}

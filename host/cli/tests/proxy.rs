//! `weft proxy` end to end: a real upstream, the real binary, the compiled
//! hello-rust filter, real sockets on 127.0.0.1.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use support::{Upstream, Weft, eventually, filter, send};

fn hello_config(upstream: std::net::SocketAddr, workers: usize) -> String {
    format!(
        r#"
workers: {workers}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    cluster: backend
    filters: [hello]
clusters:
  - name: backend
    endpoints: ["{upstream}"]
plugins:
  - name: hello
    module: {module}
    configuration: {{header: x-hello, value: world}}
"#,
        module = filter("hello_rust.wasm").display()
    )
}

#[test]
fn forwards_through_the_hello_filter() {
    let upstream = Upstream::start();
    let weft = Weft::proxy(&hello_config(upstream.addr, 2));

    let got = send(
        weft.addr,
        "POST",
        "/submit?x=1",
        &[("x-client", "test"), ("content-type", "text/plain")],
        "the request body",
    );
    assert_eq!(got.status, 200);
    assert_eq!(got.body, "upstream says hi");
    assert_eq!(
        got.headers["x-hello"], "world",
        "the filter adds its configured header"
    );
    assert_eq!(
        got.headers["x-upstream"], "yes",
        "upstream headers pass through"
    );

    let seen = upstream.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/submit?x=1");
    assert_eq!(req.body, "the request body");
    assert_eq!(req.headers["x-client"], "test");
    assert_eq!(
        req.headers["host"], "test.weft",
        "Host (:authority) is preserved"
    );
    assert_eq!(req.headers["content-type"], "text/plain");
    assert!(
        req.headers.get("x-hello").is_none(),
        "the filter only touches responses"
    );

    let log = weft.wait_for_log("hello: POST /submit?x=1");
    assert!(
        log.lines()
            .any(|l| l.contains("hello: POST /submit?x=1") && l.contains("plugin=\"hello\"")),
        "the filter's log line names the request and the plugin:\n{log}"
    );
}

#[test]
fn many_requests_reuse_upstream_connections_across_workers() {
    let upstream = Upstream::start();
    let weft = Weft::proxy(&hello_config(upstream.addr, 2));
    for i in 0..50 {
        let got = send(weft.addr, "GET", &format!("/n/{i}"), &[], "");
        assert_eq!(got.status, 200);
        assert_eq!(got.headers["x-hello"], "world");
    }
    let seen = upstream.seen.lock().unwrap();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths.len(), 50);
    assert!(paths.contains(&"/n/0") && paths.contains(&"/n/49"));
    // Requests are sequential, so each worker needs one upstream connection
    // at most, returned to its pool when each response ends.
    let connections = upstream
        .connections
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        connections <= 2,
        "{connections} upstream connections for 50 sequential requests"
    );
}

#[test]
fn unreachable_upstream_is_a_502_with_a_reason() {
    // Bind and drop a listener: nothing listens on that port afterwards.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let weft = Weft::proxy(&hello_config(dead, 1));
    let got = send(weft.addr, "GET", "/", &[], "");
    assert_eq!(got.status, 502);
    assert_eq!(got.headers["x-weft-error"], "upstream connection failed");
}

#[test]
fn a_request_head_not_complete_within_the_header_timeout_closes_the_connection() {
    use std::io::Write;
    let upstream = Upstream::start();
    // Both kinds of plain listener: HTTP/1.1 only, and HTTP/2 detection.
    let weft = Weft::proxy(&format!(
        r#"
workers: 1
listeners:
  - name: h1
    address: 127.0.0.1:0
    cluster: backend
    http2: false
    limits: {{request_header_timeout_ms: 300}}
  - name: detect
    address: 127.0.0.1:0
    cluster: backend
    limits: {{request_header_timeout_ms: 300}}
clusters:
  - name: backend
    endpoints: ["{}"]
"#,
        upstream.addr
    ));
    for listener in ["h1", "detect"] {
        let addr = weft.listeners[listener];
        // A whole request is served.
        assert_eq!(send(addr, "GET", "/", &[], "").status, 200);
        // A head that never ends is cut off: the read ends instead of
        // waiting out its own 20 s timeout.
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\nx-slow: ")
            .unwrap();
        let answer = support::read_until_closed(&mut client)
            .unwrap_or_else(|err| panic!("{listener}: the slow client was not cut off: {err}"));
        assert!(
            answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
            "{listener}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
}

#[test]
fn sigterm_closes_idle_keep_alive_connections_at_once() {
    use std::io::Write;
    let upstream = Upstream::start();
    // A drain this long would outlast `wait_exit` below if the idle
    // connection were not told to close.
    let config = format!(
        "drain_timeout_ms: 60000\n{}",
        hello_config(upstream.addr, 1)
    );
    let mut weft = Weft::proxy(&config);
    let mut client = std::net::TcpStream::connect(weft.addr).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        .unwrap();
    let head = support::read_head(&mut client).expect("a response head");
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // The connection is idle and kept alive; weft is asked to stop.
    weft.terminate();
    support::read_until_closed(&mut client).expect("weft closes the idle connection");
    let status = weft
        .wait_exit(std::time::Duration::from_secs(10))
        .expect("weft exits without waiting out the drain timeout");
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigterm_drains_in_flight_requests_and_stops_accepting() {
    let upstream = Upstream::start();
    let mut weft = Weft::proxy(&hello_config(upstream.addr, 1));
    let addr = weft.addr;
    let slow = std::thread::spawn(move || send(addr, "GET", "/slow", &[], ""));
    // Let the slow request reach the upstream, then ask weft to stop.
    eventually(std::time::Duration::from_secs(10), || {
        if upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
            != 0
        {
            Ok(())
        } else {
            Err("the slow request never reached the upstream".to_string())
        }
    });
    weft.terminate();
    weft.wait_for_log("shutting down");
    // No new connections while draining...
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the listener is closed during the drain"
    );
    // ...but the request in flight completes.
    let got = slow.join().unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["x-hello"], "world");
    let status = weft
        .wait_exit(std::time::Duration::from_secs(10))
        .expect("weft exits after the drain");
    assert!(status.success(), "{status:?}");
}

#[test]
fn mimalloc_is_linked_in_as_the_process_allocator() {
    // It is `malloc` itself (host/cli/src/main.rs), which nothing else in
    // the binary names: were the override lost, mimalloc would not be
    // linked at all, and would not report its start.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("--version")
        .env("MIMALLOC_VERBOSE", "1")
        .output()
        .expect("weft --version runs");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mimalloc: process init"),
        "mimalloc did not start: {stderr}"
    );
}

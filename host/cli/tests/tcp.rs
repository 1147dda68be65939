//! `protocol: tcp` listeners: connections relayed to a cluster through
//! the plugins' TCP callbacks (a Rust SDK `StreamContext` filter).

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{Weft, eventually};

/// An echo server: sends back each chunk it reads, half-closes when the
/// client does; records everything each connection sent.
fn echo_server() -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let record = record.clone();
            std::thread::spawn(move || {
                let index = {
                    let mut seen = record.lock().unwrap();
                    seen.push(Vec::new());
                    seen.len() - 1
                };
                let mut buf = [0u8; 4096];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            record.lock().unwrap()[index].extend_from_slice(&buf[..n]);
                            if conn.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = conn.shutdown(Shutdown::Write);
            });
        }
    });
    (addr, seen)
}

fn tcp_proxy(upstream: SocketAddr) -> Weft {
    Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - {{name: t, address: 127.0.0.1:0, protocol: tcp, cluster: echo, filters: [tap]}}\nclusters:\n  - {{name: echo, endpoints: [\"{upstream}\"]}}\nplugins:\n  - {{name: tap, module: {}}}\n",
        support::filter("tcp_tap.wasm").display()
    ))
}

/// Reads until the other side closes (or 10 s pass).
fn read_to_end(conn: &mut TcpStream) -> Vec<u8> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let _ = conn.read_to_end(&mut got);
    got
}

fn wait_for_log(weft: &Weft, line: &str) {
    eventually(Duration::from_secs(10), || {
        let log = weft.log();
        if log.contains(line) {
            Ok(())
        } else {
            Err(format!("no log line {line:?}:\n{log}"))
        }
    });
}

#[test]
fn tcp_connections_are_relayed_through_the_tcp_callbacks_both_ways() {
    let (echo, seen) = echo_server();
    let weft = tcp_proxy(echo);
    let mut conn = TcpStream::connect(weft.addr).unwrap();
    // Two bytes are not enough for the filter: it holds them, and runs
    // again over everything when more arrives.
    conn.write_all(b"he").unwrap();
    wait_for_log(&weft, "tcp-tap: waiting, 2 bytes");
    assert!(seen.lock().unwrap().iter().all(Vec::is_empty));
    conn.write_all(b"llo").unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    // The client's data tagged once on its way up; the echo upper-cased on
    // its way down; both halves closed in turn.
    assert_eq!(read_to_end(&mut conn), b"[TAP]HELLO");
    assert_eq!(seen.lock().unwrap()[0], b"[tap]hello");
    wait_for_log(&weft, "tcp-tap: 5 bytes down, 10 bytes up");
    let log = weft.log();
    assert!(
        log.contains("tcp-tap: new connection from 127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains("tcp-tap: downstream closed (Remote)"), "{log}");
    assert!(log.contains("tcp-tap: upstream closed (Remote)"), "{log}");
}

#[test]
fn a_tcp_filter_closing_the_connection_closes_both_sides() {
    let (echo, seen) = echo_server();
    let weft = tcp_proxy(echo);
    let mut conn = TcpStream::connect(weft.addr).unwrap();
    conn.write_all(b"DENY everything").unwrap();
    assert_eq!(read_to_end(&mut conn), b"");
    wait_for_log(&weft, "tcp-tap: denied");
    wait_for_log(&weft, "tcp-tap: downstream closed (Local)");
    // The upstream was connected but got nothing.
    assert!(seen.lock().unwrap().iter().all(Vec::is_empty));

    // Other connections are not affected.
    let mut conn = TcpStream::connect(weft.addr).unwrap();
    conn.write_all(b"fine").unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut conn), b"[TAP]FINE");
}

#[test]
fn a_tcp_listener_whose_cluster_is_down_closes_the_connection() {
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let weft = tcp_proxy(dead);
    let mut conn = TcpStream::connect(weft.addr).unwrap();
    let _ = conn.write_all(b"hello");
    assert_eq!(read_to_end(&mut conn), b"");
    wait_for_log(&weft, "tcp-tap: upstream closed (Local)");
}

#[test]
fn tcp_listeners_refuse_what_only_http_has() {
    let problems = [
        (
            "protocol: tcp, cluster: c, virtual_hosts: [{name: v, domains: [\"*\"], routes: [{direct_response: {status: 200}}]}]",
            "listeners[0].virtual_hosts",
        ),
        ("protocol: tcp", "needs the `cluster` its connections go to"),
        ("protocol: udp, cluster: c", "listeners[0].protocol"),
    ];
    for (listener, expected) in problems {
        let config = format!(
            "listeners:\n  - {{name: t, address: 127.0.0.1:0, {listener}}}\nclusters:\n  - {{name: c, endpoints: [\"127.0.0.1:1\"]}}\n"
        );
        let path = std::path::Path::new("weft.yaml");
        let err = weft_config::parse_proxy_config(path, &config)
            .and_then(|parsed| parsed.validate(path))
            .expect_err(listener)
            .to_string();
        assert!(err.contains(expected), "{listener}: {err}");
    }
}

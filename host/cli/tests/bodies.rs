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
    assert!(
        got.headers.get("content-length").is_none(),
        "the filtered body is re-framed, not sent with the upstream's length"
    );
    let seen = upstream.seen.lock().unwrap();
    assert_eq!(seen[0].body, "MAKE ME LOUD");
    assert_eq!(seen[0].headers["content-type"], "text/plain");
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

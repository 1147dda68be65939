//! HTTP call-outs in a real `weft proxy`, with a Rust filter
//! (conformance/guests/callout-auth) that asks an authorization cluster
//! before letting each request through.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use support::{Upstream, Weft, filter, send};

/// The backend and the authorization service are two real upstreams.
fn start() -> (Upstream, Upstream, Weft) {
    let backend = Upstream::start();
    let authz = Upstream::start();
    let weft = Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    cluster: backend\n    filters: [auth]\nclusters:\n  - name: backend\n    endpoints: [\"{}\"]\n  - name: authz\n    endpoints: [\"{}\"]\nplugins:\n  - name: auth\n    module: {}\n",
        backend.addr,
        authz.addr,
        filter("callout_auth.wasm").display()
    ));
    (backend, authz, weft)
}

#[test]
fn an_allowed_request_goes_on_after_the_call_out() {
    let (backend, authz, weft) = start();
    let got = send(weft.addr, "GET", "/orders", &[], "");
    assert_eq!(got.status, 200, "{}", weft.log());
    assert_eq!(got.body, "upstream says hi");

    let asked = authz.seen.lock().unwrap();
    assert_eq!(asked[0].path, "/check/orders");
    assert_eq!(asked[0].headers["host"], "authz");
    let seen = backend.seen.lock().unwrap();
    assert_eq!(
        seen[0].headers["x-auth-said"], "upstream says hi",
        "the filter read the call's body"
    );
}

#[test]
fn a_denied_request_gets_the_filters_local_response() {
    let (backend, authz, weft) = start();
    let got = send(weft.addr, "GET", "/deny/this", &[], "");
    assert_eq!(got.status, 403, "{}", weft.log());
    assert_eq!(got.body, "denied");
    assert_eq!(got.headers["x-auth-status"], "403");
    assert_eq!(authz.seen.lock().unwrap().len(), 1);
    assert!(backend.seen.lock().unwrap().is_empty());
}

#[test]
fn a_call_to_an_unreachable_cluster_reports_a_failure_to_the_filter() {
    let backend = Upstream::start();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let weft = Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    cluster: backend\n    filters: [auth]\nclusters:\n  - name: backend\n    endpoints: [\"{}\"]\n  - name: authz\n    endpoints: [\"{dead}\"]\nplugins:\n  - name: auth\n    module: {}\n",
        backend.addr,
        filter("callout_auth.wasm").display()
    ));
    let got = send(weft.addr, "GET", "/orders", &[], "");
    // The failed call arrives with no headers: the filter sees no status.
    assert_eq!(got.status, 403, "{}", weft.log());
    assert_eq!(got.headers["x-auth-status"], "none");
    assert!(backend.seen.lock().unwrap().is_empty());
}

#[test]
fn a_call_to_an_unknown_cluster_is_refused_at_once() {
    let backend = Upstream::start();
    let weft = Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    cluster: backend\n    filters: [auth]\nclusters:\n  - name: backend\n    endpoints: [\"{}\"]\nplugins:\n  - name: auth\n    module: {}\n",
        backend.addr,
        filter("callout_auth.wasm").display()
    ));
    let got = send(weft.addr, "GET", "/orders", &[], "");
    assert_eq!(got.status, 500, "{}", weft.log());
    assert_eq!(got.headers["x-dispatch"], "BadArgument");
}

#[test]
fn a_call_to_a_cluster_outside_allowed_clusters_is_refused() {
    let backend = Upstream::start();
    let authz = Upstream::start();
    let weft = Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    cluster: backend\n    filters: [auth]\nclusters:\n  - name: backend\n    endpoints: [\"{}\"]\n  - name: authz\n    endpoints: [\"{}\"]\nplugins:\n  - name: auth\n    module: {}\n    allowed_clusters: [backend]\n",
        backend.addr,
        authz.addr,
        filter("callout_auth.wasm").display()
    ));
    let got = send(weft.addr, "GET", "/orders", &[], "");
    assert_eq!(got.status, 500, "{}", weft.log());
    assert_eq!(got.headers["x-dispatch"], "BadArgument");
    assert!(authz.seen.lock().unwrap().is_empty());
    weft.wait_for_log("not in the plugin's allowed_clusters");
}

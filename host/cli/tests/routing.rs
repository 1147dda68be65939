//! Routing end to end: virtual hosts, matches, actions, weighted clusters,
//! the cluster a filter names in a header, rewrites and header changes —
//! the real `weft` binary in front of real upstreams on 127.0.0.1.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use support::{ACCESS_LOG, Upstream, Weft, send, send_many, served_by};

#[test]
fn virtual_hosts_and_matches_pick_routes_and_their_actions() {
    pick_routes_and_their_actions("");
}

#[test]
fn virtual_hosts_and_matches_pick_routes_and_their_actions_with_an_access_log() {
    pick_routes_and_their_actions(ACCESS_LOG);
}

fn pick_routes_and_their_actions(access_log: &str) {
    let a = Upstream::named("a");
    let b = Upstream::named("b");
    let weft = Weft::proxy(&format!(
        r#"
workers: 1
listeners:
  - name: ingress
    address: 127.0.0.1:0{access_log}
    virtual_hosts:
      - name: api
        domains: [api.test, "*.api.test"]
        routes:
          - name: v1
            match: {{prefix: /v1/, methods: [GET]}}
            forward: {{cluster: a, prefix_rewrite: /, host_rewrite: internal.a}}
            request_headers:
              set: [{{name: x-route, value: v1}}]
              remove: [x-secret]
            response_headers:
              add: [{{name: x-via, value: weft}}]
              remove: [x-upstream]
          - name: beta
            match: {{prefix: /, headers: [{{name: x-env, exact: beta}}]}}
            forward: {{cluster: b}}
          - name: debug
            match: {{regex: '/items/[0-9]+', query: [{{name: debug, exact: "on"}}]}}
            forward: {{cluster: b}}
          - name: health
            match: {{path: /health}}
            direct_response: {{status: 200, body: "ok\n"}}
          - name: old
            match: {{prefix: /old/}}
            redirect: {{prefix_rewrite: /new/, status: 308}}
      - name: www
        domains: ["*"]
        routes:
          - match: {{prefix: /}}
            redirect: {{scheme: https, host: www.test}}
clusters:
  - {{name: a, endpoints: ["{a}"]}}
  - {{name: b, endpoints: ["localhost:{b_port}"]}}
"#,
        a = a.addr,
        b_port = b.addr.port(),
    ));
    let api = |method: &str, path: &str, headers: &[(&str, &str)]| {
        let mut all = vec![("host", "api.test")];
        all.extend_from_slice(headers);
        send(weft.addr, method, path, &all, "")
    };

    // Prefix + method: rewritten path and host, header changes both ways.
    let got = api("GET", "/v1/users?page=2", &[("x-secret", "s")]);
    assert_eq!(served_by(&got), "a");
    assert_eq!(got.headers["x-via"], "weft");
    assert!(got.headers.get("x-upstream").is_none());
    let seen = a.seen.lock().unwrap().pop().unwrap();
    assert_eq!(seen.path, "/users?page=2");
    assert_eq!(seen.headers["host"], "internal.a");
    assert_eq!(seen.headers["x-route"], "v1");
    assert!(seen.headers.get("x-secret").is_none());

    // The method does not match: the next routes are tried.
    assert_eq!(api("POST", "/v1/users", &[]).status, 404);
    // A header match; a regex + query match (on a DNS-named endpoint).
    assert_eq!(served_by(&api("POST", "/v1/x", &[("x-env", "beta")])), "b");
    assert_eq!(served_by(&api("GET", "/items/42?debug=on", &[])), "b");
    assert_eq!(api("GET", "/items/42x?debug=on", &[]).status, 404);
    // A suffix wildcard domain, with a port.
    let got = send(
        weft.addr,
        "GET",
        "/health",
        &[("host", "eu.api.test:8080")],
        "",
    );
    assert_eq!((got.status, got.body.as_str()), (200, "ok\n"));
    assert_eq!(got.headers["content-type"], "text/plain");

    // No route: 404 saying so.
    let got = api("GET", "/nothing", &[]);
    assert_eq!(got.status, 404);
    assert!(
        got.headers["x-weft-error"]
            .to_str()
            .unwrap()
            .contains("no route")
    );

    // Redirects.
    let got = api("GET", "/old/page?q=1", &[]);
    assert_eq!(got.status, 308);
    assert_eq!(got.headers["location"], "http://api.test/new/page?q=1");
    let got = send(weft.addr, "GET", "/x?y", &[("host", "other.test:8080")], "");
    assert_eq!(got.status, 301);
    assert_eq!(got.headers["location"], "https://www.test/x?y");
}

#[test]
fn weighted_clusters_split_traffic_within_tolerance() {
    split_traffic("");
}

#[test]
fn weighted_clusters_split_traffic_within_tolerance_with_an_access_log() {
    split_traffic(ACCESS_LOG);
}

fn split_traffic(access_log: &str) {
    let v1 = Upstream::named("v1");
    let v2 = Upstream::named("v2");
    let weft = Weft::proxy(&format!(
        r#"
workers: 2
listeners:
  - name: ingress
    address: 127.0.0.1:0{access_log}
    virtual_hosts:
      - name: all
        routes:
          - forward:
              weighted_clusters: [{{cluster: v1, weight: 90}}, {{cluster: v2, weight: 10}}]
              cluster_header: x-weft-cluster
clusters:
  - {{name: v1, endpoints: ["{v1}"]}}
  - {{name: v2, endpoints: ["{v2}"]}}
"#,
        v1 = v1.addr,
        v2 = v2.addr,
    ));
    let got = send_many(weft.addr, 2000, "/", &[]);
    let to_v2 = got.iter().filter(|g| served_by(g) == "v2").count();
    let to_v1 = got.iter().filter(|g| served_by(g) == "v1").count();
    assert_eq!(to_v1 + to_v2, 2000);
    // Expected 200; the standard deviation is about 13.
    assert!((140..=260).contains(&to_v2), "v2 got {to_v2} of 2000");

    // The cluster header (what a filter sets) overrides the split.
    let got = send_many(weft.addr, 20, "/", &[("x-weft-cluster", "v2")]);
    assert!(got.iter().all(|g| served_by(g) == "v2"));
    let got = send(weft.addr, "GET", "/", &[("x-weft-cluster", "nope")], "");
    assert_eq!(got.status, 503);
    assert!(
        got.headers["x-weft-error"]
            .to_str()
            .unwrap()
            .contains("names no cluster: `nope`")
    );
}

#[test]
fn ring_hash_keeps_a_user_on_one_endpoint() {
    let ups: Vec<Upstream> = ["e0", "e1", "e2"]
        .into_iter()
        .map(Upstream::named)
        .collect();
    let endpoints: Vec<String> = ups.iter().map(|u| format!("\"{}\"", u.addr)).collect();
    let weft = Weft::proxy(&format!(
        r#"
workers: 2
listeners:
  - {{name: ingress, address: 127.0.0.1:0, cluster: app}}
clusters:
  - name: app
    endpoints: [{}]
    lb_policy: ring_hash
    hash_on: {{header: x-user}}
"#,
        endpoints.join(", ")
    ));
    let mut owners = std::collections::HashSet::new();
    for user in 0..30 {
        let user = format!("user-{user}");
        let got = send_many(weft.addr, 5, "/", &[("x-user", &user)]);
        let first = served_by(&got[0]);
        assert!(got.iter().all(|g| served_by(g) == first), "{user} moved");
        // A new connection (maybe another worker) agrees.
        assert_eq!(
            served_by(&send(weft.addr, "GET", "/", &[("x-user", &user)], "")),
            first
        );
        owners.insert(first);
    }
    assert_eq!(owners.len(), 3, "30 users all land on some of 3 endpoints");
}

#[test]
fn least_request_and_random_use_every_endpoint() {
    for policy in ["least_request", "random", "round_robin"] {
        let a = Upstream::named("a");
        let b = Upstream::named("b");
        let weft = Weft::proxy(&format!(
            r#"
workers: 1
listeners:
  - {{name: ingress, address: 127.0.0.1:0, cluster: app}}
clusters:
  - {{name: app, endpoints: ["{}", "{}"], lb_policy: {policy}}}
"#,
            a.addr, b.addr
        ));
        let got = send_many(weft.addr, 100, "/", &[]);
        let to_a = got.iter().filter(|g| served_by(g) == "a").count();
        assert!((15..=85).contains(&to_a), "{policy}: a got {to_a} of 100");
    }
}

/// An upstream that switches every request to an echo protocol: it
/// answers 101 and then sends back whatever it receives.
fn echo_upgrade_upstream() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    support::raw_upstream(|tcp, head| {
        assert!(head.contains("upgrade: echo"), "{head}");
        assert!(head.contains("connection: upgrade"), "{head}");
        tcp.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n",
        )
        .unwrap();
        let mut buf = [0u8; 1024];
        loop {
            let n = tcp.read(&mut buf).unwrap_or(0);
            if n == 0 || tcp.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    })
}

#[test]
fn upgrades_are_tunnelled_both_ways() {
    use std::io::{Read, Write};
    let upstream = echo_upgrade_upstream();
    let weft = Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - {{name: l, address: 127.0.0.1:0, cluster: ws}}\nclusters:\n  - {{name: ws, endpoints: [\"{upstream}\"]}}\n"
    ));
    let mut tcp = std::net::TcpStream::connect(weft.addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    tcp.write_all(b"GET /chat HTTP/1.1\r\nhost: t\r\nconnection: Upgrade\r\nupgrade: echo\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(tcp.read(&mut byte).unwrap(), 1, "{head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    for message in ["hello", "through the tunnel"] {
        tcp.write_all(message.as_bytes()).unwrap();
        let mut got = vec![0u8; message.len()];
        tcp.read_exact(&mut got).unwrap();
        assert_eq!(got, message.as_bytes());
    }
}

#[test]
fn per_route_filter_chains_replace_the_listeners() {
    let up = Upstream::start();
    let weft = Weft::proxy(&format!(
        r#"
workers: 1
listeners:
  - name: l
    address: 127.0.0.1:0
    filters: [hello]
    virtual_hosts:
      - name: all
        routes:
          - {{match: {{prefix: /bare}}, forward: {{cluster: app}}, filters: []}}
          - {{match: {{prefix: /other}}, forward: {{cluster: app}}, filters: [other]}}
          - forward: {{cluster: app}}
clusters:
  - {{name: app, endpoints: ["{}"]}}
plugins:
  - {{name: hello, module: {}, configuration: {{header: x-hello, value: listener}}}}
  - {{name: other, module: {}, configuration: {{header: x-other, value: route}}}}
"#,
        up.addr,
        support::filter("hello_rust.wasm").display(),
        support::filter("hello_rust.wasm").display(),
    ));
    let got = send(weft.addr, "GET", "/x", &[], "");
    assert_eq!(got.headers["x-hello"], "listener");
    let got = send(weft.addr, "GET", "/bare", &[], "");
    assert!(got.headers.get("x-hello").is_none());
    let got = send(weft.addr, "GET", "/other", &[], "");
    assert!(got.headers.get("x-hello").is_none());
    assert_eq!(got.headers["x-other"], "route");
}

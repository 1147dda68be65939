//! The router filter (filters/router) in a real `weft proxy` in front of
//! two upstream versions: the weighted split, sticky users, the tester
//! override, rule matching, its metrics, and refused configuration.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use support::{Upstream, Weft, filter, send, send_many, served_by};

fn config(v1: &Upstream, v2: &Upstream, router: &str) -> String {
    format!(
        r#"
workers: 2
admin: {{address: 127.0.0.1:0}}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    filters: [router]
    virtual_hosts:
      - name: shop
        routes:
          - forward: {{cluster: v1, cluster_header: x-weft-cluster}}
clusters:
  - {{name: v1, endpoints: ["{}"]}}
  - {{name: v2, endpoints: ["{}"]}}
plugins:
  - name: router
    module: {}
    configuration: {router}
"#,
        v1.addr,
        v2.addr,
        filter("router.wasm").display()
    )
}

const CANARY: &str = r#"{"rules": [
  {"name": "beta", "match": {"headers": {"x-beta": "1"}}, "backends": [{"name": "v2", "cluster": "v2", "weight": 1}]},
  {"name": "canary", "match": {"path_prefix": "/shop"},
   "backends": [{"name": "v1", "cluster": "v1", "weight": 80}, {"name": "v2", "cluster": "v2", "weight": 20}],
   "sticky": {"header": "x-user"}}
]}"#;

#[test]
fn splits_by_weight_keeps_users_sticky_and_honours_the_override() {
    let v1 = Upstream::named("v1");
    let v2 = Upstream::named("v2");
    let weft = Weft::proxy(&config(&v1, &v2, CANARY));

    // 1,000 users, one request each: about 20% on v2.
    let mut to_v2 = 0;
    let mut owner = Vec::new();
    for user in 0..1000 {
        let user = format!("user-{user}");
        let got = send_many(weft.addr, 1, "/shop/cart", &[("x-user", &user)]);
        let by = served_by(&got[0]);
        to_v2 += usize::from(by == "v2");
        owner.push((user, by));
    }
    // Expected 200; the standard deviation is about 13.
    assert!((140..=260).contains(&to_v2), "v2 got {to_v2} of 1000 users");

    // The same users land on the same version again (another connection,
    // maybe another worker).
    for (user, by) in owner.iter().take(50) {
        let got = send(weft.addr, "GET", "/shop/item", &[("x-user", user)], "");
        assert_eq!(&served_by(&got), by, "{user} moved");
    }
    // The upstream learns the version.
    let seen = v2.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.headers["x-weft-version"], "v2");

    // A tester picks a version; a matching header rule wins over the split.
    let pinned = owner.iter().find(|(_, by)| by == "v1").unwrap();
    let got = send(
        weft.addr,
        "GET",
        "/shop/x",
        &[("x-user", &pinned.0), ("x-weft-version", "v2")],
        "",
    );
    assert_eq!(served_by(&got), "v2");
    let got = send(weft.addr, "GET", "/anything", &[("x-beta", "1")], "");
    assert_eq!(served_by(&got), "v2");
    // No rule matches: the route's own cluster.
    let got = send(weft.addr, "GET", "/other", &[], "");
    assert_eq!(served_by(&got), "v1");

    let metrics = send(weft.listeners["admin"], "GET", "/metrics", &[], "").body;
    let count = |name: &str| support::metric(&metrics, name);
    let canary = count("router_canary_v1_requests") + count("router_canary_v2_requests");
    assert_eq!(canary, 1000 + 50 + 1);
    assert_eq!(count("router_beta_v2_requests"), 1);
}

#[test]
fn bad_configuration_is_refused_naming_the_field() {
    let v1 = Upstream::named("v1");
    let v2 = Upstream::named("v2");
    let bad =
        r#"{"rules": [{"name": "r", "backends": [{"name": "v1", "cluster": "v1", "weight": 0}]}]}"#;
    let stderr = support::refused(&config(&v1, &v2, bad));
    assert!(
        stderr.contains("`rules[0].backends`: the weights add up to 0"),
        "{stderr}"
    );
}

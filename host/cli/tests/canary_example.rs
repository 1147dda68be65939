//! examples/canary-rollout runs as documented: its weft.yaml, with the
//! ports replaced, in front of two real upstream versions — auth, rate
//! limit, router, fault and telemetry on every request.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use support::{Upstream, Weft, send, send_many, served_by};

#[test]
fn the_canary_example_splits_authenticated_traffic_and_reports_it() {
    let v1 = Upstream::named("v1");
    let v2 = Upstream::named("v2");
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/canary-rollout");
    let filters = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/filters");
    let config = std::fs::read_to_string(example.join("weft.yaml"))
        .unwrap()
        .replace("127.0.0.1:9901", "127.0.0.1:0")
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9001", &v1.addr.to_string())
        .replace("127.0.0.1:9002", &v2.addr.to_string())
        .replace(
            "../../target/filters",
            &filters.canonicalize().unwrap().display().to_string(),
        );
    let weft = Weft::proxy(&config);

    assert_eq!(send(weft.addr, "GET", "/cart", &[], "").status, 401);
    assert_eq!(send(weft.addr, "GET", "/healthz", &[], "").body, "ok\n");

    let mut on_v2 = 0;
    for user in 0..300 {
        let user = format!("u{user}");
        let got = send_many(
            weft.addr,
            2,
            "/cart",
            &[("x-api-key", "demo-key"), ("x-user", &user)],
        );
        assert!(got.iter().all(|g| g.status == 200), "{}", got[0].status);
        assert_eq!(
            served_by(&got[0]),
            served_by(&got[1]),
            "{user} moved between versions"
        );
        on_v2 += usize::from(served_by(&got[0]) == "v2");
    }
    // 10% expected (30 of 300); the standard deviation is about 5.
    assert!((12..=50).contains(&on_v2), "{on_v2} of 300 users on v2");

    let metrics = send(weft.listeners["admin"], "GET", "/metrics", &[], "").body;
    for want in [
        "router_canary_v1_requests",
        "router_canary_v2_requests",
        "telemetry_requests{route=\"shop/app\",cluster=\"shop-v2\",class=\"2xx\"}",
        "ratelimit_shop_allowed 600",
        "auth_allowed 600",
    ] {
        assert!(metrics.contains(want), "{want} missing:\n{metrics}");
    }
}

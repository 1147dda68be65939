//! examples/canary-rollout runs as documented: its weft.yaml, with the
//! ports replaced, in front of two real upstream versions — auth, rate
//! limit, router, fault and telemetry on every request.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::time::Duration;

use support::{Upstream, Weft, eventually, send, send_many, served_by};

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
    // The bundle directory the example applies, with absolute module paths.
    let rollout = tempfile::tempdir().unwrap();
    let bundle_yaml = |weights: (u32, u32), version: u32| {
        std::fs::read_to_string(example.join("rollout/bundle.yaml"))
            .unwrap()
            .replace(
                "../../../target/filters",
                &filters.canonicalize().unwrap().display().to_string(),
            )
            .replace("weight: 90", &format!("weight: {}", weights.0))
            .replace("weight: 10", &format!("weight: {}", weights.1))
            .replace("version: \"1\"", &format!("version: \"{version}\""))
    };
    std::fs::write(rollout.path().join("bundle.yaml"), bundle_yaml((90, 10), 1)).unwrap();
    let config = config.replace(
        "bundles: {path: rollout}",
        &format!("bundles: {{path: \"{}\"}}", rollout.path().display()),
    );
    let weft = Weft::proxy(&config);

    assert_eq!(send(weft.addr, "GET", "/cart", &[], "").status, 401);
    assert_eq!(send(weft.addr, "GET", "/healthz", &[], "").body, "ok\n");

    let mut on_v2 = 0;
    let mut v2_users: Vec<String> = Vec::new();
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
        if served_by(&got[0]) == "v2" {
            on_v2 += 1;
            v2_users.push(user);
        }
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

    // Shift to 50/50 by changing the bundle: no restart.
    // Written aside and renamed into place, as editors and tools do: the
    // proxy never reads half a file.
    let put = |text: String| {
        let aside = rollout.path().join("bundle.yaml.tmp");
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, rollout.path().join("bundle.yaml")).unwrap();
    };
    put(bundle_yaml((50, 50), 2));
    eventually(Duration::from_secs(20), || {
        let body = send(weft.listeners["admin"], "GET", "/bundle", &[], "").body;
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        if status["applied"]["version"] == "2" {
            Ok(())
        } else {
            Err(format!("never applied: {status:#}"))
        }
    });
    let mut on_v2_now = 0;
    for user in 0..300 {
        let user = format!("u{user}");
        let got = send(
            weft.addr,
            "GET",
            "/cart",
            &[("x-api-key", "demo-key"), ("x-user", &user)],
            "",
        );
        assert_eq!(got.status, 200);
        let v2 = served_by(&got) == "v2";
        on_v2_now += usize::from(v2);
        if v2_users.contains(&user) {
            assert!(v2, "{user} was on v2 and left it when v2's share grew");
        }
    }
    // 50% expected (150 of 300); the standard deviation is about 9.
    assert!(
        (110..=190).contains(&on_v2_now),
        "{on_v2_now} of 300 users on v2 after the shift"
    );

    // A bad edit is refused by the router's on_configure; the split stays.
    let bad = bundle_yaml((50, 50), 3).replace("weight: 50}", "weight: -1}");
    put(bad);
    let status = eventually(Duration::from_secs(20), || {
        let body = send(weft.listeners["admin"], "GET", "/bundle", &[], "").body;
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        if status["refusals"] == 1 {
            Ok(status)
        } else {
            Err(format!("never refused: {status:#}"))
        }
    });
    assert_eq!(status["applied"]["version"], "2", "{status:#}");
    let user = v2_users[0].clone();
    let got = send(
        weft.addr,
        "GET",
        "/cart",
        &[("x-api-key", "demo-key"), ("x-user", &user)],
        "",
    );
    assert_eq!((got.status, served_by(&got).as_str()), (200, "v2"));
}

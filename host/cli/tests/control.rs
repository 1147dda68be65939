//! The control endpoint end to end: one `weft control` and five `weft
//! proxy` processes on loopback. A push and promotion reach every proxy
//! and they ACK; a proxy that trusts another key NACKs and keeps its
//! version; rollback propagates; a `kill -9` of the endpoint loses
//! nothing; the API refuses what it must with 400/401/403/404/409/413.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use support::{Upstream, Weft, eventually, send, versioned_wat};

const ADMIN: &str = "admin-token-0123456789";
const READER: &str = "reader-token-0123456789";
const PROXY: &str = "proxy-token-0123456789";

use support::{output_text as text, weft_cli as weft};

fn control_config(data: &Path) -> String {
    let entry = |name: &str, role: &str, token: &str| {
        format!(
            "  - {{name: {name}, role: {role}, sha256: {}}}\n",
            weft_bundle::sha256_hex(token.as_bytes())
        )
    };
    format!(
        "address: 127.0.0.1:0\ndata_dir: {}\nmax_upload_mb: 1\ntokens:\n{}{}{}",
        data.display(),
        entry("ci", "admin", ADMIN),
        entry("dashboard", "reader", READER),
        entry("fleet", "proxy", PROXY)
    )
}

/// Builds bundle `demo` at `version` (module says `x-version: VALUE`),
/// signed with `key`, into DIR/demo-VERSION.bundle.tar.gz.
fn build(dir: &Path, version: &str, value: &str, key: &str) -> PathBuf {
    let src = dir.join(format!("src-{version}"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("versioned.wat"), versioned_wat(value, 1)).unwrap();
    std::fs::write(
        src.join("bundle.yaml"),
        format!("name: demo\nversion: '{version}'\nplugins:\n  - {{name: versioned, module: versioned.wat}}\n"),
    )
    .unwrap();
    let out = weft(
        &["bundle", "build", src.to_str().unwrap(), "--sign", key],
        dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    dir.join(format!("demo-{version}.bundle.tar.gz"))
}

/// Runs a `weft bundle` command against the endpoint as `token`.
fn remote(dir: &Path, control: &str, token: &str, args: &[&str]) -> Output {
    std::fs::write(dir.join("token"), token).unwrap();
    let mut all = vec!["bundle"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--control", control, "--token-file", "token"]);
    weft(&all, dir)
}

fn proxy(dir: &Path, control: &str, id: &str, trust: &str, upstream: &Upstream) -> Weft {
    proxy_with(dir, control, id, trust, upstream, "")
}

/// [`proxy`], with more fields for its `bundles.control`.
fn proxy_with(
    dir: &Path,
    control: &str,
    id: &str,
    trust: &str,
    upstream: &Upstream,
    extra: &str,
) -> Weft {
    std::fs::write(dir.join("proxy.token"), PROXY).unwrap();
    let trusted = trust;
    Weft::proxy(&format!(
        r#"
workers: 1
admin: {{address: 127.0.0.1:0}}
labels: {{env: prod, trust: {trust}}}
bundles:
  control: {{url: "{control}", token_file: "{}", id: {id}{extra}}}
  trusted_keys: ["{}"]
listeners:
  - {{name: ingress, address: 127.0.0.1:0, cluster: app, filters: [versioned]}}
clusters:
  - {{name: app, endpoints: ["{}"]}}
plugins:
  - {{name: versioned, module: "{}"}}
"#,
        dir.join("proxy.token").display(),
        dir.join(format!("{trusted}.pub")).display(),
        upstream.addr,
        dir.join("v0.wat").display()
    ))
}

fn served(proxy: &Weft) -> String {
    let got = send(proxy.addr, "GET", "/", &[], "");
    assert_eq!(got.status, 200);
    got.headers["x-version"].to_str().unwrap().to_string()
}

/// Waits until every proxy serves what `want` says for its index.
fn wait_served(proxies: &[Weft], want: impl Fn(usize) -> &'static str) -> Duration {
    let start = Instant::now();
    for (i, proxy) in proxies.iter().enumerate() {
        while served(proxy) != want(i) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "proxy {i} serves {} instead of {}",
                served(proxy),
                want(i)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    start.elapsed()
}

/// Proxy `i`'s id: p0..p3 trust the release key; a4 (first by id, so the
/// canary of staged rollouts to all) trusts another.
fn id(i: usize) -> String {
    if i == 4 { "a4".into() } else { format!("p{i}") }
}

fn status(dir: &Path, control: &str) -> serde_json::Value {
    let out = remote(dir, control, READER, &["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until `/v1/status` shows each proxy in the state `want` gives.
fn wait_states(
    dir: &Path,
    control: &str,
    want: impl Fn(usize) -> &'static str,
) -> serde_json::Value {
    eventually(Duration::from_secs(30), || {
        let status = status(dir, control);
        let all = (0..5).all(|i| status["proxies"][id(i)]["state"] == want(i));
        if all {
            Ok(status)
        } else {
            Err(format!("{status:#}"))
        }
    })
}

#[test]
fn a_fleet_follows_pushes_promotions_and_rollbacks() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let data = dir.join("data");
    std::fs::write(dir.join("v0.wat"), versioned_wat("v0", 1)).unwrap();
    for name in ["release", "other"] {
        let out = weft(&["bundle", "keygen", name], dir);
        assert!(out.status.success(), "{}", text(&out));
    }
    let v1 = build(dir, "1", "b1", "release.key");
    let v2 = build(dir, "2", "b2", "release.key");

    let mut control = Weft::control(&control_config(&data));
    let url = format!("http://{}", control.addr);
    let upstream = Upstream::start();
    // a4 trusts another key: it must refuse what the others take.
    let proxies: Vec<Weft> = (0..5)
        .map(|i| {
            let trust = if i == 4 { "other" } else { "release" };
            proxy(dir, &url, &id(i), trust, &upstream)
        })
        .collect();
    assert!(proxies.iter().all(|p| served(p) == "v0"));

    // Push and promote 1: p0..p3 ACK, p4 NACKs and keeps v0.
    for bundle in [&v1, &v2] {
        let out = remote(dir, &url, ADMIN, &["push", bundle.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("pushed demo"), "{}", text(&out));
    }
    let out = remote(
        dir,
        &url,
        ADMIN,
        &["promote", "demo", "1", "--selector", "env=prod"],
    );
    assert!(out.status.success(), "{}", text(&out));
    wait_served(&proxies, |i| if i == 4 { "v0" } else { "b1" });
    let states = wait_states(dir, &url, |i| if i == 4 { "nack" } else { "ack" });
    let reason = states["proxies"]["a4"]["reason"].as_str().unwrap();
    assert!(reason.contains("not trusted"), "{reason}");

    // Promote 2: it reaches all four; the time is reported in docs/benchmarks.md.
    let out = remote(
        dir,
        &url,
        ADMIN,
        &["promote", "demo", "2", "--selector", "env=prod"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let took = wait_served(&proxies, |i| if i == 4 { "v0" } else { "b2" });
    eprintln!("promotion to four proxies serving it: {took:?}");

    // Roll back to 1.
    let out = remote(dir, &url, ADMIN, &["rollback", "demo", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_served(&proxies, |i| if i == 4 { "v0" } else { "b1" });
    wait_states(dir, &url, |i| if i == 4 { "nack" } else { "ack" });

    // Staged: a canary first. When the canary (a4, first by id) NACKs,
    // nobody else gets the version.
    let out = remote(
        dir,
        &url,
        ADMIN,
        &[
            "promote",
            "demo",
            "2",
            "--selector",
            "env=prod",
            "--canary",
            "1",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let promotion: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(promotion["canaries"], serde_json::json!(["a4"]));
    eventually(Duration::from_secs(30), || {
        if status(dir, &url)["promotions"][0]["stage"] == "failed" {
            Ok(())
        } else {
            Err("the staged promotion never failed".to_string())
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        proxies[..4].iter().all(|p| served(p) == "b1"),
        "a failed canary stops the rollout"
    );
    // With a canary that ACKs, the rest follow.
    let out = remote(
        dir,
        &url,
        ADMIN,
        &[
            "promote",
            "demo",
            "2",
            "--selector",
            "trust=release",
            "--canary",
            "1",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let promotion: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(promotion["canaries"], serde_json::json!(["p0"]));
    wait_served(&proxies, |i| if i == 4 { "v0" } else { "b2" });
    assert_eq!(status(dir, &url)["promotions"][0]["stage"], "complete");
    let out = remote(dir, &url, ADMIN, &["rollback", "demo", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_served(&proxies, |i| if i == 4 { "v0" } else { "b1" });

    // kill -9 the endpoint, start it again on the same data: nothing is lost.
    let before = status(dir, &url);
    let history = remote(dir, &url, READER, &["history", "--json"]);
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    drop(control);
    control = Weft::control(
        &control_config(&data).replace("127.0.0.1:0", url.trim_start_matches("http://")),
    );
    let after = status(dir, &url);
    assert_eq!(after["promotions"], before["promotions"]);
    assert_eq!(after["proxies"].as_object().unwrap().len(), 5);
    let history_after = remote(dir, &url, READER, &["history", "--json"]);
    let history_after: serde_json::Value = serde_json::from_slice(&history_after.stdout).unwrap();
    assert_eq!(history_after, history);
    let actions: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in ["push", "promote", "rollback", "ack", "nack"] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    // The proxies come back to it: a new promotion still reaches them.
    let out = remote(
        dir,
        &url,
        ADMIN,
        &["promote", "demo", "2", "--selector", "env=prod"],
    );
    assert!(out.status.success(), "{}", text(&out));
    wait_served(&proxies, |i| if i == 4 { "v0" } else { "b2" });
    drop(control);
}

#[test]
fn the_api_refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let control = Weft::control(&control_config(&dir.join("data")));
    let url = format!("http://{}", control.addr);
    let out = weft(&["bundle", "keygen", "release"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let v1 = build(dir, "1", "b1", "release.key");
    let v1 = v1.to_str().unwrap();

    // No token, an unknown token, a reader pushing.
    let got = send(control.addr, "GET", "/v1/status", &[], "");
    assert_eq!(got.status, 401);
    assert!(got.headers.contains_key("www-authenticate"));
    let out = remote(dir, &url, "wrong", &["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("401"), "{}", text(&out));
    let out = remote(dir, &url, READER, &["push", v1]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("403"), "{}", text(&out));
    let out = remote(dir, &url, PROXY, &["promote", "demo", "1"]);
    assert!(text(&out).contains("403"), "{}", text(&out));

    // A corrupt archive, an oversized one, a version pushed twice with
    // different content, an unknown version.
    std::fs::write(dir.join("junk.tar.gz"), b"junk").unwrap();
    let out = remote(dir, &url, ADMIN, &["push", "junk.tar.gz"]);
    assert!(text(&out).contains("400"), "{}", text(&out));
    let big: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(dir.join("big.tar.gz"), big).unwrap();
    let out = remote(dir, &url, ADMIN, &["push", "big.tar.gz"]);
    assert!(text(&out).contains("413"), "{}", text(&out));
    let out = remote(dir, &url, ADMIN, &["push", v1]);
    assert!(out.status.success(), "{}", text(&out));
    let out = remote(dir, &url, ADMIN, &["push", v1]);
    assert!(
        out.status.success(),
        "the same bundle again is fine: {}",
        text(&out)
    );
    let changed = build(dir, "1", "other", "release.key");
    let out = remote(dir, &url, ADMIN, &["push", changed.to_str().unwrap()]);
    assert!(text(&out).contains("409"), "{}", text(&out));
    let out = remote(dir, &url, ADMIN, &["promote", "demo", "9"]);
    assert!(text(&out).contains("404"), "{}", text(&out));
    let out = remote(dir, &url, ADMIN, &["rollback", "nothing", "1"]);
    assert!(text(&out).contains("404"), "{}", text(&out));

    // A proxy's malformed query is refused, not read as something else.
    let auth = format!("Bearer {PROXY}");
    for (query, problem) in [
        (
            "wait=abc",
            "query `wait`: `abc` is not a whole number of seconds",
        ),
        (
            "labels=envprod",
            "query `labels`: `envprod` is not KEY=VALUE",
        ),
    ] {
        let got = send(
            control.addr,
            "GET",
            &format!("/v1/proxies/p1/desired?{query}"),
            &[("authorization", auth.as_str())],
            "",
        );
        assert_eq!(got.status, 400, "{query}: {}", got.body);
        assert!(got.body.contains(problem), "{query}: {}", got.body);
    }

    // Unreachable: exit status 3.
    let out = remote(dir, "http://127.0.0.1:1", ADMIN, &["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));

    // The API describes itself.
    let got = send(control.addr, "GET", "/openapi.json", &[], "");
    let doc: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/v1/promotions"]["post"].is_object());
}

#[test]
fn the_api_speaks_https() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let pki = support::pki::Pki::new(dir);
    let (cert, key) = pki.issue("control", &["localhost"], None);
    let control = Weft::control(&format!(
        "{}tls: {{cert: {}, key: {}}}\n",
        control_config(&dir.join("data")),
        cert.display(),
        key.display()
    ));
    let url = format!("https://localhost:{}", control.addr.port());
    let ca = pki.ca_file();
    let ca = ca.to_str().unwrap();

    // Without the CA the client refuses the certificate: unreachable (3).
    let out = remote(dir, &url, READER, &["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let out = remote(dir, &url, READER, &["status", "--ca", ca]);
    assert!(out.status.success(), "{}", text(&out));

    // A proxy subscribes over HTTPS and runs what is promoted.
    std::fs::write(dir.join("v0.wat"), versioned_wat("v0", 1)).unwrap();
    assert!(weft(&["bundle", "keygen", "release"], dir).status.success());
    let bundle = build(dir, "1", "b1", "release.key");
    let upstream = Upstream::start();
    let proxy = proxy_with(
        dir,
        &url,
        "p0",
        "release",
        &upstream,
        &format!(", ca: \"{ca}\""),
    );
    let out = remote(
        dir,
        &url,
        ADMIN,
        &["push", bundle.to_str().unwrap(), "--ca", ca],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = remote(dir, &url, ADMIN, &["promote", "demo", "1", "--ca", ca]);
    assert!(out.status.success(), "{}", text(&out));
    wait_served(std::slice::from_ref(&proxy), |_| "b1");
}

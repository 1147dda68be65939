//! Bundles end to end: `weft bundle keygen|build|sign|verify`, a proxy
//! applying a bundle directory or archive at start and when it changes,
//! signatures checked against trusted keys, and every bad bundle refused
//! while the running version keeps serving.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{Upstream, Weft, eventually, header_wat, send, served_by, versioned_wat};

use support::{output_text as text, weft_cli as weft};

/// Writes a bundle source directory: `bundle.yaml` for `versioned` at
/// `version`, whose module adds `x-version: VALUE`.
fn write_source(dir: &Path, version: &str, value: &str, extra: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("versioned.wat"), versioned_wat(value, 1)).unwrap();
    std::fs::write(
        dir.join("bundle.yaml"),
        format!(
            "name: demo\nversion: '{version}'\nlabels: {{env: prod}}\nplugins:\n  - name: versioned\n    module: versioned.wat\n{extra}"
        ),
    )
    .unwrap();
}

struct Setup {
    weft: Weft,
    dir: tempfile::TempDir,
    _upstream: Upstream,
}

/// A proxy labelled env=prod whose plugin `versioned` says v1, taking
/// bundles from `source` (relative to the temporary directory).
fn setup(source: &str, trusted_keys: &str, prepare: impl FnOnce(&Path)) -> Setup {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("v1.wat"), versioned_wat("v1", 1)).unwrap();
    prepare(dir.path());
    let weft = Weft::proxy(&format!(
        r#"
workers: 2
admin: {{address: 127.0.0.1:0}}
labels: {{env: prod, zone: a}}
bundles: {{path: "{}", trusted_keys: [{}]}}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    cluster: app
    filters: [versioned]
clusters:
  - {{name: app, endpoints: ["{}"]}}
plugins:
  - {{name: versioned, module: "{}"}}
"#,
        dir.path().join(source).display(),
        trusted_keys.replace("$DIR", &dir.path().display().to_string()),
        upstream.addr,
        dir.path().join("v1.wat").display()
    ));
    Setup {
        weft,
        dir,
        _upstream: upstream,
    }
}

fn served_version(weft: &Weft) -> String {
    let got = send(weft.addr, "GET", "/", &[], "");
    assert_eq!(got.status, 200);
    got.headers["x-version"].to_str().unwrap().to_string()
}

fn bundle_status(weft: &Weft) -> serde_json::Value {
    let body = send(weft.listeners["admin"], "GET", "/bundle", &[], "").body;
    serde_json::from_str(&body).unwrap()
}

/// Waits until `/bundle` says `field` is `want`.
fn wait_bundle(weft: &Weft, field: &str, want: u64) -> serde_json::Value {
    eventually(Duration::from_secs(20), || {
        let status = bundle_status(weft);
        if status[field] == want {
            Ok(status)
        } else {
            Err(format!("{field} never reached {want}: {status:#}"))
        }
    })
}

#[test]
fn a_bundle_directory_is_applied_at_start_and_again_when_it_changes() {
    let s = setup("src", "", |dir| {
        write_source(&dir.join("src"), "1", "v2", "")
    });
    let status = wait_bundle(&s.weft, "applies", 1);
    assert_eq!(status["applied"]["version"], "1");
    assert!(
        status["applied"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(served_version(&s.weft), "v2");

    // The authoring loop: change the source, the next requests run it.
    write_source(&s.dir.path().join("src"), "2", "v3", "");
    let status = wait_bundle(&s.weft, "applies", 2);
    assert_eq!(status["applied"]["version"], "2");
    assert_eq!(served_version(&s.weft), "v3");

    // A version whose module did not change is not compiled again.
    let metrics = || send(s.weft.listeners["admin"], "GET", "/metrics", &[], "").body;
    let compiles = support::metric(&metrics(), "weft_module_compiles_total");
    write_source(&s.dir.path().join("src"), "3", "v3", "");
    wait_bundle(&s.weft, "applies", 3);
    assert_eq!(
        support::metric(&metrics(), "weft_module_compiles_total"),
        compiles
    );
    assert!(support::metric(&metrics(), "weft_module_cache_hits_total") >= 1);
}

#[test]
fn signed_bundles_are_checked_against_trusted_keys() {
    let s = setup("demo.bundle.tar.gz", "\"$DIR/trusted.pub\"", |dir| {
        write_source(&dir.join("src"), "1", "v2", "");
        for name in ["trusted", "other"] {
            let out = weft(&["bundle", "keygen", name], dir);
            assert!(out.status.success(), "{}", text(&out));
        }
        let out = weft(
            &[
                "bundle",
                "build",
                "src",
                "--sign",
                "trusted.key",
                "-o",
                "demo.bundle.tar.gz",
            ],
            dir,
        );
        assert!(out.status.success(), "{}", text(&out));
    });
    let dir = s.dir.path().to_path_buf();
    let status = wait_bundle(&s.weft, "applies", 1);
    assert_eq!(served_version(&s.weft), "v2");
    assert!(status["applied"]["signed_by"].is_string(), "{status:#}");

    // `weft bundle verify` says the same as the proxy.
    let out = weft(
        &[
            "bundle",
            "verify",
            "demo.bundle.tar.gz",
            "--trusted-key",
            "trusted.pub",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("signature: good"), "{}", text(&out));
    let out = weft(
        &[
            "bundle",
            "verify",
            "demo.bundle.tar.gz",
            "--trusted-key",
            "other.pub",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not trusted"), "{}", text(&out));

    // Unsigned: refused; the running version stays.
    write_source(&dir.join("src"), "2", "v3", "");
    let build = |args: &[&str]| {
        let staged = dir.join("staged.tar.gz");
        let mut all = vec!["bundle", "build", "src", "-o", "staged.tar.gz"];
        all.extend_from_slice(args);
        let out = weft(&all, &dir);
        assert!(out.status.success(), "{}", text(&out));
        std::fs::rename(staged, dir.join("demo.bundle.tar.gz")).unwrap();
    };
    build(&[]);
    let status = wait_bundle(&s.weft, "refusals", 1);
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("not signed"),
        "{status:#}"
    );
    assert_eq!(served_version(&s.weft), "v2");

    // Signed by a key the proxy does not trust: refused.
    build(&["--sign", "other.key"]);
    let status = wait_bundle(&s.weft, "refusals", 2);
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("not trusted"),
        "{status:#}"
    );
    assert_eq!(served_version(&s.weft), "v2");

    // Signed afterwards with `weft bundle sign`: taken.
    let out = weft(&["bundle", "build", "src", "-o", "staged.tar.gz"], &dir);
    assert!(out.status.success(), "{}", text(&out));
    let out = weft(
        &["bundle", "sign", "staged.tar.gz", "--key", "trusted.key"],
        &dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    std::fs::rename(dir.join("staged.tar.gz"), dir.join("demo.bundle.tar.gz")).unwrap();
    wait_bundle(&s.weft, "applies", 2);
    assert_eq!(served_version(&s.weft), "v3");
}

#[test]
fn bad_bundles_are_refused_and_the_running_version_stays() {
    let s = setup("src", "", |dir| {
        write_source(&dir.join("src"), "1", "v2", "")
    });
    wait_bundle(&s.weft, "applies", 1);
    let src: PathBuf = s.dir.path().join("src");
    let cases: [(&dyn Fn(), &str); 5] = [
        (
            &|| {
                write_source(&src, "2", "v3", "");
                let yaml = std::fs::read_to_string(src.join("bundle.yaml")).unwrap();
                std::fs::write(
                    src.join("bundle.yaml"),
                    yaml.replace("env: prod", "env: staging"),
                )
                .unwrap();
            },
            "for proxies labelled env=staging; this one is labelled env=prod,zone=a",
        ),
        (
            &|| {
                write_source(
                    &src,
                    "3",
                    "v3",
                    "listeners:\n  - {name: egress, filters: [versioned]}\n",
                )
            },
            "listener `egress`: this proxy has no listener of that name (its listeners: ingress)",
        ),
        (
            &|| write_source(&src, "4", "v3", "    allowed_clusters: [app]\n"),
            "granted by the proxy's own config",
        ),
        (
            &|| {
                write_source(&src, "5", "v3", "");
                std::fs::write(src.join("versioned.wat"), versioned_wat("v3", 0)).unwrap();
            },
            "configur",
        ),
        (
            &|| {
                write_source(&src, "6", "v3", "");
                std::fs::write(src.join("versioned.wat"), "(module (broken").unwrap();
            },
            "versioned",
        ),
    ];
    for (refusals, (break_it, reason)) in cases.iter().enumerate() {
        break_it();
        let status = wait_bundle(&s.weft, "refusals", refusals as u64 + 1);
        let error = status["last_error"].as_str().unwrap();
        assert!(error.contains(reason), "want {reason:?} in: {error}");
        assert_eq!(status["applied"]["version"], "1", "{status:#}");
        assert_eq!(served_version(&s.weft), "v2");
    }
    s.weft
        .wait_for_log("bundle refused, the running version stays");
    let metrics = send(s.weft.listeners["admin"], "GET", "/metrics", &[], "").body;
    assert!(
        metrics.contains("weft_bundle_refusals_total 5"),
        "{metrics}"
    );
}

#[test]
fn the_cli_reports_bad_archives_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    write_source(&dir.path().join("src"), "1", "v2", "");
    let out = weft(&["bundle", "build", "src", "--json"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["file"], "demo-1.bundle.tar.gz");
    assert_eq!(summary["plugins"][0]["name"], "versioned");

    std::fs::write(dir.path().join("junk.tar.gz"), b"junk").unwrap();
    let out = weft(&["bundle", "verify", "junk.tar.gz"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("junk.tar.gz: bundle archive"),
        "{}",
        text(&out)
    );

    let out = weft(
        &[
            "bundle",
            "verify",
            "demo-1.bundle.tar.gz",
            "--trusted-key",
            "bm90IGEga2V5",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("32 bytes"), "{}", text(&out));

    let out = weft(&["bundle", "build", "missing"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("missing/bundle.yaml"), "{}", text(&out));
}

/// Writes a bundle source: `bundle.yaml` (after a name and version) and
/// the modules it names, as (file, WAT).
fn write_bundle(dir: &Path, yaml: &str, modules: &[(&str, String)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (file, wat) in modules {
        std::fs::write(dir.join(file), wat).unwrap();
    }
    std::fs::write(dir.join("bundle.yaml"), yaml).unwrap();
}

/// Route policy for listener `ingress`: `/canary` to the canary cluster,
/// the rest to `app`, both through `versioned` then `CHAIN`.
fn canary_routes(chain: &str) -> String {
    format!(
        r#"listeners:
  - name: ingress
    filters: [versioned{chain}]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - {{name: canary, match: {{prefix: /canary}}, forward: {{cluster: canary}}}}
          - {{name: rest, forward: {{cluster: app}}}}
"#
    )
}

#[test]
fn bundles_set_routes_and_filter_chains_and_a_later_bundle_takes_them_back() {
    let app = Upstream::named("app");
    let canary = Upstream::named("canary");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::write(dir.path().join("v1.wat"), versioned_wat("v1", 1)).unwrap();
    // At start: a bundle that only replaces `versioned`.
    write_bundle(
        &src,
        "name: edge\nversion: '1'\nplugins:\n  - {name: versioned, module: v2.wat}\n",
        &[("v2.wat", versioned_wat("v2", 1))],
    );
    let weft = Weft::proxy(&format!(
        r#"
workers: 2
admin: {{address: 127.0.0.1:0}}
bundles: {{path: "{}"}}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    cluster: app
    filters: [versioned]
clusters:
  - {{name: app, endpoints: ["{}"]}}
  - {{name: canary, endpoints: ["{}"]}}
plugins:
  - {{name: versioned, module: "{}"}}
"#,
        src.display(),
        app.addr,
        canary.addr,
        dir.path().join("v1.wat").display()
    ));
    let get = |path: &str| send(weft.addr, "GET", path, &[], "");
    let header = |got: &support::Got, name: &str| {
        got.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let plugins = || -> serde_json::Value {
        serde_json::from_str(&send(weft.listeners["admin"], "GET", "/plugins", &[], "").body)
            .unwrap()
    };
    wait_bundle(&weft, "applies", 1);
    let got = get("/canary");
    assert_eq!(
        (served_by(&got).as_str(), header(&got, "x-version").as_str()),
        ("app", "v2")
    );

    // Version 2 adds a plugin, routes /canary to its own cluster and runs
    // the new plugin after `versioned` — which it no longer replaces, so
    // the proxy's own v1 comes back.
    write_bundle(
        &src,
        &format!(
            "name: edge\nversion: '2'\nplugins:\n  - {{name: stamp, module: stamp.wat}}\n{}",
            canary_routes(", stamp")
        ),
        &[("stamp.wat", header_wat("x-stamp", "s1", 1))],
    );
    let out = support::weft_cli(&["bundle", "build", "src", "-o", "edge.tar.gz"], dir.path());
    assert!(
        text(&out).contains(
            "listener ingress: filters [versioned, stamp]; 1 virtual host(s), 2 route(s)"
        ),
        "{}",
        text(&out)
    );
    let status = wait_bundle(&weft, "applies", 2);
    assert_eq!(
        status["applied"]["listeners"],
        serde_json::json!(["ingress"])
    );
    for (path, upstream) in [("/canary/a", "canary"), ("/other", "app")] {
        let got = get(path);
        assert_eq!(served_by(&got), upstream, "{path}");
        assert_eq!(header(&got, "x-version"), "v1", "{path}");
        assert_eq!(header(&got, "x-stamp"), "s1", "{path}");
    }
    let listed = plugins();
    assert_eq!(listed[1]["name"], "stamp", "{listed:#}");
    assert_eq!(listed[1]["source"], "bundle");
    assert_eq!(listed[0]["source"], "config");

    // Bad route policy is refused whole; version 2 keeps serving.
    let bad: [(String, &str); 4] = [
        (
            canary_routes(", stamp").replace("cluster: canary", "cluster: nowhere"),
            "no cluster",
        ),
        (canary_routes(", missing"), "missing"),
        (
            canary_routes(", stamp").replace("prefix: /canary", "regex: '('"),
            "regex",
        ),
        (
            "listeners:\n  - {name: ingress, filters: [versioned, stamp]}\n".to_string(),
            "stamp",
        ),
    ];
    for (refusals, (routes, reason)) in bad.iter().enumerate() {
        // The last one names `stamp` without carrying it.
        let plugins = if refusals == 3 {
            "plugins:\n  - {name: versioned, module: v2.wat}\n"
        } else {
            "plugins:\n  - {name: stamp, module: stamp.wat}\n"
        };
        write_bundle(
            &src,
            &format!("name: edge\nversion: 'bad{refusals}'\n{plugins}{routes}"),
            &[],
        );
        let status = wait_bundle(&weft, "refusals", refusals as u64 + 1);
        let error = status["last_error"].as_str().unwrap();
        assert!(error.contains(reason), "want {reason:?} in: {error}");
        assert_eq!(status["applied"]["version"], "2", "{status:#}");
        let got = get("/canary");
        assert_eq!(served_by(&got), "canary");
        assert_eq!(header(&got, "x-stamp"), "s1");
    }

    // Version 3 sets no routes and drops `stamp`: the proxy's own routes
    // and chain come back, and `stamp` is unloaded.
    write_bundle(
        &src,
        "name: edge\nversion: '3'\nplugins:\n  - {name: versioned, module: v3.wat}\n",
        &[("v3.wat", versioned_wat("v3", 1))],
    );
    let status = wait_bundle(&weft, "applies", 3);
    assert_eq!(status["applied"]["unloaded"], serde_json::json!(["stamp"]));
    let got = get("/canary");
    assert_eq!(served_by(&got), "app");
    assert_eq!(header(&got, "x-version"), "v3");
    assert_eq!(header(&got, "x-stamp"), "");
    let listed = plugins();
    assert_eq!(listed[1]["loaded"], false, "{listed:#}");

    // And version 2 again (a rollback) brings it all back.
    write_bundle(
        &src,
        &format!(
            "name: edge\nversion: '2'\nplugins:\n  - {{name: stamp, module: stamp.wat}}\n{}",
            canary_routes(", stamp")
        ),
        &[],
    );
    wait_bundle(&weft, "applies", 4);
    let got = get("/canary");
    assert_eq!(
        (
            served_by(&got).as_str(),
            header(&got, "x-version").as_str(),
            header(&got, "x-stamp").as_str()
        ),
        ("canary", "v1", "s1")
    );
}

#[test]
fn plugins_a_bundle_adds_get_the_grants_the_proxy_gives_them() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::write(dir.path().join("v1.wat"), versioned_wat("v1", 1)).unwrap();
    write_bundle(
        &src,
        "name: edge\nversion: '1'\nplugins:\n  - {name: stamp, module: stamp.wat}\nlisteners:\n  - {name: ingress, filters: [versioned, stamp]}\n",
        &[("stamp.wat", header_wat("x-stamp", "s1", 1))],
    );
    let weft = Weft::proxy(&format!(
        r#"
admin: {{address: 127.0.0.1:0}}
bundles:
  path: "{}"
  added_plugins: {{allowed_host_functions: [proxy_log]}}
listeners:
  - {{name: ingress, address: 127.0.0.1:0, cluster: app, filters: [versioned]}}
clusters:
  - {{name: app, endpoints: ["{}"]}}
plugins:
  - {{name: versioned, module: "{}"}}
"#,
        src.display(),
        upstream.addr,
        dir.path().join("v1.wat").display()
    ));
    wait_bundle(&weft, "applies", 1);
    let got = send(weft.addr, "GET", "/", &[], "");
    // The declared plugin keeps its own (unrestricted) grants; the added
    // one may only log, so its header call is refused.
    assert_eq!(got.headers["x-version"], "v1");
    assert!(!got.headers.contains_key("x-stamp"), "{:?}", got.headers);
    weft.wait_for_log("called proxy_add_header_map_value, which the plugin's allowed_host_functions do not include");
}

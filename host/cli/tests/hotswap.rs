//! Hot swap end to end: a bundle directory swapped 50 times under load
//! with nothing dropped, and bundles flipping routes and filter chains
//! under load with nothing dropped or mixed; plugins with `watch: true` swapped when their
//! module file changes; streams in flight
//! finish on the version they started on; a bad version is refused and the
//! running one stays.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::{Upstream, Weft, eventually, send, send_many};

/// Replaces `path` in one step (write aside, then rename), as build tools
/// and editors do.
fn replace(path: &Path, contents: &str) {
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, contents).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

struct Setup {
    weft: Weft,
    module: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _upstream: Upstream,
}

/// How a new version arrives.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    /// The plugin's module file changes (`watch: true`).
    ModuleFile,
    /// A bundle directory's module changes (`bundles: {path: DIR}`).
    Bundle,
}

fn setup(workers: usize, via: Via) -> Setup {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(
        src.join("bundle.yaml"),
        "name: versioned\nversion: '1'\nplugins:\n  - {name: versioned, module: versioned.wat}\n",
    )
    .unwrap();
    let module = match via {
        Via::ModuleFile => dir.path().join("versioned.wat"),
        Via::Bundle => src.join("versioned.wat"),
    };
    std::fs::write(&module, support::versioned_wat("v1", 1)).unwrap();
    std::fs::write(
        dir.path().join("versioned.wat"),
        support::versioned_wat("v1", 1),
    )
    .unwrap();
    let bundles = match via {
        Via::ModuleFile => String::new(),
        Via::Bundle => format!("bundles: {{path: \"{}\"}}", src.display()),
    };
    let weft = Weft::proxy(&format!(
        r#"
workers: {workers}
admin: {{address: 127.0.0.1:0}}
{bundles}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    cluster: app
    filters: [versioned]
clusters:
  - {{name: app, endpoints: ["{}"]}}
plugins:
  - {{name: versioned, module: "{}", watch: {}}}
"#,
        upstream.addr,
        dir.path().join("versioned.wat").display(),
        via == Via::ModuleFile
    ));
    Setup {
        weft,
        module,
        _dir: dir,
        _upstream: upstream,
    }
}

/// `/plugins` for the plugin.
fn plugin_state(weft: &Weft) -> serde_json::Value {
    let body = send(weft.listeners["admin"], "GET", "/plugins", &[], "").body;
    let plugins: serde_json::Value = serde_json::from_str(&body).unwrap();
    plugins[0].clone()
}

/// Waits until `/plugins` shows `field` at `want`.
fn wait_plugin(weft: &Weft, field: &str, want: u64) -> serde_json::Value {
    eventually(Duration::from_secs(20), || {
        let state = plugin_state(weft);
        if state[field] == want {
            Ok(state)
        } else {
            Err(format!("{field} never reached {want}: {state:#}"))
        }
    })
}

/// The value of metric `name` (with its labels) on the admin listener.
fn metric(admin: std::net::SocketAddr, name: &str) -> u64 {
    support::metric(&send(admin, "GET", "/metrics", &[], "").body, name)
}

fn version_of(got: &support::Got) -> String {
    got.headers
        .get("x-version")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn fifty_bundle_swaps_under_load_drop_nothing() {
    let s = setup(2, Via::Bundle);
    // The bundle was applied at start: version 1 of the plugin.
    wait_plugin(&s.weft, "version", 1);
    let addr = s.weft.addr;
    let done = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                // Bounded: stops when the swaps are done, or at the cap.
                while !done.load(Ordering::SeqCst) && seen.len() < 200_000 {
                    for got in send_many(addr, 20, "/", &[]) {
                        seen.push((got.status, version_of(&got)));
                    }
                }
                seen
            })
        })
        .collect();
    for swap in 1..=50u64 {
        let version = if swap % 2 == 1 { "v2" } else { "v1" };
        replace(&s.module, &support::versioned_wat(version, 1));
        wait_plugin(&s.weft, "version", swap + 1);
        // Every worker runs the new version once the swap is reported.
        for got in send_many(addr, 4, "/", &[]) {
            assert_eq!(version_of(&got), version, "after swap {swap}");
        }
    }
    done.store(true, Ordering::SeqCst);
    let mut total = 0;
    let mut by_version = std::collections::HashMap::new();
    for client in clients {
        for (status, version) in client.join().unwrap() {
            assert_eq!(status, 200, "a request failed during the swaps");
            *by_version.entry(version).or_insert(0) += 1;
            total += 1;
        }
    }
    let mut versions: Vec<_> = by_version.keys().cloned().collect();
    versions.sort();
    assert_eq!(versions, ["v1", "v2"], "every response came from v1 or v2");
    assert!(total > 100, "only {total} requests ran during the swaps");
    let admin = s.weft.listeners["admin"];
    assert_eq!(
        metric(admin, "weft_plugin_swaps_total{plugin=\"versioned\"}"),
        51
    );
    assert_eq!(
        metric(admin, "weft_plugin_version{plugin=\"versioned\"}"),
        51
    );
    assert_eq!(metric(admin, "weft_bundle_applies_total"), 51);
    // Old VMs go once their last stream has ended.
    eventually(Duration::from_secs(10), || {
        if metric(admin, "weft_plugin_retired_vms{plugin=\"versioned\"}") == 0 {
            Ok(())
        } else {
            Err("retired VMs were never dropped".to_string())
        }
    });
}

#[test]
fn streams_in_flight_finish_on_the_version_they_started_on() {
    let s = setup(1, Via::ModuleFile);
    let addr = s.weft.addr;
    let slow = std::thread::spawn(move || send(addr, "GET", "/delay/1500", &[], ""));
    std::thread::sleep(Duration::from_millis(300));
    replace(&s.module, &support::versioned_wat("v2", 1));
    wait_plugin(&s.weft, "version", 1);
    assert_eq!(version_of(&send(addr, "GET", "/", &[], "")), "v2");
    let admin = s.weft.listeners["admin"];
    assert_eq!(
        metric(admin, "weft_plugin_retired_vms{plugin=\"versioned\"}"),
        1,
        "v1's VM stays while its stream is in flight"
    );
    let slow = slow.join().unwrap();
    assert_eq!((slow.status, version_of(&slow).as_str()), (200, "v1"));
    eventually(Duration::from_secs(10), || {
        if metric(admin, "weft_plugin_retired_vms{plugin=\"versioned\"}") == 0 {
            Ok(())
        } else {
            Err("v1's VM was never dropped".to_string())
        }
    });
}

#[test]
fn a_bad_version_is_refused_and_the_running_one_stays() {
    let s = setup(1, Via::ModuleFile);
    let addr = s.weft.addr;

    std::fs::write(&s.module, "(module (this is not wat").unwrap();
    let state = wait_plugin(&s.weft, "swap_failures", 1);
    assert_eq!(state["version"], 0);
    let error = state["last_swap_error"].as_str().unwrap();
    assert!(error.contains("versioned.wat"), "{error}");
    assert_eq!(version_of(&send(addr, "GET", "/", &[], "")), "v1");

    // A module that refuses its configuration.
    replace(&s.module, &support::versioned_wat("v2", 0));
    let state = wait_plugin(&s.weft, "swap_failures", 2);
    let error = state["last_swap_error"].as_str().unwrap();
    assert!(error.contains("configur"), "{error}");
    assert_eq!(version_of(&send(addr, "GET", "/", &[], "")), "v1");
    s.weft
        .wait_for_log("new version refused, the running one stays");

    // A good one is taken, and the error is cleared.
    replace(&s.module, &support::versioned_wat("v3", 1));
    let state = wait_plugin(&s.weft, "version", 1);
    assert!(state["last_swap_error"].is_null(), "{state:#}");
    assert_eq!(state["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(version_of(&send(addr, "GET", "/", &[], "")), "v3");
    let admin = s.weft.listeners["admin"];
    assert_eq!(
        metric(
            admin,
            "weft_plugin_swap_failures_total{plugin=\"versioned\"}"
        ),
        2
    );
}

/// `/bundle`'s count of bundles applied.
fn bundles_applied(weft: &Weft) -> u64 {
    let body = send(weft.listeners["admin"], "GET", "/bundle", &[], "").body;
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    status["applies"].as_u64().unwrap()
}

#[test]
fn route_and_chain_swaps_under_load_drop_nothing_and_never_mix() {
    let app = Upstream::named("app");
    let canary = Upstream::named("canary");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(dir.path().join("v1.wat"), support::versioned_wat("v1", 1)).unwrap();
    std::fs::write(
        src.join("stamp.wat"),
        support::header_wat("x-stamp", "s", 1),
    )
    .unwrap();
    // Even versions send everything to `canary` through an added plugin
    // that stamps responses; odd ones set only the chain (the proxy's own
    // routes, to `app`), which unloads that plugin.
    let bundle = |version: u64| {
        if version.is_multiple_of(2) {
            format!(
                "name: flip\nversion: '{version}'\nplugins:\n  - {{name: stamp, module: stamp.wat}}\nlisteners:\n  - name: ingress\n    filters: [versioned, stamp]\n    virtual_hosts:\n      - {{name: all, domains: ['*'], routes: [{{forward: {{cluster: canary}}}}]}}\n"
            )
        } else {
            format!(
                "name: flip\nversion: '{version}'\nlisteners:\n  - {{name: ingress, filters: [versioned]}}\n"
            )
        }
    };
    std::fs::write(src.join("bundle.yaml"), bundle(1)).unwrap();
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
    let wait_applied = |count: u64| {
        eventually(Duration::from_secs(20), || {
            if bundles_applied(&weft) >= count {
                Ok(())
            } else {
                Err(format!("bundle {count} was never applied"))
            }
        });
    };
    wait_applied(1);
    let addr = weft.addr;
    let done = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !done.load(Ordering::SeqCst) && seen.len() < 200_000 {
                    for got in send_many(addr, 20, "/", &[]) {
                        let stamped = got.headers.contains_key("x-stamp");
                        let upstream = support::served_by(&got);
                        seen.push((got.status, upstream, stamped, got.body));
                    }
                }
                seen
            })
        })
        .collect();
    for version in 2..=21u64 {
        replace(&src.join("bundle.yaml"), &bundle(version));
        wait_applied(version);
        let want = if version.is_multiple_of(2) {
            "canary"
        } else {
            "app"
        };
        for got in send_many(addr, 4, "/", &[]) {
            assert_eq!(support::served_by(&got), want, "after version {version}");
        }
    }
    done.store(true, Ordering::SeqCst);
    let mut by_upstream = std::collections::HashMap::new();
    for client in clients {
        for (status, upstream, stamped, body) in client.join().unwrap() {
            assert_eq!(status, 200, "a request failed during the swaps: {body}");
            // Route and chain change together: canary's responses all
            // went through `stamp`, app's none.
            assert_eq!(
                stamped,
                upstream == "canary",
                "{upstream} stamped: {stamped}"
            );
            *by_upstream.entry(upstream).or_insert(0u64) += 1;
        }
    }
    assert!(
        by_upstream.len() == 2 && by_upstream.values().all(|n| *n > 10),
        "{by_upstream:?}"
    );
}

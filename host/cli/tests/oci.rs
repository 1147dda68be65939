//! Bundles through a real OCI registry (Debian's docker-registry, started
//! on loopback by the test): `weft bundle push FILE oci://...`, a proxy
//! pulling by tag (and again when the tag moves) and by digest.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{Upstream, Weft, eventually, send, versioned_wat};

const REGISTRY: &str = "/usr/bin/docker-registry";

/// A registry on 127.0.0.1, killed on drop.
struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        assert!(
            Path::new(REGISTRY).exists(),
            "{REGISTRY} is missing: install Debian's docker-registry (`cargo xtask test` does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Registry {
            child,
            addr,
            _dir: dir,
        };
        eventually(Duration::from_secs(20), || {
            if let Ok(addr) = registry.addr.parse()
                && std::net::TcpStream::connect(addr).is_ok()
                && send(addr, "GET", "/v2/", &[], "").status == 200
            {
                Ok(())
            } else {
                Err("the registry did not start".to_string())
            }
        });
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

use support::{output_text as text, weft_cli as weft};

/// Builds bundle `demo` VERSION (module says `x-version: VALUE`) and pushes
/// it to `reference`; returns the push's JSON summary.
fn push(dir: &Path, version: &str, value: &str, reference: &str) -> serde_json::Value {
    let src = dir.join(format!("src-{version}"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("versioned.wat"), versioned_wat(value, 1)).unwrap();
    std::fs::write(
        src.join("bundle.yaml"),
        format!("name: demo\nversion: '{version}'\nplugins:\n  - {{name: versioned, module: versioned.wat}}\n"),
    )
    .unwrap();
    let file = format!("demo-{version}.tar.gz");
    let out = weft(
        &["bundle", "build", src.to_str().unwrap(), "-o", &file],
        dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = weft(&["bundle", "push", &file, reference, "--json"], dir);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn proxy(dir: &Path, reference: &str, upstream: &Upstream) -> Weft {
    std::fs::write(dir.join("v0.wat"), versioned_wat("v0", 1)).unwrap();
    Weft::proxy(&format!(
        r#"
workers: 1
admin: {{address: 127.0.0.1:0}}
bundles:
  oci: {{reference: "{reference}", poll_interval_ms: 200}}
listeners:
  - {{name: ingress, address: 127.0.0.1:0, cluster: app, filters: [versioned]}}
clusters:
  - {{name: app, endpoints: ["{}"]}}
plugins:
  - {{name: versioned, module: "{}"}}
"#,
        upstream.addr,
        dir.join("v0.wat").display()
    ))
}

fn wait_served(proxy: &Weft, want: &str) {
    eventually(Duration::from_secs(20), || {
        let got = send(proxy.addr, "GET", "/", &[], "");
        if got.headers.get("x-version").is_some_and(|v| v == want) {
            Ok(())
        } else {
            Err(format!(
                "never served {want}: {:?}",
                got.headers.get("x-version")
            ))
        }
    });
}

#[test]
fn proxies_pull_bundles_from_an_oci_registry_by_tag_and_by_digest() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let upstream = Upstream::start();
    let tag = format!("oci://{}/weft/demo:stable", registry.addr);

    let first = push(dir, "1", "b1", &tag);
    assert!(
        first["manifest_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let by_tag = proxy(dir, &tag, &upstream);
    wait_served(&by_tag, "b1");

    // The tag moves: the proxy follows.
    push(dir, "2", "b2", &tag);
    wait_served(&by_tag, "b2");
    let body = send(by_tag.listeners["admin"], "GET", "/bundle", &[], "").body;
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["applied"]["version"], "2", "{status:#}");

    // Pinned by digest: version 1, whatever the tag says.
    let pinned = format!(
        "oci://{}/weft/demo@{}",
        registry.addr,
        first["manifest_digest"].as_str().unwrap()
    );
    let by_digest = proxy(dir, &pinned, &upstream);
    wait_served(&by_digest, "b1");

    // Pushing something that is not a bundle is refused by the CLI.
    std::fs::write(dir.join("junk.tar.gz"), b"junk").unwrap();
    let out = weft(&["bundle", "push", "junk.tar.gz", &tag], dir);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = weft(
        &["bundle", "push", "demo-1.tar.gz", "oci://127.0.0.1:1/x:y"],
        dir,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
}

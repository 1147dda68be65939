//! `weft conformance`: the suite in-process from the command line, with its
//! output formats, and the black-box mode against a running `weft proxy`
//! configured by `weft conformance config`.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::path::PathBuf;

use support::{Weft, weft};

fn cases() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../conformance/cases")
        .display()
        .to_string()
}

#[test]
fn the_suite_passes_in_process_in_every_format() {
    let (code, stdout, stderr) = weft(&["conformance", "run", "--cases", &cases()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(" 0 failed, "), "{stdout}");
    assert!(stdout.contains("by function:"), "{stdout}");

    let (code, stdout, _) = weft(&[
        "conformance",
        "run",
        "--cases",
        &cases(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "pass")
    );

    let (code, stdout, _) = weft(&[
        "conformance",
        "run",
        "--cases",
        &cases(),
        "--format",
        "junit",
        "--filter",
        "headers.",
    ]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("<?xml"), "{stdout}");
    assert!(stdout.contains(r#"<testsuite name="headers""#), "{stdout}");
    assert!(!stdout.contains("<failure"), "{stdout}");
}

/// A loopback port nothing listens on now, with the next `spare` free too
/// (call-out clusters take the ports after the upstream's).
fn free_ports(spare: u16) -> u16 {
    'search: loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for next in 1..=spare {
            if std::net::TcpListener::bind(("127.0.0.1", port.saturating_add(next))).is_err() {
                continue 'search;
            }
        }
        return port;
    }
}

#[test]
fn the_black_box_mode_passes_against_a_running_weft_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("suite");
    let upstream = format!("127.0.0.1:{}", free_ports(16));
    let (code, stdout, stderr) = weft(&[
        "conformance",
        "config",
        "--cases",
        &cases(),
        "--out",
        out.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let config = std::fs::read_to_string(out.join("weft.yaml")).unwrap();
    let proxy = Weft::proxy(&config);
    let (code, stdout, stderr) = weft(&[
        "conformance",
        "run",
        "--cases",
        &cases(),
        "--target",
        &proxy.addr.to_string(),
        "--upstream",
        &upstream,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}\n{}", proxy.log());
    assert!(stdout.contains(" 0 failed, "), "{stdout}");
}

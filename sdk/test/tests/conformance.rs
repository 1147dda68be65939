//! The conformance suite passes on weft's runtime, its report
//! (docs/conformance.md) is current, and the runner tells failures apart.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};

use weft_test::conformance::{self, Cases, Status};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn every_case_passes_in_process() {
    let cases = Cases::read(&repo().join("conformance/cases")).unwrap();
    let results = cases.run(None);
    assert!(
        results.iter().all(|r| r.status == Status::Pass),
        "{}",
        conformance::text(&results)
    );
}

#[test]
fn the_report_is_current() {
    let cases = Cases::read(&repo().join("conformance/cases")).unwrap();
    let results = cases.run(None);
    let runtime = weft_abi::Runtime::new().unwrap();
    let generated = conformance::markdown(&results, |f| weft_abi::coverage::is_served(&runtime, f));
    let doc = repo().join("docs/conformance.md");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&doc, &generated).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&doc).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/conformance.md is stale: regenerate it with `cargo xtask conformance`"
    );
}

fn write_cases(dir: &Path, yaml: &str) {
    std::fs::write(dir.join("cases.yaml"), yaml).unwrap();
}

#[test]
fn a_wrong_expectation_fails_and_a_broken_guest_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_cases(
        dir.path(),
        r#"area: demo
cases:
  - id: demo.wrong
    spec: "a case whose expectation is wrong"
    covers: [proxy_add_header_map_value]
    wat: |
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (call $report (i32.const 0) (i32.const 100) (i32.const 8)
          (call $proxy_add_header_map_value (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 100) (i32.const 1)))
        (i32.const 0))
      (data (i32.const 100) "x-status")
    tests:
      - name: status
        expect: {upstream: {headers: {x-status: "1"}}}
  - id: demo.broken
    spec: "a guest that does not compile"
    covers: [proxy_log]
    wat: "(func (export \"proxy_on_tick\") (param i32) (i32.const 0))"
    tests: [{name: t}]
"#,
    );
    let results = Cases::read(dir.path()).unwrap().run(None);
    assert_eq!(results[0].status, Status::Fail);
    assert_eq!(
        results[0].failures,
        ["status: upstream header x-status: expected \"1\", got \"0\""]
    );
    assert_eq!(results[1].status, Status::Error);
    let junit = conformance::junit(&results);
    assert!(junit.contains(r#"<testsuites name="proxy-wasm conformance" tests="2" failures="2">"#));
    assert!(junit.contains(r#"<testcase classname="demo" name="demo.wrong">"#));
    let text = conformance::text(&results);
    assert!(text.contains("FAIL demo.wrong"), "{text}");
    assert!(text.contains("0 passed, 2 failed, 2 cases"), "{text}");
}

#[test]
fn case_files_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |yaml: &str| match Cases::read(dir.path()) {
        Err(err) => err.to_string(),
        Ok(_) => panic!("accepted: {yaml}"),
    };
    let case = |covers: &str, guest: &str| {
        format!(
            "area: a\ncases:\n  - id: a.one\n    spec: s\n    covers: [{covers}]\n{guest}    tests: [{{name: t}}]\n"
        )
    };
    let yaml = case("proxy_nothing", "    wat: \"\"\n");
    write_cases(dir.path(), &yaml);
    assert!(
        refused(&yaml)
            .contains("covers `proxy_nothing`, which is not a function of the proxy-wasm spec")
    );
    let yaml = case("proxy_log", "");
    write_cases(dir.path(), &yaml);
    assert!(refused(&yaml).contains("give `wat` or `module`"));
    let yaml = case("proxy_log", "    wat: \"\"\n    abi: 0.3.0\n");
    write_cases(dir.path(), &yaml);
    assert!(refused(&yaml).contains("abi `0.3.0`"));
}

//! `weft filter test`: every `*.test.yaml` of the repository's filters and
//! examples passes; a failing expectation is reported with what was
//! expected and what happened; unusable files and modules exit with 2.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::path::{Path, PathBuf};

use expect_test::expect;
use support::{header_wat, weft};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `tests/*.test.yaml` under `dir` (a filter's own tests; the
/// shared examples/hello.test.yaml runs per language in languages.rs).
fn test_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.ends_with("target") {
            test_files(&path, found);
        } else if path.to_string_lossy().ends_with(".test.yaml")
            && path.parent().is_some_and(|p| p.ends_with("tests"))
        {
            found.push(path);
        }
    }
}

#[test]
fn every_filter_and_example_passes_its_yaml_tests() {
    let mut files = Vec::new();
    test_files(&repo().join("filters"), &mut files);
    test_files(&repo().join("examples"), &mut files);
    files.sort();
    assert!(
        files.iter().any(|f| f.ends_with("hello.test.yaml")),
        "{files:?}"
    );
    for file in files {
        let (code, stdout, stderr) = weft(&["filter", "test", file.to_str().unwrap()]);
        assert_eq!(code, 0, "{}:\n{stdout}{stderr}", file.display());
        assert!(stdout.contains(" 0 failed"), "{stdout}");
    }
}

/// A directory with `f.wat` (adds `x-hello: world`) and `t.test.yaml`.
fn suite(tests: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.wat"), header_wat("x-hello", "world", 1)).unwrap();
    std::fs::write(
        dir.path().join("t.test.yaml"),
        format!("filter: f.wat\ntests:\n{tests}"),
    )
    .unwrap();
    dir
}

fn run(dir: &tempfile::TempDir, extra: &[&str]) -> (i32, String, String) {
    let file = dir.path().join("t.test.yaml");
    let mut args = vec!["filter", "test", file.to_str().unwrap()];
    args.extend(extra);
    let (code, stdout, stderr) = weft(&args);
    let dir = dir.path().display().to_string();
    (
        code,
        stdout.replace(&dir, "$DIR"),
        stderr.replace(&dir, "$DIR"),
    )
}

#[test]
fn a_failing_expectation_is_reported_with_what_happened() {
    let dir = suite(
        r#"  - name: passes
    expect: {response: {headers: {x-hello: world}}}
  - name: fails
    request: {path: /a, headers: {x-user: bob}}
    upstream: {status: 404, body: nothing here}
    expect:
      outcome: local_reply
      upstream: {headers: {x-user: alice, x-debug: null}}
      response: {status: 200, headers: {x-hello: mars, x-gone: null}, body: found}
      logs: [handled]
      metrics: {requests: 1}
"#,
    );
    let (code, stdout, _) = run(&dir, &[]);
    assert_eq!(code, 1);
    expect![[r#"
        ok   passes
        FAIL fails
             outcome: expected local_reply, got forwarded
             upstream header x-user: expected "alice", got "bob"
             response status: expected 200, got 404
             response header x-hello: expected "mars", got "world"
             response body: expected "found", got "nothing here"
             logs: expected a line containing "handled"; nothing was logged
             metric requests: expected 1, got (not defined)
        $DIR/t.test.yaml: 1 passed, 1 failed
    "#]]
    .assert_eq(&stdout);

    // --only picks tests by name; --json says what each request did.
    let (code, stdout, _) = run(&dir, &["--only", "passes", "--json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let test = &json[0]["tests"][0];
    assert_eq!(test["name"], "passes");
    assert_eq!(test["exchange"]["outcome"], "forwarded");
    assert_eq!(
        test["exchange"]["response"]["headers"],
        serde_json::json!([["x-hello", "world"]])
    );
}

#[test]
fn unusable_files_and_modules_exit_with_2() {
    let dir = suite("  - name: t\n    expect: {outcom: forwarded}\n");
    let (code, _, stderr) = run(&dir, &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("$DIR/t.test.yaml: field `tests[0].expect.outcom`")
            && stderr.contains("unknown field `outcom`, expected one of `outcome`"),
        "{stderr}"
    );

    let dir = suite("  - name: t\n");
    std::fs::write(dir.path().join("f.wat"), "(module (broken").unwrap();
    let (code, _, stderr) = run(&dir, &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("f.wat"), "{stderr}");

    // A plugin that refuses its configuration cannot be tested.
    let dir = suite("  - name: t\n");
    std::fs::write(dir.path().join("f.wat"), header_wat("x-hello", "world", 0)).unwrap();
    let (code, _, stderr) = run(&dir, &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("configur"), "{stderr}");

    let (code, _, stderr) = weft(&["filter", "test", "/nonexistent/t.test.yaml"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/t.test.yaml"), "{stderr}");

    // An outcome that does not exist is a mistake in the file, not a
    // failed test.
    let dir = suite(
        "  - name: t
    expect: {outcome: forwardd}
",
    );
    let (code, _, stderr) = run(&dir, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("field `tests[0].expect.outcome`")
            && stderr.contains("unknown variant `forwardd`, expected one of `forwarded`"),
        "{stderr}"
    );

    // A misspelt --only would pass with nothing tested.
    let dir = suite(
        "  - name: passes
",
    );
    let (code, stdout, stderr) = run(&dir, &["--only", "zzz"]);
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stderr.contains("--only `zzz`: no test's name contains it in $DIR/t.test.yaml"),
        "{stderr}"
    );
}

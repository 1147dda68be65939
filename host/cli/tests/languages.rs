//! The hello example in every language (Rust, Go, C, Zig, AssemblyScript,
//! WAT), built by `cargo xtask build-examples` into target/examples/,
//! passes the one shared test (examples/hello.test.yaml) with
//! `weft filter test`; each refuses a bad configuration; and a module built
//! with the published AssemblyScript SDK (`@solo-io/proxy-runtime` 0.1.8)
//! loads and runs.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::path::PathBuf;
use std::time::Instant;

use support::weft;

const LANGUAGES: &[&str] = &["rust", "go", "c", "zig", "assemblyscript", "wat"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn built(name: &str) -> PathBuf {
    let wasm = repo().join("target/examples").join(format!("{name}.wasm"));
    assert!(
        wasm.is_file(),
        "{} is missing: run `cargo xtask build-examples` (it says which toolchain could not be installed)",
        wasm.display()
    );
    wasm
}

#[test]
fn every_language_passes_the_shared_test() {
    let shared = repo().join("examples/hello.test.yaml");
    for language in LANGUAGES {
        let wasm = built(&format!("hello-{language}"));
        let (code, stdout, stderr) = weft(&[
            "filter",
            "test",
            shared.to_str().unwrap(),
            "--module",
            wasm.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "hello-{language}:\n{stdout}{stderr}");
        assert!(
            stdout.contains("4 passed, 0 failed"),
            "hello-{language}: {stdout}"
        );
    }
}

#[test]
fn every_language_refuses_a_bad_configuration() {
    for language in LANGUAGES {
        let wasm = built(&format!("hello-{language}"));
        for bad in [
            r#"{"value": "x"}"#,
            r#"{"header": "", "value": "x"}"#,
            "not json",
        ] {
            let started = weft_test::Filter::load(&wasm).configuration(bad).start();
            assert!(started.is_err(), "hello-{language} accepted {bad}");
        }
    }
}

/// Sizes and cold starts (compile, instantiate, vm_start, configure), for
/// docs/authoring.md; printed, not asserted (`--nocapture` shows them).
#[test]
fn sizes_and_cold_starts() {
    for language in LANGUAGES {
        let wasm = built(&format!("hello-{language}"));
        let size = std::fs::metadata(&wasm).unwrap().len();
        let start = Instant::now();
        let mut filter = weft_test::Filter::load(&wasm)
            .configuration(r#"{"header": "x-hello", "value": "world"}"#)
            .start()
            .unwrap();
        let cold = start.elapsed();
        let start = Instant::now();
        for _ in 0..100 {
            filter.send(weft_test::Request::get("/")).unwrap();
        }
        let per_request = start.elapsed() / 100;
        eprintln!(
            "hello-{language}: {} KiB, cold start {:.1} ms, {:.0} µs per request in the harness",
            size.div_ceil(1024),
            cold.as_secs_f64() * 1e3,
            per_request.as_secs_f64() * 1e6
        );
    }
}

#[test]
fn a_module_built_with_the_published_assemblyscript_sdk_runs() {
    let wasm = built("compat-proxy-runtime");
    let test = repo().join("examples/compat-proxy-runtime/compat.test.yaml");
    let (code, stdout, stderr) = weft(&[
        "filter",
        "test",
        test.to_str().unwrap(),
        "--module",
        wasm.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

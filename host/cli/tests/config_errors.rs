//! `weft config check` and `weft proxy` refuse bad configuration with one
//! error naming the file, the field and the problem, and exit with status 2.
//! Snapshots: see the note at the top of host/config/tests/errors.rs.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::path::Path;

use expect_test::{Expect, expect};
use support::{filter, weft};

/// A config with one listener and a plugin `p` using `module` with `configuration`.
fn config(dir: &Path, module: &Path, configuration: &str) -> std::path::PathBuf {
    let path = dir.join("weft.yaml");
    std::fs::write(
        &path,
        format!(
            "listeners:\n  - name: l\n    address: 127.0.0.1:0\n    cluster: c\n    filters: [p]\nclusters:\n  - name: c\n    endpoints: [127.0.0.1:9]\nplugins:\n  - name: p\n    module: {}\n    configuration: {configuration}\n",
            module.display()
        ),
    )
    .unwrap();
    path
}

/// Runs `weft ARGS` (with $FILE replaced by `file`), expects exit status 2,
/// and snapshots stderr with the directory shown as $DIR.
fn check_refused(args: &[&str], file: &Path, expect: Expect) {
    let file = file.display().to_string();
    let args: Vec<&str> = args
        .iter()
        .map(|a| if *a == "$FILE" { file.as_str() } else { a })
        .collect();
    let (code, stdout, stderr) = weft(&args);
    assert_eq!(code, 2, "stdout: {stdout}\nstderr: {stderr}");
    let dir = Path::new(&file).parent().unwrap().display().to_string();
    let error: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(error.len(), 1, "exactly one error line:\n{stderr}");
    expect.assert_eq(&error[0].replace(&dir, "$DIR"));
}

#[test]
fn good_config_checks_ok() {
    let dir = tempfile::tempdir().unwrap();
    let file = config(
        dir.path(),
        &filter("hello_rust.wasm"),
        "{header: x-a, value: b}",
    );
    let (code, stdout, stderr) = weft(&["config", "check", &file.display().to_string()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.ends_with("ok (1 listener(s), 1 cluster(s), 1 plugin(s))\n"),
        "{stdout}"
    );
}

#[test]
fn missing_config_file() {
    let dir = tempfile::tempdir().unwrap();
    check_refused(
        &["proxy", "--config", "$FILE"],
        &dir.path().join("absent.yaml"),
        expect![[
            r#"error: cannot read config file $DIR/absent.yaml: No such file or directory (os error 2)"#
        ]],
    );
}

#[test]
fn unknown_field_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weft.yaml");
    std::fs::write(&file, "listeners: []\nclusters: []\nlisteners_extra: 1\n").unwrap();
    check_refused(
        &["config", "check", "$FILE"],
        &file,
        expect![[
            r#"error: $DIR/weft.yaml:3:1: field `listeners_extra`: unknown field `listeners_extra`, expected one of `workers`, `listeners`, `clusters`, `plugins`, `admin`, `drain_timeout_ms`, `dns`, `labels`, `bundles`, `runtime`"#
        ]],
    );
}

#[test]
fn module_that_is_not_wasm() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("junk.wasm");
    std::fs::write(&module, "this is not wasm").unwrap();
    let file = config(dir.path(), &module, "{}");
    check_refused(
        &["config", "check", "$FILE"],
        &file,
        expect![[
            r#"error: $DIR/weft.yaml: plugins[0] (`p`): module $DIR/junk.wasm is not valid WebAssembly: the file does not start with the \0asm magic bytes of a WebAssembly binary (text modules must be named *.wat)"#
        ]],
    );
}

#[test]
fn module_without_abi_marker() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("plain.wat");
    std::fs::write(&module, r#"(module (memory (export "memory") 1) (func (export "proxy_on_context_create") (param i32 i32)))"#).unwrap();
    let file = config(dir.path(), &module, "{}");
    check_refused(
        &["proxy", "--config", "$FILE"],
        &file,
        expect![[
            r#"error: $DIR/weft.yaml: plugins[0] (`p`): module $DIR/plain.wat exports no proxy_abi_version_0_2_1 / _0_2_0 / _0_1_0 marker: it was not built with a proxy-wasm SDK (Rust: the proxy-wasm crate; other languages: export one of these empty functions)"#
        ]],
    );
}

#[test]
fn module_with_unknown_imports() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("imports.wat");
    std::fs::write(
        &module,
        r#"(module
             (import "env" "proxy_something_new" (func (param i32) (result i32)))
             (import "env" "printf" (func (param i32 i32) (result i32)))
             (import "wasi:io/streams" "read" (func))
             (memory (export "memory") 1)
             (func (export "proxy_abi_version_0_2_1"))
             (func (export "proxy_on_context_create") (param i32 i32)))"#,
    )
    .unwrap();
    let file = config(dir.path(), &module, "{}");
    check_refused(
        &["config", "check", "$FILE"],
        &file,
        expect![[
            r#"error: $DIR/weft.yaml: plugins[0] (`p`): module $DIR/imports.wat imports what weft does not provide: function `env.printf` (an undefined symbol: a function declared but not defined when the module was linked); function `wasi:io/streams.read` (a component-model import; build a core module for wasm32-wasip1)"#
        ]],
    );
}

#[test]
fn plugin_that_rejects_its_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path(), &filter("hello_rust.wasm"), "{header: x-a}");
    check_refused(
        &["config", "check", "$FILE"],
        &file,
        expect![[
            r#"error: $DIR/weft.yaml: plugins[0]: plugin `p`: proxy_on_configure returned false (the plugin rejected its configuration; its log says why)"#
        ]],
    );
    // ... and the plugin's own log line says why.
    let (_, _, stderr) = weft(&["config", "check", &file.display().to_string()]);
    assert!(
        stderr.contains("hello: invalid configuration: missing field `value`"),
        "{stderr}"
    );
}

/// A module whose `proxy_on_vm_start` accepts only the VM configuration
/// `pool-a`.
const VM_CONFIG_CHECK: &str = r#"(module
  (import "env" "proxy_get_buffer_bytes" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "pool-a")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param $root i32) (param $size i32) (result i32)
    (if (i32.ne (local.get $size) (i32.const 6)) (then (return (i32.const 0))))
    (drop (call $get (i32.const 6) (i32.const 0) (i32.const 6) (i32.const 200) (i32.const 204)))
    (i64.eq (i64.load (i32.const 4096)) (i64.load (i32.const 100)))))"#;

#[test]
fn vm_configuration_reaches_on_vm_start() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("vm.wat");
    std::fs::write(&module, VM_CONFIG_CHECK).unwrap();
    let file = config(dir.path(), &module, "{}\n    vm_configuration: pool-a");
    let (code, _, stderr) = weft(&["config", "check", &file.display().to_string()]);
    assert_eq!(code, 0, "{stderr}");

    let file = config(dir.path(), &module, "{}\n    vm_configuration: pool-b");
    check_refused(
        &["config", "check", "$FILE"],
        &file,
        expect![[
            r#"error: $DIR/weft.yaml: plugins[0]: plugin `p`: proxy_on_vm_start returned false (the plugin rejected its configuration; its log says why)"#
        ]],
    );
}

#[test]
fn capability_list_with_an_unknown_function() {
    let dir = tempfile::tempdir().unwrap();
    let file = config(
        dir.path(),
        &filter("hello_rust.wasm"),
        "{header: x-a, value: b}\n    allowed_host_functions: [proxy_log, proxy_teleport]",
    );
    check_refused(
        &["config", "check", "$FILE"],
        &file,
        expect![[
            r#"error: $DIR/weft.yaml: plugins[0] (`p`): allowed_host_functions names `proxy_teleport`, which is not a proxy-wasm host function (see docs/abi-coverage.md)"#
        ]],
    );
}

#[test]
fn unresolvable_endpoint_is_refused_by_check_and_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let file = config(
        dir.path(),
        &filter("hello_rust.wasm"),
        "{header: x-a, value: b}",
    );
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("127.0.0.1:9", "no-such-host.invalid:80");
    std::fs::write(&file, text).unwrap();
    // The resolver's own words differ between machines; the rest does not.
    for args in [["config", "check"], ["proxy", "--config"]] {
        let (code, _, stderr) = weft(&[args[0], args[1], &file.display().to_string()]);
        assert_eq!(code, 2, "{stderr}");
        let want = format!(
            "error: {}: clusters[0].endpoints[0]: cannot resolve `no-such-host.invalid:80`: ",
            file.display()
        );
        assert!(stderr.lines().any(|l| l.starts_with(&want)), "{stderr}");
    }
}

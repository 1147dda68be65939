//! The ABI coverage document is generated from the code and kept current;
//! every host function of every ABI version links with its spec signature.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::path::Path;
use std::sync::Arc;

use weft_abi::coverage::{Kind, SPEC, abi_coverage_markdown};
use weft_abi::{FailurePolicy, Plugin, PluginLimits, PluginModule, Runtime, Vm};

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/abi-coverage.md");

#[test]
fn abi_coverage_doc_is_current() {
    let runtime = Runtime::new().unwrap();
    let generated = abi_coverage_markdown(&runtime);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(DOC, &generated).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(Path::new(DOC)).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/abi-coverage.md is stale: regenerate it with `cargo xtask abi-coverage`"
    );
}

/// A module importing every host function of the specification, each with
/// its spec signature, links and starts: served ones match their spec
/// signature, the others get stubs.
#[test]
fn every_spec_host_function_links() {
    let mut imports = String::new();
    for f in SPEC.iter().filter(|f| f.kind == Kind::HostFunction) {
        let (module, name) = f.import();
        let params: Vec<&str> = f.params.split(',').filter(|p| !p.is_empty()).collect();
        let result = if f.result.is_empty() {
            String::new()
        } else {
            format!("(result {})", f.result)
        };
        imports.push_str(&format!(
            "(import \"{module}\" \"{name}\" (func (param {}) {result}))\n",
            params.join(" ")
        ));
    }
    let wat = format!(
        r#"(module {imports}
          (memory (export "memory") 1)
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
          (func (export "proxy_on_context_create") (param i32 i32)))"#
    );
    let runtime = Runtime::new().unwrap();
    let module = PluginModule::from_bytes(&runtime, "all.wat", wat.as_bytes()).unwrap();
    let plugin = Arc::new(Plugin {
        name: "all".into(),
        root_id: String::new(),
        vm_id: String::new(),
        configuration: Vec::new(),
        vm_configuration: Vec::new(),
        failure_policy: FailurePolicy::FailClosed,
        limits: PluginLimits::default(),
        module,
    });
    Vm::new(plugin).unwrap();
}

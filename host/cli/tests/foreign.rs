//! `POST /plugins/NAME/foreign/ID` on the admin endpoint calls the plugin's
//! `proxy_on_foreign_function` on every worker.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::time::Duration;

use support::{Weft, eventually, send};

/// Keeps the arguments of its last foreign callback (and the callback's
/// function id as a decimal digit) and adds them to every request as
/// `x-foreign`.
const REMEMBER: &str = r#"(module
  (import "env" "proxy_get_buffer_bytes" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 100) "x-foreign")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $at))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_foreign_function") (param $root i32) (param $id i32) (param $size i32)
    (drop (call $get (i32.const 8) (i32.const 0) (local.get $size) (i32.const 0) (i32.const 4)))
    (i32.store8 (i32.const 200) (i32.add (i32.const 48) (local.get $id)))
    (i32.store8 (i32.const 201) (i32.const 58))
    (memory.copy (i32.const 202) (i32.load (i32.const 0)) (i32.load (i32.const 4)))
    (i32.store (i32.const 8) (i32.add (i32.const 2) (i32.load (i32.const 4)))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.load (i32.const 8))
      (then (drop (call $add (i32.const 0) (i32.const 100) (i32.const 9) (i32.const 200) (i32.load (i32.const 8))))))
    (i32.const 0)))"#;

#[test]
fn an_operator_calls_a_plugins_foreign_callback_on_every_worker() {
    let up = support::Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("remember.wat");
    std::fs::write(&module, REMEMBER).unwrap();
    let weft = Weft::proxy(&format!(
        "workers: 2\nadmin: {{address: 127.0.0.1:0}}\nlisteners:\n  - {{name: l, address: 127.0.0.1:0, cluster: app, filters: [remember]}}\nclusters:\n  - {{name: app, endpoints: [\"{}\"]}}\nplugins:\n  - {{name: remember, module: {}}}\n",
        up.addr,
        module.display()
    ));
    let admin = weft.listeners["admin"];
    let told = send(
        admin,
        "POST",
        "/plugins/remember/foreign/7",
        &[],
        "drain now",
    );
    assert_eq!(told.status, 202, "{}", told.body);
    assert!(told.body.contains("queued on 2 worker(s)"), "{}", told.body);

    // The callback runs on each worker's next turn: once one request saw
    // it, every later one (on either worker) does.
    eventually(Duration::from_secs(10), || {
        let done = send(weft.addr, "GET", "/", &[], "").status != 200
            || up
                .seen
                .lock()
                .unwrap()
                .last()
                .unwrap()
                .headers
                .get("x-foreign")
                .is_some();
        if done {
            Ok(())
        } else {
            Err(format!("the callback never ran: {}", weft.log()))
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..20 {
        assert_eq!(send(weft.addr, "GET", "/", &[], "").status, 200);
        let seen = up.seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(seen.headers["x-foreign"], "7:drain now");
    }

    // Bad calls name what is wrong.
    let unknown = send(admin, "POST", "/plugins/nobody/foreign/1", &[], "");
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.body.contains("no loaded plugin is named `nobody`"),
        "{}",
        unknown.body
    );
    let bad_id = send(admin, "POST", "/plugins/remember/foreign/seven", &[], "");
    assert_eq!(bad_id.status, 400);
    assert!(
        bad_id.body.contains("`seven` is not a number"),
        "{}",
        bad_id.body
    );
    let elsewhere = send(admin, "POST", "/plugins", &[], "");
    assert_eq!(elsewhere.status, 404);
}

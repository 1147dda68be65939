;; entry-points.start-without-initialize: exports `_start` and `main` but no
;; `_initialize`. Each entry point appends a letter at 200..: S _start,
;; M main, C the plugin (root) context, V proxy_on_vm_start; request
;; headers show the letters as x-order.
(module
  (import "env" "proxy_add_header_map_value"
    (func $proxy_add_header_map_value (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 32768))
  (global $n (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32) (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $p))
  (func $mark (param $c i32)
    (i32.store8 (i32.add (i32.const 200) (global.get $n)) (local.get $c))
    (global.set $n (i32.add (global.get $n) (i32.const 1))))
  (func (export "_start") (call $mark (i32.const 83)))
  (func (export "main") (param i32 i32) (result i32)
    (call $mark (i32.const 77)) (i32.const 0))
  (func (export "proxy_on_context_create") (param $id i32) (param $parent i32)
    (if (i32.eqz (local.get $parent)) (then (call $mark (i32.const 67)))))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (call $mark (i32.const 86)) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $proxy_add_header_map_value
      (i32.const 0) (i32.const 100) (i32.const 7) (i32.const 200) (global.get $n)))
    (i32.const 0))
  (data (i32.const 100) "x-order")
)

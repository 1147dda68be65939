;; wasi.sched-yield: calls wasi_snapshot_preview1.sched_yield (not in the
;; proxy-wasm spec's list, so not importable from a `wat` snippet) on request
;; headers and shows its errno as x-errno.
(module
  (import "wasi_snapshot_preview1" "sched_yield" (func $sched_yield (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $proxy_add_header_map_value (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 32768))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32) (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $report (i32.const 0) (i32.const 100) (i32.const 7) (call $sched_yield))
    (i32.const 0))
  (data (i32.const 100) "x-errno")
  ;; $report MAP NAME_PTR NAME_LEN VALUE: adds header NAME = VALUE in decimal
  ;; (digits written at 1024..1056), as the conformance prelude's.
  (func $report (param $map i32) (param $name i32) (param $nlen i32) (param $v i32)
    (local $p i32) (local $neg i32) (local $u i32)
    (local.set $p (i32.const 1056))
    (local.set $neg (i32.lt_s (local.get $v) (i32.const 0)))
    (local.set $u (select (i32.sub (i32.const 0) (local.get $v)) (local.get $v) (local.get $neg)))
    (loop $digits
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $u) (i32.const 10))))
      (local.set $u (i32.div_u (local.get $u) (i32.const 10)))
      (br_if $digits (i32.ne (local.get $u) (i32.const 0))))
    (if (local.get $neg) (then
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.const 45))))
    (drop (call $proxy_add_header_map_value (local.get $map) (local.get $name) (local.get $nlen)
      (local.get $p) (i32.sub (i32.const 1056) (local.get $p)))))
)

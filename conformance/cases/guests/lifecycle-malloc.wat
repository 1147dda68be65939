;; lifecycle.malloc-fallback: exports malloc and no proxy_on_memory_allocate;
;; the host must allocate with malloc. On request headers it reads x-in and shows:
;; x-out (the value, read where the allocator's pointer said), x-status,
;; x-mallocs (calls made for it), x-asked (the size asked for),
;; x-at-given (1: the value pointer is the one the allocator returned).
(module
  (import "env" "proxy_get_header_map_value"
    (func $proxy_get_header_map_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $proxy_add_header_map_value (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 32768))
  (global $allocs (mut i32) (i32.const 0))
  (global $mallocs (mut i32) (i32.const 0))
  (global $asked (mut i32) (i32.const -1))
  (global $given (mut i32) (i32.const -1))
  (func (export "proxy_abi_version_0_2_1"))
  (func $bump (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (global.set $asked (local.get $size))
    (global.set $given (local.get $p))
    (local.get $p))
  (func (export "malloc") (param $size i32) (result i32)
    (global.set $mallocs (i32.add (global.get $mallocs) (i32.const 1)))
    (call $bump (local.get $size)))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $st i32) (local $allocs i32) (local $mallocs i32)
    (global.set $allocs (i32.const 0))
    (global.set $mallocs (i32.const 0))
    (local.set $st (call $proxy_get_header_map_value
      (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 0) (i32.const 4)))
    (local.set $allocs (global.get $allocs))
    (local.set $mallocs (global.get $mallocs))
    (drop (call $proxy_add_header_map_value (i32.const 0) (i32.const 110) (i32.const 5)
      (i32.load (i32.const 0)) (i32.load (i32.const 4))))
    (call $report (i32.const 0) (i32.const 120) (i32.const 8) (local.get $st))
    (call $report (i32.const 0) (i32.const 160) (i32.const 9) (local.get $mallocs))
    (call $report (i32.const 0) (i32.const 180) (i32.const 7) (global.get $asked))
    (call $report (i32.const 0) (i32.const 200) (i32.const 10)
      (i32.eq (i32.load (i32.const 0)) (global.get $given)))
    (i32.const 0))
  (data (i32.const 100) "x-in")
  (data (i32.const 110) "x-out")
  (data (i32.const 120) "x-status")
  (data (i32.const 160) "x-mallocs")
  (data (i32.const 180) "x-asked")
  (data (i32.const 200) "x-at-given")
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

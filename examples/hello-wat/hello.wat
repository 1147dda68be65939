;; hello.wat: the weft "hello" example filter, written by hand against the
;; proxy-wasm ABI v0.2.1. No SDK, no runtime, no libc: every byte the host
;; sees is below. It behaves exactly like the other hello-LANG examples
;; (examples/hello.test.yaml is the contract):
;;
;;   configuration  {"header": "<name>", "value": "<value>"}  (JSON)
;;   every request  logged at INFO as "hello: <METHOD> <PATH>" and counted in
;;                  the counter hello_requests_total
;;   GET /hello-local  answered by the filter: 200, body "hello\n",
;;                  content-type: text/plain and the configured header
;;   every response gets the configured header
;;
;; Build: wat2wasm hello.wat -o hello.wasm   (wabt; see build.sh)
;;
;; ---------------------------------------------------------------------------
;; MEMORY LAYOUT (one linear memory, exported as "memory"; starts at 1 page)
;;
;;   0x0000 .. 0x0007  never used: address 0 means "no memory" to the host
;;   0x0008  RET_PTR   i32  the host writes the address of returned data here
;;   0x000C  RET_LEN   i32  ... and its length here
;;   0x0010  METRIC    i32  the id proxy_define_metric returns
;;   0x0100 .. 0x034F  constant strings (the data segments below)
;;   0x1000 ..         HEAP, a bump allocator (proxy_on_memory_allocate):
;;
;;       0x1000            $arena_base            $heap_top
;;         | configuration  |  per-request scratch  |  free ...  (memory grows
;;         | (kept: header  |  (thrown away at the  |   by whole pages as
;;         |  and value     |   start of each       |   allocations need it)
;;         |  point in it)  |   request)            |
;;
;;   proxy_on_configure empties the whole heap, has the host copy the
;;   configuration into it, decodes the two strings in place and then moves
;;   $arena_base past the configuration, so it stays valid for the VM's life.
;;   proxy_on_request_headers resets $heap_top to $arena_base first: nothing
;;   a previous callback allocated is still in use, because all callbacks of
;;   a VM run one after the other and this filter keeps no pointer into
;;   the scratch area across callbacks.
;; ---------------------------------------------------------------------------
(module
  ;; =========================================================================
  ;; 1. Imports: the host functions this filter calls. All live in module
  ;;    "env" and return a proxy_status_t (0 = OK, 1 = NOT_FOUND, ...).
  ;; =========================================================================
  (import "env" "proxy_log"                   ;; (level, msg, msg_len)
    (func $proxy_log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes"      ;; (buffer, start, max, *ret_ptr, *ret_len)
    (func $proxy_get_buffer_bytes (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value"  ;; (map, key, key_len, *ret_ptr, *ret_len)
    (func $proxy_get_header_map_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"  ;; (map, key, key_len, value, value_len)
    (func $proxy_add_header_map_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"   ;; (status, details, details_len, body, body_len,
                                              ;;  headers, headers_len, grpc_status)
    (func $proxy_send_local_response (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric"         ;; (type, name, name_len, *ret_id)
    (func $proxy_define_metric (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric"      ;; (id, delta)
    (func $proxy_increment_metric (param i32 i64) (result i32)))

  ;; =========================================================================
  ;; 2. Memory and the fixed addresses of the layout above.
  ;; =========================================================================
  (memory (export "memory") 1)

  (global $RET_PTR   i32 (i32.const 0x0008))
  (global $RET_LEN   i32 (i32.const 0x000C))
  (global $METRIC    i32 (i32.const 0x0010))
  (global $HEAP_BASE i32 (i32.const 0x1000))

  ;; Constant strings: address (global) and length (the comment; the code
  ;; passes the length as a literal next to each use).
  (global $S_METHOD   i32 (i32.const 0x0100)) ;; ":method"                 7
  (global $S_PATH     i32 (i32.const 0x0110)) ;; ":path"                   5
  (global $S_GET      i32 (i32.const 0x0120)) ;; "GET"                     3
  (global $S_LOCAL    i32 (i32.const 0x0130)) ;; "/hello-local"           12
  (global $S_HELLO    i32 (i32.const 0x0140)) ;; "hello: "                 7
  (global $S_METRIC   i32 (i32.const 0x0150)) ;; "hello_requests_total"   20
  (global $S_CTYPE    i32 (i32.const 0x0170)) ;; "content-type"           12
  (global $S_PLAIN    i32 (i32.const 0x0180)) ;; "text/plain"             10
  (global $S_BODY     i32 (i32.const 0x0190)) ;; "hello\n"                 6
  (global $S_HEADER   i32 (i32.const 0x01A0)) ;; "header"                  6
  (global $S_VALUE    i32 (i32.const 0x01B0)) ;; "value"                   5
  (global $S_TRUE     i32 (i32.const 0x01C0)) ;; "true"                    4
  (global $S_FALSE    i32 (i32.const 0x01C8)) ;; "false"                   5
  (global $S_NULL     i32 (i32.const 0x01D0)) ;; "null"                    4
  (global $S_INVALID  i32 (i32.const 0x0200)) ;; "hello: invalid configuration: "  30
  (global $S_EXPECTED i32 (i32.const 0x0220)) ;; "; expected {...}"       51
  (global $R_NONE     i32 (i32.const 0x0260)) ;; reasons, see below       16
  (global $R_SYNTAX   i32 (i32.const 0x0280)) ;;                          22
  (global $R_HEADER   i32 (i32.const 0x02A0)) ;;                          35
  (global $R_EMPTY    i32 (i32.const 0x02D0)) ;;                          17
  (global $R_VALUE    i32 (i32.const 0x02F0)) ;;                          34
  (global $S_NOMETRIC i32 (i32.const 0x0320)) ;; metric failure message   48

  (data (i32.const 0x0100) ":method")
  (data (i32.const 0x0110) ":path")
  (data (i32.const 0x0120) "GET")
  (data (i32.const 0x0130) "/hello-local")
  (data (i32.const 0x0140) "hello: ")
  (data (i32.const 0x0150) "hello_requests_total")
  (data (i32.const 0x0170) "content-type")
  (data (i32.const 0x0180) "text/plain")
  (data (i32.const 0x0190) "hello\n")
  (data (i32.const 0x01A0) "header")
  (data (i32.const 0x01B0) "value")
  (data (i32.const 0x01C0) "true")
  (data (i32.const 0x01C8) "false")
  (data (i32.const 0x01D0) "null")
  (data (i32.const 0x0200) "hello: invalid configuration: ")
  (data (i32.const 0x0220) "; expected {\"header\": \"<name>\", \"value\": \"<value>\"}")
  (data (i32.const 0x0260) "no configuration")
  (data (i32.const 0x0280) "not a flat JSON object")
  (data (i32.const 0x02A0) "\"header\" is missing or not a string")
  (data (i32.const 0x02D0) "\"header\" is empty")
  (data (i32.const 0x02F0) "\"value\" is missing or not a string")
  (data (i32.const 0x0320) "hello: cannot define metric hello_requests_total")

  ;; The plugin's state, set by proxy_on_configure.
  (global $header_ptr     (mut i32) (i32.const 0))  ;; configured header name
  (global $header_len     (mut i32) (i32.const 0))
  (global $value_ptr      (mut i32) (i32.const 0))  ;; configured header value
  (global $value_len      (mut i32) (i32.const 0))
  (global $metric_id      (mut i32) (i32.const 0))  ;; hello_requests_total
  (global $metric_defined (mut i32) (i32.const 0))  ;; 1 once it is defined

  ;; =========================================================================
  ;; 3. The allocator: proxy_on_memory_allocate. The host calls it (from
  ;;    inside proxy_get_buffer_bytes, proxy_get_header_map_value, ...) to get
  ;;    room for data it returns; the filter uses it for its own messages.
  ;; =========================================================================
  (global $heap_top   (mut i32) (i32.const 0x1000)) ;; next free byte
  (global $arena_base (mut i32) (i32.const 0x1000)) ;; start of the scratch area

  ;; Returns 8-byte-aligned room for $size bytes, growing the memory when
  ;; needed, or 0 when the memory cannot grow (the VM's memory limit).
  (func $alloc (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $ptr i32) (local $end i32) (local $pages i32)
    (local.set $ptr (i32.and (i32.add (global.get $heap_top) (i32.const 7))
                             (i32.const -8)))
    (local.set $end (i32.add (local.get $ptr) (local.get $size)))
    (if (i32.lt_u (local.get $end) (local.get $ptr))      ;; wrapped past 4 GiB
      (then (return (i32.const 0))))
    ;; pages needed = ceil(end / 64 KiB), computed in 64 bits (no overflow)
    (local.set $pages
      (i32.wrap_i64 (i64.shr_u (i64.add (i64.extend_i32_u (local.get $end))
                                        (i64.const 0xFFFF))
                               (i64.const 16))))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size)))
                    (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap_top (local.get $end))
    (local.get $ptr))

  ;; =========================================================================
  ;; 4. Small helpers.
  ;; =========================================================================

  ;; Copies $len bytes from $src to $dst; returns $dst + $len.
  (func $copy (param $dst i32) (param $src i32) (param $len i32) (result i32)
    (memory.copy (local.get $dst) (local.get $src) (local.get $len))
    (i32.add (local.get $dst) (local.get $len)))

  ;; 1 when the byte strings ($a, $alen) and ($b, $blen) are equal.
  (func $eq (param $a i32) (param $alen i32) (param $b i32) (param $blen i32) (result i32)
    (local $i i32)
    (if (i32.ne (local.get $alen) (local.get $blen)) (then (return (i32.const 0))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $alen)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $b) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))

  ;; proxy_log, ignoring its status. Levels: 2 = INFO, 4 = ERROR.
  (func $log (param $level i32) (param $ptr i32) (param $len i32)
    (drop (call $proxy_log (local.get $level) (local.get $ptr) (local.get $len))))

  ;; Looks a request header up (map 0 = HTTP_REQUEST_HEADERS). Afterwards
  ;; RET_PTR/RET_LEN hold its value, or 0/0 when the request has none.
  (func $request_header (param $key i32) (param $key_len i32)
    (if (call $proxy_get_header_map_value (i32.const 0) (local.get $key) (local.get $key_len)
                                          (global.get $RET_PTR) (global.get $RET_LEN))
      (then
        (i32.store (global.get $RET_PTR) (i32.const 0))
        (i32.store (global.get $RET_LEN) (i32.const 0)))))

  ;; =========================================================================
  ;; 5. The configuration scanner: a small JSON reader for one flat object.
  ;;    Positions are absolute addresses; $end is one past the last byte.
  ;;    Functions that can fail return 0 for "not JSON" (0 is never a valid
  ;;    position: the configuration always lies in the heap, above 0x1000).
  ;; =========================================================================

  ;; 1 for JSON whitespace: space, tab, line feed, carriage return.
  (func $is_ws (param $c i32) (result i32)
    (i32.or (i32.or (i32.eq (local.get $c) (i32.const 0x20))
                    (i32.eq (local.get $c) (i32.const 0x09)))
            (i32.or (i32.eq (local.get $c) (i32.const 0x0A))
                    (i32.eq (local.get $c) (i32.const 0x0D)))))

  ;; Skips whitespace; returns the first other position (or $end).
  (func $skip_ws (param $pos i32) (param $end i32) (result i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $pos) (local.get $end)))
        (br_if $done (i32.eqz (call $is_ws (i32.load8_u (local.get $pos)))))
        (local.set $pos (i32.add (local.get $pos) (i32.const 1)))
        (br $next)))
    (local.get $pos))

  ;; The value of four hex digits at $p, or -1.
  (func $hex4 (param $p i32) (param $end i32) (result i32)
    (local $i i32) (local $c i32) (local $v i32) (local $d i32)
    (if (i32.gt_u (i32.add (local.get $p) (i32.const 4)) (local.get $end))
      (then (return (i32.const -1))))
    (loop $next
      (local.set $c (i32.load8_u (i32.add (local.get $p) (local.get $i))))
      (local.set $d
        (if (result i32) (i32.le_u (i32.sub (local.get $c) (i32.const 0x30)) (i32.const 9))
          (then (i32.sub (local.get $c) (i32.const 0x30)))             ;; 0-9
          (else
            (local.set $c (i32.or (local.get $c) (i32.const 0x20)))    ;; A-F -> a-f
            (if (result i32) (i32.le_u (i32.sub (local.get $c) (i32.const 0x61)) (i32.const 5))
              (then (i32.add (i32.sub (local.get $c) (i32.const 0x61)) (i32.const 10)))
              (else (return (i32.const -1)))))))
      (local.set $v (i32.or (i32.shl (local.get $v) (i32.const 4)) (local.get $d)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $i) (i32.const 4))))
    (local.get $v))

  ;; A UTF-8 continuation byte (10xxxxxx) holding bits $shift..$shift+5 of $cp.
  (func $cont (param $cp i32) (param $shift i32) (result i32)
    (i32.or (i32.const 0x80)
            (i32.and (i32.shr_u (local.get $cp) (local.get $shift)) (i32.const 0x3F))))

  ;; Writes code point $cp as UTF-8 at $dst; returns the position after it.
  (func $put_utf8 (param $dst i32) (param $cp i32) (result i32)
    (if (i32.lt_u (local.get $cp) (i32.const 0x80))
      (then
        (i32.store8 (local.get $dst) (local.get $cp))
        (return (i32.add (local.get $dst) (i32.const 1)))))
    (if (i32.lt_u (local.get $cp) (i32.const 0x800))
      (then
        (i32.store8 (local.get $dst)
          (i32.or (i32.const 0xC0) (i32.shr_u (local.get $cp) (i32.const 6))))
        (i32.store8 offset=1 (local.get $dst) (call $cont (local.get $cp) (i32.const 0)))
        (return (i32.add (local.get $dst) (i32.const 2)))))
    (if (i32.lt_u (local.get $cp) (i32.const 0x10000))
      (then
        (i32.store8 (local.get $dst)
          (i32.or (i32.const 0xE0) (i32.shr_u (local.get $cp) (i32.const 12))))
        (i32.store8 offset=1 (local.get $dst) (call $cont (local.get $cp) (i32.const 6)))
        (i32.store8 offset=2 (local.get $dst) (call $cont (local.get $cp) (i32.const 0)))
        (return (i32.add (local.get $dst) (i32.const 3)))))
    (i32.store8 (local.get $dst)
      (i32.or (i32.const 0xF0) (i32.shr_u (local.get $cp) (i32.const 18))))
    (i32.store8 offset=1 (local.get $dst) (call $cont (local.get $cp) (i32.const 12)))
    (i32.store8 offset=2 (local.get $dst) (call $cont (local.get $cp) (i32.const 6)))
    (i32.store8 offset=3 (local.get $dst) (call $cont (local.get $cp) (i32.const 0)))
    (i32.add (local.get $dst) (i32.const 4)))

  ;; The byte a one-character escape (\" \\ \/ \b \f \n \r \t) stands for, or -1.
  (func $unescape (param $c i32) (result i32)
    (if (i32.eq (local.get $c) (i32.const 0x22)) (then (return (i32.const 0x22)))) ;; \"
    (if (i32.eq (local.get $c) (i32.const 0x5C)) (then (return (i32.const 0x5C)))) ;; \\
    (if (i32.eq (local.get $c) (i32.const 0x2F)) (then (return (i32.const 0x2F)))) ;; \/
    (if (i32.eq (local.get $c) (i32.const 0x62)) (then (return (i32.const 0x08)))) ;; \b
    (if (i32.eq (local.get $c) (i32.const 0x66)) (then (return (i32.const 0x0C)))) ;; \f
    (if (i32.eq (local.get $c) (i32.const 0x6E)) (then (return (i32.const 0x0A)))) ;; \n
    (if (i32.eq (local.get $c) (i32.const 0x72)) (then (return (i32.const 0x0D)))) ;; \r
    (if (i32.eq (local.get $c) (i32.const 0x74)) (then (return (i32.const 0x09)))) ;; \t
    (i32.const -1))

  ;; Where $scan_string leaves the string it read.
  (global $str_ptr (mut i32) (i32.const 0))
  (global $str_len (mut i32) (i32.const 0))

  ;; Reads the JSON string whose opening quote is at $pos, decoding its
  ;; escapes IN PLACE: the decoded bytes are written from $pos + 1 on, never
  ;; past the bytes still to be read (an escape never decodes to more bytes
  ;; than it is written with), and left in $str_ptr/$str_len. Returns the
  ;; position after the closing quote, or 0 when the string is not valid
  ;; JSON (unterminated, a raw control character, an unknown escape, bad hex
  ;; digits or an unpaired surrogate).
  (func $scan_string (param $pos i32) (param $end i32) (result i32)
    (local $src i32) (local $dst i32) (local $c i32) (local $cp i32) (local $lo i32)
    (local.set $src (i32.add (local.get $pos) (i32.const 1)))
    (local.set $dst (local.get $src))
    (global.set $str_ptr (local.get $src))
    (loop $next
      (if (i32.ge_u (local.get $src) (local.get $end))             ;; unterminated
        (then (return (i32.const 0))))
      (local.set $c (i32.load8_u (local.get $src)))
      (if (i32.eq (local.get $c) (i32.const 0x22))                  ;; closing "
        (then
          (global.set $str_len (i32.sub (local.get $dst) (global.get $str_ptr)))
          (return (i32.add (local.get $src) (i32.const 1)))))
      (if (i32.lt_u (local.get $c) (i32.const 0x20))                ;; raw control char
        (then (return (i32.const 0))))
      (if (i32.ne (local.get $c) (i32.const 0x5C))                  ;; not a backslash:
        (then                                                       ;; copy the byte
          (i32.store8 (local.get $dst) (local.get $c))
          (local.set $src (i32.add (local.get $src) (i32.const 1)))
          (local.set $dst (i32.add (local.get $dst) (i32.const 1)))
          (br $next)))
      ;; an escape: \ and one more character
      (if (i32.ge_u (i32.add (local.get $src) (i32.const 1)) (local.get $end))
        (then (return (i32.const 0))))
      (local.set $c (i32.load8_u offset=1 (local.get $src)))
      (local.set $src (i32.add (local.get $src) (i32.const 2)))
      (if (i32.eq (local.get $c) (i32.const 0x75))                  ;; \uXXXX
        (then
          (local.set $cp (call $hex4 (local.get $src) (local.get $end)))
          (if (i32.lt_s (local.get $cp) (i32.const 0)) (then (return (i32.const 0))))
          (local.set $src (i32.add (local.get $src) (i32.const 4)))
          (if (i32.eq (i32.and (local.get $cp) (i32.const 0xFC00)) (i32.const 0xDC00))
            (then (return (i32.const 0))))                          ;; lone low surrogate
          (if (i32.eq (i32.and (local.get $cp) (i32.const 0xFC00)) (i32.const 0xD800))
            (then                                                   ;; high surrogate:
              (if (i32.gt_u (i32.add (local.get $src) (i32.const 6)) (local.get $end))
                (then (return (i32.const 0))))                      ;; \uDC00-\uDFFF must follow
              (if (i32.or (i32.ne (i32.load8_u (local.get $src)) (i32.const 0x5C))
                          (i32.ne (i32.load8_u offset=1 (local.get $src)) (i32.const 0x75)))
                (then (return (i32.const 0))))
              (local.set $lo (call $hex4 (i32.add (local.get $src) (i32.const 2)) (local.get $end)))
              (if (i32.ne (i32.and (local.get $lo) (i32.const 0xFC00)) (i32.const 0xDC00))
                (then (return (i32.const 0))))
              (local.set $src (i32.add (local.get $src) (i32.const 6)))
              (local.set $cp
                (i32.add (i32.const 0x10000)
                         (i32.or (i32.shl (i32.and (local.get $cp) (i32.const 0x3FF)) (i32.const 10))
                                 (i32.and (local.get $lo) (i32.const 0x3FF)))))))
          (local.set $dst (call $put_utf8 (local.get $dst) (local.get $cp)))
          (br $next)))
      (local.set $c (call $unescape (local.get $c)))                ;; \" \\ \/ \b ...
      (if (i32.lt_s (local.get $c) (i32.const 0)) (then (return (i32.const 0))))
      (i32.store8 (local.get $dst) (local.get $c))
      (local.set $dst (i32.add (local.get $dst) (i32.const 1)))
      (br $next))
    (unreachable))

  ;; 1 for a byte that ends a bare scalar (true, 12, ...): whitespace or one
  ;; of , } ] : " { [
  (func $ends_scalar (param $c i32) (result i32)
    (i32.or (call $is_ws (local.get $c))
      (i32.or (i32.or (i32.or (i32.eq (local.get $c) (i32.const 0x2C))   ;; ,
                              (i32.eq (local.get $c) (i32.const 0x7D)))  ;; }
                      (i32.or (i32.eq (local.get $c) (i32.const 0x5D))   ;; ]
                              (i32.eq (local.get $c) (i32.const 0x3A)))) ;; :
              (i32.or (i32.eq (local.get $c) (i32.const 0x22))           ;; "
                      (i32.or (i32.eq (local.get $c) (i32.const 0x7B))   ;; {
                              (i32.eq (local.get $c) (i32.const 0x5B))))))) ;; [

  ;; Skips the value of a key this filter ignores; $pos < $end is a
  ;; non-whitespace byte. Strings are read as JSON strings; an object or
  ;; array is skipped by counting brackets outside strings (its inside is not
  ;; checked further); a bare scalar must be true, false, null, or made of
  ;; the characters of a number (0-9 + - . e E, starting with - or a digit).
  ;; Returns the position after the value, or 0.
  (func $skip_value (param $pos i32) (param $end i32) (result i32)
    (local $c i32) (local $depth i32) (local $start i32) (local $len i32)
    (local.set $c (i32.load8_u (local.get $pos)))
    (if (i32.eq (local.get $c) (i32.const 0x22))                    ;; "string"
      (then (return (call $scan_string (local.get $pos) (local.get $end)))))
    (if (i32.or (i32.eq (local.get $c) (i32.const 0x7B))            ;; { or [
                (i32.eq (local.get $c) (i32.const 0x5B)))
      (then
        (loop $next
          (if (i32.ge_u (local.get $pos) (local.get $end)) (then (return (i32.const 0))))
          (local.set $c (i32.load8_u (local.get $pos)))
          (if (i32.eq (local.get $c) (i32.const 0x22))
            (then
              (local.set $pos (call $scan_string (local.get $pos) (local.get $end)))
              (if (i32.eqz (local.get $pos)) (then (return (i32.const 0))))
              (br $next)))
          (if (i32.or (i32.eq (local.get $c) (i32.const 0x7B)) (i32.eq (local.get $c) (i32.const 0x5B)))
            (then (local.set $depth (i32.add (local.get $depth) (i32.const 1)))))
          (if (i32.or (i32.eq (local.get $c) (i32.const 0x7D)) (i32.eq (local.get $c) (i32.const 0x5D)))
            (then (local.set $depth (i32.sub (local.get $depth) (i32.const 1)))))
          (local.set $pos (i32.add (local.get $pos) (i32.const 1)))
          (br_if $next (local.get $depth)))
        (return (local.get $pos))))
    ;; a bare scalar
    (local.set $start (local.get $pos))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $pos) (local.get $end)))
        (br_if $done (call $ends_scalar (i32.load8_u (local.get $pos))))
        (local.set $pos (i32.add (local.get $pos) (i32.const 1)))
        (br $next)))
    (local.set $len (i32.sub (local.get $pos) (local.get $start)))
    (if (i32.or (i32.or (call $eq (local.get $start) (local.get $len) (global.get $S_TRUE) (i32.const 4))
                        (call $eq (local.get $start) (local.get $len) (global.get $S_FALSE) (i32.const 5)))
                (call $eq (local.get $start) (local.get $len) (global.get $S_NULL) (i32.const 4)))
      (then (return (local.get $pos))))
    (if (i32.eqz (local.get $len)) (then (return (i32.const 0))))
    (local.set $c (i32.load8_u (local.get $start)))                 ;; - or a digit first
    (if (i32.and (i32.ne (local.get $c) (i32.const 0x2D))
                 (i32.gt_u (i32.sub (local.get $c) (i32.const 0x30)) (i32.const 9)))
      (then (return (i32.const 0))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $start) (local.get $pos)))
        (local.set $c (i32.load8_u (local.get $start)))
        (if (i32.eqz (i32.or (i32.le_u (i32.sub (local.get $c) (i32.const 0x30)) (i32.const 9))
                             (i32.or (i32.or (i32.eq (local.get $c) (i32.const 0x2B))    ;; +
                                             (i32.eq (local.get $c) (i32.const 0x2D)))   ;; -
                                     (i32.or (i32.eq (local.get $c) (i32.const 0x2E))    ;; .
                                             (i32.eq (i32.or (local.get $c) (i32.const 0x20))
                                                     (i32.const 0x65))))))               ;; e E
          (then (return (i32.const 0))))
        (local.set $start (i32.add (local.get $start) (i32.const 1)))
        (br $next)))
    (local.get $pos))

  ;; What $parse_config found: 1 when "header" / "value" had a string value
  ;; (the last occurrence of a key wins, as in most JSON readers).
  (global $have_header (mut i32) (i32.const 0))
  (global $have_value  (mut i32) (i32.const 0))

  ;; Reads the configuration ($ptr, $len): optional whitespace, one object,
  ;; optional whitespace, nothing else. Sets $header_*/$value_* (pointing into
  ;; the configuration itself) and $have_header/$have_value. Returns 1 when
  ;; the bytes are such an object, 0 when they are not.
  (func $parse_config (param $ptr i32) (param $len i32) (result i32)
    (local $pos i32) (local $end i32) (local $c i32)
    (local $key i32) (local $key_len i32) (local $is_header i32) (local $is_value i32)
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (global.set $have_header (i32.const 0))
    (global.set $have_value (i32.const 0))
    ;; {
    (local.set $pos (call $skip_ws (local.get $ptr) (local.get $end)))
    (if (i32.ge_u (local.get $pos) (local.get $end)) (then (return (i32.const 0))))
    (if (i32.ne (i32.load8_u (local.get $pos)) (i32.const 0x7B)) (then (return (i32.const 0))))
    (local.set $pos (call $skip_ws (i32.add (local.get $pos) (i32.const 1)) (local.get $end)))
    (if (i32.ge_u (local.get $pos) (local.get $end)) (then (return (i32.const 0))))
    (block $closed
      ;; {} : an empty object
      (if (i32.eq (i32.load8_u (local.get $pos)) (i32.const 0x7D))
        (then
          (local.set $pos (i32.add (local.get $pos) (i32.const 1)))
          (br $closed)))
      (loop $member
        ;; "key"
        (if (i32.ge_u (local.get $pos) (local.get $end)) (then (return (i32.const 0))))
        (if (i32.ne (i32.load8_u (local.get $pos)) (i32.const 0x22)) (then (return (i32.const 0))))
        (local.set $pos (call $scan_string (local.get $pos) (local.get $end)))
        (if (i32.eqz (local.get $pos)) (then (return (i32.const 0))))
        (local.set $key (global.get $str_ptr))
        (local.set $key_len (global.get $str_len))
        ;; :
        (local.set $pos (call $skip_ws (local.get $pos) (local.get $end)))
        (if (i32.ge_u (local.get $pos) (local.get $end)) (then (return (i32.const 0))))
        (if (i32.ne (i32.load8_u (local.get $pos)) (i32.const 0x3A)) (then (return (i32.const 0))))
        (local.set $pos (call $skip_ws (i32.add (local.get $pos) (i32.const 1)) (local.get $end)))
        (if (i32.ge_u (local.get $pos) (local.get $end)) (then (return (i32.const 0))))
        ;; the value
        (local.set $is_header (call $eq (local.get $key) (local.get $key_len) (global.get $S_HEADER) (i32.const 6)))
        (local.set $is_value (call $eq (local.get $key) (local.get $key_len) (global.get $S_VALUE) (i32.const 5)))
        (if (i32.and (i32.or (local.get $is_header) (local.get $is_value))
                     (i32.eq (i32.load8_u (local.get $pos)) (i32.const 0x22)))
          (then                                       ;; "header" or "value" with a string
            (local.set $pos (call $scan_string (local.get $pos) (local.get $end)))
            (if (i32.eqz (local.get $pos)) (then (return (i32.const 0))))
            (if (local.get $is_header)
              (then
                (global.set $header_ptr (global.get $str_ptr))
                (global.set $header_len (global.get $str_len))
                (global.set $have_header (i32.const 1)))
              (else
                (global.set $value_ptr (global.get $str_ptr))
                (global.set $value_len (global.get $str_len))
                (global.set $have_value (i32.const 1)))))
          (else                                       ;; any other key, or a non-string
            (local.set $pos (call $skip_value (local.get $pos) (local.get $end)))
            (if (i32.eqz (local.get $pos)) (then (return (i32.const 0))))
            (if (local.get $is_header) (then (global.set $have_header (i32.const 0))))
            (if (local.get $is_value) (then (global.set $have_value (i32.const 0))))))
        ;; , or }
        (local.set $pos (call $skip_ws (local.get $pos) (local.get $end)))
        (if (i32.ge_u (local.get $pos) (local.get $end)) (then (return (i32.const 0))))
        (local.set $c (i32.load8_u (local.get $pos)))
        (local.set $pos (i32.add (local.get $pos) (i32.const 1)))
        (br_if $closed (i32.eq (local.get $c) (i32.const 0x7D)))
        (if (i32.ne (local.get $c) (i32.const 0x2C)) (then (return (i32.const 0))))
        (local.set $pos (call $skip_ws (local.get $pos) (local.get $end)))
        (br $member)))
    ;; only whitespace may follow the object
    (i32.eq (call $skip_ws (local.get $pos) (local.get $end)) (local.get $end)))

  ;; Logs "hello: invalid configuration: <reason>; expected {...}" at ERROR
  ;; and returns 0, the answer that refuses the configuration.
  (func $refuse (param $reason i32) (param $reason_len i32) (result i32)
    (local $msg i32) (local $len i32) (local $cur i32)
    (local.set $len (i32.add (i32.const 81) (local.get $reason_len)))   ;; 30 + reason + 51
    (local.set $msg (call $alloc (local.get $len)))
    (if (i32.eqz (local.get $msg))
      (then                                           ;; no room: the fixed words only
        (call $log (i32.const 4) (global.get $S_INVALID) (i32.const 28))
        (return (i32.const 0))))
    (local.set $cur (call $copy (local.get $msg) (global.get $S_INVALID) (i32.const 30)))
    (local.set $cur (call $copy (local.get $cur) (local.get $reason) (local.get $reason_len)))
    (drop (call $copy (local.get $cur) (global.get $S_EXPECTED) (i32.const 51)))
    (call $log (i32.const 4) (local.get $msg) (local.get $len))
    (i32.const 0))

  ;; =========================================================================
  ;; 6. Callbacks: the functions the host calls.
  ;; =========================================================================

  ;; The marker that says which ABI this module speaks. Never called.
  (func (export "proxy_abi_version_0_2_1"))

  ;; A context is created: the root (plugin) context with $parent 0, then one
  ;; per HTTP stream. This filter keeps its state in globals (one plugin per
  ;; VM, as weft runs it), so there is nothing to set up.
  (func (export "proxy_on_context_create") (param $ctx i32) (param $parent i32))

  ;; The VM starts. There is no VM configuration to read: accept.
  (func (export "proxy_on_vm_start") (param $root i32) (param $vm_config_size i32) (result i32)
    (i32.const 1))

  ;; The plugin starts with its configuration ($size bytes in buffer 7,
  ;; PLUGIN_CONFIGURATION). Returns 1 to accept it, 0 to refuse it.
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (local $config i32) (local $config_len i32)
    ;; Start the heap over: nothing allocated before is kept.
    (global.set $heap_top (global.get $HEAP_BASE))
    (global.set $arena_base (global.get $HEAP_BASE))
    (if (i32.eqz (local.get $size))
      (then (return (call $refuse (global.get $R_NONE) (i32.const 16)))))
    ;; The host allocates $size bytes (through proxy_on_memory_allocate),
    ;; copies the configuration there and writes where to RET_PTR/RET_LEN.
    (if (call $proxy_get_buffer_bytes (i32.const 7) (i32.const 0) (local.get $size)
                                      (global.get $RET_PTR) (global.get $RET_LEN))
      (then (return (call $refuse (global.get $R_NONE) (i32.const 16)))))
    (local.set $config (i32.load (global.get $RET_PTR)))
    (local.set $config_len (i32.load (global.get $RET_LEN)))
    (if (i32.eqz (call $parse_config (local.get $config) (local.get $config_len)))
      (then (return (call $refuse (global.get $R_SYNTAX) (i32.const 22)))))
    (if (i32.eqz (global.get $have_header))
      (then (return (call $refuse (global.get $R_HEADER) (i32.const 35)))))
    (if (i32.eqz (global.get $header_len))
      (then (return (call $refuse (global.get $R_EMPTY) (i32.const 17)))))
    (if (i32.eqz (global.get $have_value))
      (then (return (call $refuse (global.get $R_VALUE) (i32.const 34)))))
    ;; The counter, defined once (type 0 = COUNTER).
    (if (i32.eqz (global.get $metric_defined))
      (then
        (if (call $proxy_define_metric (i32.const 0) (global.get $S_METRIC) (i32.const 20)
                                       (global.get $METRIC))
          (then
            (call $log (i32.const 4) (global.get $S_NOMETRIC) (i32.const 48))
            (return (i32.const 0))))
        (global.set $metric_id (i32.load (global.get $METRIC)))
        (global.set $metric_defined (i32.const 1))))
    ;; Keep the configuration (header and value point into it): per-request
    ;; scratch starts after it.
    (global.set $arena_base (global.get $heap_top))
    (i32.const 1))

  ;; Request headers arrived (map 0). Log and count the request; answer
  ;; GET /hello-local locally. Returns 0 (CONTINUE) or 1 (PAUSE).
  (func (export "proxy_on_request_headers")
        (param $ctx i32) (param $num_headers i32) (param $end_of_stream i32) (result i32)
    (local $method i32) (local $method_len i32) (local $path i32) (local $path_len i32)
    (local $msg i32) (local $len i32) (local $cur i32)
    ;; Throw away the previous request's scratch memory.
    (global.set $heap_top (global.get $arena_base))

    (call $request_header (global.get $S_METHOD) (i32.const 7))
    (local.set $method (i32.load (global.get $RET_PTR)))
    (local.set $method_len (i32.load (global.get $RET_LEN)))
    (call $request_header (global.get $S_PATH) (i32.const 5))
    (local.set $path (i32.load (global.get $RET_PTR)))
    (local.set $path_len (i32.load (global.get $RET_LEN)))

    ;; "hello: <METHOD> <PATH>" at INFO (2)
    (local.set $len (i32.add (i32.add (i32.const 8) (local.get $method_len)) (local.get $path_len)))
    (local.set $msg (call $alloc (local.get $len)))
    (if (local.get $msg)
      (then
        (local.set $cur (call $copy (local.get $msg) (global.get $S_HELLO) (i32.const 7)))
        (local.set $cur (call $copy (local.get $cur) (local.get $method) (local.get $method_len)))
        (i32.store8 (local.get $cur) (i32.const 0x20))
        (drop (call $copy (i32.add (local.get $cur) (i32.const 1)) (local.get $path) (local.get $path_len)))
        (call $log (i32.const 2) (local.get $msg) (local.get $len))))

    (drop (call $proxy_increment_metric (global.get $metric_id) (i64.const 1)))

    (if (i32.and (call $eq (local.get $method) (local.get $method_len) (global.get $S_GET) (i32.const 3))
                 (call $eq (local.get $path) (local.get $path_len) (global.get $S_LOCAL) (i32.const 12)))
      (then
        ;; The response headers, serialized as the ABI wants a map:
        ;;   u32 count | count x (u32 key_len, u32 value_len) |
        ;;   key 0x00 value 0x00, for each pair in turn
        ;; = 4 + 2*8 + (12+1 + 10+1) + (header_len+1 + value_len+1) bytes.
        (local.set $len (i32.add (i32.const 46)
                                 (i32.add (global.get $header_len) (global.get $value_len))))
        (local.set $msg (call $alloc (local.get $len)))
        (if (i32.eqz (local.get $msg)) (then (return (i32.const 0))))   ;; no room: pass it on
        (i32.store           (local.get $msg) (i32.const 2))
        (i32.store offset=4  (local.get $msg) (i32.const 12))            ;; content-type
        (i32.store offset=8  (local.get $msg) (i32.const 10))            ;; text/plain
        (i32.store offset=12 (local.get $msg) (global.get $header_len))
        (i32.store offset=16 (local.get $msg) (global.get $value_len))
        (local.set $cur (call $copy (i32.add (local.get $msg) (i32.const 20))
                                    (global.get $S_CTYPE) (i32.const 12)))
        (i32.store8 (local.get $cur) (i32.const 0))
        (local.set $cur (call $copy (i32.add (local.get $cur) (i32.const 1))
                                    (global.get $S_PLAIN) (i32.const 10)))
        (i32.store8 (local.get $cur) (i32.const 0))
        (local.set $cur (call $copy (i32.add (local.get $cur) (i32.const 1))
                                    (global.get $header_ptr) (global.get $header_len)))
        (i32.store8 (local.get $cur) (i32.const 0))
        (local.set $cur (call $copy (i32.add (local.get $cur) (i32.const 1))
                                    (global.get $value_ptr) (global.get $value_len)))
        (i32.store8 (local.get $cur) (i32.const 0))
        ;; 200, no details, body "hello\n", those headers, grpc_status -1 (none)
        (drop (call $proxy_send_local_response
                (i32.const 200)
                (i32.const 0) (i32.const 0)
                (global.get $S_BODY) (i32.const 6)
                (local.get $msg) (local.get $len)
                (i32.const -1)))
        (return (i32.const 1))))
    (i32.const 0))

  ;; Response headers arrived (map 2): add the configured header. CONTINUE.
  (func (export "proxy_on_response_headers")
        (param $ctx i32) (param $num_headers i32) (param $end_of_stream i32) (result i32)
    (drop (call $proxy_add_header_map_value (i32.const 2)
            (global.get $header_ptr) (global.get $header_len)
            (global.get $value_ptr) (global.get $value_len)))
    (i32.const 0))
)

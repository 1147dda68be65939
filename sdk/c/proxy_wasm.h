/*
 * proxy_wasm.h — the proxy-wasm ABI v0.2.1 for C (clang, wasm32-wasi).
 *
 * Raw bindings, transcribed from the specification
 * (https://github.com/proxy-wasm/spec, abi-versions/v0.2.1):
 *
 *   - the spec's types (proxy_status_t, proxy_log_level_t, proxy_action_t,
 *     proxy_buffer_type_t, proxy_map_type_t, proxy_peer_type_t,
 *     proxy_stream_type_t, proxy_metric_type_t and the WASI ones);
 *   - every host function (imported from module "env"), and the WASI
 *     functions the spec lists (imported from "wasi_snapshot_preview1");
 *   - every callback's prototype, already marked with export_name: a
 *     callback the module *defines* is exported under its own name, one it
 *     does not define is simply absent (all callbacks are optional).
 *
 * Memory: every `return_*_data` pointer the host writes points to memory the
 * host obtained from the module's `proxy_on_memory_allocate`; with the
 * helper layer (proxy_wasm_helpers.c) that is malloc, so release it with
 * free().
 *
 * Sizes: wasm32 is ILP32, so size_t, pointers and uint32_t are all the i32
 * of the wasm signatures; uint64_t/int64_t are i64. Enums are int (i32).
 *
 * The module must also export `proxy_abi_version_0_2_1` and
 * `proxy_on_memory_allocate`; proxy_wasm_helpers.c defines both. Built with
 * `-mexec-model=reactor`, wasi-libc's crt1-reactor.o exports `_initialize`,
 * which the host calls first (it runs C constructors).
 */
#ifndef PROXY_WASM_H
#define PROXY_WASM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Attributes                                                                */
/* ------------------------------------------------------------------------ */

/** Imports a host function from the proxy-wasm module "env". */
#define PROXY_WASM_IMPORT(name) \
    __attribute__((import_module("env"), import_name(#name)))

/** Imports a WASI function from "wasi_snapshot_preview1". */
#define PROXY_WASM_WASI_IMPORT(name) \
    __attribute__((import_module("wasi_snapshot_preview1"), import_name(#name)))

/**
 * Exports a function under `name`. The callbacks below already carry it;
 * use it for exports of your own.
 */
#define PROXY_WASM_EXPORT(name) __attribute__((export_name(#name)))

/* ------------------------------------------------------------------------ */
/* Types (spec section "Types")                                              */
/* ------------------------------------------------------------------------ */

/** The status every host function returns. */
typedef enum {
    PROXY_STATUS_OK = 0,
    PROXY_STATUS_NOT_FOUND = 1,
    PROXY_STATUS_BAD_ARGUMENT = 2,
    PROXY_STATUS_SERIALIZATION_FAILURE = 3,
    PROXY_STATUS_PARSE_FAILURE = 4,
    PROXY_STATUS_INVALID_MEMORY_ACCESS = 6,
    PROXY_STATUS_EMPTY = 7,
    PROXY_STATUS_CAS_MISMATCH = 8,
    PROXY_STATUS_INTERNAL_FAILURE = 10,
    PROXY_STATUS_UNIMPLEMENTED = 12,
} proxy_status_t;

typedef enum {
    PROXY_LOG_TRACE = 0,
    PROXY_LOG_DEBUG = 1,
    PROXY_LOG_INFO = 2,
    PROXY_LOG_WARN = 3,
    PROXY_LOG_ERROR = 4,
    PROXY_LOG_CRITICAL = 5,
} proxy_log_level_t;

/** What a stream callback answers. */
typedef enum {
    PROXY_ACTION_CONTINUE = 0,
    PROXY_ACTION_PAUSE = 1,
} proxy_action_t;

typedef enum {
    PROXY_BUFFER_HTTP_REQUEST_BODY = 0,
    PROXY_BUFFER_HTTP_RESPONSE_BODY = 1,
    PROXY_BUFFER_DOWNSTREAM_DATA = 2,
    PROXY_BUFFER_UPSTREAM_DATA = 3,
    PROXY_BUFFER_HTTP_CALL_RESPONSE_BODY = 4,
    PROXY_BUFFER_GRPC_CALL_MESSAGE = 5,
    PROXY_BUFFER_VM_CONFIGURATION = 6,
    PROXY_BUFFER_PLUGIN_CONFIGURATION = 7,
    PROXY_BUFFER_FOREIGN_FUNCTION_ARGUMENTS = 8,
} proxy_buffer_type_t;

typedef enum {
    PROXY_MAP_HTTP_REQUEST_HEADERS = 0,
    PROXY_MAP_HTTP_REQUEST_TRAILERS = 1,
    PROXY_MAP_HTTP_RESPONSE_HEADERS = 2,
    PROXY_MAP_HTTP_RESPONSE_TRAILERS = 3,
    PROXY_MAP_GRPC_CALL_INITIAL_METADATA = 4,
    PROXY_MAP_GRPC_CALL_TRAILING_METADATA = 5,
    PROXY_MAP_HTTP_CALL_RESPONSE_HEADERS = 6,
    PROXY_MAP_HTTP_CALL_RESPONSE_TRAILERS = 7,
} proxy_map_type_t;

typedef enum {
    PROXY_PEER_UNKNOWN = 0,
    PROXY_PEER_LOCAL = 1,
    PROXY_PEER_REMOTE = 2,
} proxy_peer_type_t;

typedef enum {
    PROXY_STREAM_HTTP_REQUEST = 0,
    PROXY_STREAM_HTTP_RESPONSE = 1,
    PROXY_STREAM_DOWNSTREAM = 2,
    PROXY_STREAM_UPSTREAM = 3,
} proxy_stream_type_t;

typedef enum {
    PROXY_METRIC_COUNTER = 0,
    PROXY_METRIC_GAUGE = 1,
    PROXY_METRIC_HISTOGRAM = 2,
} proxy_metric_type_t;

/**
 * The WASI errno values the spec names, plus NOSYS (what a host answers for
 * a WASI function it does not implement). Prefixed so as not to clash with
 * wasi-libc's own __wasi_ names.
 */
typedef enum {
    PROXY_WASI_ERRNO_SUCCESS = 0,
    PROXY_WASI_ERRNO_BADF = 8,
    PROXY_WASI_ERRNO_FAULT = 21,
    PROXY_WASI_ERRNO_INVAL = 28,
    PROXY_WASI_ERRNO_NOSYS = 52,
    PROXY_WASI_ERRNO_NOTSUP = 58,
} proxy_wasi_errno_t;

typedef enum {
    PROXY_WASI_FD_STDOUT = 1,
    PROXY_WASI_FD_STDERR = 2,
} proxy_wasi_fd_id_t;

typedef enum {
    PROXY_WASI_CLOCK_REALTIME = 0,
    PROXY_WASI_CLOCK_MONOTONIC = 1,
} proxy_wasi_clock_id_t;

/** One element of the iovec array fd_write takes. */
typedef struct {
    const uint8_t *buf;
    size_t buf_len;
} proxy_wasi_ciovec_t;

/* ------------------------------------------------------------------------ */
/* Host functions: module "env"                                              */
/* ------------------------------------------------------------------------ */

/* Context lifecycle */

/** Tells the host the active context (kept by proxy_on_done returning false) is finished. */
PROXY_WASM_IMPORT(proxy_done)
proxy_status_t proxy_done(void);

/** Makes `context_id` the context later host calls act on (timer, queue, call-out callbacks). */
PROXY_WASM_IMPORT(proxy_set_effective_context)
proxy_status_t proxy_set_effective_context(uint32_t context_id);

/* Logging */

PROXY_WASM_IMPORT(proxy_log)
proxy_status_t proxy_log(proxy_log_level_t log_level, const char *message_data,
                         size_t message_size);

PROXY_WASM_IMPORT(proxy_get_log_level)
proxy_status_t proxy_get_log_level(proxy_log_level_t *return_log_level);

/* Clocks and timers */

/** Deprecated by the spec in favour of WASI clock_time_get. */
PROXY_WASM_IMPORT(proxy_get_current_time_nanoseconds)
proxy_status_t proxy_get_current_time_nanoseconds(uint64_t *return_time);

/** proxy_on_tick every `tick_period` ms; 0 disables the timer. */
PROXY_WASM_IMPORT(proxy_set_tick_period_milliseconds)
proxy_status_t proxy_set_tick_period_milliseconds(uint32_t tick_period);

/* Buffers */

/** Replaces `size` bytes at `start` of `buffer_id` with the value (start=0,size=0: prepend; start>=length: append). */
PROXY_WASM_IMPORT(proxy_set_buffer_bytes)
proxy_status_t proxy_set_buffer_bytes(proxy_buffer_type_t buffer_id, size_t start,
                                      size_t size, const uint8_t *value_data,
                                      size_t value_size);

/** Up to `max_size` bytes from `start`; *return_value_data is allocated with proxy_on_memory_allocate. */
PROXY_WASM_IMPORT(proxy_get_buffer_bytes)
proxy_status_t proxy_get_buffer_bytes(proxy_buffer_type_t buffer_id, size_t start,
                                      size_t max_size, uint8_t **return_value_data,
                                      size_t *return_value_size);

PROXY_WASM_IMPORT(proxy_get_buffer_status)
proxy_status_t proxy_get_buffer_status(proxy_buffer_type_t buffer_id,
                                       size_t *return_buffer_size,
                                       uint32_t *return_ignored);

/* HTTP fields (header maps, serialized as described in proxy_wasm_helpers.h) */

PROXY_WASM_IMPORT(proxy_get_header_map_size)
proxy_status_t proxy_get_header_map_size(proxy_map_type_t map_id,
                                         size_t *return_serialized_pairs_size);

PROXY_WASM_IMPORT(proxy_get_header_map_pairs)
proxy_status_t proxy_get_header_map_pairs(proxy_map_type_t map_id,
                                          uint8_t **return_serialized_pairs_data,
                                          size_t *return_serialized_pairs_size);

PROXY_WASM_IMPORT(proxy_set_header_map_pairs)
proxy_status_t proxy_set_header_map_pairs(proxy_map_type_t map_id,
                                          const uint8_t *serialized_pairs_data,
                                          size_t serialized_pairs_size);

PROXY_WASM_IMPORT(proxy_get_header_map_value)
proxy_status_t proxy_get_header_map_value(proxy_map_type_t map_id, const char *key_data,
                                          size_t key_size, uint8_t **return_value_data,
                                          size_t *return_value_size);

PROXY_WASM_IMPORT(proxy_add_header_map_value)
proxy_status_t proxy_add_header_map_value(proxy_map_type_t map_id, const char *key_data,
                                          size_t key_size, const uint8_t *value_data,
                                          size_t value_size);

PROXY_WASM_IMPORT(proxy_replace_header_map_value)
proxy_status_t proxy_replace_header_map_value(proxy_map_type_t map_id,
                                              const char *key_data, size_t key_size,
                                              const uint8_t *value_data,
                                              size_t value_size);

PROXY_WASM_IMPORT(proxy_remove_header_map_value)
proxy_status_t proxy_remove_header_map_value(proxy_map_type_t map_id,
                                             const char *key_data, size_t key_size);

/* Common stream operations */

PROXY_WASM_IMPORT(proxy_continue_stream)
proxy_status_t proxy_continue_stream(proxy_stream_type_t stream_type);

PROXY_WASM_IMPORT(proxy_close_stream)
proxy_status_t proxy_close_stream(proxy_stream_type_t stream_type);

/** Status of the HTTP call (in proxy_on_http_call_response) or gRPC call (in proxy_on_grpc_close). */
PROXY_WASM_IMPORT(proxy_get_status)
proxy_status_t proxy_get_status(uint32_t *return_status_code,
                                const char **return_status_message_data,
                                size_t *return_status_message_size);

/* HTTP */

/**
 * Answers the request locally. `grpc_status` is a uint32_t in the spec;
 * -1 (0xffffffff) means "not a gRPC response".
 */
PROXY_WASM_IMPORT(proxy_send_local_response)
proxy_status_t proxy_send_local_response(uint32_t status_code,
                                         const char *status_code_details_data,
                                         size_t status_code_details_size,
                                         const uint8_t *body_data, size_t body_size,
                                         const uint8_t *serialized_headers_data,
                                         size_t serialized_headers_size,
                                         int32_t grpc_status);

/* HTTP calls */

PROXY_WASM_IMPORT(proxy_http_call)
proxy_status_t proxy_http_call(const char *upstream_name_data, size_t upstream_name_size,
                               const uint8_t *serialized_headers_data,
                               size_t serialized_headers_size, const uint8_t *body_data,
                               size_t body_size, const uint8_t *serialized_trailers_data,
                               size_t serialized_trailers_size, uint32_t timeout,
                               uint32_t *return_call_id);

/* gRPC calls */

PROXY_WASM_IMPORT(proxy_grpc_call)
proxy_status_t proxy_grpc_call(const char *upstream_name_data, size_t upstream_name_size,
                               const char *service_name_data, size_t service_name_size,
                               const char *method_name_data, size_t method_name_size,
                               const uint8_t *serialized_initial_metadata_data,
                               size_t serialized_initial_metadata_size,
                               const uint8_t *message_data, size_t message_size,
                               uint32_t timeout, uint32_t *return_call_id);

PROXY_WASM_IMPORT(proxy_grpc_stream)
proxy_status_t proxy_grpc_stream(const char *upstream_name_data, size_t upstream_name_size,
                                 const char *service_name_data, size_t service_name_size,
                                 const char *method_name_data, size_t method_name_size,
                                 const uint8_t *serialized_initial_metadata_data,
                                 size_t serialized_initial_metadata_size,
                                 uint32_t *return_stream_id);

PROXY_WASM_IMPORT(proxy_grpc_send)
proxy_status_t proxy_grpc_send(uint32_t stream_id, const uint8_t *message_data,
                               size_t message_size, uint32_t end_stream);

PROXY_WASM_IMPORT(proxy_grpc_cancel)
proxy_status_t proxy_grpc_cancel(uint32_t call_or_stream_id);

PROXY_WASM_IMPORT(proxy_grpc_close)
proxy_status_t proxy_grpc_close(uint32_t call_or_stream_id);

/* Shared key-value store */

/** `cas` 0 sets unconditionally; otherwise it must match the value proxy_get_shared_data returned. */
PROXY_WASM_IMPORT(proxy_set_shared_data)
proxy_status_t proxy_set_shared_data(const char *key_data, size_t key_size,
                                     const uint8_t *value_data, size_t value_size,
                                     uint32_t cas);

PROXY_WASM_IMPORT(proxy_get_shared_data)
proxy_status_t proxy_get_shared_data(const char *key_data, size_t key_size,
                                     uint8_t **return_value_data, size_t *return_value_size,
                                     uint32_t *return_cas);

/* Shared queues */

PROXY_WASM_IMPORT(proxy_register_shared_queue)
proxy_status_t proxy_register_shared_queue(const char *name_data, size_t name_size,
                                           uint32_t *return_queue_id);

PROXY_WASM_IMPORT(proxy_resolve_shared_queue)
proxy_status_t proxy_resolve_shared_queue(const char *vm_id_data, size_t vm_id_size,
                                          const char *name_data, size_t name_size,
                                          uint32_t *return_queue_id);

PROXY_WASM_IMPORT(proxy_enqueue_shared_queue)
proxy_status_t proxy_enqueue_shared_queue(uint32_t queue_id, const uint8_t *value_data,
                                          size_t value_size);

PROXY_WASM_IMPORT(proxy_dequeue_shared_queue)
proxy_status_t proxy_dequeue_shared_queue(uint32_t queue_id, uint8_t **return_value_data,
                                          size_t *return_value_size);

/* Metrics */

PROXY_WASM_IMPORT(proxy_define_metric)
proxy_status_t proxy_define_metric(proxy_metric_type_t metric_type, const char *name_data,
                                   size_t name_size, uint32_t *return_metric_id);

PROXY_WASM_IMPORT(proxy_record_metric)
proxy_status_t proxy_record_metric(uint32_t metric_id, uint64_t value);

PROXY_WASM_IMPORT(proxy_increment_metric)
proxy_status_t proxy_increment_metric(uint32_t metric_id, int64_t delta);

PROXY_WASM_IMPORT(proxy_get_metric)
proxy_status_t proxy_get_metric(uint32_t metric_id, uint64_t *return_value);

/* Properties (path segments are joined with NUL bytes, e.g. "request\0path") */

PROXY_WASM_IMPORT(proxy_get_property)
proxy_status_t proxy_get_property(const uint8_t *path_data, size_t path_size,
                                  uint8_t **return_value_data, size_t *return_value_size);

PROXY_WASM_IMPORT(proxy_set_property)
proxy_status_t proxy_set_property(const uint8_t *path_data, size_t path_size,
                                  const uint8_t *value_data, size_t value_size);

/* Foreign function interface */

PROXY_WASM_IMPORT(proxy_call_foreign_function)
proxy_status_t proxy_call_foreign_function(const char *name_data, size_t name_size,
                                           const uint8_t *arguments_data,
                                           size_t arguments_size,
                                           uint8_t **return_results_data,
                                           size_t *return_results_size);

/*
 * ABI 0.1.0 only: not part of 0.2.1 (weft serves them for 0.1.0 modules).
 * Declared only on request, so that a 0.2.1 filter does not use them by
 * mistake: -DPROXY_WASM_DECLARE_ABI_0_1_0.
 */
#ifdef PROXY_WASM_DECLARE_ABI_0_1_0
PROXY_WASM_IMPORT(proxy_get_configuration)
proxy_status_t proxy_get_configuration(uint8_t **return_configuration_data,
                                       size_t *return_configuration_size);
PROXY_WASM_IMPORT(proxy_continue_request)
void proxy_continue_request(void);
PROXY_WASM_IMPORT(proxy_continue_response)
void proxy_continue_response(void);
PROXY_WASM_IMPORT(proxy_clear_route_cache)
void proxy_clear_route_cache(void);
#endif

/* ------------------------------------------------------------------------ */
/* Host functions: WASI ("wasi_snapshot_preview1"), as the spec lists them   */
/* ------------------------------------------------------------------------ */
/*
 * wasi-libc imports these itself where it needs them (clock_gettime,
 * getentropy, ...); the declarations here, prefixed proxy_wasi_, are for
 * calling them directly. Declaring the same import twice is harmless: the
 * linker keeps one.
 */

/** fd 1 (STDOUT) logs at INFO, fd 2 (STDERR) at ERROR. */
PROXY_WASM_WASI_IMPORT(fd_write)
proxy_wasi_errno_t proxy_wasi_fd_write(proxy_wasi_fd_id_t fd_id,
                                       const proxy_wasi_ciovec_t *iovec, size_t iovec_size,
                                       size_t *return_written_bytes);

/** `precision` is ignored by the spec. */
PROXY_WASM_WASI_IMPORT(clock_time_get)
proxy_wasi_errno_t proxy_wasi_clock_time_get(proxy_wasi_clock_id_t clock_id,
                                             uint64_t precision, uint64_t *return_time);

PROXY_WASM_WASI_IMPORT(random_get)
proxy_wasi_errno_t proxy_wasi_random_get(uint8_t *buffer, size_t buffer_size);

PROXY_WASM_WASI_IMPORT(environ_sizes_get)
proxy_wasi_errno_t proxy_wasi_environ_sizes_get(size_t *return_num_elements,
                                                size_t *return_buffer_size);

PROXY_WASM_WASI_IMPORT(environ_get)
proxy_wasi_errno_t proxy_wasi_environ_get(uint8_t **return_array, uint8_t *return_buffer);

PROXY_WASM_WASI_IMPORT(args_sizes_get)
proxy_wasi_errno_t proxy_wasi_args_sizes_get(size_t *return_argc,
                                             size_t *return_argv_buffer_size);

PROXY_WASM_WASI_IMPORT(args_get)
proxy_wasi_errno_t proxy_wasi_args_get(uint8_t **return_argv, uint8_t *return_argv_buffer);

PROXY_WASM_WASI_IMPORT(proc_exit)
void proxy_wasi_proc_exit(uint32_t exit_code);

/* ------------------------------------------------------------------------ */
/* Callbacks the module may export                                           */
/* ------------------------------------------------------------------------ */
/*
 * Every callback is optional. Each prototype already carries
 * export_name("<its name>"): define the function (with exactly this
 * signature, which the compiler checks) and it is exported; leave it out
 * and it is not. "bool" results are i32 0/1; "uint32_t end_of_stream"
 * parameters are 0 or 1.
 *
 * Not declared here: `_initialize` (exported by wasi-libc's reactor
 * startup code), `main`/`_start` (commands, not used by reactors) and the
 * deprecated `malloc` callback (the host calls it only when
 * proxy_on_memory_allocate is absent).
 */

/* Integration */

/** Marker advertising ABI 0.2.1; never called. Defined in proxy_wasm_helpers.c. */
PROXY_WASM_EXPORT(proxy_abi_version_0_2_1)
void proxy_abi_version_0_2_1(void);

/* Memory management */

/**
 * Allocates `memory_size` bytes for data the host hands to the module;
 * 0 means failure. proxy_wasm_helpers.c defines it with malloc (unless
 * built with -DPROXY_WASM_CUSTOM_ALLOCATOR).
 */
PROXY_WASM_EXPORT(proxy_on_memory_allocate)
uint8_t *proxy_on_memory_allocate(size_t memory_size);

/* Context lifecycle */

/** parent_context_id 0: a new plugin (root) context; otherwise a stream context of that plugin. */
PROXY_WASM_EXPORT(proxy_on_context_create)
void proxy_on_context_create(uint32_t context_id, uint32_t parent_context_id);

/** true: the host may finish the context; false: the module calls proxy_done() later. */
PROXY_WASM_EXPORT(proxy_on_done)
bool proxy_on_done(uint32_t context_id);

PROXY_WASM_EXPORT(proxy_on_log)
void proxy_on_log(uint32_t context_id);

PROXY_WASM_EXPORT(proxy_on_delete)
void proxy_on_delete(uint32_t context_id);

/* Configuration: read the data with proxy_get_buffer_bytes(VM_CONFIGURATION / PLUGIN_CONFIGURATION) */

PROXY_WASM_EXPORT(proxy_on_vm_start)
bool proxy_on_vm_start(uint32_t plugin_context_id, size_t vm_configuration_size);

PROXY_WASM_EXPORT(proxy_on_configure)
bool proxy_on_configure(uint32_t plugin_context_id, size_t plugin_configuration_size);

/* Timers */

PROXY_WASM_EXPORT(proxy_on_tick)
void proxy_on_tick(uint32_t plugin_context_id);

/* TCP streams */

PROXY_WASM_EXPORT(proxy_on_new_connection)
proxy_action_t proxy_on_new_connection(uint32_t stream_context_id);

PROXY_WASM_EXPORT(proxy_on_downstream_data)
proxy_action_t proxy_on_downstream_data(uint32_t stream_context_id, size_t data_size,
                                        uint32_t end_of_stream);

PROXY_WASM_EXPORT(proxy_on_downstream_connection_close)
void proxy_on_downstream_connection_close(uint32_t stream_context_id,
                                          proxy_peer_type_t peer_type);

PROXY_WASM_EXPORT(proxy_on_upstream_data)
proxy_action_t proxy_on_upstream_data(uint32_t stream_context_id, size_t data_size,
                                      uint32_t end_of_stream);

PROXY_WASM_EXPORT(proxy_on_upstream_connection_close)
void proxy_on_upstream_connection_close(uint32_t stream_context_id,
                                        proxy_peer_type_t peer_type);

/* HTTP */

PROXY_WASM_EXPORT(proxy_on_request_headers)
proxy_action_t proxy_on_request_headers(uint32_t stream_context_id, size_t num_headers,
                                        uint32_t end_of_stream);

PROXY_WASM_EXPORT(proxy_on_request_body)
proxy_action_t proxy_on_request_body(uint32_t stream_context_id, size_t body_size,
                                     uint32_t end_of_stream);

PROXY_WASM_EXPORT(proxy_on_request_trailers)
proxy_action_t proxy_on_request_trailers(uint32_t stream_context_id, size_t num_trailers);

PROXY_WASM_EXPORT(proxy_on_response_headers)
proxy_action_t proxy_on_response_headers(uint32_t stream_context_id, size_t num_headers,
                                         uint32_t end_of_stream);

PROXY_WASM_EXPORT(proxy_on_response_body)
proxy_action_t proxy_on_response_body(uint32_t stream_context_id, size_t body_size,
                                      uint32_t end_of_stream);

PROXY_WASM_EXPORT(proxy_on_response_trailers)
proxy_action_t proxy_on_response_trailers(uint32_t stream_context_id, size_t num_trailers);

/* HTTP calls: num_headers 0 means the call failed */

PROXY_WASM_EXPORT(proxy_on_http_call_response)
void proxy_on_http_call_response(uint32_t plugin_context_id, uint32_t call_id,
                                 size_t num_headers, size_t body_size, size_t num_trailers);

/* gRPC calls */

PROXY_WASM_EXPORT(proxy_on_grpc_receive_initial_metadata)
void proxy_on_grpc_receive_initial_metadata(uint32_t plugin_context_id, uint32_t call_id,
                                            size_t num_elements);

PROXY_WASM_EXPORT(proxy_on_grpc_receive)
void proxy_on_grpc_receive(uint32_t plugin_context_id, uint32_t call_id,
                           size_t message_size);

PROXY_WASM_EXPORT(proxy_on_grpc_receive_trailing_metadata)
void proxy_on_grpc_receive_trailing_metadata(uint32_t plugin_context_id, uint32_t call_id,
                                             size_t num_elements);

PROXY_WASM_EXPORT(proxy_on_grpc_close)
void proxy_on_grpc_close(uint32_t plugin_context_id, uint32_t call_id,
                         uint32_t status_code);

/* Shared queues */

PROXY_WASM_EXPORT(proxy_on_queue_ready)
void proxy_on_queue_ready(uint32_t plugin_context_id, uint32_t queue_id);

/* Foreign functions */

PROXY_WASM_EXPORT(proxy_on_foreign_function)
void proxy_on_foreign_function(uint32_t plugin_context_id, uint32_t function_id,
                               size_t arguments_size);

#ifdef __cplusplus
}
#endif

#endif /* PROXY_WASM_H */

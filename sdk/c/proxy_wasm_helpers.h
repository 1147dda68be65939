/*
 * proxy_wasm_helpers.h — a small convenience layer over proxy_wasm.h.
 *
 * Compile proxy_wasm_helpers.c into the module with your filter: it also
 * defines the two exports every module needs, `proxy_abi_version_0_2_1`
 * and `proxy_on_memory_allocate` (malloc).
 *
 * Conventions:
 *   - every function returns the host's proxy_status_t (PROXY_STATUS_OK on
 *     success), or PROXY_STATUS_INTERNAL_FAILURE when the module itself ran
 *     out of memory;
 *   - data coming back from the host is handed over in a pw_bytes_t: heap
 *     memory the caller owns (release it with pw_bytes_free), always
 *     followed by a NUL byte so that it can be used as a C string;
 *   - names and values going to the host are C strings, with `_n` variants
 *     taking explicit sizes (for data that is not NUL-terminated).
 */
#ifndef PROXY_WASM_HELPERS_H
#define PROXY_WASM_HELPERS_H

#include <stdarg.h>
#include <string.h>

#include "proxy_wasm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Owned bytes                                                               */
/* ------------------------------------------------------------------------ */

/**
 * Bytes the caller owns. `data` is NULL when there is nothing (size 0, or
 * the call failed); otherwise data[size] is a NUL byte that is not counted
 * in `size`.
 */
typedef struct {
    char *data;
    size_t size;
} pw_bytes_t;

/** Frees b->data and empties *b (safe on an empty or already freed value). */
void pw_bytes_free(pw_bytes_t *b);

/** A readable name for a status ("OK", "NOT_FOUND", ...), for log lines. */
const char *pw_status_name(proxy_status_t status);

/* ------------------------------------------------------------------------ */
/* Formatting                                                                */
/* ------------------------------------------------------------------------ */

/**
 * snprintf without libc's stdio. wasi-libc's printf family pulls in the
 * stdio streams and with them imports of WASI fd_close and fd_seek, which
 * proxy-wasm hosts need not serve; these need nothing from the host.
 *
 * Supports the C99 conversions d i u o x X c s p % f F e E g G, flags
 * - + space # 0, width and precision (also `*`), length modifiers hh h l ll
 * z j t L. Floating-point output is correct to about 17 significant
 * digits (enough for log lines; not for round-tripping). %n writes nothing.
 * Returns the length the full text needs, like snprintf.
 */
int pw_snprintf(char *buf, size_t size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
int pw_vsnprintf(char *buf, size_t size, const char *format, va_list args);

/* ------------------------------------------------------------------------ */
/* Logging                                                                   */
/* ------------------------------------------------------------------------ */

/**
 * printf-style logging through proxy_log; messages of any length are
 * logged whole. Formats with pw_vsnprintf (below), not libc's stdio.
 */
proxy_status_t pw_log(proxy_log_level_t level, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
proxy_status_t pw_vlog(proxy_log_level_t level, const char *format, va_list args);

#define pw_log_trace(...) pw_log(PROXY_LOG_TRACE, __VA_ARGS__)
#define pw_log_debug(...) pw_log(PROXY_LOG_DEBUG, __VA_ARGS__)
#define pw_log_info(...) pw_log(PROXY_LOG_INFO, __VA_ARGS__)
#define pw_log_warn(...) pw_log(PROXY_LOG_WARN, __VA_ARGS__)
#define pw_log_error(...) pw_log(PROXY_LOG_ERROR, __VA_ARGS__)
#define pw_log_critical(...) pw_log(PROXY_LOG_CRITICAL, __VA_ARGS__)

/**
 * Whether the host keeps lines at `level` (proxy_get_log_level); true when
 * the host does not say. Use it to skip building expensive messages.
 */
bool pw_log_enabled(proxy_log_level_t level);

/* ------------------------------------------------------------------------ */
/* Headers (any proxy_map_type_t: request/response headers and trailers,     */
/* call-out response headers, gRPC metadata)                                 */
/* ------------------------------------------------------------------------ */

/** One header (or trailer, or metadata element). */
typedef struct {
    const char *name;
    size_t name_size;
    const char *value;
    size_t value_size;
} pw_header_t;

/** A header from two string literals (sizes computed at compile time). */
#define PW_HEADER(name_literal, value_literal)                        \
    ((pw_header_t){(name_literal), sizeof(name_literal) - 1, (value_literal), \
                   sizeof(value_literal) - 1})

/** A header from two C strings. */
static inline pw_header_t pw_header(const char *name, const char *value) {
    pw_header_t h = {name, strlen(name), value, strlen(value)};
    return h;
}

/** A header from sized strings. */
static inline pw_header_t pw_header_n(const char *name, size_t name_size,
                                      const char *value, size_t value_size) {
    pw_header_t h = {name, name_size, value, value_size};
    return h;
}

/** The value of header `name`; PROXY_STATUS_NOT_FOUND (and an empty *out) when absent. */
proxy_status_t pw_get_header(proxy_map_type_t map, const char *name, pw_bytes_t *out);
proxy_status_t pw_get_header_n(proxy_map_type_t map, const char *name, size_t name_size,
                               pw_bytes_t *out);

/** Adds a header (keeps existing ones with the same name). */
proxy_status_t pw_add_header(proxy_map_type_t map, const char *name, const char *value);
proxy_status_t pw_add_header_n(proxy_map_type_t map, const char *name, size_t name_size,
                               const char *value, size_t value_size);

/** Sets a header, replacing every existing value (adds it when absent). */
proxy_status_t pw_replace_header(proxy_map_type_t map, const char *name,
                                 const char *value);
proxy_status_t pw_replace_header_n(proxy_map_type_t map, const char *name,
                                   size_t name_size, const char *value,
                                   size_t value_size);

/** Removes a header (OK when it was absent). */
proxy_status_t pw_remove_header(proxy_map_type_t map, const char *name);
proxy_status_t pw_remove_header_n(proxy_map_type_t map, const char *name,
                                  size_t name_size);

/**
 * A whole map, as pw_get_header_map returns it. Each name and value points
 * into `storage` and is NUL-terminated (the wire format ends each with a
 * NUL). Release with pw_header_map_free.
 */
typedef struct {
    pw_header_t *headers;
    size_t count;
    char *storage;
} pw_header_map_t;

proxy_status_t pw_get_header_map(proxy_map_type_t map, pw_header_map_t *out);
void pw_header_map_free(pw_header_map_t *map);

/** Replaces the whole map with `count` headers. */
proxy_status_t pw_set_header_map(proxy_map_type_t map, const pw_header_t *headers,
                                 size_t count);

/**
 * Serializes headers in the spec's map format, for proxy_set_header_map_pairs,
 * proxy_send_local_response, proxy_http_call and proxy_grpc_call:
 *
 *   u32 count, then count pairs (u32 name size, u32 value size), then for
 *   each header its name, a NUL, its value, a NUL (integers little-endian).
 *
 * *out_data is malloc'd (free() it); an empty list gives NULL and size 0,
 * the spec's empty map.
 */
proxy_status_t pw_serialize_header_map(const pw_header_t *headers, size_t count,
                                       char **out_data, size_t *out_size);

/**
 * Parses a serialized map in place (no copy): fills `headers` (malloc'd,
 * free() it; NULL when empty) with pointers into `data`, which must outlive
 * them. PROXY_STATUS_PARSE_FAILURE on malformed input.
 */
proxy_status_t pw_deserialize_header_map(const char *data, size_t size,
                                         pw_header_t **headers, size_t *count);

/* ------------------------------------------------------------------------ */
/* Local responses                                                           */
/* ------------------------------------------------------------------------ */

/** grpc_status for a plain HTTP response. */
#define PW_NO_GRPC_STATUS (-1)

/**
 * Answers the current request without the upstream. Return
 * PROXY_ACTION_PAUSE from the callback afterwards. `details` may be NULL
 * (empty); `body` may be NULL when body_size is 0.
 */
proxy_status_t pw_send_local_response(uint32_t status_code, const char *details,
                                      const char *body, size_t body_size,
                                      const pw_header_t *headers, size_t header_count,
                                      int32_t grpc_status);

/* ------------------------------------------------------------------------ */
/* Buffers and configuration                                                 */
/* ------------------------------------------------------------------------ */

/** Up to `max_size` bytes of `buffer` from `start` (SIZE_MAX: to the end). */
proxy_status_t pw_get_buffer(proxy_buffer_type_t buffer, size_t start, size_t max_size,
                             pw_bytes_t *out);

/** The whole plugin configuration (call it from proxy_on_configure). Empty when there is none. */
proxy_status_t pw_get_plugin_configuration(pw_bytes_t *out);

/** The whole VM configuration (call it from proxy_on_vm_start). */
proxy_status_t pw_get_vm_configuration(pw_bytes_t *out);

/* ------------------------------------------------------------------------ */
/* Metrics                                                                   */
/* ------------------------------------------------------------------------ */

/** Defines a metric (PROXY_METRIC_COUNTER, _GAUGE, _HISTOGRAM) named `name`; its id goes to *id. */
proxy_status_t pw_define_metric(proxy_metric_type_t type, const char *name, uint32_t *id);

/** Adds `delta` to a metric (a counter cannot go down). */
static inline proxy_status_t pw_increment_metric(uint32_t id, int64_t delta) {
    return proxy_increment_metric(id, delta);
}

/** Sets a gauge (or records a histogram value). */
static inline proxy_status_t pw_record_metric(uint32_t id, uint64_t value) {
    return proxy_record_metric(id, value);
}

static inline proxy_status_t pw_get_metric(uint32_t id, uint64_t *value) {
    return proxy_get_metric(id, value);
}

#ifdef __cplusplus
}
#endif

#endif /* PROXY_WASM_HELPERS_H */

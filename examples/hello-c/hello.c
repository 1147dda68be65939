/*
 * hello-c: the hello example filter, in C, on weft's C SDK (sdk/c).
 *
 * Plugin configuration (JSON): {"header": "x-hello", "value": "world"}.
 *   - every request is logged at INFO ("hello: <METHOD> <PATH>") and counted
 *     in the counter hello_requests_total;
 *   - GET /hello-local is answered by the filter itself: 200, "hello\n";
 *   - every response (and the local answer) gets the configured header.
 */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"
#include "proxy_wasm_helpers.h"

/* ------------------------------------------------------------------------ */
/* A small JSON reader: validates a whole document and picks out the string  */
/* members "header" and "value" of the top-level object.                     */
/* ------------------------------------------------------------------------ */

/* A string the parser decoded (heap, NUL-terminated; may contain NULs). */
typedef struct {
    char *data;
    size_t size;
    bool present; /* the member was there and was a string */
} json_string_t;

typedef struct {
    const char *p;
    const char *end;
    const char *error; /* why parsing stopped, for the log line */
} json_t;

#define JSON_MAX_DEPTH 64

static bool json_fail(json_t *j, const char *why) {
    if (j->error == NULL) j->error = why;
    return false;
}

static void json_ws(json_t *j) {
    while (j->p < j->end &&
           (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

/* A growable byte buffer for decoding strings. */
typedef struct {
    char *data;
    size_t size;
    size_t cap;
} sbuf_t;

static bool sbuf_put(sbuf_t *b, const char *bytes, size_t n) {
    if (b->size + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 32;
        while (cap < b->size + n + 1) cap *= 2;
        char *grown = (char *)realloc(b->data, cap);
        if (grown == NULL) return false;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->size, bytes, n);
    b->size += n;
    b->data[b->size] = '\0';
    return true;
}

static bool sbuf_put_utf8(sbuf_t *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    return sbuf_put(b, u, n);
}

static bool json_hex4(json_t *j, uint32_t *out) {
    if (j->end - j->p < 4) return json_fail(j, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *j->p++;
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return json_fail(j, "bad \\u escape");
    }
    *out = v;
    return true;
}

/*
 * Parses a string at j->p (which is at the opening quote). With `out`, the
 * decoded bytes go there (heap); without, the string is only validated.
 */
static bool json_string(json_t *j, sbuf_t *out) {
    j->p++; /* the opening quote */
    for (;;) {
        if (j->p >= j->end) return json_fail(j, "unterminated string");
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            j->p++;
            if (out && out->data == NULL && !sbuf_put(out, "", 0))
                return json_fail(j, "out of memory");
            return true;
        }
        if (c < 0x20) return json_fail(j, "control character in string");
        if (c != '\\') {
            /* A run of plain bytes. */
            const char *start = j->p;
            while (j->p < j->end && *j->p != '"' && *j->p != '\\' &&
                   (unsigned char)*j->p >= 0x20)
                j->p++;
            if (out && !sbuf_put(out, start, (size_t)(j->p - start)))
                return json_fail(j, "out of memory");
            continue;
        }
        j->p++; /* the backslash */
        if (j->p >= j->end) return json_fail(j, "unterminated string");
        char e = *j->p++;
        char single;
        switch (e) {
        case '"': single = '"'; break;
        case '\\': single = '\\'; break;
        case '/': single = '/'; break;
        case 'b': single = '\b'; break;
        case 'f': single = '\f'; break;
        case 'n': single = '\n'; break;
        case 'r': single = '\r'; break;
        case 't': single = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (!json_hex4(j, &cp)) return false;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                /* A high surrogate: a low one should follow. */
                uint32_t low;
                if (j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
                    const char *save = j->p;
                    j->p += 2;
                    if (!json_hex4(j, &low)) return false;
                    if (low >= 0xdc00 && low <= 0xdfff) {
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
                    } else {
                        j->p = save; /* not a pair: decode it on its own */
                        cp = 0xfffd;
                    }
                } else {
                    cp = 0xfffd;
                }
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                cp = 0xfffd; /* a lone low surrogate */
            }
            if (out && !sbuf_put_utf8(out, cp)) return json_fail(j, "out of memory");
            continue;
        }
        default:
            return json_fail(j, "bad escape in string");
        }
        if (out && !sbuf_put(out, &single, 1)) return json_fail(j, "out of memory");
    }
}

static bool json_literal(json_t *j, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
        return json_fail(j, "unexpected character");
    j->p += n;
    return true;
}

static bool is_digit(json_t *j) { return j->p < j->end && *j->p >= '0' && *j->p <= '9'; }

static bool json_number(json_t *j) {
    if (j->p < j->end && *j->p == '-') j->p++;
    if (!is_digit(j)) return json_fail(j, "bad number");
    if (*j->p == '0') j->p++;
    else
        while (is_digit(j)) j->p++;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (!is_digit(j)) return json_fail(j, "bad number");
        while (is_digit(j)) j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
        if (!is_digit(j)) return json_fail(j, "bad number");
        while (is_digit(j)) j->p++;
    }
    return true;
}

/* Validates (and skips) any value. */
static bool json_value(json_t *j, int depth) {
    if (depth > JSON_MAX_DEPTH) return json_fail(j, "nested too deeply");
    json_ws(j);
    if (j->p >= j->end) return json_fail(j, "unexpected end");
    switch (*j->p) {
    case '"': return json_string(j, NULL);
    case 't': return json_literal(j, "true");
    case 'f': return json_literal(j, "false");
    case 'n': return json_literal(j, "null");
    case '[':
        j->p++;
        json_ws(j);
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return true;
        }
        for (;;) {
            if (!json_value(j, depth + 1)) return false;
            json_ws(j);
            if (j->p >= j->end) return json_fail(j, "unterminated array");
            if (*j->p == ',') {
                j->p++;
                continue;
            }
            if (*j->p == ']') {
                j->p++;
                return true;
            }
            return json_fail(j, "expected ',' or ']'");
        }
    case '{':
        j->p++;
        json_ws(j);
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            return true;
        }
        for (;;) {
            json_ws(j);
            if (j->p >= j->end || *j->p != '"') return json_fail(j, "expected a member name");
            if (!json_string(j, NULL)) return false;
            json_ws(j);
            if (j->p >= j->end || *j->p != ':') return json_fail(j, "expected ':'");
            j->p++;
            if (!json_value(j, depth + 1)) return false;
            json_ws(j);
            if (j->p >= j->end) return json_fail(j, "unterminated object");
            if (*j->p == ',') {
                j->p++;
                continue;
            }
            if (*j->p == '}') {
                j->p++;
                return true;
            }
            return json_fail(j, "expected ',' or '}'");
        }
    default:
        if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9')) return json_number(j);
        return json_fail(j, "unexpected character");
    }
}

static void json_string_free(json_string_t *s) {
    free(s->data);
    s->data = NULL;
    s->size = 0;
    s->present = false;
}

/*
 * Parses `text` as a JSON object, filling `header` and `value` from its
 * members of those names (the last one wins; a non-string leaves the field
 * not present). Other members are validated and ignored.
 */
static bool parse_config(const char *text, size_t size, json_string_t *header,
                         json_string_t *value, const char **error) {
    json_t j = {text, text + size, NULL};
    json_ws(&j);
    if (j.p >= j.end || *j.p != '{') {
        *error = "not a JSON object";
        return false;
    }
    j.p++;
    json_ws(&j);
    bool empty = j.p < j.end && *j.p == '}';
    if (empty) j.p++;
    while (!empty) {
        json_ws(&j);
        if (j.p >= j.end || *j.p != '"') {
            json_fail(&j, "expected a member name");
            break;
        }
        sbuf_t key = {0};
        if (!json_string(&j, &key)) {
            free(key.data);
            break;
        }
        json_string_t *slot = NULL;
        if (key.size == 6 && memcmp(key.data, "header", 6) == 0) slot = header;
        else if (key.size == 5 && memcmp(key.data, "value", 5) == 0) slot = value;
        free(key.data);

        json_ws(&j);
        if (j.p >= j.end || *j.p != ':') {
            json_fail(&j, "expected ':'");
            break;
        }
        j.p++;
        json_ws(&j);
        if (slot != NULL && j.p < j.end && *j.p == '"') {
            sbuf_t s = {0};
            if (!json_string(&j, &s)) {
                free(s.data);
                break;
            }
            json_string_free(slot);
            slot->data = s.data;
            slot->size = s.size;
            slot->present = true;
        } else {
            if (slot != NULL) json_string_free(slot); /* present, but not a string */
            if (!json_value(&j, 1)) break;
        }
        json_ws(&j);
        if (j.p >= j.end) {
            json_fail(&j, "unterminated object");
            break;
        }
        if (*j.p == ',') {
            j.p++;
            continue;
        }
        if (*j.p == '}') {
            j.p++;
            break;
        }
        json_fail(&j, "expected ',' or '}'");
        break;
    }
    if (j.error == NULL) {
        json_ws(&j);
        if (j.p != j.end) json_fail(&j, "text after the object");
    }
    if (j.error != NULL) {
        *error = j.error;
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* The filter                                                                */
/* ------------------------------------------------------------------------ */

static json_string_t g_header; /* the configured header name ... */
static json_string_t g_value;  /* ... and value */
static bool g_configured;
static uint32_t g_requests_metric;
static bool g_metric_defined;

bool proxy_on_vm_start(uint32_t plugin_context_id, size_t vm_configuration_size) {
    (void)plugin_context_id;
    (void)vm_configuration_size;
    return true;
}

bool proxy_on_configure(uint32_t plugin_context_id, size_t plugin_configuration_size) {
    (void)plugin_context_id;
    (void)plugin_configuration_size;

    pw_bytes_t config = {0};
    proxy_status_t status = pw_get_plugin_configuration(&config);
    if (status != PROXY_STATUS_OK || config.size == 0) {
        pw_log_error("hello: invalid configuration: missing (expected "
                     "{\"header\": \"...\", \"value\": \"...\"})");
        pw_bytes_free(&config);
        return false;
    }

    json_string_t header = {0}, value = {0};
    const char *error = NULL;
    bool ok = parse_config(config.data, config.size, &header, &value, &error);
    pw_bytes_free(&config);
    if (ok && !(header.present && header.size > 0)) {
        ok = false;
        error = "\"header\" must be a non-empty string";
    } else if (ok && !value.present) {
        ok = false;
        error = "\"value\" must be a string";
    }
    if (!ok) {
        pw_log_error("hello: invalid configuration: %s", error);
        json_string_free(&header);
        json_string_free(&value);
        return false;
    }

    if (!g_metric_defined) {
        status = pw_define_metric(PROXY_METRIC_COUNTER, "hello_requests_total",
                                  &g_requests_metric);
        if (status != PROXY_STATUS_OK) {
            pw_log_error("hello: cannot define hello_requests_total: %s",
                         pw_status_name(status));
            json_string_free(&header);
            json_string_free(&value);
            return false;
        }
        g_metric_defined = true;
    }

    json_string_free(&g_header);
    json_string_free(&g_value);
    g_header = header;
    g_value = value;
    g_configured = true;
    return true;
}

void proxy_on_context_create(uint32_t context_id, uint32_t parent_context_id) {
    /* Nothing to keep per context: the configuration is global. */
    (void)context_id;
    (void)parent_context_id;
}

proxy_action_t proxy_on_request_headers(uint32_t context_id, size_t num_headers,
                                        uint32_t end_of_stream) {
    (void)context_id;
    (void)num_headers;
    (void)end_of_stream;

    if (g_metric_defined) pw_increment_metric(g_requests_metric, 1);

    pw_bytes_t method = {0}, path = {0};
    pw_get_header(PROXY_MAP_HTTP_REQUEST_HEADERS, ":method", &method);
    pw_get_header(PROXY_MAP_HTTP_REQUEST_HEADERS, ":path", &path);
    pw_log_info("hello: %.*s %.*s", (int)method.size, method.data ? method.data : "",
                (int)path.size, path.data ? path.data : "");

    bool local = method.size == 3 && memcmp(method.data, "GET", 3) == 0 &&
                 path.size == 12 && memcmp(path.data, "/hello-local", 12) == 0;
    pw_bytes_free(&method);
    pw_bytes_free(&path);
    if (!local || !g_configured) return PROXY_ACTION_CONTINUE;

    pw_header_t headers[] = {
        PW_HEADER("content-type", "text/plain"),
        pw_header_n(g_header.data, g_header.size, g_value.data, g_value.size),
    };
    proxy_status_t status = pw_send_local_response(
        200, "", "hello\n", 6, headers, sizeof headers / sizeof headers[0],
        PW_NO_GRPC_STATUS);
    if (status != PROXY_STATUS_OK) {
        pw_log_error("hello: cannot send the local response: %s", pw_status_name(status));
        return PROXY_ACTION_CONTINUE;
    }
    return PROXY_ACTION_PAUSE;
}

proxy_action_t proxy_on_response_headers(uint32_t context_id, size_t num_headers,
                                         uint32_t end_of_stream) {
    (void)context_id;
    (void)num_headers;
    (void)end_of_stream;
    if (g_configured)
        pw_add_header_n(PROXY_MAP_HTTP_RESPONSE_HEADERS, g_header.data, g_header.size,
                        g_value.data, g_value.size);
    return PROXY_ACTION_CONTINUE;
}

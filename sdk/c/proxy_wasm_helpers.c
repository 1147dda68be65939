/*
 * proxy_wasm_helpers.c — implementation of proxy_wasm_helpers.h, plus the
 * exports every proxy-wasm module needs:
 *
 *   proxy_abi_version_0_2_1   the ABI marker;
 *   proxy_on_memory_allocate  malloc (define PROXY_WASM_CUSTOM_ALLOCATOR
 *                             to supply your own).
 *
 * Uses only malloc and string functions from wasi-libc (its own printf
 * formatter, not libc's stdio), so the module imports nothing from WASI on
 * the helpers' account.
 */
#include "proxy_wasm_helpers.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Exports                                                                   */
/* ------------------------------------------------------------------------ */

void proxy_abi_version_0_2_1(void) {}

#ifndef PROXY_WASM_CUSTOM_ALLOCATOR
uint8_t *proxy_on_memory_allocate(size_t memory_size) {
    /* malloc(0) may return NULL, which the host would take for a failure. */
    return (uint8_t *)malloc(memory_size ? memory_size : 1);
}
#endif

/* ------------------------------------------------------------------------ */
/* Owned bytes                                                               */
/* ------------------------------------------------------------------------ */

void pw_bytes_free(pw_bytes_t *b) {
    if (b == NULL) return;
    free(b->data);
    b->data = NULL;
    b->size = 0;
}

/*
 * Takes ownership of memory the host allocated with proxy_on_memory_allocate
 * and appends the NUL terminator pw_bytes_t promises.
 */
static proxy_status_t adopt(uint8_t *data, size_t size, pw_bytes_t *out) {
    out->data = NULL;
    out->size = 0;
    if (data == NULL) return PROXY_STATUS_OK;
    char *grown = (char *)realloc(data, size + 1);
    if (grown == NULL) {
        free(data);
        return PROXY_STATUS_INTERNAL_FAILURE;
    }
    grown[size] = '\0';
    out->data = grown;
    out->size = size;
    return PROXY_STATUS_OK;
}

const char *pw_status_name(proxy_status_t status) {
    switch (status) {
    case PROXY_STATUS_OK: return "OK";
    case PROXY_STATUS_NOT_FOUND: return "NOT_FOUND";
    case PROXY_STATUS_BAD_ARGUMENT: return "BAD_ARGUMENT";
    case PROXY_STATUS_SERIALIZATION_FAILURE: return "SERIALIZATION_FAILURE";
    case PROXY_STATUS_PARSE_FAILURE: return "PARSE_FAILURE";
    case PROXY_STATUS_INVALID_MEMORY_ACCESS: return "INVALID_MEMORY_ACCESS";
    case PROXY_STATUS_EMPTY: return "EMPTY";
    case PROXY_STATUS_CAS_MISMATCH: return "CAS_MISMATCH";
    case PROXY_STATUS_INTERNAL_FAILURE: return "INTERNAL_FAILURE";
    case PROXY_STATUS_UNIMPLEMENTED: return "UNIMPLEMENTED";
    }
    return "UNKNOWN_STATUS";
}

/* ------------------------------------------------------------------------ */
/* Formatting                                                                */
/* ------------------------------------------------------------------------ */
/*
 * A self-contained printf formatter. wasi-libc's vsnprintf would do, but it
 * drags in the stdio streams (its vfprintf refers to stderr), and with them
 * imports of WASI fd_close and fd_seek, which proxy-wasm hosts need not
 * serve. This one needs nothing from the host.
 */

typedef struct {
    char *buf;
    size_t cap; /* bytes of buf usable for text (the NUL goes after) */
    size_t len; /* bytes produced so far, even past cap */
} fmt_out_t;

static void out_char(fmt_out_t *o, char c) {
    if (o->len < o->cap) o->buf[o->len] = c;
    o->len++;
}

static void out_bytes(fmt_out_t *o, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) out_char(o, s[i]);
}

static void out_repeat(fmt_out_t *o, char c, int n) {
    for (int i = 0; i < n; i++) out_char(o, c);
}

enum {
    F_MINUS = 1,  /* left-justify */
    F_PLUS = 2,   /* always a sign */
    F_SPACE = 4,  /* a space for positive numbers */
    F_HASH = 8,   /* alternate form */
    F_ZERO = 16,  /* pad with zeros */
    F_UPPER = 32, /* upper-case digits and exponents */
};

/*
 * Emits [prefix][zeros][digits] padded to `width`: the common tail of every
 * conversion.
 */
static void out_number(fmt_out_t *o, const char *prefix, size_t prefix_len,
                       const char *digits, size_t digits_len, int zeros, int width,
                       int flags) {
    int body = (int)(prefix_len + digits_len) + (zeros > 0 ? zeros : 0);
    int pad = width > body ? width - body : 0;
    if (!(flags & F_MINUS) && !(flags & F_ZERO)) out_repeat(o, ' ', pad);
    out_bytes(o, prefix, prefix_len);
    if (!(flags & F_MINUS) && (flags & F_ZERO)) out_repeat(o, '0', pad);
    out_repeat(o, '0', zeros);
    out_bytes(o, digits, digits_len);
    if (flags & F_MINUS) out_repeat(o, ' ', pad);
}

static void fmt_integer(fmt_out_t *o, uint64_t magnitude, bool negative, unsigned base,
                        int flags, int width, int precision) {
    const char *set = (flags & F_UPPER) ? "0123456789ABCDEF" : "0123456789abcdef";
    char digits[24];
    size_t n = 0;
    char *end = digits + sizeof digits;
    for (uint64_t v = magnitude; v != 0; v /= base) end[-(int)++n] = set[v % base];
    /* Precision 0 with the value 0 prints no digits. */
    if (magnitude == 0 && precision != 0) end[-(int)++n] = '0';

    char prefix[3];
    size_t prefix_len = 0;
    if (negative) prefix[prefix_len++] = '-';
    else if (flags & F_PLUS) prefix[prefix_len++] = '+';
    else if (flags & F_SPACE) prefix[prefix_len++] = ' ';
    int zeros = precision > (int)n ? precision - (int)n : 0;
    if ((flags & F_HASH) && magnitude != 0 && base == 16) {
        prefix[prefix_len++] = '0';
        prefix[prefix_len++] = (flags & F_UPPER) ? 'X' : 'x';
    }
    if ((flags & F_HASH) && base == 8 && zeros == 0 && (n == 0 || end[-(int)n] != '0'))
        zeros = 1;
    if (precision >= 0) flags &= ~F_ZERO; /* a precision disables 0-padding */
    out_number(o, prefix, prefix_len, end - n, n, zeros, width, flags);
}

/*
 * Floating point: digits are produced in long double (binary128 on wasm32,
 * software-emulated), so that the first 17 significant decimal digits of a
 * double come out right, exact ties rounding to even as in glibc.
 */

/* 10^e for e >= 0: exact up to 10^48, correctly rounded products beyond. */
static long double pow10l_of(int e) {
    long double r = 1.0L, base = 10.0L;
    for (unsigned u = (unsigned)e; u; u >>= 1) {
        if (u & 1) r *= base;
        base *= base;
    }
    return r;
}

/* v * 10^k: exact (or correctly rounded) for the |k| that matter. */
static long double scale10(double v, int k) {
    return k >= 0 ? (long double)v * pow10l_of(k) : (long double)v / pow10l_of(-k);
}

/* For v > 0 and finite: the e with 10^e <= v < 10^(e+1). */
static int float_exponent(double v) {
    long double x = v;
    int exp = 0;
    /* An estimate by repeated scaling... */
    while (x >= 1e16L) { x /= 1e16L; exp += 16; }
    while (x >= 10.0L) { x /= 10.0L; exp++; }
    while (x < 1e-16L) { x *= 1e16L; exp -= 16; }
    while (x < 1.0L) { x *= 10.0L; exp--; }
    /* ...checked against v itself (the scaling may have rounded across a
     * power of ten). */
    for (int i = 0; i < 4; i++) {
        long double m = scale10(v, -exp);
        if (m < 1.0L) exp--;
        else if (m >= 10.0L) exp++;
        else break;
    }
    return exp;
}

/*
 * The first `sig` (1..17) significant decimal digits of v (finite, >= 0),
 * rounded (ties to even): written to digits[], and the decimal exponent of
 * the first one returned (one more than float_exponent's when rounding
 * carried, as in 9.99 -> 10.0).
 */
static int float_digits(double v, int sig, char *digits) {
    if (v == 0.0) {
        memset(digits, '0', (size_t)sig);
        return 0;
    }
    int exp = float_exponent(v);
    long double scaled = scale10(v, sig - 1 - exp);
    uint64_t n = (uint64_t)scaled;
    long double frac = scaled - (long double)n;
    if (frac > 0.5L || (frac == 0.5L && (n & 1))) n++;
    if ((long double)n >= pow10l_of(sig)) {
        n /= 10;
        exp++;
    }
    for (int i = sig - 1; i >= 0; i--) {
        digits[i] = (char)('0' + n % 10);
        n /= 10;
    }
    return exp;
}

#define FLOAT_MAX_SIG 17

static void fmt_float(fmt_out_t *o, double v, char conv, int flags, int width,
                      int precision) {
    char prefix[1];
    size_t prefix_len = 0;
    bool negative = signbit(v);
    if (negative) v = -v;
    if (negative) prefix[prefix_len++] = '-';
    else if (flags & F_PLUS) prefix[prefix_len++] = '+';
    else if (flags & F_SPACE) prefix[prefix_len++] = ' ';
    bool upper = conv == 'F' || conv == 'E' || conv == 'G';

    if (isnan(v) || isinf(v)) {
        const char *text = isnan(v) ? (upper ? "NAN" : "nan") : (upper ? "INF" : "inf");
        out_number(o, prefix, prefix_len, text, 3, 0, width, flags & ~F_ZERO);
        return;
    }
    if (precision < 0) precision = 6;

    char lower = (char)(conv | 0x20);
    bool strip_zeros = false;
    if (lower == 'g') {
        /* %g: %e or %f by the exponent, with `precision` significant digits. */
        int p = precision == 0 ? 1 : precision;
        char d[FLOAT_MAX_SIG];
        int x = float_digits(v, p > FLOAT_MAX_SIG ? FLOAT_MAX_SIG : p, d);
        if (x < p && x >= -4) {
            lower = 'f';
            precision = p - 1 - x;
        } else {
            lower = 'e';
            precision = p - 1;
        }
        strip_zeros = !(flags & F_HASH);
    }

    /* Built in a local buffer: %f of the largest double with the largest
     * precision (300) is 309 + 1 + 300 bytes. */
    char text[720];
    size_t n = 0;
    char digits[FLOAT_MAX_SIG];
    if (lower == 'e') {
        if (precision > 300) precision = 300;
        int sig = precision + 1 > FLOAT_MAX_SIG ? FLOAT_MAX_SIG : precision + 1;
        int exp = float_digits(v, sig, digits);
        text[n++] = digits[0];
        if (precision > 0 || (flags & F_HASH)) text[n++] = '.';
        for (int i = 1; i <= precision; i++) text[n++] = i < sig ? digits[i] : '0';
        if (strip_zeros && memchr(text, '.', n)) {
            while (text[n - 1] == '0') n--;
            if (text[n - 1] == '.') n--;
        }
        text[n++] = upper ? 'E' : 'e';
        text[n++] = exp < 0 ? '-' : '+';
        int a = exp < 0 ? -exp : exp;
        if (a >= 100) text[n++] = (char)('0' + a / 100);
        text[n++] = (char)('0' + (a / 10) % 10);
        text[n++] = (char)('0' + a % 10);
    } else {
        /* %f: the digits down to 10^-precision. */
        if (precision > 300) precision = 300;
        int exp = v == 0.0 ? 0 : float_exponent(v);
        int sig = exp + 1 + precision; /* significant digits shown */
        if (v != 0.0 && sig <= 0) {
            /* v < 10^-precision: 0, or one unit of the last place when v is
             * over half of it (ties go to the even 0). */
            bool one = sig == 0 && scale10(v, precision + 1) > 5.0L;
            text[n++] = (one && precision == 0) ? '1' : '0';
            if (precision > 0 || (flags & F_HASH)) text[n++] = '.';
            for (int i = 1; i <= precision; i++)
                text[n++] = (one && i == precision) ? '1' : '0';
        } else {
            int got = sig > FLOAT_MAX_SIG ? FLOAT_MAX_SIG : sig;
            if (v == 0.0) got = 1;
            exp = float_digits(v, got, digits);
            for (int e = exp > 0 ? exp : 0; e >= -precision; e--) {
                int idx = exp - e; /* index of the 10^e digit in digits[] */
                text[n++] = (idx >= 0 && idx < got) ? digits[idx] : '0';
                if (e == 0 && (precision > 0 || (flags & F_HASH))) text[n++] = '.';
            }
        }
        if (strip_zeros && memchr(text, '.', n)) {
            while (text[n - 1] == '0') n--;
            if (text[n - 1] == '.') n--;
        }
    }
    out_number(o, prefix, prefix_len, text, n, 0, width, flags);
}

int pw_vsnprintf(char *buf, size_t size, const char *format, va_list args) {
    fmt_out_t o = {buf, size ? size - 1 : 0, 0};
    for (const char *f = format; *f; f++) {
        if (*f != '%') {
            out_char(&o, *f);
            continue;
        }
        const char *spec = f++;
        int flags = 0;
        for (;; f++) {
            if (*f == '-') flags |= F_MINUS;
            else if (*f == '+') flags |= F_PLUS;
            else if (*f == ' ') flags |= F_SPACE;
            else if (*f == '#') flags |= F_HASH;
            else if (*f == '0') flags |= F_ZERO;
            else break;
        }
        int width = 0;
        if (*f == '*') {
            width = va_arg(args, int);
            if (width < 0) {
                flags |= F_MINUS;
                width = -width;
            }
            f++;
        } else {
            while (*f >= '0' && *f <= '9') width = width * 10 + (*f++ - '0');
        }
        int precision = -1;
        if (*f == '.') {
            f++;
            precision = 0;
            if (*f == '*') {
                precision = va_arg(args, int);
                if (precision < 0) precision = -1;
                f++;
            } else {
                while (*f >= '0' && *f <= '9') precision = precision * 10 + (*f++ - '0');
            }
        }
        /* Length: 0 int, 1 hh, 2 h, 3 l, 4 ll, 5 z, 6 j, 7 t, 8 L. */
        int length = 0;
        switch (*f) {
        case 'h':
            length = (f[1] == 'h') ? 1 : 2;
            f += (f[1] == 'h') ? 2 : 1;
            break;
        case 'l':
            length = (f[1] == 'l') ? 4 : 3;
            f += (f[1] == 'l') ? 2 : 1;
            break;
        case 'z': length = 5; f++; break;
        case 'j': length = 6; f++; break;
        case 't': length = 7; f++; break;
        case 'L': length = 8; f++; break;
        default: break;
        }
        if (flags & F_MINUS) flags &= ~F_ZERO;
        if (flags & F_PLUS) flags &= ~F_SPACE;

        switch (*f) {
        case 'd':
        case 'i': {
            int64_t v;
            switch (length) {
            case 1: v = (signed char)va_arg(args, int); break;
            case 2: v = (short)va_arg(args, int); break;
            case 3: v = va_arg(args, long); break;
            case 4: v = va_arg(args, long long); break;
            case 5: v = (int64_t)va_arg(args, ptrdiff_t); break; /* signed size_t */
            case 6: v = va_arg(args, intmax_t); break;
            case 7: v = va_arg(args, ptrdiff_t); break;
            default: v = va_arg(args, int); break;
            }
            uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
            fmt_integer(&o, m, v < 0, 10, flags, width, precision);
            break;
        }
        case 'u':
        case 'x':
        case 'X':
        case 'o': {
            uint64_t v;
            switch (length) {
            case 1: v = (unsigned char)va_arg(args, unsigned); break;
            case 2: v = (unsigned short)va_arg(args, unsigned); break;
            case 3: v = va_arg(args, unsigned long); break;
            case 4: v = va_arg(args, unsigned long long); break;
            case 5: v = va_arg(args, size_t); break;
            case 6: v = va_arg(args, uintmax_t); break;
            case 7: v = (uint64_t)va_arg(args, ptrdiff_t); break;
            default: v = va_arg(args, unsigned); break;
            }
            unsigned base = *f == 'u' ? 10 : *f == 'o' ? 8 : 16;
            if (*f == 'X') flags |= F_UPPER;
            fmt_integer(&o, v, false, base, flags & ~(F_PLUS | F_SPACE), width, precision);
            break;
        }
        case 'p': {
            uintptr_t v = (uintptr_t)va_arg(args, void *);
            fmt_integer(&o, v, false, 16, (flags & ~(F_PLUS | F_SPACE)) | F_HASH, width,
                        precision);
            break;
        }
        case 'c': {
            char c = (char)va_arg(args, int);
            out_number(&o, "", 0, &c, 1, 0, width, flags & ~F_ZERO);
            break;
        }
        case 's': {
            const char *s = va_arg(args, const char *);
            if (s == NULL) s = "(null)";
            size_t n = 0;
            while ((precision < 0 || n < (size_t)precision) && s[n]) n++;
            out_number(&o, "", 0, s, n, 0, width, flags & ~F_ZERO);
            break;
        }
        case 'f':
        case 'F':
        case 'e':
        case 'E':
        case 'g':
        case 'G': {
            double v = length == 8 ? (double)va_arg(args, long double) : va_arg(args, double);
            fmt_float(&o, v, *f, flags, width, precision);
            break;
        }
        case '%':
            out_char(&o, '%');
            break;
        case 'n': /* not supported: consume the pointer, write nothing */
            (void)va_arg(args, void *);
            break;
        default:
            /* Unknown conversion (or the format ended): copy it as it is. */
            out_bytes(&o, spec, (size_t)(f - spec) + (*f ? 1 : 0));
            if (!*f) f--;
            break;
        }
    }
    if (size) buf[o.len < o.cap ? o.len : o.cap] = '\0';
    return o.len > INT32_MAX ? -1 : (int)o.len;
}

int pw_snprintf(char *buf, size_t size, const char *format, ...) {
    va_list args;
    va_start(args, format);
    int n = pw_vsnprintf(buf, size, format, args);
    va_end(args);
    return n;
}

/* ------------------------------------------------------------------------ */
/* Logging                                                                   */
/* ------------------------------------------------------------------------ */

proxy_status_t pw_vlog(proxy_log_level_t level, const char *format, va_list args) {
    char stack[512];
    va_list again;
    va_copy(again, args);
    int n = pw_vsnprintf(stack, sizeof stack, format, args);
    if (n < 0) {
        va_end(again);
        return PROXY_STATUS_BAD_ARGUMENT;
    }
    if ((size_t)n < sizeof stack) {
        va_end(again);
        return proxy_log(level, stack, (size_t)n);
    }
    /* Too long for the stack buffer: format again into the heap. */
    char *heap = (char *)malloc((size_t)n + 1);
    if (heap == NULL) {
        va_end(again);
        return proxy_log(level, stack, sizeof stack - 1); /* what fits */
    }
    pw_vsnprintf(heap, (size_t)n + 1, format, again);
    va_end(again);
    proxy_status_t status = proxy_log(level, heap, (size_t)n);
    free(heap);
    return status;
}

proxy_status_t pw_log(proxy_log_level_t level, const char *format, ...) {
    va_list args;
    va_start(args, format);
    proxy_status_t status = pw_vlog(level, format, args);
    va_end(args);
    return status;
}

bool pw_log_enabled(proxy_log_level_t level) {
    proxy_log_level_t host_level = PROXY_LOG_TRACE;
    if (proxy_get_log_level(&host_level) != PROXY_STATUS_OK) return true;
    return level >= host_level;
}

/* ------------------------------------------------------------------------ */
/* Headers                                                                   */
/* ------------------------------------------------------------------------ */

proxy_status_t pw_get_header_n(proxy_map_type_t map, const char *name, size_t name_size,
                               pw_bytes_t *out) {
    uint8_t *data = NULL;
    size_t size = 0;
    out->data = NULL;
    out->size = 0;
    proxy_status_t status = proxy_get_header_map_value(map, name, name_size, &data, &size);
    if (status != PROXY_STATUS_OK) {
        free(data);
        return status;
    }
    return adopt(data, size, out);
}

proxy_status_t pw_get_header(proxy_map_type_t map, const char *name, pw_bytes_t *out) {
    return pw_get_header_n(map, name, strlen(name), out);
}

proxy_status_t pw_add_header_n(proxy_map_type_t map, const char *name, size_t name_size,
                               const char *value, size_t value_size) {
    return proxy_add_header_map_value(map, name, name_size, (const uint8_t *)value,
                                      value_size);
}

proxy_status_t pw_add_header(proxy_map_type_t map, const char *name, const char *value) {
    return pw_add_header_n(map, name, strlen(name), value, strlen(value));
}

proxy_status_t pw_replace_header_n(proxy_map_type_t map, const char *name,
                                   size_t name_size, const char *value,
                                   size_t value_size) {
    return proxy_replace_header_map_value(map, name, name_size, (const uint8_t *)value,
                                          value_size);
}

proxy_status_t pw_replace_header(proxy_map_type_t map, const char *name,
                                 const char *value) {
    return pw_replace_header_n(map, name, strlen(name), value, strlen(value));
}

proxy_status_t pw_remove_header_n(proxy_map_type_t map, const char *name,
                                  size_t name_size) {
    return proxy_remove_header_map_value(map, name, name_size);
}

proxy_status_t pw_remove_header(proxy_map_type_t map, const char *name) {
    return pw_remove_header_n(map, name, strlen(name));
}

static void put_u32(char *p, uint32_t v) {
    p[0] = (char)(v & 0xff);
    p[1] = (char)((v >> 8) & 0xff);
    p[2] = (char)((v >> 16) & 0xff);
    p[3] = (char)((v >> 24) & 0xff);
}

static uint32_t get_u32(const char *p) {
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] | ((uint32_t)u[1] << 8) | ((uint32_t)u[2] << 16) |
           ((uint32_t)u[3] << 24);
}

proxy_status_t pw_serialize_header_map(const pw_header_t *headers, size_t count,
                                       char **out_data, size_t *out_size) {
    *out_data = NULL;
    *out_size = 0;
    if (count == 0) return PROXY_STATUS_OK;

    /* 4 (count) + 8 per header (two sizes) + the bytes and their NULs. */
    size_t total = 4;
    for (size_t i = 0; i < count; i++) {
        size_t entry = 8 + headers[i].name_size + 1 + headers[i].value_size + 1;
        if (entry < headers[i].name_size || total + entry < total)
            return PROXY_STATUS_BAD_ARGUMENT; /* overflow */
        total += entry;
    }
    char *buf = (char *)malloc(total);
    if (buf == NULL) return PROXY_STATUS_INTERNAL_FAILURE;

    put_u32(buf, (uint32_t)count);
    char *sizes = buf + 4;
    char *bytes = buf + 4 + 8 * count;
    for (size_t i = 0; i < count; i++) {
        const pw_header_t *h = &headers[i];
        put_u32(sizes + 8 * i, (uint32_t)h->name_size);
        put_u32(sizes + 8 * i + 4, (uint32_t)h->value_size);
        if (h->name_size) memcpy(bytes, h->name, h->name_size);
        bytes += h->name_size;
        *bytes++ = '\0';
        if (h->value_size) memcpy(bytes, h->value, h->value_size);
        bytes += h->value_size;
        *bytes++ = '\0';
    }
    *out_data = buf;
    *out_size = total;
    return PROXY_STATUS_OK;
}

proxy_status_t pw_deserialize_header_map(const char *data, size_t size,
                                         pw_header_t **headers, size_t *count) {
    *headers = NULL;
    *count = 0;
    /* The spec's two empty maps: no bytes, or a single NUL. */
    if (size == 0 || (size == 1 && data[0] == '\0')) return PROXY_STATUS_OK;
    if (size < 4) return PROXY_STATUS_PARSE_FAILURE;
    size_t n = get_u32(data);
    if (n == 0) return PROXY_STATUS_OK;
    if (n > (size - 4) / 8) return PROXY_STATUS_PARSE_FAILURE;

    pw_header_t *list = (pw_header_t *)malloc(n * sizeof *list);
    if (list == NULL) return PROXY_STATUS_INTERNAL_FAILURE;
    size_t at = 4 + 8 * n;
    for (size_t i = 0; i < n; i++) {
        size_t name_size = get_u32(data + 4 + 8 * i);
        size_t value_size = get_u32(data + 4 + 8 * i + 4);
        /* name, NUL, value, NUL must fit in what is left. */
        if (name_size >= size - at || data[at + name_size] != '\0') goto malformed;
        list[i].name = data + at;
        list[i].name_size = name_size;
        at += name_size + 1;
        if (value_size >= size - at || data[at + value_size] != '\0') goto malformed;
        list[i].value = data + at;
        list[i].value_size = value_size;
        at += value_size + 1;
    }
    *headers = list;
    *count = n;
    return PROXY_STATUS_OK;

malformed:
    free(list);
    return PROXY_STATUS_PARSE_FAILURE;
}

proxy_status_t pw_get_header_map(proxy_map_type_t map, pw_header_map_t *out) {
    out->headers = NULL;
    out->count = 0;
    out->storage = NULL;
    uint8_t *data = NULL;
    size_t size = 0;
    proxy_status_t status = proxy_get_header_map_pairs(map, &data, &size);
    if (status != PROXY_STATUS_OK) {
        free(data);
        return status;
    }
    status = pw_deserialize_header_map((const char *)data, size, &out->headers, &out->count);
    if (status != PROXY_STATUS_OK) {
        free(data);
        return status;
    }
    out->storage = (char *)data;
    return PROXY_STATUS_OK;
}

void pw_header_map_free(pw_header_map_t *map) {
    if (map == NULL) return;
    free(map->headers);
    free(map->storage);
    map->headers = NULL;
    map->storage = NULL;
    map->count = 0;
}

proxy_status_t pw_set_header_map(proxy_map_type_t map, const pw_header_t *headers,
                                 size_t count) {
    char *data;
    size_t size;
    proxy_status_t status = pw_serialize_header_map(headers, count, &data, &size);
    if (status != PROXY_STATUS_OK) return status;
    status = proxy_set_header_map_pairs(map, (const uint8_t *)data, size);
    free(data);
    return status;
}

/* ------------------------------------------------------------------------ */
/* Local responses                                                           */
/* ------------------------------------------------------------------------ */

proxy_status_t pw_send_local_response(uint32_t status_code, const char *details,
                                      const char *body, size_t body_size,
                                      const pw_header_t *headers, size_t header_count,
                                      int32_t grpc_status) {
    char *serialized;
    size_t serialized_size;
    proxy_status_t status =
        pw_serialize_header_map(headers, header_count, &serialized, &serialized_size);
    if (status != PROXY_STATUS_OK) return status;
    if (details == NULL) details = "";
    if (body == NULL) body_size = 0;
    status = proxy_send_local_response(status_code, details, strlen(details),
                                       (const uint8_t *)body, body_size,
                                       (const uint8_t *)serialized, serialized_size,
                                       grpc_status);
    free(serialized);
    return status;
}

/* ------------------------------------------------------------------------ */
/* Buffers and configuration                                                 */
/* ------------------------------------------------------------------------ */

proxy_status_t pw_get_buffer(proxy_buffer_type_t buffer, size_t start, size_t max_size,
                             pw_bytes_t *out) {
    out->data = NULL;
    out->size = 0;
    if (max_size == SIZE_MAX) {
        /* Ask for exactly what is there: not every host clamps max_size. */
        size_t length = 0;
        uint32_t ignored = 0;
        proxy_status_t status = proxy_get_buffer_status(buffer, &length, &ignored);
        if (status != PROXY_STATUS_OK) return status;
        if (start >= length) return PROXY_STATUS_OK;
        max_size = length - start;
    }
    if (max_size == 0) return PROXY_STATUS_OK;
    uint8_t *data = NULL;
    size_t size = 0;
    proxy_status_t status = proxy_get_buffer_bytes(buffer, start, max_size, &data, &size);
    if (status != PROXY_STATUS_OK) {
        free(data);
        return status;
    }
    return adopt(data, size, out);
}

proxy_status_t pw_get_plugin_configuration(pw_bytes_t *out) {
    return pw_get_buffer(PROXY_BUFFER_PLUGIN_CONFIGURATION, 0, SIZE_MAX, out);
}

proxy_status_t pw_get_vm_configuration(pw_bytes_t *out) {
    return pw_get_buffer(PROXY_BUFFER_VM_CONFIGURATION, 0, SIZE_MAX, out);
}

/* ------------------------------------------------------------------------ */
/* Metrics                                                                   */
/* ------------------------------------------------------------------------ */

proxy_status_t pw_define_metric(proxy_metric_type_t type, const char *name, uint32_t *id) {
    return proxy_define_metric(type, name, strlen(name), id);
}

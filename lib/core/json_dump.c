#include "core/json_dump.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

/* JSON_ENSURE_ASCII changes only what is not ASCII, which is jansson's
 * dump anyway */
#define FAST_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(31))
#define MAX_DEPTH 64 /* deeper (or a cycle): jansson's dump, which checks */

struct out {
        char *p, *end;
        int precision;
        struct json_writer *grow; /* a writer's buffer, grown as needed; else a fixed one */
};

/* Room for n more bytes: a fixed buffer has it or not, a writer's grows
 * (p and end move with it). */
static bool room(struct out *o, size_t n) {
        if ((size_t)(o->end - o->p) >= n)
                return true;
        struct json_writer *w = o->grow;
        if (!w || w->failed)
                return false;
        size_t len = (size_t)(o->p - w->buf);
        if (!buf_reserve(&w->buf, &w->cap, len, n, 1024)) {
                w->failed = true;
                return false;
        }
        o->p = w->buf + len;
        o->end = w->buf + w->cap;
        return true;
}

static bool put(struct out *o, const char *s, size_t n) {
        if (!room(o, n))
                return false;
        memcpy(o->p, s, n);
        o->p += n;
        return true;
}

/* True when none of the 8 bytes of x needs escaping or is outside ASCII:
 * no byte >= 0x80, < 0x20, '"' or '\\' (the "has zero / has less"
 * word tricks, exact for bytes below 0x80) */
static bool plain8(uint64_t x) {
        const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
        uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
        return ((x | ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b)) & high) == 0;
}

/* jansson's dump_string for ASCII: \" \\ \b \f \n \r \t, other controls
 * as \u00XX (upper-case hex), '/' and DEL as they are */
static bool put_string(struct out *o, const char *s, size_t n) {
        static const char hex[] = "0123456789ABCDEF";
        if (!put(o, "\"", 1))
                return false;
        for (size_t i = 0; i < n; i++) {
                /* the run of characters that print as they are, in one copy */
                size_t k = i;
                uint64_t x;
                while (n - k >= 8 && (memcpy(&x, s + k, 8), plain8(x)))
                        k += 8;
                while (k < n && (unsigned char)s[k] >= 0x20 && (unsigned char)s[k] < 0x80 && s[k] != '"' &&
                       s[k] != '\\')
                        k++;
                if (k > i && !put(o, s + i, k - i))
                        return false;
                if (k == n)
                        break;
                i = k;
                unsigned char c = (unsigned char)s[i];
                if (c >= 0x80)
                        return false; /* jansson checks its UTF-8 */
                char e[6] = {'\\', 0};
                size_t len = 2;
                switch (c) {
                case '"': e[1] = '"'; break;
                case '\\': e[1] = '\\'; break;
                case '\b': e[1] = 'b'; break;
                case '\f': e[1] = 'f'; break;
                case '\n': e[1] = 'n'; break;
                case '\r': e[1] = 'r'; break;
                case '\t': e[1] = 't'; break;
                default:
                        memcpy(e + 1, "u00", 3);
                        e[4] = hex[c >> 4];
                        e[5] = hex[c & 15];
                        len = 6;
                }
                if (!put(o, e, len))
                        return false;
        }
        return put(o, "\"", 1);
}

static bool put_integer(struct out *o, json_int_t v) {
        char b[24], *q = b + sizeof b;
        unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
        do
                *--q = (char)('0' + u % 10);
        while (u /= 10);
        if (v < 0)
                *--q = '-';
        return put(o, q, (size_t)(b + sizeof b - q));
}

/* jansson's jsonp_dtostr when "%.*g" gives digits, a sign and maybe a
 * point: ".0" added without one; exponents (which it rewrites) are its */
static bool put_real(struct out *o, double v) {
        /* a whole number of fewer digits than the precision: "%.*g" gives
         * its digits, and ".0" follows (-0 is "-0.0": snprintf's) */
        static const double digits_below[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12,
                                              1e13, 1e14, 1e15};
        double limit = digits_below[o->precision < 15 ? o->precision : 15];
        if (v > -limit && v < limit && v == (double)(long long)v && !(v == 0 && signbit(v)))
                return put_integer(o, (json_int_t)v) && put(o, ".0", 2);
        char b[64];
        int n = snprintf(b, sizeof b, "%.*g", o->precision, v);
        if (n <= 0 || (size_t)n >= sizeof b - 2 || strspn(b, "-0123456789.") != (size_t)n)
                return false;
        if (!memchr(b, '.', (size_t)n)) {
                memcpy(b + n, ".0", 2);
                n += 2;
        }
        return put(o, b, (size_t)n);
}

static bool put_value(struct out *o, const json_t *j, int depth) {
        if (depth > MAX_DEPTH)
                return false;
        switch (json_typeof(j)) {
        case JSON_OBJECT: {
                const char *key;
                size_t key_len;
                json_t *v;
                bool first = true;
                if (!put(o, "{", 1))
                        return false;
                json_object_keylen_foreach((json_t *)j, key, key_len, v) {
                        if ((!first && !put(o, ",", 1)) || !put_string(o, key, key_len) || !put(o, ":", 1) ||
                            !put_value(o, v, depth + 1))
                                return false;
                        first = false;
                }
                return put(o, "}", 1);
        }
        case JSON_ARRAY: {
                size_t i;
                json_t *v;
                if (!put(o, "[", 1))
                        return false;
                json_array_foreach((json_t *)j, i, v) {
                        if ((i && !put(o, ",", 1)) || !put_value(o, v, depth + 1))
                                return false;
                }
                return put(o, "]", 1);
        }
        case JSON_STRING:
                return put_string(o, json_string_value(j), json_string_length(j));
        case JSON_INTEGER:
                return put_integer(o, json_integer_value(j));
        case JSON_REAL:
                return put_real(o, json_real_value(j));
        case JSON_TRUE:
                return put(o, "true", 4);
        case JSON_FALSE:
                return put(o, "false", 5);
        case JSON_NULL:
                return put(o, "null", 4);
        }
        return false;
}

size_t json_dump_fast(const json_t *json, char *buffer, size_t size, size_t flags) {
        int precision = (int)((flags >> 11) & 0x1F);
        /* jansson dumps only an object or array at the top without JSON_ENCODE_ANY */
        if (json && (flags & ~(size_t)FAST_FLAGS) == 0 && (flags & JSON_COMPACT) && (json_is_object(json) || json_is_array(json))) {
                struct out o = {buffer, buffer + size, precision ? precision : 17, NULL};
                if (put_value(&o, json, 0))
                        return (size_t)(o.p - buffer);
        }
        return json_dumpb(json, buffer, size, flags);
}

size_t json_quote_fast(const char *s, size_t n, char *buffer, size_t size) {
        struct out o = {buffer, buffer + size, 17, NULL};
        return put_string(&o, s, n) ? (size_t)(o.p - buffer) : 0;
}

/* ---- json_writer: the fast path's writer over a growing buffer */

static struct out writer_out(struct json_writer *w) {
        return (struct out){w->buf ? w->buf + w->len : NULL, w->buf ? w->buf + w->cap : NULL, 17, w};
}

/* What the fast path does not write (a string outside ASCII, a real with
 * an exponent, a deep tree) is jansson's own compact dump of it (flags
 * added), measured and then written: the same bytes either way. Takes v. */
static void writer_jansson(struct json_writer *w, json_t *v, size_t flags) {
        flags |= JSON_COMPACT | JSON_ENCODE_ANY;
        size_t n = v ? json_dumpb(v, NULL, 0, flags) : 0;
        struct out o = writer_out(w);
        if (n == 0 || !room(&o, n) || json_dumpb(v, o.p, n, flags) != n)
                w->failed = true;
        else
                w->len = (size_t)(o.p + n - w->buf);
        json_decref(v);
}

void json_writer_raw(struct json_writer *w, const char *s, size_t n) {
        struct out o = writer_out(w);
        if (!w->failed && put(&o, s, n))
                w->len = (size_t)(o.p - w->buf);
}

void json_writer_string(struct json_writer *w, const char *s) {
        if (w->failed)
                return;
        size_t n = strlen(s);
        struct out o = writer_out(w);
        if (put_string(&o, s, n))
                w->len = (size_t)(o.p - w->buf);
        else if (!w->failed)
                /* json_string checks the UTF-8 (NULL, a failed writer, when invalid) */
                writer_jansson(w, json_stringn(s, n), 0);
}

void json_writer_integer(struct json_writer *w, json_int_t v) {
        struct out o = writer_out(w);
        if (!w->failed && put_integer(&o, v))
                w->len = (size_t)(o.p - w->buf);
}

void json_writer_real(struct json_writer *w, double v, int precision) {
        if (w->failed)
                return;
        struct out o = writer_out(w);
        if (precision > 0)
                o.precision = precision;
        if (put_real(&o, v))
                w->len = (size_t)(o.p - w->buf);
        else if (!w->failed)
                writer_jansson(w, json_real(v), precision > 0 ? JSON_REAL_PRECISION(precision) : 0);
}

void json_writer_value(struct json_writer *w, const json_t *v) {
        if (w->failed)
                return;
        struct out o = writer_out(w);
        if (v && put_value(&o, v, 0))
                w->len = (size_t)(o.p - w->buf);
        else if (!w->failed)
                /* what was written of it is overwritten */
                writer_jansson(w, json_incref((json_t *)v), 0);
}

char *json_writer_take(struct json_writer *w, size_t *ret_len) {
        json_writer_raw(w, "", 1); /* the NUL */
        if (w->failed) {
                json_writer_free(w);
                return NULL;
        }
        char *b = w->buf;
        if (ret_len)
                *ret_len = w->len - 1;
        *w = (struct json_writer){0};
        return b;
}

void json_writer_free(struct json_writer *w) {
        free(w->buf);
        *w = (struct json_writer){0};
}

/* ---- json_object_text_plain: a syntax check, nothing built */

#define PLAIN_MAX_DEPTH 64
#define PLAIN_MAX_INT_DIGITS 18 /* int64 holds them all: jansson's "too big integer" cannot happen */
#define PLAIN_MAX_REAL_DIGITS 40
#define PLAIN_MAX_EXP_DIGITS 2 /* |e| <= 99 with <= 40 digits: strtod cannot overflow */

#define COPY_MAX_KEYS 32 /* more members in one object: not copied (keys are checked for repeats) */

struct scan {
        const char *p, *end;
        /* json_writer_text: where the compact copy goes, and the scan
         * then refuses what jansson's read and dump would write otherwise
         * (an escape, a real, -0, a repeated key) */
        struct out *copy;
};

static bool emit(struct scan *s, const char *b, size_t n) {
        return !s->copy || put(s->copy, b, n);
}

static void skip_ws(struct scan *s) {
        while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
                s->p++;
}

/* at '"' */
static bool scan_string(struct scan *s) {
        s->p++;
        while (s->p < s->end) {
                unsigned char c = (unsigned char)*s->p++;
                if (c == '"')
                        return true;
                if (c < 0x20 || c >= 0x80)
                        return false; /* a control character (refused), or UTF-8 (not vouched for) */
                if (c != '\\')
                        continue;
                if (s->p >= s->end || s->copy)
                        return false;
                c = (unsigned char)*s->p++;
                if (c == 'u') {
                        char hex[5] = {0};
                        if (s->end - s->p < 4)
                                return false;
                        memcpy(hex, s->p, 4);
                        s->p += 4;
                        if (strspn(hex, "0123456789abcdefABCDEF") != 4)
                                return false;
                        unsigned long v = strtoul(hex, NULL, 16);
                        if (v == 0 || (v >= 0xd800 && v <= 0xdfff))
                                return false; /* NUL is refused; surrogates' pairing not checked here */
                } else if (!strchr("\"\\/bfnrt", c) || c == 0)
                        return false;
        }
        return false;
}

static size_t scan_digits(struct scan *s) {
        const char *b = s->p;
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
                s->p++;
        return (size_t)(s->p - b);
}

static bool scan_number(struct scan *s) {
        if (*s->p == '-')
                s->p++;
        if (s->p >= s->end)
                return false;
        size_t digits;
        if (*s->p == '0') {
                s->p++;
                digits = 1;
                if (s->p < s->end && *s->p >= '0' && *s->p <= '9')
                        return false; /* a leading zero */
        } else if ((digits = scan_digits(s)) == 0)
                return false;
        bool real = false;
        if (s->p < s->end && *s->p == '.') {
                s->p++;
                size_t frac = scan_digits(s);
                if (frac == 0)
                        return false;
                digits += frac;
                real = true;
        }
        if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
                s->p++;
                if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
                        s->p++;
                size_t e = scan_digits(s);
                if (e == 0 || e > PLAIN_MAX_EXP_DIGITS)
                        return false;
                real = true;
        }
        return digits <= (real ? PLAIN_MAX_REAL_DIGITS : PLAIN_MAX_INT_DIGITS);
}

static bool scan_literal(struct scan *s, const char *lit, size_t n) {
        if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
                return false;
        s->p += n;
        return true;
}

/* A repeated key (the copy's check: jansson keeps one member for it) */
static bool key_repeated(const char *const *keys, const size_t *lens, size_t n, const char *k, size_t len) {
        for (size_t i = 0; i < n; i++)
                if (lens[i] == len && !memcmp(keys[i], k, len))
                        return true;
        return false;
}

/* A scalar at s->p: scanned, and copied as it is unless jansson would
 * write it otherwise (a real, -0) */
static bool scan_scalar(struct scan *s) {
        const char *b = s->p;
        bool ok, number = false;
        switch (*s->p) {
        case '"': ok = scan_string(s); break;
        case 't': ok = scan_literal(s, "true", 4); break;
        case 'f': ok = scan_literal(s, "false", 5); break;
        case 'n': ok = scan_literal(s, "null", 4); break;
        default:
                ok = number = (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) && scan_number(s);
        }
        if (!ok || !s->copy)
                return ok;
        size_t n = (size_t)(s->p - b);
        if (number && (memchr(b, '.', n) || memchr(b, 'e', n) || memchr(b, 'E', n) || (n == 2 && b[0] == '-' && b[1] == '0')))
                return false;
        return emit(s, b, n);
}

static bool scan_value(struct scan *s, int depth) {
        skip_ws(s);
        if (s->p >= s->end)
                return false;
        if (*s->p != '{' && *s->p != '[')
                return scan_scalar(s);
        char close = *s->p == '{' ? '}' : ']';
        bool object = close == '}';
        const char *keys[COPY_MAX_KEYS];
        size_t lens[COPY_MAX_KEYS], nkeys = 0;
        if (depth >= PLAIN_MAX_DEPTH || !emit(s, s->p, 1))
                return false;
        s->p++;
        skip_ws(s);
        if (s->p < s->end && *s->p == close) {
                s->p++;
                return emit(s, &close, 1);
        }
        for (;;) {
                if (object) {
                        skip_ws(s);
                        const char *k = s->p;
                        if (s->p >= s->end || *s->p != '"' || !scan_scalar(s))
                                return false;
                        if (s->copy) {
                                size_t len = (size_t)(s->p - k);
                                if (nkeys == COPY_MAX_KEYS || key_repeated(keys, lens, nkeys, k, len))
                                        return false;
                                keys[nkeys] = k;
                                lens[nkeys++] = len;
                        }
                        skip_ws(s);
                        if (s->p >= s->end || *s->p++ != ':' || !emit(s, ":", 1))
                                return false;
                }
                if (!scan_value(s, depth + 1))
                        return false;
                skip_ws(s);
                if (s->p >= s->end)
                        return false;
                char c = *s->p++;
                if (c != close && c != ',')
                        return false;
                if (!emit(s, &c, 1))
                        return false;
                if (c == close)
                        return true;
        }
}

bool json_object_text_plain(const char *text, size_t n) {
        struct scan s = {text, text + n, NULL};
        skip_ws(&s);
        if (s.p >= s.end || *s.p != '{' || !scan_value(&s, 0))
                return false;
        skip_ws(&s);
        return s.p == s.end;
}

bool json_writer_text(struct json_writer *w, const char *text) {
        if (w->failed)
                return true;
        struct out o = writer_out(w);
        struct scan s = {text, text + strlen(text), &o};
        skip_ws(&s);
        if (s.p < s.end && (*s.p == '{' || *s.p == '[') && scan_value(&s, 0)) {
                skip_ws(&s);
                if (s.p == s.end) {
                        w->len = (size_t)(o.p - w->buf);
                        return true;
                }
        }
        if (w->failed)
                return true;
        /* not copied: what was, is overwritten by jansson's read and our dump */
        json_t *v = json_loads(text, 0, NULL);
        if (v)
                json_writer_value(w, v);
        json_decref(v);
        return v != NULL;
}

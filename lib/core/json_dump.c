#include "core/json_dump.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define FAST_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(31))
#define MAX_DEPTH 64 /* deeper (or a cycle): jansson's dump, which checks */

struct out {
        char *p, *end;
        int precision;
};

static bool put(struct out *o, const char *s, size_t n) {
        if ((size_t)(o->end - o->p) < n)
                return false;
        memcpy(o->p, s, n);
        o->p += n;
        return true;
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
                struct out o = {buffer, buffer + size, precision ? precision : 17};
                if (put_value(&o, json, 0))
                        return (size_t)(o.p - buffer);
        }
        return json_dumpb(json, buffer, size, flags);
}

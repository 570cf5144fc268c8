/* lib/core/json_dump: json_dump_fast writes what jansson's json_dumpb
 * writes, byte for byte, for the flags it speeds up and all others. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/json_dump.h"

static const size_t flag_sets[] = {
        JSON_COMPACT,
        JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10),
        JSON_COMPACT | JSON_REAL_PRECISION(3),
        JSON_COMPACT | JSON_SORT_KEYS, /* not the fast path: jansson's */
        JSON_INDENT(2),
        0,
};

/* both dumps of j with flags, into a buffer of size, are equal */
static void same_dump(const json_t *j, size_t flags, size_t size) {
        char *want = malloc(size + 1), *got = malloc(size + 1);
        assert_non_null(want);
        assert_non_null(got);
        size_t nw = json_dumpb(j, want, size, flags), ng = json_dump_fast(j, got, size, flags);
        assert_int_equal(ng, nw);
        if (nw > 0 && nw <= size) {
                want[nw] = got[ng] = '\0';
                assert_string_equal(got, want);
        }
        free(want);
        free(got);
}

static void same_all_ways(const json_t *j) {
        for (size_t f = 0; f < sizeof flag_sets / sizeof *flag_sets; f++) {
                same_dump(j, flag_sets[f], 65536);
                same_dump(j, flag_sets[f], 7); /* too small: both say how much it needs */
        }
}

static void test_edge_values(void **state) {
        (void)state;
        static const double reals[] = {0.0, -0.0, 0.1, -2.5, 1.0, 123456789.0, 1e15, 1e16, 0.30000000000000004, 1.25},
                            /* with an exponent: jansson's path */
                            exp_reals[] = {1e17, 1e300, 1e-7, 5e-324, DBL_MAX, 3.0e-5};
        json_t *a = json_array(), *x = json_array();
        for (size_t i = 0; i < sizeof reals / sizeof *reals; i++)
                json_array_append_new(a, json_real(reals[i]));
        for (size_t i = 0; i < sizeof exp_reals / sizeof *exp_reals; i++)
                json_array_append_new(x, json_real(exp_reals[i]));
        json_array_append_new(a, json_integer(LLONG_MIN));
        json_array_append_new(a, json_integer(LLONG_MAX));
        json_array_append_new(a, json_integer(0));
        json_array_append_new(a, json_integer(-7));
        json_array_append_new(a, json_string("quote \" backslash \\ slash / del \x7f tab \t nl \n cr \r bs \b ff \f "
                                             "bell \x07 esc \x1b us \x1f"));
        json_array_append_new(a, json_stringn("nul\0inside", 10));
        json_array_append_new(a, json_true());
        json_array_append_new(a, json_false());
        json_array_append_new(a, json_null());
        json_array_append_new(a, json_object());
        json_array_append_new(a, json_array());
        json_t *o = json_object();
        json_object_set_new(o, "z", json_integer(1));
        json_object_set_new(o, "a\"b", a);
        json_object_setn_new(o, "k\0ey", 4, json_string("v"));
        json_object_set_new(o, "", json_null());
        json_object_set_new(o, "m", json_object());
        same_all_ways(o);
        same_all_ways(a);
        /* and UTF-8 beyond ASCII */
        json_array_append_new(x, json_string("caf\xc3\xa9 \xe2\x80\xa8"));
        same_all_ways(x);
        json_decref(x);
        /* not an object or an array at the top: an error for both */
        json_t *s = json_string("top");
        char b[64];
        assert_int_equal(json_dump_fast(s, b, sizeof b, JSON_COMPACT), json_dumpb(s, b, sizeof b, JSON_COMPACT));
        assert_int_equal(json_dump_fast(NULL, b, sizeof b, JSON_COMPACT), 0);
        json_decref(s);
        /* a deep nest: jansson's dump past the fast path's depth */
        json_t *deep = json_array();
        for (int i = 0; i < 100; i++)
                deep = json_pack("[o]", deep);
        same_all_ways(deep);
        json_decref(deep);
        json_decref(o);
}

/* deterministic pseudo-random documents */
static uint64_t seed = 0x9e3779b97f4a7c15ULL;
static uint64_t next(void) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        return seed;
}

static json_t *random_string(void) {
        static const char chars[] = "abcXYZ019 _-./:\"\\\x01\x1f\x7f\t\n";
        char s[32];
        size_t n = next() % sizeof s;
        for (size_t i = 0; i < n; i++)
                s[i] = chars[next() % (sizeof chars - 1)];
        json_t *j = json_stringn(s, n);
        return j ? j : json_string("");
}

static json_t *random_value(int depth) {
        switch (next() % (depth > 3 ? 6 : 8)) {
        case 0: return random_string();
        case 1: return json_integer((json_int_t)next());
        case 2: {
                double d;
                uint64_t bits = next();
                memcpy(&d, &bits, sizeof d);
                if (!isfinite(d))
                        d = (double)(int64_t)next() / 1024.0;
                return json_real(d);
        }
        case 3: return json_real((double)(next() % 100000) / 100.0);
        case 4: return json_boolean(next() & 1);
        case 5: return json_null();
        case 6: {
                json_t *o = json_object();
                for (size_t i = next() % 6; i > 0; i--) {
                        json_t *k = random_string();
                        json_object_setn_new(o, json_string_value(k), json_string_length(k), random_value(depth + 1));
                        json_decref(k);
                }
                return o;
        }
        default: {
                json_t *a = json_array();
                for (size_t i = next() % 6; i > 0; i--)
                        json_array_append_new(a, random_value(depth + 1));
                return a;
        }
        }
}

static void test_random_documents(void **state) {
        (void)state;
        for (int i = 0; i < 3000; i++) {
                json_t *o = json_object();
                json_object_set_new(o, "v", random_value(0));
                same_all_ways(o);
                json_decref(o);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_edge_values),
                cmocka_unit_test(test_random_documents),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

/* lib/core/json_dump: json_dump_fast writes what jansson's json_dumpb
 * writes, byte for byte, for the flags it speeds up and all others;
 * json_quote_fast quotes a string as jansson does; json_object_text_plain
 * vouches only for text jansson reads as an object. */
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
        JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(9), /* the runner's run events */
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

/* jansson's verdict on text: one object (1), another value (2) or no JSON (0) */
static int jansson_reads(const char *text, size_t n) {
        json_error_t err;
        json_t *j = json_loadb(text, n, 0, &err);
        int r = !j ? 0 : json_is_object(j) ? 1 : 2;
        json_decref(j);
        return r;
}

static void test_quote(void **state) {
        (void)state;
        static const char *const strings[] = {"", "plain", "a\"b\\c/d", "\b\f\n\r\t", "\x01\x1f\x7f", "file_access"};
        for (size_t i = 0; i < sizeof strings / sizeof *strings; i++) {
                char want[64], got[64];
                json_t *j = json_string(strings[i]);
                size_t nw = json_dumpb(j, want, sizeof want, JSON_ENCODE_ANY | JSON_COMPACT);
                size_t ng = json_quote_fast(strings[i], strlen(strings[i]), got, sizeof got);
                json_decref(j);
                assert_int_equal(ng, nw);
                assert_memory_equal(got, want, nw);
                assert_int_equal(json_quote_fast(strings[i], strlen(strings[i]), got, nw - 1), 0); /* too small */
        }
        char buf[16];
        assert_int_equal(json_quote_fast("caf\xc3\xa9", 5, buf, sizeof buf), 0); /* UTF-8: jansson's path */
}

/* A character that needs escaping (or is not ASCII) at every place of a
 * string longer than the 8 bytes the fast path checks at once: the same
 * quoting as jansson's, ASCII or not. */
static void test_quote_long(void **state) {
        (void)state;
        static const char *const specials[] = {"\"", "\\", "\x01", "\x1f", "\x7f", "\n", "\xc3\xa9", "/", " ", "~"};
        for (size_t sp = 0; sp < sizeof specials / sizeof *specials; sp++)
                for (size_t at = 0; at <= 24; at++) {
                        char s[64], want[128], got[128];
                        memset(s, 'a', 24);
                        s[24] = '\0';
                        memcpy(s + at, specials[sp], strlen(specials[sp]));
                        if (at + strlen(specials[sp]) > 24)
                                s[at + strlen(specials[sp])] = '\0';
                        json_t *j = json_string(s);
                        assert_non_null(j);
                        size_t nw = json_dumpb(j, want, sizeof want, JSON_ENCODE_ANY | JSON_COMPACT);
                        json_decref(j);
                        size_t ng = json_quote_fast(s, strlen(s), got, sizeof got);
                        if ((unsigned char)specials[sp][0] >= 0x80) {
                                assert_int_equal(ng, 0); /* jansson's path */
                                continue;
                        }
                        assert_int_equal(ng, nw);
                        assert_memory_equal(got, want, nw);
                }
}

/* json_writer: what it writes piece by piece is jansson's compact dump of
 * the same values, whatever path each takes (ASCII strings and plain reals
 * its own, the rest jansson's), from an empty buffer that grows; a string
 * that is not UTF-8 fails the writer as json_string refuses it. */
static void test_writer(void **state) {
        (void)state;
        static const char *const strings[] = {"", "plain", "a\"b\\c/d\b\f\n\r\t\x01\x7f", "caf\xc3\xa9 \xe2\x98\x83",
                                              "0123456789abcdef0123456789abcdef0123456789"};
        static const double reals[] = {0.0, 0.1, -2.5, 1e17, 3.0e-5, 1e300};
        for (int i = 0; i < 500; i++) {
                json_t *a = json_array(), *v = random_value(0);
                struct json_writer w = {0};
                json_writer_lit(&w, "[");
                json_writer_value(&w, v);
                json_array_append_new(a, v);
                for (size_t k = 0; k < sizeof strings / sizeof *strings; k++) {
                        json_writer_lit(&w, ",");
                        json_writer_string(&w, strings[k]);
                        json_array_append_new(a, json_string(strings[k]));
                }
                json_writer_lit(&w, ",");
                json_writer_real(&w, reals[i % (sizeof reals / sizeof *reals)], 0);
                json_array_append_new(a, json_real(reals[i % (sizeof reals / sizeof *reals)]));
                json_writer_lit(&w, ",");
                json_writer_integer(&w, (json_int_t)next());
                json_array_append_new(a, json_integer((json_int_t)seed)); /* next() answered seed */
                json_writer_lit(&w, "]");
                size_t len = 0;
                char *got = json_writer_take(&w, &len), *want = json_dumps(a, JSON_COMPACT);
                assert_non_null(got);
                assert_int_equal(len, strlen(want));
                assert_string_equal(got, want);
                assert_null(w.buf);
                free(got);
                free(want);
                json_decref(a);
        }
        /* deeper than the fast path goes: jansson's dump of it */
        json_t *deep = json_array();
        for (int i = 0; i < 100; i++) {
                json_t *o = json_array();
                json_array_append_new(o, deep);
                deep = o;
        }
        struct json_writer w = {0};
        json_writer_value(&w, deep);
        char *got = json_writer_take(&w, NULL), *want = json_dumps(deep, JSON_COMPACT);
        assert_string_equal(got, want);
        free(got);
        free(want);
        json_decref(deep);
        /* a real's precision, as JSON_REAL_PRECISION gives it */
        static const double p10[] = {1.234, 0.5, 12.0, 1234.5678901234, 1e-7, 3e22, 0.001, 0.0, -0.0, -7.0, 9999999999.0, 1e10, -1e10, 1e15};
        for (size_t i = 0; i < sizeof p10 / sizeof *p10; i++) {
                json_t *r = json_real(p10[i]);
                want = json_dumps(r, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(10));
                json_writer_real(&w, p10[i], 10);
                got = json_writer_take(&w, NULL);
                assert_string_equal(got, want);
                free(got);
                free(want);
                json_decref(r);
        }
        /* not UTF-8: nothing */
        json_writer_lit(&w, "[");
        json_writer_string(&w, "bad \xff byte");
        json_writer_lit(&w, "]");
        assert_true(w.failed);
        assert_null(json_writer_take(&w, NULL));
        assert_false(w.failed);
        assert_null(w.buf);
}

/* writer_text(text) is what jansson's json_loads and compact dump make of
 * text (and false, nothing written, when json_loads refuses it) */
static void same_text(const char *text) {
        json_t *j = json_loads(text, 0, NULL);
        char *want = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        struct json_writer w = {0};
        json_writer_lit(&w, "<");
        bool ok = json_writer_text(&w, text);
        json_writer_lit(&w, ">");
        char *got = json_writer_take(&w, NULL);
        assert_non_null(got);
        assert_int_equal(ok, want != NULL);
        if (want) {
                char *framed = malloc(strlen(want) + 3);
                sprintf(framed, "<%s>", want);
                assert_string_equal(got, framed);
                free(framed);
        } else
                assert_string_equal(got, "<>");
        free(want);
        free(got);
}

/* json_writer_text: copied or read and dumped, the bytes jansson's read
 * and compact dump give, for PostgreSQL's json text (spaces around ':' and
 * ','), jsonb's, indented dumps, and what a copy must not keep as it is */
static void test_writer_text(void **state) {
        (void)state;
        static const char *const texts[] = {
                "{\"allow\" : 0, \"ask\" : 12, \"deny\" : -3}",
                "{\"pending\": 1, \"approved\": 0, \"x\": [1, 2, {\"y\": null}], \"t\": true, \"f\": false}",
                " {} ", "[]", "[ 1 , [ ] , { } ]", "{\"a\":-0}", "{\"a\":-5, \"b\": -10}", "{\"a\":1.50}", "{\"a\":1e2}",
                "{\"a\":1E2}", "{\"a\":\"x\\/y\"}", "{\"a\":\"\\u0041\\n\"}", "{\"a\":\"caf\xc3\xa9\"}", "{\"a\":1,\"a\":2}",
                "{\"a\":{\"b\":1},\"b\":{\"b\":2}}", "{\"a\":1}x", "{\"a\":1,}", "5", "\"s\"", "", "{", "{\"a\":01}",
                "{\"a\":123456789012345678}", "{\"a\":1234567890123456789012}", "{\"k\" : \"v / \x7f\"}",
        };
        for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
                same_text(texts[i]);
        /* more members than the copy checks for repeats */
        char many[1024] = "{";
        for (int i = 0; i < 40; i++)
                sprintf(many + strlen(many), "%s\"k%d\": %d", i ? ", " : "", i, i);
        strcat(many, "}");
        same_text(many);
        for (int i = 0; i < 1000; i++) {
                json_t *o = json_object();
                json_object_set_new(o, "v", random_value(0));
                for (size_t f = 0; f < sizeof flag_sets / sizeof *flag_sets; f++) {
                        char *t = json_dumps(o, flag_sets[f]);
                        same_text(t);
                        free(t);
                }
                json_decref(o);
        }
}

static void test_plain_object_text(void **state) {
        (void)state;
        static const struct {
                const char *text;
                bool plain;
        } cases[] = {
                {"{}", true},
                {" {\"a\" : [1, -0, 0.5, -1.5e+10, 2E-3, true, false, null, \"\", {}]}\n", true},
                {"{\"path\":\"/work/f1\",\"mode\":\"create\",\"pid\":4242,\"dir\":false}", true},
                {"{\"s\":\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t \\u00e9 \\u20AC\"}", true},
                {"{\"n\":123456789012345678}", true},
                /* not JSON */
                {"", false},
                {"{", false},
                {"{\"a\":1,}", false},
                {"{\"a\" 1}", false},
                {"{\"a\":01}", false},
                {"{\"a\":1.}", false},
                {"{\"a\":.5}", false},
                {"{\"a\":1e}", false},
                {"{\"a\":-}", false},
                {"{\"a\":tru}", false},
                {"{\"a\":\"x}", false},
                {"{\"a\":\"\\x\"}", false},
                {"{\"a\":\"\\u12g4\"}", false},
                {"{\"a\":\"tab\there\"}", false},
                {"{a:1}", false},
                {"{\"a\":1}}", false},
                {"{\"a\":1} x", false},
                {"{\"a\":[1,2}", false},
                {"{\"a\":[1 2]}", false},
                {"{\"a\":+1}", false},
                {"{\"a\":NaN}", false},
                {"{\"a\":1}\f", false},
                /* JSON, but not an object */
                {"[1]", false},
                {"\"s\"", false},
                {"1", false},
                /* not vouched for: jansson decides */
                {"{\"a\":\"\\u0000\"}", false},
                {"{\"a\":\"\\ud83d\\ude00\"}", false},
                {"{\"a\":\"caf\xc3\xa9\"}", false},
                {"{\"n\":1234567890123456789}", false},
                {"{\"r\":1e308}", false},
        };
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                const char *t = cases[i].text;
                bool got = json_object_text_plain(t, strlen(t));
                if (got != cases[i].plain)
                        fail_msg("json_object_text_plain(%s) is %d", t, got);
                if (got)
                        assert_int_equal(jansson_reads(t, strlen(t)), 1);
        }
        /* a NUL ends nothing: the length does */
        assert_false(json_object_text_plain("{}\0", 3));
        /* nesting: 64 deep is vouched for, 65 is left to jansson */
        char *t = malloc(1024);
        assert_non_null(t);
        for (int depth = 64; depth <= 65; depth++) {
                size_t n = 0;
                for (int k = 0; k < depth; k++)
                        n += (size_t)sprintf(t + n, k ? "\"a\":{" : "{");
                for (int k = 0; k < depth; k++)
                        t[n++] = '}';
                assert_int_equal(json_object_text_plain(t, n), depth <= 64);
                assert_int_equal(jansson_reads(t, n), 1);
        }
        free(t);
}

/* What the runner sends (a compact, ASCII-only dump) is vouched for, and
 * no mangled copy of it is vouched for unless jansson reads it as an
 * object: the fan-out never passes on what is not JSON. */
static void test_plain_mangled(void **state) {
        (void)state;
        static const char edits[] = "{}[]\":,\\ -+.0123456789eEutrfaln\x01\x80";
        size_t vouched = 0, mangled_vouched = 0;
        for (int i = 0; i < 3000; i++) {
                json_t *o = json_object();
                json_object_set_new(o, "v", random_value(0));
                json_object_set_new(o, "path", json_string("/work/a b/\"c\"\\d"));
                char *text = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(9));
                json_decref(o);
                assert_non_null(text);
                size_t n = strlen(text);
                bool plain = json_object_text_plain(text, n);
                if (plain) {
                        vouched++;
                        assert_int_equal(jansson_reads(text, n), 1);
                }
                for (int m = 0; m < 20 && n > 0; m++) {
                        char *c = malloc(n + 2);
                        assert_non_null(c);
                        memcpy(c, text, n + 1);
                        size_t at = next() % n, cn = n;
                        char e = edits[next() % (sizeof edits - 1)];
                        switch (next() % 3) {
                        case 0: c[at] = e; break;
                        case 1: memmove(c + at, c + at + 1, n - at); cn--; break;
                        default: memmove(c + at + 1, c + at, n - at + 1); c[at] = e; cn++;
                        }
                        if (json_object_text_plain(c, cn)) {
                                mangled_vouched++;
                                if (jansson_reads(c, cn) != 1)
                                        fail_msg("vouched for what jansson does not read as an object: %.*s", (int)cn, c);
                        }
                        free(c);
                }
                free(text);
        }
        /* most random documents are plain (their big integers are not) */
        assert_true(vouched > 300);
        assert_true(mangled_vouched > 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_edge_values),
                cmocka_unit_test(test_random_documents),
                cmocka_unit_test(test_quote),
                cmocka_unit_test(test_quote_long),
                cmocka_unit_test(test_writer),
                cmocka_unit_test(test_writer_text),
                cmocka_unit_test(test_plain_object_text),
                cmocka_unit_test(test_plain_mangled),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

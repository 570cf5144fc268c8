/* Egress host rules: syntax validation with a reason, and matching semantics
 * (wildcards, case, trailing dot, punycode only, default ports). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/macro.h"
#include "net/host_match.h"

static struct host_rule rule(const char *s) {
        struct host_rule r;
        struct err_detail e = {};
        int k = host_rule_parse(s, &r, &e);
        if (k != 0)
                fail_msg("rule \"%s\": %d %s", s, k, e.message);
        return r;
}

static void test_parse_valid(void **state) {
        struct host_rule r = rule("Api.Example.COM.");
        assert_string_equal(r.name, "api.example.com");
        assert_false(r.wildcard);
        assert_int_equal(r.port, 0);

        r = rule("*.example.com:8443");
        assert_string_equal(r.name, "example.com");
        assert_true(r.wildcard);
        assert_int_equal(r.port, 8443);

        r = rule("registry.npmjs.org:443");
        assert_int_equal(r.port, 443);
        r = rule("xn--bcher-kva.example");
        assert_string_equal(r.name, "xn--bcher-kva.example");
        r = rule("localhost:65535");
        assert_int_equal(r.port, 65535);
        r = rule("a");
        r = rule("_acme.example.com:1");
        assert_int_equal(r.port, 1);
        r = rule("*.github.io.");
        assert_string_equal(r.name, "github.io");
}

static void expect_bad(const char *s, const char *reason_part) {
        struct host_rule r;
        memset(&r, 0x5a, sizeof r);
        struct err_detail e = {};
        int k = host_rule_parse(s, &r, &e);
        if (k != -EINVAL)
                fail_msg("rule \"%s\": expected -EINVAL, got %d", s, k);
        assert_int_equal(e.errnum, -EINVAL);
        assert_string_equal(e.code, "host_rule");
        if (!strstr(e.message, reason_part))
                fail_msg("rule \"%s\": reason \"%s\" lacks \"%s\"", s, e.message, reason_part);
        assert_int_equal(r.port, 0x5a5a);               /* untouched on error */
}

static void test_parse_invalid(void **state) {
        char long_label[80], long_name[300];
        memset(long_label, 'a', sizeof long_label - 1);
        long_label[sizeof long_label - 1] = 0;
        memset(long_name, 'a', sizeof long_name - 1);
        long_name[sizeof long_name - 1] = 0;
        for (size_t i = 50; i < sizeof long_name - 1; i += 51)
                long_name[i] = '.';
        char almost_long[256];
        memcpy(almost_long, long_name, 254);   /* 254 chars, no trailing dot */
        almost_long[254] = 0;
        if (almost_long[253] == '.')
                almost_long[253] = 'b';

        expect_bad("", "empty");
        expect_bad(".", "empty host name");
        expect_bad(":443", "empty host name");
        expect_bad("bücher.example", "punycode");
        expect_bad("例え.jp", "punycode");
        expect_bad("exa mple.com", "invalid character in host name: byte 0x20");
        expect_bad("example.com/path", "invalid character in host name: '/'");
        expect_bad("user@example.com", "invalid character in host name: '@'");
        expect_bad("example.com\t", "byte 0x09");
        expect_bad("example..com", "empty label");
        expect_bad(".example.com", "empty label");
        expect_bad("-example.com", "starts or ends with '-'");
        expect_bad("example-.com", "starts or ends with '-'");
        expect_bad(long_label, "longer than 63");
        expect_bad(long_name, "longer than");
        expect_bad(almost_long, "longer than 253");
        expect_bad("*", "wildcard");
        expect_bad("*.", "empty host name");
        expect_bad("*.com", "too broad");
        expect_bad("*.com.", "too broad");
        expect_bad("a.*.example.com", "only allowed as the whole first label");
        expect_bad("*example.com", "only allowed as the whole first label");
        expect_bad("**.example.com", "only allowed as the whole first label");
        expect_bad("*.*.example.com", "only allowed as the whole first label");
        expect_bad("example.*", "only allowed as the whole first label");
        expect_bad("example.com:", "port");
        expect_bad("example.com:0", "port");
        expect_bad("example.com:65536", "port");
        expect_bad("example.com:99999", "port");
        expect_bad("example.com:0443", "port");
        expect_bad("example.com:-1", "port");
        expect_bad("example.com:+80", "port");
        expect_bad("example.com:80a", "port");
        expect_bad("example.com: 80", "port");
        expect_bad("127.0.0.1", "IP literal");
        expect_bad("127.1:443", "IP literal");
        expect_bad("2130706433", "IP literal");
        expect_bad("0x7f.1", "IP literal");
        expect_bad("169.254.169.254:80", "IP literal");
        expect_bad("[::1]:443", "IP literal");
        expect_bad("::1", "IP literal");
        expect_bad("fe80::1", "IP literal");
        expect_bad("*.0.0.1", "IP literal");
        expect_bad("example.123", "numeric label");
        expect_bad("256.1.1.1", "numeric label");

        struct host_rule r;
        assert_int_equal(host_rule_parse(NULL, &r, NULL), -EINVAL);
        assert_int_equal(host_rule_parse("bad host", &r, NULL), -EINVAL);     /* reterr optional */
}

static void test_exact_match(void **state) {
        struct host_rule r = rule("api.example.com");
        assert_true(host_rule_matches(&r, "api.example.com", 443));
        assert_true(host_rule_matches(&r, "api.example.com", 80));
        assert_true(host_rule_matches(&r, "API.Example.Com", 443));
        assert_true(host_rule_matches(&r, "api.example.com.", 443));
        assert_false(host_rule_matches(&r, "api.example.com..", 443));
        assert_false(host_rule_matches(&r, "api.example.com", 8443));
        assert_false(host_rule_matches(&r, "api.example.com", 22));
        assert_false(host_rule_matches(&r, "api.example.com", 0));
        assert_false(host_rule_matches(&r, "x.api.example.com", 443));
        assert_false(host_rule_matches(&r, "example.com", 443));
        assert_false(host_rule_matches(&r, "api.example.com.evil.net", 443));
        assert_false(host_rule_matches(&r, "apiexample.com", 443));
        assert_false(host_rule_matches(&r, "api.example.co", 443));
        assert_false(host_rule_matches(&r, "api.example.comm", 443));
        assert_false(host_rule_matches(&r, "api.example.com ", 443));
        assert_false(host_rule_matches(&r, "api.example.com\r\n", 443));
        assert_false(host_rule_matches(&r, "", 443));
        assert_false(host_rule_matches(&r, NULL, 443));
        assert_false(host_rule_matches(NULL, "api.example.com", 443));

        /* a Latin-1/UTF-8 lookalike never matches; punycode must match exactly */
        struct host_rule p = rule("xn--bcher-kva.example");
        assert_true(host_rule_matches(&p, "XN--BCHER-KVA.example", 443));
        assert_false(host_rule_matches(&p, "bücher.example", 443));
        struct host_rule k = rule("kelvin.example");
        assert_false(host_rule_matches(&k, "\xe2\x84\xaa" "elvin.example", 443));  /* U+212A KELVIN SIGN */
}

static void test_wildcard_match(void **state) {
        struct host_rule r = rule("*.Example.com");
        assert_true(host_rule_matches(&r, "a.example.com", 443));
        assert_true(host_rule_matches(&r, "a.b.c.example.com", 80));
        assert_true(host_rule_matches(&r, "WWW.EXAMPLE.COM.", 443));
        assert_false(host_rule_matches(&r, "example.com", 443));         /* not the apex */
        assert_false(host_rule_matches(&r, "example.com.", 443));
        assert_false(host_rule_matches(&r, ".example.com", 443));
        assert_false(host_rule_matches(&r, "aexample.com", 443));
        assert_false(host_rule_matches(&r, "a.example.com.evil.net", 443));
        assert_false(host_rule_matches(&r, "a.example.org", 443));
        assert_false(host_rule_matches(&r, "a..example.com", 443));
        assert_false(host_rule_matches(&r, "*.example.com", 443));
        assert_false(host_rule_matches(&r, "a.example.com", 8080));

        struct host_rule p = rule("*.example.com:8080");
        assert_true(host_rule_matches(&p, "a.example.com", 8080));
        assert_false(host_rule_matches(&p, "a.example.com", 443));
        assert_false(host_rule_matches(&p, "a.example.com", 80));
}

static void test_explicit_port(void **state) {
        struct host_rule r = rule("db.example.com:5432");
        assert_true(host_rule_matches(&r, "db.example.com", 5432));
        assert_false(host_rule_matches(&r, "db.example.com", 443));
        assert_false(host_rule_matches(&r, "db.example.com", 80));
        assert_false(host_rule_matches(&r, "db.example.com", 5432 + 65536));
        struct host_rule h = rule("example.com:443");
        assert_true(host_rule_matches(&h, "example.com", 443));
        assert_false(host_rule_matches(&h, "example.com", 80));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_valid),
                cmocka_unit_test(test_parse_invalid),
                cmocka_unit_test(test_exact_match),
                cmocka_unit_test(test_wildcard_match),
                cmocka_unit_test(test_explicit_port),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

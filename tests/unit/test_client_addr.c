/* Client addresses behind trusted proxies (lib/http/client_addr.h): a
 * forwarded address is believed only as far as trusted proxies appended it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "http/client_addr.h"

static struct addr_allow trusted[8];
static size_t ntrusted;

static void trust(const char *list) {
        struct err_detail e = {0};
        assert_int_equal(http_trusted_proxies_parse(list, trusted, 8, &ntrusted, &e), 0);
}

static void expect_client(const char *peer, const char *xff, const char *want) {
        char out[HTTP_CLIENT_ADDR_MAX];
        http_client_addr(peer, xff, trusted, ntrusted, out, sizeof out);
        if (strcmp(out, want))
                fail_msg("peer %s, X-Forwarded-For \"%s\": got %s, want %s", peer, xff ? xff : "(none)", out, want);
}

static void test_parse(void **state) {
        (void)state;
        struct err_detail e = {0};
        size_t n = 99;
        assert_int_equal(http_trusted_proxies_parse("", trusted, 8, &n, &e), 0);
        assert_int_equal(n, 0);
        assert_int_equal(http_trusted_proxies_parse(" 10.0.0.0/8 , ::1,192.0.2.7", trusted, 8, &n, &e), 0);
        assert_int_equal(n, 3);
        const char *bads[] = {"10.0.0.1/8", "0.0.0.0/0", "localhost", "127.1", "10.0.0.0/33", "1.2.3.4, x"};
        for (size_t i = 0; i < sizeof bads / sizeof *bads; i++) {
                memset(&e, 0, sizeof e);
                assert_int_equal(http_trusted_proxies_parse(bads[i], trusted, 8, &n, &e), -EINVAL);
        }
        assert_int_equal(http_trusted_proxies_parse("1.1.1.1,2.2.2.2,3.3.3.3", trusted, 2, &n, &e), -E2BIG);
}

/* Nobody trusted: the header is the client's own text and is ignored. */
static void test_untrusted_peer_ignores_header(void **state) {
        (void)state;
        trust("");
        expect_client("127.0.0.1", "203.0.113.9", "127.0.0.1");
        trust("127.0.0.2/32");
        expect_client("127.0.0.1", "203.0.113.9", "127.0.0.1");
        expect_client("::ffff:127.0.0.1", "203.0.113.9", "127.0.0.1");
        expect_client("", "203.0.113.9", "");
}

/* A trusted peer: the rightmost hop it did not itself trust. */
static void test_rightmost_untrusted_hop(void **state) {
        (void)state;
        trust("127.0.0.0/8, 10.0.0.0/8");
        expect_client("127.0.0.1", "203.0.113.9", "203.0.113.9");
        expect_client("127.0.0.1", NULL, "127.0.0.1");
        expect_client("127.0.0.1", "", "127.0.0.1");
        /* a client prepending a fake address does not move its own */
        expect_client("127.0.0.1", "198.51.100.1, 203.0.113.9", "203.0.113.9");
        expect_client("127.0.0.1", "198.51.100.1, 203.0.113.9, 10.1.2.3", "203.0.113.9");
        expect_client("::ffff:127.0.0.1", " 203.0.113.9 ", "203.0.113.9");
        expect_client("127.0.0.1", "2001:db8::1", "2001:db8::1");
        expect_client("127.0.0.1", "::ffff:203.0.113.9", "203.0.113.9");
        /* every hop trusted: the leftmost is the client */
        expect_client("127.0.0.1", "10.0.0.5, 10.0.0.6", "10.0.0.5");
        /* garbage stops the walk at the proxy that appended it */
        expect_client("127.0.0.1", "203.0.113.9, not-an-ip", "127.0.0.1");
        expect_client("127.0.0.1", "not-an-ip, 10.0.0.7", "10.0.0.7");
        expect_client("127.0.0.1", "203.0.113.9:1234", "127.0.0.1");
}

static void test_overlong_header_keeps_right_end(void **state) {
        (void)state;
        trust("127.0.0.0/8");
        char xff[8192];
        memset(xff, 'x', sizeof xff);
        strcpy(xff + sizeof xff - 32, ", 203.0.113.77");
        expect_client("127.0.0.1", xff, "203.0.113.77");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse),
                cmocka_unit_test(test_untrusted_peer_ignores_header),
                cmocka_unit_test(test_rightmost_untrusted_hop),
                cmocka_unit_test(test_overlong_header_keeps_right_end),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

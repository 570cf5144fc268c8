/* Egress address policy: every spelling of an internal address is recognised as
 * a literal, classified by what it really points at, and refused unless a
 * definition explicitly allows it. Pure unit tests: no socket is ever opened. */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/macro.h"
#include "net/addr_policy.h"

/* Parses host as a literal, asserts it is one, returns its class. */
static enum addr_class class_of(const char *host) {
        struct sockaddr_storage ss;
        int r = addr_parse_host_literal(host, &ss);
        if (r != 1)
                fail_msg("\"%s\": expected a literal, got %d", host, r);
        return addr_classify(&ss);
}

static void expect_class(const char *host, enum addr_class want) {
        enum addr_class got = class_of(host);
        if (got != want)
                fail_msg("\"%s\": class %s, expected %s", host, addr_class_name(got), addr_class_name(want));
}

/* Asserts host is refused with no allows, and still refused when allows only
 * cover unrelated ranges. */
static void expect_refused(const char *host) {
        struct sockaddr_storage ss;
        struct addr_allow unrelated[2];
        assert_int_equal(addr_parse_host_literal(host, &ss), 1);
        assert_int_equal(addr_allow_parse("203.0.113.128/25", &unrelated[0]), 0);
        assert_int_equal(addr_allow_parse("2001:db8:ffff::/48", &unrelated[1]), 0);
        if (addr_policy_permits(&ss, NULL, 0) || addr_policy_permits(&ss, unrelated, 2))
                fail_msg("\"%s\" permitted without an explicit allow", host);
}

static void expect_v4(const char *host, const char *dotted) {
        struct sockaddr_storage ss;
        char buf[INET_ADDRSTRLEN];
        int r = addr_parse_host_literal(host, &ss);
        if (r != 1)
                fail_msg("\"%s\": expected a literal, got %d", host, r);
        assert_int_equal(ss.ss_family, AF_INET);
        assert_non_null(inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf, sizeof buf));
        if (strcmp(buf, dotted) != 0)
                fail_msg("\"%s\" parsed as %s, expected %s", host, buf, dotted);
}

static const char *const loopback_spellings[] = {
        "127.0.0.1", "127.0.0.1.", "127.1", "127.0.1", "127.255.255.254", "127.1.2.3",
        "2130706433", "017700000001", "0177.0.0.1", "0177.0.0.01", "0177.00.00.01",
        "0x7f.0.0.1", "0x7F.0.0.1", "0x7f.1", "0x7f000001", "0X7F000001", "0x7f.0.0.0x1",
        "0x00000000007f000001", "127.0x0.0.1", "0177.1", "0x7f.0x0.1",
        "::1", "[::1]", "0:0:0:0:0:0:0:1", "[0000:0000:0000:0000:0000:0000:0000:0001]",
        "::ffff:127.0.0.1", "[::ffff:127.0.0.1]", "::ffff:7f00:1", "[::ffff:7f00:0001]",
        "::127.0.0.1", "::7f00:1", "64:ff9b::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::",
        "[2002:7f00:0001:0:0:0:0:1]",
};

static const char *const unspecified_spellings[] = {
        "0.0.0.0", "0", "0x0", "00", "0.0", "0.1.2.3", "::", "[::]", "0:0:0:0:0:0:0:0", "::ffff:0.0.0.0",
};

static const char *const private_spellings[] = {
        "10.0.0.1", "10.255.255.255", "012.0.0.1", "0xa.0.0.1", "167772161", "10.1", "0x0a000001",
        "172.16.0.1", "172.31.255.255", "0xac.0x10.0.1", "172.16.1",
        "192.168.0.1", "192.168.1.1", "0xc0.0xa8.1.1", "3232235777", "0300.0250.1.1", "192.168.257",
        "::ffff:10.0.0.1", "::ffff:a00:1", "::10.0.0.1", "64:ff9b::10.0.0.1", "2002:c0a8:101::1",
        "::ffff:192.168.1.1", "[::ffff:c0a8:101]",
        "fc00::1", "fd12:3456:789a::1", "[fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]", "fec0::1",
        "64:ff9b:1::a00:1",
};

static const char *const link_local_spellings[] = {
        "169.254.0.1", "169.254.1.1", "169.254.255.255", "0xa9.0xfe.1.1", "2851995905", "169.254.257",
        "::ffff:169.254.1.1", "64:ff9b::a9fe:101", "2002:a9fe:101::", "fe80::1", "[fe80::1]",
        "febf:ffff::1",
};

static const char *const metadata_spellings[] = {
        "169.254.169.254", "169.254.169.254.", "2852039166", "0xa9fea9fe", "0251.0376.0251.0376",
        "0xa9.0xfe.0xa9.0xfe", "169.254.43518", "169.16689662", "0251.0376.0xa9.254",
        "::ffff:169.254.169.254", "[::ffff:a9fe:a9fe]", "::169.254.169.254", "::a9fe:a9fe",
        "64:ff9b::169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::", "2002:a9fe:a9fe:1234::1",
        "fd00:ec2::254", "[fd00:ec2::254]", "fd00:0ec2:0:0:0:0:0:0254", "fd00:ec2::23", "fd20:ce::254",
        "169.254.170.2", "169.254.170.23", "169.254.0.23", "100.100.100.200", "0x646464c8",
        "192.0.0.192", "168.63.129.16", "::ffff:100.100.100.200", "::ffff:168.63.129.16",
};

static void test_loopback(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(loopback_spellings); i++) {
                expect_class(loopback_spellings[i], ADDR_CLASS_LOOPBACK);
                expect_refused(loopback_spellings[i]);
        }
        expect_v4("2130706433", "127.0.0.1");
        expect_v4("017700000001", "127.0.0.1");
        expect_v4("0x7f.1", "127.0.0.1");
        expect_v4("127.0.1", "127.0.0.1");
        expect_v4("127.1", "127.0.0.1");
        expect_v4("127.0.0.1.", "127.0.0.1");
}

static void test_unspecified(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(unspecified_spellings); i++) {
                expect_class(unspecified_spellings[i], ADDR_CLASS_UNSPECIFIED);
                expect_refused(unspecified_spellings[i]);
        }
}

static void test_private(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(private_spellings); i++) {
                expect_class(private_spellings[i], ADDR_CLASS_PRIVATE);
                expect_refused(private_spellings[i]);
        }
        expect_v4("192.168.257", "192.168.1.1");
        expect_v4("0300.0250.1.1", "192.168.1.1");
        /* range edges */
        expect_class("172.15.255.255", ADDR_CLASS_PUBLIC);
        expect_class("172.32.0.0", ADDR_CLASS_PUBLIC);
        expect_class("11.0.0.0", ADDR_CLASS_PUBLIC);
        expect_class("9.255.255.255", ADDR_CLASS_PUBLIC);
        expect_class("192.167.255.255", ADDR_CLASS_PUBLIC);
        expect_class("192.169.0.0", ADDR_CLASS_PUBLIC);
        expect_class("fbff:ffff::1", ADDR_CLASS_RESERVED);     /* outside 2000::/3, refused anyway */
}

static void test_link_local(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(link_local_spellings); i++) {
                expect_class(link_local_spellings[i], ADDR_CLASS_LINK_LOCAL);
                expect_refused(link_local_spellings[i]);
        }
        expect_class("169.253.255.255", ADDR_CLASS_PUBLIC);
        expect_class("169.255.0.0", ADDR_CLASS_PUBLIC);
}

static void test_metadata(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(metadata_spellings); i++) {
                expect_class(metadata_spellings[i], ADDR_CLASS_METADATA);
                expect_refused(metadata_spellings[i]);
        }
        expect_v4("169.254.43518", "169.254.169.254");
        expect_v4("169.16689662", "169.254.169.254");
        expect_v4("0251.0376.0xa9.254", "169.254.169.254");
        /* a neighbour of the metadata address is only link-local */
        expect_class("169.254.169.253", ADDR_CLASS_LINK_LOCAL);
}

static void test_other_classes(void **state) {
        expect_class("100.64.0.1", ADDR_CLASS_CARRIER_NAT);
        expect_class("100.127.255.255", ADDR_CLASS_CARRIER_NAT);
        expect_class("100.63.255.255", ADDR_CLASS_PUBLIC);
        expect_class("100.128.0.0", ADDR_CLASS_PUBLIC);
        expect_class("224.0.0.1", ADDR_CLASS_MULTICAST);
        expect_class("239.255.255.255", ADDR_CLASS_MULTICAST);
        expect_class("ff02::1", ADDR_CLASS_MULTICAST);
        expect_class("::ffff:224.0.0.251", ADDR_CLASS_MULTICAST);
        expect_class("255.255.255.255", ADDR_CLASS_BROADCAST);
        expect_class("4294967295", ADDR_CLASS_BROADCAST);
        expect_class("0xffffffff", ADDR_CLASS_BROADCAST);
        const char *reserved[] = {
                "192.0.2.1", "198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9", "240.0.0.1",
                "254.255.255.255", "192.0.0.8", "192.88.99.1", "2001:db8::1", "2001::1", "2001:2::1",
                "3fff::1", "100::1", "::ffff:0:0:1", "5f00::1", "::ffff:192.0.2.1",
        };
        for (size_t i = 0; i < ELEMENTSOF(reserved); i++) {
                expect_class(reserved[i], ADDR_CLASS_RESERVED);
                expect_refused(reserved[i]);
        }
        const char *multi[] = { "224.0.0.1", "ff02::1", "255.255.255.255", "100.64.0.1" };
        for (size_t i = 0; i < ELEMENTSOF(multi); i++)
                expect_refused(multi[i]);
}

static void test_public(void **state) {
        const char *pub[] = {
                "8.8.8.8", "1.1.1.1", "134744072", "0x08080808", "010.010.010.010",
                "2606:4700:4700::1111", "[2a00:1450:4001:81b::200e]", "::ffff:8.8.8.8",
                "64:ff9b::8.8.8.8", "2002:808:808::1",
        };
        for (size_t i = 0; i < ELEMENTSOF(pub); i++) {
                struct sockaddr_storage ss;
                expect_class(pub[i], ADDR_CLASS_PUBLIC);
                assert_int_equal(addr_parse_host_literal(pub[i], &ss), 1);
                assert_true(addr_policy_permits(&ss, NULL, 0));
        }
        expect_v4("010.010.010.010", "8.8.8.8");
}

static void test_names(void **state) {
        const char *names[] = {
                "example.com", "example.com.", "localhost", "metadata.google.internal", "a",
                "xn--bcher-kva.example", "1.2.3.com", "0x7f.example", "127.0.0.1.nip.io",
                "under_score.example", "a-b.c-d", "0x7g",
        };
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                struct sockaddr_storage ss;
                int r = addr_parse_host_literal(names[i], &ss);
                if (r != 0)
                        fail_msg("\"%s\": expected a name (0), got %d", names[i], r);
        }
}

static void test_malformed(void **state) {
        char long_name[300];
        memset(long_name, 'a', sizeof long_name - 1);
        long_name[sizeof long_name - 1] = 0;
        for (size_t i = 63; i < sizeof long_name - 1; i += 64)
                long_name[i] = '.';
        char long_label[80];
        memset(long_label, 'b', sizeof long_label - 1);
        long_label[sizeof long_label - 1] = 0;

        const char *bad[] = {
                "", ".", "..", "1.2.3.4.5", "256.1.1.1", "1.256.1.1", "1.2.256.1", "1.2.3.256",
                "0x1ffffffff", "4294967296", "99999999999999999999", "1.16777216", "1.2.65536",
                "0400.0.0.1", "08.0.0.1", "09", "0x7g.0.0.1", "1..2.3", ".1.2.3", "1.2.3.4..",
                "127.0.0.1 ", " 127.0.0.1", "127.0.0.1\tjunk", "127.0.0.1 junk", "127.0.0.1%00",
                "127.0.0.1/8", "user@127.0.0.1", "exa mple.com", "ex%41mple.com", "bücher.example",
                "example..com", "example.123", "-1.0.0.0", "+1.0.0.0", "1.2.3.-4", "a-.example", "-a.example",
                "fe80::1%eth0", "[fe80::1%25eth0]", "[fe80::1%eth0]", "::1%lo", "[::1", "::1]",
                "[[::1]]", "[]", "[127.0.0.1]", ":::1", "1::2::3", "::ffff:0x7f.0.0.1",
                "::ffff:127.1", "12345::1", "::1.", "[::1].", "127.0.0.1:80", "example.com:443",
                long_name, long_label,
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                struct sockaddr_storage ss;
                int r = addr_parse_host_literal(bad[i], &ss);
                if (r != -EINVAL)
                        fail_msg("\"%s\": expected -EINVAL, got %d", bad[i], r);
        }
        struct sockaddr_storage ss;
        assert_int_equal(addr_parse_host_literal(NULL, &ss), -EINVAL);
}

/* Whatever glibc's inet_aton() (hence getaddrinfo()) reads as an IPv4 address,
 * the parser must read as the same address, or the proxy could be talked into
 * calling a literal a name. Random strings over the numeric alphabet. */
static void test_agrees_with_inet_aton(void **state) {
        static const char alphabet[] = "0123456789xX.abcdefABCDEF00000..";
        unsigned seed = 12345;
        size_t accepted = 0;
        for (int iter = 0; iter < 300000; iter++) {
                char s[24];
                seed = seed * 1103515245u + 12345u;
                size_t len = 1 + (seed >> 16) % 20;
                for (size_t i = 0; i < len; i++) {
                        seed = seed * 1103515245u + 12345u;
                        s[i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
                }
                s[len] = 0;

                struct in_addr ia;
                struct sockaddr_storage ss;
                if (inet_aton(s, &ia) != 1)
                        continue;
                accepted++;
                int r = addr_parse_host_literal(s, &ss);
                if (r != 1 || ss.ss_family != AF_INET ||
                    ((struct sockaddr_in *)&ss)->sin_addr.s_addr != ia.s_addr)
                        fail_msg("\"%s\": inet_aton reads %08x, parser returned %d", s, ntohl(ia.s_addr), r);
        }
        assert_true(accepted > 1000);
}

static void test_allow_parse(void **state) {
        struct addr_allow a;
        assert_int_equal(addr_allow_parse("10.0.0.0/8", &a), 0);
        assert_int_equal(a.family, AF_INET);
        assert_int_equal(a.prefix_len, 8);
        assert_int_equal(addr_allow_parse("10.1.2.3", &a), 0);
        assert_int_equal(a.prefix_len, 32);
        assert_int_equal(addr_allow_parse("fd00::/8", &a), 0);
        assert_int_equal(a.family, AF_INET6);
        assert_int_equal(a.prefix_len, 8);
        assert_int_equal(addr_allow_parse("[::1]", &a), 0);
        assert_int_equal(a.prefix_len, 128);
        assert_int_equal(addr_allow_parse("[fd00::]/16", &a), 0);
        assert_int_equal(addr_allow_parse("169.254.169.254/32", &a), 0);

        const char *bad[] = {
                "", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/0", "0.0.0.0/0", "::/0", "::/129",
                "10.1.2.3/8", "fd00::1/8", "10.0.0.0/8/8", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/ 8",
                "10.1", "0x7f.0.0.1", "2130706433", "010.0.0.0/8", "example.com", "fe80::1%eth0",
                "[10.0.0.1]", "[::1", "10.0.0.0/0008", "10.0.0.0 /8", "10.0.0.0/8 ",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                memset(&a, 0x5a, sizeof a);
                int r = addr_allow_parse(bad[i], &a);
                if (r != -EINVAL)
                        fail_msg("allow \"%s\": expected -EINVAL, got %d", bad[i], r);
                assert_int_equal(a.family, 0x5a5a5a5a);       /* unchanged on error */
        }
        assert_int_equal(addr_allow_parse(NULL, &a), -EINVAL);
}

static bool permitted(const char *host, const char *const *rules, size_t n) {
        struct addr_allow allows[8];
        struct sockaddr_storage ss;
        assert_true(n <= ELEMENTSOF(allows));
        for (size_t i = 0; i < n; i++)
                assert_int_equal(addr_allow_parse(rules[i], &allows[i]), 0);
        assert_int_equal(addr_parse_host_literal(host, &ss), 1);
        return addr_policy_permits(&ss, allows, n);
}

static void test_allow_exact_range(void **state) {
        const char *r1[] = { "10.1.0.0/16" };
        assert_true(permitted("10.1.0.0", r1, 1));
        assert_true(permitted("10.1.255.255", r1, 1));
        assert_true(permitted("10.1.2.3", r1, 1));
        assert_true(permitted("012.1.2.3", r1, 1));            /* any spelling of an allowed address */
        assert_true(permitted("::ffff:10.1.2.3", r1, 1));      /* and its embeddings */
        assert_true(permitted("64:ff9b::a01:203", r1, 1));
        assert_false(permitted("10.0.255.255", r1, 1));
        assert_false(permitted("10.2.0.0", r1, 1));
        assert_false(permitted("127.0.0.1", r1, 1));
        assert_false(permitted("169.254.169.254", r1, 1));

        const char *r2[] = { "172.16.0.0/12" };
        assert_true(permitted("172.31.255.255", r2, 1));
        assert_true(permitted("172.32.0.0", r2, 1));           /* public anyway */
        assert_true(permitted("172.32.0.0", NULL, 0));

        const char *r3[] = { "10.0.0.5" };
        assert_true(permitted("10.0.0.5", r3, 1));
        assert_false(permitted("10.0.0.4", r3, 1));
        assert_false(permitted("10.0.0.6", r3, 1));

        const char *r4[] = { "10.0.0.0/31" };                   /* odd prefix: partial byte */
        assert_true(permitted("10.0.0.1", r4, 1));
        assert_false(permitted("10.0.0.2", r4, 1));

        const char *r5[] = { "fd00:ec2::/32" };
        assert_true(permitted("fd00:ec2::254", r5, 1));
        assert_false(permitted("fd00:ec3::1", r5, 1));
        assert_false(permitted("169.254.169.254", r5, 1));

        const char *r6[] = { "169.254.169.254" };               /* metadata only by name */
        assert_true(permitted("169.254.169.254", r6, 1));
        assert_true(permitted("0xa9fea9fe", r6, 1));
        assert_false(permitted("169.254.169.253", r6, 1));

        const char *r7[] = { "127.0.0.1", "::1" };
        assert_true(permitted("127.1", r7, 2));
        assert_true(permitted("[::1]", r7, 2));
        assert_true(permitted("::ffff:127.0.0.1", r7, 2));
        assert_false(permitted("127.0.0.2", r7, 2));

        const char *r8[] = { "fe80::/10" };
        assert_true(permitted("febf::1", r8, 1));
        assert_false(permitted("fec0::1", r8, 1));
}

static void test_non_ip_family(void **state) {
        struct sockaddr_storage ss = { .ss_family = AF_UNIX };
        struct addr_allow all;
        assert_int_equal(addr_allow_parse("0.0.0.0/1", &all), 0);
        assert_int_equal(addr_classify(&ss), ADDR_CLASS_RESERVED);
        assert_false(addr_policy_permits(&ss, &all, 1));
        assert_false(addr_policy_permits(NULL, &all, 1));
        assert_string_equal(addr_class_name(ADDR_CLASS_LINK_LOCAL), "link_local");
        assert_string_equal(addr_class_name(ADDR_CLASS_METADATA), "metadata");
        assert_string_equal(addr_class_name(_ADDR_CLASS_MAX), "invalid");
}

static void test_format(void **state) {
        struct sockaddr_storage ss;
        char t[INET6_ADDRSTRLEN];
        assert_int_equal(addr_parse_host_literal("0x7f000001", &ss), 1);
        addr_format(&ss, t, sizeof t);
        assert_string_equal(t, "127.0.0.1");
        assert_int_equal(addr_parse_host_literal("[::ffff:127.0.0.1]", &ss), 1);
        addr_format(&ss, t, sizeof t);
        assert_string_equal(t, "::ffff:127.0.0.1");
        ss = (struct sockaddr_storage){.ss_family = AF_UNIX};
        addr_format(&ss, t, sizeof t);
        assert_string_equal(t, "?");
}

/* ---- the platform egress floor ---- */

static bool floor_has(struct addr_floor *f, const char *host, char *why, size_t size) {
        struct sockaddr_storage ss;
        if (addr_parse_host_literal(host, &ss) != 1)
                fail_msg("\"%s\": expected a literal", host);
        return addr_floor_contains(f, &ss, why, size);
}

static void test_floor_classes_and_spellings(void **state) {
        (void)state;
        struct addr_floor *f = NULL;
        struct err_detail e = {0};
        assert_int_equal(addr_floor_new("", &f, &e), 0);
        static const struct {
                const char *host, *why;
        } in[] = {
                {"127.0.0.1", "loopback"}, {"2130706433", "loopback"}, {"0x7f000001", "loopback"},
                {"0177.0.0.1", "loopback"}, {"127.1", "loopback"}, {"[::1]", "loopback"},
                {"[::ffff:127.0.0.1]", "loopback"}, {"[::ffff:7f00:1]", "loopback"}, {"[::127.0.0.1]", "loopback"},
                {"[64:ff9b::127.0.0.1]", "loopback"}, {"[64:ff9b:1::7f00:1]", "loopback"},
                {"[64:ff9b:1:7f00:1:0:100::]", "loopback"},  /* RFC 6052 /48 position: 7f00 / 00 01 */
                {"[2002:7f00:1::]", "loopback"}, {"[2001:0:4136:e378:8000:63bf:80ff:fffe]", "loopback"}, /* Teredo client ~7f000001 */
                {"0.0.0.0", "unspecified"}, {"0", "unspecified"}, {"[::]", "unspecified"}, {"[::ffff:0.0.0.0]", "unspecified"},
                {"169.254.1.1", "link_local"}, {"[fe80::1]", "link_local"}, {"[::ffff:169.254.1.1]", "link_local"},
                {"169.254.169.254", "metadata"}, {"2852039166", "metadata"}, {"[fd00:ec2::254]", "metadata"},
                {"[::ffff:a9fe:a9fe]", "metadata"}, {"[64:ff9b::169.254.169.254]", "metadata"}, {"100.100.100.200", "metadata"},
                {"168.63.129.16", "metadata"}, {"[fd20:ce::254]", "metadata"},
                {"224.0.0.1", "multicast"}, {"239.255.255.250", "multicast"}, {"[ff02::1]", "multicast"},
                {"[::ffff:224.0.0.251]", "multicast"}, {"255.255.255.255", "broadcast"}, {"0xffffffff", "broadcast"},
        };
        char why[96];
        for (size_t i = 0; i < ELEMENTSOF(in); i++) {
                if (!floor_has(f, in[i].host, why, sizeof why))
                        fail_msg("\"%s\" is not in the floor", in[i].host);
                if (strcmp(why, in[i].why))
                        fail_msg("\"%s\": why \"%s\", expected \"%s\"", in[i].host, why, in[i].why);
        }
        /* non-public but not the floor: a profile may open these; public: anyone */
        static const char *const out[] = {"10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1", "198.18.0.6",
                                          "[fd00::1]", "[64:ff9b::10.0.0.1]", "93.184.216.34",
                                          "[2606:2800:220:1:248:1893:25c8:1946]", "8.8.8.8"};
        for (size_t i = 0; i < ELEMENTSOF(out); i++)
                if (floor_has(f, out[i], why, sizeof why))
                        fail_msg("\"%s\" is in the floor (%s)", out[i], why);
        /* without a floor object: the fixed classes still hold */
        assert_true(floor_has(NULL, "127.0.0.1", why, sizeof why));
        assert_false(floor_has(NULL, "10.0.0.1", why, sizeof why));
        addr_floor_free(f);
}

static void test_floor_operator_ranges(void **state) {
        (void)state;
        struct addr_floor *f = NULL;
        struct err_detail e = {0};
        assert_int_equal(addr_floor_new(" 10.96.0.0/12 ,198.18.0.6/32,fd00:10::/64", &f, &e), 0);
        assert_int_equal(addr_floor_n_ranges(f), 3);
        char t[64];
        addr_allow_format(addr_floor_range(f, 0), t, sizeof t);
        assert_string_equal(t, "10.96.0.0/12");
        char why[96];
        assert_true(floor_has(f, "10.100.1.2", why, sizeof why));
        assert_string_equal(why, "operator range 10.96.0.0/12");
        assert_true(floor_has(f, "[::ffff:10.100.1.2]", why, sizeof why));
        assert_true(floor_has(f, "[64:ff9b::a64:102]", why, sizeof why));
        assert_true(floor_has(f, "3323068422", why, sizeof why));         /* 198.18.0.6 */
        assert_string_equal(why, "operator range 198.18.0.6/32");
        assert_true(floor_has(f, "[fd00:10::5]", why, sizeof why));
        assert_false(floor_has(f, "198.18.0.5", why, sizeof why));
        assert_false(floor_has(f, "10.95.255.255", why, sizeof why));
        addr_floor_free(f);

        /* a bad entry is named; nothing is made */
        static const char *const bad[] = {"10.0.0.0/33", "10.1.2.3/8", "0.0.0.0/0", "banana", "10.0.0.0/8,,1.2.3.4",
                                          "10.0.0.0/8,", "fe80::1%eth0/128"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                f = NULL;
                e = (struct err_detail){0};
                if (addr_floor_new(bad[i], &f, &e) != -EINVAL || f)
                        fail_msg("\"%s\" accepted", bad[i]);
                assert_true(e.message[0]);
        }
        assert_int_equal(addr_floor_new("banana", &f, &e), -EINVAL);
        assert_non_null(strstr(e.message, "\"banana\""));
}

/* The node's own addresses (getifaddrs): read from this machine's interfaces,
 * no packet sent. */
static void test_floor_node_addresses(void **state) {
        (void)state;
        struct ifaddrs *ifa = NULL;
        assert_int_equal(getifaddrs(&ifa), 0);
        struct sockaddr_storage node = {0};
        bool found = false;
        for (struct ifaddrs *i = ifa; i && !found; i = i->ifa_next)
                if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET) {
                        memcpy(&node, i->ifa_addr, sizeof(struct sockaddr_in));
                        found = addr_classify(&node) != ADDR_CLASS_LOOPBACK;
                }
        freeifaddrs(ifa);
        if (!found)
                skip();
        struct addr_floor *f = NULL;
        struct err_detail e = {0};
        assert_int_equal(addr_floor_new("", &f, &e), 0);
        char why[96];
        assert_true(addr_floor_contains(f, &node, why, sizeof why));
        assert_string_equal(why, "node address");
        /* the same address IPv4-mapped */
        struct sockaddr_storage m = {.ss_family = AF_INET6};
        struct sockaddr_in6 *m6 = (struct sockaddr_in6 *)&m;
        m6->sin6_addr.s6_addr[10] = m6->sin6_addr.s6_addr[11] = 0xff;
        memcpy(m6->sin6_addr.s6_addr + 12, &((struct sockaddr_in *)&node)->sin_addr, 4);
        assert_true(addr_floor_contains(f, &m, why, sizeof why));
        struct addr_allow r = {.family = AF_INET, .prefix_len = 32};
        memcpy(r.prefix, &((struct sockaddr_in *)&node)->sin_addr, 4);
        assert_true(addr_floor_covers(f, &r, why, sizeof why));
        addr_floor_free(f);
}

static bool covers(struct addr_floor *f, const char *cidr, char *why) {
        struct addr_allow r;
        if (addr_allow_parse(cidr, &r) != 0)
                fail_msg("\"%s\" does not parse", cidr);
        return addr_floor_covers(f, &r, why, 96);
}

static void test_floor_covers_rules(void **state) {
        (void)state;
        struct addr_floor *f = NULL;
        struct err_detail e = {0};
        assert_int_equal(addr_floor_new("10.96.0.0/12", &f, &e), 0);
        char why[96];
        static const char *const inside[] = {"127.0.0.0/8", "127.0.0.1", "127.1.0.0/16", "::1", "0.0.0.0/8",
                                             "169.254.169.254", "169.254.0.0/16", "fe80::/10", "fe80::/64",
                                             "224.0.0.0/4", "ff02::/16", "255.255.255.255", "fd00:ec2::254",
                                             "::ffff:127.0.0.0/104", "64:ff9b::7f00:1", "2002:7f00::/24",
                                             "10.96.0.0/12", "10.100.0.0/16", "100.100.100.200"};
        for (size_t i = 0; i < ELEMENTSOF(inside); i++)
                if (!covers(f, inside[i], why))
                        fail_msg("\"%s\" not covered by the floor", inside[i]);
        /* overlapping is not inside: the floor still refuses those addresses at runtime */
        static const char *const outside[] = {"10.0.0.0/8", "198.18.0.0/15", "0.0.0.0/1", "fd00::/8",
                                              "192.168.0.0/16", "93.184.216.34", "100.64.0.0/10"};
        for (size_t i = 0; i < ELEMENTSOF(outside); i++)
                if (covers(f, outside[i], why))
                        fail_msg("\"%s\" covered by the floor (%s)", outside[i], why);
        assert_true(covers(f, "127.0.0.0/8", why));
        assert_string_equal(why, "loopback");
        assert_true(covers(f, "169.254.169.254", why));
        assert_string_equal(why, "metadata");
        assert_true(covers(f, "169.254.1.0/24", why));
        assert_string_equal(why, "link_local");
        assert_true(covers(f, "10.100.0.0/16", why));
        assert_string_equal(why, "operator range 10.96.0.0/12");
        addr_floor_free(f);
}

static void test_allow_is_public(void **state) {
        (void)state;
        static const struct {
                const char *cidr;
                bool public;
        } cases[] = {
                {"93.184.216.34", true}, {"8.8.8.0/24", true}, {"2606:2800::/32", true}, {"11.0.0.0/8", true},
                {"127.0.0.1", false}, {"10.0.0.0/8", false}, {"10.1.2.3", false}, {"172.16.0.0/12", false},
                {"172.31.0.1", false}, {"192.168.0.0/16", false}, {"100.64.0.0/10", false}, {"169.254.169.254", false},
                {"198.18.0.0/15", false}, {"198.19.1.1", false}, {"0.0.0.0/1", false}, {"8.0.0.0/5", false},
                {"fd00::/8", false}, {"fe80::1", false}, {"::1", false}, {"::ffff:8.8.8.8", false},
                {"2002:808:808::/48", false}, {"2001:db8::/32", false}, {"2000::/3", false}, {"224.0.0.1", false},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct addr_allow r;
                enum addr_class c = ADDR_CLASS_PUBLIC;
                assert_int_equal(addr_allow_parse(cases[i].cidr, &r), 0);
                if (addr_allow_is_public(&r, &c) != cases[i].public)
                        fail_msg("\"%s\": public %d expected", cases[i].cidr, cases[i].public);
                if (!cases[i].public && c == ADDR_CLASS_PUBLIC)
                        fail_msg("\"%s\": no class named", cases[i].cidr);
        }
        struct addr_allow r;
        enum addr_class c;
        assert_int_equal(addr_allow_parse("10.1.0.0/16", &r), 0);
        assert_false(addr_allow_is_public(&r, &c));
        assert_int_equal(c, ADDR_CLASS_PRIVATE);
}

static void test_local_names(void **state) {
        (void)state;
        static const char *const local[] = {"localhost", "LOCALHOST", "localhost.", "api.localhost", "*.localhost",
                                            "localhost.localdomain", "metadata.google.internal", "*.google.internal",
                                            "*.internal", "metadata", "instance-data.ec2.internal", "metadata.goog"};
        for (size_t i = 0; i < ELEMENTSOF(local); i++)
                if (!addr_name_is_local(local[i], NULL))
                        fail_msg("\"%s\" not recognised as local", local[i]);
        static const char *const remote[] = {"api.example.com", "*.example.com", "localhost.example.com",
                                             "notlocalhost", "metadata.example", "mylocalhost.net", "github.com"};
        for (size_t i = 0; i < ELEMENTSOF(remote); i++)
                if (addr_name_is_local(remote[i], NULL))
                        fail_msg("\"%s\" taken for local", remote[i]);
        const char *what = NULL;
        assert_true(addr_name_is_local("metadata.google.internal", &what));
        assert_string_equal(what, "metadata");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_loopback),
                cmocka_unit_test(test_unspecified),
                cmocka_unit_test(test_private),
                cmocka_unit_test(test_link_local),
                cmocka_unit_test(test_metadata),
                cmocka_unit_test(test_other_classes),
                cmocka_unit_test(test_public),
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_malformed),
                cmocka_unit_test(test_agrees_with_inet_aton),
                cmocka_unit_test(test_allow_parse),
                cmocka_unit_test(test_allow_exact_range),
                cmocka_unit_test(test_non_ip_family),
                cmocka_unit_test(test_format),
                cmocka_unit_test(test_floor_classes_and_spellings),
                cmocka_unit_test(test_floor_operator_ranges),
                cmocka_unit_test(test_floor_node_addresses),
                cmocka_unit_test(test_floor_covers_rules),
                cmocka_unit_test(test_allow_is_public),
                cmocka_unit_test(test_local_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

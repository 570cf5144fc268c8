/* The egress proxy's parsers of untrusted input: the HTTP request head
 * (net/http_parse.h), the TLS ClientHello SNI (net/tls_sni.h), and the
 * proxy's policy decisions (services/runner-agent/proxy_policy.h, linked
 * from paddock_runner): IP literals in every spelling, DNS-rebinding address checks, private,
 * link-local and metadata ranges. No I/O. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/macro.h"
#include "net/http_parse.h"
#include "net/tls_sni.h"

#include "proxy_policy.h"

/* ---- HTTP ---- */

#define PROXY_TEST_MAX 16384

static int parse(const char *head, struct http_request *rq) {
        struct err_detail e = {0};
        int n = http_head_length(head, strlen(head), PROXY_TEST_MAX);
        if (n <= 0)
                return n == 0 ? -EAGAIN : n;
        return http_parse_request(head, (size_t)n, rq, &e);
}
static void test_http_connect(void **state) {
        (void)state;
        struct http_request rq;
        assert_int_equal(parse("CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n", &rq), 0);
        assert_true(rq.connect);
        assert_string_equal(rq.method, "CONNECT");
        assert_string_equal(rq.host, "api.example.com");
        assert_int_equal(rq.port, 443);
        assert_int_equal(rq.n_headers, 1);

        assert_int_equal(parse("CONNECT [::ffff:127.0.0.1]:8080 HTTP/1.1\r\n\r\n", &rq), 0);
        assert_string_equal(rq.host, "::ffff:127.0.0.1");
        assert_int_equal(rq.port, 8080);

        assert_int_equal(parse("CONNECT 2130706433:80 HTTP/1.1\r\n\r\n", &rq), 0);
        assert_string_equal(rq.host, "2130706433");

        /* no port, port 0, port too large, userinfo, unbracketed v6, body */
        assert_int_equal(parse("CONNECT example.com HTTP/1.1\r\n\r\n", &rq), -EINVAL);
        assert_int_equal(parse("CONNECT example.com:0 HTTP/1.1\r\n\r\n", &rq), -EINVAL);
        assert_int_equal(parse("CONNECT example.com:65536 HTTP/1.1\r\n\r\n", &rq), -EINVAL);
        assert_int_equal(parse("CONNECT a@example.com:443 HTTP/1.1\r\n\r\n", &rq), -EINVAL);
        assert_int_equal(parse("CONNECT ::1:443 HTTP/1.1\r\n\r\n", &rq), -EINVAL);
        assert_int_equal(parse("CONNECT example.com:443 HTTP/1.1\r\nContent-Length: 5\r\n\r\n", &rq), -EINVAL);
}

static void test_http_absolute(void **state) {
        (void)state;
        struct http_request rq;
        assert_int_equal(parse("GET http://Example.com/a/b?c=d HTTP/1.1\r\nAccept: */*\r\nX-A:  v  \r\n\r\n", &rq), 0);
        assert_false(rq.connect);
        assert_string_equal(rq.host, "Example.com");
        assert_int_equal(rq.port, 80);
        assert_true(rq.path.len == 8 && !memcmp(rq.path.p, "/a/b?c=d", 8));
        assert_int_equal(rq.n_headers, 2);
        assert_true(http_span_equal(rq.headers[1].value, "v"));
        assert_int_equal(rq.content_length, -1);

        assert_int_equal(parse("POST http://h:8080 HTTP/1.0\r\nContent-Length: 12\r\n\r\n", &rq), 0);
        assert_int_equal(rq.port, 8080);
        assert_int_equal(rq.path.len, 0);
        assert_int_equal(rq.content_length, 12);
        assert_int_equal(rq.version_minor, 0);

        assert_int_equal(parse("POST http://h/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &rq), 0);
        assert_true(rq.chunked);

        /* not served: https in absolute form, origin form, HTTP/2, other codings */
        assert_int_equal(parse("GET https://h/ HTTP/1.1\r\n\r\n", &rq), -ENOTSUP);
        assert_int_equal(parse("GET /index.html HTTP/1.1\r\nHost: h\r\n\r\n", &rq), -ENOTSUP);
        assert_int_equal(parse("GET http://h/ HTTP/2.0\r\n\r\n", &rq), -ENOTSUP);
        assert_int_equal(parse("POST http://h/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &rq), -ENOTSUP);
}

static void test_http_smuggling_refused(void **state) {
        (void)state;
        struct http_request rq;
        /* CL + TE, conflicting CLs, bad CL, obs-fold, bare LF, bare CR, NUL, control bytes */
        assert_int_equal(parse("POST http://h/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", &rq),
                         -EINVAL);
        assert_int_equal(parse("POST http://h/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", &rq), -EINVAL);
        assert_int_equal(parse("POST http://h/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", &rq), 0);
        assert_int_equal(parse("POST http://h/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n", &rq), -EINVAL);
        assert_int_equal(parse("POST http://h/ HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", &rq), -EINVAL);
        assert_int_equal(parse("GET http://h/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n", &rq), -EINVAL);
        assert_int_equal(parse("GET http://h/ HTTP/1.1\nX: a\r\n\r\n", &rq), -EINVAL);
        assert_int_equal(parse("GET http://h/ HTTP/1.1\r\nX: a\rb\r\n\r\n", &rq), -EINVAL);
        assert_int_equal(parse("GET http://h/ HTTP/1.1\r\nX: a\x01\r\n\r\n", &rq), -EINVAL);
        assert_int_equal(parse("GET http://h/ HTTP/1.1\r\nBad Name: a\r\n\r\n", &rq), -EINVAL);
        assert_int_equal(parse("GET http://h h/ HTTP/1.1\r\n\r\n", &rq), -EINVAL);
        assert_int_equal(parse("GET http://h%2f/ HTTP/1.1\r\n\r\n", &rq), -EINVAL);
        assert_int_equal(parse("GET http://user:pw@h/ HTTP/1.1\r\n\r\n", &rq), -EINVAL);
        assert_int_equal(parse("G\x7f T http://h/ HTTP/1.1\r\n\r\n", &rq), -EINVAL);
        assert_int_equal(parse("\r\n\r\n", &rq), -EINVAL);
}

static void test_http_bounds(void **state) {
        (void)state;
        /* head length: incomplete, complete, too large */
        assert_int_equal(http_head_length("GET http://h/ HTTP/1.1\r\n", 24, 100), 0);
        assert_int_equal(http_head_length("GET http://h/ HTTP/1.1\r\n\r\n", 26, 100), 26);
        char big[200];
        memset(big, 'a', sizeof big);
        assert_int_equal(http_head_length(big, sizeof big, 100), -E2BIG);

        /* header count */
        char head[8192];
        size_t n = (size_t)snprintf(head, sizeof head, "GET http://h/ HTTP/1.1\r\n");
        for (int i = 0; i < HTTP_MAX_HEADERS + 1; i++)
                n += (size_t)snprintf(head + n, sizeof head - n, "X-%d: v\r\n", i);
        n += (size_t)snprintf(head + n, sizeof head - n, "\r\n");
        struct http_request rq;
        struct err_detail e = {0};
        assert_int_equal(http_parse_request(head, n, &rq, &e), -E2BIG);

        /* host length */
        char longhost[600];
        memset(longhost, 'a', sizeof longhost);
        n = (size_t)snprintf(head, sizeof head, "CONNECT %.*s:443 HTTP/1.1\r\n\r\n", 300, longhost);
        assert_int_equal(http_parse_request(head, n, &rq, &e), -E2BIG);
}

static void test_http_hop_by_hop(void **state) {
        (void)state;
        struct http_request rq;
        assert_int_equal(parse("GET http://h/ HTTP/1.1\r\nProxy-Authorization: x\r\nConnection: keep-alive\r\n"
                               "Host: other\r\nAccept: */*\r\nUpgrade: h2c\r\n\r\n", &rq), 0);
        assert_true(http_header_is_hop_by_hop(&rq.headers[0]));
        assert_true(http_header_is_hop_by_hop(&rq.headers[1]));
        assert_true(http_header_is_hop_by_hop(&rq.headers[2]));
        assert_false(http_header_is_hop_by_hop(&rq.headers[3]));
        assert_true(http_header_is_hop_by_hop(&rq.headers[4]));
}

/* ---- TLS ---- */

/* Builds a ClientHello record; sni NULL: no server_name extension. */
static size_t client_hello(uint8_t *out, const char *sni, bool dup_sni) {
        uint8_t body[1024];
        size_t n = 0;
        body[n++] = 0x03, body[n++] = 0x03;          /* legacy_version */
        memset(body + n, 0x11, 32), n += 32;         /* random */
        body[n++] = 0;                               /* session id */
        body[n++] = 0, body[n++] = 2, body[n++] = 0x13, body[n++] = 0x01; /* cipher suites */
        body[n++] = 1, body[n++] = 0;                /* compression */
        uint8_t ext[600];
        size_t e = 0;
        /* an unrelated extension first: supported_versions */
        ext[e++] = 0x00, ext[e++] = 0x2b, ext[e++] = 0, ext[e++] = 3, ext[e++] = 2, ext[e++] = 0x03, ext[e++] = 0x04;
        for (int k = 0; sni && k < (dup_sni ? 2 : 1); k++) {
                size_t l = strlen(sni);
                ext[e++] = 0, ext[e++] = 0;                                  /* server_name */
                ext[e++] = (uint8_t)((l + 5) >> 8), ext[e++] = (uint8_t)(l + 5);
                ext[e++] = (uint8_t)((l + 3) >> 8), ext[e++] = (uint8_t)(l + 3);
                ext[e++] = 0;                                                /* host_name */
                ext[e++] = (uint8_t)(l >> 8), ext[e++] = (uint8_t)l;
                memcpy(ext + e, sni, l), e += l;
        }
        body[n++] = (uint8_t)(e >> 8), body[n++] = (uint8_t)e;
        memcpy(body + n, ext, e), n += e;

        size_t w = 0;
        out[w++] = 0x16, out[w++] = 0x03, out[w++] = 0x01;
        out[w++] = (uint8_t)((n + 4) >> 8), out[w++] = (uint8_t)(n + 4);
        out[w++] = 0x01, out[w++] = 0, out[w++] = (uint8_t)(n >> 8), out[w++] = (uint8_t)n;
        memcpy(out + w, body, n);
        return w + n;
}

static void test_tls_sni(void **state) {
        (void)state;
        uint8_t rec[2048];
        char sni[TLS_SNI_MAX + 1];
        size_t n = client_hello(rec, "Api.Example.com.", false);
        assert_int_equal(tls_parse_client_hello(rec, n, sni), TLS_HELLO_SNI);
        assert_string_equal(sni, "api.example.com");

        /* every prefix is incomplete, never a wrong answer */
        for (size_t k = 1; k < n; k++)
                assert_int_equal(tls_parse_client_hello(rec, k, sni), TLS_HELLO_NEED_MORE);

        n = client_hello(rec, NULL, false);
        assert_int_equal(tls_parse_client_hello(rec, n, sni), TLS_HELLO_NO_SNI);
        assert_string_equal(sni, "");

        n = client_hello(rec, "a.example", true);
        assert_int_equal(tls_parse_client_hello(rec, n, sni), TLS_HELLO_MALFORMED);

        n = client_hello(rec, "bad name.example", false);
        assert_int_equal(tls_parse_client_hello(rec, n, sni), TLS_HELLO_MALFORMED);

        assert_int_equal(tls_parse_client_hello((const uint8_t *)"GET / HTTP/1.1\r\n", 16, sni), TLS_HELLO_NOT_TLS);
        assert_int_equal(tls_parse_client_hello((const uint8_t *)"SSH-2.0-x", 9, sni), TLS_HELLO_NOT_TLS);
}

static void test_tls_malformed(void **state) {
        (void)state;
        uint8_t rec[2048];
        char sni[TLS_SNI_MAX + 1];
        size_t n = client_hello(rec, "x.example", false);
        /* handshake length beyond the record: a fragmented hello is refused */
        uint8_t bad[2048];
        memcpy(bad, rec, n);
        bad[7] = 0x10;
        assert_int_equal(tls_parse_client_hello(bad, n, sni), TLS_HELLO_MALFORMED);
        /* not a client_hello */
        memcpy(bad, rec, n);
        bad[5] = 0x02;
        assert_int_equal(tls_parse_client_hello(bad, n, sni), TLS_HELLO_MALFORMED);
        /* oversized record length */
        memcpy(bad, rec, n);
        bad[3] = 0x50;
        assert_int_equal(tls_parse_client_hello(bad, n, sni), TLS_HELLO_MALFORMED);
        /* every single-byte corruption gives some answer without reading out of bounds (ASan) */
        for (size_t i = 0; i < n; i++)
                for (int v = 0; v < 256; v += 51) {
                        memcpy(bad, rec, n);
                        bad[i] = (uint8_t)v;
                        (void)tls_parse_client_hello(bad, n, sni);
                        assert_true(strlen(sni) <= TLS_SNI_MAX);
                }
}

/* Found by tests/fuzz (fuzz_tls_sni, corpus found-sni-then-bad-extension.bin):
 * a hello refused as malformed after its server_name was read must not
 * hand that name out (tls_sni.h: "" unless TLS_HELLO_SNI); the proxy puts
 * q->sni into the refused tunnel's egress event. */
static void test_tls_malformed_after_sni(void **state) {
        (void)state;
        uint8_t rec[2048];
        char sni[TLS_SNI_MAX + 1];
        /* a second server_name extension */
        size_t n = client_hello(rec, "a.example", true);
        assert_int_equal(tls_parse_client_hello(rec, n, sni), TLS_HELLO_MALFORMED);
        assert_string_equal(sni, "");
        /* an extension after server_name whose length runs past the hello:
         * the declared lengths of record, handshake and extensions grow with it */
        n = client_hello(rec, "a.example", false);
        const uint8_t junk[] = {0x00, 0x01, 0x61, 0x60, 0x00};
        memcpy(rec + n, junk, sizeof junk);
        size_t ext_len = ((size_t)rec[5 + 4 + 2 + 32 + 1 + 4 + 2] << 8 | rec[5 + 4 + 2 + 32 + 1 + 4 + 2 + 1]) + sizeof junk;
        size_t hs_len = n - 9 + sizeof junk, rec_len = n - 5 + sizeof junk;
        rec[5 + 4 + 2 + 32 + 1 + 4 + 2] = (uint8_t)(ext_len >> 8), rec[5 + 4 + 2 + 32 + 1 + 4 + 2 + 1] = (uint8_t)ext_len;
        rec[7] = (uint8_t)(hs_len >> 8), rec[8] = (uint8_t)hs_len;
        rec[3] = (uint8_t)(rec_len >> 8), rec[4] = (uint8_t)rec_len;
        n += sizeof junk;
        assert_int_equal(tls_parse_client_hello(rec, n, sni), TLS_HELLO_MALFORMED);
        assert_string_equal(sni, "");
}

/* ---- policy ---- */

/* A policy of n rules; rules whose host starts with "profile:" come from a
 * catalog egress profile (EgressRule.source "profile:<id>"), the others are
 * inline `egress.allow` rules. */
static struct egress_policy *policy(const char *const *hosts, const uint32_t *ports, size_t n, const char *unknown) {
        Paddock__V1__EgressRule rules[8], *ptrs[8];
        for (size_t i = 0; i < n; i++) {
                paddock__v1__egress_rule__init(&rules[i]);
                bool prof = !strncmp(hosts[i], "profile:", 8);
                rules[i].host = (char *)(prof ? hosts[i] + 8 : hosts[i]);
                rules[i].source = (char *)(prof ? "profile:0b8a6c1e-0000-4000-8000-000000000001" : "allow");
                rules[i].port = ports[i];
                ptrs[i] = &rules[i];
        }
        Paddock__V1__EgressPolicy p = PADDOCK__V1__EGRESS_POLICY__INIT;
        p.rules = ptrs;
        p.n_rules = n;
        p.unknown = (char *)unknown;
        struct egress_policy *pol = NULL;
        struct err_detail e = {0};
        assert_int_equal(egress_policy_compile(&p, &pol, &e), 0);
        return pol;
}

static struct sockaddr_storage ip(const char *s) {
        struct sockaddr_storage a = {0};
        if (strchr(s, ':')) {
                a.ss_family = AF_INET6;
                assert_int_equal(inet_pton(AF_INET6, s, &((struct sockaddr_in6 *)&a)->sin6_addr), 1);
        } else {
                a.ss_family = AF_INET;
                assert_int_equal(inet_pton(AF_INET, s, &((struct sockaddr_in *)&a)->sin_addr), 1);
        }
        return a;
}

static void test_policy_literals(void **state) {
        (void)state;
        /* the platform egress floor: no rule, inline or from a profile, reaches loopback */
        struct egress_policy *p = policy((const char *[]){"api.example.com", "127.0.0.1", "profile:127.0.0.0/8"},
                                         (uint32_t[]){0, 8080, 8080}, 3, "ask");
        struct egress_check c;
        static const char *const loopback[] = {"127.0.0.1", "2130706433", "0177.0.0.1", "0x7f.1", "127.1",
                                               "::ffff:127.0.0.1", "[::ffff:127.0.0.1]", "0x7f000001", "127.0.0.1.",
                                               "[::1]", "0.0.0.0", "0", "[::]", "[::ffff:0.0.0.0]",
                                               "[64:ff9b::7f00:1]", "[2002:7f00:1::]", "169.254.169.254",
                                               "[fd00:ec2::254]", "[64:ff9b:1::7f00:1]"};
        for (size_t i = 0; i < ELEMENTSOF(loopback); i++) {
                egress_policy_check_target(p, loopback[i], 8080, &c);
                if (c.verdict != EGRESS_DENY || strncmp(c.reason, "platform egress floor: ", 23))
                        fail_msg("%s: verdict %d, reason \"%s\"", loopback[i], c.verdict, c.reason);
        }
        egress_policy_check_target(p, "127.0.0.1", 8080, &c);
        assert_string_equal(c.reason, "platform egress floor: loopback");
        /* local names by name: never asked for, never resolved */
        egress_policy_check_target(p, "localhost", 8080, &c);
        assert_int_equal(c.verdict, EGRESS_DENY);
        assert_string_equal(c.reason, "platform egress floor: loopback (localhost)");
        egress_policy_check_target(p, "Metadata.Google.Internal.", 80, &c);
        assert_int_equal(c.verdict, EGRESS_DENY);
        assert_string_equal(c.reason, "platform egress floor: metadata (Metadata.Google.Internal.)");
        egress_policy_check_target(p, "169.254.169.254", 80, &c);
        assert_string_equal(c.reason, "platform egress floor: metadata");
        /* a public literal is not a name: it needs an IP rule too */
        egress_policy_check_target(p, "93.184.216.34", 443, &c);
        assert_int_equal(c.verdict, EGRESS_DENY);
        egress_policy_check_target(p, "127.0.0.1 junk", 8080, &c);
        assert_int_equal(c.verdict, EGRESS_DENY);
        assert_string_equal(c.reason, "malformed host");
        egress_policy_check_target(p, "API.example.com.", 443, &c);
        assert_int_equal(c.verdict, EGRESS_ALLOW);
        assert_string_equal(c.rule, "api.example.com");
        egress_policy_check_target(p, "api.example.com", 8443, &c);
        assert_int_equal(c.verdict, EGRESS_ASK);
        assert_string_equal(c.rule, "unknown");
        egress_policy_free(p);

        /* non-public, not floor: only a profile's rule, never an inline one */
        p = policy((const char *[]){"10.1.2.3", "profile:10.9.0.0/16", "198.51.100.7"}, (uint32_t[]){8080, 8080, 8080},
                   3, "deny");
        egress_policy_check_target(p, "10.1.2.3", 8080, &c);
        assert_int_equal(c.verdict, EGRESS_DENY);
        assert_non_null(strstr(c.reason, "approved egress profile"));
        egress_policy_check_target(p, "198.51.100.7", 8080, &c);
        assert_int_equal(c.verdict, EGRESS_DENY);
        egress_policy_check_target(p, "10.9.1.1", 8080, &c);
        assert_int_equal(c.verdict, EGRESS_ALLOW);
        assert_string_equal(c.rule, "10.9.0.0/16:8080");
        egress_policy_check_target(p, "[::ffff:10.9.1.1]", 8080, &c);
        assert_int_equal(c.verdict, EGRESS_ALLOW);
        egress_policy_check_target(p, "10.9.1.1", 8081, &c);
        assert_int_equal(c.verdict, EGRESS_DENY);
        egress_policy_free(p);

        p = policy((const char *[]){"93.184.216.34"}, (uint32_t[]){443}, 1, "ask");
        egress_policy_check_target(p, "93.184.216.34", 443, &c);
        assert_int_equal(c.verdict, EGRESS_ALLOW);  /* a public literal: an inline rule is enough */
        egress_policy_check_target(p, "new.example", 443, &c);
        assert_int_equal(c.verdict, EGRESS_ASK);
        egress_policy_check_target(p, "10.0.0.1", 443, &c);
        assert_int_equal(c.verdict, EGRESS_DENY);  /* literals are never asked for */
        egress_policy_free(p);
}

static void test_policy_resolved_addresses(void **state) {
        (void)state;
        struct egress_policy *p = policy((const char *[]){"*.example.com", "profile:10.1.0.0/16", "10.2.0.0/16"},
                                         (uint32_t[]){0, 5432, 5432}, 3, "deny");
        /* DNS rebinding: an allowed name resolving to any of these is refused */
        static const char *const internal[] = {"127.0.0.1", "127.53.0.1", "::1", "10.0.0.1", "172.16.5.4",
                                               "192.168.1.1", "169.254.169.254", "fe80::1", "fd00::1", "100.64.0.1",
                                               "0.0.0.0", "::", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
                                               "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "224.0.0.1", "255.255.255.255",
                                               "fd00:ec2::254", "100.100.100.200", "198.18.0.5"};
        char why[256];
        bool floor;
        for (size_t i = 0; i < ELEMENTSOF(internal); i++) {
                struct sockaddr_storage a = ip(internal[i]);
                assert_false(egress_policy_address_ok(p, &a, 443, NULL, why, sizeof why, NULL));
        }
        struct sockaddr_storage a = ip("93.184.216.34");
        assert_true(egress_policy_address_ok(p, &a, 443, NULL, NULL, 0, NULL));
        a = ip("2606:2800:220:1:248:1893:25c8:1946");
        assert_true(egress_policy_address_ok(p, &a, 443, NULL, NULL, 0, NULL));
        /* only a profile's IP rule reaches a non-public address, on its port */
        const char *rule = NULL;
        a = ip("10.1.2.3");
        assert_true(egress_policy_address_ok(p, &a, 5432, &rule, NULL, 0, NULL));
        assert_string_equal(rule, "10.1.0.0/16:5432");
        assert_false(egress_policy_address_ok(p, &a, 443, NULL, why, sizeof why, &floor));
        assert_false(floor);
        assert_string_equal(why, "private address 10.1.2.3 is not in an IP rule of an approved egress profile for port 443");
        a = ip("::ffff:10.1.2.3");
        assert_true(egress_policy_address_ok(p, &a, 5432, NULL, NULL, 0, NULL));
        a = ip("10.2.0.1");                 /* the inline rule's range */
        assert_false(egress_policy_address_ok(p, &a, 5432, NULL, NULL, 0, NULL));
        a = ip("10.3.0.1");
        assert_false(egress_policy_address_ok(p, &a, 5432, NULL, NULL, 0, NULL));
        /* the floor, with its reason */
        a = ip("::ffff:127.0.0.1");
        assert_false(egress_policy_address_ok(p, &a, 443, NULL, why, sizeof why, &floor));
        assert_true(floor);
        assert_string_equal(why, "platform egress floor: loopback (::ffff:127.0.0.1)");
        egress_policy_free(p);
}

/* The operator's ranges: a profile allowing all of 198.18.0.0/15 still cannot
 * reach what PADDOCK_EGRESS_FLOOR names, in any spelling. */
static void test_policy_operator_floor(void **state) {
        (void)state;
        struct addr_floor *f = NULL;
        struct err_detail e = {0};
        assert_int_equal(addr_floor_new("198.18.0.6/32, fd00:6::/64", &f, &e), 0);
        egress_policy_set_floor(f);
        struct egress_policy *p = policy((const char *[]){"profile:198.18.0.0/15", "profile:fd00::/8"},
                                         (uint32_t[]){8080, 8080}, 2, "ask");
        char why[256];
        bool floor;
        struct sockaddr_storage a = ip("198.18.0.5");
        assert_true(egress_policy_address_ok(p, &a, 8080, NULL, why, sizeof why, &floor));
        static const char *const floored[] = {"198.18.0.6", "::ffff:198.18.0.6", "64:ff9b::c612:6", "2002:c612:6::1",
                                              "fd00:6::1"};
        for (size_t i = 0; i < ELEMENTSOF(floored); i++) {
                a = ip(floored[i]);
                assert_false(egress_policy_address_ok(p, &a, 8080, NULL, why, sizeof why, &floor));
                assert_true(floor);
                assert_non_null(strstr(why, "platform egress floor: operator range"));
        }
        struct egress_check c;
        egress_policy_check_target(p, "198.18.0.6", 8080, &c);
        assert_int_equal(c.verdict, EGRESS_DENY);
        assert_string_equal(c.reason, "platform egress floor: operator range 198.18.0.6/32");
        egress_policy_check_target(p, "3323068422", 8080, &c);     /* 198.18.0.6 as one number */
        assert_int_equal(c.verdict, EGRESS_DENY);
        egress_policy_check_target(p, "198.18.0.5", 8080, &c);
        assert_int_equal(c.verdict, EGRESS_ALLOW);
        egress_policy_free(p);
        egress_policy_set_floor(NULL);
        addr_floor_free(f);
}

static void test_policy_compile_errors(void **state) {
        (void)state;
        Paddock__V1__EgressRule r = PADDOCK__V1__EGRESS_RULE__INIT, *rp = &r;
        Paddock__V1__EgressPolicy p = PADDOCK__V1__EGRESS_POLICY__INIT;
        p.rules = &rp;
        p.n_rules = 1;
        struct egress_policy *pol = NULL;
        struct err_detail e = {0};
        static const char *const bad[] = {"10.1.2.3/8", "0.0.0.0/0", "*.com", "127.1", "bad host", ""};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                r.host = (char *)bad[i];
                assert_int_equal(egress_policy_compile(&p, &pol, &e), -EINVAL);
                assert_null(pol);
        }
        r.host = (char *)"ok.example";
        p.unknown = (char *)"allow";
        assert_int_equal(egress_policy_compile(&p, &pol, &e), -EINVAL);
        assert_int_equal(egress_policy_compile(NULL, &pol, &e), 0);
        struct egress_check c;
        egress_policy_check_target(pol, "ok.example", 443, &c);
        assert_int_equal(c.verdict, EGRESS_DENY);
        assert_int_equal(pol->ask_timeout_s, RUN_DEFAULT_ASK_TIMEOUT_S);
        egress_policy_free(pol);
}

/* ---- chunked request bodies ---- */

/* Feeds body in slices of step bytes; returns the decoder's last answer and
 * the bytes it took in *used (summed). */
static int chunked(const char *body, size_t step, uint64_t max, size_t *used) {
        struct http_chunked c;
        http_chunked_init(&c, max);
        size_t len = strlen(body), off = 0;
        *used = 0;
        int r = 0;
        while (off < len && r == 0) {
                size_t n = len - off < step ? len - off : step, u;
                struct err_detail e = {0};
                r = http_chunked_feed(&c, body + off, n, &u, &e);
                if (r < 0)
                        return r;
                *used += u;
                off += n;
        }
        return r;
}

static void test_chunked_framing(void **state) {
        (void)state;
        static const char body[] = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        size_t used;
        /* every slicing gives the same answer and the exact end */
        for (size_t step = 1; step <= sizeof body; step++) {
                assert_int_equal(chunked(body, step, 1024, &used), 1);
                assert_int_equal(used, strlen(body));
        }
        /* the bytes after the last chunk are not the body's: a smuggled request */
        static const char smuggle[] = "5\r\nhello\r\n0\r\n\r\nGET http://evil/ HTTP/1.1\r\nHost: evil\r\n\r\n";
        for (size_t step = 1; step <= sizeof smuggle; step++) {
                assert_int_equal(chunked(smuggle, step, 1024, &used), 1);
                assert_int_equal(used, strlen("5\r\nhello\r\n0\r\n\r\n"));
        }
        /* trailer fields are part of the body, up to the empty line */
        static const char trailer[] = "3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-Two:2\r\n\r\nNEXT";
        assert_int_equal(chunked(trailer, 1, 1024, &used), 1);
        assert_int_equal(used, strlen(trailer) - 4);
        /* upper and lower case hex, leading zeros */
        assert_int_equal(chunked("0A\r\n0123456789\r\n00\r\n\r\n", 3, 1024, &used), 1);
        assert_int_equal(chunked("a\r\n0123456789\r\n0\r\n\r\n", 3, 1024, &used), 1);
        /* incomplete: more is needed, everything so far is the body's */
        assert_int_equal(chunked("5\r\nhel", 2, 1024, &used), 0);
        assert_int_equal(used, 6);
        assert_int_equal(chunked("5\r\nhello\r\n0\r\n", 100, 1024, &used), 0);
}

static void test_chunked_refused(void **state) {
        (void)state;
        size_t used;
        static const char *const bad[] = {
                "\r\nhello\r\n0\r\n\r\n",              /* no size */
                "x\r\nhello\r\n0\r\n\r\n",             /* not hex */
                "-5\r\nhello\r\n0\r\n\r\n",            /* sign */
                "+5\r\nhello\r\n0\r\n\r\n",
                "0x5\r\nhello\r\n0\r\n\r\n",           /* prefix */
                "5 \r\nhello\r\n0\r\n\r\n",            /* whitespace after the size */
                " 5\r\nhello\r\n0\r\n\r\n",
                "5\nhello\r\n0\r\n\r\n",               /* bare LF */
                "5\rhello\r\n0\r\n\r\n",               /* bare CR */
                "5\r\nhello!\r\n0\r\n\r\n",            /* data longer than the size */
                "5\r\nhello\n0\r\n\r\n",               /* data not followed by CRLF */
                "5;a\x01\r\nhello\r\n0\r\n\r\n",       /* control byte in an extension */
                "11111111111111111\r\n",               /* 17 digits */
                "ffffffffffffffff\r\n",                /* overflows every bound */
                "0\r\n: v\r\n\r\n",                    /* trailer without a name */
                "0\r\nX-A v\r\n\r\n",                  /* trailer without a colon */
                "0\r\nX-A: v\r\n folded\r\n\r\n",      /* obs-fold in the trailer */
                "0\r\nX-A: v\x7f\r\n\r\n",             /* control byte in a trailer */
                "0\r\n\r\r\n",                         /* CR CR */
        };
        for (size_t k = 0; k < ELEMENTSOF(bad); k++)
                for (size_t step = 1; step <= 4; step += 3) {
                        int r = chunked(bad[k], step, 1024, &used);
                        if (r >= 0)
                                fail_msg("accepted bad chunked body #%zu (step %zu)", k, step);
                }
        /* the bound counts data bytes, refused before the data is read */
        assert_int_equal(chunked("5\r\nhello\r\n0\r\n\r\n", 1, 5, &used), 1);
        assert_int_equal(chunked("5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n", 1, 5, &used), -E2BIG);
        assert_int_equal(chunked("400\r\n", 1, 1023, &used), -E2BIG);
        /* a refused decoder stays refused */
        struct http_chunked c;
        struct err_detail e = {0};
        http_chunked_init(&c, 10);
        assert_int_equal(http_chunked_feed(&c, "z", 1, &used, &e), -EINVAL);
        assert_true(strlen(e.message) > 0);
        assert_true(http_chunked_feed(&c, "0\r\n\r\n", 5, &used, &e) < 0);
        /* and an ended one takes nothing more */
        http_chunked_init(&c, 10);
        assert_int_equal(http_chunked_feed(&c, "0\r\n\r\n", 5, &used, &e), 1);
        assert_int_equal(http_chunked_feed(&c, "GET", 3, &used, &e), 1);
        assert_int_equal(used, 0);
}

static void test_http_port_explicit(void **state) {
        (void)state;
        struct http_request rq;
        assert_int_equal(parse("GET http://h/ HTTP/1.1\r\n\r\n", &rq), 0);
        assert_false(rq.port_explicit);
        assert_int_equal(rq.port, 80);
        assert_int_equal(parse("GET http://h:80/ HTTP/1.1\r\n\r\n", &rq), 0);
        assert_true(rq.port_explicit);
        assert_int_equal(parse("GET http://[::1]:8443/ HTTP/1.1\r\n\r\n", &rq), 0);
        assert_true(rq.port_explicit);
        assert_int_equal(rq.port, 8443);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_http_connect),
                cmocka_unit_test(test_http_absolute),
                cmocka_unit_test(test_http_smuggling_refused),
                cmocka_unit_test(test_http_bounds),
                cmocka_unit_test(test_chunked_framing),
                cmocka_unit_test(test_chunked_refused),
                cmocka_unit_test(test_http_port_explicit),
                cmocka_unit_test(test_http_hop_by_hop),
                cmocka_unit_test(test_tls_sni),
                cmocka_unit_test(test_tls_malformed),
                cmocka_unit_test(test_tls_malformed_after_sni),
                cmocka_unit_test(test_policy_literals),
                cmocka_unit_test(test_policy_resolved_addresses),
                cmocka_unit_test(test_policy_operator_floor),
                cmocka_unit_test(test_policy_compile_errors),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

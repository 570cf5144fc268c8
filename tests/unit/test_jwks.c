/* JWKS parsing and the per-issuer cache (lib/auth/jwks.h): keys generated
 * here, served by a thread of this test on 127.0.0.1; refresh on unknown kid,
 * the rate limit that keeps random kids from causing fetches, size limits,
 * timeouts, URL rules and concurrent use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "oidc_test_util.h"

#include "auth/jwks.h"
#include "core/macro.h"

static EVP_PKEY *rsa, *rsa2, *ec, *rsa_small;

static int group_setup(void **state) {
        rsa = t_key_rsa(2048);
        rsa2 = t_key_rsa(2048);
        ec = t_key_ec();
        rsa_small = t_key_rsa(1024);
        return 0;
}

static int group_teardown(void **state) {
        EVP_PKEY_free(rsa);
        EVP_PKEY_free(rsa2);
        EVP_PKEY_free(ec);
        EVP_PKEY_free(rsa_small);
        return 0;
}

static char *doc_of(json_t *k1, json_t *k2) {
        json_t *keys[] = {k1, k2};
        return t_jwks_doc(k2 ? 2 : 1, keys);
}

static int parse(const char *doc, struct jwks **ret, struct err_detail *e) {
        return jwks_parse(doc, strlen(doc), ret, e);
}

static void test_parse_valid(void **state) {
        _cleanup_free_ char *doc = doc_of(t_jwk(rsa, "r1", "RS256"), t_jwk(ec, "e1", "ES256"));
        _cleanup_(jwks_freep) struct jwks *set = NULL;
        struct err_detail e = {};
        assert_int_equal(parse(doc, &set, &e), 0);
        assert_int_equal(jwks_size(set), 2);
        _cleanup_(jwk_unrefp) struct jwk *r = jwks_find(set, "r1");
        _cleanup_(jwk_unrefp) struct jwk *c = jwks_find(set, "e1");
        assert_non_null(r);
        assert_non_null(c);
        assert_int_equal(jwk_alg(r), JWK_ALG_RS256);
        assert_int_equal(jwk_alg(c), JWK_ALG_ES256);
        assert_string_equal(jwk_kid(r), "r1");
        assert_int_equal(EVP_PKEY_eq(jwk_pkey(r), rsa), 1);     /* same public key */
        assert_int_equal(EVP_PKEY_eq(jwk_pkey(c), ec), 1);
        assert_null(jwks_find(set, "r2"));
        assert_null(jwks_find(set, NULL));      /* two keys: a kid is needed */
        assert_null(jwks_find(set, ""));

        /* a key outlives its set */
        struct jwk *keep = jwks_find(set, "r1");
        set = jwks_free(set);
        assert_int_equal(jwk_alg(keep), JWK_ALG_RS256);
        jwk_unref(keep);

        /* single key without kid and without alg/use: matches a token without kid */
        json_t *k = t_jwk(ec, NULL, NULL);
        json_object_del(k, "use");
        _cleanup_free_ char *doc1 = doc_of(k, NULL);
        _cleanup_(jwks_freep) struct jwks *one = NULL;
        assert_int_equal(parse(doc1, &one, &e), 0);
        _cleanup_(jwk_unrefp) struct jwk *only = jwks_find(one, NULL);
        assert_non_null(only);
        assert_string_equal(jwk_kid(only), "");

        /* empty set is valid (every key rotated out) */
        _cleanup_(jwks_freep) struct jwks *empty = NULL;
        assert_int_equal(parse("{\"keys\":[]}", &empty, &e), 0);
        assert_int_equal(jwks_size(empty), 0);
        assert_null(jwks_find(empty, NULL));

        assert_string_equal(jwk_alg_to_string(JWK_ALG_ES256), "ES256");
        enum jwk_alg a;
        assert_int_equal(jwk_alg_from_string("RS256", &a), 0);
        assert_int_equal(a, JWK_ALG_RS256);
        assert_int_equal(jwk_alg_from_string("none", &a), -EINVAL);
        assert_int_equal(jwk_alg_from_string("HS256", &a), -EINVAL);
}

static void test_parse_skips(void **state) {
        /* only the RSA sig key is usable; the others are skipped, not errors */
        json_t *keys[] = {
                t_jwk(rsa, "sig", NULL),
                json_pack("{s:s, s:s, s:s}", "kty", "oct", "kid", "hmac", "k", "c2VjcmV0"),
                json_pack("{s:s, s:s, s:s, s:s}", "kty", "OKP", "crv", "Ed25519", "kid", "ed", "x", "AAAA"),
                t_jwk(rsa2, "enc", NULL),
                t_jwk(rsa2, "rs384", "RS384"),
                t_jwk(ec, "ec-wrong-alg", "ES384"),
                json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-384", "kid", "p384", "x", "AA", "y", "AA"),
                t_jwk(rsa2, "wrapkey", NULL),
                t_jwk(rsa2, "other-use", NULL),
        };
        json_object_set_new(keys[3], "use", json_string("enc"));
        json_object_set_new(keys[7], "key_ops", json_pack("[s]", "wrapKey"));
        json_object_set_new(keys[8], "use", json_string("tls"));
        _cleanup_free_ char *doc = t_jwks_doc(ELEMENTSOF(keys), keys);
        _cleanup_(jwks_freep) struct jwks *set = NULL;
        struct err_detail e = {};
        assert_int_equal(parse(doc, &set, &e), 0);
        assert_int_equal(jwks_size(set), 1);
        _cleanup_(jwk_unrefp) struct jwk *k = jwks_find(set, "sig");
        assert_non_null(k);
        assert_null(jwks_find(set, "hmac"));
        assert_null(jwks_find(set, "enc"));
        assert_null(jwks_find(set, "rs384"));
        /* one usable key left: kid-less lookup finds it */
        _cleanup_(jwk_unrefp) struct jwk *k2 = jwks_find(set, NULL);
        assert_ptr_equal(k, k2);
        /* key_ops with verify is fine */
        json_t *kv = t_jwk(rsa, "v", NULL);
        json_object_set_new(kv, "key_ops", json_pack("[s]", "verify"));
        _cleanup_free_ char *doc2 = doc_of(kv, NULL);
        _cleanup_(jwks_freep) struct jwks *set2 = NULL;
        assert_int_equal(parse(doc2, &set2, &e), 0);
        assert_int_equal(jwks_size(set2), 1);
}

static void expect_bad(const char *doc, int err, const char *reason) {
        struct err_detail e = {};
        struct jwks *set = NULL;
        int r = parse(doc, &set, &e);
        if (r != err || !strstr(e.message, reason))
                fail_msg("expected %d \"%s\", got %d \"%s\"", err, reason, r, e.message);
        assert_null(set);
        assert_string_equal(e.code, "jwks");
}

static void test_parse_rejects(void **state) {
        _cleanup_free_ char *small = doc_of(t_jwk(rsa_small, "s", NULL), NULL);
        expect_bad(small, -EINVAL, "1024 bits");

        json_t *k = t_jwk(rsa, "e", NULL);
        json_object_set_new(k, "e", json_string("AQ"));         /* e = 1 */
        _cleanup_free_ char *e1 = doc_of(k, NULL);
        expect_bad(e1, -EINVAL, "exponent");
        k = t_jwk(rsa, "e", NULL);
        json_object_set_new(k, "e", json_string("AQAA"));       /* e = 65536, even */
        _cleanup_free_ char *e2 = doc_of(k, NULL);
        expect_bad(e2, -EINVAL, "exponent");
        k = t_jwk(rsa, "n", NULL);
        json_object_set_new(k, "n", json_string("AQAB=="));
        _cleanup_free_ char *n1 = doc_of(k, NULL);
        expect_bad(n1, -EINVAL, "\"n\"");
        k = t_jwk(rsa, "n", NULL);
        json_object_del(k, "n");
        _cleanup_free_ char *n2 = doc_of(k, NULL);
        expect_bad(n2, -EINVAL, "\"n\"");

        /* EC: short coordinate, point off the curve, missing crv */
        k = t_jwk(ec, "x", NULL);
        uint8_t b31[31] = {1};
        _cleanup_free_ char *x31 = t_b64(b31, sizeof b31);
        json_object_set_new(k, "x", json_string(x31));
        _cleanup_free_ char *ec1 = doc_of(k, NULL);
        expect_bad(ec1, -EINVAL, "\"x\"");
        k = t_jwk(ec, "y", NULL);
        uint8_t y[32];
        assert_int_equal(b64url_decode(json_string_value(json_object_get(k, "y")), 43, y), 32);
        y[31] ^= 1;
        _cleanup_free_ char *ybad = t_b64(y, sizeof y);
        json_object_set_new(k, "y", json_string(ybad));
        _cleanup_free_ char *ec2 = doc_of(k, NULL);
        expect_bad(ec2, -EINVAL, "p-256");
        k = t_jwk(ec, "c", NULL);
        json_object_del(k, "crv");
        _cleanup_free_ char *ec3 = doc_of(k, NULL);
        expect_bad(ec3, -EINVAL, "crv");

        /* private key material published */
        k = t_jwk(ec, "d", NULL);
        json_object_set_new(k, "d", json_string("AAAA"));
        _cleanup_free_ char *d = doc_of(k, NULL);
        expect_bad(d, -EINVAL, "private");

        /* kid rules */
        _cleanup_free_ char *dup = doc_of(t_jwk(rsa, "same", NULL), t_jwk(ec, "same", NULL));
        expect_bad(dup, -EINVAL, "same \"kid\"");
        _cleanup_free_ char *nokid = doc_of(t_jwk(rsa, "a", NULL), t_jwk(ec, NULL, NULL));
        expect_bad(nokid, -EINVAL, "no \"kid\"");
        k = t_jwk(rsa, NULL, NULL);
        json_object_set_new(k, "kid", json_integer(1));
        _cleanup_free_ char *kidnum = doc_of(k, NULL);
        expect_bad(kidnum, -EINVAL, "\"kid\"");

        /* document shape */
        expect_bad("", -EINVAL, "not valid json");
        expect_bad("{\"keys\":[],\"keys\":[]}", -EINVAL, "not valid json");     /* duplicate member */
        expect_bad("{\"keys\":{}}", -EINVAL, "\"keys\" array");
        expect_bad("[]", -EINVAL, "\"keys\" array");
        expect_bad("{\"keys\":[1]}", -EINVAL, "not an object");
        expect_bad("{\"keys\":[{\"n\":\"AQAB\"}]}", -EINVAL, "kty");
        expect_bad("{\"keys\":[{\"kty\":\"RSA\",\"use\":5}]}", -EINVAL, "\"use\"");
        json_t *many[JWKS_MAX_KEYS + 1];
        for (size_t i = 0; i < ELEMENTSOF(many); i++)
                many[i] = json_pack("{s:s}", "kty", "oct");
        _cleanup_free_ char *toomany = t_jwks_doc(ELEMENTSOF(many), many);
        expect_bad(toomany, -EINVAL, "at most 64");

        /* duplicate member inside a key */
        _cleanup_free_ char *base = doc_of(t_jwk(rsa, "r", NULL), NULL);
        char *kty = strstr(base, "\"kty\"");
        assert_non_null(kty);
        _cleanup_free_ char *dupkey = NULL;
        assert_true(asprintf(&dupkey, "%.*s\"kty\":\"EC\",%s", (int)(kty - base), base, kty) > 0);
        expect_bad(dupkey, -EINVAL, "not valid json");

        /* size bound */
        size_t big = JWKS_MAX_DOC_SIZE_DEFAULT + 1;
        _cleanup_free_ char *huge = malloc(big + 1);
        memset(huge, ' ', big);
        huge[big] = 0;
        expect_bad(huge, -EMSGSIZE, "exceeds");
}

static void test_url_rules(void **state) {
        const char *good[] = {"https://idp.example.test/.well-known/jwks.json", "http://127.0.0.1:8080/jwks",
                              "http://127.1.2.3/jwks", "http://[::1]:9/jwks", "HTTPS://idp.example.test/k"};
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                struct jwks_cache_config cfg = {.url = good[i]};
                struct jwks_cache *c = NULL;
                struct err_detail e = {};
                if (jwks_cache_new(&cfg, &c, &e) != 0)
                        fail_msg("%s refused: %s", good[i], e.message);
                assert_int_equal(jwks_cache_fetch_count(c), 0);         /* nothing fetched yet */
                jwks_cache_free(c);
        }
        const char *bad[] = {NULL, "", "jwks.json", "http://localhost/jwks", "http://10.0.0.1/jwks",
                             "http://idp.example.test/jwks", "ftp://127.0.0.1/jwks", "file:///etc/passwd",
                             "https://user:pw@idp.example.test/jwks", "http://128.0.0.1/jwks",
                             "http://[::2]/jwks", "gopher://127.0.0.1/"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                struct jwks_cache_config cfg = {.url = bad[i]};
                struct jwks_cache *c = NULL;
                struct err_detail e = {};
                int r = jwks_cache_new(&cfg, &c, &e);
                if (r != -EINVAL)
                        fail_msg("%s: expected -EINVAL, got %d", bad[i] ? bad[i] : "(null)", r);
                assert_string_equal(e.code, "jwks_url");
                assert_null(c);
        }
        struct jwks_cache_config neg = {.url = "https://idp.example.test/k", .timeout_ms = -1};
        struct jwks_cache *c = NULL;
        assert_int_equal(jwks_cache_new(&neg, &c, NULL), -EINVAL);
        assert_int_equal(jwks_cache_new(NULL, &c, NULL), -EINVAL);
}

/* A fake monotonic clock so that rate-limit windows are stepped through
 * exactly, independent of how loaded the machine is. */
static _Atomic uint64_t fake_now_ms = 1000000;
static uint64_t fake_clock(void) { return fake_now_ms; }
static void advance(unsigned ms) { fake_now_ms += ms; }

static struct jwks_cache *cache_for(struct t_http *srv, unsigned interval) {
        struct jwks_cache_config cfg = {.url = srv->url, .refresh_interval_s = interval, .clock_ms = fake_clock};
        struct jwks_cache *c = NULL;
        T_CHECK(jwks_cache_new(&cfg, &c, NULL) == 0);
        return c;
}

static int get(struct jwks_cache *c, const char *kid, struct err_detail *e) {
        struct jwk *k = NULL;
        int r = jwks_cache_get_key(c, kid, &k, e);
        if (r == 0) {
                assert_non_null(k);
                if (kid)
                        assert_string_equal(jwk_kid(k), kid);
                jwk_unref(k);
        } else
                assert_null(k);
        return r;
}

static void test_refresh_on_unknown_kid(void **state) {
        _cleanup_free_ char *doc_a = doc_of(t_jwk(rsa, "A", NULL), NULL);
        _cleanup_free_ char *doc_ab = doc_of(t_jwk(rsa, "A", NULL), t_jwk(ec, "B", NULL));
        struct t_http *srv = t_http_start(doc_a);
        struct jwks_cache *c = cache_for(srv, 60);
        struct err_detail e = {};

        assert_int_equal(get(c, "A", &e), 0);          /* first use fetches */
        assert_int_equal(t_http_requests(srv), 1);
        assert_int_equal(get(c, "A", &e), 0);          /* cached */
        assert_int_equal(t_http_requests(srv), 1);

        t_http_set_body(srv, doc_ab, 200);              /* the provider rotates in B */
        advance(59999);
        assert_int_equal(get(c, "B", &e), -ENOKEY);    /* 1 ms before the window ends: no fetch */
        assert_int_equal(t_http_requests(srv), 1);
        advance(1);                                     /* the 60 s window has passed */
        assert_int_equal(get(c, "B", &e), 0);          /* unknown kid → refresh → found */
        assert_int_equal(t_http_requests(srv), 2);
        assert_int_equal(jwks_cache_fetch_count(c), 2);

        /* unknown kid again, within the window: no second fetch, however often */
        for (int i = 0; i < 50; i++) {
                char kid[32];
                snprintf(kid, sizeof kid, "random-%d", i);
                assert_int_equal(get(c, kid, &e), -ENOKEY);
                assert_string_equal(e.code, "kid");
                advance(1000);                          /* 50 s of random kids */
        }
        assert_int_equal(t_http_requests(srv), 2);
        assert_int_equal(get(c, "A", &e), 0);          /* known keys keep working */
        assert_int_equal(get(c, "B", &e), 0);

        advance(10000);
        assert_int_equal(get(c, "C", &e), -ENOKEY);    /* a new window allows one more fetch */
        assert_int_equal(t_http_requests(srv), 3);
        assert_int_equal(get(c, "C", &e), -ENOKEY);
        assert_int_equal(t_http_requests(srv), 3);
        jwks_cache_free(c);
        t_http_stop(srv);
}

static void test_rate_limit_default(void **state) {
        _cleanup_free_ char *doc_a = doc_of(t_jwk(rsa, "A", NULL), NULL);
        _cleanup_free_ char *doc_ab = doc_of(t_jwk(rsa, "A", NULL), t_jwk(ec, "B", NULL));
        struct t_http *srv = t_http_start(doc_a);
        struct jwks_cache *c = cache_for(srv, 0);       /* default: 60 s */
        struct err_detail e = {};
        /* unknown kid on an empty cache: one fetch, still unknown */
        assert_int_equal(get(c, "B", &e), -ENOKEY);
        assert_int_equal(t_http_requests(srv), 1);
        t_http_set_body(srv, doc_ab, 200);
        assert_int_equal(get(c, "B", &e), -ENOKEY);    /* no second fetch within 60 s */
        assert_int_equal(get(c, "A", &e), 0);
        assert_int_equal(t_http_requests(srv), 1);
        /* an explicit refresh ignores the limit */
        assert_int_equal(jwks_cache_refresh(c, &e), 0);
        assert_int_equal(t_http_requests(srv), 2);
        assert_int_equal(get(c, "B", &e), 0);
        jwks_cache_free(c);
        t_http_stop(srv);
}

static void test_failed_refresh_keeps_keys(void **state) {
        _cleanup_free_ char *doc_a = doc_of(t_jwk(rsa, "A", NULL), NULL);
        struct t_http *srv = t_http_start(doc_a);
        struct jwks_cache *c = cache_for(srv, 1);
        struct err_detail e = {};
        assert_int_equal(get(c, "A", &e), 0);
        t_http_set_body(srv, "{\"error\":\"down\"}", 503);
        assert_int_equal(jwks_cache_refresh(c, &e), -EIO);
        assert_string_equal(e.code, "jwks_fetch");
        assert_non_null(strstr(e.message, "503"));
        assert_int_equal(get(c, "A", &e), 0);
        t_http_set_body(srv, "{\"keys\":[{\"kty\":\"RSA\"}]}", 200);     /* broken document */
        assert_int_equal(jwks_cache_refresh(c, &e), -EINVAL);
        assert_string_equal(e.code, "jwks");
        assert_int_equal(get(c, "A", &e), 0);
        /* no redirects followed */
        t_http_set_body(srv, doc_a, 302);
        assert_int_equal(jwks_cache_refresh(c, &e), -EIO);
        assert_non_null(strstr(e.message, "302"));
        /* unknown kid while the provider is down: the fetch error is reported */
        t_http_set_body(srv, "", 500);
        advance(1000);
        assert_int_equal(get(c, "Z", &e), -EIO);
        assert_int_equal(get(c, "A", &e), 0);
        /* ... and keeps being reported, without fetching, within the window */
        unsigned n = t_http_requests(srv);
        assert_int_equal(get(c, "Z", &e), -EIO);
        assert_string_equal(e.code, "jwks_fetch");
        assert_int_equal(t_http_requests(srv), n);
        /* once the provider is back, an unknown kid is plainly unknown */
        t_http_set_body(srv, doc_a, 200);
        advance(1000);
        assert_int_equal(get(c, "Z", &e), -ENOKEY);
        assert_string_equal(e.code, "kid");
        jwks_cache_free(c);
        t_http_stop(srv);
}

static void test_fetch_limits(void **state) {
        /* larger than the default 256 KiB limit */
        size_t big = 300 * 1024;
        _cleanup_free_ char *huge = malloc(big + 1);
        memset(huge, ' ', big);
        memcpy(huge, "{\"keys\":[]", 10);
        huge[big - 1] = '}';
        huge[big] = 0;
        struct t_http *srv = t_http_start(huge);
        struct jwks_cache *c = cache_for(srv, 1);
        struct err_detail e = {};
        assert_int_equal(get(c, "A", &e), -EMSGSIZE);
        assert_string_equal(e.code, "jwks_fetch");
        jwks_cache_free(c);

        /* a configured smaller limit */
        _cleanup_free_ char *doc_a = doc_of(t_jwk(rsa, "A", NULL), NULL);
        t_http_set_body(srv, doc_a, 200);
        struct jwks_cache_config cfg = {.url = srv->url, .max_doc_size = 100};
        assert_int_equal(jwks_cache_new(&cfg, &c, NULL), 0);
        assert_int_equal(get(c, "A", &e), -EMSGSIZE);
        jwks_cache_free(c);

        /* jwks_fetch returns the body as is */
        cfg.max_doc_size = 0;
        _cleanup_free_ char *body = NULL;
        size_t len = 0;
        assert_int_equal(jwks_fetch(&cfg, &body, &len, &e), 0);
        assert_int_equal(len, strlen(doc_a));
        assert_string_equal(body, doc_a);

        /* slow provider: the transfer timeout applies */
        pthread_mutex_lock(&srv->lock);
        srv->delay_ms = 1500;
        pthread_mutex_unlock(&srv->lock);
        struct jwks_cache_config slow = {.url = srv->url, .timeout_ms = 300};
        assert_int_equal(jwks_cache_new(&slow, &c, NULL), 0);
        assert_int_equal(get(c, "A", &e), -ETIMEDOUT);
        jwks_cache_free(c);
        t_http_stop(srv);

        /* nobody listening */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t al = sizeof a;
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
        close(fd);
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%u/jwks", ntohs(a.sin_port));
        struct jwks_cache_config dead = {.url = url};
        assert_int_equal(jwks_cache_new(&dead, &c, NULL), 0);
        assert_int_equal(get(c, "A", &e), -ECONNREFUSED);
        jwks_cache_free(c);
}

static void test_max_age(void **state) {
        _cleanup_free_ char *doc_a = doc_of(t_jwk(rsa, "A", NULL), NULL);
        struct t_http *srv = t_http_start(doc_a);
        struct jwks_cache_config cfg = {.url = srv->url, .max_age_s = 600, .clock_ms = fake_clock};
        struct jwks_cache *c = NULL;
        assert_int_equal(jwks_cache_new(&cfg, &c, NULL), 0);
        struct err_detail e = {};
        assert_int_equal(get(c, "A", &e), 0);
        advance(599 * 1000);
        assert_int_equal(get(c, "A", &e), 0);          /* fresh: no fetch */
        assert_int_equal(t_http_requests(srv), 1);
        advance(1000);
        /* stale: re-fetched; a failing provider still leaves the old key usable */
        t_http_set_body(srv, "", 500);
        assert_int_equal(get(c, "A", &e), 0);
        assert_int_equal(t_http_requests(srv), 2);
        assert_int_equal(get(c, "A", &e), 0);          /* the failed attempt is rate limited too */
        assert_int_equal(t_http_requests(srv), 2);
        advance(60 * 1000);
        t_http_set_body(srv, doc_a, 200);
        assert_int_equal(get(c, "A", &e), 0);
        assert_int_equal(t_http_requests(srv), 3);
        assert_int_equal(get(c, "A", &e), 0);          /* fresh again */
        assert_int_equal(t_http_requests(srv), 3);
        jwks_cache_free(c);
        t_http_stop(srv);
}

struct hammer {
        struct jwks_cache *cache;
        const char *kid;
        int iterations;
        int failures;
};

static void *hammer_main(void *arg) {
        struct hammer *h = arg;
        for (int i = 0; i < h->iterations; i++) {
                struct jwk *k = NULL;
                if (jwks_cache_get_key(h->cache, h->kid, &k, NULL) != 0 || !k || strcmp(jwk_kid(k), h->kid) != 0)
                        h->failures++;
                jwk_unref(k);
        }
        return NULL;
}

static void *refresher_main(void *arg) {
        struct hammer *h = arg;
        for (int i = 0; i < h->iterations; i++)
                if (jwks_cache_refresh(h->cache, NULL) != 0)
                        h->failures++;
        return NULL;
}

static void test_concurrency(void **state) {
        _cleanup_free_ char *doc = doc_of(t_jwk(rsa, "A", NULL), t_jwk(ec, "B", NULL));
        struct t_http *srv = t_http_start(doc);
        struct jwks_cache *c = cache_for(srv, 0);

        /* many threads asking for an unknown kid on an empty cache: one fetch */
        pthread_t th[8];
        struct hammer hs[8];
        for (int i = 0; i < 8; i++) {
                hs[i] = (struct hammer){.cache = c, .kid = "unknown", .iterations = 20};
                assert_int_equal(pthread_create(&th[i], NULL, hammer_main, &hs[i]), 0);
        }
        for (int i = 0; i < 8; i++) {
                pthread_join(th[i], NULL);
                assert_int_equal(hs[i].failures, 20);
        }
        assert_int_equal(t_http_requests(srv), 1);

        /* readers of known kids while the set is replaced underneath them */
        for (int i = 0; i < 7; i++) {
                hs[i] = (struct hammer){.cache = c, .kid = i % 2 ? "A" : "B", .iterations = 2000};
                assert_int_equal(pthread_create(&th[i], NULL, hammer_main, &hs[i]), 0);
        }
        hs[7] = (struct hammer){.cache = c, .iterations = 20};
        assert_int_equal(pthread_create(&th[7], NULL, refresher_main, &hs[7]), 0);
        for (int i = 0; i < 8; i++) {
                pthread_join(th[i], NULL);
                assert_int_equal(hs[i].failures, 0);
        }
        assert_int_equal(t_http_requests(srv), 21);
        jwks_cache_free(c);
        t_http_stop(srv);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_valid),
                cmocka_unit_test(test_parse_skips),
                cmocka_unit_test(test_parse_rejects),
                cmocka_unit_test(test_url_rules),
                cmocka_unit_test(test_refresh_on_unknown_kid),
                cmocka_unit_test(test_rate_limit_default),
                cmocka_unit_test(test_failed_refresh_keeps_keys),
                cmocka_unit_test(test_fetch_limits),
                cmocka_unit_test(test_max_age),
                cmocka_unit_test(test_concurrency),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

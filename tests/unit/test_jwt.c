/* JWS/JWT verification (lib/auth/jwt.h): RS256 and ES256 tokens signed here
 * with keys generated here verify, and every forged, confused, malformed,
 * mis-addressed or out-of-time token is refused with the reason naming the
 * check. Also base64url strictness. Network: one loopback JWKS server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "oidc_test_util.h"

#include "auth/jwks.h"
#include "auth/jwt.h"
#include "core/macro.h"

#define ISS "https://idp.example.test/realms/acme"
#define AUD "paddock"
#define NOW 1700000000

static EVP_PKEY *rsa, *ec, *rsa_other, *ec_other;
static struct jwks *set;

static int group_setup(void **state) {
        rsa = t_key_rsa(2048);
        rsa_other = t_key_rsa(2048);
        ec = t_key_ec();
        ec_other = t_key_ec();
        json_t *keys[] = {t_jwk(rsa, "rsa1", "RS256"), t_jwk(ec, "ec1", NULL)};
        _cleanup_free_ char *doc = t_jwks_doc(ELEMENTSOF(keys), keys);
        struct err_detail e = {};
        T_CHECK(jwks_parse(doc, strlen(doc), &set, &e) == 0);
        T_CHECK(jwks_size(set) == 2);
        return 0;
}

static int group_teardown(void **state) {
        jwks_free(set);
        EVP_PKEY_free(rsa);
        EVP_PKEY_free(rsa_other);
        EVP_PKEY_free(ec);
        EVP_PKEY_free(ec_other);
        return 0;
}

static void params(struct jwt_verify_params *p) {
        jwt_verify_params_init(p);
        p->issuer = ISS;
        p->audience = AUD;
        p->now = NOW;
}

/* Claims with the given times; INT64_MIN leaves the claim out. */
static char *claims_t(const char *iss, const char *aud_json, int64_t exp, int64_t nbf, int64_t iat) {
        json_t *c = json_pack("{s:s}", "sub", "user-42");
        if (iss)
                json_object_set_new(c, "iss", json_string(iss));
        if (aud_json)
                json_object_set_new(c, "aud", json_loads(aud_json, JSON_DECODE_ANY, NULL));
        if (exp != INT64_MIN)
                json_object_set_new(c, "exp", json_integer(exp));
        if (nbf != INT64_MIN)
                json_object_set_new(c, "nbf", json_integer(nbf));
        if (iat != INT64_MIN)
                json_object_set_new(c, "iat", json_integer(iat));
        char *s = json_dumps(c, JSON_COMPACT);
        json_decref(c);
        return s;
}

static char *claims_ok(void) { return claims_t(ISS, "\"" AUD "\"", NOW + 300, NOW - 10, NOW - 10); }

/* Decodes, looks the kid up in the test set, verifies. */
static int verify_p(const char *tok, const struct jwt_verify_params *p, json_t **ret, struct err_detail *e) {
        _cleanup_(jwt_decoded_freep) struct jwt_decoded *t = NULL;
        int r = jwt_decode(tok, strlen(tok), &t, e);
        if (r < 0)
                return r;
        _cleanup_(jwk_unrefp) struct jwk *k = jwks_find(set, jwt_decoded_kid(t));
        if (!k)
                return -ENOKEY;
        return jwt_verify_decoded(t, k, p, ret, e);
}

static int verify(const char *tok, json_t **ret, struct err_detail *e) {
        struct jwt_verify_params p;
        params(&p);
        return verify_p(tok, &p, ret, e);
}

static void expect_ok_p(const char *tok, const struct jwt_verify_params *p) {
        struct err_detail e = {};
        json_t *claims = NULL;
        int r = verify_p(tok, p, &claims, &e);
        if (r != 0)
                fail_msg("expected success, got %d (%s: %s)", r, e.code, e.message);
        assert_string_equal(json_string_value(json_object_get(claims, "sub")), "user-42");
        json_decref(claims);
}

static void expect_ok(const char *tok) {
        struct jwt_verify_params p;
        params(&p);
        expect_ok_p(tok, &p);
}

/* The error names the failed check and never quotes the token. */
static void expect_reject_p(const char *tok, const struct jwt_verify_params *p, int err, const char *code) {
        struct err_detail e = {};
        json_t *claims = (json_t *)0x1;
        int r = verify_p(tok, p, &claims, &e);
        if (r != err || strcmp(e.code, code) != 0)
                fail_msg("expected %d/%s, got %d/%s (%s)", err, code, r, e.code, e.message);
        assert_ptr_equal(claims, (json_t *)0x1);       /* no claims handed out */
        assert_true(strlen(e.message) > 0);
        /* no 12-character window of the token appears in the message */
        size_t n = strlen(tok);
        for (size_t i = 0; i + 12 <= n; i += 6) {
                char w[13];
                memcpy(w, tok + i, 12);
                w[12] = 0;
                if (strstr(e.message, w))
                        fail_msg("error message quotes the token: %s", e.message);
        }
}

static void expect_reject(const char *tok, int err, const char *code) {
        struct jwt_verify_params p;
        params(&p);
        expect_reject_p(tok, &p, err, code);
}

static void test_valid_rs256(void **state) {
        _cleanup_free_ char *c = claims_ok();
        _cleanup_free_ char *tok = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"typ\":\"JWT\"}", c);
        expect_ok(tok);
        json_t *claims = NULL;
        assert_int_equal(verify(tok, &claims, NULL), 0);
        assert_string_equal(json_string_value(json_object_get(claims, "iss")), ISS);
        json_decref(claims);
        assert_int_equal(verify(tok, NULL, NULL), 0);   /* claims optional, reterr optional */
}

static void test_valid_es256(void **state) {
        _cleanup_free_ char *c = claims_ok();
        _cleanup_free_ char *tok = t_token(ec, "{\"alg\":\"ES256\",\"kid\":\"ec1\"}", c);
        expect_ok(tok);
        /* signatures are randomised; sign a few more times (short r or s get padded) */
        for (int i = 0; i < 20; i++) {
                _cleanup_free_ char *t2 = t_token(ec, "{\"alg\":\"ES256\",\"kid\":\"ec1\"}", c);
                expect_ok(t2);
        }
}

static void test_aud_array(void **state) {
        _cleanup_free_ char *c1 = claims_t(ISS, "[\"other\",\"" AUD "\"]", NOW + 300, INT64_MIN, INT64_MIN);
        _cleanup_free_ char *t1 = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c1);
        expect_ok(t1);
        _cleanup_free_ char *c2 = claims_t(ISS, "[\"other\",\"paddock2\",7]", NOW + 300, INT64_MIN, INT64_MIN);
        _cleanup_free_ char *t2 = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c2);
        expect_reject(t2, -EACCES, "aud");
        _cleanup_free_ char *c3 = claims_t(ISS, "[]", NOW + 300, INT64_MIN, INT64_MIN);
        _cleanup_free_ char *t3 = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c3);
        expect_reject(t3, -EACCES, "aud");
}

static void test_wrong_signature(void **state) {
        _cleanup_free_ char *c = claims_ok();
        /* signed by another key under the same kid */
        _cleanup_free_ char *t1 = t_token(rsa_other, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c);
        expect_reject(t1, -EBADMSG, "signature");
        _cleanup_free_ char *t2 = t_token(ec_other, "{\"alg\":\"ES256\",\"kid\":\"ec1\"}", c);
        expect_reject(t2, -EBADMSG, "signature");

        /* valid signature moved onto different claims (privilege escalation attempt) */
        _cleanup_free_ char *good = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c);
        _cleanup_free_ char *c_evil = claims_t(ISS, "\"" AUD "\"", NOW + 999999, INT64_MIN, INT64_MIN);
        _cleanup_free_ char *in_evil = t_signing_input("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c_evil);
        _cleanup_free_ char *t3 = t_join(in_evil, strrchr(good, '.') + 1);
        expect_reject(t3, -EBADMSG, "signature");

        /* one flipped signature bit, RSA and EC */
        _cleanup_free_ char *t4 = strdup(good);
        char *s = strrchr(t4, '.') + 5;
        *s = *s == 'A' ? 'B' : 'A';
        expect_reject(t4, -EBADMSG, "signature");
        _cleanup_free_ char *ge = t_token(ec, "{\"alg\":\"ES256\",\"kid\":\"ec1\"}", c);
        _cleanup_free_ char *t5 = strdup(ge);
        s = strrchr(t5, '.') + 3;
        *s = *s == 'A' ? 'B' : 'A';
        expect_reject(t5, -EBADMSG, "signature");

        /* ES256 with a DER signature (what OpenSSL emits) instead of r||s */
        _cleanup_free_ char *in = t_signing_input("{\"alg\":\"ES256\",\"kid\":\"ec1\"}", c);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        uint8_t der[80];
        size_t dl = sizeof der;
        assert_int_equal(EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, ec, NULL), 1);
        assert_int_equal(EVP_DigestSign(md, der, &dl, (const uint8_t *)in, strlen(in)), 1);
        EVP_MD_CTX_free(md);
        _cleanup_free_ char *dersig = t_b64(der, dl);
        _cleanup_free_ char *t6 = t_join(in, dersig);
        expect_reject(t6, -EBADMSG, "signature");

        /* truncated RSA signature */
        _cleanup_free_ char *in7 = t_signing_input("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c);
        uint8_t zero[255] = {0};
        _cleanup_free_ char *short_sig = t_b64(zero, sizeof zero);
        _cleanup_free_ char *t7 = t_join(in7, short_sig);
        expect_reject(t7, -EBADMSG, "signature");
}

static void test_wrong_iss(void **state) {
        _cleanup_free_ char *c1 = claims_t("https://evil.example.test", "\"" AUD "\"", NOW + 300, INT64_MIN, INT64_MIN);
        _cleanup_free_ char *t1 = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c1);
        expect_reject(t1, -EACCES, "iss");
        _cleanup_free_ char *c2 = claims_t(ISS "/", "\"" AUD "\"", NOW + 300, INT64_MIN, INT64_MIN);
        _cleanup_free_ char *t2 = t_token(ec, "{\"alg\":\"ES256\",\"kid\":\"ec1\"}", c2);
        expect_reject(t2, -EACCES, "iss");
        _cleanup_free_ char *c3 = claims_t(NULL, "\"" AUD "\"", NOW + 300, INT64_MIN, INT64_MIN);
        _cleanup_free_ char *t3 = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c3);
        expect_reject(t3, -EACCES, "iss");
}

static void test_wrong_aud(void **state) {
        _cleanup_free_ char *c1 = claims_t(ISS, "\"other-app\"", NOW + 300, INT64_MIN, INT64_MIN);
        _cleanup_free_ char *t1 = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c1);
        expect_reject(t1, -EACCES, "aud");
        _cleanup_free_ char *c2 = claims_t(ISS, NULL, NOW + 300, INT64_MIN, INT64_MIN);
        _cleanup_free_ char *t2 = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c2);
        expect_reject(t2, -EACCES, "aud");
        _cleanup_free_ char *c3 = claims_t(ISS, "{\"aud\":\"" AUD "\"}", NOW + 300, INT64_MIN, INT64_MIN);
        _cleanup_free_ char *t3 = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c3);
        expect_reject(t3, -EACCES, "aud");
}

static void test_expired(void **state) {
        _cleanup_free_ char *c1 = claims_t(ISS, "\"" AUD "\"", NOW - 3600, NOW - 7200, NOW - 7200);
        _cleanup_free_ char *t1 = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c1);
        expect_reject(t1, -EACCES, "exp");
        _cleanup_free_ char *c2 = claims_t(ISS, "\"" AUD "\"", INT64_MIN, INT64_MIN, INT64_MIN);
        _cleanup_free_ char *t2 = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c2);
        expect_reject(t2, -EACCES, "exp");      /* exp is required */
        const char *c3 = "{\"sub\":\"user-42\",\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":\"2099-01-01\"}";
        _cleanup_free_ char *t3 = t_token(ec, "{\"alg\":\"ES256\",\"kid\":\"ec1\"}", c3);
        expect_reject(t3, -EACCES, "exp");
        /* real-valued NumericDate is allowed by RFC 7519 */
        const char *c4 = "{\"sub\":\"user-42\",\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1700000300.5}";
        _cleanup_free_ char *t4 = t_token(ec, "{\"alg\":\"ES256\",\"kid\":\"ec1\"}", c4);
        expect_ok(t4);
}

static void test_nbf_iat_future(void **state) {
        _cleanup_free_ char *c1 = claims_t(ISS, "\"" AUD "\"", NOW + 7200, NOW + 3600, INT64_MIN);
        _cleanup_free_ char *t1 = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c1);
        expect_reject(t1, -EACCES, "nbf");
        _cleanup_free_ char *c2 = claims_t(ISS, "\"" AUD "\"", NOW + 7200, INT64_MIN, NOW + 3600);
        _cleanup_free_ char *t2 = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c2);
        expect_reject(t2, -EACCES, "iat");
        const char *c3 = "{\"sub\":\"user-42\",\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1700000300,\"nbf\":null}";
        _cleanup_free_ char *t3 = t_token(ec, "{\"alg\":\"ES256\",\"kid\":\"ec1\"}", c3);
        expect_reject(t3, -EACCES, "nbf");
}

static void test_skew_boundaries(void **state) {
        struct jwt_verify_params p;
        params(&p);
        assert_int_equal(p.clock_skew_s, 60);   /* the default */
        const char *h = "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}";
        struct { int64_t exp, nbf, iat; int64_t skew; const char *fail; } cases[] = {
                {NOW - 59, INT64_MIN, INT64_MIN, 60, NULL},     /* expired 59 s ago: within skew */
                {NOW - 60, INT64_MIN, INT64_MIN, 60, "exp"},    /* expired exactly skew ago */
                {NOW + 60, NOW + 60, INT64_MIN, 60, NULL},      /* nbf exactly skew ahead */
                {NOW + 120, NOW + 61, INT64_MIN, 60, "nbf"},
                {NOW + 120, INT64_MIN, NOW + 60, 60, NULL},
                {NOW + 120, INT64_MIN, NOW + 61, 60, "iat"},
                {NOW + 1, NOW, NOW, 0, NULL},                   /* no skew */
                {NOW, INT64_MIN, INT64_MIN, 0, "exp"},          /* exp == now is expired */
                {NOW + 10, NOW + 1, INT64_MIN, 0, "nbf"},
                {NOW + 10, INT64_MIN, NOW + 1, 0, "iat"},
                {NOW - 299, NOW + 299, NOW + 300, 300, NULL},
                {NOW - 300, INT64_MIN, INT64_MIN, 300, "exp"},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *c = claims_t(ISS, "\"" AUD "\"", cases[i].exp, cases[i].nbf, cases[i].iat);
                _cleanup_free_ char *t = t_token(rsa, h, c);
                p.clock_skew_s = cases[i].skew;
                print_message("skew case %zu\n", i);
                if (cases[i].fail)
                        expect_reject_p(t, &p, -EACCES, cases[i].fail);
                else
                        expect_ok_p(t, &p);
        }
        /* skew outside 0..600 is a configuration error */
        _cleanup_free_ char *c = claims_ok();
        _cleanup_free_ char *t = t_token(rsa, h, c);
        p.clock_skew_s = -1;
        expect_reject_p(t, &p, -EINVAL, "params");
        p.clock_skew_s = 601;
        expect_reject_p(t, &p, -EINVAL, "params");
        params(&p);
        p.issuer = NULL;
        expect_reject_p(t, &p, -EINVAL, "params");
        params(&p);
        p.audience = "";
        expect_reject_p(t, &p, -EINVAL, "params");
        /* now = 0 means the real clock: NOW is in 2023, so this token is expired */
        params(&p);
        p.now = 0;
        expect_reject_p(t, &p, -EACCES, "exp");
}

static void test_alg_none(void **state) {
        _cleanup_free_ char *c = claims_ok();
        const char *headers[] = {"{\"alg\":\"none\"}", "{\"alg\":\"none\",\"kid\":\"rsa1\"}",
                                 "{\"alg\":\"None\",\"kid\":\"rsa1\"}", "{\"alg\":\"NONE\"}"};
        for (size_t i = 0; i < ELEMENTSOF(headers); i++) {
                _cleanup_free_ char *in = t_signing_input(headers[i], c);
                _cleanup_free_ char *t1 = t_join(in, "");       /* "h.c." as alg none sends it */
                expect_reject(t1, -EKEYREJECTED, "alg");
                _cleanup_free_ char *sig = t_sign(rsa, in);    /* even with a valid signature */
                _cleanup_free_ char *t2 = t_join(in, sig);
                expect_reject(t2, -EKEYREJECTED, "alg");
        }
        /* missing or non-string alg; other algorithms we do not allow */
        const char *bad[] = {"{\"kid\":\"rsa1\"}", "{\"alg\":256,\"kid\":\"rsa1\"}"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *in = t_signing_input(bad[i], c);
                _cleanup_free_ char *sig = t_sign(rsa, in);
                _cleanup_free_ char *t = t_join(in, sig);
                expect_reject(t, -EINVAL, "alg");
        }
        const char *other[] = {"{\"alg\":\"RS512\",\"kid\":\"rsa1\"}", "{\"alg\":\"PS256\",\"kid\":\"rsa1\"}",
                               "{\"alg\":\"rs256\",\"kid\":\"rsa1\"}", "{\"alg\":\"ES384\",\"kid\":\"ec1\"}"};
        for (size_t i = 0; i < ELEMENTSOF(other); i++) {
                _cleanup_free_ char *in = t_signing_input(other[i], c);
                _cleanup_free_ char *sig = t_sign(rsa, in);
                _cleanup_free_ char *t = t_join(in, sig);
                expect_reject(t, -EKEYREJECTED, "alg");
        }
}

static void test_hs256_confusion(void **state) {
        _cleanup_free_ char *c = claims_ok();
        const char *h = "{\"alg\":\"HS256\",\"kid\":\"rsa1\"}";
        _cleanup_free_ char *in = t_signing_input(h, c);

        /* the classic attack: HMAC keyed with the RSA public key's PEM */
        BIO *b = BIO_new(BIO_s_mem());
        assert_int_equal(PEM_write_bio_PUBKEY(b, rsa), 1);
        char *pem = NULL;
        long pemlen = BIO_get_mem_data(b, &pem);
        _cleanup_free_ char *sig1 = t_hs256(pem, (size_t)pemlen, in);
        BIO_free(b);
        _cleanup_free_ char *t1 = t_join(in, sig1);
        expect_reject(t1, -EKEYREJECTED, "alg");

        /* ... or with the JWK's modulus bytes, or the JWKS-published "n" text */
        BIGNUM *n = NULL;
        assert_int_equal(EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_N, &n), 1);
        uint8_t nb[256];
        assert_int_equal(BN_bn2binpad(n, nb, sizeof nb), 256);
        BN_free(n);
        _cleanup_free_ char *sig2 = t_hs256(nb, sizeof nb, in);
        _cleanup_free_ char *t2 = t_join(in, sig2);
        expect_reject(t2, -EKEYREJECTED, "alg");
        _cleanup_free_ char *ntext = t_b64(nb, sizeof nb);
        _cleanup_free_ char *sig3 = t_hs256(ntext, strlen(ntext), in);
        _cleanup_free_ char *t3 = t_join(in, sig3);
        expect_reject(t3, -EKEYREJECTED, "alg");

        /* HS384/HS512 likewise */
        _cleanup_free_ char *in4 = t_signing_input("{\"alg\":\"HS512\",\"kid\":\"rsa1\"}", c);
        _cleanup_free_ char *sig4 = t_hs256(nb, sizeof nb, in4);
        _cleanup_free_ char *t4 = t_join(in4, sig4);
        expect_reject(t4, -EKEYREJECTED, "alg");
}

static void test_alg_kty_mismatch(void **state) {
        _cleanup_free_ char *c = claims_ok();
        /* ES256 token naming the RSA key */
        _cleanup_free_ char *t1 = t_token(ec, "{\"alg\":\"ES256\",\"kid\":\"rsa1\"}", c);
        expect_reject(t1, -EKEYREJECTED, "key_alg");
        /* RS256 token naming the EC key */
        _cleanup_free_ char *t2 = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"ec1\"}", c);
        expect_reject(t2, -EKEYREJECTED, "key_alg");
}

static void test_header_rules(void **state) {
        _cleanup_free_ char *c = claims_ok();
        struct { const char *h; int err; const char *code; } cases[] = {
                {"{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"crit\":[\"exp\"],\"exp\":1}", -EKEYREJECTED, "crit"},
                {"{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"crit\":[]}", -EKEYREJECTED, "crit"},
                {"{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"b64\":false,\"crit\":[\"b64\"]}", -EKEYREJECTED, "crit"},
                {"{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"jku\":\"http://127.0.0.1:1/k\"}", -EKEYREJECTED, "header_key"},
                {"{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"x5u\":\"http://127.0.0.1:1/c\"}", -EKEYREJECTED, "header_key"},
                {"{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"jwk\":{\"kty\":\"RSA\"}}", -EKEYREJECTED, "header_key"},
                {"{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"x5c\":[\"MII\"]}", -EKEYREJECTED, "header_key"},
                {"{\"alg\":\"RS256\",\"kid\":5}", -EINVAL, "kid"},
                {"{\"alg\":\"RS256\",\"kid\":\"\"}", -EINVAL, "kid"},
                {"[\"RS256\"]", -EINVAL, "header"},
                {"\"RS256\"", -EINVAL, "header"},
                {"{\"alg\":\"RS256\",\"kid\":\"rsa1\"", -EINVAL, "header"},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                print_message("header case %zu\n", i);
                _cleanup_free_ char *t = t_token(rsa, cases[i].h, c);
                expect_reject(t, cases[i].err, cases[i].code);
        }
        /* an embedded jwk is refused even when it is the signer's own key */
        json_t *own = t_jwk(rsa_other, NULL, NULL);
        json_t *hdr = json_pack("{s:s, s:s, s:o}", "alg", "RS256", "kid", "rsa1", "jwk", own);
        _cleanup_free_ char *hs = json_dumps(hdr, JSON_COMPACT);
        json_decref(hdr);
        _cleanup_free_ char *t = t_token(rsa_other, hs, c);
        expect_reject(t, -EKEYREJECTED, "header_key");
        /* a long kid is bounded */
        char longkid[400];
        memset(longkid, 'k', sizeof longkid - 1);
        longkid[sizeof longkid - 1] = 0;
        _cleanup_free_ char *lh = NULL;
        assert_true(asprintf(&lh, "{\"alg\":\"RS256\",\"kid\":\"%s\"}", longkid) > 0);
        _cleanup_free_ char *t2 = t_token(rsa, lh, c);
        expect_reject(t2, -EINVAL, "kid");
        /* unknown kid: the lookup fails (the cache path is in test_verify_with_cache) */
        _cleanup_free_ char *t3 = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"nope\"}", c);
        assert_int_equal(verify(t3, NULL, NULL), -ENOKEY);
}

static void test_claims_json(void **state) {
        const char *h = "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}";
        struct { const char *c; } cases[] = {
                {"{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1700000300,\"sub\":\"a\",\"sub\":\"admin\"}"},
                {"{\"iss\":\"https://evil\",\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1700000300}"},
                {"[1,2]"},
                {"{\"iss\":\"" ISS "\""},
                {"{\"iss\":\"" ISS "\"} trailing"},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                print_message("claims case %zu\n", i);
                _cleanup_free_ char *t = t_token(rsa, h, cases[i].c);
                expect_reject(t, -EINVAL, "claims");
        }
        /* nested duplicates too */
        _cleanup_free_ char *t = t_token(rsa, h, "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1700000300,"
                                                 "\"groups\":{\"a\":1,\"a\":2}}");
        expect_reject(t, -EINVAL, "claims");
}

static void test_duplicate_header_keys(void **state) {
        _cleanup_free_ char *c = claims_ok();
        _cleanup_free_ char *t1 = t_token(rsa, "{\"alg\":\"RS256\",\"alg\":\"none\",\"kid\":\"rsa1\"}", c);
        expect_reject(t1, -EINVAL, "header");
        _cleanup_free_ char *t2 = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"ec1\",\"kid\":\"rsa1\"}", c);
        expect_reject(t2, -EINVAL, "header");
}

static void test_oversize(void **state) {
        /* a big but allowed token verifies */
        char pad[9000];
        memset(pad, 'x', sizeof pad - 1);
        pad[sizeof pad - 1] = 0;
        _cleanup_free_ char *c1 = NULL;
        assert_true(asprintf(&c1, "{\"sub\":\"user-42\",\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%d,\"pad\":\"%s\"}",
                             NOW + 300, pad) > 0);
        _cleanup_free_ char *t1 = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c1);
        assert_true(strlen(t1) < JWT_MAX_TOKEN_LEN);
        expect_ok(t1);
        /* one over the limit is refused before any parsing */
        char big[14000];
        memset(big, 'y', sizeof big - 1);
        big[sizeof big - 1] = 0;
        _cleanup_free_ char *c2 = NULL;
        assert_true(asprintf(&c2, "{\"sub\":\"user-42\",\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%d,\"pad\":\"%s\"}",
                             NOW + 300, big) > 0);
        _cleanup_free_ char *t2 = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c2);
        assert_true(strlen(t2) > JWT_MAX_TOKEN_LEN);
        expect_reject(t2, -EMSGSIZE, "token_size");
        /* exactly at the limit is not a size error (it is junk otherwise) */
        _cleanup_free_ char *junk = malloc(JWT_MAX_TOKEN_LEN + 2);
        memset(junk, 'A', JWT_MAX_TOKEN_LEN + 1);
        junk[JWT_MAX_TOKEN_LEN] = 0;
        struct err_detail e = {};
        struct jwt_decoded *d = NULL;
        assert_int_equal(jwt_decode(junk, JWT_MAX_TOKEN_LEN, &d, &e), -EINVAL);
        assert_string_equal(e.code, "token_format");
        assert_int_equal(jwt_decode(junk, JWT_MAX_TOKEN_LEN + 1, &d, &e), -EMSGSIZE);
        assert_string_equal(e.code, "token_size");
        assert_null(d);
}

static void test_malformed(void **state) {
        _cleanup_free_ char *c = claims_ok();
        _cleanup_free_ char *good = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c);
        const char *d1 = strchr(good, '.'), *d2 = strrchr(good, '.');
        _cleanup_free_ char *h = strndup(good, (size_t)(d1 - good));
        _cleanup_free_ char *p = strndup(d1 + 1, (size_t)(d2 - d1 - 1));
        const char *s = d2 + 1;
        struct { char *tok; const char *code; } cases[] = {
                {NULL, "token_format"},
                {strdup(""), "token_format"},
                {strdup("abc"), "token_format"},
                {strdup("a.b"), "token_format"},
                {NULL, "token_format"},     /* four parts */
                {NULL, "token_format"},     /* empty header */
                {NULL, "token_format"},     /* empty payload */
                {NULL, "token_format"},     /* empty signature */
                {NULL, "base64url"},        /* '=' padding on header */
                {NULL, "base64url"},        /* standard alphabet '+' */
                {NULL, "base64url"},        /* standard alphabet '/' in signature */
                {NULL, "base64url"},        /* whitespace */
                {NULL, "base64url"},        /* length 1 mod 4 */
                {NULL, "base64url"},        /* non-canonical trailing bits */
                {NULL, "base64url"},        /* NUL inside */
        };
        assert_true(asprintf(&cases[0].tok, " %s", good) > 0);
        cases[0].code = "base64url";
        assert_true(asprintf(&cases[4].tok, "%s.%s", good, s) > 0);
        assert_true(asprintf(&cases[5].tok, ".%s.%s", p, s) > 0);
        assert_true(asprintf(&cases[6].tok, "%s..%s", h, s) > 0);
        assert_true(asprintf(&cases[7].tok, "%s.%s.", h, p) > 0);
        assert_true(asprintf(&cases[8].tok, "%s=.%s.%s", h, p, s) > 0);
        assert_true(asprintf(&cases[9].tok, "%s.%s+.%s", h, p, s) > 0);
        cases[10].tok = strdup(good);
        strrchr(cases[10].tok, '.')[3] = '/';
        assert_true(asprintf(&cases[11].tok, "%s.%s .%s", h, p, s) > 0);
        {
                size_t extra = (5 - strlen(h) % 4) % 4;        /* makes the header 1 mod 4 long */
                assert_true(asprintf(&cases[12].tok, "%s%.*s.%s.%s", h, (int)extra, "AAAA", p, s) > 0);
                assert_int_equal((strchr(cases[12].tok, '.') - cases[12].tok) % 4, 1);
        }
        /* 256-byte signature: 342 characters, the last one carries 4 unused bits */
        cases[13].tok = strdup(good);
        char *last = cases[13].tok + strlen(cases[13].tok) - 1;
        int v = *last >= 'A' && *last <= 'Z' ? *last - 'A' : *last >= 'a' && *last <= 'z' ? *last - 'a' + 26
                : *last >= '0' && *last <= '9' ? *last - '0' + 52 : *last == '-' ? 62 : 63;
        assert_int_equal(v & 15, 0);
        *last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[v | 1];
        cases[14].tok = strdup(good);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                print_message("malformed case %zu\n", i);
                size_t len = strlen(cases[i].tok);
                if (i == 14) {
                        cases[i].tok[3] = 0;    /* embedded NUL, length says it is there */
                        len = strlen(good);
                }
                struct err_detail e = {};
                struct jwt_decoded *d = NULL;
                int r = jwt_decode(cases[i].tok, len, &d, &e);
                if (r != -EINVAL || strcmp(e.code, cases[i].code) != 0)
                        fail_msg("case %zu: expected -EINVAL/%s, got %d/%s", i, cases[i].code, r, e.code);
                assert_null(d);
                free(cases[i].tok);
        }
        struct jwt_decoded *d = NULL;
        assert_int_equal(jwt_decode(NULL, 0, &d, NULL), -EINVAL);
}

static void test_base64url(void **state) {
        uint8_t buf[64];
        char enc[96];
        for (size_t n = 0; n <= 40; n++) {
                uint8_t in[40] = {0};
                for (size_t i = 0; i < n; i++)
                        in[i] = (uint8_t)(i * 37 + n);
                size_t el = b64url_encode(in, n, enc);
                assert_int_equal(el, B64URL_ENCODED_LEN(n));
                assert_null(strchr(enc, '='));
                assert_int_equal(b64url_decode(enc, el, buf), (int)n);
                assert_memory_equal(buf, in, n);
        }
        assert_int_equal(b64url_decode("", 0, buf), 0);
        assert_int_equal(b64url_decode("-_-_", 4, buf), 3);
        assert_int_equal(buf[0], 0xfb);
        assert_int_equal(b64url_decode("+/+/", 4, buf), -EINVAL);
        assert_int_equal(b64url_decode("QQ==", 4, buf), -EINVAL);
        assert_int_equal(b64url_decode("QQ", 2, buf), 1);
        assert_int_equal(b64url_decode("QR", 2, buf), -EINVAL);         /* trailing bits */
        assert_int_equal(b64url_decode("QUI", 3, buf), 2);
        assert_int_equal(b64url_decode("QUJ", 3, buf), -EINVAL);
        assert_int_equal(b64url_decode("QUJDR", 5, buf), -EINVAL);      /* 1 mod 4 */
        assert_int_equal(b64url_decode("QU I", 4, buf), -EINVAL);
}

static void test_verify_with_cache(void **state) {
        json_t *keys[] = {t_jwk(rsa, "rsa1", NULL), t_jwk(ec, "ec1", "ES256")};
        _cleanup_free_ char *doc = t_jwks_doc(ELEMENTSOF(keys), keys);
        struct t_http *srv = t_http_start(doc);
        struct jwks_cache_config cfg = {.url = srv->url};
        struct jwks_cache *cache = NULL;
        assert_int_equal(jwks_cache_new(&cfg, &cache, NULL), 0);
        struct jwt_verify_params p;
        params(&p);
        _cleanup_free_ char *c = claims_ok();
        _cleanup_free_ char *t1 = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c);
        _cleanup_free_ char *t2 = t_token(ec, "{\"alg\":\"ES256\",\"kid\":\"ec1\"}", c);
        json_t *claims = NULL;
        struct err_detail e = {};
        assert_int_equal(jwt_verify(t1, strlen(t1), cache, &p, &claims, &e), 0);
        assert_string_equal(json_string_value(json_object_get(claims, "sub")), "user-42");
        json_decref(claims);
        assert_int_equal(jwt_verify(t2, strlen(t2), cache, &p, NULL, &e), 0);
        assert_int_equal(t_http_requests(srv), 1);
        /* a malformed or refused header never reaches the cache (no fetch) */
        _cleanup_free_ char *t3 = t_token(rsa, "{\"alg\":\"HS256\",\"kid\":\"zzz\"}", c);
        assert_int_equal(jwt_verify(t3, strlen(t3), cache, &p, NULL, &e), -EKEYREJECTED);
        /* unknown kid within the rate-limit window: -ENOKEY without a fetch */
        _cleanup_free_ char *t4 = t_token(rsa, "{\"alg\":\"RS256\",\"kid\":\"rotated\"}", c);
        assert_int_equal(jwt_verify(t4, strlen(t4), cache, &p, NULL, &e), -ENOKEY);
        assert_string_equal(e.code, "kid");
        assert_int_equal(t_http_requests(srv), 1);
        assert_int_equal(jwks_cache_fetch_count(cache), 1);
        jwks_cache_free(cache);
        t_http_stop(srv);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_base64url),
                cmocka_unit_test(test_valid_rs256),
                cmocka_unit_test(test_valid_es256),
                cmocka_unit_test(test_aud_array),
                cmocka_unit_test(test_wrong_signature),
                cmocka_unit_test(test_wrong_iss),
                cmocka_unit_test(test_wrong_aud),
                cmocka_unit_test(test_expired),
                cmocka_unit_test(test_nbf_iat_future),
                cmocka_unit_test(test_skew_boundaries),
                cmocka_unit_test(test_alg_none),
                cmocka_unit_test(test_hs256_confusion),
                cmocka_unit_test(test_alg_kty_mismatch),
                cmocka_unit_test(test_header_rules),
                cmocka_unit_test(test_claims_json),
                cmocka_unit_test(test_duplicate_header_keys),
                cmocka_unit_test(test_oversize),
                cmocka_unit_test(test_malformed),
                cmocka_unit_test(test_verify_with_cache),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

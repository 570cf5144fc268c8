#include "auth/jwt.h"

#include <errno.h>
#include <math.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/base64url.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_MD_CTX *, EVP_MD_CTX_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(ECDSA_SIG *, ECDSA_SIG_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(BIGNUM *, BN_free);
static inline void openssl_freep(unsigned char **p) { OPENSSL_free(*p); }

struct jwt_decoded {
        json_t *header, *claims;
        enum jwk_alg alg;
        const char *kid;                /* borrowed from header */
        char *signing_input;            /* base64url(header) "." base64url(claims) */
        size_t signing_input_len;
        uint8_t *sig;
        size_t siglen;
};

void jwt_verify_params_init(struct jwt_verify_params *p) {
        *p = (struct jwt_verify_params){.clock_skew_s = JWT_DEFAULT_CLOCK_SKEW};
}

struct jwt_decoded *jwt_decoded_free(struct jwt_decoded *t) {
        if (!t)
                return NULL;
        json_decref(t->header);
        json_decref(t->claims);
        free(t->signing_input);
        free(t->sig);
        free(t);
        return NULL;
}

const char *jwt_decoded_kid(const struct jwt_decoded *t) { return t->kid; }
const json_t *jwt_decoded_claims(const struct jwt_decoded *t) {
        return t ? t->claims : NULL;
}

enum jwk_alg jwt_decoded_alg(const struct jwt_decoded *t) { return t->alg; }

/* Decodes one base64url part into a fresh buffer (NUL-terminated for JSON). */
static int jwt_part_decode(const char *s, size_t n, uint8_t **ret, size_t *ret_len) {
        _cleanup_free_ uint8_t *buf = malloc(B64URL_DECODED_LEN(n) + 1);
        if (!buf)
                return -ENOMEM;
        int r = b64url_decode(s, n, buf);
        if (r < 0)
                return r;
        buf[r] = 0;
        *ret_len = (size_t)r;
        *ret = TAKE_PTR(buf);
        return 0;
}

static int jwt_part_json(const char *s, size_t n, const char *what, json_t **ret, struct err_detail *reterr) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r = jwt_part_decode(s, n, &buf, &len);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return err_set(reterr, -EINVAL, "base64url", "token %s is not strict base64url", what);
        json_error_t jerr;
        json_t *j = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!j)
                return err_set(reterr, -EINVAL, what, "token %s is not valid json (%s)", what, jerr.text);
        if (!json_is_object(j)) {
                json_decref(j);
                return err_set(reterr, -EINVAL, what, "token %s is not a json object", what);
        }
        *ret = j;
        return 0;
}

static int jwt_check_header(struct jwt_decoded *t, struct err_detail *reterr) {
        json_t *alg = json_object_get(t->header, "alg");
        if (!json_is_string(alg))
                return err_set(reterr, -EINVAL, "alg", "token header has no \"alg\" string");
        if (strcasecmp(json_string_value(alg), "none") == 0)
                return err_set(reterr, -EKEYREJECTED, "alg", "unsigned tokens (alg none) are not accepted");
        if (jwk_alg_from_string(json_string_value(alg), &t->alg) < 0)
                return err_set(reterr, -EKEYREJECTED, "alg", "token alg is not one of RS256, ES256");
        /* We implement no JWS extension, so any critical one must fail (RFC 7515 §4.1.11). */
        if (json_object_get(t->header, "crit"))
                return err_set(reterr, -EKEYREJECTED, "crit", "token header has \"crit\" extensions");
        /* Keys come from the configured JWKS only; a token naming its own key
         * (or where to fetch one) would let anyone sign. */
        static const char *const key_members[] = {"jwk", "jku", "x5u", "x5c"};
        for (size_t i = 0; i < ELEMENTSOF(key_members); i++)
                if (json_object_get(t->header, key_members[i]))
                        return err_set(reterr, -EKEYREJECTED, "header_key",
                                       "token header carries a key reference (\"%s\")", key_members[i]);
        json_t *kid = json_object_get(t->header, "kid");
        if (kid) {
                if (!json_is_string(kid) || json_string_length(kid) == 0 || json_string_length(kid) > JWKS_MAX_KID_LEN)
                        return err_set(reterr, -EINVAL, "kid", "token \"kid\" must be a string of 1 to %d characters",
                                       JWKS_MAX_KID_LEN);
                t->kid = json_string_value(kid);
        }
        return 0;
}

int jwt_decode(const char *token, size_t len, struct jwt_decoded **ret, struct err_detail *reterr) {
        if (!token || len == 0)
                return err_set(reterr, -EINVAL, "token_format", "token is empty");
        if (len > JWT_MAX_TOKEN_LEN)
                return err_set(reterr, -EMSGSIZE, "token_size", "token of %zu bytes exceeds %u bytes", len,
                               JWT_MAX_TOKEN_LEN);
        const char *d1 = memchr(token, '.', len);
        const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
        if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
                return err_set(reterr, -EINVAL, "token_format", "token is not three dot-separated parts");
        size_t hlen = (size_t)(d1 - token), plen = (size_t)(d2 - d1 - 1), slen = len - (size_t)(d2 + 1 - token);
        if (hlen == 0 || plen == 0)
                return err_set(reterr, -EINVAL, "token_format", "token has an empty header or payload");

        _cleanup_(jwt_decoded_freep) struct jwt_decoded *t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        int r = jwt_part_json(token, hlen, "header", &t->header, reterr);
        if (r < 0)
                return r;
        r = jwt_check_header(t, reterr);
        if (r < 0)
                return r;
        r = jwt_part_json(d1 + 1, plen, "claims", &t->claims, reterr);
        if (r < 0)
                return r;
        /* Checked after alg so that "alg":"none" tokens report the real reason. */
        if (slen == 0)
                return err_set(reterr, -EINVAL, "token_format", "token has no signature");
        r = jwt_part_decode(d2 + 1, slen, &t->sig, &t->siglen);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return err_set(reterr, -EINVAL, "base64url", "token signature is not strict base64url");
        t->signing_input_len = (size_t)(d2 - token);
        t->signing_input = strndup(token, t->signing_input_len);
        if (!t->signing_input)
                return -ENOMEM;
        *ret = TAKE_PTR(t);
        return 0;
}

/* JOSE carries ECDSA signatures as fixed-size r || s (RFC 7518 §3.4); OpenSSL
 * verifies DER. Returns the DER length with *ret_der (OPENSSL_free) or < 0. */
static int jwt_es256_to_der(const uint8_t *sig, size_t siglen, unsigned char **ret_der) {
        if (siglen != 64)
                return -EBADMSG;
        _cleanup_(ECDSA_SIG_freep) ECDSA_SIG *es = ECDSA_SIG_new();
        _cleanup_(BN_freep) BIGNUM *r = BN_bin2bn(sig, 32, NULL);
        _cleanup_(BN_freep) BIGNUM *s = BN_bin2bn(sig + 32, 32, NULL);
        if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s))
                return -ENOMEM;
        r = s = NULL;   /* owned by es now */
        unsigned char *der = NULL;
        int n = i2d_ECDSA_SIG(es, &der);
        if (n <= 0)
                return -ENOMEM;
        *ret_der = der;
        return n;
}

static int jwt_check_signature(const struct jwt_decoded *t, const struct jwk *key, struct err_detail *reterr) {
        EVP_PKEY *pkey = jwk_pkey(key);
        _cleanup_(openssl_freep) unsigned char *der = NULL;
        const unsigned char *sig = t->sig;
        size_t siglen = t->siglen;
        if (t->alg == JWK_ALG_ES256) {
                int n = jwt_es256_to_der(t->sig, t->siglen, &der);
                if (n == -ENOMEM)
                        return n;
                if (n < 0)
                        return err_set(reterr, -EBADMSG, "signature", "es256 signature must be 64 bytes (r || s)");
                sig = der;
                siglen = (size_t)n;
        } else if (siglen != (size_t)EVP_PKEY_get_size(pkey))
                return err_set(reterr, -EBADMSG, "signature", "rs256 signature length does not match the key");

        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL;      /* owned by md */
        if (!md)
                return -ENOMEM;
        if (EVP_DigestVerifyInit_ex(md, &pctx, "SHA256", NULL, NULL, pkey, NULL) != 1)
                return err_set(reterr, -EBADMSG, "signature", "could not initialise signature verification");
        if (t->alg == JWK_ALG_RS256 && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1)
                return err_set(reterr, -EBADMSG, "signature", "could not select pkcs#1 v1.5 padding");
        if (EVP_DigestVerify(md, sig, siglen, (const unsigned char *)t->signing_input, t->signing_input_len) != 1)
                return err_set(reterr, -EBADMSG, "signature", "token signature does not verify");
        return 0;
}

/* Reads an optional NumericDate claim. Returns 1 (present, *ret set), 0 (absent)
 * or -EACCES (present but not a finite number). */
static int jwt_numeric_date(json_t *claims, const char *name, double *ret, struct err_detail *reterr) {
        json_t *v = json_object_get(claims, name);
        if (!v)
                return 0;
        if (!json_is_number(v) || !isfinite(json_number_value(v)))
                return err_set(reterr, -EACCES, name, "claim \"%s\" is not a number", name);
        *ret = json_number_value(v);
        return 1;
}

static int jwt_check_claims(json_t *claims, const struct jwt_verify_params *p, struct err_detail *reterr) {
        const char *iss = json_string_value(json_object_get(claims, "iss"));
        if (!iss || strcmp(iss, p->issuer) != 0)
                return err_set(reterr, -EACCES, "iss", "token issuer does not match the configured issuer");

        json_t *aud = json_object_get(claims, "aud");
        bool aud_ok = false;
        if (json_is_string(aud))
                aud_ok = strcmp(json_string_value(aud), p->audience) == 0;
        else if (json_is_array(aud)) {
                size_t i;
                json_t *a;
                json_array_foreach(aud, i, a)
                        if (json_is_string(a) && strcmp(json_string_value(a), p->audience) == 0)
                                aud_ok = true;
        }
        if (!aud_ok)
                return err_set(reterr, -EACCES, "aud", "token audience does not contain the configured audience");

        double now = (double)(p->now ? p->now : (int64_t)time(NULL));
        double skew = (double)p->clock_skew_s, v = 0;
        int r = jwt_numeric_date(claims, "exp", &v, reterr);
        if (r < 0)
                return r;
        if (r == 0)
                return err_set(reterr, -EACCES, "exp", "token has no \"exp\" claim");
        if (now >= v + skew)
                return err_set(reterr, -EACCES, "exp", "token has expired");
        r = jwt_numeric_date(claims, "nbf", &v, reterr);
        if (r < 0)
                return r;
        if (r > 0 && v > now + skew)
                return err_set(reterr, -EACCES, "nbf", "token is not valid yet (nbf in the future)");
        r = jwt_numeric_date(claims, "iat", &v, reterr);
        if (r < 0)
                return r;
        if (r > 0 && v > now + skew)
                return err_set(reterr, -EACCES, "iat", "token was issued in the future (iat)");
        return 0;
}

int jwt_verify_decoded(const struct jwt_decoded *t, const struct jwk *key, const struct jwt_verify_params *p,
                       json_t **ret_claims, struct err_detail *reterr) {
        if (!p || !p->issuer || !*p->issuer || !p->audience || !*p->audience)
                return err_set(reterr, -EINVAL, "params", "issuer and audience must be configured");
        if (p->clock_skew_s < 0 || p->clock_skew_s > JWT_MAX_CLOCK_SKEW)
                return err_set(reterr, -EINVAL, "params", "clock skew must be 0..%d seconds", JWT_MAX_CLOCK_SKEW);
        /* The key's type alone decides the algorithm (RFC 8725 §3.1), never the
         * token: this is what defeats HS256-with-the-RSA-key and friends. */
        if (jwk_alg(key) != t->alg)
                return err_set(reterr, -EKEYREJECTED, "key_alg", "token alg does not match the key type of its kid");
        int r = jwt_check_signature(t, key, reterr);
        if (r < 0)
                return r;
        r = jwt_check_claims(t->claims, p, reterr);
        if (r < 0)
                return r;
        if (ret_claims)
                *ret_claims = json_incref(t->claims);
        return 0;
}

int jwt_verify(const char *token, size_t len, struct jwks_cache *cache, const struct jwt_verify_params *p,
               json_t **ret_claims, struct err_detail *reterr) {
        _cleanup_(jwt_decoded_freep) struct jwt_decoded *t = NULL;
        int r = jwt_decode(token, len, &t, reterr);
        if (r < 0)
                return r;
        _cleanup_(jwk_unrefp) struct jwk *key = NULL;
        r = jwks_cache_get_key(cache, t->kid, &key, reterr);
        if (r < 0)
                return r;
        return jwt_verify_decoded(t, key, p, ret_claims, reterr);
}

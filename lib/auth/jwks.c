#include "auth/jwks.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "auth/base64url.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(BIGNUM *, BN_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_PKEY *, EVP_PKEY_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_PKEY_CTX *, EVP_PKEY_CTX_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(OSSL_PARAM_BLD *, OSSL_PARAM_BLD_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(OSSL_PARAM *, OSSL_PARAM_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(CURL *, curl_easy_cleanup);
DEFINE_TRIVIAL_CLEANUP_FUNC(CURLU *, curl_url_cleanup);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct curl_slist *, curl_slist_free_all);
static inline void curl_freep(char **p) { if (*p) curl_free(*p); }

#define JWKS_MAX_URL_LEN 2048
#define JWKS_RSA_MIN_BITS 2048
/* An 8192-bit modulus is already far beyond any provider's key; the bound keeps
 * a hostile JWKS from making every verification expensive. */
#define JWKS_RSA_MAX_BITS 8192
#define JWKS_MAX_B64_MEMBER 1400

struct jwk {
        atomic_uint refs;
        enum jwk_alg alg;
        char *kid;
        EVP_PKEY *pkey;
};

struct jwks {
        size_t n;
        struct jwk *keys[JWKS_MAX_KEYS];
};

const char *jwk_alg_to_string(enum jwk_alg alg) {
        switch (alg) {
        case JWK_ALG_RS256: return "RS256";
        case JWK_ALG_ES256: return "ES256";
        }
        return NULL;
}

int jwk_alg_from_string(const char *s, enum jwk_alg *ret) {
        if (!s)
                return -EINVAL;
        if (strcmp(s, "RS256") == 0)
                *ret = JWK_ALG_RS256;
        else if (strcmp(s, "ES256") == 0)
                *ret = JWK_ALG_ES256;
        else
                return -EINVAL;
        return 0;
}

struct jwk *jwk_ref(struct jwk *key) {
        if (key)
                atomic_fetch_add(&key->refs, 1);
        return key;
}

struct jwk *jwk_unref(struct jwk *key) {
        if (!key)
                return NULL;
        if (atomic_fetch_sub(&key->refs, 1) == 1) {
                EVP_PKEY_free(key->pkey);
                free(key->kid);
                free(key);
        }
        return NULL;
}

const char *jwk_kid(const struct jwk *key) { return key->kid; }
enum jwk_alg jwk_alg(const struct jwk *key) { return key->alg; }
EVP_PKEY *jwk_pkey(const struct jwk *key) { return key->pkey; }

struct jwks *jwks_free(struct jwks *set) {
        if (!set)
                return NULL;
        for (size_t i = 0; i < set->n; i++)
                jwk_unref(set->keys[i]);
        free(set);
        return NULL;
}

size_t jwks_size(const struct jwks *set) { return set ? set->n : 0; }

struct jwk *jwks_find(const struct jwks *set, const char *kid) {
        if (!set)
                return NULL;
        if (!kid || !*kid)
                return set->n == 1 ? jwk_ref(set->keys[0]) : NULL;
        for (size_t i = 0; i < set->n; i++)
                if (strcmp(set->keys[i]->kid, kid) == 0)
                        return jwk_ref(set->keys[i]);
        return NULL;
}

/* Decodes base64url member `name` of k into a fresh buffer of at most max
 * decoded bytes. Returns the length, -ENOENT (absent) or -EINVAL. */
static int jwk_member_bytes(json_t *k, const char *name, uint8_t *buf, size_t bufsize) {
        json_t *v = json_object_get(k, name);
        if (!v)
                return -ENOENT;
        if (!json_is_string(v))
                return -EINVAL;
        size_t n = json_string_length(v);
        if (n == 0 || n > JWKS_MAX_B64_MEMBER || B64URL_DECODED_LEN(n) > bufsize)
                return -EINVAL;
        return b64url_decode(json_string_value(v), n, buf);
}

static int jwk_new_rsa(json_t *k, size_t idx, EVP_PKEY **ret, struct err_detail *reterr) {
        uint8_t nbuf[JWKS_MAX_B64_MEMBER], ebuf[8];
        int nlen = jwk_member_bytes(k, "n", nbuf, sizeof nbuf);
        if (nlen < 0)
                return err_set(reterr, -EINVAL, "jwks", "key %zu: rsa member \"n\" is missing or not base64url", idx);
        int elen = jwk_member_bytes(k, "e", ebuf, sizeof ebuf);
        if (elen < 0)
                return err_set(reterr, -EINVAL, "jwks", "key %zu: rsa member \"e\" is missing or not base64url", idx);

        _cleanup_(BN_freep) BIGNUM *n = BN_bin2bn(nbuf, nlen, NULL);
        _cleanup_(BN_freep) BIGNUM *e = BN_bin2bn(ebuf, elen, NULL);
        if (!n || !e)
                return -ENOMEM;
        int bits = BN_num_bits(n);
        if (bits < JWKS_RSA_MIN_BITS || bits > JWKS_RSA_MAX_BITS)
                return err_set(reterr, -EINVAL, "jwks", "key %zu: rsa modulus has %d bits, need %d to %d",
                               idx, bits, JWKS_RSA_MIN_BITS, JWKS_RSA_MAX_BITS);
        if (!BN_is_odd(n))
                return err_set(reterr, -EINVAL, "jwks", "key %zu: rsa modulus is even", idx);
        if (BN_num_bits(e) > 31 || !BN_is_odd(e) || BN_get_word(e) < 3)
                return err_set(reterr, -EINVAL, "jwks", "key %zu: rsa exponent must be odd and in 3..2^31-1", idx);

        _cleanup_(OSSL_PARAM_BLD_freep) OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        if (!bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
                return -ENOMEM;
        _cleanup_(OSSL_PARAM_freep) OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
        _cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
        if (!params || !ctx)
                return -ENOMEM;
        EVP_PKEY *pkey = NULL;
        if (EVP_PKEY_fromdata_init(ctx) <= 0 || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
                return err_set(reterr, -EINVAL, "jwks", "key %zu: rsa key rejected by openssl", idx);
        *ret = pkey;
        return 0;
}

static int jwk_new_ec_p256(json_t *k, size_t idx, EVP_PKEY **ret, struct err_detail *reterr) {
        /* SEC1 uncompressed point: 0x04 || x || y, each coordinate exactly 32 bytes
         * as RFC 7518 §6.2.1.2 requires. */
        uint8_t pt[1 + 64], buf[48];
        int xlen = jwk_member_bytes(k, "x", buf, sizeof buf);
        if (xlen != 32)
                return err_set(reterr, -EINVAL, "jwks", "key %zu: ec member \"x\" must be 32 bytes of base64url", idx);
        memcpy(pt + 1, buf, 32);
        int ylen = jwk_member_bytes(k, "y", buf, sizeof buf);
        if (ylen != 32)
                return err_set(reterr, -EINVAL, "jwks", "key %zu: ec member \"y\" must be 32 bytes of base64url", idx);
        memcpy(pt + 33, buf, 32);
        pt[0] = 0x04;

        _cleanup_(OSSL_PARAM_BLD_freep) OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
            !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt))
                return -ENOMEM;
        _cleanup_(OSSL_PARAM_freep) OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
        _cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        if (!params || !ctx)
                return -ENOMEM;
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
        if (EVP_PKEY_fromdata_init(ctx) <= 0 || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
                return err_set(reterr, -EINVAL, "jwks", "key %zu: ec point rejected (not on p-256?)", idx);
        /* Explicitly check the point is on the curve and not the identity: an
         * invalid-curve point must never reach ECDSA verification. */
        _cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *chk = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (!chk)
                return -ENOMEM;
        if (EVP_PKEY_public_check(chk) != 1)
                return err_set(reterr, -EINVAL, "jwks", "key %zu: ec point is not a valid p-256 public key", idx);
        *ret = TAKE_PTR(pkey);
        return 0;
}

static bool json_string_array_contains(json_t *a, const char *s) {
        size_t i;
        json_t *v;
        json_array_foreach(a, i, v)
                if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
                        return true;
        return false;
}

/* Parses one JWK. Returns 1 with *ret set for a usable key, 0 for a key to skip,
 * or a negative errno for a malformed one. */
static int jwk_parse_one(json_t *k, size_t idx, struct jwk **ret, struct err_detail *reterr) {
        if (!json_is_object(k))
                return err_set(reterr, -EINVAL, "jwks", "key %zu is not an object", idx);
        const char *kty = json_string_value(json_object_get(k, "kty"));
        if (!kty)
                return err_set(reterr, -EINVAL, "jwks", "key %zu: \"kty\" is missing or not a string", idx);
        /* A published private key is a provider misconfiguration worth failing
         * loudly on, not something to silently use or ignore. */
        if (json_object_get(k, "d"))
                return err_set(reterr, -EINVAL, "jwks", "key %zu: jwks contains private key material", idx);

        json_t *kid = json_object_get(k, "kid");
        if (kid && (!json_is_string(kid) || json_string_length(kid) == 0 ||
                    json_string_length(kid) > JWKS_MAX_KID_LEN ||
                    strlen(json_string_value(kid)) != json_string_length(kid)))
                return err_set(reterr, -EINVAL, "jwks", "key %zu: \"kid\" must be a string of 1 to %d characters",
                               idx, JWKS_MAX_KID_LEN);
        json_t *use = json_object_get(k, "use");
        if (use && !json_is_string(use))
                return err_set(reterr, -EINVAL, "jwks", "key %zu: \"use\" is not a string", idx);
        if (use && strcmp(json_string_value(use), "sig") != 0)
                return 0;       /* "enc" or unknown: never a signature key */
        json_t *ops = json_object_get(k, "key_ops");
        if (ops && !json_is_array(ops))
                return err_set(reterr, -EINVAL, "jwks", "key %zu: \"key_ops\" is not an array", idx);
        if (ops && !json_string_array_contains(ops, "verify"))
                return 0;
        json_t *alg = json_object_get(k, "alg");
        if (alg && !json_is_string(alg))
                return err_set(reterr, -EINVAL, "jwks", "key %zu: \"alg\" is not a string", idx);

        enum jwk_alg a;
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
        int r;
        if (strcmp(kty, "RSA") == 0) {
                a = JWK_ALG_RS256;
                if (alg && strcmp(json_string_value(alg), "RS256") != 0)
                        return 0;       /* RS384/PS256/...: not supported, so not usable */
                r = jwk_new_rsa(k, idx, &pkey, reterr);
        } else if (strcmp(kty, "EC") == 0) {
                a = JWK_ALG_ES256;
                const char *crv = json_string_value(json_object_get(k, "crv"));
                if (!crv)
                        return err_set(reterr, -EINVAL, "jwks", "key %zu: ec \"crv\" is missing", idx);
                if (strcmp(crv, "P-256") != 0)
                        return 0;
                if (alg && strcmp(json_string_value(alg), "ES256") != 0)
                        return 0;
                r = jwk_new_ec_p256(k, idx, &pkey, reterr);
        } else
                return 0;       /* oct, OKP, ...: symmetric keys must never verify */
        if (r < 0)
                return r;

        _cleanup_free_ struct jwk *key = calloc(1, sizeof *key);
        if (!key)
                return -ENOMEM;
        key->kid = strdup(kid ? json_string_value(kid) : "");
        if (!key->kid)
                return -ENOMEM;
        atomic_init(&key->refs, 1);
        key->alg = a;
        key->pkey = TAKE_PTR(pkey);
        *ret = TAKE_PTR(key);
        return 1;
}

int jwks_parse(const char *json, size_t len, struct jwks **ret, struct err_detail *reterr) {
        if (len > JWKS_MAX_DOC_SIZE_DEFAULT)
                return err_set(reterr, -EMSGSIZE, "jwks", "jwks document of %zu bytes exceeds %u bytes", len,
                               JWKS_MAX_DOC_SIZE_DEFAULT);
        json_error_t jerr;
        _cleanup_(json_decrefp) json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc)
                return err_set(reterr, -EINVAL, "jwks", "jwks is not valid json: %s at offset %d", jerr.text,
                               jerr.position);
        json_t *keys = json_object_get(doc, "keys");
        if (!json_is_object(doc) || !json_is_array(keys))
                return err_set(reterr, -EINVAL, "jwks", "jwks has no \"keys\" array");
        if (json_array_size(keys) > JWKS_MAX_KEYS)
                return err_set(reterr, -EINVAL, "jwks", "jwks has %zu keys, at most %d allowed",
                               json_array_size(keys), JWKS_MAX_KEYS);

        _cleanup_(jwks_freep) struct jwks *set = calloc(1, sizeof *set);
        if (!set)
                return -ENOMEM;
        size_t i;
        json_t *k;
        json_array_foreach(keys, i, k) {
                struct jwk *key = NULL;
                int r = jwk_parse_one(k, i, &key, reterr);
                if (r < 0)
                        return r;
                if (r > 0)
                        set->keys[set->n++] = key;
        }
        for (size_t a = 0; a < set->n && set->n > 1; a++) {
                if (!*set->keys[a]->kid)
                        return err_set(reterr, -EINVAL, "jwks",
                                       "jwks has %zu usable keys and one of them has no \"kid\"", set->n);
                for (size_t b = a + 1; b < set->n; b++)
                        if (strcmp(set->keys[a]->kid, set->keys[b]->kid) == 0)
                                return err_set(reterr, -EINVAL, "jwks", "jwks has two keys with the same \"kid\"");
        }
        *ret = TAKE_PTR(set);
        return 0;
}

/* ---- fetching ---------------------------------------------------------- */

static pthread_once_t jwks_curl_once = PTHREAD_ONCE_INIT;
static CURLcode jwks_curl_init_result;
static void jwks_curl_global_init(void) { jwks_curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* host as curl gives it ("127.0.0.1", "[::1]") parsed as an IP literal. */
static bool host_literal(const char *host, struct sockaddr_storage *ret) {
        return addr_parse_host_literal(host, ret) == 1;
}

static bool literal_in(const struct sockaddr_storage *a, const struct addr_allow *nets, size_t n) {
        if (addr_classify(a) == ADDR_CLASS_LOOPBACK)
                return true;
        for (size_t i = 0; i < n; i++) {
                struct addr_allow one = {.family = a->ss_family, .prefix_len = a->ss_family == AF_INET ? 32 : 128};
                if (a->ss_family == AF_INET)
                        memcpy(one.prefix, &((const struct sockaddr_in *)a)->sin_addr, 4);
                else
                        memcpy(one.prefix, &((const struct sockaddr_in6 *)a)->sin6_addr, 16);
                if (nets[i].family == one.family && nets[i].prefix_len <= one.prefix_len) {
                        unsigned full = nets[i].prefix_len / 8, rest = nets[i].prefix_len % 8;
                        if (!memcmp(nets[i].prefix, one.prefix, full) &&
                            (!rest || (one.prefix[full] & (uint8_t)(0xff << (8 - rest))) == nets[i].prefix[full]))
                                return true;
                }
        }
        return false;
}

/* Checks the URL rules; *ret_https tells which single protocol to allow. */
static int jwks_check_url(const struct jwks_cache_config *cfg, bool *ret_https, struct err_detail *reterr) {
        const char *url = cfg ? cfg->url : NULL;
        if (!url || !*url)
                return err_set(reterr, -EINVAL, "jwks_url", "jwks url is not set");
        if (strlen(url) > JWKS_MAX_URL_LEN)
                return err_set(reterr, -EINVAL, "jwks_url", "jwks url is longer than %d characters", JWKS_MAX_URL_LEN);
        _cleanup_(curl_url_cleanupp) CURLU *u = curl_url();
        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
                return err_set(reterr, -EINVAL, "jwks_url", "jwks url is not a valid absolute url");
        _cleanup_(curl_freep) char *scheme = NULL, *host = NULL, *user = NULL, *password = NULL;
        if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
                return err_set(reterr, -EINVAL, "jwks_url", "jwks url has no scheme or host");
        if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
            curl_url_get(u, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK)
                return err_set(reterr, -EINVAL, "jwks_url", "jwks url must not contain credentials");
        struct sockaddr_storage lit;
        bool is_lit = host_literal(host, &lit);
        char why[96];
        const char *what;
        if (is_lit && cfg->floor && addr_floor_contains(cfg->floor, &lit, why, sizeof why))
                return err_set(reterr, -EINVAL, "jwks_url", "%s is inside the platform egress floor (%s)", host, why);
        if (!is_lit && cfg->floor && addr_name_is_local(host, &what))
                return err_set(reterr, -EINVAL, "jwks_url", "%s is inside the platform egress floor (%s)", host, what);
        if (strcmp(scheme, "https") == 0)
                *ret_https = true;
        else if (strcmp(scheme, "http") == 0 && is_lit && literal_in(&lit, cfg->http_nets, cfg->n_http_nets))
                *ret_https = false;
        else
                return err_set(reterr, -EINVAL, "jwks_url",
                               "jwks url must use https (http only to a literal IP address of the operator's "
                               "PADDOCK_OIDC_HTTP_NETS)");
        return 0;
}

struct jwks_body {
        char *buf;
        size_t len, cap, max;
        bool too_big;
};

static size_t jwks_write_cb(char *data, size_t size, size_t nmemb, void *userdata) {
        struct jwks_body *b = userdata;
        size_t n = size * nmemb;
        if (n > b->max - b->len) {
                b->too_big = true;
                return 0;       /* aborts the transfer with CURLE_WRITE_ERROR */
        }
        if (b->len + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 16384;
                while (cap < b->len + n + 1)
                        cap *= 2;
                char *p = realloc(b->buf, cap);
                if (!p)
                        return 0;
                b->buf = p;
                b->cap = cap;
        }
        memcpy(b->buf + b->len, data, n);
        b->len += n;
        b->buf[b->len] = 0;
        return n;
}

/* The floor on the address curl is about to connect to (each one it tries)
 * and, before the request is sent, on the address it is connected to. */
struct jwks_guard {
        struct addr_floor *floor;
        char refused[INET6_ADDRSTRLEN + 160]; /* address, text, the floor's reason */
};

static void guard_refuse(struct jwks_guard *g, const struct sockaddr_storage *a, const char *why) {
        char t[INET6_ADDRSTRLEN];
        addr_format(a, t, sizeof t);
        snprintf(g->refused, sizeof g->refused, "%s is inside the platform egress floor (%s)", t, why);
}

static curl_socket_t jwks_opensocket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *address) {
        struct jwks_guard *g = clientp;
        struct sockaddr_storage ss = {0};
        (void)purpose;
        if (address->addrlen > sizeof ss)
                return CURL_SOCKET_BAD;
        memcpy(&ss, &address->addr, address->addrlen);
        char why[96];
        if (addr_floor_contains(g->floor, &ss, why, sizeof why)) {
                guard_refuse(g, &ss, why);
                return CURL_SOCKET_BAD;
        }
        return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

static int jwks_prereq_cb(void *clientp, char *primary_ip, char *local_ip, int primary_port, int local_port) {
        struct jwks_guard *g = clientp;
        struct sockaddr_storage ss = {0};
        (void)local_ip, (void)primary_port, (void)local_port;
        char why[96];
        if (addr_parse_host_literal(primary_ip, &ss) != 1) {
                snprintf(g->refused, sizeof g->refused, "connected to an unknown address");
                return CURL_PREREQFUNC_ABORT;
        }
        if (addr_floor_contains(g->floor, &ss, why, sizeof why)) {
                guard_refuse(g, &ss, why);
                return CURL_PREREQFUNC_ABORT;
        }
        return CURL_PREREQFUNC_OK;
}

int jwks_fetch(const struct jwks_cache_config *cfg, char **ret_body, size_t *ret_len, struct err_detail *reterr) {
        bool https;
        int r = jwks_check_url(cfg, &https, reterr);
        if (r < 0)
                return r;
        pthread_once(&jwks_curl_once, jwks_curl_global_init);
        if (jwks_curl_init_result != CURLE_OK)
                return err_set(reterr, -EIO, "jwks_fetch", "could not initialise libcurl");

        _cleanup_(curl_easy_cleanupp) CURL *curl = curl_easy_init();
        _cleanup_(curl_slist_free_allp) struct curl_slist *hdrs =
                curl_slist_append(NULL, "Accept: application/jwk-set+json, application/json");
        if (!curl || !hdrs)
                return -ENOMEM;
        struct jwks_body body = {.max = cfg->max_doc_size ? cfg->max_doc_size : JWKS_MAX_DOC_SIZE_DEFAULT};
        char errbuf[CURL_ERROR_SIZE] = "";
        curl_easy_setopt(curl, CURLOPT_URL, cfg->url);
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, https ? "https" : "http");
        curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);     /* a redirect could leave https or loopback */
        curl_easy_setopt(curl, CURLOPT_PROXY, "");              /* no proxy from the environment */
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                         cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : (long)JWKS_CONNECT_TIMEOUT_MS_DEFAULT);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, cfg->timeout_ms > 0 ? cfg->timeout_ms : (long)JWKS_TIMEOUT_MS_DEFAULT);
        curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)body.max);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(curl, CURLOPT_USERAGENT, "paddock-jwks/1");
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, jwks_write_cb);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
        if (cfg->ca_file)
                curl_easy_setopt(curl, CURLOPT_CAINFO, cfg->ca_file);
        if (cfg->post_form)
                curl_easy_setopt(curl, CURLOPT_POSTFIELDS, cfg->post_form);
        if (cfg->basic_auth) {
                curl_easy_setopt(curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
                curl_easy_setopt(curl, CURLOPT_USERPWD, cfg->basic_auth);
        }
        struct jwks_guard guard = {.floor = cfg->floor};
        if (cfg->floor) {
                curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, jwks_opensocket_cb);
                curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, &guard);
                curl_easy_setopt(curl, CURLOPT_PREREQFUNCTION, jwks_prereq_cb);
                curl_easy_setopt(curl, CURLOPT_PREREQDATA, &guard);
        }

        CURLcode cc = curl_easy_perform(curl);
        _cleanup_free_ char *buf = body.buf;
        if (cc != CURLE_OK && guard.refused[0])
                return err_set(reterr, -EPERM, "jwks_fetch", "could not fetch jwks: %s", guard.refused);
        if (cc != CURLE_OK) {
                if (body.too_big || cc == CURLE_FILESIZE_EXCEEDED)
                        return err_set(reterr, -EMSGSIZE, "jwks_fetch", "jwks document exceeds %zu bytes", body.max);
                int e = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT
                        : cc == CURLE_COULDNT_CONNECT  ? -ECONNREFUSED
                        : cc == CURLE_OUT_OF_MEMORY || cc == CURLE_WRITE_ERROR ? -ENOMEM
                        : -EIO;
                return err_set(reterr, e, "jwks_fetch", "could not fetch jwks: %s",
                               *errbuf ? errbuf : curl_easy_strerror(cc));
        }
        long status = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        if (status != 200)
                return err_set(reterr, -EIO, "jwks_fetch", "could not fetch jwks: http status %ld", status);
        if (!buf) {
                buf = strdup("");
                if (!buf)
                        return -ENOMEM;
        }
        *ret_len = body.len;
        *ret_body = TAKE_PTR(buf);
        return 0;
}

/* ---- cache ------------------------------------------------------------- */

struct jwks_cache {
        struct jwks_cache_config cfg;   /* strings point into url/ca_file below */
        char *url, *ca_file;
        /* lock guards the fields below; fetch_lock serialises fetches so that
         * verifiers with a known kid never wait for the network. */
        pthread_mutex_t lock, fetch_lock;
        struct jwks *set;               /* NULL until the first successful fetch */
        uint64_t fetched_at_ms, last_attempt_ms;
        bool attempted;
        unsigned fetch_count;
        /* Outcome of the last attempt, so that an unknown kid while the provider
         * is down reports the outage (503 upstream) rather than a bad token. */
        struct err_detail last_err;
};

static uint64_t monotonic_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int jwks_cache_new(const struct jwks_cache_config *cfg, struct jwks_cache **ret, struct err_detail *reterr) {
        bool https;
        int r = jwks_check_url(cfg, &https, reterr);
        if (r < 0)
                return r;
        if (cfg->connect_timeout_ms < 0 || cfg->timeout_ms < 0)
                return err_set(reterr, -EINVAL, "jwks_timeout", "jwks timeouts must not be negative");
        _cleanup_free_ struct jwks_cache *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->cfg = *cfg;
        c->url = strdup(cfg->url);
        c->ca_file = cfg->ca_file ? strdup(cfg->ca_file) : NULL;
        if (!c->url || (cfg->ca_file && !c->ca_file)) {
                free(c->url);
                free(c->ca_file);
                return -ENOMEM;
        }
        c->cfg.url = c->url;
        c->cfg.ca_file = c->ca_file;
        c->cfg.post_form = c->cfg.basic_auth = NULL; /* a cache only GETs its set */
        if (!c->cfg.clock_ms)
                c->cfg.clock_ms = monotonic_ms;
        if (!c->cfg.refresh_interval_s)
                c->cfg.refresh_interval_s = JWKS_REFRESH_INTERVAL_DEFAULT;
        if (!c->cfg.max_age_s)
                c->cfg.max_age_s = JWKS_MAX_AGE_DEFAULT;
        if (!c->cfg.max_doc_size || c->cfg.max_doc_size > JWKS_MAX_DOC_SIZE_DEFAULT)
                c->cfg.max_doc_size = JWKS_MAX_DOC_SIZE_DEFAULT;
        pthread_mutex_init(&c->lock, NULL);
        pthread_mutex_init(&c->fetch_lock, NULL);
        *ret = TAKE_PTR(c);
        return 0;
}

struct jwks_cache *jwks_cache_free(struct jwks_cache *c) {
        if (!c)
                return NULL;
        jwks_free(c->set);
        pthread_mutex_destroy(&c->lock);
        pthread_mutex_destroy(&c->fetch_lock);
        free(c->url);
        free(c->ca_file);
        free(c);
        return NULL;
}

unsigned jwks_cache_fetch_count(struct jwks_cache *c) {
        pthread_mutex_lock(&c->lock);
        unsigned n = c->fetch_count;
        pthread_mutex_unlock(&c->lock);
        return n;
}

/* Fetches and parses with fetch_lock held by the caller and the attempt already
 * recorded; installs the new set on success. */
static int jwks_cache_do_fetch(struct jwks_cache *c, struct err_detail *reterr) {
        _cleanup_free_ char *body = NULL;
        size_t len = 0;
        struct err_detail e = {};
        struct jwks *set = NULL;
        int r = jwks_fetch(&c->cfg, &body, &len, &e);
        if (r >= 0)
                r = jwks_parse(body, len, &set, &e);
        if (r < 0) {
                pthread_mutex_lock(&c->lock);
                c->last_err = e;
                c->last_err.errnum = r;
                pthread_mutex_unlock(&c->lock);
                if (reterr)
                        *reterr = e;
                return r;
        }
        pthread_mutex_lock(&c->lock);
        struct jwks *old = c->set;
        c->set = set;
        c->fetched_at_ms = c->cfg.clock_ms();
        c->last_err = (struct err_detail){};
        pthread_mutex_unlock(&c->lock);
        jwks_free(old);         /* keys handed out earlier stay alive by their refs */
        return 0;
}

static void jwks_cache_note_attempt(struct jwks_cache *c, uint64_t now) {
        c->attempted = true;
        c->last_attempt_ms = now;
        c->fetch_count++;
}

int jwks_cache_refresh(struct jwks_cache *c, struct err_detail *reterr) {
        pthread_mutex_lock(&c->fetch_lock);
        pthread_mutex_lock(&c->lock);
        jwks_cache_note_attempt(c, c->cfg.clock_ms());
        pthread_mutex_unlock(&c->lock);
        int r = jwks_cache_do_fetch(c, reterr);
        pthread_mutex_unlock(&c->fetch_lock);
        return r;
}

static bool jwks_cache_may_fetch_locked(struct jwks_cache *c, uint64_t now) {
        return !c->attempted || now - c->last_attempt_ms >= (uint64_t)c->cfg.refresh_interval_s * 1000;
}

int jwks_cache_get_key(struct jwks_cache *c, const char *kid, struct jwk **ret, struct err_detail *reterr) {
        uint64_t now = c->cfg.clock_ms();
        pthread_mutex_lock(&c->lock);
        _cleanup_(jwk_unrefp) struct jwk *key = jwks_find(c->set, kid);
        bool stale = !c->set || now - c->fetched_at_ms >= (uint64_t)c->cfg.max_age_s * 1000;
        bool may_fetch = jwks_cache_may_fetch_locked(c, now);
        pthread_mutex_unlock(&c->lock);

        if (key && !stale) {
                *ret = TAKE_PTR(key);
                return 0;
        }
        int fr = 0;
        if (may_fetch) {
                pthread_mutex_lock(&c->fetch_lock);
                /* Another thread may have fetched while we waited for fetch_lock:
                 * its attempt counts against the rate limit for us too. */
                pthread_mutex_lock(&c->lock);
                now = c->cfg.clock_ms();
                may_fetch = jwks_cache_may_fetch_locked(c, now);
                if (may_fetch)
                        jwks_cache_note_attempt(c, now);
                pthread_mutex_unlock(&c->lock);
                if (may_fetch)
                        fr = jwks_cache_do_fetch(c, reterr);
                pthread_mutex_unlock(&c->fetch_lock);

                pthread_mutex_lock(&c->lock);
                struct jwk *fresh = jwks_find(c->set, kid);
                pthread_mutex_unlock(&c->lock);
                if (fresh) {
                        jwk_unref(key);
                        key = fresh;
                }
        }
        if (key) {
                *ret = TAKE_PTR(key);
                return 0;
        }
        if (fr < 0)
                return fr;
        pthread_mutex_lock(&c->lock);
        struct err_detail last = c->last_err;
        pthread_mutex_unlock(&c->lock);
        if (last.errnum < 0) {
                if (reterr)
                        *reterr = last;
                return last.errnum;
        }
        return err_set(reterr, -ENOKEY, "kid", "no key with this kid in the jwks");
}

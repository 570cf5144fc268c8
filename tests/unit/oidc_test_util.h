/* Shared by test_jwt.c and test_jwks.c (header-only because every test_*.c is
 * its own executable): keys generated in the test with OpenSSL, JWKS and
 * tokens built and signed here, and a tiny HTTP/1.1 server on 127.0.0.1 with a
 * random port serving a JWKS from a thread. Nothing leaves loopback. */
#pragma once
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/base64url.h"

/* cmocka's assert macros are used by includers; helpers here abort on setup
 * failures through this instead, so that they can be used anywhere. */
#define T_CHECK(x) do { if (!(x)) { fprintf(stderr, "%s:%d: setup failed: %s\n", __FILE__, __LINE__, #x); abort(); } } while (0)

static inline EVP_PKEY *t_key_rsa(unsigned bits) {
        EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
        T_CHECK(k);
        return k;
}

static inline EVP_PKEY *t_key_ec(void) {
        EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        T_CHECK(k);
        return k;
}

static inline char *t_b64(const void *p, size_t n) {
        char *s = malloc(B64URL_ENCODED_LEN(n) + 1);
        T_CHECK(s);
        b64url_encode(p, n, s);
        return s;
}

static inline char *t_b64_bn(EVP_PKEY *k, const char *param, size_t pad) {
        BIGNUM *bn = NULL;
        T_CHECK(EVP_PKEY_get_bn_param(k, param, &bn) == 1);
        size_t n = (size_t)BN_num_bytes(bn);
        if (pad > n)
                n = pad;
        uint8_t *buf = malloc(n);
        T_CHECK(buf && BN_bn2binpad(bn, buf, (int)n) == (int)n);
        char *s = t_b64(buf, n);
        free(buf);
        BN_free(bn);
        return s;
}

/* A public JWK for k (RSA or EC P-256) with kid; alg member only if alg. */
static inline json_t *t_jwk(EVP_PKEY *k, const char *kid, const char *alg) {
        json_t *j = json_object();
        if (EVP_PKEY_is_a(k, "RSA")) {
                char *n = t_b64_bn(k, OSSL_PKEY_PARAM_RSA_N, 0), *e = t_b64_bn(k, OSSL_PKEY_PARAM_RSA_E, 0);
                json_object_set_new(j, "kty", json_string("RSA"));
                json_object_set_new(j, "n", json_string(n));
                json_object_set_new(j, "e", json_string(e));
                free(n);
                free(e);
        } else {
                char *x = t_b64_bn(k, OSSL_PKEY_PARAM_EC_PUB_X, 32), *y = t_b64_bn(k, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
                json_object_set_new(j, "kty", json_string("EC"));
                json_object_set_new(j, "crv", json_string("P-256"));
                json_object_set_new(j, "x", json_string(x));
                json_object_set_new(j, "y", json_string(y));
                free(x);
                free(y);
        }
        if (kid)
                json_object_set_new(j, "kid", json_string(kid));
        if (alg)
                json_object_set_new(j, "alg", json_string(alg));
        json_object_set_new(j, "use", json_string("sig"));
        return j;
}

/* {"keys": [jwks...]} as a string (caller frees); takes the references. */
static inline char *t_jwks_doc(size_t n, json_t **jwks) {
        json_t *keys = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(keys, jwks[i]);
        json_t *doc = json_pack("{s:o}", "keys", keys);
        char *s = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        T_CHECK(s);
        return s;
}

static inline char *t_join(const char *a, const char *b) {
        /* not asprintf(&s): gcc 12 -O2 then reports the callers' uses as a
         * dangling pointer to s (-Wdangling-pointer, a Release build) */
        size_t n = strlen(a) + strlen(b) + 2;
        char *s = malloc(n);
        T_CHECK(s);
        snprintf(s, n, "%s.%s", a, b);
        return s;
}

/* base64url(header) "." base64url(claims); caller frees. */
static inline char *t_signing_input(const char *header, const char *claims) {
        char *h = t_b64(header, strlen(header)), *c = t_b64(claims, strlen(claims));
        char *s = t_join(h, c);
        free(h);
        free(c);
        return s;
}

/* Signs input with RS256 (PKCS#1 v1.5) or ES256 (raw r||s as JOSE wants). */
static inline char *t_sign(EVP_PKEY *k, const char *input) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        T_CHECK(md && EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, k, NULL) == 1);
        size_t len = 0;
        T_CHECK(EVP_DigestSign(md, NULL, &len, (const uint8_t *)input, strlen(input)) == 1);
        uint8_t *sig = malloc(len);
        T_CHECK(sig && EVP_DigestSign(md, sig, &len, (const uint8_t *)input, strlen(input)) == 1);
        EVP_MD_CTX_free(md);
        char *out;
        if (EVP_PKEY_is_a(k, "EC")) {
                const uint8_t *p = sig;
                ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)len);
                T_CHECK(es);
                uint8_t raw[64];
                T_CHECK(BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32) == 32);
                T_CHECK(BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32) == 32);
                ECDSA_SIG_free(es);
                out = t_b64(raw, sizeof raw);
        } else
                out = t_b64(sig, len);
        free(sig);
        return out;
}

static inline char *t_hs256(const void *key, size_t keylen, const char *input) {
        uint8_t mac[32];
        unsigned maclen = 0;
        T_CHECK(HMAC(EVP_sha256(), key, (int)keylen, (const uint8_t *)input, strlen(input), mac, &maclen));
        return t_b64(mac, maclen);
}

/* A complete token: header and claims JSON text signed with k. */
static inline char *t_token(EVP_PKEY *k, const char *header, const char *claims) {
        char *in = t_signing_input(header, claims), *sig = t_sign(k, in);
        char *tok = t_join(in, sig);
        free(in);
        free(sig);
        return tok;
}

/* ---- loopback HTTP server --------------------------------------------- */

struct t_http {
        int fd;
        unsigned short port;
        pthread_t thread;
        pthread_mutex_t lock;
        char *body;             /* served on every GET */
        int status;
        unsigned delay_ms;      /* before answering (timeout tests) */
        unsigned requests;
        bool stop;
        char url[64];
};

static inline void t_http_set_body(struct t_http *h, const char *body, int status) {
        pthread_mutex_lock(&h->lock);
        free(h->body);
        h->body = strdup(body);
        h->status = status;
        pthread_mutex_unlock(&h->lock);
}

static inline unsigned t_http_requests(struct t_http *h) {
        pthread_mutex_lock(&h->lock);
        unsigned n = h->requests;
        pthread_mutex_unlock(&h->lock);
        return n;
}

static inline void t_http_serve_one(struct t_http *h, int c) {
        char req[8192];
        size_t got = 0;
        while (got < sizeof req - 1) {
                struct pollfd p = {.fd = c, .events = POLLIN};
                if (poll(&p, 1, 2000) <= 0)
                        return;
                ssize_t n = recv(c, req + got, sizeof req - 1 - got, 0);
                if (n <= 0)
                        return;
                got += (size_t)n;
                req[got] = 0;
                if (strstr(req, "\r\n\r\n"))
                        break;
        }
        pthread_mutex_lock(&h->lock);
        h->requests++;
        char *body = strdup(h->body ? h->body : "");
        int status = h->status;
        unsigned delay = h->delay_ms;
        pthread_mutex_unlock(&h->lock);
        if (delay)
                usleep(delay * 1000u);
        char head[256];
        int hl = snprintf(head, sizeof head,
                          "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                          "Connection: close\r\n\r\n", status, strlen(body));
        (void)!send(c, head, (size_t)hl, MSG_NOSIGNAL);
        size_t off = 0, len = strlen(body);
        while (off < len) {
                ssize_t n = send(c, body + off, len - off, MSG_NOSIGNAL);
                if (n <= 0)
                        break;
                off += (size_t)n;
        }
        free(body);
}

static inline void *t_http_main(void *arg) {
        struct t_http *h = arg;
        for (;;) {
                pthread_mutex_lock(&h->lock);
                bool stop = h->stop;
                pthread_mutex_unlock(&h->lock);
                if (stop)
                        break;
                struct pollfd p = {.fd = h->fd, .events = POLLIN};
                if (poll(&p, 1, 50) <= 0)
                        continue;
                int c = accept4(h->fd, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0)
                        continue;
                t_http_serve_one(h, c);
                close(c);
        }
        return NULL;
}

static inline struct t_http *t_http_start(const char *body) {
        struct t_http *h = calloc(1, sizeof *h);
        T_CHECK(h);
        pthread_mutex_init(&h->lock, NULL);
        h->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        T_CHECK(h->fd >= 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        T_CHECK(bind(h->fd, (struct sockaddr *)&a, sizeof a) == 0);
        socklen_t al = sizeof a;
        T_CHECK(getsockname(h->fd, (struct sockaddr *)&a, &al) == 0);
        T_CHECK(listen(h->fd, 16) == 0);
        h->port = ntohs(a.sin_port);
        snprintf(h->url, sizeof h->url, "http://127.0.0.1:%u/jwks.json", h->port);
        t_http_set_body(h, body, 200);
        T_CHECK(pthread_create(&h->thread, NULL, t_http_main, h) == 0);
        return h;
}

static inline void t_http_stop(struct t_http *h) {
        if (!h)
                return;
        pthread_mutex_lock(&h->lock);
        h->stop = true;
        pthread_mutex_unlock(&h->lock);
        pthread_join(h->thread, NULL);
        close(h->fd);
        pthread_mutex_destroy(&h->lock);
        free(h->body);
        free(h);
}

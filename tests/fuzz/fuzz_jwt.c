/* OIDC token verification (lib/auth/jwt.h) as the api's login calls it
 * (services/api/oidc.c): jwt_decode() on the token, the key for its kid from
 * a JWKS, jwt_verify_decoded() against the tenant's issuer, audience and
 * clock skew. The key set is a fixed P-256 key made for this target only
 * (it protects nothing), so that the seed tokens verify.
 *
 * A mutated token almost never carries a valid signature, so the claim
 * checks behind it would never run: an input starting with '{' (never the
 * start of a compact JWS, whose alphabet is base64url) is instead
 * "<header JSON>\n<claims JSON>", which the target encodes and signs with the
 * key before the same decode and verify (signed only when the verify would
 * check the signature: see reaches_signature). */
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "auth/base64url.h"
#include "auth/jwks.h"
#include "auth/jwt.h"
#include "fuzz.h"

#define ISSUER "https://idp.fuzz.test"
#define AUDIENCE "paddock"
#define NOW 1800000000 /* fixed: an input's verdict must not depend on the day */

static const char key_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                              "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgGnxDUDWNZDTb4IZc\n"
                              "BpnSHgSRQ/XRlkDA8Oipig3fJxShRANCAASQ4txA3rJH0BtJcXgbHIq91v8yggGu\n"
                              "4TRmZUiAfZeTS++1D1zxE0odzdN0OxN26170dUEelKLHuUGrsNq2A99T\n"
                              "-----END PRIVATE KEY-----\n";
static const char jwks_doc[] = "{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", \"kid\": \"fuzz-1\", \"use\": \"sig\","
                               " \"x\": \"kOLcQN6yR9AbSXF4GxyKvdb_MoIBruE0ZmVIgH2Xk0s\","
                               " \"y\": \"77UPXPETSh3N03Q7E3brXvR1QR6Uose5Qauw2rYD31M\"}]}";

static EVP_PKEY *signing_key;
static struct jwks *keys;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        BIO *b = BIO_new_mem_buf(key_pem, -1);
        signing_key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        if (!signing_key || jwks_parse(jwks_doc, strlen(jwks_doc), &keys, NULL) < 0 || jwks_size(keys) != 1)
                abort();
        return 0;
}

static void verify(const char *token, size_t len) {
        struct jwt_decoded *t = NULL;
        struct err_detail e = {0};
        if (jwt_decode(token, len, &t, &e) < 0)
                return;
        (void)jwt_decoded_alg(t);
        struct jwk *k = jwks_find(keys, jwt_decoded_kid(t));
        if (k) {
                struct jwt_verify_params p;
                jwt_verify_params_init(&p);
                p.issuer = ISSUER;
                p.audience = AUDIENCE;
                p.now = NOW;
                json_t *claims = NULL;
                if (jwt_verify_decoded(t, k, &p, &claims, &e) == 0 && !json_is_object(claims))
                        __builtin_trap(); /* verified claims are an object */
                json_decref(claims);
                jwk_unref(k);
        }
        jwt_decoded_free(t);
}

/* "<b64url header>.<b64url claims>." (room left for a signature), or NULL */
static char *signing_input(const uint8_t *h, size_t hn, const uint8_t *c, size_t cn, size_t *ret_len) {
        char *tok = malloc(B64URL_ENCODED_LEN(hn) + 1 + B64URL_ENCODED_LEN(cn) + 1 + B64URL_ENCODED_LEN(64) + 1);
        if (!tok)
                return NULL;
        size_t n = b64url_encode(h, hn, tok);
        tok[n++] = '.';
        n += b64url_encode(c, cn, tok + n);
        tok[n] = 0;
        *ret_len = n;
        return tok;
}

/* Appends ".<signature>" to tok's n bytes of signing input: the target
 * key's ES256 signature (raw r || s) when sign, else 64 zero bytes. */
static size_t append_signature(char *tok, size_t n, bool sign) {
        unsigned char raw[64] = {0};
        if (sign) {
                unsigned char der[128];
                size_t der_len = sizeof der;
                EVP_MD_CTX *md = EVP_MD_CTX_new();
                int ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, signing_key) == 1 &&
                         EVP_DigestSign(md, der, &der_len, (const unsigned char *)tok, n) == 1;
                EVP_MD_CTX_free(md);
                const unsigned char *p = der;
                ECDSA_SIG *es = ok ? d2i_ECDSA_SIG(NULL, &p, (long)der_len) : NULL;
                if (!es || BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32) != 32 ||
                    BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32) != 32)
                        abort(); /* the target's own key: cannot fail */
                ECDSA_SIG_free(es);
        }
        tok[n++] = '.';
        n += b64url_encode(raw, sizeof raw, tok + n);
        tok[n] = 0;
        return n;
}

/* Whether verify() would check tok's signature: it decodes, and its kid
 * names the key, of the key's algorithm (jwt_verify_decoded refuses any
 * other before the signature). jwt_decode reads the signature only as
 * base64url, so a placeholder one decides this as the real one would. */
static bool reaches_signature(const char *tok, size_t len) {
        struct jwt_decoded *t = NULL;
        if (jwt_decode(tok, len, &t, NULL) < 0)
                return false;
        struct jwk *k = jwks_find(keys, jwt_decoded_kid(t));
        bool yes = k && jwk_alg(k) == jwt_decoded_alg(t);
        jwk_unref(k);
        jwt_decoded_free(t);
        return yes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > 0 && data[0] == '{') {
                const uint8_t *nl = memchr(data, '\n', size);
                if (!nl || size > JWT_MAX_TOKEN_LEN)
                        return 0;
                size_t n = 0;
                char *tok = signing_input(data, (size_t)(nl - data), nl + 1, size - (size_t)(nl - data) - 1, &n);
                if (!tok)
                        return 0;
                /* an ECDSA signature per input would be most of the time
                 * spent: made only for a token whose signature is checked;
                 * any other is verified with the placeholder, which ends
                 * where the real one would */
                size_t len = append_signature(tok, n, false);
                if (reaches_signature(tok, len))
                        len = append_signature(tok, n, true);
                verify(tok, len);
                free(tok);
                return 0;
        }
        verify((const char *)data, size);
        return 0;
}

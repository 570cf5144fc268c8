/* JSON Web Key Sets (RFC 7517) for OIDC token verification, and a per-issuer
 * cache that fetches the set with libcurl.
 *
 * Only signature-verification public keys are kept: RSA (n, e; modulus of
 * 2048..8192 bits, odd public exponent 3..2^31-1) and EC on P-256 (x, y, checked
 * to be a point on the curve). A key's kty decides the one algorithm it may
 * verify (RSA → RS256, EC P-256 → ES256); a JWK "alg" member that disagrees
 * makes the key unusable. Keys with another kty (oct, OKP, ...), another curve,
 * "use": "enc" or key_ops without "verify" are skipped, never used. Symmetric
 * keys are never accepted, so no secret can come from a JWKS.
 *
 * Keys are reference counted because the cache may replace its set while a
 * verifier still holds a key from the previous one. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <openssl/types.h>

#include "core/err.h"
#include "net/addr_policy.h"

/* Size limits on what a peer (the identity provider) controls. */
#define JWKS_MAX_DOC_SIZE_DEFAULT (256u * 1024u)
#define JWKS_MAX_KEYS 64
#define JWKS_MAX_KID_LEN 256
#define JWKS_REFRESH_INTERVAL_DEFAULT 60    /* seconds between fetches at most */
#define JWKS_MAX_AGE_DEFAULT 3600           /* seconds before a known set is re-fetched */
#define JWKS_CONNECT_TIMEOUT_MS_DEFAULT 3000
#define JWKS_TIMEOUT_MS_DEFAULT 5000

enum jwk_alg {
        JWK_ALG_RS256 = 1,      /* RSASSA-PKCS1-v1_5 with SHA-256 */
        JWK_ALG_ES256 = 2,      /* ECDSA P-256 with SHA-256 */
};

/* Returns "RS256"/"ES256", or NULL for an unknown value. */
const char *jwk_alg_to_string(enum jwk_alg alg);
/* Parses "RS256"/"ES256" (exact, case-sensitive). Returns 0 or -EINVAL. */
int jwk_alg_from_string(const char *s, enum jwk_alg *ret);

struct jwk;

/* Reference counting; both are thread-safe. jwk_unref(NULL) is allowed and
 * jwk_unref returns NULL so `key = jwk_unref(key)` reads naturally. */
struct jwk *jwk_ref(struct jwk *key);
struct jwk *jwk_unref(struct jwk *key);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct jwk *, jwk_unref);

/* Accessors. The kid is "" when the JWK had none. The EVP_PKEY is borrowed for
 * as long as the caller holds its reference on key; it is immutable. */
const char *jwk_kid(const struct jwk *key);
enum jwk_alg jwk_alg(const struct jwk *key);
EVP_PKEY *jwk_pkey(const struct jwk *key);

/* An immutable parsed key set. Thread-safe to read from several threads. */
struct jwks;

/* Parses a JWKS document of len bytes (need not be NUL-terminated; borrowed).
 * Duplicate JSON keys, a missing "keys" array, more than JWKS_MAX_KEYS entries,
 * an invalid member of a usable key (bad base64url, small RSA modulus, point
 * not on P-256, ...), duplicate kids, or a usable key without kid when the set
 * holds several usable keys fail with -EINVAL and reterr (optional) naming the
 * key index and the reason; key material is never quoted. A set with no usable
 * key parses to an empty set. On success *ret (caller owns, jwks_free) is set.
 * Returns 0, -EINVAL, -EMSGSIZE (len > JWKS_MAX_DOC_SIZE_DEFAULT) or -ENOMEM. */
int jwks_parse(const char *json, size_t len, struct jwks **ret, struct err_detail *reterr);
struct jwks *jwks_free(struct jwks *set);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct jwks *, jwks_free);

/* Number of usable keys in the set. */
size_t jwks_size(const struct jwks *set);
/* Looks up a key by kid and returns a new reference (caller unrefs), or NULL.
 * kid NULL or "" matches only when the set holds exactly one key, which is how
 * providers publishing a single key without kid are handled. */
struct jwk *jwks_find(const struct jwks *set, const char *kid);

/* ---- per-issuer cache -------------------------------------------------- */

/* Monotonic milliseconds; tests inject a fake clock to step through windows. */
typedef uint64_t (*jwks_clock_fn)(void);

struct jwks_cache_config {
        const char *url;                /* https://..., or http:// to a literal IP (see jwks_cache_new) */
        const char *ca_file;            /* optional PEM bundle for private CAs; NULL = system */
        unsigned refresh_interval_s;    /* 0 = JWKS_REFRESH_INTERVAL_DEFAULT */
        unsigned max_age_s;             /* 0 = JWKS_MAX_AGE_DEFAULT */
        size_t max_doc_size;            /* 0 = JWKS_MAX_DOC_SIZE_DEFAULT, which is also the maximum */
        long connect_timeout_ms;        /* 0 = JWKS_CONNECT_TIMEOUT_MS_DEFAULT */
        long timeout_ms;                /* 0 = JWKS_TIMEOUT_MS_DEFAULT (whole transfer) */
        jwks_clock_fn clock_ms;         /* NULL = CLOCK_MONOTONIC */
        /* The platform egress floor (borrowed; NULL: none, for unit tests): a
         * URL whose host is a literal inside it is refused, and every address
         * the fetch connects to is checked against it (a name resolving to
         * loopback, the node or metadata is refused before connecting). */
        struct addr_floor *floor;
        /* Ranges (borrowed) where plain http:// to a literal IP is accepted, as
         * well as loopback literals (which a floor refuses anyway). */
        const struct addr_allow *http_nets;
        size_t n_http_nets;
        /* jwks_fetch() only: an application/x-www-form-urlencoded body to POST
         * instead of a GET (the OIDC token endpoint, services/api/oidc_flow.c);
         * borrowed, may hold secrets (never logged) */
        const char *post_form;
        /* jwks_fetch() only: "user:password" for HTTP Basic authentication
         * (RFC 6749 2.3.1 client_secret_basic: both form-urlencoded first);
         * borrowed, a secret (never logged) */
        const char *basic_auth;
};

struct jwks_cache;

/* Validates cfg and makes an empty cache; nothing is fetched yet. The URL must
 * be https://, or http:// whose host is a literal loopback address (127.0.0.0/8
 * or [::1]) or a literal inside cfg->http_nets, for tests and the local stack;
 * user info in the URL, and a literal host inside cfg->floor, are refused.
 * cfg and its strings are copied; floor and http_nets are borrowed. Returns 0, -EINVAL (reterr names the field)
 * or -ENOMEM. */
int jwks_cache_new(const struct jwks_cache_config *cfg, struct jwks_cache **ret, struct err_detail *reterr);
struct jwks_cache *jwks_cache_free(struct jwks_cache *cache);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct jwks_cache *, jwks_cache_free);

/* Returns in *ret a new reference (caller unrefs) to the key with this kid
 * (NULL/"" as in jwks_find). Fetches the set when the cache is empty or older
 * than max_age_s, and when the kid is unknown, but starts at most one fetch per
 * refresh_interval_s whatever the outcome, so that tokens with random kids
 * cannot turn the service into a fetch amplifier against the provider. A failed
 * refresh keeps serving the previous set; while the last attempt has failed, an
 * unknown kid reports that failure instead of -ENOKEY (the provider is down, so
 * the caller should answer 503 rather than 401). Does not hold the cache lock while
 * fetching; concurrent callers wanting a fetch wait for the one in progress.
 * Returns 0, -ENOKEY (no such key, after any allowed refresh), -EIO/-ETIMEDOUT/
 * -ECONNREFUSED/-EMSGSIZE/-EINVAL (the fetch or the document failed and no key
 * was found; reterr says why) or -ENOMEM. Thread-safe. */
int jwks_cache_get_key(struct jwks_cache *cache, const char *kid, struct jwk **ret, struct err_detail *reterr);

/* Fetches the set now, ignoring the rate limit (admin "refresh keys" action,
 * tests). Replaces the set only on success. Returns 0 or as above. Thread-safe. */
int jwks_cache_refresh(struct jwks_cache *cache, struct err_detail *reterr);

/* Number of fetch attempts started so far (metrics, tests). Thread-safe. */
unsigned jwks_cache_fetch_count(struct jwks_cache *cache);

/* Fetches url (same rules as the cache; no redirect followed, no proxy, at
 * most max_doc_size bytes within timeout_ms, every address connected to
 * checked against cfg->floor: -EPERM naming the floor) and returns the raw body in *ret_body
 * (NUL-terminated, caller frees) and its length. Exposed for the admin
 * "test configuration" action. Returns 0 or the errors above. */
int jwks_fetch(const struct jwks_cache_config *cfg, char **ret_body, size_t *ret_len, struct err_detail *reterr);

/* Verification of compact JWS tokens (RFC 7515/7519) issued by an OIDC
 * provider: ID tokens and JWT access tokens signed with RS256 or ES256.
 *
 * What is accepted, deliberately narrow:
 *   - exactly three base64url parts (strict: no padding, canonical), token at
 *     most JWT_MAX_TOKEN_LEN bytes, header and claims JSON objects without
 *     duplicate member names;
 *   - header "alg" RS256 or ES256 and equal to the one algorithm the key's type
 *     allows (jwks.h), so "none", HS256 keyed with the public key (algorithm
 *     confusion) and ES256-on-an-RSA-kid all fail; no "crit" (we implement no
 *     extension), and no key carried or pointed to by the token ("jwk", "jku",
 *     "x5u", "x5c"): keys only ever come from the configured JWKS;
 *   - claims: "iss" equal to the configured issuer, "aud" (string or array)
 *     containing the configured audience, "exp" present and in the future,
 *     "nbf" and "iat" (when present) not in the future, all with the configured
 *     clock skew as tolerance.
 *
 * Errors: every rejection fills reterr (optional) with code naming the check
 * that failed — "token_size", "token_format", "base64url", "header", "claims",
 * "alg", "crit", "header_key", "kid", "key_alg", "signature", "iss", "aud",
 * "exp", "nbf", "iat" — and a message; neither ever contains the token or any
 * part of it, so a caller may log them. */
#pragma once
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/jwks.h"
#include "core/err.h"

#define JWT_MAX_TOKEN_LEN (16u * 1024u)
#define JWT_DEFAULT_CLOCK_SKEW 60       /* seconds */
#define JWT_MAX_CLOCK_SKEW 600

struct jwt_verify_params {
        const char *issuer;             /* required, compared exactly */
        const char *audience;           /* required, compared exactly */
        int64_t clock_skew_s;           /* tolerance for exp/nbf/iat, 0..JWT_MAX_CLOCK_SKEW */
        int64_t now;                    /* Unix seconds; 0 = time(NULL) (tests set it) */
};

/* Fills p with defaults: no issuer/audience, JWT_DEFAULT_CLOCK_SKEW, now = 0. */
void jwt_verify_params_init(struct jwt_verify_params *p);

/* A token split and decoded but NOT verified: nothing in it is trustworthy
 * until jwt_verify_decoded() succeeds. */
struct jwt_decoded;

/* Splits and decodes token (len bytes, borrowed, need not be NUL-terminated)
 * and checks the header (alg allowed, no crit, no embedded key, kid sane).
 * On success *ret (caller owns, jwt_decoded_free) is set. Returns 0,
 * -EMSGSIZE (too long), -EINVAL (malformed) or -EKEYREJECTED (header refused:
 * alg, crit, embedded key), or -ENOMEM. */
int jwt_decode(const char *token, size_t len, struct jwt_decoded **ret, struct err_detail *reterr);
struct jwt_decoded *jwt_decoded_free(struct jwt_decoded *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct jwt_decoded *, jwt_decoded_free);

/* The header's kid (NULL when absent) and alg; borrowed from t. Untrusted. */
const char *jwt_decoded_kid(const struct jwt_decoded *t);
enum jwk_alg jwt_decoded_alg(const struct jwt_decoded *t);
/* The claims object, borrowed from t: UNTRUSTED until jwt_verify_decoded()
 * succeeds (an introspection reads the audience to verify against). */
const json_t *jwt_decoded_claims(const struct jwt_decoded *t);

/* Verifies t's signature with key (borrowed), then its claims against p.
 * On success *ret_claims (optional) receives a new reference to the claims
 * object (caller json_decref()s). Returns 0, -EKEYREJECTED (key type does not
 * allow the header's alg), -EBADMSG (bad signature), -EACCES (a claim check
 * failed), -EINVAL (p incomplete) or -ENOMEM. */
int jwt_verify_decoded(const struct jwt_decoded *t, const struct jwk *key, const struct jwt_verify_params *p,
                       json_t **ret_claims, struct err_detail *reterr);

/* One call for the API: decodes token, takes the key for its kid from cache
 * (which may fetch, see jwks_cache_get_key), verifies. Returns 0 with
 * *ret_claims (caller owns), or the errors of the functions above plus -ENOKEY
 * (unknown kid) and the fetch errors of jwks.h (-EIO, -ETIMEDOUT, ...: the
 * provider is unreachable, a server-side condition rather than a bad token).
 * Thread-safe. */
int jwt_verify(const char *token, size_t len, struct jwks_cache *cache, const struct jwt_verify_params *p,
               json_t **ret_claims, struct err_detail *reterr);

/* A JSON Web Key Set as the api reads an identity provider's document
 * (lib/auth/jwks.h; services/api/oidc.c: jwks_parse() on the fetched body,
 * then jwks_find() for a token's kid). */
#include "auth/jwks.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct jwks *set = NULL;
        struct err_detail e = {0};
        if (jwks_parse((const char *)data, size, &set, &e) < 0)
                return 0;
        static const char *const kids[] = {NULL, "", "k1", "fuzz-1"};
        for (size_t i = 0; i < sizeof kids / sizeof kids[0]; i++) {
                struct jwk *k = jwks_find(set, kids[i]);
                if (k && (!jwk_kid(k) || !jwk_pkey(k) || !jwk_alg_to_string(jwk_alg(k))))
                        __builtin_trap(); /* a usable key has all three */
                jwk_unref(k);
        }
        jwks_free(set);
        return 0;
}

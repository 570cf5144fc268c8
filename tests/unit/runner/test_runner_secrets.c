/* The runner-agent's side of sealed run secrets and workload identity tokens
 * (services/runner-agent/secrets.h, docs/CONTRACTS.md "Workload identity"):
 * a bundle sealed to the run's key as the api seals it is mapped onto the
 * snapshot's SecretRefs; identity entries go to the env, the proxy's headers
 * or the files identity_file.c writes, never elsewhere. */
#include <errno.h>
#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "crypto/seal.h"
#include "secrets.h"

#define RUN "7b0e1c52-2f6a-4c1e-9a51-3d8f0a6b9c10"

static Paddock__V1__SecretValue *value(const char *name, const char *v) {
        Paddock__V1__SecretValue *sv = calloc(1, sizeof *sv);
        paddock__v1__secret_value__init(sv);
        sv->name = (char *)name;
        sv->value.data = (uint8_t *)v;
        sv->value.len = strlen(v);
        return sv;
}

/* Seals the values to rs's public key with the api's AAD and hands them in. */
static void deliver(struct run_secrets *rs, Paddock__V1__SecretValue **vals, size_t n) {
        Paddock__V1__SecretBundle b = PADDOCK__V1__SECRET_BUNDLE__INIT;
        b.secrets = vals;
        b.n_secrets = n;
        size_t len = paddock__v1__secret_bundle__get_packed_size(&b);
        uint8_t *plain = malloc(len + 1), *ct = malloc(len + SEAL_TAG_LEN);
        paddock__v1__secret_bundle__pack(&b, plain);
        uint8_t pub[48], eph[SEAL_PUBLIC_KEY_LEN], nonce[SEAL_NONCE_LEN];
        assert_int_equal(EVP_DecodeBlock(pub, (const uint8_t *)secrets_public_key(rs), 44), 33);
        const char aad[] = "paddock-secrets:" RUN;
        assert_int_equal(seal_encrypt(pub, plain, len, aad, strlen(aad), eph, nonce, ct), 0);
        Paddock__V1__SealedSecrets s = PADDOCK__V1__SEALED_SECRETS__INIT;
        s.ephemeral_public_key.data = eph;
        s.ephemeral_public_key.len = sizeof eph;
        s.nonce.data = nonce;
        s.nonce.len = sizeof nonce;
        s.ciphertext.data = ct;
        s.ciphertext.len = len + SEAL_TAG_LEN;
        secrets_on_sealed(RUN, &s);
        free(plain);
        free(ct);
}

static void test_identity_only_run_gets_env_header_and_file(void **state) {
        (void)state;
        Paddock__V1__SecretRef r_env = PADDOCK__V1__SECRET_REF__INIT, r_file = PADDOCK__V1__SECRET_REF__INIT,
                               r_hdr = PADDOCK__V1__SECRET_REF__INIT;
        r_env.name = "identity:0";
        r_env.env = "CLOUD_TOKEN";
        r_file.name = "identity:1";
        r_file.file = "sts.jwt";
        r_hdr.name = "identity:2";
        r_hdr.header_host = "api.example.com";
        r_hdr.header_name = "Authorization";
        r_hdr.header_port = 443;
        Paddock__V1__SecretRef *ids[] = {&r_env, &r_file, &r_hdr};
        Paddock__V1__SandboxSnapshot snap = PADDOCK__V1__SANDBOX_SNAPSHOT__INIT;
        snap.identity = ids;
        snap.n_identity = 3;
        struct run_secrets *rs = NULL;
        /* no team secret at all: the identity entries alone need the key pair */
        assert_int_equal(secrets_run_new(RUN, &snap, &rs), 0);
        assert_non_null(rs);
        Paddock__V1__SecretValue *vals[] = {value("identity:0", "tok.env.sig"), value("identity:1", "tok.file.sig"),
                                            value("identity:2", "Bearer tok.hdr.sig")};
        deliver(rs, vals, 3);
        struct err_detail e = {0};
        assert_int_equal(secrets_run_wait(rs, &snap, 5000, &e), 0);
        const char *const *env = secrets_env(rs);
        assert_string_equal(env[0], "CLOUD_TOKEN=tok.env.sig");
        assert_null(env[1]); /* the file's and the header's tokens are not in the env */
        size_t n;
        const struct proxy_header *h = secrets_headers(rs, &n);
        assert_int_equal(n, 1);
        assert_string_equal(h[0].host, "api.example.com");
        assert_string_equal(h[0].name, "Authorization");
        assert_int_equal(h[0].port, 443);
        assert_memory_equal(h[0].value, "Bearer tok.hdr.sig", h[0].value_len);
        const struct secret_file *f = secrets_files(rs, &n);
        assert_int_equal(n, 1);
        assert_string_equal(f[0].name, "sts.jwt");
        assert_int_equal(f[0].len, strlen("tok.file.sig"));
        assert_memory_equal(f[0].value, "tok.file.sig", f[0].len);
        secrets_run_free(rs);
        assert_true(secrets_run_destroyed(RUN));
        for (size_t i = 0; i < 3; i++)
                free(vals[i]);
}

/* A file destination is the identity entries' only: a team secret's ref
 * naming a file (or a path as the name) is refused. */
static void test_file_refused_for_secrets_and_paths(void **state) {
        (void)state;
        for (int c = 0; c < 2; c++) {
                Paddock__V1__SecretRef ref = PADDOCK__V1__SECRET_REF__INIT;
                ref.name = c == 0 ? "TEAM_KEY" : "identity:0";
                ref.file = c == 0 ? "key" : "../escape";
                Paddock__V1__SecretRef *refs[] = {&ref};
                Paddock__V1__SandboxSnapshot snap = PADDOCK__V1__SANDBOX_SNAPSHOT__INIT;
                if (c == 0) {
                        snap.secrets = refs;
                        snap.n_secrets = 1;
                } else {
                        snap.identity = refs;
                        snap.n_identity = 1;
                }
                struct run_secrets *rs = NULL;
                assert_int_equal(secrets_run_new(RUN, &snap, &rs), 0);
                Paddock__V1__SecretValue *vals[] = {value(ref.name, "v")};
                deliver(rs, vals, 1);
                struct err_detail e = {0};
                assert_int_equal(secrets_run_wait(rs, &snap, 5000, &e), -EINVAL);
                assert_null(strstr(e.message, "\"v\""));
                secrets_run_free(rs);
                free(vals[0]);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_identity_only_run_gets_env_header_and_file),
                cmocka_unit_test(test_file_refused_for_secrets_and_paths),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

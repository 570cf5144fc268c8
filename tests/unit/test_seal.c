/* Sealed secrets: only the run's key pair opens a message, only with the run's
 * aad, and nothing tampered with opens at all. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "crypto/seal.h"

static const char secret[] = "{\"GITHUB_TOKEN\":\"ghp_not_a_real_token_0123456789\"}";
static const char run_a[] = "run:6f1c1f0e-6a39-4a8e-9f0e-6a5b2f2d1c01";
static const char run_b[] = "run:0b4a3e53-2a9d-4c1e-8a8f-3e0d7c9b5a02";

struct sealed {
        uint8_t eph[SEAL_PUBLIC_KEY_LEN];
        uint8_t nonce[SEAL_NONCE_LEN];
        uint8_t ct[sizeof secret + SEAL_TAG_LEN];
        size_t ctlen;
};

static void seal_secret(const struct seal_keypair *kp, const char *aad, struct sealed *ret) {
        assert_int_equal(seal_encrypt(seal_keypair_public_key(kp), secret, sizeof secret, aad, strlen(aad),
                                      ret->eph, ret->nonce, ret->ct), 0);
        ret->ctlen = sizeof secret + SEAL_TAG_LEN;
}

static int open_secret(const struct seal_keypair *kp, const struct sealed *s, const char *aad, uint8_t *out) {
        return seal_decrypt(kp, s->eph, s->nonce, s->ct, s->ctlen, aad, strlen(aad), out);
}

static void test_round_trip(void **state) {
        _cleanup_(seal_keypair_freep) struct seal_keypair *kp = NULL;
        struct sealed s;
        uint8_t out[sizeof secret];

        assert_int_equal(seal_keypair_new(&kp), 0);
        seal_secret(kp, run_a, &s);
        assert_memory_not_equal(s.ct, secret, sizeof secret);   /* not in clear */
        assert_int_equal(open_secret(kp, &s, run_a, out), 0);
        assert_memory_equal(out, secret, sizeof secret);

        /* same message twice: fresh ephemeral key, nonce and ciphertext */
        struct sealed s2;
        seal_secret(kp, run_a, &s2);
        assert_memory_not_equal(s.eph, s2.eph, SEAL_PUBLIC_KEY_LEN);
        assert_memory_not_equal(s.nonce, s2.nonce, SEAL_NONCE_LEN);
        assert_memory_not_equal(s.ct, s2.ct, s.ctlen);

        /* empty plaintext still authenticates */
        uint8_t eph[SEAL_PUBLIC_KEY_LEN], nonce[SEAL_NONCE_LEN], tag[SEAL_TAG_LEN], none[1];
        assert_int_equal(seal_encrypt(seal_keypair_public_key(kp), NULL, 0, run_a, strlen(run_a), eph, nonce, tag), 0);
        assert_int_equal(seal_decrypt(kp, eph, nonce, tag, sizeof tag, run_a, strlen(run_a), none), 0);
        assert_int_equal(seal_decrypt(kp, eph, nonce, tag, sizeof tag, run_b, strlen(run_b), none), -EBADMSG);
}

static void test_wrong_key(void **state) {
        _cleanup_(seal_keypair_freep) struct seal_keypair *kp = NULL, *other = NULL;
        struct sealed s;
        uint8_t out[sizeof secret];

        assert_int_equal(seal_keypair_new(&kp), 0);
        assert_int_equal(seal_keypair_new(&other), 0);
        assert_memory_not_equal(seal_keypair_public_key(kp), seal_keypair_public_key(other), SEAL_PUBLIC_KEY_LEN);
        seal_secret(kp, run_a, &s);
        memset(out, 0x77, sizeof out);
        assert_int_equal(open_secret(other, &s, run_a, out), -EBADMSG);
        assert_null(memmem(out, sizeof out, "ghp_", 4));       /* nothing unauthenticated leaks */
}

static void test_tamper(void **state) {
        _cleanup_(seal_keypair_freep) struct seal_keypair *kp = NULL;
        struct sealed s, t;
        uint8_t out[sizeof secret];

        assert_int_equal(seal_keypair_new(&kp), 0);
        seal_secret(kp, run_a, &s);

        for (size_t i = 0; i < s.ctlen; i++) {          /* every ciphertext and tag byte */
                t = s;
                t.ct[i] ^= 0x01;
                assert_int_equal(open_secret(kp, &t, run_a, out), -EBADMSG);
        }
        for (size_t i = 0; i < SEAL_NONCE_LEN; i++) {
                t = s;
                t.nonce[i] ^= 0x80;
                assert_int_equal(open_secret(kp, &t, run_a, out), -EBADMSG);
        }
        for (size_t i = 0; i < SEAL_PUBLIC_KEY_LEN; i++) {
                t = s;
                t.eph[i] ^= 0x02;
                assert_int_equal(open_secret(kp, &t, run_a, out), -EBADMSG);
        }
        t = s;                                          /* truncated */
        t.ctlen = s.ctlen - 1;
        assert_int_equal(open_secret(kp, &t, run_a, out), -EBADMSG);
        t.ctlen = SEAL_TAG_LEN - 1;
        assert_int_equal(open_secret(kp, &t, run_a, out), -EBADMSG);

        char aad[sizeof run_a];                          /* one aad bit */
        memcpy(aad, run_a, sizeof aad);
        aad[5] ^= 0x01;
        assert_int_equal(open_secret(kp, &s, aad, out), -EBADMSG);
        assert_int_equal(seal_decrypt(kp, s.eph, s.nonce, s.ct, s.ctlen, run_a, strlen(run_a) - 1, out), -EBADMSG);

        /* an all-zero (low-order) ephemeral key is refused, not used */
        t = s;
        memset(t.eph, 0, sizeof t.eph);
        assert_int_equal(open_secret(kp, &t, run_a, out), -EBADMSG);

        /* still opens untouched */
        assert_int_equal(open_secret(kp, &s, run_a, out), 0);
}

static void test_replay_to_other_run(void **state) {
        _cleanup_(seal_keypair_freep) struct seal_keypair *kp = NULL;
        struct sealed s;
        uint8_t out[sizeof secret];

        /* even with the same key pair (worst case), run B's aad does not open run A's message */
        assert_int_equal(seal_keypair_new(&kp), 0);
        seal_secret(kp, run_a, &s);
        assert_int_equal(open_secret(kp, &s, run_b, out), -EBADMSG);
        assert_int_equal(open_secret(kp, &s, run_a, out), 0);
}

static void test_freed_key_gone(void **state) {
        struct seal_keypair *kp = NULL;
        _cleanup_(seal_keypair_freep) struct seal_keypair *next = NULL;
        struct sealed s;
        uint8_t out[sizeof secret];

        assert_int_equal(seal_keypair_new(&kp), 0);
        seal_secret(kp, run_a, &s);
        assert_null(seal_keypair_free(kp));
        assert_null(seal_keypair_free(NULL));

        /* The only way to open s was the freed private key: a new pair (as after
         * a restart) cannot, whatever aad is tried. */
        assert_int_equal(seal_keypair_new(&next), 0);
        assert_int_equal(open_secret(next, &s, run_a, out), -EBADMSG);
}

static void test_bad_arguments(void **state) {
        _cleanup_(seal_keypair_freep) struct seal_keypair *kp = NULL;
        uint8_t eph[SEAL_PUBLIC_KEY_LEN], nonce[SEAL_NONCE_LEN], ct[sizeof secret + SEAL_TAG_LEN];
        uint8_t zero_pub[SEAL_PUBLIC_KEY_LEN] = {};

        assert_int_equal(seal_keypair_new(&kp), 0);
        const uint8_t *pub = seal_keypair_public_key(kp);
        /* aad is mandatory: an unbound message could be replayed to any run */
        assert_int_equal(seal_encrypt(pub, secret, sizeof secret, NULL, 0, eph, nonce, ct), -EINVAL);
        assert_int_equal(seal_encrypt(pub, secret, sizeof secret, "", 0, eph, nonce, ct), -EINVAL);
        assert_int_equal(seal_encrypt(pub, NULL, 5, run_a, strlen(run_a), eph, nonce, ct), -EINVAL);
        assert_int_equal(seal_encrypt(zero_pub, secret, sizeof secret, run_a, strlen(run_a), eph, nonce, ct),
                         -EINVAL);
        assert_int_equal(seal_encrypt(pub, secret, SEAL_MAX_PLAINTEXT + 1, run_a, strlen(run_a), eph, nonce, ct),
                         -EMSGSIZE);
        assert_int_equal(seal_decrypt(NULL, eph, nonce, ct, sizeof ct, run_a, strlen(run_a), ct), -EINVAL);
        assert_int_equal(seal_decrypt(kp, eph, nonce, ct, sizeof ct, NULL, 0, ct), -EINVAL);
        assert_null(seal_keypair_public_key(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_wrong_key),
                cmocka_unit_test(test_tamper),
                cmocka_unit_test(test_replay_to_other_run),
                cmocka_unit_test(test_freed_key_gone),
                cmocka_unit_test(test_bad_arguments),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

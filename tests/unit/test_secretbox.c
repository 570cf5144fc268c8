/* Secrets at rest: envelope encryption round trips, and every kind of wrong
 * key, wrong aad or tampered blob is refused with -EBADMSG. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/macro.h"
#include "crypto/secretbox.h"

static const char hex_key[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
static const char tenant_a[] = "tenant:3b8f0e3c-1d2a-4f5b-8c7d-9e0f1a2b3c4d";
static const char tenant_b[] = "tenant:7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d";
static const char value[] = "postgres://app:hunter2@db.internal/app";

static void master(uint8_t key[SECRETBOX_KEY_LEN]) {
        assert_int_equal(secretbox_parse_master_key(hex_key, key, NULL), 0);
}

static void test_parse_master_key(void **state) {
        uint8_t k[SECRETBOX_KEY_LEN], want[SECRETBOX_KEY_LEN];
        struct err_detail e = {};
        for (size_t i = 0; i < sizeof want; i++)
                want[i] = (uint8_t)i;

        assert_int_equal(secretbox_parse_master_key(hex_key, k, &e), 0);
        assert_memory_equal(k, want, sizeof want);
        memset(k, 0, sizeof k);
        assert_int_equal(secretbox_parse_master_key(
                "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F\n", k, &e), 0);
        assert_memory_equal(k, want, sizeof want);
        /* base64 of the same 32 bytes: padded, unpadded, URL-safe, with whitespace */
        const char *b64[] = {
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
                "  AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\r\n",
        };
        for (size_t i = 0; i < ELEMENTSOF(b64); i++) {
                memset(k, 0, sizeof k);
                assert_int_equal(secretbox_parse_master_key(b64[i], k, &e), 0);
                assert_memory_equal(k, want, sizeof want);
        }
        uint8_t hi[SECRETBOX_KEY_LEN];
        memset(hi, 0xfb, sizeof hi);
        hi[31] = 0xff;
        assert_int_equal(secretbox_parse_master_key("+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/8=", k, &e), 0);
        assert_memory_equal(k, hi, sizeof hi);
        assert_int_equal(secretbox_parse_master_key("-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_8", k, &e), 0);
        assert_memory_equal(k, hi, sizeof hi);
}

static void expect_bad_master(const char *s, const char *reason_part) {
        uint8_t k[SECRETBOX_KEY_LEN];
        struct err_detail e = {};
        memset(k, 0xa5, sizeof k);
        int r = secretbox_parse_master_key(s, k, &e);
        if (r != -EINVAL)
                fail_msg("master \"%s\": expected -EINVAL, got %d", s ? s : "(null)", r);
        assert_string_equal(e.code, "master_key");
        if (!strstr(e.message, reason_part))
                fail_msg("master \"%s\": reason \"%s\" lacks \"%s\"", s ? s : "(null)", e.message, reason_part);
        /* the message never repeats key material */
        if (s && strlen(s) >= 8) {
                char head[9];
                memcpy(head, s, 8);
                head[8] = 0;
                assert_null(strstr(e.message, head));
        }
        for (size_t i = 0; i < sizeof k; i++)
                assert_int_equal(k[i], 0xa5);          /* unchanged */
}

static void test_parse_master_key_bad(void **state) {
        expect_bad_master(NULL, "not set");
        expect_bad_master("", "empty");
        expect_bad_master(" \n", "empty");
        expect_bad_master("00010203", "8 characters");
        expect_bad_master("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1", "63 characters");
        expect_bad_master("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f0", "65 characters");
        expect_bad_master("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g", "not hexadecimal");
        expect_bad_master("0x0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "not hexadecimal");
        expect_bad_master("00010203040506070809 a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "not hexadecimal");
        expect_bad_master("0000000000000000000000000000000000000000000000000000000000000000", "all zero");
        expect_bad_master("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "all zero");
        expect_bad_master("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8A", "not base64 of 32 bytes");
        expect_bad_master("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh!=", "not valid base64");
        expect_bad_master("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=", "not canonical");
        expect_bad_master("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh==", "not valid base64");
        expect_bad_master("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==", "not valid base64");
        expect_bad_master("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=AAAA", "48 characters");
        expect_bad_master("correct horse battery staple", "28 characters");
}

static void test_wrap_unwrap(void **state) {
        uint8_t mk[SECRETBOX_KEY_LEN], dk[SECRETBOX_KEY_LEN], dk2[SECRETBOX_KEY_LEN], out[SECRETBOX_KEY_LEN];
        uint8_t blob[SECRETBOX_WRAPPED_KEY_LEN], blob2[SECRETBOX_WRAPPED_KEY_LEN], t[SECRETBOX_WRAPPED_KEY_LEN];

        master(mk);
        assert_int_equal(secretbox_new_data_key(dk), 0);
        assert_int_equal(secretbox_new_data_key(dk2), 0);
        assert_memory_not_equal(dk, dk2, sizeof dk);

        assert_int_equal(secretbox_wrap_key(mk, dk, tenant_a, strlen(tenant_a), blob), SECRETBOX_WRAPPED_KEY_LEN);
        assert_int_equal(blob[0], SECRETBOX_V1_KEY);
        assert_null(memmem(blob, sizeof blob, dk, 8));         /* key not in clear */
        assert_int_equal(secretbox_unwrap_key(mk, blob, sizeof blob, tenant_a, strlen(tenant_a), out), 0);
        assert_memory_equal(out, dk, sizeof dk);

        /* random nonce: wrapping twice differs */
        assert_int_equal(secretbox_wrap_key(mk, dk, tenant_a, strlen(tenant_a), blob2), SECRETBOX_WRAPPED_KEY_LEN);
        assert_memory_not_equal(blob, blob2, sizeof blob);

        /* wrong master key, other tenant, tampering, truncation */
        uint8_t mk2[SECRETBOX_KEY_LEN];
        memcpy(mk2, mk, sizeof mk2);
        mk2[0] ^= 1;
        memset(out, 0x3c, sizeof out);
        assert_int_equal(secretbox_unwrap_key(mk2, blob, sizeof blob, tenant_a, strlen(tenant_a), out), -EBADMSG);
        for (size_t i = 0; i < sizeof out; i++)
                assert_int_equal(out[i], 0x3c);                 /* untouched on failure */
        assert_int_equal(secretbox_unwrap_key(mk, blob, sizeof blob, tenant_b, strlen(tenant_b), out), -EBADMSG);
        assert_int_equal(secretbox_unwrap_key(mk, blob, sizeof blob, NULL, 0, out), -EBADMSG);
        for (size_t i = 0; i < sizeof blob; i++) {
                memcpy(t, blob, sizeof t);
                t[i] ^= 0x10;
                assert_int_equal(secretbox_unwrap_key(mk, t, sizeof t, tenant_a, strlen(tenant_a), out), -EBADMSG);
        }
        assert_int_equal(secretbox_unwrap_key(mk, blob, sizeof blob - 1, tenant_a, strlen(tenant_a), out), -EBADMSG);
}

static void test_seal_open(void **state) {
        uint8_t dk[SECRETBOX_KEY_LEN], blob[SECRETBOX_SEALED_LEN(sizeof value)], out[sizeof value];

        assert_int_equal(secretbox_new_data_key(dk), 0);
        assert_int_equal(secretbox_seal(dk, value, sizeof value, tenant_a, strlen(tenant_a), blob),
                         (int)SECRETBOX_SEALED_LEN(sizeof value));
        assert_int_equal(blob[0], SECRETBOX_V1_DATA);
        assert_null(memmem(blob, sizeof blob, "hunter2", 7));
        assert_int_equal(secretbox_open(dk, blob, sizeof blob, tenant_a, strlen(tenant_a), out), (int)sizeof value);
        assert_memory_equal(out, value, sizeof value);

        /* empty value */
        uint8_t eblob[SECRETBOX_OVERHEAD], eout[1];
        assert_int_equal(secretbox_seal(dk, NULL, 0, NULL, 0, eblob), SECRETBOX_OVERHEAD);
        assert_int_equal(secretbox_open(dk, eblob, sizeof eblob, NULL, 0, eout), 0);

        assert_int_equal(secretbox_seal(dk, value, SECRETBOX_MAX_PLAINTEXT + 1, NULL, 0, blob), -EMSGSIZE);
}

static void test_open_refuses(void **state) {
        uint8_t dk[SECRETBOX_KEY_LEN], dk2[SECRETBOX_KEY_LEN];
        uint8_t blob[SECRETBOX_SEALED_LEN(sizeof value)], t[sizeof blob], out[sizeof value];

        assert_int_equal(secretbox_new_data_key(dk), 0);
        assert_int_equal(secretbox_new_data_key(dk2), 0);
        assert_int_equal(secretbox_seal(dk, value, sizeof value, tenant_a, strlen(tenant_a), blob),
                         (int)sizeof blob);

        /* wrong key */
        memset(out, 0, sizeof out);
        assert_int_equal(secretbox_open(dk2, blob, sizeof blob, tenant_a, strlen(tenant_a), out), -EBADMSG);
        assert_null(memmem(out, sizeof out, "hunter2", 7));
        /* aad mismatch: other tenant, missing, one byte longer */
        assert_int_equal(secretbox_open(dk, blob, sizeof blob, tenant_b, strlen(tenant_b), out), -EBADMSG);
        assert_int_equal(secretbox_open(dk, blob, sizeof blob, NULL, 0, out), -EBADMSG);
        assert_int_equal(secretbox_open(dk, blob, sizeof blob, tenant_a, sizeof tenant_a, out), -EBADMSG);
        /* every byte: version, nonce, ciphertext, tag */
        for (size_t i = 0; i < sizeof blob; i++) {
                memcpy(t, blob, sizeof t);
                t[i] ^= 0x01;
                assert_int_equal(secretbox_open(dk, t, sizeof t, tenant_a, strlen(tenant_a), out), -EBADMSG);
        }
        /* truncated or extended */
        assert_int_equal(secretbox_open(dk, blob, sizeof blob - 1, tenant_a, strlen(tenant_a), out), -EBADMSG);
        assert_int_equal(secretbox_open(dk, blob, SECRETBOX_OVERHEAD - 1, tenant_a, strlen(tenant_a), out), -EBADMSG);
        assert_int_equal(secretbox_open(dk, blob, 0, tenant_a, strlen(tenant_a), out), -EBADMSG);
        /* still opens */
        assert_int_equal(secretbox_open(dk, blob, sizeof blob, tenant_a, strlen(tenant_a), out), (int)sizeof value);
}

/* A wrapped key is not a sealed value and the reverse, even under one key. */
static void test_domain_separation(void **state) {
        uint8_t k[SECRETBOX_KEY_LEN], dk[SECRETBOX_KEY_LEN], out[SECRETBOX_KEY_LEN];
        uint8_t wrapped[SECRETBOX_WRAPPED_KEY_LEN], sealed[SECRETBOX_SEALED_LEN(SECRETBOX_KEY_LEN)];

        master(k);
        assert_int_equal(secretbox_new_data_key(dk), 0);
        assert_int_equal(secretbox_wrap_key(k, dk, tenant_a, strlen(tenant_a), wrapped), (int)sizeof wrapped);
        assert_int_equal(secretbox_seal(k, dk, sizeof dk, tenant_a, strlen(tenant_a), sealed), (int)sizeof sealed);
        assert_int_equal(secretbox_open(k, wrapped, sizeof wrapped, tenant_a, strlen(tenant_a), out), -EBADMSG);
        assert_int_equal(secretbox_unwrap_key(k, sealed, sizeof sealed, tenant_a, strlen(tenant_a), out), -EBADMSG);
        /* relabelling the version byte does not help either */
        wrapped[0] = SECRETBOX_V1_DATA;
        assert_int_equal(secretbox_open(k, wrapped, sizeof wrapped, tenant_a, strlen(tenant_a), out), -EBADMSG);
        sealed[0] = SECRETBOX_V1_KEY;
        assert_int_equal(secretbox_unwrap_key(k, sealed, sizeof sealed, tenant_a, strlen(tenant_a), out), -EBADMSG);
}

/* The whole envelope: master key text → unwrap tenant key → open value. */
static void test_envelope(void **state) {
        uint8_t mk[SECRETBOX_KEY_LEN], dk[SECRETBOX_KEY_LEN], dk_again[SECRETBOX_KEY_LEN];
        uint8_t wrapped[SECRETBOX_WRAPPED_KEY_LEN], blob[SECRETBOX_SEALED_LEN(sizeof value)], out[sizeof value];

        assert_int_equal(secretbox_parse_master_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", mk, NULL), 0);
        assert_int_equal(secretbox_new_data_key(dk), 0);
        assert_int_equal(secretbox_wrap_key(mk, dk, tenant_a, strlen(tenant_a), wrapped), (int)sizeof wrapped);
        assert_int_equal(secretbox_seal(dk, value, sizeof value, "secret:db_url", 13, blob), (int)sizeof blob);

        /* later, from the stored blobs only */
        uint8_t mk_again[SECRETBOX_KEY_LEN];
        assert_int_equal(secretbox_parse_master_key(hex_key, mk_again, NULL), 0);      /* same key, hex */
        assert_int_equal(secretbox_unwrap_key(mk_again, wrapped, sizeof wrapped, tenant_a, strlen(tenant_a),
                                              dk_again), 0);
        assert_int_equal(secretbox_open(dk_again, blob, sizeof blob, "secret:db_url", 13, out), (int)sizeof value);
        assert_memory_equal(out, value, sizeof value);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_master_key),
                cmocka_unit_test(test_parse_master_key_bad),
                cmocka_unit_test(test_wrap_unwrap),
                cmocka_unit_test(test_seal_open),
                cmocka_unit_test(test_open_refuses),
                cmocka_unit_test(test_domain_separation),
                cmocka_unit_test(test_envelope),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

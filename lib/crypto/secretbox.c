/* Secrets at rest: envelope encryption with AES-256-GCM. */
#include "crypto/secretbox.h"
#include "core/ids.h"
#include "crypto/aead.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

/* Domain labels, authenticated after the version byte: same length so the
 * concatenation with the caller's aad stays unambiguous. */
#define LABEL_DATA "paddock-secretbox-v1-data"
#define LABEL_KEY  "paddock-secretbox-v1-key!"
_Static_assert(sizeof LABEL_DATA == sizeof LABEL_KEY, "labels must have one length");

#define ERR_CODE "master_key"

static int b64val(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+' || c == '-')
                return 62;
        if (c == '/' || c == '_')
                return 63;
        return -1;
}

static bool is_space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int secretbox_parse_master_key(const char *s, uint8_t ret[SECRETBOX_KEY_LEN], struct err_detail *reterr) {
        uint8_t key[SECRETBOX_KEY_LEN];
        int r = 0;

        if (!s || !ret)
                return err_set(reterr, -EINVAL, ERR_CODE, "master key is not set");
        while (is_space(*s))
                s++;
        size_t n = strlen(s);
        while (n > 0 && is_space(s[n - 1]))
                n--;
        if (n == 0)
                return err_set(reterr, -EINVAL, ERR_CODE, "master key is empty");

        if (n == 2 * SECRETBOX_KEY_LEN) {
                for (size_t i = 0; i < SECRETBOX_KEY_LEN; i++) {
                        int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
                        if (hi < 0 || lo < 0) {
                                r = err_set(reterr, -EINVAL, ERR_CODE,
                                            "master key has 64 characters but is not hexadecimal");
                                goto out;
                        }
                        key[i] = (uint8_t)(hi << 4 | lo);
                }
        } else if (n == 43 || n == 44) {
                /* 32 bytes = 42 full sextets + 4 bits: 43 characters, then one '='. */
                if (n == 44 && s[43] != '=') {
                        r = err_set(reterr, -EINVAL, ERR_CODE,
                                    "master key has 44 characters but is not base64 of 32 bytes");
                        goto out;
                }
                uint32_t acc = 0;
                unsigned bits = 0;
                size_t o = 0;
                for (size_t i = 0; i < 43; i++) {
                        int v = b64val(s[i]);
                        if (v < 0) {
                                r = err_set(reterr, -EINVAL, ERR_CODE, "master key is not valid base64");
                                goto out;
                        }
                        acc = acc << 6 | (uint32_t)v;
                        bits += 6;
                        if (bits >= 8) {
                                bits -= 8;
                                key[o++] = (uint8_t)(acc >> bits);
                                acc &= (1u << bits) - 1;
                        }
                }
                if (acc != 0) {     /* non-canonical: the 2 spare bits must be zero */
                        r = err_set(reterr, -EINVAL, ERR_CODE, "master key is not canonical base64");
                        goto out;
                }
        } else {
                return err_set(reterr, -EINVAL, ERR_CODE,
                               "master key has %zu characters: expected 64 hex digits or 44 base64 characters",
                               n);
        }

        static const uint8_t zero[SECRETBOX_KEY_LEN];
        if (CRYPTO_memcmp(key, zero, sizeof key) == 0) {
                r = err_set(reterr, -EINVAL, ERR_CODE, "master key is all zero bytes");
                goto out;
        }
        memcpy(ret, key, sizeof key);
out:
        OPENSSL_cleanse(key, sizeof key);
        return r;
}

int secretbox_new_data_key(uint8_t ret[SECRETBOX_KEY_LEN]) {
        return RAND_bytes(ret, SECRETBOX_KEY_LEN) == 1 ? 0 : -EIO;
}

static int box_seal(uint8_t version, const char *label, const uint8_t key[SECRETBOX_KEY_LEN],
                    const void *pt, size_t len, const void *aad, size_t aadlen, uint8_t *ret_blob) {
        if (!key || (len > 0 && !pt) || (aadlen > 0 && !aad) || !ret_blob)
                return -EINVAL;
        if (len > SECRETBOX_MAX_PLAINTEXT)
                return -EMSGSIZE;
        uint8_t *nonce = ret_blob + 1, *ct = ret_blob + 1 + AEAD_NONCE_LEN;
        if (RAND_bytes(nonce, AEAD_NONCE_LEN) != 1)
                return -EIO;
        ret_blob[0] = version;
        const struct aead_aad a[] = {
                { &ret_blob[0], 1 },
                { label, strlen(label) },
                { aad, aadlen },
        };
        int r = aead_encrypt(key, nonce, a, ELEMENTSOF(a), pt, len, ct, ct + len);
        if (r < 0)
                return r;
        return (int)SECRETBOX_SEALED_LEN(len);
}

static int box_open(uint8_t version, const char *label, const uint8_t key[SECRETBOX_KEY_LEN],
                    const uint8_t *blob, size_t bloblen, const void *aad, size_t aadlen, uint8_t *ret_pt) {
        if (!key || !blob || (aadlen > 0 && !aad) || !ret_pt)
                return -EINVAL;
        if (bloblen < SECRETBOX_OVERHEAD || blob[0] != version)
                return -EBADMSG;
        size_t len = bloblen - SECRETBOX_OVERHEAD;
        if (len > SECRETBOX_MAX_PLAINTEXT)
                return -EMSGSIZE;
        const uint8_t *nonce = blob + 1, *ct = blob + 1 + AEAD_NONCE_LEN;
        const struct aead_aad a[] = {
                { &blob[0], 1 },
                { label, strlen(label) },
                { aad, aadlen },
        };
        int r = aead_decrypt(key, nonce, a, ELEMENTSOF(a), ct, len, ct + len, ret_pt);
        if (r < 0)
                return r;
        return (int)len;
}

int secretbox_wrap_key(const uint8_t master[SECRETBOX_KEY_LEN], const uint8_t data_key[SECRETBOX_KEY_LEN],
                       const void *aad, size_t aadlen, uint8_t *ret_blob) {
        if (!data_key)
                return -EINVAL;
        return box_seal(SECRETBOX_V1_KEY, LABEL_KEY, master, data_key, SECRETBOX_KEY_LEN, aad, aadlen, ret_blob);
}

int secretbox_unwrap_key(const uint8_t master[SECRETBOX_KEY_LEN], const uint8_t *blob, size_t bloblen,
                         const void *aad, size_t aadlen, uint8_t ret_data_key[SECRETBOX_KEY_LEN]) {
        uint8_t key[SECRETBOX_KEY_LEN];
        if (!ret_data_key)
                return -EINVAL;
        if (bloblen != SECRETBOX_WRAPPED_KEY_LEN)
                return blob ? -EBADMSG : -EINVAL;
        int r = box_open(SECRETBOX_V1_KEY, LABEL_KEY, master, blob, bloblen, aad, aadlen, key);
        if (r >= 0) {
                memcpy(ret_data_key, key, sizeof key);
                r = 0;
        }
        OPENSSL_cleanse(key, sizeof key);
        return r;
}

int secretbox_seal(const uint8_t data_key[SECRETBOX_KEY_LEN], const void *plaintext, size_t len,
                   const void *aad, size_t aadlen, uint8_t *ret_blob) {
        return box_seal(SECRETBOX_V1_DATA, LABEL_DATA, data_key, plaintext, len, aad, aadlen, ret_blob);
}

int secretbox_open(const uint8_t data_key[SECRETBOX_KEY_LEN], const uint8_t *blob, size_t bloblen,
                   const void *aad, size_t aadlen, uint8_t *ret_plaintext) {
        return box_open(SECRETBOX_V1_DATA, LABEL_DATA, data_key, blob, bloblen, aad, aadlen, ret_plaintext);
}

/* AES-256-GCM with OpenSSL EVP, shared by crypto/seal and crypto/secretbox so
 * the cipher is driven (and its errors translated) in one place. Internal to
 * lib/crypto. Thread-safe: no shared state. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define AEAD_KEY_LEN 32
#define AEAD_NONCE_LEN 12
#define AEAD_TAG_LEN 16
/* EVP takes int lengths; far above any secret we seal. */
#define AEAD_MAX_LEN (64u << 20)

/* One piece of additional authenticated data; pieces are authenticated as
 * their concatenation, so fixed-length prefixes keep the encoding unambiguous. */
struct aead_aad {
        const void *p;
        size_t n;
};

/* Encrypts len bytes of pt into ret_ct (len bytes) and writes ret_tag. All
 * buffers are borrowed; pt may be NULL when len is 0; pt and ret_ct may alias.
 * Returns 0, -EMSGSIZE (len or an aad piece above AEAD_MAX_LEN), -ENOMEM, -EIO. */
int aead_encrypt(const uint8_t key[AEAD_KEY_LEN], const uint8_t nonce[AEAD_NONCE_LEN],
                 const struct aead_aad *aad, size_t naad, const void *pt, size_t len,
                 uint8_t *ret_ct, uint8_t ret_tag[AEAD_TAG_LEN]);

/* Decrypts and verifies. Returns 0, -EBADMSG if the tag does not verify (wrong
 * key, nonce, aad or tampered data; ret_pt is wiped then), -EMSGSIZE, -ENOMEM, -EIO. */
int aead_decrypt(const uint8_t key[AEAD_KEY_LEN], const uint8_t nonce[AEAD_NONCE_LEN],
                 const struct aead_aad *aad, size_t naad, const uint8_t *ct, size_t len,
                 const uint8_t tag[AEAD_TAG_LEN], uint8_t *ret_pt);

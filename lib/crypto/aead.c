/* AES-256-GCM via OpenSSL EVP. */
#include "crypto/aead.h"
#include "core/macro.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_CIPHER_CTX *, EVP_CIPHER_CTX_free);

static int add_aad(EVP_CIPHER_CTX *ctx, const struct aead_aad *aad, size_t naad, bool enc) {
        for (size_t i = 0; i < naad; i++) {
                int outl;
                if (aad[i].n == 0)
                        continue;
                if (aad[i].n > AEAD_MAX_LEN)
                        return -EMSGSIZE;
                if ((enc ? EVP_EncryptUpdate : EVP_DecryptUpdate)(ctx, NULL, &outl, aad[i].p, (int)aad[i].n) != 1)
                        return -EIO;
        }
        return 0;
}

int aead_encrypt(const uint8_t key[AEAD_KEY_LEN], const uint8_t nonce[AEAD_NONCE_LEN],
                 const struct aead_aad *aad, size_t naad, const void *pt, size_t len,
                 uint8_t *ret_ct, uint8_t ret_tag[AEAD_TAG_LEN]) {
        _cleanup_(EVP_CIPHER_CTX_freep) EVP_CIPHER_CTX *ctx = NULL;
        uint8_t final[AEAD_TAG_LEN];
        int outl, r;

        if (len > AEAD_MAX_LEN)
                return -EMSGSIZE;
        ctx = EVP_CIPHER_CTX_new();
        if (!ctx)
                return -ENOMEM;
        if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1)
                return -EIO;
        r = add_aad(ctx, aad, naad, true);
        if (r < 0)
                return r;
        if (len > 0 && EVP_EncryptUpdate(ctx, ret_ct, &outl, pt, (int)len) != 1)
                return -EIO;
        if (EVP_EncryptFinal_ex(ctx, final, &outl) != 1)    /* GCM writes nothing here */
                return -EIO;
        if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, AEAD_TAG_LEN, ret_tag) != 1)
                return -EIO;
        return 0;
}

int aead_decrypt(const uint8_t key[AEAD_KEY_LEN], const uint8_t nonce[AEAD_NONCE_LEN],
                 const struct aead_aad *aad, size_t naad, const uint8_t *ct, size_t len,
                 const uint8_t tag[AEAD_TAG_LEN], uint8_t *ret_pt) {
        _cleanup_(EVP_CIPHER_CTX_freep) EVP_CIPHER_CTX *ctx = NULL;
        uint8_t tagbuf[AEAD_TAG_LEN], final[AEAD_TAG_LEN];
        int outl, r;

        if (len > AEAD_MAX_LEN)
                return -EMSGSIZE;
        ctx = EVP_CIPHER_CTX_new();
        if (!ctx)
                return -ENOMEM;
        if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1)
                return -EIO;
        r = add_aad(ctx, aad, naad, false);
        if (r < 0)
                return r;
        if (len > 0 && EVP_DecryptUpdate(ctx, ret_pt, &outl, ct, (int)len) != 1)
                return -EIO;
        memcpy(tagbuf, tag, sizeof tagbuf);     /* EVP wants a non-const tag */
        if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, AEAD_TAG_LEN, tagbuf) != 1)
                return -EIO;
        if (EVP_DecryptFinal_ex(ctx, final, &outl) != 1) {
                /* Unauthenticated plaintext must not survive a failed check. */
                if (len > 0)
                        OPENSSL_cleanse(ret_pt, len);
                return -EBADMSG;
        }
        return 0;
}

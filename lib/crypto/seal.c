/* Sealed secrets: ephemeral X25519 + HKDF-SHA256 + AES-256-GCM. */
#include "crypto/seal.h"
#include "crypto/aead.h"

#include <errno.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#define SEAL_HKDF_INFO "paddock-seal-v1"

struct seal_keypair {
        uint8_t pub[SEAL_PUBLIC_KEY_LEN];
        uint8_t priv[32];
};

DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_PKEY *, EVP_PKEY_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_PKEY_CTX *, EVP_PKEY_CTX_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_KDF *, EVP_KDF_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_KDF_CTX *, EVP_KDF_CTX_free);

int seal_keypair_new(struct seal_keypair **ret) {
        _cleanup_(seal_keypair_freep) struct seal_keypair *kp = NULL;
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
        size_t publen = SEAL_PUBLIC_KEY_LEN, privlen = sizeof kp->priv;

        kp = OPENSSL_zalloc(sizeof *kp);
        if (!kp)
                return -ENOMEM;
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
        if (!pkey)
                return -EIO;
        if (EVP_PKEY_get_raw_public_key(pkey, kp->pub, &publen) != 1 || publen != SEAL_PUBLIC_KEY_LEN ||
            EVP_PKEY_get_raw_private_key(pkey, kp->priv, &privlen) != 1 || privlen != sizeof kp->priv)
                return -EIO;
        *ret = TAKE_PTR(kp);
        return 0;
}

struct seal_keypair *seal_keypair_free(struct seal_keypair *kp) {
        if (!kp)
                return NULL;
        OPENSSL_cleanse(kp, sizeof *kp);
        OPENSSL_free(kp);
        return NULL;
}

const uint8_t *seal_keypair_public_key(const struct seal_keypair *kp) {
        return kp ? kp->pub : NULL;
}

/* X25519(priv, peer_pub) then HKDF into ret_key. Returns 0, -EINVAL for a
 * low-order peer key (all-zero shared secret), -ENOMEM, -EIO. */
static int derive_key(EVP_PKEY *priv, const uint8_t peer_pub[SEAL_PUBLIC_KEY_LEN],
                      const uint8_t eph_pub[SEAL_PUBLIC_KEY_LEN], const uint8_t rcpt_pub[SEAL_PUBLIC_KEY_LEN],
                      uint8_t ret_key[AEAD_KEY_LEN]) {
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *peer = NULL;
        _cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *dctx = NULL;
        _cleanup_(EVP_KDF_freep) EVP_KDF *kdf = NULL;
        _cleanup_(EVP_KDF_CTX_freep) EVP_KDF_CTX *kctx = NULL;
        static const uint8_t zero[32];
        uint8_t shared[32], salt[2 * SEAL_PUBLIC_KEY_LEN];
        size_t slen = sizeof shared;
        int r = -EIO;

        peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer_pub, SEAL_PUBLIC_KEY_LEN);
        if (!peer)
                return -EINVAL;
        dctx = EVP_PKEY_CTX_new(priv, NULL);
        if (!dctx)
                return -ENOMEM;
        /* OpenSSL refuses an all-zero X25519 output itself; the explicit check
         * below keeps that guarantee independent of the library version. */
        if (EVP_PKEY_derive_init(dctx) != 1 || EVP_PKEY_derive_set_peer(dctx, peer) != 1)
                return -EIO;
        if (EVP_PKEY_derive(dctx, shared, &slen) != 1 || slen != sizeof shared ||
            CRYPTO_memcmp(shared, zero, sizeof shared) == 0) {
                r = -EINVAL;
                goto out;
        }

        memcpy(salt, eph_pub, SEAL_PUBLIC_KEY_LEN);
        memcpy(salt + SEAL_PUBLIC_KEY_LEN, rcpt_pub, SEAL_PUBLIC_KEY_LEN);
        kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
        if (!kdf)
                goto out;
        kctx = EVP_KDF_CTX_new(kdf);
        if (!kctx) {
                r = -ENOMEM;
                goto out;
        }
        OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
                OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, shared, sizeof shared),
                OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt, sizeof salt),
                OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (char *)SEAL_HKDF_INFO,
                                                  STRLEN(SEAL_HKDF_INFO)),
                OSSL_PARAM_construct_end(),
        };
        if (EVP_KDF_derive(kctx, ret_key, AEAD_KEY_LEN, params) != 1)
                goto out;
        r = 0;
out:
        OPENSSL_cleanse(shared, sizeof shared);
        return r;
}

int seal_encrypt(const uint8_t recipient_pub[SEAL_PUBLIC_KEY_LEN], const void *plaintext, size_t len,
                 const void *aad, size_t aadlen,
                 uint8_t ret_ephemeral_pub[SEAL_PUBLIC_KEY_LEN], uint8_t ret_nonce[SEAL_NONCE_LEN],
                 uint8_t *ret_ciphertext) {
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *eph = NULL;
        uint8_t eph_pub[SEAL_PUBLIC_KEY_LEN], nonce[SEAL_NONCE_LEN], key[AEAD_KEY_LEN];
        size_t publen = sizeof eph_pub;
        int r;

        if (!recipient_pub || !aad || aadlen == 0 || (len > 0 && !plaintext) || !ret_ephemeral_pub ||
            !ret_nonce || !ret_ciphertext)
                return -EINVAL;
        if (len > SEAL_MAX_PLAINTEXT)
                return -EMSGSIZE;

        eph = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
        if (!eph)
                return -EIO;
        if (EVP_PKEY_get_raw_public_key(eph, eph_pub, &publen) != 1 || publen != sizeof eph_pub)
                return -EIO;
        if (RAND_bytes(nonce, sizeof nonce) != 1)
                return -EIO;

        r = derive_key(eph, recipient_pub, eph_pub, recipient_pub, key);
        if (r < 0)
                return r;
        const struct aead_aad a = { aad, aadlen };
        r = aead_encrypt(key, nonce, &a, 1, plaintext, len, ret_ciphertext, ret_ciphertext + len);
        OPENSSL_cleanse(key, sizeof key);
        if (r < 0)
                return r;
        memcpy(ret_ephemeral_pub, eph_pub, sizeof eph_pub);
        memcpy(ret_nonce, nonce, sizeof nonce);
        return 0;
}

int seal_decrypt(const struct seal_keypair *kp, const uint8_t ephemeral_pub[SEAL_PUBLIC_KEY_LEN],
                 const uint8_t nonce[SEAL_NONCE_LEN], const uint8_t *ciphertext, size_t ctlen,
                 const void *aad, size_t aadlen, uint8_t *ret_plaintext) {
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *priv = NULL;
        uint8_t key[AEAD_KEY_LEN];
        int r;

        if (!kp || !ephemeral_pub || !nonce || !ciphertext || !aad || aadlen == 0 || !ret_plaintext)
                return -EINVAL;
        if (ctlen < SEAL_TAG_LEN)
                return -EBADMSG;
        if (ctlen - SEAL_TAG_LEN > SEAL_MAX_PLAINTEXT)
                return -EMSGSIZE;

        priv = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, kp->priv, sizeof kp->priv);
        if (!priv)
                return -EIO;
        r = derive_key(priv, ephemeral_pub, ephemeral_pub, kp->pub, key);
        if (r == -EINVAL)
                return -EBADMSG;        /* a low-order ephemeral key is a forged message */
        if (r < 0)
                return r;
        const struct aead_aad a = { aad, aadlen };
        size_t len = ctlen - SEAL_TAG_LEN;
        r = aead_decrypt(key, nonce, &a, 1, ciphertext, len, ciphertext + len, ret_plaintext);
        OPENSSL_cleanse(key, sizeof key);
        return r;
}

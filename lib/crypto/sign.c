#include "crypto/sign.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct sign_key {
        EVP_PKEY *pkey;
};

struct sign_key *sign_key_free(struct sign_key *k) {
        if (!k)
                return NULL;
        EVP_PKEY_free(k->pkey); /* OpenSSL clears private key material on free */
        free(k);
        return NULL;
}

static int sign_key_wrap(EVP_PKEY *pkey, struct sign_key **ret) {
        struct sign_key *k = calloc(1, sizeof *k);
        if (!k) {
                EVP_PKEY_free(pkey);
                return -ENOMEM;
        }
        k->pkey = pkey;
        *ret = k;
        return 0;
}

int sign_key_load(const char *path, struct sign_key **ret, struct err_detail *reterr) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return err_set(reterr, -errno, "key", "could not open signing key %s: %s", path, strerror(errno));
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                return err_set(reterr, -EINVAL, "key", "signing key %s is not a regular file", path);
        }
        if (st.st_mode & 077) {
                close(fd);
                return err_set(reterr, -EPERM, "key", "signing key %s is accessible by group or others (mode %04o, want 0600)",
                               path, (unsigned)(st.st_mode & 07777));
        }
        FILE *f = fdopen(fd, "r");
        if (!f) {
                close(fd);
                return err_set(reterr, -ENOMEM, "", "out of memory");
        }
        EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
        if (!pkey)
                return err_set(reterr, -EINVAL, "key", "signing key %s is not a PEM private key", path);
        if (EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
                EVP_PKEY_free(pkey);
                return err_set(reterr, -EINVAL, "key", "signing key %s is not an Ed25519 key", path);
        }
        int r = sign_key_wrap(pkey, ret);
        return r < 0 ? err_set(reterr, r, "", "out of memory") : 0;
}

int sign_key_generate(const char *path, struct sign_key **ret, struct err_detail *reterr) {
        EVP_PKEY *pkey = NULL;
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
        if (!ctx || EVP_PKEY_keygen_init(ctx) <= 0 || EVP_PKEY_keygen(ctx, &pkey) <= 0) {
                EVP_PKEY_CTX_free(ctx);
                return err_set(reterr, -EIO, "key", "could not generate an Ed25519 key");
        }
        EVP_PKEY_CTX_free(ctx);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd < 0) {
                int e = errno;
                EVP_PKEY_free(pkey);
                return err_set(reterr, -e, "key", "could not create signing key %s: %s", path, strerror(e));
        }
        FILE *f = fdopen(fd, "w");
        bool ok = f && PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) == 1;
        ok = (f ? fclose(f) == 0 : (close(fd), false)) && ok;
        if (!ok) {
                unlink(path);
                EVP_PKEY_free(pkey);
                return err_set(reterr, -EIO, "key", "could not write signing key %s", path);
        }
        if (!ret) {
                EVP_PKEY_free(pkey);
                return 0;
        }
        int r = sign_key_wrap(pkey, ret);
        return r < 0 ? err_set(reterr, r, "", "out of memory") : 0;
}

int sign_key_public_b64(const struct sign_key *k, char out[SIGN_PUBLIC_KEY_B64_LEN + 1]) {
        uint8_t raw[SIGN_PUBLIC_KEY_LEN];
        size_t len = sizeof raw;
        if (EVP_PKEY_get_raw_public_key(k->pkey, raw, &len) != 1 || len != sizeof raw)
                return -EIO;
        EVP_EncodeBlock((unsigned char *)out, raw, (int)sizeof raw);
        return 0;
}

/* Joins the parts into one malloc'd buffer (Ed25519 is one-shot in OpenSSL). */
static uint8_t *sign_join(const void *const *parts, const size_t *lens, size_t n, size_t *total) {
        size_t t = 0;
        for (size_t i = 0; i < n; i++)
                t += lens[i];
        uint8_t *buf = malloc(t ? t : 1);
        if (!buf)
                return NULL;
        size_t off = 0;
        for (size_t i = 0; i < n; i++) {
                if (lens[i])
                        memcpy(buf + off, parts[i], lens[i]);
                off += lens[i];
        }
        *total = t;
        return buf;
}

int sign_parts(const struct sign_key *k, const void *const *parts, const size_t *lens, size_t n,
               uint8_t sig[SIGN_SIGNATURE_LEN]) {
        size_t total;
        _cleanup_free_ uint8_t *buf = sign_join(parts, lens, n, &total);
        if (!buf)
                return -ENOMEM;
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        if (!ctx)
                return -ENOMEM;
        size_t siglen = SIGN_SIGNATURE_LEN;
        int ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, k->pkey) == 1 &&
                 EVP_DigestSign(ctx, sig, &siglen, buf, total) == 1 && siglen == SIGN_SIGNATURE_LEN;
        EVP_MD_CTX_free(ctx);
        return ok ? 0 : -EIO;
}

int sign_public_key_parse(const char *b64, uint8_t out[SIGN_PUBLIC_KEY_LEN]) {
        char buf[48];
        while (*b64 == ' ' || *b64 == '\t' || *b64 == '\n' || *b64 == '\r')
                b64++;
        size_t n = strlen(b64);
        while (n && (b64[n - 1] == ' ' || b64[n - 1] == '\t' || b64[n - 1] == '\n' || b64[n - 1] == '\r'))
                n--;
        while (n && b64[n - 1] == '=')
                n--;
        if (n != 43)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                char c = b64[i] == '-' ? '+' : b64[i] == '_' ? '/' : b64[i];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/'))
                        return -EINVAL;
                buf[i] = c;
        }
        buf[43] = '=';
        buf[44] = '\0';
        unsigned char dec[36];
        if (EVP_DecodeBlock(dec, (const unsigned char *)buf, 44) != 33)
                return -EINVAL;
        memcpy(out, dec, SIGN_PUBLIC_KEY_LEN);
        return 0;
}

bool sign_verify_parts(const uint8_t pub[SIGN_PUBLIC_KEY_LEN], const void *const *parts, const size_t *lens,
                       size_t n, const uint8_t *sig, size_t sig_len) {
        if (!sig || sig_len != SIGN_SIGNATURE_LEN)
                return false;
        EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, SIGN_PUBLIC_KEY_LEN);
        if (!pkey)
                return false;
        size_t total;
        uint8_t *buf = sign_join(parts, lens, n, &total);
        EVP_MD_CTX *ctx = buf ? EVP_MD_CTX_new() : NULL;
        bool ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
                  EVP_DigestVerify(ctx, sig, sig_len, buf, total) == 1;
        EVP_MD_CTX_free(ctx);
        free(buf);
        EVP_PKEY_free(pkey);
        return ok;
}

#include "core/ids.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

void hex_encode(const unsigned char *in, size_t n, char *out) {
        static const char digits[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[in[i] >> 4];
                out[2 * i + 1] = digits[in[i] & 15];
        }
        out[2 * n] = '\0';
}

int hex_value(unsigned char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* RAND_bytes costs about 3 µs a call whatever the size (locks, fork
 * check): each thread takes its UUIDs' bytes from a block of its own,
 * refilled from OpenSSL's CSPRNG. A forked child starts a new block (its
 * parent's, copied, would repeat the parent's UUIDs). Issue 10 §4: a
 * request id per request. */
static unsigned uuid_generation;
static pthread_once_t uuid_once = PTHREAD_ONCE_INIT;
static void uuid_after_fork(void) {
        __atomic_add_fetch(&uuid_generation, 1, __ATOMIC_RELAXED);
}
static void uuid_init(void) {
        pthread_atfork(NULL, NULL, uuid_after_fork);
}

int id_new_uuid(char buf[static UUID_STR_LEN]) {
        static _Thread_local unsigned char block[16 * 16];
        static _Thread_local size_t used = sizeof block;
        static _Thread_local unsigned generation;
        pthread_once(&uuid_once, uuid_init);
        unsigned g = __atomic_load_n(&uuid_generation, __ATOMIC_RELAXED);
        if (used == sizeof block || generation != g) {
                if (RAND_bytes(block, sizeof block) != 1)
                        return -EIO;
                used = 0;
                generation = g;
        }
        unsigned char b[16];
        memcpy(b, block + used, sizeof b);
        OPENSSL_cleanse(block + used, sizeof b); /* each byte serves once */
        used += sizeof b;
        b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
        b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
        /* 8-4-4-4-12 hex digits */
        static const unsigned char groups[] = {4, 2, 2, 2, 6};
        char *p = buf;
        const unsigned char *in = b;
        for (size_t i = 0; i < sizeof groups; i++) {
                if (i)
                        *p++ = '-';
                hex_encode(in, groups[i], p);
                in += groups[i];
                p += 2 * groups[i];
        }
        return 0;
}

bool id_is_uuid(const char *s) {
        if (!s || strlen(s) != 36)
                return false;
        for (int i = 0; i < 36; i++) {
                char c = s[i];
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (c != '-')
                                return false;
                } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                        return false;
        }
        return true;
}

bool id_is_model(const char *s) {
        size_t n = s ? strlen(s) : 0;
        return n > 0 && n <= ID_MODEL_MAX &&
               strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/@-") == n;
}

int id_random_hex(char *buf, size_t n) {
        unsigned char tmp[64];
        if (n > sizeof tmp)
                return -EINVAL;
        if (RAND_bytes(tmp, (int)n) != 1)
                return -EIO;
        hex_encode(tmp, n, buf);
        return 0;
}

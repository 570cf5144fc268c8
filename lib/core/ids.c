#include "core/ids.h"

#include <errno.h>
#include <openssl/rand.h>
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

int id_new_uuid(char buf[static UUID_STR_LEN]) {
        unsigned char b[16];
        if (RAND_bytes(b, sizeof b) != 1)
                return -EIO;
        b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
        b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
        snprintf(buf, UUID_STR_LEN,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
                 b[12], b[13], b[14], b[15]);
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

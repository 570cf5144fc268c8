#include "hook_wire.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int send_all(int fd, const void *buf, size_t len) {
        const char *p = buf;
        while (len > 0) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

/* -EPIPE: EOF before the first byte; -EBADMSG: EOF after some (cut) */
static int read_all(int fd, void *buf, size_t len, bool started) {
        char *p = buf;
        while (len > 0) {
                ssize_t n = read(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n == 0)
                        return started || p != (char *)buf ? -EBADMSG : -EPIPE;
                if (n < 0)
                        return -errno;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int hook_wire_send(int fd, const void *body, size_t len) {
        if (len == 0 || len > HOOK_WIRE_MAX)
                return -EMSGSIZE;
        unsigned char hdr[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16), (unsigned char)(len >> 8),
                                (unsigned char)len};
        int r = send_all(fd, hdr, sizeof hdr);
        return r < 0 ? r : send_all(fd, body, len);
}

int hook_wire_recv(int fd, char **ret, size_t *ret_len) {
        *ret = NULL;
        *ret_len = 0;
        unsigned char hdr[4];
        int r = read_all(fd, hdr, sizeof hdr, false);
        if (r < 0)
                return r;
        uint32_t n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
        if (n == 0 || n > HOOK_WIRE_MAX)
                return -EMSGSIZE;
        char *body = malloc((size_t)n + 1);
        if (!body)
                return -ENOMEM;
        if ((r = read_all(fd, body, n, true)) < 0) {
                free(body);
                return r;
        }
        body[n] = '\0';
        *ret = body;
        *ret_len = n;
        return 0;
}

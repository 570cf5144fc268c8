/* Client addresses behind trusted reverse proxies (client_addr.h). */
#include "http/client_addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Trims spaces and tabs around s[0..len) in place; returns the start. */
static char *trim(char *s) {
        while (*s == ' ' || *s == '\t')
                s++;
        size_t l = strlen(s);
        while (l > 0 && (s[l - 1] == ' ' || s[l - 1] == '\t'))
                s[--l] = '\0';
        return s;
}

int http_trusted_proxies_parse(const char *list, struct addr_allow *ret, size_t max, size_t *ret_n,
                               struct err_detail *reterr) {
        char buf[4096];
        if (strlen(list) >= sizeof buf)
                return err_set(reterr, -E2BIG, "trusted_proxies", "the list is longer than %zu bytes", sizeof buf - 1);
        snprintf(buf, sizeof buf, "%s", list);
        size_t n = 0;
        char *save = NULL;
        for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
                item = trim(item);
                if (!*item)
                        continue;
                if (n == max)
                        return err_set(reterr, -E2BIG, "trusted_proxies", "more than %zu entries", max);
                if (addr_allow_parse(item, &ret[n]) < 0)
                        return err_set(reterr, -EINVAL, "trusted_proxies",
                                       "\"%s\" is not an IP address or CIDR (canonical form, no host bits, no /0)",
                                       item);
                n++;
        }
        *ret_n = n;
        return 0;
}

/* Parses addr into family and bytes (an IPv4-mapped IPv6 address as IPv4). */
static bool addr_bytes(const char *addr, int *family, uint8_t out[16]) {
        if (inet_pton(AF_INET, addr, out) == 1) {
                *family = AF_INET;
                return true;
        }
        if (inet_pton(AF_INET6, addr, out) != 1)
                return false;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (!memcmp(out, mapped, sizeof mapped)) {
                memmove(out, out + 12, 4);
                *family = AF_INET;
        } else {
                *family = AF_INET6;
        }
        return true;
}

static bool in_prefix(const uint8_t *a, const struct addr_allow *p) {
        unsigned full = p->prefix_len / 8, rest = p->prefix_len % 8;
        if (memcmp(a, p->prefix, full))
                return false;
        if (!rest)
                return true;
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        return (a[full] & mask) == (p->prefix[full] & mask);
}

bool http_addr_trusted(const char *addr, const struct addr_allow *trusted, size_t n) {
        int family;
        uint8_t b[16];
        if (!addr || !addr_bytes(addr, &family, b))
                return false;
        for (size_t i = 0; i < n; i++)
                if (trusted[i].family == family && in_prefix(b, &trusted[i]))
                        return true;
        return false;
}

/* Writes addr normalised (mapped IPv4 as IPv4) into out, or addr as it is
 * when it does not parse. */
static void write_addr(const char *addr, char *out, size_t size) {
        int family;
        uint8_t b[16];
        char text[INET6_ADDRSTRLEN];
        if (addr_bytes(addr, &family, b) && inet_ntop(family, b, text, sizeof text))
                snprintf(out, size, "%s", text);
        else
                snprintf(out, size, "%s", addr);
}

void http_client_addr(const char *peer, const char *xff, const struct addr_allow *trusted, size_t n, char *out,
                      size_t size) {
        const char *p = peer ? peer : "";
        if (!http_addr_trusted(p, trusted, n) || !xff || !*xff) {
                write_addr(p, out, size);
                return;
        }
        char buf[2048], last[HTTP_CLIENT_ADDR_MAX];
        /* keep the right end of an overlong header: that is the part our
         * proxies wrote (a hop cut in two stops the walk there) */
        size_t xl = strlen(xff);
        snprintf(buf, sizeof buf, "%s", xl >= sizeof buf ? xff + xl - (sizeof buf - 1) : xff);
        snprintf(last, sizeof last, "%s", p);
        /* right to left: each hop was appended by the proxy to its right */
        for (;;) {
                char *comma = strrchr(buf, ',');
                char *hop = trim(comma ? comma + 1 : buf);
                int family;
                uint8_t b[16];
                if (!addr_bytes(hop, &family, b))
                        break; /* not an address: believe no further */
                snprintf(last, sizeof last, "%s", hop);
                if (!http_addr_trusted(hop, trusted, n))
                        break;
                if (!comma)
                        break; /* every hop trusted: the leftmost is the client */
                *comma = '\0';
        }
        write_addr(last, out, size);
}

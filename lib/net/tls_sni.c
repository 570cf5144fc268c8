/* TLS ClientHello server_name extraction (RFC 8446 §4.1.2, RFC 6066 §3). */
#include "net/tls_sni.h"

#include <stdbool.h>
#include <string.h>

struct reader {
        const uint8_t *p;
        size_t left;
};

static bool take(struct reader *r, size_t n, const uint8_t **ret) {
        if (r->left < n)
                return false;
        if (ret)
                *ret = r->p;
        r->p += n;
        r->left -= n;
        return true;
}

static bool u8(struct reader *r, unsigned *v) {
        const uint8_t *p;
        if (!take(r, 1, &p))
                return false;
        *v = p[0];
        return true;
}

static bool u16(struct reader *r, unsigned *v) {
        const uint8_t *p;
        if (!take(r, 2, &p))
                return false;
        *v = (unsigned)p[0] << 8 | p[1];
        return true;
}

/* A sub-reader over the next n bytes. */
static bool sub(struct reader *r, size_t n, struct reader *ret) {
        const uint8_t *p;
        if (!take(r, n, &p))
                return false;
        *ret = (struct reader){p, n};
        return true;
}

static enum tls_hello_result parse_server_name(struct reader ext, char *sni) {
        unsigned list_len;
        struct reader list;
        if (!u16(&ext, &list_len) || !sub(&ext, list_len, &list) || ext.left != 0)
                return TLS_HELLO_MALFORMED;
        bool found = false;
        while (list.left > 0) {
                unsigned type, nlen;
                const uint8_t *name;
                if (!u8(&list, &type) || !u16(&list, &nlen) || !take(&list, nlen, &name))
                        return TLS_HELLO_MALFORMED;
                if (type != 0)
                        continue;
                /* RFC 6066: at most one host_name */
                if (found || nlen == 0)
                        return TLS_HELLO_MALFORMED;
                size_t n = nlen;
                if (name[n - 1] == '.')
                        n--;
                if (n == 0 || n > TLS_SNI_MAX)
                        return TLS_HELLO_MALFORMED;
                for (size_t i = 0; i < n; i++) {
                        uint8_t c = name[i];
                        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                              c == '-' || c == '.' || c == '_'))
                                return TLS_HELLO_MALFORMED;
                        sni[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
                }
                sni[n] = 0;
                found = true;
        }
        return found ? TLS_HELLO_SNI : TLS_HELLO_NO_SNI;
}

enum tls_hello_result tls_parse_client_hello(const uint8_t *buf, size_t len, char ret_sni[TLS_SNI_MAX + 1]) {
        ret_sni[0] = 0;
        if (len == 0)
                return TLS_HELLO_NEED_MORE;
        if (buf[0] != 0x16)
                return TLS_HELLO_NOT_TLS;
        if (len < 5)
                return TLS_HELLO_NEED_MORE;
        if (buf[1] != 0x03)
                return TLS_HELLO_NOT_TLS;
        size_t rec_len = (size_t)buf[3] << 8 | buf[4];
        if (rec_len == 0 || rec_len > 16384)
                return TLS_HELLO_MALFORMED;
        if (len < 5 + rec_len)
                return TLS_HELLO_NEED_MORE;

        struct reader rec = {buf + 5, rec_len}, hello, r;
        unsigned type, v;
        const uint8_t *l3;
        if (!u8(&rec, &type) || type != 1 /* client_hello */ || !take(&rec, 3, &l3))
                return TLS_HELLO_MALFORMED;
        size_t hlen = (size_t)l3[0] << 16 | (size_t)l3[1] << 8 | l3[2];
        if (hlen > rec.left)
                return TLS_HELLO_MALFORMED; /* continues in a later record */
        if (!sub(&rec, hlen, &hello))
                return TLS_HELLO_MALFORMED;
        r = hello;
        if (!take(&r, 2 + 32, NULL))                          /* legacy_version, random */
                return TLS_HELLO_MALFORMED;
        if (!u8(&r, &v) || v > 32 || !take(&r, v, NULL))     /* legacy_session_id */
                return TLS_HELLO_MALFORMED;
        if (!u16(&r, &v) || v < 2 || v % 2 || !take(&r, v, NULL)) /* cipher_suites */
                return TLS_HELLO_MALFORMED;
        if (!u8(&r, &v) || v < 1 || !take(&r, v, NULL))      /* legacy_compression_methods */
                return TLS_HELLO_MALFORMED;
        if (r.left == 0)
                return TLS_HELLO_NO_SNI;                      /* no extensions at all */
        struct reader exts;
        if (!u16(&r, &v) || !sub(&r, v, &exts) || r.left != 0)
                return TLS_HELLO_MALFORMED;
        enum tls_hello_result res = TLS_HELLO_NO_SNI;
        while (exts.left > 0) {
                unsigned etype, elen;
                struct reader ext;
                /* a name read before the hello turns out malformed is not
                 * handed out: "" unless TLS_HELLO_SNI (found by tests/fuzz) */
                if (!u16(&exts, &etype) || !u16(&exts, &elen) || !sub(&exts, elen, &ext))
                        res = TLS_HELLO_MALFORMED;
                else if (etype != 0)
                        continue;
                else if (res == TLS_HELLO_SNI)
                        res = TLS_HELLO_MALFORMED; /* duplicate extension */
                else
                        res = parse_server_name(ext, ret_sni);
                if (res == TLS_HELLO_MALFORMED) {
                        ret_sni[0] = 0;
                        return res;
                }
        }
        return res;
}

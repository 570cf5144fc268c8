/* Strict HTTP/1.x proxy request head parser (RFC 9112). */
#include "net/http_parse.h"

#include <errno.h>
#include <string.h>

#include "core/ids.h"

#define ERR_CODE "http_request"

static bool is_tchar(unsigned char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c && strchr("!#$%&'*+-.^_`|~", c));
}

static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c; }

bool http_span_equal(struct http_span s, const char *str) {
        size_t n = strlen(str);
        if (s.len != n)
                return false;
        for (size_t i = 0; i < n; i++)
                if (lower(s.p[i]) != lower(str[i]))
                        return false;
        return true;
}

int http_head_length(const char *buf, size_t len, size_t max) {
        size_t n = len < max ? len : max;
        for (size_t i = 3; i < n; i++)
                if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r')
                        return (int)(i + 1);
        return len >= max ? -E2BIG : 0;
}

/* Parses "1".."65535" exactly; returns the port or -1. */
static int parse_port(const char *p, size_t len) {
        if (len == 0 || len > 5)
                return -1;
        long v = 0;
        for (size_t i = 0; i < len; i++) {
                if (p[i] < '0' || p[i] > '9')
                        return -1;
                v = v * 10 + (p[i] - '0');
        }
        return v >= 1 && v <= 65535 ? (int)v : -1;
}

/* Splits an authority "host[:port]" / "[v6][:port]" into ret->host and
 * ret->port. Userinfo ("user@host") is refused: it only ever serves to
 * disguise the real host. default_port 0 means the port is required. */
static int parse_authority(const char *p, size_t len, int default_port, struct http_request *ret,
                           struct err_detail *reterr) {
        const char *host = p, *port = NULL;
        size_t hlen, plen = 0;
        if (len == 0)
                return err_set(reterr, -EINVAL, ERR_CODE, "empty host");
        if (memchr(p, '@', len))
                return err_set(reterr, -EINVAL, ERR_CODE, "userinfo in the target is not allowed");
        if (p[0] == '[') {
                const char *close = memchr(p, ']', len);
                if (!close)
                        return err_set(reterr, -EINVAL, ERR_CODE, "unterminated IPv6 literal");
                host = p + 1;
                hlen = (size_t)(close - host);
                size_t rest = len - (size_t)(close + 1 - p);
                if (rest > 0) {
                        if (close[1] != ':')
                                return err_set(reterr, -EINVAL, ERR_CODE, "garbage after IPv6 literal");
                        port = close + 2;
                        plen = rest - 1;
                }
        } else {
                const char *colon = memchr(p, ':', len);
                if (colon && memchr(colon + 1, ':', len - (size_t)(colon + 1 - p)))
                        return err_set(reterr, -EINVAL, ERR_CODE, "IPv6 literal without brackets");
                hlen = colon ? (size_t)(colon - p) : len;
                if (colon) {
                        port = colon + 1;
                        plen = len - hlen - 1;
                }
        }
        if (hlen == 0)
                return err_set(reterr, -EINVAL, ERR_CODE, "empty host");
        if (hlen > HTTP_HOST_MAX)
                return err_set(reterr, -E2BIG, ERR_CODE, "host longer than %d bytes", HTTP_HOST_MAX);
        for (size_t i = 0; i < hlen; i++) {
                unsigned char c = (unsigned char)host[i];
                if (c <= 0x20 || c >= 0x7f || c == '/' || c == '\\' || c == '?' || c == '#' || c == '%')
                        return err_set(reterr, -EINVAL, ERR_CODE, "invalid byte 0x%02x in host", c);
        }
        memcpy(ret->host, host, hlen);
        ret->host[hlen] = 0;
        if (port) {
                int v = parse_port(port, plen);
                if (v < 0)
                        return err_set(reterr, -EINVAL, ERR_CODE, "invalid port");
                ret->port = (uint16_t)v;
                ret->port_explicit = true;
        } else if (default_port) {
                ret->port = (uint16_t)default_port;
        } else
                return err_set(reterr, -EINVAL, ERR_CODE, "CONNECT target needs a port");
        return 0;
}

static int parse_target(const char *t, size_t tlen, struct http_request *ret, struct err_detail *reterr) {
        if (ret->connect)
                return parse_authority(t, tlen, 0, ret, reterr);
        static const char http[] = "http://", https[] = "https://";
        if (tlen >= STRLEN(https) && http_span_equal((struct http_span){t, STRLEN(https)}, https))
                return err_set(reterr, -ENOTSUP, ERR_CODE, "https:// requests must use CONNECT");
        if (tlen < STRLEN(http) || !http_span_equal((struct http_span){t, STRLEN(http)}, http))
                return err_set(reterr, -ENOTSUP, ERR_CODE,
                               "only absolute-form http:// targets are served (this is a proxy)");
        const char *a = t + STRLEN(http), *end = t + tlen;
        const char *e = a;
        while (e < end && *e != '/' && *e != '?' && *e != '#')
                e++;
        int r = parse_authority(a, (size_t)(e - a), 80, ret, reterr);
        if (r < 0)
                return r;
        if (e < end && *e == '#')
                return err_set(reterr, -EINVAL, ERR_CODE, "fragment in the request target");
        /* "http://h" and "http://h?q" mean "/" and "/?q": the writer adds the slash
         * when the path does not start with one */
        ret->path = (struct http_span){e, (size_t)(end - e)};
        return 0;
}

static int parse_request_line(const char *s, size_t len, struct http_request *ret, struct err_detail *reterr) {
        const char *sp1 = memchr(s, ' ', len);
        if (!sp1 || sp1 == s)
                return err_set(reterr, -EINVAL, ERR_CODE, "malformed request line");
        size_t mlen = (size_t)(sp1 - s);
        if (mlen >= HTTP_METHOD_MAX)
                return err_set(reterr, -EINVAL, ERR_CODE, "method too long");
        for (size_t i = 0; i < mlen; i++)
                if (!is_tchar((unsigned char)s[i]))
                        return err_set(reterr, -EINVAL, ERR_CODE, "invalid method");
        memcpy(ret->method, s, mlen);
        ret->method[mlen] = 0;
        ret->connect = !strcmp(ret->method, "CONNECT");

        const char *t = sp1 + 1, *end = s + len;
        const char *sp2 = memrchr(t, ' ', (size_t)(end - t)); /* a space in the target is then caught below */
        if (!sp2 || sp2 == t)
                return err_set(reterr, -EINVAL, ERR_CODE, "malformed request line");
        for (const char *q = t; q < sp2; q++)
                if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
                        return err_set(reterr, -EINVAL, ERR_CODE, "invalid byte in the request target");
        const char *v = sp2 + 1;
        size_t vlen = (size_t)(end - v);
        if (vlen != 8 || memcmp(v, "HTTP/1.", 7) != 0 || (v[7] != '0' && v[7] != '1'))
                return err_set(reterr, -ENOTSUP, ERR_CODE, "only HTTP/1.0 and HTTP/1.1 are served");
        ret->version_minor = v[7] - '0';
        return parse_target(t, (size_t)(sp2 - t), ret, reterr);
}

static int parse_header_line(const char *s, size_t len, struct http_request *ret, struct err_detail *reterr) {
        if (s[0] == ' ' || s[0] == '\t')
                return err_set(reterr, -EINVAL, ERR_CODE, "obsolete header line folding");
        const char *colon = memchr(s, ':', len);
        if (!colon || colon == s)
                return err_set(reterr, -EINVAL, ERR_CODE, "malformed header line");
        for (const char *q = s; q < colon; q++)
                if (!is_tchar((unsigned char)*q))
                        return err_set(reterr, -EINVAL, ERR_CODE, "invalid header name");
        const char *v = colon + 1, *end = s + len;
        for (const char *q = v; q < end; q++) {
                unsigned char c = (unsigned char)*q;
                if ((c < 0x20 && c != '\t') || c == 0x7f)
                        return err_set(reterr, -EINVAL, ERR_CODE, "control byte in a header value");
        }
        while (v < end && (*v == ' ' || *v == '\t'))
                v++;
        while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
                end--;
        if (ret->n_headers >= HTTP_MAX_HEADERS)
                return err_set(reterr, -E2BIG, ERR_CODE, "more than %d header lines", HTTP_MAX_HEADERS);
        struct http_header *h = &ret->headers[ret->n_headers++];
        h->name = (struct http_span){s, (size_t)(colon - s)};
        h->value = (struct http_span){v, (size_t)(end - v)};

        if (http_span_equal(h->name, "content-length")) {
                if (h->value.len == 0 || h->value.len > 15)
                        return err_set(reterr, -EINVAL, ERR_CODE, "invalid Content-Length");
                int64_t n = 0;
                for (size_t i = 0; i < h->value.len; i++) {
                        if (h->value.p[i] < '0' || h->value.p[i] > '9')
                                return err_set(reterr, -EINVAL, ERR_CODE, "invalid Content-Length");
                        n = n * 10 + (h->value.p[i] - '0');
                }
                if (ret->content_length >= 0 && ret->content_length != n)
                        return err_set(reterr, -EINVAL, ERR_CODE, "conflicting Content-Length headers");
                ret->content_length = n;
        } else if (http_span_equal(h->name, "transfer-encoding")) {
                if (ret->chunked || !http_span_equal(h->value, "chunked"))
                        return err_set(reterr, -ENOTSUP, ERR_CODE, "only Transfer-Encoding: chunked is served");
                ret->chunked = true;
        }
        return 0;
}

int http_parse_request(const char *head, size_t len, struct http_request *ret, struct err_detail *reterr) {
        *ret = (struct http_request){.content_length = -1};
        const char *p = head, *end = head + len;
        bool first = true;
        for (;;) {
                const char *lf = memchr(p, '\n', (size_t)(end - p));
                if (!lf)
                        return err_set(reterr, -EINVAL, ERR_CODE, "incomplete request head");
                if (lf == p || lf[-1] != '\r')
                        return err_set(reterr, -EINVAL, ERR_CODE, "line not terminated by CRLF");
                size_t llen = (size_t)(lf - 1 - p);
                if (memchr(p, '\r', llen) || memchr(p, 0, llen))
                        return err_set(reterr, -EINVAL, ERR_CODE, "bare CR or NUL in the request head");
                if (llen == 0) {
                        if (first)
                                return err_set(reterr, -EINVAL, ERR_CODE, "empty request line");
                        break;
                }
                int r = first ? parse_request_line(p, llen, ret, reterr) : parse_header_line(p, llen, ret, reterr);
                if (r < 0)
                        return r;
                first = false;
                p = lf + 1;
        }
        if (ret->chunked && ret->content_length >= 0)
                return err_set(reterr, -EINVAL, ERR_CODE, "both Content-Length and Transfer-Encoding");
        if (ret->connect && (ret->chunked || ret->content_length > 0))
                return err_set(reterr, -EINVAL, ERR_CODE, "CONNECT with a body");
        return 0;
}

bool http_header_is_hop_by_hop(const struct http_header *h) {
        static const char *const names[] = {"connection", "keep-alive", "proxy-connection", "proxy-authorization",
                                            "proxy-authenticate", "te", "trailer", "upgrade", "host"};
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (http_span_equal(h->name, names[i]))
                        return true;
        return false;
}

/* ---- chunked bodies ---- */

enum {
        CH_SIZE,        /* hex digits of a chunk size */
        CH_EXT,         /* after ";": extension bytes until CR */
        CH_SIZE_LF,     /* CR seen after the size line */
        CH_DATA,        /* c->left data bytes */
        CH_DATA_CR,     /* CRLF after the data */
        CH_DATA_LF,
        CH_TRAILER,     /* a trailer line (or the final empty line) */
        CH_TRAILER_LF,
        CH_DONE,
        CH_ERROR,
};

void http_chunked_init(struct http_chunked *c, uint64_t max) { *c = (struct http_chunked){.state = CH_SIZE, .max = max}; }

static int chunk_fail(struct http_chunked *c, int err, struct err_detail *reterr, const char *what) {
        c->state = CH_ERROR;
        return err_set(reterr, err, ERR_CODE, "%s", what);
}

int http_chunked_feed(struct http_chunked *c, const char *buf, size_t len, size_t *ret_used,
                      struct err_detail *reterr) {
        size_t i = 0;
        *ret_used = 0;
        if (c->state == CH_DONE)
                return 1;
        if (c->state == CH_ERROR)
                return err_set(reterr, -EINVAL, ERR_CODE, "chunked body already refused");
        while (i < len) {
                unsigned char b = (unsigned char)buf[i];
                switch (c->state) {
                case CH_SIZE: {
                        int h = hex_value(b);
                        if (h >= 0) {
                                if (++c->digits > 16)
                                        return chunk_fail(c, -EINVAL, reterr, "chunk size longer than 16 hex digits");
                                c->left = c->left << 4 | (uint64_t)h;
                                i++;
                                break;
                        }
                        if (c->digits == 0)
                                return chunk_fail(c, -EINVAL, reterr, "chunk size is not a hex number");
                        if (b == ';') {
                                c->state = CH_EXT;
                                c->line = (size_t)c->digits + 1;
                        } else if (b == '\r')
                                c->state = CH_SIZE_LF;
                        else
                                return chunk_fail(c, -EINVAL, reterr, "invalid byte after a chunk size");
                        i++;
                        break;
                }
                case CH_EXT:
                        if (b == '\r')
                                c->state = CH_SIZE_LF;
                        else if ((b < 0x20 && b != '\t') || b == 0x7f)
                                return chunk_fail(c, -EINVAL, reterr, "control byte in a chunk extension");
                        else if (++c->line > HTTP_CHUNK_LINE_MAX)
                                return chunk_fail(c, -EINVAL, reterr, "chunk extension too long");
                        i++;
                        break;
                case CH_SIZE_LF:
                        if (b != '\n')
                                return chunk_fail(c, -EINVAL, reterr, "chunk size line not terminated by CRLF");
                        i++;
                        if (c->left > c->max - c->body)
                                return chunk_fail(c, -E2BIG, reterr, "chunked body larger than the limit");
                        c->body += c->left;
                        c->digits = 0;
                        c->line = 0;
                        c->state = c->left ? CH_DATA : CH_TRAILER;
                        break;
                case CH_DATA: {
                        size_t n = len - i;
                        if ((uint64_t)n > c->left)
                                n = (size_t)c->left;
                        c->left -= n;
                        i += n;
                        if (c->left == 0)
                                c->state = CH_DATA_CR;
                        break;
                }
                case CH_DATA_CR:
                        if (b != '\r')
                                return chunk_fail(c, -EINVAL, reterr, "chunk data not followed by CRLF");
                        c->state = CH_DATA_LF;
                        i++;
                        break;
                case CH_DATA_LF:
                        if (b != '\n')
                                return chunk_fail(c, -EINVAL, reterr, "chunk data not followed by CRLF");
                        c->state = CH_SIZE;
                        i++;
                        break;
                case CH_TRAILER:
                        if (b == '\r') {
                                c->state = CH_TRAILER_LF;
                                i++;
                                break;
                        }
                        if ((b < 0x20 && b != '\t') || b == 0x7f)
                                return chunk_fail(c, -EINVAL, reterr, "control byte in a trailer field");
                        if (c->line == 0) {
                                if (b == ' ' || b == '\t')
                                        return chunk_fail(c, -EINVAL, reterr, "obsolete line folding in the trailer");
                                c->prev = 0; /* no colon seen yet on this line */
                        }
                        if (c->prev == 0) {
                                if (b == ':' && c->line == 0)
                                        return chunk_fail(c, -EINVAL, reterr, "trailer field without a name");
                                if (b == ':')
                                        c->prev = ':';
                                else if (!is_tchar(b))
                                        return chunk_fail(c, -EINVAL, reterr, "invalid trailer field name");
                        }
                        c->line++;
                        if (c->line > HTTP_CHUNK_LINE_MAX || ++c->trailer > HTTP_CHUNK_TRAILER_MAX)
                                return chunk_fail(c, -E2BIG, reterr, "trailer fields too long");
                        i++;
                        break;
                case CH_TRAILER_LF:
                        if (b != '\n')
                                return chunk_fail(c, -EINVAL, reterr, "trailer line not terminated by CRLF");
                        i++;
                        if (c->line == 0) {
                                c->state = CH_DONE;
                                *ret_used = i;
                                return 1;
                        }
                        if (c->prev != ':')
                                return chunk_fail(c, -EINVAL, reterr, "trailer line without a colon");
                        c->line = 0;
                        c->state = CH_TRAILER;
                        break;
                default:
                        return chunk_fail(c, -EINVAL, reterr, "chunked decoder in a bad state");
                }
        }
        *ret_used = i;
        return 0;
}

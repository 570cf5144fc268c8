/* Parser of the request head an HTTP/1.x forward proxy receives from an
 * untrusted client: "CONNECT host:port" (tunnel) or an absolute-form request
 * ("GET http://host[:port]/path HTTP/1.1"). Strict on purpose: anything
 * ambiguous (bare LF, obsolete line folding, Content-Length together with
 * Transfer-Encoding, conflicting lengths, control bytes) is refused rather than
 * interpreted, so the proxy and the upstream can never disagree about where a
 * request ends. Pure functions, no I/O, no allocation: thread-safe. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define HTTP_METHOD_MAX 16
#define HTTP_HOST_MAX 255
#define HTTP_MAX_HEADERS 100

struct http_span {
        const char *p;   /* points into the parsed head (borrowed) */
        size_t len;
};

struct http_header {
        struct http_span name, value;   /* value without surrounding whitespace */
};

struct http_request {
        char method[HTTP_METHOD_MAX];   /* upper case token */
        bool connect;                   /* CONNECT: host/port are the tunnel target */
        char host[HTTP_HOST_MAX + 1];   /* as sent, IPv6 brackets removed */
        uint16_t port;                  /* explicit or 80 for http:// */
        struct http_span path;          /* path+query as sent; may be empty or start with "?" (mean "/..."); empty for CONNECT */
        int version_minor;              /* HTTP/1.<minor>, 0 or 1 */
        struct http_header headers[HTTP_MAX_HEADERS];
        size_t n_headers;
        int64_t content_length;         /* -1: none */
        bool chunked;                   /* Transfer-Encoding: chunked */
};

/* Length of the head in buf[0..len) including the final CRLF CRLF; 0 if the head
 * is not complete yet; -E2BIG if no complete head fits within max bytes. */
int http_head_length(const char *buf, size_t len, size_t max);

/* Parses a complete head (as delimited by http_head_length()). The request
 * borrows pointers into head, which must outlive it. *ret is always written.
 * Returns 0; -EINVAL (malformed: 400) with reterr naming the reason;
 * -ENOTSUP for a well-formed request the proxy does not serve (https:// in
 * absolute form, an origin-form target, a transfer coding other than chunked,
 * HTTP/2 or HTTP/0.9: 400/501); -E2BIG for more than HTTP_MAX_HEADERS headers
 * or a host longer than HTTP_HOST_MAX (431/414). */
int http_parse_request(const char *head, size_t len, struct http_request *ret, struct err_detail *reterr);

/* Case-insensitive comparison of a span with a NUL-terminated string. */
bool http_span_equal(struct http_span s, const char *str);

/* True if the header is hop-by-hop or proxy-specific and must not be forwarded
 * upstream (Connection, Keep-Alive, Proxy-*, TE, Trailer, Upgrade, Host — the
 * proxy writes its own Host from the target). */
bool http_header_is_hop_by_hop(const struct http_header *h);

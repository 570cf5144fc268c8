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
        bool port_explicit;             /* the target named its port */
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

/* Framing of a chunked request body (RFC 9112 §7.1), fed the bytes that follow
 * the head in any slicing. Strict like the head parser: chunk sizes of 1-16 hex
 * digits, extensions of visible ASCII/SP/HTAB only, every line ended by CRLF,
 * data followed by CRLF, trailer fields "token: value" without control bytes.
 * The caller forwards exactly the bytes the decoder consumed (the encoding as
 * sent) and never anything after the last chunk's terminating CRLF: those
 * bytes are not part of this request (request smuggling). */
#define HTTP_CHUNK_LINE_MAX 4096      /* chunk-size line or trailer line */
#define HTTP_CHUNK_TRAILER_MAX 16384  /* all trailer lines together */

struct http_chunked {
        int state;                      /* private */
        uint64_t left;                  /* data bytes left in the current chunk */
        uint64_t body;                  /* data bytes so far (what max bounds) */
        uint64_t max;                   /* largest body accepted */
        size_t line, trailer;           /* bytes of the current line / of all trailer lines */
        int digits;
        unsigned char prev;             /* last byte of the line so far */
};

/* Starts decoding a body of at most max data bytes. */
void http_chunked_init(struct http_chunked *c, uint64_t max);

/* Feeds buf[0..len). *ret_used is set to the bytes that belong to the body
 * (all of len unless the body ended inside buf). Returns 0 when more is
 * needed, 1 when the body ended (after *ret_used bytes), -EINVAL for bad
 * framing and -E2BIG past max, with reterr naming the reason; after an error
 * or the end further calls return the same. */
int http_chunked_feed(struct http_chunked *c, const char *buf, size_t len, size_t *ret_used,
                      struct err_detail *reterr);

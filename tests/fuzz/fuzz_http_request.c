/* The egress proxy's request head and body framing (lib/net/http_parse.h),
 * in the order the proxy's loop and worker call them (services/runner-agent/
 * proxy.c): http_head_length() on the bytes received (PROXY_HEAD_MAX), then
 * http_parse_request() on the head, then the header helpers the upstream head
 * is built with, and http_chunked_feed() on what follows the head, fed in
 * slices of 1 to 22 bytes or whole, chosen by the input's length (a body
 * arrives in any slicing), so that corpus files are plain requests. */
#include <string.h>

#include "fuzz.h"
#include "net/http_parse.h"
#include "proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *buf = (const char *)data;
        size_t len = size;
        size_t slice = len % 23 ? len % 23 : len;
        int head = http_head_length(buf, len, PROXY_HEAD_MAX);
        if (head <= 0)
                return 0;
        struct http_request rq;
        struct err_detail err = {0};
        if (http_parse_request(buf, (size_t)head, &rq, &err) < 0)
                return 0;
        /* what build_upstream_head reads of every header */
        for (size_t i = 0; i < rq.n_headers; i++)
                if (!http_header_is_hop_by_hop(&rq.headers[i]))
                        (void)http_span_equal(rq.headers[i].name, "authorization");
        if (rq.connect || !rq.chunked)
                return 0;
        struct http_chunked ch;
        http_chunked_init(&ch, 1u << 20);
        const char *p = buf + head;
        size_t left = len - (size_t)head;
        while (left > 0) {
                size_t n = left < slice ? left : slice, used = 0;
                struct err_detail e = {0};
                int r = http_chunked_feed(&ch, p, n, &used, &e);
                if (used > n)
                        __builtin_trap(); /* the contract: never more than it was given */
                if (r != 0)
                        break;
                p += n;
                left -= n;
        }
        return 0;
}

/* One websocket viewer of GET /v1/runs/{id}/stream for bench/stream.py: a
 * client that is not the bottleneck (the Python viewers were: issue 10 §4).
 *
 *   paddock-stream-viewer HOST PORT PATH WANT   (token in $PADDOCK_TOKEN)
 *
 * Connects over plain ws:// to HOST:PORT (loopback only), prints "ready" on
 * stderr once the upgrade is done, then receives until WANT file_access events
 * arrived or the server closes. Each message's receive time is taken when its
 * last fragment arrives, before anything else is done with it; the message is
 * scanned only for its "kind" and "ts" (the event format of docs/CONTRACTS.md,
 * one event per message). Prints one line per file_access event: the
 * latency in microseconds (receive time - ts), in arrival order. Exit 0 when
 * WANT events arrived, 1 otherwise. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, timegm */
#endif
#include <arpa/inet.h>
#include <libwebsockets.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MSG_MAX (1 << 20)

static struct {
        const char *host, *path, *token;
        int port;
        long want, got;
        int64_t *lat;
        char *msg;
        size_t len;
        bool done, failed;
} v;

static int64_t now_us(void) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static int num(const char *s, int n) {
        int r = 0;
        for (int i = 0; i < n; i++)
                r = r * 10 + (s[i] - '0');
        return r;
}

/* "YYYY-MM-DDTHH:MM:SS[.ffffff]Z" (UTC, as the api writes it) in microseconds; -1 if not */
static int64_t parse_ts(const char *s, const char *end) {
        if (end - s < 20 || s[4] != '-' || s[10] != 'T')
                return -1;
        struct tm tm = {.tm_year = num(s, 4) - 1900, .tm_mon = num(s + 5, 2) - 1, .tm_mday = num(s + 8, 2),
                        .tm_hour = num(s + 11, 2), .tm_min = num(s + 14, 2), .tm_sec = num(s + 17, 2)};
        int64_t us = (int64_t)timegm(&tm) * 1000000;
        const char *p = s + 19;
        if (*p == '.') {
                int64_t frac = 0, scale = 1000000;
                for (p++; p < end && *p >= '0' && *p <= '9'; p++)
                        if (scale > 1) {
                                scale /= 10;
                                frac += (*p - '0') * scale;
                        }
                us += frac;
        }
        return us;
}

static void on_message(int64_t at) {
        static const char kind[] = "\"kind\":\"file_access\"", ts[] = "\"ts\":\"";
        const char *end = v.msg + v.len;
        if (!memmem(v.msg, v.len, kind, sizeof kind - 1))
                return;
        const char *t = memmem(v.msg, v.len, ts, sizeof ts - 1);
        int64_t when = t ? parse_ts(t + sizeof ts - 1, end) : -1;
        if (when < 0)
                return;
        v.lat[v.got++] = at - when;
        if (v.got >= v.want)
                v.done = true;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
        (void)user;
        switch (reason) {
        case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
                unsigned char **p = in, *end = *p + len;
                char auth[600];
                int n = snprintf(auth, sizeof auth, "Bearer %s", v.token);
                if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, (unsigned char *)auth, n, p, end))
                        return -1;
                return 0;
        }
        case LWS_CALLBACK_CLIENT_ESTABLISHED:
                fprintf(stderr, "ready\n");
                fflush(stderr);
                return 0;
        case LWS_CALLBACK_CLIENT_RECEIVE: {
                int64_t at = now_us();
                if (v.len + len > MSG_MAX)
                        return -1;
                memcpy(v.msg + v.len, in, len);
                v.len += len;
                if (lws_is_final_fragment(wsi)) {
                        on_message(at);
                        v.len = 0;
                }
                return v.done ? -1 : 0;
        }
        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
                fprintf(stderr, "could not connect: %s\n", in ? (const char *)in : "");
                v.failed = true;
                v.done = true;
                return 0;
        case LWS_CALLBACK_CLIENT_CLOSED:
                v.done = true;
                return 0;
        default:
                return 0;
        }
}

int main(int argc, char **argv) {
        if (argc != 5 || !getenv("PADDOCK_TOKEN")) {
                fprintf(stderr, "usage: PADDOCK_TOKEN=... %s HOST PORT PATH WANT\n", argv[0]);
                return 2;
        }
        v.host = argv[1];
        v.port = atoi(argv[2]);
        v.path = argv[3];
        v.want = atol(argv[4]);
        v.token = getenv("PADDOCK_TOKEN");
        struct in_addr a;
        /* the bench talks to the local stack only */
        if (inet_pton(AF_INET, v.host, &a) != 1 || (ntohl(a.s_addr) >> 24) != 127) {
                fprintf(stderr, "HOST must be a 127.0.0.0/8 address\n");
                return 2;
        }
        v.lat = calloc((size_t)v.want + 1, sizeof *v.lat);
        v.msg = malloc(MSG_MAX);
        if (!v.lat || !v.msg)
                return 1;
        lws_set_log_level(LLL_ERR, NULL);
        static const struct lws_protocols protocols[] = {{"paddock-stream-viewer", callback, 0, 65536, 0, NULL, 0},
                                                         {NULL, NULL, 0, 0, 0, NULL, 0}};
        struct lws_context_creation_info info = {0};
        info.port = CONTEXT_PORT_NO_LISTEN;
        info.protocols = protocols;
        struct lws_context *ctx = lws_create_context(&info);
        if (!ctx)
                return 1;
        struct lws_client_connect_info ci = {0};
        ci.context = ctx;
        ci.address = v.host;
        ci.port = v.port;
        ci.path = v.path;
        ci.host = v.host;
        ci.origin = v.host;
        ci.protocol = NULL;
        if (!lws_client_connect_via_info(&ci)) {
                fprintf(stderr, "could not start the connection\n");
                return 1;
        }
        while (!v.done)
                if (lws_service(ctx, 1000) < 0)
                        break;
        lws_context_destroy(ctx);
        for (long i = 0; i < v.got; i++)
                printf("%lld\n", (long long)v.lat[i]);
        return v.got >= v.want && !v.failed ? 0 : 1;
}

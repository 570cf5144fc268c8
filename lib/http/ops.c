#include "http/ops.h"

#include <errno.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/metrics.h"

struct ops_server {
        struct lws_context *ctx;
        pthread_t thread;
        atomic_bool stop;
        int port;
        ops_ready_fn ready_fn;
        void *userdata;
};

/* One HTTP transaction: the whole response is built when the request arrives
 * and written once the socket is writable. */
struct ops_session {
        unsigned char *buf; /* LWS_PRE bytes of headroom, then the body */
        size_t len;
};

/* lws logs warnings and errors only, and into our JSON log at debug. */
static void ops_lws_log(int level, const char *line) {
        size_t l = strlen(line);
        while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r'))
                l--;
        log_ctx(LOG_DEBUG, LOG_KV("component", "libwebsockets"), "%.*s", (int)l, line);
}

int ops_not_ready_set(struct ops_not_ready *why, int err, const char *dependency, const char *fmt, ...) {
        snprintf(why->dependency, sizeof why->dependency, "%s", dependency);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why->reason, sizeof why->reason, fmt, ap);
        va_end(ap);
        return err < 0 ? err : -EIO;
}

/* A JSON string of text; bytes that are not valid UTF-8 (a foreign error
 * text may hold any) become '?' rather than losing the reason. */
static json_t *ops_json_text(const char *text) {
        json_t *j = json_string(text);
        if (j)
                return j;
        _cleanup_free_ char *copy = strdup(text);
        if (!copy)
                return NULL;
        for (char *c = copy; *c; c++)
                if ((unsigned char)*c >= 0x80)
                        *c = '?';
        return json_string(copy);
}

int ops_readiness(ops_ready_fn ready_fn, void *userdata, char **ret_body) {
        struct ops_not_ready why = {"", ""};
        int r = ready_fn ? ready_fn(userdata, &why) : 0;
        json_t *o;
        if (r >= 0)
                o = json_pack("{s:s}", "status", "ready");
        else
                o = json_pack("{s:s,s:o,s:o}", "status", "not_ready",
                              "dependency", ops_json_text(why.dependency[0] ? why.dependency : "unknown"),
                              "reason", ops_json_text(why.reason[0] ? why.reason : strerror(-r)));
        char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!body)
                return -ENOMEM;
        *ret_body = body;
        return r >= 0 ? 200 : 503;
}

static int ops_set_body(struct ops_session *s, const char *body, size_t len) {
        free(s->buf);
        s->buf = malloc(LWS_PRE + len + 1);
        if (!s->buf)
                return -ENOMEM;
        memcpy(s->buf + LWS_PRE, body, len);
        s->len = len;
        return 0;
}

/* Decides status, content type and body of a request for uri. */
static unsigned ops_route(struct ops_server *srv, struct lws *wsi, const char *uri,
                          struct ops_session *s, const char **ctype) {
        *ctype = "text/plain; charset=utf-8";
        if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0) {
                ops_set_body(s, "method not allowed\n", STRLEN("method not allowed\n"));
                return HTTP_STATUS_METHOD_NOT_ALLOWED;
        }
        if (!strcmp(uri, "/healthz")) {
                *ctype = OPS_HEALTH_CONTENT_TYPE;
                ops_set_body(s, OPS_HEALTHZ_BODY, STRLEN(OPS_HEALTHZ_BODY));
                return HTTP_STATUS_OK;
        }
        if (!strcmp(uri, "/readyz")) {
                _cleanup_free_ char *body = NULL;
                int status = ops_readiness(srv->ready_fn, srv->userdata, &body);
                if (status < 0) {
                        ops_set_body(s, "out of memory\n", 14);
                        return HTTP_STATUS_INTERNAL_SERVER_ERROR;
                }
                *ctype = OPS_HEALTH_CONTENT_TYPE;
                ops_set_body(s, body, strlen(body));
                return (unsigned)status;
        }
        if (!strcmp(uri, "/metrics")) {
                char *text = metrics_render();
                if (!text) {
                        ops_set_body(s, "out of memory\n", 14);
                        return HTTP_STATUS_INTERNAL_SERVER_ERROR;
                }
                *ctype = "text/plain; version=0.0.4; charset=utf-8";
                int r = ops_set_body(s, text, strlen(text));
                free(text);
                return r < 0 ? HTTP_STATUS_INTERNAL_SERVER_ERROR : HTTP_STATUS_OK;
        }
        ops_set_body(s, "not found\n", 10);
        return HTTP_STATUS_NOT_FOUND;
}

static int ops_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len) {
        struct ops_session *s = user;
        switch (reason) {
        case LWS_CALLBACK_HTTP: {
                struct ops_server *srv = lws_context_user(lws_get_context(wsi));
                const char *ctype;
                unsigned status = ops_route(srv, wsi, in ? (const char *)in : "", s, &ctype);
                if (!s->buf)
                        return -1; /* out of memory: drop the connection */
                unsigned char hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
                if (lws_add_http_common_headers(wsi, status, ctype, s->len, &p, end) ||
                    lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                                 (const unsigned char *)"no-store", 8, &p, end) ||
                    lws_finalize_write_http_header(wsi, start, &p, end))
                        return -1;
                lws_callback_on_writable(wsi);
                return 0;
        }
        case LWS_CALLBACK_HTTP_WRITEABLE: {
                if (!s || !s->buf)
                        break;
                int n = lws_write(wsi, s->buf + LWS_PRE, s->len, LWS_WRITE_HTTP_FINAL);
                free(s->buf);
                s->buf = NULL;
                if (n < 0)
                        return -1;
                if (lws_http_transaction_completed(wsi))
                        return -1;
                return 0;
        }
        case LWS_CALLBACK_CLOSED_HTTP:
                if (s) {
                        free(s->buf);
                        s->buf = NULL;
                }
                break;
        default:
                break;
        }
        return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols ops_protocols[] = {
        {"http", ops_callback, sizeof(struct ops_session), 0, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void *ops_thread(void *arg) {
        struct ops_server *s = arg;
        while (!atomic_load(&s->stop))
                if (lws_service(s->ctx, 0) < 0)
                        break;
        return NULL;
}

int ops_parse_addr(const char *hostport, char *host, size_t host_size, int *ret_port) {
        const char *colon = strrchr(hostport, ':');
        if (!colon || colon == hostport)
                return -EINVAL;
        const char *h = hostport;
        size_t hlen = (size_t)(colon - hostport);
        if (h[0] == '[') {
                if (hlen < 2 || h[hlen - 1] != ']')
                        return -EINVAL;
                h++;
                hlen -= 2;
        }
        if (hlen == 0 || hlen >= host_size)
                return -EINVAL;
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (end == colon + 1 || *end || port < 0 || port > 65535)
                return -EINVAL;
        memcpy(host, h, hlen);
        host[hlen] = 0;
        *ret_port = (int)port;
        return 0;
}

struct ops_server *ops_server_start(const char *bind_addr, int port, ops_ready_fn ready_fn,
                                    void *userdata, struct err_detail *reterr) {
        if (port < 0 || port > 65535) {
                err_set(reterr, -EINVAL, "config", "ops port %d is outside [0, 65535]", port);
                return NULL;
        }
        struct ops_server *s = calloc(1, sizeof *s);
        if (!s) {
                err_set(reterr, -ENOMEM, "", "out of memory");
                return NULL;
        }
        s->ready_fn = ready_fn;
        s->userdata = userdata;
        lws_set_log_level(LLL_ERR | LLL_WARN, ops_lws_log);

        struct lws_context_creation_info info;
        memset(&info, 0, sizeof info);
        info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
        info.port = CONTEXT_PORT_NO_LISTEN;
        info.user = s;
        s->ctx = lws_create_context(&info);
        if (!s->ctx) {
                err_set(reterr, -EIO, "lws", "could not create http context");
                free(s);
                return NULL;
        }

        memset(&info, 0, sizeof info);
        info.port = port; /* 0: the kernel picks one, read back below */
        /* NULL iface means every address; an IP string binds that address */
        info.iface = bind_addr && *bind_addr && strcmp(bind_addr, "0.0.0.0") ? bind_addr : NULL;
        info.protocols = ops_protocols;
        info.vhost_name = "ops";
        if (info.iface && !strchr(info.iface, ':'))
                info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
        struct lws_vhost *vh = lws_create_vhost(s->ctx, &info);
        if (!vh) {
                err_set(reterr, -EADDRNOTAVAIL, "lws", "could not listen on %s:%d",
                        bind_addr ? bind_addr : "*", port);
                lws_context_destroy(s->ctx);
                free(s);
                return NULL;
        }
        s->port = lws_get_vhost_listen_port(vh);

        int r = pthread_create(&s->thread, NULL, ops_thread, s);
        if (r != 0) {
                err_set(reterr, -r, "", "could not start ops thread: %s", strerror(r));
                lws_context_destroy(s->ctx);
                free(s);
                return NULL;
        }
        return s;
}

int ops_server_port(const struct ops_server *s) {
        return s ? s->port : -1;
}

struct ops_server *ops_server_stop(struct ops_server *s) {
        if (!s)
                return NULL;
        atomic_store(&s->stop, true);
        lws_cancel_service(s->ctx);
        pthread_join(s->thread, NULL);
        lws_context_destroy(s->ctx);
        free(s);
        return NULL;
}

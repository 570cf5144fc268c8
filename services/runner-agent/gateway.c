#include "gateway.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/ids.h"
#include "core/log.h"
#include "core/macro.h"
#include "core/timeutil.h"
#include "net/addr_policy.h"
#include "net/http_parse.h"
#include "net/netns_listen.h"
#include "net/tls_client.h"

#define IO_BUF (64 * 1024)
#define USAGE_LINE_MAX (1024 * 1024)   /* an SSE line (or JSON body) longer than this is not parsed for usage */
#define ERROR_MAX 300

static struct {
        pthread_mutex_t lock;
        struct gateway_settings cfg;
        SSL_CTX *tls;                  /* made on first use when gateway_configure was not called */
} g = {.lock = PTHREAD_MUTEX_INITIALIZER, .cfg = GATEWAY_SETTINGS_DEFAULT};

int gateway_configure(const struct gateway_settings *s, struct err_detail *reterr) {
        SSL_CTX *ctx = tls_client_ctx_new(s->ca_bundle, "gateway", reterr);
        if (!ctx)
                return -EINVAL;
        pthread_mutex_lock(&g.lock);
        SSL_CTX_free(g.tls);
        g.tls = ctx;
        g.cfg = *s;
        pthread_mutex_unlock(&g.lock);
        return 0;
}

static SSL_CTX *tls_ctx(void) {
        pthread_mutex_lock(&g.lock);
        if (!g.tls)
                g.tls = tls_client_ctx_new(NULL, "gateway", NULL);
        SSL_CTX *ctx = g.tls;
        pthread_mutex_unlock(&g.lock);
        return ctx;
}

/* A route as served: the upstream URL split once at start. */
struct route {
        const struct gateway_route *r;
        char host[HTTP_HOST_MAX + 1];
        char port[8];
        char prefix[512];              /* "" or "/prefix" without a trailing slash */
        bool literal;                  /* host is an IP literal: verified as such, no SNI */
        bool bracketed;                /* IPv6: Host header needs brackets */
};

struct conn {
        struct gateway_run *gr;
        int fd;                        /* the agent's connection */
        int ufd;                       /* the upstream's, -1 */
        struct conn *next;
};

struct gateway_run {
        char run_id[64];
        gateway_event_fn on_event;
        void *userdata;
        struct route *routes;
        size_t n_routes;
        int listen_fd, stop_fd;
        pthread_t acceptor;
        bool acceptor_started;

        struct gateway_limits limits;

        pthread_mutex_t lock;          /* conns, n_conns, stopping, totals, models, used_*, limit_fired */
        pthread_cond_t idle;           /* n_conns reached 0 */
        struct conn *conns;
        unsigned n_conns;
        bool stopping;
        struct gateway_totals totals;
        struct gateway_model_totals *models;
        size_t n_models;
        /* the live count the limits apply to: ended calls plus what the
         * open ones have reported so far */
        int64_t used_tokens;
        double used_cost;
        bool limit_fired;              /* on_limit was called */
};

/* ---- small I/O helpers, each wait bounded by an idle timeout (a stream may run long) ---- */

static int wait_fd(int fd, short events, int timeout_ms) {
        for (;;) {
                struct pollfd p = {.fd = fd, .events = events};
                int r = poll(&p, 1, timeout_ms);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                return r == 0 ? -ETIMEDOUT : 0;
        }
}

static int send_all(int fd, const void *buf, size_t len, int timeout_ms) {
        const char *p = buf;
        while (len > 0) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
                if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                        int r = wait_fd(fd, POLLOUT, timeout_ms);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (n < 0)
                        return -errno;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

/* send_all of the iovecs' bytes in order (iov is consumed). */
static int sendv_all(int fd, struct iovec *iov, int n, int timeout_ms) {
        while (n > 0) {
                struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
                ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
                if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                        int r = wait_fd(fd, POLLOUT, timeout_ms);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (w < 0)
                        return -errno;
                while (n > 0 && (size_t)w >= iov->iov_len) {
                        w -= (ssize_t)iov->iov_len;
                        iov++;
                        n--;
                }
                if (n > 0) {
                        iov->iov_base = (char *)iov->iov_base + w;
                        iov->iov_len -= (size_t)w;
                }
        }
        return 0;
}

static int ssl_write_all(SSL *ssl, int fd, const void *buf, size_t len, int timeout_ms) {
        const char *p = buf;
        while (len > 0) {
                size_t done = 0;
                ERR_clear_error();
                if (SSL_write_ex(ssl, p, len, &done) == 1) {
                        p += done;
                        len -= done;
                        continue;
                }
                int e = SSL_get_error(ssl, 0);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                        ERR_clear_error();
                        return -ECONNRESET;
                }
                int r = wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, timeout_ms);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Up to len decrypted bytes as soon as any arrive; 0 at EOF. */
static ssize_t ssl_read_some(SSL *ssl, int fd, void *buf, size_t len, int timeout_ms) {
        for (;;) {
                size_t done = 0;
                ERR_clear_error();
                int ok = SSL_read_ex(ssl, buf, len, &done);
                if (ok == 1)
                        return (ssize_t)done;
                int e = SSL_get_error(ssl, ok);
                if (e == SSL_ERROR_ZERO_RETURN)
                        return 0;
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                        ERR_clear_error();
                        return -ECONNRESET;
                }
                int r = wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, timeout_ms);
                if (r < 0)
                        return r;
        }
}

/* ---- one call ---- */

struct relay_ctx {
        bool chunked_out;              /* we frame the answer chunked towards the agent */
        int timeout_ms;
        bool client_gone;              /* the agent went away: the answer is still read for its usage */
};

struct usage {
        char model[256];
        int64_t input, output, cache_read, cache_write;
        char error[ERROR_MAX];
        bool terminal;                 /* the stream's own end event was seen */
};

struct call {
        struct conn *c;
        const struct route *rt;
        enum gateway_provider provider;
        char model[256];
        int status;                    /* what the call ended with, as the event says */
        char error[ERROR_MAX];
        int64_t t0, t_first;           /* monotonic us: request received, first answer byte */
        struct usage u;
        bool sse;                      /* the answer is text/event-stream */
        char *line;                    /* SSE line, or the JSON body, being collected (grows to USAGE_LINE_MAX) */
        size_t line_len, line_cap;
        bool line_over;                /* longer than USAGE_LINE_MAX: skipped */
        struct relay_ctx *rc;          /* while the answer is relayed */
        int64_t counted_tokens;        /* what this call added to the run's live count */
        double counted_cost;
        const char *limit;             /* the limit this call hit ("max_tokens", ...), NULL */
        bool crossed;                  /* its usage crossed a limit: the answer is cut there */
        bool cut;                      /* ... and the cut was made */
};

static const char *provider_name(enum gateway_provider p) {
        return p == GATEWAY_OPENAI ? "openai" : "anthropic";
}

static void call_error(struct call *k, int status, const char *fmt, ...) _printf_(3, 4);
static void call_error(struct call *k, int status, const char *fmt, ...) {
        k->status = status;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(k->error, sizeof k->error, fmt, ap);
        va_end(ap);
}

/* The provider's error shape, so the agent's CLI reports (and retries) it as
 * it would the provider's own. type (NULL: from the status) and code (OpenAI's
 * error.code, NULL: null) name it. */
static void answer_error_as(struct call *k, int status, const char *type, const char *code, const char *msg) {
        if (!type && k->provider == GATEWAY_ANTHROPIC)
                type = status == 400 ? "invalid_request_error" : status == 403 ? "permission_error"
                     : status == 404 ? "not_found_error" : status == 413 ? "request_too_large"
                     : status == 429 ? "rate_limit_error" : status < 500 ? "invalid_request_error" : "api_error";
        else if (!type)
                type = status < 500 ? "invalid_request_error" : "server_error";
        json_t *body = k->provider == GATEWAY_ANTHROPIC
                               ? json_pack("{s:s,s:{s:s,s:s}}", "type", "error", "error", "type", type, "message", msg)
                               : json_pack("{s:{s:s,s:s,s:n,s:o}}", "error", "message", msg, "type", type, "param",
                                           "code", code ? json_string(code) : json_null());
        _cleanup_free_ char *b = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        if (!b)
                return;
        char head[256];
        int hl = snprintf(head, sizeof head,
                          "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                          "Connection: close\r\n\r\n",
                          status, status < 500 ? "Refused" : "Gateway Error", strlen(b));
        if (send_all(k->c->fd, head, (size_t)hl, 5000) == 0)
                (void)send_all(k->c->fd, b, strlen(b), 5000);
}

static void answer_error(struct call *k, int status, const char *msg) {
        answer_error_as(k, status, NULL, NULL, msg);
}

static int64_t int_at(json_t *o, const char *key) {
        json_t *v = json_object_get(o, key);
        return json_is_integer(v) && json_integer_value(v) >= 0 ? (int64_t)json_integer_value(v) : -1;
}

static void set_if(int64_t *dst, int64_t v) {
        if (v >= 0)
                *dst = v;
}

static void take_model(struct usage *u, json_t *o) {
        const char *m = json_string_value(json_object_get(o, "model"));
        if (m && m[0])
                snprintf(u->model, sizeof u->model, "%s", m);
}

static void take_error(struct usage *u, json_t *o) {
        json_t *e = json_object_get(o, "error");
        const char *m = json_string_value(json_object_get(e, "message"));
        if (!m)
                m = json_string_value(json_object_get(o, "message"));
        if (m)
                snprintf(u->error, sizeof u->error, "%s", m);
}

/* One JSON object of the answer: an SSE event's data or a whole JSON body. */
static void usage_take(struct usage *u, enum gateway_provider p, json_t *o) {
        const char *type = json_string_value(json_object_get(o, "type"));
        if (!json_is_object(o))
                return;
        if (type && !strcmp(type, "error")) {
                take_error(u, o);
                return;
        }
        if (p == GATEWAY_ANTHROPIC) {
                json_t *src = NULL;
                if (type && !strcmp(type, "message_start")) {
                        json_t *m = json_object_get(o, "message");
                        take_model(u, m);
                        src = json_object_get(m, "usage");
                } else if (type && !strcmp(type, "message_delta")) {
                        src = json_object_get(o, "usage");
                } else if (type && !strcmp(type, "message_stop")) {
                        u->terminal = true;
                } else if (type && !strcmp(type, "message")) { /* a non-streaming answer */
                        take_model(u, o);
                        src = json_object_get(o, "usage");
                        u->terminal = true;
                } else if (json_is_object(json_object_get(o, "error")))
                        take_error(u, o);
                if (src) {
                        set_if(&u->input, int_at(src, "input_tokens"));
                        set_if(&u->output, int_at(src, "output_tokens"));
                        set_if(&u->cache_read, int_at(src, "cache_read_input_tokens"));
                        set_if(&u->cache_write, int_at(src, "cache_creation_input_tokens"));
                }
                return;
        }
        json_t *resp = NULL;
        if (type && (!strcmp(type, "response.completed") || !strcmp(type, "response.incomplete") ||
                     !strcmp(type, "response.failed"))) {
                resp = json_object_get(o, "response");
                u->terminal = true;
                if (!strcmp(type, "response.failed"))
                        take_error(u, resp);
        } else if (type && !strcmp(type, "response.created")) {
                take_model(u, json_object_get(o, "response"));
        } else if (json_is_string(json_object_get(o, "object")) &&
                   !strcmp(json_string_value(json_object_get(o, "object")), "response")) {
                resp = o; /* a non-streaming answer */
                u->terminal = true;
        } else if (json_is_object(json_object_get(o, "error")))
                take_error(u, o);
        if (resp) {
                take_model(u, resp);
                json_t *us = json_object_get(resp, "usage");
                set_if(&u->input, int_at(us, "input_tokens"));
                set_if(&u->output, int_at(us, "output_tokens"));
                set_if(&u->cache_read, int_at(json_object_get(us, "input_tokens_details"), "cached_tokens"));
        }
}

static void limit_account(struct call *k);

static void usage_parse(struct call *k, const char *s, size_t n) {
        json_t *o = json_loadb(s, n, JSON_DECODE_ANY, NULL);
        if (o) {
                usage_take(&k->u, k->provider, o);
                limit_account(k);
        }
        json_decref(o);
}

/* Feeds answer bytes (decoded from the upstream's framing) to the usage
 * parser: SSE lines "data: {...}" one by one, or the JSON body at the end
 * (usage_finish). Bounded: a line beyond USAGE_LINE_MAX is skipped. Returns
 * how many of the n bytes go to the agent: all of them, or, when an SSE line's
 * usage crossed a limit, those before that line (or through it, when its
 * start already went out with an earlier piece), so the agent gets whole
 * events only and the cut event after them (limit_cut). */
static size_t usage_feed(struct call *k, const char *p, size_t n) {
        size_t line_start = k->line_len || k->line_over ? SIZE_MAX : 0;
        for (size_t i = 0; i < n; i++) {
                char ch = p[i];
                if (k->sse && ch == '\n') {
                        if (!k->line_over && k->line_len >= 5 && !memcmp(k->line, "data:", 5)) {
                                size_t off = 5;
                                while (off < k->line_len && k->line[off] == ' ')
                                        off++;
                                size_t end = k->line_len;
                                if (end > off && k->line[end - 1] == '\r')
                                        end--;
                                usage_parse(k, k->line + off, end - off);
                        }
                        k->line_len = 0;
                        k->line_over = false;
                        if (k->crossed)
                                return line_start != SIZE_MAX ? line_start : i + 1;
                        line_start = i + 1;
                        continue;
                }
                if (k->line_over)
                        continue;
                if (k->line_len >= USAGE_LINE_MAX) {
                        k->line_over = true;
                        continue;
                }
                if (k->line_len == k->line_cap) {
                        size_t cap = k->line_cap ? 2 * k->line_cap : 4096;
                        char *l = realloc(k->line, cap < USAGE_LINE_MAX ? cap : USAGE_LINE_MAX);
                        if (!l) {
                                k->line_over = true;
                                continue;
                        }
                        k->line = l;
                        k->line_cap = cap < USAGE_LINE_MAX ? cap : USAGE_LINE_MAX;
                }
                k->line[k->line_len++] = ch;
        }
        return n;
}

static void usage_finish(struct call *k) {
        if (!k->sse && !k->line_over && k->line_len)
                usage_parse(k, k->line, k->line_len);
}

static double cost_of(const struct route *rt, const struct usage *u, enum gateway_provider p) {
        if (!rt)
                return 0;
        const struct gateway_route *r = rt->r;
        double in = (double)(u->input > 0 ? u->input : 0), out = (double)(u->output > 0 ? u->output : 0);
        double cr = (double)(u->cache_read > 0 ? u->cache_read : 0), cw = (double)(u->cache_write > 0 ? u->cache_write : 0);
        /* OpenAI counts cached tokens inside input_tokens; Anthropic apart */
        if (p == GATEWAY_OPENAI)
                in = in > cr ? in - cr : 0;
        return (in * r->usd_per_mtok_input + out * r->usd_per_mtok_output + cr * r->usd_per_mtok_cache_read +
                cw * r->usd_per_mtok_cache_write) / 1e6;
}

/* Every token the model read: OpenAI's input_tokens include its cached
 * ones, Anthropic's count cache reads and writes apart. */
static uint64_t tokens_in_of(enum gateway_provider p, const struct usage *u) {
        uint64_t in = u->input > 0 ? (uint64_t)u->input : 0, cr = u->cache_read > 0 ? (uint64_t)u->cache_read : 0;
        uint64_t cw = u->cache_write > 0 ? (uint64_t)u->cache_write : 0;
        return p == GATEWAY_OPENAI ? in : in + cr + cw;
}

/* The limit the run's live count is over (reached: at or over), with its
 * figures; NULL when none. Under gr->lock. */
static const char *limit_over(const struct gateway_run *gr, bool reached, double *value, double *used) {
        const struct gateway_limits *l = &gr->limits;
        int64_t max = (int64_t)l->max_tokens;
        if (max > 0 && (reached ? gr->used_tokens >= max : gr->used_tokens > max)) {
                *value = (double)max;
                *used = (double)gr->used_tokens;
                return "max_tokens";
        }
        if (l->max_cost_usd > 0 && (reached ? gr->used_cost >= l->max_cost_usd : gr->used_cost > l->max_cost_usd)) {
                *value = l->max_cost_usd;
                *used = gr->used_cost;
                return "max_cost_usd";
        }
        return NULL;
}

static void limit_error(struct call *k, const char *limit, double value, double used, const char *what) {
        if (!strcmp(limit, "max_tokens"))
                snprintf(k->error, sizeof k->error, "the run's max_tokens of %.0f is reached (%.0f tokens used): %s",
                         value, used, what);
        else
                snprintf(k->error, sizeof k->error, "the run's max_cost_usd of %.4f is reached (%.4f USD used): %s",
                         value, used, what);
}

/* Tells the run once (gateway_limit_fn), outside the lock. */
static void limit_tell(struct gateway_run *gr, bool fire, const char *limit, double value, double used) {
        if (!fire)
                return;
        log_ctx(LOG_INFO, LOG_KV("run", gr->run_id, "limit", limit), "model %s limit reached", limit);
        if (gr->limits.on_limit)
                gr->limits.on_limit(gr->limits.userdata, limit, value, used);
}

/* Adds what the call's usage grew by to the run's live count and checks the
 * limits on it: a crossing marks the call to be cut (usage_feed). */
static void limit_account(struct call *k) {
        struct gateway_run *gr = k->c->gr;
        int64_t tokens = (int64_t)tokens_in_of(k->provider, &k->u) + (k->u.output > 0 ? k->u.output : 0);
        double cost = cost_of(k->rt, &k->u, k->provider), value = 0, used = 0;
        const char *hit = NULL;
        bool fire = false;
        pthread_mutex_lock(&gr->lock);
        gr->used_tokens += tokens - k->counted_tokens;
        gr->used_cost += cost - k->counted_cost;
        k->counted_tokens = tokens;
        k->counted_cost = cost;
        if (!k->limit && (hit = limit_over(gr, false, &value, &used))) {
                fire = !gr->limit_fired;
                gr->limit_fired = true;
        }
        pthread_mutex_unlock(&gr->lock);
        if (!hit)
                return;
        k->limit = hit;
        k->crossed = true;
        limit_error(k, hit, value, used, k->sse ? "the answer was cut" : "the next call is refused");
        limit_tell(gr, fire, hit, value, used);
}

/* Before a call is forwarded: refused (true) when a limit is already
 * reached, in the shape each provider answers an exhausted account with, so
 * the CLIs stop instead of retrying: Anthropic 400 invalid_request_error,
 * OpenAI 429 insufficient_quota. Nothing reaches the upstream. */
static bool limit_refuse(struct call *k) {
        struct gateway_run *gr = k->c->gr;
        double value = 0, used = 0;
        pthread_mutex_lock(&gr->lock);
        const char *hit = limit_over(gr, true, &value, &used);
        bool fire = hit && !gr->limit_fired;
        if (hit)
                gr->limit_fired = true;
        pthread_mutex_unlock(&gr->lock);
        if (!hit)
                return false;
        k->limit = hit;
        limit_error(k, hit, value, used, "no further model call is made");
        limit_tell(gr, fire, hit, value, used); /* the run first: the agent may act on the answer at once */
        if (k->provider == GATEWAY_ANTHROPIC) {
                k->status = 400;
                answer_error_as(k, 400, "invalid_request_error", NULL, k->error);
        } else {
                k->status = 429;
                answer_error_as(k, 429, "insufficient_quota", "insufficient_quota", k->error);
        }
        return true;
}

/* Ends a streamed answer that crossed a limit, after the whole events that
 * went before: a blank line (ends any event whose fields went out), the
 * provider's own failure event (Anthropic `error`, OpenAI `response.failed`
 * with error.code insufficient_quota) and the end of the chunked body. An
 * answer framed by Content-Length just stops short. */
static void limit_cut(struct call *k) {
        struct relay_ctx *rc = k->rc;
        k->cut = true;
        if (rc->client_gone || !rc->chunked_out || !k->sse)
                return;
        json_t *d = k->provider == GATEWAY_ANTHROPIC
                            ? json_pack("{s:s,s:{s:s,s:s}}", "type", "error", "error", "type", "invalid_request_error",
                                        "message", k->error)
                            : json_pack("{s:s,s:{s:s,s:s,s:{s:s,s:s}}}", "type", "response.failed", "response",
                                        "object", "response", "status", "failed", "error", "code",
                                        "insufficient_quota", "message", k->error);
        _cleanup_free_ char *data = d ? json_dumps(d, JSON_COMPACT) : NULL;
        json_decref(d);
        if (!data)
                return;
        _cleanup_free_ char *ev = NULL;
        int n = asprintf(&ev, "\nevent: %s\ndata: %s\n\n", k->provider == GATEWAY_ANTHROPIC ? "error" : "response.failed",
                         data);
        if (n < 0)
                return;
        char hx[24];
        int hl = snprintf(hx, sizeof hx, "%x\r\n", n);
        if (send_all(k->c->fd, hx, (size_t)hl, rc->timeout_ms) < 0 || send_all(k->c->fd, ev, (size_t)n, rc->timeout_ms) < 0 ||
            send_all(k->c->fd, "\r\n0\r\n\r\n", 7, rc->timeout_ms) < 0)
                rc->client_gone = true;
}

/* The run's entry for the call's model (or "*" past GATEWAY_MODELS_MAX, or
 * for a name that is no model id: lib/core/ids.h id_is_model);
 * NULL on out-of-memory. Under gr->lock. */
static struct gateway_model_totals *model_entry(struct gateway_run *gr, enum gateway_provider p, const char *model) {
        if (!id_is_model(model) && strcmp(model, "*")) /* the agent names it: only catalog-shaped names kept apart */
                return model_entry(gr, p, "*");
        for (size_t i = 0; i < gr->n_models; i++)
                if (gr->models[i].provider == p && !strcmp(gr->models[i].model, model))
                        return &gr->models[i];
        if (gr->n_models >= GATEWAY_MODELS_MAX - 1 && strcmp(model, "*"))
                return model_entry(gr, p, "*");
        struct gateway_model_totals *m = realloc(gr->models, (gr->n_models + 1) * sizeof *m);
        if (!m)
                return NULL;
        gr->models = m;
        m = &gr->models[gr->n_models++];
        *m = (struct gateway_model_totals){.provider = p};
        snprintf(m->model, sizeof m->model, "%s", model);
        return m;
}

static void totals_add(struct gateway_totals *t, uint64_t in, uint64_t out, uint64_t cr, uint64_t cw, uint64_t tin,
                       double cost) {
        t->calls++;
        t->input_tokens += in;
        t->output_tokens += out;
        t->cache_read_tokens += cr;
        t->cache_write_tokens += cw;
        t->tokens_in += tin;
        t->tokens_out += out;
        t->cost_usd += cost;
}

static void call_emit(struct call *k) {
        struct gateway_run *gr = k->c->gr;
        int64_t now = time_mono_us();
        const char *model = k->u.model[0] ? k->u.model : k->model;
        int64_t in = k->u.input > 0 ? k->u.input : 0, out = k->u.output > 0 ? k->u.output : 0;
        int64_t cr = k->u.cache_read > 0 ? k->u.cache_read : 0, cw = k->u.cache_write > 0 ? k->u.cache_write : 0;
        uint64_t tin = tokens_in_of(k->provider, &k->u);
        double cost = cost_of(k->rt, &k->u, k->provider);
        if (!k->error[0] && k->u.error[0] && k->status >= 400)
                snprintf(k->error, sizeof k->error, "%s", k->u.error);
        /* a call cut or refused for a limit says so instead of the HTTP status */
        json_t *d = json_pack("{s:s,s:s,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "provider", provider_name(k->provider),
                              "model", model, "status",
                              k->limit ? json_string("limit_exceeded") : json_integer(k->status), "input_tokens",
                              (json_int_t)in, "output_tokens", (json_int_t)out, "cache_read_tokens", (json_int_t)cr,
                              "cache_write_tokens", (json_int_t)cw, "latency_ms", (json_int_t)((now - k->t0) / 1000),
                              "ttft_ms", (json_int_t)(k->t_first ? (k->t_first - k->t0) / 1000 : 0), "cost_usd", cost);
        if (d && k->error[0])
                json_object_set_new(d, "error", json_string(k->error));
        if (d && k->limit)
                json_object_set_new(d, "limit", json_string(k->limit));
        pthread_mutex_lock(&gr->lock);
        totals_add(&gr->totals, (uint64_t)in, (uint64_t)out, (uint64_t)cr, (uint64_t)cw, tin, cost);
        struct gateway_model_totals *m = model_entry(gr, k->provider, k->model);
        if (m)
                totals_add(&m->t, (uint64_t)in, (uint64_t)out, (uint64_t)cr, (uint64_t)cw, tin, cost);
        pthread_mutex_unlock(&gr->lock);
        log_ctx(LOG_DEBUG, LOG_KV("run", gr->run_id, "provider", provider_name(k->provider), "model", model),
                "model call ended with status %d%s", k->status, k->limit ? " (limit exceeded)" : "");
        if (d && gr->on_event)
                gr->on_event(gr->userdata, "model_call", d);
        json_decref(d);
}

/* ---- request head ---- */

struct req {
        char method[HTTP_METHOD_MAX];
        struct http_span target;
        struct http_header headers[HTTP_MAX_HEADERS];
        size_t n_headers;
        int64_t content_length;
        bool chunked;
};

static bool tchar(unsigned char ch) {
        return ch > 32 && ch < 127 && !strchr("\"(),/:;<=>?@[\\]{}", ch);
}

/* Origin-form request head (the agent speaks to us as to the provider):
 * strict like lib/net/http_parse (CRLF only, no folding, no control bytes,
 * one Content-Length). Returns 0 or -EINVAL. */
static int parse_head(const char *h, size_t len, struct req *q) {
        *q = (struct req){.content_length = -1};
        const char *end = h + len, *eol = memmem(h, len, "\r\n", 2);
        if (!eol)
                return -EINVAL;
        const char *sp1 = memchr(h, ' ', (size_t)(eol - h));
        if (!sp1 || sp1 == h || (size_t)(sp1 - h) >= sizeof q->method)
                return -EINVAL;
        memcpy(q->method, h, (size_t)(sp1 - h));
        const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
        if (!sp2 || sp2 == sp1 + 1 || sp1[1] != '/')
                return -EINVAL;
        if ((size_t)(eol - sp2 - 1) != 8 || (memcmp(sp2 + 1, "HTTP/1.1", 8) && memcmp(sp2 + 1, "HTTP/1.0", 8)))
                return -EINVAL;
        q->target = (struct http_span){sp1 + 1, (size_t)(sp2 - sp1 - 1)};
        for (size_t i = 0; i < q->target.len; i++)
                if ((unsigned char)q->target.p[i] <= 32 || (unsigned char)q->target.p[i] >= 127)
                        return -EINVAL;
        const char *p = eol + 2;
        while (p < end) {
                const char *le = memmem(p, (size_t)(end - p), "\r\n", 2);
                if (!le)
                        return -EINVAL;
                if (le == p)
                        break; /* the blank line */
                const char *colon = memchr(p, ':', (size_t)(le - p));
                if (!colon || colon == p || q->n_headers >= HTTP_MAX_HEADERS)
                        return -EINVAL;
                for (const char *t = p; t < colon; t++)
                        if (!tchar((unsigned char)*t))
                                return -EINVAL;
                const char *v = colon + 1, *ve = le;
                for (const char *t = v; t < ve; t++)
                        if (((unsigned char)*t < 32 && *t != '\t') || *t == 127)
                                return -EINVAL;
                while (v < ve && (*v == ' ' || *v == '\t'))
                        v++;
                while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                        ve--;
                struct http_header *hd = &q->headers[q->n_headers++];
                *hd = (struct http_header){{p, (size_t)(colon - p)}, {v, (size_t)(ve - v)}};
                if (http_span_equal(hd->name, "content-length")) {
                        if (!hd->value.len || hd->value.len > 15)
                                return -EINVAL;
                        int64_t n = 0;
                        for (size_t i = 0; i < hd->value.len; i++) {
                                if (hd->value.p[i] < '0' || hd->value.p[i] > '9')
                                        return -EINVAL;
                                n = n * 10 + (hd->value.p[i] - '0');
                        }
                        if (q->content_length >= 0 && q->content_length != n)
                                return -EINVAL;
                        q->content_length = n;
                } else if (http_span_equal(hd->name, "transfer-encoding"))
                        q->chunked = true;
                p = le + 2;
        }
        return 0;
}

/* Headers of the agent's request that never go upstream: framing and
 * hop-by-hop ones (we write our own), every credential the agent holds (its
 * dummy key: the real one is set by us), and Accept-Encoding (the answer must
 * stay readable for its usage). */
static bool header_dropped(const struct http_header *h) {
        static const char *const names[] = {"x-api-key", "authorization", "proxy-authorization", "cookie",
                                            "content-length", "transfer-encoding", "accept-encoding",
                                            "expect", NULL};
        if (http_header_is_hop_by_hop(h))
                return true;
        for (size_t i = 0; names[i]; i++)
                if (http_span_equal(h->name, names[i]))
                        return true;
        return false;
}

/* ---- the upstream ---- */

static int upstream_connect(struct call *k, const struct route *rt, int timeout_ms, struct addr_floor *floor) {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_NUMERICSERV | (rt->literal ? AI_NUMERICHOST : 0)};
        struct addrinfo *ai = NULL;
        int r = getaddrinfo(rt->host, rt->port, &hints, &ai);
        if (r != 0) {
                call_error(k, 502, "upstream %s unreachable: cannot resolve it: %s", rt->host, gai_strerror(r));
                return -EHOSTUNREACH;
        }
        int err = ECONNREFUSED;
        char floor_why[128] = "";
        for (struct addrinfo *a = ai; a; a = a->ai_next) {
                /* an approved upstream name may still resolve into the floor
                 * (a changed DNS record): never connect there */
                struct sockaddr_storage ss = {0};
                memcpy(&ss, a->ai_addr, a->ai_addrlen < sizeof ss ? a->ai_addrlen : sizeof ss);
                if (floor && addr_floor_contains(floor, &ss, floor_why, sizeof floor_why)) {
                        err = EACCES;
                        continue;
                }
                int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (fd < 0) {
                        err = errno;
                        continue;
                }
                if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS) {
                        err = errno;
                        close(fd);
                        continue;
                }
                int w = wait_fd(fd, POLLOUT, timeout_ms);
                int soerr = 0;
                socklen_t sl = sizeof soerr;
                if (w < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
                        err = w < 0 ? -w : soerr ? soerr : errno;
                        close(fd);
                        continue;
                }
                int one = 1;
                (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                freeaddrinfo(ai);
                return fd;
        }
        freeaddrinfo(ai);
        if (err == EACCES && floor_why[0])
                call_error(k, 502, "upstream %s:%s refused: it resolves into the platform egress floor (%s)", rt->host,
                           rt->port, floor_why);
        else
                call_error(k, 502, "upstream %s:%s unreachable: %s", rt->host, rt->port, strerror(err));
        return -err;
}

/* The route for provider and model: the first whose models list it (or lists
 * none); NULL with *provider_known telling whether the provider has a route. */
static const struct route *route_find(struct gateway_run *gr, enum gateway_provider p, const char *model,
                                      bool *provider_known) {
        *provider_known = false;
        for (size_t i = 0; i < gr->n_routes; i++) {
                const struct gateway_route *r = gr->routes[i].r;
                if (r->provider != p)
                        continue;
                *provider_known = true;
                if (!r->n_models)
                        return &gr->routes[i];
                for (size_t m = 0; m < r->n_models; m++)
                        if (!strcmp(r->models[m], model))
                                return &gr->routes[i];
        }
        return NULL;
}

/* Reads the agent's request body (Content-Length) after the head bytes
 * already read; *ret is malloc'd. */
static int read_body(struct call *k, const char *have, size_t n_have, size_t len, char **ret, int timeout_ms) {
        _cleanup_free_ char *b = malloc(len + 1);
        if (!b)
                return -ENOMEM;
        size_t got = n_have < len ? n_have : len;
        memcpy(b, have, got);
        while (got < len) {
                ssize_t n = recv(k->c->fd, b + got, len - got, 0);
                if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                        int r = wait_fd(k->c->fd, POLLIN, timeout_ms);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (n <= 0)
                        return n < 0 ? -errno : -ECONNRESET;
                got += (size_t)n;
        }
        b[len] = 0;
        *ret = TAKE_PTR(b);
        return 0;
}

/* Chunked decoding of the upstream's answer (RFC 9112 §7.1), lenient on
 * chunk extensions and trailers (the upstream is the configured provider,
 * not the agent), bounded by the line length. */
enum { CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_TRAILER, CH_TRAILER_LF, CH_DONE, CH_BAD };

struct dechunk {
        int state;
        uint64_t left;
        int digits;
        size_t trailer_line;
};

/* Decodes in[0..n); each data run is handed to out(k, p, len). Returns 0, or
 * -EPROTO on a malformed encoding. */
static int dechunk_feed(struct dechunk *d, const char *in, size_t n, struct call *k,
                        int (*out)(struct call *, const char *, size_t)) {
        size_t i = 0;
        while (i < n && d->state != CH_DONE) {
                char ch = in[i];
                switch (d->state) {
                case CH_SIZE: {
                        int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                              : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
                        if (v >= 0 && d->digits < 15) {
                                d->left = d->left * 16 + (uint64_t)v;
                                d->digits++;
                        } else if (d->digits && (ch == ';' || ch == ' ' || ch == '\t'))
                                d->state = CH_EXT;
                        else if (d->digits && ch == '\r')
                                d->state = CH_SIZE_LF;
                        else
                                return -EPROTO;
                        i++;
                        break;
                }
                case CH_EXT:
                        if (ch == '\r')
                                d->state = CH_SIZE_LF;
                        i++;
                        break;
                case CH_SIZE_LF:
                        if (ch != '\n')
                                return -EPROTO;
                        d->state = d->left ? CH_DATA : CH_TRAILER;
                        d->trailer_line = 0;
                        i++;
                        break;
                case CH_DATA: {
                        size_t take = n - i < d->left ? n - i : (size_t)d->left;
                        int r = out(k, in + i, take);
                        if (r < 0)
                                return r;
                        d->left -= take;
                        i += take;
                        if (!d->left)
                                d->state = CH_DATA_CR;
                        break;
                }
                case CH_DATA_CR:
                        if (ch != '\r')
                                return -EPROTO;
                        d->state = CH_DATA_LF;
                        i++;
                        break;
                case CH_DATA_LF:
                        if (ch != '\n')
                                return -EPROTO;
                        d->state = CH_SIZE;
                        d->digits = 0;
                        d->left = 0;
                        i++;
                        break;
                case CH_TRAILER:
                        if (ch == '\r')
                                d->state = CH_TRAILER_LF;
                        else if (++d->trailer_line > 8192)
                                return -EPROTO;
                        i++;
                        break;
                case CH_TRAILER_LF:
                        if (ch != '\n')
                                return -EPROTO;
                        d->state = d->trailer_line ? CH_TRAILER : CH_DONE;
                        d->trailer_line = 0;
                        i++;
                        break;
                }
        }
        return 0;
}

/* One piece of the answer's body: parsed for usage and sent to the agent at
 * once (as a chunk when we frame it so). */
static int relay_piece(struct call *k, const char *p, size_t n) {
        struct relay_ctx *rc = k->rc;
        if (!n)
                return 0;
        if (!k->t_first)
                k->t_first = time_mono_us();
        n = usage_feed(k, p, n);
        if (rc->client_gone || !n)
                goto cut;
        int r = 0;
        if (rc->chunked_out) {
                /* size line, data and CRLF in one sendmsg (bench/gateway_bench.c: a
                 * syscall per piece, not three) */
                char hx[24];
                int hl = snprintf(hx, sizeof hx, "%zx\r\n", n);
                struct iovec iov[3] = {{hx, (size_t)hl}, {(void *)p, n}, {(void *)"\r\n", 2}};
                r = sendv_all(k->c->fd, iov, 3, rc->timeout_ms);
        } else
                r = send_all(k->c->fd, p, n, rc->timeout_ms);
        if (r < 0)
                rc->client_gone = true; /* keep reading: the usage still counts */
cut:
        if (!k->crossed)
                return 0;
        limit_cut(k);
        return -ECANCELED; /* read no further: the upstream connection is closed */
}

/* Parses the upstream's status line and headers; writes the agent's head
 * (framing our own: Content-Length kept, else chunked; Connection: close). */
static int answer_head(struct call *k, const char *h, size_t len, int64_t *content_length, bool *chunked,
                       struct relay_ctx *rc) {
        if (len < 12 || memcmp(h, "HTTP/1.", 7) || h[8] != ' ')
                return -EPROTO;
        int status = 0;
        for (int i = 9; i < 12; i++) {
                if (h[i] < '0' || h[i] > '9')
                        return -EPROTO;
                status = status * 10 + (h[i] - '0');
        }
        k->status = status;
        *content_length = -1;
        *chunked = false;
        const char *eol = memmem(h, len, "\r\n", 2);
        if (!eol)
                return -EPROTO;
        size_t cap = len + 256;
        _cleanup_free_ char *out = malloc(cap);
        if (!out)
                return -ENOMEM;
        size_t o = (size_t)snprintf(out, cap, "HTTP/1.1 %.*s\r\n", (int)(eol - h - 9), h + 9);
        const char *p = eol + 2, *end = h + len;
        while (p < end) {
                const char *le = memmem(p, (size_t)(end - p), "\r\n", 2);
                if (!le || le == p)
                        break;
                const char *colon = memchr(p, ':', (size_t)(le - p));
                if (!colon)
                        return -EPROTO;
                struct http_header hd = {{p, (size_t)(colon - p)}, {colon + 1, (size_t)(le - colon - 1)}};
                while (hd.value.len && (*hd.value.p == ' ' || *hd.value.p == '\t'))
                        hd.value.p++, hd.value.len--;
                if (http_span_equal(hd.name, "content-length")) {
                        char num[24];
                        snprintf(num, sizeof num, "%.*s", (int)(hd.value.len < 20 ? hd.value.len : 20), hd.value.p);
                        char *e;
                        long long v = strtoll(num, &e, 10);
                        if (*e || v < 0)
                                return -EPROTO;
                        *content_length = v;
                } else if (http_span_equal(hd.name, "transfer-encoding")) {
                        *chunked = hd.value.len >= 7 && !strncasecmp(hd.value.p + hd.value.len - 7, "chunked", 7);
                } else if (http_span_equal(hd.name, "content-type")) {
                        k->sse = hd.value.len >= 17 && !strncasecmp(hd.value.p, "text/event-stream", 17);
                }
                if (!http_header_is_hop_by_hop(&hd) && !http_span_equal(hd.name, "content-length") &&
                    !http_span_equal(hd.name, "transfer-encoding")) {
                        memcpy(out + o, p, (size_t)(le - p) + 2);
                        o += (size_t)(le - p) + 2;
                }
                p = le + 2;
        }
        if (*chunked)
                *content_length = -1;
        rc->chunked_out = *content_length < 0;
        o += (size_t)(rc->chunked_out ? snprintf(out + o, cap - o, "Transfer-Encoding: chunked\r\n")
                                      : snprintf(out + o, cap - o, "Content-Length: %lld\r\n",
                                                 (long long)*content_length));
        o += (size_t)snprintf(out + o, cap - o, "Connection: close\r\n\r\n");
        if (send_all(k->c->fd, out, o, rc->timeout_ms) < 0)
                rc->client_gone = true;
        return 0;
}

/* Sends the request upstream and relays the answer as it arrives. */
static void call_forward(struct call *k, const struct req *q, const char *body, size_t body_len,
                         const struct gateway_settings *cfg) {
        const struct route *rt = k->rt;
        int ufd = upstream_connect(k, rt, cfg->connect_timeout_ms, cfg->floor);
        if (ufd < 0) {
                answer_error(k, 502, k->error);
                return;
        }
        pthread_mutex_lock(&k->c->gr->lock);
        k->c->ufd = ufd;
        pthread_mutex_unlock(&k->c->gr->lock);
        char detail[200];
        SSL *ssl = NULL;
        int r = tls_client_connect(tls_ctx(), ufd, rt->host, rt->literal,
                                   time_mono_us() + (int64_t)cfg->connect_timeout_ms * 1000, &ssl, detail,
                                   sizeof detail);
        if (r < 0) {
                /* fail closed: nothing (and no key) was sent on this connection */
                if (r == -EPERM)
                        call_error(k, 502, "TLS to upstream %s:%s refused: certificate verification failed: %s",
                                   rt->host, rt->port, detail);
                else if (r == -ETIMEDOUT)
                        call_error(k, 504, "TLS handshake with upstream %s:%s timed out", rt->host, rt->port);
                else
                        call_error(k, 502, "TLS handshake with upstream %s:%s failed: %s", rt->host, rt->port,
                                   detail[0] ? detail : strerror(-r));
                answer_error(k, k->status, k->error);
                return;
        }
        /* request head: the agent's path under the route's prefix, its
         * headers minus credentials and framing, the real key */
        size_t cap = GATEWAY_HEAD_MAX + 1024 + rt->r->key_len;
        char *head = malloc(cap);
        if (!head) {
                SSL_free(ssl);
                call_error(k, 502, "out of memory");
                answer_error(k, 502, k->error);
                return;
        }
        size_t o = (size_t)snprintf(head, cap, "POST %s%.*s HTTP/1.1\r\nHost: %s%s%s%s%s\r\n", rt->prefix,
                                    (int)q->target.len, q->target.p, rt->bracketed ? "[" : "", rt->host,
                                    rt->bracketed ? "]" : "", strcmp(rt->port, "443") ? ":" : "",
                                    strcmp(rt->port, "443") ? rt->port : "");
        for (size_t i = 0; i < q->n_headers && o < cap - 512 - rt->r->key_len; i++) {
                const struct http_header *h = &q->headers[i];
                if (header_dropped(h))
                        continue;
                o += (size_t)snprintf(head + o, cap - o, "%.*s: %.*s\r\n", (int)h->name.len, h->name.p,
                                      (int)h->value.len, h->value.p);
        }
        o += (size_t)snprintf(head + o, cap - o, "%s", k->provider == GATEWAY_ANTHROPIC ? "x-api-key: "
                                                                                          : "Authorization: Bearer ");
        memcpy(head + o, rt->r->key, rt->r->key_len);
        o += rt->r->key_len;
        o += (size_t)snprintf(head + o, cap - o,
                              "\r\nAccept-Encoding: identity\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                              body_len);
        r = ssl_write_all(ssl, ufd, head, o, cfg->idle_timeout_ms);
        OPENSSL_cleanse(head, o); /* it held the key */
        free(head);
        if (!r)
                r = ssl_write_all(ssl, ufd, body, body_len, cfg->idle_timeout_ms);
        if (r < 0) {
                SSL_free(ssl);
                call_error(k, 502, "could not send the request to upstream %s:%s: %s", rt->host, rt->port,
                           strerror(-r));
                answer_error(k, 502, k->error);
                return;
        }

        /* the answer: head, then the body relayed piece by piece */
        struct relay_ctx rc = {.timeout_ms = cfg->idle_timeout_ms};
        k->rc = &rc;
        _cleanup_free_ char *buf = malloc(IO_BUF > GATEWAY_HEAD_MAX ? IO_BUF : GATEWAY_HEAD_MAX);
        size_t have = 0;
        ssize_t hl = 0;
        while (buf) {
                ssize_t n = ssl_read_some(ssl, ufd, buf + have, GATEWAY_HEAD_MAX - have, cfg->idle_timeout_ms);
                if (n <= 0)
                        break;
                have += (size_t)n;
                hl = http_head_length(buf, have, GATEWAY_HEAD_MAX);
                if (hl != 0)
                        break;
        }
        int64_t clen = -1;
        bool chunked = false;
        if (!buf || hl <= 0 || answer_head(k, buf, (size_t)hl, &clen, &chunked, &rc) < 0) {
                SSL_free(ssl);
                call_error(k, 502, "upstream %s:%s sent no valid answer", rt->host, rt->port);
                answer_error(k, 502, k->error);
                return;
        }
        struct dechunk dc = {0};
        bool complete = clen == 0, broken = false;
        uint64_t left = clen > 0 ? (uint64_t)clen : 0;
        size_t n = have - (size_t)hl;
        memmove(buf, buf + hl, n);
        for (;;) {
                if (n) {
                        if (chunked) {
                                if (dechunk_feed(&dc, buf, n, k, relay_piece) < 0) {
                                        broken = !k->cut;
                                        break;
                                }
                                complete = dc.state == CH_DONE;
                        } else if (clen >= 0) {
                                size_t take = n < left ? n : (size_t)left;
                                relay_piece(k, buf, take);
                                left -= take;
                                complete = left == 0;
                        } else
                                relay_piece(k, buf, n);
                }
                if (complete || k->cut)
                        break;
                ssize_t m = ssl_read_some(ssl, ufd, buf, IO_BUF, cfg->idle_timeout_ms);
                if (m < 0) {
                        broken = true;
                        break;
                }
                if (m == 0) {
                        complete = !chunked && clen < 0; /* close-delimited */
                        broken = !complete;
                        break;
                }
                n = (size_t)m;
        }
        SSL_free(ssl);
        if (k->cut) {
                /* the rest of the answer is not read: the upstream stops with the connection */
                shutdown(ufd, SHUT_RDWR);
                return;
        }
        usage_finish(k);
        if (complete && rc.chunked_out && !rc.client_gone)
                (void)send_all(k->c->fd, "0\r\n\r\n", 5, rc.timeout_ms);
        /* a broken answer is left unterminated: the agent sees it fail */
        if (broken)
                call_error(k, 502, "upstream %s:%s ended the answer before its end (status %d)", rt->host, rt->port,
                           k->status);
        else if (k->sse && k->status < 400 && !k->u.terminal)
                call_error(k, 502, "upstream %s:%s ended the stream without its final event", rt->host, rt->port);
        else if (rc.client_gone && !k->error[0])
                snprintf(k->error, sizeof k->error, "the agent closed the connection before the end of the answer");
}

static void conn_serve(struct conn *c) {
        struct gateway_settings cfg;
        pthread_mutex_lock(&g.lock);
        cfg = g.cfg;
        pthread_mutex_unlock(&g.lock);
        struct gateway_run *gr = c->gr;
        _cleanup_free_ char *buf = malloc(GATEWAY_HEAD_MAX);
        if (!buf)
                return;
        size_t have = 0;
        int hl = 0;
        while (hl == 0) {
                if (wait_fd(c->fd, POLLIN, cfg.idle_timeout_ms) < 0)
                        return;
                ssize_t n = recv(c->fd, buf + have, GATEWAY_HEAD_MAX - have, 0);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        continue;
                if (n <= 0)
                        return;
                have += (size_t)n;
                hl = http_head_length(buf, have, GATEWAY_HEAD_MAX);
        }
        struct req q;
        struct call k = {.c = c, .t0 = time_mono_us(), .u = {.input = -1, .output = -1, .cache_read = -1,
                                                              .cache_write = -1}};
        bool bad = hl < 0 || parse_head(buf, (size_t)hl, &q) < 0;
        struct http_span path = bad ? (struct http_span){0} : q.target;
        const char *qm = path.p ? memchr(path.p, '?', path.len) : NULL;
        if (qm)
                path.len = (size_t)(qm - path.p);
        k.provider = path.p && http_span_equal(path, "/v1/responses") ? GATEWAY_OPENAI : GATEWAY_ANTHROPIC;
        if (bad) {
                answer_error(&k, hl < 0 ? 431 : 400, "malformed request");
                return;
        }
        /* Claude Code's warm-up (AGENT-CLIS.md): HEAD / or GET /, no event */
        if ((!strcmp(q.method, "HEAD") || !strcmp(q.method, "GET")) && http_span_equal(path, "/")) {
                static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                (void)send_all(c->fd, ok, sizeof ok - 1, 5000);
                return;
        }
        if (!http_span_equal(path, "/v1/messages") && !http_span_equal(path, "/v1/responses")) {
                answer_error(&k, 404, "the model gateway serves POST /v1/messages and POST /v1/responses only");
                return;
        }
        if (strcmp(q.method, "POST")) {
                answer_error(&k, 405, "method not allowed");
                return;
        }
        if (q.chunked || q.content_length < 0) {
                answer_error(&k, 411, "a request body with Content-Length is required");
                return;
        }
        if ((uint64_t)q.content_length > cfg.max_body_bytes) {
                answer_error(&k, 413, "request body too large");
                return;
        }
        _cleanup_free_ char *body = NULL;
        if (read_body(&k, buf + hl, have - (size_t)hl, (size_t)q.content_length, &body, cfg.idle_timeout_ms) < 0)
                return;
        json_t *j = json_loadb(body, (size_t)q.content_length, 0, NULL);
        const char *model = json_string_value(json_object_get(j, "model"));
        snprintf(k.model, sizeof k.model, "%s", model ? model : "");
        json_decref(j);
        if (!k.model[0]) {
                answer_error(&k, 400, "model: a string is required");
                return;
        }
        bool known = false;
        k.rt = route_find(gr, k.provider, k.model, &known);
        if (!k.rt) {
                /* the call is recorded: the agent asked for what it may not use */
                if (known)
                        call_error(&k, 403, "model \"%s\" is not allowed for this run", k.model);
                else
                        call_error(&k, 404, "no %s route is configured for this run", provider_name(k.provider));
                answer_error(&k, k.status, k.error);
                call_emit(&k);
                return;
        }
        if (limit_refuse(&k)) {
                call_emit(&k);
                return;
        }
        call_forward(&k, &q, body, (size_t)q.content_length, &cfg);
        call_emit(&k);
        free(k.line);
}

static void conn_remove(struct conn *c) {
        struct gateway_run *gr = c->gr;
        pthread_mutex_lock(&gr->lock);
        for (struct conn **pp = &gr->conns; *pp; pp = &(*pp)->next)
                if (*pp == c) {
                        *pp = c->next;
                        break;
                }
        if (c->ufd >= 0)
                close(c->ufd);
        close(c->fd);
        if (--gr->n_conns == 0)
                pthread_cond_broadcast(&gr->idle);
        pthread_mutex_unlock(&gr->lock);
        free(c);
}

static void *conn_thread(void *userdata) {
        struct conn *c = userdata;
        conn_serve(c);
        conn_remove(c);
        return NULL;
}

static void *accept_thread(void *userdata) {
        struct gateway_run *gr = userdata;
        for (;;) {
                struct pollfd p[2] = {{.fd = gr->listen_fd, .events = POLLIN}, {.fd = gr->stop_fd, .events = POLLIN}};
                if (poll(p, 2, -1) < 0 && errno != EINTR)
                        return NULL;
                if (p[1].revents)
                        return NULL;
                if (!(p[0].revents & POLLIN))
                        continue;
                int fd = accept4(gr->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                        continue;
                /* the answer goes out piece by piece (SSE): no Nagle wait on the small ones */
                int one = 1;
                (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                unsigned max;
                pthread_mutex_lock(&g.lock);
                max = g.cfg.run_max_conns;
                pthread_mutex_unlock(&g.lock);
                struct conn *c = calloc(1, sizeof *c);
                pthread_mutex_lock(&gr->lock);
                bool take = c && !gr->stopping && gr->n_conns < max;
                if (take) {
                        *c = (struct conn){.gr = gr, .fd = fd, .ufd = -1, .next = gr->conns};
                        gr->conns = c;
                        gr->n_conns++;
                }
                pthread_mutex_unlock(&gr->lock);
                pthread_t t;
                pthread_attr_t at;
                pthread_attr_init(&at);
                pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
                if (take && pthread_create(&t, &at, conn_thread, c) == 0) {
                        pthread_attr_destroy(&at);
                        continue;
                }
                pthread_attr_destroy(&at);
                if (take) {
                        conn_remove(c);
                        continue;
                }
                free(c);
                /* over the run's bound: the provider's overload answer */
                static const char busy[] = "HTTP/1.1 529 Overloaded\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                (void)!send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
                close(fd);
        }
}

/* Splits "https://host[:port][/prefix]". */
static int route_parse(const struct gateway_route *r, struct route *rt) {
        *rt = (struct route){.r = r};
        const char *u = r->upstream;
        if (!u || strncmp(u, "https://", 8))
                return -EINVAL;
        u += 8;
        const char *hs = u, *he;
        if (*u == '[') {
                he = strchr(u, ']');
                if (!he)
                        return -EINVAL;
                hs = u + 1;
                u = he + 1;
                rt->bracketed = true;
        } else {
                he = u + strcspn(u, ":/?#");
                u = he;
        }
        if (he == hs || (size_t)(he - hs) > HTTP_HOST_MAX)
                return -EINVAL;
        memcpy(rt->host, hs, (size_t)(he - hs));
        for (char *p = rt->host; *p; p++) {
                if ((unsigned char)*p <= 32 || *p == '@' || *p == '\\')
                        return -EINVAL;
                *p = (char)tolower((unsigned char)*p);
        }
        snprintf(rt->port, sizeof rt->port, "443");
        if (*u == ':') {
                u++;
                size_t pl = strspn(u, "0123456789");
                if (!pl || pl > 5 || atoi(u) < 1 || atoi(u) > 65535)
                        return -EINVAL;
                snprintf(rt->port, sizeof rt->port, "%d", atoi(u));
                u += pl;
        }
        if (*u && *u != '/')
                return -EINVAL;
        size_t pl = strlen(u);
        while (pl && u[pl - 1] == '/')
                pl--;
        if (pl >= sizeof rt->prefix || strpbrk(u, "?# \t\r\n"))
                return -EINVAL;
        memcpy(rt->prefix, u, pl);
        struct in6_addr a6;
        struct in_addr a4;
        rt->literal = inet_pton(AF_INET, rt->host, &a4) == 1 || inet_pton(AF_INET6, rt->host, &a6) == 1;
        if (rt->bracketed && !inet_pton(AF_INET6, rt->host, &a6))
                return -EINVAL;
        if (!r->key || !r->key_len || memchr(r->key, '\r', r->key_len) || memchr(r->key, '\n', r->key_len))
                return -EINVAL;
        return 0;
}

int gateway_run_start(const char *run_id, const char *netns_path, const struct gateway_route *routes, size_t n_routes,
                      const struct gateway_limits *limits, gateway_event_fn on_event, void *userdata,
                      struct gateway_run **ret, struct err_detail *reterr) {
        struct gateway_run *gr = calloc(1, sizeof *gr);
        if (!gr)
                return -ENOMEM;
        snprintf(gr->run_id, sizeof gr->run_id, "%s", run_id);
        if (limits)
                gr->limits = *limits;
        gr->on_event = on_event;
        gr->userdata = userdata;
        gr->listen_fd = gr->stop_fd = -1;
        pthread_mutex_init(&gr->lock, NULL);
        pthread_cond_init(&gr->idle, NULL);
        gr->routes = calloc(n_routes ? n_routes : 1, sizeof *gr->routes);
        if (!gr->routes) {
                gateway_run_stop(gr);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_routes; i++)
                if (route_parse(&routes[i], &gr->routes[i]) < 0) {
                        gateway_run_stop(gr);
                        return err_set(reterr, -EINVAL, "gateway",
                                       "model route %zu: upstream must be https://host[:port][/prefix] and the key "
                                       "non-empty without line breaks",
                                       i);
                }
        gr->n_routes = n_routes;
        char what[64];
        uint16_t port = 0;
        int fd = netns_listen_loopback(netns_path, netns_path ? GATEWAY_PORT : 0, 128, &port, what, sizeof what);
        if (fd < 0) {
                gateway_run_stop(gr);
                return err_set(reterr, fd, "gateway", "could not listen for the model gateway: %s: %s", what,
                               strerror(-fd));
        }
        gr->listen_fd = fd;
        gr->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        int r = gr->stop_fd < 0 ? errno : pthread_create(&gr->acceptor, NULL, accept_thread, gr);
        if (r != 0) {
                gateway_run_stop(gr);
                return err_set(reterr, -r, "gateway", "could not start the model gateway: %s", strerror(r));
        }
        gr->acceptor_started = true;
        *ret = gr;
        return 0;
}

int gateway_run_port(const struct gateway_run *gr) {
        struct sockaddr_in sa;
        socklen_t sl = sizeof sa;
        if (getsockname(gr->listen_fd, (struct sockaddr *)&sa, &sl) < 0)
                return -errno;
        return ntohs(sa.sin_port);
}

void gateway_run_totals(struct gateway_run *gr, struct gateway_totals *ret) {
        pthread_mutex_lock(&gr->lock);
        *ret = gr->totals;
        pthread_mutex_unlock(&gr->lock);
}

int gateway_run_model_totals(struct gateway_run *gr, struct gateway_model_totals **ret) {
        *ret = NULL;
        pthread_mutex_lock(&gr->lock);
        size_t n = gr->n_models;
        struct gateway_model_totals *m = n ? malloc(n * sizeof *m) : NULL;
        if (m)
                memcpy(m, gr->models, n * sizeof *m);
        pthread_mutex_unlock(&gr->lock);
        if (n && !m)
                return -ENOMEM;
        *ret = m;
        return (int)n;
}

void gateway_run_drain(struct gateway_run *gr) {
        if (gr->acceptor_started) {
                (void)!eventfd_write(gr->stop_fd, 1);
                pthread_join(gr->acceptor, NULL);
                gr->acceptor_started = false;
        }
        if (gr->listen_fd >= 0) {
                close(gr->listen_fd);
                gr->listen_fd = -1;
        }
        pthread_mutex_lock(&gr->lock);
        gr->stopping = true;
        /* every open call ends now: its blocking I/O fails, its event goes out */
        for (struct conn *c = gr->conns; c; c = c->next) {
                shutdown(c->fd, SHUT_RDWR);
                if (c->ufd >= 0)
                        shutdown(c->ufd, SHUT_RDWR);
        }
        while (gr->n_conns)
                pthread_cond_wait(&gr->idle, &gr->lock);
        pthread_mutex_unlock(&gr->lock);
}

struct gateway_run *gateway_run_stop(struct gateway_run *gr) {
        if (!gr)
                return NULL;
        gateway_run_drain(gr);
        if (gr->listen_fd >= 0)
                close(gr->listen_fd);
        if (gr->stop_fd >= 0)
                close(gr->stop_fd);
        pthread_mutex_destroy(&gr->lock);
        pthread_cond_destroy(&gr->idle);
        free(gr->routes);
        free(gr->models);
        free(gr);
        return NULL;
}

/* The HTTP layer: request transactions on the lws service thread (route
 * lookup in routes.c, body collection with a size limit, authentication,
 * dispatch) and the only place error bodies are written. Every request,
 * websocket upgrades included, gets a request id (the client's
 * X-Request-Id when it is a sane one, else a new one), returned in
 * X-Request-Id, and one access line in the log. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "core/json_dump.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/timeutil.h"
#include "http/problem.h"

void api_problem_map(int err, const char *code, int *ret_status, const char **ret_code,
                     const char **ret_title) {
        struct http_problem p = http_problem_of(err, code);
        *ret_status = p.status;
        *ret_code = p.code;
        *ret_title = p.title;
}

int api_fail(struct api_req *r, int err, const char *code, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->pdetail, sizeof r->pdetail, fmt, ap);
        va_end(ap);
        r->pcode = code;
        return err < 0 ? err : -EIO;
}

int api_errno(struct api_req *r, int err, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->pdetail, sizeof r->pdetail, fmt, ap);
        va_end(ap);
        /* the code of err (lib/http/problem.c): never NULL, the HTTP layer
         * takes a handler's failure without one as unexplained */
        r->pcode = http_problem_from_errno(err).code;
        return err < 0 ? err : -EIO;
}

void api_client_ip(struct lws *wsi, const struct api *a, char out[HTTP_CLIENT_ADDR_MAX]) {
        char peer[HTTP_CLIENT_ADDR_MAX] = "";
        out[0] = '\0';
        if (!wsi)
                return;
        lws_get_peer_simple(wsi, peer, sizeof peer);
        /* the header only matters behind a trusted proxy: no copy otherwise;
         * all of it (bounded by lws's header space), since its right end is
         * the part our proxies wrote */
        _cleanup_free_ char *xff = NULL;
        int len = 0;
        if (a->n_trusted_proxies && http_addr_trusted(peer, a->trusted_proxies, a->n_trusted_proxies) &&
            (len = lws_hdr_total_length(wsi, WSI_TOKEN_X_FORWARDED_FOR)) > 0 && (xff = malloc((size_t)len + 1)) &&
            lws_hdr_copy(wsi, xff, len + 1, WSI_TOKEN_X_FORWARDED_FOR) < 0)
                xff[0] = '\0';
        http_client_addr(peer, xff, a->trusted_proxies, a->n_trusted_proxies, out, HTTP_CLIENT_ADDR_MAX);
}

const char *api_query(struct api_req *r, const char *name, char *buf, int len) {
        char key[64];
        snprintf(key, sizeof key, "%s=", name);
        return lws_get_urlarg_by_name(r->wsi, key, buf, len);
}

/* ---- request ids and the access log */

#define REQUEST_ID_MAX 64
#define REQUEST_ID_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"

/* The client's X-Request-Id if it is 1-64 of [A-Za-z0-9._-] (anything else
 * could forge log lines or headers), else a new UUID. */
static void request_id_of(struct lws *wsi, char out[REQUEST_ID_MAX + 8]) {
        char h[REQUEST_ID_MAX + 8];
        int n = lws_hdr_custom_length(wsi, "x-request-id:", 13);
        if (n > 0 && n <= REQUEST_ID_MAX && lws_hdr_custom_copy(wsi, h, sizeof h, "x-request-id:", 13) == n &&
            strspn(h, REQUEST_ID_CHARS) == (size_t)n) {
                memcpy(out, h, (size_t)n + 1);
                return;
        }
        if (id_new_uuid(out) < 0)
                snprintf(out, REQUEST_ID_MAX + 8, "%016llx", (unsigned long long)time_now_us());
}

/* One access line: method, the route's pattern (never the query string,
 * which may carry an access_token; the raw path only when no route matched),
 * status, duration, the caller (null until authenticated; a login names
 * the user it logged in) and the request id. */
static void access_log(const char *method, const char *route, const char *path, int status, int64_t start_us,
                       const struct api_caller *c, const char *request_id) {
        double ms = (double)(time_mono_us() - start_us) / 1000.0;
        bool known = c && c->user_id[0];
        /* the line's members written as they are built (json_dump.h, log.h
         * log_emit_members), no object to build, dump and free (issue 10
         * §4); every string but the path is ours and ASCII: the method and
         * route from our tables, ids from PostgreSQL's uuid text, the
         * request id checked by request_id_of */
        struct json_writer wr = {0}, *w = &wr;
        json_writer_lit(w, "\"method\":");
        json_writer_string(w, method[0] ? method : "?");
        json_writer_lit(w, ",\"route\":");
        if (route)
                json_writer_string(w, route);
        else
                json_writer_lit(w, "null");
        /* null: no answer, the client went away first */
        json_writer_lit(w, ",\"status\":");
        if (status)
                json_writer_integer(w, status);
        else
                json_writer_lit(w, "null");
        json_writer_lit(w, ",\"duration_ms\":");
        json_writer_real(w, (double)(long long)(ms * 1000.0 + 0.5) / 1000.0, 10);
        json_writer_lit(w, ",\"caller_id\":");
        if (known)
                json_writer_string(w, c->user_id);
        else
                json_writer_lit(w, "null");
        json_writer_lit(w, ",\"tenant_id\":");
        if (known)
                json_writer_string(w, c->tenant_id);
        else
                json_writer_lit(w, "null");
        json_writer_lit(w, ",\"request_id\":");
        json_writer_string(w, request_id);
        if (!route && path) {
                char p[257];
                snprintf(p, sizeof p, "%s", path);
                /* a path that is not UTF-8 is left out */
                _cleanup_json_ json_t *pj = json_string(p);
                if (pj) {
                        json_writer_lit(w, ",\"path\":");
                        json_writer_value(w, pj);
                }
        }
        if (!w->failed)
                log_emit_members(LOG_INFO, w->buf, w->len, "request");
        json_writer_free(w);
}

/* ---- transactions */

#define PATH_MAX_LEN 2048
#define WRITE_CHUNK 16384
#define HEAD_MAX 4096 /* the headers of an answer */

struct http_txn {
        struct api_req req;
        const struct api_route *route;
        char *params[API_MAX_PARAMS];
        char method[8];
        char path[PATH_MAX_LEN];
        char request_id[REQUEST_ID_MAX + 8];
        int64_t start_us;   /* monotonic */
        bool logged;        /* the access line is written */
        char *body;
        size_t body_len, body_cap;
        bool too_large;
        bool responded;     /* response prepared (no more body processing) */
        bool close_after;
        bool head;          /* HEAD: the headers of the answer, no body */
        /* the response */
        int status;
        const char *ctype;
        char *resp;
        size_t resp_len, resp_off;
        bool headers_sent;
};

static void txn_free(struct http_txn *t) {
        if (!t)
                return;
        /* the client went away before an answer: still one line */
        if (!t->logged)
                access_log(t->method, t->route ? t->route->pattern : NULL, t->path, 0, t->start_us,
                           &t->req.caller, t->request_id);
        for (size_t i = 0; i < API_MAX_PARAMS; i++)
                free(t->params[i]);
        free(t->body);
        free(t->resp);
        json_decref(t->req.out);
        free(t->req.text);
        free(t->req.location);
        for (size_t i = 0; i < ELEMENTSOF(t->req.set_cookie); i++)
                free(t->req.set_cookie[i]);
        free(t);
}

static void txn_set_problem(struct http_txn *t, int err) {
        int status;
        const char *code, *title;
        api_problem_map(err, t->req.pcode, &status, &code, &title);
        struct http_problem p = {.status = status, .code = code, .title = title};
        const char *detail = t->req.pdetail[0] ? t->req.pdetail : title;
        free(t->resp);
        t->resp = http_problem_json(&p, detail);
        t->resp_len = t->resp ? strlen(t->resp) : 0;
        t->status = status;
        t->ctype = "application/problem+json";
}

/* The compact dump of a handler's answer (lib/core/json_dump.h) into a
 * buffer sized for the usual one (json_dumps grows its own from 16 bytes
 * and copies it once more, issue 10 §4); NUL-terminated. */
static char *json_body(const json_t *out, size_t *ret_len) {
        for (size_t cap = 4096;;) {
                char *b = malloc(cap);
                size_t n = b ? json_dump_fast(out, b, cap - 1, JSON_COMPACT) : 0;
                if (n > 0 && n < cap) {
                        b[n] = '\0';
                        *ret_len = n;
                        return b;
                }
                free(b);
                if (n == 0)
                        return NULL;
                cap = n + 1;
        }
}

static void txn_respond(struct lws *wsi, struct http_txn *t, int r) {
        if (r < 0)
                txn_set_problem(t, r);
        else if (t->req.text) {
                t->resp = TAKE_PTR(t->req.text);
                t->resp_len = t->req.text_len ? t->req.text_len : strlen(t->resp);
                t->status = t->req.status ? t->req.status : 200;
                t->ctype = t->req.content_type ? t->req.content_type : "text/plain";
        } else {
                t->status = t->req.status ? t->req.status : 200;
                t->ctype = "application/json";
                if (t->req.out && !(t->resp = json_body(t->req.out, &t->resp_len))) {
                        api_fail(&t->req, -ENOMEM, "internal", "out of memory");
                        txn_set_problem(t, -ENOMEM);
                }
        }
        t->responded = true;
        if (!t->logged) {
                t->logged = true;
                access_log(t->method, t->route ? t->route->pattern : NULL, t->path, t->status, t->start_us,
                           &t->req.caller, t->request_id);
        }
        lws_callback_on_writable(wsi);
}

static void txn_fail(struct lws *wsi, struct http_txn *t, int err, const char *code,
                     const char *detail) {
        api_fail(&t->req, err, code, "%s", detail);
        txn_respond(wsi, t, err);
}

/* The handlers whose one statement rides on the token lookup's round trip
 * (api_read_fn): the hot reads (issue 10 §4, bench/api_read). */
static const struct {
        api_handler_fn handler;
        api_read_fn read;
} handler_reads[] = {
        {runs_get, runs_get_read},
};

static api_read_fn read_of(api_handler_fn handler) {
        for (size_t i = 0; i < ELEMENTSOF(handler_reads); i++)
                if (handler_reads[i].handler == handler)
                        return handler_reads[i].read;
        return NULL;
}

static void txn_dispatch(struct api *a, struct lws *wsi, struct http_txn *t) {
        struct api_req *r = &t->req;
        _cleanup_db_ struct db auth_db = {0}; /* released here unless the handler took it */
        _cleanup_pgres_ PGresult *read = NULL; /* the handler's read, if it has one */
        r->body = t->body;
        r->body_len = t->body_len;
        if (r->perm != PERM_NONE) {
                char token[128];
                struct err_detail e = {0};
                struct pg_step step;
                const char *read_params[API_READ_PARAMS];
                /* the dashboard's session cookie stands in for a missing
                 * Authorization header (a bearer token always wins); a write
                 * it authenticates must prove it comes from our page:
                 * X-CSRF-Token (docs/CONTRACTS.md "Dashboard sessions") */
                if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION) <= 0 &&
                    auth_session_from_wsi(wsi, token, sizeof token) == 0) {
                        r->caller.via_cookie = true;
                        bool safe = !strcmp(t->method, "GET") || !strcmp(t->method, "OPTIONS");
                        if (!safe && !auth_csrf_ok(wsi, token)) {
                                explicit_bzero(token, sizeof token);
                                return txn_fail(wsi, t, -EPERM, "csrf_failed",
                                                "a write with the session cookie needs the X-CSRF-Token header "
                                                "of that session (the paddock_csrf cookie)");
                        }
                } else if (auth_token_from_wsi(wsi, token, sizeof token) < 0)
                        return txn_fail(wsi, t, -EACCES, "unauthorized", "a valid bearer token is required");
                api_read_fn read_fn = read_of(t->route->handler);
                int k = read_fn && read_fn(r, read_params, &step) >= 0
                                ? auth_lookup_token_read(a, token, &r->caller, &step, &read, &e)
                                : auth_lookup_token(a, token, &r->caller, &auth_db, &e);
                explicit_bzero(token, sizeof token);
                if (k == -EACCES)
                        return txn_fail(wsi, t, -EACCES, "unauthorized", "a valid bearer token is required");
                if (k == -EKEYEXPIRED)
                        return txn_fail(wsi, t, -EACCES, "token_expired", e.message);
                if (k < 0)
                        return txn_respond(wsi, t, db_fail(r, k, &e, "look up token"));
                /* a one-time password reaches only what it takes to change it */
                if (r->caller.password_change_required && r->perm != PERM_SELF)
                        return txn_fail(wsi, t, -EPERM, "password_change_required",
                                        "the password must be changed first: POST /v1/me/password "
                                        "(paddock passwd); until then only GET /v1/me and logout answer");
                r->caller.auditor_read = r->caller.auditor && api_auditor_route(r->method, t->route->pattern);
                if (r->perm == PERM_ADMIN && !r->caller.tenant_admin && !r->caller.auditor_read)
                        return txn_fail(wsi, t, -EPERM, "forbidden",
                                        api_auditor_route(r->method, t->route->pattern)
                                                ? "this endpoint needs the tenant_admin or auditor role"
                                                : "this endpoint needs the tenant_admin role");
        }
        r->auth_db = &auth_db;
        r->read = read;
        int k = t->route->handler(r);
        r->auth_db = NULL;
        r->read = NULL;
        if (k < 0 && !r->pcode)
                /* a handler that failed without saying why: never leak internals */
                api_fail(r, k, NULL, "%s", "");
        txn_respond(wsi, t, k);
}

static const struct {
        enum lws_token_indexes tok;
        const char *name;
} methods[] = {
        {WSI_TOKEN_GET_URI, "GET"},     {WSI_TOKEN_POST_URI, "POST"},
        {WSI_TOKEN_PUT_URI, "PUT"},     {WSI_TOKEN_PATCH_URI, "PATCH"},
        {WSI_TOKEN_DELETE_URI, "DELETE"}, {WSI_TOKEN_OPTIONS_URI, "OPTIONS"},
        {WSI_TOKEN_HEAD_URI, "HEAD"},
};

static int http_on_request(struct api *a, struct lws *wsi, struct api_pss *pss, const char *in,
                           size_t len) {
        txn_free(pss->txn);
        struct http_txn *t = pss->txn = calloc(1, sizeof *t);
        if (!t)
                return -1;
        metric_add(&api_metric_requests, 1);
        t->start_us = time_mono_us();
        request_id_of(wsi, t->request_id);
        t->req.request_id = t->request_id;
        t->req.api = a;
        t->req.wsi = wsi;
        for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                if (lws_hdr_total_length(wsi, methods[i].tok) > 0) {
                        snprintf(t->method, sizeof t->method, "%s", methods[i].name);
                        break;
                }
        t->req.method = t->method;
        /* whatever the answer to a HEAD, it carries no body (RFC 9110 9.3.2) */
        t->head = !strcmp(t->method, "HEAD");
        if (len >= sizeof t->path) {
                txn_fail(wsi, t, -EINVAL, "not_found", "path too long");
                return 0;
        }
        memcpy(t->path, in, len);
        t->path[len] = '\0';

        bool path_known;
        char *caps[API_MAX_PARAMS] = {0};
        t->route = routes_find(t->method, t->path, caps, &path_known);
        for (size_t k = 0; k < API_MAX_PARAMS; k++) {
                t->params[k] = caps[k];
                t->req.params[k] = caps[k];
        }
        if (!t->route && !path_known && web_serves(a, t->method, t->path)) {
                txn_respond(wsi, t, web_get(&t->req, t->path));
                return 0;
        }
        if (!t->route) {
                if (path_known)
                        txn_fail(wsi, t, -EINVAL, "method_not_allowed", "method not allowed on this path");
                else
                        txn_fail(wsi, t, -ENOENT, "not_found", "no such endpoint");
                return 0;
        }
        t->req.perm = t->route->perm;

        bool has_body_method = !strcmp(t->method, "POST") || !strcmp(t->method, "PUT") ||
                               !strcmp(t->method, "PATCH");
        if (has_body_method) {
                char cl[32] = "";
                bool chunked = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
                if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
                        char *end;
                        errno = 0;
                        unsigned long long n = strtoull(cl, &end, 10);
                        if (errno || end == cl || *end) {
                                t->close_after = true;
                                txn_fail(wsi, t, -EINVAL, "invalid_json", "invalid Content-Length");
                                return 0;
                        }
                        if (n > (unsigned long long)a->cfg.max_body) {
                                /* answer before reading anything and drop the connection */
                                t->too_large = true;
                                t->close_after = true;
                                txn_fail(wsi, t, -E2BIG, "too_large", "request body exceeds PADDOCK_API_MAX_BODY");
                                return 0;
                        }
                        if (n > 0)
                                return 0; /* wait for LWS_CALLBACK_HTTP_BODY */
                } else if (chunked) {
                        /* lws 4.1 does not complete chunked request bodies: refuse them
                         * up front instead of letting the client wait */
                        t->close_after = true;
                        txn_fail(wsi, t, -EINVAL, "invalid_field",
                                 "Content-Length is required (chunked request bodies are not supported)");
                        return 0;
                }
        }
        txn_dispatch(a, wsi, t);
        return 0;
}

static int http_on_body(struct api *a, struct lws *wsi, struct http_txn *t, const void *in,
                        size_t len) {
        if (!t || t->responded)
                return 0; /* discard what arrives after an early answer */
        if (t->body_len + len > (size_t)a->cfg.max_body) {
                t->too_large = true;
                t->close_after = true;
                txn_fail(wsi, t, -E2BIG, "too_large", "request body exceeds PADDOCK_API_MAX_BODY");
                return 0;
        }
        if (t->body_len + len + 1 > t->body_cap) {
                size_t cap = t->body_cap ? t->body_cap * 2 : 4096;
                while (cap < t->body_len + len + 1)
                        cap *= 2;
                char *nb = realloc(t->body, cap);
                if (!nb)
                        return -1;
                t->body = nb;
                t->body_cap = cap;
        }
        memcpy(t->body + t->body_len, in, len);
        t->body_len += len;
        t->body[t->body_len] = '\0';
        return 0;
}

/* docs/CONTRACTS.md "Dashboard": no inline script or style, nothing from
 * another origin, never framed */
static const struct {
        const char *name, *value;
} security_headers[] = {
        {"content-security-policy:",
         "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
         "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"},
        {"x-content-type-options:", "nosniff"},
        {"referrer-policy:", "no-referrer"},
        {"x-frame-options:", "DENY"},
};

static int http_on_writeable(struct lws *wsi, struct api_pss *pss) {
        struct http_txn *t = pss->txn;
        if (!t || !t->responded)
                return 0;
        if (!t->headers_sent) {
                /* the head, then room for a body that fits in one chunk */
                unsigned char buf[LWS_PRE + HEAD_MAX + WRITE_CHUNK], *start = buf + LWS_PRE, *p = start,
                                                                   *end = start + HEAD_MAX - 1;
                if (lws_add_http_common_headers(wsi, (unsigned)t->status, t->ctype,
                                                (lws_filepos_t)t->resp_len, &p, end))
                        return -1;
                if (t->req.location &&
                    lws_add_http_header_by_name(wsi, (const unsigned char *)"location:",
                                                (const unsigned char *)t->req.location,
                                                (int)strlen(t->req.location), &p, end))
                        return -1;
                const char *cc = t->req.cache_control ? t->req.cache_control : "no-store";
                if (lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                                (const unsigned char *)cc, (int)strlen(cc), &p, end))
                        return -1;
                /* the dashboard's policy on every answer: a page of ours
                 * runs only our own files, and no JSON is ever a page */
                for (size_t i = 0; i < ELEMENTSOF(security_headers); i++)
                        if (lws_add_http_header_by_name(wsi, (const unsigned char *)security_headers[i].name,
                                                        (const unsigned char *)security_headers[i].value,
                                                        (int)strlen(security_headers[i].value), &p, end))
                                return -1;
                for (size_t i = 0; i < ELEMENTSOF(t->req.set_cookie); i++)
                        if (t->req.set_cookie[i] &&
                            lws_add_http_header_by_name(wsi, (const unsigned char *)"set-cookie:",
                                                        (const unsigned char *)t->req.set_cookie[i],
                                                        (int)strlen(t->req.set_cookie[i]), &p, end))
                                return -1;
                if (lws_add_http_header_by_name(wsi, (const unsigned char *)"x-request-id:",
                                                (const unsigned char *)t->request_id, (int)strlen(t->request_id),
                                                &p, end))
                        return -1;
                char ra[24];
                int ral = t->req.retry_after_s > 0 ? snprintf(ra, sizeof ra, "%lld", t->req.retry_after_s) : 0;
                if (ral > 0 && lws_add_http_header_by_name(wsi, (const unsigned char *)"retry-after:",
                                                           (const unsigned char *)ra, ral, &p, end))
                        return -1;
                if (t->close_after &&
                    lws_add_http_header_by_name(wsi, (const unsigned char *)"connection:",
                                                (const unsigned char *)"close", 5, &p, end))
                        return -1;
                if (lws_finalize_http_header(wsi, &p, end))
                        return -1;
                t->headers_sent = true;
                /* a body of at most one chunk goes out in the head's write:
                 * one send, no second pass of the loop (docs/CONTRACTS.md
                 * "An answer is one write when it fits"; HTTP/1.1 only) */
                size_t n = t->head || t->resp_len > WRITE_CHUNK ? 0 : t->resp_len;
                if (n)
                        memcpy(p, t->resp, n);
                t->resp_off = n;
                size_t len = (size_t)(p - start) + n;
                if (lws_write(wsi, start, len, LWS_WRITE_HTTP_HEADERS) != (int)len)
                        return -1;
                if (t->resp_off < t->resp_len && !t->head) {
                        lws_callback_on_writable(wsi);
                        return 0;
                }
        } else if (t->resp_off < t->resp_len) {
                unsigned char buf[LWS_PRE + WRITE_CHUNK];
                size_t n = t->resp_len - t->resp_off;
                if (n > WRITE_CHUNK)
                        n = WRITE_CHUNK;
                memcpy(buf + LWS_PRE, t->resp + t->resp_off, n);
                t->resp_off += n;
                bool last = t->resp_off == t->resp_len;
                if (lws_write(wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
                        return -1;
                if (!last) {
                        lws_callback_on_writable(wsi);
                        return 0;
                }
        }
        bool close = t->close_after;
        txn_free(TAKE_PTR(pss->txn));
        if (close)
                return -1;
        if (lws_http_transaction_completed(wsi))
                return -1;
        return 0;
}

/* A websocket upgrade: stream.c checks it, this layer refuses it (lws
 * writes the status line; the refusal has no body and no X-Request-Id, the
 * access line has both) and logs it. */
static int http_on_upgrade(struct api *a, struct lws *wsi, struct api_pss *pss) {
        int64_t start = time_mono_us();
        struct api_caller caller;
        metric_add(&api_metric_requests, 1);
        request_id_of(wsi, pss->ws_request_id);
        int status = stream_filter(a, wsi, &pss->ss, &caller);
        char uri[PATH_MAX_LEN] = "", *caps[API_MAX_PARAMS] = {0};
        bool known;
        lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
        const struct api_route *route = routes_find("GET", uri, caps, &known);
        for (size_t i = 0; i < API_MAX_PARAMS; i++)
                free(caps[i]);
        access_log("GET", route ? route->pattern : NULL, uri, status ? status : 101, start, &caller,
                   pss->ws_request_id);
        if (status == 0)
                return 0;
        lws_return_http_status(wsi, (unsigned)status, NULL);
        return -1;
}

int api_lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len) {
        struct api_pss *pss = user;
        struct lws_context *ctx = lws_get_context(wsi);
        struct api *a = ctx ? lws_context_user(ctx) : NULL;

        switch (reason) {
        case LWS_CALLBACK_HTTP:
                return http_on_request(a, wsi, pss, in, len);
        case LWS_CALLBACK_HTTP_BODY:
                return http_on_body(a, wsi, pss->txn, in, len);
        case LWS_CALLBACK_HTTP_BODY_COMPLETION:
                if (pss->txn && !pss->txn->responded)
                        txn_dispatch(a, wsi, pss->txn);
                return 0;
        case LWS_CALLBACK_HTTP_WRITEABLE:
                return http_on_writeable(wsi, pss);
        case LWS_CALLBACK_CLOSED_HTTP:
                if (pss) {
                        txn_free(TAKE_PTR(pss->txn));
                        /* accepted by the filter but never upgraded */
                        if (pss->ss)
                                stream_callback(a, wsi, LWS_CALLBACK_CLOSED, &pss->ss);
                }
                break;
        case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
                if (!pss)
                        return -1;
                return http_on_upgrade(a, wsi, pss);
        case LWS_CALLBACK_ADD_HEADERS:
                /* the websocket handshake's answer */
                if (pss && pss->ss && pss->ws_request_id[0]) {
                        struct lws_process_html_args *args = in;
                        if (lws_add_http_header_by_name(wsi, (const unsigned char *)"x-request-id:",
                                                        (const unsigned char *)pss->ws_request_id,
                                                        (int)strlen(pss->ws_request_id), (unsigned char **)&args->p,
                                                        (unsigned char *)args->p + args->max_len))
                                return 1;
                }
                return 0;
        case LWS_CALLBACK_ESTABLISHED:
        case LWS_CALLBACK_SERVER_WRITEABLE:
        case LWS_CALLBACK_RECEIVE:
        case LWS_CALLBACK_TIMER:
        case LWS_CALLBACK_CLOSED:
                if (!pss)
                        return -1;
                return stream_callback(a, wsi, reason, &pss->ss);
        case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
                if (a)
                        stream_wake_all(a);
                return 0;
        default:
                break;
        }
        return lws_callback_http_dummy(wsi, reason, user, in, len);
}


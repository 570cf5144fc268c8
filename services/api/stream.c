/* Websocket GET /v1/runs/{id}/stream?after=N: replay from PostgreSQL, then live
 * events from the fan-out, strictly in seq order with no gap and no duplicate.
 *
 * The session subscribes to the fan-out before reading history, so an event is
 * either in PostgreSQL already or still to arrive live (or both: duplicates
 * are dropped by seq); the fan-out's partition of the run starts a few
 * hundred records before its end when the subscription assigns it (fanout.c),
 * which covers the moment in between unless the partition took more records
 * then. Everything lands in one seq-ordered store; only the event numbered
 * next_seq is ever sent. When the store holds later events but not next_seq
 * (a gap: one of those moments, or a viewer's queue overflowed), PostgreSQL
 * is asked again every 100 ms until the gap is filled;
 * when idle, once a second as a safety net. A platform verdict (seq 0, stored
 * by evidence at the run's highest seq + 1: docs/CONTRACTS.md) has no seq
 * until evidence stores it: its live arrival makes the session read the
 * history at once and then every VERDICT_POLL_MIN_US, doubling up to
 * GAP_RETRY_US, until the verdict is there, so it reaches viewers with its
 * stored seq within evidence's lag. After the terminal status event the
 * socket closes with 1000. Every message is one event (docs/CONTRACTS.md),
 * its bytes shared with the other viewers (struct fanout_msg). Runs on the
 * lws thread only.
 *
 * A stream lasts only as long as what let it open (issue 9 §5): every
 * STREAM_RECHECK_US, on the idle timer and before a send, the session checks
 * again that its token is still valid (not revoked or expired, the user not
 * disabled) and that the user still holds a role that views the run's team,
 * and otherwise closes with 4401 (token) or 4403 (role) and a reason. The
 * upgrade takes the token from "Authorization: Bearer", or, for browsers
 * that cannot set headers on a websocket, a single-use ticket (?ticket=,
 * POST /v1/runs/{id}/stream-ticket) that names the token that asked for it:
 * never the token itself in a URL. */
#include <errno.h>
#include <inttypes.h>
#include <linux/sockios.h>
#include <string.h>
#include <sys/ioctl.h>

#include "api.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/timeutil.h"
#include "pg/pg.h"

/* a second of a 10k events/s run (the fan-out queue's size): a burst that
 * overflows the store is refetched from PostgreSQL, seconds later */
#define STORE_MAX 16384
/* events (and bytes, unless one event is larger) written per writable
 * callback, in one write: one per callback cost a pass of the lws loop (a
 * poll) per event */
#define WRITE_BURST 256
#define WRITE_BYTES (128 * 1024)
#define FETCH_BATCH 500
#define GAP_RETRY_US (100 * 1000)
#define VERDICT_POLL_MIN_US (10 * 1000)
#define IDLE_POLL_US (1000 * 1000)
#define STREAM_RECHECK_US (2 * 1000 * 1000)
#define TICKET_TTL_S 30
#define TICKET_PREFIX "pst_"
/* the normal close after the terminal event waits for the socket's send
 * queue to empty, polled every DRAIN_POLL_US, at most DRAIN_MAX_US (a viewer
 * that reads nothing is closed by the ping policy anyway) */
#define DRAIN_POLL_US (50 * 1000)
#define DRAIN_MAX_US (60 * 1000 * 1000)

/* websocket close codes of an authorization that ended (4000-4999: ours) */
#define CLOSE_UNAUTHORIZED 4401
#define CLOSE_FORBIDDEN 4403

struct stream_session {
        struct api *api;
        struct lws *wsi;
        struct api_caller caller;
        char run_id[UUID_STR_LEN];
        char team_id[UUID_STR_LEN]; /* the run's team, whose role lets the caller watch */
        int64_t recheck_due;        /* monotonic us of the next authorization check */
        int close_code;             /* != 0: authorization ended, close at the next write */
        const char *close_why;      /* static */
        uint64_t next_seq;
        bool run_was_terminal;
        bool sent_terminal; /* the terminal status event was written: close at the next callback */
        int64_t drain_until; /* monotonic µs: the close waits for the socket's queue until then */
        bool established;
        bool fetch_full;        /* the last fetch filled a batch: more history waits */
        bool history_missing;   /* evidence.run_events does not exist yet */
        int64_t verdict_poll_us; /* != 0: a platform verdict came live, not yet read from history */
        int64_t timer_due;      /* monotonic us of the armed timer, 0 if none */
        struct fanout_sub *sub;
        struct fanout_msg **live;   /* fanout_drain's spare queue */
        size_t live_cap;
        struct fanout_msg **store;  /* [off, off + n): sorted by seq, unique, all >= next_seq; a reference each */
        size_t off, n, cap;         /* sending takes from the front: off moves, nothing is copied */
        struct stream_session *next;
};

/* lws thread only */
/* the lws thread's: fan-out queued -> written to the socket (debug-level
 * "stream timings", fanout.c) */
static struct fanout_hop write_hop = {.name = "fanout_to_write"};
static int64_t write_hop_logged_us;

static struct stream_session *sessions;

/* Takes the reference of m. */
static void store_insert(struct stream_session *ss, struct fanout_msg *m) {
        uint64_t seq = m->seq;
        if (seq < ss->next_seq)
                goto drop;
        if (ss->off + ss->n == ss->cap && ss->off > 0) {
                memmove(ss->store, ss->store + ss->off, ss->n * sizeof *ss->store);
                ss->off = 0;
        }
        struct fanout_msg **st = ss->store + ss->off;
        size_t lo = 0, hi = ss->n;
        /* live events come in seq order: the common case appends */
        if (ss->n > 0 && st[ss->n - 1]->seq < seq)
                lo = ss->n;
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (st[mid]->seq < seq)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (lo < ss->n && st[lo]->seq == seq)
                goto drop;
        if (ss->n >= STORE_MAX) {
                /* keep the lowest seqs; what is dropped is refetched from PostgreSQL */
                if (lo == ss->n)
                        goto drop;
                fanout_msg_unref(st[--ss->n]);
        }
        if (ss->off + ss->n == ss->cap) {
                size_t cap = ss->cap ? ss->cap * 2 : 64;
                struct fanout_msg **ns = realloc(ss->store, cap * sizeof *ns);
                if (!ns)
                        goto drop;
                ss->store = ns;
                ss->cap = cap;
                st = ss->store + ss->off;
        }
        memmove(st + lo + 1, st + lo, (ss->n - lo) * sizeof *st);
        st[lo] = m;
        ss->n++;
        return;
drop:
        fanout_msg_unref(m);
}

static bool store_has_next(const struct stream_session *ss) {
        return ss->n > 0 && ss->store[ss->off]->seq == ss->next_seq;
}

static void session_fetch(struct stream_session *ss) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        ss->fetch_full = false;
        int k = db_open(&d, ss->api, ss->caller.tenant_id, &e);
        if (k < 0) {
                log_ctx(LOG_WARN, LOG_KV("run", ss->run_id), "could not read run history: %s", e.message);
                return;
        }
        _cleanup_json_ json_t *items = NULL;
        k = events_query(&d, ss->caller.tenant_id, ss->run_id, (int64_t)ss->next_seq - 1, FETCH_BATCH, false, &items, &e);
        ss->history_missing = k == -EAGAIN;
        if (k < 0) {
                if (k != -EAGAIN)
                        log_ctx(LOG_WARN, LOG_KV("run", ss->run_id), "could not read run history: %s", e.message);
                return;
        }
        size_t i;
        json_t *ev;
        json_array_foreach(items, i, ev) {
                uint64_t seq = (uint64_t)json_integer_value(json_object_get(ev, "seq"));
                struct fanout_msg *m = fanout_event_msg(ss->run_id, seq, json_string_value(json_object_get(ev, "ts")),
                                                        json_string_value(json_object_get(ev, "kind")),
                                                        json_string_value(json_object_get(ev, "actor")),
                                                        json_object_get(ev, "data"));
                if (m)
                        store_insert(ss, m);
        }
        ss->fetch_full = json_array_size(items) == FETCH_BATCH;
}

static void arm_timer(struct stream_session *ss, int64_t usecs) {
        int64_t due = time_mono_us() + usecs;
        if (ss->timer_due && ss->timer_due <= due)
                return;
        ss->timer_due = due;
        lws_set_timer_usecs(ss->wsi, usecs);
}

static void session_schedule(struct stream_session *ss) {
        if (store_has_next(ss))
                lws_callback_on_writable(ss->wsi);
        else if (ss->verdict_poll_us) {
                arm_timer(ss, ss->verdict_poll_us);
                ss->verdict_poll_us = ss->verdict_poll_us * 2 < GAP_RETRY_US ? ss->verdict_poll_us * 2 : GAP_RETRY_US;
        } else if (ss->n > 0)
                arm_timer(ss, GAP_RETRY_US);
        else
                arm_timer(ss, IDLE_POLL_US);
}

static const char *stream_run_id(const char *uri, char out[UUID_STR_LEN]) {
        static const char prefix[] = "/v1/runs/", suffix[] = "/stream";
        if (strncmp(uri, prefix, STRLEN(prefix)) != 0)
                return NULL;
        const char *id = uri + STRLEN(prefix);
        if (strlen(id) != 36 + STRLEN(suffix) || strcmp(id + 36, suffix) != 0)
                return NULL;
        memcpy(out, id, 36);
        out[36] = '\0';
        return id_is_uuid(out) ? out : NULL;
}

/* A plain GET of the stream path: the same authorization as the other run
 * endpoints, then 400 (it needs a websocket upgrade). */
int stream_plain_http(struct api_req *r) {
        /* authorize first, so the answer is the same as for the other run endpoints */
        struct err_detail e = {0};
        char team[UUID_STR_LEN], status[32];
        int k = runs_load_visible(r->api, &r->caller, r->params[0], r->perm, team, status, sizeof status, &e);
        if (k == -ENOENT)
                return api_fail(r, -ENOENT, "not_found", "run not found");
        if (k < 0)
                return db_fail(r, k, &e, "load run");
        return api_fail(r, -EINVAL, "unsupported", "/v1/runs/{id}/stream needs a websocket upgrade");
}

/* True when the query string has an argument named name (any value, any
 * length: lws_get_urlarg_by_name misses one longer than its buffer). */
static bool query_has(struct lws *wsi, const char *name) {
        size_t nl = strlen(name);
        for (int idx = 0;; idx++) {
                int len = lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, idx);
                if (len <= 0)
                        return false;
                _cleanup_free_ char *frag = malloc((size_t)len + 1);
                if (!frag || lws_hdr_copy_fragment(wsi, frag, len + 1, WSI_TOKEN_HTTP_URI_ARGS, idx) < 0)
                        return true; /* unreadable: refuse rather than guess */
                if (!strncmp(frag, name, nl) && (frag[nl] == '=' || frag[nl] == '\0'))
                        return true;
        }
}

/* Uses up ticket (any presentation does) and, when it was valid for run_id,
 * fills c with the caller of the token that asked for it (which must still
 * be valid). -EACCES for an unknown, used, expired or other run's ticket. */
static int ticket_redeem(struct api *a, const char *ticket, const char *run_id, struct api_caller *c,
                         struct err_detail *e) {
        if (strncmp(ticket, TICKET_PREFIX, STRLEN(TICKET_PREFIX)) || strlen(ticket) != STRLEN(TICKET_PREFIX) + 64 ||
            strspn(ticket + STRLEN(TICKET_PREFIX), "0123456789abcdef") != 64)
                return -EACCES;
        char digest[65];
        auth_sha256_hex(ticket, digest);
        _cleanup_db_ struct db d = {0};
        int k = db_open(&d, a, NULL, e);
        if (k < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {digest};
        /* SECURITY DEFINER (migrations/0013_stream_tickets.sql): no tenant is known yet */
        k = pg_exec(d.conn, "SELECT tenant_id, user_id, run_id, token_sha256 FROM api.stream_ticket_redeem($1)", 1,
                    params, &res, e);
        if (k < 0)
                return k;
        if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 2), run_id))
                return -EACCES;
        char user_id[UUID_STR_LEN], token_sha256[65];
        snprintf(user_id, sizeof user_id, "%s", PQgetvalue(res, 0, 1));
        snprintf(token_sha256, sizeof token_sha256, "%s", PQgetvalue(res, 0, 3));
        db_close(&d);
        if ((k = auth_lookup_token_sha256(a, token_sha256, c, NULL, e)) < 0)
                return k == -EKEYEXPIRED ? -EACCES : k;
        return strcmp(c->user_id, user_id) ? -EACCES : 0;
}

int stream_ticket_create(struct api_req *r) {
        const char *id = r->params[0];
        if (!id_is_uuid(id))
                return api_fail(r, -ENOENT, "not_found", "run not found");
        int k = api_body_none(r);
        if (k < 0)
                return k;
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        /* the permission of watching the run (r->perm: PERM_VIEWER in its team) */
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {id, r->caller.tenant_id};
        if ((k = db_load_team_row(r, &d, "run", "SELECT team_id FROM api.runs WHERE id = $1 AND tenant_id = $2", 2,
                                  params, 0, &res)) < 0)
                return k;
        char ticket[STRLEN(TICKET_PREFIX) + 65], digest[65];
        memcpy(ticket, TICKET_PREFIX, STRLEN(TICKET_PREFIX));
        if (id_random_hex(ticket + STRLEN(TICKET_PREFIX), 32) < 0)
                return api_fail(r, -EIO, "internal", "could not generate a ticket");
        auth_sha256_hex(ticket, digest);
        char ttl[16];
        snprintf(ttl, sizeof ttl, "%d", TICKET_TTL_S);
        _cleanup_pgres_ PGresult *ins = NULL;
        const char *ip[] = {digest, r->caller.tenant_id, r->caller.user_id, id, r->caller.token_sha256, ttl};
        k = pg_exec(d.conn,
                    "INSERT INTO api.stream_tickets (ticket_sha256, tenant_id, user_id, run_id, token_sha256, expires_at) "
                    "VALUES ($1, $2, $3, $4, $5, date_trunc('second', now()) + make_interval(secs => $6::int)) "
                    "RETURNING " DB_TS("expires_at"),
                    6, ip, &ins, &e);
        if (k < 0) {
                explicit_bzero(ticket, sizeof ticket);
                return db_fail(r, k, &e, "store stream ticket");
        }
        r->out = json_pack("{s:s, s:s, s:s, s:i}", "ticket", ticket, "run", id, "expires_at", PQgetvalue(ins, 0, 0),
                           "expires_in_s", TICKET_TTL_S);
        explicit_bzero(ticket, sizeof ticket);
        r->status = 201;
        return r->out ? 0 : api_fail(r, -ENOMEM, "internal", "out of memory");
}

/* Checks again what let the session open: 0 when it still holds; else sets
 * the close code and reason and returns -EPERM. A database failure keeps the
 * stream (checked again at the next interval). */
static int session_recheck(struct stream_session *ss) {
        ss->recheck_due = time_mono_us() + STREAM_RECHECK_US;
        struct err_detail e = {0};
        struct api_caller c = {0};
        int k = auth_lookup_token_sha256(ss->api, ss->caller.token_sha256, &c, NULL, &e);
        if (k == -EACCES || k == -EKEYEXPIRED || (k == 0 && strcmp(c.user_id, ss->caller.user_id))) {
                ss->close_code = CLOSE_UNAUTHORIZED;
                ss->close_why = "authorization ended: the token expired or was revoked, or the user was disabled";
                return -EPERM;
        }
        if (k < 0) {
                log_ctx(LOG_WARN, LOG_KV("run", ss->run_id), "could not check a stream's token: %s", e.message);
                return 0;
        }
        _cleanup_db_ struct db d = {0};
        if ((k = db_open(&d, ss->api, c.tenant_id, &e)) < 0) {
                log_ctx(LOG_WARN, LOG_KV("run", ss->run_id), "could not check a stream's role: %s", e.message);
                return 0;
        }
        k = api_authz_team(&d, &c, ss->team_id, PERM_VIEWER, &e);
        if (k == -EPERM || k == -ENOENT) {
                ss->close_code = CLOSE_FORBIDDEN;
                ss->close_why = "authorization ended: no role that views this run any more";
                return -EPERM;
        }
        if (k < 0)
                log_ctx(LOG_WARN, LOG_KV("run", ss->run_id), "could not check a stream's role: %s", e.message);
        ss->caller = c;
        return 0;
}

int stream_filter(struct api *a, struct lws *wsi, struct stream_session **ret, struct api_caller *caller) {
        char uri[256], token[128], run_id[UUID_STR_LEN], buf[64];
        *caller = (struct api_caller){0};
        if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 || !stream_run_id(uri, run_id))
                return HTTP_STATUS_NOT_FOUND;
        uint64_t after = 0;
        const char *v = lws_get_urlarg_by_name(wsi, "after=", buf, sizeof buf);
        if (v) {
                char *end;
                errno = 0;
                unsigned long long n = strtoull(v, &end, 10);
                if (errno || end == v || *end || n >= INT64_MAX)
                        return HTTP_STATUS_BAD_REQUEST;
                after = n;
        }
        struct api_caller c = {0};
        struct err_detail e = {0};
        char ticket[96];
        const char *tv;
        int k;
        /* a token in the URL is refused outright, even beside a valid header */
        if (query_has(wsi, "access_token"))
                return HTTP_STATUS_UNAUTHORIZED;
        if ((tv = lws_get_urlarg_by_name(wsi, "ticket=", ticket, sizeof ticket))) {
                k = ticket_redeem(a, tv, run_id, &c, &e);
                explicit_bzero(ticket, sizeof ticket);
        } else {
                k = auth_token_from_wsi(wsi, token, sizeof token);
                if (k >= 0)
                        k = auth_lookup_token(a, token, &c, NULL, &e);
                explicit_bzero(token, sizeof token);
        }
        if (k < 0)
                return k == -EACCES || k == -EKEYEXPIRED ? HTTP_STATUS_UNAUTHORIZED : HTTP_STATUS_SERVICE_UNAVAILABLE;
        *caller = c;
        /* a one-time password must be changed before anything else (http.c) */
        if (c.password_change_required)
                return HTTP_STATUS_FORBIDDEN;
        char team[UUID_STR_LEN], status[32];
        k = runs_load_visible(a, &c, run_id, PERM_VIEWER, team, status, sizeof status, &e);
        if (k < 0)
                return k == -ENOENT ? HTTP_STATUS_NOT_FOUND
                       : k == -EPERM ? HTTP_STATUS_FORBIDDEN
                                     : HTTP_STATUS_SERVICE_UNAVAILABLE;
        struct stream_session *ss = calloc(1, sizeof *ss);
        if (!ss)
                return HTTP_STATUS_INTERNAL_SERVER_ERROR;
        ss->api = a;
        ss->caller = c;
        memcpy(ss->run_id, run_id, sizeof run_id);
        memcpy(ss->team_id, team, sizeof team);
        ss->recheck_due = time_mono_us() + STREAM_RECHECK_US;
        ss->next_seq = after + 1;
        ss->run_was_terminal = runs_status_terminal(status);
        *ret = ss;
        return 0;
}

static void session_free(struct stream_session *ss) {
        if (!ss)
                return;
        if (ss->established) {
                for (struct stream_session **p = &sessions; *p; p = &(*p)->next)
                        if (*p == ss) {
                                *p = ss->next;
                                break;
                        }
                metric_add(&api_metric_ws_sessions, -1);
        }
        if (ss->sub)
                fanout_unsubscribe(ss->api->hub, ss->sub);
        for (size_t i = 0; i < ss->n; i++)
                fanout_msg_unref(ss->store[ss->off + i]);
        free(ss->store);
        free(ss->live);
        free(ss);
}

static void session_take_live(struct stream_session *ss) {
        if (!ss->sub)
                return;
        size_t n = fanout_drain(ss->api->hub, ss->sub, &ss->live, &ss->live_cap);
        bool verdict = false;
        for (size_t i = 0; i < n; i++) {
                struct fanout_msg *m = TAKE_PTR(ss->live[i]);
                if (m->seq == 0) {
                        verdict = true;
                        fanout_msg_unref(m);
                } else
                        store_insert(ss, m);
        }
        /* a platform verdict: its seq is evidence's, read it from the history now */
        if (verdict && !ss->verdict_poll_us) {
                ss->verdict_poll_us = VERDICT_POLL_MIN_US;
                if (!store_has_next(ss))
                        session_fetch(ss);
        }
}

void stream_wake_all(struct api *a) {
        (void)a;
        for (struct stream_session *ss = sessions; ss; ss = ss->next) {
                session_take_live(ss);
                session_schedule(ss);
        }
}

static int session_close(struct stream_session *ss, enum lws_close_status status, const char *why) {
        lws_close_reason(ss->wsi, status, (unsigned char *)why, strlen(why));
        return -1;
}

/* The lws thread's gather buffer: the frames of one burst, copied end to
 * end and written with one lws_write (one send(), full segments) instead of
 * a send() of a segment per event and viewer, whose kernel path (on
 * loopback the receiver's too) was what bounded several viewers at 10k
 * events/s (issue 10 §4). Written raw (LWS_WRITE_RAW): the frames are
 * already made, and the api speaks websocket over HTTP/1.1 only, with no
 * extension (no compression), so they are the wire format. */
static unsigned char *gather;
static size_t gather_cap;

/* Makes room for want bytes in the gather buffer; false on out-of-memory. */
static bool gather_reserve(size_t want) {
        if (want <= gather_cap)
                return true;
        size_t cap = gather_cap ? gather_cap : WRITE_BYTES;
        while (cap < want)
                cap *= 2;
        unsigned char *g = realloc(gather, cap);
        if (!g)
                return false;
        gather = g;
        gather_cap = cap;
        return true;
}

static int session_write(struct stream_session *ss) {
        if (ss->close_code || (time_mono_us() >= ss->recheck_due && session_recheck(ss) < 0)) {
                log_ctx(LOG_INFO, LOG_KV("run", ss->run_id, "user", ss->caller.user_id), "stream closed: %s",
                        ss->close_why);
                return session_close(ss, (enum lws_close_status)ss->close_code, ss->close_why);
        }
        /* the terminal event went out (lws flushed what the socket did not
         * take before calling back): now the normal close */
        if (ss->sent_terminal) {
                /* a viewer still reading the tail: lws drops a connection
                 * whose close goes unanswered for seconds, and the kernel
                 * then resets it with the tail still queued, so the close
                 * waits until the socket's send queue is empty (bounded) */
                int queued_bytes = 0;
                if (ioctl(lws_get_socket_fd(ss->wsi), SIOCOUTQ, &queued_bytes) == 0 && queued_bytes > 0 &&
                    time_mono_us() < ss->drain_until) {
                        arm_timer(ss, DRAIN_POLL_US);
                        return 0;
                }
                return session_close(ss, LWS_CLOSE_STATUS_NORMAL, "");
        }
        if (!store_has_next(ss)) {
                if (ss->fetch_full) {
                        session_fetch(ss);
                        if (store_has_next(ss))
                                lws_callback_on_writable(ss->wsi);
                }
                return 0;
        }
        /* the frames of up to WRITE_BURST events (WRITE_BYTES, or one larger
         * event), already framed and shared (struct fanout_msg), in one
         * write: lws sends what the socket takes, keeps the rest and calls
         * back only once it is flushed, so no write follows a partial one */
        size_t len = 0, taken = 0;
        int64_t queued[WRITE_BURST];
        while (taken < WRITE_BURST && store_has_next(ss) && !ss->sent_terminal) {
                struct fanout_msg *m = ss->store[ss->off];
                size_t flen = m->hdr + m->len;
                if (taken > 0 && len + flen > WRITE_BYTES)
                        break;
                if (!gather_reserve(len + flen)) {
                        if (taken == 0)
                                return -1;
                        break;
                }
                memcpy(gather + len, fanout_msg_frame(m), flen);
                len += flen;
                queued[taken++] = m->queued_us;
                ss->sent_terminal = m->terminal;
                fanout_msg_unref(m);
                ss->off++;
                if (--ss->n == 0)
                        ss->off = 0;
                ss->next_seq++;
        }
        if (lws_write(ss->wsi, gather, len, LWS_WRITE_RAW) < (int)len)
                return -1;
        int64_t now = time_now_us();
        for (size_t i = 0; i < taken; i++)
                if (queued[i])
                        fanout_hop_add(&write_hop, now - queued[i]);
        fanout_hops_flush(&write_hop, 1, &write_hop_logged_us);
        if (ss->sent_terminal && !ss->drain_until)
                ss->drain_until = time_mono_us() + DRAIN_MAX_US;
        if (ss->sent_terminal || store_has_next(ss) || ss->fetch_full)
                lws_callback_on_writable(ss->wsi); /* the close, the rest, or the next history batch */
        else
                session_schedule(ss);
        return 0;
}

int stream_callback(struct api *a, struct lws *wsi, enum lws_callback_reasons reason,
                    struct stream_session **ssp) {
        struct stream_session *ss = *ssp;
        switch (reason) {
        case LWS_CALLBACK_ESTABLISHED:
                if (!ss)
                        return -1;
                (void)a;
                ss->wsi = wsi;
                ss->established = true;
                ss->next = sessions;
                sessions = ss;
                metric_add(&api_metric_ws_sessions, 1);
                /* subscribe first, then read history: nothing falls in between */
                ss->sub = fanout_subscribe(ss->api->hub, ss->run_id);
                if (!ss->sub)
                        return -1;
                session_fetch(ss);
                if (ss->history_missing && ss->run_was_terminal && ss->n == 0)
                        return session_close(ss, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "run history unavailable");
                session_schedule(ss);
                return 0;
        case LWS_CALLBACK_SERVER_WRITEABLE:
                if (!ss)
                        return -1;
                return session_write(ss);
        case LWS_CALLBACK_TIMER:
                if (!ss)
                        return 0;
                ss->timer_due = 0;
                /* idle streams too: the timer runs at least every IDLE_POLL_US */
                if (ss->sent_terminal || ss->close_code ||
                    (time_mono_us() >= ss->recheck_due && session_recheck(ss) < 0)) {
                        lws_callback_on_writable(ss->wsi);
                        return 0;
                }
                session_take_live(ss);
                if (!store_has_next(ss))
                        session_fetch(ss);
                session_schedule(ss);
                return 0;
        case LWS_CALLBACK_RECEIVE:
                return 0; /* viewers have nothing to say yet */
        case LWS_CALLBACK_CLOSED:
                fanout_hops_flush(&write_hop, 1, NULL); /* a stream's last figures */
                session_free(TAKE_PTR(*ssp));
                return 0;
        default:
                return 0;
        }
}

#include "proxy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/ids.h"
#include "core/log.h"
#include "core/macro.h"
#include "core/metrics.h"
#include "core/timeutil.h"
#include "net/addr_policy.h"
#include "net/fd_wait.h"
#include "net/http_parse.h"
#include "net/netns_listen.h"
#include "net/tls_client.h"
#include "net/tls_sni.h"
#include "proxy_policy.h"

#define RELAY_PIPE_SIZE (256 * 1024)
#define RELAY_ROUNDS 4                 /* a bulk tunnel's splice rounds per event (tunnel_run) */
#define RELAY_BUF (64 * 1024)          /* each direction of a plain-HTTP request */
#define RELAY_COPY_MAX (16 * 1024)     /* copy_step's buffer: a read that fills it goes back to splice; <= RELAY_BUF */
#define RELAY_COPY_BELOW (4 * 1024)    /* a splice read below this makes the next read copy (hysteresis: bulk
                                        * reads that land between the two keep splicing) */
#define PROXY_WORKERS 8                /* decision threads: policy, approvals (a durable event) */
#define ACCEPT_BATCH 4                 /* connections a loop accepts per listener event: a burst spreads over the loops */
#define PROXY_RESOLVERS 4              /* name resolution: a black-holed DNS server holds these, never a decision */
#define LOOP_TICK_MS 250               /* the event loop's deadline granularity */
#define PIPE_POOL 16                   /* empty RELAY_PIPE_SIZE pipes a loop keeps for its next tunnels */
#define MAX_ADDRS 16
#define NAME_CACHE 16                  /* names a run keeps resolved (struct name_entry) */
#define NAME_CACHE_US 5000000          /* how long a resolution is reused: 5 s, then the node's resolver again */
#define HEAD_BUF (PROXY_HEAD_MAX > TLS_RECORD_MAX ? PROXY_HEAD_MAX : TLS_RECORD_MAX)
#define TLS_CHARGE (64 * 1024)         /* what an OpenSSL client connection holds, roughly */
#define NODE_FD_RESERVE 256            /* fds of the process outside the proxy (Kafka, runs, crun) */
#define REFUSAL_REPORT_US 1000000      /* refusals at accept time: at most one event a second per run */

const char *const proxy_env[] = {
        "HTTP_PROXY=" PROXY_URL, "HTTPS_PROXY=" PROXY_URL, "http_proxy=" PROXY_URL, "https_proxy=" PROXY_URL,
        "NO_PROXY=", "no_proxy=", NULL,
};

enum approval_state { APPROVAL_PENDING, APPROVAL_APPROVED, APPROVAL_DENIED };

/* One ask for host:port; kept for the run's lifetime so an approved (or
 * denied) destination is not asked again. */
struct approval {
        char id[UUID_STR_LEN];
        char host[HTTP_HOST_MAX + 1];
        uint16_t port;
        enum approval_state state;
        char by[160];
        bool announced;              /* approval_decided emitted */
        struct approval *next;
};


/* A name the run's resolvers resolved, reused for NAME_CACHE_US so the next
 * request for it is decided and connected on its event loop with no hop to
 * a resolver thread (issue 10 §4). Only what getaddrinfo gave: every use
 * checks the addresses against the floor and the policy again
 * (permitted_addrs), as a fresh resolution is; a failed resolution is never
 * kept. */
struct name_entry {
        char name[HTTP_HOST_MAX + 1];   /* canonical (canonical_name); "" when free */
        int64_t expires_mono;
        size_t n_addrs;
        struct sockaddr_storage addrs[MAX_ADDRS];
};

/* ---- one request's record, emitted as the egress event ---- */

struct conn;

struct request {
        struct conn *c;
        int64_t started_mono;
        char method[HTTP_METHOD_MAX];
        char host[HTTP_HOST_MAX + 1];
        uint16_t port;
        char path[1024];
        char sni[TLS_SNI_MAX + 1];
        uint64_t bytes_up, bytes_down;
        bool allowed;
        char rule[EGRESS_RULE_TEXT_MAX];
        char reason[300];
        bool emitted;
        bool tls;                   /* proxy-originated TLS to a secret header's origin */
        const char *relay;          /* "splice" or "copy" (user-space buffers) once relaying; static */
        json_t *secret_headers;     /* names of the secret headers added (never values) */
};

/* One direction of a relay: from -> pipe -> to with splice() (zero copy), or
 * through buf when no pipe could be made. */
struct half {
        int from, to;
        int pipe[2];
        size_t in_pipe;
        bool eof, shut;
        int64_t limit;        /* bytes still to read from `from`; -1 unlimited */
        uint64_t *bytes;
        uint64_t moved;       /* bytes read plus bytes written: progress, for the event loop */
        bool use_splice;
        bool copy_small;      /* with a pipe: the last read was small, the next one copies (half_step) */
        uint64_t copied, spliced; /* bytes read through user space / into the pipe: the event's relay */
        bool werr;            /* the last error was writing to `to` (not reading `from`) */
        bool pipe_unknown;    /* a write into the pipe failed: what it holds is not in_pipe */
        bool closing;         /* the other direction is done: `to` is closed at once, no shutdown first */
        size_t pipe_size;     /* what the pipe (or buf) holds */
        char *buf;            /* read/write fallback */
        size_t off;
};

/* The upstream end of a plain-HTTP request: plain TCP or our own TLS. */
struct upstream {
        int fd;
        SSL *ssl;
};

enum body_kind { BODY_NONE, BODY_LENGTH, BODY_CHUNKED };

struct body {
        enum body_kind kind;
        bool done;
        uint64_t left;              /* BODY_LENGTH */
        struct http_chunked ch;     /* BODY_CHUNKED */
        uint64_t dropped;           /* bytes read after the body: never forwarded */
};

/* Where a connection is (see proxy.h "Threads"): the event loop waits for its
 * head (CS_HEAD), a tunnel's ClientHello (CS_HELLO) and relays its bytes
 * (CS_TUNNEL, CS_PLAIN); a worker takes the decision (CS_WORK), which may park
 * it on a pending approval (pr->waiters) without holding the worker. */
enum conn_state { CS_HEAD, CS_WORK, CS_RESOLVE, CS_CONNECT, CS_TLS, CS_HELLO, CS_TUNNEL, CS_PLAIN };

/* What a worker does with a connection it takes from g.work. */
enum work_step {
        STEP_HEAD,       /* a complete head (or its failure) from the loop */
        STEP_ASK,        /* an `ask` target resolved: may it be asked for? */
        STEP_APPROVAL,   /* back from pr->waiters: decided, timed out or the run ends */
        STEP_REFUSE,     /* decided on the loop: answer refuse_status (its write may block) */
};

enum watch_kind { W_CLIENT, W_UPSTREAM };

/* A listener's epoll data: LISTEN_TAG | the run's serial, never a pointer
 * (an event already returned may outlive proxy_run_stop). */
#define LISTEN_TAG (UINT64_C(1) << 63)

/* An fd in the event loop's epoll set; data.ptr of its events. */
struct watch {
        enum watch_kind kind;
        void *owner;                /* struct conn */
        int fd;
        uint32_t mask;
        bool added, hup;            /* hup: EPOLLHUP or EPOLLERR seen */
};

struct conn {
        struct proxy_run *run;
        struct loop *loop;          /* the event loop that relays it (set at accept) */
        int cfd, ufd;               /* client, upstream; registered for shutdown by proxy_run_stop */
        unsigned fds;               /* charged to the run and the node (budget_charge) */
        size_t bytes;
        struct conn *prev, *next;   /* pr->conns, under pr->lock */

        /* Everything below belongs to the one thread that holds the
         * connection: the event loop, or the worker that took it from the
         * queue; hand-overs go through g.work (locked) / its loop's inbox. */
        enum conn_state state;
        bool leaving;               /* ended or handed over in the loop's current batch */
        int64_t deadline_mono;      /* CS_HEAD, CS_HELLO */
        int64_t last_mono;          /* CS_TUNNEL, CS_PLAIN: last byte moved (idle timeout) */
        struct watch wc, wu;
        struct conn *lprev, *lnext; /* the loop's list (timers) */
        struct conn *qnext;         /* g.work, a loop's inbox or a local list of the loop */
        struct conn *wnext;         /* pr->waiters, under pr->lock */
        struct request q;
        char *buf;                  /* HEAD_BUF: the head, then a tunnel's ClientHello */
        size_t have;
        int head_len, head_err;
        struct http_request *rq;
        struct egress_check chk;
        const struct proxy_header *origin;
        struct body body;
        size_t first;               /* body bytes that came with the head */
        struct approval *approval;  /* asked for; freed by proxy_run_stop only */
        int64_t approval_deadline;
        enum work_step step;        /* for the worker that takes it from g.work */
        bool resolve_for_ask;       /* CS_RESOLVE: back to a worker (STEP_ASK), else to connect */
        int resolve_status;         /* 0, or the status to answer (q->reason filled) */
        int refuse_status;          /* STEP_REFUSE */
        struct sockaddr_storage addrs[MAX_ADDRS]; /* resolved, then those the policy permits */
        size_t n_addrs, i_addr;     /* CS_CONNECT: the address being tried */
        int connect_err;            /* the last address's error */
        struct half up, down;       /* CS_TUNNEL; CS_PLAIN when spliced */
        struct upstream u;          /* CS_PLAIN */
        bool splice;                /* CS_PLAIN: bodies flow with splice() (plain TCP, no chunked body) */
        char *ub, *db;              /* ub first holds the upstream head and the body bytes read with it */
        size_t ub_off, ub_len, db_off, db_len;
        bool up_eof, up_wdead, client_eof;
};

struct proxy_run {
        char run_id[UUID_STR_LEN];
        struct egress_policy *policy;
        proxy_event_fn on_event;
        void *userdata;
        int listen_fd, port;
        uint64_t serial;            /* its listener's epoll data (LISTEN_TAG) */

        pthread_mutex_t lock;       /* guards everything below */
        pthread_cond_t cond;        /* connections gone */
        bool closing;
        struct conn *conns;
        unsigned n_conns, n_fds;
        size_t n_bytes;
        struct approval *approvals;
        struct conn *waiters;       /* parked on a pending approval, no thread held */
        /* connections refused at accept time, reported at most once a second */
        uint64_t refused_unreported;
        int64_t refused_next_report_mono;
        char refused_reason[200];
        const struct proxy_header *headers;
        size_t n_headers;
        proxy_policy_fn decide;     /* the run's policy, before the allowlist (set before the agent starts) */
        void *decide_userdata;
        uint32_t decide_ask_timeout_s;
        struct name_entry *names;   /* NAME_CACHE entries, allocated at the first resolution */

        struct proxy_run *next;     /* in g.runs, under g.lock */
};

/* One event loop: its thread owns the connections it accepted (every loop
 * waits on every run's listener, EPOLLEXCLUSIVE: one loop is woken per
 * connection, no hand-over) until they end or go to a worker; the first
 * loop also times the parked approvals. */
struct loop {
        int epfd;                   /* its clients and upstreams, every run's listener, wake */
        int wake_fd;                /* eventfd: inbox has connections for the loop */
        pthread_t thread;
        _Atomic(struct conn *) inbox; /* handed back to the loop: pushed by anyone, taken whole by
                                       * the loop (loop_post, loop_take_inbox; no lock, no ABA) */
        struct conn *conns;         /* the loop thread's own list (timers) */
        struct conn *dead, *out;    /* ended / for the workers, after the current batch */
        struct conn *fresh;         /* accepted, entered once g.lock is released (loop_thread) */
        char copy_buf[RELAY_COPY_MAX]; /* copy_step's */
        int pipes[PIPE_POOL][2];    /* empty pipes of RELAY_PIPE_SIZE (half_done, half_init) */
        unsigned n_pipes;
};

/* The event loops, the workers, the run registry and the node-wide budget of
 * the process. */
static struct {
        pthread_mutex_t lock;
        bool started;
        struct loop loops[PROXY_LOOPS_MAX];
        unsigned n_loops;
        uint64_t next_serial;       /* of the runs, for their listeners' epoll data */
        struct proxy_run *runs;
        struct proxy_settings cfg;  /* set by proxy_configure before any run */
        SSL_CTX *tls;               /* client context for secret header origins, under lock until set */
        int spare_fd;               /* given up to accept-and-close when the process is out of fds */
        atomic_uint conns, fds;     /* every run's, the loops' idle pipes: against cfg.node_max_conns, max_fds */
        unsigned max_fds;

        pthread_mutex_t qlock;      /* guards work and resolve; taken last */
        pthread_cond_t qcond;       /* work is not empty */
        pthread_cond_t rcond;       /* resolve is not empty */
        struct conn *work, *work_tail;   /* for the workers */
        struct conn *resolve, *resolve_tail; /* for the resolvers */
} g = {.lock = PTHREAD_MUTEX_INITIALIZER, .spare_fd = -1,
       .cfg = PROXY_SETTINGS_DEFAULT, .max_fds = 1024 - NODE_FD_RESERVE, .qlock = PTHREAD_MUTEX_INITIALIZER,
       .qcond = PTHREAD_COND_INITIALIZER, .rcond = PTHREAD_COND_INITIALIZER};

static struct metric metric_conns = {.name = "paddock_runner_egress_connections",
                                     .help = "Egress proxy client connections open, all runs", .type = METRIC_GAUGE};
static struct metric metric_refused = {.name = "paddock_runner_egress_refused_total",
                                       .help = "Egress proxy connections refused by a run's or the node's budget",
                                       .type = METRIC_COUNTER};

void proxy_metrics_register(void) {
        metrics_register(&metric_conns);
        metrics_register(&metric_refused);
}

int proxy_configure(const struct proxy_settings *s, struct err_detail *reterr) {
        SSL_CTX *ctx = tls_client_ctx_new(s->ca_bundle, "proxy", reterr);
        if (!ctx)
                return -EINVAL;
        /* one fd per client, one per upstream, four per tunnel: a node-wide
         * budget of thousands needs more than the usual soft limit of 1024 */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
                if (rl.rlim_cur < rl.rlim_max) {
                        rlim_t want = rl.rlim_max;
                        rl.rlim_cur = want;
                        (void)setrlimit(RLIMIT_NOFILE, &rl);
                        (void)getrlimit(RLIMIT_NOFILE, &rl);
                }
                rlim_t cur = rl.rlim_cur == RLIM_INFINITY ? (rlim_t)1 << 20 : rl.rlim_cur;
                g.max_fds = cur > 2 * NODE_FD_RESERVE ? (unsigned)(cur - NODE_FD_RESERVE) : (unsigned)(cur / 2);
        }
        SSL_CTX_free(g.tls);
        g.tls = ctx;
        g.cfg = *s;
        if (g.spare_fd < 0)
                g.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        return 0;
}

/* The TLS context; the system CAs when proxy_configure was not called. */
static SSL_CTX *tls_ctx(void) {
        pthread_mutex_lock(&g.lock);
        if (!g.tls)
                g.tls = tls_client_ctx_new(NULL, "proxy", NULL);
        SSL_CTX *ctx = g.tls;
        pthread_mutex_unlock(&g.lock);
        return ctx;
}

/* ---- budgets ---- */

/* Charges fds and bytes to c's run and fds to the node. Returns 0, or 429
 * (the run's budget) / 503 (the node's) with why filled. Takes pr->lock. */
static int budget_charge(struct conn *c, unsigned fds, size_t bytes, char *why, size_t why_size) {
        struct proxy_run *pr = c->run;
        int status = 0;
        pthread_mutex_lock(&pr->lock);
        if (pr->n_fds + fds > g.cfg.run_max_fds) {
                snprintf(why, why_size, "egress budget of this run exhausted: %u of %u fds in use", pr->n_fds,
                         g.cfg.run_max_fds);
                status = 429;
        } else if (pr->n_bytes + bytes > g.cfg.run_max_buffer_bytes) {
                snprintf(why, why_size, "egress budget of this run exhausted: %zu of %llu KiB of buffers in use",
                         pr->n_bytes / 1024, (unsigned long long)(g.cfg.run_max_buffer_bytes / 1024));
                status = 429;
        } else if (atomic_fetch_add(&g.fds, fds) + fds > g.max_fds) {
                atomic_fetch_sub(&g.fds, fds);
                snprintf(why, why_size, "egress budget of the node exhausted: %u fds in use", g.max_fds);
                status = 503;
        } else {
                pr->n_fds += fds;
                pr->n_bytes += bytes;
                c->fds += fds;
                c->bytes += bytes;
        }
        pthread_mutex_unlock(&pr->lock);
        return status;
}

/* Under pr->lock. */
static void budget_release_locked(struct conn *c) {
        struct proxy_run *pr = c->run;
        pr->n_fds -= c->fds;
        pr->n_bytes -= c->bytes;
        atomic_fetch_sub(&g.fds, c->fds);
        c->fds = 0;
        c->bytes = 0;
}

/* ---- small I/O helpers (non-blocking fds, poll with deadlines) ---- */

static int write_all(int fd, const void *buf, size_t len, int64_t deadline_mono) {
        const char *p = buf;
        while (len > 0) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
                if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                        int r = fd_wait_until(fd, POLLOUT, deadline_mono);
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

/* Reads what is available (waiting until deadline); 0 at EOF. */
static void emit(struct proxy_run *pr, const char *kind, json_t *d, bool sync) {
        if (d && pr->on_event)
                pr->on_event(pr->userdata, kind, d, sync);
        json_decref(d);
}

static void request_emit(struct request *q) {
        if (q->emitted)
                return;
        q->emitted = true;
        struct proxy_run *pr = q->c->run;
        double ms = (double)(time_mono_us() - q->started_mono) / 1000.0;
        json_t *d = json_pack("{s:s,s:i,s:s,s:I,s:I,s:f,s:s,s:s,s:s}", "host", q->host, "port", (int)q->port,
                              "method", q->method, "bytes_up", (json_int_t)q->bytes_up, "bytes_down",
                              (json_int_t)q->bytes_down, "duration_ms", ms, "decision", q->allowed ? "allow" : "deny",
                              "rule", q->rule[0] ? q->rule : "unknown", "reason", q->reason);
        if (d && q->path[0])
                json_object_set_new(d, "path", json_string(q->path));
        if (d)
                json_object_set_new(d, "sni", json_string(q->sni));
        if (d && q->relay)
                json_object_set_new(d, "relay", json_string(q->relay));
        if (d && q->tls) {
                json_object_set_new(d, "tls", json_true());
                json_object_set_new(d, "secret_headers", q->secret_headers ? json_incref(q->secret_headers) : json_array());
        }
        json_decref(q->secret_headers);
        q->secret_headers = NULL;
        emit(pr, "egress", d, false);
        log_ctx(LOG_DEBUG, LOG_KV("run", pr->run_id, "host", q->host, "decision", q->allowed ? "allow" : "deny"),
                "egress %s", q->reason);
}

static void deny(struct request *q, const char *fmt, ...) _printf_(2, 3);
static void deny(struct request *q, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(q->reason, sizeof q->reason, fmt, ap);
        va_end(ap);
        q->allowed = false;
}

/* Appends "; <what>" to the reason of a request that was allowed. */
static void note(struct request *q, const char *fmt, ...) _printf_(2, 3);
static void note(struct request *q, const char *fmt, ...) {
        size_t l = strlen(q->reason);
        if (l + 3 >= sizeof q->reason)
                return;
        snprintf(q->reason + l, sizeof q->reason - l, "; ");
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(q->reason + l + 2, sizeof q->reason - l - 2, fmt, ap);
        va_end(ap);
}

static const char *status_text(int status) {
        switch (status) {
        case 400: return "Bad Request";
        case 403: return "Forbidden";
        case 408: return "Request Timeout";
        case 413: return "Content Too Large";
        case 429: return "Too Many Requests";
        case 431: return "Request Header Fields Too Large";
        case 501: return "Not Implemented";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        default: return "Bad Gateway";
        }
}

static void respond(struct conn *c, int status, const char *text, const char *reason) {
        char body[512], head[1024];
        int bl = snprintf(body, sizeof body, "paddock egress proxy: %s\n", reason);
        if (bl < 0 || (size_t)bl >= sizeof body)
                bl = (int)sizeof body - 1;
        int hl = snprintf(head, sizeof head,
                          "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
                          "Connection: close\r\nX-Paddock-Egress: %s\r\n\r\n",
                          status, text, bl, status == 403 ? "deny" : "error");
        if (write_all(c->cfd, head, (size_t)hl, time_mono_us() + 5000000) == 0)
                (void)write_all(c->cfd, body, (size_t)bl, time_mono_us() + 5000000);
}

/* ---- approvals ---- */

static struct approval *approval_find(struct proxy_run *pr, const char *host, uint16_t port) {
        for (struct approval *a = pr->approvals; a; a = a->next)
                if (a->port == port && !strcasecmp(a->host, host))
                        return a;
        return NULL;
}

/* Holds the connection until host:port is approved, denied, timed out or the
 * run ends. Returns true if approved. */
static void work_push(struct conn *c);

/* Parks c on its approval: under pr->lock; no thread waits for it. */
static void park_locked(struct conn *c) {
        c->step = STEP_APPROVAL;
        c->wnext = c->run->waiters;
        c->run->waiters = c;
}

/* Under pr->lock: hands the parked connections matching a (all when NULL)
 * back to the workers. */
static void unpark_locked(struct proxy_run *pr, const struct approval *a) {
        for (struct conn **p = &pr->waiters; *p;) {
                struct conn *c = *p;
                if (!a || c->approval == a) {
                        *p = c->wnext;
                        c->wnext = NULL;
                        work_push(c);
                } else
                        p = &c->wnext;
        }
}

/* Asks for host:port (once per run: a second request joins the first ask).
 * Returns 1 when c was parked until the decision (it then belongs to
 * pr->waiters: the caller must not touch it), 0 when approval_finish() can
 * tell the outcome now. */
static int approval_begin(struct conn *c) {
        struct request *q = &c->q;
        struct proxy_run *pr = c->run;
        uint32_t timeout_s = c->chk.ask_timeout_s ? c->chk.ask_timeout_s : pr->policy->ask_timeout_s;
        bool created = false;
        char id[UUID_STR_LEN];

        pthread_mutex_lock(&pr->lock);
        struct approval *a = approval_find(pr, q->host, q->port);
        if (!a) {
                a = calloc(1, sizeof *a);
                if (!a || id_new_uuid(a->id) < 0) {
                        pthread_mutex_unlock(&pr->lock);
                        free(a);
                        return -ENOMEM;
                }
                snprintf(a->host, sizeof a->host, "%s", q->host);
                a->port = q->port;
                a->next = pr->approvals;
                pr->approvals = a;
                created = true;
        }
        memcpy(id, a->id, sizeof id);
        pthread_mutex_unlock(&pr->lock);

        /* every waiter has its own deadline from its own request; the approval
         * request announces the deadline of the first */
        c->approval = a;
        c->approval_deadline = time_mono_us() + (int64_t)timeout_s * 1000000;
        if (created) {
                char ts[64];
                time_format_rfc3339(time_now_us() + (int64_t)timeout_s * 1000000, ts, sizeof ts);
                json_t *d = json_pack("{s:s,s:s,s:s,s:i,s:s,s:i}", "approval_id", id, "kind", "egress", "host",
                                      q->host, "port", (int)q->port, "deadline", ts, "timeout_s", (int)timeout_s);
                if (d && c->chk.by_policy) /* asked by a rule of the run's policy, not the allowlist */
                        json_object_set_new(d, "rule", json_string(c->chk.rule));
                emit(pr, "approval_requested", d, true);
                log_ctx(LOG_INFO, LOG_KV("run", pr->run_id, "approval", id, "host", q->host),
                        "egress destination waits for approval");
        }
        pthread_mutex_lock(&pr->lock);
        bool wait = a->state == APPROVAL_PENDING && !pr->closing && time_mono_us() < c->approval_deadline;
        if (wait)
                park_locked(c);
        pthread_mutex_unlock(&pr->lock);
        return wait ? 1 : 0;
}

/* The outcome of c's approval once it is decided, timed out or the run ends
 * (or it is parked again: -1, the caller must not touch c). Returns 1 if
 * approved, 0 with q->reason filled. */
static int approval_finish(struct conn *c) {
        struct request *q = &c->q;
        struct proxy_run *pr = c->run;
        struct approval *a = c->approval;
        uint32_t timeout_s = c->chk.ask_timeout_s ? c->chk.ask_timeout_s : pr->policy->ask_timeout_s;
        char id[UUID_STR_LEN];

        pthread_mutex_lock(&pr->lock);
        memcpy(id, a->id, sizeof id);
        if (a->state == APPROVAL_PENDING && !pr->closing) {
                if (time_mono_us() < c->approval_deadline) {
                        park_locked(c);
                        pthread_mutex_unlock(&pr->lock);
                        return -1;
                }
                a->state = APPROVAL_DENIED;
                snprintf(a->by, sizeof a->by, "timeout");
        }
        enum approval_state st = a->state;
        char by[160];
        snprintf(by, sizeof by, "%s", a->by);
        bool closing = pr->closing;
        /* the first waiter to see the decision announces it; proxy_on_approval
         * only records it, so the control consumer never waits on Kafka here */
        bool announce = st != APPROVAL_PENDING && !a->announced && strcmp(by, "run_ended");
        if (announce)
                a->announced = true;
        pthread_mutex_unlock(&pr->lock);

        if (announce)
                emit(pr, "approval_decided",
                     json_pack("{s:s,s:s,s:s}", "approval_id", id, "decision",
                               st == APPROVAL_APPROVED ? "approve" : "deny", "by", by),
                     true);
        snprintf(q->rule, sizeof q->rule, "approval:%s", id);
        if (st == APPROVAL_APPROVED) {
                snprintf(q->reason, sizeof q->reason, "approved by %s", by);
                return 1;
        }
        if ((st == APPROVAL_PENDING && closing) || !strcmp(by, "run_ended"))
                deny(q, "run ended while approval %s was pending", id);
        else if (!strcmp(by, "timeout"))
                deny(q, "approval %s timed out after %u s", id, timeout_s);
        else
                deny(q, "denied by %s (approval %s)", by, id);
        return 0;
}

void proxy_on_approval(const char *run_id, const Paddock__V1__ApprovalDecision *d) {
        if (!run_id || !d || !d->approval_id)
                return;
        pthread_mutex_lock(&g.lock);
        struct proxy_run *pr = g.runs;
        while (pr && strcmp(pr->run_id, run_id))
                pr = pr->next;
        if (!pr) {
                pthread_mutex_unlock(&g.lock);
                log_ctx(LOG_DEBUG, LOG_KV("run", run_id), "approval decision for a run without a proxy, ignored");
                return;
        }
        char by[160];
        const char *who = d->decided_by && d->decided_by[0] ? d->decided_by : "unknown";
        snprintf(by, sizeof by, strchr(who, ':') ? "%s" : "user:%s", who);
        bool decided = false;
        pthread_mutex_lock(&pr->lock);
        for (struct approval *a = pr->approvals; a; a = a->next)
                if (!strcmp(a->id, d->approval_id)) {
                        if (a->state == APPROVAL_PENDING) {
                                a->state = d->approved ? APPROVAL_APPROVED : APPROVAL_DENIED;
                                snprintf(a->by, sizeof a->by, "%s", by);
                                decided = true;
                                unpark_locked(pr, a);
                        }
                        break;
                }
        pthread_mutex_unlock(&pr->lock);
        pthread_mutex_unlock(&g.lock);
        log_ctx(decided ? LOG_INFO : LOG_DEBUG, LOG_KV("run", run_id, "approval", d->approval_id),
                decided ? "approval decided" : "approval decision ignored: unknown or already decided");
}

/* ---- resolution and upstream connection ---- */

/* The canonical spelling of host the rules matched (lower case, no
 * trailing dot) into name: "localhost." would otherwise skip /etc/hosts and
 * go to the node's DNS server. False when it does not fit. */
static bool canonical_name(const char *host, char name[HTTP_HOST_MAX + 1]) {
        size_t hl = strlen(host);
        if (hl == 0 || hl > HTTP_HOST_MAX)
                return false;
        for (size_t i = 0; i <= hl; i++)
                name[i] = (char)tolower((unsigned char)host[i]);
        if (name[hl - 1] == '.')
                name[hl - 1] = '\0';
        return true;
}

/* Copies into addrs what the run resolved name to less than NAME_CACHE_US
 * ago; false when it did not (or it expired). Takes pr->lock. */
static bool names_lookup(struct proxy_run *pr, const char *name, struct sockaddr_storage *addrs, size_t *ret_n) {
        bool hit = false;
        int64_t now = time_mono_us();
        pthread_mutex_lock(&pr->lock);
        for (size_t i = 0; pr->names && i < NAME_CACHE && !hit; i++) {
                struct name_entry *e = &pr->names[i];
                if (e->name[0] && now < e->expires_mono && !strcmp(e->name, name)) {
                        memcpy(addrs, e->addrs, e->n_addrs * sizeof addrs[0]);
                        *ret_n = e->n_addrs;
                        hit = true;
                }
        }
        pthread_mutex_unlock(&pr->lock);
        return hit;
}

/* Keeps name's addresses for NAME_CACHE_US, in its own entry, a free or
 * expired one, or the one that expires first. Takes pr->lock; without
 * memory nothing is kept. */
static void names_store(struct proxy_run *pr, const char *name, const struct sockaddr_storage *addrs, size_t n) {
        int64_t now = time_mono_us();
        pthread_mutex_lock(&pr->lock);
        if (!pr->names)
                pr->names = calloc(NAME_CACHE, sizeof *pr->names);
        /* a free entry expires at 0, an expired one before any live one */
        struct name_entry *e = NULL;
        for (size_t i = 0; pr->names && i < NAME_CACHE; i++) {
                struct name_entry *x = &pr->names[i];
                if (x->name[0] && !strcmp(x->name, name)) {
                        e = x;
                        break;
                }
                if (!e || x->expires_mono < e->expires_mono)
                        e = x;
        }
        if (e) {
                snprintf(e->name, sizeof e->name, "%s", name);
                memcpy(e->addrs, addrs, n * sizeof addrs[0]);
                e->n_addrs = n;
                e->expires_mono = now + NAME_CACHE_US;
        }
        pthread_mutex_unlock(&pr->lock);
}

/* The addresses of the target: the literal, or what its name resolves to
 * (kept for the run's next requests: names_store). Returns 0, or the HTTP
 * status to answer with q->reason filled. */
static int resolve_target(struct request *q, const struct egress_check *chk, struct sockaddr_storage *addrs,
                          size_t *ret_n) {
        size_t n = 0;
        if (chk->literal)
                addrs[n++] = chk->addr;
        else {
                char name[HTTP_HOST_MAX + 1];
                if (!canonical_name(q->host, name)) {
                        deny(q, "host name too long");
                        return 403;
                }
                struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                         .ai_flags = AI_ADDRCONFIG}, *res = NULL;
                int r = getaddrinfo(name, NULL, &hints, &res);
                if (r != 0) {
                        deny(q, "could not resolve %s: %s", q->host, r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
                        q->allowed = true; /* the policy allowed it; the name does not exist */
                        return 502;
                }
                for (struct addrinfo *ai = res; ai && n < MAX_ADDRS; ai = ai->ai_next)
                        if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
                            ai->ai_addrlen <= sizeof addrs[0]) {
                                memset(&addrs[n], 0, sizeof addrs[n]);
                                memcpy(&addrs[n++], ai->ai_addr, ai->ai_addrlen);
                        }
                freeaddrinfo(res);
                if (n > 0)
                        names_store(q->c->run, name, addrs, n);
        }
        *ret_n = n;
        return 0;
}

/* Keeps in ok[] the addresses of addrs[0..n) the policy permits (the floor
 * first: DNS rebinding must not lead an allowed name to loopback, the node or
 * metadata, nor to a private address without a profile's IP rule). Returns
 * how many; with none, q->reason says why (a floor refusal preferred). */
static size_t permitted_addrs(struct request *q, bool literal, const struct sockaddr_storage *addrs, size_t n,
                              struct sockaddr_storage *ok) {
        struct proxy_run *pr = q->c->run;
        size_t n_ok = 0;
        char refused[256] = "";
        bool refused_floor = false;
        for (size_t i = 0; i < n; i++) {
                char why[256];
                bool floor;
                if (egress_policy_address_ok(pr->policy, &addrs[i], q->port, NULL, why, sizeof why, &floor))
                        ok[n_ok++] = addrs[i];
                else if (!refused[0] || (floor && !refused_floor)) {
                        snprintf(refused, sizeof refused, "%s", why);
                        refused_floor = floor;
                }
        }
        if (n_ok == 0) {
                if (n == 0)
                        deny(q, "%s has no IPv4 or IPv6 address", q->host);
                else if (literal)
                        deny(q, "%s", refused);
                else
                        deny(q, "%s: %s resolves to it (DNS rebinding protection)", refused, q->host);
        }
        return n_ok;
}

/* An `ask` is for what an approval can grant: a destination that would be
 * refused anyway (the floor, a non-public address without a profile's rule)
 * is refused at once, no human asked. status, addrs[0..n): resolve_target's.
 * False with q->reason filled then. */
static bool askable(struct request *q, const struct egress_check *chk, int status,
                    const struct sockaddr_storage *addrs, size_t n) {
        struct sockaddr_storage ok[MAX_ADDRS];
        bool ok_to_ask = status == 502 || /* no such name now: asking is harmless, connecting re-resolves */
                         (status == 0 && permitted_addrs(q, chk->literal, addrs, n, ok) > 0);
        if (ok_to_ask) {
                q->reason[0] = 0;
                q->allowed = false;
        }
        return ok_to_ask;
}

/* True if the connected socket's peer is exactly a (address and port): the
 * floor was checked on a, so it must be what fd is connected to. */
static bool peer_is(int fd, const struct sockaddr_storage *a) {
        struct sockaddr_storage peer = {0};
        socklen_t pl = sizeof peer;
        if (getpeername(fd, (struct sockaddr *)&peer, &pl) < 0 || peer.ss_family != a->ss_family)
                return false;
        if (a->ss_family == AF_INET) {
                const struct sockaddr_in *x = (const struct sockaddr_in *)&peer, *y = (const struct sockaddr_in *)a;
                return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
        }
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&peer, *y = (const struct sockaddr_in6 *)a;
        return x->sin6_port == y->sin6_port && !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr);
}

/* ---- relaying ---- */

/* Set on an event loop's thread (its loop), which takes a decision itself
 * when it needs no blocking step (loop_decide) and hands a worker the rest. */
static _Thread_local struct loop *on_loop;

static int half_step(struct half *h, bool readable, bool writable);

/* A small read of a direction that has a pipe, its pipe empty: recv into
 * the loop's buffer and send at once. For a few hundred bytes this is two
 * syscalls and one copy each way, where splice costs two syscalls plus the
 * pipe's page bookkeeping. What `to` does not take at once goes into the
 * (empty, larger) pipe, so the order of the bytes holds. A read that fills
 * the buffer means bulk: the next reads splice again. */
static int copy_step(struct half *h, size_t want) {
        char *buf = on_loop->copy_buf; /* half_step runs on a loop thread only */
        if (want > RELAY_COPY_MAX)
                want = RELAY_COPY_MAX;
        ssize_t n = recv(h->from, buf, want, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0; /* the pipe is empty: nothing to write either */
        if (n < 0) {
                h->werr = false;
                return -errno;
        }
        if (n == 0) {
                h->eof = true;
                h->moved++;
                return half_step(h, false, false); /* shuts `to` down */
        }
        h->copied += (uint64_t)n;
        h->moved += (uint64_t)n;
        if (h->limit >= 0)
                h->limit -= n;
        h->copy_small = (size_t)n < RELAY_COPY_MAX;
        ssize_t m = send(h->to, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (m < 0 && errno != EAGAIN && errno != EINTR) {
                h->werr = true;
                return -errno;
        }
        if (m < 0)
                m = 0;
        h->moved += (uint64_t)m;
        *h->bytes += (uint64_t)m;
        if (m < n) {
                if (write(h->pipe[1], buf + m, (size_t)(n - m)) != n - m) {
                        h->pipe_unknown = true;
                        return -EIO;
                }
                h->in_pipe = (size_t)(n - m);
        }
        return 0;
}

/* Moves what is possible in one direction; returns <0 on a broken connection.
 * With a pipe it reads while the pipe has room and writes what it holds;
 * small reads are copied instead (copy_step). */
static int half_step(struct half *h, bool readable, bool writable) {
        size_t room = h->use_splice ? h->pipe_size - h->in_pipe : h->in_pipe == 0 ? h->pipe_size : 0;
        if (readable && !h->eof && room > 0) {
                size_t want = room;
                if (h->limit >= 0 && (int64_t)want > h->limit)
                        want = (size_t)h->limit;
                ssize_t n;
                if (want == 0)
                        n = 0;
                else if (h->use_splice && h->copy_small && h->in_pipe == 0)
                        return copy_step(h, want);
                else if (h->use_splice)
                        n = splice(h->from, NULL, h->pipe[1], NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                else
                        n = recv(h->from, h->buf, want, 0);
                if (n < 0 && errno != EAGAIN && errno != EINTR) {
                        h->werr = false;
                        return -errno;
                }
                if (n == 0) {
                        h->eof = true;
                        h->moved++;
                }
                if (n > 0) {
                        if (h->use_splice) {
                                h->spliced += (uint64_t)n;
                                h->copy_small = (size_t)n < RELAY_COPY_BELOW;
                        } else {
                                h->copied += (uint64_t)n;
                                h->off = 0;
                        }
                        h->in_pipe += (size_t)n;
                        h->moved += (uint64_t)n;
                        if (h->limit >= 0)
                                h->limit -= n;
                        writable = true; /* try at once, saves a round trip through epoll */
                }
        }
        if (writable && h->in_pipe > 0) {
                ssize_t n;
                if (h->use_splice)
                        n = splice(h->pipe[0], NULL, h->to, NULL, h->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                else
                        n = send(h->to, h->buf + h->off, h->in_pipe, MSG_NOSIGNAL);
                if (n < 0 && errno != EAGAIN && errno != EINTR) {
                        h->werr = true;
                        return -errno;
                }
                if (n > 0) {
                        h->in_pipe -= (size_t)n;
                        h->off += (size_t)n;
                        h->moved += (uint64_t)n;
                        *h->bytes += (uint64_t)n;
                }
        }
        if (h->eof && h->in_pipe == 0 && !h->shut) {
                h->shut = true;
                h->moved++;
                /* a tunnel's last direction: its close sends the FIN (what
                 * `to` received was read to its EOF by the other direction,
                 * so it is a FIN, not a reset), one syscall fewer */
                if (h->limit != 0 && !h->closing)
                        shutdown(h->to, SHUT_WR);
        }
        return 0;
}

/* An empty pipe of an ended tunnel from the loop's pool into p: no pipe2,
 * F_SETPIPE_SZ and closes per tunnel (issue 10 §4); its fds leave the pool's
 * share of the node's budget for the tunnel's (work_connect). False when the
 * pool has none (it holds RELAY_PIPE_SIZE pipes only). */
static bool pipe_pool_take(int p[2], size_t size) {
        if (size != RELAY_PIPE_SIZE || !on_loop || on_loop->n_pipes == 0)
                return false;
        on_loop->n_pipes--;
        atomic_fetch_sub(&g.fds, 2);
        memcpy(p, on_loop->pipes[on_loop->n_pipes], 2 * sizeof *p);
        return true;
}

/* A new pipe holding size bytes into p, or false. A smaller pipe
 * (fs.pipe-max-size, pipe-user-pages-soft) only means smaller steps: never
 * ask for more than it holds, so none is made then. */
static bool pipe_make(int p[2], size_t size) {
        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
                return false;
        if (fcntl(p[0], F_SETPIPE_SZ, (int)size) >= (int)size)
                return true;
        close(p[0]);
        close(p[1]);
        p[0] = p[1] = -1;
        return false;
}

/* A direction from -> to through a pipe of pipe_size bytes (a buffer of as
 * many when no pipe can be made, or with_pipe is false); limit: bytes to
 * read from `from`, -1 for all (a limit reached is an EOF that does not shut
 * `to` down). */
static int half_init(struct half *h, int from, int to, int64_t limit, uint64_t *bytes, size_t pipe_size,
                     bool with_pipe) {
        *h = (struct half){.from = from, .to = to, .pipe = {-1, -1}, .limit = limit, .bytes = bytes,
                           .pipe_size = pipe_size};
        if (with_pipe && (pipe_pool_take(h->pipe, pipe_size) || pipe_make(h->pipe, pipe_size))) {
                h->use_splice = true;
                h->copy_small = true; /* until a read fills the copy buffer */
                return 0;
        }
        h->buf = malloc(pipe_size);
        return h->buf ? 0 : -ENOMEM;
}

static void half_done(struct half *h) {
        /* an empty tunnel pipe goes back to its loop's pool (the loop ending
         * the tunnel is the one that relayed it); one that may hold bytes
         * never does: they would reach the next tunnel's peer. Pooled
         * fds stay in the node's fd budget (g.fds), in no run's. */
        if (h->use_splice && h->in_pipe == 0 && !h->pipe_unknown && h->pipe_size == RELAY_PIPE_SIZE && on_loop &&
            on_loop->n_pipes < PIPE_POOL) {
                atomic_fetch_add(&g.fds, 2);
                memcpy(on_loop->pipes[on_loop->n_pipes++], h->pipe, sizeof h->pipe);
                h->pipe[0] = h->pipe[1] = -1;
        }
        if (h->pipe[0] >= 0)
                close(h->pipe[0]);
        if (h->pipe[1] >= 0)
                close(h->pipe[1]);
        h->pipe[0] = h->pipe[1] = -1;
        free(h->buf);
        h->buf = NULL;
}

/* ---- request handling ---- */

static bool host_needs_brackets(const char *h) { return strchr(h, ':') != NULL; }

/* Rewrites an absolute-form request to origin form for the upstream: own
 * Host, no hop-by-hop headers, Connection: close. For a secret header's
 * origin (reached over TLS), its headers replace the client's of the same
 * names and their names are listed in *ret_added; never for plain text.
 * Returns a malloc'd head or NULL. */
static char *build_upstream_head(struct proxy_run *pr, const struct http_request *rq,
                                 const struct proxy_header *origin, size_t *ret_len, json_t **ret_added) {
        size_t cap = PROXY_HEAD_MAX + 1024, len = 0;
        pthread_mutex_lock(&pr->lock);
        for (size_t i = 0; i < pr->n_headers; i++)
                cap += strlen(pr->headers[i].name) + pr->headers[i].value_len + 4;
        char *out = malloc(cap);
        if (!out) {
                pthread_mutex_unlock(&pr->lock);
                return NULL;
        }
#define PUT(p, n) do { memcpy(out + len, (p), (n)); len += (n); } while (0)
#define PUTS(s) PUT((s), strlen(s))
#define ADDED(k) (origin && pr->headers[k].port == origin->port && !strcasecmp(pr->headers[k].host, origin->host))
        PUTS(rq->method);
        PUTS(" ");
        if (rq->path.len == 0 || rq->path.p[0] != '/')
                PUTS("/");
        PUT(rq->path.p, rq->path.len);
        PUTS(" HTTP/1.1\r\nHost: ");
        if (host_needs_brackets(rq->host))
                PUTS("[");
        PUTS(rq->host);
        if (host_needs_brackets(rq->host))
                PUTS("]");
        uint16_t port = origin ? origin->port : rq->port;
        if (port != (origin ? 443 : 80)) {
                char pbuf[8];
                snprintf(pbuf, sizeof pbuf, ":%u", port);
                PUTS(pbuf);
        }
        PUTS("\r\n");
        for (size_t i = 0; i < rq->n_headers; i++) {
                const struct http_header *h = &rq->headers[i];
                if (http_header_is_hop_by_hop(h))
                        continue;
                bool replaced = false;
                for (size_t k = 0; k < pr->n_headers && !replaced; k++)
                        replaced = ADDED(k) && http_span_equal(h->name, pr->headers[k].name);
                if (replaced)
                        continue;
                PUT(h->name.p, h->name.len);
                PUTS(": ");
                PUT(h->value.p, h->value.len);
                PUTS("\r\n");
        }
        json_t *added = json_array();
        for (size_t k = 0; k < pr->n_headers; k++)
                if (ADDED(k)) {
                        PUTS(pr->headers[k].name);
                        PUTS(": ");
                        PUT(pr->headers[k].value, pr->headers[k].value_len);
                        PUTS("\r\n");
                        json_array_append_new(added, json_string(pr->headers[k].name));
                }
        pthread_mutex_unlock(&pr->lock);
        PUTS("Connection: close\r\n\r\n");
#undef ADDED
#undef PUT
#undef PUTS
        *ret_len = len;
        *ret_added = added;
        return out;
}

/* The secret header origin of a plain-HTTP request's host, or NULL. The
 * headers are set before the agent starts and never change while it runs. */
static const struct proxy_header *origin_for(struct proxy_run *pr, const char *host) {
        char h[HTTP_HOST_MAX + 1];
        snprintf(h, sizeof h, "%s", host);
        size_t hl = strlen(h);
        if (hl && h[hl - 1] == '.')
                h[hl - 1] = 0; /* "api.example.com." names the same origin */
        const struct proxy_header *o = NULL;
        pthread_mutex_lock(&pr->lock);
        for (size_t k = 0; k < pr->n_headers && !o; k++)
                if (!strcasecmp(pr->headers[k].host, h))
                        o = &pr->headers[k];
        pthread_mutex_unlock(&pr->lock);
        return o;
}

/* ---- the upstream end of a plain-HTTP request: plain TCP or our own TLS ---- */

/* One send or receive; -EAGAIN with *want (POLLIN/POLLOUT) when the socket
 * must become ready first (TLS may need either for either); 0 at EOF. */
static ssize_t up_io(struct upstream *u, bool writing, void *buf, size_t len, short *want) {
        if (!u->ssl) {
                ssize_t n = writing ? send(u->fd, buf, len, MSG_NOSIGNAL) : recv(u->fd, buf, len, 0);
                if (n >= 0)
                        return n;
                if (errno == EAGAIN || errno == EINTR) {
                        *want = writing ? POLLOUT : POLLIN;
                        return -EAGAIN;
                }
                return -errno;
        }
        size_t done = 0;
        ERR_clear_error();
        int ok = writing ? SSL_write_ex(u->ssl, buf, len, &done) : SSL_read_ex(u->ssl, buf, len, &done);
        if (ok == 1)
                return (ssize_t)done;
        switch (SSL_get_error(u->ssl, ok)) {
        case SSL_ERROR_WANT_READ:
                *want = POLLIN;
                return -EAGAIN;
        case SSL_ERROR_WANT_WRITE:
                *want = POLLOUT;
                return -EAGAIN;
        case SSL_ERROR_ZERO_RETURN:
                return 0;
        default:
                ERR_clear_error();
                return -ECONNRESET;
        }
}

/* Prepares TLS to the origin on u->fd (lib/net/tls_client.h, the one TLS
 * origination path): SNI for a name, the certificate verified against the
 * configured CAs for the name or the IP literal; the event loop then drives
 * the handshake (tls_handshake) within the connect timeout. Returns 0, or 502
 * with q->reason saying why; the request and its secret header are never
 * sent on a connection that failed the handshake. */
static int tls_setup(struct request *q, struct upstream *u, bool literal) {
        int r = 0;
        u->ssl = tls_client_new(tls_ctx(), u->fd, q->host, literal, &r);
        if (u->ssl)
                return 0;
        if (r == -ENOMEM)
                note(q, "no TLS context for https://%s:%u", q->host, q->port);
        else
                note(q, "cannot set up TLS for https://%s:%u", q->host, q->port);
        return 502;
}

/* One step of the handshake: 0 when done, -EAGAIN with *want (POLLIN or
 * POLLOUT), or 502 with q->reason saying why. */
static int tls_handshake(struct request *q, struct upstream *u, short *want) {
        char es[200];
        int r = tls_client_handshake(u->ssl, want, es, sizeof es);
        if (r == 0 || r == -EAGAIN)
                return r;
        if (r == -EPERM)
                note(q, "TLS to https://%s:%u refused: certificate verification failed: %s", q->host, q->port, es);
        else
                note(q, "TLS handshake with https://%s:%u failed: %s", q->host, q->port, es);
        return 502;
}

/* ---- request bodies: framed, bounded, nothing after them forwarded ---- */

/* How many of buf[0..n) belong to the body (the rest is counted as dropped);
 * -1 for a bad or oversized chunked body, with q denied and *status set. */
static ssize_t body_take(struct body *b, struct request *q, const char *buf, size_t n, int *status) {
        if (b->done) {
                b->dropped += n;
                return 0;
        }
        size_t take = n;
        if (b->kind == BODY_LENGTH) {
                if ((uint64_t)take > b->left)
                        take = (size_t)b->left;
                b->left -= take;
                b->done = b->left == 0;
        } else {
                struct err_detail e = {0};
                int r = http_chunked_feed(&b->ch, buf, n, &take, &e);
                if (r < 0) {
                        deny(q, "bad chunked request body: %s", e.message);
                        *status = r == -E2BIG ? 413 : 400;
                        return -1;
                }
                b->done = r == 1;
        }
        b->dropped += n - take;
        return (ssize_t)take;
}

/* Sends the rest of the request body (framed by b) upstream and relays the
 * answer until the upstream closes. Bytes the client sends after the body are
 * dropped, never forwarded: one request per connection, closed after the
 * answer. Returns 0; a status to answer when the request failed before any
 * byte of the answer reached the client; -1 when the client is gone. */
/* One round of a plain-HTTP request in the event loop: sends the rest of the
 * request body (framed by c->body) upstream and relays the answer until the
 * upstream closes. Bytes the client sends after the body are dropped, never
 * forwarded: one request per connection, closed after the answer. Moves what
 * it can without blocking, then returns 1 with the epoll interests of both
 * fds in *cwant and *uwant; or 0 when the request is over, with *status: 0,
 * a status to answer when it failed before any byte of the answer reached
 * the client, -1 when the client is gone. */
static int plain_step(struct conn *c, uint32_t *cwant, uint32_t *uwant, int *status) {
        struct request *q = &c->q;
        struct upstream *u = &c->u;
        struct body *b = &c->body;
        for (int round = 0;; round++) {
                bool progress = false;
                *cwant = *uwant = 0;
                if (!b->done && c->ub_off == c->ub_len) {
                        size_t cap = RELAY_BUF;
                        if (b->kind == BODY_LENGTH && b->left < cap)
                                cap = (size_t)b->left; /* never read the next request */
                        ssize_t n = recv(c->cfd, c->ub, cap, 0);
                        if (n > 0) {
                                int st = 0;
                                ssize_t k = body_take(b, q, c->ub, (size_t)n, &st);
                                if (k < 0) {
                                        *status = q->bytes_down ? -1 : st;
                                        return 0;
                                }
                                c->ub_off = 0;
                                c->ub_len = (size_t)k;
                                progress = true;
                                if (c->up_wdead)
                                        c->ub_len = 0;
                        } else if (n == 0) {
                                deny(q, "client closed before the request body ended");
                                *status = -1;
                                return 0;
                        } else if (errno == EAGAIN || errno == EINTR)
                                *cwant |= EPOLLIN;
                        else {
                                *status = -1;
                                return 0;
                        }
                }
                if (c->ub_off < c->ub_len) {
                        short w = 0;
                        ssize_t n = up_io(u, true, c->ub + c->ub_off, c->ub_len - c->ub_off, &w);
                        if (n > 0) {
                                c->ub_off += (size_t)n;
                                q->bytes_up += (uint64_t)n;
                                progress = true;
                        } else if (n == -EAGAIN)
                                *uwant |= w == POLLOUT ? EPOLLOUT : EPOLLIN;
                        else {
                                c->up_wdead = true; /* an early answer (413, 401) may still come */
                                c->ub_off = c->ub_len = 0;
                        }
                }
                if (!c->up_eof && c->db_off == c->db_len) {
                        short w = 0;
                        ssize_t n = up_io(u, false, c->db, RELAY_BUF, &w);
                        if (n > 0) {
                                c->db_off = 0;
                                c->db_len = (size_t)n;
                                progress = true;
                        } else if (n == -EAGAIN)
                                *uwant |= w == POLLOUT ? EPOLLOUT : EPOLLIN;
                        else {
                                c->up_eof = true;
                                progress = true;
                                if (n < 0)
                                        note(q, "upstream connection failed: %s", strerror((int)-n));
                        }
                }
                if (c->db_off < c->db_len) {
                        ssize_t n = send(c->cfd, c->db + c->db_off, c->db_len - c->db_off, MSG_NOSIGNAL);
                        if (n > 0) {
                                c->db_off += (size_t)n;
                                q->bytes_down += (uint64_t)n;
                                progress = true;
                        } else if (n < 0 && (errno == EAGAIN || errno == EINTR))
                                *cwant |= EPOLLOUT;
                        else {
                                *status = -1;
                                return 0;
                        }
                }
                if (c->up_eof && c->db_off == c->db_len) {
                        if (q->bytes_down == 0) {
                                note(q, "upstream closed without an answer");
                                *status = 502;
                        } else
                                *status = 0;
                        return 0;
                }
                if (progress) {
                        c->last_mono = time_mono_us();
                        if (round < 64)
                                continue;
                        /* a long answer must not hold the loop: yield, asking for
                         * what can move next (decrypted bytes OpenSSL holds are
                         * not visible to epoll: the client's EPOLLOUT brings us
                         * back for them) */
                        *cwant = *uwant = 0;
                        if (!b->done && c->ub_off == c->ub_len)
                                *cwant |= EPOLLIN;
                        if (c->ub_off < c->ub_len)
                                *uwant |= EPOLLOUT;
                        if (!c->up_eof && c->db_off == c->db_len) {
                                *uwant |= EPOLLIN;
                                if (u->ssl && SSL_pending(u->ssl) > 0)
                                        *cwant |= EPOLLOUT;
                        }
                        if (c->db_off < c->db_len)
                                *cwant |= EPOLLOUT;
                        return 1;
                }
                if (!*cwant && !*uwant) {
                        *status = -1; /* nothing can move: should not happen */
                        return 0;
                }
                return 1;
        }
}

/* The verdict on a tunnel's first bytes buf[0..have): its TLS ClientHello
 * and SNI. Returns the number of bytes to forward upstream; -1 when the
 * tunnel is refused (q->reason says why); -EAGAIN when more bytes are needed
 * (and fit). */
static ssize_t hello_verdict(struct conn *c) {
        struct request *q = &c->q;
        enum tls_hello_result res = tls_parse_client_hello((const uint8_t *)c->buf, c->have, q->sni);
        if (res == TLS_HELLO_NEED_MORE && c->have < TLS_RECORD_MAX)
                return -EAGAIN;
        switch (res) {
        case TLS_HELLO_SNI:
                if (!c->chk.literal) {
                        char host[HTTP_HOST_MAX + 1];
                        size_t hl = strlen(q->host);
                        snprintf(host, sizeof host, "%s", q->host);
                        if (hl && host[hl - 1] == '.')
                                host[hl - 1] = 0;
                        if (strcasecmp(host, q->sni)) {
                                deny(q, "TLS SNI \"%s\" differs from the CONNECT host (domain fronting)", q->sni);
                                return -1;
                        }
                }
                return (ssize_t)c->have;
        case TLS_HELLO_NO_SNI:
                if (!c->chk.literal) {
                        deny(q, "TLS ClientHello without SNI for a named host");
                        return -1;
                }
                return (ssize_t)c->have;
        case TLS_HELLO_NOT_TLS:
                /* an explicitly allowed address may speak anything; a name must
                 * speak TLS or its Host header could front another site */
                if (!c->chk.literal) {
                        deny(q, "tunnel to a named host does not start with a TLS ClientHello");
                        return -1;
                }
                return (ssize_t)c->have;
        case TLS_HELLO_NEED_MORE:
        case TLS_HELLO_MALFORMED:
        default:
                deny(q, "malformed or fragmented TLS ClientHello");
                return -1;
        }
}

/* Sets (or replaces: the next address tried) the upstream fd, closing the
 * previous one under the lock like conn_unregister. */
static void set_upstream(struct conn *c, int fd) {
        pthread_mutex_lock(&c->run->lock);
        if (c->ufd >= 0)
                close(c->ufd);
        c->ufd = fd;
        bool closing = c->run->closing;
        pthread_mutex_unlock(&c->run->lock);
        if (closing)
                shutdown(fd, SHUT_RDWR);
}

/* ---- a connection's life: the event loop and the workers ----
 *
 * The loop thread accepts, reads heads and ClientHellos and relays every
 * byte (tunnels with splice() through a pipe per direction); the workers
 * (PROXY_WORKERS, fixed) take the decisions, which may block on the
 * resolver, a TCP connect or a TLS handshake (each bounded by its timeout)
 * or on Kafka for an approval event. A connection waiting for an approval
 * holds no thread: it is parked on the run (pr->waiters) and handed back to
 * a worker by the decision, the run's end or its deadline (loop tick). A
 * connection belongs to one thread at a time; hand-overs go through g.work
 * (to the workers) and its loop's inbox (to the loop). */

static void conn_unregister(struct conn *c) {
        struct proxy_run *pr = c->run;
        pthread_mutex_lock(&pr->lock);
        if (c->prev)
                c->prev->next = c->next;
        else
                pr->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        pr->n_conns--;
        budget_release_locked(c);
        atomic_fetch_sub(&g.conns, 1);
        metric_add(&metric_conns, -1);
        /* closed under the lock so proxy_run_stop never shuts down a reused fd */
        close(c->cfd);
        if (c->ufd >= 0)
                close(c->ufd);
        pthread_cond_broadcast(&pr->cond);
        pthread_mutex_unlock(&pr->lock);
}

static void conn_free(struct conn *c) {
        half_done(&c->up);
        half_done(&c->down);
        SSL_free(c->u.ssl);
        json_decref(c->q.secret_headers);
        free(c->rq);
        free(c->buf);
        free(c->ub);
        free(c->db);
        free(c);
}

/* Ends a connection no loop watches: its egress event, then its fds and budget. */
static void conn_end(struct conn *c) {
        request_emit(&c->q);
        conn_unregister(c);
        conn_free(c);
}

/* Answers status with q->reason and ends the connection (worker side; on
 * the loop, a worker does it: the answer's write may wait for the client). */
static void conn_refuse(struct conn *c, int status) {
        if (on_loop) {
                c->refuse_status = status;
                c->state = CS_WORK;
                c->step = STEP_REFUSE;
                work_push(c);
                return;
        }
        respond(c, status, status_text(status), c->q.reason);
        conn_end(c);
}

static void work_push(struct conn *c) {
        pthread_mutex_lock(&g.qlock);
        c->qnext = NULL;
        if (g.work_tail)
                g.work_tail->qnext = c;
        else
                g.work = c;
        g.work_tail = c;
        pthread_cond_signal(&g.qcond);
        pthread_mutex_unlock(&g.qlock);
}

/* Hands c (state set) to the event loop. */
static void loop_post(struct conn *c) {
        struct loop *l = c->loop;
        struct conn *head = atomic_load(&l->inbox);
        do
                c->qnext = head;
        while (!atomic_compare_exchange_weak(&l->inbox, &head, c));
        if (on_loop == l)
                return; /* the loop drains its inbox before it waits again */
        uint64_t one = 1;
        (void)!write(l->wake_fd, &one, sizeof one);
}

/* Sets up the relay of a tunnel whose first `peeked` bytes (the ClientHello)
 * are in c->buf: they go first into the upstream direction's pipe. */
static int tunnel_begin(struct conn *c, size_t peeked) {
        if (half_init(&c->up, c->cfd, c->ufd, -1, &c->q.bytes_up, RELAY_PIPE_SIZE, true) < 0 ||
            half_init(&c->down, c->ufd, c->cfd, -1, &c->q.bytes_down, RELAY_PIPE_SIZE, true) < 0)
                return -ENOMEM;
        c->up.copied += peeked;
        size_t sent = 0;
        if (peeked > 0) {
                /* the fresh upstream socket's send buffer takes them at once,
                 * sparing a write into the pipe and a splice out of it; an
                 * error is met again by the relay's own send */
                ssize_t m = send(c->ufd, c->buf, peeked, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (m > 0) {
                        sent = (size_t)m;
                        c->up.moved += sent;
                        c->q.bytes_up += sent;
                }
        }
        size_t rest = peeked - sent;
        if (rest > 0) {
                if (c->up.use_splice) {
                        /* the pipe holds RELAY_PIPE_SIZE > TLS_RECORD_MAX: one write */
                        if (write(c->up.pipe[1], c->buf + sent, rest) != (ssize_t)rest) {
                                c->up.pipe_unknown = true;
                                return -EIO;
                        }
                } else
                        memcpy(c->up.buf, c->buf + sent, rest);
                c->up.in_pipe = rest;
                c->up.off = 0;
        }
        c->state = CS_TUNNEL;
        c->q.relay = c->up.use_splice && c->down.use_splice ? "splice" : "copy";
        c->last_mono = time_mono_us();
        return 0;
}

static void work_ask(struct conn *c);

/* After resolution (a worker or a resolver): keeps the addresses the policy
 * permits and hands c to the event loop to connect (CS_CONNECT), or answers
 * why not. */
static void connect_prepare(struct conn *c) {
        struct request *q = &c->q;
        if (c->resolve_status) {
                conn_refuse(c, c->resolve_status);
                return;
        }
        struct sockaddr_storage ok[MAX_ADDRS];
        size_t n_ok = permitted_addrs(q, c->chk.literal, c->addrs, c->n_addrs, ok);
        if (n_ok == 0) {
                conn_refuse(c, 403);
                return;
        }
        memcpy(c->addrs, ok, n_ok * sizeof ok[0]);
        c->n_addrs = n_ok;
        c->i_addr = 0;
        c->connect_err = EHOSTUNREACH;
        c->state = CS_CONNECT;
        c->deadline_mono = time_mono_us() + (int64_t)PROXY_CONNECT_TIMEOUT_MS * 1000;
        loop_post(c);
}

/* The addresses of c's target (worker or loop): a literal, or a name the
 * run resolved less than NAME_CACHE_US ago, at once (on the loop: no
 * hand-over, no wake-up); another name on a resolver thread (g.resolve), so
 * a slow or black-holed DNS server holds no decision worker. Then STEP_ASK
 * (for_ask) or connect_prepare(), which checks the addresses however they
 * came. */
static void work_resolve(struct conn *c, bool for_ask) {
        c->resolve_for_ask = for_ask;
        char name[HTTP_HOST_MAX + 1];
        bool known = c->chk.literal ||
                     (canonical_name(c->q.host, name) && names_lookup(c->run, name, c->addrs, &c->n_addrs));
        if (known) {
                if (c->chk.literal) {
                        c->addrs[0] = c->chk.addr;
                        c->n_addrs = 1;
                }
                c->resolve_status = 0;
                if (for_ask && on_loop) {
                        /* asking writes approval_requested durably: a worker's job */
                        c->state = CS_WORK;
                        c->step = STEP_ASK;
                        work_push(c);
                } else if (for_ask)
                        work_ask(c);
                else
                        connect_prepare(c);
                return;
        }
        c->state = CS_RESOLVE;
        pthread_mutex_lock(&g.qlock);
        c->qnext = NULL;
        if (g.resolve_tail)
                g.resolve_tail->qnext = c;
        else
                g.resolve = c;
        g.resolve_tail = c;
        pthread_cond_signal(&g.rcond);
        pthread_mutex_unlock(&g.qlock);
}

static void *resolver_thread(void *userdata) {
        (void)userdata;
        for (;;) {
                pthread_mutex_lock(&g.qlock);
                while (!g.resolve)
                        pthread_cond_wait(&g.rcond, &g.qlock);
                struct conn *c = g.resolve;
                g.resolve = c->qnext;
                if (!g.resolve)
                        g.resolve_tail = NULL;
                c->qnext = NULL;
                pthread_mutex_unlock(&g.qlock);

                c->n_addrs = 0;
                c->resolve_status = resolve_target(&c->q, &c->chk, c->addrs, &c->n_addrs);
                if (c->resolve_for_ask) {
                        c->state = CS_WORK;
                        c->step = STEP_ASK;
                        work_push(c);
                } else
                        connect_prepare(c);
        }
        return NULL;
}

/* After the decision allowed the request (worker): the upstream budget, then
 * resolution and the connection (the event loop), then the tunnel or the
 * plain request. */
static void work_connect(struct conn *c) {
        struct request *q = &c->q;
        struct http_request *rq = c->rq;
        char why[200];
        /* a tunnel: upstream + two pipes of RELAY_PIPE_SIZE; a plain request:
         * upstream + two buffers of RELAY_BUF (its pipes, when spliced, take
         * the buffers' place: plain_half) */
        int status = budget_charge(c, rq->connect ? 5 : 1,
                                   rq->connect ? 2 * RELAY_PIPE_SIZE : 2 * RELAY_BUF + (q->tls ? TLS_CHARGE : 0),
                                   why, sizeof why);
        if (status) {
                deny(q, "%s", why);
                conn_refuse(c, status);
                return;
        }
        work_resolve(c, false);
}

/* An `ask` target resolved (worker): refused at once if nothing could be
 * granted, else asked for (parked until the decision) or decided already. */
static void work_ask(struct conn *c) {
        struct request *q = &c->q;
        if (!askable(q, &c->chk, c->resolve_status, c->addrs, c->n_addrs)) {
                conn_refuse(c, 403);
                return;
        }
        int a = approval_begin(c);
        if (a < 0) {
                deny(q, "could not create an approval");
                conn_refuse(c, 403);
                return;
        }
        if (a > 0)
                return; /* parked: c is no longer ours */
        if (approval_finish(c) <= 0) {
                conn_refuse(c, 403);
                return;
        }
        work_connect(c);
}

/* A complete head (or its failure) from the loop: parse, frame the body,
 * check the policy; ask, deny or connect (worker). */
static void work_head(struct conn *c) {
        struct proxy_run *pr = c->run;
        struct request *q = &c->q;
        if (c->head_err) {
                snprintf(q->method, sizeof q->method, "?");
                deny(q, c->head_err == -ETIMEDOUT ? "no complete request head within %d s"
                                                  : "client closed before the request head ended",
                     PROXY_HEAD_TIMEOUT_MS / 1000);
                if (c->head_err == -ETIMEDOUT)
                        respond(c, 408, "Request Timeout", q->reason);
                conn_end(c);
                return;
        }
        if (c->head_len < 0) {
                snprintf(q->method, sizeof q->method, "?");
                deny(q, "request head larger than %d bytes", PROXY_HEAD_MAX);
                conn_refuse(c, 431);
                return;
        }
        struct http_request *rq = c->rq = calloc(1, sizeof *rq);
        if (!rq) {
                q->emitted = true;
                conn_end(c);
                return;
        }
        struct err_detail err = {0};
        int r = http_parse_request(c->buf, (size_t)c->head_len, rq, &err);
        snprintf(q->method, sizeof q->method, "%s", rq->method[0] ? rq->method : "?");
        snprintf(q->host, sizeof q->host, "%s", rq->host);
        q->port = rq->port;
        if (r < 0) {
                deny(q, "bad request: %s", err.message);
                conn_refuse(c, r == -ENOTSUP ? 501 : r == -E2BIG ? 431 : 400);
                return;
        }
        if (!rq->connect) {
                size_t pl = rq->path.len < sizeof q->path - 1 ? rq->path.len : sizeof q->path - 1;
                size_t off = 0;
                if (rq->path.len == 0 || rq->path.p[0] != '/')
                        q->path[off++] = '/';
                if (pl > sizeof q->path - 1 - off)
                        pl = sizeof q->path - 1 - off;
                memcpy(q->path + off, rq->path.p, pl);
                q->path[off + pl] = 0;
        }

        /* a secret header's origin: only over the proxy's own TLS, on its port */
        const struct proxy_header *origin = c->origin = rq->connect ? NULL : origin_for(pr, rq->host);
        if (origin && !strcmp(rq->method, "TRACE")) {
                deny(q, "TRACE to %s is refused: the proxy adds a secret header there and TRACE echoes it", q->host);
                conn_refuse(c, 403);
                return;
        }
        if (origin && rq->port_explicit && rq->port != origin->port) {
                deny(q, "%s has a secret header for https://%s:%u only; plain HTTP to port %u is refused "
                     "(the secret is never sent in clear)", q->host, q->host, origin->port, rq->port);
                conn_refuse(c, 403);
                return;
        }
        if (origin) {
                q->port = origin->port;
                q->tls = true;
        }

        /* the body's framing, checked before anything goes upstream */
        struct body *body = &c->body;
        *body = (struct body){.kind = rq->chunked ? BODY_CHUNKED : rq->content_length > 0 ? BODY_LENGTH : BODY_NONE};
        if (!rq->connect && rq->content_length > 0 && (uint64_t)rq->content_length > g.cfg.max_body_bytes) {
                deny(q, "request body of %lld bytes is larger than the limit of %llu", (long long)rq->content_length,
                     (unsigned long long)g.cfg.max_body_bytes);
                conn_refuse(c, 413);
                return;
        }
        body->done = body->kind == BODY_NONE;
        body->left = body->kind == BODY_LENGTH ? (uint64_t)rq->content_length : 0;
        if (body->kind == BODY_CHUNKED)
                http_chunked_init(&body->ch, g.cfg.max_body_bytes);
        size_t extra = c->have - (size_t)c->head_len;
        if (!rq->connect) {
                int status = 0;
                ssize_t k = body_take(body, q, c->buf + c->head_len, extra, &status);
                if (k < 0) {
                        conn_refuse(c, status);
                        return;
                }
                c->first = (size_t)k;
                /* bodies flow with splice() unless the proxy must see the bytes:
                 * its own TLS, or chunked framing it checks (CONTRACTS.md "Egress") */
                c->splice = !q->tls && body->kind != BODY_CHUNKED;
        }

        struct policy_decision pd = {.action = POLICY_ALLOW, .rule = -1};
        const char *pd_rule = NULL;
        if (pr->decide)
                pd = pr->decide(pr->decide_userdata, q->host, q->port, &pd_rule);
        egress_policy_check(pr->policy, pr->decide ? &pd : NULL, pd_rule, pr->decide_ask_timeout_s, q->host, q->port,
                            &c->chk);
        snprintf(q->rule, sizeof q->rule, "%s", c->chk.rule);
        if (c->chk.verdict == EGRESS_ASK) {
                work_resolve(c, true);
                return;
        } else if (c->chk.verdict == EGRESS_DENY) {
                snprintf(q->reason, sizeof q->reason, "%s", c->chk.reason);
                conn_refuse(c, 403);
                return;
        } else
                snprintf(q->reason, sizeof q->reason, "allowed by rule");
        work_connect(c);
}

static void *worker_thread(void *userdata) {
        (void)userdata;
        for (;;) {
                pthread_mutex_lock(&g.qlock);
                while (!g.work)
                        pthread_cond_wait(&g.qcond, &g.qlock);
                struct conn *c = g.work;
                g.work = c->qnext;
                if (!g.work)
                        g.work_tail = NULL;
                c->qnext = NULL;
                pthread_mutex_unlock(&g.qlock);

                if (c->step == STEP_HEAD) {
                        work_head(c);
                        continue;
                }
                if (c->step == STEP_ASK) {
                        work_ask(c);
                        continue;
                }
                if (c->step == STEP_REFUSE) {
                        conn_refuse(c, c->refuse_status);
                        continue;
                }
                /* back from pr->waiters: decided, timed out or the run ends */
                int r = approval_finish(c);
                if (r == 0)
                        conn_refuse(c, 403);
                else if (r > 0)
                        work_connect(c);
        }
        return NULL;
}

/* ---- the event loop (its thread only) ---- */

static int watch_set(struct watch *w, uint32_t mask) {
        if (w->fd < 0)
                return 0;
        if (mask == 0 && w->hup) {
                /* a hung-up fd reports EPOLLHUP even with no events asked: out of
                 * the set until there is something to do with it again */
                if (w->added)
                        (void)epoll_ctl(on_loop->epfd, EPOLL_CTL_DEL, w->fd, NULL);
                w->added = false;
                return 0;
        }
        if (w->added && w->mask == mask)
                return 0;
        struct epoll_event ev = {.events = mask, .data.ptr = w};
        if (epoll_ctl(on_loop->epfd, w->added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, w->fd, &ev) < 0)
                return -errno;
        w->added = true;
        w->mask = mask;
        return 0;
}

static void watch_del(struct watch *w) {
        if (w->added)
                (void)epoll_ctl(on_loop->epfd, EPOLL_CTL_DEL, w->fd, NULL);
        w->added = false;
        w->mask = 0;
}

static void loop_detach(struct conn *c) {
        watch_del(&c->wc);
        watch_del(&c->wu);
        if (c->lprev)
                c->lprev->lnext = c->lnext;
        else
                on_loop->conns = c->lnext;
        if (c->lnext)
                c->lnext->lprev = c->lprev;
        c->lprev = c->lnext = NULL;
        c->leaving = true;
}

/* Ends a connection of the loop: its event now, the memory after the batch
 * (a later event of the same batch may still point at it). */
static void loop_end(struct conn *c) {
        loop_detach(c);
        /* with pipes, the event's relay is the path that carried most bytes:
         * small exchanges are copied (copy_step), bulk is spliced */
        uint64_t copied = c->up.copied + c->down.copied, spliced = c->up.spliced + c->down.spliced;
        if (c->q.relay && !strcmp(c->q.relay, "splice") && copied > spliced)
                c->q.relay = "copy";
        request_emit(&c->q);
        conn_unregister(c);
        c->qnext = on_loop->dead;
        on_loop->dead = c;
}

static void loop_handoff(struct conn *c) {
        loop_detach(c);
        c->state = CS_WORK;
        c->step = STEP_HEAD;
        c->qnext = on_loop->out;
        on_loop->out = c;
}

static void plain_close(struct conn *c, int status) {
        if (status > 0)
                respond(c, status, status_text(status), c->q.reason);
        /* what the client sent after the body and we did not read yet: read
         * and dropped, so closing does not reset the connection under the answer */
        char scratch[4096];
        for (int i = 0; i < 16 && !c->client_eof; i++) {
                ssize_t n = recv(c->cfd, scratch, sizeof scratch, MSG_DONTWAIT);
                if (n <= 0)
                        break;
                c->body.dropped += (uint64_t)n;
        }
        if (c->body.dropped)
                note(&c->q, "%llu bytes after the request not forwarded (one request per connection)",
                     (unsigned long long)c->body.dropped);
}

static void tunnel_run(struct conn *c, uint32_t cev, uint32_t uev);

/* Answers status with q->reason and ends the connection (loop side). */
static void loop_refuse(struct conn *c, int status) {
        plain_close(c, status);
        loop_end(c);
}

/* One round of a spliced plain-HTTP request (plain TCP, no chunked body):
 * the head (rewritten, in c->ub) goes first, then the body, at most its
 * Content-Length, flows client -> pipe -> upstream and the answer upstream ->
 * pipe -> client, never through user space. Bytes the client sends after
 * the body are read and dropped, never forwarded: one request per connection
 * (Connection: close upstream), so no second head is ever relayed without a
 * decision. Same contract as plain_step. */
static int plain_splice_step(struct conn *c, uint32_t cev, uint32_t uev, uint32_t *cwant, uint32_t *uwant,
                             int *status) {
        struct request *q = &c->q;
        struct half *up = &c->up, *down = &c->down;
        uint64_t before = up->moved + down->moved + c->ub_off;
        *cwant = *uwant = 0;
        if (c->ub_off < c->ub_len) {
                ssize_t n = send(c->ufd, c->ub + c->ub_off, c->ub_len - c->ub_off, MSG_NOSIGNAL);
                if (n > 0) {
                        c->ub_off += (size_t)n;
                        q->bytes_up += (uint64_t)n;
                } else if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        *uwant |= EPOLLOUT;
                else
                        c->up_wdead = true; /* an early answer (413, 401) may still come */
        }
        bool head_sent = c->ub_off == c->ub_len && !c->up_wdead;
        bool cr = cev & (EPOLLIN | EPOLLHUP | EPOLLERR), cw = cev & (EPOLLOUT | EPOLLERR);
        bool ur = uev & (EPOLLIN | EPOLLHUP | EPOLLERR), uw = uev & (EPOLLOUT | EPOLLERR);
        if (head_sent && !up->eof && half_step(up, cr, true) < 0) {
                if (!up->werr) {
                        *status = -1; /* the client is gone */
                        return 0;
                }
                c->up_wdead = true;
        } else if (head_sent && up->in_pipe > 0 && uw && half_step(up, false, true) < 0)
                c->up_wdead = true;
        if (up->eof && up->limit > 0) {
                deny(q, "client closed before the request body ended");
                *status = -1;
                return 0;
        }
        if (up->eof && cr && !c->client_eof) {
                char scratch[4096];
                ssize_t n = recv(c->cfd, scratch, sizeof scratch, MSG_DONTWAIT);
                if (n > 0 && !c->up_wdead)
                        c->body.dropped += (uint64_t)n;
                else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                        c->client_eof = true;
        }
        int r = half_step(down, ur, cw);
        if (r < 0) {
                if (down->werr) {
                        *status = -1; /* the client is gone */
                        return 0;
                }
                note(q, "upstream connection failed: %s", strerror(-r));
                down->eof = true; /* what the pipe holds still goes to the client */
        }
        c->up_eof = down->eof;
        if (c->up_eof && down->in_pipe == 0) {
                if (q->bytes_down == 0) {
                        note(q, "upstream closed without an answer");
                        *status = 502;
                } else
                        *status = 0;
                return 0;
        }
        if (up->moved + down->moved + c->ub_off != before)
                c->last_mono = time_mono_us();
        if (head_sent && !c->up_wdead) {
                if (!up->eof && up->in_pipe < up->pipe_size)
                        *cwant |= EPOLLIN;
                if (up->in_pipe > 0)
                        *uwant |= EPOLLOUT;
        }
        if ((up->eof || c->up_wdead) && !c->client_eof)
                *cwant |= EPOLLIN;
        if (!c->up_eof && down->in_pipe < down->pipe_size)
                *uwant |= EPOLLIN;
        if (down->in_pipe > 0)
                *cwant |= EPOLLOUT;
        if (!*cwant && !*uwant) {
                *status = -1; /* nothing can move: should not happen */
                return 0;
        }
        return 1;
}

static void plain_run(struct conn *c, uint32_t cev, uint32_t uev) {
        uint32_t cw = 0, uw = 0;
        int status = 0, r;
        if (!c->splice)
                r = plain_step(c, &cw, &uw, &status);
        else
                /* a bulk body or answer splices a few rounds before the next
                 * epoll_wait, as a tunnel does (tunnel_run): a non-blocking
                 * splice() takes only what one pass over the socket finds */
                for (int round = 0;; round++) {
                        struct half *up = &c->up, *down = &c->down;
                        uint64_t moved = up->moved + down->moved + c->ub_off;
                        r = plain_splice_step(c, cev, uev, &cw, &uw, &status);
                        bool bulk_up = up->use_splice && !up->copy_small && !up->eof && !c->up_wdead;
                        bool bulk_down = down->use_splice && !down->copy_small && !down->eof;
                        if (r == 0 || round == RELAY_ROUNDS - 1 || up->moved + down->moved + c->ub_off == moved ||
                            !(bulk_up || bulk_down))
                                break;
                        cev = (bulk_up ? EPOLLIN : 0) | (down->in_pipe > 0 ? EPOLLOUT : 0);
                        uev = (bulk_down ? EPOLLIN : 0) | (up->in_pipe > 0 ? EPOLLOUT : 0);
                }
        if (r == 0) {
                plain_close(c, status);
                loop_end(c);
        } else if (watch_set(&c->wc, cw) < 0 || watch_set(&c->wu, uw) < 0) {
                plain_close(c, -1);
                loop_end(c);
        }
}

/* One direction of a spliced plain request: a pipe when there is something
 * to move (no pipe for an empty body) and the run's fd budget has room for
 * its two fds (charged), else RELAY_BUF of the buffer memory the request was
 * charged: a full fd budget makes a request copy, never refuses it. */
static int plain_half(struct conn *c, struct half *h, int from, int to, int64_t limit, uint64_t *bytes) {
        char why[200];
        bool with_pipe = limit != 0 && budget_charge(c, 2, 0, why, sizeof why) == 0;
        return half_init(h, from, to, limit, bytes, RELAY_BUF, with_pipe);
}

/* The request's head (and the body bytes that came with it) go upstream
 * first, from c->ub; then the relay (loop). */
static void plain_begin(struct conn *c) {
        struct request *q = &c->q;
        size_t hl = 0;
        json_t *added = NULL;
        _cleanup_free_ char *head = build_upstream_head(c->run, c->rq, q->tls ? c->origin : NULL, &hl, &added);
        size_t cap = hl + c->first > RELAY_BUF ? hl + c->first : RELAY_BUF;
        c->ub = head ? malloc(cap) : NULL;
        bool ok = c->ub != NULL;
        if (ok && c->splice) {
                const struct body *b = &c->body;
                int64_t limit = b->kind == BODY_LENGTH && !b->done ? (int64_t)b->left : 0;
                ok = plain_half(c, &c->up, c->cfd, c->ufd, limit, &q->bytes_up) == 0 &&
                     plain_half(c, &c->down, c->ufd, c->cfd, -1, &q->bytes_down) == 0;
                if (limit == 0)
                        c->up.eof = c->up.shut = true;
        } else if (ok)
                ok = (c->db = malloc(RELAY_BUF)) != NULL;
        if (!ok) {
                json_decref(added);
                note(q, "could not send the request upstream");
                loop_refuse(c, 502);
                return;
        }
        memcpy(c->ub, head, hl);
        memcpy(c->ub + hl, c->buf + c->head_len, c->first);
        c->ub_off = 0;
        c->ub_len = hl + c->first;
        if (q->tls)
                q->secret_headers = TAKE_PTR(added);
        json_decref(added);
        c->state = CS_PLAIN;
        q->relay = c->splice && c->down.use_splice && (c->up.use_splice || c->up.eof) ? "splice" : "copy";
        c->last_mono = time_mono_us();
        plain_run(c, 0, 0);
}

/* True once proxy_run_stop began for c's run: a connection still being set
 * up ends instead. */
static bool run_closing(struct conn *c) {
        pthread_mutex_lock(&c->run->lock);
        bool closing = c->run->closing;
        pthread_mutex_unlock(&c->run->lock);
        return closing;
}

static void tls_run(struct conn *c) {
        short want = 0;
        int r = tls_handshake(&c->q, &c->u, &want);
        if (r == 0)
                plain_begin(c);
        else if (r != -EAGAIN)
                loop_refuse(c, r);
        else if (watch_set(&c->wu, want == POLLIN ? EPOLLIN : EPOLLOUT) < 0)
                loop_end(c);
}

/* The upstream connection is up: the tunnel (after its ClientHello), the
 * proxy's TLS to a secret header's origin, or the plain request. */
static void connected(struct conn *c) {
        struct request *q = &c->q;
        int one = 1;
        (void)setsockopt(c->ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (!peer_is(c->ufd, &c->addrs[c->i_addr])) {
                char t[INET6_ADDRSTRLEN];
                addr_format(&c->addrs[c->i_addr], t, sizeof t);
                deny(q, "the connected peer is not %s, the address that was checked", t);
                loop_refuse(c, 403);
                return;
        }
        q->allowed = true;
        if (c->rq->connect) {
                static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
                size_t extra = c->have - (size_t)c->head_len;
                memmove(c->buf, c->buf + c->head_len, extra);
                c->have = extra;
                /* a fresh socket's empty send buffer takes these bytes at once */
                if (send(c->cfd, ok, STRLEN(ok), MSG_NOSIGNAL) != (ssize_t)STRLEN(ok)) {
                        loop_end(c);
                        return;
                }
                ssize_t peeked = hello_verdict(c);
                if (peeked == -EAGAIN) {
                        c->state = CS_HELLO;
                        c->deadline_mono = time_mono_us() + (int64_t)PROXY_HELLO_TIMEOUT_MS * 1000;
                        /* the upstream already watched for what the tunnel will
                         * want of it (tunnel_run): one epoll_ctl fewer per
                         * tunnel; an upstream speaking first is set aside until
                         * the ClientHello (loop_event) */
                        if (watch_set(&c->wu, EPOLLIN) < 0 || watch_set(&c->wc, EPOLLIN) < 0)
                                loop_end(c);
                } else if (peeked < 0 || tunnel_begin(c, (size_t)peeked) < 0)
                        loop_end(c);
                else
                        tunnel_run(c, 0, 0);
                return;
        }
        c->u.fd = c->ufd;
        if (q->tls) {
                int status = tls_setup(q, &c->u, c->chk.literal);
                if (status) {
                        loop_refuse(c, status);
                        return;
                }
                c->state = CS_TLS;
                c->deadline_mono = time_mono_us() + (int64_t)PROXY_CONNECT_TIMEOUT_MS * 1000;
                tls_run(c);
                return;
        }
        plain_begin(c);
}

static void connect_failed(struct conn *c, int err) {
        struct request *q = &c->q;
        q->allowed = true;
        snprintf(q->reason, sizeof q->reason, "could not connect to %s:%u: %s", q->host, q->port, strerror(err));
        loop_refuse(c, err == ETIMEDOUT ? 504 : 502);
}

/* Non-blocking connects from c->addrs[c->i_addr] on, in the event loop: the
 * loop sees completion as EPOLLOUT (connect_event) and the deadline on its
 * tick, so a black-holed address holds no thread. */
static void connect_next(struct conn *c) {
        for (; c->i_addr < c->n_addrs; c->i_addr++) {
                struct sockaddr_storage *a = &c->addrs[c->i_addr];
                socklen_t len;
                if (a->ss_family == AF_INET) {
                        ((struct sockaddr_in *)a)->sin_port = htons(c->q.port);
                        len = sizeof(struct sockaddr_in);
                } else {
                        ((struct sockaddr_in6 *)a)->sin6_port = htons(c->q.port);
                        len = sizeof(struct sockaddr_in6);
                }
                int fd = socket(a->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (fd < 0) {
                        c->connect_err = errno;
                        continue;
                }
                watch_del(&c->wu);
                set_upstream(c, fd);
                c->wu = (struct watch){.kind = W_UPSTREAM, .owner = c, .fd = fd};
                if (connect(fd, (struct sockaddr *)a, len) == 0) {
                        connected(c);
                        return;
                }
                if (errno == EINPROGRESS) {
                        if (watch_set(&c->wu, EPOLLOUT) < 0)
                                loop_end(c);
                        return;
                }
                c->connect_err = errno;
        }
        connect_failed(c, c->connect_err);
}

static void connect_event(struct conn *c, uint32_t ev) {
        if (run_closing(c)) {
                note(&c->q, "the run ended while connecting");
                loop_end(c);
                return;
        }
        /* a failed connect reports EPOLLERR; only then is SO_ERROR asked
         * (peer_is checks the connection either way) */
        int err = 0;
        socklen_t el = sizeof err;
        if ((ev & (EPOLLERR | EPOLLHUP) || !(ev & EPOLLOUT)) &&
            getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
                err = errno;
        if (err == 0) {
                connected(c);
                return;
        }
        c->connect_err = err;
        c->i_addr++;
        connect_next(c);
}

static void tunnel_run(struct conn *c, uint32_t cev, uint32_t uev) {
        struct half *up = &c->up, *down = &c->down;
        uint64_t before = up->moved + down->moved;
        bool cr = cev & (EPOLLIN | EPOLLHUP | EPOLLERR), cw = cev & (EPOLLOUT | EPOLLERR);
        bool ur = uev & (EPOLLIN | EPOLLHUP | EPOLLERR), uw = uev & (EPOLLOUT | EPOLLERR);
        for (int round = 0;; round++) {
                uint64_t moved = up->moved + down->moved;
                /* both shut: loop_end closes both at once (half_step) */
                up->closing = down->shut;
                bool up_ok = half_step(up, cr, uw) >= 0;
                down->closing = up->shut;
                if (!up_ok || half_step(down, ur, cw) < 0 || (down->shut && up->shut)) {
                        loop_end(c);
                        return;
                }
                /* a non-blocking splice() takes what one pass over the socket
                 * finds (a blocking one goes on while data comes): a spliced
                 * direction reads again before the next epoll_wait, a few
                 * rounds at most so other connections get their turn; small
                 * (copied) exchanges do not, an extra read would only find
                 * EAGAIN */
                bool bulk_up = up->use_splice && !up->copy_small && !up->eof;
                bool bulk_down = down->use_splice && !down->copy_small && !down->eof;
                if (round == RELAY_ROUNDS - 1 || up->moved + down->moved == moved || !(bulk_up || bulk_down))
                        break;
                cr = bulk_up, uw = up->in_pipe > 0, ur = bulk_down, cw = down->in_pipe > 0;
        }
        if (up->moved + down->moved != before)
                c->last_mono = time_mono_us();
        size_t up_room = up->use_splice ? RELAY_PIPE_SIZE - up->in_pipe : up->in_pipe == 0;
        size_t down_room = down->use_splice ? RELAY_PIPE_SIZE - down->in_pipe : down->in_pipe == 0;
        uint32_t cm = 0, um = 0;
        if (!up->eof && up_room)
                cm |= EPOLLIN;
        if (down->in_pipe > 0)
                cm |= EPOLLOUT;
        if (!down->eof && down_room)
                um |= EPOLLIN;
        if (up->in_pipe > 0)
                um |= EPOLLOUT;
        if (watch_set(&c->wc, cm) < 0 || watch_set(&c->wu, um) < 0)
                loop_end(c);
}

static void head_run(struct conn *c) {
        for (;;) {
                ssize_t n = recv(c->cfd, c->buf + c->have, PROXY_HEAD_MAX - c->have, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n == 0 && c->have == 0) {
                        c->q.emitted = true; /* opened and closed: not a request */
                        loop_end(c);
                        return;
                }
                if (n <= 0) {
                        c->head_err = -ECONNRESET;
                        loop_handoff(c);
                        return;
                }
                c->have += (size_t)n;
                c->head_len = http_head_length(c->buf, c->have, PROXY_HEAD_MAX);
                if (c->head_len != 0) {
                        loop_handoff(c);
                        return;
                }
        }
}

static void hello_run(struct conn *c) {
        for (;;) {
                ssize_t n = recv(c->cfd, c->buf + c->have, TLS_RECORD_MAX - c->have, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                ssize_t peeked;
                if (n == 0 && c->have == 0)
                        peeked = 0; /* the client closed without sending anything */
                else if (n <= 0) {
                        deny(&c->q, "client closed the tunnel during the TLS ClientHello");
                        loop_end(c);
                        return;
                } else {
                        c->have += (size_t)n;
                        peeked = hello_verdict(c);
                        if (peeked == -EAGAIN)
                                continue;
                }
                if (peeked < 0 || tunnel_begin(c, (size_t)peeked) < 0)
                        loop_end(c);
                else
                        tunnel_run(c, 0, 0);
                return;
        }
}

/* A connection comes (back) to the loop in c->state. */
static void loop_enter(struct conn *c) {
        c->leaving = false;
        c->lprev = NULL;
        c->lnext = on_loop->conns;
        if (on_loop->conns)
                on_loop->conns->lprev = c;
        on_loop->conns = c;
        c->wc = (struct watch){.kind = W_CLIENT, .owner = c, .fd = c->cfd};
        c->wu = (struct watch){.kind = W_UPSTREAM, .owner = c, .fd = c->ufd};
        switch (c->state) {
        case CS_HEAD:
                /* accepted just now: a client sends its head right after the
                 * handshake, so it is usually here already, and a head read
                 * at once saves adding the fd, a wait and removing it (issue
                 * 10 §4); watched only when it has not come (yet) */
                head_run(c);
                if (!c->leaving && watch_set(&c->wc, EPOLLIN) < 0)
                        loop_end(c);
                break;
        case CS_HELLO:
                if (watch_set(&c->wc, EPOLLIN) < 0)
                        loop_end(c);
                break;
        case CS_CONNECT:
                connect_next(c);
                break;
        case CS_TUNNEL:
                tunnel_run(c, 0, 0);
                break;
        case CS_PLAIN:
                plain_run(c, 0, 0);
                break;
        case CS_TLS:
        case CS_RESOLVE:
        case CS_WORK:
                break;
        }
}

static void loop_event(struct watch *w, uint32_t ev) {
        struct conn *c = w->owner;
        if (c->leaving)
                return;
        if (ev & (EPOLLHUP | EPOLLERR))
                w->hup = true;
        switch (c->state) {
        case CS_HEAD:
                head_run(c);
                break;
        case CS_HELLO:
                if (w == &c->wu) {
                        if (watch_set(&c->wu, 0) < 0)
                                loop_end(c);
                        break;
                }
                hello_run(c);
                break;
        case CS_CONNECT:
                if (w == &c->wu)
                        connect_event(c, ev);
                break;
        case CS_TLS:
                tls_run(c);
                break;
        case CS_TUNNEL:
                tunnel_run(c, w == &c->wc ? ev : 0, w == &c->wu ? ev : 0);
                break;
        case CS_PLAIN:
                plain_run(c, w == &c->wc ? ev : 0, w == &c->wu ? ev : 0);
                break;
        case CS_RESOLVE:
        case CS_WORK:
                break;
        }
}

/* Deadlines: heads, ClientHellos, idle relays, and approvals. */
static void loop_tick(void) {
        int64_t now = time_mono_us(), idle_us = (int64_t)g.cfg.idle_timeout_ms * 1000;
        for (struct conn *c = on_loop->conns, *next; c; c = next) {
                next = c->lnext;
                switch (c->state) {
                case CS_HEAD:
                        if (now >= c->deadline_mono) {
                                c->head_err = -ETIMEDOUT;
                                loop_handoff(c);
                        }
                        break;
                case CS_HELLO:
                        if (now >= c->deadline_mono) {
                                deny(&c->q, "no complete TLS ClientHello within %d s", PROXY_HELLO_TIMEOUT_MS / 1000);
                                loop_end(c);
                        }
                        break;
                case CS_CONNECT:
                case CS_TLS:
                        if (run_closing(c)) {
                                note(&c->q, "the run ended while connecting");
                                loop_end(c);
                        } else if (now >= c->deadline_mono && c->state == CS_CONNECT)
                                connect_failed(c, ETIMEDOUT);
                        else if (now >= c->deadline_mono) {
                                note(&c->q, "TLS handshake with https://%s:%u timed out", c->q.host, c->q.port);
                                loop_refuse(c, 504);
                        }
                        break;
                case CS_TUNNEL:
                case CS_PLAIN:
                        if (now - c->last_mono >= idle_us) {
                                note(&c->q, "idle for %d s, closed", g.cfg.idle_timeout_ms / 1000);
                                if (c->state == CS_PLAIN)
                                        plain_close(c, c->q.bytes_down ? -1 : 504);
                                loop_end(c);
                        }
                        break;
                case CS_RESOLVE:
                case CS_WORK:
                        break;
                }
        }
        if (on_loop != &g.loops[0])
                return; /* the parked approvals: the first loop's */
        pthread_mutex_lock(&g.lock);
        for (struct proxy_run *pr = g.runs; pr; pr = pr->next) {
                pthread_mutex_lock(&pr->lock);
                for (struct conn **p = &pr->waiters; *p;) {
                        struct conn *c = *p;
                        if (now >= c->approval_deadline) {
                                *p = c->wnext;
                                c->wnext = NULL;
                                work_push(c);
                        } else
                                p = &c->wnext;
                }
                pthread_mutex_unlock(&pr->lock);
        }
        pthread_mutex_unlock(&g.lock);
}

static void accept_some(struct proxy_run *pr);

/* A complete head, after the batch of events that read it (c is off the
 * loop's sets, no later event of the batch points at it): the loop takes the
 * decision itself (work_head: parsing and the policy are CPU only) and
 * connects an allowed literal, or a name the run resolved less than
 * NAME_CACHE_US ago, at once, or queues another name for a resolver;
 * every step that may block goes to a worker: a failed or timed-out head,
 * an answer to write (conn_refuse), an approval to ask for (work_resolve).
 * This saves a new tunnel two thread hand-overs (issue 10 §4). */
static void loop_decide(struct conn *c) {
        if (c->step != STEP_HEAD || c->head_err || c->head_len < 0) {
                work_push(c);
                return;
        }
        work_head(c);
}

/* Enters the loop what the workers and the resolvers handed it (its inbox). */
static void loop_take_inbox(void) {
        /* twice per turn of the loop, mostly empty: no lock for that */
        struct conn *in = atomic_exchange(&on_loop->inbox, NULL);
        for (struct conn *c = in, *next; c; c = next) {
                next = c->qnext;
                c->qnext = NULL;
                loop_enter(c);
        }
}

static void *loop_thread(void *userdata) {
        on_loop = userdata;
        struct epoll_event evs[256];
        int64_t next_tick = 0;
        for (;;) {
                int n = epoll_wait(on_loop->epfd, evs, ELEMENTSOF(evs), LOOP_TICK_MS);
                if (n < 0 && errno != EINTR) {
                        log_error("egress proxy: epoll_wait failed: %m");
                        return NULL;
                }
                for (int i = 0; i < n; i++) {
                        uint64_t tag = evs[i].data.u64;
                        if (tag & LISTEN_TAG) {
                                /* the run may have stopped since epoll_wait returned */
                                pthread_mutex_lock(&g.lock);
                                struct proxy_run *pr = g.runs;
                                while (pr && pr->serial != (tag & ~LISTEN_TAG))
                                        pr = pr->next;
                                if (pr)
                                        accept_some(pr);
                                pthread_mutex_unlock(&g.lock);
                                for (struct conn *c = on_loop->fresh, *next; c; c = next) {
                                        next = c->qnext;
                                        c->qnext = NULL;
                                        loop_enter(c);
                                }
                                on_loop->fresh = NULL;
                        } else if (!evs[i].data.ptr) {
                                uint64_t v;
                                (void)!read(on_loop->wake_fd, &v, sizeof v);
                        } else
                                loop_event(evs[i].data.ptr, evs[i].events);
                }
                loop_take_inbox();
                int64_t now = time_mono_us();
                if (now >= next_tick) {
                        loop_tick();
                        next_tick = now + LOOP_TICK_MS * 1000;
                }
                for (struct conn *c = on_loop->out, *next; c; c = next) {
                        next = c->qnext;
                        loop_decide(c);
                }
                on_loop->out = NULL;
                /* what loop_decide allowed is to connect now, not after the next wait */
                loop_take_inbox();
                for (struct conn *c = on_loop->dead, *next; c; c = next) {
                        next = c->qnext;
                        conn_free(c);
                }
                on_loop->dead = NULL;
        }
        return NULL;
}

/* Answers a connection refused at accept time without blocking the event
 * loop (best effort: a client that sent nothing yet may see a reset) and
 * counts it; the run's refusals are reported as one aggregated egress event
 * at most once a second (REFUSAL_REPORT_US) and when the run stops, so a
 * flood of connections cannot flood the event stream. */
static void refuse_at_accept(struct proxy_run *pr, int fd, int status, const char *why) {
        char msg[512];
        int n = snprintf(msg, sizeof msg,
                         "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
                         "Connection: close\r\nRetry-After: 1\r\nX-Paddock-Egress: error\r\n\r\n"
                         "paddock egress proxy: %s\n",
                         status, status == 429 ? "Too Many Requests" : "Service Unavailable",
                         strlen("paddock egress proxy: \n") + strlen(why), why);
        if (n > 0)
                (void)!send(fd, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        shutdown(fd, SHUT_WR);
        close(fd);
        metric_add(&metric_refused, 1);
        pr->refused_unreported++;
        snprintf(pr->refused_reason, sizeof pr->refused_reason, "%s", why);
}

/* Under pr->lock: the aggregated refusal event due now (or at the end when
 * force), or NULL. */
static json_t *refusal_report(struct proxy_run *pr, bool force) {
        int64_t now = time_mono_us();
        if (!pr->refused_unreported || (!force && now < pr->refused_next_report_mono))
                return NULL;
        json_t *d = json_pack("{s:s,s:i,s:s,s:I,s:I,s:f,s:s,s:s,s:s,s:I}", "host", "", "port", 0, "method", "",
                              "bytes_up", (json_int_t)0, "bytes_down", (json_int_t)0, "duration_ms", 0.0, "decision",
                              "deny", "rule", "budget", "reason", pr->refused_reason, "refused",
                              (json_int_t)pr->refused_unreported);
        log_ctx(LOG_WARN, LOG_KV("run", pr->run_id), "egress connections refused: %llu (%s)",
                (unsigned long long)pr->refused_unreported, pr->refused_reason);
        pr->refused_unreported = 0;
        pr->refused_next_report_mono = now + REFUSAL_REPORT_US;
        return d;
}

/* Accepts and closes one pending connection with the spare fd, so a process
 * out of fds does not spin on a listener that stays readable. */
static void shed_one(struct proxy_run *pr) {
        if (g.spare_fd < 0)
                return;
        close(g.spare_fd);
        int fd = accept4(pr->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
                pthread_mutex_lock(&pr->lock);
                refuse_at_accept(pr, fd, 503, "the node is out of file descriptors");
                pthread_mutex_unlock(&pr->lock);
        }
        g.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Called by an event loop under g.lock: accepts up to ACCEPT_BATCH
 * connections, which this loop keeps (the listener stays ready for the
 * rest, level-triggered). */
static void accept_some(struct proxy_run *pr) {
        for (int n = 0; n < ACCEPT_BATCH; n++) {
                int fd = accept4(pr->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno == EMFILE || errno == ENFILE)
                                shed_one(pr);
                        break; /* EAGAIN */
                }
                pthread_mutex_lock(&pr->lock);
                char why[160] = "";
                int status = 0;
                if (pr->closing)
                        status = 503, snprintf(why, sizeof why, "the run is ending");
                else if (pr->n_conns >= g.cfg.run_max_conns)
                        status = 429, snprintf(why, sizeof why,
                                               "egress budget of this run exhausted: %u connections open",
                                               pr->n_conns);
                else if (pr->n_fds + 1 > g.cfg.run_max_fds)
                        status = 429, snprintf(why, sizeof why,
                                               "egress budget of this run exhausted: %u of %u fds in use", pr->n_fds,
                                               g.cfg.run_max_fds);
                else if (pr->n_bytes + HEAD_BUF > g.cfg.run_max_buffer_bytes)
                        status = 429, snprintf(why, sizeof why,
                                               "egress budget of this run exhausted: %zu KiB of buffers in use",
                                               pr->n_bytes / 1024);
                else if (atomic_load(&g.conns) >= g.cfg.node_max_conns)
                        status = 503, snprintf(why, sizeof why,
                                               "egress budget of the node exhausted: %u connections open",
                                               atomic_load(&g.conns));
                else if (atomic_load(&g.fds) + 1 > g.max_fds)
                        status = 503, snprintf(why, sizeof why, "egress budget of the node exhausted: %u fds in use",
                                               atomic_load(&g.fds));
                struct conn *c = status ? NULL : calloc(1, sizeof *c);
                if (c && !(c->buf = malloc(HEAD_BUF))) {
                        free(c);
                        c = NULL;
                }
                if (!status && !c)
                        status = 503, snprintf(why, sizeof why, "out of memory");
                if (status) {
                        refuse_at_accept(pr, fd, status, why);
                        json_t *report = refusal_report(pr, false);
                        pthread_mutex_unlock(&pr->lock);
                        emit(pr, "egress", report, false);
                        continue;
                }
                char *head_buf = c->buf;
                *c = (struct conn){.run = pr, .loop = on_loop, .cfd = fd, .ufd = -1, .next = pr->conns, .fds = 1, .bytes = HEAD_BUF,
                                   .buf = head_buf, .state = CS_HEAD, .u = {.fd = -1},
                                   .up = {.pipe = {-1, -1}}, .down = {.pipe = {-1, -1}}};
                c->q = (struct request){.c = c, .started_mono = time_mono_us()};
                c->deadline_mono = c->q.started_mono + (int64_t)PROXY_HEAD_TIMEOUT_MS * 1000;
                if (pr->conns)
                        pr->conns->prev = c;
                pr->conns = c;
                pr->n_conns++;
                pr->n_fds += 1;
                pr->n_bytes += HEAD_BUF;
                atomic_fetch_add(&g.fds, 1);
                atomic_fetch_add(&g.conns, 1);
                metric_add(&metric_conns, 1);
                json_t *report = refusal_report(pr, false);
                pthread_mutex_unlock(&pr->lock);
                emit(pr, "egress", report, false);
                /* no thread of its own: the loop that accepted it relays it,
                 * from its head on, after g.lock (the run lives while c is
                 * registered on it) */
                c->qnext = on_loop->fresh;
                on_loop->fresh = c;
        }
}

static int ensure_started(void) {
        if (g.started)
                return 0;
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        unsigned want = g.cfg.loops ? g.cfg.loops
                        : cpus < 1 ? 1 : cpus > PROXY_LOOPS_DEFAULT_MAX ? PROXY_LOOPS_DEFAULT_MAX : (unsigned)cpus;
        if (want > PROXY_LOOPS_MAX)
                want = PROXY_LOOPS_MAX;
        /* the threads live as long as the process: a fixed number, whatever
         * the number of connections */
        for (; g.n_loops < want; g.n_loops++) {
                struct loop *l = &g.loops[g.n_loops];
                l->epfd = epoll_create1(EPOLL_CLOEXEC);
                l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
                int r = l->epfd < 0 || l->wake_fd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wake_fd, &ev) < 0
                                ? -errno
                                : -pthread_create(&l->thread, NULL, loop_thread, l);
                if (r < 0) {
                        if (l->wake_fd >= 0)
                                close(l->wake_fd);
                        if (l->epfd >= 0)
                                close(l->epfd);
                        if (g.n_loops == 0)
                                return r;
                        break; /* fewer loops than cores is still correct */
                }
                pthread_detach(l->thread);
                /* named, so top -H and perf tell the loops from the decisions */
                (void)pthread_setname_np(l->thread, "egress-loop");
        }
        for (int i = 0; i < PROXY_WORKERS + PROXY_RESOLVERS; i++) {
                pthread_t t;
                int r = pthread_create(&t, NULL, i < PROXY_WORKERS ? worker_thread : resolver_thread, NULL);
                if (r != 0)
                        return -r; /* the loop runs; fewer workers than planned is still correct */
                (void)pthread_setname_np(t, i < PROXY_WORKERS ? "egress-decide" : "egress-resolve");
                pthread_detach(t);
        }
        g.started = true;
        return 0;
}

int proxy_run_start(const char *run_id, const char *netns_path, const Paddock__V1__EgressPolicy *policy,
                    proxy_event_fn on_event, void *userdata, struct proxy_run **ret, struct err_detail *reterr) {
        _cleanup_free_ struct proxy_run *pr = calloc(1, sizeof *pr);
        if (!pr)
                return -ENOMEM;
        snprintf(pr->run_id, sizeof pr->run_id, "%s", run_id);
        pr->on_event = on_event;
        pr->userdata = userdata;
        pr->listen_fd = -1;
        int r = egress_policy_compile(policy, &pr->policy, reterr);
        if (r < 0)
                return r;
        char what[64];
        uint16_t port = 0;
        int fd = netns_listen_loopback(netns_path, netns_path ? PROXY_PORT : 0, 1024, &port, what, sizeof what);
        if (fd < 0) {
                egress_policy_free(pr->policy);
                return err_set(reterr, fd, "proxy", "egress proxy %s failed: %s", what, strerror(-fd));
        }
        pr->listen_fd = fd;
        pr->port = port;
        /* accepted sockets inherit TCP_NODELAY from the listener: one
         * setsockopt per run instead of one per connection */
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_mutex_init(&pr->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&pr->cond, &ca);
        pthread_condattr_destroy(&ca);

        pthread_mutex_lock(&g.lock);
        r = ensure_started();
        pr->serial = ++g.next_serial;
        /* every loop waits on it; EPOLLEXCLUSIVE wakes one idle loop per
         * connection (not all of them), which accepts and relays it */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = LISTEN_TAG | pr->serial};
        for (unsigned i = 0; r >= 0 && i < g.n_loops; i++)
                if (epoll_ctl(g.loops[i].epfd, EPOLL_CTL_ADD, pr->listen_fd, &ev) < 0)
                        r = -errno;
        if (r < 0) {
                for (unsigned i = 0; i < g.n_loops; i++)
                        (void)epoll_ctl(g.loops[i].epfd, EPOLL_CTL_DEL, pr->listen_fd, NULL);
                pthread_mutex_unlock(&g.lock);
                close(pr->listen_fd);
                egress_policy_free(pr->policy);
                pthread_mutex_destroy(&pr->lock);
                pthread_cond_destroy(&pr->cond);
                return err_set(reterr, r, "proxy", "cannot serve the egress proxy: %s", strerror(-r));
        }
        pr->next = g.runs;
        g.runs = pr;
        pthread_mutex_unlock(&g.lock);
        log_ctx(LOG_DEBUG, LOG_KV("run", pr->run_id), "egress proxy listening");
        *ret = TAKE_PTR(pr);
        return 0;
}

int proxy_run_port(const struct proxy_run *pr) { return pr->port; }

void proxy_run_set_policy(struct proxy_run *pr, proxy_policy_fn fn, void *userdata, uint32_t ask_timeout_s) {
        pr->decide = fn;
        pr->decide_userdata = userdata;
        pr->decide_ask_timeout_s = ask_timeout_s;
}

void proxy_run_set_headers(struct proxy_run *pr, const struct proxy_header *headers, size_t n) {
        pthread_mutex_lock(&pr->lock);
        pr->headers = headers;
        pr->n_headers = n;
        pthread_mutex_unlock(&pr->lock);
}

struct proxy_run *proxy_run_stop(struct proxy_run *pr) {
        if (!pr)
                return NULL;
        pthread_mutex_lock(&g.lock);
        for (struct proxy_run **p = &g.runs; *p; p = &(*p)->next)
                if (*p == pr) {
                        *p = pr->next;
                        break;
                }
        for (unsigned i = 0; i < g.n_loops; i++)
                (void)epoll_ctl(g.loops[i].epfd, EPOLL_CTL_DEL, pr->listen_fd, NULL);
        pthread_mutex_unlock(&g.lock);
        close(pr->listen_fd);

        pthread_mutex_lock(&pr->lock);
        pr->closing = true;
        for (struct approval *a = pr->approvals; a; a = a->next)
                if (a->state == APPROVAL_PENDING) {
                        a->state = APPROVAL_DENIED;
                        snprintf(a->by, sizeof a->by, "run_ended");
                }
        unpark_locked(pr, NULL);
        for (struct conn *c = pr->conns; c; c = c->next) {
                shutdown(c->cfd, SHUT_RDWR);
                if (c->ufd >= 0)
                        shutdown(c->ufd, SHUT_RDWR);
        }
        while (pr->n_conns > 0)
                pthread_cond_wait(&pr->cond, &pr->lock);
        json_t *report = refusal_report(pr, true);
        pthread_mutex_unlock(&pr->lock);
        emit(pr, "egress", report, false);

        /* decisions no waiter announced (the client gave up, or the run ended) */
        for (struct approval *a = pr->approvals, *next; a; a = next) {
                next = a->next;
                if (!a->announced && a->state != APPROVAL_PENDING)
                        emit(pr, "approval_decided",
                             json_pack("{s:s,s:s,s:s}", "approval_id", a->id, "decision",
                                       a->state == APPROVAL_APPROVED ? "approve" : "deny", "by", a->by),
                             true);
                free(a);
        }
        egress_policy_free(pr->policy);
        free(pr->names);
        pthread_mutex_destroy(&pr->lock);
        pthread_cond_destroy(&pr->cond);
        log_ctx(LOG_DEBUG, LOG_KV("run", pr->run_id), "egress proxy stopped");
        free(pr);
        return NULL;
}

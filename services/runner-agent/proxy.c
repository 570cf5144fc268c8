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
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/ids.h"
#include "core/log.h"
#include "core/macro.h"
#include "core/timeutil.h"
#include "net/addr_policy.h"
#include "net/http_parse.h"
#include "net/tls_sni.h"
#include "proxy_policy.h"

#define RELAY_PIPE_SIZE (256 * 1024)
#define CONN_STACK_SIZE (256 * 1024)
#define MAX_ADDRS 16

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

struct conn {
        struct proxy_run *run;
        int cfd, ufd;               /* client, upstream; registered for shutdown by proxy_run_stop */
        struct conn *prev, *next;
};

struct proxy_run {
        char run_id[UUID_STR_LEN];
        struct egress_policy *policy;
        proxy_event_fn on_event;
        void *userdata;
        int listen_fd, port;

        pthread_mutex_t lock;       /* guards everything below */
        pthread_cond_t cond;        /* approvals decided, connections gone */
        bool closing;
        struct conn *conns;
        unsigned n_conns;
        struct approval *approvals;
        const struct proxy_header *headers;
        size_t n_headers;

        struct proxy_run *next;     /* in g.runs, under g.lock */
};

/* The accept thread and the run registry of the process. */
static struct {
        pthread_mutex_t lock;
        bool started;
        int epfd;
        pthread_t thread;
        struct proxy_run *runs;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER, .epfd = -1};

/* ---- small I/O helpers (non-blocking fds, poll with deadlines) ---- */

static int wait_fd(int fd, short events, int64_t deadline_mono) {
        for (;;) {
                int64_t left = (deadline_mono - time_mono_us()) / 1000;
                if (left <= 0)
                        return -ETIMEDOUT;
                struct pollfd p = {.fd = fd, .events = events};
                int r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r > 0)
                        return (p.revents & (POLLERR | POLLNVAL)) && !(p.revents & events) ? -ECONNRESET : 0;
        }
}

static int write_all(int fd, const void *buf, size_t len, int64_t deadline_mono) {
        const char *p = buf;
        while (len > 0) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
                if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                        int r = wait_fd(fd, POLLOUT, deadline_mono);
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
static ssize_t read_some(int fd, void *buf, size_t len, int64_t deadline_mono) {
        for (;;) {
                ssize_t n = recv(fd, buf, len, 0);
                if (n >= 0)
                        return n;
                if (errno != EAGAIN && errno != EINTR)
                        return -errno;
                int r = wait_fd(fd, POLLIN, deadline_mono);
                if (r < 0)
                        return r;
        }
}

/* ---- one request's record, emitted as the egress event ---- */

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
};

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
static bool approval_wait(struct request *q) {
        struct proxy_run *pr = q->c->run;
        uint32_t timeout_s = pr->policy->ask_timeout_s;
        bool created = false;
        char id[UUID_STR_LEN];

        pthread_mutex_lock(&pr->lock);
        struct approval *a = approval_find(pr, q->host, q->port);
        if (!a) {
                a = calloc(1, sizeof *a);
                if (!a || id_new_uuid(a->id) < 0) {
                        pthread_mutex_unlock(&pr->lock);
                        free(a);
                        deny(q, "could not create an approval");
                        return false;
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
        int64_t deadline_mono = time_mono_us() + (int64_t)timeout_s * 1000000;
        if (created) {
                char ts[64];
                time_format_rfc3339(time_now_us() + (int64_t)timeout_s * 1000000, ts, sizeof ts);
                emit(pr, "approval_requested",
                     json_pack("{s:s,s:s,s:s,s:i,s:s,s:i}", "approval_id", id, "kind", "egress", "host", q->host,
                               "port", (int)q->port, "deadline", ts, "timeout_s", (int)timeout_s),
                     true);
                log_ctx(LOG_INFO, LOG_KV("run", pr->run_id, "approval", id, "host", q->host),
                        "egress destination waits for approval");
        }

        pthread_mutex_lock(&pr->lock);
        while (a->state == APPROVAL_PENDING && !pr->closing) {
                int64_t now = time_mono_us();
                if (now >= deadline_mono) {
                        a->state = APPROVAL_DENIED;
                        snprintf(a->by, sizeof a->by, "timeout");
                        break;
                }
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                int64_t left = deadline_mono - now;
                ts.tv_sec += left / 1000000;
                ts.tv_nsec += (left % 1000000) * 1000;
                if (ts.tv_nsec >= 1000000000) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&pr->cond, &pr->lock, &ts);
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
                return true;
        }
        if ((st == APPROVAL_PENDING && closing) || !strcmp(by, "run_ended"))
                deny(q, "run ended while approval %s was pending", id);
        else if (!strcmp(by, "timeout"))
                deny(q, "approval %s timed out after %u s", id, timeout_s);
        else
                deny(q, "denied by %s (approval %s)", by, id);
        return false;
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
                                pthread_cond_broadcast(&pr->cond);
                        }
                        break;
                }
        pthread_mutex_unlock(&pr->lock);
        pthread_mutex_unlock(&g.lock);
        log_ctx(decided ? LOG_INFO : LOG_DEBUG, LOG_KV("run", run_id, "approval", d->approval_id),
                decided ? "approval decided" : "approval decision ignored: unknown or already decided");
}

/* ---- resolution and upstream connection ---- */

static void addr_text(const struct sockaddr_storage *a, char *buf, size_t size) {
        if (a->ss_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, buf, (socklen_t)size);
        else if (a->ss_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, buf, (socklen_t)size);
        else
                snprintf(buf, size, "?");
}

/* Connects to a within the deadline; returns the non-blocking socket or a negative errno. */
static int connect_to(struct sockaddr_storage *a, uint16_t port, int64_t deadline_mono) {
        socklen_t len;
        if (a->ss_family == AF_INET) {
                ((struct sockaddr_in *)a)->sin_port = htons(port);
                len = sizeof(struct sockaddr_in);
        } else {
                ((struct sockaddr_in6 *)a)->sin6_port = htons(port);
                len = sizeof(struct sockaddr_in6);
        }
        _cleanup_close_ int fd = socket(a->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)a, len) < 0) {
                if (errno != EINPROGRESS)
                        return -errno;
                int r = wait_fd(fd, POLLOUT, deadline_mono);
                if (r < 0)
                        return r;
                int err = 0;
                socklen_t el = sizeof err;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
                        return -errno;
                if (err)
                        return -err;
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        return TAKE_FD(fd);
}

/* The addresses of the target: the literal, or what its name resolves to.
 * Returns 0, or the HTTP status to answer with q->reason filled. */
static int resolve_target(struct request *q, const struct egress_check *chk, struct sockaddr_storage *addrs,
                          size_t *ret_n) {
        size_t n = 0;
        if (chk->literal)
                addrs[n++] = chk->addr;
        else {
                /* Resolve the canonical spelling the rules matched (lower case, no
                 * trailing dot): "localhost." would otherwise skip /etc/hosts and
                 * go to the node's DNS server. */
                char name[256];
                size_t hl = strlen(q->host);
                if (hl == 0 || hl >= sizeof name) {
                        deny(q, "host name too long");
                        return 403;
                }
                for (size_t i = 0; i <= hl; i++)
                        name[i] = (char)tolower((unsigned char)q->host[i]);
                if (name[hl - 1] == '.')
                        name[hl - 1] = '\0';
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
 * is refused at once, no human asked. False with q->reason filled then. */
static bool askable(struct request *q, const struct egress_check *chk) {
        struct sockaddr_storage addrs[MAX_ADDRS], ok[MAX_ADDRS];
        size_t n = 0;
        int status = resolve_target(q, chk, addrs, &n);
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

/* Resolves (unless the target is a literal), keeps only the addresses the
 * policy permits and connects to the first that answers. On failure fills
 * q->reason and returns the HTTP status to answer (403 for policy, 502/504). */
static int open_upstream(struct request *q, const struct egress_check *chk, int *ret_fd) {
        struct sockaddr_storage addrs[MAX_ADDRS], ok[MAX_ADDRS];
        size_t n = 0;
        int status = resolve_target(q, chk, addrs, &n);
        if (status)
                return status;
        size_t n_ok = permitted_addrs(q, chk->literal, addrs, n, ok);
        if (n_ok == 0)
                return 403;
        int64_t deadline = time_mono_us() + (int64_t)PROXY_CONNECT_TIMEOUT_MS * 1000;
        int r = -EHOSTUNREACH;
        for (size_t i = 0; i < n_ok; i++) {
                r = connect_to(&ok[i], q->port, deadline);
                if (r >= 0) {
                        if (!peer_is(r, &ok[i])) {
                                char t[INET6_ADDRSTRLEN];
                                addr_text(&ok[i], t, sizeof t);
                                close(r);
                                deny(q, "the connected peer is not %s, the address that was checked", t);
                                return 403;
                        }
                        *ret_fd = r;
                        return 0;
                }
                if (r == -ETIMEDOUT)
                        break;
        }
        q->allowed = true;
        snprintf(q->reason, sizeof q->reason, "could not connect to %s:%u: %s", q->host, q->port, strerror(-r));
        return r == -ETIMEDOUT ? 504 : 502;
}

/* ---- relaying ---- */

struct half {
        int from, to;
        int pipe[2];
        size_t in_pipe;
        bool eof, shut;
        int64_t limit;        /* bytes still to read from `from`; -1 unlimited */
        uint64_t *bytes;
        bool use_splice;
        char *buf;            /* read/write fallback */
        size_t off;
};

/* Moves what is possible in one direction; returns <0 on a broken connection. */
static int half_step(struct half *h, bool readable, bool writable) {
        if (readable && !h->eof && h->in_pipe == 0) {
                size_t want = RELAY_PIPE_SIZE;
                if (h->limit >= 0 && (int64_t)want > h->limit)
                        want = (size_t)h->limit;
                ssize_t n;
                if (want == 0)
                        n = 0;
                else if (h->use_splice)
                        n = splice(h->from, NULL, h->pipe[1], NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                else
                        n = recv(h->from, h->buf, want, 0);
                if (n < 0 && errno != EAGAIN && errno != EINTR)
                        return -errno;
                if (n == 0)
                        h->eof = true;
                if (n > 0) {
                        h->in_pipe = (size_t)n;
                        h->off = 0;
                        if (h->limit >= 0)
                                h->limit -= n;
                        writable = true; /* try at once, saves a poll round trip */
                }
        }
        if (writable && h->in_pipe > 0) {
                ssize_t n;
                if (h->use_splice)
                        n = splice(h->pipe[0], NULL, h->to, NULL, h->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                else
                        n = send(h->to, h->buf + h->off, h->in_pipe, MSG_NOSIGNAL);
                if (n < 0 && errno != EAGAIN && errno != EINTR)
                        return -errno;
                if (n > 0) {
                        h->in_pipe -= (size_t)n;
                        h->off += (size_t)n;
                        *h->bytes += (uint64_t)n;
                }
        }
        if (h->eof && h->in_pipe == 0 && !h->shut) {
                h->shut = true;
                if (h->limit != 0)
                        shutdown(h->to, SHUT_WR);
        }
        return 0;
}

static int half_init(struct half *h, int from, int to, int64_t limit, uint64_t *bytes) {
        *h = (struct half){.from = from, .to = to, .pipe = {-1, -1}, .limit = limit, .bytes = bytes};
        if (pipe2(h->pipe, O_CLOEXEC | O_NONBLOCK) == 0) {
                (void)fcntl(h->pipe[0], F_SETPIPE_SZ, RELAY_PIPE_SIZE);
                h->use_splice = true;
                return 0;
        }
        h->buf = malloc(RELAY_PIPE_SIZE);
        return h->buf ? 0 : -ENOMEM;
}

static void half_done(struct half *h) {
        if (h->pipe[0] >= 0)
                close(h->pipe[0]);
        if (h->pipe[1] >= 0)
                close(h->pipe[1]);
        free(h->buf);
}

/* Relays client<->upstream until both directions ended (tunnel) or the
 * upstream finished its answer (plain HTTP: up_limit bytes of request body,
 * then the response until the upstream closes). */
static void relay(struct request *q, int64_t up_limit, bool until_upstream_eof) {
        struct conn *c = q->c;
        struct half up, down;
        if (half_init(&up, c->cfd, c->ufd, up_limit, &q->bytes_up) < 0 ||
            half_init(&down, c->ufd, c->cfd, -1, &q->bytes_down) < 0) {
                half_done(&up);
                half_done(&down);
                return;
        }
        for (;;) {
                if (down.shut && (up.shut || until_upstream_eof))
                        break;
                if (up.eof && up.in_pipe == 0 && up.limit == 0 && !until_upstream_eof && down.shut)
                        break;
                struct pollfd p[2] = {{.fd = c->cfd}, {.fd = c->ufd}};
                if (!up.eof && up.in_pipe == 0 && up.limit != 0)
                        p[0].events |= POLLIN;
                if (down.in_pipe > 0)
                        p[0].events |= POLLOUT;
                if (!down.eof && down.in_pipe == 0)
                        p[1].events |= POLLIN;
                if (up.in_pipe > 0)
                        p[1].events |= POLLOUT;
                if (up.limit == 0 && !up.eof)
                        up.eof = true; /* request body complete: stop reading the client */
                int r = poll(p, 2, PROXY_IDLE_TIMEOUT_MS);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r == 0) {
                        snprintf(q->reason + strlen(q->reason), sizeof q->reason - strlen(q->reason),
                                 "; idle for %d s, closed", PROXY_IDLE_TIMEOUT_MS / 1000);
                        break;
                }
                if (r < 0)
                        break;
                bool cr = p[0].revents & (POLLIN | POLLHUP | POLLERR), cw = p[0].revents & (POLLOUT | POLLERR);
                bool ur = p[1].revents & (POLLIN | POLLHUP | POLLERR), uw = p[1].revents & (POLLOUT | POLLERR);
                if (half_step(&up, cr, uw) < 0 || half_step(&down, ur, cw) < 0)
                        break;
                if ((p[0].revents & POLLNVAL) || (p[1].revents & POLLNVAL))
                        break;
        }
        half_done(&up);
        half_done(&down);
}

/* ---- request handling ---- */

static bool host_needs_brackets(const char *h) { return strchr(h, ':') != NULL; }

/* Rewrites an absolute-form request to origin form for the upstream: own
 * Host, no hop-by-hop headers, Connection: close, secret headers for this
 * host replacing the client's. Returns a malloc'd head or NULL. */
static char *build_upstream_head(struct proxy_run *pr, const struct http_request *rq, size_t *ret_len) {
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
        if (rq->port != 80) {
                char pbuf[8];
                snprintf(pbuf, sizeof pbuf, ":%u", rq->port);
                PUTS(pbuf);
        }
        PUTS("\r\n");
        for (size_t i = 0; i < rq->n_headers; i++) {
                const struct http_header *h = &rq->headers[i];
                if (http_header_is_hop_by_hop(h))
                        continue;
                bool replaced = false;
                for (size_t k = 0; k < pr->n_headers && !replaced; k++)
                        replaced = !strcasecmp(pr->headers[k].host, rq->host) &&
                                   http_span_equal(h->name, pr->headers[k].name);
                if (replaced)
                        continue;
                PUT(h->name.p, h->name.len);
                PUTS(": ");
                PUT(h->value.p, h->value.len);
                PUTS("\r\n");
        }
        for (size_t k = 0; k < pr->n_headers; k++)
                if (!strcasecmp(pr->headers[k].host, rq->host)) {
                        PUTS(pr->headers[k].name);
                        PUTS(": ");
                        PUT(pr->headers[k].value, pr->headers[k].value_len);
                        PUTS("\r\n");
                }
        pthread_mutex_unlock(&pr->lock);
        PUTS("Connection: close\r\n\r\n");
#undef PUT
#undef PUTS
        *ret_len = len;
        return out;
}

/* Reads the TLS ClientHello of a tunnel (bounded, with a timeout) and checks
 * its SNI. Returns the number of bytes peeked into buf (to forward upstream),
 * or -1 when the tunnel is refused (q->reason says why). */
static ssize_t check_client_hello(struct request *q, const struct egress_check *chk, uint8_t *buf, size_t have) {
        int64_t deadline = time_mono_us() + (int64_t)PROXY_HELLO_TIMEOUT_MS * 1000;
        enum tls_hello_result res;
        for (;;) {
                res = tls_parse_client_hello(buf, have, q->sni);
                if (res != TLS_HELLO_NEED_MORE || have >= TLS_RECORD_MAX)
                        break;
                ssize_t n = read_some(q->c->cfd, buf + have, TLS_RECORD_MAX - have, deadline);
                if (n == 0 && have == 0)
                        return 0; /* the client closed without sending anything */
                if (n == -ETIMEDOUT) {
                        deny(q, "no complete TLS ClientHello within %d s", PROXY_HELLO_TIMEOUT_MS / 1000);
                        return -1;
                }
                if (n <= 0) {
                        deny(q, "client closed the tunnel during the TLS ClientHello");
                        return -1;
                }
                have += (size_t)n;
        }
        switch (res) {
        case TLS_HELLO_SNI:
                if (!chk->literal) {
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
                return (ssize_t)have;
        case TLS_HELLO_NO_SNI:
                if (!chk->literal) {
                        deny(q, "TLS ClientHello without SNI for a named host");
                        return -1;
                }
                return (ssize_t)have;
        case TLS_HELLO_NOT_TLS:
                /* an explicitly allowed address may speak anything; a name must
                 * speak TLS or its Host header could front another site */
                if (!chk->literal) {
                        deny(q, "tunnel to a named host does not start with a TLS ClientHello");
                        return -1;
                }
                return (ssize_t)have;
        case TLS_HELLO_NEED_MORE:
        case TLS_HELLO_MALFORMED:
        default:
                deny(q, "malformed or fragmented TLS ClientHello");
                return -1;
        }
}

static void set_upstream(struct conn *c, int fd) {
        pthread_mutex_lock(&c->run->lock);
        c->ufd = fd;
        bool closing = c->run->closing;
        pthread_mutex_unlock(&c->run->lock);
        if (closing)
                shutdown(fd, SHUT_RDWR);
}

static void handle(struct conn *c) {
        struct proxy_run *pr = c->run;
        struct request q = {.c = c, .started_mono = time_mono_us()};
        _cleanup_free_ char *buf = malloc(PROXY_HEAD_MAX > TLS_RECORD_MAX ? PROXY_HEAD_MAX : TLS_RECORD_MAX);
        if (!buf)
                return;
        size_t have = 0;
        int head_len = 0;
        int64_t deadline = q.started_mono + (int64_t)PROXY_HEAD_TIMEOUT_MS * 1000;
        while ((head_len = http_head_length(buf, have, PROXY_HEAD_MAX)) == 0) {
                ssize_t n = read_some(c->cfd, buf + have, PROXY_HEAD_MAX - have, deadline);
                if (n == 0 && have == 0)
                        return; /* opened and closed: not a request */
                if (n <= 0) {
                        snprintf(q.method, sizeof q.method, "?");
                        deny(&q, n == -ETIMEDOUT ? "no complete request head within %d s"
                                                 : "client closed before the request head ended",
                             PROXY_HEAD_TIMEOUT_MS / 1000);
                        if (n == -ETIMEDOUT)
                                respond(c, 408, "Request Timeout", q.reason);
                        request_emit(&q);
                        return;
                }
                have += (size_t)n;
        }
        if (head_len < 0) {
                snprintf(q.method, sizeof q.method, "?");
                deny(&q, "request head larger than %d bytes", PROXY_HEAD_MAX);
                respond(c, 431, "Request Header Fields Too Large", q.reason);
                request_emit(&q);
                return;
        }
        struct http_request *rq = calloc(1, sizeof *rq);
        if (!rq)
                return;
        struct err_detail err = {0};
        int r = http_parse_request(buf, (size_t)head_len, rq, &err);
        snprintf(q.method, sizeof q.method, "%s", rq->method[0] ? rq->method : "?");
        snprintf(q.host, sizeof q.host, "%s", rq->host);
        q.port = rq->port;
        if (r < 0) {
                deny(&q, "bad request: %s", err.message);
                respond(c, r == -ENOTSUP ? 501 : r == -E2BIG ? 431 : 400,
                        r == -ENOTSUP ? "Not Implemented" : r == -E2BIG ? "Request Header Fields Too Large" : "Bad Request",
                        q.reason);
                request_emit(&q);
                free(rq);
                return;
        }
        if (!rq->connect) {
                size_t pl = rq->path.len < sizeof q.path - 1 ? rq->path.len : sizeof q.path - 1;
                size_t off = 0;
                if (rq->path.len == 0 || rq->path.p[0] != '/')
                        q.path[off++] = '/';
                if (pl > sizeof q.path - 1 - off)
                        pl = sizeof q.path - 1 - off;
                memcpy(q.path + off, rq->path.p, pl);
                q.path[off + pl] = 0;
        }

        struct egress_check chk;
        egress_policy_check_target(pr->policy, q.host, q.port, &chk);
        snprintf(q.rule, sizeof q.rule, "%s", chk.rule);
        if (chk.verdict == EGRESS_ASK) {
                if (!askable(&q, &chk) || !approval_wait(&q)) {
                        respond(c, 403, "Forbidden", q.reason);
                        request_emit(&q);
                        free(rq);
                        return;
                }
        } else if (chk.verdict == EGRESS_DENY) {
                snprintf(q.reason, sizeof q.reason, "%s", chk.reason);
                respond(c, 403, "Forbidden", q.reason);
                request_emit(&q);
                free(rq);
                return;
        } else
                snprintf(q.reason, sizeof q.reason, "allowed by rule");

        int ufd = -1;
        int status = open_upstream(&q, &chk, &ufd);
        if (status) {
                if (status == 403)
                        q.allowed = false;
                respond(c, status, status == 403 ? "Forbidden" : status == 504 ? "Gateway Timeout" : "Bad Gateway",
                        q.reason);
                request_emit(&q);
                free(rq);
                return;
        }
        set_upstream(c, ufd);
        q.allowed = true;
        size_t extra = have - (size_t)head_len;

        if (rq->connect) {
                static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
                memmove(buf, buf + head_len, extra);
                if (write_all(c->cfd, ok, STRLEN(ok), time_mono_us() + 10000000) < 0) {
                        request_emit(&q);
                        free(rq);
                        return;
                }
                ssize_t peeked = check_client_hello(&q, &chk, (uint8_t *)buf, extra);
                if (peeked < 0) {
                        request_emit(&q);
                        free(rq);
                        return;
                }
                if (peeked > 0 && write_all(ufd, buf, (size_t)peeked, time_mono_us() + 10000000) < 0) {
                        request_emit(&q);
                        free(rq);
                        return;
                }
                q.bytes_up += (uint64_t)peeked;
                relay(&q, -1, false);
        } else {
                size_t hl;
                _cleanup_free_ char *head = build_upstream_head(pr, rq, &hl);
                int64_t body = rq->chunked ? -1 : rq->content_length > 0 ? rq->content_length : 0;
                size_t first = extra;
                if (body >= 0 && (int64_t)first > body)
                        first = (size_t)body; /* pipelined bytes beyond the body are not forwarded */
                if (!head || write_all(ufd, head, hl, time_mono_us() + 10000000) < 0 ||
                    (first && write_all(ufd, buf + head_len, first, time_mono_us() + 10000000) < 0)) {
                        respond(c, 502, "Bad Gateway", "could not send the request upstream");
                        request_emit(&q);
                        free(rq);
                        return;
                }
                q.bytes_up += hl + first;
                relay(&q, body >= 0 ? body - (int64_t)first : -1, true);
        }
        request_emit(&q);
        free(rq);
}

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
        /* closed under the lock so proxy_run_stop never shuts down a reused fd */
        close(c->cfd);
        if (c->ufd >= 0)
                close(c->ufd);
        pthread_cond_broadcast(&pr->cond);
        pthread_mutex_unlock(&pr->lock);
        free(c);
}

static void *conn_thread(void *userdata) {
        struct conn *c = userdata;
        handle(c);
        conn_unregister(c);
        return NULL;
}

/* Called by the accept thread under g.lock. */
static void accept_all(struct proxy_run *pr) {
        for (;;) {
                int fd = accept4(pr->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        return; /* EAGAIN, or EMFILE: the listener stays readable, retried */
                }
                int one = 1;
                (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                pthread_mutex_lock(&pr->lock);
                if (pr->closing || pr->n_conns >= PROXY_MAX_CONNS_PER_RUN) {
                        pthread_mutex_unlock(&pr->lock);
                        log_ctx(LOG_WARN, LOG_KV("run", pr->run_id), "egress connection refused: %u connections open",
                                pr->n_conns);
                        close(fd);
                        continue;
                }
                struct conn *c = calloc(1, sizeof *c);
                if (!c) {
                        pthread_mutex_unlock(&pr->lock);
                        close(fd);
                        continue;
                }
                *c = (struct conn){.run = pr, .cfd = fd, .ufd = -1, .next = pr->conns};
                if (pr->conns)
                        pr->conns->prev = c;
                pr->conns = c;
                pr->n_conns++;
                pthread_mutex_unlock(&pr->lock);

                pthread_attr_t attr;
                pthread_attr_init(&attr);
                pthread_attr_setstacksize(&attr, CONN_STACK_SIZE);
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                pthread_t t;
                int r = pthread_create(&t, &attr, conn_thread, c);
                pthread_attr_destroy(&attr);
                if (r != 0) {
                        log_ctx(LOG_WARN, LOG_KV("run", pr->run_id), "could not start an egress connection thread: %s",
                                strerror(r));
                        conn_unregister(c);
                }
        }
}

static void *accept_thread(void *userdata) {
        (void)userdata;
        struct epoll_event evs[64];
        for (;;) {
                int n = epoll_wait(g.epfd, evs, ELEMENTSOF(evs), -1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        log_error("egress proxy: epoll_wait failed: %m");
                        return NULL;
                }
                pthread_mutex_lock(&g.lock);
                for (int i = 0; i < n; i++) {
                        /* the run may have stopped since epoll_wait returned */
                        struct proxy_run *pr = g.runs;
                        while (pr && pr != evs[i].data.ptr)
                                pr = pr->next;
                        if (pr)
                                accept_all(pr);
                }
                pthread_mutex_unlock(&g.lock);
        }
        return NULL;
}

/* ---- listening inside the sandbox netns ---- */

struct listen_job {
        const char *netns_path;
        int fd, port, err;
        char what[64];
};

static int listen_here(struct listen_job *job) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                snprintf(job->what, sizeof job->what, "socket");
                return -errno;
        }
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                 .sin_port = htons(job->netns_path ? PROXY_PORT : 0)};
        socklen_t sl = sizeof sa;
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1024) < 0 ||
            getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
                int e = -errno;
                snprintf(job->what, sizeof job->what, "bind/listen on 127.0.0.1");
                close(fd);
                return e;
        }
        job->fd = fd;
        job->port = ntohs(sa.sin_port);
        return 0;
}

/* A thread of its own: setns() changes only the calling thread's namespace,
 * and the thread ends right after, so no other code ever runs inside the
 * sandbox namespace; the socket stays bound there. */
static void *listen_thread(void *userdata) {
        struct listen_job *job = userdata;
        int nfd = open(job->netns_path, O_RDONLY | O_CLOEXEC);
        if (nfd < 0) {
                job->err = -errno;
                snprintf(job->what, sizeof job->what, "open netns");
                return NULL;
        }
        if (setns(nfd, CLONE_NEWNET) < 0) {
                job->err = -errno;
                snprintf(job->what, sizeof job->what, "setns");
                close(nfd);
                return NULL;
        }
        close(nfd);
        job->err = listen_here(job);
        return NULL;
}

static int ensure_started(void) {
        if (g.started)
                return 0;
        g.epfd = epoll_create1(EPOLL_CLOEXEC);
        if (g.epfd < 0)
                return -errno;
        int r = pthread_create(&g.thread, NULL, accept_thread, NULL);
        if (r != 0) {
                close(g.epfd);
                g.epfd = -1;
                return -r;
        }
        pthread_detach(g.thread);
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
        struct listen_job job = {.netns_path = netns_path, .fd = -1};
        if (netns_path) {
                pthread_t t;
                r = pthread_create(&t, NULL, listen_thread, &job);
                if (r != 0) {
                        egress_policy_free(pr->policy);
                        return err_set(reterr, -r, "proxy", "cannot start the netns thread: %s", strerror(r));
                }
                pthread_join(t, NULL);
        } else
                job.err = listen_here(&job);
        if (job.err < 0) {
                egress_policy_free(pr->policy);
                return err_set(reterr, job.err, "proxy", "egress proxy %s failed: %s", job.what, strerror(-job.err));
        }
        pr->listen_fd = job.fd;
        pr->port = job.port;
        pthread_mutex_init(&pr->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&pr->cond, &ca);
        pthread_condattr_destroy(&ca);

        pthread_mutex_lock(&g.lock);
        r = ensure_started();
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = pr};
        if (r >= 0 && epoll_ctl(g.epfd, EPOLL_CTL_ADD, pr->listen_fd, &ev) < 0)
                r = -errno;
        if (r < 0) {
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
        (void)epoll_ctl(g.epfd, EPOLL_CTL_DEL, pr->listen_fd, NULL);
        pthread_mutex_unlock(&g.lock);
        close(pr->listen_fd);

        pthread_mutex_lock(&pr->lock);
        pr->closing = true;
        for (struct approval *a = pr->approvals; a; a = a->next)
                if (a->state == APPROVAL_PENDING) {
                        a->state = APPROVAL_DENIED;
                        snprintf(a->by, sizeof a->by, "run_ended");
                }
        for (struct conn *c = pr->conns; c; c = c->next) {
                shutdown(c->cfd, SHUT_RDWR);
                if (c->ufd >= 0)
                        shutdown(c->ufd, SHUT_RDWR);
        }
        pthread_cond_broadcast(&pr->cond);
        while (pr->n_conns > 0)
                pthread_cond_wait(&pr->cond, &pr->lock);
        pthread_mutex_unlock(&pr->lock);

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
        pthread_mutex_destroy(&pr->lock);
        pthread_cond_destroy(&pr->cond);
        log_ctx(LOG_DEBUG, LOG_KV("run", pr->run_id), "egress proxy stopped");
        free(pr);
        return NULL;
}

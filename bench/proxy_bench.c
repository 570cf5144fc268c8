/* Egress proxy overhead (issue 10 §4, bench/README.md "proxy"), measured side
 * by side in one run against squid (Debian's, started by bench/proxy.sh on a
 * loopback port) and a direct connection: CONNECT tunnel bulk throughput
 * (MB/s), added latency per small request on a reused tunnel (µs), small
 * requests per second with 16 reused tunnels (keep-alive) and with a new
 * tunnel per request (connect + CONNECT + one request + close). The proxy is
 * the runner-agent's own code (proxy.c, proxy_policy.c, the library
 * paddock_runner_proxy) serving one run in this process's network namespace;
 * its egress events are built and serialised as in a run, then dropped. The
 * platform egress floor refuses loopback, so the upstream (a small echo and
 * stream server, one thread per connection, the same for all three) listens
 * in a network namespace over a veth pair (PADDOCK_TEST_NETNS, the first of
 * PADDOCK_TEST_UPSTREAM_ADDRS: a local stack's test network, or the one
 * bench/proxy.sh makes); direct connections and squid take the same veth, so
 * the ratios compare like with like. A fourth contender, a minimal blocking
 * splice() relay in this file, is the floor for two TCP legs (bench/README.md).
 * Prints figures, never fails on them.
 *
 * usage: bench/proxy.sh [seconds per phase (default 3)] [throughput GiB (default 2)]
 *        (PADDOCK_BENCH_PHASES: a subset of bulk,plain,latency,rps,new,byname)
 *        (PADDOCK_BENCH_UPSTREAM_NAME: a name resolving to the upstream, for byname)
 *        (PADDOCK_BENCH_SQUID_PORT: squid's port on 127.0.0.1; unset: no squid column)
 *        (PADDOCK_EGRESS_LOOPS: the proxy's event loops, as the runner-agent's setting) */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../services/runner-agent/proxy.h"

#define MSG 100
#define ROUNDS 5        /* the latency and req/s phases: slices, the contenders taking turns */
#define CHUNK (256 * 1024)

static int64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what) {
        perror(what);
        exit(1);
}

static const char *up_addr;     /* the upstream's address in the test network */
static const char *up_netns;

enum via { DIRECT, PROXY, SQUID, SPLICE };
static const char *const via_name[] = {"direct", "proxy", "squid", "splice"};

/* Makes the upstream's socket inside the test network namespace: setns()
 * moves only this short-lived thread; the socket stays there. */
static void *netns_socket_thread(void *ret) {
        int nfd = open(up_netns, O_RDONLY | O_CLOEXEC);
        if (nfd < 0 || setns(nfd, CLONE_NEWNET) < 0)
                die("setns PADDOCK_TEST_NETNS");
        close(nfd);
        *(int *)ret = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        return NULL;
}

static int listen_any(int *port) {
        int fd = -1;
        pthread_t t;
        if (pthread_create(&t, NULL, netns_socket_thread, &fd) != 0 || pthread_join(t, NULL) != 0)
                die("pthread");
        struct sockaddr_in sa = {.sin_family = AF_INET};
        if (inet_pton(AF_INET, up_addr, &sa.sin_addr) != 1)
                die("PADDOCK_TEST_UPSTREAM_ADDRS");
        socklen_t sl = sizeof sa;
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 512) < 0 ||
            getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
                die("listen");
        *port = ntohs(sa.sin_port);
        return fd;
}

/* addr NULL: the proxy on 127.0.0.1 */
static int dial(const char *addr, int port) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                 .sin_port = htons((uint16_t)port)};
        if (addr && inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
                die("address");
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
                die("connect");
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        return fd;
}

static void write_full(int fd, const void *b, size_t n) {
        const char *p = b;
        while (n) {
                ssize_t k = write(fd, p, n);
                if (k <= 0)
                        die("write");
                p += k;
                n -= (size_t)k;
        }
}

static void read_full(int fd, void *b, size_t n) {
        char *p = b;
        while (n) {
                ssize_t k = read(fd, p, n);
                if (k <= 0)
                        die("read");
                p += k;
                n -= (size_t)k;
        }
}

/* ---- upstream: the first byte of a connection picks the mode ---- */
/* 'S' + 8-byte count: stream that many bytes and close; 'E': echo MSG-byte messages;
 * 'O': echo one MSG-byte message and close (the server closes first, as an
 * HTTP/1.0 origin does, so TIME_WAIT stays on the server side and a client
 * opening thousands of tunnels a second never runs out of ephemeral ports);
 * 'G' (an HTTP GET /<bytes>): answer 200 with that many bytes and close */

static void *upstream_conn(void *arg) {
        int fd = (int)(intptr_t)arg;
        char mode;
        if (read(fd, &mode, 1) != 1) {
                close(fd);
                return NULL;
        }
        if (mode == 'G') {
                char head[2048];
                size_t have = 0;
                head[0] = 'G';
                have = 1;
                while (have < 4 || memcmp(head + have - 4, "\r\n\r\n", 4)) {
                        if (have == sizeof head - 1 || read(fd, head + have, 1) != 1)
                                goto out;
                        have++;
                }
                head[have] = 0;
                const char *slash = strchr(head, '/');
                unsigned long long n = slash ? strtoull(slash + 1, NULL, 10) : 0;
                char ans[128];
                int al = snprintf(ans, sizeof ans, "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\nConnection: close\r\n\r\n", n);
                write_full(fd, ans, (size_t)al);
                char *buf = calloc(1, CHUNK);
                while (n) {
                        size_t k = n < CHUNK ? n : CHUNK;
                        ssize_t w = write(fd, buf, k);
                        if (w <= 0)
                                break;
                        n -= (unsigned long long)w;
                }
                free(buf);
        } else if (mode == 'S') {
                uint64_t total;
                read_full(fd, &total, sizeof total);
                char *buf = calloc(1, CHUNK);
                while (total) {
                        size_t n = total < CHUNK ? total : CHUNK;
                        ssize_t k = write(fd, buf, n);
                        if (k <= 0)
                                break;
                        total -= (uint64_t)k;
                }
                free(buf);
        } else if (mode == 'O') {
                char buf[MSG];
                read_full(fd, buf, MSG);
                write_full(fd, buf, MSG);
        } else {
                char buf[MSG];
                for (;;) {
                        size_t got = 0;
                        while (got < MSG) {
                                ssize_t k = read(fd, buf + got, MSG - got);
                                if (k <= 0)
                                        goto out;
                                got += (size_t)k;
                        }
                        write_full(fd, buf, MSG);
                }
        }
out:
        close(fd);
        return NULL;
}

/* A listener's accept loop: a thread per connection running serve(fd). */
struct acceptor {
        int lfd;
        void *(*serve)(void *);
        const char *name;       /* the thread's name (relay_cpu_ns finds the splice relay's) */
};

static void *accept_thread(void *arg) {
        struct acceptor a = *(struct acceptor *)arg;
        free(arg);
        (void)pthread_setname_np(pthread_self(), a.name);
        for (;;) {
                int fd = accept4(a.lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        continue;
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                pthread_t t;
                pthread_create(&t, NULL, a.serve, (void *)(intptr_t)fd);
                pthread_detach(t);
        }
        return NULL;
}

static void accept_start(int lfd, void *(*serve)(void *), const char *name) {
        struct acceptor *a = malloc(sizeof *a);
        *a = (struct acceptor){lfd, serve, name};
        pthread_t t;
        pthread_create(&t, NULL, accept_thread, a);
}

/* ---- clients ---- */

static int upstream_port, proxy_port, squid_port, splice_port;

static int via_port(enum via via) {
        return via == PROXY ? proxy_port : via == SQUID ? squid_port : splice_port;
}

/* ---- the reference: the least a relay over two TCP legs can do ----
 * A CONNECT relay in a few lines, a thread per direction, each a blocking
 * splice() socket -> pipe -> socket: no policy, no event, no event loop. What
 * it costs over direct is the second TCP leg and the hop through a third
 * process's worth of scheduling; the proxy cannot do better than this. */

struct splice_dir {
        int from, to;
};

/* CPU the relay threads used (ns): the splice relay's connection and
 * direction threads add theirs as they exit, its acceptor (splice-accept)
 * is read like the proxy's threads named egress-* (relay_cpu_ns): the
 * floor pays for what the proxy pays for, accept, head, connect, relay. */
static atomic_ullong splice_cpu_ns;

static unsigned long long rusage_ns(const struct rusage *ru) {
        return ((unsigned long long)ru->ru_utime.tv_sec + (unsigned long long)ru->ru_stime.tv_sec) * 1000000000ULL +
               ((unsigned long long)ru->ru_utime.tv_usec + (unsigned long long)ru->ru_stime.tv_usec) * 1000ULL;
}

/* utime + stime (clock ticks) of a /proc/.../stat file; 0 if unreadable */
static unsigned long long stat_ticks(const char *path) {
        unsigned long long ut = 0, st = 0;
        FILE *f = fopen(path, "r");
        if (!f)
                return 0;
        /* after the ")" of the comm: state is field 3, utime 14, stime 15 */
        char line[1024];
        char *p = fgets(line, sizeof line, f) ? strrchr(line, ')') : NULL;
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
                ut = st = 0;
        fclose(f);
        return ut + st;
}

static int squid_pid; /* PADDOCK_BENCH_SQUID_PID (bench/proxy.sh): its CPU is squid's relay CPU */

static unsigned long long relay_cpu_ns(enum via via) {
        unsigned long long ticks = 0;
        char path[300];
        if (via == SQUID && squid_pid > 0) {
                snprintf(path, sizeof path, "/proc/%d/stat", squid_pid);
                ticks = stat_ticks(path);
        }
        const char *prefix = via == PROXY ? "egress-" : "splice-accept";
        DIR *d = via == PROXY || via == SPLICE ? opendir("/proc/self/task") : NULL;
        for (struct dirent *e; d && (e = readdir(d));) {
                if (e->d_name[0] == '.')
                        continue;
                char comm[32] = "";
                snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
                FILE *f = fopen(path, "r");
                if (!f)
                        continue;
                bool ours = fgets(comm, sizeof comm, f) && !strncmp(comm, prefix, strlen(prefix));
                fclose(f);
                snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
                if (ours)
                        ticks += stat_ticks(path);
        }
        if (d)
                closedir(d);
        return ticks * (1000000000ULL / (unsigned long long)sysconf(_SC_CLK_TCK)) +
               (via == SPLICE ? atomic_load(&splice_cpu_ns) : 0);
}

static void *splice_dir_thread(void *arg) {
        struct splice_dir d = *(struct splice_dir *)arg;
        free(arg);
        (void)pthread_setname_np(pthread_self(), "splice-dir");
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                die("pipe2");
        (void)fcntl(p[0], F_SETPIPE_SZ, 256 * 1024);
        for (;;) {
                ssize_t n = splice(d.from, NULL, p[1], NULL, 256 * 1024, SPLICE_F_MOVE);
                if (n <= 0)
                        break;
                while (n > 0) {
                        ssize_t k = splice(p[0], NULL, d.to, NULL, (size_t)n, SPLICE_F_MOVE);
                        if (k <= 0)
                                goto out;
                        n -= k;
                }
        }
out:
        shutdown(d.to, SHUT_WR);
        close(p[0]);
        close(p[1]);
        struct rusage ru;
        if (getrusage(RUSAGE_THREAD, &ru) == 0)
                atomic_fetch_add(&splice_cpu_ns, rusage_ns(&ru));
        return NULL;
}

static void splice_dir_start(int from, int to, pthread_t *t) {
        struct splice_dir *d = malloc(sizeof *d);
        *d = (struct splice_dir){from, to};
        pthread_create(t, NULL, splice_dir_thread, d);
}

static void *splice_conn(void *arg) {
        int cfd = (int)(intptr_t)arg;
        /* not the acceptor's name it inherits: it counts its CPU itself */
        (void)pthread_setname_np(pthread_self(), "splice-conn");
        char head[512];
        size_t have = 0;
        /* the client sends nothing after its head before the answer: read
         * it whole, as the proxy does */
        while (have < 4 || memcmp(head + have - 4, "\r\n\r\n", 4)) {
                ssize_t n = have == sizeof head ? 0 : read(cfd, head + have, sizeof head - have);
                if (n <= 0) {
                        close(cfd);
                        return NULL;
                }
                have += (size_t)n;
        }
        int ufd = dial(up_addr, upstream_port); /* the bench's one upstream */
        write_full(cfd, "HTTP/1.1 200 OK\r\n\r\n", 19);
        pthread_t up, down;
        splice_dir_start(cfd, ufd, &up);
        splice_dir_start(ufd, cfd, &down);
        pthread_join(up, NULL);
        pthread_join(down, NULL);
        close(ufd);
        close(cfd);
        struct rusage ru;
        if (getrusage(RUSAGE_THREAD, &ru) == 0)
                atomic_fetch_add(&splice_cpu_ns, rusage_ns(&ru));
        return NULL;
}

static int splice_relay_start(void) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof sa;
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 512) < 0 ||
            getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
                die("splice relay listen");
        accept_start(fd, splice_conn, "splice-accept");
        return ntohs(sa.sin_port);
}

/* A connection to the upstream, directly or through a CONNECT tunnel of the
 * proxy or of squid. */
static int open_conn(enum via via) {
        if (via == DIRECT)
                return dial(up_addr, upstream_port);
        int fd = dial(NULL, via_port(via));
        char req[160], resp[512];
        int n = snprintf(req, sizeof req, "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n", up_addr,
                         upstream_port, up_addr, upstream_port);
        write_full(fd, req, (size_t)n);
        /* the answer's head, byte by byte: nothing of the tunnel is read */
        size_t have = 0;
        while (have < 4 || memcmp(resp + have - 4, "\r\n\r\n", 4)) {
                if (have == sizeof resp - 1)
                        die("CONNECT answer too long");
                read_full(fd, resp + have++, 1);
        }
        resp[have] = 0;
        if (strncmp(resp, "HTTP/1.1 200", 12) && strncmp(resp, "HTTP/1.0 200", 12)) {
                fprintf(stderr, "%s refused the CONNECT: %s\n", via_name[via], resp);
                exit(1);
        }
        return fd;
}

static double throughput(enum via via, uint64_t total) {
        int fd = open_conn(via);
        char m = 'S';
        write_full(fd, &m, 1);
        write_full(fd, &total, sizeof total);
        char *buf = malloc(CHUNK);
        uint64_t got = 0;
        int64_t t0 = now_ns();
        for (;;) {
                ssize_t k = read(fd, buf, CHUNK);
                if (k <= 0)
                        break;
                got += (uint64_t)k;
        }
        int64_t t1 = now_ns();
        free(buf);
        close(fd);
        if (got != total)
                fprintf(stderr, "short stream: %llu of %llu\n", (unsigned long long)got, (unsigned long long)total);
        return (double)got / ((double)(t1 - t0) / 1e9);
}

/* One plain-HTTP GET answered with `total` bytes: directly (origin form) or
 * through the proxy or squid (absolute form, the proxy's spliced relay). */
static double plain_throughput(enum via via, uint64_t total) {
        int fd = via == DIRECT ? dial(up_addr, upstream_port) : dial(NULL, via_port(via));
        char req[256];
        int n = via == DIRECT ? snprintf(req, sizeof req, "GET /%llu HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n",
                                         (unsigned long long)total, up_addr, upstream_port)
                              : snprintf(req, sizeof req, "GET http://%s:%d/%llu HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n",
                                         up_addr, upstream_port, (unsigned long long)total, up_addr, upstream_port);
        int64_t t0 = now_ns();
        write_full(fd, req, (size_t)n);
        char *buf = malloc(CHUNK);
        uint64_t got = 0;
        size_t head = 0;
        bool in_body = false;
        for (;;) {
                ssize_t k = read(fd, buf, CHUNK);
                if (k <= 0)
                        break;
                if (!in_body) {
                        /* the head is small and comes in the first read */
                        char *e = memmem(buf, (size_t)k, "\r\n\r\n", 4);
                        if (!e)
                                die("plain answer head");
                        head = (size_t)(e + 4 - buf);
                        in_body = true;
                        got += (uint64_t)k - head;
                } else
                        got += (uint64_t)k;
                if (got >= total)
                        break; /* squid may keep the connection open */
        }
        int64_t t1 = now_ns();
        free(buf);
        close(fd);
        if (got != total)
                fprintf(stderr, "%s: short plain answer: %llu of %llu\n", via_name[via], (unsigned long long)got,
                        (unsigned long long)total);
        return (double)got / ((double)(t1 - t0) / 1e9);
}

static int cmp_i64(const void *a, const void *b) {
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return x < y ? -1 : x > y;
}

/* n round trips of MSG bytes on one reused connection, their times (ns)
 * into lat. */
static void latency(enum via via, int n, int64_t *lat) {
        int fd = open_conn(via);
        char m = 'E', buf[MSG] = {0};
        write_full(fd, &m, 1);
        for (int i = 0; i < n + 200; i++) {
                int64_t t0 = now_ns();
                write_full(fd, buf, MSG);
                read_full(fd, buf, MSG);
                if (i >= 200) /* warm-up */
                        lat[i - 200] = now_ns() - t0;
        }
        close(fd);
}

struct rps_job {
        enum via via;
        bool new_conn;          /* a new tunnel per request */
        const char *name;       /* instead: a plain-HTTP GET of http://name:port/MSG per connection */
        int64_t until;
        atomic_ullong *count;
};

/* One plain-HTTP GET on a new connection: to the upstream's name through the
 * proxy or squid (absolute form, each resolving the name), or directly to its
 * address (origin form); MSG bytes answered, the upstream closing first (no
 * TIME_WAIT on the client's side, see 'O'). */
static void get_by_name(enum via via, const char *name) {
        char req[256], buf[512];
        int n = via == DIRECT ? snprintf(req, sizeof req, "GET /%d HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n",
                                         MSG, name, upstream_port)
                              : snprintf(req, sizeof req,
                                         "GET http://%s:%d/%d HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n",
                                         name, upstream_port, MSG, name, upstream_port);
        int fd = via == DIRECT ? dial(up_addr, upstream_port) : dial(NULL, via_port(via));
        write_full(fd, req, (size_t)n);
        size_t got = 0;
        for (ssize_t k; (k = read(fd, buf, sizeof buf)) > 0;) {
                if (got == 0 && strncmp(buf, "HTTP/1.1 200", 12) && strncmp(buf, "HTTP/1.0 200", 12)) {
                        fprintf(stderr, "%s refused GET http://%s:%d/: %.*s\n", via_name[via], name, upstream_port,
                                (int)k, buf);
                        exit(1);
                }
                got += (size_t)k;
        }
        close(fd);
}

static void *rps_worker(void *arg) {
        struct rps_job *j = arg;
        char m = 'E', buf[MSG] = {0};
        unsigned long long n = 0;
        if (j->name) {
                while (now_ns() < j->until) {
                        get_by_name(j->via, j->name);
                        n++;
                }
                atomic_fetch_add(j->count, n);
                return NULL;
        }
        if (j->new_conn) {
                char first[1 + MSG] = {'O'};
                while (now_ns() < j->until) {
                        int fd = open_conn(j->via);
                        write_full(fd, first, sizeof first);
                        read_full(fd, buf, MSG);
                        /* wait for the server's close: the client side then
                         * holds no TIME_WAIT (see 'O' above) */
                        while (read(fd, buf, MSG) > 0)
                                ;
                        close(fd);
                        n++;
                }
                atomic_fetch_add(j->count, n);
                return NULL;
        }
        int fd = open_conn(j->via);
        write_full(fd, &m, 1);
        while (now_ns() < j->until) {
                write_full(fd, buf, MSG);
                read_full(fd, buf, MSG);
                n++;
        }
        close(fd);
        atomic_fetch_add(j->count, n);
        return NULL;
}

static double rps(enum via via, bool new_conn, const char *name, int conns, double seconds) {
        atomic_ullong count = 0;
        struct rps_job j = {.via = via, .new_conn = new_conn, .name = name,
                            .until = now_ns() + (int64_t)(seconds * 1e9), .count = &count};
        pthread_t t[64];
        for (int i = 0; i < conns; i++)
                pthread_create(&t[i], NULL, rps_worker, &j);
        for (int i = 0; i < conns; i++)
                pthread_join(t[i], NULL);
        return (double)count / seconds;
}

static atomic_ullong events_seen;

/* What a run's event sink costs minus Kafka: serialise the event, with
 * the flags of services/runner-agent/events.c. */
static void on_event(void *userdata, const char *kind, json_t *data, bool sync) {
        (void)userdata, (void)kind, (void)sync;
        char *s = json_dumps(data, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(9));
        free(s);
        atomic_fetch_add(&events_seen, 1);
}

int main(int argc, char **argv) {
        setvbuf(stdout, NULL, _IOLBF, 0); /* each figure as it comes, also into a pipe */
        double secs = argc > 1 ? atof(argv[1]) : 3.0;
        double gib = argc > 2 ? atof(argv[2]) : 2.0;
        if (secs <= 0 || gib <= 0) {
                fprintf(stderr, "usage: %s [seconds per phase] [throughput GiB]\n", argv[0]);
                return 2;
        }
        /* the first address of the space-separated list */
        static char addr[INET_ADDRSTRLEN];
        const char *addrs = getenv("PADDOCK_TEST_UPSTREAM_ADDRS");
        up_netns = getenv("PADDOCK_TEST_NETNS");
        if (!addrs || !up_netns || sscanf(addrs, " %15[0-9.]", addr) != 1) {
                fprintf(stderr, "%s: PADDOCK_TEST_NETNS and PADDOCK_TEST_UPSTREAM_ADDRS are not set: run it with a "
                        "local stack's endpoints.env exported (the egress floor refuses loopback upstreams)\n",
                        argv[0]);
                return 2;
        }
        up_addr = addr;
        int lfd = listen_any(&upstream_port);
        accept_start(lfd, upstream_conn, "upstream");

        Paddock__V1__EgressRule rule = PADDOCK__V1__EGRESS_RULE__INIT;
        rule.host = (char *)up_addr;   /* not public: only a profile's IP rule reaches it */
        rule.port = (uint32_t)upstream_port;
        rule.source = (char *)"profile:bench";
        /* the byname phase: the upstream's name (bench/proxy.sh maps it in an
         * /etc/hosts of its own), allowed by a host rule; its address is
         * reached through the profile's IP rule above */
        const char *up_name = getenv("PADDOCK_BENCH_UPSTREAM_NAME");
        Paddock__V1__EgressRule named = PADDOCK__V1__EGRESS_RULE__INIT;
        named.host = (char *)(up_name ? up_name : "");
        named.port = (uint32_t)upstream_port;
        named.source = (char *)"allow";
        Paddock__V1__EgressRule *rules[] = {&rule, &named};
        Paddock__V1__EgressPolicy pol = PADDOCK__V1__EGRESS_POLICY__INIT;
        pol.n_rules = up_name && *up_name ? 2 : 1;
        pol.rules = rules;
        pol.unknown = (char *)"deny";
        struct proxy_run *pr = NULL;
        struct err_detail err = {0};
        /* the runner-agent's setting, to compare loop counts (default: one per CPU up to 4) */
        const char *loops = getenv("PADDOCK_EGRESS_LOOPS");
        if (loops && *loops) {
                struct proxy_settings ps = PROXY_SETTINGS_DEFAULT;
                ps.loops = (unsigned)strtoul(loops, NULL, 10);
                if (ps.loops > PROXY_LOOPS_MAX) {
                        fprintf(stderr, "PADDOCK_EGRESS_LOOPS=%s is outside [0, %d]\n", loops, PROXY_LOOPS_MAX);
                        return 1;
                }
                if (proxy_configure(&ps, &err) < 0) {
                        fprintf(stderr, "proxy_configure: %s\n", err.message);
                        return 1;
                }
        }
        if (proxy_run_start("00000000-0000-4000-8000-000000000000", NULL, &pol, on_event, NULL, &pr, &err) < 0) {
                fprintf(stderr, "proxy_run_start: %s\n", err.message);
                return 1;
        }
        proxy_port = proxy_run_port(pr);
        const char *sp = getenv("PADDOCK_BENCH_SQUID_PORT");
        squid_port = sp ? atoi(sp) : 0;
        const char *spid = getenv("PADDOCK_BENCH_SQUID_PID");
        squid_pid = spid ? atoi(spid) : 0;
        splice_port = splice_relay_start();
        /* the contenders of a tunnel phase: direct first (the ratios' base) */
        enum via vias[4] = {DIRECT, PROXY};
        int n_via = 2;
        if (squid_port > 0)
                vias[n_via++] = SQUID;
        vias[n_via++] = SPLICE;
        const char *phases = getenv("PADDOCK_BENCH_PHASES"); /* e.g. "bulk,latency": only those */
#define PHASE(name) (!phases || strstr(phases, name))
        uint64_t total = (uint64_t)(gib * 1024 * 1024 * 1024);
        int lat_n = (int)(20000 * secs);
        double load[3] = {0};
        FILE *la = fopen("/proc/loadavg", "r");
        if (!la || fscanf(la, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
                load[0] = -1;
        if (la)
                fclose(la);

        printf("egress proxy benchmark: %ld cpus, load average %.2f %.2f %.2f; upstream %s:%d over a veth pair; "
               "proxy 127.0.0.1:%d; squid %s; splice: a minimal blocking splice() CONNECT relay, a thread per "
               "direction (the floor for two TCP legs)\n",
               sysconf(_SC_NPROCESSORS_ONLN), load[0], load[1], load[2], up_addr, upstream_port, proxy_port,
               squid_port > 0 ? "127.0.0.1 (see port below)" : "not measured (PADDOCK_BENCH_SQUID_PORT unset)");
        if (squid_port > 0)
                printf("squid port %d\n", squid_port);

        /* bulk: one CONNECT tunnel streaming `total` bytes down, best of 3,
         * the contenders interleaved */
        if (PHASE("bulk")) {
                double best[4] = {0};
                unsigned long long cpu[4] = {0};
                for (int r = 0; r < 3; r++)
                        for (int i = 0; i < n_via; i++) {
                                unsigned long long c0 = relay_cpu_ns(vias[i]);
                                double t = throughput(vias[i], total);
                                if (vias[i] == SPLICE)
                                        usleep(100000); /* its threads add their CPU as they exit */
                                cpu[vias[i]] += relay_cpu_ns(vias[i]) - c0;
                                if (t > best[vias[i]])
                                        best[vias[i]] = t;
                        }
                printf("\nbulk, one CONNECT tunnel, %.1f GiB down, best of 3:\n", gib);
                for (int i = 0; i < n_via; i++)
                        printf("  %-6s %8.0f MB/s  (%.2fx direct)\n", via_name[vias[i]], best[vias[i]] / 1e6,
                               best[vias[i]] / best[DIRECT]);
                printf("  proxy/direct %.2fx, proxy/splice %.2fx   [target >= 0.90x direct; issue 10 before: 0.52x]\n",
                       best[PROXY] / best[DIRECT], best[PROXY] / best[SPLICE]);
                /* what the machine's load does not change much: the relay's own CPU */
                printf("  relay CPU per GiB relayed (user+system, all 3 runs): proxy %.0f ms, splice %.0f ms",
                       (double)cpu[PROXY] / 1e6 / (3 * gib), (double)cpu[SPLICE] / 1e6 / (3 * gib));
                if (squid_port > 0 && squid_pid > 0)
                        printf(", squid %.0f ms", (double)cpu[SQUID] / 1e6 / (3 * gib));
                printf("\n");
        }

        /* bulk, plain HTTP: one absolute-form GET answered with `total` bytes
         * (the splice relay speaks CONNECT only) */
        if (PHASE("plain")) {
                double best[4] = {0};
                for (int r = 0; r < 3; r++)
                        for (int i = 0; i < n_via; i++) {
                                if (vias[i] == SPLICE)
                                        continue;
                                double t = plain_throughput(vias[i], total);
                                if (t > best[vias[i]])
                                        best[vias[i]] = t;
                        }
                printf("\nbulk, one plain-HTTP GET, %.1f GiB down, best of 3:\n", gib);
                for (int i = 0; i < n_via; i++)
                        if (vias[i] != SPLICE)
                                printf("  %-6s %8.0f MB/s  (%.2fx direct)\n", via_name[vias[i]], best[vias[i]] / 1e6,
                                       best[vias[i]] / best[DIRECT]);
                printf("  proxy/direct %.2fx   [target >= 0.90x]\n", best[PROXY] / best[DIRECT]);
        }

        /* latency: one reused tunnel, MSG-byte request and answer */
        if (PHASE("latency")) {
                double p50[4], p99[4];
                int64_t *lat[4];
                for (int i = 0; i < n_via; i++)
                        lat[vias[i]] = malloc(sizeof(int64_t) * (size_t)lat_n);
                /* in ROUNDS slices, the contenders taking turns: the load of a
                 * shared machine then weighs on each alike */
                for (int r = 0; r < ROUNDS; r++)
                        for (int i = 0; i < n_via; i++)
                                latency(vias[i], lat_n / ROUNDS, lat[vias[i]] + r * (lat_n / ROUNDS));
                for (int i = 0; i < n_via; i++) {
                        int n = lat_n / ROUNDS * ROUNDS;
                        int64_t *l = lat[vias[i]];
                        qsort(l, (size_t)n, sizeof *l, cmp_i64);
                        p50[vias[i]] = (double)l[n / 2] / 1000.0;
                        p99[vias[i]] = (double)l[n * 99 / 100] / 1000.0;
                        free(l);
                }
                printf("\nsmall request round trip (%d B each way), one reused tunnel, %d requests:\n", MSG, lat_n);
                for (int i = 0; i < n_via; i++)
                        printf("  %-6s p50 %7.1f us  p99 %7.1f us  added p50 %+6.1f us\n", via_name[vias[i]],
                               p50[vias[i]], p99[vias[i]], p50[vias[i]] - p50[DIRECT]);
                printf("  proxy added p50 %+.1f us   [target <= +25 us; issue 10 before: +34.5 us]\n",
                       p50[PROXY] - p50[DIRECT]);
        }

        /* requests per second: 16 reused tunnels (keep-alive), then a new
         * tunnel per request (connect, CONNECT, request, close) */
        for (int nc = 0; nc < 2; nc++) {
                if (!PHASE(nc ? "new" : "rps"))
                        continue;
                int conns = nc ? 8 : 16;
                double r[4] = {0};
                unsigned long long cpu[4] = {0};
                for (int k = 0; k < ROUNDS; k++) /* taking turns, as above */
                        for (int i = 0; i < n_via; i++) {
                                unsigned long long c0 = relay_cpu_ns(vias[i]);
                                r[vias[i]] += rps(vias[i], nc, NULL, conns, secs / ROUNDS) / ROUNDS;
                                if (vias[i] == SPLICE)
                                        usleep(100000);
                                cpu[vias[i]] += relay_cpu_ns(vias[i]) - c0;
                        }
                printf("\nsmall requests/s, %d clients, %s, %.0f s each:\n", conns,
                       nc ? "a new CONNECT tunnel per request" : "reused tunnels (keep-alive)", secs);
                for (int i = 0; i < n_via; i++)
                        printf("  %-6s %9.0f req/s  (%.2fx direct)\n", via_name[vias[i]], r[vias[i]],
                               r[vias[i]] / r[DIRECT]);
                if (squid_port > 0)
                        printf("  proxy/squid %.2fx   [target >= 2x; issue 10 before: 1.66x]\n", r[PROXY] / r[SQUID]);
                printf("  relay CPU per request (user+system): proxy %.1f us, splice %.1f us",
                       (double)cpu[PROXY] / 1e3 / (r[PROXY] * secs), (double)cpu[SPLICE] / 1e3 / (r[SPLICE] * secs));
                /* the req/s ratio also carries the clients' and the upstream's
                 * CPU on the same 2 cores; this one is the relays' own */
                if (squid_port > 0 && squid_pid > 0)
                        printf(", squid %.1f us (proxy/squid CPU %.2fx)",
                               (double)cpu[SQUID] / 1e3 / (r[SQUID] * secs),
                               ((double)cpu[PROXY] / r[PROXY]) / ((double)cpu[SQUID] / r[SQUID]));
                printf("\n");
        }
        /* a new plain-HTTP request per connection to the upstream's name:
         * what a name costs the proxy on top of the decision (resolution;
         * squid resolves it too). The splice relay speaks CONNECT only. */
        if (PHASE("byname") && !(up_name && *up_name))
                printf("\nbyname: skipped (PADDOCK_BENCH_UPSTREAM_NAME unset: bench/proxy.sh sets it)\n");
        else if (PHASE("byname")) {
                int conns = 8;
                double r[4] = {0};
                unsigned long long cpu[4] = {0};
                for (int k = 0; k < ROUNDS; k++)
                        for (int i = 0; i < n_via; i++) {
                                if (vias[i] == SPLICE)
                                        continue;
                                unsigned long long c0 = relay_cpu_ns(vias[i]);
                                r[vias[i]] += rps(vias[i], false, up_name, conns, secs / ROUNDS) / ROUNDS;
                                cpu[vias[i]] += relay_cpu_ns(vias[i]) - c0;
                        }
                printf("\nsmall requests/s, %d clients, a new plain-HTTP GET of http://%s:%d/ per connection, "
                       "%.0f s each:\n", conns, up_name, upstream_port, secs);
                for (int i = 0; i < n_via; i++)
                        if (vias[i] != SPLICE)
                                printf("  %-6s %9.0f req/s  (%.2fx direct)\n", via_name[vias[i]], r[vias[i]],
                                       r[vias[i]] / r[DIRECT]);
                if (squid_port > 0)
                        printf("  proxy/squid %.2fx\n", r[PROXY] / r[SQUID]);
                printf("  relay CPU per request (user+system): proxy %.1f us", (double)cpu[PROXY] / 1e3 / (r[PROXY] * secs));
                if (squid_port > 0 && squid_pid > 0)
                        printf(", squid %.1f us (proxy/squid CPU %.2fx)", (double)cpu[SQUID] / 1e3 / (r[SQUID] * secs),
                               ((double)cpu[PROXY] / r[PROXY]) / ((double)cpu[SQUID] / r[SQUID]));
                printf("\n");
        }
        printf("\negress events built: %llu\n", (unsigned long long)atomic_load(&events_seen));
        proxy_run_stop(pr);
        printf("egress events after teardown: %llu\n", (unsigned long long)atomic_load(&events_seen));
        return 0;
}

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
 * splice() relay in this file, is the floor for two TCP legs (bench/README.md);
 * a fifth, sockmap, is the same relay with its tunnels relayed in the kernel
 * (a sockhash and an SK_SKB verdict program; bench/README.md "proxy"). Every
 * tunnel contender must carry bytes whole, in order, with each EOF (the bulk
 * stream's pattern, check_tunnel), or the bench stops. Prints figures, never
 * fails on them.
 *
 * usage: bench/proxy.sh [seconds per phase (default 3)] [throughput GiB (default 2)]
 *        (PADDOCK_BENCH_PHASES: a subset of bulk,plain,latency,rps,new,byname,sockmap)
 *        (PADDOCK_BENCH_UPSTREAM_NAME: a name resolving to the upstream, for byname)
 *        (PADDOCK_BENCH_SQUID_PORT: squid's port on 127.0.0.1; unset: no squid column)
 *        (PADDOCK_EGRESS_LOOPS: the proxy's event loops, as the runner-agent's setting)
 *        (PADDOCK_BENCH_SOCKMAP_NODRAIN=1: the sockmap relay shuts a side down at its
 *         peer's EOF at once, to see its checks catch the truncation) */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <netinet/in.h>
#include <linux/bpf.h>
#include <linux/sockios.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_received / tcpi_bytes_acked */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../services/runner-agent/proxy.h"

#define MSG 100
#define ROUNDS 5        /* the latency and req/s phases: slices, the contenders taking turns */
#define CHUNK (256 * 1024)
/* What a bulk stream carries: byte i is pattern[i % PATTERN_PERIOD] (a prime
 * period, so a lost, doubled or reordered piece of any length but a multiple
 * of it shows), checked by the receiver with memcmp. */
#define PATTERN_PERIOD 65521
static unsigned char pattern[CHUNK + PATTERN_PERIOD];

static void pattern_init(void) {
        uint32_t x = 2463534242u;
        for (size_t i = 0; i < sizeof pattern; i++) {
                if (i < PATTERN_PERIOD) {
                        x ^= x << 13, x ^= x >> 17, x ^= x << 5; /* xorshift32 */
                        pattern[i] = (unsigned char)x;
                } else
                        pattern[i] = pattern[i - PATTERN_PERIOD];
        }
}

/* n bytes of the stream from offset off, as pattern's (n <= CHUNK) */
static const unsigned char *pattern_at(uint64_t off) {
        return pattern + off % PATTERN_PERIOD;
}

/* the bytes the upstream's current 'S' stream has written so far (the
 * sockmap phase: how far a stream gets while its client does not read) */
static atomic_ullong upstream_streamed;

/* writes n bytes of the pattern from offset 0; the bytes written */
static uint64_t pattern_write(int fd, uint64_t n, atomic_ullong *progress) {
        uint64_t off = 0;
        while (off < n) {
                size_t k = n - off < CHUNK ? (size_t)(n - off) : CHUNK;
                ssize_t w = write(fd, pattern_at(off), k);
                if (w <= 0)
                        break;
                off += (uint64_t)w;
                if (progress)
                        atomic_store(progress, off);
        }
        return off;
}

/* reads to EOF checking the pattern; the bytes read, *bad set at the
 * first byte that differs */
static uint64_t pattern_read(int fd, char *buf, bool *bad) {
        uint64_t off = 0;
        *bad = false;
        for (;;) {
                ssize_t k = read(fd, buf, CHUNK);
                if (k <= 0)
                        break;
                if (!*bad && memcmp(buf, pattern_at(off), (size_t)k))
                        *bad = true;
                off += (uint64_t)k;
        }
        return off;
}

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

enum via { DIRECT, PROXY, SQUID, SPLICE, SOCKMAP, N_VIA };
static const char *const via_name[] = {"direct", "proxy", "squid", "splice", "sockmap"};

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
 * 'G' (an HTTP GET /<bytes>): answer 200 with that many bytes and close;
 * 'H': read the pattern to EOF, answer its length (the up direction, EOF up,
 * then down after the client's half close, EOF down: check_tunnel) */

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
                pattern_write(fd, total, &upstream_streamed);
        } else if (mode == 'H') {
                /* the check: the pattern up to the client's EOF, then its
                 * length (UINT64_MAX if it differed) down, then EOF */
                char *buf = malloc(CHUNK);
                bool bad;
                uint64_t n = pattern_read(fd, buf, &bad);
                free(buf);
                if (bad)
                        n = UINT64_MAX;
                write_full(fd, &n, sizeof n);
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

/* a server that speaks first (SMTP, SSH): its banner at once, then it
 * reads to the client's EOF */
#define BANNER "220 paddock-bench\r\n"
static void *banner_conn(void *arg) {
        int fd = (int)(intptr_t)arg;
        write_full(fd, BANNER, sizeof BANNER - 1);
        char buf[256];
        while (read(fd, buf, sizeof buf) > 0)
                ;
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

static int upstream_port, proxy_port, squid_port, splice_port, sockmap_port;

static int via_port(enum via via) {
        return via == PROXY ? proxy_port : via == SQUID ? squid_port : via == SOCKMAP ? sockmap_port : splice_port;
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
static atomic_ullong splice_cpu_ns, sockmap_cpu_ns;

static unsigned long long rusage_ns(const struct rusage *ru) {
        return ((unsigned long long)ru->ru_utime.tv_sec + (unsigned long long)ru->ru_stime.tv_sec) * 1000000000ULL +
               ((unsigned long long)ru->ru_utime.tv_usec + (unsigned long long)ru->ru_stime.tv_usec) * 1000ULL;
}

/* a relay thread about to exit adds the CPU it used to *total */
static void thread_cpu_add(atomic_ullong *total) {
        struct rusage ru;
        if (getrusage(RUSAGE_THREAD, &ru) == 0)
                atomic_fetch_add(total, rusage_ns(&ru));
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

/* whether the comm of task dir/id (dir "/proc" or "/proc/self/task")
 * starts with one of the NULL-ended prefixes */
static bool comm_starts(const char *dir, const char *id, const char *const *prefixes) {
        char path[300], comm[40] = "";
        snprintf(path, sizeof path, "%s/%s/comm", dir, id);
        FILE *f = fopen(path, "r");
        if (!f)
                return false;
        bool read = fgets(comm, sizeof comm, f) != NULL;
        fclose(f);
        for (; read && *prefixes; prefixes++)
                if (!strncmp(comm, *prefixes, strlen(*prefixes)))
                        return true;
        return false;
}

static unsigned long long relay_cpu_ns(enum via via) {
        unsigned long long ticks = 0;
        char path[300];
        if (via == SQUID && squid_pid > 0) {
                snprintf(path, sizeof path, "/proc/%d/stat", squid_pid);
                ticks = stat_ticks(path);
        }
        const char *prefix[] = {via == PROXY ? "egress-" : via == SOCKMAP ? "sockmap-accept" : "splice-accept", NULL};
        DIR *d = via == PROXY || via == SPLICE || via == SOCKMAP ? opendir("/proc/self/task") : NULL;
        for (struct dirent *e; d && (e = readdir(d));) {
                if (e->d_name[0] == '.' || !comm_starts("/proc/self/task", e->d_name, prefix))
                        continue;
                snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
                ticks += stat_ticks(path);
        }
        if (d)
                closedir(d);
        return ticks * (1000000000ULL / (unsigned long long)sysconf(_SC_CLK_TCK)) +
               (via == SPLICE ? atomic_load(&splice_cpu_ns) : via == SOCKMAP ? atomic_load(&sockmap_cpu_ns) : 0);
}

/* CPU of everything a relay's work may land on (ns), cumulative: this
 * process (the clients, the upstream, the proxy and the bench's relays),
 * squid, and the kernel's kworker and ksoftirqd threads (an in-kernel
 * relay's psock backlog runs in a kworker, its verdict program in softirq,
 * which the relay's own threads never see). The base for "added over
 * direct". Kernel threads come and go, so theirs is summed as each one's
 * growth since the last call (one born since counts whole; one gone since
 * loses its last stretch). */
static unsigned long long all_cpu_ns(void) {
        static struct kthread_ticks {
                long pid;
                unsigned long long ticks;
        } seen[2][4096];
        static int n_seen, cur;
        static unsigned long long kthread_ticks;
        unsigned long long ticks = stat_ticks("/proc/self/stat");
        char path[300];
        if (squid_pid > 0) {
                snprintf(path, sizeof path, "/proc/%d/stat", squid_pid);
                ticks += stat_ticks(path);
        }
        int n = 0, prev = cur, next = 1 - cur;
        DIR *d = opendir("/proc");
        for (struct dirent *e; d && (e = readdir(d)) && n < 4096;) {
                static const char *const kthreads[] = {"kworker", "ksoftirqd", NULL};
                if (e->d_name[0] < '1' || e->d_name[0] > '9' || !comm_starts("/proc", e->d_name, kthreads))
                        continue;
                snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
                long pid = strtol(e->d_name, NULL, 10);
                unsigned long long t = stat_ticks(path), before = 0;
                for (int i = 0; i < n_seen; i++)
                        if (seen[prev][i].pid == pid) {
                                before = seen[prev][i].ticks <= t ? seen[prev][i].ticks : t;
                                break;
                        }
                kthread_ticks += t - before;
                seen[next][n++] = (struct kthread_ticks){pid, t};
        }
        if (d)
                closedir(d);
        n_seen = n, cur = next;
        return (ticks + kthread_ticks) * (1000000000ULL / (unsigned long long)sysconf(_SC_CLK_TCK));
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
        thread_cpu_add(&splice_cpu_ns);
        return NULL;
}

static void splice_dir_start(int from, int to, pthread_t *t) {
        struct splice_dir *d = malloc(sizeof *d);
        *d = (struct splice_dir){from, to};
        pthread_create(t, NULL, splice_dir_thread, d);
}

/* Reads a CONNECT head whole (the client sends nothing after it before
 * the answer, as the proxy reads it); the port it names (the bench's
 * upstream's address is the only one), or -1 (cfd closed). */
static int connect_head_read(int cfd) {
        char head[512];
        size_t have = 0;
        while (have < 4 || memcmp(head + have - 4, "\r\n\r\n", 4)) {
                ssize_t n = have == sizeof head ? 0 : read(cfd, head + have, sizeof head - have);
                if (n <= 0) {
                        close(cfd);
                        return -1;
                }
                have += (size_t)n;
        }
        head[have - 1] = 0;
        int port = 0;
        if (sscanf(head, "CONNECT %*[^:]:%d", &port) != 1 || port <= 0 || port > 65535) {
                close(cfd);
                return -1;
        }
        return port;
}

/* A bench relay's connection thread, named `name` (not the acceptor's name
 * it inherits: it counts its CPU itself), reads the CONNECT head and
 * connects to the port it names: that socket, or -1 (cfd closed). */
static int relay_conn_dial(int cfd, const char *name) {
        (void)pthread_setname_np(pthread_self(), name);
        int port = connect_head_read(cfd);
        return port < 0 ? -1 : dial(up_addr, port);
}

static void *splice_conn(void *arg) {
        int cfd = (int)(intptr_t)arg;
        int ufd = relay_conn_dial(cfd, "splice-conn");
        if (ufd < 0)
                return NULL;
        write_full(cfd, "HTTP/1.1 200 OK\r\n\r\n", 19);
        pthread_t up, down;
        splice_dir_start(cfd, ufd, &up);
        splice_dir_start(ufd, cfd, &down);
        pthread_join(up, NULL);
        pthread_join(down, NULL);
        close(ufd);
        close(cfd);
        thread_cpu_add(&splice_cpu_ns);
        return NULL;
}

/* a relay's listener on 127.0.0.1, a thread per connection running serve */
static int relay_start(void *(*serve)(void *), const char *name) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof sa;
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 512) < 0 ||
            getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
                die("relay listen");
        accept_start(fd, serve, name);
        return ntohs(sa.sin_port);
}

/* ---- sockmap: the relay taken out of user space ----
 * The same minimal CONNECT relay, but once the tunnel is answered its two
 * sockets go into a sockhash whose SK_SKB stream-verdict program redirects
 * each skb a socket receives to its peer's egress (bpf_sk_redirect_hash):
 * the kernel relays, user space only waits for each side's EOF. The program
 * is a hand-written array of struct bpf_insn loaded with bpf(2) (no libbpf,
 * no clang). A socket's entry is keyed by its PEER's 4-tuple, as the program
 * of a socket builds the key from its own skb's tuple and so finds the peer;
 * no entry (the peer not in yet): SK_PASS, the bytes stay the socket's own.
 * What it settles and what it does not: bench/README.md "proxy", sockmap. */

struct sockmap_key {
        uint32_t remote_ip4, local_ip4; /* network order, as __sk_buff's */
        uint32_t remote_port;           /* __sk_buff's: the be16 port in the high half (little endian) */
        uint32_t local_port;            /* host order */
};

static int sockmap_fd = -1; /* the sockhash, its program attached; -1: no sockmap contender */
/* PADDOCK_BENCH_SOCKMAP_NODRAIN=1: shut a side down at its peer's EOF
 * without waiting for the psock backlog (shows the checks catch the
 * truncation: bench/README.md) */
static bool sockmap_nodrain;
/* the last tunnel's bytes up and down by the kernel's counts, and the
 * tunnels ended (check_tunnel compares them with what it sent) */
static atomic_ullong sockmap_last_up, sockmap_last_down, sockmap_tunnels;

static long bpf_sys(int cmd, union bpf_attr *a) {
        return syscall(__NR_bpf, cmd, a, sizeof *a);
}

#define INSN(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})

/* Makes the sockhash and attaches the verdict program to it; 0 or -errno
 * (EPERM without CAP_BPF/CAP_NET_ADMIN, EINVAL or ENOSYS without the
 * kernel's support), the verifier's log in log. */
static int sockmap_setup(char *log, size_t logsz) {
        union bpf_attr a;
        memset(&a, 0, sizeof a);
        a.map_type = BPF_MAP_TYPE_SOCKHASH;
        a.key_size = sizeof(struct sockmap_key);
        a.value_size = sizeof(uint32_t);
        a.max_entries = 65536;
        int map = (int)bpf_sys(BPF_MAP_CREATE, &a);
        if (map < 0)
                return -errno;
        /* r6 = ctx; the key at r10-16 from the skb's own tuple;
         * bpf_sk_redirect_hash(ctx, map, key, 0 = the peer's egress);
         * return SK_PASS: redirected if it found the peer, else kept */
        const struct bpf_insn prog[] = {
                INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_6, BPF_REG_1, 0, 0),
                INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_2, BPF_REG_6, offsetof(struct __sk_buff, remote_ip4), 0),
                INSN(BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, BPF_REG_2, -16, 0),
                INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_2, BPF_REG_6, offsetof(struct __sk_buff, local_ip4), 0),
                INSN(BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, BPF_REG_2, -12, 0),
                INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_2, BPF_REG_6, offsetof(struct __sk_buff, remote_port), 0),
                INSN(BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, BPF_REG_2, -8, 0),
                INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_2, BPF_REG_6, offsetof(struct __sk_buff, local_port), 0),
                INSN(BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, BPF_REG_2, -4, 0),
                INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_1, BPF_REG_6, 0, 0),
                INSN(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_2, BPF_PSEUDO_MAP_FD, 0, map),
                INSN(0, 0, 0, 0, 0),
                INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_3, BPF_REG_10, 0, 0),
                INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_3, 0, 0, -16),
                INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_4, 0, 0, 0),
                INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_sk_redirect_hash),
                INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, SK_PASS),
                INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
        };
        memset(&a, 0, sizeof a);
        a.prog_type = BPF_PROG_TYPE_SK_SKB;
        a.insns = (uint64_t)(uintptr_t)prog;
        a.insn_cnt = sizeof prog / sizeof prog[0];
        a.license = (uint64_t)(uintptr_t)"GPL";
        a.log_buf = (uint64_t)(uintptr_t)log;
        a.log_size = (uint32_t)logsz;
        a.log_level = 1;
        int prog_fd = (int)bpf_sys(BPF_PROG_LOAD, &a);
        if (prog_fd < 0) {
                int e = -errno;
                close(map);
                return e;
        }
        memset(&a, 0, sizeof a);
        a.target_fd = (uint32_t)map;
        a.attach_bpf_fd = (uint32_t)prog_fd;
        a.attach_type = BPF_SK_SKB_STREAM_VERDICT;
        int r = bpf_sys(BPF_PROG_ATTACH, &a) < 0 ? -errno : 0;
        close(prog_fd); /* the map holds it */
        if (r < 0) {
                close(map);
                return r;
        }
        sockmap_fd = map;
        return 0;
}

/* Puts `to` in the sockhash under the tuple of `from` as from's own verdict
 * program sees it: from's bytes then go to `to`. */
static int sockmap_put(int from, int to) {
        struct sockaddr_in l, r;
        socklen_t ll = sizeof l, rl = sizeof r;
        if (getsockname(from, (struct sockaddr *)&l, &ll) < 0 || getpeername(from, (struct sockaddr *)&r, &rl) < 0)
                return -errno;
        struct sockmap_key k = {.remote_ip4 = r.sin_addr.s_addr, .local_ip4 = l.sin_addr.s_addr,
                                .remote_port = (uint32_t)r.sin_port << 16, .local_port = ntohs(l.sin_port)};
        uint32_t v = (uint32_t)to;
        union bpf_attr a;
        memset(&a, 0, sizeof a);
        a.map_fd = (uint32_t)sockmap_fd;
        a.key = (uint64_t)(uintptr_t)&k;
        a.value = (uint64_t)(uintptr_t)&v;
        a.flags = BPF_ANY;
        return bpf_sys(BPF_MAP_UPDATE_ELEM, &a) < 0 ? -errno : 0;
}

/* bytes the kernel received on fd (its FIN counts one) and bytes written to
 * it so far (acknowledged + still in its send queue) */
static int tcp_counts(int fd, uint64_t *received, uint64_t *written) {
        struct tcp_info ti;
        socklen_t tl = sizeof ti;
        int outq = 0;
        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) < 0 || ioctl(fd, SIOCOUTQ, &outq) < 0)
                return -errno;
        *received = ti.tcpi_bytes_received;
        *written = ti.tcpi_bytes_acked + (uint64_t)outq;
        return 0;
}

/* One side's EOF has come (from, FIN received): wait until every byte the
 * kernel took from it has been written to `to` before shutting `to` down.
 * The verdict program hands a redirected skb to the peer's psock backlog (a
 * workqueue), so a shutdown at the EOF itself would go before bytes still
 * queued there and they would be lost (the backlog's send then fails): seen
 * on this kernel, a 256 MiB stream cut at a few MB. base_*: the counts when
 * the tunnel went into the map (from's CONNECT head, the 200 answer). */
static void sockmap_drain(int from, int to, uint64_t from_base, uint64_t to_base) {
        for (int i = 0;; i++) {
                uint64_t rf = 0, wf = 0, rt = 0, wt = 0;
                if (tcp_counts(from, &rf, &wf) < 0 || tcp_counts(to, &rt, &wt) < 0)
                        break;
                /* rf counts the FIN */
                if (wt - to_base + 1 >= rf - from_base)
                        break;
                struct pollfd p = {.fd = to, .events = 0};
                if (poll(&p, 1, i < 100 ? 0 : 1) > 0)
                        break; /* an error (reset): nothing more goes */
                if (i < 100)
                        sched_yield();
        }
        shutdown(to, SHUT_WR);
}

static void *sockmap_conn(void *arg) {
        int cfd = (int)(intptr_t)arg;
        int ufd = relay_conn_dial(cfd, "sockmap-conn");
        if (ufd < 0)
                return NULL;
        uint64_t cbase = 0, cw = 0, ur = 0, ubase = 0;
        /* into the map before the answer: the client sends nothing before it
         * and the bench's upstream never speaks first, so no byte is in
         * either receive queue when the program starts (bench/README.md:
         * bytes queued before the join stay there, unseen, until the next
         * ones come) */
        if (sockmap_put(cfd, ufd) < 0 || sockmap_put(ufd, cfd) < 0)
                die("sockmap update");
        /* the counts before the answer too: after it, the client's first
         * bytes may already be in cbase, and the drain would end short of
         * them (seen: 168 KiB of an 8 MiB check missing) */
        if (tcp_counts(cfd, &cbase, &cw) < 0 || tcp_counts(ufd, &ur, &ubase) < 0)
                die("TCP_INFO");
        write_full(cfd, "HTTP/1.1 200 OK\r\n\r\n", 19);
        cw += 19; /* cbase: the head, all read; ur: nothing yet */
        /* side i's EOF (its FIN received): drain into the other, shut
         * the other down; done when both have come. An error on a side
         * (a reset) ends the tunnel, but for one: EPIPE on a side already
         * shut down, which the kernel reports when the psock backlog sends
         * the peer's FIN skb (no data: the counts matched) after the
         * shutdown (seen on 6.18: every half close) */
        int fd[2] = {cfd, ufd};
        uint64_t rbase[2] = {cbase, ur}, wbase[2] = {cw, ubase};
        bool eof[2] = {false, false}, shut[2] = {false, false};
        struct pollfd p[2] = {{.fd = cfd, .events = POLLRDHUP}, {.fd = ufd, .events = POLLRDHUP}};
        while (!eof[0] || !eof[1]) {
                if (poll(p, 2, -1) < 0)
                        break;
                bool broken = false;
                for (int i = 0; i < 2; i++) {
                        if (p[i].revents & POLLERR) {
                                int e = 0;
                                socklen_t el = sizeof e;
                                getsockopt(fd[i], SOL_SOCKET, SO_ERROR, &e, &el);
                                if (!(e == EPIPE && shut[i]) && e != 0)
                                        broken = true;
                        }
                        if (!eof[i] && (p[i].revents & POLLRDHUP)) {
                                if (sockmap_nodrain) /* the truncation the drain prevents */
                                        shutdown(fd[1 - i], SHUT_WR);
                                else
                                        sockmap_drain(fd[i], fd[1 - i], rbase[i], wbase[1 - i]);
                                eof[i] = shut[1 - i] = true;
                                p[i].events = 0;
                        }
                }
                if (broken)
                        break;
        }
        /* the egress event's byte counts, from the kernel's: what each side
         * received since the join, its FIN not counted */
        uint64_t rc = 0, ru_ = 0, w;
        if (tcp_counts(cfd, &rc, &w) == 0 && tcp_counts(ufd, &ru_, &w) == 0) {
                atomic_store(&sockmap_last_up, rc - cbase - eof[0]);
                atomic_store(&sockmap_last_down, ru_ - ur - eof[1]);
        }
        atomic_fetch_add(&sockmap_tunnels, 1);
        close(ufd); /* closing takes a socket out of the sockhash */
        close(cfd);
        thread_cpu_add(&sockmap_cpu_ns);
        return NULL;
}

/* A connection to the upstream (or another server of its address),
 * directly or through a CONNECT tunnel of the proxy, squid or the bench's
 * relays. */
static int open_conn_to(enum via via, int port) {
        if (via == DIRECT)
                return dial(up_addr, port);
        int fd = dial(NULL, via_port(via));
        char req[160], resp[512];
        int n = snprintf(req, sizeof req, "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n", up_addr, port,
                         up_addr, port);
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

static int open_conn(enum via via) {
        return open_conn_to(via, upstream_port);
}

/* the bench's own relays speak CONNECT only */
static bool connect_only(enum via via) {
        return via == SPLICE || via == SOCKMAP;
}

/* A contender's tunnel carries 8 MiB of the pattern up whole and in order,
 * the client's EOF (half close) up, then the upstream's answer down after
 * it, then the upstream's EOF down. Prints the outcome; false if any of it
 * failed (squid closes a tunnel at the client's EOF: its answer never comes). */
static bool check_tunnel(enum via via) {
        const uint64_t n = 8 << 20;
        unsigned long long tunnels = atomic_load(&sockmap_tunnels);
        int fd = open_conn(via);
        write_full(fd, "H", 1);
        if (pattern_write(fd, n, NULL) != n)
                die("check write");
        shutdown(fd, SHUT_WR);
        uint64_t echoed = 0;
        char more;
        ssize_t got = 0;
        for (ssize_t k; got < (ssize_t)sizeof echoed && (k = read(fd, (char *)&echoed + got, sizeof echoed - (size_t)got)) > 0;)
                got += k;
        ssize_t eof = got == sizeof echoed ? read(fd, &more, 1) : 0;
        close(fd);
        bool ok = got == sizeof echoed && echoed == n && eof == 0;
        if (ok && via == SOCKMAP) {
                /* its byte counts (TCP_INFO), once its thread has ended */
                for (int i = 0; i < 2000 && atomic_load(&sockmap_tunnels) == tunnels; i++)
                        usleep(1000);
                unsigned long long up = atomic_load(&sockmap_last_up), down = atomic_load(&sockmap_last_down);
                ok = up == n + 1 && down == sizeof echoed;
                printf("  %-7s byte counts from TCP_INFO: up %llu (sent %llu), down %llu (sent %zu)\n", via_name[via],
                       up, (unsigned long long)n + 1, down, sizeof echoed);
        }
        if (ok)
                printf("  %-7s ok: 8 MiB up whole and in order, EOF up, the answer down after it, EOF down\n", via_name[via]);
        else if (via == SQUID && got == 0 && eof == 0)
                printf("  %-7s closes the tunnel at the client's half close (its way: no answer down after it)\n",
                       via_name[via]);
        else
                printf("  %-7s FAILED: %s%llu of %llu bytes%s, then %s\n", via_name[via],
                       got != sizeof echoed ? "no answer down after the client's EOF; " : "the upstream got ",
                       (unsigned long long)(got == sizeof echoed ? echoed : 0), (unsigned long long)n,
                       echoed == UINT64_MAX ? " (not the pattern)" : "", eof == 0 ? "EOF" : "no EOF");
        return ok;
}

static double throughput(enum via via, uint64_t total) {
        int fd = open_conn(via);
        char m = 'S';
        write_full(fd, &m, 1);
        write_full(fd, &total, sizeof total);
        char *buf = malloc(CHUNK);
        bool bad;
        int64_t t0 = now_ns();
        uint64_t got = pattern_read(fd, buf, &bad);
        int64_t t1 = now_ns();
        free(buf);
        close(fd);
        if (got != total || bad) {
                fprintf(stderr, "%s: the bulk stream differs: %llu of %llu bytes%s\n", via_name[via],
                        (unsigned long long)got, (unsigned long long)total, bad ? ", not the pattern sent" : "");
                exit(1);
        }
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

/* the CPU of everything (all_cpu_ns) per unit, and what each contender adds
 * over direct: the relay's whole cost, the kernel's share included */
static void all_cpu_print_n(const enum via *vias, int n_via, const unsigned long long *all, const double *units,
                            const char *unit, double scale, const char *scale_name) {
        printf("  all CPU per %s (this process, squid, kworker+ksoftirqd), added over direct:", unit);
        for (int i = 0; i < n_via; i++) {
                double per = (double)all[vias[i]] / scale / units[vias[i]];
                double base = (double)all[DIRECT] / scale / units[DIRECT];
                if (vias[i] == DIRECT)
                        printf(" direct %.1f %s", per, scale_name);
                else
                        printf(", %s %+.1f", via_name[vias[i]], per - base);
        }
        printf("\n");
}

static void all_cpu_print(const enum via *vias, int n_via, const unsigned long long *all, double units,
                          const char *unit, double scale, const char *scale_name) {
        double n[N_VIA];
        for (int i = 0; i < N_VIA; i++)
                n[i] = units;
        all_cpu_print_n(vias, n_via, all, n, unit, scale, scale_name);
}

/* MemAvailable of /proc/meminfo, kB (0 if unreadable) */
static long long mem_available_kb(void) {
        long long kb = 0;
        char line[128];
        FILE *f = fopen("/proc/meminfo", "r");
        while (f && fgets(line, sizeof line, f))
                if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1)
                        break;
        if (f)
                fclose(f);
        return kb;
}

/* The in-kernel relay's two hazards a proxy cannot live with, measured
 * beside the splice relay (bench/README.md "proxy", sockmap (a) and (e)):
 * a server that speaks first, tries times: how often its banner comes
 * ahead of the relay's 200 or is stranded (not at the client in 200 ms); and a 512 MiB stream whose client does not
 * read for 2 s: how much the upstream got rid of meanwhile, and what the
 * machine's available memory did. */
static void sockmap_hazards(int banner_port, int tries) {
        enum via v[2] = {SPLICE, SOCKMAP};
        printf("\nsockmap hazards, beside splice:\n");
        for (int i = 0; i < 2; i++) {
                int stranded = 0, ahead = 0;
                for (int t = 0; t < tries; t++) {
                        int fd = dial(NULL, via_port(v[i]));
                        char req[160], buf[256];
                        int n = snprintf(req, sizeof req, "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n", up_addr,
                                         banner_port, up_addr, banner_port);
                        write_full(fd, req, (size_t)n);
                        /* the answer's head, then the banner, within 200 ms */
                        const char *want = "HTTP/1.1 200 OK\r\n\r\n" BANNER;
                        size_t have = 0, len = strlen(want);
                        struct pollfd p = {.fd = fd, .events = POLLIN};
                        while (have < len && poll(&p, 1, 200) == 1) {
                                ssize_t k = read(fd, buf + have, len - have);
                                if (k <= 0)
                                        break;
                                have += (size_t)k;
                        }
                        if (have >= sizeof BANNER - 1 && !memcmp(buf, BANNER, sizeof BANNER - 1))
                                ahead++; /* redirected before the relay's own answer */
                        else if (have < len || memcmp(buf, want, len))
                                stranded++;
                        close(fd);
                }
                printf("  %-7s a server that speaks first: its banner ahead of the 200 in %d of %d tunnels, stranded "
                       "(not there in 200 ms) in %d\n", via_name[v[i]], ahead, tries, stranded);
        }
        for (int i = 0; i < 2; i++) {
                const uint64_t total = 512ULL << 20;
                atomic_store(&upstream_streamed, 0);
                int fd = open_conn(v[i]);
                write_full(fd, "S", 1);
                write_full(fd, &total, sizeof total);
                long long m0 = mem_available_kb();
                sleep(2);
                unsigned long long streamed = atomic_load(&upstream_streamed);
                long long m1 = mem_available_kb();
                char *buf = malloc(CHUNK);
                bool bad;
                uint64_t got = pattern_read(fd, buf, &bad);
                free(buf);
                close(fd);
                printf("  %-7s a client not reading for 2 s: the upstream wrote %.1f MiB meanwhile, MemAvailable %+.0f MB "
                       "(then %s)\n", via_name[v[i]], (double)streamed / 1048576.0, (double)(m1 - m0) / 1000.0,
                       got == total && !bad ? "all 512 MiB arrived whole" : "the stream DIFFERS");
                if (got != total || bad)
                        exit(1);
        }
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
        pattern_init();
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
        int banner_port;
        accept_start(listen_any(&banner_port), banner_conn, "upstream");

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
        splice_port = relay_start(splice_conn, "splice-accept");
        /* the in-kernel relay, if this kernel and these privileges allow
         * it (else its column is left out, as a proxy would fall back to
         * its splice relay) */
        static char vlog[16384];
        int smr = sockmap_setup(vlog, sizeof vlog);
        const char *nodrain = getenv("PADDOCK_BENCH_SOCKMAP_NODRAIN");
        sockmap_nodrain = nodrain && *nodrain == '1';
        if (smr == 0)
                sockmap_port = relay_start(sockmap_conn, "sockmap-accept");
        /* the contenders of a tunnel phase: direct first (the ratios' base) */
        enum via vias[N_VIA] = {DIRECT, PROXY};
        int n_via = 2;
        if (squid_port > 0)
                vias[n_via++] = SQUID;
        vias[n_via++] = SPLICE;
        if (smr == 0)
                vias[n_via++] = SOCKMAP;
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
        if (smr == 0)
                printf("sockmap: the same minimal CONNECT relay, its tunnel relayed in the kernel (a sockhash and an "
                       "SK_SKB verdict program: bpf_sk_redirect_hash to the peer's egress)\n");
        else
                printf("sockmap: not measured (bpf: %s%s%s)\n", strerror(-smr), *vlog ? "; verifier: " : "", vlog);
        /* every tunnel contender carries bytes whole and in order both ways,
         * with each EOF (check_tunnel), before any figure */
        printf("\ntunnel check, 3 times each (8 MiB up, half close, answer down, EOF down):\n");
        for (int i = 1; i < n_via; i++)
                for (int k = 0; k < (vias[i] == SQUID ? 1 : 3); k++)
                        if (!check_tunnel(vias[i]) && vias[i] != SQUID)
                                return 1; /* squid's way is its own; ours must hold */

        /* bulk: one CONNECT tunnel streaming `total` bytes down, best of 3,
         * the contenders interleaved */
        if (PHASE("bulk")) {
                double best[N_VIA] = {0};
                unsigned long long cpu[N_VIA] = {0}, all[N_VIA] = {0};
                for (int r = 0; r < 3; r++)
                        for (int i = 0; i < n_via; i++) {
                                unsigned long long c0 = relay_cpu_ns(vias[i]), a0 = all_cpu_ns();
                                double t = throughput(vias[i], total);
                                if (vias[i] == SPLICE || vias[i] == SOCKMAP)
                                        usleep(100000); /* its threads add their CPU as they exit */
                                cpu[vias[i]] += relay_cpu_ns(vias[i]) - c0;
                                all[vias[i]] += all_cpu_ns() - a0;
                                if (t > best[vias[i]])
                                        best[vias[i]] = t;
                        }
                printf("\nbulk, one CONNECT tunnel, %.1f GiB down, best of 3:\n", gib);
                for (int i = 0; i < n_via; i++)
                        printf("  %-7s %8.0f MB/s  (%.2fx direct)\n", via_name[vias[i]], best[vias[i]] / 1e6,
                               best[vias[i]] / best[DIRECT]);
                printf("  proxy/direct %.2fx, proxy/splice %.2fx   [target >= 0.90x direct; issue 10 before: 0.52x]\n",
                       best[PROXY] / best[DIRECT], best[PROXY] / best[SPLICE]);
                /* what the machine's load does not change much: the relay's own CPU */
                printf("  relay CPU per GiB relayed (user+system, all 3 runs): proxy %.0f ms, splice %.0f ms",
                       (double)cpu[PROXY] / 1e6 / (3 * gib), (double)cpu[SPLICE] / 1e6 / (3 * gib));
                if (squid_port > 0 && squid_pid > 0)
                        printf(", squid %.0f ms", (double)cpu[SQUID] / 1e6 / (3 * gib));
                if (sockmap_port)
                        printf(", sockmap %.0f ms (its threads only: the kernel relays)", (double)cpu[SOCKMAP] / 1e6 / (3 * gib));
                printf("\n");
                all_cpu_print(vias, n_via, all, 3 * gib, "GiB", 1e6, "ms");
        }

        /* bulk, plain HTTP: one absolute-form GET answered with `total` bytes
         * (the splice relay speaks CONNECT only) */
        if (PHASE("plain")) {
                double best[N_VIA] = {0};
                for (int r = 0; r < 3; r++)
                        for (int i = 0; i < n_via; i++) {
                                if (connect_only(vias[i]))
                                        continue;
                                double t = plain_throughput(vias[i], total);
                                if (t > best[vias[i]])
                                        best[vias[i]] = t;
                        }
                printf("\nbulk, one plain-HTTP GET, %.1f GiB down, best of 3:\n", gib);
                for (int i = 0; i < n_via; i++)
                        if (!connect_only(vias[i]))
                                printf("  %-7s %8.0f MB/s  (%.2fx direct)\n", via_name[vias[i]], best[vias[i]] / 1e6,
                                       best[vias[i]] / best[DIRECT]);
                printf("  proxy/direct %.2fx   [target >= 0.90x]\n", best[PROXY] / best[DIRECT]);
        }

        /* latency: one reused tunnel, MSG-byte request and answer */
        if (PHASE("latency")) {
                double p50[N_VIA], p99[N_VIA];
                int64_t *lat[N_VIA];
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
                        printf("  %-7s p50 %7.1f us  p99 %7.1f us  added p50 %+6.1f us\n", via_name[vias[i]],
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
                double r[N_VIA] = {0};
                unsigned long long cpu[N_VIA] = {0}, all[N_VIA] = {0};
                for (int k = 0; k < ROUNDS; k++) /* taking turns, as above */
                        for (int i = 0; i < n_via; i++) {
                                unsigned long long c0 = relay_cpu_ns(vias[i]), a0 = all_cpu_ns();
                                r[vias[i]] += rps(vias[i], nc, NULL, conns, secs / ROUNDS) / ROUNDS;
                                if (vias[i] == SPLICE || vias[i] == SOCKMAP)
                                        usleep(100000);
                                cpu[vias[i]] += relay_cpu_ns(vias[i]) - c0;
                                all[vias[i]] += all_cpu_ns() - a0;
                        }
                printf("\nsmall requests/s, %d clients, %s, %.0f s each:\n", conns,
                       nc ? "a new CONNECT tunnel per request" : "reused tunnels (keep-alive)", secs);
                for (int i = 0; i < n_via; i++)
                        printf("  %-7s %9.0f req/s  (%.2fx direct)\n", via_name[vias[i]], r[vias[i]],
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
                if (sockmap_port)
                        printf(", sockmap %.1f us (its threads only)", (double)cpu[SOCKMAP] / 1e3 / (r[SOCKMAP] * secs));
                printf("\n");
                double n_req[N_VIA];
                for (int i = 0; i < n_via; i++)
                        n_req[vias[i]] = r[vias[i]] * secs;
                all_cpu_print_n(vias, n_via, all, n_req, "request", 1e3, "us");
        }
        /* a new plain-HTTP request per connection to the upstream's name:
         * what a name costs the proxy on top of the decision (resolution;
         * squid resolves it too). The splice relay speaks CONNECT only. */
        if (PHASE("byname") && !(up_name && *up_name))
                printf("\nbyname: skipped (PADDOCK_BENCH_UPSTREAM_NAME unset: bench/proxy.sh sets it)\n");
        else if (PHASE("byname")) {
                int conns = 8;
                double r[N_VIA] = {0};
                unsigned long long cpu[N_VIA] = {0};
                for (int k = 0; k < ROUNDS; k++)
                        for (int i = 0; i < n_via; i++) {
                                if (connect_only(vias[i]))
                                        continue;
                                unsigned long long c0 = relay_cpu_ns(vias[i]);
                                r[vias[i]] += rps(vias[i], false, up_name, conns, secs / ROUNDS) / ROUNDS;
                                cpu[vias[i]] += relay_cpu_ns(vias[i]) - c0;
                        }
                printf("\nsmall requests/s, %d clients, a new plain-HTTP GET of http://%s:%d/ per connection, "
                       "%.0f s each:\n", conns, up_name, upstream_port, secs);
                for (int i = 0; i < n_via; i++)
                        if (!connect_only(vias[i]))
                                printf("  %-7s %9.0f req/s  (%.2fx direct)\n", via_name[vias[i]], r[vias[i]],
                                       r[vias[i]] / r[DIRECT]);
                if (squid_port > 0)
                        printf("  proxy/squid %.2fx\n", r[PROXY] / r[SQUID]);
                printf("  relay CPU per request (user+system): proxy %.1f us", (double)cpu[PROXY] / 1e3 / (r[PROXY] * secs));
                if (squid_port > 0 && squid_pid > 0)
                        printf(", squid %.1f us (proxy/squid CPU %.2fx)", (double)cpu[SQUID] / 1e3 / (r[SQUID] * secs),
                               ((double)cpu[PROXY] / r[PROXY]) / ((double)cpu[SQUID] / r[SQUID]));
                printf("\n");
        }
        if (PHASE("sockmap") && sockmap_port)
                sockmap_hazards(banner_port, 200);
        else if (PHASE("sockmap"))
                printf("\nsockmap hazards: skipped (no sockmap contender, above)\n");
        printf("\negress events built: %llu\n", (unsigned long long)atomic_load(&events_seen));
        proxy_run_stop(pr);
        printf("egress events after teardown: %llu\n", (unsigned long long)atomic_load(&events_seen));
        return 0;
}

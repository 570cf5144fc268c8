/* The egress proxy's threads (services/runner-agent/proxy.c, built as the
 * library paddock_runner_proxy): a flood of idle connections and of requests
 * held for an approval is served by a fixed set of threads (the event loop
 * and PROXY_WORKERS workers), counted in /proc/self/task, and neither the
 * flood nor the held requests stop another request from being answered; the
 * held requests are all answered once the approval is decided. Black-holed
 * upstream connects (an address whose SYNs a veth peer drops) hold no
 * decision worker: another request is decided, connected and answered while
 * they wait for their connect timeout (504); names whose DNS server is
 * black-holed hold no decision worker either. A plain-HTTP request is relayed
 * with splice() after its head (the event says relay "splice"), its body
 * framed by Content-Length and nothing after it forwarded. A tunnel copies
 * small reads and splices bulk (relay "copy" / "splice"); a pipe a reset
 * tunnel left bytes in is never another tunnel's. An allowed
 * tunnel is decided with every decision worker held in a slow approval
 * write. A name the run resolved is decided on the loop for a while, with
 * the verdict and event of a fresh resolution.
 *
 * Runs in a network namespace of its own (unshare, root) with only loopback
 * up: the proxy listens on 127.0.0.1 and the name asked for cannot be
 * resolved over any network (nothing leaves the namespace); a veth pair
 * inside it carries 198.18.99.0/24 (benchmarking range, reached through a
 * profile's IP rule): 198.18.99.1 is a local upstream, 198.18.99.2 a static
 * neighbour whose frames the peer drops. Skipped (77) where a network
 * namespace cannot be made; the veth tests are skipped without `ip`. The
 * DNS test points the resolver at the black hole by bind-mounting a
 * resolv.conf in a mount namespace of the test's own (glibc rereads a
 * changed resolv.conf). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../../services/runner-agent/proxy.h"

#define N_IDLE 2500       /* "a few thousand" idle client connections */
#define N_HELD 40         /* requests held for one approval */
#define MAX_EXTRA_THREADS 2 /* threads the flood may add: none expected */

static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static int n_egress, n_requested, n_decided;
static char approval_id[64];
static json_t *egress_events; /* copies of every egress event, in order */
static bool have_veth, have_mntns;
static bool hold_asks;         /* approval_requested (a durable, sync event) waits while set */
static pthread_cond_t asks_cond = PTHREAD_COND_INITIALIZER;
static int n_held_asks;

#define UP_ADDR "198.18.99.1"
#define HOLE_ADDR "198.18.99.2"
#define N_HOLES 16                /* twice the decision workers */
#define BIG (8 << 20)             /* bytes of /big */
#define ECHO (1 << 20)            /* bytes posted to /echo */

static void on_event(void *userdata, const char *kind, json_t *data, bool sync) {
        (void)userdata, (void)sync;
        pthread_mutex_lock(&ev_lock);
        if (!strcmp(kind, "egress")) {
                n_egress++;
                if (!egress_events)
                        egress_events = json_array();
                json_array_append_new(egress_events, json_deep_copy(data));
        }
        else if (!strcmp(kind, "approval_requested")) {
                n_requested++;
                /* a slow durable write: the emitting thread waits here */
                n_held_asks++;
                while (hold_asks)
                        pthread_cond_wait(&asks_cond, &ev_lock);
                n_held_asks--;
                snprintf(approval_id, sizeof approval_id, "%s", json_string_value(json_object_get(data, "approval_id")));
        } else if (!strcmp(kind, "approval_decided"))
                n_decided++;
        pthread_mutex_unlock(&ev_lock);
}

static int count(int *what) {
        pthread_mutex_lock(&ev_lock);
        int n = *what;
        pthread_mutex_unlock(&ev_lock);
        return n;
}

static int threads(void) {
        DIR *d = opendir("/proc/self/task");
        assert_non_null(d);
        int n = 0;
        for (struct dirent *e; (e = readdir(d));)
                n += e->d_name[0] != '.';
        closedir(d);
        return n;
}

static int dial(int port) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                 .sin_port = htons((uint16_t)port)};
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        return fd;
}

static void send_all(int fd, const char *s) {
        size_t n = strlen(s);
        assert_int_equal(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* The whole answer (the proxy closes after it), waiting at most timeout_ms
 * for each read: a liveness bound, never a timing assertion. */
static void read_answer(int fd, char *buf, size_t size, int timeout_ms) {
        size_t have = 0;
        for (;;) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                assert_int_equal(poll(&p, 1, timeout_ms), 1);
                ssize_t n = recv(fd, buf + have, size - 1 - have, 0);
                assert_true(n >= 0);
                if (n == 0)
                        break;
                have += (size_t)n;
        }
        buf[have] = 0;
}

/* user:reviewer decides the last approval asked for in run_id, as the
 * control consumer hands it in. */
static void decide_last_approval(const char *run_id, bool approved) {
        Paddock__V1__ApprovalDecision d = PADDOCK__V1__APPROVAL_DECISION__INIT;
        pthread_mutex_lock(&ev_lock);
        d.approval_id = approval_id;
        d.approved = approved;
        d.decided_by = (char *)"user:reviewer";
        proxy_on_approval(run_id, &d);
        pthread_mutex_unlock(&ev_lock);
}

static void test_flood_and_held_requests_keep_threads_bounded(void **state) {
        (void)state;
        struct proxy_settings s = PROXY_SETTINGS_DEFAULT;
        s.run_max_conns = 4 * N_IDLE;
        s.node_max_conns = 4 * N_IDLE;
        s.run_max_fds = 8 * N_IDLE;
        s.run_max_buffer_bytes = 1ULL << 30;
        struct err_detail err = {0};
        assert_int_equal(proxy_configure(&s, &err), 0);
        int egress_before = count(&n_egress), decided_before = count(&n_decided);

        Paddock__V1__EgressPolicy pol = PADDOCK__V1__EGRESS_POLICY__INIT;
        pol.unknown = (char *)"ask";
        pol.ask_timeout_s = 120;
        struct proxy_run *pr = NULL;
        assert_int_equal(proxy_run_start("00000000-0000-4000-8000-00000000000a", NULL, &pol, on_event, NULL, &pr, &err),
                         0);
        int port = proxy_run_port(pr);

        /* the proxy's own threads exist once a run is served */
        int idle_fd = dial(port);
        usleep(200000);
        close(idle_fd);
        int base = threads();

        static int idle[N_IDLE], held[N_HELD];
        for (int i = 0; i < N_IDLE; i++)
                idle[i] = dial(port);
        for (int i = 0; i < N_HELD; i++) {
                held[i] = dial(port);
                send_all(held[i], "GET http://held.example.invalid/x HTTP/1.1\r\nHost: held.example.invalid\r\n\r\n");
        }
        /* one ask for all of them, then every request waits for it */
        for (int i = 0; i < 200 && count(&n_requested) == 0; i++)
                usleep(50000);
        assert_int_equal(count(&n_requested), 1);

        /* another request is answered while all of them wait */
        char answer[4096];
        int other = dial(port);
        send_all(other, "GET /origin-form HTTP/1.1\r\nHost: a.example\r\n\r\n");
        read_answer(other, answer, sizeof answer, 20000);
        close(other);
        assert_non_null(strstr(answer, "HTTP/1.1 501 "));

        int during = threads();
        print_message("threads: %d before, %d with %d idle and %d held connections\n", base, during, N_IDLE, N_HELD);
        assert_true(during <= base + MAX_EXTRA_THREADS);

        /* the decision answers every held request */
        decide_last_approval("00000000-0000-4000-8000-00000000000a", false);
        for (int i = 0; i < N_HELD; i++) {
                read_answer(held[i], answer, sizeof answer, 20000);
                assert_non_null(strstr(answer, "HTTP/1.1 403 "));
                assert_non_null(strstr(answer, "X-Paddock-Egress: deny"));
                assert_non_null(strstr(answer, "denied by user:reviewer"));
                close(held[i]);
        }
        assert_true(threads() <= base + MAX_EXTRA_THREADS);

        for (int i = 0; i < N_IDLE; i++)
                close(idle[i]);
        pr = proxy_run_stop(pr);
        /* the held requests and the 501, one event each; idle connections
         * that never sent a byte are not requests */
        assert_int_equal(count(&n_egress) - egress_before, N_HELD + 1);
        assert_int_equal(count(&n_decided) - decided_before, 1);
}

/* ---- an upstream on 198.18.99.1:80: /big (BIG bytes), /echo (the body
 * back), else "ok"; it records whether any connection carried "smuggled" ---- */

static atomic_int up_smuggled, up_conns;

static char pattern(size_t i) { return (char)('a' + (i * 7) % 26); }

static void *up_conn_thread(void *arg) {
        int fd = (int)(intptr_t)arg;
        size_t size = ECHO + 65536, have = 0;
        char *buf = malloc(size), chunk[16384];
        assert_non_null(buf);
        char *end = NULL;
        while (!end && have < size - 1) {
                ssize_t n = recv(fd, buf + have, size - 1 - have, 0);
                if (n <= 0)
                        break;
                have += (size_t)n;
                buf[have] = 0;
                end = strstr(buf, "\r\n\r\n");
        }
        if (end) {
                const char *cl = strcasestr(buf, "Content-Length: ");
                size_t want = cl && cl < end ? strtoul(cl + 16, NULL, 10) : 0, head = (size_t)(end + 4 - buf);
                while (have < head + want) {
                        ssize_t n = recv(fd, buf + have, size - 1 - have, 0);
                        if (n <= 0)
                                break;
                        have += (size_t)n;
                }
                if (memmem(buf, have, "smuggled", 8))
                        atomic_fetch_add(&up_smuggled, 1);
                char h[128];
                if (!strncmp(buf, "GET /big ", 9)) {
                        int hl = snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BIG);
                        send(fd, h, (size_t)hl, MSG_NOSIGNAL);
                        for (size_t off = 0; off < BIG; off += sizeof chunk) {
                                for (size_t k = 0; k < sizeof chunk; k++)
                                        chunk[k] = pattern(off + k);
                                if (send(fd, chunk, sizeof chunk, MSG_NOSIGNAL) != (ssize_t)sizeof chunk)
                                        break;
                        }
                } else if (!strncmp(buf, "POST /echo ", 11)) {
                        int hl = snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", have - head);
                        send(fd, h, (size_t)hl, MSG_NOSIGNAL);
                        send(fd, buf + head, have - head, MSG_NOSIGNAL);
                } else {
                        static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        send(fd, ok, sizeof ok - 1, MSG_NOSIGNAL);
                }
                /* the proxy asked Connection: close; anything more it sent would show here */
                shutdown(fd, SHUT_WR);
                for (;;) {
                        ssize_t n = recv(fd, buf, size - 1, 0);
                        if (n <= 0)
                                break;
                        if (memmem(buf, (size_t)n, "smuggled", 8))
                                atomic_fetch_add(&up_smuggled, 1);
                }
        }
        free(buf);
        close(fd);
        return NULL;
}

static void *up_accept_thread(void *arg) {
        int lfd = (int)(intptr_t)arg;
        for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        continue;
                atomic_fetch_add(&up_conns, 1);
                pthread_t t;
                if (pthread_create(&t, NULL, up_conn_thread, (void *)(intptr_t)fd) == 0)
                        pthread_detach(t);
                else
                        close(fd);
        }
        return NULL;
}

static struct proxy_run *start_veth_run_policy(const char *id, const char *host_rule, const char *unknown) {
        static bool upstream_started;
        if (!upstream_started) {
                int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                int one = 1;
                setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
                struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(80)};
                inet_pton(AF_INET, UP_ADDR, &sa.sin_addr);
                assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
                assert_int_equal(listen(lfd, 128), 0);
                pthread_t t;
                assert_int_equal(pthread_create(&t, NULL, up_accept_thread, (void *)(intptr_t)lfd), 0);
                pthread_detach(t);
                upstream_started = true;
        }
        struct proxy_settings s = PROXY_SETTINGS_DEFAULT;
        struct err_detail err = {0};
        assert_int_equal(proxy_configure(&s, &err), 0);
        static Paddock__V1__EgressRule rule = PADDOCK__V1__EGRESS_RULE__INIT, named = PADDOCK__V1__EGRESS_RULE__INIT;
        static Paddock__V1__EgressRule *rules[] = {&rule, &named};
        rule.host = (char *)"198.18.99.0/24";
        rule.port = 0;
        rule.source = (char *)"profile:test";
        named.host = (char *)host_rule;
        named.port = 0;
        named.source = (char *)"allow";
        Paddock__V1__EgressPolicy pol = PADDOCK__V1__EGRESS_POLICY__INIT;
        pol.n_rules = host_rule ? 2 : 1;
        pol.rules = rules;
        pol.unknown = (char *)unknown;
        pol.ask_timeout_s = 120;
        struct proxy_run *pr = NULL;
        assert_int_equal(proxy_run_start(id, NULL, &pol, on_event, NULL, &pr, &err), 0);
        return pr;
}

static struct proxy_run *start_veth_run_rule(const char *id, const char *host_rule) {
        return start_veth_run_policy(id, host_rule, "deny");
}

static struct proxy_run *start_veth_run(const char *id) { return start_veth_run_rule(id, NULL); }

/* The last egress event whose path is path (a copy the caller owns). */
static json_t *egress_of(const char *path) {
        json_t *found = NULL;
        pthread_mutex_lock(&ev_lock);
        size_t i;
        json_t *e;
        json_array_foreach(egress_events, i, e) {
                const char *p = json_string_value(json_object_get(e, "path"));
                if (p && !strcmp(p, path)) {
                        json_decref(found);
                        found = json_incref(e);
                }
        }
        pthread_mutex_unlock(&ev_lock);
        assert_non_null(found);
        return found;
}

static void test_blackholed_connects_hold_no_decision(void **state) {
        (void)state;
        if (!have_veth)
                skip();
        struct proxy_run *pr = start_veth_run("00000000-0000-4000-8000-00000000000b");
        int port = proxy_run_port(pr);

        /* more black-holed connects than decision workers, tunnels and plain */
        int hole[N_HOLES];
        for (int i = 0; i < N_HOLES; i++) {
                hole[i] = dial(port);
                send_all(hole[i], i % 2 ? "CONNECT " HOLE_ADDR ":443 HTTP/1.1\r\nHost: " HOLE_ADDR ":443\r\n\r\n"
                                        : "GET http://" HOLE_ADDR "/hole HTTP/1.1\r\nHost: " HOLE_ADDR "\r\n\r\n");
        }
        usleep(300000); /* let them reach their connect (a liveness pause, nothing is timed) */

        /* another request is decided, connected and answered meanwhile */
        char answer[4096];
        int other = dial(port);
        send_all(other, "GET http://" UP_ADDR "/small HTTP/1.1\r\nHost: " UP_ADDR "\r\n\r\n");
        read_answer(other, answer, sizeof answer, 20000);
        close(other);
        assert_non_null(strstr(answer, "HTTP/1.1 200 OK"));
        assert_non_null(strstr(answer, "\r\n\r\nok"));

        /* ... while every black-holed connect is still waiting: not one answered */
        for (int i = 0; i < N_HOLES; i++) {
                struct pollfd p = {.fd = hole[i], .events = POLLIN};
                assert_int_equal(poll(&p, 1, 0), 0);
        }
        /* then each ends at the connect timeout with 504 */
        for (int i = 0; i < N_HOLES; i++) {
                read_answer(hole[i], answer, sizeof answer, 3 * PROXY_CONNECT_TIMEOUT_MS);
                assert_non_null(strstr(answer, "HTTP/1.1 504 "));
                assert_non_null(strstr(answer, "could not connect to " HOLE_ADDR));
                close(hole[i]);
        }
        pr = proxy_run_stop(pr);
}

static void test_plain_relay_spliced(void **state) {
        (void)state;
        if (!have_veth)
                skip();
        struct proxy_run *pr = start_veth_run("00000000-0000-4000-8000-00000000000c");
        int port = proxy_run_port(pr);

        /* a large answer, intact */
        int fd = dial(port);
        send_all(fd, "GET http://" UP_ADDR "/big HTTP/1.1\r\nHost: " UP_ADDR "\r\n\r\n");
        static char big[BIG + 4096];
        read_answer(fd, big, sizeof big, 20000);
        close(fd);
        char *body = strstr(big, "\r\n\r\n");
        assert_non_null(body);
        body += 4;
        assert_int_equal(strlen(body), BIG);
        for (size_t i = 0; i < BIG; i++)
                if (body[i] != pattern(i))
                        fail_msg("byte %zu of /big differs", i);

        /* a body framed by its Content-Length, echoed; a pipelined request
         * after it is read and dropped, never sent upstream */
        static char req[ECHO + 4096], ans[ECHO + 4096];
        int hl = snprintf(req, sizeof req, "POST http://" UP_ADDR "/echo HTTP/1.1\r\nHost: " UP_ADDR
                                           "\r\nContent-Length: %d\r\n\r\n", ECHO);
        for (size_t i = 0; i < ECHO; i++)
                req[hl + i] = pattern(i + 3);
        static const char smuggled[] = "GET http://" UP_ADDR "/smuggled HTTP/1.1\r\nHost: " UP_ADDR "\r\n\r\n";
        memcpy(req + hl + ECHO, smuggled, sizeof smuggled - 1);
        size_t total = (size_t)hl + ECHO + sizeof smuggled - 1;
        fd = dial(port);
        for (size_t off = 0; off < total;) {
                ssize_t n = send(fd, req + off, total - off, MSG_NOSIGNAL);
                assert_true(n > 0);
                off += (size_t)n;
        }
        read_answer(fd, ans, sizeof ans, 20000);
        close(fd);
        body = strstr(ans, "\r\n\r\n");
        assert_non_null(body);
        assert_non_null(strstr(ans, "HTTP/1.1 200 OK"));
        assert_int_equal(strlen(body + 4), ECHO);
        assert_memory_equal(body + 4, req + hl, ECHO);

        pr = proxy_run_stop(pr);
        assert_int_equal(atomic_load(&up_smuggled), 0);

        json_t *e = egress_of("/big");
        assert_string_equal(json_string_value(json_object_get(e, "relay")), "splice");
        assert_true(json_integer_value(json_object_get(e, "bytes_down")) > BIG);
        json_decref(e);
        e = egress_of("/echo");
        assert_string_equal(json_string_value(json_object_get(e, "decision")), "allow");
        assert_string_equal(json_string_value(json_object_get(e, "relay")), "splice");
        assert_true(json_integer_value(json_object_get(e, "bytes_up")) > ECHO);
        assert_true(json_integer_value(json_object_get(e, "bytes_down")) > ECHO);
        assert_non_null(strstr(json_string_value(json_object_get(e, "reason")), "not forwarded"));
        json_decref(e);
}

/* The CONNECT tunnel's egress event whose bytes_down is in [lo, hi) (a copy the caller owns). */
static json_t *tunnel_event(json_int_t lo, json_int_t hi) {
        json_t *found = NULL;
        pthread_mutex_lock(&ev_lock);
        size_t i;
        json_t *e;
        json_array_foreach(egress_events, i, e) {
                const char *m = json_string_value(json_object_get(e, "method"));
                json_int_t down = json_integer_value(json_object_get(e, "bytes_down"));
                if (m && !strcmp(m, "CONNECT") && down >= lo && down < hi) {
                        json_decref(found);
                        found = json_incref(e);
                }
        }
        pthread_mutex_unlock(&ev_lock);
        assert_non_null(found);
        return found;
}

/* One plain-HTTP request through a CONNECT tunnel to the upstream; the
 * answer (after the proxy's 200 and the upstream's head) into buf, returns
 * its body. */
static char *tunnel_get(int port, const char *path, char *buf, size_t size) {
        int fd = dial(port);
        char req[256];
        snprintf(req, sizeof req,
                 "CONNECT " UP_ADDR ":80 HTTP/1.1\r\nHost: " UP_ADDR ":80\r\n\r\n"
                 "GET %s HTTP/1.1\r\nHost: " UP_ADDR "\r\n\r\n", path);
        send_all(fd, req);
        read_answer(fd, buf, size, 20000);
        close(fd);
        assert_non_null(strstr(buf, "HTTP/1.1 200 Connection established\r\n"));
        char *head = strstr(buf, "\r\n\r\n");
        assert_non_null(head);
        assert_non_null(strstr(head + 4, "HTTP/1.1 200 OK\r\n"));
        char *body = strstr(head + 4, "\r\n\r\n");
        assert_non_null(body);
        return body + 4;
}

/* body is /big, whole and intact (what: the tunnel, for the failure). */
static void assert_big(const char *body, const char *what) {
        assert_int_equal(strlen(body), BIG);
        for (size_t i = 0; i < BIG; i++)
                if (body[i] != pattern(i))
                        fail_msg("byte %zu of /big through %s differs", i, what);
}

/* A tunnel relays small reads by copying them through the loop's buffer
 * (cheaper than two splices for a few hundred bytes) and bulk with splice():
 * the event's relay says which path carried most of the bytes, and the bytes
 * arrive intact either way. */
static void test_tunnel_relay_adapts(void **state) {
        (void)state;
        if (!have_veth)
                skip();
        struct proxy_run *pr = start_veth_run("00000000-0000-4000-8000-00000000000e");
        int port = proxy_run_port(pr);

        static char big[BIG + 4096];
        char *body = tunnel_get(port, "/", big, sizeof big);
        assert_string_equal(body, "ok");
        assert_big(tunnel_get(port, "/big", big, sizeof big), "the tunnel");
        pr = proxy_run_stop(pr);

        json_t *e = tunnel_event(1, 4096);
        assert_string_equal(json_string_value(json_object_get(e, "decision")), "allow");
        assert_string_equal(json_string_value(json_object_get(e, "relay")), "copy");
        json_decref(e);
        e = tunnel_event(BIG, BIG + 4096);
        assert_string_equal(json_string_value(json_object_get(e, "decision")), "allow");
        assert_string_equal(json_string_value(json_object_get(e, "relay")), "splice");
        json_decref(e);
}

/* A tunnel's pipes go back to its loop for the next tunnels only when
 * empty: tunnels whose client resets the connection in the middle of /big
 * (their download pipes full) are followed by tunnels that must get their
 * own answer, /big intact and nothing before it, on every loop. */
static void test_tunnel_pipes_reused_only_empty(void **state) {
        (void)state;
        if (!have_veth)
                skip();
        struct proxy_run *pr = start_veth_run("00000000-0000-4000-8000-000000000010");
        int port = proxy_run_port(pr);
        static char ans[64], whole[BIG + 4096];
        for (int round = 0; round < 4; round++) {
                int before = count(&n_egress);
                int big[2];
                for (int i = 0; i < 2; i++) {
                        big[i] = dial(port);
                        send_all(big[i], "CONNECT " UP_ADDR ":80 HTTP/1.1\r\nHost: " UP_ADDR ":80\r\n\r\n"
                                         "GET /big HTTP/1.1\r\nHost: " UP_ADDR "\r\n\r\n");
                }
                for (int i = 0; i < 2; i++) {
                        struct pollfd p = {.fd = big[i], .events = POLLIN};
                        assert_int_equal(poll(&p, 1, 20000), 1);
                        assert_true(recv(big[i], ans, 64, 0) > 0);
                }
                usleep(100000); /* the proxy's pipes fill while the client reads no more */
                for (int i = 0; i < 2; i++)
                        close(big[i]); /* unread bytes: a reset */
                for (int i = 0; i < 200 && count(&n_egress) < before + 2; i++)
                        usleep(20000);
                assert_true(count(&n_egress) >= before + 2);
                /* /big goes through the download pipe (bulk is spliced) */
                for (int i = 0; i < 2; i++) {
                        char *body = tunnel_get(port, "/big", whole, sizeof whole);
                        static const char own[] = "HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200 OK\r\n";
                        if (strncmp(whole, own, sizeof own - 1))
                                fail_msg("round %d: the tunnel's answer does not start with its own: %.60s", round, whole);
                        char what[64];
                        snprintf(what, sizeof what, "the tunnel of round %d", round);
                        assert_big(body, what);
                }
        }
        pr = proxy_run_stop(pr);
        json_t *e = tunnel_event(1, BIG);
        json_decref(e);
}

/* An allowed tunnel needs no decision worker: with every worker held in a
 * slow durable approval_requested write (one ask per worker, each for its
 * own name, which does not resolve: asking is harmless), a CONNECT to an address a rule allows is still decided (on
 * the event loop), connected and relayed. */
static void test_allowed_needs_no_worker(void **state) {
        (void)state;
        if (!have_veth)
                skip();
        struct proxy_run *pr = start_veth_run_policy("00000000-0000-4000-8000-00000000000f", NULL, "ask");
        int port = proxy_run_port(pr);
        pthread_mutex_lock(&ev_lock);
        hold_asks = true;
        pthread_mutex_unlock(&ev_lock);
        enum { N_ASKS = 8 }; /* PROXY_WORKERS */
        int asks[N_ASKS];
        for (int i = 0; i < N_ASKS; i++) {
                char req[160];
                snprintf(req, sizeof req, "CONNECT ask%d.example.invalid:443 HTTP/1.1\r\nHost: ask%d.example.invalid:443\r\n\r\n",
                         i, i);
                asks[i] = dial(port);
                send_all(asks[i], req);
        }
        for (int i = 0; i < 200 && count(&n_held_asks) < N_ASKS; i++)
                usleep(50000);
        assert_int_equal(count(&n_held_asks), N_ASKS);

        static char ans[8192];
        char *body = tunnel_get(port, "/", ans, sizeof ans);
        assert_string_equal(body, "ok");

        pthread_mutex_lock(&ev_lock);
        hold_asks = false;
        pthread_cond_broadcast(&asks_cond);
        pthread_mutex_unlock(&ev_lock);
        pr = proxy_run_stop(pr);
        for (int i = 0; i < N_ASKS; i++)
                close(asks[i]);
}

/* Writes text into path, in place (a file bind-mounted somewhere stays
 * the one mounted; glibc reads /etc/hosts again on every lookup). */
static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        assert_true(fputs(text, f) >= 0);
        assert_int_equal(fclose(f), 0);
}

/* A file of the test's own holding text, bind-mounted over target in the
 * test's mount namespace (nobody else sees it); its name into path (to
 * rewrite it, then umount target and unlink it). False, nothing left, when
 * it cannot be mounted. */
static bool mount_over(const char *target, const char *text, char path[64]) {
        snprintf(path, 64, "/tmp/paddock-proxy-etc.XXXXXX");
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        close(fd);
        write_file(path, text);
        if (mount(path, target, NULL, MS_BIND, NULL) == 0)
                return true;
        unlink(path);
        return false;
}

static void test_blackholed_dns_holds_no_decision(void **state) {
        (void)state;
        if (!have_veth || !have_mntns)
                skip();
        char conf[64];
        if (!mount_over("/etc/resolv.conf", "nameserver " HOLE_ADDR "\noptions timeout:1 attempts:1\n", conf))
                skip();
        struct proxy_run *pr = start_veth_run_rule("00000000-0000-4000-8000-00000000000d", "*.slow.example");
        int port = proxy_run_port(pr);

        /* more names than decision workers, all waiting on the black-holed DNS server */
        int slow[N_HOLES];
        for (int i = 0; i < N_HOLES; i++) {
                char req[256];
                snprintf(req, sizeof req, "GET http://n%d.slow.example/ HTTP/1.1\r\nHost: n%d.slow.example\r\n\r\n", i, i);
                slow[i] = dial(port);
                send_all(slow[i], req);
        }
        usleep(300000); /* a liveness pause, nothing is timed */

        char answer[4096];
        int other = dial(port);
        send_all(other, "GET http://" UP_ADDR "/small HTTP/1.1\r\nHost: " UP_ADDR "\r\n\r\n");
        read_answer(other, answer, sizeof answer, 20000);
        close(other);
        assert_non_null(strstr(answer, "HTTP/1.1 200 OK"));
        int answered = 0;
        for (int i = 0; i < N_HOLES; i++) {
                struct pollfd p = {.fd = slow[i], .events = POLLIN};
                answered += poll(&p, 1, 0);
        }
        /* the four resolvers may have finished a first round by now, never most */
        print_message("names answered when the literal was: %d of %d\n", answered, N_HOLES);
        assert_true(answered <= N_HOLES / 2);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < N_HOLES; i++) {
                read_answer(slow[i], answer, sizeof answer, 60000);
                assert_non_null(strstr(answer, "HTTP/1.1 502 "));
                assert_non_null(strstr(answer, "could not resolve"));
                close(slow[i]);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        print_message("all names answered %.1f s later\n", (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
        pr = proxy_run_stop(pr);
        assert_int_equal(umount("/etc/resolv.conf"), 0);
        unlink(conf);
}

/* A plain GET of http://host<path> through the proxy: its answer into buf. */
static void plain_get(int port, const char *host, const char *path, char *buf, size_t size) {
        char req[512];
        snprintf(req, sizeof req, "GET http://%s%s HTTP/1.1\r\nHost: %s\r\n\r\n", host, path, host);
        int fd = dial(port);
        send_all(fd, req);
        read_answer(fd, buf, size, 20000);
        close(fd);
}

static void assert_same_verdict(json_t *a, json_t *b) {
        static const char *const keys[] = {"host", "port", "method", "decision", "rule", "reason"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
                if (!json_equal(json_object_get(a, keys[k]), json_object_get(b, keys[k]))) {
                        char *x = json_dumps(a, JSON_COMPACT), *y = json_dumps(b, JSON_COMPACT);
                        fail_msg("%s differs: %s vs %s", keys[k], x, y);
                }
}

/* A run of the veth upstream (start_veth_run_policy) with /etc/hosts saying
 * hosts_text (mount_over; its file's name into hosts), or NULL when the
 * test cannot run here (skip). hosts_done() after proxy_run_stop(). */
static struct proxy_run *start_with_hosts(const char *id, const char *hosts_text, const char *host_rule,
                                          const char *unknown, char hosts[64]) {
        if (!have_veth || !have_mntns || !mount_over("/etc/hosts", hosts_text, hosts))
                return NULL;
        return start_veth_run_policy(id, host_rule, unknown);
}

static void hosts_done(const char *hosts) {
        assert_int_equal(umount("/etc/hosts"), 0);
        unlink(hosts);
}

/* A name the run resolved is decided and connected on its event loop for 5
 * s (proxy.c NAME_CACHE_US), no resolver thread asked: the verdict and the
 * event are those of a fresh resolution, an allowed address relayed and an
 * address no rule covers (a private one: the DNS rebinding check) refused
 * with the same reason; a name that changes its address meanwhile is
 * resolved again only once that time is over. */
static void test_resolved_name_decided_on_loop(void **state) {
        (void)state;
        char hosts[64];
        struct proxy_run *pr = start_with_hosts("00000000-0000-4000-8000-000000000010",
                                                UP_ADDR " up.cache.example\n10.9.9.9 priv.cache.example\n",
                                                "*.cache.example", "deny", hosts);
        if (!pr)
                skip();
        int port = proxy_run_port(pr);
        char answer[4096];

        /* first by a resolver thread, then from what the run resolved */
        plain_get(port, "up.cache.example", "/up1", answer, sizeof answer);
        assert_non_null(strstr(answer, "HTTP/1.1 200 OK"));
        plain_get(port, "up.cache.example", "/up2", answer, sizeof answer);
        assert_non_null(strstr(answer, "HTTP/1.1 200 OK"));
        assert_non_null(strstr(answer, "\r\n\r\nok"));
        plain_get(port, "priv.cache.example", "/priv1", answer, sizeof answer);
        assert_non_null(strstr(answer, "HTTP/1.1 403 "));
        plain_get(port, "priv.cache.example", "/priv2", answer, sizeof answer);
        assert_non_null(strstr(answer, "HTTP/1.1 403 "));
        assert_non_null(strstr(answer, "X-Paddock-Egress: deny"));

        /* the name now says the private address: the run still connects to
         * what it resolved (checked again), until that is 5 s old */
        write_file(hosts, "10.9.9.9 up.cache.example\n10.9.9.9 priv.cache.example\n");
        plain_get(port, "up.cache.example", "/up3", answer, sizeof answer);
        assert_non_null(strstr(answer, "HTTP/1.1 200 OK"));
        usleep(5300000);
        plain_get(port, "up.cache.example", "/up4", answer, sizeof answer);
        assert_non_null(strstr(answer, "HTTP/1.1 403 "));
        pr = proxy_run_stop(pr);

        json_t *up1 = egress_of("/up1"), *up2 = egress_of("/up2"), *up3 = egress_of("/up3"), *up4 = egress_of("/up4");
        json_t *priv1 = egress_of("/priv1"), *priv2 = egress_of("/priv2");
        assert_string_equal(json_string_value(json_object_get(up1, "decision")), "allow");
        assert_string_equal(json_string_value(json_object_get(up1, "reason")), "allowed by rule");
        assert_same_verdict(up1, up2);
        assert_same_verdict(up1, up3);
        assert_string_equal(json_string_value(json_object_get(priv1, "decision")), "deny");
        const char *why = json_string_value(json_object_get(priv1, "reason"));
        assert_non_null(strstr(why, "private address 10.9.9.9 is not in an IP rule of an approved egress profile"));
        assert_non_null(strstr(why, "DNS rebinding protection"));
        assert_same_verdict(priv1, priv2);
        assert_string_equal(json_string_value(json_object_get(up4, "reason")),
                            "private address 10.9.9.9 is not in an IP rule of an approved egress profile for port "
                            "80: up.cache.example resolves to it (DNS rebinding protection)");
        json_decref(up1), json_decref(up2), json_decref(up3), json_decref(up4);
        json_decref(priv1), json_decref(priv2);
        hosts_done(hosts);
}

/* The same with the run's `unknown: ask`: a name resolved for its ask is
 * asked for once; the next request within 5 s, decided on the loop from
 * what the run resolved (the name's new address is not looked at yet),
 * joins that approval (same rule and reason); a name that resolved into
 * the platform floor is refused at once both times, no approval asked,
 * with the same reason. */
static void test_resolved_name_asked_alike(void **state) {
        (void)state;
        char hosts[64];
        struct proxy_run *pr = start_with_hosts("00000000-0000-4000-8000-000000000011",
                                                UP_ADDR " ask.cache.example\n127.0.0.2 floor.cache.example\n", NULL,
                                                "ask", hosts);
        if (!pr)
                skip();
        int port = proxy_run_port(pr);
        int requested = count(&n_requested);
        char answer[4096];

        plain_get(port, "floor.cache.example", "/f1", answer, sizeof answer);
        assert_non_null(strstr(answer, "HTTP/1.1 403 "));
        write_file(hosts, UP_ADDR " ask.cache.example\n" UP_ADDR " floor.cache.example\n");
        plain_get(port, "floor.cache.example", "/f2", answer, sizeof answer);
        assert_non_null(strstr(answer, "HTTP/1.1 403 "));
        assert_int_equal(count(&n_requested), requested);

        /* the first request waits for its approval, then goes through */
        int fd = dial(port);
        send_all(fd, "GET http://ask.cache.example/a1 HTTP/1.1\r\nHost: ask.cache.example\r\n\r\n");
        for (int i = 0; i < 200 && count(&n_requested) == requested; i++)
                usleep(20000);
        assert_int_equal(count(&n_requested), requested + 1);
        decide_last_approval("00000000-0000-4000-8000-000000000011", true);
        read_answer(fd, answer, sizeof answer, 20000);
        close(fd);
        assert_non_null(strstr(answer, "HTTP/1.1 200 OK"));
        write_file(hosts, "127.0.0.2 ask.cache.example\n" UP_ADDR " floor.cache.example\n");
        plain_get(port, "ask.cache.example", "/a2", answer, sizeof answer);
        assert_non_null(strstr(answer, "HTTP/1.1 200 OK"));
        assert_int_equal(count(&n_requested), requested + 1);
        pr = proxy_run_stop(pr);

        json_t *f1 = egress_of("/f1"), *f2 = egress_of("/f2"), *a1 = egress_of("/a1"), *a2 = egress_of("/a2");
        assert_string_equal(json_string_value(json_object_get(f1, "decision")), "deny");
        assert_non_null(strstr(json_string_value(json_object_get(f1, "reason")), "platform egress floor: loopback"));
        assert_same_verdict(f1, f2);
        assert_string_equal(json_string_value(json_object_get(a1, "decision")), "allow");
        assert_string_equal(json_string_value(json_object_get(a1, "reason")), "approved by user:reviewer");
        assert_same_verdict(a1, a2);
        json_decref(f1), json_decref(f2), json_decref(a1), json_decref(a2);
        hosts_done(hosts);
}

/* The veth pair and the black-holed neighbour, in this process's network
 * namespace (made by main). */
static bool setup_veth(void) {
        return system("ip link add pdkp0 type veth peer name pdkp1 >/dev/null 2>&1 && "
                      "ip addr add " UP_ADDR "/24 dev pdkp0 && ip link set pdkp0 up && ip link set pdkp1 up && "
                      "ip neigh replace " HOLE_ADDR " lladdr 02:00:00:00:99:02 dev pdkp0 nud permanent") == 0;
}

int main(void) {
        /* before any thread: the namespace is the process's */
        if (unshare(CLONE_NEWNET) < 0) {
                fprintf(stderr, "test_proxy_loop: cannot make a network namespace (%s): skipped\n", strerror(errno));
                return 77;
        }
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct ifreq ifr = {0};
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
        if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0 || (ifr.ifr_flags |= IFF_UP, ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)) {
                fprintf(stderr, "test_proxy_loop: cannot bring up loopback: skipped\n");
                return 77;
        }
        close(fd);
        /* a mount namespace of our own, so the DNS test's resolv.conf is seen by nobody else */
        have_mntns = unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
        have_veth = setup_veth();
        if (!have_veth)
                fprintf(stderr, "test_proxy_loop: cannot make a veth pair: the upstream tests are skipped\n");
        const struct CMUnitTest tests[] = {
                /* first: the resolver threads then start under its resolv.conf
                 * and take its options (glibc keeps a thread's resolver
                 * options when resolv.conf changes, only the servers reload) */
                cmocka_unit_test(test_blackholed_dns_holds_no_decision),
                cmocka_unit_test(test_flood_and_held_requests_keep_threads_bounded),
                cmocka_unit_test(test_blackholed_connects_hold_no_decision),
                cmocka_unit_test(test_plain_relay_spliced),
                cmocka_unit_test(test_tunnel_relay_adapts),
                cmocka_unit_test(test_tunnel_pipes_reused_only_empty),
                cmocka_unit_test(test_allowed_needs_no_worker),
                cmocka_unit_test(test_resolved_name_decided_on_loop),
                cmocka_unit_test(test_resolved_name_asked_alike),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

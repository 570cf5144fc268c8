/* The egress proxy's threads (services/runner-agent/proxy.c, built as the
 * library paddock_runner_proxy): a flood of idle connections and of requests
 * held for an approval is served by a fixed set of threads (the event loop
 * and PROXY_WORKERS workers), counted in /proc/self/task, and neither the
 * flood nor the held requests stop another request from being answered; the
 * held requests are all answered once the approval is decided.
 *
 * Runs in a network namespace of its own (unshare, root) with only loopback
 * up: the proxy listens on 127.0.0.1 and the name asked for cannot be
 * resolved over any network (nothing leaves the namespace). Skipped (77)
 * where a network namespace cannot be made. */
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
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../../services/runner-agent/proxy.h"

#define N_IDLE 2500       /* "a few thousand" idle client connections */
#define N_HELD 40         /* requests held for one approval */
#define MAX_EXTRA_THREADS 2 /* threads the flood may add: none expected */

static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static int n_egress, n_requested, n_decided;
static char approval_id[64];

static void on_event(void *userdata, const char *kind, json_t *data, bool sync) {
        (void)userdata, (void)sync;
        pthread_mutex_lock(&ev_lock);
        if (!strcmp(kind, "egress"))
                n_egress++;
        else if (!strcmp(kind, "approval_requested")) {
                n_requested++;
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

static void test_flood_and_held_requests_keep_threads_bounded(void **state) {
        (void)state;
        struct proxy_settings s = PROXY_SETTINGS_DEFAULT;
        s.run_max_conns = 4 * N_IDLE;
        s.node_max_conns = 4 * N_IDLE;
        s.run_max_fds = 8 * N_IDLE;
        s.run_max_buffer_bytes = 1ULL << 30;
        struct err_detail err = {0};
        assert_int_equal(proxy_configure(&s, &err), 0);

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
        Paddock__V1__ApprovalDecision d = PADDOCK__V1__APPROVAL_DECISION__INIT;
        pthread_mutex_lock(&ev_lock);
        d.approval_id = approval_id;
        d.approved = false;
        d.decided_by = (char *)"user:reviewer";
        proxy_on_approval("00000000-0000-4000-8000-00000000000a", &d);
        pthread_mutex_unlock(&ev_lock);
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
        assert_int_equal(count(&n_egress), N_HELD + 1);
        assert_int_equal(count(&n_decided), 1);
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
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_flood_and_held_requests_keep_threads_bounded),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

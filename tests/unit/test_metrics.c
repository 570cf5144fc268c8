/* Prometheus text exposition of registered counters and gauges. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/metrics.h"

static struct metric events_total = {.name = "paddock_test_events_total", .help = "events persisted",
                                     .type = METRIC_COUNTER};
static struct metric running = {.name = "paddock_test_running", .help = "runs running now", .type = METRIC_GAUGE};
static struct metric refused_a = {.name = "paddock_test_refused_total", .help = "refused, by reason",
                                  .type = METRIC_COUNTER, .labels = "reason=\"a\""};
static struct metric refused_b = {.name = "paddock_test_refused_total", .help = "refused, by reason",
                                  .type = METRIC_COUNTER, .labels = "reason=\"b\""};

/* A labelled family: HELP and TYPE once, then one line per series. */
static void test_render_labels(void **state) {
        metric_add(&refused_b, 2);
        char *text = metrics_render();
        assert_non_null(text);
        assert_non_null(strstr(text, "# HELP paddock_test_refused_total refused, by reason\n"
                                     "# TYPE paddock_test_refused_total counter\n"
                                     "paddock_test_refused_total{reason=\"a\"} 0\n"
                                     "paddock_test_refused_total{reason=\"b\"} 2\n"));
        assert_null(strstr(strstr(text, "# HELP paddock_test_refused_total") + 1, "# HELP paddock_test_refused_total"));
        free(text);
}

static void test_render(void **state) {
        metric_add(&events_total, 3);
        metric_add(&events_total, 2);
        metric_set(&running, 4);
        metric_set(&running, -1);
        char *text = metrics_render();
        assert_non_null(text);
        assert_non_null(strstr(text, "# HELP paddock_test_events_total events persisted\n"
                                     "# TYPE paddock_test_events_total counter\n"
                                     "paddock_test_events_total 5\n"));
        assert_non_null(strstr(text, "# HELP paddock_test_running runs running now\n"
                                     "# TYPE paddock_test_running gauge\n"
                                     "paddock_test_running -1\n"));
        /* every line ends with a newline, as the exposition format requires */
        assert_int_equal(text[strlen(text) - 1], '\n');
        free(text);
}

static void *bump(void *arg) {
        for (int i = 0; i < 100000; i++)
                metric_add(arg, 1);
        return NULL;
}

static void test_concurrent_increments(void **state) {
        metric_set(&events_total, 0);
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
                assert_int_equal(pthread_create(&t[i], NULL, bump, &events_total), 0);
        for (int i = 0; i < 4; i++)
                pthread_join(t[i], NULL);
        assert_int_equal(atomic_load(&events_total.value), 400000);
}

/* metrics_register_text: families known only at run time (billing's per-team
 * figures) come after the registered ones; a failing writer fails the render. */
static int write_team(FILE *f, void *userdata) {
        return fprintf(f, "# TYPE paddock_team_x gauge\npaddock_team_x{team=\"%s\"} 3\n", (const char *)userdata) < 0
                       ? -EIO : 0;
}

static int write_fails(FILE *f, void *userdata) {
        (void)f;
        (void)userdata;
        return -EIO;
}

static void test_render_text(void **state) {
        metrics_register_text(write_team, (void *)"a");
        char *out = metrics_render();
        assert_non_null(out);
        const char *x = strstr(out, "paddock_team_x{team=\"a\"} 3\n");
        assert_non_null(x);
        assert_non_null(strstr(out, "paddock_test_events_total"));
        assert_true(strstr(out, "paddock_test_events_total") < x);
        free(out);
        metrics_register_text(write_fails, NULL);
        assert_null(metrics_render());
        metrics_register_text(NULL, NULL);
        out = metrics_render();
        assert_non_null(out);
        assert_null(strstr(out, "paddock_team_x"));
        free(out);
}

/* One child of a shared registry: takes slot, adds n to events_total and
 * sets running to g; the reader also checks a render against want. */
static void share_child(unsigned slot, long long n, long long g, const char *want) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (metrics_share_slot(slot) < 0)
                        _exit(2);
                metric_add(&events_total, n);
                if (g)
                        metric_set(&running, g);
                int rc = 0;
                if (want) {
                        char *text = metrics_render();
                        rc = text && strstr(text, want) ? 0 : 3;
                        if (rc)
                                fprintf(stderr, "want \"%s\" in:\n%s", want, text ? text : "(null)");
                        free(text);
                }
                _exit(rc);
        }
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
}

/* The api's workers (metrics_share): each counts in its own slot of a
 * MAP_SHARED mapping, any of them renders the sum over all slots; a process
 * that replaces a worker goes on from the slot's counters, its gauges start
 * at 0. Runs last: it shares the registry of this process's children. */
static void test_share_sums_workers(void **state) {
        (void)state;
        long long before = atomic_load(&events_total.value);
        assert_int_equal(metrics_share(3), 0);
        assert_int_equal(metrics_share(3), -EINVAL); /* once */
        share_child(0, 10, 7, NULL);
        share_child(1, 20, 0, NULL);
        /* slot 2 reads: 10 + 20 + 5, and the gauge of slot 0 (7) */
        share_child(2, 5, 0, "paddock_test_events_total 35\n");
        share_child(2, 0, 0, "paddock_test_running 7\n");
        /* slot 0 replaced: its counter goes on (35 + 1), its gauge is gone */
        share_child(0, 1, 0,
                    "paddock_test_running 0\n# HELP paddock_test_events_total events persisted\n"
                    "# TYPE paddock_test_events_total counter\npaddock_test_events_total 36\n");
        /* the parent took no slot: its own values are untouched */
        assert_int_equal(atomic_load(&events_total.value), before);
        /* a slot that does not exist */
        pid_t pid = fork();
        if (pid == 0)
                _exit(metrics_share_slot(3) == -EINVAL ? 0 : 1);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void) {
        metrics_register(&events_total);
        metrics_register(&running);
        metrics_register(&refused_b);
        metrics_register(&refused_a);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_render),
                cmocka_unit_test(test_render_labels),
                cmocka_unit_test(test_concurrent_increments),
                cmocka_unit_test(test_render_text),
                cmocka_unit_test(test_share_sums_workers),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

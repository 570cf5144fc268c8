/* Prometheus text exposition of registered counters and gauges. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
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
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

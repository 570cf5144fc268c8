/* Prometheus text exposition of registered counters and gauges. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/metrics.h"

static struct metric events_total = {"paddock_test_events_total", "events persisted", METRIC_COUNTER, 0, NULL};
static struct metric running = {"paddock_test_running", "runs running now", METRIC_GAUGE, 0, NULL};

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

int main(void) {
        metrics_register(&events_total);
        metrics_register(&running);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_render),
                cmocka_unit_test(test_concurrent_increments),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

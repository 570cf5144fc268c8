/* RFC 3339 parsing and formatting (lib/core/timeutil.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/timeutil.h"

static void test_parse_rfc3339_values(void **state) {
        int64_t us = 0;
        assert_int_equal(time_parse_rfc3339("1970-01-01T00:00:00Z", &us), 0);
        assert_int_equal(us, 0);
        assert_int_equal(time_parse_rfc3339("2026-01-02T03:04:05Z", &us), 0);
        assert_int_equal(us, 1767323045LL * 1000000);
        assert_int_equal(time_parse_rfc3339("2026-01-02t03:04:05.5z", &us), 0);
        assert_int_equal(us, 1767323045LL * 1000000 + 500000);
        /* nanoseconds are truncated to microseconds */
        assert_int_equal(time_parse_rfc3339("2026-01-02T03:04:05.123456789Z", &us), 0);
        assert_int_equal(us, 1767323045LL * 1000000 + 123456);
        /* an offset names local time: 05:04 at +02:00 is 03:04 UTC */
        assert_int_equal(time_parse_rfc3339("2026-01-02T05:04:05+02:00", &us), 0);
        assert_int_equal(us, 1767323045LL * 1000000);
        assert_int_equal(time_parse_rfc3339("2026-01-01T22:04:05-05:00", &us), 0);
        assert_int_equal(us, 1767323045LL * 1000000);
        assert_int_equal(time_parse_rfc3339("2024-02-29T00:00:00Z", &us), 0);
        assert_int_equal(time_parse_rfc3339("1969-12-31T23:59:59Z", &us), 0);
        assert_int_equal(us, -1000000);
}

static void test_parse_rfc3339_refusals(void **state) {
        static const char *const bad[] = {
                "", "2026-01-02", "2026-01-02T03:04:05", "2026-01-02 03:04:05Z", "2026-1-02T03:04:05Z",
                "2026-13-02T03:04:05Z", "2026-00-02T03:04:05Z", "2026-02-29T03:04:05Z", "2026-04-31T00:00:00Z",
                "2026-01-02T24:00:00Z", "2026-01-02T03:60:00Z", "2026-01-02T03:04:60Z", "2026-01-02T03:04:05.Z",
                "2026-01-02T03:04:05.1234567890Z", "2026-01-02T03:04:05+0200", "2026-01-02T03:04:05+24:00",
                "2026-01-02T03:04:05Zjunk", "0000-01-01T00:00:00Z", "yesterday", "2026-01-02T03:04:05+02:00x",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                int64_t us = 42;
                assert_int_equal(time_parse_rfc3339(bad[i], &us), -EINVAL);
                assert_int_equal(us, 42);
        }
        assert_int_equal(time_parse_rfc3339(NULL, &(int64_t){0}), -EINVAL);
}

static void test_parse_date(void **state) {
        int64_t us = 0;
        assert_int_equal(time_parse_date("2026-01-02", &us), 0);
        assert_int_equal(us, 1767312000LL * 1000000);
        assert_int_equal(time_parse_date("2000-02-29", &us), 0);
        assert_int_equal(time_parse_date("1900-02-29", &us), -EINVAL);
        assert_int_equal(time_parse_date("2026-01-02T00:00:00Z", &us), -EINVAL);
        assert_int_equal(time_parse_date("2026-01-2", &us), -EINVAL);
}

static void test_format_parses_back(void **state) {
        char buf[40];
        int64_t us = 0;
        const int64_t t = 1767323045LL * 1000000 + 654321;
        assert_int_equal(time_parse_rfc3339(time_format_rfc3339(t, buf, sizeof buf), &us), 0);
        assert_int_equal(us, t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_rfc3339_values),
                cmocka_unit_test(test_parse_rfc3339_refusals),
                cmocka_unit_test(test_parse_date),
                cmocka_unit_test(test_format_parses_back),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

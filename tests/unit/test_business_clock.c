/* The business clock (lib/core/business_clock.h): wall clock plus an offset a
 * test writes to a file, followed without a restart. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/business_clock.h"
#include "core/timeutil.h"

static void write_offset(const char *path, const char *text, time_t mtime) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
        /* distinct mtimes: the clock re-reads only a changed file */
        struct timespec times[2] = {{mtime, 0}, {mtime, 0}};
        assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
}

/* near: |a - b| within a second, since the wall clock moves between reads */
static void assert_near(int64_t a, int64_t b) {
        int64_t d = a > b ? a - b : b - a;
        assert_true(d < 1000000);
}

static void test_follows_the_file(void **state) {
        (void)state;
        char dir[] = "/tmp/paddock-clock-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char path[256];
        snprintf(path, sizeof path, "%s/offset", dir);

        assert_int_equal(business_clock_init(NULL), 0);
        assert_near(business_clock_now_us(), time_now_us());

        assert_int_equal(business_clock_init(path), 0);
        /* no file yet: the wall clock */
        assert_near(business_clock_now_us(), time_now_us());

        write_offset(path, "86400\n", 1000);
        assert_near(business_clock_now_us(), time_now_us() + 86400LL * 1000000);

        /* moved back, without a restart */
        write_offset(path, "-3600", 2000);
        assert_near(business_clock_now_us(), time_now_us() - 3600LL * 1000000);

        /* a malformed file is the wall clock, not the last offset */
        write_offset(path, "tomorrow", 3000);
        assert_near(business_clock_now_us(), time_now_us());

        unlink(path);
        assert_near(business_clock_now_us(), time_now_us());
        rmdir(dir);
        assert_int_equal(business_clock_init(NULL), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_follows_the_file),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

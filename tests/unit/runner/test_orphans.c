/* The runner-agent reaps the orphans it inherits as child subreaper
 * (services/runner-agent/orphans.h): a grandchild whose parent exited first
 * comes back to us and stays a zombie until a pass finds it aged; a child of
 * ours that a waiter of ours would reap is left alone while young. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "orphans.h"

static void sleep_ms(long ms) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        }
}

/* a zombie child of ours: 0 if none within about a second */
static int wait_zombie(pid_t pid) {
        for (int i = 0; i < 100; i++) {
                siginfo_t si = {0};
                if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid)
                        return 1;
                sleep_ms(10);
        }
        return 0;
}

static void test_orphan_reaped_once_aged_young_child_kept(void **state) {
        (void)state;
        assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) { /* forks the orphan-to-be, tells us its pid, exits first */
                pid_t g = fork();
                if (g == 0) {
                        sleep_ms(100);
                        _exit(0);
                }
                (void)!write(pfd[1], &g, sizeof g);
                _exit(0);
        }
        pid_t orphan = 0;
        assert_int_equal(read(pfd[0], &orphan, sizeof orphan), (ssize_t)sizeof orphan);
        assert_int_equal(waitpid(child, NULL, 0), child);
        assert_true(wait_zombie(orphan)); /* reparented to us, exited, not reaped */

        pid_t young = fork(); /* a child a waiter of ours would reap */
        if (young == 0)
                _exit(3);
        assert_true(wait_zombie(young));

        struct orphan_reaper o = {0};
        assert_int_equal(orphans_reap(&o, 1000, 500), 0); /* first seen: kept */
        assert_int_equal(o.n, 2);
        assert_int_equal(orphans_reap(&o, 1200, 500), 0); /* not aged yet */
        /* the young one's waiter takes its status meanwhile */
        int status = 0;
        assert_int_equal(waitpid(young, &status, 0), young);
        assert_int_equal(WEXITSTATUS(status), 3);
        assert_int_equal(orphans_reap(&o, 1600, 500), 1); /* the orphan, aged */
        assert_int_equal(o.n, 0);
        assert_int_equal(kill(orphan, 0), -1);
        assert_int_equal(errno, ESRCH);
        assert_int_equal(orphans_reap(&o, 5000, 500), 0);
        close(pfd[0]);
        close(pfd[1]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_orphan_reaped_once_aged_young_child_kept),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

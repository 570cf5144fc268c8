/* The runner-agent's sealed copy of crun (services/runner-agent/crun_exec.h):
 * the copy cannot be changed, and what runs through its path sees a
 * /proc/self/exe with exactly the seals crun's is_self_cloned() accepts, so
 * crun skips its per-call self-copy. The test binary stands in for crun: it
 * re-executes itself through the copy's path with --report-exe-seals. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "crun_exec.h"

extern char **environ;

static char self_path[PATH_MAX];

/* Runs path with --report-exe-seals the way subprocess.c starts crun
 * (posix_spawn, every fd from 3 closed) and returns what it printed. */
static int run_report(const char *path, char *out, size_t outsz) {
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, p[1], 1);
        posix_spawn_file_actions_addclosefrom_np(&fa, 3);
        char *argv[] = {(char *)path, "--report-exe-seals", NULL};
        pid_t pid;
        int r = posix_spawn(&pid, path, &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        close(p[1]);
        if (r != 0) {
                close(p[0]);
                return -r;
        }
        ssize_t n = read(p[0], out, outsz - 1);
        close(p[0]);
        out[n > 0 ? n : 0] = 0;
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        return 0;
}

static void test_copy_is_sealed_and_runs_as_cloned(void **state) {
        (void)state;
        struct crun_exec ce;
        assert_int_equal(crun_exec_prepare(&ce, self_path), 0);
        assert_true(ce.fd >= 0);
        assert_string_equal(crun_exec_path(&ce, self_path), ce.path);
        assert_int_equal(fcntl(ce.fd, F_GET_SEALS), F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE);
        assert_true(fcntl(ce.fd, F_GETFD) & FD_CLOEXEC);
        /* nobody can change it: not us, not a container through /proc/<pid>/exe */
        assert_int_equal(pwrite(ce.fd, "x", 1, 0), -1);
        assert_int_equal(errno, EPERM);
        assert_int_equal(ftruncate(ce.fd, 0), -1);
        assert_int_equal(errno, EPERM);
        int w = open(ce.path, O_WRONLY | O_CLOEXEC);
        if (w >= 0) {
                assert_int_equal(write(w, "x", 1), -1);
                assert_int_equal(errno, EPERM);
                close(w);
        }

        /* through the path, with no fd inherited, the child runs the copy:
         * /proc/self/exe is the sealed memfd crun's is_self_cloned() accepts */
        char out[256];
        assert_int_equal(run_report(ce.path, out, sizeof out), 0);
        assert_string_equal(out, "seals=15 exe=/memfd:crun (deleted)\n");
        /* the original binary, as today: no seals, crun would copy itself */
        assert_int_equal(run_report(self_path, out, sizeof out), 0);
        assert_true(strncmp(out, "seals=-1 ", 9) == 0);
        crun_exec_done(&ce);
        assert_string_equal(ce.path, "");
        assert_int_equal(ce.fd, -1);
        crun_exec_done(&ce); /* twice is harmless */
}

static void test_missing_or_not_a_file(void **state) {
        (void)state;
        struct crun_exec ce;
        assert_int_equal(crun_exec_prepare(&ce, "/nonexistent/crun"), -ENOENT);
        assert_string_equal(crun_exec_path(&ce, "/usr/bin/crun"), "/usr/bin/crun");
        crun_exec_done(&ce);
        assert_int_equal(crun_exec_prepare(&ce, "/"), -ENOEXEC);
        assert_string_equal(crun_exec_path(&ce, "/usr/bin/crun"), "/usr/bin/crun");
        crun_exec_done(&ce);
        struct crun_exec zero = {0}; /* a zeroed agent never prepared */
        assert_string_equal(crun_exec_path(&zero, "/usr/bin/crun"), "/usr/bin/crun");
        crun_exec_done(&zero);
}

int main(int argc, char **argv) {
        if (argc > 1 && !strcmp(argv[1], "--report-exe-seals")) {
                int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
                char link[PATH_MAX] = "";
                ssize_t n = readlink("/proc/self/exe", link, sizeof link - 1);
                link[n > 0 ? n : 0] = 0;
                printf("seals=%d exe=%s\n", fd >= 0 ? fcntl(fd, F_GET_SEALS) : -2, link);
                return 0;
        }
        ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
        if (n <= 0)
                return 1;
        self_path[n] = 0;
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_copy_is_sealed_and_runs_as_cloned),
                cmocka_unit_test(test_missing_or_not_a_file),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The runner-agent's reuse of crun's compiled seccomp program
 * (services/runner-agent/seccomp.h): a program is reused only for the same
 * profile (the per-run listenerPath aside), and a file that is not a whole
 * BPF program is refused and leaves what was learned unchanged. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "seccomp.h"

static char dir[] = "/tmp/test_seccomp_bpf.XXXXXX";

static const char *write_file(const char *name, const void *data, size_t len) {
        static char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t)len);
        close(fd);
        return path;
}

static json_t *profile(const char *listener) {
        json_t *p = seccomp_profile_new();
        assert_non_null(p);
        json_object_set_new(p, "listenerPath", json_string(listener));
        return p;
}

static void test_reused_for_the_same_profile_only(void **state) {
        (void)state;
        seccomp_bpf_forget();
        json_t *a = profile("/runs/a/capture-exec.sock"), *b = profile("/runs/b/capture-exec.sock");
        char *ka = seccomp_filter_key(a), *kb = seccomp_filter_key(b);
        assert_non_null(ka);
        assert_string_equal(ka, kb); /* the listener is per run, not part of the program */
        assert_null(strstr(ka, "capture-exec.sock"));
        assert_null(seccomp_bpf_cached(ka));

        unsigned char prog[16] = {0x20, 0, 0, 0, 4, 0, 0, 0, 0x06, 0, 0, 0, 0, 0, 0xff, 0x7f};
        assert_int_equal(seccomp_bpf_learn(ka, write_file("ok.bpf", prog, sizeof prog)), 0);
        char *b64 = seccomp_bpf_cached(kb);
        assert_non_null(b64);
        assert_string_equal(b64, "IAAAAAQAAAAGAAAAAAD/fw==");
        free(b64);

        /* another rule: another profile, not this program */
        json_array_append_new(json_object_get(b, "syscalls"),
                              json_pack("{s:[s],s:s}", "names", "chown", "action", "SCMP_ACT_ERRNO"));
        char *kc = seccomp_filter_key(b);
        assert_string_not_equal(ka, kc);
        assert_null(seccomp_bpf_cached(kc));
        free(ka);
        free(kb);
        free(kc);
        json_decref(a);
        json_decref(b);
}

static void test_not_a_program_is_refused(void **state) {
        (void)state;
        seccomp_bpf_forget();
        unsigned char prog[8] = {0x06, 0, 0, 0, 0, 0, 0xff, 0x7f};
        assert_int_equal(seccomp_bpf_learn("k", write_file("good.bpf", prog, sizeof prog)), 0);
        assert_int_equal(seccomp_bpf_learn("k2", write_file("empty.bpf", "", 0)), -EBADMSG);
        assert_int_equal(seccomp_bpf_learn("k2", write_file("partial.bpf", prog, 7)), -EBADMSG);
        size_t big = 4097 * 8;
        void *huge = calloc(1, big);
        assert_int_equal(seccomp_bpf_learn("k2", write_file("huge.bpf", huge, big)), -EBADMSG);
        free(huge);
        assert_int_equal(seccomp_bpf_learn("k2", "/nonexistent/seccomp.bpf"), -ENOENT);
        assert_int_equal(seccomp_bpf_learn("k2", dir), -EBADMSG); /* a directory */
        /* nothing of that replaced what was learned */
        assert_null(seccomp_bpf_cached("k2"));
        char *b64 = seccomp_bpf_cached("k");
        assert_string_equal(b64, "BgAAAAAA/38=");
        free(b64);
        seccomp_bpf_forget();
        assert_null(seccomp_bpf_cached("k"));
}

int main(void) {
        if (!mkdtemp(dir))
                return 1;
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_reused_for_the_same_profile_only),
                cmocka_unit_test(test_not_a_program_is_refused),
        };
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        (void)!system(cmd);
        return r;
}

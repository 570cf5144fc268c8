/* Unguessable ids: UUIDv4 format, uniqueness, hex helpers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/ids.h"

static int cmp(const void *a, const void *b) {
        return strcmp(a, b);
}

static void test_uuid_format(void **state) {
        char u[UUID_STR_LEN];
        for (int i = 0; i < 100; i++) {
                assert_int_equal(id_new_uuid(u), 0);
                assert_int_equal(strlen(u), 36);
                assert_true(id_is_uuid(u));
                assert_int_equal(u[14], '4');                 /* version 4 */
                assert_non_null(strchr("89ab", u[19]));       /* RFC 4122 variant */
        }
}

static void test_uuid_unique(void **state) {
        enum { N = 2000 };
        char(*ids)[UUID_STR_LEN] = calloc(N, UUID_STR_LEN);
        assert_non_null(ids);
        for (int i = 0; i < N; i++)
                assert_int_equal(id_new_uuid(ids[i]), 0);
        qsort(ids, N, UUID_STR_LEN, cmp);
        for (int i = 1; i < N; i++)
                assert_string_not_equal(ids[i - 1], ids[i]);
        free(ids);
}

/* a forked child and its parent never draw the same UUIDs (each thread
 * keeps a block of random bytes: the child must not reuse its copy) */
static void test_uuid_fork(void **state) {
        char first[UUID_STR_LEN], parent[UUID_STR_LEN], child[UUID_STR_LEN] = "";
        assert_int_equal(id_new_uuid(first), 0); /* the block is filled now */
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char u[UUID_STR_LEN];
                _exit(id_new_uuid(u) == 0 && write(fds[1], u, sizeof u) == (ssize_t)sizeof u ? 0 : 1);
        }
        close(fds[1]);
        assert_int_equal(id_new_uuid(parent), 0);
        assert_int_equal(read(fds[0], child, sizeof child), (ssize_t)sizeof child);
        close(fds[0]);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_true(id_is_uuid(child));
        assert_string_not_equal(child, parent);
        assert_string_not_equal(child, first);
}

static void test_uuid_validation(void **state) {
        assert_true(id_is_uuid("123e4567-e89b-42d3-a456-426614174000"));
        assert_false(id_is_uuid(NULL));
        assert_false(id_is_uuid(""));
        assert_false(id_is_uuid("123E4567-E89B-42D3-A456-426614174000")); /* not canonical */
        assert_false(id_is_uuid("123e4567e89b42d3a456426614174000"));
        assert_false(id_is_uuid("123e4567-e89b-42d3-a456-4266141740000"));
        assert_false(id_is_uuid("123e4567-e89b-42d3-a456-42661417400g"));
        assert_false(id_is_uuid("123e4567-e89b-42d3-a456_426614174000"));
        assert_false(id_is_uuid("../../etc/passwd-0000-0000-00000000"));
}

/* the model ids the gateway keeps apart and billing accepts */
static void test_model_ids(void **state) {
        (void)state;
        assert_true(id_is_model("claude-opus-4-8"));
        assert_true(id_is_model("gpt-5.5"));
        assert_true(id_is_model("us.anthropic/claude:v2@x_y"));
        char longest[ID_MODEL_MAX + 2];
        memset(longest, 'a', ID_MODEL_MAX);
        longest[ID_MODEL_MAX] = 0;
        assert_true(id_is_model(longest));
        longest[ID_MODEL_MAX] = 'a';
        longest[ID_MODEL_MAX + 1] = 0;
        assert_false(id_is_model(longest));
        assert_false(id_is_model(""));
        assert_false(id_is_model(NULL));
        assert_false(id_is_model("*"));
        assert_false(id_is_model("gpt 5"));
        assert_false(id_is_model("mod\nel"));
        assert_false(id_is_model("mod\xc3\xa9le"));
}

static void test_hex(void **state) {
        static const unsigned char in[] = {0x00, 0x01, 0xab, 0xff, 0x7f};
        char out[11];
        hex_encode(in, sizeof in, out);
        assert_string_equal(out, "0001abff7f");
        hex_encode(in, 0, out);
        assert_string_equal(out, "");

        char a[65], b[65];
        assert_int_equal(id_random_hex(a, 32), 0);
        assert_int_equal(id_random_hex(b, 32), 0);
        assert_int_equal(strlen(a), 64);
        assert_int_equal(strspn(a, "0123456789abcdef"), 64);
        assert_string_not_equal(a, b);
        char big[200];
        assert_int_equal(id_random_hex(big, 65), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_uuid_format),
                cmocka_unit_test(test_uuid_unique),
                cmocka_unit_test(test_uuid_fork),
                cmocka_unit_test(test_uuid_validation),
                cmocka_unit_test(test_model_ids),
                cmocka_unit_test(test_hex),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

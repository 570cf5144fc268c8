/* lib/core/domain.h: run statuses to and from their names, which of them
 * are terminal, and that the lists stated elsewhere agree with it: the
 * evidence migration's terminal list (0006_run_history.sql) and the api's
 * OpenAPI enum of a run's status (services/api/openapi.yaml); the event
 * kinds with the ones events.proto documents, the approval states with the
 * api's OpenAPI enum and its database's CHECK. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/domain.h"

static char *slurp(const char *path) {
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        char *buf = calloc(1, 1 << 20);
        assert_non_null(buf);
        size_t n = fread(buf, 1, (1 << 20) - 1, f);
        assert_true(n > 0);
        fclose(f);
        return buf;
}

/* The names between quote characters q in [start, end), each checked against
 * the statuses; returns a bit set of the statuses seen. */
static unsigned names_in(const char *start, const char *end, char q) {
        unsigned seen = 0;
        int count = 0;
        for (const char *p = start; p < end; p++) {
                if (q ? *p != q : !(*p >= 'a' && *p <= 'z'))
                        continue;
                const char *b = q ? p + 1 : p;
                const char *e = b;
                while (e < end && ((*e >= 'a' && *e <= 'z') || *e == '_'))
                        e++;
                char name[64];
                assert_true((size_t)(e - b) < sizeof name);
                memcpy(name, b, (size_t)(e - b));
                name[e - b] = '\0';
                int s = run_status_from_string(name);
                if (s < 0)
                        fail_msg("'%s' is not a run status of lib/core/domain.h", name);
                assert_false(seen & (1u << s));
                seen |= 1u << s;
                count++;
                p = q ? e : e - 1;
        }
        assert_true(count > 0);
        return seen;
}

static void test_names_round_trip(void **state) {
        (void)state;
        for (int s = 0; s < RUN_STATUS_MAX; s++) {
                const char *n = run_status_to_string((enum run_status)s);
                assert_non_null(n);
                assert_string_equal(run_status_names[s], n);
                assert_int_equal(run_status_from_string(n), s);
        }
        assert_null(run_status_names[RUN_STATUS_MAX]);
        assert_null(run_status_to_string(RUN_STATUS_MAX));
        assert_int_equal(run_status_from_string("Succeeded"), -EINVAL);
        assert_int_equal(run_status_from_string(""), -EINVAL);
        assert_int_equal(run_status_from_string(NULL), -EINVAL);
        assert_string_equal(run_status_to_string(RUN_LIMIT_EXCEEDED), "limit_exceeded");
}

static void test_terminal(void **state) {
        (void)state;
        static const char *const terminal[] = {"succeeded", "failed",         "cancelled",
                                               "timed_out", "limit_exceeded", "rejected"};
        int n = 0;
        for (int s = 0; s < RUN_STATUS_MAX; s++)
                n += run_status_is_terminal((enum run_status)s);
        assert_int_equal(n, (int)(sizeof terminal / sizeof terminal[0]));
        for (size_t i = 0; i < sizeof terminal / sizeof terminal[0]; i++)
                assert_true(run_status_name_is_terminal(terminal[i]));
        assert_false(run_status_name_is_terminal("queued"));
        assert_false(run_status_name_is_terminal("running"));
        assert_false(run_status_name_is_terminal("awaiting_approval"));
        assert_false(run_status_name_is_terminal("lost"));
        assert_false(run_status_name_is_terminal(NULL));
}

/* evidence's run history takes a run's terminal status from its status
 * events with the migration's own IN list: the same set as domain.h's. */
static void test_evidence_migration_agrees(void **state) {
        (void)state;
        char *sql = slurp(PADDOCK_SOURCE_DIR "/services/evidence/migrations/0006_run_history.sql");
        const char *at = strstr(sql, "data->>'status' IN");
        assert_non_null(at);
        const char *open = strchr(at, '(');
        const char *close = open ? strchr(open, ')') : NULL;
        assert_non_null(close);
        unsigned seen = names_in(open, close, '\'');
        for (int s = 0; s < RUN_STATUS_MAX; s++)
                assert_int_equal(!!(seen & (1u << s)), run_status_is_terminal((enum run_status)s));
        free(sql);
}

/* the api's contract lists every status a run can have */
static void test_openapi_agrees(void **state) {
        (void)state;
        char *y = slurp(PADDOCK_SOURCE_DIR "/services/api/openapi.yaml");
        const char *at = strstr(y, "enum: [queued,");
        assert_non_null(at);
        const char *open = strchr(at, '[');
        const char *close = strchr(open, ']');
        assert_non_null(close);
        unsigned seen = names_in(open + 1, close, 0);
        assert_int_equal(seen, (1u << RUN_STATUS_MAX) - 1);
        free(y);
}

/* The words [a-z_]+ in [start, end) (each at most 63 bytes), in order, each
 * followed by its NUL, into buf: the count. */
static size_t words_in(const char *start, const char *end, char *buf, size_t size) {
        size_t n = 0, o = 0;
        for (const char *p = start; p < end;) {
                if (!((*p >= 'a' && *p <= 'z') || *p == '_')) {
                        p++;
                        continue;
                }
                const char *b = p;
                while (p < end && ((*p >= 'a' && *p <= 'z') || *p == '_'))
                        p++;
                assert_true(o + (size_t)(p - b) + 1 < size);
                memcpy(buf + o, b, (size_t)(p - b));
                o += (size_t)(p - b);
                buf[o++] = '\0';
                n++;
        }
        return n;
}

/* list (NULL-terminated) and the n words of buf are the same set, no word twice */
static void assert_same_set(const char *const *list, const char *buf, size_t n, const char *where) {
        size_t len = 0;
        while (list[len])
                len++;
        const char *w = buf;
        for (size_t i = 0; i < n; i++, w += strlen(w) + 1) {
                if (!domain_name_in(list, w))
                        fail_msg("%s names \"%s\", which lib/core/domain.h does not list", where, w);
                const char *v = buf;
                for (size_t j = 0; j < i; j++, v += strlen(v) + 1)
                        if (!strcmp(v, w))
                                fail_msg("%s names \"%s\" twice", where, w);
        }
        if (n != len)
                fail_msg("%s names %zu of lib/core/domain.h's %zu", where, n, len);
}

/* events.proto documents every kind, one per comment line "//   <kind> ..."
 * between "kinds and their data" and the message */
static void test_event_kinds_agree_with_proto(void **state) {
        (void)state;
        char *p = slurp(PADDOCK_SOURCE_DIR "/proto/paddock/v1/events.proto");
        const char *at = strstr(p, "kinds and their data");
        const char *end = at ? strstr(at, "message RunEvent") : NULL;
        assert_non_null(end);
        char kinds[1024] = "", buf[1024];
        size_t n = 0, o = 0;
        for (const char *l = strchr(at, '\n') + 1; l < end; l = strchr(l, '\n') + 1) {
                if (strncmp(l, "//   ", 5) != 0 || !(l[5] >= 'a' && l[5] <= 'z'))
                        continue;
                size_t w = strspn(l + 5, "abcdefghijklmnopqrstuvwxyz_");
                assert_true(o + w + 1 < sizeof kinds);
                memcpy(kinds + o, l + 5, w);
                o += w;
                kinds[o++] = ' ';
                n++;
        }
        assert_int_equal(words_in(kinds, kinds + o, buf, sizeof buf), n);
        assert_same_set(run_event_kinds, buf, n, "events.proto");
        assert_true(domain_name_in(run_event_kinds, "tool_result"));
        assert_false(domain_name_in(run_event_kinds, "Status"));
        assert_false(domain_name_in(run_event_kinds, NULL));
        free(p);
}

/* the api's OpenAPI enum of an approval's status, and its table's CHECK */
static void test_approval_statuses_agree(void **state) {
        (void)state;
        char buf[256];
        char *y = slurp(PADDOCK_SOURCE_DIR "/services/api/openapi.yaml");
        const char *at = strstr(y, "enum: [pending,");
        assert_non_null(at);
        const char *open = strchr(at, '['), *close = strchr(open, ']');
        assert_same_set(approval_statuses, buf, words_in(open + 1, close, buf, sizeof buf), "openapi.yaml");
        free(y);
        char *sql = slurp(PADDOCK_SOURCE_DIR "/services/api/migrations/0021_approval_queue.sql");
        at = strstr(sql, "CHECK (status IN (");
        assert_non_null(at);
        open = strchr(at, '(') + 1;
        open = strchr(open, '(');
        close = strchr(open, ')');
        assert_same_set(approval_statuses, buf, words_in(open + 1, close, buf, sizeof buf), "0021_approval_queue.sql");
        free(sql);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names_round_trip),
                cmocka_unit_test(test_terminal),
                cmocka_unit_test(test_evidence_migration_agrees),
                cmocka_unit_test(test_openapi_agrees),
                cmocka_unit_test(test_event_kinds_agree_with_proto),
                cmocka_unit_test(test_approval_statuses_agree),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

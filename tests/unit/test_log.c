/* lib/core/log: one JSON object per line on stderr; log_emit_json keeps the
 * context's JSON types (the api's access lines rely on numbers and nulls). */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/log.h"

/* Runs fn with stderr going to a temporary file; returns what it wrote. */
static char *capture_stderr(void (*fn)(void)) {
        fflush(stderr);
        int saved = dup(2);
        FILE *tmp = tmpfile();
        assert_non_null(tmp);
        assert_true(dup2(fileno(tmp), 2) >= 0);
        fn();
        fflush(stderr);
        assert_true(dup2(saved, 2) >= 0);
        close(saved);
        long n = ftell(tmp);
        assert_true(n >= 0);
        char *buf = calloc(1, (size_t)n + 1);
        assert_non_null(buf);
        rewind(tmp);
        assert_int_equal(fread(buf, 1, (size_t)n, tmp), (size_t)n);
        fclose(tmp);
        return buf;
}

static void emit_access_line(void) {
        json_t *ctx = json_pack("{s:s, s:i, s:f, s:n, s:s, s:s}", "method", "GET", "status", 404, "duration_ms", 1.25,
                                "caller_id", "msg", "not the message", "service", "spoofed");
        log_emit_json(LOG_INFO, ctx, "request %d", 7);
        json_decref(ctx);
}

static void test_json_context_keeps_types(void **state) {
        (void)state;
        log_init("unit", LOG_INFO);
        char *out = capture_stderr(emit_access_line);
        json_error_t err;
        json_t *o = json_loads(out, 0, &err);
        assert_non_null(o);
        assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
        assert_string_equal(json_string_value(json_object_get(o, "msg")), "request 7");
        /* the line's own members are not overwritten by the context */
        assert_string_equal(json_string_value(json_object_get(o, "service")), "unit");
        assert_string_equal(json_string_value(json_object_get(o, "method")), "GET");
        assert_true(json_is_integer(json_object_get(o, "status")));
        assert_int_equal(json_integer_value(json_object_get(o, "status")), 404);
        assert_true(json_is_real(json_object_get(o, "duration_ms")));
        assert_true(json_real_value(json_object_get(o, "duration_ms")) == 1.25);
        assert_true(json_is_null(json_object_get(o, "caller_id")));
        /* one line, and reals print short */
        assert_non_null(strstr(out, "\"duration_ms\":1.25,"));
        assert_int_equal(strchr(out, '\n') - out, (long)strlen(out) - 1);
        json_decref(o);
        free(out);
}

static void emit_below_level(void) {
        json_t *ctx = json_pack("{s:i}", "status", 200);
        log_emit_json(LOG_DEBUG, ctx, "hidden");
        json_decref(ctx);
        log_emit_json(LOG_INFO, NULL, "no context");
}

static void test_level_and_null_context(void **state) {
        (void)state;
        log_init("unit", LOG_INFO);
        char *out = capture_stderr(emit_below_level);
        assert_null(strstr(out, "hidden"));
        json_t *o = json_loads(out, 0, NULL);
        assert_non_null(o);
        assert_string_equal(json_string_value(json_object_get(o, "msg")), "no context");
        json_decref(o);
        free(out);
}

static void emit_lines(void) {
        json_t *ctx = json_pack("{s:s, s:n, s:i, s:f, s:s}", "method", "GET", "route", "status", 200, "duration_ms",
                                0.1234567891234, "request_id", "r-1");
        log_emit_json(LOG_INFO, ctx, "request");                        /* plain: written as built */
        log_emit_json(LOG_WARN, ctx, "say \"%s\"\tto caf\xc3\xa9", "hi"); /* escaped */
        log_emit_json(LOG_ERROR, NULL, "bad utf-8 \xff");
        log_ctx(LOG_INFO, LOG_KV("run", "r\n1"), "kv");
        json_decref(ctx);
}

/* Every way a line is made gives one JSON object per line in the same
 * bytes: jansson's compact dump of its members, in order ts, level,
 * service, msg, then the context's. */
static void test_lines_are_compact_json(void **state) {
        (void)state;
        log_init("unit", LOG_INFO);
        char *out = capture_stderr(emit_lines);
        static const char *const msgs[] = {"request", "say \"hi\"\tto caf\xc3\xa9", "(message not valid utf-8)", "kv"};
        char *save = NULL, *line = strtok_r(out, "\n", &save);
        for (size_t i = 0; i < sizeof msgs / sizeof *msgs; i++, line = strtok_r(NULL, "\n", &save)) {
                assert_non_null(line);
                json_t *o = json_loads(line, 0, NULL);
                assert_non_null(o);
                char *again = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
                assert_string_equal(line, again);
                assert_int_equal(strncmp(line, "{\"ts\":\"", 7), 0);
                assert_non_null(strstr(line, "\",\"service\":\"unit\",\"msg\":"));
                assert_string_equal(json_string_value(json_object_get(o, "msg")), msgs[i]);
                free(again);
                json_decref(o);
        }
        assert_null(line);
        assert_non_null(strstr(out, "\"level\":\"info\",\"service\":\"unit\",\"msg\":\"request\",\"method\":\"GET\","
                                    "\"route\":null,\"status\":200,\"duration_ms\":0.1234567891,\"request_id\":\"r-1\"}"));
        free(out);
}

static void emit_members(void) {
        static const char members[] = "\"method\":\"GET\",\"route\":null,\"status\":200,\"duration_ms\":0.1234567891,"
                                      "\"request_id\":\"r-1\"";
        json_t *ctx = json_pack("{s:s, s:n, s:i, s:f, s:s}", "method", "GET", "route", "status", 200, "duration_ms",
                                0.1234567891234, "request_id", "r-1");
        log_emit_json(LOG_INFO, ctx, "request");
        log_emit_members(LOG_INFO, members, strlen(members), "request");
        log_emit_members(LOG_DEBUG, members, strlen(members), "hidden");
        log_emit_json(LOG_INFO, NULL, "none");
        log_emit_members(LOG_INFO, "", 0, "none");
        /* longer than the line's buffer: the general path, the same line */
        char *big = malloc(6000), *m = malloc(6100);
        memset(big, 'x', 5999);
        big[5999] = '\0';
        json_object_set_new(ctx, "path", json_string(big));
        snprintf(m, 6100, "%s,\"path\":\"%s\"", members, big);
        log_emit_json(LOG_INFO, ctx, "request");
        log_emit_members(LOG_INFO, m, strlen(m), "request");
        free(big);
        free(m);
        json_decref(ctx);
}

/* log_emit_members writes the line log_emit_json writes for the same
 * members (but for its ts), and nothing below the level */
static void test_members_line(void **state) {
        (void)state;
        log_init("unit", LOG_INFO);
        char *out = capture_stderr(emit_members);
        assert_null(strstr(out, "hidden"));
        char *save = NULL, *lines[6] = {0};
        size_t n = 0;
        for (char *l = strtok_r(out, "\n", &save); l && n < 6; l = strtok_r(NULL, "\n", &save))
                lines[n++] = l;
        assert_int_equal(n, 6);
        for (size_t i = 0; i < n; i += 2) {
                /* {"ts":"2026-12-07T17:09:33.565348Z", ...: the same after the ts */
                char *a = strstr(lines[i], "\",\"level\":"), *b = strstr(lines[i + 1], "\",\"level\":");
                assert_non_null(a);
                assert_non_null(b);
                assert_string_equal(a, b);
        }
        free(out);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_json_context_keeps_types),
                cmocka_unit_test(test_level_and_null_context),
                cmocka_unit_test(test_lines_are_compact_json),
                cmocka_unit_test(test_members_line),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

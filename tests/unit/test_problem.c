/* errno -> HTTP status and the problem+json body. */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "http/problem.h"

static void expect(int err, int status, const char *code) {
        struct http_problem p = http_problem_from_errno(err);
        assert_int_equal(p.status, status);
        assert_string_equal(p.code, code);
        assert_non_null(p.title);
        assert_true(p.title[0] != '\0');
}

static void test_mapping(void **state) {
        expect(-EINVAL, 400, "invalid_field");
        expect(-EACCES, 401, "unauthorized");
        expect(-EKEYREJECTED, 401, "unauthorized");
        expect(-EPERM, 403, "forbidden");
        expect(-ENOENT, 404, "not_found");
        expect(-EEXIST, 409, "conflict");
        expect(-E2BIG, 413, "too_large");
        expect(-EMSGSIZE, 413, "too_large");
        expect(-EDQUOT, 402, "quota_exceeded"); /* the api's one quota: a team budget */
        expect(-EBUSY, 409, "conflict");
        expect(-EKEYEXPIRED, 401, "token_expired");
        expect(-EFBIG, 413, "too_large");
        expect(-EIDRM, 410, "gone");
        expect(-EUSERS, 429, "rate_limited");
        expect(-EAGAIN, 503, "unavailable");
        expect(-ECONNRESET, 503, "unavailable");
        expect(-ETIMEDOUT, 503, "unavailable");
        expect(-EIO, 500, "internal");
        expect(-ENOMEM, 500, "internal");
        expect(0, 500, "internal");
        expect(EINVAL, 500, "internal"); /* positive errno is a programmer error, not a 400 */
}

/* A finer code of the vocabulary wins over its errno's default; an unknown
 * code falls back to the errno (services/api: api_fail()). */
static void test_code_of(void **state) {
        struct http_problem p = http_problem_of(-EINVAL, "missing_field");
        assert_int_equal(p.status, 400);
        assert_string_equal(p.code, "missing_field");
        p = http_problem_of(-EAGAIN, "rate_limited");
        assert_int_equal(p.status, 429);
        p = http_problem_of(-EDQUOT, "quota_exceeded");
        assert_int_equal(p.status, 402);
        assert_string_equal(p.title, "Payment Required");
        p = http_problem_of(-ENOENT, "gone");
        assert_int_equal(p.status, 410);
        p = http_problem_of(-EEXIST, "no_such_code");
        assert_int_equal(p.status, 409);
        assert_string_equal(p.code, "conflict");
        p = http_problem_of(-ENOENT, NULL);
        assert_int_equal(p.status, 404);
}

static void test_json_body(void **state) {
        struct http_problem p = http_problem_from_errno(-EEXIST);
        char *body = http_problem_json(&p, "sandbox name \"x\" already exists");
        assert_non_null(body);
        json_error_t jerr;
        json_t *o = json_loads(body, 0, &jerr);
        assert_non_null(o);
        assert_int_equal(json_object_size(o), 5);
        assert_int_equal(json_integer_value(json_object_get(o, "status")), 409);
        assert_string_equal(json_string_value(json_object_get(o, "code")), "conflict");
        assert_string_equal(json_string_value(json_object_get(o, "title")), "Conflict");
        assert_string_equal(json_string_value(json_object_get(o, "detail")), "sandbox name \"x\" already exists");
        const char *type = json_string_value(json_object_get(o, "type"));
        assert_non_null(type);
        assert_non_null(strstr(type, "conflict"));
        json_decref(o);
        free(body);
}

static void test_json_odd_detail(void **state) {
        struct http_problem p = http_problem_from_errno(-EINVAL);
        char *body = http_problem_json(&p, NULL);
        assert_non_null(body);
        json_t *o = json_loads(body, 0, NULL);
        assert_non_null(o);
        assert_true(json_is_string(json_object_get(o, "detail")));
        json_decref(o);
        free(body);

        body = http_problem_json(&p, "bad \xff\xfe bytes");
        assert_non_null(body);
        o = json_loads(body, 0, NULL);
        assert_non_null(o);
        assert_true(json_is_string(json_object_get(o, "detail")));
        json_decref(o);
        free(body);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_mapping),
                cmocka_unit_test(test_code_of),
                cmocka_unit_test(test_json_body),
                cmocka_unit_test(test_json_odd_detail),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

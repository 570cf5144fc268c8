/* The configuration table: defaults, required values, bounds, parsing errors. */
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

#include "core/config.h"

struct settings {
        char *dsn;
        char *name;
        long long port;
        bool verbose;
        double ratio;
        char *token;
};

static const struct config_entry table[] = {
        {"UT_DSN", CONFIG_STRING, NULL, 0, 0, false, offsetof(struct settings, dsn), "database"},
        {"UT_NAME", CONFIG_STRING, "paddock", 0, 0, false, offsetof(struct settings, name), "name"},
        {"UT_PORT", CONFIG_INT, "8080", 1, 65535, false, offsetof(struct settings, port), "port"},
        {"UT_VERBOSE", CONFIG_BOOL, "false", 0, 0, false, offsetof(struct settings, verbose), "verbose"},
        {"UT_RATIO", CONFIG_DOUBLE, "0.5", 0, 1, false, offsetof(struct settings, ratio), "ratio"},
        {"UT_TOKEN", CONFIG_STRING, "", 0, 0, true, offsetof(struct settings, token), "secret token"},
        {NULL, 0, NULL, 0, 0, false, 0, NULL},
};

static int reset_env(void **state) {
        const char *names[] = {"UT_DSN", "UT_NAME", "UT_PORT", "UT_VERBOSE", "UT_RATIO", "UT_TOKEN"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
                unsetenv(names[i]);
        setenv("UT_DSN", "host=127.0.0.1", 1);
        return 0;
}

/* Loads with the current environment; returns config_load's result. */
static int load(struct settings *s, struct err_detail *err) {
        memset(s, 0, sizeof *s);
        memset(err, 0, sizeof *err);
        return config_load(table, s, err);
}

static void test_defaults(void **state) {
        struct settings s;
        struct err_detail err;
        assert_int_equal(load(&s, &err), 0);
        assert_string_equal(s.dsn, "host=127.0.0.1");
        assert_string_equal(s.name, "paddock");
        assert_int_equal(s.port, 8080);
        assert_false(s.verbose);
        assert_true(s.ratio == 0.5);
        assert_string_equal(s.token, "");
        config_free(table, &s);
        assert_null(s.dsn);
        assert_null(s.name);
}

static void test_values_from_env(void **state) {
        setenv("UT_NAME", "api", 1);
        setenv("UT_PORT", "65535", 1);
        setenv("UT_RATIO", "1", 1);
        struct settings s;
        struct err_detail err;
        assert_int_equal(load(&s, &err), 0);
        assert_string_equal(s.name, "api");
        assert_int_equal(s.port, 65535);
        assert_true(s.ratio == 1.0);
        config_free(table, &s);
}

static void test_required_missing(void **state) {
        unsetenv("UT_DSN");
        struct settings s;
        struct err_detail err;
        assert_int_equal(load(&s, &err), -EINVAL);
        assert_int_equal(err.errnum, -EINVAL);
        assert_non_null(strstr(err.message, "UT_DSN"));
        assert_non_null(strstr(err.message, "required"));
        config_free(table, &s);

        setenv("UT_DSN", "", 1); /* empty counts as unset */
        assert_int_equal(load(&s, &err), -EINVAL);
        assert_non_null(strstr(err.message, "UT_DSN"));
        config_free(table, &s);
}

static void expect_bad(const char *name, const char *value, const char *why) {
        setenv(name, value, 1);
        struct settings s;
        struct err_detail err;
        assert_int_equal(load(&s, &err), -EINVAL);
        assert_non_null(strstr(err.message, name));
        if (why)
                assert_non_null(strstr(err.message, why));
        config_free(table, &s);
        unsetenv(name);
}

static void test_int_bounds_and_syntax(void **state) {
        expect_bad("UT_PORT", "0", "outside");
        expect_bad("UT_PORT", "65536", "outside");
        expect_bad("UT_PORT", "-5", "outside");
        expect_bad("UT_PORT", "80x", "not an integer");
        expect_bad("UT_PORT", "eighty", "not an integer");
        expect_bad("UT_PORT", "99999999999999999999999", "not an integer");
        expect_bad("UT_RATIO", "1.5", "outside");
        expect_bad("UT_RATIO", "nan", NULL);
        expect_bad("UT_RATIO", "half", NULL);
}

static void test_bool_parse(void **state) {
        const char *yes[] = {"1", "true", "yes"}, *no[] = {"0", "false", "no"};
        struct settings s;
        struct err_detail err;
        for (size_t i = 0; i < 3; i++) {
                setenv("UT_VERBOSE", yes[i], 1);
                assert_int_equal(load(&s, &err), 0);
                assert_true(s.verbose);
                config_free(table, &s);
                setenv("UT_VERBOSE", no[i], 1);
                assert_int_equal(load(&s, &err), 0);
                assert_false(s.verbose);
                config_free(table, &s);
        }
        expect_bad("UT_VERBOSE", "maybe", "boolean");
}

static void test_help_hides_sensitive(void **state) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        assert_non_null(f);
        config_print_help(f, "paddock-unit", "unit test", table);
        fclose(f);
        assert_non_null(strstr(buf, "UT_DSN"));
        assert_non_null(strstr(buf, "required"));
        assert_non_null(strstr(buf, "UT_PORT"));
        assert_non_null(strstr(buf, "default 8080"));
        assert_non_null(strstr(buf, "sensitive"));
        free(buf);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_defaults, reset_env),
                cmocka_unit_test_setup(test_values_from_env, reset_env),
                cmocka_unit_test_setup(test_required_missing, reset_env),
                cmocka_unit_test_setup(test_int_bounds_and_syntax, reset_env),
                cmocka_unit_test_setup(test_bool_parse, reset_env),
                cmocka_unit_test_setup(test_help_hides_sensitive, reset_env),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

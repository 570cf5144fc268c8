/* The Kafka settings every daemon shares (lib/kafka/kafka_config.h): one
 * table fragment, transport security passed through to librdkafka as given,
 * the SASL password sensitive, bad values refused naming the setting. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/config.h"
#include "kafka/kafka_config.h"

struct settings {
        char *other;
        struct kafka_settings kafka;
};

static const struct config_entry table[] = {
        {"PADDOCK_TEST_OTHER", CONFIG_STRING, "x", 0, 0, false, offsetof(struct settings, other), "unrelated"},
        KAFKA_CONFIG_ENTRIES(struct settings, kafka),
        {NULL},
};

static const char *prop(const struct kafka_options *o, const char *name) {
        for (const char *const *kv = o->security; kv && kv[0]; kv += 2)
                if (!strcmp(kv[0], name))
                        return kv[1];
        return NULL;
}

/* The test owns these: a caller's environment (a stack's endpoints.env) must not leak in. */
static void clear_env(void) {
        for (const struct config_entry *t = table; t->name; t++)
                unsetenv(t->name);
}

static void test_defaults_are_plaintext(void **state) {
        struct settings s = {0};
        struct err_detail e = {0};
        clear_env();
        setenv("PADDOCK_KAFKA_BOOTSTRAP", "127.0.0.1:9092", 1);
        assert_int_equal(config_load(table, &s, &e), 0);
        assert_int_equal(kafka_settings_check(&s.kafka, &e), 0);
        struct kafka_options o;
        kafka_settings_options(&s.kafka, "unit", NULL, &o);
        assert_string_equal(o.bootstrap, "127.0.0.1:9092");
        assert_int_equal(o.session_timeout_ms, 6000);
        assert_string_equal(prop(&o, "security.protocol"), "plaintext");
        assert_null(prop(&o, "sasl.password"));
        /* no keys: a daemon refuses to run on an unauthenticated bus */
        struct bus_auth *a = NULL;
        assert_int_equal(kafka_settings_auth(&s.kafka, "api", &a, &e), -EINVAL);
        assert_non_null(strstr(e.message, "PADDOCK_TRUSTED_KEYS"));
        config_free(table, &s);
}

/* Producers do not linger unless told to: every launch hop waits for its
 * record's acknowledgement, so a linger is paid per hop (issue 10 §4). */
static void test_linger_setting(void **state) {
        struct settings s = {0};
        struct err_detail e = {0};
        clear_env();
        setenv("PADDOCK_KAFKA_BOOTSTRAP", "127.0.0.1:9092", 1);
        assert_int_equal(config_load(table, &s, &e), 0);
        struct kafka_options o;
        kafka_settings_options(&s.kafka, "unit", NULL, &o);
        assert_int_equal(o.linger_ms, 0);
        config_free(table, &s);

        s = (struct settings){0};
        setenv("PADDOCK_KAFKA_LINGER_MS", "7", 1);
        assert_int_equal(config_load(table, &s, &e), 0);
        kafka_settings_options(&s.kafka, "unit", NULL, &o);
        assert_int_equal(o.linger_ms, 7);
        config_free(table, &s);

        s = (struct settings){0};
        setenv("PADDOCK_KAFKA_LINGER_MS", "5000", 1);
        assert_true(config_load(table, &s, &e) < 0);
        assert_non_null(strstr(e.message, "PADDOCK_KAFKA_LINGER_MS"));
        config_free(table, &s);
        unsetenv("PADDOCK_KAFKA_LINGER_MS");
}

/* The launch path's consumers fetch with a wait of their own
 * (kafka_options_control); every other consumer keeps the shared one. */
static void test_control_fetch_wait(void **state) {
        struct settings s = {0};
        struct err_detail e = {0};
        clear_env();
        setenv("PADDOCK_KAFKA_BOOTSTRAP", "127.0.0.1:9092", 1);
        setenv("PADDOCK_KAFKA_FETCH_WAIT_MS", "10", 1);
        setenv("PADDOCK_KAFKA_CONTROL_FETCH_WAIT_MS", "2", 1);
        assert_int_equal(config_load(table, &s, &e), 0);
        struct kafka_options o;
        kafka_settings_options(&s.kafka, "unit", NULL, &o);
        assert_int_equal(o.fetch_wait_max_ms, 10);
        kafka_options_control(&o, &s.kafka);
        assert_int_equal(o.fetch_wait_max_ms, 2);
        assert_string_equal(o.bootstrap, "127.0.0.1:9092"); /* the rest as it was */
        config_free(table, &s);

        s = (struct settings){0};
        unsetenv("PADDOCK_KAFKA_CONTROL_FETCH_WAIT_MS");
        assert_int_equal(config_load(table, &s, &e), 0);
        kafka_settings_options(&s.kafka, "unit", NULL, &o);
        kafka_options_control(&o, &s.kafka);
        assert_int_equal(o.fetch_wait_max_ms, 500); /* a real broker answers at once: no need to spin */
        config_free(table, &s);

        s = (struct settings){0};
        setenv("PADDOCK_KAFKA_CONTROL_FETCH_WAIT_MS", "0", 1);
        assert_true(config_load(table, &s, &e) < 0);
        assert_non_null(strstr(e.message, "PADDOCK_KAFKA_CONTROL_FETCH_WAIT_MS"));
        config_free(table, &s);
        unsetenv("PADDOCK_KAFKA_CONTROL_FETCH_WAIT_MS");
        unsetenv("PADDOCK_KAFKA_FETCH_WAIT_MS");
}

static void test_sasl_ssl_passed_through(void **state) {
        struct settings s = {0};
        struct err_detail e = {0};
        clear_env();
        setenv("PADDOCK_KAFKA_SECURITY_PROTOCOL", "sasl_ssl", 1);
        setenv("PADDOCK_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512", 1);
        setenv("PADDOCK_KAFKA_SASL_USERNAME", "paddock-api", 1);
        setenv("PADDOCK_KAFKA_SASL_PASSWORD", "hunter2", 1);
        setenv("PADDOCK_KAFKA_SSL_CA_LOCATION", "/etc/ca.crt", 1);
        assert_int_equal(config_load(table, &s, &e), 0);
        assert_int_equal(kafka_settings_check(&s.kafka, &e), 0);
        struct kafka_options o;
        kafka_settings_options(&s.kafka, "unit", NULL, &o);
        assert_string_equal(prop(&o, "security.protocol"), "sasl_ssl");
        assert_string_equal(prop(&o, "sasl.mechanism"), "SCRAM-SHA-512");
        assert_string_equal(prop(&o, "sasl.username"), "paddock-api");
        assert_string_equal(prop(&o, "sasl.password"), "hunter2");
        assert_string_equal(prop(&o, "ssl.ca.location"), "/etc/ca.crt");
        assert_null(prop(&o, "ssl.key.location"));
        bool sensitive = false;
        for (const struct config_entry *t = table; t->name; t++)
                if (!strcmp(t->name, "PADDOCK_KAFKA_SASL_PASSWORD"))
                        sensitive = t->sensitive;
        assert_true(sensitive);
        config_free(table, &s);

        /* SASL without a mechanism, or an unknown protocol: refused, naming the setting */
        unsetenv("PADDOCK_KAFKA_SASL_MECHANISM");
        assert_int_equal(config_load(table, &s, &e), 0);
        assert_int_equal(kafka_settings_check(&s.kafka, &e), -EINVAL);
        assert_non_null(strstr(e.message, "PADDOCK_KAFKA_SASL_MECHANISM"));
        config_free(table, &s);
        setenv("PADDOCK_KAFKA_SECURITY_PROTOCOL", "tls", 1);
        assert_int_equal(config_load(table, &s, &e), 0);
        assert_int_equal(kafka_settings_check(&s.kafka, &e), -EINVAL);
        assert_non_null(strstr(e.message, "PADDOCK_KAFKA_SECURITY_PROTOCOL"));
        config_free(table, &s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults_are_plaintext),
                cmocka_unit_test(test_linger_setting),
                cmocka_unit_test(test_control_fetch_wait),
                cmocka_unit_test(test_sasl_ssl_passed_through),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

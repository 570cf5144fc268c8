/* Signed records on the bus (lib/crypto/sign.h, lib/kafka/bus_auth.h): keys,
 * signatures, the table of who may say what, and the consumer refusing
 * unsigned, forged, unknown and misplaced records against librdkafka's mock
 * cluster (which passes record headers through: message format v2). */
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/metrics.h"
#include "crypto/sign.h"
#include "kafka/bus_auth.h"
#include "kafka/kafka.h"
#include "kafka/topics.h"

static char dir[] = "/tmp/paddock-bus-auth-XXXXXX";
static char path_buf[8][512];

static const char *path(int slot, const char *name) {
        snprintf(path_buf[slot], sizeof path_buf[slot], "%s/%s", dir, name);
        return path_buf[slot];
}

static void new_key(const char *file, char pub[SIGN_PUBLIC_KEY_B64_LEN + 1]) {
        struct sign_key *k = NULL;
        struct err_detail e = {0};
        unlink(file);
        assert_int_equal(sign_key_generate(file, &k, &e), 0);
        assert_int_equal(sign_key_public_b64(k, pub), 0);
        sign_key_free(k);
}

static void test_sign_roundtrip(void **state) {
        char pub_b64[SIGN_PUBLIC_KEY_B64_LEN + 1];
        const char *file = path(0, "k1.pem");
        new_key(file, pub_b64);
        struct stat st;
        assert_int_equal(stat(file, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        struct err_detail e = {0};
        /* never overwritten */
        assert_int_equal(sign_key_generate(file, NULL, &e), -EEXIST);

        struct sign_key *k = NULL;
        assert_int_equal(sign_key_load(file, &k, &e), 0);
        char again[SIGN_PUBLIC_KEY_B64_LEN + 1];
        assert_int_equal(sign_key_public_b64(k, again), 0);
        assert_string_equal(again, pub_b64);
        uint8_t pub[SIGN_PUBLIC_KEY_LEN], sig[SIGN_SIGNATURE_LEN];
        assert_int_equal(sign_public_key_parse(pub_b64, pub), 0);

        const void *parts[] = {"abc", "def"};
        size_t lens[] = {3, 3};
        assert_int_equal(sign_parts(k, parts, lens, 2, sig), 0);
        assert_true(sign_verify_parts(pub, parts, lens, 2, sig, sizeof sig));
        /* the same bytes split differently verify too: the signature is over the concatenation */
        const void *one[] = {"abcdef"};
        size_t onelen[] = {6};
        assert_true(sign_verify_parts(pub, one, onelen, 1, sig, sizeof sig));
        const void *other[] = {"abcdeg"};
        assert_false(sign_verify_parts(pub, other, onelen, 1, sig, sizeof sig));
        sig[10] ^= 1;
        assert_false(sign_verify_parts(pub, parts, lens, 2, sig, sizeof sig));
        assert_false(sign_verify_parts(pub, parts, lens, 2, sig, sizeof sig - 1));
        sign_key_free(k);

        /* group- or world-readable keys are refused, like ssh does */
        assert_int_equal(chmod(file, 0640), 0);
        k = NULL;
        assert_int_equal(sign_key_load(file, &k, &e), -EPERM);
        assert_null(k);
        assert_non_null(strstr(e.message, file));
        assert_int_equal(sign_key_load(path(1, "missing.pem"), &k, &e), -ENOENT);
}

static void test_public_key_parse(void **state) {
        uint8_t pub[SIGN_PUBLIC_KEY_LEN];
        assert_int_equal(sign_public_key_parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", pub), 0);
        assert_int_equal(pub[31], 31);
        assert_int_equal(sign_public_key_parse(" AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n", pub), 0);
        assert_int_equal(sign_public_key_parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh", pub), -EINVAL);
        assert_int_equal(sign_public_key_parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdH!8=", pub), -EINVAL);
        assert_int_equal(sign_public_key_parse("", pub), -EINVAL);
}

static void test_acl_table(void **state) {
        assert_true(bus_auth_allowed(TOPIC_RUNS_REQUESTED, "api"));
        assert_false(bus_auth_allowed(TOPIC_RUNS_REQUESTED, "scheduler"));
        assert_true(bus_auth_allowed(TOPIC_RUNS_ASSIGNED, "scheduler"));
        assert_false(bus_auth_allowed(TOPIC_RUNS_ASSIGNED, "node:n1"));
        assert_true(bus_auth_allowed(TOPIC_RUNS_CONTROL, "api"));
        assert_true(bus_auth_allowed(TOPIC_RUNS_CONTROL, "scheduler"));
        assert_false(bus_auth_allowed(TOPIC_RUNS_CONTROL, "node:n1"));
        assert_true(bus_auth_allowed(TOPIC_RUNS_EVENTS, "node:n1"));
        assert_true(bus_auth_allowed(TOPIC_RUNS_EVENTS, "scheduler"));
        /* the api: reviews' events only (evidence checks the kind) */
        assert_true(bus_auth_allowed(TOPIC_RUNS_EVENTS, "api"));
        assert_false(bus_auth_allowed(TOPIC_RUNS_EVENTS, "billing"));
        assert_false(bus_auth_allowed(TOPIC_RUNS_EVENTS, "node:"));
        assert_true(bus_auth_allowed(TOPIC_RUNS_STATUS, "node:n1"));
        assert_true(bus_auth_allowed(TOPIC_RUNS_STATUS, "scheduler"));
        assert_false(bus_auth_allowed(TOPIC_RUNS_STATUS, "api"));
        assert_false(bus_auth_allowed(TOPIC_RUNS_STATUS, "evidence"));
        assert_false(bus_auth_allowed(TOPIC_RUNS_STATUS, "node:"));
        assert_true(bus_auth_allowed(TOPIC_ARTIFACTS, "node:n1"));
        assert_true(bus_auth_allowed(TOPIC_USAGE, "node:n1"));
        assert_false(bus_auth_allowed(TOPIC_USAGE, "billing"));
        assert_true(bus_auth_allowed(TOPIC_NODES, "node:n1"));
        assert_true(bus_auth_allowed(TOPIC_AUDIT, "api"));
        assert_false(bus_auth_allowed(TOPIC_AUDIT, "node:n1"));
        assert_false(bus_auth_allowed(TOPIC_AUDIT, "evidence"));
        assert_true(bus_auth_allowed(TOPIC_SIEM_OCSF, "evidence"));
        /* approval notices: the api alone (issue 12 §4) */
        assert_true(bus_auth_allowed(TOPIC_APPROVALS, "api"));
        assert_false(bus_auth_allowed(TOPIC_APPROVALS, "node:n1"));
        assert_false(bus_auth_allowed(TOPIC_APPROVALS, "scheduler"));
        /* budget notices: only the api, which detects them (docs/CONTRACTS.md "Budgets") */
        assert_true(bus_auth_allowed(TOPIC_USAGE_ALERTS, "api"));
        assert_false(bus_auth_allowed(TOPIC_USAGE_ALERTS, "billing"));
        assert_false(bus_auth_allowed(TOPIC_USAGE_ALERTS, "node:n1"));
        assert_false(bus_auth_allowed("paddock.unknown", "api"));
        assert_true(bus_auth_is_node("node:n1", "n1"));
        assert_false(bus_auth_is_node("node:n1", "n2"));
        assert_false(bus_auth_is_node("node:n12", "n1"));
        assert_false(bus_auth_is_node("api", "api"));
}

static void test_trusted_file_errors(void **state) {
        struct bus_auth *a = NULL;
        struct err_detail e = {0};
        FILE *f = fopen(path(2, "bad-trusted"), "w");
        fprintf(f, "# comment\napi AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\nscheduler not-a-key\n");
        fclose(f);
        assert_int_equal(bus_auth_new(NULL, NULL, path(2, "bad-trusted"), &a, &e), -EINVAL);
        assert_non_null(strstr(e.message, "line 3"));
        assert_int_equal(bus_auth_new(NULL, NULL, "", &a, &e), -EINVAL);
        assert_int_equal(bus_auth_new("api", NULL, path(2, "bad-trusted"), &a, &e), -EINVAL);
        assert_null(a);
}

static rd_kafka_t *mock_host;
static rd_kafka_mock_cluster_t *mock;
static char bootstrap[256];

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {}

static long long metric_value(const char *series) {
        char *text = metrics_render();
        assert_non_null(text);
        const char *p = strstr(text, series);
        long long v = p ? strtoll(p + strlen(series), NULL, 10) : -1;
        free(text);
        return v;
}

/* One producer per identity and key; the consumer trusts api and node:n1 only. */
static void test_consumer_refuses(void **state) {
        char errstr[256], api_pub[48], node_pub[48], rogue_pub[48];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set_log_cb(conf, quiet_log);
        mock_host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
        assert_non_null(mock_host);
        mock = rd_kafka_mock_cluster_new(mock_host, 1);
        assert_non_null(mock);
        snprintf(bootstrap, sizeof bootstrap, "%s", rd_kafka_mock_cluster_bootstraps(mock));
        rd_kafka_mock_topic_create(mock, TOPIC_RUNS_CONTROL, 1, 1);

        new_key(path(3, "api.pem"), api_pub);
        new_key(path(4, "node.pem"), node_pub);
        new_key(path(5, "rogue.pem"), rogue_pub);
        FILE *f = fopen(path(6, "trusted"), "w");
        fprintf(f, "api %s\nnode:n1 %s\n", api_pub, node_pub);
        fclose(f);

        struct err_detail e = {0};
        struct bus_auth *as_api = NULL, *as_node = NULL, *as_rogue = NULL, *as_stranger = NULL, *reader = NULL;
        assert_int_equal(bus_auth_new("api", path(3, "api.pem"), path(6, "trusted"), &as_api, &e), 0);
        assert_int_equal(bus_auth_new("node:n1", path(4, "node.pem"), path(6, "trusted"), &as_node, &e), 0);
        /* claims to be the api, holds another key */
        assert_int_equal(bus_auth_new("api", path(5, "rogue.pem"), path(6, "trusted"), &as_rogue, &e), 0);
        assert_int_equal(bus_auth_new("node:n9", path(5, "rogue.pem"), path(6, "trusted"), &as_stranger, &e), 0);
        assert_int_equal(bus_auth_new(NULL, NULL, path(6, "trusted"), &reader, &e), 0);
        bus_auth_register_metrics();

        struct bus_auth *senders[] = {NULL, as_rogue, as_stranger, as_node, as_api};
        const char *values[] = {"unsigned", "forged", "stranger", "node-on-control", "genuine"};
        for (size_t i = 0; i < 5; i++) {
                struct kafka_options o = {.bootstrap = bootstrap, .client_id = "unit", .auth = senders[i]};
                struct kafka_producer *p = kafka_producer_new(&o, &e);
                assert_non_null(p);
                assert_int_equal(kafka_produce_sync(p, TOPIC_RUNS_CONTROL, "r", values[i], strlen(values[i]), 10000, &e),
                                 0);
                kafka_producer_free(p);
        }

        struct kafka_options o = {.bootstrap = bootstrap, .client_id = "unit", .session_timeout_ms = 6000,
                                  .auth = reader};
        const char *topics[] = {TOPIC_RUNS_CONTROL, NULL};
        struct kafka_consumer *c = kafka_consumer_new(&o, "g.auth", topics, "earliest", &e);
        assert_non_null(c);
        struct kafka_message m;
        int r = 0;
        for (int i = 0; i < 60 && r == 0; i++)
                r = kafka_consumer_poll(c, 500, &m);
        assert_int_equal(r, 1);
        /* the four refused records never reach the caller */
        assert_int_equal(m.len, strlen("genuine"));
        assert_memory_equal(m.value, "genuine", m.len);
        assert_string_equal(m.signer, "api");
        assert_true(m.is_signed);
        kafka_message_release(&m);
        assert_int_equal(metric_value("paddock_bus_refused_total{reason=\"unsigned\"} "), 1);
        assert_int_equal(metric_value("paddock_bus_refused_total{reason=\"bad_signature\"} "), 1);
        assert_int_equal(metric_value("paddock_bus_refused_total{reason=\"unknown_signer\"} "), 1);
        assert_int_equal(metric_value("paddock_bus_refused_total{reason=\"not_allowed\"} "), 1);
        kafka_consumer_free(c);

        /* enrolling = adding a line to the file: a changed file is read again on an unknown signer */
        f = fopen(path(6, "trusted"), "a");
        fprintf(f, "node:n9 %s\n", rogue_pub);
        fclose(f);
        uint8_t sig[SIGN_SIGNATURE_LEN];
        assert_int_equal(bus_auth_sign(as_stranger, TOPIC_RUNS_EVENTS, "x", 1, sig), 0);
        assert_int_equal(bus_auth_verify(reader, TOPIC_RUNS_EVENTS, "node:n9", 7, sig, sizeof sig, "x", 1), 0);
        /* re-enrolment: a later line replaces the key, and a record of the new key verifies */
        char again_pub[48];
        new_key(path(7, "rotated.pem"), again_pub);
        struct bus_auth *rotated = NULL;
        assert_int_equal(bus_auth_new("node:n9", path(7, "rotated.pem"), path(6, "trusted"), &rotated, &e), 0);
        f = fopen(path(6, "trusted"), "a");
        fprintf(f, "node:n9 %s\n", again_pub);
        fclose(f);
        uint8_t sig2[SIGN_SIGNATURE_LEN];
        assert_int_equal(bus_auth_sign(rotated, TOPIC_RUNS_EVENTS, "y", 1, sig2), 0);
        assert_int_equal(bus_auth_verify(reader, TOPIC_RUNS_EVENTS, "node:n9", 7, sig2, sizeof sig2, "y", 1), 0);
        /* and the replaced key no longer does */
        assert_int_not_equal(bus_auth_verify(reader, TOPIC_RUNS_EVENTS, "node:n9", 7, sig, sizeof sig, "x", 1), 0);
        bus_auth_free(rotated);
        /* the topic is signed: the same record replayed onto another topic fails */
        assert_int_not_equal(bus_auth_verify(reader, TOPIC_USAGE, "node:n9", 7, sig2, sizeof sig2, "y", 1), 0);

        bus_auth_free(as_api);
        bus_auth_free(as_node);
        bus_auth_free(as_rogue);
        bus_auth_free(as_stranger);
        bus_auth_free(reader);
        rd_kafka_mock_cluster_destroy(mock);
        rd_kafka_destroy(mock_host);
}

static int group_setup(void **state) {
        return mkdtemp(dir) ? 0 : -1;
}

static int group_teardown(void **state) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sign_roundtrip),
                cmocka_unit_test(test_public_key_parse),
                cmocka_unit_test(test_acl_table),
                cmocka_unit_test(test_trusted_file_errors),
                cmocka_unit_test(test_consumer_refuses),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

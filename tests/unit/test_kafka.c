/* kafka wrapper against librdkafka's in-process mock cluster, which speaks the
 * real Kafka protocol on loopback TCP ports. */
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "core/log.h"
#include "kafka/kafka.h"

static rd_kafka_t *mock_host;
static rd_kafka_mock_cluster_t *mock;
static char bootstrap[256];

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {}

static int group_setup(void **state) {
        char errstr[256];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set_log_cb(conf, quiet_log);
        /* A handle only to host the mock cluster's threads. */
        mock_host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
        if (!mock_host)
                return -1;
        mock = rd_kafka_mock_cluster_new(mock_host, 3);
        if (!mock)
                return -1;
        snprintf(bootstrap, sizeof bootstrap, "%s", rd_kafka_mock_cluster_bootstraps(mock));
        rd_kafka_mock_topic_create(mock, "t.roundtrip", 1, 3);
        rd_kafka_mock_topic_create(mock, "t.resume", 1, 3);
        rd_kafka_mock_topic_create(mock, "t.threads", 4, 3);
        rd_kafka_mock_topic_create(mock, "t.async", 2, 3);
        rd_kafka_mock_topic_create(mock, "t.filter", 1, 3);
        rd_kafka_mock_topic_create(mock, "t.many", 1, 3);
        rd_kafka_mock_topic_create(mock, "t.follow", 4, 3);
        return 0;
}

static int group_teardown(void **state) {
        rd_kafka_mock_cluster_destroy(mock);
        rd_kafka_destroy(mock_host);
        return 0;
}

static struct kafka_options opts(void) {
        return (struct kafka_options){.bootstrap = bootstrap, .client_id = "unit", .session_timeout_ms = 6000};
}

/* Polls until a message arrives or ~30 s pass. */
static int poll_one(struct kafka_consumer *c, struct kafka_message *m) {
        for (int i = 0; i < 60; i++) {
                int r = kafka_consumer_poll(c, 500, m);
                if (r != 0)
                        return r;
        }
        return 0;
}

static void test_produce_sync_then_consume(void **state) {
        struct kafka_options o = opts();
        struct err_detail err = {0};
        struct kafka_producer *p = kafka_producer_new(&o, &err);
        assert_non_null(p);
        static const unsigned char value[] = {'h', 'i', 0, 0xff, '!'};
        struct timespec t0, t1;
        clock_gettime(CLOCK_REALTIME, &t0);
        assert_int_equal(kafka_produce_sync(p, "t.roundtrip", "run-1", value, sizeof value, 10000, &err), 0);
        clock_gettime(CLOCK_REALTIME, &t1);
        assert_int_equal(kafka_producer_ping(p, 5000, NULL), 0);

        const char *topics[] = {"t.roundtrip", NULL};
        struct kafka_consumer *c = kafka_consumer_new(&o, "g.roundtrip", topics, "earliest", &err);
        assert_non_null(c);
        struct kafka_message m;
        assert_int_equal(poll_one(c, &m), 1);
        assert_string_equal(m.topic, "t.roundtrip");
        assert_int_equal(m.key_len, 5);
        assert_memory_equal(m.key, "run-1", 5);
        assert_int_equal(m.len, sizeof value);
        assert_memory_equal(m.value, value, sizeof value);
        assert_int_equal(m.offset, 0);
        /* the producer's CreateTime, for the stream's per-hop timings (fanout.c) */
        assert_in_range(m.timestamp_ms, (int64_t)t0.tv_sec * 1000 + t0.tv_nsec / 1000000,
                        (int64_t)t1.tv_sec * 1000 + t1.tv_nsec / 1000000);
        assert_int_equal(kafka_consumer_commit(c, &m, &err), 0);
        kafka_message_release(&m);
        assert_null(m.handle);
        assert_null(kafka_consumer_free(c));
        assert_null(kafka_producer_free(p));
}

static void consume_expect(struct kafka_consumer *c, const char *want, bool commit) {
        struct kafka_message m;
        struct err_detail err = {0};
        assert_int_equal(poll_one(c, &m), 1);
        assert_int_equal(m.len, strlen(want));
        assert_memory_equal(m.value, want, m.len);
        if (commit)
                assert_int_equal(kafka_consumer_commit(c, &m, &err), 0);
        kafka_message_release(&m);
}

static void test_group_resumes_after_commit(void **state) {
        struct kafka_options o = opts();
        struct err_detail err = {0};
        struct kafka_producer *p = kafka_producer_new(&o, &err);
        assert_non_null(p);
        for (int i = 1; i <= 3; i++) {
                char v[16];
                snprintf(v, sizeof v, "m%d", i);
                assert_int_equal(kafka_produce_sync(p, "t.resume", "k", v, strlen(v), 10000, &err), 0);
        }
        const char *topics[] = {"t.resume", NULL};
        struct kafka_consumer *c = kafka_consumer_new(&o, "g.resume", topics, "earliest", &err);
        assert_non_null(c);
        consume_expect(c, "m1", true);
        consume_expect(c, "m2", false); /* seen but not committed: must come again */
        c = kafka_consumer_free(c);

        c = kafka_consumer_new(&o, "g.resume", topics, "earliest", &err);
        assert_non_null(c);
        consume_expect(c, "m2", true);
        consume_expect(c, "m3", true);
        kafka_consumer_free(c);
        kafka_producer_free(p);
}

struct thread_arg {
        struct kafka_producer *p;
        int id;
        int failures;
};

static void *produce_thread(void *arg) {
        struct thread_arg *a = arg;
        for (int i = 0; i < 20; i++) {
                char key[32], v[32];
                snprintf(key, sizeof key, "k%d", a->id);
                snprintf(v, sizeof v, "t%d-%d", a->id, i);
                if (kafka_produce_sync(a->p, "t.threads", key, v, strlen(v), 10000, NULL) != 0)
                        a->failures++;
        }
        return NULL;
}

static void test_produce_sync_from_threads(void **state) {
        struct kafka_options o = opts();
        struct kafka_producer *p = kafka_producer_new(&o, NULL);
        assert_non_null(p);
        pthread_t t[4];
        struct thread_arg args[4];
        for (int i = 0; i < 4; i++) {
                args[i] = (struct thread_arg){p, i, 0};
                assert_int_equal(pthread_create(&t[i], NULL, produce_thread, &args[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
                pthread_join(t[i], NULL);
                assert_int_equal(args[i].failures, 0);
        }
        kafka_producer_free(p);
}

static void test_async_produce_and_flush(void **state) {
        struct kafka_options o = opts();
        struct kafka_producer *p = kafka_producer_new(&o, NULL);
        assert_non_null(p);
        for (int i = 0; i < 100; i++)
                assert_int_equal(kafka_produce(p, "t.async", "k", "x", 1, NULL), 0);
        assert_int_equal(kafka_producer_flush(p, 10000), 0);
        kafka_producer_free(p);
}

/* A tally answers for its own messages only: another tally's failed
 * deliveries neither fail it nor are swallowed by it, nor by the producer's
 * flush; a tally freed with messages in flight is freed by their reports. */
static void test_tally_answers_for_its_own(void **state) {
        static const char *const extra[] = {"message.timeout.ms", "3000", NULL};
        struct kafka_options o = opts();
        o.extra = extra;
        /* its metadata says it does not exist: its messages time out */
        rd_kafka_mock_topic_set_error(mock, "t.tally.gone", RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
        struct kafka_producer *p = kafka_producer_new(&o, NULL);
        assert_non_null(p);
        struct kafka_tally *doomed = kafka_tally_new(p), *fine = kafka_tally_new(p);
        assert_non_null(doomed);
        assert_non_null(fine);
        for (int i = 0; i < 10; i++) {
                assert_int_equal(kafka_produce_tallied(doomed, "t.tally.gone", "k", "x", 1, NULL), 0);
                assert_int_equal(kafka_produce_tallied(fine, "t.async", "k", "y", 1, NULL), 0);
        }
        assert_int_equal(kafka_tally_wait(fine, 20000), 0);
        assert_int_equal(kafka_tally_wait(doomed, 20000), -EIO);
        /* the failures were the doomed tally's, reported once */
        assert_int_equal(kafka_tally_wait(fine, 0), 0);
        assert_int_equal(kafka_tally_wait(doomed, 0), 0);
        assert_int_equal(kafka_producer_flush(p, 10000), 0);
        /* the doomed tally works again on a topic that exists */
        assert_int_equal(kafka_produce_tallied(doomed, "t.async", "k", "z", 1, NULL), 0);
        assert_int_equal(kafka_tally_wait(doomed, 20000), 0);
        for (int i = 0; i < 5; i++)
                assert_int_equal(kafka_produce_tallied(fine, "t.async", "k", "w", 1, NULL), 0);
        fine = kafka_tally_free(fine); /* reports still to come: they free it (ASan watches) */
        assert_null(fine);
        assert_int_equal(kafka_producer_flush(p, 10000), 0);
        kafka_tally_free(doomed);
        kafka_producer_free(p);
}

/* kafka_produce_sync_many(): all acknowledged together, in order; against
 * no broker, none (and why). */
static void test_produce_sync_many(void **state) {
        struct kafka_options o = opts();
        struct err_detail err = {0};
        struct kafka_producer *p = kafka_producer_new(&o, &err);
        assert_non_null(p);
        static const char *const values[] = {"m0", "m1", "m2", "m3", "m4"};
        struct kafka_outgoing out[5];
        for (int i = 0; i < 5; i++)
                out[i] = (struct kafka_outgoing){.topic = "t.many", .key = "run-1", .value = values[i], .len = 2};
        assert_int_equal(kafka_produce_sync_many(p, out, 5, 10000, &err), 5);
        assert_int_equal(kafka_produce_sync_many(p, out, 0, 10000, &err), 0);
        const char *topics[] = {"t.many", NULL};
        struct kafka_consumer *c = kafka_consumer_new(&o, "g.many", topics, "earliest", &err);
        assert_non_null(c);
        for (int i = 0; i < 5; i++)
                consume_expect(c, values[i], false);
        kafka_consumer_free(c);
        kafka_producer_free(p);

        struct kafka_options none = {.bootstrap = "127.0.0.1:1", .client_id = "unit"};
        p = kafka_producer_new(&none, &err);
        assert_non_null(p);
        err = (struct err_detail){0};
        assert_int_equal(kafka_produce_sync_many(p, out, 5, 500, &err), 0);
        assert_int_equal(err.errnum, -ETIMEDOUT);
        assert_non_null(strstr(err.message, "t.many"));
        kafka_producer_free(p);
}

static void test_unreachable_broker(void **state) {
        struct kafka_options o = {.bootstrap = "127.0.0.1:1", .client_id = "unit"};
        struct err_detail err = {0};
        struct kafka_producer *p = kafka_producer_new(&o, &err);
        assert_non_null(p);
        int r = kafka_produce_sync(p, "t.roundtrip", "k", "v", 1, 500, &err);
        assert_true(r < 0);
        assert_int_equal(err.errnum, r);
        assert_true(err.message[0] != '\0');
        assert_int_equal(kafka_producer_ping(p, 300, &err), -ECONNRESET);
        assert_int_equal(err.errnum, -ECONNRESET);
        assert_non_null(strstr(err.message, "no broker answered a metadata request within 300 ms"));
        kafka_producer_free(p);
}

static void test_bad_config(void **state) {
        const char *extra[] = {"no.such.property", "1", NULL};
        struct kafka_options o = {.bootstrap = bootstrap, .extra = extra};
        struct err_detail err = {0};
        assert_null(kafka_producer_new(&o, &err));
        assert_int_equal(err.errnum, -EINVAL);
        assert_non_null(strstr(err.message, "no.such.property"));

        struct kafka_options none = {0};
        assert_null(kafka_producer_new(&none, &err));
        assert_int_equal(err.errnum, -EINVAL);

        const char *topics[] = {"t.roundtrip", NULL};
        assert_null(kafka_consumer_new(&o, "g", topics, "earliest", &err));
        assert_int_equal(err.errnum, -EINVAL);
        struct kafka_options ok = opts();
        assert_null(kafka_consumer_new(&ok, "g", topics, "sideways", &err));
        assert_int_equal(err.errnum, -EINVAL);
}

static void test_free_null(void **state) {
        assert_null(kafka_producer_free(NULL));
        assert_null(kafka_consumer_free(NULL));
        kafka_message_release(NULL);
}

struct filter_seen {
        int calls;
};

/* Wants only key "watched"; counts what it was asked. */
static bool want_watched(void *userdata, const void *key, size_t key_len) {
        struct filter_seen *seen = userdata;
        seen->calls++;
        return key && key_len == 7 && !memcmp(key, "watched", 7);
}

/* The key filter runs before anything else: a record it refuses never
 * comes out of poll, the next wanted one does. */
static void test_key_filter_skips_records(void **state) {
        (void)state;
        struct kafka_options o = opts();
        struct err_detail err = {0};
        struct kafka_producer *p = kafka_producer_new(&o, &err);
        assert_non_null(p);
        assert_int_equal(kafka_produce_sync(p, "t.filter", "other", "a", 1, 10000, &err), 0);
        assert_int_equal(kafka_produce_sync(p, "t.filter", "other", "b", 1, 10000, &err), 0);
        assert_int_equal(kafka_produce_sync(p, "t.filter", "watched", "c", 1, 10000, &err), 0);
        const char *topics[] = {"t.filter", NULL};
        struct kafka_consumer *c = kafka_consumer_new(&o, "g.filter", topics, "earliest", &err);
        assert_non_null(c);
        struct filter_seen seen = {0};
        kafka_consumer_set_key_filter(c, want_watched, &seen);
        struct kafka_message m;
        assert_int_equal(poll_one(c, &m), 1);
        assert_int_equal(m.len, 1);
        assert_memory_equal(m.value, "c", 1);
        assert_int_equal(m.offset, 2);
        assert_int_equal(seen.calls, 3);
        kafka_message_release(&m);
        assert_null(kafka_consumer_free(c));
        assert_null(kafka_producer_free(p));
}

/* Polls for up to ms; 1 with *m filled, 0 if nothing came. */
static int poll_for(struct kafka_consumer *c, int ms, struct kafka_message *m) {
        for (int waited = 0; waited < ms; waited += 100) {
                int r = kafka_consumer_poll(c, 100, m);
                if (r != 0)
                        return r;
        }
        return 0;
}

/* Produces value v with key to t.follow, synchronously. */
static void follow_produce(struct kafka_producer *p, const char *key, const char *v) {
        struct err_detail err = {0};
        assert_int_equal(kafka_produce_sync(p, "t.follow", key, v, strlen(v), 10000, &err), 0);
}

/* Reads the next record and checks its value (and so its key's partition). */
static void follow_expect(struct kafka_consumer *c, const char *want) {
        struct kafka_message m;
        assert_int_equal(poll_one(c, &m), 1);
        assert_int_equal(m.len, strlen(want));
        assert_memory_equal(m.value, want, m.len);
        kafka_message_release(&m);
}

/* kafka_consumer_follow_keys (the api's websocket fan-out): only the
 * partitions the producer sends the keys to are fetched, a newly assigned
 * one from `back` records before its end, one kept from where it was; no
 * keys, no fetch. kafka_consumer_wake ends a poll at once. */
static void test_follow_keys_assigns_partitions(void **state) {
        (void)state;
        struct kafka_options o = opts();
        struct err_detail err = {0};
        struct kafka_producer *p = kafka_producer_new(&o, &err);
        assert_non_null(p);
        struct kafka_consumer *c = kafka_consumer_new(&o, "g.follow", NULL, "earliest", &err);
        assert_non_null(c);
        /* b: a key the producer sends to another partition than a's */
        const char *a = "run-a";
        char b[16] = "";
        for (int i = 0; !b[0] || rd_kafka_msg_partitioner_consistent(NULL, b, strlen(b), 4, NULL, NULL) ==
                                       rd_kafka_msg_partitioner_consistent(NULL, a, strlen(a), 4, NULL, NULL);
             i++)
                snprintf(b, sizeof b, "run-b%d", i);
        const char *keys[] = {a, b};
        struct kafka_message m;

        /* no keys: nothing assigned, and a wake ends the poll that waits */
        assert_int_equal(kafka_consumer_follow_keys(c, "t.follow", keys, 0, 3, &err), 0);
        kafka_consumer_wake(c);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(kafka_consumer_poll(c, 20000, &m), 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_true(t1.tv_sec - t0.tv_sec < 10);

        /* a's partition from 3 records before its end: a0..a6 never come */
        for (int i = 0; i < 10; i++) {
                char v[16];
                snprintf(v, sizeof v, "a%d", i);
                follow_produce(p, a, v);
        }
        follow_produce(p, b, "x1");
        assert_int_equal(kafka_consumer_follow_keys(c, "t.follow", keys, 1, 3, &err), 1);
        follow_expect(c, "a7");
        follow_expect(c, "a8");
        follow_expect(c, "a9");
        follow_produce(p, a, "a10");
        follow_expect(c, "a10");
        follow_produce(p, b, "x2");
        assert_int_equal(poll_for(c, 1500, &m), 0); /* b's partition is not assigned */

        /* b's partition added (2 records, fewer than back: from its start);
         * a's keeps its position: nothing of a is read twice */
        assert_int_equal(kafka_consumer_follow_keys(c, "t.follow", keys, 2, 3, &err), 2);
        follow_produce(p, a, "a11");
        bool x1 = false, x2 = false, a11 = false;
        for (int i = 0; i < 3; i++) {
                assert_int_equal(poll_one(c, &m), 1);
                assert_int_equal(m.len, m.partition == rd_kafka_msg_partitioner_consistent(NULL, a, strlen(a), 4,
                                                                                           NULL, NULL)
                                                ? 3
                                                : 2);
                x1 |= !memcmp(m.value, "x1", 2);
                x2 |= !memcmp(m.value, "x2", 2);
                a11 |= m.len == 3 && !memcmp(m.value, "a11", 3);
                kafka_message_release(&m);
        }
        assert_true(x1 && x2 && a11);
        assert_int_equal(poll_for(c, 1000, &m), 0);

        /* b only: a's partition is given up */
        assert_int_equal(kafka_consumer_follow_keys(c, "t.follow", keys + 1, 1, 3, &err), 1);
        follow_produce(p, a, "a12");
        follow_produce(p, b, "x3");
        follow_expect(c, "x3");
        assert_int_equal(poll_for(c, 1500, &m), 0);

        /* no keys: nothing is fetched */
        assert_int_equal(kafka_consumer_follow_keys(c, "t.follow", NULL, 0, 3, &err), 0);
        follow_produce(p, b, "x4");
        assert_int_equal(poll_for(c, 1500, &m), 0);

        assert_null(kafka_consumer_free(c));
        assert_null(kafka_producer_free(p));
}

int main(void) {
        log_init("test", LOG_WARN);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_produce_sync_then_consume),
                cmocka_unit_test(test_group_resumes_after_commit),
                cmocka_unit_test(test_produce_sync_from_threads),
                cmocka_unit_test(test_async_produce_and_flush),
                cmocka_unit_test(test_produce_sync_many),
                cmocka_unit_test(test_tally_answers_for_its_own),
                cmocka_unit_test(test_unreachable_broker),
                cmocka_unit_test(test_bad_config),
                cmocka_unit_test(test_free_null),
                cmocka_unit_test(test_key_filter_skips_records),
                cmocka_unit_test(test_follow_keys_assigns_partitions),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/* kafka_consume_routes against librdkafka's in-process mock cluster (the real
 * Kafka protocol on loopback): what is committed, when, and what a new group
 * member sees after the previous one went away. Offsets are committed per
 * poll round: a round of one message (batch_max 1, the runner-agent's
 * assignments) commits each message on its own, a longer round all or
 * nothing. */
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "core/log.h"
#include "core/macro.h"
#include "core/metrics.h"
#include "kafka/consume_loop.h"
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
        mock = rd_kafka_mock_cluster_new(mock_host, 1);
        if (!mock)
                return -1;
        snprintf(bootstrap, sizeof bootstrap, "%s", rd_kafka_mock_cluster_bootstraps(mock));
        rd_kafka_mock_topic_create(mock, "t.loop.retry", 1, 1);
        rd_kafka_mock_topic_create(mock, "t.loop.round", 1, 1);
        rd_kafka_mock_topic_create(mock, "t.loop.verdicts", 1, 1);
        rd_kafka_mock_topic_create(mock, "t.loop.idle", 1, 1);
        rd_kafka_mock_topic_create(mock, "t.batch.retry", 1, 1);
        rd_kafka_mock_topic_create(mock, "t.batch.stop", 1, 1);
        rd_kafka_mock_topic_create(mock, "t.batch.single", 1, 1);
        rd_kafka_mock_topic_create(mock, "t.backlog", 1, 1);
        rd_kafka_mock_topic_create(mock, "t.stall.held", 1, 1);
        rd_kafka_mock_topic_create(mock, "t.stall.fetch", 1, 1);
        rd_kafka_mock_topic_create(mock, "t.stall.join", 1, 1);
        return 0;
}

static int group_teardown(void **state) {
        rd_kafka_mock_cluster_destroy(mock);
        rd_kafka_destroy(mock_host);
        return 0;
}

static struct kafka_options opts(void) {
        /* short session: a new member gets the partition soon after the old one leaves */
        return (struct kafka_options){.bootstrap = bootstrap, .client_id = "unit", .session_timeout_ms = 6000};
}

static void produce(const char *topic, const char *const *values) {
        struct kafka_options o = opts();
        struct err_detail err = {0};
        struct kafka_producer *p = kafka_producer_new(&o, &err);
        assert_non_null(p);
        for (size_t i = 0; values[i]; i++)
                assert_int_equal(kafka_produce_sync(p, topic, "k", values[i], strlen(values[i]), 10000, &err), 0);
        kafka_producer_free(p);
}

/* What a handler saw, and what it answers: verdict_for(value) decides. */
struct recorder {
        char seen[16][16];
        int n;
        int transient_left;   /* "flaky" fails transiently this many times, then succeeds */
        int stop_after;       /* set stop once this many messages were handed in */
        atomic_bool stop;
        struct metric processed, skipped, retries;
};

static int record_handle(void *userdata, const struct kafka_message *m, struct err_detail *err) {
        struct recorder *r = userdata;
        if (r->n < 16)
                snprintf(r->seen[r->n], sizeof r->seen[0], "%.*s", (int)m->len, (const char *)m->value);
        r->n++;
        if (r->stop_after && r->n >= r->stop_after)
                atomic_store(&r->stop, true);
        if (m->len == 5 && !memcmp(m->value, "flaky", 5) && (r->transient_left < 0 || r->transient_left-- > 0))
                return err_set(err, -ECONNRESET, "08006", "database went away");
        if (m->len == 6 && !memcmp(m->value, "poison", 6))
                return err_set(err, KAFKA_SKIP, "decode", "not a protobuf message");
        if (m->len == 3 && !memcmp(m->value, "bad", 3))
                return -EBADMSG; /* a decoder's own error counts as poison too */
        return 0;
}

static void recorder_init(struct recorder *r) {
        *r = (struct recorder){0};
        r->processed = (struct metric){.name = "processed", .type = METRIC_COUNTER};
        r->skipped = (struct metric){.name = "skipped", .type = METRIC_COUNTER};
        r->retries = (struct metric){.name = "retries", .type = METRIC_COUNTER};
}

/* batch_max 0: the default round (up to 1000, 300 ms linger so that a
 * test's messages produced beforehand make one round). */
static struct kafka_consume_loop_options loop_opts(struct recorder *r, int batch_max) {
        return (struct kafka_consume_loop_options){.poll_timeout_ms = 200, .retry_min_ms = 10, .retry_max_ms = 40,
                                                   .processed = &r->processed, .skipped = &r->skipped,
                                                   .retries = &r->retries, .stop = &r->stop,
                                                   .batch_max = batch_max, .linger_ms = batch_max == 1 ? 0 : 300};
}

/* Stops the loop after ~30 s if a test's own stop condition never came. */
struct watchdog {
        atomic_bool *stop;
        atomic_bool done;
        pthread_t thread;
};

static void *watchdog_main(void *arg) {
        struct watchdog *w = arg;
        for (int i = 0; i < 300 && !atomic_load(&w->done); i++)
                nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
        atomic_store(w->stop, true);
        return NULL;
}

/* One single route for topic over c. */
static int run_loop(struct kafka_consumer *c, const char *topic, struct recorder *r, int batch_max) {
        struct watchdog w = {.stop = &r->stop};
        assert_int_equal(pthread_create(&w.thread, NULL, watchdog_main, &w), 0);
        struct kafka_consume_loop_options lo = loop_opts(r, batch_max);
        const struct kafka_route routes[] = {{topic, .handle = record_handle}, {NULL}};
        int ret = kafka_consume_routes(c, routes, r, &lo);
        atomic_store(&w.done, true);
        pthread_join(w.thread, NULL);
        return ret;
}

/* Produces value and checks that the group's next member sees only it: every
 * earlier message of the topic was committed. */
static void expect_all_committed(const char *topic, const char *group, const char *value) {
        produce(topic, (const char *const[]){value, NULL});
        struct kafka_options o = opts();
        struct err_detail err = {0};
        const char *topics[] = {topic, NULL};
        struct recorder r;
        recorder_init(&r);
        r.stop_after = 1;
        struct kafka_consumer *c = kafka_consumer_new(&o, group, topics, "earliest", &err);
        assert_non_null(c);
        assert_int_equal(run_loop(c, topic, &r, 0), 0);
        assert_int_equal(r.n, 1);
        assert_string_equal(r.seen[0], value);
        kafka_consumer_free(c);
}

/* Rounds of one message (the runner-agent's assignments: each committed once
 * its run is durably accepted): a message failing transiently is handed in
 * again and again, never committed, and nothing after it is handed in; after
 * the member goes away (stop mid-retry, then close without commit, as a crash
 * would leave it) the next member gets the same message but not the one
 * before it, and once it succeeds it is committed and never seen again. */
static void test_transient_retried_never_lost(void **state) {
        produce("t.loop.retry", (const char *const[]){"first", "flaky", "after", NULL});
        struct kafka_options o = opts();
        struct err_detail err = {0};
        const char *topics[] = {"t.loop.retry", NULL};

        struct recorder r;
        recorder_init(&r);
        r.transient_left = -1; /* always failing */
        r.stop_after = 6;      /* "first" + five attempts at "flaky" */
        struct kafka_consumer *c = kafka_consumer_new(&o, "g.loop.retry", topics, "earliest", &err);
        assert_non_null(c);
        assert_int_equal(run_loop(c, "t.loop.retry", &r, 1), 0);
        assert_int_equal(r.n, 6);
        assert_string_equal(r.seen[0], "first");
        for (int i = 1; i < 6; i++)
                assert_string_equal(r.seen[i], "flaky"); /* the SAME message, not "after" */
        assert_int_equal(r.processed.value, 1);
        assert_int_equal(r.retries.value, 5);
        assert_int_equal(r.skipped.value, 0);
        kafka_consumer_free(c);

        recorder_init(&r);
        r.transient_left = 2; /* the database is back after two more attempts */
        r.stop_after = 4;     /* "flaky" x3, "after" */
        c = kafka_consumer_new(&o, "g.loop.retry", topics, "earliest", &err);
        assert_non_null(c);
        assert_int_equal(run_loop(c, "t.loop.retry", &r, 1), 0);
        assert_int_equal(r.n, 4);
        assert_string_equal(r.seen[0], "flaky"); /* redelivered: "first" was committed, "flaky" was not */
        assert_string_equal(r.seen[1], "flaky");
        assert_string_equal(r.seen[2], "flaky");
        assert_string_equal(r.seen[3], "after");
        assert_int_equal(r.processed.value, 2);
        assert_int_equal(r.retries.value, 2);
        kafka_consumer_free(c);

        expect_all_committed("t.loop.retry", "g.loop.retry", "last");
}

/* A longer round with a single route: its messages are handed in one by one
 * in order, a transient failure retries the SAME message and nothing after
 * it; stopped mid-retry, none of the round is committed, so the next member
 * gets the round again from its first message (already applied once: the
 * reason handlers are idempotent), and no message is lost or reordered. */
static void test_transient_round_redelivered(void **state) {
        produce("t.loop.round", (const char *const[]){"first", "flaky", "after", NULL});
        struct kafka_options o = opts();
        struct err_detail err = {0};
        const char *topics[] = {"t.loop.round", NULL};

        struct recorder r;
        recorder_init(&r);
        r.transient_left = -1;
        r.stop_after = 4; /* "first" + three attempts at "flaky" */
        struct kafka_consumer *c = kafka_consumer_new(&o, "g.loop.round", topics, "earliest", &err);
        assert_non_null(c);
        assert_int_equal(run_loop(c, "t.loop.round", &r, 0), 0);
        assert_int_equal(r.n, 4);
        assert_string_equal(r.seen[0], "first");
        for (int i = 1; i < 4; i++)
                assert_string_equal(r.seen[i], "flaky"); /* "after" never handed in ahead of it */
        kafka_consumer_free(c);

        recorder_init(&r);
        r.transient_left = 1;
        r.stop_after = 4; /* "first" again, "flaky" x2, "after" */
        c = kafka_consumer_new(&o, "g.loop.round", topics, "earliest", &err);
        assert_non_null(c);
        assert_int_equal(run_loop(c, "t.loop.round", &r, 0), 0);
        assert_int_equal(r.n, 4);
        assert_string_equal(r.seen[0], "first"); /* its round was not committed */
        assert_string_equal(r.seen[1], "flaky");
        assert_string_equal(r.seen[2], "flaky");
        assert_string_equal(r.seen[3], "after");
        assert_int_equal(r.processed.value, 3);
        kafka_consumer_free(c);

        expect_all_committed("t.loop.round", "g.loop.round", "last");
}

/* Success and both forms of poison are committed once and counted apart. */
static void test_skip_and_success_commit(void **state) {
        produce("t.loop.verdicts", (const char *const[]){"ok1", "poison", "bad", "ok2", NULL});
        struct kafka_options o = opts();
        struct err_detail err = {0};
        const char *topics[] = {"t.loop.verdicts", NULL};

        struct recorder r;
        recorder_init(&r);
        r.stop_after = 4;
        struct kafka_consumer *c = kafka_consumer_new(&o, "g.loop.verdicts", topics, "earliest", &err);
        assert_non_null(c);
        assert_int_equal(run_loop(c, "t.loop.verdicts", &r, 0), 0);
        assert_int_equal(r.n, 4);
        assert_int_equal(r.processed.value, 2);
        assert_int_equal(r.skipped.value, 2);
        assert_int_equal(r.retries.value, 0);
        kafka_consumer_free(c);

        expect_all_committed("t.loop.verdicts", "g.loop.verdicts", "ok3"); /* none of the four comes again */
}

static int ticks;
static void count_tick(void *userdata) {
        struct recorder *r = userdata;
        if (++ticks >= 3)
                atomic_store(&r->stop, true);
}

/* The tick runs on idle polls too (the scheduler's periodic placement). */
static void test_tick_runs_when_idle(void **state) {
        struct kafka_options o = opts();
        struct err_detail err = {0};
        const char *topics[] = {"t.loop.idle", NULL};
        struct kafka_consumer *c = kafka_consumer_new(&o, "g.loop.tick", topics, "latest", &err);
        assert_non_null(c);
        struct recorder r;
        recorder_init(&r);
        struct kafka_consume_loop_options lo = loop_opts(&r, 0);
        lo.tick = count_tick;
        ticks = 0;
        const struct kafka_route routes[] = {{"t.loop.idle", .handle = record_handle}, {NULL}};
        assert_int_equal(kafka_consume_routes(c, routes, &r, &lo), 0);
        assert_int_equal(ticks, 3);
        assert_int_equal(r.n, 0);
        kafka_consumer_free(c);
}

static void test_error_is_permanent(void **state) {
        assert_true(kafka_error_is_permanent(KAFKA_SKIP));
        assert_true(kafka_error_is_permanent(-EINVAL));
        assert_true(kafka_error_is_permanent(-ERANGE));
        assert_true(kafka_error_is_permanent(-E2BIG));
        assert_false(kafka_error_is_permanent(-ECONNRESET));
        assert_false(kafka_error_is_permanent(-EAGAIN));
        assert_false(kafka_error_is_permanent(-ETIMEDOUT));
        assert_false(kafka_error_is_permanent(0));
}

/* ---- kafka_consume_routes: batch routes */

/* What a batch handler saw: each call's values joined by ",". */
struct batch_recorder {
        char calls[16][160];
        int ncalls;
        int transient_left;   /* a call holding "flaky" fails this many times (< 0: always) */
        int stop_after_calls;
        int stop_after_singles; /* with stop_after_calls: stop once both are reached */
        char singles[8][16];  /* the single route's messages */
        int nsingles;
        atomic_bool stop;
        struct metric processed, skipped, retries, batches;
};

static int batch_handle(void *userdata, const struct kafka_message *msgs, size_t n, int *verdicts,
                        struct err_detail *err) {
        struct batch_recorder *r = userdata;
        bool flaky = false;
        if (r->ncalls < 16) {
                char *out = r->calls[r->ncalls];
                size_t used = 0;
                for (size_t i = 0; i < n; i++)
                        used += (size_t)snprintf(out + used, sizeof r->calls[0] - used, "%s%.*s", i ? "," : "",
                                                 (int)msgs[i].len, (const char *)msgs[i].value);
        }
        r->ncalls++;
        if (r->stop_after_calls && r->ncalls >= r->stop_after_calls && r->nsingles >= r->stop_after_singles)
                atomic_store(&r->stop, true);
        for (size_t i = 0; i < n; i++) {
                if (msgs[i].len == 5 && !memcmp(msgs[i].value, "flaky", 5))
                        flaky = true;
                if (msgs[i].len == 6 && !memcmp(msgs[i].value, "poison", 6))
                        verdicts[i] = KAFKA_SKIP;
        }
        if (flaky && (r->transient_left < 0 || r->transient_left-- > 0))
                return err_set(err, -ECONNRESET, "08006", "database went away");
        return 0;
}

static int single_handle(void *userdata, const struct kafka_message *m, struct err_detail *err) {
        struct batch_recorder *r = userdata;
        if (r->nsingles < 8)
                snprintf(r->singles[r->nsingles], sizeof r->singles[0], "%.*s", (int)m->len, (const char *)m->value);
        r->nsingles++;
        if (r->stop_after_singles && r->nsingles >= r->stop_after_singles && r->ncalls >= r->stop_after_calls)
                atomic_store(&r->stop, true);
        return 0;
}

static void batch_recorder_init(struct batch_recorder *r) {
        *r = (struct batch_recorder){0};
        r->processed = (struct metric){.name = "processed", .type = METRIC_COUNTER};
        r->skipped = (struct metric){.name = "skipped", .type = METRIC_COUNTER};
        r->retries = (struct metric){.name = "retries", .type = METRIC_COUNTER};
        r->batches = (struct metric){.name = "batches", .type = METRIC_COUNTER};
}

static int run_routes(struct kafka_consumer *c, const struct kafka_route *routes, struct batch_recorder *r) {
        struct watchdog w = {.stop = &r->stop};
        assert_int_equal(pthread_create(&w.thread, NULL, watchdog_main, &w), 0);
        struct kafka_consume_loop_options lo = {.poll_timeout_ms = 200, .retry_min_ms = 10, .retry_max_ms = 40,
                                                .processed = &r->processed, .skipped = &r->skipped,
                                                .retries = &r->retries, .batches = &r->batches, .stop = &r->stop,
                                                .batch_max = 100, .linger_ms = 300};
        int ret = kafka_consume_routes(c, routes, r, &lo);
        atomic_store(&w.done, true);
        pthread_join(w.thread, NULL);
        return ret;
}

/* A round is handed in as one call in partition order; a transient failure
 * hands in the SAME round again (nothing re-polled, nothing after it); the
 * poison inside is skipped alone and the others are processed; the offsets
 * are committed only once the call succeeded. */
static void test_batch_retried_whole_then_committed(void **state) {
        produce("t.batch.retry", (const char *const[]){"m1", "m2", "flaky", "poison", "m5", NULL});
        struct kafka_options o = opts();
        struct err_detail err = {0};
        const char *topics[] = {"t.batch.retry", NULL};
        const struct kafka_route routes[] = {{"t.batch.retry", .handle_batch = batch_handle}, {NULL}};
        struct batch_recorder r;
        batch_recorder_init(&r);
        r.transient_left = 2;
        r.stop_after_calls = 3;
        struct kafka_consumer *c = kafka_consumer_new(&o, "g.batch.retry", topics, "earliest", &err);
        assert_non_null(c);
        assert_int_equal(run_routes(c, routes, &r), 0);
        assert_int_equal(r.ncalls, 3);
        for (int i = 0; i < 3; i++)
                assert_string_equal(r.calls[i], "m1,m2,flaky,poison,m5");
        assert_int_equal(r.retries.value, 2);
        assert_int_equal(r.processed.value, 4);
        assert_int_equal(r.skipped.value, 1);
        assert_int_equal(r.batches.value, 1);
        kafka_consumer_free(c);
        expect_all_committed("t.batch.retry", "g.batch.retry", "next"); /* none of the five comes again */
}

/* Stopped while its round keeps failing (a crash), nothing of the round is
 * committed: the group's next member gets the whole round again, in order. */
static void test_batch_failing_round_not_committed(void **state) {
        produce("t.batch.stop", (const char *const[]){"a", "flaky", "b", NULL});
        struct kafka_options o = opts();
        struct err_detail err = {0};
        const char *topics[] = {"t.batch.stop", NULL};
        const struct kafka_route routes[] = {{"t.batch.stop", .handle_batch = batch_handle}, {NULL}};
        struct batch_recorder r;
        batch_recorder_init(&r);
        r.transient_left = -1;
        r.stop_after_calls = 3;
        struct kafka_consumer *c = kafka_consumer_new(&o, "g.batch.stop", topics, "earliest", &err);
        assert_non_null(c);
        assert_int_equal(run_routes(c, routes, &r), 0);
        assert_int_equal(r.ncalls, 3);
        assert_string_equal(r.calls[2], "a,flaky,b");
        assert_int_equal(r.processed.value, 0);
        assert_int_equal(r.batches.value, 0);
        kafka_consumer_free(c);

        batch_recorder_init(&r);
        r.transient_left = 0;
        r.stop_after_calls = 1;
        c = kafka_consumer_new(&o, "g.batch.stop", topics, "earliest", &err);
        assert_non_null(c);
        assert_int_equal(run_routes(c, routes, &r), 0);
        assert_string_equal(r.calls[0], "a,flaky,b"); /* "a" was not committed ahead of "flaky" */
        assert_int_equal(r.processed.value, 3);
        kafka_consumer_free(c);
        expect_all_committed("t.batch.stop", "g.batch.stop", "c");
}

/* One loop, two kinds of route: the batch route gets its topic's messages in
 * one call, the single route its own one by one. */
static void test_routes_batch_and_single(void **state) {
        produce("t.batch.single", (const char *const[]){"s1", "s2", NULL});
        produce("t.loop.idle", (const char *const[]){"x1", NULL});
        struct kafka_options o = opts();
        struct err_detail err = {0};
        const char *topics[] = {"t.batch.single", "t.loop.idle", NULL};
        const struct kafka_route routes[] = {{"t.loop.idle", .handle_batch = batch_handle},
                                             {"t.batch.single", .handle = single_handle}, {NULL}};
        struct batch_recorder r;
        batch_recorder_init(&r);
        /* both kinds seen, whether or not one poll round held them all (the
         * two topics' first fetches may come apart by more than the linger) */
        r.stop_after_calls = 1;
        r.stop_after_singles = 2;
        struct kafka_consumer *c = kafka_consumer_new(&o, "g.batch.single", topics, "earliest", &err);
        assert_non_null(c);
        assert_int_equal(run_routes(c, routes, &r), 0);
        assert_int_equal(r.ncalls, 1);
        assert_string_equal(r.calls[0], "x1");
        assert_int_equal(r.nsingles, 2);
        assert_string_equal(r.singles[0], "s1");
        assert_string_equal(r.singles[1], "s2");
        kafka_consumer_free(c);
}

/* A consumer far behind still finds the oldest record: librdkafka's mock
 * cluster (the local stack's Kafka) drops the oldest record batches of a
 * partition beyond 5 MiB; 200 records of 32 KB of file events (6.4 MB
 * uncompressed, what ~23,000 events of a run weigh) must all stay, which
 * they do compressed (kafka_producer_new: zstd). Uncompressed, the first
 * ~40 records were gone and the first record polled was a later one. */
static void test_backlog_kept(void **state) {
        struct kafka_options o = opts();
        struct err_detail err = {0};
        struct kafka_producer *p = kafka_producer_new(&o, &err);
        assert_non_null(p);
        enum { RECORDS = 200, RECORD_LEN = 32 * 1024 };
        static char value[RECORD_LEN + 128];
        for (int i = 0; i < RECORDS; i++) {
                size_t len = (size_t)snprintf(value, sizeof value, "record %d:", i);
                for (int e = 0; len < RECORD_LEN; e++)
                        len += (size_t)snprintf(value + len, sizeof value - len,
                                                "{\"path\":\"node_modules/pkg%d/lib/index.js\",\"mode\":\"create\"}",
                                                i * 1000 + e);
                assert_int_equal(kafka_produce_sync(p, "t.backlog", "run", value, len, 10000, &err), 0);
        }
        kafka_producer_free(p);

        const char *topics[] = {"t.backlog", NULL};
        struct kafka_consumer *c = kafka_consumer_new(&o, "g.backlog", topics, "earliest", &err);
        assert_non_null(c);
        struct kafka_message m;
        int r = 0;
        for (int i = 0; i < 100 && r == 0; i++)
                r = kafka_consumer_poll(c, 200, &m);
        assert_int_equal(r, 1);
        assert_int_equal(m.offset, 0);
        assert_true(m.len > 9 && !memcmp(m.value, "record 0:", 9));
        kafka_message_release(&m);
        kafka_consumer_free(c);
}

/* ---- readiness: kafka_consume_stalled (issue 15 §1, /readyz tells the truth) */

struct staller {
        atomic_bool fail;    /* the handler's dependency is down */
        atomic_int handled;  /* messages applied */
        atomic_bool stop;
        struct kafka_consumer *c;
        const char *topic;
        pthread_t thread;
};

static int stall_handle(void *userdata, const struct kafka_message *m, struct err_detail *err) {
        struct staller *s = userdata;
        if (atomic_load(&s->fail))
                return err_set(err, -ECONNRESET, "08006", "database went away");
        atomic_fetch_add(&s->handled, 1);
        return 0;
}

static void *staller_main(void *arg) {
        struct staller *s = arg;
        const struct kafka_route routes[] = {{s->topic, .handle = stall_handle}, {NULL}};
        struct kafka_consume_loop_options lo = {.poll_timeout_ms = 200, .retry_min_ms = 10, .retry_max_ms = 100,
                                                .stop = &s->stop};
        kafka_consume_routes(s->c, routes, s, &lo);
        return NULL;
}

static void staller_start(struct staller *s, const char *topic, const char *group) {
        struct kafka_options o = opts();
        struct err_detail err = {0};
        const char *topics[] = {topic, NULL};
        s->topic = topic;
        s->c = kafka_consumer_new(&o, group, topics, "earliest", &err);
        assert_non_null(s->c);
        assert_int_equal(pthread_create(&s->thread, NULL, staller_main, s), 0);
}

static void staller_stop(struct staller *s) {
        atomic_store(&s->stop, true);
        pthread_join(s->thread, NULL);
        kafka_consumer_free(s->c);
}

/* Polls kafka_consume_stalled(stall_s) for up to 60 s until it answers want
 * (0 or -EBUSY) with a reason containing text (NULL: any); returns the last
 * answer, why filled. A loop may first be reported for another reason (a
 * rebalance of the mock group taking longer than stall_s). */
static int wait_stalled_for(int stall_s, int want, const char *text, char *why, size_t size) {
        int r = 0;
        for (int i = 0; i < 600; i++) {
                why[0] = '\0';
                r = kafka_consume_stalled(stall_s, why, size);
                if (r == want && (!text || strstr(why, text)))
                        break;
                nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
        }
        return r;
}

static int wait_stalled(int stall_s, int want, char *why, size_t size) {
        return wait_stalled_for(stall_s, want, NULL, why, size);
}

static void sleep_ms(int ms) {
        nanosleep(&(struct timespec){.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L}, NULL);
}

/* A handler retrying a message forever (its database down) holds the round:
 * after stall_s without progress the loop is reported stalled, naming the
 * topic, partition and lag; the check is off with 0; once the handler
 * succeeds the loop is ready again. An idle loop with nothing to read is
 * never stalled. */
static void test_stall_held_round(void **state) {
        char why[256];
        struct staller s = {0};
        staller_start(&s, "t.stall.held", "g.stall.held");
        /* idle and caught up: ready however long it waits */
        sleep_ms(2500 + KAFKA_LOOP_LAG_CHECK_MS);
        assert_int_equal(kafka_consume_stalled(1, why, sizeof why), 0);

        atomic_store(&s.fail, true);
        produce("t.stall.held", (const char *const[]){"one", NULL});
        assert_int_equal(wait_stalled_for(1, -EBUSY, "consumer t.stall.held partition 0 stalled ", why, sizeof why),
                         -EBUSY);
        assert_non_null(strstr(why, " s with lag 1"));
        assert_int_equal(kafka_consume_stalled(0, why, sizeof why), 0); /* off */
        assert_int_equal(kafka_consume_stalled(3600, why, sizeof why), 0); /* not for that long */

        atomic_store(&s.fail, false);
        assert_int_equal(wait_stalled(1, 0, why, sizeof why), 0);
        assert_int_equal(atomic_load(&s.handled), 1);
        staller_stop(&s);
}

/* A consumer whose fetches fail (the broker answers, but not its fetches:
 * what a fetcher that stopped after a frozen broker came back looks like)
 * while the partition has new records: no message ever reaches the loop, yet
 * the high watermark asked of the broker shows the lag, so the loop is
 * reported stalled with that lag; once fetching works again it catches up
 * and is ready. */
static void test_stall_fetch_not_progressing(void **state) {
        char why[256];
        struct staller s = {0};
        staller_start(&s, "t.stall.fetch", "g.stall.fetch");
        produce("t.stall.fetch", (const char *const[]){"warm", NULL});
        for (int i = 0; i < 600 && atomic_load(&s.handled) < 1; i++)
                sleep_ms(100);
        assert_int_equal(atomic_load(&s.handled), 1);

        /* every Fetch answered NOT_LEADER_OR_FOLLOWER (6) for a long while */
        rd_kafka_resp_err_t errs[400];
        for (size_t i = 0; i < ELEMENTSOF(errs); i++)
                errs[i] = RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION;
        rd_kafka_mock_push_request_errors_array(mock, 1 /* Fetch */, ELEMENTSOF(errs), errs);
        produce("t.stall.fetch", (const char *const[]){"a", "b", "c", NULL});
        assert_int_equal(wait_stalled_for(2, -EBUSY, "consumer t.stall.fetch partition 0 stalled ", why, sizeof why),
                         -EBUSY);
        if (!strstr(why, "consumer t.stall.fetch partition 0 stalled "))
                fail_msg("why: %s", why);
        assert_non_null(strstr(why, " s with lag 3"));
        assert_true(atomic_load(&s.handled) < 4);

        rd_kafka_mock_clear_request_errors(mock, 1);
        assert_int_equal(wait_stalled(2, 0, why, sizeof why), 0);
        for (int i = 0; i < 600 && atomic_load(&s.handled) < 4; i++)
                sleep_ms(100);
        assert_int_equal(atomic_load(&s.handled), 4);
        staller_stop(&s);
}

/* A consumer whose group join never completes (every JoinGroup answered
 * COORDINATOR_NOT_AVAILABLE; what librdkafka 2.0.2's mock makes of a member
 * whose session expired while it waited: it never answers) has no partition
 * and so no lag, yet it reads nothing: after stall_s it is reported, naming
 * its group; once the join completes it reads and is ready. */
static void test_stall_join_not_completing(void **state) {
        char why[256];
        rd_kafka_resp_err_t errs[300];
        for (size_t i = 0; i < ELEMENTSOF(errs); i++)
                errs[i] = RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE;
        rd_kafka_mock_push_request_errors_array(mock, 11 /* JoinGroup */, ELEMENTSOF(errs), errs);
        struct staller s = {0};
        staller_start(&s, "t.stall.join", "g.stall.join");
        produce("t.stall.join", (const char *const[]){"x", NULL});
        assert_int_equal(wait_stalled_for(1, -EBUSY, "consumer group g.stall.join has had no assignment for ", why,
                                          sizeof why),
                         -EBUSY);
        assert_int_equal(atomic_load(&s.handled), 0);

        rd_kafka_mock_clear_request_errors(mock, 11);
        for (int i = 0; i < 600 && atomic_load(&s.handled) < 1; i++)
                sleep_ms(100);
        assert_int_equal(atomic_load(&s.handled), 1);
        assert_int_equal(wait_stalled(1, 0, why, sizeof why), 0);
        staller_stop(&s);
}

int main(void) {
        log_init("test", LOG_ERROR);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_transient_retried_never_lost),
                cmocka_unit_test(test_transient_round_redelivered),
                cmocka_unit_test(test_skip_and_success_commit),
                cmocka_unit_test(test_tick_runs_when_idle),
                cmocka_unit_test(test_error_is_permanent),
                cmocka_unit_test(test_batch_retried_whole_then_committed),
                cmocka_unit_test(test_batch_failing_round_not_committed),
                cmocka_unit_test(test_routes_batch_and_single),
                cmocka_unit_test(test_backlog_kept),
                cmocka_unit_test(test_stall_held_round),
                cmocka_unit_test(test_stall_fetch_not_progressing),
                cmocka_unit_test(test_stall_join_not_completing),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

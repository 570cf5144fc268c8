/* A run's event spool (services/runner-agent/events.h; docs/CONTRACTS.md,
 * runner "Restart after a crash"), against its real code and librdkafka's
 * mock cluster:
 *  - every record is in the spool before the producer gets it, and the spool
 *    is emptied once everything queued is acknowledged (a flush, a sync
 *    event);
 *  - while the broker is down the records wait in the spool; what a process
 *    killed then leaves (its spool, plus a record torn by the kill) produced
 *    by events_replay on another cluster gives every event of it, seq 1..N
 *    in order, and the torn record is ignored. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "core/macro.h"
#include "core/timeutil.h"
#include "events.h"
#include "kafka/kafka.h"
#include "kafka/topics.h"
#include "paddock/v1/events.pb-c.h"

#define N_EVENTS 20

static char dir[] = "/tmp/test_run_events_spool.XXXXXX";
static const char run_id[] = "00000000-0000-4000-8000-0000000000aa";
static const char tenant_id[] = "00000000-0000-4000-8000-000000000001";
static const char team_id[] = "00000000-0000-4000-8000-000000000002";
/* linger 0: every event is a record of its own */
static const struct run_events_config cfg = {
        .linger_ms = 0, .max_events = 100, .max_bytes = 1 << 20, .block_budget_ms = 30000, .spool_mb = 64};

struct cluster {
        rd_kafka_t *host;
        rd_kafka_mock_cluster_t *mock;
        struct kafka_producer *producer;
};

static void cluster_new(struct cluster *c) {
        char errstr[256];
        c->host = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), errstr, sizeof errstr);
        assert_non_null(c->host);
        c->mock = rd_kafka_mock_cluster_new(c->host, 1);
        assert_non_null(c->mock);
        rd_kafka_mock_topic_create(c->mock, TOPIC_RUNS_EVENTS, 1, 1);
        rd_kafka_mock_topic_create(c->mock, TOPIC_RUNS_STATUS, 1, 1);
        struct err_detail e = {0};
        struct kafka_options o = {.bootstrap = rd_kafka_mock_cluster_bootstraps(c->mock), .client_id = "unit"};
        c->producer = kafka_producer_new(&o, &e);
        assert_non_null(c->producer);
}

static void cluster_free(struct cluster *c) {
        kafka_producer_free(c->producer);
        rd_kafka_mock_cluster_destroy(c->mock);
        rd_kafka_destroy(c->host);
}

/* The seqs of the events on the cluster's runs.events, in partition order:
 * up to max, waiting up to 20 s for want of them. */
static size_t read_seqs(struct cluster *c, uint64_t *seqs, size_t max, size_t want) {
        char errstr[256];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(c->mock), errstr, sizeof errstr);
        rd_kafka_conf_set(conf, "group.id", "unit-spool-reader", errstr, sizeof errstr);
        rd_kafka_t *reader = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
        assert_non_null(reader);
        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(parts, TOPIC_RUNS_EVENTS, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
        assert_int_equal(rd_kafka_assign(reader, parts), 0);
        rd_kafka_topic_partition_list_destroy(parts);
        size_t n = 0;
        int64_t until = time_mono_us() + 20 * 1000000LL;
        while (n < want && time_mono_us() < until) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(reader, 100);
                if (!m)
                        continue;
                if (!m->err) {
                        Paddock__V1__RunEventBatch *b =
                                paddock__v1__run_event_batch__unpack(NULL, m->len, m->payload);
                        assert_non_null(b);
                        for (size_t i = 0; i < b->n_events && n < max; i++)
                                seqs[n++] = b->events[i]->env->seq;
                        paddock__v1__run_event_batch__free_unpacked(b, NULL);
                }
                rd_kafka_message_destroy(m);
        }
        rd_kafka_consumer_close(reader);
        rd_kafka_destroy(reader);
        return n;
}

static off_t size_of(int fd) {
        struct stat st;
        assert_int_equal(fstat(fd, &st), 0);
        return st.st_size;
}

static int open_in_dir(const char *name, int flags) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, name);
        int fd = open(p, flags | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        return fd;
}

static void emit_outputs(struct run_events *ev, int n) {
        for (int i = 0; i < n; i++) {
                char line[32];
                int len = snprintf(line, sizeof line, "line %d\n", i);
                assert_int_equal(events_output(ev, "stdout", line, (size_t)len), 0);
        }
}

static void test_spool_emptied_once_acknowledged(void **state) {
        (void)state;
        struct cluster c;
        cluster_new(&c);
        int seq_fd = open_in_dir("seq-acked", O_RDWR), spool_fd = open_in_dir("spool-acked", O_WRONLY | O_APPEND);
        struct run_events ev;
        events_init(&ev, c.producer, &cfg, "runner-agent/unit", tenant_id, run_id, team_id);
        events_persist(&ev, seq_fd, spool_fd);

        emit_outputs(&ev, 5);
        assert_true(size_of(spool_fd) > 0); /* in the spool before any acknowledgement is waited for */
        assert_int_equal(events_flush(&ev), 0);
        assert_int_equal(size_of(spool_fd), 0);

        emit_outputs(&ev, 3);
        assert_true(size_of(spool_fd) > 0);
        assert_int_equal(events_status(&ev, "running", NULL, -1, false), 0); /* sync: waits for all before it */
        assert_int_equal(size_of(spool_fd), 0);

        events_persist(&ev, -1, -1);
        events_done(&ev);
        close(seq_fd);
        close(spool_fd);
        uint64_t seqs[16];
        assert_int_equal(read_seqs(&c, seqs, 16, 9), 9);
        for (size_t i = 0; i < 9; i++)
                assert_int_equal(seqs[i], i + 1);
        cluster_free(&c);
}

static void test_replay_produces_what_a_killed_process_held(void **state) {
        (void)state;
        struct cluster down, other;
        cluster_new(&down);
        cluster_new(&other);
        int seq_fd = open_in_dir("seq-down", O_RDWR), spool_fd = open_in_dir("spool-down", O_RDWR | O_APPEND);
        struct run_events ev;
        events_init(&ev, down.producer, &cfg, "runner-agent/unit", tenant_id, run_id, team_id);
        events_persist(&ev, seq_fd, spool_fd);
        /* delivered once */
        assert_int_equal(events_status(&ev, "running", NULL, -1, false), 0);
        assert_int_equal(size_of(spool_fd), 0);
        /* then the broker goes: the records stay in librdkafka's memory, and in the spool */
        assert_int_equal(rd_kafka_mock_broker_set_down(down.mock, 1), 0);
        emit_outputs(&ev, N_EVENTS);
        off_t size = size_of(spool_fd);
        assert_true(size > 0);

        /* what the page cache keeps of a process killed now, the kill tearing
         * the record it was appending (never produced) */
        static const uint8_t torn[] = {0, 0, 0, 100, 't', 'o', 'r', 'n'}; /* claims 100 bytes, has 4 */
        _cleanup_free_ uint8_t *bytes = malloc((size_t)size + sizeof torn);
        assert_non_null(bytes);
        assert_int_equal(pread(spool_fd, bytes, (size_t)size, 0), size);
        memcpy(bytes + size, torn, sizeof torn);
        int crash_fd = open_in_dir("spool-crash", O_RDWR);
        assert_int_equal(write(crash_fd, bytes, (size_t)size + sizeof torn), size + (off_t)sizeof torn);

        /* a restarted runner (here: another cluster, which has none of it)
         * produces it again */
        struct run_events again;
        events_init(&again, other.producer, &cfg, "runner-agent/unit", tenant_id, run_id, team_id);
        assert_int_equal(events_replay(&again, crash_fd), N_EVENTS);
        events_done(&again);
        uint64_t seqs[N_EVENTS + 4];
        assert_int_equal(read_seqs(&other, seqs, N_EVENTS + 4, N_EVENTS), N_EVENTS);
        for (size_t i = 0; i < N_EVENTS; i++)
                assert_int_equal(seqs[i], i + 2); /* seq 1 was delivered before the broker went */

        assert_int_equal(rd_kafka_mock_broker_set_up(down.mock, 1), 0);
        events_persist(&ev, -1, -1);
        events_done(&ev);
        close(seq_fd);
        close(spool_fd);
        close(crash_fd);
        cluster_free(&down);
        cluster_free(&other);
}

int main(void) {
        if (!mkdtemp(dir))
                return 1;
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_spool_emptied_once_acknowledged),
                cmocka_unit_test(test_replay_produces_what_a_killed_process_held),
        };
        int rc = cmocka_run_group_tests(tests, NULL, NULL);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        (void)!system(cmd);
        return rc;
}

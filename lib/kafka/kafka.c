#include "kafka/kafka.h"

#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/timeutil.h"

/* Translates a librdkafka error once; the name and text go to *reterr. */
static int kafka_errno(rd_kafka_resp_err_t err) {
        switch (err) {
        case RD_KAFKA_RESP_ERR_NO_ERROR:
                return 0;
        case RD_KAFKA_RESP_ERR__TIMED_OUT:
        case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
        case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
                return -ETIMEDOUT;
        case RD_KAFKA_RESP_ERR__TRANSPORT:
        case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
        case RD_KAFKA_RESP_ERR__RESOLVE:
        case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
        case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
                return -ECONNRESET;
        case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
                return -ENOENT;
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
                return -EMSGSIZE;
        case RD_KAFKA_RESP_ERR__QUEUE_FULL:
                return -ENOBUFS;
        case RD_KAFKA_RESP_ERR__INVALID_ARG:
        case RD_KAFKA_RESP_ERR__INVALID_TYPE:
                return -EINVAL;
        default:
                return -EIO;
        }
}

static int kafka_err_set(struct err_detail *reterr, rd_kafka_resp_err_t err, const char *what) {
        return err_set(reterr, kafka_errno(err), rd_kafka_err2name(err), "%s: %s", what,
                       rd_kafka_err2str(err));
}

/* librdkafka logs from its own threads; lib/ never logs above debug. */
static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
        log_ctx(LOG_DEBUG, LOG_KV("component", "librdkafka", "facility", fac), "%s", buf);
}

static void kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
        log_ctx(LOG_DEBUG, LOG_KV("component", "librdkafka", "error", rd_kafka_err2name(err)), "%s",
                reason);
}

static rd_kafka_conf_t *kafka_conf_common(const struct kafka_options *opts,
                                          const char *const *ours, struct err_detail *reterr) {
        char errstr[512];
        if (!opts || !opts->bootstrap || !*opts->bootstrap) {
                err_set(reterr, -EINVAL, "config", "kafka bootstrap servers are not set");
                return NULL;
        }
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        if (!conf) {
                err_set(reterr, -ENOMEM, "", "out of memory");
                return NULL;
        }
        rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
        rd_kafka_conf_set_error_cb(conf, kafka_error_cb);

        const char *base[] = {"bootstrap.servers", opts->bootstrap,
                              "client.id", opts->client_id ? opts->client_id : "paddock", NULL};
        /* Ours first, the caller's extras last so they may override. */
        const char *const *lists[] = {base, ours, opts->security, opts->extra};
        for (size_t l = 0; l < ELEMENTSOF(lists); l++)
                for (const char *const *kv = lists[l]; kv && kv[0]; kv += 2) {
                        if (!kv[1]) {
                                err_set(reterr, -EINVAL, "config", "kafka property %s has no value", kv[0]);
                                rd_kafka_conf_destroy(conf);
                                return NULL;
                        }
                        if (rd_kafka_conf_set(conf, kv[0], kv[1], errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
                                err_set(reterr, -EINVAL, "config", "kafka property %s: %s", kv[0], errstr);
                                rd_kafka_conf_destroy(conf);
                                return NULL;
                        }
                }
        return conf;
}

/* ---- producer ---- */

/* One kafka_produce_sync() call waiting for its delivery report. Shared by the
 * caller and the delivery callback, so it lives on the heap with two
 * references: a caller that timed out must not leave the callback a dangling
 * pointer. Protected by the producer's lock. */
struct delivery {
        int refs;
        bool done;
        rd_kafka_resp_err_t err;
};

struct kafka_producer {
        rd_kafka_t *rk;
        const struct bus_auth *auth;
        pthread_t poller;
        atomic_bool stop;
        atomic_long failed; /* async deliveries failed since the last flush */
        pthread_mutex_t lock;
        pthread_cond_t cond; /* broadcast on every sync delivery report */
};

static void delivery_unref_locked(struct delivery *d) {
        if (--d->refs == 0)
                free(d);
}

struct kafka_tally {
        struct kafka_producer *p;
        long outstanding, failed; /* under p->lock */
        bool orphan;              /* freed by its owner: the last report frees it */
};

/* A tallied message's opaque is its tally's address with the low bit set
 * (both structs are aligned), a sync one's its struct delivery. */
#define TALLY_TAG ((uintptr_t)1)

static void tally_report_locked(struct kafka_tally *t, rd_kafka_resp_err_t err) {
        if (err)
                t->failed++;
        if (--t->outstanding > 0)
                return;
        if (t->orphan)
                free(t);
        else
                pthread_cond_broadcast(&t->p->cond);
}

static void kafka_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        struct kafka_producer *p = opaque;
        if ((uintptr_t)m->_private & TALLY_TAG) {
                pthread_mutex_lock(&p->lock);
                tally_report_locked((struct kafka_tally *)((uintptr_t)m->_private & ~TALLY_TAG), m->err);
                pthread_mutex_unlock(&p->lock);
                return;
        }
        struct delivery *d = m->_private;
        if (!d) {
                if (m->err) {
                        atomic_fetch_add(&p->failed, 1);
                        log_ctx(LOG_DEBUG, LOG_KV("component", "kafka", "error", rd_kafka_err2name(m->err)),
                                "could not deliver message to %s: %s", rd_kafka_topic_name(m->rkt),
                                rd_kafka_err2str(m->err));
                }
                return;
        }
        pthread_mutex_lock(&p->lock);
        d->done = true;
        d->err = m->err;
        delivery_unref_locked(d);
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
}

/* Delivery reports are served here rather than by callers, so that several
 * threads can wait for their own messages concurrently. */
static void *kafka_poller(void *arg) {
        struct kafka_producer *p = arg;
        while (!atomic_load(&p->stop))
                rd_kafka_poll(p->rk, 100);
        return NULL;
}

struct kafka_producer *kafka_producer_new(const struct kafka_options *opts, struct err_detail *reterr) {
        char linger[16];
        snprintf(linger, sizeof linger, "%d", opts && opts->linger_ms > 0 ? opts->linger_ms : 0);
        const char *const ours[] = {
                "enable.idempotence", "true",
                "acks", "all",
                /* each hop of a launch waits for its record's acknowledgement:
                 * a linger is paid once per hop (issue 10 §4) */
                "linger.ms", linger,
                /* zstd: a RunEventBatch of file events shrinks ~10x, so a
                 * partition holds ~10x the backlog. librdkafka's mock cluster
                 * (the local stack's Kafka) keeps at most 5 MiB of record
                 * batches per partition and silently drops the oldest beyond
                 * that (rdkafka_mock.c: max_size, not configurable): uncompressed,
                 * a consumer ~17,000 file events behind on a run lost the rest
                 * (docs/CONTRACTS.md, "Local stack Kafka retention") */
                "compression.type", "zstd",
                NULL,
        };
        char errstr[512];
        struct kafka_producer *p = calloc(1, sizeof *p);
        if (!p) {
                err_set(reterr, -ENOMEM, "", "out of memory");
                return NULL;
        }
        rd_kafka_conf_t *conf = kafka_conf_common(opts, ours, reterr);
        if (!conf) {
                free(p);
                return NULL;
        }
        p->auth = opts->auth;
        rd_kafka_conf_set_dr_msg_cb(conf, kafka_dr_cb);
        rd_kafka_conf_set_opaque(conf, p);
        pthread_mutex_init(&p->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&p->cond, &ca);
        pthread_condattr_destroy(&ca);

        p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
        if (!p->rk) {
                err_set(reterr, -EINVAL, "config", "could not create kafka producer: %s", errstr);
                rd_kafka_conf_destroy(conf);
                goto fail;
        }
        int r = pthread_create(&p->poller, NULL, kafka_poller, p);
        if (r != 0) {
                err_set(reterr, -r, "", "could not start kafka poll thread: %s", strerror(r));
                rd_kafka_destroy(p->rk);
                goto fail;
        }
        return p;
fail:
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
}

struct kafka_producer *kafka_producer_free(struct kafka_producer *p) {
        if (!p)
                return NULL;
        rd_kafka_flush(p->rk, 5000);
        /* Whatever is still queued fails now with a delivery report, which
         * frees the sync waiters' shared state. */
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        atomic_store(&p->stop, true);
        pthread_join(p->poller, NULL);
        for (int i = 0; i < 50 && rd_kafka_outq_len(p->rk) > 0; i++)
                rd_kafka_poll(p->rk, 100);
        rd_kafka_destroy(p->rk);
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
}

static int kafka_produce_one(struct kafka_producer *p, const char *topic, const char *key,
                             const void *value, size_t len, void *d,
                             struct err_detail *reterr) {
        rd_kafka_headers_t *hdrs = NULL;
        if (p->auth && bus_auth_identity(p->auth)) {
                uint8_t sig[SIGN_SIGNATURE_LEN];
                int r = bus_auth_sign(p->auth, topic, value, len, sig);
                if (r < 0)
                        return err_set(reterr, r, "sign", "could not sign message for %s", topic);
                hdrs = rd_kafka_headers_new(2);
                if (!hdrs)
                        return err_set(reterr, -ENOMEM, "", "out of memory");
                rd_kafka_header_add(hdrs, BUS_AUTH_HEADER_SIGNER, -1, bus_auth_identity(p->auth), -1);
                rd_kafka_header_add(hdrs, BUS_AUTH_HEADER_SIG, -1, sig, sizeof sig);
        }
        /* on success the headers belong to the message */
        rd_kafka_resp_err_t err = rd_kafka_producev(
                p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(key, key ? strlen(key) : 0), RD_KAFKA_V_VALUE((void *)value, len),
                RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
        if (err && hdrs)
                rd_kafka_headers_destroy(hdrs);
        if (err)
                return kafka_err_set(reterr, err, "could not queue message");
        return 0;
}

static void deadline_after(struct timespec *ts, int timeout_ms) {
        clock_gettime(CLOCK_MONOTONIC, ts);
        ts->tv_sec += timeout_ms / 1000;
        ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts->tv_nsec >= 1000000000L) {
                ts->tv_sec++;
                ts->tv_nsec -= 1000000000L;
        }
}

int kafka_produce_sync(struct kafka_producer *p, const char *topic, const char *key,
                       const void *value, size_t len, int timeout_ms, struct err_detail *reterr) {
        struct delivery *d = calloc(1, sizeof *d);
        if (!d)
                return err_set(reterr, -ENOMEM, "", "out of memory");
        d->refs = 2;
        int r = kafka_produce_one(p, topic, key, value, len, d, reterr);
        if (r < 0) {
                free(d);
                return r;
        }
        struct timespec deadline;
        deadline_after(&deadline, timeout_ms < 0 ? 0 : timeout_ms);
        pthread_mutex_lock(&p->lock);
        while (!d->done) {
                if (pthread_cond_timedwait(&p->cond, &p->lock, &deadline) == ETIMEDOUT)
                        break;
        }
        bool done = d->done;
        rd_kafka_resp_err_t err = d->err;
        delivery_unref_locked(d);
        pthread_mutex_unlock(&p->lock);
        if (!done)
                return err_set(reterr, -ETIMEDOUT, rd_kafka_err2name(RD_KAFKA_RESP_ERR__TIMED_OUT),
                               "no delivery report for %s within %d ms", topic, timeout_ms);
        if (err)
                return kafka_err_set(reterr, err, "could not deliver message");
        return 0;
}

int kafka_produce_sync_many(struct kafka_producer *p, const struct kafka_outgoing *msgs, size_t n, int timeout_ms,
                            struct err_detail *reterr) {
        if (n == 0)
                return 0;
        struct delivery **d = calloc(n, sizeof *d);
        if (!d)
                return err_set(reterr, -ENOMEM, "", "out of memory");
        struct err_detail qerr = {0};
        size_t queued = 0;
        for (; queued < n; queued++) {
                d[queued] = calloc(1, sizeof **d);
                if (!d[queued]) {
                        err_set(&qerr, -ENOMEM, "", "out of memory");
                        break;
                }
                d[queued]->refs = 2;
                if (kafka_produce_one(p, msgs[queued].topic, msgs[queued].key, msgs[queued].value, msgs[queued].len,
                                      d[queued], &qerr) < 0) {
                        free(d[queued]);
                        break;
                }
        }
        struct timespec deadline;
        deadline_after(&deadline, timeout_ms < 0 ? 0 : timeout_ms);
        size_t acked = 0;
        pthread_mutex_lock(&p->lock);
        for (size_t i = 0; i < queued; i++)
                while (!d[i]->done)
                        if (pthread_cond_timedwait(&p->cond, &p->lock, &deadline) == ETIMEDOUT)
                                goto waited;
waited:
        while (acked < queued && d[acked]->done && !d[acked]->err)
                acked++;
        if (acked < queued && !d[acked]->done)
                (void)err_set(reterr, -ETIMEDOUT, rd_kafka_err2name(RD_KAFKA_RESP_ERR__TIMED_OUT),
                              "no delivery report for %s within %d ms", msgs[acked].topic, timeout_ms);
        else if (acked < queued)
                (void)kafka_err_set(reterr, d[acked]->err, "could not deliver message");
        else if (acked < n && reterr)
                *reterr = qerr;
        for (size_t i = 0; i < queued; i++)
                delivery_unref_locked(d[i]);
        pthread_mutex_unlock(&p->lock);
        free(d);
        return (int)acked;
}

int kafka_produce(struct kafka_producer *p, const char *topic, const char *key,
                  const void *value, size_t len, struct err_detail *reterr) {
        return kafka_produce_one(p, topic, key, value, len, NULL, reterr);
}

int kafka_producer_flush(struct kafka_producer *p, int timeout_ms) {
        rd_kafka_resp_err_t err = rd_kafka_flush(p->rk, timeout_ms);
        long failed = atomic_exchange(&p->failed, 0);
        if (failed > 0)
                return -EIO;
        if (err)
                return kafka_errno(err);
        return 0;
}

struct kafka_tally *kafka_tally_new(struct kafka_producer *p) {
        struct kafka_tally *t = calloc(1, sizeof *t);
        if (t)
                t->p = p;
        return t;
}

struct kafka_tally *kafka_tally_free(struct kafka_tally *t) {
        if (!t)
                return NULL;
        pthread_mutex_lock(&t->p->lock);
        bool reports_pending = t->outstanding > 0;
        t->orphan = reports_pending;
        pthread_mutex_unlock(&t->p->lock);
        if (!reports_pending)
                free(t);
        return NULL;
}

int kafka_produce_tallied(struct kafka_tally *t, const char *topic, const char *key, const void *value, size_t len,
                          struct err_detail *reterr) {
        /* counted before it is queued: its report may come at once */
        pthread_mutex_lock(&t->p->lock);
        t->outstanding++;
        pthread_mutex_unlock(&t->p->lock);
        int r = kafka_produce_one(t->p, topic, key, value, len, (void *)((uintptr_t)t | TALLY_TAG), reterr);
        if (r < 0) {
                pthread_mutex_lock(&t->p->lock);
                t->outstanding--;
                pthread_mutex_unlock(&t->p->lock);
        }
        return r;
}

/* Slices of rd_kafka_flush(): it makes the producer send what lingers, but
 * waits for the whole producer; in slices, a tally done early stops waiting. */
#define TALLY_FLUSH_SLICE_MS 5

int kafka_tally_wait(struct kafka_tally *t, int timeout_ms) {
        struct kafka_producer *p = t->p;
        int64_t deadline = time_mono_us() + (int64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000;
        for (;;) {
                pthread_mutex_lock(&p->lock);
                long outstanding = t->outstanding, failed = t->failed;
                if (outstanding == 0)
                        t->failed = 0;
                pthread_mutex_unlock(&p->lock);
                if (outstanding == 0)
                        return failed > 0 ? -EIO : 0;
                int64_t left_ms = (deadline - time_mono_us()) / 1000;
                if (left_ms <= 0)
                        return -ETIMEDOUT;
                (void)rd_kafka_flush(p->rk, left_ms < TALLY_FLUSH_SLICE_MS ? (int)left_ms : TALLY_FLUSH_SLICE_MS);
        }
}

int kafka_producer_ping(struct kafka_producer *p, int timeout_ms, struct err_detail *reterr) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(p->rk, 0, NULL, &md, timeout_ms);
        if (md)
                rd_kafka_metadata_destroy(md);
        if (err)
                return err_set(reterr, -ECONNRESET, rd_kafka_err2name(err),
                               "no broker answered a metadata request within %d ms: %s", timeout_ms,
                               rd_kafka_err2str(err));
        return 0;
}

int kafka_producer_warm(struct kafka_producer *p, const char *const *topics, int timeout_ms) {
        int ret = 0;
        for (; *topics; topics++) {
                rd_kafka_topic_t *rkt = rd_kafka_topic_new(p->rk, *topics, NULL);
                if (!rkt) {
                        ret = -ENOMEM;
                        continue;
                }
                const struct rd_kafka_metadata *md = NULL;
                rd_kafka_resp_err_t err = rd_kafka_metadata(p->rk, 0, rkt, &md, timeout_ms);
                if (md)
                        rd_kafka_metadata_destroy(md);
                rd_kafka_topic_destroy(rkt);
                if (err && ret == 0)
                        ret = -ECONNRESET;
        }
        return ret;
}

/* ---- consumer ---- */

struct kafka_consumer {
        rd_kafka_t *rk;
        struct bus_auth *auth;
        kafka_key_filter_fn key_filter;
        void *key_filter_userdata;
        bool defer_refusals;
        char group[256];
        /* time_mono_us() since the consumer has been in its group without an
         * assignment (subscribed, or revoked for a rebalance), 0 once one is
         * in place: kafka_consumer_unassigned_ms */
        atomic_llong unassigned_since_us;
        /* kafka_consumer_follow_keys's: the followed topic, its partition
         * count from metadata (0: not yet known) and when it was read */
        char *follow_topic;
        int32_t follow_parts;
        int64_t follow_parts_us;
};

/* Applies the group's verdict as librdkafka would without a callback, and
 * notes when the consumer is left without an assignment: a join that never
 * completes (librdkafka 2.0.2's mock drops the JoinGroup answer of a member
 * whose session expired while it waited, and the client then waits
 * max.poll.interval.ms + 3 s) is visible to /readyz (consume_loop.h). */
static void kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                               void *opaque) {
        struct kafka_consumer *c = opaque;
        bool assign = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        if (!strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE")) {
                rd_kafka_error_t *e = assign ? rd_kafka_incremental_assign(rk, parts)
                                             : rd_kafka_incremental_unassign(rk, parts);
                if (e)
                        rd_kafka_error_destroy(e);
        } else
                (void)rd_kafka_assign(rk, assign ? parts : NULL);
        long long zero = 0;
        if (assign)
                atomic_store(&c->unassigned_since_us, 0);
        else /* the first revocation starts the clock; a later one keeps it */
                (void)atomic_compare_exchange_strong(&c->unassigned_since_us, &zero, (long long)time_mono_us());
}

int64_t kafka_consumer_unassigned_ms(struct kafka_consumer *c, const char **group) {
        if (group)
                *group = c->group;
        long long since = atomic_load(&c->unassigned_since_us);
        return since ? (time_mono_us() - since) / 1000 : 0;
}

void kafka_consumer_set_key_filter(struct kafka_consumer *c, kafka_key_filter_fn fn, void *userdata) {
        c->key_filter = fn;
        c->key_filter_userdata = userdata;
}

void kafka_consumer_defer_refusals(struct kafka_consumer *c, bool defer) {
        c->defer_refusals = defer;
}

struct kafka_consumer *kafka_consumer_new(const struct kafka_options *opts, const char *group_id,
                                          const char *const *topics, const char *offset_reset,
                                          struct err_detail *reterr) {
        char errstr[512], session[16], heartbeat[16], fetch_wait[16];
        if (!group_id || !*group_id || (topics && !topics[0])) {
                err_set(reterr, -EINVAL, "config", "kafka consumer needs a group id, and a topic if it subscribes");
                return NULL;
        }
        const char *ours[16] = {
                "group.id", group_id,
                "enable.auto.commit", "false",
                "enable.auto.offset.store", "false",
                "auto.offset.reset", offset_reset ? offset_reset : "earliest",
        };
        size_t n = 8;
        if (opts && opts->session_timeout_ms > 0) {
                int hb = opts->session_timeout_ms / 3;
                snprintf(session, sizeof session, "%d", opts->session_timeout_ms);
                snprintf(heartbeat, sizeof heartbeat, "%d", hb > 0 ? hb : 1);
                ours[n++] = "session.timeout.ms";
                ours[n++] = session;
                ours[n++] = "heartbeat.interval.ms";
                ours[n++] = heartbeat;
        }
        if (opts && opts->fetch_wait_max_ms > 0) {
                snprintf(fetch_wait, sizeof fetch_wait, "%d", opts->fetch_wait_max_ms);
                ours[n++] = "fetch.wait.max.ms";
                ours[n++] = fetch_wait;
        }
        ours[n] = NULL;

        rd_kafka_conf_t *conf = kafka_conf_common(opts, ours, reterr);
        if (!conf)
                return NULL;
        struct kafka_consumer *c = calloc(1, sizeof *c);
        if (!c) {
                rd_kafka_conf_destroy(conf);
                err_set(reterr, -ENOMEM, "", "out of memory");
                return NULL;
        }
        snprintf(c->group, sizeof c->group, "%s", group_id);
        rd_kafka_conf_set_opaque(conf, c);
        rd_kafka_conf_set_rebalance_cb(conf, kafka_rebalance_cb);
        c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
        if (!c->rk) {
                rd_kafka_conf_destroy(conf);
                free(c);
                err_set(reterr, -EINVAL, "config", "could not create kafka consumer: %s", errstr);
                return NULL;
        }
        rd_kafka_poll_set_consumer(c->rk);
        c->auth = opts ? opts->auth : NULL;
        if (!topics)
                return c; /* assigned by kafka_consumer_follow_keys, never a group member */
        atomic_store(&c->unassigned_since_us, (long long)time_mono_us());

        size_t ntopics = 0;
        while (topics[ntopics])
                ntopics++;
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)ntopics);
        for (size_t i = 0; i < ntopics; i++)
                rd_kafka_topic_partition_list_add(list, topics[i], RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, list);
        rd_kafka_topic_partition_list_destroy(list);
        if (err) {
                kafka_err_set(reterr, err, "could not subscribe");
                rd_kafka_destroy(c->rk);
                free(c);
                return NULL;
        }
        return c;
}

struct kafka_consumer *kafka_consumer_free(struct kafka_consumer *c) {
        if (!c)
                return NULL;
        /* Leaves the group now instead of letting the session time out. */
        rd_kafka_consumer_close(c->rk);
        rd_kafka_destroy(c->rk);
        free(c->follow_topic);
        free(c);
        return NULL;
}

/* kafka_consumer_follow_keys: the partition count is read again after this
 * long, so partitions added to the topic are followed within it */
#define FOLLOW_PARTS_MAX_AGE_US (60 * 1000000LL)
#define FOLLOW_METADATA_MS 5000

/* The partition count of topic from the cluster's metadata; 0 and *err if
 * the topic is unknown or the request failed. */
static int32_t topic_partition_count(rd_kafka_t *rk, const char *topic, rd_kafka_resp_err_t *err) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        const struct rd_kafka_metadata *md = NULL;
        int32_t cnt = 0;
        if (!rkt) {
                *err = rd_kafka_last_error();
                return 0;
        }
        *err = rd_kafka_metadata(rk, 0, rkt, &md, FOLLOW_METADATA_MS);
        if (!*err && md->topic_cnt == 1 && !(*err = md->topics[0].err))
                cnt = md->topics[0].partition_cnt;
        if (!*err && cnt <= 0)
                *err = RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION;
        if (md)
                rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        return cnt;
}

int kafka_consumer_follow_keys(struct kafka_consumer *c, const char *topic, const char *const *keys, size_t n,
                               int64_t back, struct err_detail *reterr) {
        int64_t now = time_mono_us();
        if (!c->follow_topic || strcmp(c->follow_topic, topic)) {
                free(c->follow_topic);
                c->follow_parts = 0;
                if (!(c->follow_topic = strdup(topic)))
                        return err_set(reterr, -ENOMEM, "", "out of memory");
        }
        if (!c->follow_parts || now - c->follow_parts_us >= FOLLOW_PARTS_MAX_AGE_US) {
                rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
                int32_t cnt = topic_partition_count(c->rk, topic, &err);
                if (!cnt && !c->follow_parts)
                        return kafka_err_set(reterr, err, "could not read the partition count");
                if (cnt) /* on failure the last count stands: a partition count only ever grows */
                        c->follow_parts = cnt;
                c->follow_parts_us = now;
        }
        rd_kafka_topic_partition_list_t *cur = NULL;
        rd_kafka_resp_err_t err = rd_kafka_assignment(c->rk, &cur);
        if (err)
                return kafka_err_set(reterr, err, "could not read the assignment");
        /* want[p]: partition p of topic carries one of the keys */
        _cleanup_free_ bool *want = calloc((size_t)c->follow_parts, sizeof *want);
        rd_kafka_topic_partition_list_t *add = rd_kafka_topic_partition_list_new(1),
                                        *drop = rd_kafka_topic_partition_list_new(1);
        int r = 0;
        if (!want || !add || !drop) {
                r = err_set(reterr, -ENOMEM, "", "out of memory");
                goto out;
        }
        for (size_t k = 0; k < n; k++)
                want[rd_kafka_msg_partitioner_consistent(NULL, keys[k], strlen(keys[k]), c->follow_parts, NULL,
                                                          NULL)] = true;
        for (int i = 0; i < cur->cnt; i++) {
                const rd_kafka_topic_partition_t *tp = &cur->elems[i];
                if (strcmp(tp->topic, topic) || tp->partition >= c->follow_parts || !want[tp->partition])
                        rd_kafka_topic_partition_list_add(drop, tp->topic, tp->partition);
        }
        for (int32_t p = 0; p < c->follow_parts; p++) {
                if (!want[p])
                        continue;
                r++;
                /* an explicit start in the assignment itself: librdkafka looks
                 * up the end and starts `back` records before it, with no
                 * reset or seek to race against */
                if (!rd_kafka_topic_partition_list_find(cur, topic, p))
                        rd_kafka_topic_partition_list_add(add, topic, p)->offset = RD_KAFKA_OFFSET_TAIL(back);
        }
        rd_kafka_error_t *e = NULL;
        if (drop->cnt > 0 && (e = rd_kafka_incremental_unassign(c->rk, drop)))
                goto failed;
        if (add->cnt > 0 && (e = rd_kafka_incremental_assign(c->rk, add)))
                goto failed;
        goto out;
failed:
        r = err_set(reterr, kafka_errno(rd_kafka_error_code(e)), rd_kafka_error_name(e),
                    "could not change the assignment: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
out:
        if (add)
                rd_kafka_topic_partition_list_destroy(add);
        if (drop)
                rd_kafka_topic_partition_list_destroy(drop);
        rd_kafka_topic_partition_list_destroy(cur);
        return r;
}

void kafka_consumer_wake(struct kafka_consumer *c) {
        rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(c->rk);
        if (q) {
                rd_kafka_queue_yield(q);
                rd_kafka_queue_destroy(q);
        }
}

/* Verifies m with c->auth (bus_auth.h). On success fills msg's signer and
 * signature; a refused record is logged, counted, committed (it would be
 * refused the same way forever) and destroyed, and false returned. */
static bool kafka_message_verify(struct kafka_consumer *c, rd_kafka_message_t *m, struct kafka_message *msg) {
        rd_kafka_headers_t *hdrs = NULL;
        const void *signer = NULL, *sig = NULL;
        size_t signer_len = 0, sig_len = 0;
        if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                /* the last of each: a forger cannot hide a second signer behind the first */
                if (rd_kafka_header_get_last(hdrs, BUS_AUTH_HEADER_SIGNER, &signer, &signer_len))
                        signer = NULL;
                if (rd_kafka_header_get_last(hdrs, BUS_AUTH_HEADER_SIG, &sig, &sig_len))
                        sig = NULL;
        }
        int r = bus_auth_verify(c->auth, msg->topic, signer, signer_len, sig, sig_len, m->payload, m->len);
        if (r == 0) {
                memcpy(msg->signer, signer, signer_len);
                msg->signer[signer_len] = '\0';
                memcpy(msg->sig, sig, SIGN_SIGNATURE_LEN);
                msg->is_signed = true;
                return true;
        }
        char who[BUS_AUTH_SIGNER_MAX], detail[128];
        size_t wl = signer && signer_len < sizeof who ? signer_len : 0;
        memcpy(who, signer ? signer : "", wl);
        who[wl] = '\0';
        for (size_t i = 0; i < wl; i++) /* the claim is the sender's bytes: keep the log line printable */
                if ((unsigned char)who[i] < 0x20 || (unsigned char)who[i] == 0x7f)
                        who[i] = '?';
        snprintf(detail, sizeof detail, "partition %" PRId32 " offset %" PRId64, m->partition, m->offset);
        bus_auth_refuse(msg->topic, who, (enum bus_refusal)(-r - 1), detail);
        if (c->defer_refusals) {
                msg->refused = true;
                return true;
        }
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
        if (list) {
                rd_kafka_topic_partition_list_add(list, msg->topic, m->partition)->offset = m->offset + 1;
                (void)rd_kafka_commit(c->rk, list, 0); /* harmless if lost: refused again */
                rd_kafka_topic_partition_list_destroy(list);
        }
        rd_kafka_message_destroy(m);
        memset(msg, 0, sizeof *msg);
        return false;
}

int kafka_consumer_poll(struct kafka_consumer *c, int timeout_ms, struct kafka_message *msg) {
        memset(msg, 0, sizeof *msg);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, timeout_ms);
        if (!m)
                return 0;
        if (m->err) {
                rd_kafka_resp_err_t err = m->err;
                char fatal[256];
                rd_kafka_resp_err_t ferr = RD_KAFKA_RESP_ERR_NO_ERROR;
                if (err == RD_KAFKA_RESP_ERR__FATAL)
                        ferr = rd_kafka_fatal_error(c->rk, fatal, sizeof fatal);
                if (err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        log_ctx(LOG_DEBUG, LOG_KV("component", "kafka", "error", rd_kafka_err2name(err)),
                                "consumer error: %s", rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                if (err == RD_KAFKA_RESP_ERR__FATAL)
                        return ferr ? kafka_errno(ferr) : -EIO;
                return 0;
        }
        if (c->key_filter && !c->key_filter(c->key_filter_userdata, m->key, m->key_len)) {
                rd_kafka_message_destroy(m);
                return 0;
        }
        msg->topic = rd_kafka_topic_name(m->rkt);
        if (c->auth && !kafka_message_verify(c, m, msg))
                return 0;
        msg->partition = m->partition;
        msg->offset = m->offset;
        msg->key = m->key;
        msg->key_len = m->key_len;
        msg->value = m->payload;
        msg->len = m->len;
        msg->timestamp_ms = rd_kafka_message_timestamp(m, NULL);
        msg->handle = m;
        if (msg->refused) { /* deferred: nothing to apply, the caller commits it with its batch */
                msg->value = NULL;
                msg->len = 0;
        }
        return 1;
}

void kafka_message_release(struct kafka_message *msg) {
        if (!msg || !msg->handle)
                return;
        rd_kafka_message_destroy(msg->handle);
        memset(msg, 0, sizeof *msg);
}

int kafka_consumer_commit(struct kafka_consumer *c, const struct kafka_message *msg,
                          struct err_detail *reterr) {
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
        if (!list)
                return err_set(reterr, -ENOMEM, "", "out of memory");
        rd_kafka_topic_partition_list_add(list, msg->topic, msg->partition)->offset = msg->offset + 1;
        rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, list, 0 /* synchronous */);
        if (!err && list->elems[0].err)
                err = list->elems[0].err;
        rd_kafka_topic_partition_list_destroy(list);
        if (err)
                return kafka_err_set(reterr, err, "could not commit offset");
        return 0;
}

int64_t kafka_consumer_lag(struct kafka_consumer *c, int timeout_ms, char *topic, size_t topic_size,
                           int32_t *ret_partition, int64_t *ret_lag) {
        rd_kafka_topic_partition_list_t *parts = NULL;
        int64_t total = 0;
        *ret_partition = -1;
        *ret_lag = 0;
        if (topic_size)
                topic[0] = '\0';
        rd_kafka_resp_err_t err = rd_kafka_assignment(c->rk, &parts);
        if (err)
                return -EIO;
        bool need_committed = false;
        if (parts->cnt > 0 && !(err = rd_kafka_position(c->rk, parts)))
                for (int i = 0; i < parts->cnt; i++)
                        if (parts->elems[i].offset < 0)
                                need_committed = true;
        if (!err && need_committed) {
                /* position unknown (nothing consumed since the assignment):
                 * ask for the committed offsets of those partitions */
                rd_kafka_topic_partition_list_t *q = rd_kafka_topic_partition_list_copy(parts);
                err = rd_kafka_committed(c->rk, q, timeout_ms);
                for (int i = 0; !err && i < parts->cnt; i++)
                        if (parts->elems[i].offset < 0 && q->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
                                parts->elems[i].offset = q->elems[i].offset;
                rd_kafka_topic_partition_list_destroy(q);
        }
        for (int i = 0; !err && i < parts->cnt; i++) {
                const rd_kafka_topic_partition_t *tp = &parts->elems[i];
                int64_t lo = 0, hi = 0;
                if (tp->offset < 0)
                        continue; /* neither consumed nor committed: nothing to compare */
                err = rd_kafka_query_watermark_offsets(c->rk, tp->topic, tp->partition, &lo, &hi, timeout_ms);
                if (err || hi <= tp->offset)
                        continue;
                total += hi - tp->offset;
                if (hi - tp->offset > *ret_lag) {
                        *ret_lag = hi - tp->offset;
                        *ret_partition = tp->partition;
                        snprintf(topic, topic_size, "%s", tp->topic);
                }
        }
        rd_kafka_topic_partition_list_destroy(parts);
        if (err)
                return err == RD_KAFKA_RESP_ERR__TIMED_OUT ? -ETIMEDOUT : -EIO;
        return total;
}

int kafka_consumer_commit_many(struct kafka_consumer *c, const struct kafka_message *msgs, size_t n,
                               struct err_detail *reterr) {
        if (n == 0)
                return 0;
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)n);
        if (!list)
                return err_set(reterr, -ENOMEM, "", "out of memory");
        for (size_t i = 0; i < n; i++) {
                rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(list, msgs[i].topic,
                                                                                    msgs[i].partition);
                if (!tp)
                        tp = rd_kafka_topic_partition_list_add(list, msgs[i].topic, msgs[i].partition);
                if (msgs[i].offset + 1 > tp->offset)
                        tp->offset = msgs[i].offset + 1;
        }
        rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, list, 0 /* synchronous */);
        for (int i = 0; !err && i < list->cnt; i++)
                err = list->elems[i].err;
        rd_kafka_topic_partition_list_destroy(list);
        if (err)
                return kafka_err_set(reterr, err, "could not commit offsets");
        return 0;
}

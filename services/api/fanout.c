/* Live RunEvents for websocket viewers. A consumer thread, in no consumer
 * group (it never commits), assigns itself exactly the partitions of
 * paddock.runs.events that the runs watched in this worker are produced to
 * (hub_follow, kafka_consumer_follow_keys), none while no one watches, so an
 * idle worker sends the firehose no fetch; a partition newly assigned starts
 * FOLLOW_BACK_RECORDS before its end, which covers the events produced
 * between a viewer's subscription and the assignment (history comes from
 * PostgreSQL). It decodes the records of runs someone watches, encodes and
 * frames each event's websocket message once (struct fanout_msg, shared by
 * reference by every viewer of the run), queues it for the subscribers of
 * that run, and wakes the lws loop with lws_cancel_service(). The lws thread
 * drains the queues and writes several frames at once (stream.c). One mutex
 * guards subscribers and their queues; it is taken once per record, and a
 * queue is an array of pointers (no allocation per event and viewer). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

#include "api.h"
#include "core/json_dump.h"
#include "core/log.h"
#include "core/shutdown.h"
#include "core/timeutil.h"
#include "kafka/kafka.h"
#include "kafka/topics.h"
#include "paddock/v1/events.pb-c.h"
#include "pg/pg.h"
#include "service/run_node.h"

/* Beyond this a slow viewer's queue drops live events; stream.c refetches
 * them from PostgreSQL, so nothing is lost, only delayed (by evidence's lag,
 * seconds under load): sized for a second of a 10k events/s run, so a burst
 * does not fall back to PostgreSQL (issue 10 point 4). */
#define SUB_QUEUE_MAX 16384

/* A partition newly assigned starts this many records before its end: a
 * viewer subscribes before it reads the history (stream.c), and the events
 * produced between then and the assignment (a few batches of a run just
 * launched) arrive live, not from the stream's once-a-second history poll;
 * the key filter skips other runs' records undecoded. */
#define FOLLOW_BACK_RECORDS 256
/* the poll's wait; a change of subscribers ends it at once (hub_changed) */
#define FANOUT_POLL_MS 500

struct fanout_sub {
        char run_id[UUID_STR_LEN];
        struct fanout_msg **q; /* [0, n): one reference each, in partition order */
        size_t n, cap;
        struct fanout_sub *next;
};

struct fanout_hub {
        pthread_mutex_t lock;
        struct fanout_sub *subs;
        atomic_uint subs_gen; /* bumped when subs changes */
        struct api *api;
        struct kafka_consumer *consumer;
        pthread_t thread;
        bool started;
        atomic_bool stop;
        /* the fan-out thread's: event ts -> record CreateTime (the runner's
         * batching and produce), CreateTime -> received here (Kafka) */
        struct fanout_hop hops[2];
        int64_t hops_logged_us;
        /* the fan-out thread's: the last run whose reporter was checked */
        char checked_run[UUID_STR_LEN];
        char checked_signer[BUS_AUTH_SIGNER_MAX];
        /* the fan-out thread's: subs_gen and time of the last hub_follow */
        unsigned followed_gen;
        int64_t followed_us;
};

static bool hub_has_sub(struct fanout_hub *h, const char *run_id) {
        bool any = false;
        pthread_mutex_lock(&h->lock);
        for (struct fanout_sub *s = h->subs; s && !any; s = s->next)
                any = !strcmp(s->run_id, run_id);
        pthread_mutex_unlock(&h->lock);
        return any;
}

/* The fan-out's key filter: only records of runs someone watches are
 * verified and decoded (the key is the run id, topics.h). */
static bool hub_wants_key(void *userdata, const void *key, size_t key_len) {
        char run_id[UUID_STR_LEN];
        if (!key || key_len != UUID_STR_LEN - 1)
                return false;
        memcpy(run_id, key, key_len);
        run_id[key_len] = 0;
        return hub_has_sub(userdata, run_id);
}

/* Live events reach a stream only from the run's node or the scheduler, as
 * stored history does (docs/CONTRACTS.md, signed messages): checked once per
 * run and signer while a stream of that run is open. A run still without a
 * node (its placement not yet committed) passes; evidence decides what is kept. */
static bool hub_reporter_ok(struct fanout_hub *h, const struct kafka_message *m, const char *run_id) {
        /* the api's own records are reviews of finished runs, whose streams
         * have closed: a later viewer reads them from the history */
        if (!strcmp(m->signer, "api"))
                return false;
        if (!strcmp(m->signer, "scheduler") ||
            (!strcmp(h->checked_run, run_id) && !strcmp(h->checked_signer, m->signer)))
                return true;
        struct err_detail e = {0};
        PGconn *conn = pg_pool_acquire(h->api->pg, 5000, &e);
        if (!conn)
                return true; /* unknown, not refused: the stream's history comes from evidence */
        int r = run_node_check(conn, m, run_id, NULL, &e);
        pg_pool_release(h->api->pg, conn);
        if (r == 0) {
                snprintf(h->checked_run, sizeof h->checked_run, "%s", run_id);
                snprintf(h->checked_signer, sizeof h->checked_signer, "%s", m->signer);
        }
        return r <= 0;
}

void fanout_hop_add(struct fanout_hop *h, int64_t us) {
        if (us < 0)
                us = 0; /* clocks of one host: only rounding goes below */
        int64_t b = us / 1000;
        h->hist[b < FANOUT_HOP_BUCKETS - 1 ? b : FANOUT_HOP_BUCKETS - 1]++;
        h->n++;
        h->sum_us += us;
        if (us > h->max_us)
                h->max_us = us;
}

static double hop_pct(const struct fanout_hop *h, double pct) {
        uint64_t want = (uint64_t)(h->n * pct / 100.0 + 0.999999), seen = 0;
        for (size_t b = 0; b < FANOUT_HOP_BUCKETS; b++)
                if ((seen += h->hist[b]) >= want)
                        return (double)(b + 1); /* the bucket's upper bound, ms */
        return (double)h->max_us / 1000.0;
}

void fanout_hops_flush(struct fanout_hop *hops, size_t n, int64_t *last_us) {
        int64_t now = time_mono_us();
        if (last_us && now - *last_us < 1000000)
                return;
        if (last_us)
                *last_us = now;
        for (size_t i = 0; i < n; i++) {
                struct fanout_hop *h = &hops[i];
                if (!h->n)
                        continue;
                json_t *ctx = json_pack("{s:s, s:I, s:f, s:f, s:f, s:f}", "hop", h->name, "n", (json_int_t)h->n,
                                        "mean_ms", (double)h->sum_us / (double)h->n / 1000.0, "p50_ms",
                                        hop_pct(h, 50), "p99_ms", hop_pct(h, 99), "max_ms", (double)h->max_us / 1000.0);
                log_emit_json(LOG_DEBUG, ctx, "stream timings");
                json_decref(ctx);
                *h = (struct fanout_hop){.name = h->name};
        }
}

/* RFC 6455 §5.2: FIN and the text opcode, then the payload length in 7
 * bits, or 126 and 16 bits, or 127 and 64 bits (network order); no mask
 * from a server. Written just before buf + LWS_PRE. */
static void msg_frame_header(struct fanout_msg *m) {
        unsigned char h[10] = {0x81};
        uint8_t n = 2;
        if (m->len < 126)
                h[1] = (unsigned char)m->len;
        else if (m->len <= 0xffff) {
                h[1] = 126;
                n = 4;
        } else {
                h[1] = 127;
                n = 10;
        }
        for (uint8_t i = 2; i < n; i++)
                h[i] = (unsigned char)((uint64_t)m->len >> (8 * (n - 1 - i)));
        m->hdr = n;
        memcpy(m->buf + LWS_PRE - n, h, n);
}

_Static_assert(LWS_PRE >= 10, "the frame header fits in the headroom");

static struct fanout_msg *msg_new(size_t len, uint64_t seq, bool terminal) {
        struct fanout_msg *m = malloc(sizeof *m + LWS_PRE + len + 1);
        if (!m)
                return NULL;
        m->refs = 1;
        m->seq = seq;
        m->terminal = terminal;
        m->queued_us = 0;
        m->len = len;
        m->buf[LWS_PRE + len] = 0;
        msg_frame_header(m);
        return m;
}

struct fanout_msg *fanout_msg_ref(struct fanout_msg *m) {
        if (m)
                __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
        return m;
}

struct fanout_msg *fanout_msg_unref(struct fanout_msg *m) {
        if (m && __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0)
                free(m);
        return NULL;
}

struct fanout_msg *fanout_event_msg(const char *run_id, uint64_t seq, const char *ts, const char *kind,
                                    const char *actor, json_t *data) {
        bool terminal = false;
        if (!strcmp(kind, "status")) {
                const char *st = json_string_value(json_object_get(data, "status"));
                terminal = st && runs_status_terminal(st);
        }
        json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:s, s:O}", "run", run_id, "seq", (json_int_t)seq, "ts", ts,
                              "kind", kind, "actor", actor, "data", data);
        if (!o)
                return NULL;
        /* dumped once into a stack buffer (events are small), copied behind
         * the headroom; a larger one is dumped again, straight there */
        char small[4096];
        size_t len = json_dumpb(o, small, sizeof small, JSON_COMPACT);
        struct fanout_msg *m = len ? msg_new(len, seq, terminal) : NULL;
        if (m && len <= sizeof small)
                memcpy(m->buf + LWS_PRE, small, len);
        else if (m && json_dumpb(o, (char *)m->buf + LWS_PRE, len, JSON_COMPACT) != len)
                m = fanout_msg_unref(m);
        json_decref(o);
        return m;
}

/* Appends s to *p (room up to end), as it is or (quote) as jansson dumps
 * a JSON string; false when it does not fit, or a quoted s is not ASCII. */
static bool put_text(char **p, char *end, const char *s, bool quote) {
        size_t n = strlen(s);
        if (quote)
                n = json_quote_fast(s, n, *p, (size_t)(end - *p));
        else if (n < (size_t)(end - *p))
                memcpy(*p, s, n);
        else
                n = 0;
        *p += n;
        return n > 0;
}

struct fanout_msg *fanout_event_msg_text(const char *run_id, uint64_t seq, const char *ts, const char *kind,
                                         const char *actor, const char *data_json) {
        size_t dlen = data_json ? strlen(data_json) : 0;
        if (dlen == 0) {
                data_json = "{}";
                dlen = 2;
        }
        /* fanout_event_msg's members in its order; a status event (rare)
         * goes through jansson, which reads whether it ends the run */
        char head[512], *p = head, *end = head + sizeof head, seqs[24];
        snprintf(seqs, sizeof seqs, "%" PRIu64, seq);
        if (strcmp(kind, "status") != 0 && json_object_text_plain(data_json, dlen) &&
            put_text(&p, end, "{\"run\":", false) && put_text(&p, end, run_id, true) &&
            put_text(&p, end, ",\"seq\":", false) && put_text(&p, end, seqs, false) &&
            put_text(&p, end, ",\"ts\":", false) && put_text(&p, end, ts, true) &&
            put_text(&p, end, ",\"kind\":", false) && put_text(&p, end, kind, true) &&
            put_text(&p, end, ",\"actor\":", false) && put_text(&p, end, actor, true) &&
            put_text(&p, end, ",\"data\":", false)) {
                size_t hl = (size_t)(p - head);
                struct fanout_msg *m = msg_new(hl + dlen + 1, seq, false);
                if (!m)
                        return NULL;
                memcpy(m->buf + LWS_PRE, head, hl);
                memcpy(m->buf + LWS_PRE + hl, data_json, dlen);
                m->buf[LWS_PRE + hl + dlen] = '}';
                return m;
        }
        json_t *data = json_loads(data_json, 0, NULL);
        if (!data)
                data = json_object();
        struct fanout_msg *m = data ? fanout_event_msg(run_id, seq, ts, kind, actor, data) : NULL;
        json_decref(data);
        return m;
}

/* Tells the fan-out thread the watched runs changed, ending its poll so a
 * new viewer's partition is assigned at once. */
static void hub_changed(struct fanout_hub *h) {
        atomic_fetch_add(&h->subs_gen, 1);
        if (h->consumer)
                kafka_consumer_wake(h->consumer);
}

struct fanout_sub *fanout_subscribe(struct fanout_hub *h, const char *run_id) {
        struct fanout_sub *s = calloc(1, sizeof *s);
        if (!s)
                return NULL;
        snprintf(s->run_id, sizeof s->run_id, "%s", run_id);
        pthread_mutex_lock(&h->lock);
        s->next = h->subs;
        h->subs = s;
        pthread_mutex_unlock(&h->lock);
        hub_changed(h);
        return s;
}

void fanout_unsubscribe(struct fanout_hub *h, struct fanout_sub *s) {
        if (!s)
                return;
        pthread_mutex_lock(&h->lock);
        for (struct fanout_sub **p = &h->subs; *p; p = &(*p)->next)
                if (*p == s) {
                        *p = s->next;
                        break;
                }
        pthread_mutex_unlock(&h->lock);
        hub_changed(h);
        for (size_t i = 0; i < s->n; i++)
                fanout_msg_unref(s->q[i]);
        free(s->q);
        free(s);
}

size_t fanout_drain(struct fanout_hub *h, struct fanout_sub *s, struct fanout_msg ***q, size_t *cap) {
        pthread_mutex_lock(&h->lock);
        struct fanout_msg **taken = s->q;
        size_t n = s->n, taken_cap = s->cap;
        s->q = *q;
        s->cap = *cap;
        s->n = 0;
        pthread_mutex_unlock(&h->lock);
        *q = taken;
        *cap = taken_cap;
        return n;
}

/* Queues a reference of each of msgs[0, n) for every subscriber of run_id,
 * under one lock; true if a queue was empty before, i.e. the lws thread has
 * to be woken: it drains every queue when woken, so a non-empty queue
 * already has a wake-up pending (one wake-up per burst, not a pipe write and
 * a pass over all sessions per event). A queue at SUB_QUEUE_MAX takes no
 * more (stream.c refetches the gap from PostgreSQL). */
static bool hub_publish(struct fanout_hub *h, const char *run_id, struct fanout_msg **msgs, size_t n) {
        bool wake = false;
        pthread_mutex_lock(&h->lock);
        for (struct fanout_sub *s = h->subs; s; s = s->next) {
                if (strcmp(s->run_id, run_id) || s->n >= SUB_QUEUE_MAX)
                        continue;
                size_t take = n < SUB_QUEUE_MAX - s->n ? n : SUB_QUEUE_MAX - s->n;
                if (s->n + take > s->cap) {
                        size_t cap = s->cap ? s->cap * 2 : 256;
                        while (cap < s->n + take)
                                cap *= 2;
                        struct fanout_msg **nq = realloc(s->q, cap * sizeof *nq);
                        if (!nq)
                                continue;
                        s->q = nq;
                        s->cap = cap;
                }
                wake |= s->n == 0;
                for (size_t i = 0; i < take; i++)
                        s->q[s->n++] = fanout_msg_ref(msgs[i]);
        }
        pthread_mutex_unlock(&h->lock);
        return wake;
}

/* A record is a RunEventBatch of one run (events.proto): its events are
 * encoded once each and queued, in order, for the run's subscribers, with
 * one wake-up of the lws loop. A platform verdict (seq 0, "append") gets its
 * seq from evidence: it is queued as a message of seq 0 that tells the
 * stream to read it from the history now (stream.c), not at its next idle
 * poll. */
static void handle_message(struct fanout_hub *h, const struct kafka_message *m) {
        Paddock__V1__RunEventBatch *b = paddock__v1__run_event_batch__unpack(NULL, m->len, m->value);
        if (!b) {
                log_warn("could not decode run events at %s/%d/%lld", m->topic, (int)m->partition, (long long)m->offset);
                return;
        }
        const char *run_id = b->n_events && b->events[0]->env ? b->events[0]->env->run_id : "";
        struct fanout_msg *stack_msgs[64], **msgs = stack_msgs;
        size_t n = 0;
        if (b->n_events > ELEMENTSOF(stack_msgs))
                msgs = malloc(b->n_events * sizeof *msgs);
        if (msgs && id_is_uuid(run_id) && hub_has_sub(h, run_id) && hub_reporter_ok(h, m, run_id)) {
                int64_t now = time_now_us();
                for (size_t i = 0; i < b->n_events; i++) {
                        const Paddock__V1__RunEvent *ev = b->events[i];
                        if (!ev->env || strcmp(ev->env->run_id, run_id) || !ev->kind || !ev->kind[0])
                                continue;
                        if (ev->env->seq == 0) {
                                /* only the scheduler's terminal verdicts carry seq 0 (docs/CONTRACTS.md) */
                                if (ev->terminal && !strcmp(m->signer, "scheduler") && (msgs[n] = msg_new(0, 0, true)))
                                        n++;
                                continue;
                        }
                        char ts[40];
                        time_format_rfc3339(ev->env->ts_unix_us, ts, sizeof ts);
                        struct fanout_msg *fm = fanout_event_msg_text(run_id, ev->env->seq, ts, ev->kind,
                                                                      ev->actor ? ev->actor : "", ev->data_json);
                        if (!fm)
                                continue; /* the stream finds the gap and refetches it */
                        fm->terminal |= ev->terminal;
                        fm->queued_us = now;
                        if (m->timestamp_ms >= 0) {
                                fanout_hop_add(&h->hops[0], m->timestamp_ms * 1000 - (int64_t)ev->env->ts_unix_us);
                                fanout_hop_add(&h->hops[1], now - m->timestamp_ms * 1000);
                        }
                        msgs[n++] = fm;
                }
        }
        if (n && hub_publish(h, run_id, msgs, n))
                lws_cancel_service(h->api->lws);
        for (size_t i = 0; i < n; i++)
                fanout_msg_unref(msgs[i]);
        if (msgs != stack_msgs)
                free(msgs);
        paddock__v1__run_event_batch__free_unpacked(b, NULL);
}

/* Assigns the consumer the partitions of the runs watched in this worker
 * (kafka_consumer_follow_keys): when the subscribers changed, and every few
 * seconds (the partition count is read again now and then); after a failure,
 * at the next round. */
static void hub_follow(struct fanout_hub *h) {
        unsigned gen = atomic_load(&h->subs_gen);
        int64_t now = time_mono_us();
        if (gen == h->followed_gen && h->followed_us && now - h->followed_us < 5000000)
                return;
        size_t n = 0;
        pthread_mutex_lock(&h->lock);
        for (struct fanout_sub *s = h->subs; s; s = s->next)
                n++;
        _cleanup_free_ char(*ids)[UUID_STR_LEN] = n ? malloc(n * sizeof *ids) : NULL;
        _cleanup_free_ const char **keys = n ? malloc(n * sizeof *keys) : NULL;
        size_t i = 0;
        for (struct fanout_sub *s = h->subs; s && ids && keys; s = s->next, i++) {
                memcpy(ids[i], s->run_id, UUID_STR_LEN);
                keys[i] = ids[i];
        }
        pthread_mutex_unlock(&h->lock);
        if (n && (!ids || !keys))
                return; /* out of memory: again at the next round */
        struct err_detail e = {0};
        int r = kafka_consumer_follow_keys(h->consumer, TOPIC_RUNS_EVENTS, keys, n, FOLLOW_BACK_RECORDS, &e);
        if (r < 0) {
                log_warn("fan-out could not choose its partitions: %s", e.message);
                return;
        }
        h->followed_gen = gen;
        h->followed_us = now;
}

static void *fanout_thread(void *arg) {
        struct fanout_hub *h = arg;
        while (!atomic_load(&h->stop) && !shutdown_requested()) {
                hub_follow(h);
                struct kafka_message m;
                int r = kafka_consumer_poll(h->consumer, FANOUT_POLL_MS, &m);
                if (r < 0) {
                        log_error("fan-out consumer failed: %s", strerror(-r));
                        break;
                }
                if (r == 1) {
                        handle_message(h, &m);
                        kafka_message_release(&m);
                }
                fanout_hops_flush(h->hops, ELEMENTSOF(h->hops), &h->hops_logged_us);
        }
        /* wake the lws loop so main() notices a shutdown signal promptly */
        lws_cancel_service(h->api->lws);
        return NULL;
}

int fanout_start(struct api *a) {
        struct fanout_hub *h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        pthread_mutex_init(&h->lock, NULL);
        h->api = a;
        h->hops[0].name = "runner_to_kafka";
        h->hops[1].name = "kafka_to_fanout";
        a->hub = h;
        char group[80], client[80];
        /* a group id only because librdkafka wants one for an assignment:
         * the consumer never joins it nor commits */
        snprintf(group, sizeof group, "paddock-api-fanout-%s", a->instance);
        snprintf(client, sizeof client, "paddock-api-fanout");
        struct kafka_options o;
        kafka_settings_options(&a->cfg.kafka, client, a->auth, &o);
        /* the control fetch wait: this consumer fetches only the partitions
         * of watched runs and none while no one watches (hub_follow), so a
         * short wait costs few idle fetches (docs/CONTRACTS.md "Consumer
         * fetch waits"); "earliest" only for a start below the log's start */
        kafka_options_control(&o, &a->cfg.kafka);
        struct err_detail e = {0};
        h->consumer = kafka_consumer_new(&o, group, NULL, "earliest", &e);
        if (!h->consumer) {
                log_error("could not create fan-out consumer: %s", e.message);
                return e.errnum ? e.errnum : -EINVAL;
        }
        kafka_consumer_set_key_filter(h->consumer, hub_wants_key, h);
        /* signals go to the main thread, whose poll() they interrupt */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int r = pthread_create(&h->thread, NULL, fanout_thread, h);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r != 0)
                return -r;
        h->started = true;
        return 0;
}

void fanout_halt(struct api *a) {
        struct fanout_hub *h = a->hub;
        if (!h || !h->started)
                return;
        atomic_store(&h->stop, true);
        if (h->consumer)
                kafka_consumer_wake(h->consumer); /* its poll waits up to FANOUT_POLL_MS */
        pthread_join(h->thread, NULL);
        h->started = false;
}

void fanout_stop(struct api *a) {
        struct fanout_hub *h = a->hub;
        if (!h)
                return;
        fanout_halt(a);
        h->consumer = kafka_consumer_free(h->consumer);
        /* sessions unsubscribe themselves when lws closes them, before this */
        while (h->subs)
                fanout_unsubscribe(h, h->subs);
        pthread_mutex_destroy(&h->lock);
        free(h);
        a->hub = NULL;
}

/* Live RunEvents for websocket viewers. A consumer thread in a group unique to
 * this process (starting at "latest": history comes from PostgreSQL) decodes
 * every RunEvent, queues its public JSON for the subscribers of that run, and
 * wakes the lws loop with lws_cancel_service(). The lws thread drains the
 * queues (stream.c). One mutex guards subscribers and their queues. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

#include "api.h"
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

struct fanout_sub {
        char run_id[UUID_STR_LEN];
        struct fanout_item *head, *tail;
        size_t n;
        struct fanout_sub *next;
};

struct fanout_hub {
        pthread_mutex_t lock;
        struct fanout_sub *subs;
        struct api *api;
        struct kafka_consumer *consumer;
        pthread_t thread;
        bool started;
        atomic_bool stop;
        /* the fan-out thread's: the last run whose reporter was checked */
        char checked_run[UUID_STR_LEN];
        char checked_signer[BUS_AUTH_SIGNER_MAX];
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

char *fanout_event_json(const char *run_id, uint64_t seq, const char *ts, const char *kind, const char *actor,
                        json_t *data, bool *terminal) {
        *terminal = false;
        if (!strcmp(kind, "status")) {
                const char *st = json_string_value(json_object_get(data, "status"));
                *terminal = st && runs_status_terminal(st);
        }
        json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:s, s:O}", "run", run_id, "seq", (json_int_t)seq, "ts", ts,
                              "kind", kind, "actor", actor, "data", data);
        if (!o)
                return NULL;
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        return s;
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
        return s;
}

void fanout_items_free(struct fanout_item *it) {
        while (it) {
                struct fanout_item *n = it->next;
                free(it->json);
                free(it);
                it = n;
        }
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
        fanout_items_free(s->head);
        free(s);
}

struct fanout_item *fanout_drain(struct fanout_hub *h, struct fanout_sub *s) {
        pthread_mutex_lock(&h->lock);
        struct fanout_item *it = s->head;
        s->head = s->tail = NULL;
        s->n = 0;
        pthread_mutex_unlock(&h->lock);
        return it;
}

/* Queues a copy of json for every subscriber of run_id; true if a queue was
 * empty before, i.e. the lws thread has to be woken: it drains every queue
 * when woken, so a non-empty queue already has a wake-up pending (one
 * wake-up per burst, not a pipe write and a pass over all sessions per event). */
static bool hub_publish(struct fanout_hub *h, const char *run_id, uint64_t seq, bool terminal, const char *json) {
        bool wake = false;
        pthread_mutex_lock(&h->lock);
        for (struct fanout_sub *s = h->subs; s; s = s->next) {
                if (strcmp(s->run_id, run_id) || s->n >= SUB_QUEUE_MAX)
                        continue;
                struct fanout_item *it = calloc(1, sizeof *it);
                if (!it)
                        continue;
                it->json = strdup(json);
                if (!it->json) {
                        free(it);
                        continue;
                }
                it->seq = seq;
                it->terminal = terminal;
                if (s->tail)
                        s->tail->next = it;
                else
                        s->head = it;
                s->tail = it;
                wake |= s->n++ == 0;
        }
        pthread_mutex_unlock(&h->lock);
        return wake;
}

/* A record is a RunEventBatch of one run (events.proto): each event goes to
 * the run's subscribers, in order, with one wake-up of the lws loop. */
static void handle_message(struct fanout_hub *h, const struct kafka_message *m) {
        Paddock__V1__RunEventBatch *b = paddock__v1__run_event_batch__unpack(NULL, m->len, m->value);
        if (!b) {
                log_warn("could not decode run events at %s/%d/%lld", m->topic, (int)m->partition, (long long)m->offset);
                return;
        }
        const char *run_id = b->n_events && b->events[0]->env ? b->events[0]->env->run_id : "";
        bool wake = false;
        if (id_is_uuid(run_id) && hub_has_sub(h, run_id) && hub_reporter_ok(h, m, run_id)) {
                for (size_t i = 0; i < b->n_events; i++) {
                        const Paddock__V1__RunEvent *ev = b->events[i];
                        /* a platform verdict (seq 0) gets its seq from evidence:
                         * viewers read it from the history */
                        if (!ev->env || strcmp(ev->env->run_id, run_id) || ev->env->seq == 0 || !ev->kind ||
                            !ev->kind[0])
                                continue;
                        json_t *data = json_loads(ev->data_json && ev->data_json[0] ? ev->data_json : "{}", 0, NULL);
                        if (!data)
                                data = json_object();
                        char ts[40];
                        time_format_rfc3339(ev->env->ts_unix_us, ts, sizeof ts);
                        bool terminal;
                        char *json = fanout_event_json(run_id, ev->env->seq, ts, ev->kind, ev->actor ? ev->actor : "",
                                                       data, &terminal);
                        json_decref(data);
                        if (json && hub_publish(h, run_id, ev->env->seq, terminal || ev->terminal, json))
                                wake = true;
                        free(json);
                }
        }
        if (wake)
                lws_cancel_service(h->api->lws);
        paddock__v1__run_event_batch__free_unpacked(b, NULL);
}

static void *fanout_thread(void *arg) {
        struct fanout_hub *h = arg;
        while (!atomic_load(&h->stop) && !shutdown_requested()) {
                struct kafka_message m;
                int r = kafka_consumer_poll(h->consumer, 500, &m);
                if (r < 0) {
                        log_error("fan-out consumer failed: %s", strerror(-r));
                        break;
                }
                if (r == 0)
                        continue;
                handle_message(h, &m);
                kafka_message_release(&m);
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
        a->hub = h;
        char group[80], client[80];
        snprintf(group, sizeof group, "paddock-api-fanout-%s", a->instance);
        snprintf(client, sizeof client, "paddock-api-fanout");
        struct kafka_options o;
        kafka_settings_options(&a->cfg.kafka, client, a->auth, &o);
        struct err_detail e = {0};
        h->consumer = kafka_consumer_new(&o, group, (const char *const[]){TOPIC_RUNS_EVENTS, NULL}, "latest", &e);
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

void fanout_stop(struct api *a) {
        struct fanout_hub *h = a->hub;
        if (!h)
                return;
        atomic_store(&h->stop, true);
        if (h->started)
                pthread_join(h->thread, NULL);
        h->consumer = kafka_consumer_free(h->consumer);
        /* sessions unsubscribe themselves when lws closes them, before this */
        while (h->subs)
                fanout_unsubscribe(h, h->subs);
        pthread_mutex_destroy(&h->lock);
        free(h);
        a->hub = NULL;
}

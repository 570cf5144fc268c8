#include "events.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/macro.h"
#include "core/shutdown.h"
#include "core/timeutil.h"
#include "kafka/kafka.h"
#include "kafka/topics.h"
#include "paddock/v1/events.pb-c.h"
#include "proto/envelope.h"

#define EVENTS_SYNC_TIMEOUT_MS 10000
#define EVENTS_SYNC_ATTEMPTS 6
#define EVENTS_FLUSH_TIMEOUT_MS 30000

void events_init(struct run_events *ev, struct kafka_producer *p, const char *producer_name,
                 const char *tenant_id, const char *run_id, const char *team_id) {
        *ev = (struct run_events){
                .producer = p,
                .producer_name = producer_name,
                .tenant_id = tenant_id,
                .run_id = run_id,
                .team_id = team_id,
                .seq_fd = -1,
        };
        pthread_mutex_init(&ev->lock, NULL);
}

void events_persist_seq(struct run_events *ev, int fd) {
        pthread_mutex_lock(&ev->lock);
        ev->seq_fd = fd;
        pthread_mutex_unlock(&ev->lock);
}

/* Records seq as possibly delivered. No fsync: this guards against a crash of
 * the process (page cache survives), which is what restarts recover from. */
static void persist_seq(struct run_events *ev, uint64_t seq) {
        if (ev->seq_fd < 0)
                return;
        char line[32];
        int n = snprintf(line, sizeof line, "%020llu\n", (unsigned long long)seq);
        if (pwrite(ev->seq_fd, line, (size_t)n, 0) != n)
                log_ctx(LOG_WARN, LOG_KV("run", ev->run_id), "could not persist seq %llu: %m",
                        (unsigned long long)seq);
}

void events_done(struct run_events *ev) {
        pthread_mutex_destroy(&ev->lock);
}

static int events_flush_locked(struct run_events *ev) {
        if (!ev->pending_async)
                return 0;
        int r = kafka_producer_flush(ev->producer, EVENTS_FLUSH_TIMEOUT_MS);
        if (r < 0) {
                log_ctx(LOG_ERROR, LOG_KV("run", ev->run_id), "could not flush output events: %s",
                        strerror(-r));
                ev->lost++;
                return r;
        }
        ev->pending_async = false;
        return 0;
}

int events_flush(struct run_events *ev) {
        pthread_mutex_lock(&ev->lock);
        int r = events_flush_locked(ev);
        pthread_mutex_unlock(&ev->lock);
        return r;
}

static int events_emit_locked(struct run_events *ev, const char *kind, const char *actor, json_t *data,
                              const char *status, bool terminal, bool sync);

/* The kinds the scheduler and the api act on (docs/CONTRACTS.md, topic
 * paddock.runs.status): copied there so that they never read the firehose. */
static bool events_control_relevant(const char *kind) {
        return !strcmp(kind, "status") || !strcmp(kind, "approval_requested") || !strcmp(kind, "approval_decided");
}

/* Produces the copy of a control-relevant event (the same bytes, seq and
 * message id as on paddock.runs.events, already acknowledged there) on
 * paddock.runs.status, waiting for the broker like a sync event, so that the
 * copies of one run are in seq order and a status consumer never sees an
 * event the history cannot get. Retried like a sync event; only a shutdown
 * gives up (counted as lost; the restarted runner ends the run). */
static int events_status_copy(struct run_events *ev, const char *kind, const void *buf, size_t len) {
        if (!events_control_relevant(kind))
                return 0;
        struct err_detail err = {0};
        int r;
        for (int attempt = 1;; attempt++) {
                r = kafka_produce_sync(ev->producer, TOPIC_RUNS_STATUS, ev->run_id, buf, len, EVENTS_SYNC_TIMEOUT_MS,
                                       &err);
                if (r >= 0)
                        return 0;
                log_ctx(LOG_WARN, LOG_KV("run", ev->run_id, "kind", kind),
                        "could not produce run status copy (attempt %d): %s", attempt, err.message);
                int backoff_ms = attempt < 5 ? 200 * attempt : 2000;
                if ((shutdown_sleep_ms(backoff_ms) || shutdown_requested()) && attempt >= EVENTS_SYNC_ATTEMPTS)
                        break;
        }
        log_ctx(LOG_ERROR, LOG_KV("run", ev->run_id, "kind", kind), "run status copy not delivered before shutdown: %s",
                err.message);
        ev->lost++;
        return r;
}

int events_emit(struct run_events *ev, const char *kind, const char *actor, json_t *data,
                const char *status, bool terminal, bool sync) {
        pthread_mutex_lock(&ev->lock);
        int r = events_emit_locked(ev, kind, actor, data, status, terminal, sync);
        pthread_mutex_unlock(&ev->lock);
        return r;
}

static int events_emit_locked(struct run_events *ev, const char *kind, const char *actor, json_t *data,
                              const char *status, bool terminal, bool sync) {
        Paddock__V1__Envelope env;
        Paddock__V1__RunEvent msg = PADDOCK__V1__RUN_EVENT__INIT;
        char msgid[UUID_STR_LEN];
        _cleanup_free_ char *data_json = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        struct err_detail err = {0};
        int r;

        data_json = json_dumps(data, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(9));
        if (!data_json)
                return -ENOMEM;
        r = envelope_init(&env, ev->tenant_id, ev->run_id, ev->seq + 1, ev->producer_name, msgid);
        if (r < 0)
                return r;
        msg.env = &env;
        msg.kind = (char *)kind;
        msg.actor = (char *)actor;
        msg.data_json = data_json;
        msg.team_id = (char *)(ev->team_id ? ev->team_id : "");
        msg.status = (char *)(status ? status : "");
        msg.terminal = terminal;

        size_t len = paddock__v1__run_event__get_packed_size(&msg);
        buf = malloc(len ? len : 1);
        if (!buf)
                return -ENOMEM;
        paddock__v1__run_event__pack(&msg, buf);

        persist_seq(ev, ev->seq + 1);
        if (!sync) {
                r = kafka_produce(ev->producer, TOPIC_RUNS_EVENTS, ev->run_id, buf, len, &err);
                if (r < 0) {
                        /* the local queue is full: drain it once and retry */
                        (void)kafka_producer_flush(ev->producer, EVENTS_FLUSH_TIMEOUT_MS);
                        r = kafka_produce(ev->producer, TOPIC_RUNS_EVENTS, ev->run_id, buf, len, &err);
                }
                if (r < 0) {
                        log_ctx(LOG_ERROR, LOG_KV("run", ev->run_id, "kind", kind),
                                "could not queue run event: %s", err.message);
                        ev->lost++;
                        return r;
                }
                ev->seq++;
                ev->pending_async = true;
                return events_status_copy(ev, kind, buf, len);
        }

        int64_t t0 = time_mono_us();
        (void)events_flush_locked(ev);
        int64_t t1 = time_mono_us();
        /* The same bytes (same message id and seq) on every attempt, so a
         * duplicate after a lost acknowledgement is deduplicated downstream. */
        /* Retried until delivered: a later event must never take the seq
         * after an undelivered one. Only a shutdown ends the retries (after
         * EVENTS_SYNC_ATTEMPTS), and then seq stays, see below. */
        for (int attempt = 1;; attempt++) {
                r = kafka_produce_sync(ev->producer, TOPIC_RUNS_EVENTS, ev->run_id, buf, len,
                                       EVENTS_SYNC_TIMEOUT_MS, &err);
                if (r >= 0)
                        break;
                log_ctx(LOG_WARN, LOG_KV("run", ev->run_id, "kind", kind),
                        "could not produce run event (attempt %d): %s", attempt, err.message);
                int backoff_ms = attempt < 5 ? 200 * attempt : 2000;
                if ((shutdown_sleep_ms(backoff_ms) || shutdown_requested()) && attempt >= EVENTS_SYNC_ATTEMPTS)
                        break;
        }
        char ms[64];
        snprintf(ms, sizeof ms, "flush %.1f ms, produce %.1f ms", (double)(t1 - t0) / 1000.0,
                 (double)(time_mono_us() - t1) / 1000.0);
        log_ctx(LOG_DEBUG, LOG_KV("run", ev->run_id, "kind", kind, "timing", ms), "run event sent");
        if (r < 0) {
                /* shutting down with the broker unreachable: seq does not move
                 * past the undelivered event; the restarted runner ends the run
                 * after the persisted seq */
                log_ctx(LOG_ERROR, LOG_KV("run", ev->run_id, "kind", kind),
                        "run event not delivered before shutdown: %s", err.message);
                ev->lost++;
                return r;
        }
        ev->seq++;
        return events_status_copy(ev, kind, buf, len);
}

int events_status(struct run_events *ev, const char *status, const char *reason, int exit_code,
                  bool terminal) {
        json_t *d = json_pack("{s:s}", "status", status);
        if (!d)
                return -ENOMEM;
        if (reason)
                json_object_set_new(d, "reason", json_string(reason));
        if (exit_code >= 0)
                json_object_set_new(d, "exit_code", json_integer(exit_code));
        int r = events_emit(ev, "status", "platform", d, status, terminal, true);
        json_decref(d);
        return r;
}

int events_output(struct run_events *ev, const char *stream, const char *text, size_t len) {
        json_t *d = json_object();
        if (!d)
                return -ENOMEM;
        json_object_set_new(d, "stream", json_string(stream));
        json_object_set_new(d, "text", json_stringn(text, len));
        int r = events_emit(ev, "output", "agent", d, NULL, false, false);
        json_decref(d);
        return r;
}

#include "kafka/consume_loop.h"

#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "core/log.h"
#include "core/macro.h"
#include "core/shutdown.h"

#define KAFKA_LOOP_POLL_MS 500
#define KAFKA_LOOP_RETRY_MIN_MS 100
#define KAFKA_LOOP_RETRY_MAX_MS 5000
/* The stop flag has no fd to wake a poll, so backoff sleeps in slices. */
#define KAFKA_LOOP_STOP_SLICE_MS 100

/* ------------------------------------------------ readiness (stall) */

/* What a loop publishes for kafka_consume_stalled(); written by the loop's
 * thread, read by the ops server's, under health_lock. */
struct kafka_loop_health {
        bool used;
        int64_t progress_ms;     /* CLOCK_MONOTONIC of the last progress */
        int64_t checked_ms;      /* of the last lag check */
        int64_t lag;             /* last known lag (high watermark - position) */
        size_t held;             /* messages polled and not yet committed */
        char topic[128];         /* the partition that lags most, or of the held round */
        int32_t partition;
        int64_t part_lag;
        /* the loop's consumer, read by kafka_consume_stalled for its
         * assignment (thread-safe); valid while the slot is used */
        struct kafka_consumer *consumer;
};

#define KAFKA_LOOP_HEALTH_MAX 16
#define KAFKA_LOOP_LAG_TIMEOUT_MS 1000
static pthread_mutex_t health_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kafka_loop_health health[KAFKA_LOOP_HEALTH_MAX];

static int64_t kafka_loop_now_ms(void) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* A slot for the calling loop, or NULL when all are taken (more loops than
 * any daemon runs: that loop is then not watched). */
static struct kafka_loop_health *kafka_loop_health_get(struct kafka_consumer *c) {
        struct kafka_loop_health *h = NULL;
        pthread_mutex_lock(&health_lock);
        for (size_t i = 0; i < KAFKA_LOOP_HEALTH_MAX && !h; i++)
                if (!health[i].used) {
                        h = &health[i];
                        *h = (struct kafka_loop_health){.used = true, .progress_ms = kafka_loop_now_ms(),
                                                        .partition = -1, .consumer = c};
                }
        pthread_mutex_unlock(&health_lock);
        return h;
}

static void kafka_loop_health_put(struct kafka_loop_health *h) {
        if (!h)
                return;
        pthread_mutex_lock(&health_lock);
        h->used = false;
        pthread_mutex_unlock(&health_lock);
}

/* Before handling a round of n messages (first one m). */
static void kafka_loop_health_hold(struct kafka_loop_health *h, const struct kafka_message *m, size_t n) {
        if (!h)
                return;
        pthread_mutex_lock(&health_lock);
        h->held = n;
        if (n > 0 && h->lag == 0) {
                snprintf(h->topic, sizeof h->topic, "%s", m->topic);
                h->partition = m->partition;
        }
        pthread_mutex_unlock(&health_lock);
}

/* After a round: committed (progress) or not. */
static void kafka_loop_health_round(struct kafka_loop_health *h, bool committed) {
        if (!h)
                return;
        pthread_mutex_lock(&health_lock);
        if (committed) {
                h->held = 0;
                h->progress_ms = kafka_loop_now_ms();
        }
        pthread_mutex_unlock(&health_lock);
}

/* While idle, every KAFKA_LOOP_LAG_CHECK_MS: asks the brokers for the lag;
 * none is progress (caught up). A broker that does not answer leaves the
 * last figures: no progress is claimed without an answer. */
static void kafka_loop_health_check(struct kafka_loop_health *h, struct kafka_consumer *c) {
        if (!h)
                return;
        int64_t now = kafka_loop_now_ms();
        pthread_mutex_lock(&health_lock);
        bool due = now - h->checked_ms >= KAFKA_LOOP_LAG_CHECK_MS;
        pthread_mutex_unlock(&health_lock);
        if (!due)
                return;
        char topic[128];
        int32_t partition;
        int64_t part_lag;
        int64_t lag = kafka_consumer_lag(c, KAFKA_LOOP_LAG_TIMEOUT_MS, topic, sizeof topic, &partition, &part_lag);
        pthread_mutex_lock(&health_lock);
        h->checked_ms = now;
        if (lag >= 0) {
                h->lag = lag;
                if (lag > 0) {
                        snprintf(h->topic, sizeof h->topic, "%s", topic);
                        h->partition = partition;
                        h->part_lag = part_lag;
                } else if (h->held == 0)
                        h->progress_ms = kafka_loop_now_ms();
        }
        pthread_mutex_unlock(&health_lock);
}

int kafka_consume_stalled(int stall_s, char *why, size_t why_size) {
        if (stall_s <= 0)
                return 0;
        int64_t now = kafka_loop_now_ms();
        int r = 0;
        pthread_mutex_lock(&health_lock);
        for (size_t i = 0; i < KAFKA_LOOP_HEALTH_MAX && !r; i++) {
                const struct kafka_loop_health *h = &health[i];
                const char *group = NULL;
                int64_t unassigned = h->used ? kafka_consumer_unassigned_ms(h->consumer, &group) : 0;
                if (unassigned > (int64_t)stall_s * 1000) {
                        snprintf(why, why_size, "consumer group %s has had no assignment for %" PRId64
                                 " s (its join has not completed)", group, unassigned / 1000);
                        r = -EBUSY;
                        break;
                }
                int64_t idle = now - h->progress_ms;
                if (!h->used || idle <= (int64_t)stall_s * 1000 || h->lag + (int64_t)h->held == 0)
                        continue;
                /* the partition's own lag when known, else the whole loop's */
                int64_t lag = h->part_lag > 0 && h->lag > 0 ? h->part_lag : h->lag + (int64_t)h->held;
                snprintf(why, why_size, "consumer %s partition %" PRId32 " stalled %" PRId64 " s with lag %" PRId64,
                         h->topic[0] ? h->topic : "(unknown topic)", h->partition, idle / 1000, lag);
                r = -EBUSY;
        }
        pthread_mutex_unlock(&health_lock);
        return r;
}

bool kafka_error_is_permanent(int r) {
        return r == -EBADMSG || r == -EINVAL || r == -ERANGE || r == -E2BIG;
}

static bool kafka_loop_stopping(const struct kafka_consume_loop_options *opts) {
        return shutdown_requested() || (opts->stop && atomic_load(opts->stop));
}

/* Sleeps ms or until a stop is requested; returns false on stop. */
static bool kafka_loop_sleep(const struct kafka_consume_loop_options *opts, int ms) {
        while (ms > 0 && !kafka_loop_stopping(opts)) {
                int slice = opts->stop && ms > KAFKA_LOOP_STOP_SLICE_MS ? KAFKA_LOOP_STOP_SLICE_MS : ms;
                struct pollfd p = {.fd = shutdown_fd(), .events = POLLIN};
                poll(&p, 1, slice);
                ms -= slice;
        }
        return !kafka_loop_stopping(opts);
}

static void kafka_loop_count(struct metric *m) {
        if (m)
                metric_add(m, 1);
}

/* Handles m until its effect is durable or it is known to be unprocessable
 * (both: 0, commit), or until a stop (-ECANCELED: do not commit). */
static int kafka_loop_process(const struct kafka_message *m, kafka_handle_fn handle, void *userdata,
                              const struct kafka_consume_loop_options *opts) {
        int min_ms = opts->retry_min_ms > 0 ? opts->retry_min_ms : KAFKA_LOOP_RETRY_MIN_MS;
        int max_ms = opts->retry_max_ms > 0 ? opts->retry_max_ms : KAFKA_LOOP_RETRY_MAX_MS;
        char part[16], off[24];
        snprintf(part, sizeof part, "%" PRId32, m->partition);
        snprintf(off, sizeof off, "%" PRId64, m->offset);
        int delay = min_ms;
        for (unsigned attempt = 1;; attempt++) {
                struct err_detail err = {0};
                int r = handle(userdata, m, &err);
                if (r >= 0) {
                        kafka_loop_count(opts->processed);
                        return 0;
                }
                if (kafka_error_is_permanent(r)) {
                        log_ctx(LOG_WARN, LOG_KV("topic", m->topic, "partition", part, "offset", off, "code", err.code),
                                "skipping message that can never be processed: %s",
                                err.message[0] ? err.message : strerror(-r));
                        kafka_loop_count(opts->skipped);
                        return 0;
                }
                kafka_loop_count(opts->retries);
                char attempt_s[16];
                snprintf(attempt_s, sizeof attempt_s, "%u", attempt);
                log_ctx(attempt == 1 ? LOG_WARN : LOG_ERROR,
                        LOG_KV("topic", m->topic, "partition", part, "offset", off, "attempt", attempt_s, "code", err.code),
                        "could not process message, will retry in %d ms: %s", delay,
                        err.message[0] ? err.message : strerror(-r));
                if (!kafka_loop_sleep(opts, delay))
                        return -ECANCELED;
                delay = delay * 2 > max_ms ? max_ms : delay * 2;
        }
}

#define KAFKA_ROUTES_BATCH_MAX 1000

static const struct kafka_route *kafka_route_find(const struct kafka_route *routes, const char *topic) {
        for (; routes->topic; routes++)
                if (!strcmp(routes->topic, topic))
                        return routes;
        return NULL;
}

static void kafka_loop_log_skip(const struct kafka_message *m, int r, const struct err_detail *err) {
        char part[16], off[24];
        snprintf(part, sizeof part, "%" PRId32, m->partition);
        snprintf(off, sizeof off, "%" PRId64, m->offset);
        log_ctx(LOG_WARN, LOG_KV("topic", m->topic, "partition", part, "offset", off, "code", err ? err->code : ""),
                "skipping message that can never be processed: %s",
                err && err->message[0] ? err->message : strerror(-r));
}

/* Hands msgs[0..n) to a batch route until durable (0) or a stop (-ECANCELED).
 * verdicts has room for n. */
static int kafka_loop_process_batch(const struct kafka_route *route, const struct kafka_message *msgs, size_t n,
                                    int *verdicts, void *userdata, const struct kafka_consume_loop_options *opts) {
        int min_ms = opts->retry_min_ms > 0 ? opts->retry_min_ms : KAFKA_LOOP_RETRY_MIN_MS;
        int max_ms = opts->retry_max_ms > 0 ? opts->retry_max_ms : KAFKA_LOOP_RETRY_MAX_MS;
        int delay = min_ms;
        for (unsigned attempt = 1;; attempt++) {
                struct err_detail err = {0};
                memset(verdicts, 0, n * sizeof *verdicts);
                int r = route->handle_batch(userdata, msgs, n, verdicts, &err);
                if (r >= 0) {
                        for (size_t i = 0; i < n; i++) {
                                if (kafka_error_is_permanent(verdicts[i])) {
                                        kafka_loop_log_skip(&msgs[i], verdicts[i], NULL);
                                        kafka_loop_count(opts->skipped);
                                } else
                                        kafka_loop_count(opts->processed);
                        }
                        return 0;
                }
                if (kafka_error_is_permanent(r) && n > 1) {
                        /* isolate the poison: the same messages one by one */
                        for (size_t i = 0; i < n; i++) {
                                int k = kafka_loop_process_batch(route, &msgs[i], 1, &verdicts[i], userdata, opts);
                                if (k < 0)
                                        return k;
                        }
                        return 0;
                }
                if (kafka_error_is_permanent(r)) {
                        kafka_loop_log_skip(&msgs[0], r, &err);
                        kafka_loop_count(opts->skipped);
                        return 0;
                }
                kafka_loop_count(opts->retries);
                char attempt_s[16], count[16], off[24];
                snprintf(attempt_s, sizeof attempt_s, "%u", attempt);
                snprintf(count, sizeof count, "%zu", n);
                snprintf(off, sizeof off, "%" PRId64, msgs[0].offset);
                log_ctx(attempt == 1 ? LOG_WARN : LOG_ERROR,
                        LOG_KV("topic", route->topic, "messages", count, "first_offset", off, "attempt", attempt_s,
                               "code", err.code),
                        "could not process batch, will retry in %d ms: %s", delay,
                        err.message[0] ? err.message : strerror(-r));
                if (!kafka_loop_sleep(opts, delay))
                        return -ECANCELED;
                delay = delay * 2 > max_ms ? max_ms : delay * 2;
        }
}

/* Polls one round into msgs (room for max): the first message waits up to
 * poll_ms, later ones until linger_ms after the first. Returns the count or a
 * negative errno (fatal consumer error). */
static ssize_t kafka_loop_poll_round(struct kafka_consumer *c, struct kafka_message *msgs, size_t max, int poll_ms,
                                     int linger_ms) {
        size_t n = 0;
        int64_t deadline = 0;
        while (n < max) {
                int wait = poll_ms;
                if (n > 0) {
                        struct timespec now;
                        clock_gettime(CLOCK_MONOTONIC, &now);
                        int64_t left = deadline - ((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000);
                        wait = left > 0 ? (int)left : 0;
                }
                int r = kafka_consumer_poll(c, wait, &msgs[n]);
                if (r < 0)
                        return r;
                if (r == 0) {
                        if (n > 0 && wait == 0)
                                break;
                        if (n == 0)
                                break; /* nothing this round: let the caller tick */
                        continue;
                }
                if (n == 0) {
                        struct timespec now;
                        clock_gettime(CLOCK_MONOTONIC, &now);
                        deadline = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 + linger_ms;
                }
                n++;
        }
        return (ssize_t)n;
}

int kafka_consume_routes(struct kafka_consumer *c, const struct kafka_route *routes, void *userdata,
                         const struct kafka_consume_loop_options *opts) {
        int poll_ms = opts->poll_timeout_ms > 0 ? opts->poll_timeout_ms : KAFKA_LOOP_POLL_MS;
        size_t max = opts->batch_max > 0 ? (size_t)opts->batch_max : KAFKA_ROUTES_BATCH_MAX;
        int linger = opts->linger_ms > 0 ? opts->linger_ms : 0;
        _cleanup_free_ struct kafka_message *msgs = calloc(max, sizeof *msgs);
        _cleanup_free_ struct kafka_message *group = calloc(max, sizeof *group);
        _cleanup_free_ int *verdicts = calloc(max, sizeof *verdicts);
        _cleanup_free_ bool *done = calloc(max, sizeof *done);
        if (!msgs || !group || !verdicts || !done)
                return -ENOMEM;
        kafka_consumer_defer_refusals(c, true);
        struct kafka_loop_health *health_slot = kafka_loop_health_get(c);
        int ret = 0;
        while (!kafka_loop_stopping(opts)) {
                ssize_t n = kafka_loop_poll_round(c, msgs, max, poll_ms, linger);
                if (n < 0) {
                        ret = (int)n;
                        break;
                }
                bool cancelled = false;
                memset(done, 0, max * sizeof *done);
                kafka_loop_health_hold(health_slot, &msgs[0], (size_t)n);
                for (size_t i = 0; i < (size_t)n && !cancelled; i++) {
                        if (done[i])
                                continue;
                        done[i] = true;
                        if (msgs[i].refused) /* logged and counted by the poll */
                                continue;
                        const struct kafka_route *route = kafka_route_find(routes, msgs[i].topic);
                        if (!route) {
                                struct err_detail e = {0};
                                err_set(&e, KAFKA_SKIP, "topic", "no route for topic %s", msgs[i].topic);
                                kafka_loop_log_skip(&msgs[i], KAFKA_SKIP, &e);
                                kafka_loop_count(opts->skipped);
                                continue;
                        }
                        if (route->handle) {
                                cancelled = kafka_loop_process(&msgs[i], route->handle, userdata, opts) == -ECANCELED;
                                continue;
                        }
                        /* every later message of the topic joins, in poll order
                         * (which is partition order) */
                        size_t k = 0;
                        group[k++] = msgs[i];
                        for (size_t j = i + 1; j < (size_t)n; j++)
                                if (!done[j] && !msgs[j].refused && !strcmp(msgs[j].topic, msgs[i].topic)) {
                                        done[j] = true;
                                        group[k++] = msgs[j];
                                }
                        cancelled = kafka_loop_process_batch(route, group, k, verdicts, userdata, opts) ==
                                    -ECANCELED;
                }
                if (!cancelled && n > 0) {
                        struct err_detail cerr = {0};
                        if (kafka_consumer_commit_many(c, msgs, (size_t)n, &cerr) < 0)
                                /* harmless: the messages come again and are applied idempotently */
                                log_warn("could not commit offsets of %zd messages: %s", n, cerr.message);
                        else {
                                kafka_loop_count(opts->batches);
                                kafka_loop_health_round(health_slot, true);
                        }
                }
                if (n == 0)
                        kafka_loop_health_check(health_slot, c);
                for (size_t i = 0; i < (size_t)n; i++)
                        kafka_message_release(&msgs[i]);
                if (cancelled)
                        break;
                if (opts->tick)
                        opts->tick(userdata);
        }
        kafka_loop_health_put(health_slot);
        kafka_consumer_defer_refusals(c, false);
        return ret;
}

struct kafka_consumer *kafka_consumer_new_routes(const struct kafka_options *opts, const char *group_id,
                                                 const struct kafka_route *routes, const char *offset_reset,
                                                 struct err_detail *reterr) {
        const char *topics[17];
        size_t n = 0;
        for (const struct kafka_route *r = routes; r->topic; r++) {
                if (n == ELEMENTSOF(topics) - 1) {
                        err_set(reterr, -E2BIG, "routes", "more than %zu routes", ELEMENTSOF(topics) - 1);
                        return NULL;
                }
                topics[n++] = r->topic;
        }
        topics[n] = NULL;
        return kafka_consumer_new(opts, group_id, topics, offset_reset, reterr);
}

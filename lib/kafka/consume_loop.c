#include "kafka/consume_loop.h"

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/shutdown.h"

#define KAFKA_LOOP_POLL_MS 500
#define KAFKA_LOOP_RETRY_MIN_MS 100
#define KAFKA_LOOP_RETRY_MAX_MS 5000
/* The stop flag has no fd to wake a poll, so backoff sleeps in slices. */
#define KAFKA_LOOP_STOP_SLICE_MS 100

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

int kafka_consume_loop(struct kafka_consumer *c, kafka_handle_fn handle, void *userdata,
                       const struct kafka_consume_loop_options *opts) {
        int poll_ms = opts->poll_timeout_ms > 0 ? opts->poll_timeout_ms : KAFKA_LOOP_POLL_MS;
        while (!kafka_loop_stopping(opts)) {
                struct kafka_message m;
                int r = kafka_consumer_poll(c, poll_ms, &m);
                if (r < 0)
                        return r;
                if (r > 0) {
                        r = kafka_loop_process(&m, handle, userdata, opts);
                        if (r == -ECANCELED) {
                                kafka_message_release(&m);
                                break;
                        }
                        struct err_detail cerr = {0};
                        if (kafka_consumer_commit(c, &m, &cerr) < 0)
                                /* harmless: the message comes again and is applied idempotently */
                                log_warn("could not commit offset on %s: %s", m.topic, cerr.message);
                        kafka_message_release(&m);
                }
                if (opts->tick)
                        opts->tick(userdata);
        }
        return 0;
}

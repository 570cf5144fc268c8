/* The one consume loop every consuming service runs, as a table of routes:
 * poll a round of messages, hand each to its topic's handler, and commit the
 * round's offsets only once every handler says its effect is durable or that
 * its message can never be processed. Transient failures are retried on the
 * SAME messages with exponential backoff, so nothing is lost, skipped or
 * reordered while a dependency (PostgreSQL, S3) is down; a restart at any
 * point redelivers the uncommitted round, so handlers must be idempotent (a
 * consumer that must commit each message on its own, such as the
 * runner-agent's assignments, sets batch_max 1). Logs retries and skips
 * (warn/error) on the service's behalf, since only this loop knows the
 * attempt count and offset. */
#pragma once
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "core/err.h"
#include "core/metrics.h"
#include "kafka/kafka.h"

/* A handler's verdict for a message that can never be processed (undecodable
 * or invalid): logged at warn, counted in opts->skipped, committed.
 * -EBADMSG, -EINVAL, -ERANGE and -E2BIG mean the same (the same bytes would
 * fail the same way forever), so decoders' errors can be returned as they are. */
#define KAFKA_SKIP (-EBADMSG)

/* Applies one message (borrowed for the call). Returns >= 0 once the effect is
 * durable; KAFKA_SKIP or another permanent errno (see above) for poison; any
 * other negative errno is transient and the same message is handed in again
 * after a backoff. err starts zeroed on each attempt; its code and message are
 * logged. Called from the loop's thread only. */
typedef int (*kafka_handle_fn)(void *userdata, const struct kafka_message *m, struct err_detail *err);
/* Called after every poll round (its messages handled and committed, or a
 * poll timeout), for periodic work in the consumer's thread. */
typedef void (*kafka_tick_fn)(void *userdata);

/* Applies msgs[0..n) (every message of one poll for the route's topic, in
 * partition order; borrowed for the call) as ONE unit. Returns >= 0 once the
 * effect of all of them is durable, having set verdicts[i] (all 0 on entry) to
 * KAFKA_SKIP or another permanent errno for each poison message, which the
 * loop logs, counts and commits; any other negative errno is transient and
 * the same batch is handed in again after a backoff. A permanent errno for the
 * whole call makes the loop hand the messages in again one at a time (n = 1)
 * so the poison one is isolated. Called from the loop's thread only. */
typedef int (*kafka_handle_batch_fn)(void *userdata, const struct kafka_message *msgs, size_t n, int *verdicts,
                                     struct err_detail *err);

/* One line of a consumer's route table: a topic and exactly one of handle
 * (one message at a time) or handle_batch. A table ends with topic NULL. */
struct kafka_route {
        const char *topic;
        kafka_handle_fn handle;
        kafka_handle_batch_fn handle_batch;
};

struct kafka_consume_loop_options {
        int poll_timeout_ms;          /* 0: 500; also bounds how late a tick runs */
        int retry_min_ms;             /* 0: 100, first backoff, doubled per attempt */
        int retry_max_ms;             /* 0: 5000, backoff ceiling */
        struct metric *processed;     /* optional: messages whose effect was committed */
        struct metric *skipped;       /* optional: poison messages skipped */
        struct metric *retries;       /* optional: transient failures retried */
        kafka_tick_fn tick;           /* optional, gets the loop's userdata */
        const atomic_bool *stop;      /* optional: stop as on shutdown (checked
                                       * between polls and every <= 100 ms of backoff) */
        /* the round (PADDOCK_CONSUME_BATCH_MAX / _LINGER_MS for batched
         * consumers, lib/kafka/kafka_config.h): */
        int batch_max;                /* 0: 1000, messages taken per poll round (1: each committed alone) */
        int linger_ms;                /* after the first message, how long to wait for more (0: none) */
        struct metric *batches;       /* optional: poll rounds whose offsets were committed */
};

/* kafka_consumer_new() subscribed to the topics of routes (at most 16), so
 * that one table declares what a consumer reads and how it applies it. */
struct kafka_consumer *kafka_consumer_new_routes(const struct kafka_options *opts, const char *group_id,
                                                 const struct kafka_route *routes, const char *offset_reset,
                                                 struct err_detail *reterr);

/* True for the errnos a handler returns for poison messages (see KAFKA_SKIP). */
bool kafka_error_is_permanent(int r);

/* The consumer as a table of routes over ONE loop: each round polls up to
 * opts->batch_max messages, waiting at most opts->linger_ms after the first;
 * hands each batch route all of the round's messages of its topic in one call
 * (partition order kept) and single routes theirs one by one; retries a
 * transient failure with the same messages (held in memory, nothing polled
 * out of order); and commits the round's offsets only once every handler
 * returned durable or skipped its poison. A message of a topic without a
 * route is skipped as poison. Records refused by bus_auth are committed with
 * the round, never ahead of it. Runs until core/shutdown reports a shutdown
 * or *opts->stop becomes true, then returns 0; a round being retried at that
 * moment is not committed and is redelivered to the group's next member.
 * Returns the negative errno of a fatal consumer error (logged by the
 * caller). A failed commit is logged at warn and not fatal: the messages come
 * again and are applied idempotently. routes, c, opts and the metrics are
 * borrowed; c must be polled by this thread only. */
int kafka_consume_routes(struct kafka_consumer *c, const struct kafka_route *routes, void *userdata,
                         const struct kafka_consume_loop_options *opts);

/* Readiness of the process's consume loops, for /readyz (lib/service,
 * docs/CONTRACTS.md "Readiness"). Each running kafka_consume_routes loop
 * records when it last progressed: committed a round, or found its
 * assignment without lag (asked of the brokers every
 * KAFKA_LOOP_LAG_CHECK_MS while idle). A loop is stalled when it has not
 * progressed for more than stall_s seconds while it has lag (messages it
 * holds uncommitted, or high watermark > position): a handler retrying
 * forever, a fetcher that stopped after a broker came back. A loop whose
 * consumer has had no assignment for more than stall_s (a group join that
 * does not complete: kafka_consumer_unassigned_ms) is stalled too, though it
 * has no lag to show: "consumer group paddock-billing has had no assignment
 * for 47 s (its join has not completed)". Returns 0 when
 * no loop is stalled (or stall_s <= 0: the check is off), else -EBUSY with
 * why[why_size] saying which: "consumer paddock.runs.events partition 3
 * stalled 47 s with lag 1200". Thread-safe (the ops server's thread). */
int kafka_consume_stalled(int stall_s, char *why, size_t why_size);

/* How often an idle loop asks the brokers for its lag (ms). */
#define KAFKA_LOOP_LAG_CHECK_MS 2000

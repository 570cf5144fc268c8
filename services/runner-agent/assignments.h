/* paddock.runs.assigned: the consumer loop that accepts this node's runs and
 * starts a worker thread per run, bounded by the slot count. */
#pragma once
#include "agent.h"
#include "kafka/consume_loop.h"

struct kafka_consumer;

/* The consumer's route table (paddock.runs.assigned), for
 * kafka_consumer_new_routes. */
extern const struct kafka_route assignments_routes[];
/* Consumes c (made from assignments_routes) until shutdown is requested, in
 * rounds of one message. Each message for this node whose run id has no
 * done/<run id> marker gets the marker written and a worker thread, then its
 * offset committed; other messages are committed and skipped. Returns 0 on
 * shutdown, a negative errno on a fatal consumer error (logged). */
int assignments_loop(struct agent *a, struct kafka_consumer *c);

/* Writes done/<run id> with text (atomically). Thread-safe. */
int assignments_mark(struct agent *a, const char *run_id, const char *text);

/* Joins finished workers. With cancel, first asks every running run to stop
 * and waits for all of them. */
void assignments_reap(struct agent *a, bool cancel_all);

/* paddock.runs.assigned: the consumer loop that accepts this node's runs and
 * starts a worker thread per run, bounded by the slot count. */
#pragma once
#include "agent.h"

struct kafka_consumer;

/* Polls until shutdown is requested. Each message for this node whose run id
 * has no done/<run id> marker gets the marker written, its offset committed,
 * and a worker thread; other messages are committed and skipped. Returns 0 on
 * shutdown, a negative errno on a fatal consumer error. */
int assignments_loop(struct agent *a, struct kafka_consumer *c);

/* Writes done/<run id> with text (atomically). Thread-safe. */
int assignments_mark(struct agent *a, const char *run_id, const char *text);

/* Joins finished workers. With cancel, first asks every running run to stop
 * and waits for all of them. */
void assignments_reap(struct agent *a, bool cancel_all);

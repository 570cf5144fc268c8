/* The scheduler's features, called from main.c's single consumer thread.
 * Every handler takes a borrowed connection and one message value (borrowed),
 * returns >= 0 when the effect is committed in PostgreSQL (or there was
 * nothing to do), -EBADMSG/-EINVAL for a message that can never be processed,
 * and another negative errno (-ECONNRESET, -EAGAIN, ...) for a transient
 * failure that is worth retrying. */
#pragma once
#include <libpq-fe.h>
#include <stddef.h>

#include "core/err.h"
#include "core/macro.h"
#include "kafka/kafka.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(PGresult *, PQclear);

/* nodes.c: upserts scheduler.nodes from a NodeHeartbeat. */
int nodes_handle_heartbeat(PGconn *conn, const void *data, size_t len, struct err_detail *reterr);

/* runs.c: stores a RunRequested as a pending run (once per run id). */
int runs_handle_requested(PGconn *conn, const void *data, size_t len, struct err_detail *reterr);
/* runs.c: marks the run finished on its terminal RunEvent, freeing its slot.
 * Returns 1 if a run was marked, 0 if the event was not terminal or already applied. */
int runs_handle_event(PGconn *conn, const void *data, size_t len, struct err_detail *reterr);

/* placement.c: assigns pending runs, oldest first, to live nodes with free
 * slots, producing RunAssigned (key node id) before marking each run assigned.
 * producer_id is the envelope producer ("scheduler/<host>"). Returns the number
 * of runs assigned or a negative errno (runs not yet assigned stay pending). */
int placement_run(PGconn *conn, struct kafka_producer *producer, const char *producer_id,
                  struct err_detail *reterr);
/* placement.c: refreshes the pending/assigned gauges. */
int placement_update_gauges(PGconn *conn, struct err_detail *reterr);
/* placement.c: registers the placement metrics (once, from main). */
void placement_register_metrics(void);

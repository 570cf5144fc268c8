/* Only the node the scheduler assigned a run reports that run (docs/CONTRACTS.md,
 * signed messages on the bus): the check the api, evidence and billing make
 * on a verified record's signer before applying an event, artifact or usage
 * report. The assignment comes from the scheduler's view scheduler.run_nodes. */
#pragma once
#include <libpq-fe.h>

#include "core/err.h"
#include "kafka/kafka.h"

/* Checks that m's signer may report run_id: the scheduler always (its
 * platform events); a node only if it is the run's assigned node, or, while
 * the scheduler shows no node (placement not yet committed, or the run moved
 * back to pending), if it is fallback_node (the node the caller learnt from
 * the signed runs.assigned; NULL or "" if none).
 * A run the scheduler never heard of (and no fallback_node) is refused.
 * Returns 0 if allowed; 1 if refused (counted and logged as wrong_subject:
 * the caller skips the record); -EAGAIN while no node is known yet (a
 * transient error: the consume loop retries; after about a minute of retries
 * of the same record, this thread refuses it instead so that one record can
 * never stall a consumer); another negative errno from PostgreSQL. */
int run_node_check(PGconn *conn, const struct kafka_message *m, const char *run_id, const char *fallback_node,
                   struct err_detail *reterr);

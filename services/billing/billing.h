/* The billing service's features, called from main.c's consumer thread.
 * Handlers take a borrowed connection and one message value (borrowed) and
 * return >= 0 once the effect is committed (or was already there),
 * -EBADMSG/-EINVAL for a message that can never be processed, and another
 * negative errno (-ECONNRESET, -EAGAIN, ...) for a transient failure worth
 * retrying with the same message. */
#pragma once
#include <libpq-fe.h>
#include <stddef.h>

#include "core/err.h"
#include "core/macro.h"
#include "kafka/kafka.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(PGresult *, PQclear);

/* usage_store.c: records a UsageRecord once per run in billing.run_usage
 * and, in the same transaction and only if it was new, adds it to the team's
 * UTC day in billing.team_daily. Returns 1 if recorded, 0 if already there. */
int usage_store(PGconn *conn, const struct kafka_message *m, struct err_detail *reterr);
void usage_store_register_metrics(void);

struct pg_pool;
/* metrics_figures.c: the per-team usage and governance figures on /metrics.
 * register: once from main() before threads; start: the thread computing them
 * every interval_s from pool (borrowed, must outlive stop), top_n teams and
 * top_rules policy rules per tenant with labels of their own. start returns 0 or a negative errno. */
void metrics_figures_register(void);
int metrics_figures_start(struct pg_pool *pool, long long interval_s, long long top_n, long long top_rules);
void metrics_figures_stop(void);

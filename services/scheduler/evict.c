/* Taking a run away from a node that failed it (stopped heartbeating, or
 * never started the run): the one place that decides between failing the
 * run and placing it again.
 *
 * * started (the scheduler saw an event of it): it fails with the cause (a
 *   platform verdict), since whatever it did there cannot be resumed elsewhere;
 * * not started: it goes back to pending for another node (this one is
 *   excluded for good: a runner-agent deduplicates assignments by run id), or
 *   fails after max_attempts placements;
 * * either way a cancel addressed to the node follows on paddock.runs.control,
 *   so a runner-agent that comes back stops the sandbox or drops the assignment
 *   instead of running a run the platform has given away.
 *
 * Everything is produced (and acknowledged) before the caller's transaction
 * commits; a crash in between repeats the verdicts, and consumers keep a
 * run's first terminal status. */
#include <errno.h>
#include <stdio.h>

#include "core/log.h"
#include "core/macro.h"
#include "core/metrics.h"
#include "pg/pg.h"
#include "scheduler.h"

#define REASON_MAX 768

static struct metric m_rescheduled = {.name = "paddock_scheduler_runs_rescheduled_total",
                                      .help = "Runs not started on a failing node put back to pending",
                                      .type = METRIC_COUNTER};
static struct metric m_gave_up = {.name = "paddock_scheduler_runs_attempts_exhausted_total",
                                  .help = "Runs failed after too many placements on nodes that did not start them",
                                  .type = METRIC_COUNTER};

void evict_register_metrics(void) {
        metrics_register(&m_rescheduled);
        metrics_register(&m_gave_up);
}

int evict_run(PGconn *conn, const struct sched *s, const char *node_id, const struct evict_run *e,
              const char *cause, struct evict_tally *t, struct err_detail *reterr) {
        char reason[REASON_MAX];
        bool fail = true;
        if (e->last_seq > 0)
                snprintf(reason, sizeof reason, "%s", cause);
        else if (e->attempts >= s->policy->max_attempts)
                snprintf(reason, sizeof reason, "could not be placed after %lld attempts (%s)", e->attempts, cause);
        else
                fail = false;

        int r;
        if (fail) {
                r = platform_end_run(s, e->run_id, e->tenant, e->team, run_status_to_string(RUN_FAILED), reason, reterr);
                if (r < 0)
                        return r;
        }
        char moved[REASON_MAX];
        snprintf(moved, sizeof moved, "moved to another node: %s", cause);
        /* before the run leaves: a returning node must learn it is not its run anymore */
        r = platform_cancel_run(s, e->run_id, e->tenant, node_id, fail ? reason : moved, reterr);
        if (r < 0)
                return r;

        const char *params[] = {e->run_id, node_id, fail ? reason : NULL};
        if (fail)
                r = pg_exec(conn,
                            "UPDATE scheduler.runs SET state = 'finished', finished_at = now(), reason = $3,"
                            " excluded_nodes = array_append(excluded_nodes, $2) WHERE run_id = $1",
                            3, params, NULL, reterr);
        else
                r = pg_exec(conn,
                            "UPDATE scheduler.runs SET state = 'pending', node_id = NULL, pending_since = now(),"
                            " excluded_nodes = array_append(excluded_nodes, $2) WHERE run_id = $1",
                            2, params, NULL, reterr);
        if (r < 0)
                return r;

        char attempts_s[24];
        snprintf(attempts_s, sizeof attempts_s, "%lld", e->attempts);
        if (fail) {
                log_ctx(LOG_WARN, LOG_KV("run", e->run_id, "tenant", e->tenant, "node", node_id, "attempts", attempts_s),
                        "run failed: %s", reason);
                if (e->last_seq > 0)
                        t->failed++;
                else
                        t->gave_up++;
        } else {
                log_ctx(LOG_INFO, LOG_KV("run", e->run_id, "tenant", e->tenant, "node", node_id, "attempts", attempts_s),
                        "run goes back to pending: %s", cause);
                t->moved++;
        }
        return 0;
}

void evict_count(const struct evict_tally *t) {
        metric_add(&m_rescheduled, t->moved);
        metric_add(&m_gave_up, t->gave_up);
}

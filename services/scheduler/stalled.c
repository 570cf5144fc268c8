/* Assigned runs that never produced a single event on a node that is alive:
 *
 * * cancelled while assigned (control.c) and still silent after
 *   PADDOCK_CANCEL_GRACE_S: the node dropped the assignment (a runner-agent
 *   drops a run cancelled before it started) and nobody else would ever end
 *   it, so it ends here as "cancelled";
 * * silent for PADDOCK_START_TIMEOUT_S after assignment: the node never took
 *   it (lost, or stuck waiting for a slot our accounting thought free), so it
 *   is taken back like a dead node's run (evict.c): cancel to the node, back
 *   to pending elsewhere or failed after max_attempts.
 *
 * Either way the run's slot, cpus and memory stop counting against the node
 * and its team. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/log.h"
#include "core/macro.h"
#include "core/metrics.h"
#include "pg/pg.h"
#include "scheduler.h"

#define STALLED_BATCH 64
#define REASON_MAX 512

static struct metric m_stalled = {.name = "paddock_scheduler_runs_never_started_total",
                                  .help = "Assigned runs taken back because their node never started them",
                                  .type = METRIC_COUNTER};

void stalled_register_metrics(void) {
        metrics_register(&m_stalled);
}

/* Settles the longest-silent overdue run. Returns 1 if one was settled, 0 if none is overdue. */
static int settle_one(PGconn *conn, const struct sched *s, struct err_detail *reterr) {
        _cleanup_(PQclearp) PGresult *run = NULL;
        int r = pg_begin(conn, reterr);
        if (r < 0)
                return r;
        r = placement_lock(conn, reterr);
        if (r < 0)
                goto rollback;
        char grace[24], start[24];
        snprintf(grace, sizeof grace, "%lld", s->policy->cancel_grace_s);
        snprintf(start, sizeof start, "%lld", s->policy->start_timeout_s);
        const char *params[] = {grace, start};
        r = pg_exec(conn,
                    "SELECT run_id, tenant_id, team_id, last_seq, attempts, node_id,"
                    " cancel_requested_at IS NOT NULL FROM scheduler.runs"
                    " WHERE state = 'assigned' AND last_seq = 0 AND"
                    " (cancel_requested_at <= now() - $1::bigint * interval '1 second'"
                    "  OR assigned_at <= now() - $2::bigint * interval '1 second')"
                    " ORDER BY assigned_at, run_id LIMIT 1 FOR UPDATE",
                    2, params, &run, reterr);
        if (r < 0 || PQntuples(run) == 0)
                goto rollback;

        struct evict_run e = {.run_id = PQgetvalue(run, 0, 0), .tenant = PQgetvalue(run, 0, 1),
                              .team = PQgetisnull(run, 0, 2) ? NULL : PQgetvalue(run, 0, 2),
                              .last_seq = strtoull(PQgetvalue(run, 0, 3), NULL, 10),
                              .attempts = strtoll(PQgetvalue(run, 0, 4), NULL, 10)};
        const char *node_id = PQgetvalue(run, 0, 5);
        bool cancelled = PQgetvalue(run, 0, 6)[0] == 't';
        char reason[REASON_MAX];
        struct evict_tally t = {0};
        if (cancelled) {
                snprintf(reason, sizeof reason, "cancelled before node %s started it", node_id);
                r = platform_end_run(s, e.run_id, e.tenant, e.team, run_status_to_string(RUN_CANCELLED), reason, reterr);
                if (r < 0)
                        goto rollback;
                const char *up[] = {e.run_id, reason};
                r = pg_exec(conn,
                            "UPDATE scheduler.runs SET state = 'finished', finished_at = now(), reason = $2"
                            " WHERE run_id = $1",
                            2, up, NULL, reterr);
        } else {
                snprintf(reason, sizeof reason, "node %s did not start it within %lld s", node_id,
                         s->policy->start_timeout_s);
                r = evict_run(conn, s, node_id, &e, reason, &t, reterr);
        }
        if (r < 0)
                goto rollback;
        r = pg_commit(conn, reterr);
        if (r < 0)
                return r;
        if (cancelled)
                log_ctx(LOG_INFO, LOG_KV("run", e.run_id, "tenant", e.tenant, "node", node_id), "run %s", reason);
        else
                metric_add(&m_stalled, 1);
        evict_count(&t);
        return 1;

rollback:
        pg_rollback(conn);
        return r < 0 ? r : 0;
}

int stalled_sweep(PGconn *conn, const struct sched *s, struct err_detail *reterr) {
        int settled = 0;
        for (int i = 0; i < STALLED_BATCH; i++) {
                int r = settle_one(conn, s, reterr);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                settled++;
        }
        return settled;
}

/* The pending timeout: a run that waited PADDOCK_PENDING_TIMEOUT_S since it
 * last became pending (requested, or moved off a dead node) without being
 * placed fails, so no run waits forever for a node that never comes or a team
 * slot that never frees. The reason says what to fix: "no live node has image
 * X" when no node heard from within the dead-after interval lists the run's
 * image (placement.c places it nowhere else), "only draining nodes have image
 * X" when the live ones that list it are all drained (placement skips them),
 * "no capacity" otherwise. The verdict is a platform terminal status event
 * (platform_events.c).
 *
 * A run moved off a failing node excludes that node for good (evict.c: the
 * node deduplicates assignments by run id, so it would never start it). When
 * every live node that could take it (that has its image) has been excluded so for the dead-after interval (at least
 * 6 s, the shortest a node can be declared dead in), waiting
 * the whole timeout cannot help (a one-node cluster whose runner restarted:
 * the chaos suite's stuck run, docs/CONTRACTS.md "Scheduler"), so such a run
 * fails then, saying which nodes failed it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/log.h"
#include "core/macro.h"
#include "core/metrics.h"
#include "pg/pg.h"
#include "scheduler.h"

#define PENDING_BATCH 64
#define REASON_MAX 512

static struct metric m_timed_out = {.name = "paddock_scheduler_runs_pending_timeout_total",
                                    .help = "Runs failed because no node could take them in time",
                                    .type = METRIC_COUNTER};

void pending_register_metrics(void) {
        metrics_register(&m_timed_out);
}

/* Fails the oldest overdue pending run. Returns 1 if one failed, 0 if none is overdue. */
static int fail_one(PGconn *conn, const struct sched *s, struct err_detail *reterr) {
        _cleanup_(PQclearp) PGresult *run = NULL;
        int r = pg_begin(conn, reterr);
        if (r < 0)
                return r;
        r = placement_lock(conn, reterr);
        if (r < 0)
                goto rollback;
        char dead_ms[24], timeout_s[24];
        snprintf(dead_ms, sizeof dead_ms, "%lld", s->policy->node_dead_after_ms);
        snprintf(timeout_s, sizeof timeout_s, "%lld", s->policy->pending_timeout_s);
        const char *params[] = {dead_ms, timeout_s};
        /* live as placement counts it (placement.c's pick_sql); of those,
         * the undrained ones it places on */
        r = pg_exec(conn,
                    "SELECT r.run_id, r.tenant_id, r.team_id, r.image,"
                    " r.image IS NOT NULL AND NOT EXISTS (SELECT 1 FROM scheduler.nodes n"
                    "  WHERE n.dead_since IS NULL AND n.last_seen > now() - " SCHED_SQL_DEAD_AFTER
                    "  AND r.image = ANY (n.images)),"
                    " r.image IS NOT NULL AND NOT EXISTS (SELECT 1 FROM scheduler.nodes n"
                    "  WHERE n.dead_since IS NULL AND n.last_seen > now() - " SCHED_SQL_DEAD_AFTER
                    "  AND r.image = ANY (n.images)"
                    "  AND NOT EXISTS (SELECT 1 FROM scheduler.node_drains d WHERE d.node_id = n.node_id)),"
                    " array_to_string(r.excluded_nodes, ', '),"
                    " r.pending_since > now() - $2::bigint * interval '1 second'"
                    " FROM scheduler.runs r"
                    " WHERE r.state = 'pending' AND r.request IS NOT NULL"
                    " AND (r.pending_since <= now() - $2::bigint * interval '1 second'"
                    "  OR (cardinality(r.excluded_nodes) > 0"
                    "   AND r.pending_since <= now() - GREATEST($1::bigint, 6000) * interval '1 millisecond'"
                    "   AND NOT EXISTS (SELECT 1 FROM scheduler.nodes n WHERE n.dead_since IS NULL"
                    "    AND n.last_seen > now() - " SCHED_SQL_DEAD_AFTER " AND n.node_id <> ALL (r.excluded_nodes)"
                    "    AND (r.image IS NULL OR r.image = ANY (n.images)))))"
                    " ORDER BY r.pending_since, r.run_id LIMIT 1 FOR UPDATE OF r",
                    (int)ELEMENTSOF(params), params, &run, reterr);
        if (r < 0 || PQntuples(run) == 0)
                goto rollback;

        const char *run_id = PQgetvalue(run, 0, 0), *tenant = PQgetvalue(run, 0, 1);
        const char *team = PQgetisnull(run, 0, 2) ? NULL : PQgetvalue(run, 0, 2);
        char reason[REASON_MAX];
        if (PQgetvalue(run, 0, 7)[0] == 't') /* not overdue: every live node for it failed it */
                snprintf(reason, sizeof reason,
                         "every live node already failed to start it (%.256s): relaunch it when another node is up",
                         PQgetvalue(run, 0, 6));
        else if (PQgetvalue(run, 0, 4)[0] == 't')
                snprintf(reason, sizeof reason, "no live node has image \"%.256s\": not placed within %lld s",
                         PQgetvalue(run, 0, 3), s->policy->pending_timeout_s);
        else if (PQgetvalue(run, 0, 5)[0] == 't')
                snprintf(reason, sizeof reason,
                         "only draining nodes have image \"%.256s\": not placed within %lld s",
                         PQgetvalue(run, 0, 3), s->policy->pending_timeout_s);
        else
                snprintf(reason, sizeof reason, "no capacity: not placed within %lld s",
                         s->policy->pending_timeout_s);
        r = platform_end_run(s, run_id, tenant, team, run_status_to_string(RUN_FAILED), reason, reterr);
        if (r < 0)
                goto rollback;
        const char *up[] = {run_id, reason};
        r = pg_exec(conn,
                    "UPDATE scheduler.runs SET state = 'finished', finished_at = now(), reason = $2"
                    " WHERE run_id = $1",
                    2, up, NULL, reterr);
        if (r < 0)
                goto rollback;
        r = pg_commit(conn, reterr);
        if (r < 0)
                return r;
        log_ctx(LOG_WARN, LOG_KV("run", run_id, "tenant", tenant), "run failed: %s", reason);
        metric_add(&m_timed_out, 1);
        return 1;

rollback:
        pg_rollback(conn);
        return r < 0 ? r : 0;
}

int pending_sweep(PGconn *conn, const struct sched *s, struct err_detail *reterr) {
        int failed = 0;
        for (int i = 0; i < PENDING_BATCH; i++) {
                int r = fail_one(conn, s, reterr);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                failed++;
        }
        return failed;
}

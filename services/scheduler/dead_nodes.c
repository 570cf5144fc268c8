/* Dead nodes: a node whose last heartbeat is older than the dead-after
 * interval (PADDOCK_NODE_DEAD_AFTER_MS, else 3 of its heartbeat intervals and
 * at least 6 s) is declared dead once, and every run assigned there is taken
 * back (evict.c): started runs fail with "node <id> stopped heartbeating", the
 * others go back to pending for another node, each with a cancel addressed to
 * the node. A strictly newer heartbeat brings the node back (nodes.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/log.h"
#include "core/macro.h"
#include "core/metrics.h"
#include "pg/pg.h"
#include "scheduler.h"

#define REASON_MAX 512

static struct metric m_dead = {.name = "paddock_scheduler_node_deaths_total",
                               .help = "Times a node was declared dead for missing heartbeats",
                               .type = METRIC_COUNTER};
static struct metric m_failed = {.name = "paddock_scheduler_runs_failed_node_dead_total",
                                 .help = "Started runs failed because their node stopped heartbeating",
                                 .type = METRIC_COUNTER};

void dead_nodes_register_metrics(void) {
        metrics_register(&m_dead);
        metrics_register(&m_failed);
}

/* Declares one node dead and settles its runs, all in one transaction.
 * Returns 1 if it was declared dead, 0 if it is alive after all. */
static int declare_dead(PGconn *conn, const struct sched *s, const char *node_id, struct err_detail *reterr) {
        _cleanup_(PQclearp) PGresult *node = NULL, *runs = NULL;
        int r = pg_begin(conn, reterr);
        if (r < 0)
                return r;
        r = placement_lock(conn, reterr);
        if (r < 0)
                goto rollback;

        char dead_ms[24];
        snprintf(dead_ms, sizeof dead_ms, "%lld", s->policy->node_dead_after_ms);
        const char *np[] = {dead_ms, node_id};
        r = pg_exec(conn,
                    "SELECT n.last_seen FROM scheduler.nodes n WHERE n.node_id = $2 AND n.dead_since IS NULL"
                    " AND n.last_seen <= now() - " SCHED_SQL_DEAD_AFTER " FOR UPDATE",
                    2, np, &node, reterr);
        if (r < 0 || PQntuples(node) == 0)
                goto rollback;

        const char *rp[] = {node_id};
        r = pg_exec(conn,
                    "SELECT run_id, tenant_id, team_id, last_seq, attempts FROM scheduler.runs"
                    " WHERE state = 'assigned' AND node_id = $1 ORDER BY assigned_at FOR UPDATE",
                    1, rp, &runs, reterr);
        if (r < 0)
                goto rollback;
        char cause[REASON_MAX];
        snprintf(cause, sizeof cause, "node %s stopped heartbeating", node_id);
        struct evict_tally t = {0};
        for (int i = 0; i < PQntuples(runs); i++) {
                struct evict_run e = {.run_id = PQgetvalue(runs, i, 0), .tenant = PQgetvalue(runs, i, 1),
                                      .team = PQgetisnull(runs, i, 2) ? NULL : PQgetvalue(runs, i, 2),
                                      .last_seq = strtoull(PQgetvalue(runs, i, 3), NULL, 10),
                                      .attempts = strtoll(PQgetvalue(runs, i, 4), NULL, 10)};
                r = evict_run(conn, s, node_id, &e, cause, &t, reterr);
                if (r < 0)
                        goto rollback;
        }
        r = pg_exec(conn, "UPDATE scheduler.nodes SET dead_since = now() WHERE node_id = $1", 1, rp, NULL, reterr);
        if (r < 0)
                goto rollback;
        r = pg_commit(conn, reterr);
        if (r < 0)
                return r;

        evict_count(&t);
        metric_add(&m_dead, 1);
        metric_add(&m_failed, t.failed);
        char failed_s[16], moved_s[16];
        snprintf(failed_s, sizeof failed_s, "%u", t.failed + t.gave_up);
        snprintf(moved_s, sizeof moved_s, "%u", t.moved);
        log_ctx(LOG_WARN, LOG_KV("node", node_id, "last_seen", PQgetvalue(node, 0, 0), "runs_failed", failed_s,
                                 "runs_rescheduled", moved_s),
                "node stopped heartbeating, declared dead");
        return 1;

rollback:
        pg_rollback(conn);
        return r < 0 ? r : 0;
}

int dead_nodes_sweep(PGconn *conn, const struct sched *s, struct err_detail *reterr) {
        _cleanup_(PQclearp) PGresult *nodes = NULL;
        char dead_ms[24];
        snprintf(dead_ms, sizeof dead_ms, "%lld", s->policy->node_dead_after_ms);
        const char *params[] = {dead_ms};
        int r = pg_exec(conn,
                        "SELECT n.node_id FROM scheduler.nodes n WHERE n.dead_since IS NULL"
                        " AND n.last_seen <= now() - " SCHED_SQL_DEAD_AFTER " ORDER BY n.node_id",
                        1, params, &nodes, reterr);
        if (r < 0)
                return r;
        int dead = 0;
        for (int i = 0; i < PQntuples(nodes); i++) {
                r = declare_dead(conn, s, PQgetvalue(nodes, i, 0), reterr);
                if (r < 0)
                        return r;
                dead += r;
        }
        return dead;
}

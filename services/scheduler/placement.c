/* Placement: pending runs go to a live node with room for them.
 *
 * Room is counted in run slots, cpus and memory: a node's free amount is its
 * heartbeat capacity minus the larger of what the heartbeat reports in use and
 * what the scheduler itself assigned there and has not seen finish (the
 * heartbeat lags a fresh assignment; our accounting misses a sandbox still
 * being torn down after a verdict). Among the nodes with room the run goes to
 * the one left with the most headroom (free cpus and memory after the run, each
 * as a share of the node's capacity): spreading keeps one node's death from
 * taking many runs and leaves neighbours less noisy; the price, that a run
 * needing a whole node may wait for one to drain, is bounded by the pending
 * timeout.
 *
 * Images: a run whose sandbox names a catalog image goes only to a node whose
 * last heartbeat lists it (scheduler.runs.image, stored with the request,
 * against scheduler.nodes.images: no request is decoded here). Any other node
 * would take it only to fail it at provisioning, for good (no retry
 * elsewhere); the api's launch check (some ready node has the image) cannot
 * prevent that once there are several nodes. A run without image goes
 * anywhere. The price: a node's list is as old as its last heartbeat (a
 * freshly built image is used one interval late, one deleted since can still
 * fail a run), and a run of an image few nodes have waits for those while
 * others idle. A run whose image no live node has is passed over like an
 * oversized one and fails at the pending timeout naming the image (pending.c).
 *
 * Teams: a team with as many runs assigned as its limit (scheduler.team_limits,
 * else PADDOCK_TEAM_MAX_CONCURRENT) places nothing, while other teams' runs go
 * ahead. Within a team runs start in FIFO order; only a run that fits no live
 * node even when empty, or whose image no live node has, is passed over (it
 * would block its team forever; it waits for a bigger node, a node with the
 * image, or the pending timeout).
 *
 * Each run is placed in its own transaction under a transaction-scoped
 * advisory lock (so two replicas never count the same free capacity twice):
 * RunAssigned is produced and acknowledged first, then the run is marked
 * assigned. If the process dies in between, the run is still pending on
 * restart and is assigned again (attempt unchanged, normally to the same node,
 * which deduplicates by run id): at-least-once, never lost. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/log.h"
#include "core/macro.h"
#include "core/metrics.h"
#include "kafka/topics.h"
#include "paddock/v1/runs.pb-c.h"
#include "pg/pg.h"
#include "proto/envelope.h"
#include "scheduler.h"

#define PLACEMENT_BATCH 64          /* runs per pass, so heartbeats are not starved */
#define PLACEMENT_PRODUCE_TIMEOUT_MS 10000

static struct metric m_assigned = {.name = "paddock_scheduler_runs_assigned_total",
                                   .help = "Runs assigned to a node", .type = METRIC_COUNTER};
static struct metric m_pending = {.name = "paddock_scheduler_runs_pending",
                                  .help = "Runs waiting for capacity, a node with their image or their team's"
                                          " concurrency limit",
                                  .type = METRIC_GAUGE};
static struct metric m_active = {.name = "paddock_scheduler_runs_active",
                                 .help = "Runs assigned to a node and not finished", .type = METRIC_GAUGE};
static struct metric m_live_nodes = {.name = "paddock_scheduler_nodes_live",
                                     .help = "Nodes whose heartbeat is recent enough to take runs",
                                     .type = METRIC_GAUGE};
static struct metric m_dropped = {.name = "paddock_scheduler_runs_unplaceable_total",
                                  .help = "Stored requests that could not be decoded; the run failed",
                                  .type = METRIC_COUNTER};

void placement_register_metrics(void) {
        metrics_register(&m_assigned);
        metrics_register(&m_pending);
        metrics_register(&m_active);
        metrics_register(&m_live_nodes);
        metrics_register(&m_dropped);
}

static void requested_freep(Paddock__V1__RunRequested **p) {
        if (*p)
                paddock__v1__run_requested__free_unpacked(*p, NULL);
}

static void pq_freememp(unsigned char **p) {
        if (*p)
                PQfreemem(*p);
}

/* Produces the assignment of run_id to node_id. request_text is the bytea
 * column in PostgreSQL's text (hex) output form. */
static int produce_assignment(struct kafka_producer *producer, const char *producer_id,
                              const char *node_id, const char *request_text, unsigned attempt,
                              struct err_detail *reterr) {
        size_t len = 0;
        _cleanup_(pq_freememp) unsigned char *raw = PQunescapeBytea((const unsigned char *)request_text, &len);
        if (!raw)
                return -ENOMEM;
        _cleanup_(requested_freep) Paddock__V1__RunRequested *req =
                paddock__v1__run_requested__unpack(NULL, len, raw);
        if (!req || !req->env)
                return err_set(reterr, -EBADMSG, "decode", "stored request is not a RunRequested");

        Paddock__V1__Envelope env;
        char msgid[UUID_STR_LEN];
        int r = envelope_init(&env, req->env->tenant_id, req->env->run_id, 0, producer_id, msgid);
        if (r < 0)
                return err_set(reterr, r, "envelope", "could not create a message id");
        Paddock__V1__RunAssigned a = PADDOCK__V1__RUN_ASSIGNED__INIT;
        a.env = &env;
        a.node_id = (char *)node_id;
        a.request = req;
        a.attempt = attempt;

        size_t n = paddock__v1__run_assigned__get_packed_size(&a);
        _cleanup_free_ uint8_t *buf = malloc(n ? n : 1);
        if (!buf)
                return -ENOMEM;
        paddock__v1__run_assigned__pack(&a, buf);
        return kafka_produce_sync(producer, TOPIC_RUNS_ASSIGNED, node_id, buf, n,
                                  PLACEMENT_PRODUCE_TIMEOUT_MS, reterr);
}

int placement_lock(PGconn *conn, struct err_detail *reterr) {
        /* any fixed key: only the scheduler takes it */
        return pg_exec(conn, "SELECT pg_advisory_xact_lock(7308061845120001)", 0, NULL, NULL, reterr);
}

/* The next run to place and its node: the oldest team head whose team is
 * under its limit and that fits a live node with its image now. $1 dead-after
 * setting (ms), $2 default team limit. */
static const char pick_sql[] =
        "WITH live AS ("
        "  SELECT n.node_id, n.capacity_slots, n.capacity_cpus, n.capacity_memory_mb, n.images,"
        "    n.capacity_slots - GREATEST(n.used_slots, COALESCE(a.slots, 0)) AS free_slots,"
        "    n.capacity_cpus - GREATEST(n.used_cpus, COALESCE(a.cpus, 0)) AS free_cpus,"
        "    n.capacity_memory_mb - GREATEST(n.used_memory_mb, COALESCE(a.memory_mb, 0)) AS free_memory_mb"
        "  FROM scheduler.nodes n"
        "  LEFT JOIN (SELECT node_id, count(*) AS slots, sum(cpus) AS cpus, sum(memory_mb) AS memory_mb"
        "             FROM scheduler.runs WHERE state = 'assigned' GROUP BY node_id) a USING (node_id)"
        "  WHERE n.dead_since IS NULL AND n.last_seen > now() - " SCHED_SQL_DEAD_AFTER
        /* a drained node takes nothing new (migration 0007): its runs finish */
        "    AND NOT EXISTS (SELECT 1 FROM scheduler.node_drains d WHERE d.node_id = n.node_id)"
        "), busy AS ("
        "  SELECT team_id, count(*) AS n FROM scheduler.runs WHERE state = 'assigned' GROUP BY team_id"
        "), heads AS ("
        "  SELECT DISTINCT ON (r.team_id) r.run_id, r.team_id, r.cpus, r.memory_mb, r.excluded_nodes,"
        "    r.image, r.created_at"
        "  FROM scheduler.runs r"
        "  WHERE r.state = 'pending' AND r.request IS NOT NULL AND r.last_seq = 0"
        "    AND EXISTS (SELECT 1 FROM live l WHERE l.capacity_slots >= 1 AND l.capacity_cpus >= r.cpus"
        "                AND l.capacity_memory_mb >= r.memory_mb AND l.node_id <> ALL (r.excluded_nodes)"
        "                AND (r.image IS NULL OR r.image = ANY (l.images)))"
        "  ORDER BY r.team_id, r.created_at, r.run_id"
        ")"
        " SELECT h.run_id, f.node_id FROM heads h"
        " LEFT JOIN busy b ON b.team_id IS NOT DISTINCT FROM h.team_id"
        " LEFT JOIN scheduler.team_limits t ON t.team_id = h.team_id"
        " CROSS JOIN LATERAL ("
        "   SELECT l.node_id FROM live l"
        "   WHERE l.free_slots >= 1 AND l.free_cpus >= h.cpus - 1e-9 AND l.free_memory_mb >= h.memory_mb"
        "     AND l.node_id <> ALL (h.excluded_nodes) AND (h.image IS NULL OR h.image = ANY (l.images))"
        "   ORDER BY (l.free_cpus - h.cpus) / GREATEST(l.capacity_cpus, 1e-9)"
        "          + (l.free_memory_mb - h.memory_mb)::float8 / GREATEST(l.capacity_memory_mb, 1) DESC,"
        "          l.node_id"
        "   LIMIT 1) f"
        " WHERE COALESCE(b.n, 0) < COALESCE(t.max_concurrent, $2::bigint)"
        " ORDER BY h.created_at, h.run_id LIMIT 1";

/* A stored request that cannot be decoded was validated when stored, so only
 * corruption gets here: the run fails (never stuck queued) instead of
 * blocking its team. Called inside the placement transaction. */
static int drop_corrupt(PGconn *conn, const struct sched *s, PGresult *run, struct err_detail *reterr) {
        const char *run_id = PQgetvalue(run, 0, 0), *tenant = PQgetvalue(run, 0, 1);
        const char *team = PQgetisnull(run, 0, 4) ? NULL : PQgetvalue(run, 0, 4);
        log_ctx(LOG_ERROR, LOG_KV("run", run_id, "tenant", tenant), "failing run whose stored request cannot be decoded");
        metric_add(&m_dropped, 1);
        int r = platform_end_run(s, run_id, tenant, team, run_status_to_string(RUN_FAILED), "stored run request cannot be decoded", reterr);
        if (r < 0)
                return r;
        const char *p[] = {run_id};
        r = pg_exec(conn, "UPDATE scheduler.runs SET state = 'finished', finished_at = now(),"
                          " reason = 'stored run request cannot be decoded' WHERE run_id = $1",
                    1, p, NULL, reterr);
        if (r < 0)
                return r;
        r = pg_commit(conn, reterr);
        return r < 0 ? r : 1;
}

/* Places one run. Returns 1 if one was placed (or failed as corrupt), 0 if
 * there is nothing placeable now. */
static int place_one(PGconn *conn, const struct sched *s, struct err_detail *reterr) {
        /* declared before the first goto: cleanup runs on every path */
        _cleanup_(PQclearp) PGresult *pick = NULL, *run = NULL;
        int r = pg_begin(conn, reterr);
        if (r < 0)
                return r;
        r = placement_lock(conn, reterr);
        if (r < 0)
                goto rollback;

        char dead_ms[24], team_max[24];
        snprintf(dead_ms, sizeof dead_ms, "%lld", s->policy->node_dead_after_ms);
        snprintf(team_max, sizeof team_max, "%lld", s->policy->team_max_concurrent);
        const char *pick_params[] = {dead_ms, team_max};
        r = pg_exec(conn, pick_sql, (int)ELEMENTSOF(pick_params), pick_params, &pick, reterr);
        if (r < 0 || PQntuples(pick) == 0)
                goto rollback;

        const char *lock_params[] = {PQgetvalue(pick, 0, 0)};
        r = pg_exec(conn,
                    "SELECT run_id, tenant_id, request, attempts, team_id FROM scheduler.runs"
                    " WHERE run_id = $1 AND state = 'pending' FOR UPDATE",
                    1, lock_params, &run, reterr);
        if (r < 0 || PQntuples(run) == 0)
                goto rollback;

        const char *run_id = PQgetvalue(run, 0, 0), *tenant = PQgetvalue(run, 0, 1);
        const char *node_id = PQgetvalue(pick, 0, 1);
        unsigned attempt = (unsigned)strtoul(PQgetvalue(run, 0, 3), NULL, 10) + 1;

        r = produce_assignment(s->producer, s->producer_id, node_id, PQgetvalue(run, 0, 2), attempt, reterr);
        if (r == -EBADMSG) {
                r = drop_corrupt(conn, s, run, reterr);
                if (r < 0)
                        goto rollback;
                return r;
        }
        if (r < 0)
                goto rollback;

        const char *params[] = {run_id, node_id};
        r = pg_exec(conn,
                    "UPDATE scheduler.runs SET state = 'assigned', node_id = $2,"
                    " attempts = attempts + 1, assigned_at = now() WHERE run_id = $1",
                    (int)ELEMENTSOF(params), params, NULL, reterr);
        if (r < 0)
                goto rollback;
        r = pg_commit(conn, reterr);
        if (r < 0)
                return r;
        char attempt_s[16];
        snprintf(attempt_s, sizeof attempt_s, "%u", attempt);
        log_ctx(LOG_INFO, LOG_KV("run", run_id, "tenant", tenant, "node", node_id, "attempt", attempt_s),
                "assigned run to node");
        metric_add(&m_assigned, 1);
        return 1;

rollback:
        pg_rollback(conn);
        return r < 0 ? r : 0;
}

int placement_run(PGconn *conn, const struct sched *s, struct err_detail *reterr) {
        int placed = 0;
        for (int i = 0; i < PLACEMENT_BATCH; i++) {
                int r = place_one(conn, s, reterr);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                placed++;
        }
        return placed;
}

int placement_update_gauges(PGconn *conn, const struct sched *s, struct err_detail *reterr) {
        _cleanup_(PQclearp) PGresult *res = NULL;
        char dead_ms[24];
        snprintf(dead_ms, sizeof dead_ms, "%lld", s->policy->node_dead_after_ms);
        const char *params[] = {dead_ms};
        int r = pg_exec(conn,
                        "SELECT (SELECT count(*) FROM scheduler.runs"
                        "         WHERE state = 'pending' AND request IS NOT NULL),"
                        " (SELECT count(*) FROM scheduler.runs WHERE state = 'assigned'),"
                        " (SELECT count(*) FROM scheduler.nodes n"
                        "   WHERE n.dead_since IS NULL AND n.last_seen > now() - " SCHED_SQL_DEAD_AFTER ")",
                        (int)ELEMENTSOF(params), params, &res, reterr);
        if (r < 0)
                return r;
        metric_set(&m_pending, strtoll(PQgetvalue(res, 0, 0), NULL, 10));
        metric_set(&m_active, strtoll(PQgetvalue(res, 0, 1), NULL, 10));
        metric_set(&m_live_nodes, strtoll(PQgetvalue(res, 0, 2), NULL, 10));
        return 0;
}
